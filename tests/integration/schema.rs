//! `harper-shard schema`: the plan's JSON Schema, derived from the types that parse plans. The
//! example plans pass it, the committed copy editors read is current, and every bad plan the
//! parser refuses for its shape fails it too. `schema --control`: the control socket's, current
//! in docs/control.schema.json, which the node client's mock checks its requests against.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn printed_schema() -> Value {
    printed(&[])
}

fn printed(args: &[&str]) -> Value {
    let out = std::process::Command::new(support::harper_shard())
        .arg("schema")
        .args(args)
        .output()
        .expect("run harper-shard schema");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&printed_schema()).expect("the schema is a valid JSON Schema")
}

/// A plan as the JSON value an editor's YAML language server checks; `None` when the YAML
/// itself cannot be read (that is the parser's error, not the schema's).
/// Read with the plan's own limits, so that an alias bomb stays small.
fn as_json(text: &str) -> Option<Value> {
    harper_shard::plan::load::parse_as::<Value>(Path::new("p.yml"), text).ok()
}

fn errors(v: &jsonschema::Validator, plan: &Value) -> Vec<String> {
    v.iter_errors(plan).map(|e| format!("{} at {}", e, e.instance_path)).collect()
}

#[test]
fn the_committed_schema_is_what_harper_shard_schema_prints() {
    let committed: Value =
        serde_json::from_str(&support::read(&root().join("docs/plan.schema.json"))).expect("JSON");
    assert_eq!(
        committed,
        printed_schema(),
        "docs/plan.schema.json is stale: run `harper-shard schema > docs/plan.schema.json`"
    );
}

#[test]
fn the_committed_control_schema_is_what_harper_shard_schema_control_prints() {
    let committed: Value =
        serde_json::from_str(&support::read(&root().join("docs/control.schema.json")))
            .expect("JSON");
    assert_eq!(
        committed,
        printed(&["--control"]),
        "docs/control.schema.json is stale: run `harper-shard schema --control > docs/control.schema.json`"
    );
}

/// The schema takes what `ctl` and the node client send and what the tool answers, and refuses
/// the shapes the tool refuses: unknown ops, fields an op does not take, values out of range.
#[test]
fn the_control_schema_takes_requests_and_answers_and_refuses_what_the_socket_refuses() {
    let schema = printed(&["--control"]);
    let v = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let instance = serde_json::json!({
        "id": "i1", "name": "auth", "state": "running", "hostname": "127.0.0.5",
        "operations_url": "http://127.0.0.5:9925", "http_url": "http://127.0.0.5:9926", "mqtt_url": "mqtt://127.0.0.5:1883",
        "admin": {"username": "admin", "password": "p"}, "harper": {"package": "harperdb@4.7.29"},
        "rootpath": "/tmp/r", "log_dir": "/tmp/r/log", "pid": 4, "exit": null,
    });
    let good = [
        serde_json::json!({"op": "status"}),
        serde_json::json!({"op": "stop", "id": "main", "grace_ms": 2000}),
        serde_json::json!({"op": "start", "name": "auth", "env": {"A": "1"}, "startup": {"max": "90s"}}),
        serde_json::json!({"op": "start", "id": "main", "bin": "/abs/harper.js"}),
        serde_json::json!({"ok": true, "instance": instance}),
        serde_json::json!({"ok": true, "instances": [instance, {"id": "i2", "state": "busy"}]}),
        serde_json::json!({"ok": true, "id": "i1"}),
        serde_json::json!({"ok": false, "code": "not_found", "error": "no instance `i9`", "tail": []}),
    ];
    for line in &good {
        assert!(
            v.is_valid(line),
            "refused: {line}: {:?}",
            v.iter_errors(line).map(|e| e.to_string()).collect::<Vec<_>>()
        );
    }
    let bad = [
        serde_json::json!({"op": "fly"}),
        serde_json::json!({"id": "main"}),
        serde_json::json!({"op": "restart", "id": "main", "bin": "v2"}),
        serde_json::json!({"op": "start", "id": "main", "config": {"a": 1}}),
        serde_json::json!({"op": "start", "nmae": "typo"}),
        serde_json::json!({"op": "start", "boot": false}),
        serde_json::json!({"op": "start", "name": ""}),
        serde_json::json!({"op": "stop", "grace_ms": 600001}),
        serde_json::json!({"op": "stop", "id": 7}),
        serde_json::json!({"ok": false, "code": "no_such_code", "error": "x"}),
    ];
    let passed: Vec<&Value> = bad.iter().filter(|line| v.is_valid(line)).collect();
    assert!(passed.is_empty(), "the schema takes what the socket refuses: {passed:?}");
}

