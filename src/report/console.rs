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
use super::model::{InstanceRecord, OwnBoot, Phase, Phases, RunRecord, ShardRecord};
use super::out::Out;
use super::policy::Verbosity;
use super::{Reporter, collapse, short};
use crate::run::events::{Event, EventKind, Outcome, ShardId, ShardStatus};
use crate::supervise::tail::Lines;
use crate::table::{self, Table};
use crate::text;

pub struct Console {
    out: Out,
    verbosity: Verbosity,
    /// Output lines being relayed, per (shard, command), so that relayed lines are never torn
    /// and never held past the line limit.
    relayed: HashMap<(ShardId, usize), Lines>,
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
        Console {
            out: out.into(),
            verbosity,
            relayed: HashMap::new(),
            live: None,
            colour: false,
            npm_shown: None,
        }
    }

    /// Live lines for the running shards and, with `colour`, a coloured status column.
    pub fn live(out: impl Into<Out>, verbosity: Verbosity, colour: bool) -> Self {
        let out = out.into();
        let live = (verbosity != Verbosity::Quiet).then(|| Bars::new(colour));
        if let Some(bars) = &live {
            out.draw_above(Some(bars.multi()));
        }
        Console { out, verbosity, relayed: HashMap::new(), live, colour, npm_shown: None }
    }

    fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", text.as_ref());
    }

    fn relay(&mut self, shard: &str, key: (ShardId, usize), bytes: &[u8]) {
        let mut complete = Vec::new();
        self.relayed.entry(key).or_default().feed(bytes, |line| complete.push(line));
        for line in complete {
            self.line(format!("[{shard}] {line}"));
        }
    }
}

