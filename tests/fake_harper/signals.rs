//! SIGTERM and SIGINT as file-descriptor events.
//!
//! The signals are blocked before any thread exists and read from a signalfd, so every wait in
//! the server (the delay, the chatter interval, the accept loop) can end the moment one arrives,
//! and the exit path runs as ordinary code rather than inside a signal handler. Under
//! `ignore-term` they are read all the same, to be noted (`term-file`) and not obeyed.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::{Fatal, rootpath};

const STOP: [Signal; 2] = [Signal::SIGTERM, Signal::SIGINT];

/// The `ignore-term` directive. Inherited by forked children, which is the point.
pub fn ignore_term() -> Result<(), Fatal> {
    for sig in STOP {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { signal::signal(sig, SigHandler::SigIgn) }
            .map_err(|e| Fatal::usage(format!("cannot ignore {sig}: {e}")))?;
    }
    Ok(())
}

pub fn stop_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in STOP {
        set.add(sig);
    }
    set
}

pub struct Signals {
    fd: SignalFd,
    /// `ignore-term`: a stop signal is noted, never obeyed.
    ignore: bool,
    /// `term-file`: where each stop signal is noted as it is read.
    note: Option<PathBuf>,
}

impl Signals {
    /// Blocks SIGTERM and SIGINT in this (still only) thread and everything it spawns, to read
    /// them from a signalfd. Under `ignore-term` they stay ignored (`SIG_IGN`) too: a blocked
    /// signal is queued all the same, so it can still be noted.
    pub fn catch(ignore: bool, note: Option<PathBuf>) -> Result<Self, Fatal> {
        let set = stop_set();
        set.thread_block()
            .map_err(|e| Fatal::usage(format!("cannot block SIGTERM/SIGINT: {e}")))?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Fatal::usage(format!("cannot create a signalfd: {e}")))?;
        Ok(Signals { fd, ignore, note })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Consumes the pending stop signals, noting each; true if one says stop.
    pub fn received(&self) -> bool {
        let mut stop = false;
        while let Ok(Some(info)) = self.fd.read_signal() {
            self.write_note(info.ssi_signo);
            stop |= !self.ignore;
        }
        stop
    }

    /// `<SIGNAL> <unix-nanos>` appended to the `term-file`: the one trace of a signal that
    /// `ignore-term` does not obey, and the moment the stop of one that it does began.
    fn write_note(&self, signo: u32) {
        let Some(path) = &self.note else { return };
        let name = i32::try_from(signo)
            .ok()
            .and_then(|n| Signal::try_from(n).ok())
            .map_or_else(|| format!("signal-{signo}"), |s| s.as_str().to_owned());
        rootpath::append_stamped(path, "term-file", &name);
    }

    /// Sleeps for `duration`; true if a stop signal arrived first.
    pub fn wait(&self, duration: Duration) -> bool {
        let deadline = Instant::now().checked_add(duration);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let mut fds = [PollFd::new(self.fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout(left)) {
                Ok(0) if left.is_some_and(|l| l.is_zero()) => return false,
                Ok(0) | Err(Errno::EINTR) => {}
                Ok(_) if self.received() => return true,
                Ok(_) => {}
                Err(_) => {
                    thread::sleep(left.unwrap_or(Duration::from_secs(3600)));
                    return false;
                }
            }
        }
    }
}

/// Milliseconds rounded up, so a poll never returns just short of its deadline; `None` is forever.
pub fn timeout(left: Option<Duration>) -> PollTimeout {
    let Some(left) = left else {
        return PollTimeout::NONE;
    };
    let millis = left.as_micros().div_ceil(1000);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}
