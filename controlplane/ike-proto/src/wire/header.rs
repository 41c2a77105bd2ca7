//! The IKE header (RFC 7296 §3.1).

use super::{Cursor, DecodeError, ExchangeType, PayloadType};

/// Length of the fixed IKE header.
pub const HEADER_LEN: usize = 28;

/// Header flags (RFC 7296 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Initiator: set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// Version: the sender can speak a higher major version.
    pub const VERSION: u8 = 0x10;
    /// Response.
    pub const RESPONSE: u8 = 0x20;

    /// Whether the I bit is set.
    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }

    /// Whether the R bit is set.
    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }

    /// Builds flags from the two meaningful bits.
    pub fn new(initiator: bool, response: bool) -> Self {
        let mut f = 0;
        if initiator {
            f |= Self::INITIATOR;
        }
        if response {
            f |= Self::RESPONSE;
        }
        Self(f)
    }
}

/// The IKE header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub spi_i: u64,
    /// IKE SA Responder's SPI (0 in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Major version (4 bits) and minor version (4 bits); 0x20 for IKEv2.
    pub version: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags.
    pub flags: Flags,
    /// Message ID.
    pub message_id: u32,
    /// Length of the whole message.
    pub length: u32,
}

impl Header {
    /// Decodes the header from the start of `buf` (the whole datagram, without a non-ESP
    /// marker). Checks that the length field equals `buf.len()`.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(buf, 0, "IKE header");
        let spi_i = c.u64("initiator SPI")?;
        let spi_r = c.u64("responder SPI")?;
        let next_payload = PayloadType(c.u8("next payload")?);
        let version = c.u8("version")?;
        let exchange = ExchangeType(c.u8("exchange type")?);
        let flags = Flags(c.u8("flags")?);
        let message_id = c.u32("message ID")?;
        let length = c.u32("length")?;
        if length as usize != buf.len() {
            return Err(DecodeError::new(
                24,
                "IKE header",
                format!("length field {length} but datagram has {} bytes", buf.len()),
            ));
        }
        Ok(Self {
            spi_i,
            spi_r,
            next_payload,
            version,
            exchange,
            flags,
            message_id,
            length,
        })
    }

    /// Major version (upper four bits of the version field).
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }

    /// Reads just the SPIs, exchange, flags and message ID for demultiplexing, without
    /// checking the length field.
    pub fn peek(buf: &[u8]) -> Option<Self> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let mut c = Cursor::new(buf, 0, "IKE header");
        Some(Self {
            spi_i: c.u64("").ok()?,
            spi_r: c.u64("").ok()?,
            next_payload: PayloadType(c.u8("").ok()?),
            version: c.u8("").ok()?,
            exchange: ExchangeType(c.u8("").ok()?),
            flags: Flags(c.u8("").ok()?),
            message_id: c.u32("").ok()?,
            length: c.u32("").ok()?,
        })
    }
}
