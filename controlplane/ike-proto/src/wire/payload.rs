//! IKEv2 payloads (RFC 7296 §3.2–§3.16, RFC 7383 §2.5) and the message codec.

use std::net::IpAddr;

use super::header::{HEADER_LEN, Header};
use super::registry::*;
use super::{Cursor, DecodeError};
use crate::identity::IdType;

/// Most payloads accepted in one message or one SK body.
pub const MAX_PAYLOADS: usize = 64;
/// Most proposals accepted in one SA payload.
pub const MAX_PROPOSALS: usize = 32;

/// A transform attribute (RFC 7296 §3.3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransformAttr {
    /// Type/Value form (AF=1): 15-bit type, 16-bit value. Key Length is type 14.
    Tv(u16, u16),
    /// Type/Length/Value form (AF=0).
    Tlv(u16, Vec<u8>),
}

/// Transform attribute type Key Length.
pub const ATTR_KEY_LENGTH: u16 = 14;

/// A transform substructure (RFC 7296 §3.3.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform type.
    pub ty: TransformType,
    /// Transform ID (interpret with [`EncrId`], [`PrfId`], [`IntegId`], [`DhGroup`],
    /// [`EsnId`] according to `ty`).
    pub id: u16,
    /// Attributes in wire order.
    pub attrs: Vec<TransformAttr>,
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ty: TransformType, id: u16) -> Self {
        Self {
            ty,
            id,
            attrs: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute.
    pub fn with_key_length(ty: TransformType, id: u16, bits: u16) -> Self {
        Self {
            ty,
            id,
            attrs: vec![TransformAttr::Tv(ATTR_KEY_LENGTH, bits)],
        }
    }

    /// The Key Length attribute, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attrs.iter().find_map(|a| match a {
            TransformAttr::Tv(ATTR_KEY_LENGTH, v) => Some(*v),
            _ => None,
        })
    }
}

/// A proposal substructure (RFC 7296 §3.3.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal number (1 for the first, then +1).
    pub number: u8,
    /// Protocol ID.
    pub protocol: ProtocolId,
    /// SPI (empty in an initial IKE proposal, 8 bytes for IKE rekey, 4 for ESP/AH).
    pub spi: Vec<u8>,
    /// Transforms.
    pub transforms: Vec<Transform>,
}

/// Security Association payload (RFC 7296 §3.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Sa {
    /// Proposals in preference order.
    pub proposals: Vec<Proposal>,
}

/// Key Exchange payload (RFC 7296 §3.4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ke {
    /// Diffie-Hellman group.
    pub group: DhGroup,
    /// Public value.
    pub data: Vec<u8>,
}

/// Identification payload body (RFC 7296 §3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdPayload {
    /// ID type.
    pub id_type: IdType,
    /// The three RESERVED octets, kept because AUTH covers them as received.
    pub reserved: [u8; 3],
    /// Identification data.
    pub data: Vec<u8>,
}

impl IdPayload {
    /// The payload body (`RestOfInitIDPayload` / `RestOfRespIDPayload` in RFC 7296 §2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut v = vec![self.id_type.0];
        v.extend_from_slice(&self.reserved);
        v.extend_from_slice(&self.data);
        v
    }
}

/// Certificate or Certificate Request payload (RFC 7296 §3.6, §3.7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cert {
    /// Encoding.
    pub encoding: CertEncoding,
    /// Certificate data, or for CERTREQ the concatenated SHA-1 hashes of trusted CA keys.
    pub data: Vec<u8>,
}

/// Authentication payload (RFC 7296 §3.8).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Auth {
    /// Auth method.
    pub method: AuthMethod,
    /// Authentication data (for method 14: length-prefixed AlgorithmIdentifier + signature).
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("method", &self.method)
            .field("len", &self.data.len())
            .finish()
    }
}

