//! The report directory: `report.json` (the run record, versioned) and `timings.json` (what the
//! next run balances with: per shard, and per file from the JUnit XML commands leave in their
//! `HARPER_SHARD_JUNIT_DIR`, see [`crate::cases`]; the history weighed with this run's figures,
//! and this run's own in its `run` section for `timings merge`), and a folder per shard that the
//! run writes its logs into as it goes.
//!
//! Each run starts the folders of the shards it runs fresh ([`prepare`]): logs of an earlier run
//! are not appended to, and nothing planted in a folder (a link to somewhere else) survives into
//! this run. Every file here is created as described in `supervise::output`: never through a
//! link.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Reporter;
use super::model::{AttemptRecord, RunRecord, ShardRecord};
use crate::cases;
use crate::plan::Timings;
use crate::plan::timings::{RunTimings, TIMINGS_VERSION};
use crate::run::ReportDir;
use crate::run::events::{Event, ShardStatus};
use crate::supervise::output::write_atomic;

/// Creates the report directory `dir` and, in it, an empty folder for each of `shards`: what an
/// earlier run left there — logs, JUnit XML, a link in place of the folder — is removed first
/// (a link is removed, not followed).
pub fn prepare<'a>(
    dir: &ReportDir,
    shards: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.path())
        .with_context(|| format!("cannot create the report directory {}", dir.path().display()))?;
    for shard in shards {
        let folder = dir.shard(shard).path().to_path_buf();
        let removed = match std::fs::symlink_metadata(&folder) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&folder),
            Ok(_) => std::fs::remove_file(&folder),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        removed.with_context(|| {
            format!("cannot clear {} (shard {shard}) of an earlier run's logs", folder.display())
        })?;
        // Not create_dir_all: whatever appeared here meanwhile is refused, not reused.
        std::fs::create_dir(&folder)
            .with_context(|| format!("cannot create {} (shard {shard})", folder.display()))?;
    }
    Ok(())
}

pub struct Files {
    dir: ReportDir,
    /// The history the run was given (`--timings`): kept for shards this run does not measure,
    /// weighed against the figures of those it does.
    previous: Timings,
    /// Test files are named relative to it in `timings.json`.
    plan_dir: PathBuf,
    /// What this run was to run; its figures are added at the end.
    run: RunTimings,
}

impl Files {
    pub fn new(dir: &ReportDir, previous: Timings, plan_dir: &Path, run: RunTimings) -> Files {
        Files { dir: dir.clone(), previous, plan_dir: plan_dir.to_path_buf(), run }
    }
}

impl Reporter for Files {
    fn event(&mut self, _: &Event, _: &RunRecord) {}

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        let dir = self.dir.path();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
        write_json(&self.dir.report_json(), record)?;
        let mut run = self.run.clone();
        for shard in &record.shards {
            if let Some(total) = measured(shard).and_then(|a| a.phases.own()) {
                run.shards.insert(shard.name.clone(), total.as_secs_f64());
            }
        }
        let mut problems = Vec::new();
        // A file run again by a later attempt takes that attempt's time.
        for junit in
            record.shards.iter().flat_map(|s| &s.attempts).filter_map(|a| a.junit_dir.as_ref())
        {
            let (files, bad) = cases::file_times(junit, &self.plan_dir);
            run.files.extend(files);
            problems.extend(bad);
        }
        run.flakes = super::flakes::fresh(record);
        let mut timings = self.previous.clone();
        timings.version = TIMINGS_VERSION;
        timings.record(&run.shards, &run.files);
        timings.flakes.record(&run.flakes);
        timings.run = Some(run);
        write_json(&self.dir.timings_json(), &timings)?;
        if problems.is_empty() { Ok(()) } else { Err(anyhow::anyhow!("{}", problems.join("; "))) }
    }
}

/// The attempt whose time a shard's timings take: a passed shard's, and a flaky one's passing
/// attempt when it ran the whole shard (a retry of some files ran less: then the first, which
/// ran all of them), so that a flake does not count twice.
fn measured(shard: &ShardRecord) -> Option<&AttemptRecord> {
    let commands =
        |a: &AttemptRecord| a.commands.iter().map(|c| c.command.clone()).collect::<Vec<_>>();
    match shard.status? {
        ShardStatus::Passed => Some(shard.last()),
        ShardStatus::Flaky if commands(shard.last()) == commands(&shard.attempts[0]) => {
            Some(shard.last())
        }
        ShardStatus::Flaky => shard.attempts.first(),
        _ => None,
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_atomic(path, (text + "\n").as_bytes())
}
