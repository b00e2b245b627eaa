//! Boot-ahead: with more shards than the concurrency, the next shard's instance boots while the
//! running shards work, its commands wait for the turn, and whatever ends the run before that
//! turn leaves nothing behind. Each test has a pool of its own at 127.0.140.N or 127.0.141.N;
//! the fake server stands in for Harper. Synchronisation is on the other instance's port
//! answering or its pid file appearing, never on a sleep.

use crate::support;

use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::Scene;

/// Waits (up to 20 s, then fails) until something accepts on ADDR:PORT, then runs the rest of
/// its arguments as a command, if any.
const WAIT_UP: &str = r#"import socket, subprocess, sys, time
addr, port, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
end = time.monotonic() + 20
while True:
    try:
        socket.create_connection((addr, port), 0.2).close()
        break
    except OSError:
        if time.monotonic() > end:
            sys.exit("nothing answered on %s:%d" % (addr, port))
        time.sleep(0.02)
sys.exit(subprocess.call(rest) if rest else 0)
"#;

/// A scene of six addresses (one shard at a time may keep the default four on-demand instances
/// and one more may boot ahead), and `wait-up.py` in its folder.
fn scene(start: &str) -> Scene {
    let scene = Scene::new(start, 6);
    scene.sandbox.write("wait-up.py", WAIT_UP);
    scene
}

/// The command that waits until the next address's operations port answers: the next shard's
/// instance is up.
fn wait_for_next(next: &str, then: &str) -> String {
    format!("python3 wait-up.py {next} 9925 {then}")
}

/// A Harper (`harper.bin`, the fake server) whose first start exits 3 before it is ready when
/// its environment names a marker file in `FAILS_ONCE`, and which starts as usual once the marker
/// is there.
fn fails_once(scene: &Scene) -> std::path::PathBuf {
    let script = format!(
        "#!/bin/sh\nif [ -n \"$FAILS_ONCE\" ] && [ ! -e \"$FAILS_ONCE\" ]; then touch \"$FAILS_ONCE\"; exit 3; fi\nexec {} \"$@\"\n",
        support::fake_harper()
    );
    let bin = scene.sandbox.write("fails-once.sh", &script);
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    bin
}

fn shard<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no shard {name}"))
}

fn at(shard: &Value, phase: &str) -> f64 {
    shard["phases"][phase].as_f64().unwrap_or_else(|| panic!("no {phase}: {shard}"))
}

#[test]
fn the_next_shards_instance_boots_while_one_runs_and_its_commands_wait_for_the_turn() {
    let scene = scene("127.0.140.2");
    // At concurrency 1, `a` passes only if `b`'s Harper answers while `a` runs, and `b` only
    // if `c`'s does while `b` runs.
    let shards = format!(
        "  - name: a\n    run: {}\n    timeout: 30s\n  - name: b\n    run: {}\n    timeout: 30s\n  - name: c\n    run: \"true\"\n",
        wait_for_next("127.0.140.3", ""),
        wait_for_next("127.0.140.2", ""),
    );
    scene.plan("", "run: {concurrency: 1, boot_ahead: always}\n", &shards);
    scene.run(&["run"]).expect(0);
    let report = scene.sandbox.report();
    let (a, b, c) = (shard(&report, "a"), shard(&report, "b"), shard(&report, "c"));
    assert_eq!(a["booted_ahead"], false, "the first shard has its turn at once");
    for s in [b, c] {
        assert_eq!(s["booted_ahead"], true, "{s}");
    }
    // Booting while the shard before ran (which passed only once it answered there: the fake
    // server binds its ports a moment before its ready line, so the tool may read that line
    // after the command ended); its commands only after that shard ended.
    for (before, next) in [(a, b), (b, c)] {
        assert!(at(next, "address") < at(before, "commands_done"), "{next}");
        assert!(at(next, "turn") >= at(before, "finished"), "{next}");
        let command = next["commands"][0]["started"].as_f64().expect("started");
        assert!(command >= at(next, "turn"), "{next}");
    }
    scene.assert_nothing_left();
}

#[test]
fn off_boots_each_shard_only_once_it_has_its_turn() {
    let scene = scene("127.0.140.8");
    let shards = "  - name: a\n    run: \"true\"\n  - name: b\n    run: \"true\"\n";
    scene.plan("", "run: {concurrency: 1, boot_ahead: always}\n", shards);
    // The flag (and its variable) replaces the plan's key.
    let run = support::run({
        let mut cmd = scene.command();
        cmd.args(["run"]).env("HARPER_SHARD_BOOT_AHEAD", "off");
        cmd
    });
    run.expect(0);
    let report = scene.sandbox.report();
    let (a, b) = (shard(&report, "a"), shard(&report, "b"));
    assert_eq!(b["booted_ahead"], false);
    assert!(at(b, "address") >= at(a, "finished"), "{b}");
    assert!(b["phases"]["turn"].is_null(), "{b}");
    scene.assert_nothing_left();
}

