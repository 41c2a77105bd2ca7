//! One ISAKMP SA: its phase 1 state, the CBC IV chains, message protection, the flights we
//! retransmit or replay, timers (lifetime, rekey, DPD, NAT keepalive), its quick mode
//! exchanges and child SAs. The exchanges live in `phase1`, `quick` and `info`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};

use super::config::{ExchangeMode, V1Peer};
use super::crypto::{self, Phase1Keys};
use super::proposal::P1Choice;
use super::wire::*;
use crate::crypto::Secret;
use crate::crypto::dh::KeyExchange;
use crate::crypto::encr::EncrAlg;
use crate::crypto::integ::IntegAlg;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::ikev2::config::{EndpointConfig, Lifetimes, Mode};
use crate::ikev2::event::{ChildId, CloseReason, Event, IkeSaId, RequestId, Statistics, Transmit};
use crate::wire::{DhGroup, TrafficSelector};

/// IKEv1 handles start here, so they never equal the IKEv2 endpoint's handles of the same
/// stack (a driver may keep both in one table).
pub(crate) const ID_BASE: u64 = 1 << 62;

/// How many message IDs an ISAKMP SA remembers to refuse replays.
const MAX_SEEN_MIDS: usize = 4096;

/// How long a finished quick mode exchange is kept to answer retransmissions.
pub(crate) const QUICK_LINGER: Duration = Duration::from_secs(60);

/// Most quick mode exchanges in progress on one ISAKMP SA (a responder resource bound).
pub(crate) const MAX_QUICK: usize = 64;

/// Something an SA asks of the endpoint (it cannot reach other SAs itself).
#[derive(Debug)]
pub(crate) enum Action {
    /// Start a new phase 1 replacing this one.
    Rekey(IkeSaId),
    /// This rekeyed SA is up: move the children of the old one here, then retire the old.
    Replaced { old: IkeSaId, new: IkeSaId },
    /// The peer deleted this SA: move its children to another SA with the peer if any.
    PeerDeleted(IkeSaId),
    /// INITIAL-CONTACT from the peer of this SA: every other SA with it is stale.
    InitialContact(IkeSaId),
    /// A child was installed: check for a collision with a child made at the same time.
    ChildInstalled(IkeSaId, ChildId),
}

/// State shared by all SAs of an endpoint.
pub(crate) struct Shared {
    pub config: EndpointConfig,
    pub rng: SystemRandom,
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<Event>,
    pub stats: Statistics,
    pub cookies: HashSet<u64>,
    pub child_spis: HashSet<u32>,
    pub requests: HashMap<RequestId, IkeSaId>,
    pub peers: Vec<Arc<V1Peer>>,
    pub actions: Vec<Action>,
    pub unix_time: u64,
    next_sa: u64,
    next_child: u64,
    next_request: u64,
}

impl Shared {
    pub fn new(config: EndpointConfig) -> Self {
        Self {
            config,
            rng: SystemRandom::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Statistics::default(),
            cookies: HashSet::new(),
            child_spis: HashSet::new(),
            requests: HashMap::new(),
            peers: Vec::new(),
            actions: Vec::new(),
            unix_time: 0,
            next_sa: ID_BASE,
            next_child: ID_BASE,
            next_request: ID_BASE,
        }
    }

    pub fn random(&self, n: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.rng.fill(&mut v).map_err(|_| Error::Crypto("random"))?;
        Ok(v)
    }

    pub fn random_u32(&self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.rng.fill(&mut b).map_err(|_| Error::Crypto("random"))?;
        Ok(u32::from_be_bytes(b))
    }

