//! The token sweep: before a slot is reused, end every process still carrying the previous
//! owner's `HARPER_SHARD_TOKEN` — a server that escaped its process group, a command's
//! daemon, a keeper whose tool died — and the keepers its record names. The lock says the
//! owner is gone; this makes sure its processes are too.
//!
//! Only processes of our own user are touched, never this process, and always by pid: SIGTERM,
//! a short grace, then SIGKILL. On systems without `/proc` there is nothing to scan by
//! environment; the record's keepers are still ended.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::process::{self, ProcessId};
use super::record::Record;
use crate::supervise::TOKEN_VAR;

/// How long swept processes get to exit on SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// A process the sweep ended.
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

/// The live processes a record leaves behind: every process of ours whose environment holds
/// its token, and its keepers.
pub fn leftovers(record: &Record) -> Vec<ProcessId> {
    let me = std::process::id();
    let uid = nix::unistd::getuid().as_raw();
    let entry = format!("{TOKEN_VAR}={}", record.token);
    let mut found: Vec<ProcessId> = Vec::new();
    #[cfg(not(target_os = "linux"))]
    tracing::debug!("no /proc here: the token sweep ends only the keepers the record names");
    if !record.token.is_empty() {
        for pid in process::pids() {
            if pid != me
                && process::uid(pid) == Some(uid)
                && process::environ_has(pid, &entry)
                && let Some(p) = ProcessId::of(pid).filter(ProcessId::is_alive)
            {
                found.push(p);
            }
        }
    }
    for keeper in &record.keepers {
        if keeper.pid != me && keeper.is_alive() && !found.iter().any(|p| p.pid == keeper.pid) {
            found.push(*keeper);
        }
    }
    found
}

/// Ends `targets`: SIGTERM, up to `grace` for them to go, SIGKILL for the rest, and waits (a
/// little) until they are gone.
pub fn end(targets: &[ProcessId], grace: Duration) -> Vec<Swept> {
    let mut swept: Vec<Swept> =
        targets.iter().map(|p| Swept { pid: p.pid, command: process::command(p.pid), killed: false }).collect();
    for p in targets {
        signal(p, Signal::SIGTERM);
    }
    if !wait_gone(targets, grace) {
        for (p, s) in targets.iter().zip(swept.iter_mut()) {
            if p.is_alive() {
                signal(p, Signal::SIGKILL);
                s.killed = true;
            }
        }
        wait_gone(targets, Duration::from_secs(1));
    }
    swept
}

/// Sweeps what `record` left behind; what was ended.
pub fn sweep(record: &Record) -> Vec<Swept> {
    let targets = leftovers(record);
    if targets.is_empty() {
        return Vec::new();
    }
    end(&targets, GRACE)
}

/// Signals `p` only while it is still the very process the record meant.
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
