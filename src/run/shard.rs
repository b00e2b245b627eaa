//! The life of one shard: each attempt waits for an address, boots Harper on it, runs the
//! commands, tears everything down and says how it went. Every step emits events; teardown
//! runs whatever happened before it.
//!
//! Stands on `control` (the socket served beside the commands), `instance` and `context`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use tokio::sync::watch;

use super::ahead::{NoTurn, Turn};
use super::context::{Cancel, Context, FLUSH_LIMIT, MAIN};
use super::control::{CONTROL_VAR, Control, Registry};
use super::events::{EventKind, Outcome, ShardStatus};
use super::instance::{Harper, Instance, LifeState};
use crate::plan::Shard;
use crate::supervise::readiness::Tail;
use crate::supervise::{self, Child, LateArrivals, Spec};

/// Lines of a failed command's output kept for the report.
pub const COMMAND_TAIL: usize = 200;

/// What one attempt runs: the shard's commands and files, or, on a retry of a `files:` shard
/// whose JUnit named the file of each failed case, only those files.
struct Work {
    commands: Vec<String>,
    files: Vec<PathBuf>,
}

impl Work {
    fn whole(shard: &Shard) -> Work {
        Work { commands: shard.commands.clone(), files: shard.files.clone() }
    }
}

/// Runs the shard's attempts: the first, then, while one fails in a way a fresh instance may
/// cure (a command failed or timed out, Harper did not boot) and retries are left, another on
/// a fresh instance and, when it can, a fresh address. A cancelled run never retries.
/// A shard that boots ahead (`turn`) takes its turn once its instance is ready.
pub async fn run(cx: &Context, shard: &Shard, turn: &mut Turn) -> ShardStatus {
    cx.emit.emit(EventKind::ShardStarted { shard: cx.id });
    let mut cx = cx.clone();
    let (mut work, mut retrying) = (Work::whole(shard), None);
    let mut first_failure: Option<Option<String>> = None;
    loop {
        cx.emit.emit(EventKind::AttemptStarted {
            shard: cx.id,
            attempt: cx.attempt,
            log_dir: cx.dir.path().to_path_buf(),
            junit_dir: cx.dir.junit(),
            commands: work.commands.clone(),
            retrying: retrying.take(),
        });
        if turn.is_ahead() {
            cx.emit.emit(EventKind::BootingAhead { shard: cx.id, attempt: cx.attempt });
        }
        let (status, cause, used) = match new_folder(&cx) {
            Ok(()) => attempt(&cx, shard, &work, turn).await,
            Err(cause) => (ShardStatus::Infrastructure, Some(cause), Vec::new()),
        };
        cx.emit.emit(EventKind::AttemptFinished {
            shard: cx.id,
            attempt: cx.attempt,
            status,
            cause: cause.clone(),
        });
        let curable = matches!(status, ShardStatus::Failed | ShardStatus::BootFailed);
        let next =
            if curable && cx.cancel.borrow().is_none() { cx.next_attempt(used) } else { None };
        let Some(next) = next else {
            // Passed after a failed attempt: flaky, and the first failure says why.
            let (status, cause) = match (status, first_failure) {
                (ShardStatus::Passed, Some(failed)) => (ShardStatus::Flaky, failed),
                _ => (status, cause),
            };
            let status = quarantine(&cx, shard, status);
            cx.emit.emit(EventKind::ShardFinished { shard: cx.id, status, cause });
            return status;
        };
        work = rerun(&cx, shard, work);
        retrying = Some(crate::text::one_line(cause.as_deref().unwrap_or("it failed")));
        first_failure.get_or_insert(cause);
        cx = next;
    }
}

/// `Quarantined` for a failure the plan's quarantine covers (the shard, or the file of every
/// test case that failed in the last attempt), after saying what covers it; else `status`.
fn quarantine(cx: &Context, shard: &Shard, status: ShardStatus) -> ShardStatus {
    if status != ShardStatus::Failed || shard.quarantine.is_empty() {
        return status;
    }
    let by: Vec<crate::plan::Quarantine> =
        shard.quarantined_by(failing_files(cx).as_deref()).into_iter().cloned().collect();
    if by.is_empty() {
        return status;
    }
    cx.emit.emit(EventKind::Quarantined { shard: cx.id, by });
    ShardStatus::Quarantined
}

