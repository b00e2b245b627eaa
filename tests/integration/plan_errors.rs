//! Every plan in tests/plans/bad is refused: exit status 2, nothing started, and an error that
//! contains each line of the `.expected` file beside it (location, field, value, what to do).

use crate::support;

use std::time::Duration;

use support::Sandbox;

#[test]
fn every_bad_plan_is_refused_with_its_message_and_exit_2() {
    let sandbox = Sandbox::new();
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans/bad");
    let mut plans: Vec<_> = std::fs::read_dir(&corpus)
        .expect("the corpus exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    plans.sort();
    assert!(plans.len() >= 20, "the corpus has only {} plans", plans.len());
    let mut failures = Vec::new();
    for plan in &plans {
        let relative = plan.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let expected = support::read(&plan.with_extension("expected"));
        let run = {
            let mut cmd = sandbox.command();
            cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args(["run", relative.to_str().unwrap()]);
            let started = std::time::Instant::now();
            let output = cmd.output().expect("run harper-shard");
            support::Run { output, took: started.elapsed() }
        };
        let stderr = run.stderr();
        if run.code() != 2 {
            failures.push(format!(
                "{}: exit {} instead of 2\n{stderr}",
                relative.display(),
                run.code()
            ));
        }
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            if !stderr.contains(line) {
                failures.push(format!(
                    "{}: the error lacks `{line}`; it said:\n{stderr}",
                    relative.display()
                ));
            }
        }
        // A generous ceiling: the benchmark measures the real figure.
        if run.took > Duration::from_secs(5) {
            failures.push(format!("{}: took {:?} to refuse", relative.display(), run.took));
        }
    }
    assert!(!sandbox.path("w").exists(), "a refused plan created an instance directory");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_plan_file_says_how_to_make_one() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["run", "nope.yml"]);
    run.expect(2);
    assert!(run.stderr().contains("nope.yml: cannot read the plan"), "{}", run.stderr());
    assert!(run.stderr().contains("examples/harper-shards.yml"), "{}", run.stderr());
}

#[test]
fn a_malformed_fallback_variable_is_named() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", "version: 1\nshards:\n  - name: a\n    run: \"true\"\n");
    let mut cmd = sandbox.command();
    cmd.args(["run", "--plan"]).env("HARPER_INTEGRATION_TEST_STARTUP_TIMEOUT_MS", "soon");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("$HARPER_INTEGRATION_TEST_STARTUP_TIMEOUT_MS is `soon`"), "{err}");
}

#[test]
fn a_fallback_variable_past_its_range_is_refused_with_the_range() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", "version: 1\nshards:\n  - name: a\n    run: \"true\"\n");
    let cases = [
        (
            "HARPER_INTEGRATION_TEST_STARTUP_MAX_MS",
            "18446744073709551615",
            "from 1 to 86400000 (24h)",
        ),
        ("HARPER_INTEGRATION_TEST_TEARDOWN_GRACE_MS", "3600000", "from 1 to 600000 (10m)"),
        ("HARPER_INTEGRATION_TEST_PORT_RELEASE_TIMEOUT_MS", "0", "from 1 to 600000 (10m)"),
        ("HARPER_INTEGRATION_TEST_LOOPBACK_POOL_COUNT", "4294967295", "from 1 to 1024"),
    ];
    for (var, value, range) in cases {
        let mut cmd = sandbox.command();
        cmd.args(["run", "--plan"]).env(var, value);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(
            err.contains(&format!("${var} is `{value}`")) && err.contains(range),
            "{var}={value}: {err}"
        );
    }
}

