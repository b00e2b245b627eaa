//! This run's flake counts, read from the record: one run for each shard that ran to a verdict
//! (passed, flaky, failed) and for each test file its JUnit named, flaky when a test of it
//! failed and then passed, failed when one failed in its last run. `timings.json` weighs them
//! into the history ([`crate::plan::timings::Flakes::record`]); the step summary says from the
//! result how often what flaked now has flaked lately.
//!
//! A shard that never got to its tests (Harper did not boot, the tool failed, the run was
//! cancelled) says nothing of them and is not counted.

use std::collections::BTreeMap;

use super::merged;
use super::model::{RunRecord, ShardRecord};
use crate::cases;
use crate::plan::timings::{Counts, Flakes};
use crate::run::events::ShardStatus;

/// This run's counts.
pub fn fresh(record: &RunRecord) -> Flakes {
    let mut flakes = Flakes::default();
    for shard in &record.shards {
        let Some(counts) = shard.status.and_then(verdict) else { continue };
        flakes.shards.insert(shard.name.clone(), counts);
        // A file two shards ran was seen twice in this run: their counts add up.
        flakes.add(&Flakes { shards: BTreeMap::new(), files: files(shard, record) });
    }
    flakes
}

/// The history the run was given with this run's counts weighed in: what `timings.json` keeps.
pub fn updated(record: &RunRecord) -> Flakes {
    let mut history = record.history.clone();
    history.record(&fresh(record));
    history
}

/// What a shard's status counts as, if it ran its tests to a verdict.
fn verdict(status: ShardStatus) -> Option<Counts> {
    match status {
        ShardStatus::Passed => Some(Counts::one(false, false)),
        ShardStatus::Flaky => Some(Counts::one(true, false)),
        ShardStatus::Failed | ShardStatus::Quarantined => Some(Counts::one(false, true)),
        ShardStatus::BootFailed
        | ShardStatus::Infrastructure
        | ShardStatus::Cancelled
        | ShardStatus::Skipped => None,
    }
}

/// Each test file the shard's JUnit named (relative to the plan's folder), as one run.
pub fn files(shard: &ShardRecord, record: &RunRecord) -> BTreeMap<String, Counts> {
    let mut files: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for test in merged::of(shard) {
        let Some(file) =
            test.last().file.as_deref().and_then(|f| cases::relative(f, &record.plan_dir))
        else {
            continue;
        };
        let (flaky, failed) = files.entry(file).or_default();
        *flaky |= test.flaky();
        *failed |= test.last().failure.is_some();
    }
    files.into_iter().map(|(file, (flaky, failed))| (file, Counts::one(flaky, failed))).collect()
}
