//! What every part of a shard's run stands on: the run's cancellation and its budget, the
//! event emitter, a shard attempt's [`Context`], the report folder's layout ([`ReportDir`] —
//! the one place its paths are named), and the helpers that fit every wait to the budget
//! (the deadline under a signal, `within`, a stop's grace).
//!
//! Not here: instances (`instance`), the control socket (`control`), the shard's attempts
//! (`shard`). Each of those stands on this file; this file stands on none of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};

use super::events::{Attempt, BootLogs, Event, EventKind, InstancePhase, ShardId, Warning};
use crate::exit::Exit;
use crate::harper::install::{self, Installed};
use crate::harper::layout::WorkDir;
use crate::harper::lock::Hold;
use crate::pool::Pool;
use crate::supervise::output::Unlogged;
use crate::supervise::{self, Child};

/// Why a run is being stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// SIGINT, SIGTERM, SIGHUP or SIGQUIT, received at `at`: everything after it must fit
    /// [`budget::CANCEL`].
    Signal {
        signal: Signal,
        at: Instant,
    },
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
    pub(super) started: Instant,
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

/// Installs npm `spec` into the cache unless it is there, telling the reporters, and holds it
/// until the [`Hold`] goes: the run's packages before its shards start, and a package an
/// instance is started on later ([`super::instance::Harper`]). A cancellation stops npm.
pub async fn install(
    spec: &str,
    emit: &Emitter,
    cancel: &watch::Receiver<Option<Cancel>>,
) -> anyhow::Result<(Installed, Hold)> {
    let cache = install::private_cache()?;
    let started = Instant::now();
    let cached = install::cached(&cache, spec).is_some();
    if !cached {
        emit.emit(EventKind::Installing { package: spec.to_owned() });
    }
    let progress = |line: &str| emit.emit(EventKind::InstallOutput { line: line.to_owned() });
    let mut cancel = cancel.clone();
    let cancelled = async move {
        let _ = cancel.wait_for(Option::is_some).await;
    };
    let (installed, hold) = install::ensure(&cache, spec, &progress, cancelled).await?;
    emit.emit(EventKind::Installed { package: spec.to_owned(), took: started.elapsed(), cached });
    Ok((installed, hold))
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
        TEARDOWN.as_millis() + KILL_REAP.as_millis() + REPORT.as_millis() + SLACK.as_millis()
            <= CANCEL.as_millis()
    );
    const _: () = assert!(GRACE.as_millis() < TEARDOWN.as_millis());
    // Replacing a dead keeper ends with a sweep's wait for SIGKILLed processes.
    const _: () = assert!(crate::process::AFTER_KILL.as_millis() <= KILL_REAP.as_millis());
}

/// After a stop, how long the last output may take to reach the logs. Only a process that
/// escaped the keeper (possible where there is no subreaper) can hold the pipes open longer;
/// the shard must not hang on it.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// The report directory. Every path in it is named here and nowhere else, and each is
/// injective by construction: a shard's folder is its escaped name ([`crate::plan::dir_name`]);
/// its first attempt writes into that folder, attempt `n` into its `attempt-n` folder, which
/// no other name in a shard's folder can be; an instance's logs go to `harper` (the shard's
/// own) or `instances/<id>`, ids being `main` or `i<n>`; a later boot's into `boot-<n>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportDir(PathBuf);

