//! Fault injection: whatever happens to a shard or to the tool itself, nothing it started
//! survives. Every test here ends with the same three checks — no process carrying the test's
//! mark is alive, every plan port on the address is free, and a new run on the same pool gets
//! that very address — plus the claim it is named after.
//!
//! Each test has its own pool directory and its own address (127.0.33.N), so they run in
//! parallel without meeting. Synchronisation is on files the fake server or the command write,
//! and on /proc; never on sleeps.

use crate::support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use harper_shard::process;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{DEFAULT_PORTS, Sandbox, Scene, fake_plan};

/// What only the fault tests ask of a scene.
impl Scene {
    fn file(&self, name: &str) -> PathBuf {
        self.sandbox.path(name)
    }

    fn wait_for_file(&self, name: &str) {
        let path = self.file(name);
        self.sandbox.wait_for(name, Duration::from_secs(30), || path.exists());
    }

    /// `directives` plus the fake server's note of every stop signal it receives, in
    /// [`TERM_FILE`].
    fn noting_term(&self, directives: &str) -> String {
        format!("{directives},term-file={}", self.file(TERM_FILE).display())
    }

    /// Until the server has received its SIGTERM: the tool is in Harper's stop, and with
    /// `ignore-term` the grace is running.
    fn wait_for_harpers_stop(&self) {
        self.wait_for_file(TERM_FILE);
    }

    /// The signals the server received, one `<SIGNAL> <unix-nanos>` line each (none: no file).
    fn signals_noted(&self) -> Vec<(String, u128)> {
        std::fs::read_to_string(self.file(TERM_FILE))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.split_once(' ').and_then(|(sig, at)| Some((sig.to_owned(), at.parse().ok()?)))
            })
            .collect()
    }
}

/// Where a server planned with [`Scene::noting_term`] notes the stop signals it receives.
const TERM_FILE: &str = "harper.term";

/// SIGKILLs the tool and reaps it: from here on only its keepers can clean up.
fn sigkill(tool: &mut Child) {
    kill(Pid::from_raw(tool.id() as i32), Signal::SIGKILL).expect("SIGKILL the tool");
    let _ = tool.wait();
}

/// The comm names of the marked processes still alive.
fn marked_commands(sandbox: &Sandbox) -> Vec<String> {
    sandbox.leftovers().into_iter().map(process::command).collect()
}

