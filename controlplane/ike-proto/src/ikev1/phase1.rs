//! Phase 1: main mode and aggressive mode (RFC 2409 §5) with pre-shared keys and RSA
//! signatures, NAT-T detection and port floating (RFC 3947), on both sides.
//!
//! Main mode:                                  Aggressive mode:
//! ```text
//! I: HDR, SA, VID                             I: HDR, SA, KE, Ni, IDii, VID
//! R: HDR, SA, VID                             R: HDR, SA, KE, Nr, IDir, [CERT,] HASH_R|SIG_R,
//! I: HDR, KE, Ni, [CR,] NAT-D, NAT-D                NAT-D, NAT-D, VID
//! R: HDR, KE, Nr, [CR,] NAT-D, NAT-D          I: HDR*, [CERT,] HASH_I|SIG_I, NAT-D, NAT-D
//! I: HDR*, IDii, [CERT,] HASH_I|SIG_I, [N(INITIAL-CONTACT)]
//! R: HDR*, IDir, [CERT,] HASH_R|SIG_R
//! ```
//! Signatures are made by the caller ([`Event::SignRequest`] with
//! [`SignatureScheme::RsaPkcs1Raw`] over HASH_I or HASH_R), so a key held by the NSS
//! server signs IKEv1 exactly as it signs IKEv2.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::config::{ExchangeMode, V1Peer};
use super::crypto::{self, HashAlg};
use super::ids::identity_payload;
use super::proposal::{self, P1Choice};
use super::sa::*;
use super::wire::*;
use crate::crypto::dh::{self, KeyExchange};
use crate::crypto::secret::ct_eq;
use crate::crypto::sig::{KeyAlgorithm, SignatureScheme};
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::ikev2::config::{LocalAuth, RemoteAuth};
use crate::ikev2::event::{CloseReason, Event, IkeSaId};
use crate::wire::CertEncoding;

/// Nonce length we send.
pub(crate) const NONCE_LEN: usize = 32;

/// Why a message was not accepted.
#[derive(Debug)]
pub(crate) enum Fault {
    /// Malformed, unauthentic or unexpected: drop it, keep the SA.
    Drop(String),
    /// The negotiation cannot go on: tell the peer (if a notify is given) and close.
    Fatal(CloseReason, Option<NotifyType>),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Drop(e.to_string())
    }
}

impl From<DecodeError> for Fault {
    fn from(e: DecodeError) -> Self {
        Fault::Drop(e.to_string())
    }
}

pub(crate) type Step = std::result::Result<(), Fault>;

fn auth_failed(why: impl Into<String>) -> Fault {
    Fault::Fatal(
        CloseReason::AuthFailed(why.into()),
        Some(NotifyType::AUTHENTICATION_FAILED),
    )
}

fn no_proposal(why: impl Into<String>) -> Fault {
    Fault::Fatal(
        CloseReason::NegotiationFailed(why.into()),
        Some(NotifyType::NO_PROPOSAL_CHOSEN),
    )
}

/// The phase 1 authentication method a policy uses (IKEv1 has one method for both
/// directions; signatures need an RSA key).
pub(crate) fn auth_method(peer: &V1Peer) -> Result<P1Auth> {
    match (&peer.peer.local_auth, &peer.peer.remote_auth) {
        (LocalAuth::Psk(_), RemoteAuth::Psk(_)) => Ok(P1Auth::PRE_SHARED_KEY),
        (
            LocalAuth::Signature { key, .. },
            RemoteAuth::Certificate(_) | RemoteAuth::CallerVerifies,
        ) => match key {
            KeyAlgorithm::Rsa { .. } => Ok(P1Auth::RSA_SIGNATURES),
            other => Err(Error::Config(format!(
                "policy {}: IKEv1 signature authentication needs an RSA key, not {other:?}",
                peer.peer.name
            ))),
        },
        _ => Err(Error::Config(format!(
            "policy {}: IKEv1 authenticates both ends the same way (both PSK or both signatures)",
            peer.peer.name
        ))),
    }
}

fn vendor_ids(sh: &Shared) -> Vec<Payload> {
    let mut v = vec![
        Payload::VendorId(vendor::NAT_T_RFC3947.to_vec()),
        Payload::VendorId(vendor::DPD.to_vec()),
    ];
    if let Some(x) = &sh.config.vendor_id {
        v.push(Payload::VendorId(x.clone()));
    }
    v
}

/// The raw body of payload `i` of a received chain (what SAi_b, IDii_b, Ni_b mean).
fn raw_body<'a>(chain: &'a [u8], l: &Located) -> Result<&'a [u8]> {
    chain
        .get(l.start + 4..l.end)
        .ok_or_else(|| Error::Protocol("payload bounds".into()))
}

fn raw_of<'a>(chain: &'a [u8], ls: &[Located], ty: PayloadType) -> Result<&'a [u8]> {
    let l = ls
        .iter()
        .find(|l| l.payload.payload_type() == ty)
        .ok_or_else(|| Error::Protocol(format!("no {ty} payload")))?;
    raw_body(chain, l)
}

fn list(ls: &[Located]) -> Vec<Payload> {
    ls.iter().map(|l| l.payload.clone()).collect()
}

/// The outcome of checking the peer's proof.
enum Verify {
    Ok,
    Pending,
    Fail(String),
}

