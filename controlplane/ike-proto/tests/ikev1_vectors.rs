//! Known-answer tests for the IKEv1 key derivation and hashes (RFC 2409 §5, Appendix B;
//! RFC 3947 NAT-D) against strongSwan 5.9.8: two charons negotiated each case in network
//! namespaces (`tests/interop/ikev1-capture.sh`) and logged their keys at level 4. Each
//! test recomputes SKEYID, SKEYID_d/a/e, the encryption key, the IVs, HASH_I/HASH_R (or
//! checks the RSA signatures), decrypts every encrypted message, checks quick mode
//! HASH(1)/HASH(2) and the KEYMAT of both SAs, and the informational HASH(1)s.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::collections::HashMap;
use std::net::SocketAddr;

use ike_proto::crypto::Secret;
use ike_proto::crypto::cert::Certificate;
use ike_proto::crypto::encr::EncrAlg;
use ike_proto::crypto::prf::PrfAlg;
use ike_proto::crypto::sig::{LocalSigner, SignatureScheme, Signer};
use ike_proto::ikev1::crypto::*;
use ike_proto::ikev1::wire::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/ikev1/");
const PSK: &[u8] = b"gatekey-test-psk";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

struct Case {
    name: &'static str,
    keys: HashMap<String, Vec<u8>>,
    msgs: Vec<(String, Vec<u8>)>,
}

impl Case {
    fn load(name: &'static str) -> Self {
        let dir = format!("{DIR}{name}");
        let keys = std::fs::read_to_string(format!("{dir}/keys.txt"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), unhex(v)))
            .collect();
        let mut msgs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        msgs.sort();
        Self { name, keys, msgs }
    }

    fn key(&self, k: &str) -> &[u8] {
        self.keys
            .get(k)
            .unwrap_or_else(|| panic!("{}: strongSwan did not log {k}", self.name))
    }

    fn msg(&self, n: usize) -> &[u8] {
        &self.msgs[n - 1].1
    }

    fn plain(&self, n: usize) -> Vec<Payload> {
        Message::decode(self.msg(n))
            .unwrap_or_else(|e| panic!("{} message {n}: {e}", self.name))
            .payloads
    }
}

/// A decrypted message: header, payloads with positions, plaintext, and the next IV.
struct Opened {
    header: Header,
    payloads: Vec<Located>,
    plaintext: Vec<u8>,
    chain_len: usize,
    last_block: Vec<u8>,
}

fn open(encr: EncrAlg, key: &Secret, iv: &[u8], msg: &[u8]) -> Opened {
    let header = Header::decode(msg).unwrap();
    assert!(header.flags.encrypted());
    let ct = &msg[HEADER_LEN..];
    let plaintext = decrypt_body(encr, key, iv, ct).unwrap();
    let (payloads, chain_len) = decode_payloads(
        header.next_payload,
        &plaintext,
        HEADER_LEN,
        Trailing::Padding,
    )
    .unwrap();
    Opened {
        header,
        payloads,
        plaintext,
        chain_len,
        last_block: last_block(ct, encr.block_len()),
    }
}

fn sa(p: &[Payload]) -> &Sa {
    p.iter()
        .find_map(|p| {
            if let Payload::Sa(s) = p {
                Some(s)
            } else {
                None
            }
        })
        .unwrap()
}

fn find<'a, T>(p: &'a [Payload], f: impl Fn(&'a Payload) -> Option<T>) -> T {
    p.iter().find_map(f).unwrap()
}

fn located_payloads(o: &Opened) -> Vec<Payload> {
    o.payloads.iter().map(|l| l.payload.clone()).collect()
}

/// What the chosen phase 1 transform says.
struct P1 {
    hash: HashAlg,
    encr: EncrAlg,
    auth: P1Auth,
}

