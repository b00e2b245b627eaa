//! The foundation, end to end through the real binary on the fake server: resolution as the dry
//! run shows it, shards on their own addresses with the documented environment, and each way a
//! shard can fail mapped to its exit status and a one-line cause.

use crate::support;

use std::collections::HashSet;

use serde_json::Value;
use support::{DEFAULT_PORTS, Sandbox, fake_plan};

fn dry_run(sandbox: &Sandbox, env: &[(&str, &str)]) -> Value {
    let mut cmd = sandbox.command();
    cmd.args(["run", "--plan", "--format", "json"]).env_remove("CI");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the dry run prints JSON")
}

fn simple_plan(sandbox: &Sandbox, harper: &str) {
    sandbox.write(
        "harper-shards.yml",
        &format!("version: 1\n{harper}shards:\n  - name: a\n    run: \"true\"\n"),
    );
}

/// The dry run resolves the plan and starts nothing: no npm install, no server, no command
/// (each of them would leave its mark), no address leased, no instance or report directory,
/// and nothing of the run's left running.
#[test]
fn the_dry_run_resolves_defaults_and_starts_nothing() {
    let sandbox = Sandbox::new();
    let started = sandbox.path("harper.started");
    let fake = format!(
        "    harper: {{runtime: exec, bin: {}, env: {{FAKE_HARPER: \"started-file={}\"}}}}\n",
        support::fake_harper(),
        started.display()
    );
    sandbox.write(
        "harper-shards.yml",
        &format!("version: 1\nshards:\n  - name: a\n    run: touch ran\n  - name: fake\n    run: touch ran\n{fake}"),
    );
    let npm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-npm");
    let (npm, npm_log, pool, cache) = (
        npm.display().to_string(),
        sandbox.path("npm.log"),
        sandbox.path("pool"),
        sandbox.path("cache"),
    );
    let plan = dry_run(
        &sandbox,
        &[
            ("HARPER_SHARD_NPM", &npm),
            ("FAKE_NPM_LOG", npm_log.to_str().unwrap()),
            ("HARPER_SHARD_POOL_DIR", pool.to_str().unwrap()),
            ("HARPER_SHARD_CACHE_DIR", cache.to_str().unwrap()),
        ],
    );
    let harper = &plan["plan"]["shards"][0]["harper"];
    assert_eq!(harper["source"]["package"], "harperdb@4.7.29");
    assert_eq!(harper["startup"]["idle"], 60.0);
    assert_eq!(harper["startup"]["max"], 120.0);
    assert_eq!(harper["teardown"]["grace"], 5.0);
    assert_eq!(harper["ports"]["operations"], 9925);
    assert_eq!(plan["plan"]["pool"]["start"], "127.0.0.2");
    assert_eq!(plan["plan"]["pool"]["count"], 32);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(plan["plan"]["run"]["concurrency"], (cpus / 2 + 1).max(1));
    assert!(
        sandbox.leftovers().is_empty(),
        "the dry run left processes running: {:?}",
        sandbox.leftovers()
    );
    assert!(!npm_log.exists(), "the dry run ran npm: {}", support::read(&npm_log));
    assert!(!started.exists(), "the dry run started the server");
    assert!(!sandbox.path("ran").exists(), "the dry run ran a command");
    assert!(!pool.exists(), "the dry run touched the pool (a lock or a lease)");
    assert!(
        !sandbox.path("w").exists() && !sandbox.path("report").exists(),
        "the dry run made instance or report directories"
    );
}

#[test]
fn ci_scales_the_startup_caps_unless_it_says_false() {
    let sandbox = Sandbox::new();
    simple_plan(&sandbox, "");
    for (ci, idle, max) in
        [("true", 150.0, 300.0), ("1", 150.0, 300.0), ("false", 60.0, 120.0), ("0", 60.0, 120.0)]
    {
        let plan = dry_run(&sandbox, &[("CI", ci)]);
        let startup = &plan["plan"]["shards"][0]["harper"]["startup"];
        assert_eq!(
            (startup["idle"].as_f64(), startup["max"].as_f64()),
            (Some(idle), Some(max)),
            "CI={ci}"
        );
    }
}

