//! One Harper instance of a shard, through its whole life: an address from the pool, its
//! directories (from the boot template or empty), boots, stops, crashes and the teardown that
//! ends it. The shard's own instance (`main`) and those a test starts through the control
//! socket (`control`) are the same type, with the same guarantees, and tell every life the
//! same way: [`InstancePhase`] events, the shard's own first boot included.
//!
//! Not here: what a shard does with its instance (`shard`), the protocol (`control`); both
//! stand on this file, which stands on `context` only.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::context::{Context, FLUSH_LIMIT, InstanceDir};
use super::events::{BootLogs, EventKind, InstancePhase, ShardStatus, Warning};
use crate::harper::layout::{self, Dirs};
use crate::harper::lock::Hold;
use crate::harper::{boot_cache, install, runtime, template};
use crate::plan::{HarperSource, HarperSpec, Runtime};
use crate::pool::{self, Lease, Notice, probe};
use crate::supervise::readiness;
use crate::supervise::{self, Child, Spec};

/// Why an instance could not do what was asked: the shard status it means, one line, and
/// Harper's last output lines when a boot failed.
#[derive(Debug, Clone)]
pub struct InstanceFailure {
    pub status: ShardStatus,
    pub cause: String,
    pub tail: Vec<String>,
}

impl InstanceFailure {
    pub fn infra(e: impl std::fmt::Display) -> InstanceFailure {
        InstanceFailure {
            status: ShardStatus::Infrastructure,
            cause: e.to_string(),
            tail: Vec::new(),
        }
    }

    fn cancelled(cause: &str) -> InstanceFailure {
        InstanceFailure {
            status: ShardStatus::Cancelled,
            cause: cause.to_owned(),
            tail: Vec::new(),
        }
    }
}

/// What state an instance is in, as the control socket says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeState {
    /// Started and not stopped; Harper may still have exited by itself ([`Instance::state`]).
    Running,
    /// Stopped or killed through the tool, ROOTPATH and address kept.
    Stopped,
    /// Harper ended by itself.
    Exited,
}

/// The Harper an instance boots: the entry script, and the hold that keeps its package in the
/// cache when the instance, not the run, installed it (a request named another `package`).
pub struct Harper {
    entry: PathBuf,
    _held: Option<Hold>,
}

impl Harper {
    /// The shard's own Harper, which the run installed and holds.
    pub fn shard(cx: &Context) -> Harper {
        Harper { entry: cx.entry.clone(), _held: None }
    }

    /// The Harper `source` names: a `bin` as it is, a `package` installed into the cache unless
    /// it is there (told to the reporters, stopped by a cancellation) and held.
    pub async fn obtain(cx: &Context, source: &HarperSource) -> Result<Harper, InstanceFailure> {
        match source {
            HarperSource::Bin(path) => Ok(Harper { entry: path.clone(), _held: None }),
            HarperSource::Package(spec) => {
                match super::context::install(spec, &cx.emit, &cx.cancel).await {
                    Ok((installed, held)) => {
                        Ok(Harper { entry: installed.entry, _held: Some(held) })
                    }
                    Err(e) if cx.cancel.borrow().is_some() => {
                        Err(InstanceFailure::cancelled(&format!("{e:#}")))
                    }
                    Err(e) => {
                        // npm's last lines are the tail; the first line says what failed.
                        let text = format!("cannot install {spec}: {e:#}");
                        let mut lines = text.lines().map(str::to_owned);
                        let cause = lines.next().unwrap_or_default();
                        Err(InstanceFailure {
                            status: ShardStatus::Infrastructure,
                            cause,
                            tail: lines.collect(),
                        })
                    }
                }
            }
        }
    }
}

