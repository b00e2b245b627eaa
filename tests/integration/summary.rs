//! The markdown summary's limits and escaping: what GitHub and mermaid would refuse is cut, the
//! cut is said out loud, and nothing a plan, a command or Harper says is read as markup.

use crate::support;

use std::net::Ipv4Addr;
use std::time::Duration;

use harper_shard::report::model::RunRecord;
use harper_shard::report::summary::{self, STEP_SUMMARY_LIMIT};
use harper_shard::run::events::{
    Attempt, BootLogs, Event, EventKind, ExitCode, InstancePhase, Outcome, ShardId, ShardInfo,
    ShardStatus,
};
use support::records::{own, run_record};

#[test]
fn a_run_too_big_for_one_chart_keeps_its_failures_and_says_what_it_left_out() {
    let record = run_record(2000, 1);
    let chart = summary::gantt(&record, STEP_SUMMARY_LIMIT);
    let diagram = chart.split("```").nth(1).expect("a fenced diagram");
    assert!(diagram.len() < 50_000, "mermaid draws at most 50,000 characters: {}", diagram.len());
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
        .map(|(i, l)| ShardInfo {
            name: l.name.clone(),
            index: i + 1,
            total: lives.len(),
            commands: vec!["npm test".into()],
            log_dir: "report/x".into(),
        })
        .collect();
    let mut record = RunRecord::new();
    let mut t = Duration::ZERO;
    let mut apply = |step: Duration, kind: EventKind| {
        t += step;
        record.apply(&Event { at: t, kind });
    };
    let ms = Duration::from_millis;
    let ids: Vec<ShardId> = ShardId::each(&shards).map(|(id, _)| id).collect();
    apply(
        ms(1),
        EventKind::RunStarted {
            shards,
            concurrency: 4,
            report_dir: "report".into(),
            started_at: std::time::SystemTime::now(),
            flaky_fails: false,
            plan_dir: ".".into(),
            flakes: Default::default(),
        },
    );
    for (shard, l) in ids.into_iter().zip(lives) {
        apply(ms(10), EventKind::ShardStarted { shard });
        apply(
            ms(10),
            own(
                shard,
                InstancePhase::Acquired { name: "main".into(), addr: Ipv4Addr::new(127, 0, 0, 2) },
            ),
        );
        apply(ms(100), own(shard, InstancePhase::Ready { took: Duration::from_millis(90) }));
        apply(
            ms(10),
            EventKind::CommandStarted {
                shard,
                attempt: Attempt::first(1),
                command: 0,
                log: "report/x/command-1.log".into(),
            },
        );
        if !l.cut_short {
            let outcome = if l.status == ShardStatus::Passed {
                Outcome::Passed
            } else {
                Outcome::Failed { status: "exit code 1".into() }
            };
            apply(
                ms(1500),
                EventKind::CommandFinished {
                    shard,
                    attempt: Attempt::first(1),
                    command: 0,
                    outcome,
                    tail: l.tail.clone(),
                },
            );
        }
        apply(ms(2500), EventKind::TeardownStarted { shard, attempt: Attempt::first(1) });
        apply(ms(50), EventKind::ShardFinished { shard, status: l.status, cause: l.cause.clone() });
    }
    apply(ms(1), EventKind::RunFinished { exit: ExitCode(1) });
    record
}

