//! Reading a plan file into the raw schema, with every read, parse and type error turned into a
//! [`PlanError`] that points at the line and speaks in plan terms, not in the YAML library's.
//!
//! The budget is far below serde-saphyr's defaults on purpose: a plan is a few hundred lines,
//! so a YAML alias bomb or a runaway document is refused in milliseconds instead of eating the
//! CI machine's memory. The file itself is read only if it is a regular file of at most
//! [`PLAN_BYTES`].
//!
//! YAML tags are refused before the document is deserialised: serde-saphyr honours some
//! (`!!binary` decodes base64, so `run: !!binary …` would run a command nobody can read in the
//! plan) and drops others silently. A plan's meaning must be what it says.

use std::path::Path;

use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::{Event, Parser};
use serde_saphyr::{Budget, Error as YamlError};

use super::error::PlanError;
use super::file::{self, ReadError};
use super::limits::PLAN_BYTES;
use super::schema::RawPlan;

/// Reads and parses `path`. The error owns everything needed to render it.
pub fn load(path: &Path) -> Result<(RawPlan, String), PlanError> {
    let bytes = file::read_bounded(path, PLAN_BYTES).map_err(|e| {
        let hint = match e {
            ReadError::NotFound => {
                "create it (see examples/harper-shards.yml), or pass the plan's path as the first argument"
            }
            ReadError::NotRegular(_) => "pass the path of the plan file itself: pipes, devices and directories are not read",
            ReadError::TooLarge { .. } => "a plan is a few hundred lines: check that this is the plan file",
            ReadError::Io(_) => "check that the file is readable",
        };
        PlanError::new(path, format!("cannot read the plan: {e}")).hint(hint)
    })?;
    let text = utf8(path, bytes)?;
    let raw = parse(path, &text)?;
    Ok((raw, text))
}

/// The plan as text, or an error at the first byte that is not UTF-8.
fn utf8(path: &Path, bytes: Vec<u8>) -> Result<String, PlanError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let good = &bytes[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        let byte = bytes[good.len()];
        PlanError::new(path, format!("byte 0x{byte:02X} is not UTF-8 text"))
            .at(line as u64, column as u64)
            .hint("save the plan as UTF-8: YAML is read as UTF-8, and this byte is from another encoding (Latin-1?) or not text")
            .with_source(&String::from_utf8_lossy(bytes))
    })
}

/// Parses plan text; `path` only names the file in errors.
pub fn parse(path: &Path, text: &str) -> Result<RawPlan, PlanError> {
    parse_as(path, text)
}

/// Parses a part of a plan (a control request's `harper` keys) with the plan's rules.
pub fn parse_as<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, PlanError> {
    refuse_tags(path, text)?;
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

/// The first explicit tag (`!!binary`, `!!str`, `!custom`, `!`) anywhere in the document is an
/// error. The scan only reads events: a syntax error ends it, and the deserialiser reports it.
fn refuse_tags(path: &Path, text: &str) -> Result<(), PlanError> {
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { return Ok(()) };
        let tag = match &event {
            Event::Scalar(_, _, _, Some(tag))
            | Event::SequenceStart(_, _, Some(tag))
            | Event::MappingStart(_, _, Some(tag)) => tag,
            _ => continue,
        };
        let at = span.tag_start.unwrap_or(span.start);
        return Err(PlanError::new(path, format!("YAML tag `{}` is not allowed in a plan", tag.original()))
            .at(at.line() as u64, at.col() as u64 + 1)
            .hint("remove the tag and write the value itself: a tag changes what a value means (`!!binary` hides a command), so a plan has none")
            .with_source(text));
    }
    Ok(())
}

fn translate(path: &Path, text: &str, err: &YamlError) -> PlanError {
    let outer = err.without_snippet();
    // An error inside an alias's replay: what went wrong is the inner error; where is the
    // outer one's location, the use of the alias.
    let inner = match outer {
        YamlError::AliasError { error, .. } => error.as_ref(),
        other => other,
    };
    let (message, hint) = describe(inner, text);
    let mut out = PlanError::new(path, message.clone());
    if let Some(loc) = outer.location() {
        out = out.at(loc.line(), loc.column());
    }
    if let Some(hint) = hint.or_else(|| hint_for(&message, text)) {
        out = out.hint(hint);
    }
    out.with_source(text)
}

