//! Wire layer: raw buffer → typed netlink header → typed XFRM message, and back.
//!
//! The fixed structures and attributes come from `netlink-packet-xfrm`; this module adds what
//! that crate does not give us: bounds-checked framing (a truncated or garbled kernel message is
//! an error, never a panic), netlink control messages with extended-ack (`NLMSGERR_ATTR_*`)
//! parsing, GET-versus-DUMP distinction, the attributes `netlink-packet-xfrm` drops on some
//! messages (EXPIRE's mark and interface ID), and key scrubbing of every attribute list.
//!
//! Every message round-trips: `parse` followed by `emit` reproduces the kernel's bytes
//! (see `tests/wire_roundtrip.rs`).

mod xfrm;

pub use self::xfrm::*;

use crate::error::{Error, Result};

/// Netlink header length.
pub const NLMSG_HDRLEN: usize = 16;
/// `NLMSG_NOOP`.
pub const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR` (errors and acknowledgements).
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE` (end of a dump).
pub const NLMSG_DONE: u16 = 3;
/// `NLMSG_OVERRUN`.
pub const NLMSG_OVERRUN: u16 = 4;

/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_MULTI`.
pub const NLM_F_MULTI: u16 = 0x2;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP_INTR`: the dump was interrupted by a concurrent change.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_CAPPED` on an error message: the echoed request was cut to its header.
pub const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` on an error message: extended-ack attributes follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// Extended-ack attribute: error message string.
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// Extended-ack attribute: offset of the offending attribute in the request.
pub const NLMSGERR_ATTR_OFFS: u16 = 2;

/// Rounds up to the netlink 4-byte alignment.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink message header (`struct nlmsghdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NlHeader {
    /// Total message length including the header (not padded).
    pub len: u32,
    /// Message type.
    pub ty: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Sender port ID (0 = kernel).
    pub pid: u32,
}

impl NlHeader {
    /// Parses the first 16 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let h = buf.get(..NLMSG_HDRLEN).ok_or_else(|| {
            Error::decode(format!("netlink header needs 16 bytes, have {}", buf.len()))
        })?;
        Ok(NlHeader {
            len: u32_at(h, 0),
            ty: u16_at(h, 4),
            flags: u16_at(h, 6),
            seq: u32_at(h, 8),
            pid: u32_at(h, 12),
        })
    }

    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_ne_bytes());
        out.extend_from_slice(&self.ty.to_ne_bytes());
        out.extend_from_slice(&self.flags.to_ne_bytes());
        out.extend_from_slice(&self.seq.to_ne_bytes());
        out.extend_from_slice(&self.pid.to_ne_bytes());
    }
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_ne_bytes(a)
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(off..off + 2) {
        a.copy_from_slice(s);
    }
    u16::from_ne_bytes(a)
}

/// Iterates over the netlink messages in a received datagram.
#[derive(Debug)]
pub struct NlMessages<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> NlMessages<'a> {
    /// Iterates over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        NlMessages {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for NlMessages<'a> {
    type Item = Result<(NlHeader, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.pos..)?;
        if rest.len() < NLMSG_HDRLEN {
            // Trailing alignment padding is fine; anything else is garbage.
            if rest.iter().all(|b| *b == 0) {
                return None;
            }
            self.failed = true;
            return Some(Err(Error::decode(
                "trailing bytes after last netlink message",
            )));
        }
        let hdr = match NlHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let len = hdr.len as usize;
        let Some(payload) = (len >= NLMSG_HDRLEN)
            .then(|| rest.get(NLMSG_HDRLEN..len))
            .flatten()
        else {
            self.failed = true;
            return Some(Err(Error::decode(format!(
                "netlink message length {len} invalid with {} bytes left",
                rest.len()
            ))));
        };
        self.pos += align4(len);
        Some(Ok((hdr, payload)))
    }
}

