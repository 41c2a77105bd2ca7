//! Return and reason codes (`docs/nss-protocol.md` §6).

use std::fmt;

/// A return code: a Linux errno value, printed by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rc(pub u32);

impl Rc {
    /// Success.
    pub const OK: Rc = Rc(0);
    /// Certificate or key not found.
    pub const ENOENT: Rc = Rc(2);
    /// The server failed internally.
    pub const EIO: Rc = Rc(5);
    /// (NMI) the named NSS client is not connected.
    pub const ENXIO: Rc = Rc(6);
    /// Too many outstanding requests.
    pub const EAGAIN: Rc = Rc(11);
    /// Authentication failed, or a certificate is not authorized.
    pub const EACCES: Rc = Rc(13);
    /// Malformed frame or request, wrong state, no common version.
    pub const EINVAL: Rc = Rc(22);
    /// Service not enabled or not selected; unsupported algorithm.
    pub const EOPNOTSUPP: Rc = Rc(95);
    /// The client name is held by a live connection.
    pub const EADDRINUSE: Rc = Rc(98);
    /// Connection replaced by a newer one with the same client name.
    pub const ECONNRESET: Rc = Rc(104);
    /// Server shutting down.
    pub const ESHUTDOWN: Rc = Rc(108);
    /// Timeout (no CONNECT, idle, a client that does not answer).
    pub const ETIMEDOUT: Rc = Rc(110);

    /// The errno name, if this is one of the codes the protocol uses.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Rc::OK => "0",
            Rc::ENOENT => "ENOENT",
            Rc::EIO => "EIO",
            Rc::ENXIO => "ENXIO",
            Rc::EAGAIN => "EAGAIN",
            Rc::EACCES => "EACCES",
            Rc::EINVAL => "EINVAL",
            Rc::EOPNOTSUPP => "EOPNOTSUPP",
            Rc::EADDRINUSE => "EADDRINUSE",
            Rc::ECONNRESET => "ECONNRESET",
            Rc::ESHUTDOWN => "ESHUTDOWN",
            Rc::ETIMEDOUT => "ETIMEDOUT",
            _ => return None,
        })
    }
}

impl fmt::Display for Rc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rsn(pub u32);

macro_rules! reasons {
    ($( $(#[$m:meta])* $name:ident = $val:expr, $text:expr; )*) => {
        impl Rsn {
            $( $(#[$m])* pub const $name: Rsn = Rsn($val); )*

            /// The documented name (`NSSRsn…`), if known.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $val => Some($text), )*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    /// No reason.
    NONE = 0, "NSSRsnNone";
    /// `Ident` is not `GKNS`.
    BAD_IDENT = 1, "NSSRsnBadIdent";
    /// Unsupported frame version, or no common API version.
    BAD_VERSION = 2, "NSSRsnBadVersion";
    /// Unknown message type.
    BAD_TYPE = 3, "NSSRsnBadType";
    /// Frame length above the limit.
    EXCESSIVE_SIZE = 4, "NSSRsnExcessiveSize";
    /// Frame length below the header size.
    MSG_SIZE = 6, "NSSRsnMsgSize";
    /// Reserved bits or fields not zero.
    RESERVED_NONZERO = 7, "NSSRsnReservedNonzero";
    /// An attribute breaks the encoding rules.
    BAD_ATTRIBUTE = 8, "NSSRsnBadAttribute";
    /// A required attribute is missing.
    MISSING_ATTRIBUTE = 9, "NSSRsnMissingAttribute";
    /// The user ID could not be authenticated.
    USER_AUTHENTICATION = 10, "NSSRsnUserAuthentication";
    /// A request before a successful CONNECT.
    NOT_CONNECTED = 11, "NSSRsnNotConnected";
    /// A second CONNECT on a connection.
    ALREADY_CONNECTED = 12, "NSSRsnAlreadyConnected";
    /// The client name is held by a live connection.
    CLIENT_NAME_IN_USE = 13, "NSSRsnClientNameInUse";
    /// The request needs a service that is not enabled.
    SERVICE_NOT_ENABLED = 14, "NSSRsnServiceNotEnabled";
    /// No READ access to the certificate's profile.
    CERT_NOT_AUTHORIZED = 15, "NSSRsnCertNotAuthorized";
    /// No certificate with that label (or the wrong usage).
    CERT_NOT_FOUND = 16, "NSSRsnCertNotFound";
    /// The user owns no single (or Default) PERSONAL certificate.
    NO_DEFAULT_CERT = 17, "NSSRsnNoDefaultCert";
    /// The certificate has no private key.
    KEY_NOT_FOUND = 18, "NSSRsnKeyNotFound";
    /// The algorithm does not fit the key.
    ALGORITHM_MISMATCH = 19, "NSSRsnAlgorithmMismatch";
    /// Algorithm/input combination not supported.
    UNSUPPORTED_ALGORITHM = 20, "NSSRsnUnsupportedAlgorithm";
    /// Internal signing failure.
    SIGNING_FAILED = 21, "NSSRsnSigningFailed";
    /// The server is stopping.
    SERVER_SHUTDOWN = 22, "NSSRsnServerShutdown";
    /// A newer connection took over the client name.
    CLIENT_REPLACED = 23, "NSSRsnClientReplaced";
    /// Nothing received for three keepalive intervals.
    IDLE_TIMEOUT = 24, "NSSRsnIdleTimeout";
    /// No CONNECT in time.
    CONNECT_TIMEOUT = 25, "NSSRsnConnectTimeout";
    /// A frame the sender may not send.
    PROTOCOL_VIOLATION = 26, "NSSRsnProtocolViolation";
    /// Too many outstanding requests.
    TOO_MANY_REQUESTS = 27, "NSSRsnTooManyRequests";
}

impl fmt::Display for Rsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A return code with its reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status {
    /// The return code.
    pub rc: Rc,
    /// The reason code.
    pub rsn: Rsn,
}

impl Status {
    /// Success.
    pub const OK: Status = Status {
        rc: Rc::OK,
        rsn: Rsn::NONE,
    };

    /// A status from its parts.
    pub const fn new(rc: Rc, rsn: Rsn) -> Self {
        Status { rc, rsn }
    }

    /// True for success (`Rc` 0).
    pub fn is_ok(self) -> bool {
        self.rc == Rc::OK
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "return code {} reason code {}", self.rc, self.rsn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_like_the_z_os_messages() {
        let s = Status::new(Rc::EACCES, Rsn::USER_AUTHENTICATION);
        assert_eq!(
            s.to_string(),
            "return code EACCES reason code NSSRsnUserAuthentication"
        );
        assert_eq!(Rc(9999).to_string(), "9999");
        assert_eq!(Rsn(9999).to_string(), "9999");
        assert_eq!(Rsn::TOO_MANY_REQUESTS.name(), Some("NSSRsnTooManyRequests"));
    }
}
