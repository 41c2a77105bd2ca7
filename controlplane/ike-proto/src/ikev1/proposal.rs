//! SA payloads for phase 1 (RFC 2409 Appendix A attributes) and quick mode (RFC 2407 §4.5
//! attributes): building offers, choosing from a peer's offer, checking a peer's answer.

use super::config::P1Proposal;
use super::crypto::HashAlg;
use super::wire::*;
use crate::crypto::dh;
use crate::crypto::encr::EncrAlg;
use crate::crypto::integ::IntegAlg;
use crate::ikev2::config::ChildProposal;
use crate::wire::{DhGroup, TransformAttr};

/// RFC 2407 §4.5: without a lifetime attribute an SA lives 28800 seconds.
pub const DEFAULT_LIFETIME: u64 = 28800;

/// A negotiated phase 1 transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P1Choice {
    /// Cipher, hash, group.
    pub prop: P1Proposal,
    /// Authentication method.
    pub auth: P1Auth,
    /// Lifetime in seconds.
    pub life_secs: u64,
}

fn p1_encr(e: EncrAlg) -> Option<(P1Encr, Option<u16>)> {
    match e {
        EncrAlg::AesCbc { key_bits } => Some((P1Encr::AES_CBC, Some(key_bits))),
        EncrAlg::TripleDes => Some((P1Encr::TRIPLE_DES_CBC, None)),
        _ => None,
    }
}

/// One phase 1 transform.
pub fn p1_transform(number: u8, p: &P1Proposal, auth: P1Auth, life_secs: u64) -> Option<Transform> {
    let (encr, key_len) = p1_encr(p.encr)?;
    let mut attrs = vec![TransformAttr::Tv(
        P1AttrType::ENCRYPTION_ALGORITHM.0,
        encr.0,
    )];
    if let Some(k) = key_len {
        attrs.push(TransformAttr::Tv(P1AttrType::KEY_LENGTH.0, k));
    }
    attrs.push(TransformAttr::Tv(
        P1AttrType::HASH_ALGORITHM.0,
        p.hash.p1().0,
    ));
    attrs.push(TransformAttr::Tv(P1AttrType::GROUP_DESCRIPTION.0, p.dh.0));
    attrs.push(TransformAttr::Tv(
        P1AttrType::AUTHENTICATION_METHOD.0,
        auth.0,
    ));
    attrs.push(TransformAttr::Tv(
        P1AttrType::LIFE_TYPE.0,
        LifeType::SECONDS.0,
    ));
    attrs.push(attr_basic_or_long(P1AttrType::LIFE_DURATION.0, life_secs));
    Some(Transform {
        number,
        id: KEY_IKE,
        attrs,
    })
}

/// The phase 1 SA payload offering `props` (one proposal, one transform each).
pub fn p1_offer(props: &[P1Proposal], auth: P1Auth, life_secs: u64) -> Sa {
    let transforms = props
        .iter()
        .filter_map(|p| p1_encr(p.encr).map(|_| p))
        .enumerate()
        .filter_map(|(i, p)| p1_transform((i + 1) as u8, p, auth, life_secs))
        .collect();
    Sa {
        doi: DOI_IPSEC,
        situation: SIT_IDENTITY_ONLY,
        proposals: vec![Proposal {
            number: 1,
            protocol: ProtocolId::ISAKMP,
            spi: Vec::new(),
            transforms,
        }],
    }
}