fn pids_in(path: &std::path::Path) -> Vec<i32> {
    support::read(path).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn alive(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(process::alive)
}

// --- the tool is SIGKILLed -----------------------------------------------------------------

#[test]
fn sigkill_of_the_tool_while_harper_boots_leaves_nothing_behind() {
    let scene = Scene::new("127.0.33.2", 1);
    let started = scene.file("harper.started");
    scene.plan(
        &format!("delay=30s,started-file={}", started.display()),
        "",
        "  - name: a\n    run: touch ran\n",
    );
    let mut tool = scene.spawn_run();
    scene.wait_for_file("harper.started");
    sigkill(&mut tool);
    scene.assert_nothing_left_after_a_kill();
    assert!(!scene.file("ran").exists());
}

#[test]
fn sigkill_of_the_tool_while_commands_run_leaves_nothing_behind() {
    let scene = Scene::new("127.0.33.3", 1);
    // The command also leaves a daemon in a session of its own, out of every process group.
    let shards =
        "  - name: a\n    run: \"setsid sleep 600 & sleep 600 & touch cmd.started; wait\"\n";
    scene.plan("", "", shards);
    let mut tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    sigkill(&mut tool);
    scene.assert_nothing_left_after_a_kill();
}

#[test]
fn sigkill_of_the_tool_during_teardown_leaves_nothing_behind() {
    let scene = Scene::new("127.0.33.4", 1);
    // The server ignores SIGTERM, so its teardown lasts the whole 3 s grace.
    scene.plan(
        &scene.noting_term("ignore-term"),
        "  teardown: {grace: 3s, port_release: 3s}\n",
        "  - name: a\n    run: \"true\"\n",
    );
    let mut tool = scene.spawn_run();
    scene.wait_for_harpers_stop();
    sigkill(&mut tool);
    scene.assert_nothing_left_after_a_kill();
}

#[test]
fn sigkill_of_the_tool_while_real_harper_boots_leaves_nothing_behind() {
    let scene = Scene::new("127.0.33.5", 1);
    scene.sandbox.write(
        "harper-shards.yml",
        &format!("version: 1\nharper:\n  startup: {{idle: 120s, max: 240s}}\n{}shards:\n  - name: a\n    run: touch ran\n", scene.pool()),
    );
    let mut tool = scene.spawn_run();
    scene.sandbox.wait_for("Harper's node process to start", Duration::from_secs(120), || {
        scene
            .sandbox
            .leftovers()
            .iter()
            .any(|pid| process::cmdline(*pid).is_some_and(|c| c.contains("harperdb.js")))
    });
    sigkill(&mut tool);
    scene.assert_nothing_left_after_a_kill();
    assert!(!scene.file("ran").exists());
}

#[test]
fn without_the_keeper_sigkill_of_the_tool_leaves_the_server_running() {
    // The negative control: the same kill with the keeper bypassed must leave a survivor, or the
    // checks above could not fail.
    let scene = Scene::new("127.0.33.6", 1);
    scene.plan("", "", "  - name: a\n    run: \"touch cmd.started; sleep 600\"\n");
    let mut tool = scene
        .command()
        .arg("run")
        .env("HARPER_SHARD_UNSAFE_NO_KEEPER", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    scene.wait_for_file("cmd.started");
    sigkill(&mut tool);
    let survivors = marked_commands(&scene.sandbox);
    assert!(
        survivors.iter().any(|c| c == "fake-harper"),
        "expected the server to survive: {survivors:?}"
    );
    for pid in scene.sandbox.leftovers() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    scene.assert_nothing_left_after_a_kill();
}

// --- children that misbehave ------------------------------------------------------------------

#[test]
fn a_server_that_ignores_sigterm_is_killed_after_the_grace() {
    let scene = Scene::new("127.0.33.7", 1);
    let started = scene.file("harper.started");
    let directives = scene.noting_term(&format!("ignore-term,started-file={}", started.display()));
    scene.plan(
        &directives,
        "  teardown: {grace: 1s, port_release: 3s}\n",
        "  - name: a\n    run: \"true\"\n",
    );
    let run = scene.run(&["run", "-v"]);
    run.expect(0);
    let noted = scene.signals_noted();
    assert_eq!(
        noted.first().map(|(sig, _)| sig.as_str()),
        Some("SIGTERM"),
        "SIGTERM came first: {noted:?}"
    );
    assert!(run.took >= Duration::from_secs(1), "the grace was not waited: {:?}", run.took);
    // The keeper says so when the grace ran out with the server still there.
    let server = support::read(&started).trim().to_owned();
    let err = run.stderr();
    assert!(
        err.lines().any(|l| l.contains(&format!("pid {server}"))
            && l.contains("within the 1000ms grace and were SIGKILLed")),
        "no word that the server {server} needed SIGKILL: {err}"
    );
    scene.assert_nothing_left();
}

/// The other side of the grace: a server that takes its time over SIGTERM (here its http
/// listener lingers 1.5 s, as Harper's SO_REUSEPORT workers do) gets that time and stops by
/// itself; the teardown lasts until it has, and leaves every port free.
#[test]
fn a_server_that_lingers_after_sigterm_is_given_the_grace_and_stops_by_itself() {
    let scene = Scene::new("127.0.33.23", 1);
    let record = scene.file("record.log");
    scene.plan(
        &scene.noting_term(&format!("linger=1500ms,record={}", record.display())),
        "  teardown: {grace: 10s, port_release: 3s}\n",
        "  - name: a\n    run: \"true\"\n",
    );
    let run = scene.run(&["run", "-v"]);
    run.expect(0);
    let end = support::read(&record)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{} end ", scene.start))?.parse::<u128>().ok())
        .unwrap_or_else(|| panic!("the server did not stop by itself: {}", run.stderr()));
    let term =
        scene.signals_noted().first().map(|(_, at)| *at).expect("the server got its SIGTERM");
    assert!(
        end - term >= Duration::from_millis(1500).as_nanos(),
        "it did not linger: {} ns",
        end - term
    );
    assert!(
        !run.stderr().contains("SIGKILLed"),
        "the lingering server was SIGKILLed: {}",
        run.stderr()
    );
    let phases = &scene.sandbox.report()["shards"][0]["phases"];
    let teardown =
        phases["finished"].as_f64().unwrap() - phases["teardown_started"].as_f64().unwrap();
    assert!(teardown >= 1.5, "the teardown did not wait for the lingering server: {teardown}s");
    scene.assert_nothing_left();
}

/// A shard whose server leaves a process behind with `directive` (its pid in a file, as
/// `FAKE_HARPER_DAEMON_PIDFILE` asks): that process is gone after the run, and so is the rest.
fn what_the_server_left_behind_is_ended(addr: &'static str, directive: &str) {
    let scene = Scene::new(addr, 1);
    let pidfile = scene.file("left.pids");
    scene.plan(directive, "", "  - name: a\n    run: \"true\"\n");
    // The server inherits the tool's environment through its keeper.
    let output =
        scene.command().arg("run").env("FAKE_HARPER_DAEMON_PIDFILE", &pidfile).output().unwrap();
    support::Run { output, took: Duration::ZERO }.expect(0);
    let left = pids_in(&pidfile);
    assert_eq!(left.len(), 1, "the fake server left nothing behind with {directive}");
    assert!(!alive(left[0]), "{directive}: pid {} survived the teardown", left[0]);
    scene.assert_nothing_left();
}

#[test]
fn a_daemon_that_left_the_process_group_is_ended_by_the_keeper() {
    what_the_server_left_behind_is_ended("127.0.33.8", "daemon");
}

#[test]
fn a_double_forked_grandchild_holding_the_ports_is_ended() {
    what_the_server_left_behind_is_ended("127.0.33.9", "double-fork");
}

/// The same orphan without a port: the port check cannot see it, only the keeper can.
#[test]
fn a_double_forked_grandchild_holding_no_port_is_ended_too() {
    what_the_server_left_behind_is_ended("127.0.33.24", "double-fork-nolisten");
}

/// A boot that fails: exit 3, no command ran, the instance directory is gone. The scene (with
/// its report directory) and what the tool said.
fn boot_fails_and_leaves_nothing(
    addr: &'static str,
    directives: &str,
    startup: &str,
) -> (Scene, String) {
    let scene = Scene::new(addr, 1);
    scene.plan(directives, "", "  - name: a\n    run: touch ran\n");
    let plan = support::read(&scene.file("harper-shards.yml"))
        .replace("startup: {idle: 10s, max: 20s}", startup);
    scene.sandbox.write("harper-shards.yml", &plan);
    let run = scene.run(&["run"]);
    run.expect(3);
    assert!(!scene.file("ran").exists());
    let left: Vec<_> = std::fs::read_dir(scene.file("w"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the failed instance's ROOTPATH/HOME were left: {left:?}");
    scene.assert_nothing_left();
    (scene, run.stderr())
}

#[test]
fn an_exit_0_before_ready_fails_the_boot_wipes_rootpath_and_leaves_nothing() {
    let (_, err) =
        boot_fails_and_leaves_nothing("127.0.33.10", "exit=0", "startup: {idle: 10s, max: 20s}");
    assert!(err.contains("Harper exited before it was ready: exit code 0"), "{err}");
    assert!(err.contains("upgrade"), "the tail quotes the server's last words: {err}");
}

#[test]
fn a_silent_hang_fails_the_boot_at_the_idle_cap_and_leaves_nothing() {
    let (_, err) =
        boot_fails_and_leaves_nothing("127.0.33.11", "hang", "startup: {idle: 1s, max: 20s}");
    assert!(err.contains("printed nothing for 1s while starting (idle cap)"), "{err}");
}

#[test]
fn endless_chatter_fails_the_boot_at_the_absolute_cap_and_leaves_nothing() {
    let (_, err) = boot_fails_and_leaves_nothing(
        "127.0.33.12",
        "chatter=100ms",
        "startup: {idle: 1s, max: 2s}",
    );
    assert!(err.contains("not ready within 2s (absolute cap)"), "{err}");
}

/// The client sends `startup.idle` equal to `startup.max` when `startupTimeoutMs ==
/// startupMaxMs`: then the absolute cap runs out first, and a Harper that printed nothing is
/// said to have printed nothing, not to have kept printing.
#[test]
fn a_silent_hang_with_the_idle_cap_equal_to_the_absolute_cap_is_said_to_have_printed_nothing() {
    let (_, err) =
        boot_fails_and_leaves_nothing("127.0.33.77", "hang", "startup: {idle: 1s, max: 1s}");
    assert!(err.contains("not ready within 1s (absolute cap): it printed nothing for 1s"), "{err}");
    assert!(!err.contains("kept printing"), "{err}");
}

/// What a ROOTPATH too long for Harper's unix socket does (docs/harper.md): it binds and
/// serves, so the probe would pass, but never prints its ready line. Only the line counts.
#[test]
fn a_server_that_serves_but_never_prints_the_ready_line_fails_the_boot_at_the_idle_cap() {
    let (scene, err) = boot_fails_and_leaves_nothing(
        "127.0.33.22",
        "no-ready-line",
        "startup: {idle: 1s, max: 20s}",
    );
    assert!(err.contains("printed nothing for 1s while starting (idle cap)"), "{err}");
    let log = support::read(&scene.file("report/a/harper/hdb.log"));
    assert!(
        log.contains("OPERATIONSAPI_NETWORK_PORT listening on"),
        "the server never served: {log}"
    );
}

// --- ports held by someone else -------------------------------------------------------------

/// A listener on the operations port that appears after the pool's canary passed: the boot is
/// refused naming the holder, teardown names it again, the run exits 3 — and once the squatter
/// is gone the address is as good as new.
fn squatter_after_the_canary(addr: &'static str, reuseport: bool) {
    let scene = Scene::new(addr, 1);
    let started = scene.file("harper.started");
    scene.plan(
        &format!("delay=1s,started-file={}", started.display()),
        "  teardown: {grace: 2s, port_release: 1s}\n",
        "  - name: a\n    run: touch ran\n",
    );
    let tool = scene.spawn_run();
    scene.wait_for_file("harper.started");
    let squatter = listen(addr.parse().unwrap(), 9925, reuseport);
    let out = tool.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(!scene.file("ran").exists());
    let me = format!("pid {}", std::process::id());
    let cause =
        scene.sandbox.report()["shards"][0]["cause"].as_str().unwrap_or_default().to_owned();
    assert!(
        cause.contains("port 9925") && cause.contains(&me),
        "the cause names neither port nor holder: {cause}"
    );
    assert!(
        cause.contains("teardown: port 9925"),
        "teardown did not report the held port: {cause}"
    );
    drop(squatter);
    scene.assert_nothing_left();
}

fn listen(addr: Ipv4Addr, port: u16, reuseport: bool) -> TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    if reuseport {
        socket.set_reuse_port(true).unwrap();
    }
    socket.bind(&SocketAddr::from((addr, port)).into()).unwrap();
    socket.listen(16).unwrap();
    socket.into()
}

#[test]
fn a_plain_listener_appearing_after_the_canary_refuses_the_boot_and_is_named() {
    squatter_after_the_canary("127.0.33.13", false);
}

#[test]
fn a_reuseport_listener_appearing_after_the_canary_refuses_the_boot_and_is_named() {
    squatter_after_the_canary("127.0.33.14", true);
}

#[test]
fn an_escaped_daemon_holding_the_ports_refuses_the_boot_and_is_still_ended() {
    let scene = Scene::new("127.0.33.15", 1);
    scene.plan("daemon-listen", "", "  - name: a\n    run: touch ran\n");
    let run = scene.run(&["run"]);
    run.expect(3);
    let cause =
        scene.sandbox.report()["shards"][0]["cause"].as_str().unwrap_or_default().to_owned();
    assert!(cause.contains("also held by pid") && cause.contains("fake-harper"), "{cause}");
    scene.assert_nothing_left();
}

// --- the tool's own signals -------------------------------------------------------------------

/// Two shards whose servers ignore SIGTERM and whose commands never end; one signal to the
/// tool. The plan's 5 s grace would make two sequential stops 10 s: under a signal they fit in 7.
fn one_signal_tears_everything_down(addr: &'static str, signal: Signal, code: i32) {
    let scene = Scene::new(addr, 1);
    let shards = "  - name: a\n    run: \"touch a.started; sleep 600\"\n  - name: b\n    run: \"touch b.started; sleep 600\"\n";
    scene.plan(
        "ignore-term",
        "  teardown: {grace: 5s, port_release: 3s}\nrun: {concurrency: 2}\n",
        shards,
    );
    let plan = support::read(&scene.file("harper-shards.yml")).replace("count: 1", "count: 2");
    scene.sandbox.write("harper-shards.yml", &plan);
    let tool = scene.spawn_run();
    scene.wait_for_file("a.started");
    scene.wait_for_file("b.started");
    let sent = Instant::now();
    kill(Pid::from_raw(tool.id() as i32), signal).unwrap();
    let out = tool.wait_with_output().unwrap();
    let took = sent.elapsed();
    assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took < Duration::from_secs(7), "teardown under {signal} took {took:?}");
    let report = scene.sandbox.report();
    for shard in report["shards"].as_array().unwrap() {
        assert_eq!(shard["status"], "cancelled", "{shard}");
    }
    assert_eq!(report["exit_code"], code);
    scene.assert_nothing_left();
    // The second address of the pool is free too.
    let second: Ipv4Addr = addr.parse().unwrap();
    let second = Ipv4Addr::from(u32::from(second) + 1).to_string();
    assert!(support::ports_free(&second, &DEFAULT_PORTS));
}

#[test]
fn sigterm_tears_every_shard_down_within_7s_and_exits_143() {
    one_signal_tears_everything_down("127.0.33.16", Signal::SIGTERM, 143);
}

#[test]
fn sigint_tears_every_shard_down_within_7s_and_exits_130() {
    one_signal_tears_everything_down("127.0.33.18", Signal::SIGINT, 130);
}

/// The second signal comes while Harper's stop (SIGTERM ignored, the grace running) is under
/// way: the tool does not wait for it. By the time it has exited with the first signal's
/// status, the server has been sent SIGKILL, and no report was written (README: "a second
/// signal … writes no report"), which the teardown would have done.
#[test]
fn a_second_signal_kills_everything_at_once() {
    let scene = Scene::new("127.0.33.20", 1);
    let started = scene.file("harper.started");
    scene.plan(
        &scene.noting_term(&format!("ignore-term,started-file={}", started.display())),
        "  teardown: {grace: 60s, port_release: 3s}\n",
        "  - name: a\n    run: \"touch a.started; sleep 600\"\n",
    );
    let tool = scene.spawn_run();
    scene.wait_for_file("a.started");
    let server: u32 = support::read(&started).trim().parse().unwrap();
    let sent_sigkill = |pid| process::kill_sent(pid).expect("pending signals are read from /proc");
    let pid = Pid::from_raw(tool.id() as i32);
    kill(pid, Signal::SIGINT).unwrap();
    scene.wait_for_harpers_stop();
    assert!(!sent_sigkill(server), "the precondition: the server is in its grace");
    kill(pid, Signal::SIGINT).unwrap();
    let out = tool.wait_with_output().unwrap();
    assert!(sent_sigkill(server), "the tool exited with the server {server} still in its grace");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !scene.file("report/report.json").exists(),
        "the tool waited for the teardown and wrote its report"
    );
    scene.assert_nothing_left_after_a_kill();
}

// --- the keeper itself is signalled -----------------------------------------------------------

#[test]
fn sighup_to_a_keeper_tears_its_child_down_instead_of_leaving_it() {
    let scene = Scene::new("127.0.33.21", 1);
    scene.plan("", "", "  - name: a\n    run: \"touch cmd.started; sleep 600\"\n");
    let tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    let keeper = scene
        .sandbox
        .leftovers()
        .into_iter()
        .find(|pid| {
            process::cmdline(*pid)
                .is_some_and(|c| c.contains("__keeper") && c.contains("sleep 600"))
        })
        .expect("the command's keeper");
    kill(Pid::from_raw(keeper as i32), Signal::SIGHUP).unwrap();
    let out = tool.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("killed by SIGTERM"),
        "the command was not torn down by its keeper: {err}"
    );
    scene.assert_nothing_left();
}

