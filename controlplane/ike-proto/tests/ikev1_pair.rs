//! Two IKEv1 endpoints in memory on a virtual clock (after quinn-proto's `Pair`), with
//! loss, duplication, tampering, NAT and slow or failing signers injected: main and
//! aggressive mode with PSK and RSA, quick mode with and without PFS, retransmission,
//! collisions, rekeying of both phases, DELETE, DPD, lifetimes.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ike_proto::Identity;
use ike_proto::crypto::Secret;
use ike_proto::crypto::cert::ChainVerifier;
use ike_proto::crypto::encr::EncrAlg;
use ike_proto::crypto::integ::IntegAlg;
use ike_proto::crypto::sig::{KeyAlgorithm, LocalSigner, SignatureScheme, Signer};
use ike_proto::ikev1::wire::{ExchangeType, Header};
use ike_proto::ikev1::{Endpoint, ExchangeMode, ResponderModes, V1Peer, is_ikev1};
use ike_proto::ikev2::ts;
use ike_proto::ikev2::{
    ChildConfig, ChildId, ChildProposal, CloseReason, EndpointConfig, Event, IkeSaId,
    InstallChildSa, LocalAuth, PeerConfig, RemoteAuth, RequestId, Statistics, Transmit,
};
use ike_proto::wire::{DhGroup, TrafficSelector};

const A_IP: &str = "192.0.2.1";
const B_IP: &str = "192.0.2.2";
const NAT_IP: &str = "203.0.113.9";
const PKI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/ikev1/mm-rsa-modp2048-aes128-sha256/pki/"
);

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn net(s: &str) -> TrafficSelector {
    let (a, l) = s.split_once('/').unwrap();
    ts::subnet(a.parse().unwrap(), l.parse().unwrap())
}

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
    ip: IpAddr,
    signer: Option<Arc<LocalSigner>>,
    sign_mode: SignMode,
    pending_signs: Vec<(Instant, RequestId, Vec<u8>, SignatureScheme)>,
    events: Vec<String>,
    installed: HashMap<ChildId, InstallChildSa>,
    deleted: Vec<ChildId>,
    up: Vec<IkeSaId>,
    down: Vec<(IkeSaId, CloseReason)>,
    rekeyed: Vec<(IkeSaId, IkeSaId)>,
    failed_children: Vec<String>,
    nat_events: usize,
    verify: Option<VerifyReq>,
}

fn config() -> EndpointConfig {
    EndpointConfig {
        retries: 3,
        init_wait: Duration::from_secs(1),
        ..EndpointConfig::default()
    }
}

impl Node {
    fn new(name: &'static str, ip: &str, peers: Vec<V1Peer>) -> Self {
        let mut ep = Endpoint::new(config());
        ep.set_peers(peers);
        ep.set_unix_time(1_800_000_000);
        Self {
            name,
            ep,
            ip: ip.parse().unwrap(),
            signer: None,
            sign_mode: SignMode::Now,
            pending_signs: Vec::new(),
            events: Vec::new(),
            installed: HashMap::new(),
            deleted: Vec::new(),
            up: Vec::new(),
            down: Vec::new(),
            rekeyed: Vec::new(),
            failed_children: Vec::new(),
            nat_events: 0,
            verify: None,
        }
    }

    fn live_sas(&self) -> Vec<IkeSaId> {
        self.up
            .iter()
            .filter(|id| !self.down.iter().any(|(d, _)| d == *id))
            .copied()
            .collect()
    }

    fn sa(&self) -> IkeSaId {
        *self
            .live_sas()
            .last()
            .unwrap_or_else(|| panic!("{}: no ISAKMP SA up; events {:#?}", self.name, self.events))
    }

    fn children(&self) -> Vec<&InstallChildSa> {
        let mut v: Vec<_> = self.installed.values().collect();
        v.sort_by_key(|c| c.child);
        v
    }

    fn stats(&self) -> Statistics {
        self.ep.statistics()
    }
}

type Filter = Box<dyn FnMut(&Transmit, usize) -> u8>;

/// A VerifyRequest: id, certificates, signed hash, signature.
type VerifyReq = (RequestId, Vec<Vec<u8>>, Vec<u8>, Vec<u8>);

struct Pair {
    now: Instant,
    a: Node,
    b: Node,
    latency: Duration,
    in_flight: Vec<(Instant, u64, Transmit)>,
    seq: u64,
    /// Per datagram (with its index in `sent`): 0 deliver, 1 drop, 2 duplicate, 3 tamper.
    filter: Filter,
    nat: bool,
    delivered: u64,
    sent: Vec<(Instant, Transmit)>,
}

impl Pair {
    fn new(a: Node, b: Node) -> Self {
        Self {
            now: Instant::now(),
            a,
            b,
            latency: Duration::from_millis(5),
            in_flight: Vec::new(),
            seq: 0,
            filter: Box::new(|_, _| 0),
            nat: false,
            delivered: 0,
            sent: Vec::new(),
        }
    }

    fn connect(&mut self) -> IkeSaId {
        self.a
            .ep
            .connect(self.now, "to-b", sock(A_IP, 500), sock(B_IP, 500))
            .unwrap()
    }

    fn connect_b(&mut self) -> IkeSaId {
        self.b
            .ep
            .connect(self.now, "to-a", sock(B_IP, 500), sock(A_IP, 500))
            .unwrap()
    }

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

