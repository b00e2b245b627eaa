//! The console: one plain line per thing worth knowing as it happens, then a table of every
//! shard's phases and, for each failure, its one-line cause and the output that explains it.
//! Written to stderr, so that stdout stays free for `--format json`, and through [`Out`], so
//! that what the lines quote cannot act on the terminal or the CI log.
//!
//! On a terminal ([`Console::live`]) the running shards are live lines instead ([`super::live`])
//! and the status column is coloured, unless `NO_COLOR` is set. With `-q` only failures, errors
//! that stop the run and the final table are shown; with `-v` every command's output too.

use std::collections::HashMap;
use std::io::Write;

use super::live::Bars;
use super::model::{Phases, RunRecord, ShardRecord};
use super::out::Out;
use super::{Reporter, collapse, short};
use crate::run::events::{Event, EventKind, Outcome, ShardStatus};
use crate::supervise::tail::Lines;
use crate::text;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    /// Also relays every command's output as it comes.
    Verbose,
}

pub struct Console {
    out: Out,
    verbosity: Verbosity,
    /// Output lines being relayed, per (shard, command), so that relayed lines are never torn
    /// and never held past the line limit.
    relayed: HashMap<(usize, usize), Lines>,
    /// Live lines for the running shards (on a terminal).
    live: Option<Bars>,
    colour: bool,
    /// When npm's progress was last shown (run time), to show it at a readable pace.
    npm_shown: Option<std::time::Duration>,
}

/// The pace of npm's progress lines without `-v`: enough to show an install is alive.
const NPM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Console {
    /// Plain lines, for logs and pipes.
    pub fn new(out: impl Into<Out>, verbosity: Verbosity) -> Self {
        Console { out: out.into(), verbosity, relayed: HashMap::new(), live: None, colour: false, npm_shown: None }
    }

    /// Live lines for the running shards and, with `colour`, a coloured status column.
    pub fn live(out: impl Into<Out>, verbosity: Verbosity, colour: bool) -> Self {
        let out = out.into();
        let live = (verbosity != Verbosity::Quiet).then(Bars::new);
        if let Some(bars) = &live {
            out.draw_above(Some(bars.multi()));
        }
        Console { out, verbosity, relayed: HashMap::new(), live, colour, npm_shown: None }
    }

    fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", text.as_ref());
    }

    fn relay(&mut self, shard: &str, key: (usize, usize), bytes: &[u8]) {
        let mut complete = Vec::new();
        self.relayed.entry(key).or_default().feed(bytes, |line| complete.push(line));
        for line in complete {
            self.line(format!("[{shard}] {line}"));
        }
    }
}