    /// A fresh nonzero local cookie, reserved.
    pub fn new_cookie(&mut self) -> Result<u64> {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b).map_err(|_| Error::Crypto("random"))?;
            let c = u64::from_be_bytes(b);
            if c != 0 && self.cookies.insert(c) {
                return Ok(c);
            }
        }
    }

    /// A fresh inbound SPI (≥ 256), reserved.
    pub fn new_child_spi(&mut self) -> Result<u32> {
        loop {
            let spi = self.random_u32()?;
            if spi >= 256 && self.child_spis.insert(spi) {
                return Ok(spi);
            }
        }
    }

    pub fn new_sa_id(&mut self) -> IkeSaId {
        self.next_sa += 1;
        IkeSaId(self.next_sa - 1)
    }

    pub fn new_child_id(&mut self) -> ChildId {
        self.next_child += 1;
        ChildId(self.next_child - 1)
    }

    pub fn new_request(&mut self, sa: IkeSaId) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request - 1);
        self.requests.insert(id, sa);
        id
    }

    /// Queues a datagram, adding the non-ESP marker on the NAT-T port.
    pub fn send(&mut self, local: SocketAddr, remote: SocketAddr, msg: &[u8]) {
        let nat_t = self.config.nat_t_port;
        let mut data = Vec::with_capacity(msg.len() + 4);
        if local.port() == nat_t || remote.port() == nat_t {
            data.extend_from_slice(&[0, 0, 0, 0]);
        }
        data.extend_from_slice(msg);
        self.transmits.push_back(Transmit {
            local,
            remote,
            data,
        });
    }

    pub fn event(&mut self, e: Event) {
        self.events.push_back(e);
    }
}

/// A message we sent and may have to send again.
#[derive(Debug, Clone)]
pub(crate) struct Flight {
    /// The ISAKMP message (no non-ESP marker).
    pub data: Vec<u8>,
    /// Retransmitted on a timer until the peer answers (requests); otherwise only resent
    /// when the peer repeats the message it answers (replies, final messages).
    pub retransmit: bool,
    pub retries: u32,
    pub next_at: Instant,
}

impl Flight {
    pub fn request(data: Vec<u8>, now: Instant, wait: Duration) -> Self {
        Self {
            data,
            retransmit: true,
            retries: 0,
            next_at: now + wait,
        }
    }

    pub fn reply(data: Vec<u8>, now: Instant) -> Self {
        Self {
            data,
            retransmit: false,
            retries: 0,
            next_at: now,
        }
    }
}

/// Phase 1 progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum P1State {
    /// Initiator: MM1 sent.
    MmSentSa,
    /// Initiator: MM3 sent.
    MmSentKe,
    /// Initiator: MM5 is being signed.
    MmSigning,
    /// Initiator: MM5 sent.
    MmSentAuth,
    /// Initiator: MM6 is being verified by the caller.
    MmVerifying,
    /// Initiator: AM1 sent.
    AmSent,
    /// Initiator: AM2 is being verified / AM3 signed.
    AmFinishing,
    /// Responder: MM2 sent.
    MmRepliedSa,
    /// Responder: MM4 sent.
    MmRepliedKe,
    /// Responder: MM5 is being verified / MM6 signed.
    MmFinishing,
    /// Responder: AM2 is being signed.
    AmSigning,
    /// Responder: AM2 sent.
    AmReplied,
    /// Responder: AM3 is being verified.
    AmVerifying,
    /// Both ends authenticated.
    Established,
    /// Gone.
    Closed,
}

/// What a signature or verification the caller is working on is for.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    /// Our SIG payload for MM5 / MM6 / AM2 / AM3 (the signed hash).
    Sign { request: RequestId, hash: Vec<u8> },
    /// The peer's signature; `then_sign` says whether we sign our own message next.
    Verify { request: RequestId },
}

/// A child SA (a pair of ESP SAs).
#[derive(Debug, Clone)]
pub(crate) struct Child {
    pub id: ChildId,
    /// Index of its policy in the peer's children.
    pub config: usize,
    pub name: String,
    pub spi_in: u32,
    pub spi_out: u32,
    pub local_ts: TrafficSelector,
    pub remote_ts: TrafficSelector,
    pub mode: Mode,
    pub encr: EncrAlg,
    pub integ: Option<IntegAlg>,
    pub pfs: Option<DhGroup>,
    pub encap: bool,
    pub initiator: bool,
    /// When the quick mode that made it started, and when it finished.
    pub started: Instant,
    pub created: Instant,
    pub lifetimes: Lifetimes,
    /// A newer child replaced it: no rekey, deleted at `delete_at`.
    pub replaced: bool,
    pub delete_at: Option<Instant>,
}

