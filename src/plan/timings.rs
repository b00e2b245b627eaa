//! Recorded timings: what earlier runs measured, read back to predict how long each shard and
//! each test file takes ([`super::predict`]).
//!
//! A run writes `<report-dir>/timings.json`: the history it was given (`--timings`) with its
//! own figures weighed in ([`Timings::record`]), and a `run` section with only what this run
//! measured and which partition and assignment it ran, which `timings merge` combines across the
//! jobs of a CI run ([`super::merge`]). The file is an explicit input: nothing reads it unless
//! `--timings` names it, so that every job of a run balances by the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::file::{self, ReadError};
use super::limits::TIMINGS_BYTES;
use super::partition::Partition;

pub const TIMINGS_VERSION: u32 = 1;

/// A recorded time past this is not a measurement (a shard's timeout is at most a day).
const PLAUSIBLE_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// How much the history counts against a fresh figure: the new prediction is the mean of the
/// two, so the last run counts one half, the one before it a quarter, and so on. One slow run
/// (a noisy neighbour, a retry) moves a prediction half way; a shard that really became slower
/// is predicted within an eighth of its new time after three runs.
pub const HISTORY_WEIGHT: f64 = 0.5;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub version: u32,
    /// Seconds per shard name (a split shard's parts by their own names).
    #[serde(default)]
    pub shards: BTreeMap<String, f64>,
    /// Seconds per test file, relative to the plan's directory.
    #[serde(default)]
    pub files: BTreeMap<String, f64>,
    /// What the run that wrote the file did itself; a merged file has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunTimings>,
}

/// One run's own part: its figures alone, and what it was to run.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTimings {
    /// The partition the run ran, if it ran one.
    pub partition: Option<Partition>,
    /// The digest of the whole assignment it computed ([`super::assignment`]).
    pub assignment: String,
    /// Every shard of the assignment (all of the plan's that `--only` selects).
    #[serde(default)]
    pub assigned: Vec<String>,
    /// The shards of its own partition, whether or not they passed.
    #[serde(default)]
    pub selected: Vec<String>,
    /// Every shard and file of the plan as the run resolved it: what a merge keeps.
    #[serde(default)]
    pub plan: PlanNames,
    /// Seconds per shard that passed in this run.
    #[serde(default)]
    pub shards: BTreeMap<String, f64>,
    /// Seconds per test file this run measured.
    #[serde(default)]
    pub files: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanNames {
    pub shards: Vec<String>,
    pub files: Vec<String>,
}

/// Why a timings file was not used.
#[derive(Debug, thiserror::Error)]
pub enum TimingsError {
    /// Not a regular file, too large, or unreadable: the path is wrong, not the contents.
    #[error("cannot read timings {}: {error}", path.display())]
    File { path: PathBuf, error: ReadError },
    #[error("timings {} are not valid: {why}; fix the file or delete it (the next run writes a new one)", path.display())]
    Invalid { path: PathBuf, why: String },
    #[error(
        "timings {} are version {found}, and this harper-shard reads version {TIMINGS_VERSION}; delete the file (the next run writes a new one) or use the harper-shard that wrote it",
        path.display()
    )]
    Version { path: PathBuf, found: String },
}

impl Timings {
    /// Reads `path` (a regular file of at most 16 MiB); `Ok(None)` when there is no such file.
    /// Contents that are not timings of this version, or hold a figure that is not a number of
    /// seconds, are an error: balancing by half a file would be a guess.
    pub fn read(path: &Path) -> Result<Option<Timings>, TimingsError> {
        let bytes = match file::read_bounded(path, TIMINGS_BYTES) {
            Ok(bytes) => bytes,
            Err(ReadError::NotFound) => return Ok(None),
            Err(error) => return Err(TimingsError::File { path: path.to_path_buf(), error }),
        };
        Timings::parse(&bytes).map(Some).map_err(|e| e.at(path))
    }

