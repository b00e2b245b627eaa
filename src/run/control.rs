//! The shard's control socket (docs/control.md): a unix socket in a 0700 directory of the run,
//! line-delimited JSON, through which the shard's commands stop, start, restart and kill the
//! shard's instance and start instances of their own. Every request acts on an [`Instance`],
//! so every path keeps the guarantees of the shard's own boot and teardown.
//!
//! Not here: the wire types (`protocol`), what an instance does (`instance`), when the shard
//! ends them (`shard`). Stands on `protocol`, `instance` and `context`; `shard` stands on it.

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
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Semaphore, watch};

use super::context::{Context, MAIN};
use super::events::ShardStatus;
use super::instance::{Harper, Instance, InstanceFailure, LifeState};
use super::protocol::{
    AdminInfo, Answer, Code, ErrorAnswer, ExitInfo, InstanceInfo, InstanceState, Listed, Request,
    StartOf, excerpt,
};
use crate::plan::Shard;

pub use super::protocol::{CONTROL_VAR, MAX_LINE};

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

fn error(code: Code, message: impl Into<String>) -> Answer {
    Answer::error(code, message)
}

fn failure(f: &InstanceFailure, code: Code) -> Answer {
    let code = if f.status == ShardStatus::BootFailed { Code::BootFailed } else { code };
    Answer::Error(ErrorAnswer {
        ok: Default::default(),
        code,
        error: f.cause.clone(),
        tail: f.tail.clone(),
    })
}

