//! ROOTPATH on disk: creating it, the `hdb.pid` claim, and `log/hdb.log`.
//!
//! Failures use Harper's (node's) wording, `Error: ENOTDIR: not a directory, mkdir '…'`, and its
//! exit statuses: 1 for a ROOTPATH that cannot be made or written, 4 for a live `hdb.pid`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal;
use nix::unistd::Pid;

use crate::Fatal;

pub struct RootPath {
    dir: PathBuf,
}

impl RootPath {
    /// `mkdir -p ROOTPATH` and `ROOTPATH/log`. `root` is `None` only if the installer prompt was
    /// skipped, which `Config::missing_answer` prevents.
    pub fn create(root: Option<&Path>) -> Result<Self, Fatal> {
        let Some(root) = root else {
            return Err(Fatal::usage("no --ROOTPATH given"));
        };
        let dir = std::path::absolute(root).map_err(|e| fs_error(&e, "realpath", root))?;
        for dir in [dir.clone(), dir.join("log")] {
            fs::create_dir_all(&dir).map_err(|e| fs_error(&e, "mkdir", &dir))?;
        }
        Ok(RootPath { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("hdb.pid")
    }

    /// Refuses to start over a live instance (exit 4), then writes our own pid.
    pub fn claim_pid(&self) -> Result<(), Fatal> {
        if let Some(pid) = live_pid(&self.pid_file()) {
            return Err(Fatal::new(4, format!("Error: HarperDB is already running (pid: {pid})")));
        }
        let file = self.pid_file();
        fs::write(&file, std::process::id().to_string()).map_err(|e| fs_error(&e, "open", &file))
    }

    pub fn release_pid(&self) {
        let _ = fs::remove_file(self.pid_file());
    }

    /// Appends one line to `log/hdb.log`; a log that cannot be written is not worth dying for.
    pub fn log(&self, message: &str) {
        let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let line = format!("{}.{:03} [info] [main/0]: {message}", at.as_secs(), at.subsec_millis());
        let _ = append_line(&self.dir.join("log").join("hdb.log"), &line);
    }
}

/// One `write(2)` in append mode, so lines from several processes never interleave.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Appends `<text> <unix-nanos>`, the stamp a test compares across processes (`record`,
/// `term-file`); a failure is said on stderr, naming the directive, and otherwise ignored.
pub fn append_stamped(path: &Path, directive: &str, text: &str) {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    if let Err(e) = append_line(path, &format!("{text} {nanos}")) {
        crate::console::err_line(&format!(
            "fake-harper: cannot append to the {directive} file {}: {e}",
            path.display()
        ));
    }
}

/// The pid in `hdb.pid` if it names a live process other than us.
fn live_pid(file: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let ours = i32::try_from(std::process::id()).ok()?;
    if pid <= 0 || pid == ours {
        return None;
    }
    match signal::kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => Some(pid),
        Err(_) => None,
    }
}

fn fs_error(error: &io::Error, syscall: &str, path: &Path) -> Fatal {
    let code = error
        .raw_os_error()
        .map_or_else(|| "EIO".to_string(), |n| format!("{:?}", Errno::from_raw(n)));
    let text = error
        .raw_os_error()
        .map_or_else(|| error.to_string(), |n| Errno::from_raw(n).desc().to_lowercase());
    Fatal::new(1, format!("Error: {code}: {text}, {syscall} '{}'", path.display()))
}
