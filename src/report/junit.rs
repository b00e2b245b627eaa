//! `junit.xml`: the run in the shape GitLab, Jenkins and most CI test views read — one
//! `<testsuite>` per shard, one `<testcase>` per command (classname = the shard), times from the
//! phases.
//!
//! What is not a command still shows where a person looks for failures: a boot that failed is
//! an `<error>` testcase carrying Harper's last lines, a teardown that could not be confirmed is
//! another, and commands that never ran are `<skipped>`. Each instance the control socket
//! touched is a testcase of its own (`instance i1 (auth tests)`, from its address to its
//! release), an `<error>` when one of its boots failed or a stop or its release found a
//! problem. Each suite's properties carry its phase timings (wait, boot, teardown) and its
//! address.
//!
//! The test cases the commands' own JUnit XML reported follow, merged across the shard's
//! attempts ([`super::tests`]), each with the attempt and address of its last run: a test that
//! failed and then passed carries its failures as `<flakyFailure>`, one that failed in every
//! attempt its earlier failures as `<rerunFailure>` (Surefire's shape, which Jenkins and
//! GitHub's JUnit readers show).

use std::path::PathBuf;

use crate::text;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use quick_junit::{
    FlakyOrRerun, NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use super::model::{InstanceRecord, Phase, RunRecord, ShardRecord};
use super::{Reporter, collapse};
use crate::run::ReportDir;
use crate::run::events::{Event, Outcome, ShardStatus};

pub struct Junit {
    path: PathBuf,
}

impl Junit {
    /// Writes `<dir>/junit.xml` when the run ends.
    pub fn new(dir: &ReportDir) -> Junit {
        Junit { path: dir.junit_xml() }
    }
}

impl Reporter for Junit {
    fn event(&mut self, _: &Event, _: &RunRecord) {}

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        let xml = render(record).context("cannot render junit.xml")?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::supervise::output::write_atomic(&self.path, xml.as_bytes())
    }
}

/// The JUnit XML of a run.
pub fn render(record: &RunRecord) -> anyhow::Result<String> {
    let mut report = Report::new("harper-shard");
    report.set_time(record.duration);
    if let Some(start) = record.started_at {
        report.set_timestamp(timestamp(start, Duration::ZERO));
    }
    for shard in &record.shards {
        report.add_test_suite(suite(shard, record.started_at, record.timed_out));
    }
    Ok(report.to_string()?)
}

