//! What the fixture prints: the startup lines, the ready line in its variants, stderr noise and
//! the installer prompt.
//!
//! Every write is flushed at once, because the tool under test reads the pipes as they fill.
//! Write errors are ignored: a reader that went away must not change the server's behaviour.
//! Nothing here except the ready line contains the marker `successfully started`.

use std::io::{Read, Write};

use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};

use crate::args::Question;
use crate::rootpath::RootPath;

pub const READY: &str = "HarperDB 4.7.29 successfully started";

pub fn out_raw(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn out_line(line: &str) {
    out_raw(&format!("{line}\n"));
}

pub fn err_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
    let _ = err.flush();
}

/// A small coloured logo (on a pipe Harper colours only its logo) and two plain lines.
pub fn banner(root: &RootPath) {
    out_line("\x1b[35m  +--------------------------+\x1b[39m");
    out_line("\x1b[35m  |   fake Harper   4.7.29   |\x1b[39m");
    out_line("\x1b[35m  +--------------------------+\x1b[39m");
    out_line("Starting HarperDB...");
    out_line(&format!(
        "fake-harper: pid {}, ROOTPATH {}",
        std::process::id(),
        root.path().display()
    ));
}

pub fn stderr_noise() {
    let pid = std::process::id();
    err_line(&format!("(node:{pid}) ExperimentalWarning: fake-harper stderr noise, not an error"));
    err_line(&format!(
        "(node:{pid}) Use `node --trace-warnings ...` to show where the warning was created"
    ));
    err_line("fake-harper: a third line of stderr noise");
}

pub fn ready_line(ansi: bool) -> String {
    if ansi { format!("\x1b[35m{READY}\x1b[39m\r\n") } else { format!("{READY}\n") }
}

/// Splits the ready line in the middle of `successfully` (`succes` | `sfully`).
pub fn split_ready_line(line: &str) -> (&str, &str) {
    let middle = line.find("successfully").map_or(line.len() / 2, |at| at + "succes".len());
    line.split_at(middle)
}

/// Harper's installer with an answer missing: it asks, and when stdin reaches EOF (as with
/// /dev/null) it dies by SIGINT. With stdin an open pipe it waits forever, as Harper does.
pub fn prompt_and_die(question: Question) -> ! {
    if matches!(question, Question::Terms) {
        out_line("Terms & Conditions can be found at https://example.invalid/fake-harper/terms");
    }
    out_raw(match question {
        Question::Terms => "Please enter 'yes' to accept the Terms & Conditions: ",
        Question::RootPath => "Please enter the destination for Harper data (ROOTPATH): ",
        Question::Username => "Please enter a username for the admin user: ",
        Question::Password => "Please enter a password for the admin user: ",
    });
    drain_stdin();
    die_by_sigint()
}

fn drain_stdin() {
    let mut buf = [0u8; 1024];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
}

fn die_by_sigint() -> ! {
    // SAFETY: restoring the default disposition installs no handler code.
    let _ = unsafe { signal::signal(Signal::SIGINT, SigHandler::SigDfl) };
    let _ = signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&SigSet::from(Signal::SIGINT)), None);
    let _ = signal::raise(Signal::SIGINT);
    std::process::exit(128 + Signal::SIGINT as i32)
}
