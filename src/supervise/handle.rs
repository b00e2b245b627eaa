//! The tool's side of a keeper ([`super::keeper`]): start it with the two pipes, learn the
//! child's pid and exit from the report pipe, and stop the child by closing the lifeline.
//!
//! The lifeline's write end is created close-on-exec and lives only in the [`KeptChild`] handle, so
//! dropping the handle — or the tool dying — is a stop too.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::keeper::{self, Report};
use super::{Spec, describe};

/// How long a keeper may take to say that its child started.
const START_LIMIT: Duration = Duration::from_secs(10);
/// Beyond the grace, how long a keeper may take to finish a teardown before the tool kills the
/// group and the keeper itself (outside a signal's budget).
pub const STOP_MARGIN: Duration = Duration::from_secs(10);
/// How long before a hurried stop's limit the keeper is told to skip the rest of its grace:
/// time for it to SIGKILL, reap and report.
const REPORT_TIME: Duration = Duration::from_millis(500);

/// What the keeper has said so far.
#[derive(Debug, Clone, Default)]
struct Heard {
    pid: Option<u32>,
    failed: Option<String>,
    exit: Option<i32>,
    done: Option<(bool, u32)>,
    notes: Vec<String>,
    /// The report pipe reached EOF: the keeper is gone.
    closed: bool,
}

/// A child running under its keeper.
pub struct KeptChild {
    keeper: tokio::process::Child,
    keeper_pid: u32,
    lifeline: Option<OwnedFd>,
    heard: watch::Receiver<Heard>,
}

/// How a keeper's teardown went.
pub struct Ended {
    pub status: ExitStatus,
    pub killed: bool,
    pub adopted: u32,
    pub notes: Vec<String>,
}

/// A pipe whose both ends are close-on-exec from the moment they exist: other runtime threads
/// fork keepers at any time, and one forked between `pipe()` and a later `fcntl` would hold
/// this keeper's lifeline open — its stop would then wait for a EOF that never comes.
#[cfg(not(target_vendor = "apple"))]
fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot create a pipe for the keeper")
}

/// macOS has no `pipe2`: the two steps run under [`SPAWNING`], which every keeper spawn holds
/// too, so no fork can fall between them.
#[cfg(target_vendor = "apple")]
fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let _forks = SPAWNING.lock().unwrap_or_else(|e| e.into_inner());
    let (read, write) = nix::unistd::pipe().context("cannot create a pipe for the keeper")?;
    for fd in [&read, &write] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .context("cannot make the keeper's pipe close-on-exec")?;
    }
    Ok((read, write))
}