/// Notify payload (RFC 7296 §3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notify {
    /// Protocol ID (0 or IKE when no SPI; AH/ESP with a child SPI).
    pub protocol: ProtocolId,
    /// SPI (may be empty).
    pub spi: Vec<u8>,
    /// Notify message type.
    pub ty: NotifyType,
    /// Notification data.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notify without SPI.
    pub fn new(ty: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            ty,
            data,
        }
    }
}

/// Delete payload (RFC 7296 §3.11).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delete {
    /// Protocol ID (IKE deletes the IKE SA and carries no SPIs).
    pub protocol: ProtocolId,
    /// SPI size (0 for IKE, 4 for ESP/AH).
    pub spi_size: u8,
    /// SPIs, each `spi_size` bytes.
    pub spis: Vec<Vec<u8>>,
}

/// One traffic selector (RFC 7296 §3.13.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE (the address family says which).
    Range {
        /// IP protocol (0 = any).
        ip_protocol: u8,
        /// Start port.
        start_port: u16,
        /// End port.
        end_port: u16,
        /// First address.
        start: IpAddr,
        /// Last address (same family as `start`).
        end: IpAddr,
    },
    /// A selector type this crate does not model, kept for the round trip.
    Other {
        /// TS type.
        ts_type: TsType,
        /// Everything after the type octet.
        body: Vec<u8>,
    },
}

/// Traffic Selector payload (RFC 7296 §3.13).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ts {
    /// The selectors.
    pub selectors: Vec<TrafficSelector>,
}

/// One configuration attribute (RFC 7296 §3.15.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CfgAttribute {
    /// Attribute type.
    pub ty: CfgAttrType,
    /// Value.
    pub value: Vec<u8>,
}

/// Configuration payload (RFC 7296 §3.15).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cp {
    /// CFG type.
    pub cfg_type: CfgType,
    /// Attributes.
    pub attributes: Vec<CfgAttribute>,
}

/// Encrypted and Authenticated payload, opaque (RFC 7296 §3.14).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Encrypted {
    /// The type of the first payload inside.
    pub first_inner: PayloadType,
    /// IV || ciphertext || ICV.
    pub data: Vec<u8>,
}

/// Encrypted and Authenticated Fragment, opaque (RFC 7383 §2.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// Type of the first inner payload (non-zero only in fragment 1).
    pub first_inner: PayloadType,
    /// Fragment number, from 1.
    pub number: u16,
    /// Total number of fragments.
    pub total: u16,
    /// IV || ciphertext || ICV.
    pub data: Vec<u8>,
}

/// A payload this crate does not interpret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Unknown {
    /// Payload type.
    pub ty: PayloadType,
    /// The critical bit.
    pub critical: bool,
    /// Body.
    pub body: Vec<u8>,
}

/// A payload.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// SA.
    Sa(Sa),
    /// KE.
    Ke(Ke),
    /// IDi.
    IdI(IdPayload),
    /// IDr.
    IdR(IdPayload),
    /// CERT.
    Cert(Cert),
    /// CERTREQ.
    CertReq(Cert),
    /// AUTH.
    Auth(Auth),
    /// Ni, Nr.
    Nonce(Vec<u8>),
    /// N.
    Notify(Notify),
    /// D.
    Delete(Delete),
    /// V.
    VendorId(Vec<u8>),
    /// TSi.
    TsI(Ts),
    /// TSr.
    TsR(Ts),
    /// SK.
    Encrypted(Encrypted),
    /// CP.
    Cp(Cp),
    /// EAP (opaque).
    Eap(Vec<u8>),
    /// SKF.
    EncryptedFragment(EncryptedFragment),
    /// Anything else.
    Unknown(Unknown),
}