/// Work queued until phase 1 is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    /// Quick mode for the policy's child `config`, replacing a child if rekeying.
    Quick {
        config: usize,
        replaces: Option<ChildId>,
    },
    /// Delete a child (DELETE for its inbound SPI).
    DeleteChild(ChildId),
    /// Delete the whole ISAKMP SA (children first).
    DeleteAll,
}

/// Outstanding dead peer detection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DpdWait {
    pub retries: u32,
    pub next_at: Instant,
}

/// One ISAKMP SA.
pub(crate) struct IsakmpSa {
    pub id: IkeSaId,
    pub peer: Arc<V1Peer>,
    pub initiator: bool,
    pub mode: ExchangeMode,
    pub cky_i: u64,
    pub cky_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: P1State,
    pub started: Instant,
    /// The phase 1 offer we made (initiator) or the policies' offers (responder: chosen).
    pub offered: Vec<super::config::P1Proposal>,
    pub choice: Option<P1Choice>,
    /// SAi_b: the initiator's SA payload body.
    pub sai_b: Vec<u8>,
    pub dh: Option<KeyExchange>,
    pub g_xi: Vec<u8>,
    pub g_xr: Vec<u8>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub g_xy: Option<Secret>,
    pub keys: Option<Phase1Keys>,
    /// Phase 1 CBC chain: the IV for the next phase 1 message.
    pub iv: Vec<u8>,
    /// The last CBC block of phase 1: base of every phase 2 and informational IV.
    pub p1_last: Vec<u8>,
    pub peer_id: Option<Identity>,
    pub peer_certs: Vec<Vec<u8>>,
    pub peer_natt: bool,
    pub peer_dpd: bool,
    pub local_nat: bool,
    pub remote_nat: bool,
    /// Our last phase 1 message.
    pub flight: Option<Flight>,
    /// The raw last phase 1 message we processed (repeats are answered from `flight`).
    pub last_rx: Option<Vec<u8>>,
    pub pending: Option<Pending>,
    pub pending_since: Option<Instant>,
    /// Aggressive mode responder: the initiator's ID payload body (for HASH_I in AM3) and
    /// the SA payload answering AM1 (while AM2 is being signed).
    pub held_id: Option<Vec<u8>>,
    pub held_reply: Option<Sa>,
    /// Phase 1 authentication messages that failed to decrypt or verify.
    pub auth_strikes: u32,
    pub quick: HashMap<u32, super::quick::Quick>,
    pub seen_mids: VecDeque<u32>,
    pub children: Vec<Child>,
    pub queue: VecDeque<Task>,
    pub established_at: Option<Instant>,
    pub rekey_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    pub keepalive_at: Option<Instant>,
    pub last_recv: Instant,
    pub dpd_seq: u32,
    pub dpd: Option<DpdWait>,
    /// This SA replaces another (phase 1 rekey): no INITIAL-CONTACT, children move here.
    pub rekey_of: Option<IkeSaId>,
    /// A newer SA with the same peer took over.
    pub superseded: bool,
    /// The negotiated phase 1 lifetime.
    pub lifetime: Duration,
    pub closed_reason: Option<CloseReason>,
}

impl std::fmt::Debug for IsakmpSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsakmpSa")
            .field("id", &self.id)
            .field("peer", &self.peer.peer.name)
            .field("state", &self.state)
            .field("cookies", &(self.cky_i, self.cky_r))
            .finish()
    }
}

/// What a decrypted message holds.
pub(crate) struct Opened {
    pub payloads: Vec<Located>,
    pub plaintext: Vec<u8>,
    pub chain_len: usize,
    /// The last ciphertext block: the next IV of this CBC chain.
    pub last_block: Vec<u8>,
}