impl IsakmpSa {
    /// Starts phase 1 as initiator with the policy's configured exchange mode.
    pub(crate) fn initiate(
        sh: &mut Shared,
        now: Instant,
        peer: Arc<V1Peer>,
        local: SocketAddr,
        remote: SocketAddr,
        rekey_of: Option<IkeSaId>,
    ) -> Result<Self> {
        let auth = auth_method(&peer)?;
        let mode = peer.v1.initiate;
        if mode == ExchangeMode::Aggressive
            && auth == P1Auth::PRE_SHARED_KEY
            && !peer.v1.aggressive_psk
        {
            return Err(Error::Config(format!(
                "policy {}: aggressive mode with a pre-shared key is disabled (the responder's \
                 hash would be exposed to offline dictionary attacks); use main mode or enable it",
                peer.peer.name
            )));
        }
        let mut props = peer.p1_proposals();
        if mode == ExchangeMode::Aggressive
            && let Some(first) = props.first().map(|p| p.dh)
        {
            // One KE in the first message: every offer must use its group.
            props.retain(|p| p.dh == first);
        }
        if props.is_empty() {
            return Err(Error::Config(format!(
                "policy {}: no usable IKEv1 phase 1 proposal",
                peer.peer.name
            )));
        }
        let cky_i = sh.new_cookie()?;
        let state = match mode {
            ExchangeMode::Main => P1State::MmSentSa,
            ExchangeMode::Aggressive => P1State::AmSent,
        };
        let mut sa = Self::new(
            sh,
            now,
            peer.clone(),
            true,
            mode,
            cky_i,
            0,
            local,
            remote,
            state,
        );
        sa.rekey_of = rekey_of;
        let life = peer.peer.ike_lifetime.as_secs().max(1);
        let offer = proposal::p1_offer(&props, auth, life);
        let offer = Payload::Sa(offer);
        sa.sai_b = offer.body();
        sa.offered = props.clone();
        let mut payloads = vec![offer];
        if mode == ExchangeMode::Aggressive {
            let kex = KeyExchange::generate(
                props.first().map_or(crate::wire::DhGroup::NONE, |p| p.dh),
                &sh.rng,
            )?;
            sa.g_xi = kex.public_value().to_vec();
            sa.dh = Some(kex);
            sa.ni = sh.random(NONCE_LEN)?;
            payloads.push(Payload::Ke(sa.g_xi.clone()));
            payloads.push(Payload::Nonce(sa.ni.clone()));
            payloads.push(Payload::Id(identity_payload(&peer.peer.local_id)));
        }
        payloads.extend(vendor_ids(sh));
        let exchange = match mode {
            ExchangeMode::Main => ExchangeType::IDENTITY_PROTECTION,
            ExchangeMode::Aggressive => ExchangeType::AGGRESSIVE,
        };
        let msg = sa.plain(exchange, payloads);
        tracing::debug!(sa = sa.id.0, peer = %remote, mode = mode.name(), "IKEv1 phase 1 initiated");
        sa.send_flight(sh, Flight::request(msg, now, sh.config.init_wait));
        Ok(sa)
    }

