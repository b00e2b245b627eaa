//! Retries and flaky shards, through the real binary on the fake server: a failed shard is tried
//! again on a fresh instance on another address, each attempt keeps its own logs, a `files:`
//! shard retries only the files whose cases failed, what is never retried (a cancelled run, bad
//! input) is not, and a shard that failed and then passed is recorded flaky. How a flaky shard
//! is shown (GitHub's warning, the step summary, report.html) is tested in-process from
//! synthetic runs, in `src/report/`.

use crate::support;

use std::process::{Child, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::{DEFAULT_PORTS, Scene};

/// What only the retry tests ask of a scene.
impl Scene {
    fn attempts(&self) -> Vec<Value> {
        self.sandbox.report()["shards"][0]["attempts"].as_array().expect("attempts").clone()
    }
}

/// A command that fails the first `fails` times it runs, then passes; its count in `state/<name>`.
fn failing_first(name: &str, fails: u32) -> String {
    format!(
        "mkdir -p state; n=$(cat state/{name} 2>/dev/null || echo 0); echo $((n+1)) > state/{name}; echo run $((n+1)); [ $n -ge {fails} ]"
    )
}

#[test]
fn a_shard_that_always_fails_is_tried_retries_plus_one_times_each_on_another_address() {
    let scene = Scene::new("127.0.120.2", 4);
    scene.plan(
        "",
        "run: {retries: 2}\n",
        "  - name: broken\n    run: \"echo attempt-output; exit 1\"\n",
    );
    let run = scene.run(&["run"]);
    run.expect(1);
    let attempts = scene.attempts();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    let addresses: std::collections::BTreeSet<&str> =
        attempts.iter().map(|a| a["address"].as_str().unwrap()).collect();
    assert_eq!(addresses.len(), 3, "each attempt on an address of its own: {addresses:?}");
    for (n, a) in attempts.iter().enumerate() {
        assert_eq!((a["attempt"].as_u64(), a["of"].as_u64()), (Some(n as u64 + 1), Some(3)));
        assert_eq!(a["status"], "failed", "{a}");
        assert!(support::ports_free(a["address"].as_str().unwrap(), &DEFAULT_PORTS), "{a}");
    }
    // Each attempt's logs are its own: nothing of an earlier one is overwritten.
    for dir in ["broken", "broken/attempt-2", "broken/attempt-3"] {
        let log = support::read(&scene.sandbox.path(&format!("report/{dir}/command-1.log")));
        assert_eq!(log, "attempt-output\n", "{dir}");
        assert!(scene.sandbox.path(&format!("report/{dir}/harper/stdout.log")).is_file(), "{dir}");
    }
    let err = run.stderr();
    assert!(err.contains("retrying broken (2/3) on a fresh instance: `echo attempt-output; exit 1` failed: exit code 1"), "{err}");
    assert!(err.contains("retrying broken (3/3) on a fresh instance"), "{err}");
    assert!(
        !scene
            .sandbox
            .path("w")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("127.")),
        "no instance directory left"
    );
}

#[test]
fn a_command_that_fails_once_then_passes_is_flaky_and_the_run_exits_0() {
    let scene = Scene::new("127.0.120.10", 2);
    scene.plan(
        "",
        "run: {retries: 2}\n",
        &format!("  - name: once\n    run: \"{}\"\n", failing_first("once", 1)),
    );
    let run = scene.run(&["run"]);
    run.expect(0);
    let attempts = scene.attempts();
    let statuses: Vec<&str> = attempts.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "passed"], "no third attempt after a pass");
    assert_eq!(support::read(&scene.sandbox.path("state/once")).trim(), "2");
    let shard = &scene.sandbox.report()["shards"][0];
    assert_eq!(shard["status"], "flaky", "{shard}");
    assert!(
        shard["cause"].as_str().unwrap().contains("failed: exit code 1"),
        "the failed attempt's cause: {shard}"
    );
    let err = run.stderr();
    assert!(err.contains("[once] FLAKY in "), "{err}");
    assert!(err.contains("flaky: once: failed on attempt 1 of 3"), "{err}");
    assert!(err.contains("1 of 1 shard(s) passed (1 flaky) in "), "{err}");
}

