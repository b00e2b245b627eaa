//! Which shards each of N jobs runs, and a digest of that whole assignment.
//!
//! Every job computes the assignment on its own, from the plan, its flags and the timings it is
//! given: nothing else goes in (not the report directory, not the clock), and the balancing is
//! deterministic ([`super::balance`]). The digest names the result — every partition's shards
//! and every split part's files — so two jobs that would run overlapping or incomplete sets of
//! shards have different digests. `matrix` prints it, `run --assignment` checks it, and each
//! job's `timings.json` records it for `timings merge` to compare.

use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Shard;
use super::balance::balance;
use super::partition::Partition;
use super::predict;

#[derive(Debug, Clone)]
pub struct Assignment {
    /// N as asked.
    pub total: u32,
    /// The first `min(N, shards)` partitions; those past the shard count are empty.
    pub partitions: Vec<Bin>,
    /// Hex digest of every partition's shards and their files.
    pub digest: String,
}

#[derive(Debug, Clone)]
pub struct Bin {
    pub shards: Vec<Shard>,
    /// The sum of its shards' predictions; `None` when nothing is known.
    pub predicted: Option<Duration>,
}

/// The assignment of `shards` to `total` partitions, heaviest prediction first onto the
/// least-loaded partition.
///
/// Only `min(total, shards)` partitions are made: the heaviest-first fill never puts a shard
/// past them (an empty partition is always the first choice), so `K/N` means the same shards
/// for every N past the shard count, and the work and memory are those of the shards.
pub fn assign(shards: &[Shard], total: u32) -> Assignment {
    let bins = (total as usize).min(shards.len()).max(1);
    let weights: Vec<u64> = shards.iter().map(predict::weight).collect();
    let partitions: Vec<Bin> = balance(&weights, bins)
        .into_iter()
        .map(|bin| {
            let shards: Vec<Shard> = bin.into_iter().map(|i| shards[i].clone()).collect();
            let predicted = shards.iter().map(|s| s.predicted).sum::<Option<Duration>>();
            Bin { shards, predicted }
        })
        .collect();
    let digest = digest(&partitions);
    Assignment { total: total.max(1), partitions, digest }
}

impl Assignment {
    /// The shards of partition K (none past the shard count).
    pub fn shards(&self, p: Partition) -> &[Shard] {
        self.partitions.get(p.index as usize - 1).map_or(&[], |b| &b.shards)
    }

    /// The partitions as `--plan --format json` and `matrix` show them.
    pub fn view(&self) -> AssignmentView<'_> {
        AssignmentView {
            digest: &self.digest,
            total: self.total,
            partitions: self
                .partitions
                .iter()
                .enumerate()
                .map(|(i, bin)| BinView {
                    partition: Partition { index: i as u32 + 1, total: self.total }.to_string(),
                    predicted: bin.predicted.map(|d| d.as_secs_f64()),
                    shards: bin.shards.iter().map(|s| s.name.as_str()).collect(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AssignmentView<'a> {
    pub digest: &'a str,
    pub total: u32,
    pub partitions: Vec<BinView<'a>>,
}

#[derive(Debug, Serialize)]
pub struct BinView<'a> {
    /// `K/N`.
    pub partition: String,
    /// Seconds.
    pub predicted: Option<f64>,
    pub shards: Vec<&'a str>,
}

/// Each partition's shards, with their files, in order, as canonical JSON through SHA-256;
/// the first 16 hex digits. Predictions are left out: they decide the assignment, but two
/// jobs that run the same shards agree whatever their figures were.
fn digest(partitions: &[Bin]) -> String {
    let canonical: Vec<Vec<serde_json::Value>> = partitions
        .iter()
        .map(|bin| {
            bin.shards
                .iter()
                .map(|s| serde_json::json!({ "name": s.name, "files": s.files }))
                .collect()
        })
        .collect();
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn shards(weights: &[u64]) -> Vec<Shard> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut s = Shard::for_tests(&format!("s{i}"), &format!("s{i}"), Vec::new(), None);
                s.predicted = Some(Duration::from_secs(*w));
                s
            })
            .collect()
    }

    #[test]
    fn partitions_carry_their_predicted_totals() {
        let a = assign(&shards(&[10, 1, 9, 1, 1]), 2);
        let totals: Vec<Option<Duration>> = a.partitions.iter().map(|b| b.predicted).collect();
        assert_eq!(totals, [Some(Duration::from_secs(11)), Some(Duration::from_secs(11))]);
    }

    #[test]
    fn the_digest_changes_with_what_any_partition_runs_and_not_with_the_figures() {
        let base = assign(&shards(&[10, 1, 9]), 2);
        assert_eq!(base.digest, assign(&shards(&[12, 2, 9]), 2).digest, "same shards, same digest");
        assert_ne!(
            base.digest,
            assign(&shards(&[1, 10, 9]), 2).digest,
            "s0 and s1 swapped partitions"
        );
        let mut moved = shards(&[10, 1, 9]);
        moved[1].files = vec![PathBuf::from("t/a.mjs")];
        assert_ne!(base.digest, assign(&moved, 2).digest, "a file moved");
        assert_eq!(base.digest.len(), 16);
    }

    #[test]
    fn a_partition_count_past_the_shards_gives_the_same_assignment_as_one_job_per_shard() {
        let s = shards(&[3, 0, 7]);
        assert_eq!(assign(&s, 3).digest, assign(&s, 4_000_000_000).digest);
        assert!(assign(&s, 9).shards(Partition { index: 9, total: 9 }).is_empty());
    }
}