impl ReportDir {
    pub fn new(root: impl Into<PathBuf>) -> ReportDir {
        ReportDir(root.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn report_json(&self) -> PathBuf {
        self.0.join("report.json")
    }

    pub fn junit_xml(&self) -> PathBuf {
        self.0.join("junit.xml")
    }

    pub fn report_html(&self) -> PathBuf {
        self.0.join("report.html")
    }

    pub fn timings_json(&self) -> PathBuf {
        self.0.join("timings.json")
    }

    /// The folder of shard `name`.
    pub fn shard(&self, name: &str) -> ShardDir {
        ShardDir(self.0.join(crate::plan::dir_name(name)))
    }
}

/// A shard's folder in the report directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardDir(PathBuf);

impl ShardDir {
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where attempt `n` (1-based) keeps its logs: the shard's folder for the first, so that a
    /// run without retries lays its logs out as it always did; `attempt-<n>` in it for later ones.
    pub fn attempt(&self, n: u32) -> AttemptDir {
        if n <= 1 {
            AttemptDir(self.0.clone())
        } else {
            AttemptDir(self.0.join(format!("attempt-{n}")))
        }
    }
}

/// The folder of one attempt of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptDir(PathBuf);

impl AttemptDir {
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where command `i` (0-based) writes its output, stdout and stderr interleaved.
    pub fn command_log(&self, i: usize) -> PathBuf {
        self.0.join(format!("command-{}.log", i + 1))
    }

    /// Where the commands may leave JUnit XML (`HARPER_SHARD_JUNIT_DIR`); absolute: commands run
    /// in the plan's directory, the report directory may be relative.
    pub fn junit(&self) -> PathBuf {
        let dir = self.0.join("junit");
        std::path::absolute(&dir).unwrap_or(dir)
    }

    /// The folders of instance `id`: the shard's own (`main`) in `harper`, the others in
    /// `instances/<id>`; the build of a boot template beside them.
    pub fn instance(&self, id: &str) -> InstanceDir {
        if id == MAIN {
            InstanceDir { logs: self.0.join("harper"), template: self.0.join("template") }
        } else {
            let dir = self.0.join("instances");
            InstanceDir { logs: dir.join(id), template: dir.join(format!("{id}-template")) }
        }
    }
}

/// The id of the shard's own instance.
pub const MAIN: &str = "main";

/// Where an instance's logs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDir {
    logs: PathBuf,
    template: PathBuf,
}

impl InstanceDir {
    /// Where boot `n` (1-based) writes Harper's stdout and stderr: the first in the instance's
    /// folder, each later one (a restart) in a `boot-<n>` folder of its own.
    pub fn boot(&self, n: u32) -> BootLogs {
        let dir = if n <= 1 { self.logs.clone() } else { self.logs.join(format!("boot-{n}")) };
        boot_logs(&dir)
    }

    /// Where the build of the instance's boot template writes Harper's output.
    pub fn template(&self) -> BootLogs {
        boot_logs(&self.template)
    }

    /// Where Harper's own log (`hdb.log`) is kept once the instance is torn down.
    pub fn hdb_log(&self) -> PathBuf {
        self.logs.join("hdb.log")
    }
}

fn boot_logs(dir: &Path) -> BootLogs {
    BootLogs { stdout: dir.join("stdout.log"), stderr: dir.join("stderr.log") }
}

/// Everything one attempt of a shard works with: who it is, where its logs go, the pool, the
/// run's emitter and cancellation.
#[derive(Clone)]
pub struct Context {
    pub id: ShardId,
    /// The shard's name, as the pool records it beside each address.
    pub name: String,
    pub total: usize,
    pub attempt: Attempt,
    /// The addresses of the shard's earlier attempts: a retry takes another when it can.
    pub earlier: Vec<std::net::Ipv4Addr>,
    pub plan_dir: PathBuf,
    pub shard_dir: ShardDir,
    /// This attempt's folder: `shard_dir.attempt(attempt)`.
    pub dir: AttemptDir,
    pub entry: PathBuf,
    pub work: Arc<WorkDir>,
    pub pool: Arc<Pool>,
    pub emit: Emitter,
    pub cancel: watch::Receiver<Option<Cancel>>,
}

impl Context {
    /// The context of the attempt after this one, if one is left; `used`: the addresses this
    /// one ran on.
    pub fn next_attempt(
        &self,
        used: impl IntoIterator<Item = std::net::Ipv4Addr>,
    ) -> Option<Context> {
        let attempt = self.attempt.next()?;
        let mut earlier = self.earlier.clone();
        earlier.extend(used);
        Some(Context {
            attempt,
            earlier,
            dir: self.shard_dir.attempt(attempt.attempt),
            ..self.clone()
        })
    }

    /// Tells the reporters what happened to instance `id` of this attempt.
    pub fn instance_event(&self, id: &str, phase: InstancePhase) {
        self.emit.emit(EventKind::Instance {
            shard: self.id,
            attempt: self.attempt,
            id: id.to_owned(),
            phase,
        });
    }

    pub fn warn(&self, warning: Warning) {
        self.emit.emit(EventKind::Warning { shard: Some(self.id), warning });
    }

    /// Under a signal, when every wait of this shard must be over ([`budget`]).
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.cancel.borrow().and_then(Cancel::teardown_deadline).map(tokio::time::Instant::from_std)
    }

