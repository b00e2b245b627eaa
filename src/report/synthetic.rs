//! Synthetic runs for the reporters' tests: the events a run of a few shards sends, at fixed
//! times, and what each reporter renders of them, in-process. The shards run one after another;
//! each attempt takes its address, boots, runs its commands until one fails, and tears down, as
//! the runner tells it. A retry gets a fresh address. Fixed times and a fixed start make the
//! texts the same on every run, so that whole texts can be compared with reviewed snapshots.
//!
//! Not for: the runner's timing or ordering guarantees (the integration tests drive the real
//! binary for those), or anything but rendering.

use std::net::Ipv4Addr;
use std::time::{Duration, UNIX_EPOCH};

use super::model::RunRecord;
use super::place::Place;
use super::{Reporter, console, github, out, policy};
use crate::run::events::{
    Attempt, BootLogs, Event, EventKind, ExitCode, InstancePhase, Outcome, ShardId, ShardInfo,
    ShardStatus,
};

/// A run of `shards`, one after another, from a fixed wall-clock start.
pub struct Run {
    pub shards: Vec<Shard>,
}

/// A shard and each of its attempts, in order (a shard with one attempt is not retried).
pub struct Shard {
    pub name: String,
    pub attempts: Vec<Try>,
}

/// One attempt: milliseconds waiting for an address, booting (or the boot's failure) and tearing
/// down, and the commands it runs.
pub struct Try {
    pub wait: u64,
    pub boot: u64,
    pub boot_failure: Option<(String, Vec<String>)>,
    pub commands: Vec<Command>,
    pub teardown: u64,
    /// The commands start instances of their own ([`instance_events`]): `i1` is restarted this
    /// many times.
    pub instances: Option<usize>,
    /// When it had the turn for its commands.
    pub turn: Turn,
}

/// When an attempt has its turn under the concurrency limit ([`crate::run::ahead`]).
pub enum Turn {
    /// From its start.
    Held,
    /// It booted ahead, and had the turn this many ms after its Harper was ready.
    After(u64),
    /// It booted ahead, and the run was cancelled this many ms after its Harper was ready,
    /// before the turn came.
    Never(u64),
}

/// A command line, how long it runs and how it ends.
pub struct Command {
    pub line: String,
    pub took: u64,
    pub end: End,
}

pub enum End {
    Passed,
    /// Exits with `code`; `tail` is the output kept of it.
    Failed {
        code: u8,
        tail: Vec<String>,
    },
    /// Cut short by a cancellation: no end of its own, then teardown.
    Cut,
}

impl Command {
    pub fn passing(line: &str, took: u64) -> Command {
        Command { line: line.into(), took, end: End::Passed }
    }

    pub fn failing(line: &str, took: u64, code: u8, tail: &[&str]) -> Command {
        let tail = tail.iter().map(|l| (*l).to_owned()).collect();
        Command { line: line.into(), took, end: End::Failed { code, tail } }
    }
}

impl Try {
    /// Waits 10 ms, boots in 200 ms, runs `commands`, tears down in 100 ms.
    pub fn of(commands: Vec<Command>) -> Try {
        Try {
            wait: 10,
            boot: 200,
            boot_failure: None,
            commands,
            teardown: 100,
            instances: None,
            turn: Turn::Held,
        }
    }

    fn status(&self) -> (ShardStatus, Option<String>) {
        if let Some((cause, _)) = &self.boot_failure {
            return (ShardStatus::BootFailed, Some(cause.clone()));
        }
        if let Turn::Never(_) = self.turn {
            let cause = "not started: the run was cancelled while its instance, booted ahead, \
                         waited for a turn";
            return (ShardStatus::Cancelled, Some(cause.into()));
        }
        for c in &self.commands {
            match &c.end {
                End::Passed => {}
                End::Failed { code, .. } => {
                    let cause = format!("`{}` failed: exit code {code}", c.line);
                    return (ShardStatus::Failed, Some(cause));
                }
                End::Cut => return (ShardStatus::Cancelled, Some("cancelled".into())),
            }
        }
        (ShardStatus::Passed, None)
    }
}

impl Shard {
    /// One attempt of `commands`.
    pub fn new(name: &str, commands: Vec<Command>) -> Shard {
        Shard { name: name.into(), attempts: vec![Try::of(commands)] }
    }

    /// `node --test tests/NAME.test.mjs`, which passes in 400 ms.
    pub fn passing(name: &str) -> Shard {
        Shard::new(name, vec![Command::passing(&Shard::test(name), 400)])
    }

