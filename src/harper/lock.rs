//! The cache's locks: one `flock` on a file beside each thing that is made once (an install, a
//! template, a JWT key set). The kernel drops a lock when its holder dies, so a killed run never
//! leaves a stale one; waiting polls without blocking a thread, so that it can be cancelled.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};

/// How often a run waiting for another's lock looks again.
const POLL: Duration = Duration::from_millis(50);

/// The lock on `path`, unless someone else holds it. The file is created if needed, never
/// through a link.
pub fn try_lock(path: &Path) -> anyhow::Result<Option<Flock<File>>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot open the lock {} (a symbolic link?)", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// The lock on `path`, waited for as long as it takes; drop the future to stop waiting.
pub async fn wait(path: &Path) -> anyhow::Result<Flock<File>> {
    loop {
        if let Some(lock) = try_lock(path)? {
            return Ok(lock);
        }
        tokio::time::sleep(POLL).await;
    }
}