#[test]
fn fallback_variables_fill_unset_keys_but_the_plan_wins() {
    let sandbox = Sandbox::new();
    simple_plan(&sandbox, "harper:\n  startup: {max: 99s}\n");
    let env = [
        ("HARPER_INTEGRATION_TEST_STARTUP_TIMEOUT_MS", "7000"),
        ("HARPER_INTEGRATION_TEST_STARTUP_MAX_MS", "8000"),
        ("HARPER_INTEGRATION_TEST_TEARDOWN_GRACE_MS", "1500"),
        ("HARPER_INTEGRATION_TEST_PORT_RELEASE_TIMEOUT_MS", "2500"),
        ("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_START", "127.0.0.50"),
        ("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_COUNT", "4"),
        ("HARPER_RUNTIME", "bun"),
        ("CI", "true"),
    ];
    let plan = dry_run(&sandbox, &env);
    let harper = &plan["plan"]["shards"][0]["harper"];
    assert_eq!(harper["startup"]["idle"], 7.0, "the variable beats the CI default");
    assert_eq!(harper["startup"]["max"], 99.0, "the plan beats the variable");
    assert_eq!(harper["teardown"]["grace"], 1.5);
    assert_eq!(harper["teardown"]["port_release"], 2.5);
    assert_eq!(harper["runtime"], "bun");
    assert_eq!(plan["plan"]["pool"]["start"], "127.0.0.50");
    assert_eq!(plan["plan"]["pool"]["count"], 4);
}

#[test]
fn a_shard_overrides_only_the_keys_it_names() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "harper-shards.yml",
        "version: 1\nharper:\n  env: {A: plan, B: plan}\n  ports: {http: 10926}\n  startup: {idle: 30s}\nshards:\n  - name: plain\n    run: \"true\"\n  - name: custom\n    run: \"true\"\n    harper:\n      env: {B: shard}\n      ports: {operations: 10925}\n",
    );
    let plan = dry_run(&sandbox, &[]);
    let plain = &plan["plan"]["shards"][0]["harper"];
    let custom = &plan["plan"]["shards"][1]["harper"];
    assert_eq!(plain["ports"]["operations"], 9925);
    assert_eq!(custom["ports"]["operations"], 10925);
    assert_eq!(custom["ports"]["http"], 10926, "the plan's other port stays");
    assert_eq!(custom["env"]["A"], "plan");
    assert_eq!(custom["env"]["B"], "shard");
    assert_eq!(custom["startup"]["idle"], 30.0);
}

