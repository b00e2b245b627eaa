//! The keeper: `harper-shard __keeper …`, one small single-threaded process per child (Harper
//! or a shard command) whose only job is that the child's whole process tree ends when the tool
//! lets go of it — by closing the lifeline on purpose, or by dying in any way at all.
//!
//! It is the binary re-executed, dispatched from `main` before tracing or tokio start, so it has
//! exactly one thread. On Linux that makes `PR_SET_PDEATHSIG` on the child exact (it fires when
//! *this* thread, the keeper, dies), and it makes the keeper a child subreaper, so that a
//! daemon that escapes the child's process group is reparented here once its parent exits,
//! instead of to init.
//!
//! What it watches, in one `poll` loop:
//! - the **lifeline**: a pipe whose write end only the tool holds (`O_CLOEXEC` there, and the
//!   child is started with every descriptor above stderr close-on-exec, so it holds neither
//!   pipe). `grace <ms>` lines update the grace; EOF means teardown. The kernel closes
//!   the tool's end when the tool dies, SIGKILL and the OOM killer included.
//! - signals, through signal-hook's self-pipe: SIGCHLD (reap), SIGTERM / SIGINT / SIGHUP
//!   (teardown now, with the grace), SIGUSR2 (teardown now, no grace: the tool's second-signal
//!   fast path), and SIGUSR1, the parent-death signal, after which `getppid()` tells whether the
//!   tool is gone.
//!
//! Teardown: SIGTERM to the child's group and to every adopted process, up to the grace for them
//! to go, then SIGKILL to the group and to every process reparented here, repeated until nothing
//! is left to reap. What happened goes back to the tool as lines on the **report pipe**
//! ([`Report`]). The keeper never writes to its stdout or stderr after the child starts (they
//! are the child's output pipes, which the tool reads); SIGPIPE is ignored so a dead reader
//! cannot stop a teardown (Rust's runtime ignores it before `main`, and std's `Command` restores
//! the default in the child).
//!
//! System calls go through nix's safe wrappers. Two things stay `unsafe`: taking ownership of
//! the two descriptors named on the command line, and the code that runs in the child between
//! fork and exec (the reasons: docs/decisions.md).
//!
//! Not for: readiness, logs, ports. Those stay in the tool, which reads the child's output.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getppid};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use crate::process;

/// The hidden subcommand that runs a keeper.
pub const SUBCOMMAND: &str = "__keeper";

/// Test-only: with `HARPER_SHARD_UNSAFE_NO_KEEPER=1` the tool starts children directly, without
/// a keeper. Nothing then survives-proofs them; it exists so a test can show that its leak check
/// catches a leak. Never set it in CI.
pub const NO_KEEPER_VAR: &str = "HARPER_SHARD_UNSAFE_NO_KEEPER";

/// The parent-death signal: only a hint, checked against `getppid()`, because the kernel also
/// sends it when the *thread* that spawned the keeper exits while the tool lives on.
const PARENT_DIED: Signal = Signal::SIGUSR1;
/// "Tear down now, no grace": the tool's second-signal fast path.
pub const NOW: Signal = Signal::SIGUSR2;
/// Signals that tear the child down with its grace.
const TEARDOWN: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];
/// How long SIGKILLs are repeated for before the keeper gives up on an unkillable process.
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// What the tool tells the keeper on its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub lifeline: RawFd,
    pub report: RawFd,
    pub grace: Duration,
    /// The tool's pid: if the keeper's parent is someone else, the tool is already gone.
    pub parent: u32,
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl Args {
    /// The arguments after the subcommand.
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![
            "--lifeline".into(),
            self.lifeline.to_string().into(),
            "--report".into(),
            self.report.to_string().into(),
            "--grace-ms".into(),
            self.grace.as_millis().to_string().into(),
            "--parent".into(),
            self.parent.to_string().into(),
            "--".into(),
            self.program.clone(),
        ];
        argv.extend(self.args.iter().cloned());
        argv
    }

    pub fn parse(argv: &[OsString]) -> Result<Args, String> {
        let mut it = argv.iter();
        let (mut lifeline, mut report, mut grace, mut parent) = (None, None, None, None);
        loop {
            let Some(flag) = it.next() else { return Err("missing `-- PROGRAM [ARGS]`".into()) };
            if flag == "--" {
                break;
            }
            let value = it
                .next()
                .and_then(|v| v.to_str())
                .ok_or_else(|| format!("{} needs a value", flag.to_string_lossy()))?;
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("{} expects a number, got {v:?}", flag.to_string_lossy()))
            };
            match flag.to_str() {
                Some("--lifeline") => lifeline = Some(number(value)? as RawFd),
                Some("--report") => report = Some(number(value)? as RawFd),
                Some("--grace-ms") => grace = Some(Duration::from_millis(number(value)?)),
                Some("--parent") => parent = Some(number(value)? as u32),
                _ => return Err(format!("unknown keeper flag {}", flag.to_string_lossy())),
            }
        }
        let program = it.next().ok_or("missing the program after `--`")?.clone();
        Ok(Args {
            lifeline: lifeline.ok_or("missing --lifeline")?,
            report: report.ok_or("missing --report")?,
            grace: grace.ok_or("missing --grace-ms")?,
            parent: parent.ok_or("missing --parent")?,
            program,
            args: it.cloned().collect(),
        })
    }
}

