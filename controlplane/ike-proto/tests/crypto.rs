//! Known-answer tests for the IKE transforms and key schedule.
//!
//! - HMAC PRFs/integrity: RFC 4231 test case 2 (SHA-2), RFC 2202 (SHA-1, MD5).
//! - DH: RFC 5903 §8.1 (ECP-256), RFC 7748 §6.1 (X25519), a MODP-2048 vector.
//! - Key schedule, SK decryption and PSK AUTH: against strongSwan 5.9.8 captures whose
//!   secrets charon logged (tests/vectors/strongswan).
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use ike_proto::crypto::Secret;
use ike_proto::crypto::dh::{self, KeyExchange};
use ike_proto::crypto::encr::EncrAlg;
use ike_proto::crypto::integ::IntegAlg;
use ike_proto::crypto::keys;
use ike_proto::crypto::prf::PrfAlg;
use ike_proto::wire::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const JEFE_DATA: &[u8] = b"what do ya want for nothing?";

#[test]
fn hmac_prfs_rfc4231_rfc2202() {
    let cases = [
        (
            PrfAlg::HmacSha256,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            PrfAlg::HmacSha384,
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            PrfAlg::HmacSha512,
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
        (PrfAlg::HmacSha1, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        (PrfAlg::HmacMd5, "750c783e6ab0b503eaa86e310a5db738"),
    ];
    for (prf, expect) in cases {
        assert_eq!(prf.prf(b"Jefe", &[JEFE_DATA]), hex(expect), "{prf:?}");
        // Split input gives the same result.
        assert_eq!(
            prf.prf(b"Jefe", &[&JEFE_DATA[..4], &JEFE_DATA[4..]]),
            hex(expect)
        );
        assert_eq!(PrfAlg::from_id(prf.id()), Some(prf));
    }
    // RFC 4231 test case 1 (20-byte key).
    assert_eq!(
        PrfAlg::HmacSha256.prf(&[0x0b; 20], &[b"Hi There"]),
        hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
    );
    // Integrity algorithms are the truncated HMACs (RFC 4868 §2.6).
    let cases = [
        (IntegAlg::HmacSha256_128, PrfAlg::HmacSha256),
        (IntegAlg::HmacSha384_192, PrfAlg::HmacSha384),
        (IntegAlg::HmacSha512_256, PrfAlg::HmacSha512),
        (IntegAlg::HmacSha1_96, PrfAlg::HmacSha1),
        (IntegAlg::HmacMd5_96, PrfAlg::HmacMd5),
    ];
    for (integ, prf) in cases {
        let full = prf.prf(b"Jefe", &[JEFE_DATA]);
        let icv = integ.compute(b"Jefe", &[JEFE_DATA]);
        assert_eq!(icv.len(), integ.icv_len());
        assert_eq!(icv, full[..integ.icv_len()]);
        assert!(integ.verify(b"Jefe", &[JEFE_DATA], &icv));
        let mut bad = icv.clone();
        bad[0] ^= 1;
        assert!(!integ.verify(b"Jefe", &[JEFE_DATA], &bad));
    }
}

#[test]
fn prf_plus_definition() {
    // prf+ (K,S) = T1 | T2 | ..., T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n).
    let k = b"key";
    let s = b"seed";
    for prf in [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512] {
        let t1 = prf.prf(k, &[s, &[1]]);
        let t2 = prf.prf(k, &[&t1, s, &[2]]);
        let t3 = prf.prf(k, &[&t2, s, &[3]]);
        let want = [t1, t2, t3].concat();
        let n = want.len() - 5;
        let got = prf.prf_plus(k, &[&s[..2], &s[2..]], n);
        assert_eq!(got.expose(), &want[..n]);
    }
}

#[expect(
    deprecated,
    reason = "ring's fixed RNG is the only way to inject a known private key"
)]
fn fixed(bytes: &[u8]) -> ring::test::rand::FixedSliceRandom<'_> {
    ring::test::rand::FixedSliceRandom { bytes }
}

#[test]
fn ecp256_rfc5903() {
    let i = hex("C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433");
    let gi = hex(
        "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180
         5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
    );
    let r = hex("C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53");
    let gr = hex(
        "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63
         56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
    );
    let gir = hex("D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE");
    let a = KeyExchange::generate(DhGroup::ECP_256, &fixed(&i)).unwrap();
    assert_eq!(a.public_value(), &gi[..]);
    let b = KeyExchange::generate(DhGroup::ECP_256, &fixed(&r)).unwrap();
    assert_eq!(b.public_value(), &gr[..]);
    assert_eq!(a.agree(&gr).unwrap().expose(), &gir[..]);
    assert_eq!(b.agree(&gi).unwrap().expose(), &gir[..]);
    // A point not on the curve.
    let c = KeyExchange::generate(DhGroup::ECP_256, &fixed(&i)).unwrap();
    let mut off = gr.clone();
    off[63] ^= 1;
    assert!(c.agree(&off).is_err());
}

