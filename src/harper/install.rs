//! Installing `harper.package` with npm, once, into the user's cache.
//!
//! Two runs may want the same package at the same moment: the install happens under an
//! exclusive lock on `<cache>/<package>.lock`, into a temporary directory that is renamed into
//! place only when npm succeeded, so a killed install never leaves a half-installed Harper for
//! the next run to trip over.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncBufReadExt, BufReader};

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

/// A directory name for a spec: safe characters only, recognisable to a person.
fn slug(spec: &str) -> String {
    spec.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.@".contains(c) { c } else { '_' }).collect()
}

/// The installed copy of `spec`, if the cache already has a complete one.
pub fn cached(cache: &Path, spec: &str) -> Option<Installed> {
    let dir = cache.join("packages").join(slug(spec));
    if !dir.join(COMPLETE).is_file() {
        return None;
    }
    let entry = entry_point(&dir, package_name(spec)).ok()?;
    Some(Installed { dir, entry })
}

/// Installs `spec` unless the cache has it; `progress` gets npm's output line by line.
pub async fn ensure(cache: &Path, spec: &str, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<Installed> {
    if let Some(done) = cached(cache, spec) {
        return Ok(done);
    }
    let packages = cache.join("packages");
    std::fs::create_dir_all(&packages).with_context(|| format!("cannot create the cache {}", packages.display()))?;
    let lock_path = packages.join(format!("{}.lock", slug(spec)));
    let _lock = lock(lock_path.clone()).await?;
    // Another run may have finished the install while we waited for the lock.
    if let Some(done) = cached(cache, spec) {
        return Ok(done);
    }
    let dir = packages.join(slug(spec));
    let staging = packages.join(format!("{}.partial", slug(spec)));
    for stale in [&dir, &staging] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).with_context(|| format!("cannot clear {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    npm_install(&staging, spec, progress).await?;
    entry_point(&staging, package_name(spec))?;
    std::fs::write(staging.join(COMPLETE), spec).context("cannot mark the install complete")?;
    std::fs::rename(&staging, &dir).with_context(|| format!("cannot move the install into {}", dir.display()))?;
    let entry = entry_point(&dir, package_name(spec))?;
    Ok(Installed { dir, entry })
}

async fn lock(path: PathBuf) -> anyhow::Result<Flock<File>> {
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .with_context(|| format!("cannot open the install lock {}", path.display()))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("cannot lock {}", path.display()))
    })
    .await?
}

async fn npm_install(prefix: &Path, spec: &str, progress: &(dyn Fn(&str) + Sync)) -> anyhow::Result<()> {
    let npm = std::env::var_os("HARPER_SHARD_NPM").unwrap_or_else(|| "npm".into());
    let mut child = tokio::process::Command::new(&npm)
        .args(["install", "--no-audit", "--no-fund", "--no-save", "--no-package-lock", "--loglevel=http", "--prefix"])
        .arg(prefix)
        .arg(spec)
        .current_dir(prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot run `{}` to install {spec}: install Node.js 20 or later (npm comes with it), or set harper.bin",
                npm.to_string_lossy()
            )
        })?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        bail!("npm's output pipes were not set up");
    };
    let mut tail: Vec<String> = Vec::new();
    let mut out = BufReader::new(out).lines();
    let mut err = BufReader::new(err).lines();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let line = tokio::select! {
            l = out.next_line(), if out_open => l?.or_else(|| { out_open = false; None }),
            l = err.next_line(), if err_open => l?.or_else(|| { err_open = false; None }),
        };
        if let Some(line) = line {
            progress(&line);
            tail.push(line);
            if tail.len() > 30 {
                tail.remove(0);
            }
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!(
            "`npm install {spec}` failed ({status}); its last lines:\n{}\nCheck that the npm registry is reachable and the spec exists, or set harper.bin",
            tail.join("\n")
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
    let manifest: serde_json::Value = serde_json::from_str(&manifest).context("package.json is not JSON")?;
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
    fn package_name_strips_the_version_but_keeps_the_scope() {
        assert_eq!(package_name("harperdb@4.7.29"), "harperdb");
        assert_eq!(package_name("harperdb"), "harperdb");
        assert_eq!(package_name("@harperfast/harper@5.0.0"), "@harperfast/harper");
        assert_eq!(package_name("@harperfast/harper"), "@harperfast/harper");
    }
}