impl Opened {
    pub fn list(&self) -> Vec<Payload> {
        self.payloads.iter().map(|l| l.payload.clone()).collect()
    }
}

/// Finds payloads in a list.
pub(crate) struct Find<'a>(pub &'a [Payload]);

impl<'a> Find<'a> {
    pub fn sa(&self) -> Option<&'a Sa> {
        self.0.iter().find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })
    }
    pub fn ke(&self) -> Option<&'a [u8]> {
        self.0.iter().find_map(|p| match p {
            Payload::Ke(k) => Some(k.as_slice()),
            _ => None,
        })
    }
    pub fn nonce(&self) -> Option<&'a [u8]> {
        self.0.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        })
    }
    pub fn ids(&self) -> Vec<&'a IdPayload> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Payload::Id(i) => Some(i),
                _ => None,
            })
            .collect()
    }
    pub fn hash(&self) -> Option<&'a [u8]> {
        self.0.iter().find_map(|p| match p {
            Payload::Hash(h) => Some(h.as_slice()),
            _ => None,
        })
    }
    pub fn sig(&self) -> Option<&'a [u8]> {
        self.0.iter().find_map(|p| match p {
            Payload::Sig(s) => Some(s.as_slice()),
            _ => None,
        })
    }
    pub fn certs(&self) -> Vec<Vec<u8>> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Payload::Cert(c) if c.encoding == crate::wire::CertEncoding::X509_SIGNATURE => {
                    Some(c.data.clone())
                }
                _ => None,
            })
            .collect()
    }
    pub fn vid(&self, v: &[u8]) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, Payload::VendorId(x) if x.as_slice() == v))
    }
    pub fn natd(&self) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .filter_map(|p| match p {
                Payload::NatD(d) => Some(d.as_slice()),
                _ => None,
            })
            .collect()
    }
    pub fn notifies(&self) -> impl Iterator<Item = &'a Notify> {
        self.0.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }
    pub fn notify(&self, ty: NotifyType) -> Option<&'a Notify> {
        self.notifies().find(|n| n.ty == ty)
    }
}

