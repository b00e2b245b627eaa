//! `fake-harper`: a test fixture that imitates Harper 4.7.29 closely enough for harper-shard's
//! fault tests, and can reproduce every row of the failure table in `docs/harper.md` on demand.
//!
//! It is started exactly like Harper (`--ROOTPATH=… --TC_AGREEMENT=yes --HTTP_PORT=A:9926 …`,
//! keys case-insensitive, a key given twice exits 1) and by default behaves like a healthy
//! instance: it creates ROOTPATH, refuses a live `hdb.pid` (exit 4), writes `log/hdb.log`, prints
//! a few startup lines, binds every port argument with `SO_REUSEPORT` after `delay`, prints
//! `HarperDB 4.7.29 successfully started`, serves `GET /health` and the `get_configuration`
//! operation, and on SIGTERM / SIGINT removes `hdb.pid` and exits 0. Missing install answers
//! print a prompt and end in SIGINT once stdin reaches EOF.
//!
//! It is not a Harper: no database, no TLS, no MQTT. It binds only loopback addresses
//! (127.0.0.0/8) and refuses any other.
//!
//! Faults come from the environment variable `FAKE_HARPER`, a comma-separated list:
//!
//! | directive | effect |
//! |---|---|
//! | `delay=<dur>` | time from the startup lines to binding and the ready line (default `100ms`) |
//! | `hang` | print nothing, never get ready |
//! | `chatter=<dur>` | print a line every `<dur>`, never get ready |
//! | `exit=<code>` | after the delay, print a last stderr line and exit `<code>` (0: upgrade error) |
//! | `ignore-term` | ignore SIGTERM and SIGINT (only SIGKILL ends it) |
//! | `daemon` / `daemon-listen` | fork a `setsid()` child that sleeps forever; `-listen` keeps the ports |
//! | `double-fork` / `double-fork-nolisten` | orphan a grandchild in the group; it keeps the ports unless `-nolisten` |
//! | `linger=<dur>` | on SIGTERM keep the http listener bound `<dur>` longer |
//! | `ansi` | TTY-style ready line: `\x1b[35m…\x1b[39m\r\n` |
//! | `split-ready` | ready line in two writes 50 ms apart, split inside `successfully` (with `stderr-noise`, a stderr line between them) |
//! | `no-ready-line` | bind and serve, never print the ready line |
//! | `stderr-noise` | also write a few lines to stderr during startup |
//! | `record=<path>` | append `<addr> start <unix-nanos>` at ready, `<addr> end <unix-nanos>` at exit |
//! | `started-file=<path>` | write own pid to `<path>` before anything else |
//! | `term-file=<path>` | append `<SIGNAL> <unix-nanos>` for each SIGTERM / SIGINT received, obeyed or not |
//!
//! Durations are an integer with `ms`, `s` or `m`. An unknown or malformed directive exits 64.
//! `FAKE_HARPER_DAEMON_PIDFILE`, if set, receives the pid of a `daemon` / `double-fork` child.

mod args;
mod console;
mod directives;
mod escape;
mod http;
mod listeners;
mod rootpath;
mod signals;

use std::path::Path;
use std::process;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use args::{Config, Role};
use directives::Directives;
use listeners::Listener;
use rootpath::RootPath;
use signals::Signals;

/// Exit status for a malformed `FAKE_HARPER` or a request the fixture refuses (sysexits `EX_USAGE`).
const USAGE: i32 = 64;

/// A reason to stop now: the exact stderr text and the exit status, as Harper would give them.
pub struct Fatal {
    code: i32,
    message: String,
}

impl Fatal {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Fatal { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Fatal::new(USAGE, format!("fake-harper: {}", message.into()))
    }

    fn exit(self) -> ! {
        console::err_line(&self.message);
        process::exit(self.code)
    }
}

fn main() {
    if let Err(fatal) = run() {
        fatal.exit();
    }
}

fn run() -> Result<(), Fatal> {
    let directives = Directives::from_env()?;
    if let Some(path) = &directives.started_file {
        write_own_pid(path)?;
    }
    if directives.ignore_term {
        signals::ignore_term()?;
    }
    let args = std::env::args_os().skip(1).map(|arg| arg.to_string_lossy().into_owned());
    let config = Config::from_args(args)?;
    if let Some(question) = config.missing_answer() {
        console::prompt_and_die(question);
    }
    if directives.hang {
        hang_forever();
    }
    let signals = Signals::catch(directives.ignore_term, directives.term_file.clone())?;
    let root = RootPath::create(config.root.as_deref())?;
    root.claim_pid()?;
    root.log(&format!(
        "fake-harper starting, FAKE_HARPER={:?}",
        std::env::var("FAKE_HARPER").unwrap_or_default()
    ));
    Server { directives, config, root, signals, listeners: Vec::new(), recorded_start: false }
        .start()
}

