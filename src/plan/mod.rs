//! The shard plan: loaded from YAML once ([`load`]), checked and completed with defaults, CI
//! scaling and fallbacks ([`resolve`]), split by files ([`split`]), each shard's duration
//! predicted from recorded [`timings`] ([`predict`]), and narrowed to what this job runs
//! ([`select`]): its [`partition`] of the [`assignment`]. Everything after this module takes the
//! resolved [`Plan`], never the raw file.

// A plan error happens at most once, before anything starts, and carries everything needed to
// render it: its size costs nothing, and boxing it would only add noise to every `?`.
#![allow(clippy::result_large_err)]

pub mod assignment;
pub mod balance;
pub mod error;
pub mod file;
pub mod json_schema;
pub mod limits;
pub mod load;
pub mod merge;
pub mod partition;
pub mod predict;
pub mod resolve;
pub mod schema;
pub mod select;
pub mod split;
pub mod timings;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use error::PlanError;
pub use partition::Partition;
pub use schema::{Probe, Runtime};
pub use timings::Timings;

/// A validated, resolved plan: every default applied, every value checked.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub file: PathBuf,
    /// The plan's directory: relative paths resolve against it and commands run in it.
    pub dir: PathBuf,
    /// Whether CI scaling applied (the `CI` variable was set and not `false` / `0`).
    pub ci: bool,
    pub pool: PoolSpec,
    pub run: RunSpec,
    /// Every shard of the plan, split shards expanded, in plan order.
    pub shards: Vec<Shard>,
    /// Every `quarantine` entry, expired ones included (a run warns of them).
    pub quarantine: Vec<Quarantine>,
}

/// A `quarantine` entry, checked: a failure of what it names is reported but does not fail the
/// run, until the end of `until` (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quarantine {
    pub target: QuarantineTarget,
    /// The shard's name (a split shard's shared one covers every part), or the file relative
    /// to the plan's folder.
    pub name: String,
    pub reason: String,
    pub until: schema::Day,
    /// `until` has passed: the entry covers nothing.
    pub expired: bool,
    /// Where the plan names it.
    #[serde(skip)]
    pub at: Position,
}

/// What a quarantine entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineTarget {
    Shard,
    File,
}

impl QuarantineTarget {
    /// Its key in the plan, and its word in messages.
    pub fn key(self) -> &'static str {
        match self {
            QuarantineTarget::Shard => "shard",
            QuarantineTarget::File => "file",
        }
    }
}

impl Quarantine {
    /// Whether the entry names `shard` or one of its files (expired or not).
    pub fn covers(&self, shard: &Shard) -> bool {
        match self.target {
            QuarantineTarget::Shard => self.name == shard.name || self.name == shard.group,
            QuarantineTarget::File => shard.files.iter().any(|f| {
                crate::cases::relative(&f.to_string_lossy(), Path::new("")).as_deref()
                    == Some(self.name.as_str())
            }),
        }
    }

