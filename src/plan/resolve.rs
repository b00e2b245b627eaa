//! From the raw file to a [`Plan`]: defaults, CI scaling, the `HARPER_INTEGRATION_TEST_*`
//! fallbacks of today's TypeScript harness, per-shard overrides, split shards, and every check
//! that needs more than one value. Precedence, highest first: the plan, the fallback variable,
//! the (CI-scaled) default.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::error::PlanError;
use super::limits::{
    self, ARG_STRLEN, ARGS_TOTAL, MAX_CONCURRENCY, MAX_DURATION, MAX_POOL_COUNT, MAX_TEARDOWN,
    NAME_BYTES,
};
use super::predict::{self, Basis};
use super::schema::{
    BootAhead, Concurrency, Day, Dur, Flaky, Probe, RawHarper, RawPlan, RawQuarantine, RawShard,
    Runtime, TemplateMode, Threads,
};
use super::split;
use super::timings::Timings;
use super::{
    Admin, HarperSource, HarperSpec, Plan, PoolSpec, Ports, Position, Quarantine, QuarantineTarget,
    Ready, RunSpec, Shard, Startup, Teardown,
};

pub const DEFAULT_PACKAGE: &str = "harperdb@4.7.29";
pub const DEFAULT_MARKER: &str = "successfully started";
/// On-demand instances live at once per shard, unless `harper.instances` says otherwise.
pub const DEFAULT_INSTANCES: u32 = 4;
/// The longest `harper.package`: a name and a version, a URL or a path, none longer than a path.
const MAX_PACKAGE: usize = 4096;
/// Harper's worker threads unless `harper.threads` says otherwise.
pub const DEFAULT_THREADS: u32 = 1;
/// The longest quarantine `reason`: a line and a link, shown with every failure it covers.
pub const REASON_BYTES: usize = 1024;
const IDLE: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(150));
const MAX: (Duration, Duration) = (Duration::from_secs(120), Duration::from_secs(300));

/// Harper arguments the tool sets itself from plan keys; giving them in `args` would make Harper
/// see the key twice and refuse to boot. The value says which plan key to use instead.
const OWNED_ARGS: &[(&str, &str)] = &[
    ("ROOTPATH", "the tool gives every instance its own ROOTPATH"),
    ("TC_AGREEMENT", "the tool always accepts the terms for an unattended start"),
    ("HDB_ADMIN_USERNAME", "set `harper.admin.username` instead"),
    ("HDB_ADMIN_PASSWORD", "set `harper.admin.password` instead"),
    ("HTTP_PORT", "set `harper.ports.http` instead"),
    ("OPERATIONSAPI_NETWORK_PORT", "set `harper.ports.operations` instead"),
    ("MQTT_NETWORK_PORT", "set `harper.ports.mqtt` instead"),
    ("MQTT_NETWORK_SECUREPORT", "set `harper.ports.mqtts` instead"),
    ("REPLICATION_SECUREPORT", "set `harper.ports.replication` instead"),
    ("HTTP_SECUREPORT", "set `harper.ports.https` instead (bound when `config` sets `tls`)"),
];

/// Variables the tool sets for every shard command (README, "What a shard command sees"), with
/// what to do instead of setting them in a shard's `env`: the tool's value would win silently.
pub const OWNED_COMMAND_VARS: &[(&str, &str)] = &[
    ("HARPER_SHARD_TOKEN", "it marks every process of the run, so that teardown finds them all"),
    ("HARPER_HOSTNAME", "it is the shard's own address, chosen from `pool`"),
    ("HARPER_OPERATIONS_API_URL", "set `harper.ports.operations` to change its port"),
    ("HARPER_HTTP_URL", "set `harper.ports.http` to change its port"),
    ("HARPER_MQTT_URL", "set `harper.ports.mqtt` to change its port"),
    (
        "HARPER_HTTPS_URL",
        "set `harper.ports.https` to change its port, `harper.config.tls` to bind it",
    ),
    ("HARPER_ADMIN_USERNAME", "set `harper.admin.username` instead"),
    ("HARPER_ADMIN_PASSWORD", "set `harper.admin.password` instead"),
    ("HARPER_ROOTPATH", "every instance gets a data directory of its own"),
    ("HARPER_LOG_DIR", "it is inside the instance's own data directory"),
    ("HARPER_SHARD_NAME", "it is the shard's `name`"),
    ("HARPER_SHARD_INDEX", "it is the shard's position in the plan"),
    ("HARPER_SHARD_TOTAL", "it is the number of shards in the plan"),
    ("HARPER_SHARD_FILES", "set `files` (and `split`) instead"),
    ("HARPER_SHARD_JUNIT_DIR", "it is a folder in the shard's own log folder"),
    ("HARPER_SHARD_CONTROL", "it is the shard's own control socket"),
];

/// Variables the tool sets for every Harper instance, with what to do instead of setting them
/// in `harper.env`.
pub const OWNED_HARPER_VARS: &[(&str, &str)] = &[
    ("HARPER_SHARD_TOKEN", "it marks every process of the run, so that teardown finds them all"),
    ("HOME", "every instance gets a HOME of its own, removed at teardown"),
    (
        "HARPER_SET_CONFIG",
        "set `harper.config` instead: the tool passes it to Harper as HARPER_SET_CONFIG",
    ),
];

/// What resolution reads from outside the plan.
pub struct Inputs<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub cpus: usize,
    pub timings: &'a Timings,
    /// `--retries` (or `HARPER_SHARD_RETRIES`): replaces `run.retries`.
    pub retries: Option<u32>,
    /// `--flaky-fails` (or `HARPER_SHARD_FLAKY_FAILS`): as `run.flaky: fail`.
    pub flaky_fails: bool,
    /// `--boot-ahead` (or `HARPER_SHARD_BOOT_AHEAD`): replaces `run.boot_ahead`.
    pub boot_ahead: Option<BootAhead>,
    /// Today (UTC): a quarantine whose `until` is before it has expired.
    pub today: Day,
}

