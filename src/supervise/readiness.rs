//! When is a starting Harper ready? When three things hold, in this order:
//!
//! 1. the ready marker appeared in its output (ANSI colour stripped, matched across chunk
//!    boundaries, on each stream by itself) — while every chunk of stdout or stderr resets the
//!    idle cap and the absolute cap runs from spawn; a cap that runs out first takes whatever
//!    output or exit is already waiting ([`Child::settle`]);
//! 2. the probe passes (`GET /health` on the operations port, or a TCP connect);
//! 3. every plan port on the address is listened on by *our* process group (Linux), because
//!    Harper's SO_REUSEPORT listeners co-bind silently with a squatter's.
//!
//! Any exit before that — exit code 0 included — is a boot failure.

use std::net::Ipv4Addr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::sleep_until;

use super::{Child, Chunk, LateArrivals, describe};
use crate::plan::{Ports, Probe, Ready, Startup};
use crate::process::ports::{self, Holder};
use crate::text::Neutralizer;

pub use super::tail::Tail;

/// Lines of output kept to explain a failed boot.
pub const TAIL_LINES: usize = 40;

/// Why a boot failed. Every variant carries the output's last lines.
#[derive(Debug, Clone)]
pub enum BootError {
    Exited {
        status: ExitStatus,
        tail: Vec<String>,
    },
    Idle {
        idle: Duration,
        tail: Vec<String>,
    },
    /// `printed`: whether any output came before the cap ran out.
    Max {
        max: Duration,
        marker_seen: bool,
        printed: bool,
        tail: Vec<String>,
    },
    Squatter {
        port_name: &'static str,
        port: u16,
        holder: Holder,
        tail: Vec<String>,
    },
    NotListening {
        port_name: &'static str,
        port: u16,
        tail: Vec<String>,
    },
    Io {
        error: String,
        tail: Vec<String>,
    },
}

impl BootError {
    /// One line that explains the failure.
    pub fn cause(&self) -> String {
        match self {
            BootError::Exited { status, .. } => {
                let hint = if status.success() {
                    " (exit code 0 before ready: a poisoned ROOTPATH or a start that daemonized)"
                } else {
                    ""
                };
                format!("Harper exited before it was ready: {}{hint}", describe(status))
            }
            BootError::Idle { idle, .. } => format!(
                "Harper printed nothing for {} while starting (idle cap); it hangs",
                humantime::format_duration(*idle)
            ),
            BootError::Max { max, marker_seen, printed, .. } => {
                let max = humantime::format_duration(*max);
                let what = match (marker_seen, printed) {
                    (true, _) => "its ready line came but the probe never passed".to_owned(),
                    (false, true) => "it kept printing but never became ready".to_owned(),
                    // An idle cap as long as the absolute one runs out just after it.
                    (false, false) => format!("it printed nothing for {max}; it hangs"),
                };
                format!("Harper was not ready within {max} (absolute cap): {what}")
            }
            BootError::Squatter { port_name, port, holder, .. } => format!(
                "port {port} ({port_name}) is also held by {holder}, outside this instance: another server co-binds with SO_REUSEPORT"
            ),
            BootError::NotListening { port_name, port, .. } => {
                format!("Harper reported ready but nothing listens on port {port} ({port_name})")
            }
            BootError::Io { error, .. } => format!("cannot watch Harper start: {error}"),
        }
    }

    pub fn tail(&self) -> &[String] {
        match self {
            BootError::Exited { tail, .. }
            | BootError::Idle { tail, .. }
            | BootError::Max { tail, .. }
            | BootError::Squatter { tail, .. }
            | BootError::NotListening { tail, .. }
            | BootError::Io { tail, .. } => tail,
        }
    }
}

/// Finds a marker in a stream of chunks, ignoring escape sequences (colour, titles, hyperlinks:
/// taken out by [`Neutralizer`], as from everything shown), across chunk boundaries, without
/// keeping more than the marker's length of history.
pub struct Matcher {
    marker: Vec<u8>,
    window: Vec<u8>,
    plain: Neutralizer,
    found: bool,
}

impl Matcher {
    pub fn new(marker: &str) -> Matcher {
        Matcher {
            marker: marker.as_bytes().to_vec(),
            window: Vec::new(),
            plain: Neutralizer::new(false),
            found: false,
        }
    }