    fn collect(&mut self) {
        loop {
            let before = self.sent.len();
            let events = self.a.events.len() + self.b.events.len();
            for side in 0..2 {
                loop {
                    let node = if side == 0 { &mut self.a } else { &mut self.b };
                    let Some(mut t) = node.ep.poll_transmit() else {
                        break;
                    };
                    self.nat_out(&mut t);
                    let idx = self.sent.len();
                    self.sent.push((self.now, t.clone()));
                    let at = self.now + self.latency;
                    match (self.filter)(&t, idx) {
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
                            t.data[n - 20] ^= 0x40;
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
            if self.sent.len() == before && self.a.events.len() + self.b.events.len() == events {
                return;
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

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        for _ in 0..200_000 {
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

    fn run(&mut self) {
        self.run_for(Duration::from_secs(60));
    }

    fn step(&mut self) {
        let now = self.now;
        self.in_flight.sort_by_key(|(at, s, _)| (*at, *s));
        let mut due = Vec::new();
        while self.in_flight.first().is_some_and(|(at, _, _)| *at <= now) {
            due.push(self.in_flight.remove(0).2);
        }
        for mut t in due {
            self.nat_in(&mut t);
            self.delivered += 1;
            let node = if t.remote.ip() == self.a.ip {
                &mut self.a
            } else {
                &mut self.b
            };
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

    /// ISAKMP datagrams of one exchange type sent so far.
    fn count(&self, ex: ExchangeType) -> usize {
        self.sent
            .iter()
            .filter(|(_, t)| ike_header(t).is_some_and(|h| h.exchange == ex))
            .count()
    }
}

/// The ISAKMP header of a datagram (after the non-ESP marker).
fn ike_header(t: &Transmit) -> Option<Header> {
    let d = if t.local.port() == 4500 || t.remote.port() == 4500 {
        t.data.get(4..)?
    } else {
        &t.data[..]
    };
    Header::decode(d).ok()
}

fn handle_event(node: &mut Node, now: Instant, e: Event) {
    node.events
        .push(format!("{e:?}").chars().take(200).collect());
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
            node.deleted.push(child);
        }
        Event::IkeSaUp { ike_sa, .. } => node.up.push(ike_sa),
        Event::IkeSaRekeyed { old, new } => node.rekeyed.push((old, new)),
        Event::IkeSaDown { ike_sa, reason } => node.down.push((ike_sa, reason)),
        Event::ChildSaFailed { reason, .. } => node.failed_children.push(reason),
        Event::NatDetected { .. } => node.nat_events += 1,
        Event::VerifyRequest {
            id,
            certs,
            octets,
            signature,
            ..
        } => {
            node.verify = Some((id, certs, octets, signature));
        }
        _ => {}
    }
}

fn child(name: &str, local: &str, remote: &str) -> ChildConfig {
    let mut c = ChildConfig::tunnel(name, vec![net(local)], vec![net(remote)]);
    c.proposals = vec![ChildProposal {
        encr: EncrAlg::AesCbc { key_bits: 128 },
        integ: Some(IntegAlg::HmacSha256_128),
        esn: false,
        pfs: None,
    }];
    c
}

fn peer_cfg(
    name: &str,
    me: &str,
    them: &str,
    auth: (LocalAuth, RemoteAuth),
    c: ChildConfig,
) -> PeerConfig {
    let mut p = PeerConfig::psk(
        name,
        me.parse().unwrap(),
        them.parse().unwrap(),
        Secret::from("x"),
        c,
    );
    p.local_auth = auth.0;
    p.remote_auth = auth.1;
    p
}

fn psk(s: &str) -> (LocalAuth, RemoteAuth) {
    (
        LocalAuth::Psk(Secret::from(s)),
        RemoteAuth::Psk(Secret::from(s)),
    )
}

fn psk_peers(psk_a: &str, psk_b: &str) -> (V1Peer, V1Peer) {
    let a = peer_cfg(
        "to-b",
        A_IP,
        B_IP,
        psk(psk_a),
        child("net", "10.1.0.0/16", "10.2.0.0/16"),
    );
    let b = peer_cfg(
        "to-a",
        B_IP,
        A_IP,
        psk(psk_b),
        child("net", "10.2.0.0/16", "10.1.0.0/16"),
    );
    (V1Peer::new(a), V1Peer::new(b))
}

fn psk_pair() -> Pair {
    let (a, b) = psk_peers(
        "correct horse battery staple",
        "correct horse battery staple",
    );
    Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]))
}

fn rsa_pair(verify_b: RemoteAuth, verify_a: RemoteAuth) -> Pair {
    let load = |who: &str| {
        let key = Arc::new(
            LocalSigner::from_pem(&std::fs::read(format!("{PKI}{who}.key")).unwrap()).unwrap(),
        );
        let cert = ike_proto::crypto::cert::Certificate::from_pem(
            &std::fs::read(format!("{PKI}{who}.pem")).unwrap(),
        )
        .unwrap();
        (key, cert.der().to_vec())
    };
    let (ka, ca) = load("a");
    let (kb, cb) = load("b");
    let sig = |k: &LocalSigner, c: Vec<u8>| LocalAuth::Signature {
        certs: vec![c],
        key: k.key_algorithm(),
        schemes: Vec::new(),
    };
    let a = peer_cfg(
        "to-b",
        "a.example.com",
        "b.example.com",
        (sig(&ka, ca), verify_b),
        child("net", "10.1.0.0/16", "10.2.0.0/16"),
    );
    let b = peer_cfg(
        "to-a",
        "b.example.com",
        "a.example.com",
        (sig(&kb, cb), verify_a),
        child("net", "10.2.0.0/16", "10.1.0.0/16"),
    );
    let mut na = Node::new("a", A_IP, vec![V1Peer::new(a)]);
    na.signer = Some(ka);
    let mut nb = Node::new("b", B_IP, vec![V1Peer::new(b)]);
    nb.signer = Some(kb);
    Pair::new(na, nb)
}

fn verifier() -> RemoteAuth {
    let mut v = ChainVerifier::new();
    v.add_ca_pem(&std::fs::read(format!("{PKI}ca.pem")).unwrap())
        .unwrap();
    RemoteAuth::Certificate(Arc::new(v))
}

/// Both sides have matching child SAs (SPIs and keys crossed).
fn assert_tunnel(p: &Pair, expected: usize) {
    let a = p.a.children();
    let b = p.b.children();
    assert_eq!(a.len(), expected, "a children: {:#?}", p.a.events);
    assert_eq!(b.len(), expected, "b children: {:#?}", p.b.events);
    for ca in &a {
        let cb = b
            .iter()
            .find(|cb| cb.inbound.spi == ca.outbound.spi)
            .unwrap_or_else(|| panic!("no peer child for spi {:x}", ca.outbound.spi));
        assert_eq!(cb.outbound.spi, ca.inbound.spi);
        assert_eq!(ca.outbound.encr_key, cb.inbound.encr_key);
        assert_eq!(ca.inbound.encr_key, cb.outbound.encr_key);
        assert_eq!(ca.outbound.integ_key, cb.inbound.integ_key);
        assert_eq!(ca.inbound.integ_key, cb.outbound.integ_key);
        assert_ne!(ca.inbound.encr_key, ca.outbound.encr_key);
        assert_eq!(ca.local_ts, cb.remote_ts);
        assert_eq!(ca.remote_ts, cb.local_ts);
        assert_eq!((ca.encr, ca.integ, ca.mode), (cb.encr, cb.integ, cb.mode));
        assert_eq!(ca.lifetimes.hard_secs, cb.lifetimes.hard_secs);
    }
}

#[test]
fn main_mode_psk_happy_path() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    assert_eq!(p.a.up.len(), 1, "{:#?}", p.a.events);
    assert_eq!(p.b.up.len(), 1, "{:#?}", p.b.events);
    assert_tunnel(&p, 1);
    let c = p.a.children()[0];
    assert_eq!(c.local_ts, vec![net("10.1.0.0/16")]);
    assert!(c.encap.is_none());
    assert_eq!(c.inbound.encr_key.len(), 16);
    assert_eq!(c.inbound.integ_key.len(), 32);
    assert!(c.inbound.spi >= 256);
    // Six main mode messages and three quick mode messages, nothing repeated.
    assert_eq!(p.count(ExchangeType::IDENTITY_PROTECTION), 6);
    assert_eq!(p.count(ExchangeType::QUICK), 3);
    assert_eq!(p.delivered, 9);
    assert!(p.sent.iter().all(|(_, t)| is_ikev1(&t.data)));
    let (sa, sb) = (p.a.stats(), p.b.stats());
    assert_eq!(
        (
            sa.p1_active,
            sa.p1_local_act_success,
            sa.p2_active,
            sa.p2_local_act_success
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        (
            sb.p1_active,
            sb.p1_remote_act_success,
            sb.p2_active,
            sb.p2_remote_act_success
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        sa.p1_retransmit + sa.p2_retransmit + sb.p1_retransmit + sb.p2_retransmit,
        0
    );
    let info = p.a.ep.ike_sas(p.now);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].mode, ExchangeMode::Main);
    assert_eq!(info[0].state, "DONE");
    assert_eq!(info[0].peer_id, Some(B_IP.parse::<Identity>().unwrap()));
    assert_eq!(info[0].children.len(), 1);
    // Default phase 1 lifetime 4 h, rekeyed 9 min before.
    let (age, expires, rekey) = (
        info[0].age.unwrap(),
        info[0].expires_in.unwrap(),
        info[0].rekey_in.unwrap(),
    );
    assert_eq!(age + expires, Duration::from_secs(4 * 3600));
    assert_eq!(expires - rekey, Duration::from_secs(540));
    // IKEv1 handles never collide with IKEv2 ones (those count from 1).
    assert!(info[0].id.0 > 1 << 60);
}

fn aggressive(p: &mut V1Peer) {
    p.v1.initiate = ExchangeMode::Aggressive;
    p.v1.aggressive_psk = true;
}

#[test]
fn aggressive_mode_psk_is_off_unless_configured() {
    // The initiator refuses to start it…
    let (mut a, b) = psk_peers("k", "k");
    a.v1.initiate = ExchangeMode::Aggressive;
    let mut p = Pair::new(
        Node::new("a", A_IP, vec![a.clone()]),
        Node::new("b", B_IP, vec![b]),
    );
    let e =
        p.a.ep
            .connect(p.now, "to-b", sock(A_IP, 500), sock(B_IP, 500))
            .unwrap_err();
    assert!(e.to_string().contains("dictionary"), "{e}");
    // …and a responder without the opt-in answers NO-PROPOSAL-CHOSEN without sending any
    // hash keyed by its PSK.
    a.v1.aggressive_psk = true;
    let (_, b) = psk_peers("k", "k");
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert!(p.a.up.is_empty() && p.b.up.is_empty());
    assert!(
        matches!(
            p.a.down.as_slice(),
            [(_, CloseReason::NegotiationFailed(_))]
        ),
        "{:?}",
        p.a.down
    );
    let from_b: Vec<_> = p
        .sent
        .iter()
        .filter(|(_, t)| t.local.ip().to_string() == B_IP)
        .collect();
    assert_eq!(from_b.len(), 1);
    assert_eq!(
        ike_header(&from_b[0].1).unwrap().exchange,
        ExchangeType::INFORMATIONAL
    );
    assert_eq!(p.b.stats().p1_remote_act_failure, 1);
    // A responder that only speaks main mode refuses too.
    let (mut a, mut b) = psk_peers("k", "k");
    aggressive(&mut a);
    aggressive(&mut b);
    b.v1.respond = ResponderModes::Main;
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert!(p.a.up.is_empty() && p.b.up.is_empty());
}

#[test]
fn aggressive_mode_psk_when_enabled() {
    let (mut a, mut b) = psk_peers("k", "k");
    aggressive(&mut a);
    b.v1.aggressive_psk = true;
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.count(ExchangeType::AGGRESSIVE), 3);
    assert_eq!(p.count(ExchangeType::QUICK), 3);
    assert_eq!(p.b.ep.ike_sas(p.now)[0].mode, ExchangeMode::Aggressive);
    assert_eq!(
        p.b.ep.ike_sas(p.now)[0].peer_id,
        Some("192.0.2.1".parse().unwrap())
    );
}

#[test]
fn main_mode_rsa_signatures_through_the_caller() {
    let mut p = rsa_pair(verifier(), verifier());
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    // Both ends asked their signer for a DigestInfo-less RSA signature.
    for n in [&p.a, &p.b] {
        assert!(
            n.events
                .iter()
                .any(|e| e.contains("SignRequest") && e.contains("RsaPkcs1Raw")),
            "{:#?}",
            n.events
        );
    }
    assert_eq!(
        p.a.ep.ike_sas(p.now)[0].peer_id,
        Some("b.example.com".parse().unwrap())
    );
}

#[test]
fn aggressive_mode_rsa_with_slow_signer_and_caller_verification() {
    let mut p = rsa_pair(RemoteAuth::CallerVerifies, verifier());
    p.a.ep.set_peers(vec![{
        let mut v = V1Peer::new(peer_of(&p, 'a'));
        v.v1.initiate = ExchangeMode::Aggressive;
        v
    }]);
    p.a.sign_mode = SignMode::After(Duration::from_millis(800));
    p.b.sign_mode = SignMode::After(Duration::from_millis(300));
    p.connect();
    // A must answer its VerifyRequest itself: check chain and signature with the CA.
    for _ in 0..50 {
        p.run_for(Duration::from_millis(100));
        let req = p.a.events.iter().any(|e| e.contains("VerifyRequest"));
        if req {
            break;
        }
    }
    let ver = take_verify(&mut p);
    let (id, certs, octets, sig) = ver.expect("a VerifyRequest");
    let mut v = ChainVerifier::new();
    v.add_ca_pem(&std::fs::read(format!("{PKI}ca.pem")).unwrap())
        .unwrap();
    let chain = v
        .verify_for_identity(
            &certs[0],
            &[],
            &"b.example.com".parse().unwrap(),
            1_800_000_000,
        )
        .unwrap();
    chain
        .end_entity
        .public_key()
        .verify(SignatureScheme::RsaPkcs1Raw, &octets, &sig)
        .unwrap();
    p.a.ep.handle_verification(p.now, id, Ok(()));
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.count(ExchangeType::AGGRESSIVE), 3);
}

/// The last VerifyRequest A received (the harness only records events as text).
fn take_verify(p: &mut Pair) -> Option<VerifyReq> {
    p.a.verify.take()
}

fn peer_of(p: &Pair, _who: char) -> PeerConfig {
    let _ = p;
    let load = |who: &str| {
        let key =
            LocalSigner::from_pem(&std::fs::read(format!("{PKI}{who}.key")).unwrap()).unwrap();
        let cert = ike_proto::crypto::cert::Certificate::from_pem(
            &std::fs::read(format!("{PKI}{who}.pem")).unwrap(),
        )
        .unwrap();
        (key, cert.der().to_vec())
    };
    let (ka, ca) = load("a");
    peer_cfg(
        "to-b",
        "a.example.com",
        "b.example.com",
        (
            LocalAuth::Signature {
                certs: vec![ca],
                key: ka.key_algorithm(),
                schemes: Vec::new(),
            },
            RemoteAuth::CallerVerifies,
        ),
        child("net", "10.1.0.0/16", "10.2.0.0/16"),
    )
}

#[test]
fn signing_failure_and_silence_fail_phase_1() {
    let mut p = rsa_pair(verifier(), verifier());
    p.a.sign_mode = SignMode::Fail;
    p.connect();
    p.run();
    assert!(p.a.up.is_empty());
    assert!(
        matches!(p.a.down.as_slice(), [(_, CloseReason::AuthFailed(_))]),
        "{:?}",
        p.a.down
    );
    let mut p = rsa_pair(verifier(), verifier());
    p.b.sign_mode = SignMode::Never;
    p.connect();
    p.run_for(Duration::from_secs(120));
    assert!(p.a.up.is_empty() && p.b.up.is_empty());
    assert_eq!(p.a.stats().p1_local_act_failure, 1);
    assert_eq!(p.b.stats().p1_remote_act_failure, 1);
}

#[test]
fn wrong_psk_fails_authentication() {
    let (a, b) = psk_peers("one", "two");
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert!(p.a.up.is_empty() && p.b.up.is_empty());
    // B cannot even decrypt MM5 with the wrong key: it drops it, A retransmits until it
    // gives up, and B's half-open SA times out.
    p.run_for(Duration::from_secs(120));
    assert!(!p.a.down.is_empty());
    assert_eq!(p.a.stats().p1_local_act_failure, 1);
    assert!(p.b.stats().invalid_packets >= 1);
}

#[test]
fn wrong_certificate_identity_fails() {
    let mut p = rsa_pair(verifier(), verifier());
    // B expects someone else.
    let mut b = V1Peer::new(peer_of(&p, 'a'));
    b.peer.name = "to-a".into();
    let _ = &mut b;
    p.b.ep.set_peers(vec![{
        let load = std::fs::read(format!("{PKI}b.pem")).unwrap();
        let cert = ike_proto::crypto::cert::Certificate::from_pem(&load).unwrap();
        let key = p.b.signer.as_ref().unwrap().key_algorithm();
        V1Peer::new(peer_cfg(
            "to-a",
            "b.example.com",
            "c.example.com",
            (
                LocalAuth::Signature {
                    certs: vec![cert.der().to_vec()],
                    key,
                    schemes: Vec::new(),
                },
                verifier(),
            ),
            child("net", "10.2.0.0/16", "10.1.0.0/16"),
        ))
    }]);
    p.connect();
    p.run();
    assert!(p.b.up.is_empty());
    assert!(
        matches!(p.b.down.as_slice(), [(_, CloseReason::AuthFailed(_))]),
        "{:?}",
        p.b.down
    );
    assert!(
        matches!(p.a.down.as_slice(), [(_, CloseReason::AuthFailed(_))]),
        "{:?}",
        p.a.down
    );
}

fn pfs_child(name: &str, l: &str, r: &str, g: DhGroup) -> ChildConfig {
    let mut c = child(name, l, r);
    c.proposals[0].pfs = Some(g);
    c
}

#[test]
fn quick_mode_with_pfs() {
    for g in [DhGroup::CURVE25519, DhGroup::MODP_2048, DhGroup::ECP_384] {
        let (mut a, mut b) = psk_peers("k", "k");
        a.peer.children = vec![pfs_child("net", "10.1.0.0/16", "10.2.0.0/16", g)];
        b.peer.children = vec![pfs_child("net", "10.2.0.0/16", "10.1.0.0/16", g)];
        let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
        p.connect();
        p.run();
        assert_tunnel(&p, 1);
        assert_eq!(p.a.ep.ike_sas(p.now)[0].children[0].pfs, Some(g));
    }
    // Responder without PFS configured accepts the initiator's PFS; one requiring PFS
    // refuses an initiator without.
    let (mut a, b) = psk_peers("k", "k");
    a.peer.children = vec![pfs_child(
        "net",
        "10.1.0.0/16",
        "10.2.0.0/16",
        DhGroup::ECP_256,
    )];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let (a, mut b) = psk_peers("k", "k");
    b.peer.children = vec![pfs_child(
        "net",
        "10.2.0.0/16",
        "10.1.0.0/16",
        DhGroup::ECP_256,
    )];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 0);
    assert_eq!(p.a.failed_children.len(), 1, "{:#?}", p.a.events);
    assert_eq!(p.b.failed_children.len(), 1);
    assert_eq!(p.a.live_sas().len(), 1, "phase 1 stays up");
}

