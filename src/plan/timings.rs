//! Recorded timings: what the last run measured, read back to balance splits and partitions.
//!
//! The report writes this file (`timings.json`) after every run; CI caches it between runs.
//! A missing or unreadable file is not an error: balancing falls back to counting files.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const TIMINGS_VERSION: u32 = 1;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub version: u32,
    /// Seconds per shard name (a split shard's parts by their own names).
    #[serde(default)]
    pub shards: BTreeMap<String, f64>,
    /// Seconds per test file, relative to the plan's directory.
    #[serde(default)]
    pub files: BTreeMap<String, f64>,
}

impl Timings {
    /// Reads `path`; `Ok(None)` when there is no such file.
    pub fn read(path: &Path) -> anyhow::Result<Option<Timings>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("cannot read timings {}: {e}", path.display())),
        };
        let timings: Timings = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("timings {} are not valid ({e}); delete the file to start afresh", path.display())
        })?;
        Ok((timings.version == TIMINGS_VERSION).then_some(timings))
    }

    pub fn shard(&self, name: &str) -> Option<Duration> {
        self.shards.get(name).and_then(|s| Duration::try_from_secs_f64(*s).ok())
    }

    pub fn file(&self, name: &str) -> Option<f64> {
        self.files.get(name).copied().filter(|s| s.is_finite() && *s >= 0.0)
    }
}
