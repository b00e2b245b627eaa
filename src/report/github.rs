//! GitHub Actions (`GITHUB_ACTIONS=true`): a log group per shard, annotations within GitHub's
//! budget, the step summary and the step's outputs.
//!
//! Shards run in parallel, so a shard's group is written whole when it finishes — its phases
//! and its output read back from the log files — instead of interleaving live lines. Output
//! relayed from shard commands or Harper runs under `::stop-commands::`, so a test that prints
//! `::error::…` (or `::add-mask::`, or `::stop-commands::` itself) cannot issue a workflow
//! command. Annotations are written at the end, when their number is known: GitHub shows at most
//! 10 of each type per step, so the last slot summarises the rest.
//!
//! Not for: the Checks API (see `checks`), or anything but GitHub-hosted workflow syntax.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::model::{Phase, RunRecord, ShardRecord};
use super::place::Place;
use super::{Reporter, short, summary};
use crate::run::events::{Event, EventKind, ShardStatus};
use crate::run::shard::command_log;

/// GitHub displays at most this many annotations of one type per step.
pub const ANNOTATIONS_PER_TYPE: usize = 10;
/// Warning slots left for the check run's own warning (a 403 from a fork's read-only token).
const WARNINGS_RESERVED: usize = 1;
/// The most of one command's output relayed into a group; the log file has all of it.
const RELAY_LIMIT: u64 = 4 << 20;

/// Where GitHub's runner reads files from, taken from the environment.
#[derive(Debug, Clone, Default)]
pub struct StepFiles {
    /// `$GITHUB_STEP_SUMMARY`
    pub summary: Option<PathBuf>,
    /// `$GITHUB_OUTPUT`
    pub output: Option<PathBuf>,
}

impl StepFiles {
    pub fn from_env() -> StepFiles {
        let path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        StepFiles { summary: path("GITHUB_STEP_SUMMARY"), output: path("GITHUB_OUTPUT") }
    }
}

/// Is this process a GitHub Actions step?
pub fn detected() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

pub struct GitHub<W: Write + Send> {
    out: W,
    files: StepFiles,
    /// Where failed shards' annotations point.
    place: Place,
    /// Ends a `::stop-commands::` section; random, so relayed output cannot guess it.
    resume: String,
}

impl<W: Write + Send> GitHub<W> {
    pub fn new(out: W, files: StepFiles, place: Place) -> Self {
        GitHub { out, files, place, resume: uuid::Uuid::new_v4().simple().to_string() }
    }

    fn group(&mut self, shard: &ShardRecord) -> std::io::Result<()> {
        let out = &mut self.out;
        let status = shard.status.map_or("unfinished", |s| s.label());
        let mark = if shard.ok() { "✔" } else { "✘" };
        let took = shard.phases.total().map(short).unwrap_or_default();
        let addr = shard.address.map(|a| format!(" on {a}")).unwrap_or_default();
        writeln!(out, "::group::{}", escape_data(&format!("{mark} {} — {status} in {took}{addr}", shard.name)))?;
        let phases: Vec<String> = Phase::ALL
            .iter()
            .filter_map(|p| shard.phases.bounds(*p).map(|(a, b)| format!("{} {}", p.label(), short(b - a))))
            .collect();
        writeln!(out, "phases: {}", phases.join(" · "))?;
        if let Some(cause) = &shard.cause {
            writeln!(out, "cause: {}", one_line(cause))?;
        }
        if shard.status == Some(ShardStatus::BootFailed) {
            for stream in ["stdout", "stderr"] {
                let log = shard.log_dir.join("harper").join(format!("{stream}.log"));
                writeln!(out, "── Harper {stream} ({})", log.display())?;
                relay(out, &log, &self.resume)?;
            }
        }
        for (i, c) in shard.commands.iter().enumerate() {
            let Some(started) = c.started else { continue };
            let took = c.finished.map(|f| short(f.saturating_sub(started))).unwrap_or_default();
            let how = c.outcome.as_ref().map_or("unfinished".into(), super::outcome_text);
            writeln!(out, "── $ {} ({how}, {took})", one_line(&c.command))?;
            relay(out, &command_log(&shard.log_dir, i), &self.resume)?;
        }
        writeln!(out, "logs: {}", shard.log_dir.display())?;
        writeln!(out, "::endgroup::")
    }

    fn annotations(&mut self, record: &RunRecord) -> std::io::Result<()> {
        let failed: Vec<Note> = record
            .failed()
            .map(|s| Note {
                title: s.name.clone(),
                message: s.cause.clone().unwrap_or_else(|| format!("{} failed", s.name)),
                at: Some((self.place.path.clone(), self.place.line(&s.name))),
            })
            .collect();
        for line in budgeted("error", &failed, ANNOTATIONS_PER_TYPE, "failed shard(s)", true) {
            writeln!(self.out, "{line}")?;
        }
        let warnings: Vec<Note> =
            record.warnings.iter().map(|w| Note { title: "harper-shard".into(), message: w.clone(), at: None }).collect();
        for line in budgeted("warning", &warnings, ANNOTATIONS_PER_TYPE - WARNINGS_RESERVED, "warning(s)", false) {
            writeln!(self.out, "{line}")?;
        }
        Ok(())
    }
}