#[test]
fn aes_gcm_esp_and_host_port_range_selectors() {
    let (mut a, mut b) = psk_peers("k", "k");
    let gcm = ChildProposal {
        encr: EncrAlg::AesGcm16 { key_bits: 256 },
        integ: None,
        esn: true,
        pfs: None,
    };
    let udp53 = |s: &str| match net(s) {
        TrafficSelector::Range { start, end, .. } => TrafficSelector::Range {
            ip_protocol: 17,
            start_port: 53,
            end_port: 53,
            start,
            end,
        },
        o => o,
    };
    let range = TrafficSelector::Range {
        ip_protocol: 17,
        start_port: 0,
        end_port: 65535,
        start: "10.2.0.10".parse().unwrap(),
        end: "10.2.0.20".parse().unwrap(),
    };
    let mut ca = ChildConfig::tunnel("dns", vec![udp53("10.1.0.5/32")], vec![range.clone()]);
    ca.proposals = vec![gcm];
    let mut cb = ChildConfig::tunnel("dns", vec![net("10.2.0.0/24")], vec![net("10.1.0.0/24")]);
    cb.proposals = vec![gcm];
    a.peer.children = vec![ca];
    b.peer.children = vec![cb];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let c = p.b.children()[0];
    // The responder installs exactly what the initiator proposed (narrower than its policy).
    assert_eq!(c.remote_ts, vec![udp53("10.1.0.5/32")]);
    assert_eq!(c.local_ts, vec![range]);
    assert_eq!(c.inbound.encr_key.len(), 36);
    assert!(c.inbound.integ_key.is_empty() && c.esn);
}

