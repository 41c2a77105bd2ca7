//! Property test: the compiled classifier (the eBPF program's tables, run in
//! user space) decides exactly as the linear reference model, on random
//! rule sets and random packets, IPv4 and IPv6, with dynamic filters.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test generators index fixed tables and unwrap valid constructions"
)]

mod randgen;

use std::net::IpAddr;

use gatekey_config::filter::{Family, FilterRule, FilterSet, L4Match, PortRange, Routing};
use gatekey_dataplane::compile::{Decider, Dir, PacketDesc, compile, entries, order};
use gatekey_dataplane::model::evaluate;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn compiled_tables_decide_like_the_reference_model() {
    let mut rng = StdRng::seed_from_u64(0x6761_7465_6b65_7931);
    let mut cases = 0usize;
    let mut permitted = 0usize;
    let mut by_rule = 0usize;
    for round in 0..400 {
        let (set, dynamic) = randgen::rule_set(&mut rng, 14);
        let compiled = compile(0, &set, &dynamic, 100_000).expect("compiles");
        let ordered = order(&set, &dynamic).unwrap();
        let ents = [entries(&ordered, Dir::In), entries(&ordered, Dir::Out)];
        for _ in 0..60 {
            let pkt = randgen::packet(&mut rng);
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
