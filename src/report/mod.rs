//! Rendering a run: every reporter sees the same events and the same [`model::RunRecord`]
//! built from them. This is the only module that prints, and all of it goes through
//! [`out::Out`].

pub mod checks;
pub mod console;
pub mod files;
pub mod github;
pub mod harvest;
pub mod junit;
pub mod live;
pub mod model;
pub mod out;
pub mod place;
pub mod plan;
pub mod summary;

use std::io::Write;

use tokio::sync::mpsc;

use crate::run::events::{Event, Outcome};
use model::{Phase, Phases, RunRecord};

/// Something that renders a run.
pub trait Reporter: Send {
    /// Called for every event, after the record has taken it in.
    fn event(&mut self, event: &Event, record: &RunRecord);
    /// Called once, after the last event.
    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()>;
}

/// Feeds every event to every reporter until the run closes the channel; returns the record.
pub async fn consume(mut rx: mpsc::UnboundedReceiver<Event>, mut reporters: Vec<Box<dyn Reporter>>) -> RunRecord {
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
    let took: Vec<String> = Phase::ALL.iter().filter_map(|p| phases.took(*p).map(|d| format!("{} {}", p.label(), short(d)))).collect();
    took.join(" · ")
}

/// "passed", "failed: exit code 3", "timed out after 10m": how a command ended, for people.
pub fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Passed => "passed".into(),
        Outcome::Failed { status } => format!("failed: {status}"),
        Outcome::TimedOut { after } => format!("timed out after {}", humantime::format_duration(*after)),
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
mod tests {
    use super::*;

    #[test]
    fn collapse_folds_repeated_lines_and_keeps_the_rest() {
        let lines: Vec<String> = ["a", "b", "b", "b", "c", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            collapse(&lines),
            vec!["a", "b", "  … (previous line repeated 2 more times)", "c", "  … (previous line repeated 1 more times)"]
        );
    }
}
