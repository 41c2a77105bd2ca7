//! Test PKI (feature `test-support`): a CA, certificates issued at test time
//! for RSA fixture keys (ring cannot generate RSA keys; the fixtures were
//! made with `openssl genpkey`) or fresh ECDSA keys, CRLs, and keyring
//! directories written with the right modes.
//!
//! For tests and benchmarks only: the fixture keys are public.

#![expect(
    clippy::expect_used,
    reason = "test support: a broken fixture is a bug in the test"
)]

use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};

/// A key to certify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA 2048, fixture A.
    Rsa2048A,
    /// RSA 2048, fixture B.
    Rsa2048B,
    /// RSA 2048, fixture C.
    Rsa2048C,
    /// RSA 3072.
    Rsa3072,
    /// RSA 4096.
    Rsa4096,
    /// RSA 1024 (too small: the keyring refuses it; ring cannot use it, so it
    /// cannot be certified here — use only its PEM).
    Rsa1024,
    /// A fresh ECDSA P-256 key.
    EcP256,
    /// A fresh ECDSA P-384 key.
    EcP384,
}

impl KeySpec {
    /// The PKCS#8 PEM of the key (a fresh key for the EC kinds).
    pub fn pem(self) -> String {
        let fixture = |s: &str| s.to_owned();
        match self {
            KeySpec::Rsa2048A => fixture(include_str!("../fixtures/rsa2048-a.key")),
            KeySpec::Rsa2048B => fixture(include_str!("../fixtures/rsa2048-b.key")),
            KeySpec::Rsa2048C => fixture(include_str!("../fixtures/rsa2048-c.key")),
            KeySpec::Rsa3072 => fixture(include_str!("../fixtures/rsa3072-a.key")),
            KeySpec::Rsa4096 => fixture(include_str!("../fixtures/rsa4096-a.key")),
            KeySpec::Rsa1024 => fixture(include_str!("../fixtures/rsa1024.key")),
            KeySpec::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .expect("P-256 key")
                .serialize_pem(),
            KeySpec::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
                .expect("P-384 key")
                .serialize_pem(),
        }
    }

    fn key_pair(self, pem: &str) -> KeyPair {
        let alg = match self {
            KeySpec::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeySpec::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            _ => &rcgen::PKCS_RSA_SHA256,
        };
        KeyPair::from_pkcs8_pem_and_sign_algo(pem, alg).expect("fixture key")
    }
}

/// A subjectAltName.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    /// dNSName.
    Dns(String),
    /// iPAddress.
    Ip(IpAddr),
    /// rfc822Name.
    Email(String),
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject common name.
    pub cn: String,
    /// Further subject attributes after CN: (short name, value), e.g. ("O", "Example").
    pub subject_extra: Vec<(String, String)>,
    /// The key.
    pub key: KeySpec,
    /// subjectAltNames.
    pub sans: Vec<San>,
    /// Add the serverAuth extended key usage (TLS server certificates).
    pub server_auth: bool,
    /// Validity start, Unix seconds (default: an hour ago).
    pub not_before: Option<u64>,
    /// Validity end, Unix seconds (default: in a year).
    pub not_after: Option<u64>,
}

impl CertSpec {
    /// A certificate for `cn` with `key` and no SANs.
    pub fn new(cn: &str, key: KeySpec) -> Self {
        CertSpec {
            cn: cn.into(),
            subject_extra: Vec::new(),
            key,
            sans: Vec::new(),
            server_auth: false,
            not_before: None,
            not_after: None,
        }
    }

    /// Add a SAN.
    #[must_use]
    pub fn san(mut self, s: San) -> Self {
        self.sans.push(s);
        self
    }

    /// A TLS server certificate.
    #[must_use]
    pub fn server(mut self) -> Self {
        self.server_auth = true;
        self
    }
}

/// An issued certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
    /// The key (PKCS#8 PEM).
    pub key_pem: String,
    /// The serial number.
    pub serial: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn t(secs: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).expect("time")).expect("time")
}

fn dn_type(short: &str) -> DnType {
    match short {
        "CN" => DnType::CommonName,
        "O" => DnType::OrganizationName,
        "OU" => DnType::OrganizationalUnitName,
        "C" => DnType::CountryName,
        "L" => DnType::LocalityName,
        "ST" => DnType::StateOrProvinceName,
        other => panic!("unsupported DN attribute {other}"),
    }
}

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    /// The CA certificate, PEM.
    pub pem: String,
    next_serial: std::cell::Cell<u64>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

