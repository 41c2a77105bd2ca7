use std::os::unix::fs::PermissionsExt;

use ike_proto::crypto::sig::{KeyAlgorithm, SignatureScheme, Signer};

use crate::testpki::{Ca, CertSpec, KeySpec, KeyringBuilder, San};
use crate::{DefaultError, Error, Keyring, Usage};

fn chmod(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn loads_entries_signs_and_builds_chains() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.issue(&CertSpec::new("A1S1", KeySpec::Rsa2048A));
    let a2 = ca.issue(&CertSpec::new("A1S1 second", KeySpec::Rsa3072));
    let site =
        ca.issue(&CertSpec::new("site", KeySpec::EcP256).san(San::Dns("nss.example".into())));
    let dir = KeyringBuilder::new(&tmp.path().join("ring"))
        .ca("CA", &ca)
        .keyed("A1S1_CERT", "Personal", &a, Some("a1s1"), true)
        .keyed("A1S1 other", "Personal", &a2, Some("A1S1"), false)
        .keyed("NSS server", "Site", &site, None, true)
        .crl(&ca.crl(&[a2.serial]))
        .finish();
    let k = Keyring::load(&dir).unwrap();
    assert_eq!(k.entries().len(), 4);
    assert_eq!(k.ca_entries().count(), 1);
    assert_eq!(k.crls().len(), 1);
    let e = k.get("A1S1_CERT").unwrap();
    assert_eq!(e.usage(), Usage::Personal);
    assert_eq!(e.owner(), Some("A1S1"));
    assert_eq!(e.key_algorithm(), Some(KeyAlgorithm::Rsa { bits: 2048 }));
    assert!(k.get("a1s1_cert").is_none(), "labels are case-sensitive");
    // Signing with the entry's key verifies with the certificate's key.
    let s = e.signer().unwrap();
    let sig = s.sign(SignatureScheme::RsaPssSha256, b"data").unwrap();
    e.certificate()
        .public_key()
        .verify(SignatureScheme::RsaPssSha256, b"data", &sig)
        .unwrap();
    // Defaults.
    assert_eq!(k.default_for_owner("a1s1").unwrap().label(), "A1S1_CERT");
    assert_eq!(
        k.default_for_owner("B2").unwrap_err(),
        DefaultError::None("B2".into())
    );
    assert_eq!(k.default_entry().unwrap().label(), "NSS server");
    assert!(k.get("NSS server").unwrap().private_key_der().is_some());
    assert!(k.get("CA").unwrap().private_key_der().is_none());
    // Chain: the CA.
    let chain = k.issuer_chain(e);
    assert_eq!(chain, vec![ca.der.clone()]);
    assert!(k.issuer_chain(k.get("CA").unwrap()).is_empty());
    assert!(format!("{e:?}").contains("has_key: true"));
}

#[test]
fn ambiguous_default() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let a = ca.issue(&CertSpec::new("a", KeySpec::EcP256));
    let b = ca.issue(&CertSpec::new("b", KeySpec::EcP384));
    let dir = KeyringBuilder::new(tmp.path())
        .keyed("A", "Personal", &a, Some("U"), false)
        .keyed("B", "Personal", &b, Some("U"), false)
        .finish();
    let k = Keyring::load(&dir).unwrap();
    assert_eq!(
        k.default_for_owner("u").unwrap_err(),
        DefaultError::Ambiguous("U".into())
    );
    assert_eq!(
        k.get("B").unwrap().key_algorithm(),
        Some(KeyAlgorithm::EcdsaP384)
    );
    assert!(k.default_entry().is_none());
}

fn one_keyed(spec: KeySpec) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let a = ca.issue(&CertSpec::new("a", spec));
    let dir = KeyringBuilder::new(&tmp.path().join("r"))
        .keyed("A", "Personal", &a, None, false)
        .finish();
    (tmp, dir)
}

