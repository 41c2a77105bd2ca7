//! ISAKMP payloads (RFC 2408 §3.2–§3.16, RFC 2407 §4.6, RFC 3947 §3.2/§5.2) and the payload
//! chain codec.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::header::{Flags, HEADER_LEN, Header};
use super::registry::*;
use crate::identity::IdType;
use crate::wire::{CertEncoding, Cursor, DecodeError, TransformAttr};

/// Most payloads accepted in one message.
pub const MAX_PAYLOADS: usize = 64;
/// Most proposals accepted in one SA payload.
pub const MAX_PROPOSALS: usize = 64;
/// Most bytes of padding accepted after the last payload of a decrypted message.
pub const MAX_PADDING: usize = 255;

/// A data attribute (RFC 2408 §3.3): the IKEv2 transform attribute has the same format.
pub type Attribute = TransformAttr;

/// The numeric value of an attribute: a TV value, or a TLV value of at most 8 bytes read
/// big-endian (Life Duration may be sent either way, RFC 2407 §4.5).
pub fn attr_value(a: &Attribute) -> Option<u64> {
    match a {
        TransformAttr::Tv(_, v) => Some(u64::from(*v)),
        TransformAttr::Tlv(_, v) if !v.is_empty() && v.len() <= 8 => {
            Some(v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
        }
        TransformAttr::Tlv(..) => None,
    }
}

/// The attribute type of `a`.
pub fn attr_type(a: &Attribute) -> u16 {
    match a {
        TransformAttr::Tv(t, _) | TransformAttr::Tlv(t, _) => *t,
    }
}

/// An attribute carrying `value`: TV when it fits 16 bits, else a 4- or 8-byte TLV.
pub fn attr_basic_or_long(ty: u16, value: u64) -> Attribute {
    if let Ok(v) = u16::try_from(value) {
        TransformAttr::Tv(ty, v)
    } else if let Ok(v) = u32::try_from(value) {
        TransformAttr::Tlv(ty, v.to_be_bytes().to_vec())
    } else {
        TransformAttr::Tlv(ty, value.to_be_bytes().to_vec())
    }
}

/// A Transform payload (RFC 2408 §3.6).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform number.
    pub number: u8,
    /// Transform ID (KEY_IKE for ISAKMP; [`EspTransformId`] / [`AhTransformId`] in phase 2).
    pub id: u8,
    /// SA attributes in wire order.
    pub attrs: Vec<Attribute>,
}

impl Transform {
    /// The first attribute of type `ty`.
    pub fn attr(&self, ty: u16) -> Option<&Attribute> {
        self.attrs.iter().find(|a| attr_type(a) == ty)
    }

    /// The numeric value of the first attribute of type `ty`.
    pub fn value(&self, ty: u16) -> Option<u64> {
        self.attr(ty).and_then(attr_value)
    }
}

/// A Proposal payload (RFC 2408 §3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal number (equal numbers form one logical AND proposal).
    pub number: u8,
    /// Protocol.
    pub protocol: ProtocolId,
    /// SPI (empty or 16 bytes for ISAKMP, 4 bytes for AH/ESP).
    pub spi: Vec<u8>,
    /// Transforms, alternatives in preference order.
    pub transforms: Vec<Transform>,
}

/// A Security Association payload in the IPsec DOI (RFC 2408 §3.4, RFC 2407 §4.6.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sa {
    /// Domain of interpretation ([`DOI_IPSEC`]).
    pub doi: u32,
    /// Situation bitmap ([`SIT_IDENTITY_ONLY`]).
    pub situation: u32,
    /// Proposals.
    pub proposals: Vec<Proposal>,
}

/// An Identification payload in the IPsec DOI (RFC 2407 §4.6.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdPayload {
    /// ID type (phase 1: who; quick mode: which traffic).
    pub id_type: IdType,
    /// IP protocol (0: any).
    pub protocol: u8,
    /// Port (0: any).
    pub port: u16,
    /// Identification data.
    pub data: Vec<u8>,
}

impl IdPayload {
    /// The payload body (without the generic header): what HASH_I/HASH_R cover.
    pub fn body(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + self.data.len());
        v.push(self.id_type.0);
        v.push(self.protocol);
        v.extend_from_slice(&self.port.to_be_bytes());
        v.extend_from_slice(&self.data);
        v
    }
}

