//! Two IKEv2 endpoints in memory on a virtual clock (after quinn-proto's `Pair`), with
//! loss, duplication, reordering, tampering, NAT and slow or failing signers injected.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike_proto::Identity;
use ike_proto::crypto::Secret;
use ike_proto::crypto::cert::ChainVerifier;
use ike_proto::crypto::sig::{LocalSigner, Signer};
use ike_proto::ikev2::ts;
use ike_proto::ikev2::*;
use ike_proto::wire::{DhGroup, Header, TrafficSelector};

const A_IP: &str = "192.0.2.1";
const B_IP: &str = "192.0.2.2";
const NAT_IP: &str = "203.0.113.9";

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn net(s: &str) -> TrafficSelector {
    let (a, l) = s.split_once('/').unwrap();
    ts::subnet(a.parse().unwrap(), l.parse().unwrap())
}

/// How a node answers signature requests.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum SignMode {
    Now,
    After(Duration),
    Fail,
    Never,
}

struct Node {
    name: &'static str,
    ep: Endpoint,
    peers: Vec<PeerConfig>,
    ip: IpAddr,
    signer: Option<Arc<LocalSigner>>,
    sign_mode: SignMode,
    pending_signs: Vec<(
        Instant,
        RequestId,
        Vec<u8>,
        ike_proto::crypto::sig::SignatureScheme,
    )>,
    events: Vec<String>,
    installed: HashMap<ChildId, InstallChildSa>,
    up: Vec<IkeSaId>,
    down: Vec<(IkeSaId, CloseReason)>,
    failed_children: Vec<String>,
}

impl Node {
    fn new(name: &'static str, ip: &str, peers: Vec<PeerConfig>) -> Self {
        Self::with_config(
            name,
            ip,
            peers,
            EndpointConfig {
                retries: 3,
                init_wait: Duration::from_secs(1),
                ..EndpointConfig::default()
            },
        )
    }

    fn with_config(
        name: &'static str,
        ip: &str,
        peers: Vec<PeerConfig>,
        config: EndpointConfig,
    ) -> Self {
        let mut ep = Endpoint::new(config);
        ep.set_peers(peers.clone());
        ep.set_unix_time(1_800_000_000);
        Self {
            name,
            ep,
            peers,
            ip: ip.parse().unwrap(),
            signer: None,
            sign_mode: SignMode::Now,
            pending_signs: Vec::new(),
            events: Vec::new(),
            installed: HashMap::new(),
            up: Vec::new(),
            down: Vec::new(),
            failed_children: Vec::new(),
        }
    }

    /// The current IKE SA handle (the newest one up and not down).
    fn sa(&self) -> IkeSaId {
        *self
            .up
            .iter()
            .rev()
            .find(|id| !self.down.iter().any(|(d, _)| d == *id))
            .unwrap_or_else(|| panic!("{}: no IKE SA up; events {:?}", self.name, self.events))
    }

    fn children(&self) -> Vec<&InstallChildSa> {
        let mut v: Vec<_> = self.installed.values().collect();
        v.sort_by_key(|c| c.child);
        v
    }
}

struct Pair {
    now: Instant,
    a: Node,
    b: Node,
    latency: Duration,
    in_flight: Vec<(Instant, u64, Transmit)>,
    seq: u64,
    /// Decides per datagram: 0 = deliver, 1 = drop, 2 = duplicate, 3 = tamper.
    filter: Box<dyn FnMut(&Transmit) -> u8>,
    /// Extra delay per datagram (for reordering).
    jitter: Box<dyn FnMut(&Transmit) -> Duration>,
    nat: bool,
    delivered: u64,
    /// Every datagram handed to the network, with its send time.
    sent: Vec<(Instant, Transmit)>,
}

impl Pair {
    fn new(a: Node, b: Node) -> Self {
        let now = Instant::now();
        Self {
            now,
            a,
            b,
            latency: Duration::from_millis(5),
            in_flight: Vec::new(),
            seq: 0,
            filter: Box::new(|_| 0),
            jitter: Box::new(|_| Duration::ZERO),
            nat: false,
            delivered: 0,
            sent: Vec::new(),
        }
    }

    fn connect(&mut self) -> IkeSaId {
        let local = sock(A_IP, 500);
        let remote = sock(B_IP, 500);
        let peer = "to-b";
        self.a.ep.connect(self.now, peer, local, remote).unwrap()
    }

    /// NAT in front of A: A's source address is rewritten to NAT_IP.
    fn nat_out(&self, t: &mut Transmit) {
        if self.nat && t.local.ip() == self.a.ip {
            t.local = SocketAddr::new(NAT_IP.parse().unwrap(), t.local.port() + 10000);
        }
    }

    fn nat_in(&self, t: &mut Transmit) {
        if self.nat && t.remote.ip().to_string() == NAT_IP {
            t.remote = SocketAddr::new(self.a.ip, t.remote.port() - 10000);
        }
    }

    /// Moves every queued datagram into the network and handles every event, until both
    /// endpoints are quiet (answering a sign request can queue more datagrams).
    fn collect(&mut self) {
        loop {
            let before = self.seq + self.sent.len() as u64;
            let events = self.a.events.len() + self.b.events.len();
            self.collect_once();
            if self.seq + self.sent.len() as u64 == before
                && self.a.events.len() + self.b.events.len() == events
            {
                return;
            }
        }
    }

    fn collect_once(&mut self) {
        for side in 0..2 {
            loop {
                let node = if side == 0 { &mut self.a } else { &mut self.b };
                let Some(mut t) = node.ep.poll_transmit() else {
                    break;
                };
                self.nat_out(&mut t);
                self.sent.push((self.now, t.clone()));
                let action = (self.filter)(&t);
                let at = self.now + self.latency + (self.jitter)(&t);
                match action {
                    1 => {}
                    2 => {
                        self.seq += 2;
                        self.in_flight.push((at, self.seq - 1, t.clone()));
                        self.in_flight
                            .push((at + Duration::from_millis(1), self.seq, t));
                    }
                    3 => {
                        let mut t = t;
                        let n = t.data.len();
                        t.data[n - 3] ^= 0x40;
                        self.seq += 1;
                        self.in_flight.push((at, self.seq, t));
                    }
                    _ => {
                        self.seq += 1;
                        self.in_flight.push((at, self.seq, t));
                    }
                }
            }
            let node = if side == 0 { &mut self.a } else { &mut self.b };
            while let Some(e) = node.ep.poll_event() {
                handle_event(node, self.now, e);
            }
        }
    }

    fn next_time(&self) -> Option<Instant> {
        let mut t = self.in_flight.iter().map(|(at, _, _)| *at).min();
        for n in [&self.a, &self.b] {
            for x in
                n.ep.poll_timeout()
                    .into_iter()
                    .chain(n.pending_signs.iter().map(|p| p.0))
            {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        }
        t
    }

    /// Runs until nothing is pending before `until` (virtual time).
    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        for _ in 0..100_000 {
            self.collect();
            let Some(t) = self.next_time() else {
                self.now = until;
                return;
            };
            if t > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(t);
            self.step();
        }
        panic!("no quiescence");
    }

    /// Runs until idle except for long timers (rekey, DPD): 60 s of virtual time at most.
    fn run(&mut self) {
        self.run_for(Duration::from_secs(60));
    }

    fn step(&mut self) {
        let now = self.now;
        // Deliver due datagrams in (time, seq) order.
        self.in_flight.sort_by_key(|(at, s, _)| (*at, *s));
        let due: Vec<Transmit> = {
            let mut v = Vec::new();
            while let Some((at, _, _)) = self.in_flight.first() {
                if *at > now {
                    break;
                }
                v.push(self.in_flight.remove(0).2);
            }
            v
        };
        for mut t in due {
            self.nat_in(&mut t);
            self.delivered += 1;
            let to_a = t.remote.ip() == self.a.ip;
            let node = if to_a { &mut self.a } else { &mut self.b };
            node.ep.handle_datagram(now, t.remote, t.local, &t.data);
        }
        for node in [&mut self.a, &mut self.b] {
            if node.ep.poll_timeout().is_some_and(|t| t <= now) {
                node.ep.handle_timeout(now);
            }
            let due: Vec<_> = node
                .pending_signs
                .iter()
                .filter(|p| p.0 <= now)
                .cloned()
                .collect();
            node.pending_signs.retain(|p| p.0 > now);
            for (_, id, octets, scheme) in due {
                let sig = node
                    .signer
                    .as_ref()
                    .unwrap()
                    .sign(scheme, &octets)
                    .map_err(|e| e.to_string());
                node.ep.handle_signature(now, id, sig);
            }
        }
    }
}

