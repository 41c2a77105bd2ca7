//! Wire formats: the IKEv2 header, payloads and the message codec (RFC 7296 §3, RFC 7383).
//!
//! Decoding is strict: every length is checked against its container, counts against the
//! bytes present, and the chain must end exactly at the end of the message. Errors say
//! where ([`DecodeError::offset`]) and in what ([`DecodeError::context`]). Registry values
//! are open newtypes ([`registry`]) so unknown values survive a round trip; unknown
//! payloads are kept with their critical bit ([`Payload::Unknown`]).
//!
//! Encrypted payloads (SK, SKF) stay opaque here; `ikev2::sk` decrypts them and decodes the
//! inner chain with [`decode_payloads`].

use std::fmt;

mod header;
mod payload;
pub mod registry;

pub use header::{Flags, HEADER_LEN, Header};
pub use payload::{
    Auth, Cert, CfgAttribute, Cp, Delete, Encrypted, EncryptedFragment, IdPayload, Ke, Message,
    Notify, Payload, Proposal, Sa, TrafficSelector, Transform, TransformAttr, Ts, Unknown,
    decode_payloads, encode_payloads,
};
pub use registry::*;

/// Why and where a message failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the datagram (or decrypted SK body) where the problem was found.
    pub offset: usize,
    /// Which structure was being read (e.g. `"SA payload / proposal 1 / transform 2"`).
    pub context: String,
    /// What was wrong.
    pub reason: String,
    /// For an unknown payload with the critical bit set: its type (the responder answers
    /// UNSUPPORTED_CRITICAL_PAYLOAD with it).
    pub critical_payload: Option<PayloadType>,
}

impl DecodeError {
    pub(crate) fn new(
        offset: usize,
        context: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            offset,
            context: context.into(),
            reason: reason.into(),
            critical_payload: None,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.context, self.offset, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

/// A bounds-checked reader over a byte slice that knows its absolute offset.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    ctx: &'a str,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize, ctx: &'a str) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            ctx,
        }
    }

    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError::new(self.offset(), self.ctx, reason)
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.err(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.remaining()
            ))),
        }
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let r = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        r
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}
