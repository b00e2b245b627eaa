//! Waiting for an address without sleeping blindly. A clean release removes the slot's record,
//! so on Linux a waiting acquire watches the pool directory (inotify) and looks again the
//! moment a record goes; the poll interval remains the ceiling, for owners that die (the
//! kernel drops their lock without touching the directory) and for ports that come free.
//! Elsewhere, and if inotify is unavailable, waiting is the plain poll.

use std::path::Path;
use std::time::Duration;

/// Blocks until something in the pool directory may have changed, or `limit` passes.
pub struct Waker {
    #[cfg(target_os = "linux")]
    inotify: Option<std::os::fd::OwnedFd>,
}

impl Waker {
    pub fn new(dir: &Path) -> Waker {
        Waker {
            #[cfg(target_os = "linux")]
            inotify: linux::watch(dir),
        }
    }

    pub fn wait(&self, limit: Duration) {
        #[cfg(target_os = "linux")]
        if let Some(fd) = &self.inotify {
            linux::wait(fd, limit);
            return;
        }
        std::thread::sleep(limit);
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;
    use std::time::Duration;

    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    /// An inotify descriptor watching `dir` for removed and renamed-away files; `None` if the
    /// system will not give one (the caller then polls).
    pub fn watch(dir: &Path) -> Option<OwnedFd> {
        let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: a plain syscall without pointers.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mask = libc::IN_DELETE | libc::IN_MOVED_FROM;
        // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) };
        (wd >= 0).then_some(fd)
    }

    /// Waits for an event or `limit`, then drains whatever events are queued.
    pub fn wait(fd: &OwnedFd, limit: Duration) {
        let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
        let mut buf = [0u8; 4096];
        // SAFETY: reading into a local buffer of the given length from a non-blocking descriptor.
        while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}