#[test]
fn quick_mode_ids_outside_the_policy_are_refused() {
    let (mut a, b) = psk_peers("k", "k");
    a.peer.children = vec![child("net", "10.1.0.0/16", "10.9.0.0/16")];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 0);
    assert_eq!(p.a.failed_children.len(), 1);
    assert!(
        p.a.failed_children[0].contains("INVALID_ID_INFORMATION"),
        "{:?}",
        p.a.failed_children
    );
}

#[test]
fn lifetimes_and_responder_lifetime() {
    let (mut a, mut b) = psk_peers("k", "k");
    a.peer.children[0].lifetimes = ike_proto::ikev2::Lifetimes {
        soft_secs: 3300,
        hard_secs: 3600,
        soft_bytes: 0,
        hard_bytes: 0,
    };
    b.peer.children[0].lifetimes = ike_proto::ikev2::Lifetimes {
        soft_secs: 1000,
        hard_secs: 1200,
        soft_bytes: 900 << 20,
        hard_bytes: 1000 << 20,
    };
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let (ca, cb) = (p.a.children()[0].lifetimes, p.b.children()[0].lifetimes);
    assert_eq!(
        (ca.hard_secs, cb.hard_secs),
        (1200, 1200),
        "RESPONDER-LIFETIME shortened A's"
    );
    assert_eq!((ca.hard_bytes, cb.hard_bytes), (1000 << 20, 1000 << 20));
    // The quick mode initiator's soft limit comes first, so it is the one that rekeys.
    assert!(
        ca.soft_secs < cb.soft_secs && cb.soft_secs < 1200,
        "{ca:?} {cb:?}"
    );
    assert!(ca.soft_bytes < cb.soft_bytes && cb.soft_bytes < 1000 << 20);
}