#[test]
fn with_flaky_fail_a_flaky_shard_fails_the_run() {
    let scene = Scene::new("127.0.120.60", 2);
    scene.plan(
        "",
        "run: {retries: 1, flaky: fail}\n",
        &format!("  - name: once\n    run: \"{}\"\n", failing_first("once", 1)),
    );
    scene.run(&["run"]).expect(1);
    assert_eq!(scene.sandbox.report()["shards"][0]["status"], "flaky");
    // The flag does the same for a plan that does not say.
    std::fs::remove_dir_all(scene.sandbox.path("state")).unwrap();
    scene.plan(
        "",
        "run: {retries: 1}\n",
        &format!("  - name: once\n    run: \"{}\"\n", failing_first("once", 1)),
    );
    scene.run(&["run"]).expect(0);
    std::fs::remove_dir_all(scene.sandbox.path("state")).unwrap();
    scene.run(&["run", "--flaky-fails"]).expect(1);
}

/// Writes `fake-test.sh`: for each file given, a passing testcase naming it, except that the
/// file `t/b.test` fails the first time it runs and `t/hard.test` fails every time.
fn fake_test_runner(scene: &Scene) {
    scene.sandbox.write(
        "fake-test.sh",
        r#"out=$HARPER_SHARD_JUNIT_DIR/results.xml
echo "$HARPER_SHARD_FILES" > "files-$(ls state 2>/dev/null | wc -l).txt"
mkdir -p state; echo "<testsuites>" > "$out"; status=0
for f in "$@"; do
  if [ "$f" = t/b.test ] && [ ! -e state/b ]; then
    touch state/b; status=1
    echo "<testcase name=\"$(basename $f .test) works\" file=\"$PWD/$f\" time=\"0.1\"><failure message=\"not yet\">AssertionError</failure></testcase>" >> "$out"
  elif [ "$f" = t/hard.test ]; then
    status=1
    echo "<testcase name=\"$(basename $f .test) works\" file=\"$PWD/$f\" time=\"0.1\"><failure message=\"never\">AssertionError</failure></testcase>" >> "$out"
  else
    echo "<testcase name=\"$(basename $f .test) works\" file=\"$PWD/$f\" time=\"0.1\"/>" >> "$out"
  fi
done
echo "</testsuites>" >> "$out"; exit $status
"#,
    );
}

#[test]
fn junit_xml_has_a_flaky_failure_for_a_test_that_failed_then_passed_and_rerun_failures_for_one_that_always_failed()
 {
    let scene = Scene::new("127.0.120.42", 2);
    for f in ["a", "b", "hard"] {
        scene.sandbox.write(&format!("t/{f}.test"), "");
    }
    fake_test_runner(&scene);
    let shards = "  - name: flaky\n    files: \"t/[ab].test\"\n    run: \"sh fake-test.sh {files}\"\n  - name: hard\n    files: \"t/hard.test\"\n    run: \"sh fake-test.sh {files}\"\n";
    scene.plan("", "run: {retries: 1, concurrency: 1}\n", shards);
    scene.run(&["run"]).expect(1);
    let xml = support::read(&scene.sandbox.path("report/junit.xml"));
    let case = |name: &str| support::testcase(&xml, name);
    let b = case("b works");
    assert!(b.contains("<flakyFailure") && b.contains("not yet") && !b.contains("<failure"), "{b}");
    assert!(b.contains("name=\"attempt\" value=\"2\""), "the passing run's attempt: {b}");
    let a = case("a works");
    assert!(!a.contains("Failure") && !a.contains("<failure"), "a passing case: {a}");
    let hard = case("hard works");
    assert!(hard.contains("<failure") && hard.contains("<rerunFailure"), "{hard}");
    assert!(!hard.contains("flakyFailure"), "{hard}");
}

