//! `report.html`: the run as one page a person opens from the report folder — on GitLab,
//! CircleCI, Buildkite, Jenkins or a laptop, wherever there is no step summary. The outcome and
//! the time first, then each failed shard's cause, the tail of its output and links to its logs,
//! then each flaky shard (which attempt failed and why, which passed, the tests that flaked,
//! links to the failed attempt's logs), then a timeline of every attempt's phases and every
//! instance's lives ([`super::svg`]), then a table of the shards, and the partition when the
//! job ran one.
//!
//! One file, and nothing else is loaded: the CSS is inline, there is no script at all (folding is
//! `<details>`, a bar's figures are its SVG `<title>`, a bar links to its shard), and a
//! Content-Security-Policy forbids fetching anything, so the page reads the same with JavaScript
//! off, from a CI's artifact browser or from disk. Links to logs are relative paths into the
//! report folder.
//!
//! Every value that came from a plan, a command or Harper goes through the step summary's
//! escaping ([`summary::escape`], here `esc`, or [`esc_line`]): control characters shown as
//! stand-ins, `& < > " '` (and markdown's marks) as entities, in text and attributes alike, so
//! an instance named `</svg><script>` is text. The page is bounded like the step summary: each
//! section fills a byte budget of its own ([`PAGE_LIMIT`] in all), tails and lines are cut, and
//! what did not fit is counted on the page.
//!
//! Not for: anything interactive, or anything report.json does not already hold.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use super::model::{AttemptRecord, RunRecord, ShardRecord};
use super::summary::{clip, escape as esc};
use super::svg::{self, NAME_CHARS, esc_line};
use super::{Reporter, collapse, flaky_line, outcome_text, short, summary};
use crate::plan::Partition;
use crate::run::ReportDir;
use crate::run::events::{Event, ShardStatus};

/// The most the page may weigh; browsers open it at once and CI artifact viewers serve it whole.
pub const PAGE_LIMIT: usize = 4 * 1024 * 1024;
/// The failures' share of the page, and the timeline's; the table takes what is left.
const FAILURES_SHARE: usize = PAGE_LIMIT * 3 / 8;
const TIMELINE_SHARE: usize = PAGE_LIMIT * 3 / 8;
const WARNINGS_LIMIT: usize = 64 * 1024;
const FLAKY_LIMIT: usize = 256 * 1024;
/// Lines of a failure's output shown (report.json and the logs have the rest).
const TAIL_LINES: usize = 60;
/// The most of one line of output, of a cause, of a warning.
const LINE_CHARS: usize = 400;
/// Room kept in a section for the note that says what it left out.
const NOTE_ROOM: usize = 300;

/// The partition a job ran, to show beside the outcome.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub partition: Partition,
    /// The digest every job of the CI run computed alike.
    pub digest: String,
    /// How many shards the whole assignment had, and this job's share of them.
    pub assigned: usize,
    pub selected: usize,
}

pub struct Html {
    path: PathBuf,
    assignment: Option<Assignment>,
}

impl Html {
    /// Writes `report.html` into the report folder when the run ends.
    pub fn new(dir: &ReportDir, assignment: Option<Assignment>) -> Html {
        Html { path: dir.report_html(), assignment }
    }
}

impl Reporter for Html {
    fn event(&mut self, _: &Event, _: &RunRecord) {}

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        crate::supervise::output::write_atomic(
            &self.path,
            page(record, self.assignment.as_ref()).as_bytes(),
        )
    }
}

const STYLE: &str = include_str!("html.css");

/// The whole page, at most [`PAGE_LIMIT`] bytes.
pub fn page(record: &RunRecord, assignment: Option<&Assignment>) -> String {
    let failed = record.failed().next().is_some();
    // Marks every font has (an emoji may show as a box where none is installed).
    let (mark, class) = if failed { ("✘", "failed") } else { ("✔", "passed") };
    let headline = summary::headline(record);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{mark} harper-shard: {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        esc(&headline)
    );
    let _ = writeln!(
        html,
        "<header class=\"outcome {class}\">\n<h1>{mark} harper-shard: {}</h1>",
        esc(&headline)
    );
    let _ = writeln!(html, "<p class=\"facts\">{}</p>", facts(record, assignment).join(" · "));
    html.push_str("</header>\n<main>\n");
    html.push_str(&warnings(record, WARNINGS_LIMIT));
    html.push_str(&failures(record, FAILURES_SHARE));
    html.push_str(&flaky(record, FLAKY_LIMIT));
    html.push_str(&svg::timeline(record, TIMELINE_SHARE));
    const END: &str = "</main>\n<footer>report.json in this folder has every figure; junit.xml has every command.</footer>\n</body>\n</html>\n";
    let room = PAGE_LIMIT.saturating_sub(html.len() + END.len());
    html.push_str(&table(record, room));
    html.push_str(END);
    html
}

