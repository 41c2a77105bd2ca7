//! IKE_AUTH (RFC 7296 §1.2, §2.15): identities, certificates, AUTH by PSK, RSA signature
//! (method 1), ECDSA (RFC 4754) and digital signatures (RFC 7427), signatures and
//! verifications through the caller, and the first child SA.

use std::sync::Arc;
use std::time::Instant;

use crate::crypto::keys;
use crate::crypto::secret::ct_eq;
use crate::crypto::sig::{self, KeyAlgorithm, SignatureScheme};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::ikev2::config::{LocalAuth, PeerConfig, RemoteAuth};
use crate::ikev2::event::{CloseReason, Event, RequestId};
use crate::ikev2::sa::{ChildReq, Find, IkeSa, Req, Shared, State};
use crate::wire::{
    Auth, AuthMethod, Cert, CertEncoding, ExchangeType, IdPayload, Notify, NotifyType, Payload,
};

/// Outcome of checking the peer's AUTH payload.
pub(crate) enum Verify {
    Ok,
    Fail(String),
    Pending(RequestId),
}

fn id_payload(id: &Identity) -> IdPayload {
    IdPayload {
        id_type: id.id_type(),
        reserved: [0; 3],
        data: id.data(),
    }
}

/// Whether a configured identity is a pattern (`*` wildcards) rather than one identity.
fn is_pattern(id: &Identity) -> bool {
    match id {
        Identity::Fqdn(s) | Identity::Rfc822(s) => s.contains('*'),
        Identity::Dn(d) => d
            .rdns()
            .map(|r| r.iter().flatten().any(|a| a.value == "*"))
            .unwrap_or(true),
        _ => false,
    }
}

/// Splits an AUTH payload into a signature scheme and a signature (ECDSA as DER).
pub(crate) fn parse_signature_auth(auth: &Auth) -> Result<(SignatureScheme, Vec<u8>)> {
    match auth.method {
        AuthMethod::DIGITAL_SIGNATURE => {
            let (&len, rest) = auth
                .data
                .split_first()
                .ok_or(Error::Protocol("empty AUTH".into()))?;
            let (alg, sig) = rest
                .split_at_checked(usize::from(len))
                .ok_or(Error::Protocol("AUTH AlgorithmIdentifier length".into()))?;
            Ok((
                SignatureScheme::from_algorithm_identifier(alg)?,
                sig.to_vec(),
            ))
        }
        AuthMethod::RSA_SIG => Ok((SignatureScheme::RsaPkcs1Sha1, auth.data.clone())),
        AuthMethod::ECDSA_SHA256_P256 => Ok((
            SignatureScheme::EcdsaSha256,
            sig::ecdsa_fixed_to_der(&auth.data)?,
        )),
        AuthMethod::ECDSA_SHA384_P384 => Ok((
            SignatureScheme::EcdsaSha384,
            sig::ecdsa_fixed_to_der(&auth.data)?,
        )),
        m => Err(Error::UnsupportedSignature(format!("auth method {m}"))),
    }
}

/// Builds an AUTH payload from a signature.
fn signature_auth(method: AuthMethod, scheme: SignatureScheme, sig_bytes: &[u8]) -> Result<Auth> {
    let data = match method {
        AuthMethod::DIGITAL_SIGNATURE => {
            let alg = scheme.algorithm_identifier();
            let mut d = vec![alg.len() as u8];
            d.extend_from_slice(&alg);
            d.extend_from_slice(sig_bytes);
            d
        }
        AuthMethod::ECDSA_SHA256_P256 => sig::ecdsa_der_to_fixed(sig_bytes, 32)?,
        AuthMethod::ECDSA_SHA384_P384 => sig::ecdsa_der_to_fixed(sig_bytes, 48)?,
        _ => sig_bytes.to_vec(),
    };
    Ok(Auth { method, data })
}

