//! The loopback address pool, shared by every harper-shard process of this user on this
//! machine. Owning an address means holding an exclusive `flock` on its lock file; the kernel
//! drops the lock when the owner dies, however it dies, so a killed run's addresses are free
//! for the very next acquire — no staleness guesses, no PID reuse races.
//!
//! Taking a slot, in order: lock it; if the last owner left a [`record`], end whatever still
//! carries its token ([`sweep`]); probe every plan port ([`probe`]) — a busy address is
//! skipped and the holder named ([`ports`]); write our own record. Giving it back cleanly
//! removes the record. [`status`] shows all of it; [`loopback`] checks that the addresses
//! exist at all.

pub mod loopback;
pub mod probe;
pub mod record;
pub mod status;
pub mod sweep;

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::plan::PoolSpec;
use crate::process::ports::{self, Holder};
use crate::process::{ProcessId, Swept};
use probe::Busy;
use record::Record;

/// How often a waiting acquire looks again: an address given back is taken within this.
pub const POLL: Duration = Duration::from_millis(25);

/// How often a waiting acquire says what it waits for.
pub const WAITING_NOTICE: Duration = Duration::from_secs(10);

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
    /// The last owner of an address died without giving it back; these processes of its were
    /// still running and were ended.
    /// `removed`: its instance directories; `kept`: those left alone, and why.
    Swept {
        addr: Ipv4Addr,
        shard: String,
        owner: u32,
        swept: Vec<Swept>,
        removed: Vec<PathBuf>,
        kept: Vec<String>,
    },
    /// The record beside a lock could not be read; it was replaced without a sweep.
    BadRecord { addr: Ipv4Addr, error: String },
    /// The slot itself cannot be used (its lock or record is not a regular file, or cannot be
    /// written): passed over, like a busy address.
    Unusable { addr: Ipv4Addr, error: String },
    /// Every address is taken; still waiting.
    Waiting { waited: Duration, held: usize, busy: usize },
}

/// A warning for the person reading the log: what happened, to what, and what it likely means.
impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Skipped { addr, busy: Busy::Unavailable(e), .. } => {
                write!(
                    f,
                    "{addr} skipped: it cannot be used on this machine ({e}); see `harper-shard pool validate`"
                )
            }
            Notice::Skipped { addr, port_name, port, busy, holders } => match holders.as_slice() {
                [] => write!(
                    f,
                    "{addr} skipped: port {port} ({port_name}) is {busy} — another Harper or another program?"
                ),
                holders => {
                    let who: Vec<String> = holders.iter().map(ToString::to_string).collect();
                    write!(
                        f,
                        "{addr} skipped: port {port} ({port_name}) is held by {} — another Harper?",
                        who.join(", ")
                    )
                }
            },
            Notice::Swept { addr, shard, owner, swept, removed, kept } => {
                write!(f, "{addr}: shard {shard} of harper-shard pid {owner} did not clean up")?;
                if !swept.is_empty() {
                    let swept: Vec<String> = swept.iter().map(ToString::to_string).collect();
                    write!(f, "; ended what it left running: {}", swept.join(", "))?;
                }
                if !removed.is_empty() {
                    let removed: Vec<String> =
                        removed.iter().map(|d| d.display().to_string()).collect();
                    write!(f, "; removed its instance directories {}", removed.join(", "))?;
                }
                for why in kept {
                    write!(f, "; {why}")?;
                }
                Ok(())
            }
            Notice::BadRecord { addr, error } => {
                write!(f, "{addr}: {error}; replacing it without a sweep")
            }
            Notice::Unusable { addr, error } => write!(f, "{addr} skipped: {error}"),
            Notice::Waiting { waited, held, busy } => write!(
                f,
                "waiting {}s for an address: {held} held by harper-shard runs, {busy} busy with other listeners \
                 (see `harper-shard pool status`)",
                waited.as_secs()
            ),
        }
    }
}

