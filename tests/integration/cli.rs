//! The command line at its edges, through the real binary: flags and their variables, partition
//! counts past the shard count, plan and timings paths that are not regular files, and a reader
//! that closes stdout early.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Run, Sandbox, fake_plan, run};

const TWO_SHARDS: &str =
    "version: 1\nshards:\n  - name: sql\n    run: \"true\"\n  - name: api\n    run: \"true\"\n";

/// `harper-shard args…` from the sandbox, killed and failed if it runs past `LIMIT`: what these
/// tests pin can hang (a FIFO) or grind on (twenty million partitions) when it breaks, and a
/// test must then fail, not hang.
fn within(sandbox: &Sandbox, args: &[&str]) -> Run {
    const LIMIT: Duration = Duration::from_secs(10);
    let (out, err) = (sandbox.path("within.out"), sandbox.path("within.err"));
    let mut cmd = sandbox.command();
    cmd.args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start harper-shard");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for harper-shard") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`harper-shard {}` still ran after {LIMIT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::process::Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    };
    Run { output, took: started.elapsed() }
}

fn selected(run: &Run) -> Value {
    let json: Value = serde_json::from_str(&run.stdout()).expect("the dry run prints JSON");
    json["selected"].clone()
}

#[test]
fn only_takes_one_name_per_flag_so_the_plan_path_can_follow_it() {
    let sandbox = Sandbox::new();
    sandbox.write("other.yml", TWO_SHARDS);
    let r = sandbox.run(&["run", "--plan", "--format", "json", "--only", "sql", "other.yml"]);
    r.expect(0);
    assert_eq!(selected(&r), serde_json::json!(["sql"]));
    for args in [
        &["--only", "sql,api", "other.yml"][..],
        &["--only", "api", "--only", "sql", "other.yml"][..],
    ] {
        let r = sandbox.run(&[&["run", "--plan", "--format", "json"][..], args].concat());
        r.expect(0);
        assert_eq!(selected(&r), serde_json::json!(["sql", "api"]), "{args:?}");
    }
}

#[test]
fn a_quiet_variable_set_to_false_or_empty_says_nothing_against_v() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", TWO_SHARDS);
    for value in ["false", "0", ""] {
        let mut cmd = sandbox.command();
        cmd.args(["run", "--plan", "-v"]).env("HARPER_SHARD_QUIET", value);
        run(cmd).expect(0);
    }
}

#[test]
fn a_flag_beats_the_opposite_variable_but_two_flags_or_two_variables_that_disagree_are_refused() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", TWO_SHARDS);
    let with = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = sandbox.command();
        cmd.args(["run", "--plan"]).args(args).envs(env.iter().copied());
        run(cmd)
    };
    with(&[("HARPER_SHARD_QUIET", "true")], &["-v"]).expect(0);
    with(&[("HARPER_SHARD_VERBOSE", "2")], &["-q"]).expect(0);
    let both_flags = with(&[], &["-q", "-v"]);
    both_flags.expect(2);
    assert!(
        both_flags.stderr().contains("-q/--quiet and -v/--verbose ask for opposite things"),
        "{}",
        both_flags.stderr()
    );
    let both_vars = with(&[("HARPER_SHARD_QUIET", "1"), ("HARPER_SHARD_VERBOSE", "1")], &[]);
    both_vars.expect(2);
    assert!(
        both_vars
            .stderr()
            .contains("HARPER_SHARD_QUIET and HARPER_SHARD_VERBOSE ask for opposite things"),
        "{}",
        both_vars.stderr()
    );
    let bad_level = with(&[("HARPER_SHARD_VERBOSE", "loud")], &[]);
    bad_level.expect(2);
    assert!(
        bad_level.stderr().contains("use a level (0, 1, 2) or true / false"),
        "{}",
        bad_level.stderr()
    );
}

/// `--partition 1/4294967295` must not allocate a bin per partition (34 GB) and abort.
#[test]
fn a_partition_count_past_the_shard_count_costs_no_more_than_the_shards() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", TWO_SHARDS);
    let first =
        within(&sandbox, &["run", "--plan", "--format", "json", "--partition", "1/4294967295"]);
    first.expect(0);
    assert_eq!(selected(&first), serde_json::json!(["sql"]));
    let last = within(
        &sandbox,
        &["run", "--plan", "--format", "json", "--partition", "4294967295/4294967295"],
    );
    last.expect(0);
    assert_eq!(selected(&last), serde_json::json!([]));
}

