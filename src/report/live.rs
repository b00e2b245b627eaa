//! The console's live lines on a terminal: one spinner line per running shard with its name,
//! address, phase and elapsed time, redrawn in place; other lines print above them.
//!
//! Only for a TTY: off a terminal (CI logs, pipes) the console prints plain lines instead,
//! because redrawn lines turn into noise in a log file.
//!
//! indicatif draws these lines itself, not through [`super::out::Out`], so the names and
//! commands they show are neutralised here, where they are handed over; every other line is
//! written through `Out`, above the live lines ([`Bars::multi`]).

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::model::{OwnBoot, RunRecord};
use crate::run::events::{EventKind, ShardId};
use crate::text;

pub struct Bars {
    multi: MultiProgress,
    bars: HashMap<ShardId, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    /// `colour`: the console's one decision (`NO_COLOR`), for the live lines too.
    pub fn new(colour: bool) -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: HashMap::new(),
            style: style(colour),
        }
    }

    /// The lines' drawing, for writing other lines above them.
    pub fn multi(&self) -> MultiProgress {
        self.multi.clone()
    }

    /// Moves the shard's live line on to the phase `kind` starts.
    pub fn update(&mut self, kind: &EventKind, record: &RunRecord) {
        if let EventKind::ShardFinished { shard, .. } = kind {
            if let Some(bar) = self.bars.remove(shard) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            return;
        }
        let Some((shard, phase)) = phase(kind, record) else { return };
        let bar = self.bars.entry(shard).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner().with_style(self.style.clone()));
            bar.set_prefix(text::one_line(&record.shards[shard].name));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(text::one_line(&line(record, shard, &phase)));
    }

    /// Removes every live line, before the final table.
    pub fn clear(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// The shard whose live line `kind` moves on, and the phase it says; `record` has taken `kind` in.
fn phase(kind: &EventKind, record: &RunRecord) -> Option<(ShardId, String)> {
    let (shard, phase) = match kind {
        EventKind::ShardStarted { shard } => (*shard, "waiting for an address".to_owned()),
        EventKind::AttemptStarted { shard, attempt, retrying: Some(cause), .. } => {
            (*shard, format!("{}: {cause}", super::retrying("", *attempt)))
        }
        EventKind::Instance { .. } => match record.own_boot(kind)? {
            (shard, OwnBoot::Acquired(_)) => (shard, "booting Harper".to_owned()),
            (shard, OwnBoot::Ready) => {
                let waits = record.shards[shard].last().phases.waits_for_turn();
                let ready = if waits { "Harper ready, waiting for a turn" } else { "Harper ready" };
                (shard, ready.to_owned())
            }
            _ => return None,
        },
        EventKind::CommandStarted { shard, command, .. } => {
            let commands = &record.shards[*shard].last().commands;
            let line = &commands[*command].command;
            (*shard, format!("$ {line} ({}/{})", command + 1, commands.len()))
        }
        EventKind::TeardownStarted { shard, .. } => (*shard, "tearing down".to_owned()),
        _ => return None,
    };
    Some((shard, phase))
}

/// A live line: spinner, the shard's name — bold only with `colour`, so that it is the console's
/// decision and not indicatif's own reading of the environment (which takes `CLICOLOR_FORCE`
/// over `NO_COLOR`) — what it is doing, and for how long.
pub fn style(colour: bool) -> ProgressStyle {
    let template = if colour {
        "{spinner} {prefix:.bold} {wide_msg} {elapsed:>4}"
    } else {
        "{spinner} {prefix} {wide_msg} {elapsed:>4}"
    };
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// What a live line says after the shard's name: its address (once it has one) and its phase.
pub fn line(record: &RunRecord, shard: ShardId, phase: &str) -> String {
    match record.shards[shard].last().address() {
        Some(addr) => format!("{addr:<15} {phase}"),
        None => format!("{:<15} {phase}", "-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::synthetic::{Run, Shard};

    #[test]
    fn only_an_attempt_still_without_its_turn_says_it_waits_for_one() {
        // Booted ahead, had its turn, failed; the retry keeps the turn and waits for none.
        let run =
            Run::of([Shard::failing("b", &["not ok 1"]).booted_ahead(Some(500)).then_passing(100)]);
        let mut record = RunRecord::new();
        let mut said = Vec::new();
        for event in run.events() {
            record.apply(&event);
            if let Some((_, phase)) = phase(&event.kind, &record)
                && phase.starts_with("Harper ready")
            {
                said.push(phase);
            }
        }
        assert_eq!(said, ["Harper ready, waiting for a turn", "Harper ready"]);
    }
}
