//! The certificate service: SIGN, VERIFY, GET_CERTIFICATE,
//! GET_CA_CERTIFICATES (`docs/nss-protocol.md` §5.5–§5.8), with the
//! EZB.NSSCERT profile checks.

use std::sync::Arc;

use gatekey_config::saf::{AccessLevel, Decision, names};
use gatekey_keyring::{Entry, Keyring, Usage};
use ike_proto::crypto::cert::{Certificate, ChainVerifier};
use ike_proto::crypto::sig::{self, KeyAlgorithm, SignatureScheme, Signer};
use nss_proto::{
    CaCertificate, Correlator, GetCertificateResponse, KeyKind, Message, Rc, Request, ResponseBody,
    Rsn, Services, SignInput, SignResponse, SignatureAlgorithm, Status, Verdict, VerifyResponse,
    VerifySubject,
};

use crate::log::level;
use crate::nsslog;
use crate::runtime::Runtime;
use crate::server::{ClientInfo, Shared, unix_now};

/// Check READ access of `user` to `profile`, logging the check (DBG0032I:
/// denials at NSS_VERBOSE, permits at NSS_TRACE).
pub(crate) fn authorize(shared: &Shared, rt: &Runtime, user: &str, profile: &str) -> bool {
    let d = rt.saf.check(profile, user, &[], AccessLevel::Read);
    let u = format!("{user:<8}");
    match &d {
        Decision::Permit { profile: by } => nsslog!(
            shared.logger,
            level::TRACE,
            "DBG0032I",
            "ServauthCheck({u},{profile}) rc 0 (PERMIT) racfRC 0 racfRsn 0 profile {by}"
        ),
        Decision::Deny {
            profile: by,
            access,
        } => nsslog!(
            shared.logger,
            level::VERBOSE,
            "DBG0032I",
            "ServauthCheck({u},{profile}) rc 4 (DENY) racfRC 8 racfRsn 0 profile {by} grants {access}"
        ),
        Decision::NoProfile => nsslog!(
            shared.logger,
            level::VERBOSE,
            "DBG0032I",
            "ServauthCheck({u},{profile}) rc 4 (DENY) racfRC 4 racfRsn 0 (no profile)"
        ),
    }
    d.is_permit()
}

/// `text` without control characters (replaced by `?`), cut to at most
/// `max` bytes: safe for a `SubjectDn` attribute and for log lines, whatever
/// a peer put in its certificate.
fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().map(|c| if c.is_control() { '?' } else { c }) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('?');
    }
    out
}

fn st(rc: Rc, rsn: Rsn) -> Status {
    Status::new(rc, rsn)
}

/// Handle one certificate-service request from a connected client.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    client: &ClientInfo,
    corr: Correlator,
    request: Request,
) -> Message {
    let mt = request.msg_type();
    let rt = shared.runtime();
    let result = if !client.enabled.contains(Services::CERT) {
        Err(st(Rc::EOPNOTSUPP, Rsn::SERVICE_NOT_ENABLED))
    } else if let Some(ring) = rt.keyring.clone() {
        match request {
            Request::Sign(s) => sign(shared, &rt, &ring, client, corr, s).await,
            Request::Verify(v) => verify(shared, &rt, &ring, client, corr, v).await,
            Request::GetCertificate(g) => {
                get_certificate(shared, &rt, &ring, client, corr, g.label)
            }
            Request::GetCaCertificates => Ok(get_ca_certificates(shared, &rt, &ring, client)),
            _ => Err(st(Rc::EINVAL, Rsn::BAD_TYPE)),
        }
    } else {
        Err(st(Rc::EOPNOTSUPP, Rsn::SERVICE_NOT_ENABLED))
    };
    match result {
        Ok(body) => Message::ok(corr, body),
        Err(status) => {
            nsslog!(
                shared.logger,
                level::CERTINFO,
                "DBG0013I",
                "Client {} request {mt} {corr} failed - {status}",
                client.client_name
            );
            Message::error(corr, mt, status)
        }
    }
}

