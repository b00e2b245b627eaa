//! The life of one shard: wait for an address, boot Harper on it, run the commands, tear
//! everything down, and say how it went. Every step emits events; teardown runs whatever
//! happened before it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::events::{EventKind, Outcome, ShardId, ShardStatus};
use super::{Cancel, Emitter, budget};
use crate::harper::instance::{self, Dirs, WorkDir};
use crate::harper::{install, template};
use crate::plan::Shard;
use crate::pool::{self, Lease, Notice, Pool, probe};
use crate::supervise::readiness::{self, Tail};
use crate::supervise::{self, Child, Settled, Spec};

/// After a stop, how long the last output may take to reach the logs. Only a process that
/// escaped the keeper (possible where there is no subreaper) can hold the pipes open longer;
/// the shard must not hang on it.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Lines of a failed command's output kept for the report.
pub const COMMAND_TAIL: usize = 200;

/// The folder in a shard's log directory where its commands may leave JUnit XML
/// (`HARPER_SHARD_JUNIT_DIR`); the report reads per-file timings from it.
pub const JUNIT_DIR: &str = "junit";

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

pub use crate::plan::dir_name;

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
    let mut lease = match acquire(cx, shard, &token).await {
        Ok(lease) => lease,
        Err(e) if cx.cancel.borrow().is_some() => return (ShardStatus::Cancelled, Some(format!("{e:#}"))),
        Err(e) => return (ShardStatus::Infrastructure, Some(format!("{e:#}"))),
    };
    let addr = lease.addr;
    cx.emit.emit(EventKind::AddressAcquired { shard: cx.id, addr });

    // Named and recorded before they exist: whenever this run dies from here on, the next
    // owner of the address removes them.
    let dirs = Dirs::under(&cx.work.path, addr);
    let made = lease.record_dir(&dirs.base).and_then(|()| dirs.create());
    if let Err(e) = made {
        let mut cause = format!("{e:#}");
        if let Some(problem) = teardown(cx, shard, None, &dirs, lease, true).await {
            cause = format!("{cause}; and teardown: {problem}");
        }
        return (ShardStatus::Infrastructure, Some(cause));
    }
    let password = shard.harper.admin.password.clone().unwrap_or_else(instance::random_password);

    let (mut status, mut cause) = (ShardStatus::Passed, None);
    let mut harper = None;
    // Held until the shard ends: no other live instance may have these JWT keys.
    let mut _keys = None;
    let mut template = None;
    if shard.harper.template {
        match from_template(cx, shard, &mut lease, &dirs, &token).await {
            Ok((t, keys)) => (template, _keys) = (Some(t), Some(keys)),
            Err((st, why)) => (status, cause) = (st, Some(why)),
        }
    }
    let fixtures = match status {
        ShardStatus::Passed => dirs.install_fixtures(&shard.harper.fixtures),
        _ => Ok(()),
    };
    if let Err(e) = fixtures {
        (status, cause) = (ShardStatus::Infrastructure, Some(format!("{e:#}")));
    } else if status == ShardStatus::Passed {
        match boot(cx, shard, &dirs, addr, &password, &token, Boot::Instance).await {
            Ok(child) => harper = Some(child),
            Err((child, st, why)) => {
                (status, cause) = (st, Some(why));
                harper = child;
            }
        }
        if let (Some(t), Some(_)) = (&template, &harper)
            && status == ShardStatus::Passed
            && let Err(e) = template::set_password(addr, shard.harper.ports.operations, &t.meta, &password).await
        {
            (status, cause) = (ShardStatus::BootFailed, Some(format!("{e:#}")));
        }
    }
    if let Some(child) = &harper {
        // Recorded beside the slot's lock, so that if this run dies the next owner can end them.
        let pids: Vec<u32> = [Some(child.process.pid()), child.process.keeper_pid()].into_iter().flatten().collect();
        if let Err(e) = lease.record_pids(&pids) {
            tracing::warn!("{e:#}");
        }
    }
    if status == ShardStatus::Passed {
        (status, cause) = commands(cx, shard, &dirs, addr, &password, &token).await;
    }
    // Every path goes through teardown: it removes ROOTPATH, which a first start that never
    // became ready may have poisoned (docs/harper.md), and it is the only way the lease is released.
    // After an infrastructure failure (a keeper the tool had to replace, among others) the
    // record stays, so that the next owner of the address sweeps the token once more.
    let suspect = status == ShardStatus::Infrastructure;
    if let Some(problem) = teardown(cx, shard, harper.as_mut(), &dirs, lease, suspect).await {
        if status == ShardStatus::Passed || status == ShardStatus::Failed {
            status = ShardStatus::Infrastructure;
        }
        cause = Some(match cause {
            Some(c) => format!("{c}; and teardown: {problem}"),
            None => format!("teardown: {problem}"),
        });
    }
    (status, cause)
}