impl Inputs<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// `CI` set to anything but `false` / `0` (GitHub, GitLab, CircleCI, Buildkite… all set it).
    pub fn is_ci(&self) -> bool {
        self.var("CI")
            .is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0"))
    }
}

pub fn resolve(file: &Path, text: &str, raw: RawPlan, cx: &Inputs) -> Result<Plan, PlanError> {
    let r = Resolver { file, text, cx };
    if raw.version.value != 1 {
        return Err(r
            .err_at(
                &raw.version.referenced,
                format!("unsupported plan version {}", raw.version.value),
            )
            .field("version")
            .hint("this harper-shard reads plan version 1: write `version: 1`"));
    }
    if raw.shards.value.is_empty() {
        return Err(r
            .err_at(&raw.shards.referenced, "the plan has no shards")
            .field("shards")
            .hint("add at least one shard with a `name` and a `run` command"));
    }
    let dir = r.plan_dir()?;
    let pool = r.pool(&raw)?;
    let run = r.run(&raw)?;
    let base = r.fallbacks(raw.harper)?;

    let mut shards = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (i, shard) in raw.shards.value.into_iter().enumerate() {
        let at = format!("shards[{i}]");
        let name = &shard.name;
        r.check_name(name, shard.split.as_ref().map(|s| s.value.0), &at, &mut seen)?;
        // Errors in the top-level block point at it, not at the first shard that inherits it.
        let harper_at =
            if shard.harper.is_some() { format!("{at}.harper") } else { "harper".to_owned() };
        let raw_harper = merge(&base, shard.harper.as_ref());
        let harper = r.harper(&dir, raw_harper.clone(), &harper_at)?;
        let env = shard.env.clone().unwrap_or_default();
        let env_size = r.check_env(&env, &format!("{at}.env"), OWNED_COMMAND_VARS)?;
        for part in r.expand(&dir, &shard, &at)? {
            r.check_command_process(&shard, &part, env_size, &at)?;
            let flakes = cx.timings.flakes.shards.get(&part.name).copied();
            shards.push(Shard {
                name: part.name,
                group: name.value.clone(),
                at: position(&name.referenced),
                index: 0,
                commands: part.commands,
                run: shard.run.value.list.clone(),
                env: env.clone(),
                timeout: shard.timeout.map_or(run.timeout, |d| d.0),
                retries: shard.retries.map_or(run.retries, |r| r.0),
                files: part.files,
                harper: harper.clone(),
                raw_harper: raw_harper.clone(),
                weight: shard.weight.map(|w| w.0),
                predicted: None,
                basis: Basis::Unknown,
                flakes,
                quarantine: Vec::new(),
            });
        }
    }
    for (i, shard) in shards.iter_mut().enumerate() {
        shard.index = i + 1;
    }
    predict::predict(&mut shards, cx.timings);
    let quarantine = r.quarantine(raw.quarantine, &shards)?;
    for shard in &mut shards {
        shard.quarantine =
            quarantine.iter().filter(|q| !q.expired && q.covers(shard)).cloned().collect();
    }
    Ok(Plan { file: file.to_path_buf(), dir, ci: cx.is_ci(), pool, run, shards, quarantine })
}

/// The parser's location as a plan position (it counts in `u32`; its accessors widen).
fn position(at: &Location) -> Position {
    let part = |n: u64| u32::try_from(n).unwrap_or(0);
    Position { line: part(at.line()), column: part(at.column()) }
}

/// A control-socket `start` request's Harper keys (`text`: a JSON object, which is YAML) over a
/// shard's `harper` block, checked by the plan's own rules. `source` names the request in
/// errors; relative paths (`bin`, fixtures) resolve against the plan's directory. A request that
/// names `package` or `bin` replaces both of the shard's: the instance runs that Harper.
pub fn instance_request(
    source: &Path,
    plan_dir: &Path,
    shard: &RawHarper,
    text: &str,
) -> Result<HarperSpec, PlanError> {
    request(source, text, |r, over| {
        if over.boot.is_some() || over.instances.is_some() {
            return Err(r
                .err("`boot` and `instances` are the shard's, not an instance's")
                .hint("set them in the plan"));
        }
        let mut base = shard.clone();
        if over.package.is_some() || over.bin.is_some() {
            (base.package, base.bin) = (None, None);
        }
        r.harper(plan_dir, merge(&base, Some(&over)), "request")
    })
}

/// The Harper a `start` of a stopped instance names (`text`: a JSON object with `package` or
/// `bin`, nothing else), for an instance that runs on `runtime`, checked by the plan's rules.
pub fn source_request(
    source: &Path,
    plan_dir: &Path,
    runtime: Runtime,
    text: &str,
) -> Result<HarperSource, PlanError> {
    request(source, text, |r, over| {
        match (&over.package, &over.bin) {
            (Some(_), Some(_)) => {
                return Err(r.err("`package` and `bin` name two Harpers").hint("give one of them"));
            }
            (None, None) => {
                return Err(r
                    .err("no Harper named")
                    .hint("give `package` (an npm spec) or `bin` (a path)"));
            }
            _ => {}
        }
        r.source(plan_dir, &over, runtime, "request")
    })
}

/// A control request's Harper keys, parsed and handed to `check` with a resolver for them: no
/// fallback variables, no timings, and never a change of `runtime`.
fn request<T>(
    source: &Path,
    text: &str,
    check: impl FnOnce(&Resolver, RawHarper) -> Result<T, PlanError>,
) -> Result<T, PlanError> {
    let over: RawHarper = super::load::parse_as(source, text)?;
    let env = |_: &str| None;
    let timings = Timings::default();
    let cx = Inputs {
        env: &env,
        cpus: 1,
        timings: &timings,
        retries: None,
        flaky_fails: false,
        boot_ahead: None,
        today: Day::today(),
    };
    let r = Resolver { file: source, text, cx: &cx };
    r.same_runtime(&over)?;
    check(&r, over)
}

struct Part {
    name: String,
    files: Vec<PathBuf>,
    commands: Vec<String>,
}

struct Resolver<'a> {
    file: &'a Path,
    text: &'a str,
    cx: &'a Inputs<'a>,
}

