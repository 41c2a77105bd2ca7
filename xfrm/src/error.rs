//! The crate's error type.
//!
//! Errors are split the way a caller needs to react to them:
//! [`Error::Kernel`] — the kernel refused a request (errno plus the extended-ack text and offset
//! it gave); [`Error::Invalid`] — local misuse caught before anything was sent (wrong key length,
//! mixed address families, a legacy algorithm without opt-in); [`Error::Decode`] — the kernel sent
//! something this crate cannot parse; and I/O, namespace and overrun conditions.

use std::fmt;
use std::io;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking XFRM netlink.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel answered a request with a negative errno.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The request was rejected locally before it reached the kernel.
    #[error("invalid XFRM request: {0}")]
    Invalid(String),
    /// A legacy algorithm (3DES, HMAC-MD5, HMAC-SHA1) was used without `allow_legacy`.
    #[error(
        "algorithm {0} is legacy; it is only installed when the SA explicitly allows legacy algorithms"
    )]
    LegacyAlgorithm(&'static str),
    /// A message from the kernel could not be decoded.
    #[error("malformed XFRM netlink message: {0}")]
    Decode(String),
    /// The netlink socket failed.
    #[error("XFRM netlink socket: {0}")]
    Io(#[source] io::Error),
    /// The network namespace could not be opened or entered.
    #[error("network namespace {name}: {source}")]
    Netns {
        /// The namespace path or description.
        name: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The socket's receive queue overflowed (ENOBUFS): replies or events were lost.
    /// For an event stream, resynchronise with a dump; for a batch, the listed requests'
    /// outcome is unknown.
    #[error("netlink receive queue overflowed; {0}")]
    Overrun(&'static str),
    /// The kernel answered with a message this request did not expect.
    #[error("unexpected reply to {op}: message type {msg_type}")]
    UnexpectedReply {
        /// The request that was made.
        op: &'static str,
        /// The netlink message type received.
        msg_type: u16,
    },
}

impl Error {
    /// The kernel errno if the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel(k) => Some(k.errno),
            _ => None,
        }
    }

    /// The kernel's error details, if this is a kernel error.
    pub fn kernel(&self) -> Option<&KernelError> {
        match self {
            Error::Kernel(k) => Some(k),
            _ => None,
        }
    }

    /// The object does not exist (ENOENT, or ESRCH which XFRM uses for "no such SA").
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), Some(libc_errno::ENOENT | libc_errno::ESRCH))
    }

    /// The object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub(crate) fn decode(msg: impl fmt::Display) -> Self {
        Error::Decode(msg.to_string())
    }
}

impl From<netlink_packet_core::DecodeError> for Error {
    fn from(e: netlink_packet_core::DecodeError) -> Self {
        Error::Decode(e.to_string())
    }
}

/// A negative acknowledgement from the kernel, with its extended-ack details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// The operation that was refused (for example `"add SA"`).
    pub op: &'static str,
    /// The positive errno value (for example `libc::EPROTONOSUPPORT` = 93).
    pub errno: i32,
    /// The kernel's extended-ack message, when it gave one (`NLMSGERR_ATTR_MSG`).
    pub extack: Option<String>,
    /// Byte offset into the request of the offending attribute (`NLMSGERR_ATTR_OFFS`).
    pub offset: Option<u32>,
}

impl std::error::Error for KernelError {}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: kernel refused", self.op)?;
        match errno_name(self.errno) {
            Some(name) => write!(f, " with {name}")?,
            None => write!(f, " with errno {}", self.errno)?,
        }
        // io::Error's Display appends " (os error N)"; keep only the description.
        let text = os.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, " ({text})")?;
        if let Some(msg) = &self.extack {
            write!(f, ": {msg}")?;
        }
        if let Some(off) = self.offset {
            write!(f, " [at request byte {off}]")?;
        }
        Ok(())
    }
}

/// Errno constants used by this crate (Linux values), kept here so callers need not depend
/// on `libc` to match on them.
pub mod libc_errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// No such process (XFRM: no such SA).
    pub const ESRCH: i32 = 3;
    /// Interrupted (a dump was interrupted by a change).
    pub const EINTR: i32 = 4;
    /// Try again.
    pub const EAGAIN: i32 = 11;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Busy (a dump is already running on the socket).
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Function not implemented.
    pub const ENOSYS: i32 = 38;
    /// Protocol not supported.
    pub const EPROTONOSUPPORT: i32 = 93;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
    /// Address family not supported.
    pub const EAFNOSUPPORT: i32 = 97;
    /// No buffer space available.
    pub const ENOBUFS: i32 = 105;
}

fn errno_name(errno: i32) -> Option<&'static str> {
    use libc_errno::*;
    Some(match errno {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EINTR => "EINTR",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        EINVAL => "EINVAL",
        ENOSYS => "ENOSYS",
        EPROTONOSUPPORT => "EPROTONOSUPPORT",
        EOPNOTSUPP => "EOPNOTSUPP",
        EAFNOSUPPORT => "EAFNOSUPPORT",
        ENOBUFS => "ENOBUFS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_error_display_names_errno_and_extack() {
        let e = Error::Kernel(KernelError {
            op: "add SA",
            errno: libc_errno::EPROTONOSUPPORT,
            extack: Some("Requested type not found".into()),
            offset: None,
        });
        let s = e.to_string();
        assert!(s.contains("add SA"), "{s}");
        assert!(s.contains("EPROTONOSUPPORT"), "{s}");
        assert!(s.contains("Requested type not found"), "{s}");
        assert_eq!(e.errno(), Some(93));
        assert!(!e.is_not_found());
    }

    #[test]
    fn not_found_covers_esrch_and_enoent() {
        for errno in [libc_errno::ENOENT, libc_errno::ESRCH] {
            let e = Error::Kernel(KernelError {
                op: "get SA",
                errno,
                extack: None,
                offset: None,
            });
            assert!(e.is_not_found());
        }
    }
}
