//! Installing `harper.package` into the cache: once, even when two runs want it at the same
//! moment, and never half. npm is replaced by tests/fixtures/fake-npm (through
//! `HARPER_SHARD_NPM`), which installs a tiny node server that behaves like a ready Harper.

use crate::support;

use std::path::{Path, PathBuf};

use support::Sandbox;

/// The folder of `spec`'s install in `cache/packages`, on the node these tests run on.
fn folder(spec: &str) -> String {
    harper_shard::harper::install::install_name(spec).expect("the machine's node says its module ABI")
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
    let installed = sandbox.path("cache/packages").join(folder("harperdb@0.0.0-test"));
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
    let name = folder("harperdb@0.0.0-test");
    assert!(status.contains("package") && status.contains(&name) && status.contains("(harperdb@0.0.0-test)"), "{status}");

    // While a run holds the package's lock (installing it), clear leaves it alone.
    let lock = std::fs::File::create(sandbox.path(&format!("cache/packages/{name}.lock"))).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).expect("hold the lock");
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

    let after = sandbox.command().args(["cache", "clear"]).env("HARPER_SHARD_CACHE_DIR", sandbox.path("cache")).output().unwrap();
    let after = String::from_utf8_lossy(&after.stdout);
    assert!(after.contains(&format!("removed package {name}")), "the run ended but its package is kept: {after}");
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
    assert_eq!(installed, ["harperdb@^0.0.0-test", "harperdb@~0.0.0-test"], "one spec ran the other's install:\n{calls}");
    for spec in ["harperdb@^0.0.0-test", "harperdb@~0.0.0-test"] {
        let marker = sandbox.path("cache/packages").join(folder(spec)).join(".harper-shard-complete");
        assert_eq!(support::read(&marker), spec);
    }
    let out = install_command(&sandbox, "r2").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(support::read(&sandbox.path("npm.log")).lines().count(), 2, "the second run did not reuse both installs");
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
    std::fs::set_permissions(sandbox.path("open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let err = refused_run(&sandbox, &sandbox.path("open"));
    assert!(err.contains("writable by others (mode 1777)") && err.contains("HARPER_SHARD_CACHE_DIR"), "{err}");
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
        &format!("cache/packages/{}/node_modules/harperdb/bin/harperdb.js", folder("harperdb@0.0.0-test")),
        &format!("require('fs').writeFileSync({:?}, '')", pwned.display().to_string()),
    );
    std::fs::write(planted.join(".harper-shard-complete"), "harperdb@0.0.0-test").unwrap();
    for dir in ["cache", "cache/packages"] {
        std::fs::set_permissions(sandbox.path(dir), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let chown = std::process::Command::new("chown").args(["-R", "1234:1234"]).arg(&planted).status().unwrap();
    assert!(chown.success(), "the test needs to give files to another user (it runs as root)");
    let err = refused_run(&sandbox, &sandbox.path("cache"));
    assert!(err.contains(&format!("the cached install of harperdb@0.0.0-test {} belongs to uid 1234", planted.display())), "{err}");
    assert!(!pwned.exists(), "the planted Harper ran");
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
    let spec = harper_shard::harper::install::folder("harperdb@0.0.0-test");
    assert_eq!(installs, [format!("{spec}-node-abi127"), format!("{spec}-node-abi137")]);
}
