//! What a run reports: events with monotonic timestamps, rendered by `report`. The runner
//! never prints; it sends these.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::exit::Exit;
use crate::supervise::Stream;

/// An event, stamped with the time since the run started.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(with = "crate::plan::secs")]
    pub at: Duration,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A shard of this run: its place in [`EventKind::RunStarted`]'s list, the list that every
/// record of the run is built from. Ids are handed out with that list only ([`ShardId::each`]),
/// never made from a number, so an id always names a shard the record has, and cannot be
/// confused with the shard's 1-based `index` in the plan, a different number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ShardId(usize);

impl ShardId {
    /// The ids of the shards a run announces in `RunStarted`, each beside its shard.
    pub fn each(shards: &[ShardInfo]) -> impl Iterator<Item = (ShardId, &ShardInfo)> {
        shards.iter().enumerate().map(|(i, shard)| (ShardId(i), shard))
    }

    /// Its place in the run's list (0-based).
    pub fn position(self) -> usize {
        self.0
    }
}

/// What a run warns about. Typed, so that the reporters and tests match on what happened; made
/// text in one place (`report::warning`). Not a failure: the run goes on.
#[derive(Debug, Clone)]
pub enum Warning {
    /// The pool passed over an address, ended what a dead run left on one, or is still waiting.
    Pool(crate::pool::Notice),
    /// Recorded timings name shards the plan does not have (renamed or removed).
    UnknownTimings { path: PathBuf, shards: Vec<String> },
    /// The tool's signal handlers could not be installed.
    NoSignalHandlers,
    /// Harper's processes could not be recorded beside the slot's lock.
    PidsNotRecorded { error: String },
    /// A log could not be kept in the report directory.
    LogNotKept { from: PathBuf, error: String },
    /// Some of a child's output is missing from its log.
    LogIncomplete { log: PathBuf, stream: Stream, bytes: u64, error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardInfo {
    pub name: String,
    pub index: usize,
    pub total: usize,
    pub commands: Vec<String>,
    /// Its folder in the report directory.
    pub log_dir: PathBuf,
    /// Where its commands may leave JUnit XML (`HARPER_SHARD_JUNIT_DIR`), for per-file timings.
    pub junit_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted { shards: Vec<ShardInfo>, concurrency: usize, report_dir: PathBuf, started_at: SystemTime },
    Installing { package: String },
    InstallOutput { line: String },
    Installed { package: String, #[serde(with = "crate::plan::secs")] took: Duration, cached: bool },
    Warning { shard: Option<ShardId>, #[serde(serialize_with = "as_text")] warning: Warning },
    /// A problem that stops the run before its shards can run (Harper cannot be installed):
    /// shown even where warnings are not (`-q`).
    RunFailed { message: String },
    /// The shard got its turn under the concurrency limit and starts waiting for an address.
    ShardStarted { shard: ShardId },
    AddressAcquired { shard: ShardId, addr: Ipv4Addr },
    /// The cache has no boot template for this shard's Harper yet: it builds one first.
    TemplateBuilding { shard: ShardId },
    TemplateBuilt { shard: ShardId, #[serde(with = "crate::plan::secs")] took: Duration },
    BootStarted { shard: ShardId, pid: u32, rootpath: PathBuf, logs: BootLogs },
    BootReady { shard: ShardId },
    BootFailed { shard: ShardId, cause: String, tail: Vec<String> },
    /// `log`: where its output goes, stdout and stderr interleaved.
    CommandStarted { shard: ShardId, command: usize, log: PathBuf },
    /// Holds its share of the stream's in-flight budget until the reporters are done with it.
    CommandOutput { shard: ShardId, command: usize, stream: Stream, #[serde(skip)] bytes: crate::supervise::output::Bytes },
    CommandFinished { shard: ShardId, command: usize, outcome: Outcome, tail: Vec<String> },
    /// An on-demand instance, or a later life of the shard's own (`main`), through the
    /// control socket.
    Instance { shard: ShardId, id: String, #[serde(flatten)] phase: InstancePhase },
    TeardownStarted { shard: ShardId },
    TeardownDone { shard: ShardId, problem: Option<String> },
    ShardFinished { shard: ShardId, status: ShardStatus, cause: Option<String> },
    Cancelling { signal: &'static str },
    /// The run's `timeout` ran out: every running shard is torn down, none is started.
    RunTimedOut { #[serde(with = "crate::plan::secs")] after: Duration },
    RunFinished { exit: ExitCode },
}

/// Where a boot of Harper writes its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootLogs {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// What happened to an instance of a shard (see [`EventKind::Instance`]).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum InstancePhase {
    /// An on-demand instance got its address.
    Acquired { name: String, addr: Ipv4Addr },
    Booting { pid: u32, rootpath: PathBuf },
    Ready { #[serde(with = "crate::plan::secs")] took: Duration },
    BootFailed { cause: String, tail: Vec<String> },
    /// `stop` (SIGTERM, grace, SIGKILL) or `kill` (a crash).
    Stopping { how: &'static str },
    Stopped { exit: String, #[serde(with = "crate::plan::secs")] took: Duration, problem: Option<String> },
    /// Released for good (by request, or at the shard's end).
    Releasing,
    Released { problem: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed { status: String },
    TimedOut { #[serde(with = "crate::plan::secs")] after: Duration },
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    Passed,
    /// A command failed or timed out.
    Failed,
    /// Harper did not become ready.
    BootFailed,
    /// The tool's own failure: no address, instance directories or fixtures, a keeper that
    /// could not start or died, or a teardown not confirmed.
    Infrastructure,
    /// Stopped by a signal or the run's timeout before it finished.
    Cancelled,
    /// Never started: `fail_fast` after another shard failed.
    Skipped,
}

impl ShardStatus {
    pub fn exit(self) -> Exit {
        match self {
            ShardStatus::Passed | ShardStatus::Skipped => Exit::Passed,
            ShardStatus::Failed => Exit::ShardFailed,
            ShardStatus::BootFailed | ShardStatus::Infrastructure => Exit::Infrastructure,
            ShardStatus::Cancelled => Exit::ShardFailed,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ShardStatus::Passed => "passed",
            ShardStatus::Failed => "FAILED",
            ShardStatus::BootFailed => "BOOT FAILED",
            ShardStatus::Infrastructure => "INFRA",
            ShardStatus::Cancelled => "cancelled",
            ShardStatus::Skipped => "skipped",
        }
    }
}

/// A value as the text it shows as.
fn as_text<S: serde::Serializer>(value: &impl std::fmt::Display, to: S) -> Result<S::Ok, S::Error> {
    to.collect_str(value)
}

/// The exit status as a number, for the JSON.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExitCode(pub u8);
