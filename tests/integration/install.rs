//! Installing `harper.package` into the cache: once, even when two runs want it at the same
//! moment, and never half. npm is replaced by tests/fixtures/fake-npm (through
//! `HARPER_SHARD_NPM`), which installs a tiny node server that behaves like a ready Harper.

use crate::support;

use std::path::{Path, PathBuf};

use support::Sandbox;

/// The folder of `spec`'s install in `cache/packages`, on the node these tests run on.
fn folder(spec: &str) -> String {
    harper_shard::harper::install::install_name(spec)
        .expect("the machine's node says its module ABI")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The stand-in "Harper" writes no configuration, so it cannot be a boot template: these
/// tests are about the install.
fn package_plan(sandbox: &Sandbox) {
    sandbox.write(
        "harper-shards.yml",
        "version: 1\nharper:\n  package: harperdb@0.0.0-test\n  template: off\n  startup: {idle: 20s, max: 30s}\nshards:\n  - name: a\n    run: \"true\"\n",
    );
}

fn install_command(sandbox: &Sandbox, report: &str) -> std::process::Command {
    let mut cmd = sandbox.command();
    cmd.args(["run", "--report-dir", report])
        .env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache"))
        .env("HARPER_SHARD_NPM", fixture("fake-npm"))
        .env("FAKE_NPM_LOG", sandbox.path("npm.log"));
    cmd
}

#[test]
fn two_runs_installing_at_the_same_moment_install_once_and_both_pass() {
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    let first = install_command(&sandbox, "r1").spawn().expect("start the first run");
    let second = install_command(&sandbox, "r2").spawn().expect("start the second run");
    for (name, child) in [("first", first), ("second", second)] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "the {name} run failed");
    }
    let calls = support::read(&sandbox.path("npm.log"));
    assert_eq!(calls.lines().count(), 1, "npm ran more than once:\n{calls}");
    let packages: Vec<String> = std::fs::read_dir(sandbox.path("cache/packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(packages, [folder("harperdb@0.0.0-test")], "one complete copy, nothing partial");

    // A third run reuses the cache without calling npm.
    let out = install_command(&sandbox, "r3").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        support::read(&sandbox.path("npm.log")).lines().count(),
        1,
        "the cached copy was not reused"
    );
}

