//! Random rule sets and packets shared by the equivalence tests.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::net::IpAddr;

use gatekey_config::filter::{
    AddrRange, ConnectDir, Direction, Family, FilterAction, FilterRule, FilterSet, L4Match,
    LogMode, PortRange, Routing,
};
use gatekey_dataplane::compile::{Dir, DynamicFilter, PacketDesc, SaMatch};
use rand::Rng;
use rand::rngs::StdRng;

const V4_BASE: u32 = 0x0a00_0000; // 10.0.0.0
const V6_BASE: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0000;

pub fn addr(rng: &mut StdRng, family: Family) -> IpAddr {
    // A small universe so that rules overlap, plus the odd outsider.
    let off: u32 = if rng.random_bool(0.05) {
        200
    } else {
        rng.random_range(1..25)
    };
    match family {
        Family::V4 => IpAddr::V4((V4_BASE + off).into()),
        Family::V6 => IpAddr::V6((V6_BASE + u128::from(off)).into()),
    }
}

pub fn ranges(rng: &mut StdRng, family: Family) -> Vec<AddrRange> {
    if rng.random_bool(0.5) {
        return Vec::new();
    }
    (0..rng.random_range(1..=3))
        .map(|_| match rng.random_range(0..3) {
            0 => AddrRange::host(addr(rng, family)),
            1 => {
                let len = match family {
                    Family::V4 => rng.random_range(27..=32),
                    Family::V6 => rng.random_range(123..=128),
                };
                AddrRange::prefix(addr(rng, family), len).unwrap()
            }
            _ => {
                let (a, b) = (addr(rng, family), addr(rng, family));
                AddrRange::range(a.min(b), a.max(b)).unwrap()
            }
        })
        .collect()
}

pub const PORTS: [u16; 9] = [0, 1, 22, 80, 443, 1024, 4500, 50000, 65535];

pub fn port_range(rng: &mut StdRng) -> PortRange {
    if rng.random_bool(0.5) {
        return PortRange::ANY;
    }
    let a = PORTS[rng.random_range(0..PORTS.len())];
    let b = PORTS[rng.random_range(0..PORTS.len())];
    PortRange {
        lo: a.min(b),
        hi: a.max(b),
    }
}

pub fn small_range(rng: &mut StdRng) -> PortRange {
    if rng.random_bool(0.4) {
        return PortRange::ANY_U8;
    }
    let a = rng.random_range(0..6u16);
    let b = rng.random_range(0..6u16);
    PortRange {
        lo: a.min(b),
        hi: a.max(b),
    }
}

pub fn rule(rng: &mut StdRng, name: String, ipsec_ok: bool) -> FilterRule {
    let family = if rng.random_bool(0.5) {
        Family::V4
    } else {
        Family::V6
    };
    let protocol = match rng.random_range(0..8) {
        0 | 1 => None,
        2 | 3 => Some(6u8),
        4 => Some(17),
        5 => Some(if family == Family::V4 { 1 } else { 58 }),
        6 => Some(89),
        _ => Some(47),
    };
    let l4 = match protocol {
        Some(6 | 17) => L4Match::Ports {
            src: port_range(rng),
            dst: port_range(rng),
        },
        Some(1 | 58) => L4Match::Icmp {
            types: small_range(rng),
            codes: small_range(rng),
        },
        Some(89) => L4Match::Ospf {
            types: small_range(rng),
        },
        _ => L4Match::Any,
    };
    let direction = match rng.random_range(0..4) {
        0 => Direction::Inbound,
        1 => Direction::Outbound,
        _ => Direction::Bidirectional,
    };
    let connect = if direction == Direction::Bidirectional
        && matches!(protocol, None | Some(6))
        && rng.random_bool(0.3)
    {
        Some(if rng.random_bool(0.5) {
            ConnectDir::Inbound
        } else {
            ConnectDir::Outbound
        })
    } else {
        None
    };
    let routing = match rng.random_range(0..4) {
        0 => Routing::Routed,
        1 => Routing::Either,
        _ => Routing::Local,
    };
    let action = match rng.random_range(0..if ipsec_ok { 5 } else { 4 }) {
        0 | 1 => FilterAction::Permit,
        2 | 3 => FilterAction::Deny,
        _ => FilterAction::IpSec {
            vpn_action: "dyn".into(),
            manual: false,
        },
    };
    FilterRule {
        name,
        pos: Default::default(),
        family,
        src: ranges(rng, family),
        dst: ranges(rng, family),
        protocol,
        l4,
        routing,
        fragments_only: routing == Routing::Routed && rng.random_bool(0.2),
        secclass: if rng.random_bool(0.9) {
            0
        } else {
            rng.random_range(1..3)
        },
        direction,
        connect,
        action,
        log: LogMode::None,
        discard: Default::default(),
    }
}

pub fn packet(rng: &mut StdRng) -> PacketDesc {
    let family = if rng.random_bool(0.5) {
        Family::V4
    } else {
        Family::V6
    };
    let protocol = [6u8, 6, 17, 17, 1, 58, 89, 47, 50, 51][rng.random_range(0..10)];
    let (sport, dport) = match protocol {
        6 | 17 => (
            PORTS[rng.random_range(0..PORTS.len())].saturating_add(rng.random_range(0..2)),
            PORTS[rng.random_range(0..PORTS.len())].saturating_sub(rng.random_range(0..2)),
        ),
        1 | 58 => (rng.random_range(0..6), rng.random_range(0..6)),
        89 => (rng.random_range(0..6), 0),
        _ => (0, 0),
    };
    let fragment = rng.random_bool(0.15);
    let ports_known = !(fragment && rng.random_bool(0.5));
    PacketDesc {
        dir: if rng.random_bool(0.5) {
            Dir::In
        } else {
            Dir::Out
        },
        src: addr(rng, family),
        dst: addr(rng, family),
        protocol,
        sport,
        dport,
        ports_known,
        fragment,
        // A later fragment has no TCP header, so no flags.
        syn: protocol == 6 && ports_known && rng.random_bool(0.4),
        routed: rng.random_bool(0.2),
        secclass: rng.random_range(0..3),
        hop_limit: [1u8, 64, 255][rng.random_range(0..3)],
        sa: if rng.random_bool(0.4) {
            Some((rng.random_range(1..3), rng.random_range(1..3)))
        } else {
            None
        },
    }
}

/// A random set of up to `max` rules with dynamic filters for its anchors.
pub fn rule_set(rng: &mut StdRng, max: usize) -> (FilterSet, Vec<DynamicFilter>) {
    let n = rng.random_range(0..max);
    let rules: Vec<FilterRule> = (0..n).map(|i| rule(rng, format!("R{i}"), true)).collect();
    let anchors: Vec<String> = rules
        .iter()
        .filter(|r| matches!(r.action, FilterAction::IpSec { .. }))
        .map(|r| r.name.clone())
        .collect();
    let mut dynamic = Vec::new();
    for (k, a) in anchors.iter().enumerate() {
        for j in 0..rng.random_range(0..3) {
            let mut r = rule(rng, format!("D{k}.{j}"), false);
            r.action = FilterAction::IpSec {
                vpn_action: "dyn".into(),
                manual: false,
            };
            dynamic.push(DynamicFilter {
                anchor: a.clone(),
                rule: r,
                sa: SaMatch {
                    reqid: rng.random_range(1..3),
                    spi: rng.random_bool(0.5).then(|| rng.random_range(1..3)),
                },
            });
        }
    }
    (
        FilterSet {
            rules,
            log_enabled: false,
            log_implicit: false,
        },
        dynamic,
    )
}