fn handle_event(node: &mut Node, now: Instant, e: Event) {
    node.events
        .push(format!("{e:?}").chars().take(160).collect());
    match e {
        Event::SignRequest {
            id, scheme, octets, ..
        } => match node.sign_mode {
            SignMode::Now => {
                let sig = node
                    .signer
                    .as_ref()
                    .unwrap()
                    .sign(scheme, &octets)
                    .map_err(|e| e.to_string());
                node.ep.handle_signature(now, id, sig);
            }
            SignMode::After(d) => node.pending_signs.push((now + d, id, octets, scheme)),
            SignMode::Fail => {
                node.ep
                    .handle_signature(now, id, Err("NSS server unreachable".into()))
            }
            SignMode::Never => {}
        },
        Event::InstallChildSa(c) => {
            node.installed.insert(c.child, *c);
        }
        Event::DeleteChildSa { child, .. } => {
            node.installed.remove(&child);
        }
        Event::IkeSaUp { ike_sa, .. } => node.up.push(ike_sa),
        Event::IkeSaRekeyed { new, .. } => node.up.push(new),
        Event::IkeSaDown { ike_sa, reason } => node.down.push((ike_sa, reason)),
        Event::ChildSaFailed { reason, .. } => node.failed_children.push(reason),
        _ => {}
    }
}

fn child_a() -> ChildConfig {
    ChildConfig::tunnel("net", vec![net("10.1.0.0/16")], vec![net("10.2.0.0/16")])
}

fn child_b() -> ChildConfig {
    ChildConfig::tunnel("net", vec![net("10.2.0.0/16")], vec![net("10.1.0.0/16")])
}

fn psk_peers(psk_a: &str, psk_b: &str) -> (PeerConfig, PeerConfig) {
    let a = PeerConfig::psk(
        "to-b",
        "a.example.com".parse().unwrap(),
        "b.example.com".parse().unwrap(),
        Secret::from(psk_a),
        child_a(),
    );
    let b = PeerConfig::psk(
        "to-a",
        "b.example.com".parse().unwrap(),
        "a.example.com".parse().unwrap(),
        Secret::from(psk_b),
        child_b(),
    );
    (a, b)
}

fn psk_pair() -> Pair {
    let (a, b) = psk_peers(
        "correct horse battery staple",
        "correct horse battery staple",
    );
    Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]))
}

/// Both sides have matching child SAs installed (keys and SPIs crossed).
fn assert_tunnel(p: &Pair, expected: usize) {
    let a = p.a.children();
    let b = p.b.children();
    assert_eq!(a.len(), expected, "a children: {:?}", p.a.events);
    assert_eq!(b.len(), expected, "b children: {:?}", p.b.events);
    for ca in &a {
        let cb = b
            .iter()
            .find(|cb| cb.inbound.spi == ca.outbound.spi)
            .unwrap_or_else(|| panic!("no peer child for spi {:x}", ca.outbound.spi));
        assert_eq!(cb.outbound.spi, ca.inbound.spi);
        assert_eq!(ca.outbound.encr_key, cb.inbound.encr_key);
        assert_eq!(ca.inbound.encr_key, cb.outbound.encr_key);
        assert_eq!(ca.outbound.integ_key, cb.inbound.integ_key);
        assert_ne!(ca.inbound.encr_key, ca.outbound.encr_key);
        assert_eq!(ca.local_ts, cb.remote_ts);
        assert_eq!(ca.remote_ts, cb.local_ts);
        assert_eq!(ca.encr, cb.encr);
    }
}

#[test]
fn psk_happy_path() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    assert_eq!(p.a.up.len(), 1, "{:?}", p.a.events);
    assert_eq!(p.b.up.len(), 1, "{:?}", p.b.events);
    assert_tunnel(&p, 1);
    let c = p.a.children()[0];
    assert_eq!(c.local_ts, vec![net("10.1.0.0/16")]);
    assert_eq!(c.mode, Mode::Tunnel);
    assert!(c.encap.is_none());
    assert_eq!(c.inbound.encr_key.len(), 36);
    // Four datagrams: IKE_SA_INIT and IKE_AUTH, no retransmissions.
    assert_eq!(p.delivered, 4);
    let sa = p.a.statistics_check();
    assert_eq!(sa.p1_active, 1);
    assert_eq!(sa.p1_local_act_success, 1);
    assert_eq!(sa.p2_active, 1);
    assert_eq!(sa.p1_retransmit, 0);
    let sb = p.b.ep.statistics();
    assert_eq!(sb.p1_remote_act_success, 1);
    assert_eq!(sb.p2_remote_act_success, 1);
    let info = p.a.ep.ike_sas();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].state, "DONE");
    assert_eq!(info[0].peer_id, Some("b.example.com".parse().unwrap()));
    // The snapshot names the negotiated algorithms, the same on both ends.
    let suite = info[0].suite.expect("negotiated suite");
    assert_eq!(Some(suite), p.b.ep.ike_sas()[0].suite);
    assert_eq!(info[0].children.len(), 1);
    assert_eq!(info[0].children[0].proposal.encr, c.encr);
}

trait StatsCheck {
    fn statistics_check(&self) -> Statistics;
}

impl StatsCheck for Node {
    fn statistics_check(&self) -> Statistics {
        self.ep.statistics()
    }
}

#[test]
fn every_ike_suite_and_esp_suite() {
    use ike_proto::crypto::encr::EncrAlg;
    use ike_proto::crypto::integ::IntegAlg;
    use ike_proto::crypto::keys::IkeSuite;
    use ike_proto::crypto::prf::PrfAlg;
    let suites = [
        IkeSuite::DEFAULT,
        IkeSuite {
            encr: EncrAlg::AesGcm16 { key_bits: 128 },
            integ: None,
            prf: PrfAlg::HmacSha384,
            dh: DhGroup::ECP_256,
        },
        IkeSuite {
            encr: EncrAlg::ChaCha20Poly1305,
            integ: None,
            prf: PrfAlg::HmacSha512,
            dh: DhGroup::ECP_384,
        },
        IkeSuite {
            encr: EncrAlg::AesCbc { key_bits: 128 },
            integ: Some(IntegAlg::HmacSha256_128),
            prf: PrfAlg::HmacSha256,
            dh: DhGroup::MODP_2048,
        },
        IkeSuite {
            encr: EncrAlg::AesCbc { key_bits: 256 },
            integ: Some(IntegAlg::HmacSha512_256),
            prf: PrfAlg::HmacSha384,
            dh: DhGroup::MODP_3072,
        },
        IkeSuite {
            encr: EncrAlg::TripleDes,
            integ: Some(IntegAlg::HmacSha1_96),
            prf: PrfAlg::HmacSha1,
            dh: DhGroup::MODP_1024,
        },
    ];
    let esp = [
        ChildProposal::DEFAULT,
        ChildProposal {
            encr: EncrAlg::AesCbc { key_bits: 128 },
            integ: Some(IntegAlg::HmacSha256_128),
            esn: true,
            pfs: None,
        },
        ChildProposal {
            encr: EncrAlg::ChaCha20Poly1305,
            integ: None,
            esn: false,
            pfs: None,
        },
    ];
    for (i, suite) in suites.iter().enumerate() {
        let (mut a, mut b) = psk_peers("k", "k");
        a.ike_proposals = vec![*suite];
        b.ike_proposals = vec![*suite];
        a.children[0].proposals = vec![esp[i % esp.len()]];
        b.children[0].proposals = esp.to_vec();
        let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
        p.connect();
        p.run();
        assert_tunnel(&p, 1);
        let c = p.a.children()[0];
        assert_eq!(c.encr, esp[i % esp.len()].encr, "{suite:?}");
        assert_eq!(c.esn, esp[i % esp.len()].esn);
    }
}

#[test]
fn psk_mismatch_fails_on_responder() {
    let (a, b) = psk_peers("one", "two");
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert!(p.a.up.is_empty() && p.b.up.is_empty());
    assert!(
        matches!(p.a.down[0].1, CloseReason::AuthFailed(_)),
        "{:?}",
        p.a.down
    );
    assert!(
        matches!(p.b.down[0].1, CloseReason::AuthFailed(_)),
        "{:?}",
        p.b.down
    );
    assert!(p.a.installed.is_empty() && p.b.installed.is_empty());
    assert_eq!(p.a.ep.statistics().p1_local_act_failure, 1);
    assert_eq!(p.b.ep.statistics().p1_remote_act_failure, 1);
    assert!(p.a.ep.ike_sas().is_empty() && p.b.ep.ike_sas().is_empty());
}