// --- the tool and its keepers die together ---------------------------------------------------

/// The one case no keeper can cover: the tool and every keeper SIGKILLed at once, while Harper
/// has a daemon that left its session. Harper dies with its keeper (parent-death signal); the
/// daemon, reparented to init, lives on with the shard's token — until the next run takes the
/// address, which must end it before handing the address out.
#[test]
fn a_daemon_left_by_a_run_killed_with_its_keepers_is_ended_by_the_next_acquire() {
    let scene = Scene::new("127.0.33.30", 1);
    let daemon_file = scene.file("daemon.pid");
    scene.plan("daemon", "", "  - name: a\n    run: \"touch cmd.started; sleep 600\"\n");
    let plan = support::read(&scene.file("harper-shards.yml")).replace(
        "FAKE_HARPER: \"daemon\"",
        &format!(
            "FAKE_HARPER: \"daemon\", FAKE_HARPER_DAEMON_PIDFILE: \"{}\"",
            daemon_file.display()
        ),
    );
    scene.sandbox.write("harper-shards.yml", &plan);
    let mut tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    let daemon = pids_in(&daemon_file)[0];
    let keepers: Vec<i32> = scene
        .sandbox
        .leftovers()
        .into_iter()
        .filter(|pid| process::cmdline(*pid).is_some_and(|c| c.contains("__keeper")))
        .map(|pid| pid as i32)
        .collect();
    assert_eq!(keepers.len(), 2, "one keeper for Harper, one for the command");
    for pid in keepers.iter().copied().chain([tool.id() as i32]) {
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL the tool and its keepers");
    }
    let _ = tool.wait();
    scene.sandbox.wait_for("the keepers to die", Duration::from_secs(10), || {
        keepers.iter().all(|k| !alive(*k))
    });
    assert!(alive(daemon), "the precondition: with every keeper gone, the escaped daemon survives");

    let reuse = fake_plan("", "", "  - name: next\n    run: \"true\"\n")
        .replace("shards:\n", &format!("{}shards:\n", scene.pool()));
    scene.sandbox.write("next.yml", &reuse);
    let run = scene.run(&["run", "next.yml"]);
    run.expect(0);
    assert!(
        !alive(daemon),
        "the next acquire of {} did not end the daemon carrying the old token",
        scene.start
    );
    assert!(
        run.stderr().contains(&format!("pid {daemon} (fake-harper)")),
        "the sweep names what it ended: {}",
        run.stderr()
    );
    scene.assert_nothing_left();
}