#[test]
fn x25519_rfc7748() {
    let a_priv = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let a_pub = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let b_priv = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let b_pub = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let k = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    let a = KeyExchange::generate(DhGroup::CURVE25519, &fixed(&a_priv)).unwrap();
    assert_eq!(a.public_value(), &a_pub[..]);
    let b = KeyExchange::generate(DhGroup::CURVE25519, &fixed(&b_priv)).unwrap();
    assert_eq!(b.public_value(), &b_pub[..]);
    assert_eq!(a.agree(&b_pub).unwrap().expose(), &k[..]);
    assert_eq!(b.agree(&a_pub).unwrap().expose(), &k[..]);
    // A small-order point gives an all-zero secret, which is refused (RFC 7748 §6.1).
    let c = KeyExchange::generate(DhGroup::CURVE25519, &fixed(&a_priv)).unwrap();
    assert!(c.agree(&[0u8; 32]).is_err());
}

#[test]
fn modp2048_vector() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/modp2048-kat.txt"
    ))
    .unwrap();
    let get = |k: &str| {
        hex(text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap())
    };
    let a = KeyExchange::generate(DhGroup::MODP_2048, &fixed(&get("xa"))).unwrap();
    assert_eq!(a.public_value(), &get("A")[..]);
    let b = KeyExchange::generate(DhGroup::MODP_2048, &fixed(&get("xb"))).unwrap();
    assert_eq!(b.public_value(), &get("B")[..]);
    assert_eq!(a.agree(&get("B")).unwrap().expose(), &get("S")[..]);
    // Degenerate public values (RFC 6989 §2.1).
    let p_minus_1 = {
        let mut p = hex(
            "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
        );
        *p.last_mut().unwrap() = 0xfe;
        p
    };
    let mut one = vec![0u8; 256];
    one[255] = 1;
    for bad in [
        vec![0u8; 256],
        one,
        p_minus_1,
        vec![0xff; 256],
        vec![1; 255],
    ] {
        let b =
            KeyExchange::generate(DhGroup::MODP_2048, &ring::rand::SystemRandom::new()).unwrap();
        assert!(b.agree(&bad).is_err());
    }
}

#[test]
fn every_group_agrees() {
    let rng = ring::rand::SystemRandom::new();
    for g in [
        DhGroup::ECP_256,
        DhGroup::ECP_384,
        DhGroup::CURVE25519,
        DhGroup::MODP_2048,
        DhGroup::MODP_3072,
        DhGroup::MODP_1024,
        DhGroup::MODP_1536,
    ] {
        assert!(dh::is_supported(g));
        let a = KeyExchange::generate(g, &rng).unwrap();
        let b = KeyExchange::generate(g, &rng).unwrap();
        assert_eq!(Some(a.public_value().len()), dh::public_len(g));
        let pa = a.public_value().to_vec();
        let pb = b.public_value().to_vec();
        assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap(), "{g}");
    }
    assert!(KeyExchange::generate(DhGroup::CURVE448, &rng).is_err());
}

struct Capture {
    msgs: Vec<Vec<u8>>,
    keys: std::collections::HashMap<String, Vec<u8>>,
}