/// Reads a phase 1 transform; `None` if it uses anything this crate does not implement.
pub fn parse_p1(t: &Transform) -> Option<P1Choice> {
    if t.id != KEY_IKE {
        return None;
    }
    let mut encr = None;
    let mut key_len = None;
    let mut hash = None;
    let mut auth = None;
    let mut group = None;
    let mut life_type = None;
    let mut life_secs = None;
    for a in &t.attrs {
        let v = attr_value(a);
        match P1AttrType(attr_type(a)) {
            P1AttrType::ENCRYPTION_ALGORITHM => encr = v,
            P1AttrType::KEY_LENGTH => key_len = v,
            P1AttrType::HASH_ALGORITHM => hash = v,
            P1AttrType::AUTHENTICATION_METHOD => auth = v,
            P1AttrType::GROUP_DESCRIPTION => group = v,
            P1AttrType::LIFE_TYPE => life_type = v,
            P1AttrType::LIFE_DURATION => {
                if life_type == Some(u64::from(LifeType::SECONDS.0)) {
                    life_secs = v;
                }
                // Kilobyte lifetimes of the ISAKMP SA are accepted and not enforced.
            }
            // Private groups, PRFs and anything unknown: not supported.
            _ => return None,
        }
    }
    let encr = match (P1Encr(u16::try_from(encr?).ok()?), key_len) {
        (P1Encr::AES_CBC, Some(k @ (128 | 192 | 256))) => EncrAlg::AesCbc { key_bits: k as u16 },
        (P1Encr::TRIPLE_DES_CBC, None) => EncrAlg::TripleDes,
        _ => return None,
    };
    let hash = HashAlg::from_p1(P1Hash(u16::try_from(hash?).ok()?))?;
    let dh = DhGroup(u16::try_from(group?).ok()?);
    if !dh::is_supported(dh) {
        return None;
    }
    Some(P1Choice {
        prop: P1Proposal { encr, hash, dh },
        auth: P1Auth(u16::try_from(auth?).ok()?),
        life_secs: life_secs.filter(|s| *s > 0).unwrap_or(DEFAULT_LIFETIME),
    })
}

/// Responder: the first transform of the peer's offer that matches one of `ours` with
/// authentication `auth`, and the SA payload answering it (the transform echoed as sent).
pub fn select_p1(offer: &Sa, ours: &[P1Proposal], auth: P1Auth) -> Option<(P1Choice, Sa)> {
    let [p] = offer.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::ISAKMP {
        return None;
    }
    p.transforms.iter().find_map(|t| {
        let c = parse_p1(t)?;
        (c.auth == auth && ours.contains(&c.prop)).then(|| {
            (
                c,
                Sa {
                    doi: offer.doi,
                    situation: offer.situation,
                    proposals: vec![Proposal {
                        number: p.number,
                        protocol: p.protocol,
                        spi: p.spi.clone(),
                        transforms: vec![t.clone()],
                    }],
                },
            )
        })
    })
}

/// Initiator: the responder's answer must be exactly one of the offered transforms.
pub fn accept_p1(answer: &Sa, offered: &[P1Proposal], auth: P1Auth) -> Option<P1Choice> {
    let [p] = answer.proposals.as_slice() else {
        return None;
    };
    let [t] = p.transforms.as_slice() else {
        return None;
    };
    let c = parse_p1(t)?;
    (p.protocol == ProtocolId::ISAKMP && c.auth == auth && offered.contains(&c.prop)).then_some(c)
}

/// A negotiated quick mode (ESP) transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2Choice {
    /// ESP encryption.
    pub encr: EncrAlg,
    /// ESP integrity (None with AES-GCM).
    pub integ: Option<IntegAlg>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// PFS group.
    pub pfs: Option<DhGroup>,
    /// Encapsulation mode as sent.
    pub encap: EncapMode,
    /// Lifetime in seconds (0: none proposed, the RFC default applies).
    pub life_secs: u64,
    /// Lifetime in kilobytes (0: none).
    pub life_kb: u64,
}

impl P2Choice {
    /// Whether it satisfies our proposal `c` (same algorithms; PFS as required).
    pub fn fits(&self, c: &ChildProposal) -> bool {
        self.encr == c.encr
            && self.integ == c.integ
            && self.esn == c.esn
            && match c.pfs {
                Some(g) => self.pfs == Some(g),
                None => true,
            }
    }

    /// Tunnel or transport, whatever the UDP encapsulation.
    pub fn is_tunnel(&self) -> bool {
        matches!(
            self.encap,
            EncapMode::TUNNEL | EncapMode::UDP_ENCAPSULATED_TUNNEL | EncapMode::UDP_TUNNEL_DRAFT
        )
    }
}

fn esp_id(e: EncrAlg) -> Option<(EspTransformId, Option<u16>)> {
    match e {
        EncrAlg::AesCbc { key_bits } => Some((EspTransformId::AES, Some(key_bits))),
        EncrAlg::AesGcm16 { key_bits } => Some((EspTransformId::AES_GCM_16, Some(key_bits))),
        EncrAlg::TripleDes => Some((EspTransformId::TRIPLE_DES, None)),
        _ => None,
    }
}