#[test]
fn a_failed_install_exits_3_says_why_and_leaves_no_partial_copy() {
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    let out = install_command(&sandbox, "r1").env("FAKE_NPM_FAIL", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`npm install harperdb@0.0.0-test` failed"), "{err}");
    assert!(err.contains("npm error code E404"), "npm's own last words are quoted: {err}");
    let installed = sandbox.path("cache/packages").join(folder("harperdb@0.0.0-test"));
    assert!(!installed.exists(), "a failed install was kept as complete");

    let out = install_command(&sandbox, "r2").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the next run installs afresh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn npm_progress_is_shown_while_it_installs() {
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    let out = install_command(&sandbox, "r1").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("installing harperdb@0.0.0-test into the cache"), "{err}");
    assert!(err.contains("  npm: npm http fetch GET 200"), "npm's progress is not shown: {err}");
    assert!(err.contains("installed harperdb@0.0.0-test in"), "{err}");
}

#[test]
fn cache_status_lists_the_installed_package_and_cache_clear_removes_what_no_run_holds() {
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    assert_eq!(install_command(&sandbox, "r1").output().unwrap().status.code(), Some(0));
    let cache = |args: &[&str]| {
        let out = sandbox
            .command()
            .args(args)
            .env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = cache(&["cache", "status"]);
    let name = folder("harperdb@0.0.0-test");
    assert!(
        status.contains("package")
            && status.contains(&name)
            && status.contains("(harperdb@0.0.0-test)"),
        "{status}"
    );

    // While a run holds the package's lock (installing it), clear leaves it alone.
    let lock = std::fs::File::create(sandbox.path(&format!("cache/packages/{name}.lock"))).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .expect("hold the lock");
    let kept = cache(&["cache", "clear"]);
    assert!(kept.contains(&format!("kept package {name}: in use")), "{kept}");
    assert!(sandbox.path(&format!("cache/packages/{name}")).is_dir());
    drop(held);

    let cleared = cache(&["cache", "clear"]);
    assert!(cleared.contains(&format!("removed package {name}")), "{cleared}");
    assert!(!sandbox.path(&format!("cache/packages/{name}")).exists());
    assert!(!cache(&["cache", "status"]).contains("harperdb@0.0.0-test"));
}

/// The run holds its package until it ends: a `cache clear` from the shard's own command keeps
/// it, says so, and the restart after it boots Harper from it.
#[test]
fn cache_clear_during_a_run_keeps_the_package_it_uses_and_a_restart_boots_from_it() {
    let sandbox = Sandbox::new();
    let (hs, cleared) = (support::harper_shard(), sandbox.path("cleared.txt"));
    sandbox.write(
        "harper-shards.yml",
        &format!(
            "version: 1\nharper:\n  package: harperdb@0.0.0-test\n  template: off\n  startup: {{idle: 20s, max: 30s}}\nshards:\n  - name: a\n    \
             run: \"'{hs}' cache clear > '{}' && '{hs}' ctl restart\"\n",
            cleared.display()
        ),
    );
    let out = install_command(&sandbox, "r1").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let name = folder("harperdb@0.0.0-test");
    let kept = support::read(&cleared);
    assert!(kept.contains(&format!("kept package {name}: in use")), "{kept}");

    let after = sandbox
        .command()
        .args(["cache", "clear"])
        .env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache"))
        .output()
        .unwrap();
    let after = String::from_utf8_lossy(&after.stdout);
    assert!(
        after.contains(&format!("removed package {name}")),
        "the run ended but its package is kept: {after}"
    );
    assert!(!sandbox.path(&format!("cache/packages/{name}")).exists());
}

/// `^` and `~` both read `_` in a folder name: each spec still gets an install of its own, and
/// the next run finds both.
#[test]
fn specs_that_differ_only_in_unsafe_characters_are_installed_apart() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "harper-shards.yml",
        "version: 1
harper:
  template: off
  startup: {idle: 20s, max: 30s}
shards:
  - name: caret
    run: \"true\"
    harper: {package: \"harperdb@^0.0.0-test\"}
  - name: tilde
    run: \"true\"
    harper: {package: \"harperdb@~0.0.0-test\"}
",
    );
    let out = install_command(&sandbox, "r1").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let calls = support::read(&sandbox.path("npm.log"));
    let mut installed: Vec<&str> = calls.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    installed.sort();
    assert_eq!(
        installed,
        ["harperdb@^0.0.0-test", "harperdb@~0.0.0-test"],
        "one spec ran the other's install:\n{calls}"
    );
    for spec in ["harperdb@^0.0.0-test", "harperdb@~0.0.0-test"] {
        let marker =
            sandbox.path("cache/packages").join(folder(spec)).join(".harper-shard-complete");
        assert_eq!(support::read(&marker), spec);
    }
    let out = install_command(&sandbox, "r2").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        support::read(&sandbox.path("npm.log")).lines().count(),
        2,
        "the second run did not reuse both installs"
    );
}

/// Runs the package plan against a cache the test has prepared; returns stderr.
fn refused_run(sandbox: &Sandbox, cache: &Path) -> String {
    let out = install_command(sandbox, "r1").env("HARPER_SHARD_CACHE_DIR", cache).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    err
}

#[test]
fn a_cache_folder_writable_by_everyone_or_a_link_is_refused_and_nothing_installed() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    std::fs::create_dir(sandbox.path("open")).unwrap();
    std::fs::set_permissions(sandbox.path("open"), std::fs::Permissions::from_mode(0o1777))
        .unwrap();
    let err = refused_run(&sandbox, &sandbox.path("open"));
    assert!(
        err.contains("writable by others (mode 1777)") && err.contains("HARPER_SHARD_CACHE_DIR"),
        "{err}"
    );
    std::fs::create_dir(sandbox.path("real")).unwrap();
    std::os::unix::fs::symlink(sandbox.path("real"), sandbox.path("link")).unwrap();
    let err = refused_run(&sandbox, &sandbox.path("link"));
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(!sandbox.path("npm.log").exists(), "npm ran into a refused cache");
}

