//! One Harper instance: its directories, its password, and the command that starts it — the
//! one docs/harper.md describes: foreground, stdin from /dev/null, every install answer given, every
//! port bound to the shard's address (so nothing lands on `*:9933`), its own HOME.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::plan::{HarperSpec, Runtime};

/// Tool-set arguments the plan's `args` may replace (a key may appear only once); `THREADS_COUNT`
/// too, from `harper.threads`.
const DEFAULT_ARGS: &[(&str, &str)] = &[
    ("AUTHENTICATION_AUTHORIZELOCAL", "true"),
    ("LOGGING_LEVEL", "info"),
    ("LOGGING_STDSTREAMS", "false"),
];

/// The longest work directory: `<work>/<instance>/r/operations-server` is a unix socket, and
/// past ~107 bytes Harper creates it at a truncated path and never prints its ready line
/// (docs/harper.md). An instance folder is at most 22 bytes (`127_255_255_255-abcdef`).
pub const MAX_WORK_DIR: usize = 60;

/// Harper checks its configured paths with a regular expression that backtracks exponentially
/// on any character outside this set (docs/harper.md): one dot after a long enough run hangs
/// every boot. Every path handed to Harper is built from these only.
pub fn harper_safe(path: &str) -> bool {
    path.bytes().all(|b| b.is_ascii_alphanumeric() || b"_/:-".contains(&b))
}

/// Where instance directories are made, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkDir {
    pub path: PathBuf,
    /// Said to the user when the system's temporary directory could not be used.
    pub note: Option<String>,
}

impl WorkDir {
    /// `$HARPER_SHARD_WORK_DIR` when set, which must be safe for Harper and short enough, or
    /// the error says why and what to set; otherwise `<temp>/hs-<uid>`, or `/tmp/hs-<uid>` with
    /// a note when the temporary directory is not fit for Harper (macOS's `/var/folders/…`,
    /// a runner's dotted `RUNNER_TEMP`).
    pub fn resolve(explicit: Option<&Path>, temp: &Path, uid: u32) -> Result<WorkDir, String> {
        let name = format!("hs-{uid}");
        if let Some(dir) = explicit {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            return match unfit(&dir) {
                None => Ok(WorkDir { path: dir, note: None }),
                Some(why) => Err(format!(
                    "HARPER_SHARD_WORK_DIR={} cannot hold Harper instances: {why}; set it to a short path of \
                     letters, digits, `_`, `-`, `:` and `/` only, such as /tmp/{name}",
                    dir.display()
                )),
            };
        }
        let default = temp.join(&name);
        match unfit(&default) {
            None => Ok(WorkDir { path: default, note: None }),
            Some(why) => {
                let fallback = Path::new("/tmp").join(&name);
                let note = format!(
                    "instance directories go to {} instead of {}: {why} (set HARPER_SHARD_WORK_DIR to choose)",
                    fallback.display(),
                    default.display()
                );
                Ok(WorkDir { path: fallback, note: Some(note) })
            }
        }
    }

    /// From this process's environment.
    pub fn from_env() -> Result<WorkDir, String> {
        let explicit =
            std::env::var_os("HARPER_SHARD_WORK_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
        WorkDir::resolve(explicit.as_deref(), &std::env::temp_dir(), nix::unistd::getuid().as_raw())
    }

    /// Creates the work directory if needed and checks that only this user can write it:
    /// Harper runs what ROOTPATH/components holds.
    pub fn prepare(&self) -> anyhow::Result<()> {
        crate::private_dir::ensure(&self.path, "the work directory", "HARPER_SHARD_WORK_DIR")
    }
}

/// Why `dir` cannot hold instance directories, if it cannot.
fn unfit(dir: &Path) -> Option<String> {
    let Some(text) = dir.to_str() else {
        return Some(
            "it is not valid UTF-8, and Harper's configuration holds paths as text".into(),
        );
    };
    if !harper_safe(text) {
        let bad: String = text
            .chars()
            .filter(|c| !(c.is_ascii_alphanumeric() || "_/:-".contains(*c)))
            .take(3)
            .collect();
        return Some(format!(
            "it contains {bad:?}, and Harper's path check backtracks exponentially on such characters (its boot would hang)"
        ));
    }
    if text.len() > MAX_WORK_DIR {
        return Some(format!(
            "it is {} bytes long, and past {MAX_WORK_DIR} Harper's unix socket path gets truncated (it would never be ready)",
            text.len()
        ));
    }
    None
}

/// The directories of one instance. Named by [`Dirs::under`], created by [`Dirs::create`],
/// removed at teardown.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Holds both of the others; removing it removes the instance's every trace.
    pub base: PathBuf,
    pub root: PathBuf,
    pub home: PathBuf,
}

