//! The plan file as written: every key of plan version 1, nothing resolved yet.
//!
//! Scalars that can be wrong in a way the user must hear about (durations, ports, addresses,
//! commands) have their own types whose `Deserialize` says what is wrong and what would be
//! right; serde-saphyr adds the line and column. Checks that need more than one value
//! (duplicate names, `split` without `files`) happen in `resolve`, which gets locations from
//! the `Spanned` fields kept here for that purpose.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::limits::{
    self, MAX_CONCURRENCY, MAX_INSTANCES, MAX_POOL_COUNT, MAX_RETRIES, MAX_SPLIT, MAX_THREADS,
};

/// A harper-shard plan: which shards to run, each against its own Harper on its own loopback
/// address (README, "The plan").
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "harper-shard plan", example = plan_example())]
pub struct RawPlan {
    /// The plan format's version: 1.
    #[schemars(with = "u64", range(min = 1, max = 1), example = 1)]
    pub version: Spanned<u64>,
    /// How every shard's Harper is started; a shard's own `harper:` overrides any key.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"package": "harperdb@4.7.29"}))]
    pub harper: RawHarper,
    /// The loopback addresses shards run on.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"start": "127.0.0.2", "count": 32}))]
    pub pool: RawPool,
    /// How the shards are scheduled.
    #[serde(default)]
    #[schemars(example = serde_json::json!({"concurrency": "auto", "timeout": "30m"}))]
    pub run: RawRun,
    /// The shards, in order; at least one.
    #[schemars(with = "Vec<RawShard>", length(min = 1), example = serde_json::json!([{"name": "database", "run": "node --test tests/db/*.test.mjs"}]))]
    pub shards: Spanned<Vec<RawShard>>,
    /// Shards or test files whose failures do not fail the run until a date; reported as such.
    #[serde(default)]
    #[schemars(with = "Vec<RawQuarantine>", example = serde_json::json!([{"shard": "replication", "reason": "flaky on CI, harper#2379", "until": "2026-12-31"}]))]
    pub quarantine: Vec<Spanned<RawQuarantine>>,
}

/// One `quarantine` entry: a shard or a test file whose failure is reported but does not fail
/// the run, why, and until when.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuarantine {
    /// A shard's name (a split shard's name covers all its parts); give this or `file`.
    #[schemars(with = "Option<String>", example = &"replication")]
    pub shard: Option<Spanned<String>>,
    /// A test file of a shard's `files`, relative to the plan; give this or `shard`.
    #[schemars(with = "Option<String>", example = &"tests/db/replication.test.mjs")]
    pub file: Option<Spanned<String>>,
    /// Why: shown with every failure it keeps from failing the run.
    #[schemars(with = "String", length(min = 1, max = 1024), example = &"flaky on CI, harper#2379")]
    pub reason: Option<Spanned<String>>,
    /// The last day (UTC) it holds, `YYYY-MM-DD`; after it, failures fail the run again.
    #[schemars(with = "Day", example = &"2026-12-31")]
    pub until: Option<Spanned<Day>>,
}

/// A calendar day, `YYYY-MM-DD`, read strictly: a day the month has, a year from 1970 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day {
    year: u16,
    month: u8,
    day: u8,
}

impl Day {
    /// The day in `text`, or why it is not one.
    pub fn parse(text: &str) -> Result<Day, String> {
        let how = "write a date as YYYY-MM-DD, e.g. 2026-12-31";
        let t = text.trim();
        let b = t.as_bytes();
        let shaped = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && [0, 1, 2, 3, 5, 6, 8, 9].iter().all(|&i| b[i].is_ascii_digit());
        if !shaped {
            return Err(format!("`{}` is not a date: {how}", super::resolve::excerpt(text)));
        }
        let (year, month, day): (u16, u8, u8) = (
            t[..4].parse().unwrap_or(0),
            t[5..7].parse().unwrap_or(0),
            t[8..].parse().unwrap_or(0),
        );
        if year < 1970 {
            return Err(format!("`{t}` is before 1970: {how}"));
        }
        if !(1..=12).contains(&month) {
            return Err(format!("`{t}` has no month {month}: {how}"));
        }
        let days = days_in(year, month);
        if !(1..=days).contains(&day) {
            return Err(format!(
                "`{t}` is not a date: month {month} of {year} has {days} days; {how}"
            ));
        }
        Ok(Day { year, month, day })
    }

    /// Today in UTC.
    pub fn today() -> Day {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Day::parse(&now[..10]).expect("the clock's own date is a date")
    }
}

