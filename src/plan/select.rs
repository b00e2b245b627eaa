//! Narrowing a plan to what this job runs: `--only` names, then `--partition K/N`.

use super::partition::{Partition, balance};
use super::{Plan, Shard};

/// The shards this job runs, in plan order. Errors are usage errors that name the choices.
pub fn select(plan: &Plan, only: &[String], partition: Option<Partition>) -> Result<Vec<Shard>, String> {
    let mut shards: Vec<Shard> = plan.shards.clone();
    if !only.is_empty() {
        for name in only {
            if !shards.iter().any(|s| &s.name == name || &s.group == name) {
                let known: Vec<&str> = plan.shards.iter().map(|s| s.name.as_str()).collect();
                return Err(format!("--only `{name}`: no such shard; the plan has: {}", known.join(", ")));
            }
        }
        shards.retain(|s| only.iter().any(|n| n == &s.name || n == &s.group));
    }
    if let Some(p) = partition {
        let k = p.index as usize;
        shards = if k > shards.len() { Vec::new() } else { partitions(&shards, p.total as usize).swap_remove(k - 1) };
    }
    Ok(shards)
}

/// The partitions of `shards` into `n` jobs, balanced by predicted time (a shard without a
/// record weighs the mean of those with one, or its file count when nothing is recorded).
///
/// Only the first `min(n, shards)` partitions are made: the heaviest-first fill never puts a
/// shard past them (each shard goes to the lowest-numbered lightest job, and an empty job is
/// the lightest), so the rest are empty, and `K/N` means the same jobs for every `N` past the
/// shard count. The work and memory are those of the shards, whatever `n` is.
pub fn partitions(shards: &[Shard], n: usize) -> Vec<Vec<Shard>> {
    let recorded: Vec<f64> = shards.iter().filter_map(|s| s.predicted.map(|d| d.as_secs_f64())).collect();
    let weights: Vec<f64> = if recorded.is_empty() {
        shards.iter().map(|s| s.files.len().max(1) as f64).collect()
    } else {
        let mean = recorded.iter().sum::<f64>() / recorded.len() as f64;
        shards.iter().map(|s| s.predicted.map_or(mean, |d| d.as_secs_f64())).collect()
    };
    balance(&weights, n.min(shards.len()).max(1)).into_iter().map(|bin| bin.into_iter().map(|i| shards[i].clone()).collect()).collect()
}