impl Resolver<'_> {
    fn err(&self, message: impl Into<String>) -> PlanError {
        PlanError::new(self.file, message)
    }

    fn err_at(&self, at: &Location, message: impl Into<String>) -> PlanError {
        PlanError::new(self.file, message).at(at.line(), at.column()).with_source(self.text)
    }

    /// The plan's folder as an absolute path: every relative path of the plan means a place in
    /// it, and Harper and the commands run elsewhere (an instance's HOME), so a path left relative
    /// to the tool's own folder would name another file there.
    fn plan_dir(&self) -> Result<PathBuf, PlanError> {
        let dir =
            self.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = std::path::absolute(dir).map_err(|e| {
            self.err(format!("cannot tell the plan's folder ({}): {e}", dir.display())).hint(
                "run harper-shard from a folder that exists, or give the plan's absolute path",
            )
        })?;
        Ok(normal(&dir))
    }

    fn pool(&self, raw: &RawPlan) -> Result<PoolSpec, PlanError> {
        let start = match &raw.pool.start {
            Some(s) => s.value.0,
            None => self
                .fallback_var("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_START", |v| {
                    v.parse::<Ipv4Addr>()
                        .ok()
                        .filter(|ip| ip.octets()[0] == 127)
                        .ok_or_else(|| "not an address in 127.0.0.0/8".to_owned())
                })?
                .unwrap_or(Ipv4Addr::new(127, 0, 0, 2)),
        };
        let count = match &raw.pool.count {
            Some(c) => c.value.0,
            None => self
                .fallback_var("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_COUNT", |v| {
                    v.parse::<u32>().ok().filter(|n| (1..=MAX_POOL_COUNT).contains(n)).ok_or_else(
                        || format!("use a whole number of addresses from 1 to {MAX_POOL_COUNT}"),
                    )
                })?
                .unwrap_or(32),
        };
        let last = u64::from(u32::from(start)) + u64::from(count) - 1;
        if last > u64::from(u32::from(Ipv4Addr::new(127, 255, 255, 255))) {
            let room = u32::from(Ipv4Addr::new(127, 255, 255, 255)) - u32::from(start) + 1;
            let message =
                format!("a pool of {count} addresses from {start} runs past 127.255.255.255");
            let err = match (&raw.pool.count, &raw.pool.start) {
                (Some(c), _) => self.err_at(&c.referenced, message).field("pool.count"),
                (None, Some(s)) => self.err_at(&s.referenced, message).field("pool.start"),
                (None, None) => self.err(message).field("pool"),
            };
            return Err(err
                .hint(format!("use a count of at most {room} from {start}, or an earlier start")));
        }
        let wait = raw.pool.wait.map_or(Duration::from_secs(600), |d| d.0);
        Ok(PoolSpec { start, count, wait })
    }

    /// The `quarantine` entries: each names one shard of the plan (a split shard's parts by
    /// their shared name too) or one file of a shard's `files`, once, with a reason of at most
    /// [`REASON_BYTES`] and the last day it holds.
    fn quarantine(
        &self,
        raw: Vec<Spanned<RawQuarantine>>,
        shards: &[Shard],
    ) -> Result<Vec<Quarantine>, PlanError> {
        let mut out: Vec<Quarantine> = Vec::new();
        for (i, entry) in raw.into_iter().enumerate() {
            let here = format!("quarantine[{i}]");
            let at = &entry.referenced;
            let RawQuarantine { shard, file, reason, until } = entry.value;
            let (target, name) = match (shard, file) {
                (Some(shard), None) => (QuarantineTarget::Shard, shard),
                (None, Some(file)) => (QuarantineTarget::File, file),
                (both, _) => {
                    let message = if both.is_some() {
                        "a quarantine entry names both a `shard` and a `file`"
                    } else {
                        "a quarantine entry names no `shard` and no `file`"
                    };
                    return Err(self
                        .err_at(at, message)
                        .field(here)
                        .hint("give each entry one of them: `shard: <name>` or `file: <path from the plan's folder>`"));
                }
            };
            let key = format!("{here}.{}", target.key());
            let known = match target {
                QuarantineTarget::Shard => {
                    shards.iter().any(|s| s.name == name.value || s.group == name.value)
                }
                QuarantineTarget::File => {
                    let wanted = crate::cases::relative(&name.value, Path::new(""));
                    wanted.is_some()
                        && shards.iter().flat_map(|s| &s.files).any(|f| {
                            crate::cases::relative(&f.to_string_lossy(), Path::new("")) == wanted
                        })
                }
            };
            if !known {
                let hint = match target {
                    QuarantineTarget::Shard => {
                        let names: Vec<&str> = shards.iter().map(|s| s.group.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                        format!("name a shard of this plan ({}), or remove the entry", super::name_list(&names))
                    }
                    QuarantineTarget::File => "name a file that a shard's `files` glob finds, relative to the plan's folder (`--plan` lists each shard's files), or remove the entry".to_owned(),
                };
                return Err(self
                    .err_at(
                        &name.referenced,
                        format!(
                            "quarantine names {} `{}`, which the plan does not have",
                            target.key(),
                            excerpt(&name.value)
                        ),
                    )
                    .field(key)
                    .hint(hint));
            }
            let Some(reason) = reason.filter(|r| !r.value.trim().is_empty()) else {
                return Err(self
                    .err_at(at, format!("the quarantine of {} `{}` gives no reason", target.key(), excerpt(&name.value)))
                    .field(format!("{here}.reason"))
                    .hint("say why, and where it is being fixed (an issue): the reason is shown with every failure the entry keeps from failing the run"));
            };
            if reason.value.len() > REASON_BYTES {
                return Err(self
                    .err_at(&reason.referenced, format!("the reason is {} long", super::file::size_text(reason.value.len() as u64)))
                    .field(format!("{here}.reason"))
                    .hint(format!("keep it within {REASON_BYTES} bytes: a line with a link to the issue that tracks the fix")));
            }
            let Some(until) = until else {
                return Err(self
                    .err_at(at, format!("the quarantine of {} `{}` has no `until`", target.key(), excerpt(&name.value)))
                    .field(format!("{here}.until"))
                    .hint("give the last day it holds, `until: YYYY-MM-DD`: a quarantine without an end would hide the failure for good"));
            };
            let value = crate::cases::relative(&name.value, Path::new(""))
                .filter(|_| target == QuarantineTarget::File)
                .unwrap_or(name.value);
            if let Some(first) = out.iter().find(|q| q.target == target && q.name == value) {
                return Err(self
                    .err_at(
                        &name.referenced,
                        format!("{} `{}` is quarantined twice", target.key(), excerpt(&value)),
                    )
                    .field(key)
                    .hint(format!(
                        "keep one entry for it (the other is on line {})",
                        first.at.line
                    )));
            }
            out.push(Quarantine {
                target,
                name: value,
                reason: reason.value,
                until: until.value,
                expired: until.value < self.cx.today,
                at: position(&name.referenced),
            });
        }
        Ok(out)
    }

    fn run(&self, raw: &RawPlan) -> Result<RunSpec, PlanError> {
        let concurrency = match raw.run.concurrency.unwrap_or(Concurrency::Auto) {
            Concurrency::Auto => (self.cx.cpus / 2 + 1).clamp(1, MAX_CONCURRENCY),
            Concurrency::Fixed(n) => n,
        };
        Ok(RunSpec {
            concurrency,
            fail_fast: raw.run.fail_fast.unwrap_or(false),
            timeout: raw.run.timeout.map_or(Duration::from_secs(30 * 60), |d| d.0),
            retries: self.cx.retries.or(raw.run.retries.map(|r| r.0)).unwrap_or(0),
            flaky_fails: self.cx.flaky_fails || raw.run.flaky == Some(Flaky::Fail),
            boot_ahead: self.cx.boot_ahead.or(raw.run.boot_ahead).unwrap_or_default(),
        })
    }

    /// Reads a fallback variable: `Ok(None)` when unset, an error naming it when malformed.
    fn fallback_var<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, PlanError> {
        match self.cx.var(name) {
            None => Ok(None),
            Some(v) => parse(v.trim()).map(Some).map_err(|why| {
                self.err(format!("${name} is `{v}`: {why}")).hint(format!(
                    "fix or unset {name}; the plan's own key takes precedence over it"
                ))
            }),
        }
    }

    /// A `*_MS` fallback, held to the same range as the plan key it stands in for.
    fn fallback_ms(&self, name: &str, max: Duration) -> Result<Option<Duration>, PlanError> {
        self.fallback_var(name, |v| {
            v.parse::<u64>()
                .ok()
                .map(Duration::from_millis)
                .filter(|d| (limits::MIN_DURATION..=max).contains(d))
                .ok_or_else(|| {
                    format!(
                        "use a whole number of milliseconds from 1 to {} ({})",
                        max.as_millis(),
                        limits::duration_text(max)
                    )
                })
        })
    }

    /// The top-level `harper` block with the environment's fallbacks and the CI-scaled defaults
    /// filled into the keys the plan leaves unset.
    fn fallbacks(&self, mut h: RawHarper) -> Result<RawHarper, PlanError> {
        let ci = self.cx.is_ci();
        let startup = h.startup.get_or_insert_with(Default::default);
        if startup.idle.is_none() {
            let d = self.fallback_ms("HARPER_INTEGRATION_TEST_STARTUP_TIMEOUT_MS", MAX_DURATION)?;
            startup.idle = Some(Dur(d.unwrap_or(if ci { IDLE.1 } else { IDLE.0 })));
        }
        if startup.max.is_none() {
            let d = self.fallback_ms("HARPER_INTEGRATION_TEST_STARTUP_MAX_MS", MAX_DURATION)?;
            startup.max = Some(Dur(d.unwrap_or(if ci { MAX.1 } else { MAX.0 })));
        }
        let teardown = h.teardown.get_or_insert_with(Default::default);
        if teardown.grace.is_none() {
            teardown.grace = self
                .fallback_ms("HARPER_INTEGRATION_TEST_TEARDOWN_GRACE_MS", MAX_TEARDOWN)?
                .map(Dur);
        }
        if teardown.port_release.is_none() {
            teardown.port_release = self
                .fallback_ms("HARPER_INTEGRATION_TEST_PORT_RELEASE_TIMEOUT_MS", MAX_TEARDOWN)?
                .map(Dur);
        }
        if h.runtime.is_none() {
            h.runtime = self.fallback_var("HARPER_RUNTIME", |v| match v {
                "node" => Ok(Runtime::Node),
                "bun" => Ok(Runtime::Bun),
                _ => Err("use `node` or `bun`".to_owned()),
            })?;
        }
        Ok(h)
    }

    fn check_name(
        &self,
        name: &Spanned<String>,
        split: Option<u32>,
        at: &str,
        seen: &mut HashMap<String, u64>,
    ) -> Result<(), PlanError> {
        let value = name.value.trim();
        let valid = !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !value.starts_with('.');
        if !valid {
            return Err(self
                .err_at(&name.referenced, format!("shard name `{}` is not usable", excerpt(&name.value)))
                .field(format!("{at}.name"))
                .hint("use letters, digits, `-`, `_` and `.` (it names a log folder and a JUnit suite)"));
        }
        // The longest part name decides: `database/12` for a split of 12.
        let suffix = split.map(|n| format!("/{n}")).unwrap_or_default();
        if value.len() + suffix.len() > NAME_BYTES {
            let with_suffix = if suffix.is_empty() {
                String::new()
            } else {
                format!(", {} as its last part `…{suffix}`", value.len() + suffix.len())
            };
            return Err(self
                .err_at(&name.referenced, format!("shard name `{}` is {} bytes long{with_suffix}", excerpt(value), value.len()))
                .field(format!("{at}.name"))
                .hint(format!(
                    "use at most {NAME_BYTES} bytes, a split part's `/N` included: the name becomes a log folder, a JUnit suite and a variable"
                )));
        }
        if let Some(first) = seen.insert(value.to_owned(), name.referenced.line()) {
            return Err(self
                .err_at(&name.referenced, format!("duplicate shard name `{value}`"))
                .field(format!("{at}.name"))
                .hint(format!("the first shard named `{value}` is on line {first}; give each shard a unique name")));
        }
        Ok(())
    }

    /// One shard, or the parts of a split shard, with their files and commands.
    fn expand(&self, dir: &Path, shard: &RawShard, at: &str) -> Result<Vec<Part>, PlanError> {
        let commands = &shard.run.value.list;
        let empty = commands.is_empty() || commands.iter().any(|c| c.trim().is_empty());
        if empty {
            return Err(self
                .err_at(&shard.run.referenced, "empty command")
                .field(format!("{at}.run"))
                .hint(
                    "give a command for `sh -c`, e.g. `run: node --test tests/`, or a list of them",
                ));
        }
        let name = shard.name.value.trim().to_owned();
        let Some(pattern) = &shard.files else {
            if let Some(split) = &shard.split {
                return Err(self
                    .err_at(&split.referenced, "`split` needs `files`")
                    .field(format!("{at}.split"))
                    .hint(
                        "add `files: <glob>` to say which test files to split, or remove `split`",
                    ));
            }
            if commands.iter().any(|c| c.contains("{files}")) {
                return Err(self
                    .err_at(&shard.run.referenced, "`{files}` is used but the shard has no `files`")
                    .field(format!("{at}.run"))
                    .hint("add `files: <glob>`, or write the test paths into the command"));
            }
            return Ok(vec![Part { name, files: Vec::new(), commands: commands.clone() }]);
        };
        let parts = shard.split.as_ref().map_or(1, |s| s.value.0 as usize);
        let files = split::find_files(dir, &pattern.value)
            .map_err(|why| self.err_at(&pattern.referenced, why).field(format!("{at}.files")))?;
        if files.is_empty() {
            return Err(self
                .err_at(&pattern.referenced, format!("`{}` matched no file in {}", pattern.value, dir.display()))
                .field(format!("{at}.files"))
                .hint("the glob is relative to the plan's directory; check the path and the `**` parts"));
        }
        let groups = split::divide(&files, parts, self.cx.timings);
        let split = shard.split.is_some();
        Ok(groups
            .into_iter()
            .enumerate()
            .map(|(i, files)| {
                let words = split::shell_words(&files);
                Part {
                    name: if split { format!("{name}/{}", i + 1) } else { name.clone() },
                    commands: commands.iter().map(|c| c.replace("{files}", &words)).collect(),
                    files,
                }
            })
            .collect())
    }

    /// A request may not change what runs Harper: every life of an instance, and every instance
    /// of a shard, runs on the shard's runtime.
    fn same_runtime(&self, over: &RawHarper) -> Result<(), PlanError> {
        if over.runtime.is_some() {
            return Err(self
                .err("`runtime` cannot change in a request: every instance of a shard runs on the shard's runtime")
                .field("runtime")
                .hint("set `harper.runtime` for the shard in the plan"));
        }
        Ok(())
    }

    /// The Harper that `h` names: its `bin` (a regular file, from `dir`) or its `package` (the
    /// default when neither is set).
    fn source(
        &self,
        dir: &Path,
        h: &RawHarper,
        runtime: Runtime,
        at: &str,
    ) -> Result<HarperSource, PlanError> {
        let field = |key: &str| format!("{at}.{key}");
        if let Some(package) = &h.package {
            self.check_string(&field("package"), "the package", package)?;
            if let Some(c) = package.chars().find(|c| c.is_control()) {
                return Err(self
                    .err(format!("harper.package holds the control character {:?}", c))
                    .field(field("package"))
                    .hint(format!("an npm spec is a name and a version, a URL or a path, e.g. {DEFAULT_PACKAGE}")));
            }
            if package.len() > MAX_PACKAGE {
                return Err(self
                    .err(format!("harper.package is {} bytes long", package.len()))
                    .field(field("package"))
                    .hint(format!("an npm spec is a name and a version, a URL or a path, at most {MAX_PACKAGE} bytes, e.g. {DEFAULT_PACKAGE}")));
            }
        }
        Ok(match (&h.bin, &h.package) {
            (Some(bin), _) => {
                self.check_string(&field("bin"), "the path", bin)?;
                let path = normal(&dir.join(bin));
                if !path.is_file() {
                    return Err(self
                        .err(format!("harper.bin `{bin}` is not a file ({})", path.display()))
                        .field(field("bin"))
                        .hint("point `bin` at node_modules/harperdb/bin/harperdb.js, or remove it to install `package`"));
                }
                HarperSource::Bin(path)
            }
            (None, Some(pkg)) if pkg.trim().is_empty() => {
                return Err(self
                    .err("harper.package is empty")
                    .field(field("package"))
                    .hint(format!("e.g. {DEFAULT_PACKAGE}")));
            }
            (None, pkg) => {
                if runtime == Runtime::Exec {
                    return Err(self
                        .err("runtime `exec` needs `bin`: the program to run")
                        .field(field("runtime"))
                        .hint("set `bin`, or use runtime `node` / `bun`"));
                }
                HarperSource::Package(pkg.clone().unwrap_or_else(|| DEFAULT_PACKAGE.to_owned()))
            }
        })
    }

    /// The effective `harper` block of one shard, checked and completed.
    fn harper(&self, dir: &Path, h: RawHarper, at: &str) -> Result<HarperSpec, PlanError> {
        let field = |key: &str| format!("{at}.{key}");
        let runtime = h.runtime.unwrap_or(Runtime::Node);
        let source = self.source(dir, &h, runtime, at)?;
        let args = h.args.unwrap_or_default();
        let threads = self.threads(h.threads, &args, &field("args"))?;
        let args = self.args(args, &field("args"))?;
        let mut fixtures = Vec::new();
        for (i, fixture) in h.fixtures.unwrap_or_default().iter().enumerate() {
            self.check_string(&format!("{}[{i}]", field("fixtures")), "the path", fixture)?;
            let path = normal(&dir.join(fixture));
            if !path.is_dir() {
                return Err(self
                    .err(format!("fixture `{fixture}` is not a directory ({})", path.display()))
                    .field(format!("{}[{i}]", field("fixtures")))
                    .hint("a fixture is a component directory, copied to <ROOTPATH>/components/<name> before boot"));
            }
            fixtures.push(path);
        }
        let mut config = h.config.unwrap_or_default();
        let tls = self.tls_files(dir, &mut config, &field("config"))?;
        let p = h.ports.unwrap_or_default();
        let ports = Ports {
            operations: p.operations.map_or(9925, |p| p.0),
            http: p.http.map_or(9926, |p| p.0),
            mqtt: p.mqtt.map_or(1883, |p| p.0),
            mqtts: p.mqtts.map_or(8883, |p| p.0),
            replication: p.replication.map_or(9933, |p| p.0),
            https: tls.then(|| p.https.map_or(9927, |p| p.0)),
        };
        let mut used = BTreeMap::new();
        for (name, port) in ports.all() {
            if let Some(other) = used.insert(port, name) {
                return Err(self
                    .err(format!("ports `{other}` and `{name}` are both {port}"))
                    .field(field("ports"))
                    .hint("every port of an instance must differ"));
            }
        }
        let ready = h.ready.unwrap_or_default();
        let marker = ready.marker.unwrap_or_else(|| DEFAULT_MARKER.to_owned());
        if marker.trim().is_empty() {
            return Err(self
                .err("the ready marker is empty")
                .field(field("ready.marker"))
                .hint(format!("the default is `{DEFAULT_MARKER}`")));
        }
        let startup = h.startup.unwrap_or_default();
        let (idle, max) =
            (startup.idle.map_or(IDLE.0, |d| d.0), startup.max.map_or(MAX.0, |d| d.0));
        if idle > max {
            return Err(self
                .err(format!("startup.idle ({}) is longer than startup.max ({})", humantime::format_duration(idle), humantime::format_duration(max)))
                .field(field("startup"))
                .hint("the idle cap is the longest silence allowed within the absolute cap; make it shorter"));
        }
        let teardown = h.teardown.unwrap_or_default();
        let admin = h.admin.unwrap_or_default();
        let username = admin.username.unwrap_or_else(|| "admin".to_owned());
        self.check_string(&field("admin.username"), "the admin username", &username)?;
        if let Some(password) = &admin.password {
            self.check_string(&field("admin.password"), "the admin password", password)?;
        }
        let env = h.env.unwrap_or_default();
        let mut size = self.check_env(&env, &field("env"), OWNED_HARPER_VARS)?;
        if !config.is_empty() {
            let json = serde_json::Value::Object(config.clone()).to_string();
            size += self.check_string(
                &field("config"),
                "the config (as HARPER_SET_CONFIG JSON)",
                &format!("HARPER_SET_CONFIG={json}"),
            )?;
        }
        size += args.iter().map(|a| a.len() + 1).sum::<usize>();
        if size > ARGS_TOTAL {
            return Err(self
                .err(format!("Harper's plan-given arguments and variables add up to {}", super::file::size_text(size as u64)))
                .field(at.to_owned())
                .hint(format!(
                    "keep `args`, `env` and `config` under {} together: a process gets at most ARG_MAX (usually 2 MiB) of them, the inherited environment included",
                    super::file::size_text(ARGS_TOTAL as u64)
                )));
        }
        let template = match h.template.unwrap_or(TemplateMode::Auto) {
            TemplateMode::On if runtime == Runtime::Exec => {
                return Err(self
                    .err("`template: on` needs runtime `node` or `bun`: the tool cannot know what an `exec` program installs")
                    .field(field("template"))
                    .hint("use `template: auto` (off for `exec`) or `off`"));
            }
            TemplateMode::Auto => runtime != Runtime::Exec,
            TemplateMode::On => true,
            TemplateMode::Off => false,
        };
        Ok(HarperSpec {
            source,
            runtime,
            template,
            threads,
            args,
            config,
            env,
            admin: Admin { username, password: admin.password },
            fixtures,
            ports,
            ready: Ready { marker, probe: ready.probe.unwrap_or(Probe::Http) },
            startup: Startup { idle, max },
            teardown: Teardown {
                grace: teardown.grace.map_or(Duration::from_secs(5), |d| d.0),
                port_release: teardown.port_release.map_or(Duration::from_secs(5), |d| d.0),
            },
            boot: h.boot.unwrap_or(true),
            instances: h.instances.map_or(DEFAULT_INSTANCES, |n| n.0),
        })
    }

    /// `harper.threads`, not given twice (`--THREADS_COUNT` in `args`, whose `field` this is).
    fn threads(
        &self,
        threads: Option<Threads>,
        args: &[Spanned<String>],
        field: &str,
    ) -> Result<u32, PlanError> {
        let Some(Threads(threads)) = threads else { return Ok(DEFAULT_THREADS) };
        let sets_threads = |a: &Spanned<String>| {
            crate::harper::layout::arg_key(&a.value)
                .is_some_and(|k| k.eq_ignore_ascii_case("THREADS_COUNT"))
        };
        if let Some((i, arg)) = args.iter().enumerate().find(|(_, a)| sets_threads(a)) {
            return Err(self
                .err_at(
                    &arg.referenced,
                    format!(
                        "`{}` sets Harper's worker threads, and so does `threads: {threads}`",
                        arg.value
                    ),
                )
                .field(format!("{field}[{i}]"))
                .hint("keep one: `threads` (0 is the single-thread mode), or the argument"));
        }
        Ok(threads)
    }

    fn args(&self, args: Vec<Spanned<String>>, field: &str) -> Result<Vec<String>, PlanError> {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut out = Vec::new();
        for (i, arg) in args.into_iter().enumerate() {
            let here = format!("{field}[{i}]");
            self.check_string(&here, "the argument", &arg.value).map_err(|e| {
                e.at(arg.referenced.line(), arg.referenced.column()).with_source(self.text)
            })?;
            let Some((key, _)) = arg.value.strip_prefix("--").and_then(|a| a.split_once('='))
            else {
                return Err(self
                    .err_at(&arg.referenced, format!("`{}` is not a Harper argument", arg.value))
                    .field(here)
                    .hint("write it as --KEY=value, e.g. --LOGGING_LEVEL=debug"));
            };
            let key = key.to_ascii_uppercase();
            if let Some((_, instead)) = OWNED_ARGS.iter().find(|(k, _)| *k == key) {
                return Err(self
                    .err_at(&arg.referenced, format!("`--{key}` is set by harper-shard"))
                    .field(here)
                    .hint(format!("{instead}; Harper refuses a key given twice")));
            }
            if let Some(first) = seen.insert(key.clone(), arg.referenced.line()) {
                return Err(self
                    .err_at(&arg.referenced, format!("`--{key}` is given twice"))
                    .field(here)
                    .hint(format!("Harper refuses to boot when a key appears twice; keep one (the other is on line {first})")));
            }
            out.push(arg.value);
        }
        Ok(out)
    }
}