/// One line on the report pipe, keeper → tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The child runs, with this pid (which is also its process group).
    Started { pid: u32 },
    /// The child could not be started.
    Failed(String),
    /// The child itself ended; the raw wait status.
    Exited(i32),
    /// Something the tool should know about the teardown.
    Note(String),
    /// Teardown finished: nothing is left. `killed`: SIGKILL was needed; `adopted`: processes
    /// that had left the child's group and were ended here.
    Done { killed: bool, adopted: u32 },
}

impl Report {
    pub fn line(&self) -> String {
        let one_line = |s: &str| s.replace('\n', " ");
        match self {
            Report::Started { pid } => format!("started {pid}\n"),
            Report::Failed(why) => format!("failed {}\n", one_line(why)),
            Report::Exited(raw) => format!("exited {raw}\n"),
            Report::Note(text) => format!("note {}\n", one_line(text)),
            Report::Done { killed, adopted } => format!("done {} {adopted}\n", u8::from(*killed)),
        }
    }

    pub fn parse(line: &str) -> Option<Report> {
        let (word, rest) = line.trim_end().split_once(' ').unwrap_or((line.trim_end(), ""));
        Some(match word {
            "started" => Report::Started { pid: rest.parse().ok()? },
            "failed" => Report::Failed(rest.to_owned()),
            "exited" => Report::Exited(rest.parse().ok()?),
            "note" => Report::Note(rest.to_owned()),
            "done" => {
                let (killed, adopted) = rest.split_once(' ')?;
                Report::Done { killed: killed == "1", adopted: adopted.parse().ok()? }
            }
            _ => return None,
        })
    }
}

/// The keeper's `main`. `argv` is everything after the subcommand. Returns the exit status.
pub fn main(argv: &[OsString]) -> u8 {
    let args = match Args::parse(argv) {
        Ok(args) => args,
        Err(e) => {
            eprintln!(
                "harper-shard {SUBCOMMAND}: {e}. This subcommand is internal: `harper-shard run` starts it."
            );
            return 2;
        }
    };
    let (lifeline, report) = match adopt(&args) {
        Ok(pipes) => pipes,
        Err(e) => {
            eprintln!(
                "harper-shard {SUBCOMMAND}: {e}. This subcommand is internal: `harper-shard run` starts it."
            );
            return 2;
        }
    };
    let report = ReportPipe(report);
    if let Err(e) = platform::watch_orphans_and_parent() {
        report.send(&Report::Note(format!(
            "the keeper cannot watch its tool and adopt orphans: {e}"
        )));
    }
    if parent_gone(args.parent) {
        report.send(&Report::Failed("the tool exited before its child could be started".into()));
        return 1;
    }
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            report
                .send(&Report::Failed(format!("cannot install the keeper's signal handlers: {e}")));
            return 1;
        }
    };
    let leader = match start(&args) {
        Ok(pid) => pid,
        Err(e) => {
            report.send(&Report::Failed(format!(
                "cannot start `{}`: {e}",
                args.program.to_string_lossy()
            )));
            return 1;
        }
    };
    report.send(&Report::Started { pid: leader.as_raw() as u32 });
    release_stdio();
    let mut keeper = Keeper { leader, status: None, report, signals, adopted: BTreeSet::new() };
    let grace = keeper.watch(lifeline, &args);
    let killed = keeper.teardown(grace);
    keeper.report.send(&Report::Done { killed, adopted: keeper.adopted.len() as u32 });
    0
}