/// One annotation: its title, its message, and the file and line it points at.
#[derive(Debug, Clone)]
pub struct Note {
    pub title: String,
    pub message: String,
    pub at: Option<(String, u32)>,
}

impl Note {
    /// The workflow command, escaped.
    fn command(&self, level: &str) -> String {
        let at = match &self.at {
            Some((file, line)) => format!("file={},line={line},", escape_property(file)),
            None => String::new(),
        };
        format!("::{level} {at}title={}::{}", escape_property(&self.title), escape_data(&self.message))
    }
}

impl<W: Write + Send> Reporter for GitHub<W> {
    fn event(&mut self, event: &Event, record: &RunRecord) {
        if let EventKind::ShardFinished { shard, .. } = &event.kind {
            let _ = self.group(&record.shards[*shard]);
        }
    }

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        self.annotations(record)?;
        self.out.flush()?;
        if let Some(path) = &self.files.summary {
            append(path, &summary::markdown(record)).context("cannot write the step summary ($GITHUB_STEP_SUMMARY)")?;
        }
        if let Some(path) = &self.files.output {
            append(path, &outputs(record)).context("cannot write the step outputs ($GITHUB_OUTPUT)")?;
        }
        Ok(())
    }
}

/// `::level …::message` lines for `notes`, at most `budget`: when there are more, the last slot
/// says how many were left out (and their titles, with `list_titles`).
pub fn budgeted(level: &str, notes: &[Note], budget: usize, what: &str, list_titles: bool) -> Vec<String> {
    if notes.len() <= budget {
        return notes.iter().map(|n| n.command(level)).collect();
    }
    let shown = budget.saturating_sub(1);
    let mut lines: Vec<String> = notes[..shown].iter().map(|n| n.command(level)).collect();
    let rest: Vec<&str> = notes[shown..].iter().map(|n| n.title.as_str()).collect();
    let titles = if list_titles { format!(": {}", rest.join(", ")) } else { String::new() };
    let message = format!("and {} more {what}{titles}; see the step summary and report.json", rest.len());
    lines.push(Note { title: "harper-shard".into(), message, at: None }.command(level));
    lines
}

/// The step's outputs in `$GITHUB_OUTPUT` syntax; values that could hold a line break use the
/// `name<<delimiter` form with a random delimiter.
pub fn outputs(record: &RunRecord) -> String {
    let failed: Vec<&str> = record.failed().map(|s| s.name.as_str()).collect();
    let passed = record.failed().next().is_none() && record.shards.iter().all(|s| s.status.is_some());
    let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4().simple());
    let multiline = |name: &str, value: &str| format!("{name}<<{delimiter}\n{value}\n{delimiter}\n");
    let mut text = multiline("report-dir", &record.report_dir.display().to_string());
    text.push_str(&multiline("failed-shards", &failed.join(" ")));
    text.push_str(&format!("passed={passed}\n"));
    text.push_str(&format!("duration-seconds={:.3}\n", record.duration.as_secs_f64()));
    text
}

/// A workflow command's message: `%`, CR and LF escaped.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow command's property value: as [`escape_data`], and `:` and `,` too.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Copies a log file into the output with workflow commands off; a missing file is noted.
fn relay(out: &mut impl Write, path: &Path, resume: &str) -> std::io::Result<()> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return writeln!(out, "(no output)"),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return writeln!(out, "(no output)");
    }
    if len > RELAY_LIMIT {
        writeln!(out, "(the first {} bytes are left out; the log has everything)", len - RELAY_LIMIT)?;
        file.seek(std::io::SeekFrom::Start(len - RELAY_LIMIT))?;
    }
    let mut bytes = Vec::new();
    file.take(RELAY_LIMIT).read_to_end(&mut bytes)?;
    writeln!(out, "::stop-commands::{resume}")?;
    out.write_all(&bytes)?;
    if !bytes.ends_with(b"\n") {
        writeln!(out)?;
    }
    writeln!(out, "::{resume}::")
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(title: &str, message: &str) -> Note {
        Note { title: title.into(), message: message.into(), at: Some(("plan:y.yml".into(), 7)) }
    }

    #[test]
    fn messages_escape_percent_and_line_breaks() {
        assert_eq!(escape_data("100% done\r\nnext"), "100%25 done%0D%0Anext");
    }

    #[test]
    fn properties_also_escape_colon_and_comma() {
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
    }

    #[test]
    fn annotations_past_the_budget_become_one_summary() {
        let items: Vec<Note> = (0..15).map(|i| note(&format!("s{i}"), &format!("broke {i}"))).collect();
        let lines = budgeted("error", &items, 10, "failed shard(s)", true);
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "::error file=plan%3Ay.yml,line=7,title=s0::broke 0");
        assert!(lines[9].starts_with("::error title=harper-shard::and 6 more failed shard(s): s9, s10"), "{}", lines[9]);
    }

    #[test]
    fn annotations_within_the_budget_are_all_shown() {
        let items: Vec<Note> = (0..10).map(|i| note(&format!("s{i}"), "x")).collect();
        assert_eq!(budgeted("error", &items, 10, "failed shard(s)", true).len(), 10);
    }
}
