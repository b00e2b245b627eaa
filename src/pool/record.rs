//! The record beside a slot's lock: who holds the address, for which shard, since when, the
//! token its processes carry and the instance directories it made. The lock decides ownership; the record only explains it
//! (`pool status`, the exhaustion table) and tells the next owner what to sweep when the last
//! one died without cleaning up.
//!
//! Records live in the 0700 pool directory and are only ever replaced whole: written to a
//! fresh temporary file (O_EXCL, O_NOFOLLOW) and renamed over `<addr>.json`, so a reader sees
//! the old record or the new one, never half of one. Reading refuses anything that is not a
//! regular file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::process::ProcessId;

/// Anything larger is not one of our records.
const MAX_LEN: u64 = 64 * 1024;

/// Who holds a slot, as its owner wrote it down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The harper-shard process holding the lock.
    pub owner: ProcessId,
    /// `HARPER_SHARD_TOKEN` of every process started for this lease.
    pub token: String,
    /// Keeper processes started for this lease, added once they exist.
    #[serde(default)]
    pub keepers: Vec<ProcessId>,
    /// Instance directories made for this lease, recorded before they are created: a run
    /// killed before its teardown leaves them to the next owner of the slot.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    pub shard: String,
    /// Seconds since the Unix epoch when the address was taken.
    pub since: u64,
}

impl Record {
    /// A record for this process taking a slot now.
    pub fn new(token: &str, shard: &str) -> Record {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Record {
            owner: ProcessId::current(),
            token: token.to_owned(),
            keepers: Vec::new(),
            dirs: Vec::new(),
            shard: shard.to_owned(),
            since,
        }
    }

    /// When the address was taken, as a time.
    pub fn since_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.since)
    }
}

/// `<dir>/<addr>.json`.
pub fn path(dir: &Path, addr: Ipv4Addr) -> PathBuf {
    dir.join(format!("{addr}.json"))
}

/// Replaces the record of `addr` atomically.
pub fn write(dir: &Path, addr: Ipv4Addr, record: &Record) -> anyhow::Result<()> {
    let target = path(dir, addr);
    let temp = dir.join(format!(".{addr}.json.{}", std::process::id()));
    let text = serde_json::to_vec(record).context("cannot encode a slot record")?;
    // A temporary file of ours left by a crash under this pid would block O_EXCL: it is ours
    // (the directory is 0700), so remove it once and try again.
    let mut file = match create_new(&temp) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&temp);
            create_new(&temp)
        }
        other => other,
    }
    .with_context(|| format!("cannot create {}", temp.display()))?;
    let written = file.write_all(&text).and_then(|()| file.flush());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, &target)) {
        let _ = std::fs::remove_file(&temp);
        return Err(e)
            .with_context(|| format!("cannot write the slot record {}", target.display()));
    }
    Ok(())
}

fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The record of `addr`, if there is one. A record that cannot be understood is an error, so
/// that the caller can say so instead of silently skipping a sweep.
pub fn read(dir: &Path, addr: Ipv4Addr) -> anyhow::Result<Option<Record>> {
    let path = path(dir, addr);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path);
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot open the slot record {} (a symbolic link?)", path.display())
            });
        }
    };
    let meta = file.metadata().with_context(|| format!("cannot inspect {}", path.display()))?;
    if !meta.is_file() {
        bail!("the slot record {} is not a regular file; remove it", path.display());
    }
    let mut text = Vec::new();
    file.take(MAX_LEN)
        .read_to_end(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let record = serde_json::from_slice(&text).with_context(|| {
        format!("the slot record {} is not a harper-shard record; remove it", path.display())
    })?;
    Ok(Some(record))
}

/// Removes the record of `addr`: the slot was given back cleanly, nothing to sweep.
pub fn remove(dir: &Path, addr: Ipv4Addr) -> anyhow::Result<()> {
    let path = path(dir, addr);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("cannot remove the slot record {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hs-record-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_written_record_reads_back_and_leaves_no_temporary_file() {
        let dir = temp_dir();
        let addr = Ipv4Addr::new(127, 0, 0, 9);
        let record = Record::new("tok", "db/2");
        write(&dir, addr, &record).unwrap();
        assert_eq!(read(&dir, addr).unwrap(), Some(record));
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("127.0.0.9.json")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_that_is_a_symlink_is_not_followed() {
        let dir = temp_dir();
        let addr = Ipv4Addr::new(127, 0, 0, 9);
        let elsewhere = dir.join("elsewhere.json");
        std::fs::write(&elsewhere, serde_json::to_vec(&Record::new("tok", "x")).unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, path(&dir, addr)).unwrap();
        assert!(read(&dir, addr).is_err(), "a symbolic link was read as a record");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
