//! The endpoint: all IKE SAs of one stack, demultiplexed by SPI, with DoS protection for
//! new SAs (half-open limits, COOKIE mode) and the driver-facing API.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SecureRandom;

use crate::crypto::keys::IkeSuite;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::ikev2::config::{ChildProposal, EndpointConfig, Mode, PeerConfig};
use crate::ikev2::event::{ChildId, Event, IkeSaId, RequestId, Statistics, Transmit};
use crate::ikev2::init;
use crate::ikev2::sa::{
    ChildState, IkeSa, REAUTH_RETRY_MAX, REAUTH_RETRY_MIN, Req, Shared, State, Task,
};
use crate::wire::{ExchangeType, Header, Message, TrafficSelector};

/// How often the COOKIE secret changes (the previous one stays valid for one period).
const COOKIE_ROTATION: Duration = Duration::from_secs(120);

/// A snapshot of one IKE SA for displays (NMI GET_IKETUN and friends).
#[derive(Debug, Clone)]
pub struct IkeSaInfo {
    /// Handle.
    pub id: IkeSaId,
    /// Policy name.
    pub peer: String,
    /// Whether we are the original initiator.
    pub initiator: bool,
    /// SPIs (initiator, responder).
    pub spis: (u64, u64),
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// State name.
    pub state: &'static str,
    /// Authenticated peer identity.
    pub peer_id: Option<Identity>,
    /// NAT in front of us / the peer.
    pub nat: (bool, bool),
    /// The negotiated algorithms, once IKE_SA_INIT has chosen them (None before).
    pub suite: Option<IkeSuite>,
    /// Child SAs.
    pub children: Vec<ChildInfo>,
    /// The policy's reauthentication interval (None: never).
    pub reauth_interval: Option<Duration>,
    /// When the next reauthentication starts (None: never, or one is under way).
    pub reauth_at: Option<Instant>,
}

/// A snapshot of one child SA.
#[derive(Debug, Clone)]
pub struct ChildInfo {
    /// Handle.
    pub id: ChildId,
    /// Policy name.
    pub name: String,
    /// Inbound SPI.
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Mode.
    pub mode: Mode,
    /// State name.
    pub state: &'static str,
    /// Local selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// Remote selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// The negotiated proposal (ESP algorithms, ESN, PFS group).
    pub proposal: ChildProposal,
}

/// All IKE SAs of one stack.
pub struct Endpoint {
    sh: Shared,
    sas: HashMap<IkeSaId, IkeSa>,
    by_spi: HashMap<u64, IkeSaId>,
    half_open: HashMap<(SocketAddr, u64), IkeSaId>,
    half_open_of: HashMap<IkeSaId, (SocketAddr, u64)>,
    half_open_per_ip: HashMap<IpAddr, usize>,
    /// Every SA's next deadline, ordered: `poll_timeout` and `handle_timeout` cost
    /// O(log n), not O(n).
    deadlines: BTreeSet<(Instant, IkeSaId)>,
    deadline_of: HashMap<IkeSaId, Instant>,
    /// SAs an input touched; `after` reschedules or removes them.
    touched: Vec<IkeSaId>,
    cookie: ([u8; 32], [u8; 32], u8),
    cookie_rotate_at: Option<Instant>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("ike_sas", &self.sas.len())
            .field("half_open", &self.half_open.len())
            .finish()
    }
}

impl Endpoint {
    /// An endpoint with no peers.
    pub fn new(config: EndpointConfig) -> Self {
        let sh = Shared::new(config);
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        let _ = sh.rng.fill(&mut a);
        let _ = sh.rng.fill(&mut b);
        Self {
            sh,
            sas: HashMap::new(),
            by_spi: HashMap::new(),
            half_open: HashMap::new(),
            half_open_of: HashMap::new(),
            half_open_per_ip: HashMap::new(),
            deadlines: BTreeSet::new(),
            deadline_of: HashMap::new(),
            touched: Vec::new(),
            cookie: (a, b, 0),
            cookie_rotate_at: None,
        }
    }

    /// Replaces the peer policies (existing SAs keep the policy they were made with).
    pub fn set_peers(&mut self, peers: Vec<PeerConfig>) {
        self.sh.peers = peers.into_iter().map(Arc::new).collect();
    }

