//! Property test in the kernel: the loaded eBPF program (run on crafted
//! frames with `BPF_PROG_TEST_RUN`, after the real installer wrote the
//! tables) decides exactly as the reference model, and counts each packet
//! on the filter that decided it. Random rule sets and packets, IPv4 and
//! IPv6, fragments, TCP SYN, security classes, dynamic filters.
#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: fixed tables and valid constructions"
)]

mod randgen;

use std::collections::BTreeMap;

use aya::maps::HashMap;
use aya::programs::{TestRun, TestRunOptions};
use gatekey_dataplane::compile::{Dir, PacketDesc, compile, entries, order};
use gatekey_dataplane::dataplane::{Dataplane, Options, SetId};
use gatekey_dataplane::model::evaluate;
use gatekey_dataplane::testnet::{Frag, TempNetns, frame, privileged};
use gatekey_dataplane_common::{IfInfo, MAP_IFINFO, PROG_IN_ETH, PROG_OUT_ETH};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TC_ACT_UNSPEC: u32 = u32::MAX;
const TC_ACT_SHOT: u32 = 2;

/// A `__sk_buff` prefix for `ctx_in`: `ingress_ifindex` at 36, `ifindex` at
/// 40 (the other fields up to `cb` must be zero).
fn skb_ctx(ifindex: u32, ingress_ifindex: u32) -> [u8; 48] {
    let mut c = [0u8; 48];
    c[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    c[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    c
}

#[test]
fn the_kernel_program_decides_like_the_reference_model() {
    if !privileged("the_kernel_program_decides_like_the_reference_model") {
        return;
    }
    let ns = TempNetns::new("gkkeq").unwrap();
    ns.ip(&["link", "add", "d1", "type", "veth", "peer", "name", "d2"])
        .unwrap();
    // Forwarding on, and two local addresses in the generator's ranges: the
    // program's FIB lookups then find local and routed traffic.
    ns.exec("sysctl", &["-qw", "net.ipv4.conf.all.forwarding=1"])
        .unwrap();
    ns.exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"])
        .unwrap();
    ns.exec("sysctl", &["-qw", "net.ipv6.conf.all.accept_dad=0"])
        .unwrap();
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "d1"]).unwrap();
    ns.ip(&["addr", "add", "fd00::1/64", "dev", "d1", "nodad"])
        .unwrap();
    ns.ip(&["link", "set", "d1", "up"]).unwrap();
    ns.ip(&["link", "set", "d2", "up"]).unwrap();
    let local: [std::net::IpAddr; 2] = ["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
    let d1 = ns
        .stack()
        .run_in(|| nix::net::if_::if_nametoindex("d1").unwrap())
        .unwrap();
    let opts = Options {
        classes_per_slot: 4096,
        ..Options::default()
    };
    let mut dp = Dataplane::open_with(ns.stack(), None, &opts).unwrap();
    {
        let mut info: HashMap<_, u32, IfInfo> =
            HashMap::try_from(dp.ebpf_mut().map_mut(MAP_IFINFO).unwrap()).unwrap();
        info.insert(d1, IfInfo { secclass: 2 }, 0).unwrap();
    }
    dp.switch(SetId::Policy).unwrap();

    let mut rng = StdRng::seed_from_u64(0x6b65_726e_656c_3031);
    let mut frag_id: u32 = 1;
    let mut cases = 0;
    let mut counted = 0;
    for round in 0..120 {
        let (set, dynamic) = randgen::rule_set(&mut rng, 12);
        let compiled = compile(SetId::Policy.number(), &set, &dynamic, 4096).unwrap();
        dp.install(SetId::Policy, &compiled).unwrap();
        let ordered = order(&set, &dynamic).unwrap();
        let ents = [entries(&ordered, Dir::In), entries(&ordered, Dir::Out)];
        let before = dp.counters().unwrap();
        let mut expected: BTreeMap<(Dir, usize), u64> = BTreeMap::new();
        let mut expected_deny: BTreeMap<Dir, u64> = BTreeMap::new();
        for _ in 0..40 {
            let mut pkt: PacketDesc = randgen::packet(&mut rng);
            // What the kernel can know: no SA on the host (no ESP); routed
            // means not to (inbound) / not from (outbound) a local address.
            pkt.sa = None;
            if rng.random_bool(0.4) {
                let l = if pkt.src.is_ipv4() {
                    local[0]
                } else {
                    local[1]
                };
                match pkt.dir {
                    Dir::In => pkt.dst = l,
                    Dir::Out => pkt.src = l,
                }
            }
            pkt.routed = match pkt.dir {
                Dir::In => !local.contains(&pkt.dst),
                Dir::Out => !local.contains(&pkt.src),
            };
            let on_d1 = rng.random_bool(0.5);
            pkt.secclass = if on_d1 { 2 } else { 0 };
            let frag = match (pkt.fragment, pkt.ports_known) {
                (false, _) => Frag::None,
                (true, true) => Frag::First,
                (true, false) => Frag::Later,
            };
            if frag == Frag::None {
                pkt.ports_known = true;
            }
            frag_id += 1;
            let data = frame(&pkt, frag, frag_id);
            let ifindex = if on_d1 { d1 } else { 1 };
            let ingress = if pkt.dir == Dir::Out && pkt.routed {
                1
            } else {
                0
            };
            let ctx = skb_ctx(ifindex, ingress);
            let prog_name = if pkt.dir == Dir::In {
                PROG_IN_ETH
            } else {
                PROG_OUT_ETH
            };
            let ret = ns
                .stack()
                .run_in(|| {
                    let prog = dp.program(prog_name).unwrap();
                    prog.test_run(TestRunOptions {
                        data_in: Some(&data),
                        ctx_in: Some(&ctx),
                        ..TestRunOptions::default()
                    })
                    .unwrap()
                    .return_value
                })
                .unwrap();
            let want = evaluate(&set, &dynamic, &pkt);
            if std::env::var_os("GK_DEBUG_KEQ").is_some() {
                eprintln!("{round}: {pkt:?} {frag:?} -> {want:?}");
            }
            let want_ret = if want.permitted {
                TC_ACT_UNSPEC
            } else {
                TC_ACT_SHOT
            };
            assert_eq!(
                ret, want_ret,
                "round {round}: {pkt:?} ({frag:?})\nmodel: {want:?}\nrules: {:#?}\ndynamic: {dynamic:#?}",
                set.rules
            );
            if !want.icmp_exception {
                match want.ordinal {
                    Some(o) => {
                        let d = usize::from(pkt.dir == Dir::Out);
                        let pos = ents[d].iter().position(|e| e.ordinal == o).unwrap();
                        *expected.entry((pkt.dir, pos)).or_default() += 1;
                    }
                    None => *expected_deny.entry(pkt.dir).or_default() += 1,
                }
            }
            cases += 1;
        }
        // Every packet was counted on the filter the model says decided.
        let after = dp.counters().unwrap();
        let old: BTreeMap<u32, u64> = before.iter().map(|c| (c.id, c.packets)).collect();
        let delta = |c: &gatekey_dataplane::dataplane::RuleCounter| {
            c.packets - old.get(&c.id).copied().unwrap_or(0)
        };
        for dir in Dir::BOTH {
            for c in after
                .iter()
                .filter(|c| c.set == SetId::Policy && c.dir == dir)
            {
                let want = if c.name == "SYSDEFAULTDENYRULE" {
                    expected_deny.get(&dir).copied().unwrap_or(0)
                } else {
                    expected
                        .get(&(dir, c.position as usize))
                        .copied()
                        .unwrap_or(0)
                };
                if delta(c) != want {
                    let changed: Vec<String> = after
                        .iter()
                        .filter(|c| delta(c) > 0)
                        .map(|c| {
                            format!(
                                "{:?} {:?} {} @{}: +{}",
                                c.set,
                                c.dir,
                                c.name,
                                c.position,
                                delta(c)
                            )
                        })
                        .collect();
                    panic!(
                        "round {round}: counter of {dir:?} {} at {}: {} != {want}\nchanged: {changed:#?}\nexpected: {expected:?} {expected_deny:?}",
                        c.name,
                        c.position,
                        delta(c)
                    );
                }
            }
        }
        counted += expected.values().sum::<u64>();
    }
    assert!(
        counted > cases as u64 / 8,
        "{counted} of {cases} decided by a filter"
    );
    eprintln!("{cases} packets through the kernel program, {counted} counted on filters");
}
