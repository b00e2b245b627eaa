//! `timings merge`: one timings file from the `timings.json` of every job of a CI run, weighed
//! against the history those jobs were given, for the next run to balance by.
//!
//! It is also the last check of the run's agreement: jobs that ran a partition must have
//! computed the same assignment (the digest each recorded), and no two may have run the same
//! partition. If they did not, shards ran twice or not at all, and the merge refuses rather
//! than bless the run. A partition that sent no timings (its job failed before writing them)
//! is only a warning: the figures of the others are still good.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::name_list;
use super::timings::{Flakes, TIMINGS_VERSION, Timings};

/// One job's timings file, as read.
pub struct Job {
    pub path: PathBuf,
    pub timings: Timings,
}

pub struct Merged {
    pub timings: Timings,
    pub warnings: Vec<String>,
}

/// Merges the fresh figures of `jobs` into `previous` ([`Timings::record`]). A job file with
/// a `run` section contributes what that run measured; one without, all its figures. A name
/// measured by several jobs gets the mean of their figures; flake counts of the jobs are added
/// up (they are one run's), then weighed into the history as a run's are ([`Flakes::record`]).
pub fn merge(jobs: &[Job], previous: Option<Timings>) -> Result<Merged, String> {
    let mut warnings = check_agreement(jobs)?;
    check_each_ran_once(jobs)?;
    let mut fresh_shards: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut fresh_files: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut fresh_flakes = Flakes::default();
    for job in jobs {
        let (shards, files, flakes) = match &job.timings.run {
            Some(run) => (&run.shards, &run.files, &run.flakes),
            None => (&job.timings.shards, &job.timings.files, &job.timings.flakes),
        };
        fresh_flakes.add(flakes);
        for (name, secs) in shards {
            fresh_shards.entry(name.clone()).or_default().push(*secs);
        }
        for (name, secs) in files {
            fresh_files.entry(name.clone()).or_default().push(*secs);
        }
    }
    let mean = |m: BTreeMap<String, Vec<f64>>| -> BTreeMap<String, f64> {
        m.into_iter().map(|(k, v)| (k, v.iter().sum::<f64>() / v.len() as f64)).collect()
    };
    let mut merged = previous.unwrap_or_default();
    merged.version = TIMINGS_VERSION;
    merged.run = None;
    merged.record(&mean(fresh_shards), &mean(fresh_files));
    merged.flakes.record(&fresh_flakes);
    warnings.extend(prune(&mut merged, jobs));
    Ok(Merged { timings: merged, warnings })
}

/// Jobs that ran a partition agree on the assignment, and each partition ran once.
fn check_agreement(jobs: &[Job]) -> Result<Vec<String>, String> {
    let partitioned: Vec<(&Job, &super::timings::RunTimings, super::Partition)> = jobs
        .iter()
        .filter_map(|j| j.timings.run.as_ref().and_then(|r| r.partition.map(|p| (j, r, p))))
        .collect();
    let Some((_, first, _)) = partitioned.first() else { return Ok(Vec::new()) };
    let agreed = partitioned
        .iter()
        .all(|(_, r, p)| r.assignment == first.assignment && p.total == partitioned[0].2.total);
    if !agreed {
        let each: Vec<String> = partitioned
            .iter()
            .map(|(j, r, p)| format!("{} ran {p} of assignment {}", j.path.display(), r.assignment))
            .collect();
        return Err(format!(
            "the jobs did not compute the same assignment: {}{}. Make every job balance by the same --timings file and check it with --assignment (README: CI systems); these timings are not merged",
            each.join("; "),
            coverage(&partitioned)
        ));
    }
    let mut seen: BTreeMap<u32, &Job> = BTreeMap::new();
    for (job, _, p) in &partitioned {
        if let Some(other) = seen.insert(p.index, job) {
            return Err(format!(
                "{} and {} both ran partition {p}: give each job's timings once",
                other.path.display(),
                job.path.display()
            ));
        }
    }
    let total = partitioned[0].2.total;
    let holding = (total as usize).min(first.assigned.len()) as u32;
    Ok((1..=holding)
        .filter(|k| !seen.contains_key(k))
        .map(|k| format!("no timings from partition {k}/{total}: did its job fail before writing them? Its shards keep their history"))
        .collect())
}

/// No shard ran in two of the jobs, whatever partition each ran (a job that ran the whole plan
/// beside the partitions of another run, the same file given twice): the run they make up ran
/// it twice, and its figures would be counted twice.
fn check_each_ran_once(jobs: &[Job]) -> Result<(), String> {
    let mut ran_in: BTreeMap<&str, Vec<&Job>> = BTreeMap::new();
    for job in jobs {
        let Some(run) = &job.timings.run else { continue };
        for name in &run.selected {
            ran_in.entry(name).or_default().push(job);
        }
    }
    let twice: Vec<String> = ran_in
        .iter()
        .filter(|(_, jobs)| jobs.len() > 1)
        .map(|(name, jobs)| {
            let files: Vec<String> = jobs.iter().map(|j| j.path.display().to_string()).collect();
            format!("{name} ({})", files.join(", "))
        })
        .collect();
    if twice.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} shard(s) ran in more than one of these jobs: {}. Give the timings of one run's jobs, each shard once: its partitions, or the one job that ran the whole plan; these timings are not merged",
        twice.len(),
        twice.join("; ")
    ))
}

