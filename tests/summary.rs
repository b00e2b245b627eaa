//! The markdown summary's limits and escaping: what GitHub and mermaid would refuse is cut, the
//! cut is said out loud, and nothing a plan, a command or Harper says is read as markup.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use harper_shard::report::model::RunRecord;
use harper_shard::report::summary::{self, STEP_SUMMARY_LIMIT};
use harper_shard::run::events::{Event, EventKind, ExitCode, Outcome, ShardInfo, ShardStatus};
use support::records::run_record;

#[test]
fn a_run_too_big_for_one_chart_keeps_its_failures_and_says_what_it_left_out() {
    let record = run_record(2000, 1);
    let chart = summary::gantt(&record, STEP_SUMMARY_LIMIT);
    let diagram = chart.split("```").nth(1).expect("a fenced diagram");
    assert!(diagram.len() < 50_000, "mermaid draws at most 50,000 characters: {}", diagram.len());
    assert!(diagram.contains("section s2000\n"), "the failed shard is drawn");
    let drawn = diagram.matches("    section ").count();
    assert!(drawn > 100 && drawn < 2001, "{drawn}");
    assert!(chart.contains(&format!("The chart shows {drawn} of 2001 shards")), "{}", &chart[chart.len() - 200..]);
}

#[test]
fn a_run_that_fits_draws_every_shard_and_adds_no_note() {
    let chart = summary::gantt(&run_record(20, 2), STEP_SUMMARY_LIMIT);
    assert_eq!(chart.matches("    section ").count(), 22);
    assert!(!chart.contains("The chart shows"));
}

/// One shard's life as events, from its start to its finish.
struct Life {
    name: String,
    cause: Option<String>,
    status: ShardStatus,
    tail: Vec<String>,
    /// The command is cut short by teardown: no `CommandFinished`.
    cut_short: bool,
}

fn record_of(lives: &[Life]) -> RunRecord {
    let shards: Vec<ShardInfo> = lives
        .iter()
        .enumerate()
        .map(|(i, l)| ShardInfo { name: l.name.clone(), index: i + 1, total: lives.len(), commands: vec!["npm test".into()], log_dir: "report/x".into() })
        .collect();
    let mut record = RunRecord::new();
    let mut t = Duration::ZERO;
    let mut apply = |step: Duration, kind: EventKind| {
        t += step;
        record.apply(&Event { at: t, kind });
    };
    let ms = Duration::from_millis;
    apply(ms(1), EventKind::RunStarted { shards, concurrency: 4, report_dir: "report".into(), started_at: std::time::SystemTime::now() });
    for (shard, l) in lives.iter().enumerate() {
        apply(ms(10), EventKind::ShardStarted { shard });
        apply(ms(10), EventKind::AddressAcquired { shard, addr: Ipv4Addr::new(127, 0, 0, 2) });
        apply(ms(100), EventKind::BootReady { shard });
        apply(ms(10), EventKind::CommandStarted { shard, command: 0 });
        if !l.cut_short {
            let outcome = if l.status == ShardStatus::Passed { Outcome::Passed } else { Outcome::Failed { status: "exit code 1".into() } };
            apply(ms(1500), EventKind::CommandFinished { shard, command: 0, outcome, tail: l.tail.clone() });
        }
        apply(ms(2500), EventKind::TeardownStarted { shard });
        apply(ms(50), EventKind::ShardFinished { shard, status: l.status, cause: l.cause.clone() });
    }
    apply(ms(1), EventKind::RunFinished { exit: ExitCode(1) });
    record
}

fn failing(name: &str, cause: &str, tail: Vec<String>) -> Life {
    Life { name: name.into(), cause: Some(cause.into()), status: ShardStatus::Failed, tail, cut_short: false }
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
    let record = record_of(&[failing(evil, &format!("`{evil}` failed"), vec![format!("{evil} in the output")])]);
    let md = summary::markdown(&record, STEP_SUMMARY_LIMIT);
    let rendered = outside_fences(&md);
    assert!(!rendered.contains("<img"), "raw HTML outside the code fences: {rendered}");
    let row = rendered.lines().find(|l| l.starts_with("| &lt;img")).expect("the shard's row, escaped");
    assert_eq!(row.matches('|').count(), 9, "a pipe in the name is no cell separator: {row}");
    let failure = rendered.lines().find(|l| l.starts_with("**&lt;img")).expect("the failure's line");
    assert!(failure.contains("&#124;x y&#96;z&#96;") && failure.ends_with("failed"), "one line, escaped: {failure}");
    let chart = md.split("```mermaid\n").nth(1).unwrap();
    let section = chart.lines().find(|l| l.trim_start().starts_with("section ")).unwrap();
    assert!(!section.contains(['<', '>', ':', '#', ';', '`', '|']), "{section}");
    assert!(md.contains("\n<img src=x onerror=alert(1)>|x\n"), "the tail is shown as it was, inside its fence");
}

#[test]
fn the_step_summary_stays_under_githubs_limit_whatever_the_tails_hold() {
    let huge_tail = vec!["x".repeat(100_000); 40];
    let lives: Vec<Life> = (0..40).map(|i| failing(&format!("s{i:02}"), "`npm test` failed: exit code 1", huge_tail.clone())).collect();
    let record = record_of(&lives);
    let md = summary::markdown(&record, STEP_SUMMARY_LIMIT);
    assert!(md.len() <= STEP_SUMMARY_LIMIT, "{} bytes", md.len());
    assert!(md.contains("left out to fit"), "the summary says what it left out");
    assert!(md.contains("```mermaid"), "the chart keeps its room");
    for limit in [0, 100, 5_000, 70_000] {
        assert!(summary::markdown(&record, limit).len() <= limit, "within {limit}");
    }
}

#[test]
fn the_table_and_the_chart_agree_on_commands_cut_short_by_teardown() {
    let cut = Life { name: "cut".into(), cause: Some("cancelled".into()), status: ShardStatus::Cancelled, tail: vec![], cut_short: true };
    let record = record_of(&[cut]);
    let table = summary::table(&record, STEP_SUMMARY_LIMIT);
    let row = table.lines().find(|l| l.starts_with("| cut |")).unwrap();
    let commands = row.split('|').nth(5).unwrap().trim();
    assert_eq!(commands, "2.51s", "the commands ran from ready to teardown: {row}");
    let chart = summary::gantt(&record, STEP_SUMMARY_LIMIT);
    let task = chart.lines().find(|l| l.trim_start().starts_with("commands :")).expect("a commands task");
    let ends: Vec<u64> = task.rsplit(", ").take(2).map(|n| n.trim().parse().unwrap()).collect();
    assert_eq!(ends[0] - ends[1], 2510, "{task}");
}
