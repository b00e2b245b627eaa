//! The scheduler: installs Harper once per package, then runs the selected shards up to the
//! plan's concurrency, each through its whole life ([`shard`]), and turns their statuses into
//! the run's exit status. Cancellation (a signal, the run's timeout, `fail_fast`) stops new
//! shards from starting and tears the running ones down. The next shard may boot its instance
//! ahead of its turn ([`ahead`]).

pub mod ahead;
pub mod context;
pub mod control;
pub mod events;
pub mod instance;
pub mod protocol;
pub mod shard;

pub use context::{Cancel, Emitter, ReportDir, WeakEmitter, budget};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::exit::Exit;
use crate::harper::layout::WorkDir;
use crate::harper::lock::Hold;
use crate::plan::{HarperSource, Plan, Shard};
use crate::pool::Pool;
use ahead::Turn;
use events::{Attempt, EventKind, ExitCode, ShardId, ShardInfo, ShardStatus};

pub struct Options {
    pub report_dir: ReportDir,
    pub pool: Pool,
    /// Where instance directories go, already checked ([`WorkDir::prepare`]).
    pub work: WorkDir,
    /// The flake history the run was given, passed on to the reports.
    pub flakes: crate::plan::timings::Flakes,
}

/// Runs `shards` of `plan`; returns the exit status. Every event goes through `emit`.
pub async fn run(
    plan: &Plan,
    shards: Vec<Shard>,
    opts: Options,
    emit: Emitter,
    cancel: watch::Receiver<Option<Cancel>>,
    cancel_tx: watch::Sender<Option<Cancel>>,
) -> Exit {
    let total = plan.shards.len();
    let flaky_fails = plan.run.flaky_fails;
    let infos: Vec<ShardInfo> = shards
        .iter()
        .map(|s| ShardInfo {
            name: s.name.clone(),
            index: s.index,
            total,
            commands: s.commands.clone(),
            log_dir: opts.report_dir.shard(&s.name).path().to_path_buf(),
        })
        .collect();
    let now = std::time::SystemTime::now();
    let started_at = now.checked_sub(emit.started.elapsed()).unwrap_or(now);
    let ids: Vec<ShardId> = ShardId::each(&infos).map(|(id, _)| id).collect();
    emit.emit(EventKind::RunStarted {
        shards: infos,
        concurrency: plan.run.concurrency,
        report_dir: opts.report_dir.path().to_path_buf(),
        started_at,
        flaky_fails,
        plan_dir: plan.dir.clone(),
        flakes: opts.flakes,
    });

    // The packages stay held until the run ends: a `cache clear` meanwhile keeps them.
    let (entries, _in_use) = match install_all(&shards, &emit, &cancel).await {
        Ok(installed) => installed,
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
    // before it spawns the shard that uses it, or spawns the next shard to boot ahead and
    // takes the next turn for it before any other.
    let gate = Arc::new(Semaphore::new(plan.run.concurrency.max(1)));
    let mut ahead = ahead::Gate::new(plan, &shards);
    let mut promised: Option<oneshot::Sender<OwnedSemaphorePermit>> = None;
    let pool = Arc::new(opts.pool);
    let work = Arc::new(opts.work);
    let mut tasks = tokio::task::JoinSet::new();
    for (id, shard) in ids.into_iter().zip(shards) {
        let shard_dir = opts.report_dir.shard(&shard.name);
        let attempt = Attempt::first(shard.retries + 1);
        let cx = context::Context {
            id,
            name: shard.name.clone(),
            total,
            attempt,
            earlier: Vec::new(),
            plan_dir: plan.dir.clone(),
            dir: shard_dir.attempt(attempt.attempt),
            shard_dir,
            entry: match &shard.harper.source {
                HarperSource::Bin(path) => path.clone(),
                HarperSource::Package(spec) => entries[spec].clone(),
            },
            work: work.clone(),
            pool: pool.clone(),
            emit: emit.clone(),
            cancel: cancel.clone(),
        };
        if let Some(next) = promised.take() {
            hand_over(&gate, next, &cancel).await;
        }
        let mut waiting = cancel.clone();
        let turn = tokio::select! {
            biased;
            permit = gate.clone().acquire_owned() => permit.ok().map(Turn::Held),
            _ = waiting.wait_for(Option::is_some) => None,
            () = ahead.open(&shard) => {
                let (next, turn) = oneshot::channel();
                promised = Some(next);
                Some(Turn::Ahead(turn))
            }
        };
        let fail_fast = plan.run.fail_fast.then(|| cancel_tx.clone());
        tasks.spawn(async move {
            let cancelled = *cx.cancel.borrow();
            // The turn is given back only after a failure has cancelled the run under
            // fail_fast, so the shard that takes it next sees the cancellation.
            let (status, _turn) = match (turn, cancelled) {
                (Some(mut turn), None) => (shard::run(&cx, &shard, &mut turn).await, Some(turn)),
                (_, Some(Cancel::FailFast)) => {
                    (skipped(&cx, "not started: an earlier shard failed (fail_fast)"), None)
                }
                _ => (skipped(&cx, "not started: the run was cancelled"), None),
            };
            if status.exit(flaky_fails) != Exit::Passed
                && let Some(tx) = fail_fast
            {
                cancel_once(&tx, Cancel::FailFast);
            }
            status
        });
    }

    if let Some(next) = promised.take() {
        hand_over(&gate, next, &cancel).await;
    }
    let mut exit = Exit::Passed;
    while let Some(done) = tasks.join_next().await {
        let status = done.unwrap_or(ShardStatus::Infrastructure);
        exit = exit.worst(status.exit(flaky_fails));
    }
    timer.abort();
    if let Some(signal_exit) = cancel.borrow().and_then(Cancel::exit) {
        exit = exit.worst(signal_exit);
    }
    emit.emit(EventKind::RunFinished { exit: ExitCode(exit.code()) });
    exit
}

/// Takes the next turn for the shard that booted ahead and hands it over; gives up when the
/// run is cancelled first (the shard then sees the channel closed) or the shard no longer
/// waits for it (it ended: its boot failed).
async fn hand_over(
    gate: &Arc<Semaphore>,
    mut next: oneshot::Sender<OwnedSemaphorePermit>,
    cancel: &watch::Receiver<Option<Cancel>>,
) {
    let mut waiting = cancel.clone();
    let permit = tokio::select! {
        biased;
        _ = waiting.wait_for(Option::is_some) => None,
        () = next.closed() => None,
        permit = gate.clone().acquire_owned() => permit.ok(),
    };
    if let Some(permit) = permit {
        // Refused when the shard ended meanwhile: the turn goes back to the gate.
        let _ = next.send(permit);
    }
}

/// Cancels the run for `why`, unless it was already cancelled: the first reason is the one
/// that counts (a signal's exit status must not be replaced by a later timeout).
fn cancel_once(tx: &watch::Sender<Option<Cancel>>, why: Cancel) -> bool {
    tx.send_if_modified(|c| c.is_none().then(|| *c = Some(why)).is_some())
}

fn skipped(cx: &context::Context, why: &str) -> ShardStatus {
    let status = if matches!(*cx.cancel.borrow(), Some(Cancel::FailFast)) {
        ShardStatus::Skipped
    } else {
        ShardStatus::Cancelled
    };
    cx.emit.emit(EventKind::ShardFinished { shard: cx.id, status, cause: Some(why.to_owned()) });
    status
}

/// Installs every package the shards need, once each; returns the entry script per spec and the
/// holds that keep the packages in the cache while they are used. A cancellation stops npm and
/// ends the install.
async fn install_all(
    shards: &[Shard],
    emit: &Emitter,
    cancel: &watch::Receiver<Option<Cancel>>,
) -> anyhow::Result<(HashMap<String, PathBuf>, Vec<Hold>)> {
    let (mut entries, mut holds) = (HashMap::new(), Vec::new());
    for shard in shards {
        let HarperSource::Package(spec) = &shard.harper.source else { continue };
        if entries.contains_key(spec) {
            continue;
        }
        let (installed, hold) = context::install(spec, emit, cancel)
            .await
            .with_context(|| format!("cannot install Harper ({spec})"))?;
        entries.insert(spec.clone(), installed.entry);
        holds.push(hold);
    }
    Ok((entries, holds))
}
