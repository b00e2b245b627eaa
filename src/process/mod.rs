//! Process facts, in one room that `pool` and `supervise` both stand on: when a process started
//! (so that a reused pid is never taken for a record's owner), who owns it, what it is called,
//! its environment (above all the [`TOKEN_VAR`] that marks everything a run starts), its threads
//! and children, and who listens on a port ([`ports`]). And, since only this room can tell a
//! process from another one that reused its pid, the one careful way to end processes by pid
//! ([`end`]).
//!
//! One implementation per platform: on Linux procfs reads `/proc`; elsewhere (macOS) sysinfo
//! answers, and where even it cannot, the answer is "unknown", which every caller treats as the
//! cautious choice. On Linux the sysinfo answers are built only for the unit tests (sysinfo is a
//! dev-dependency there), which hold them to procfs's.
//!
//! Not for: starting processes (`supervise`), or deciding which to end (`pool::sweep`, the
//! keeper's replacement in `supervise::handle`).

pub mod ports;

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The environment variable that marks every process a run starts, so that anything that
/// escapes its process group can still be found and ended.
pub const TOKEN_VAR: &str = "HARPER_SHARD_TOKEN";

/// How long SIGKILLed processes are given to be gone (within a signal's budget: see
/// `run::budget::KILL_REAP`).
pub const AFTER_KILL: Duration = Duration::from_millis(500);

/// A process as a record names it: its pid and, where the system says, its start time (clock
/// ticks since boot on Linux). Two processes with one pid never share a start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    pub pid: u32,
    pub start: Option<u64>,
}

impl ProcessId {
    /// The process `pid` as it is now; `None` when there is no such process.
    pub fn of(pid: u32) -> Option<ProcessId> {
        if !exists(pid) {
            return None;
        }
        Some(ProcessId { pid, start: imp::start_time(pid) })
    }

    /// This process.
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId { pid, start: imp::start_time(pid) }
    }

    /// Is this very process still alive (not merely its pid, reused by another)? Zombies are
    /// dead.
    pub fn is_alive(&self) -> bool {
        if !exists(self.pid) || imp::is_zombie(self.pid) {
            return false;
        }
        match (self.start, imp::start_time(self.pid)) {
            (Some(then), Some(now)) => then == now,
            // No start time to compare: the pid alone is all we have.
            _ => true,
        }
    }
}

/// Is there a live process `pid` (ours or not; a zombie is not live)?
pub fn alive(pid: u32) -> bool {
    ProcessId::of(pid).is_some_and(|p| p.is_alive())
}