    /// `node --test tests/NAME.test.mjs`, which fails (exit code 1) in 400 ms with `tail`.
    pub fn failing(name: &str, tail: &[&str]) -> Shard {
        Shard::new(name, vec![Command::failing(&Shard::test(name), 400, 1, tail)])
    }

    fn test(name: &str) -> String {
        format!("node --test tests/{name}.test.mjs")
    }

    /// Its first attempt's first command runs `ms`.
    pub fn took(mut self, ms: u64) -> Shard {
        self.attempts[0].commands[0].took = ms;
        self
    }

    /// Its first attempt waits, boots and tears down in these times.
    pub fn phases(mut self, wait: u64, boot: u64, teardown: u64) -> Shard {
        let first = &mut self.attempts[0];
        (first.wait, first.boot, first.teardown) = (wait, boot, teardown);
        self
    }

    /// Retried once more, on a fresh instance, where its commands pass in `ms` (each).
    pub fn then_passing(mut self, ms: u64) -> Shard {
        let commands =
            self.attempts[0].commands.iter().map(|c| Command::passing(&c.line, ms)).collect();
        self.attempts.push(Try::of(commands));
        self
    }

    /// Its own Harper exits before it is ready, saying `tail`.
    pub fn boot_fails(mut self, cause: &str, tail: &[&str]) -> Shard {
        let tail = tail.iter().map(|l| (*l).to_owned()).collect();
        self.attempts[0].boot_failure = Some((cause.into(), tail));
        self
    }

    /// Its first attempt boots ahead of its turn, which comes `waited` ms after Harper is
    /// ready; `None`: it never comes, the run is cancelled 300 ms after ready.
    pub fn booted_ahead(mut self, waited: Option<u64>) -> Shard {
        self.attempts[0].turn = waited.map_or(Turn::Never(300), Turn::After);
        self
    }

    /// Its first command starts, stops and releases instances of its own: `i1` (`auth tests`)
    /// restarted `restarts` times, the shard's own killed and booted again, and `i2`, whose boot
    /// fails ([`instance_events`]).
    pub fn with_instances(mut self, restarts: usize) -> Shard {
        self.attempts[0].instances = Some(restarts);
        self
    }

    /// Its status and cause: a shard whose last attempt passed after a failed one is flaky, and
    /// keeps the first failure's cause.
    fn status(&self) -> (ShardStatus, Option<String>) {
        let last = self.attempts.last().expect("a shard has an attempt").status();
        match (last.0, self.attempts.len()) {
            (ShardStatus::Passed, n) if n > 1 => (ShardStatus::Flaky, self.attempts[0].status().1),
            _ => last,
        }
    }
}

/// How long an instance of the scenario in [`instance_events`] takes to boot.
const INSTANCE_BOOT: u64 = 250;

/// What the commands of a shard with instances do, in ms after the first command starts: start
/// `i1` (named `auth tests`, one address up from the shard's) and restart it `restarts` times,
/// each life up 100 ms; release it; kill the shard's own (`main`) and boot it again; start `i2`
/// (two addresses up), whose boot fails after 100 ms, and release it. Returns the events and the
/// time the last of them comes.
fn instance_events(restarts: usize, addr: u8) -> (Vec<(u64, String, InstancePhase)>, u64) {
    let mut t = 0;
    let mut out = Vec::new();
    let mut at = |step: u64, id: &str, phase: InstancePhase| {
        t += step;
        out.push((t, id.to_owned(), phase));
    };
    let booting = |pid: u32, id: &str| InstancePhase::Booting {
        pid,
        rootpath: format!("/nowhere/{id}").into(),
        logs: BootLogs {
            stdout: format!("r/{id}/stdout.log").into(),
            stderr: format!("r/{id}/stderr.log").into(),
        },
    };
    let ready = || InstancePhase::Ready { took: Duration::from_millis(INSTANCE_BOOT) };
    let stopped = |exit: &str, ms: u64| InstancePhase::Stopped {
        exit: exit.into(),
        took: Duration::from_millis(ms),
        problem: None,
    };
    let acquired = |name: &str, up: u8| InstancePhase::Acquired {
        name: name.into(),
        addr: loopback(addr + up),
    };
    at(5, "i1", acquired("auth tests", 1));
    for n in 0..=restarts {
        at(1, "i1", booting(200 + n as u32, "i1"));
        at(INSTANCE_BOOT, "i1", ready());
        if n < restarts {
            at(100, "i1", InstancePhase::Stopping { how: "stop" });
            at(20, "i1", stopped("exit code 0", 20));
        }
    }
    at(100, "i1", InstancePhase::Releasing);
    at(30, "i1", InstancePhase::Released { problem: None });
    at(10, "main", InstancePhase::Stopping { how: "kill" });
    at(5, "main", stopped("killed by SIGKILL", 5));
    at(1, "main", booting(199, "main"));
    at(INSTANCE_BOOT, "main", ready());
    at(5, "i2", acquired("i2", 2));
    at(1, "i2", booting(300, "i2"));
    let failed = InstancePhase::BootFailed {
        cause: "Harper exited before it was ready: exit code 3".into(),
        tail: vec!["Error: HarperDB failed to start (fake-harper exit=3)".into()],
    };
    at(100, "i2", failed);
    at(1, "i2", InstancePhase::Releasing);
    at(10, "i2", InstancePhase::Released { problem: None });
    (out, t)
}

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

