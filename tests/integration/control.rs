//! The control socket and `harper-shard ctl` (docs/control.md), against the fake server: every
//! operation on the shard's own instance and on on-demand ones, the requests it refuses, and
//! that nothing started through it outlives its shard — whatever the client or the tool does.
//!
//! Each test has a pool of four addresses of its own (127.0.80.x). Synchronisation is on files
//! the commands write; never on sleeps.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::{Sandbox, Scene, harper_shard};

/// A raw client for requests `ctl` would never send: each argument is one line, sent on one
/// connection; the answers go to the file named first, one JSON value per line (`null` once
/// the connection is closed). `--close` sends and hangs up without reading.
const RAW: &str = r#"
import os, socket, sys
out, args = sys.argv[1], sys.argv[2:]
close = args[:1] == ["--close"]
if close:
    args = args[1:]
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["HARPER_SHARD_CONTROL"])
f = s.makefile("rwb")
answers = []
for line in args:
    line = line.replace("{BIG}", "a" * 70000)
    f.write(line.encode() + b"\n"); f.flush()
    if close:
        break
    got = f.readline()
    answers.append(got.decode().strip() or "null")
s.close()
with open(out, "w") as o:
    o.write("\n".join(answers) + "\n")
"#;

/// A scene of `count` addresses from `start` with the raw client in its sandbox.
fn raw_scene(start: &str, count: u32) -> Scene {
    let scene = Scene::new(start, count);
    scene.sandbox.write("raw.py", RAW);
    scene
}

/// What only the control tests ask of a scene.
impl Scene {
    /// The fake server's plan with this scene's pool, `extra` lines in `harper:`, and one shard
    /// `s` running `script` with `$HS` the binary (for `$HS ctl …`).
    fn plan_script(&self, extra: &str, script: &str) {
        let script = script.replace('\\', "\\\\").replace('"', "\\\"");
        let shards = format!(
            "  - name: s\n    env: {{HS: \"{}\"}}\n    run: \"{script}\"\n",
            harper_shard()
        );
        self.plan("", extra, &shards);
    }

    fn json(&self, name: &str) -> Value {
        let text = std::fs::read_to_string(self.sandbox.path(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {text}"))
    }

    /// The raw client's answers, one per request line.
    fn answers(&self, name: &str) -> Vec<Value> {
        support::read(&self.sandbox.path(name))
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON answer"))
            .collect()
    }

    fn instances(&self) -> Vec<Value> {
        self.sandbox.report()["shards"][0]["instances"].as_array().cloned().unwrap_or_default()
    }

    /// Starts the tool in the background with a shard whose command starts two on-demand
    /// instances and then sleeps; returns once both are up.
    fn start_with_two_on_demand_instances(&self) -> std::process::Child {
        self.plan_script("", "$HS ctl start --new > /dev/null && $HS ctl start --new > /dev/null && touch started && sleep 600");
        let tool = self.spawn_run();
        let started = self.sandbox.path("started");
        self.sandbox
            .wait_for("two on-demand instances", Duration::from_secs(60), || started.exists());
        tool
    }
}

fn code(answer: &Value) -> &str {
    answer["code"].as_str().unwrap_or("(none)")
}

#[test]
fn garbage_oversized_and_unknown_requests_get_json_errors_and_the_socket_keeps_serving() {
    let scene = raw_scene("127.0.80.2", 4);
    let bad = [
        "not json",
        "[1, 2]",
        r#"{"op": "fly"}"#,
        r#"{"id": "main"}"#,
        r#"{"op": "stop", "grace_ms": "soon"}"#,
        r#"{"op": "stop", "id": 7}"#,
        r#"{"op": "status", "id": "nobody"}"#,
        r#"{"op": "start", "startup": {"idle": "1x"}}"#,
        r#"{"op": "start", "package": "harperdb@1.0.0"}"#,
        r#"{"op": "release", "id": "main"}"#,
        "{BIG}",
    ];
    let args: Vec<String> = bad.iter().map(|l| format!("'{}'", l.replace('\'', "'\\''"))).collect();
    scene.plan_script(
        "",
        &format!(
            "python3 raw.py bad.txt {} && python3 raw.py good.txt '{{\"op\": \"status\"}}'",
            args.join(" ")
        ),
    );
    scene.run(&["run"]).expect(0);
    let answers = scene.answers("bad.txt");
    let codes: Vec<&str> = answers.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "bad_request",
            "bad_request",
            "unknown_op",
            "unknown_op",
            "bad_request",
            "bad_request",
            "not_found",
            "invalid",
            "invalid",
            "failed",
            "too_large"
        ],
        "{answers:#?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a["ok"] == false && a["error"].as_str().is_some_and(|e| !e.is_empty())),
        "{answers:#?}"
    );
    assert!(
        answers[7]["error"].as_str().unwrap().contains("idle"),
        "the plan's own message names the key: {}",
        answers[7]
    );
    let good = scene.answers("good.txt");
    assert_eq!(good[0]["ok"], true, "{good:?}");
    assert_eq!(good[0]["instances"][0]["state"], "running", "{good:?}");
    scene.assert_nothing_left();
}

