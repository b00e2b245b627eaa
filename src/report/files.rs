//! The report directory: `report.json` (the run record, versioned) and `timings.json` (what the
//! next run balances with: per shard, and per file from the JUnit XML commands leave in their
//! `HARPER_SHARD_JUNIT_DIR`, see [`super::harvest`]). Per-shard logs are written there by the run
//! as it goes.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Reporter, harvest};
use super::model::RunRecord;
use crate::plan::Timings;
use crate::plan::timings::TIMINGS_VERSION;
use crate::run::events::{Event, ShardStatus};

pub struct Files {
    dir: PathBuf,
    /// Timings of shards this run did not run, carried over so a partitioned job keeps them.
    previous: Timings,
    /// Test files are named relative to it in `timings.json`.
    plan_dir: PathBuf,
}

impl Files {
    pub fn new(dir: &Path, previous: Option<Timings>, plan_dir: &Path) -> Files {
        Files { dir: dir.to_path_buf(), previous: previous.unwrap_or_default(), plan_dir: plan_dir.to_path_buf() }
    }
}

impl Reporter for Files {
    fn event(&mut self, _: &Event, _: &RunRecord) {}

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create the report directory {}", self.dir.display()))?;
        write_json(&self.dir.join("report.json"), record)?;
        let mut timings = self.previous.clone();
        timings.version = TIMINGS_VERSION;
        for shard in &record.shards {
            if shard.status == Some(ShardStatus::Passed)
                && let Some(total) = shard.phases.total()
            {
                timings.shards.insert(shard.name.clone(), total.as_secs_f64());
            }
        }
        let mut problems = Vec::new();
        for shard in &record.shards {
            let (files, bad) = harvest::file_times(&shard.log_dir.join(harvest::JUNIT_DIR), &self.plan_dir);
            timings.files.extend(files);
            problems.extend(bad);
        }
        write_json(&self.dir.join("timings.json"), &timings)?;
        if problems.is_empty() { Ok(()) } else { Err(anyhow::anyhow!("{}", problems.join("; "))) }
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
