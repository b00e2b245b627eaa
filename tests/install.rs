//! Installing `harper.package` into the cache: once, even when two runs want it at the same
//! moment, and never half. npm is replaced by tests/fixtures/fake-npm (through
//! `HARPER_SHARD_NPM`), which installs a tiny node server that behaves like a ready Harper.

mod support;

use std::path::{Path, PathBuf};

use support::Sandbox;

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
    let installed = support::installed_package(&sandbox.path("cache"), "harperdb@0.0.0-test");
    assert_eq!(packages, [installed.file_name().unwrap().to_string_lossy()], "one complete copy, nothing partial");

    // A third run reuses the cache without calling npm.
    let out = install_command(&sandbox, "r3").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(support::read(&sandbox.path("npm.log")).lines().count(), 1, "the cached copy was not reused");
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
    let installed = support::installed_package(&sandbox.path("cache"), "harperdb@0.0.0-test");
    assert!(!installed.exists(), "a failed install was kept as complete");

    let out = install_command(&sandbox, "r2").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the next run installs afresh: {}", String::from_utf8_lossy(&out.stderr));
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
        let out = sandbox.command().args(args).env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache")).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = cache(&["cache", "status"]);
    assert!(status.contains("package") && status.contains("harperdb@0.0.0-test"), "{status}");

    // While a run holds the package's lock (installing it), clear leaves it alone.
    let installed = support::installed_package(&sandbox.path("cache"), "harperdb@0.0.0-test");
    let name = installed.file_name().unwrap().to_string_lossy().into_owned();
    let lock = std::fs::File::create(installed.with_file_name(format!("{name}.lock"))).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).expect("hold the lock");
    let kept = cache(&["cache", "clear"]);
    assert!(kept.contains(&format!("kept package {name}: in use")), "{kept}");
    assert!(installed.is_dir());
    drop(held);

    let cleared = cache(&["cache", "clear"]);
    assert!(cleared.contains(&format!("removed package {name}")), "{cleared}");
    assert!(!installed.exists());
    assert!(!cache(&["cache", "status"]).contains("harperdb@0.0.0-test"));
}

#[test]
fn each_node_module_abi_gets_its_own_install_and_reuses_it() {
    let sandbox = Sandbox::new();
    package_plan(&sandbox);
    let on = |major: u32, report: &str| {
        let path = support::node::path_with(&support::node_bin(major));
        let out = install_command(&sandbox, report).env("PATH", path).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "the run on node {major} failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    on(22, "r1");
    on(24, "r2");
    let calls = support::read(&sandbox.path("npm.log"));
    assert_eq!(calls.lines().count(), 2, "node 22 and node 24 shared one install:\n{calls}");
    on(22, "r3");
    assert_eq!(support::read(&sandbox.path("npm.log")).lines().count(), 2, "node 22's install was not reused");
    let mut installs: Vec<String> = std::fs::read_dir(sandbox.path("cache/packages"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    installs.sort();
    assert_eq!(installs, ["harperdb@0.0.0-test-node-abi127", "harperdb@0.0.0-test-node-abi137"]);
}
