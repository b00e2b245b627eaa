//! The run as markdown: a headline, a table of every shard's phases, the failures with the
//! output that explains them, and a mermaid Gantt chart of the phases (and of each instance's
//! lives, under its shard) on one time axis.
//!
//! GitHub's step summary and the check run's output are both built from these pieces, so the
//! two always tell the same story. Nothing here writes anywhere.
//!
//! Two rules hold for every piece. Each takes a byte budget and stays within it, saying what it
//! left out — GitHub drops a step summary past 1 MiB, the Checks API cuts output at 65,535
//! characters — so the limits hold by construction, not by a cut afterwards. And every value
//! that comes from a plan, a command or Harper is escaped for where it lands ([`escape`] for
//! markdown and HTML, [`mermaid_text`] in the chart; a tail sits in a code fence longer than any
//! backtick run in it).

use std::fmt::Write;
use std::time::Duration;

use super::model::{InstanceRecord, Phase, Phases, RunRecord, ShardRecord};
use super::{collapse, short};
use crate::text;

/// GitHub drops a step summary larger than 1 MiB.
pub const STEP_SUMMARY_LIMIT: usize = 1024 * 1024;
/// Lines of a failure's output shown in markdown (the full tail is in report.json and the logs).
const TAIL_LINES: usize = 40;
/// Room each piece keeps for the note that says what it left out.
const NOTE_ROOM: usize = 200;
/// Mermaid refuses diagrams past 50,000 characters; this leaves room for the chart's head.
const MERMAID_LIMIT: usize = 48_000;
/// The most of a cause or command shown inline; report.json has all of it.
const INLINE_CHARS: usize = 1000;
/// The most instance lives drawn in one shard's section (failed ones first); report.json has
/// every one. It keeps a shard that restarts Harper in a loop from taking the whole chart.
pub const LIVES_PER_SHARD: usize = 12;
/// The most of an instance's label in a chart task.
const LABEL_CHARS: usize = 60;

/// "2 of 3 shards passed in 12.31s" or "all 3 shards passed in 12.31s".
pub fn headline(record: &RunRecord) -> String {
    let total = record.shards.len();
    let passed = record.shards.iter().filter(|s| s.ok()).count();
    let took = short(record.duration);
    let quarantined = record
        .shards
        .iter()
        .filter(|s| s.status == Some(crate::run::events::ShardStatus::Quarantined))
        .count();
    match (total - passed, quarantined) {
        (0, 0) => format!("all {total} shard(s) passed in {took}"),
        (0, q) => {
            format!("no shard failed the run in {took}; {q} of {total} failed but are quarantined")
        }
        (failed, 0) => format!("{failed} of {total} shard(s) failed in {took}"),
        (failed, q) => format!(
            "{failed} of {total} shard(s) failed in {took}; {q} more failed but are quarantined"
        ),
    }
}

/// The step summary, at most `limit` bytes: the headline, then the table (within a quarter of
/// the room), the failures (within two thirds of what is left), and the chart in the rest.
pub fn markdown(record: &RunRecord, limit: usize) -> String {
    const TIMELINE: &str = "### Timeline\n\n";
    let mark = if record.failed().next().is_none() { "✅" } else { "❌" };
    let mut md = format!("## {mark} harper-shard: {}\n\n", headline(record));
    if md.len() > limit {
        return String::new();
    }
    let room = |md: &String| limit.saturating_sub(md.len());
    md.push_str(&table(record, room(&md) / 4));
    md.push_str(&failures(record, room(&md) * 2 / 3));
    md.push_str(&quarantined(record, room(&md) / 3));
    md.push_str(&flaky(record, room(&md) / 2));
    let chart = gantt(record, room(&md).saturating_sub(TIMELINE.len()));
    if !chart.is_empty() {
        md.push_str(TIMELINE);
        md.push_str(&chart);
    }
    md
}

