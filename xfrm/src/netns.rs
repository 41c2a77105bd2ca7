//! Network namespaces: where a handle's sockets live.
//!
//! A netlink socket belongs to the network namespace of the thread that created it, for its
//! whole life. To open one in another namespace without moving the caller, a short-lived
//! helper thread enters the namespace (`setns(2)` through `rustix`'s safe wrapper), creates
//! the socket and exits; the caller's thread never changes namespace. The same trick reads
//! per-namespace procfs files (`/proc/thread-self/net/xfrm_stat`).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use crate::error::{Error, Result};

/// A network namespace a [`Handle`](crate::Handle) talks to.
#[derive(Debug, Clone)]
pub struct Netns {
    name: String,
    fd: Option<Arc<OwnedFd>>,
}

impl Netns {
    /// The namespace of the calling thread at the time of use.
    pub fn current() -> Self {
        Netns {
            name: "current".into(),
            fd: None,
        }
    }

    /// A named namespace (`/run/netns/NAME`, as created by `ip netns add`);
    /// `default` means the initial namespace of PID 1.
    pub fn named(name: &str) -> Result<Self> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::invalid(format!(
                "bad network namespace name {name:?}"
            )));
        }
        if name == "default" {
            return Self::from_path("/proc/1/ns/net").map(|n| Netns {
                name: "default".into(),
                ..n
            });
        }
        Self::from_path(Path::new("/run/netns").join(name)).map(|n| Netns {
            name: name.into(),
            ..n
        })
    }

    /// A namespace given by a path to a namespace file (`/proc/PID/ns/net`, a bind mount).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f = File::open(path).map_err(|source| Error::Netns {
            name: path.display().to_string(),
            source,
        })?;
        Ok(Netns {
            name: path.display().to_string(),
            fd: Some(Arc::new(OwnedFd::from(f))),
        })
    }

    /// A namespace given by an open namespace file descriptor.
    pub fn from_fd(fd: OwnedFd) -> Self {
        Netns {
            name: "fd".into(),
            fd: Some(Arc::new(fd)),
        }
    }

    /// Name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a helper thread that has entered this namespace; the calling thread's
    /// namespace is untouched. With [`Netns::current`], `f` runs on the calling thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> Result<T> {
        let Some(fd) = &self.fd else {
            return f().map_err(Error::Io);
        };
        let name = &self.name;
        std::thread::scope(|s| {
            let h = s.spawn(|| -> Result<T> {
                move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network)).map_err(
                    |e| Error::Netns {
                        name: name.clone(),
                        source: e.into(),
                    },
                )?;
                f().map_err(Error::Io)
            });
            h.join()
                .unwrap_or_else(|_| Err(Error::invalid("namespace helper thread panicked")))
        })
    }
}
