//! `cargo xtask bench ike`: IKEv2 handshakes per second between two in-process endpoints
//! (PSK, Curve25519, AES-GCM-256, one child SA), against the raw cost of the same
//! handshake's cryptography measured in the same run.
//!
//! Prints `BENCH ike-handshake per_s=<r> crypto_floor_per_s=<f> overhead=<f/r>` (medians of
//! several rounds); overhead 1.00 means the engine adds nothing over the crypto.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ike_proto::crypto::Secret;
use ike_proto::crypto::dh::KeyExchange;
use ike_proto::crypto::encr::{EncrAlg, SkCrypto};
use ike_proto::crypto::keys::{self, IkeSuite};
use ike_proto::crypto::prf::PrfAlg;
use ike_proto::ikev2::{ChildConfig, Endpoint, EndpointConfig, Event, PeerConfig, ts};
use ike_proto::wire::DhGroup;
use ring::rand::{SecureRandom, SystemRandom};

const ROUNDS: usize = 7;
const PER_ROUND: usize = 400;

fn peers() -> (PeerConfig, PeerConfig) {
    let net = |s: &str, l| ts::subnet(s.parse().unwrap_or([0, 0, 0, 0].into()), l);
    let psk = Secret::from("benchmark pre-shared key");
    let mut a = PeerConfig::psk(
        "b",
        "a.example.com"
            .parse()
            .unwrap_or(ike_proto::Identity::KeyId(vec![1])),
        "b.example.com"
            .parse()
            .unwrap_or(ike_proto::Identity::KeyId(vec![2])),
        psk.clone(),
        ChildConfig::tunnel("c", vec![net("10.1.0.0", 16)], vec![net("10.2.0.0", 16)]),
    );
    let mut b = PeerConfig::psk(
        "a",
        "b.example.com"
            .parse()
            .unwrap_or(ike_proto::Identity::KeyId(vec![2])),
        "a.example.com"
            .parse()
            .unwrap_or(ike_proto::Identity::KeyId(vec![1])),
        psk,
        ChildConfig::tunnel("c", vec![net("10.2.0.0", 16)], vec![net("10.1.0.0", 16)]),
    );
    a.ike_proposals = vec![IkeSuite::DEFAULT];
    b.ike_proposals = vec![IkeSuite::DEFAULT];
    (a, b)
}

/// `n` complete handshakes (IKE SA and child SA up on both sides) between two endpoints.
fn handshakes(n: usize) -> Duration {
    let (pa, pb) = peers();
    let mut a = Endpoint::new(EndpointConfig::default());
    let mut b = Endpoint::new(EndpointConfig {
        half_open_limit: usize::MAX,
        cookie_threshold: usize::MAX,
        half_open_per_peer: usize::MAX,
        max_ike_sas: usize::MAX,
        ..EndpointConfig::default()
    });
    a.set_peers(vec![pa]);
    b.set_peers(vec![pb]);
    let la: SocketAddr = "192.0.2.1:500"
        .parse()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 500)));
    let lb: SocketAddr = "192.0.2.2:500"
        .parse()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 500)));
    let now = Instant::now();
    let t = Instant::now();
    let mut installed = 0usize;
    for _ in 0..n {
        if a.connect(now, "b", la, lb).is_err() {
            panic!("connect failed");
        }
        loop {
            let mut moved = false;
            while let Some(x) = a.poll_transmit() {
                b.handle_datagram(now, x.remote, x.local, &x.data);
                moved = true;
            }
            while let Some(x) = b.poll_transmit() {
                a.handle_datagram(now, x.remote, x.local, &x.data);
                moved = true;
            }
            for ep in [&mut a, &mut b] {
                while let Some(e) = ep.poll_event() {
                    if matches!(e, Event::InstallChildSa(_)) {
                        installed += 1;
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }
    let d = t.elapsed();
    assert_eq!(
        installed,
        2 * n,
        "every handshake must install a child SA on both sides"
    );
    d
}

/// The cryptography of one such handshake, without the engine: key generation and
/// agreement on both sides, nonces and SPIs, SKEYSEED and prf+ on both sides, four PSK AUTH
/// computations (each with its MACed ID), NAT-D hashes, two SK seals and two opens of
/// IKE_AUTH-sized messages, and the child KEYMAT on both sides.
fn crypto_floor(n: usize) -> Duration {
    let rng = SystemRandom::new();
    let suite = IkeSuite::DEFAULT;
    let psk = Secret::from("benchmark pre-shared key");
    let msg1 = vec![0x5au8; 260];
    let auth_req = vec![0x33u8; 200];
    let auth_resp = vec![0x44u8; 180];
    let prefix = [0x11u8; 32];
    let t = Instant::now();
    for _ in 0..n {
        let mut r = [0u8; 32 + 32 + 8 + 8 + 4 + 4];
        if rng.fill(&mut r).is_err() {
            panic!("rng");
        }
        let (ni, rest) = r.split_at(32);
        let (nr, _) = rest.split_at(32);
        let ka = KeyExchange::generate(DhGroup::CURVE25519, &rng).ok();
        let kb = KeyExchange::generate(DhGroup::CURVE25519, &rng).ok();
        let (Some(ka), Some(kb)) = (ka, kb) else {
            panic!("keygen")
        };
        let (pa, pb) = (ka.public_value().to_vec(), kb.public_value().to_vec());
        let ga = ka.agree(&pb).ok();
        let gb = kb.agree(&pa).ok();
        let (Some(ga), Some(gb)) = (ga, gb) else {
            panic!("agree")
        };
        for (g, side) in [(&ga, true), (&gb, false)] {
            let seed = keys::skeyseed(PrfAlg::HmacSha256, ni, nr, g);
            let k = keys::derive_ike_keys(&suite, &seed, ni, nr, 1, 2);
            for sk_p in [&k.sk_pi, &k.sk_pr] {
                let o = keys::signed_octets(
                    PrfAlg::HmacSha256,
                    &msg1,
                    nr,
                    sk_p,
                    b"\x02\0\0\0a.example.com",
                );
                std::hint::black_box(keys::psk_auth(PrfAlg::HmacSha256, &psk, &o));
            }
            for _ in 0..4 {
                std::hint::black_box(ring::digest::digest(
                    &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    &r[..30],
                ));
            }
            // One direction seals (this side's message), the other opens it.
            let key = if side {
                k.sk_ei.clone()
            } else {
                k.sk_er.clone()
            };
            let Ok(c) = SkCrypto::new(
                EncrAlg::AesGcm16 { key_bits: 256 },
                None,
                key,
                Secret::default(),
            ) else {
                panic!("sk")
            };
            let pt = if side { &auth_req } else { &auth_resp };
            let sealed = c.seal(&prefix, pt, &rng).unwrap_or_default();
            assert!(c.open(&prefix, &sealed).is_ok());
            std::hint::black_box(keys::child_keymat(
                PrfAlg::HmacSha256,
                &k.sk_d,
                None,
                ni,
                nr,
                72,
            ));
        }
    }
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    // Warm up both paths.
    handshakes(50);
    crypto_floor(50);
    let mut engine = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..ROUNDS {
        let d = handshakes(PER_ROUND);
        engine.push(PER_ROUND as f64 / d.as_secs_f64());
        let d = crypto_floor(PER_ROUND);
        floor.push(PER_ROUND as f64 / d.as_secs_f64());
    }
    let r = median(engine);
    let f = median(floor);
    println!(
        "BENCH ike-handshake per_s={r:.0} crypto_floor_per_s={f:.0} overhead={:.2}",
        f / r
    );
}
