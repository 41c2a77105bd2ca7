//! One IKE SA: message IDs and window, retransmission, the response cache, SK protection,
//! timers, and the task queue. The exchanges live in `init`, `auth`, `child`, `info`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ring::rand::{SecureRandom, SystemRandom};

use crate::crypto::Secret;
use crate::crypto::dh::KeyExchange;
use crate::crypto::encr::SkCrypto;
use crate::crypto::keys::{IkeKeys, IkeSuite};
use crate::crypto::sig::HashAlgorithm;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::ikev2::config::{
    ChildConfig, ChildProposal, EndpointConfig, Lifetimes, Mode, PeerConfig,
};
use crate::ikev2::event::{ChildId, CloseReason, Event, IkeSaId, RequestId, Statistics, Transmit};
use crate::wire::{
    Delete, ExchangeType, Flags, HEADER_LEN, Header, Message, Notify, NotifyType, Payload,
    PayloadType, ProtocolId, TrafficSelector, decode_payloads, encode_payloads,
};

/// State shared by all SAs of an endpoint: configuration, RNG, output queues, counters.
pub(crate) struct Shared {
    pub config: EndpointConfig,
    pub rng: SystemRandom,
    pub transmits: VecDeque<Transmit>,
    pub events: VecDeque<Event>,
    pub stats: Statistics,
    pub ike_spis: HashSet<u64>,
    pub child_spis: HashSet<u32>,
    pub requests: HashMap<RequestId, IkeSaId>,
    pub spawned: Vec<IkeSa>,
    /// Children to move between SAs after an IKE rekey collision: (from, to).
    pub moves: Vec<(IkeSaId, IkeSaId)>,
    pub peers: Vec<Arc<PeerConfig>>,
    /// New SAs that carried INITIAL_CONTACT: older SAs with that peer are stale.
    pub initial_contacts: Vec<IkeSaId>,
    /// Established SAs whose reauthentication time came (RFC 7296 §2.8.3).
    pub reauths: Vec<IkeSaId>,
    /// Wall-clock seconds since the Unix epoch, for certificate validity.
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
            ike_spis: HashSet::new(),
            child_spis: HashSet::new(),
            requests: HashMap::new(),
            spawned: Vec::new(),
            moves: Vec::new(),
            peers: Vec::new(),
            initial_contacts: Vec::new(),
            reauths: Vec::new(),
            unix_time: 0,
            next_sa: 1,
            next_child: 1,
            next_request: 1,
        }
    }

    pub fn random(&self, n: usize) -> Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.rng.fill(&mut v).map_err(|_| Error::Crypto("random"))?;
        Ok(v)
    }

    /// A fresh nonzero local IKE SPI, reserved.
    pub fn new_ike_spi(&mut self) -> Result<u64> {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b).map_err(|_| Error::Crypto("random"))?;
            let spi = u64::from_be_bytes(b);
            if spi != 0 && self.ike_spis.insert(spi) {
                return Ok(spi);
            }
        }
    }

    /// A fresh inbound child SPI (≥ 256), reserved.
    pub fn new_child_spi(&mut self) -> Result<u32> {
        loop {
            let mut b = [0u8; 4];
            self.rng.fill(&mut b).map_err(|_| Error::Crypto("random"))?;
            let spi = u32::from_be_bytes(b);
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

/// First wait before a failed reauthentication is tried again (doubles per failure).
pub(crate) const REAUTH_RETRY_MIN: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest wait between reauthentication attempts.
pub(crate) const REAUTH_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(900);

/// Most fragments accepted or produced for one message.
pub(crate) const MAX_FRAGMENTS: usize = 64;

/// An IKE message being reassembled from SKF fragments.
pub(crate) struct Reassembly {
    /// Message ID and whether it is a response.
    pub key: (u32, bool),
    pub first_inner: PayloadType,
    /// Decrypted fragment bodies, by fragment number − 1.
    pub parts: Vec<Option<Vec<u8>>>,
}

/// A request we sent and await the answer to.
pub(crate) struct Outstanding {
    pub msg_id: u32,
    pub exchange: ExchangeType,
    /// The datagrams of the request (several when fragmented).
    pub data: Vec<Vec<u8>>,
    pub retries: u32,
    pub next_at: Instant,
    pub kind: Req,
}

/// What an outstanding request was for.
pub(crate) enum Req {
    Init,
    Auth(Option<Box<ChildReq>>),
    CreateChild(Box<ChildReq>),
    RekeyIke(Box<IkeRekeyReq>),
    Delete(Vec<ChildId>),
    DeleteIke,
    Liveness,
}

/// An exchange this SA wants to start when the window is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    CreateChild(usize),
    RekeyChild(ChildId),
    RekeyIke,
    DeleteChild(ChildId),
    DeleteIke,
    Liveness,
}

/// Our side of a child SA negotiation.
pub(crate) struct ChildReq {
    pub id: ChildId,
    pub config: ChildConfig,
    pub spi_in: u32,
    pub ke: Option<KeyExchange>,
    pub nonce: Vec<u8>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub rekey_of: Option<ChildId>,
}

/// Our side of an IKE SA rekey.
pub(crate) struct IkeRekeyReq {
    pub new_spi: u64,
    pub ke: Option<KeyExchange>,
    pub nonce: Vec<u8>,
}

/// Child SA lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildState {
    Installed,
    Rekeying,
    /// Replaced by a rekey; deleted when the delete exchange finishes.
    Rekeyed,
    Deleting,
}

