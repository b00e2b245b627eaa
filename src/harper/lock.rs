//! The cache's locks: one `flock` on a file beside each thing that is made once (an install, a
//! template, a key set). Making or removing it takes the lock exclusively; a run using it
//! holds it shared ([`Hold`]) until it is done, so `cache clear` leaves it alone. The kernel drops
//! a lock when its holder dies, so a killed run never leaves a stale one; waiting polls without
//! blocking a thread, so that it can be cancelled.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

/// How often a run waiting for another's lock looks again.
const POLL: Duration = Duration::from_millis(50);

/// The lock on `path`, unless someone else holds it. The file is created if needed, never
/// through a link.
pub fn try_lock(path: &Path) -> anyhow::Result<Option<Flock<File>>> {
    try_flock(path, FlockArg::LockExclusiveNonblock)
}

fn try_flock(path: &Path, how: FlockArg) -> anyhow::Result<Option<Flock<File>>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open the lock {} (a symbolic link?)", path.display()))?;
    match Flock::lock(file, how) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// The lock on `path`, waited for as long as it takes; drop the future to stop waiting. Refused
/// when this process holds it shared: it would wait for itself.
pub async fn wait(path: &Path) -> anyhow::Result<Flock<File>> {
    loop {
        if holds(path) {
            bail!(
                "{} is in use by this run, which cannot remake it while it uses it; run again",
                path.display()
            );
        }
        if let Some(lock) = try_lock(path)? {
            return Ok(lock);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A shared hold on what the lock at its path guards: while any run holds it, no one removes or
/// remakes it. A remake (a broken entry) waits until every run using the old one has ended.
#[derive(Debug)]
pub struct Hold {
    path: PathBuf,
    _lock: Flock<File>,
}

/// How many [`Hold`]s this process has on each lock, so that it never waits for its own.
static HELD: LazyLock<Mutex<HashMap<PathBuf, usize>>> = LazyLock::new(Mutex::default);

fn holds(path: &Path) -> bool {
    HELD.lock().unwrap_or_else(|e| e.into_inner()).contains_key(path)
}

/// A shared hold on `path`, waited for while someone makes or removes what it guards; drop the
/// future to stop waiting.
pub async fn hold(path: &Path) -> anyhow::Result<Hold> {
    loop {
        if let Some(lock) = try_flock(path, FlockArg::LockSharedNonblock)? {
            *HELD
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(path.to_path_buf())
                .or_default() += 1;
            return Ok(Hold { path: path.to_path_buf(), _lock: lock });
        }
        tokio::time::sleep(POLL).await;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.path) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_keeps_others_out_and_this_process_never_waits_for_its_own() {
        let path = std::env::temp_dir()
            .join(format!("hs-lock-test-{}.lock", uuid::Uuid::new_v4().simple()));
        let held = hold(&path).await.unwrap();
        let also = hold(&path).await.expect("holds are shared");
        assert!(try_lock(&path).unwrap().is_none(), "removed while held");
        let waited = tokio::time::timeout(Duration::from_secs(5), wait(&path))
            .await
            .expect("waited for its own hold");
        assert!(waited.unwrap_err().to_string().contains("in use by this run"));
        drop(held);
        assert!(try_lock(&path).unwrap().is_none(), "the second hold still counts");
        drop(also);
        assert!(try_lock(&path).unwrap().is_some());
        std::fs::remove_file(&path).unwrap();
    }
}
