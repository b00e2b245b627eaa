//! The boot cache: what Node would otherwise redo at every start of a templated instance.
//!
//! A start on an existing ROOTPATH is mostly Node compiling and resolving the ~1,840 files of
//! Harper's package, on the main thread and again on the worker (docs/harper.md, "Boot cache").
//! The package sits in the tool's cache and never changes once installed, so the template's
//! build runs Harper with a preload (`boot_cache.cjs`, through `NODE_OPTIONS`, which the worker
//! inherits) that keeps V8's compiled code and the resolutions inside the package; every copy
//! runs with the same preload reading them. It lives in `<template>/boot/` and goes wherever the
//! template goes. Only for `runtime: node` and an entry inside the tool's package cache (a `bin:`
//! checkout may change under it).
//!
//! Where Node caches compiled code itself (node 22.1 and later, [`super::runtime::Found::compile_cache`]),
//! its cache takes what the preload leaves to Node (ES modules, files with `import()`): the
//! template's build runs with `NODE_COMPILE_CACHE` set to the template's `compile/` as well
//! (Node writes it as each thread exits), and every instance boots every life with a copy of its
//! own in `<instance>/compile/`, so no two live instances write into one folder and nothing a
//! copy writes reaches the template. Node checks each entry against the source's hash and its
//! own content's checksum, and keeps entries per node version, arch, V8 flags and uid; the
//! template key holds the runtime's version and the [`Mode`] as well.
//!
//! Which of the two a template keeps is [`Mode`]: both where Node has a cache, the preload alone
//! where it has not, measured fastest on node 22, 24 and 26 (BENCHMARKS.md, "Node's compile
//! cache against the preload"). `HARPER_SHARD_BOOT_CACHE` (`off`, `preload`, `compile`,
//! `both`) asks for one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The preload itself, written into each cache directory.
const PRELOAD: &str = include_str!("boot_cache.cjs");
const PRELOAD_FILE: &str = "preload.cjs";
/// Written last by the build's Harper as its main thread exits: its presence marks a complete
/// cache.
const RESOLVE_MAP: &str = "resolve.json";

/// Which cache a template keeps, and so every copy of it boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `HARPER_SHARD_BOOT_CACHE=off`: neither.
    Off,
    /// The preload alone: node 20's only cache.
    Preload,
    /// Node's own compile cache alone.
    Compile,
    /// The preload, and Node's compile cache for what the preload leaves to Node (ES modules,
    /// files with `import()`).
    Both,
}

impl Mode {
    pub fn preload(self) -> bool {
        matches!(self, Mode::Preload | Mode::Both)
    }

    pub fn compile(self) -> bool {
        matches!(self, Mode::Compile | Mode::Both)
    }
}

/// The cache templates built now keep, for a node that has a compile cache of its own or not:
/// `HARPER_SHARD_BOOT_CACHE` when set (`off`, `preload`, `compile`, `both`), else the one
/// measured fastest on that node (BENCHMARKS.md, "Node's compile cache against the preload").
pub fn mode(node_compiles: bool) -> Mode {
    mode_by(std::env::var("HARPER_SHARD_BOOT_CACHE").ok().as_deref(), node_compiles)
}

fn mode_by(value: Option<&str>, node_compiles: bool) -> Mode {
    let value = value.map(|v| v.trim().to_ascii_lowercase());
    let asked = match value.as_deref() {
        Some("off" | "0" | "false" | "no") => return Mode::Off,
        Some("preload") => Mode::Preload,
        Some("compile") => Mode::Compile,
        Some("both") => Mode::Both,
        _ => DEFAULT,
    };
    match asked {
        // Where Node has no compile cache, the preload is all there is.
        Mode::Compile | Mode::Both if !node_compiles => Mode::Preload,
        asked => asked,
    }
}

/// The default where nothing is asked.
const DEFAULT: Mode = Mode::Both;

/// The cache a template for a node that has a compile cache or not is built with: [`mode`],
/// except that `off` boots the default's template without it rather than building another.
pub fn built_with(node_compiles: bool) -> Mode {
    built_with_by(std::env::var("HARPER_SHARD_BOOT_CACHE").ok().as_deref(), node_compiles)
}

