//! The report directory: `report.json` (the run record, versioned) and `timings.json` (what the
//! next run balances with). Per-shard logs are written there by the run as it goes.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Reporter;
use super::model::RunRecord;
use crate::plan::Timings;
use crate::plan::timings::TIMINGS_VERSION;
use crate::run::events::{Event, ShardStatus};

pub struct Files {
    dir: PathBuf,
    /// Timings of shards this run did not run, carried over so a partitioned job keeps them.
    previous: Timings,
}

impl Files {
    pub fn new(dir: &Path, previous: Option<Timings>) -> Files {
        Files { dir: dir.to_path_buf(), previous: previous.unwrap_or_default() }
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
            if shard.status == Some(ShardStatus::Passed) {
                if let Some(total) = shard.phases.total() {
                    timings.shards.insert(shard.name.clone(), total.as_secs_f64());
                }
            }
        }
        write_json(&self.dir.join("timings.json"), &timings)
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