impl IsakmpSa {
    #[expect(clippy::too_many_arguments, reason = "everything an SA starts with")]
    pub fn new(
        sh: &mut Shared,
        now: Instant,
        peer: Arc<V1Peer>,
        initiator: bool,
        mode: ExchangeMode,
        cky_i: u64,
        cky_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        state: P1State,
    ) -> Self {
        let lifetime = peer.peer.ike_lifetime;
        Self {
            id: sh.new_sa_id(),
            peer,
            initiator,
            mode,
            cky_i,
            cky_r,
            local,
            remote,
            state,
            started: now,
            offered: Vec::new(),
            choice: None,
            sai_b: Vec::new(),
            dh: None,
            g_xi: Vec::new(),
            g_xr: Vec::new(),
            ni: Vec::new(),
            nr: Vec::new(),
            g_xy: None,
            keys: None,
            iv: Vec::new(),
            p1_last: Vec::new(),
            peer_id: None,
            peer_certs: Vec::new(),
            peer_natt: false,
            peer_dpd: false,
            local_nat: false,
            remote_nat: false,
            flight: None,
            last_rx: None,
            pending: None,
            pending_since: None,
            held_id: None,
            held_reply: None,
            auth_strikes: 0,
            quick: HashMap::new(),
            seen_mids: VecDeque::new(),
            children: Vec::new(),
            queue: VecDeque::new(),
            established_at: None,
            rekey_at: None,
            expire_at: None,
            keepalive_at: None,
            last_recv: now,
            dpd_seq: 0,
            dpd: None,
            rekey_of: None,
            superseded: false,
            lifetime,
            closed_reason: None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == P1State::Closed
    }

    pub fn is_established(&self) -> bool {
        self.state == P1State::Established
    }

    /// Our cookie: what the endpoint demultiplexes on.
    pub fn local_cookie(&self) -> u64 {
        if self.initiator {
            self.cky_i
        } else {
            self.cky_r
        }
    }

    pub fn suite(&self) -> Result<P1Choice> {
        self.choice
            .ok_or(Error::InvalidState("no phase 1 proposal"))
    }

    pub fn phase1_keys(&self) -> Result<&Phase1Keys> {
        self.keys
            .as_ref()
            .ok_or(Error::InvalidState("no phase 1 keys"))
    }

    pub fn header(&self, exchange: ExchangeType, message_id: u32, encrypted: bool) -> Header {
        Header {
            cookie_i: self.cky_i,
            cookie_r: self.cky_r,
            next_payload: PayloadType::NONE,
            version: VERSION_1_0,
            exchange,
            flags: Flags(if encrypted { Flags::ENCRYPTION } else { 0 }),
            message_id,
            length: 0,
        }
    }

    /// An unencrypted message.
    pub fn plain(&self, exchange: ExchangeType, payloads: Vec<Payload>) -> Vec<u8> {
        Message {
            header: self.header(exchange, 0, false),
            payloads,
        }
        .encode()
    }

    /// Encrypts `payloads` under `iv`; returns the message and the next IV.
    pub fn seal(
        &self,
        exchange: ExchangeType,
        message_id: u32,
        payloads: &[Payload],
        iv: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let choice = self.suite()?;
        let keys = self.phase1_keys()?;
        let (first, body) = encode_payloads(payloads);
        let ct = crypto::encrypt_body(choice.prop.encr, &keys.enc_key, iv, &body)?;
        let mut h = self.header(exchange, message_id, true);
        h.next_payload = first;
        h.length = (HEADER_LEN + ct.len()) as u32;
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        h.encode(&mut out);
        out.extend_from_slice(&ct);
        let next = crypto::last_block(&ct, choice.prop.encr.block_len());
        Ok((out, next))
    }

    /// Decrypts a message under `iv`.
    pub fn open(&self, data: &[u8], header: &Header, iv: &[u8]) -> Result<Opened> {
        let choice = self.suite()?;
        let keys = self.phase1_keys()?;
        let ct = data.get(HEADER_LEN..).unwrap_or(&[]);
        let plaintext = crypto::decrypt_body(choice.prop.encr, &keys.enc_key, iv, ct)?;
        let (payloads, chain_len) = decode_payloads(
            header.next_payload,
            &plaintext,
            HEADER_LEN,
            Trailing::Padding,
        )?;
        Ok(Opened {
            payloads,
            plaintext,
            chain_len,
            last_block: crypto::last_block(ct, choice.prop.encr.block_len()),
        })
    }

    /// A HASH(1)-style protected payload list: `HASH | payloads` where the hash covers the
    /// encoded payloads after it (quick mode HASH(1), informational HASH(1)).
    pub fn with_hash1(&self, mid: u32, payloads: Vec<Payload>) -> Result<Vec<Payload>> {
        let keys = self.phase1_keys()?;
        let prf = self.suite()?.prop.hash.prf();
        let (_, rest) = encode_payloads(&payloads);
        let h = crypto::hash1(prf, &keys.skeyid_a, mid, &rest);
        let mut v = Vec::with_capacity(payloads.len() + 1);
        v.push(Payload::Hash(h));
        v.extend(payloads);
        Ok(v)
    }

    /// The bytes after the first payload (which must be HASH) of a decrypted message, and
    /// the hash it carries.
    pub fn after_hash(o: &Opened) -> Result<(&[u8], &[u8])> {
        let first = o
            .payloads
            .first()
            .ok_or_else(|| Error::Protocol("empty protected message".into()))?;
        let Payload::Hash(h) = &first.payload else {
            return Err(Error::Protocol(
                "protected message does not start with HASH".into(),
            ));
        };
        let rest = o
            .plaintext
            .get(first.end..o.chain_len)
            .ok_or_else(|| Error::Protocol("payload bounds".into()))?;
        Ok((rest, h))
    }

    /// Sends a flight now and keeps it.
    pub fn send_flight(&mut self, sh: &mut Shared, flight: Flight) {
        sh.send(self.local, self.remote, &flight.data);
        self.flight = Some(flight);
    }

    /// Whether a message ID was already used on this SA; records it otherwise.
    pub fn mid_seen(&mut self, mid: u32) -> bool {
        if self.seen_mids.contains(&mid) {
            return true;
        }
        if self.seen_mids.len() >= MAX_SEEN_MIDS {
            self.seen_mids.pop_front();
        }
        self.seen_mids.push_back(mid);
        false
    }

    /// A fresh message ID for an exchange we start.
    pub fn new_mid(&mut self, sh: &Shared) -> Result<u32> {
        loop {
            let m = sh.random_u32()?;
            if m != 0 && !self.mid_seen(m) {
                return Ok(m);
            }
        }
    }

    /// The earliest time this SA needs [`IsakmpSa::on_timeout`].
    pub fn next_timeout(&self, config: &EndpointConfig) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if self.is_closed() {
            return None;
        }
        consider(
            self.flight
                .as_ref()
                .filter(|f| f.retransmit)
                .map(|f| f.next_at),
        );
        if !self.is_established() {
            consider(Some(
                self.started + config.half_open_timeout.max(Duration::from_secs(30)),
            ));
        }
        for q in self.quick.values() {
            consider(q.next_timeout());
        }
        for c in &self.children {
            consider(c.delete_at);
        }
        if self.is_established() {
            consider(self.rekey_at);
            consider(self.expire_at);
            consider(self.keepalive_at);
            consider(self.dpd.map(|d| d.next_at));
            if let Some(i) = self.peer.peer.dpd_interval
                && self.peer_dpd
                && self.dpd.is_none()
            {
                consider(Some(self.last_recv + i));
            }
        }
        t
    }

