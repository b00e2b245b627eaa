//! Parsing of `FAKE_HARPER`, the comma-separated list of faults to imitate.
//!
//! Strict on purpose: a typo in a test's fault list must fail loudly (exit 64) rather than quietly
//! run a healthy server and let the test pass for the wrong reason.

use std::path::PathBuf;
use std::time::Duration;

use crate::Fatal;

/// Directives that take no value.
const FLAGS: &[&str] = &[
    "hang",
    "ignore-term",
    "daemon",
    "daemon-listen",
    "double-fork",
    "double-fork-nolisten",
    "ansi",
    "split-ready",
    "no-ready-line",
    "stderr-noise",
];

/// Directives written `name=value`.
const VALUED: &[&str] =
    &["delay", "chatter", "exit", "linger", "record", "started-file", "term-file"];

/// Whether a forked child keeps its copies of the listening sockets (and so the ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listeners {
    Keep,
    Close,
}

#[derive(Debug)]
pub struct Directives {
    pub delay: Duration,
    pub hang: bool,
    pub chatter: Option<Duration>,
    pub exit: Option<i32>,
    pub ignore_term: bool,
    pub daemon: Option<Listeners>,
    pub double_fork: Option<Listeners>,
    pub linger: Option<Duration>,
    pub ansi: bool,
    pub split_ready: bool,
    pub ready_line: bool,
    pub stderr_noise: bool,
    pub record: Option<PathBuf>,
    pub started_file: Option<PathBuf>,
    pub term_file: Option<PathBuf>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            delay: Duration::from_millis(100),
            hang: false,
            chatter: None,
            exit: None,
            ignore_term: false,
            daemon: None,
            double_fork: None,
            linger: None,
            ansi: false,
            split_ready: false,
            ready_line: true,
            stderr_noise: false,
            record: None,
            started_file: None,
            term_file: None,
        }
    }
}

impl Directives {
    pub fn from_env() -> Result<Self, Fatal> {
        let spec = match std::env::var("FAKE_HARPER") {
            Ok(spec) => spec,
            Err(std::env::VarError::NotPresent) => String::new(),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Fatal::usage("FAKE_HARPER is not valid UTF-8"));
            }
        };
        Self::parse(&spec).map_err(|e| Fatal::usage(format!("FAKE_HARPER={spec:?}: {e}")))
    }

    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut directives = Directives::default();
        if spec.trim().is_empty() {
            return Ok(directives);
        }
        let mut seen: Vec<&str> = Vec::new();
        for item in spec.split(',').map(str::trim) {
            if item.is_empty() {
                return Err("empty directive (stray comma?)".into());
            }
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (item, None),
            };
            let family = family(name);
            if seen.contains(&family) {
                return Err(format!("`{family}` given more than once"));
            }
            seen.push(family);
            match value {
                None => directives.set_flag(name)?,
                Some(value) => directives.set_value(name, value)?,
            }
        }
        Ok(directives)
    }

    fn set_flag(&mut self, name: &str) -> Result<(), String> {
        match name {
            "hang" => self.hang = true,
            "ignore-term" => self.ignore_term = true,
            "daemon" => self.daemon = Some(Listeners::Close),
            "daemon-listen" => self.daemon = Some(Listeners::Keep),
            "double-fork" => self.double_fork = Some(Listeners::Keep),
            "double-fork-nolisten" => self.double_fork = Some(Listeners::Close),
            "ansi" => self.ansi = true,
            "split-ready" => self.split_ready = true,
            "no-ready-line" => self.ready_line = false,
            "stderr-noise" => self.stderr_noise = true,
            _ if VALUED.contains(&name) => {
                return Err(format!("`{name}` needs a value: `{name}=…`"));
            }
            _ => return Err(unknown(name)),
        }
        Ok(())
    }

    fn set_value(&mut self, name: &str, value: &str) -> Result<(), String> {
        let context = |e: String| format!("`{name}={value}`: {e}");
        match name {
            "delay" => self.delay = duration(value).map_err(context)?,
            "chatter" => self.chatter = Some(nonzero(duration(value)).map_err(context)?),
            "linger" => self.linger = Some(duration(value).map_err(context)?),
            "exit" => self.exit = Some(exit_code(value).map_err(context)?),
            "record" => self.record = Some(path(value).map_err(context)?),
            "started-file" => self.started_file = Some(path(value).map_err(context)?),
            "term-file" => self.term_file = Some(path(value).map_err(context)?),
            _ if FLAGS.contains(&name) => return Err(format!("`{name}` takes no value")),
            _ => return Err(unknown(name)),
        }
        Ok(())
    }
}

/// Variants of one directive exclude each other (`daemon` and `daemon-listen`, …).
fn family(name: &str) -> &str {
    match name {
        "daemon-listen" => "daemon",
        "double-fork-nolisten" => "double-fork",
        other => other,
    }
}

fn unknown(name: &str) -> String {
    format!(
        "unknown directive `{name}`; known: {}, {}",
        FLAGS.join(", "),
        VALUED.iter().map(|v| format!("{v}=…")).collect::<Vec<_>>().join(", ")
    )
}

/// `250ms`, `2s`, `1m`: an integer and a unit, nothing else.
pub fn duration(text: &str) -> Result<Duration, String> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let amount: u64 = digits
        .parse()
        .map_err(|_| "a duration is an integer and a unit: `250ms`, `2s`, `1m`".to_string())?;
    let seconds = |factor: u64| amount.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Ok(Duration::from_millis(amount)),
        "s" => Ok(Duration::from_secs(amount)),
        "m" => seconds(60).ok_or_else(|| "duration too long".to_string()),
        "" => Err(format!("`{text}` has no unit; write `{text}ms` or `{text}s`")),
        other => Err(format!("unknown unit `{other}`; use ms, s or m")),
    }
}

fn nonzero(duration: Result<Duration, String>) -> Result<Duration, String> {
    duration.and_then(|d| if d.is_zero() { Err("must be longer than zero".into()) } else { Ok(d) })
}

fn exit_code(text: &str) -> Result<i32, String> {
    text.parse::<u8>()
        .map(i32::from)
        .map_err(|_| "an exit code is an integer from 0 to 255".to_string())
}

fn path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() { Err("needs a path".into()) } else { Ok(PathBuf::from(text)) }
}
