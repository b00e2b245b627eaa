//! The run as markdown: a headline, a table of every shard's phases, the failures with the
//! output that explains them, and a mermaid Gantt chart of the phases on one time axis.
//!
//! GitHub's step summary and the check run's output are both built from these pieces, so the
//! two always tell the same story. Nothing here writes anywhere.

use std::fmt::Write;
use std::time::Duration;

use super::model::{Phase, Phases, RunRecord, ShardRecord};
use super::{collapse, short};

/// Lines of a failure's output shown in markdown (the full tail is in report.json and the logs).
const TAIL_LINES: usize = 40;
/// The most the failures section takes: GitHub refuses a step summary past 1 MiB.
const FAILURES_BUDGET: usize = 256 * 1024;

/// "2 of 3 shards passed in 12.31s" or "all 3 shards passed in 12.31s".
pub fn headline(record: &RunRecord) -> String {
    let total = record.shards.len();
    let passed = record.shards.iter().filter(|s| s.ok()).count();
    let took = short(record.duration);
    if passed == total {
        format!("all {total} shard(s) passed in {took}")
    } else {
        format!("{} of {total} shard(s) failed in {took}", total - passed)
    }
}

/// The step summary: everything below, in reading order.
pub fn markdown(record: &RunRecord) -> String {
    let mark = if record.failed().next().is_none() { "✅" } else { "❌" };
    let mut md = format!("## {mark} harper-shard: {}\n\n", headline(record));
    md.push_str(&table(record));
    md.push('\n');
    md.push_str(&failures(record));
    md.push_str("### Timeline\n\n");
    md.push_str(&gantt(record));
    md
}

/// A markdown table: one row per shard, a column per phase, the status last.
pub fn table(record: &RunRecord) -> String {
    let mut md = format!("| shard | address | {} | status |\n", Phases::COLUMNS.join(" | "));
    md.push_str(&format!("|---|---|{}---|\n", "--:|".repeat(Phases::COLUMNS.len())));
    for s in &record.shards {
        let status = match s.status {
            Some(st) if s.ok() => st.label().to_owned(),
            Some(st) => format!("**{}**", st.label()),
            None => "unfinished".to_owned(),
        };
        let phases: Vec<String> = s.phases.columns().iter().map(|x| x.map(short).unwrap_or_else(|| "–".into())).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {status} |",
            cell(&s.name),
            s.address.map(|a| a.to_string()).unwrap_or_else(|| "–".into()),
            phases.join(" | "),
        );
    }
    md
}

/// Each failed shard's cause and, folded away, the last lines of the output that explains it.
pub fn failures(record: &RunRecord) -> String {
    let mut md = String::new();
    let failed: Vec<&ShardRecord> = record.failed().collect();
    if failed.is_empty() {
        return md;
    }
    md.push_str("### Failures\n\n");
    let total = failed.len();
    for (shown, s) in failed.into_iter().enumerate() {
        if md.len() > FAILURES_BUDGET {
            let _ = writeln!(md, "… and {} more failed shard(s); report.json has every one.\n", total - shown);
            break;
        }
        let cause = s.cause.as_deref().unwrap_or("no cause recorded");
        let _ = writeln!(md, "**{}** — {}\n", cell(&s.name), cell(cause));
        let (title, tail) = s.failure_tail();
        if !tail.is_empty() {
            let lines = collapse(tail);
            let shown = &lines[lines.len().saturating_sub(TAIL_LINES)..];
            let body = shown.join("\n");
            let fence = fence_for(&body);
            let _ = writeln!(md, "<details><summary>{}</summary>\n\n{fence}text\n{body}\n{fence}\n\n</details>\n", html(&title));
        }
    }
    md
}

/// A mermaid Gantt chart: a section per shard, a task per phase that ran, times in
/// milliseconds since the run started; the phase that failed is marked `crit`.
///
/// Mermaid refuses diagrams past 50,000 characters, so a run too big for one chart shows its
/// failed shards and then its longest ones, and says how many it left out.
pub fn gantt(record: &RunRecord) -> String {
    let sections: Vec<(usize, String)> =
        record.shards.iter().enumerate().filter_map(|(i, s)| gantt_section(i, s).map(|text| (i, text))).collect();
    let mut order: Vec<usize> = (0..sections.len()).collect();
    let shard = |k: usize| &record.shards[sections[k].0];
    order.sort_by_key(|&k| (shard(k).ok(), std::cmp::Reverse(shard(k).phases.total())));
    let mut chosen = Vec::new();
    let mut size = 0;
    for k in order {
        if size + sections[k].1.len() > MERMAID_BUDGET {
            continue;
        }
        size += sections[k].1.len();
        chosen.push(k);
    }
    chosen.sort_unstable();
    // Times are milliseconds since 1970-01-01, so the axis reads as time since the run started;
    // browsers draw it in their own time zone, which shifts hours but (nearly always) not minutes.
    let axis = if record.duration < Duration::from_secs(60) { "%S.%L" } else { "%M:%S" };
    let mut md = format!("```mermaid\ngantt\n    title Shard phases (time since the run started)\n    dateFormat x\n    axisFormat {axis}\n");
    for &k in &chosen {
        md.push_str(&sections[k].1);
    }
    md.push_str("```\n");
    if chosen.len() < sections.len() {
        let _ = writeln!(md, "\nThe chart shows {} of {} shards (failed ones first, then the longest): mermaid draws at most 50,000 characters.", chosen.len(), sections.len());
    }
    md
}

/// Room for sections in one chart, below mermaid's 50,000-character limit.
const MERMAID_BUDGET: usize = 48_000;

fn gantt_section(i: usize, s: &ShardRecord) -> Option<String> {
    let tasks: Vec<(Phase, Duration, Duration)> =
        Phase::ALL.iter().filter_map(|p| s.phases.bounds(*p).map(|(a, b)| (*p, a, b))).collect();
    if tasks.is_empty() {
        return None;
    }
    let mut md = format!("    section {}\n", mermaid_text(&s.name));
    let failed = s.failed_phase();
    for (phase, from, to) in tasks {
        let (from, to) = (from.as_millis(), to.as_millis());
        // A zero-length bar does not show; one millisecond does.
        let to = to.max(from + 1);
        let tag = if failed == Some(phase) { "crit, " } else { "" };
        let _ = writeln!(md, "        {} :{tag}s{i}{}, {from}, {to}", phase.label(), &phase.label()[..1]);
    }
    Some(md)
}

/// Text safe in a markdown table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Mermaid ends a section or task name at `:` and reads `#` and `;` specially.
fn mermaid_text(text: &str) -> String {
    text.chars().map(|c| if matches!(c, ':' | '#' | ';' | '\r' | '\n') { '-' } else { c }).collect()
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
    let budget = max.saturating_sub(NOTE.len());
    let mut end = budget;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let end = text[..end].rfind('\n').map_or(end, |i| i + 1);
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
        assert_eq!(mermaid_text("db:1#x;y"), "db-1-x-y");
    }
}
