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

fn ask(program: &'static str, args: &[&str]) -> Found {
    let missing = |error: String| Found { program, version: None, modules: None, error: Some(error) };
    let out = match Command::new(program).args(args).stdin(std::process::Stdio::null()).output() {
        Ok(out) => out,
        Err(e) => return missing(format!("cannot run `{program}` from the PATH ({e})")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("").trim();
    let sane = |s: &str| !s.is_empty() && s.len() <= MAX_ANSWER && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    let mut words = line.split(' ');
    let (version, modules) = (words.next().unwrap_or(""), words.next());
    if !out.status.success() || !sane(version) || modules.is_some_and(|m| !sane(m)) || words.next().is_some() {
        return missing(format!("`{program}` did not say its version ({})", crate::supervise::describe(&out.status)));
    }
    Found { program, version: Some(version.to_owned()), modules: modules.map(str::to_owned), error: None }
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