    fn parse(bytes: &[u8]) -> Result<Timings, ParseError> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Invalid(e.to_string()))?;
        let version = value.get("version").ok_or_else(|| {
            ParseError::Invalid(if value.is_object() { "it has no `version`".into() } else { "it is not a JSON object".into() })
        })?;
        if version.as_u64() != Some(u64::from(TIMINGS_VERSION)) {
            return Err(ParseError::Version(version.to_string()));
        }
        let timings: Timings = serde_json::from_value(value).map_err(|e| ParseError::Invalid(e.to_string()))?;
        timings.check().map_err(ParseError::Invalid)?;
        Ok(timings)
    }

    /// Every figure a number of seconds from 0 to a week.
    fn check(&self) -> Result<(), String> {
        let mut maps = vec![("shards", &self.shards), ("files", &self.files)];
        if let Some(run) = &self.run {
            maps.extend([("run.shards", &run.shards), ("run.files", &run.files)]);
            if let Some(p) = run.partition {
                Partition::new(p.index, p.total).map_err(|why| format!("run.partition is {why}"))?;
            }
        }
        for (field, map) in maps {
            if let Some((name, secs)) = map.iter().find(|(_, s)| !plausible(**s)) {
                return Err(format!("{field}.{name:?} is {secs:?}, not a number of seconds from 0 to {PLAUSIBLE_SECS}"));
            }
        }
        Ok(())
    }

    pub fn shard(&self, name: &str) -> Option<Duration> {
        self.shards.get(name).copied().filter(|s| plausible(*s)).map(Duration::from_secs_f64)
    }

    pub fn file(&self, name: &str) -> Option<f64> {
        self.files.get(name).copied().filter(|s| plausible(*s))
    }

    /// Weighs fresh figures into this history ([`HISTORY_WEIGHT`]); names without fresh
    /// figures keep theirs.
    pub fn record(&mut self, shards: &BTreeMap<String, f64>, files: &BTreeMap<String, f64>) {
        for (map, fresh) in [(&mut self.shards, shards), (&mut self.files, files)] {
            for (name, secs) in fresh {
                let blended = blend(map.get(name).copied(), *secs);
                map.insert(name.clone(), blended);
            }
        }
    }

    /// The shard names this file has figures for that `known` does not know: renamed or
    /// removed shards, whose figures are not used.
    pub fn unknown_shards(&self, known: impl Fn(&str) -> bool) -> Vec<&str> {
        self.shards.keys().map(String::as_str).filter(|name| !known(name)).collect()
    }
}

/// A prediction from the history (if any) and a fresh figure.
pub fn blend(history: Option<f64>, fresh: f64) -> f64 {
    match history {
        Some(old) => HISTORY_WEIGHT * old + (1.0 - HISTORY_WEIGHT) * fresh,
        None => fresh,
    }
}

enum ParseError {
    Invalid(String),
    Version(String),
}

impl ParseError {
    fn at(self, path: &Path) -> TimingsError {
        let path = path.to_path_buf();
        match self {
            ParseError::Invalid(why) => TimingsError::Invalid { path, why },
            ParseError::Version(found) => TimingsError::Version { path, found },
        }
    }
}

fn plausible(secs: f64) -> bool {
    secs.is_finite() && (0.0..=PLAUSIBLE_SECS).contains(&secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Timings, String> {
        Timings::parse(text.as_bytes()).map_err(|e| e.at(Path::new("t.json")).to_string())
    }

    #[test]
    fn a_figure_that_is_not_plausible_seconds_makes_the_file_invalid() {
        for (text, said) in [
            (r#"{"version":1,"shards":{"api":-1}}"#, r#"shards."api" is -1.0, not a number of seconds"#),
            (r#"{"version":1,"files":{"t/a.mjs":1e300}}"#, r#"files."t/a.mjs" is 1e300"#),
            (r#"{"version":1,"shards":{"api":"fast"}}"#, "invalid type: string"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("timings t.json are not valid") && err.contains(said), "{err}");
        }
        assert_eq!(parse(r#"{"version":1,"shards":{"api":90}}"#).unwrap().shard("api"), Some(Duration::from_secs(90)));
    }

    #[test]
    fn another_version_or_no_version_is_named() {
        let err = parse(r#"{"version":2,"shards":[]}"#).unwrap_err();
        assert!(err.contains("timings t.json are version 2, and this harper-shard reads version 1"), "{err}");
        assert!(parse(r#"{"shards":{}}"#).unwrap_err().contains("it has no `version`"));
        assert!(parse("[1]").unwrap_err().contains("it is not a JSON object"));
        assert!(parse("{").unwrap_err().contains("are not valid"));
    }

    #[test]
    fn recording_weighs_history_and_the_fresh_figure_half_each() {
        let mut t = Timings { version: 1, ..Timings::default() };
        t.shards.insert("api".into(), 100.0);
        t.shards.insert("kept".into(), 7.0);
        let fresh = BTreeMap::from([("api".to_owned(), 50.0), ("new".to_owned(), 20.0)]);
        t.record(&fresh, &BTreeMap::new());
        assert_eq!(t.shards, BTreeMap::from([("api".into(), 75.0), ("kept".into(), 7.0), ("new".into(), 20.0)]));
    }
}