// --- the shard's own setup fails -------------------------------------------------------------

/// A fixture that cannot be copied (a FIFO would block the copy forever) fails the shard with
/// exit 3 and a cause that names the file, before Harper starts — and still goes through
/// teardown, so the instance's directories and the address are left as they were found.
#[test]
fn a_fixture_that_cannot_be_copied_fails_the_shard_and_leaves_nothing() {
    let scene = Scene::new("127.0.33.31", 1);
    std::fs::create_dir_all(scene.file("component")).unwrap();
    scene.sandbox.write("component/config.yaml", "rest: true\n");
    nix::unistd::mkfifo(&scene.file("component/pipe"), nix::sys::stat::Mode::S_IRWXU)
        .expect("mkfifo");
    let started = scene.file("harper.started");
    scene.plan(
        &format!("started-file={}", started.display()),
        "  fixtures: [component]\n",
        "  - name: a\n    run: touch ran\n",
    );
    let run = scene.run(&["run"]);
    run.expect(3);
    assert!(
        run.stderr().contains("component/pipe is not a file, a directory or a link"),
        "{}",
        run.stderr()
    );
    assert!(
        !started.exists() && !scene.file("ran").exists(),
        "Harper or the command started anyway"
    );
    let work: Vec<_> = std::fs::read_dir(scene.file("w"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(work.is_empty(), "instance directories left behind: {work:?}");
    let junit = support::read(&scene.file("report/junit.xml"));
    assert!(
        junit.contains("set up and supervise the shard")
            && junit.contains("<error")
            && junit.contains("component/pipe"),
        "an exit 3 with a green junit.xml: {junit}"
    );
    scene.assert_nothing_left();
}

// --- a keeper dies ---------------------------------------------------------------------------

/// The keeper of the marked process whose command line holds `needle`.
fn keeper_of(sandbox: &Sandbox, needle: &str) -> i32 {
    sandbox
        .leftovers()
        .into_iter()
        .find(|&pid| {
            process::cmdline(pid).is_some_and(|c| c.contains("__keeper") && c.contains(needle))
        })
        .map(|pid| pid as i32)
        .unwrap_or_else(|| panic!("no keeper for `{needle}`"))
}

/// A command's keeper is SIGKILLed: `sh` dies with it (parent-death signal), its background
/// sleep (in its group) and a daemon (in a session of its own) are reparented to init. The
/// tool must end both — the group by its id, the daemon by the child's token — fail the shard
/// as its own failure (exit 3), and say that the keeper died, not that a test failed.
#[test]
fn a_command_keeper_that_dies_leaves_none_of_its_children_and_is_an_infrastructure_failure() {
    let scene = Scene::new("127.0.33.40", 1);
    let command = "sleep 961 & setsid sh -c 'echo $$ > daemon.pid; exec sleep 962' & \
                   until [ -s daemon.pid ]; do sleep 0.01; done; touch cmd.started; wait";
    scene.plan("", "", &format!("  - name: a\n    run: \"{command}\"\n"));
    let tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    kill(Pid::from_raw(keeper_of(&scene.sandbox, "sleep 961")), Signal::SIGKILL).unwrap();
    let out = tool.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("keeper (pid") && err.contains("died"), "the true cause is given: {err}");
    assert!(
        err.contains("the tool killed its group"),
        "what the tool did in the keeper's place is said: {err}"
    );
    let daemon = pids_in(&scene.file("daemon.pid"))[0];
    assert!(
        err.contains(&format!("pid {daemon} (sleep)")),
        "the daemon found by its token is named: {err}"
    );
    assert!(
        !marked_commands(&scene.sandbox).iter().any(|c| c == "sleep"),
        "a sleep survived its keeper"
    );
    assert!(
        scene.file("pool/127.0.33.40.json").is_file(),
        "the record is kept for the next owner's sweep"
    );
    scene.assert_nothing_left();
}

/// Harper's keeper is SIGKILLed while a command runs: Harper dies with it, but its daemon,
/// in a session of its own, lives on with the shard's token. Teardown must end it and say so.
#[test]
fn a_harper_keeper_that_dies_leaves_no_daemon_and_is_an_infrastructure_failure() {
    let scene = Scene::new("127.0.33.41", 1);
    let daemon_file = scene.file("daemon.pid");
    scene.plan(
        "daemon",
        "",
        "  - name: a\n    run: \"touch cmd.started; until [ -e go ]; do sleep 0.02; done\"\n",
    );
    let plan = support::read(&scene.file("harper-shards.yml")).replace(
        "FAKE_HARPER: \"daemon\"",
        &format!(
            "FAKE_HARPER: \"daemon\", FAKE_HARPER_DAEMON_PIDFILE: \"{}\"",
            daemon_file.display()
        ),
    );
    scene.sandbox.write("harper-shards.yml", &plan);
    let tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    let daemon = pids_in(&daemon_file)[0];
    let keeper = keeper_of(&scene.sandbox, "fake-harper");
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    scene.sandbox.wait_for("Harper's keeper to die", Duration::from_secs(10), || !alive(keeper));
    scene.sandbox.write("go", "");
    let out = tool.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("keeper (pid {keeper}) died")), "{err}");
    assert!(!alive(daemon), "Harper's daemon outlived its keeper's death");
    scene.assert_nothing_left();
}

