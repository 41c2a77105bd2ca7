//! Proves the eBPF build pipeline end to end: the object embedded by
//! build.rs loads, passes the verifier, attaches to a veth in a fresh netns,
//! and counts real packets.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use aya::maps::PerCpuArray;
use aya::programs::{SchedClassifier, TcAttachType};
use gatekey_dataplane::testnet::{VethPair, privileged};

#[test]
fn counts_packets_per_protocol_in_a_fresh_netns() {
    if !privileged("counts_packets_per_protocol_in_a_fresh_netns") {
        return;
    }
    let pair = VethPair::new("gkpipe", 201).unwrap();

    // Load and attach inside b's namespace; keep the Ebpf object alive (it
    // owns the link) while traffic flows.
    let mut ebpf = pair
        .b
        .stack()
        .run_in(|| {
            let mut ebpf = aya::Ebpf::load(gatekey_dataplane::EBPF_OBJECT).unwrap();
            let prog: &mut SchedClassifier = ebpf
                .program_mut("gatekey_count")
                .unwrap()
                .try_into()
                .unwrap();
            prog.load().unwrap();
            prog.attach("vb", TcAttachType::Ingress).unwrap();
            ebpf
        })
        .unwrap();

    let (b4, b6) = (pair.b4, pair.b6);
    pair.a
        .stack()
        .run_in(move || {
            let s4 = UdpSocket::bind("0.0.0.0:0").unwrap();
            for _ in 0..5 {
                s4.send_to(b"hello", (b4, 9999)).unwrap();
            }
            let s6 = UdpSocket::bind("[::]:0").unwrap();
            for _ in 0..3 {
                s6.send_to(b"hello", (b6, 9999)).unwrap();
            }
            // Nothing listens: one SYN in, one RST out, connection refused.
            let r = TcpStream::connect_timeout(&SocketAddr::from((b4, 9)), Duration::from_secs(2));
            assert!(r.is_err());
        })
        .unwrap();

    let counts: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map_mut("PROTO_COUNTS").unwrap()).unwrap();
    let total = |proto: u32| -> u64 { counts.get(&proto, 0).unwrap().iter().sum() };
    // IPv6 packets wait for neighbour discovery: poll (bounded) until they
    // have all arrived, then check the exact counts.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while total(17) < 8 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(total(17), 8, "UDP packets seen on vb ingress");
    assert_eq!(total(6), 1, "TCP packets seen on vb ingress");
    assert_eq!(total(50), 0, "no ESP was sent");
}
