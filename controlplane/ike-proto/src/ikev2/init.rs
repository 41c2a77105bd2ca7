//! IKE_SA_INIT (RFC 7296 §1.2): proposals, KE, nonces, NAT detection, COOKIE (§2.6) and
//! INVALID_KE_PAYLOAD (§1.3) handling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::crypto::dh::KeyExchange;
use crate::crypto::keys;
use crate::crypto::secret::ct_eq;
use crate::crypto::sig::HashAlgorithm;
use crate::error::{Error, Result};
use crate::ikev2::config::{PeerConfig, RemoteAuth};
use crate::ikev2::event::{CloseReason, Event};
use crate::ikev2::proposal;
use crate::ikev2::sa::{Find, IkeSa, Req, Shared, State, nat_hash};
use crate::wire::{
    Cert, CertEncoding, DhGroup, ExchangeType, Flags, Header, Ke, Message, Notify, NotifyType,
    Payload, PayloadType,
};

/// Most COOKIE / INVALID_KE round trips before giving up.
const MAX_INIT_ATTEMPTS: u8 = 4;

fn hash_algs_notify() -> Payload {
    let mut d = Vec::new();
    for h in [
        HashAlgorithm::SHA2_256,
        HashAlgorithm::SHA2_384,
        HashAlgorithm::SHA2_512,
        HashAlgorithm::IDENTITY,
    ] {
        d.extend_from_slice(&h.0.to_be_bytes());
    }
    Payload::Notify(Notify::new(NotifyType::SIGNATURE_HASH_ALGORITHMS, d))
}

fn parse_hash_algs(n: &Notify) -> Vec<HashAlgorithm> {
    n.data
        .chunks_exact(2)
        .filter_map(|c| <[u8; 2]>::try_from(c).ok())
        .map(|b| HashAlgorithm(u16::from_be_bytes(b)))
        .collect()
}

/// The COOKIE for an initiator (RFC 7296 §2.6): version byte | SHA-256(Ni | IPi | SPIi | secret).
pub(crate) fn cookie_value(
    version: u8,
    secret: &[u8],
    ni: &[u8],
    remote: SocketAddr,
    spi_i: u64,
) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(ni);
    match remote.ip() {
        std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
        std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&remote.port().to_be_bytes());
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(secret);
    let mut v = vec![version];
    v.extend_from_slice(ctx.finish().as_ref());
    v
}

/// Sends an unauthenticated IKE_SA_INIT response carrying one notify (COOKIE,
/// INVALID_KE_PAYLOAD, NO_PROPOSAL_CHOSEN, INVALID_SYNTAX).
pub(crate) fn stateless_reply(
    sh: &mut Shared,
    local: SocketAddr,
    remote: SocketAddr,
    request: &Header,
    ty: NotifyType,
    data: Vec<u8>,
) {
    let msg = Message {
        header: Header {
            spi_i: request.spi_i,
            spi_r: 0,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags::new(false, true),
            message_id: 0,
            length: 0,
        },
        payloads: vec![Payload::Notify(Notify::new(ty, data))],
    };
    sh.send(local, remote, &msg.encode());
}

