//! Typed XFRM messages (`XFRM_MSG_*`): the fixed kernel structure plus its attributes.

use std::fmt;

use netlink_packet_core::{DecodeError, Emitable, NlasIterator, Parseable};
use netlink_packet_xfrm as nx;
use nx::XfrmAttrs;
use zeroize::Zeroize;

use super::{NLM_F_DUMP, NlHeader};
use crate::error::{Error, Result};

/// XFRM message type numbers (`XFRM_MSG_*`).
pub mod msg {
    pub use netlink_packet_xfrm::{
        XFRM_MSG_ACQUIRE as ACQUIRE, XFRM_MSG_ALLOCSPI as ALLOCSPI,
        XFRM_MSG_DELPOLICY as DELPOLICY, XFRM_MSG_DELSA as DELSA, XFRM_MSG_EXPIRE as EXPIRE,
        XFRM_MSG_FLUSHPOLICY as FLUSHPOLICY, XFRM_MSG_FLUSHSA as FLUSHSA, XFRM_MSG_GETAE as GETAE,
        XFRM_MSG_GETPOLICY as GETPOLICY, XFRM_MSG_GETSA as GETSA,
        XFRM_MSG_GETSADINFO as GETSADINFO, XFRM_MSG_GETSPDINFO as GETSPDINFO,
        XFRM_MSG_MAPPING as MAPPING, XFRM_MSG_NEWAE as NEWAE, XFRM_MSG_NEWPOLICY as NEWPOLICY,
        XFRM_MSG_NEWSA as NEWSA, XFRM_MSG_NEWSADINFO as NEWSADINFO,
        XFRM_MSG_NEWSPDINFO as NEWSPDINFO, XFRM_MSG_POLEXPIRE as POLEXPIRE,
        XFRM_MSG_UPDPOLICY as UPDPOLICY, XFRM_MSG_UPDSA as UPDSA,
    };
}

/// An XFRM attribute list. Key bytes inside algorithm attributes are wiped on drop, and
/// `Debug` shows algorithm names and key lengths but never key bytes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Attrs(pub Vec<XfrmAttrs>);

impl Drop for Attrs {
    fn drop(&mut self) {
        scrub(&mut self.0);
    }
}

/// Wipes key material in algorithm attributes.
pub(crate) fn scrub(attrs: &mut [XfrmAttrs]) {
    for a in attrs {
        match a {
            XfrmAttrs::AuthenticationAlg(x)
            | XfrmAttrs::EncryptionAlg(x)
            | XfrmAttrs::CompressionAlg(x) => x.alg_key.zeroize(),
            XfrmAttrs::AuthenticationAlgTrunc(x) => x.alg_key.zeroize(),
            XfrmAttrs::EncryptionAlgAead(x) => x.alg_key.zeroize(),
            XfrmAttrs::Unspec(v) => v.zeroize(),
            _ => {}
        }
    }
}

pub(crate) fn alg_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned()
}

impl fmt::Debug for Attrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a XfrmAttrs);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    XfrmAttrs::AuthenticationAlg(x) => {
                        write!(
                            f,
                            "AlgAuth({}, {} bits, key redacted)",
                            alg_name(&x.alg_name),
                            x.alg_key_len
                        )
                    }
                    XfrmAttrs::EncryptionAlg(x) => {
                        write!(
                            f,
                            "AlgCrypt({}, {} bits, key redacted)",
                            alg_name(&x.alg_name),
                            x.alg_key_len
                        )
                    }
                    XfrmAttrs::CompressionAlg(x) => write!(f, "AlgComp({})", alg_name(&x.alg_name)),
                    XfrmAttrs::AuthenticationAlgTrunc(x) => write!(
                        f,
                        "AlgAuthTrunc({}, {} bits, trunc {}, key redacted)",
                        alg_name(&x.alg_name),
                        x.alg_key_len,
                        x.alg_trunc_len
                    ),
                    XfrmAttrs::EncryptionAlgAead(x) => write!(
                        f,
                        "AlgAead({}, {} bits, icv {}, key redacted)",
                        alg_name(&x.alg_name),
                        x.alg_key_len,
                        x.alg_icv_len
                    ),
                    XfrmAttrs::Unspec(v) => write!(f, "Unspec(<{} bytes>)", v.len()),
                    other => fmt::Debug::fmt(other, f),
                }
            }
        }
        f.debug_list().entries(self.0.iter().map(Redacted)).finish()
    }
}

