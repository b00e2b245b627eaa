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

/// A one-shard plan on real Harper, on a pool of its own, whose command checks the instance.
fn one_real_shard(sandbox: &Sandbox, pool_start: &str) {
    sandbox.write("health.mjs", "const r = await fetch(process.env.HARPER_OPERATIONS_API_URL + '/health');\nprocess.exit(r.ok ? 0 : 1);\n");
    sandbox.write(
        "harper-shards.yml",
        &format!("version: 1\npool: {{start: {pool_start}, count: 2}}\nshards:\n  - name: a\n    run: node health.mjs\n"),
    );
}

/// Runs the plan with `TMPDIR` set and no work directory of the test's own: the tool derives
/// its instance paths from the temporary directory, as on a CI runner. Returns the boot time.
fn boot_under_tmpdir(sandbox: &Sandbox, tmpdir: &std::path::Path) -> (support::Run, f64) {
    std::fs::create_dir_all(tmpdir).unwrap();
    let mut cmd = sandbox.command();
    cmd.env_remove("HARPER_SHARD_WORK_DIR").env("TMPDIR", tmpdir).env("HARPER_SHARD_POOL_DIR", sandbox.path("pool")).arg("run");
    let run = support::Run { output: cmd.output().expect("run harper-shard"), took: Default::default() };
    run.expect(0);
    let report = sandbox.report();
    let shard = &report["shards"][0];
    let boot = shard["phases"]["ready"].as_f64().unwrap() - shard["phases"]["address"].as_f64().unwrap();
    (run, boot)
}

/// Harper's path check backtracks exponentially on a long run of path characters followed by
/// any other; a 40-character temporary directory made only of path characters boots normally.
#[test]
fn real_harper_boots_in_normal_time_under_a_long_dot_free_tmpdir() {
    let sandbox = Sandbox::new();
    one_real_shard(&sandbox, "127.0.60.2");
    let tmpdir = sandbox.path("runner_work_temp_directory_40");
    assert_eq!(tmpdir.to_str().unwrap().len(), 47, "{}", tmpdir.display());
    let (_, boot) = boot_under_tmpdir(&sandbox, &tmpdir);
    // Normal is 2.5–15 s here; the hazard makes it the idle cap (60 s or more).
    assert!(boot < 45.0, "the boot took {boot:.1}s");
    let left: Vec<_> = std::fs::read_dir(tmpdir.join("hs-0")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "instance directories left behind: {left:?}");
}

/// A dot in the temporary directory (`/home/runner/work/_temp`-style names often have one)
/// would hang every boot: the tool moves its instance directories to a safe place and says so.
#[test]
fn real_harper_boots_in_normal_time_under_a_dotted_tmpdir() {
    let sandbox = Sandbox::new();
    one_real_shard(&sandbox, "127.0.60.5");
    let (run, boot) = boot_under_tmpdir(&sandbox, &sandbox.path("home.runner_work_temp"));
    assert!(boot < 45.0, "the boot took {boot:.1}s");
    assert!(run.stderr().contains("instance directories go to /tmp/hs-"), "the move is said: {}", run.stderr());
}