#[test]
fn responder_identity_mismatch_fails_on_initiator() {
    // A pattern is not sent as IDr, so B answers as b.example.com and A refuses it.
    let (mut a, b) = psk_peers("k", "k");
    a.remote_id = Some("*.other.example".parse().unwrap());
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert!(p.a.up.is_empty());
    assert!(
        matches!(&p.a.down[0].1, CloseReason::AuthFailed(r) if r.contains("does not match")),
        "{:?}",
        p.a.down
    );
    assert!(p.a.installed.is_empty());
    // An exact identity goes out as IDr; B has no such identity and refuses.
    let (mut a, b) = psk_peers("k", "k");
    a.remote_id = Some("c.example.com".parse().unwrap());
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert!(
        matches!(&p.a.down[0].1, CloseReason::AuthFailed(r) if r.contains("rejected")),
        "{:?}",
        p.a.down
    );
    assert!(
        matches!(&p.b.down[0].1, CloseReason::AuthFailed(r) if r.contains("no policy")),
        "{:?}",
        p.b.down
    );
}

#[test]
fn no_common_proposal() {
    let (mut a, b) = psk_peers("k", "k");
    a.ike_proposals = vec![ike_proto::crypto::keys::IkeSuite {
        encr: ike_proto::crypto::encr::EncrAlg::ChaCha20Poly1305,
        ..ike_proto::crypto::keys::IkeSuite::DEFAULT
    }];
    let mut b = b;
    b.ike_proposals = vec![ike_proto::crypto::keys::IkeSuite::DEFAULT];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert!(
        matches!(p.a.down[0].1, CloseReason::NegotiationFailed(_)),
        "{:?}",
        p.a.down
    );
    assert_eq!(p.b.ep.statistics().p1_remote_act_failure, 1);
}

#[test]
fn invalid_ke_retry() {
    let (mut a, mut b) = psk_peers("k", "k");
    // A guesses Curve25519 first; B only accepts ECP-256.
    a.ike_proposals = vec![
        ike_proto::crypto::keys::IkeSuite::DEFAULT,
        ike_proto::crypto::keys::IkeSuite {
            dh: DhGroup::ECP_256,
            ..ike_proto::crypto::keys::IkeSuite::DEFAULT
        },
    ];
    b.ike_proposals = vec![ike_proto::crypto::keys::IkeSuite {
        dh: DhGroup::ECP_256,
        ..ike_proto::crypto::keys::IkeSuite::DEFAULT
    }];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    // INIT, INVALID_KE, INIT again, response, AUTH pair.
    assert_eq!(p.delivered, 6);
    // B kept no state for the first attempt.
    assert_eq!(p.b.ep.ike_sas().len(), 1);
}

#[test]
fn cookie_mode_under_load() {
    let (a, b) = psk_peers("k", "k");
    let mut bn = Node::new("b", B_IP, vec![b]);
    bn.ep = Endpoint::new(EndpointConfig {
        cookie_threshold: 0,
        ..EndpointConfig::default()
    });
    let (_, b) = psk_peers("k", "k");
    bn.ep.set_peers(vec![b]);
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), bn);
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.b.ep.statistics().cookies_sent, 1);
    assert_eq!(p.delivered, 6);
}

#[test]
fn half_open_limits_and_expiry() {
    let (_, b) = psk_peers("k", "k");
    let mut bn = Node::new("b", B_IP, vec![b]);
    bn.ep = Endpoint::new(EndpointConfig {
        half_open_per_peer: 3,
        cookie_threshold: 1000,
        half_open_timeout: Duration::from_secs(10),
        ..EndpointConfig::default()
    });
    let (_, b) = psk_peers("k", "k");
    bn.ep.set_peers(vec![b]);
    // Five initiators from the same address that never finish IKE_AUTH.
    let mut initiators = Vec::new();
    let now = Instant::now();
    for _ in 0..5 {
        let (a, _) = psk_peers("k", "k");
        let mut ep = Endpoint::new(EndpointConfig::default());
        ep.set_peers(vec![a]);
        ep.connect(now, "to-b", sock(A_IP, 500), sock(B_IP, 500))
            .unwrap();
        let t = ep.poll_transmit().unwrap();
        bn.ep.handle_datagram(now, t.remote, t.local, &t.data);
        initiators.push(ep);
    }
    assert_eq!(bn.ep.ike_sas().len(), 3);
    assert_eq!(bn.ep.statistics().p1_in_progress, 3);
    assert!(bn.ep.statistics().invalid_packets >= 2);
    // Half-open SAs expire.
    bn.ep.handle_timeout(now + Duration::from_secs(11));
    assert!(bn.ep.ike_sas().is_empty());
    assert_eq!(bn.ep.statistics().p1_remote_act_failure, 3);
}

#[test]
fn loss_duplication_reordering() {
    for seed in 0..12u64 {
        let mut p = psk_pair();
        let mut n = seed;
        let mut count = 0u32;
        p.filter = Box::new(move |_| {
            count += 1;
            n = n
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match (n >> 33) % 10 {
                0 | 1 if count < 12 => 1, // drop
                2 => 2,                   // duplicate
                _ => 0,
            }
        });
        let mut m = seed;
        p.jitter = Box::new(move |_| {
            m = m.wrapping_mul(6364136223846793005).wrapping_add(1);
            Duration::from_millis((m >> 40) % 30)
        });
        p.connect();
        p.run();
        assert_tunnel(&p, 1);
        assert_eq!(p.a.up.len(), 1, "seed {seed}");
        assert_eq!(p.b.up.len(), 1, "seed {seed}");
    }
}

#[test]
fn duplicate_requests_answered_from_cache() {
    let mut p = psk_pair();
    p.filter = Box::new(|_| 2);
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let sb = p.b.ep.statistics();
    assert!(sb.duplicate_requests >= 2, "{sb:?}");
    assert_eq!(sb.p2_remote_act_success, 1);
}

#[test]
fn retransmission_exhaustion() {
    let mut p = psk_pair();
    p.filter = Box::new(|t| u8::from(t.remote.ip().to_string() == B_IP)); // B hears nothing
    p.connect();
    p.run_for(Duration::from_secs(120));
    // retries 3, init_wait 1 s doubling: 1 + 2 + 4 + 8 = 15 s.
    assert!(matches!(p.a.down[0].1, CloseReason::Timeout));
    let s = p.a.ep.statistics();
    assert_eq!(s.p1_retransmit, 3);
    assert_eq!(s.p1_local_act_failure, 1);
    assert!(p.a.ep.ike_sas().is_empty());
    assert!(p.a.ep.poll_timeout().is_none());
}

#[test]
fn retransmission_timing_doubles() {
    let mut p = psk_pair();
    p.filter = Box::new(|t| u8::from(t.remote.ip().to_string() == B_IP));
    let start = p.now;
    p.connect();
    p.run_for(Duration::from_secs(30));
    let ms: Vec<u128> = p
        .sent
        .iter()
        .filter(|(_, t)| t.remote.ip().to_string() == B_IP)
        .map(|(at, _)| (*at - start).as_millis())
        .collect();
    // IkeInitWait 1 s, doubling: sent at 0, 1, 3 and 7 s; given up at 15 s.
    assert_eq!(ms, vec![0, 1000, 3000, 7000]);
    assert!(matches!(p.a.down[0].1, CloseReason::Timeout));
}

#[test]
fn tampered_messages_are_dropped_not_fatal() {
    let mut p = psk_pair();
    let mut tampered = 0;
    p.filter = Box::new(move |t| {
        // Tamper with the first IKE_AUTH request (carries the SK payload; > 200 bytes).
        if tampered == 0
            && t.remote.ip().to_string() == B_IP
            && t.data.len() > 100
            && Header::peek(&t.data).is_some_and(|h| h.exchange.0 == 35)
        {
            tampered += 1;
            3
        } else {
            0
        }
    });
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(p.b.ep.statistics().invalid_packets >= 1);
    assert_eq!(p.a.ep.statistics().p1_retransmit, 1);
}

#[test]
fn nat_detected_switches_to_4500() {
    let mut p = psk_pair();
    p.nat = true;
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let a = p.a.children()[0];
    let b = p.b.children()[0];
    assert_eq!(a.encap.unwrap().local_port, 4500);
    assert_eq!(b.encap.unwrap().remote_port, 14500);
    assert_eq!(a.remote.port(), 4500);
    let ia = &p.a.ep.ike_sas()[0];
    assert_eq!(ia.nat, (true, false));
    let ib = &p.b.ep.ike_sas()[0];
    assert_eq!(ib.nat, (false, true));
    // A sends NAT keepalives.
    let before = p.delivered;
    p.run_for(Duration::from_secs(45));
    assert!(p.delivered >= before + 2);
}