#[test]
fn loss_of_each_message_is_repaired_by_retransmission() {
    // Drop the n-th datagram once, for every n of the 9-message exchange.
    for n in 0..9 {
        let mut p = psk_pair();
        p.filter = Box::new(move |_, idx| u8::from(idx == n));
        p.connect();
        p.run();
        assert_tunnel(&p, 1);
        let s = [p.a.stats(), p.b.stats()];
        let re: u64 = s.iter().map(|s| s.p1_retransmit + s.p2_retransmit).sum();
        let dup: u64 = s.iter().map(|s| s.duplicate_requests).sum();
        assert!(
            re + dup >= 1,
            "lost message {n} repaired without any repeat?"
        );
    }
}

#[test]
fn duplicated_messages_are_harmless() {
    let mut p = psk_pair();
    p.filter = Box::new(|_, _| 2);
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.a.up.len(), 1);
    assert_eq!(p.b.up.len(), 1);
    assert!(p.a.stats().duplicate_requests + p.b.stats().duplicate_requests >= 4);
}

#[test]
fn retransmissions_exhausted() {
    let mut p = psk_pair();
    p.filter = Box::new(|t, _| u8::from(t.local.ip().to_string() == B_IP));
    p.connect();
    p.run_for(Duration::from_secs(120));
    assert!(
        matches!(p.a.down.as_slice(), [(_, CloseReason::Timeout)]),
        "{:?}",
        p.a.down
    );
    // IkeRetries 3: the first MM1 and three retransmissions, waits 1+2+4+8 s.
    assert_eq!(
        p.count(ExchangeType::IDENTITY_PROTECTION) - p.count_from(B_IP),
        4
    );
    assert_eq!(p.a.stats().p1_retransmit, 3);
    assert!(p.a.ep.ike_sas(p.now).is_empty());
}

