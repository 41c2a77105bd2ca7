//! Property test: the compiled classifier (the eBPF program's tables, run in
//! user space) decides exactly as the linear reference model, on random
//! rule sets and random packets, IPv4 and IPv6, with dynamic filters.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test generators index fixed tables and unwrap valid constructions"
)]

use std::net::IpAddr;

use gatekey_config::filter::{
    AddrRange, ConnectDir, Direction, Family, FilterAction, FilterRule, FilterSet, L4Match,
    LogMode, PortRange, Routing,
};
use gatekey_dataplane::compile::{
    Decider, Dir, DynamicFilter, PacketDesc, SaMatch, compile, entries, order,
};
use gatekey_dataplane::model::evaluate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const V4_BASE: u32 = 0x0a00_0000; // 10.0.0.0
const V6_BASE: u128 = 0xfd00_0000_0000_0000_0000_0000_0000_0000;

fn addr(rng: &mut StdRng, family: Family) -> IpAddr {
    // A small universe so that rules overlap, plus the odd outsider.
    let off: u32 = if rng.random_bool(0.05) {
        200
    } else {
        rng.random_range(0..24)
    };
    match family {
        Family::V4 => IpAddr::V4((V4_BASE + off).into()),
        Family::V6 => IpAddr::V6((V6_BASE + u128::from(off)).into()),
    }
}

fn ranges(rng: &mut StdRng, family: Family) -> Vec<AddrRange> {
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

const PORTS: [u16; 9] = [0, 1, 22, 80, 443, 1024, 4500, 50000, 65535];

fn port_range(rng: &mut StdRng) -> PortRange {
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

fn small_range(rng: &mut StdRng) -> PortRange {
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

fn rule(rng: &mut StdRng, name: String, ipsec_ok: bool) -> FilterRule {
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

fn packet(rng: &mut StdRng) -> PacketDesc {
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
        ports_known: !(fragment && rng.random_bool(0.5)),
        fragment,
        syn: protocol == 6 && rng.random_bool(0.4),
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

#[test]
fn compiled_tables_decide_like_the_reference_model() {
    let mut rng = StdRng::seed_from_u64(0x6761_7465_6b65_7931);
    let mut cases = 0usize;
    let mut permitted = 0usize;
    let mut by_rule = 0usize;
    for round in 0..400 {
        let n = rng.random_range(0..14);
        let rules: Vec<FilterRule> = (0..n)
            .map(|i| rule(&mut rng, format!("R{i}"), true))
            .collect();
        let anchors: Vec<String> = rules
            .iter()
            .filter(|r| matches!(r.action, FilterAction::IpSec { .. }))
            .map(|r| r.name.clone())
            .collect();
        let mut dynamic = Vec::new();
        for (k, a) in anchors.iter().enumerate() {
            for j in 0..rng.random_range(0..3) {
                let mut r = rule(&mut rng, format!("D{k}.{j}"), false);
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
        let set = FilterSet {
            rules,
            log_enabled: false,
            log_implicit: false,
        };
        let compiled = compile(0, &set, &dynamic, 100_000).expect("compiles");
        let ordered = order(&set, &dynamic).unwrap();
        let ents = [entries(&ordered, Dir::In), entries(&ordered, Dir::Out)];
        for _ in 0..60 {
            let pkt = packet(&mut rng);
            let want = evaluate(&set, &dynamic, &pkt);
            let got = compiled.classify(&pkt);
            let d = usize::from(pkt.dir == Dir::Out);
            let got_ordinal = match got.decider {
                Decider::Entry(i) => Some(ents[d][i].ordinal),
                _ => None,
            };
            let got_matches: Vec<usize> = got.matches.iter().map(|&i| ents[d][i].ordinal).collect();
            assert_eq!(
                (got.permitted, got_ordinal, &got_matches),
                (want.permitted, want.ordinal, &want.matches),
                "round {round}: packet {pkt:?}\nrules: {:#?}\ndynamic: {dynamic:#?}",
                set.rules
            );
            assert_eq!(got.decider == Decider::IcmpException, want.icmp_exception);
            cases += 1;
            permitted += usize::from(got.permitted);
            by_rule += usize::from(want.ordinal.is_some());
        }
    }
    // The generator must exercise both outcomes and real matches.
    assert!(cases >= 20_000, "{cases}");
    assert!(
        permitted > cases / 20 && permitted < cases * 19 / 20,
        "{permitted}/{cases}"
    );
    assert!(by_rule > cases / 5, "{by_rule}/{cases}");
    eprintln!("{cases} packets: {permitted} permitted, {by_rule} decided by a filter");
}

#[test]
fn four_thousand_rules_compile_and_classify() {
    // The benchmark's shape: 3,999 non-matching UDP rules, the decisive one
    // last.
    let mut rules = Vec::new();
    for i in 0..4000u16 {
        let mut r = FilterRule::permit_all(format!("SYSDEFAULTRULE.{}", i + 1), Family::V4);
        r.protocol = Some(17);
        r.routing = Routing::Local;
        let port = if i == 3999 { 9000 } else { 10_000 + i };
        r.l4 = L4Match::Ports {
            src: PortRange::ANY,
            dst: PortRange::single(port),
        };
        rules.push(r);
    }
    let set = FilterSet {
        rules,
        log_enabled: false,
        log_implicit: false,
    };
    let t = std::time::Instant::now();
    let c = compile(0, &set, &[], 12288).expect("compiles");
    eprintln!(
        "compiled 4000 rules in {:?}, {} classes",
        t.elapsed(),
        c.class_count()
    );
    let a: IpAddr = "10.1.0.1".parse().unwrap();
    let b: IpAddr = "10.1.0.2".parse().unwrap();
    // Inbound: the rule is mirrored, so the configured destination port is
    // the packet's source port.
    let hit = c.classify(&PacketDesc::new(Dir::In, a, b, 17, 9000, 5555));
    assert!(hit.permitted);
    assert_eq!(hit.decider, Decider::Entry(3999));
    let out = c.classify(&PacketDesc::new(Dir::Out, a, b, 17, 5555, 9000));
    assert_eq!(out.decider, Decider::Entry(3999));
    let miss = c.classify(&PacketDesc::new(Dir::In, a, b, 17, 9001, 5555));
    assert_eq!(miss.decider, Decider::ImplicitDeny);
}