impl Reporter for Console {
    fn event(&mut self, event: &Event, record: &RunRecord) {
        let name = |s: usize| record.shards[s].name.clone();
        if let Some(bars) = &mut self.live {
            bars.update(&event.kind, record);
        }
        // The live lines show what these would say.
        let quiet = self.verbosity == Verbosity::Quiet;
        let verbose = self.verbosity == Verbosity::Verbose;
        let progress = !quiet && self.live.is_none();
        match &event.kind {
            EventKind::RunStarted { shards, concurrency, .. } if !quiet => {
                self.line(format!("harper-shard: {} shard(s), {} at a time", shards.len(), (*concurrency).min(shards.len())));
            }
            EventKind::Installing { package } if !quiet => {
                self.line(format!("harper-shard: installing {package} into the cache (once; later runs reuse it)…"));
            }
            EventKind::InstallOutput { line } if !quiet => {
                let due = self.npm_shown.is_none_or(|shown| event.at >= shown + NPM_EVERY);
                if verbose || due {
                    self.npm_shown = Some(event.at);
                    self.line(format!("  npm: {line}"));
                }
            }
            EventKind::Installed { package, took, cached: false } if !quiet => {
                self.line(format!("harper-shard: installed {package} in {}", short(*took)));
            }
            EventKind::Warning { shard, message } if !quiet => {
                let who = shard.map(|s| format!("[{}] ", name(s))).unwrap_or_default();
                self.line(format!("warning: {who}{message}"));
            }
            EventKind::RunFailed { message } => self.line(format!("error: {message}")),
            EventKind::AddressAcquired { shard, addr } if progress => self.line(format!("[{}] {addr} acquired", name(*shard))),
            EventKind::TemplateBuilding { shard } if progress => {
                self.line(format!("[{}] building the boot template (once per Harper and settings)", name(*shard)));
            }
            EventKind::TemplateBuilt { shard, took } if progress => {
                self.line(format!("[{}] boot template built in {}", name(*shard), short(*took)));
            }
            EventKind::BootReady { shard } if progress => {
                let boot = record.shards[*shard].phases.took(super::model::Phase::Boot).map(short).unwrap_or_default();
                self.line(format!("[{}] Harper ready in {boot}", name(*shard)));
            }
            EventKind::BootFailed { shard, cause, .. } => self.line(format!("[{}] boot failed: {cause}", name(*shard))),
            EventKind::CommandStarted { shard, command, .. } if progress => {
                let cmd = &record.shards[*shard].commands[*command].command;
                self.line(format!("[{}] $ {cmd}", name(*shard)));
            }
            EventKind::CommandOutput { shard, command, bytes, .. } if verbose => {
                self.relay(&name(*shard), (*shard, *command), bytes);
            }
            EventKind::CommandFinished { shard, command, .. } => {
                // The last line, if the command's output did not end with one.
                if let Some(rest) = self.relayed.remove(&(*shard, *command)).and_then(|mut l| l.finish()) {
                    self.line(format!("[{}] {rest}", name(*shard)));
                }
            }
            EventKind::ShardFinished { shard, status, cause } if !quiet || !record.shards[*shard].ok() => {
                let s = &record.shards[*shard];
                let took = s.phases.total().map(short).unwrap_or_default();
                let why = cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default();
                let label = paint(*status, status.label(), self.colour);
                self.line(format!("[{}] {label} in {took}{why}", s.name));
            }
            EventKind::Cancelling { signal } if !quiet => {
                self.line(format!("harper-shard: {signal} received: tearing every shard down (send it again to kill at once)"));
            }
            EventKind::RunTimedOut { after } => {
                let after = humantime::format_duration(*after);
                self.line(format!("harper-shard: the run's timeout ({after}) ran out: tearing every running shard down, starting no more"));
            }
            _ => {}
        }
    }

    fn finish(&mut self, record: &RunRecord) -> anyhow::Result<()> {
        if let Some(bars) = &mut self.live {
            bars.clear();
            self.out.draw_above(None);
        }
        for shard in record.failed() {
            explain(&mut self.out, shard)?;
        }
        write_table(&mut self.out, record, self.colour)?;
        self.out.flush()?;
        Ok(())
    }
}

/// The cause of a failed shard and the tail of the output that explains it.
fn explain(out: &mut impl Write, shard: &ShardRecord) -> std::io::Result<()> {
    writeln!(out, "\n── {} ──", shard.name)?;
    if let Some(cause) = &shard.cause {
        writeln!(out, "{cause}")?;
    }
    let (command, tail) = shard.failure_tail();
    if !tail.is_empty() {
        match command {
            Some(c) => writeln!(out, "last lines of `{}`:", clip(c, 60))?,
            None => writeln!(out, "last lines of Harper's output:")?,
        }
        for line in collapse(tail) {
            writeln!(out, "  | {line}")?;
        }
    }
    writeln!(out, "logs: {}", shard.log_dir.display())
}

/// The most of an instance's name, or of the problem it reports, shown in the table.
const INSTANCE_CHARS: usize = 40;
const PROBLEM_CHARS: usize = 100;

