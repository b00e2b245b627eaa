//! The control socket's wire types (docs/control.md): one [`Request`] per line in, one
//! [`Answer`] per line out. The server (`control`) and the client (`crate::ctl`) both read and
//! write these, and `harper-shard schema --control` (docs/control.schema.json) is derived from
//! them, so the three cannot disagree.
//!
//! Serde refuses what a request may not carry: every op's struct denies unknown fields, and the
//! Harper keys of a `start` go to the plan's own `RawHarper` (a new instance) or to [`Switch`]
//! (a stopped one), which deny theirs. What needs the plan's rules (paths, merges, installs) is
//! checked later, by `plan::resolve`.
//!
//! Not here: what a request does (`control`), how `ctl` prints an answer (`crate::ctl`).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::plan::HarperSource;
use crate::plan::limits::{MAX_TEARDOWN, NAME_BYTES};
use crate::plan::schema::{RawHarper, Runtime};

/// The variable that tells a shard's commands where their control socket is.
pub const CONTROL_VAR: &str = "HARPER_SHARD_CONTROL";

/// The longest request line taken.
pub const MAX_LINE: usize = 64 * 1024;

/// The ops, as a person is told them.
pub const OPS: &str = "status, start, stop, restart, kill or release";

/// One request line.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// With `id`: that instance; without: every instance of the shard.
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
    },
    /// With `id`: boots a stopped instance again (on another Harper with `package` or `bin`);
    /// without: starts a new on-demand instance from Harper keys.
    Start(Start),
    /// SIGTERM, the grace, SIGKILL; ROOTPATH and address are kept.
    Stop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_ms: Option<GraceMs>,
    },
    /// `stop`, then `start`.
    Restart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_ms: Option<GraceMs>,
    },
    /// SIGKILL to Harper's process group, as a crash would.
    Kill {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
    },
    /// Tears an on-demand instance down for good.
    Release {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Id>,
    },
    /// An `op` that is none of the above: answered `unknown_op`, naming it.
    #[serde(other, skip_serializing)]
    #[schemars(skip)]
    Unknown,
}

/// Why a request line is refused before anything acts on it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub code: Code,
    pub error: String,
}

impl Request {
    /// Reads one request line.
    pub fn parse(bytes: &[u8]) -> Result<Request, Refused> {
        let refuse = |code, error: String| Refused { code, error };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| refuse(Code::BadRequest, format!("not JSON: {e}")))?;
        let op = match &value {
            Value::Object(map) => match map.get("op") {
                Some(Value::String(op)) => op.clone(),
                _ => return Err(refuse(Code::UnknownOp, format!("a request needs `op`: {OPS}"))),
            },
            _ => {
                return Err(refuse(
                    Code::BadRequest,
                    "a request is a JSON object with an `op`".into(),
                ));
            }
        };
        match Request::deserialize(value) {
            Ok(Request::Unknown) => {
                Err(refuse(Code::UnknownOp, format!("unknown op `{}`: use {OPS}", excerpt(&op))))
            }
            Ok(request) => Ok(request),
            Err(e) => Err(refuse(Code::BadRequest, format!("`{}`: {e}", excerpt(&op)))),
        }
    }
}

/// A `start`: of the instance `id` when it is given, else of a new instance.
///
/// The Harper keys are kept as they came: for a new instance they are a plan's `harper` block,
/// read by the plan's parser so that its messages are the plan's; for a stopped one, a
/// [`Switch`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Start {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Label>,
    #[serde(flatten)]
    pub harper: Map<String, Value>,
}

/// What a `start` asks for, its keys sorted out.
pub enum StartOf {
    /// A stopped instance, on the Harper `switch` names when it names one.
    Existing { id: String, switch: Option<Map<String, Value>> },
    /// A new instance: its label, and its Harper keys as a plan's `harper` block.
    New { name: Option<String>, harper: Map<String, Value> },
}

impl Start {
    pub fn sort(self) -> Result<StartOf, Refused> {
        let Some(Id(id)) = self.id else {
            return Ok(StartOf::New { name: self.name.map(|n| n.0), harper: self.harper });
        };
        let bad = |error: String| Refused { code: Code::BadRequest, error };
        if self.name.is_some() {
            return Err(bad(
                "`start` with an `id`: `name` is for a new instance (leave `id` out)".into()
            ));
        }
        if let Err(e) = Switch::deserialize(Value::Object(self.harper.clone())) {
            return Err(bad(format!(
                "`start` with an `id`: {e} (only the Harper it boots may come with it)"
            )));
        }
        Ok(StartOf::Existing { id, switch: (!self.harper.is_empty()).then_some(self.harper) })
    }
}

