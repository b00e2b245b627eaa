//! The runtime Harper runs on, as this machine has it: the version of the first `node` (or `bun`)
//! on the PATH, asked once per process. `--plan` shows it; the package cache keys installs by
//! node's module ABI, because npm runs on that node and the native modules it compiles while
//! installing Harper (harperdb's segfault-handler, through node-gyp) load on that ABI only.
//!
//! Asking is a whole node start (28–77 ms, BENCHMARKS.md) before a run's first instance, so the
//! answer is remembered in the cache's `runtimes/`, keyed by the binary the PATH leads to: its
//! real path, size, inode and modification time. Only a binary named as the program is
//! remembered: a version manager's shim (mise, volta: a link to a program of another name; asdf:
//! a script) picks the node by folder or variable, so its answer is asked every time.
//!
//! Not for choosing a runtime: the plan does that, and the instance runs the program by name.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Serialize;

use crate::plan::Runtime;

/// What one runtime program says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// The program run by name, as an instance runs it: `node` or `bun`.
    pub program: &'static str,
    /// `v24.22.3` (node), `1.2.19` (bun); `None` when it could not be run.
    pub version: Option<String>,
    /// node's `process.versions.modules`, the ABI of native modules it loads.
    pub modules: Option<String>,
    /// Why there is no version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Found {
    /// `node v24.22.3 (modules ABI 137)`, or why there is none.
    pub fn describe(&self) -> String {
        match (&self.version, &self.modules) {
            (Some(v), Some(m)) => format!("{} {v} (modules ABI {m})", self.program),
            (Some(v), None) => format!("{} {v}", self.program),
            (None, _) => {
                format!("{}: {}", self.program, self.error.as_deref().unwrap_or("no version"))
            }
        }
    }

    /// Whether this is a node that caches compiled code itself (`NODE_COMPILE_CACHE`, node
    /// 22.1 and later).
    pub fn compile_cache(&self) -> bool {
        let version = match (self.program, &self.version) {
            ("node", Some(version)) => version,
            _ => return false,
        };
        let mut numbers = version.trim_start_matches('v').split('.').map(|n| n.parse::<u32>().ok());
        match (numbers.next().flatten(), numbers.next().flatten()) {
            (Some(major), Some(minor)) => (major, minor) >= (22, 1),
            _ => false,
        }
    }
}

/// The node on the PATH: the runtime of `runtime: node`, and the one npm runs on.
pub fn node() -> &'static Found {
    static NODE: OnceLock<Found> = OnceLock::new();
    NODE.get_or_init(|| {
        remembered("node", &["-p", "process.version + ' ' + process.versions.modules"])
    })
}

/// The bun on the PATH.
pub fn bun() -> &'static Found {
    static BUN: OnceLock<Found> = OnceLock::new();
    BUN.get_or_init(|| remembered("bun", &["--version"]))
}

/// `program`'s answer from the cache's `runtimes/` when the binary the PATH leads to answered
/// before, else asked (and kept there when the cache exists and the binary may be remembered).
fn remembered(program: &'static str, args: &[&str]) -> Found {
    let folder = super::install::cache_dir().ok().map(|cache| cache.join("runtimes"));
    let Some((folder, key)) = folder.zip(binary_identity(program)) else {
        return ask(program, args);
    };
    let file = folder.join(key);
    let kept = super::install::check_entry(&folder, "the cache's runtime answers")
        .ok()
        .and_then(|()| crate::plan::file::read_bounded(&file, MAX_ANSWER as u64 * 2).ok())
        .and_then(|bytes| parse(program, &String::from_utf8_lossy(&bytes)));
    if let Some(found) = kept {
        return found;
    }
    let found = ask(program, args);
    if let (Some(version), Some(parent)) = (&found.version, folder.parent().filter(|p| p.is_dir()))
    {
        let line = format!("{version} {}", found.modules.as_deref().unwrap_or_default());
        let kept = crate::private_dir::ensure_shared(
            &folder,
            "the cache's runtime answers",
            "HARPER_SHARD_CACHE_DIR",
            crate::private_dir::Sharing::Group,
        )
        .and_then(|()| write_replacing(&file, line.trim_end()));
        if let Err(e) = kept {
            tracing::debug!(
                "the answer of {program} is not remembered in {}: {e:#}",
                parent.display()
            );
        }
    }
    found
}

