//! The reference model: a straightforward linear first-match evaluation of a
//! filter set, written directly from the configuration semantics (not from
//! the compiled tables). Tests check that the compiled classifier
//! ([`crate::compile::Compiled::classify`]) and the eBPF program agree with
//! it.

use gatekey_config::filter::{
    AddrRange, ConnectDir, Direction, Family, FilterAction, FilterRule, FilterSet, L4Match, Routing,
};

use crate::compile::{Dir, DynamicFilter, PacketDesc, SaMatch, order};

/// The reference model's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDecision {
    /// Whether the packet passes.
    pub permitted: bool,
    /// Index (in evaluation order, see [`crate::compile::order`]) of the
    /// deciding filter; `None` for the implicit deny or an ICMP exception.
    pub ordinal: Option<usize>,
    /// Every matching filter (evaluation order).
    pub matches: Vec<usize>,
    /// A stack-required ICMP message passed before the filters.
    pub icmp_exception: bool,
}

fn in_any(ranges: &[AddrRange], a: std::net::IpAddr) -> bool {
    ranges.is_empty() || ranges.iter().any(|r| r.contains(a))
}

/// Does `rule` match `pkt`?
pub fn rule_matches(rule: &FilterRule, pkt: &PacketDesc) -> bool {
    let family = if pkt.src.is_ipv4() {
        Family::V4
    } else {
        Family::V6
    };
    if rule.family != family {
        return false;
    }
    match rule.direction {
        Direction::Bidirectional => {}
        Direction::Inbound if pkt.dir == Dir::In => {}
        Direction::Outbound if pkt.dir == Dir::Out => {}
        _ => return false,
    }
    // Rules are written for outbound packets; a bidirectional rule applies
    // to inbound packets with source and destination swapped.
    let mirrored = rule.direction == Direction::Bidirectional && pkt.dir == Dir::In;
    let (src, dst) = if mirrored {
        (&rule.dst, &rule.src)
    } else {
        (&rule.src, &rule.dst)
    };
    if !in_any(src, pkt.src) || !in_any(dst, pkt.dst) {
        return false;
    }
    if rule.protocol.is_some_and(|p| p != pkt.protocol) {
        return false;
    }
    let l4 = if !pkt.ports_known {
        rule.l4.is_any()
    } else {
        match rule.l4 {
            L4Match::Any => true,
            L4Match::Ports { src, dst } => {
                let (s, d) = if mirrored { (dst, src) } else { (src, dst) };
                s.contains(pkt.sport) && d.contains(pkt.dport)
            }
            L4Match::Icmp { types, codes } => {
                types.contains(pkt.sport) && codes.contains(pkt.dport)
            }
            L4Match::Ospf { types } => types.contains(pkt.sport),
        }
    };
    if !l4 {
        return false;
    }
    let routing = match rule.routing {
        Routing::Local => !pkt.routed,
        Routing::Routed => pkt.routed,
        Routing::Either => true,
    };
    if !routing || (rule.fragments_only && !pkt.fragment) {
        return false;
    }
    if rule.secclass != 0 && rule.secclass != pkt.secclass {
        return false;
    }
    // INBConnect: connections may only be opened inbound, so an outbound SYN
    // does not match (and vice versa).
    let syn_blocked = pkt.syn
        && matches!(
            (rule.connect, pkt.dir),
            (Some(ConnectDir::Inbound), Dir::Out) | (Some(ConnectDir::Outbound), Dir::In)
        );
    !syn_blocked
}

/// May a packet that matched an IpSec filter pass?
fn ipsec_passes(pkt: &PacketDesc, sa: Option<SaMatch>) -> bool {
    if pkt.is_protected_form() {
        return true;
    }
    match (pkt.dir, sa) {
        (Dir::In, Some(want)) => pkt
            .sa
            .is_some_and(|(reqid, spi)| reqid == want.reqid && want.spi.is_none_or(|s| s == spi)),
        _ => false,
    }
}

/// Evaluate `pkt` against `set` plus `dynamic` filters: stack-required ICMP
/// first, then the first matching filter, else the implicit deny.
pub fn evaluate(set: &FilterSet, dynamic: &[DynamicFilter], pkt: &PacketDesc) -> ModelDecision {
    if pkt.is_icmp_exception() {
        return ModelDecision {
            permitted: true,
            ordinal: None,
            matches: Vec::new(),
            icmp_exception: true,
        };
    }
    let Ok(ordered) = order(set, dynamic) else {
        return ModelDecision {
            permitted: false,
            ordinal: None,
            matches: Vec::new(),
            icmp_exception: false,
        };
    };
    let matches: Vec<usize> = ordered
        .iter()
        .enumerate()
        .filter(|(_, o)| rule_matches(o.rule, pkt))
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = matches.first() else {
        return ModelDecision {
            permitted: false,
            ordinal: None,
            matches,
            icmp_exception: false,
        };
    };
    let permitted = ordered.get(first).is_some_and(|o| match o.rule.action {
        FilterAction::Permit => true,
        FilterAction::Deny => false,
        FilterAction::IpSec { .. } => ipsec_passes(pkt, o.sa),
    });
    ModelDecision {
        permitted,
        ordinal: Some(first),
        matches,
        icmp_exception: false,
    }
}