fn capture(dir: &str) -> Capture {
    let base = format!(
        "{}/tests/vectors/strongswan/{dir}/",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut files: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    files.sort();
    let msgs = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let keys = std::fs::read_to_string(format!("{base}keys.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), hex(v))
        })
        .collect();
    Capture { msgs, keys }
}

fn nonce_of(m: &Message) -> Vec<u8> {
    m.payloads
        .iter()
        .find_map(|p| match p {
            Payload::Nonce(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap()
}

fn check_capture(dir: &str, prf: PrfAlg, encr: EncrAlg, integ: Option<IntegAlg>) {
    let c = capture(dir);
    let k = |n: &str| c.keys[n].clone();
    let m1 = Message::decode(&c.msgs[0]).unwrap();
    let m2 = Message::decode(&c.msgs[1]).unwrap();
    let (ni, nr) = (nonce_of(&m1), nonce_of(&m2));
    let g_ir = Secret::new(k("g_ir"));
    let seed = keys::skeyseed(prf, &ni, &nr, &g_ir);
    assert_eq!(seed.expose(), &k("skeyseed")[..], "{dir}: SKEYSEED");
    let suite = keys::IkeSuite {
        encr,
        integ,
        prf,
        dh: DhGroup::NONE,
    };
    let ks = keys::derive_ike_keys(&suite, &seed, &ni, &nr, m2.header.spi_i, m2.header.spi_r);
    assert_eq!(ks.sk_d.expose(), &k("sk_d")[..]);
    assert_eq!(ks.sk_ei.expose(), &k("sk_ei")[..]);
    assert_eq!(ks.sk_er.expose(), &k("sk_er")[..]);
    assert_eq!(ks.sk_pi.expose(), &k("sk_pi")[..]);
    assert_eq!(ks.sk_pr.expose(), &k("sk_pr")[..]);
    if integ.is_some() {
        assert_eq!(ks.sk_ai.expose(), &k("sk_ai")[..]);
        assert_eq!(ks.sk_ar.expose(), &k("sk_ar")[..]);
    }
    let psk = Secret::from("gatekey-test-psk");
    // Decrypt both IKE_AUTH messages and check their PSK AUTH payloads.
    for (idx, from_i) in [(2usize, true), (3, false)] {
        let raw = &c.msgs[idx];
        let m = Message::decode(raw).unwrap();
        let Payload::Encrypted(sk) = &m.payloads[0] else {
            panic!()
        };
        let sk_c = ks.sk_crypto(from_i, &suite).unwrap();
        let inner = sk_c.open(&raw[..32], &raw[32..]).unwrap();
        let payloads = decode_payloads(sk.first_inner, &inner, 32).unwrap();
        let id = payloads
            .iter()
            .find_map(|p| match p {
                Payload::IdI(i) | Payload::IdR(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap();
        let auth = payloads
            .iter()
            .find_map(|p| match p {
                Payload::Auth(a) => Some(a.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(auth.method, AuthMethod::PSK);
        let (real, peer_nonce, sk_p) = if from_i {
            (&c.msgs[0], &nr, &ks.sk_pi)
        } else {
            (&c.msgs[1], &ni, &ks.sk_pr)
        };
        let octets = keys::signed_octets(prf, real, peer_nonce, sk_p, &id.body());
        assert_eq!(
            keys::psk_auth(prf, &psk, &octets),
            auth.data,
            "{dir} AUTH from_i={from_i}"
        );
        assert_ne!(
            keys::psk_auth(prf, &Secret::from("wrong"), &octets),
            auth.data
        );
        // Re-sealing our way and opening again round-trips; a flipped bit is caught.
        let rng = ring::rand::SystemRandom::new();
        let body = sk_c.seal(&raw[..32], &inner, &rng).unwrap();
        assert_eq!(body.len(), sk_c.sealed_len(inner.len()));
        let mut tampered = raw.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(sk_c.open(&tampered[..32], &tampered[32..]).is_err());
    }
}

#[test]
fn strongswan_x25519_aes256gcm_key_schedule_and_auth() {
    check_capture(
        "psk-x25519-aes256gcm",
        PrfAlg::HmacSha256,
        EncrAlg::AesGcm16 { key_bits: 256 },
        None,
    );
}

#[test]
fn strongswan_modp2048_aes256cbc_key_schedule_and_auth() {
    check_capture(
        "psk-modp2048-aes256cbc-sha256",
        PrfAlg::HmacSha256,
        EncrAlg::AesCbc { key_bits: 256 },
        Some(IntegAlg::HmacSha256_128),
    );
}

#[test]
fn sk_round_trip_every_cipher() {
    let rng = ring::rand::SystemRandom::new();
    let prefix = [7u8; 32];
    for (encr, integ) in [
        (EncrAlg::AesGcm16 { key_bits: 128 }, None),
        (EncrAlg::AesGcm16 { key_bits: 256 }, None),
        (EncrAlg::ChaCha20Poly1305, None),
        (
            EncrAlg::AesCbc { key_bits: 128 },
            Some(IntegAlg::HmacSha256_128),
        ),
        (
            EncrAlg::AesCbc { key_bits: 192 },
            Some(IntegAlg::HmacSha384_192),
        ),
        (
            EncrAlg::AesCbc { key_bits: 256 },
            Some(IntegAlg::HmacSha512_256),
        ),
        (EncrAlg::TripleDes, Some(IntegAlg::HmacSha1_96)),
        (
            EncrAlg::AesCbc { key_bits: 128 },
            Some(IntegAlg::HmacMd5_96),
        ),
    ] {
        let sk_e = Secret::new(vec![0x42; encr.key_len()]);
        let sk_a = Secret::new(vec![0x24; integ.map_or(0, |i| i.key_len())]);
        let c = ike_proto::crypto::encr::SkCrypto::new(encr, integ, sk_e, sk_a).unwrap();
        for len in [0usize, 1, 15, 16, 17, 100] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let body = c.seal(&prefix, &pt, &rng).unwrap();
            assert_eq!(body.len(), c.sealed_len(len), "{encr:?}");
            assert_eq!(c.open(&prefix, &body).unwrap(), pt, "{encr:?} {len}");
            // Wrong AAD / prefix fails.
            assert!(c.open(&[8u8; 32], &body).is_err());
            let mut bad = body.clone();
            bad[encr.iv_len()] ^= 0x80;
            assert!(c.open(&prefix, &bad).is_err());
            assert!(c.open(&prefix, &body[..body.len() - 1]).is_err());
        }
        assert_eq!(
            EncrAlg::from_transform(EncrId(encr.transform().id), encr.transform().key_length()),
            Some(encr)
        );
    }
}