    /// "shard `db`", "file `t/a.test`".
    pub fn what(&self) -> String {
        format!("{} `{}`", self.target.key(), self.name)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolSpec {
    pub start: Ipv4Addr,
    pub count: u32,
    #[serde(with = "secs")]
    pub wait: Duration,
}

impl PoolSpec {
    /// The pool's addresses, in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let first = u32::from(self.start);
        (0..self.count).map(move |i| Ipv4Addr::from(first + i))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSpec {
    pub concurrency: usize,
    pub fail_fast: bool,
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// The shards' retries unless they set their own.
    pub retries: u32,
    /// A flaky shard (failed, then passed) fails the run.
    pub flaky_fails: bool,
    /// When the next shard's instance may boot before the shard has its turn.
    pub boot_ahead: schema::BootAhead,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shard {
    /// `database` or, for a part of a split shard, `database/2`.
    pub name: String,
    /// The name as written in the plan (`database` for every part of it).
    pub group: String,
    /// Where that name is written in the plan file, for annotations that point at the shard.
    #[serde(skip)]
    pub at: Position,
    /// 1-based position among all the plan's shards.
    pub index: usize,
    pub commands: Vec<String>,
    /// The commands as written, `{files}` not yet filled in: a retry of some of `files` fills
    /// them in again ([`Shard::commands_for`]).
    #[serde(skip)]
    pub run: Vec<String>,
    pub env: BTreeMap<String, String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// How many more times it is tried after a failure.
    pub retries: u32,
    /// The files of a `files:` shard, relative to the plan's directory.
    pub files: Vec<PathBuf>,
    pub harper: HarperSpec,
    /// The `harper` block as written (the plan's with the shard's over it, fallbacks applied):
    /// what a control-socket `start` request merges over.
    #[serde(skip)]
    pub raw_harper: schema::RawHarper,
    /// The plan's `weight`: what to predict while there is no recorded time (a split shard's
    /// whole, shared among its parts).
    #[serde(with = "opt_secs")]
    pub weight: Option<Duration>,
    /// How long the shard is expected to take ([`predict`]); `None` when nothing is known of
    /// any shard.
    #[serde(with = "opt_secs")]
    pub predicted: Option<Duration>,
    /// What the prediction rests on.
    pub basis: predict::Basis,
    /// Its flake history in the timings the plan was resolved with, if they have one.
    pub flakes: Option<timings::Counts>,
    /// The quarantine entries that cover it and have not expired.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub quarantine: Vec<Quarantine>,
}

/// A place in the plan file, 1-based, as the parser found it; `0` when it could not tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl Shard {
    /// The commands with `{files}` filled in with `files` (a subset of the shard's).
    pub fn commands_for(&self, files: &[PathBuf]) -> Vec<String> {
        let words = split::shell_words(files);
        self.run.iter().map(|c| c.replace("{files}", &words)).collect()
    }

    /// The quarantine entries that keep this failure from failing the run, none when it does:
    /// the shard's own entry, else one entry for each file of `failing` (the files of the
    /// failing test cases, `None` when a failing case named no file), when every one has one.
    pub fn quarantined_by(&self, failing: Option<&[String]>) -> Vec<&Quarantine> {
        if let Some(own) = self.quarantine.iter().find(|q| q.target == QuarantineTarget::Shard) {
            return vec![own];
        }
        let Some(failing) = failing.filter(|f| !f.is_empty()) else { return Vec::new() };
        let mut by: Vec<&Quarantine> = Vec::new();
        for file in failing {
            match self
                .quarantine
                .iter()
                .find(|q| q.target == QuarantineTarget::File && q.name == *file)
            {
                Some(q) if by.contains(&q) => {}
                Some(q) => by.push(q),
                None => return Vec::new(),
            }
        }
        by
    }

    /// A part of a split shard (`database/2`).
    pub fn is_part(&self) -> bool {
        self.name != self.group
    }

    #[cfg(test)]
    pub(crate) fn for_tests(
        name: &str,
        group: &str,
        files: Vec<PathBuf>,
        weight: Option<Duration>,
    ) -> Shard {
        Shard {
            name: name.to_owned(),
            group: group.to_owned(),
            at: Position::default(),
            index: 0,
            commands: vec!["true".into()],
            run: vec!["true".into()],
            env: BTreeMap::new(),
            timeout: Duration::from_secs(60),
            retries: 0,
            files,
            harper: test_harper(),
            raw_harper: schema::RawHarper::default(),
            weight,
            predicted: None,
            basis: predict::Basis::Unknown,
            flakes: None,
            quarantine: Vec::new(),
        }
    }
}

/// A shard's log folder name: the shard's name with every byte outside `[A-Za-z0-9._-]`
/// written as `%XX`, `%` itself included. Distinct names give distinct folders by construction:
/// `db-1` stays `db-1`, the part `db/1` of a split shard becomes `db%2F1`.
pub fn dir_name(shard: &str) -> String {
    let mut out = String::with_capacity(shard.len());
    for b in shard.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Names for a message: the first few, and how many more.
pub fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 6;
    let shown = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN { format!("{shown} and {} more", names.len() - SHOWN) } else { shown }
}

/// How one Harper instance is started, after the shard's overrides.
#[derive(Debug, Clone, Serialize)]
pub struct HarperSpec {
    pub source: HarperSource,
    pub runtime: Runtime,
    /// Boot from a copy of the cached template install (`harper.template`, resolved).
    pub template: bool,
    /// Harper's worker threads (`harper.threads`; 0: the single-thread mode).
    pub threads: u32,
    pub args: Vec<String>,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub env: BTreeMap<String, String>,
    pub admin: Admin,
    pub fixtures: Vec<PathBuf>,
    pub ports: Ports,
    pub ready: Ready,
    pub startup: Startup,
    pub teardown: Teardown,
    /// Whether the shard starts an instance of its own (`harper.boot`).
    pub boot: bool,
    /// On-demand instances live at once, at most (`harper.instances`).
    pub instances: u32,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HarperSource {
    /// An npm spec installed once into the cache.
    Package(String),
    /// A path to Harper's entry script (or, with `runtime: exec`, to a program).
    Bin(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub username: String,
    /// `None`: a random password is made for each run.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redacted")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ports {
    pub operations: u16,
    pub http: u16,
    pub mqtt: u16,
    pub mqtts: u16,
    pub replication: u16,
    /// HTTP over TLS (`http.securePort`): bound only when the instance's `config` sets `tls`
    /// or `http.mtls`, as the TypeScript harness binds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https: Option<u16>,
}

impl Ports {
    /// Every port an instance listens on, with the name the plan gives it: what the pool's
    /// canary, the ownership check and teardown's check all cover.
    pub fn all(&self) -> Vec<(&'static str, u16)> {
        let mut all = vec![
            ("operations", self.operations),
            ("http", self.http),
            ("mqtt", self.mqtt),
            ("mqtts", self.mqtts),
            ("replication", self.replication),
        ];
        all.extend(self.https.map(|port| ("https", port)));
        all
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    pub marker: String,
    pub probe: Probe,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Startup {
    /// The longest silence allowed while booting: every chunk of output resets it.
    #[serde(with = "secs")]
    pub idle: Duration,
    /// The absolute cap from spawn to ready.
    #[serde(with = "secs")]
    pub max: Duration,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Teardown {
    /// Time between SIGTERM and SIGKILL.
    #[serde(with = "secs")]
    pub grace: Duration,
    /// How long to wait for every port to be free after the process is gone.
    #[serde(with = "secs")]
    pub port_release: Duration,
}

impl Plan {
    /// The directory a relative path in the plan means.
    pub fn path(&self, relative: &Path) -> PathBuf {
        self.dir.join(relative)
    }
}

/// The default `harper` block, resolved as a plan would be (for unit tests of what comes after
/// resolution).
#[cfg(test)]
pub(crate) fn test_harper() -> HarperSpec {
    let text = "version: 1\nshards:\n  - name: x\n    run: \"true\"\n";
    let path = Path::new("test.yml");
    let raw = load::parse(path, text).expect("the test plan parses");
    let cx = resolve::Inputs {
        env: &|_| None,
        cpus: 2,
        timings: &Timings::default(),
        retries: None,
        flaky_fails: false,
        boot_ahead: None,
        today: schema::Day::today(),
    };
    resolve::resolve(path, text, raw, &cx).expect("the test plan resolves").shards.remove(0).harper
}

fn redacted<S: serde::Serializer>(_: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("(set in the plan)")
}

/// Durations serialise as fractional seconds, the unit every consumer of the JSON expects.
pub(crate) mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

pub(crate) mod opt_secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dir_name;

    #[test]
    fn a_split_part_and_a_shard_named_like_it_get_different_log_folders() {
        assert_eq!(dir_name("db-1"), "db-1");
        assert_eq!(dir_name("db/1"), "db%2F1");
        assert_ne!(dir_name("db%2F1"), dir_name("db/1"), "the escape character is escaped too");
        assert_eq!(dir_name("db%2F1"), "db%252F1");
    }

    #[test]
    fn a_files_failure_is_quarantined_only_when_every_failing_file_has_an_entry() {
        use super::{Quarantine, QuarantineTarget, Shard};
        let entry = |target, name: &str| Quarantine {
            target,
            name: name.into(),
            reason: "known".into(),
            until: super::schema::Day::parse("2030-01-01").unwrap(),
            expired: false,
            at: Default::default(),
        };
        let mut shard =
            Shard::for_tests("db", "db", vec!["t/a.test".into(), "t/b.test".into()], None);
        shard.quarantine = vec![
            entry(QuarantineTarget::File, "t/a.test"),
            entry(QuarantineTarget::File, "t/b.test"),
        ];
        let files = |f: &[&str]| f.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(shard.quarantined_by(Some(&files(&["t/a.test", "t/b.test"]))).len(), 2);
        assert_eq!(shard.quarantined_by(Some(&files(&["t/a.test"]))), [&shard.quarantine[0]]);
        shard.quarantine.pop();
        assert!(
            shard.quarantined_by(Some(&files(&["t/a.test", "t/b.test"]))).is_empty(),
            "t/b.test has no entry"
        );
        assert!(shard.quarantined_by(None).is_empty(), "a failing case that names no file");
        assert!(shard.quarantined_by(Some(&[])).is_empty(), "a failure no test case explains");
        shard.quarantine.push(entry(QuarantineTarget::Shard, "db"));
        assert_eq!(
            shard.quarantined_by(None),
            [&shard.quarantine[1]],
            "the shard's own entry covers any failure"
        );
    }
}
