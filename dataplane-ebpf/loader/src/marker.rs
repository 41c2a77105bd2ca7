//! The per-stack marker file recording the active filter set
//! (`ipsec -f default` / `-f reload`), so that the choice survives restarts
//! of everything in user space: `/run/gatekey/<stack>/filter-set`, holding
//! `default` or `policy`.
//!
//! It lives in `/run` on purpose: after a reboot the profile's rules are in
//! force again until iked loads the policy, as on z/OS after an IPL.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::dataplane::SetId;
use crate::netns::Stack;

/// Default root of the marker files.
pub const MARKER_ROOT: &str = "/run/gatekey";

/// The marker file of `stack` under `root`.
pub fn marker_path(root: &Path, stack: &Stack) -> PathBuf {
    root.join(stack.name()).join("filter-set")
}

/// Read the marker; `None` if there is none (or it is unreadable garbage,
/// which is treated as absent).
pub fn read(path: &Path) -> Option<SetId> {
    let text = fs::read_to_string(path).ok()?;
    match text.trim() {
        "default" => Some(SetId::Default),
        "policy" => Some(SetId::Policy),
        _ => None,
    }
}

/// Write the marker atomically (temporary file, fsync, rename).
pub fn write(path: &Path, set: SetId) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all(format!("{}\n", set.name()).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming to", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("gk-marker-{}", std::process::id()));
        let stack = Stack::new("blue").unwrap();
        let p = marker_path(&dir, &stack);
        assert_eq!(read(&p), None);
        write(&p, SetId::Default).unwrap();
        assert_eq!(read(&p), Some(SetId::Default));
        write(&p, SetId::Policy).unwrap();
        assert_eq!(read(&p), Some(SetId::Policy));
        fs::write(&p, "junk").unwrap();
        assert_eq!(read(&p), None);
        let _ = fs::remove_dir_all(&dir);
    }
}