/// Who is asking for an address: written into the slot's record.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The `HARPER_SHARD_TOKEN` every process of the lease will carry.
    pub token: &'a str,
    pub shard: &'a str,
    /// Addresses taken only when no other is free: those of the shard's earlier attempts, so
    /// that a retry runs on a fresh address whenever the pool has one.
    pub avoid: &'a [Ipv4Addr],
}

/// No address could be had within `pool.wait`. Says who holds what.
#[derive(Debug)]
pub struct Exhausted {
    pub waited: Duration,
    pub slots: Vec<status::Slot>,
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.slots.iter().filter(|s| matches!(s.state, status::SlotState::Held)).count();
        let busy =
            self.slots.iter().filter(|s| matches!(s.state, status::SlotState::Busy { .. })).count();
        writeln!(
            f,
            "no free address in the pool after {}: {held} held by harper-shard runs, {busy} busy with other listeners; \
             raise `pool.count` or `pool.wait`, or free the ports. Who holds what:",
            humantime::format_duration(Duration::from_secs(self.waited.as_secs()))
        )?;
        write!(f, "{}", status::table(&self.slots).trim_end())
    }
}

impl std::error::Error for Exhausted {}

pub struct Pool {
    dir: PathBuf,
    spec: PoolSpec,
}

/// A held address. The lock goes when the lease is released or the process dies; the record
/// goes only with a clean [`Lease::release`].
#[derive(Debug)]
pub struct Lease {
    pub addr: Ipv4Addr,
    dir: PathBuf,
    record: Record,
    _lock: Flock<File>,
}

impl Lease {
    /// What the slot's record says about this lease.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Adds processes started for this lease (keepers) to its record, so that the next owner
    /// can end them should this run die.
    pub fn record_pids(&mut self, pids: &[u32]) -> anyhow::Result<()> {
        for &pid in pids {
            if let Some(p) =
                ProcessId::of(pid).filter(|p| !self.record.keepers.iter().any(|k| k.pid == p.pid))
            {
                self.record.keepers.push(p);
            }
        }
        record::write(&self.dir, self.addr, &self.record)
    }

    /// Adds an instance directory, before it is created, so that the next owner removes it
    /// should this run die before its teardown.
    pub fn record_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        self.record.dirs.push(dir.to_path_buf());
        record::write(&self.dir, self.addr, &self.record)
    }

    /// Gives the address back clean: every process of the lease is gone, the ports are free
    /// and the directories removed. Only teardown calls this.
    pub fn release(self) {
        if let Err(e) = record::remove(&self.dir, self.addr) {
            // The next owner will sweep a token nobody carries: slower, not wrong.
            tracing::debug!("{e:#}");
        }
    }

    /// Gives the address back but keeps the record, so that the next owner sweeps whatever
    /// still carries this lease's token. For a teardown that could not confirm its work.
    pub fn release_for_sweep(self) {}
}