/// The run's facts beside its outcome: when it started, how it ended, its partition.
fn facts(record: &RunRecord, assignment: Option<&Assignment>) -> Vec<String> {
    let mut facts = Vec::new();
    if let Some(at) = record.started_at {
        facts.push(format!("started {}", humantime::format_rfc3339_seconds(at)));
    }
    facts.push(format!("took {}", short(record.duration)));
    if let Some(code) = record.exit_code {
        facts.push(format!("exit code {code}"));
    }
    if record.timed_out {
        facts.push("<strong>the run's timeout ran out</strong>".into());
    }
    facts.push(format!("{} shard(s), {} at a time", record.shards.len(), record.concurrency));
    if let Some(a) = assignment {
        facts.push(format!(
            "partition {} ({} of the assignment's {} shards; assignment <code title=\"{}\">{}</code>)",
            a.partition,
            a.selected,
            a.assigned,
            esc(&a.digest),
            esc(&clip(&a.digest, 12))
        ));
    }
    facts
}

fn warnings(record: &RunRecord, max: usize) -> String {
    if record.warnings.is_empty() {
        return String::new();
    }
    let mut html = "<section id=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n".to_owned();
    for (i, w) in record.warnings.iter().enumerate() {
        let item = format!("<li>{}</li>\n", esc_line(w, LINE_CHARS));
        if html.len() + item.len() + NOTE_ROOM > max {
            let _ = writeln!(
                html,
                "<li class=\"left-out\">… and {} more, left out to fit; report.json has every one.</li>",
                record.warnings.len() - i
            );
            break;
        }
        html.push_str(&item);
    }
    html.push_str("</ul>\n</section>\n");
    html
}

/// Each failed shard: its status and phase, its one-line cause, links to its logs and the last
/// lines of the output that explains it; within `max` bytes, a tail that does not fit is left
/// out, then the shards that do not.
fn failures(record: &RunRecord, max: usize) -> String {
    let failed: Vec<&ShardRecord> = record.failed().collect();
    if failed.is_empty() {
        return String::new();
    }
    let mut html = "<section id=\"failures\">\n<h2>Failures</h2>\n".to_owned();
    for (n, s) in failed.iter().enumerate() {
        let i = s.index;
        let status = s.status.map_or("unfinished", ShardStatus::label);
        let phase = s.failed_phase().map(|p| format!(" in {}", p.label)).unwrap_or_default();
        let tries = s.attempts.len();
        let phase = if tries > 1 { format!("{phase}, after {tries} attempts") } else { phase };
        let head = format!(
            "<article class=\"failure\" id=\"failure-{i}\">\n<h3><a href=\"#shard-{i}\">{}</a> <span class=\"status bad\">{status}</span>{phase}</h3>\n<p class=\"cause\">{}</p>\n{}",
            esc_line(&s.name, NAME_CHARS),
            esc_line(s.cause.as_deref().unwrap_or("no cause recorded"), LINE_CHARS),
            log_links(record, s.last())
        );
        let tail = tail_block(s);
        const END: &str = "</article>\n";
        if html.len() + head.len() + tail.len() + END.len() + NOTE_ROOM <= max {
            html.push_str(&head);
            html.push_str(&tail);
        } else if html.len() + head.len() + END.len() + 2 * NOTE_ROOM <= max {
            html.push_str(&head);
            html.push_str(
                "<p class=\"left-out\">(its output is left out to fit; see its logs)</p>\n",
            );
        } else {
            let _ = writeln!(
                html,
                "<p class=\"left-out\">… and {} more failed shard(s), left out to fit; report.json has every one.</p>",
                failed.len() - n
            );
            break;
        }
        html.push_str(END);
    }
    html.push_str("</section>\n");
    html
}

