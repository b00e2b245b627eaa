//! How long each shard and each test file is expected to take: what balancing weighs.
//!
//! A shard's prediction, first that applies:
//! 1. its recorded time (`timings.json`, `shards`);
//! 2. for a part of a split shard: its share of the split shard's recorded total (the parts'
//!    recorded times, or the unsplit shard's), in proportion to its files' recorded times; with
//!    no recorded total, the sum of its files' recorded times;
//! 3. its plan `weight` (a split shard's weight is shared among its parts by their files);
//! 4. the mean of the shards predicted so far.
//!
//! A file without a recorded time weighs the mean of its shard's recorded files. When nothing
//! at all is known, no shard has a prediction and balancing counts files.
//!
//! Everything is whole milliseconds, so that every machine computes the same weights
//! ([`super::balance`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::Shard;
use super::timings::Timings;

/// What a shard's prediction rests on, as `--plan` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Its own recorded time.
    Recorded,
    /// Its share of its split shard's recorded total, by its files.
    Share,
    /// The sum of its files' recorded times (`recorded` of its `files` have one).
    Files { recorded: usize, of: usize },
    /// The plan's `weight`.
    Weight,
    /// The mean of the shards with a prediction.
    Mean,
    /// Nothing is known of any shard: balanced by file count.
    Unknown,
}

impl Basis {
    pub fn describe(&self) -> String {
        match self {
            Basis::Recorded => "recorded".into(),
            Basis::Share => "share of the split shard's recorded time".into(),
            Basis::Files { recorded, of } if recorded == of => "its files' recorded times".into(),
            Basis::Files { recorded, of } => format!(
                "its files' recorded times ({recorded} of {of} recorded, the rest at their mean)"
            ),
            Basis::Weight => "weight".into(),
            Basis::Mean => "no history: the mean of the known shards".into(),
            Basis::Unknown => "no history".into(),
        }
    }
}

/// The weight of each of `files` in milliseconds: its recorded time, else the mean of those
/// recorded, else one second (counting files). Also how many are recorded.
pub fn file_weights(files: &[PathBuf], timings: &Timings) -> (Vec<u64>, usize) {
    let known: Vec<Option<u64>> =
        files.iter().map(|f| timings.file(&f.to_string_lossy()).map(secs_to_ms)).collect();
    let recorded: Vec<u64> = known.iter().flatten().copied().collect();
    let fallback = mean(&recorded).unwrap_or(1000);
    (known.iter().map(|k| k.unwrap_or(fallback)).collect(), recorded.len())
}

/// Fills in every shard's `predicted` and `basis`.
pub fn predict(shards: &mut [Shard], timings: &Timings) {
    let own: Vec<Option<(u64, Basis)>> =
        (0..shards.len()).map(|i| own_prediction(shards, i, timings)).collect();
    let known: Vec<u64> = own.iter().flatten().map(|(ms, _)| *ms).collect();
    let fallback = mean(&known);
    for (shard, own) in shards.iter_mut().zip(own) {
        let (ms, basis) = match (own, fallback) {
            (Some((ms, basis)), _) => (Some(ms), basis),
            (None, Some(ms)) => (Some(ms), Basis::Mean),
            (None, None) => (None, Basis::Unknown),
        };
        shard.predicted = ms.map(Duration::from_millis);
        shard.basis = basis;
    }
}

