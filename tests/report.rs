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