    /// Adds one peer policy.
    pub fn add_peer(&mut self, peer: PeerConfig) {
        self.sh.peers.push(Arc::new(peer));
    }

    /// Tells the engine the wall-clock time (seconds since the Unix epoch) for certificate
    /// validity checks. Call it at least every few minutes.
    pub fn set_unix_time(&mut self, secs: u64) {
        self.sh.unix_time = secs;
    }

    /// Starts an IKE SA (and its first child SA) with the named peer policy.
    pub fn connect(
        &mut self,
        now: Instant,
        peer: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSaId> {
        let p = self
            .sh
            .peers
            .iter()
            .find(|p| p.name == peer)
            .cloned()
            .ok_or_else(|| Error::Config(format!("no peer policy named {peer:?}")))?;
        let sa = init::initiate(&mut self.sh, now, p, local, remote)?;
        let id = sa.id;
        self.by_spi.insert(sa.spi_i, id);
        self.sas.insert(id, sa);
        self.touched.push(id);
        self.after(now);
        Ok(id)
    }

    fn with_sa<T>(
        &mut self,
        now: Instant,
        id: IkeSaId,
        f: impl FnOnce(&mut IkeSa, &mut Shared) -> Result<T>,
    ) -> Result<T> {
        let sa = self.sas.get_mut(&id).ok_or(Error::Unknown("IKE SA"))?;
        let _span = sa.span().entered();
        let r = f(sa, &mut self.sh);
        sa.drive(&mut self.sh, now);
        self.touched.push(id);
        self.after(now);
        r
    }

    fn owner_of(&self, child: ChildId) -> Option<IkeSaId> {
        self.sas
            .values()
            .find(|s| !s.is_closed() && s.children.iter().any(|c| c.id == child))
            .map(|s| s.id)
    }

    /// Negotiates another child SA (policy `index` of the SA's peer) with CREATE_CHILD_SA.
    pub fn create_child(&mut self, now: Instant, sa: IkeSaId, index: usize) -> Result<()> {
        self.with_sa(now, sa, |s, _| {
            s.queue.push_back(Task::CreateChild(index));
            Ok(())
        })
    }

    /// Rekeys a child SA (on the kernel's soft expiry): the new SA is installed before the
    /// old one is deleted.
    pub fn rekey_child(&mut self, now: Instant, child: ChildId) -> Result<()> {
        let sa = self.owner_of(child).ok_or(Error::Unknown("child SA"))?;
        self.with_sa(now, sa, |s, _| {
            s.queue.push_back(Task::RekeyChild(child));
            Ok(())
        })
    }

    /// Rekeys an IKE SA.
    pub fn rekey_ike(&mut self, now: Instant, sa: IkeSaId) -> Result<()> {
        self.with_sa(now, sa, |s, _| {
            s.queue.push_back(Task::RekeyIke);
            Ok(())
        })
    }

    /// Deletes a child SA (INFORMATIONAL with DELETE).
    pub fn delete_child(&mut self, now: Instant, child: ChildId) -> Result<()> {
        let sa = self.owner_of(child).ok_or(Error::Unknown("child SA"))?;
        self.with_sa(now, sa, |s, _| {
            s.queue.push_back(Task::DeleteChild(child));
            Ok(())
        })
    }

    /// Deletes an IKE SA and its children; before it is established, abandons it.
    pub fn delete_ike(&mut self, now: Instant, sa: IkeSaId) -> Result<()> {
        self.with_sa(now, sa, |s, sh| {
            if s.state.is_established() {
                s.queue.push_back(Task::DeleteIke);
            } else {
                s.fail(sh, crate::ikev2::event::CloseReason::LocalDeleted);
            }
            Ok(())
        })
    }

    /// Sends a liveness check (empty INFORMATIONAL) now.
    pub fn liveness_check(&mut self, now: Instant, sa: IkeSaId) -> Result<()> {
        self.with_sa(now, sa, |s, _| {
            s.queue.push_back(Task::Liveness);
            Ok(())
        })
    }

    /// A UDP datagram arrived on `local` from `remote`. On the NAT-T port the non-ESP marker
    /// is expected and removed; ESP and NAT keepalives there are ignored.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let nat_t = self.sh.config.nat_t_port;
        let data = if local.port() == nat_t || remote.port() == nat_t {
            match data {
                [0xff] => return,
                [0, 0, 0, 0, rest @ ..] => rest,
                _ => return,
            }
        } else {
            data
        };
        let Some(h) = Header::peek(data) else {
            self.sh.stats.invalid_packets += 1;
            return;
        };
        let target = if h.flags.initiator() {
            if h.spi_r == 0 {
                if h.exchange != ExchangeType::IKE_SA_INIT
                    || h.flags.response()
                    || h.message_id != 0
                {
                    self.sh.stats.invalid_packets += 1;
                    return;
                }
                match self.half_open.get(&(remote, h.spi_i)) {
                    Some(id) => Some(*id),
                    None => {
                        self.new_responder(now, local, remote, data);
                        self.after(now);
                        return;
                    }
                }
            } else {
                self.by_spi.get(&h.spi_r).copied()
            }
        } else {
            self.by_spi.get(&h.spi_i).copied()
        };
        let Some(id) = target else {
            self.sh.stats.invalid_packets += 1;
            return;
        };
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if sa.spi_i != h.spi_i || (h.spi_r != 0 && sa.spi_r != 0 && sa.spi_r != h.spi_r) {
            self.sh.stats.invalid_packets += 1;
            return;
        }
        let _span = sa.span().entered();
        sa.handle(&mut self.sh, now, local, remote, data);
        self.touched.push(id);
        self.after(now);
    }

