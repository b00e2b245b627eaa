//! The shard's control socket (docs/control.md): a unix socket in a 0700 directory of the run,
//! line-delimited JSON, through which the shard's commands stop, start, restart and kill the
//! shard's instance and start instances of their own. Every request acts on an [`Instance`],
//! so every path keeps the guarantees of the shard's own boot and teardown.
//!
//! Not here: what an instance does (`instance`), when the shard ends them (`shard`). Stands on
//! `instance` and `context`; `shard` stands on it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use nix::fcntl::{Flock, FlockArg};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Semaphore, watch};

use super::context::{Context, MAIN};
use super::events::ShardStatus;
use super::instance::{Harper, Instance, InstanceFailure, LifeState};
use crate::plan::Shard;

/// The variable that tells a shard's commands where their control socket is.
pub const CONTROL_VAR: &str = "HARPER_SHARD_CONTROL";

/// The longest request line taken.
pub const MAX_LINE: usize = 64 * 1024;

/// The keys a `start` of a stopped instance may carry: the Harper it boots next. `runtime` is
/// among them to be refused with its reason, not as an unknown field.
const SWITCH_KEYS: [&str; 3] = ["package", "bin", "runtime"];

/// The instances of one shard, by id: the shard's own (`main`) and those started on request.
pub struct Registry {
    instances: std::sync::Mutex<BTreeMap<String, Arc<Mutex<Instance>>>>,
    next: AtomicU32,
    limit: Arc<Semaphore>,
}

impl Registry {
    pub fn new(limit: u32) -> Registry {
        Registry {
            instances: Default::default(),
            next: AtomicU32::new(1),
            limit: Arc::new(Semaphore::new(limit as usize)),
        }
    }

    pub fn insert(&self, instance: Instance) {
        let id = instance.id.clone();
        self.map().insert(id, Arc::new(Mutex::new(instance)));
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Mutex<Instance>>>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, id: &str) -> Option<Arc<Mutex<Instance>>> {
        self.map().get(id).cloned()
    }

    fn remove(&self, id: &str) -> Option<Arc<Mutex<Instance>>> {
        self.map().remove(id)
    }

    /// Every instance, taken out: for the shard's teardown, once nothing serves requests (so
    /// no request holds one any more).
    pub fn drain(&self) -> Vec<Instance> {
        let all = std::mem::take(&mut *self.map());
        all.into_values().filter_map(|i| Arc::try_unwrap(i).ok()).map(Mutex::into_inner).collect()
    }
}

/// The socket, its directory (removed when this goes) and the lock that says the directory is
/// in use.
pub struct Control {
    pub socket: PathBuf,
    dir: PathBuf,
    listener: UnixListener,
    _lock: Flock<File>,
}

const DIR_PREFIX: &str = "ctl-";

impl Control {
    /// Makes `<work>/ctl-<tag>/` (0700) with the socket `s` in it. Directories of earlier runs
    /// that died without removing theirs (their lock is free) are removed first.
    pub fn open(work: &Path) -> anyhow::Result<Control> {
        sweep(work);
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = work.join(format!("{DIR_PREFIX}{tag}"));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
        // Locked before it takes its name: another shard's sweep that finds `lock` finds it held.
        let pending = dir.join("lock.new");
        let lock = File::create(&pending)
            .with_context(|| format!("cannot create a lock in {}", dir.display()))?;
        let lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", dir.display()))?;
        std::fs::rename(&pending, dir.join("lock"))
            .with_context(|| format!("cannot name the lock in {}", dir.display()))?;
        let socket = dir.join("s");
        let listener = UnixListener::bind(&socket)
            .with_context(|| format!("cannot listen on {}", socket.display()));
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        Ok(Control { socket, dir, listener, _lock: lock })
    }