fn write_own_pid(path: &Path) -> Result<(), Fatal> {
    std::fs::write(path, format!("{}\n", process::id()))
        .map_err(|e| Fatal::usage(format!("cannot write started-file {}: {e}", path.display())))
}

fn hang_forever() -> ! {
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

/// One started instance, from the startup lines to its exit.
struct Server {
    directives: Directives,
    config: Config,
    root: RootPath,
    signals: Signals,
    listeners: Vec<Listener>,
    recorded_start: bool,
}

impl Server {
    fn start(mut self) -> Result<(), Fatal> {
        console::banner(&self.root);
        if self.directives.stderr_noise {
            console::stderr_noise();
        }
        if let Some(every) = self.directives.chatter {
            self.chatter(every);
        }
        self.pause(self.directives.delay);
        if let Some(code) = self.directives.exit {
            self.fail_before_ready(code);
        }
        self.listeners = listeners::bind_all(&self.config.ports, &self.root);
        self.leave_escapees()?;
        if self.directives.ready_line {
            self.announce_ready();
        }
        self.serve()
    }

    /// Sleeps for `duration`, or stops the server if a signal comes first.
    fn pause(&mut self, duration: Duration) {
        if self.signals.wait(duration) {
            self.stop();
        }
    }

    fn chatter(&mut self, every: Duration) -> ! {
        let mut line: u64 = 0;
        loop {
            line += 1;
            console::out_line(&format!(
                "[info] fake-harper: still installing, chatter line {line}"
            ));
            self.pause(every);
        }
    }

    fn fail_before_ready(&self, code: i32) -> ! {
        let message = if code == 0 {
            "Error: upgrade required: this ROOTPATH holds an interrupted install; \
             wipe it and start again (fake-harper exit=0)"
                .to_string()
        } else {
            format!("Error: HarperDB failed to start (fake-harper exit={code})")
        };
        console::err_line(&message);
        self.root.log(&message);
        self.root.release_pid();
        process::exit(code)
    }

    /// Forks the `daemon` / `double-fork` children. This happens before the ready line, while the
    /// process is still single-threaded, so their pid files exist once the line is seen.
    fn leave_escapees(&self) -> Result<(), Fatal> {
        let held = escape::Held {
            listeners: self.listeners.iter().map(Listener::raw_fd).collect(),
            ignore_term: self.directives.ignore_term,
        };
        let mut pids = Vec::new();
        if let Some(keep) = self.directives.daemon {
            pids.push(escape::daemon(&held, keep)?);
        }
        if let Some(keep) = self.directives.double_fork {
            pids.push(escape::double_fork(&held, keep)?);
        }
        for pid in pids {
            self.root.log(&format!("left a process behind: pid {pid}"));
            escape::publish_pid(pid, &self.root.path().join("daemon.pid"))?;
            if let Some(path) = std::env::var_os("FAKE_HARPER_DAEMON_PIDFILE") {
                escape::publish_pid(pid, Path::new(&path))?;
            }
        }
        Ok(())
    }

    fn announce_ready(&mut self) {
        let line = console::ready_line(self.directives.ansi);
        if self.directives.split_ready {
            let (head, tail) = console::split_ready_line(&line);
            console::out_raw(head);
            self.pause(Duration::from_millis(50));
            if self.directives.stderr_noise {
                console::err_line("[warn] a line on stderr between the halves of the ready line");
                self.pause(Duration::from_millis(50));
            }
            console::out_raw(tail);
        } else {
            console::out_raw(&line);
        }
        self.root.log("HarperDB successfully started (fake)");
        self.record("start");
        self.recorded_start = true;
    }

    fn serve(&mut self) -> ! {
        let api = Arc::new(http::Api::new(&self.config, &self.root));
        loop {
            let ready = listeners::wait_for_connections(&self.listeners, &self.signals);
            if ready.signal && self.signals.received() {
                self.stop();
            }
            for index in ready.listeners {
                if let Some(stream) = self.listeners[index].accept() {
                    let role = self.listeners[index].port.role;
                    let api = Arc::clone(&api);
                    // If no thread can be had, dropping the stream closes the connection.
                    let _ = thread::Builder::new().spawn(move || http::handle(stream, role, &api));
                }
            }
        }
    }

    /// The reaction to SIGTERM / SIGINT: release the ports, remove `hdb.pid`, exit 0.
    fn stop(&mut self) -> ! {
        if let Some(linger) = self.directives.linger {
            self.listeners.retain(|listener| listener.port.role == Role::Http);
            thread::sleep(linger);
        }
        self.listeners.clear();
        if self.recorded_start {
            self.record("end");
        }
        self.root.log("fake-harper stopped by signal");
        self.root.release_pid();
        process::exit(0)
    }

    fn record(&self, event: &str) {
        let Some(path) = &self.directives.record else {
            return;
        };
        let addr = self.config.record_host();
        rootpath::append_stamped(path, "record", &format!("{addr} {event}"));
    }
}