#[test]
fn under_fail_fast_a_shard_that_booted_ahead_is_skipped_and_its_instance_torn_down() {
    let scene = scene("127.0.140.14");
    let shards = format!(
        "  - name: a\n    run: {}\n    timeout: 30s\n  - name: b\n    run: touch b-ran\n  - name: c\n    run: touch c-ran\n",
        wait_for_next("127.0.140.15", "false"),
    );
    scene.plan("", "run: {concurrency: 1, fail_fast: true, boot_ahead: always}\n", &shards);
    scene.run(&["run"]).expect(1);
    let report = scene.sandbox.report();
    let b = shard(&report, "b");
    assert_eq!(b["status"], "skipped", "{b}");
    let cause = b["cause"].as_str().expect("a cause");
    assert!(cause.contains("booted ahead") && cause.contains("fail_fast"), "{cause}");
    assert!(b["instances"].as_array().is_some_and(Vec::is_empty), "no command touched it: {b}");
    assert!(b["attempts"][0]["instances"][0]["released"].is_f64(), "torn down: {b}");
    assert_eq!(shard(&report, "c")["status"], "skipped");
    assert!(!scene.sandbox.path("b-ran").exists() && !scene.sandbox.path("c-ran").exists());
    scene.assert_nothing_left();
}

/// A run at concurrency 1 on `scene`: `a` sleeps once `b`'s Harper, booted ahead on `next`,
/// answers; then the tool gets `signal`. Returns how the tool ended.
fn signalled_while_b_waits(scene: &Scene, next: &str, signal: Signal) -> ExitStatus {
    let shards = format!(
        "  - name: a\n    run: {}\n  - name: b\n    run: touch b-ran\n",
        wait_for_next(next, "sh -c 'touch a-saw-b; exec sleep 600'"),
    );
    scene.plan("", "run: {concurrency: 1, boot_ahead: always}\n", &shards);
    let mut tool = scene.spawn_run();
    let saw = scene.sandbox.path("a-saw-b");
    scene.sandbox.wait_for("a to see b's Harper", Duration::from_secs(30), || saw.exists());
    kill(Pid::from_raw(tool.id() as i32), signal).expect("signal the tool");
    tool.wait().expect("the tool ends")
}

#[test]
fn sigterm_while_a_shard_waits_for_its_turn_with_harper_up_leaves_nothing_behind() {
    let scene = scene("127.0.140.20");
    let status = signalled_while_b_waits(&scene, "127.0.140.21", Signal::SIGTERM);
    assert_eq!(status.code(), Some(143));
    let report = scene.sandbox.report();
    let b = shard(&report, "b");
    assert_eq!(b["status"], "cancelled", "{b}");
    assert!(b["cause"].as_str().is_some_and(|c| c.contains("booted ahead")), "{b}");
    assert!(!scene.sandbox.path("b-ran").exists());
    scene.assert_nothing_left();
}

#[test]
fn the_dry_run_says_whether_a_plan_boots_ahead_and_why_not() {
    let scene = Scene::new("127.0.140.26", 6);
    let three = "  - name: a\n    run: \"true\"\n  - name: b\n    run: \"true\"\n  - name: c\n    run: \"true\"\n";
    let said = |run: &str, harper: &str| {
        scene.plan("", &format!("{harper}run: {run}\n"), three);
        let out = scene.run(&["run", "--plan"]);
        out.expect(0);
        let stdout = out.stdout();
        let line = stdout.lines().find(|l| l.starts_with("ahead ")).map(str::to_owned);
        line.unwrap_or_else(|| panic!("no `ahead` line: {stdout}"))
    };
    let instances = "  instances: 1\n";
    assert!(said("{concurrency: 2}", instances).ends_with("boots while a CPU is idle"));
    assert!(said("{concurrency: 2, boot_ahead: off}", instances).ends_with(" off"));
    assert!(said("{concurrency: 3}", instances).contains("not used: no shard waits for a turn"));
    // Two running shards with four on-demand instances each need 11 addresses; the pool has 6.
    let small = said("{concurrency: 2}", "");
    assert!(small.contains("the pool has 6 addresses, it needs 11"), "{small}");
    let no_boot = said("{concurrency: 1}", "  boot: false\n");
    assert!(no_boot.contains("no shard boots an instance of its own"), "{no_boot}");
}