/// Which shards the disagreeing jobs ran twice, and which none ran.
fn coverage(jobs: &[(&Job, &super::timings::RunTimings, super::Partition)]) -> String {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut assigned: BTreeSet<&str> = BTreeSet::new();
    for (_, run, _) in jobs {
        for name in &run.selected {
            *count.entry(name).or_default() += 1;
        }
        assigned.extend(run.assigned.iter().map(String::as_str));
    }
    let twice: Vec<&str> = count.iter().filter(|(_, n)| **n > 1).map(|(s, _)| *s).collect();
    let never: Vec<&str> = assigned.iter().filter(|s| !count.contains_key(*s)).copied().collect();
    let mut out = String::new();
    if !twice.is_empty() {
        out.push_str(&format!("; ran in more than one job: {}", name_list(&twice)));
    }
    if !never.is_empty() {
        out.push_str(&format!("; ran in none of these: {}", name_list(&never)));
    }
    out
}

/// Drops the figures of shards and files that no job's plan has any more, when every job says
/// what its plan had.
fn prune(merged: &mut Timings, jobs: &[Job]) -> Vec<String> {
    let plans: Option<Vec<&super::timings::PlanNames>> =
        jobs.iter().map(|j| j.timings.run.as_ref().map(|r| &r.plan)).collect();
    let Some(plans) = plans.filter(|p| !p.is_empty()) else { return Vec::new() };
    let shards: BTreeSet<&str> =
        plans.iter().flat_map(|p| p.shards.iter().map(String::as_str)).collect();
    let files: BTreeSet<&str> =
        plans.iter().flat_map(|p| p.files.iter().map(String::as_str)).collect();
    let gone_shards: Vec<String> =
        merged.shards.keys().filter(|k| !shards.contains(k.as_str())).cloned().collect();
    let gone_files = merged.files.keys().filter(|k| !files.contains(k.as_str())).count();
    merged.shards.retain(|k, _| shards.contains(k.as_str()));
    merged.files.retain(|k, _| files.contains(k.as_str()));
    merged.flakes.shards.retain(|k, _| shards.contains(k.as_str()));
    merged.flakes.files.retain(|k, _| files.contains(k.as_str()));
    if gone_shards.is_empty() && gone_files == 0 {
        return Vec::new();
    }
    let names: Vec<&str> = gone_shards.iter().map(String::as_str).collect();
    let shards_said =
        if names.is_empty() { String::new() } else { format!(" ({})", name_list(&names)) };
    vec![format!(
        "dropped {} shard(s){shards_said} and {gone_files} file(s) that the plan no longer has (renamed or removed)",
        gone_shards.len()
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Partition;
    use crate::plan::timings::{PlanNames, RunTimings};

    fn job(name: &str, partition: Option<(u32, u32)>, digest: &str, ran: &[(&str, f64)]) -> Job {
        let run = RunTimings {
            partition: partition.map(|(index, total)| Partition { index, total }),
            assignment: digest.into(),
            assigned: vec!["a".into(), "b".into(), "c".into()],
            selected: ran.iter().map(|(n, _)| (*n).to_owned()).collect(),
            plan: PlanNames {
                shards: vec!["a".into(), "b".into(), "c".into()],
                files: vec!["t/x.mjs".into()],
            },
            shards: ran.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect(),
            files: BTreeMap::from([("t/x.mjs".to_owned(), 4.0)]),
            flakes: Flakes::default(),
        };
        // The file's top level carries history too; only `run` counts as fresh.
        let shards = BTreeMap::from([("a".to_owned(), 999.0)]);
        Job {
            path: PathBuf::from(name),
            timings: Timings {
                version: 1,
                shards,
                files: BTreeMap::new(),
                flakes: Flakes::default(),
                run: Some(run),
            },
        }
    }

    #[test]
    fn fresh_figures_of_every_job_are_weighed_against_the_history() {
        let jobs = [
            job("1.json", Some((1, 2)), "d", &[("a", 10.0)]),
            job("2.json", Some((2, 2)), "d", &[("b", 20.0), ("c", 30.0)]),
        ];
        let mut previous = Timings { version: 1, ..Timings::default() };
        previous.shards.insert("a".into(), 30.0);
        previous.shards.insert("gone".into(), 5.0);
        let merged = merge(&jobs, Some(previous)).unwrap();
        assert_eq!(
            merged.timings.shards,
            BTreeMap::from([("a".into(), 20.0), ("b".into(), 20.0), ("c".into(), 30.0)])
        );
        assert_eq!(merged.timings.files, BTreeMap::from([("t/x.mjs".into(), 4.0)]));
        assert_eq!(merged.timings.run, None);
        assert_eq!(
            merged.warnings,
            [
                "dropped 1 shard(s) (gone) and 0 file(s) that the plan no longer has (renamed or removed)"
            ]
        );
    }

    #[test]
    fn jobs_with_different_assignments_are_refused_with_what_ran_twice_and_never() {
        let jobs = [
            job("1.json", Some((1, 2)), "d1", &[("a", 1.0), ("b", 1.0)]),
            job("2.json", Some((2, 2)), "d2", &[("b", 1.0)]),
        ];
        let err = merge(&jobs, None).err().unwrap();
        assert!(
            err.contains("1.json ran 1/2 of assignment d1; 2.json ran 2/2 of assignment d2"),
            "{err}"
        );
        assert!(err.contains("ran in more than one job: b; ran in none of these: c"), "{err}");
    }

    #[test]
    fn partitions_beside_a_job_that_ran_the_whole_plan_are_refused_naming_each_shard_and_its_files()
    {
        let jobs = [
            job("1.json", Some((1, 2)), "d", &[("a", 1.0), ("b", 1.0)]),
            job("2.json", Some((2, 2)), "d", &[("c", 1.0)]),
            job("whole.json", None, "d", &[("a", 1.0), ("b", 1.0), ("c", 1.0)]),
        ];
        let err = merge(&jobs, None).err().unwrap();
        assert!(err.starts_with("3 shard(s) ran in more than one of these jobs: a (1.json, whole.json); b (1.json, whole.json); c (2.json, whole.json)."), "{err}");
        let disjoint = [
            job("1.json", Some((1, 2)), "d", &[("a", 1.0)]),
            job("2.json", Some((2, 2)), "d", &[("b", 1.0), ("c", 1.0)]),
        ];
        assert!(merge(&disjoint, None).is_ok());
        assert!(merge(&jobs[2..], None).is_ok(), "one job that ran the whole plan");
    }

    #[test]
    fn a_partition_given_twice_is_refused_and_a_missing_one_is_a_warning() {
        let twice =
            [job("1.json", Some((1, 3)), "d", &[]), job("again.json", Some((1, 3)), "d", &[])];
        assert!(
            merge(&twice, None)
                .err()
                .unwrap()
                .contains("1.json and again.json both ran partition 1/3")
        );
        let missing =
            [job("1.json", Some((1, 3)), "d", &[]), job("3.json", Some((3, 3)), "d", &[])];
        let merged = merge(&missing, None).unwrap();
        assert!(
            merged.warnings[0].starts_with("no timings from partition 2/3"),
            "{:?}",
            merged.warnings
        );
    }

    #[test]
    fn the_flake_counts_of_every_job_are_added_up_and_weighed_into_the_history() {
        use crate::plan::timings::{Counts, FLAKE_DECAY};
        let mut one = job("1.json", Some((1, 2)), "d", &[("a", 1.0)]);
        let mut two = job("2.json", Some((2, 2)), "d", &[("b", 1.0)]);
        let run = |j: &mut Job| j.timings.run.as_mut().unwrap().flakes.clone();
        let mut flakes = run(&mut one);
        flakes.shards.insert("a".into(), Counts::one(true, false));
        flakes.files.insert("t/x.mjs".into(), Counts::one(true, false));
        one.timings.run.as_mut().unwrap().flakes = flakes;
        let mut flakes = run(&mut two);
        flakes.shards.insert("b".into(), Counts::one(false, true));
        flakes.files.insert("t/x.mjs".into(), Counts::one(false, false));
        two.timings.run.as_mut().unwrap().flakes = flakes;
        let mut previous = Timings { version: 1, ..Timings::default() };
        previous.flakes.shards.insert("a".into(), Counts { runs: 4.0, flaky: 2.0, failed: 0.0 });
        previous.flakes.shards.insert("c".into(), Counts { runs: 3.0, flaky: 1.0, failed: 1.0 });
        let merged = merge(&[one, two], Some(previous)).unwrap().timings.flakes;
        let d = FLAKE_DECAY;
        assert_eq!(
            merged.shards["a"],
            Counts { runs: 4.0 * d + 1.0, flaky: 2.0 * d + 1.0, failed: 0.0 }
        );
        assert_eq!(merged.shards["b"], Counts { runs: 1.0, flaky: 0.0, failed: 1.0 });
        assert_eq!(
            merged.shards["c"],
            Counts { runs: 3.0, flaky: 1.0, failed: 1.0 },
            "a shard no job ran keeps its counts"
        );
        assert_eq!(
            merged.files["t/x.mjs"],
            Counts { runs: 2.0, flaky: 1.0, failed: 0.0 },
            "both jobs ran the file: two runs"
        );
    }
}
