//! The run as the reporters see it, built from events alone: per shard and attempt, when each
//! phase began and ended, how each command went, every instance's lives, and why anything
//! failed. The shard's boot is derived here from its own instance's (`main`) first life: the
//! runner tells every instance's life the same way.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::plan::timings::Flakes;
use crate::plan::{opt_secs, secs};
use crate::run::context::MAIN;
use crate::run::events::{
    Attempt, BootLogs, Event, EventKind, InstancePhase, Outcome, ShardId, ShardInfo, ShardStatus,
};

/// The version of `report.json`'s schema; raised on any change of its shape (docs/reports.md
/// says what each version changed).
pub const REPORT_VERSION: u32 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub version: u32,
    /// Wall-clock start of the run (RFC 3339, UTC); every other time is seconds since then.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Option<SystemTime>,
    pub report_dir: PathBuf,
    pub concurrency: usize,
    pub shards: Vec<ShardRecord>,
    pub warnings: Vec<String>,
    /// Seconds from the start of the run to its end.
    #[serde(with = "secs")]
    pub duration: Duration,
    pub exit_code: Option<u8>,
    /// The run's `timeout` ran out and cancelled what was left.
    pub timed_out: bool,
    /// A flaky shard fails the run (`flaky: fail`).
    pub flaky_fails: bool,
    /// The plan's folder: test files are named relative to it.
    #[serde(skip)]
    pub plan_dir: PathBuf,
    /// The flake history the run was given ([`super::flakes`] weighs this run's into it).
    #[serde(skip)]
    pub history: Flakes,
}

/// A shard: how it ended, and each of its attempts. `report.json` shows the last attempt's
/// fields beside the shard's own, as version 1 did, and every attempt under `attempts`.
#[derive(Debug, Clone)]
pub struct ShardRecord {
    pub name: String,
    pub index: usize,
    pub total: usize,
    pub log_dir: PathBuf,
    pub status: Option<ShardStatus>,
    pub cause: Option<String>,
    /// Every attempt, in order; never empty (a shard that never started has its first).
    pub attempts: Vec<AttemptRecord>,
    /// The plan's quarantine entries that kept its failure from failing the run.
    pub quarantine: Vec<crate::plan::Quarantine>,
}

/// One attempt of a shard: its own instance's address, its commands, its phases, and every
/// instance it started.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub of: u32,
    pub log_dir: PathBuf,
    /// Where its commands may leave JUnit XML, as the run said.
    pub junit_dir: Option<PathBuf>,
    pub status: Option<ShardStatus>,
    pub cause: Option<String>,
    pub commands: Vec<CommandRecord>,
    pub phases: Phases,
    /// Every instance of the attempt, the shard's own (`main`) included, in the order they got
    /// their address.
    pub instances: Vec<InstanceRecord>,
}

/// One instance of a shard: its address, every life (boot to stop) and its release. Times in
/// seconds since the run started. For `main`, the first life is the shard's boot.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceRecord {
    pub id: String,
    pub name: String,
    pub address: Option<Ipv4Addr>,
    #[serde(with = "opt_secs")]
    pub acquired: Option<Duration>,
    pub lives: Vec<LifeRecord>,
    #[serde(with = "opt_secs")]
    pub releasing: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub released: Option<Duration>,
    /// What its release could not confirm (a stop's problem is its life's).
    pub problem: Option<String>,
}

/// One boot of an instance and how it ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LifeRecord {
    pub pid: Option<u32>,
    /// Where this boot wrote Harper's output, as the run said.
    #[serde(skip)]
    pub logs: Option<BootLogs>,
    #[serde(with = "opt_secs")]
    pub booting: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub ready: Option<Duration>,
    /// When the boot failed.
    #[serde(with = "opt_secs")]
    pub failed: Option<Duration>,
    /// Why it never became ready, and Harper's last lines.
    pub boot_failure: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
    /// `stop`, `kill`, or none when it lived until release.
    pub ended_by: Option<&'static str>,
    #[serde(with = "opt_secs")]
    pub stopping: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub stopped: Option<Duration>,
    /// How Harper's process ended (`exit code 0`, `killed by SIGKILL`).
    pub exit: Option<String>,
    /// What its stop could not confirm (a port still held, a keeper that died).
    pub problem: Option<String>,
}

/// Where one life's steps began and ended, by the rule every reporter uses: a boot lasts until
/// ready or its failure; the life is up from ready until it is stopped, booted again or
/// released; a stop lasts until Harper is seen stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifeSpans {
    pub boot: Option<(Duration, Duration)>,
    pub up: Option<(Duration, Duration)>,
    pub stop: Option<(Duration, Duration)>,
}

