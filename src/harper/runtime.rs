//! The runtime Harper runs on, as this machine has it: the version of the first `node` (or `bun`)
//! on the PATH, asked once per process. `--plan` shows it; the package cache keys installs by
//! node's module ABI, because npm runs on that node and the native modules it compiles while
//! installing Harper (harperdb's segfault-handler, through node-gyp) load on that ABI only.
//!
//! Not for choosing a runtime: the plan does that, and the instance runs the program by name.

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
            (None, _) => format!("{}: {}", self.program, self.error.as_deref().unwrap_or("no version")),
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
    NODE.get_or_init(|| ask("node", &["-p", "process.version + ' ' + process.versions.modules"]))
}

/// The bun on the PATH.
pub fn bun() -> &'static Found {
    static BUN: OnceLock<Found> = OnceLock::new();
    BUN.get_or_init(|| ask("bun", &["--version"]))
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
    let missing = |error: String| Found { program, version: None, modules: None, error: Some(error) };
    let (status, stdout) = match run_bounded(program, args) {
        Ok(Some(answer)) => answer,
        Ok(None) => return missing(format!("`{program}` did not answer within {}s", ASK_LIMIT.as_secs())),
        Err(e) => return missing(format!("cannot run `{program}` from the PATH ({e})")),
    };
    let text = String::from_utf8_lossy(&stdout);
    let line = text.lines().next().unwrap_or("").trim();
    let sane = |s: &str| !s.is_empty() && s.len() <= MAX_ANSWER && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    let mut words = line.split(' ');
    let (version, modules) = (words.next().unwrap_or(""), words.next());
    if !status.success() || !sane(version) || modules.is_some_and(|m| !sane(m)) || words.next().is_some() {
        return missing(format!("`{program}` did not say its version ({})", crate::supervise::describe(&status)));
    }
    Found { program, version: Some(version.to_owned()), modules: modules.map(str::to_owned), error: None }
}

/// Runs `program`, reading at most [`MAX_READ`] bytes of its stdout; `None` when it has not
/// exited within [`ASK_LIMIT`], in which case it is killed and reaped. The reader is a thread of
/// its own, waited for through a channel, so a grandchild that keeps the pipe open cannot hold
/// the answer back either.
fn run_bounded(program: &str, args: &[&str]) -> std::io::Result<Option<(std::process::ExitStatus, Vec<u8>)>> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(program).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
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
            None if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(5)),
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
        let node = |version: &str| Found { program: "node", version: Some(version.into()), modules: None, error: None };
        for (version, has) in [("v20.20.2", false), ("v22.0.0", false), ("v22.1.0", true), ("v24.22.3", true), ("v26.12.1", true), ("v100.0.0", true)] {
            assert_eq!(node(version).compile_cache(), has, "{version}");
        }
        assert!(!node("nightly").compile_cache());
        assert!(!Found { program: "bun", version: Some("24.0.0".into()), modules: None, error: None }.compile_cache());
    }
}