fn auth_alg(i: IntegAlg) -> AuthAlgorithm {
    match i {
        IntegAlg::HmacSha256_128 => AuthAlgorithm::HMAC_SHA2_256,
        IntegAlg::HmacSha384_192 => AuthAlgorithm::HMAC_SHA2_384,
        IntegAlg::HmacSha512_256 => AuthAlgorithm::HMAC_SHA2_512,
        IntegAlg::HmacSha1_96 => AuthAlgorithm::HMAC_SHA,
        IntegAlg::HmacMd5_96 => AuthAlgorithm::HMAC_MD5,
    }
}

fn integ_alg(a: AuthAlgorithm) -> Option<IntegAlg> {
    Some(match a {
        AuthAlgorithm::HMAC_SHA2_256 => IntegAlg::HmacSha256_128,
        AuthAlgorithm::HMAC_SHA2_384 => IntegAlg::HmacSha384_192,
        AuthAlgorithm::HMAC_SHA2_512 => IntegAlg::HmacSha512_256,
        AuthAlgorithm::HMAC_SHA => IntegAlg::HmacSha1_96,
        AuthAlgorithm::HMAC_MD5 => IntegAlg::HmacMd5_96,
        _ => return None,
    })
}

/// Whether IKEv1 can negotiate `c` for ESP.
pub fn esp_supported(c: &ChildProposal) -> bool {
    esp_id(c.encr).is_some() && (c.encr.is_aead() == c.integ.is_none())
}

/// One ESP transform with lifetimes `(seconds, kilobytes)` (0: omitted).
pub fn esp_transform(
    number: u8,
    c: &ChildProposal,
    pfs: Option<DhGroup>,
    encap: EncapMode,
    life: (u64, u64),
) -> Option<Transform> {
    let (id, key_len) = esp_id(c.encr)?;
    let mut attrs = Vec::new();
    if life.0 > 0 {
        attrs.push(TransformAttr::Tv(
            IpsecAttrType::SA_LIFE_TYPE.0,
            LifeType::SECONDS.0,
        ));
        attrs.push(attr_basic_or_long(
            IpsecAttrType::SA_LIFE_DURATION.0,
            life.0,
        ));
    }
    if life.1 > 0 {
        attrs.push(TransformAttr::Tv(
            IpsecAttrType::SA_LIFE_TYPE.0,
            LifeType::KILOBYTES.0,
        ));
        attrs.push(attr_basic_or_long(
            IpsecAttrType::SA_LIFE_DURATION.0,
            life.1,
        ));
    }
    if let Some(g) = pfs {
        attrs.push(TransformAttr::Tv(IpsecAttrType::GROUP_DESCRIPTION.0, g.0));
    }
    attrs.push(TransformAttr::Tv(
        IpsecAttrType::ENCAPSULATION_MODE.0,
        encap.0,
    ));
    if let Some(i) = c.integ {
        attrs.push(TransformAttr::Tv(
            IpsecAttrType::AUTHENTICATION_ALGORITHM.0,
            auth_alg(i).0,
        ));
    }
    if let Some(k) = key_len {
        attrs.push(TransformAttr::Tv(IpsecAttrType::KEY_LENGTH.0, k));
    }
    if c.esn {
        attrs.push(TransformAttr::Tv(
            IpsecAttrType::EXTENDED_SEQUENCE_NUMBER.0,
            1,
        ));
    }
    Some(Transform {
        number,
        id: id.0,
        attrs,
    })
}