/// `matrix --partitions 20000000` must not build twenty million jobs and run out of memory.
#[test]
fn a_matrix_has_at_most_one_job_per_shard() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", TWO_SHARDS);
    let r = within(&sandbox, &["matrix", "--partitions", "20000000"]);
    r.expect(0);
    let json: Value = serde_json::from_str(&r.stdout()).expect("the matrix is JSON");
    let jobs: Vec<(&str, &str)> = json["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (job["partition"].as_str().unwrap(), job["shards"].as_str().unwrap()))
        .collect();
    assert_eq!(jobs, [("1/2", "sql"), ("2/2", "api")]);
    assert!(
        r.stderr().contains("the plan has 2 shards, so the matrix has 2 jobs, not 20000000"),
        "{}",
        r.stderr()
    );
}

fn fifo(sandbox: &Sandbox, name: &str) -> std::path::PathBuf {
    let path = sandbox.path(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .expect("mkfifo");
    path
}

/// A FIFO nobody writes to must not hang the read forever, nor `/dev/zero` be read until out of
/// memory.
#[test]
fn a_plan_that_is_not_a_regular_file_or_is_too_large_is_refused_at_once() {
    let sandbox = Sandbox::new();
    fifo(&sandbox, "plan.fifo");
    let r = within(&sandbox, &["run", "--plan", "plan.fifo"]);
    r.expect(2);
    assert!(
        r.stderr().contains(
            "plan.fifo: cannot read the plan: it is a FIFO (named pipe), not a regular file"
        ),
        "{}",
        r.stderr()
    );

    sandbox.write("huge.yml", &" ".repeat(5 * 1024 * 1024));
    let r = within(&sandbox, &["run", "--plan", "huge.yml"]);
    r.expect(2);
    assert!(
        r.stderr()
            .contains("huge.yml: cannot read the plan: it is 5 MiB, more than the 4 MiB allowed"),
        "{}",
        r.stderr()
    );

    let r = within(&sandbox, &["matrix", "--partitions", "2", "/dev/zero"]);
    r.expect(2);
    assert!(
        r.stderr().contains("/dev/zero: cannot read the plan: it is a character device"),
        "{}",
        r.stderr()
    );
}

#[test]
fn timings_that_are_not_a_regular_file_are_refused_and_the_report_dirs_are_never_read() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", TWO_SHARDS);
    fifo(&sandbox, "timings.fifo");
    for command in [&["run", "--plan"][..], &["matrix", "--partitions", "2"][..]] {
        let r = within(&sandbox, &[command, &["--timings", "timings.fifo"]].concat());
        r.expect(2);
        assert!(
            r.stderr().contains(
                "cannot read timings timings.fifo: it is a FIFO (named pipe), not a regular file"
            ),
            "{}",
            r.stderr()
        );
        assert!(
            r.stderr().contains("--timings must name a regular file of at most 16 MiB"),
            "{}",
            r.stderr()
        );
    }
    let r = within(&sandbox, &["run", "--plan", "--timings", "/dev/zero"]);
    r.expect(2);

    // <report-dir>/timings.json is not an input: not even a FIFO there is opened.
    fifo(&sandbox, "report/timings.json");
    let r = within(&sandbox, &["run", "--plan"]);
    r.expect(0);
    assert!(!r.stderr().contains("timings"), "{}", r.stderr());
}

/// `harper-shard … | head -1`: the reader is gone before the tool writes. The write end of a
/// pipe whose read end is already closed makes that happen every time, not by a race.
fn with_closed_stdout(mut cmd: Command) -> Run {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped());
    run(cmd)
}

fn assert_quiet_end(r: &Run, code: i32) {
    r.expect(code);
    assert!(!r.stderr().contains("panicked"), "{}", r.stderr());
    assert!(
        !r.stderr().contains("cannot write to stdout"),
        "a closed pipe is not an error: {}",
        r.stderr()
    );
}

#[test]
fn a_closed_stdout_ends_the_dry_run_matrix_and_pool_output_quietly() {
    let sandbox = Sandbox::new();
    sandbox.write("harper-shards.yml", TWO_SHARDS);
    let commands: [&[&str]; 4] = [
        &["run", "--plan"],
        &["run", "--plan", "--format", "json"],
        &["matrix", "--partitions", "2"],
        &["pool", "status"],
    ];
    for args in commands {
        let mut cmd = sandbox.command();
        cmd.args(args).env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
        let r = with_closed_stdout(cmd);
        assert_quiet_end(&r, 0);
    }
}

#[test]
fn a_closed_stdout_after_a_real_run_keeps_the_runs_exit_status() {
    let sandbox = Sandbox::new();
    let shards = "  - name: a\n    run: \"true\"\n    timeout: 20s\n  - name: b\n    run: \"false\"\n    timeout: 20s\n";
    sandbox.write(
        "harper-shards.yml",
        &fake_plan("", "pool: {start: 127.0.53.2, count: 2}\n", shards),
    );
    let mut cmd = sandbox.command();
    cmd.args(["run", "--format", "json"]).env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
    let r = with_closed_stdout(cmd);
    assert_quiet_end(&r, 1);
    assert_eq!(sandbox.report()["exit_code"], 1, "the report was written whatever stdout did");
}

