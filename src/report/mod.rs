//! Rendering a run: every reporter sees the same events and the same [`model::RunRecord`]
//! built from them. This is the only module that prints, and all of it goes through
//! [`out::Out`].

pub mod buildkite;
pub mod checks;
pub mod console;
pub mod files;
pub mod flakes;
pub mod github;
pub mod html;
pub mod junit;
pub mod live;
pub mod merged;
pub mod model;
pub mod out;
pub mod place;
pub mod plan;
pub mod policy;
pub mod say;
pub mod summary;
pub mod svg;
pub mod warning;
pub mod workflow;

use std::io::Write;

use tokio::sync::mpsc;

use crate::run::events::{Event, Outcome};
use model::{InstanceRecord, Phase, Phases, RunRecord};

/// Something that renders a run.
pub trait Reporter: Send {
    /// Called for every event, after the record has taken it in.
    fn event(&mut self, event: &Event, record: &RunRecord);
    /// Called once, after the last event.
    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()>;
}

/// Feeds every event to every reporter until the run closes the channel; returns the record.
pub async fn consume(
    mut rx: mpsc::UnboundedReceiver<Event>,
    mut reporters: Vec<Box<dyn Reporter>>,
) -> RunRecord {
    let mut record = RunRecord::new();
    while let Some(event) = rx.recv().await {
        record.apply(&event);
        for r in &mut reporters {
            r.event(&event, &record);
        }
    }
    let mut out = out::stderr();
    for r in &mut reporters {
        if let Err(e) = r.finish(&record) {
            let _ = writeln!(out, "harper-shard: warning: {e:#}");
        }
    }
    record
}

