//! Ownership and mode checks for keyring files.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::Error;

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

fn meta(path: &Path) -> Result<std::fs::Metadata, Error> {
    std::fs::symlink_metadata(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn perm(path: &Path, problem: String) -> Error {
    Error::Permission {
        path: path.to_path_buf(),
        problem,
    }
}

/// The keyring directory: a real directory owned by root or us, not
/// writable by group or others.
pub(crate) fn check_dir(dir: &Path) -> Result<(), Error> {
    let m = meta(dir)?;
    if m.file_type().is_symlink() {
        return Err(perm(
            dir,
            "is a symbolic link; name the real keyring directory".into(),
        ));
    }
    if !m.is_dir() {
        return Err(perm(dir, "is not a directory".into()));
    }
    common(dir, &m)
}

fn common(path: &Path, m: &std::fs::Metadata) -> Result<(), Error> {
    if !trusted_owner(m.uid()) {
        return Err(perm(
            path,
            format!(
                "is owned by uid {}; it must be owned by root or the user nssd/iked runs as",
                m.uid()
            ),
        ));
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(perm(
            path,
            format!(
                "is writable by group or others (mode {mode:04o}); run `chmod go-w {}`",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// A regular file (no symlink) owned by root or us, not writable by group or
/// others; a `secret` file must not be accessible by group or others at all.
pub(crate) fn check_file(path: &Path, secret: bool) -> Result<(), Error> {
    let m = meta(path)?;
    if m.file_type().is_symlink() {
        return Err(perm(
            path,
            "is a symbolic link; keyring files must be regular files".into(),
        ));
    }
    if !m.is_file() {
        return Err(perm(path, "is not a regular file".into()));
    }
    common(path, &m)?;
    let mode = m.permissions().mode() & 0o7777;
    if secret && mode & 0o077 != 0 {
        return Err(perm(
            path,
            format!(
                "holds a private key but is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// `rel` joined to `dir`, refusing absolute paths and `..`.
pub(crate) fn inside(dir: &Path, rel: &Path) -> Result<PathBuf, Error> {
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(perm(
            rel,
            "keyring files must be named relative to the keyring directory, without '..'".into(),
        ));
    }
    Ok(dir.join(rel))
}