/// A held address with an instance's directories, and Harper when it runs. The only way out is
/// [`Instance::teardown`], which gives the address back.
pub struct Instance {
    pub id: String,
    pub name: String,
    pub spec: HarperSpec,
    pub addr: Ipv4Addr,
    pub dirs: Dirs,
    pub password: String,
    harper: Harper,
    token: String,
    lease: Option<Lease>,
    logs: InstanceDir,
    child: Option<Child>,
    boots: u32,
    template: Option<template::Template>,
    /// Held until the instance ends: every boot uses the template's boot cache.
    _template_held: Option<Hold>,
    /// Held until the instance ends: no other live instance may have these keys (JWT and TLS).
    _keys: Option<template::KeySet>,
    exit: Option<ExitStatus>,
    /// Set when supervision itself went wrong (a keeper that died): the slot's record then
    /// stays for the next owner's sweep.
    suspect: bool,
    /// An on-demand instance holds a place under the shard's limit until it is released.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Instance {
    /// Waits for an address from the pool. `token` marks every process of the instance; its
    /// logs go to the attempt's folder for `id`.
    pub async fn acquire(
        cx: &Context,
        spec: HarperSpec,
        harper: Harper,
        (id, name): (String, String),
        token: String,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Instance, InstanceFailure> {
        let lease = acquire(cx, &spec, &token).await.map_err(|e| {
            let status = if cx.cancel.borrow().is_some() {
                ShardStatus::Cancelled
            } else {
                ShardStatus::Infrastructure
            };
            InstanceFailure { status, cause: format!("{e:#}"), tail: Vec::new() }
        })?;
        let addr = lease.addr;
        let dirs = Dirs::under(&cx.work.path, addr);
        let password = spec.admin.password.clone().unwrap_or_else(layout::random_password);
        let logs = cx.dir.instance(&id);
        let instance = Instance {
            id,
            name,
            spec,
            addr,
            dirs,
            password,
            harper,
            token,
            lease: Some(lease),
            logs,
            child: None,
            boots: 0,
            template: None,
            _template_held: None,
            _keys: None,
            exit: None,
            suspect: false,
            _permit: permit,
        };
        instance.phase(cx, InstancePhase::Acquired { name: instance.name.clone(), addr });
        Ok(instance)
    }

    fn phase(&self, cx: &Context, phase: InstancePhase) {
        cx.instance_event(&self.id, phase);
    }

    fn lease(&mut self) -> &mut Lease {
        self.lease.as_mut().expect("an instance holds its lease until teardown")
    }

    /// Names (in the slot's record first) and fills the instance's directories: a copy of the
    /// boot template when the spec says so, then the fixtures.
    pub async fn prepare(&mut self, cx: &Context) -> Result<(), InstanceFailure> {
        let base = self.dirs.base.clone();
        self.lease()
            .record_dir(&base)
            .and_then(|()| self.dirs.create())
            .map_err(|e| InstanceFailure::infra(format!("{e:#}")))?;
        if self.spec.template {
            let ((found, held), keys) = self.copy_template(cx).await?;
            (self.template, self._template_held, self._keys) =
                (Some(found), Some(held), Some(keys));
        }
        self.dirs
            .install_fixtures(&self.spec.fixtures)
            .map_err(|e| InstanceFailure::infra(format!("{e:#}")))
    }

    /// The pid of Harper while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.process.pid())
    }

    /// Where the instance is, checking whether a running Harper has exited by itself.
    pub fn state(&mut self) -> LifeState {
        use futures_util::FutureExt as _;
        let Some(child) = &mut self.child else { return LifeState::Stopped };
        match child.process.exited().now_or_never() {
            Some(Ok(status)) => {
                self.exit = Some(status);
                LifeState::Exited
            }
            _ => LifeState::Running,
        }
    }

    /// How Harper's last run ended, if it ended.
    pub fn exit(&self) -> Option<ExitStatus> {
        self.exit
    }

    /// Waits (within the flush limit) until `child`'s output is in its logs; warns of what is not.
    async fn flush(&self, cx: &Context, child: &mut Child) {
        let _ = tokio::time::timeout(cx.within(FLUSH_LIMIT), child.process.flushed()).await;
        let logs = self.logs.boot(self.boots);
        cx.warn_unlogged(&mut child.process, |stream| logs.of(stream).to_path_buf());
    }

    /// `https://<address>:<port>` when the instance binds HTTPS (its `config` sets `tls`).
    pub fn https_url(&self) -> Option<String> {
        self.spec.ports.https.map(|port| format!("https://{}:{port}", self.addr))
    }

    /// Where Harper's own logs are (`hdb.log`).
    pub fn harper_log_dir(&self) -> PathBuf {
        self.dirs.root.join("log")
    }