impl Resolver<'_> {
    /// Whether `config` asks for TLS (`tls`, or `http.mtls`, as the TypeScript harness decides
    /// to bind the HTTPS port). Each file `tls` names (`certificate`, `privateKey`,
    /// `certificateAuthority`; `tls` may be a list of such blocks) must be a readable PEM file:
    /// Harper would otherwise start without it and say so only in its log. A relative path is
    /// made absolute against the plan's directory, since Harper runs in its instance's HOME.
    fn tls_files(
        &self,
        dir: &Path,
        config: &mut serde_json::Map<String, serde_json::Value>,
        at: &str,
    ) -> Result<bool, PlanError> {
        let mtls = config.get("http").and_then(|h| h.get("mtls")).is_some_and(|m| !m.is_null());
        let Some(tls) = config.get_mut("tls").filter(|t| !t.is_null()) else { return Ok(mtls) };
        let blocks: Vec<(String, &mut serde_json::Value)> = match tls {
            serde_json::Value::Array(list) => {
                list.iter_mut().enumerate().map(|(i, b)| (format!("{at}.tls[{i}]"), b)).collect()
            }
            block => vec![(format!("{at}.tls"), block)],
        };
        for (here, block) in blocks {
            let Some(block) = block.as_object_mut() else {
                return Err(self.err("`tls` is not a map").field(here).hint("write it as {certificate: cert.pem, privateKey: key.pem}, or a list of such maps"));
            };
            for key in TLS_FILES {
                let Some(value) = block.get_mut(key).filter(|v| !v.is_null()) else { continue };
                let field = format!("{here}.{key}");
                let Some(given) = value.as_str().map(str::to_owned) else {
                    return Err(self
                        .err(format!("`{value}` is not a path"))
                        .field(field)
                        .hint("give the path of a PEM file, as a string"));
                };
                self.check_string(&field, "the path", &given)?;
                let path = normal(&dir.join(&given));
                let found = match super::file::read_bounded(&path, TLS_FILE_BYTES) {
                    Ok(bytes) if bytes.windows(11).any(|w| w == b"-----BEGIN ") => Ok(()),
                    Ok(_) => Err("it holds no PEM block (`-----BEGIN …`)".to_owned()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(why) = found {
                    let (line, column) = line_of(self.text, key, &given);
                    return Err(self
                        .err(format!("`{}` cannot be used: {why} ({})", excerpt(&given), path.display()))
                        .at(line, column)
                        .with_source(self.text)
                        .field(field)
                        .hint("give a readable PEM file of at most 1 MiB; a relative path is relative to the plan's directory"));
                }
                *value = serde_json::Value::String(path.display().to_string());
            }
        }
        Ok(true)
    }

    /// A string the kernel will get as one argument or variable: no NUL (it would end the
    /// string early), and within MAX_ARG_STRLEN. Returns the bytes it takes, NUL included.
    fn check_string(&self, field: &str, what: &str, value: &str) -> Result<usize, PlanError> {
        if value.contains('\0') {
            return Err(self
                .err(format!("{what} holds a NUL byte"))
                .field(field.to_owned())
                .hint("remove the `\\0`: the operating system ends a string at a NUL, so the rest would be lost"));
        }
        let size = value.len() + 1;
        if size > ARG_STRLEN {
            return Err(self
                .err(format!("{what} is {} long", super::file::size_text(size as u64)))
                .field(field.to_owned())
                .hint(format!(
                    "the operating system takes at most {} in one argument or variable; pass a long value in a file instead",
                    super::file::size_text(ARG_STRLEN as u64)
                )));
        }
        Ok(size)
    }

    /// An `env` block: names that are names, values the kernel takes, none that the tool sets
    /// itself. Returns the bytes the variables take.
    fn check_env(
        &self,
        env: &BTreeMap<String, String>,
        field: &str,
        owned: &[(&str, &str)],
    ) -> Result<usize, PlanError> {
        let mut size = 0;
        for (key, value) in env {
            let bad_name = |why: &str, hint: &str| {
                self.err(format!("variable name `{}` {why}", excerpt(key)))
                    .field(field.to_owned())
                    .hint(hint.to_owned())
            };
            if key.is_empty() {
                return Err(self
                    .err("a variable has an empty name")
                    .field(field.to_owned())
                    .hint("give every variable a name: `NAME: value`"));
            }
            if key.contains('=') {
                return Err(bad_name(
                    "holds `=`",
                    "a name ends at the first `=`, so this would set a different variable; write `NAME: value`",
                ));
            }
            if let Some((_, instead)) = owned.iter().find(|(k, _)| k == key) {
                return Err(self
                    .err(format!("`{key}` is set by harper-shard"))
                    .field(field.to_owned())
                    .hint(format!("remove it from `env`: {instead}")));
            }
            size += self.check_string(
                &format!("{field}.{}", excerpt(key)),
                "the variable",
                &format!("{key}={value}"),
            )?;
        }
        Ok(size)
    }

    /// One part's commands as the kernel gets them (`sh -c <command>`, the shard's `env`, its
    /// files in HARPER_SHARD_FILES), after `{files}` is filled in.
    fn check_command_process(
        &self,
        shard: &RawShard,
        part: &Part,
        env_size: usize,
        at: &str,
    ) -> Result<(), PlanError> {
        let at_command = |i: usize, e: PlanError| {
            let loc = shard.run.value.at.get(i).unwrap_or(&shard.run.referenced);
            e.at(loc.line(), loc.column()).with_source(self.text)
        };
        let run_at = |e: PlanError| at_command(0, e);
        let words = part.files.iter().map(|f| f.as_os_str().len() + 1).sum::<usize>();
        let files_size = "HARPER_SHARD_FILES=".len() + words + 1;
        if files_size > ARG_STRLEN {
            return Err(run_at(self.err(format!(
                "`{}` has {} files, {} of paths in HARPER_SHARD_FILES",
                part.name,
                part.files.len(),
                super::file::size_text(files_size as u64)
            )))
            .field(format!("{at}.files"))
            .hint(format!(
                "the operating system takes at most {} in one variable; raise `split` or narrow `files`",
                super::file::size_text(ARG_STRLEN as u64)
            )));
        }
        let mut largest = 0;
        for (i, command) in part.commands.iter().enumerate() {
            let filled = command.len() + 1 > ARG_STRLEN
                && shard.run.value.list.get(i).is_some_and(|c| c.contains("{files}"));
            let size = self.check_string(&format!("{at}.run[{i}]"), "the command", command).map_err(|e| {
                let e = at_command(i, e);
                if filled {
                    e.hint("with `{files}` filled in, the command is too long for the operating system: raise `split`, narrow `files`, or read $HARPER_SHARD_FILES in a script")
                } else {
                    e
                }
            })?;
            largest = largest.max(size);
        }
        let total = env_size + files_size + largest + "sh\0-c\0".len();
        if total > ARGS_TOTAL {
            return Err(run_at(self.err(format!(
                "a command of `{}` gets {} of plan-given arguments and variables",
                part.name,
                super::file::size_text(total as u64)
            )))
            .field(at.to_owned())
            .hint(format!(
                "keep the command, `env` and the file list under {} together: a process gets at most ARG_MAX (usually 2 MiB), the inherited environment included",
                super::file::size_text(ARGS_TOTAL as u64)
            )));
        }
        Ok(())
    }
}

/// `path` without its `.` components: `/plan/./fake-harper` is `/plan/fake-harper`. `..` stays,
/// as it does for the kernel (it follows a link's target, not the text before it).
fn normal(path: &Path) -> PathBuf {
    path.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

/// The files a `tls` block of Harper's configuration names.
const TLS_FILES: [&str; 3] = ["certificate", "privateKey", "certificateAuthority"];
/// A certificate, key or CA bundle larger than this is refused (a CA bundle of every public
/// root is about 200 KiB).
const TLS_FILE_BYTES: u64 = 1 << 20;

/// Where `key: value` is first written in the plan, for a value of `config` (a map the parser
/// keeps no places for): the line and column of the value; `(0, 0)` when it cannot be found.
fn line_of(text: &str, key: &str, value: &str) -> (u64, u64) {
    let key = format!("{key}:");
    text.lines()
        .enumerate()
        .find_map(|(i, line)| {
            let after = line.find(&key)? + key.len();
            line[after..].find(value).map(|column| (i as u64 + 1, (after + column) as u64 + 1))
        })
        .unwrap_or((0, 0))
}

/// A value short enough to quote in a message, control characters escaped (`\0`).
pub(super) fn excerpt(value: &str) -> String {
    const SHOWN: usize = 40;
    let shown: String = value
        .chars()
        .take(SHOWN)
        .flat_map(|c| if c.is_control() { c.escape_debug().collect() } else { vec![c] })
        .collect();
    if value.chars().count() > SHOWN { format!("{shown}…") } else { shown }
}

/// A shard's `harper` block over the plan's: scalars and lists replace, maps (`env`, `config`)
/// merge key by key, nested blocks merge field by field.
fn merge(base: &RawHarper, over: Option<&RawHarper>) -> RawHarper {
    let Some(o) = over else { return base.clone() };
    let b = base.clone();
    fn map<V: Clone>(
        b: Option<BTreeMap<String, V>>,
        o: &Option<BTreeMap<String, V>>,
    ) -> Option<BTreeMap<String, V>> {
        match (b, o) {
            (Some(mut b), Some(o)) => {
                b.extend(o.clone());
                Some(b)
            }
            (b, o) => o.clone().or(b),
        }
    }
    macro_rules! block {
        ($b:expr, $o:expr, $($f:ident),+) => {
            match ($b, $o) {
                (Some(mut b), Some(o)) => { $( if o.$f.is_some() { b.$f = o.$f.clone(); } )+ Some(b) }
                (b, o) => o.clone().or(b),
            }
        };
    }
    RawHarper {
        package: o.package.clone().or(b.package),
        bin: o.bin.clone().or(b.bin),
        runtime: o.runtime.or(b.runtime),
        template: o.template.or(b.template),
        threads: o.threads.or(b.threads),
        args: o.args.clone().or(b.args),
        config: match (b.config, &o.config) {
            (Some(mut b), Some(o)) => {
                b.extend(o.clone());
                Some(b)
            }
            (b, o) => o.clone().or(b),
        },
        env: map(b.env, &o.env),
        admin: block!(b.admin, &o.admin, username, password),
        fixtures: o.fixtures.clone().or(b.fixtures),
        ports: block!(b.ports, &o.ports, operations, http, mqtt, mqtts, replication, https),
        ready: block!(b.ready, &o.ready, marker, probe),
        startup: block!(b.startup, &o.startup, idle, max),
        teardown: block!(b.teardown, &o.teardown, grace, port_release),
        boot: o.boot.or(b.boot),
        instances: o.instances.or(b.instances),
    }
}