/// A command whose keeper cannot start its program (here `sh` is not on the shard's PATH) is
/// the tool's failure, exit 3, not a test that failed.
#[test]
fn a_command_that_cannot_be_started_is_an_infrastructure_failure() {
    let scene = Scene::new("127.0.33.42", 1);
    scene.plan("", "", "  - name: a\n    run: \"true\"\n    env: {PATH: /nonexistent}\n");
    let run = scene.run(&["run"]);
    run.expect(3);
    assert!(run.stderr().contains("cannot start `sh`"), "{}", run.stderr());
    assert_eq!(scene.sandbox.report()["shards"][0]["status"], "infrastructure");
    scene.assert_nothing_left();
}

// --- a killed run's directories ----------------------------------------------------------------

/// The tool is SIGKILLed: its keepers end every process, but only the tool removes instance
/// directories. They are in the slot's record, `pool status` shows them, and the next owner
/// of the address removes them. The shard's control directory goes with the next run.
#[test]
fn instance_directories_of_a_killed_run_are_shown_by_pool_status_and_removed_by_the_next_owner() {
    let scene = Scene::new("127.0.33.43", 1);
    scene.plan("", "", "  - name: a\n    run: \"touch cmd.started; sleep 600\"\n");
    let mut tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    sigkill(&mut tool);
    scene.sandbox.wait_for("the keepers to finish", Duration::from_secs(15), || {
        scene.sandbox.leftovers().is_empty()
    });
    let (control, instance): (Vec<PathBuf>, Vec<PathBuf>) = std::fs::read_dir(scene.file("w"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .partition(|p| p.file_name().unwrap().to_string_lossy().starts_with("ctl-"));
    assert_eq!(instance.len(), 1, "the killed run's instance directory is there: {instance:?}");
    assert_eq!(control.len(), 1, "the killed run's control directory is there: {control:?}");
    let mut status = scene.command();
    let status =
        status.args(["pool", "status", "--plan-file", "harper-shards.yml"]).output().unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains(&instance[0].display().to_string()),
        "pool status does not show it: {shown}"
    );
    scene.assert_nothing_left_after_a_kill();
    assert!(
        !instance[0].exists(),
        "the next owner of {} left {} behind",
        scene.start,
        instance[0].display()
    );
    assert!(
        !control[0].exists(),
        "the next run left the dead run's {} behind",
        control[0].display()
    );
}

// --- the tool's own signals --------------------------------------------------------------------

#[test]
fn sighup_tears_every_shard_down_within_7s_and_exits_129() {
    one_signal_tears_everything_down("127.0.33.44", Signal::SIGHUP, 129);
}

#[test]
fn sigquit_tears_every_shard_down_within_7s_and_exits_131() {
    one_signal_tears_everything_down("127.0.33.46", Signal::SIGQUIT, 131);
}

/// Sends `signal` once `ready` holds, and checks the run's promise under it: exit 128 + signal
/// within 7 s, the report written, nothing left.
fn signal_in_phase(
    scene: &Scene,
    mut cmd: std::process::Command,
    signal: Signal,
    ready: impl Fn() -> bool,
) {
    let tool =
        cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start harper-shard");
    scene.sandbox.wait_for("the phase to begin", Duration::from_secs(30), &ready);
    let sent = Instant::now();
    kill(Pid::from_raw(tool.id() as i32), signal).unwrap();
    let out = tool.wait_with_output().unwrap();
    let took = sent.elapsed();
    assert_eq!(
        out.status.code(),
        Some(128 + signal as i32),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(7), "{signal} took {took:?} to end the run");
    assert!(scene.file("report/report.json").is_file(), "no report after {signal}");
    scene.sandbox.wait_for("every marked process to end", Duration::from_secs(3), || {
        scene.sandbox.leftovers().is_empty()
    });
}

#[test]
fn a_signal_during_the_first_install_stops_npm_and_exits_within_7s() {
    for (addr, signal) in [("127.0.33.48", Signal::SIGINT), ("127.0.33.49", Signal::SIGTERM)] {
        let scene = Scene::new(addr, 1);
        let plan = format!(
            "version: 1\nharper:\n  package: harperdb@0.0.0-test\n{}shards:\n  - name: a\n    run: touch ran\n",
            scene.pool()
        );
        scene.sandbox.write("harper-shards.yml", &plan);
        let mut cmd = scene.command();
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        cmd.arg("run")
            .env("HARPER_SHARD_CACHE_DIR", scene.file("cache"))
            .env("HARPER_SHARD_NPM", fixtures.join("fake-npm"))
            .env("FAKE_NPM_LOG", scene.file("npm.log"))
            .env("FAKE_NPM_HANG", scene.file("npm.started"));
        signal_in_phase(&scene, cmd, signal, || scene.file("npm.started").exists());
        assert!(!scene.file("ran").exists());
        let installed = support::installed_package(&scene.file("cache"), "harperdb@0.0.0-test");
        assert!(!installed.exists(), "a cancelled install was kept");
    }
}

#[test]
fn a_signal_while_waiting_for_an_address_exits_within_7s() {
    for (addr, signal) in [("127.0.33.50", Signal::SIGINT), ("127.0.33.60", Signal::SIGTERM)] {
        let scene = Scene::new(addr, 1);
        scene.plan("", "", "  - name: a\n    run: touch ran\n");
        let plan = support::read(&scene.file("harper-shards.yml")).replace("wait: 5s", "wait: 60s");
        scene.sandbox.write("harper-shards.yml", &plan);
        // The test holds the only address's lock, as another run would.
        let dir = scene.file("pool");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let lock = std::fs::File::create(dir.join(format!("{addr}.lock"))).unwrap();
        let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .expect("hold the slot");
        let mut cmd = scene.command();
        cmd.arg("run");
        let report_dir = scene.file("report");
        // The run waits for its address once it has made its report directory.
        signal_in_phase(&scene, cmd, signal, || report_dir.exists());
        assert!(!scene.file("ran").exists());
    }
}

#[test]
fn a_signal_while_harper_boots_exits_within_7s() {
    for (addr, signal) in [("127.0.33.51", Signal::SIGINT), ("127.0.33.61", Signal::SIGTERM)] {
        let scene = Scene::new(addr, 1);
        let started = scene.file("harper.started");
        scene.plan(
            &format!("delay=60s,started-file={}", started.display()),
            "",
            "  - name: a\n    run: touch ran\n",
        );
        let mut cmd = scene.command();
        cmd.arg("run");
        signal_in_phase(&scene, cmd, signal, || started.exists());
        scene.assert_nothing_left();
    }
}

/// Harper ignores SIGTERM and the plan's grace is a minute: the signal's budget caps the stop.
#[test]
fn a_signal_during_teardown_exits_within_7s() {
    for (addr, signal) in [("127.0.33.52", Signal::SIGINT), ("127.0.33.62", Signal::SIGTERM)] {
        let scene = Scene::new(addr, 1);
        scene.plan(
            &scene.noting_term("ignore-term"),
            "  teardown: {grace: 60s, port_release: 3s}\n",
            "  - name: a\n    run: \"true\"\n",
        );
        let mut cmd = scene.command();
        cmd.arg("run");
        signal_in_phase(&scene, cmd, signal, || scene.file(TERM_FILE).exists());
        scene.assert_nothing_left();
    }
}

/// After the shards, the check run: a Checks API that accepts and never answers. A signal then
/// still ends the tool at once.
#[test]
fn a_signal_while_the_check_run_hangs_exits_at_once() {
    for (addr, signal) in [("127.0.33.53", Signal::SIGINT), ("127.0.33.63", Signal::SIGTERM)] {
        let scene = Scene::new(addr, 1);
        scene.plan("", "", "  - name: a\n    run: \"true\"\n");
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", api.local_addr().unwrap());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hang = {
            let accepted = accepted.clone();
            std::thread::spawn(move || {
                let (conn, _) = api.accept().expect("the tool connects");
                accepted.store(true, std::sync::atomic::Ordering::SeqCst);
                // Holds the connection open without a word until the tool is gone.
                let mut buf = [0u8; 4096];
                let mut conn = conn;
                while std::io::Read::read(&mut conn, &mut buf).is_ok_and(|n| n > 0) {}
            })
        };
        let mut cmd = scene.command();
        cmd.args(["run", "--github-checks"])
            .env("GITHUB_TOKEN", "t")
            .env("GITHUB_REPOSITORY", "o/r")
            .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
            .env("GITHUB_API_URL", &url);
        signal_in_phase(&scene, cmd, signal, || accepted.load(std::sync::atomic::Ordering::SeqCst));
        hang.join().unwrap();
    }
}

