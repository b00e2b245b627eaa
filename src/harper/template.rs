//! Template boot: an instance's first start installs Harper into its empty ROOTPATH (6–15 s
//! here); a start on an existing one takes 2.5–6.4 s (docs/harper.md). So Harper is installed
//! once into a template — started until ready, stopped by SIGTERM, never copied while it runs —
//! kept in the cache, and every instance boots from a copy of it that tests cannot tell from a
//! fresh install on its address:
//!
//! - every absolute path in `harperdb-config.yaml` and in HOME's boot properties is rewritten
//!   from the template's directories to the instance's own;
//! - its keys are a set of its own ([`KeySet`]): a token from one instance is refused by
//!   another, and no two live instances share a TLS key; the template keeps none of the
//!   certificates its build signed ([`forget_certificates`]), so each copy signs its own;
//! - the admin password is the run's: a copy ignores `--HDB_ADMIN_PASSWORD`, so it is set with
//!   `alter_user` once the instance is ready ([`set_password`]);
//! - ports and hostname come from the arguments of every start, as for any instance.
//!
//! A template is keyed by everything that changes what the install writes (the entry script and,
//! for a `bin:` Harper, its build; the runtime, the admin username, `args`, `config`, `env`); it
//! is built under a lock, into a
//! temporary name renamed on success, so two runs never build it twice and a killed build leaves
//! nothing half-written behind.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use super::boot_cache;
use super::layout::{Dirs, copy_tree, link_tree};
use super::lock::Hold;
use crate::plan::{HarperSource, HarperSpec, Runtime};

/// What a template records about itself, beside its two directories `r/` (ROOTPATH) and `h/`
/// (HOME).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The directories it was built in: the text every copy replaces.
    pub root: String,
    pub home: String,
    pub username: String,
    /// The admin password it was installed with, which every copy starts with.
    pub password: String,
    /// What it was built from, for `cache status`.
    pub entry: String,
    /// The package directory its boot cache (`boot/`) trusts, when the build left a complete
    /// one ([`super::boot_cache`]).
    #[serde(default)]
    pub boot_root: Option<String>,
    /// Whether it keeps Node's own compile cache (`compile/`), which each copy gets a copy of.
    #[serde(default)]
    pub compile_cache: bool,
}

/// A complete template in the cache.
#[derive(Debug, Clone)]
pub struct Template {
    pub dir: PathBuf,
    pub meta: Meta,
}

const META: &str = "template.json";

/// `<cache>/templates`.
pub fn templates_dir(cache: &Path) -> PathBuf {
    cache.join("templates")
}

/// The key of the template an instance of `spec` boots from: a stable hash (FNV-1a, 64 bits)
/// of everything that changes what the install writes, the build of a `bin:` Harper included,
/// and the version of the runtime it runs on, for which the compile cache it keeps is valid.
pub fn key(spec: &HarperSpec, entry: &Path) -> String {
    let found = super::runtime::of(spec.runtime);
    let version = found.and_then(|found| found.version.as_deref());
    let boot_cache = match spec.runtime {
        Runtime::Node => boot_cache::built_with(found.is_some_and(|f| f.compile_cache())),
        _ => boot_cache::Mode::Off,
    };
    key_on(spec, entry, version, boot_cache)
}

fn key_on(
    spec: &HarperSpec,
    entry: &Path,
    runtime_version: Option<&str>,
    boot_cache: boot_cache::Mode,
) -> String {
    let what = serde_json::json!({
        "entry": entry.display().to_string(),
        "build": matches!(spec.source, HarperSource::Bin(_)).then(|| build_identity(entry)),
        "runtime": spec.runtime,
        "username": spec.admin.username,
        "args": spec.args,
        "config": spec.config,
        "env": spec.env,
        // Templates before the boot cache are rebuilt with one; those before 3 keep the
        // certificates their build made, signed with a key every copy would share.
        "layout": 3,
        "runtime_version": runtime_version,
        // Which cache its build keeps (HARPER_SHARD_BOOT_CACHE): each its own template.
        "boot_cache": boot_cache,
    });
    format!("{:016x}", stable_hash(what.to_string().as_bytes()))
}

