//! The fixed 40-byte frame header (`docs/nss-protocol.md` §2).

use std::fmt;

use crate::Error;
use crate::codes::{Rc, Rsn, Status};

/// The `Ident` bytes that start every frame.
pub const IDENT: [u8; 4] = *b"GKNS";
/// The frame format version this crate speaks.
pub const FRAME_VERSION: u8 = 1;
/// The header length.
pub const HEADER_LEN: usize = 40;
/// The largest frame, header included: 16 MiB + 64 KiB, so that a MGMT_REQUEST
/// response can carry the largest NMI response (`docs/nmi-protocol.md` §2,
/// 16 MiB).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024 + 64 * 1024;
/// The largest frame a server accepts before CONNECT has succeeded (16 KiB).
pub const MAX_PREAUTH_FRAME_LEN: usize = 16 * 1024;
/// `Flags` bit: this frame is a response.
pub const FLAG_RESPONSE: u8 = 0x01;

/// The message type (`docs/nss-protocol.md` §4). Unknown values are kept so
/// that an error response can echo them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(pub u16);

impl MessageType {
    /// Client login.
    pub const CONNECT: MessageType = MessageType(0x0001);
    /// Orderly client shutdown.
    pub const DISCONNECT: MessageType = MessageType(0x0002);
    /// Liveness probe, either direction.
    pub const KEEPALIVE: MessageType = MessageType(0x0003);
    /// Notification that the sender is closing the connection.
    pub const TERMINATE: MessageType = MessageType(0x0004);
    /// Create a signature.
    pub const SIGN: MessageType = MessageType(0x0101);
    /// Verify a signature.
    pub const VERIFY: MessageType = MessageType(0x0102);
    /// Get a certificate and its chain.
    pub const GET_CERTIFICATE: MessageType = MessageType(0x0103);
    /// Get the CA certificates the client may use.
    pub const GET_CA_CERTIFICATES: MessageType = MessageType(0x0104);
    /// A routed NMI request (server to client).
    pub const MGMT_REQUEST: MessageType = MessageType(0x0201);

    /// The documented name, if known.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            MessageType::CONNECT => "CONNECT",
            MessageType::DISCONNECT => "DISCONNECT",
            MessageType::KEEPALIVE => "KEEPALIVE",
            MessageType::TERMINATE => "TERMINATE",
            MessageType::SIGN => "SIGN",
            MessageType::VERIFY => "VERIFY",
            MessageType::GET_CERTIFICATE => "GET_CERTIFICATE",
            MessageType::GET_CA_CERTIFICATES => "GET_CA_CERTIFICATES",
            MessageType::MGMT_REQUEST => "MGMT_REQUEST",
            _ => return None,
        })
    }

    /// Who may send a request of this type, if the type is known.
    pub fn requester(self) -> Option<Requester> {
        Some(match self {
            MessageType::CONNECT
            | MessageType::DISCONNECT
            | MessageType::SIGN
            | MessageType::VERIFY
            | MessageType::GET_CERTIFICATE
            | MessageType::GET_CA_CERTIFICATES => Requester::Client,
            MessageType::MGMT_REQUEST => Requester::Server,
            MessageType::KEEPALIVE | MessageType::TERMINATE => Requester::Either,
            _ => return None,
        })
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "0x{:04x}", self.0),
        }
    }
}

/// Which side sends requests of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// Only the client.
    Client,
    /// Only the server.
    Server,
    /// Either side.
    Either,
}

/// The role of the endpoint that decodes a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An NSS client (receives responses to its requests and MGMT_REQUESTs).
    Client,
    /// The NSS server.
    Server,
}

impl Role {
    /// True if the peer of this role may send a request of type `t`.
    pub fn peer_may_request(self, t: MessageType) -> bool {
        matches!(
            (self, t.requester()),
            (_, Some(Requester::Either))
                | (Role::Server, Some(Requester::Client))
                | (Role::Client, Some(Requester::Server))
        )
    }

    /// True if this role may send a request of type `t` (and so may receive
    /// its response).
    pub fn may_request(self, t: MessageType) -> bool {
        match (self, t.requester()) {
            (_, Some(Requester::Either)) => t != MessageType::TERMINATE,
            (Role::Client, Some(Requester::Client)) => true,
            (Role::Server, Some(Requester::Server)) => true,
            _ => false,
        }
    }
}

/// A request correlator: 16 bytes chosen by the requester.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Correlator(pub [u8; 16]);

impl Correlator {
    /// The all-zero correlator (TERMINATE not caused by a request).
    pub const ZERO: Correlator = Correlator([0; 16]);

    /// The client library's layout: sequence number, then connection epoch.
    pub fn new(sequence: u64, epoch: u64) -> Self {
        let mut c = [0u8; 16];
        let (a, b) = c.split_at_mut(8);
        a.copy_from_slice(&sequence.to_be_bytes());
        b.copy_from_slice(&epoch.to_be_bytes());
        Correlator(c)
    }
}

impl fmt::Display for Correlator {
    /// 32 hexadecimal digits, as z/OS messages print correlators.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Correlator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Correlator({self})")
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `Flags` (bit 0: response).
    pub flags: u8,
    /// The message type.
    pub msg_type: MessageType,
    /// Total frame length, header included.
    pub length: u32,
    /// Return code and reason code.
    pub status: Status,
    /// The `Reserved` field.
    pub reserved: u32,
    /// The correlator.
    pub correlator: Correlator,
}