#[test]
fn harper_dying_while_its_shard_waits_for_a_turn_fails_the_boot_and_the_retry_runs_on_a_fresh_one()
{
    let scene = scene("127.0.140.32");
    // `b`'s first Harper notes its pid; `a` kills it once it answers, so `b`'s turn finds it
    // gone. `b`'s retry boots a fresh Harper (it writes the file again, and lives).
    let pid_file = scene.sandbox.path("b.pid");
    let pid_file = pid_file.display();
    let shards = format!(
        "  - name: a\n    run: {}\n    timeout: 30s\n  - name: b\n    run: touch b-ran\n    retries: 1\n    harper: {{env: {{FAKE_HARPER: \"started-file={pid_file}\"}}}}\n",
        wait_for_next("127.0.140.33", &format!("sh -c 'kill -9 $(cat {pid_file})'")),
    );
    scene.plan("", "run: {concurrency: 1, boot_ahead: always}\n", &shards);
    scene.run(&["run"]).expect(0);
    let report = scene.sandbox.report();
    let b = shard(&report, "b");
    assert_eq!(b["status"], "flaky", "{b}");
    let first = &b["attempts"][0];
    assert_eq!(first["status"], "boot_failed", "{b}");
    let cause = first["cause"].as_str().expect("a cause");
    assert!(cause.contains("killed by SIGKILL") || cause.contains("SIGKILL"), "{cause}");
    assert!(cause.contains("while its shard waited for a turn"), "{cause}");
    assert!(scene.sandbox.path("b-ran").exists(), "the retry ran the commands");
    scene.assert_nothing_left();
}

#[test]
fn under_fail_fast_a_shard_still_booting_ahead_is_skipped_as_one_that_waited() {
    let scene = scene("127.0.141.2");
    // `b`'s Harper takes 20 s to be ready; `a` fails once it has started.
    let started = scene.sandbox.path("b.pid");
    let started = started.display();
    let shards = format!(
        "  - name: a\n    run: \"until [ -e {started} ]; do sleep 0.02; done; false\"\n    timeout: 30s\n  - name: b\n    run: touch b-ran\n    harper: {{env: {{FAKE_HARPER: \"delay=20s,started-file={started}\"}}}}\n  - name: c\n    run: touch c-ran\n",
    );
    scene.plan("", "run: {concurrency: 1, fail_fast: true, boot_ahead: always}\n", &shards);
    scene.run(&["run"]).expect(1);
    let report = scene.sandbox.report();
    let b = shard(&report, "b");
    assert_eq!(b["booted_ahead"], true, "{b}");
    assert!(b["phases"]["ready"].is_null(), "still booting when `a` failed: {b}");
    assert_eq!(b["status"], "skipped", "{b}");
    let cause = b["cause"].as_str().expect("a cause");
    assert!(cause.contains("booted ahead") && cause.contains("fail_fast"), "{cause}");
    assert_eq!(shard(&report, "c")["status"], "skipped");
    assert!(!scene.sandbox.path("b-ran").exists() && !scene.sandbox.path("c-ran").exists());
    scene.assert_nothing_left();
}

#[test]
fn auto_does_not_boot_ahead_while_the_running_shard_keeps_every_cpu_busy() {
    let scene = scene("127.0.141.8");
    // `busy` has no instance of its own: its command starts at once and spins a niced loop on
    // every CPU the tool reads in /proc/stat for all of its 2 s, so no half second of it leaves
    // a CPU idle. With an idle CPU, `next` would boot half a second in.
    let spin = "for cpu in $(grep '^cpu[0-9]' /proc/stat | cut -d' ' -f1); do timeout 2 nice -n 19 sh -c 'while :; do :; done' & done; wait";
    let shards = format!(
        "  - name: busy\n    run: \"{spin}\"\n    timeout: 20s\n    harper: {{boot: false}}\n  - name: next\n    run: \"true\"\n"
    );
    scene.plan("", "run: {concurrency: 1, boot_ahead: auto}\n", &shards);
    scene.run(&["run"]).expect(0);
    let report = scene.sandbox.report();
    let (busy, next) = (shard(&report, "busy"), shard(&report, "next"));
    assert!(at(busy, "finished") >= 2.0, "it spun for 2 s: {busy}");
    assert_eq!(next["booted_ahead"], false, "{next}");
    assert!(at(next, "address") >= at(busy, "finished"), "{next}");
    scene.assert_nothing_left();
}

