//! Buildkite: with `BUILDKITE=true` and a `buildkite-agent` on PATH — here a fake one that
//! records its arguments and its stdin — the run posts the step summary as an annotation, and a
//! failing agent costs a warning, never the run's exit status. Which style and body a run's
//! annotation gets is tested in-process from synthetic runs (`src/report/buildkite.rs`).

use crate::support;

use std::os::unix::fs::PermissionsExt;

use support::{Run, Sandbox, fake_plan};

/// Runs a plan of `shards` as a Buildkite job whose agent exits with `agent_exit`; returns the
/// run, the agent's arguments (one a line) and what it read, or none when it was not called.
fn buildkite_job(
    sandbox: &Sandbox,
    shards: &str,
    buildkite: &str,
    agent_exit: u8,
) -> (Run, Option<(String, String)>) {
    sandbox.write("harper-shards.yml", &fake_plan("", "", shards));
    let agent = sandbox.write(
        "bin/buildkite-agent",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"{dir}/argv\"\ncat > \"{dir}/stdin\"\necho 'agent: <refused> \x1b[31mred' >&2\nexit {agent_exit}\n",
            dir = sandbox.dir.display()
        ),
    );
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(
        std::iter::once(sandbox.path("bin"))
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let output = sandbox
        .command()
        .args(["run", "harper-shards.yml"])
        .env("PATH", path)
        .env("BUILDKITE", buildkite)
        .output()
        .unwrap();
    let run = Run { output, took: Default::default() };
    let called = std::fs::read_to_string(sandbox.path("argv"))
        .ok()
        .map(|argv| (argv, support::read(&sandbox.path("stdin"))));
    (run, called)
}

#[test]
fn a_failed_run_posts_the_step_summary_as_an_error_annotation() {
    let sandbox = Sandbox::new();
    let (run, called) = buildkite_job(
        &sandbox,
        "  - name: ok\n    run: echo fine\n  - name: bad\n    run: \"echo broken; exit 3\"\n",
        "true",
        0,
    );
    run.expect(1);
    let (argv, body) = called.expect("the agent was called");
    assert_eq!(argv, "annotate\n--style\nerror\n--context\nharper-shard\n");
    assert!(body.starts_with("## ❌ harper-shard: 1 of 2 shard(s) failed"), "{body}");
    assert!(
        body.contains("| bad | 127.")
            && body.contains("### Failures")
            && body.contains("```mermaid\n"),
        "the step summary's content: {body}"
    );
    assert!(!run.stderr().contains("warning"), "{}", run.stderr());
}

#[test]
fn an_agent_that_fails_is_a_warning_and_the_run_keeps_its_exit_status() {
    let sandbox = Sandbox::new();
    let (run, called) = buildkite_job(&sandbox, "  - name: ok\n    run: echo fine\n", "true", 7);
    run.expect(0);
    assert!(called.is_some(), "the agent was called");
    let warning = run
        .stderr()
        .lines()
        .find(|l| l.contains("cannot post the Buildkite annotation"))
        .map(str::to_owned);
    let warning = warning.unwrap_or_else(|| panic!("a warning: {}", run.stderr()));
    assert!(
        warning.starts_with("harper-shard: warning: ")
            && warning.contains("exit status: 7: agent: <refused> red"),
        "{warning}"
    );
}

#[test]
fn outside_buildkite_the_agent_is_not_called() {
    let sandbox = Sandbox::new();
    let (run, called) = buildkite_job(&sandbox, "  - name: ok\n    run: echo fine\n", "false", 0);
    run.expect(0);
    assert!(called.is_none(), "BUILDKITE=false: no annotation");
}