impl InstanceRecord {
    fn new(id: &str) -> InstanceRecord {
        InstanceRecord {
            id: id.to_owned(),
            name: id.to_owned(),
            address: None,
            acquired: None,
            lives: Vec::new(),
            releasing: None,
            released: None,
            problem: None,
        }
    }

    fn apply(&mut self, at: Option<Duration>, phase: &InstancePhase) {
        let life = |lives: &mut Vec<LifeRecord>| {
            if lives.is_empty() {
                lives.push(LifeRecord::default());
            }
            lives.len() - 1
        };
        match phase {
            InstancePhase::Acquired { name, addr } => {
                self.name = name.clone();
                self.address = Some(*addr);
                self.acquired = at;
            }
            InstancePhase::Booting { pid, logs, .. } => {
                self.lives.push(LifeRecord {
                    pid: Some(*pid),
                    booting: at,
                    logs: Some(logs.clone()),
                    ..LifeRecord::default()
                });
            }
            InstancePhase::Ready { .. } => {
                let n = life(&mut self.lives);
                self.lives[n].ready = at;
            }
            InstancePhase::BootFailed { cause, tail } => {
                let n = life(&mut self.lives);
                self.lives[n].failed = at;
                self.lives[n].boot_failure = Some(cause.clone());
                self.lives[n].tail = tail.clone();
            }
            InstancePhase::Stopping { how } => {
                let n = life(&mut self.lives);
                self.lives[n].ended_by = Some(how);
                self.lives[n].stopping = at;
            }
            InstancePhase::Stopped { exit, problem, .. } => {
                let n = life(&mut self.lives);
                self.lives[n].stopped = at;
                self.lives[n].exit = Some(exit.clone());
                self.lives[n].problem = problem.clone();
            }
            InstancePhase::Releasing => self.releasing = at,
            InstancePhase::Released { problem } => {
                self.released = at;
                self.problem = problem.clone();
            }
        }
    }

    /// `i1`, or `i1 (auth tests)` when it was given a name of its own.
    pub fn label(&self) -> String {
        if self.name == self.id { self.id.clone() } else { format!("{} ({})", self.id, self.name) }
    }

    /// Where each life's boot, time up and stop began and ended, in the order of the lives.
    pub fn spans(&self) -> Vec<LifeSpans> {
        let span = |from: Option<Duration>, to: Option<Duration>| Some((from?, to?.max(from?)));
        self.lives
            .iter()
            .enumerate()
            .map(|(k, life)| {
                let next = self.lives.get(k + 1).and_then(|l| l.booting);
                let gone = next.or(self.releasing).or(self.released);
                let end = life.stopping.or(gone);
                LifeSpans {
                    boot: span(life.booting, life.ready.or(life.failed).or(end)),
                    up: span(life.ready, end),
                    stop: span(life.stopping, life.stopped.or(gone)),
                }
            })
            .collect()
    }

    /// The boots' durations added up, and how many boots there were.
    pub fn boot_time(&self) -> (Duration, usize) {
        let boots: Vec<Duration> =
            self.spans().iter().filter_map(|s| s.boot).map(|(a, b)| b - a).collect();
        (boots.iter().sum(), boots.len())
    }

    /// How long it was up (ready), over all its lives; `None` if it never was.
    pub fn up_time(&self) -> Option<Duration> {
        let ups: Vec<Duration> =
            self.spans().iter().filter_map(|s| s.up).map(|(a, b)| b - a).collect();
        (!ups.is_empty()).then(|| ups.iter().sum())
    }

    /// Where its release began and ended.
    pub fn release_span(&self) -> Option<(Duration, Duration)> {
        Some((self.releasing?, self.released?.max(self.releasing?)))
    }

    /// From its address to its release.
    pub fn total(&self) -> Option<Duration> {
        Some(self.released?.saturating_sub(self.acquired?))
    }

    /// What went wrong, in order: each failed boot's cause, each stop's and the release's
    /// problem.
    pub fn problems(&self) -> Vec<&str> {
        let lives =
            self.lives.iter().flat_map(|l| [l.boot_failure.as_deref(), l.problem.as_deref()]);
        lives.chain([self.problem.as_deref()]).flatten().collect()
    }

