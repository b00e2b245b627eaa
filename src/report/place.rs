//! Where in the repository a shard is defined: the plan file relative to the checkout and the
//! line of each shard's `name:`, for annotations (workflow commands and check runs) that point
//! at the shard instead of nowhere.

use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Place {
    /// The plan, relative to the repository, `/`-separated.
    pub path: String,
    /// The line of each shard's `name:` in the plan.
    pub lines: BTreeMap<String, u32>,
}

impl Place {
    /// `plan_file` as seen from `workspace` (`$GITHUB_WORKSPACE`; else the current directory).
    pub fn of(plan_file: &Path, workspace: Option<&Path>) -> Place {
        Place {
            path: repo_path(plan_file, workspace),
            lines: std::fs::read_to_string(plan_file).map(|t| name_lines(&t)).unwrap_or_default(),
        }
    }

    /// The line where `shard` is defined; a split shard's parts (`db/2`) all are where `db` is.
    pub fn line(&self, shard: &str) -> u32 {
        let group = shard.split('/').next().unwrap_or(shard);
        self.lines.get(group).copied().unwrap_or(1)
    }
}

/// `plan_file` relative to the repository checkout, `/`-separated; the file name alone when it
/// lies outside.
fn repo_path(plan_file: &Path, workspace: Option<&Path>) -> String {
    let full = std::fs::canonicalize(plan_file).unwrap_or_else(|_| plan_file.to_path_buf());
    let base = workspace.and_then(|w| std::fs::canonicalize(w).ok()).or_else(|| std::env::current_dir().ok());
    let rel = base.as_deref().and_then(|b| full.strip_prefix(b).ok()).unwrap_or(plan_file);
    let rel = if rel.is_absolute() { Path::new(rel.file_name().unwrap_or_default()) } else { rel };
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The line (1-based) of every `name: X` in a plan's text, by `X`: good enough to point an
/// annotation at a shard without keeping source positions past the plan's loading.
fn name_lines(text: &str) -> BTreeMap<String, u32> {
    let mut lines = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start().trim_start_matches("- ").trim_start();
        if let Some(value) = line.strip_prefix("name:") {
            let value = value.split(" #").next().unwrap_or("").trim().trim_matches(['"', '\'']);
            lines.entry(value.to_owned()).or_insert(i as u32 + 1);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_are_found_on_their_lines_quoted_or_not() {
        let plan = "version: 1\nshards:\n  - name: ops\n    run: x\n  - run: y\n    name: \"db\"  # split\n";
        let place = Place { path: "p.yml".into(), lines: name_lines(plan) };
        assert_eq!(place.line("ops"), 3);
        assert_eq!(place.line("db/2"), 6);
        assert_eq!(place.line("unknown"), 1);
    }
}
