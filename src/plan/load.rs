//! Reading a plan file into the raw schema, with every parse and type error turned into a
//! [`PlanError`] that points at the line.
//!
//! The budget is far below serde-saphyr's defaults on purpose: a plan is a few hundred lines,
//! so a YAML alias bomb or a runaway document is refused in milliseconds instead of eating the
//! CI machine's memory.

use std::path::Path;

use serde_saphyr::{Budget, Error as YamlError};

use super::error::PlanError;
use super::schema::RawPlan;

/// Keys the plan accepts, per block, for "did you mean" suggestions.
const KNOWN_KEYS: &[&str] = &[
    "version", "harper", "pool", "run", "shards", "package", "bin", "runtime", "args", "config",
    "env", "admin", "fixtures", "ports", "ready", "startup", "teardown", "username", "password",
    "operations", "http", "mqtt", "mqtts", "replication", "marker", "probe", "idle", "max",
    "grace", "port_release", "start", "count", "wait", "concurrency", "fail_fast", "timeout",
    "name", "files", "split",
];

/// Reads and parses `path`. The error owns everything needed to render it.
pub fn load(path: &Path) -> Result<(RawPlan, String), PlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "create it (see examples/harper-shards.yml), or pass the plan's path as the first argument"
            }
            _ => "check that the file is readable and is UTF-8 text",
        };
        PlanError::new(path, format!("cannot read the plan: {e}")).hint(hint)
    })?;
    let raw = parse(path, &text)?;
    Ok((raw, text))
}

/// Parses plan text; `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<RawPlan, PlanError> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| translate(path, text, &e))
}

fn options() -> serde_saphyr::Options {
    let mut budget = Budget::default();
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.max_nodes = 2_000_000;
    budget.max_documents = 1;
    let mut aliases = serde_saphyr::options::AliasLimits::default();
    aliases.max_total_replayed_events = 100_000;
    serde_saphyr::options! {
        budget: Some(budget),
        alias_limits: aliases,
        with_snippet: false,
    }
}

fn translate(path: &Path, text: &str, err: &YamlError) -> PlanError {
    let err = err.without_snippet();
    let message = clean_message(&err.to_string());
    let mut out = PlanError::new(path, message.clone());
    if let Some(loc) = err.location() {
        out = out.at(loc.line(), loc.column());
    }
    if let Some(hint) = hint_for(&message, text) {
        out = out.hint(hint);
    }
    out.with_source(text)
}

/// serde-saphyr appends its own "at line X column Y"; we render the location ourselves.
fn clean_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message);
    match first.find(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}

fn hint_for(message: &str, text: &str) -> Option<String> {
    if let Some(key) = between(message, "unknown field `", "`") {
        return Some(match did_you_mean(key) {
            Some(near) => format!("did you mean `{near}`? Unknown keys are refused so that a typo cannot be ignored"),
            None => format!("remove `{key}`: it is not a key of plan version 1 (see the plan reference in the README)"),
        });
    }
    if message.contains("missing field `shards`") {
        return Some("add a `shards:` list with at least one shard".into());
    }
    if message.contains("missing field `version`") {
        return Some("start the plan with `version: 1`".into());
    }
    if message.contains("missing field `run`") {
        return Some("give the shard a `run:` command (a string, or a list of strings)".into());
    }
    if message.contains("budget") || message.contains("alias") && message.contains("limit") {
        return Some("the plan expands to far more than a plan needs: look for anchors (&) and aliases (*) that refer to each other".into());
    }
    if message.to_lowercase().contains("tab") || text.lines().any(|l| l.starts_with('\t')) {
        return Some("YAML indentation must use spaces, not tabs".into());
    }
    if message.contains("duplicate") {
        return Some("each key may appear only once in a mapping".into());
    }
    None
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

fn did_you_mean(key: &str) -> Option<&'static str> {
    KNOWN_KEYS
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}
