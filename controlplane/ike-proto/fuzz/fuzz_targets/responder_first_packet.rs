//! A responder's first packet from an unknown peer, on port 500 and on the NAT-T port: no
//! panic, bounded state, and whatever it sends back decodes.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ike_proto::crypto::Secret;
use ike_proto::ikev2::{ChildConfig, Endpoint, EndpointConfig, PeerConfig, ts};
use ike_proto::wire::Message;
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
    let mut ep = Endpoint::new(EndpointConfig {
        cookie_threshold: usize::from(data.first().copied().unwrap_or(0) & 1),
        ..EndpointConfig::default()
    });
    ep.set_peers(vec![peer]);
    let now = Instant::now();
    let local: SocketAddr = "192.0.2.2:500".parse().unwrap();
    let remote: SocketAddr = "192.0.2.1:500".parse().unwrap();
    ep.handle_datagram(now, local, remote, data);
    // The same packet again (a retransmission) and on the NAT-T port.
    ep.handle_datagram(now, local, remote, data);
    let l4: SocketAddr = "192.0.2.2:4500".parse().unwrap();
    let r4: SocketAddr = "192.0.2.1:4500".parse().unwrap();
    ep.handle_datagram(now, l4, r4, data);
    while let Some(t) = ep.poll_transmit() {
        let body = if t.local.port() == 4500 { &t.data[4..] } else { &t.data[..] };
        Message::decode(body).expect("our own datagrams decode");
    }
    while ep.poll_event().is_some() {}
    assert!(ep.ike_sas().len() <= 1);
    ep.handle_timeout(now + Duration::from_secs(60));
    assert!(ep.ike_sas().is_empty());
});
