//! The life of one shard: wait for an address, boot Harper on it, run the commands, tear
//! everything down, and say how it went. Every step emits events; teardown runs whatever
//! happened before it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::control::{CONTROL_VAR, Control, Registry};
use super::events::{EventKind, Outcome, ShardId, ShardStatus, Warning};
use super::instance::{Instance, MAIN};
use super::{Cancel, Emitter};
use crate::harper::instance::WorkDir;
use crate::plan::Shard;
use crate::pool::Pool;
use crate::supervise::readiness::Tail;
use crate::supervise::output::Unlogged;
use crate::supervise::{self, Child, Settled, Spec};

/// After a stop, how long the last output may take to reach the logs. Only a process that
/// escaped the keeper (possible where there is no subreaper) can hold the pipes open longer;
/// the shard must not hang on it.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Lines of a failed command's output kept for the report.
pub const COMMAND_TAIL: usize = 200;

/// The folder in a shard's log directory where its commands may leave JUnit XML
/// (`HARPER_SHARD_JUNIT_DIR`); the report reads per-file timings from it.
const JUNIT_DIR: &str = "junit";

#[derive(Clone)]
pub struct Context {
    pub id: ShardId,
    pub total: usize,
    pub plan_dir: PathBuf,
    pub log_dir: PathBuf,
    pub entry: PathBuf,
    pub work: Arc<WorkDir>,
    pub pool: Arc<Pool>,
    pub emit: Emitter,
    pub cancel: watch::Receiver<Option<Cancel>>,
}

/// A shard's folder in the report directory.
pub fn log_dir(report_dir: &Path, shard: &str) -> PathBuf {
    report_dir.join(crate::plan::dir_name(shard))
}

pub async fn run(cx: &Context, shard: &Shard) -> ShardStatus {
    cx.emit.emit(EventKind::ShardStarted { shard: cx.id });
    let (status, cause) = life(cx, shard).await;
    cx.emit.emit(EventKind::ShardFinished { shard: cx.id, status, cause });
    status
}

async fn life(cx: &Context, shard: &Shard) -> (ShardStatus, Option<String>) {
    // The token exists before the address does, so that whoever records the lease can record
    // the token that every process of this shard will carry.
    let token = uuid::Uuid::new_v4().to_string();
    let registry = Registry::new(shard.harper.instances);
    let (mut status, mut cause) = (ShardStatus::Passed, None);
    let mut own = None;
    if shard.harper.boot {
        let log_dir = cx.log_dir.join("harper");
        let mut main = match Instance::acquire(cx, shard.harper.clone(), (MAIN.into(), shard.name.clone()), token.clone(), log_dir, None).await {
            Ok(main) => main,
            Err(f) => return (f.status, Some(f.cause)),
        };
        let booted = match main.prepare(cx).await {
            Ok(()) => main.start(cx).await,
            Err(f) => Err(f),
        };
        if let Err(f) = booted {
            (status, cause) = (f.status, Some(f.cause));
        }
        own = Some(main);
    }
    if status == ShardStatus::Passed {
        let env = shard_env(cx, shard, own.as_ref());
        if let Some(main) = own.take() {
            registry.insert(main);
        }
        (status, cause) = with_control(cx, shard, &registry, &token, env).await;
    }
    // Every path goes through teardown: it removes ROOTPATH, which a first start that never
    // became ready may have poisoned (docs/harper.md), and it is the only way a lease is
    // released. After an infrastructure failure (a keeper the tool had to replace, among
    // others) the record stays, so that the next owner of the address sweeps the token once more.
    let suspect = status == ShardStatus::Infrastructure;
    let mut instances = registry.drain();
    instances.extend(own);
    let (main, extra): (Vec<Instance>, Vec<Instance>) = instances.into_iter().partition(|i| i.id == MAIN);
    // The on-demand ones first, side by side, inside the shard's teardown phase.
    let mut problems: Vec<String> = Vec::new();
    if main.is_empty() && !extra.is_empty() {
        cx.emit.emit(EventKind::TeardownStarted { shard: cx.id });
    }
    let ended = futures_util::future::join_all(extra.into_iter().map(|i| {
        let id = i.id.clone();
        async move { i.teardown(cx, suspect).await.map(|p| format!("instance `{id}`: {p}")) }
    }))
    .await;
    problems.extend(ended.into_iter().flatten());
    for main in main {
        if let Some(problem) = main.teardown(cx, suspect).await {
            problems.push(problem);
        }
    }
    if !problems.is_empty() {
        if status == ShardStatus::Passed || status == ShardStatus::Failed {
            status = ShardStatus::Infrastructure;
        }
        let problem = problems.join("; ");
        cause = Some(match cause {
            Some(c) => format!("{c}; and teardown: {problem}"),
            None => format!("teardown: {problem}"),
        });
    }
    (status, cause)
}