#[test]
fn split_divides_files_by_recorded_timings_and_partitions_cover_every_shard_once() {
    let sandbox = Sandbox::new();
    for f in ["a", "b", "c", "d", "e"] {
        sandbox.write(&format!("t/{f}.test.mjs"), "");
    }
    sandbox.write(
        "timings.json",
        r#"{"version":1,"shards":{},"files":{"t/a.test.mjs":40,"t/b.test.mjs":10,"t/c.test.mjs":10,"t/d.test.mjs":10,"t/e.test.mjs":10}}"#,
    );
    sandbox.write(
        "harper-shards.yml",
        "version: 1\nshards:\n  - name: solo\n    run: \"true\"\n  - name: db\n    files: t/*.test.mjs\n    split: 2\n    run: node --test {files}\n",
    );
    let plan = dry_run(
        &sandbox,
        &[("HARPER_SHARD_TIMINGS", sandbox.path("timings.json").to_str().unwrap())],
    );
    let shards = plan["plan"]["shards"].as_array().unwrap();
    let names: Vec<&str> = shards.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["solo", "db/1", "db/2"]);
    assert_eq!(shards[1]["commands"][0], "node --test t/a.test.mjs");
    assert_eq!(
        shards[2]["commands"][0],
        "node --test t/b.test.mjs t/c.test.mjs t/d.test.mjs t/e.test.mjs"
    );
    assert_eq!(shards[2]["index"], 3);

    let out = sandbox.command().args(["matrix", "--partitions", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let matrix: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut seen: Vec<String> = Vec::new();
    for job in matrix["include"].as_array().unwrap() {
        let partition = job["partition"].as_str().unwrap();
        let selected = dry_run(&sandbox, &[("HARPER_SHARD_PARTITION", partition)]);
        let from_run: Vec<String> = selected["selected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        let from_matrix: Vec<String> =
            job["shards"].as_str().unwrap().split(' ').map(str::to_owned).collect();
        assert_eq!(from_run, from_matrix, "the matrix and the run agree on partition {partition}");
        seen.extend(from_run);
    }
    seen.sort();
    assert_eq!(seen, ["db/1", "db/2", "solo"]);
}

#[test]
fn only_selects_by_name_or_by_split_group_and_refuses_unknown_names() {
    let sandbox = Sandbox::new();
    sandbox.write("t/a.test.mjs", "");
    sandbox.write("t/b.test.mjs", "");
    sandbox.write(
        "harper-shards.yml",
        "version: 1\nshards:\n  - name: x\n    run: \"true\"\n  - name: db\n    files: t/*.test.mjs\n    split: 2\n    run: \"true\"\n",
    );
    let plan = dry_run(&sandbox, &[("HARPER_SHARD_ONLY", "db")]);
    assert_eq!(plan["selected"], serde_json::json!(["db/1", "db/2"]));
    let run = sandbox.run(&["run", "--plan", "--only", "nope"]);
    run.expect(2);
    assert!(
        run.stderr().contains("no such shard; the plan has: x, db/1, db/2"),
        "{}",
        run.stderr()
    );
}

/// The variables the README's "What a shard command sees" lists, read from its table, so a
/// variable documented there and not set fails here.
fn documented_command_variables() -> Vec<String> {
    let readme = support::read(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    let section = readme
        .split("## What a shard command sees\n")
        .nth(1)
        .expect("the README documents the environment");
    let names: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>())
        .filter(|name| name.starts_with("HARPER_"))
        .collect();
    assert!(names.len() >= 15, "the table was not read: {names:?}");
    names
}

/// Three shards at once — one alone, two parts of a split — each writing what it sees; all on
/// different addresses, each with every documented variable and its right value, no other
/// `HARPER_` variable of the tool's, and nothing of them left afterwards.
#[test]
fn shards_run_at_once_on_their_own_addresses_with_the_documented_environment() {
    let sandbox = Sandbox::new();
    for f in ["t/a.test.mjs", "t/b.test.mjs"] {
        sandbox.write(f, "");
    }
    // Each shard records its environment and what its paths are, then waits until all three
    // are running at once.
    sandbox.write(
        "dump.sh",
        "n=$HARPER_SHARD_INDEX\nenv | grep -E '^HARPER_' | sort > \"$n.env\"\n\
         [ -d \"$HARPER_SHARD_JUNIT_DIR\" ] && touch \"$n.junit-dir\"\n[ -S \"$HARPER_SHARD_CONTROL\" ] && touch \"$n.control\"\n\
         [ -d \"$HARPER_LOG_DIR\" ] && touch \"$n.log-dir\"\ntouch \"$n.started\"\n\
         until [ -e 1.started ] && [ -e 2.started ] && [ -e 3.started ]; do sleep 0.05; done\n",
    );
    let shards = "  - name: a\n    run: sh dump.sh\n    timeout: 20s\n  - name: db\n    files: t/*.test.mjs\n    split: 2\n    run: sh dump.sh\n    timeout: 20s\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "run: {concurrency: 3}\n", shards));
    let mut cmd = sandbox.command();
    let run =
        support::Run { output: cmd.arg("run").output().unwrap(), took: std::time::Duration::ZERO };
    run.expect(0);
    // What the tool passes on from its own environment is not the tool's to document.
    let mut inherited: HashSet<String> = std::env::vars().map(|(k, _)| k).collect();
    inherited.extend(cmd.get_envs().map(|(k, _)| k.to_string_lossy().into_owned()));
    let documented = documented_command_variables();
    let mut addresses = HashSet::new();
    let mut tokens = HashSet::new();
    let mut files = Vec::new();
    for (index, name) in [(1, "a"), (2, "db/1"), (3, "db/2")] {
        let env = support::read(&sandbox.path(&format!("{index}.env")));
        let seen: std::collections::BTreeMap<&str, &str> =
            env.lines().filter_map(|l| l.split_once('=')).collect();
        let var = |key: &str| {
            *seen
                .get(key)
                .unwrap_or_else(|| panic!("{name}: {key} is documented but not set: {env}"))
        };
        let host = var("HARPER_HOSTNAME");
        let root = std::path::Path::new(var("HARPER_ROOTPATH"));
        for key in &documented {
            if key == "HARPER_HTTPS_URL" {
                // Only with `tls` in the config, which this plan does not set.
                assert!(!seen.contains_key(key.as_str()), "{name}: {key} is set without TLS");
                continue;
            }
            let value = var(key);
            match key.as_str() {
                "HARPER_HOSTNAME" => assert!(host.starts_with("127."), "{host}"),
                "HARPER_OPERATIONS_API_URL" => assert_eq!(value, format!("http://{host}:9925")),
                "HARPER_HTTP_URL" => assert_eq!(value, format!("http://{host}:9926")),
                "HARPER_MQTT_URL" => assert_eq!(value, format!("mqtt://{host}:1883")),
                "HARPER_ADMIN_USERNAME" => assert_eq!(value, "admin"),
                "HARPER_ADMIN_PASSWORD" => assert_eq!(value.len(), 32, "a random password"),
                "HARPER_ROOTPATH" => {
                    assert!(root.starts_with(sandbox.path("w")), "{value}");
                    assert!(!root.exists(), "ROOTPATH was removed");
                }
                "HARPER_LOG_DIR" => {
                    assert_eq!(std::path::Path::new(value), root.join("log"));
                    assert!(
                        sandbox.path(&format!("{index}.log-dir")).exists(),
                        "{name}: no directory at {value}"
                    );
                }
                "HARPER_SHARD_NAME" => assert_eq!(value, name),
                "HARPER_SHARD_INDEX" => assert_eq!(value, index.to_string()),
                "HARPER_SHARD_TOTAL" => assert_eq!(value, "3"),
                "HARPER_SHARD_FILES" if name == "a" => {
                    assert_eq!(value, "", "a shard that is not split has no files")
                }
                "HARPER_SHARD_FILES" => files.extend(value.split(' ').map(str::to_owned)),
                "HARPER_SHARD_JUNIT_DIR" => {
                    assert!(
                        std::path::Path::new(value).starts_with(sandbox.path("report")),
                        "{value}"
                    );
                    assert!(
                        sandbox.path(&format!("{index}.junit-dir")).exists(),
                        "{name}: no directory at {value}"
                    );
                }
                "HARPER_SHARD_TOKEN" => {
                    assert!(tokens.insert(value.to_owned()), "{name} shares its token {value}")
                }
                "HARPER_SHARD_CONTROL" => assert!(
                    sandbox.path(&format!("{index}.control")).exists(),
                    "{name}: no socket at {value}"
                ),
                other => {
                    panic!("{other} is documented, and this test does not check its value yet")
                }
            }
        }
        let undocumented: Vec<&str> = seen
            .keys()
            .copied()
            .filter(|k| !documented.iter().any(|d| d == k) && !inherited.contains(*k))
            .collect();
        assert!(
            undocumented.is_empty(),
            "{name} sees variables the README does not list: {undocumented:?}"
        );
        assert!(support::ports_free(host, &DEFAULT_PORTS), "ports on {host} are still held");
        addresses.insert(host.to_owned());
    }
    files.sort();
    assert_eq!(files, ["t/a.test.mjs", "t/b.test.mjs"], "the split's parts share its files");
    assert_eq!(addresses.len(), 3, "three live shards shared an address: {addresses:?}");
    let report = sandbox.report();
    let statuses: Vec<&str> = report["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["passed", "passed", "passed"]);
    assert_eq!(report["exit_code"], 0);
}

#[test]
fn a_failing_command_fails_its_shard_with_exit_1_and_shows_its_output() {
    let sandbox = Sandbox::new();
    let shards = "  - name: good\n    run: \"true\"\n  - name: bad\n    run: [\"true\", \"echo the widget broke; exit 3\", \"touch never-run\"]\n";
    sandbox.write("harper-shards.yml", &fake_plan("", "", shards));
    let run = sandbox.run(&["run"]);
    run.expect(1);
    let err = run.stderr();
    assert!(err.contains("`echo the widget broke; exit 3` failed: exit code 3"), "{err}");
    assert!(err.contains("| the widget broke"), "the output's tail is shown: {err}");
    assert!(!sandbox.path("never-run").exists(), "a command after the failing one ran");
    let report = sandbox.report();
    assert_eq!(report["shards"][0]["status"], "passed");
    assert_eq!(report["shards"][1]["status"], "failed");
}

#[test]
fn a_coloured_ready_line_split_across_writes_is_recognised() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("ansi,split-ready,stderr-noise", "", "  - name: a\n    run: \"true\"\n"),
    );
    sandbox.run(&["run"]).expect(0);
}

#[test]
fn a_command_past_the_shard_timeout_is_stopped_and_fails_the_shard() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "", "  - name: slow\n    run: sleep 600\n    timeout: 1s\n"),
    );
    let run = sandbox.run(&["run"]);
    run.expect(1);
    assert!(run.stderr().contains("`sleep 600` timed out after 1s"), "{}", run.stderr());
}