/// Under a signal, when every wait of this shard must be over ([`budget`]).
fn deadline(cx: &Context) -> Option<tokio::time::Instant> {
    cx.cancel.borrow().and_then(Cancel::teardown_deadline).map(tokio::time::Instant::from_std)
}

/// `limit`, or less under a signal: what is left until the deadline.
fn within(cx: &Context, limit: Duration) -> Duration {
    match deadline(cx) {
        Some(end) => limit.min(end.saturating_duration_since(tokio::time::Instant::now())),
        None => limit,
    }
}

/// The grace for a stop now: the plan's, or under a signal at most [`budget::GRACE`] and what
/// the deadline leaves.
fn grace(cx: &Context, shard: &Shard) -> Duration {
    let grace = shard.harper.teardown.grace;
    if deadline(cx).is_some() { within(cx, grace.min(budget::GRACE)) } else { grace }
}

/// Stops a child within the budget — also when the signal comes while the stop already runs
/// with the plan's grace. The error says what went wrong (a keeper that died, or that had to
/// be replaced).
async fn stop(cx: &Context, shard: &Shard, child: &mut Child) -> anyhow::Result<supervise::Stopped> {
    let mut cancel = cx.cancel.clone();
    let hurry = async move {
        let end = cancel.wait_for(|c| c.and_then(Cancel::teardown_deadline).is_some()).await.ok().and_then(|c| c.and_then(Cancel::teardown_deadline));
        match end {
            Some(end) => tokio::time::Instant::from_std(end),
            // The run ended without a signal: no hurry, ever.
            None => std::future::pending().await,
        }
    };
    child.process.stop_within(grace(cx, shard), hurry).await
}

async fn acquire(cx: &Context, shard: &Shard, token: &str) -> anyhow::Result<Lease> {
    let pool = cx.pool.clone();
    let (token, name) = (token.to_owned(), shard.name.clone());
    let ports = shard.harper.ports.all();
    let emit = cx.emit.clone();
    let id = cx.id;
    let cancel = cx.cancel.clone();
    tokio::task::spawn_blocking(move || {
        let notify = |notice: Notice| {
            let message = notice.to_string();
            emit.emit(EventKind::Warning { shard: Some(id), message });
        };
        let claim = pool::Claim { token: &token, shard: &name };
        pool.acquire(claim, &ports, &|| cancel.borrow().is_some(), &notify)
    })
    .await?
}

type BootFailure = (Option<Child>, ShardStatus, String);

/// What a boot is for: the shard's instance, or the build of the template it boots from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Boot {
    Instance,
    Template,
}

async fn boot(cx: &Context, shard: &Shard, dirs: &Dirs, addr: Ipv4Addr, password: &str, token: &str, what: Boot) -> Result<Child, BootFailure> {
    let launch = instance::launch(&shard.harper, &cx.entry, dirs, addr, password);
    let spawned = Instant::now();
    let logs = cx.log_dir.join(if what == Boot::Instance { "harper" } else { "template" });
    let spec = Spec {
        program: launch.program,
        args: launch.args,
        env: launch.env,
        cwd: dirs.home.clone(),
        stdout_log: logs.join("stdout.log"),
        stderr_log: Some(logs.join("stderr.log")),
        grace: shard.harper.teardown.grace,
        token: token.to_owned(),
    };
    let mut child = Child::spawn(spec).await.map_err(|e| (None, ShardStatus::BootFailed, format!("{e:#}")))?;
    if what == Boot::Instance {
        cx.emit.emit(EventKind::BootStarted { shard: cx.id, pid: child.process.pid(), rootpath: dirs.root.clone() });
    }
    let mut cancel = cx.cancel.clone();
    let h = &shard.harper;
    let outcome = tokio::select! {
        r = readiness::wait_ready(&mut child, &h.ready, &h.startup, addr, &h.ports, spawned) => Some(r),
        _ = cancel.wait_for(Option::is_some) => None,
    };
    // From here on the output only goes to the logs.
    child.output.close();
    match outcome {
        Some(Ok(())) => {
            if what == Boot::Instance {
                cx.emit.emit(EventKind::BootReady { shard: cx.id });
            }
            Ok(child)
        }
        Some(Err(e)) => {
            let cause = match what {
                Boot::Instance => e.cause(),
                Boot::Template => format!("building the boot template: {}", e.cause()),
            };
            cx.emit.emit(EventKind::BootFailed { shard: cx.id, cause: cause.clone(), tail: e.tail().to_vec() });
            Err((Some(child), ShardStatus::BootFailed, cause))
        }
        None => Err((Some(child), ShardStatus::Cancelled, "cancelled while Harper was starting".into())),
    }
}

