//! Buildkite (`BUILDKITE=true` and `buildkite-agent` on `PATH`): the step summary's markdown
//! ([`summary::markdown`]) posted as a build annotation with `buildkite-agent annotate --style
//! error|warning|success --context harper-shard`, so that a rerun of the step replaces it
//! instead of adding another.
//!
//! The annotation is a courtesy: when the agent is missing, refuses, or hangs, the run says so in
//! a warning and its exit status stays the run's own.
//!
//! Not for: Buildkite's test analytics (they read `junit.xml`) or its log groups.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::model::RunRecord;
use super::{Reporter, summary};
use crate::run::events::Event;
use crate::text;

/// Buildkite refuses an annotation body larger than 1 MiB (measured in bytes).
pub const ANNOTATION_LIMIT: usize = 1024 * 1024;
/// How long `buildkite-agent annotate` may take before it is killed and the run goes on.
const ANNOTATE_LIMIT: Duration = Duration::from_secs(30);
/// The most of the agent's complaint quoted in the warning.
const COMPLAINT_CHARS: usize = 500;

pub struct Buildkite {
    agent: PathBuf,
}

impl Buildkite {
    /// The reporter, when this is a Buildkite job (`BUILDKITE=true`) with `buildkite-agent` on
    /// `path` (the value of `PATH`).
    pub fn detect(buildkite: Option<&OsStr>, path: Option<&OsStr>) -> Option<Buildkite> {
        if buildkite != Some(OsStr::new("true")) {
            return None;
        }
        let agent = std::env::split_paths(path?)
            .map(|dir| dir.join("buildkite-agent"))
            .find(|p| executable(p))?;
        Some(Buildkite { agent })
    }
}

/// A regular file someone may execute (a directory or a FIFO of that name is passed over).
fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `error` when a shard failed, `warning` when one was flaky or quarantined or the run warned of
/// anything, else `success`.
pub fn style(record: &RunRecord) -> &'static str {
    use crate::run::events::ShardStatus;
    let flaky = record
        .shards
        .iter()
        .any(|s| matches!(s.status, Some(ShardStatus::Flaky | ShardStatus::Quarantined)));
    if record.failed().next().is_some() || record.exit_code.is_some_and(|c| c != 0) {
        "error"
    } else if flaky || !record.warnings.is_empty() || record.timed_out {
        "warning"
    } else {
        "success"
    }
}

impl Reporter for Buildkite {
    fn event(&mut self, _: &Event, _: &RunRecord) {}

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        let body = summary::markdown(record, ANNOTATION_LIMIT);
        annotate(&self.agent, style(record), body.into_bytes()).with_context(|| {
            format!("cannot post the Buildkite annotation ({} annotate)", self.agent.display())
        })
    }
}

/// Runs `agent annotate` with `body` on its stdin, within [`ANNOTATE_LIMIT`].
fn annotate(agent: &Path, style: &str, body: Vec<u8>) -> anyhow::Result<()> {
    let mut child = Command::new(agent)
        .args(["annotate", "--style", style, "--context", "harper-shard"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start it")?;
    // Written and read beside the wait: an agent that reads nothing must not block the run.
    let mut stdin = child.stdin.take().context("no stdin")?;
    let (wrote_tx, wrote_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || wrote_tx.send(stdin.write_all(&body)));
    let mut stderr = child.stderr.take().context("no stderr")?;
    let (said_tx, said_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let _ = stderr.by_ref().take(64 * 1024).read_to_end(&mut said);
        let _ = said_tx.send(said);
    });
    // Waited for on a thread of its own, so that a hung agent is killed at the limit; until the
    // waiter reaps it, its pid cannot name another process.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()));
    let status = match rx.recv_timeout(ANNOTATE_LIMIT) {
        Ok(waited) => waited.context("cannot wait for it")?,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            anyhow::bail!("it did not finish within {}s and was killed", ANNOTATE_LIMIT.as_secs());
        }
    };
    if !status.success() {
        // Whatever the agent left running may hold its stderr open: what it said by then is enough.
        let said = said_rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
        let said = text::one_line(String::from_utf8_lossy(&said).trim());
        let said: String = said.chars().take(COMPLAINT_CHARS).collect();
        anyhow::bail!("it ended with {status}: {said}");
    }
    // Whatever the agent left running may hold its stdin open without reading it.
    match wrote_rx.recv_timeout(Duration::from_secs(1)) {
        Ok(Ok(())) => Ok(()),
        _ => anyhow::bail!("it did not read the whole annotation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::synthetic::{Run, Shard};

    /// The style and the body `buildkite-agent annotate` is given for `run`.
    fn annotation(run: &Run) -> (&'static str, String) {
        let record = run.record();
        (style(&record), summary::markdown(&record, ANNOTATION_LIMIT))
    }

    #[test]
    fn a_passed_runs_annotation_has_the_success_style_and_the_summarys_headline() {
        let (style, body) = annotation(&Run::of([Shard::passing("ok")]));
        assert_eq!(style, "success");
        assert!(body.starts_with("## ✅ harper-shard: all 1 shard(s) passed"), "{body}");
    }

    #[test]
    fn a_flaky_runs_annotation_has_the_warning_style_and_the_flaky_section() {
        let once = Shard::failing("once", &["not ok 1"]).then_passing(100);
        let (style, body) = annotation(&Run::of([once]));
        assert_eq!(style, "warning");
        assert!(body.contains("### Flaky"), "{body}");
    }

    #[test]
    fn the_agent_is_found_only_under_buildkite_and_only_as_an_executable_file() {
        let dir = std::env::temp_dir().join(format!("hs-bk-{}", uuid::Uuid::new_v4().simple()));
        let (empty, dir_named, found) = (dir.join("empty"), dir.join("dir"), dir.join("bin"));
        std::fs::create_dir_all(dir_named.join("buildkite-agent")).unwrap();
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&found).unwrap();
        std::fs::write(found.join("buildkite-agent"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            found.join("buildkite-agent"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let path = std::env::join_paths([&empty, &dir_named, &found]).unwrap();
        let on = Some(OsStr::new("true"));
        let agent = Buildkite::detect(on, Some(&path)).map(|b| b.agent);
        let off = Buildkite::detect(Some(OsStr::new("1")), Some(&path)).is_none()
            && Buildkite::detect(None, Some(&path)).is_none();
        let without =
            Buildkite::detect(on, Some(&std::env::join_paths([&empty, &dir_named]).unwrap()))
                .is_none();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            agent,
            Some(found.join("buildkite-agent")),
            "the first executable file of that name on PATH"
        );
        assert!(off, "only BUILDKITE=true is Buildkite");
        assert!(without, "a directory named buildkite-agent is not the agent");
    }
}