/// Held while a keeper is forked, where pipes cannot be created close-on-exec atomically.
#[cfg(target_vendor = "apple")]
static SPAWNING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn inheritable(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: F_SETFD on a descriptor this process owns; async-signal-safe.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl KeptChild {
    /// Starts `spec` under a keeper. Returns the handle, the child's pid, and its output pipes.
    pub async fn spawn(
        spec: &Spec,
    ) -> anyhow::Result<(KeptChild, u32, tokio::process::ChildStdout, tokio::process::ChildStderr)>
    {
        let (life_read, life_write) = pipe()?;
        let (report_read, report_write) = pipe()?;
        let args = keeper::Args {
            lifeline: life_read.as_raw_fd(),
            report: report_write.as_raw_fd(),
            grace: spec.grace,
            parent: std::process::id(),
            program: spec.program.clone(),
            args: spec.args.clone(),
        };
        let exe = std::env::current_exe()
            .context("cannot find this program's own path to start a keeper")?;
        let mut cmd = tokio::process::Command::new(exe);
        super::prepare(cmd.arg(keeper::SUBCOMMAND).args(args.to_argv()), spec);
        let (lr, rw) = (args.lifeline, args.report);
        // SAFETY: fcntl is async-signal-safe; it only touches the forked child's descriptors.
        unsafe {
            cmd.pre_exec(move || {
                inheritable(lr)?;
                inheritable(rw)
            });
        }
        #[cfg(target_vendor = "apple")]
        let _forks = SPAWNING.lock().unwrap_or_else(|e| e.into_inner());
        let mut keeper = cmd.spawn().with_context(|| {
            format!(
                "cannot start the keeper for `{}` in {}",
                spec.program.to_string_lossy(),
                spec.cwd.display()
            )
        })?;
        drop(life_read);
        drop(report_write);
        let keeper_pid = keeper.id().context("the keeper exited before its pid could be read")?;
        let stdout = keeper.stdout.take().context("the keeper's stdout pipe is missing")?;
        let stderr = keeper.stderr.take().context("the keeper's stderr pipe is missing")?;
        let heard = listen(report_read)?;
        let mut kept = KeptChild { keeper, keeper_pid, lifeline: Some(life_write), heard };
        let said = async {
            let _ =
                kept.heard.wait_for(|h| h.pid.is_some() || h.failed.is_some() || h.closed).await;
        };
        let _ = tokio::time::timeout(START_LIMIT, said).await;
        let heard = kept.heard.borrow().clone();
        match (heard.pid, heard.failed) {
            (Some(pid), _) => Ok((kept, pid, stdout, stderr)),
            (None, Some(why)) => {
                let _ = kept.keeper.wait().await;
                bail!("{why}")
            }
            (None, None) => {
                let _ = kept.keeper.start_kill();
                let status = kept
                    .keeper
                    .wait()
                    .await
                    .map(|s| describe(&s))
                    .unwrap_or_else(|e| e.to_string());
                bail!(
                    "the keeper for `{}` never said that it started it (keeper: {status}); is this binary intact?",
                    spec.program.to_string_lossy()
                )
            }
        }
    }

    pub fn keeper_pid(&self) -> u32 {
        self.keeper_pid
    }

    /// Waits for the child's own exit. Cancel-safe. An error means the keeper is gone without
    /// saying: [`KeptChild::stop`] then does its work and says what it found.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        let heard = self
            .heard
            .wait_for(|h| h.exit.is_some() || h.closed)
            .await
            .map(|h| h.clone())
            .unwrap_or_default();
        match heard.exit {
            Some(raw) => Ok(ExitStatus::from_raw(raw)),
            None => {
                let keeper = self
                    .keeper
                    .wait()
                    .await
                    .map(|s| describe(&s))
                    .unwrap_or_else(|e| e.to_string());
                Err(std::io::Error::other(format!(
                    "its keeper (pid {}) died ({keeper}) while the child ran",
                    self.keeper_pid
                )))
            }
        }
    }

    /// Closes the lifeline after telling the keeper the grace, and waits for its report: up to
    /// the grace and [`STOP_MARGIN`], or less once `hurry` says by when the stop must be over (a
    /// signal's budget, which may come while the stop already runs). Then the keeper is told
    /// to skip what is left of its grace ([`keeper::NOW`]) in time to report, and at the limit
    /// it is replaced: a keeper that died, or did not finish, has its work done by the tool —
    /// the child's group is SIGKILLed and every process still carrying the child's token is
    /// ended; the error says what was found and whether anything is still alive.
    pub async fn stop(
        &mut self,
        grace: Duration,
        hurry: impl Future<Output = Instant>,
        group: u32,
        token: &str,
    ) -> anyhow::Result<Ended> {
        if let Some(lifeline) = self.lifeline.take() {
            let mut end = std::fs::File::from(lifeline);
            // A keeper that is already gone makes this fail with EPIPE; closing is what counts.
            let _ = end.write_all(format!("grace {}\n", grace.as_millis()).as_bytes());
        }
        let mut limit = Instant::now() + grace + STOP_MARGIN;
        let mut hurry_at: Option<Instant> = None;
        let (mut told, mut hurried) = (false, false);
        tokio::pin!(hurry);
        let finished = loop {
            tokio::select! {
                _ = self.heard.wait_for(|h| h.done.is_some() || h.closed) => break true,
                _ = tokio::time::sleep_until(limit) => break false,
                _ = tokio::time::sleep_until(hurry_at.unwrap_or(limit)), if hurry_at.is_some() && !hurried => {
                    hurried = true;
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.keeper_pid as i32), keeper::NOW);
                }
                until = &mut hurry, if !told => {
                    told = true;
                    limit = limit.min(until);
                    hurry_at = Some(limit.checked_sub(REPORT_TIME).unwrap_or(limit));
                }
            }
        };
        if !finished {
            let _ = self.keeper.start_kill();
        }
        let keeper = self.keeper.wait().await.context("cannot reap the keeper")?;
        let heard = self.heard.borrow().clone();
        match (heard.done, heard.exit) {
            (Some((killed, adopted)), Some(raw)) if finished => {
                Ok(Ended { status: ExitStatus::from_raw(raw), killed, adopted, notes: heard.notes })
            }
            _ => {
                let what = if finished {
                    format!("died ({}) before it finished", describe(&keeper))
                } else {
                    "did not finish its teardown in time and was SIGKILLed".to_owned()
                };
                let cleanup = tokio::task::spawn_blocking({
                    let token = token.to_owned();
                    move || replace_keeper(group, &token)
                })
                .await
                .unwrap_or_else(|e| format!("the cleanup failed: {e}"));
                bail!("the keeper (pid {}) {what}; {cleanup}", self.keeper_pid)
            }
        }
    }
}