impl Payload {
    /// The payload type.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Self::Sa(_) => PayloadType::SA,
            Self::Ke(_) => PayloadType::KE,
            Self::IdI(_) => PayloadType::IDI,
            Self::IdR(_) => PayloadType::IDR,
            Self::Cert(_) => PayloadType::CERT,
            Self::CertReq(_) => PayloadType::CERTREQ,
            Self::Auth(_) => PayloadType::AUTH,
            Self::Nonce(_) => PayloadType::NONCE,
            Self::Notify(_) => PayloadType::NOTIFY,
            Self::Delete(_) => PayloadType::DELETE,
            Self::VendorId(_) => PayloadType::VENDOR_ID,
            Self::TsI(_) => PayloadType::TSI,
            Self::TsR(_) => PayloadType::TSR,
            Self::Encrypted(_) => PayloadType::SK,
            Self::Cp(_) => PayloadType::CP,
            Self::Eap(_) => PayloadType::EAP,
            Self::EncryptedFragment(_) => PayloadType::SKF,
            Self::Unknown(u) => u.ty,
        }
    }

    /// The "next payload" value this payload's own header carries when it is last in its
    /// chain (SK and SKF name their first inner payload).
    fn chain_terminator(&self) -> PayloadType {
        match self {
            Self::Encrypted(e) => e.first_inner,
            Self::EncryptedFragment(f) => f.first_inner,
            _ => PayloadType::NONE,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::Sa(sa) => encode_sa(sa, out),
            Self::Ke(ke) => {
                out.extend_from_slice(&ke.group.0.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ke.data);
            }
            Self::IdI(id) | Self::IdR(id) => out.extend_from_slice(&id.body()),
            Self::Cert(c) | Self::CertReq(c) => {
                out.push(c.encoding.0);
                out.extend_from_slice(&c.data);
            }
            Self::Auth(a) => {
                out.extend_from_slice(&[a.method.0, 0, 0, 0]);
                out.extend_from_slice(&a.data);
            }
            Self::Nonce(n) | Self::VendorId(n) | Self::Eap(n) => out.extend_from_slice(n),
            Self::Notify(n) => {
                out.push(n.protocol.0);
                out.push(n.spi.len() as u8);
                out.extend_from_slice(&n.ty.0.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Self::Delete(d) => {
                out.push(d.protocol.0);
                out.push(d.spi_size);
                out.extend_from_slice(&(d.spis.len() as u16).to_be_bytes());
                for s in &d.spis {
                    out.extend_from_slice(s);
                }
            }
            Self::TsI(ts) | Self::TsR(ts) => encode_ts(ts, out),
            Self::Encrypted(e) => out.extend_from_slice(&e.data),
            Self::Cp(cp) => {
                out.extend_from_slice(&[cp.cfg_type.0, 0, 0, 0]);
                for a in &cp.attributes {
                    out.extend_from_slice(&(a.ty.0 & 0x7fff).to_be_bytes());
                    out.extend_from_slice(&(a.value.len() as u16).to_be_bytes());
                    out.extend_from_slice(&a.value);
                }
            }
            Self::EncryptedFragment(f) => {
                out.extend_from_slice(&f.number.to_be_bytes());
                out.extend_from_slice(&f.total.to_be_bytes());
                out.extend_from_slice(&f.data);
            }
            Self::Unknown(u) => out.extend_from_slice(&u.body),
        }
    }
}

fn encode_sa(sa: &Sa, out: &mut Vec<u8>) {
    let n = sa.proposals.len();
    for (i, p) in sa.proposals.iter().enumerate() {
        let start = out.len();
        out.push(if i + 1 == n { 0 } else { 2 });
        out.push(0);
        out.extend_from_slice(&[0, 0]);
        out.push(p.number);
        out.push(p.protocol.0);
        out.push(p.spi.len() as u8);
        out.push(p.transforms.len() as u8);
        out.extend_from_slice(&p.spi);
        let nt = p.transforms.len();
        for (j, t) in p.transforms.iter().enumerate() {
            let ts = out.len();
            out.push(if j + 1 == nt { 0 } else { 3 });
            out.push(0);
            out.extend_from_slice(&[0, 0]);
            out.push(t.ty.0);
            out.push(0);
            out.extend_from_slice(&t.id.to_be_bytes());
            for a in &t.attrs {
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
            set_len(out, ts);
        }
        set_len(out, start);
    }
}

fn encode_ts(ts: &Ts, out: &mut Vec<u8>) {
    out.extend_from_slice(&[ts.selectors.len() as u8, 0, 0, 0]);
    for s in &ts.selectors {
        match s {
            TrafficSelector::Range {
                ip_protocol,
                start_port,
                end_port,
                start,
                end,
            } => {
                let (ty, len): (u8, u16) = if start.is_ipv4() { (7, 16) } else { (8, 40) };
                out.push(ty);
                out.push(*ip_protocol);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&start_port.to_be_bytes());
                out.extend_from_slice(&end_port.to_be_bytes());
                for a in [start, end] {
                    match a {
                        IpAddr::V4(v) => out.extend_from_slice(&v.octets()),
                        IpAddr::V6(v) => out.extend_from_slice(&v.octets()),
                    }
                }
            }
            TrafficSelector::Other { ts_type, body } => {
                out.push(ts_type.0);
                out.extend_from_slice(body);
            }
        }
    }
}

/// Writes the 16-bit length of a substructure that starts at `start` (length at +2).
fn set_len(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16;
    if let Some(slot) = out.get_mut(start + 2..start + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// Encodes a payload chain; returns the type of the first payload and the bytes.
pub fn encode_payloads(payloads: &[Payload]) -> (PayloadType, Vec<u8>) {
    let mut out = Vec::new();
    encode_payloads_into(payloads, &mut out);
    let first = payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type);
    (first, out)
}

fn encode_payloads_into(payloads: &[Payload], out: &mut Vec<u8>) {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or_else(|| p.chain_terminator(), Payload::payload_type);
        let start = out.len();
        let critical = matches!(p, Payload::Unknown(u) if u.critical);
        out.push(next.0);
        out.push(if critical { 0x80 } else { 0 });
        out.extend_from_slice(&[0, 0]);
        p.encode_body(out);
        set_len(out, start);
    }
}

/// Decodes a payload chain starting with type `first` that must fill `buf` exactly.
/// `base` is the absolute offset of `buf` for error reports.
///
/// SK and SKF end the chain (their "next payload" names the first inner payload) and must
/// be last.
pub fn decode_payloads(
    first: PayloadType,
    buf: &[u8],
    base: usize,
) -> Result<Vec<Payload>, DecodeError> {
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
        let ctx = format!("payload {index} ({ty})");
        let mut hc = Cursor::new(
            c.take(4, "generic payload header")
                .map_err(|e| DecodeError {
                    context: ctx.clone(),
                    ..e
                })?,
            at,
            &ctx,
        );
        let this_next = PayloadType(hc.u8("next payload")?);
        let critical = hc.u8("critical")? & 0x80 != 0;
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
        let mut p = decode_body(ty, critical, body, at + 4, &ctx)?;
        match &mut p {
            Payload::Encrypted(e) => e.first_inner = this_next,
            Payload::EncryptedFragment(f) => f.first_inner = this_next,
            _ => {}
        }
        if let Payload::Unknown(u) = &p
            && u.critical
        {
            return Err(DecodeError {
                critical_payload: Some(u.ty),
                ..DecodeError::new(at, ctx, format!("unsupported critical payload {}", u.ty))
            });
        }
        let ends_chain = matches!(p, Payload::Encrypted(_) | Payload::EncryptedFragment(_));
        out.push(p);
        if ends_chain {
            if c.remaining() != 0 {
                return Err(c.err(format!("{ty} payload is not the last payload")));
            }
            break;
        }
        next = this_next;
    }
    if c.remaining() != 0 {
        return Err(c.err(format!("{} bytes after the last payload", c.remaining())));
    }
    Ok(out)
}