fn days_in(year: u16, month: u8) -> u8 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl serde::Serialize for Day {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Day::parse(&String::deserialize(d)?)
            .map_err(|why| de::Error::custom(format!("until {why}")))
    }
}

fn plan_example() -> serde_json::Value {
    serde_json::json!({"version": 1, "shards": [{"name": "operations-api", "run": "node --test tests/operations.test.mjs"}]})
}

/// How one instance is started. Every key is optional so that a shard's block can override
/// just the keys it names.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHarper {
    /// The npm spec of Harper, installed once into the cache when `bin` is not set.
    #[schemars(example = &"harperdb@4.7.29")]
    pub package: Option<String>,
    /// A path (from the plan's folder) to Harper's entry script, or with `runtime: exec` to a program.
    #[schemars(example = &"node_modules/harperdb/bin/harperdb.js")]
    pub bin: Option<String>,
    /// What runs `bin`: `node`, `bun`, or `exec` (the program itself).
    #[schemars(example = Runtime::Node)]
    pub runtime: Option<Runtime>,
    /// Boot from a copy of a cached, stopped install: `auto` (on unless `exec`), `on` or `off`.
    #[schemars(example = TemplateMode::Auto)]
    pub template: Option<TemplateMode>,
    /// Harper's worker threads (`THREADS_COUNT`), 1 unless set. `0` is the single-thread mode:
    /// HTTP and operations served from Harper's main thread, a boot in about half the time, but
    /// nothing a test does runs on a worker thread (README, "Single-thread mode").
    #[schemars(example = 0)]
    pub threads: Option<Threads>,
    /// Extra `--KEY=value` arguments for Harper; each key once, none the tool sets itself.
    #[schemars(with = "Option<Vec<String>>", example = serde_json::json!(["--LOGGING_LEVEL=debug"]))]
    pub args: Option<Vec<Spanned<String>>>,
    /// Harper configuration, passed as HARPER_SET_CONFIG JSON; merges key by key over the plan's.
    #[schemars(example = serde_json::json!({"authentication": {"enableSessions": false}}))]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Variables added to Harper's environment.
    #[schemars(example = serde_json::json!({"NODE_OPTIONS": "--max-old-space-size=1024"}))]
    pub env: Option<BTreeMap<String, String>>,
    /// The admin user; a password left out is random per run.
    #[schemars(example = serde_json::json!({"username": "admin"}))]
    pub admin: Option<RawAdmin>,
    /// Component folders copied to `<ROOTPATH>/components/<name>` before the first boot.
    #[schemars(example = serde_json::json!(["fixtures/my-component"]))]
    pub fixtures: Option<Vec<String>>,
    /// The ports every instance listens on, at its own address.
    #[schemars(example = serde_json::json!({"operations": 9925, "http": 9926}))]
    pub ports: Option<RawPorts>,
    /// When an instance counts as ready.
    #[schemars(example = serde_json::json!({"marker": "successfully started", "probe": "http"}))]
    pub ready: Option<RawReady>,
    /// Startup caps: the longest silence, and the longest boot.
    #[schemars(example = serde_json::json!({"idle": "60s", "max": "120s"}))]
    pub startup: Option<RawStartup>,
    /// How an instance is stopped and its ports awaited.
    #[schemars(example = serde_json::json!({"grace": "5s", "port_release": "5s"}))]
    pub teardown: Option<RawTeardown>,
    /// `false`: the shard starts no instance of its own; its commands start theirs through the
    /// control socket.
    #[schemars(example = false)]
    pub boot: Option<bool>,
    /// How many on-demand instances a shard may have live at once.
    #[schemars(example = 4)]
    pub instances: Option<Instances>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// The admin user's name.
    #[schemars(example = &"admin")]
    pub username: Option<String>,
    /// The admin password; left out, a random one per run.
    #[schemars(example = &"correct-horse-battery-staple")]
    pub password: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPorts {
    /// The operations API.
    #[schemars(example = 9925)]
    pub operations: Option<Port>,
    /// The HTTP (REST, custom components) port.
    #[schemars(example = 9926)]
    pub http: Option<Port>,
    /// MQTT.
    #[schemars(example = 1883)]
    pub mqtt: Option<Port>,
    /// MQTT over TLS.
    #[schemars(example = 8883)]
    pub mqtts: Option<Port>,
    /// Replication (TLS).
    #[schemars(example = 9933)]
    pub replication: Option<Port>,
    /// HTTP over TLS, bound only when `config` sets `tls` or `http.mtls`.
    #[schemars(example = 9927)]
    pub https: Option<Port>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    /// The text in Harper's output that says it started.
    #[schemars(example = &"successfully started")]
    pub marker: Option<String>,
    /// What proves the ports are this instance's after the marker: `none`, `tcp` or `http`.
    #[schemars(example = Probe::Http)]
    pub probe: Option<Probe>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStartup {
    /// The longest silence while booting (reset by any output); 150s under CI by default.
    #[schemars(example = &"60s")]
    pub idle: Option<Dur>,
    /// The longest boot, whatever Harper prints; 300s under CI by default.
    #[schemars(example = &"120s")]
    pub max: Option<Dur>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTeardown {
    /// Time between SIGTERM and SIGKILL.
    #[schemars(example = &"5s")]
    pub grace: Option<TeardownDur>,
    /// How long every port may stay held after Harper stopped.
    #[schemars(example = &"5s")]
    pub port_release: Option<TeardownDur>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// The first address, in 127.0.0.0/8.
    #[schemars(with = "Option<Address>", example = &"127.0.0.2")]
    pub start: Option<Spanned<Address>>,
    /// How many addresses, from `start` on.
    #[schemars(with = "Option<PoolCount>", example = 32)]
    pub count: Option<Spanned<PoolCount>>,
    /// How long a shard waits for a free address.
    #[schemars(example = &"10m")]
    pub wait: Option<Dur>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    /// Shards at once: `auto` (half the CPUs plus one) or a number.
    #[schemars(example = &"auto")]
    pub concurrency: Option<Concurrency>,
    /// Stop starting shards after the first failure.
    #[schemars(example = false)]
    pub fail_fast: Option<bool>,
    /// The whole run's limit, and each shard's unless it sets its own.
    #[schemars(example = &"30m")]
    pub timeout: Option<Dur>,
    /// How many more times a failed shard is tried, each time on a fresh instance (0 to 10).
    #[schemars(with = "Option<Retries>", example = 2)]
    pub retries: Option<Retries>,
    /// What a flaky shard (failed, then passed on a retry) does to the run's exit status.
    #[schemars(example = &"pass")]
    pub flaky: Option<Flaky>,
    /// With more shards than `concurrency`: boot the next shard's instance while the running
    /// shards leave the CPU idle (`auto`), never (`off`), or whatever the CPU does (`always`).
    #[schemars(example = &"auto")]
    pub boot_ahead: Option<BootAhead>,
}

/// `run.boot_ahead`: when the next shard's instance may boot before the shard gets its turn.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Deserialize,
    serde::Serialize,
    JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum BootAhead {
    /// While at least one CPU's worth of time was idle over the last half second, and memory
    /// allows.
    #[default]
    Auto,
    /// Each shard boots its instance once it has its turn.
    Off,
    /// As soon as a running shard has its turn, whatever the CPU does, while memory allows.
    Always,
}

/// `run.flaky`: a flaky shard passes the run (`pass`, the default) or fails it (`fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Flaky {
    /// The run passes; the shard is reported flaky.
    Pass,
    /// The run exits 1.
    Fail,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawShard {
    /// The shard's name: unique, at most 64 bytes (a split part's `/N` included).
    #[schemars(with = "String", length(min = 1, max = 64), example = &"database")]
    pub name: Spanned<String>,
    /// One command for `sh -c`, or a list run in order.
    #[schemars(with = "Commands", example = &"node --test tests/db/*.test.mjs")]
    pub run: Spanned<Commands>,
    /// Variables added to the commands' environment.
    #[schemars(example = serde_json::json!({"NODE_ENV": "test"}))]
    pub env: Option<BTreeMap<String, String>>,
    /// This shard's limit (default: `run.timeout`).
    #[schemars(example = &"10m")]
    pub timeout: Option<Dur>,
    /// This shard's retries (default: `run.retries`).
    #[schemars(with = "Option<Retries>", example = 1)]
    pub retries: Option<Retries>,
    /// A glob of test files, relative to the plan, substituted for `{files}` in `run`.
    #[schemars(with = "Option<String>", example = &"tests/sql/*.test.mjs")]
    pub files: Option<Spanned<String>>,
    /// Split `files` into this many parts, balanced by recorded timings.
    #[schemars(with = "Option<Split>", example = 3)]
    pub split: Option<Spanned<Split>>,
    /// The predicted duration while no time is recorded: seconds or a duration.
    #[schemars(example = &"90s")]
    pub weight: Option<Weight>,
    /// This shard's overrides of the plan's `harper` block.
    #[schemars(example = serde_json::json!({"config": {"logging": {"level": "debug"}}}))]
    pub harper: Option<RawHarper>,
}

/// Whether an instance boots from a copy of a cached, stopped install (restart speed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateMode {
    /// On where it is faster: Harper under `node` or `bun`; off for `exec` (a wrapper or the
    /// fake server, whose install the tool cannot know).
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// `node <bin> …`
    Node,
    /// `bun <bin> …`
    Bun,
    /// `<bin> …` run directly: a wrapper script, or the fake server of the test suite.
    Exec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    None,
    Tcp,
    Http,
}

/// A duration written with a unit (`90s`, `2m`, `1h 30m`, `500ms`), from 1 ms to `MAX_SECS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur<const MAX_SECS: u64 = { limits::MAX_DURATION.as_secs() }>(pub Duration);

/// `teardown.grace` and `teardown.port_release`, which have a shorter ceiling.
pub type TeardownDur = Dur<{ limits::MAX_TEARDOWN.as_secs() }>;

impl<'de, const MAX_SECS: u64> Deserialize<'de> for Dur<MAX_SECS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text, Duration::from_secs(MAX_SECS)).map(Dur).map_err(de::Error::custom)
    }
}