#[test]
fn a_process_outside_the_shard_is_refused_and_the_socket_directory_is_private() {
    let scene = raw_scene("127.0.80.10", 4);
    scene.plan_script(
        "",
        "echo \"$HARPER_SHARD_CONTROL\" > socket.path; while [ ! -e done ]; do sleep 0.05; done",
    );
    let mut tool = scene.spawn_run();
    let path_file = scene.sandbox.path("socket.path");
    scene.sandbox.wait_for("the socket's path", Duration::from_secs(30), || {
        std::fs::read_to_string(&path_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let socket = support::read(&path_file).trim().to_owned();
    let dir_mode = std::fs::metadata(std::path::Path::new(&socket).parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;

    // This test process: not a process of the shard at all.
    let mut stream = UnixStream::connect(&socket).expect("connect");
    stream.write_all(b"{\"op\": \"status\"}\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).unwrap();
    // A process told the path, but not one of the shard's.
    let told = scene
        .command()
        .args(["ctl", "status"])
        .env("HARPER_SHARD_CONTROL", &socket)
        .output()
        .unwrap();

    std::fs::write(scene.sandbox.path("done"), "").unwrap();
    let status = tool.wait().unwrap();
    assert!(status.success(), "the run failed: {status}");
    assert_eq!(dir_mode, 0o700, "the socket's directory is mode {dir_mode:o}");
    let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
    assert_eq!(code(&answer), "refused", "{answer}");
    assert_eq!(told.status.code(), Some(1), "{told:?}");
    assert!(
        String::from_utf8_lossy(&told.stderr).contains("not a process of shard `s`"),
        "{told:?}"
    );
    assert!(!std::path::Path::new(&socket).exists(), "the socket outlived its shard");
    scene.assert_nothing_left();
}

#[test]
fn ctl_outside_a_shard_exits_2_and_says_to_run_it_inside_one() {
    let sandbox = Sandbox::new();
    let unset = sandbox
        .command()
        .args(["ctl", "status"])
        .env_remove("HARPER_SHARD_CONTROL")
        .output()
        .unwrap();
    assert_eq!(unset.status.code(), Some(2), "{unset:?}");
    assert!(
        String::from_utf8_lossy(&unset.stderr).contains("only inside a shard's command"),
        "{unset:?}"
    );
    let nothing = sandbox
        .command()
        .args(["ctl", "stop"])
        .env("HARPER_SHARD_CONTROL", sandbox.path("no-such-socket"))
        .output()
        .unwrap();
    assert_eq!(nothing.status.code(), Some(2), "{nothing:?}");
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("nothing answers"), "{nothing:?}");
}

#[test]
fn stop_start_kill_and_restart_keep_the_rootpath_and_address_and_every_life_is_reported() {
    let scene = raw_scene("127.0.80.20", 4);
    scene.plan_script(
        "",
        "$HS ctl status --id main --json > s0.json && $HS ctl stop --grace 1s --json > s1.json && $HS ctl start --json > s2.json \
         && $HS ctl kill --json > s3.json && test -e \"$HARPER_ROOTPATH/hdb.pid\" && $HS ctl start --json > s4.json \
         && $HS ctl restart --json > s5.json",
    );
    scene.run(&["run"]).expect(0);
    let s: Vec<Value> =
        (0..6).map(|n| scene.json(&format!("s{n}.json"))["instance"].clone()).collect();
    assert_eq!(s[1]["state"], "stopped");
    assert_eq!(s[1]["exit"]["code"], 0, "SIGTERM ends the fake server with 0: {}", s[1]);
    assert_eq!(s[1]["pid"], Value::Null);
    assert_eq!(s[3]["exit"]["signal"], "SIGKILL", "kill is a crash: {}", s[3]);
    for (n, life) in s.iter().enumerate() {
        assert_eq!(life["rootpath"], s[0]["rootpath"], "s{n} moved the instance");
        assert_eq!(life["hostname"], s[0]["hostname"], "s{n} moved the instance");
    }
    let pids: Vec<&Value> = [0, 2, 4, 5].iter().map(|n| &s[*n]["pid"]).collect();
    assert!(pids.iter().all(|p| p.is_u64()), "{pids:?}");
    assert!(
        (1..pids.len()).all(|i| pids[i] != pids[i - 1]),
        "every start is a new process: {pids:?}"
    );
    let main = &scene.instances()[0];
    let ended: Vec<&Value> =
        main["lives"].as_array().unwrap().iter().map(|l| &l["ended_by"]).collect();
    assert_eq!(
        ended,
        [&Value::from("stop"), &Value::from("kill"), &Value::from("stop"), &Value::Null],
        "{main:#}"
    );
    scene.assert_nothing_left();
}

#[test]
fn on_demand_instances_have_addresses_of_their_own_and_one_left_running_goes_with_the_shard() {
    let scene = raw_scene("127.0.80.30", 4);
    scene.plan_script(
        "",
        "$HS ctl start --new --name first --json > a.json && $HS ctl start --new --json > b.json && $HS ctl release --id i1 \
         && $HS ctl status --json > all.json",
    );
    scene.run(&["run"]).expect(0);
    let (a, b) =
        (scene.json("a.json")["instance"].clone(), scene.json("b.json")["instance"].clone());
    let all = scene.json("all.json");
    let main = all["instances"].as_array().unwrap().iter().find(|i| i["id"] == "main").unwrap();
    let hosts = [&main["hostname"], &a["hostname"], &b["hostname"]];
    assert!(hosts[0] != hosts[1] && hosts[1] != hosts[2] && hosts[0] != hosts[2], "{hosts:?}");
    assert_eq!((a["id"].as_str(), a["name"].as_str()), (Some("i1"), Some("first")));
    let ids: Vec<&str> =
        all["instances"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids, ["i2", "main"], "i1 was released");
    let pid = b["pid"].as_u64().unwrap() as i32;
    assert!(
        kill(Pid::from_raw(pid), None).is_err(),
        "the instance left running (pid {pid}) outlived its shard"
    );
    let reported = scene.instances();
    let left = reported.iter().find(|i| i["id"] == "i2").expect("i2 in report.json");
    assert!(left["released"].is_number(), "{left:#}");
    scene.assert_nothing_left();
}

#[test]
fn a_start_past_the_shards_limit_waits_then_fails_with_code_limit() {
    let scene = raw_scene("127.0.80.40", 4);
    scene.plan_script(
        "  instances: 1\n",
        "$HS ctl start --new > /dev/null && ! $HS ctl start --new --json > second.json",
    );
    let plan =
        support::read(&scene.sandbox.path("harper-shards.yml")).replace("wait: 5s", "wait: 1s");
    scene.sandbox.write("harper-shards.yml", &plan);
    scene.run(&["run"]).expect(0);
    let second = scene.json("second.json");
    assert_eq!(code(&second), "limit", "{second}");
    assert!(second["error"].as_str().unwrap().contains("harper.instances"), "{second}");
    scene.assert_nothing_left();
}

#[test]
fn an_on_demand_boot_failure_answers_boot_failed_with_harpers_last_lines_and_leaves_nothing() {
    let scene = raw_scene("127.0.80.50", 4);
    scene.plan_script("", "$HS ctl start --new --set 'env={\"FAKE_HARPER\": \"exit=3\"}' --json > f.json; echo $? > rc");
    scene.run(&["run"]).expect(0);
    assert_eq!(support::read(&scene.sandbox.path("rc")).trim(), "1");
    let failed = scene.json("f.json");
    assert_eq!(code(&failed), "boot_failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().contains("exit code 3"), "{failed}");
    assert!(failed["tail"].as_array().is_some_and(|t| !t.is_empty()), "{failed}");
    let i1 = scene.instances().into_iter().find(|i| i["id"] == "i1").expect("i1 in report.json");
    assert!(i1["lives"][0]["boot_failure"].is_string() && i1["released"].is_number(), "{i1:#}");
    scene.assert_nothing_left();
}

#[test]
fn a_client_that_hangs_up_during_a_start_leaves_no_instance_behind() {
    let scene = raw_scene("127.0.80.60", 4);
    // With room for one instance, the second start can only succeed once the first, whose
    // client is gone, has been released.
    scene.plan_script(
        "  instances: 1\n",
        "python3 raw.py gone.txt --close '{\"op\": \"start\"}' && $HS ctl start --new --json > after.json",
    );
    scene.run(&["run"]).expect(0);
    assert_eq!(scene.json("after.json")["instance"]["id"], "i2");
    let reported = scene.instances();
    let gone = reported.iter().find(|i| i["id"] == "i1").expect("i1 in report.json");
    let next = reported.iter().find(|i| i["id"] == "i2").expect("i2 in report.json");
    let released = gone["released"].as_f64().expect("i1 was released");
    assert!(
        released <= next["acquired"].as_f64().unwrap(),
        "i1 went only at the shard's end: {reported:#?}"
    );
    scene.assert_nothing_left();
}

#[test]
fn sigkill_of_the_tool_while_on_demand_instances_run_leaves_no_survivor() {
    let scene = raw_scene("127.0.80.70", 4);
    let mut tool = scene.start_with_two_on_demand_instances();
    kill(Pid::from_raw(tool.id() as i32), Signal::SIGKILL).unwrap();
    let _ = tool.wait();
    scene.assert_nothing_left_after_a_kill();
}

#[test]
fn a_shard_without_an_instance_of_its_own_gets_a_control_socket_and_no_instance_variables() {
    let scene = raw_scene("127.0.80.80", 4);
    scene.plan_script(
        "  boot: false\n",
        "env > env.txt; $HS ctl status --json > none.json && $HS ctl start --new --json > a.json && ! $HS ctl stop 2> stop.err",
    );
    scene.run(&["run"]).expect(0);
    let env = support::read(&scene.sandbox.path("env.txt"));
    assert!(env.contains("HARPER_SHARD_CONTROL="), "{env}");
    for var in [
        "HARPER_HOSTNAME=",
        "HARPER_OPERATIONS_API_URL=",
        "HARPER_ADMIN_PASSWORD=",
        "HARPER_ROOTPATH=",
    ] {
        assert!(
            !env.lines().any(|l| l.starts_with(var)),
            "{var} is set without an instance: {env}"
        );
    }
    assert_eq!(scene.json("none.json")["instances"], serde_json::json!([]));
    assert_eq!(
        scene.json("a.json")["instance"]["hostname"],
        scene.start.to_string(),
        "the first address goes to the first instance"
    );
    assert!(support::read(&scene.sandbox.path("stop.err")).contains("harper.boot: false"));
    scene.assert_nothing_left();
}

#[test]
fn sigterm_tears_on_demand_instances_down_within_the_budget_and_exits_143() {
    let scene = raw_scene("127.0.80.90", 4);
    let mut tool = scene.start_with_two_on_demand_instances();
    let signalled = std::time::Instant::now();
    kill(Pid::from_raw(tool.id() as i32), Signal::SIGTERM).unwrap();
    let status = tool.wait().unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(143), "{status}");
    assert!(took < Duration::from_secs(7), "the teardown took {took:?}");
    let instances = scene.instances();
    let released =
        instances.iter().filter(|i| i["id"] != "main" && i["released"].is_number()).count();
    assert_eq!(released, 2, "{instances:#?}");
    scene.assert_nothing_left();
}

#[test]
fn stop_and_kill_of_an_instance_whose_harper_exited_by_itself_answer_not_running_and_restart_only_boots_it()
 {
    let scene = raw_scene("127.0.80.170", 4);
    // SIGTERM from outside the tool: to the tool, Harper ended by itself (the fake exits 0).
    scene.plan_script(
        "",
        "$HS ctl status --id main --json > s0.json && kill -TERM $(python3 -c 'import json; print(json.load(open(\"s0.json\"))[\"instance\"][\"pid\"])') \
         && until $HS ctl status --id main --json | grep -q '\"exited\"'; do sleep 0.05; done \
         && { $HS ctl stop --json > stop.json; echo $? > stop.rc; $HS ctl kill --json > kill.json; echo $? > kill.rc; } \
         && $HS ctl restart --json > again.json",
    );
    scene.run(&["run"]).expect(0);
    for op in ["stop", "kill"] {
        let answer = scene.json(&format!("{op}.json"));
        assert_eq!(
            (answer["ok"].as_bool(), code(&answer)),
            (Some(false), "not_running"),
            "{op}: {answer}"
        );
        assert!(
            answer["error"].as_str().unwrap().contains("exited by itself (exit code 0)"),
            "{op}: {answer}"
        );
        assert_eq!(support::read(&scene.sandbox.path(&format!("{op}.rc"))).trim(), "1", "{op}");
    }
    let again = &scene.json("again.json")["instance"];
    assert_eq!(again["state"], "running", "{again}");
    let main = &scene.instances()[0];
    let ended: Vec<&Value> =
        main["lives"].as_array().unwrap().iter().map(|l| &l["ended_by"]).collect();
    assert_eq!(ended, [&Value::Null, &Value::Null], "no request ended the first life: {main:#}");
    scene.assert_nothing_left();
}

#[test]
fn a_name_over_64_bytes_is_cut_on_a_character_boundary_and_an_empty_one_is_refused() {
    let scene = raw_scene("127.0.80.180", 4);
    // `é` is bytes 64 and 65: it straddles the limit and goes whole.
    let long = format!("{}é and the rest of a suite name", "a".repeat(63));
    scene.plan_script(
        "",
        &format!("$HS ctl start --new --name '{long}' --json > long.json && python3 raw.py empty.txt '{{\"op\": \"start\", \"name\": \"\"}}'"),
    );
    scene.run(&["run"]).expect(0);
    let long = scene.json("long.json");
    assert_eq!(long["ok"], true, "{long}");
    assert_eq!(long["instance"]["name"], "a".repeat(63), "{long}");
    let reported = scene.instances();
    let i1 = reported.iter().find(|i| i["id"] == "i1").expect("i1 in report.json");
    assert_eq!(i1["name"], "a".repeat(63), "{i1:#}");
    let empty = &scene.answers("empty.txt")[0];
    assert_eq!(code(empty), "bad_request", "{empty}");
    scene.assert_nothing_left();
}

/// A shard's timeout cuts an on-demand start still waiting for a Harper that never gets ready:
/// the run ends long before the startup cap (120 s), the shard is reported timed out, and
/// nothing is left behind.
#[test]
fn a_shard_timeout_cancels_an_on_demand_start_still_booting() {
    let scene = raw_scene("127.0.80.190", 4);
    scene.plan_script("", "$HS ctl start --new --set 'env={\"FAKE_HARPER\": \"hang\"}'");
    let plan = support::read(&scene.sandbox.path("harper-shards.yml"))
        .replace("startup: {idle: 10s, max: 20s}", "startup: {idle: 120s, max: 120s}")
        .replace("    run:", "    timeout: 2s\n    run:");
    scene.sandbox.write("harper-shards.yml", &plan);
    let started = std::time::Instant::now();
    let run = scene.run(&["run"]);
    let took = started.elapsed();
    // The timeout, the on-demand instance's and the shard's own teardown (2 s grace each), slack.
    assert!(
        took < Duration::from_secs(20),
        "the run took {took:?} with a 2 s timeout: {}",
        run.stderr()
    );
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr());
    let shard = &scene.sandbox.report()["shards"][0];
    assert_eq!(shard["status"], "failed", "{shard}");
    assert!(shard["cause"].as_str().is_some_and(|c| c.contains("timed out after 2s")), "{shard}");
    let instances = scene.instances();
    let life = &instances[0]["lives"][0];
    assert!(
        life["booting"].is_number() && life["ready"].is_null(),
        "the start was not cut while booting: {instances:?}"
    );
    scene.assert_nothing_left();
}

/// A wrapper around the fake server at `name` in the sandbox: it notes each start's arguments in
/// `<name>.log`, then becomes the fake server. Its path tells its lives from the plan's.
fn other_harper(sandbox: &Sandbox, name: &str) -> std::path::PathBuf {
    let log = sandbox.path(&format!("{name}.log"));
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        support::fake_harper()
    );
    let path = sandbox.write(name, &script);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_stopped_instance_started_with_another_bin_boots_it_on_its_own_data_and_a_restart_keeps_it() {
    let scene = raw_scene("127.0.80.100", 4);
    let v2 = other_harper(&scene.sandbox, "v2/harper");
    // The relative path is given from another folder than the plan's: ctl's own folder counts.
    scene.plan_script(
        "",
        "echo first life > \"$HARPER_ROOTPATH/data\" && $HS ctl status --id main --json > before.json && $HS ctl stop \
         && mkdir elsewhere && cd elsewhere && $HS ctl start --set bin=../v2/harper --json > ../after.json && cd .. \
         && $HS ctl restart --json > again.json && cat \"$HARPER_ROOTPATH/data\" > data.txt",
    );
    scene.run(&["run"]).expect(0);
    let (before, after, again) = (
        scene.json("before.json")["instance"].clone(),
        scene.json("after.json")["instance"].clone(),
        scene.json("again.json")["instance"].clone(),
    );
    assert_eq!(before["harper"]["bin"], support::fake_harper(), "{before}");
    let bin = std::path::PathBuf::from(
        after["harper"]["bin"].as_str().expect("the answer names the bin"),
    );
    assert_eq!(bin.canonicalize().unwrap(), v2.canonicalize().unwrap(), "{after}");
    assert_eq!(again["harper"], after["harper"], "a restart went back to the old Harper: {again}");
    for life in [&after, &again] {
        assert_eq!(
            (&life["rootpath"], &life["hostname"], &life["state"]),
            (&before["rootpath"], &before["hostname"], &Value::from("running")),
            "{life}"
        );
    }
    let starts = support::read(&scene.sandbox.path("v2/harper.log"));
    let root = format!("--ROOTPATH={}", before["rootpath"].as_str().unwrap());
    assert_eq!(
        starts.lines().filter(|l| l.contains(&root)).count(),
        2,
        "the new Harper did not boot both later lives there:\n{starts}"
    );
    assert_eq!(
        support::read(&scene.sandbox.path("data.txt")),
        "first life\n",
        "the first life's data is gone"
    );
    scene.assert_nothing_left();
}

#[test]
fn a_start_on_another_harper_is_refused_while_running_and_for_bad_keys_and_the_instance_stays_as_it_was()
 {
    let scene = raw_scene("127.0.80.110", 4);
    let v2 = other_harper(&scene.sandbox, "v2");
    let big = format!("harperdb@{}", "1".repeat(10 * 1024));
    let bad = [
        r#"{"op": "start", "id": "main", "config": {"a": 1}}"#.to_owned(),
        r#"{"op": "restart", "id": "main", "bin": "v2"}"#.to_owned(),
        r#"{"op": "start", "id": "main", "runtime": "node"}"#.to_owned(),
        r#"{"op": "start", "id": "main", "package": "harperdb@4.7.29", "bin": "v2"}"#.to_owned(),
        r#"{"op": "start", "id": "main", "bin": "fifo"}"#.to_owned(),
        r#"{"op": "start", "id": "main", "bin": "."}"#.to_owned(),
        r#"{"op": "start", "id": "main", "bin": "/dev/zero"}"#.to_owned(),
        r#"{"op": "start", "id": "main", "package": "harperdb@4.7.29\u001b]0;x\u0007\r"}"#
            .to_owned(),
        format!(r#"{{"op": "start", "id": "main", "package": "{big}"}}"#),
        r#"{"op": "start", "id": "main", "package": "harperdb@4.7.29"}"#.to_owned(),
    ];
    let args: Vec<String> = bad.iter().map(|l| format!("'{}'", l.replace('\'', "'\\''"))).collect();
    scene.plan_script(
        "",
        &format!(
            "$HS ctl start --set bin=v2 --json > running.json; $HS ctl stop && mkfifo fifo \
             && python3 raw.py bad.txt {} '{{\"op\": \"status\", \"id\": \"main\"}}'",
            args.join(" ")
        ),
    );
    scene.run(&["run"]).expect(0);
    let running = scene.json("running.json");
    assert_eq!(code(&running), "running", "{running}");
    assert!(running["error"].as_str().unwrap().contains("stop it first"), "{running}");
    let mut answers = scene.answers("bad.txt");
    let status = answers.pop().unwrap();
    let codes: Vec<&str> = answers.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            "bad_request",
            "bad_request",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "invalid"
        ],
        "{answers:#?}"
    );
    let says = |n: usize, what: &str| {
        assert!(answers[n]["error"].as_str().unwrap().contains(what), "answer {n}: {}", answers[n])
    };
    says(2, "`runtime` cannot change");
    says(3, "name two Harpers");
    for n in [4, 5, 6] {
        says(n, "is not a file");
    }
    says(7, "control character");
    says(8, "bytes long");
    says(9, "runtime `exec` needs `bin`");
    assert!(
        answers.iter().all(|a| a["error"].as_str().unwrap().len() < 1024),
        "an answer quotes a value whole: {answers:#?}"
    );
    let main = &status["instance"];
    assert_eq!(
        (&main["state"], &main["harper"]["bin"]),
        (&Value::from("stopped"), &Value::from(support::fake_harper())),
        "{status}"
    );
    assert!(!scene.sandbox.path("v2.log").exists(), "a refused start ran the other Harper");
    drop(v2);
    scene.assert_nothing_left();
}