fn built_with_by(value: Option<&str>, node_compiles: bool) -> Mode {
    match mode_by(value, node_compiles) {
        Mode::Off => mode_by(None, node_compiles),
        built => built,
    }
}

/// The tool's switch: on unless `HARPER_SHARD_BOOT_CACHE=off` (or `0`, `false`, `no`).
pub fn enabled() -> bool {
    mode(false) != Mode::Off
}

/// The package directory the cache may trust for `entry`: `<cache>/packages/<spec>/`, when the
/// entry is inside it and the path is UTF-8 (it goes into `NODE_OPTIONS`).
pub fn package_root(cache: &Path, entry: &Path) -> Option<String> {
    let packages = cache.join("packages");
    let spec = entry.strip_prefix(&packages).ok()?.components().next()?;
    let root = packages.join(spec).to_str()?.to_owned();
    Some(format!("{root}/"))
}

/// Writes the preload into `dir`, ready for a build to fill.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(PRELOAD_FILE);
    std::fs::write(&file, PRELOAD).with_context(|| format!("cannot write {}", file.display()))
}

/// Whether the build left a complete cache in `dir`.
pub fn complete(dir: &Path) -> bool {
    dir.join(PRELOAD_FILE).is_file() && dir.join(RESOLVE_MAP).is_file()
}

/// Adds to Harper's environment what makes it use the cache in `dir` for the package at
/// `root`; `produce` for the template's build, which writes it. `NODE_OPTIONS` keeps what the
/// plan or the tool's own environment gave it.
pub fn add_env(
    env: &mut BTreeMap<String, String>,
    dir: &Path,
    root: &str,
    produce: bool,
) -> Option<()> {
    let preload = dir.join(PRELOAD_FILE);
    let preload = preload.to_str()?;
    let dir = dir.to_str()?;
    let given = env.get("NODE_OPTIONS").cloned().or_else(|| std::env::var("NODE_OPTIONS").ok());
    let require = format!("--require={}", quoted(preload));
    let options = match given.filter(|g| !g.trim().is_empty()) {
        Some(given) => format!("{given} {require}"),
        None => require,
    };
    env.insert("NODE_OPTIONS".into(), options);
    env.insert("HARPER_SHARD_BOOT_CACHE_DIR".into(), dir.to_owned());
    env.insert("HARPER_SHARD_BOOT_ROOT".into(), root.to_owned());
    if produce {
        env.insert("HARPER_SHARD_BOOT_PRODUCE".into(), "1".into());
    }
    Some(())
}

/// A value in `NODE_OPTIONS`, which Node splits at spaces outside double quotes.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Where a template, or a template's build directory, keeps its cache.
pub fn dir_of(template: &Path) -> PathBuf {
    template.join("boot")
}

/// Where a template, its build, or an instance (its base folder) keeps Node's compile cache.
pub fn compile_dir_of(base: &Path) -> PathBuf {
    base.join("compile")
}

/// Adds `NODE_COMPILE_CACHE` for the cache in `dir`, unless the plan's `env` names one of its
/// own (its Harper then caches there, and the template keeps none). `None` when the path is not
/// UTF-8.
pub fn add_compile_env(env: &mut BTreeMap<String, String>, dir: &Path) -> Option<()> {
    let dir = dir.to_str()?.to_owned();
    env.entry("NODE_COMPILE_CACHE".into()).or_insert(dir);
    Some(())
}