/// Another user planted a "complete" install of the plan's package in the cache: the run refuses
/// it, naming it, and never executes it.
#[test]
fn a_cached_install_that_belongs_to_another_user_is_refused_and_not_run() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    let planted = sandbox.path("cache/packages").join(folder("harperdb@0.0.0-test"));
    let pwned = sandbox.path("pwned");
    sandbox.write(
        &format!(
            "cache/packages/{}/node_modules/harperdb/bin/harperdb.js",
            folder("harperdb@0.0.0-test")
        ),
        &format!("require('fs').writeFileSync({:?}, '')", pwned.display().to_string()),
    );
    std::fs::write(planted.join(".harper-shard-complete"), "harperdb@0.0.0-test").unwrap();
    for dir in ["cache", "cache/packages"] {
        std::fs::set_permissions(sandbox.path(dir), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let chown = std::process::Command::new("chown")
        .args(["-R", "1234:1234"])
        .arg(&planted)
        .status()
        .unwrap();
    assert!(chown.success(), "the test needs to give files to another user (it runs as root)");
    let err = refused_run(&sandbox, &sandbox.path("cache"));
    assert!(
        err.contains(&format!(
            "the cached install of harperdb@0.0.0-test {} belongs to uid 1234",
            planted.display()
        )),
        "{err}"
    );
    assert!(!pwned.exists(), "the planted Harper ran");
}

#[test]
fn each_node_module_abi_gets_its_own_install_and_reuses_it() {
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    let on = |major: u32, report: &str| {
        let path = support::node::path_with(&support::node_bin(major));
        let out = install_command(&sandbox, report).env("PATH", path).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "the run on node {major} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    on(22, "r1");
    on(24, "r2");
    let calls = support::read(&sandbox.path("npm.log"));
    assert_eq!(calls.lines().count(), 2, "node 22 and node 24 shared one install:\n{calls}");
    on(22, "r3");
    assert_eq!(
        support::read(&sandbox.path("npm.log")).lines().count(),
        2,
        "node 22's install was not reused"
    );
    let mut installs: Vec<String> = std::fs::read_dir(sandbox.path("cache/packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    installs.sort();
    let spec = harper_shard::harper::install::folder("harperdb@0.0.0-test");
    assert_eq!(installs, [format!("{spec}-node-abi127"), format!("{spec}-node-abi137")]);
}

/// A plan whose shard runs the stand-in "Harper" from its file (no install at the run's start)
/// on `addr` and whose command is `script`, with `$HS` the binary.
fn bin_plan(sandbox: &Sandbox, addr: &str, script: &str) {
    let script = script.replace('\\', "\\\\").replace('"', "\\\"");
    sandbox.write(
        "harper-shards.yml",
        &format!(
            "version: 1\npool: {{start: {addr}, count: 1, wait: 5s}}\nharper:\n  bin: {}\n  template: off\n  startup: {{idle: 20s, max: 30s}}\nshards:\n  - name: a\n    env: {{HS: \"{}\"}}\n    run: \"{script}\"\n",
            fixture("fake-harper.js").display(),
            support::harper_shard()
        ),
    );
}

fn bin_command(sandbox: &Sandbox) -> std::process::Command {
    let mut cmd = install_command(sandbox, "r1");
    cmd.env("HARPER_SHARD_POOL_DIR", sandbox.path("pool"));
    cmd
}

/// The command line of the process whose pid an answer in `file` names.
const CMDLINE_OF: &str = "python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))[\"instance\"][\"pid\"]; print(open(\"/proc/%d/cmdline\" % p).read().replace(chr(0), \" \"))'";

#[test]
fn a_stopped_instance_started_on_another_package_installs_it_then_and_holds_it_for_the_run() {
    let sandbox = Sandbox::new();
    bin_plan(
        &sandbox,
        "127.0.80.120",
        &format!(
            "echo kept > \"$HARPER_ROOTPATH/data\" && $HS ctl stop && $HS ctl start --set package=harperdb@0.0.0-test --json > up.json \
             && {CMDLINE_OF} up.json > cmdline.txt && $HS cache clear > cleared.txt && $HS ctl restart && cat \"$HARPER_ROOTPATH/data\" > data.txt"
        ),
    );
    let out = bin_command(&sandbox).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("installing harperdb@0.0.0-test into the cache"),
        "the install is not shown: {err}"
    );
    assert_eq!(
        support::read(&sandbox.path("npm.log")).lines().count(),
        1,
        "npm did not run once for the new Harper"
    );
    let up: serde_json::Value =
        serde_json::from_str(&support::read(&sandbox.path("up.json"))).unwrap();
    assert_eq!(up["instance"]["harper"]["package"], "harperdb@0.0.0-test", "{up}");
    let name = folder("harperdb@0.0.0-test");
    let cmdline = support::read(&sandbox.path("cmdline.txt"));
    assert!(
        cmdline.contains(&format!("cache/packages/{name}/node_modules/harperdb/bin/harperdb.js")),
        "the new life runs {cmdline}"
    );
    assert!(
        support::read(&sandbox.path("cleared.txt"))
            .contains(&format!("kept package {name}: in use")),
        "the new package was not held"
    );
    assert_eq!(support::read(&sandbox.path("data.txt")), "kept\n");
    assert!(sandbox.leftovers().is_empty());
}

#[test]
fn a_package_that_fails_to_install_answers_install_failed_with_npms_words_and_the_instance_keeps_its_harper_and_data()
 {
    let sandbox = Sandbox::new();
    bin_plan(
        &sandbox,
        "127.0.80.124",
        "echo kept > \"$HARPER_ROOTPATH/data\" && $HS ctl stop && { $HS ctl start --set package=harperdb@0.0.0-test --json > failed.json; echo $? > rc; } \
         && $HS ctl status --id main --json > after.json && $HS ctl start && cat \"$HARPER_ROOTPATH/data\" > data.txt",
    );
    let out = bin_command(&sandbox).env("FAKE_NPM_FAIL", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(support::read(&sandbox.path("rc")).trim(), "1");
    let failed: serde_json::Value =
        serde_json::from_str(&support::read(&sandbox.path("failed.json"))).unwrap();
    assert_eq!(failed["code"], "install_failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("`npm install harperdb@0.0.0-test` failed"),
        "{failed}"
    );
    assert!(
        failed["tail"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("E404")),
        "npm's words: {failed}"
    );
    let after: serde_json::Value =
        serde_json::from_str(&support::read(&sandbox.path("after.json"))).unwrap();
    assert_eq!(after["instance"]["state"], "stopped", "{after}");
    assert_eq!(
        after["instance"]["harper"]["bin"],
        fixture("fake-harper.js").display().to_string(),
        "{after}"
    );
    assert_eq!(support::read(&sandbox.path("data.txt")), "kept\n");
    assert!(
        !sandbox.path("cache/packages").join(folder("harperdb@0.0.0-test")).exists(),
        "a failed install was kept"
    );
}

#[test]
fn sigint_while_a_start_installs_another_package_stops_npm_and_tears_down_within_the_budget() {
    use nix::sys::signal::{Signal, kill};
    let sandbox = Sandbox::new();
    bin_plan(
        &sandbox,
        "127.0.80.128",
        "$HS ctl stop && $HS ctl start --set package=harperdb@0.0.0-test",
    );
    let hanging = sandbox.path("npm.hanging");
    let stderr = std::fs::File::create(sandbox.path("stderr.txt")).unwrap();
    let mut tool = bin_command(&sandbox)
        .env("FAKE_NPM_HANG", &hanging)
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    sandbox.wait_for("npm to start", std::time::Duration::from_secs(30), || hanging.exists());
    let signalled = std::time::Instant::now();
    kill(nix::unistd::Pid::from_raw(tool.id() as i32), Signal::SIGINT).unwrap();
    // A tool that waits for npm would wait ten minutes: the sandbox ends it when this gives up.
    let mut status = None;
    sandbox.wait_for("the tool to exit", std::time::Duration::from_secs(15), || {
        status = tool.try_wait().unwrap();
        status.is_some()
    });
    let took = signalled.elapsed();
    assert_eq!(status.unwrap().code(), Some(130), "{}", support::read(&sandbox.path("stderr.txt")));
    assert!(took < std::time::Duration::from_secs(7), "the teardown took {took:?}");
    assert!(sandbox.leftovers().is_empty(), "npm or Harper outlived the run");
    let partial: Vec<String> = std::fs::read_dir(sandbox.path("cache/packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(partial.is_empty(), "the cancelled install left {partial:?}");
    let w: Vec<_> = std::fs::read_dir(sandbox.path("w"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(w.is_empty(), "instance directories left: {w:?}");
    assert!(support::ports_free("127.0.80.128", &support::DEFAULT_PORTS));
}
