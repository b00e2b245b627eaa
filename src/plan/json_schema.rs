//! The plan's JSON Schema (`harper-shard schema`), derived from the types in [`super::schema`]
//! that parse it. The scalar types with their own `Deserialize` (durations, counts, ports,
//! addresses) say here what they take; the bounds come from [`super::limits`], as the parser's.
//!
//! The schema checks shape, types and ranges as an editor can; what needs more than one value
//! (unique names, `split` without `files`, ports that collide) only the tool checks.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value;

use super::limits::{self, MAX_CONCURRENCY, MAX_INSTANCES, MAX_POOL_COUNT, MAX_SPLIT, MAX_THREADS};
use super::schema::{
    Address, Commands, Concurrency, Day, Dur, Instances, PoolCount, Port, RawPlan, Retries, Split,
    Threads, Weight,
};

/// The whole schema, as `harper-shard schema` prints it (and `docs/plan.schema.json` holds, for
/// the example plans' `yaml-language-server` modeline).
pub fn plan_schema() -> Value {
    schemars::schema_for!(RawPlan).to_value()
}

/// A duration with a unit, as humantime reads it (`90s`, `1h 30m`). Whether it is within range
/// is the tool's check: a pattern cannot say "at most 24h".
const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(nsec|ns|usec|us|µs|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\s*)+$";

impl<const MAX_SECS: u64> JsonSchema for Dur<MAX_SECS> {
    fn schema_name() -> Cow<'static, str> {
        format!("Duration{MAX_SECS}s").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let range = limits::duration_range(std::time::Duration::from_secs(MAX_SECS));
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": format!("A duration with a unit (`500ms`, `90s`, `2m`, `1h 30m`), {range}."),
            "examples": ["90s", "2m"],
        })
    }
}

fn count(name: &'static str, what: &str, min: u32, max: u32) -> (Cow<'static, str>, Schema) {
    let schema = json_schema!({
        "type": "integer",
        "minimum": min,
        "maximum": max,
        "description": format!("A whole number of {what}, {min} to {max}."),
    });
    (name.into(), schema)
}

macro_rules! count_schema {
    ($ty:ty, $name:literal, $what:literal, $max:expr) => {
        count_schema!($ty, $name, $what, 1, $max);
    };
    ($ty:ty, $name:literal, $what:literal, $min:expr, $max:expr) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                count($name, $what, $min, $max).0
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                count($name, $what, $min, $max).1
            }
        }
    };
}

count_schema!(PoolCount, "PoolCount", "addresses", MAX_POOL_COUNT);
count_schema!(Instances, "Instances", "instances", MAX_INSTANCES);
count_schema!(Split, "Split", "parts", MAX_SPLIT);
count_schema!(Threads, "Threads", "worker threads (0: the single-thread mode)", 0, MAX_THREADS);

impl JsonSchema for Retries {
    fn schema_name() -> Cow<'static, str> {
        "Retries".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 0,
            "maximum": limits::MAX_RETRIES,
            "description": format!("How many more times a failed shard is tried, each on a fresh instance: 0 to {}.", limits::MAX_RETRIES),
        })
    }
}

impl JsonSchema for Day {
    fn schema_name() -> Cow<'static, str> {
        "Day".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])\s*$",
            "description": "A day, YYYY-MM-DD (UTC), that the month has.",
            "examples": ["2026-12-31"],
        })
    }
}

impl JsonSchema for Port {
    fn schema_name() -> Cow<'static, str> {
        "Port".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "minimum": 1, "maximum": 65535, "description": "A TCP port, 1 to 65535." })
    }
}

impl JsonSchema for Address {
    fn schema_name() -> Cow<'static, str> {
        "LoopbackAddress".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\s*$",
            "description": "An IPv4 address in 127.0.0.0/8.",
            "examples": ["127.0.0.2"],
        })
    }
}

impl JsonSchema for Concurrency {
    fn schema_name() -> Cow<'static, str> {
        "Concurrency".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "const": "auto" },
                { "type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY },
            ],
            "description": format!("`auto` (half the CPUs plus one), or 1 to {MAX_CONCURRENCY} shards at once."),
        })
    }
}

impl JsonSchema for Commands {
    fn schema_name() -> Cow<'static, str> {
        "Commands".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "oneOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } },
            ],
            "description": "One command for `sh -c`, or a list of commands run in order.",
        })
    }
}

impl JsonSchema for Weight {
    fn schema_name() -> Cow<'static, str> {
        "Weight".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let max = limits::MAX_DURATION.as_secs();
        json_schema!({
            "oneOf": [
                { "type": "number", "minimum": 0, "maximum": max },
                { "type": "string", "pattern": DURATION_PATTERN },
            ],
            "description": format!("Seconds (`90`, `2.5`) or a duration with a unit (`90s`), up to {max} s."),
        })
    }
}