#[test]
fn sigkill_of_the_tool_while_a_shard_waits_for_its_turn_with_harper_up_leaves_nothing_behind() {
    let scene = scene("127.0.141.14");
    signalled_while_b_waits(&scene, "127.0.141.15", Signal::SIGKILL);
    // The keepers of `a`'s command and of both Harpers take them down.
    scene.assert_nothing_left_after_a_kill();
    assert!(!scene.sandbox.path("b-ran").exists());
}

#[test]
fn a_retry_of_a_boot_that_failed_ahead_of_the_turn_boots_ahead_again_and_waits_for_the_turn() {
    let scene = scene("127.0.141.20");
    // `b`'s first Harper exits before it is ready; its retry takes the next fresh address, and
    // `a` passes only if that one answers while `a` runs.
    let bin = fails_once(&scene);
    let shards = format!(
        "  - name: a\n    run: {}\n    timeout: 30s\n  - name: b\n    run: \"true\"\n    retries: 1\n    harper: {{bin: {}, env: {{FAILS_ONCE: {}}}}}\n",
        wait_for_next("127.0.141.22", ""),
        bin.display(),
        scene.sandbox.path("b-failed-once").display(),
    );
    scene.plan("", "run: {concurrency: 1, boot_ahead: always}\n", &shards);
    scene.run(&["run"]).expect(0);
    let report = scene.sandbox.report();
    let (a, b) = (shard(&report, "a"), shard(&report, "b"));
    assert_eq!(b["status"], "flaky", "{b}");
    let (first, retry) = (&b["attempts"][0], &b["attempts"][1]);
    assert_eq!(first["status"], "boot_failed", "{b}");
    assert!(first["phases"]["turn"].is_null(), "the boot failed before the turn: {b}");
    assert_eq!(retry["address"], "127.0.141.22", "{b}");
    assert!(at(retry, "address") < at(a, "commands_done"), "booting while a ran: {b}");
    assert!(at(retry, "turn") >= at(a, "finished"), "{b}");
    assert!(retry["commands"][0]["started"].as_f64().expect("started") >= at(retry, "turn"));
    scene.assert_nothing_left();
}

#[test]
fn at_concurrency_one_no_two_shards_commands_overlap_whatever_boots_ahead_and_retries() {
    let scene = scene("127.0.141.26");
    let bin = fails_once(&scene);
    let marker = |name: &str| scene.sandbox.path(&format!("{name}.failed")).display().to_string();
    // Every fourth shard's first boot fails, every fourth's first command fails, every fourth
    // has no instance of its own, the rest pass: each retried once.
    let shards: String = (0..12)
        .map(|i| {
            let name = format!("s{i}");
            let (run, harper) = match i % 4 {
                0 => (
                    "sleep 0.1".to_owned(),
                    format!("{{bin: {}, env: {{FAILS_ONCE: {}}}}}", bin.display(), marker(&name)),
                ),
                1 => (
                    format!(
                        "if [ -e {m} ]; then sleep 0.1; else touch {m}; false; fi",
                        m = marker(&name)
                    ),
                    "{}".to_owned(),
                ),
                2 => ("sleep 0.1".to_owned(), "{boot: false}".to_owned()),
                _ => ("sleep 0.1".to_owned(), "{}".to_owned()),
            };
            format!("  - name: {name}\n    run: \"{run}\"\n    retries: 1\n    harper: {harper}\n")
        })
        .collect();
    scene.plan("", "run: {concurrency: 1, boot_ahead: always}\n", &shards);
    scene.run(&["run"]).expect(0);
    let report = scene.sandbox.report();
    let mut spans: Vec<(f64, f64, String)> = Vec::new();
    for s in report["shards"].as_array().expect("shards") {
        for attempt in s["attempts"].as_array().expect("attempts") {
            for c in attempt["commands"].as_array().expect("commands") {
                if let (Some(from), Some(to)) = (c["started"].as_f64(), c["finished"].as_f64()) {
                    spans.push((
                        from,
                        to,
                        format!(
                            "{} attempt {}",
                            s["name"].as_str().unwrap_or("?"),
                            attempt["attempt"]
                        ),
                    ));
                }
            }
        }
    }
    assert_eq!(spans.len(), 12 + 3, "each shard's command, and the three failed ones again");
    spans.sort_by(|x, y| x.0.total_cmp(&y.0));
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "{} started before {} ended: {pair:?}",
            pair[1].2,
            pair[0].2
        );
    }
    let ahead = report["shards"].as_array().unwrap().iter().filter(|s| s["booted_ahead"] == true);
    assert!(ahead.count() >= 3, "some shards booted ahead: {report}");
    scene.assert_nothing_left();
}