/// An installed child SA pair.
#[derive(Debug, Clone)]
pub(crate) struct ChildSa {
    pub id: ChildId,
    pub config: ChildConfig,
    pub spi_in: u32,
    pub spi_out: u32,
    pub proposal: ChildProposal,
    pub mode: Mode,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub state: ChildState,
    /// Lowest nonce of the exchange that created it (RFC 7296 §2.8.1 collisions).
    pub min_nonce: Vec<u8>,
    /// For a child being rekeyed by both sides at once: the child the peer's rekey made.
    pub peer_rekey: Option<ChildId>,
    /// For a child being rekeyed by us: the child our rekey made once done.
    pub our_rekey: Option<ChildId>,
    pub lifetimes: Lifetimes,
}

/// IKE SA lifecycle.
pub(crate) enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent {
        ke: Option<KeyExchange>,
        cookie: Option<Vec<u8>>,
        attempts: u8,
    },
    /// Initiator: waiting for the caller's signature before sending IKE_AUTH.
    AuthSigning {
        request: RequestId,
        child: Option<Box<ChildReq>>,
    },
    /// Initiator: IKE_AUTH sent.
    AuthSent,
    /// Initiator: waiting for the caller to verify the responder.
    AuthVerifyingResponse {
        request: RequestId,
        payloads: Vec<Payload>,
        child: Option<Box<ChildReq>>,
    },
    /// Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    InitReplied { since: Instant },
    /// Responder: waiting for the caller to verify the initiator.
    AuthVerifyingRequest {
        request: RequestId,
        msg_id: u32,
        payloads: Vec<Payload>,
        peer: Arc<PeerConfig>,
    },
    /// Responder: waiting for the caller's signature before answering IKE_AUTH.
    RespSigning {
        request: RequestId,
        msg_id: u32,
        payloads: Vec<Payload>,
    },
    /// Authenticated.
    Established,
    /// Finished; to be removed.
    Closed,
}

impl State {
    pub fn is_established(&self) -> bool {
        matches!(self, Self::Established)
    }
}

/// One IKE SA.
pub(crate) struct IkeSa {
    pub id: IkeSaId,
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub peer: Arc<PeerConfig>,
    pub state: State,
    pub suite: IkeSuite,
    pub keys: Option<IkeKeys>,
    pub sk_out: Option<SkCrypto>,
    pub sk_in: Option<SkCrypto>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub init_req: Vec<u8>,
    pub init_resp: Vec<u8>,
    pub peer_hashes: Vec<HashAlgorithm>,
    pub peer_id: Option<Identity>,
    pub local_nat: bool,
    pub remote_nat: bool,
    pub next_msg_id: u32,
    pub peer_msg_id: u32,
    pub outstanding: Option<Outstanding>,
    pub queue: VecDeque<Task>,
    pub last_response: Option<(u32, Vec<Vec<u8>>)>,
    /// The peer announced IKEV2_FRAGMENTATION_SUPPORTED (and we did too).
    pub peer_frag: bool,
    /// Fragments of a message being reassembled (RFC 7383).
    pub frags: Option<Reassembly>,
    pub children: Vec<ChildSa>,
    pub last_recv: Instant,
    pub rekey_at: Option<Instant>,
    /// Hard end of the IKE SA lifetime (if rekeying never succeeded).
    pub expire_at: Option<Instant>,
    pub keepalive_at: Option<Instant>,
    /// Set on the old SA when an IKE rekey moved its children: (new SA, its lowest nonce,
    /// whether we initiated that rekey).
    pub rekeyed: Vec<(IkeSaId, Vec<u8>, bool)>,
    /// This SA only waits to be deleted (after a rekey); its children moved.
    pub superseded: bool,
    /// The close reason once closed.
    pub closed_reason: Option<CloseReason>,
    /// Auth method and scheme of a signature we asked the caller for.
    pub pending_scheme: Option<(crate::wire::AuthMethod, crate::crypto::sig::SignatureScheme)>,
    /// When to reauthenticate (the policy's reauth interval after authentication).
    pub reauth_at: Option<Instant>,
    /// On an SA being reauthenticated: the new SA doing it.
    pub reauth_by: Option<IkeSaId>,
    /// On a new SA that reauthenticates another: that SA, until the children are re-created.
    pub reauth_of: Option<IkeSaId>,
    /// On a reauthenticating SA: the child policies (indices into `peer.children`) still to
    /// create; the first goes into IKE_AUTH.
    pub reauth_children: Vec<usize>,
    /// Failed reauthentication attempts in a row (for the back-off).
    pub reauth_failures: u32,
    /// Children a reauthentication created (reported when it completes).
    pub reauth_created: usize,
}