/// A plan whose Harper is `harper.js` beside it, run by the plan's `runtime` (node by default).
fn bin_plan(sandbox: &Sandbox, runtime: &str) {
    sandbox.write("harper.js", "");
    sandbox.write("harper-shards.yml", &format!("version: 1\nharper:\n  bin: harper.js\n  runtime: {runtime}\nshards:\n  - name: a\n    run: \"true\"\n"));
}

/// `run --plan` in `format` with `PATH` as given.
fn dry_run_with_path(sandbox: &Sandbox, format: &str, path: &std::ffi::OsStr) -> Run {
    let mut cmd = sandbox.command();
    cmd.args(["run", "--plan", "--format", format]).env("PATH", path);
    run(cmd)
}

#[test]
fn the_dry_run_shows_the_version_and_module_abi_of_the_node_on_the_path() {
    let sandbox = Sandbox::new();
    bin_plan(&sandbox, "node");
    let bin = support::node_bin(24);
    let pin = support::node::pinned().into_iter().find(|p| p.major == 24).unwrap();
    let abi =
        Command::new(bin.join("node")).args(["-p", "process.versions.modules"]).output().unwrap();
    let abi = String::from_utf8_lossy(&abi.stdout).trim().to_owned();
    let path = support::node::path_with(&bin);

    let human = dry_run_with_path(&sandbox, "human", &path);
    human.expect(0);
    let line = format!("runtime  node v{} (modules ABI {abi})", pin.version);
    assert!(human.stdout().contains(&line), "no `{line}` in:\n{}", human.stdout());

    let json = dry_run_with_path(&sandbox, "json", &path);
    json.expect(0);
    let json: Value = serde_json::from_str(&json.stdout()).expect("the dry run prints JSON");
    let found = &json["runtimes"][0];
    assert_eq!(found["runtime"], "node", "{json}");
    assert_eq!(found["found"]["version"], format!("v{}", pin.version), "{json}");
    assert_eq!(found["found"]["modules"], abi, "{json}");
}

/// The dry run says which shards boot Harper without a worker thread, and what that costs; the
/// JSON carries every shard's thread count.
#[test]
fn the_dry_run_names_the_single_thread_mode_and_its_trade_off() {
    let sandbox = Sandbox::new();
    sandbox.write("harper.js", "");
    sandbox.write(
        "harper-shards.yml",
        "version: 1\nharper: {bin: harper.js}\nshards:\n  - name: one\n    run: \"true\"\n  - name: single\n    harper: {threads: 0}\n    run: \"true\"\n",
    );
    let human = sandbox.run(&["run", "--plan"]).expect(0).stdout();
    let (one, single) = human.split_once("2/2 single").unwrap_or_else(|| panic!("{human}"));
    assert!(
        single.contains("threads  0: the single-thread mode")
            && single.contains("no worker thread"),
        "{human}"
    );
    assert!(!one.contains("threads "), "the default shard shows a thread line:\n{human}");
    let json: Value = serde_json::from_str(
        &sandbox.run(&["run", "--plan", "--format", "json"]).expect(0).stdout(),
    )
    .unwrap();
    let threads: Vec<&Value> = json["plan"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["harper"]["threads"])
        .collect();
    assert_eq!(threads, [&serde_json::json!(1), &serde_json::json!(0)], "{json}");
}

/// The dry run's `runtime` line with a cache of the sandbox's own and `bin` first on the PATH.
fn runtime_line(sandbox: &Sandbox, bin: &std::path::Path) -> String {
    let mut cmd = sandbox.command();
    cmd.args(["run", "--plan"])
        .env("PATH", support::node::path_with(bin))
        .env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache"));
    let out = run(cmd).expect(0).stdout();
    out.lines()
        .find(|l| l.trim_start().starts_with("runtime"))
        .unwrap_or_else(|| panic!("no runtime line in:\n{out}"))
        .trim()
        .to_owned()
}