/// The keeper's teardown, done by the tool: SIGKILL to the child's group, then every process of
/// ours still carrying the child's token (those that left the group, reparented to init once
/// their keeper was gone). Says what it ended and what survived.
fn replace_keeper(group: u32, token: &str) -> String {
    if let Ok(raw) = i32::try_from(group) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let left = crate::process::carrying(token);
    if left.is_empty() {
        return format!("the tool killed its group {group}; nothing else carried its token");
    }
    let swept = crate::process::end(&left, Duration::ZERO);
    let ended: Vec<String> = swept.iter().map(ToString::to_string).collect();
    let alive: Vec<String> =
        left.iter().filter(|p| p.is_alive()).map(|p| p.pid.to_string()).collect();
    let mut said = format!("the tool killed its group {group} and ended {}", ended.join(", "));
    if !alive.is_empty() {
        said.push_str(&format!("; still alive: pid {}", alive.join(", ")));
    }
    said
}

/// Reads the report pipe in the background into a watch channel.
fn listen(read: OwnedFd) -> anyhow::Result<watch::Receiver<Heard>> {
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(read)
        .context("cannot read the keeper's report pipe")?;
    let (tx, rx) = watch::channel(Heard::default());
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(report) = Report::parse(&line) else {
                tracing::debug!("unexpected line from a keeper: {line:?}");
                continue;
            };
            tx.send_modify(|h| match report {
                Report::Started { pid } => h.pid = Some(pid),
                Report::Failed(why) => h.failed = Some(why),
                Report::Exited(raw) => h.exit = Some(raw),
                Report::Note(note) => h.notes.push(note),
                Report::Done { killed, adopted } => h.done = Some((killed, adopted)),
            });
        }
        tx.send_modify(|h| h.closed = true);
    });
    Ok(rx)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// Another thread forks children all the while keeper pipes are created, as the runtime's
    /// workers do; not one child may find one of those pipes among its descriptors.
    #[test]
    fn keeper_pipes_never_reach_a_child_forked_meanwhile() {
        let done = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let forker = {
            let (done, seen) = (done.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut children = 0;
                while !done.load(Ordering::Relaxed) {
                    let out = std::process::Command::new("ls")
                        .args(["-l", "/proc/self/fd"])
                        .output()
                        .expect("run ls");
                    children += 1;
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    seen.lock().unwrap().extend(
                        text.split_whitespace()
                            .filter(|w| w.starts_with("pipe:["))
                            .map(str::to_owned),
                    );
                }
                children
            })
        };
        let mut made = HashSet::new();
        for _ in 0..20_000 {
            let (read, write) = pipe().expect("a pipe");
            made.insert(format!(
                "pipe:[{}]",
                std::fs::File::from(read).metadata().expect("fstat").ino()
            ));
            drop(write);
        }
        done.store(true, Ordering::Relaxed);
        let children = forker.join().expect("the forking thread");
        let leaked = seen.lock().unwrap().iter().filter(|p| made.contains(*p)).count();
        assert!(children > 0, "no child was forked while the pipes were made");
        assert_eq!(leaked, 0, "{leaked} keeper pipe descriptors reached {children} children");
    }
}