#[test]
fn every_key_has_a_description_and_an_example() {
    let schema = printed_schema();
    let mut bare = Vec::new();
    let mut objects = vec![("plan".to_owned(), &schema)];
    for (name, def) in schema["$defs"].as_object().unwrap() {
        objects.push((name.clone(), def));
    }
    let mut keys = 0;
    for (name, object) in objects {
        for (key, property) in object["properties"].as_object().into_iter().flatten() {
            keys += 1;
            if property.get("description").is_none() || property.get("examples").is_none() {
                bare.push(format!("{name}.{key}"));
            }
        }
    }
    assert!(keys > 40, "only {keys} keys found: is the schema whole?");
    assert!(bare.is_empty(), "keys without a description or an example: {bare:?}");
}

#[test]
fn every_example_plan_and_the_readmes_reference_plan_pass_the_schema_and_name_it() {
    let v = validator();
    let mut plans: Vec<PathBuf> =
        ["examples/harper-shards.yml", "examples/migration/harper-shards.yml"]
            .iter()
            .map(|p| root().join(p))
            .collect();
    plans.retain(|p| p.is_file());
    assert_eq!(plans.len(), 2, "the example plans moved");
    for plan in &plans {
        let text = support::read(plan);
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("# yaml-language-server: $schema="),
            "{} has no schema modeline: {first}",
            plan.display()
        );
        let schema_path =
            plan.parent().unwrap().join(first.split_once("$schema=").unwrap().1.trim());
        assert!(
            schema_path.is_file(),
            "{}'s modeline points at {}, which is not there",
            plan.display(),
            schema_path.display()
        );
        let json = as_json(&text).expect("the example plan is YAML");
        let errs = errors(&v, &json);
        assert!(errs.is_empty(), "{} fails the schema: {errs:?}", plan.display());
    }
    let readme = support::read(&root().join("README.md"));
    let reference = readme
        .split("## The plan (version 1)")
        .nth(1)
        .and_then(|s| s.split("```yaml\n").nth(1))
        .and_then(|s| s.split("```").next());
    let json = as_json(reference.expect("the README has its reference plan"))
        .expect("the reference plan is YAML");
    let errs = errors(&v, &json);
    assert!(errs.is_empty(), "the README's reference plan fails the schema: {errs:?}");
}

/// A bad plan is *structural* when the parser refuses it while reading the plan's shape (an
/// unknown key, a wrong type, a value out of range) rather than in resolution (duplicate names,
/// a fixture that is missing…). Each such plan must fail the schema too; a duration's ceiling
/// is the one range only the tool checks.
/// The bad plans refused for something a schema cannot say, and what their refusal says: a
/// duration past its ceiling. (Tagged plans and the alias bomb do not become JSON at all.)
const NOT_THE_SHAPE: [(&str, &str); 6] = [
    ("duration-too-long", "is too long: use one"),
    ("grace-too-long", "is too long: use one"),
    ("pool-wait-too-long", "is too long: use one"),
    ("port-release-too-long", "is too long: use one"),
    ("shard-timeout-too-long", "is too long: use one"),
    ("startup-max-too-long", "is too long: use one"),
];

#[test]
fn every_bad_plan_the_parser_refuses_for_its_shape_fails_the_schema() {
    let v = validator();
    let dir = root().join("tests/plans/bad");
    let mut structural = 0;
    let mut passed = Vec::new();
    let mut skipped = Vec::new();
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for plan in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "yml")) {
        // The corpus holds a link to /dev/zero and a file that is not UTF-8: not plans to check.
        if !plan.symlink_metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(plan) else { continue };
        let Some(json) = as_json(&text) else { continue };
        let Err(refused) = harper_shard::plan::load::parse(Path::new("p.yml"), &text) else {
            continue;
        };
        // A duration past its ceiling, which a pattern cannot express: named one by one, each
        // checked to be refused for that reason.
        let name = plan.file_stem().unwrap().to_string_lossy();
        if let Some((_, why)) = NOT_THE_SHAPE.iter().find(|(n, _)| *n == name) {
            assert!(
                refused.message.contains(why),
                "{name} is listed as refused for `{why}`, but: {}",
                refused.message
            );
            skipped.push(name.into_owned());
            continue;
        }
        structural += 1;
        if v.is_valid(&json) {
            passed.push(format!(
                "{}: {}",
                plan.file_name().unwrap().to_string_lossy(),
                refused.message
            ));
        }
    }
    assert!(structural >= 15, "only {structural} structural bad plans: is the corpus there?");
    assert!(passed.is_empty(), "bad plans the schema lets through:\n{}", passed.join("\n"));
    skipped.sort();
    let mut listed: Vec<String> = NOT_THE_SHAPE.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(
        skipped, listed,
        "every plan listed as not the shape's is in the corpus and refused"
    );
}