/// The answer when the Harper a request names could not be installed: cancelled, or npm failed.
fn install_failure(f: &InstanceFailure) -> Answer {
    failure(f, if f.status == ShardStatus::Cancelled { Code::Failed } else { Code::InstallFailed })
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
            let _ =
                write.write_all(format!("{}\n", error(Code::Refused, why).line()).as_bytes()).await;
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
                        Code::TooLarge,
                        format!("a request line is at most {} KiB", MAX_LINE / 1024),
                    );
                    let _ = write.write_all(format!("{}\n", answer.line()).as_bytes()).await;
                    return;
                }
                Line::Request(bytes) => self.answer(&bytes).await,
            };
            if write.write_all(format!("{}\n", answer.line()).as_bytes()).await.is_err() {
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
    async fn answer(&self, bytes: &[u8]) -> (Answer, Option<String>) {
        let request = match Request::parse(bytes) {
            Ok(request) => request,
            Err(refused) => return (refused.into(), None),
        };
        let main = || MAIN.to_owned();
        let id = |id: Option<super::protocol::Id>| id.map_or_else(main, |i| i.0);
        let answer = match request {
            Request::Status { id: None } => self.status_all().await,
            Request::Status { id: Some(i) } => self.on(Op::Status, &i.0).await,
            Request::Start(start) => match start.sort() {
                Err(refused) => refused.into(),
                Ok(StartOf::New { name, harper }) => return self.start_new(name, harper).await,
                Ok(StartOf::Existing { id, switch }) => self.on(Op::Start(switch), &id).await,
            },
            Request::Stop { id: i, grace_ms } => {
                self.on(Op::Stop(grace_ms.map(|g| g.0)), &id(i)).await
            }
            Request::Restart { id: i, grace_ms } => {
                self.on(Op::Restart(grace_ms.map(|g| g.0)), &id(i)).await
            }
            Request::Kill { id: i } => self.on(Op::Kill, &id(i)).await,
            Request::Release { id: i } => self.on(Op::Release, &id(i)).await,
            Request::Unknown => error(Code::UnknownOp, format!("use {}", super::protocol::OPS)),
        };
        (answer, None)
    }

    async fn status_all(&self) -> Answer {
        let all: Vec<(String, Arc<Mutex<Instance>>)> =
            self.registry.map().iter().map(|(id, i)| (id.clone(), i.clone())).collect();
        let mut list = Vec::new();
        for (id, instance) in all {
            // One that is busy (booting, stopping) says so rather than make the answer wait.
            match instance.try_lock() {
                Ok(mut i) => list.push(Listed::Info(Box::new(info(&mut i)))),
                Err(_) => list.push(Listed::Busy { id, state: super::protocol::Busy::Busy }),
            }
        }
        Answer::Instances { ok: Default::default(), instances: list }
    }

    async fn on(&self, op: Op, id: &str) -> Answer {
        let Some(instance) = self.registry.get(id) else {
            let hint = if id == MAIN { " (the shard has `harper.boot: false`)" } else { "" };
            return error(
                Code::NotFound,
                format!("no instance `{}` in shard `{}`{hint}", excerpt(id), self.shard.name),
            );
        };
        if let Op::Release = op {
            // Only the registry may hold it when the release takes it out.
            drop(instance);
            if id == MAIN {
                return error(
                    Code::Failed,
                    "`main` is the shard's own instance: it lives as long as the shard",
                );
            }
            return self.release(id).await;
        }
        let mut i = instance.lock().await;
        let state = i.state();
        let result = match (op, state) {
            (Op::Status, _) => Ok(()),
            (Op::Start(Some(_)), LifeState::Running) => {
                return error(
                    Code::Running,
                    format!("`{id}` is running: stop it first, then start it on another Harper"),
                );
            }
            (Op::Start(None), LifeState::Running) => {
                return error(
                    Code::Running,
                    format!("`{id}` is running: stop it first, or use restart"),
                );
            }
            (Op::Start(switch), _) => match switch {
                Some(keys) => match self.switch(&mut i, keys).await {
                    Ok(()) => i.start(self.cx).await,
                    Err(answer) => return answer,
                },
                None => i.start(self.cx).await,
            },
            (Op::Stop(_) | Op::Kill, LifeState::Stopped) => {
                return error(Code::NotRunning, format!("`{id}` is not running"));
            }
            (Op::Stop(_) | Op::Kill, LifeState::Exited) => {
                let how = i
                    .exit()
                    .map(|s| format!(" ({})", crate::supervise::describe(&s)))
                    .unwrap_or_default();
                return error(
                    Code::NotRunning,
                    format!("`{id}` is not running: Harper exited by itself{how}"),
                );
            }
            (Op::Stop(grace), _) => i.stop(self.cx, grace, false).await,
            (Op::Kill, _) => i.stop(self.cx, None, true).await,
            // Nothing to stop: a life that ended by itself was not ended by this request.
            (Op::Restart(_), LifeState::Stopped | LifeState::Exited) => i.start(self.cx).await,
            (Op::Restart(grace), _) => match i.stop(self.cx, grace, false).await {
                Ok(()) => i.start(self.cx).await,
                Err(f) => Err(f),
            },
            (Op::Release, _) => unreachable!("answered above"),
        };
        match result {
            Ok(()) => Answer::instance(info(&mut i)),
            Err(f) => failure(&f, Code::Failed),
        }
    }

    /// Points a stopped instance at the Harper `keys` name, installing a package first; the error
    /// answer when the keys are refused or the install fails (the instance is then unchanged).
    async fn switch(&self, i: &mut Instance, keys: Map<String, Value>) -> Result<(), Answer> {
        let text = Value::Object(keys).to_string();
        let source = crate::plan::resolve::source_request(
            Path::new("control request"),
            &self.cx.plan_dir,
            i.spec.runtime,
            &text,
        )
        .map_err(|e| error(Code::Invalid, e.one_line()))?;
        let harper = Harper::obtain(self.cx, &source).await.map_err(|f| install_failure(&f))?;
        i.switch(source, harper);
        Ok(())
    }

    async fn release(&self, id: &str) -> Answer {
        let Some(instance) = self.registry.remove(id) else {
            return error(Code::NotFound, format!("no instance `{}`", excerpt(id)));
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
                        Code::Failed,
                        format!(
                            "`{id}` is in use by another request: release it once that is answered"
                        ),
                    );
                }
            }
        };
        match instance.teardown(self.cx, false).await {
            None => Answer::Released { ok: Default::default(), id: id.to_owned() },
            Some(problem) => error(Code::Failed, problem),
        }
    }

    /// `harper`: the request's Harper keys, a plan's `harper` block.
    async fn start_new(
        &self,
        name: Option<String>,
        harper: Map<String, Value>,
    ) -> (Answer, Option<String>) {
        let text = Value::Object(harper).to_string();
        let source = Path::new("control request");
        let spec = match crate::plan::resolve::instance_request(
            source,
            &self.cx.plan_dir,
            &self.shard.raw_harper,
            &text,
        ) {
            Ok(spec) => spec,
            Err(e) => return (error(Code::Invalid, e.one_line()), None),
        };
        let wait = self.cx.pool.spec().wait;
        let permit = tokio::select! {
            permit = tokio::time::timeout(wait, self.registry.limit.clone().acquire_owned()) => match permit {
                Ok(Ok(permit)) => permit,
                _ => {
                    let limit = self.shard.harper.instances;
                    return (error(Code::Limit, format!("{limit} on-demand instance(s) stayed live for {}: release one first, or raise `harper.instances`", humantime::format_duration(wait))), None);
                }
            },
            () = self.cx.cancelled() => return (error(Code::Failed, "the run is being cancelled"), None),
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
                Err(f) => return (failure(&f, Code::Failed), None),
            };
        let started = match instance.prepare(self.cx).await {
            Ok(()) => instance.start(self.cx).await,
            Err(f) => Err(f),
        };
        if let Err(f) = started {
            let mut f = f;
            if let Some(problem) =
                instance.teardown(self.cx, f.status == ShardStatus::Infrastructure).await
            {
                f.cause = format!("{}; and teardown: {problem}", f.cause);
            }
            return (failure(&f, Code::Failed), None);
        }
        let answer = Answer::instance(info(&mut instance));
        self.registry.insert(instance);
        (answer, Some(id))
    }
}

