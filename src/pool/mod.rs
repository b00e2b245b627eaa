//! The loopback address pool, shared by every harper-shard process of this user on this
//! machine. Owning an address means holding an exclusive `flock` on its lock file; the kernel
//! drops the lock when the owner dies, however it dies, so a killed run's addresses are free
//! for the very next acquire — no staleness guesses, no PID reuse races.
//!
//! Before an address is handed out, every port the plan uses is probed ([`probe`]); a busy
//! address is skipped and the holder named ([`holder`]).

pub mod holder;
pub mod probe;

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::plan::PoolSpec;
use holder::Holder;
use probe::Busy;

/// The pool directory: `$HARPER_SHARD_POOL_DIR`, or `$TMPDIR/harper-shard-<uid>`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARPER_SHARD_POOL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    std::env::temp_dir().join(format!("harper-shard-{}", nix::unistd::getuid()))
}

/// What the pool has to say while it looks for an address.
#[derive(Debug, Clone)]
pub enum Notice {
    /// An address was passed over because a port on it is in use by someone else.
    Skipped { addr: Ipv4Addr, port_name: &'static str, port: u16, busy: Busy, holders: Vec<Holder> },
    /// Every address is taken; still waiting.
    Waiting { waited: Duration, held: usize, busy: usize },
}

pub struct Pool {
    dir: PathBuf,
    spec: PoolSpec,
}

/// A held address. The lock goes when the lease is released or the process dies.
#[derive(Debug)]
pub struct Lease {
    pub addr: Ipv4Addr,
    _lock: Flock<File>,
}

impl Lease {
    /// Gives the address back. Only teardown calls this, after the ports were seen free.
    pub fn release(self) {}
}

impl Pool {
    /// Opens (creating if needed) the pool directory, refusing one that another user could
    /// tamper with.
    pub fn open(dir: &Path, spec: &PoolSpec) -> anyhow::Result<Pool> {
        match std::fs::symlink_metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir.parent().unwrap_or(Path::new("/")))
                    .with_context(|| format!("cannot create the parent of the pool directory {}", dir.display()))?;
                match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e).with_context(|| format!("cannot create the pool directory {}", dir.display())),
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot inspect the pool directory {}", dir.display())),
            Ok(_) => {}
        }
        let meta = std::fs::symlink_metadata(dir)
            .with_context(|| format!("cannot inspect the pool directory {}", dir.display()))?;
        let uid = nix::unistd::getuid().as_raw();
        if meta.file_type().is_symlink() {
            bail!(
                "the pool directory {} is a symbolic link; refusing it, as another user could point it anywhere. \
                 Remove it, or set HARPER_SHARD_POOL_DIR to a directory of your own",
                dir.display()
            );
        }
        if !meta.is_dir() {
            bail!("the pool directory {} is not a directory; remove it or set HARPER_SHARD_POOL_DIR", dir.display());
        }
        if meta.uid() != uid {
            bail!(
                "the pool directory {} belongs to uid {}, not to you (uid {uid}); set HARPER_SHARD_POOL_DIR to a directory of your own",
                dir.display(),
                meta.uid()
            );
        }
        if meta.permissions().mode() & 0o022 != 0 {
            bail!(
                "the pool directory {} is writable by others (mode {:o}); run `chmod 700 {}` or set HARPER_SHARD_POOL_DIR",
                dir.display(),
                meta.permissions().mode() & 0o777,
                dir.display()
            );
        }
        Ok(Pool { dir: dir.to_path_buf(), spec: spec.clone() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the first address that no one holds and whose ports are all free, waiting up to
    /// the pool's `wait` when there is none. Blocking: call it from a blocking task.
    pub fn acquire(
        &self,
        ports: &[(&'static str, u16)],
        cancelled: &dyn Fn() -> bool,
        notify: &dyn Fn(Notice),
    ) -> anyhow::Result<Lease> {
        let started = Instant::now();
        let mut next_notice = Duration::from_secs(10);
        let mut skipped_before: Vec<Ipv4Addr> = Vec::new();
        loop {
            let (mut held, mut busy) = (0, 0);
            let mut skipped_now = Vec::new();
            for addr in self.spec.addresses() {
                let Some(lock) = self.try_lock(addr)? else {
                    held += 1;
                    continue;
                };
                match probe::check_all(addr, ports) {
                    Ok(()) => return Ok(Lease { addr, _lock: lock }),
                    Err((port_name, port, why)) => {
                        busy += 1;
                        if !skipped_before.contains(&addr) {
                            notify(Notice::Skipped { addr, port_name, port, busy: why, holders: holder::holders(addr, port) });
                        }
                        skipped_now.push(addr);
                    }
                }
            }
            skipped_before = skipped_now;
            let waited = started.elapsed();
            if waited >= self.spec.wait {
                bail!(
                    "no free address in the pool after {}: {held} held by harper-shard runs, {busy} busy with other listeners \
                     (see `harper-shard pool status`); raise `pool.count` or `pool.wait`, or free the ports",
                    humantime::format_duration(Duration::from_secs(waited.as_secs()))
                );
            }
            if cancelled() {
                bail!("cancelled while waiting for an address");
            }
            if waited >= next_notice {
                notify(Notice::Waiting { waited, held, busy });
                next_notice += Duration::from_secs(10);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Locks the address's file without blocking; `None` when another owner holds it.
    fn try_lock(&self, addr: Ipv4Addr) -> anyhow::Result<Option<Flock<File>>> {
        let path = self.dir.join(format!("{addr}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("cannot open the slot lock {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}
