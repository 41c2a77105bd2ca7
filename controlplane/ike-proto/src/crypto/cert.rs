//! X.509 certificates: parsing the parts IKE needs, distinguished names, chain validation to
//! configured CA certificates with CRL checking (rustls-webpki), and matching a certificate
//! against an IKE identity (RFC 4945 §3.1).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};

use super::der::{self, DerError, Reader, oid};
use super::sig::PublicKey;
use crate::error::{Error, Result};
use crate::identity::Identity;

/// An X.500 distinguished name, kept as its DER `Name` encoding.
///
/// Displayed and parsed in strongSwan's order and syntax: `C=CH, O=Example, CN=gw1`
/// (first RDN first, `+` joins multi-valued RDNs, `\` escapes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DistinguishedName {
    der: Vec<u8>,
}

/// Attribute short names, OIDs (dotted) and the string type used when encoding.
const ATTRS: &[(&str, &str, u8)] = &[
    ("CN", "2.5.4.3", der::TAG_UTF8STRING),
    ("SN", "2.5.4.4", der::TAG_UTF8STRING),
    ("serialNumber", "2.5.4.5", der::TAG_PRINTABLESTRING),
    ("C", "2.5.4.6", der::TAG_PRINTABLESTRING),
    ("L", "2.5.4.7", der::TAG_UTF8STRING),
    ("ST", "2.5.4.8", der::TAG_UTF8STRING),
    ("street", "2.5.4.9", der::TAG_UTF8STRING),
    ("O", "2.5.4.10", der::TAG_UTF8STRING),
    ("OU", "2.5.4.11", der::TAG_UTF8STRING),
    ("T", "2.5.4.12", der::TAG_UTF8STRING),
    ("G", "2.5.4.42", der::TAG_UTF8STRING),
    ("I", "2.5.4.43", der::TAG_UTF8STRING),
    ("dnQualifier", "2.5.4.46", der::TAG_PRINTABLESTRING),
    ("E", "1.2.840.113549.1.9.1", der::TAG_IA5STRING),
    ("DC", "0.9.2342.19200300.100.1.25", der::TAG_IA5STRING),
    ("UID", "0.9.2342.19200300.100.1.1", der::TAG_UTF8STRING),
];

const ATTR_ALIASES: &[(&str, &str)] = &[
    ("S", "ST"),
    ("EMAIL", "E"),
    ("EMAILADDRESS", "E"),
    ("TITLE", "T"),
    ("GN", "G"),
    ("SURNAME", "SN"),
    ("COMMONNAME", "CN"),
];

/// One attribute of an RDN: OID content bytes and decoded string value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute type OID, dotted.
    pub oid: String,
    /// The value as text (non-string values are shown as `#hex`).
    pub value: String,
}

impl Attribute {
    /// The short name (`CN`, `O`, …) or the dotted OID.
    pub fn name(&self) -> &str {
        ATTRS
            .iter()
            .find(|(_, o, _)| *o == self.oid)
            .map_or(self.oid.as_str(), |(n, _, _)| n)
    }
}