/// A Certificate or Certificate Request payload (RFC 2408 §3.9, §3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertPayload {
    /// Certificate encoding (X509_SIGNATURE for X.509 certificates).
    pub encoding: CertEncoding,
    /// Certificate (DER), or for a request the acceptable CA's DER distinguished name
    /// (may be empty).
    pub data: Vec<u8>,
}

/// A Notification payload (RFC 2408 §3.14).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notify {
    /// Domain of interpretation.
    pub doi: u32,
    /// Protocol the notify is about.
    pub protocol: ProtocolId,
    /// SPI (16 bytes, the cookies, for ISAKMP; 4 bytes for AH/ESP; may be empty).
    pub spi: Vec<u8>,
    /// Notify message type.
    pub ty: NotifyType,
    /// Notification data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify in the IPsec DOI.
    pub fn new(protocol: ProtocolId, spi: Vec<u8>, ty: NotifyType, data: Vec<u8>) -> Self {
        Self {
            doi: DOI_IPSEC,
            protocol,
            spi,
            ty,
            data,
        }
    }
}

/// A Delete payload (RFC 2408 §3.15).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delete {
    /// Domain of interpretation.
    pub doi: u32,
    /// Protocol of the SAs.
    pub protocol: ProtocolId,
    /// Size of each SPI (16 for ISAKMP, 4 for AH/ESP).
    pub spi_size: u8,
    /// The SPIs (for AH/ESP: the sender's inbound SPIs).
    pub spis: Vec<Vec<u8>>,
}

/// A NAT Original Address payload (RFC 3947 §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NatOa {
    /// The original address.
    pub addr: IpAddr,
}

/// A payload type this crate does not model, kept as its body.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unknown {
    /// Payload type.
    pub ty: PayloadType,
    /// Body after the generic header.
    pub body: Vec<u8>,
}

/// A payload.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// SA.
    Sa(Sa),
    /// KE: the Diffie-Hellman public value.
    Ke(Vec<u8>),
    /// ID.
    Id(IdPayload),
    /// CERT.
    Cert(CertPayload),
    /// CR.
    CertReq(CertPayload),
    /// HASH.
    Hash(Vec<u8>),
    /// SIG.
    Sig(Vec<u8>),
    /// NONCE.
    Nonce(Vec<u8>),
    /// N.
    Notify(Notify),
    /// D.
    Delete(Delete),
    /// VID.
    VendorId(Vec<u8>),
    /// NAT-D (RFC 3947).
    NatD(Vec<u8>),
    /// NAT-OA (RFC 3947).
    NatOa(NatOa),
    /// Anything else (including the draft NAT-T payload numbers and mode config).
    Unknown(Unknown),
}

impl Payload {
    /// The payload type.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Self::Sa(_) => PayloadType::SA,
            Self::Ke(_) => PayloadType::KE,
            Self::Id(_) => PayloadType::ID,
            Self::Cert(_) => PayloadType::CERT,
            Self::CertReq(_) => PayloadType::CR,
            Self::Hash(_) => PayloadType::HASH,
            Self::Sig(_) => PayloadType::SIG,
            Self::Nonce(_) => PayloadType::NONCE,
            Self::Notify(_) => PayloadType::N,
            Self::Delete(_) => PayloadType::D,
            Self::VendorId(_) => PayloadType::VID,
            Self::NatD(_) => PayloadType::NAT_D,
            Self::NatOa(_) => PayloadType::NAT_OA,
            Self::Unknown(u) => u.ty,
        }
    }

    /// The payload body without its generic header (SAi_b, IDii_b, Ni_b … in RFC 2409).
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_body(&mut out);
        out
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sa(sa) => encode_sa(sa, out),
            Self::Ke(d)
            | Self::Hash(d)
            | Self::Sig(d)
            | Self::Nonce(d)
            | Self::VendorId(d)
            | Self::NatD(d) => out.extend_from_slice(d),
            Self::Id(id) => out.extend_from_slice(&id.body()),
            Self::Cert(c) | Self::CertReq(c) => {
                out.push(c.encoding.0);
                out.extend_from_slice(&c.data);
            }
            Self::Notify(n) => {
                out.extend_from_slice(&n.doi.to_be_bytes());
                out.push(n.protocol.0);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.ty.0.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Self::Delete(d) => {
                out.extend_from_slice(&d.doi.to_be_bytes());
                out.push(d.protocol.0);
                out.push(d.spi_size);
                out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
                for s in &d.spis {
                    out.extend_from_slice(s);
                }
            }
            Self::NatOa(oa) => match oa.addr {
                IpAddr::V4(a) => {
                    out.extend_from_slice(&[IdType::IPV4_ADDR.0, 0, 0, 0]);
                    out.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    out.extend_from_slice(&[IdType::IPV6_ADDR.0, 0, 0, 0]);
                    out.extend_from_slice(&a.octets());
                }
            },
            Self::Unknown(u) => out.extend_from_slice(&u.body),
        }
    }
}