    /// `limit`, or less under a signal: what is left until the deadline.
    pub fn within(&self, limit: Duration) -> Duration {
        match self.deadline() {
            Some(end) => limit.min(end.saturating_duration_since(tokio::time::Instant::now())),
            None => limit,
        }
    }

    /// The grace for a stop now: `grace`, or under a signal at most [`budget::GRACE`] and
    /// what the deadline leaves.
    pub fn grace(&self, grace: Duration) -> Duration {
        if self.deadline().is_some() { self.within(grace.min(budget::GRACE)) } else { grace }
    }

    /// Resolves once the run is cancelled.
    pub async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        let _ = cancel.wait_for(Option::is_some).await;
    }

    /// This context, cancelled also (as [`Cancel::Timeout`]) once `deadline` has passed and the
    /// commands have ended (`ended`): their end at the deadline is a timeout, not the failure of
    /// a request cut under them. The run's own cancellation passes through as it comes. The
    /// future keeps the cut going and never returns; the context is cut for as long as it runs.
    pub fn cut_at(
        &self,
        deadline: tokio::time::Instant,
        mut ended: watch::Receiver<bool>,
    ) -> (Context, impl Future<Output = ()> + use<>) {
        let (cut, cut_rx) = watch::channel(*self.cancel.borrow());
        let mut run = self.cancel.clone();
        let cutting = async move {
            let due = async move {
                tokio::time::sleep_until(deadline).await;
                let _ = ended.wait_for(|e| *e).await;
            };
            tokio::pin!(due);
            let mut pending = true;
            loop {
                tokio::select! {
                    changed = run.changed() => match changed {
                        Ok(()) => {
                            let why = *run.borrow_and_update();
                            cut.send_if_modified(|c| (why.is_some() && *c != why).then(|| *c = why).is_some());
                        }
                        Err(_) => std::future::pending().await,
                    },
                    () = &mut due, if pending => {
                        pending = false;
                        cut.send_if_modified(|c| c.is_none().then(|| *c = Some(Cancel::Timeout)).is_some());
                    }
                }
            }
        };
        (Context { cancel: cut_rx, ..self.clone() }, cutting)
    }

    /// Stops a child within the budget — also when the signal comes while the stop already runs
    /// with the plan's grace. The error says what went wrong (a keeper that died, or that had to
    /// be replaced).
    pub async fn stop(
        &self,
        child: &mut Child,
        grace: Duration,
    ) -> anyhow::Result<supervise::Stopped> {
        let mut cancel = self.cancel.clone();
        let hurry = async move {
            let end = cancel
                .wait_for(|c| c.and_then(Cancel::teardown_deadline).is_some())
                .await
                .ok()
                .and_then(|c| c.and_then(Cancel::teardown_deadline));
            match end {
                Some(end) => tokio::time::Instant::from_std(end),
                // The run ended without a signal: no hurry, ever.
                None => std::future::pending().await,
            }
        };
        child.process.stop_within(self.grace(grace), hurry).await
    }

    /// A warning for each stream of `process` whose output is not all in its log (`log_of`).
    pub fn warn_unlogged(
        &self,
        process: &mut supervise::Process,
        log_of: impl Fn(supervise::Stream) -> PathBuf,
    ) {
        for Unlogged { stream, bytes, error } in process.take_unlogged() {
            self.warn(Warning::LogIncomplete { log: log_of(stream), stream, bytes, error });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attempt_and_instance_gets_a_folder_of_its_own() {
        let shard = ReportDir::new("r").shard("db/1");
        let attempts: Vec<AttemptDir> = (1..=3).map(|n| shard.attempt(n)).collect();
        let mut paths: Vec<PathBuf> = Vec::new();
        for a in &attempts {
            paths.extend([a.command_log(0), a.command_log(1), a.junit()]);
            for id in [MAIN, "i1", "i2"] {
                let i = a.instance(id);
                paths.extend([
                    i.boot(1).stdout,
                    i.boot(2).stdout,
                    i.template().stdout,
                    i.hdb_log(),
                ]);
            }
        }
        let n = paths.len();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), n, "two names for one path: {paths:?}");
        assert_eq!(
            attempts[0].path(),
            shard.path(),
            "the first attempt's logs are where they always were"
        );
        assert!(attempts[2].path().starts_with(shard.path()));
    }
}
