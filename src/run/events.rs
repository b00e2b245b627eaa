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

/// A shard's position in the run's list of shards.
pub type ShardId = usize;

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
    Warning { shard: Option<ShardId>, message: String },
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

/// The exit status as a number, for the JSON.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExitCode(pub u8);