impl Ca {
    /// A new self-signed CA (ECDSA P-256) named `CN=<cn>, O=gatekey test`.
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "gatekey test");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = t(now() - 3600);
        p.not_after = t(now() + 10 * 365 * 86400);
        p.serial_number = Some(SerialNumber::from(1u64));
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.self_signed(&key).expect("CA certificate");
        Ca {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
            next_serial: std::cell::Cell::new(100),
        }
    }

    /// Issue a certificate.
    pub fn issue(&self, spec: &CertSpec) -> Issued {
        let key_pem = spec.key.pem();
        let key = spec.key.key_pair(&key_pem);
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, spec.cn.as_str());
        for (k, v) in &spec.subject_extra {
            p.distinguished_name.push(dn_type(k), v.as_str());
        }
        p.subject_alt_names = spec
            .sans
            .iter()
            .map(|s| match s {
                San::Dns(d) => SanType::DnsName(d.clone().try_into().expect("dns name")),
                San::Ip(a) => SanType::IpAddress(*a),
                San::Email(e) => SanType::Rfc822Name(e.clone().try_into().expect("email")),
            })
            .collect();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.server_auth {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }
        p.not_before = t(spec.not_before.unwrap_or(now() - 3600));
        p.not_after = t(spec.not_after.unwrap_or(now() + 365 * 86400));
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        p.serial_number = Some(SerialNumber::from(serial));
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).expect("issue");
        Issued {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem,
            serial,
        }
    }

    /// A CRL (PEM) revoking `serials`.
    pub fn crl(&self, serials: &[u64]) -> String {
        let p = CertificateRevocationListParams {
            this_update: t(now() - 60),
            next_update: t(now() + 86400),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: t(now() - 120),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        p.signed_by(&self.issuer)
            .expect("CRL")
            .pem()
            .expect("CRL PEM")
    }
}

/// Writes a keyring directory: files with mode 0644 (certificates) or 0600
/// (keys), directory 0700, and the manifest.
#[derive(Debug)]
pub struct KeyringBuilder {
    dir: PathBuf,
    manifest: String,
    n: usize,
}

impl KeyringBuilder {
    /// Start a keyring in `dir` (created if missing).
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("keyring dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        KeyringBuilder {
            dir: dir.to_path_buf(),
            manifest: String::new(),
            n: 0,
        }
    }

    fn write(&self, name: &str, text: &str, mode: u32) {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Add a certificate with a key, as Personal (with `owner`) or Site.
    pub fn keyed(
        mut self,
        label: &str,
        usage: &str,
        issued: &Issued,
        owner: Option<&str>,
        default: bool,
    ) -> Self {
        self.n += 1;
        let (c, k) = (format!("cert{}.pem", self.n), format!("cert{}.key", self.n));
        self.write(&c, &issued.pem, 0o644);
        self.write(&k, &issued.key_pem, 0o600);
        let _ = writeln!(self.manifest, "Certificate \"{label}\" {{");
        let _ = writeln!(self.manifest, "  Usage {usage}\n  File {c}\n  Key {k}");
        if let Some(o) = owner {
            let _ = writeln!(self.manifest, "  Owner {o}");
        }
        if default {
            let _ = writeln!(self.manifest, "  Default");
        }
        let _ = writeln!(self.manifest, "}}");
        self
    }

    /// Add a certificate without a key.
    pub fn cert_only(mut self, label: &str, usage: &str, pem: &str) -> Self {
        self.n += 1;
        let c = format!("cert{}.pem", self.n);
        self.write(&c, pem, 0o644);
        let _ = writeln!(
            self.manifest,
            "Certificate \"{label}\" {{ Usage {usage} File {c} }}"
        );
        self
    }

    /// Add a CA certificate.
    pub fn ca(self, label: &str, ca: &Ca) -> Self {
        let pem = ca.pem.clone();
        self.cert_only(label, "CertAuth", &pem)
    }

    /// Add a CRL file.
    pub fn crl(mut self, pem: &str) -> Self {
        self.n += 1;
        let f = format!("crl{}.pem", self.n);
        self.write(&f, pem, 0o644);
        let _ = writeln!(self.manifest, "Crl {{ File {f} }}");
        self
    }

    /// Write the manifest; returns the directory.
    pub fn finish(self) -> PathBuf {
        self.write(crate::MANIFEST, &self.manifest, 0o644);
        self.dir
    }
}