    fn rotate_cookie(&mut self, now: Instant) {
        match self.cookie_rotate_at {
            Some(t) if t > now => {}
            _ => {
                let mut fresh = [0u8; 32];
                let _ = self.sh.rng.fill(&mut fresh);
                self.cookie.1 = self.cookie.0;
                self.cookie.0 = fresh;
                self.cookie.2 = self.cookie.2.wrapping_add(1);
                self.cookie_rotate_at = Some(now + COOKIE_ROTATION);
            }
        }
    }

    fn new_responder(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, data: &[u8]) {
        let msg = match Message::decode(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(peer = %remote, error = %e, "malformed IKE_SA_INIT");
                self.sh.stats.invalid_packets += 1;
                if let (Some(t), Some(h)) = (e.critical_payload, Header::peek(data)) {
                    init::stateless_reply(
                        &mut self.sh,
                        local,
                        remote,
                        &h,
                        crate::wire::NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                        vec![t.0],
                    );
                }
                return;
            }
        };
        let cfg = &self.sh.config;
        let half_open = self.half_open.len();
        if self.sas.len() >= cfg.max_ike_sas || half_open >= cfg.half_open_limit {
            tracing::warn!(peer = %remote, half_open, "IKE_SA_INIT dropped: SA limit reached");
            self.sh.stats.invalid_packets += 1;
            return;
        }
        let per_peer = self
            .half_open_per_ip
            .get(&remote.ip())
            .copied()
            .unwrap_or(0);
        if per_peer >= cfg.half_open_per_peer {
            tracing::warn!(peer = %remote, per_peer, "IKE_SA_INIT dropped: per-peer half-open limit");
            self.sh.stats.invalid_packets += 1;
            return;
        }
        let cookie_mode = half_open >= cfg.cookie_threshold;
        // The first policy for this address that accepts one of the offered proposals
        // (the identity may still switch the policy in IKE_AUTH); else the first one for
        // the address, which then answers NO_PROPOSAL_CHOSEN.
        let for_addr = |p: &&Arc<PeerConfig>| {
            p.remote_addrs.is_empty() || p.remote_addrs.contains(&remote.ip())
        };
        let offer = msg.payloads.iter().find_map(|p| match p {
            crate::wire::Payload::Sa(s) => Some(s),
            _ => None,
        });
        let Some(peer) = self
            .sh
            .peers
            .iter()
            .filter(for_addr)
            .find(|p| {
                offer.is_some_and(|o| {
                    crate::ikev2::proposal::select_ike(o, &p.ike_proposals, &[]).is_some()
                })
            })
            .or_else(|| self.sh.peers.iter().find(for_addr))
            .cloned()
        else {
            tracing::info!(peer = %remote, "IKE_SA_INIT from an address no policy covers");
            self.sh.stats.invalid_packets += 1;
            return;
        };
        if cookie_mode {
            self.rotate_cookie(now);
        }
        let (cur, prev, ver) = self.cookie;
        let cookie = cookie_mode.then_some((ver, &cur[..], &prev[..]));
        if let Some(sa) = init::respond(&mut self.sh, now, peer, local, remote, data, &msg, cookie)
        {
            let id = sa.id;
            self.by_spi.insert(sa.spi_r, id);
            self.half_open.insert((remote, sa.spi_i), id);
            self.half_open_of.insert(id, (remote, sa.spi_i));
            *self.half_open_per_ip.entry(remote.ip()).or_default() += 1;
            self.sas.insert(id, sa);
            self.touched.push(id);
        }
    }

    /// Runs timers due at `now` (retransmissions, half-open expiry, rekeys, DPD, keepalives).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.remove(&(t, id));
            self.deadline_of.remove(&id);
            if let Some(sa) = self.sas.get_mut(&id) {
                let _span = sa.span().entered();
                sa.on_timeout(&mut self.sh, now);
            }
            self.touched.push(id);
        }
        self.after(now);
    }

    /// The caller's answer to [`Event::SignRequest`] (ECDSA signatures DER-encoded).
    pub fn handle_signature(
        &mut self,
        now: Instant,
        id: RequestId,
        result: std::result::Result<Vec<u8>, String>,
    ) {
        let Some(sa_id) = self.sh.requests.remove(&id) else {
            return;
        };
        if let Some(sa) = self.sas.get_mut(&sa_id) {
            let _span = sa.span().entered();
            sa.on_signature(
                &mut self.sh,
                now,
                id,
                result.map_err(Error::AuthenticationFailed),
            );
            sa.drive(&mut self.sh, now);
        }
        self.touched.push(sa_id);
        self.after(now);
    }

    /// The caller's answer to [`Event::VerifyRequest`].
    pub fn handle_verification(
        &mut self,
        now: Instant,
        id: RequestId,
        result: std::result::Result<(), String>,
    ) {
        let Some(sa_id) = self.sh.requests.remove(&id) else {
            return;
        };
        if let Some(sa) = self.sas.get_mut(&sa_id) {
            let _span = sa.span().entered();
            sa.on_verification(
                &mut self.sh,
                now,
                id,
                result.map_err(Error::AuthenticationFailed),
            );
        }
        self.touched.push(sa_id);
        self.after(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.sh.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.sh.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Counters and gauges (NMsecStatistics).
    pub fn statistics(&self) -> Statistics {
        let mut s = self.sh.stats;
        s.p1_active = 0;
        s.p1_in_progress = 0;
        s.p1_expired = 0;
        s.p2_active = 0;
        s.p2_in_progress = 0;
        for sa in self.sas.values() {
            if sa.is_closed() {
                continue;
            }
            if sa.state.is_established() {
                if sa.superseded {
                    s.p1_expired += 1;
                } else {
                    s.p1_active += 1;
                }
            } else {
                s.p1_in_progress += 1;
            }
            s.p2_active += sa.children.len() as u32;
            if let Some(o) = &sa.outstanding
                && matches!(o.kind, Req::CreateChild(_) | Req::Auth(Some(_)))
            {
                s.p2_in_progress += 1;
            }
        }
        s
    }

    /// Snapshots of all IKE SAs.
    pub fn ike_sas(&self) -> Vec<IkeSaInfo> {
        let mut v: Vec<IkeSaInfo> = self
            .sas
            .values()
            .filter(|s| !s.is_closed())
            .map(|s| IkeSaInfo {
                id: s.id,
                peer: s.peer.name.clone(),
                initiator: s.initiator,
                spis: (s.spi_i, s.spi_r),
                local: s.local,
                remote: s.remote,
                state: match (&s.state, s.superseded) {
                    (State::Established, true) => "REKEYED",
                    (State::Established, false) => "DONE",
                    (State::Closed, _) => "CLOSED",
                    (State::InitReplied { .. }, _) => "HALF-OPEN",
                    _ => "PENDING",
                },
                peer_id: s.peer_id.clone(),
                nat: (s.local_nat, s.remote_nat),
                suite: s.keys.is_some().then_some(s.suite),
                reauth_interval: s.peer.reauth_interval,
                reauth_at: s
                    .reauth_at
                    .filter(|_| s.reauth_by.is_none() && !s.superseded),
                children: s
                    .children
                    .iter()
                    .map(|c| ChildInfo {
                        id: c.id,
                        name: c.config.name.clone(),
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        mode: c.mode,
                        state: match c.state {
                            ChildState::Installed => "ACTIVE",
                            ChildState::Rekeying => "REKEYING",
                            ChildState::Rekeyed => "REKEYED",
                            ChildState::Deleting => "DELETING",
                        },
                        local_ts: c.local_ts.clone(),
                        remote_ts: c.remote_ts.clone(),
                        proposal: c.proposal,
                    })
                    .collect(),
            })
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// Reauthentication (RFC 7296 §2.8.3, make-before-break): starts a new IKE SA for every
    /// SA whose time came, deletes the old SA once the new one has re-created its children,
    /// and keeps the old SA (retrying later) when the new one fails.
    fn reauthenticate(&mut self, now: Instant) {
        for old in std::mem::take(&mut self.sh.reauths) {
            let Some(o) = self.sas.get(&old) else {
                continue;
            };
            if !o.state.is_established() || o.superseded || o.reauth_by.is_some() {
                continue;
            }
            let (peer, local, remote) = (o.peer.clone(), o.local, o.remote);
            let mut kids: Vec<usize> = Vec::new();
            for c in &o.children {
                if matches!(c.state, ChildState::Rekeyed | ChildState::Deleting) {
                    continue;
                }
                match peer.children.iter().position(|p| p.name == c.config.name) {
                    Some(i) if !kids.contains(&i) => kids.push(i),
                    Some(_) => {}
                    None => tracing::info!(
                        sa = old.0,
                        child = c.config.name,
                        "reauthentication: the child's policy is gone; it is not re-created"
                    ),
                }
            }
            let _span = o.span().entered();
            match init::initiate(&mut self.sh, now, peer, local, remote) {
                Ok(mut sa) => {
                    let new = sa.id;
                    sa.reauth_of = Some(old);
                    sa.reauth_children = kids;
                    tracing::info!(sa = old.0, new = new.0, "reauthentication started");
                    self.by_spi.insert(sa.spi_i, new);
                    self.sas.insert(new, sa);
                    self.touched.push(new);
                    if let Some(o) = self.sas.get_mut(&old) {
                        o.reauth_by = Some(new);
                    }
                    self.sh.event(Event::IkeSaReauthStarted { old, new });
                }
                Err(e) => {
                    tracing::warn!(sa = old.0, error = %e, "reauthentication could not start");
                    if let Some(o) = self.sas.get_mut(&old) {
                        o.reauth_at = Some(now + REAUTH_RETRY_MIN);
                    }
                }
            }
            self.touched.push(old);
        }
        let mut more = Vec::new();
        for &id in &self.touched {
            let Some(sa) = self.sas.get_mut(&id) else {
                continue;
            };
            let Some(old) = sa.reauth_of else {
                continue;
            };
            if sa.is_closed() {
                // Failed before its children were re-created: the old SA stays.
                sa.reauth_of = None;
                let reason = sa
                    .closed_reason
                    .clone()
                    .unwrap_or(crate::ikev2::event::CloseReason::Timeout);
                if let Some(o) = self.sas.get_mut(&old) {
                    o.reauth_by = None;
                    o.reauth_failures = o.reauth_failures.saturating_add(1);
                    let retry_in = REAUTH_RETRY_MIN
                        .saturating_mul(1 << o.reauth_failures.saturating_sub(1).min(8))
                        .min(REAUTH_RETRY_MAX);
                    o.reauth_at = Some(now + retry_in);
                    tracing::warn!(
                        sa = old.0,
                        new = id.0,
                        ?reason,
                        ?retry_in,
                        "reauthentication failed; the IKE SA stays"
                    );
                    self.sh.event(Event::IkeSaReauthFailed {
                        old,
                        new: id,
                        reason,
                        retry_in,
                    });
                    more.push(old);
                }
                continue;
            }
            if sa.state.is_established()
                && sa.outstanding.is_none()
                && sa.reauth_children.is_empty()
                && !sa.queue.iter().any(|t| matches!(t, Task::CreateChild(_)))
            {
                sa.reauth_of = None;
                let children = sa.reauth_created;
                self.sh.event(Event::IkeSaReauthenticated {
                    old,
                    new: id,
                    children,
                });
                if let Some(o) = self.sas.get_mut(&old)
                    && !o.is_closed()
                {
                    tracing::info!(
                        sa = old.0,
                        new = id.0,
                        children,
                        "reauthenticated; deleting the old IKE SA"
                    );
                    o.superseded = true;
                    o.queue.clear();
                    o.queue.push_back(Task::DeleteIke);
                    o.drive(&mut self.sh, now);
                    more.push(old);
                }
            }
        }
        self.touched.extend(more);
    }

    /// Housekeeping after every input: adopt SAs made by IKE rekeys, move children, apply
    /// INITIAL_CONTACT, then reschedule or remove every SA the input touched.
    fn after(&mut self, now: Instant) {
        for mut sa in std::mem::take(&mut self.sh.spawned) {
            sa.drive(&mut self.sh, now);
            self.by_spi.insert(sa.local_spi(), sa.id);
            self.touched.push(sa.id);
            self.sas.insert(sa.id, sa);
        }
        for (from, to) in std::mem::take(&mut self.sh.moves) {
            let kids = self
                .sas
                .get_mut(&from)
                .map(|s| std::mem::take(&mut s.children))
                .unwrap_or_default();
            if let Some(t) = self.sas.get_mut(&to) {
                t.children.extend(kids);
            }
            self.touched.extend([from, to]);
        }
        for id in std::mem::take(&mut self.sh.initial_contacts) {
            // RFC 7296 §2.4: the peer rebooted; drop its older SAs without telling it.
            let Some((peer_id, ip)) = self
                .sas
                .get(&id)
                .and_then(|s| Some((s.peer_id.clone()?, s.remote.ip())))
            else {
                continue;
            };
            let stale: Vec<IkeSaId> = self
                .sas
                .values()
                .filter(|s| {
                    s.id != id && s.remote.ip() == ip && s.peer_id.as_ref() == Some(&peer_id)
                })
                .map(|s| s.id)
                .collect();
            for old in stale {
                if let Some(s) = self.sas.get_mut(&old) {
                    tracing::info!(sa = old.0, peer = %peer_id, "INITIAL_CONTACT: dropping stale IKE SA");
                    s.close(
                        &mut self.sh,
                        crate::ikev2::event::CloseReason::InitialContact,
                    );
                }
                self.touched.push(old);
            }
        }
        self.reauthenticate(now);
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            if let Some(t) = self.deadline_of.remove(&id) {
                self.deadlines.remove(&(t, id));
            }
            let Some(sa) = self.sas.get(&id) else {
                continue;
            };
            let still_half_open = matches!(
                sa.state,
                State::InitReplied { .. }
                    | State::AuthVerifyingRequest { .. }
                    | State::RespSigning { .. }
            );
            if (!still_half_open || sa.is_closed())
                && let Some(key) = self.half_open_of.remove(&id)
            {
                self.half_open.remove(&key);
                if let Some(n) = self.half_open_per_ip.get_mut(&key.0.ip()) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.half_open_per_ip.remove(&key.0.ip());
                    }
                }
            }
            if sa.is_closed() {
                let spi = sa.local_spi();
                self.sas.remove(&id);
                self.by_spi.remove(&spi);
                self.sh.ike_spis.remove(&spi);
                self.sh.requests.retain(|_, v| *v != id);
                continue;
            }
            if let Some(t) = sa.next_timeout(&self.sh.config) {
                self.deadlines.insert((t, id));
                self.deadline_of.insert(id, t);
            }
        }
    }
}
