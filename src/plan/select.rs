//! Narrowing a plan to what this job runs: `--only` names, then its partition of the
//! assignment.

use super::assignment::{Assignment, assign};
use super::partition::{Partition, Source};
use super::{Plan, Shard};

/// What this job runs, and the assignment of every job it is one of.
#[derive(Debug, Clone)]
pub struct Selection {
    /// This job's partition and where it came from; `None`: the job runs everything selected.
    pub partition: Option<(Partition, Source)>,
    /// Of every shard `--only` selects, over the partition's N (1 without a partition).
    pub assignment: Assignment,
    /// This job's shards, in plan order.
    pub shards: Vec<Shard>,
}

impl Selection {
    pub fn partition(&self) -> Option<Partition> {
        self.partition.as_ref().map(|(p, _)| *p)
    }
}

/// The shards this job runs. Errors are usage errors that name the choices.
pub fn select(
    plan: &Plan,
    only: &[String],
    partition: Option<(Partition, Source)>,
) -> Result<Selection, String> {
    let mut shards: Vec<Shard> = plan.shards.clone();
    if !only.is_empty() {
        for name in only {
            if !shards.iter().any(|s| &s.name == name || &s.group == name) {
                let known: Vec<&str> = plan.shards.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "--only `{name}`: no such shard; the plan has: {}",
                    known.join(", ")
                ));
            }
        }
        shards.retain(|s| only.iter().any(|n| n == &s.name || n == &s.group));
    }
    let assignment = assign(&shards, partition.as_ref().map_or(1, |(p, _)| p.total));
    let mine = match &partition {
        Some((p, _)) => assignment.shards(*p).to_vec(),
        None => shards,
    };
    Ok(Selection { partition, assignment, shards: mine })
}