/// A markdown table within `max` bytes: one row per shard, a column per phase, the status
/// last; rows that do not fit are counted instead.
pub fn table(record: &RunRecord, max: usize) -> String {
    let columns: Vec<&str> = Phases::column_labels().collect();
    let mut md = format!("| shard | address | {} | status |\n", columns.join(" | "));
    md.push_str(&format!("|---|---|{}---|\n", "--:|".repeat(columns.len())));
    if md.len() + NOTE_ROOM > max {
        return String::new();
    }
    for (i, s) in record.shards.iter().enumerate() {
        let status = match s.status {
            Some(st) if s.ok() => st.label().to_owned(),
            Some(st) => format!("**{}**", st.label()),
            None => "unfinished".to_owned(),
        };
        let phases: Vec<String> = s
            .last()
            .phases
            .columns()
            .iter()
            .map(|x| x.map(short).unwrap_or_else(|| "–".into()))
            .collect();
        let address = s.last().address().map(|a| a.to_string()).unwrap_or_else(|| "–".into());
        let row = format!(
            "| {} | {address} | {} | {status} |\n",
            escape(&clip(&s.name, INLINE_CHARS)),
            phases.join(" | ")
        );
        if md.len() + row.len() + NOTE_ROOM > max {
            let _ = writeln!(
                md,
                "\n… and {} more shard(s), left out to fit; report.json has every one.",
                record.shards.len() - i
            );
            break;
        }
        md.push_str(&row);
    }
    md.push('\n');
    md
}

/// Each failed shard's cause and, folded away, the last lines of the output that explains it,
/// within `max` bytes: a tail that does not fit is left out, then the shards that do not.
pub fn failures(record: &RunRecord, max: usize) -> String {
    let failed: Vec<&ShardRecord> = record.failed().collect();
    let mut md = "### Failures\n\n".to_owned();
    if failed.is_empty() || md.len() + NOTE_ROOM > max {
        return String::new();
    }
    for (i, s) in failed.iter().enumerate() {
        let cause = s.cause.as_deref().unwrap_or("no cause recorded");
        let head = format!(
            "**{}** — {}\n\n",
            escape(&clip(&s.name, INLINE_CHARS)),
            escape(&clip(cause, INLINE_CHARS))
        );
        let tail = tail_block(s);
        if md.len() + head.len() + tail.len() + NOTE_ROOM <= max {
            md.push_str(&head);
            md.push_str(&tail);
        } else if md.len() + head.len() + 2 * NOTE_ROOM <= max {
            md.push_str(&head);
            md.push_str(
                "(its output is left out to fit; see report.json and the shard's logs)\n\n",
            );
        } else {
            let _ = writeln!(
                md,
                "… and {} more failed shard(s), left out to fit; report.json has every one.\n",
                failed.len() - i
            );
            break;
        }
    }
    md
}

/// Each quarantined shard on a line: the entries that cover its failure (until when, why) and
/// the failure; within `max` bytes.
pub fn quarantined(record: &RunRecord, max: usize) -> String {
    let shards: Vec<&ShardRecord> = record
        .shards
        .iter()
        .filter(|s| s.status == Some(crate::run::events::ShardStatus::Quarantined))
        .collect();
    let mut md = "### Quarantined\n\nThese failed, and the plan's `quarantine` keeps them from failing the run:\n\n".to_owned();
    if shards.is_empty() || md.len() + NOTE_ROOM > max {
        return String::new();
    }
    for (i, s) in shards.iter().enumerate() {
        let line = format!(
            "- **{}** — {}\n",
            escape(&clip(&s.name, INLINE_CHARS)),
            escape(&clip(&super::quarantine_line(s), 4 * INLINE_CHARS))
        );
        if md.len() + line.len() + NOTE_ROOM > max {
            let _ = writeln!(
                md,
                "… and {} more quarantined shard(s), left out to fit; report.json has every one.",
                shards.len() - i
            );
            break;
        }
        md.push_str(&line);
    }
    md.push('\n');
    md
}