fn encode_sa(sa: &Sa, out: &mut Vec<u8>) {
    out.extend_from_slice(&sa.doi.to_be_bytes());
    out.extend_from_slice(&sa.situation.to_be_bytes());
    let n = sa.proposals.len();
    for (i, p) in sa.proposals.iter().enumerate() {
        let start = out.len();
        out.push(if i + 1 == n {
            PayloadType::NONE.0
        } else {
            PayloadType::PROPOSAL.0
        });
        out.extend_from_slice(&[0, 0, 0]);
        out.push(p.number);
        out.push(p.protocol.0);
        out.push(p.spi.len() as u8);
        out.push(p.transforms.len() as u8);
        out.extend_from_slice(&p.spi);
        let nt = p.transforms.len();
        for (j, t) in p.transforms.iter().enumerate() {
            let ts = out.len();
            out.push(if j + 1 == nt {
                PayloadType::NONE.0
            } else {
                PayloadType::TRANSFORM.0
            });
            out.extend_from_slice(&[0, 0, 0]);
            out.push(t.number);
            out.push(t.id);
            out.extend_from_slice(&[0, 0]);
            encode_attrs(&t.attrs, out);
            set_len(out, ts);
        }
        set_len(out, start);
    }
}

/// Appends data attributes (RFC 2408 §3.3).
pub fn encode_attrs(attrs: &[Attribute], out: &mut Vec<u8>) {
    for a in attrs {
        match a {
            TransformAttr::Tv(ty, v) => {
                out.extend_from_slice(&(0x8000 | ty).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            TransformAttr::Tlv(ty, v) => {
                out.extend_from_slice(&(ty & 0x7fff).to_be_bytes());
                out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
}

/// Writes the 16-bit length of a structure that starts at `start` (length at +2).
fn set_len(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16;
    if let Some(slot) = out.get_mut(start + 2..start + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// Encodes a payload chain; returns the type of the first payload and the bytes.
pub fn encode_payloads(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(PayloadType::NONE, Payload::payload_type);
        let start = out.len();
        out.push(next.0);
        out.extend_from_slice(&[0, 0, 0]);
        p.encode_body(&mut out);
        set_len(&mut out, start);
    }
    let first = payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type);
    (first, out)
}

/// What may follow the last payload of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trailing {
    /// Nothing: the chain fills the buffer (plaintext messages).
    Strict,
    /// Up to [`MAX_PADDING`] bytes of cipher padding (decrypted messages, RFC 2408 §3.1:
    /// the receiver finds the end from the payload lengths).
    Padding,
}

/// A decoded payload with where its encoding sits in the buffer, so hashes over "the rest
/// of the message" (quick mode HASH(1), HASH(2)) can be checked on the bytes received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The payload.
    pub payload: Payload,
    /// Offset of its generic header in the buffer given to [`decode_payloads`].
    pub start: usize,
    /// Offset just past its body.
    pub end: usize,
}

/// Decodes a payload chain starting with type `first` from `buf`. `base` is the absolute
/// offset of `buf` for error reports. Returns the payloads and the length the chain
/// occupies (without padding).
pub fn decode_payloads(
    first: PayloadType,
    buf: &[u8],
    base: usize,
    trailing: Trailing,
) -> Result<(Vec<Located>, usize), DecodeError> {
    let mut c = Cursor::new(buf, base, "payload chain");
    let mut next = first;
    let mut out = Vec::new();
    while next != PayloadType::NONE {
        if out.len() >= MAX_PAYLOADS {
            return Err(c.err(format!("more than {MAX_PAYLOADS} payloads")));
        }
        let index = out.len() + 1;
        let ty = next;
        let at = c.offset();
        let start = at - base;
        let ctx = format!("payload {index} ({ty})");
        let hdr = c
            .take(4, "generic payload header")
            .map_err(|e| DecodeError {
                context: ctx.clone(),
                ..e
            })?;
        let mut hc = Cursor::new(hdr, at, &ctx);
        let this_next = PayloadType(hc.u8("next payload")?);
        hc.u8("reserved")?;
        let len = usize::from(hc.u16("payload length")?);
        if len < 4 {
            return Err(DecodeError::new(
                at + 2,
                ctx,
                format!("payload length {len} < 4"),
            ));
        }
        let body = c.take(len - 4, "payload body").map_err(|_| {
            DecodeError::new(
                at + 2,
                ctx.clone(),
                format!(
                    "payload length {len} exceeds the {} bytes left",
                    c.remaining() + 4
                ),
            )
        })?;
        let payload = decode_body(ty, body, at + 4, &ctx)?;
        out.push(Located {
            payload,
            start,
            end: start + len,
        });
        next = this_next;
    }
    let used = buf.len() - c.remaining();
    match trailing {
        Trailing::Strict if c.remaining() != 0 => {
            Err(c.err(format!("{} bytes after the last payload", c.remaining())))
        }
        Trailing::Padding if c.remaining() > MAX_PADDING => Err(c.err(format!(
            "{} bytes after the last payload exceed any padding",
            c.remaining()
        ))),
        _ => Ok((out, used)),
    }
}

fn decode_body(
    ty: PayloadType,
    body: &[u8],
    base: usize,
    ctx: &str,
) -> Result<Payload, DecodeError> {
    let mut c = Cursor::new(body, base, ctx);
    let nonempty = |v: &[u8], what: &str| -> Result<Vec<u8>, DecodeError> {
        if v.is_empty() {
            Err(DecodeError::new(base, ctx, format!("empty {what}")))
        } else {
            Ok(v.to_vec())
        }
    };
    Ok(match ty {
        PayloadType::SA => Payload::Sa(decode_sa(body, base, ctx)?),
        PayloadType::KE => Payload::Ke(nonempty(body, "key exchange data")?),
        PayloadType::ID => {
            let id_type = IdType(c.u8("ID type")?);
            let protocol = c.u8("protocol ID")?;
            let port = c.u16("port")?;
            let data = nonempty(c.rest(), "identification data")?;
            Payload::Id(IdPayload {
                id_type,
                protocol,
                port,
                data,
            })
        }
        PayloadType::CERT => {
            let encoding = CertEncoding(c.u8("certificate encoding")?);
            let data = nonempty(c.rest(), "certificate data")?;
            Payload::Cert(CertPayload { encoding, data })
        }
        PayloadType::CR => {
            let encoding = CertEncoding(c.u8("certificate type")?);
            Payload::CertReq(CertPayload {
                encoding,
                data: c.rest().to_vec(),
            })
        }
        PayloadType::HASH => Payload::Hash(nonempty(body, "hash data")?),
        PayloadType::SIG => Payload::Sig(nonempty(body, "signature data")?),
        PayloadType::NONCE => {
            // RFC 2409 §5: between 8 and 256 bytes inclusive.
            if !(8..=256).contains(&body.len()) {
                return Err(DecodeError::new(
                    base,
                    ctx,
                    format!("nonce of {} bytes (must be 8..=256)", body.len()),
                ));
            }
            Payload::Nonce(body.to_vec())
        }
        PayloadType::N => {
            let doi = c.u32("DOI")?;
            let protocol = ProtocolId(c.u8("protocol ID")?);
            let spi_size = c.u8("SPI size")?;
            let nty = NotifyType(c.u16("notify message type")?);
            let spi = c.take(usize::from(spi_size), "SPI")?.to_vec();
            Payload::Notify(Notify {
                doi,
                protocol,
                spi,
                ty: nty,
                data: c.rest().to_vec(),
            })
        }
        PayloadType::D => {
            let doi = c.u32("DOI")?;
            let protocol = ProtocolId(c.u8("protocol ID")?);
            let spi_size = c.u8("SPI size")?;
            let n = c.u16("number of SPIs")?;
            let need = usize::from(n) * usize::from(spi_size);
            if spi_size == 0 || n == 0 {
                return Err(c.err("a delete must carry at least one non-empty SPI"));
            }
            if c.remaining() != need {
                return Err(c.err(format!(
                    "{n} SPIs of {spi_size} bytes need {need} bytes, {} present",
                    c.remaining()
                )));
            }
            let mut spis = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                spis.push(c.take(usize::from(spi_size), "SPI")?.to_vec());
            }
            Payload::Delete(Delete {
                doi,
                protocol,
                spi_size,
                spis,
            })
        }
        PayloadType::VID => Payload::VendorId(nonempty(body, "vendor ID")?),
        PayloadType::NAT_D => Payload::NatD(nonempty(body, "NAT-D hash")?),
        PayloadType::NAT_OA => {
            let id_type = IdType(c.u8("ID type")?);
            let reserved = c.take(3, "reserved")?;
            if reserved.iter().any(|b| *b != 0) {
                return Err(c.err("reserved bytes not zero"));
            }
            let addr = match id_type {
                IdType::IPV4_ADDR => {
                    let b: [u8; 4] = c
                        .rest()
                        .try_into()
                        .map_err(|_| c.err("ID_IPV4_ADDR is not 4 bytes"))?;
                    IpAddr::V4(Ipv4Addr::from(b))
                }
                IdType::IPV6_ADDR => {
                    let b: [u8; 16] = c
                        .rest()
                        .try_into()
                        .map_err(|_| c.err("ID_IPV6_ADDR is not 16 bytes"))?;
                    IpAddr::V6(Ipv6Addr::from(b))
                }
                t => return Err(c.err(format!("NAT-OA with ID type {}", t.0))),
            };
            Payload::NatOa(NatOa { addr })
        }
        _ => Payload::Unknown(Unknown {
            ty,
            body: body.to_vec(),
        }),
    })
}

fn decode_sa(body: &[u8], base: usize, ctx: &str) -> Result<Sa, DecodeError> {
    let mut c = Cursor::new(body, base, ctx);
    let doi = c.u32("DOI")?;
    if doi != DOI_IPSEC {
        return Err(c.err(format!("DOI {doi} (only the IPsec DOI, 1, is supported)")));
    }
    let situation = c.u32("situation")?;
    if situation != SIT_IDENTITY_ONLY {
        return Err(c.err(format!(
            "situation {situation:#x} (only SIT_IDENTITY_ONLY is supported)"
        )));
    }
    let mut proposals = Vec::new();
    let mut more = true;
    while more {
        if proposals.len() >= MAX_PROPOSALS {
            return Err(c.err(format!("more than {MAX_PROPOSALS} proposals")));
        }
        let pctx = format!("{ctx} / proposal {}", proposals.len() + 1);
        let at = c.offset();
        let hdr = c.take(4, "proposal header").map_err(|e| DecodeError {
            context: pctx.clone(),
            ..e
        })?;
        let mut hc = Cursor::new(hdr, at, &pctx);
        let next = hc.u8("next payload")?;
        hc.u8("reserved")?;
        let len = usize::from(hc.u16("proposal length")?);
        more = match PayloadType(next) {
            PayloadType::PROPOSAL => true,
            PayloadType::NONE => false,
            other => {
                return Err(DecodeError::new(
                    at,
                    pctx,
                    format!("next payload {other} inside an SA (must be PROPOSAL or NONE)"),
                ));
            }
        };
        if len < 8 {
            return Err(DecodeError::new(
                at + 2,
                pctx,
                format!("proposal length {len} < 8"),
            ));
        }
        let pbody = c.take(len - 4, "proposal").map_err(|_| {
            DecodeError::new(
                at + 2,
                pctx.clone(),
                format!("proposal length {len} exceeds the SA"),
            )
        })?;
        proposals.push(decode_proposal(pbody, at + 4, &pctx)?);
    }
    if c.remaining() != 0 {
        return Err(c.err(format!("{} bytes after the last proposal", c.remaining())));
    }
    Ok(Sa {
        doi,
        situation,
        proposals,
    })
}

fn decode_proposal(body: &[u8], base: usize, ctx: &str) -> Result<Proposal, DecodeError> {
    let mut c = Cursor::new(body, base, ctx);
    let number = c.u8("proposal number")?;
    let protocol = ProtocolId(c.u8("protocol ID")?);
    let spi_size = c.u8("SPI size")?;
    let count = c.u8("number of transforms")?;
    let spi = c.take(usize::from(spi_size), "SPI")?.to_vec();
    if count == 0 {
        return Err(c.err("proposal without transforms"));
    }
    let mut transforms = Vec::with_capacity(usize::from(count));
    for i in 0..count {
        let tctx = format!("{ctx} / transform {}", i + 1);
        let at = c.offset();
        let hdr = c.take(4, "transform header").map_err(|e| DecodeError {
            context: tctx.clone(),
            ..e
        })?;
        let mut hc = Cursor::new(hdr, at, &tctx);
        let next = PayloadType(hc.u8("next payload")?);
        hc.u8("reserved")?;
        let len = usize::from(hc.u16("transform length")?);
        let last = i + 1 == count;
        let want = if last {
            PayloadType::NONE
        } else {
            PayloadType::TRANSFORM
        };
        if next != want {
            return Err(DecodeError::new(
                at,
                tctx,
                format!(
                    "next payload {next} (expected {want}: the proposal announces {count} transforms)"
                ),
            ));
        }
        if len < 8 {
            return Err(DecodeError::new(
                at + 2,
                tctx,
                format!("transform length {len} < 8"),
            ));
        }
        let tbody = c.take(len - 4, "transform").map_err(|_| {
            DecodeError::new(
                at + 2,
                tctx.clone(),
                format!("transform length {len} exceeds the proposal"),
            )
        })?;
        let mut tc = Cursor::new(tbody, at + 4, &tctx);
        let tnum = tc.u8("transform number")?;
        let id = tc.u8("transform ID")?;
        tc.take(2, "reserved")?;
        let attrs = decode_attrs(tc.rest(), at + 8, &tctx)?;
        transforms.push(Transform {
            number: tnum,
            id,
            attrs,
        });
    }
    if c.remaining() != 0 {
        return Err(c.err(format!("{} bytes after the last transform", c.remaining())));
    }
    Ok(Proposal {
        number,
        protocol,
        spi,
        transforms,
    })
}

/// Decodes data attributes (RFC 2408 §3.3) filling `buf`.
pub fn decode_attrs(buf: &[u8], base: usize, ctx: &str) -> Result<Vec<Attribute>, DecodeError> {
    let mut c = Cursor::new(buf, base, ctx);
    let mut attrs = Vec::new();
    while c.remaining() > 0 {
        let t = c.u16("attribute type")?;
        if t & 0x8000 != 0 {
            attrs.push(TransformAttr::Tv(t & 0x7fff, c.u16("attribute value")?));
        } else {
            let len = c.u16("attribute length")?;
            let v = c.take(usize::from(len), "attribute value")?;
            attrs.push(TransformAttr::Tlv(t, v.to_vec()));
        }
    }
    Ok(attrs)
}

/// A plaintext ISAKMP message: the header and its payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Header.
    pub header: Header,
    /// Payloads.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Decodes an unencrypted message strictly (the header's E flag must be clear).
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let header = Header::decode(buf)?;
        if header.flags.encrypted() {
            return Err(DecodeError::new(
                19,
                "ISAKMP header",
                "message is encrypted (decrypt its body with the IKE SA's keys first)",
            ));
        }
        let body = buf.get(HEADER_LEN..).unwrap_or(&[]);
        let (payloads, _) =
            decode_payloads(header.next_payload, body, HEADER_LEN, Trailing::Strict)?;
        Ok(Self {
            header,
            payloads: payloads.into_iter().map(|l| l.payload).collect(),
        })
    }

    /// Encodes the message unencrypted: sets the header's next payload and length and
    /// clears the E flag.
    pub fn encode(&self) -> Vec<u8> {
        let (first, body) = encode_payloads(&self.payloads);
        let mut h = self.header;
        h.next_payload = first;
        h.flags = Flags(h.flags.0 & !Flags::ENCRYPTION);
        h.length = (HEADER_LEN + body.len()) as u32;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        h.encode(&mut out);
        out.extend_from_slice(&body);
        out
    }
}
