//! `report.json` and `junit.xml` as the real binary writes them: a failed command's tail kept
//! within bounds whatever it printed, and each instance's lives in the order the run lived them.
//! That the fields written are the ones docs/reports.md documents, and how junit.xml shows
//! instances, is tested in-process from synthetic runs (`src/report/model.rs`, `junit.rs`).

use crate::support;

use support::{Sandbox, fake_plan};

#[test]
fn a_failed_commands_tail_is_bounded_in_report_json_and_junit_xml() {
    let sandbox = Sandbox::new();
    // 60 lines of 100 kB, then 1 MB without a line end.
    let flood = "i=0; while [ $i -lt 60 ]; do head -c 100000 /dev/zero | tr '\\\\0' y; echo; i=$((i+1)); done; head -c 1000000 /dev/zero | tr '\\\\0' z; exit 1";
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "", &format!("  - name: flood\n    run: \"{flood}\"\n")),
    );
    sandbox.run(&["run"]).expect(1);
    let report = sandbox.report();
    let tail: Vec<&str> = report["shards"][0]["commands"][0]["tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let total: usize = tail.iter().map(|l| l.len()).sum();
    assert!(total <= 64 * 1024, "the tail keeps at most 64 KiB: {total}");
    assert!(tail.iter().all(|l| l.len() <= 4096 + 64), "each line at most 4 KiB and its note");
    assert!(
        tail.last().unwrap().starts_with('z')
            && tail.last().unwrap().ends_with(&format!(" … ({} more bytes cut)", 1_000_000 - 4096))
    );
    let junit = std::fs::metadata(sandbox.path("report/junit.xml")).unwrap().len();
    assert!(junit < 256 * 1024, "junit.xml carries the tail, not the output: {junit} bytes");
    let log = std::fs::metadata(sandbox.path("report/flood/command-1.log")).unwrap().len();
    assert_eq!(log, 60 * 100_001 + 1_000_000, "the log keeps every byte");
}

/// A run of one shard whose commands restart an instance of their own, kill and restart the
/// shard's, and start one whose boot fails ([`support::instances_shard`]).
fn instances_run(sandbox: &Sandbox) -> serde_json::Value {
    sandbox.write("harper-shards.yml", &fake_plan("", "", &support::instances_shard("auth")));
    sandbox.run(&["run"]).expect(0);
    sandbox.report()
}

#[test]
fn report_json_has_each_instances_lives_and_release_under_its_shard() {
    let report = instances_run(&Sandbox::new());
    let shard = &report["shards"][0];
    let by_id = |id: &str| {
        shard["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("no {id}: {shard}"))
    };
    let secs = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("seconds, not {v}"));

    let i1 = by_id("i1");
    assert_eq!(i1["name"], "auth tests");
    assert_ne!(i1["address"], shard["address"]);
    let lives = i1["lives"].as_array().unwrap();
    assert_eq!(lives.len(), 2, "restarted once: {i1}");
    assert_eq!(
        (&lives[0]["ended_by"], &lives[0]["exit"]),
        (&"stop".into(), &"exit code 0".into()),
        "{i1}"
    );
    assert!(
        secs(&lives[0]["booting"]) < secs(&lives[0]["ready"])
            && secs(&lives[0]["stopped"]) <= secs(&lives[1]["booting"]),
        "{i1}"
    );
    assert!(
        secs(&lives[1]["ready"]) <= secs(&i1["releasing"])
            && secs(&i1["releasing"]) <= secs(&i1["released"]),
        "{i1}"
    );

    let main = by_id("main");
    assert_eq!(main["address"], shard["address"]);
    assert_eq!(
        main["lives"][0]["ready"], shard["phases"]["ready"],
        "main's first life is the shard's boot"
    );
    assert_eq!(
        (&main["lives"][0]["ended_by"], &main["lives"][0]["exit"]),
        (&"kill".into(), &"killed by SIGKILL".into())
    );
    assert!(main["lives"][1]["ready"].is_f64(), "started again: {main}");
    let teardown = secs(&shard["phases"]["teardown_started"]);
    assert!(
        secs(&main["releasing"]) >= teardown
            && secs(&main["released"]) <= secs(&shard["phases"]["finished"]),
        "main's release is within the shard's teardown: {shard}"
    );

    let i2 = by_id("i2");
    let life = &i2["lives"][0];
    assert_eq!(life["boot_failure"], "Harper exited before it was ready: exit code 3");
    assert!(life["ready"].is_null() && secs(&life["failed"]) > secs(&life["booting"]), "{i2}");
    assert!(
        life["tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("fake-harper exit=3")),
        "{i2}"
    );
    assert!(i2["released"].is_f64(), "released after its failed boot: {i2}");
    assert_eq!(shard["status"], "passed", "the command shrugged the failed boot off");
}