/// Runs the commands with the shard's control socket served beside them; when they end, the
/// socket takes no new request and the ones under way finish. Past the shard's deadline those are
/// cancelled as a signal cancels them (a boot in flight stops waiting for Harper): the commands
/// that asked are gone, and the shard must not outlive its timeout by a startup cap.
async fn with_control(cx: &Context, shard: &Shard, registry: &Registry, token: &str, mut env: BTreeMap<String, String>) -> (ShardStatus, Option<String>) {
    let control = match Control::open(&cx.work.path) {
        Ok(control) => control,
        Err(e) => return (ShardStatus::Infrastructure, Some(format!("the control socket: {e:#}"))),
    };
    env.insert(CONTROL_VAR.to_owned(), control.socket.display().to_string());
    let deadline = tokio::time::Instant::now() + shard.timeout;
    let (ending, ended) = watch::channel(false);
    let (cut, cut_rx) = watch::channel(*cx.cancel.borrow());
    let served = Context { cancel: cut_rx, ..cx.clone() };
    let run = async {
        let result = commands(cx, shard, &env, token, deadline).await;
        let _ = ending.send(true);
        result
    };
    let serve = async {
        tokio::select! {
            () = control.serve(&served, shard, registry, token, ended.clone()) => {}
            () = cut_at(cx, deadline, ended, &cut) => {}
        }
    };
    let (result, ()) = tokio::join!(run, serve);
    result
}

/// Passes the run's cancellation on to `cut`, and cancels it (as a timeout) once `deadline` has
/// passed and the commands have ended (`ended`): their end at the deadline is a timeout, not the
/// failure of a request cut under them. Never returns.
async fn cut_at(cx: &Context, deadline: tokio::time::Instant, mut ended: watch::Receiver<bool>, cut: &watch::Sender<Option<Cancel>>) {
    let mut run = cx.cancel.clone();
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
}

/// Under a signal, when every wait of this shard must be over ([`budget`]).
pub(super) fn deadline(cx: &Context) -> Option<tokio::time::Instant> {
    cx.cancel.borrow().and_then(Cancel::teardown_deadline).map(tokio::time::Instant::from_std)
}

/// `limit`, or less under a signal: what is left until the deadline.
pub(super) fn within(cx: &Context, limit: Duration) -> Duration {
    match deadline(cx) {
        Some(end) => limit.min(end.saturating_duration_since(tokio::time::Instant::now())),
        None => limit,
    }
}