/// Extended acknowledgement details (`NLMSGERR_ATTR_*`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtAck {
    /// `NLMSGERR_ATTR_MSG`.
    pub msg: Option<String>,
    /// `NLMSGERR_ATTR_OFFS`.
    pub offset: Option<u32>,
}

/// An `NLMSG_ERROR` message: an acknowledgement (`code == 0`) or an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    /// 0 for an ACK, else a negative errno.
    pub code: i32,
    /// The echoed request: its header only when capped, else the whole request.
    pub request: Vec<u8>,
    /// Raw extended-ack attributes (present when the header has `NLM_F_ACK_TLVS`).
    pub tlvs: Vec<u8>,
}

impl ErrorMsg {
    /// Parses an `NLMSG_ERROR` payload; `flags` are the message header's flags.
    pub fn parse(flags: u16, payload: &[u8]) -> Result<Self> {
        if payload.len() < 4 + NLMSG_HDRLEN {
            return Err(Error::decode(format!(
                "NLMSG_ERROR payload too short: {}",
                payload.len()
            )));
        }
        let code = u32_at(payload, 0) as i32;
        let echoed = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            (u32_at(payload, 4) as usize).max(NLMSG_HDRLEN)
        };
        let request = payload
            .get(4..4 + echoed)
            .ok_or_else(|| Error::decode("NLMSG_ERROR echoed request truncated"))?
            .to_vec();
        let tlvs = if flags & NLM_F_ACK_TLVS != 0 {
            payload
                .get(align4(4 + echoed)..)
                .unwrap_or_default()
                .to_vec()
        } else {
            Vec::new()
        };
        Ok(ErrorMsg {
            code,
            request,
            tlvs,
        })
    }

    /// Appends the payload to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.to_ne_bytes());
        out.extend_from_slice(&self.request);
        if !self.tlvs.is_empty() {
            pad4(out);
            out.extend_from_slice(&self.tlvs);
        }
    }

    /// Sequence number of the request this answers.
    pub fn request_seq(&self) -> u32 {
        u32_at(&self.request, 8)
    }

    /// The decoded extended-ack attributes.
    pub fn ext_ack(&self) -> ExtAck {
        parse_ext_ack(&self.tlvs)
    }
}

/// Decodes `NLMSGERR_ATTR_MSG` and `NLMSGERR_ATTR_OFFS` from a TLV area.
pub fn parse_ext_ack(tlvs: &[u8]) -> ExtAck {
    let mut ext = ExtAck::default();
    let mut pos = 0;
    while let Some(h) = tlvs.get(pos..pos + 4) {
        let len = usize::from(u16_at(h, 0));
        let kind = u16_at(h, 2) & 0x3fff;
        if len < 4 {
            break;
        }
        let Some(value) = tlvs.get(pos + 4..pos + len) else {
            break;
        };
        match kind {
            NLMSGERR_ATTR_MSG => {
                let text = value.split(|b| *b == 0).next().unwrap_or_default();
                ext.msg = Some(String::from_utf8_lossy(text).into_owned());
            }
            NLMSGERR_ATTR_OFFS if value.len() >= 4 => ext.offset = Some(u32_at(value, 0)),
            _ => {}
        }
        pos += align4(len);
    }
    ext
}

/// An `NLMSG_DONE` message: the end of a dump, with the dump's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneMsg {
    /// 0, or a negative errno if the dump failed.
    pub code: i32,
    /// Extended-ack attributes, if any.
    pub tlvs: Vec<u8>,
}

impl DoneMsg {
    /// Parses an `NLMSG_DONE` payload (which may be empty from old kernels).
    pub fn parse(payload: &[u8]) -> Self {
        DoneMsg {
            code: if payload.len() >= 4 {
                u32_at(payload, 0) as i32
            } else {
                0
            },
            tlvs: payload.get(4..).unwrap_or_default().to_vec(),
        }
    }

    /// Appends the payload to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.to_ne_bytes());
        out.extend_from_slice(&self.tlvs);
    }
}