    /// Runs whatever is due at `now`.
    pub fn on_timeout(&mut self, sh: &mut Shared, now: Instant) {
        if self.is_closed() {
            return;
        }
        // Phase 1 retransmission.
        if let Some(f) = self.flight.as_mut()
            && f.retransmit
            && f.next_at <= now
        {
            if f.retries >= sh.config.retries {
                tracing::info!(sa = self.id.0, peer = %self.remote, "IKEv1 phase 1 retransmissions exhausted");
                self.flight = None;
                self.fail(sh, CloseReason::Timeout);
                return;
            }
            f.retries += 1;
            f.next_at = now + sh.config.init_wait * 2u32.saturating_pow(f.retries);
            sh.stats.p1_retransmit += 1;
            let data = f.data.clone();
            sh.send(self.local, self.remote, &data);
        }
        if !self.is_established() {
            let limit = sh.config.half_open_timeout.max(Duration::from_secs(30));
            if self.started + limit <= now {
                tracing::info!(sa = self.id.0, peer = %self.remote, state = ?self.state, "IKEv1 phase 1 did not complete in time");
                self.fail(sh, CloseReason::Timeout);
                return;
            }
        }
        self.quick_timeouts(sh, now);
        if self.is_closed() {
            return;
        }
        let due: Vec<ChildId> = self
            .children
            .iter()
            .filter(|c| c.delete_at.is_some_and(|t| t <= now))
            .map(|c| c.id)
            .collect();
        for c in due {
            if let Some(ch) = self.children.iter_mut().find(|x| x.id == c) {
                ch.delete_at = None;
            }
            self.queue.push_back(Task::DeleteChild(c));
        }
        if self.is_established() {
            if let Some(k) = self.keepalive_at
                && k <= now
            {
                sh.transmits.push_back(Transmit {
                    local: self.local,
                    remote: self.remote,
                    data: vec![0xff],
                });
                self.keepalive_at = Some(now + sh.config.nat_keepalive);
            }
            if let Some(x) = self.expire_at
                && x <= now
            {
                self.expire_at = None;
                tracing::info!(sa = self.id.0, "IKEv1 ISAKMP SA lifetime expired");
                if self.superseded {
                    self.retire(sh, now);
                } else {
                    self.queue.clear();
                    self.queue.push_back(Task::DeleteAll);
                }
            }
            if let Some(r) = self.rekey_at
                && r <= now
            {
                self.rekey_at = None;
                if !self.superseded {
                    sh.actions.push(Action::Rekey(self.id));
                }
            }
            self.dpd_timer(sh, now);
        }
        self.drive(sh, now);
    }