impl Attrs {
    /// Parses an attribute area.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        let mut out = Attrs(Vec::new());
        for nla in NlasIterator::new(buf) {
            let nla = nla?;
            out.0.push(XfrmAttrs::parse(&nla)?);
        }
        Ok(out)
    }

    fn len(&self) -> usize {
        self.0.as_slice().buffer_len()
    }

    fn emit(&self, out: &mut Vec<u8>) {
        emit_into(out, &self.0.as_slice());
    }
}

fn emit_into<E: Emitable + ?Sized>(out: &mut Vec<u8>, e: &E) {
    let start = out.len();
    out.resize(start + e.buffer_len(), 0);
    if let Some(s) = out.get_mut(start..) {
        e.emit(s);
    }
}

/// Splits `payload` into a fixed structure of `len` bytes and the attribute area.
fn fixed<'a, T>(
    payload: &'a [u8],
    len: usize,
    what: &str,
    parse: fn(&[u8]) -> std::result::Result<T, DecodeError>,
) -> Result<(T, &'a [u8])> {
    let (head, rest) = payload.split_at_checked(len).ok_or_else(|| {
        Error::decode(format!(
            "{what} needs {len} bytes, message has {}",
            payload.len()
        ))
    })?;
    Ok((parse(head)?, rest))
}

macro_rules! fixed_plus_attrs {
    ($(#[$m:meta])* $name:ident, $field:ident: $ty:ty, $len:expr, $what:expr) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            #[doc = concat!("The fixed `", $what, "` part.")]
            pub $field: $ty,
            /// The attributes.
            pub attrs: Attrs,
        }

        impl $name {
            fn parse(payload: &[u8]) -> Result<Self> {
                let ($field, rest) = fixed(payload, $len, $what, <$ty>::parse)?;
                Ok($name { $field, attrs: Attrs::parse(rest)? })
            }

            fn len(&self) -> usize {
                self.$field.buffer_len() + self.attrs.len()
            }

            fn emit(&self, out: &mut Vec<u8>) {
                emit_into(out, &self.$field);
                self.attrs.emit(out);
            }
        }
    };
}

fixed_plus_attrs!(
    /// `xfrm_usersa_info` + attributes (NEWSA, UPDSA).
    SaInfoMsg, info: nx::UserSaInfo, nx::XFRM_USER_SA_INFO_LEN, "xfrm_usersa_info"
);
fixed_plus_attrs!(
    /// `xfrm_usersa_id` + attributes (DELSA, GETSA).
    SaIdMsg, id: nx::UserSaId, nx::XFRM_USER_SA_ID_LEN, "xfrm_usersa_id"
);
fixed_plus_attrs!(
    /// `xfrm_userspi_info` + attributes (ALLOCSPI).
    SpiInfoMsg, info: nx::UserSpiInfo, nx::XFRM_USER_SPI_INFO_LEN, "xfrm_userspi_info"
);
fixed_plus_attrs!(
    /// `xfrm_userpolicy_info` + attributes (NEWPOLICY, UPDPOLICY).
    PolicyInfoMsg, info: nx::UserPolicyInfo, nx::XFRM_USER_POLICY_INFO_LEN, "xfrm_userpolicy_info"
);
fixed_plus_attrs!(
    /// `xfrm_userpolicy_id` + attributes (DELPOLICY, GETPOLICY).
    PolicyIdMsg, id: nx::UserPolicyId, nx::XFRM_USER_POLICY_ID_LEN, "xfrm_userpolicy_id"
);
fixed_plus_attrs!(
    /// `xfrm_user_acquire` + attributes (ACQUIRE).
    AcquireMsg, acquire: nx::UserAcquire, nx::XFRM_USER_ACQUIRE_LEN, "xfrm_user_acquire"
);
fixed_plus_attrs!(
    /// `xfrm_user_expire` + attributes (EXPIRE; the kernel appends mark and interface ID).
    ExpireMsg, expire: nx::UserExpire, nx::XFRM_USER_EXPIRE_LEN, "xfrm_user_expire"
);
fixed_plus_attrs!(
    /// `xfrm_user_polexpire` + attributes (POLEXPIRE).
    PolExpireMsg, expire: nx::UserPolicyExpire, 176, "xfrm_user_polexpire"
);
fixed_plus_attrs!(
    /// `xfrm_aevent_id` + attributes (NEWAE, GETAE).
    AeMsg, id: nx::AsyncEventId, nx::XFRM_ASYNC_EVENT_ID_LEN, "xfrm_aevent_id"
);

