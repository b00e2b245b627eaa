//! Directories that only this user may write: the pool's (locks and records that decide who
//! owns an address) and the work directory (ROOTPATHs, whose components Harper runs as code).
//! Either one, if another user could create it first or write into it, would hand them the
//! run. Refused, with what to do instead: a symbolic link, something that is not a directory,
//! another owner, group or world write access.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

/// Creates `dir` (mode 0700) if it is missing, then checks that it is private to this user.
/// `what` names it for people ("the pool directory"); `var` is the variable that moves it.
pub fn ensure(dir: &Path, what: &str, var: &str) -> anyhow::Result<()> {
    ensure_shared(dir, what, var, Sharing::Owner)
}

/// [`ensure`], with what `sharing` allows besides this user.
pub fn ensure_shared(dir: &Path, what: &str, var: &str, sharing: Sharing) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir.parent().unwrap_or(Path::new("/")))
                .with_context(|| format!("cannot create the parent of {what} {}", dir.display()))?;
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {}
                // Someone made it meanwhile: the checks below judge it like any other.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create {what} {}", dir.display()));
                }
            }
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot inspect {what} {}", dir.display()));
        }
        Ok(_) => {}
    }
    check_with(dir, what, var, sharing)
}

/// Checks that an existing `dir` is private to this user.
pub fn check(dir: &Path, what: &str, var: &str) -> anyhow::Result<()> {
    check_with(dir, what, var, Sharing::Owner)
}

/// Who may own and write a directory besides this user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// No one.
    Owner,
    /// The members of a group this process is in: the Harper cache of the container image is
    /// owned by the image's user and shared with group 0, in which `docker run --user <uid>`
    /// runs. Never everyone.
    Group,
}

/// Checks an existing `dir`: not a link, a directory, owned by this user (or shared with one of
/// its groups, when `sharing` allows), and writable by no one else (but that group).
pub fn check_with(dir: &Path, what: &str, var: &str, sharing: Sharing) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect {what} {}", dir.display()))?;
    let uid = nix::unistd::getuid().as_raw();
    let ours = |gid: u32| {
        sharing == Sharing::Group
            && (nix::unistd::getegid().as_raw() == gid
                || nix::unistd::getgroups()
                    .is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid)))
    };
    if meta.file_type().is_symlink() {
        bail!(
            "{what} {} is a symbolic link; refusing it, as another user could point it anywhere. \
             Remove it, or set {var} to a directory of your own",
            dir.display()
        );
    }
    if !meta.is_dir() {
        bail!("{what} {} is not a directory; remove it or set {var}", dir.display());
    }
    if meta.uid() != uid && !ours(meta.gid()) {
        bail!(
            "{what} {} belongs to uid {}, not to you (uid {uid}); set {var} to a directory of your own",
            dir.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    let others = if ours(meta.gid()) { 0o002 } else { 0o022 };
    if mode & others != 0 {
        bail!(
            "{what} {} is writable by others (mode {mode:04o}); run `chmod 700 {}` or set {var}",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hs-private-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_missing_directory_is_created_private() {
        let base = scratch();
        let dir = base.join("new");
        ensure(&dir, "the work directory", "X").unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_sticky_world_writable_directory_is_refused_with_its_whole_mode() {
        let dir = scratch();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = format!(
            "{:#}",
            ensure(&dir, "the work directory", "HARPER_SHARD_WORK_DIR").unwrap_err()
        );
        assert!(err.contains("mode 1777"), "{err}");
        assert!(err.contains("HARPER_SHARD_WORK_DIR"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let base = scratch();
        let link = base.join("link");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        let err = format!(
            "{:#}",
            ensure(&link, "the pool directory", "HARPER_SHARD_POOL_DIR").unwrap_err()
        );
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
