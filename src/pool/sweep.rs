//! The token sweep: before a slot is reused, end every process still carrying the previous
//! owner's `HARPER_SHARD_TOKEN` (or a child's token below it) — a server that escaped its
//! process group, a command's daemon, a keeper whose tool died — and the keepers its record
//! names, then remove the instance directories it recorded. The lock says the owner is gone;
//! this makes sure its processes and files are too. The tool also uses it to do the work of a
//! keeper that died ([`carrying`] one child's token).
//!
//! Only processes of our own user are touched, never this process, and always by pid: SIGTERM,
//! a short grace, then SIGKILL. Environments are read from `/proc`, or through sysinfo where
//! there is none (macOS).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::process::{self, ProcessId};
use super::record::Record;
use crate::harper::instance;
use crate::supervise::TOKEN_VAR;

/// How long swept processes get to exit on SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long SIGKILLed processes are given to be gone (within a signal's budget: see
/// `run::budget::KILL_REAP`).
pub const AFTER_KILL: Duration = Duration::from_millis(500);

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

/// The live processes a record leaves behind: every process of ours carrying its token, and
/// the keepers it names — those only while they are provably the very processes recorded (our
/// user, the recorded start time), since a record names pids and pids are reused.
pub fn leftovers(record: &Record) -> Vec<ProcessId> {
    let me = std::process::id();
    let uid = nix::unistd::getuid().as_raw();
    let mut found = if record.token.is_empty() { Vec::new() } else { carrying(&record.token) };
    for keeper in &record.keepers {
        let ours = keeper.start.is_some() && process::uid(keeper.pid) == Some(uid);
        if ours && keeper.pid != me && keeper.is_alive() && !found.iter().any(|p| p.pid == keeper.pid) {
            found.push(*keeper);
        }
    }
    found
}

/// Every live process of ours, other than this one, whose `HARPER_SHARD_TOKEN` is `token` or
/// lies below it (`token/…`: one child's token below its lease's).
pub fn carrying(token: &str) -> Vec<ProcessId> {
    let me = std::process::id();
    let uid = nix::unistd::getuid().as_raw();
    process::pids()
        .into_iter()
        .filter(|&pid| pid != me && process::uid(pid) == Some(uid) && process::carries_token(pid, TOKEN_VAR, token))
        .filter_map(|pid| ProcessId::of(pid).filter(ProcessId::is_alive))
        .collect()
}

/// Ends `targets`: SIGTERM, up to `grace` for them to go, SIGKILL for the rest, and waits (a
/// little) until they are gone.
pub fn end(targets: &[ProcessId], grace: Duration) -> Vec<Swept> {
    let mut swept: Vec<Swept> =
        targets.iter().map(|p| Swept { pid: p.pid, command: process::command(p.pid), killed: false }).collect();
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

/// Sweeps what `record` left behind; what was ended.
pub fn sweep(record: &Record) -> Vec<Swept> {
    let targets = leftovers(record);
    if targets.is_empty() {
        return Vec::new();
    }
    end(&targets, GRACE)
}

/// Removes the instance directories a record names. Only folders that are what the tool makes
/// are touched: an absolute path, a name [`instance::is_instance_name`] recognises, a real
/// directory (not a link) owned by this user. Returns what was removed, and what was left and
/// why.
pub fn remove_dirs(dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let uid = nix::unistd::getuid().as_raw();
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for dir in dirs {
        let named = dir.is_absolute() && dir.file_name().and_then(|n| n.to_str()).is_some_and(instance::is_instance_name);
        if !named {
            kept.push(format!("left {} alone: not an instance directory's name", dir.display()));
            continue;
        }
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => kept.push(format!("cannot inspect {}: {e}", dir.display())),
            Ok(meta) if !meta.is_dir() || meta.uid() != uid => {
                kept.push(format!("left {} alone: not a directory of ours", dir.display()));
            }
            Ok(_) => match std::fs::remove_dir_all(dir) {
                Ok(()) => removed.push(dir.clone()),
                Err(e) => kept.push(format!("cannot remove {}: {e}", dir.display())),
            },
        }
    }
    (removed, kept)
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
