//! The scheduler: installs Harper once per package, then runs the selected shards up to the
//! plan's concurrency, each through its whole life ([`shard`]), and turns their statuses into
//! the run's exit status. Cancellation (a signal, the run's timeout, `fail_fast`) stops new
//! shards from starting and tears the running ones down.

pub mod events;
pub mod control;
pub mod instance;
pub mod shard;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc, watch};

use nix::sys::signal::Signal;

use crate::exit::Exit;
use crate::harper::install;
use crate::harper::instance::WorkDir;
use crate::plan::{HarperSource, Plan, Shard};
use crate::pool::Pool;
use events::{Event, EventKind, ExitCode, ShardId, ShardInfo, ShardStatus};

/// Why a run is being stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// SIGINT, SIGTERM, SIGHUP or SIGQUIT, received at `at`: everything after it must fit
    /// [`budget::CANCEL`].
    Signal { signal: Signal, at: Instant },
    Timeout,
    FailFast,
}

impl Cancel {
    pub fn exit(self) -> Option<Exit> {
        match self {
            Cancel::Signal { signal, .. } => Some(Exit::Signalled(signal)),
            Cancel::Timeout | Cancel::FailFast => None,
        }
    }

    /// When teardown must be over, under a signal.
    pub fn teardown_deadline(self) -> Option<Instant> {
        match self {
            Cancel::Signal { at, .. } => Some(at + budget::TEARDOWN),
            Cancel::Timeout | Cancel::FailFast => None,
        }
    }
}

/// Sends events stamped with the time since the run started.
#[derive(Clone)]
pub struct Emitter {
    started: Instant,
    tx: mpsc::UnboundedSender<Event>,
}

impl Emitter {
    pub fn new(started: Instant, tx: mpsc::UnboundedSender<Event>) -> Emitter {
        Emitter { started, tx }
    }

    pub fn emit(&self, kind: EventKind) {
        let _ = self.tx.send(Event { at: self.started.elapsed(), kind });
    }

    /// An emitter that does not keep the run's event stream open: the reports end when the
    /// run's last emitter goes, whoever else still holds one of these.
    pub fn downgrade(&self) -> WeakEmitter {
        WeakEmitter { started: self.started, tx: self.tx.downgrade() }
    }
}

/// See [`Emitter::downgrade`]. Events sent after the stream closed are dropped.
#[derive(Clone)]
pub struct WeakEmitter {
    started: Instant,
    tx: mpsc::WeakUnboundedSender<Event>,
}

impl WeakEmitter {
    pub fn emit(&self, kind: EventKind) {
        if let Some(tx) = self.tx.upgrade() {
            let _ = tx.send(Event { at: self.started.elapsed(), kind });
        }
    }
}

pub struct Options {
    pub report_dir: PathBuf,
    pub pool: Pool,
    /// Where instance directories go, already checked ([`WorkDir::prepare`]).
    pub work: WorkDir,
}

/// Runs `shards` of `plan`; returns the exit status. Every event goes through `emit`.
pub async fn run(plan: &Plan, shards: Vec<Shard>, opts: Options, emit: Emitter, cancel: watch::Receiver<Option<Cancel>>, cancel_tx: watch::Sender<Option<Cancel>>) -> Exit {
    let total = plan.shards.len();
    let infos: Vec<ShardInfo> = shards
        .iter()
        .map(|s| ShardInfo {
            name: s.name.clone(),
            index: s.index,
            total,
            commands: s.commands.clone(),
            log_dir: shard::log_dir(&opts.report_dir, &s.name),
            junit_dir: shard::junit_dir(&shard::log_dir(&opts.report_dir, &s.name)),
        })
        .collect();
    let now = std::time::SystemTime::now();
    let started_at = now.checked_sub(emit.started.elapsed()).unwrap_or(now);
    let ids: Vec<ShardId> = ShardId::each(&infos).map(|(id, _)| id).collect();
    emit.emit(EventKind::RunStarted { shards: infos, concurrency: plan.run.concurrency, report_dir: opts.report_dir.clone(), started_at });

    let entries = match install_all(&shards, &emit, &cancel).await {
        Ok(entries) => entries,
        Err(e) => {
            let exit = cancel.borrow().and_then(Cancel::exit).unwrap_or(Exit::Infrastructure);
            emit.emit(EventKind::RunFailed { message: format!("{e:#}") });
            emit.emit(EventKind::RunFinished { exit: ExitCode(exit.code()) });
            return exit;
        }
    };

    let timeout = plan.run.timeout;
    let timer_tx = cancel_tx.clone();
    let timer_emit = emit.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        if cancel_once(&timer_tx, Cancel::Timeout) {
            timer_emit.emit(EventKind::RunTimedOut { after: timeout });
        }
    });

    // Shards start in plan order: the dispatcher takes each turn under the concurrency limit
    // before it spawns the shard that uses it.
    let gate = Arc::new(Semaphore::new(plan.run.concurrency.max(1)));
    let pool = Arc::new(opts.pool);
    let work = Arc::new(opts.work);
    let mut tasks = tokio::task::JoinSet::new();
    for (id, shard) in ids.into_iter().zip(shards) {
        let cx = shard::Context {
            id,
            total,
            plan_dir: plan.dir.clone(),
            log_dir: shard::log_dir(&opts.report_dir, &shard.name),
            entry: match &shard.harper.source {
                HarperSource::Bin(path) => path.clone(),
                HarperSource::Package(spec) => entries[spec].clone(),
            },
            work: work.clone(),
            pool: pool.clone(),
            emit: emit.clone(),
            cancel: cancel.clone(),
        };
        let mut waiting = cancel.clone();
        let permit = tokio::select! {
            permit = gate.clone().acquire_owned() => permit.ok(),
            _ = waiting.wait_for(Option::is_some) => None,
        };
        let fail_fast = plan.run.fail_fast.then(|| cancel_tx.clone());
        tasks.spawn(async move {
            let cancelled = *cx.cancel.borrow();
            // The turn (`permit`) is given back only after a failure has cancelled the run
            // under fail_fast, so the shard that takes it next sees the cancellation.
            let (status, _turn) = match (permit, cancelled) {
                (Some(turn), None) => (shard::run(&cx, &shard).await, Some(turn)),
                (_, Some(Cancel::FailFast)) => (skipped(&cx, "not started: an earlier shard failed (fail_fast)"), None),
                _ => (skipped(&cx, "not started: the run was cancelled"), None),
            };
            if status != ShardStatus::Passed
                && status != ShardStatus::Skipped
                && let Some(tx) = fail_fast
            {
                cancel_once(&tx, Cancel::FailFast);
            }
            status
        });
    }

    let mut exit = Exit::Passed;
    while let Some(done) = tasks.join_next().await {
        let status = done.unwrap_or(ShardStatus::Infrastructure);
        exit = exit.worst(status.exit());
    }
    timer.abort();
    if let Some(signal_exit) = cancel.borrow().and_then(Cancel::exit) {
        exit = exit.worst(signal_exit);
    }
    emit.emit(EventKind::RunFinished { exit: ExitCode(exit.code()) });
    exit
}

