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
    aliases.max_total_replayed_events = 10_000;
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
        let expected = message.split_once("expected one of ").map_or("", |(_, list)| list);
        let candidates: Vec<&str> = expected.split(", ").map(|k| k.trim_matches('`')).collect();
        return Some(match did_you_mean(key, &candidates) {
            Some(near) => format!("did you mean `{near}`? Unknown keys are refused so that a typo cannot be ignored"),
            None => format!("remove `{key}`: it is not a key here in plan version 1 (see the plan reference in the README)"),
        });
    }
    let known = [
        ("missing field `shards`", "add a `shards:` list with at least one shard"),
        ("missing field `version`", "start the plan with `version: 1`"),
        ("missing field `run`", "give the shard a `run:` command (a string, or a list of strings)"),
        ("missing field `name`", "give the shard a `name:`"),
        ("expected sequence", "this must be a list: one `- item` line per entry"),
        ("expected mapping", "this must be a mapping of `key: value` lines"),
        ("invalid boolean", "use `true` or `false`"),
        ("budget", "the plan expands to far more than a plan needs: look for anchors (&) and aliases (*) that refer to each other"),
        ("alias", "the plan expands to far more than a plan needs: look for anchors (&) and aliases (*) that refer to each other"),
        ("quoted scalar", "a quoted string may not end where you meant: check the quotes on this line and the line before"),
        ("duplicate", "each key may appear only once in a mapping"),
    ];
    if let Some((_, hint)) = known.iter().find(|(needle, _)| message.contains(needle)) {
        return Some((*hint).to_owned());
    }
    if message.to_lowercase().contains("tab") || text.lines().any(|l| l.starts_with('\t')) {
        return Some("YAML indentation must use spaces, not tabs".into());
    }
    None
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

fn did_you_mean<'a>(key: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}