    /// Starts queued work once phase 1 is up.
    pub fn drive(&mut self, sh: &mut Shared, now: Instant) {
        if !self.is_established() {
            return;
        }
        while let Some(task) = self.queue.pop_front() {
            let r = match task {
                Task::Quick { config, replaces } => self.start_quick(sh, now, config, replaces),
                Task::DeleteChild(c) => self.delete_child(sh, now, c),
                Task::DeleteAll => {
                    self.delete_all(sh, now);
                    return;
                }
            };
            if let Err(e) = r {
                tracing::info!(sa = self.id.0, error = %e, "IKEv1 exchange could not start");
            }
            if self.is_closed() {
                return;
            }
        }
    }

    /// Phase 1 failed: account for it and close.
    pub fn fail(&mut self, sh: &mut Shared, reason: CloseReason) {
        if !self.is_established() && !self.is_closed() {
            if self.initiator {
                sh.stats.p1_local_act_failure += 1;
            } else {
                sh.stats.p1_remote_act_failure += 1;
            }
        }
        self.close(sh, reason);
    }

    /// Deletes every child (events only) and closes the SA.
    pub fn close(&mut self, sh: &mut Shared, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        for q in std::mem::take(&mut self.quick).into_values() {
            if q.is_pending() {
                sh.child_spis.remove(&q.spi_in);
                sh.event(Event::ChildSaFailed {
                    ike_sa: self.id,
                    name: q.name.clone(),
                    reason: format!("ISAKMP SA closed: {reason:?}"),
                });
            }
        }
        for c in std::mem::take(&mut self.children) {
            sh.child_spis.remove(&c.spi_in);
            sh.event(Event::DeleteChildSa {
                ike_sa: self.id,
                child: c.id,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
        let was_up = self.established_at.is_some();
        self.state = P1State::Closed;
        self.flight = None;
        self.queue.clear();
        self.pending = None;
        if was_up
            || matches!(
                reason,
                CloseReason::AuthFailed(_)
                    | CloseReason::Timeout
                    | CloseReason::NegotiationFailed(_)
            )
        {
            sh.event(Event::IkeSaDown {
                ike_sa: self.id,
                reason: reason.clone(),
            });
        }
        self.closed_reason = Some(reason);
    }

    /// Marks phase 1 established and arms its timers.
    pub fn established(&mut self, sh: &mut Shared, now: Instant) {
        self.state = P1State::Established;
        self.established_at = Some(now);
        // A request still waiting for its answer is answered now; a reply we sent stays to
        // answer repeats of what it answered.
        if self.flight.as_ref().is_some_and(|f| f.retransmit) {
            self.flight = None;
        }
        self.last_recv = now;
        self.p1_last = self.iv.clone();
        let margin = self.peer.peer.rekey_margin.min(self.lifetime / 2);
        // The original responder waits a little longer, so both ends rarely rekey at once.
        let skew = if self.initiator {
            Duration::ZERO
        } else {
            margin / 2
        };
        self.rekey_at = Some(now + self.lifetime.saturating_sub(margin) + skew);
        self.expire_at = Some(now + self.lifetime);
        if self.local_nat {
            self.keepalive_at = Some(now + sh.config.nat_keepalive);
        }
        if self.initiator {
            sh.stats.p1_local_act_success += 1;
        } else {
            sh.stats.p1_remote_act_success += 1;
        }
        let peer_id = self.peer_id.clone().unwrap_or(Identity::KeyId(Vec::new()));
        tracing::info!(
            sa = self.id.0,
            peer = %self.remote,
            id = %peer_id,
            mode = self.mode.name(),
            "IKEv1 ISAKMP SA established"
        );
        sh.event(Event::IkeSaUp {
            ike_sa: self.id,
            peer: self.peer.peer.name.clone(),
            initiator: self.initiator,
            peer_id,
            spis: (self.cky_i, self.cky_r),
            local: self.local,
            remote: self.remote,
            local_nat: self.local_nat,
            remote_nat: self.remote_nat,
        });
        if let Some(old) = self.rekey_of {
            sh.actions.push(Action::Replaced { old, new: self.id });
        }
    }

    /// A newer SA took over: tell the peer this one is gone (children were moved).
    pub fn retire(&mut self, sh: &mut Shared, now: Instant) {
        self.superseded = true;
        if self.is_established() {
            let _ = self.send_isakmp_delete(sh, now);
        }
        self.close(sh, CloseReason::Rekeyed);
    }

    /// Deletes every child and then the ISAKMP SA, telling the peer.
    pub fn delete_all(&mut self, sh: &mut Shared, now: Instant) {
        let spis: Vec<u32> = self.children.iter().map(|c| c.spi_in).collect();
        if !spis.is_empty() {
            let d = Payload::Delete(Delete {
                doi: DOI_IPSEC,
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
            });
            if let Err(e) = self.send_info(sh, now, vec![d]) {
                tracing::info!(sa = self.id.0, error = %e, "DELETE not sent");
            }
        }
        if let Err(e) = self.send_isakmp_delete(sh, now) {
            tracing::info!(sa = self.id.0, error = %e, "DELETE not sent");
        }
        self.close(sh, CloseReason::LocalDeleted);
    }

    /// Arms timers after the SA is found alive (any authenticated message).
    pub fn alive(&mut self, now: Instant) {
        self.last_recv = now;
        self.dpd = None;
    }

    /// Takes children moved from a replaced SA.
    pub fn adopt(&mut self, children: Vec<Child>) {
        self.children.extend(children);
    }

    pub fn child_index(&self, id: ChildId) -> Option<usize> {
        self.children.iter().position(|c| c.id == id)
    }

    /// Removes a child and emits its deletion (no message).
    pub fn remove_child(&mut self, sh: &mut Shared, idx: usize) -> Option<Child> {
        if idx >= self.children.len() {
            return None;
        }
        let c = self.children.remove(idx);
        sh.child_spis.remove(&c.spi_in);
        sh.event(Event::DeleteChildSa {
            ike_sa: self.id,
            child: c.id,
            spi_in: c.spi_in,
            spi_out: c.spi_out,
        });
        Some(c)
    }

    /// The byte and second limits of a child from negotiated lifetimes, soft before hard
    /// (the quick mode responder's soft limit comes a little later so the initiator
    /// usually rekeys first).
    pub fn child_lifetimes(
        &self,
        cfg: &Lifetimes,
        secs: u64,
        kb: u64,
        initiator: bool,
    ) -> Lifetimes {
        let hard_secs = if secs == 0 { cfg.hard_secs } else { secs };
        let margin = cfg
            .hard_secs
            .saturating_sub(cfg.soft_secs)
            .min(hard_secs / 2)
            .max(1);
        let soft_secs = if initiator {
            hard_secs.saturating_sub(margin)
        } else {
            hard_secs.saturating_sub(margin / 2)
        };
        let hard_bytes = kb.saturating_mul(1024);
        let soft_bytes = if hard_bytes == 0 {
            0
        } else if initiator {
            hard_bytes / 10 * 9
        } else {
            hard_bytes / 20 * 19
        };
        Lifetimes {
            soft_secs: soft_secs.max(1),
            hard_secs,
            soft_bytes,
            hard_bytes,
        }
    }
}
