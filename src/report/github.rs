//! GitHub Actions (`GITHUB_ACTIONS=true`): a log group per shard, annotations within GitHub's
//! budget, the step summary and the step's outputs.
//!
//! Shards run in parallel, so a shard's group is written whole when it finishes — its phases,
//! its output read back from the log files, a line per instance the control socket touched —
//! instead of interleaving live lines. Relayed output runs under `::stop-commands::`
//! ([`Out::relay`]), so a test that prints `::error::…` (or `::add-mask::`, or
//! `::stop-commands::` itself) cannot issue a workflow command; the tool's own commands are the
//! [`Command`]s it hands to [`Out::command`]. Annotations are written at the end, when their
//! number is known: GitHub shows at most 10 of each type per step, so past that the last slot
//! summarises the rest — an error per failed shard, a timing notice per passed one (the slowest
//! get the slots), and the warnings. An instance's failure is in its shard's group and the
//! step summary, not an annotation of its own: the shard's status says whether it mattered.
//!
//! `$GITHUB_STEP_SUMMARY` and `$GITHUB_OUTPUT` are opened without blocking and only written if
//! they are regular files: a FIFO nobody reads must not hang the tool.
//!
//! Not for: the Checks API (see `checks`), or anything but GitHub-hosted workflow syntax.

use std::cmp::Reverse;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::model::{RunRecord, ShardRecord};
use super::out::Out;
use super::place::Place;
use super::workflow::{Command, Note};
use super::{Reporter, phase_line, short, summary};
use crate::run::events::{Event, EventKind, ShardStatus};
use crate::text;

/// GitHub displays at most this many annotations of one type per step.
pub const ANNOTATIONS_PER_TYPE: usize = 10;
/// Warning slots left for the check run's own warning (a 403 from a fork's read-only token).
const WARNINGS_RESERVED: usize = 1;
/// The most of one command's output relayed into a group; the log file has all of it.
const RELAY_LIMIT: u64 = 4 << 20;
/// Room left in the step summary for anything else the step writes there.
const SUMMARY_MARGIN: usize = 16 * 1024;

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

pub struct GitHub {
    out: Out,
    files: StepFiles,
    /// Where shards' annotations point.
    place: Place,
}

impl GitHub {
    pub fn new(out: impl Into<Out>, files: StepFiles, place: Place) -> Self {
        GitHub { out: out.into(), files, place }
    }

    fn group(&mut self, shard: &ShardRecord) -> std::io::Result<()> {
        let status = shard.status.map_or("unfinished", |s| s.label());
        let mark = if shard.ok() { "✔" } else { "✘" };
        let last = shard.last();
        // A shard that never started has no time to tell.
        let took = last.phases.total().map(|t| format!(" in {}", short(t))).unwrap_or_default();
        let addr = last.address().map(|a| format!(" on {a}")).unwrap_or_default();
        self.out.command(&Command::new(
            "group",
            format!("{mark} {} — {status}{took}{addr}", shard.name),
        ))?;
        let out = &mut self.out;
        writeln!(out, "phases: {}", phase_line(&last.phases))?;
        if let Some(cause) = &shard.cause {
            writeln!(out, "cause: {}", text::one_line(cause))?;
        }
        if shard.status == Some(ShardStatus::BootFailed) {
            match last.boot_logs() {
                Some(logs) => {
                    for (stream, log) in [("stdout", &logs.stdout), ("stderr", &logs.stderr)] {
                        writeln!(out, "── Harper {stream} ({})", log.display())?;
                        relay(out, log)?;
                    }
                }
                None => writeln!(
                    out,
                    "── Harper's own boot never started: it has no output (the cause says why)"
                )?,
            }
        }
        for c in &last.commands {
            let (Some(started), Some(log)) = (c.started, &c.log) else { continue };
            let took = c.finished.map(|f| short(f.saturating_sub(started))).unwrap_or_default();
            let how = c.outcome.as_ref().map_or("unfinished".into(), super::outcome_text);
            writeln!(out, "── $ {} ({how}, {took})", text::one_line(&c.command))?;
            relay(out, log)?;
        }
        for instance in last.shown_instances() {
            writeln!(out, "instance {}", text::one_line(&super::instance_line(instance)))?;
        }
        writeln!(out, "logs: {}", shard.log_dir.display())?;
        self.out.command(&Command::new("endgroup", ""))
    }