/// Fills the instance's directories from the template, building the template first when the
/// cache has none: on this shard's address, under the template's lock, started until ready,
/// stopped, its ports seen free, kept. Returns the template and the instance's JWT keys.
async fn from_template(
    cx: &Context,
    shard: &Shard,
    lease: &mut Lease,
    dirs: &Dirs,
    token: &str,
) -> Result<(template::Template, template::KeySet), (ShardStatus, String)> {
    let infra = |e: anyhow::Error| (ShardStatus::Infrastructure, format!("{e:#}"));
    let cache = install::cache_dir().map_err(infra)?;
    let key = template::key(&shard.harper, &cx.entry);
    let keys = template::take_keys(&cache, shard.harper.runtime).await.map_err(infra)?;
    let found = match template::cached(&cache, &key) {
        Some(found) => found,
        None => {
            let mut cancel = cx.cancel.clone();
            let _building = tokio::select! {
                lock = template::lock(&cache, &key) => lock.map_err(infra)?,
                _ = cancel.wait_for(Option::is_some) => {
                    return Err((ShardStatus::Cancelled, "cancelled while waiting for another run's boot template".into()));
                }
            };
            // Another run may have built it while this one waited.
            match template::cached(&cache, &key) {
                Some(found) => found,
                None => build_template(cx, shard, lease, &cache, &key, token).await?,
            }
        }
    };
    template::instantiate(&found, dirs, &keys).map_err(infra)?;
    Ok((found, keys))
}

async fn build_template(
    cx: &Context,
    shard: &Shard,
    lease: &mut Lease,
    cache: &Path,
    key: &str,
    token: &str,
) -> Result<template::Template, (ShardStatus, String)> {
    let infra = |e: anyhow::Error| (ShardStatus::Infrastructure, format!("{e:#}"));
    let started = Instant::now();
    cx.emit.emit(EventKind::TemplateBuilding { shard: cx.id });
    let addr = lease.addr;
    let build = Dirs::under(&cx.work.path, addr);
    lease.record_dir(&build.base).and_then(|()| build.create()).map_err(infra)?;
    let password = instance::random_password();
    let booted = boot(cx, shard, &build, addr, &password, token, Boot::Template).await;
    let (mut child, failure) = match booted {
        Ok(child) => (Some(child), None),
        Err((child, status, why)) => (child, Some((status, why))),
    };
    // Never copied while it runs: stopped (SIGTERM), its ports free, then kept.
    if let Some(child) = &mut child
        && let Err(e) = stop(cx, shard, child).await
        && failure.is_none()
    {
        let _ = build.remove();
        return Err(infra(e));
    }
    let kept = match failure {
        Some(failure) => Err(failure),
        None => {
            let ports = shard.harper.ports.all();
            let limit = within(cx, shard.harper.teardown.port_release);
            let busy = tokio::task::spawn_blocking(move || probe::wait_free(addr, &ports, limit)).await.unwrap_or_default();
            if let Some((name, port, why)) = busy.first() {
                Err((ShardStatus::Infrastructure, format!("port {port} ({name}) on {addr} is still {why} after the template's build")))
            } else {
                let meta = template::Meta {
                    root: build.root.display().to_string(),
                    home: build.home.display().to_string(),
                    username: shard.harper.admin.username.clone(),
                    password,
                    entry: cx.entry.display().to_string(),
                };
                template::store(cache, key, &build, &meta).map_err(infra)
            }
        }
    };
    if let Err(e) = build.remove() {
        tracing::debug!("{e:#}");
    }
    if kept.is_ok() {
        cx.emit.emit(EventKind::TemplateBuilt { shard: cx.id, took: started.elapsed() });
    }
    kept
}

/// The variables of the README's "What a shard command sees".
fn shard_env(cx: &Context, shard: &Shard, dirs: &Dirs, addr: Ipv4Addr, password: &str) -> BTreeMap<String, String> {
    let p = &shard.harper.ports;
    let mut env = shard.env.clone();
    let vars = [
        ("HARPER_HOSTNAME", addr.to_string()),
        ("HARPER_OPERATIONS_API_URL", format!("http://{addr}:{}", p.operations)),
        ("HARPER_HTTP_URL", format!("http://{addr}:{}", p.http)),
        ("HARPER_MQTT_URL", format!("mqtt://{addr}:{}", p.mqtt)),
        ("HARPER_ADMIN_USERNAME", shard.harper.admin.username.clone()),
        ("HARPER_ADMIN_PASSWORD", password.to_owned()),
        ("HARPER_ROOTPATH", dirs.root.display().to_string()),
        ("HARPER_LOG_DIR", dirs.root.join("log").display().to_string()),
        ("HARPER_SHARD_NAME", shard.name.clone()),
        ("HARPER_SHARD_INDEX", shard.index.to_string()),
        ("HARPER_SHARD_TOTAL", cx.total.to_string()),
        ("HARPER_SHARD_FILES", shard.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" ")),
        ("HARPER_SHARD_JUNIT_DIR", junit_dir(cx).display().to_string()),
    ];
    for (k, v) in vars {
        env.insert(k.to_owned(), v);
    }
    env
}