/// Is `name` an instance folder's name, as [`Dirs::under`] makes them? The pool's sweep removes
/// only folders named so.
pub fn is_instance_name(name: &str) -> bool {
    let Some((addr, tag)) = name.rsplit_once('-') else { return false };
    let addr_ok = addr.split('_').count() == 4 && addr.split('_').all(|n| n.parse::<u8>().is_ok());
    addr_ok && tag.len() == 6 && tag.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Dirs {
    /// Names fresh directories for an instance on `addr`, without creating them: the name goes
    /// into the slot's record first, so that a run killed at any later moment leaves them to
    /// the next owner's sweep. No dots: see [`harper_safe`].
    pub fn under(work: &Path, addr: Ipv4Addr) -> Dirs {
        let [a, b, c, d] = addr.octets();
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let base = work.join(format!("{a}_{b}_{c}_{d}-{tag}"));
        Dirs { root: base.join("r"), home: base.join("h"), base }
    }

    /// Creates the directories, empty, in the work directory ([`WorkDir::prepare`]).
    pub fn create(&self) -> anyhow::Result<()> {
        for dir in [&self.root, &self.home] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    /// Copies each fixture component into `<ROOTPATH>/components/<name>`.
    pub fn install_fixtures(&self, fixtures: &[PathBuf]) -> anyhow::Result<()> {
        for fixture in fixtures {
            let name = fixture.file_name().context("a fixture path has no final component")?;
            let target = self.root.join("components").join(name);
            copy_tree(fixture, &target).with_context(|| {
                format!("cannot copy fixture {} to {}", fixture.display(), target.display())
            })?;
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
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    tree(from, to, false)
}

/// [`copy_tree`], with regular files hard-linked where `to` is on the same file system (copied
/// elsewhere): only for files that are replaced, never written in place.
pub(crate) fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    tree(from, to, true)
}

fn tree(from: &Path, to: &Path, link: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            tree(&entry.path(), &target, link)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            if !(link && std::fs::hard_link(entry.path(), &target).is_ok()) {
                std::fs::copy(entry.path(), &target)?;
            }
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

/// The key of a Harper argument `--KEY=value`.
pub fn arg_key(arg: &str) -> Option<&str> {
    arg.strip_prefix("--").and_then(|a| a.split_once('=')).map(|(k, _)| k)
}

pub fn launch(
    spec: &HarperSpec,
    entry: &Path,
    dirs: &Dirs,
    addr: Ipv4Addr,
    password: &str,
) -> Launch {
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
    if let Some(https) = p.https {
        args.push(format!("--HTTP_SECUREPORT={addr}:{https}").into());
    }
    let given = |key: &str| {
        spec.args.iter().any(|a| arg_key(a).is_some_and(|k| k.eq_ignore_ascii_case(key)))
    };
    let threads = spec.threads.to_string();
    for (key, value) in DEFAULT_ARGS.iter().copied().chain([("THREADS_COUNT", threads.as_str())]) {
        if !given(key) {
            args.push(format!("--{key}={value}").into());
        }
    }
    args.extend(spec.args.iter().map(OsString::from));

    let mut env = spec.env.clone();
    env.insert("HOME".into(), dirs.home.display().to_string());
    // Harper's install writes its boot properties only when it finds a user name: the password
    // database's, else USER or LOGNAME. A uid without an entry (`docker run --user 4242`) and
    // without those gets an install that cannot be booted again, nor copied as a template.
    let named =
        |key: &str| env.contains_key(key) || std::env::var_os(key).is_some_and(|v| !v.is_empty());
    if !named("USER") && !named("LOGNAME") {
        env.insert("USER".into(), "harper-shard".into());
    }
    if !spec.config.is_empty() {
        env.insert(
            "HARPER_SET_CONFIG".into(),
            serde_json::Value::Object(spec.config.clone()).to_string(),
        );
    }
    Launch { program, args, env }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_folders_have_no_dots_and_are_recognised_by_the_sweep() {
        let dirs = Dirs::under(Path::new("/tmp/hs-0"), Ipv4Addr::new(127, 0, 0, 2));
        let name = dirs.base.file_name().unwrap().to_str().unwrap();
        assert!(harper_safe(dirs.root.to_str().unwrap()), "{}", dirs.root.display());
        assert!(is_instance_name(name), "{name}");
        assert!(!is_instance_name("127.0.0.2-abcdef"));
        assert!(!is_instance_name("home"));
    }

    fn threads_args(spec: &HarperSpec) -> Vec<String> {
        let dirs = Dirs::under(Path::new("/tmp/hs-0"), Ipv4Addr::new(127, 0, 0, 2));
        let launch =
            launch(spec, Path::new("/h/bin/harperdb.js"), &dirs, Ipv4Addr::new(127, 0, 0, 2), "pw");
        launch
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .filter(|a| arg_key(a) == Some("THREADS_COUNT"))
            .collect()
    }

    #[test]
    fn harper_gets_the_plans_thread_count_once_and_one_worker_unless_told() {
        let mut spec = crate::plan::test_harper();
        assert_eq!(threads_args(&spec), ["--THREADS_COUNT=1"]);
        spec.threads = 0;
        assert_eq!(threads_args(&spec), ["--THREADS_COUNT=0"]);
    }

    #[test]
    fn a_linked_tree_shares_each_file_until_one_is_renamed_over() {
        use std::os::unix::fs::MetadataExt as _;
        let base =
            std::env::temp_dir().join(format!("hs-link-test-{}", uuid::Uuid::new_v4().simple()));
        let (from, to) = (base.join("from"), base.join("to"));
        std::fs::create_dir_all(from.join("tag")).unwrap();
        std::fs::write(from.join("tag/entry"), "template's").unwrap();
        link_tree(&from, &to).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&from.join("tag/entry")), ino(&to.join("tag/entry")), "copied, not linked");
        std::fs::write(to.join("tag/entry.new"), "instance's").unwrap();
        std::fs::rename(to.join("tag/entry.new"), to.join("tag/entry")).unwrap();
        assert_eq!(std::fs::read_to_string(from.join("tag/entry")).unwrap(), "template's");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_dotted_temporary_directory_falls_back_to_tmp_with_a_note() {
        let work = WorkDir::resolve(None, Path::new("/tmp/home.runner_work_temp"), 7).unwrap();
        assert_eq!(work.path, Path::new("/tmp/hs-7"));
        assert!(work.note.unwrap().contains("backtracks"));
    }

    #[test]
    fn a_long_temporary_directory_falls_back_to_tmp_with_a_note() {
        let long = format!("/var/folders/zz/{}/T", "z".repeat(50));
        let work = WorkDir::resolve(None, Path::new(&long), 501).unwrap();
        assert_eq!(work.path, Path::new("/tmp/hs-501"));
        assert!(work.note.unwrap().contains("bytes long"));
    }

    #[test]
    fn a_fit_temporary_directory_is_used_as_it_is() {
        let work = WorkDir::resolve(None, Path::new("/tmp/runner_work_temp_dir_of_forty_chars"), 0)
            .unwrap();
        assert_eq!(
            work,
            WorkDir {
                path: PathBuf::from("/tmp/runner_work_temp_dir_of_forty_chars/hs-0"),
                note: None
            }
        );
    }

    #[test]
    fn an_unfit_explicit_work_directory_is_refused_with_what_to_set() {
        let err =
            WorkDir::resolve(Some(Path::new("/tmp/my.work")), Path::new("/tmp"), 0).unwrap_err();
        assert!(
            err.contains("HARPER_SHARD_WORK_DIR=/tmp/my.work") && err.contains("/tmp/hs-0"),
            "{err}"
        );
        let long = format!("/tmp/{}", "a".repeat(70));
        assert!(
            WorkDir::resolve(Some(Path::new(&long)), Path::new("/tmp"), 0)
                .unwrap_err()
                .contains("bytes long")
        );
    }
}
