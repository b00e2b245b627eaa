//! Processes left behind: the `daemon` and `double-fork` directives.
//!
//! - `daemon`: a child that calls `setsid()`, so signals to the server's process group miss it.
//!   Only the token sweep (it keeps `HARPER_SHARD_TOKEN`) or the keeper's subreaper duty finds it.
//! - `double-fork`: a grandchild whose parent exits at once, so it is reparented to the nearest
//!   subreaper while staying in the process group.
//!
//! Both sleep forever. They keep stdout and stderr (a careless daemon does) and, with `Keep`, their
//! inherited copies of the listening sockets, so the ports stay bound after the server exits.
//! The forks happen while the server is single-threaded, so the children may run ordinary code.

use std::fs::File;
use std::io::Read;
use std::os::fd::RawFd;
use std::path::Path;

use nix::sys::signal::{self, SigHandler, SigmaskHow, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{self, ForkResult, Pid};

use crate::Fatal;
use crate::directives::Listeners;
use crate::rootpath;
use crate::signals;

/// What a child inherits from the server and may have to shed.
pub struct Held {
    pub listeners: Vec<RawFd>,
    pub ignore_term: bool,
}

pub fn daemon(held: &Held, listeners: Listeners) -> Result<Pid, Fatal> {
    let (reader, writer) =
        unistd::pipe().map_err(|e| Fatal::usage(format!("daemon: pipe: {e}")))?;
    // SAFETY: the process is single-threaded here (no connection thread exists before the
    // accept loop), so the child may do anything the parent could.
    match unsafe { unistd::fork() }.map_err(fork_failed)? {
        ForkResult::Parent { child } => {
            drop(writer);
            // Until the child has shed what it must not hold: the ready line comes after.
            let _ = File::from(reader).read_to_end(&mut Vec::new());
            Ok(child)
        }
        ForkResult::Child => {
            drop(reader);
            let _ = unistd::setsid();
            sleep_forever(held, listeners, writer)
        }
    }
}

pub fn double_fork(held: &Held, listeners: Listeners) -> Result<Pid, Fatal> {
    let (reader, writer) =
        unistd::pipe().map_err(|e| Fatal::usage(format!("double-fork: pipe: {e}")))?;
    // SAFETY: as in `daemon`, the process is single-threaded.
    match unsafe { unistd::fork() }.map_err(fork_failed)? {
        ForkResult::Child => {
            drop(reader);
            // SAFETY: the intermediate child is single-threaded too.
            match unsafe { unistd::fork() } {
                Ok(ForkResult::Child) => sleep_forever(held, listeners, writer),
                Ok(ForkResult::Parent { child }) => {
                    let _ = unistd::write(&writer, child.as_raw().to_string().as_bytes());
                    // SAFETY: `_exit` skips the parent's atexit handlers and buffers, as a forked
                    // child must.
                    unsafe { libc::_exit(0) }
                }
                // SAFETY: as above.
                Err(_) => unsafe { libc::_exit(1) },
            }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut text = String::new();
            let read = File::from(reader).read_to_string(&mut text);
            let _ = waitpid(child, None);
            match (read, text.trim().parse::<i32>()) {
                (Ok(_), Ok(pid)) => Ok(Pid::from_raw(pid)),
                _ => Err(Fatal::usage(
                    "double-fork: the intermediate child could not fork the grandchild",
                )),
            }
        }
    }
}

/// Appends the pid as a line, so `daemon` and `double-fork` together leave both.
pub fn publish_pid(pid: Pid, path: &Path) -> Result<(), Fatal> {
    rootpath::append_line(path, &pid.to_string()).map_err(|e| {
        Fatal::usage(format!("cannot write the child's pid to {}: {e}", path.display()))
    })
}

/// Sheds the listeners (unless kept) and the stop-signal mask, then closes `settled`, which the
/// server waits on: it prints the ready line only once no child holds what it should not.
fn sleep_forever(held: &Held, listeners: Listeners, settled: std::os::fd::OwnedFd) -> ! {
    if listeners == Listeners::Close {
        for &fd in &held.listeners {
            // SAFETY: the fd is this process's own copy, and nothing in it uses the sockets.
            unsafe { libc::close(fd) };
        }
    }
    if !held.ignore_term {
        restore_stop_signals();
    }
    drop(settled);
    loop {
        unistd::pause();
    }
}

/// The server blocks SIGTERM and SIGINT to read them from a signalfd; a child that should die of
/// them like any process needs them back.
fn restore_stop_signals() {
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signals::stop_set()), None);
}

fn fork_failed(e: nix::Error) -> Fatal {
    Fatal::usage(format!("cannot fork: {e}"))
}
