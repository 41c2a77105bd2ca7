//! Building SA payloads from configured proposals and choosing among a peer's (RFC 7296 §2.7,
//! §3.3).

use crate::crypto::encr::EncrAlg;
use crate::crypto::integ::IntegAlg;
use crate::crypto::keys::IkeSuite;
use crate::crypto::prf::PrfAlg;
use crate::ikev2::config::ChildProposal;
use crate::wire::{
    DhGroup, EncrId, EsnId, IntegId, PrfId, Proposal, ProtocolId, Sa, Transform, TransformType,
};

fn ike_transforms(s: &IkeSuite) -> Vec<Transform> {
    let mut t = vec![s.encr.transform()];
    t.push(Transform::new(TransformType::PRF, s.prf.id().0));
    if let Some(i) = s.integ {
        t.push(Transform::new(TransformType::INTEG, i.id().0));
    }
    t.push(Transform::new(TransformType::DH, s.dh.0));
    t
}

fn child_transforms(c: &ChildProposal, with_dh: bool) -> Vec<Transform> {
    let mut t = vec![c.encr.transform()];
    if let Some(i) = c.integ {
        t.push(Transform::new(TransformType::INTEG, i.id().0));
    }
    if with_dh && let Some(g) = c.pfs {
        t.push(Transform::new(TransformType::DH, g.0));
    }
    t.push(Transform::new(
        TransformType::ESN,
        if c.esn { EsnId::ESN.0 } else { EsnId::NO_ESN.0 },
    ));
    t
}

/// An IKE SA payload offering `suites` (one proposal each) with `spi` (empty initially,
/// 8 bytes when rekeying).
pub(crate) fn ike_offer(suites: &[IkeSuite], spi: &[u8]) -> Sa {
    Sa {
        proposals: suites
            .iter()
            .enumerate()
            .map(|(i, s)| Proposal {
                number: (i + 1) as u8,
                protocol: ProtocolId::IKE,
                spi: spi.to_vec(),
                transforms: ike_transforms(s),
            })
            .collect(),
    }
}

/// An ESP SA payload offering `proposals` with our inbound `spi`.
pub(crate) fn child_offer(proposals: &[ChildProposal], spi: u32, with_dh: bool) -> Sa {
    Sa {
        proposals: proposals
            .iter()
            .enumerate()
            .map(|(i, c)| Proposal {
                number: (i + 1) as u8,
                protocol: ProtocolId::ESP,
                spi: spi.to_be_bytes().to_vec(),
                transforms: child_transforms(c, with_dh),
            })
            .collect(),
    }
}

fn has(p: &Proposal, ty: TransformType, id: u16, key_len: Option<u16>) -> bool {
    p.transforms
        .iter()
        .any(|t| t.ty == ty && t.id == id && t.key_length() == key_len)
}

fn types_present(p: &Proposal, ty: TransformType) -> bool {
    p.transforms.iter().any(|t| t.ty == ty)
}

fn ike_suite_in(p: &Proposal, s: &IkeSuite) -> bool {
    let e = s.encr.transform();
    let integ_ok = match s.integ {
        Some(i) => has(p, TransformType::INTEG, i.id().0, None),
        None => p
            .transforms
            .iter()
            .all(|t| t.ty != TransformType::INTEG || t.id == IntegId::NONE.0),
    };
    has(p, TransformType::ENCR, e.id, e.key_length())
        && has(p, TransformType::PRF, s.prf.id().0, None)
        && has(p, TransformType::DH, s.dh.0, None)
        && integ_ok
}

/// Responder: the first of the peer's IKE proposals (peer order) that contains one of our
/// suites. Returns the suite and the proposal to echo (peer's number, `spi`).
pub(crate) fn select_ike(offer: &Sa, ours: &[IkeSuite], spi: &[u8]) -> Option<(IkeSuite, Sa)> {
    for p in offer
        .proposals
        .iter()
        .filter(|p| p.protocol == ProtocolId::IKE)
    {
        for s in ours {
            if ike_suite_in(p, s) {
                let sa = Sa {
                    proposals: vec![Proposal {
                        number: p.number,
                        protocol: ProtocolId::IKE,
                        spi: spi.to_vec(),
                        transforms: ike_transforms(s),
                    }],
                };
                return Some((*s, sa));
            }
        }
    }
    None
}

