//! Every plan in tests/plans/bad is refused: exit status 2, nothing started, and an error that
//! contains each line of the `.expected` file beside it (location, field, value, what to do).

mod support;

use std::time::Duration;

use support::Sandbox;

#[test]
fn every_bad_plan_is_refused_with_its_message_and_exit_2() {
    let sandbox = Sandbox::new();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/bad");
    let mut plans: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the corpus exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    plans.sort();
    assert!(plans.len() >= 20, "the corpus has only {} plans", plans.len());
    let mut failures = Vec::new();
    for plan in &plans {
        let relative = plan.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let expected = support::read(&plan.with_extension("expected"));
        let run = {
            let mut cmd = sandbox.command();
            cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args(["run", relative.to_str().unwrap()]);
            let started = std::time::Instant::now();
            let output = cmd.output().expect("run harper-shard");
            support::Run { output, took: started.elapsed() }
        };
        let stderr = run.stderr();
        if run.code() != 2 {
            failures.push(format!("{}: exit {} instead of 2\n{stderr}", relative.display(), run.code()));
        }
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            if !stderr.contains(line) {
                failures.push(format!("{}: the error lacks `{line}`; it said:\n{stderr}", relative.display()));
            }
        }
        // A generous ceiling: the benchmark measures the real figure.
        if run.took > Duration::from_secs(5) {
            failures.push(format!("{}: took {:?} to refuse", relative.display(), run.took));
        }
    }
    assert!(!sandbox.path("w").exists(), "a refused plan created an instance directory");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_plan_file_says_how_to_make_one() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["run", "nope.yml"]);
    run.expect(2);
    assert!(run.stderr().contains("nope.yml: cannot read the plan"), "{}", run.stderr());
    assert!(run.stderr().contains("examples/harper-shards.yml"), "{}", run.stderr());
}

#[test]
fn a_malformed_fallback_variable_is_named() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", "version: 1\nshards:\n  - name: a\n    run: \"true\"\n");
    let mut cmd = sandbox.command();
    cmd.args(["run", "--plan"]).env("HARPER_INTEGRATION_TEST_STARTUP_TIMEOUT_MS", "soon");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("$HARPER_INTEGRATION_TEST_STARTUP_TIMEOUT_MS is `soon`"), "{err}");
}