/// The certificate a request names (or the client's default), with the HOST
/// profile checked.
fn resolve<'a>(
    shared: &Shared,
    rt: &Runtime,
    ring: &'a Keyring,
    client: &ClientInfo,
    corr: Correlator,
    label: Option<&str>,
) -> Result<&'a Entry, Status> {
    let e = match label {
        Some(l) => ring
            .get(l)
            .filter(|e| matches!(e.usage(), Usage::Personal | Usage::Site))
            .ok_or(st(Rc::ENOENT, Rsn::CERT_NOT_FOUND))?,
        None => ring.default_for_owner(&client.user_id).map_err(|e| {
            nsslog!(
                shared.logger,
                level::CERTINFO,
                "DBG0014I",
                "Client {} connected as userid {} has no default certificate: {e}",
                client.client_name,
                client.user_id
            );
            st(Rc::ENOENT, Rsn::NO_DEFAULT_CERT)
        })?,
    };
    let profile = names::nsscert_host(&rt.system_name, e.label());
    if !authorize(shared, rt, &client.user_id, &profile) {
        nsslog!(
            shared.logger,
            level::CERTINFO,
            "DBG0004I",
            "Client {} connected as userid {} is not authorized to profile {profile} associated with matching certificate ( {} ) for request {corr}",
            client.client_name,
            client.user_id,
            e.label()
        );
        return Err(st(Rc::EACCES, Rsn::CERT_NOT_AUTHORIZED));
    }
    Ok(e)
}

/// The ike-proto scheme for a protocol algorithm, and the fixed ECDSA field
/// length when the signature is r‖s.
fn scheme(alg: SignatureAlgorithm) -> Option<(SignatureScheme, Option<usize>)> {
    Some(match alg {
        SignatureAlgorithm::RsaPkcs1Sha1 => (SignatureScheme::RsaPkcs1Sha1, None),
        SignatureAlgorithm::RsaPkcs1Sha256 => (SignatureScheme::RsaPkcs1Sha256, None),
        SignatureAlgorithm::RsaPkcs1Sha384 => (SignatureScheme::RsaPkcs1Sha384, None),
        SignatureAlgorithm::RsaPkcs1Sha512 => (SignatureScheme::RsaPkcs1Sha512, None),
        SignatureAlgorithm::RsaPssSha256 => (SignatureScheme::RsaPssSha256, None),
        SignatureAlgorithm::RsaPssSha384 => (SignatureScheme::RsaPssSha384, None),
        SignatureAlgorithm::RsaPssSha512 => (SignatureScheme::RsaPssSha512, None),
        SignatureAlgorithm::EcdsaP256Sha256 => (SignatureScheme::EcdsaSha256, None),
        SignatureAlgorithm::EcdsaP384Sha384 => (SignatureScheme::EcdsaSha384, None),
        SignatureAlgorithm::EcdsaP256Sha256Fixed => (SignatureScheme::EcdsaSha256, Some(32)),
        SignatureAlgorithm::EcdsaP384Sha384Fixed => (SignatureScheme::EcdsaSha384, Some(48)),
        _ => return None,
    })
}

/// What to sign or verify, and how. ring signs messages, not precomputed
/// hashes: a `Digest` is accepted only for `RSA_PKCS1_RAW` (IKEv1's
/// HASH_I/HASH_R, padded without a DigestInfo), which the key ring's raw RSA
/// operation performs.
fn signing_input(
    alg: SignatureAlgorithm,
    input: SignInput,
) -> Result<(SignatureScheme, Option<usize>, Vec<u8>), Status> {
    match (alg, input) {
        (SignatureAlgorithm::RsaPkcs1Raw, SignInput::Digest(d)) if (1..=64).contains(&d.len()) => {
            Ok((SignatureScheme::RsaPkcs1Raw, None, d))
        }
        (SignatureAlgorithm::RsaPkcs1Raw, _) => Err(st(Rc::EINVAL, Rsn::BAD_ATTRIBUTE)),
        (_, SignInput::Digest(_)) => Err(st(Rc::EOPNOTSUPP, Rsn::UNSUPPORTED_ALGORITHM)),
        (alg, SignInput::Data(d)) => match scheme(alg) {
            Some((scheme, fixed)) => Ok((scheme, fixed, d)),
            None => Err(st(Rc::EOPNOTSUPP, Rsn::UNSUPPORTED_ALGORITHM)),
        },
    }
}

fn fits(kind: KeyKind, key: KeyAlgorithm) -> bool {
    matches!(
        (kind, key),
        (KeyKind::Rsa, KeyAlgorithm::Rsa { .. })
            | (KeyKind::EcP256, KeyAlgorithm::EcdsaP256)
            | (KeyKind::EcP384, KeyAlgorithm::EcdsaP384)
    )
}

