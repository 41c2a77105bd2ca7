//! Stacks are network namespaces: run code inside one.
//!
//! A socket belongs to the namespace of the thread that created it for its
//! whole life, so iked creates each stack's sockets on a short-lived helper
//! thread that enters the namespace; iked's own threads never change
//! namespace. (The same technique as `gatekey-xfrm`'s `Netns`; the stack's
//! XFRM handle uses that crate's type.)

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

/// The stack that is iked's own namespace.
pub const DEFAULT_STACK: &str = "default";

/// Where `ip netns add NAME` puts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A stack's network namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    name: String,
    fd: Option<Arc<OwnedFd>>,
}

impl Netns {
    /// The namespace iked runs in (stack `default`: the initial namespace
    /// under systemd; under `ip netns exec X iked`, X).
    pub fn current() -> Self {
        Netns {
            name: "default".into(),
            fd: None,
        }
    }

    /// The stack `name`: `default` is [`Netns::current`], any other name is
    /// `/run/netns/NAME`.
    pub fn for_stack(name: &str) -> io::Result<Self> {
        if name == "default" {
            return Ok(Self::current());
        }
        Self::from_path(name, &Path::new(NETNS_DIR).join(name))
    }

    /// A namespace file (`/proc/PID/ns/net`, a bind mount).
    pub fn from_path(name: &str, path: &Path) -> io::Result<Self> {
        let f = File::open(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open network namespace {}: {e} (create it with `ip netns add {name}`)",
                    path.display()
                ),
            )
        })?;
        Ok(Netns {
            name: name.into(),
            fd: Some(Arc::new(OwnedFd::from(f))),
        })
    }

    /// The stack name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `f` inside the namespace on a helper thread (on the calling
    /// thread for iked's own namespace).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let Some(fd) = &self.fd else {
            return f();
        };
        std::thread::scope(|s| {
            let h = s.spawn(|| -> io::Result<T> {
                move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network)).map_err(
                    |e| {
                        io::Error::new(
                            io::Error::from(e).kind(),
                            format!("cannot enter network namespace {}: {e}", self.name),
                        )
                    },
                )?;
                f()
            });
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("namespace helper thread panicked")))
        })
    }
}
