//! Facts about other processes that the pool needs: when a process started (so that a reused
//! pid is never taken for a record's owner), who owns it, what it is called, and whether it
//! carries an environment entry. Linux answers from `/proc` directly; elsewhere (macOS) sysinfo
//! answers, and where even it cannot, the answer is "unknown", which every caller treats as the
//! cautious choice.

use serde::{Deserialize, Serialize};

/// A process as a record names it: its pid and, where the system says, its start time in
/// clock ticks since boot. Two processes with one pid never share a start time.
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

/// Does a process with this pid exist (ours or not)?
fn exists(pid: u32) -> bool {
    // 0 and negative numbers name process groups to kill(2), never one process.
    let Ok(raw) = i32::try_from(pid) else { return false };
    if raw <= 0 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// The short command name of `pid`, or `?`.
pub fn command(pid: u32) -> String {
    imp::command(pid).unwrap_or_else(|| "?".into())
}

pub use imp::{pgid, pids, uid};

/// Does `pid`'s environment set `var` to `token`, or to a token below it (`token/…`)?
/// The value of `var` in the environment of process `pid`, as bytes, if it is there and
/// readable (ours).
pub fn environ_value(pid: u32, var: &str) -> Option<Vec<u8>> {
    imp::environ_value(pid, var)
}

pub fn carries_token(pid: u32, var: &str, token: &str) -> bool {
    imp::environ_value(pid, var).is_some_and(|v| {
        v.strip_prefix(token.as_bytes()).is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
    })
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    /// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`. The command may hold spaces
    /// and parentheses, so fields are counted from after the last `)`.
    fn stat_field(pid: u32, n: usize) -> Option<String> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        rest.split_whitespace().nth(n - 3).map(str::to_owned)
    }

    pub fn start_time(pid: u32) -> Option<u64> {
        stat_field(pid, 22)?.parse().ok()
    }

    pub fn is_zombie(pid: u32) -> bool {
        stat_field(pid, 3).as_deref() == Some("Z")
    }

    pub fn pgid(pid: u32) -> Option<u32> {
        stat_field(pid, 5)?.parse().ok()
    }

    pub fn command(pid: u32) -> Option<String> {
        fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_owned())
    }

    /// The real owner of `pid`.
    pub fn uid(pid: u32) -> Option<u32> {
        fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid())
    }

    /// Every pid on the system (that `/proc` shows us).
    pub fn pids() -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
    }

    /// The value of `var` in `pid`'s environment; unreadable (another user's process, or gone)
    /// is none.
    pub fn environ_value(pid: u32, var: &str) -> Option<Vec<u8>> {
        let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
        let prefix = [var.as_bytes(), b"="].concat();
        env.split(|b| *b == 0).find_map(|kv| kv.strip_prefix(prefix.as_slice()).map(<[u8]>::to_vec))
    }
}

/// The same answers through sysinfo, for systems without `/proc`. Compiled everywhere, so that
/// Linux CI builds it and its test compares it with `/proc`.
#[cfg_attr(target_os = "linux", allow(dead_code))]
mod portable {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

    fn with_process<T>(pid: u32, kind: ProcessRefreshKind, f: impl FnOnce(&sysinfo::Process) -> T) -> Option<T> {
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
        with_process(pid, ProcessRefreshKind::nothing(), |p| p.status() == ProcessStatus::Zombie).unwrap_or(false)
    }

    pub fn command(pid: u32) -> Option<String> {
        with_process(pid, ProcessRefreshKind::nothing(), |p| p.name().to_string_lossy().into_owned())
    }

    pub fn uid(pid: u32) -> Option<u32> {
        let kind = ProcessRefreshKind::nothing().with_user(UpdateKind::Always);
        with_process(pid, kind, |p| p.user_id().map(|u| **u)).flatten()
    }

    pub fn pids() -> Vec<u32> {
        let Ok(mut system) = System::new() else { return Vec::new() };
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing());
        system.processes().keys().map(|p| p.as_u32()).collect()
    }

    pub fn environ_value(pid: u32, var: &str) -> Option<Vec<u8>> {
        let kind = ProcessRefreshKind::nothing().with_environ(UpdateKind::Always);
        let prefix = [var.as_bytes(), b"="].concat();
        with_process(pid, kind, |p| {
            p.environ().iter().find_map(|kv| kv.as_encoded_bytes().strip_prefix(prefix.as_slice()).map(<[u8]>::to_vec))
        })
        .flatten()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub use super::portable::{command, environ_value, is_zombie, pids, start_time, uid};

    pub fn pgid(pid: u32) -> Option<u32> {
        let raw = i32::try_from(pid).ok()?;
        nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(raw))).ok().map(|p| p.as_raw() as u32)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::ProcessId;

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

    /// The sysinfo answers that macOS relies on agree with `/proc` about this very process.
    #[test]
    fn the_portable_answers_agree_with_proc() {
        use super::{imp, portable};
        let me = std::process::id();
        assert_eq!(portable::uid(me), imp::uid(me));
        assert_eq!(portable::command(me), imp::command(me));
        assert!(portable::pids().contains(&me));
        assert!(portable::start_time(me).is_some());
        assert!(!portable::is_zombie(me));
        let path = std::env::var("PATH").expect("PATH is set").into_bytes();
        assert_eq!(imp::environ_value(me, "PATH").as_ref(), Some(&path));
        assert_eq!(portable::environ_value(me, "PATH"), Some(path));
        assert_eq!(portable::environ_value(me, "HARPER_SHARD_NOT_SET_ANYWHERE"), None);
    }
}
