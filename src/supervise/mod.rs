//! Running a child under supervision: started through a keeper ([`keeper`], [`handle`]) in its
//! own process group, its output streamed as chunks to its log files and to the caller, and a
//! stop that leaves nothing of it behind — also if the tool dies first.
//!
//! [`readiness`] decides when a starting Harper is really up; [`Process::stop`] tears a child down.

pub mod handle;
pub mod keeper;
pub mod output;
pub mod readiness;
pub mod tail;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

pub use output::{Chunk, Stream};

use crate::process::TOKEN_VAR;

/// What to run and where its output goes.
pub struct Spec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Added to (and overriding) the tool's own environment.
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub stdout_log: PathBuf,
    /// `None`: stderr goes to the stdout log too, interleaved as it comes.
    pub stderr_log: Option<PathBuf>,
    /// Time between SIGTERM and SIGKILL at stop.
    pub grace: Duration,
    /// The lease's token. The child carries a token of its own below it (`<lease>/<n>`), so
    /// that the lease's sweep finds every child and one child's cleanup only that child.
    pub token: String,
}

/// A running child in its own process group, and its output.
pub struct Child {
    pub process: Process,
    /// Output chunks as they arrive. Dropping the receiver is fine: logs keep being written.
    pub output: mpsc::UnboundedReceiver<Chunk>,
}

/// The process side of a [`Child`], separate so that its exit and its output can be awaited
/// together.
pub struct Process {
    inner: Inner,
    pid: u32,
    grace: Duration,
    token: String,
    status: Option<ExitStatus>,
    drains: Vec<tokio::task::JoinHandle<Option<output::Unlogged>>>,
    /// What the finished drains could not write to the logs.
    unlogged: Vec<output::Unlogged>,
}

enum Inner {
    KeptChild(handle::KeptChild),
    /// Test-only ([`keeper::NO_KEEPER_VAR`]): the child is the tool's own.
    Direct(tokio::process::Child),
}

/// How a stop went.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub status: ExitStatus,
    /// SIGTERM was not enough within the grace: the group was SIGKILLed.
    pub killed: bool,
    /// Processes that had left the child's group (daemons) and were ended by its keeper.
    pub adopted: u32,
    pub took: Duration,
}

/// Is the keeper bypassed (test-only switch)?
fn unsafe_no_keeper() -> bool {
    std::env::var_os(keeper::NO_KEEPER_VAR).is_some_and(|v| v == "1")
}

/// How long a deadline that fired waits for what may already be on its way: output in the
/// pipes, an exit in the keeper's report. After the tool was suspended (SIGSTOP, a frozen VM)
/// every deadline fires at once, while the child may have finished long ago.
pub const SETTLE: Duration = Duration::from_millis(250);

/// What arrived within [`SETTLE`] of a deadline.
pub struct LateArrivals {
    pub chunks: Vec<Chunk>,
    pub exited: Option<std::io::Result<ExitStatus>>,
}

/// Numbers the children of this run, for their tokens.
static CHILDREN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Child {
    pub async fn spawn(mut spec: Spec) -> anyhow::Result<Child> {
        spec.token = format!(
            "{}/{}",
            spec.token,
            CHILDREN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        // The logs first: a log that cannot be created must not leave a child started.
        let (out_log, err_log) = output::open_logs(&spec.stdout_log, spec.stderr_log.as_deref())?;
        let (inner, pid, stdout, stderr) = if unsafe_no_keeper() {
            let (child, pid, stdout, stderr) = spawn_direct(&spec)?;
            (Inner::Direct(child), pid, stdout, stderr)
        } else {
            let (kept, pid, stdout, stderr) = handle::KeptChild::spawn(&spec).await?;
            (Inner::KeptChild(kept), pid, stdout, stderr)
        };
        track(pid, keeper_of(&inner), true);
        let (tx, output) = mpsc::unbounded_channel();
        let drains = vec![
            tokio::spawn(output::drain(stdout, Stream::Stdout, out_log, tx.clone())),
            tokio::spawn(output::drain(stderr, Stream::Stderr, err_log, tx)),
        ];
        Ok(Child {
            process: Process {
                inner,
                pid,
                grace: spec.grace,
                token: spec.token,
                status: None,
                drains,
                unlogged: Vec::new(),
            },
            output,
        })
    }
}

/// What every child gets, started through a keeper or not: the spec's environment and the
/// token, its directory, no stdin, its output piped to the tool, a process group of its own (a
/// Ctrl-C at the terminal reaches the tool, which decides).
fn prepare<'a>(
    cmd: &'a mut tokio::process::Command,
    spec: &Spec,
) -> &'a mut tokio::process::Command {
    cmd.envs(&spec.env)
        .env(TOKEN_VAR, &spec.token)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
}

fn spawn_direct(
    spec: &Spec,
) -> anyhow::Result<(
    tokio::process::Child,
    u32,
    tokio::process::ChildStdout,
    tokio::process::ChildStderr,
)> {
    let mut cmd = tokio::process::Command::new(&spec.program);
    prepare(cmd.args(&spec.args), spec).kill_on_drop(true);
    let mut child = cmd.spawn().with_context(|| {
        format!("cannot start `{}` in {}", spec.program.to_string_lossy(), spec.cwd.display())
    })?;
    let pid = child.id().context("the child exited before its pid could be read")?;
    let stdout = child.stdout.take().context("the child's stdout pipe is missing")?;
    let stderr = child.stderr.take().context("the child's stderr pipe is missing")?;
    Ok((child, pid, stdout, stderr))
}