/// Asking node its version is a node start: the answer is remembered in the cache, keyed by the
/// binary. A later run takes it from there (an answer planted in its place shows), and the same
/// binary changed in place is asked again.
#[test]
fn the_nodes_answer_is_remembered_per_binary_and_asked_again_once_it_changes() {
    let sandbox = Sandbox::new();
    bin_plan(&sandbox, "node");
    std::fs::create_dir_all(sandbox.path("cache")).unwrap();
    let bin = sandbox.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(support::node_bin(24).join("node"), bin.join("node")).unwrap();
    let real = runtime_line(&sandbox, &bin);
    assert!(real.starts_with("runtime  node v24."), "{real}");
    let kept: Vec<_> = std::fs::read_dir(sandbox.path("cache/runtimes"))
        .expect("the answer kept")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::write(&kept[0], "v99.1.2 999").unwrap();
    assert_eq!(
        runtime_line(&sandbox, &bin),
        "runtime  node v99.1.2 (modules ABI 999)",
        "the kept answer was not used"
    );

    let node = std::fs::File::options().write(true).open(bin.join("node")).unwrap();
    node.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600)).unwrap();
    drop(node);
    assert_eq!(runtime_line(&sandbox, &bin), real, "a changed binary was not asked again");
}

/// A version manager's shim (a link to a program of another name, as mise and volta install)
/// chooses the node itself: its answer is never remembered.
#[test]
fn the_answer_of_a_node_shim_is_not_remembered() {
    let sandbox = Sandbox::new();
    bin_plan(&sandbox, "node");
    std::fs::create_dir_all(sandbox.path("cache")).unwrap();
    let shim = sandbox.path("shim");
    std::fs::create_dir_all(&shim).unwrap();
    std::fs::hard_link(support::node_bin(24).join("node"), shim.join("volta-shim"))
        .or_else(|_| {
            std::fs::copy(support::node_bin(24).join("node"), shim.join("volta-shim")).map(drop)
        })
        .unwrap();
    std::os::unix::fs::symlink("volta-shim", shim.join("node")).unwrap();
    assert!(runtime_line(&sandbox, &shim).starts_with("runtime  node v24."));
    let kept = std::fs::read_dir(sandbox.path("cache/runtimes")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(kept, 0, "a shim's answer was remembered");
}

#[test]
fn the_dry_run_of_an_exec_harper_says_bin_runs_itself_and_which_node_a_wrapper_finds() {
    let sandbox = Sandbox::new();
    bin_plan(&sandbox, "exec");
    let path = std::env::var_os("PATH").unwrap();
    let human = dry_run_with_path(&sandbox, "human", &path);
    human.expect(0);
    assert!(
        human.stdout().contains(
            "runtime  `bin` is run itself (exec); a wrapper that starts node finds node v"
        ),
        "{}",
        human.stdout()
    );
    let json = dry_run_with_path(&sandbox, "json", &path);
    let json: Value =
        serde_json::from_str(&json.expect(0).stdout()).expect("the dry run prints JSON");
    assert_eq!(json["runtimes"], serde_json::json!([{"runtime": "exec", "found": null}]), "{json}");
}

#[test]
fn the_dry_run_says_so_when_the_runtime_is_not_on_the_path_and_still_exits_0() {
    let sandbox = Sandbox::new();
    bin_plan(&sandbox, "bun");
    let empty = sandbox.path("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let human = dry_run_with_path(&sandbox, "human", empty.as_os_str());
    human.expect(0);
    assert!(
        human.stdout().contains("runtime  bun: cannot run `bun` from the PATH"),
        "{}",
        human.stdout()
    );
}

/// The dry run of a `bin_plan` with a `node` on the PATH that runs `script` (sh) instead.
fn dry_run_with_fake_node(sandbox: &Sandbox, script: &str) -> Run {
    use std::os::unix::fs::PermissionsExt;
    bin_plan(sandbox, "node");
    let fake = sandbox.write("fake-bin/node", &format!("#!/bin/sh\n{script}\n"));
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path =
        std::env::join_paths([sandbox.path("fake-bin"), "/usr/bin".into(), "/bin".into()]).unwrap();
    dry_run_with_path(sandbox, "human", &path)
}

#[test]
fn a_node_that_answers_with_control_bytes_is_reported_as_saying_no_version() {
    let sandbox = Sandbox::new();
    let human = dry_run_with_fake_node(&sandbox, "printf 'v9\\033]0;title\\007\\r##[error]x 1\\n'");
    human.expect(0);
    assert!(
        human.stdout().contains("runtime  node: `node` did not say its version (exit code 0)"),
        "{}",
        human.stdout()
    );
    assert!(
        !human.stdout().contains('\u{1b}') && !human.stdout().contains("title"),
        "{}",
        human.stdout()
    );
}

#[test]
fn a_node_that_never_answers_is_killed_and_reported_as_not_answering() {
    let sandbox = Sandbox::new();
    let human = dry_run_with_fake_node(&sandbox, "exec sleep 600");
    human.expect(0);
    assert!(
        human.stdout().contains("runtime  node: `node` did not answer within 10s"),
        "{}",
        human.stdout()
    );
    assert!(
        sandbox.leftovers().is_empty(),
        "the hanging node was left running: {:?}",
        sandbox.leftovers()
    );
}