fn decode_body(
    ty: PayloadType,
    critical: bool,
    body: &[u8],
    base: usize,
    ctx: &str,
) -> Result<Payload, DecodeError> {
    let mut c = Cursor::new(body, base, ctx);
    Ok(match ty {
        PayloadType::SA => Payload::Sa(decode_sa(body, base, ctx)?),
        PayloadType::KE => {
            let group = DhGroup(c.u16("DH group")?);
            c.take(2, "reserved")?;
            let data = c.rest().to_vec();
            if data.is_empty() {
                return Err(c.err("empty key exchange data"));
            }
            Payload::Ke(Ke { group, data })
        }
        PayloadType::IDI | PayloadType::IDR => {
            let id_type = IdType(c.u8("ID type")?);
            let r = c.take(3, "reserved")?;
            let mut reserved = [0u8; 3];
            reserved.copy_from_slice(r);
            let data = c.rest().to_vec();
            if data.is_empty() {
                return Err(c.err("empty identification data"));
            }
            let id = IdPayload {
                id_type,
                reserved,
                data,
            };
            if ty == PayloadType::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        PayloadType::CERT | PayloadType::CERTREQ => {
            let encoding = CertEncoding(c.u8("certificate encoding")?);
            let cert = Cert {
                encoding,
                data: c.rest().to_vec(),
            };
            if ty == PayloadType::CERT {
                if cert.data.is_empty() {
                    return Err(c.err("empty certificate data"));
                }
                Payload::Cert(cert)
            } else {
                Payload::CertReq(cert)
            }
        }
        PayloadType::AUTH => {
            let method = AuthMethod(c.u8("auth method")?);
            c.take(3, "reserved")?;
            let data = c.rest().to_vec();
            if data.is_empty() {
                return Err(c.err("empty authentication data"));
            }
            Payload::Auth(Auth { method, data })
        }
        PayloadType::NONCE => {
            let n = c.rest();
            if !(16..=256).contains(&n.len()) {
                return Err(DecodeError::new(
                    base,
                    ctx,
                    format!("nonce of {} bytes (must be 16..=256)", n.len()),
                ));
            }
            Payload::Nonce(n.to_vec())
        }
        PayloadType::NOTIFY => {
            let protocol = ProtocolId(c.u8("protocol ID")?);
            let spi_size = c.u8("SPI size")?;
            let nty = NotifyType(c.u16("notify type")?);
            let spi = c.take(usize::from(spi_size), "SPI")?.to_vec();
            Payload::Notify(Notify {
                protocol,
                spi,
                ty: nty,
                data: c.rest().to_vec(),
            })
        }
        PayloadType::DELETE => {
            let protocol = ProtocolId(c.u8("protocol ID")?);
            let spi_size = c.u8("SPI size")?;
            let n = c.u16("number of SPIs")?;
            if protocol == ProtocolId::IKE && (spi_size != 0 || n != 0) {
                return Err(c.err("IKE delete must carry no SPIs"));
            }
            if protocol != ProtocolId::IKE && spi_size == 0 && n != 0 {
                return Err(c.err("SPI size 0 with SPIs"));
            }
            let need = usize::from(n) * usize::from(spi_size);
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
                protocol,
                spi_size,
                spis,
            })
        }
        PayloadType::VENDOR_ID => Payload::VendorId(body.to_vec()),
        PayloadType::TSI | PayloadType::TSR => {
            let ts = decode_ts(body, base, ctx)?;
            if ty == PayloadType::TSI {
                Payload::TsI(ts)
            } else {
                Payload::TsR(ts)
            }
        }
        PayloadType::SK => {
            if body.is_empty() {
                return Err(c.err("empty encrypted payload"));
            }
            // first_inner is filled in from this payload's next field by the chain decoder.
            Payload::Encrypted(Encrypted {
                first_inner: PayloadType::NONE,
                data: body.to_vec(),
            })
        }
        PayloadType::SKF => {
            let number = c.u16("fragment number")?;
            let total = c.u16("total fragments")?;
            if number == 0 || total == 0 || number > total {
                return Err(c.err(format!("fragment {number} of {total}")));
            }
            let data = c.rest().to_vec();
            if data.is_empty() {
                return Err(c.err("empty encrypted fragment"));
            }
            Payload::EncryptedFragment(EncryptedFragment {
                first_inner: PayloadType::NONE,
                number,
                total,
                data,
            })
        }
        PayloadType::CP => {
            let cfg_type = CfgType(c.u8("CFG type")?);
            c.take(3, "reserved")?;
            let mut attributes = Vec::new();
            while c.remaining() > 0 {
                let t = c.u16("attribute type")? & 0x7fff;
                let l = c.u16("attribute length")?;
                let value = c.take(usize::from(l), "attribute value")?.to_vec();
                attributes.push(CfgAttribute {
                    ty: CfgAttrType(t),
                    value,
                });
            }
            Payload::Cp(Cp {
                cfg_type,
                attributes,
            })
        }
        PayloadType::EAP => Payload::Eap(body.to_vec()),
        _ => Payload::Unknown(Unknown {
            ty,
            critical,
            body: body.to_vec(),
        }),
    })
}