/// The keys a `start` of a stopped instance may carry: the Harper it boots next. `runtime` is
/// here to be refused with its reason (it cannot change), not as an unknown field.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    /// The npm spec of the Harper to boot on the instance's data.
    pub package: Option<String>,
    /// The entry script of the Harper to boot on the instance's data; an absolute path, or one
    /// from the plan's folder.
    pub bin: Option<String>,
    /// Refused: the runtime cannot change.
    pub runtime: Option<Runtime>,
}

/// The Harper keys an on-demand instance may not carry: they are the shard's.
const SHARD_ONLY_KEYS: [&str; 2] = ["boot", "instances"];

impl JsonSchema for Start {
    fn schema_name() -> Cow<'static, str> {
        "Start".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let op = json_schema!({ "const": "start" });
        let properties = |generator: &mut SchemaGenerator, name: &str| -> Map<String, Value> {
            let definition = generator.definitions().get(name).cloned();
            definition
                .and_then(|d| d.get("properties").and_then(Value::as_object).cloned())
                .unwrap_or_default()
        };
        generator.subschema_for::<Switch>();
        generator.subschema_for::<RawHarper>();
        let mut existing = properties(generator, "Switch");
        existing.insert("op".into(), op.clone().into());
        existing.insert("id".into(), generator.subschema_for::<Id>().into());
        let mut new = properties(generator, "RawHarper");
        new.retain(|key, _| !SHARD_ONLY_KEYS.contains(&key.as_str()));
        new.insert("op".into(), op.into());
        new.insert("name".into(), generator.subschema_for::<Label>().into());
        // Definitions of their own, which the enum's tagging leaves whole: inlined, it would drop
        // their `additionalProperties: false` to make room for `op`, which each names itself.
        let mut define = |name: &str,
                          description: &str,
                          properties: Map<String, Value>,
                          required: &[&str]| {
            let schema = json_schema!({
                "description": description,
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            });
            generator.definitions_mut().insert(name.into(), schema.to_value());
            json_schema!({ "$ref": format!("#{}{name}", generator.settings().definitions_path.trim_end_matches('/').to_owned() + "/") })
        };
        let existing = define(
            "StartStopped",
            "Boots the stopped instance `id` again; with `package` or `bin`, on that Harper.",
            existing,
            &["op", "id"],
        );
        let new = define(
            "StartNew",
            "Starts a new on-demand instance: every key but `op` and `name` is a key of the plan's `harper` block, merged over the shard's.",
            new,
            &["op"],
        );
        json_schema!({ "oneOf": [existing, new] })
    }
}

/// Reads a value as JSON and hands it to `check`, whose refusal is the error's message.
fn checked<'de, D: Deserializer<'de>, T>(
    d: D,
    check: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    check(&value).map_err(serde::de::Error::custom)
}

/// A value from a request, cut short and on one line, for an error answer.
pub fn excerpt(text: &str) -> String {
    let one = crate::text::one_line(text);
    if one.chars().count() > 60 {
        format!("{}…", one.chars().take(60).collect::<String>())
    } else {
        one
    }
}

fn shown(value: &Value) -> String {
    excerpt(&value.to_string())
}

/// An instance's id: `main`, `i1`, `i2`, …
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Id(pub String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |v| match v {
            Value::String(id) => Ok(Id(id.clone())),
            other => Err(format!(
                "`id` is an instance's id, a string such as \"main\" or \"i1\", not {}",
                shown(other)
            )),
        })
    }
}

impl JsonSchema for Id {
    fn schema_name() -> Cow<'static, str> {
        "Id".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An instance's id: `main` (the shard's own) or one a `start` gave (`i1`, `i2`, …).",
            "examples": ["main", "i1"],
        })
    }
}

/// A new instance's label for the reports: not empty; one over [`NAME_BYTES`] is cut, on a
/// character boundary, since a label never fails a start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label(pub String);

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |v| match v {
            Value::String(name) if !name.is_empty() => {
                Ok(Label(crate::text::prefix_within(name, NAME_BYTES).to_owned()))
            }
            other => Err(format!("`name` is a label that is not empty, not {}", shown(other))),
        })
    }
}

impl JsonSchema for Label {
    fn schema_name() -> Cow<'static, str> {
        "Label".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": format!("A label for the reports (default: the id); one over {NAME_BYTES} bytes is cut."),
            "examples": ["auth tests"],
        })
    }
}

/// How long a `stop` waits between SIGTERM and SIGKILL, 0 to the plan's longest teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraceMs(pub std::time::Duration);