/// The lifeline's read end and the report pipe's write end, owned from here on. Each must be
/// an open descriptor above stderr, and they must differ: two owners of one descriptor would
/// close it twice.
fn adopt(args: &Args) -> Result<(File, File), String> {
    let open = process::open_fds();
    for (flag, fd) in [("--lifeline", args.lifeline), ("--report", args.report)] {
        if fd <= 2 || open.as_ref().is_some_and(|open| !open.contains(&fd)) {
            return Err(format!("{flag} {fd}: not an open descriptor above stderr"));
        }
    }
    if args.lifeline == args.report {
        return Err(format!(
            "--lifeline and --report are both descriptor {}: they must be two pipes",
            args.lifeline
        ));
    }
    // SAFETY: the tool opened these two descriptors for this process and named them on its
    // command line; they are open (checked above, where the system can list them), distinct, and
    // nothing else here owns them. No safe call can make this claim of ownership.
    let (lifeline, report) =
        unsafe { (OwnedFd::from_raw_fd(args.lifeline), OwnedFd::from_raw_fd(args.report)) };
    Ok((File::from(lifeline), File::from(report)))
}

/// Starts the child in a new process group; it inherits the keeper's environment (with the
/// token), working directory and standard streams, and no other descriptor.
fn start(args: &Args) -> std::io::Result<Pid> {
    let keeper = Pid::this();
    // Listed here, because the child may not allocate between fork and exec.
    let inherited: Vec<RawFd> = process::open_fds()
        .unwrap_or_else(|| (3..1024).collect())
        .into_iter()
        .filter(|fd| *fd > 2)
        .collect();
    let mut cmd = std::process::Command::new(&args.program);
    cmd.args(&args.args).process_group(0);
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: fcntl, prctl and getppid, each a single system call that neither
    // allocates nor locks. It stays raw because nix's `fcntl` needs an owned or borrowed
    // descriptor, and the inherited ones are neither ours to own nor known to be open.
    unsafe {
        cmd.pre_exec(move || {
            // The lifeline, the report pipe and whatever the tool inherited: a copy of the
            // report pipe's write end in the child would keep the tool from seeing the
            // keeper's EOF. A descriptor listed but already closed fails with EBADF, harmlessly.
            for fd in &inherited {
                libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            platform::child_dies_with_keeper(keeper)
        });
    }
    let child = cmd.spawn()?;
    // The keeper reaps with waitpid(-1); the std handle is not needed.
    Ok(Pid::from_raw(child.id() as i32))
}

struct Keeper {
    leader: Pid,
    status: Option<i32>,
    report: ReportPipe,
    signals: Signals,
    /// Processes other than the leader that were reparented here and had to be ended.
    adopted: BTreeSet<Pid>,
}

impl Keeper {
    /// Waits until the child must go; returns the grace it gets.
    fn watch(&mut self, mut lifeline: File, args: &Args) -> Duration {
        let mut grace = args.grace;
        let mut pending = Vec::new();
        loop {
            let (n, lifeline_stirred) = {
                let mut fds = [
                    PollFd::new(lifeline.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.fd(), PollFlags::POLLIN),
                ];
                let n = poll(&mut fds, PollTimeout::from(1000u16));
                (n, fds[0].any().unwrap_or(true))
            };
            self.reap();
            let Ok(n) = n else { continue };
            // They come as a set, not in order of arrival: no grace wins over a grace.
            let arrived = self.signals.drain();
            if arrived.contains(&NOW) {
                return Duration::ZERO;
            }
            let gone = arrived.contains(&PARENT_DIED) && parent_gone(args.parent);
            if gone || arrived.iter().any(|s| TEARDOWN.contains(s)) {
                return grace;
            }
            if lifeline_stirred {
                let mut buf = [0u8; 256];
                let got = match lifeline.read(&mut buf) {
                    Ok(0) => return grace,
                    Ok(got) => got,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                    Err(_) => return grace,
                };
                if got > 0 {
                    pending.extend_from_slice(&buf[..got]);
                    while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=end).collect();
                        if let Some(ms) = std::str::from_utf8(&line)
                            .ok()
                            .and_then(|l| l.trim().strip_prefix("grace ")?.parse().ok())
                        {
                            grace = Duration::from_millis(ms);
                        }
                    }
                }
            }
            // Without a parent-death signal (macOS) this is how a vanished tool is noticed
            // even if its lifeline end leaked somewhere.
            if n == 0 && parent_gone(args.parent) {
                return grace;
            }
        }
    }

    /// SIGTERM, the grace, then SIGKILL until nothing is left. True when SIGKILL was needed.
    fn teardown(&mut self, grace: Duration) -> bool {
        self.reap();
        self.signal_everything(Signal::SIGTERM, false);
        let deadline = Instant::now() + grace;
        while self.anything_left() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if self.signals.wait(deadline - now) == Some(NOW) {
                break;
            }
        }
        let mut killed = false;
        let limit = Instant::now() + KILL_LIMIT;
        while self.anything_left() {
            killed = true;
            self.signal_everything(Signal::SIGKILL, true);
            if Instant::now() >= limit {
                self.report.send(&Report::Note(format!(
                    "gave up after {}s of SIGKILL: a process of the group {} does not die (uninterruptible sleep?)",
                    KILL_LIMIT.as_secs(),
                    self.leader
                )));
                break;
            }
            self.signals.wait(Duration::from_millis(10));
        }
        if killed {
            self.report.send(&Report::Note(format!(
                "the child's processes did not end within the {}ms grace and were SIGKILLed",
                grace.as_millis()
            )));
        }
        killed
    }

    /// Signals the child's group and every process reparented to the keeper.
    fn signal_everything(&mut self, sig: Signal, count: bool) {
        let _ = killpg(self.leader, sig);
        for pid in process::children(std::process::id())
            .into_iter()
            .filter_map(|p| i32::try_from(p).ok())
            .map(Pid::from_raw)
        {
            if count && pid != self.leader {
                self.adopted.insert(pid);
            }
            let _ = kill(pid, sig);
        }
    }

    /// Reaps every child that has ended; reports the leader's status. True while children remain.
    fn reap(&mut self) -> bool {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return true,
                Ok(status) => {
                    if status.pid() == Some(self.leader)
                        && self.status.is_none()
                        && let Some(raw) = raw_status(status)
                    {
                        self.status = Some(raw);
                        self.report.send(&Report::Exited(raw));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
    }

    fn anything_left(&mut self) -> bool {
        let children = self.reap();
        let group = killpg(self.leader, None).is_ok();
        children || group
    }
}

/// An ended child's status as the raw wait status `ExitStatus::from_raw` reads on the tool's
/// side: the exit code in the second byte, or the signal in the low seven bits with the core
/// dump flag above them (the layout of Linux and the BSDs alike). `None` for a status that is
/// not an end (stopped, continued).
fn raw_status(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some((code & 0xff) << 8),
        WaitStatus::Signaled(_, signal, core) => Some(signal as i32 | if core { 0x80 } else { 0 }),
        _ => None,
    }
}