fn p1_transform(t: &Transform) -> P1 {
    let hash =
        HashAlg::from_p1(P1Hash(t.value(P1AttrType::HASH_ALGORITHM.0).unwrap() as u16)).unwrap();
    let encr = match P1Encr(t.value(P1AttrType::ENCRYPTION_ALGORITHM.0).unwrap() as u16) {
        P1Encr::AES_CBC => EncrAlg::AesCbc {
            key_bits: t.value(P1AttrType::KEY_LENGTH.0).unwrap() as u16,
        },
        P1Encr::TRIPLE_DES_CBC => EncrAlg::TripleDes,
        e => panic!("cipher {e}"),
    };
    let auth = P1Auth(t.value(P1AttrType::AUTHENTICATION_METHOD.0).unwrap() as u16);
    P1 { hash, encr, auth }
}

struct Phase1 {
    prf: PrfAlg,
    hash: HashAlg,
    encr: EncrAlg,
    keys: Phase1Keys,
    ni: Vec<u8>,
    nr: Vec<u8>,
    cky_i: u64,
    cky_r: u64,
    /// Last CBC block of phase 1: the base of every phase 2 IV.
    p1_last: Vec<u8>,
}

fn check_natd(c: &Case, hash: HashAlg, cky_i: u64, cky_r: u64, payloads: &[Payload]) {
    // strongSwan logs each NAT-D input (cookies | address | port) and its hash.
    let mut checked = 0;
    for n in ["", ".2", ".3", ".4"] {
        let (Some(chunk), Some(h)) = (
            c.keys.get(&format!("i.natd_chunk{n}")),
            c.keys.get(&format!("i.natd_hash{n}")),
        ) else {
            continue;
        };
        let ip: [u8; 4] = chunk[16..20].try_into().unwrap();
        let port = u16::from_be_bytes([chunk[20], chunk[21]]);
        let addr = SocketAddr::from((ip, port));
        assert_eq!(
            &natd_hash(hash, cky_i, cky_r, addr),
            h,
            "{}: NAT-D{n}",
            c.name
        );
        checked += 1;
    }
    assert!(checked >= 2, "{}: no NAT-D logged", c.name);
    // The peer's NAT-D payloads: first the destination (192.0.2.1:500 seen from the
    // responder), then the source.
    let natd: Vec<&Vec<u8>> = payloads
        .iter()
        .filter_map(|p| {
            if let Payload::NatD(d) = p {
                Some(d)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(natd.len(), 2, "{}", c.name);
    assert_eq!(
        natd[0],
        &natd_hash(hash, cky_i, cky_r, "192.0.2.1:500".parse().unwrap())
    );
    assert_eq!(
        natd[1],
        &natd_hash(hash, cky_i, cky_r, "192.0.2.2:500".parse().unwrap())
    );
}

fn keys_match(c: &Case, p: &Phase1Keys) {
    for side in ["i", "r"] {
        assert_eq!(
            p.skeyid.expose(),
            c.key(&format!("{side}.skeyid")),
            "{} SKEYID",
            c.name
        );
        assert_eq!(
            p.skeyid_d.expose(),
            c.key(&format!("{side}.skeyid_d")),
            "{}",
            c.name
        );
        assert_eq!(
            p.skeyid_a.expose(),
            c.key(&format!("{side}.skeyid_a")),
            "{}",
            c.name
        );
        assert_eq!(
            p.skeyid_e.expose(),
            c.key(&format!("{side}.skeyid_e")),
            "{}",
            c.name
        );
        assert_eq!(
            p.enc_key.expose(),
            c.key(&format!("{side}.encryption_key_ka")),
            "{} Ka",
            c.name
        );
    }
}

/// Main mode (messages 1–6), PSK or RSA signatures.
fn main_mode(c: &Case) -> Phase1 {
    let h1 = Header::decode(c.msg(1)).unwrap();
    let h2 = Header::decode(c.msg(2)).unwrap();
    assert_eq!(h1.exchange, ExchangeType::IDENTITY_PROTECTION);
    let (cky_i, cky_r) = (h2.cookie_i, h2.cookie_r);
    assert_eq!(h1.cookie_i, cky_i);
    let (m1, m2, m3, m4) = (c.plain(1), c.plain(2), c.plain(3), c.plain(4));
    let sai_b = Payload::Sa(sa(&m1).clone()).body();
    let chosen = &sa(&m2).proposals[0].transforms[0];
    let P1 { hash, encr, auth } = p1_transform(chosen);
    let prf = hash.prf();
    let ke = |p: &[Payload]| {
        find(p, |p| {
            if let Payload::Ke(k) = p {
                Some(k.clone())
            } else {
                None
            }
        })
    };
    let nonce = |p: &[Payload]| {
        find(p, |p| {
            if let Payload::Nonce(n) = p {
                Some(n.clone())
            } else {
                None
            }
        })
    };
    let (g_xi, ni, g_xr, nr) = (ke(&m3), nonce(&m3), ke(&m4), nonce(&m4));
    let g_xy = Secret::from_slice(c.key("i.shared_diffie_hellman_secret"));
    assert_eq!(c.key("r.shared_diffie_hellman_secret"), g_xy.expose());
    check_natd(c, hash, cky_i, cky_r, &m4);
    let skeyid = if auth == P1Auth::PRE_SHARED_KEY {
        skeyid_psk(prf, &Secret::from_slice(PSK), &ni, &nr)
    } else {
        skeyid_sig(prf, &ni, &nr, &g_xy)
    };
    let keys = derive_phase1(prf, skeyid, &g_xy, cky_i, cky_r, encr.key_len());
    keys_match(c, &keys);
    let iv = initial_iv(hash, &g_xi, &g_xr, encr.block_len());
    assert_eq!(iv, c.key("i.initial_iv"), "{} initial IV", c.name);

    // MM5: IDii, HASH_I or CERT/SIG_I, INITIAL-CONTACT.
    let m5 = open(encr, &keys.enc_key, &iv, c.msg(5));
    assert_eq!(m5.header.message_id, 0);
    let p5 = located_payloads(&m5);
    let idii = find(&p5, |p| {
        if let Payload::Id(i) = p {
            Some(i.clone())
        } else {
            None
        }
    });
    let want_i = hash_i(
        prf,
        &keys.skeyid,
        &g_xi,
        &g_xr,
        cky_i,
        cky_r,
        &sai_b,
        &idii.body(),
    );
    assert_eq!(want_i, c.key("i.hash_i"), "{} HASH_I", c.name);
    assert!(
        p5.iter()
            .any(|p| matches!(p, Payload::Notify(n) if n.ty == NotifyType::INITIAL_CONTACT))
    );
    assert_eq!(
        m5.last_block,
        c.key("i.next_iv_for_mid_0"),
        "{} IV after MM5",
        c.name
    );
    // MM6: IDir, HASH_R or CERT/SIG_R.
    let m6 = open(encr, &keys.enc_key, &m5.last_block, c.msg(6));
    let p6 = located_payloads(&m6);
    let idir = find(&p6, |p| {
        if let Payload::Id(i) = p {
            Some(i.clone())
        } else {
            None
        }
    });
    let want_r = hash_r(
        prf,
        &keys.skeyid,
        &g_xi,
        &g_xr,
        cky_i,
        cky_r,
        &sai_b,
        &idir.body(),
    );
    assert_eq!(want_r, c.key("i.hash_r"), "{} HASH_R", c.name);
    if auth == P1Auth::PRE_SHARED_KEY {
        assert_eq!(
            find(&p5, |p| if let Payload::Hash(h) = p {
                Some(h.clone())
            } else {
                None
            }),
            want_i
        );
        assert_eq!(
            find(&p6, |p| if let Payload::Hash(h) = p {
                Some(h.clone())
            } else {
                None
            }),
            want_r
        );
    } else {
        check_rsa(c, &p5, &want_i, "a");
        check_rsa(c, &p6, &want_r, "b");
    }
    assert_eq!(
        m6.last_block,
        c.key("i.next_iv_for_mid_0.2"),
        "{} IV after MM6",
        c.name
    );
    Phase1 {
        prf,
        hash,
        encr,
        keys,
        ni,
        nr,
        cky_i,
        cky_r,
        p1_last: m6.last_block,
    }
}

/// An RSA SIG payload: strongSwan's signature verifies with the certificate it sent, and
/// signing the same hash with the same key gives the same bytes (PKCS #1 v1.5 is
/// deterministic).
fn check_rsa(c: &Case, payloads: &[Payload], hash: &[u8], who: &str) {
    let sig = find(payloads, |p| {
        if let Payload::Sig(s) = p {
            Some(s.clone())
        } else {
            None
        }
    });
    let cert = find(payloads, |p| {
        if let Payload::Cert(s) = p {
            Some(s.clone())
        } else {
            None
        }
    });
    assert_eq!(cert.encoding.0, 4, "X.509 signature certificate");
    let cert = Certificate::from_der(&cert.data).unwrap();
    let pem = std::fs::read(format!("{DIR}{}/pki/{who}.pem", c.name)).unwrap();
    assert_eq!(cert.der(), Certificate::from_pem(&pem).unwrap().der());
    let key = cert.public_key();
    assert!(key.supports(SignatureScheme::RsaPkcs1Raw));
    key.verify(SignatureScheme::RsaPkcs1Raw, hash, &sig)
        .unwrap();
    let mut bad = sig.clone();
    bad[10] ^= 1;
    assert!(
        key.verify(SignatureScheme::RsaPkcs1Raw, hash, &bad)
            .is_err()
    );
    assert!(
        key.verify(SignatureScheme::RsaPkcs1Raw, &hash[1..], &sig)
            .is_err()
    );
    let signer =
        LocalSigner::from_pem(&std::fs::read(format!("{DIR}{}/pki/{who}.key", c.name)).unwrap())
            .unwrap();
    assert_eq!(
        signer.sign(SignatureScheme::RsaPkcs1Raw, hash).unwrap(),
        sig,
        "{who}'s signature"
    );
    assert!(!signer.schemes().contains(&SignatureScheme::RsaPkcs1Raw));
}

/// Quick mode messages `n` and `n + 1`: HASH(1), HASH(2), and both SAs' KEYMAT.
fn quick_mode(c: &Case, p1: &Phase1, n: usize) {
    let mid = Header::decode(c.msg(n)).unwrap().message_id;
    let iv = phase2_iv(p1.hash, &p1.p1_last, mid, p1.encr.block_len());
    assert_eq!(
        iv,
        c.key(&format!("i.next_iv_for_mid_{mid}")),
        "{} QM IV",
        c.name
    );
    let q1 = open(p1.encr, &p1.keys.enc_key, &iv, c.msg(n));
    assert_eq!(q1.header.exchange, ExchangeType::QUICK);
    let first = &q1.payloads[0];
    let Payload::Hash(h1) = &first.payload else {
        panic!("QM1 starts with {:?}", first.payload)
    };
    let rest1 = &q1.plaintext[first.end..q1.chain_len];
    assert_eq!(
        &hash1(p1.prf, &p1.keys.skeyid_a, mid, rest1),
        h1,
        "{} HASH(1)",
        c.name
    );
    assert_eq!(h1.as_slice(), c.key("i.hash(1)"));
    let q1p = located_payloads(&q1);
    let ni_b = find(&q1p, |p| {
        if let Payload::Nonce(n) = p {
            Some(n.clone())
        } else {
            None
        }
    });
    let spi_i = u32::from_be_bytes(sa(&q1p).proposals[0].spi.clone().try_into().unwrap());

    let q2 = open(p1.encr, &p1.keys.enc_key, &q1.last_block, c.msg(n + 1));
    assert_eq!(q2.header.message_id, mid);
    let first = &q2.payloads[0];
    let Payload::Hash(h2) = &first.payload else {
        panic!("QM2 starts with {:?}", first.payload)
    };
    let rest2 = &q2.plaintext[first.end..q2.chain_len];
    assert_eq!(
        &hash2(p1.prf, &p1.keys.skeyid_a, mid, &ni_b, rest2),
        h2,
        "{} HASH(2)",
        c.name
    );
    let q2p = located_payloads(&q2);
    let nr_b = find(&q2p, |p| {
        if let Payload::Nonce(n) = p {
            Some(n.clone())
        } else {
            None
        }
    });
    let prop = &sa(&q2p).proposals[0];
    assert_eq!(prop.protocol, ProtocolId::ESP);
    let spi_r = u32::from_be_bytes(prop.spi.clone().try_into().unwrap());
    let t = &prop.transforms[0];
    let key_bits = t
        .value(IpsecAttrType::KEY_LENGTH.0)
        .map_or(0, |v| v as usize);
    let enc_len = match EspTransformId(t.id) {
        EspTransformId::AES => key_bits / 8,
        EspTransformId::AES_GCM_16 => key_bits / 8 + 4,
        EspTransformId::TRIPLE_DES => 24,
        other => panic!("ESP {other}"),
    };
    let integ_len = match t
        .value(IpsecAttrType::AUTHENTICATION_ALGORITHM.0)
        .map(|v| AuthAlgorithm(v as u16))
    {
        None => 0,
        Some(AuthAlgorithm::HMAC_SHA2_256) => 32,
        Some(AuthAlgorithm::HMAC_SHA) => 20,
        Some(a) => panic!("auth {a}"),
    };
    // PFS: the quick mode Diffie-Hellman secret.
    let g_qm = c.keys.get("i.dh_secret").map(|k| Secret::from_slice(k));
    assert_eq!(
        g_qm.is_some(),
        q1p.iter().any(|p| matches!(p, Payload::Ke(_))),
        "{}: PFS iff KE in QM1",
        c.name
    );
    // The initiator→responder SA is keyed with the responder's SPI, and vice versa.
    for (spi, dir) in [(spi_r, "initiator"), (spi_i, "responder")] {
        // The seed strongSwan logs: [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b.
        let seed = c.key(&format!("i.{dir}_sa_seed"));
        let at = g_qm.as_ref().map_or(0, Secret::len);
        assert_eq!(seed[at], 3, "{} {dir} protocol", c.name);
        assert_eq!(
            &seed[at + 1..at + 5],
            spi.to_be_bytes(),
            "{} {dir} SPI",
            c.name
        );
        let km = keymat(
            p1.prf,
            &p1.keys.skeyid_d,
            g_qm.as_ref(),
            3,
            spi,
            &ni_b,
            &nr_b,
            enc_len + integ_len,
        );
        assert_eq!(
            &km.expose()[..enc_len],
            c.key(&format!("i.encryption_{dir}_key")),
            "{} {dir} encryption key",
            c.name
        );
        if integ_len > 0 {
            assert_eq!(
                &km.expose()[enc_len..],
                c.key(&format!("i.integrity_{dir}_key")),
                "{} {dir} integrity key",
                c.name
            );
        }
    }
}

/// Every informational message from `from` on: fresh IV from the phase 1 block and the
/// message ID, HASH(1) over the notify/delete, decoded contents. Returns what they carry.
fn informationals(c: &Case, p1: &Phase1, from: usize) -> Vec<Payload> {
    let mut seen = Vec::new();
    for n in from..=c.msgs.len() {
        let h = Header::decode(c.msg(n)).unwrap();
        assert_eq!(
            h.exchange,
            ExchangeType::INFORMATIONAL,
            "{} message {n}",
            c.name
        );
        let iv = phase2_iv(p1.hash, &p1.p1_last, h.message_id, p1.encr.block_len());
        let o = open(p1.encr, &p1.keys.enc_key, &iv, c.msg(n));
        let first = &o.payloads[0];
        let Payload::Hash(h1) = &first.payload else {
            panic!("informational without HASH")
        };
        let rest = &o.plaintext[first.end..o.chain_len];
        assert_eq!(
            &hash1(p1.prf, &p1.keys.skeyid_a, h.message_id, rest),
            h1,
            "{} info {n}",
            c.name
        );
        seen.extend(o.payloads[1..].iter().map(|l| l.payload.clone()));
    }
    seen
}

fn assert_isakmp_delete(c: &Case, p1: &Phase1, info: &[Payload]) {
    let mut cookies = p1.cky_i.to_be_bytes().to_vec();
    cookies.extend_from_slice(&p1.cky_r.to_be_bytes());
    assert!(
        info.iter().any(|p| matches!(p, Payload::Delete(d)
            if d.protocol == ProtocolId::ISAKMP && d.spi_size == 16 && d.spis == [cookies.clone()])),
        "{}: no ISAKMP DELETE in {info:?}",
        c.name
    );
}

#[test]
fn main_mode_psk_modp2048_aes256_sha256_with_dpd() {
    let c = Case::load("mm-psk-modp2048-aes256-sha256");
    let p1 = main_mode(&c);
    quick_mode(&c, &p1, 7);
    let info = informationals(&c, &p1, 9);
    // The initiator reports the child it could not install (NO-PROPOSAL-CHOSEN for ESP
    // with its inbound SPI), sends R-U-THERE twice (answered with ACKs carrying the same sequence number),
    // then deletes the ISAKMP SA.
    assert!(info.iter().any(|p| matches!(p, Payload::Notify(n)
        if n.protocol == ProtocolId::ESP && n.spi.len() == 4 && n.ty == NotifyType::NO_PROPOSAL_CHOSEN)));
    let dpd: Vec<(NotifyType, Vec<u8>)> = info
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n)
                if n.ty == NotifyType::R_U_THERE || n.ty == NotifyType::R_U_THERE_ACK =>
            {
                assert_eq!(n.protocol, ProtocolId::ISAKMP);
                assert_eq!(n.spi.len(), 16);
                Some((n.ty, n.data.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(dpd.len(), 4, "{dpd:?}");
    assert_eq!(dpd[0].0, NotifyType::R_U_THERE);
    assert_eq!(dpd[1], (NotifyType::R_U_THERE_ACK, dpd[0].1.clone()));
    assert_eq!(dpd[0].1.len(), 4);
    assert_isakmp_delete(&c, &p1, &info);
    // The responder sent the DPD vendor ID and RFC 3947 NAT-T.
    let m2 = c.plain(2);
    assert!(m2.contains(&Payload::VendorId(vendor::DPD.to_vec())));
    assert!(m2.contains(&Payload::VendorId(vendor::NAT_T_RFC3947.to_vec())));
}

#[test]
fn main_mode_psk_legacy_aes256_sha1_expands_the_key() {
    // SHA-1 gives 20 bytes, AES-256 needs 32: Ka = K1 | K2 (Appendix B). Quick mode uses
    // 3DES/HMAC-SHA1 with KEYMAT of two PRF blocks.
    let c = Case::load("mm-psk-modp1536-aes256-sha1");
    let p1 = main_mode(&c);
    assert_eq!(p1.hash, HashAlg::Sha1);
    assert_eq!(p1.keys.skeyid_e.len(), 20);
    assert_eq!(p1.keys.enc_key.len(), 32);
    quick_mode(&c, &p1, 7);
    let info = informationals(&c, &p1, 9);
    assert_isakmp_delete(&c, &p1, &info);
}

#[test]
fn main_mode_psk_ecp256_with_gcm_pfs_ports_and_ranges() {
    let c = Case::load("mm-psk-ecp256-gcm-pfs");
    let p1 = main_mode(&c);
    quick_mode(&c, &p1, 7);
    // Quick mode IDs: 10.1.0.0/24 UDP port 53, and the range 10.2.0.10-10.2.0.20 for UDP.
    let mid = Header::decode(c.msg(7)).unwrap().message_id;
    let iv = phase2_iv(p1.hash, &p1.p1_last, mid, p1.encr.block_len());
    let q1 = located_payloads(&open(p1.encr, &p1.keys.enc_key, &iv, c.msg(7)));
    let ids: Vec<IdPayload> = q1
        .iter()
        .filter_map(|p| {
            if let Payload::Id(i) = p {
                Some(i.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0].id_type, ike_proto::IdType::IPV4_ADDR_SUBNET);
    assert_eq!((ids[0].protocol, ids[0].port), (17, 53));
    assert_eq!(ids[0].data, [10, 1, 0, 0, 255, 255, 255, 0]);
    assert_eq!(ids[1].id_type, ike_proto::IdType::IPV4_ADDR_RANGE);
    assert_eq!((ids[1].protocol, ids[1].port), (17, 0));
    assert_eq!(ids[1].data, [10, 2, 0, 10, 10, 2, 0, 20]);
    let info = informationals(&c, &p1, 9);
    assert_isakmp_delete(&c, &p1, &info);
}

#[test]
fn aggressive_mode_psk_with_pfs() {
    let c = Case::load("am-psk-modp2048-pfs");
    let h1 = Header::decode(c.msg(1)).unwrap();
    assert_eq!(h1.exchange, ExchangeType::AGGRESSIVE);
    let h2 = Header::decode(c.msg(2)).unwrap();
    let (cky_i, cky_r) = (h2.cookie_i, h2.cookie_r);
    let (m1, m2) = (c.plain(1), c.plain(2));
    let sai_b = Payload::Sa(sa(&m1).clone()).body();
    let P1 { hash, encr, auth } = p1_transform(&sa(&m2).proposals[0].transforms[0]);
    assert_eq!(auth, P1Auth::PRE_SHARED_KEY);
    let prf = hash.prf();
    let ke = |p: &[Payload]| {
        find(p, |p| {
            if let Payload::Ke(k) = p {
                Some(k.clone())
            } else {
                None
            }
        })
    };
    let nonce = |p: &[Payload]| {
        find(p, |p| {
            if let Payload::Nonce(n) = p {
                Some(n.clone())
            } else {
                None
            }
        })
    };
    let id = |p: &[Payload]| {
        find(p, |p| {
            if let Payload::Id(i) = p {
                Some(i.clone())
            } else {
                None
            }
        })
    };
    let (g_xi, ni, idii) = (ke(&m1), nonce(&m1), id(&m1));
    let (g_xr, nr, idir) = (ke(&m2), nonce(&m2), id(&m2));
    assert_eq!(idii.id_type, ike_proto::IdType::FQDN);
    assert_eq!(idii.data, b"a.example.com");
    let g_xy = Secret::from_slice(c.key("i.shared_diffie_hellman_secret"));
    let keys = derive_phase1(
        prf,
        skeyid_psk(prf, &Secret::from_slice(PSK), &ni, &nr),
        &g_xy,
        cky_i,
        cky_r,
        encr.key_len(),
    );
    keys_match(&c, &keys);
    check_natd(&c, hash, cky_i, cky_r, &m2);
    // AM2 carries HASH_R in the clear: anyone who sees it can test PSK guesses offline.
    let want_r = hash_r(
        prf,
        &keys.skeyid,
        &g_xi,
        &g_xr,
        cky_i,
        cky_r,
        &sai_b,
        &idir.body(),
    );
    assert_eq!(
        find(&m2, |p| if let Payload::Hash(h) = p {
            Some(h.clone())
        } else {
            None
        }),
        want_r
    );
    let wrong = skeyid_psk(prf, &Secret::from_slice(b"gatekey-test-psX"), &ni, &nr);
    assert_ne!(
        hash_r(
            prf,
            &wrong,
            &g_xi,
            &g_xr,
            cky_i,
            cky_r,
            &sai_b,
            &idir.body()
        ),
        want_r
    );
    // AM3 is encrypted with the initial IV and carries HASH_I.
    let iv = initial_iv(hash, &g_xi, &g_xr, encr.block_len());
    assert_eq!(iv, c.key("i.initial_iv"));
    let m3 = open(encr, &keys.enc_key, &iv, c.msg(3));
    let p3 = located_payloads(&m3);
    let want_i = hash_i(
        prf,
        &keys.skeyid,
        &g_xi,
        &g_xr,
        cky_i,
        cky_r,
        &sai_b,
        &idii.body(),
    );
    assert_eq!(
        find(&p3, |p| if let Payload::Hash(h) = p {
            Some(h.clone())
        } else {
            None
        }),
        want_i
    );
    assert_eq!(want_i, c.key("i.hash_i"));
    assert_eq!(m3.last_block, c.key("i.next_iv_for_mid_0"));
    let p1 = Phase1 {
        prf,
        hash,
        encr,
        keys,
        ni,
        nr,
        cky_i,
        cky_r,
        p1_last: m3.last_block,
    };
    quick_mode(&c, &p1, 4);
    let info = informationals(&c, &p1, 6);
    assert_isakmp_delete(&c, &p1, &info);
    assert!(!p1.ni.is_empty() && !p1.nr.is_empty());
}

#[test]
fn main_mode_rsa_signatures() {
    let c = Case::load("mm-rsa-modp2048-aes128-sha256");
    let p1 = main_mode(&c);
    quick_mode(&c, &p1, 7);
    let info = informationals(&c, &p1, 9);
    assert_isakmp_delete(&c, &p1, &info);
}