impl Serialize for GraceMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0.as_millis() as u64)
    }
}

impl<'de> Deserialize<'de> for GraceMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let max = MAX_TEARDOWN.as_millis() as u64;
        checked(d, |v| match v.as_u64().filter(|ms| *ms <= max) {
            Some(ms) => Ok(GraceMs(std::time::Duration::from_millis(ms))),
            None => Err(format!(
                "`grace_ms` is a whole number of milliseconds up to {max}, not {}",
                shown(v)
            )),
        })
    }
}

impl JsonSchema for GraceMs {
    fn schema_name() -> Cow<'static, str> {
        "GraceMs".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let max = MAX_TEARDOWN.as_millis() as u64;
        json_schema!({
            "type": "integer",
            "minimum": 0,
            "maximum": max,
            "description": format!("Milliseconds between SIGTERM and SIGKILL, 0 to {max} (default: the plan's `teardown.grace`)."),
            "examples": [2000],
        })
    }
}

/// `ok`, as a type: `Okay<true>` is written and read as `true` only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Okay<const OK: bool>;

impl<const OK: bool> Serialize for Okay<OK> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(OK)
    }
}

impl<'de, const OK: bool> Deserialize<'de> for Okay<OK> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match bool::deserialize(d)? {
            b if b == OK => Ok(Okay),
            _ => Err(serde::de::Error::custom(format!("`ok` is {OK} here"))),
        }
    }
}

impl<const OK: bool> JsonSchema for Okay<OK> {
    fn schema_name() -> Cow<'static, str> {
        format!("Ok{OK}").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "const": OK })
    }
}

/// One answer line.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Answer {
    /// To `start`, `status` with `id`, `stop`, `restart` and `kill`.
    Instance {
        ok: Okay<true>,
        instance: Box<InstanceInfo>,
    },
    /// To `status` without `id`.
    Instances {
        ok: Okay<true>,
        instances: Vec<Listed>,
    },
    /// To `release`.
    Released {
        ok: Okay<true>,
        id: String,
    },
    Error(ErrorAnswer),
}

/// A refusal or a failure.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ErrorAnswer {
    pub ok: Okay<false>,
    pub code: Code,
    /// One line saying what happened.
    pub error: String,
    /// Harper's (or npm's) last output lines, when they tell why.
    #[serde(default)]
    pub tail: Vec<String>,
}

impl Answer {
    pub fn instance(info: InstanceInfo) -> Answer {
        Answer::Instance { ok: Okay, instance: Box::new(info) }
    }

    pub fn error(code: Code, error: impl Into<String>) -> Answer {
        Answer::Error(ErrorAnswer { ok: Okay, code, error: error.into(), tail: Vec::new() })
    }

    /// The line written on the socket, without its newline.
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            serde_json::to_string(&Answer::error(
                Code::Failed,
                format!("the answer cannot be written: {e}"),
            ))
            .unwrap_or_default()
        })
    }
}

impl From<Refused> for Answer {
    fn from(r: Refused) -> Answer {
        Answer::error(r.code, r.error)
    }
}

/// What an error answer's `code` says (docs/control.md, "Answers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Not JSON, not an object, a field of the wrong type or one the op does not take.
    BadRequest,
    /// A line over 64 KiB (the connection is then closed).
    TooLarge,
    /// `op` is missing or not one of the ops.
    UnknownOp,
    /// A `start` whose Harper keys the plan's rules refuse.
    Invalid,
    /// No instance has that `id`.
    NotFound,
    /// The instance runs, and the op needs it stopped.
    Running,
    /// The instance does not run, and the op needs it running.
    NotRunning,
    /// `harper.instances` are live and none was released within the pool's wait.
    Limit,
    /// The peer is not a process of this shard.
    Refused,
    /// The `package` a `start` named could not be installed.
    InstallFailed,
    /// Harper did not become ready.
    BootFailed,
    /// Anything else that went wrong.
    Failed,
}