#[test]
fn fail_fast_skips_the_shards_that_had_not_started_and_says_so_without_a_time() {
    let sandbox = Sandbox::new();
    let shards =
        "  - name: first\n    run: \"false\"\n  - name: second\n    run: touch second-ran\n";
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "run: {concurrency: 1, fail_fast: true, boot_ahead: off}\n", shards),
    );
    let run = sandbox.run(&["run"]);
    run.expect(1);
    assert!(!sandbox.path("second-ran").exists());
    assert_eq!(sandbox.report()["shards"][1]["status"], "skipped");
    let line = "[second] skipped: not started: an earlier shard failed (fail_fast)";
    assert!(run.stderr().contains(line), "{}", run.stderr());
    // The same run under GitHub Actions: the group's title has no time either.
    let mut cmd = sandbox.command();
    cmd.args(["run", "--report-dir", "gh"]).env("GITHUB_ACTIONS", "true");
    let gh = support::run(cmd);
    gh.expect(1);
    assert!(gh.stderr().contains(" second — skipped\n"), "{}", gh.stderr());
}

/// A project folder holding a plan whose every path is relative: `bin` (a link to the fake
/// server, or a copy of the JS stand-in for `runtime: node`), a fixture, and a command that reads
/// files from its folder. The command fails unless it runs in the plan's folder and finds the
/// fixture in the instance's ROOTPATH.
fn relative_project(sandbox: &Sandbox, harper: &str) {
    sandbox.write("project/fx/component.txt", "");
    sandbox.write(
        "project/harper-shards.yml",
        &format!(
            "version: 1\nharper:\n{harper}  fixtures: [./fx]\n  startup: {{idle: 10s, max: 20s}}\nshards:\n  - name: a\n    run: test -f harper-shards.yml && test -f \"$HARPER_ROOTPATH/components/fx/component.txt\"\n"
        ),
    );
}

