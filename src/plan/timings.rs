//! Recorded timings: what earlier runs measured, read back to predict how long each shard and
//! each test file takes ([`super::predict`]).
//!
//! A run writes `<report-dir>/timings.json`: the history it was given (`--timings`) with its
//! own figures weighed in ([`Timings::record`]), and a `run` section with only what this run
//! measured and which partition and assignment it ran, which `timings merge` combines across the
//! jobs of a CI run ([`super::merge`]). The file is an explicit input: nothing reads it unless
//! `--timings` names it, so that every job of a run balances by the same bytes.
//!
//! Beside the seconds it keeps the flake history ([`Flakes`]): per shard and per test file, how
//! many runs saw it and in how many it was flaky or failed, decayed run by run so that the
//! counts speak of the recent runs ([`Counts::recent`]).

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

/// What each earlier run of a shard or file counts for when it runs again: the counts are
/// multiplied by it before the new run's are added. The durations' weight (one half) would keep
/// two runs in view, too few to tell a test that flakes once in ten from one that always does;
/// nine tenths keeps about the last ten ([`RECENT_RUNS`]), and a run's flake fades below one
/// half of a count after seven more runs.
pub const FLAKE_DECAY: f64 = 0.9;

/// How many runs the decayed counts hold at most (the sum of `FLAKE_DECAY^k`).
pub const RECENT_RUNS: f64 = 1.0 / (1.0 - FLAKE_DECAY);

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub version: u32,
    /// Seconds per shard name (a split shard's parts by their own names).
    #[serde(default)]
    pub shards: BTreeMap<String, f64>,
    /// Seconds per test file, relative to the plan's directory.
    #[serde(default)]
    pub files: BTreeMap<String, f64>,
    /// The flake history: absent from files written before it was kept, which read as none.
    #[serde(default, skip_serializing_if = "Flakes::is_empty")]
    pub flakes: Flakes,
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
    /// This run's own flake counts: one run per shard and file it ran to an end.
    #[serde(default, skip_serializing_if = "Flakes::is_empty")]
    pub flakes: Flakes,
}

/// Flake counts per shard name and per test file (relative to the plan's directory).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flakes {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shards: BTreeMap<String, Counts>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Counts>,
}

/// Runs seen, and of them how many were flaky (failed, then passed on a retry) and how many
/// failed; decayed, so not whole numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub runs: f64,
    pub flaky: f64,
    pub failed: f64,
}

/// "flaky in 2 of the last 9 runs": what the decayed counts say, in whole runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    pub flaky: u32,
    pub failed: u32,
    pub runs: u32,
}

impl Counts {
    /// One run: flaky or failed as it was.
    pub fn one(flaky: bool, failed: bool) -> Counts {
        Counts { runs: 1.0, flaky: f64::from(u8::from(flaky)), failed: f64::from(u8::from(failed)) }
    }

    /// This history with a fresh run's counts added, every earlier run counting [`FLAKE_DECAY`].
    fn then(self, fresh: Counts) -> Counts {
        Counts {
            runs: FLAKE_DECAY * self.runs + fresh.runs,
            flaky: FLAKE_DECAY * self.flaky + fresh.flaky,
            failed: FLAKE_DECAY * self.failed + fresh.failed,
        }
    }

    fn plus(self, other: Counts) -> Counts {
        Counts {
            runs: self.runs + other.runs,
            flaky: self.flaky + other.flaky,
            failed: self.failed + other.failed,
        }
    }

    /// The counts rounded to whole runs: a flake faded below half a run counts as none.
    pub fn recent(&self) -> Recent {
        let whole = |n: f64| n.round() as u32;
        let runs = whole(self.runs);
        Recent { flaky: whole(self.flaky).min(runs), failed: whole(self.failed).min(runs), runs }
    }