impl Pool {
    /// Opens (creating if needed) the pool directory, refusing one that another user could
    /// tamper with.
    pub fn open(dir: &Path, spec: &PoolSpec) -> anyhow::Result<Pool> {
        crate::private_dir::ensure(dir, "the pool directory", "HARPER_SHARD_POOL_DIR")?;
        Ok(Pool { dir: dir.to_path_buf(), spec: spec.clone() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn spec(&self) -> &PoolSpec {
        &self.spec
    }

    /// Takes the first address that no one holds and whose ports are all free, waiting up to
    /// the pool's `wait` when there is none; the error is then an [`Exhausted`]. Blocking: call
    /// it from a blocking task.
    pub fn acquire(
        &self,
        claim: Claim<'_>,
        ports: &[(&'static str, u16)],
        cancelled: &dyn Fn() -> bool,
        notify: &dyn Fn(Notice),
    ) -> anyhow::Result<Lease> {
        let started = Instant::now();
        let mut next_notice = WAITING_NOTICE;
        let mut skipped_before: Vec<Ipv4Addr> = Vec::new();
        loop {
            let (mut held, mut busy) = (0, 0);
            let mut skipped_now = Vec::new();
            let fresh = self.spec.addresses().filter(|a| !claim.avoid.contains(a));
            for addr in fresh.chain(self.spec.addresses().filter(|a| claim.avoid.contains(a))) {
                // One broken slot (its lock a directory or a FIFO, its record unreadable as
                // one) costs that address, said once, not the run.
                let unusable = |error: anyhow::Error, skipped_now: &mut Vec<Ipv4Addr>| {
                    if !skipped_before.contains(&addr) {
                        notify(Notice::Unusable { addr, error: format!("{error:#}") });
                    }
                    skipped_now.push(addr);
                };
                let lock = match self.try_lock(addr) {
                    Ok(Some(lock)) => lock,
                    Ok(None) => {
                        held += 1;
                        continue;
                    }
                    Err(e) => {
                        unusable(e, &mut skipped_now);
                        continue;
                    }
                };
                if let Err(e) = self.sweep_previous(addr, notify) {
                    unusable(e, &mut skipped_now);
                    continue;
                }
                match probe::check_all(addr, ports) {
                    Ok(()) => {
                        let record = Record::new(claim.token, claim.shard);
                        if let Err(e) = record::write(&self.dir, addr, &record) {
                            unusable(e, &mut skipped_now);
                            continue;
                        }
                        return Ok(Lease { addr, dir: self.dir.clone(), record, _lock: lock });
                    }
                    Err((port_name, port, why)) => {
                        busy += 1;
                        if !skipped_before.contains(&addr) {
                            notify(Notice::Skipped {
                                addr,
                                port_name,
                                port,
                                busy: why,
                                holders: ports::holders(addr, port),
                            });
                        }
                        skipped_now.push(addr);
                    }
                }
            }
            skipped_before = skipped_now;
            let waited = started.elapsed();
            if waited >= self.spec.wait {
                let slots = status::survey(self, ports);
                return Err(Exhausted { waited, slots }.into());
            }
            if cancelled() {
                bail!("cancelled while waiting for an address");
            }
            if waited >= next_notice {
                notify(Notice::Waiting { waited, held, busy });
                next_notice += WAITING_NOTICE;
            }
            std::thread::sleep(POLL);
        }
    }

    /// With the slot locked: if the last owner left its record (it died, or its teardown was
    /// not clean), end what still carries its token, then drop the record.
    fn sweep_previous(&self, addr: Ipv4Addr, notify: &dyn Fn(Notice)) -> anyhow::Result<()> {
        match record::read(&self.dir, addr) {
            Ok(None) => return Ok(()),
            Ok(Some(previous)) => {
                let swept = sweep::sweep(&previous);
                let (removed, kept) = sweep::remove_dirs(&previous.dirs);
                if !swept.is_empty() || !removed.is_empty() || !kept.is_empty() {
                    notify(Notice::Swept {
                        addr,
                        shard: previous.shard,
                        owner: previous.owner.pid,
                        swept,
                        removed,
                        kept,
                    });
                }
            }
            Err(e) => notify(Notice::BadRecord { addr, error: format!("{e:#}") }),
        }
        // A record that is not a regular file cannot be removed as one; say so plainly.
        record::remove(&self.dir, addr)
    }

    /// Is the address held by a run right now? Takes and drops the lock when it is free.
    pub fn is_held(&self, addr: Ipv4Addr) -> anyhow::Result<bool> {
        Ok(self.try_lock(addr)?.is_none())
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
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| {
                format!("cannot open the slot lock {} (is it a symbolic link?); remove it and try again", path.display())
            })?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot inspect the slot lock {}", path.display()))?;
        if !meta.is_file() {
            bail!(
                "the slot lock {} is not a regular file; remove it and try again",
                path.display()
            );
        }
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}