impl Pair {
    fn count_from(&self, ip: &str) -> usize {
        self.sent
            .iter()
            .filter(|(_, t)| t.local.ip().to_string() == ip)
            .count()
    }
}

#[test]
fn tampered_messages_are_dropped_not_fatal() {
    // Flip a bit in each encrypted message once: decryption garbles it, the receiver drops
    // it, the sender's retransmission gets through.
    for n in [4usize, 5, 6, 7, 8] {
        let mut p = psk_pair();
        p.filter = Box::new(move |_, idx| if idx == n { 3 } else { 0 });
        p.connect();
        p.run();
        assert_tunnel(&p, 1);
        assert!(
            p.a.stats().invalid_packets + p.b.stats().invalid_packets >= 1,
            "tampered {n} accepted"
        );
    }
    // Tampering every message from B after phase 1: quick mode never completes, phase 1
    // is given up once retransmissions run out.
    let mut p = psk_pair();
    p.filter = Box::new(|t, idx| {
        if idx >= 6 && t.local.ip().to_string() == B_IP {
            3
        } else {
            0
        }
    });
    p.connect();
    p.run_for(Duration::from_secs(120));
    assert_tunnel(&p, 0);
    assert!(p.b.stats().invalid_packets == 0 && p.a.stats().invalid_packets >= 3);
}

#[test]
fn delete_child_and_isakmp_sa() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let child = p.a.children()[0].child;
    p.a.ep.delete_child(p.now, child).unwrap();
    p.run();
    assert_tunnel(&p, 0);
    assert_eq!(p.b.deleted.len(), 1);
    // A second child, then delete the ISAKMP SA: DELETE for the child, then for phase 1.
    let sa = p.a.sa();
    p.a.ep.create_child(p.now, sa, 0).unwrap();
    p.run();
    assert_tunnel(&p, 1);
    p.a.ep.delete_ike(p.now, sa).unwrap();
    p.run();
    assert_tunnel(&p, 0);
    assert!(matches!(
        p.a.down.as_slice(),
        [(_, CloseReason::LocalDeleted)]
    ));
    assert!(
        matches!(p.b.down.as_slice(), [(_, CloseReason::PeerDeleted)]),
        "{:?}",
        p.b.down
    );
    assert!(p.a.ep.ike_sas(p.now).is_empty() && p.b.ep.ike_sas(p.now).is_empty());
    assert_eq!(p.a.stats().p1_active + p.b.stats().p1_active, 0);
}

#[test]
fn child_rekey_make_before_break() {
    for rekeyer in ['a', 'b'] {
        let mut p = psk_pair();
        p.connect();
        p.run();
        let old_a = p.a.children()[0].child;
        let old_b = p.b.children()[0].child;
        let t0 = p.now;
        if rekeyer == 'a' {
            p.a.ep.rekey_child(p.now, old_a).unwrap();
        } else {
            p.b.ep.rekey_child(p.now, old_b).unwrap();
        }
        p.run_for(Duration::from_millis(100));
        // Both generations are installed for a moment…
        assert_tunnel(&p, 2);
        let newest =
            p.a.children()
                .into_iter()
                .find(|c| c.child != old_a)
                .unwrap();
        assert_eq!(newest.replaces, Some(old_a), "rekeyed by {rekeyer}");
        p.run();
        // …then the old one is gone on both sides.
        assert_tunnel(&p, 1);
        assert!(p.a.deleted.contains(&old_a) && p.b.deleted.contains(&old_b));
        assert!(p.now > t0);
        // The other side's later soft expiry of the old child does nothing.
        let _ = p.a.ep.rekey_child(p.now, old_a);
        let _ = p.b.ep.rekey_child(p.now, old_b);
        p.run();
        assert_tunnel(&p, 1);
        assert_eq!(p.count(ExchangeType::QUICK), 6);
    }
}

