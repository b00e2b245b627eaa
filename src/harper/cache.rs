//! What the cache holds — installed packages, boot templates, key sets (JWT and TLS) — for `cache status`
//! and `cache clear`. An entry in use is left alone: a package or template while another run
//! holds its lock (installing or building it exclusively, using it shared), a key set while an
//! instance holds it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{install, template};

/// One thing in the cache.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub kind: &'static str,
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// What it is (a package's spec) or is for (a template's Harper), when known.
    pub detail: Option<String>,
}

/// Every package, template and key set, in that order.
pub fn survey(cache: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    let kinds = [
        ("package", cache.join("packages")),
        ("template", template::templates_dir(cache)),
        ("keys", cache.join("keys")),
    ];
    for (kind, dir) in kinds {
        let Ok(listing) = std::fs::read_dir(&dir) else { continue };
        let mut found: Vec<Entry> = listing
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let detail = match kind {
                    "template" => template::cached(cache, &name)
                        .map(|t| format!("{} as {}", t.meta.entry, t.meta.username)),
                    "package" => install::marked_spec(&e.path()),
                    _ => None,
                };
                Entry { kind, name, path: e.path(), bytes: size(&e.path()), detail }
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        entries.extend(found);
    }
    entries
}

/// Bytes under `path`, links not followed.
fn size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).map(|d| d.flatten().map(|e| size(&e.path())).sum()).unwrap_or(0)
}

/// Removes every entry no one is using; returns what was removed and what was kept, with why.
pub fn clear(cache: &Path) -> (Vec<Entry>, Vec<(Entry, String)>) {
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for entry in survey(cache) {
        let lock = entry.path.with_file_name(format!("{}.lock", lock_name(&entry)));
        let held = match super::lock::try_lock(&lock) {
            Ok(held) => held,
            Err(e) => {
                kept.push((entry, format!("{e:#}")));
                continue;
            }
        };
        let Some(_held) = held else {
            kept.push((entry, "in use by a running harper-shard".into()));
            continue;
        };
        match std::fs::remove_dir_all(&entry.path) {
            Ok(()) => removed.push(entry),
            Err(e) => kept.push((entry, e.to_string())),
        }
    }
    (removed, kept)
}

/// The name of an entry's lock file, beside it: `<name>.lock` (a partial install's is its
/// package's).
fn lock_name(entry: &Entry) -> String {
    entry
        .name
        .strip_suffix(".partial")
        .unwrap_or(&entry.name)
        .split(".partial-")
        .next()
        .unwrap_or(&entry.name)
        .to_owned()
}

/// The cache directory this process uses.
pub fn dir() -> anyhow::Result<PathBuf> {
    install::cache_dir()
}