/// FNV-1a, 64 bits: a hash that stays the same across builds and machines, for names in the
/// cache.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What tells one build of a `bin:` Harper from the next: the version in the nearest
/// package.json above the entry script, and for the entry and that package.json their SHA-256,
/// size, inode and mtime. Rebuilding Harper in place changes at least one of them, so the new
/// build gets a template of its own instead of booting on a ROOTPATH the old one installed. A
/// package in the cache never changes once installed: its path says which it is.
fn build_identity(entry: &Path) -> serde_json::Value {
    let manifest =
        entry.ancestors().skip(1).map(|dir| dir.join("package.json")).find(|p| p.is_file());
    let version = manifest
        .as_deref()
        .and_then(|m| crate::plan::file::read_bounded(m, MANIFEST_BYTES).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    serde_json::json!({
        "version": version,
        "entry": file_identity(entry),
        "manifest": manifest.map(|m| (m.display().to_string(), file_identity(&m))),
    })
}

/// A package.json larger than this is not read for its version (its digest still counts).
const MANIFEST_BYTES: u64 = 1 << 20;
/// Bytes of a file that its digest covers; its size and mtime speak for the rest.
const DIGESTED_BYTES: u64 = 64 << 20;

/// A file's SHA-256 (of its first [`DIGESTED_BYTES`]), size, inode and mtime; `None` when it is
/// not a regular file that can be read (opened without blocking: a FIFO put in its place must not
/// hang the run).
fn file_identity(path: &Path) -> Option<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut digest = sha2::Sha256::new();
    std::io::copy(&mut file.take(DIGESTED_BYTES), &mut digest).ok()?;
    let hex: String = digest.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{hex} {} bytes, inode {}, mtime {}.{:09}",
        meta.len(),
        meta.ino(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

/// What a copy cannot boot without: the files [`instantiate`] rewrites and Harper's database.
/// (Its keys come from the stock: the template keeps none of its own that a copy would use.)
const REQUIRED: [&str; 3] =
    ["r/harperdb-config.yaml", "r/database/system.mdb", "h/.harperdb/hdb_boot_properties.file"];

/// The complete template of `key`, if the cache has one. One with a required part gone (removed
/// by hand, a disk cleaner), or the compile cache its record names, counts as none, so it is
/// built again and replaced.
pub fn cached(cache: &Path, key: &str) -> Option<Template> {
    let dir = templates_dir(cache).join(key);
    let text = std::fs::read_to_string(dir.join(META)).ok()?;
    let meta: Meta = serde_json::from_str(&text).ok()?;
    let compiled = !meta.compile_cache || boot_cache::compile_dir_of(&dir).is_dir();
    (compiled && REQUIRED.iter().all(|part| dir.join(part).exists()))
        .then_some(Template { dir, meta })
}

/// The exclusive lock on building the template `key`.
pub async fn lock(cache: &Path, key: &str) -> anyhow::Result<Flock<File>> {
    let dir = templates_dir(cache);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    super::lock::wait(&dir.join(format!("{key}.lock"))).await
}

/// The template `key` held for an instance's whole life, which boots every time with its boot
/// cache: a `cache clear` leaves it alone, a remake waits for the instance to end. `None` when the
/// cache no longer has it (removed before the hold was taken).
pub async fn hold(cache: &Path, key: &str) -> anyhow::Result<Option<(Template, Hold)>> {
    let held = super::lock::hold(&templates_dir(cache).join(format!("{key}.lock"))).await?;
    Ok(cached(cache, key).map(|found| (found, held)))
}

/// Keeps the stopped install in `built` as the template `key`, with the boot cache its build
/// wrote in `boot`, or Node's compile cache in `compile`, when that is complete. The caller holds
/// the lock.
pub fn store(
    cache: &Path,
    key: &str,
    built: &Dirs,
    boot: Option<(&Path, String)>,
    compile: Option<&Path>,
    meta: &Meta,
) -> anyhow::Result<Template> {
    // What a clean stop leaves behind must not reach a copy: the pid file and the socket.
    for stale in ["hdb.pid", "operations-server"] {
        let _ = std::fs::remove_file(built.root.join(stale));
    }
    let dir = templates_dir(cache).join(key);
    let staging =
        templates_dir(cache).join(format!("{key}.partial-{}", uuid::Uuid::new_v4().simple()));
    let mut meta = meta.clone();
    let staged = (|| -> anyhow::Result<()> {
        copy_tree(&built.root, &staging.join("r")).context("cannot copy the stopped install")?;
        copy_tree(&built.home, &staging.join("h"))
            .context("cannot copy the stopped install's HOME")?;
        if let Some((boot, root)) = boot.filter(|(boot, _)| boot_cache::complete(boot)) {
            copy_tree(boot, &boot_cache::dir_of(&staging)).context("cannot copy the boot cache")?;
            meta.boot_root = Some(root);
        }
        if let Some(compile) = compile.filter(|dir| boot_cache::compiled(dir)) {
            copy_tree(compile, &boot_cache::compile_dir_of(&staging))
                .context("cannot copy Node's compile cache")?;
            meta.compile_cache = true;
        }
        std::fs::write(staging.join(META), serde_json::to_vec_pretty(&meta)?)
            .context("cannot write the template's record")?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        std::fs::rename(&staging, &dir)
            .with_context(|| format!("cannot move the template into {}", dir.display()))
    })();
    if let Err(e) = staged {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(Template { dir, meta })
}

/// Fills an instance's fresh directories from the template: the copy, every path rewritten to
/// the instance's own, its own JWT keys, and its own folder of Node's compile cache.
pub fn instantiate(template: &Template, dirs: &Dirs, keys: &KeySet) -> anyhow::Result<()> {
    copy_tree(&template.dir.join("r"), &dirs.root)
        .context("cannot copy the template's ROOTPATH")?;
    copy_tree(&template.dir.join("h"), &dirs.home).context("cannot copy the template's HOME")?;
    if template.meta.compile_cache && boot_cache::enabled() {
        // Linked, not copied (11 MiB, 0.3 s): Node replaces an entry by renaming a new file over
        // it, never writing in place, and checks each entry's checksum when it reads one.
        link_tree(
            &boot_cache::compile_dir_of(&template.dir),
            &boot_cache::compile_dir_of(&dirs.base),
        )
        .context("cannot copy the template's compile cache")?;
    }
    let root = dirs.root.display().to_string();
    let home = dirs.home.display().to_string();
    for file in [
        dirs.root.join("harperdb-config.yaml"),
        dirs.home.join(".harperdb").join("hdb_boot_properties.file"),
    ] {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let text = text.replace(&template.meta.root, &root).replace(&template.meta.home, &home);
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    for name in KEY_FILES {
        let target = dirs.root.join("keys").join(name);
        let _ = std::fs::remove_file(&target);
        std::fs::copy(keys.dir.join(name), &target)
            .with_context(|| format!("cannot put a key in {}", target.display()))?;
    }
    Ok(())
}

/// Sets the run's admin password on a copy once it is ready (it started with the template's).
pub async fn set_password(
    addr: Ipv4Addr,
    port: u16,
    meta: &Meta,
    password: &str,
) -> anyhow::Result<()> {
    if password == meta.password {
        return Ok(());
    }
    let body = serde_json::json!({ "operation": "alter_user", "username": meta.username, "password": password });
    let (status, _) = operation((addr, port), (&meta.username, &meta.password), &body)
        .await
        .context("cannot ask Harper to set the run's admin password")?;
    if status != 200 {
        bail!("Harper refused to set the run's admin password on a template copy: HTTP {status}");
    }
    Ok(())
}

/// Removes from the template's build the certificates Harper made at its install (its
/// certificate authority and replication certificate, self-signed with `keys/privateKey.pem`,
/// which Harper then deletes): every copy gets a TLS key of its own from the stock, and signs
/// its own at its first start, as a fresh install does; a certificate the config names stays.
pub async fn forget_certificates(
    addr: Ipv4Addr,
    port: u16,
    (username, password): (&str, &str),
) -> anyhow::Result<()> {
    let admin = (username, password);
    let (status, listed) =
        operation((addr, port), admin, &serde_json::json!({ "operation": "list_certificates" }))
            .await?;
    let listed: Vec<serde_json::Value> = (status == 200)
        .then(|| serde_json::from_str(&listed).ok())
        .flatten()
        .with_context(|| {
            format!(
                "Harper's `list_certificates` answered HTTP {status}: {}",
                crate::text::one_line(&listed)
            )
        })?;
    let own = listed
        .iter()
        .filter(|c| c["is_self_signed"] == true && c["private_key_name"] == "privateKey.pem");
    for name in own.filter_map(|c| c["name"].as_str()) {
        let (status, answer) = operation(
            (addr, port),
            admin,
            &serde_json::json!({ "operation": "remove_certificate", "name": name }),
        )
        .await?;
        if status != 200 {
            bail!(
                "Harper refused to remove its certificate `{name}` from the template: HTTP {status}: {}",
                crate::text::one_line(&answer)
            );
        }
    }
    Ok(())
}

/// One request to Harper's operations API with basic authentication: the answer's status and
/// body (at most 1 MiB), within 10 s.
async fn operation(
    to: (Ipv4Addr, u16),
    (username, password): (&str, &str),
    body: &serde_json::Value,
) -> anyhow::Result<(u16, String)> {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (addr, port) = to;
    let body = body.to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}:{port}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((addr, port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(1 << 20).read_to_end(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let what = body.split('"').nth(3).unwrap_or("an operation").to_owned();
    let answer = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("Harper did not answer `{what}` within 10s"))?
        .with_context(|| format!("cannot send `{what}` to Harper's operations API"))?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(answer.len(), |at| at + 4);
    let (head, rest) = (String::from_utf8_lossy(&answer[..split]), &answer[split..]);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).with_context(|| {
        format!("Harper's answer to `{what}` is not HTTP: {}", crate::text::one_line(&head))
    })?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked { unchunk(rest) } else { rest.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The body of a chunked HTTP/1.1 answer.
fn unchunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        let after = &rest[eol + 2..];
        if size == 0 || after.len() < size {
            break;
        }
        body.extend_from_slice(&after[..size]);
        rest = after[size..].strip_prefix(b"\r\n").unwrap_or(&after[size..]);
    }
    body
}

/// The key files Harper makes at its first start, in `<ROOTPATH>/keys`: the JWT keys and the
/// private key of its TLS certificate authority (`tls.privateKey` unless the config names another).
const KEY_FILES: [&str; 4] = [".jwtPass", ".jwtPrivate.key", ".jwtPublic.key", "privateKey.pem"];

/// One instance's keys (JWT and TLS), from a stock in the cache: sets are made once (RSA-4096,
/// as Harper makes them: about 1.2 s a set here, both keys at once) and reused by later runs,
/// and a set is held (locked) by one instance at a time, so no two live instances share a key.
pub struct KeySet {
    pub dir: PathBuf,
    _held: Flock<File>,
}

/// Harper's own recipes, both at once (two threads of Node's pool), written into the directory
/// given as the first argument: the JWT keys (a v4 UUID passphrase; the private key PKCS#8,
/// AES-256-CBC encrypted; the public key SPKI) and the TLS key (RSA-4096, PKCS#1, unencrypted).
const KEYGEN: &str = "const c = require('node:crypto'), fs = require('node:fs'), p = require('node:path');\
const dir = process.argv[1], pass = c.randomUUID(), pem = { format: 'pem' };\
c.generateKeyPair('rsa', { modulusLength: 4096, publicKeyEncoding: { type: 'spki', ...pem },\
privateKeyEncoding: { type: 'pkcs8', ...pem, cipher: 'aes-256-cbc', passphrase: pass } }, (e, pub, key) => { if (e) throw e;\
fs.writeFileSync(p.join(dir, '.jwtPass'), pass); fs.writeFileSync(p.join(dir, '.jwtPrivate.key'), key);\
fs.writeFileSync(p.join(dir, '.jwtPublic.key'), pub); });\
c.generateKeyPair('rsa', { modulusLength: 4096, publicKeyEncoding: { type: 'spki', ...pem }, privateKeyEncoding: { type: 'pkcs1', ...pem } },\
(e, pub, key) => { if (e) throw e; fs.writeFileSync(p.join(dir, 'privateKey.pem'), key); });";

/// Takes a free key set from the stock, making one when every set is held.
pub async fn take_keys(cache: &Path, runtime: Runtime) -> anyhow::Result<KeySet> {
    let stock = cache.join("keys");
    std::fs::create_dir_all(&stock)
        .with_context(|| format!("cannot create {}", stock.display()))?;
    for n in 0u32.. {
        let Some(held) = super::lock::try_lock(&stock.join(format!("{n}.lock")))? else { continue };
        let dir = stock.join(n.to_string());
        if !KEY_FILES.iter().all(|f| dir.join(f).is_file()) {
            make_keys(&stock, &dir, runtime).await?;
        }
        return Ok(KeySet { dir, _held: held });
    }
    unreachable!("the stock has room for every instance")
}

async fn make_keys(stock: &Path, dir: &Path, runtime: Runtime) -> anyhow::Result<()> {
    let staging = stock.join(format!(
        "{}.partial-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let program = if runtime == Runtime::Bun { "bun" } else { "node" };
    let out = tokio::process::Command::new(program)
        .arg("-e")
        .arg(KEYGEN)
        .arg(&staging)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run `{program}` to make keys"));
    let made = out.and_then(|out| {
        if !out.status.success() {
            bail!(
                "`{program}` could not make keys: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&staging, dir)
            .with_context(|| format!("cannot move the keys into {}", dir.display()))
    });
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_what_the_install_writes_and_nothing_else() {
        let plan = "version: 1\nshards:\n  - name: a\n    run: \"true\"\n";
        let raw = crate::plan::load::parse(Path::new("p.yml"), plan).unwrap();
        let env = |_: &str| None;
        let timings = crate::plan::Timings::default();
        let cx = crate::plan::resolve::Inputs {
            env: &env,
            cpus: 2,
            timings: &timings,
            retries: None,
            flaky_fails: false,
            boot_ahead: None,
            today: crate::plan::schema::Day::today(),
        };
        let resolved = crate::plan::resolve::resolve(Path::new("p.yml"), plan, raw, &cx).unwrap();
        let spec = resolved.shards[0].harper.clone();
        let entry = Path::new("/cache/harperdb/bin/harperdb.js");
        let base = key(&spec, entry);
        assert_eq!(base, key(&spec.clone(), entry), "the key is stable");
        let mut other_ports = spec.clone();
        other_ports.ports.http = 19926;
        assert_eq!(base, key(&other_ports, entry), "ports come from every start's arguments");
        let mut more_args = spec.clone();
        more_args.args.push("--LOGGING_LEVEL=debug".into());
        assert_ne!(base, key(&more_args, entry));
        let mut user = spec;
        user.admin.username = "root".into();
        assert_ne!(base, key(&user, entry));
        assert_ne!(base, key(&user, Path::new("/cache/other/bin/harperdb.js")));
    }

    #[test]
    fn a_bin_harper_rebuilt_in_place_gets_another_key() {
        let dir =
            std::env::temp_dir().join(format!("hs-template-bin-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let entry = dir.join("bin/harperdb.js");
        std::fs::write(&entry, "console.log('one')").unwrap();
        std::fs::write(dir.join("package.json"), r#"{"version":"4.7.29"}"#).unwrap();
        let mut spec = crate::plan::test_harper();
        spec.source = HarperSource::Bin(entry.clone());
        let first = key(&spec, &entry);
        assert_eq!(first, key(&spec, &entry), "the key is stable while the build is");
        std::fs::write(&entry, "console.log('two')").unwrap();
        let rebuilt = key(&spec, &entry);
        assert_ne!(first, rebuilt, "a new entry script kept the old template");
        std::fs::write(dir.join("package.json"), r#"{"version":"4.7.30"}"#).unwrap();
        assert_ne!(rebuilt, key(&spec, &entry), "a new version kept the old template");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_template_built_on_one_node_version_does_not_serve_another() {
        let spec = crate::plan::test_harper();
        let entry = Path::new("/cache/harperdb/bin/harperdb.js");
        let on = |version: &str| key_on(&spec, entry, Some(version), boot_cache::Mode::Compile);
        assert_eq!(on("v24.22.3"), on("v24.22.3"));
        assert_ne!(on("v20.20.2"), on("v24.22.3"), "node 20's template would feed node 24");
        assert_ne!(on("v24.22.3"), on("v24.22.4"), "one ABI, two compile caches");
        assert_ne!(on("v24.22.3"), key_on(&spec, entry, None, boot_cache::Mode::Compile));
    }

    #[test]
    fn each_boot_cache_has_templates_of_its_own() {
        use boot_cache::Mode;
        let spec = crate::plan::test_harper();
        let entry = Path::new("/cache/harperdb/bin/harperdb.js");
        let keys: std::collections::BTreeSet<String> =
            [Mode::Off, Mode::Preload, Mode::Compile, Mode::Both]
                .into_iter()
                .map(|m| key_on(&spec, entry, Some("v24.22.3"), m))
                .collect();
        assert_eq!(keys.len(), 4, "a template built with one cache would serve another");
    }

    #[test]
    fn a_template_missing_a_required_part_is_not_used() {
        let cache = std::env::temp_dir()
            .join(format!("hs-template-test-{}", uuid::Uuid::new_v4().simple()));
        let dir = templates_dir(&cache).join("k");
        for part in REQUIRED {
            let path = dir.join(part);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
        }
        let meta = Meta {
            root: "/r".into(),
            home: "/h".into(),
            username: "admin".into(),
            password: "p".into(),
            entry: "e".into(),
            boot_root: None,
            compile_cache: false,
        };
        std::fs::write(dir.join(META), serde_json::to_vec(&meta).unwrap()).unwrap();
        assert!(cached(&cache, "k").is_some());
        for part in REQUIRED {
            let path = dir.join(part);
            std::fs::remove_file(&path).unwrap();
            assert!(cached(&cache, "k").is_none(), "used a template without {part}");
            std::fs::write(&path, "").unwrap();
        }
        let compiled = Meta { compile_cache: true, ..meta };
        std::fs::write(dir.join(META), serde_json::to_vec(&compiled).unwrap()).unwrap();
        assert!(cached(&cache, "k").is_none(), "used a template whose compile cache is gone");
        std::fs::create_dir(boot_cache::compile_dir_of(&dir)).unwrap();
        assert!(cached(&cache, "k").is_some());
        std::fs::write(dir.join(META), "{ half").unwrap();
        assert!(cached(&cache, "k").is_none(), "used a template with a torn record");
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