    fn annotations(&mut self, record: &RunRecord) -> std::io::Result<()> {
        let place = |s: &ShardRecord| {
            (!self.place.path.is_empty())
                .then(|| (self.place.path.clone(), self.place.line(&s.name)))
        };
        let failed: Vec<Note> = record
            .failed()
            .map(|s| Note {
                title: s.name.clone(),
                message: s.cause.clone().unwrap_or_else(|| format!("{} failed", s.name)),
                at: place(s),
            })
            .collect();
        let failed = budgeted("error", &failed, ANNOTATIONS_PER_TYPE, |rest| {
            let titles: Vec<&str> = rest.iter().map(|n| n.title.as_str()).collect();
            format!(
                "and {} more failed shard(s): {}; see the step summary and report.json",
                rest.len(),
                titles.join(", ")
            )
        });

        // When they do not all fit, the slots go to the slowest.
        let mut passed: Vec<&ShardRecord> =
            record.shards.iter().filter(|s| s.status == Some(ShardStatus::Passed)).collect();
        if passed.len() > ANNOTATIONS_PER_TYPE {
            passed.sort_by_key(|s| Reverse(s.last().phases.total()));
        }
        let slowest_left =
            passed.get(ANNOTATIONS_PER_TYPE - 1).and_then(|s| s.last().phases.total());
        let timings: Vec<Note> = passed
            .iter()
            .map(|s| {
                let phases = &s.last().phases;
                let total = phases.total().map(short).unwrap_or_default();
                Note {
                    title: s.name.clone(),
                    message: format!("passed in {total}: {}", phase_line(phases)),
                    at: place(s),
                }
            })
            .collect();
        let timings = budgeted("notice", &timings, ANNOTATIONS_PER_TYPE, |rest| {
            let slowest = slowest_left.map(short).unwrap_or_default();
            format!(
                "and {} more passed shard(s), none slower than {slowest}; see the step summary for their phases",
                rest.len()
            )
        });

        // Quarantined and flaky shards first: of the warnings, they are the ones a person acts on.
        let quarantined =
            record.shards.iter().filter(|s| s.status == Some(ShardStatus::Quarantined));
        let quarantined = quarantined.map(|s| Note {
            title: format!("{}: quarantined", s.name),
            message: super::quarantine_line(s),
            at: place(s),
        });
        let flaky = record.shards.iter().filter(|s| s.status == Some(ShardStatus::Flaky));
        let flaky = flaky.map(|s| Note {
            title: format!("{}: flaky", s.name),
            message: super::flaky_line(s),
            at: place(s),
        });
        let others = record.warnings.iter().map(|w| Note {
            title: "harper-shard".into(),
            message: w.clone(),
            at: None,
        });
        let warnings: Vec<Note> = quarantined.chain(flaky).chain(others).collect();
        let warnings = budgeted(
            "warning",
            &warnings,
            ANNOTATIONS_PER_TYPE - WARNINGS_RESERVED,
            |rest| {
                format!(
                    "and {} more warning(s), quarantined or flaky shard(s); see the step summary and report.json",
                    rest.len()
                )
            },
        );
        for command in failed.iter().chain(&timings).chain(&warnings) {
            self.out.command(command)?;
        }
        Ok(())
    }
}