/// Behind a NAT with the default timers (DPD 30 s, NAT keepalive 20 s): the initiator sends
/// 1-byte keepalives every 20 s and no liveness check (empty INFORMATIONAL) before 30 s
/// without anything from the peer; keepalives and liveness checks are separate timers.
#[test]
fn nat_keepalives_are_not_liveness_checks() {
    let (mut a, b) = psk_peers("k", "k");
    a.dpd_interval = Some(Duration::from_secs(30));
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.nat = true;
    let up = p.now;
    p.connect();
    p.run_for(Duration::from_secs(1));
    assert_tunnel(&p, 1);
    p.run_for(Duration::from_secs(95));
    let from_a: Vec<(Duration, &[u8])> = p
        .sent
        .iter()
        .filter(|(at, t)| *at >= up && t.local.ip().to_string() == NAT_IP)
        .map(|(at, t)| (*at - up, t.data.as_slice()))
        .collect();
    let keepalives: Vec<Duration> = from_a
        .iter()
        .filter(|(_, d)| *d == [0xff])
        .map(|(at, _)| *at)
        .collect();
    let liveness: Vec<Duration> = from_a
        .iter()
        .filter_map(|(at, d)| {
            let h = Header::peek(d.strip_prefix(&[0, 0, 0, 0][..])?)?;
            (h.exchange == ike_proto::wire::ExchangeType::INFORMATIONAL && !h.flags.response())
                .then_some(*at)
        })
        .collect();
    assert_eq!(keepalives.len(), 4, "keepalives at {keepalives:?}");
    for w in keepalives.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_secs(20), "{keepalives:?}");
    }
    assert!(
        (1..=3).contains(&liveness.len()),
        "liveness checks at {liveness:?}"
    );
    assert!(liveness[0] >= Duration::from_secs(30), "{liveness:?}");
    for w in liveness.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_secs(30), "{liveness:?}");
    }
}

#[test]
fn traffic_selector_narrowing_and_unacceptable() {
    let (mut a, mut b) = psk_peers("k", "k");
    // A asks for wide selectors; B allows a narrower part.
    a.children = vec![ChildConfig::tunnel(
        "wide",
        vec![net("10.0.0.0/8")],
        vec![net("172.16.0.0/12")],
    )];
    b.children = vec![ChildConfig::tunnel(
        "narrow",
        vec![net("172.16.5.0/24")],
        vec![net("10.1.2.0/24")],
    )];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let c = p.a.children()[0];
    assert_eq!(c.local_ts, vec![net("10.1.2.0/24")]);
    assert_eq!(c.remote_ts, vec![net("172.16.5.0/24")]);
    assert_eq!(c.name, "wide");
    assert_eq!(p.b.children()[0].name, "narrow");

    let (mut a, mut b) = psk_peers("k", "k");
    a.children = vec![ChildConfig::tunnel(
        "x",
        vec![net("10.0.0.0/8")],
        vec![net("192.168.0.0/16")],
    )];
    b.children = vec![ChildConfig::tunnel(
        "y",
        vec![net("172.16.0.0/12")],
        vec![net("10.0.0.0/8")],
    )];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    // The IKE SA is up; the child failed with TS_UNACCEPTABLE.
    assert_eq!(p.a.up.len(), 1);
    assert!(p.a.installed.is_empty());
    assert!(
        p.a.failed_children[0].contains("TS_UNACCEPTABLE"),
        "{:?}",
        p.a.failed_children
    );
    assert_eq!(p.b.ep.statistics().p2_remote_act_failure, 1);
}

#[test]
fn transport_mode() {
    let (mut a, mut b) = psk_peers("k", "k");
    let ha = ts::host(A_IP.parse().unwrap());
    let hb = ts::host(B_IP.parse().unwrap());
    a.children = vec![ChildConfig {
        mode: Mode::Transport,
        ..ChildConfig::tunnel("host", vec![ha.clone()], vec![hb.clone()])
    }];
    b.children = vec![ChildConfig {
        mode: Mode::Transport,
        ..ChildConfig::tunnel("host", vec![hb], vec![ha])
    }];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.a.children()[0].mode, Mode::Transport);
    assert_eq!(p.b.children()[0].mode, Mode::Transport);
}

#[test]
fn create_child_and_rekey_child_with_pfs() {
    let (mut a, mut b) = psk_peers("k", "k");
    let pfs = ChildProposal {
        pfs: Some(DhGroup::CURVE25519),
        ..ChildProposal::DEFAULT
    };
    a.children[0].proposals = vec![pfs];
    b.children[0].proposals = vec![pfs];
    a.children.push(ChildConfig::tunnel(
        "second",
        vec![net("10.3.0.0/16")],
        vec![net("10.4.0.0/16")],
    ));
    b.children.push(ChildConfig::tunnel(
        "second",
        vec![net("10.4.0.0/16")],
        vec![net("10.3.0.0/16")],
    ));
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let sa = p.a.sa();
    p.a.ep.create_child(p.now, sa, 1).unwrap();
    p.run();
    assert_tunnel(&p, 2);
    // Rekey the first child (from B this time): make-before-break.
    let first_b =
        p.b.children()
            .iter()
            .find(|c| c.name == "net")
            .unwrap()
            .child;
    let old_spis: Vec<u32> = p.b.children().iter().map(|c| c.inbound.spi).collect();
    p.b.ep.rekey_child(p.now, first_b).unwrap();
    p.run();
    assert_tunnel(&p, 2);
    let new =
        p.b.children()
            .iter()
            .find(|c| c.name == "net")
            .map(|c| (c.inbound.spi, c.replaces))
            .unwrap();
    assert!(!old_spis.contains(&new.0));
    assert_eq!(new.1, Some(first_b));
    assert!(p.b.events.iter().any(|e| e.contains("DeleteChildSa")));
    let s = p.a.ep.statistics();
    assert_eq!(s.p2_remote_act_success, 1);
    assert_eq!(s.p2_local_act_success, 2);
}

#[test]
fn ike_rekey_moves_children() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    let old_a = p.a.sa();
    let spis_before: Vec<u32> = p.a.children().iter().map(|c| c.inbound.spi).collect();
    p.a.ep.rekey_ike(p.now, old_a).unwrap();
    // Until the old SA's DELETE is answered it counts as expired.
    p.run_for(Duration::from_millis(12));
    let s = p.a.ep.statistics();
    assert_eq!((s.p1_active, s.p1_expired), (1, 1), "{s:?}");
    p.run();
    let s = p.a.ep.statistics();
    assert_eq!((s.p1_active, s.p1_expired, s.p2_active), (1, 0, 1), "{s:?}");
    let new_a = p.a.sa();
    assert_ne!(new_a, old_a);
    assert!(
        p.a.down
            .iter()
            .any(|(id, r)| *id == old_a && *r == CloseReason::Rekeyed),
        "{:?}",
        p.a.down
    );
    assert_eq!(p.a.ep.ike_sas().len(), 1);
    assert_eq!(p.b.ep.ike_sas().len(), 1);
    assert_eq!(p.a.ep.ike_sas()[0].children.len(), 1);
    // Children survive (same SPIs), and the new IKE SA carries on: rekey a child over it.
    assert_eq!(
        p.a.children()
            .iter()
            .map(|c| c.inbound.spi)
            .collect::<Vec<_>>(),
        spis_before
    );
    let child = p.a.children()[0].child;
    p.a.ep.rekey_child(p.now, child).unwrap();
    p.run();
    assert_tunnel(&p, 1);
    // And delete everything over the rekeyed SA.
    p.b.ep.delete_ike(p.now, p.b.sa()).unwrap();
    p.run();
    assert!(p.a.installed.is_empty() && p.b.installed.is_empty());
    assert!(p.a.ep.ike_sas().is_empty() && p.b.ep.ike_sas().is_empty());
}

#[test]
fn automatic_ike_rekey_on_lifetime() {
    let (mut a, mut b) = psk_peers("k", "k");
    a.ike_lifetime = Duration::from_secs(100);
    a.rekey_margin = Duration::from_secs(10);
    b.ike_lifetime = Duration::from_secs(100);
    b.rekey_margin = Duration::from_secs(10);
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run_for(Duration::from_secs(200));
    assert!(p.a.up.len() >= 2, "{:?}", p.a.events);
    assert_tunnel(&p, 1);
    assert_eq!(p.a.ep.ike_sas().len(), 1);
}

/// Rekey the same child from both ends with the requests crossing (every ordering of
/// nonces and deliveries): exactly one new child survives on each side, and it is the same.
#[test]
fn simultaneous_child_rekey() {
    for delay_b in [0u64, 2, 4, 7, 11] {
        for _ in 0..6 {
            let mut p = psk_pair();
            p.connect();
            p.run();
            let ca = p.a.children()[0].child;
            let cb = p.b.children()[0].child;
            p.a.ep.rekey_child(p.now, ca).unwrap();
            p.run_for(Duration::from_millis(delay_b));
            p.b.ep.rekey_child(p.now, cb).unwrap();
            p.run();
            assert_tunnel(&p, 1);
            let a = p.a.children()[0];
            assert_ne!(a.child, ca);
            assert!(
                p.a.ep.ike_sas()[0]
                    .children
                    .iter()
                    .all(|c| c.state == "ACTIVE"),
                "{:?}",
                p.a.ep.ike_sas()
            );
            assert!(
                p.b.ep.ike_sas()[0]
                    .children
                    .iter()
                    .all(|c| c.state == "ACTIVE"),
                "{:?}",
                p.b.ep.ike_sas()
            );
        }
    }
}