/// Writes `text` into `file` through a temporary name renamed over it: a reader sees the old
/// answer or the new one, never half of one.
fn write_replacing(file: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let staging = file.with_extension(format!("partial-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&staging, text)
        .with_context(|| format!("cannot write {}", staging.display()))?;
    std::fs::rename(&staging, file)
        .with_context(|| format!("cannot move {} into place", staging.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&staging);
        })
}

/// The key of the binary `program` runs as from the PATH (found as `execvp` finds it): a hash of
/// its real path, size, inode and modification time; `None` when it is not found, not an ELF
/// binary, or its real name is not `program` (a shim that chooses the version itself).
fn binary_identity(program: &str) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|dir| if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir }.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })?;
    let real = std::fs::canonicalize(found).ok()?;
    if real.file_name()? != program {
        return None;
    }
    let mut file = std::fs::File::open(&real).ok()?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).ok()?;
    let meta = file.metadata().ok()?;
    if &magic != b"\x7fELF" {
        return None;
    }
    let what = format!(
        "{}\0{}\0{}\0{}\0{}.{}",
        real.display(),
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    Some(format!("{program}-{:016x}", super::template::stable_hash(what.as_bytes())))
}

/// The program an instance of `runtime` runs on; `exec` runs `bin` itself, which the tool cannot
/// look into, so it has none.
pub fn of(runtime: Runtime) -> Option<&'static Found> {
    match runtime {
        Runtime::Node => Some(node()),
        Runtime::Bun => Some(bun()),
        Runtime::Exec => None,
    }
}

/// The longest answer taken: a version is a few characters, anything longer is not one.
const MAX_ANSWER: usize = 64;
/// What is read of the program's output at most, and how long it may take to answer: a `node`
/// on the PATH that hangs or floods its output must not hang or bloat the dry run.
const MAX_READ: u64 = 4096;
const ASK_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

fn ask(program: &'static str, args: &[&str]) -> Found {
    let missing =
        |error: String| Found { program, version: None, modules: None, error: Some(error) };
    let (status, stdout) = match run_bounded(program, args) {
        Ok(Some(answer)) => answer,
        Ok(None) => {
            return missing(format!("`{program}` did not answer within {}s", ASK_LIMIT.as_secs()));
        }
        Err(e) => return missing(format!("cannot run `{program}` from the PATH ({e})")),
    };
    match parse(program, &String::from_utf8_lossy(&stdout)).filter(|_| status.success()) {
        Some(found) => found,
        None => missing(format!(
            "`{program}` did not say its version ({})",
            crate::supervise::describe(&status)
        )),
    }
}

/// The first line of an answer, `<version>[ <modules ABI>]`, when it is one.
fn parse(program: &'static str, text: &str) -> Option<Found> {
    let line = text.lines().next().unwrap_or("").trim();
    let sane = |s: &str| {
        !s.is_empty()
            && s.len() <= MAX_ANSWER
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    };
    let mut words = line.split(' ');
    let (version, modules) = (words.next().unwrap_or(""), words.next());
    if !sane(version) || modules.is_some_and(|m| !sane(m)) || words.next().is_some() {
        return None;
    }
    Some(Found {
        program,
        version: Some(version.to_owned()),
        modules: modules.map(str::to_owned),
        error: None,
    })
}

/// Runs `program`, reading at most [`MAX_READ`] bytes of its stdout; `None` when it has not
/// exited within [`ASK_LIMIT`], in which case it is killed and reaped. The reader is a thread of
/// its own, waited for through a channel, so a grandchild that keeps the pipe open cannot hold
/// the answer back either.
fn run_bounded(
    program: &str,
    args: &[&str],
) -> std::io::Result<Option<(std::process::ExitStatus, Vec<u8>)>> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.take(MAX_READ).read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    let deadline = std::time::Instant::now() + ASK_LIMIT;
    let stdout = rx.recv_timeout(ASK_LIMIT).unwrap_or_default();
    loop {
        match child.try_wait()? {
            Some(status) => return Ok(Some((status, stdout))),
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_caches_its_compiled_code_from_22_1_on() {
        let node = |version: &str| Found {
            program: "node",
            version: Some(version.into()),
            modules: None,
            error: None,
        };
        for (version, has) in [
            ("v20.20.2", false),
            ("v22.0.0", false),
            ("v22.1.0", true),
            ("v24.22.3", true),
            ("v26.12.1", true),
            ("v100.0.0", true),
        ] {
            assert_eq!(node(version).compile_cache(), has, "{version}");
        }
        assert!(!node("nightly").compile_cache());
        assert!(
            !Found { program: "bun", version: Some("24.0.0".into()), modules: None, error: None }
                .compile_cache()
        );
    }
}