/// The files (relative to the plan) of the test cases that failed in this attempt's JUnit;
/// `None` when a failing case names no file.
fn failing_files(cx: &Context) -> Option<Vec<String>> {
    let (cases, _) = crate::cases::read(&cx.dir.junit());
    let mut files: Vec<String> = cases
        .iter()
        .filter(|c| c.failure.is_some())
        .map(|c| c.file.as_deref().and_then(|f| crate::cases::relative(f, &cx.plan_dir)))
        .collect::<Option<_>>()?;
    files.sort();
    files.dedup();
    Some(files)
}

/// A later attempt's folder, made fresh (the first attempt's is the shard's, made by the reports).
fn new_folder(cx: &Context) -> Result<(), String> {
    if cx.attempt.attempt <= 1 {
        return Ok(());
    }
    let dir = cx.dir.path();
    std::fs::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// What the attempt after `done` runs: only the files that had a failing case, when `done`
/// ran files and the JUnit its commands wrote names the file of every failing case; else all
/// of it again.
fn rerun(cx: &Context, shard: &Shard, done: Work) -> Work {
    if done.files.is_empty() {
        return done;
    }
    let failing = match failing_files(cx) {
        Some(failing) if !failing.is_empty() => failing,
        _ => return Work::whole(shard),
    };
    let as_named = |f: &PathBuf| f.to_string_lossy().trim_start_matches("./").to_owned();
    let files: Vec<PathBuf> =
        done.files.iter().filter(|f| failing.contains(&as_named(f))).cloned().collect();
    if files.is_empty() || files.len() == done.files.len() {
        return done;
    }
    Work { commands: shard.commands_for(&files), files }
}

/// One attempt: the shard's own instance (unless `harper.boot: false`), its turn when it booted
/// ahead, the commands beside the control socket, and the teardown of every instance the
/// attempt started. Returns how it went and the addresses its instances ran on.
async fn attempt(
    cx: &Context,
    shard: &Shard,
    work: &Work,
    turn: &mut Turn,
) -> (ShardStatus, Option<String>, Vec<Ipv4Addr>) {
    // The token exists before the address does, so that whoever records the lease can record
    // the token that every process of this shard will carry.
    let token = uuid::Uuid::new_v4().to_string();
    let registry = Registry::new(shard.harper.instances);
    let (mut status, mut cause) = (ShardStatus::Passed, None);
    let mut own = None;
    if shard.harper.boot {
        let mut main = match Instance::acquire(
            cx,
            shard.harper.clone(),
            Harper::shard(cx),
            (MAIN.into(), MAIN.into()),
            token.clone(),
            None,
        )
        .await
        {
            Ok(main) => main,
            Err(f) if f.status == ShardStatus::Cancelled && turn.is_ahead() => {
                let (status, cause) = no_turn(cx, "waited for an address");
                return (status, cause, Vec::new());
            }
            Err(f) => return (f.status, Some(f.cause), Vec::new()),
        };
        let booted = match main.prepare(cx).await {
            Ok(()) => main.start(cx).await,
            Err(f) => Err(f),
        };
        match booted {
            Ok(()) => {}
            Err(f) if f.status == ShardStatus::Cancelled && turn.is_ahead() => {
                (status, cause) = no_turn(cx, "was booting");
            }
            Err(f) => (status, cause) = (f.status, Some(f.cause)),
        }
        own = Some(main);
    }
    let turn_waited = turn.is_ahead();
    if status == ShardStatus::Passed
        && let Err(NoTurn) = turn.take(cx).await
    {
        (status, cause) = no_turn(cx, "waited for a turn");
    }
    if status == ShardStatus::Passed
        && let Some(main) = own.as_mut()
        && matches!(main.state(), LifeState::Exited)
    {
        let how = main.exit().map_or_else(|| "exited".to_owned(), |s| supervise::describe(&s));
        let waited =
            if turn_waited { ", while its shard waited for a turn (booted ahead)" } else { "" };
        (status, cause) = (
            ShardStatus::BootFailed,
            Some(format!("Harper {how} after it was ready{waited}, before the commands started")),
        );
    }
    if status == ShardStatus::Passed {
        let env = shard_env(cx, shard, own.as_ref(), &work.files);
        if let Some(main) = own.take() {
            registry.insert(main);
        }
        (status, cause) = with_control(cx, shard, &registry, &token, env, &work.commands).await;
    }
    // Every path goes through teardown: it removes ROOTPATH, which a first start that never
    // became ready may have poisoned (docs/harper.md), and it is the only way a lease is
    // released. After an infrastructure failure (a keeper the tool had to replace, among
    // others) the record stays, so that the next owner of the address sweeps the token once more.
    let suspect = status == ShardStatus::Infrastructure;
    let mut instances = registry.drain();
    instances.extend(own);
    let used: Vec<Ipv4Addr> = instances.iter().map(|i| i.addr).collect();
    if instances.is_empty() {
        return (status, cause, used);
    }
    cx.emit.emit(EventKind::TeardownStarted { shard: cx.id, attempt: cx.attempt });
    let (main, extra): (Vec<Instance>, Vec<Instance>) =
        instances.into_iter().partition(|i| i.id == MAIN);
    // The on-demand ones first, side by side; the shard's own last.
    let mut problems: Vec<String> = futures_util::future::join_all(extra.into_iter().map(|i| {
        let id = i.id.clone();
        async move { i.teardown(cx, suspect).await.map(|p| format!("instance `{id}`: {p}")) }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    for main in main {
        problems.extend(main.teardown(cx, suspect).await);
    }
    if !problems.is_empty() {
        let problem = problems.join("; ");
        if status == ShardStatus::Passed || status == ShardStatus::Failed {
            status = ShardStatus::Infrastructure;
        }
        cause = Some(match cause {
            Some(c) => format!("{c}; and teardown: {problem}"),
            None => format!("teardown: {problem}"),
        });
    }
    (status, cause, used)
}

/// The status of a shard whose instance booted ahead but whose turn never came, whatever the
/// instance was doing (`doing`): skipped when an earlier shard failed under `fail_fast`,
/// cancelled otherwise. Its commands never started, as those of a shard that had no turn.
fn no_turn(cx: &Context, doing: &str) -> (ShardStatus, Option<String>) {
    let (status, why) = match *cx.cancel.borrow() {
        Some(Cancel::FailFast) => (ShardStatus::Skipped, "an earlier shard failed (fail_fast)"),
        _ => (ShardStatus::Cancelled, "the run was cancelled"),
    };
    (status, Some(format!("not started: {why} while its instance, booted ahead, {doing}")))
}

/// Runs the commands with the shard's control socket served beside them; when they end, the
/// socket takes no new request and the ones under way finish. Past the shard's deadline those are
/// cancelled as a signal cancels them (a boot in flight stops waiting for Harper): the commands
/// that asked are gone, and the shard must not outlive its timeout by a startup cap.
async fn with_control(
    cx: &Context,
    shard: &Shard,
    registry: &Registry,
    token: &str,
    mut env: BTreeMap<String, String>,
    commands: &[String],
) -> (ShardStatus, Option<String>) {
    let control = match Control::open(&cx.work.path) {
        Ok(control) => control,
        Err(e) => return (ShardStatus::Infrastructure, Some(format!("the control socket: {e:#}"))),
    };
    env.insert(CONTROL_VAR.to_owned(), control.socket.display().to_string());
    let deadline = tokio::time::Instant::now() + shard.timeout;
    let (ending, ended) = watch::channel(false);
    let (served, cut) = cx.cut_at(deadline, ended.clone());
    let run = async {
        let result = run_commands(cx, shard, commands, &env, token, deadline).await;
        let _ = ending.send(true);
        result
    };
    let serve = async {
        tokio::select! {
            () = control.serve(&served, shard, registry, token, ended) => {}
            () = cut => {}
        }
    };
    let (result, ()) = tokio::join!(run, serve);
    result
}

/// The variables of the README's "What a shard command sees".
/// Without an instance of its own (`harper.boot: false`), the shard's commands get no
/// instance variables: theirs come from the control socket.
fn shard_env(
    cx: &Context,
    shard: &Shard,
    own: Option<&Instance>,
    files: &[PathBuf],
) -> BTreeMap<String, String> {
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
        if let Some(url) = i.https_url() {
            env.insert("HARPER_HTTPS_URL".to_owned(), url);
        }
    }
    let vars = [
        ("HARPER_SHARD_NAME", shard.name.clone()),
        ("HARPER_SHARD_INDEX", shard.index.to_string()),
        ("HARPER_SHARD_TOTAL", cx.total.to_string()),
        (
            "HARPER_SHARD_FILES",
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" "),
        ),
        ("HARPER_SHARD_JUNIT_DIR", cx.dir.junit().display().to_string()),
    ];
    for (k, v) in vars {
        env.insert(k.to_owned(), v);
    }
    env
}

async fn run_commands(
    cx: &Context,
    shard: &Shard,
    commands: &[String],
    env: &BTreeMap<String, String>,
    token: &str,
    deadline: tokio::time::Instant,
) -> (ShardStatus, Option<String>) {
    // Emptied first: XML left by an earlier run in the same report directory is not this run's.
    let junit = cx.dir.junit();
    let _ = std::fs::remove_dir_all(&junit);
    if let Err(e) = std::fs::create_dir_all(&junit) {
        return (
            ShardStatus::Infrastructure,
            Some(format!("cannot create {}: {e}", junit.display())),
        );
    }
    for (i, command) in commands.iter().enumerate() {
        let log = cx.dir.command_log(i);
        cx.emit.emit(EventKind::CommandStarted {
            shard: cx.id,
            attempt: cx.attempt,
            command: i,
            log: log.clone(),
        });
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
                Watched {
                    outcome: Outcome::Failed { status: why.clone() },
                    tail: Vec::new(),
                    broken: Some(why),
                }
            }
        };
        let Watched { outcome, tail, broken } = watched;
        let result = match (&outcome, broken) {
            // The keeper could not start, died, or had to be replaced: the tool's failure, not
            // the test's.
            (_, Some(why)) => Some((ShardStatus::Infrastructure, format!("`{command}`: {why}"))),
            (Outcome::Passed, None) => None,
            (Outcome::Failed { status }, None) => {
                Some((ShardStatus::Failed, format!("`{command}` failed: {status}")))
            }
            (Outcome::TimedOut { after }, None) => Some((
                ShardStatus::Failed,
                format!(
                    "`{command}` timed out after {} (shard timeout)",
                    humantime::format_duration(*after)
                ),
            )),
            (Outcome::Cancelled, None) => {
                Some((ShardStatus::Cancelled, format!("`{command}` was cancelled")))
            }
        };
        cx.emit.emit(EventKind::CommandFinished {
            shard: cx.id,
            attempt: cx.attempt,
            command: i,
            outcome,
            tail,
        });
        if let Some((status, cause)) = result {
            return (status, Some(cause));
        }
    }
    (ShardStatus::Passed, None)
}