impl Header {
    /// Parse and check the framing fields of a header: `Ident`, `Version`
    /// and `Length` (40 ≤ length ≤ `limit`). Errors here are fatal for the
    /// connection. Reserved bits and codes are checked later by
    /// [`crate::Message::decode`], which can still answer the request.
    pub fn parse(bytes: &[u8; HEADER_LEN], limit: usize) -> Result<Header, Error> {
        let r = |o: usize, n: usize| bytes.get(o..o + n).unwrap_or(&[]);
        let u32_at = |o: usize| {
            let mut a = [0u8; 4];
            a.copy_from_slice(r(o, 4));
            u32::from_be_bytes(a)
        };
        if r(0, 4) != IDENT {
            return Err(Error::BadIdent);
        }
        let version = bytes.get(4).copied().unwrap_or(0);
        if version != FRAME_VERSION {
            return Err(Error::BadFrameVersion(version));
        }
        let flags = bytes.get(5).copied().unwrap_or(0);
        let mut t = [0u8; 2];
        t.copy_from_slice(r(6, 2));
        let msg_type = MessageType(u16::from_be_bytes(t));
        let length = u32_at(8);
        let len = usize::try_from(length).unwrap_or(usize::MAX);
        if len < HEADER_LEN {
            return Err(Error::MsgSize(length));
        }
        if len > limit {
            return Err(Error::ExcessiveSize { length, limit });
        }
        let mut c = [0u8; 16];
        c.copy_from_slice(r(24, 16));
        Ok(Header {
            flags,
            msg_type,
            length,
            status: Status::new(Rc(u32_at(12)), Rsn(u32_at(16))),
            reserved: u32_at(20),
            correlator: Correlator(c),
        })
    }

    /// Parse the header at the start of `bytes` (which may be longer).
    pub fn parse_prefix(bytes: &[u8], limit: usize) -> Result<Header, Error> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Truncated { at: bytes.len() })?;
        Header::parse(h, limit)
    }

    /// True if the `RESPONSE` flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// The body length (`Length` − 40).
    pub fn body_len(&self) -> usize {
        usize::try_from(self.length)
            .unwrap_or(usize::MAX)
            .saturating_sub(HEADER_LEN)
    }

    /// Encode into 40 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let mut v = Vec::with_capacity(HEADER_LEN);
        v.extend_from_slice(&IDENT);
        v.push(FRAME_VERSION);
        v.push(self.flags);
        v.extend_from_slice(&self.msg_type.0.to_be_bytes());
        v.extend_from_slice(&self.length.to_be_bytes());
        v.extend_from_slice(&self.status.rc.0.to_be_bytes());
        v.extend_from_slice(&self.status.rsn.0.to_be_bytes());
        v.extend_from_slice(&self.reserved.to_be_bytes());
        v.extend_from_slice(&self.correlator.0);
        out.copy_from_slice(&v);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            flags: FLAG_RESPONSE,
            msg_type: MessageType::SIGN,
            length: 48,
            status: Status::new(Rc::EACCES, Rsn::CERT_NOT_AUTHORIZED),
            reserved: 0,
            correlator: Correlator::new(0x15, 0),
        }
    }

    #[test]
    fn header_round_trip_bytes() {
        let h = header();
        let b = h.encode();
        assert_eq!(&b[..4], b"GKNS");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 1);
        assert_eq!(&b[6..8], &[0x01, 0x01]);
        assert_eq!(&b[8..12], &[0, 0, 0, 48]);
        assert_eq!(&b[12..16], &[0, 0, 0, 13]);
        assert_eq!(&b[16..20], &[0, 0, 0, 15]);
        assert_eq!(Header::parse(&b, MAX_FRAME_LEN).unwrap(), h);
        assert_eq!(h.correlator.to_string(), "00000000000000150000000000000000");
    }

    #[test]
    fn framing_errors() {
        let mut b = header().encode();
        b[0] = b'X';
        assert_eq!(Header::parse(&b, MAX_FRAME_LEN), Err(Error::BadIdent));
        let mut b = header().encode();
        b[4] = 2;
        assert_eq!(
            Header::parse(&b, MAX_FRAME_LEN),
            Err(Error::BadFrameVersion(2))
        );
        let mut h = header();
        h.length = 39;
        assert_eq!(
            Header::parse(&h.encode(), MAX_FRAME_LEN),
            Err(Error::MsgSize(39))
        );
        h.length = 16 * 1024 + 1;
        assert!(matches!(
            Header::parse(&h.encode(), MAX_PREAUTH_FRAME_LEN),
            Err(Error::ExcessiveSize { .. })
        ));
        assert!(Header::parse(&h.encode(), MAX_FRAME_LEN).is_ok());
        h.length = u32::MAX;
        assert!(matches!(
            Header::parse(&h.encode(), MAX_FRAME_LEN),
            Err(Error::ExcessiveSize { .. })
        ));
        assert!(matches!(
            Header::parse_prefix(&[0; 10], MAX_FRAME_LEN),
            Err(Error::Truncated { at: 10 })
        ));
    }

    #[test]
    fn directions() {
        assert!(Role::Server.peer_may_request(MessageType::SIGN));
        assert!(!Role::Client.peer_may_request(MessageType::SIGN));
        assert!(Role::Client.peer_may_request(MessageType::MGMT_REQUEST));
        assert!(!Role::Server.peer_may_request(MessageType::MGMT_REQUEST));
        assert!(Role::Server.peer_may_request(MessageType::KEEPALIVE));
        assert!(!Role::Server.peer_may_request(MessageType(0x7777)));
        assert!(Role::Client.may_request(MessageType::CONNECT));
        assert!(!Role::Client.may_request(MessageType::TERMINATE));
        assert!(Role::Server.may_request(MessageType::KEEPALIVE));
    }
}
