//! The tool's own stdout and stderr. Every line a command prints goes through here, so that a
//! reader that stops early (`harper-shard matrix | head -1`) ends the output quietly instead of
//! panicking the tool, as `println!` does on a closed pipe.
//!
//! Not done by restoring SIGPIPE's default action: that would also kill the tool in the middle
//! of a run, with shards still to tear down, when any pipe it writes to closes.

use std::fmt::Display;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to stdout. Once a write fails (the reader went away, the disk
/// is full), this and every later write are dropped; a failure other than a closed pipe is said
/// once on stderr.
pub fn println(text: impl Display) {
    print(format_args!("{text}\n"));
}

/// Writes `text` to stdout, as [`println`] does, without the newline.
pub fn print(text: impl Display) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = write!(out, "{text}").and_then(|()| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln(format_args!("harper-shard: cannot write to stdout: {e}"));
        }
    }
}

/// Writes `text` and a newline to stderr; if stderr is gone, there is no one left to tell.
pub fn eprintln(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}