#[test]
fn simultaneous_child_rekey_leaves_one_child() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    let (old_a, old_b) = (p.a.children()[0].child, p.b.children()[0].child);
    p.a.ep.rekey_child(p.now, old_a).unwrap();
    p.b.ep.rekey_child(p.now, old_b).unwrap();
    p.run();
    assert_tunnel(&p, 1);
    assert!(p.a.deleted.contains(&old_a) && p.b.deleted.contains(&old_b));
}

#[test]
fn simultaneous_phase_1_initiation() {
    let mut p = psk_pair();
    p.connect();
    p.connect_b();
    p.run();
    // Two ISAKMP SAs (IKEv1 allows it), each ran a quick mode for the same policy at the
    // same time: both ends delete the same duplicate child.
    assert_eq!(p.a.live_sas().len(), 2, "{:#?}", p.a.events);
    assert_eq!(p.b.live_sas().len(), 2);
    assert_tunnel(&p, 1);
}

#[test]
fn phase_1_rekey_moves_children() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    let old = p.a.sa();
    let child = p.a.children()[0].child;
    p.a.ep.rekey_ike(p.now, old).unwrap();
    p.run();
    assert_eq!(p.a.rekeyed.len(), 1, "{:#?}", p.a.events);
    assert_eq!(p.b.rekeyed.len(), 1, "{:#?}", p.b.events);
    assert_eq!(p.a.live_sas().len(), 1);
    assert_eq!(p.b.live_sas().len(), 1);
    assert!(matches!(p.a.down.as_slice(), [(id, CloseReason::Rekeyed)] if *id == old));
    // The child survived and now belongs to the new SA: a later rekey runs there.
    assert_tunnel(&p, 1);
    let new = p.a.sa();
    assert_ne!(new, old);
    assert_eq!(p.a.ep.ike_sas(p.now)[0].children.len(), 1);
    p.a.ep.rekey_child(p.now, child).unwrap();
    p.run();
    assert_tunnel(&p, 1);
    assert_ne!(p.a.children()[0].child, child);
    // Rekey by lifetime: a 10-minute phase 1 is rekeyed before it expires, children kept.
    let (mut a, mut b) = psk_peers("k", "k");
    a.peer.ike_lifetime = Duration::from_secs(600);
    a.peer.rekey_margin = Duration::from_secs(60);
    b.peer.ike_lifetime = Duration::from_secs(600);
    b.peer.rekey_margin = Duration::from_secs(60);
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    p.run_for(Duration::from_secs(1900));
    assert!(p.a.rekeyed.len() >= 3, "{:#?}", p.a.rekeyed);
    assert_tunnel(&p, 1);
    assert_eq!(p.a.live_sas().len(), 1);
    assert_eq!(p.b.live_sas().len(), 1);
}

#[test]
fn nat_in_front_of_the_initiator() {
    let mut p = psk_pair();
    p.nat = true;
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(p.a.nat_events == 1 && p.b.nat_events == 1);
    let sa = &p.a.ep.ike_sas(p.now)[0];
    assert_eq!(sa.nat, (true, false));
    assert_eq!(sa.local.port(), 4500);
    assert_eq!(p.b.ep.ike_sas(p.now)[0].nat, (false, true));
    // Everything from MM5 on runs on port 4500 with the non-ESP marker.
    let mm5_on = p
        .sent
        .iter()
        .filter(|(_, t)| t.remote.port() == 4500 || t.local.port() > 4500)
        .count();
    assert!(mm5_on >= 5, "{mm5_on}");
    let ca = p.a.children()[0];
    let cb = p.b.children()[0];
    assert_eq!(
        ca.encap.map(|e| (e.local_port, e.remote_port)),
        Some((4500, 4500))
    );
    assert_eq!(
        cb.encap.map(|e| (e.local_port, e.remote_port)),
        Some((4500, 14500))
    );
    // Keepalives from the NATed side.
    p.run_for(Duration::from_secs(45));
    assert!(p.sent.iter().filter(|(_, t)| t.data == [0xff]).count() >= 2);
}

#[test]
fn dead_peer_detection() {
    let (mut a, b) = psk_peers("k", "k");
    a.peer.dpd_interval = Some(Duration::from_secs(10));
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    // Alive: R-U-THERE answered by R-U-THERE-ACK.
    p.run_for(Duration::from_secs(35));
    assert_tunnel(&p, 1);
    assert!(p.count(ExchangeType::INFORMATIONAL) >= 4);
    assert!(p.a.live_sas().len() == 1);
    // B goes silent: A retries with IkeRetries/IkeInitWait and gives up.
    p.filter = Box::new(|t, _| u8::from(t.local.ip().to_string() == B_IP));
    p.run_for(Duration::from_secs(60));
    assert!(
        matches!(p.a.down.as_slice(), [(_, CloseReason::Timeout)]),
        "{:?}",
        p.a.down
    );
    assert!(p.a.children().is_empty());
}

#[test]
fn initial_contact_drops_stale_state() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    // A restarts: new endpoint, same policy, connects again with INITIAL-CONTACT.
    let (a, _) = psk_peers(
        "correct horse battery staple",
        "correct horse battery staple",
    );
    p.a = Node::new("a", A_IP, vec![a]);
    p.connect();
    p.run();
    assert_eq!(p.b.live_sas().len(), 1, "{:#?}", p.b.events);
    assert!(matches!(
        p.b.down.as_slice(),
        [(_, CloseReason::PeerDeleted)]
    ));
    assert_tunnel(&p, 1);
}