/// The last lines of a failed shard's output, open, or nothing.
fn tail_block(s: &ShardRecord) -> String {
    let (command, tail) = s.failure_tail();
    if tail.is_empty() {
        return String::new();
    }
    let lines = collapse(tail);
    let shown = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    let cut = lines.len() - shown.len();
    let title = match command {
        Some(c) => format!("last lines of <code>{}</code>", esc_line(c, NAME_CHARS)),
        None => "last lines of Harper's output".to_owned(),
    };
    let mut html = format!("<details class=\"tail\" open>\n<summary>{title}</summary>\n<pre>");
    if cut > 0 {
        let _ = writeln!(html, "… ({cut} earlier line(s) left out; the log has them)");
    }
    for line in shown {
        html.push_str(&esc_line(line, LINE_CHARS));
        html.push('\n');
    }
    html.push_str("</pre>\n</details>\n");
    html
}

/// Each flaky shard (failed, then passed on a fresh instance): which attempt failed and why,
/// which passed, the tests that flaked, and links to the failed attempt's logs; within `max`
/// bytes, the shards that do not fit are counted.
fn flaky(record: &RunRecord, max: usize) -> String {
    let flaky: Vec<&ShardRecord> =
        record.shards.iter().filter(|s| s.status == Some(ShardStatus::Flaky)).collect();
    if flaky.is_empty() {
        return String::new();
    }
    let mut html = "<section id=\"flaky\">\n<h2>Flaky</h2>\n".to_owned();
    for (n, s) in flaky.iter().enumerate() {
        let i = s.index;
        let failed =
            s.attempts.iter().find(|a| a.status.is_some_and(|st| st != ShardStatus::Passed));
        let item = format!(
            "<article class=\"flaky\" id=\"flaky-{i}\">\n<h3><a href=\"#shard-{i}\">{}</a> <span class=\"status flaky\">flaky</span></h3>\n<p class=\"cause\">{}</p>\n{}</article>\n",
            esc_line(&s.name, NAME_CHARS),
            esc_line(&flaky_line(s), 4 * LINE_CHARS),
            failed.map(|a| log_links(record, a)).unwrap_or_default()
        );
        if html.len() + item.len() + NOTE_ROOM > max {
            let _ = writeln!(
                html,
                "<p class=\"left-out\">… and {} more flaky shard(s), left out to fit; report.json has every one.</p>",
                flaky.len() - n
            );
            break;
        }
        html.push_str(&item);
    }
    html.push_str("</section>\n");
    html
}

/// Links to an attempt's logs: its folder, each command's log, Harper's stdout and stderr.
fn log_links(record: &RunRecord, a: &AttemptRecord) -> String {
    let mut links = Vec::new();
    links.extend(link(&record.report_dir, &a.log_dir, "folder"));
    for (n, c) in a.commands.iter().enumerate() {
        if let Some(log) = &c.log {
            let outcome =
                c.outcome.as_ref().map(|o| format!(" ({})", outcome_text(o))).unwrap_or_default();
            links.extend(link(&record.report_dir, log, &format!("command {}{outcome}", n + 1)));
        }
    }
    if let Some(logs) = a.boot_logs() {
        links.extend(link(&record.report_dir, &logs.stdout, "Harper's stdout"));
        links.extend(link(&record.report_dir, &logs.stderr, "Harper's stderr"));
    }
    if links.is_empty() {
        return String::new();
    }
    format!("<p class=\"logs\">logs: {}</p>\n", links.join(" · "))
}

/// `<a href="…">text</a>` to `path` relative to the report folder `dir`, or none when the path
/// is not inside it.
fn link(dir: &Path, path: &Path, text: &str) -> Option<String> {
    let href = relative_href(dir, path)?;
    Some(format!(
        "<a href=\"{}\" title=\"{}\">{}</a>",
        esc(&href),
        esc(&path.to_string_lossy()),
        esc(text)
    ))
}

/// `path` below `dir` as a relative URL: each component percent-encoded but for the characters
/// that need none, so a name with `?`, `#` or `%` still points at its file.
pub fn relative_href(dir: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(dir).ok()?;
    let mut parts = Vec::new();
    for component in rest.components() {
        let Component::Normal(name) = component else { return None };
        let mut part = String::new();
        for &b in name.as_encoded_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                part.push(b as char);
            } else {
                let _ = write!(part, "%{b:02X}");
            }
        }
        parts.push(part);
    }
    Some(if parts.is_empty() { "./".to_owned() } else { parts.join("/") })
}