fn write_table(out: &mut impl Write, record: &RunRecord, colour: bool) -> std::io::Result<()> {
    let [wait, boot, commands, teardown, total] = Phases::COLUMNS;
    let headers = ["shard", "address", wait, boot, commands, teardown, total, "status"];
    let dash = || "-".to_owned();
    let rows: Vec<[String; 8]> = record
        .shards
        .iter()
        .map(|s| {
            let [wait, boot, commands, teardown, total] = s.phases.columns().map(|x| x.map(short).unwrap_or_else(dash));
            [
                s.name.clone(),
                s.address.map(|a| a.to_string()).unwrap_or_else(dash),
                wait,
                boot,
                commands,
                teardown,
                total,
                s.status.map(|st| st.label().to_owned()).unwrap_or_else(|| "unfinished".into()),
            ]
        })
        .collect();
    // An instance's row reads like its shard's: its boots (added up, ×N) under `boot`, its
    // time up under `commands`, its release under `teardown`, address to release under
    // `total`, and how each life ended under `status`.
    let instance_rows: Vec<Vec<([String; 8], Vec<&str>)>> = record
        .shards
        .iter()
        .map(|s| {
            s.instances
                .iter()
                .map(|i| {
                    let row = [
                        format!("  {}", clip(&i.label(), INSTANCE_CHARS)),
                        i.address.map(|a| a.to_string()).unwrap_or_else(dash),
                        String::new(),
                        super::boots_text(i),
                        i.up_time().map(short).unwrap_or_else(dash),
                        i.release_span().map(|(a, b)| short(b - a)).unwrap_or_else(dash),
                        i.total().map(short).unwrap_or_else(dash),
                        super::ending(i),
                    ];
                    (row, i.problems())
                })
                .collect()
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in rows.iter().chain(instance_rows.iter().flatten().map(|(row, _)| row)) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    writeln!(out)?;
    let fmt_row = |cells: &[String]| {
        cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", fmt_row(&headers.map(str::to_owned)))?;
    for ((row, shard), instances) in rows.iter().zip(&record.shards).zip(&instance_rows) {
        // Padding is measured on the plain text; the colour goes around the padded cell.
        let line = fmt_row(row);
        match shard.status {
            Some(status) if colour => {
                let at = line.len() - row[7].len();
                writeln!(out, "{}{}", &line[..at], paint(status, &row[7], true))?;
            }
            _ => writeln!(out, "{line}")?,
        }
        // A shard of several commands gets a line per command under its `commands` column.
        if shard.commands.len() > 1 {
            let indent = widths[..4].iter().map(|w| w + 2).sum::<usize>();
            for c in shard.commands.iter().filter(|c| c.started.is_some()) {
                let took = c.started.zip(c.finished).map(|(a, b)| short(b.saturating_sub(a))).unwrap_or_else(|| "-".into());
                let how = match &c.outcome {
                    Some(Outcome::Passed) => String::new(),
                    Some(o) => format!("  ({})", super::outcome_text(o)),
                    None => "  (unfinished)".into(),
                };
                writeln!(out, "{:indent$}{took:<w$}  $ {}{how}", "", clip(&c.command, 60), w = widths[4])?;
            }
        }
        for (row, problems) in instances {
            let head = fmt_row(&row[..7]);
            let at = widths[..7].iter().map(|w| w + 2).sum::<usize>();
            let status = if problems.is_empty() {
                row[7].clone()
            } else {
                let status = format!("{:<w$}  {}", row[7], clip(&problems.join("; "), PROBLEM_CHARS), w = widths[7]);
                paint(ShardStatus::Infrastructure, &status, colour)
            };
            writeln!(out, "{head:<at$}{status}")?;
        }
    }
    let passed = record.shards.iter().filter(|s| s.status.is_some_and(|st| st.exit().code() == 0)).count();
    writeln!(
        out,
        "\n{passed} of {} shard(s) passed in {} (exit {})",
        record.shards.len(),
        short(record.duration),
        record.exit_code.map_or("?".into(), |c| c.to_string())
    )
}

/// `text` on one line, cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    let one_line = text::one_line(text);
    match one_line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &one_line[..at]),
        None => one_line,
    }
}

/// `text` in the colour of `status` (green, red, yellow) when `colour` is on.
pub fn paint(status: ShardStatus, text: &str, colour: bool) -> String {
    if !colour {
        return text.to_owned();
    }
    let code = match status {
        ShardStatus::Passed => "32",
        ShardStatus::Failed | ShardStatus::BootFailed | ShardStatus::Infrastructure => "1;31",
        ShardStatus::Cancelled | ShardStatus::Skipped => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Colour is allowed unless `NO_COLOR` is set to anything but the empty string (no-color.org).
pub fn colour_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
    no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_set_to_anything_turns_colour_off() {
        assert!(colour_allowed(None));
        assert!(colour_allowed(Some("".as_ref())));
        assert!(!colour_allowed(Some("1".as_ref())));
    }

    #[test]
    fn statuses_are_painted_only_when_colour_is_on() {
        assert_eq!(paint(ShardStatus::Failed, "FAILED", false), "FAILED");
        assert_eq!(paint(ShardStatus::Failed, "FAILED", true), "\x1b[1;31mFAILED\x1b[0m");
        assert_eq!(paint(ShardStatus::Passed, "passed", true), "\x1b[32mpassed\x1b[0m");
    }
}