#[test]
fn simultaneous_ike_rekey() {
    for delay_b in [0u64, 3, 6, 20] {
        for _ in 0..6 {
            let mut p = psk_pair();
            p.connect();
            p.run();
            let (sa_a, sa_b) = (p.a.sa(), p.b.sa());
            p.a.ep.rekey_ike(p.now, sa_a).unwrap();
            p.run_for(Duration::from_millis(delay_b));
            // Past the crossing window A's rekey may already have replaced B's old SA.
            let r = p.b.ep.rekey_ike(p.now, sa_b);
            assert!(r.is_ok() || delay_b > 10, "{r:?}");
            p.run();
            let ia = p.a.ep.ike_sas();
            let ib = p.b.ep.ike_sas();
            assert_eq!(ia.len(), 1, "delay {delay_b}: {ia:?}");
            assert_eq!(ib.len(), 1, "delay {delay_b}: {ib:?}");
            assert_eq!(ia[0].spis, ib[0].spis);
            assert_eq!(ia[0].children.len(), 1, "{ia:?}");
            assert_eq!(ib[0].children.len(), 1, "{ib:?}");
            assert_tunnel(&p, 1);
            // The surviving SA works.
            let c = p.a.children()[0].child;
            p.a.ep.rekey_child(p.now, c).unwrap();
            p.run();
            assert_tunnel(&p, 1);
        }
    }
}

#[test]
fn delete_child_and_simultaneous_delete() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    let ca = p.a.children()[0].child;
    p.a.ep.delete_child(p.now, ca).unwrap();
    p.run();
    assert_tunnel(&p, 0);
    // Again, with both ends deleting the same child at once.
    let sa = p.a.sa();
    p.a.ep.create_child(p.now, sa, 0).unwrap();
    p.run();
    assert_tunnel(&p, 1);
    let ca = p.a.children()[0].child;
    let cb = p.b.children()[0].child;
    p.a.ep.delete_child(p.now, ca).unwrap();
    p.b.ep.delete_child(p.now, cb).unwrap();
    p.run();
    assert_tunnel(&p, 0);
    assert_eq!(p.a.ep.ike_sas().len(), 1);
    assert_eq!(p.b.ep.ike_sas().len(), 1);
}

#[test]
fn delete_ike_and_simultaneous_ike_delete() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    p.a.ep.delete_ike(p.now, p.a.sa()).unwrap();
    p.run();
    assert!(p.a.ep.ike_sas().is_empty() && p.b.ep.ike_sas().is_empty());
    assert!(p.a.installed.is_empty() && p.b.installed.is_empty());
    assert!(matches!(p.b.down[0].1, CloseReason::PeerDeleted));

    let mut p = psk_pair();
    p.connect();
    p.run();
    let (sa, sb) = (p.a.sa(), p.b.sa());
    p.a.ep.delete_ike(p.now, sa).unwrap();
    p.b.ep.delete_ike(p.now, sb).unwrap();
    p.run();
    assert!(p.a.ep.ike_sas().is_empty() && p.b.ep.ike_sas().is_empty());
    assert!(p.a.installed.is_empty() && p.b.installed.is_empty());
}

#[test]
fn rekey_races_delete() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    let ca = p.a.children()[0].child;
    let cb = p.b.children()[0].child;
    p.a.ep.rekey_child(p.now, ca).unwrap();
    p.b.ep.delete_child(p.now, cb).unwrap();
    p.run();
    // Whatever the order, both sides agree.
    let a: Vec<u32> = p.a.children().iter().map(|c| c.outbound.spi).collect();
    let b: Vec<u32> = p.b.children().iter().map(|c| c.inbound.spi).collect();
    assert_eq!(a, b);
    assert!(a.len() <= 1);
}

#[test]
fn liveness_check_and_dead_peer() {
    let (mut a, b) = psk_peers("k", "k");
    a.dpd_interval = Some(Duration::from_secs(30));
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    p.run_for(Duration::from_secs(100));
    assert_eq!(p.a.down.len(), 0, "{:?}", p.a.down);
    // Peer goes silent: DPD gives up after the retransmissions.
    p.filter = Box::new(|_| 1);
    p.run_for(Duration::from_secs(120));
    assert!(matches!(p.a.down[0].1, CloseReason::Timeout));
    assert!(p.a.installed.is_empty());
}

// ---- signatures ----