/// A typed XFRM message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum XfrmMsg {
    /// `XFRM_MSG_NEWSA`: add request, dump/get reply, ALLOCSPI reply, notification.
    NewSa(SaInfoMsg),
    /// `XFRM_MSG_UPDSA`.
    UpdSa(SaInfoMsg),
    /// `XFRM_MSG_DELSA` (request, or notification carrying `XFRMA_SA`).
    DelSa(SaIdMsg),
    /// `XFRM_MSG_GETSA` for one SA.
    GetSa(SaIdMsg),
    /// `XFRM_MSG_GETSA` with `NLM_F_DUMP`: optional filter attributes only.
    DumpSa(Attrs),
    /// `XFRM_MSG_ALLOCSPI`.
    AllocSpi(SpiInfoMsg),
    /// `XFRM_MSG_NEWPOLICY`.
    NewPolicy(PolicyInfoMsg),
    /// `XFRM_MSG_UPDPOLICY`.
    UpdPolicy(PolicyInfoMsg),
    /// `XFRM_MSG_DELPOLICY`.
    DelPolicy(PolicyIdMsg),
    /// `XFRM_MSG_GETPOLICY` for one policy.
    GetPolicy(PolicyIdMsg),
    /// `XFRM_MSG_GETPOLICY` with `NLM_F_DUMP`.
    DumpPolicy(Attrs),
    /// `XFRM_MSG_FLUSHSA` (`xfrm_usersa_flush`): the protocol to flush (0 = every SA,
    /// `IPSEC_PROTO_ANY` = ESP, AH and IPComp) and any padding the sender included.
    FlushSa {
        /// Protocol.
        proto: u8,
        /// Bytes after the 1-byte structure (kernels pad the notification to 4 bytes).
        padding: Vec<u8>,
    },
    /// `XFRM_MSG_FLUSHPOLICY` with optional `XFRMA_POLICY_TYPE`.
    FlushPolicy(Attrs),
    /// `XFRM_MSG_ACQUIRE`.
    Acquire(AcquireMsg),
    /// `XFRM_MSG_EXPIRE`.
    Expire(ExpireMsg),
    /// `XFRM_MSG_POLEXPIRE`.
    PolExpire(PolExpireMsg),
    /// `XFRM_MSG_NEWAE`.
    NewAe(AeMsg),
    /// `XFRM_MSG_GETAE`.
    GetAe(AeMsg),
    /// `XFRM_MSG_MAPPING` (NAT-T peer address/port changed).
    Mapping(nx::UserMapping),
    /// `XFRM_MSG_GETSADINFO`.
    GetSadInfo(u32),
    /// `XFRM_MSG_NEWSADINFO`.
    NewSadInfo(nx::state::NewSadInfoMessage),
    /// `XFRM_MSG_GETSPDINFO`.
    GetSpdInfo(u32),
    /// `XFRM_MSG_NEWSPDINFO`.
    NewSpdInfo(nx::policy::NewSpdInfoMessage),
    /// A message type this crate does not model (REPORT, MIGRATE, SETDEFAULT, …).
    Other {
        /// Message type.
        ty: u16,
        /// Raw payload.
        payload: RawPayload,
    },
}

/// A payload kept as bytes; wiped on drop since unknown messages might carry keys.
#[derive(Clone, PartialEq, Eq)]
pub struct RawPayload(pub Vec<u8>);