fn decode_string(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        der::TAG_UTF8STRING | der::TAG_PRINTABLESTRING | der::TAG_IA5STRING => {
            String::from_utf8(v.to_vec()).ok()
        }
        der::TAG_T61STRING => Some(v.iter().map(|b| char::from(*b)).collect()),
        der::TAG_BMPSTRING => {
            if !v.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = v
                .chunks_exact(2)
                .filter_map(|c| <[u8; 2]>::try_from(c).ok().map(u16::from_be_bytes))
                .collect();
            String::from_utf16(&units).ok()
        }
        der::TAG_UNIVERSALSTRING => {
            if !v.len().is_multiple_of(4) {
                return None;
            }
            v.chunks_exact(4)
                .map(|c| {
                    <[u8; 4]>::try_from(c)
                        .ok()
                        .and_then(|b| char::from_u32(u32::from_be_bytes(b)))
                })
                .collect()
        }
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl DistinguishedName {
    /// Wraps and checks a DER `Name`.
    pub fn from_der(der_bytes: &[u8]) -> Result<Self> {
        let dn = Self {
            der: der_bytes.to_vec(),
        };
        dn.rdns()?;
        Ok(dn)
    }

    /// The DER encoding (the ID_DER_ASN1_DN payload body).
    pub fn as_der(&self) -> &[u8] {
        &self.der
    }

    /// The relative distinguished names, first to last, each a set of attributes.
    pub fn rdns(&self) -> Result<Vec<Vec<Attribute>>> {
        let mut outer = Reader::new(&self.der);
        let mut seq = outer.sequence("Name")?;
        outer.finish("Name trailing data")?;
        let mut out = Vec::new();
        while !seq.is_empty() {
            let mut set = Reader::new(seq.expect(der::TAG_SET, "RDN")?.value);
            let mut rdn = Vec::new();
            while !set.is_empty() {
                let mut atv = set.sequence("AttributeTypeAndValue")?;
                let o = atv.expect(der::TAG_OID, "attribute type")?.value;
                let v = atv.any()?;
                atv.finish("AttributeTypeAndValue")?;
                let value =
                    decode_string(v.tag, v.value).unwrap_or_else(|| format!("#{}", hex(v.raw)));
                rdn.push(Attribute {
                    oid: der::oid_to_dotted(o),
                    value,
                });
            }
            if rdn.is_empty() {
                return Err(DerError { what: "empty RDN" }.into());
            }
            out.push(rdn);
        }
        Ok(out)
    }

    /// Whether this name matches `pattern`: same RDNs in the same order, attribute types
    /// equal, values equal ignoring ASCII case and surrounding blanks; a pattern value of
    /// `*` matches any value.
    pub fn matches(&self, pattern: &DistinguishedName) -> bool {
        let (Ok(a), Ok(b)) = (self.rdns(), pattern.rdns()) else {
            return false;
        };
        a.len() == b.len()
            && a.iter().zip(&b).all(|(ra, rb)| {
                ra.len() == rb.len()
                    && ra.iter().zip(rb).all(|(x, y)| {
                        x.oid == y.oid
                            && (y.value == "*"
                                || x.value.trim().eq_ignore_ascii_case(y.value.trim()))
                    })
            })
    }
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(rdns) = self.rdns() else {
            return write!(f, "#{}", hex(&self.der));
        };
        for (i, rdn) in rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            for (j, a) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str(" + ")?;
                }
                write!(f, "{}=", a.name())?;
                for c in a.value.chars() {
                    if matches!(c, ',' | '+' | '\\' | '=') {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistinguishedName({self})")
    }
}

/// Splits `s` on unescaped `sep`, unescaping `\x`.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let (Some(n), Some(p)) = (chars.next(), parts.last_mut()) {
                p.push('\\');
                p.push(n);
            }
        } else if c == sep {
            parts.push(String::new());
        } else if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl FromStr for DistinguishedName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| Error::Config(format!("distinguished name {s:?}: {why}"));
        let mut rdns = Vec::new();
        for rdn in split_unescaped(s, ',') {
            if rdn.trim().is_empty() {
                return Err(bad("empty relative name".into()));
            }
            let mut atvs = Vec::new();
            for atv in split_unescaped(&rdn, '+') {
                let (k, v) = atv
                    .split_once('=')
                    .ok_or_else(|| bad(format!("{:?} has no '='", atv.trim())))?;
                let k = k.trim();
                let v = unescape(v.trim());
                let upper = k.to_ascii_uppercase();
                let canon = ATTR_ALIASES
                    .iter()
                    .find(|(a, _)| *a == upper)
                    .map_or(upper.as_str(), |(_, c)| c);
                let (oid_bytes, tag) = if let Some((_, o, t)) =
                    ATTRS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(canon))
                {
                    (der::oid_from_dotted(o), *t)
                } else {
                    (der::oid_from_dotted(k), der::TAG_UTF8STRING)
                };
                let oid_bytes = oid_bytes.ok_or_else(|| bad(format!("unknown attribute {k:?}")))?;
                let printable = v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c));
                let tag = match tag {
                    der::TAG_PRINTABLESTRING if !printable => der::TAG_UTF8STRING,
                    der::TAG_IA5STRING if !v.is_ascii() => der::TAG_UTF8STRING,
                    t => t,
                };
                atvs.push(der::sequence(&[
                    &der::tlv(der::TAG_OID, &oid_bytes),
                    &der::tlv(tag, v.as_bytes()),
                ]));
            }
            rdns.push(der::tlv(der::TAG_SET, &atvs.concat()));
        }
        Ok(Self {
            der: der::tlv(der::TAG_SEQUENCE, &rdns.concat()),
        })
    }
}