    /// The output of its first failed boot.
    pub fn failure_tail(&self) -> &[String] {
        self.lives.iter().find(|l| !l.tail.is_empty()).map_or(&[], |l| &l.tail)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CommandRecord {
    pub command: String,
    /// Where its output went, as the run said when it started.
    #[serde(skip)]
    pub log: Option<PathBuf>,
    #[serde(with = "opt_secs")]
    pub started: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub finished: Option<Duration>,
    pub outcome: Option<Outcome>,
    /// The last lines of output, kept for a failed command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tail: Vec<String>,
}

impl CommandRecord {
    /// A command that has not run.
    fn new(command: &str) -> CommandRecord {
        CommandRecord {
            command: command.to_owned(),
            log: None,
            started: None,
            finished: None,
            outcome: None,
            tail: Vec::new(),
        }
    }
}

/// Phase boundaries, in seconds since the run started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    #[serde(with = "opt_secs")]
    pub started: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub address: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub ready: Option<Duration>,
    /// When a shard that booted ahead had its turn, its commands' start.
    #[serde(with = "opt_secs")]
    pub turn: Option<Duration>,
    /// This attempt booted before the shard had its turn: its commands start at `turn`, and
    /// without one they never started (the wait after `ready` is not theirs).
    #[serde(skip)]
    pub ahead: bool,
    #[serde(with = "opt_secs")]
    pub commands_done: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub teardown_started: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub finished: Option<Duration>,
}

impl Phases {
    /// How long `phase` took; `None` if it never ran. The one definition every reporter uses.
    pub fn took(&self, phase: Phase) -> Option<Duration> {
        self.bounds(phase).map(|(from, to)| to - from)
    }

    pub fn total(&self) -> Option<Duration> {
        Some(self.finished?.saturating_sub(self.started?))
    }

    /// Booted ahead, ready or not, and still without its turn.
    pub fn waits_for_turn(&self) -> bool {
        self.ahead && self.turn.is_none()
    }

    /// The total less the wait for a turn after booting ahead: what the shard's own work took,
    /// the time recorded for balancing.
    pub fn own(&self) -> Option<Duration> {
        let waited = match (self.ready, self.turn) {
            (Some(ready), Some(turn)) => turn.saturating_sub(ready),
            _ => Duration::ZERO,
        };
        Some(self.total()?.saturating_sub(waited))
    }

    /// The names of the phase columns every table shows, in order: [`Phase::ALL`], then the total.
    pub fn column_labels() -> impl Iterator<Item = &'static str> {
        Phase::ALL.iter().map(|p| p.label).chain(["total"])
    }

    /// The durations of [`Phases::column_labels`], in the same order.
    pub fn columns(&self) -> Vec<Option<Duration>> {
        Phase::ALL.iter().map(|p| self.took(*p)).chain([self.total()]).collect()
    }

    /// When `mark` was crossed.
    fn at(&self, mark: Mark) -> Option<Duration> {
        match mark {
            Mark::Started => self.started,
            Mark::Address => self.address,
            Mark::Ready => self.ready,
            Mark::CommandsFrom if self.ahead => self.turn,
            Mark::CommandsFrom => self.ready,
            Mark::CommandsDone => self.commands_done,
            Mark::TeardownStarted => self.teardown_started,
            Mark::Finished => self.finished,
        }
    }

    /// Where `phase` began and ended, in time since the run started; `None` if it never ran.
    pub fn bounds(&self, phase: Phase) -> Option<(Duration, Duration)> {
        let from = phase.from.iter().find_map(|m| self.at(*m))?;
        let to = phase.to.iter().find_map(|m| self.at(*m))?;
        Some((from, to.max(from)))
    }
}

impl RunRecord {
    pub fn new() -> RunRecord {
        RunRecord {
            version: REPORT_VERSION,
            started_at: None,
            report_dir: PathBuf::new(),
            concurrency: 0,
            shards: Vec::new(),
            warnings: Vec::new(),
            duration: Duration::ZERO,
            exit_code: None,
            timed_out: false,
            flaky_fails: false,
            plan_dir: PathBuf::new(),
            history: Flakes::default(),
        }
    }