impl IkeSa {
    /// Picks the auth method and scheme for our signature: RFC 7427 when the peer announced
    /// SIGNATURE_HASH_ALGORITHMS, else the classic method for the key type.
    fn choose_signature(
        &self,
        key: KeyAlgorithm,
        prefs: &[SignatureScheme],
    ) -> Result<(AuthMethod, SignatureScheme)> {
        let defaults: Vec<SignatureScheme> = match key {
            KeyAlgorithm::Rsa { .. } => vec![
                SignatureScheme::RsaPkcs1Sha256,
                SignatureScheme::RsaPkcs1Sha384,
                SignatureScheme::RsaPkcs1Sha512,
                SignatureScheme::RsaPssSha256,
            ],
            KeyAlgorithm::EcdsaP256 => vec![SignatureScheme::EcdsaSha256],
            KeyAlgorithm::EcdsaP384 => vec![SignatureScheme::EcdsaSha384],
            KeyAlgorithm::Ed25519 => vec![SignatureScheme::Ed25519],
        };
        let candidates = if prefs.is_empty() {
            &defaults[..]
        } else {
            prefs
        };
        if !self.peer_hashes.is_empty()
            && let Some(s) = candidates
                .iter()
                .find(|s| s.fits_key(key) && self.peer_hashes.contains(&s.hash()))
        {
            return Ok((AuthMethod::DIGITAL_SIGNATURE, *s));
        }
        match key {
            KeyAlgorithm::Rsa { .. } => Ok((AuthMethod::RSA_SIG, SignatureScheme::RsaPkcs1Sha1)),
            KeyAlgorithm::EcdsaP256 => {
                Ok((AuthMethod::ECDSA_SHA256_P256, SignatureScheme::EcdsaSha256))
            }
            KeyAlgorithm::EcdsaP384 => {
                Ok((AuthMethod::ECDSA_SHA384_P384, SignatureScheme::EcdsaSha384))
            }
            KeyAlgorithm::Ed25519 => Err(Error::UnsupportedSignature(
                "Ed25519 needs the peer's SIGNATURE_HASH_ALGORITHMS".into(),
            )),
        }
    }

    /// Checks the peer's AUTH payload over `octets`.
    fn verify_peer(
        &self,
        sh: &mut Shared,
        peer: &PeerConfig,
        peer_id: &Identity,
        auth: &Auth,
        certs: Vec<Vec<u8>>,
        octets: Vec<u8>,
    ) -> Verify {
        match &peer.remote_auth {
            RemoteAuth::Psk(psk) => {
                if auth.method != AuthMethod::PSK {
                    return Verify::Fail(format!("expected PSK, peer used {}", auth.method));
                }
                if ct_eq(&keys::psk_auth(self.suite.prf, psk, &octets), &auth.data) {
                    Verify::Ok
                } else {
                    Verify::Fail("PSK AUTH mismatch".into())
                }
            }
            RemoteAuth::Certificate(verifier) => {
                let (scheme, signature) = match parse_signature_auth(auth) {
                    Ok(x) => x,
                    Err(e) => return Verify::Fail(e.to_string()),
                };
                let Some((ee, rest)) = certs.split_first() else {
                    return Verify::Fail("no certificate".into());
                };
                let inter: Vec<&[u8]> = rest.iter().map(Vec::as_slice).collect();
                let chain = match verifier.verify_for_identity(ee, &inter, peer_id, sh.unix_time) {
                    Ok(c) => c,
                    Err(e) => return Verify::Fail(e.to_string()),
                };
                match chain
                    .end_entity
                    .public_key()
                    .verify(scheme, &octets, &signature)
                {
                    Ok(()) => Verify::Ok,
                    Err(e) => Verify::Fail(e.to_string()),
                }
            }
            RemoteAuth::CallerVerifies => {
                let (scheme, signature) = match parse_signature_auth(auth) {
                    Ok(x) => x,
                    Err(e) => return Verify::Fail(e.to_string()),
                };
                let id = sh.new_request(self.id);
                sh.event(Event::VerifyRequest {
                    id,
                    ike_sa: self.id,
                    peer_id: peer_id.clone(),
                    certs,
                    scheme,
                    octets,
                    signature,
                });
                Verify::Pending(id)
            }
        }
    }

