//! TLS server certificate verification against the configured Identity
//! (`docs/nss-protocol.md` §9).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ike_proto::Identity as IkeIdentity;
use ike_proto::crypto::cert::{Certificate, ChainVerifier, GeneralName};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The expected identity of an NSS server (IkeConfig
/// `NetworkSecurityServer … Identity type value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A subjectAltName iPAddress.
    IpAddr(IpAddr),
    /// A subjectAltName dNSName (RFC 6125 wildcards in the certificate).
    Fqdn(String),
    /// A subjectAltName rfc822Name `user@domain`.
    UserAtFqdn(String),
    /// The subject distinguished name, e.g. `CN=nss, O=Example`.
    X500dn(String),
}

impl Identity {
    /// The identity to check when none is configured: the host itself.
    pub fn for_host(host: &str) -> Identity {
        match host.parse::<IpAddr>() {
            Ok(a) => Identity::IpAddr(a),
            Err(_) => Identity::Fqdn(host.trim_end_matches('.').to_owned()),
        }
    }

    fn to_ike(&self) -> Result<IkeIdentity, String> {
        Ok(match self {
            Identity::IpAddr(IpAddr::V4(a)) => IkeIdentity::Ipv4(*a),
            Identity::IpAddr(IpAddr::V6(a)) => IkeIdentity::Ipv6(*a),
            Identity::Fqdn(f) => IkeIdentity::Fqdn(f.clone()),
            Identity::UserAtFqdn(u) => IkeIdentity::Rfc822(u.clone()),
            Identity::X500dn(d) => {
                IkeIdentity::Dn(d.parse().map_err(|e| {
                    format!("Identity X500dn {d:?} is not a distinguished name: {e}")
                })?)
            }
        })
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::IpAddr(a) => write!(f, "IpAddr {a}"),
            Identity::Fqdn(n) => write!(f, "Fqdn {n}"),
            Identity::UserAtFqdn(u) => write!(f, "UserAtFqdn {u}"),
            Identity::X500dn(d) => write!(f, "X500dn \"{d}\""),
        }
    }
}

/// What the certificate holds, for messages.
fn describe(cert: &Certificate) -> String {
    let sans: Vec<String> = cert
        .subject_alt_names()
        .iter()
        .map(|n| match n {
            GeneralName::Dns(d) => format!("DNS:{d}"),
            GeneralName::Ip(a) => format!("IP:{a}"),
            GeneralName::Email(e) => format!("email:{e}"),
            GeneralName::Directory(d) => format!("DirName:{d}"),
            GeneralName::Uri(u) => format!("URI:{u}"),
            _ => "other".to_owned(),
        })
        .collect();
    let text = format!(
        "subject \"{}\", subjectAltName [{}]",
        cert.subject(),
        sans.join(", ")
    );
    // The certificate is the peer's: keep control characters out of log lines.
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(1024)
        .collect()
}

/// Validates the server's chain against the trust anchors (and CRLs), then
/// checks the end entity against the expected identity.
pub(crate) struct IdentityVerifier {
    chain: ChainVerifier,
    identity: Identity,
    provider: Arc<CryptoProvider>,
    /// The reason of the last rejection (for EZD1149I).
    pub(crate) last_failure: Mutex<Option<String>>,
}

impl fmt::Debug for IdentityVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityVerifier")
            .field("identity", &self.identity)
            .finish()
    }
}

impl IdentityVerifier {
    pub(crate) fn new(
        anchors: &[Vec<u8>],
        crls: &[Vec<u8>],
        identity: Identity,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, String> {
        identity.to_ike()?;
        let mut chain = ChainVerifier::new();
        for a in anchors {
            chain
                .add_ca_der(a)
                .map_err(|e| format!("trust anchor: {e}"))?;
        }
        for c in crls {
            chain.add_crl_der(c).map_err(|e| format!("CRL: {e}"))?;
        }
        Ok(IdentityVerifier {
            chain,
            identity,
            provider,
            last_failure: Mutex::new(None),
        })
    }

    fn fail(&self, why: String) -> rustls::Error {
        if let Ok(mut l) = self.last_failure.lock() {
            *l = Some(why.clone());
        }
        rustls::Error::General(why)
    }
}

impl ServerCertVerifier for IdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let inter: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
        let verified = self
            .chain
            .verify(end_entity, &inter, now.as_secs())
            .map_err(|e| self.fail(format!("the server certificate is not trusted: {e}")))?;
        let id = self.identity.to_ike().map_err(|e| self.fail(e))?;
        if !verified.end_entity.matches_identity(&id) {
            return Err(self.fail(format!(
                "the server certificate does not match the configured Identity {} ({})",
                self.identity,
                describe(&verified.end_entity)
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client is configured for TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