    /// Folds one event into the record.
    pub fn apply(&mut self, event: &Event) {
        let at = Some(event.at);
        self.duration = event.at;
        match &event.kind {
            EventKind::RunStarted {
                shards,
                concurrency,
                report_dir,
                started_at,
                flaky_fails,
                plan_dir,
                flakes,
            } => {
                self.flaky_fails = *flaky_fails;
                self.plan_dir = plan_dir.clone();
                self.history = flakes.clone();
                self.started_at = Some(*started_at);
                self.concurrency = *concurrency;
                self.report_dir = report_dir.clone();
                self.shards = shards.iter().map(ShardRecord::new).collect();
            }
            EventKind::Warning { shard: None, warning } => self.warnings.push(warning.to_string()),
            EventKind::RunFailed { message } => self.warnings.push(message.clone()),
            EventKind::Warning { shard: Some(s), warning } => {
                let name = &self.shards[*s].name;
                self.warnings.push(format!("{name}: {warning}"));
            }
            EventKind::ShardStarted { shard } => {
                self.shards[*shard].attempts[0].phases.started = at
            }
            EventKind::BootingAhead { shard, attempt } => {
                self.shards[*shard].attempt_mut(*attempt).phases.ahead = true;
            }
            EventKind::TurnTaken { shard, attempt } => {
                self.shards[*shard].attempt_mut(*attempt).phases.turn = at
            }
            EventKind::AttemptStarted { shard, attempt, log_dir, junit_dir, commands, .. } => {
                let a = self.shards[*shard].attempt_mut(*attempt);
                a.log_dir = log_dir.clone();
                a.junit_dir = Some(junit_dir.clone());
                a.commands = commands.iter().map(|c| CommandRecord::new(c)).collect();
                a.phases.started.get_or_insert(event.at);
            }
            EventKind::CommandStarted { shard, attempt, command, log } => {
                let c = &mut self.shards[*shard].attempt_mut(*attempt).commands[*command];
                c.started = at;
                c.log = Some(log.clone());
            }
            EventKind::CommandFinished { shard, attempt, command, outcome, tail } => {
                let a = self.shards[*shard].attempt_mut(*attempt);
                let c = &mut a.commands[*command];
                c.finished = at;
                c.outcome = Some(outcome.clone());
                if *outcome != Outcome::Passed {
                    c.tail = tail.clone();
                }
                a.phases.commands_done = at;
            }
            EventKind::Instance { shard, attempt, id, phase } => {
                self.shards[*shard].attempt_mut(*attempt).apply(event.at, id, phase)
            }
            EventKind::TeardownStarted { shard, attempt } => {
                self.shards[*shard].attempt_mut(*attempt).phases.teardown_started = at
            }
            EventKind::AttemptFinished { shard, attempt, status, cause } => {
                let a = self.shards[*shard].attempt_mut(*attempt);
                a.status = Some(*status);
                a.cause = cause.clone();
                a.phases.finished = at;
            }
            EventKind::Quarantined { shard, by } => self.shards[*shard].quarantine = by.clone(),
            EventKind::ShardFinished { shard, status, cause } => {
                let s = &mut self.shards[*shard];
                s.status = Some(*status);
                s.cause = cause.clone();
                // A shard that never started (skipped, cancelled) has no attempt that finished.
                s.last_mut().phases.finished.get_or_insert(event.at);
            }
            EventKind::RunFinished { exit } => self.exit_code = Some(exit.0),
            EventKind::RunTimedOut { .. } => self.timed_out = true,
            EventKind::Installing { .. }
            | EventKind::InstallOutput { .. }
            | EventKind::Installed { .. }
            | EventKind::CommandOutput { .. }
            | EventKind::TemplateBuilding { .. }
            | EventKind::TemplateBuilt { .. }
            | EventKind::Cancelling { .. } => {}
        }
    }
}

/// A run's shards are looked up by the ids the run handed out with the list they were built from.
impl std::ops::Index<ShardId> for Vec<ShardRecord> {
    type Output = ShardRecord;
    fn index(&self, id: ShardId) -> &ShardRecord {
        &self[id.position()]
    }
}

impl std::ops::IndexMut<ShardId> for Vec<ShardRecord> {
    fn index_mut(&mut self, id: ShardId) -> &mut ShardRecord {
        &mut self[id.position()]
    }
}

impl Default for RunRecord {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardRecord {
    /// An attempt's instance booted before it had its turn ([`crate::run::ahead`]).
    pub fn booted_ahead(&self) -> bool {
        self.attempts.iter().any(|a| a.phases.ahead)
    }

    fn new(info: &ShardInfo) -> ShardRecord {
        ShardRecord {
            name: info.name.clone(),
            index: info.index,
            total: info.total,
            log_dir: info.log_dir.clone(),
            status: None,
            cause: None,
            attempts: vec![AttemptRecord::new(Attempt::first(1), info)],
            quarantine: Vec::new(),
        }
    }

    /// The last attempt: the one that decided the shard's status.
    pub fn last(&self) -> &AttemptRecord {
        self.attempts.last().expect("a shard has its first attempt from the start")
    }

    fn last_mut(&mut self) -> &mut AttemptRecord {
        self.attempts.last_mut().expect("a shard has its first attempt from the start")
    }

