//! What the commands say besides a run's reporters: their answers on stdout (`pool status`'s
//! table, `matrix`'s JSON, the dry run, `ctl`'s lines), their notes and warnings on stderr, the
//! final `error:` line, and clap's usage errors and help. All of it leaves through [`out`], so that a process name, a path or
//! a shard name quoted in it is neutralised and, under GitHub Actions, cannot be read as a
//! workflow command — on stdout too, which the runner reads as well.
//!
//! `-q` drops the notes and warnings; never an answer, a line that explains an error, or the
//! error. Under GitHub Actions a warning is an annotation (its own workflow command) instead.
//!
//! Not for: what happens during a run, which are events that the reporters render.

use std::fmt::Display;
use std::io::Write;

use serde::Serialize;

use super::out;
use super::policy::Policy;
use super::workflow::Note;

/// How much the commands say, and where: the process's output policy.
#[derive(Debug, Clone, Copy)]
pub struct Say {
    policy: Policy,
}

impl Say {
    pub fn new(policy: Policy) -> Say {
        Say { policy }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn quiet(&self) -> bool {
        self.policy.quiet()
    }

    /// An answer on stdout: any number of lines, the last one ended if `text` does not end it.
    pub fn answer(&self, text: impl Display) {
        let mut out = out::stdout();
        let _ = write!(out, "{text}");
        let _ = out.flush();
    }

    /// A line on stderr that is always said: what explains an error, or what a command did.
    pub fn always(&self, text: impl Display) {
        let _ = writeln!(out::stderr(), "{text}");
    }

    /// `harper-shard: note: …` on stderr, not under `-q`.
    pub fn note(&self, text: impl Display) {
        if !self.quiet() {
            self.always(format_args!("harper-shard: note: {text}"));
        }
    }

    /// A warning titled `title`: under GitHub Actions an annotation, elsewhere
    /// `harper-shard: warning: …` on stderr unless `-q`.
    pub fn warning(&self, title: &str, text: impl Display) {
        if self.policy.github {
            let note = Note { title: title.to_owned(), message: text.to_string(), at: None };
            let _ = out::stderr().command(&note.command("warning"));
        } else if !self.quiet() {
            self.always(format_args!("harper-shard: warning: {text}"));
        }
    }
}

/// The last line of a command that failed, on stderr, whatever `-q` says.
pub fn error(failure: impl Display) {
    let _ = writeln!(out::stderr(), "error: {failure}");
}

/// What clap says — a usage error, or the help or version asked for — through the same door as
/// every other line: a value it quotes from the command line or a `HARPER_SHARD_*` variable is
/// neutralised too. Returns clap's exit status for it (2 for a usage error, 0 for help).
pub fn clap(said: &clap::Error) -> u8 {
    let text = said.render();
    let mut to = if said.use_stderr() { out::stderr() } else { out::stdout() };
    let _ = if to.colour() { write!(to, "{}", text.ansi()) } else { write!(to, "{text}") };
    let _ = to.flush();
    u8::try_from(said.exit_code()).unwrap_or(2)
}

/// `value` as JSON that says nothing but its data to whoever shows it: besides the controls JSON
/// escapes anyway, DEL and the C1 controls are written as `\u` escapes (instead of being shown
/// as stand-ins, which would change the value), and `##[` as `#\u0023[`, so that GitHub's
/// runner finds no old-style workflow command in it. `#` and those controls only ever occur
/// inside JSON strings, where the escapes mean the same characters.
pub fn json(value: &impl Serialize, pretty: bool) -> String {
    let text =
        if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    let text = text.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string());
    let mut safe = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{7f}' | '\u{80}'..='\u{9f}' => safe.push_str(&format!("\\u{:04x}", u32::from(c))),
            '[' if safe.ends_with("##") => {
                safe.pop();
                safe.push_str("\\u0023[");
            }
            c => safe.push(c),
        }
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_hides_old_style_commands_and_raw_controls_and_keeps_the_value() {
        let value =
            serde_json::json!({ "name": "a##[error]b ###[x] \u{7f}\u{9b}2J \r::warning::x" });
        let text = json(&value, false);
        assert!(!text.contains("##["), "{text}");
        assert!(!text.contains(['\u{7f}', '\u{9b}', '\r']), "{text:?}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value, "the same value: {text}");
    }
}