    /// Serves requests until `ending` turns true; then takes no new request, lets the ones under
    /// way finish, and returns.
    pub async fn serve(
        &self,
        cx: &Context,
        shard: &Shard,
        registry: &Registry,
        token: &str,
        mut ending: watch::Receiver<bool>,
    ) {
        let server = Server { cx, shard, registry, token, socket: &self.socket };
        let mut connections = FuturesUnordered::new();
        let told = ending.clone();
        let mut pause = false;
        loop {
            if std::mem::take(&mut pause) {
                // Out of descriptors, most likely: a pause, not a spin, while connections end.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => connections.push(server.connection(stream, told.clone())),
                    Err(e) => {
                        tracing::debug!("control socket: {e}");
                        pause = true;
                    }
                },
                Some(()) = connections.next(), if !connections.is_empty() => {}
                _ = ending.wait_for(|e| *e) => break,
            }
        }
        while connections.next().await.is_some() {}
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes control directories whose lock nobody holds: left by a run that was killed.
fn sweep(work: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_ours = name.to_str().is_some_and(|n| {
            n.strip_prefix(DIR_PREFIX)
                .is_some_and(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        if !is_ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(lock) = File::open(entry.path().join("lock")) else { continue };
        if let Ok(held) = Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
            let _ = std::fs::remove_dir_all(entry.path());
            drop(held);
        }
    }
}

struct Server<'a> {
    cx: &'a Context,
    shard: &'a Shard,
    registry: &'a Registry,
    token: &'a str,
    socket: &'a Path,
}

/// An error answer.
fn error(code: &str, message: impl Into<String>) -> Value {
    json!({ "ok": false, "code": code, "error": message.into() })
}

fn failure(f: &InstanceFailure, code: &str) -> Value {
    let code = if f.status == ShardStatus::BootFailed { "boot_failed" } else { code };
    json!({ "ok": false, "code": code, "error": f.cause, "tail": f.tail })
}

/// The answer when the Harper a request names could not be installed: cancelled, or npm failed.
fn install_failure(f: &InstanceFailure) -> Value {
    failure(f, if f.status == ShardStatus::Cancelled { "failed" } else { "install_failed" })
}

enum Line {
    Request(Vec<u8>),
    TooLong,
    End,
}

async fn read_line(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> Line {
    let mut line = Vec::new();
    match reader.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => Line::End,
        Ok(_) if line.last() == Some(&b'\n') => {
            line.pop();
            Line::Request(line)
        }
        Ok(_) if line.len() > MAX_LINE => Line::TooLong,
        // The peer closed in the middle of a line: not a request.
        Ok(_) => Line::End,
    }
}

impl Server<'_> {
    async fn connection(&self, stream: UnixStream, mut ending: watch::Receiver<bool>) {
        let refused = self.refusal(&stream);
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        if let Some(why) = refused {
            // Its request is read (for a moment) and not acted on, so that the client, which
            // writes before it reads, gets the refusal rather than a broken pipe.
            let _ = tokio::time::timeout(Duration::from_secs(1), read_line(&mut reader)).await;
            let _ = write.write_all(format!("{}\n", error("refused", why)).as_bytes()).await;
            return;
        }
        loop {
            let line = tokio::select! {
                line = read_line(&mut reader) => line,
                _ = ending.wait_for(|e| *e) => return,
            };
            let (answer, created) = match line {
                Line::End => return,
                Line::TooLong => {
                    let answer = error(
                        "too_large",
                        format!("a request line is at most {} KiB", MAX_LINE / 1024),
                    );
                    let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
                    return;
                }
                Line::Request(bytes) => self.answer(&bytes).await,
            };
            if write.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
                // Nobody knows this instance's id: it goes at once.
                if let Some(id) = created {
                    self.release(&id).await;
                }
                return;
            }
        }
    }

    /// Why the peer may not use this socket, if it may not: it must be one of this shard's
    /// processes, told where the socket is.
    fn refusal(&self, stream: &UnixStream) -> Option<String> {
        let pid = match stream.peer_cred().ok().and_then(|c| c.pid()) {
            Some(pid) if pid > 0 => pid as u32,
            _ => return Some("the peer's process cannot be identified".into()),
        };
        let told = crate::process::environ_value(pid, CONTROL_VAR)
            .is_some_and(|v| v == self.socket.as_os_str().as_encoded_bytes());
        if told && crate::process::carries_token(pid, self.token) {
            None
        } else {
            Some(format!(
                "pid {pid} is not a process of shard `{}`: only its commands may use its control socket",
                self.shard.name
            ))
        }
    }

    /// The answer to one request line, and the id of an instance it created.
    async fn answer(&self, bytes: &[u8]) -> (Value, Option<String>) {
        let request: serde_json::Map<String, Value> = match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return (error("bad_request", "a request is a JSON object with an `op`"), None);
            }
            Err(e) => return (error("bad_request", format!("not JSON: {e}")), None),
        };
        let op = match request.get("op") {
            Some(Value::String(op)) => op.clone(),
            _ => {
                return (
                    error(
                        "unknown_op",
                        "a request needs `op`: status, start, stop, restart, kill or release",
                    ),
                    None,
                );
            }
        };
        let id = match request.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => return (error("bad_request", "`id` is a string"), None),
        };
        let grace = match request.get("grace_ms") {
            None | Some(Value::Null) => None,
            Some(v) => match v
                .as_u64()
                .filter(|ms| *ms <= crate::plan::limits::MAX_TEARDOWN.as_millis() as u64)
            {
                Some(ms) => Some(Duration::from_millis(ms)),
                None => {
                    let max = crate::plan::limits::MAX_TEARDOWN.as_millis();
                    return (
                        error(
                            "bad_request",
                            format!("`grace_ms` is a whole number of milliseconds up to {max}"),
                        ),
                        None,
                    );
                }
            },
        };
        match op.as_str() {
            "status" if id.is_none() => (self.status_all().await, None),
            "start" if id.is_none() => self.start_new(request).await,
            "status" | "start" | "stop" | "restart" | "kill" | "release" => {
                // A stopped instance may be started on another Harper: `start`'s own keys.
                let harper_keys: &[&str] = if op == "start" { &SWITCH_KEYS } else { &[] };
                let fields = |k: &&String| !["op", "id", "grace_ms"].contains(&k.as_str());
                let extra: Vec<&String> = request
                    .keys()
                    .filter(fields)
                    .filter(|k| !harper_keys.contains(&k.as_str()))
                    .collect();
                if let Some(key) = extra.first() {
                    let also = if op == "start" {
                        " (only `package` or `bin` may come with it)"
                    } else {
                        ""
                    };
                    return (
                        error(
                            "bad_request",
                            format!(
                                "`{}` is not a field of `{op}` with an `id`{also}",
                                excerpt(key)
                            ),
                        ),
                        None,
                    );
                }
                let switch: serde_json::Map<String, Value> = request
                    .into_iter()
                    .filter(|(k, _)| harper_keys.contains(&k.as_str()))
                    .collect();
                let switch = (!switch.is_empty()).then_some(switch);
                (self.on(&op, id.as_deref().unwrap_or(MAIN), grace, switch).await, None)
            }
            other => (
                error(
                    "unknown_op",
                    format!(
                        "unknown op `{}`: use status, start, stop, restart, kill or release",
                        excerpt(other)
                    ),
                ),
                None,
            ),
        }
    }

    async fn status_all(&self) -> Value {
        let all: Vec<(String, Arc<Mutex<Instance>>)> =
            self.registry.map().iter().map(|(id, i)| (id.clone(), i.clone())).collect();
        let mut list = Vec::new();
        for (id, instance) in all {
            // One that is busy (booting, stopping) says so rather than make the answer wait.
            match instance.try_lock() {
                Ok(mut i) => list.push(info(&mut i)),
                Err(_) => list.push(json!({ "id": id, "state": "busy" })),
            }
        }
        json!({ "ok": true, "instances": list })
    }

    /// `switch`: the Harper keys of a `start` ([`SWITCH_KEYS`]), when it names another Harper.
    async fn on(
        &self,
        op: &str,
        id: &str,
        grace: Option<Duration>,
        switch: Option<serde_json::Map<String, Value>>,
    ) -> Value {
        let Some(instance) = self.registry.get(id) else {
            let hint = if id == MAIN { " (the shard has `harper.boot: false`)" } else { "" };
            return error(
                "not_found",
                format!("no instance `{}` in shard `{}`{hint}", excerpt(id), self.shard.name),
            );
        };
        if op == "release" {
            // Only the registry may hold it when the release takes it out.
            drop(instance);
            if id == MAIN {
                return error(
                    "failed",
                    "`main` is the shard's own instance: it lives as long as the shard",
                );
            }
            return self.release(id).await;
        }
        let mut i = instance.lock().await;
        let state = i.state();
        let result = match (op, state) {
            ("status", _) => Ok(()),
            ("start", LifeState::Running) if switch.is_some() => {
                return error(
                    "running",
                    format!("`{id}` is running: stop it first, then start it on another Harper"),
                );
            }
            ("start", LifeState::Running) => {
                return error(
                    "running",
                    format!("`{id}` is running: stop it first, or use restart"),
                );
            }
            ("start", _) => match switch {
                Some(keys) => match self.switch(&mut i, keys).await {
                    Ok(()) => i.start(self.cx).await,
                    Err(answer) => return answer,
                },
                None => i.start(self.cx).await,
            },
            ("stop" | "kill", LifeState::Stopped) => {
                return error("not_running", format!("`{id}` is not running"));
            }
            ("stop" | "kill", LifeState::Exited) => {
                let how = i
                    .exit()
                    .map(|s| format!(" ({})", crate::supervise::describe(&s)))
                    .unwrap_or_default();
                return error(
                    "not_running",
                    format!("`{id}` is not running: Harper exited by itself{how}"),
                );
            }
            ("stop", _) => i.stop(self.cx, grace, false).await,
            ("kill", _) => i.stop(self.cx, None, true).await,
            // Nothing to stop: a life that ended by itself was not ended by this request.
            ("restart", LifeState::Stopped | LifeState::Exited) => i.start(self.cx).await,
            ("restart", _) => match i.stop(self.cx, grace, false).await {
                Ok(()) => i.start(self.cx).await,
                Err(f) => Err(f),
            },
            _ => unreachable!("ops are checked by the caller"),
        };
        match result {
            Ok(()) => json!({ "ok": true, "instance": info(&mut i) }),
            Err(f) => failure(&f, "failed"),
        }
    }

    /// Points a stopped instance at the Harper `keys` name, installing a package first; the error
    /// answer when the keys are refused or the install fails (the instance is then unchanged).
    async fn switch(
        &self,
        i: &mut Instance,
        keys: serde_json::Map<String, Value>,
    ) -> Result<(), Value> {
        let text = Value::Object(keys).to_string();
        let source = crate::plan::resolve::source_request(
            Path::new("control request"),
            &self.cx.plan_dir,
            i.spec.runtime,
            &text,
        )
        .map_err(|e| error("invalid", e.one_line()))?;
        let harper = Harper::obtain(self.cx, &source).await.map_err(|f| install_failure(&f))?;
        i.switch(source, harper);
        Ok(())
    }

    async fn release(&self, id: &str) -> Value {
        let Some(instance) = self.registry.remove(id) else {
            return error("not_found", format!("no instance `{}`", excerpt(id)));
        };
        // Another request may still be using it: it finishes first. Requests hold it only
        // while they run, so this ends; should one not let go, the instance goes back to the
        // registry and the shard's end tears it down.
        let mut shared = instance;
        let mut tries = 0;
        let instance = loop {
            match Arc::try_unwrap(shared) {
                Ok(i) => break i.into_inner(),
                Err(again) if tries < 100 => {
                    tries += 1;
                    drop(again.lock().await);
                    tokio::task::yield_now().await;
                    shared = again;
                }
                Err(again) => {
                    self.registry.map().insert(id.to_owned(), again);
                    return error(
                        "failed",
                        format!(
                            "`{id}` is in use by another request: release it once that is answered"
                        ),
                    );
                }
            }
        };
        match instance.teardown(self.cx, false).await {
            None => json!({ "ok": true, "id": id }),
            Some(problem) => error("failed", problem),
        }
    }

    async fn start_new(
        &self,
        mut request: serde_json::Map<String, Value>,
    ) -> (Value, Option<String>) {
        request.remove("op");
        // A label never fails a start: a long one (a test suite's name) is cut.
        let name = match request.remove("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) if !n.is_empty() => {
                Some(crate::text::prefix_within(&n, crate::plan::limits::NAME_BYTES).to_owned())
            }
            Some(_) => return (error("bad_request", "`name` is a string that is not empty"), None),
        };
        let text = Value::Object(request).to_string();
        let source = Path::new("control request");
        let spec = match crate::plan::resolve::instance_request(
            source,
            &self.cx.plan_dir,
            &self.shard.raw_harper,
            &text,
        ) {
            Ok(spec) => spec,
            Err(e) => return (error("invalid", e.one_line()), None),
        };
        let wait = self.cx.pool.spec().wait;
        let permit = tokio::select! {
            permit = tokio::time::timeout(wait, self.registry.limit.clone().acquire_owned()) => match permit {
                Ok(Ok(permit)) => permit,
                _ => {
                    let limit = self.shard.harper.instances;
                    return (error("limit", format!("{limit} on-demand instance(s) stayed live for {}: release one first, or raise `harper.instances`", humantime::format_duration(wait))), None);
                }
            },
            () = self.cx.cancelled() => return (error("failed", "the run is being cancelled"), None),
        };
        let harper = if spec.source == self.shard.harper.source {
            Harper::shard(self.cx)
        } else {
            match Harper::obtain(self.cx, &spec.source).await {
                Ok(harper) => harper,
                Err(f) => return (install_failure(&f), None),
            }
        };
        let n = self.registry.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("i{n}");
        let name = name.unwrap_or_else(|| id.clone());
        let token = format!("{}/{id}", self.token);
        let mut instance =
            match Instance::acquire(self.cx, spec, harper, (id.clone(), name), token, Some(permit))
                .await
            {
                Ok(i) => i,
                Err(f) => return (failure(&f, "failed"), None),
            };
        let started = match instance.prepare(self.cx).await {
            Ok(()) => instance.start(self.cx).await,
            Err(f) => Err(f),
        };
        if let Err(f) = started {
            let mut answer = failure(&f, "failed");
            if let Some(problem) =
                instance.teardown(self.cx, f.status == ShardStatus::Infrastructure).await
            {
                answer["error"] = json!(format!("{}; and teardown: {problem}", f.cause));
            }
            return (answer, None);
        }
        let answer = json!({ "ok": true, "instance": info(&mut instance) });
        self.registry.insert(instance);
        (answer, Some(id))
    }
}