/// A SubjectAltName entry (RFC 5280 §4.2.1.6) of the kinds IKE identities use.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GeneralName {
    /// rfc822Name.
    Email(String),
    /// dNSName.
    Dns(String),
    /// directoryName.
    Directory(DistinguishedName),
    /// uniformResourceIdentifier.
    Uri(String),
    /// iPAddress (4 or 16 bytes).
    Ip(IpAddr),
    /// Any other kind: context tag and raw value.
    Other(u8, Vec<u8>),
}

/// A parsed X.509 certificate (only what IKE needs; chain validation is done by
/// [`ChainVerifier`] with rustls-webpki).
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    serial: Vec<u8>,
    issuer: DistinguishedName,
    subject: DistinguishedName,
    public_key: PublicKey,
    subject_alt_names: Vec<GeneralName>,
    subject_key_id: Option<Vec<u8>>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("serial", &hex(&self.serial))
            .field("san", &self.subject_alt_names)
            .finish()
    }
}

impl Certificate {
    /// Parses a DER certificate.
    pub fn from_der(cert: &[u8]) -> Result<Self> {
        let mut outer = Reader::new(cert);
        let mut c = outer.sequence("Certificate")?;
        outer.finish("Certificate trailing data")?;
        let mut tbs = c.sequence("TBSCertificate")?;
        tbs.optional(0xa0)?; // version
        let serial = tbs.expect(der::TAG_INTEGER, "serialNumber")?.value.to_vec();
        tbs.sequence("signature")?;
        let issuer = DistinguishedName::from_der(tbs.expect(der::TAG_SEQUENCE, "issuer")?.raw)?;
        tbs.sequence("validity")?;
        let subject = DistinguishedName::from_der(tbs.expect(der::TAG_SEQUENCE, "subject")?.raw)?;
        let spki = tbs.expect(der::TAG_SEQUENCE, "subjectPublicKeyInfo")?.raw;
        let public_key = PublicKey::from_spki_der(spki)?;
        tbs.optional(0x81)?;
        tbs.optional(0x82)?;
        let mut subject_alt_names = Vec::new();
        let mut subject_key_id = None;
        if let Some(ext) = tbs.optional(0xa3)? {
            let mut r = Reader::new(ext.value);
            let mut exts = r.sequence("Extensions")?;
            while !exts.is_empty() {
                let mut e = exts.sequence("Extension")?;
                let id = e.expect(der::TAG_OID, "extnID")?.value;
                e.optional(der::TAG_BOOLEAN)?;
                let v = e.expect(der::TAG_OCTET_STRING, "extnValue")?.value;
                if id == oid::SUBJECT_ALT_NAME {
                    subject_alt_names = parse_general_names(v)?;
                } else if id == oid::SUBJECT_KEY_ID {
                    subject_key_id = Some(
                        der::single(v, der::TAG_OCTET_STRING, "subjectKeyIdentifier")?
                            .value
                            .to_vec(),
                    );
                }
            }
        }
        Ok(Self {
            der: cert.to_vec(),
            serial,
            issuer,
            subject,
            public_key,
            subject_alt_names,
            subject_key_id,
        })
    }