impl Reporter for Console {
    fn event(&mut self, event: &Event, record: &RunRecord) {
        let name = |s: ShardId| record.shards[s].name.clone();
        if let Some(bars) = &mut self.live {
            bars.update(&event.kind, record);
        }
        // The live lines show what these would say.
        let quiet = self.verbosity == Verbosity::Quiet;
        let verbose = matches!(self.verbosity, Verbosity::Verbose(_));
        let progress = !quiet && self.live.is_none();
        match &event.kind {
            EventKind::RunStarted { shards, concurrency, .. } if !quiet => {
                self.line(format!(
                    "harper-shard: {} shard(s), {} at a time",
                    shards.len(),
                    (*concurrency).min(shards.len())
                ));
            }
            EventKind::Installing { package } if !quiet => {
                self.line(format!(
                    "harper-shard: installing {package} into the cache (once; later runs reuse it)…"
                ));
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
            EventKind::Warning { shard, warning } if !quiet => {
                let who = shard.map(|s| format!("[{}] ", name(s))).unwrap_or_default();
                self.line(format!("warning: {who}{warning}"));
            }
            EventKind::RunFailed { message } => self.line(format!("error: {message}")),
            EventKind::Instance { .. } => match record.own_boot(&event.kind) {
                Some((shard, OwnBoot::Acquired(addr))) if progress => {
                    self.line(format!("[{}] {addr} acquired", name(shard)))
                }
                Some((shard, OwnBoot::Ready)) if progress => {
                    let boot = record.shards[shard]
                        .last()
                        .phases
                        .took(Phase::BOOT)
                        .map(short)
                        .unwrap_or_default();
                    self.line(format!("[{}] Harper ready in {boot}", name(shard)));
                }
                Some((shard, OwnBoot::Failed(cause))) => {
                    self.line(format!("[{}] boot failed: {cause}", name(shard)))
                }
                _ => {}
            },
            EventKind::AttemptStarted { shard, attempt, retrying: Some(cause), .. } if !quiet => {
                self.line(format!("{}: {cause}", super::retrying(&name(*shard), *attempt)));
            }
            EventKind::TemplateBuilding { shard, .. } if progress => {
                self.line(format!(
                    "[{}] building the boot template (once per Harper and settings)",
                    name(*shard)
                ));
            }
            EventKind::TemplateBuilt { shard, took, .. } if progress => {
                self.line(format!("[{}] boot template built in {}", name(*shard), short(*took)));
            }
            EventKind::CommandStarted { shard, command, .. } if progress => {
                let cmd = &record.shards[*shard].last().commands[*command].command;
                self.line(format!("[{}] $ {cmd}", name(*shard)));
            }
            EventKind::CommandOutput { shard, command, bytes, .. } if verbose => {
                self.relay(&name(*shard), (*shard, *command), bytes);
            }
            EventKind::CommandFinished { shard, command, .. } => {
                // The last line, if the command's output did not end with one.
                if let Some(rest) =
                    self.relayed.remove(&(*shard, *command)).and_then(|mut l| l.finish())
                {
                    self.line(format!("[{}] {rest}", name(*shard)));
                }
            }
            EventKind::ShardFinished { shard, status, cause }
                if !quiet || !record.shards[*shard].ok() =>
            {
                let s = &record.shards[*shard];
                // A shard that never started has no time to tell.
                let took = s.last().phases.total().map(|t| format!(" in {}", short(t)));
                let why = cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default();
                let label = paint(*status, status.label(), self.colour);
                self.line(format!("[{}] {label}{}{why}", s.name, took.unwrap_or_default()));
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
        for shard in record.shards.iter().filter(|s| s.status == Some(ShardStatus::Flaky)) {
            writeln!(self.out, "\nflaky: {}: {}", shard.name, super::flaky_line(shard))?;
        }
        for shard in record.shards.iter().filter(|s| s.status == Some(ShardStatus::Quarantined)) {
            writeln!(self.out, "\nquarantined: {}: {}", shard.name, super::quarantine_line(shard))?;
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
    let dash = || "-".to_owned();
    let header: Vec<&str> =
        ["shard", "address"].into_iter().chain(Phases::column_labels()).chain(["status"]).collect();
    // The phases' columns follow the shard and its address; the status is the last.
    let phase_column = |phase: Phase| 2 + Phase::ALL.iter().position(|p| *p == phase).unwrap_or(0);
    let status = header.len() - 1;
    let rows: Vec<Vec<String>> = record
        .shards
        .iter()
        .map(|s| {
            let mut row = vec![
                s.name.clone(),
                s.last().address().map(|a| a.to_string()).unwrap_or_else(dash),
            ];
            row.extend(
                s.last().phases.columns().into_iter().map(|x| x.map(short).unwrap_or_else(dash)),
            );
            row.push(
                s.status.map(|st| st.label().to_owned()).unwrap_or_else(|| "unfinished".into()),
            );
            row
        })
        .collect();
    let instance_rows: Vec<Vec<(Vec<String>, Vec<&str>)>> = record
        .shards
        .iter()
        .map(|s| {
            s.last()
                .shown_instances()
                .map(|i| {
                    let mut row = vec![
                        format!("  {}", clip(&i.label(), INSTANCE_CHARS)),
                        i.address.map(|a| a.to_string()).unwrap_or_else(dash),
                    ];
                    row.extend(Phase::ALL.iter().map(|p| instance_cell(*p, i)));
                    row.push(i.total().map(short).unwrap_or_else(dash));
                    row.push(super::ending(i));
                    (row, i.problems())
                })
                .collect()
        })
        .collect();
    let mut table = Table::new(&header);
    for row in rows.iter().chain(instance_rows.iter().flatten().map(|(row, _)| row)) {
        table.fit(row);
    }
    writeln!(out)?;
    writeln!(out, "{}", table.line(&header))?;
    for ((row, shard), instances) in rows.iter().zip(&record.shards).zip(&instance_rows) {
        // Measured plain above; the colour goes around the status, the last cell, unpadded.
        match shard.status {
            Some(st) if colour => {
                let mut painted = row.clone();
                painted[status] = paint(st, &row[status], true);
                writeln!(out, "{}", table.line(&painted))?;
            }
            _ => writeln!(out, "{}", table.line(row))?,
        }
        // A shard of several commands gets a line per command under its `commands` column.
        let commands = &shard.last().commands;
        if commands.len() > 1 {
            let column = phase_column(Phase::COMMANDS);
            let indent = table.start(column);
            for c in commands.iter().filter(|c| c.started.is_some()) {
                let took = c
                    .started
                    .zip(c.finished)
                    .map(|(a, b)| short(b.saturating_sub(a)))
                    .unwrap_or_else(|| "-".into());
                let how = match &c.outcome {
                    Some(Outcome::Passed) => String::new(),
                    Some(o) => format!("  ({})", super::outcome_text(o)),
                    None => "  (unfinished)".into(),
                };
                writeln!(
                    out,
                    "{:indent$}{}  $ {}{how}",
                    "",
                    table::pad(&took, table.width(column)),
                    clip(&c.command, 60)
                )?;
            }
        }
        // What an instance's release or stops could not confirm runs on after its status.
        for (row, problems) in instances {
            let mut cells = row.clone();
            if !problems.is_empty() {
                let text = format!(
                    "{}  {}",
                    table::pad(&row[status], table.width(status)),
                    clip(&problems.join("; "), PROBLEM_CHARS)
                );
                cells[status] = paint(ShardStatus::Infrastructure, &text, colour);
            }
            writeln!(out, "{}", table.line(&cells))?;
        }
    }
    let count = |status| record.shards.iter().filter(|s| s.status == Some(status)).count();
    let quarantined = count(ShardStatus::Quarantined);
    let passed = record.shards.iter().filter(|s| s.ok()).count() - quarantined;
    let notes: Vec<String> =
        [(count(ShardStatus::Flaky), "flaky"), (quarantined, "failed but quarantined")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
    let flaky = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
    writeln!(
        out,
        "\n{passed} of {} shard(s) passed{flaky} in {} (exit {})",
        record.shards.len(),
        short(record.duration),
        record.exit_code.map_or("?".into(), |c| c.to_string())
    )
}

/// An instance's row reads like its shard's: its boots (added up, ×N) under `boot`, its time
/// up under `commands`, its release under `teardown`; address to release is its `total`, and
/// how each life ended its `status`. A phase an instance has no part in stays blank.
fn instance_cell(phase: Phase, i: &InstanceRecord) -> String {
    let dash = || "-".to_owned();
    if phase == Phase::BOOT {
        super::boots_text(i)
    } else if phase == Phase::COMMANDS {
        i.up_time().map(short).unwrap_or_else(dash)
    } else if phase == Phase::TEARDOWN {
        i.release_span().map(|(a, b)| short(b - a)).unwrap_or_else(dash)
    } else {
        String::new()
    }
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
        ShardStatus::Flaky
        | ShardStatus::Quarantined
        | ShardStatus::Cancelled
        | ShardStatus::Skipped => "33",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lines_up_names_that_take_two_columns_a_character() {
        use crate::run::events::InstancePhase;
        let run = super::super::tests::distinct_phases();
        let (events, mut record) = (run.events(), run.record());
        let EventKind::ShardStarted { shard } = events[1].kind else {
            panic!("the second event starts the shard")
        };
        let at = std::time::Duration::from_millis(400);
        for (id, name) in [("i1", "認証テスト 🚀"), ("i2", "cafe\u{301}")] {
            let phase = InstancePhase::Acquired {
                name: name.into(),
                addr: std::net::Ipv4Addr::new(127, 0, 0, 9),
            };
            let attempt = crate::run::events::Attempt::first(1);
            record.apply(&Event {
                at,
                kind: EventKind::Instance { shard, attempt, id: id.into(), phase },
            });
        }
        let mut out = Vec::new();
        write_table(&mut out, &record, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> =
            text.lines().filter(|l| l.starts_with("shard ") || l.contains(" 127.0.0.")).collect();
        assert_eq!(lines.len(), 4, "{text}");
        // Measured here, not by the table's own rule: the terminal's columns.
        let columns = |s: &str| unicode_width::UnicodeWidthStr::width(s);
        let address_at: Vec<usize> = lines
            .iter()
            .map(|l| columns(&l[..l.find("address").or(l.find("127.")).unwrap()]))
            .collect();
        assert!(
            address_at.iter().all(|&w| w == address_at[0]),
            "the address column starts at {address_at:?}:\n{text}"
        );
    }

    use crate::report::synthetic::{Command, Run, Shard, console_of};

    /// The final table's lines, its header first.
    fn table_of(console: &str) -> Vec<&str> {
        console.lines().skip_while(|l| !l.starts_with("shard ")).collect()
    }

    #[test]
    fn the_final_table_times_each_command_of_a_shard_that_has_several() {
        let commands = vec![
            Command::passing("true", 100),
            Command::passing("echo second", 200),
            Command::failing("exit 4", 300, 4, &[]),
        ];
        let console =
            console_of(&Run::of([Shard::new("multi", commands)]).events(), Verbosity::Normal);
        let table = table_of(&console);
        let commands_at = table[0].find("commands").expect("a commands column");
        let lines: Vec<&str> = table.iter().filter(|l| l.contains("  $ ")).copied().collect();
        assert_eq!(lines.len(), 3, "{console}");
        for (line, (command, took)) in
            lines.iter().zip([("true", "0.10s"), ("echo second", "0.20s"), ("exit 4", "0.30s")])
        {
            assert!(
                line[..commands_at].trim().is_empty(),
                "the time sits under `commands`: {line:?}"
            );
            assert_eq!(line[commands_at..].split_whitespace().next(), Some(took), "{line:?}");
            assert!(line.contains(&format!("$ {command}")), "{line:?}");
        }
        assert!(lines[2].ends_with("(failed: exit code 4)"), "{}", lines[2]);
    }

    /// The cells of a table line, cut where the header's columns begin (padding is by
    /// characters).
    fn cells(header: &str, line: &str) -> Vec<String> {
        let header: Vec<char> = header.chars().collect();
        let starts: Vec<usize> = (0..header.len())
            .filter(|&i| header[i] != ' ' && (i == 0 || header[i - 1] == ' '))
            .collect();
        let line: Vec<char> = line.chars().collect();
        let cell = |from: usize, to: usize| {
            let cut = &line[from.min(line.len())..to.min(line.len())];
            cut.iter().collect::<String>().trim().to_owned()
        };
        let mut cells: Vec<String> = starts.windows(2).map(|w| cell(w[0], w[1])).collect();
        cells.push(cell(*starts.last().unwrap(), line.len()));
        cells
    }

    #[test]
    fn each_instance_has_a_row_under_its_shard_with_its_boots_time_up_release_and_end() {
        let run = Run::of([Shard::passing("auth").with_instances(1), Shard::passing("plain")]);
        let console = console_of(&run.events(), Verbosity::Normal);
        let table = table_of(&console);
        let header = table[0];
        let rows: Vec<Vec<String>> =
            table.iter().filter(|l| !l.contains("  $ ")).map(|l| cells(header, l)).collect();
        let names: Vec<&str> =
            rows.iter().map(|r| r[0].as_str()).take_while(|n| !n.is_empty()).collect();
        assert_eq!(
            names,
            ["shard", "auth", "i1 (auth tests)", "main", "i2", "plain"],
            "instances sit under their shard: {console}"
        );
        let row = |name: &str| rows.iter().find(|r| r[0] == name).unwrap();
        // shard, address, wait, boot, commands (time up), teardown (release), total, status (and
        // problem)
        let (i1, main, i2) = (row("i1 (auth tests)"), row("main"), row("i2"));
        assert_eq!(i1[1], "127.0.0.3", "an address of its own: {i1:?}");
        assert_eq!(main[1], row("auth")[1], "main is the shard's address: {main:?}");
        assert!(i1[2].is_empty(), "no wait of its own: {i1:?}");
        assert_eq!(i1[3..7], ["0.50s ×2", "0.20s", "0.03s", "0.75s"], "{i1:?}");
        assert_eq!(main[3..6], ["0.45s ×2", "0.98s", "0.10s"], "{main:?}");
        assert_eq!(i1[7], "stopped, released", "{i1:?}");
        assert_eq!(main[7], "killed, released", "{main:?}");
        assert_eq!(i2[3..5], ["0.10s", "-"], "one boot, never up: {i2:?}");
        assert_eq!(
            i2[7], "boot failed, released  Harper exited before it was ready: exit code 3",
            "{i2:?}"
        );
    }

    #[test]
    fn quiet_shows_only_failures_and_the_table() {
        use crate::run::events::{EventKind, Warning};
        let run = Run::of([Shard::passing("good"), Shard::failing("bad", &["it broke"])]);
        let mut events = run.events();
        let EventKind::ShardStarted { shard } = events[1].kind else {
            panic!("the second event starts the first shard")
        };
        let warning = Warning::PidsNotRecorded { error: "the disk is full".into() };
        let at = events[1].at;
        events.insert(2, Event { at, kind: EventKind::Warning { shard: Some(shard), warning } });
        let loud = console_of(&events, Verbosity::Normal);
        assert!(loud.contains("warning: [good] ") && loud.contains("the disk is full"), "{loud}");

        let quiet = console_of(&events, Verbosity::Quiet);
        assert!(!quiet.contains("warning"), "-q hides warnings: {quiet}");
        assert!(
            !quiet.contains("[good]") && !quiet.contains("acquired"),
            "-q hides what passed and how: {quiet}"
        );
        assert!(
            quiet.contains("[bad] FAILED in")
                && quiet.contains("── bad ──")
                && quiet.contains("  | it broke"),
            "the failure is shown: {quiet}"
        );
        assert!(quiet.contains("1 of 2 shard(s) passed"), "the table is shown: {quiet}");
    }

    #[test]
    fn statuses_are_painted_only_when_colour_is_on() {
        assert_eq!(paint(ShardStatus::Failed, "FAILED", false), "FAILED");
        assert_eq!(paint(ShardStatus::Failed, "FAILED", true), "\x1b[1;31mFAILED\x1b[0m");
        assert_eq!(paint(ShardStatus::Passed, "passed", true), "\x1b[32mpassed\x1b[0m");
    }
}
