//! The token sweep: before a slot is reused, end every process still carrying the previous
//! owner's `HARPER_SHARD_TOKEN` (or a child's token below it) — a server that escaped its
//! process group, a command's daemon, a keeper whose tool died — and the keepers its record
//! names, then remove the instance directories it recorded. The lock says the owner is gone;
//! this makes sure its processes and files are too. Finding and ending them is
//! [`crate::process`]'s (which the tool also uses to do the work of a keeper that died); this
//! module decides what a record leaves behind.
//!
//! Only processes of our own user are touched, never this process, and always by pid, through
//! [`process::end`]: SIGTERM, a short grace, then SIGKILL.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use super::record::Record;
use crate::harper::layout;
use crate::process::{self, ProcessId, Swept};

/// How long swept processes get to exit on SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);

/// The live processes a record leaves behind: every process of ours carrying its token, and
/// the keepers it names — those only while they are provably the very processes recorded (our
/// user, the recorded start time), since a record names pids and pids are reused.
pub fn leftovers(record: &Record) -> Vec<ProcessId> {
    let me = std::process::id();
    let uid = nix::unistd::getuid().as_raw();
    let mut found =
        if record.token.is_empty() { Vec::new() } else { process::carrying(&record.token) };
    for keeper in &record.keepers {
        let ours = keeper.start.is_some() && process::uid(keeper.pid) == Some(uid);
        if ours
            && keeper.pid != me
            && keeper.is_alive()
            && !found.iter().any(|p| p.pid == keeper.pid)
        {
            found.push(*keeper);
        }
    }
    found
}

/// Sweeps what `record` left behind; what was ended.
pub fn sweep(record: &Record) -> Vec<Swept> {
    let targets = leftovers(record);
    if targets.is_empty() {
        return Vec::new();
    }
    process::end(&targets, GRACE)
}
/// Removes the instance directories a record names. Only folders that are what the tool makes
/// are touched: an absolute path, a name [`layout::is_instance_name`] recognises, a real
/// directory (not a link) owned by this user. Returns what was removed, and what was left and
/// why.
pub fn remove_dirs(dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let uid = nix::unistd::getuid().as_raw();
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for dir in dirs {
        let named = dir.is_absolute()
            && dir.file_name().and_then(|n| n.to_str()).is_some_and(layout::is_instance_name);
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