/// Cancels the run for `why`, unless it was already cancelled: the first reason is the one
/// that counts (a signal's exit status must not be replaced by a later timeout).
fn cancel_once(tx: &watch::Sender<Option<Cancel>>, why: Cancel) -> bool {
    tx.send_if_modified(|c| c.is_none().then(|| *c = Some(why)).is_some())
}

fn skipped(cx: &shard::Context, why: &str) -> ShardStatus {
    let status = if matches!(*cx.cancel.borrow(), Some(Cancel::FailFast)) { ShardStatus::Skipped } else { ShardStatus::Cancelled };
    cx.emit.emit(EventKind::ShardFinished { shard: cx.id, status, cause: Some(why.to_owned()) });
    status
}

/// Installs every package the shards need, once each; returns the entry script per spec. A
/// cancellation stops npm and ends the install.
async fn install_all(shards: &[Shard], emit: &Emitter, cancel: &watch::Receiver<Option<Cancel>>) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut entries = HashMap::new();
    for shard in shards {
        let HarperSource::Package(spec) = &shard.harper.source else { continue };
        if entries.contains_key(spec) {
            continue;
        }
        let cache = install::private_cache()?;
        let started = Instant::now();
        let cached = install::cached(&cache, spec).is_some();
        if !cached {
            emit.emit(EventKind::Installing { package: spec.clone() });
        }
        let progress = |line: &str| emit.emit(EventKind::InstallOutput { line: line.to_owned() });
        let mut cancel = cancel.clone();
        let cancelled = async move {
            let _ = cancel.wait_for(Option::is_some).await;
        };
        let installed = install::ensure(&cache, spec, &progress, cancelled)
            .await
            .with_context(|| format!("cannot install Harper ({spec})"))?;
        emit.emit(EventKind::Installed { package: spec.clone(), took: started.elapsed(), cached });
        entries.insert(spec.clone(), installed.entry);
    }
    Ok(entries)
}

pub mod budget {
    //! The cancellation budget. GitHub sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL; a
    //! run must have torn down and written its report before the second signal. Every wait that
    //! can follow a signal is clamped to the teardown deadline ([`super::Cancel::teardown_deadline`]):
    //! the keepers' grace and the tool's wait for their report, the last-output flush, the port
    //! release check, a running npm install, the wait for an address. What is not clamped is
    //! listed here and counted against the budget below.
    use std::time::Duration;

    /// From the first signal to the tool's exit.
    pub const CANCEL: Duration = Duration::from_secs(7);
    /// From the first signal to the end of every shard's teardown.
    pub const TEARDOWN: Duration = Duration::from_millis(5_000);
    /// Under a signal, a stop's grace: SIGTERM, then at most this before SIGKILL.
    pub const GRACE: Duration = Duration::from_secs(2);
    /// After the tool itself SIGKILLs a stuck keeper and its group at the deadline: reaping them.
    pub const KILL_REAP: Duration = Duration::from_millis(500);
    /// After teardown: the reports (files, step summary, check run) and the exit.
    pub const REPORT: Duration = Duration::from_millis(1_000);
    /// Slack for what the waits above cannot see: scheduling, file removal, a pool poll.
    pub const SLACK: Duration = Duration::from_millis(400);

    const _: () = assert!(
        TEARDOWN.as_millis() + KILL_REAP.as_millis() + REPORT.as_millis() + SLACK.as_millis() <= CANCEL.as_millis()
    );
    const _: () = assert!(GRACE.as_millis() < TEARDOWN.as_millis());
    // Replacing a dead keeper ends with a sweep's wait for SIGKILLed processes.
    const _: () = assert!(crate::process::AFTER_KILL.as_millis() <= KILL_REAP.as_millis());
}