/// Where command `i` (0-based) of a shard writes its output, stdout and stderr interleaved.
pub fn command_log(log_dir: &Path, i: usize) -> PathBuf {
    log_dir.join(format!("command-{}.log", i + 1))
}

/// Absolute: commands run in the plan's directory, the report directory may be relative.
fn junit_dir(cx: &Context) -> PathBuf {
    let dir = cx.log_dir.join(JUNIT_DIR);
    std::path::absolute(&dir).unwrap_or(dir)
}

async fn commands(cx: &Context, shard: &Shard, dirs: &Dirs, addr: Ipv4Addr, password: &str, token: &str) -> (ShardStatus, Option<String>) {
    let env = shard_env(cx, shard, dirs, addr, password);
    // Emptied first: XML left by an earlier run in the same report directory is not this run's.
    let junit = junit_dir(cx);
    let _ = std::fs::remove_dir_all(&junit);
    if let Err(e) = std::fs::create_dir_all(&junit) {
        return (ShardStatus::Infrastructure, Some(format!("cannot create {}: {e}", junit.display())));
    }
    let deadline = tokio::time::Instant::now() + shard.timeout;
    for (i, command) in shard.commands.iter().enumerate() {
        cx.emit.emit(EventKind::CommandStarted { shard: cx.id, command: i });
        let spec = Spec {
            program: "sh".into(),
            args: vec!["-c".into(), command.into()],
            env: env.clone(),
            cwd: cx.plan_dir.clone(),
            stdout_log: command_log(&cx.log_dir, i),
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
    if let Err(e) = stop(cx, shard, &mut child).await {
        broken = Some(format!("{e:#}"));
    }
    // Taken as it comes until both pipes close: a drain reads on only as what it sent is taken.
    let rest = async {
        while let Some(chunk) = child.output.recv().await {
            relay(&mut tail, chunk);
        }
    };
    let _ = tokio::time::timeout(within(cx, FLUSH_LIMIT), rest).await;
    Watched { outcome, tail: tail.lines(), broken }
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

/// Stops Harper, keeps its logs, checks that every port is free, removes its directories and
/// gives the address back. Returns what went wrong, if anything.
async fn teardown(cx: &Context, shard: &Shard, harper: Option<&mut Child>, dirs: &Dirs, lease: Lease, suspect: bool) -> Option<String> {
    cx.emit.emit(EventKind::TeardownStarted { shard: cx.id });
    let mut problems = Vec::new();
    if let Some(child) = harper {
        if let Err(e) = stop(cx, shard, child).await {
            problems.push(format!("{e:#}"));
        }
        let _ = tokio::time::timeout(within(cx, FLUSH_LIMIT), child.process.flushed()).await;
    }
    keep_log(&dirs.root.join("log").join("hdb.log"), &cx.log_dir.join("harper").join("hdb.log"));
    let addr = lease.addr;
    let ports = shard.harper.ports.all();
    let limit = within(cx, shard.harper.teardown.port_release);
    let busy = tokio::task::spawn_blocking(move || probe::wait_free(addr, &ports, limit)).await.unwrap_or_default();
    for (name, port, why) in &busy {
        let who = crate::pool::holder::holders(addr, *port);
        let who = who.first().map(|h| format!(" by {h}")).unwrap_or_default();
        problems.push(format!(
            "port {port} ({name}) on {addr} is still {why}{who} {}s after Harper stopped",
            limit.as_secs_f32()
        ));
    }
    if let Err(e) = dirs.remove() {
        problems.push(format!("{e:#}"));
    }
    // A clean teardown deletes the slot's record; one that found problems keeps it, so that the
    // next owner of the address sweeps what carries this shard's token. Either way the lock
    // goes: the pool's canary keeps skipping the address for as long as a port is busy.
    if problems.is_empty() && !suspect {
        lease.release();
    } else {
        lease.release_for_sweep();
    }
    tracing::debug!("{addr} released");
    let problem = (!problems.is_empty()).then(|| problems.join("; "));
    cx.emit.emit(EventKind::TeardownDone { shard: cx.id, problem: problem.clone() });
    problem
}

fn keep_log(from: &Path, to: &Path) {
    if from.is_file() {
        if let Some(dir) = to.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = supervise::output::copy_fresh(from, to) {
            tracing::warn!("cannot keep {}: {e:#}", from.display());
        }
    }
}