    /// Initiator: after IKE_SA_INIT, build IKE_AUTH (possibly after a signature).
    pub(crate) fn start_auth(&mut self, sh: &mut Shared, now: Instant) -> Result<()> {
        // A reauthentication re-creates the old SA's first child here (RFC 7296 §2.8.3).
        let first = if self.reauth_of.is_some() {
            if self.reauth_children.is_empty() {
                None
            } else {
                self.peer.children.get(self.reauth_children.remove(0))
            }
        } else {
            self.peer.children.first()
        };
        let child = match first {
            Some(cfg) => Some(Box::new(ChildReq {
                id: sh.new_child_id(),
                config: cfg.clone(),
                spi_in: sh.new_child_spi()?,
                ke: None,
                nonce: Vec::new(),
                local_ts: cfg.local_ts.clone(),
                remote_ts: cfg.remote_ts.clone(),
                rekey_of: None,
            })),
            None => None,
        };
        let idp = id_payload(&self.peer.local_id);
        let keys = self.keys.as_ref().ok_or(Error::InvalidState("no keys"))?;
        let octets = keys::signed_octets(
            self.suite.prf,
            &self.init_req,
            &self.nr,
            &keys.sk_pi,
            &idp.body(),
        );
        match self.peer.local_auth.clone() {
            LocalAuth::Psk(psk) => {
                let auth = Auth {
                    method: AuthMethod::PSK,
                    data: keys::psk_auth(self.suite.prf, &psk, &octets),
                };
                self.send_auth_request(sh, now, idp, auth, child)
            }
            LocalAuth::Signature { key, schemes, .. } => {
                let (method, scheme) = self.choose_signature(key, &schemes)?;
                let request = sh.new_request(self.id);
                sh.event(Event::SignRequest {
                    id: request,
                    ike_sa: self.id,
                    peer: self.peer.name.clone(),
                    scheme,
                    octets,
                });
                self.state = State::AuthSigning { request, child };
                self.pending_scheme = Some((method, scheme));
                Ok(())
            }
        }
    }

    fn cert_payloads(&self) -> Vec<Payload> {
        let mut v = Vec::new();
        if let LocalAuth::Signature { certs, .. } = &self.peer.local_auth {
            for c in certs {
                v.push(Payload::Cert(Cert {
                    encoding: CertEncoding::X509_SIGNATURE,
                    data: c.clone(),
                }));
            }
        }
        v
    }

    fn send_auth_request(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        idp: IdPayload,
        auth: Auth,
        child: Option<Box<ChildReq>>,
    ) -> Result<()> {
        let mut p = vec![Payload::IdI(idp)];
        p.extend(self.cert_payloads());
        if let RemoteAuth::Certificate(v) = &self.peer.remote_auth {
            p.push(Payload::CertReq(Cert {
                encoding: CertEncoding::X509_SIGNATURE,
                data: v.certreq_hashes().concat(),
            }));
        }
        p.push(Payload::Auth(auth));
        // IDr tells a responder with several identities which one we expect (RFC 7296
        // §3.5); only for an exact identity, never a pattern.
        if let Some(r) = &self.peer.remote_id
            && !is_pattern(r)
        {
            p.push(Payload::IdR(id_payload(r)));
        }
        // Never on a reauthentication: the peer must keep the old SA until we delete it.
        if self.peer.initial_contact && self.reauth_of.is_none() {
            p.push(Payload::Notify(Notify::new(
                NotifyType::INITIAL_CONTACT,
                Vec::new(),
            )));
        }
        if let Some(c) = &child {
            p.extend(self.child_request_payloads(c, false));
        }
        self.send_request(sh, now, ExchangeType::IKE_AUTH, &p, Req::Auth(child))?;
        self.state = State::AuthSent;
        Ok(())
    }