/// Each flaky shard on a line: which attempt failed and why, which passed, the tests that
/// flaked, and how often it flaked lately; under it, each test file that flaked and how often
/// it did. Within `max` bytes.
pub fn flaky(record: &RunRecord, max: usize) -> String {
    let flaky: Vec<&ShardRecord> = record
        .shards
        .iter()
        .filter(|s| s.status == Some(crate::run::events::ShardStatus::Flaky))
        .collect();
    let mut md = "### Flaky\n\n".to_owned();
    if flaky.is_empty() || md.len() + NOTE_ROOM > max {
        return String::new();
    }
    let history = super::flakes::updated(record);
    for (i, s) in flaky.iter().enumerate() {
        let lately =
            history.shards.get(&s.name).map(|c| format!(" ({})", c.recent())).unwrap_or_default();
        let mut line = format!(
            "- **{}** — {}{lately}\n",
            escape(&clip(&s.name, INLINE_CHARS)),
            escape(&clip(&super::flaky_line(s), 4 * INLINE_CHARS))
        );
        for (file, _) in super::flakes::files(s, record).iter().filter(|(_, c)| c.flaky > 0.0) {
            if let Some(counts) = history.files.get(file) {
                let _ = writeln!(
                    line,
                    "  - <code>{}</code>: {}",
                    escape(&clip(file, INLINE_CHARS)),
                    counts.recent()
                );
            }
        }
        if md.len() + line.len() + NOTE_ROOM > max {
            let _ = writeln!(
                md,
                "… and {} more flaky shard(s), left out to fit; report.json has every one.",
                flaky.len() - i
            );
            break;
        }
        md.push_str(&line);
    }
    md.push('\n');
    md
}

/// The folded last lines of a failed shard's output, or nothing.
fn tail_block(s: &ShardRecord) -> String {
    let (command, tail) = s.failure_tail();
    if tail.is_empty() {
        return String::new();
    }
    let lines = collapse(tail);
    let body = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    let fence = fence_for(&body);
    let title = match command {
        Some(c) => format!("last lines of <code>{}</code>", escape(&clip(c, INLINE_CHARS))),
        None => "last lines of Harper's output".to_owned(),
    };
    format!("<details><summary>{title}</summary>\n\n{fence}text\n{body}\n{fence}\n\n</details>\n\n")
}

/// A mermaid Gantt chart within `max` bytes, in mermaid's compact display: a section per shard,
/// a task per phase that ran, times in milliseconds since the run started; the phase that failed
/// is marked `crit`.
///
/// A run too big for one chart (mermaid draws at most 50,000 characters, and `max` may be
/// less) shows its failed shards and then its longest ones, and says how many it left out.
pub fn gantt(record: &RunRecord, max: usize) -> String {
    // Times are milliseconds since 1970-01-01, so the axis reads as time since the run started;
    // browsers draw it in their own time zone, which shifts hours but (nearly always) not minutes.
    let axis = if record.duration < Duration::from_secs(60) { "%S.%L" } else { "%M:%S" };
    // Compact: a shard's bars share one row wherever they do not overlap, so a plan of 30
    // shards is about 30 rows tall, not 120.
    let head = format!(
        "```mermaid\n---\ndisplayMode: compact\n---\ngantt\n    title Shard phases (time since the run started)\n    dateFormat x\n    axisFormat {axis}\n"
    );
    const FOOT: &str = "```\n";
    let Some(budget) = max.checked_sub(head.len() + FOOT.len() + NOTE_ROOM) else {
        return String::new();
    };
    let budget = budget.min(MERMAID_LIMIT);
    let sections: Vec<(usize, String, usize)> = record
        .shards
        .iter()
        .enumerate()
        .filter_map(|(i, s)| gantt_section(i, s).map(|(text, left_out)| (i, text, left_out)))
        .collect();
    let mut order: Vec<usize> = (0..sections.len()).collect();
    let shard = |k: usize| &record.shards[sections[k].0];
    order.sort_by_key(|&k| (shard(k).ok(), std::cmp::Reverse(shard(k).last().phases.total())));
    let mut chosen = Vec::new();
    let mut size = 0;
    for k in order {
        if size + sections[k].1.len() > budget {
            continue;
        }
        size += sections[k].1.len();
        chosen.push(k);
    }
    chosen.sort_unstable();
    let mut md = head;
    for &k in &chosen {
        md.push_str(&sections[k].1);
    }
    md.push_str(FOOT);
    if chosen.len() < sections.len() {
        let _ = writeln!(
            md,
            "\nThe chart shows {} of {} shards (failed ones first, then the longest): mermaid draws at most 50,000 characters, and the summary at most 1 MiB.",
            chosen.len(),
            sections.len()
        );
    }
    let (lives_left, shards_cut) = chosen
        .iter()
        .map(|&k| sections[k].2)
        .filter(|&n| n > 0)
        .fold((0, 0), |(lives, shards), n| (lives + n, shards + 1));
    if lives_left > 0 {
        let _ = writeln!(
            md,
            "\nThe chart leaves out {lives_left} instance li{} of {shards_cut} shard(s): it draws at most {LIVES_PER_SHARD} a shard, failed ones first; report.json has every one.",
            if lives_left == 1 { "fe" } else { "ves" }
        );
    }
    md
}