/// The variables of the README's "What a shard command sees".
/// Without an instance of its own (`harper.boot: false`), the shard's commands get no
/// instance variables: theirs come from the control socket.
fn shard_env(cx: &Context, shard: &Shard, own: Option<&Instance>) -> BTreeMap<String, String> {
    let mut env = shard.env.clone();
    if let Some(i) = own {
        let (addr, p) = (i.addr, &i.spec.ports);
        let vars = [
            ("HARPER_HOSTNAME", addr.to_string()),
            ("HARPER_OPERATIONS_API_URL", format!("http://{addr}:{}", p.operations)),
            ("HARPER_HTTP_URL", format!("http://{addr}:{}", p.http)),
            ("HARPER_MQTT_URL", format!("mqtt://{addr}:{}", p.mqtt)),
            ("HARPER_ADMIN_USERNAME", i.spec.admin.username.clone()),
            ("HARPER_ADMIN_PASSWORD", i.password.clone()),
            ("HARPER_ROOTPATH", i.dirs.root.display().to_string()),
            ("HARPER_LOG_DIR", i.harper_log_dir().display().to_string()),
        ];
        for (k, v) in vars {
            env.insert(k.to_owned(), v);
        }
    }
    let vars = [
        ("HARPER_SHARD_NAME", shard.name.clone()),
        ("HARPER_SHARD_INDEX", shard.index.to_string()),
        ("HARPER_SHARD_TOTAL", cx.total.to_string()),
        ("HARPER_SHARD_FILES", shard.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" ")),
        ("HARPER_SHARD_JUNIT_DIR", junit_dir(&cx.log_dir).display().to_string()),
    ];
    for (k, v) in vars {
        env.insert(k.to_owned(), v);
    }
    env
}

/// Where command `i` (0-based) of a shard writes its output, stdout and stderr interleaved.
fn command_log(log_dir: &Path, i: usize) -> PathBuf {
    log_dir.join(format!("command-{}.log", i + 1))
}

/// The JUnit folder in a shard's `log_dir`; absolute: commands run in the plan's directory, the
/// report directory may be relative.
pub fn junit_dir(log_dir: &Path) -> PathBuf {
    let dir = log_dir.join(JUNIT_DIR);
    std::path::absolute(&dir).unwrap_or(dir)
}

async fn commands(
    cx: &Context,
    shard: &Shard,
    env: &BTreeMap<String, String>,
    token: &str,
    deadline: tokio::time::Instant,
) -> (ShardStatus, Option<String>) {
    // Emptied first: XML left by an earlier run in the same report directory is not this run's.
    let junit = junit_dir(&cx.log_dir);
    let _ = std::fs::remove_dir_all(&junit);
    if let Err(e) = std::fs::create_dir_all(&junit) {
        return (ShardStatus::Infrastructure, Some(format!("cannot create {}: {e}", junit.display())));
    }
    for (i, command) in shard.commands.iter().enumerate() {
        let log = command_log(&cx.log_dir, i);
        cx.emit.emit(EventKind::CommandStarted { shard: cx.id, command: i, log: log.clone() });
        let spec = Spec {
            program: "sh".into(),
            args: vec!["-c".into(), command.into()],
            env: env.clone(),
            cwd: cx.plan_dir.clone(),
            stdout_log: log,
            stderr_log: None,
            grace: shard.harper.teardown.grace,
            token: token.to_owned(),
        };
        let watched = match Child::spawn(spec).await {
            Ok(child) => watch_command(cx, i, child, deadline, shard).await,
            Err(e) => {
                let why = format!("{e:#}");
                Watched { outcome: Outcome::Failed { status: why.clone() }, tail: Vec::new(), broken: Some(why) }
            }
        };
        let Watched { outcome, tail, broken } = watched;
        let result = match (&outcome, broken) {
            // The keeper could not start, died, or had to be replaced: the tool's failure, not
            // the test's.
            (_, Some(why)) => Some((ShardStatus::Infrastructure, format!("`{command}`: {why}"))),
            (Outcome::Passed, None) => None,
            (Outcome::Failed { status }, None) => Some((ShardStatus::Failed, format!("`{command}` failed: {status}"))),
            (Outcome::TimedOut { after }, None) => Some((
                ShardStatus::Failed,
                format!("`{command}` timed out after {} (shard timeout)", humantime::format_duration(*after)),
            )),
            (Outcome::Cancelled, None) => Some((ShardStatus::Cancelled, format!("`{command}` was cancelled"))),
        };
        cx.emit.emit(EventKind::CommandFinished { shard: cx.id, command: i, outcome, tail });
        if let Some((status, cause)) = result {
            return (status, Some(cause));
        }
    }
    (ShardStatus::Passed, None)
}

