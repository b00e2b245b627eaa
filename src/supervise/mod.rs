//! Running a child under supervision: its own process group, its output streamed as chunks to
//! its log files and to the caller, and a stop that leaves nothing of it behind.
//!
//! [`readiness`] decides when a starting Harper is really up; [`Child::stop`] tears a child down.

pub mod output;
pub mod readiness;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

pub use output::{Chunk, Stream};

/// The environment variable that marks every process a run starts, so that anything that
/// escapes its process group can still be found and ended.
pub const TOKEN_VAR: &str = "HARPER_SHARD_TOKEN";

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
    inner: tokio::process::Child,
    pid: u32,
    grace: Duration,
    status: Option<ExitStatus>,
    drains: Vec<tokio::task::JoinHandle<()>>,
}

/// How a stop went.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub status: ExitStatus,
    /// SIGTERM was not enough within the grace: the group was SIGKILLed.
    pub killed: bool,
    pub took: Duration,
}

impl Child {
    pub fn spawn(spec: Spec) -> anyhow::Result<Child> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(&spec.env)
            .env(TOKEN_VAR, &spec.token)
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut inner = cmd.spawn().with_context(|| {
            format!("cannot start `{}` in {}", spec.program.to_string_lossy(), spec.cwd.display())
        })?;
        let pid = inner.id().context("the child exited before its pid could be read")?;
        track(pid, true);
        let (tx, output) = mpsc::unbounded_channel();
        let (out_log, err_log) = output::open_logs(&spec.stdout_log, spec.stderr_log.as_deref())?;
        let mut drains = Vec::new();
        if let Some(out) = inner.stdout.take() {
            drains.push(tokio::spawn(output::drain(out, Stream::Stdout, out_log, tx.clone())));
        }
        if let Some(err) = inner.stderr.take() {
            drains.push(tokio::spawn(output::drain(err, Stream::Stderr, err_log, tx)));
        }
        Ok(Child { process: Process { inner, pid, grace: spec.grace, status: None, drains }, output })
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child to exit. Cancel-safe: use it in `select!`.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.inner.wait().await?;
        self.status = Some(status);
        Ok(status)
    }

    /// Waits until both output pipes are closed and every byte is in the logs.
    pub async fn flushed(&mut self) {
        for drain in self.drains.drain(..) {
            let _ = drain.await;
        }
    }

    /// SIGTERM to the group, the grace, SIGKILL to the group, reaped. Whatever is left of the
    /// group after the leader is gone is killed too.
    pub async fn stop(&mut self) -> anyhow::Result<Stopped> {
        let started = std::time::Instant::now();
        let group = Pid::from_raw(self.pid as i32);
        let mut killed = false;
        if self.status.is_none() {
            let _ = killpg(group, Signal::SIGTERM);
            if tokio::time::timeout(self.grace, self.exited()).await.is_err() {
                let _ = killpg(group, Signal::SIGKILL);
                killed = true;
            }
        }
        let status = self.exited().await.context("cannot reap the child")?;
        let _ = killpg(group, Signal::SIGKILL);
        track(self.pid, false);
        Ok(Stopped { status, killed, took: started.elapsed() })
    }
}

/// Process groups started and not yet stopped, for the second-signal fast path.
static LIVE_GROUPS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn track(pid: u32, live: bool) {
    let mut groups = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner());
    groups.retain(|p| *p != pid);
    if live {
        groups.push(pid);
    }
}

/// SIGKILLs every process group started and not yet stopped. For the fast path only: nothing
/// is waited for.
pub fn kill_all_now() {
    let groups = LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pid in groups {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
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
