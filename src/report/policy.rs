//! The output policy: whether this is a GitHub Actions step, whether lines are drawn live and in
//! colour, and how much is said. `main` decides it once, from the flags and the environment, and
//! hands it down ([`super::out::init`], [`super::say::Say`], the run's reporters), so that no
//! module below asks the environment again and two of them cannot disagree.
//!
//! Not for: how a line is made safe ([`super::out`]), or what a reporter says.

use std::io::IsTerminal;

use super::workflow;

/// How much the tool says on stderr, after `-q`, `-v` and their variables are reconciled
/// (`cli::Cli::verbosity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Notes and warnings dropped; answers, errors and what explains them kept.
    Quiet,
    #[default]
    Normal,
    /// `-v` (1) or `-vv` (2 and more): tracing's debug or trace lines, and every command's
    /// output relayed as it comes.
    Verbose(u8),
}

/// How this process prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A GitHub Actions step: lines the runner could take for workflow commands are framed, and
    /// warnings are annotations.
    pub github: bool,
    /// Live lines for the running shards: stderr is a terminal, and not GitHub's log.
    pub live: bool,
    /// Colour on stderr: live, and `NO_COLOR` unset or empty.
    pub colour: bool,
    pub verbosity: Verbosity,
}

impl Policy {
    /// The policy this process's environment gives: `GITHUB_ACTIONS`, whether stderr is a
    /// terminal, and `NO_COLOR`.
    pub fn detect(verbosity: Verbosity) -> Policy {
        Policy::from_facts(
            workflow::detected(),
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
            verbosity,
        )
    }

    /// The policy from the facts [`Policy::detect`] reads.
    pub fn from_facts(
        github: bool,
        terminal: bool,
        no_color: Option<&std::ffi::OsStr>,
        verbosity: Verbosity,
    ) -> Policy {
        let live = terminal && !github;
        Policy { github, live, colour: live && colour_allowed(no_color), verbosity }
    }

    /// Notes and warnings are dropped.
    pub fn quiet(&self) -> bool {
        self.verbosity == Verbosity::Quiet
    }
}

/// Colour is allowed unless `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour_allowed(no_color: Option<&std::ffi::OsStr>) -> bool {
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
    fn only_a_terminal_outside_github_gets_live_lines_and_colour() {
        let normal = Verbosity::Normal;
        let terminal = Policy::from_facts(false, true, None, normal);
        assert!(terminal.live && terminal.colour);
        let github = Policy::from_facts(true, true, None, normal);
        assert!(!github.live && !github.colour, "GitHub's log is not a terminal to draw on");
        let piped = Policy::from_facts(false, false, None, normal);
        assert!(!piped.live && !piped.colour);
        let no_color = Policy::from_facts(false, true, Some("1".as_ref()), normal);
        assert!(no_color.live && !no_color.colour);
    }
}