    /// Parses the first certificate of a PEM file.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let c = CertificateDer::from_pem_slice(pem).map_err(|e| Error::Pem(e.to_string()))?;
        Self::from_der(&c)
    }

    /// Parses every certificate in a PEM bundle.
    pub fn all_from_pem(pem: &[u8]) -> Result<Vec<Self>> {
        CertificateDer::pem_slice_iter(pem)
            .map(|c| {
                let c = c.map_err(|e| Error::Pem(e.to_string()))?;
                Self::from_der(&c)
            })
            .collect()
    }

    /// The DER encoding (the CERT payload body for encoding 4, X.509 Signature).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject name.
    pub fn subject(&self) -> &DistinguishedName {
        &self.subject
    }

    /// The issuer name.
    pub fn issuer(&self) -> &DistinguishedName {
        &self.issuer
    }

    /// The serial number (DER INTEGER content).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The subject's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// SubjectAltName entries.
    pub fn subject_alt_names(&self) -> &[GeneralName] {
        &self.subject_alt_names
    }

    /// SubjectKeyIdentifier, if present.
    pub fn subject_key_id(&self) -> Option<&[u8]> {
        self.subject_key_id.as_deref()
    }

    /// SHA-1 of the DER SubjectPublicKeyInfo (the CERTREQ "certification authority" value,
    /// RFC 7296 §3.7).
    pub fn spki_sha1(&self) -> [u8; 20] {
        let d = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            self.public_key.spki_der(),
        );
        let mut out = [0u8; 20];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// Whether the certificate vouches for `id` (RFC 4945 §3.1 / strongSwan semantics):
    /// IP addresses, FQDNs and RFC 822 names against SubjectAltName; a DN against the subject
    /// or a directoryName SAN; a KEY_ID against the SubjectKeyIdentifier.
    pub fn matches_identity(&self, id: &Identity) -> bool {
        match id {
            Identity::Ipv4(a) => self
                .subject_alt_names
                .contains(&GeneralName::Ip(IpAddr::V4(*a))),
            Identity::Ipv6(a) => self
                .subject_alt_names
                .contains(&GeneralName::Ip(IpAddr::V6(*a))),
            Identity::Fqdn(f) => self.subject_alt_names.iter().any(|n| match n {
                GeneralName::Dns(d) => dns_matches(d, f),
                _ => false,
            }),
            Identity::Rfc822(e) => self.subject_alt_names.iter().any(|n| match n {
                GeneralName::Email(x) => x.eq_ignore_ascii_case(e),
                _ => false,
            }),
            Identity::Dn(dn) => {
                self.subject.matches(dn)
                    || self.subject_alt_names.iter().any(|n| match n {
                        GeneralName::Directory(d) => d.matches(dn),
                        _ => false,
                    })
            }
            Identity::KeyId(k) => self.subject_key_id.as_deref() == Some(k.as_slice()),
        }
    }
}

/// `*.example.com` in a certificate matches exactly one left-most label.
fn dns_matches(cert_name: &str, id: &str) -> bool {
    let id = id.trim_end_matches('.');
    let c = cert_name.trim_end_matches('.');
    if let Some(suffix) = c.strip_prefix("*.") {
        match id.split_once('.') {
            Some((label, rest)) => !label.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        }
    } else {
        c.eq_ignore_ascii_case(id)
    }
}

fn parse_general_names(v: &[u8]) -> Result<Vec<GeneralName>> {
    let mut outer = Reader::new(v);
    let mut seq = outer.sequence("GeneralNames")?;
    let mut out = Vec::new();
    while !seq.is_empty() {
        let t = seq.any()?;
        let text =
            |what| String::from_utf8(t.value.to_vec()).map_err(|_| Error::from(DerError { what }));
        out.push(match t.tag {
            0x81 => GeneralName::Email(text("rfc822Name")?),
            0x82 => GeneralName::Dns(text("dNSName")?),
            0x86 => GeneralName::Uri(text("URI")?),
            0xa4 => GeneralName::Directory(DistinguishedName::from_der(t.value)?),
            0x87 => match t.value.len() {
                4 => {
                    let mut b = [0u8; 4];
                    b.copy_from_slice(t.value);
                    GeneralName::Ip(IpAddr::from(b))
                }
                16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(t.value);
                    GeneralName::Ip(IpAddr::from(b))
                }
                _ => GeneralName::Other(t.tag, t.value.to_vec()),
            },
            tag => GeneralName::Other(tag, t.value.to_vec()),
        });
    }
    Ok(out)
}

/// How revocation is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationPolicy {
    /// Check every certificate of the chain (true) or only the end entity.
    pub whole_chain: bool,
    /// Reject a certificate whose issuer has no CRL loaded (strict mode).
    pub require_crl: bool,
    /// Reject when the matching CRL is past its nextUpdate.
    pub reject_expired_crl: bool,
}

impl Default for RevocationPolicy {
    /// Whole chain; a certificate with no CRL from its issuer passes; stale CRLs still count.
    fn default() -> Self {
        Self {
            whole_chain: true,
            require_crl: false,
            reject_expired_crl: false,
        }
    }
}

/// Validates certificate chains to configured CA certificates, with CRLs.
///
/// Accepted end-entity certificates either have no ExtendedKeyUsage or list
/// id-kp-ipsecIKE (RFC 4945), serverAuth or clientAuth.
pub struct ChainVerifier {
    anchors: Vec<TrustAnchor<'static>>,
    ca_certs: Vec<Certificate>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    policy: RevocationPolicy,
}

impl fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainVerifier")
            .field(
                "cas",
                &self
                    .ca_certs
                    .iter()
                    .map(|c| c.subject().to_string())
                    .collect::<Vec<_>>(),
            )
            .field("crls", &self.crls.len())
            .field("policy", &self.policy)
            .finish()
    }
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