fn parent_gone(parent: u32) -> bool {
    getppid().as_raw() as u32 != parent
}

/// Points the keeper's stdout and stderr at /dev/null, so that the child's output pipes reach
/// EOF when the child's processes are gone, not when the keeper is.
fn release_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// The write end of the report pipe. Writes to a tool that is gone fail with EPIPE, which is
/// ignored: the teardown goes on regardless.
struct ReportPipe(File);

impl ReportPipe {
    fn send(&self, report: &Report) {
        let _ = (&self.0).write_all(report.line().as_bytes());
    }
}

/// Signals as a set of flags plus a wake-up byte on a socket that `poll` can wait on, through
/// signal-hook: its handlers only store a flag and send a byte, async-signal-safe with errno
/// kept. A child that stops wakes the loop too (no `SA_NOCLDSTOP`), which costs a reap that
/// finds nothing. Both ends are close-on-exec, so the child never holds them. Why signal-hook:
/// docs/decisions.md.
struct Signals {
    delivery: SignalDelivery<UnixStream, SignalOnly>,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        let watched = [Signal::SIGCHLD, TEARDOWN[0], TEARDOWN[1], TEARDOWN[2], PARENT_DIED, NOW]
            .map(|s| s as libc::c_int);
        Ok(Signals { delivery: SignalDelivery::with_pipe(read, write, SignalOnly, watched)? })
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.delivery.get_read().as_fd()
    }

    /// The signals that arrived since the last call, each once.
    fn drain(&mut self) -> Vec<Signal> {
        self.delivery.pending().filter_map(|s| Signal::try_from(s).ok()).collect()
    }

    /// Sleeps until a signal arrives or `limit` passes; returns [`NOW`] if that was among them.
    fn wait(&mut self, limit: Duration) -> Option<Signal> {
        let ms = limit.as_millis().clamp(1, 1000) as u16;
        let _ = poll(&mut [PollFd::new(self.fd(), PollFlags::POLLIN)], PollTimeout::from(ms));
        self.drain().into_iter().find(|s| *s == NOW)
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use nix::errno::Errno;
    use nix::sys::prctl;
    use nix::sys::signal::Signal;
    use nix::unistd::{Pid, getppid};

    /// Orphans of the child's tree are reparented to the keeper instead of to init, and the
    /// keeper hears of its tool's death through [`super::PARENT_DIED`].
    pub fn watch_orphans_and_parent() -> nix::Result<()> {
        prctl::set_child_subreaper(true)?;
        prctl::set_pdeathsig(super::PARENT_DIED)
    }

    /// In the child, between fork and exec: SIGKILL when the keeper dies (exact, as the keeper
    /// has one thread), unless the keeper is already gone, in which case do not start at all.
    /// Neither call allocates: each is one system call and a read of errno.
    pub fn child_dies_with_keeper(keeper: Pid) -> std::io::Result<()> {
        prctl::set_pdeathsig(Signal::SIGKILL)?;
        if getppid() != keeper {
            return Err(Errno::ESRCH.into());
        }
        Ok(())
    }
}

