//! Signing, verification, chain validation with CRLs, and identity matching.
//!
//! RSA keys come from `tests/vectors/pki/` (made with OpenSSL; ring cannot generate RSA
//! keys); EC keys, certificates and CRLs are generated here with rcgen.
#![expect(clippy::unwrap_used, reason = "tests")]

use ike_proto::Identity;
use ike_proto::crypto::cert::{Certificate, ChainVerifier, GeneralName, RevocationPolicy};
use ike_proto::crypto::sig::{KeyAlgorithm, LocalSigner, PublicKey, SignatureScheme, Signer};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/pki/");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{name}")).unwrap()
}

fn now() -> u64 {
    // Certificates are generated valid from 2024 to 2040; "now" is fixed for determinism.
    1_800_000_000
}

#[test]
fn local_signer_all_formats_and_schemes() {
    let msg = b"IKE AUTH octets";
    for (file, alg) in [
        ("rsa-ee.key", "rsa"),
        ("rsa-ee-pkcs1.key", "rsa"),
        ("ec-p256-sec1.key", "p256"),
        ("ed25519.key", "ed"),
    ] {
        let s = LocalSigner::from_pem(&fixture(file)).unwrap();
        match (alg, s.key_algorithm()) {
            ("rsa", KeyAlgorithm::Rsa { bits: 2048 })
            | ("p256", KeyAlgorithm::EcdsaP256)
            | ("ed", KeyAlgorithm::Ed25519) => {}
            other => panic!("{file}: {other:?}"),
        }
        let schemes = s.schemes();
        assert!(!schemes.is_empty());
        for scheme in schemes {
            let sig = s.sign(scheme, msg).unwrap();
            s.public_key().verify(scheme, msg, &sig).unwrap();
            let e = s.public_key().verify(scheme, b"other octets", &sig);
            assert!(
                matches!(e, Err(ike_proto::Error::BadSignature)),
                "{file} {scheme:?}"
            );
            // Through the SPKI round trip too.
            let pk = PublicKey::from_spki_der(s.public_key().spki_der()).unwrap();
            pk.verify(scheme, msg, &sig).unwrap();
        }
        // Debug never shows the key.
        assert!(format!("{s:?}").contains("redacted"));
    }
    // The PKCS#1 and PKCS#8 forms are the same key.
    let a = LocalSigner::from_pem(&fixture("rsa-ee.key")).unwrap();
    let b = LocalSigner::from_pem(&fixture("rsa-ee-pkcs1.key")).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    // Wrong scheme for the key.
    assert!(a.sign(SignatureScheme::EcdsaSha256, msg).is_err());
    // SHA-1 PKCS#1 (IKEv2 auth method 1) is signed through the raw RSA operation and
    // verifies with ring's legacy verifier; it is not offered by default.
    let sha1 = a.sign(SignatureScheme::RsaPkcs1Sha1, msg).unwrap();
    a.public_key()
        .verify(SignatureScheme::RsaPkcs1Sha1, msg, &sha1)
        .unwrap();
    assert!(!a.schemes().contains(&SignatureScheme::RsaPkcs1Sha1));
    let ec = LocalSigner::from_pem(&fixture("ec-p256-sec1.key")).unwrap();
    assert!(ec.sign(SignatureScheme::RsaPkcs1Sha1, msg).is_err());
    assert!(LocalSigner::from_pem(b"not a key").is_err());
    assert!(LocalSigner::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
}

#[test]
fn openssl_signatures_verify() {
    let msg = fixture("msg.txt");
    let rsa = LocalSigner::from_pem(&fixture("rsa-ee.key")).unwrap();
    let ec = LocalSigner::from_pem(&fixture("ec-p256-sec1.key")).unwrap();
    let ed = LocalSigner::from_pem(&fixture("ed25519.key")).unwrap();
    // PKCS#1 v1.5 and Ed25519 are deterministic: our signatures equal OpenSSL's.
    for (signer, scheme, file) in [
        (
            &rsa,
            SignatureScheme::RsaPkcs1Sha1,
            "msg.rsa-pkcs1-sha1.sig",
        ),
        (
            &rsa,
            SignatureScheme::RsaPkcs1Sha384,
            "msg.rsa-pkcs1-sha384.sig",
        ),
        (&ed, SignatureScheme::Ed25519, "msg.ed25519.sig"),
    ] {
        assert_eq!(
            signer.sign(scheme, &msg).unwrap(),
            fixture(file),
            "{scheme:?}"
        );
    }
    let cases = [
        (
            rsa.public_key(),
            SignatureScheme::RsaPssSha256,
            "msg.rsa-pss-sha256.sig",
        ),
        (
            rsa.public_key(),
            SignatureScheme::RsaPkcs1Sha384,
            "msg.rsa-pkcs1-sha384.sig",
        ),
        (
            rsa.public_key(),
            SignatureScheme::RsaPkcs1Sha1,
            "msg.rsa-pkcs1-sha1.sig",
        ),
        (
            ec.public_key(),
            SignatureScheme::EcdsaSha256,
            "msg.ecdsa-p256-sha256.sig",
        ),
        (ed.public_key(), SignatureScheme::Ed25519, "msg.ed25519.sig"),
    ];
    for (pk, scheme, file) in cases {
        let sig = fixture(file);
        pk.verify(scheme, &msg, &sig).unwrap();
        let mut bad = sig.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(pk.verify(scheme, &msg, &bad).is_err(), "{file}");
        // Same signature under the wrong hash fails.
        let wrong = if scheme == SignatureScheme::RsaPssSha256 {
            SignatureScheme::RsaPssSha384
        } else {
            SignatureScheme::RsaPkcs1Sha512
        };
        assert!(pk.verify(wrong, &msg, &sig).is_err());
    }
}

struct Pki {
    ca_der: Vec<u8>,
    ca_issuer: Issuer<'static, KeyPair>,
    inter_der: Vec<u8>,
    inter_issuer: Issuer<'static, KeyPair>,
}

fn validity(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2040, 1, 1);
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::from_pem(&String::from_utf8(fixture("rsa-ca.key")).unwrap()).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(DnType::CountryName, "US");
    ca.distinguished_name
        .push(DnType::OrganizationName, "Gatekey Test");
    ca.distinguished_name
        .push(DnType::CommonName, "Gatekey Root CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_issuer = Issuer::new(ca, ca_key);

    let inter_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut inter = CertificateParams::new(Vec::<String>::new()).unwrap();
    inter.distinguished_name = rcgen::DistinguishedName::new();
    inter.distinguished_name.push(DnType::CountryName, "US");
    inter
        .distinguished_name
        .push(DnType::OrganizationName, "Gatekey Test");
    inter
        .distinguished_name
        .push(DnType::CommonName, "Gatekey Issuing CA");
    inter.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    inter.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    inter.serial_number = Some(SerialNumber::from_slice(&[0x10]));
    validity(&mut inter);
    let inter_cert = inter.signed_by(&inter_key, &ca_issuer).unwrap();
    Pki {
        ca_der: ca_cert.der().to_vec(),
        ca_issuer,
        inter_der: inter_cert.der().to_vec(),
        inter_issuer: Issuer::new(inter, inter_key),
    }
}

fn ee_params(serial: u8) -> CertificateParams {
    let mut p = CertificateParams::new(vec!["gw1.example.com".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("192.0.2.1".parse().unwrap()));
    p.subject_alt_names
        .push(SanType::Rfc822Name("ops@example.com".try_into().unwrap()));
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CountryName, "US");
    p.distinguished_name
        .push(DnType::OrganizationName, "Gatekey Test");
    p.distinguished_name
        .push(DnType::CommonName, "gw1.example.com");
    p.serial_number = Some(SerialNumber::from_slice(&[serial]));
    p.key_identifier_method = KeyIdMethod::PreSpecified(vec![0xab; 20]);
    p.is_ca = IsCa::ExplicitNoCa;
    validity(&mut p);
    p
}

fn verifier(pki: &Pki) -> ChainVerifier {
    let mut v = ChainVerifier::new();
    v.add_ca_der(&pki.ca_der).unwrap();
    v
}

#[test]
fn chain_validation_and_identity_matching() {
    let pki = make_pki();
    let ee_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ee = ee_params(0x20)
        .signed_by(&ee_key, &pki.inter_issuer)
        .unwrap();
    let ee_der = ee.der().to_vec();
    let v = verifier(&pki);

    let ok = v.verify(&ee_der, &[&pki.inter_der], now()).unwrap();
    assert_eq!(ok.intermediates_used, 1);
    assert_eq!(
        ok.anchor_subject,
        "C=US, O=Gatekey Test, CN=Gatekey Root CA"
    );
    let cert = ok.end_entity;
    assert_eq!(
        cert.subject().to_string(),
        "C=US, O=Gatekey Test, CN=gw1.example.com"
    );
    assert_eq!(cert.public_key().algorithm(), KeyAlgorithm::EcdsaP256);
    assert!(
        cert.subject_alt_names()
            .contains(&GeneralName::Dns("gw1.example.com".into()))
    );
    assert_eq!(cert.subject_key_id(), Some(&[0xab; 20][..]));

    for id in [
        "gw1.example.com",
        "192.0.2.1",
        "ops@example.com",
        "C=US, O=Gatekey Test, CN=gw1.example.com",
        "C=US, O=Gatekey Test, CN=*",
        "@#abababababababababababababababababababab",
    ] {
        let id: Identity = id.parse().unwrap();
        assert!(cert.matches_identity(&id), "{id}");
    }
    for id in [
        "gw2.example.com",
        "192.0.2.2",
        "C=US, O=Other, CN=gw1.example.com",
        "x@example.com",
    ] {
        let id: Identity = id.parse().unwrap();
        assert!(!cert.matches_identity(&id), "{id}");
    }
    let id: Identity = "gw1.example.com".parse().unwrap();
    v.verify_for_identity(&ee_der, &[&pki.inter_der], &id, now())
        .unwrap();
    let wrong: Identity = "gw9.example.com".parse().unwrap();
    assert!(matches!(
        v.verify_for_identity(&ee_der, &[&pki.inter_der], &wrong, now()),
        Err(ike_proto::Error::IdentityMismatch(_))
    ));

    // Missing intermediate, unknown CA, expired, not yet valid.
    assert!(v.verify(&ee_der, &[], now()).is_err());
    let other = ChainVerifier::new();
    assert!(other.verify(&ee_der, &[&pki.inter_der], now()).is_err());
    assert!(v.verify(&ee_der, &[&pki.inter_der], 2_300_000_000).is_err());
    assert!(v.verify(&ee_der, &[&pki.inter_der], 1_600_000_000).is_err());

    // A signature made with the EE key verifies with the certificate's key.
    let signer = LocalSigner::from_pkcs8_der(&ee_key.serialize_der()).unwrap();
    let sig = signer.sign(SignatureScheme::EcdsaSha256, b"m").unwrap();
    PublicKey::from_certificate_der(&ee_der)
        .unwrap()
        .verify(SignatureScheme::EcdsaSha256, b"m", &sig)
        .unwrap();
    // The PEM route and CERTREQ hash.
    let parsed = Certificate::all_from_pem(ee.pem().as_bytes()).unwrap();
    assert_eq!(parsed[0].der(), &ee_der[..]);
    assert_eq!(v.certreq_hashes().len(), 1);
}

#[test]
fn crl_checking() {
    let pki = make_pki();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let revoked = ee_params(0x30).signed_by(&key, &pki.inter_issuer).unwrap();
    let good = ee_params(0x31).signed_by(&key, &pki.inter_issuer).unwrap();
    let crl_params = |serials: Vec<u8>| CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2025, 1, 1),
        next_update: rcgen::date_time_ymd(2039, 1, 1),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: serials
            .into_iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&[s]),
                revocation_time: rcgen::date_time_ymd(2025, 6, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let inter_crl = crl_params(vec![0x30]).signed_by(&pki.inter_issuer).unwrap();
    let root_crl = crl_params(vec![]).signed_by(&pki.ca_issuer).unwrap();

    let mut v = verifier(&pki);
    // No CRLs loaded: default policy allows unknown status.
    v.verify(revoked.der(), &[&pki.inter_der], now()).unwrap();
    // Strict policy without CRLs: rejected.
    v.set_revocation_policy(RevocationPolicy {
        require_crl: true,
        ..RevocationPolicy::default()
    });
    assert!(v.verify(good.der(), &[&pki.inter_der], now()).is_err());

    let mut v = verifier(&pki);
    assert_eq!(
        v.add_crl_pem(inter_crl.pem().unwrap().as_bytes()).unwrap(),
        1
    );
    v.add_crl_der(root_crl.der()).unwrap();
    let e = v
        .verify(revoked.der(), &[&pki.inter_der], now())
        .unwrap_err();
    assert!(e.to_string().contains("Revoked"), "{e}");
    v.verify(good.der(), &[&pki.inter_der], now()).unwrap();
    // Strict: both CRLs present, so the good one still passes.
    v.set_revocation_policy(RevocationPolicy {
        require_crl: true,
        reject_expired_crl: true,
        whole_chain: true,
    });
    v.verify(good.der(), &[&pki.inter_der], now()).unwrap();
    // After the CRLs' nextUpdate the strict policy rejects.
    assert!(
        v.verify(good.der(), &[&pki.inter_der], 2_200_000_000)
            .is_err()
    );
    assert!(v.add_crl_der(b"junk").is_err());
}

#[test]
fn extended_key_usage() {
    let pki = make_pki();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let v = verifier(&pki);
    let mut p = ee_params(0x40);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let code = p.signed_by(&key, &pki.inter_issuer).unwrap();
    assert!(v.verify(code.der(), &[&pki.inter_der], now()).is_err());
    let mut p = ee_params(0x41);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = p.signed_by(&key, &pki.inter_issuer).unwrap();
    v.verify(server.der(), &[&pki.inter_der], now()).unwrap();
    let mut p = ee_params(0x42);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Other(vec![
        1, 3, 6, 1, 5, 5, 7, 3, 17,
    ])];
    let ike = p.signed_by(&key, &pki.inter_issuer).unwrap();
    v.verify(ike.der(), &[&pki.inter_der], now()).unwrap();
}