impl Reporter for GitHub {
    fn event(&mut self, event: &Event, record: &RunRecord) {
        if let EventKind::ShardFinished { shard, .. } = &event.kind {
            let _ = self.group(&record.shards[*shard]);
        }
    }

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        self.annotations(record)?;
        self.out.flush()?;
        let mut problems = Vec::new();
        if let Some(path) = &self.files.summary {
            let written = open_step_file(path).and_then(|(mut file, len)| {
                let limit =
                    summary::STEP_SUMMARY_LIMIT.saturating_sub(len as usize + SUMMARY_MARGIN);
                Ok(file.write_all(summary::markdown(record, limit).as_bytes())?)
            });
            if let Err(e) = written {
                problems.push(format!(
                    "{:#}",
                    e.context("cannot write the step summary ($GITHUB_STEP_SUMMARY)")
                ));
            }
        }
        if let Some(path) = &self.files.output {
            let written = open_step_file(path)
                .and_then(|(mut file, _)| Ok(file.write_all(outputs(record).as_bytes())?));
            if let Err(e) = written {
                problems.push(format!(
                    "{:#}",
                    e.context("cannot write the step outputs ($GITHUB_OUTPUT)")
                ));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(anyhow::anyhow!("{}", problems.join("; "))) }
    }
}

/// `::level …::message` commands for `notes`, at most `budget`: when there are more, the last
/// slot says what `rest` makes of the ones left out.
pub fn budgeted(
    level: &'static str,
    notes: &[Note],
    budget: usize,
    rest: impl FnOnce(&[Note]) -> String,
) -> Vec<Command> {
    if notes.len() <= budget {
        return notes.iter().map(|n| n.command(level)).collect();
    }
    let shown = budget.saturating_sub(1);
    let mut commands: Vec<Command> = notes[..shown].iter().map(|n| n.command(level)).collect();
    commands.push(
        Note { title: "harper-shard".into(), message: rest(&notes[shown..]), at: None }
            .command(level),
    );
    commands
}

/// The step's outputs in `$GITHUB_OUTPUT` syntax; values that could hold a line break use the
/// `name<<delimiter` form with a random delimiter.
pub fn outputs(record: &RunRecord) -> String {
    let failed: Vec<&str> = record.failed().map(|s| s.name.as_str()).collect();
    let passed =
        record.failed().next().is_none() && record.shards.iter().all(|s| s.status.is_some());
    let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4().simple());
    let multiline =
        |name: &str, value: &str| format!("{name}<<{delimiter}\n{value}\n{delimiter}\n");
    let mut text = multiline("report-dir", &record.report_dir.display().to_string());
    text.push_str(&multiline("failed-shards", &failed.join(" ")));
    text.push_str(&format!("passed={passed}\n"));
    text.push_str(&format!("duration-seconds={:.3}\n", record.duration.as_secs_f64()));
    text
}

/// Relays a log file into the group (the last [`RELAY_LIMIT`] bytes of it); a missing file is
/// noted. A log that has become a link is not followed.
fn relay(out: &mut Out, path: &Path) -> std::io::Result<()> {
    let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return writeln!(out, "(not shown: {} is now a symbolic link)", path.display());
        }
        Err(_) => return writeln!(out, "(no output)"),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return writeln!(out, "(no output)");
    }
    if len > RELAY_LIMIT {
        writeln!(
            out,
            "(the first {} bytes are left out; the log has everything)",
            len - RELAY_LIMIT
        )?;
        file.seek(std::io::SeekFrom::Start(len - RELAY_LIMIT))?;
    }
    out.relay(&mut file.take(RELAY_LIMIT))
}

