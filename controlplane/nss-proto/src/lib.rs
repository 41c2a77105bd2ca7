//! The Network Security Services (NSS) client/server protocol, version 1,
//! as specified in `docs/nss-protocol.md`: frames with a fixed 40-byte
//! header and a maximum size, correlators so that many requests are in
//! flight on one connection, typed messages with strict decoding, the
//! return/reason codes, and the PassTicket algorithm.
//!
//! This crate is sans-IO: no sockets, no TLS, no clock reads (times are
//! parameters). It must not depend on any other workspace crate, on tokio,
//! or on rustls; `nssd` and `nss-client` put it on a TLS stream.
//!
//! ```
//! use nss_proto::{Correlator, Message, Request, Role, MAX_FRAME_LEN};
//! let m = Message::Request { correlator: Correlator::new(1, 0), request: Request::Keepalive };
//! let bytes = m.encode().unwrap();
//! assert_eq!(Message::decode_frame(&bytes, MAX_FRAME_LEN, Role::Server).unwrap(), m);
//! ```

mod attr;
mod codes;
mod frame;
mod msg;
pub mod passticket;
mod reader;
mod secret;

pub use attr::types as attr_types;
pub use codes::{Rc, Rsn, Status};
pub use frame::{
    Correlator, FLAG_RESPONSE, FRAME_VERSION, HEADER_LEN, Header, IDENT, MAX_FRAME_LEN,
    MAX_PREAUTH_FRAME_LEN, MessageType, Requester, Role,
};
pub use msg::{
    API_VERSION_1, API_VERSIONS, AuthMethod, CaCertificate, ConnectRequest, ConnectResponse,
    GetCertificateRequest, GetCertificateResponse, InputRule, KeyKind, Message, MgmtRequest,
    MgmtResponse, Reply, Request, ResponseBody, Services, SignInput, SignRequest, SignResponse,
    SignatureAlgorithm, Verdict, VerifyRequest, VerifyResponse, VerifySubject, error_reply, limits,
};
pub use reader::{Frame, FrameReader};
pub use secret::Secret;

/// Errors decoding (the peer misbehaved) or encoding (local misuse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The frame does not start with `GKNS`.
    #[error("bad frame identifier (not an NSS frame)")]
    BadIdent,
    /// Unsupported frame format version.
    #[error("unsupported frame version {0} (this side speaks 1)")]
    BadFrameVersion(u8),
    /// `Length` below the header size.
    #[error("frame length {0} is below the 40-byte header")]
    MsgSize(u32),
    /// `Length` above the limit.
    #[error("frame length {length} exceeds the limit of {limit} bytes")]
    ExcessiveSize {
        /// The announced length.
        length: u32,
        /// The limit in force.
        limit: usize,
    },
    /// Reserved flags/fields not zero, or codes set in a request.
    #[error("reserved field or flag not zero")]
    ReservedNonzero,
    /// Unknown message type.
    #[error("unknown message type 0x{0:04x}")]
    BadType(u16),
    /// A request type the sender may not send, or a response to a request
    /// the receiver never sends.
    #[error("{0} may not be sent in this direction")]
    WrongDirection(MessageType),
    /// An attribute header or value runs past the end of the body.
    #[error("truncated at body offset {at}")]
    Truncated {
        /// Offset in the body (or frame) where more bytes were needed.
        at: usize,
    },
    /// An attribute's value breaks the rules.
    #[error("attribute 0x{attr:04x}: {reason}")]
    BadAttribute {
        /// The attribute type.
        attr: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// A non-repeatable attribute appears twice.
    #[error("attribute 0x{attr:04x} appears more than once")]
    DuplicateAttribute {
        /// The attribute type.
        attr: u16,
    },
    /// An unknown attribute without the extension bit.
    #[error("unknown attribute 0x{attr:04x}")]
    UnknownAttribute {
        /// The attribute type.
        attr: u16,
    },
    /// More attributes than a body may hold.
    #[error("too many attributes")]
    TooManyAttributes,
    /// A required attribute is missing.
    #[error("required attribute 0x{attr:04x} is missing")]
    MissingAttribute {
        /// The attribute type.
        attr: u16,
    },
    /// (Encoding) the frame would exceed the maximum size.
    #[error("frame of {length} bytes would exceed the maximum")]
    TooLarge {
        /// The length it would have.
        length: usize,
    },
    /// (Encoding) a field breaks the registry's rules.
    #[error("cannot encode attribute 0x{attr:04x}: {reason}")]
    InvalidField {
        /// The attribute type.
        attr: u16,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Error {
    /// The reason code that reports this error to the peer.
    pub fn reason(&self) -> Rsn {
        match self {
            Error::BadIdent => Rsn::BAD_IDENT,
            Error::BadFrameVersion(_) => Rsn::BAD_VERSION,
            Error::MsgSize(_) => Rsn::MSG_SIZE,
            Error::ExcessiveSize { .. } => Rsn::EXCESSIVE_SIZE,
            Error::ReservedNonzero => Rsn::RESERVED_NONZERO,
            Error::BadType(_) => Rsn::BAD_TYPE,
            Error::WrongDirection(_) => Rsn::PROTOCOL_VIOLATION,
            Error::Truncated { .. }
            | Error::BadAttribute { .. }
            | Error::DuplicateAttribute { .. }
            | Error::UnknownAttribute { .. }
            | Error::TooManyAttributes
            | Error::TooLarge { .. }
            | Error::InvalidField { .. } => Rsn::BAD_ATTRIBUTE,
            Error::MissingAttribute { .. } => Rsn::MISSING_ATTRIBUTE,
        }
    }

    /// `EINVAL` with [`Error::reason`].
    pub fn status(&self) -> Status {
        Status::new(Rc::EINVAL, self.reason())
    }

    /// True for errors in the framing itself (the stream cannot be trusted).
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            Error::BadIdent
                | Error::BadFrameVersion(_)
                | Error::MsgSize(_)
                | Error::ExcessiveSize { .. }
        )
    }

    /// True if, for a frame with `header`, this error closes the connection
    /// (§7): framing errors, wrong direction, and any error in a response
    /// or TERMINATE (those cannot be answered).
    pub fn is_fatal_for(&self, header: &Header) -> bool {
        self.is_framing()
            || matches!(self, Error::WrongDirection(_))
            || header.is_response()
            || header.msg_type == MessageType::TERMINATE
    }
}

#[cfg(test)]
mod tests;
