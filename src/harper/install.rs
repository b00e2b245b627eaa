//! Installing `harper.package` with npm, once per node ABI, into the user's cache. npm runs under
//! a keeper like every other child, and a cancelled run stops it.
//!
//! Two runs may want the same package at the same moment: the install happens under an
//! exclusive lock on `<cache>/<package>.lock`, into a temporary directory that is renamed into
//! place only when npm succeeded, so a killed install never leaves a half-installed Harper for
//! the next run to trip over.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::private_dir::Sharing;

use super::lock::Hold;
use super::runtime;
use crate::supervise::tail::{Lines, Tail};
use crate::supervise::{Child, Spec, describe};

/// Written last into a finished install, holding its spec. action/harper.sh reads it too: a CI job
/// saves its cache between jobs only when every package of its plan has one.
const COMPLETE: &str = ".harper-shard-complete";

/// `$XDG_CACHE_HOME/harper-shard` or `~/.cache/harper-shard`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HARPER_SHARD_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(xdg).join("harper-shard"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty()).context(
        "neither XDG_CACHE_HOME nor HOME is set, so there is no cache to install Harper into; set one, or set harper.bin",
    )?;
    Ok(PathBuf::from(home).join(".cache").join("harper-shard"))
}

/// The cache directory for a run, which executes what it holds (Harper's package, templates
/// and their boot-cache preload): created private if missing, and refused, as the pool and
/// work directories are, when it or a folder of its entries is a link, writable by everyone,
/// or belongs to a user and a group that are not this process's (a cache shared with a group
/// of its own, as the container image's is with group 0, is allowed).
pub fn private_cache() -> anyhow::Result<PathBuf> {
    let dir = cache_dir()?;
    crate::private_dir::ensure_shared(&dir, "the cache directory", CACHE_VAR, Sharing::Group)?;
    for part in ["packages", "templates", "keys"] {
        crate::private_dir::ensure_shared(
            &dir.join(part),
            "the cache directory's folder",
            CACHE_VAR,
            Sharing::Group,
        )?;
    }
    Ok(dir)
}

/// Checks an entry of the cache that a run executes as [`private_cache`] checks the cache.
pub fn check_entry(dir: &Path, what: &str) -> anyhow::Result<()> {
    crate::private_dir::check_with(dir, what, CACHE_VAR, Sharing::Group)
}

const CACHE_VAR: &str = "HARPER_SHARD_CACHE_DIR";

/// Where an npm spec lives in the cache, and the entry script inside it.
pub struct Installed {
    pub dir: PathBuf,
    pub entry: PathBuf,
}

/// The package name of an npm spec: `harperdb@4.7.29` → `harperdb`, `@scope/pkg@1` → `@scope/pkg`.
pub fn package_name(spec: &str) -> &str {
    let search_from = usize::from(spec.starts_with('@'));
    match spec[search_from..].find('@') {
        Some(i) => &spec[..search_from + i],
        None => spec,
    }
}