/// Any message on an XFRM netlink socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// `NLMSG_NOOP`.
    Noop,
    /// `NLMSG_ERROR`.
    Error(ErrorMsg),
    /// `NLMSG_DONE`.
    Done(DoneMsg),
    /// An XFRM message.
    Xfrm(Box<XfrmMsg>),
    /// Another control message type (`NLMSG_OVERRUN`, …), payload kept.
    Control {
        /// Message type.
        ty: u16,
        /// Payload.
        payload: Vec<u8>,
    },
}

impl Message {
    /// Parses one message given its header and payload.
    pub fn parse(hdr: &NlHeader, payload: &[u8]) -> Result<Self> {
        Ok(match hdr.ty {
            NLMSG_NOOP => Message::Noop,
            NLMSG_ERROR => Message::Error(ErrorMsg::parse(hdr.flags, payload)?),
            NLMSG_DONE => Message::Done(DoneMsg::parse(payload)),
            t if t < 0x10 => Message::Control {
                ty: t,
                payload: payload.to_vec(),
            },
            _ => Message::Xfrm(Box::new(XfrmMsg::parse(hdr, payload)?)),
        })
    }

    /// Appends the payload (not the header) to `out`.
    pub fn emit_payload(&self, out: &mut Vec<u8>) {
        match self {
            Message::Noop => {}
            Message::Error(e) => e.emit(out),
            Message::Done(d) => d.emit(out),
            Message::Xfrm(x) => x.emit(out),
            Message::Control { payload, .. } => out.extend_from_slice(payload),
        }
    }
}

/// Appends a complete netlink message (header, payload, alignment padding) to `out`;
/// `hdr.len` is computed. Returns the offset where the message starts.
pub fn emit_message(out: &mut Vec<u8>, mut hdr: NlHeader, msg: &Message) -> usize {
    let start = out.len();
    hdr.len = 0;
    hdr.emit(out);
    msg.emit_payload(out);
    let len = out.len() - start;
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&len32.to_ne_bytes());
    }
    pad4(out);
    start
}

pub(crate) fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        // header claims 64 bytes, only 20 present
        let mut b = Vec::new();
        NlHeader {
            len: 64,
            ty: 0x10,
            ..Default::default()
        }
        .emit(&mut b);
        b.extend_from_slice(&[0; 4]);
        let r: Vec<_> = NlMessages::new(&b).collect();
        assert_eq!(r.len(), 1);
        assert!(r.first().is_some_and(|x| x.is_err()));
        // length smaller than a header
        let mut b = Vec::new();
        NlHeader {
            len: 3,
            ..Default::default()
        }
        .emit(&mut b);
        assert!(NlMessages::new(&b).next().is_some_and(|x| x.is_err()));
    }

    #[test]
    fn every_xfrm_type_rejects_short_payloads() {
        for ty in 0x10..=0x28u16 {
            for len in [0usize, 1, 3, 23, 55] {
                let hdr = NlHeader {
                    len: (NLMSG_HDRLEN + len) as u32,
                    ty,
                    ..Default::default()
                };
                // must not panic; short fixed parts are errors, attribute-only messages may parse
                let _ = Message::parse(&hdr, &vec![0xa5; len]);
            }
        }
    }

    #[test]
    fn ext_ack_parsed() {
        let mut tlvs = Vec::new();
        let msg = b"Requested type not found\0";
        tlvs.extend_from_slice(&((4 + msg.len()) as u16).to_ne_bytes());
        tlvs.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        tlvs.extend_from_slice(msg);
        pad4(&mut tlvs);
        tlvs.extend_from_slice(&8u16.to_ne_bytes());
        tlvs.extend_from_slice(&NLMSGERR_ATTR_OFFS.to_ne_bytes());
        tlvs.extend_from_slice(&36u32.to_ne_bytes());
        let e = parse_ext_ack(&tlvs);
        assert_eq!(e.msg.as_deref(), Some("Requested type not found"));
        assert_eq!(e.offset, Some(36));
    }
}