/// Signature algorithms accepted in certificate chains.
static CHAIN_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The outcome of a successful chain validation.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// The end-entity certificate.
    pub end_entity: Certificate,
    /// Subject of the trust anchor the chain ends at.
    pub anchor_subject: String,
    /// Number of intermediates used.
    pub intermediates_used: usize,
}

impl ChainVerifier {
    /// An empty verifier (trusts nothing).
    pub fn new() -> Self {
        Self {
            anchors: Vec::new(),
            ca_certs: Vec::new(),
            crls: Vec::new(),
            policy: RevocationPolicy::default(),
        }
    }

    /// Trusts a DER CA certificate.
    pub fn add_ca_der(&mut self, der_bytes: &[u8]) -> Result<()> {
        let parsed = Certificate::from_der(der_bytes)?;
        let c = CertificateDer::from(der_bytes);
        let anchor = webpki::anchor_from_trusted_cert(&c)
            .map_err(|e| Error::Certificate(format!("CA {}: {e}", parsed.subject())))?
            .to_owned();
        self.anchors.push(anchor);
        self.ca_certs.push(parsed);
        Ok(())
    }

    /// Trusts every certificate in a PEM bundle; returns how many were added.
    pub fn add_ca_pem(&mut self, pem: &[u8]) -> Result<usize> {
        let mut n = 0;
        for c in CertificateDer::pem_slice_iter(pem) {
            let c = c.map_err(|e| Error::Pem(e.to_string()))?;
            self.add_ca_der(&c)?;
            n += 1;
        }
        Ok(n)
    }

    /// Adds a DER CRL (its signature is checked against the issuing CA during validation).
    pub fn add_crl_der(&mut self, der_bytes: &[u8]) -> Result<()> {
        let crl = webpki::OwnedCertRevocationList::from_der(der_bytes)
            .map_err(|e| Error::Certificate(format!("CRL: {e}")))?;
        self.crls.push(crl.into());
        Ok(())
    }

    /// Adds every CRL in a PEM file; returns how many were added.
    pub fn add_crl_pem(&mut self, pem: &[u8]) -> Result<usize> {
        let mut n = 0;
        for c in CertificateRevocationListDer::pem_slice_iter(pem) {
            let c = c.map_err(|e| Error::Pem(e.to_string()))?;
            self.add_crl_der(&c)?;
            n += 1;
        }
        Ok(n)
    }

    /// Sets the revocation policy.
    pub fn set_revocation_policy(&mut self, policy: RevocationPolicy) {
        self.policy = policy;
    }

    /// The trusted CA certificates.
    pub fn ca_certificates(&self) -> &[Certificate] {
        &self.ca_certs
    }

    /// SHA-1 hashes of the CA public keys, as sent in CERTREQ payloads.
    pub fn certreq_hashes(&self) -> Vec<[u8; 20]> {
        self.ca_certs.iter().map(Certificate::spki_sha1).collect()
    }