/// Harper runs in its instance's HOME: a `bin` left relative to the tool's folder would be
/// looked for there. By a relative plan path from another folder, and by the default name in
/// the plan's own folder, every path means the plan's folder.
#[test]
fn a_relative_bin_boots_when_the_plan_is_named_by_a_relative_path() {
    let sandbox = Sandbox::new();
    relative_project(&sandbox, "  runtime: exec\n  bin: ./fake-harper\n");
    std::os::unix::fs::symlink(support::fake_harper(), sandbox.path("project/fake-harper"))
        .unwrap();
    sandbox.run(&["run", "project/harper-shards.yml"]).expect(0);
    support::Run::of(sandbox.command().current_dir(sandbox.path("project")).arg("run")).expect(0);
}

#[test]
fn a_relative_node_entry_script_boots_when_the_plan_is_named_by_a_relative_path() {
    let sandbox = Sandbox::new();
    relative_project(&sandbox, "  runtime: node\n  template: off\n  bin: harper/bin/harperdb.js\n");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-harper.js");
    sandbox.write("project/harper/bin/harperdb.js", &support::read(&script));
    sandbox.run(&["run", "project/harper-shards.yml"]).expect(0);
}

/// The dry run shows the paths a run will use: absolute, without `./` segments.
#[test]
fn the_dry_run_shows_a_relative_bin_as_an_absolute_path_in_the_plans_folder() {
    let sandbox = Sandbox::new();
    relative_project(&sandbox, "  runtime: exec\n  bin: ./fake-harper\n");
    std::os::unix::fs::symlink(support::fake_harper(), sandbox.path("project/fake-harper"))
        .unwrap();
    let out = sandbox
        .command()
        .args(["run", "--plan", "--format", "json", "project/harper-shards.yml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let harper = &plan["plan"]["shards"][0]["harper"];
    assert_eq!(harper["source"]["bin"], sandbox.path("project/fake-harper").to_str().unwrap());
    assert_eq!(harper["fixtures"][0], sandbox.path("project/fx").to_str().unwrap());
}

/// A template built from a `bin:` Harper belongs to that build: once the build changes in place,
/// the dry run says the next run builds a template of its own instead of booting the old one.
#[test]
fn a_template_of_a_bin_harper_is_not_used_once_the_build_changes() {
    let sandbox = Sandbox::new();
    sandbox.write("harper/package.json", r#"{"name":"harperdb","version":"4.7.29"}"#);
    sandbox.write("harper/bin/harperdb.js", "// build one\n");
    sandbox.write("harper-shards.yml", "version: 1\nharper:\n  bin: harper/bin/harperdb.js\nshards:\n  - name: a\n    run: \"true\"\n");
    let boot = || {
        let run = support::Run::of(
            sandbox
                .command()
                .args(["run", "--plan"])
                .env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache")),
        );
        run.expect(0);
        run.stdout()
            .lines()
            .find(|l| l.trim_start().starts_with("boot "))
            .expect("the dry run says how the shard boots")
            .to_owned()
    };
    let before = boot();
    let key = before
        .split_once("built first by the first shard that needs it (")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no template yet: {before}"))
        .to_owned();
    // What the first run's build leaves: the parts a copy boots from, and the template's record.
    let template = format!("cache/templates/{key}");
    for part in [
        "r/harperdb-config.yaml",
        "r/database/system.mdb",
        "r/keys/privateKey.pem",
        "h/.harperdb/hdb_boot_properties.file",
    ] {
        sandbox.write(&format!("{template}/{part}"), "");
    }
    sandbox.write(
        &format!("{template}/template.json"),
        r#"{"root":"/w/r","home":"/w/h","username":"admin","password":"p","entry":"harper/bin/harperdb.js"}"#,
    );
    assert!(
        boot().contains(&format!("from the cached template {key}")),
        "the stand-in template is not found: {}",
        boot()
    );

    sandbox.write("harper/bin/harperdb.js", "// build two\n");
    let after = boot();
    assert!(
        after.contains("built first by the first shard that needs it") && !after.contains(&key),
        "the rebuilt Harper boots the old build's template: {after}"
    );
}