    /// Feeds a chunk; true once the marker has been seen.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if self.found {
            return true;
        }
        let mut plain = Vec::with_capacity(chunk.len());
        self.plain.feed(chunk, &mut plain);
        for b in plain {
            self.window.push(b);
            if self.window.ends_with(&self.marker) {
                self.found = true;
                return true;
            }
            if self.window.len() > 4 * self.marker.len().max(16) {
                let keep = self.marker.len();
                self.window.drain(..self.window.len() - keep);
            }
        }
        false
    }
}

/// How long the output of a child that exited before ready is awaited for the failure's tail.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// How long the ports may take to show up after the ready line before it counts as a lie.
const PORTS_APPEAR: Duration = Duration::from_secs(5);

/// Waits until `child` is ready on `addr`, or says why it never will be.
pub async fn wait_ready(
    child: &mut Child,
    ready: &Ready,
    startup: &Startup,
    addr: Ipv4Addr,
    ports: &Ports,
    spawned: Instant,
) -> Result<(), BootError> {
    // One matcher per stream: a stderr chunk between two halves of the ready line on stdout
    // must not break the match.
    let mut matchers = [Matcher::new(&ready.marker), Matcher::new(&ready.marker)];
    let mut tail = Tail::new(TAIL_LINES);
    let max_deadline = tokio::time::Instant::from_std(spawned + startup.max);
    let mut idle_deadline = tokio::time::Instant::now() + startup.idle;
    let mut seen = false;
    let mut printed = false;
    let mut take = |chunk: &Chunk, tail: &mut Tail| {
        tail.feed(&chunk.bytes);
        matchers[chunk.stream as usize].feed(&chunk.bytes)
    };
    let mut output_open = true;
    while !seen {
        let exited = tokio::select! {
            biased;
            chunk = child.output.recv(), if output_open => match chunk {
                Some(chunk) => {
                    printed = true;
                    seen = take(&chunk, &mut tail);
                    idle_deadline = tokio::time::Instant::now() + startup.idle;
                    continue;
                }
                // Both pipes closed: the child is exiting; the next turn sees its status.
                None => {
                    output_open = false;
                    continue;
                }
            },
            status = child.process.exited() => status,
            _ = sleep_until(idle_deadline.min(max_deadline)) => {
                // Before blaming Harper, take what is already waiting: the tool may have been
                // suspended while Harper printed its ready line, or exited.
                let LateArrivals { chunks, exited } = child.settle().await;
                if !chunks.is_empty() {
                    printed = true;
                    for chunk in &chunks {
                        seen |= take(chunk, &mut tail);
                    }
                    idle_deadline = tokio::time::Instant::now() + startup.idle;
                    if seen || tokio::time::Instant::now() < max_deadline {
                        continue;
                    }
                }
                match exited {
                    Some(status) => status,
                    None if tokio::time::Instant::now() >= max_deadline => {
                        return Err(BootError::Max { max: startup.max, marker_seen: false, printed, tail: tail.lines() });
                    }
                    None => return Err(BootError::Idle { idle: startup.idle, tail: tail.lines() }),
                }
            }
        };
        // A daemon the child left behind may hold the pipes open: the last words are worth a
        // moment, not a hang.
        let last_words = async {
            while let Some(chunk) = child.output.recv().await {
                tail.feed(&chunk.bytes);
            }
        };
        let _ = tokio::time::timeout(LAST_WORDS, last_words).await;
        return Err(match exited {
            Ok(status) => BootError::Exited { status, tail: tail.lines() },
            Err(e) => BootError::Io { error: e.to_string(), tail: tail.lines() },
        });
    }
    let pid = child.process.pid();
    let confirmed = async {
        probe(ready.probe, addr, ports.operations).await;
        owned(addr, ports, pid).await
    };
    tokio::pin!(confirmed);
    tokio::select! {
        result = &mut confirmed => result.map_err(|e| e.with_tail(tail.lines())),
        status = child.process.exited() => Err(match status {
            Ok(status) => BootError::Exited { status, tail: tail.lines() },
            Err(e) => BootError::Io { error: e.to_string(), tail: tail.lines() },
        }),
        _ = sleep_until(max_deadline) => match tokio::time::timeout(super::SETTLE, &mut confirmed).await {
            // The probe was about to pass when the cap ran out (after a suspension, say).
            Ok(result) => result.map_err(|e| e.with_tail(tail.lines())),
            Err(_) => Err(BootError::Max { max: startup.max, marker_seen: true, printed: true, tail: tail.lines() }),
        },
    }
}