    /// Every count a number from 0 to as many runs as there are, and runs at most a sum of
    /// decayed runs could reach with every job of a run adding one (with a margin).
    fn check(&self) -> Result<(), String> {
        let sane = |n: f64| n.is_finite() && (0.0..=MAX_RUNS).contains(&n);
        if !sane(self.runs) {
            return Err(format!("runs is {:?}, not a count from 0 to {MAX_RUNS}", self.runs));
        }
        for (field, n) in [("flaky", self.flaky), ("failed", self.failed)] {
            if !sane(n) || n > self.runs + 1e-9 {
                return Err(format!(
                    "{field} is {n:?}, not a count from 0 to runs ({:?})",
                    self.runs
                ));
            }
        }
        Ok(())
    }
}

/// The most runs a count may hold: more than decay ever lets one name gather from any run.
const MAX_RUNS: f64 = 1e6;

impl std::fmt::Display for Recent {
    /// "flaky in 2 of the last 9 runs", and ", failed in 1" when it failed too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = if self.runs == 1 {
            "the last run".to_owned()
        } else {
            format!("the last {} runs", self.runs)
        };
        write!(f, "flaky in {} of {runs}", self.flaky)?;
        if self.failed > 0 {
            write!(f, ", failed in {}", self.failed)?;
        }
        Ok(())
    }
}