/// A shard's section: its phases, then its instances' lives (at most [`LIVES_PER_SHARD`]); with
/// how many lives it left out.
fn gantt_section(i: usize, s: &ShardRecord) -> Option<(String, usize)> {
    let tasks: Vec<(Phase, Duration, Duration)> = Phase::ALL
        .iter()
        .filter_map(|p| s.last().phases.bounds(*p).map(|(a, b)| (*p, a, b)))
        .collect();
    if tasks.is_empty() {
        return None;
    }
    // The chart draws a shard's last attempt only; a retried shard's section says so.
    let last = s.last();
    let which = if s.attempts.len() > 1 {
        format!(" (last attempt, {} of {})", last.attempt, last.of)
    } else {
        String::new()
    };
    let mut md = format!("    section {}{which}\n", mermaid_text(&clip(&s.name, INLINE_CHARS)));
    let failed = s.failed_phase();
    for (phase, from, to) in tasks {
        task(
            &mut md,
            phase.label,
            failed == Some(phase),
            &format!("s{i}{}", phase.key),
            (from, to),
        );
    }
    let shown: Vec<&InstanceRecord> = s.last().shown_instances().collect();
    let left_out = instance_tasks(&mut md, i, &shown);
    Some((md, left_out))
}

/// One bar: `name`, from and to in milliseconds since the run started, `crit` when it failed.
fn task(md: &mut String, name: &str, crit: bool, id: &str, (from, to): (Duration, Duration)) {
    let (from, to) = (from.as_millis(), to.as_millis());
    // A zero-length bar does not show; one millisecond does.
    let to = to.max(from + 1);
    let tag = if crit { "crit, " } else { "" };
    let _ = writeln!(md, "        {name} :{tag}{id}, {from}, {to}");
}

/// The bars of each instance's lives in the chart; returns how many lives did not fit in
/// [`LIVES_PER_SHARD`].
fn instance_tasks(md: &mut String, shard: usize, instances: &[&InstanceRecord]) -> usize {
    let (bars, left_out) = life_bars(instances);
    for bar in bars {
        let label = mermaid_text(&clip(&instances[bar.instance].label(), LABEL_CHARS));
        let id = format!(
            "s{shard}i{}l{}{}",
            bar.instance,
            bar.life.map_or(0, |k| k + 1),
            bar.step.key()
        );
        task(md, &format!("{label} {}", bar.step.label()), bar.failed, &id, bar.span);
    }
    left_out
}