    /// The record of `attempt`, made when its first event comes.
    fn attempt_mut(&mut self, attempt: Attempt) -> &mut AttemptRecord {
        let n = attempt.attempt as usize;
        while self.attempts.len() < n {
            let next = Attempt { attempt: self.attempts.len() as u32 + 1, of: attempt.of };
            let record =
                AttemptRecord { attempt: next.attempt, of: next.of, ..self.attempts[0].fresh() };
            self.attempts.push(record);
        }
        let a = &mut self.attempts[n.max(1) - 1];
        a.of = attempt.of;
        a
    }
}

impl AttemptRecord {
    fn new(attempt: Attempt, info: &ShardInfo) -> AttemptRecord {
        AttemptRecord {
            attempt: attempt.attempt,
            of: attempt.of,
            log_dir: info.log_dir.clone(),
            junit_dir: None,
            status: None,
            cause: None,
            commands: info.commands.iter().map(|c| CommandRecord::new(c)).collect(),
            phases: Phases::default(),
            instances: Vec::new(),
        }
    }

    /// An attempt of the same shard that has not started: its commands, nothing run.
    fn fresh(&self) -> AttemptRecord {
        let commands = self.commands.iter().map(|c| CommandRecord::new(&c.command));
        AttemptRecord {
            junit_dir: None,
            status: None,
            cause: None,
            commands: commands.collect(),
            phases: Phases::default(),
            instances: Vec::new(),
            ..self.clone()
        }
    }

    /// Folds a phase of instance `id` in; the shard's own instance's address and first
    /// readiness are also the attempt's marks.
    fn apply(&mut self, at: Duration, id: &str, phase: &InstancePhase) {
        let n = match self.instances.iter().position(|i| i.id == id) {
            Some(n) => n,
            None => {
                self.instances.push(InstanceRecord::new(id));
                self.instances.len() - 1
            }
        };
        let instance = &mut self.instances[n];
        instance.apply(Some(at), phase);
        if id == MAIN {
            match phase {
                InstancePhase::Acquired { .. } => self.phases.address = Some(at),
                InstancePhase::Ready { .. } if instance.lives.len() == 1 => {
                    self.phases.ready = Some(at)
                }
                _ => {}
            }
        }
    }

    /// The shard's own instance.
    pub fn main(&self) -> Option<&InstanceRecord> {
        self.instances.iter().find(|i| i.id == MAIN)
    }

    /// Its own instance's first life: the shard's boot.
    fn first_life(&self) -> Option<&LifeRecord> {
        self.main()?.lives.first()
    }

    pub fn address(&self) -> Option<Ipv4Addr> {
        self.main()?.address
    }

    /// The pid of its own Harper's first boot.
    pub fn harper_pid(&self) -> Option<u32> {
        self.first_life()?.pid
    }

    /// Where its own Harper's first boot wrote its output.
    pub fn boot_logs(&self) -> Option<&BootLogs> {
        self.first_life()?.logs.as_ref()
    }

    /// What the teardown of its own instance could not confirm (a port still held, a
    /// directory left).
    pub fn teardown_problem(&self) -> Option<&str> {
        self.main()?.problem.as_deref()
    }

    /// The output that explains a failed boot of its own Harper.
    pub fn boot_tail(&self) -> &[String] {
        self.first_life().map_or(&[], |l| &l.tail)
    }

    /// The phase that failed (or was cut short) in this attempt, had it ended with `status`:
    /// a shard's last attempt is read with the shard's status, an earlier one with its own.
    pub fn failed_phase(&self, status: ShardStatus) -> Option<Phase> {
        let p = &self.phases;
        match status {
            ShardStatus::Passed | ShardStatus::Flaky | ShardStatus::Skipped => None,
            _ if self.teardown_problem().is_some() => Some(Phase::TEARDOWN),
            ShardStatus::BootFailed => Some(Phase::BOOT),
            ShardStatus::Failed | ShardStatus::Quarantined => Some(Phase::COMMANDS),
            ShardStatus::Infrastructure | ShardStatus::Cancelled => {
                if p.address.is_none() {
                    Some(Phase::WAIT)
                } else if p.ready.is_none() {
                    Some(Phase::BOOT)
                } else if p.waits_for_turn() {
                    // Ended while it waited for its turn, between phases.
                    None
                } else {
                    Some(Phase::COMMANDS)
                }
            }
        }
    }