    /// Starts phase 1 as responder to a first message (MM1 or AM1) already decoded.
    /// Returns `None` (after answering NO-PROPOSAL-CHOSEN where useful) when no policy fits.
    pub(crate) fn respond(
        sh: &mut Shared,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        header: &Header,
    ) -> Option<Self> {
        let body = data.get(HEADER_LEN..).unwrap_or(&[]);
        let (located, _) =
            match decode_payloads(header.next_payload, body, HEADER_LEN, Trailing::Strict) {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(peer = %remote, error = %e, "malformed IKEv1 first message");
                    sh.stats.invalid_packets += 1;
                    return None;
                }
            };
        let payloads = list(&located);
        let f = Find(&payloads);
        let mode = match header.exchange {
            ExchangeType::IDENTITY_PROTECTION => ExchangeMode::Main,
            ExchangeType::AGGRESSIVE => ExchangeMode::Aggressive,
            _ => return None,
        };
        let Some(offer) = f.sa() else {
            sh.stats.invalid_packets += 1;
            return None;
        };
        let peer_idii = if mode == ExchangeMode::Aggressive {
            match f
                .ids()
                .first()
                .map(|i| Identity::from_payload(i.id_type, &i.data))
            {
                Some(Ok(id)) => Some(id),
                _ => {
                    sh.stats.invalid_packets += 1;
                    return None;
                }
            }
        } else {
            None
        };
        // Candidate policies: the mode is allowed, the address fits (exact addresses
        // first), and in aggressive mode the identity fits too.
        let mut candidates: Vec<Arc<V1Peer>> = sh
            .peers
            .iter()
            .filter(|p| p.v1.respond.allows(mode))
            .filter(|p| {
                p.peer.remote_addrs.is_empty() || p.peer.remote_addrs.contains(&remote.ip())
            })
            .filter(|p| match (&peer_idii, &p.peer.remote_id) {
                (Some(id), Some(want)) => id.matches(want),
                _ => true,
            })
            .cloned()
            .collect();
        candidates.sort_by_key(|p| p.peer.remote_addrs.is_empty());
        let mut chosen = None;
        for p in candidates {
            let Ok(auth) = auth_method(&p) else { continue };
            if mode == ExchangeMode::Aggressive
                && auth == P1Auth::PRE_SHARED_KEY
                && !p.v1.aggressive_psk
            {
                tracing::info!(peer = %remote, policy = %p.peer.name, "aggressive mode with a pre-shared key refused (not enabled for this policy)");
                continue;
            }
            if let Some((c, reply)) = proposal::select_p1(offer, &p.p1_proposals(), auth) {
                chosen = Some((p, c, reply));
                break;
            }
        }
        let Some((peer, choice, reply)) = chosen else {
            tracing::info!(peer = %remote, mode = mode.name(), "IKEv1 phase 1 from a peer no policy accepts");
            sh.stats.p1_remote_act_failure += 1;
            let n = Payload::Notify(Notify::new(
                ProtocolId::ISAKMP,
                Vec::new(),
                NotifyType::NO_PROPOSAL_CHOSEN,
                Vec::new(),
            ));
            let msg = Message {
                header: Header {
                    cookie_i: header.cookie_i,
                    cookie_r: 0,
                    next_payload: PayloadType::NONE,
                    version: VERSION_1_0,
                    exchange: ExchangeType::INFORMATIONAL,
                    flags: Flags(0),
                    message_id: sh.random_u32().unwrap_or(1).max(1),
                    length: 0,
                },
                payloads: vec![n],
            };
            sh.send(local, remote, &msg.encode());
            return None;
        };
        let Ok(cky_r) = sh.new_cookie() else {
            return None;
        };
        let state = match mode {
            ExchangeMode::Main => P1State::MmRepliedSa,
            ExchangeMode::Aggressive => P1State::AmSigning,
        };
        let mut sa = Self::new(
            sh,
            now,
            peer,
            false,
            mode,
            header.cookie_i,
            cky_r,
            local,
            remote,
            state,
        );
        sa.sai_b = raw_of(body, &located, PayloadType::SA)
            .unwrap_or_default()
            .to_vec();
        sa.lifetime = sa
            .lifetime
            .min(std::time::Duration::from_secs(choice.life_secs));
        sa.choice = Some(choice);
        sa.peer_natt = f.vid(&vendor::NAT_T_RFC3947);
        sa.peer_dpd = f.vid(&vendor::DPD);
        sa.last_rx = Some(data.to_vec());
        match mode {
            ExchangeMode::Main => {
                let mut payloads = vec![Payload::Sa(reply)];
                payloads.extend(vendor_ids(sh));
                let msg = sa.plain(ExchangeType::IDENTITY_PROTECTION, payloads);
                sa.send_flight(sh, Flight::reply(msg, now));
            }
            ExchangeMode::Aggressive => {
                if let Err(f) = sa.am_respond(sh, now, &located, body, reply, peer_idii) {
                    sa.fault(sh, now, f);
                    return None;
                }
            }
        }
        Some(sa)
    }

    /// A phase 1 message for this SA.
    pub(crate) fn handle_p1(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        h: &Header,
    ) {
        let want = match self.mode {
            ExchangeMode::Main => ExchangeType::IDENTITY_PROTECTION,
            ExchangeMode::Aggressive => ExchangeType::AGGRESSIVE,
        };
        if h.exchange != want || h.message_id != 0 {
            sh.stats.invalid_packets += 1;
            return;
        }
        if self.last_rx.as_deref() == Some(data) {
            // A repeat: answer it again if our message was the answer.
            sh.stats.duplicate_requests += 1;
            if let Some(f) = &self.flight
                && !f.retransmit
            {
                let d = f.data.clone();
                sh.send(self.local, self.remote, &d);
            }
            return;
        }
        let r = match (self.state, h.flags.encrypted()) {
            (P1State::MmSentSa, false) => self.on_mm2(sh, now, data, h),
            (P1State::MmSentKe, false) => self.on_mm4(sh, now, data, h),
            (P1State::MmSentAuth, true) => self.on_mm6(sh, now, data, h),
            (P1State::MmRepliedSa, false) => self.on_mm3(sh, now, data, h),
            (P1State::MmRepliedKe, true) => self.on_mm5(sh, now, local, remote, data, h),
            (P1State::AmSent, false) => self.on_am2(sh, now, data, h),
            (P1State::AmReplied, _) => self.on_am3(sh, now, local, remote, data, h),
            _ => Err(Fault::Drop(format!(
                "unexpected phase 1 message in state {:?}",
                self.state
            ))),
        };
        match r {
            Ok(()) => {
                self.last_rx = Some(data.to_vec());
                self.last_recv = now;
            }
            Err(f) => self.fault(sh, now, f),
        }
    }

    /// Handles a fault: drop the message, or tell the peer and close.
    pub(crate) fn fault(&mut self, sh: &mut Shared, now: Instant, f: Fault) {
        match f {
            Fault::Drop(why) => {
                tracing::debug!(sa = self.id.0, peer = %self.remote, why, "IKEv1 message dropped");
                sh.stats.invalid_packets += 1;
            }
            Fault::Fatal(reason, notify) => {
                tracing::info!(sa = self.id.0, peer = %self.remote, reason = ?reason, "IKEv1 phase 1 failed");
                if let Some(n) = notify {
                    self.notify_error(sh, now, n);
                }
                self.fail(sh, reason);
            }
        }
    }

    /// Tells the peer about a phase 1 error: encrypted once keys exist, else in clear.
    fn notify_error(&mut self, sh: &mut Shared, now: Instant, ty: NotifyType) {
        let mut spi = self.cky_i.to_be_bytes().to_vec();
        spi.extend_from_slice(&self.cky_r.to_be_bytes());
        let n = Payload::Notify(Notify::new(ProtocolId::ISAKMP, spi, ty, Vec::new()));
        if self.keys.is_some() {
            if let Err(e) = self.send_info(sh, now, vec![n]) {
                tracing::debug!(sa = self.id.0, error = %e, "error notify not sent");
            }
        } else {
            let mut m = Message {
                header: self.header(ExchangeType::INFORMATIONAL, 0, false),
                payloads: vec![n],
            };
            m.header.message_id = sh.random_u32().unwrap_or(1).max(1);
            sh.send(self.local, self.remote, &m.encode());
        }
    }

    fn hash_alg(&self) -> Result<HashAlg> {
        Ok(self.suite()?.prop.hash)
    }

    /// NAT-D payloads for our side: the peer's address first, then ours (RFC 3947 §3.2).
    fn natd_payloads(&self) -> Result<Vec<Payload>> {
        if !self.peer_natt {
            return Ok(Vec::new());
        }
        let h = self.hash_alg()?;
        Ok(vec![
            Payload::NatD(crypto::natd_hash(h, self.cky_i, self.cky_r, self.remote)),
            Payload::NatD(crypto::natd_hash(h, self.cky_i, self.cky_r, self.local)),
        ])
    }

    /// Reads the peer's NAT-D payloads.
    fn check_natd(&mut self, sh: &mut Shared, payloads: &[Payload]) -> Result<()> {
        let f = Find(payloads);
        let d = f.natd();
        if !self.peer_natt || d.is_empty() {
            return Ok(());
        }
        let h = self.hash_alg()?;
        let me = crypto::natd_hash(h, self.cky_i, self.cky_r, self.local);
        let them = crypto::natd_hash(h, self.cky_i, self.cky_r, self.remote);
        self.local_nat = d.first().is_none_or(|x| *x != me.as_slice());
        self.remote_nat = !d.iter().skip(1).any(|x| *x == them.as_slice());
        if self.local_nat || self.remote_nat {
            tracing::info!(
                sa = self.id.0,
                local_nat = self.local_nat,
                remote_nat = self.remote_nat,
                "NAT detected"
            );
            sh.event(Event::NatDetected {
                ike_sa: self.id,
                local_nat: self.local_nat,
                remote_nat: self.remote_nat,
            });
        }
        Ok(())
    }

    /// Initiator: moves to the NAT-T port when a NAT was detected (RFC 3947 §4).
    fn float(&mut self, sh: &Shared) {
        let nat_t = sh.config.nat_t_port;
        if (self.local_nat || self.remote_nat) && self.local.port() != nat_t {
            self.local.set_port(nat_t);
            self.remote.set_port(nat_t);
        }
    }

    /// Responder: follows the initiator to the NAT-T port (after authenticating it).
    fn follow(&mut self, sh: &Shared, local: SocketAddr, remote: SocketAddr) {
        if local.port() == sh.config.nat_t_port && (self.local != local || self.remote != remote) {
            tracing::debug!(sa = self.id.0, from = %self.remote, to = %remote, "peer moved (NAT-T)");
            self.local = local;
            self.remote = remote;
        }
    }

    /// Computes g^xy, SKEYID and the rest once both KE payloads and nonces are known.
    fn derive(&mut self, peer_ke: &[u8]) -> Result<()> {
        let c = self.suite()?;
        if dh::public_len(c.prop.dh) != Some(peer_ke.len()) {
            return Err(Error::Protocol(format!(
                "KE of {} bytes for {}",
                peer_ke.len(),
                c.prop.dh
            )));
        }
        let kex = self.dh.take().ok_or(Error::InvalidState("no DH key"))?;
        let g_xy = kex.agree(peer_ke)?;
        let prf = c.prop.hash.prf();
        let skeyid = if c.auth == P1Auth::PRE_SHARED_KEY {
            let RemoteAuth::Psk(psk) = &self.peer.peer.remote_auth else {
                return Err(Error::Config("PSK method without a PSK".into()));
            };
            crypto::skeyid_psk(prf, psk, &self.ni, &self.nr)
        } else {
            crypto::skeyid_sig(prf, &self.ni, &self.nr, &g_xy)
        };
        self.keys = Some(crypto::derive_phase1(
            prf,
            skeyid,
            &g_xy,
            self.cky_i,
            self.cky_r,
            c.prop.encr.key_len(),
        ));
        self.iv = crypto::initial_iv(c.prop.hash, &self.g_xi, &self.g_xr, c.prop.encr.block_len());
        self.g_xy = Some(g_xy);
        Ok(())
    }

    fn my_hash(&self) -> Result<Vec<u8>> {
        let keys = self.phase1_keys()?;
        let prf = self.hash_alg()?.prf();
        let idb = identity_payload(&self.peer.peer.local_id).body();
        Ok(if self.initiator {
            crypto::hash_i(
                prf,
                &keys.skeyid,
                &self.g_xi,
                &self.g_xr,
                self.cky_i,
                self.cky_r,
                &self.sai_b,
                &idb,
            )
        } else {
            crypto::hash_r(
                prf,
                &keys.skeyid,
                &self.g_xi,
                &self.g_xr,
                self.cky_i,
                self.cky_r,
                &self.sai_b,
                &idb,
            )
        })
    }

    fn peer_hash(&self, peer_id_b: &[u8]) -> Result<Vec<u8>> {
        let keys = self.phase1_keys()?;
        let prf = self.hash_alg()?.prf();
        Ok(if self.initiator {
            crypto::hash_r(
                prf,
                &keys.skeyid,
                &self.g_xi,
                &self.g_xr,
                self.cky_i,
                self.cky_r,
                &self.sai_b,
                peer_id_b,
            )
        } else {
            crypto::hash_i(
                prf,
                &keys.skeyid,
                &self.g_xi,
                &self.g_xr,
                self.cky_i,
                self.cky_r,
                &self.sai_b,
                peer_id_b,
            )
        })
    }

    /// Our proof: `[ID,] HASH` for PSK, or a signature request (then `Ok(None)`).
    fn my_proof(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        next: P1State,
    ) -> Result<Option<Vec<Payload>>> {
        let hash = self.my_hash()?;
        if self.suite()?.auth == P1Auth::PRE_SHARED_KEY {
            return Ok(Some(vec![Payload::Hash(hash)]));
        }
        let request = sh.new_request(self.id);
        sh.event(Event::SignRequest {
            id: request,
            ike_sa: self.id,
            peer: self.peer.peer.name.clone(),
            scheme: SignatureScheme::RsaPkcs1Raw,
            octets: hash.clone(),
        });
        self.pending = Some(Pending::Sign { request, hash });
        self.pending_since = Some(now);
        self.state = next;
        Ok(None)
    }

    fn cert_payloads(&self) -> Vec<Payload> {
        match &self.peer.peer.local_auth {
            LocalAuth::Signature { certs, .. } => certs
                .iter()
                .map(|c| {
                    Payload::Cert(CertPayload {
                        encoding: CertEncoding::X509_SIGNATURE,
                        data: c.clone(),
                    })
                })
                .collect(),
            LocalAuth::Psk(_) => Vec::new(),
        }
    }

    fn cert_request(&self) -> Vec<Payload> {
        if self
            .choice
            .is_some_and(|c| c.auth == P1Auth::RSA_SIGNATURES)
        {
            vec![Payload::CertReq(CertPayload {
                encoding: CertEncoding::X509_SIGNATURE,
                data: Vec::new(),
            })]
        } else {
            Vec::new()
        }
    }

    fn initial_contact(&self) -> Vec<Payload> {
        if self.peer.peer.initial_contact && self.rekey_of.is_none() {
            let mut spi = self.cky_i.to_be_bytes().to_vec();
            spi.extend_from_slice(&self.cky_r.to_be_bytes());
            vec![Payload::Notify(Notify::new(
                ProtocolId::ISAKMP,
                spi,
                NotifyType::INITIAL_CONTACT,
                Vec::new(),
            ))]
        } else {
            Vec::new()
        }
    }

    /// Reads the peer's identity and checks it against the policy.
    fn take_peer_id(&mut self, id: &IdPayload) -> std::result::Result<(), Fault> {
        let pid = Identity::from_payload(id.id_type, &id.data)
            .map_err(|e| auth_failed(format!("peer identity: {e}")))?;
        if let Some(want) = &self.peer.peer.remote_id
            && !pid.matches(want)
        {
            return Err(auth_failed(format!(
                "peer identity {pid} is not the expected {want}"
            )));
        }
        self.peer_id = Some(pid);
        Ok(())
    }

    /// Checks the peer's HASH or SIG against `hash`.
    fn verify_peer(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        payloads: &[Payload],
        hash: &[u8],
        next: P1State,
    ) -> Verify {
        let f = Find(payloads);
        let Some(peer_id) = self.peer_id.clone() else {
            return Verify::Fail("no peer identity".into());
        };
        match &self.peer.peer.remote_auth {
            RemoteAuth::Psk(_) => match f.hash() {
                Some(h) if ct_eq(h, hash) => Verify::Ok,
                Some(_) => Verify::Fail("HASH mismatch (different pre-shared keys?)".into()),
                None => Verify::Fail("no HASH payload".into()),
            },
            RemoteAuth::Certificate(verifier) => {
                let Some(sig) = f.sig() else {
                    return Verify::Fail("no SIG payload".into());
                };
                let certs = if f.certs().is_empty() {
                    self.peer_certs.clone()
                } else {
                    f.certs()
                };
                let Some((ee, rest)) = certs.split_first() else {
                    return Verify::Fail("no certificate".into());
                };
                let inter: Vec<&[u8]> = rest.iter().map(Vec::as_slice).collect();
                match verifier
                    .verify_for_identity(ee, &inter, &peer_id, sh.unix_time)
                    .and_then(|chain| {
                        chain.end_entity.public_key().verify(
                            SignatureScheme::RsaPkcs1Raw,
                            hash,
                            sig,
                        )
                    }) {
                    Ok(()) => {
                        self.peer_certs = certs;
                        Verify::Ok
                    }
                    Err(e) => Verify::Fail(e.to_string()),
                }
            }
            RemoteAuth::CallerVerifies => {
                let Some(sig) = f.sig() else {
                    return Verify::Fail("no SIG payload".into());
                };
                let certs = f.certs();
                self.peer_certs = certs.clone();
                let request = sh.new_request(self.id);
                sh.event(Event::VerifyRequest {
                    id: request,
                    ike_sa: self.id,
                    peer_id,
                    certs,
                    scheme: SignatureScheme::RsaPkcs1Raw,
                    octets: hash.to_vec(),
                    signature: sig.to_vec(),
                });
                self.pending = Some(Pending::Verify { request });
                self.pending_since = Some(now);
                self.state = next;
                Verify::Pending
            }
        }
    }

    // ---- main mode, initiator ----

    fn on_mm2(&mut self, sh: &mut Shared, now: Instant, data: &[u8], h: &Header) -> Step {
        let m = Message::decode(data)?;
        if self.cky_r == 0 {
            self.cky_r = h.cookie_r;
        }
        let f = Find(&m.payloads);
        let answer = f.sa().ok_or_else(|| Fault::Drop("MM2 without SA".into()))?;
        let auth = auth_method(&self.peer)?;
        let choice = proposal::accept_p1(answer, &self.offered, auth)
            .ok_or_else(|| no_proposal("the responder chose a transform we did not offer"))?;
        self.accept_choice(choice);
        self.peer_natt = f.vid(&vendor::NAT_T_RFC3947);
        self.peer_dpd = f.vid(&vendor::DPD);
        let kex = KeyExchange::generate(choice.prop.dh, &sh.rng)?;
        self.g_xi = kex.public_value().to_vec();
        self.dh = Some(kex);
        self.ni = sh.random(NONCE_LEN)?;
        let mut payloads = vec![
            Payload::Ke(self.g_xi.clone()),
            Payload::Nonce(self.ni.clone()),
        ];
        payloads.extend(self.cert_request());
        payloads.extend(self.natd_payloads()?);
        let msg = self.plain(ExchangeType::IDENTITY_PROTECTION, payloads);
        self.state = P1State::MmSentKe;
        self.send_flight(sh, Flight::request(msg, now, sh.config.init_wait));
        Ok(())
    }

    fn accept_choice(&mut self, c: P1Choice) {
        self.lifetime = self
            .lifetime
            .min(std::time::Duration::from_secs(c.life_secs));
        self.choice = Some(c);
    }

    fn on_mm4(&mut self, sh: &mut Shared, now: Instant, data: &[u8], _h: &Header) -> Step {
        let m = Message::decode(data)?;
        let f = Find(&m.payloads);
        let ke = f
            .ke()
            .ok_or_else(|| Fault::Drop("MM4 without KE".into()))?
            .to_vec();
        self.nr = f
            .nonce()
            .ok_or_else(|| Fault::Drop("MM4 without nonce".into()))?
            .to_vec();
        self.g_xr = ke.clone();
        self.derive(&ke)?;
        self.check_natd(sh, &m.payloads)?;
        self.float(sh);
        self.flight = None;
        self.mm_send_auth(sh, now)
    }

    /// MM5, or a signature request for it.
    fn mm_send_auth(&mut self, sh: &mut Shared, now: Instant) -> Step {
        let Some(proof) = self.my_proof(sh, now, P1State::MmSigning)? else {
            return Ok(());
        };
        self.send_mm5(sh, now, proof)
    }

    fn send_mm5(&mut self, sh: &mut Shared, now: Instant, proof: Vec<Payload>) -> Step {
        let mut payloads = vec![Payload::Id(identity_payload(&self.peer.peer.local_id))];
        payloads.extend(self.cert_payloads());
        payloads.extend(proof);
        payloads.extend(self.initial_contact());
        let (msg, next) = self.seal(ExchangeType::IDENTITY_PROTECTION, 0, &payloads, &self.iv)?;
        self.iv = next;
        self.state = P1State::MmSentAuth;
        self.send_flight(sh, Flight::request(msg, now, sh.config.init_wait));
        Ok(())
    }

    fn on_mm6(&mut self, sh: &mut Shared, now: Instant, data: &[u8], h: &Header) -> Step {
        // Nothing changes until the message proves genuine: a tampered copy is dropped and
        // the retransmission still decrypts with the same IV.
        let o = self
            .open(data, h, &self.iv)
            .map_err(|e| self.strike(e.to_string()))?;
        let payloads = o.list();
        let f = Find(&payloads);
        let id = f
            .ids()
            .first()
            .map(|i| (*i).clone())
            .ok_or_else(|| self.strike("MM6 without ID"))?;
        let id_b = raw_of(&o.plaintext, &o.payloads, PayloadType::ID)?.to_vec();
        // Fatal answers go out under the IV the peer will use next.
        self.take_peer_id(&id)
            .inspect_err(|_| self.iv = o.last_block.clone())?;
        let hash = self.peer_hash(&id_b)?;
        match self.verify_peer(sh, now, &payloads, &hash, P1State::MmVerifying) {
            Verify::Ok => {
                self.iv = o.last_block.clone();
                self.established(sh, now);
                Ok(())
            }
            Verify::Pending => {
                self.iv = o.last_block.clone();
                self.flight = None;
                Ok(())
            }
            Verify::Fail(why) => {
                let f = self.strike(why);
                if matches!(f, Fault::Fatal(..)) {
                    self.iv = o.last_block.clone();
                }
                Err(f)
            }
        }
    }

    /// A phase 1 authentication message failed to decrypt or verify. Tampering is
    /// dropped (the peer's retransmission is byte-identical and gets through); a second
    /// failure means the keys differ — for PSK, the pre-shared keys do not match.
    fn strike(&mut self, why: impl Into<String>) -> Fault {
        let why = why.into();
        self.auth_strikes += 1;
        if self.auth_strikes >= 2 {
            auth_failed(format!(
                "{why} (twice: do the pre-shared keys or certificates match?)"
            ))
        } else {
            Fault::Drop(why)
        }
    }

    // ---- main mode, responder ----

    fn on_mm3(&mut self, sh: &mut Shared, now: Instant, data: &[u8], _h: &Header) -> Step {
        let m = Message::decode(data)?;
        let f = Find(&m.payloads);
        let ke = f
            .ke()
            .ok_or_else(|| Fault::Drop("MM3 without KE".into()))?
            .to_vec();
        self.ni = f
            .nonce()
            .ok_or_else(|| Fault::Drop("MM3 without nonce".into()))?
            .to_vec();
        let c = self.suite()?;
        let kex = KeyExchange::generate(c.prop.dh, &sh.rng)?;
        self.g_xr = kex.public_value().to_vec();
        self.g_xi = ke.clone();
        self.dh = Some(kex);
        self.nr = sh.random(NONCE_LEN)?;
        self.derive(&ke).map_err(|e| {
            Fault::Fatal(
                CloseReason::Protocol(e.to_string()),
                Some(NotifyType::INVALID_KEY_INFORMATION),
            )
        })?;
        self.check_natd(sh, &m.payloads)?;
        let mut payloads = vec![
            Payload::Ke(self.g_xr.clone()),
            Payload::Nonce(self.nr.clone()),
        ];
        payloads.extend(self.cert_request());
        payloads.extend(self.natd_payloads()?);
        let msg = self.plain(ExchangeType::IDENTITY_PROTECTION, payloads);
        self.state = P1State::MmRepliedKe;
        self.send_flight(sh, Flight::reply(msg, now));
        Ok(())
    }

    fn on_mm5(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        h: &Header,
    ) -> Step {
        let o = self
            .open(data, h, &self.iv)
            .map_err(|e| self.strike(e.to_string()))?;
        let payloads = o.list();
        let f = Find(&payloads);
        let id = f
            .ids()
            .first()
            .map(|i| (*i).clone())
            .ok_or_else(|| self.strike("MM5 without ID"))?;
        let id_b = raw_of(&o.plaintext, &o.payloads, PayloadType::ID)?.to_vec();
        // Fatal answers go out under the IV the peer will use next.
        self.take_peer_id(&id)
            .inspect_err(|_| self.iv = o.last_block.clone())?;
        let hash = self.peer_hash(&id_b)?;
        let v = self.verify_peer(sh, now, &payloads, &hash, P1State::MmFinishing);
        if let Verify::Fail(why) = v {
            let f = self.strike(why);
            if matches!(f, Fault::Fatal(..)) {
                self.iv = o.last_block.clone();
            }
            return Err(f);
        }
        // Genuine: commit.
        self.iv = o.last_block.clone();
        self.follow(sh, local, remote);
        if f.notify(NotifyType::INITIAL_CONTACT).is_some() {
            sh.actions.push(Action::InitialContact(self.id));
        }
        self.flight = None;
        match v {
            Verify::Ok => self.mm_send_final(sh, now),
            _ => Ok(()),
        }
    }

    /// MM6 (after a signature when needed); phase 1 is then up.
    fn mm_send_final(&mut self, sh: &mut Shared, now: Instant) -> Step {
        let Some(proof) = self.my_proof(sh, now, P1State::MmFinishing)? else {
            return Ok(());
        };
        self.send_mm6(sh, now, proof)
    }

    fn send_mm6(&mut self, sh: &mut Shared, now: Instant, proof: Vec<Payload>) -> Step {
        let mut payloads = vec![Payload::Id(identity_payload(&self.peer.peer.local_id))];
        payloads.extend(self.cert_payloads());
        payloads.extend(proof);
        let (msg, next) = self.seal(ExchangeType::IDENTITY_PROTECTION, 0, &payloads, &self.iv)?;
        self.iv = next;
        self.send_flight(sh, Flight::reply(msg, now));
        self.established(sh, now);
        Ok(())
    }

    // ---- aggressive mode ----

    /// Responder: AM2 (after a signature when needed).
    fn am_respond(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        located: &[Located],
        body: &[u8],
        reply: Sa,
        peer_id: Option<Identity>,
    ) -> Step {
        let payloads = list(located);
        let f = Find(&payloads);
        let ke = f
            .ke()
            .ok_or_else(|| Fault::Drop("AM1 without KE".into()))?
            .to_vec();
        self.ni = f
            .nonce()
            .ok_or_else(|| Fault::Drop("AM1 without nonce".into()))?
            .to_vec();
        let id_b = raw_of(body, located, PayloadType::ID)?.to_vec();
        if let Some(id) = f.ids().first() {
            self.take_peer_id(id)?;
        }
        let _ = peer_id;
        let c = self.suite()?;
        let kex = KeyExchange::generate(c.prop.dh, &sh.rng)?;
        self.g_xr = kex.public_value().to_vec();
        self.g_xi = ke.clone();
        self.dh = Some(kex);
        self.nr = sh.random(NONCE_LEN)?;
        self.derive(&ke).map_err(|e| {
            Fault::Fatal(
                CloseReason::Protocol(e.to_string()),
                Some(NotifyType::INVALID_KEY_INFORMATION),
            )
        })?;
        // Kept for AM3: the initiator's ID payload body.
        self.held_id = Some(id_b);
        self.held_reply = Some(reply);
        self.state = P1State::AmSigning;
        let Some(proof) = self.my_proof(sh, now, P1State::AmSigning)? else {
            return Ok(());
        };
        self.send_am2(sh, now, proof)
    }

    fn send_am2(&mut self, sh: &mut Shared, now: Instant, proof: Vec<Payload>) -> Step {
        let reply = self
            .held_reply
            .take()
            .ok_or(Error::InvalidState("no SA reply"))?;
        let mut payloads = vec![
            Payload::Sa(reply),
            Payload::Ke(self.g_xr.clone()),
            Payload::Nonce(self.nr.clone()),
            Payload::Id(identity_payload(&self.peer.peer.local_id)),
        ];
        payloads.extend(self.cert_payloads());
        payloads.extend(proof);
        payloads.extend(self.natd_payloads()?);
        payloads.extend(vendor_ids(sh));
        let msg = self.plain(ExchangeType::AGGRESSIVE, payloads);
        self.state = P1State::AmReplied;
        // AM3 is the initiator's last message: we retransmit AM2 until it comes.
        self.send_flight(sh, Flight::request(msg, now, sh.config.init_wait));
        Ok(())
    }

    fn on_am2(&mut self, sh: &mut Shared, now: Instant, data: &[u8], h: &Header) -> Step {
        let body = data.get(HEADER_LEN..).unwrap_or(&[]);
        let (located, _) = decode_payloads(h.next_payload, body, HEADER_LEN, Trailing::Strict)?;
        let payloads = list(&located);
        let f = Find(&payloads);
        if self.cky_r == 0 {
            self.cky_r = h.cookie_r;
        }
        let answer = f.sa().ok_or_else(|| Fault::Drop("AM2 without SA".into()))?;
        let auth = auth_method(&self.peer)?;
        let choice = proposal::accept_p1(answer, &self.offered, auth)
            .ok_or_else(|| no_proposal("the responder chose a transform we did not offer"))?;
        self.accept_choice(choice);
        self.peer_natt = f.vid(&vendor::NAT_T_RFC3947);
        self.peer_dpd = f.vid(&vendor::DPD);
        let ke = f
            .ke()
            .ok_or_else(|| Fault::Drop("AM2 without KE".into()))?
            .to_vec();
        let nr = f
            .nonce()
            .ok_or_else(|| Fault::Drop("AM2 without nonce".into()))?
            .to_vec();
        let id = f
            .ids()
            .first()
            .map(|i| (*i).clone())
            .ok_or_else(|| Fault::Drop("AM2 without ID".into()))?;
        let id_b = raw_of(body, &located, PayloadType::ID)?.to_vec();
        if self.keys.is_none() {
            self.nr = nr;
            self.g_xr = ke.clone();
            self.derive(&ke)?;
        } else if self.g_xr != ke || self.nr != nr {
            // Our DH key is spent: only a repeat of the AM2 we computed with can be checked.
            return Err(Fault::Drop("a different AM2 after the first".into()));
        }
        self.take_peer_id(&id)?;
        let hash = self.peer_hash(&id_b)?;
        let v = self.verify_peer(sh, now, &payloads, &hash, P1State::AmFinishing);
        if let Verify::Fail(why) = v {
            return Err(self.strike(why));
        }
        self.check_natd(sh, &payloads)?;
        self.flight = None;
        match v {
            Verify::Ok => self.am_send_final(sh, now),
            _ => Ok(()),
        }
    }

    /// Initiator: AM3 (after a signature when needed); phase 1 is then up.
    fn am_send_final(&mut self, sh: &mut Shared, now: Instant) -> Step {
        let Some(proof) = self.my_proof(sh, now, P1State::AmFinishing)? else {
            return Ok(());
        };
        self.send_am3(sh, now, proof)
    }

    fn send_am3(&mut self, sh: &mut Shared, now: Instant, proof: Vec<Payload>) -> Step {
        // AM3 already goes to the NAT-T port when a NAT was seen, and its NAT-D payloads
        // hash the addresses it travels with (what strongSwan sends and expects).
        self.float(sh);
        let mut payloads = self.cert_payloads();
        payloads.extend(proof);
        payloads.extend(self.natd_payloads()?);
        payloads.extend(self.initial_contact());
        let (msg, next) = self.seal(ExchangeType::AGGRESSIVE, 0, &payloads, &self.iv)?;
        self.iv = next;
        self.send_flight(sh, Flight::reply(msg, now));
        self.established(sh, now);
        Ok(())
    }

    fn on_am3(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        h: &Header,
    ) -> Step {
        // RFC 2409 shows AM3 in clear; most peers encrypt it.
        let (payloads, next_iv) = if h.flags.encrypted() {
            let o = self
                .open(data, h, &self.iv)
                .map_err(|e| self.strike(e.to_string()))?;
            (o.list(), o.last_block)
        } else {
            (Message::decode(data)?.payloads, self.iv.clone())
        };
        let id_b = self.held_id.clone().unwrap_or_default();
        let hash = self.peer_hash(&id_b)?;
        let v = self.verify_peer(sh, now, &payloads, &hash, P1State::AmVerifying);
        if let Verify::Fail(why) = v {
            let f = self.strike(why);
            if matches!(f, Fault::Fatal(..)) {
                self.iv = next_iv;
            }
            return Err(f);
        }
        self.iv = next_iv;
        // NAT-D in AM3 hash the addresses AM3 itself travelled with (port 4500 after a
        // move).
        self.follow(sh, local, remote);
        self.check_natd(sh, &payloads)?;
        if Find(&payloads)
            .notify(NotifyType::INITIAL_CONTACT)
            .is_some()
        {
            sh.actions.push(Action::InitialContact(self.id));
        }
        self.flight = None;
        match v {
            Verify::Ok => {
                self.established(sh, now);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    // ---- the caller's answers ----

    /// A signature arrived.
    pub(crate) fn on_signature(&mut self, sh: &mut Shared, now: Instant, result: Result<Vec<u8>>) {
        let Some(Pending::Sign { hash, .. }) = self.pending.take() else {
            return;
        };
        self.pending_since = None;
        let proof = match result {
            Ok(sig) => {
                let _ = hash;
                vec![Payload::Sig(sig)]
            }
            Err(e) => {
                self.fault(
                    sh,
                    now,
                    Fault::Fatal(
                        CloseReason::AuthFailed(format!("local signature: {e}")),
                        None,
                    ),
                );
                return;
            }
        };
        let r = match self.state {
            P1State::MmSigning => self.send_mm5(sh, now, proof),
            P1State::MmFinishing => self.send_mm6(sh, now, proof),
            P1State::AmSigning => self.send_am2(sh, now, proof),
            P1State::AmFinishing => self.send_am3(sh, now, proof),
            _ => Ok(()),
        };
        if let Err(f) = r {
            self.fault(sh, now, f);
        }
        self.drive(sh, now);
    }

    /// The caller checked the peer's certificate and signature.
    pub(crate) fn on_verification(&mut self, sh: &mut Shared, now: Instant, result: Result<()>) {
        let Some(Pending::Verify { .. }) = self.pending.take() else {
            return;
        };
        self.pending_since = None;
        if let Err(e) = result {
            self.fault(sh, now, auth_failed(format!("peer: {e}")));
            return;
        }
        let r = match self.state {
            P1State::MmVerifying | P1State::AmVerifying => {
                self.established(sh, now);
                Ok(())
            }
            P1State::MmFinishing => self.mm_send_final(sh, now),
            P1State::AmFinishing => self.am_send_final(sh, now),
            _ => Ok(()),
        };
        if let Err(f) = r {
            self.fault(sh, now, f);
        }
        self.drive(sh, now);
    }
}