// --- the tool is suspended ------------------------------------------------------------------

/// SIGSTOP the tool, let `done` happen and `longer` pass (more than any cap), SIGCONT: what was
/// waiting in the pipes decides, not the clock.
fn suspend_until(tool: &Child, scene: &Scene, done: impl Fn() -> bool, longer: Duration) {
    let pid = Pid::from_raw(tool.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    scene.sandbox.wait_for(
        "the child to finish while the tool is stopped",
        Duration::from_secs(30),
        done,
    );
    // The suspension itself is the fault under test: it must outlast the caps.
    std::thread::sleep(longer);
    kill(pid, Signal::SIGCONT).unwrap();
}

#[test]
fn a_tool_suspended_while_harper_became_ready_sees_the_ready_line_not_the_idle_cap() {
    let scene = Scene::new("127.0.33.54", 1);
    let (started, record) = (scene.file("harper.started"), scene.file("record.log"));
    let directives =
        format!("delay=500ms,started-file={},record={}", started.display(), record.display());
    scene.plan(
        &directives,
        "  startup: {idle: 2s, max: 20s}\n",
        "  - name: a\n    run: \"true\"\n",
    );
    let plan = support::read(&scene.file("harper-shards.yml")).replacen(
        "  startup: {idle: 10s, max: 20s}\n",
        "",
        1,
    );
    scene.sandbox.write("harper-shards.yml", &plan);
    let tool = scene.spawn_run();
    scene.wait_for_file("harper.started");
    suspend_until(&tool, &scene, || record.exists(), Duration::from_secs(3));
    let out = tool.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    scene.assert_nothing_left();
}

#[test]
fn a_tool_suspended_while_a_command_finished_reports_it_passed_not_timed_out() {
    let scene = Scene::new("127.0.33.55", 1);
    scene.plan(
        "",
        "",
        "  - name: a\n    run: \"touch cmd.started; sleep 0.5; touch cmd.done\"\n    timeout: 2s\n",
    );
    let tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    suspend_until(&tool, &scene, || scene.file("cmd.done").exists(), Duration::from_secs(3));
    let out = tool.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    scene.assert_nothing_left();
}

/// A stderr line between the two halves of the ready line does not hide it.
#[test]
fn a_ready_line_split_by_stderr_output_is_still_seen() {
    let scene = Scene::new("127.0.33.56", 1);
    scene.plan(
        "split-ready,stderr-noise",
        "  startup: {idle: 3s, max: 6s}\n",
        "  - name: a\n    run: \"true\"\n",
    );
    let plan = support::read(&scene.file("harper-shards.yml")).replacen(
        "  startup: {idle: 10s, max: 20s}\n",
        "",
        1,
    );
    scene.sandbox.write("harper-shards.yml", &plan);
    scene.run(&["run"]).expect(0);
    scene.assert_nothing_left();
}

// --- the work directory -----------------------------------------------------------------------

/// A work directory another user could write is refused before anything starts: Harper runs
/// the components under ROOTPATH as code.
#[test]
fn a_world_writable_work_directory_is_refused_and_nothing_starts() {
    let scene = Scene::new("127.0.33.57", 1);
    let started = scene.file("harper.started");
    scene.plan(
        &format!("started-file={}", started.display()),
        "",
        "  - name: a\n    run: touch ran\n",
    );
    std::fs::create_dir_all(scene.file("w")).unwrap();
    std::fs::set_permissions(scene.file("w"), std::os::unix::fs::PermissionsExt::from_mode(0o1777))
        .unwrap();
    let run = scene.run(&["run"]);
    run.expect(3);
    assert!(run.stderr().contains("writable by others (mode 1777)"), "{}", run.stderr());
    assert!(run.stderr().contains("HARPER_SHARD_WORK_DIR"), "{}", run.stderr());
    assert!(!started.exists() && !scene.file("ran").exists());
}

#[test]
fn a_dotted_work_directory_is_refused_by_the_dry_run_with_exit_2() {
    let scene = Scene::new("127.0.33.58", 1);
    scene.plan("", "", "  - name: a\n    run: touch ran\n");
    let mut cmd = scene.command();
    let out =
        cmd.args(["run", "--plan"]).env("HARPER_SHARD_WORK_DIR", "/tmp/my.work").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("HARPER_SHARD_WORK_DIR=/tmp/my.work") && err.contains("backtracks"),
        "{err}"
    );
}