fn suite(shard: &ShardRecord, run_start: Option<SystemTime>, timed_out: bool) -> TestSuite {
    let mut suite = TestSuite::new(shard.name.as_str());
    let last = shard.last();
    if let Some(total) = last.phases.total() {
        suite.set_time(total);
    }
    if let (Some(start), Some(at)) = (run_start, last.phases.started) {
        suite.set_timestamp(timestamp(start, at));
    }
    if let Some(addr) = last.address() {
        suite.add_property(Property::new("address", addr.to_string()));
    }
    for phase in Phase::ALL {
        if let Some(took) = last.phases.took(*phase) {
            suite.add_property(Property::new(
                format!("{}-seconds", phase.label),
                format!("{:.3}", took.as_secs_f64()),
            ));
        }
    }
    if let Some(status) = shard.status {
        suite.add_property(Property::new("status", status.label()));
    }

    let classname = shard.name.as_str();
    // Every failure of the tool's own after the address was taken (instance directories,
    // fixtures, the JUnit folder, a keeper that died) is an error, as is a boot that failed;
    // a teardown's problem has a testcase of its own below.
    let explained = last
        .commands
        .iter()
        .any(|c| matches!(c.outcome, Some(Outcome::Failed { .. } | Outcome::TimedOut { .. })));
    let own_failure =
        !explained && shard.cause.as_deref().is_some_and(|c| !c.starts_with("teardown:"));
    let failed_step = match shard.status {
        Some(ShardStatus::BootFailed) => Some((Phase::BOOT, "boot Harper")),
        Some(ShardStatus::Infrastructure) if last.phases.address.is_none() => {
            Some((Phase::WAIT, "get a loopback address"))
        }
        Some(ShardStatus::Infrastructure) if own_failure => {
            Some((Phase::COMMANDS, "set up and supervise the shard"))
        }
        _ => None,
    };
    if let Some((phase, what)) = failed_step {
        let span = last.phases.bounds(phase);
        suite.add_test_case(error_case(
            what,
            classname,
            span,
            shard.cause.as_deref(),
            last.boot_tail(),
        ));
    }
    let earlier = &shard.attempts[..shard.attempts.len().saturating_sub(1)];
    for (index, c) in last.commands.iter().enumerate() {
        let mut status = match &c.outcome {
            Some(Outcome::Passed) => TestCaseStatus::success(),
            Some(Outcome::Failed { status }) => {
                failure(NonSuccessKind::Failure, status, "command-failed", &c.tail)
            }
            Some(o @ Outcome::TimedOut { .. }) => {
                failure(NonSuccessKind::Failure, &super::outcome_text(o), "timeout", &c.tail)
            }
            // Cut short by the run's timeout: not tested, and the run's own failure.
            Some(Outcome::Cancelled) | None
                if timed_out && shard.status == Some(ShardStatus::Cancelled) =>
            {
                failure(
                    NonSuccessKind::Error,
                    "cancelled: the run's timeout ran out",
                    "run-timeout",
                    &c.tail,
                )
            }
            Some(Outcome::Cancelled) => skipped("cancelled"),
            None => {
                skipped("not run: an earlier step of the shard failed or the run was cancelled")
            }
        };
        if c.outcome.is_none() && shard.status == Some(ShardStatus::Skipped) {
            status = skipped(shard.cause.as_deref().unwrap_or("skipped"));
        }
        // The same command of the attempts before: each failure is a `<flakyFailure>` when
        // this one passed, a `<rerunFailure>` when it failed too.
        if matches!(status, TestCaseStatus::NonSuccess { .. }) {
            status.set_rerun_kind(FlakyOrRerun::Rerun);
        }
        status.add_reruns(earlier.iter().filter_map(|a| command_failure(a.commands.get(index)?)));
        let mut case = TestCase::new(c.command.as_str(), status);
        case.set_classname(classname);
        if let (Some(a), Some(b)) = (c.started, c.finished) {
            case.set_time(b.saturating_sub(a));
        }
        if c.outcome.as_ref().is_some_and(|o| *o != Outcome::Passed) && !c.tail.is_empty() {
            case.set_system_out(collapse(&c.tail).join("\n"));
        }
        suite.add_test_case(case);
    }
    for test in super::merged::of(shard) {
        suite.add_test_case(test_case(&test, classname));
    }
    for instance in last.shown_instances() {
        suite.add_test_case(instance_case(instance, classname));
    }
    if let Some(problem) = last.teardown_problem() {
        let span = last.phases.bounds(Phase::TEARDOWN);
        suite.add_test_case(error_case("tear Harper down", classname, span, Some(problem), &[]));
    }
    suite
}

/// A command of an earlier attempt that failed or timed out, as a rerun of its testcase.
fn command_failure(c: &super::model::CommandRecord) -> Option<TestRerun> {
    let (message, ty) = match c.outcome.as_ref()? {
        Outcome::Failed { status } => (status.clone(), "command-failed"),
        o @ Outcome::TimedOut { .. } => (super::outcome_text(o), "timeout"),
        Outcome::Passed | Outcome::Cancelled => return None,
    };
    let time = c.started.zip(c.finished).map(|(a, b)| b.saturating_sub(a));
    let tail = (!c.tail.is_empty()).then(|| collapse(&c.tail).join("\n").into());
    Some(TestRerun {
        message: Some(message.into()),
        ty: Some(ty.into()),
        stack_trace: tail,
        time,
        ..TestRerun::new(NonSuccessKind::Failure)
    })
}

/// An instance from its address to its release: an error carrying what went wrong (and its
/// first failed boot's last lines) when anything did.
fn instance_case(instance: &InstanceRecord, classname: &str) -> TestCase {
    let name = format!("instance {}", instance.label());
    let span = instance.acquired.zip(instance.released);
    let problems = instance.problems();
    if !problems.is_empty() {
        return error_case(
            &name,
            classname,
            span,
            Some(&problems.join("; ")),
            instance.failure_tail(),
        );
    }
    let mut case = TestCase::new(name, TestCaseStatus::success());
    case.set_classname(classname);
    if let Some((from, to)) = span {
        case.set_time(to.saturating_sub(from));
    }
    case
}