/// A table of every shard within `max` bytes: its address, each phase, its status and its logs;
/// rows that do not fit are counted.
fn table(record: &RunRecord, max: usize) -> String {
    let columns: Vec<&str> = super::model::Phases::column_labels().collect();
    let mut html = "<section id=\"shards\">\n<h2>Shards</h2>\n<table>\n<thead><tr><th>shard</th><th>address</th>".to_owned();
    for c in &columns {
        let _ = write!(html, "<th class=\"num\">{c}</th>");
    }
    html.push_str("<th>status</th><th>logs</th></tr></thead>\n<tbody>\n");
    const END: &str = "</tbody>\n</table>\n</section>\n";
    if html.len() + END.len() + NOTE_ROOM > max {
        return String::new();
    }
    for (n, s) in record.shards.iter().enumerate() {
        let i = s.index;
        let status = match s.status {
            Some(ShardStatus::Flaky) => format!(
                "<span class=\"status flaky\" title=\"{}\">flaky</span>",
                esc_line(&flaky_line(s), LINE_CHARS)
            ),
            Some(st) if s.ok() => format!("<span class=\"status\">{}</span>", st.label()),
            Some(st) => format!("<span class=\"status bad\">{}</span>", st.label()),
            None => "<span class=\"status\">unfinished</span>".to_owned(),
        };
        let mut row = format!(
            "<tr id=\"shard-{i}\"><td class=\"name\">{}</td>",
            esc_line(&s.name, NAME_CHARS)
        );
        let last = s.last();
        let _ = write!(
            row,
            "<td>{}</td>",
            last.address().map(|a| a.to_string()).unwrap_or_else(|| "–".into())
        );
        for took in last.phases.columns() {
            let _ = write!(
                row,
                "<td class=\"num\">{}</td>",
                took.map(short).unwrap_or_else(|| "–".into())
            );
        }
        let logs = link(&record.report_dir, &s.log_dir, "folder").unwrap_or_default();
        let _ = writeln!(row, "<td>{status}</td><td>{logs}</td></tr>");
        if html.len() + row.len() + END.len() + NOTE_ROOM > max {
            let _ = writeln!(
                html,
                "<tr><td colspan=\"{}\" class=\"left-out\">… and {} more shard(s), left out to fit; report.json has every one.</td></tr>",
                columns.len() + 4,
                record.shards.len() - n
            );
            break;
        }
        html.push_str(&row);
    }
    html.push_str(END);
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::synthetic::{Run, Shard};

    /// Text that would run script or end the SVG if it were not escaped.
    const HOSTILE: &str = "<img src=x onerror=alert(1)></svg><script>alert(\"x\")</script>&";

    /// The part of `page` between `from` and the next `to`.
    fn part<'a>(page: &'a str, from: &str, to: &str) -> &'a str {
        let rest = page.split(from).nth(1).unwrap_or_else(|| panic!("no {from} in {page}"));
        rest.split(to).next().unwrap_or_default()
    }

    #[test]
    fn a_passing_runs_page_shows_the_outcome_the_partition_and_every_instances_lives() {
        let run = Run::of([
            Shard::passing("api"),
            Shard::passing("db"),
            Shard::passing("control").with_instances(1),
        ]);
        let assignment = Assignment {
            partition: Partition { index: 1, total: 1 },
            digest: "d1g3st".into(),
            assigned: 3,
            selected: 3,
        };
        let page = page(&run.record(), Some(&assignment));
        assert!(
            page.contains("<header class=\"outcome passed\">")
                && page.contains("all 3 shard(s) passed"),
            "{page}"
        );
        assert!(page.contains("partition 1/1 (3 of the assignment's 3 shards"), "{page}");
        assert!(!page.contains("<section id=\"failures\">"), "no failures section");
        let timeline = part(&page, "<section id=\"timeline\">", "</section>");
        let shards: Vec<&str> = timeline.split("<g class=\"shard").skip(1).collect();
        assert_eq!(shards.len(), 3, "a row per shard: {timeline}");
        for (group, name) in shards.iter().zip(["api", "db", "control"]) {
            assert!(group.contains(&format!("text-anchor=\"end\">{name}<")), "{name}: {group}");
            let bars = group.split("</g>").next().unwrap().matches("class=\"bar phase ").count();
            assert_eq!(bars, 4, "{name}: a bar per phase: {group}");
        }
        let instance_rows = timeline.matches("<g class=\"instance\"").count();
        assert_eq!(instance_rows, 3, "a row each for i1, main and i2: {timeline}");
        assert!(timeline.contains(">i1 (auth tests)</text>"), "{timeline}");
        assert_eq!(
            timeline.matches("class=\"bar life boot failed\"").count(),
            1,
            "i2's failed boot is marked"
        );
    }

    #[test]
    fn report_html_shows_a_flaky_shard_with_its_chip_its_failed_attempt_and_both_attempts_phases() {
        let once = Shard::failing("once", &["not ok 1"]).then_passing(100);
        let page = page(&Run::of([once]).record(), None);
        assert!(page.contains("<header class=\"outcome passed\">"), "a flaky run passes: {page}");
        let flaky = part(&page, "<section id=\"flaky\">", "</section>");
        assert!(
            flaky.contains("<span class=\"status flaky\">flaky</span>")
                && flaky.contains("failed on attempt 1 of 2"),
            "{flaky}"
        );
        assert!(
            flaky.contains("href=\"once/command-1.log\""),
            "a link to the failed attempt's log: {flaky}"
        );
        let table = page.split("<section id=\"shards\">").nth(1).expect("the table");
        assert!(table.contains("<span class=\"status flaky\""), "the table's chip: {table}");
        let group = part(&page, "<g class=\"shard flaky\"", "</g>");
        assert_eq!(
            group.matches("class=\"bar phase commands").count(),
            2,
            "each attempt's commands: {group}"
        );
        assert_eq!(
            group.matches("class=\"bar phase commands failed\"").count(),
            1,
            "the first attempt's marked failed: {group}"
        );
        assert!(group.contains("(attempt 1/2)") && group.contains("(attempt 2/2)"), "{group}");
    }

    #[test]
    fn a_page_of_thousands_of_failures_with_long_tails_stays_within_its_limit_and_says_what_it_left_out()
     {
        // Tails past TAIL_LINES, of lines past LINE_CHARS.
        let mut record = Run::many(10, 6000).record();
        for s in &mut record.shards {
            s.cause = Some(HOSTILE.repeat(100));
            for c in s.attempts.iter_mut().flat_map(|a| &mut a.commands) {
                c.command = HOSTILE.repeat(100);
                c.tail = (0..100).map(|i| format!("{i} {}", HOSTILE.repeat(10))).collect();
            }
        }
        let page = page(&record, None);
        assert!(page.len() <= PAGE_LIMIT, "{} bytes", page.len());
        assert!(
            page.contains("more failed shard(s), left out to fit"),
            "the failures say what they left out"
        );
        assert!(page.contains("earlier line(s) left out"), "a tail says it was cut");
        assert!(page.contains("The timeline shows "), "the timeline says what it left out");
        assert!(page.contains("more shard(s), left out to fit"), "the table says what it left out");
        assert!(page.ends_with("</html>\n"), "the page is whole");
    }

    #[test]
    fn values_are_escaped_for_text_and_attributes_alike() {
        assert_eq!(
            esc("</svg><script>alert('x')</script>"),
            "&lt;/svg&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(esc("a\"b&c\r\x1b[2Jd\ne\0"), "a&quot;b&amp;c␍d e␀");
        assert_eq!(esc_line("<<<<", 2), "&lt;&lt;…", "cut before it is escaped");
    }

    #[test]
    fn a_log_link_is_relative_to_the_report_folder_and_percent_encoded() {
        let dir = Path::new("out/report");
        assert_eq!(
            relative_href(dir, Path::new("out/report/db #1/command-1.log")).as_deref(),
            Some("db%20%231/command-1.log")
        );
        assert_eq!(
            relative_href(dir, Path::new("out/report/a?b%c\"<x>")).as_deref(),
            Some("a%3Fb%25c%22%3Cx%3E")
        );
        assert_eq!(
            relative_href(dir, Path::new("elsewhere/command-1.log")),
            None,
            "not inside the folder: no link"
        );
        assert_eq!(relative_href(dir, Path::new("out/report/../x")), None);
    }
}
