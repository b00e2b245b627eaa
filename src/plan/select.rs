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
        shards = partitions(&shards, p.total as usize).swap_remove(p.index as usize - 1);
    }
    Ok(shards)
}

/// Every partition of `shards` into `n` jobs, balanced by predicted time (a shard without a
/// record weighs the mean of those with one, or its file count when nothing is recorded).
pub fn partitions(shards: &[Shard], n: usize) -> Vec<Vec<Shard>> {
    let recorded: Vec<f64> = shards.iter().filter_map(|s| s.predicted.map(|d| d.as_secs_f64())).collect();
    let weights: Vec<f64> = if recorded.is_empty() {
        shards.iter().map(|s| s.files.len().max(1) as f64).collect()
    } else {
        let mean = recorded.iter().sum::<f64>() / recorded.len() as f64;
        shards.iter().map(|s| s.predicted.map_or(mean, |d| d.as_secs_f64())).collect()
    };
    balance(&weights, n).into_iter().map(|bin| bin.into_iter().map(|i| shards[i].clone()).collect()).collect()
}
