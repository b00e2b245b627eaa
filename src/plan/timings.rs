//! Recorded timings: what the last run measured, read back to balance splits and partitions.
//!
//! The report writes this file (`timings.json`) after every run; CI caches it between runs.
//! A missing file is not an error: balancing falls back to counting files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::file::{self, ReadError};
use super::limits::TIMINGS_BYTES;

pub const TIMINGS_VERSION: u32 = 1;

/// A recorded time past this is not a measurement (a shard's timeout is at most a day); it is
/// ignored rather than allowed to outweigh every other shard.
const PLAUSIBLE_SECS: f64 = 7.0 * 24.0 * 3600.0;

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

/// Why a timings file was not used.
#[derive(Debug, thiserror::Error)]
pub enum TimingsError {
    /// Not a regular file, too large, or unreadable: the path is wrong, not the contents.
    #[error("cannot read timings {}: {error}", path.display())]
    File { path: PathBuf, error: ReadError },
    #[error("timings {} are not valid ({why}); delete the file to start afresh", path.display())]
    Invalid { path: PathBuf, why: String },
}

impl Timings {
    /// Reads `path` (a regular file of at most 16 MiB); `Ok(None)` when there is no such file
    /// or it is of another version.
    pub fn read(path: &Path) -> Result<Option<Timings>, TimingsError> {
        let bytes = match file::read_bounded(path, TIMINGS_BYTES) {
            Ok(bytes) => bytes,
            Err(ReadError::NotFound) => return Ok(None),
            Err(error) => return Err(TimingsError::File { path: path.to_path_buf(), error }),
        };
        let timings: Timings = serde_json::from_slice(&bytes)
            .map_err(|e| TimingsError::Invalid { path: path.to_path_buf(), why: e.to_string() })?;
        Ok((timings.version == TIMINGS_VERSION).then_some(timings))
    }

    pub fn shard(&self, name: &str) -> Option<Duration> {
        self.shards.get(name).copied().filter(|s| plausible(*s)).map(Duration::from_secs_f64)
    }

    pub fn file(&self, name: &str) -> Option<f64> {
        self.files.get(name).copied().filter(|s| plausible(*s))
    }
}

fn plausible(secs: f64) -> bool {
    secs.is_finite() && (0.0..=PLAUSIBLE_SECS).contains(&secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_recorded_times_are_ignored() {
        let mut t = Timings::default();
        for (name, secs) in [("ok", 90.0), ("negative", -1.0), ("huge", 1e300), ("nan", f64::NAN), ("inf", f64::INFINITY)] {
            t.shards.insert(name.into(), secs);
            t.files.insert(name.into(), secs);
        }
        assert_eq!(t.shard("ok"), Some(Duration::from_secs(90)));
        assert_eq!(t.file("ok"), Some(90.0));
        for name in ["negative", "huge", "nan", "inf"] {
            assert_eq!((t.shard(name), t.file(name)), (None, None), "{name}");
        }
    }
}