/// "6.21s", "1m 02s": short durations for tables and lines.
pub fn short(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.2}s")
    } else {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// "wait 0.01s · boot 0.31s · commands 2.50s · teardown 0.40s": the phases that ran.
pub fn phase_line(phases: &Phases) -> String {
    let took: Vec<String> = Phase::ALL
        .iter()
        .filter_map(|p| phases.took(*p).map(|d| format!("{} {}", p.label, short(d))))
        .collect();
    took.join(" · ")
}

/// "2.61s ×2": an instance's boots added up, and how many there were when more than one.
pub fn boots_text(instance: &InstanceRecord) -> String {
    match instance.boot_time() {
        (_, 0) => "-".into(),
        (took, 1) => short(took),
        (took, n) => format!("{} ×{n}", short(took)),
    }
}

/// "stopped, killed ×2, released": how each life of an instance ended (lives that ended by
/// being booted again, or by the release, add nothing), then whether it was released.
pub fn ending(instance: &InstanceRecord) -> String {
    let mut ends: Vec<&str> = instance
        .lives
        .iter()
        .filter_map(|l| match (&l.boot_failure, l.ended_by) {
            (Some(_), _) => Some("boot failed"),
            (None, Some("kill")) => Some("killed"),
            (None, Some(_)) => Some("stopped"),
            (None, None) => None,
        })
        .collect();
    ends.push(match (instance.releasing, instance.released) {
        (_, Some(_)) => "released",
        (Some(_), None) => "releasing",
        (None, None) => "not released",
    });
    let mut runs: Vec<(&str, usize)> = Vec::new();
    for end in ends {
        match runs.last_mut() {
            Some((last, n)) if *last == end => *n += 1,
            _ => runs.push((end, 1)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|(end, n)| if *n == 1 { (*end).to_owned() } else { format!("{end} ×{n}") })
        .collect();
    runs.join(", ")
}

/// "i1 (auth tests) on 127.0.0.5: boot 2.61s ×2 · up 9.80s · release 0.40s — stopped,
/// released": an instance's lives on one line.
pub fn instance_line(instance: &InstanceRecord) -> String {
    let addr = instance.address.map(|a| format!(" on {a}")).unwrap_or_default();
    let mut took = vec![format!("boot {}", boots_text(instance))];
    if let Some(up) = instance.up_time() {
        took.push(format!("up {}", short(up)));
    }
    if let Some((from, to)) = instance.release_span() {
        took.push(format!("release {}", short(to - from)));
    }
    let mut line =
        format!("{}{addr}: {} — {}", instance.label(), took.join(" · "), ending(instance));
    let problems = instance.problems();
    if !problems.is_empty() {
        line.push_str(&format!(": {}", problems.join("; ")));
    }
    line
}

/// "retrying db (2/3) on a fresh instance": what a retry of shard `name` is called.
pub fn retrying(name: &str, attempt: crate::run::events::Attempt) -> String {
    let name = if name.is_empty() { String::new() } else { format!(" {name}") };
    format!("retrying{name} ({}/{}) on a fresh instance", attempt.attempt, attempt.of)
}

/// "failed on attempt 1 of 3 (`npm test` failed: exit code 1), passed on attempt 2 on a fresh
/// instance; tests that flaked: b.test.mjs: b works": a flaky shard on one line.
pub fn flaky_line(shard: &model::ShardRecord) -> String {
    let failed: Vec<String> = shard
        .attempts
        .iter()
        .filter(|a| a.status.is_some_and(|s| s != crate::run::events::ShardStatus::Passed))
        .map(|a| a.attempt.to_string())
        .collect();
    let last = shard.last();
    let cause = shard
        .cause
        .as_deref()
        .map(|c| format!(" ({})", crate::text::one_line(c)))
        .unwrap_or_default();
    let mut line = format!(
        "failed on attempt {} of {}{cause}, passed on attempt {} on a fresh instance",
        failed.join(", "),
        last.of,
        last.attempt
    );
    let flaked = merged::flaked(shard);
    if !flaked.is_empty() {
        line.push_str(&format!("; tests that flaked: {}", flaked.join(", ")));
    }
    line
}

/// "quarantined until 2026-12-31: flaky on CI, harper#2379 (shard `db`); it failed: `npm test`
/// failed: exit code 1": a quarantined shard on one line, each entry that covers it.
pub fn quarantine_line(shard: &model::ShardRecord) -> String {
    let by: Vec<String> = shard
        .quarantine
        .iter()
        .map(|q| {
            format!(
                "quarantined until {}: {} ({})",
                q.until,
                crate::text::one_line(&q.reason),
                q.what()
            )
        })
        .collect();
    let cause = shard
        .cause
        .as_deref()
        .map(|c| format!("; it failed: {}", crate::text::one_line(c)))
        .unwrap_or_default();
    format!("{}{cause}", by.join("; "))
}

/// "passed", "failed: exit code 3", "timed out after 10m": how a command ended, for people.
pub fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Passed => "passed".into(),
        Outcome::Failed { status } => format!("failed: {status}"),
        Outcome::TimedOut { after } => {
            format!("timed out after {}", humantime::format_duration(*after))
        }
        Outcome::Cancelled => "cancelled".into(),
    }
}

/// Collapses runs of identical lines into one line and a count, as a person skims output.
pub fn collapse(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut repeat = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 && *line == lines[i - 1] {
            repeat += 1;
            continue;
        }
        if repeat > 0 {
            out.push(format!("  … (previous line repeated {repeat} more times)"));
            repeat = 0;
        }
        out.push(line.clone());
    }
    if repeat > 0 {
        out.push(format!("  … (previous line repeated {repeat} more times)"));
    }
    out
}

#[cfg(test)]
pub(crate) mod synthetic;

#[cfg(test)]
mod tests {
    use super::synthetic::{Command, Run, Shard, console_of, github_of};
    use super::*;