/// Initiator: reads the responder's single chosen IKE proposal; it must be one we offered.
pub(crate) fn accept_ike(answer: &Sa, offered: &[IkeSuite]) -> Option<(IkeSuite, Vec<u8>)> {
    let [p] = answer.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::IKE {
        return None;
    }
    let s = parse_single_ike(p)?;
    offered.contains(&s).then(|| (s, p.spi.clone()))
}

fn one(p: &Proposal, ty: TransformType) -> Option<&Transform> {
    let mut it = p.transforms.iter().filter(|t| t.ty == ty);
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

fn parse_single_ike(p: &Proposal) -> Option<IkeSuite> {
    let e = one(p, TransformType::ENCR)?;
    let encr = EncrAlg::from_transform(EncrId(e.id), e.key_length())?;
    let prf = PrfAlg::from_id(PrfId(one(p, TransformType::PRF)?.id))?;
    let integ = match p.transforms.iter().find(|t| t.ty == TransformType::INTEG) {
        Some(t) if t.id != IntegId::NONE.0 => Some(IntegAlg::from_id(IntegId(t.id))?),
        _ => None,
    };
    if encr.is_aead() == integ.is_some() {
        return None;
    }
    let dh = DhGroup(one(p, TransformType::DH)?.id);
    Some(IkeSuite {
        encr,
        integ,
        prf,
        dh,
    })
}

fn child_in(p: &Proposal, c: &ChildProposal, want_dh: bool) -> bool {
    let e = c.encr.transform();
    let integ_ok = match c.integ {
        Some(i) => has(p, TransformType::INTEG, i.id().0, None),
        None => p
            .transforms
            .iter()
            .all(|t| t.ty != TransformType::INTEG || t.id == IntegId::NONE.0),
    };
    let esn_ok = if types_present(p, TransformType::ESN) {
        has(
            p,
            TransformType::ESN,
            if c.esn { EsnId::ESN.0 } else { EsnId::NO_ESN.0 },
            None,
        )
    } else {
        !c.esn
    };
    let dh_ok = match (want_dh, c.pfs) {
        (true, Some(g)) => has(p, TransformType::DH, g.0, None),
        (true, None) | (false, _) => p
            .transforms
            .iter()
            .all(|t| t.ty != TransformType::DH || t.id == DhGroup::NONE.0),
    };
    has(p, TransformType::ENCR, e.id, e.key_length()) && integ_ok && esn_ok && dh_ok
}

/// Responder: the first of the peer's ESP proposals containing one of ours. `pfs` says
/// whether the request carries a KE payload (then the DH transform must match ours).
/// Returns our proposal, the peer's SPI and the SA payload to answer with (our `spi`).
pub(crate) fn select_child(
    offer: &Sa,
    ours: &[ChildProposal],
    pfs: bool,
    spi: u32,
) -> Option<(ChildProposal, u32, Sa)> {
    for p in offer
        .proposals
        .iter()
        .filter(|p| p.protocol == ProtocolId::ESP)
    {
        let Ok(peer_spi) = <[u8; 4]>::try_from(p.spi.as_slice()) else {
            continue;
        };
        for c in ours {
            let c = if pfs {
                *c
            } else {
                ChildProposal { pfs: None, ..*c }
            };
            if pfs && c.pfs.is_none() {
                continue;
            }
            if child_in(p, &c, pfs) {
                let sa = Sa {
                    proposals: vec![Proposal {
                        number: p.number,
                        protocol: ProtocolId::ESP,
                        spi: spi.to_be_bytes().to_vec(),
                        transforms: child_transforms(&c, pfs),
                    }],
                };
                return Some((c, u32::from_be_bytes(peer_spi), sa));
            }
        }
    }
    None
}

/// Initiator: reads the responder's chosen ESP proposal; returns it and the peer's SPI.
pub(crate) fn accept_child(
    answer: &Sa,
    offered: &[ChildProposal],
    pfs: bool,
) -> Option<(ChildProposal, u32)> {
    let [p] = answer.proposals.as_slice() else {
        return None;
    };
    if p.protocol != ProtocolId::ESP {
        return None;
    }
    let spi = u32::from_be_bytes(<[u8; 4]>::try_from(p.spi.as_slice()).ok()?);
    offered
        .iter()
        .map(|c| {
            if pfs {
                *c
            } else {
                ChildProposal { pfs: None, ..*c }
            }
        })
        .find(|c| child_in(p, c, pfs) && p.transforms.len() == child_transforms(c, pfs).len())
        .map(|c| (c, spi))
}