impl Flakes {
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty() && self.files.is_empty()
    }

    /// Weighs a run's counts into this history; names the run did not see keep theirs, as the
    /// durations do.
    pub fn record(&mut self, fresh: &Flakes) {
        for (map, fresh) in [(&mut self.shards, &fresh.shards), (&mut self.files, &fresh.files)] {
            for (name, counts) in fresh {
                let old = map.get(name).copied().unwrap_or_default();
                map.insert(name.clone(), old.then(*counts));
            }
        }
    }

    /// The counts of several jobs of one run, added up: each job saw its own shards, and a file
    /// two shards ran was seen twice.
    pub fn add(&mut self, other: &Flakes) {
        for (map, more) in [(&mut self.shards, &other.shards), (&mut self.files, &other.files)] {
            for (name, counts) in more {
                let sum = map.get(name).copied().unwrap_or_default().plus(*counts);
                map.insert(name.clone(), sum);
            }
        }
    }

    fn check(&self, field: &str) -> Result<(), String> {
        for (kind, map) in [("shards", &self.shards), ("files", &self.files)] {
            for (name, counts) in map {
                counts.check().map_err(|why| format!("{field}.{kind}.{name:?}: {why}"))?;
            }
        }
        Ok(())
    }
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
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ParseError::Invalid(e.to_string()))?;
        let version = value.get("version").ok_or_else(|| {
            ParseError::Invalid(if value.is_object() {
                "it has no `version`".into()
            } else {
                "it is not a JSON object".into()
            })
        })?;
        if version.as_u64() != Some(u64::from(TIMINGS_VERSION)) {
            return Err(ParseError::Version(version.to_string()));
        }
        let timings: Timings =
            serde_json::from_value(value).map_err(|e| ParseError::Invalid(e.to_string()))?;
        timings.check().map_err(ParseError::Invalid)?;
        Ok(timings)
    }

    /// Every figure a number of seconds from 0 to a week.
    fn check(&self) -> Result<(), String> {
        let mut maps = vec![("shards", &self.shards), ("files", &self.files)];
        self.flakes.check("flakes")?;
        if let Some(run) = &self.run {
            run.flakes.check("run.flakes")?;
            maps.extend([("run.shards", &run.shards), ("run.files", &run.files)]);
            if let Some(p) = run.partition {
                Partition::new(p.index, p.total)
                    .map_err(|why| format!("run.partition is {why}"))?;
            }
        }
        for (field, map) in maps {
            if let Some((name, secs)) = map.iter().find(|(_, s)| !plausible(**s)) {
                return Err(format!(
                    "{field}.{name:?} is {secs:?}, not a number of seconds from 0 to {PLAUSIBLE_SECS}"
                ));
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
            (
                r#"{"version":1,"shards":{"api":-1}}"#,
                r#"shards."api" is -1.0, not a number of seconds"#,
            ),
            (r#"{"version":1,"files":{"t/a.mjs":1e300}}"#, r#"files."t/a.mjs" is 1e300"#),
            (r#"{"version":1,"shards":{"api":"fast"}}"#, "invalid type: string"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains("timings t.json are not valid") && err.contains(said), "{err}");
        }
        assert_eq!(
            parse(r#"{"version":1,"shards":{"api":90}}"#).unwrap().shard("api"),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn another_version_or_no_version_is_named() {
        let err = parse(r#"{"version":2,"shards":[]}"#).unwrap_err();
        assert!(
            err.contains("timings t.json are version 2, and this harper-shard reads version 1"),
            "{err}"
        );
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
        assert_eq!(
            t.shards,
            BTreeMap::from([("api".into(), 75.0), ("kept".into(), 7.0), ("new".into(), 20.0)])
        );
    }

    #[test]
    fn a_file_written_before_the_flake_history_reads_as_none_and_writes_none_back() {
        let t = parse(r#"{"version":1,"shards":{"api":90},"files":{}}"#).unwrap();
        assert!(t.flakes.is_empty());
        assert!(
            !serde_json::to_string(&t).unwrap().contains("flakes"),
            "an empty history is not written"
        );
    }

    #[test]
    fn flake_counts_that_are_not_counts_make_the_file_invalid() {
        for (text, said) in [
            (
                r#"{"version":1,"flakes":{"shards":{"db":{"runs":-1,"flaky":0,"failed":0}}}}"#,
                r#"flakes.shards."db": runs is -1.0"#,
            ),
            (
                r#"{"version":1,"flakes":{"files":{"t/a":{"runs":2,"flaky":3,"failed":0}}}}"#,
                r#"flakes.files."t/a": flaky is 3.0, not a count from 0 to runs"#,
            ),
            (
                r#"{"version":1,"flakes":{"shards":{"db":{"runs":1e300,"flaky":0,"failed":0}}}}"#,
                "runs is 1e300",
            ),
            (
                r#"{"version":1,"run":{"assignment":"d","flakes":{"shards":{"db":{"runs":1,"flaky":0,"failed":2}}}}}"#,
                r#"run.flakes.shards."db": failed is 2.0"#,
            ),
            (r#"{"version":1,"flakes":{"shards":{"db":{"runs":1}}}}"#, "missing field `flaky`"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("timings t.json are not valid") && err.contains(said),
                "{said}: {err}"
            );
        }
    }

    #[test]
    fn each_run_decays_the_earlier_counts_of_the_names_it_saw() {
        let mut history = Flakes::default();
        let mut fresh = Flakes::default();
        fresh.shards.insert("db".into(), Counts::one(true, false));
        for _ in 0..3 {
            history.record(&fresh);
        }
        let d = FLAKE_DECAY;
        let three = 1.0 + d + d * d;
        assert_eq!(history.shards["db"], Counts { runs: three, flaky: three, failed: 0.0 });
        let mut other = Flakes::default();
        other.shards.insert("api".into(), Counts::one(false, true));
        history.record(&other);
        assert_eq!(history.shards["db"].runs, three, "a run without db leaves its counts alone");
        assert_eq!(history.shards["db"].recent(), Recent { flaky: 3, failed: 0, runs: 3 });
        assert_eq!(history.shards["db"].recent().to_string(), "flaky in 3 of the last 3 runs");
    }

    #[test]
    fn the_recent_rate_is_held_to_about_ten_runs_and_a_flake_fades_out_of_it() {
        let mut c = Counts::one(true, true);
        for n in 1..=200 {
            c = c.then(Counts::one(false, false));
            if n == 6 {
                assert_eq!(
                    (c.recent().flaky, c.recent().failed),
                    (1, 1),
                    "six runs later it is still one: {c:?}"
                );
            }
        }
        let recent = c.recent();
        assert_eq!(recent.runs, RECENT_RUNS.round() as u32, "{c:?}");
        assert_eq!((recent.flaky, recent.failed), (0, 0), "{c:?}");
        assert_eq!(Counts::one(true, false).recent().to_string(), "flaky in 1 of the last run");
        assert_eq!(Counts::default().recent().to_string(), "flaky in 0 of the last 0 runs");
    }
}