/// An instance in an answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InstanceInfo {
    pub id: String,
    /// The label in the reports.
    pub name: String,
    pub state: InstanceState,
    pub hostname: String,
    pub operations_url: String,
    pub http_url: String,
    pub mqtt_url: String,
    /// `https://<hostname>:<ports.https>` when the instance's `config` sets `tls` (or
    /// `http.mtls`); `null` otherwise.
    pub https_url: Option<String>,
    /// The `config`'s `tls` block, its paths absolute; `null` without one.
    pub tls: Option<serde_json::Value>,
    pub admin: AdminInfo,
    /// The Harper the instance boots.
    pub harper: HarperSource,
    pub rootpath: String,
    pub log_dir: String,
    /// Harper's pid while it runs.
    pub pid: Option<u32>,
    /// How the last run ended; `null` while it runs or before it ever stopped.
    pub exit: Option<ExitInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    Running,
    /// After `stop` or `kill`.
    Stopped,
    /// Harper ended by itself.
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AdminInfo {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ExitInfo {
    pub code: Option<i32>,
    /// The signal's name (`SIGKILL`), or its number when it has none.
    pub signal: Option<String>,
}

/// An instance in the answer to `status` without `id`: one that is busy (booting, stopping)
/// says so rather than make the answer wait.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Listed {
    Info(Box<InstanceInfo>),
    Busy { id: String, state: Busy },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Busy {
    Busy,
}

/// A line on the control socket: a request or an answer (docs/control.md).
#[derive(JsonSchema)]
#[schemars(title = "harper-shard control protocol")]
#[serde(untagged)]
#[allow(dead_code)]
enum Line {
    Request(Request),
    Answer(Answer),
}

/// The protocol's JSON Schema, as `harper-shard schema --control` prints it (and
/// docs/control.schema.json holds): requests are `#/$defs/Request`, answers `#/$defs/Answer`.
pub fn control_schema() -> Value {
    schemars::schema_for!(Line).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> Refused {
        Request::parse(line.as_bytes()).expect_err(line)
    }

    #[test]
    fn unknown_fields_are_refused_by_serde_and_named() {
        let r = refused(r#"{"op": "restart", "id": "main", "bin": "v2"}"#);
        assert_eq!(r.code, Code::BadRequest);
        assert!(r.error.contains("unknown field `bin`"), "{}", r.error);
        for op in ["status", "kill", "release"] {
            let r = refused(&format!(r#"{{"op": "{op}", "grace_ms": 5}}"#));
            assert!(r.error.contains("unknown field `grace_ms`"), "{op}: {}", r.error);
        }
    }

    #[test]
    fn a_start_with_an_id_takes_only_the_harper_it_boots() {
        let Ok(Request::Start(start)) =
            Request::parse(br#"{"op": "start", "id": "main", "config": {"a": 1}}"#)
        else {
            panic!()
        };
        let r = start.sort().err().expect("config refused");
        assert_eq!(r.code, Code::BadRequest);
        assert!(r.error.contains("unknown field `config`"), "{}", r.error);
        let Ok(Request::Start(start)) =
            Request::parse(br#"{"op": "start", "id": "i1", "package": "harperdb@4.7.29"}"#)
        else {
            panic!()
        };
        let Ok(StartOf::Existing { id, switch: Some(keys) }) = start.sort() else {
            panic!("a switch")
        };
        assert_eq!((id.as_str(), keys.len()), ("i1", 1));
    }

    #[test]
    fn ops_and_values_out_of_place_get_their_codes_and_name_the_value() {
        assert_eq!(
            refused(r#"{"op": "fly"}"#),
            Refused { code: Code::UnknownOp, error: format!("unknown op `fly`: use {OPS}") }
        );
        assert_eq!(refused(r#"{"id": "main"}"#).code, Code::UnknownOp);
        assert_eq!(refused("[1]").code, Code::BadRequest);
        let grace = refused(r#"{"op": "stop", "grace_ms": 600001}"#);
        assert!(grace.error.contains("up to 600000, not 600001"), "{}", grace.error);
        let id = refused(r#"{"op": "stop", "id": 7}"#);
        assert!(id.error.contains("`id`") && id.error.contains("not 7"), "{}", id.error);
        assert!(refused(r#"{"op": "start", "name": ""}"#).error.contains("`name`"));
    }

    #[test]
    fn a_request_ctl_writes_reads_back_the_same() {
        let start = Request::Start(Start {
            id: None,
            name: Some(Label("x".into())),
            harper: Map::from_iter([("env".into(), serde_json::json!({"A": "1"}))]),
        });
        let line = serde_json::to_string(&start).unwrap();
        assert_eq!(line, r#"{"op":"start","name":"x","env":{"A":"1"}}"#);
        let stop = serde_json::to_string(&Request::Stop {
            id: Some(Id("i1".into())),
            grace_ms: Some(GraceMs(std::time::Duration::from_secs(2))),
        })
        .unwrap();
        assert_eq!(stop, r#"{"op":"stop","id":"i1","grace_ms":2000}"#);
        assert!(
            matches!(Request::parse(stop.as_bytes()), Ok(Request::Stop { grace_ms: Some(GraceMs(d)), .. }) if d.as_millis() == 2000)
        );
    }
}