impl Run {
    pub fn of(shards: impl IntoIterator<Item = Shard>) -> Run {
        Run { shards: shards.into_iter().collect() }
    }

    /// `passed` passing shards and then `failed` failing ones, named `s000`, `s001`, …; each
    /// failure's tail is `not ok 1 - widget`.
    pub fn many(passed: usize, failed: usize) -> Run {
        let name = |i: usize| format!("s{i:03}");
        let passing = (0..passed).map(|i| Shard::passing(&name(i)));
        let failing =
            (passed..passed + failed).map(|i| Shard::failing(&name(i), &["not ok 1 - widget"]));
        Run::of(passing.chain(failing))
    }

    /// Every event of the run, stamped with its time since the start.
    pub fn events(&self) -> Vec<Event> {
        let infos: Vec<ShardInfo> = self
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| ShardInfo {
                name: s.name.clone(),
                index: i + 1,
                total: self.shards.len(),
                commands: s.attempts[0].commands.iter().map(|c| c.line.clone()).collect(),
                log_dir: format!("r/{}", s.name).into(),
            })
            .collect();
        let ids: Vec<ShardId> = ShardId::each(&infos).map(|(id, _)| id).collect();
        let mut kinds = vec![(
            0,
            EventKind::RunStarted {
                shards: infos,
                concurrency: 1,
                report_dir: "r".into(),
                started_at: UNIX_EPOCH + Duration::from_secs(1_780_000_000),
                flaky_fails: false,
                plan_dir: ".".into(),
                flakes: Default::default(),
            },
        )];
        let mut t = 0;
        let mut exit = 0;
        for (shard, spec) in ids.into_iter().zip(&self.shards) {
            kinds.push((t, EventKind::ShardStarted { shard }));
            let mut retrying = None;
            let mut attempt = Attempt::first(spec.attempts.len() as u32);
            for (n, one) in spec.attempts.iter().enumerate() {
                let dir = match n {
                    0 => format!("r/{}", spec.name),
                    _ => format!("r/{}/attempt-{}", spec.name, n + 1),
                };
                let addr = 1 + attempt.attempt as u8;
                let mut teller = Teller { kinds: &mut kinds, shard, attempt, dir, addr };
                t = teller.attempt(t, one, retrying.take());
                retrying = one.status().1;
                attempt = attempt.next().unwrap_or(attempt);
            }
            let (status, cause) = spec.status();
            exit = exit.max(status.exit(false).code());
            kinds.push((t, EventKind::ShardFinished { shard, status, cause }));
        }
        kinds.push((t, EventKind::RunFinished { exit: ExitCode(exit) }));
        let ms = Duration::from_millis;
        kinds.into_iter().map(|(at, kind)| Event { at: ms(at), kind }).collect()
    }

    /// The record the reporters build from [`Run::events`].
    pub fn record(&self) -> RunRecord {
        record_of(&self.events())
    }
}

/// The record built from `events`.
pub fn record_of(events: &[Event]) -> RunRecord {
    let mut record = RunRecord::new();
    for event in events {
        record.apply(event);
    }
    record
}

/// Tells one attempt of a shard into `kinds`: which attempt, its folder, its address.
struct Teller<'a> {
    kinds: &'a mut Vec<(u64, EventKind)>,
    shard: ShardId,
    attempt: Attempt,
    dir: String,
    addr: u8,
}

