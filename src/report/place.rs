//! Where in the repository a shard is defined: the plan file relative to the checkout and the
//! line of each shard's `name:`, for annotations (workflow commands and check runs) that point
//! at the shard instead of nowhere. The lines are the parser's, kept on each resolved shard.

use std::collections::BTreeMap;
use std::path::Path;

use crate::plan::Plan;

#[derive(Debug, Clone, Default)]
pub struct Place {
    /// The plan, relative to the repository, `/`-separated.
    pub path: String,
    /// The line of each shard's `name:` in the plan, by shard (a split shard's parts are each
    /// where their group's `name:` is).
    pub lines: BTreeMap<String, u32>,
}

impl Place {
    /// `plan`'s file as seen from `workspace` (`$GITHUB_WORKSPACE`; else the current directory).
    pub fn of(plan: &Plan, workspace: Option<&Path>) -> Place {
        Place {
            path: repo_path(&plan.file, workspace),
            lines: plan
                .shards
                .iter()
                .filter(|s| s.at.line > 0)
                .map(|s| (s.name.clone(), s.at.line))
                .collect(),
        }
    }

    /// The line where `shard` is defined; the first line when that is not known.
    pub fn line(&self, shard: &str) -> u32 {
        self.lines.get(shard).copied().unwrap_or(1)
    }
}

/// `plan_file` relative to the repository checkout, `/`-separated; the file name alone when it
/// lies outside.
fn repo_path(plan_file: &Path, workspace: Option<&Path>) -> String {
    let full = std::fs::canonicalize(plan_file).unwrap_or_else(|_| plan_file.to_path_buf());
    let base = workspace
        .and_then(|w| std::fs::canonicalize(w).ok())
        .or_else(|| std::env::current_dir().ok());
    let rel = base.as_deref().and_then(|b| full.strip_prefix(b).ok()).unwrap_or(plan_file);
    let rel = if rel.is_absolute() { Path::new(rel.file_name().unwrap_or_default()) } else { rel };
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}