/// An op on an existing instance, with what it carries.
enum Op {
    Status,
    /// The Harper keys of a `start` that names another Harper.
    Start(Option<Map<String, Value>>),
    Stop(Option<Duration>),
    Restart(Option<Duration>),
    Kill,
    Release,
}

/// What the control socket says of an instance (docs/control.md, "Answers").
fn info(i: &mut Instance) -> InstanceInfo {
    let state = match i.state() {
        LifeState::Running => InstanceState::Running,
        LifeState::Stopped => InstanceState::Stopped,
        LifeState::Exited => InstanceState::Exited,
    };
    let (addr, p) = (i.addr, &i.spec.ports);
    let exit = i.exit().map(|s| {
        let signal = s.signal().map(|n| {
            nix::sys::signal::Signal::try_from(n)
                .map_or_else(|_| n.to_string(), |s| s.as_str().to_owned())
        });
        ExitInfo { code: s.code(), signal }
    });
    InstanceInfo {
        id: i.id.clone(),
        name: i.name.clone(),
        state,
        hostname: addr.to_string(),
        operations_url: format!("http://{addr}:{}", p.operations),
        http_url: format!("http://{addr}:{}", p.http),
        mqtt_url: format!("mqtt://{addr}:{}", p.mqtt),
        https_url: i.https_url(),
        tls: i.spec.config.get("tls").cloned(),
        admin: AdminInfo { username: i.spec.admin.username.clone(), password: i.password.clone() },
        harper: i.spec.source.clone(),
        rootpath: i.dirs.root.display().to_string(),
        log_dir: i.harper_log_dir().display().to_string(),
        pid: if state == InstanceState::Running { i.pid() } else { None },
        exit,
    }
}