/// Opens one of GitHub's step files to append, without blocking, and only if it is a regular
/// file; returns it with its length so far.
fn open_step_file(path: &Path) -> anyhow::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| {
            format!("cannot open {} (a FIFO nobody reads cannot be opened either)", path.display())
        })?;
    let meta = file.metadata().with_context(|| format!("cannot look at {}", path.display()))?;
    if !meta.file_type().is_file() {
        anyhow::bail!(
            "{} is not a regular file (a FIFO, a device or a socket?); nothing was written to it",
            path.display()
        );
    }
    Ok((file, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(title: &str, message: &str) -> Note {
        Note { title: title.into(), message: message.into(), at: Some(("plan:y.yml".into(), 7)) }
    }

    fn rest(notes: &[Note]) -> String {
        format!(
            "and {} more: {}",
            notes.len(),
            notes.iter().map(|n| n.title.as_str()).collect::<Vec<_>>().join(", ")
        )
    }

    #[test]
    fn annotations_past_the_budget_become_one_summary() {
        let items: Vec<Note> =
            (0..15).map(|i| note(&format!("s{i}"), &format!("broke {i}"))).collect();
        let lines: Vec<String> =
            budgeted("error", &items, 10, rest).iter().map(Command::render).collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[0], "::error file=plan%3Ay.yml,line=7,title=s0::broke 0");
        assert!(
            lines[9].starts_with("::error title=harper-shard::and 6 more: s9, s10"),
            "{}",
            lines[9]
        );
    }

    #[test]
    fn annotations_within_the_budget_are_all_shown() {
        let items: Vec<Note> = (0..10).map(|i| note(&format!("s{i}"), "x")).collect();
        assert_eq!(budgeted("error", &items, 10, rest).len(), 10);
    }

    use crate::report::synthetic::{self, Run, Shard, github_of, place_of};
    use std::collections::BTreeMap;

    /// The annotations of `level` in a log of the reporter's own lines: each one's properties
    /// and message.
    fn annotated(log: &str, level: &str) -> Vec<(BTreeMap<String, String>, String)> {
        let prefix = format!("::{level} ");
        log.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                let (props, data) = rest.split_once("::").expect("a workflow command");
                let props = props.split(',').filter_map(|p| p.split_once('='));
                (props.map(|(k, v)| (k.to_owned(), v.to_owned())).collect(), data.to_owned())
            })
            .collect()
    }

    fn titles(log: &str, level: &str) -> Vec<String> {
        annotated(log, level).into_iter().map(|(p, _)| p["title"].clone()).collect()
    }

    /// `passed` passing shards `ok-00`, … and `failed` failing ones `bad-00`, … whose command
    /// says `100% broken` and exits 3, as the GitHub reporter writes them, each pointed at its
    /// line of the plan.
    fn passing_and_failing(passed: usize, failed: usize) -> (Run, String) {
        let ok = (0..passed).map(|i| Shard::passing(&format!("ok-{i:02}")));
        let bad = (0..failed).map(|i| {
            let line = format!("echo 100% broken {i}; exit 3");
            let said = format!("100% broken {i}");
            Shard::new(
                &format!("bad-{i:02}"),
                vec![synthetic::Command::failing(&line, 100, 3, &[&said])],
            )
        });
        let run = Run::of(ok.chain(bad));
        let log = github_of(&run.events(), &place_of(&run));
        (run, log)
    }

    #[test]
    fn twenty_five_shards_with_fifteen_failing_stay_within_the_annotation_budget() {
        let (run, log) = passing_and_failing(10, 15);
        let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("::error")).collect();
        assert_eq!(errors.len(), 10, "{errors:#?}");
        let place = place_of(&run);
        for (i, e) in errors[..9].iter().enumerate() {
            let line = place.line(&format!("bad-{i:02}"));
            assert!(
                e.starts_with(&format!(
                    "::error file=harper-shards.yml,line={line},title=bad-{i:02}::"
                )),
                "{e}"
            );
            assert!(e.contains("100%25 broken"), "the message is escaped: {e}");
        }
        assert!(
            errors[9].starts_with(
                "::error title=harper-shard::and 6 more failed shard(s): bad-09, bad-10"
            ),
            "{}",
            errors[9]
        );
    }

    #[test]
    fn each_passing_shard_gets_one_timing_notice_at_its_line_in_the_plan() {
        let (run, log) = passing_and_failing(3, 0);
        let notices = annotated(&log, "notice");
        assert_eq!(notices.len(), 3, "{log}");
        let place = place_of(&run);
        for ((props, data), shard) in notices.iter().zip(["ok-00", "ok-01", "ok-02"]) {
            assert_eq!(props["title"], shard);
            assert_eq!(props["file"], "harper-shards.yml");
            assert_eq!(props["line"], place.line(shard).to_string());
            assert!(data.starts_with("passed in "), "{data}");
            for phase in ["wait ", "boot ", "commands ", "teardown "] {
                assert!(data.contains(phase), "{phase}in {data}");
            }
        }
    }

    #[test]
    fn failed_shards_get_their_errors_and_no_timing_notice() {
        let (_, log) = passing_and_failing(2, 2);
        assert_eq!(titles(&log, "error"), ["bad-00", "bad-01"]);
        assert_eq!(titles(&log, "notice"), ["ok-00", "ok-01"]);
    }

    #[test]
    fn past_ten_passing_shards_the_slowest_nine_get_notices_and_the_tenth_sums_up_the_rest() {
        let fast = (0..16).map(|i| Shard::passing(&format!("fast-{i:02}")));
        let slow: Vec<String> = (0..9).map(|i| format!("slow-{i}")).collect();
        let run = Run::of(fast.chain(slow.iter().map(|name| Shard::passing(name).took(1500))));
        let log = github_of(&run.events(), &place_of(&run));
        let notices = annotated(&log, "notice");
        assert_eq!(notices.len(), 10, "{notices:#?}");
        let mut titled: Vec<&str> = notices[..9].iter().map(|(p, _)| p["title"].as_str()).collect();
        titled.sort_unstable();
        assert_eq!(titled, slow, "the slots go to the slowest shards");
        assert_eq!(notices[9].0["title"], "harper-shard");
        assert!(
            notices[9].1.starts_with("and 16 more passed shard(s), none slower than 0.71s"),
            "{:?}",
            notices[9]
        );
    }

    #[test]
    fn github_shows_each_flaky_shard_as_a_warning_and_in_the_step_summary() {
        let run = Run::of([Shard::failing("once", &["not ok 1"]).then_passing(100)]);
        let log = github_of(&run.events(), &place_of(&run));
        let warning = log
            .lines()
            .find(|l| l.starts_with("::warning ") && l.contains("title=once%3A flaky"))
            .unwrap_or_else(|| panic!("no flaky warning:\n{log}"));
        assert!(
            warning.contains("failed on attempt 1 of 2") && warning.contains("passed on attempt 2"),
            "{warning}"
        );
        let md = summary::markdown(&run.record(), summary::STEP_SUMMARY_LIMIT);
        assert!(
            md.contains("### Flaky\n") && md.contains("**once** — failed on attempt 1 of 2"),
            "{md}"
        );
        assert!(
            md.contains("    section once (last attempt, 2 of 2)\n"),
            "the chart says which attempt it draws: {md}"
        );
    }

    #[test]
    fn a_shards_group_has_a_line_per_instance_and_an_instances_failed_boot_adds_no_annotation() {
        let run = Run::of([Shard::passing("auth").with_instances(1)]);
        let log = github_of(&run.events(), &place_of(&run));
        let body: Vec<&str> = log
            .lines()
            .skip_while(|l| !l.starts_with("::group::"))
            .take_while(|l| *l != "::endgroup::")
            .collect();
        let lines: Vec<&str> = body.iter().filter_map(|l| l.strip_prefix("instance ")).collect();
        assert_eq!(lines.len(), 3, "{body:?}");
        assert!(
            lines[0].starts_with("i1 (auth tests) on 127.0.0.3: boot 0.50s ×2 · up "),
            "{lines:?}"
        );
        assert!(lines[0].ends_with(" — stopped, released"), "{lines:?}");
        assert!(
            lines[2].ends_with(
                " — boot failed, released: Harper exited before it was ready: exit code 3"
            ),
            "{lines:?}"
        );
        let annotations: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("::") && !l.starts_with("::group::") && *l != "::endgroup::")
            .collect();
        assert!(
            annotations.len() == 1 && annotations[0].starts_with("::notice "),
            "the shard passed; its instance's failed boot is in its group, not an annotation: \
             {annotations:#?}"
        );
    }
}