/// What the control socket says of an instance (docs/control.md, "Answers").
fn info(i: &mut Instance) -> Value {
    let state = match i.state() {
        LifeState::Running => "running",
        LifeState::Stopped => "stopped",
        LifeState::Exited => "exited",
    };
    let (addr, p) = (i.addr, &i.spec.ports);
    let exit = i.exit().map(|s| {
        let signal = s.signal().map(|n| {
            nix::sys::signal::Signal::try_from(n)
                .map_or_else(|_| n.to_string(), |s| s.as_str().to_owned())
        });
        json!({ "code": s.code(), "signal": signal })
    });
    json!({
        "id": i.id,
        "name": i.name,
        "state": state,
        "hostname": addr.to_string(),
        "operations_url": format!("http://{addr}:{}", p.operations),
        "http_url": format!("http://{addr}:{}", p.http),
        "mqtt_url": format!("mqtt://{addr}:{}", p.mqtt),
        "https_url": i.https_url(),
        "tls": i.spec.config.get("tls"),
        "admin": { "username": i.spec.admin.username, "password": i.password },
        "harper": i.spec.source,
        "rootpath": i.dirs.root.display().to_string(),
        "log_dir": i.harper_log_dir().display().to_string(),
        "pid": if state == "running" { i.pid() } else { None },
        "exit": exit,
    })
}

/// A value from a request, cut short and on one line, for an error answer.
fn excerpt(text: &str) -> String {
    let one = crate::text::one_line(text);
    if one.chars().count() > 60 {
        format!("{}…", one.chars().take(60).collect::<String>())
    } else {
        one
    }
}