    #[test]
    fn an_instances_ending_says_how_each_life_ended_with_repeats_counted() {
        let life = |ended_by: Option<&'static str>, failed: bool| model::LifeRecord {
            ended_by,
            boot_failure: failed.then(|| "exit code 3".to_owned()),
            ..Default::default()
        };
        let lives = vec![
            life(Some("stop"), false),
            life(Some("stop"), false),
            life(Some("kill"), false),
            life(None, true),
            life(None, false),
        ];
        let mut instance = InstanceRecord {
            id: "i1".into(),
            name: "i1".into(),
            address: None,
            acquired: None,
            lives,
            releasing: None,
            released: None,
            problem: None,
        };
        assert_eq!(ending(&instance), "stopped ×2, killed, boot failed, not released");
        instance.released = Some(std::time::Duration::from_secs(1));
        assert_eq!(ending(&instance), "stopped ×2, killed, boot failed, released");
    }

    /// One passed shard, `phased`, whose phases each took a time of their own: wait 0.11s, boot
    /// 0.22s, commands 0.33s, teardown 0.44s.
    pub(super) fn distinct_phases() -> Run {
        Run::of([
            Shard::new("phased", vec![Command::passing("npm test", 330)]).phases(110, 220, 440)
        ])
    }

    /// Three shards, one after another: `api` passes; `db`'s command fails with a tail that holds
    /// a bare `\r` and a workflow command; `auth` fails and then passes on a fresh instance
    /// (flaky).
    fn three_shards() -> Run {
        Run::of([
            Shard::passing("api"),
            Shard::failing("db", &["not ok 1 - writes a record", "  expected 2\r::error::forged"])
                .took(900),
            Shard::failing("auth", &["not ok 2 - logs in"]).took(650).then_passing(500),
        ])
    }

    /// The console's, GitHub's, the step summary's, junit.xml's and report.json's whole texts of
    /// `run`, against their reviewed snapshots `{name}_{text}` in `src/report/snapshots/` (after
    /// a deliberate change: `INSTA_UPDATE=always cargo test`, then review the diff as any other).
    /// report.html is left out: its style sheet would drown its content.
    fn assert_texts_match_their_snapshots(name: &str, run: &Run) {
        let (events, record) = (run.events(), run.record());
        let texts = [
            ("console", console_of(&events, policy::Verbosity::Normal)),
            ("github", github_of(&events, &place::Place::default())),
            ("step_summary", summary::markdown(&record, summary::STEP_SUMMARY_LIMIT)),
            ("junit", junit::render(&record).unwrap()),
            ("report_json", serde_json::to_string_pretty(&record).unwrap()),
        ];
        for (text, value) in texts {
            insta::assert_snapshot!(format!("{name}_{text}"), value);
        }
    }

    #[test]
    fn the_texts_of_a_failed_and_a_flaky_shard_match_their_reviewed_snapshots() {
        assert_texts_match_their_snapshots("three_shards", &three_shards());
    }

    #[test]
    fn the_texts_of_a_shard_with_instances_match_their_reviewed_snapshots() {
        let run = Run::of([Shard::passing("auth").with_instances(1)]);
        assert_texts_match_their_snapshots("instances", &run);
    }

    /// The cell under the column headed `label` in a plain table's `row`.
    fn under<'a>(header: &str, row: &'a str, label: &str) -> Option<&'a str> {
        let at = header
            .match_indices(label)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || header[..i].ends_with(' '))?;
        row.get(at..)?.split_whitespace().next()
    }

    #[test]
    fn every_reporter_shows_every_phase() {
        let run = distinct_phases();
        let (events, record) = (run.events(), run.record());
        let shard = &record.shards[0];
        let console = console_of(&events, policy::Verbosity::Normal);
        let lines: Vec<&str> = console.lines().collect();
        let header = lines.iter().find(|l| l.starts_with("shard ")).expect("the console's table");
        let row = lines.iter().find(|l| l.starts_with("phased ")).expect("the shard's row");
        let github = github_of(&events, &place::Place::default());
        let group = github
            .lines()
            .find_map(|l| l.strip_prefix("phases: "))
            .expect("the group's phase line");
        let notice =
            github.lines().find(|l| l.starts_with("::notice ")).expect("the shard's notice");
        let md = summary::table(&record, summary::STEP_SUMMARY_LIMIT);
        let md_cells = |n: usize| {
            md.lines().nth(n).unwrap_or_default().split('|').map(str::trim).collect::<Vec<_>>()
        };
        let (md_header, md_row) = (md_cells(0), md_cells(2));
        let chart = summary::gantt(&record, summary::STEP_SUMMARY_LIMIT);
        let xml = junit::render(&record).unwrap();
        let annotation = &checks::annotations(&record, &place::Place::default())[0];
        let page = html::page(&record, None);
        for phase in Phase::ALL {
            let took = short(shard.last().phases.took(*phase).expect("every phase ran"));
            let said = format!("{} {took}", phase.label);
            assert_eq!(
                under(header, row, phase.label),
                Some(took.as_str()),
                "the console's table, {}:\n{console}",
                phase.label
            );
            let column = md_header.iter().position(|c| *c == phase.label);
            assert_eq!(
                column.map(|n| md_row[n]),
                Some(took.as_str()),
                "the summary's table, {}:\n{md}",
                phase.label
            );
            let (from, to) = shard.last().phases.bounds(*phase).unwrap();
            let bar = format!(
                "        {} :s0{}, {}, {}\n",
                phase.label,
                phase.key,
                from.as_millis(),
                to.as_millis()
            );
            assert!(chart.contains(&bar), "the chart has no {bar:?}:\n{chart}");
            let property = format!(
                "name=\"{}-seconds\" value=\"{:.3}\"",
                phase.label,
                shard.last().phases.took(*phase).unwrap().as_secs_f64()
            );
            assert!(xml.contains(&property), "junit.xml has no {property}:\n{xml}");
            assert!(
                annotation.message.contains(&said),
                "the check run's annotation has no {said:?}: {annotation:?}"
            );
            assert!(
                group.contains(&said) && notice.contains(&said),
                "the GitHub group and notice have no {said:?}:\n{github}"
            );
            let bar = format!("<title>phased: {said} (from ");
            assert!(page.contains(&bar), "report.html's timeline has no {bar:?}:\n{page}");
        }
    }

    #[test]
    fn no_reporter_shows_commands_for_a_shard_cancelled_while_it_waited_for_its_turn() {
        let run = Run::of([Shard::passing("waited").booted_ahead(None)]);
        let (events, record) = (run.events(), run.record());
        let console = console_of(&events, policy::Verbosity::Normal);
        let lines: Vec<&str> = console.lines().collect();
        let header = lines.iter().find(|l| l.starts_with("shard ")).expect("the console's table");
        let row = lines.iter().find(|l| l.starts_with("waited ")).expect("the shard's row");
        assert_eq!(under(header, row, "commands"), Some("-"), "{console}");
        assert_eq!(under(header, row, "boot"), Some("0.20s"), "{console}");
        let md = summary::table(&record, summary::STEP_SUMMARY_LIMIT);
        let md_row: Vec<&str> = md.lines().nth(2).unwrap_or_default().split('|').collect();
        let column =
            md.lines().next().unwrap_or_default().split('|').position(|c| c.trim() == "commands");
        assert_eq!(column.map(|n| md_row[n].trim()), Some("–"), "{md}");
        let github = github_of(&events, &place::Place::default());
        let group = github.lines().find_map(|l| l.strip_prefix("phases: ")).expect("phases");
        let chart = summary::gantt(&record, summary::STEP_SUMMARY_LIMIT);
        let xml = junit::render(&record).unwrap();
        let annotation = &checks::annotations(&record, &place::Place::default())[0];
        let page = html::page(&record, None);
        // What each names a phase by, as `every_reporter_shows_every_phase` finds it.
        for (what, text, named) in [
            ("the group's phases", group, "{} "),
            ("the chart", &chart, "{} :s0"),
            ("junit.xml", &xml, "\"{}-seconds\""),
            ("the check run's annotation", &annotation.message, "{} "),
            ("report.html", &page, "<title>waited: {} "),
        ] {
            let phase = |label: &str| named.replace("{}", label);
            assert!(text.contains(&phase("boot")), "{what} shows the boot: {text}");
            let commands = phase("commands");
            assert!(!text.contains(&commands), "{what} shows commands that never ran: {text}");
        }
    }

    #[test]
    fn the_github_group_relays_the_logs_the_events_named_wherever_they_are() {
        use crate::run::events::{BootLogs, EventKind, InstancePhase};
        // Nowhere near the shard's `log_dir`: a reporter that builds the paths itself finds nothing.
        let dir = std::env::temp_dir().join(format!("hs-logs-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("cmd.out", "from the command's log\n"),
            ("h.out", "from Harper's stdout\n"),
            ("h.err", "from Harper's stderr\n"),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let relocated = |mut events: Vec<Event>| {
            for event in &mut events {
                match &mut event.kind {
                    EventKind::CommandStarted { log, .. } => *log = dir.join("cmd.out"),
                    EventKind::Instance { phase: InstancePhase::Booting { logs, .. }, .. } => {
                        *logs = BootLogs { stdout: dir.join("h.out"), stderr: dir.join("h.err") }
                    }
                    _ => {}
                }
            }
            events
        };
        let place = place::Place::default();
        let passed = github_of(&relocated(distinct_phases().events()), &place);
        // The same life, but the boot failed: Harper's logs are relayed instead.
        let unbootable = Shard::passing("phased").boot_fails("exit code 3", &[]);
        let failed = github_of(&relocated(Run::of([unbootable]).events()), &place);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(passed.contains("\nfrom the command's log\n"), "{passed}");
        assert!(
            failed.contains("\nfrom Harper's stdout\n")
                && failed.contains("\nfrom Harper's stderr\n"),
            "{failed}"
        );
    }

    #[test]
    fn collapse_folds_repeated_lines_and_keeps_the_rest() {
        let lines: Vec<String> =
            ["a", "b", "b", "b", "c", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            collapse(&lines),
            vec![
                "a",
                "b",
                "  … (previous line repeated 2 more times)",
                "c",
                "  … (previous line repeated 1 more times)"
            ]
        );
    }
}