    /// The instances the reports list beside the shard, in the order they appeared there:
    /// every on-demand one from its address, and the shard's own from when it first lived
    /// more than the shard's boot (stopped, killed or restarted through the control socket).
    pub fn shown_instances(&self) -> impl Iterator<Item = &InstanceRecord> {
        let appeared = |i: &InstanceRecord| {
            if i.id != MAIN {
                return Some(i.acquired);
            }
            let first = i.lives.first()?;
            first.stopping.or_else(|| i.lives.get(1)?.booting).map(Some)
        };
        let mut shown: Vec<(Option<Duration>, &InstanceRecord)> =
            self.instances.iter().filter_map(|i| Some((appeared(i)?, i))).collect();
        shown.sort_by_key(|(at, _)| *at);
        shown.into_iter().map(|(_, i)| i)
    }

    /// The output that explains a failure: the failed command (and its tail), else Harper's
    /// last lines (and no command).
    pub fn failure_tail(&self) -> (Option<&str>, &[String]) {
        match self
            .commands
            .iter()
            .find(|c| matches!(c.outcome, Some(ref o) if *o != Outcome::Passed))
        {
            Some(c) if !c.tail.is_empty() => (Some(&c.command), &c.tail),
            _ => (None, self.boot_tail()),
        }
    }
}

/// What `report.json` says of an attempt.
#[derive(Serialize)]
struct AttemptView<'a> {
    attempt: u32,
    of: u32,
    status: Option<ShardStatus>,
    cause: &'a Option<String>,
    log_dir: &'a PathBuf,
    #[serde(flatten)]
    last: LastView<'a>,
    /// Every instance, `main` included.
    instances: &'a [InstanceRecord],
}

/// The fields of an attempt that version 1 had at the shard's top level.
#[derive(Serialize)]
struct LastView<'a> {
    address: Option<Ipv4Addr>,
    harper_pid: Option<u32>,
    boot_tail: &'a [String],
    teardown_problem: Option<&'a str>,
    commands: &'a [CommandRecord],
    phases: &'a Phases,
}

impl<'a> LastView<'a> {
    fn of(a: &'a AttemptRecord) -> LastView<'a> {
        LastView {
            address: a.address(),
            harper_pid: a.harper_pid(),
            boot_tail: a.boot_tail(),
            teardown_problem: a.teardown_problem(),
            commands: &a.commands,
            phases: &a.phases,
        }
    }
}

impl Serialize for AttemptRecord {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        let view = AttemptView {
            attempt: self.attempt,
            of: self.of,
            status: self.status,
            cause: &self.cause,
            log_dir: &self.log_dir,
            last: LastView::of(self),
            instances: &self.instances,
        };
        view.serialize(to)
    }
}

/// The shard in `report.json`: its own fields, the last attempt's as version 1 had them
/// (`instances` as version 1 listed them: `main` only once the control socket acted on it),
/// and every attempt that started.
impl Serialize for ShardRecord {
    fn serialize<S: serde::Serializer>(&self, to: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            name: &'a str,
            index: usize,
            total: usize,
            log_dir: &'a PathBuf,
            status: Option<ShardStatus>,
            cause: &'a Option<String>,
            quarantine: Option<&'a [crate::plan::Quarantine]>,
            booted_ahead: bool,
            #[serde(flatten)]
            last: LastView<'a>,
            instances: Vec<&'a InstanceRecord>,
            attempts: Vec<&'a AttemptRecord>,
        }
        let last = self.last();
        View {
            name: &self.name,
            index: self.index,
            total: self.total,
            log_dir: &self.log_dir,
            status: self.status,
            cause: &self.cause,
            quarantine: (!self.quarantine.is_empty()).then_some(self.quarantine.as_slice()),
            booted_ahead: self.booted_ahead(),
            last: LastView::of(last),
            instances: last.shown_instances().collect(),
            attempts: self.attempts.iter().filter(|a| a.phases.started.is_some()).collect(),
        }
        .serialize(to)
    }
}

/// A boundary of a shard's life, crossed by an event; the phases lie between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Started,
    Address,
    Ready,
    /// Where the commands may start: ready, or the turn of an attempt that booted ahead.
    CommandsFrom,
    CommandsDone,
    TeardownStarted,
    Finished,
}

/// A phase of a shard's life, as data. Every reporter (the console's table, the summary's table
/// and chart, the JUnit properties, the annotations' and groups' phase lines) iterates
/// [`Phase::ALL`], so a new phase is one entry there; a constant names it only where something
/// branches on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// Its name everywhere: a table column, a chart bar, a JUnit property (`boot-seconds`).
    pub label: &'static str,
    /// The end of its chart bars' ids (`s0b`), unique among the phases.
    pub key: &'static str,
    /// It begins at the first of these that was crossed.
    from: &'static [Mark],
    /// It ends at the first of these that was crossed.
    to: &'static [Mark],
}

