//! Return codes (errno values) and reason codes — `docs/nmi-protocol.md` §6.

use std::fmt;

/// A return code (`rc`, z/OS NMsMRc): a Linux errno value, 0 = success.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReturnCode(pub u32);

impl ReturnCode {
    /// Success.
    pub const OK: Self = Self(0);
    /// Internal server failure.
    pub const EIO: Self = Self(5);
    /// Unknown stack, or NSS client not connected.
    pub const ENXIO: Self = Self(6);
    /// Caller not authorized.
    pub const EACCES: Self = Self(13);
    /// The server already has its maximum number of clients.
    pub const EBUSY: Self = Self(16);
    /// Malformed or invalid request.
    pub const EINVAL: Self = Self(22);
    /// Not supported (client not enabled for remote management; type not served).
    pub const EOPNOTSUPP: Self = Self(95);
    /// Relay or idle timeout.
    pub const ETIMEDOUT: Self = Self(110);

    /// The errno name, if this is one of the codes the protocol uses.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::OK => "OK",
            Self::EIO => "EIO",
            Self::ENXIO => "ENXIO",
            Self::EACCES => "EACCES",
            Self::EBUSY => "EBUSY",
            Self::EINVAL => "EINVAL",
            Self::EOPNOTSUPP => "EOPNOTSUPP",
            Self::ETIMEDOUT => "ETIMEDOUT",
            _ => return None,
        })
    }

    /// True for 0.
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// A reason code (`rsn`, z/OS NMsMRsn). 1–8 are z/OS's; gatekey's own start at 4096.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReasonCode(pub u32);

impl ReasonCode {
    /// No reason.
    pub const NONE: Self = Self(0);
    /// Bad message identifier (connection closed).
    pub const BAD_IDENT: Self = Self(1);
    /// Version 0 or not supported.
    pub const BAD_VERSION: Self = Self(2);
    /// Unknown message type, or INIT/TERM from a client.
    pub const BAD_TYPE: Self = Self(3);
    /// Message larger than the maximum (connection closed).
    pub const EXCESSIVE_SIZE: Self = Self(4);
    /// Header size is not 64.
    pub const HDR_SIZE: Self = Self(5);
    /// Body present or absent against the type's rule.
    pub const MSG_SIZE: Self = Self(6);
    /// Reserved field, flags, rc or rsn nonzero in a request.
    pub const RESERVED_NONZERO: Self = Self(7);
    /// z/OS: unrecognized record length (not used by gatekey).
    pub const RECORD_LENGTH: Self = Self(8);
    /// The body is not the required JSON record.
    pub const BAD_BODY: Self = Self(4096);
    /// Blank target where one is required.
    pub const TARGET_REQUIRED: Self = Self(4097);
    /// Too many clients (with `EBUSY`).
    pub const TOO_MANY_CLIENTS: Self = Self(4098);
    /// Target contains bytes outside 0x21–0x7E.
    pub const BAD_TARGET: Self = Self(4099);
    /// Values well-formed but unusable.
    pub const BAD_PARAMETER: Self = Self(4100);
    /// The server does not serve this request type.
    pub const NOT_SERVED: Self = Self(4101);
    /// REFRESH_CONFIG: a configuration file has an error; the running configuration stays
    /// (protocol version 2).
    pub const CONFIG_REJECTED: Self = Self(4102);

    /// The documented name, if known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NONE => "0",
            Self::BAD_IDENT => "NMsRsnBadIdent",
            Self::BAD_VERSION => "NMsRsnBadVersion",
            Self::BAD_TYPE => "NMsRsnBadType",
            Self::EXCESSIVE_SIZE => "NMsRsnExcessiveSize",
            Self::HDR_SIZE => "NMsRsnHdrSize",
            Self::MSG_SIZE => "NMsRsnMsgSize",
            Self::RESERVED_NONZERO => "NMsRsnReservedNonzero",
            Self::RECORD_LENGTH => "NMsRsnRecordLength",
            Self::BAD_BODY => "GkRsnBadBody",
            Self::TARGET_REQUIRED => "GkRsnTargetRequired",
            Self::TOO_MANY_CLIENTS => "GkRsnTooManyClients",
            Self::BAD_TARGET => "GkRsnBadTarget",
            Self::BAD_PARAMETER => "GkRsnBadParameter",
            Self::NOT_SERVED => "GkRsnNotServed",
            Self::CONFIG_REJECTED => "GkRsnConfigRejected",
            _ => return None,
        })
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) if self.0 != 0 => write!(f, "{n}({})", self.0),
            _ => write!(f, "{}", self.0),
        }
    }
}

/// A request that fails: the rc/rsn the server answers with, and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Return code.
    pub rc: ReturnCode,
    /// Reason code.
    pub rsn: ReasonCode,
    /// What failed and what to do.
    pub message: String,
    /// On `EACCES`: the authorization profile that was checked.
    pub profile: Option<String>,
}

impl Failure {
    /// A failure with a message.
    pub fn new(rc: ReturnCode, rsn: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            rc,
            rsn,
            message: message.into(),
            profile: None,
        }
    }

    /// `EINVAL` with the given reason.
    pub fn invalid(rsn: ReasonCode, message: impl Into<String>) -> Self {
        Self::new(ReturnCode::EINVAL, rsn, message)
    }

    /// `EACCES`: the caller is not permitted `profile`.
    pub fn not_authorized(profile: impl Into<String>) -> Self {
        let profile = profile.into();
        Self {
            rc: ReturnCode::EACCES,
            rsn: ReasonCode::NONE,
            message: format!("not authorized: READ access to {profile} is required"),
            profile: Some(profile),
        }
    }

    /// `ENXIO`: unknown stack or NSS client not connected.
    pub fn no_target(message: impl Into<String>) -> Self {
        Self::new(ReturnCode::ENXIO, ReasonCode::NONE, message)
    }

    /// `EOPNOTSUPP`/`GkRsnNotServed`.
    pub fn not_served(message: impl Into<String>) -> Self {
        Self::new(ReturnCode::EOPNOTSUPP, ReasonCode::NOT_SERVED, message)
    }

    /// `EINVAL`/`GkRsnConfigRejected`: a refresh found errors (one per line, each naming
    /// file:line:column); the running configuration stays.
    pub fn config_rejected(message: impl Into<String>) -> Self {
        Self::invalid(ReasonCode::CONFIG_REJECTED, message)
    }

    /// `EIO`: internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ReturnCode::EIO, ReasonCode::NONE, message)
    }

    /// Failures after which the server closes the connection (bad ident, excessive size).
    pub fn closes_connection(&self) -> bool {
        self.rc == ReturnCode::EINVAL
            && (self.rsn == ReasonCode::BAD_IDENT || self.rsn == ReasonCode::EXCESSIVE_SIZE)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rc {} rsn {}: {}", self.rc, self.rsn, self.message)
    }
}