#[test]
fn legacy_algorithms_only_when_enabled() {
    use ike_proto::ikev1::{P1Proposal, crypto::HashAlg};
    let legacy = P1Proposal {
        encr: EncrAlg::TripleDes,
        hash: HashAlg::Sha1,
        dh: DhGroup::MODP_1024,
    };
    let (mut a, b) = psk_peers("k", "k");
    a.v1.proposals = vec![legacy];
    a.peer.allow_legacy = true;
    let mut p = Pair::new(
        Node::new("a", A_IP, vec![a.clone()]),
        Node::new("b", B_IP, vec![b]),
    );
    p.connect();
    p.run();
    assert!(
        p.b.up.is_empty(),
        "B accepted 3DES/SHA-1/MODP-1024 without allow_legacy"
    );
    let (_, mut b) = psk_peers("k", "k");
    b.peer.allow_legacy = true;
    b.v1.proposals = vec![legacy];
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    let (encr, hash, dh, _) = p.a.ep.ike_sas(p.now)[0].algorithms.unwrap();
    assert_eq!(
        (encr, hash, dh),
        (EncrAlg::TripleDes, HashAlg::Sha1, DhGroup::MODP_1024)
    );
}

#[test]
fn garbage_is_counted_not_fatal() {
    let mut p = psk_pair();
    p.connect();
    p.run();
    let now = p.now;
    for junk in [&b""[..], &[0u8; 27], &[0xffu8; 28], &[1u8; 200]] {
        p.b.ep
            .handle_datagram(now, sock(B_IP, 500), sock(A_IP, 500), junk);
    }
    // A valid-looking header for an unknown SA, and an IKEv2 header.
    let mut h = vec![0u8; 28];
    h[0] = 1;
    h[8] = 2;
    h[17] = 0x10;
    h[18] = 32;
    h[27] = 28;
    p.b.ep
        .handle_datagram(now, sock(B_IP, 500), sock(A_IP, 500), &h);
    h[17] = 0x20;
    assert!(!is_ikev1(&h));
    p.b.ep
        .handle_datagram(now, sock(B_IP, 500), sock(A_IP, 500), &h);
    assert!(p.b.stats().invalid_packets >= 5);
    p.run();
    assert_tunnel(&p, 1);
}

#[test]
fn unused_key_algorithm_is_reported() {
    // IKEv1 signature authentication needs RSA: an ECDSA key is a configuration error.
    let (mut a, _) = psk_peers("k", "k");
    a.peer.local_auth = LocalAuth::Signature {
        certs: Vec::new(),
        key: KeyAlgorithm::EcdsaP256,
        schemes: Vec::new(),
    };
    a.peer.remote_auth = RemoteAuth::CallerVerifies;
    let mut ep = Endpoint::new(config());
    ep.set_peers(vec![a]);
    let e = ep
        .connect(Instant::now(), "to-b", sock(A_IP, 500), sock(B_IP, 500))
        .unwrap_err();
    assert!(e.to_string().contains("RSA"), "{e}");
}

#[test]
fn ipv6_endpoints_and_selectors() {
    let a = peer_cfg(
        "to-b",
        "2001:db8::1",
        "2001:db8::2",
        psk("k6"),
        child("net", "2001:db8:1::/48", "2001:db8:2::/48"),
    );
    let b = peer_cfg(
        "to-a",
        "2001:db8::2",
        "2001:db8::1",
        psk("k6"),
        child("net", "2001:db8:2::/48", "2001:db8:1::/48"),
    );
    let mut p = Pair::new(
        Node::new("a", "2001:db8::1", vec![V1Peer::new(a)]),
        Node::new("b", "2001:db8::2", vec![V1Peer::new(b)]),
    );
    p.a.ep
        .connect(
            p.now,
            "to-b",
            "[2001:db8::1]:500".parse().unwrap(),
            "[2001:db8::2]:500".parse().unwrap(),
        )
        .unwrap();
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.b.children()[0].remote_ts, vec![net("2001:db8:1::/48")]);
    assert_eq!(
        p.b.ep.ike_sas(p.now)[0].peer_id,
        Some("2001:db8::1".parse().unwrap())
    );
}

#[test]
fn nat_with_aggressive_mode_and_with_signatures() {
    // Aggressive mode floats to 4500 with AM3.
    let (mut a, mut b) = psk_peers("k", "k");
    aggressive(&mut a);
    b.v1.aggressive_psk = true;
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.nat = true;
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert_eq!(p.b.ep.ike_sas(p.now)[0].nat, (false, true));
    let am3 = p
        .sent
        .iter()
        .filter(|(_, t)| ike_header(t).is_some_and(|h| h.exchange == ExchangeType::AGGRESSIVE))
        .nth(2)
        .unwrap();
    assert_eq!(am3.1.remote.port(), 4500);
    assert_eq!(&am3.1.data[..4], &[0, 0, 0, 0]);
    // Main mode with RSA signatures through the same NAT.
    let mut p = rsa_pair(verifier(), verifier());
    p.nat = true;
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    assert!(p.b.children()[0].encap.is_some());
}

#[test]
fn phase_1_expires_when_the_peer_is_gone() {
    // The rekey cannot reach the peer: the SA ends at its lifetime and its children go.
    let (mut a, b) = psk_peers("k", "k");
    a.peer.ike_lifetime = Duration::from_secs(300);
    a.peer.rekey_margin = Duration::from_secs(60);
    let mut p = Pair::new(Node::new("a", A_IP, vec![a]), Node::new("b", B_IP, vec![b]));
    p.connect();
    p.run();
    assert_tunnel(&p, 1);
    p.filter = Box::new(|t, _| u8::from(t.local.ip().to_string() == B_IP));
    p.run_for(Duration::from_secs(400));
    assert!(p.a.children().is_empty(), "{:#?}", p.a.events);
    assert!(p.a.live_sas().is_empty());
    assert!(
        p.a.stats().p1_local_act_failure >= 1,
        "the rekey attempt failed"
    );
}