/// One bar of an instance's timeline, as every chart draws it.
#[derive(Debug, Clone, Copy)]
pub struct LifeBar {
    /// Its position in the shard's instances.
    pub instance: usize,
    /// Its life, or none for the release of an instance that never booted.
    pub life: Option<usize>,
    pub step: LifeStep,
    pub failed: bool,
    pub span: (Duration, Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeStep {
    Boot,
    Up,
    /// A stop or a kill (`ended_by`).
    End(&'static str),
    Release,
}

impl LifeStep {
    pub fn label(self) -> &'static str {
        match self {
            LifeStep::Boot => "boot",
            LifeStep::Up => "up",
            LifeStep::End(how) => how,
            LifeStep::Release => "release",
        }
    }

    /// The end of its chart ids, unique among the steps of a life.
    fn key(self) -> &'static str {
        match self {
            LifeStep::Boot => "b",
            LifeStep::Up => "u",
            LifeStep::End(_) => "s",
            LifeStep::Release => "r",
        }
    }
}

/// The bars of each instance's lives — boot, up, and the stop or kill that ended it — and its
/// release, at most [`LIVES_PER_SHARD`] lives (failed ones first), in order; with how many lives
/// were left out. `instances`: an attempt's [shown ones](super::model::AttemptRecord::shown_instances).
/// `main`'s first boot and its release are the attempt's boot and teardown phases, which every
/// chart draws as the shard's own bars.
pub fn life_bars(instances: &[&InstanceRecord]) -> (Vec<LifeBar>, usize) {
    let main = |instance: &InstanceRecord| instance.id == crate::run::context::MAIN;
    // (instance, life, failed); the last life carries the release, and an instance with no
    // life still has its release to show.
    let mut units: Vec<(usize, Option<usize>, bool)> = Vec::new();
    for (n, instance) in instances.iter().enumerate() {
        if instance.lives.is_empty() {
            units.push((n, None, instance.problem.is_some()));
        }
        for (k, life) in instance.lives.iter().enumerate() {
            let last = k + 1 == instance.lives.len();
            units.push((
                n,
                Some(k),
                life.boot_failure.is_some()
                    || life.problem.is_some()
                    || (last && instance.problem.is_some()),
            ));
        }
    }
    let total = units.len();
    if total > LIVES_PER_SHARD {
        units.sort_by_key(|&(n, k, failed)| (!failed, n, k));
        units.truncate(LIVES_PER_SHARD);
        units.sort_by_key(|&(n, k, _)| (n, k));
    }
    let mut bars = Vec::new();
    for &(n, k, _) in &units {
        let instance = &instances[n];
        let mut bar = |step: LifeStep, failed: bool, span: (Duration, Duration)| {
            bars.push(LifeBar { instance: n, life: k, step, failed, span })
        };
        if let Some(k) = k {
            let (life, spans) = (&instance.lives[k], instance.spans()[k]);
            if let Some(span) = spans.boot.filter(|_| !(main(instance) && k == 0)) {
                bar(LifeStep::Boot, life.boot_failure.is_some(), span);
            }
            if let Some(span) = spans.up {
                bar(LifeStep::Up, false, span);
            }
            if let Some(span) = spans.stop {
                bar(LifeStep::End(life.ended_by.unwrap_or("stop")), life.problem.is_some(), span);
            }
        }
        let last = k.is_none_or(|k| k + 1 == instance.lives.len());
        if let Some(span) = instance.release_span().filter(|_| last && !main(instance)) {
            bar(LifeStep::Release, instance.problem.is_some(), span);
        }
    }
    (bars, total - units.len())
}

/// Text from a plan, a command or Harper, safe anywhere in the summary's markdown and HTML (a
/// table cell, bold text, a `<summary>`) and in report.html's text and quoted attributes: on one
/// line, without control characters, and every character markdown or HTML could take for
/// syntax — tags, entities, quotes, cell separators, code spans, emphasis, links — written as an
/// entity, which both read back as the character.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text::one_line(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '|' => out.push_str("&#124;"),
            '`' => out.push_str("&#96;"),
            '*' => out.push_str("&#42;"),
            '_' => out.push_str("&#95;"),
            '[' => out.push_str("&#91;"),
            ']' => out.push_str("&#93;"),
            '\\' => out.push_str("&#92;"),
            '~' => out.push_str("&#126;"),
            c => out.push(c),
        }
    }
    out
}