#[test]
fn key_file_permissions_are_checked() {
    let (_t, dir) = one_keyed(KeySpec::EcP256);
    assert!(Keyring::load(&dir).is_ok());
    chmod(&dir.join("cert1.key"), 0o640);
    let e = Keyring::load(&dir).unwrap_err();
    assert!(matches!(e, Error::Permission { .. }), "{e}");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    chmod(&dir.join("cert1.key"), 0o600);
    chmod(&dir.join("cert1.pem"), 0o664);
    let e = Keyring::load(&dir).unwrap_err();
    assert!(e.to_string().contains("writable by group or others"), "{e}");
    chmod(&dir.join("cert1.pem"), 0o644);
    chmod(&dir, 0o777);
    assert!(matches!(Keyring::load(&dir), Err(Error::Permission { .. })));
    chmod(&dir, 0o700);
    // A symlinked key file is refused.
    std::fs::rename(dir.join("cert1.key"), dir.join("real.key")).unwrap();
    std::os::unix::fs::symlink(dir.join("real.key"), dir.join("cert1.key")).unwrap();
    let e = Keyring::load(&dir).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
}

#[test]
fn unusable_keys_are_refused() {
    let (_t, dir) = one_keyed(KeySpec::Rsa2048A);
    std::fs::write(dir.join("cert1.key"), KeySpec::Rsa1024.pem()).unwrap();
    let e = Keyring::load(&dir).unwrap_err();
    assert!(e.to_string().contains("2048 to 4096 bits"), "{e}");
    let (_t, dir) = one_keyed(KeySpec::Rsa4096);
    assert!(Keyring::load(&dir).is_ok());
    // A key that belongs to another certificate.
    let (_t, dir) = one_keyed(KeySpec::Rsa2048A);
    std::fs::write(dir.join("cert1.key"), KeySpec::Rsa2048B.pem()).unwrap();
    let e = Keyring::load(&dir).unwrap_err();
    assert!(e.to_string().contains("does not belong"), "{e}");
    // PKCS#1 is explained.
    let pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm\no3qGy0t6z09AIJtH+5OeRV1be+N4cDYJKffGzDa88vQENZiRm0GRq6a+HPGQMd2k\nTQIhAKMSvzIBnni7ot/OSie2TmJLY4SwTQAevXysE2RbFDYdAiEBCUEaRQnMnbp7\n9mxDXDf6AU0cN/RPBjb9qSHDcWZHGzUCIG2Es59z8ugGrDY+pxLQnwfotadxd+Uy\nv/Ow5T0q5gIJAiEAyS4RaI9YG8EWx/2w0T67ZUVAw8eOMB6BIUg0Xcu+3okCIBOs\n/5OiPgoTdSy7bcF9IGpSE8ZgGKzgYQVZeN97YE00\n-----END RSA PRIVATE KEY-----\n";
    std::fs::write(dir.join("cert1.key"), pkcs1).unwrap();
    let e = Keyring::load(&dir).unwrap_err();
    assert!(e.to_string().contains("openssl pkcs8 -topk8"), "{e}");
}

#[test]
fn manifest_errors_name_the_line() {
    let (_t, dir) = one_keyed(KeySpec::EcP256);
    std::fs::write(
        dir.join(crate::MANIFEST),
        "Certificate A {\n  Usage Personal\n  File nope.pem\n  Colour blue\n}\n",
    )
    .unwrap();
    let e = Keyring::load(&dir).unwrap_err();
    assert!(matches!(e, Error::Manifest(_)));
    assert!(e.to_string().ends_with("keyring.conf:4:3: unknown Certificate parameter 'Colour'; expected Usage, File, Key, Owner or Default"), "{e}");
    std::fs::write(
        dir.join(crate::MANIFEST),
        "Certificate A { Usage Site File nope.pem }",
    )
    .unwrap();
    assert!(matches!(Keyring::load(&dir), Err(Error::Io { .. })));
    std::fs::write(
        dir.join(crate::MANIFEST),
        "Certificate A { Usage Site File cert1.key }",
    )
    .unwrap();
    chmod(&dir.join("cert1.key"), 0o600);
    let e = Keyring::load(&dir).unwrap_err();
    assert!(matches!(e, Error::Certificate { .. }), "{e}");
}