/// Reads an ESP transform; `None` if anything in it is not implemented.
pub fn parse_esp(t: &Transform) -> Option<P2Choice> {
    let mut key_len = None;
    let mut auth = None;
    let mut group = None;
    let mut encap = None;
    let mut esn = false;
    let mut life_type = None;
    let (mut secs, mut kb) = (0, 0);
    for a in &t.attrs {
        let v = attr_value(a);
        match IpsecAttrType(attr_type(a)) {
            IpsecAttrType::SA_LIFE_TYPE => life_type = v,
            IpsecAttrType::SA_LIFE_DURATION => match life_type.map(|x| LifeType(x as u16)) {
                Some(LifeType::SECONDS) => secs = v?,
                Some(LifeType::KILOBYTES) => kb = v?,
                _ => return None,
            },
            IpsecAttrType::GROUP_DESCRIPTION => group = v,
            IpsecAttrType::ENCAPSULATION_MODE => encap = v,
            IpsecAttrType::AUTHENTICATION_ALGORITHM => auth = v,
            IpsecAttrType::KEY_LENGTH => key_len = v,
            IpsecAttrType::EXTENDED_SEQUENCE_NUMBER => esn = v == Some(1),
            _ => return None,
        }
    }
    let encr = match (EspTransformId(t.id), key_len) {
        (EspTransformId::AES, Some(k @ (128 | 192 | 256))) => {
            EncrAlg::AesCbc { key_bits: k as u16 }
        }
        (EspTransformId::AES_GCM_16, Some(k @ (128 | 256))) => {
            EncrAlg::AesGcm16 { key_bits: k as u16 }
        }
        (EspTransformId::TRIPLE_DES, None) => EncrAlg::TripleDes,
        _ => return None,
    };
    let integ = match auth {
        Some(a) => Some(integ_alg(AuthAlgorithm(u16::try_from(a).ok()?))?),
        None => None,
    };
    if encr.is_aead() != integ.is_none() {
        return None;
    }
    let pfs = match group {
        Some(g) => {
            let g = DhGroup(u16::try_from(g).ok()?);
            dh::is_supported(g).then_some(g)?;
            Some(g)
        }
        None => None,
    };
    Some(P2Choice {
        encr,
        integ,
        esn,
        pfs,
        encap: EncapMode(u16::try_from(encap?).ok()?),
        life_secs: secs,
        life_kb: kb,
    })
}

/// The encapsulation mode value for tunnel/transport with or without NAT-T.
pub fn encap_mode(tunnel: bool, udp: bool) -> EncapMode {
    match (tunnel, udp) {
        (true, false) => EncapMode::TUNNEL,
        (false, false) => EncapMode::TRANSPORT,
        (true, true) => EncapMode::UDP_ENCAPSULATED_TUNNEL,
        (false, true) => EncapMode::UDP_ENCAPSULATED_TRANSPORT,
    }
}

/// Whether an encapsulation value says UDP encapsulation (RFC or draft numbers).
pub fn is_udp_encap(e: EncapMode) -> bool {
    matches!(
        e,
        EncapMode::UDP_ENCAPSULATED_TUNNEL
            | EncapMode::UDP_ENCAPSULATED_TRANSPORT
            | EncapMode::UDP_TUNNEL_DRAFT
            | EncapMode::UDP_TRANSPORT_DRAFT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p1_offer_select_accept() {
        let ours = super::super::config::default_p1_proposals();
        let offer = p1_offer(&ours[2..4], P1Auth::PRE_SHARED_KEY, 28800);
        let (c, reply) =
            select_p1(&offer, &ours, P1Auth::PRE_SHARED_KEY).unwrap_or_else(|| panic!());
        assert_eq!(c.prop, ours[2]);
        assert_eq!(c.life_secs, 28800);
        assert_eq!(
            accept_p1(&reply, &ours[2..4], P1Auth::PRE_SHARED_KEY),
            Some(c)
        );
        assert!(accept_p1(&reply, &ours[3..4], P1Auth::PRE_SHARED_KEY).is_none());
        assert!(select_p1(&offer, &ours, P1Auth::RSA_SIGNATURES).is_none());
        assert!(select_p1(&offer, &ours[5..], P1Auth::PRE_SHARED_KEY).is_none());
    }

    #[test]
    fn esp_round_trip() {
        for c in [
            ChildProposal::DEFAULT,
            ChildProposal {
                encr: EncrAlg::AesCbc { key_bits: 128 },
                integ: Some(IntegAlg::HmacSha256_128),
                esn: true,
                pfs: Some(DhGroup::CURVE25519),
            },
        ] {
            let t = esp_transform(1, &c, c.pfs, EncapMode::TUNNEL, (3600, 100_000))
                .unwrap_or_else(|| panic!());
            let p = parse_esp(&t).unwrap_or_else(|| panic!());
            assert!(p.fits(&c));
            assert_eq!((p.life_secs, p.life_kb), (3600, 100_000));
            assert!(p.is_tunnel());
        }
        let chacha = ChildProposal {
            encr: EncrAlg::ChaCha20Poly1305,
            ..ChildProposal::DEFAULT
        };
        assert!(!esp_supported(&chacha));
    }
}