/// Parses a duration the way the plan needs it, with a message that says how to write one and
/// what range it must be in.
fn parse_duration(text: &str, max: Duration) -> Result<Duration, String> {
    let trimmed = text.trim();
    let range = limits::duration_range(max);
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration `{text}`: a number needs a unit, e.g. `{trimmed}s` or `{trimmed}ms`"
        ));
    }
    match humantime::parse_duration(trimmed) {
        Ok(d) if d < limits::MIN_DURATION => {
            Err(format!("duration `{text}` is too short: use one {range}"))
        }
        Ok(d) if d > max => Err(format!("duration `{text}` is too long: use one {range}")),
        Ok(d) => Ok(d),
        Err(humantime::DurationError::NumberOverflow) => {
            Err(format!("duration `{text}` is too long: use one {range}"))
        }
        Err(_) => Err(format!(
            "invalid duration `{text}`: write it like `500ms`, `90s`, `2m` or `1h 30m`"
        )),
    }
}

/// A whole number from `min` to `max`, read from the scalar's text so that a negative, a
/// fraction or a word gets the same message as a number out of range.
fn whole_number(text: &str, min: u64, max: u64) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|n| (min..=max).contains(n))
}

/// A count from a least value (1 unless given) to a bound, read with one message: `<key> `<text>`
/// is not valid: use a whole number of <units> from <min> to <max>`.
macro_rules! count {
    ($(#[$doc:meta])* $name:ident, $key:literal, $units:literal, $max:expr) => {
        count!($(#[$doc])* $name, $key, $units, 1, $max);
    };
    ($(#[$doc:meta])* $name:ident, $key:literal, $units:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub u32);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                match whole_number(&text, $min, u64::from($max)) {
                    Some(n) => Ok($name(n as u32)),
                    None => Err(de::Error::custom(format!(
                        concat!($key, " `{}` is not valid: use a whole number of ", $units, " from {} to {}"),
                        text, $min, $max
                    ))),
                }
            }
        }
    };
}

count!(
    /// `pool.count`: how many addresses, 1 to [`MAX_POOL_COUNT`].
    PoolCount, "pool count", "addresses", MAX_POOL_COUNT
);
count!(
    /// `harper.instances`: on-demand instances live at once per shard, 1 to [`MAX_INSTANCES`].
    Instances, "instances", "instances", MAX_INSTANCES
);
count!(
    /// `harper.threads`: Harper's worker threads, 0 (the single-thread mode) to [`MAX_THREADS`].
    Threads, "threads", "worker threads", 0, MAX_THREADS
);
count!(
    /// `split`: how many parts, 1 to [`MAX_SPLIT`].
    Split, "split", "parts", MAX_SPLIT
);

/// `retries`: how many more attempts a failed shard gets, 0 to [`MAX_RETRIES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries(pub u32);

impl Retries {
    /// The count in `text`, or why it is not one.
    pub fn parse(text: &str) -> Result<Retries, String> {
        match whole_number(text, 0, u64::from(MAX_RETRIES)) {
            Some(n) => Ok(Retries(n as u32)),
            None => Err(format!(
                "retries `{text}` is not valid: use a whole number from 0 to {MAX_RETRIES}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Retries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Retries::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// A shard's `weight`: its predicted duration while it has no recorded time. Seconds (`90`,
/// `2.5`) or a duration with a unit (`90s`, `1h 30m`), from 0 to 24h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight(pub Duration);

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let max = limits::MAX_DURATION;
        let range = format!("from 0 to {}", limits::duration_text(max));
        let trimmed = text.trim();
        let parsed = match trimmed.parse::<f64>() {
            Ok(secs) if secs.is_finite() && (0.0..=max.as_secs_f64()).contains(&secs) => {
                Ok(Duration::from_secs_f64(secs))
            }
            Ok(_) => Err(format!(
                "weight `{text}` is out of range: use seconds {range}, e.g. `90` or `1m 30s`"
            )),
            Err(_) => match humantime::parse_duration(trimmed) {
                Ok(d) if d <= max => Ok(d),
                Ok(_) | Err(humantime::DurationError::NumberOverflow) => {
                    Err(format!("weight `{text}` is too long: use one {range}"))
                }
                Err(_) => Err(format!(
                    "invalid weight `{text}`: write seconds (`90`) or a duration (`90s`, `2m`, `1h 30m`)"
                )),
            },
        };
        parsed.map(Weight).map_err(de::Error::custom)
    }
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match whole_number(&text, 1, u64::from(u16::MAX)) {
            Some(p) => Ok(Port(p as u16)),
            None if text.trim().parse::<i64>().is_ok() => Err(de::Error::custom(format!(
                "port {} is out of range: use a number from 1 to 65535",
                text.trim()
            ))),
            None => Err(de::Error::custom(format!(
                "port `{text}` is not a number: use a number from 1 to 65535"
            ))),
        }
    }
}

/// An IPv4 address in 127.0.0.0/8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address(pub Ipv4Addr);

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let ip: Ipv4Addr = text.trim().parse().map_err(|_| {
            de::Error::custom(format!("`{text}` is not an IPv4 address: write it like 127.0.0.2"))
        })?;
        if ip.octets()[0] != 127 {
            return Err(de::Error::custom(format!(
                "pool start {ip} is outside 127.0.0.0/8: shards only run on loopback addresses, e.g. 127.0.0.2"
            )));
        }
        Ok(Address(ip))
    }
}

/// `auto` or a whole number of shards at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Auto,
    Fixed(usize),
}