impl Drop for RawPayload {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for RawPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

fn u32_payload(payload: &[u8], what: &str) -> Result<u32> {
    let b = payload
        .get(..4)
        .ok_or_else(|| Error::decode(format!("{what} needs 4 bytes")))?;
    Ok(super::u32_at(b, 0))
}

impl XfrmMsg {
    /// Parses an XFRM message payload; the header tells GET from DUMP.
    pub fn parse(hdr: &NlHeader, payload: &[u8]) -> Result<Self> {
        let dump = hdr.flags & NLM_F_DUMP == NLM_F_DUMP;
        Ok(match hdr.ty {
            msg::NEWSA => XfrmMsg::NewSa(SaInfoMsg::parse(payload)?),
            msg::UPDSA => XfrmMsg::UpdSa(SaInfoMsg::parse(payload)?),
            msg::DELSA => XfrmMsg::DelSa(SaIdMsg::parse(payload)?),
            msg::GETSA if dump => XfrmMsg::DumpSa(Attrs::parse(payload)?),
            msg::GETSA => XfrmMsg::GetSa(SaIdMsg::parse(payload)?),
            msg::ALLOCSPI => XfrmMsg::AllocSpi(SpiInfoMsg::parse(payload)?),
            msg::NEWPOLICY => XfrmMsg::NewPolicy(PolicyInfoMsg::parse(payload)?),
            msg::UPDPOLICY => XfrmMsg::UpdPolicy(PolicyInfoMsg::parse(payload)?),
            msg::DELPOLICY => XfrmMsg::DelPolicy(PolicyIdMsg::parse(payload)?),
            msg::GETPOLICY if dump => XfrmMsg::DumpPolicy(Attrs::parse(payload)?),
            msg::GETPOLICY => XfrmMsg::GetPolicy(PolicyIdMsg::parse(payload)?),
            msg::FLUSHSA => match payload {
                [proto, padding @ ..] if padding.len() < 4 => XfrmMsg::FlushSa {
                    proto: *proto,
                    padding: padding.to_vec(),
                },
                _ => {
                    return Err(Error::decode(format!(
                        "xfrm_usersa_flush is 1 byte (plus padding), message has {}",
                        payload.len()
                    )));
                }
            },
            msg::FLUSHPOLICY => XfrmMsg::FlushPolicy(Attrs::parse(payload)?),
            msg::ACQUIRE => XfrmMsg::Acquire(AcquireMsg::parse(payload)?),
            msg::EXPIRE => XfrmMsg::Expire(ExpireMsg::parse(payload)?),
            msg::POLEXPIRE => XfrmMsg::PolExpire(PolExpireMsg::parse(payload)?),
            msg::NEWAE => XfrmMsg::NewAe(AeMsg::parse(payload)?),
            msg::GETAE => XfrmMsg::GetAe(AeMsg::parse(payload)?),
            msg::MAPPING => {
                let (m, rest) = fixed(
                    payload,
                    nx::XFRM_USER_MAPPING_LEN,
                    "xfrm_user_mapping",
                    nx::UserMapping::parse,
                )?;
                if !rest.is_empty() {
                    return Err(Error::decode("trailing bytes after xfrm_user_mapping"));
                }
                XfrmMsg::Mapping(m)
            }
            msg::GETSADINFO => XfrmMsg::GetSadInfo(u32_payload(payload, "GETSADINFO")?),
            msg::GETSPDINFO => XfrmMsg::GetSpdInfo(u32_payload(payload, "GETSPDINFO")?),
            msg::NEWSADINFO => {
                u32_payload(payload, "NEWSADINFO")?;
                XfrmMsg::NewSadInfo(nx::state::NewSadInfoMessage::parse(payload)?)
            }
            msg::NEWSPDINFO => {
                u32_payload(payload, "NEWSPDINFO")?;
                XfrmMsg::NewSpdInfo(nx::policy::NewSpdInfoMessage::parse(payload)?)
            }
            ty => XfrmMsg::Other {
                ty,
                payload: RawPayload(payload.to_vec()),
            },
        })
    }

