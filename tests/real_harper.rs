//! Claims about real Harper (npm harperdb@4.7.29, installed into the cache on first use): the
//! README's main command works, each shard gets its own instance on its own address, and nothing
//! — process, port or directory — is left behind. If Harper cannot be installed these tests
//! fail; they never skip.

mod support;

use support::{DEFAULT_PORTS, Sandbox};

fn example_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn the_example_plan_passes_with_three_shards_on_three_addresses_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.command();
    cmd.current_dir(example_dir()).args(["run", "harper-shards.yml"]);
    let out = cmd.output().expect("run harper-shard");
    let run = support::Run { output: out, took: Default::default() };
    run.expect(0);
    let report = sandbox.report();
    let shards = report["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    let mut spans = Vec::new();
    for shard in shards {
        assert_eq!(shard["status"], "passed", "{shard}");
        let addr = shard["address"].as_str().unwrap().to_owned();
        assert!(support::ports_free(&addr, &DEFAULT_PORTS), "ports on {addr} still held");
        spans.push((addr, shard["phases"]["address"].as_f64(), shard["phases"]["finished"].as_f64()));
    }
    // Addresses may be reused by shards that ran one after the other, never by two at once.
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            let overlap = a.1.unwrap() < b.2.unwrap() && b.1.unwrap() < a.2.unwrap();
            assert!(!(a.0 == b.0 && overlap), "two live shards on {}", a.0);
        }
    }
    let work = sandbox.path("w");
    let left: Vec<_> = std::fs::read_dir(&work).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "instance directories left behind: {left:?}");
    let hdb_log = sandbox.path("report/database/harper/hdb.log");
    assert!(hdb_log.is_file(), "Harper's hdb.log is kept in the report");
}