/// Polls the probe until it passes; the caller bounds the time.
async fn probe(kind: Probe, addr: Ipv4Addr, port: u16) {
    loop {
        let passed = match kind {
            Probe::None => true,
            Probe::Tcp => tokio::net::TcpStream::connect((addr, port)).await.is_ok(),
            Probe::Http => health(addr, port).await,
        };
        if passed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `GET /health` answers 200.
pub async fn health(addr: Ipv4Addr, port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((addr, port)).await.ok()?;
        let request =
            format!("GET /health HTTP/1.1\r\nHost: {addr}:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 16];
        let n = stream.read(&mut head).await.ok()?;
        let line = std::str::from_utf8(&head[..n]).ok()?;
        Some(line.starts_with("HTTP/1.1 200") || line.starts_with("HTTP/1.0 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt).await.ok().flatten().unwrap_or(false)
}

/// A partial [`BootError`] from the ownership check, before the tail is attached.
enum Unowned {
    Squatter(&'static str, u16, Holder),
    NotListening(&'static str, u16),
}

impl Unowned {
    fn with_tail(self, tail: Vec<String>) -> BootError {
        match self {
            Unowned::Squatter(port_name, port, holder) => {
                BootError::Squatter { port_name, port, holder, tail }
            }
            Unowned::NotListening(port_name, port) => {
                BootError::NotListening { port_name, port, tail }
            }
        }
    }
}

/// Every plan port is listened on, and only by processes of our group (Linux only: elsewhere
/// the holders cannot be looked up and the check passes with a debug line).
async fn owned(addr: Ipv4Addr, ports: &Ports, group: u32) -> Result<(), Unowned> {
    if !cfg!(target_os = "linux") {
        tracing::debug!("port ownership is only checked on Linux");
        return Ok(());
    }
    let deadline = Instant::now() + PORTS_APPEAR;
    let all = ports.all();
    let numbers: Vec<u16> = all.iter().map(|(_, port)| *port).collect();
    loop {
        let found = {
            let numbers = numbers.clone();
            tokio::task::spawn_blocking(move || ports::holders_of(addr, &numbers))
                .await
                .unwrap_or_default()
        };
        // A lookup that failed altogether counts as every port missing.
        let mut missing = (found.len() != all.len()).then(|| all[0]);
        for (&(name, port), holders) in all.iter().zip(&found) {
            if let Some(foreign) = holders.iter().find(|h| h.pgid != Some(group)) {
                return Err(Unowned::Squatter(name, port, foreign.clone()));
            }
            if holders.is_empty() && missing.is_none() {
                missing = Some((name, port));
            }
        }
        match missing {
            None => return Ok(()),
            Some((name, port)) if Instant::now() >= deadline => {
                return Err(Unowned::NotListening(name, port));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_finds_the_marker_split_across_chunks_and_wrapped_in_colour() {
        let mut m = Matcher::new("successfully started");
        assert!(!m.feed(b"HarperDB 4.7.29 \x1b[35msuccess"));
        assert!(!m.feed(b"ful"));
        assert!(m.feed(b"ly started\x1b[39m\r\n"));
    }

    #[test]
    fn matcher_ignores_escape_sequences_inside_the_marker() {
        let mut m = Matcher::new("successfully started");
        assert!(m.feed(b"successfully\x1b[1m \x1b[0mstarted"));
    }

    #[test]
    fn matcher_ignores_titles_and_hyperlinks_inside_the_marker_even_split_across_chunks() {
        let mut m = Matcher::new("successfully started");
        assert!(m.feed(b"successfully\x1b]0;HarperDB\x07 started"));
        let mut m = Matcher::new("successfully started");
        assert!(!m.feed(b"\x1b]8;;https://harper.fast/\x1b\\successfully\x1b]8"));
        assert!(m.feed(b";;\x1b\\ started"));
    }

    #[test]
    fn matcher_does_not_match_a_near_miss() {
        let mut m = Matcher::new("successfully started");
        assert!(!m.feed(b"not successfully_started; successfully start"));
    }

    #[test]
    fn matcher_survives_long_output_before_the_marker() {
        let mut m = Matcher::new("successfully started");
        for _ in 0..1000 {
            assert!(!m.feed(b"loading component xyz ...\n"));
        }
        assert!(m.feed(b"HarperDB successfully started\n"));
    }
}