/// The folder name of a spec: a part a person recognises (safe characters only, at most
/// [`READABLE`] of them, so `^4.6.0` and `~4.6.0` both read `_4.6.0`) and the first 16 hex digits
/// of the exact spec's SHA-256, which tells such specs apart. The name ends in a hex digit, so no
/// spec's folder is another's `.partial` or `.lock`.
pub fn folder(spec: &str) -> String {
    let readable: String = spec
        .chars()
        .take(READABLE)
        .map(|c| if c.is_ascii_alphanumeric() || "-_.@".contains(c) { c } else { '_' })
        .collect();
    let digest = Sha256::digest(spec.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{hex}")
}

/// Characters of a spec that name its folder; the digest covers the rest.
const READABLE: usize = 64;

/// The name of `spec`'s install in `<cache>/packages`: its [`folder`] and the module ABI of the
/// node npm runs on ([`runtime::node`]), `harperdb@4.7.29-<16 hex>-node-abi137`. npm compiles some
/// of Harper's native modules while installing (segfault-handler, through node-gyp) for that ABI
/// only, and node refuses them on another; so an install made on node 20 is not the one node 24
/// runs.
pub fn install_name(spec: &str) -> anyhow::Result<String> {
    let node = runtime::node();
    let Some(abi) = &node.modules else {
        bail!(
            "cannot tell which node npm would install {spec} with: {}; install Node.js 20 or later, or set harper.bin",
            node.describe()
        );
    };
    Ok(format!("{}-node-abi{abi}", folder(spec)))
}

/// The installed copy of `spec`, if the cache already has a complete one for this node: its
/// marker names this very spec (a folder of another spec's, however it came there, is not this
/// one's install).
pub fn cached(cache: &Path, spec: &str) -> Option<Installed> {
    let dir = cache.join("packages").join(install_name(spec).ok()?);
    if !holds(&dir, spec) {
        return None;
    }
    let entry = entry_point(&dir, package_name(spec)).ok()?;
    Some(Installed { dir, entry })
}

/// Whether `dir` holds the completion marker of `spec`, a regular file of exactly that text.
fn holds(dir: &Path, spec: &str) -> bool {
    crate::plan::file::read_bounded(&dir.join(COMPLETE), spec.len() as u64)
        .is_ok_and(|text| text == spec.as_bytes())
}

/// The spec a complete install in `dir` was made for, as its marker says.
pub fn marked_spec(dir: &Path) -> Option<String> {
    let text = crate::plan::file::read_bounded(
        &dir.join(COMPLETE),
        crate::plan::limits::ARG_STRLEN as u64,
    )
    .ok()?;
    String::from_utf8(text).ok()
}

/// Installs `spec` unless the cache has it, and holds it until the [`Hold`] is dropped: a `cache
/// clear` leaves it alone, and a run that finds it broken waits to reinstall it until no run
/// uses it. `progress` gets npm's output line by line. Ends early, npm stopped and nothing kept,
/// when `cancelled` resolves.
pub async fn ensure(
    cache: &Path,
    spec: &str,
    progress: &(dyn Fn(&str) + Sync),
    cancelled: impl Future<Output = ()>,
) -> anyhow::Result<(Installed, Hold)> {
    let packages = cache.join("packages");
    std::fs::create_dir_all(&packages)
        .with_context(|| format!("cannot create the cache {}", packages.display()))?;
    let name = install_name(spec)?;
    let lock_path = packages.join(format!("{name}.lock"));
    tokio::pin!(cancelled);
    for _ in 0..ATTEMPTS {
        if cached(cache, spec).is_none() {
            install(cache, &name, spec, progress, cancelled.as_mut()).await?;
        }
        let hold = tokio::select! {
            hold = super::lock::hold(&lock_path) => hold?,
            () = &mut cancelled => bail!("cancelled while waiting for another run's install of {spec}"),
        };
        // A `cache clear` may have removed it between the install and the hold.
        if let Some(done) = cached(cache, spec) {
            check_entry(&done.dir, &format!("the cached install of {spec}"))?;
            return Ok((done, hold));
        }
    }
    bail!(
        "the install of {spec} in {} was removed {ATTEMPTS} times as this run took it; is a `harper-shard cache clear` running in a loop?",
        packages.display()
    )
}

/// Installs and holds a package at most this many times before giving up.
const ATTEMPTS: usize = 3;

/// Installs `spec` as `<cache>/packages/<name>` under the install's exclusive lock, unless
/// another run has done so while this one waited.
async fn install(
    cache: &Path,
    name: &str,
    spec: &str,
    progress: &(dyn Fn(&str) + Sync),
    cancelled: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let packages = cache.join("packages");
    let lock_path = packages.join(format!("{name}.lock"));
    tokio::pin!(cancelled);
    let _lock = tokio::select! {
        lock = super::lock::wait(&lock_path) => lock?,
        () = &mut cancelled => bail!("cancelled while waiting for another run's install of {spec}"),
    };
    if cached(cache, spec).is_some() {
        return Ok(());
    }
    let dir = packages.join(name);
    let staging = packages.join(format!("{name}.partial"));
    for stale in [&dir, &staging] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("cannot clear {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    if let Err(e) = npm_install(&staging, spec, progress, cancelled).await {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    entry_point(&staging, package_name(spec))?;
    std::fs::write(staging.join(COMPLETE), spec).context("cannot mark the install complete")?;
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move the install into {}", dir.display()))
}

/// Under a signal, npm gets this long after SIGTERM before SIGKILL, and the tool waits at most
/// [`STOP_WAIT`] for it all: both fit the run's cancellation budget.
const STOP_GRACE: Duration = Duration::from_secs(1);
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Lines of npm's output quoted when it fails.
const NPM_TAIL: usize = 30;

/// Runs npm like every other child: under a keeper, in its own process group (a Ctrl-C at the
/// terminal reaches the tool, which decides), ended with the tool whatever kills it. Its output
/// is kept in `<prefix>/npm.log`.
async fn npm_install(
    prefix: &Path,
    spec: &str,
    progress: &(dyn Fn(&str) + Sync),
    cancelled: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let npm = std::env::var_os("HARPER_SHARD_NPM").unwrap_or_else(|| "npm".into());
    let mut args: Vec<std::ffi::OsString> = [
        "install",
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--no-package-lock",
        "--loglevel=http",
        "--prefix",
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    args.extend([prefix.as_os_str().to_owned(), spec.into()]);
    let child = Child::spawn(Spec {
        program: npm.clone(),
        args,
        env: Default::default(),
        cwd: prefix.to_path_buf(),
        stdout_log: prefix.join("npm.log"),
        stderr_log: None,
        grace: STOP_GRACE,
        token: format!("install-{}", uuid::Uuid::new_v4().simple()),
    })
    .await;
    let mut child = child.with_context(|| {
        format!(
            "cannot run `{}` to install {spec}: install Node.js 20 or later (npm comes with it), or set harper.bin",
            npm.to_string_lossy()
        )
    })?;
    let mut tail = Tail::new(NPM_TAIL);
    let mut lines = Lines::default();
    let mut output_open = true;
    tokio::pin!(cancelled);
    let status = loop {
        tokio::select! {
            biased;
            chunk = child.output.recv(), if output_open => match chunk {
                Some(chunk) => {
                    tail.feed(&chunk.bytes);
                    lines.feed(&chunk.bytes, |line| progress(&line));
                }
                None => output_open = false,
            },
            status = child.process.exited() => break status,
            () = &mut cancelled => {
                let until = tokio::time::Instant::now() + STOP_WAIT;
                let _ = child.process.stop_within(STOP_GRACE, async move { until }).await;
                bail!("cancelled while npm installed {spec}; the partial install was removed");
            }
        }
    };
    child.process.stop().await.context("cannot end npm's process group")?;
    // Taken until the pipes close: a drain reads on only as what it sent is taken.
    while let Some(chunk) = child.output.recv().await {
        tail.feed(&chunk.bytes);
        lines.feed(&chunk.bytes, |line| progress(&line));
    }
    if let Some(line) = lines.finish() {
        progress(&line);
    }
    let status = status.with_context(|| format!("npm, installing {spec}"))?;
    if !status.success() {
        bail!(
            "`npm install {spec}` failed ({}); its last lines:\n{}\nCheck that the npm registry is reachable and the spec exists, or set harper.bin",
            describe(&status),
            tail.lines().join("\n")
        );
    }
    Ok(())
}

/// Harper's entry script: `bin/harperdb.js` (4.x), `dist/bin/harper.js` (5.x), or whatever
/// the package's `bin` names.
fn entry_point(prefix: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let pkg = prefix.join("node_modules").join(name);
    for known in ["bin/harperdb.js", "dist/bin/harper.js", "bin/harper.js"] {
        let path = pkg.join(known);
        if path.is_file() {
            return Ok(path);
        }
    }
    let manifest = std::fs::read_to_string(pkg.join("package.json"))
        .with_context(|| format!("{name} is not installed under {}", prefix.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&manifest).context("package.json is not JSON")?;
    let bin = match &manifest["bin"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(map) => map.values().find_map(|v| v.as_str().map(str::to_owned)),
        _ => None,
    };
    match bin {
        Some(bin) if pkg.join(&bin).is_file() => Ok(pkg.join(bin)),
        _ => bail!("{name} has no entry script that harper-shard knows; set harper.bin to it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_that_read_alike_get_folders_of_their_own() {
        assert_ne!(folder("harperdb@^4.6.0"), folder("harperdb@~4.6.0"));
        assert!(
            folder("harperdb@^4.6.0").starts_with("harperdb@_4.6.0-"),
            "{}",
            folder("harperdb@^4.6.0")
        );
        assert_eq!(folder("harperdb@4.7.29"), folder("harperdb@4.7.29"), "stable");
        let long = format!("harperdb@{}", "1".repeat(10_000));
        assert!(
            folder(&long).len() < 100,
            "a long spec still names a folder the file system takes"
        );
        assert_ne!(folder(&long), folder(&format!("{long}2")));
    }

    #[test]
    fn an_install_marked_for_another_spec_is_not_trusted() {
        let cache =
            std::env::temp_dir().join(format!("hs-install-test-{}", uuid::Uuid::new_v4().simple()));
        let dir = cache.join("packages").join(install_name("harperdb@^4.6.0").unwrap());
        std::fs::create_dir_all(dir.join("node_modules/harperdb/bin")).unwrap();
        std::fs::write(dir.join("node_modules/harperdb/bin/harperdb.js"), "").unwrap();
        std::fs::write(dir.join(COMPLETE), "harperdb@~4.6.0").unwrap();
        assert!(cached(&cache, "harperdb@^4.6.0").is_none(), "trusted a marker of another spec");
        std::fs::write(dir.join(COMPLETE), "harperdb@^4.6.0").unwrap();
        assert!(cached(&cache, "harperdb@^4.6.0").is_some());
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn package_name_strips_the_version_but_keeps_the_scope() {
        assert_eq!(package_name("harperdb@4.7.29"), "harperdb");
        assert_eq!(package_name("harperdb"), "harperdb");
        assert_eq!(package_name("@harperfast/harper@5.0.0"), "@harperfast/harper");
        assert_eq!(package_name("@harperfast/harper"), "@harperfast/harper");
    }
}
