//! Datagrams to an IKEv1 responder from an unknown peer, on port 500 and the NAT-T port:
//! no panic, bounded state, replies that decode. The input is split into up to four
//! datagrams so later messages of an exchange (MM3, MM5, quick mode, informational) are
//! reached with the cookies the responder chose substituted in.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ike_proto::crypto::Secret;
use ike_proto::ikev1::wire::Header;
use ike_proto::ikev1::{Endpoint, V1Peer};
use ike_proto::ikev2::{ChildConfig, EndpointConfig, PeerConfig, ts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let net = |s: &str| ts::subnet(s.parse().unwrap(), 16);
    let peer = PeerConfig::psk(
        "fuzz",
        "b.example.com".parse().unwrap(),
        "a.example.com".parse().unwrap(),
        Secret::from("k"),
        ChildConfig::tunnel("c", vec![net("10.2.0.0")], vec![net("10.1.0.0")]),
    );
    let mut v1 = V1Peer::new(peer);
    v1.v1.aggressive_psk = data.first().is_some_and(|b| b & 1 == 1);
    let mut ep = Endpoint::new(EndpointConfig::default());
    ep.set_peers(vec![v1]);
    let mut now = Instant::now();
    let local: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let remote: SocketAddr = "192.0.2.1:500".parse().unwrap();
    let mut cky_r = 0u64;
    for (i, chunk) in data.split(|b| *b == 0xa5).take(4).enumerate() {
        let mut d = chunk.to_vec();
        if cky_r != 0 && d.len() >= 16 {
            d[8..16].copy_from_slice(&cky_r.to_be_bytes());
        }
        let (l, r) = if i % 2 == 1 {
            ("192.0.2.2:4500".parse().unwrap(), "192.0.2.1:4500".parse().unwrap())
        } else {
            (local, remote)
        };
        let mut framed = Vec::new();
        if l.port() == 4500 {
            framed.extend_from_slice(&[0, 0, 0, 0]);
        }
        framed.extend_from_slice(&d);
        ep.handle_datagram(now, l, r, &framed);
        ep.handle_datagram(now, l, r, &framed);
        while let Some(t) = ep.poll_transmit() {
            let body = if t.local.port() == 4500 { &t.data[4..] } else { &t.data[..] };
            let h = Header::decode(body).expect("our replies decode");
            if h.cookie_r != 0 {
                cky_r = h.cookie_r;
            }
        }
        while ep.poll_event().is_some() {}
        now += Duration::from_millis(10);
    }
    // Timers run to the end: half-open state must go away.
    for _ in 0..64 {
        match ep.poll_timeout() {
            Some(t) => {
                now = now.max(t);
                ep.handle_timeout(now);
                while ep.poll_transmit().is_some() {}
                while ep.poll_event().is_some() {}
            }
            None => break,
        }
    }
    assert!(ep.ike_sas(now).is_empty(), "responder state left behind");
});