/// What balancing weighs a shard at: its prediction, or its file count when nothing is known.
pub fn weight(shard: &Shard) -> u64 {
    match shard.predicted {
        Some(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        None => shard.files.len().max(1) as u64 * 1000,
    }
}

fn own_prediction(shards: &[Shard], i: usize, timings: &Timings) -> Option<(u64, Basis)> {
    let shard = &shards[i];
    if !shard.is_part() {
        return match timings.shard(&shard.name) {
            Some(d) => Some((duration_ms(d), Basis::Recorded)),
            None => shard.weight.map(|w| (duration_ms(w), Basis::Weight)),
        };
    }
    let parts: Vec<&Shard> =
        shards.iter().filter(|s| s.is_part() && s.group == shard.group).collect();
    let group_files: Vec<PathBuf> = parts.iter().flat_map(|p| p.files.iter().cloned()).collect();
    let (weights, recorded) = file_weights(&group_files, timings);
    let by_file: BTreeMap<&PathBuf, u64> =
        group_files.iter().zip(&weights).map(|(f, w)| (f, *w)).collect();
    let mine: u64 = shard.files.iter().filter_map(|f| by_file.get(f)).sum();
    let all: u64 = weights.iter().sum();
    let share = |total: u64| {
        if all == 0 { total / parts.len().max(1) as u64 } else { scale(total, mine, all) }
    };
    let recorded_parts: Vec<u64> =
        parts.iter().filter_map(|p| timings.shard(&p.name)).map(duration_ms).collect();
    let group_total = match mean(&recorded_parts) {
        Some(m) => Some(m.saturating_mul(parts.len() as u64)),
        None => timings.shard(&shard.group).map(duration_ms),
    };
    if let Some(total) = group_total {
        return Some((share(total), Basis::Share));
    }
    if recorded > 0 {
        let here =
            shard.files.iter().filter(|f| timings.file(&f.to_string_lossy()).is_some()).count();
        return Some((mine, Basis::Files { recorded: here, of: shard.files.len() }));
    }
    shard.weight.map(|w| (share(duration_ms(w)), Basis::Weight))
}

/// `total × part / whole`, without overflow.
fn scale(total: u64, part: u64, whole: u64) -> u64 {
    u64::try_from(u128::from(total) * u128::from(part) / u128::from(whole.max(1)))
        .unwrap_or(u64::MAX)
}

fn mean(values: &[u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let sum: u128 = values.iter().map(|v| u128::from(*v)).sum();
    u64::try_from(sum / values.len() as u128).ok()
}

fn secs_to_ms(secs: f64) -> u64 {
    (secs * 1000.0).round() as u64
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(name: &str, files: &[&str], weight: Option<u64>) -> Shard {
        let group = name.split('/').next().unwrap().to_owned();
        Shard::for_tests(
            name,
            &group,
            files.iter().map(PathBuf::from).collect(),
            weight.map(Duration::from_secs),
        )
    }

    fn timings(shards: &[(&str, f64)], files: &[(&str, f64)]) -> Timings {
        Timings {
            version: 1,
            shards: shards.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            files: files.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            flakes: Default::default(),
            run: None,
        }
    }

    fn predicted(shards: &[Shard]) -> Vec<(Option<u64>, Basis)> {
        shards.iter().map(|s| (s.predicted.map(|d| d.as_millis() as u64), s.basis)).collect()
    }

    #[test]
    fn a_recorded_time_beats_the_weight_and_a_weight_beats_the_mean() {
        let mut shards =
            vec![shard("api", &[], Some(90)), shard("db", &[], Some(30)), shard("sql", &[], None)];
        predict(&mut shards, &timings(&[("api", 10.0)], &[]));
        assert_eq!(
            predicted(&shards),
            [
                (Some(10_000), Basis::Recorded),
                (Some(30_000), Basis::Weight),
                (Some(20_000), Basis::Mean)
            ]
        );
    }

    #[test]
    fn with_nothing_known_there_is_no_prediction() {
        let mut shards = vec![shard("api", &[], None), shard("db", &["a", "b"], None)];
        predict(&mut shards, &Timings::default());
        assert_eq!(predicted(&shards), [(None, Basis::Unknown), (None, Basis::Unknown)]);
        assert_eq!(
            shards.iter().map(weight).collect::<Vec<_>>(),
            [1000, 2000],
            "balanced by file count"
        );
    }

    #[test]
    fn split_parts_share_the_recorded_total_by_their_files() {
        let mut shards = vec![shard("db/1", &["a"], None), shard("db/2", &["b", "c"], None)];
        let t =
            timings(&[("db/1", 50.0), ("db/2", 70.0)], &[("a", 30.0), ("b", 10.0), ("c", 20.0)]);
        predict(&mut shards, &t);
        assert_eq!(
            predicted(&shards),
            [(Some(60_000), Basis::Share), (Some(60_000), Basis::Share)]
        );
    }

    #[test]
    fn split_parts_without_a_recorded_total_sum_their_files_the_unknown_ones_at_the_mean() {
        let mut shards = vec![shard("db/1", &["a"], None), shard("db/2", &["b", "new"], None)];
        predict(&mut shards, &timings(&[], &[("a", 30.0), ("b", 10.0)]));
        assert_eq!(
            predicted(&shards),
            [
                (Some(30_000), Basis::Files { recorded: 1, of: 1 }),
                (Some(30_000), Basis::Files { recorded: 1, of: 2 })
            ]
        );
    }

    #[test]
    fn a_split_shards_weight_is_shared_by_file_count() {
        let mut shards =
            vec![shard("db/1", &["a"], Some(90)), shard("db/2", &["b", "c"], Some(90))];
        predict(&mut shards, &Timings::default());
        assert_eq!(
            predicted(&shards),
            [(Some(30_000), Basis::Weight), (Some(60_000), Basis::Weight)]
        );
    }
}
