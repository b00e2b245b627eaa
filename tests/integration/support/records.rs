//! Run records built from events, for the check-run tests that publish to the stand-in Checks
//! API (`checks.rs`), which the binary's own check-run tests share. Every other test of a
//! reporter builds its run with `report::synthetic`, in-process, beside the reporter.

use std::time::Duration;

use harper_shard::report::model::RunRecord;
use harper_shard::run::events::{
    Attempt, Event, EventKind, ExitCode, InstancePhase, Outcome, ShardId, ShardInfo, ShardStatus,
};

/// A phase of the first attempt's own instance (`main`) of `shard`.
fn own(shard: ShardId, phase: InstancePhase) -> EventKind {
    EventKind::Instance { shard, attempt: Attempt::first(1), id: "main".into(), phase }
}

/// A finished run of `passed` passing and `failed` failing shards, built from events.
pub fn run_record(passed: usize, failed: usize) -> RunRecord {
    let total = passed + failed;
    let shards: Vec<ShardInfo> = (0..total)
        .map(|i| ShardInfo {
            name: format!("s{i:03}"),
            index: i + 1,
            total,
            commands: vec!["npm test".into()],
            log_dir: format!("report/s{i:03}").into(),
        })
        .collect();
    let mut record = RunRecord::new();
    let mut t = Duration::ZERO;
    let mut apply = |kind: EventKind| {
        t += Duration::from_millis(10);
        record.apply(&Event { at: t, kind });
    };
    let started_at = std::time::SystemTime::now();
    let ids: Vec<ShardId> = ShardId::each(&shards).map(|(id, _)| id).collect();
    apply(EventKind::RunStarted {
        shards,
        concurrency: 4,
        report_dir: "report".into(),
        started_at,
        flaky_fails: false,
        plan_dir: ".".into(),
        flakes: Default::default(),
    });
    for shard in ids {
        let fails = shard.position() >= passed;
        apply(EventKind::ShardStarted { shard });
        apply(own(
            shard,
            InstancePhase::Acquired {
                name: "main".into(),
                addr: std::net::Ipv4Addr::new(127, 0, 0, 2),
            },
        ));
        apply(own(shard, InstancePhase::Ready { took: Duration::from_millis(90) }));
        apply(EventKind::CommandStarted {
            shard,
            attempt: Attempt::first(1),
            command: 0,
            log: format!("report/s{:03}/command-1.log", shard.position()).into(),
        });
        let outcome =
            if fails { Outcome::Failed { status: "exit code 1".into() } } else { Outcome::Passed };
        apply(EventKind::CommandFinished {
            shard,
            attempt: Attempt::first(1),
            command: 0,
            outcome,
            tail: vec!["not ok 1 - widget".into()],
        });
        apply(EventKind::TeardownStarted { shard, attempt: Attempt::first(1) });
        let (status, cause) = if fails {
            (ShardStatus::Failed, Some("`npm test` failed: exit code 1".into()))
        } else {
            (ShardStatus::Passed, None)
        };
        apply(EventKind::ShardFinished { shard, status, cause });
    }
    apply(EventKind::RunFinished { exit: ExitCode(if failed > 0 { 1 } else { 0 }) });
    record
}