/// Starts an IKE SA as initiator.
pub(crate) fn initiate(
    sh: &mut Shared,
    now: Instant,
    peer: Arc<PeerConfig>,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<IkeSa> {
    if peer.ike_proposals.is_empty() {
        return Err(Error::Config(format!("{}: no IKE proposals", peer.name)));
    }
    let spi_i = sh.new_ike_spi()?;
    let state = State::InitSent {
        ke: None,
        cookie: None,
        attempts: 0,
    };
    let mut sa = IkeSa::new(sh, now, true, spi_i, 0, local, remote, peer, state);
    sa.ni = sh.random(32)?;
    let ke = KeyExchange::generate(sa.suite.dh, &sh.rng)?;
    sa.send_init_request(sh, now, ke, None, 0);
    Ok(sa)
}

/// Answers an IKE_SA_INIT request for a new SA; `None` when answered statelessly or dropped.
#[expect(clippy::too_many_arguments, reason = "the responder's inputs")]
pub(crate) fn respond(
    sh: &mut Shared,
    now: Instant,
    peer: Arc<PeerConfig>,
    local: SocketAddr,
    remote: SocketAddr,
    raw: &[u8],
    msg: &Message,
    cookie: Option<(u8, &[u8], &[u8])>,
) -> Option<IkeSa> {
    let h = msg.header;
    let f = Find(&msg.payloads);
    let (Some(sa_p), Some(ke_p), Some(ni)) = (f.sa(), f.ke(), f.nonce()) else {
        sh.stats.invalid_packets += 1;
        stateless_reply(
            sh,
            local,
            remote,
            &h,
            NotifyType::INVALID_SYNTAX,
            Vec::new(),
        );
        return None;
    };
    // COOKIE mode (RFC 7296 §2.6): the request must start with the cookie we would issue.
    if let Some((version, secret, previous)) = cookie {
        let presented = match msg.payloads.first() {
            Some(Payload::Notify(n)) if n.ty == NotifyType::COOKIE => Some(n.data.as_slice()),
            _ => None,
        };
        let valid = presented.is_some_and(|c| {
            let v = c.first().copied().unwrap_or(0);
            let secret = if v == version { secret } else { previous };
            ct_eq(c, &cookie_value(v, secret, ni, remote, h.spi_i))
        });
        if !valid {
            sh.stats.cookies_sent += 1;
            let c = cookie_value(version, secret, ni, remote, h.spi_i);
            stateless_reply(sh, local, remote, &h, NotifyType::COOKIE, c);
            return None;
        }
    }
    let Some((suite, answer)) = proposal::select_ike(sa_p, &peer.ike_proposals, &[]) else {
        tracing::info!(peer = %remote, "IKE_SA_INIT: no proposal chosen");
        sh.stats.p1_remote_act_failure += 1;
        stateless_reply(
            sh,
            local,
            remote,
            &h,
            NotifyType::NO_PROPOSAL_CHOSEN,
            Vec::new(),
        );
        return None;
    };
    if ke_p.group != suite.dh {
        stateless_reply(
            sh,
            local,
            remote,
            &h,
            NotifyType::INVALID_KE_PAYLOAD,
            suite.dh.0.to_be_bytes().to_vec(),
        );
        return None;
    }
    let spi_r = sh.new_ike_spi().ok()?;
    let mut sa = IkeSa::new(
        sh,
        now,
        false,
        h.spi_i,
        spi_r,
        local,
        remote,
        peer,
        State::InitReplied { since: now },
    );
    sa.suite = suite;
    sa.ni = ni.to_vec();
    let setup = (|| -> Result<Vec<Payload>> {
        sa.nr = sh.random(32)?;
        let ke = KeyExchange::generate(suite.dh, &sh.rng)?;
        let public = ke.public_value().to_vec();
        let g_ir = ke.agree(&ke_p.data)?;
        let seed = keys::skeyseed(suite.prf, &sa.ni, &sa.nr, &g_ir);
        let k = keys::derive_ike_keys(&suite, &seed, &sa.ni, &sa.nr, sa.spi_i, sa.spi_r);
        sa.set_keys(k)?;
        let mut out = vec![
            Payload::Sa(answer),
            Payload::Ke(Ke {
                group: suite.dh,
                data: public,
            }),
            Payload::Nonce(sa.nr.clone()),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                nat_hash(sa.spi_i, sa.spi_r, local),
            )),
            Payload::Notify(Notify::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                nat_hash(sa.spi_i, sa.spi_r, remote),
            )),
        ];
        if sa.peer.rfc7427 {
            out.push(hash_algs_notify());
        }
        if sh.config.fragmentation {
            out.push(Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            )));
        }
        if let RemoteAuth::Certificate(v) = &sa.peer.remote_auth {
            out.push(Payload::CertReq(Cert {
                encoding: CertEncoding::X509_SIGNATURE,
                data: v.certreq_hashes().concat(),
            }));
        }
        Ok(out)
    })();
    let payloads = match setup {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(peer = %remote, error = %e, "IKE_SA_INIT rejected");
            sh.ike_spis.remove(&spi_r);
            sh.stats.invalid_packets += 1;
            stateless_reply(
                sh,
                local,
                remote,
                &h,
                NotifyType::INVALID_SYNTAX,
                Vec::new(),
            );
            return None;
        }
    };
    // NAT detection: the initiator hashed with SPIr = 0.
    if let Some(n) = f.notify(NotifyType::NAT_DETECTION_SOURCE_IP) {
        sa.remote_nat = !ct_eq(&n.data, &nat_hash(h.spi_i, 0, remote));
    }
    if let Some(n) = f.notify(NotifyType::NAT_DETECTION_DESTINATION_IP) {
        sa.local_nat = !ct_eq(&n.data, &nat_hash(h.spi_i, 0, local));
    }
    if sa.local_nat || sa.remote_nat {
        sh.event(Event::NatDetected {
            ike_sa: sa.id,
            local_nat: sa.local_nat,
            remote_nat: sa.remote_nat,
        });
    }
    if let Some(n) = f.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS) {
        sa.peer_hashes = parse_hash_algs(n);
    }
    sa.peer_frag = sh.config.fragmentation && f.has(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED);
    let resp = Message {
        header: sa.header(ExchangeType::IKE_SA_INIT, true, 0),
        payloads,
    }
    .encode();
    sa.init_req = raw.to_vec();
    sh.send(local, remote, &resp);
    sa.init_resp = resp;
    sa.peer_msg_id = 1;
    Some(sa)
}