fn decode_sa(body: &[u8], base: usize, ctx: &str) -> Result<Sa, DecodeError> {
    let mut c = Cursor::new(body, base, ctx);
    let mut proposals = Vec::new();
    if body.is_empty() {
        return Err(c.err("SA payload without proposals"));
    }
    loop {
        if proposals.len() >= MAX_PROPOSALS {
            return Err(c.err(format!("more than {MAX_PROPOSALS} proposals")));
        }
        let pctx = format!("{ctx} / proposal {}", proposals.len() + 1);
        let at = c.offset();
        let more = c.u8("last substruc")?;
        c.u8("reserved")?;
        let plen = usize::from(c.u16("proposal length")?);
        if plen < 8 {
            return Err(DecodeError::new(
                at + 2,
                pctx,
                format!("proposal length {plen} < 8"),
            ));
        }
        let pbody = c.take(plen - 4, "proposal").map_err(|e| DecodeError {
            context: pctx.clone(),
            ..e
        })?;
        let mut pc = Cursor::new(pbody, at + 4, &pctx);
        let number = pc.u8("proposal number")?;
        let protocol = ProtocolId(pc.u8("protocol ID")?);
        let spi_size = pc.u8("SPI size")?;
        let ntrans = pc.u8("number of transforms")?;
        let spi = pc.take(usize::from(spi_size), "SPI")?.to_vec();
        let mut transforms = Vec::with_capacity(usize::from(ntrans));
        for ti in 0..ntrans {
            let tctx = format!("{pctx} / transform {}", ti + 1);
            let tat = pc.offset();
            let tmore = pc.u8("last substruc")?;
            pc.u8("reserved")?;
            let tlen = usize::from(pc.u16("transform length")?);
            if tlen < 8 {
                return Err(DecodeError::new(
                    tat + 2,
                    tctx,
                    format!("transform length {tlen} < 8"),
                ));
            }
            let tbody = pc.take(tlen - 4, "transform").map_err(|e| DecodeError {
                context: tctx.clone(),
                ..e
            })?;
            let last = ti + 1 == ntrans;
            if (last && tmore != 0) || (!last && tmore != 3) {
                return Err(DecodeError::new(
                    tat,
                    tctx,
                    format!(
                        "last-substructure value {tmore} inconsistent with {ntrans} transforms"
                    ),
                ));
            }
            let mut tc = Cursor::new(tbody, tat + 4, &tctx);
            let ty = TransformType(tc.u8("transform type")?);
            tc.u8("reserved")?;
            let id = tc.u16("transform ID")?;
            let mut attrs = Vec::new();
            while tc.remaining() > 0 {
                let at_ty = tc.u16("attribute type")?;
                if at_ty & 0x8000 != 0 {
                    attrs.push(TransformAttr::Tv(
                        at_ty & 0x7fff,
                        tc.u16("attribute value")?,
                    ));
                } else {
                    let l = tc.u16("attribute length")?;
                    attrs.push(TransformAttr::Tlv(
                        at_ty,
                        tc.take(usize::from(l), "attribute value")?.to_vec(),
                    ));
                }
            }
            transforms.push(Transform { ty, id, attrs });
        }
        if pc.remaining() != 0 {
            return Err(pc.err(format!("{} bytes after the last transform", pc.remaining())));
        }
        proposals.push(Proposal {
            number,
            protocol,
            spi,
            transforms,
        });
        match (more, c.remaining()) {
            (0, 0) => break,
            (2, n) if n > 0 => continue,
            (m, n) => {
                return Err(DecodeError::new(
                    at,
                    pctx,
                    format!("last-substructure value {m} with {n} bytes following"),
                ));
            }
        }
    }
    Ok(Sa { proposals })
}