async fn sign(
    shared: &Shared,
    rt: &Runtime,
    ring: &Keyring,
    client: &ClientInfo,
    corr: Correlator,
    s: nss_proto::SignRequest,
) -> Result<ResponseBody, Status> {
    let e = resolve(shared, rt, ring, client, corr, s.label.as_deref())?;
    let signer = Arc::clone(e.signer().ok_or(st(Rc::ENOENT, Rsn::KEY_NOT_FOUND))?);
    let key = signer.key_algorithm();
    if !fits(s.algorithm.key_kind(), key) {
        return Err(st(Rc::EINVAL, Rsn::ALGORITHM_MISMATCH));
    }
    let (scheme, fixed, data) = signing_input(s.algorithm, s.input)?;
    if scheme == SignatureScheme::RsaPkcs1Sha1 {
        return Err(st(Rc::EOPNOTSUPP, Rsn::UNSUPPORTED_ALGORITHM));
    }
    let Ok(_slot) = shared.sign_slots.acquire().await else {
        return Err(st(Rc::EIO, Rsn::SIGNING_FAILED));
    };
    let signed = tokio::task::spawn_blocking(move || {
        let der = signer.sign(scheme, &data)?;
        match fixed {
            Some(n) => sig::ecdsa_der_to_fixed(&der, n),
            None => Ok(der),
        }
    })
    .await;
    let signature = match signed {
        Ok(Ok(sig)) => sig,
        Ok(Err(err)) => {
            nsslog!(
                shared.logger,
                level::MINIMUM,
                "DBG0015E",
                "signing with certificate ( {} ) for client {} failed: {err}",
                e.label(),
                client.client_name
            );
            return Err(st(Rc::EIO, Rsn::SIGNING_FAILED));
        }
        Err(_) => return Err(st(Rc::EIO, Rsn::SIGNING_FAILED)),
    };
    nsslog!(
        shared.logger,
        level::CERTINFO,
        "DBG0010I",
        "Client {} connected as userid {} signed with certificate ( {} ) algorithm {} for request {corr}",
        client.client_name,
        client.user_id,
        e.label(),
        s.algorithm
    );
    Ok(ResponseBody::Sign(SignResponse {
        signature,
        label: e.label().to_owned(),
    }))
}

fn verdict_for_chain_error(e: &ike_proto::Error) -> Verdict {
    match e {
        ike_proto::Error::CertificateChain(w) => match w {
            webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
                Verdict::Expired
            }
            webpki::Error::CertRevoked => Verdict::Revoked,
            webpki::Error::UnknownIssuer => Verdict::Untrusted,
            _ => Verdict::BadCertificate,
        },
        _ => Verdict::BadCertificate,
    }
}

