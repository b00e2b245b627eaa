//! The boot cache's preload (src/harper/boot_cache.cjs) on node itself, against a small package
//! of known files: what a build writes, a copy reads, and a copy behaves exactly as without it —
//! including after a file changed at the same length, with a corrupt cache, for a file outside
//! the package and for `import()`. Real Harper with the cache is in tests/integration/real_harper.rs.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::Sandbox;

const PRELOAD: &str = include_str!("../../src/harper/boot_cache.cjs");

/// A package at `<sandbox>/pkgs/p/` and a file outside it that the entry requires.
fn package(sandbox: &Sandbox) -> PathBuf {
    sandbox.write(
        "pkgs/p/main.js",
        "#!/usr/bin/env node\n\
         const a = require('./lib/a');\n\
         const dep = require('dep');\n\
         const outside = require('../../other/o.js');\n\
         require('./lib/dyn')().then((esm) => console.log(JSON.stringify({ a: a(), dep, outside, esm })));\n",
    );
    sandbox.write("pkgs/p/lib/a.js", "module.exports = () => 'A1';\n");
    sandbox.write(
        "pkgs/p/lib/dyn.js",
        "module.exports = () => import('./esm.mjs').then((m) => m.value);\n",
    );
    sandbox.write("pkgs/p/lib/esm.mjs", "export const value = 'esm1';\n");
    sandbox
        .write("pkgs/p/node_modules/dep/package.json", "{\"name\": \"dep\", \"main\": \"d.js\"}\n");
    sandbox.write("pkgs/p/node_modules/dep/d.js", "module.exports = 'dep1';\n");
    sandbox.write("other/o.js", "module.exports = require('../pkgs/p/lib/a')() + '-outside';\n");
    sandbox.write("preload.cjs", PRELOAD);
    sandbox.path("pkgs/p")
}

/// `node --require preload.cjs main.js` with the stats file named, and nothing else set.
fn node(sandbox: &Sandbox) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg("--require")
        .arg(sandbox.path("preload.cjs"))
        .arg(sandbox.path("pkgs/p/main.js"))
        .env(support::MARK, &sandbox.mark)
        .env("HARPER_SHARD_BOOT_STATS", sandbox.path("stats.jsonl"));
    cmd
}

/// Runs the package's entry under the preload; its output and the counts its main thread wrote.
fn run(sandbox: &Sandbox, produce: bool) -> (Value, Value) {
    let stats = sandbox.path("stats.jsonl");
    let _ = std::fs::remove_file(&stats);
    let root = format!("{}/", sandbox.path("pkgs/p").display());
    let out = node(sandbox)
        .env("HARPER_SHARD_BOOT_CACHE_DIR", sandbox.path("cache"))
        .env("HARPER_SHARD_BOOT_ROOT", root)
        .env("HARPER_SHARD_BOOT_PRODUCE", if produce { "1" } else { "0" })
        .output()
        .expect("node is needed for the boot cache's tests (it runs Harper): install Node.js 20 or later");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "node failed or warned: {:?}\n{stderr}",
        out.status
    );
    let printed = serde_json::from_slice(&out.stdout).expect("the entry prints one JSON line");
    let counts = serde_json::from_str(support::read(&stats).trim())
        .expect("the main thread wrote its counts");
    (printed, counts)
}

fn code_files(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join("code"))
        .expect("the build wrote code")
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_copy_reads_the_code_and_resolutions_its_build_wrote_and_behaves_the_same() {
    let sandbox = Sandbox::new();
    let root = package(&sandbox);
    let (built, produced) = run(&sandbox, true);
    assert_eq!(
        built,
        serde_json::json!({ "a": "A1", "dep": "dep1", "outside": "A1-outside", "esm": "esm1" })
    );
    // main.js, lib/a.js and dep/d.js are compiled here; lib/dyn.js may `import()` and other/o.js
    // is not the package's: Node compiles those two.
    assert_eq!(
        produced["code"],
        serde_json::json!({ "hit": 0, "miss": 3, "rejected": 0, "passed": 2 })
    );
    assert_eq!(code_files(&sandbox.path("cache")).len(), 3);

    let (copied, read) = run(&sandbox, false);
    assert_eq!(copied, built, "a copy behaves differently with the cache");
    assert_eq!(
        read["code"],
        serde_json::json!({ "hit": 3, "miss": 0, "rejected": 0, "passed": 2 })
    );
    // ./lib/a, dep and ./lib/dyn from main.js are remembered; ../../other/o.js is outside the
    // package, so Node resolves it every time.
    assert_eq!(read["resolve"], serde_json::json!({ "hit": 3, "miss": 1 }));

    let map: serde_json::Map<String, Value> =
        serde_json::from_str(&support::read(&sandbox.path("cache/resolve.json"))).unwrap();
    let root = root.display().to_string();
    assert!(!map.is_empty());
    for (key, file) in &map {
        assert!(
            key.starts_with(&root) && file.as_str().unwrap().starts_with(&root),
            "{key} -> {file}: outside the package"
        );
    }
}

#[test]
fn a_file_changed_at_the_same_length_is_compiled_afresh() {
    let sandbox = Sandbox::new();
    package(&sandbox);
    run(&sandbox, true);
    sandbox.write("pkgs/p/lib/a.js", "module.exports = () => 'A2';\n");
    let (printed, counts) = run(&sandbox, false);
    assert_eq!(printed["a"], "A2", "old compiled code ran for a changed file");
    assert_eq!(counts["code"]["hit"], 2);
    assert_eq!(counts["code"]["miss"], 1);
}

#[test]
fn a_corrupt_cache_is_refused_and_the_files_compiled_as_usual() {
    let sandbox = Sandbox::new();
    package(&sandbox);
    let (built, _) = run(&sandbox, true);
    for file in code_files(&sandbox.path("cache")) {
        std::fs::write(file, b"not V8's code cache at all").unwrap();
    }
    std::fs::write(sandbox.path("cache/resolve.json"), b"{ not json").unwrap();
    let (printed, counts) = run(&sandbox, false);
    assert_eq!(printed, built);
    assert_eq!(counts["code"]["rejected"], 3);
    assert_eq!(counts["resolve"]["hit"], 0);
}

#[test]
fn a_fifo_where_a_cache_entry_goes_does_not_hang_the_start() {
    let sandbox = Sandbox::new();
    package(&sandbox);
    let (built, _) = run(&sandbox, true);
    let entry = code_files(&sandbox.path("cache")).remove(0);
    std::fs::remove_file(&entry).unwrap();
    nix::unistd::mkfifo(&entry, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let map = sandbox.path("cache/resolve.json");
    std::fs::remove_file(&map).unwrap();
    nix::unistd::mkfifo(&map, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Blocking on either FIFO would hang node for good: `run` would never return.
    let (printed, counts) = run(&sandbox, false);
    assert_eq!(printed, built);
    assert_eq!(counts["code"]["hit"], 2);
    assert_eq!(counts["code"]["miss"], 1, "the FIFO counts as no entry");
    assert_eq!(counts["resolve"]["hit"], 0);
}

#[test]
fn without_its_variables_the_preload_changes_nothing() {
    let sandbox = Sandbox::new();
    package(&sandbox);
    let out = node(&sandbox).output().expect("run node");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !sandbox.path("stats.jsonl").exists(),
        "the preload hooked Node without a cache to use"
    );
    assert!(!sandbox.path("cache").exists());
}