    /// The netlink message type.
    pub fn message_type(&self) -> u16 {
        match self {
            XfrmMsg::NewSa(_) => msg::NEWSA,
            XfrmMsg::UpdSa(_) => msg::UPDSA,
            XfrmMsg::DelSa(_) => msg::DELSA,
            XfrmMsg::GetSa(_) | XfrmMsg::DumpSa(_) => msg::GETSA,
            XfrmMsg::AllocSpi(_) => msg::ALLOCSPI,
            XfrmMsg::NewPolicy(_) => msg::NEWPOLICY,
            XfrmMsg::UpdPolicy(_) => msg::UPDPOLICY,
            XfrmMsg::DelPolicy(_) => msg::DELPOLICY,
            XfrmMsg::GetPolicy(_) | XfrmMsg::DumpPolicy(_) => msg::GETPOLICY,
            XfrmMsg::FlushSa { .. } => msg::FLUSHSA,
            XfrmMsg::FlushPolicy(_) => msg::FLUSHPOLICY,
            XfrmMsg::Acquire(_) => msg::ACQUIRE,
            XfrmMsg::Expire(_) => msg::EXPIRE,
            XfrmMsg::PolExpire(_) => msg::POLEXPIRE,
            XfrmMsg::NewAe(_) => msg::NEWAE,
            XfrmMsg::GetAe(_) => msg::GETAE,
            XfrmMsg::Mapping(_) => msg::MAPPING,
            XfrmMsg::GetSadInfo(_) => msg::GETSADINFO,
            XfrmMsg::NewSadInfo(_) => msg::NEWSADINFO,
            XfrmMsg::GetSpdInfo(_) => msg::GETSPDINFO,
            XfrmMsg::NewSpdInfo(_) => msg::NEWSPDINFO,
            XfrmMsg::Other { ty, .. } => *ty,
        }
    }

    /// Payload length in bytes (without the netlink header).
    pub fn payload_len(&self) -> usize {
        match self {
            XfrmMsg::NewSa(m) | XfrmMsg::UpdSa(m) => m.len(),
            XfrmMsg::DelSa(m) | XfrmMsg::GetSa(m) => m.len(),
            XfrmMsg::DumpSa(a) | XfrmMsg::DumpPolicy(a) | XfrmMsg::FlushPolicy(a) => a.len(),
            XfrmMsg::AllocSpi(m) => m.len(),
            XfrmMsg::NewPolicy(m) | XfrmMsg::UpdPolicy(m) => m.len(),
            XfrmMsg::DelPolicy(m) | XfrmMsg::GetPolicy(m) => m.len(),
            XfrmMsg::FlushSa { padding, .. } => 1 + padding.len(),
            XfrmMsg::Acquire(m) => m.len(),
            XfrmMsg::Expire(m) => m.len(),
            XfrmMsg::PolExpire(m) => m.len(),
            XfrmMsg::NewAe(m) | XfrmMsg::GetAe(m) => m.len(),
            XfrmMsg::Mapping(m) => m.buffer_len(),
            XfrmMsg::GetSadInfo(_) | XfrmMsg::GetSpdInfo(_) => 4,
            XfrmMsg::NewSadInfo(m) => m.buffer_len(),
            XfrmMsg::NewSpdInfo(m) => m.buffer_len(),
            XfrmMsg::Other { payload, .. } => payload.0.len(),
        }
    }

    /// Appends the payload to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            XfrmMsg::NewSa(m) | XfrmMsg::UpdSa(m) => m.emit(out),
            XfrmMsg::DelSa(m) | XfrmMsg::GetSa(m) => m.emit(out),
            XfrmMsg::DumpSa(a) | XfrmMsg::DumpPolicy(a) | XfrmMsg::FlushPolicy(a) => a.emit(out),
            XfrmMsg::AllocSpi(m) => m.emit(out),
            XfrmMsg::NewPolicy(m) | XfrmMsg::UpdPolicy(m) => m.emit(out),
            XfrmMsg::DelPolicy(m) | XfrmMsg::GetPolicy(m) => m.emit(out),
            XfrmMsg::FlushSa { proto, padding } => {
                out.push(*proto);
                out.extend_from_slice(padding);
            }
            XfrmMsg::Acquire(m) => m.emit(out),
            XfrmMsg::Expire(m) => m.emit(out),
            XfrmMsg::PolExpire(m) => m.emit(out),
            XfrmMsg::NewAe(m) | XfrmMsg::GetAe(m) => m.emit(out),
            XfrmMsg::Mapping(m) => emit_into(out, m),
            XfrmMsg::GetSadInfo(f) | XfrmMsg::GetSpdInfo(f) => {
                out.extend_from_slice(&f.to_ne_bytes())
            }
            XfrmMsg::NewSadInfo(m) => emit_into(out, m),
            XfrmMsg::NewSpdInfo(m) => emit_into(out, m),
            XfrmMsg::Other { payload, .. } => out.extend_from_slice(&payload.0),
        }
    }
}
