//! `report.json` is the schema `docs/reports.md` documents: every field written is documented,
//! and every documented field is written.

mod support;

use std::collections::BTreeSet;

use support::{Sandbox, fake_plan};

/// The field names in the first column of the table under `### {heading}` in docs/reports.md.
fn documented(heading: &str) -> BTreeSet<String> {
    let doc = support::read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reports.md"));
    let section = doc.split(&format!("### {heading}\n")).nth(1).unwrap_or_else(|| panic!("no section {heading}"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .flat_map(|row| {
            let first = row.split('|').nth(1).unwrap_or("");
            first.split(',').map(|name| name.trim().trim_matches('`').to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

fn keys(value: &serde_json::Value) -> BTreeSet<String> {
    value.as_object().expect("an object").keys().cloned().collect()
}

/// A run with a passing and a failing shard, so that every optional field appears.
fn report() -> serde_json::Value {
    let sandbox = Sandbox::new();
    let shards = "  - name: good\n    run: \"true\"\n  - name: bad\n    run: \"echo no; exit 1\"\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "", shards));
    sandbox.run(&["run"]).expect(1);
    sandbox.report()
}

#[test]
fn the_documented_top_level_fields_are_the_ones_written() {
    assert_eq!(keys(&report()), documented("Top level"));
}

#[test]
fn the_documented_shard_and_command_fields_are_the_ones_written() {
    let report = report();
    let bad = &report["shards"][1];
    assert_eq!(keys(bad), documented("Shard"));
    assert_eq!(keys(&bad["commands"][0]), documented("Command"), "a failed command, which carries its tail");
    assert_eq!(report["version"], 1);
}

#[test]
fn a_failed_commands_tail_is_bounded_in_report_json_and_junit_xml() {
    let sandbox = Sandbox::new();
    // 60 lines of 100 kB, then 1 MB without a line end.
    let flood = "i=0; while [ $i -lt 60 ]; do head -c 100000 /dev/zero | tr '\\\\0' y; echo; i=$((i+1)); done; head -c 1000000 /dev/zero | tr '\\\\0' z; exit 1";
    sandbox.write("harper-shards.yml", &fake_plan("", "", &format!("  - name: flood\n    run: \"{flood}\"\n")));
    sandbox.run(&["run"]).expect(1);
    let report = sandbox.report();
    let tail: Vec<&str> = report["shards"][0]["commands"][0]["tail"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let total: usize = tail.iter().map(|l| l.len()).sum();
    assert!(total <= 64 * 1024, "the tail keeps at most 64 KiB: {total}");
    assert!(tail.iter().all(|l| l.len() <= 4096 + 64), "each line at most 4 KiB and its note");
    assert!(tail.last().unwrap().starts_with('z') && tail.last().unwrap().ends_with(&format!(" … ({} more bytes cut)", 1_000_000 - 4096)));
    let junit = std::fs::metadata(sandbox.path("report/junit.xml")).unwrap().len();
    assert!(junit < 256 * 1024, "junit.xml carries the tail, not the output: {junit} bytes");
    let log = std::fs::metadata(sandbox.path("report/flood/command-1.log")).unwrap().len();
    assert_eq!(log, 60 * 100_001 + 1_000_000, "the log keeps every byte");
}