fn failing(name: &str, cause: &str, tail: Vec<String>) -> Life {
    Life {
        name: name.into(),
        cause: Some(cause.into()),
        status: ShardStatus::Failed,
        tail,
        cut_short: false,
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
    let record = record_of(&[failing(
        evil,
        &format!("`{evil}` failed"),
        vec![format!("{evil} in the output")],
    )]);
    let md = summary::markdown(&record, STEP_SUMMARY_LIMIT);
    let rendered = outside_fences(&md);
    assert!(!rendered.contains("<img"), "raw HTML outside the code fences: {rendered}");
    let row =
        rendered.lines().find(|l| l.starts_with("| &lt;img")).expect("the shard's row, escaped");
    assert_eq!(row.matches('|').count(), 9, "a pipe in the name is no cell separator: {row}");
    let failure =
        rendered.lines().find(|l| l.starts_with("**&lt;img")).expect("the failure's line");
    assert!(
        failure.contains("&#124;x y&#96;z&#96;") && failure.ends_with("failed"),
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
    let huge_tail = vec!["x".repeat(100_000); 40];
    let lives: Vec<Life> = (0..40)
        .map(|i| failing(&format!("s{i:02}"), "`npm test` failed: exit code 1", huge_tail.clone()))
        .collect();
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
    let cut = Life {
        name: "cut".into(),
        cause: Some("cancelled".into()),
        status: ShardStatus::Cancelled,
        tail: vec![],
        cut_short: true,
    };
    let record = record_of(&[cut]);
    let table = summary::table(&record, STEP_SUMMARY_LIMIT);
    let row = table.lines().find(|l| l.starts_with("| cut |")).unwrap();
    let commands = row.split('|').nth(5).unwrap().trim();
    assert_eq!(commands, "2.51s", "the commands ran from ready to teardown: {row}");
    let chart = summary::gantt(&record, STEP_SUMMARY_LIMIT);
    let task =
        chart.lines().find(|l| l.trim_start().starts_with("commands :")).expect("a commands task");
    let ends: Vec<u64> = task.rsplit(", ").take(2).map(|n| n.trim().parse().unwrap()).collect();
    assert_eq!(ends[0] - ends[1], 2510, "{task}");
}

/// One shard whose commands start `i1` (named `auth tests`), restart it `restarts` times and
/// then release it; kill and start the shard's own; and start `i2`, whose boot fails.
fn instances_record(restarts: usize) -> RunRecord {
    let shards = vec![ShardInfo {
        name: "auth".into(),
        index: 1,
        total: 1,
        commands: vec!["npm test".into()],
        log_dir: "report/auth".into(),
    }];
    let (shard, _) = ShardId::each(&shards).next().expect("one shard");
    let mut record = RunRecord::new();
    let mut t = Duration::ZERO;
    let mut apply = |ms: u64, kind: EventKind| {
        t += Duration::from_millis(ms);
        record.apply(&Event { at: t, kind });
    };
    let instance = |id: &str, phase: InstancePhase| EventKind::Instance {
        shard,
        attempt: Attempt::first(1),
        id: id.into(),
        phase,
    };
    let booting = |pid: u32| InstancePhase::Booting {
        pid,
        rootpath: "/tmp/r".into(),
        logs: BootLogs { stdout: "o".into(), stderr: "e".into() },
    };
    let ready = || InstancePhase::Ready { took: Duration::from_millis(250) };
    apply(
        1,
        EventKind::RunStarted {
            shards,
            concurrency: 1,
            report_dir: "report".into(),
            started_at: std::time::SystemTime::now(),
            flaky_fails: false,
            plan_dir: ".".into(),
            flakes: Default::default(),
        },
    );
    apply(1, EventKind::ShardStarted { shard });
    apply(
        1,
        own(
            shard,
            InstancePhase::Acquired { name: "main".into(), addr: Ipv4Addr::new(127, 0, 0, 2) },
        ),
    );
    let logs = BootLogs {
        stdout: "report/auth/harper/stdout.log".into(),
        stderr: "report/auth/harper/stderr.log".into(),
    };
    apply(1, own(shard, InstancePhase::Booting { pid: 10, rootpath: "/tmp/r".into(), logs }));
    apply(300, own(shard, InstancePhase::Ready { took: Duration::from_millis(90) }));
    apply(
        1,
        EventKind::CommandStarted {
            shard,
            attempt: Attempt::first(1),
            command: 0,
            log: "report/auth/command-1.log".into(),
        },
    );
    apply(
        5,
        instance(
            "i1",
            InstancePhase::Acquired {
                name: "auth tests".into(),
                addr: Ipv4Addr::new(127, 0, 0, 3),
            },
        ),
    );
    for n in 0..=restarts {
        apply(1, instance("i1", booting(20 + n as u32)));
        apply(250, instance("i1", ready()));
        if n < restarts {
            apply(100, instance("i1", InstancePhase::Stopping { how: "stop" }));
            apply(
                20,
                instance(
                    "i1",
                    InstancePhase::Stopped {
                        exit: "exit code 0".into(),
                        took: Duration::from_millis(20),
                        problem: None,
                    },
                ),
            );
        }
    }
    apply(100, instance("i1", InstancePhase::Releasing));
    apply(30, instance("i1", InstancePhase::Released { problem: None }));
    apply(10, instance("main", InstancePhase::Stopping { how: "kill" }));
    apply(
        5,
        instance(
            "main",
            InstancePhase::Stopped {
                exit: "killed by SIGKILL".into(),
                took: Duration::from_millis(5),
                problem: None,
            },
        ),
    );
    apply(1, instance("main", booting(11)));
    apply(250, instance("main", ready()));
    apply(
        5,
        instance(
            "i2",
            InstancePhase::Acquired { name: "i2".into(), addr: Ipv4Addr::new(127, 0, 0, 4) },
        ),
    );
    apply(1, instance("i2", booting(30)));
    let tail = vec!["Error: HarperDB failed to start".into()];
    apply(
        100,
        instance(
            "i2",
            InstancePhase::BootFailed {
                cause: "Harper exited before it was ready: exit code 3".into(),
                tail,
            },
        ),
    );
    apply(1, instance("i2", InstancePhase::Releasing));
    apply(10, instance("i2", InstancePhase::Released { problem: None }));
    apply(
        100,
        EventKind::CommandFinished {
            shard,
            attempt: Attempt::first(1),
            command: 0,
            outcome: Outcome::Passed,
            tail: vec![],
        },
    );
    apply(1, EventKind::TeardownStarted { shard, attempt: Attempt::first(1) });
    apply(1, instance("main", InstancePhase::Releasing));
    apply(20, instance("main", InstancePhase::Released { problem: None }));
    apply(1, EventKind::ShardFinished { shard, status: ShardStatus::Passed, cause: None });
    apply(1, EventKind::RunFinished { exit: ExitCode(0) });
    record
}

/// The chart's tasks whose name starts with `name` (`i1 (auth tests) boot`), as (from, to).
fn bars(chart: &str, name: &str) -> Vec<(String, u64, u64)> {
    chart
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(name)?.strip_prefix(' ').map(|rest| (l, rest)))
        .map(|(line, rest)| {
            let (task, times) = rest.split_once(" :").unwrap_or_else(|| panic!("a task: {line}"));
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
    let chart = summary::gantt(&instances_record(1), STEP_SUMMARY_LIMIT);
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

/// The lives the chart draws, by their tasks' ids (`s0i1l2b`: shard 0, instance 1, life 2, boot).
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
fn a_shard_that_restarts_an_instance_in_a_loop_draws_its_failed_lives_first_and_counts_the_rest() {
    // i1: 30 lives, main: 2, i2: 1 (its boot failed).
    let chart = summary::gantt(&instances_record(29), STEP_SUMMARY_LIMIT);
    let drawn = lives_drawn(&chart);
    assert_eq!(drawn.len(), summary::LIVES_PER_SHARD, "{chart}");
    assert!(chart.contains("i2 boot :crit, "), "the failed boot is drawn: {chart}");
    assert!(chart.contains("\nThe chart leaves out 21 instance lives of 1 shard(s)"), "{chart}");
    assert_eq!(
        lives_drawn(&summary::gantt(&instances_record(1), STEP_SUMMARY_LIMIT)).len(),
        2 + 2 + 1,
        "all fit"
    );
}