fn decode_ts(body: &[u8], base: usize, ctx: &str) -> Result<Ts, DecodeError> {
    let mut c = Cursor::new(body, base, ctx);
    let n = c.u8("number of TSs")?;
    c.take(3, "reserved")?;
    if n == 0 {
        return Err(c.err("no traffic selectors"));
    }
    let mut selectors = Vec::with_capacity(usize::from(n));
    for i in 0..n {
        let sctx = format!("{ctx} / selector {}", i + 1);
        let at = c.offset();
        let ts_type = TsType(c.u8("TS type")?);
        let ip_protocol = c.u8("IP protocol")?;
        let len = usize::from(c.u16("selector length")?);
        if len < 4 {
            return Err(DecodeError::new(
                at + 2,
                sctx,
                format!("selector length {len} < 4"),
            ));
        }
        let sbody = c.take(len - 4, "selector").map_err(|e| DecodeError {
            context: sctx.clone(),
            ..e
        })?;
        let addr_len = match ts_type {
            TsType::IPV4_ADDR_RANGE => 4,
            TsType::IPV6_ADDR_RANGE => 16,
            _ => {
                let mut b = vec![ip_protocol];
                b.extend_from_slice(&(len as u16).to_be_bytes());
                b.extend_from_slice(sbody);
                selectors.push(TrafficSelector::Other { ts_type, body: b });
                continue;
            }
        };
        if sbody.len() != 4 + 2 * addr_len {
            return Err(DecodeError::new(
                at + 2,
                sctx,
                format!("selector length {len} wrong for {ts_type}"),
            ));
        }
        let mut sc = Cursor::new(sbody, at + 4, &sctx);
        let start_port = sc.u16("start port")?;
        let end_port = sc.u16("end port")?;
        let addr = |b: &[u8]| -> IpAddr {
            if let Ok(a) = <[u8; 4]>::try_from(b) {
                IpAddr::from(a)
            } else if let Ok(a) = <[u8; 16]>::try_from(b) {
                IpAddr::from(a)
            } else {
                IpAddr::from([0u8; 4])
            }
        };
        let start = addr(sc.take(addr_len, "start address")?);
        let end = addr(sc.take(addr_len, "end address")?);
        selectors.push(TrafficSelector::Range {
            ip_protocol,
            start_port,
            end_port,
            start,
            end,
        });
    }
    if c.remaining() != 0 {
        return Err(c.err(format!("{} bytes after the last selector", c.remaining())));
    }
    Ok(Ts { selectors })
}

/// An IKE message: header and payload chain (SK/SKF bodies still encrypted).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The header; `next_payload` and `length` are recomputed by [`Message::encode`].
    pub header: Header,
    /// The payloads.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Decodes a datagram (without non-ESP marker). Accepts only IKE major version 2.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let header = Header::decode(buf)?;
        if header.major_version() != 2 {
            return Err(DecodeError::new(
                17,
                "IKE header",
                format!("major version {}", header.major_version()),
            ));
        }
        let body = buf.get(HEADER_LEN..).unwrap_or(&[]);
        let payloads = decode_payloads(header.next_payload, body, HEADER_LEN)?;
        Ok(Self { header, payloads })
    }

    /// Encodes the message, filling in the header's next payload and length.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        encode_payloads_into(&self.payloads, &mut body);
        let mut h = self.header;
        h.next_payload = self
            .payloads
            .first()
            .map_or(PayloadType::NONE, Payload::payload_type);
        h.length = (HEADER_LEN + body.len()) as u32;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        h.encode(&mut out);
        out.extend_from_slice(&body);
        out
    }
}