/// Elsewhere (macOS): no subreaper and no parent-death signal. The lifeline's EOF and the
/// `getppid()` poll in the watch loop notice the tool's death; orphans that left the child's
/// group go to launchd and only the token sweep can find them.
#[cfg(not(target_os = "linux"))]
mod platform {
    pub fn watch_orphans_and_parent() -> nix::Result<()> {
        Ok(())
    }
    pub fn child_dies_with_keeper(_keeper: nix::unistd::Pid) -> std::io::Result<()> {
        Ok(())
    }
}

/// `argv[1]` names the keeper subcommand: `main` dispatches on this before anything else starts.
pub fn requested(argv1: Option<&OsStr>) -> bool {
    argv1.is_some_and(|a| a.as_bytes() == SUBCOMMAND.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_survive_the_round_trip_through_the_command_line() {
        let args = Args {
            lifeline: 7,
            report: 9,
            grace: Duration::from_millis(2500),
            parent: 42,
            program: "sh".into(),
            args: vec!["-c".into(), "--grace-ms 1 -- x".into()],
        };
        assert_eq!(Args::parse(&args.to_argv()), Ok(args));
    }

    #[test]
    fn an_ended_childs_status_reaches_the_tool_as_it_ended() {
        use std::os::unix::process::ExitStatusExt;
        use std::process::ExitStatus;
        let pid = Pid::from_raw(12);
        let read = |status| {
            raw_status(status)
                .map(ExitStatus::from_raw)
                .map(|s| (s.code(), s.signal(), s.core_dumped()))
        };
        assert_eq!(read(WaitStatus::Exited(pid, 0)), Some((Some(0), None, false)));
        assert_eq!(read(WaitStatus::Exited(pid, 255)), Some((Some(255), None, false)));
        assert_eq!(
            read(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some((None, Some(9), false))
        );
        assert_eq!(
            read(WaitStatus::Signaled(pid, Signal::SIGSEGV, true)),
            Some((None, Some(11), true))
        );
        assert_eq!(read(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None, "a stop is not an end");
    }

    #[test]
    fn every_report_line_parses_back_to_itself() {
        for report in [
            Report::Started { pid: 12 },
            Report::Failed("no such file".into()),
            Report::Exited(9),
            Report::Note("took long".into()),
            Report::Done { killed: true, adopted: 2 },
        ] {
            assert_eq!(Report::parse(&report.line()), Some(report));
        }
    }
}
