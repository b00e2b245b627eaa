//! The scheduler: installs Harper once per package, then runs the selected shards up to the
//! plan's concurrency, each through its whole life ([`shard`]), and turns their statuses into
//! the run's exit status. Cancellation (a signal, the run's timeout, `fail_fast`) stops new
//! shards from starting and tears the running ones down.

pub mod events;
pub mod shard;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::exit::Exit;
use crate::harper::install;
use crate::plan::{HarperSource, Plan, Shard};
use crate::pool::Pool;
use events::{Event, EventKind, ExitCode, ShardInfo, ShardStatus};

/// Why a run is being stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    Interrupt,
    Terminate,
    Timeout,
    FailFast,
}

impl Cancel {
    pub fn exit(self) -> Option<Exit> {
        match self {
            Cancel::Interrupt => Some(Exit::Interrupted),
            Cancel::Terminate => Some(Exit::Terminated),
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
}

pub struct Options {
    pub report_dir: PathBuf,
    pub pool: Pool,
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
            log_dir: opts.report_dir.join(shard::dir_name(&s.name)),
        })
        .collect();
    let now = std::time::SystemTime::now();
    let started_at = now.checked_sub(emit.started.elapsed()).unwrap_or(now);
    emit.emit(EventKind::RunStarted { shards: infos, concurrency: plan.run.concurrency, report_dir: opts.report_dir.clone(), started_at });

    let entries = match install_all(&shards, &emit).await {
        Ok(entries) => entries,
        Err(e) => {
            emit.emit(EventKind::RunFailed { message: format!("{e:#}") });
            emit.emit(EventKind::RunFinished { exit: ExitCode(Exit::Infrastructure.code()) });
            return Exit::Infrastructure;
        }
    };

    let timeout = plan.run.timeout;
    let timer_tx = cancel_tx.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        cancel_once(&timer_tx, Cancel::Timeout);
    });

    // Shards start in plan order: the dispatcher takes each turn under the concurrency limit
    // before it spawns the shard that uses it.
    let gate = Arc::new(Semaphore::new(plan.run.concurrency.max(1)));
    let pool = Arc::new(opts.pool);
    let mut tasks = tokio::task::JoinSet::new();
    for (id, shard) in shards.into_iter().enumerate() {
        let cx = shard::Context {
            id,
            total,
            plan_dir: plan.dir.clone(),
            log_dir: opts.report_dir.join(shard::dir_name(&shard.name)),
            entry: match &shard.harper.source {
                HarperSource::Bin(path) => path.clone(),
                HarperSource::Package(spec) => entries[spec].clone(),
            },
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
            let status = match (permit, cancelled) {
                (Some(_permit), None) => shard::run(&cx, &shard).await,
                (_, Some(Cancel::FailFast)) => skipped(&cx, "not started: an earlier shard failed (fail_fast)"),
                _ => skipped(&cx, "not started: the run was cancelled"),
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
fn cancel_once(tx: &watch::Sender<Option<Cancel>>, why: Cancel) {
    tx.send_if_modified(|c| c.is_none().then(|| *c = Some(why)).is_some());
}

fn skipped(cx: &shard::Context, why: &str) -> ShardStatus {
    let status = if matches!(*cx.cancel.borrow(), Some(Cancel::FailFast)) { ShardStatus::Skipped } else { ShardStatus::Cancelled };
    cx.emit.emit(EventKind::ShardFinished { shard: cx.id, status, cause: Some(why.to_owned()) });
    status
}

/// Installs every package the shards need, once each; returns the entry script per spec.
async fn install_all(shards: &[Shard], emit: &Emitter) -> anyhow::Result<HashMap<String, PathBuf>> {
    let mut entries = HashMap::new();
    for shard in shards {
        let HarperSource::Package(spec) = &shard.harper.source else { continue };
        if entries.contains_key(spec) {
            continue;
        }
        let cache = install::cache_dir()?;
        let started = Instant::now();
        let cached = install::cached(&cache, spec).is_some();
        if !cached {
            emit.emit(EventKind::Installing { package: spec.clone() });
        }
        let progress = |line: &str| emit.emit(EventKind::InstallOutput { line: line.to_owned() });
        let installed = install::ensure(&cache, spec, &progress)
            .await
            .with_context(|| format!("cannot install Harper ({spec})"))?;
        emit.emit(EventKind::Installed { package: spec.clone(), took: started.elapsed(), cached });
        entries.insert(spec.clone(), installed.entry);
    }
    Ok(entries)
}

/// Under SIGINT / SIGTERM every stop gets at most this grace.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Under SIGINT / SIGTERM, how long teardown waits for the ports to be released.
pub const CANCEL_PORT_RELEASE: Duration = Duration::from_millis(1500);

// A cancelled shard's teardown (a command's stop, then Harper's, then the port check) must end
// within 7 s: GitHub sends SIGTERM 7.5 s after SIGINT, then SIGKILL.
const _: () = assert!(2 * CANCEL_GRACE.as_millis() + CANCEL_PORT_RELEASE.as_millis() < 7_000);
