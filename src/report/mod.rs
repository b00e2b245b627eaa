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
pub mod say;
pub mod summary;
pub mod warning;

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
    let runs: Vec<String> = runs.iter().map(|(end, n)| if *n == 1 { (*end).to_owned() } else { format!("{end} ×{n}") }).collect();
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
    let mut line = format!("{}{addr}: {} — {}", instance.label(), took.join(" · "), ending(instance));
    let problems = instance.problems();
    if !problems.is_empty() {
        line.push_str(&format!(": {}", problems.join("; ")));
    }
    line
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
    fn an_instances_ending_says_how_each_life_ended_with_repeats_counted() {
        let life = |ended_by: Option<&'static str>, failed: bool| model::LifeRecord {
            ended_by,
            boot_failure: failed.then(|| "exit code 3".to_owned()),
            ..Default::default()
        };
        let lives = vec![life(Some("stop"), false), life(Some("stop"), false), life(Some("kill"), false), life(None, true), life(None, false)];
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

    #[test]
    fn collapse_folds_repeated_lines_and_keeps_the_rest() {
        let lines: Vec<String> = ["a", "b", "b", "b", "c", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            collapse(&lines),
            vec!["a", "b", "  … (previous line repeated 2 more times)", "c", "  … (previous line repeated 1 more times)"]
        );
    }
}