impl Phase {
    pub const WAIT: Phase =
        Phase { label: "wait", key: "w", from: &[Mark::Started], to: &[Mark::Address] };
    /// Until ready, or until teardown when it failed.
    pub const BOOT: Phase = Phase {
        label: "boot",
        key: "b",
        from: &[Mark::Address],
        to: &[Mark::Ready, Mark::TeardownStarted],
    };
    /// From ready (or, booted ahead, from the turn: never without one) until the last command
    /// ended, or until teardown cut them short.
    pub const COMMANDS: Phase = Phase {
        label: "commands",
        key: "c",
        from: &[Mark::CommandsFrom],
        to: &[Mark::CommandsDone, Mark::TeardownStarted],
    };
    pub const TEARDOWN: Phase = Phase {
        label: "teardown",
        key: "t",
        from: &[Mark::TeardownStarted],
        to: &[Mark::Finished],
    };

    /// The phases of a shard's life, in order.
    pub const ALL: &'static [Phase] = &[Phase::WAIT, Phase::BOOT, Phase::COMMANDS, Phase::TEARDOWN];
}

impl ShardRecord {
    /// Finished with a status that does not fail the run (a flaky one counts as not failed
    /// here; the run's `flaky_fails` says whether it fails the run).
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.exit(false).code() == 0)
    }

    /// The phase of the last attempt that failed (or was cut short), to mark in tables and charts.
    pub fn failed_phase(&self) -> Option<Phase> {
        self.last().failed_phase(self.status?)
    }

    /// The output that explains the shard's failure: its last attempt's.
    pub fn failure_tail(&self) -> (Option<&str>, &[String]) {
        self.last().failure_tail()
    }
}

/// What an event means for a shard's own boot — its own instance's first life — if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnBoot<'e> {
    Acquired(Ipv4Addr),
    Ready,
    Failed(&'e str),
}

impl RunRecord {
    /// The shard whose own boot `kind` tells of, and what it tells; read after the record has
    /// taken the event in.
    pub fn own_boot<'e>(&self, kind: &'e EventKind) -> Option<(ShardId, OwnBoot<'e>)> {
        let EventKind::Instance { shard, attempt, id, phase } = kind else { return None };
        let first = || {
            let a = self.shards[*shard].attempts.get(attempt.attempt as usize - 1)?;
            Some(a.main()?.lives.len() <= 1)
        };
        if id != MAIN {
            return None;
        }
        let boot = match phase {
            InstancePhase::Acquired { addr, .. } => OwnBoot::Acquired(*addr),
            InstancePhase::Ready { .. } if first()? => OwnBoot::Ready,
            InstancePhase::BootFailed { cause, .. } if first()? => OwnBoot::Failed(cause),
            _ => return None,
        };
        Some((*shard, boot))
    }

    /// The shards whose status fails the run, in plan order.
    pub fn failed(&self) -> impl Iterator<Item = &ShardRecord> {
        self.shards
            .iter()
            .filter(|s| s.status.is_some_and(|st| st.exit(self.flaky_fails).code() != 0))
    }
}