    /// Boots Harper and waits until it is ready. A later boot is a restart on the same
    /// ROOTPATH and address: the `hdb.pid` and socket a crash leaves are removed first, and the
    /// previous run's keeper is stopped (it has nothing left to end).
    pub async fn start(&mut self, cx: &Context) -> Result<(), InstanceFailure> {
        if let Some(mut old) = self.child.take() {
            let _ = cx.stop(&mut old, Duration::ZERO).await;
        }
        if self.boots > 0 {
            for stale in ["hdb.pid", "operations-server"] {
                let _ = std::fs::remove_file(self.dirs.root.join(stale));
            }
        }
        self.boots += 1;
        self.exit = None;
        let booting = |pid: u32, rootpath: &Path, logs: BootLogs| {
            self.phase(cx, InstancePhase::Booting { pid, rootpath: rootpath.to_path_buf(), logs })
        };
        let booted = boot(cx, BootSetup::from(&*self), self.logs.boot(self.boots), booting).await;
        let child = match booted {
            Ok((child, took)) => {
                self.phase(cx, InstancePhase::Ready { took });
                child
            }
            Err((child, failure)) => {
                if failure.status == ShardStatus::BootFailed {
                    self.phase(
                        cx,
                        InstancePhase::BootFailed {
                            cause: failure.cause.clone(),
                            tail: failure.tail.clone(),
                        },
                    );
                }
                self.child = child;
                return Err(failure);
            }
        };
        self.child = Some(child);
        let pids: Vec<u32> = self
            .child
            .as_ref()
            .map(|c| [Some(c.process.pid()), c.process.keeper_pid()])
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        // Recorded beside the slot's lock, so that if this run dies the next owner can end them.
        if let Err(e) = self.lease().record_pids(&pids) {
            cx.warn(Warning::PidsNotRecorded { error: format!("{e:#}") });
        }
        if self.boots == 1
            && let Some(t) = &self.template
            && let Err(e) = template::set_password(
                self.addr,
                self.spec.ports.operations,
                &t.meta,
                &self.password,
            )
            .await
        {
            return Err(InstanceFailure {
                status: ShardStatus::BootFailed,
                cause: format!("{e:#}"),
                tail: Vec::new(),
            });
        }
        Ok(())
    }

    /// Makes the next boot run `harper`, which `source` names, on the data already in ROOTPATH:
    /// an upgrade (or a downgrade) across Harper versions. Nothing is copied over the data, and
    /// the template's caches, which hold the code of the Harper it was built with, are left out.
    pub fn switch(&mut self, source: HarperSource, harper: Harper) {
        self.spec.source = source;
        self.harper = harper;
    }