struct Pki {
    ca_der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

fn pki() -> Pki {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Pair CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = ca.self_signed(&key).unwrap();
    Pki {
        ca_der: cert.der().to_vec(),
        issuer: rcgen::Issuer::new(ca, key),
    }
}

fn rsa_key(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/vectors/pki/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn cert_for(pki: &Pki, name: &str, key_pem: Option<String>) -> (Vec<u8>, LocalSigner) {
    let key = match key_pem {
        Some(pem) => rcgen::KeyPair::from_pem(&pem).unwrap(),
        None => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
    };
    let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
    let cert = p.signed_by(&key, &pki.issuer).unwrap();
    let signer = LocalSigner::from_pkcs8_der(&key.serialize_der()).unwrap();
    (cert.der().to_vec(), signer)
}

fn sig_pair(rsa_a: bool, remote_b: RemoteAuth, pki: &Pki) -> Pair {
    sig_pair_with(rsa_a, remote_b, pki, true)
}

fn sig_pair_with(rsa_a: bool, remote_b: RemoteAuth, pki: &Pki, rfc7427: bool) -> Pair {
    let (cert_a, signer_a) = cert_for(pki, "a.example.com", rsa_a.then(|| rsa_key("rsa-ee.key")));
    let (cert_b, signer_b) = cert_for(pki, "b.example.com", None);
    let mut verifier = ChainVerifier::new();
    verifier.add_ca_der(&pki.ca_der).unwrap();
    let verifier = Arc::new(verifier);
    let (mut a, mut b) = psk_peers("unused", "unused");
    a.local_auth = LocalAuth::Signature {
        certs: vec![cert_a],
        key: signer_a.key_algorithm(),
        schemes: vec![],
    };
    a.remote_auth = RemoteAuth::Certificate(verifier.clone());
    b.local_auth = LocalAuth::Signature {
        certs: vec![cert_b],
        key: signer_b.key_algorithm(),
        schemes: vec![],
    };
    b.remote_auth = remote_b;
    a.rfc7427 = rfc7427;
    b.rfc7427 = rfc7427;
    let mut na = Node::new("a", A_IP, vec![a]);
    na.signer = Some(Arc::new(signer_a));
    let mut nb = Node::new("b", B_IP, vec![b]);
    nb.signer = Some(Arc::new(signer_b));
    Pair::new(na, nb)
}

fn verifier_for(pki: &Pki) -> Arc<ChainVerifier> {
    let mut v = ChainVerifier::new();
    v.add_ca_der(&pki.ca_der).unwrap();
    Arc::new(v)
}

#[test]
fn rsa_and_ecdsa_certificates_happy_path() {
    let pki = pki();
    let mut p = sig_pair(true, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(
        p.a.events
            .iter()
            .any(|e| e.contains("SignRequest") && e.contains("RsaPkcs1Sha256")),
        "{:?}",
        p.a.events
    );
    assert!(
        p.b.events
            .iter()
            .any(|e| e.contains("SignRequest") && e.contains("EcdsaSha256"))
    );
}

#[test]
fn classic_auth_methods_without_rfc7427() {
    // Without SIGNATURE_HASH_ALGORITHMS the ECDSA keys sign with method 9 (r || s).
    let pki = pki();
    let mut p = sig_pair_with(
        false,
        RemoteAuth::Certificate(verifier_for(&pki)),
        &pki,
        false,
    );
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    // An RSA key uses method 1 (PKCS#1 v1.5 with SHA-1).
    let mut p = sig_pair_with(
        true,
        RemoteAuth::Certificate(verifier_for(&pki)),
        &pki,
        false,
    );
    p.connect();
    p.run();
    assert!(p.a.events.iter().any(|e| e.contains("RsaPkcs1Sha1")));
    assert_tunnel(&p, 1);
}

#[test]
fn signature_arrives_late() {
    let pki = pki();
    let mut p = sig_pair(false, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    p.a.sign_mode = SignMode::After(Duration::from_millis(1500));
    p.b.sign_mode = SignMode::After(Duration::from_millis(700));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    // B's slow signature made A retransmit IKE_AUTH once at most; B answered from cache or
    // ignored the duplicate while signing.
    assert!(p.a.ep.statistics().p1_retransmit <= 1);
    assert_eq!(p.b.ep.statistics().p1_remote_act_success, 1);
}

#[test]
fn signature_fails_on_each_side() {
    let pki = pki();
    let mut p = sig_pair(false, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    p.a.sign_mode = SignMode::Fail;
    p.connect();
    p.run();
    assert!(
        matches!(&p.a.down[0].1, CloseReason::AuthFailed(r) if r.contains("NSS server unreachable"))
    );
    assert!(p.a.installed.is_empty());

    let mut p = sig_pair(false, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    p.b.sign_mode = SignMode::Fail;
    p.connect();
    p.run();
    assert!(
        matches!(p.a.down[0].1, CloseReason::AuthFailed(_)),
        "{:?}",
        p.a.down
    );
    assert!(matches!(p.b.down[0].1, CloseReason::AuthFailed(_)));

    // A signer that never answers: A gives nothing away and can be deleted.
    let mut p = sig_pair(false, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    p.a.sign_mode = SignMode::Never;
    let id = p.connect();
    p.run();
    assert_eq!(p.a.ep.ike_sas()[0].state, "PENDING");
    p.a.ep.delete_ike(p.now, id).unwrap();
    p.run();
    assert!(p.a.ep.ike_sas().is_empty());
}

#[test]
fn untrusted_certificate_rejected() {
    let pki = pki();
    let other = self::pki();
    // B trusts a different CA.
    let mut p = sig_pair(false, RemoteAuth::Certificate(verifier_for(&other)), &pki);
    p.connect();
    p.run();
    assert!(
        matches!(p.b.down[0].1, CloseReason::AuthFailed(_)),
        "{:?}",
        p.b.down
    );
    assert!(matches!(p.a.down[0].1, CloseReason::AuthFailed(_)));
}

#[test]
fn caller_verifies() {
    let pki = pki();
    for accept in [true, false] {
        let mut p = sig_pair(false, RemoteAuth::CallerVerifies, &pki);
        p.connect();
        // Step until B asks to verify, then answer through the API.
        p.run_for(Duration::from_millis(50));
        let req =
            p.b.events
                .iter()
                .find(|e| e.starts_with("VerifyRequest"))
                .cloned()
                .unwrap_or_else(|| {
                    panic!(
                        "{:?} / {:?} {} {:?} {:?}",
                        p.b.events,
                        p.a.events,
                        p.delivered,
                        p.b.ep.statistics(),
                        p.b.ep.ike_sas()
                    )
                });
        assert!(req.contains("a.example.com"));
        // The request id is the first RequestId in the recorded event text.
        let id: u64 = req
            .split("RequestId(")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let r = if accept {
            Ok(())
        } else {
            Err("chain rejected by policy".to_string())
        };
        let now = p.now;
        p.b.ep.handle_verification(now, RequestId(id), r);
        p.run();
        if accept {
            assert_tunnel(&p, 1);
        } else {
            assert!(matches!(p.a.down[0].1, CloseReason::AuthFailed(_)));
        }
    }
}

#[test]
fn responder_picks_policy_by_identity() {
    let (a, b) = psk_peers("k1", "k1");
    let (_, mut b2) = psk_peers("k2", "k2");
    b2.name = "to-c".into();
    b2.remote_id = Some("c.example.com".parse().unwrap());
    let mut c = a.clone();
    c.local_id = "c.example.com".parse().unwrap();
    c.local_auth = LocalAuth::Psk(Secret::from("k2"));
    c.remote_auth = RemoteAuth::Psk(Secret::from("k2"));
    let mut p = Pair::new(
        Node::new("a", A_IP, vec![c]),
        Node::new("b", B_IP, vec![b2, b]),
    );
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(
        p.b.events
            .iter()
            .any(|e| e.contains("IkeSaUp") && e.contains("to-c"))
    );
    let id: Identity = "c.example.com".parse().unwrap();
    assert_eq!(p.b.ep.ike_sas()[0].peer_id, Some(id));
}

#[test]
fn initial_contact_drops_stale_sas() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    // A reboots: a fresh endpoint with the same policy connects again.
    let (a, _) = psk_peers(
        "correct horse battery staple",
        "correct horse battery staple",
    );
    p.a = Node::new("a", A_IP, vec![a]);
    p.connect();
    p.run();
    assert_eq!(p.b.ep.ike_sas().len(), 1, "{:?}", p.b.ep.ike_sas());
    assert!(
        p.b.down
            .iter()
            .any(|(_, r)| *r == CloseReason::InitialContact),
        "{:?}",
        p.b.down
    );
    assert_tunnel(&p, 1);
}

#[test]
fn ike_sa_expires_when_rekey_never_succeeds() {
    let (mut a, b) = psk_peers("k", "k");
    a.ike_lifetime = Duration::from_secs(100);
    a.rekey_margin = Duration::from_secs(10);
    let mut na = Node::new("a", A_IP, vec![a.clone()]);
    na.ep = Endpoint::new(EndpointConfig {
        retries: 10,
        init_wait: Duration::from_secs(1),
        ..EndpointConfig::default()
    });
    na.ep.set_peers(vec![a]);
    let mut p = Pair::new(na, Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run_for(Duration::from_secs(1));
    assert_tunnel(&p, 1);
    // B never hears A's CREATE_CHILD_SA (the IKE rekey at 90 s).
    p.filter = Box::new(|t| {
        u8::from(
            t.remote.ip().to_string() == B_IP
                && Header::peek(&t.data).is_some_and(|h| h.exchange.0 == 36),
        )
    });
    p.run_for(Duration::from_secs(80));
    assert!(p.a.down.is_empty(), "{:?}", p.a.down);
    p.run_for(Duration::from_secs(40));
    // Retransmitting would go on for ~2000 s; the lifetime ends it at 100 s.
    assert!(
        matches!(p.a.down[0].1, CloseReason::Timeout),
        "{:?}",
        p.a.down
    );
    assert!(p.a.installed.is_empty());
}

fn is_fragment(t: &Transmit) -> bool {
    Header::peek(&t.data).is_some_and(|h| h.next_payload.0 == 53)
}

/// Rebuilds both endpoints of a certificate pair with another endpoint configuration.
fn reconfigure(p: &mut Pair, a: EndpointConfig, b: EndpointConfig) {
    let peers_a = p.a.peers.clone();
    let peers_b = p.b.peers.clone();
    p.a.ep = Endpoint::new(a);
    p.a.ep.set_peers(peers_a);
    p.a.ep.set_unix_time(1_800_000_000);
    p.b.ep = Endpoint::new(b);
    p.b.ep.set_peers(peers_b);
    p.b.ep.set_unix_time(1_800_000_000);
}

fn small_fragments(on: bool) -> EndpointConfig {
    EndpointConfig {
        retries: 3,
        init_wait: Duration::from_secs(1),
        fragmentation: on,
        fragment_size: 400,
        ..EndpointConfig::default()
    }
}

#[test]
fn ike_fragmentation_rfc7383() {
    let pki = pki();
    // RSA certificate: IKE_AUTH of ~1.2 kB cut into 400-byte fragments.
    let mut p = sig_pair(true, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    reconfigure(&mut p, small_fragments(true), small_fragments(true));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let frags: Vec<&Transmit> = p
        .sent
        .iter()
        .map(|(_, t)| t)
        .filter(|t| is_fragment(t))
        .collect();
    assert!(frags.len() >= 4, "{} fragments", frags.len());
    assert!(frags.iter().all(|t| t.data.len() <= 400));
    // Rekeying the child still works over the fragmenting SA.
    let c = p.a.children()[0].child;
    p.a.ep.rekey_child(p.now, c).unwrap();
    p.run();
    assert_tunnel(&p, 1);

    // Losing one fragment: the whole request is retransmitted and reassembled.
    let mut p = sig_pair(true, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    reconfigure(&mut p, small_fragments(true), small_fragments(true));
    let mut dropped = false;
    p.filter = Box::new(move |t| {
        if !dropped && is_fragment(t) && t.remote.ip().to_string() == B_IP {
            dropped = true;
            1
        } else {
            0
        }
    });
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.a.ep.statistics().p1_retransmit, 1);

    // A peer without fragmentation support gets whole messages.
    let mut p = sig_pair(true, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    reconfigure(&mut p, small_fragments(true), small_fragments(false));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(!p.sent.iter().any(|(_, t)| is_fragment(t)));
}

#[test]
fn unknown_critical_payload_is_rejected() {
    use ike_proto::wire::{ExchangeType, Flags, Message, Payload, PayloadType, Unknown};
    let (_, b) = psk_peers("k", "k");
    let mut bn = Node::new("b", B_IP, vec![b]);
    let msg = Message {
        header: Header {
            spi_i: 0x1122334455667788,
            spi_r: 0,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags::new(true, false),
            message_id: 0,
            length: 0,
        },
        payloads: vec![Payload::Unknown(Unknown {
            ty: PayloadType(222),
            critical: true,
            body: vec![1, 2, 3],
        })],
    };
    let now = Instant::now();
    bn.ep
        .handle_datagram(now, sock(B_IP, 500), sock(A_IP, 500), &msg.encode());
    let reply = bn.ep.poll_transmit().unwrap();
    let m = Message::decode(&reply.data).unwrap();
    assert!(m.header.flags.response());
    let Payload::Notify(n) = &m.payloads[0] else {
        panic!("{m:?}")
    };
    assert_eq!(
        n.ty,
        ike_proto::wire::NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD
    );
    assert_eq!(n.data, vec![222]);
    assert!(bn.ep.ike_sas().is_empty());
    // A non-critical unknown payload in a real initiator's request is ignored.
    let (a, _) = psk_peers("k", "k");
    let mut an = Node::new("a", A_IP, vec![a]);
    an.ep
        .connect(now, "to-b", sock(A_IP, 500), sock(B_IP, 500))
        .unwrap();
    let t = an.ep.poll_transmit().unwrap();
    let mut m = Message::decode(&t.data).unwrap();
    m.payloads.push(Payload::Unknown(Unknown {
        ty: PayloadType(223),
        critical: false,
        body: vec![9; 8],
    }));
    bn.ep
        .handle_datagram(now, sock(B_IP, 500), sock(A_IP, 500), &m.encode());
    let reply = Message::decode(&bn.ep.poll_transmit().unwrap().data).unwrap();
    assert!(matches!(reply.payloads[0], Payload::Sa(_)), "{reply:?}");
    assert_eq!(bn.ep.ike_sas().len(), 1);
}

#[test]
fn responder_picks_local_identity_by_idr() {
    // B answers as b1 or b2 (same PSK, same peer address); A asks for b2 with IDr.
    let (mut a, b1) = psk_peers("k", "k");
    a.remote_id = Some("b2.example.com".parse().unwrap());
    let mut b2 = b1.clone();
    b2.name = "as-b2".into();
    b2.local_id = "b2.example.com".parse().unwrap();
    let mut p = Pair::new(
        Node::new("a", A_IP, vec![a]),
        Node::new("b", B_IP, vec![b1, b2]),
    );
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(
        p.b.events
            .iter()
            .any(|e| e.contains("IkeSaUp") && e.contains("as-b2")),
        "{:?}",
        p.b.events
    );
    let up = p.a.ep.ike_sas();
    assert_eq!(up[0].peer_id, Some("b2.example.com".parse().unwrap()));
    // A pattern is not sent as IDr: B answers with its first identity, which A accepts.
    let (mut a, b1) = psk_peers("k", "k");
    a.remote_id = Some("*.example.com".parse().unwrap());
    let mut p = Pair::new(
        Node::new("a", A_IP, vec![a]),
        Node::new("b", B_IP, vec![b1]),
    );
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
}

#[test]
fn responder_picks_policy_by_proposal() {
    use ike_proto::crypto::encr::EncrAlg;
    use ike_proto::crypto::keys::IkeSuite;
    // B has two policies for any address: the first only accepts ChaCha20, the second
    // AES-GCM; A offers AES-GCM only and must land on the second.
    let (a, b_gcm) = psk_peers("k", "k");
    let mut b_chacha = b_gcm.clone();
    b_chacha.name = "chacha".into();
    b_chacha.ike_proposals = vec![IkeSuite {
        encr: EncrAlg::ChaCha20Poly1305,
        ..IkeSuite::DEFAULT
    }];
    let mut a = a;
    a.ike_proposals = vec![IkeSuite::DEFAULT];
    let mut p = Pair::new(
        Node::new("a", A_IP, vec![a]),
        Node::new("b", B_IP, vec![b_chacha, b_gcm]),
    );
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(
        p.b.events
            .iter()
            .any(|e| e.contains("IkeSaUp") && e.contains("to-a"))
    );
}

#[test]
fn child_sa_limit_per_ike_sa() {
    let (a, b) = psk_peers("k", "k");
    let bn = Node::with_config(
        "b",
        B_IP,
        vec![b],
        EndpointConfig {
            max_children_per_ike_sa: 2,
            ..EndpointConfig::default()
        },
    );
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), bn);
    p.connect();
    p.run();
    let sa = p.a.sa();
    for _ in 0..3 {
        p.a.ep.create_child(p.now, sa, 0).unwrap();
        p.run();
    }
    assert_tunnel(&p, 2);
    assert!(
        p.a.failed_children
            .iter()
            .any(|r| r.contains("NO_ADDITIONAL_SAS")),
        "{:?}",
        p.a.failed_children
    );
    // Rekeying at the limit still works.
    let c = p.a.children()[0].child;
    p.a.ep.rekey_child(p.now, c).unwrap();
    p.run();
    assert_tunnel(&p, 2);
}

/// Two children ("net" in IKE_AUTH, "second" by CREATE_CHILD_SA) between A and B.
fn two_child_peers() -> (PeerConfig, PeerConfig) {
    let (mut a, mut b) = psk_peers("k", "k");
    a.children.push(ChildConfig::tunnel(
        "second",
        vec![net("10.3.0.0/16")],
        vec![net("10.4.0.0/16")],
    ));
    b.children.push(ChildConfig::tunnel(
        "second",
        vec![net("10.4.0.0/16")],
        vec![net("10.3.0.0/16")],
    ));
    (a, b)
}

/// Position of the first event (Debug text) containing every one of `parts`.
fn event_pos(n: &Node, parts: &[&str]) -> Option<usize> {
    n.events
        .iter()
        .position(|e| parts.iter().all(|p| e.contains(p)))
}

/// Positions of every event containing every one of `parts`.
fn event_positions(n: &Node, parts: &[&str]) -> Vec<usize> {
    n.events
        .iter()
        .enumerate()
        .filter(|(_, e)| parts.iter().all(|p| e.contains(p)))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn reauthentication_replaces_the_ike_sa_make_before_break() {
    let (mut a, b) = two_child_peers();
    a.reauth_interval = Some(Duration::from_secs(100));
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    let t0 = p.now;
    p.connect();
    p.run_for(Duration::from_secs(1));
    let old_a = p.a.sa();
    let old_b = p.b.sa();
    p.a.ep.create_child(p.now, old_a, 1).unwrap();
    p.run_for(Duration::from_secs(1));
    assert_tunnel(&p, 2);
    let old_spis = p.a.ep.ike_sas()[0].spis;
    let old_children: Vec<u32> = p.a.children().iter().map(|c| c.inbound.spi).collect();
    // The display knows when: the interval after authentication (a few virtual ms in).
    let info = &p.a.ep.ike_sas()[0];
    assert_eq!(info.reauth_interval, Some(Duration::from_secs(100)));
    let at = info.reauth_at.unwrap();
    assert!(at > t0 + Duration::from_secs(100) && at < t0 + Duration::from_secs(101));
    // B has no interval: it never reauthenticates by itself.
    assert_eq!(p.b.ep.ike_sas()[0].reauth_at, None);

    // Nothing before the interval.
    p.run_for(Duration::from_secs(97));
    assert!(
        event_pos(&p.a, &["IkeSaReauth"]).is_none(),
        "{:?}",
        p.a.events
    );
    assert_eq!(p.a.ep.ike_sas().len(), 1);

    // At the interval: a new IKE SA, children re-created, then the old SA deleted.
    p.run_for(Duration::from_secs(3));
    let started = event_pos(&p.a, &["IkeSaReauthStarted", &format!("old: {old_a:?}")])
        .unwrap_or_else(|| panic!("no reauthentication: {:?}", p.a.events));
    let done = event_pos(&p.a, &["IkeSaReauthenticated", "children: 2"])
        .unwrap_or_else(|| panic!("not reauthenticated: {:?}", p.a.events));
    let new_a = p.a.sa();
    assert_ne!(new_a, old_a);
    let installs = event_positions(&p.a, &["InstallChildSa", &format!("ike_sa: {new_a:?}")]);
    assert_eq!(installs.len(), 2, "{:?}", p.a.events);
    let old_deletes = event_positions(&p.a, &["DeleteChildSa", &format!("ike_sa: {old_a:?}")]);
    assert_eq!(old_deletes.len(), 2, "{:?}", p.a.events);
    let old_down = event_pos(&p.a, &["IkeSaDown", &format!("ike_sa: {old_a:?}")]).unwrap();
    assert!(
        started < installs[0] && installs[1] < done,
        "{:?}",
        p.a.events
    );
    assert!(
        done < old_deletes[0] && old_deletes[1] < old_down,
        "{:?}",
        p.a.events
    );
    assert!(
        p.a.down
            .iter()
            .any(|(id, r)| *id == old_a && *r == CloseReason::Reauthenticated),
        "{:?}",
        p.a.down
    );
    // B: the new SA came up without INITIAL_CONTACT (the old one was not dropped as
    // stale): its new children were installed while the old ones still were, and the old
    // SA ended when A deleted it.
    let new_b = p.b.sa();
    assert_ne!(new_b, old_b);
    let b_installs = event_positions(&p.b, &["InstallChildSa", &format!("ike_sa: {new_b:?}")]);
    let b_deletes = event_positions(&p.b, &["DeleteChildSa", &format!("ike_sa: {old_b:?}")]);
    assert_eq!(
        (b_installs.len(), b_deletes.len()),
        (2, 2),
        "{:?}",
        p.b.events
    );
    assert!(b_installs[1] < b_deletes[0], "{:?}", p.b.events);
    assert_eq!(
        p.b.down,
        vec![(old_b, CloseReason::PeerDeleted)],
        "{:?}",
        p.b.events
    );
    // One IKE SA each side, new SPIs, both children under it, new child SPIs.
    for n in [&p.a, &p.b] {
        let sas = n.ep.ike_sas();
        assert_eq!(sas.len(), 1, "{}: {sas:?}", n.name);
        assert_eq!(sas[0].children.len(), 2, "{}: {sas:?}", n.name);
        assert_eq!(sas[0].state, "DONE");
    }
    let new_spis = p.a.ep.ike_sas()[0].spis;
    assert_ne!(new_spis.0, old_spis.0);
    assert_ne!(new_spis.1, old_spis.1);
    assert_eq!(p.b.ep.ike_sas()[0].spis, new_spis);
    assert_tunnel(&p, 2);
    assert!(
        p.a.children()
            .iter()
            .all(|c| !old_children.contains(&c.inbound.spi) && c.ike_sa == new_a)
    );
    let s = p.a.ep.statistics();
    assert_eq!((s.p1_active, s.p1_expired, s.p2_active), (1, 0, 2), "{s:?}");
    assert_eq!(s.p1_local_act_success, 2);
    // And the next reauthentication is scheduled on the new SA.
    assert!(p.a.ep.ike_sas()[0].reauth_at.unwrap() > p.now + Duration::from_secs(95));
}

#[test]
fn failed_reauthentication_keeps_the_old_sa_and_retries() {
    let (mut a, b) = psk_peers("k", "k");
    a.reauth_interval = Some(Duration::from_secs(100));
    let mut p = Pair::new(
        Node::new("a", A_IP, vec![a]),
        Node::new("b", B_IP, vec![b.clone()]),
    );
    p.connect();
    p.run_for(Duration::from_secs(1));
    assert_tunnel(&p, 1);
    let old_a = p.a.sa();
    let old_b = p.b.sa();
    let children: Vec<u32> = p.a.children().iter().map(|c| c.inbound.spi).collect();
    // B's key changes: existing SAs keep theirs, a new authentication fails.
    let (_, wrong) = psk_peers("k", "other");
    p.b.ep.set_peers(vec![wrong]);
    p.run_for(Duration::from_secs(101));
    assert!(
        event_pos(&p.a, &["IkeSaReauthStarted"]).is_some(),
        "{:?}",
        p.a.events
    );
    let failed = event_pos(&p.a, &["IkeSaReauthFailed", &format!("old: {old_a:?}")])
        .unwrap_or_else(|| panic!("{:?}", p.a.events));
    assert!(
        p.a.events[failed].contains("AuthFailed"),
        "{}",
        p.a.events[failed]
    );
    assert!(
        p.a.events[failed].contains("retry_in: 30s"),
        "{}",
        p.a.events[failed]
    );
    // The old SA and its child are untouched on both sides.
    assert_eq!(p.a.sa(), old_a);
    assert_eq!(p.b.sa(), old_b);
    assert!(!p.a.down.iter().any(|(id, _)| *id == old_a));
    assert!(!p.b.down.iter().any(|(id, _)| *id == old_b));
    assert_eq!(p.a.ep.ike_sas().len(), 1);
    assert_eq!(p.b.ep.ike_sas().len(), 1);
    assert_tunnel(&p, 1);
    assert_eq!(
        p.a.children()
            .iter()
            .map(|c| c.inbound.spi)
            .collect::<Vec<_>>(),
        children
    );
    // The next attempt comes after the back-off; with the key fixed it succeeds.
    let retry = p.a.ep.ike_sas()[0].reauth_at.unwrap();
    assert!(retry > p.now + Duration::from_secs(25), "{retry:?}");
    p.b.ep.set_peers(vec![b]);
    p.run_for(Duration::from_secs(35));
    assert!(
        event_pos(&p.a, &["IkeSaReauthenticated", &format!("old: {old_a:?}")]).is_some(),
        "{:?}",
        p.a.events
    );
    assert_ne!(p.a.sa(), old_a);
    assert_eq!(p.a.ep.ike_sas().len(), 1);
    assert_eq!(p.b.ep.ike_sas().len(), 1);
    assert_tunnel(&p, 1);
}

#[test]
fn responder_with_the_interval_reauthenticates() {
    let (a, mut b) = psk_peers("k", "k");
    b.reauth_interval = Some(Duration::from_secs(100));
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run_for(Duration::from_secs(1));
    let old_a = p.a.sa();
    // The original responder waits half an interval longer (at least 30 s).
    p.run_for(Duration::from_secs(140));
    assert_eq!(p.a.sa(), old_a, "{:?}", p.b.events);
    p.run_for(Duration::from_secs(15));
    assert!(
        event_pos(&p.b, &["IkeSaReauthenticated"]).is_some(),
        "{:?}",
        p.b.events
    );
    assert_ne!(p.a.sa(), old_a);
    assert_eq!(p.a.down, vec![(old_a, CloseReason::PeerDeleted)]);
    let sas = p.b.ep.ike_sas();
    assert_eq!(sas.len(), 1);
    assert!(sas[0].initiator);
    assert_eq!(p.a.ep.ike_sas().len(), 1);
    assert_tunnel(&p, 1);
}

#[test]
fn no_reauthentication_without_an_interval() {
    let mut p = psk_pair();
    p.connect();
    p.run_for(Duration::from_secs(3600));
    assert!(p.a.ep.ike_sas()[0].reauth_at.is_none());
    assert!(event_pos(&p.a, &["IkeSaReauth"]).is_none());
    assert!(event_pos(&p.b, &["IkeSaReauth"]).is_none());
    assert_eq!(p.a.up.len(), 1);
}

/// Reauthentication authenticates afresh: both ends sign again (here with a slow signer,
/// as through an NSS server), and a signer that fails at reauthentication time (NSS
/// server unreachable) leaves the old SA in place.
#[test]
fn reauthentication_signs_again_and_survives_a_failing_signer() {
    let pki = pki();
    let mut p = sig_pair(true, RemoteAuth::Certificate(verifier_for(&pki)), &pki);
    let mut peers = p.a.peers.clone();
    peers[0].reauth_interval = Some(Duration::from_secs(100));
    p.a.ep.set_peers(peers);
    p.a.sign_mode = SignMode::After(Duration::from_millis(300));
    p.connect();
    p.run_for(Duration::from_secs(2));
    assert_tunnel(&p, 1);
    let signs = |n: &Node| {
        n.events
            .iter()
            .filter(|e| e.contains("SignRequest"))
            .count()
    };
    assert_eq!((signs(&p.a), signs(&p.b)), (1, 1));
    let old_a = p.a.sa();
    p.run_for(Duration::from_secs(100));
    assert_eq!((signs(&p.a), signs(&p.b)), (2, 2), "{:?}", p.a.events);
    assert!(event_pos(&p.a, &["IkeSaReauthenticated"]).is_some());
    let second = p.a.sa();
    assert_ne!(second, old_a);
    assert_tunnel(&p, 1);
    // Next time the signer fails: the SA that is up stays up, with its child.
    p.a.sign_mode = SignMode::Fail;
    let b_down = p.b.down.clone();
    p.run_for(Duration::from_secs(101));
    assert_eq!(signs(&p.a), 3);
    assert!(
        event_pos(&p.a, &["IkeSaReauthFailed", &format!("old: {second:?}")]).is_some(),
        "{:?}",
        p.a.events
    );
    assert_eq!(p.a.sa(), second);
    assert_eq!(p.a.ep.ike_sas().len(), 1);
    // B only has the attempt's half-open SA beside it (it expires on its own).
    let states: Vec<&str> = p.b.ep.ike_sas().iter().map(|s| s.state).collect();
    assert_eq!(states, ["DONE", "HALF-OPEN"]);
    assert_eq!(p.b.down, b_down);
    assert_tunnel(&p, 1);
}
