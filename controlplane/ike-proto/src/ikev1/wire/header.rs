//! The ISAKMP header (RFC 2408 §3.1).

use super::registry::{ExchangeType, PayloadType};
use crate::wire::{Cursor, DecodeError};

/// Length of the fixed ISAKMP header.
pub const HEADER_LEN: usize = 28;

/// The version octet of IKEv1 messages: major 1, minor 0.
pub const VERSION_1_0: u8 = 0x10;

/// Header flags (RFC 2408 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Encryption: everything after the header is encrypted.
    pub const ENCRYPTION: u8 = 0x01;
    /// Commit (RFC 2408 §3.1; gatekey never sets it and ignores it).
    pub const COMMIT: u8 = 0x02;
    /// Authentication only.
    pub const AUTH_ONLY: u8 = 0x04;

    /// Whether the E bit is set.
    pub fn encrypted(self) -> bool {
        self.0 & Self::ENCRYPTION != 0
    }
}

/// The ISAKMP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Initiator cookie (the IKE SA's initiator SPI).
    pub cookie_i: u64,
    /// Responder cookie (0 in the first message).
    pub cookie_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Major version (upper four bits) and minor version; 0x10 for IKEv1.
    pub version: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID: 0 in phase 1, random and non-zero in quick mode and informational
    /// exchanges.
    pub message_id: u32,
    /// Length of the whole message.
    pub length: u32,
}

impl Header {
    /// Decodes the header from the start of `buf` (the whole datagram without a non-ESP
    /// marker) and checks that the length field equals `buf.len()`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(buf, 0, "ISAKMP header");
        let h = Self {
            cookie_i: c.u64("initiator cookie")?,
            cookie_r: c.u64("responder cookie")?,
            next_payload: PayloadType(c.u8("next payload")?),
            version: c.u8("version")?,
            exchange: ExchangeType(c.u8("exchange type")?),
            flags: Flags(c.u8("flags")?),
            message_id: c.u32("message ID")?,
            length: c.u32("length")?,
        };
        if h.length as usize != buf.len() {
            return Err(DecodeError::new(
                24,
                "ISAKMP header",
                format!(
                    "length field {} but datagram has {} bytes",
                    h.length,
                    buf.len()
                ),
            ));
        }
        if h.major_version() != 1 {
            return Err(DecodeError::new(
                17,
                "ISAKMP header",
                format!("major version {} (IKEv1 is 1)", h.major_version()),
            ));
        }
        Ok(h)
    }

    /// Major version (upper four bits of the version field).
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.cookie_i.to_be_bytes());
        out.extend_from_slice(&self.cookie_r.to_be_bytes());
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    /// The encoded header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut v = Vec::with_capacity(HEADER_LEN);
        self.encode(&mut v);
        let mut a = [0u8; HEADER_LEN];
        a.copy_from_slice(&v);
        a
    }
}