    /// Stops Harper (SIGTERM, the grace, SIGKILL) and waits until every port is free, keeping
    /// ROOTPATH and address. `kill` skips the SIGTERM: a crash.
    pub async fn stop(
        &mut self,
        cx: &Context,
        grace: Option<Duration>,
        kill: bool,
    ) -> Result<(), InstanceFailure> {
        let Some(mut child) = self.child.take() else {
            return Err(InstanceFailure::infra("it is not running"));
        };
        let how = if kill { "kill" } else { "stop" };
        self.phase(cx, InstancePhase::Stopping { how });
        let started = Instant::now();
        if kill {
            let group = nix::unistd::Pid::from_raw(child.process.pid() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
        let grace = if kill { Duration::ZERO } else { grace.unwrap_or(self.spec.teardown.grace) };
        let stopped = cx.stop(&mut child, grace).await;
        self.flush(cx, &mut child).await;
        let mut problem = None;
        match stopped {
            Ok(stopped) => self.exit = Some(stopped.status),
            Err(e) => {
                self.suspect = true;
                problem = Some(format!("{e:#}"));
            }
        }
        if problem.is_none() {
            problem = self.ports_free(cx, "Harper stopped").await;
        }
        let exit = self.exit.map(|s| supervise::describe(&s)).unwrap_or_else(|| "unknown".into());
        self.phase(
            cx,
            InstancePhase::Stopped { exit, took: started.elapsed(), problem: problem.clone() },
        );
        match problem {
            Some(problem) => Err(InstanceFailure::infra(problem)),
            None => Ok(()),
        }
    }

    async fn ports_free(&self, cx: &Context, after: &str) -> Option<String> {
        let (addr, ports) = (self.addr, self.spec.ports.all());
        let limit = cx.within(self.spec.teardown.port_release);
        let busy = tokio::task::spawn_blocking(move || probe::wait_free(addr, &ports, limit))
            .await
            .unwrap_or_default();
        let problems: Vec<String> = busy
            .iter()
            .map(|(name, port, why)| {
                let who = crate::process::ports::holders(addr, *port);
                let who = who.first().map(|h| format!(" by {h}")).unwrap_or_default();
                format!(
                    "port {port} ({name}) on {addr} is still {why}{who} {}s after {after}",
                    limit.as_secs_f32()
                )
            })
            .collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }

    /// Stops Harper if it runs, keeps its log, checks that every port is free, removes the
    /// directories and gives the address back. Returns what went wrong, if anything. After a
    /// problem (or when `suspect`), the slot's record stays for the next owner's sweep.
    pub async fn teardown(mut self, cx: &Context, suspect: bool) -> Option<String> {
        self.phase(cx, InstancePhase::Releasing);
        let mut problems = Vec::new();
        if let Some(mut child) = self.child.take() {
            if let Err(e) = cx.stop(&mut child, self.spec.teardown.grace).await {
                problems.push(format!("{e:#}"));
            }
            self.flush(cx, &mut child).await;
        }
        keep_log(cx, &self.harper_log_dir().join("hdb.log"), &self.logs.hdb_log());
        if let Some(problem) = self.ports_free(cx, "Harper stopped").await {
            problems.push(problem);
        }
        if let Err(e) = self.dirs.remove() {
            problems.push(format!("{e:#}"));
        }
        // A clean teardown deletes the slot's record; one that found problems keeps it, so that
        // the next owner of the address sweeps what carries this instance's token. Either way
        // the lock goes: the pool's canary keeps skipping the address while a port is busy.
        let lease = self.lease.take().expect("an instance holds its lease until teardown");
        if problems.is_empty() && !suspect && !self.suspect {
            lease.release();
        } else {
            lease.release_for_sweep();
        }
        tracing::debug!("{} released", self.addr);
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        self.phase(cx, InstancePhase::Released { problem: problem.clone() });
        problem
    }

    /// Fills the instance's directories from the template, building the template first when the
    /// cache has none: on this instance's address, under the template's lock, started until
    /// ready, stopped, its ports seen free, kept. Returns the template, held for the instance's
    /// life, and the instance's keys.
    async fn copy_template(
        &mut self,
        cx: &Context,
    ) -> Result<((template::Template, Hold), template::KeySet), InstanceFailure> {
        let infra = |e: anyhow::Error| InstanceFailure::infra(format!("{e:#}"));
        let cancelled = || {
            InstanceFailure::cancelled("cancelled while waiting for another run's boot template")
        };
        let cache = install::private_cache().map_err(infra)?;
        let key = template::key(&self.spec, &self.harper.entry);
        let keys = template::take_keys(&cache, self.spec.runtime).await.map_err(infra)?;
        let (found, held) = loop {
            if template::cached(&cache, &key).is_none() {
                let building = tokio::select! {
                    lock = template::lock(&cache, &key) => lock,
                    () = cx.cancelled() => return Err(cancelled()),
                };
                match building {
                    // Another shard of this run built it while this one waited, and holds it
                    // now: the lock is refused to this process, and the template is there.
                    Err(_) if template::cached(&cache, &key).is_some() => {}
                    Err(e) => return Err(infra(e)),
                    // Another run may have built it while this one waited.
                    Ok(_building) => {
                        if template::cached(&cache, &key).is_none() {
                            self.build_template(cx, &cache, &key).await?;
                        }
                    }
                }
            }
            // A `cache clear` between the build and the hold removed it: it is built again.
            tokio::select! {
                held = template::hold(&cache, &key) => if let Some(held) = held.map_err(infra)? { break held },
                () = cx.cancelled() => return Err(cancelled()),
            }
        };
        install::check_entry(&found.dir, "the cached template").map_err(infra)?;
        template::instantiate(&found, &self.dirs, &keys).map_err(infra)?;
        Ok(((found, held), keys))
    }

    async fn build_template(
        &mut self,
        cx: &Context,
        cache: &Path,
        key: &str,
    ) -> Result<template::Template, InstanceFailure> {
        let infra = |e: anyhow::Error| InstanceFailure::infra(format!("{e:#}"));
        let started = Instant::now();
        cx.emit.emit(EventKind::TemplateBuilding {
            shard: cx.id,
            attempt: cx.attempt,
            id: self.id.clone(),
        });
        let dirs = Dirs::under(&cx.work.path, self.addr);
        let mode = match self.spec.runtime {
            Runtime::Node => boot_cache::mode(runtime::node().compile_cache()),
            _ => boot_cache::Mode::Off,
        };
        let compile = mode.compile().then(|| boot_cache::compile_dir_of(&dirs.base));
        let cached = boot_cache::package_root(cache, &self.harper.entry)
            .filter(|_| mode.preload())
            .map(|root| (boot_cache::dir_of(&dirs.base), root));
        let mut build = Build { dirs, password: layout::random_password(), boot: cached, compile };
        self.lease()
            .record_dir(&build.dirs.base)
            .and_then(|()| build.dirs.create())
            .map_err(infra)?;
        // Without its preload the build still makes a template, one that boots without a cache.
        if let Some((dir, _)) = &build.boot
            && let Err(e) = boot_cache::prepare(dir)
        {
            tracing::debug!("{e:#}");
            build.boot = None;
        }
        let booted = boot(cx, build.as_boot_setup(self), self.logs.template(), |_, _, _| {}).await;
        let admin = (self.spec.admin.username.as_str(), build.password.as_str());
        let booted = match booted {
            Ok(ready) => {
                match template::forget_certificates(self.addr, self.spec.ports.operations, admin)
                    .await
                {
                    Ok(()) => Ok(ready),
                    Err(e) => Err((
                        Some(ready.0),
                        InstanceFailure {
                            status: ShardStatus::BootFailed,
                            cause: format!("{e:#}"),
                            tail: Vec::new(),
                        },
                    )),
                }
            }
            failed => failed,
        };
        let (mut child, failure) = match booted {
            Ok((child, _)) => (Some(child), None),
            Err((child, mut failure)) => {
                if failure.status == ShardStatus::BootFailed {
                    failure.cause = format!("building the boot template: {}", failure.cause);
                    self.phase(
                        cx,
                        InstancePhase::BootFailed {
                            cause: failure.cause.clone(),
                            tail: failure.tail.clone(),
                        },
                    );
                }
                (child, Some(failure))
            }
        };
        // Never copied while it runs: stopped (SIGTERM), its ports free, then kept.
        if let Some(child) = &mut child
            && let Err(e) = cx.stop(child, self.spec.teardown.grace).await
            && failure.is_none()
        {
            let _ = build.dirs.remove();
            return Err(infra(e));
        }
        let kept = match failure {
            Some(failure) => Err(failure),
            None => match self.ports_free(cx, "the template's build").await {
                Some(problem) => Err(InstanceFailure::infra(problem)),
                None => {
                    let meta = template::Meta {
                        root: build.dirs.root.display().to_string(),
                        home: build.dirs.home.display().to_string(),
                        username: self.spec.admin.username.clone(),
                        password: build.password.clone(),
                        entry: self.harper.entry.display().to_string(),
                        boot_root: None,
                        compile_cache: false,
                    };
                    let cached =
                        build.boot.as_ref().map(|(dir, root)| (dir.as_path(), root.clone()));
                    template::store(
                        cache,
                        key,
                        &build.dirs,
                        cached,
                        build.compile.as_deref(),
                        &meta,
                    )
                    .map_err(infra)
                }
            },
        };
        if let Err(e) = build.dirs.remove() {
            tracing::debug!("{e:#}");
        }
        if kept.is_ok() {
            cx.emit.emit(EventKind::TemplateBuilt {
                shard: cx.id,
                attempt: cx.attempt,
                id: self.id.clone(),
                took: started.elapsed(),
            });
        }
        kept
    }
}

/// The template's build: its own directories and password, on the instance's address, and
/// the boot cache it writes (directory, package root) when it may have one, or the folder of
/// Node's compile cache.
struct Build {
    dirs: Dirs,
    password: String,
    boot: Option<(PathBuf, String)>,
    compile: Option<PathBuf>,
}

impl Build {
    fn as_boot_setup<'a>(&'a self, of: &'a Instance) -> BootSetup<'a> {
        let boot_cache = self.boot.as_ref().map(|(dir, root)| BootCache {
            dir: dir.clone(),
            root,
            produce: true,
        });
        let (dirs, compile_cache) = (&self.dirs, self.compile.clone());
        BootSetup {
            spec: &of.spec,
            entry: &of.harper.entry,
            dirs,
            addr: of.addr,
            password: &self.password,
            token: &of.token,
            boot_cache,
            compile_cache,
        }
    }
}

/// The boot cache a start uses ([`boot_cache`]): the build writes it, every copy reads it.
struct BootCache<'a> {
    dir: PathBuf,
    root: &'a str,
    produce: bool,
}

/// Everything a boot needs, borrowed from an instance (or its template's build).
struct BootSetup<'a> {
    spec: &'a HarperSpec,
    entry: &'a Path,
    dirs: &'a Dirs,
    addr: Ipv4Addr,
    password: &'a str,
    token: &'a str,
    boot_cache: Option<BootCache<'a>>,
    /// `NODE_COMPILE_CACHE`: the build's folder, or the instance's own copy for every life.
    compile_cache: Option<PathBuf>,
}