/// Resolves once the run is cancelled.
async fn cancelled(cancel: &mut watch::Receiver<Option<Cancel>>) {
    let _ = cancel.wait_for(Option::is_some).await;
}

/// How a command ended, its last lines, and what went wrong with its supervision, if anything.
struct Watched {
    outcome: Outcome,
    tail: Vec<String>,
    broken: Option<String>,
}

async fn watch_command(cx: &Context, i: usize, mut child: Child, deadline: tokio::time::Instant, shard: &Shard) -> Watched {
    let mut tail = Tail::new(COMMAND_TAIL);
    let mut cancel = cx.cancel.clone();
    let mut output_open = true;
    let relay = |tail: &mut Tail, chunk: supervise::Chunk| {
        tail.feed(&chunk.bytes);
        cx.emit.emit(EventKind::CommandOutput { shard: cx.id, command: i, stream: chunk.stream, bytes: chunk.bytes });
    };
    let mut broken = None;
    let outcome = loop {
        tokio::select! {
            biased;
            chunk = child.output.recv(), if output_open => match chunk {
                Some(chunk) => relay(&mut tail, chunk),
                None => output_open = false,
            },
            status = child.process.exited() => break ended(status, &mut broken),
            () = cancelled(&mut cancel) => break Outcome::Cancelled,
            _ = tokio::time::sleep_until(deadline) => {
                // The tool itself may have been stopped (SIGSTOP, a frozen machine) while the
                // command went on and finished: what is already waiting decides, not the clock.
                let Settled { chunks, exited } = child.settle().await;
                for chunk in chunks {
                    relay(&mut tail, chunk);
                }
                break match exited {
                    Some(status) => ended(status, &mut broken),
                    None => Outcome::TimedOut { after: shard.timeout },
                };
            }
        }
    };
    // Whatever the command left in its group (background servers, stuck children) goes too.
    // The stop's error, when there is one, is the whole story (a keeper that died is found
    // and replaced there); it replaces what the exit said.
    if let Err(e) = super::instance::stop(cx, &mut child, shard.harper.teardown.grace).await {
        broken = Some(format!("{e:#}"));
    }
    // Taken as it comes until both pipes close: a drain reads on only as what it sent is taken.
    let rest = async {
        while let Some(chunk) = child.output.recv().await {
            relay(&mut tail, chunk);
        }
        child.process.flushed().await;
    };
    let _ = tokio::time::timeout(within(cx, FLUSH_LIMIT), rest).await;
    warn_unlogged(cx, &mut child.process, |_| command_log(&cx.log_dir, i));
    Watched { outcome, tail: tail.lines(), broken }
}

/// A warning for each stream of `process` whose output is not all in its log (`log_of`).
pub(super) fn warn_unlogged(cx: &Context, process: &mut supervise::Process, log_of: impl Fn(supervise::Stream) -> PathBuf) {
    for Unlogged { stream, bytes, error } in process.take_unlogged() {
        let warning = Warning::LogIncomplete { log: log_of(stream), stream, bytes, error };
        cx.emit.emit(EventKind::Warning { shard: Some(cx.id), warning });
    }
}

/// A command's exit as an outcome; a keeper that vanished instead is noted in `broken`.
fn ended(status: std::io::Result<std::process::ExitStatus>, broken: &mut Option<String>) -> Outcome {
    match status {
        Ok(s) if s.success() => Outcome::Passed,
        Ok(s) => Outcome::Failed { status: supervise::describe(&s) },
        Err(e) => {
            *broken = Some(e.to_string());
            Outcome::Failed { status: e.to_string() }
        }
    }
}