    /// Validates `end_entity` (DER) through `intermediates` to a trusted CA at time `now`
    /// (seconds since the Unix epoch; the caller owns the clock).
    pub fn verify(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        now_unix: u64,
    ) -> Result<VerifiedChain> {
        let parsed = Certificate::from_der(end_entity)?;
        let ee_der = CertificateDer::from(end_entity);
        let ee = webpki::EndEntityCert::try_from(&ee_der).map_err(Error::CertificateChain)?;
        let inter: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(*c))
            .collect();
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let time = UnixTime::since_unix_epoch(Duration::from_secs(now_unix));
        let usages = [
            webpki::KeyUsage::required_if_present(oid::KP_IPSEC_IKE),
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ];
        let mut last_err = None;
        for usage in usages {
            let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
                .ok()
                .map(|b| {
                    b.with_depth(if self.policy.whole_chain {
                        webpki::RevocationCheckDepth::Chain
                    } else {
                        webpki::RevocationCheckDepth::EndEntity
                    })
                    .with_status_policy(if self.policy.require_crl {
                        webpki::UnknownStatusPolicy::Deny
                    } else {
                        webpki::UnknownStatusPolicy::Allow
                    })
                    .with_expiration_policy(if self.policy.reject_expired_crl {
                        webpki::ExpirationPolicy::Enforce
                    } else {
                        webpki::ExpirationPolicy::Ignore
                    })
                    .build()
                });
            if revocation.is_none() && self.policy.require_crl {
                return Err(Error::CertificateChain(
                    webpki::Error::UnknownRevocationStatus,
                ));
            }
            match ee.verify_for_usage(
                CHAIN_ALGS,
                &self.anchors,
                &inter,
                time,
                usage,
                revocation,
                None,
            ) {
                Ok(path) => {
                    let anchor_der = der::tlv(der::TAG_SEQUENCE, path.anchor().subject.as_ref());
                    let anchor_subject = DistinguishedName::from_der(&anchor_der)
                        .map(|d| d.to_string())
                        .unwrap_or_default();
                    return Ok(VerifiedChain {
                        end_entity: parsed,
                        anchor_subject,
                        intermediates_used: path.intermediate_certificates().count(),
                    });
                }
                Err(e @ webpki::Error::RequiredEkuNotFoundContext(_)) => {
                    last_err = Some(e);
                }
                Err(e) => return Err(Error::CertificateChain(e)),
            }
        }
        Err(last_err.map_or_else(
            || Error::Certificate("no acceptable extended key usage".into()),
            Error::CertificateChain,
        ))
    }

    /// Validates the chain and checks that it vouches for `id`.
    pub fn verify_for_identity(
        &self,
        end_entity: &[u8],
        intermediates: &[&[u8]],
        id: &Identity,
        now_unix: u64,
    ) -> Result<VerifiedChain> {
        let v = self.verify(end_entity, intermediates, now_unix)?;
        if !v.end_entity.matches_identity(id) {
            return Err(Error::IdentityMismatch(id.to_string()));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_parse_display_match() {
        let dn: DistinguishedName = "C=CH, O=strongSwan, CN=moon.strongswan.org"
            .parse()
            .unwrap();
        assert_eq!(dn.to_string(), "C=CH, O=strongSwan, CN=moon.strongswan.org");
        let rdns = dn.rdns().unwrap();
        assert_eq!(rdns.len(), 3);
        assert_eq!(rdns[0][0].oid, "2.5.4.6");
        // C is a PrintableString
        assert!(
            dn.as_der()
                .windows(4)
                .any(|w| w == [0x13, 0x02, b'C', b'H'])
        );
        let other: DistinguishedName = "c=ch,o=STRONGSWAN,  cn=MOON.strongswan.org"
            .parse()
            .unwrap();
        assert!(dn.matches(&other));
        let wild: DistinguishedName = "C=CH, O=strongSwan, CN=*".parse().unwrap();
        assert!(dn.matches(&wild));
        let fewer: DistinguishedName = "C=CH, O=strongSwan".parse().unwrap();
        assert!(!dn.matches(&fewer));
        let reordered: DistinguishedName = "O=strongSwan, C=CH, CN=moon.strongswan.org"
            .parse()
            .unwrap();
        assert!(!dn.matches(&reordered));
    }

    #[test]
    fn dn_escapes_and_multivalue() {
        let dn: DistinguishedName = r"O=Acme\, Inc., OU=a + OU=b, 2.5.4.3=x\=y".parse().unwrap();
        let rdns = dn.rdns().unwrap();
        assert_eq!(rdns[0][0].value, "Acme, Inc.");
        assert_eq!(rdns[1].len(), 2);
        assert_eq!(rdns[2][0].name(), "CN");
        assert_eq!(dn.to_string(), r"O=Acme\, Inc., OU=a + OU=b, CN=x\=y");
        let again: DistinguishedName = dn.to_string().parse().unwrap();
        assert_eq!(again, dn);
        assert!("CN".parse::<DistinguishedName>().is_err());
        assert!("XX=1".parse::<DistinguishedName>().is_err());
        assert!("CN=a,,O=b".parse::<DistinguishedName>().is_err());
    }

    #[test]
    fn dns_wildcards() {
        assert!(dns_matches("*.example.com", "gw.example.com"));
        assert!(!dns_matches("*.example.com", "a.gw.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(dns_matches("GW.example.com.", "gw.EXAMPLE.com"));
    }

    #[test]
    fn malformed_names_rejected() {
        assert!(DistinguishedName::from_der(&[0x30, 0x03, 0x31, 0x00]).is_err());
        assert!(DistinguishedName::from_der(&[0x30, 0x05, 0x31, 0x03, 0x30]).is_err());
        assert!(Certificate::from_der(&[0x30, 0x00]).is_err());
    }
}