/// Strings past what the kernel takes in one argument, or in all of them, fail at exec time
/// with E2BIG; the plan is refused instead. (Generated: a corpus file would be 200 KB.)
#[test]
fn strings_too_long_for_the_kernel_are_refused_before_anything_starts() {
    let sandbox = Sandbox::new();
    let long = "x".repeat(200_000);
    sandbox.write(
        "long-command.yml",
        &format!("version: 1\nshards:\n  - name: a\n    run: \"echo {long}\"\n"),
    );
    let run = sandbox.run(&["run", "long-command.yml"]);
    run.expect(2);
    assert!(
        run.stderr()
            .contains("long-command.yml:4:10: shards[0].run[0]: the command is 195.3 KiB long"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("at most 128 KiB in one argument or variable"),
        "{}",
        run.stderr()
    );

    let vars: String = (0..10).map(|i| format!("      V{i}: {}\n", "y".repeat(120_000))).collect();
    sandbox.write(
        "big-env.yml",
        &format!("version: 1\nshards:\n  - name: a\n    run: \"true\"\n    env:\n{vars}"),
    );
    let run = sandbox.run(&["run", "big-env.yml"]);
    run.expect(2);
    assert!(
        run.stderr().contains(
            "shards[0]: a command of `a` gets 1.1 MiB of plan-given arguments and variables"
        ),
        "{}",
        run.stderr()
    );

    // 1500 paths of 100 bytes: the list is too long for HARPER_SHARD_FILES in one part.
    for i in 0..1500 {
        sandbox.write(&format!("t/{i:04}-{}.test.mjs", "f".repeat(80)), "");
    }
    sandbox.write("many-files.yml", "version: 1\nshards:\n  - name: db\n    files: t/*.test.mjs\n    run: node --test {files}\n");
    let run = sandbox.run(&["run", "many-files.yml"]);
    run.expect(2);
    assert!(run.stderr().contains("shards[0].files: `db` has 1500 files"), "{}", run.stderr());
    assert!(run.stderr().contains("raise `split` or narrow `files`"), "{}", run.stderr());
    sandbox.write("many-files-split.yml", "version: 1\nshards:\n  - name: db\n    files: t/*.test.mjs\n    split: 2\n    run: node --test {files}\n");
    sandbox.run(&["run", "--plan", "many-files-split.yml"]).expect(0);
}

/// The tool's own variables are refused in a shard's `env` from one list; every HARPER_*
/// variable a shard command gets from the tool must be on it, or a plan could set one and be
/// silently overridden.
#[test]
fn every_variable_the_tool_sets_for_a_command_is_on_the_refused_list() {
    use harper_shard::plan::resolve::OWNED_COMMAND_VARS;
    let sandbox = Sandbox::new();
    let shard = "  - name: a\n    run: env > seen.env\n    timeout: 20s\n";
    // With `tls` the instance binds HTTPS, and its URL is one more variable.
    sandbox.write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
    let tls = "  config: {tls: {certificate: cert.pem, privateKey: cert.pem}}\npool: {start: 127.0.55.10, count: 1}\n";
    sandbox.write("harper-shards.yml", &support::fake_plan("", tls, shard));
    sandbox.run(&["run"]).expect(0);
    let inherited: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let mut set_by_the_tool: Vec<String> = support::read(&sandbox.path("seen.env"))
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
        .filter(|k| {
            k.starts_with("HARPER_")
                && !inherited.contains(k)
                && !k.starts_with("HARPER_SHARD_TEST")
        })
        .collect();
    set_by_the_tool
        .retain(|k| !["HARPER_SHARD_WORK_DIR", "HARPER_SHARD_REPORT_DIR"].contains(&k.as_str()));
    set_by_the_tool.sort();
    let mut owned: Vec<String> = OWNED_COMMAND_VARS.iter().map(|(k, _)| (*k).to_owned()).collect();
    owned.sort();
    assert_eq!(set_by_the_tool, owned);
}

/// A TLS file the plan names that is a FIFO would block Harper's read of it forever: refused
/// with exit 2 before anything starts, naming the field, the value and what to give instead.
#[test]
fn a_tls_certificate_that_is_a_fifo_is_refused_with_exit_2_and_nothing_starts() {
    let sandbox = Sandbox::new();
    let fifo = sandbox.path("cert.pem");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    sandbox.write("key.pem", "-----BEGIN RSA PRIVATE KEY-----\n");
    let shard = "  - name: a\n    run: touch ran\n";
    let tls = "  config: {tls: {certificate: cert.pem, privateKey: key.pem}}\n";
    sandbox.write("harper-shards.yml", &support::fake_plan("", tls, shard));
    let started = std::time::Instant::now();
    let run = sandbox.run(&["run"]);
    run.expect(2);
    assert!(started.elapsed() < Duration::from_secs(5), "the refusal took {:?}", started.elapsed());
    let err = run.stderr();
    assert!(err.contains("harper-shards.yml:8:31: harper.config.tls.certificate: `cert.pem` cannot be used: it is a FIFO (named pipe), not a regular file"), "{err}");
    assert!(err.contains("give a readable PEM file"), "{err}");
    assert!(!sandbox.path("ran").exists() && !sandbox.path("w").exists(), "something started");
}

/// A relative TLS path means a file in the plan's folder, whatever folder the tool runs in: Harper
/// gets it absolute (it runs in its instance's HOME), and a file of that name in the folder the
/// tool was started in is not the one used.
#[test]
fn tls_paths_are_relative_to_the_plans_folder_whatever_folder_the_tool_runs_in() {
    let sandbox = Sandbox::new();
    sandbox.write("plans/certs/cert.pem", "-----BEGIN CERTIFICATE-----\n");
    sandbox.write("plans/certs/key.pem", "-----BEGIN RSA PRIVATE KEY-----\n");
    let tls = "  config: {tls: {certificate: certs/cert.pem, privateKey: ./certs/key.pem}}\n";
    sandbox.write(
        "plans/harper-shards.yml",
        &support::fake_plan("", tls, "  - name: a\n    run: \"true\"\n"),
    );
    std::fs::create_dir_all(sandbox.path("elsewhere/certs")).unwrap();
    sandbox.write("elsewhere/certs/cert.pem", "-----BEGIN CERTIFICATE-----\n");
    let mut cmd = sandbox.command();
    cmd.current_dir(sandbox.path("elsewhere")).args([
        "run",
        "../plans/harper-shards.yml",
        "--plan",
        "--format",
        "json",
    ]);
    let run = support::Run::of(&mut cmd);
    run.expect(0);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let harper = &plan["plan"]["shards"][0]["harper"];
    let dir = sandbox.path("plans");
    let file = |key: &str| {
        let given = std::path::PathBuf::from(harper["config"]["tls"][key].as_str().unwrap());
        assert!(given.is_absolute(), "{}", given.display());
        given.canonicalize().unwrap()
    };
    assert_eq!(file("certificate"), dir.join("certs/cert.pem").canonicalize().unwrap());
    assert_eq!(file("privateKey"), dir.join("certs/key.pem").canonicalize().unwrap());
    assert_eq!(harper["ports"]["https"], 9927, "the HTTPS port is in the instance's port set");

    // Only in the folder the tool runs in: not found, and the error says where it looked.
    std::fs::remove_file(sandbox.path("plans/certs/cert.pem")).unwrap();
    let mut cmd = sandbox.command();
    cmd.current_dir(sandbox.path("elsewhere")).args([
        "run",
        "../plans/harper-shards.yml",
        "--plan",
    ]);
    let run = support::Run::of(&mut cmd);
    run.expect(2);
    assert!(
        run.stderr().contains("no such file (")
            && run.stderr().contains("/elsewhere/../plans/certs/cert.pem)"),
        "{}",
        run.stderr()
    );
}
