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
    /// A `quarantine` entry of the plan is past its `until`: it covers nothing any more.
    QuarantineExpired { what: String, until: crate::plan::schema::Day, reason: String },
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
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// `flaky_fails`: a flaky shard fails the run (`flaky: fail`, `--flaky-fails`). `plan_dir`:
    /// what test files are named relative to; `flakes`: the flake history the run was given
    /// (`--timings`), for the reports to say how often what flaked now flaked before.
    RunStarted {
        shards: Vec<ShardInfo>,
        concurrency: usize,
        report_dir: PathBuf,
        started_at: SystemTime,
        flaky_fails: bool,
        plan_dir: PathBuf,
        #[serde(skip)]
        flakes: crate::plan::timings::Flakes,
    },
    Installing {
        package: String,
    },
    InstallOutput {
        line: String,
    },
    Installed {
        package: String,
        #[serde(with = "crate::plan::secs")]
        took: Duration,
        cached: bool,
    },
    Warning {
        shard: Option<ShardId>,
        #[serde(serialize_with = "as_text")]
        warning: Warning,
    },
    /// A problem that stops the run before its shards can run (Harper cannot be installed):
    /// shown even where warnings are not (`-q`).
    RunFailed {
        message: String,
    },
    /// The shard got its turn under the concurrency limit, or boots ahead of it
    /// ([`EventKind::BootingAhead`] follows its attempt's start): its first attempt starts
    /// waiting for an address.
    ShardStarted {
        shard: ShardId,
    },
    /// This attempt of the shard boots its instance before the shard has its turn
    /// ([`crate::run::ahead`]); its commands wait for [`EventKind::TurnTaken`]. Sent after
    /// `AttemptStarted` by every attempt that starts without the turn: the first, and a retry
    /// of one whose boot failed before the turn came.
    BootingAhead {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
    },
    /// A shard that booted ahead has its turn: its commands start.
    TurnTaken {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
    },
    /// An attempt of the shard starts waiting for an address: the first right after
    /// `ShardStarted`, a later one after the attempt before it failed (`retrying`: why) and
    /// was torn down. `log_dir`: its folder; `junit_dir`: where its commands may leave JUnit
    /// XML (`HARPER_SHARD_JUNIT_DIR`).
    /// `commands`: what it runs (a retry of some files has them filled into `{files}`).
    AttemptStarted {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        log_dir: PathBuf,
        junit_dir: PathBuf,
        commands: Vec<String>,
        retrying: Option<String>,
    },
    /// The cache has no boot template for this instance's Harper yet: it builds one first.
    TemplateBuilding {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        id: String,
    },
    TemplateBuilt {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        id: String,
        #[serde(with = "crate::plan::secs")]
        took: Duration,
    },
    /// `log`: where its output goes, stdout and stderr interleaved.
    CommandStarted {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        command: usize,
        log: PathBuf,
    },
    /// Holds its share of the stream's in-flight budget until the reporters are done with it.
    CommandOutput {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        command: usize,
        stream: Stream,
        #[serde(skip)]
        bytes: crate::supervise::output::Bytes,
    },
    CommandFinished {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        command: usize,
        outcome: Outcome,
        tail: Vec<String>,
    },
    /// Every life of every instance of a shard — the shard's own (`main`), its first boot
    /// included, and those started through the control socket — from its address to its release.
    Instance {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        id: String,
        #[serde(flatten)]
        phase: InstancePhase,
    },
    /// The attempt's instances are being torn down (the shard's teardown phase, which lasts
    /// until the attempt finishes; what each release could not confirm is its `Released`).
    TeardownStarted {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
    },
    /// An attempt ended, everything it started torn down.
    AttemptFinished {
        shard: ShardId,
        #[serde(flatten)]
        attempt: Attempt,
        status: ShardStatus,
        cause: Option<String>,
    },
    /// The shard failed, but the plan's `quarantine` entries `by` cover its failure: it is
    /// reported, and does not fail the run. Comes just before its `ShardFinished`.
    Quarantined {
        shard: ShardId,
        by: Vec<crate::plan::Quarantine>,
    },
    /// The shard's last attempt ended: `status` is the shard's.
    ShardFinished {
        shard: ShardId,
        status: ShardStatus,
        cause: Option<String>,
    },
    Cancelling {
        signal: &'static str,
    },
    /// The run's `timeout` ran out: every running shard is torn down, none is started.
    RunTimedOut {
        #[serde(with = "crate::plan::secs")]
        after: Duration,
    },
    RunFinished {
        exit: ExitCode,
    },
}

/// Where a boot of Harper writes its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootLogs {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl BootLogs {
    /// The log of `stream`.
    pub fn of(&self, stream: Stream) -> &std::path::Path {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }
}

/// Which attempt of its shard an event belongs to: the `attempt`-th (1-based) `of` at most
/// that many. Every event of an attempt carries it, so that a reporter tells the attempts apart
/// without keeping count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Attempt {
    pub attempt: u32,
    pub of: u32,
}

impl Attempt {
    /// The first attempt of a shard allowed `of` in all.
    pub fn first(of: u32) -> Attempt {
        Attempt { attempt: 1, of: of.max(1) }
    }

    /// The attempt after this one, if one is left.
    pub fn next(self) -> Option<Attempt> {
        (self.attempt < self.of).then_some(Attempt { attempt: self.attempt + 1, of: self.of })
    }
}

/// What happened to an instance of a shard (see [`EventKind::Instance`]).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum InstancePhase {
    /// The instance got its address.
    Acquired {
        name: String,
        addr: Ipv4Addr,
    },
    /// `logs`: where this boot's output goes.
    Booting {
        pid: u32,
        rootpath: PathBuf,
        logs: BootLogs,
    },
    Ready {
        #[serde(with = "crate::plan::secs")]
        took: Duration,
    },
    BootFailed {
        cause: String,
        tail: Vec<String>,
    },
    /// `stop` (SIGTERM, grace, SIGKILL) or `kill` (a crash).
    Stopping {
        how: &'static str,
    },
    Stopped {
        exit: String,
        #[serde(with = "crate::plan::secs")]
        took: Duration,
        problem: Option<String>,
    },
    /// Released for good (by request, or at the end of the shard's attempt).
    Releasing,
    Released {
        problem: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed {
        status: String,
    },
    TimedOut {
        #[serde(with = "crate::plan::secs")]
        after: Duration,
    },
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardStatus {
    Passed,
    /// An attempt failed, a later one passed: the run passes unless `flaky: fail`.
    Flaky,
    /// A command failed or timed out.
    Failed,
    /// Failed, but a `quarantine` entry of the plan covers the failure: the run passes.
    Quarantined,
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
    /// What the status makes of the run's exit; `flaky_fails`: `flaky: fail`.
    pub fn exit(self, flaky_fails: bool) -> Exit {
        match self {
            ShardStatus::Flaky if flaky_fails => Exit::ShardFailed,
            ShardStatus::Passed
            | ShardStatus::Flaky
            | ShardStatus::Quarantined
            | ShardStatus::Skipped => Exit::Passed,
            ShardStatus::Failed => Exit::ShardFailed,
            ShardStatus::BootFailed | ShardStatus::Infrastructure => Exit::Infrastructure,
            ShardStatus::Cancelled => Exit::ShardFailed,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ShardStatus::Passed => "passed",
            ShardStatus::Flaky => "FLAKY",
            ShardStatus::Failed => "FAILED",
            ShardStatus::Quarantined => "QUARANTINED",
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