#[test]
fn timings_take_a_flaky_shards_passing_attempt_not_its_failed_one() {
    let scene = Scene::new("127.0.120.50", 2);
    let command = "mkdir -p state; if [ -e state/slow ]; then exit 0; else touch state/slow; sleep 3; exit 1; fi";
    scene.plan("", "run: {retries: 1}\n", &format!("  - name: slow\n    run: \"{command}\"\n"));
    scene.run(&["run"]).expect(0);
    let timings: Value =
        serde_json::from_str(&support::read(&scene.sandbox.path("report/timings.json"))).unwrap();
    let secs = timings["run"]["shards"]["slow"].as_f64().unwrap_or_else(|| panic!("{timings}"));
    assert!(secs < 2.5, "the failed attempt's 3 s are not counted: {secs}");
}

#[test]
fn without_retries_a_failure_is_tried_once() {
    let scene = Scene::new("127.0.120.14", 1);
    scene.plan("", "", &format!("  - name: once\n    run: \"{}\"\n", failing_first("once", 1)));
    scene.run(&["run"]).expect(1);
    assert_eq!(scene.attempts().len(), 1);
    assert!(!scene.sandbox.path("report/once/attempt-2").exists());
}

#[test]
fn a_boot_that_fails_on_the_first_attempt_is_retried_on_a_fresh_instance() {
    let scene = Scene::new("127.0.120.18", 2);
    // Harper's first start exits 3 before it is ready; later ones boot.
    let state = scene.sandbox.path("booted-once");
    let wrapper = scene.sandbox.write(
        "harper-once.sh",
        &format!(
            "#!/bin/sh\nif [ ! -e {state} ]; then touch {state}; export FAKE_HARPER=exit=3; fi\nexec {} \"$@\"\n",
            support::fake_harper(),
            state = state.display()
        ),
    );
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    scene.plan("", "run: {retries: 1}\n", "  - name: boots\n    run: \"true\"\n");
    let plan = support::read(&scene.sandbox.path("harper-shards.yml"))
        .replace(support::fake_harper(), &wrapper.display().to_string());
    scene.sandbox.write("harper-shards.yml", &plan);
    let run = scene.run(&["run"]);
    run.expect(0);
    let attempts = scene.attempts();
    let statuses: Vec<&str> = attempts.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["boot_failed", "passed"], "{attempts:?}");
    assert_ne!(attempts[0]["address"], attempts[1]["address"]);
    assert!(
        run.stderr().contains(
            "retrying boots (2/2) on a fresh instance: Harper exited before it was ready"
        ),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_shards_own_retries_win_over_the_command_line_which_wins_over_the_plan() {
    let scene = Scene::new("127.0.120.22", 1);
    scene.plan(
        "",
        "run: {retries: 1}\n",
        "  - name: own\n    run: \"true\"\n    retries: 0\n  - name: default\n    run: \"true\"\n",
    );
    let retries = |args: &[&str], env: Option<&str>| {
        let mut cmd = scene.command();
        cmd.args(["run", "--plan", "--format", "json"]).args(args);
        if let Some(n) = env {
            cmd.env("HARPER_SHARD_RETRIES", n);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let shards = plan["plan"]["shards"].as_array().unwrap().clone();
        shards.iter().map(|s| s["retries"].as_u64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(retries(&[], None), [0, 1]);
    assert_eq!(retries(&["--retries", "3"], None), [0, 3]);
    assert_eq!(retries(&[], Some("4")), [0, 4]);
}

#[test]
fn retries_past_ten_are_refused_before_anything_starts() {
    let scene = Scene::new("127.0.120.26", 1);
    scene.plan("", "run: {retries: 11}\n", "  - name: a\n    run: \"touch ran\"\n");
    let run = scene.run(&["run"]);
    run.expect(2);
    let err = run.stderr();
    assert!(
        err.contains("harper-shards.yml")
            && err.contains("retries `11` is not valid: use a whole number from 0 to 10"),
        "{err}"
    );
    assert!(!scene.sandbox.path("ran").exists());
    let run = scene.run(&["run", "--retries", "99"]);
    run.expect(2);
    assert!(run.stderr().contains("retries `99` is not valid"), "{}", run.stderr());
}

#[test]
fn fail_fast_counts_a_shard_only_when_its_last_attempt_failed() {
    let scene = Scene::new("127.0.120.30", 2);
    let shards = format!(
        "  - name: flaky\n    run: \"{}\"\n  - name: later\n    run: \"true\"\n",
        failing_first("flaky", 1)
    );
    scene.plan("", "run: {retries: 1, fail_fast: true, concurrency: 1}\n", &shards);
    scene.run(&["run"]).expect(0);
    let report = scene.sandbox.report();
    assert_eq!(
        report["shards"][1]["status"], "passed",
        "the shard after a passing retry still ran: {report}"
    );
}

/// A `files:` shard whose command writes JUnit naming each case's file, one of three files
/// failing on its first run only: the retry runs that file alone.
#[test]
fn a_files_shard_retries_only_the_files_with_a_failing_case() {
    let scene = Scene::new("127.0.120.34", 2);
    for f in ["a", "b", "c"] {
        scene.sandbox.write(&format!("t/{f}.test"), "");
    }
    fake_test_runner(&scene);
    scene.plan(
        "",
        "run: {retries: 2}\n",
        "  - name: files\n    files: \"t/*.test\"\n    run: \"sh fake-test.sh {files}\"\n",
    );
    scene.run(&["run"]).expect(0);
    let attempts = scene.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["commands"][0]["command"], "sh fake-test.sh t/a.test t/b.test t/c.test");
    assert_eq!(
        attempts[1]["commands"][0]["command"], "sh fake-test.sh t/b.test",
        "only the failing file again"
    );
    assert_eq!(
        support::read(&scene.sandbox.path("files-0.txt")).trim(),
        "t/a.test t/b.test t/c.test"
    );
    assert_eq!(
        support::read(&scene.sandbox.path("files-1.txt")).trim(),
        "t/b.test",
        "HARPER_SHARD_FILES says the same"
    );
    // The first attempt's JUnit is still there, beside the second's.
    assert!(
        support::read(&scene.sandbox.path("report/files/junit/results.xml")).contains("<failure")
    );
    assert!(
        !support::read(&scene.sandbox.path("report/files/attempt-2/junit/results.xml"))
            .contains("<failure")
    );
}

/// Starts `harper-shard run` in the background.
fn start(scene: &Scene) -> Child {
    scene
        .command()
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start harper-shard")
}

#[test]
fn sigint_during_a_retry_exits_130_with_the_report_written_and_nothing_left() {
    let scene = Scene::new("127.0.120.38", 2);
    let command = "mkdir -p state; if [ -e state/first ]; then touch second.started; sleep 600; else touch state/first; exit 1; fi";
    scene.plan("", "run: {retries: 2}\n", &format!("  - name: slow\n    run: \"{command}\"\n"));
    let tool = start(&scene);
    let started = scene.sandbox.path("second.started");
    scene
        .sandbox
        .wait_for("the second attempt's command", Duration::from_secs(30), || started.exists());
    kill(Pid::from_raw(tool.id() as i32), Signal::SIGINT).unwrap();
    let out = tool.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let report = scene.sandbox.report();
    assert_eq!(report["shards"][0]["status"], "cancelled", "{report}");
    let attempts = scene.attempts();
    let statuses: Vec<&str> = attempts.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "cancelled"], "no attempt after the signal");
    for a in attempts {
        assert!(support::ports_free(a["address"].as_str().unwrap(), &DEFAULT_PORTS), "{a}");
    }
}

/// Flake history given with `--timings`: the files shard flaked in 1 of 4 runs, its file
/// t/b.test too (and failed in one). This run it flakes again.
const HISTORY: &str = r#"{"version":1,"flakes":{"shards":{"files":{"runs":4,"flaky":1,"failed":0}},"files":{"t/b.test":{"runs":4,"flaky":1,"failed":1}}}}"#;

#[test]
fn the_step_summary_says_how_often_a_flaky_shard_and_its_flaky_file_flaked_lately() {
    let scene = Scene::new("127.0.120.58", 2);
    for f in ["a", "b"] {
        scene.sandbox.write(&format!("t/{f}.test"), "");
    }
    fake_test_runner(&scene);
    scene.plan(
        "",
        "run: {retries: 1}\n",
        "  - name: files\n    files: \"t/*.test\"\n    run: \"sh fake-test.sh {files}\"\n",
    );
    let history = scene.sandbox.write("history.json", HISTORY);
    let step = actions_step(&scene, &["--timings".as_ref(), history.as_os_str()]);
    assert_eq!(step.code, Some(0), "{}", step.err);
    let md = step.summary;
    // 4 runs decayed by 0.9 and this one: 4.6 runs, 1.9 flaky, 0.9 failed.
    assert!(md.contains("passed on attempt 2 on a fresh instance; tests that flaked: b.test: b works (flaky in 2 of the last 5 runs)\n"), "{md}");
    assert!(
        md.contains("\n  - <code>t/b.test</code>: flaky in 2 of the last 5 runs, failed in 1\n"),
        "{md}"
    );
    assert!(!md.contains("<code>t/a.test</code>"), "a file that did not flake is not listed: {md}");
    let timings: Value =
        serde_json::from_str(&support::read(&scene.sandbox.path("report/timings.json"))).unwrap();
    assert_eq!(
        timings["run"]["flakes"]["shards"]["files"],
        serde_json::json!({"runs": 1.0, "flaky": 1.0, "failed": 0.0}),
        "{timings}"
    );
    assert_eq!(
        timings["run"]["flakes"]["files"]["t/a.test"],
        serde_json::json!({"runs": 1.0, "flaky": 0.0, "failed": 0.0}),
        "{timings}"
    );
    let kept = &timings["flakes"]["shards"]["files"];
    assert!(
        (kept["runs"].as_f64().unwrap() - 4.6).abs() < 1e-9
            && (kept["flaky"].as_f64().unwrap() - 1.9).abs() < 1e-9,
        "{timings}"
    );
}

#[test]
fn the_dry_run_shows_each_shards_flake_rate_from_the_timings() {
    let scene = Scene::new("127.0.120.62", 1);
    scene.plan("", "", "  - name: files\n    run: \"true\"\n  - name: steady\n    run: \"true\"\n");
    let history = scene.sandbox.write("history.json", HISTORY);
    let human = scene.run(&["run", "--plan", "--timings", history.to_str().unwrap()]);
    human.expect(0);
    let text = human.stdout();
    let files = text.split("2/2 steady").next().unwrap();
    assert!(files.contains("      flakes   flaky in 1 of the last 4 runs (timings)\n"), "{text}");
    assert!(
        !text.split("2/2 steady").nth(1).unwrap().contains("flakes "),
        "no history, no line: {text}"
    );
    let json =
        scene.run(&["run", "--plan", "--format", "json", "--timings", history.to_str().unwrap()]);
    let plan: Value = serde_json::from_str(&json.stdout()).unwrap();
    assert_eq!(plan["plan"]["shards"][0]["flakes"]["flaky"], 1.0, "{plan}");
    assert_eq!(plan["plan"]["shards"][1]["flakes"], Value::Null, "{plan}");
}

#[test]
fn timings_merge_adds_up_the_flake_counts_of_the_jobs_and_weighs_in_the_history() {
    let scene = Scene::new("127.0.120.66", 1);
    let job = |partition: u32, shard: &str, counts: &str| {
        format!(
            r#"{{"version":1,"run":{{"partition":{{"index":{partition},"total":2}},"assignment":"d","assigned":["a","b"],"selected":["{shard}"],
            "plan":{{"shards":["a","b"],"files":["t/x.test"]}},"flakes":{{"shards":{{"{shard}":{counts}}},"files":{{"t/x.test":{counts}}}}}}}}}"#
        )
    };
    let one = scene.sandbox.write("1.json", &job(1, "a", r#"{"runs":1,"flaky":1,"failed":0}"#));
    let two = scene.sandbox.write("2.json", &job(2, "b", r#"{"runs":1,"flaky":0,"failed":1}"#));
    let old = scene.sandbox.write(
        "old.json",
        r#"{"version":1,"flakes":{"files":{"t/x.test":{"runs":10,"flaky":5,"failed":0}}}}"#,
    );
    let run = scene.run(&[
        "timings",
        "merge",
        one.to_str().unwrap(),
        two.to_str().unwrap(),
        "--previous",
        old.to_str().unwrap(),
    ]);
    run.expect(0);
    let merged: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(
        merged["flakes"]["shards"]["a"],
        serde_json::json!({"runs": 1.0, "flaky": 1.0, "failed": 0.0}),
        "{merged}"
    );
    assert_eq!(
        merged["flakes"]["shards"]["b"],
        serde_json::json!({"runs": 1.0, "flaky": 0.0, "failed": 1.0}),
        "{merged}"
    );
    // Both jobs ran t/x.test: two runs, added to the history decayed once (10 × 0.9, 5 × 0.9).
    assert_eq!(
        merged["flakes"]["files"]["t/x.test"],
        serde_json::json!({"runs": 11.0, "flaky": 5.5, "failed": 1.0}),
        "{merged}"
    );
}

/// What a run under GitHub Actions left: its exit code, its stderr and the step summary.
struct ActionsStep {
    code: Option<i32>,
    err: String,
    summary: String,
}

/// Runs `harper-shard run ARGS` in `scene` as a GitHub Actions step with a step summary file.
fn actions_step(scene: &Scene, args: &[&std::ffi::OsStr]) -> ActionsStep {
    let summary = scene.sandbox.write("summary.md", "");
    let out = scene
        .command()
        .arg("run")
        .args(args)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("run harper-shard");
    ActionsStep {
        code: out.status.code(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        summary: support::read(&summary),
    }
}

/// A plan of a shard `broken` that always fails and one that passes, with `quarantine` YAML.
fn quarantined_plan(scene: &Scene, quarantine: &str) {
    scene.plan("", "", &format!("  - name: broken\n    run: \"echo broken-output; exit 1\"\n  - name: fine\n    run: \"true\"\nquarantine:\n{quarantine}"));
}

#[test]
fn a_quarantined_failing_shard_is_reported_everywhere_and_the_run_exits_0() {
    let scene = Scene::new("127.0.120.70", 2);
    quarantined_plan(
        &scene,
        "  - shard: broken\n    reason: \"flaky on CI, issue 7\"\n    until: 9999-12-31\n",
    );
    let ActionsStep { code, err, summary: md } = actions_step(&scene, &[]);
    assert_eq!(code, Some(0), "{err}");
    let warning = err
        .lines()
        .find(|l| l.starts_with("::warning ") && l.contains("title=broken%3A quarantined"))
        .unwrap_or_else(|| panic!("no quarantine warning:\n{err}"));
    assert!(warning.contains("::quarantined until 9999-12-31: flaky on CI, issue 7 (shard `broken`); it failed: `echo broken-output; exit 1` failed: exit code 1"), "{warning}");
    assert!(!err.lines().any(|l| l.starts_with("::error")), "{err}");
    assert!(
        err.contains("\nquarantined: broken: quarantined until 9999-12-31"),
        "the console's line: {err}"
    );
    let shard = &scene.sandbox.report()["shards"][0];
    assert_eq!(shard["status"], "quarantined", "{shard}");
    assert_eq!(
        shard["quarantine"][0],
        serde_json::json!({"target": "shard", "name": "broken", "reason": "flaky on CI, issue 7", "until": "9999-12-31", "expired": false})
    );
    assert!(
        md.contains("### Quarantined\n")
            && md.contains("- **broken** — quarantined until 9999-12-31: flaky on CI, issue 7"),
        "{md}"
    );
    assert!(
        md.contains("no shard failed the run in ")
            && md.contains("1 of 2 failed but are quarantined"),
        "{md}"
    );
}

#[test]
fn an_expired_quarantine_counts_for_nothing_and_says_so() {
    let scene = Scene::new("127.0.120.74", 2);
    quarantined_plan(
        &scene,
        "  - shard: broken\n    reason: \"flaky on CI, issue 7\"\n    until: 2000-01-01\n",
    );
    let run = scene.run(&["run"]);
    run.expect(1);
    let err = run.stderr();
    assert!(err.contains("the quarantine of shard `broken` ended on 2000-01-01 (flaky on CI, issue 7): its failures fail the run again"), "{err}");
    let report = scene.sandbox.report();
    assert_eq!(report["shards"][0]["status"], "failed", "{report}");
    assert_eq!(report["shards"][0]["quarantine"], Value::Null, "{report}");
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("ended on 2000-01-01")),
        "{report}"
    );
    let plan = scene.run(&["run", "--plan"]);
    plan.expect(0);
    assert!(
        plan.stderr().contains("the quarantine of shard `broken` ended on 2000-01-01"),
        "the dry run warns too: {}",
        plan.stderr()
    );
}

#[test]
fn a_file_quarantine_covers_a_failure_only_when_every_failing_case_is_in_a_quarantined_file() {
    let scene = Scene::new("127.0.120.78", 2);
    for f in ["a", "hard"] {
        scene.sandbox.write(&format!("t/{f}.test"), "");
    }
    fake_test_runner(&scene);
    let plan = |quarantined: &str| {
        let shards = format!(
            "  - name: files\n    files: \"t/*.test\"\n    run: \"sh fake-test.sh {{files}}\"\nquarantine:\n  - file: {quarantined}\n    reason: known\n    until: 9999-12-31\n"
        );
        scene.plan("", "", &shards);
    };
    plan("./t/hard.test");
    scene.run(&["run"]).expect(0);
    let shard = &scene.sandbox.report()["shards"][0];
    assert_eq!(
        (shard["status"].as_str(), shard["quarantine"][0]["name"].as_str()),
        (Some("quarantined"), Some("t/hard.test")),
        "{shard}"
    );
    plan("t/a.test");
    scene.run(&["run"]).expect(1);
    assert_eq!(
        scene.sandbox.report()["shards"][0]["status"],
        "failed",
        "t/hard.test failed and nothing covers it"
    );
}

#[test]
fn a_quarantine_of_a_split_shard_covers_every_part() {
    let scene = Scene::new("127.0.120.82", 1);
    for f in ["a", "b", "c"] {
        scene.sandbox.write(&format!("t/{f}.test"), "");
    }
    scene.plan("", "", "  - name: db\n    files: \"t/*.test\"\n    split: 2\n    run: \"true {files}\"\n  - name: other\n    run: \"true\"\nquarantine:\n  - shard: db\n    reason: known\n    until: 9999-12-31\n");
    let run = scene.run(&["run", "--plan", "--format", "json"]);
    run.expect(0);
    let plan: Value = serde_json::from_str(&run.stdout()).unwrap();
    let covered: Vec<(&str, usize)> = plan["plan"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["quarantine"].as_array().map_or(0, Vec::len)))
        .collect();
    assert_eq!(covered, [("db/1", 1), ("db/2", 1), ("other", 0)]);
}

#[test]
fn bad_quarantine_entries_are_refused_naming_the_line_the_field_and_the_value() {
    let scene = Scene::new("127.0.120.86", 1);
    let long = "x".repeat(10 * 1024);
    let cases: Vec<(String, &[&str])> = vec![
        ("  - shard: broken\n    reason: r\n    until: 2026-02-30\n".into(), &["harper-shards.yml:", "until `2026-02-30` is not a date: month 2 of 2026 has 28 days"]),
        ("  - shard: broken\n    reason: r\n    until: tomorrow\n".into(), &["until `tomorrow` is not a date: write a date as YYYY-MM-DD"]),
        ("  - shard: broken\n    until: 2030-01-01\n".into(), &["quarantine[0].reason", "the quarantine of shard `broken` gives no reason"]),
        ("  - shard: broken\n    reason: \"  \"\n    until: 2030-01-01\n".into(), &["quarantine[0].reason", "gives no reason"]),
        ("  - shard: broken\n    reason: r\n".into(), &["quarantine[0].until", "has no `until`"]),
        ("  - shard: nope\n    reason: r\n    until: 2030-01-01\n".into(), &["quarantine[0].shard", "quarantine names shard `nope`, which the plan does not have", "broken, fine"]),
        ("  - file: t/none.test\n    reason: r\n    until: 2030-01-01\n".into(), &["quarantine[0].file", "quarantine names file `t/none.test`"]),
        ("  - shard: broken\n    file: t/a.test\n    reason: r\n    until: 2030-01-01\n".into(), &["quarantine[0]", "names both a `shard` and a `file`"]),
        ("  - reason: r\n    until: 2030-01-01\n".into(), &["quarantine[0]", "names no `shard` and no `file`"]),
        ("  - shard: broken\n    reason: r\n    until: 2030-01-01\n  - shard: broken\n    reason: s\n    until: 2031-01-01\n".into(), &["quarantine[1].shard", "shard `broken` is quarantined twice", "the other is on line 15"]),
        (format!("  - shard: broken\n    reason: {long}\n    until: 2030-01-01\n"), &["quarantine[0].reason", "the reason is 10 KiB long", "within 1024 bytes"]),
    ];
    for (entry, said) in cases {
        quarantined_plan(&scene, &entry);
        let run = scene.run(&["run"]);
        let err = run.stderr();
        assert_eq!(run.code(), 2, "{entry}: {err}");
        for s in said {
            assert!(err.contains(s), "{entry:.80}: no {s:?} in\n{err:.2000}");
        }
        assert!(err.len() < 4096, "the message quotes no 10 KB value: {}", err.len());
        assert!(!scene.sandbox.path("report").exists(), "nothing started");
    }
}

#[test]
fn a_quarantine_reason_cannot_forge_workflow_commands_or_move_the_cursor() {
    let scene = Scene::new("127.0.120.90", 2);
    quarantined_plan(
        &scene,
        "  - shard: broken\n    reason: \"evil\\r::error title=forged::pwned\\n::error::again\\e[2J\\a\"\n    until: 9999-12-31\n",
    );
    let ActionsStep { code, err, summary: md } = actions_step(&scene, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.lines().any(|l| l.starts_with("::error")), "{err}");
    assert!(!err.contains('\r') && !err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(
        err.lines().any(
            |l| l.starts_with("::warning ") && l.contains("quarantined until 9999-12-31: evil")
        ),
        "{err}"
    );
    assert!(
        !md.contains('\r') && !md.contains('\x1b') && !md.lines().any(|l| l.starts_with("::")),
        "{md:?}"
    );
}