fn keeper_of(inner: &Inner) -> Option<u32> {
    match inner {
        Inner::KeptChild(kept) => Some(kept.keeper_pid()),
        Inner::Direct(_) => None,
    }
}

impl Child {
    /// Takes the output and the exit that are waiting or arrive within [`SETTLE`]: what a
    /// deadline must look at before it blames the child.
    pub async fn settle(&mut self) -> LateArrivals {
        let mut chunks = Vec::new();
        let mut open = true;
        let window = tokio::time::sleep(SETTLE);
        tokio::pin!(window);
        loop {
            tokio::select! {
                biased;
                chunk = self.output.recv(), if open => match chunk {
                    Some(chunk) => chunks.push(chunk),
                    None => open = false,
                },
                status = self.process.exited() => {
                    while let Ok(chunk) = self.output.try_recv() {
                        chunks.push(chunk);
                    }
                    return LateArrivals { chunks, exited: Some(status) };
                }
                _ = &mut window => return LateArrivals { chunks, exited: None },
            }
        }
    }
}

impl Process {
    /// The child's pid, which is also its process group.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The keeper's pid (none when the keeper is bypassed), for the pool's records.
    pub fn keeper_pid(&self) -> Option<u32> {
        keeper_of(&self.inner)
    }

    /// Waits for the child to exit. Cancel-safe: use it in `select!`.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = match &mut self.inner {
            Inner::KeptChild(kept) => kept.exited().await?,
            Inner::Direct(child) => child.wait().await?,
        };
        self.status = Some(status);
        Ok(status)
    }

    /// Waits until both output pipes are closed and every byte is in the logs. Cancel-safe: a
    /// caller may bound it with a timeout and call it again later.
    pub async fn flushed(&mut self) {
        while let Some(drain) = self.drains.last_mut() {
            if let Ok(Some(unlogged)) = drain.await {
                self.unlogged.push(unlogged);
            }
            self.drains.pop();
        }
    }

    /// Takes what the logs are missing, as far as [`Process::flushed`] has found.
    pub fn take_unlogged(&mut self) -> Vec<output::Unlogged> {
        std::mem::take(&mut self.unlogged)
    }

    /// Stops the child with the grace it was spawned with.
    pub async fn stop(&mut self) -> anyhow::Result<Stopped> {
        self.stop_within(self.grace, std::future::pending()).await
    }

    /// SIGTERM to the group, `grace`, SIGKILL to the group and to every process that left it,
    /// reaped. With a keeper this is: close the lifeline, wait for the keeper's report — less
    /// long once `hurry` resolves with the instant by which the stop must be over.
    pub async fn stop_within(
        &mut self,
        grace: Duration,
        hurry: impl Future<Output = Instant>,
    ) -> anyhow::Result<Stopped> {
        let started = std::time::Instant::now();
        let group = Pid::from_raw(self.pid as i32);
        let stopped = match &mut self.inner {
            Inner::KeptChild(kept) => {
                let ended = kept.stop(grace, hurry, self.pid, &self.token).await;
                track(self.pid, None, false);
                let ended = ended?;
                for note in &ended.notes {
                    tracing::debug!("keeper of pid {}: {note}", self.pid);
                }
                self.status = Some(ended.status);
                Stopped {
                    status: ended.status,
                    killed: ended.killed,
                    adopted: ended.adopted,
                    took: started.elapsed(),
                }
            }
            Inner::Direct(child) => {
                let mut killed = false;
                if self.status.is_none() {
                    let _ = killpg(group, Signal::SIGTERM);
                    if tokio::time::timeout(grace, child.wait()).await.is_err() {
                        let _ = killpg(group, Signal::SIGKILL);
                        killed = true;
                    }
                }
                let status = match self.status {
                    Some(s) => s,
                    None => child.wait().await.context("cannot reap the child")?,
                };
                let _ = killpg(group, Signal::SIGKILL);
                track(self.pid, None, false);
                self.status = Some(status);
                Stopped { status, killed, adopted: 0, took: started.elapsed() }
            }
        };
        Ok(stopped)
    }
}

/// Process groups started and not yet stopped, with their keepers, for the second-signal fast
/// path.
static LIVE_GROUPS: std::sync::Mutex<Vec<(u32, Option<u32>)>> = std::sync::Mutex::new(Vec::new());

fn track(pid: u32, keeper: Option<u32>, live: bool) {
    let mut groups = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    groups.retain(|(p, _)| *p != pid);
    if live {
        groups.push((pid, keeper));
    }
}

/// SIGKILLs every process group started and not yet stopped, and tells each keeper to end what
/// is left (adopted daemons) without a grace. For the fast path only: nothing is waited for;
/// the keepers finish on their own once the tool has exited.
pub fn kill_all_now() {
    let groups = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (pid, keeper) in groups {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        if let Some(keeper) = keeper {
            let _ = nix::sys::signal::kill(Pid::from_raw(keeper as i32), keeper::NOW);
        }
    }
}

/// "exit code 3", "killed by SIGKILL": how a person wants an exit status said.
pub fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}