/// Whether Node wrote a compile cache into `dir`: one of its per-version folders holding at
/// least one entry.
pub fn compiled(dir: &Path) -> bool {
    let Ok(tags) = std::fs::read_dir(dir) else { return false };
    tags.flatten().filter(|t| t.file_type().is_ok_and(|k| k.is_dir())).any(|tag| {
        std::fs::read_dir(tag.path()).is_ok_and(|mut entries| {
            entries.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|k| k.is_file())))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_off_turns_it_off() {
        for value in [None, Some("on"), Some(""), Some("preload"), Some("compile"), Some("both")] {
            assert_ne!(mode_by(value, true), Mode::Off, "{value:?}");
        }
        for off in ["off", "OFF", "0", "false", " no "] {
            assert_eq!(mode_by(Some(off), true), Mode::Off, "{off}");
        }
    }

    #[test]
    fn a_node_without_a_compile_cache_gets_the_preload_whatever_is_asked() {
        for value in [None, Some("on"), Some("preload"), Some("compile"), Some("both")] {
            assert_eq!(mode_by(value, false), Mode::Preload, "{value:?}");
        }
    }

    #[test]
    fn off_boots_the_template_of_the_default_without_its_cache() {
        assert_eq!(built_with_by(Some("off"), true), Mode::Both);
        assert_eq!(built_with_by(Some("off"), false), Mode::Preload);
        assert_eq!(built_with_by(Some("compile"), true), Mode::Compile);
    }

    #[test]
    fn each_cache_can_be_asked_for_by_name() {
        assert_eq!(mode_by(Some("preload"), true), Mode::Preload);
        assert_eq!(mode_by(Some(" Compile "), true), Mode::Compile);
        assert_eq!(mode_by(Some("both"), true), Mode::Both);
    }

    #[test]
    fn unasked_a_node_with_a_compile_cache_gets_both_caches() {
        assert_eq!(mode_by(None, true), Mode::Both);
        assert_eq!(mode_by(Some("on"), true), Mode::Both);
    }

    #[test]
    fn the_root_is_the_package_directory_of_an_entry_in_the_cache() {
        let cache = Path::new("/c/harper-shard");
        let entry = cache.join("packages/harperdb@4.7.29/node_modules/harperdb/bin/harperdb.js");
        assert_eq!(
            package_root(cache, &entry).as_deref(),
            Some("/c/harper-shard/packages/harperdb@4.7.29/")
        );
        assert_eq!(
            package_root(cache, Path::new("/src/harper/bin/harperdb.js")),
            None,
            "a checkout may change"
        );
        assert_eq!(package_root(cache, &cache.join("packages")), None);
    }

    #[test]
    fn node_options_keep_what_was_given_and_quote_the_preload() {
        let mut env =
            BTreeMap::from([("NODE_OPTIONS".to_owned(), "--max-old-space-size=512".to_owned())]);
        add_env(&mut env, Path::new("/t/a \"b\"/boot"), "/p/", false).unwrap();
        assert_eq!(
            env["NODE_OPTIONS"],
            r#"--max-old-space-size=512 --require="/t/a \"b\"/boot/preload.cjs""#
        );
        assert_eq!(env["HARPER_SHARD_BOOT_ROOT"], "/p/");
        assert!(!env.contains_key("HARPER_SHARD_BOOT_PRODUCE"));
    }

    #[test]
    fn a_compile_cache_the_plan_names_is_kept() {
        let mut env = BTreeMap::new();
        add_compile_env(&mut env, Path::new("/w/i/compile")).unwrap();
        assert_eq!(env["NODE_COMPILE_CACHE"], "/w/i/compile");
        let mut env = BTreeMap::from([("NODE_COMPILE_CACHE".to_owned(), "/mine".to_owned())]);
        add_compile_env(&mut env, Path::new("/w/i/compile")).unwrap();
        assert_eq!(env["NODE_COMPILE_CACHE"], "/mine");
    }

    #[test]
    fn only_a_folder_with_an_entry_of_node_counts_as_a_compile_cache() {
        let dir =
            std::env::temp_dir().join(format!("hs-compile-test-{}", uuid::Uuid::new_v4().simple()));
        assert!(!compiled(&dir), "a missing folder");
        std::fs::create_dir_all(dir.join("v24.22.3-x64-1a2b3c4d-0")).unwrap();
        assert!(!compiled(&dir), "Node made its folder and wrote nothing");
        std::fs::write(dir.join("stray"), "").unwrap();
        assert!(!compiled(&dir), "a file beside the per-version folders");
        std::fs::write(dir.join("v24.22.3-x64-1a2b3c4d-0/0badf00d"), "").unwrap();
        assert!(compiled(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