/// Plan words for the errors whose library text names Rust types or serde-saphyr options;
/// every other message is the library's first line, without its own location suffix.
fn describe(err: &YamlError, text: &str) -> (String, Option<String>) {
    let own = |m: &str, h: &str| (m.to_owned(), Some(h.to_owned()));
    match err {
        YamlError::Eof { .. } if is_blank(text) => own(
            "the plan is empty",
            "start it with `version: 1` and a `shards:` list (see examples/harper-shards.yml)",
        ),
        YamlError::Eof { .. } => own(
            "the plan ends before it is complete",
            "a plan is one mapping that starts with `version: 1`; check the end of the file",
        ),
        YamlError::NullIntoString { .. } => own(
            "this value is empty (null) where the plan needs text",
            "write the value, quoted if it starts with a special character; to use the default, remove the key",
        ),
        YamlError::DuplicateMappingKey { key, .. } => (
            match key {
                Some(k) => format!("`{k}` is given twice in this mapping"),
                None => "a key is given twice in this mapping".to_owned(),
            },
            Some("each key may appear only once in a mapping: keep one".to_owned()),
        ),
        YamlError::MultipleDocuments { .. } | YamlError::Budget { breach: BudgetBreach::Documents { .. }, .. } => own(
            "the file holds more than one YAML document",
            "a plan is one document: remove the `---` line and what follows it, or split it into two plan files",
        ),
        YamlError::Budget { .. } => own(
            "the plan nests or repeats far more than a plan needs",
            "a plan is a few hundred lines, at most 32 levels deep: look for anchors (&) and aliases (*) that refer to each other, or deeply nested lists",
        ),
        YamlError::AliasReplayLimitExceeded { .. }
        | YamlError::AliasExpansionLimitExceeded { .. }
        | YamlError::AliasReplayStackDepthExceeded { .. }
        | YamlError::AliasReplayCounterOverflow { .. } => own(
            "the plan's aliases expand to far more than a plan needs",
            "look for anchors (&) and aliases (*) that refer to each other",
        ),
        YamlError::UnknownAnchor { .. } => own(
            "this alias refers to no anchor",
            "define the anchor (`&name`) before the alias (`*name`) that uses it, or write the value out",
        ),
        YamlError::InvalidScalar { ty, .. } => match *ty {
            "boolean" | "bool" => own("invalid boolean", "use `true` or `false`"),
            "floating point" | "f32" | "f64" => own("this is not a number", "write a number, e.g. `1.5`"),
            _ => own("this is not a whole number", "write a whole number, e.g. `1`"),
        },
        YamlError::NonFiniteFloat { value, .. } => (
            format!("`{value}` is not a finite number"),
            Some("config values are passed to Harper as JSON, which has no NaN or infinity: quote it if it is text".to_owned()),
        ),
        YamlError::Unexpected { expected, .. } => match *expected {
            "sequence start" => own("expected a list here", "this must be a list: one `- item` line per entry"),
            "mapping start" => own("expected a mapping here", "this must be a mapping of `key: value` lines"),
            e if e.contains("scalar") => own(
                "expected a single value here, not a list or mapping",
                "write the value on this line, e.g. `key: value`",
            ),
            e => (format!("expected {e} here"), None),
        },
        other => (clean_message(&other.to_string()), None),
    }
}

/// Nothing but whitespace and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
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
            Some(near) => format!(
                "did you mean `{near}`? Unknown keys are refused so that a typo cannot be ignored"
            ),
            None => format!(
                "remove `{key}`: it is not a key here in plan version 1 (see the plan reference in the README)"
            ),
        });
    }
    let known = [
        ("missing field `shards`", "add a `shards:` list with at least one shard"),
        ("missing field `version`", "start the plan with `version: 1`"),
        ("missing field `run`", "give the shard a `run:` command (a string, or a list of strings)"),
        ("missing field `name`", "give the shard a `name:`"),
        (
            "quoted scalar",
            "a quoted string may not end where you meant: check the quotes on this line and the line before",
        ),
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