impl IkeSa {
    /// A new SA with no keys yet.
    #[expect(clippy::too_many_arguments, reason = "every field an SA starts with")]
    pub fn new(
        sh: &mut Shared,
        now: Instant,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        peer: Arc<PeerConfig>,
        state: State,
    ) -> Self {
        let suite = peer
            .ike_proposals
            .first()
            .copied()
            .unwrap_or(IkeSuite::DEFAULT);
        Self {
            id: sh.new_sa_id(),
            initiator,
            spi_i,
            spi_r,
            local,
            remote,
            peer,
            state,
            suite,
            keys: None,
            sk_out: None,
            sk_in: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            peer_hashes: Vec::new(),
            peer_id: None,
            local_nat: false,
            remote_nat: false,
            next_msg_id: 0,
            peer_msg_id: 0,
            outstanding: None,
            queue: VecDeque::new(),
            last_response: None,
            peer_frag: false,
            frags: None,
            children: Vec::new(),
            last_recv: now,
            rekey_at: None,
            expire_at: None,
            keepalive_at: None,
            rekeyed: Vec::new(),
            superseded: false,
            closed_reason: None,
            pending_scheme: None,
            reauth_at: None,
            reauth_by: None,
            reauth_of: None,
            reauth_children: Vec::new(),
            reauth_failures: 0,
            reauth_created: 0,
        }
    }

    /// The tracing span for this SA (`ike_sa{id, spi_i, spi_r, peer}`).
    pub fn span(&self) -> tracing::Span {
        tracing::debug_span!(
            "ike_sa",
            id = self.id.0,
            spi_i = %format_args!("{:016x}", self.spi_i),
            spi_r = %format_args!("{:016x}", self.spi_r),
            peer = %self.remote,
        )
    }

