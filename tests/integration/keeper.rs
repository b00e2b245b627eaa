//! The keeper driven directly, as `harper-shard __keeper` with the two pipes the tool would
//! give it: what a run through the tool cannot show from outside — that the keeper is one thread
//! (its child's `PR_SET_PDEATHSIG` fires when the *thread* that forked it ends, so it is exact
//! only with one), and how it takes signals that arrive together. And, through the tool, the
//! premise of the leak check in `support`: when the tool has exited, its keepers are done.
//!
//! The child traps SIGTERM into a file, so the test knows when the teardown has begun, and keeps
//! running through it: the keeper then waits out its grace, which only SIGUSR2 cuts short.

use crate::support;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harper_shard::process;
use harper_shard::supervise::keeper::{self, Args, Report};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{MARK, Sandbox, fake_plan};

/// Far longer than any test here may take: a teardown that waits it out has failed.
const GRACE: Duration = Duration::from_secs(120);

/// Writes `ready` once it runs, `termed` on each SIGTERM, and keeps going until SIGKILL.
const CHILD: &str = "trap 'touch termed' TERM; touch ready; while :; do sleep 0.1; done";

/// A keeper started as the tool starts one, its report pipe, and the tool's end of its lifeline.
struct KeptChild {
    process: Child,
    pid: u32,
    /// The child's pid, from the keeper's `started`.
    child: u32,
    report: Option<BufReader<File>>,
    lifeline: Option<OwnedFd>,
}

impl KeptChild {
    fn start(sandbox: &Sandbox) -> KeptChild {
        KeptChild::running(sandbox, CHILD)
    }

    /// A keeper of `sh -c child`.
    fn running(sandbox: &Sandbox, child: &str) -> KeptChild {
        let (life_read, life_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a lifeline pipe");
        let (report_read, report_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a report pipe");
        let args = Args {
            lifeline: life_read.as_raw_fd(),
            report: report_write.as_raw_fd(),
            grace: GRACE,
            parent: std::process::id(),
            program: "sh".into(),
            args: vec!["-c".into(), child.into()],
        };
        let mut cmd = Command::new(support::harper_shard());
        cmd.arg(keeper::SUBCOMMAND)
            .args(args.to_argv())
            .current_dir(&sandbox.dir)
            .env(MARK, &sandbox.mark);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let inherited = [args.lifeline, args.report];
        // SAFETY: fcntl is async-signal-safe and touches only the forked child's descriptors.
        unsafe { cmd.pre_exec(move || inherited.iter().try_for_each(|fd| inheritable(*fd))) };
        let process = cmd.spawn().expect("start the keeper");
        drop((life_read, report_write));
        let pid = process.id();
        let mut kept = KeptChild {
            process,
            pid,
            child: 0,
            report: Some(BufReader::new(File::from(report_read))),
            lifeline: Some(life_write),
        };
        match kept.next_report() {
            Report::Started { pid } => KeptChild { child: pid, ..kept },
            other => panic!("the keeper said {other:?} instead of `started`"),
        }
    }

    fn next_report(&mut self) -> Report {
        let mut line = String::new();
        self.report
            .as_mut()
            .expect("the report pipe is read")
            .read_line(&mut line)
            .expect("read the report pipe");
        Report::parse(&line).unwrap_or_else(|| panic!("not a report line: {line:?}"))
    }

    /// Lets go of the child, as the tool does at a stop: the teardown begins.
    fn let_go(&mut self) {
        self.lifeline = None;
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid as i32), sig).expect("signal the keeper");
    }

    /// Reads reports up to `done`, reaps the keeper, and says whether SIGKILL was needed.
    fn finish(mut self) -> bool {
        let killed = loop {
            match self.next_report() {
                Report::Done { killed, .. } => break killed,
                Report::Failed(why) => panic!("the keeper failed: {why}"),
                _ => {}
            }
        };
        let status = self.process.wait().expect("reap the keeper");
        assert_eq!(status.code(), Some(0), "the keeper's exit");
        killed
    }
}

