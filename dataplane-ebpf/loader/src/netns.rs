//! Stacks (network namespaces) and running code inside them.
//!
//! A *stack* is a network namespace named by its netns name
//! (`/run/netns/NAME`); `default` is the namespace the process runs in (the
//! initial one under systemd; under `ip netns exec X …`, X), as for iked.
//! Interface indexes and TC attachments are per namespace, so everything that
//! names an interface runs on a helper thread that has entered the stack's
//! namespace with `setns(2)` (which changes only that thread).

use std::fmt;
use std::fs::File;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};

use crate::Error;

/// Root of gatekey's pins in bpffs.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/gatekey";

/// A TCP/IP stack: a network namespace by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stack(String);

impl Stack {
    /// The process's own network namespace.
    pub const DEFAULT: &'static str = "default";

    /// A stack by name. `default` is the process's own namespace; any other name is
    /// a namespace under `/run/netns/`. Names are 1–64 characters of
    /// letters, digits, `-`, `_` and `.`, and not `.` or `..`.
    pub fn new(name: &str) -> Result<Self, Error> {
        let bad = |reason| {
            Err(Error::InvalidStackName {
                name: name.to_owned(),
                reason,
            })
        };
        if name.is_empty() || name.len() > 64 {
            return bad("must be 1 to 64 characters");
        }
        if name == "." || name == ".." {
            return bad("must not be . or ..");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("only letters, digits, '-', '_' and '.' are allowed");
        }
        Ok(Self(name.to_owned()))
    }

    /// The process's own network namespace.
    pub fn default_stack() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// True for the process's own namespace.
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    /// The namespace file to `setns(2)` into.
    pub fn netns_path(&self) -> PathBuf {
        if self.is_default() {
            PathBuf::from("/proc/self/ns/net")
        } else {
            PathBuf::from("/run/netns").join(&self.0)
        }
    }

    /// Where this stack's programs, links and maps are pinned:
    /// `/sys/fs/bpf/gatekey/<stack>/`.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from(BPFFS_ROOT).join(&self.0)
    }

    /// Runs `f` on a helper thread that has entered this stack's network
    /// namespace (on the calling thread for `default`), and returns its
    /// result.
    pub fn run_in<T, F>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        if self.is_default() {
            return Ok(f());
        }
        let path = self.netns_path();
        let file = File::open(&path).map_err(|source| Error::EnterNetns {
            stack: self.0.clone(),
            path: path.clone(),
            source,
        })?;
        std::thread::scope(|scope| {
            let handle = scope.spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::EnterNetns {
                    stack: self.0.clone(),
                    path,
                    source: errno.into(),
                })?;
                Ok(f())
            });
            handle.join().map_err(|_| Error::ThreadPanicked {
                stack: self.0.clone(),
            })?
        })
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names() {
        assert!(Stack::new("default").is_ok_and(|s| s.is_default()));
        assert!(Stack::new("gw-1.blue_2").is_ok());
        assert!(Stack::new("").is_err());
        assert!(Stack::new("..").is_err());
        assert!(Stack::new("a/b").is_err());
        assert!(Stack::new(&"x".repeat(65)).is_err());
        let s = Stack::new("blue").unwrap();
        assert_eq!(s.netns_path(), PathBuf::from("/run/netns/blue"));
        assert_eq!(s.pin_dir(), PathBuf::from("/sys/fs/bpf/gatekey/blue"));
        assert_eq!(
            Stack::default_stack().netns_path(),
            PathBuf::from("/proc/self/ns/net")
        );
    }
}
