//! The one door to stderr and stdout: every line a person reads — the console's, the GitHub
//! reporter's groups and annotations, the check run's, tracing's, the commands' answers and
//! notes ([`super::say`]) — leaves through an [`Out`], which makes whatever came from elsewhere
//! harmless at one depth instead of at each place that prints it.
//!
//! - Every line is neutralised ([`crate::text`]): escape sequences removed (colour kept only on
//!   a colour terminal), control characters shown as stand-ins, a bare CR shown as `␍` — so a
//!   command's output, Harper's, a process name or a plan value can neither rewrite the screen
//!   nor split a line where GitHub's runner would.
//! - Under GitHub Actions a line that the runner could read as a workflow command (it starts
//!   with `::` after blanks, or holds `##[` anywhere) is wrapped in `::stop-commands::<token>` …
//!   `::<token>::` with a fresh random token, and relayed output ([`Out::relay`]) always is. The
//!   tool's own commands go through [`Out::command`] and nowhere else, so they are the only
//!   ones the runner sees. Each framed block is closed before the call returns: nothing the tool
//!   leaves behind can swallow a later step's commands.
//! - While live lines are drawn (indicatif), lines are written through their `suspend`, above
//!   them, instead of underneath.
//!
//! Handles are cheap clones of one shared sink; each keeps its own unfinished line, so writers
//! on other threads (tracing) never tear another's line.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use indicatif::MultiProgress;

use super::policy::Policy;
use super::workflow::{self, Command};
use crate::text::Neutralizer;

pub struct Out {
    shared: Arc<Shared>,
    /// This handle's line, not yet ended.
    pending: Vec<u8>,
}

struct Shared {
    github: bool,
    colour: bool,
    sink: Mutex<Sink>,
}

struct Sink {
    writer: Box<dyn Write + Send>,
    bars: Option<MultiProgress>,
}

/// An unfinished line longer than this is written as a line of its own.
const PENDING_LIMIT: usize = 64 * 1024;

/// The policy `main` decided ([`init`]); without one (a test, a library caller), the one this
/// process's environment gives at normal verbosity.
static POLICY: OnceLock<Policy> = OnceLock::new();

/// Sets the process's output policy, once, before anything is printed: `main` decides it from
/// the flags and the environment and hands it down from here. A second call changes nothing.
pub fn init(policy: Policy) {
    let _ = POLICY.set(policy);
}

/// The process's output policy.
pub fn policy() -> Policy {
    *POLICY.get_or_init(|| Policy::detect(Default::default()))
}

static STDERR: LazyLock<Out> =
    LazyLock::new(|| Out::new(io::stderr(), policy().github, policy().colour));

/// Never coloured: what goes to stdout is an answer to read or to parse.
static STDOUT: LazyLock<Out> = LazyLock::new(|| Out::new(Stdout, policy().github, false));

/// A handle on the process's stderr, shared by everything that prints.
pub fn stderr() -> Out {
    STDERR.clone()
}

/// A handle on the process's stdout: the commands' answers (tables, JSON, lines).
pub fn stdout() -> Out {
    STDOUT.clone()
}