impl IkeSa {
    /// Sends (or resends after COOKIE / INVALID_KE) the IKE_SA_INIT request.
    pub(crate) fn send_init_request(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        ke: KeyExchange,
        cookie: Option<Vec<u8>>,
        attempts: u8,
    ) {
        let mut payloads = Vec::new();
        if let Some(c) = &cookie {
            payloads.push(Payload::Notify(Notify::new(NotifyType::COOKIE, c.clone())));
        }
        // The proposal matching our KE group goes first.
        let mut offer = self.peer.ike_proposals.clone();
        offer.sort_by_key(|s| s.dh != ke.group());
        payloads.push(Payload::Sa(proposal::ike_offer(&offer, &[])));
        payloads.push(Payload::Ke(Ke {
            group: ke.group(),
            data: ke.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(self.ni.clone()));
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_SOURCE_IP,
            nat_hash(self.spi_i, 0, self.local),
        )));
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_hash(self.spi_i, 0, self.remote),
        )));
        if self.peer.rfc7427 {
            payloads.push(hash_algs_notify());
        }
        if sh.config.fragmentation {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                Vec::new(),
            )));
        }
        if let Some(v) = &sh.config.vendor_id {
            payloads.push(Payload::VendorId(v.clone()));
        }
        let msg = Message {
            header: self.header(ExchangeType::IKE_SA_INIT, false, 0),
            payloads,
        }
        .encode();
        self.init_req = msg.clone();
        self.transmit_request(sh, now, ExchangeType::IKE_SA_INIT, 0, vec![msg], Req::Init);
        self.next_msg_id = 1;
        self.state = State::InitSent {
            ke: Some(ke),
            cookie,
            attempts,
        };
    }

    /// Initiator: the IKE_SA_INIT response.
    pub(crate) fn handle_init_response(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        _local: SocketAddr,
        _remote: SocketAddr,
        raw: &[u8],
        msg: Message,
    ) {
        let f = Find(&msg.payloads);
        let State::InitSent {
            ke,
            cookie,
            attempts,
        } = &mut self.state
        else {
            return;
        };
        let attempts = *attempts;
        if let Some(c) = f.notify(NotifyType::COOKIE) {
            if attempts >= MAX_INIT_ATTEMPTS || c.data.is_empty() || c.data.len() > 64 {
                self.outstanding = None;
                self.fail(sh, CloseReason::Protocol("COOKIE loop".into()));
                return;
            }
            let Some(ke) = ke.take() else { return };
            tracing::debug!(sa = self.id.0, "responder demands a COOKIE");
            self.send_init_request(sh, now, ke, Some(c.data.clone()), attempts + 1);
            return;
        }
        if let Some(n) = f.notify(NotifyType::INVALID_KE_PAYLOAD) {
            let group =
                <[u8; 2]>::try_from(n.data.as_slice()).map(|b| DhGroup(u16::from_be_bytes(b)));
            let current = ke.as_ref().map(KeyExchange::group);
            let usable = group.ok().and_then(|g| {
                self.peer
                    .ike_proposals
                    .iter()
                    .find(|s| s.dh == g && Some(g) != current)
                    .copied()
            });
            match usable {
                Some(s) if attempts < MAX_INIT_ATTEMPTS => {
                    tracing::debug!(sa = self.id.0, group = %s.dh, "INVALID_KE_PAYLOAD: retrying");
                    let cookie = cookie.clone();
                    match KeyExchange::generate(s.dh, &sh.rng) {
                        Ok(ke) => {
                            self.suite = s;
                            self.send_init_request(sh, now, ke, cookie, attempts + 1);
                        }
                        Err(e) => {
                            self.outstanding = None;
                            self.fail(sh, CloseReason::Protocol(e.to_string()));
                        }
                    }
                }
                _ => {
                    self.outstanding = None;
                    self.fail(
                        sh,
                        CloseReason::NegotiationFailed("INVALID_KE_PAYLOAD".into()),
                    );
                }
            }
            return;
        }
        let Some(ke) = ke.take() else { return };
        self.outstanding = None;
        if let Err(e) = self.complete_init(sh, now, raw, &msg, ke) {
            tracing::info!(sa = self.id.0, error = %e, "IKE_SA_INIT failed");
            let reason = match e {
                Error::NoProposalChosen(s) => CloseReason::NegotiationFailed(s),
                e => CloseReason::Protocol(e.to_string()),
            };
            self.fail(sh, reason);
        }
    }

    fn complete_init(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        raw: &[u8],
        msg: &Message,
        ke: KeyExchange,
    ) -> Result<()> {
        let f = Find(&msg.payloads);
        if let Some(e) = f.error() {
            return Err(Error::NoProposalChosen(format!("peer answered {}", e.ty)));
        }
        let (Some(sa_p), Some(ke_p), Some(nr)) = (f.sa(), f.ke(), f.nonce()) else {
            return Err(Error::Protocol(
                "IKE_SA_INIT response lacks SA, KE or Nonce".into(),
            ));
        };
        let (suite, _) = proposal::accept_ike(sa_p, &self.peer.ike_proposals).ok_or_else(|| {
            Error::NoProposalChosen("responder chose a proposal we did not offer".into())
        })?;
        if ke_p.group != suite.dh || ke.group() != suite.dh {
            return Err(Error::Protocol(
                "KE group differs from the chosen proposal".into(),
            ));
        }
        if msg.header.spi_r == 0 {
            return Err(Error::Protocol("responder SPI is zero".into()));
        }
        self.spi_r = msg.header.spi_r;
        self.suite = suite;
        self.nr = nr.to_vec();
        self.init_resp = raw.to_vec();
        let g_ir = ke.agree(&ke_p.data)?;
        let seed = keys::skeyseed(suite.prf, &self.ni, &self.nr, &g_ir);
        let k = keys::derive_ike_keys(&suite, &seed, &self.ni, &self.nr, self.spi_i, self.spi_r);
        self.set_keys(k)?;
        if let Some(n) = f.notify(NotifyType::NAT_DETECTION_SOURCE_IP) {
            self.remote_nat = !ct_eq(&n.data, &nat_hash(self.spi_i, self.spi_r, self.remote));
        }
        if let Some(n) = f.notify(NotifyType::NAT_DETECTION_DESTINATION_IP) {
            self.local_nat = !ct_eq(&n.data, &nat_hash(self.spi_i, self.spi_r, self.local));
        }
        if let Some(n) = f.notify(NotifyType::SIGNATURE_HASH_ALGORITHMS) {
            self.peer_hashes = parse_hash_algs(n);
        }
        self.peer_frag =
            sh.config.fragmentation && f.has(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED);
        if self.local_nat || self.remote_nat {
            // RFC 7296 §2.23: continue on the NAT-T port.
            let p = sh.config.nat_t_port;
            self.local.set_port(p);
            self.remote.set_port(p);
            sh.event(Event::NatDetected {
                ike_sa: self.id,
                local_nat: self.local_nat,
                remote_nat: self.remote_nat,
            });
        }
        self.start_auth(sh, now)
    }
}
