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

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub version: Spanned<u64>,
    #[serde(default)]
    pub harper: RawHarper,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub run: RawRun,
    pub shards: Spanned<Vec<RawShard>>,
}

/// How one instance is started. Every key is optional so that a shard's block can override
/// just the keys it names.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHarper {
    pub package: Option<String>,
    pub bin: Option<String>,
    pub runtime: Option<Runtime>,
    pub args: Option<Vec<Spanned<String>>>,
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    pub env: Option<BTreeMap<String, String>>,
    pub admin: Option<RawAdmin>,
    pub fixtures: Option<Vec<String>>,
    pub ports: Option<RawPorts>,
    pub ready: Option<RawReady>,
    pub startup: Option<RawStartup>,
    pub teardown: Option<RawTeardown>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPorts {
    pub operations: Option<Port>,
    pub http: Option<Port>,
    pub mqtt: Option<Port>,
    pub mqtts: Option<Port>,
    pub replication: Option<Port>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    pub marker: Option<String>,
    pub probe: Option<Probe>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStartup {
    pub idle: Option<Dur>,
    pub max: Option<Dur>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeardown {
    pub grace: Option<Dur>,
    pub port_release: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub start: Option<Spanned<Address>>,
    pub count: Option<Spanned<u32>>,
    pub wait: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    pub concurrency: Option<Concurrency>,
    pub fail_fast: Option<bool>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShard {
    pub name: Spanned<String>,
    pub run: Spanned<Commands>,
    pub env: Option<BTreeMap<String, String>>,
    pub timeout: Option<Dur>,
    pub files: Option<Spanned<String>>,
    pub split: Option<Spanned<u32>>,
    pub harper: Option<RawHarper>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// `node <bin> …`
    Node,
    /// `bun <bin> …`
    Bun,
    /// `<bin> …` run directly: a wrapper script, or the fake server of the test suite.
    Exec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    None,
    Tcp,
    Http,
}

/// A duration written with a unit (`90s`, `2m`, `1h 30m`, `500ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map(Dur).map_err(de::Error::custom)
    }
}

/// Parses a duration the way the plan and the `*_MS` fallbacks need it, with a message that
/// says how to write one.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration `{text}`: a number needs a unit, e.g. `{trimmed}s` or `{trimmed}ms`"
        ));
    }
    match humantime::parse_duration(trimmed) {
        Ok(d) if d.is_zero() => Err(format!("invalid duration `{text}`: must be longer than zero")),
        Ok(d) => Ok(d),
        Err(_) => Err(format!("invalid duration `{text}`: write it like `500ms`, `90s`, `2m` or `1h 30m`")),
    }
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Port(p)),
            _ => Err(de::Error::custom(format!(
                "port {n} is out of range: use a number from 1 to 65535"
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
        let bad = || {
            de::Error::custom(format!(
                "concurrency `{text}` is not valid: use `auto` or a whole number of at least 1"
            ))
        };
        match text.trim() {
            "auto" => Ok(Concurrency::Auto),
            n => match n.parse::<usize>() {
                Ok(0) | Err(_) => Err(bad()),
                Ok(n) => Ok(Concurrency::Fixed(n)),
            },
        }
    }
}

/// A shard's `run`: one command for `sh -c`, or a list run in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands(pub Vec<String>);

impl<'de> Deserialize<'de> for Commands {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Commands;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of command strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Commands, E> {
                Ok(Commands(vec![s.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Commands, A::Error> {
                let mut out = Vec::new();
                while let Some(cmd) = seq.next_element::<String>()? {
                    out.push(cmd);
                }
                Ok(Commands(out))
            }
        }
        d.deserialize_any(V)
    }
}