/// The tool's stdout, for a reader that may stop early (`harper-shard matrix | head -1`):
/// once a write fails, this and every later write are dropped instead of failing the tool (as
/// `println!` does, with a panic); a failure other than a closed pipe is said once on stderr.
///
/// Not done by restoring SIGPIPE's default action: that would also kill the tool in the
/// middle of a run, with shards still to tear down, when any pipe it writes to closes.
struct Stdout;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if STDOUT_CLOSED.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        let mut out = io::stdout().lock();
        if let Err(e) = out.write_all(buf).and_then(|()| out.flush()) {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            if e.kind() != io::ErrorKind::BrokenPipe {
                let _ = writeln!(stderr(), "harper-shard: cannot write to stdout: {e}");
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `std::io::stderr()` given to a reporter means the shared, guarded one.
impl From<io::Stderr> for Out {
    fn from(_: io::Stderr) -> Out {
        stderr()
    }
}

impl Clone for Out {
    fn clone(&self) -> Out {
        Out { shared: self.shared.clone(), pending: Vec::new() }
    }
}

impl Out {
    /// Writes to `writer`; `github`: frame what could be a workflow command; `colour`: let
    /// colour sequences through.
    pub fn new(writer: impl Write + Send + 'static, github: bool, colour: bool) -> Out {
        let sink = Sink { writer: Box::new(writer), bars: None };
        Out {
            shared: Arc::new(Shared { github, colour, sink: Mutex::new(sink) }),
            pending: Vec::new(),
        }
    }

    /// Is colour shown?
    pub fn colour(&self) -> bool {
        self.shared.colour
    }

    /// Writes lines through `bars`' suspend from now on (or directly again, with `None`).
    pub fn draw_above(&self, bars: Option<MultiProgress>) {
        self.shared.sink().bars = bars;
    }

    /// A workflow command of the tool's own, on a line of its own.
    pub fn command(&mut self, command: &Command) -> io::Result<()> {
        self.end_line()?;
        self.shared.sink().put(format!("{}\n", command.render()).as_bytes())
    }

    /// Copies everything `from` gives, neutralised, and under GitHub Actions with workflow
    /// commands off for its whole length. The copy ends with a line end.
    pub fn relay(&mut self, from: &mut dyn Read) -> io::Result<()> {
        self.end_line()?;
        let frame = self.shared.github.then(workflow::frame);
        let mut sink = self.shared.sink();
        if let Some((open, _)) = &frame {
            sink.put(open.as_bytes())?;
        }
        let mut neutral = Neutralizer::new(self.shared.colour);
        let mut buf = vec![0u8; 64 * 1024];
        let mut clean = Vec::with_capacity(buf.len() + 256);
        let mut at_line_start = true;
        let mut copy = || -> io::Result<()> {
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                neutral.feed(&buf[..n], &mut clean);
                if let Some(&last) = clean.last() {
                    at_line_start = last == b'\n';
                }
                sink.put(&clean)?;
                clean.clear();
            }
            Ok(())
        };
        let copied = copy();
        neutral.finish(&mut clean);
        if let Some(&last) = clean.last() {
            at_line_start = last == b'\n';
        }
        if !at_line_start {
            clean.push(b'\n');
        }
        // The frame is closed whatever the copy did.
        if let Some((_, close)) = &frame {
            clean.extend_from_slice(close.as_bytes());
        }
        sink.put(&clean)?;
        copied
    }

    /// Writes this handle's unfinished line, if any, as a line.
    fn end_line(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let line = std::mem::take(&mut self.pending);
        self.shared.line(&line)
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|b| *b == b'\n') {
            self.shared.line(&self.pending[start..start + end])?;
            start += end + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() > PENDING_LIMIT {
            self.end_line()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.end_line()?;
        self.shared.sink().writer.flush()
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.end_line();
    }
}

impl Shared {
    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes one line (without its line end) made safe: neutralised, and framed if the runner
    /// could take it for a command.
    fn line(&self, raw: &[u8]) -> io::Result<()> {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut neutral = Neutralizer::new(self.colour);
        let mut clean = Vec::with_capacity(raw.len() + 8);
        neutral.feed(raw, &mut clean);
        neutral.finish(&mut clean);
        clean.push(b'\n');
        if self.github && workflow::command_like(&clean) {
            let (open, close) = workflow::frame();
            return self.sink().put(&[open.as_bytes(), &clean, close.as_bytes()].concat());
        }
        self.sink().put(&clean)
    }
}

impl Sink {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Sink { writer, bars } = self;
        match bars {
            Some(bars) => bars.suspend(|| writer.write_all(bytes).and_then(|()| writer.flush())),
            None => writer.write_all(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Out` into a buffer the test can read.
    fn buffer(github: bool, colour: bool) -> (Out, Arc<Mutex<Vec<u8>>>) {
        #[derive(Clone)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        (Out::new(Shared(seen.clone()), github, colour), seen)
    }

    fn text(seen: &Arc<Mutex<Vec<u8>>>) -> String {
        String::from_utf8(seen.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_are_neutralised_everywhere() {
        let (mut out, seen) = buffer(false, false);
        writeln!(out, "[s] x\r::error::pwn \x1b[2J\0").unwrap();
        assert_eq!(text(&seen), "[s] x␍::error::pwn ␀\n");
    }

    #[test]
    fn under_github_a_line_that_could_be_a_command_is_framed_and_others_are_not() {
        let (mut out, seen) = buffer(true, false);
        writeln!(out, "[s] plain\n  ::error::pwn\n[s] ##[error]old").unwrap();
        let text = text(&seen);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "[s] plain");
        let token = lines[1].strip_prefix("::stop-commands::").expect("a frame");
        assert_eq!(&lines[2..4], ["  ::error::pwn", &format!("::{token}::")]);
        let second = lines[4].strip_prefix("::stop-commands::").expect("a frame per block");
        assert_ne!(token, second, "every block has its own token");
        assert_eq!(&lines[5..], ["[s] ##[error]old", &format!("::{second}::")]);
    }

    #[test]
    fn relayed_output_is_framed_whole_and_ends_its_line() {
        let (mut out, seen) = buffer(true, false);
        out.relay(&mut &b"::add-mask::x\r::error::y"[..]).unwrap();
        let text = text(&seen);
        let lines: Vec<&str> = text.lines().collect();
        let token = lines[0].strip_prefix("::stop-commands::").unwrap();
        assert_eq!(&lines[1..], ["::add-mask::x␍::error::y", &format!("::{token}::")]);
    }

    #[test]
    fn colour_passes_only_on_a_colour_terminal() {
        let (mut out, seen) = buffer(false, true);
        writeln!(out, "\x1b[32mpassed\x1b[0m \x1b[2Kx").unwrap();
        assert_eq!(text(&seen), "\x1b[32mpassed\x1b[0m x\n");
        writeln!(out, "\x1b[1;31mleft open").unwrap();
        assert!(
            text(&seen).ends_with("\x1b[1;31mleft open\x1b[0m\n"),
            "a colour left open is reset at the line end"
        );
    }

    #[test]
    fn handles_keep_their_own_unfinished_lines() {
        let (mut a, seen) = buffer(false, false);
        let mut b = a.clone();
        write!(a, "first ").unwrap();
        writeln!(b, "other").unwrap();
        writeln!(a, "half").unwrap();
        assert_eq!(text(&seen), "other\nfirst half\n");
    }
}