fn rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&humantime::format_rfc3339_millis(*t).to_string()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::synthetic::{Run, Shard};
    use std::collections::BTreeSet;

    /// The field names in the first column of the table under `### {heading}` in
    /// docs/reports.md.
    fn documented(heading: &str) -> BTreeSet<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reports.md");
        let doc = std::fs::read_to_string(&path).expect("docs/reports.md");
        let section = doc
            .split(&format!("### {heading}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section {heading}"));
        section
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .flat_map(|row| {
                let first = row.split('|').nth(1).unwrap_or("");
                first
                    .split(',')
                    .map(|name| name.trim().trim_matches('`').to_owned())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn keys(value: &serde_json::Value) -> BTreeSet<String> {
        value.as_object().expect("an object").keys().cloned().collect()
    }

    /// `report.json` of `run`: its record, serialised as the report folder's writer does.
    fn report_json(run: &Run) -> serde_json::Value {
        serde_json::to_value(run.record()).expect("the record serialises")
    }

    /// A passing and a failing shard, so that every optional field appears.
    fn good_and_bad() -> serde_json::Value {
        report_json(&Run::of([Shard::passing("good"), Shard::failing("bad", &["not ok 1"])]))
    }

    #[test]
    fn the_documented_top_level_fields_are_the_ones_written() {
        assert_eq!(keys(&good_and_bad()), documented("Top level"));
    }

    #[test]
    fn the_documented_shard_and_command_fields_are_the_ones_written() {
        let report = good_and_bad();
        let bad = &report["shards"][1];
        assert_eq!(keys(bad), documented("Shard"));
        assert_eq!(
            keys(&bad["commands"][0]),
            documented("Command"),
            "a failed command, which carries its tail"
        );
        assert_eq!(report["version"], 3);
        let attempts = bad["attempts"].as_array().expect("an attempts array");
        assert_eq!(attempts.len(), 1, "no retries: one attempt");
        assert_eq!(keys(&attempts[0]), documented("Attempt"));
        for field in [
            "address",
            "harper_pid",
            "boot_tail",
            "teardown_problem",
            "commands",
            "phases",
            "status",
            "cause",
        ] {
            assert_eq!(
                attempts[0][field], bad[field],
                "the shard's `{field}` is its last attempt's"
            );
        }
    }

    #[test]
    fn the_documented_instance_and_life_fields_are_the_ones_written() {
        let report = report_json(&Run::of([Shard::passing("auth").with_instances(1)]));
        let instances = report["shards"][0]["instances"].as_array().expect("an instances array");
        assert_eq!(instances.len(), 3, "{instances:?}");
        for instance in instances {
            assert_eq!(keys(instance), documented("Instance"), "{instance}");
        }
        let failed = instances.iter().find(|i| i["id"] == "i2").expect("i2, whose boot failed");
        assert_eq!(
            keys(&failed["lives"][0]),
            documented("Life"),
            "a failed boot, which carries its tail"
        );
    }

    #[test]
    fn the_phase_columns_are_the_phases_and_the_total() {
        let labels: Vec<&str> = Phases::column_labels().collect();
        assert_eq!(labels, ["wait", "boot", "commands", "teardown", "total"]);
    }

    #[test]
    fn each_phase_has_a_label_and_a_chart_key_of_its_own() {
        let mut labels: Vec<&str> = Phase::ALL.iter().map(|p| p.label).collect();
        let mut keys: Vec<&str> = Phase::ALL.iter().map(|p| p.key).collect();
        labels.sort_unstable();
        labels.dedup();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            (labels.len(), keys.len()),
            (Phase::ALL.len(), Phase::ALL.len()),
            "{:?}",
            Phase::ALL
        );
        assert!(!labels.contains(&"total"), "`total` is the column after the phases");
    }

    #[test]
    fn booted_ahead_the_commands_start_at_the_turn_and_the_wait_is_not_the_shards_own_time() {
        let s = |secs: u64| Some(Duration::from_secs(secs));
        let mut phases = Phases {
            started: s(0),
            address: s(1),
            ready: s(3),
            turn: s(10),
            ahead: true,
            commands_done: s(14),
            teardown_started: s(14),
            finished: s(15),
        };
        assert_eq!(phases.bounds(Phase::COMMANDS), Some((s(10).unwrap(), s(14).unwrap())));
        assert_eq!(phases.total(), s(15));
        assert_eq!(phases.own(), s(8), "15 s less the 7 s between ready and the turn");
        (phases.turn, phases.ahead) = (None, false);
        assert_eq!(phases.bounds(Phase::COMMANDS), Some((s(3).unwrap(), s(14).unwrap())));
        assert_eq!(phases.own(), phases.total());
    }

    #[test]
    fn a_shard_cancelled_while_it_waited_for_its_turn_ran_no_commands_phase() {
        let record = Run::of([Shard::passing("b").booted_ahead(None)]).record();
        let b = &record.shards[0];
        let phases = &b.last().phases;
        assert!(phases.ready.is_some() && phases.waits_for_turn(), "{phases:?}");
        assert_eq!(phases.took(Phase::COMMANDS), None, "the wait is no phase: {phases:?}");
        assert_eq!(phases.columns()[2], None, "nor a column in the tables");
        assert_eq!(b.failed_phase(), None, "it ended between phases");
    }

    #[test]
    fn commands_cut_short_by_teardown_last_until_teardown_in_every_view() {
        let s = |secs: u64| Some(Duration::from_secs(secs));
        let phases = Phases {
            started: s(0),
            address: s(1),
            ready: s(2),
            turn: None,
            ahead: false,
            commands_done: None,
            teardown_started: s(7),
            finished: s(8),
        };
        assert_eq!(
            phases.bounds(Phase::COMMANDS),
            Some((Duration::from_secs(2), Duration::from_secs(7)))
        );
        assert_eq!(
            phases.columns()[2],
            Some(Duration::from_secs(5)),
            "the table says what the chart draws"
        );
    }
}
