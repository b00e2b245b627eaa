//! One Harper instance: its directories, its password, and the command that starts it — the
//! one HARPER.md measured: foreground, stdin from /dev/null, every install answer given, every
//! port bound to the shard's address (so nothing lands on `*:9933`), its own HOME.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::plan::{HarperSpec, Runtime};

/// Past ~107 bytes a unix socket path is truncated, and `<ROOTPATH>/operations-server` is one:
/// Harper then serves but never prints its ready line. Keep well below.
const MAX_ROOTPATH: usize = 80;

/// Tool-set arguments the plan's `args` may replace (a key may appear only once).
const DEFAULT_ARGS: &[(&str, &str)] = &[
    ("AUTHENTICATION_AUTHORIZELOCAL", "true"),
    ("THREADS_COUNT", "1"),
    ("LOGGING_LEVEL", "info"),
    ("LOGGING_STDSTREAMS", "false"),
];

/// The directories of one instance. Created by [`Dirs::create`], removed at teardown.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Holds both of the others; removing it removes the instance's every trace.
    pub base: PathBuf,
    pub root: PathBuf,
    pub home: PathBuf,
}

/// `$HARPER_SHARD_WORK_DIR`, or a short directory under the system's temporary directory.
pub fn work_dir() -> PathBuf {
    match std::env::var_os("HARPER_SHARD_WORK_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("hs-{}", nix::unistd::getuid())),
    }
}

impl Dirs {
    /// Fresh, empty directories for an instance on `addr`.
    pub fn create(work: &Path, addr: Ipv4Addr) -> anyhow::Result<Dirs> {
        std::fs::create_dir_all(work).with_context(|| format!("cannot create the work directory {}", work.display()))?;
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let base = work.join(format!("{addr}-{tag}"));
        let dirs = Dirs { root: base.join("r"), home: base.join("h"), base };
        let socket = dirs.root.join("operations-server");
        if socket.as_os_str().len() > MAX_ROOTPATH + "/operations-server".len() {
            bail!(
                "the instance directory {} is too long for Harper's unix socket (it would never print its ready line); \
                 set HARPER_SHARD_WORK_DIR to a short path such as /tmp/hs",
                dirs.root.display()
            );
        }
        for dir in [&dirs.root, &dirs.home] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(dirs)
    }

    /// Copies each fixture component into `<ROOTPATH>/components/<name>`.
    pub fn install_fixtures(&self, fixtures: &[PathBuf]) -> anyhow::Result<()> {
        for fixture in fixtures {
            let name = fixture.file_name().context("a fixture path has no final component")?;
            let target = self.root.join("components").join(name);
            copy_tree(fixture, &target)
                .with_context(|| format!("cannot copy fixture {} to {}", fixture.display(), target.display()))?;
        }
        Ok(())
    }

    /// Removes every trace of the instance.
    pub fn remove(&self) -> anyhow::Result<()> {
        match std::fs::remove_dir_all(&self.base) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", self.base.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Copies directories, regular files and symbolic links. Anything else (a FIFO, a socket, a
/// device) is refused: opening a FIFO to copy it would block until a writer came, forever.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else {
            return Err(std::io::Error::other(format!(
                "{} is not a file, a directory or a link (a FIFO, socket or device?); remove it from the fixture",
                entry.path().display()
            )));
        }
    }
    Ok(())
}

/// A random admin password for one run: 32 hex digits from the OS's generator.
pub fn random_password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The program, arguments and environment that start one instance.
pub struct Launch {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: BTreeMap<String, String>,
}

pub fn launch(spec: &HarperSpec, entry: &Path, dirs: &Dirs, addr: Ipv4Addr, password: &str) -> Launch {
    let (program, mut args): (OsString, Vec<OsString>) = match spec.runtime {
        Runtime::Node => ("node".into(), vec![entry.into()]),
        Runtime::Bun => ("bun".into(), vec![entry.into()]),
        Runtime::Exec => (entry.into(), Vec::new()),
    };
    let p = &spec.ports;
    let owned = [
        ("ROOTPATH", dirs.root.display().to_string()),
        ("TC_AGREEMENT", "yes".to_owned()),
        ("HDB_ADMIN_USERNAME", spec.admin.username.clone()),
        ("HDB_ADMIN_PASSWORD", password.to_owned()),
        ("HTTP_PORT", format!("{addr}:{}", p.http)),
        ("OPERATIONSAPI_NETWORK_PORT", format!("{addr}:{}", p.operations)),
        ("MQTT_NETWORK_PORT", format!("{addr}:{}", p.mqtt)),
        ("MQTT_NETWORK_SECUREPORT", format!("{addr}:{}", p.mqtts)),
        ("REPLICATION_SECUREPORT", format!("{addr}:{}", p.replication)),
    ];
    for (key, value) in owned {
        args.push(format!("--{key}={value}").into());
    }
    let given = |key: &str| {
        spec.args.iter().any(|a| {
            a.strip_prefix("--").and_then(|a| a.split_once('=')).is_some_and(|(k, _)| k.eq_ignore_ascii_case(key))
        })
    };
    for (key, value) in DEFAULT_ARGS {
        if !given(key) {
            args.push(format!("--{key}={value}").into());
        }
    }
    args.extend(spec.args.iter().map(OsString::from));

    let mut env = spec.env.clone();
    env.insert("HOME".into(), dirs.home.display().to_string());
    if !spec.config.is_empty() {
        env.insert("HARPER_SET_CONFIG".into(), serde_json::Value::Object(spec.config.clone()).to_string());
    }
    Launch { program, args, env }
}