/// A section or task name mermaid cannot misread: letters, digits and a few plain marks only.
/// Mermaid ends a name at `:`, reads `#…;` as an entity, and the chart's code fence ends at
/// backticks; anything else becomes `-`.
fn mermaid_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_alphanumeric() || " -_./+=@()".contains(c) { c } else { '-' })
        .collect()
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(super) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A code fence longer than any run of backticks in `body`, so the body cannot close it.
fn fence_for(body: &str) -> String {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// Cuts `text` to at most `max` bytes on a line boundary, saying so at the end.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    const NOTE: &str = "\n… (cut to fit; see report.json for everything)\n";
    let Some(budget) = max.checked_sub(NOTE.len()) else { return String::new() };
    let kept = crate::text::prefix_within(text, budget);
    let end = kept.rfind('\n').map_or(kept.len(), |i| i + 1);
    format!("{}{NOTE}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_in_its_body() {
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
    }

    #[test]
    fn truncate_keeps_whole_lines_and_stays_within_the_limit() {
        let text = "line one\nline two\nline three\n".repeat(100);
        let cut = truncate(&text, 200);
        assert!(cut.len() <= 200, "{}", cut.len());
        assert!(cut.starts_with("line one\n"));
        assert!(cut.ends_with("see report.json for everything)\n"));
    }

    #[test]
    fn mermaid_names_lose_the_characters_that_end_them() {
        assert_eq!(mermaid_text("db:1#x;y`z<b>"), "db-1-x-y-z-b-");
        assert_eq!(mermaid_text("unit/2 (fast)"), "unit/2 (fast)");
    }

    #[test]
    fn values_are_escaped_for_markdown_and_html_alike() {
        assert_eq!(escape("<img src=x onerror=alert(1)>"), "&lt;img src=x onerror=alert(1)&gt;");
        assert_eq!(
            escape("a|b\nc `d` **e** [f](g) &amp;"),
            "a&#124;b c &#96;d&#96; &#42;&#42;e&#42;&#42; &#91;f&#93;(g) &amp;amp;"
        );
        assert_eq!(escape("x\r\x1b[2Jy"), "x␍y");
    }

    use crate::report::synthetic::{Command, End, Run, Shard};

    #[test]
    fn a_run_too_big_for_one_chart_keeps_its_failures_and_says_what_it_left_out() {
        let chart = gantt(&Run::many(2000, 1).record(), STEP_SUMMARY_LIMIT);
        let diagram = chart.split("```").nth(1).expect("a fenced diagram");
        assert!(
            diagram.len() < 50_000,
            "mermaid draws at most 50,000 characters: {}",
            diagram.len()
        );
        assert!(diagram.contains("section s2000\n"), "the failed shard is drawn");
        let drawn = diagram.matches("    section ").count();
        assert!(drawn > 100 && drawn < 2001, "{drawn}");
        assert!(
            chart.contains(&format!("The chart shows {drawn} of 2001 shards")),
            "{}",
            &chart[chart.len() - 200..]
        );
    }

    #[test]
    fn a_run_that_fits_draws_every_shard_and_adds_no_note() {
        let chart = gantt(&Run::many(20, 2).record(), STEP_SUMMARY_LIMIT);
        assert_eq!(chart.matches("    section ").count(), 22);
        assert!(!chart.contains("The chart shows"));
    }

    #[test]
    fn the_step_summary_has_a_table_of_phases_and_a_compact_gantt_chart_marking_the_failure() {
        let run = Run::of([
            Shard::passing("ok-00"),
            Shard::passing("ok-01"),
            Shard::failing("bad-00", &["not ok 1"]),
        ]);
        let md = markdown(&run.record(), STEP_SUMMARY_LIMIT);
        assert!(
            md.contains("| shard | address | wait | boot | commands | teardown | total | status |"),
            "{md}"
        );
        for name in ["ok-00", "ok-01", "bad-00"] {
            assert_eq!(
                md.lines().filter(|l| l.starts_with(&format!("| {name} | 127."))).count(),
                1,
                "one row for {name}: {md}"
            );
        }
        let chart = md
            .split("```mermaid\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a mermaid block");
        let lines: Vec<&str> = chart.lines().map(str::trim).collect();
        assert_eq!(
            lines[..4],
            ["---", "displayMode: compact", "---", "gantt"],
            "mermaid's compact display (a row per shard): {chart}"
        );
        assert!(lines.contains(&"dateFormat x"), "{chart}");
        for name in ["ok-00", "ok-01", "bad-00"] {
            let at = lines
                .iter()
                .position(|l| *l == format!("section {name}"))
                .unwrap_or_else(|| panic!("no section {name}: {chart}"));
            let tasks: Vec<&str> =
                lines[at + 1..].iter().take_while(|l| !l.starts_with("section")).copied().collect();
            let labels: Vec<&str> = tasks.iter().map(|t| t.split(' ').next().unwrap()).collect();
            assert_eq!(labels, ["wait", "boot", "commands", "teardown"], "{name}: {tasks:?}");
            for t in &tasks {
                let (_, spec) = t.split_once(':').unwrap();
                let parts: Vec<&str> = spec.split(", ").collect();
                let (start, end): (u64, u64) = (
                    parts[parts.len() - 2].parse().unwrap(),
                    parts[parts.len() - 1].parse().unwrap(),
                );
                assert!(start < end, "{t}");
            }
            let crit: Vec<&&str> = tasks.iter().filter(|t| t.contains(":crit,")).collect();
            match name {
                "bad-00" => {
                    assert!(crit.len() == 1 && crit[0].starts_with("commands"), "{tasks:?}")
                }
                _ => assert!(crit.is_empty(), "{tasks:?}"),
            }
        }
    }

    /// The markdown with every fenced code block taken out: what GitHub renders as markup.
    fn outside_fences(md: &str) -> String {
        let mut out = String::new();
        let mut fence: Option<String> = None;
        for line in md.lines() {
            let ticks: String = line.chars().take_while(|c| *c == '`').collect();
            match &fence {
                Some(f) if ticks.len() >= f.len() && line.trim_end() == ticks => fence = None,
                Some(_) => {}
                None if ticks.len() >= 3 => fence = Some(ticks),
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    #[test]
    fn html_pipes_and_line_breaks_from_names_and_causes_are_not_markup() {
        let evil = "<img src=x onerror=alert(1)>|x\ny`z`";
        let said = format!("{evil} in the output");
        let run = Run::of([Shard::new(evil, vec![Command::failing(evil, 1500, 1, &[&said])])]);
        let md = markdown(&run.record(), STEP_SUMMARY_LIMIT);
        let rendered = outside_fences(&md);
        assert!(!rendered.contains("<img"), "raw HTML outside the code fences: {rendered}");
        let row = rendered
            .lines()
            .find(|l| l.starts_with("| &lt;img"))
            .expect("the shard's row, escaped");
        assert_eq!(row.matches('|').count(), 9, "a pipe in the name is no cell separator: {row}");
        let failure =
            rendered.lines().find(|l| l.starts_with("**&lt;img")).expect("the failure's line");
        assert!(
            failure.contains("&#124;x y&#96;z&#96;") && failure.ends_with("failed: exit code 1"),
            "one line, escaped: {failure}"
        );
        let chart = md.split("```mermaid\n").nth(1).unwrap();
        let section = chart.lines().find(|l| l.trim_start().starts_with("section ")).unwrap();
        assert!(!section.contains(['<', '>', ':', '#', ';', '`', '|']), "{section}");
        assert!(
            md.contains("\n<img src=x onerror=alert(1)>|x\n"),
            "the tail is shown as it was, inside its fence"
        );
    }

    #[test]
    fn the_step_summary_stays_under_githubs_limit_whatever_the_tails_hold() {
        let line = "x".repeat(100_000);
        let tail = vec![line.as_str(); 40];
        let run = Run::of((0..40).map(|i| Shard::failing(&format!("s{i:02}"), &tail)));
        let record = run.record();
        let md = markdown(&record, STEP_SUMMARY_LIMIT);
        assert!(md.len() <= STEP_SUMMARY_LIMIT, "{} bytes", md.len());
        assert!(md.contains("left out to fit"), "the summary says what it left out");
        assert!(md.contains("```mermaid"), "the chart keeps its room");
        for limit in [0, 100, 5_000, 70_000] {
            assert!(markdown(&record, limit).len() <= limit, "within {limit}");
        }
    }

    #[test]
    fn the_table_and_the_chart_agree_on_commands_cut_short_by_teardown() {
        let cut = Command { line: "npm test".into(), took: 2510, end: End::Cut };
        let record = Run::of([Shard::new("cut", vec![cut])]).record();
        let table = table(&record, STEP_SUMMARY_LIMIT);
        let row = table.lines().find(|l| l.starts_with("| cut |")).unwrap();
        let commands = row.split('|').nth(5).unwrap().trim();
        assert_eq!(commands, "2.51s", "the commands ran from ready to teardown: {row}");
        let chart = gantt(&record, STEP_SUMMARY_LIMIT);
        let task = chart
            .lines()
            .find(|l| l.trim_start().starts_with("commands :"))
            .expect("a commands task");
        let ends: Vec<u64> = task.rsplit(", ").take(2).map(|n| n.trim().parse().unwrap()).collect();
        assert_eq!(ends[0] - ends[1], 2510, "{task}");
    }

    /// The chart of one shard, `auth`, whose commands restart an instance `restarts` times.
    fn instances_chart(restarts: usize) -> String {
        gantt(
            &Run::of([Shard::passing("auth").with_instances(restarts)]).record(),
            STEP_SUMMARY_LIMIT,
        )
    }

    /// The chart's tasks whose name starts with `name` (`i1 (auth tests) boot`), as (from, to).
    fn bars(chart: &str, name: &str) -> Vec<(String, u64, u64)> {
        chart
            .lines()
            .filter_map(|l| {
                l.trim_start().strip_prefix(name)?.strip_prefix(' ').map(|rest| (l, rest))
            })
            .map(|(line, rest)| {
                let (task, times) =
                    rest.split_once(" :").unwrap_or_else(|| panic!("a task: {line}"));
                let n: Vec<u64> =
                    times.rsplit(", ").take(2).map(|n| n.trim().parse().unwrap()).collect();
                (
                    format!("{task}{}", if times.starts_with("crit, ") { " (crit)" } else { "" }),
                    n[1],
                    n[0],
                )
            })
            .collect()
    }

    #[test]
    fn each_instances_lives_are_bars_under_its_shards_section() {
        let chart = instances_chart(1);
        let section = chart.split("    section auth\n").nth(1).expect("the shard's section");
        let names =
            |of: &str| bars(section, of).into_iter().map(|(task, _, _)| task).collect::<Vec<_>>();
        assert_eq!(
            names("i1 (auth tests)"),
            ["boot", "up", "stop", "boot", "up", "release"],
            "{chart}"
        );
        assert_eq!(
            names("main"),
            ["up", "kill", "boot", "up"],
            "main's first boot and its release are the shard's boot and teardown: {chart}"
        );
        assert_eq!(names("i2"), ["boot (crit)", "release"], "the failed boot is marked: {chart}");
        let i1 = bars(section, "i1 (auth tests)");
        assert_eq!(i1[0].2 - i1[0].1, 250, "a boot lasts until ready: {i1:?}");
        assert_eq!(i1[1].2 - i1[1].1, 100, "a life is up until its stop: {i1:?}");
        assert_eq!(
            bars(section, "i2")[0].2 - bars(section, "i2")[0].1,
            100,
            "a failed boot lasts until its failure"
        );
        assert!(!chart.contains("leaves out"), "{chart}");
    }

    /// The lives the chart draws, by their tasks' ids (`s0i1l2b`: shard 0, instance 1, life 2,
    /// boot).
    fn lives_drawn(chart: &str) -> std::collections::BTreeSet<String> {
        chart
            .lines()
            .filter_map(|l| l.split_once(" :").map(|(_, rest)| rest.trim_start_matches("crit, ")))
            .filter_map(|rest| rest.split(',').next())
            .filter(|id| id.contains('l'))
            .map(|id| id[..id.len() - 1].to_owned())
            .collect()
    }

    #[test]
    fn a_shard_that_restarts_an_instance_in_a_loop_draws_its_failed_lives_first_and_counts_the_rest()
     {
        // i1: 30 lives, main: 2, i2: 1 (its boot failed).
        let chart = instances_chart(29);
        let drawn = lives_drawn(&chart);
        assert_eq!(drawn.len(), LIVES_PER_SHARD, "{chart}");
        assert!(chart.contains("i2 boot :crit, "), "the failed boot is drawn: {chart}");
        assert!(
            chart.contains("\nThe chart leaves out 21 instance lives of 1 shard(s)"),
            "{chart}"
        );
        assert_eq!(lives_drawn(&instances_chart(1)).len(), 2 + 2 + 1, "all fit");
    }
}