/// A step of the shard's life that is not a command, failed with `cause`.
/// A test the commands reported: its last run's result, with the earlier runs' failures as
/// flaky or rerun failures.
fn test_case(test: &super::merged::Test, shard: &str) -> TestCase {
    let case = test.last();
    let mut status = match &case.failure {
        None if case.skipped => TestCaseStatus::skipped(),
        None => TestCaseStatus::success(),
        Some(f) => {
            let said = Said::of(f);
            let mut status = TestCaseStatus::non_success(said.kind);
            if let Some(m) = said.message {
                status.set_message(m);
            }
            if let Some(t) = said.ty {
                status.set_type(t);
            }
            if let Some(text) = said.text {
                status.set_description(text);
            }
            status.set_rerun_kind(FlakyOrRerun::Rerun);
            status
        }
    };
    let earlier = &test.runs[..test.runs.len() - 1];
    status.add_reruns(earlier.iter().filter_map(|run| {
        let said = Said::of(run.case.failure.as_ref()?);
        let time = run.case.time.map(Duration::from_secs_f64);
        Some(TestRerun {
            message: said.message.map(Into::into),
            ty: said.ty.map(Into::into),
            stack_trace: said.text.map(Into::into),
            time,
            ..TestRerun::new(said.kind)
        })
    }));
    let mut tc = TestCase::new(text::neutralise(&case.name), status);
    tc.set_classname(case.classname.as_deref().map_or_else(|| shard.to_owned(), text::neutralise));
    if let Some(secs) = case.time {
        tc.set_time(Duration::from_secs_f64(secs));
    }
    let last = test.runs.last().expect("a test has run at least once");
    tc.add_property(Property::new("attempt", last.attempt.to_string()));
    if let Some(addr) = last.address {
        tc.add_property(Property::new("address", addr.to_string()));
    }
    if let Some(file) = &case.file {
        tc.add_property(Property::new("file", text::neutralise(file)));
    }
    tc
}

/// What a reported failure says, made safe to write.
struct Said {
    kind: NonSuccessKind,
    message: Option<String>,
    ty: Option<String>,
    text: Option<String>,
}

impl Said {
    fn of(f: &crate::cases::ReportedFailure) -> Said {
        Said {
            kind: if f.error { NonSuccessKind::Error } else { NonSuccessKind::Failure },
            message: f.message.as_deref().map(text::neutralise),
            ty: f.kind.as_deref().map(text::neutralise),
            text: (!f.text.is_empty()).then(|| text::neutralise(&f.text)),
        }
    }
}

fn error_case(
    name: &str,
    classname: &str,
    span: Option<(Duration, Duration)>,
    cause: Option<&str>,
    tail: &[String],
) -> TestCase {
    let status = failure(NonSuccessKind::Error, cause.unwrap_or("failed"), "infrastructure", tail);
    let mut case = TestCase::new(name, status);
    case.set_classname(classname);
    if let Some((from, to)) = span {
        case.set_time(to.saturating_sub(from));
    }
    if !tail.is_empty() {
        case.set_system_out(collapse(tail).join("\n"));
    }
    case
}

fn failure(kind: NonSuccessKind, message: &str, ty: &str, tail: &[String]) -> TestCaseStatus {
    let mut status = TestCaseStatus::non_success(kind);
    status.set_message(message).set_type(ty);
    if !tail.is_empty() {
        status.set_description(collapse(tail).join("\n"));
    }
    status
}

fn skipped(message: &str) -> TestCaseStatus {
    let mut status = TestCaseStatus::skipped();
    status.set_message(message);
    status
}

fn timestamp(run_start: SystemTime, at: Duration) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::<chrono::Utc>::from(run_start + at).fixed_offset()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::synthetic::{Command, Run, Shard};

    #[test]
    fn each_instance_is_a_testcase_of_its_shard_and_a_failed_boot_an_error_with_harpers_last_lines()
    {
        let commands =
            vec![Command::passing("npm test", 400), Command::passing("npm run e2e", 100)];
        let run = Run::of([Shard::new("auth", commands).with_instances(1)]);
        let xml = render(&run.record()).unwrap();
        for passed in [
            "<testcase name=\"instance i1 (auth tests)\" classname=\"auth\" time=\"0.752\"/>",
            "<testcase name=\"instance main\" classname=\"auth\" time=\"1.640\"/>",
        ] {
            assert!(xml.contains(passed), "{passed} in {xml}");
        }
        let failed = &xml[xml.find("<testcase name=\"instance i2\"").expect("i2's testcase")..];
        let failed = &failed[..failed.find("</testcase>").expect("i2's testcase ends")];
        assert!(
            failed.contains(
                "<error message=\"Harper exited before it was ready: exit code 3\" type=\"infrastructure\">"
            ),
            "{failed}"
        );
        let out =
            &failed[failed.find("<system-out>").expect("Harper's last lines in system-out")..];
        assert!(out.contains("Error: HarperDB failed to start (fake-harper exit=3)"), "{failed}");
        assert!(
            xml.contains("<testsuite name=\"auth\" tests=\"5\" skipped=\"0\" errors=\"1\""),
            "two commands and three instances: {xml}"
        );
    }
}