/// Does a process with this pid exist (ours or not)?
fn exists(pid: u32) -> bool {
    // 0 and negative numbers name process groups to kill(2), never one process.
    let Ok(raw) = i32::try_from(pid) else { return false };
    if raw <= 0 {
        return false;
    }
    match kill(Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// The short command name of `pid`, or `?`.
pub fn command(pid: u32) -> String {
    imp::command(pid).unwrap_or_else(|| "?".into())
}

/// The command line of `pid`, its arguments joined by spaces; `None` when it cannot be read
/// (gone, a zombie, or not ours).
pub fn cmdline(pid: u32) -> Option<String> {
    imp::cmdline(pid).map(|args| args.join(" "))
}

/// Has `pid` been sent SIGKILL: gone, a zombie, or SIGKILL pending? True from the moment of the
/// `kill`, however busy the machine, so a test can tell "was killed" from "is dying". `None`
/// where pending signals cannot be read (systems without `/proc`).
pub fn kill_sent(pid: u32) -> Option<bool> {
    imp::kill_sent(pid)
}

/// The owner of `pid` (on Linux, the owner of `/proc/<pid>`: its effective uid).
pub fn uid(pid: u32) -> Option<u32> {
    imp::uid(pid)
}

/// The process group of `pid`.
pub fn pgid(pid: u32) -> Option<u32> {
    imp::pgid(pid)
}

/// How many threads `pid` has (Linux; elsewhere unknown).
pub fn threads(pid: u32) -> Option<usize> {
    imp::threads(pid)
}

/// The direct children of `parent` (Linux; elsewhere none are found, see the keeper).
pub fn children(parent: u32) -> Vec<u32> {
    imp::children(parent)
}

/// The descriptors this process has open; `None` where they cannot be listed.
pub fn open_fds() -> Option<Vec<i32>> {
    imp::open_fds()
}

/// Every pid on the system that we can see. An error means the process table itself could not
/// be read, which a caller that must not miss a process has to say out loud.
pub fn pids() -> std::io::Result<Vec<u32>> {
    imp::pids()
}

/// The value of `var` in the environment of process `pid`, as bytes, if it is there and
/// readable (ours).
pub fn environ_value(pid: u32, var: &str) -> Option<Vec<u8>> {
    imp::environ_value(pid, var)
}

/// Does `pid`'s environment set [`TOKEN_VAR`] to `token`, or to a token below it (`token/…`)?
pub fn carries_token(pid: u32, token: &str) -> bool {
    environ_value(pid, TOKEN_VAR).is_some_and(|v| is_token_or_below(&v, token))
}

fn is_token_or_below(value: &[u8], token: &str) -> bool {
    value
        .strip_prefix(token.as_bytes())
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
}

/// Every live process of ours (this user's), other than this one, whose environment sets `var`
/// to a value `accept` takes. A process whose environment cannot be read (gone meanwhile, or
/// not dumpable: ssh-agent hides its own even from its owner) does not set it. An error means
/// the process table could not be read at all.
pub fn with_env(var: &str, accept: impl Fn(&[u8]) -> bool) -> std::io::Result<Vec<ProcessId>> {
    let me = std::process::id();
    let ours = nix::unistd::getuid().as_raw();
    Ok(pids()?
        .into_iter()
        .filter(|&pid| {
            pid != me
                && uid(pid) == Some(ours)
                && environ_value(pid, var).is_some_and(|v| accept(&v))
        })
        .filter_map(|pid| ProcessId::of(pid).filter(ProcessId::is_alive))
        .collect())
}

/// Every live process of ours, other than this one, that carries `token` or a token below it
/// (`token/…`: one child's token below its lease's). Where the process table cannot be read
/// there is nothing to be found and nothing to end, so none.
pub fn carrying(token: &str) -> Vec<ProcessId> {
    with_env(TOKEN_VAR, |v| is_token_or_below(v, token)).unwrap_or_default()
}

/// A process that [`end`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub pid: u32,
    pub command: String,
    /// SIGTERM was not enough.
    pub killed: bool,
}

impl std::fmt::Display for Swept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)?;
        if self.killed {
            write!(f, " after SIGKILL")?;
        }
        Ok(())
    }
}

/// Ends `targets`: SIGTERM (SIGKILL at once when `grace` is zero), up to `grace` for them to go,
/// SIGKILL for the rest, and waits up to [`AFTER_KILL`] until they are gone. Each is signalled
/// only while it is still the very process named, never a process that reused its pid.
pub fn end(targets: &[ProcessId], grace: Duration) -> Vec<Swept> {
    let mut swept: Vec<Swept> = targets
        .iter()
        .map(|p| Swept { pid: p.pid, command: command(p.pid), killed: false })
        .collect();
    let first = if grace.is_zero() { Signal::SIGKILL } else { Signal::SIGTERM };
    for p in targets {
        signal(p, first);
    }
    if !wait_gone(targets, grace) {
        for (p, s) in targets.iter().zip(swept.iter_mut()) {
            if p.is_alive() {
                signal(p, Signal::SIGKILL);
                s.killed = true;
            }
        }
        wait_gone(targets, AFTER_KILL);
    }
    swept
}

fn signal(p: &ProcessId, sig: Signal) {
    if p.is_alive()
        && let Ok(raw) = i32::try_from(p.pid)
    {
        let _ = kill(Pid::from_raw(raw), sig);
    }
}