    /// The caller's answer to a SignRequest.
    pub(crate) fn on_signature(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        id: RequestId,
        result: Result<Vec<u8>>,
    ) {
        let Some((method, scheme)) = self.pending_scheme.take() else {
            return;
        };
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::AuthSigning { request, child, .. } if request == id => {
                self.state = State::AuthSigning {
                    request,
                    child: None,
                };
                let r = result
                    .and_then(|s| signature_auth(method, scheme, &s))
                    .and_then(|auth| {
                        let idp = id_payload(&self.peer.local_id);
                        self.send_auth_request(sh, now, idp, auth, child)
                    });
                if let Err(e) = r {
                    tracing::info!(sa = self.id.0, error = %e, "signing failed");
                    self.fail(sh, CloseReason::AuthFailed(format!("local signature: {e}")));
                }
            }
            State::RespSigning {
                request,
                msg_id,
                payloads,
            } if request == id => {
                self.state = State::InitReplied { since: now };
                match result.and_then(|s| signature_auth(method, scheme, &s)) {
                    Ok(auth) => {
                        let idp = id_payload(&self.peer.local_id);
                        self.finish_auth_responder(sh, now, msg_id, &payloads, idp, auth);
                    }
                    Err(e) => {
                        tracing::info!(sa = self.id.0, error = %e, "signing failed");
                        let _ = self.respond_error(
                            sh,
                            ExchangeType::IKE_AUTH,
                            msg_id,
                            NotifyType::AUTHENTICATION_FAILED,
                            Vec::new(),
                        );
                        self.fail(sh, CloseReason::AuthFailed(format!("local signature: {e}")));
                    }
                }
            }
            other => {
                self.state = other;
                self.pending_scheme = Some((method, scheme));
            }
        }
    }

    /// The caller's answer to a VerifyRequest.
    pub(crate) fn on_verification(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        id: RequestId,
        result: Result<()>,
    ) {
        let state = std::mem::replace(&mut self.state, State::Closed);
        match state {
            State::AuthVerifyingResponse {
                request,
                payloads,
                child,
            } if request == id => {
                self.state = State::AuthSent;
                match result {
                    Ok(()) => self.finish_auth_initiator(sh, now, &payloads, child),
                    Err(e) => self.fail(sh, CloseReason::AuthFailed(format!("peer: {e}"))),
                }
            }
            State::AuthVerifyingRequest {
                request,
                msg_id,
                payloads,
                peer,
            } if request == id => {
                self.state = State::InitReplied { since: now };
                match result {
                    Ok(()) => self.respond_auth(sh, now, msg_id, payloads, peer),
                    Err(e) => {
                        let _ = self.respond_error(
                            sh,
                            ExchangeType::IKE_AUTH,
                            msg_id,
                            NotifyType::AUTHENTICATION_FAILED,
                            Vec::new(),
                        );
                        self.fail(sh, CloseReason::AuthFailed(format!("peer: {e}")));
                    }
                }
            }
            other => self.state = other,
        }
        self.drive(sh, now);
    }

    /// Initiator: the IKE_AUTH response.
    pub(crate) fn handle_auth_response(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        payloads: Vec<Payload>,
        child: Option<Box<ChildReq>>,
    ) -> Result<()> {
        let f = Find(&payloads);
        if f.has(NotifyType::AUTHENTICATION_FAILED) {
            self.fail(
                sh,
                CloseReason::AuthFailed("peer rejected our authentication".into()),
            );
            return Ok(());
        }
        let (Some(idr), Some(auth)) = (f.id_r(), f.auth()) else {
            let e = f
                .error()
                .map_or("IKE_AUTH response lacks IDr or AUTH".to_string(), |n| {
                    format!("peer answered {}", n.ty)
                });
            self.fail(sh, CloseReason::AuthFailed(e.clone()));
            return Err(Error::AuthenticationFailed(e));
        };
        let peer_id = match Identity::from_payload(idr.id_type, &idr.data) {
            Ok(i) => i,
            Err(e) => {
                self.fail(sh, CloseReason::AuthFailed(e.to_string()));
                return Err(e);
            }
        };
        if let Some(p) = &self.peer.remote_id
            && !peer_id.matches(p)
        {
            let e = format!("peer identity {peer_id} does not match {p}");
            self.fail(sh, CloseReason::AuthFailed(e.clone()));
            return Err(Error::AuthenticationFailed(e));
        }
        let keys = self.keys.as_ref().ok_or(Error::InvalidState("no keys"))?;
        let octets = keys::signed_octets(
            self.suite.prf,
            &self.init_resp,
            &self.ni,
            &keys.sk_pr,
            &idr.body(),
        );
        let peer = self.peer.clone();
        match self.verify_peer(sh, &peer, &peer_id, auth, f.certs(), octets) {
            Verify::Ok => {
                self.peer_id = Some(peer_id);
                self.finish_auth_initiator(sh, now, &payloads, child);
            }
            Verify::Fail(e) => {
                tracing::info!(sa = self.id.0, reason = %e, "responder authentication failed");
                self.fail(sh, CloseReason::AuthFailed(e));
            }
            Verify::Pending(request) => {
                self.peer_id = Some(peer_id);
                self.state = State::AuthVerifyingResponse {
                    request,
                    payloads,
                    child,
                };
            }
        }
        Ok(())
    }

    fn finish_auth_initiator(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        payloads: &[Payload],
        child: Option<Box<ChildReq>>,
    ) {
        let Some(peer_id) = self.peer_id.clone() else {
            return;
        };
        self.established(sh, now);
        sh.stats.p1_local_act_success += 1;
        if self.reauth_of.is_some() {
            for i in std::mem::take(&mut self.reauth_children) {
                self.queue.push_back(crate::ikev2::sa::Task::CreateChild(i));
            }
        }
        sh.event(Event::IkeSaUp {
            ike_sa: self.id,
            peer: self.peer.name.clone(),
            initiator: true,
            peer_id,
            spis: (self.spi_i, self.spi_r),
            local: self.local,
            remote: self.remote,
            local_nat: self.local_nat,
            remote_nat: self.remote_nat,
        });
        if let Some(c) = child {
            let (ni, nr) = (self.ni.clone(), self.nr.clone());
            self.complete_child_initiator(sh, payloads, *c, &ni, &nr);
        }
    }

    /// Responder: the IKE_AUTH request.
    pub(crate) fn handle_auth_request(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        msg_id: u32,
        payloads: Vec<Payload>,
    ) -> Result<()> {
        if !matches!(self.state, State::InitReplied { .. }) {
            return self.respond_error(
                sh,
                ExchangeType::IKE_AUTH,
                msg_id,
                NotifyType::INVALID_SYNTAX,
                Vec::new(),
            );
        }
        let f = Find(&payloads);
        let (Some(idi), Some(auth)) = (f.id_i(), f.auth()) else {
            self.respond_error(
                sh,
                ExchangeType::IKE_AUTH,
                msg_id,
                NotifyType::INVALID_SYNTAX,
                Vec::new(),
            )?;
            self.fail(
                sh,
                CloseReason::Protocol("IKE_AUTH without IDi or AUTH".into()),
            );
            return Ok(());
        };
        let reject = |sa: &mut Self, sh: &mut Shared, why: String| -> Result<()> {
            tracing::info!(sa = sa.id.0, reason = %why, "initiator authentication failed");
            sa.respond_error(
                sh,
                ExchangeType::IKE_AUTH,
                msg_id,
                NotifyType::AUTHENTICATION_FAILED,
                Vec::new(),
            )?;
            sa.fail(sh, CloseReason::AuthFailed(why));
            Ok(())
        };
        let peer_id = match Identity::from_payload(idi.id_type, &idi.data) {
            Ok(i) => i,
            Err(e) => return reject(self, sh, e.to_string()),
        };
        // Policy by identity: the first configuration for this address whose remote ID
        // matches, whose local ID is the IDr the initiator asked for (if any), and which
        // accepts the negotiated IKE suite.
        let wanted = f
            .id_r()
            .and_then(|i| Identity::from_payload(i.id_type, &i.data).ok());
        let remote_ip = self.remote.ip();
        let candidate = sh
            .peers
            .iter()
            .find(|p| {
                (p.remote_addrs.is_empty() || p.remote_addrs.contains(&remote_ip))
                    && p.remote_id.as_ref().is_none_or(|r| peer_id.matches(r))
                    && wanted.as_ref().is_none_or(|w| p.local_id.matches(w))
                    && p.ike_proposals.contains(&self.suite)
            })
            .cloned();
        let Some(peer) = candidate else {
            return reject(self, sh, format!("no policy for identity {peer_id}"));
        };
        let keys = self.keys.as_ref().ok_or(Error::InvalidState("no keys"))?;
        let octets = keys::signed_octets(
            self.suite.prf,
            &self.init_req,
            &self.nr,
            &keys.sk_pi,
            &idi.body(),
        );
        self.peer_id = Some(peer_id.clone());
        match self.verify_peer(sh, &peer, &peer_id, auth, f.certs(), octets) {
            Verify::Ok => {
                self.respond_auth(sh, now, msg_id, payloads, peer);
                Ok(())
            }
            Verify::Fail(e) => {
                self.peer_id = None;
                reject(self, sh, e)
            }
            Verify::Pending(request) => {
                self.state = State::AuthVerifyingRequest {
                    request,
                    msg_id,
                    payloads,
                    peer,
                };
                Ok(())
            }
        }
    }

    /// Responder: the initiator is authenticated; authenticate ourselves.
    fn respond_auth(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        msg_id: u32,
        payloads: Vec<Payload>,
        peer: Arc<PeerConfig>,
    ) {
        self.peer = peer;
        let idp = id_payload(&self.peer.local_id);
        let Some(keys) = self.keys.as_ref() else {
            return;
        };
        let octets = keys::signed_octets(
            self.suite.prf,
            &self.init_resp,
            &self.ni,
            &keys.sk_pr,
            &idp.body(),
        );
        match self.peer.local_auth.clone() {
            LocalAuth::Psk(psk) => {
                let auth = Auth {
                    method: AuthMethod::PSK,
                    data: keys::psk_auth(self.suite.prf, &psk, &octets),
                };
                self.finish_auth_responder(sh, now, msg_id, &payloads, idp, auth);
            }
            LocalAuth::Signature { key, schemes, .. } => match self.choose_signature(key, &schemes)
            {
                Ok((method, scheme)) => {
                    let request = sh.new_request(self.id);
                    sh.event(Event::SignRequest {
                        id: request,
                        ike_sa: self.id,
                        peer: self.peer.name.clone(),
                        scheme,
                        octets,
                    });
                    self.pending_scheme = Some((method, scheme));
                    self.state = State::RespSigning {
                        request,
                        msg_id,
                        payloads,
                    };
                }
                Err(e) => {
                    let _ = self.respond_error(
                        sh,
                        ExchangeType::IKE_AUTH,
                        msg_id,
                        NotifyType::AUTHENTICATION_FAILED,
                        Vec::new(),
                    );
                    self.fail(sh, CloseReason::AuthFailed(e.to_string()));
                }
            },
        }
    }

    fn finish_auth_responder(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        msg_id: u32,
        request: &[Payload],
        idp: IdPayload,
        auth: Auth,
    ) {
        let mut resp = vec![Payload::IdR(idp)];
        resp.extend(self.cert_payloads());
        resp.push(Payload::Auth(auth));
        let f = Find(request);
        let mut install = None;
        if f.sa().is_some() {
            let (ni, nr) = (self.ni.clone(), self.nr.clone());
            match self.accept_child_request(sh, request, &ni, &nr, None) {
                Ok((child, keys, payloads)) => {
                    resp.extend(payloads);
                    install = Some((child, keys));
                }
                Err(n) => {
                    sh.stats.p2_remote_act_failure += 1;
                    resp.push(Payload::Notify(Notify::new(n, Vec::new())));
                }
            }
        }
        if let Err(e) = self.send_response(sh, ExchangeType::IKE_AUTH, msg_id, &resp) {
            tracing::info!(sa = self.id.0, error = %e, "could not answer IKE_AUTH");
            self.fail(sh, CloseReason::Protocol(e.to_string()));
            return;
        }
        let Some(peer_id) = self.peer_id.clone() else {
            return;
        };
        self.established(sh, now);
        sh.stats.p1_remote_act_success += 1;
        if f.has(NotifyType::INITIAL_CONTACT) {
            sh.initial_contacts.push(self.id);
        }
        sh.event(Event::IkeSaUp {
            ike_sa: self.id,
            peer: self.peer.name.clone(),
            initiator: false,
            peer_id,
            spis: (self.spi_i, self.spi_r),
            local: self.local,
            remote: self.remote,
            local_nat: self.local_nat,
            remote_nat: self.remote_nat,
        });
        if let Some((child, keys)) = install {
            sh.stats.p2_remote_act_success += 1;
            self.install_child(sh, child, keys, false, None);
        }
    }
}