impl<'de> Deserialize<'de> for Concurrency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "auto" => Ok(Concurrency::Auto),
            n => match whole_number(n, 1, MAX_CONCURRENCY as u64) {
                Some(n) => Ok(Concurrency::Fixed(n as usize)),
                None => Err(de::Error::custom(format!(
                    "concurrency `{text}` is not valid: use `auto` or a whole number from 1 to {MAX_CONCURRENCY}"
                ))),
            },
        }
    }
}

/// A shard's `run`: one command for `sh -c`, or a list run in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    pub list: Vec<String>,
    /// Where each command of a list is written; empty for a single string, which is where the
    /// `run` key's value is.
    pub at: Vec<Location>,
}

impl<'de> Deserialize<'de> for Commands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Commands;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of command strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Commands, E> {
                Ok(Commands { list: vec![s.to_owned()], at: Vec::new() })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Commands, A::Error> {
                let mut out = Commands { list: Vec::new(), at: Vec::new() };
                while let Some(cmd) = seq.next_element::<Spanned<String>>()? {
                    out.list.push(cmd.value);
                    out.at.push(cmd.referenced);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::Day;

    #[test]
    fn a_day_is_read_strictly_with_the_days_each_month_has() {
        for good in
            ["2026-12-31", "2024-02-29", "2000-02-29", "9999-12-31", "1970-01-01", " 2026-01-05 "]
        {
            assert!(Day::parse(good).is_ok(), "{good}");
        }
        for (bad, said) in [
            ("2026-02-30", "month 2 of 2026 has 28 days"),
            ("2100-02-29", "month 2 of 2100 has 28 days"),
            ("2026-04-31", "month 4 of 2026 has 30 days"),
            ("2026-13-01", "has no month 13"),
            ("2026-00-10", "has no month 0"),
            ("2026-01-00", "month 1 of 2026 has 31 days"),
            ("1969-12-31", "is before 1970"),
            ("2026-1-1", "is not a date: write a date as YYYY-MM-DD"),
            ("31.12.2026", "is not a date"),
            ("2026-12-31T00:00:00Z", "is not a date"),
        ] {
            let err = Day::parse(bad).unwrap_err();
            assert!(err.contains(said), "{bad}: {err}");
        }
        assert!(Day::parse("2026-01-02").unwrap() > Day::parse("2025-12-31").unwrap());
        assert_eq!(Day::parse("2026-03-04").unwrap().to_string(), "2026-03-04");
    }
}