/// Harper's unix socket sits at `<work>/<instance>/r/operations-server`, and past ~107 bytes
/// Harper never prints its ready line (see the test above it). A work directory longer than 60
/// bytes is refused before anything starts; one of exactly 60 runs.
#[test]
fn a_work_directory_too_long_for_harpers_socket_is_refused_and_nothing_starts() {
    let scene = Scene::new("127.0.33.25", 1);
    let started = scene.file("harper.started");
    scene.plan(
        &format!("started-file={}", started.display()),
        "",
        "  - name: a\n    run: touch ran\n",
    );
    let fits = |len: usize| {
        let base = scene.file("w").display().to_string();
        format!("{base}/{}", "x".repeat(len - base.len() - 1))
    };
    let (longest, too_long) = (fits(60), fits(61));
    for args in [&["run", "--plan"][..], &["run"]] {
        let out =
            scene.command().args(args).env("HARPER_SHARD_WORK_DIR", &too_long).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("HARPER_SHARD_WORK_DIR={too_long}"))
                && err.contains("61 bytes long"),
            "{args:?}: {err}"
        );
    }
    assert!(
        !started.exists() && !scene.file("ran").exists() && !Path::new(&too_long).exists(),
        "something started"
    );
    let out = scene.command().arg("run").env("HARPER_SHARD_WORK_DIR", &longest).output().unwrap();
    support::Run { output: out, took: Duration::ZERO }.expect(0);
    assert!(scene.file("ran").exists());
    std::fs::remove_dir(&longest).expect("the run leaves its work directory empty");
    scene.assert_nothing_left();
}