fn inheritable(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_SETFD on a descriptor of this (forked) process.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[test]
fn the_keeper_has_one_thread_while_it_watches_and_while_it_tears_down() {
    let sandbox = Sandbox::new();
    let mut kept = KeptChild::start(&sandbox);
    sandbox
        .wait_for("the child to run", Duration::from_secs(10), || sandbox.path("ready").exists());
    assert_eq!(process::threads(kept.pid), Some(1), "the watching keeper's threads");
    kept.let_go();
    sandbox.wait_for("the teardown's SIGTERM", Duration::from_secs(10), || {
        sandbox.path("termed").exists()
    });
    assert_eq!(process::threads(kept.pid), Some(1), "the tearing-down keeper's threads");
    kept.signal(keeper::NOW);
    assert!(kept.finish(), "the child outlived SIGTERM, so SIGKILL ended it");
}

/// Signals reach the keeper as a set, not in order: a hang-up (teardown with the grace) that
/// lands together with a hurry (no grace) must not cost the grace. The keeper is stopped while
/// both are sent, so that both are pending when it wakes.
#[test]
fn a_hurry_that_arrives_with_a_hangup_skips_the_grace() {
    let sandbox = Sandbox::new();
    let kept = KeptChild::start(&sandbox);
    sandbox
        .wait_for("the child to run", Duration::from_secs(10), || sandbox.path("ready").exists());
    let started = Instant::now();
    kept.signal(Signal::SIGSTOP);
    kept.signal(Signal::SIGHUP);
    kept.signal(keeper::NOW);
    kept.signal(Signal::SIGCONT);
    assert!(kept.finish(), "the child was SIGKILLed");
    let took = started.elapsed();
    assert!(took < GRACE / 4, "the teardown took {took:?}: it waited for the {GRACE:?} grace");
}

/// The leak check allows no grace after the tool exits, because the tool's teardown is
/// synchronous. Here a command ignores SIGTERM, so after its timeout its keeper is busy for the
/// whole 5 s grace, longer than the tool's 2 s wait for the command's last output; the tool
/// waits for the keeper all the same, and once the tool has exited nothing of it is alive.
#[test]
fn a_command_that_ignores_sigterm_is_gone_when_the_tool_exits() {
    let sandbox = Sandbox::new();
    let pool = "pool: {start: 127.0.93.2, count: 1, wait: 30s}\n";
    let shard = "  - name: a\n    run: \"trap '' TERM; sleep 600\"\n    timeout: 1s\n";
    let plan = fake_plan("", pool, shard).replace("teardown: {grace: 2s,", "teardown: {grace: 5s,");
    sandbox.write("harper-shards.yml", &plan);
    let started = Instant::now();
    let out = sandbox
        .command()
        .env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"))
        .arg("run")
        .output()
        .expect("run the tool");
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the timed-out shard fails: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<String> = sandbox
        .leftovers()
        .into_iter()
        .map(|pid| process::cmdline(pid).unwrap_or_default())
        .collect();
    assert!(left.is_empty(), "alive after the tool exited: {left:?}");
    assert!(
        took >= Duration::from_secs(6),
        "the tool exited after {took:?}, before the 1 s timeout and the 5 s grace"
    );
}

/// A keeper of `sleep`, once the child runs it.
fn sleeping(sandbox: &Sandbox) -> KeptChild {
    let kept = KeptChild::running(sandbox, "exec sleep 600");
    let sleeps = || process::cmdline(kept.child).is_some_and(|line| line.starts_with("sleep"));
    sandbox.wait_for("the child to exec sleep", Duration::from_secs(10), sleeps);
    kept
}

/// The keeper's child gets stdin, stdout and stderr: not the lifeline, not the report pipe,
/// and nothing else the keeper inherited (the test's own descriptors reach the keeper too).
#[test]
fn the_child_holds_its_three_standard_streams_and_no_other_descriptor() {
    let sandbox = Sandbox::new();
    let mut kept = sleeping(&sandbox);
    let listed = std::fs::read_dir(format!("/proc/{}/fd", kept.child))
        .expect("list the child's descriptors");
    let mut held: Vec<i32> = listed
        .map(|e| e.expect("a descriptor").file_name().to_string_lossy().parse().expect("a number"))
        .collect();
    held.sort();
    assert_eq!(held, [0, 1, 2], "the child's descriptors");
    kept.let_go();
    assert!(!kept.finish(), "sleep ends on SIGTERM");
}

/// The keeper ignores SIGPIPE; its child must not inherit that, or a shell pipeline in a shard
/// command would spin on EPIPE instead of ending.
#[test]
fn the_child_starts_with_sigpipe_at_its_default() {
    let sandbox = Sandbox::new();
    let mut kept = sleeping(&sandbox);
    let status = support::read(std::path::Path::new(&format!("/proc/{}/status", kept.child)));
    let ignored =
        status.lines().find_map(|l| l.strip_prefix("SigIgn:")).expect("a SigIgn line").trim();
    let mask = u64::from_str_radix(ignored, 16).expect("a SigIgn mask");
    assert_eq!(
        mask & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE is ignored in the child (SigIgn {ignored})"
    );
    kept.let_go();
    assert!(!kept.finish(), "sleep ends on SIGTERM");
}

/// A tool that stopped reading the report pipe (it died, or dropped it) makes the keeper's
/// reports fail with EPIPE: the teardown still runs to the end and the keeper exits 0.
#[test]
fn a_keeper_whose_reports_go_unread_still_ends_its_child_and_exits_0() {
    let sandbox = Sandbox::new();
    let mut kept = sleeping(&sandbox);
    kept.report = None;
    kept.let_go();
    let status = kept.process.wait().expect("reap the keeper");
    assert_eq!((status.code(), status.signal()), (Some(0), None), "the keeper's exit");
    let left: Vec<String> = sandbox
        .leftovers()
        .into_iter()
        .map(|pid| process::cmdline(pid).unwrap_or_default())
        .collect();
    assert!(left.is_empty(), "alive after the keeper exited: {left:?}");
}

/// `__keeper` run by hand with descriptors it was not given: refused before anything starts.
#[test]
fn a_keeper_named_descriptors_it_does_not_hold_refuses_with_exit_2_and_starts_nothing() {
    let sandbox = Sandbox::new();
    for (lifeline, report, said) in
        [("900", "901", "--lifeline 900: not an open descriptor"), ("1", "901", "--lifeline 1:")]
    {
        let parent = std::process::id().to_string();
        let argv = [
            "--lifeline",
            lifeline,
            "--report",
            report,
            "--grace-ms",
            "1",
            "--parent",
            &parent,
            "--",
            "touch",
            "started",
        ];
        let out = Command::new(support::harper_shard())
            .arg(keeper::SUBCOMMAND)
            .args(argv)
            .current_dir(&sandbox.dir)
            .output()
            .expect("run the keeper");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {stderr}");
        assert!(stderr.contains(said), "{argv:?}: {stderr}");
        assert!(!sandbox.path("started").exists(), "{argv:?} started its child");
    }
    let (read, _write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("a pipe");
    let (fd, parent) = (read.as_raw_fd(), std::process::id().to_string());
    let mut cmd = Command::new(support::harper_shard());
    cmd.arg(keeper::SUBCOMMAND).args([
        "--lifeline",
        &fd.to_string(),
        "--report",
        &fd.to_string(),
        "--grace-ms",
        "1",
    ]);
    cmd.args(["--parent", &parent, "--", "touch", "started"]).current_dir(&sandbox.dir);
    // SAFETY: fcntl is async-signal-safe and touches only the forked child's descriptors.
    unsafe { cmd.pre_exec(move || inheritable(fd)) };
    let out = cmd.output().expect("run the keeper");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "one pipe named twice: {stderr}");
    assert!(stderr.contains(&format!("both descriptor {fd}")), "one pipe named twice: {stderr}");
    assert!(!sandbox.path("started").exists(), "one pipe named twice started its child");
}
