//! Exit statuses, and the error type that carries one up to `main`.
//!
//! Callers branch on *what kind* of failure happened (a plan error must start nothing and exit
//! 2; an infrastructure failure exits 3), so the kind travels with the error instead of being
//! guessed from its text.

use std::fmt;

use nix::sys::signal::Signal;

/// The process exit status, as the README's exit-status table documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every shard passed.
    Passed,
    /// A shard's command failed or timed out.
    ShardFailed,
    /// Usage or plan error; nothing was started.
    Usage,
    /// Harper did not start, no address could be had, or teardown was not confirmed.
    Infrastructure,
    /// Cancelled by a signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT): 128 + its number.
    Signalled(Signal),
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::ShardFailed => 1,
            Exit::Usage => 2,
            Exit::Infrastructure => 3,
            Exit::Signalled(signal) => 128u8.saturating_add(signal as i32 as u8),
        }
    }

    /// The worse of two outcomes: cancellation beats infrastructure beats a failed shard.
    pub fn worst(self, other: Exit) -> Exit {
        fn rank(e: Exit) -> u8 {
            match e {
                Exit::Passed => 0,
                Exit::ShardFailed => 1,
                Exit::Usage => 2,
                Exit::Infrastructure => 3,
                Exit::Signalled(_) => 4,
            }
        }
        if rank(other) > rank(self) { other } else { self }
    }
}

/// An error that knows which exit status it means.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure { exit: Exit::Usage, error: error.into() }
    }

    pub fn infrastructure(error: impl Into<anyhow::Error>) -> Self {
        Failure { exit: Exit::Infrastructure, error: error.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Failure {}

/// Unclassified errors are infrastructure failures: something outside the plan went wrong.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        match error.downcast::<Failure>() {
            Ok(failure) => failure,
            Err(error) => Failure::infrastructure(error),
        }
    }
}