/// How a command ended, its last lines, and what went wrong with its supervision, if anything.
struct Watched {
    outcome: Outcome,
    tail: Vec<String>,
    broken: Option<String>,
}

async fn watch_command(
    cx: &Context,
    i: usize,
    mut child: Child,
    deadline: tokio::time::Instant,
    shard: &Shard,
) -> Watched {
    let mut tail = Tail::new(COMMAND_TAIL);
    let mut output_open = true;
    let relay = |tail: &mut Tail, chunk: supervise::Chunk| {
        tail.feed(&chunk.bytes);
        cx.emit.emit(EventKind::CommandOutput {
            shard: cx.id,
            attempt: cx.attempt,
            command: i,
            stream: chunk.stream,
            bytes: chunk.bytes,
        });
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
            () = cx.cancelled() => break Outcome::Cancelled,
            _ = tokio::time::sleep_until(deadline) => {
                // The tool itself may have been stopped (SIGSTOP, a frozen machine) while the
                // command went on and finished: what is already waiting decides, not the clock.
                let LateArrivals { chunks, exited } = child.settle().await;
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
    if let Err(e) = cx.stop(&mut child, shard.harper.teardown.grace).await {
        broken = Some(format!("{e:#}"));
    }
    // Taken as it comes until both pipes close: a drain reads on only as what it sent is taken.
    let rest = async {
        while let Some(chunk) = child.output.recv().await {
            relay(&mut tail, chunk);
        }
        child.process.flushed().await;
    };
    let _ = tokio::time::timeout(cx.within(FLUSH_LIMIT), rest).await;
    cx.warn_unlogged(&mut child.process, |_| cx.dir.command_log(i));
    Watched { outcome, tail: tail.lines(), broken }
}

/// A command's exit as an outcome; a keeper that vanished instead is noted in `broken`.
fn ended(
    status: std::io::Result<std::process::ExitStatus>,
    broken: &mut Option<String>,
) -> Outcome {
    match status {
        Ok(s) if s.success() => Outcome::Passed,
        Ok(s) => Outcome::Failed { status: supervise::describe(&s) },
        Err(e) => {
            *broken = Some(e.to_string());
            Outcome::Failed { status: e.to_string() }
        }
    }
}