/// The run's timeout cuts a shard short: in junit.xml that is an error (not tested, and the
/// run's own failure), not a skipped test that a CI view would show as fine.
#[test]
fn a_shard_cut_short_by_the_run_timeout_is_an_error_in_junit() {
    let scene = Scene::new("127.0.33.59", 1);
    scene.plan(
        "",
        "",
        "run: {timeout: 1s}\n  - name: a\n    run: \"touch cmd.started; sleep 600\"\n",
    );
    let plan = support::read(&scene.file("harper-shards.yml")).replace("run: {timeout: 1s}\n", "");
    let plan = plan.replace("shards:\n", "run: {timeout: 1s}\nshards:\n");
    scene.sandbox.write("harper-shards.yml", &plan);
    let run = scene.run(&["run"]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("the run's timeout (1s) ran out"), "{}", run.stderr());
    let junit = support::read(&scene.file("report/junit.xml"));
    assert!(junit.contains("type=\"run-timeout\""), "{junit}");
    assert!(!junit.contains("<skipped"), "a timed-out shard is shown as skipped: {junit}");
    scene.assert_nothing_left();
}

/// The keeper of a life started on another Harper (`ctl start --set bin=`) is SIGKILLed: that
/// life is supervised as the first was, so Harper dies with its keeper, the shard is an
/// infrastructure failure that says so, and nothing is left.
#[test]
fn the_keeper_of_a_life_on_another_harper_dies_and_nothing_is_left() {
    use std::os::unix::fs::PermissionsExt as _;
    let scene = Scene::new("127.0.33.64", 1);
    let other = scene
        .sandbox
        .write("other-harper", &format!("#!/bin/sh\nexec '{}' \"$@\"\n", support::fake_harper()));
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hs = support::harper_shard();
    let command = format!(
        "'{hs}' ctl stop && '{hs}' ctl start --set bin=other-harper && touch cmd.started; until [ -e go ]; do sleep 0.02; done"
    );
    scene.plan("", "", &format!("  - name: a\n    run: \"{}\"\n", command.replace('"', "\\\"")));
    let tool = scene.spawn_run();
    scene.wait_for_file("cmd.started");
    let keeper = keeper_of(&scene.sandbox, "other-harper");
    kill(Pid::from_raw(keeper), Signal::SIGKILL).unwrap();
    scene.sandbox.wait_for("the keeper to die", Duration::from_secs(10), || !alive(keeper));
    scene.sandbox.write("go", "");
    let out = tool.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("keeper (pid {keeper}) died")), "{err}");
    scene.assert_nothing_left();
}