fn wait_gone(targets: &[ProcessId], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if targets.iter().all(|p| !p.is_alive()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Linux: `/proc` through procfs, which parses what we would otherwise parse by hand (`stat`
/// with a command that may hold spaces and parentheses, `environ`, descriptor links).
#[cfg(target_os = "linux")]
mod imp {
    use std::os::unix::ffi::OsStrExt;

    use procfs::ProcError;
    use procfs::process::{Process, Stat};

    fn process(pid: u32) -> Option<Process> {
        Process::new(i32::try_from(pid).ok()?).ok()
    }

    fn stat(pid: u32) -> Option<Stat> {
        process(pid)?.stat().ok()
    }

    pub fn start_time(pid: u32) -> Option<u64> {
        Some(stat(pid)?.starttime)
    }

    pub fn is_zombie(pid: u32) -> bool {
        stat(pid).is_some_and(|s| s.state == 'Z')
    }

    pub fn pgid(pid: u32) -> Option<u32> {
        u32::try_from(stat(pid)?.pgrp).ok()
    }

    pub fn command(pid: u32) -> Option<String> {
        Some(stat(pid)?.comm)
    }

    pub fn cmdline(pid: u32) -> Option<Vec<String>> {
        process(pid)?.cmdline().ok().filter(|args| !args.is_empty())
    }

    pub fn uid(pid: u32) -> Option<u32> {
        process(pid)?.uid().ok()
    }

    pub fn kill_sent(pid: u32) -> Option<bool> {
        let Some(status) = process(pid).and_then(|p| p.status().ok()) else { return Some(true) };
        let sigkill = 1u64 << (libc::SIGKILL - 1);
        Some(
            status.state.starts_with('Z')
                || status.sigpnd & sigkill != 0
                || status.shdpnd & sigkill != 0,
        )
    }

    pub fn threads(pid: u32) -> Option<usize> {
        usize::try_from(stat(pid)?.num_threads).ok()
    }

    /// Every pid in `/proc`. Only `/proc` itself unread is an error: an entry that cannot be
    /// opened (a process that vanished or is vanishing while the table is read, one of another
    /// user's) is left out, as no one could act on it, rather than failing every other one.
    pub fn pids() -> std::io::Result<Vec<u32>> {
        let all = procfs::process::all_processes().map_err(std::io::Error::other)?;
        Ok(readable(all.map(|p| p.map(|p| p.pid))))
    }

    /// The pids of the entries that could be read.
    pub(super) fn readable(entries: impl Iterator<Item = Result<i32, ProcError>>) -> Vec<u32> {
        entries.flatten().filter_map(|pid| u32::try_from(pid).ok()).collect()
    }

    pub fn children(parent: u32) -> Vec<u32> {
        let Ok(all) = procfs::process::all_processes() else { return Vec::new() };
        all.flatten()
            .filter_map(|p| p.stat().ok())
            .filter(|s| u32::try_from(s.ppid) == Ok(parent))
            .filter_map(|s| u32::try_from(s.pid).ok())
            .collect()
    }

    pub fn open_fds() -> Option<Vec<i32>> {
        Some(Process::myself().ok()?.fd().ok()?.flatten().map(|fd| fd.fd).collect())
    }

    pub fn environ_value(pid: u32, var: &str) -> Option<Vec<u8>> {
        let env = process(pid)?.environ().ok()?;
        env.get(std::ffi::OsStr::new(var)).map(|v| v.as_bytes().to_vec())
    }
}

/// The same answers through sysinfo, for systems without `/proc`. On Linux only in the unit
/// tests, so that Linux CI builds it and compares it with procfs.
#[cfg(any(not(target_os = "linux"), test))]
mod portable {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

    fn with_process<T>(
        pid: u32,
        kind: ProcessRefreshKind,
        f: impl FnOnce(&sysinfo::Process) -> T,
    ) -> Option<T> {
        let mut system = System::new().ok()?;
        let pid = Pid::from_u32(pid);
        system.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, kind);
        system.process(pid).map(f)
    }

    /// Seconds since the epoch: coarser than `/proc`'s ticks, still enough to tell a reused pid.
    pub fn start_time(pid: u32) -> Option<u64> {
        with_process(pid, ProcessRefreshKind::nothing(), |p| p.start_time())
    }

    pub fn is_zombie(pid: u32) -> bool {
        with_process(pid, ProcessRefreshKind::nothing(), |p| p.status() == ProcessStatus::Zombie)
            .unwrap_or(false)
    }

    pub fn command(pid: u32) -> Option<String> {
        with_process(pid, ProcessRefreshKind::nothing(), |p| {
            p.name().to_string_lossy().into_owned()
        })
    }

    pub fn cmdline(pid: u32) -> Option<Vec<String>> {
        let kind = ProcessRefreshKind::nothing().with_cmd(UpdateKind::Always);
        with_process(pid, kind, |p| {
            p.cmd().iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>()
        })
        .filter(|args| !args.is_empty())
    }

    pub fn uid(pid: u32) -> Option<u32> {
        let kind = ProcessRefreshKind::nothing().with_user(UpdateKind::Always);
        with_process(pid, kind, |p| p.user_id().map(|u| **u)).flatten()
    }

    pub fn pids() -> std::io::Result<Vec<u32>> {
        let mut system = System::new().map_err(std::io::Error::other)?;
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing(),
        );
        Ok(system.processes().keys().map(|p| p.as_u32()).collect())
    }

    pub fn environ_value(pid: u32, var: &str) -> Option<Vec<u8>> {
        let kind = ProcessRefreshKind::nothing().with_environ(UpdateKind::Always);
        let prefix = [var.as_bytes(), b"="].concat();
        with_process(pid, kind, |p| {
            p.environ().iter().find_map(|kv| {
                kv.as_encoded_bytes().strip_prefix(prefix.as_slice()).map(<[u8]>::to_vec)
            })
        })
        .flatten()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub use super::portable::{cmdline, command, environ_value, is_zombie, pids, start_time, uid};

    pub fn pgid(pid: u32) -> Option<u32> {
        let raw = i32::try_from(pid).ok()?;
        nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(raw))).ok().map(|p| p.as_raw() as u32)
    }

    pub fn kill_sent(_pid: u32) -> Option<bool> {
        None
    }

    /// sysinfo counts threads on Linux only.
    pub fn threads(_pid: u32) -> Option<usize> {
        None
    }

    /// Without a subreaper nothing is reparented to the keeper, so its process group is all
    /// there is to end: no need to look for children.
    pub fn children(_parent: u32) -> Vec<u32> {
        Vec::new()
    }

    pub fn open_fds() -> Option<Vec<i32>> {
        let listed = std::fs::read_dir("/dev/fd").ok()?;
        Some(listed.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn an_entry_that_cannot_be_read_costs_that_entry_not_the_table() {
        use procfs::ProcError;
        let entries = vec![
            Ok(10),
            Err(ProcError::NotFound(None)),
            Err(ProcError::Io(std::io::Error::from_raw_os_error(libc::ESRCH), None)),
            Err(ProcError::Incomplete(None)),
            Err(ProcError::PermissionDenied(None)),
            Ok(11),
        ];
        assert_eq!(imp::readable(entries.into_iter()), vec![10, 11]);
    }

    #[test]
    fn a_pid_with_another_start_time_is_not_the_recorded_process() {
        let me = ProcessId::current();
        assert!(me.is_alive());
        let reused = ProcessId { pid: me.pid, start: me.start.map(|s| s + 1) };
        assert!(!reused.is_alive(), "a process that reuses a recorded pid was taken for its owner");
    }

    #[test]
    fn pid_zero_is_never_alive() {
        assert!(!ProcessId { pid: 0, start: None }.is_alive());
    }

    #[test]
    fn a_token_is_carried_by_itself_and_below_it_never_by_a_longer_name() {
        assert!(is_token_or_below(b"abc", "abc"));
        assert!(is_token_or_below(b"abc/1", "abc"));
        assert!(!is_token_or_below(b"abcd", "abc"));
        assert!(!is_token_or_below(b"ab", "abc"));
    }

    /// A child started with a variable is found by it, and by nothing else; once reaped it is
    /// found no more.
    #[test]
    fn with_env_finds_a_child_by_its_variable_until_it_is_gone() {
        let mark = format!("with-env-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .env("HARPER_SHARD_TEST_WITH_ENV", &mark)
            .spawn()
            .expect("start sleep");
        let found = |want: &str| {
            with_env("HARPER_SHARD_TEST_WITH_ENV", |v| v == want.as_bytes())
                .expect("the process table is readable")
        };
        assert_eq!(found(&mark).iter().map(|p| p.pid).collect::<Vec<_>>(), [child.id()]);
        assert!(found("another value").is_empty());
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        assert!(found(&mark).is_empty(), "a reaped child is still found");
    }

    /// The sysinfo answers that macOS relies on agree with procfs about this very process.
    #[test]
    fn the_portable_answers_agree_with_proc() {
        let me = std::process::id();
        assert_eq!(portable::uid(me), imp::uid(me));
        assert_eq!(portable::command(me), imp::command(me));
        assert_eq!(portable::cmdline(me), imp::cmdline(me));
        assert!(portable::pids().expect("sysinfo lists processes").contains(&me));
        assert!(imp::pids().expect("/proc lists processes").contains(&me));
        assert!(portable::start_time(me).is_some());
        assert!(!portable::is_zombie(me));
        let path = std::env::var("PATH").expect("PATH is set").into_bytes();
        assert_eq!(imp::environ_value(me, "PATH").as_ref(), Some(&path));
        assert_eq!(portable::environ_value(me, "PATH"), Some(path));
        assert_eq!(portable::environ_value(me, "HARPER_SHARD_NOT_SET_ANYWHERE"), None);
    }

    #[test]
    fn a_fresh_child_has_one_thread_and_is_among_our_children() {
        let mut child =
            std::process::Command::new("sleep").arg("600").spawn().expect("start sleep");
        assert_eq!(threads(child.id()), Some(1));
        assert!(children(std::process::id()).contains(&child.id()));
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        assert_eq!(threads(child.id()), None);
    }
}