impl<'a> From<&'a Instance> for BootSetup<'a> {
    fn from(i: &'a Instance) -> BootSetup<'a> {
        // The template's caches hold the code of the Harper it was built with, and no other.
        let template = i
            .template
            .as_ref()
            .filter(|t| boot_cache::enabled() && Path::new(&t.meta.entry) == i.harper.entry);
        let boot_cache = template.and_then(|t| {
            let root = t.meta.boot_root.as_deref()?;
            let dir = boot_cache::dir_of(&t.dir);
            boot_cache::complete(&dir).then_some(BootCache { dir, root, produce: false })
        });
        let compile_cache = template
            .filter(|t| t.meta.compile_cache)
            .map(|_| boot_cache::compile_dir_of(&i.dirs.base));
        BootSetup {
            spec: &i.spec,
            entry: &i.harper.entry,
            dirs: &i.dirs,
            addr: i.addr,
            password: &i.password,
            token: &i.token,
            boot_cache,
            compile_cache,
        }
    }
}

type BootFailure = (Option<Child>, InstanceFailure);

/// Starts Harper for `t`, its output logged to `logs`, tells `booting` its pid once it runs,
/// and waits until it is ready; returns it and how long it took. What the boot means (an
/// instance's life, a template's build) is the caller's to tell.
async fn boot(
    cx: &Context,
    t: BootSetup<'_>,
    logs: BootLogs,
    booting: impl FnOnce(u32, &Path, BootLogs),
) -> Result<(Child, Duration), BootFailure> {
    let mut launch = layout::launch(t.spec, t.entry, t.dirs, t.addr, t.password);
    if let Some(cache) = &t.boot_cache {
        boot_cache::add_env(&mut launch.env, &cache.dir, cache.root, cache.produce);
    }
    if let Some(dir) = &t.compile_cache {
        boot_cache::add_compile_env(&mut launch.env, dir);
    }
    let spawned = Instant::now();
    let spec = Spec {
        program: launch.program,
        args: launch.args,
        env: launch.env,
        cwd: t.dirs.home.clone(),
        stdout_log: logs.stdout.clone(),
        stderr_log: Some(logs.stderr.clone()),
        grace: t.spec.teardown.grace,
        token: t.token.to_owned(),
    };
    let failed = |cause: String| InstanceFailure {
        status: ShardStatus::BootFailed,
        cause,
        tail: Vec::new(),
    };
    let mut child = Child::spawn(spec).await.map_err(|e| (None, failed(format!("{e:#}"))))?;
    booting(child.process.pid(), &t.dirs.root, logs);
    let h = t.spec;
    let outcome = tokio::select! {
        r = readiness::wait_ready(&mut child, &h.ready, &h.startup, t.addr, &h.ports, spawned) => Some(r),
        () = cx.cancelled() => None,
    };
    // From here on the output only goes to the logs.
    child.output.close();
    match outcome {
        Some(Ok(())) => Ok((child, spawned.elapsed())),
        Some(Err(e)) => Err((
            Some(child),
            InstanceFailure {
                status: ShardStatus::BootFailed,
                cause: e.cause(),
                tail: e.tail().to_vec(),
            },
        )),
        None => {
            Err((Some(child), InstanceFailure::cancelled("cancelled while Harper was starting")))
        }
    }
}

async fn acquire(cx: &Context, spec: &HarperSpec, token: &str) -> anyhow::Result<Lease> {
    let pool = cx.pool.clone();
    let (token, name, avoid) = (token.to_owned(), cx.name.clone(), cx.earlier.clone());
    let ports = spec.ports.all();
    let emit = cx.emit.clone();
    let id = cx.id;
    let cancel = cx.cancel.clone();
    tokio::task::spawn_blocking(move || {
        let notify = |notice: Notice| {
            emit.emit(EventKind::Warning { shard: Some(id), warning: Warning::Pool(notice) })
        };
        let claim = pool::Claim { token: &token, shard: &name, avoid: &avoid };
        pool.acquire(claim, &ports, &|| cancel.borrow().is_some(), &notify)
    })
    .await?
}

fn keep_log(cx: &Context, from: &Path, to: &Path) {
    if from.is_file() {
        if let Some(dir) = to.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // A later teardown of the same instance (after restarts) keeps the newest copy.
        let _ = std::fs::remove_file(to);
        if let Err(e) = supervise::output::copy_fresh(from, to) {
            cx.warn(Warning::LogNotKept { from: from.to_path_buf(), error: format!("{e:#}") });
        }
    }
}
