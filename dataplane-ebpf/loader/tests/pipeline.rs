//! Proves the eBPF pipeline end to end: the object embedded by build.rs
//! loads, passes the verifier (all four programs), attaches to a veth in a
//! fresh network namespace, and counts real packets on the filters that
//! decided them.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use gatekey_dataplane::compile::compile;
use gatekey_dataplane::dataplane::{Dataplane, Options, SetId};
use gatekey_dataplane::testnet::{VethPair, privileged};

#[test]
fn loads_attaches_and_counts_real_packets_in_a_fresh_netns() {
    if !privileged("loads_attaches_and_counts_real_packets_in_a_fresh_netns") {
        return;
    }
    let pair = VethPair::new("gkpipe", 201).unwrap();
    let profile = gatekey_config::profile::parse(
        "profile",
        "IPSEC\n IPSECRule * * UDP SRCPort * DESTport 9999 DIRECTION INBOUND\nENDIPSEC\n",
    )
    .unwrap();
    let compiled = compile(0, &profile.set, &[], 1024).unwrap();
    let opts = Options {
        classes_per_slot: 1024,
        ..Options::default()
    };
    let mut dp = Dataplane::open_with(pair.b.stack(), None, &opts).unwrap();
    dp.install(SetId::Default, &compiled).unwrap();
    let att = dp
        .attach(Some(&["vb".to_owned()]), &Default::default())
        .unwrap();
    assert_eq!(att.len(), 2);

    let b4 = pair.b4;
    pair.a
        .stack()
        .run_in(move || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..5 {
                s.send_to(b"permitted", (b4, 9999)).unwrap();
            }
            for _ in 0..3 {
                s.send_to(b"denied", (b4, 9998)).unwrap();
            }
        })
        .unwrap();
    let count = |name: &str| -> u64 {
        dp.counters()
            .unwrap()
            .iter()
            .filter(|c| {
                c.name == name
                    && c.set == SetId::Default
                    && c.dir == gatekey_dataplane::compile::Dir::In
            })
            .map(|c| c.packets)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while count("SYSDEFAULTRULE.1") < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(count("SYSDEFAULTRULE.1"), 5);
    assert_eq!(count("SYSDEFAULTDENYRULE"), 3);
}