    /// Our SPI (the one peers address us by).
    pub fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    pub fn header(&self, exchange: ExchangeType, response: bool, message_id: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange,
            flags: Flags::new(self.initiator, response),
            message_id,
            length: 0,
        }
    }

    /// Installs the SK keys for this SA's role.
    pub fn set_keys(&mut self, keys: IkeKeys) -> Result<()> {
        self.sk_out = Some(keys.sk_crypto(self.initiator, &self.suite)?);
        self.sk_in = Some(keys.sk_crypto(!self.initiator, &self.suite)?);
        self.keys = Some(keys);
        Ok(())
    }

    /// Encodes and encrypts a message: one datagram, or SKF fragments (RFC 7383) when the
    /// peer supports them and the message exceeds `fragment_size`.
    pub fn protect(
        &self,
        sh: &Shared,
        exchange: ExchangeType,
        response: bool,
        message_id: u32,
        payloads: &[Payload],
    ) -> Result<Vec<Vec<u8>>> {
        let sk = self.sk_out.as_ref().ok_or(Error::InvalidState("no keys"))?;
        let (first, inner) = encode_payloads(payloads);
        let body_len = sk.sealed_len(inner.len());
        let total = HEADER_LEN + 4 + body_len;
        let limit = sh.config.fragment_size;
        if self.peer_frag && total > limit {
            return self.protect_fragments(sh, exchange, response, message_id, first, &inner);
        }
        let mut h = self.header(exchange, response, message_id);
        h.next_payload = PayloadType::SK;
        h.length = total as u32;
        let mut out = Vec::with_capacity(total);
        h.encode(&mut out);
        out.push(first.0);
        out.push(0);
        out.extend_from_slice(&((4 + body_len) as u16).to_be_bytes());
        let body = sk.seal(&out, &inner, &sh.rng)?;
        out.extend_from_slice(&body);
        Ok(vec![out])
    }

    fn protect_fragments(
        &self,
        sh: &Shared,
        exchange: ExchangeType,
        response: bool,
        message_id: u32,
        first: PayloadType,
        inner: &[u8],
    ) -> Result<Vec<Vec<u8>>> {
        let sk = self.sk_out.as_ref().ok_or(Error::InvalidState("no keys"))?;
        // Per fragment: header, SKF header with number and total, IV, padding, ICV.
        let overhead = HEADER_LEN + 8 + sk.sealed_len(0) + sk.block_len();
        let chunk = sh.config.fragment_size.saturating_sub(overhead).max(64);
        let count = inner.len().div_ceil(chunk);
        if count > MAX_FRAGMENTS {
            return Err(Error::Config(format!("message needs {count} fragments")));
        }
        let mut out = Vec::with_capacity(count);
        for (i, part) in inner.chunks(chunk).enumerate() {
            let body_len = sk.sealed_len(part.len());
            let mut h = self.header(exchange, response, message_id);
            h.next_payload = PayloadType::SKF;
            h.length = (HEADER_LEN + 8 + body_len) as u32;
            let mut d = Vec::with_capacity(HEADER_LEN + 8 + body_len);
            h.encode(&mut d);
            d.push(if i == 0 { first.0 } else { 0 });
            d.push(0);
            d.extend_from_slice(&((8 + body_len) as u16).to_be_bytes());
            d.extend_from_slice(&((i + 1) as u16).to_be_bytes());
            d.extend_from_slice(&(count as u16).to_be_bytes());
            let body = sk.seal(&d, part, &sh.rng)?;
            d.extend_from_slice(&body);
            out.push(d);
        }
        Ok(out)
    }

    /// Verifies and decrypts an SK payload, or one SKF fragment; returns the payloads once
    /// the message is complete (`None` while fragments are missing).
    pub fn unprotect_any(&mut self, raw: &[u8], msg: &Message) -> Result<Option<Vec<Payload>>> {
        let Some(Payload::EncryptedFragment(f)) = msg.payloads.last() else {
            return self.unprotect(raw, msg).map(Some);
        };
        let sk = self.sk_in.as_ref().ok_or(Error::InvalidState("no keys"))?;
        if !self.peer_frag || usize::from(f.total) > MAX_FRAGMENTS {
            return Err(Error::Protocol("unexpected IKE fragment".into()));
        }
        let prefix_len = raw
            .len()
            .checked_sub(f.data.len())
            .ok_or(Error::Protocol("SKF length".into()))?;
        let prefix = raw
            .get(..prefix_len)
            .ok_or(Error::Protocol("SKF length".into()))?;
        let pt = sk.open(prefix, &f.data)?;
        let key = (msg.header.message_id, msg.header.flags.response());
        let fresh = match &self.frags {
            Some(r) => r.key != key || r.parts.len() != usize::from(f.total),
            None => true,
        };
        if fresh {
            self.frags = Some(Reassembly {
                key,
                first_inner: PayloadType::NONE,
                parts: vec![None; usize::from(f.total)],
            });
        }
        let Some(r) = self.frags.as_mut() else {
            return Ok(None);
        };
        if f.number == 1 {
            r.first_inner = f.first_inner;
        }
        if let Some(slot) = r.parts.get_mut(usize::from(f.number) - 1) {
            *slot = Some(pt);
        }
        if r.parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let r = self.frags.take().ok_or(Error::InvalidState("reassembly"))?;
        let whole: Vec<u8> = r.parts.into_iter().flatten().flatten().collect();
        Ok(Some(decode_payloads(r.first_inner, &whole, 0)?))
    }

    /// Verifies, decrypts and decodes the SK payload of a received message.
    pub fn unprotect(&self, raw: &[u8], msg: &Message) -> Result<Vec<Payload>> {
        let sk = self.sk_in.as_ref().ok_or(Error::InvalidState("no keys"))?;
        let Some(Payload::Encrypted(e)) = msg.payloads.last() else {
            return Err(Error::Protocol("no SK payload".into()));
        };
        let prefix_len = raw
            .len()
            .checked_sub(e.data.len())
            .ok_or(Error::Protocol("SK length".into()))?;
        let prefix = raw
            .get(..prefix_len)
            .ok_or(Error::Protocol("SK length".into()))?;
        let pt = sk.open(prefix, &e.data)?;
        Ok(decode_payloads(e.first_inner, &pt, prefix_len)?)
    }

    /// Sends a protected request and tracks it for retransmission.
    pub fn send_request(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        exchange: ExchangeType,
        payloads: &[Payload],
        kind: Req,
    ) -> Result<()> {
        let msg_id = self.next_msg_id;
        let data = self.protect(sh, exchange, false, msg_id, payloads)?;
        self.next_msg_id = self.next_msg_id.wrapping_add(1);
        self.transmit_request(sh, now, exchange, msg_id, data, kind);
        Ok(())
    }

    /// Sends an already encoded request and tracks it.
    pub fn transmit_request(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        exchange: ExchangeType,
        msg_id: u32,
        data: Vec<Vec<u8>>,
        kind: Req,
    ) {
        for d in &data {
            sh.send(self.local, self.remote, d);
        }
        self.outstanding = Some(Outstanding {
            msg_id,
            exchange,
            data,
            retries: 0,
            next_at: now + sh.config.init_wait,
            kind,
        });
    }

    /// Sends a protected response and caches it for duplicate requests.
    pub fn send_response(
        &mut self,
        sh: &mut Shared,
        exchange: ExchangeType,
        msg_id: u32,
        payloads: &[Payload],
    ) -> Result<()> {
        let data = self.protect(sh, exchange, true, msg_id, payloads)?;
        for d in &data {
            sh.send(self.local, self.remote, d);
        }
        self.last_response = Some((msg_id, data));
        Ok(())
    }

    /// Answers a request with one error notify.
    pub fn respond_error(
        &mut self,
        sh: &mut Shared,
        exchange: ExchangeType,
        msg_id: u32,
        ty: NotifyType,
        data: Vec<u8>,
    ) -> Result<()> {
        self.send_response(
            sh,
            exchange,
            msg_id,
            &[Payload::Notify(Notify::new(ty, data))],
        )
    }

    /// Entry point for a datagram addressed to this SA (marker already removed).
    pub fn handle(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
    ) {
        let msg = match Message::decode(raw) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(sa = self.id.0, error = %e, "dropping malformed message");
                sh.stats.invalid_packets += 1;
                return;
            }
        };
        let h = msg.header;
        // The peer's I flag must be the opposite of our role.
        if h.flags.initiator() == self.initiator {
            sh.stats.invalid_packets += 1;
            return;
        }
        if h.flags.response() {
            self.handle_response(sh, now, local, remote, raw, msg);
        } else {
            self.handle_request(sh, now, local, remote, raw, msg);
        }
        self.drive(sh, now);
    }

    fn handle_response(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        msg: Message,
    ) {
        let Some(out) = self.outstanding.as_ref() else {
            sh.stats.invalid_packets += 1;
            return;
        };
        if out.msg_id != msg.header.message_id || out.exchange != msg.header.exchange {
            sh.stats.invalid_packets += 1;
            return;
        }
        if msg.header.exchange == ExchangeType::IKE_SA_INIT {
            self.handle_init_response(sh, now, local, remote, raw, msg);
            return;
        }
        let payloads = match self.unprotect_any(raw, &msg) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(sa = self.id.0, error = %e, "dropping unauthentic response");
                sh.stats.invalid_packets += 1;
                return;
            }
        };
        self.last_recv = now;
        let Some(out) = self.outstanding.take() else {
            return;
        };
        let result = match out.kind {
            Req::Init => Ok(()),
            Req::Auth(child) => self.handle_auth_response(sh, now, payloads, child),
            Req::CreateChild(c) => self.handle_child_response(sh, now, payloads, c),
            Req::RekeyIke(r) => self.handle_ike_rekey_response(sh, now, payloads, *r),
            Req::Delete(ids) => {
                self.handle_delete_response(sh, &ids);
                Ok(())
            }
            Req::DeleteIke => {
                let reason = if self.reauth_by.is_some() && self.superseded {
                    CloseReason::Reauthenticated
                } else if self.superseded {
                    CloseReason::Rekeyed
                } else {
                    CloseReason::LocalDeleted
                };
                self.close(sh, reason);
                Ok(())
            }
            Req::Liveness => Ok(()),
        };
        if let Err(e) = result {
            tracing::info!(sa = self.id.0, error = %e, "exchange failed");
        }
    }

    fn handle_request(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        raw: &[u8],
        msg: Message,
    ) {
        let h = msg.header;
        if h.exchange == ExchangeType::IKE_SA_INIT {
            // A retransmitted IKE_SA_INIT for a responder SA: answer from cache.
            if !self.initiator && raw == self.init_req.as_slice() && !self.init_resp.is_empty() {
                sh.stats.duplicate_requests += 1;
                sh.send(self.local, self.remote, &self.init_resp.clone());
            }
            return;
        }
        if h.message_id.wrapping_add(1) == self.peer_msg_id {
            // RFC 7383 §2.6.1: of a fragmented retransmission, only fragment 1 triggers.
            let first_fragment = match msg.payloads.last() {
                Some(Payload::EncryptedFragment(f)) => f.number == 1,
                _ => true,
            };
            if let Some((id, data)) = &self.last_response
                && *id == h.message_id
                && first_fragment
            {
                sh.stats.duplicate_requests += 1;
                for d in data.clone() {
                    sh.send(self.local, self.remote, &d);
                }
            }
            return;
        }
        if h.message_id != self.peer_msg_id {
            sh.stats.invalid_packets += 1;
            return;
        }
        let payloads = match self.unprotect_any(raw, &msg) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(Error::Decode(d)) => {
                // Authentic but malformed (RFC 7296 §2.5, §3.10.1): reject it with a notify.
                tracing::info!(sa = self.id.0, error = %d, "rejecting malformed request");
                sh.stats.invalid_packets += 1;
                self.peer_msg_id = self.peer_msg_id.wrapping_add(1);
                self.last_response = None;
                let (ty, data) = match d.critical_payload {
                    Some(t) => (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![t.0]),
                    None => (NotifyType::INVALID_SYNTAX, Vec::new()),
                };
                if let Err(e) = self.respond_error(sh, h.exchange, h.message_id, ty, data) {
                    tracing::info!(sa = self.id.0, error = %e, "could not answer");
                }
                return;
            }
            Err(e) => {
                tracing::debug!(sa = self.id.0, error = %e, "dropping unauthentic request");
                sh.stats.invalid_packets += 1;
                return;
            }
        };
        self.peer_msg_id = self.peer_msg_id.wrapping_add(1);
        self.last_response = None;
        self.last_recv = now;
        // Follow the peer's address (it may have switched to 4500 after NAT detection).
        self.local = local;
        self.remote = remote;
        let r = match h.exchange {
            ExchangeType::IKE_AUTH => self.handle_auth_request(sh, now, h.message_id, payloads),
            ExchangeType::CREATE_CHILD_SA => {
                self.handle_child_request(sh, now, h.message_id, payloads)
            }
            ExchangeType::INFORMATIONAL => {
                self.handle_info_request(sh, now, h.message_id, payloads)
            }
            other => {
                tracing::debug!(sa = self.id.0, exchange = %other, "unsupported exchange");
                Ok(())
            }
        };
        if let Err(e) = r {
            tracing::info!(sa = self.id.0, error = %e, "request failed");
        }
    }

    /// The earliest time this SA needs [`IkeSa::on_timeout`].
    pub fn next_timeout(&self, config: &EndpointConfig) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.outstanding.as_ref().map(|o| o.next_at));
        if let State::InitReplied { since } = self.state {
            consider(Some(since + config.half_open_timeout));
        }
        if self.state.is_established() {
            consider(self.rekey_at);
            consider(self.expire_at);
            consider(self.keepalive_at);
            if self.reauth_by.is_none() && !self.superseded {
                consider(self.reauth_at);
            }
            if let Some(d) = self.peer.dpd_interval
                && self.outstanding.is_none()
            {
                consider(Some(self.last_recv + d));
            }
        }
        t
    }

    /// Runs whatever is due at `now`.
    pub fn on_timeout(&mut self, sh: &mut Shared, now: Instant) {
        if let Some(out) = self.outstanding.as_mut()
            && out.next_at <= now
        {
            if out.retries >= sh.config.retries {
                tracing::info!(sa = self.id.0, "retransmissions exhausted");
                self.outstanding = None;
                self.fail(sh, CloseReason::Timeout);
                return;
            }
            out.retries += 1;
            let wait = sh.config.init_wait * 2u32.saturating_pow(out.retries);
            out.next_at = now + wait;
            if out.exchange == ExchangeType::CREATE_CHILD_SA
                && !matches!(out.kind, Req::RekeyIke(_))
            {
                sh.stats.p2_retransmit += 1;
            } else {
                sh.stats.p1_retransmit += 1;
            }
            let data = out.data.clone();
            for d in &data {
                sh.send(self.local, self.remote, d);
            }
        }
        if let State::InitReplied { since } = self.state
            && since + sh.config.half_open_timeout <= now
        {
            sh.stats.p1_remote_act_failure += 1;
            self.state = State::Closed;
            self.closed_reason = Some(CloseReason::Timeout);
            return;
        }
        if self.state.is_established() {
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
                // Rekeying never succeeded: the SA dies at the end of its lifetime.
                self.expire_at = None;
                tracing::info!(sa = self.id.0, "IKE SA lifetime expired");
                if self.outstanding.is_some() {
                    self.close(sh, CloseReason::Timeout);
                    return;
                }
                self.queue.clear();
                self.queue.push_back(Task::DeleteIke);
            }
            if let Some(r) = self.rekey_at
                && r <= now
            {
                if self.reauth_by.is_some() {
                    // A reauthentication is replacing this SA: rekeying it now would
                    // leave the new SA nothing to delete; look again shortly.
                    self.rekey_at = Some(now + REAUTH_RETRY_MIN);
                } else {
                    self.rekey_at = None;
                    if !self.superseded {
                        self.queue.push_back(Task::RekeyIke);
                    }
                }
            }
            if let Some(r) = self.reauth_at
                && r <= now
                && self.reauth_by.is_none()
                && !self.superseded
            {
                self.reauth_at = None;
                sh.reauths.push(self.id);
            }
            if let Some(d) = self.peer.dpd_interval
                && self.outstanding.is_none()
                && self.last_recv + d <= now
            {
                self.last_recv = now;
                if !self.queue.contains(&Task::Liveness) {
                    self.queue.push_back(Task::Liveness);
                }
            }
        }
        self.drive(sh, now);
    }

    /// Starts the next queued exchange if the window is free.
    pub fn drive(&mut self, sh: &mut Shared, now: Instant) {
        while self.outstanding.is_none() && self.state.is_established() {
            let Some(task) = self.queue.pop_front() else {
                return;
            };
            let r = match task {
                Task::CreateChild(i) => self.start_create_child(sh, now, i, None),
                Task::RekeyChild(c) => self.start_rekey_child(sh, now, c),
                Task::RekeyIke => self.start_ike_rekey(sh, now),
                Task::DeleteChild(c) => self.start_delete_child(sh, now, c),
                Task::DeleteIke => self.start_delete_ike(sh, now),
                Task::Liveness => {
                    self.send_request(sh, now, ExchangeType::INFORMATIONAL, &[], Req::Liveness)
                }
            };
            if let Err(e) = r {
                tracing::info!(sa = self.id.0, error = %e, "could not start exchange");
            }
        }
    }

    /// The SA failed: account for it and close.
    pub fn fail(&mut self, sh: &mut Shared, reason: CloseReason) {
        if !self.state.is_established() && !self.superseded {
            if self.initiator {
                sh.stats.p1_local_act_failure += 1;
            } else {
                sh.stats.p1_remote_act_failure += 1;
            }
        }
        self.close(sh, reason);
    }

    /// Deletes every child (events) and closes the SA.
    pub fn close(&mut self, sh: &mut Shared, reason: CloseReason) {
        if self.is_closed() {
            return;
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
        let was_up = self.keys.is_some() && self.peer_id.is_some();
        self.state = State::Closed;
        self.outstanding = None;
        self.queue.clear();
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

    /// Marks the SA established and arms its timers.
    pub fn established(&mut self, sh: &mut Shared, now: Instant) {
        self.state = State::Established;
        self.last_recv = now;
        let life = self
            .peer
            .ike_lifetime
            .saturating_sub(self.peer.rekey_margin);
        // The original responder waits a little longer, so both ends rarely rekey at once.
        let skew = if self.initiator {
            std::time::Duration::ZERO
        } else {
            self.peer.rekey_margin / 2
        };
        self.rekey_at = Some(now + life.saturating_sub(skew));
        self.expire_at = Some(now + self.peer.ike_lifetime);
        // Reauthentication: the original responder waits longer, so that when both ends
        // have an interval the original initiator normally does it.
        self.reauth_at = self.peer.reauth_interval.map(|i| {
            let skew = if self.initiator {
                std::time::Duration::ZERO
            } else {
                (i / 2).max(std::time::Duration::from_secs(30))
            };
            now + i + skew
        });
        if self.local_nat {
            self.keepalive_at = Some(now + sh.config.nat_keepalive);
        }
    }

    pub fn child_index(&self, id: ChildId) -> Option<usize> {
        self.children.iter().position(|c| c.id == id)
    }

    pub fn child_by_spi_out(&self, spi: u32) -> Option<usize> {
        self.children.iter().position(|c| c.spi_out == spi)
    }

    /// Removes a child and emits its deletion.
    pub fn remove_child(&mut self, sh: &mut Shared, idx: usize) {
        if idx < self.children.len() {
            let c = self.children.remove(idx);
            sh.child_spis.remove(&c.spi_in);
            sh.event(Event::DeleteChildSa {
                ike_sa: self.id,
                child: c.id,
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
    }

    /// A DELETE payload for children (by inbound SPI).
    pub fn delete_payload(spis: &[u32]) -> Payload {
        Payload::Delete(Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        })
    }

    /// Secret used when no keys exist (never happens once established).
    pub fn sk_d(&self) -> Result<&Secret> {
        self.keys
            .as_ref()
            .map(|k| &k.sk_d)
            .ok_or(Error::InvalidState("no keys"))
    }
}

/// Finds payloads in a decoded chain.
pub(crate) struct Find<'a>(pub &'a [Payload]);

impl<'a> Find<'a> {
    pub fn notify(&self, ty: NotifyType) -> Option<&'a Notify> {
        self.0.iter().find_map(|p| match p {
            Payload::Notify(n) if n.ty == ty => Some(n),
            _ => None,
        })
    }

    pub fn has(&self, ty: NotifyType) -> bool {
        self.notify(ty).is_some()
    }

    pub fn error(&self) -> Option<&'a Notify> {
        self.0.iter().find_map(|p| match p {
            Payload::Notify(n) if n.ty.is_error() => Some(n),
            _ => None,
        })
    }

    pub fn sa(&self) -> Option<&'a crate::wire::Sa> {
        self.0.iter().find_map(|p| match p {
            Payload::Sa(s) => Some(s),
            _ => None,
        })
    }

    pub fn ke(&self) -> Option<&'a crate::wire::Ke> {
        self.0.iter().find_map(|p| match p {
            Payload::Ke(k) => Some(k),
            _ => None,
        })
    }

    pub fn nonce(&self) -> Option<&'a [u8]> {
        self.0.iter().find_map(|p| match p {
            Payload::Nonce(n) => Some(n.as_slice()),
            _ => None,
        })
    }

    pub fn id_i(&self) -> Option<&'a crate::wire::IdPayload> {
        self.0.iter().find_map(|p| match p {
            Payload::IdI(i) => Some(i),
            _ => None,
        })
    }

    pub fn id_r(&self) -> Option<&'a crate::wire::IdPayload> {
        self.0.iter().find_map(|p| match p {
            Payload::IdR(i) => Some(i),
            _ => None,
        })
    }

    pub fn auth(&self) -> Option<&'a crate::wire::Auth> {
        self.0.iter().find_map(|p| match p {
            Payload::Auth(a) => Some(a),
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

    pub fn tsi(&self) -> Option<&'a [TrafficSelector]> {
        self.0.iter().find_map(|p| match p {
            Payload::TsI(t) => Some(t.selectors.as_slice()),
            _ => None,
        })
    }

    pub fn tsr(&self) -> Option<&'a [TrafficSelector]> {
        self.0.iter().find_map(|p| match p {
            Payload::TsR(t) => Some(t.selectors.as_slice()),
            _ => None,
        })
    }

    pub fn deletes(&self) -> impl Iterator<Item = &'a Delete> {
        self.0.iter().filter_map(|p| match p {
            Payload::Delete(d) => Some(d),
            _ => None,
        })
    }
}

/// NAT_DETECTION_*_IP data: SHA-1(SPIi | SPIr | IP | port) (RFC 7296 §2.23).
pub(crate) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        std::net::IpAddr::V4(a) => ctx.update(&a.octets()),
        std::net::IpAddr::V6(a) => ctx.update(&a.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}