async fn verify(
    shared: &Shared,
    rt: &Runtime,
    ring: &Keyring,
    client: &ClientInfo,
    corr: Correlator,
    v: nss_proto::VerifyRequest,
) -> Result<ResponseBody, Status> {
    let (scheme, fixed, data) = signing_input(v.algorithm, v.input)?;
    let signature = match fixed {
        Some(_) => match sig::ecdsa_fixed_to_der(&v.signature) {
            Ok(s) => s,
            Err(_) => {
                return Ok(ResponseBody::Verify(VerifyResponse {
                    verdict: Verdict::BadSignature,
                    subject_dn: None,
                }));
            }
        },
        None => v.signature,
    };
    // Which certificate: a keyring label, or the peer's chain to a CA the
    // client may use.
    let (cert, chain_verdict) = match v.subject {
        VerifySubject::Label(l) => {
            let e = ring.get(&l).ok_or(st(Rc::ENOENT, Rsn::CERT_NOT_FOUND))?;
            let profile = match e.usage() {
                Usage::CertAuth => names::nsscert_certauth(&rt.system_name, e.label()),
                _ => names::nsscert_host(&rt.system_name, e.label()),
            };
            if !authorize(shared, rt, &client.user_id, &profile) {
                nsslog!(
                    shared.logger,
                    level::CERTINFO,
                    "DBG0004I",
                    "Client {} connected as userid {} is not authorized to profile {profile} associated with matching certificate ( {} ) for request {corr}",
                    client.client_name,
                    client.user_id,
                    e.label()
                );
                return Err(st(Rc::EACCES, Rsn::CERT_NOT_AUTHORIZED));
            }
            (e.certificate().clone(), Verdict::Valid)
        }
        VerifySubject::Certificates(certs) => {
            let Some((ee, inter)) = certs.split_first() else {
                return Err(st(Rc::EINVAL, Rsn::MISSING_ATTRIBUTE));
            };
            let Ok(cert) = Certificate::from_der(ee) else {
                return Ok(ResponseBody::Verify(VerifyResponse {
                    verdict: Verdict::BadCertificate,
                    subject_dn: None,
                }));
            };
            let mut verifier = ChainVerifier::new();
            for ca in ring.ca_entries() {
                let p = names::nsscert_certauth(&rt.system_name, ca.label());
                if authorize(shared, rt, &client.user_id, &p) {
                    let _ = verifier.add_ca_der(ca.der());
                }
            }
            for crl in ring.crls() {
                let _ = verifier.add_crl_der(crl);
            }
            let inter: Vec<&[u8]> = inter.iter().map(Vec::as_slice).collect();
            let verdict = match verifier.verify(ee, &inter, unix_now()) {
                Ok(_) => Verdict::Valid,
                Err(e) => verdict_for_chain_error(&e),
            };
            (cert, verdict)
        }
    };
    let subject_dn = Some(printable(
        &cert.subject().to_string(),
        nss_proto::limits::SUBJECT_DN,
    ));
    let verdict = if chain_verdict != Verdict::Valid {
        chain_verdict
    } else {
        let pk = cert.public_key();
        if !fits(v.algorithm.key_kind(), pk.algorithm()) {
            Verdict::AlgorithmMismatch
        } else if pk.verify(scheme, &data, &signature).is_ok() {
            Verdict::Valid
        } else {
            Verdict::BadSignature
        }
    };
    nsslog!(
        shared.logger,
        level::CERTINFO,
        "DBG0011I",
        "Client {} connected as userid {} verified a {} signature of {} for request {corr}: {}",
        client.client_name,
        client.user_id,
        v.algorithm,
        subject_dn.as_deref().unwrap_or("?"),
        verdict.name()
    );
    Ok(ResponseBody::Verify(VerifyResponse {
        verdict,
        subject_dn,
    }))
}

fn get_certificate(
    shared: &Shared,
    rt: &Runtime,
    ring: &Keyring,
    client: &ClientInfo,
    corr: Correlator,
    label: Option<String>,
) -> Result<ResponseBody, Status> {
    let e = resolve(shared, rt, ring, client, corr, label.as_deref())?;
    let mut chain = vec![e.der().to_vec()];
    chain.extend(ring.issuer_chain(e));
    nsslog!(
        shared.logger,
        level::CERTINFO,
        "DBG0012I",
        "Client {} connected as userid {} got certificate ( {} ) with {} issuer certificates for request {corr}",
        client.client_name,
        client.user_id,
        e.label(),
        chain.len() - 1
    );
    Ok(ResponseBody::GetCertificate(GetCertificateResponse {
        label: e.label().to_owned(),
        chain,
    }))
}

fn get_ca_certificates(
    shared: &Shared,
    rt: &Runtime,
    ring: &Keyring,
    client: &ClientInfo,
) -> ResponseBody {
    let list: Vec<CaCertificate> = ring
        .ca_entries()
        .filter(|ca| {
            authorize(
                shared,
                rt,
                &client.user_id,
                &names::nsscert_certauth(&rt.system_name, ca.label()),
            )
        })
        .map(|ca| CaCertificate {
            label: ca.label().to_owned(),
            der: ca.der().to_vec(),
        })
        .collect();
    nsslog!(
        shared.logger,
        level::CERTINFO,
        "DBG0012I",
        "Client {} connected as userid {} got {} CA certificates",
        client.client_name,
        client.user_id,
        list.len()
    );
    ResponseBody::GetCaCertificates(list)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn subject_names_are_made_printable() {
        assert_eq!(printable("CN=a\nb, O=x", 100), "CN=a?b, O=x");
        assert_eq!(printable("", 10), "?");
        assert_eq!(printable("éééé", 5), "éé");
    }
}