impl Teller<'_> {
    fn main(&mut self, at: u64, phase: InstancePhase) {
        let (shard, attempt) = (self.shard, self.attempt);
        self.kinds.push((at, EventKind::Instance { shard, attempt, id: "main".into(), phase }));
    }

    /// The attempt `spec` from `t` (ms) on; returns when it finished.
    fn attempt(&mut self, mut t: u64, spec: &Try, retrying: Option<String>) -> u64 {
        let (shard, attempt, dir) = (self.shard, self.attempt, self.dir.clone());
        self.kinds.push((
            t,
            EventKind::AttemptStarted {
                shard,
                attempt,
                log_dir: dir.clone().into(),
                junit_dir: format!("{dir}/junit").into(),
                commands: spec.commands.iter().map(|c| c.line.clone()).collect(),
                retrying,
            },
        ));
        if !matches!(spec.turn, Turn::Held) {
            self.kinds.push((t, EventKind::BootingAhead { shard, attempt }));
        }
        t += spec.wait;
        self.main(t, InstancePhase::Acquired { name: "main".into(), addr: loopback(self.addr) });
        let logs = BootLogs {
            stdout: format!("{dir}/harper/stdout.log").into(),
            stderr: format!("{dir}/harper/stderr.log").into(),
        };
        let pid = 100 + u32::from(self.addr);
        self.main(t, InstancePhase::Booting { pid, rootpath: "/nowhere".into(), logs });
        t += spec.boot;
        match &spec.boot_failure {
            Some((cause, tail)) => {
                let failed = InstancePhase::BootFailed { cause: cause.clone(), tail: tail.clone() };
                self.main(t, failed);
            }
            None => {
                self.main(t, InstancePhase::Ready { took: Duration::from_millis(spec.boot) });
                match spec.turn {
                    Turn::Held => t = self.commands(t, spec),
                    Turn::After(waited) => {
                        t += waited;
                        self.kinds.push((t, EventKind::TurnTaken { shard, attempt }));
                        t = self.commands(t, spec);
                    }
                    Turn::Never(waited) => t += waited,
                }
            }
        }
        self.kinds.push((t, EventKind::TeardownStarted { shard, attempt }));
        self.main(t, InstancePhase::Releasing);
        t += spec.teardown;
        self.main(t, InstancePhase::Released { problem: None });
        let (status, cause) = spec.status();
        self.kinds.push((t, EventKind::AttemptFinished { shard, attempt, status, cause }));
        t
    }

    /// The attempt's commands from `t` on, until one does not pass; returns when the last ended.
    fn commands(&mut self, mut t: u64, spec: &Try) -> u64 {
        let (shard, attempt) = (self.shard, self.attempt);
        for (n, c) in spec.commands.iter().enumerate() {
            let log = format!("{}/command-{}.log", self.dir, n + 1).into();
            self.kinds.push((t, EventKind::CommandStarted { shard, attempt, command: n, log }));
            let mut took = c.took;
            if let (0, Some(restarts)) = (n, spec.instances) {
                let (events, end) = instance_events(restarts, self.addr);
                for (at, id, phase) in events {
                    self.kinds.push((t + at, EventKind::Instance { shard, attempt, id, phase }));
                }
                took = took.max(end + 100);
            }
            t += took;
            let (outcome, tail) = match &c.end {
                End::Passed => (Outcome::Passed, Vec::new()),
                End::Failed { code, tail } => {
                    (Outcome::Failed { status: format!("exit code {code}") }, tail.clone())
                }
                End::Cut => return t,
            };
            let passed = outcome == Outcome::Passed;
            let finished = EventKind::CommandFinished { shard, attempt, command: n, outcome, tail };
            self.kinds.push((t, finished));
            if !passed {
                break;
            }
        }
        t
    }
}

/// What a reporter writing through an [`out::Out`] shows of `events`, read back through a pipe.
pub fn shown(
    reporter: impl FnOnce(out::Out) -> Box<dyn Reporter>,
    github: bool,
    events: &[Event],
) -> String {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut reporter = reporter(out::Out::new(writer, github, false));
    let mut record = RunRecord::new();
    for event in events {
        record.apply(event);
        reporter.event(event, &record);
    }
    reporter.finish(&record).unwrap();
    drop(reporter);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
    text
}

/// What the console reporter shows of `events` with `verbosity` (not a terminal: no live lines,
/// no colour).
pub fn console_of(events: &[Event], verbosity: policy::Verbosity) -> String {
    shown(|out| Box::new(console::Console::new(out, verbosity)), false, events)
}

/// What the GitHub reporter writes of `events` to the log, its annotations pointing at `place`,
/// with no step files.
pub fn github_of(events: &[Event], place: &Place) -> String {
    let place = place.clone();
    let reporter = move |out| -> Box<dyn Reporter> {
        Box::new(github::GitHub::new(out, github::StepFiles::default(), place))
    };
    shown(reporter, true, events)
}

/// `harper-shards.yml` with each shard's `name:` on its own line, two lines apart from 4 on.
pub fn place_of(run: &Run) -> Place {
    let lines = run.shards.iter().enumerate().map(|(i, s)| (s.name.clone(), 4 + 2 * i as u32));
    Place { path: "harper-shards.yml".into(), lines: lines.collect() }
}
