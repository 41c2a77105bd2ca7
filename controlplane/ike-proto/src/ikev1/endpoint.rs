//! The IKEv1 endpoint: every ISAKMP SA of one stack, demultiplexed by cookies, with the
//! same driver-facing interface and output types as [`crate::ikev2::Endpoint`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{ExchangeMode, V1Peer};
use super::crypto::HashAlg;
use super::sa::{Action, IsakmpSa, P1State, Shared, Task};
use super::wire::{ExchangeType, Header, P1Auth};
use crate::crypto::encr::EncrAlg;
use crate::crypto::integ::IntegAlg;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::ikev2::config::{EndpointConfig, Lifetimes, Mode};
use crate::ikev2::event::{ChildId, CloseReason, Event, IkeSaId, RequestId, Statistics, Transmit};
use crate::wire::{DhGroup, TrafficSelector};

/// A snapshot of one ISAKMP SA for displays (NMI GET_IKETUN, `ike cmd=list`).
#[derive(Debug, Clone)]
pub struct V1SaInfo {
    /// Handle.
    pub id: IkeSaId,
    /// Policy name.
    pub peer: String,
    /// Whether we initiated phase 1.
    pub initiator: bool,
    /// Main or aggressive.
    pub mode: ExchangeMode,
    /// Cookies (initiator, responder).
    pub cookies: (u64, u64),
    /// Local address.
    pub local: SocketAddr,
    /// Remote address.
    pub remote: SocketAddr,
    /// State: `DONE`, `PENDING`, `REKEYED`.
    pub state: &'static str,
    /// Authenticated peer identity.
    pub peer_id: Option<Identity>,
    /// NAT in front of us / the peer.
    pub nat: (bool, bool),
    /// Negotiated cipher, hash, group and authentication method (once chosen).
    pub algorithms: Option<(EncrAlg, HashAlg, DhGroup, P1Auth)>,
    /// Negotiated lifetime.
    pub lifetime: Duration,
    /// Time since phase 1 completed.
    pub age: Option<Duration>,
    /// Time until the SA is replaced by a new phase 1 (`LifetimeRefresh`), if scheduled.
    pub rekey_in: Option<Duration>,
    /// Time until the SA expires (`LifetimeExpires`), if established.
    pub expires_in: Option<Duration>,
    /// Child SAs.
    pub children: Vec<V1ChildInfo>,
}

/// A snapshot of one IKEv1 child SA.
#[derive(Debug, Clone)]
pub struct V1ChildInfo {
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
    /// ESP encryption.
    pub encr: EncrAlg,
    /// ESP integrity.
    pub integ: Option<IntegAlg>,
    /// PFS group.
    pub pfs: Option<DhGroup>,
    /// UDP encapsulation.
    pub encap: bool,
    /// Whether we initiated the quick mode.
    pub initiator: bool,
    /// Local selector.
    pub local_ts: TrafficSelector,
    /// Remote selector.
    pub remote_ts: TrafficSelector,
    /// Kernel lifetimes.
    pub lifetimes: Lifetimes,
    /// Replaced by a newer child (rekeyed).
    pub replaced: bool,
    /// Age.
    pub age: Duration,
}

/// Whether a datagram (without the non-ESP marker) is an ISAKMP/IKEv1 message: the major
/// version in the header is 1. The driver routes those here and the rest (major version
/// 2) to [`crate::ikev2::Endpoint`].
pub fn is_ikev1(data: &[u8]) -> bool {
    data.get(17).is_some_and(|v| v >> 4 == 1)
}

/// All ISAKMP SAs of one stack.
pub struct Endpoint {
    sh: Shared,
    sas: HashMap<IkeSaId, IsakmpSa>,
    by_cookies: HashMap<(u64, u64), IkeSaId>,
    initiating: HashMap<u64, IkeSaId>,
    half_open: HashMap<(SocketAddr, u64), IkeSaId>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ikev1::Endpoint")
            .field("isakmp_sas", &self.sas.len())
            .field("half_open", &self.half_open.len())
            .finish()
    }
}

impl Endpoint {
    /// An endpoint with no peers. It uses the same [`EndpointConfig`] as IKEv2 (IkeRetries,
    /// IkeInitWait, half-open limits, NAT-T port and keepalive).
    pub fn new(config: EndpointConfig) -> Self {
        Self {
            sh: Shared::new(config),
            sas: HashMap::new(),
            by_cookies: HashMap::new(),
            initiating: HashMap::new(),
            half_open: HashMap::new(),
        }
    }

    /// Replaces the peer policies (existing SAs keep the policy they were made with).
    pub fn set_peers(&mut self, peers: Vec<V1Peer>) {
        self.sh.peers = peers.into_iter().map(Arc::new).collect();
    }

    /// Adds one peer policy.
    pub fn add_peer(&mut self, peer: V1Peer) {
        self.sh.peers.push(Arc::new(peer));
    }

    /// The wall-clock time (seconds since the Unix epoch) for certificate validity.
    pub fn set_unix_time(&mut self, secs: u64) {
        self.sh.unix_time = secs;
    }

    fn policy(&self, peer: &str) -> Result<Arc<V1Peer>> {
        self.sh
            .peers
            .iter()
            .find(|p| p.peer.name == peer)
            .cloned()
            .ok_or_else(|| Error::Config(format!("no IKEv1 peer policy named {peer:?}")))
    }

    fn insert(&mut self, sa: IsakmpSa) -> IkeSaId {
        let id = sa.id;
        if sa.initiator && sa.cky_r == 0 {
            self.initiating.insert(sa.cky_i, id);
        } else {
            self.by_cookies.insert((sa.cky_i, sa.cky_r), id);
        }
        self.sas.insert(id, sa);
        id
    }

    /// Starts phase 1 with the named policy and, once it is up, quick mode for its first
    /// child policy.
    pub fn connect(
        &mut self,
        now: Instant,
        peer: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<IkeSaId> {
        let p = self.policy(peer)?;
        let mut sa = IsakmpSa::initiate(&mut self.sh, now, p.clone(), local, remote, None)?;
        if !p.peer.children.is_empty() {
            sa.queue.push_back(Task::Quick {
                config: 0,
                replaces: None,
            });
        }
        let id = self.insert(sa);
        self.after(now);
        Ok(id)
    }

    fn with_sa<T>(
        &mut self,
        now: Instant,
        id: IkeSaId,
        f: impl FnOnce(&mut IsakmpSa, &mut Shared) -> Result<T>,
    ) -> Result<T> {
        let sa = self.sas.get_mut(&id).ok_or(Error::Unknown("ISAKMP SA"))?;
        if sa.is_closed() {
            return Err(Error::Unknown("ISAKMP SA"));
        }
        let r = f(sa, &mut self.sh);
        sa.drive(&mut self.sh, now);
        self.after(now);
        r
    }

    fn owner_of(&self, child: ChildId) -> Option<IkeSaId> {
        self.sas
            .values()
            .find(|s| !s.is_closed() && s.children.iter().any(|c| c.id == child))
            .map(|s| s.id)
    }

    /// Negotiates another child SA (child policy `index` of the SA's peer) with quick mode.
    pub fn create_child(&mut self, now: Instant, sa: IkeSaId, index: usize) -> Result<()> {
        self.with_sa(now, sa, |s, _| {
            if index >= s.peer.peer.children.len() {
                return Err(Error::Unknown("child policy"));
            }
            s.queue.push_back(Task::Quick {
                config: index,
                replaces: None,
            });
            Ok(())
        })
    }

    /// Rekeys a child SA (on the kernel's soft expiry). Nothing happens when a newer child
    /// for the same policy already exists (the peer rekeyed first); the old child is
    /// deleted shortly after its replacement is installed.
    pub fn rekey_child(&mut self, now: Instant, child: ChildId) -> Result<()> {
        let sa = self.owner_of(child).ok_or(Error::Unknown("child SA"))?;
        let newer = {
            let s = self.sas.get(&sa).ok_or(Error::Unknown("ISAKMP SA"))?;
            let c = s
                .children
                .iter()
                .find(|c| c.id == child)
                .ok_or(Error::Unknown("child SA"))?;
            c.replaced
                || s.children.iter().any(|o| {
                    o.id != child && o.config == c.config && !o.replaced && o.created > c.created
                })
                || s.quick
                    .values()
                    .any(|q| q.is_pending() && q.config == c.config)
        };
        if newer {
            if let Some(c) = self
                .sas
                .get_mut(&sa)
                .and_then(|s| s.children.iter_mut().find(|c| c.id == child))
            {
                c.replaced = true;
            }
            return Ok(());
        }
        self.with_sa(now, sa, |s, _| {
            let config = s
                .children
                .iter()
                .find(|c| c.id == child)
                .map(|c| c.config)
                .ok_or(Error::Unknown("child SA"))?;
            s.queue.push_back(Task::Quick {
                config,
                replaces: Some(child),
            });
            Ok(())
        })
    }

    /// Replaces an ISAKMP SA by a new phase 1 with the same peer; its children move over.
    pub fn rekey_ike(&mut self, now: Instant, sa: IkeSaId) -> Result<()> {
        if !self.sas.get(&sa).is_some_and(IsakmpSa::is_established) {
            return Err(Error::Unknown("ISAKMP SA"));
        }
        self.sh.actions.push(Action::Rekey(sa));
        self.after(now);
        Ok(())
    }

    /// Deletes a child SA (informational DELETE).
    pub fn delete_child(&mut self, now: Instant, child: ChildId) -> Result<()> {
        let sa = self.owner_of(child).ok_or(Error::Unknown("child SA"))?;
        self.with_sa(now, sa, |s, _| {
            s.queue.push_back(Task::DeleteChild(child));
            Ok(())
        })
    }

    /// Deletes an ISAKMP SA and its children (DELETEs for each), or abandons phase 1.
    pub fn delete_ike(&mut self, now: Instant, sa: IkeSaId) -> Result<()> {
        self.with_sa(now, sa, |s, sh| {
            if s.is_established() {
                s.queue.push_back(Task::DeleteAll);
            } else {
                s.fail(sh, CloseReason::LocalDeleted);
            }
            Ok(())
        })
    }

    /// Sends an R-U-THERE now (if the peer speaks DPD).
    pub fn liveness_check(&mut self, now: Instant, sa: IkeSaId) -> Result<()> {
        self.with_sa(now, sa, |s, sh| {
            s.last_recv = now
                .checked_sub(Duration::from_secs(86400 * 365))
                .unwrap_or(now);
            s.dpd_timer(sh, now);
            Ok(())
        })
    }

    /// A UDP datagram arrived on `local` from `remote`. On the NAT-T port the non-ESP
    /// marker is expected and removed; ESP and NAT keepalives there are ignored.
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
        let h = match Header::decode(data) {
            Ok(h) => h,
            Err(e) => {
                tracing::debug!(peer = %remote, error = %e, "malformed ISAKMP header");
                self.sh.stats.invalid_packets += 1;
                return;
            }
        };
        let target = if h.cookie_r == 0 {
            match h.exchange {
                ExchangeType::IDENTITY_PROTECTION | ExchangeType::AGGRESSIVE
                    if !h.flags.encrypted() && h.message_id == 0 =>
                {
                    match self.half_open.get(&(remote, h.cookie_i)) {
                        Some(id) => Some(*id),
                        None => {
                            self.new_responder(now, local, remote, data, &h);
                            self.after(now);
                            return;
                        }
                    }
                }
                ExchangeType::INFORMATIONAL => self.initiating.get(&h.cookie_i).copied(),
                _ => None,
            }
        } else {
            self.by_cookies
                .get(&(h.cookie_i, h.cookie_r))
                .or_else(|| self.initiating.get(&h.cookie_i))
                .copied()
        };
        let Some(id) = target else {
            self.sh.stats.invalid_packets += 1;
            return;
        };
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if sa.is_closed() {
            return;
        }
        match h.exchange {
            ExchangeType::IDENTITY_PROTECTION | ExchangeType::AGGRESSIVE => {
                sa.handle_p1(&mut self.sh, now, local, remote, data, &h)
            }
            ExchangeType::QUICK => sa.handle_quick(&mut self.sh, now, data, &h),
            ExchangeType::INFORMATIONAL => {
                sa.handle_info(&mut self.sh, now, local, remote, data, &h)
            }
            _ => self.sh.stats.invalid_packets += 1,
        }
        sa.drive(&mut self.sh, now);
        if sa.initiator && sa.cky_r != 0 && self.initiating.remove(&sa.cky_i).is_some() {
            self.by_cookies.insert((sa.cky_i, sa.cky_r), id);
        }
        self.after(now);
    }

    fn new_responder(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        h: &Header,
    ) {
        let cfg = &self.sh.config;
        if self.sas.len() >= cfg.max_ike_sas || self.half_open.len() >= cfg.half_open_limit {
            tracing::warn!(peer = %remote, "IKEv1 phase 1 dropped: SA limit reached");
            self.sh.stats.invalid_packets += 1;
            return;
        }
        let per_peer = self
            .half_open
            .keys()
            .filter(|(a, _)| a.ip() == remote.ip())
            .count();
        if per_peer >= cfg.half_open_per_peer {
            tracing::warn!(peer = %remote, per_peer, "IKEv1 phase 1 dropped: per-peer half-open limit");
            self.sh.stats.invalid_packets += 1;
            return;
        }
        if let Some(sa) = IsakmpSa::respond(&mut self.sh, now, local, remote, data, h) {
            let id = sa.id;
            let closed = sa.is_closed();
            self.insert(sa);
            if !closed {
                self.half_open.insert((remote, h.cookie_i), id);
            }
        }
    }

    /// Runs timers due at `now` (retransmissions, DPD, lifetimes, rekeys, keepalives).
    pub fn handle_timeout(&mut self, now: Instant) {
        let cfg = self.sh.config.clone();
        let due: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| s.next_timeout(&cfg).is_some_and(|t| t <= now))
            .map(|s| s.id)
            .collect();
        for id in due {
            if let Some(sa) = self.sas.get_mut(&id) {
                sa.on_timeout(&mut self.sh, now);
            }
        }
        self.after(now);
    }

    /// The caller's answer to [`Event::SignRequest`].
    pub fn handle_signature(
        &mut self,
        now: Instant,
        id: RequestId,
        result: std::result::Result<Vec<u8>, String>,
    ) {
        let Some(sa_id) = self.sh.requests.remove(&id) else {
            return;
        };
        if let Some(sa) = self.sas.get_mut(&sa_id)
            && matches!(&sa.pending, Some(super::sa::Pending::Sign { request, .. }) if *request == id)
        {
            sa.on_signature(
                &mut self.sh,
                now,
                result.map_err(Error::AuthenticationFailed),
            );
        }
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
        if let Some(sa) = self.sas.get_mut(&sa_id)
            && matches!(&sa.pending, Some(super::sa::Pending::Verify { request }) if *request == id)
        {
            sa.on_verification(
                &mut self.sh,
                now,
                result.map_err(Error::AuthenticationFailed),
            );
        }
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
        self.sas
            .values()
            .filter_map(|s| s.next_timeout(&self.sh.config))
            .min()
    }

    /// Counters and gauges (NMsecStatistics).
    pub fn statistics(&self) -> Statistics {
        let mut s = self.sh.stats;
        s.p1_active = 0;
        s.p1_in_progress = 0;
        s.p2_active = 0;
        s.p2_in_progress = 0;
        for sa in self.sas.values().filter(|s| !s.is_closed()) {
            if sa.is_established() {
                if !sa.superseded {
                    s.p1_active += 1;
                }
            } else {
                s.p1_in_progress += 1;
            }
            s.p2_active += sa.children.len() as u32;
            s.p2_in_progress += sa.quick.values().filter(|q| q.is_pending()).count() as u32;
        }
        s
    }

    /// Snapshots of all ISAKMP SAs.
    pub fn ike_sas(&self, now: Instant) -> Vec<V1SaInfo> {
        let mut v: Vec<V1SaInfo> = self
            .sas
            .values()
            .filter(|s| !s.is_closed())
            .map(|s| V1SaInfo {
                id: s.id,
                peer: s.peer.peer.name.clone(),
                initiator: s.initiator,
                mode: s.mode,
                cookies: (s.cky_i, s.cky_r),
                local: s.local,
                remote: s.remote,
                state: match (s.state, s.superseded) {
                    (P1State::Established, true) => "REKEYED",
                    (P1State::Established, false) => "DONE",
                    _ => "PENDING",
                },
                peer_id: s.peer_id.clone(),
                nat: (s.local_nat, s.remote_nat),
                algorithms: s
                    .choice
                    .map(|c| (c.prop.encr, c.prop.hash, c.prop.dh, c.auth)),
                lifetime: s.lifetime,
                age: s.established_at.map(|t| now.saturating_duration_since(t)),
                rekey_in: s.rekey_at.map(|t| t.saturating_duration_since(now)),
                expires_in: s.expire_at.map(|t| t.saturating_duration_since(now)),
                children: s
                    .children
                    .iter()
                    .map(|c| V1ChildInfo {
                        id: c.id,
                        name: c.name.clone(),
                        spi_in: c.spi_in,
                        spi_out: c.spi_out,
                        mode: c.mode,
                        encr: c.encr,
                        integ: c.integ,
                        pfs: c.pfs,
                        encap: c.encap,
                        initiator: c.initiator,
                        local_ts: c.local_ts.clone(),
                        remote_ts: c.remote_ts.clone(),
                        lifetimes: c.lifetimes,
                        replaced: c.replaced,
                        age: now.saturating_duration_since(c.created),
                    })
                    .collect(),
            })
            .collect();
        v.sort_by_key(|i| i.id);
        v
    }

    /// Carries out what SAs asked for, then forgets closed SAs.
    fn after(&mut self, now: Instant) {
        let mut rounds = 0;
        while !self.sh.actions.is_empty() && rounds < 16 {
            rounds += 1;
            for a in std::mem::take(&mut self.sh.actions) {
                self.act(now, a);
            }
        }
        // Responders that finished phase 1 are no longer half-open.
        let sas = &self.sas;
        self.half_open.retain(|_, id| {
            sas.get(id)
                .is_some_and(|s| !s.is_closed() && !s.is_established())
        });
        let closed: Vec<IkeSaId> = self
            .sas
            .values()
            .filter(|s| s.is_closed())
            .map(|s| s.id)
            .collect();
        for id in closed {
            if let Some(sa) = self.sas.remove(&id) {
                self.by_cookies.remove(&(sa.cky_i, sa.cky_r));
                if self.initiating.get(&sa.cky_i) == Some(&id) {
                    self.initiating.remove(&sa.cky_i);
                }
                self.sh.cookies.remove(&sa.local_cookie());
                self.sh.requests.retain(|_, s| *s != id);
            }
        }
    }

    /// The newest other established SA with the same policy and peer address.
    fn replacement(&self, old: IkeSaId) -> Option<IkeSaId> {
        let o = self.sas.get(&old)?;
        self.sas
            .values()
            .filter(|s| {
                s.id != old
                    && s.is_established()
                    && !s.superseded
                    && s.peer.peer.name == o.peer.peer.name
                    && s.remote.ip() == o.remote.ip()
            })
            .max_by_key(|s| s.established_at)
            .map(|s| s.id)
    }

    fn move_children(&mut self, now: Instant, old: IkeSaId, new: IkeSaId) {
        let (children, queue) = match self.sas.get_mut(&old) {
            Some(o) => {
                o.superseded = true;
                (
                    std::mem::take(&mut o.children),
                    std::mem::take(&mut o.queue),
                )
            }
            None => return,
        };
        if let Some(n) = self.sas.get_mut(&new) {
            n.adopt(children);
            n.queue
                .extend(queue.into_iter().filter(|t| !matches!(t, Task::DeleteAll)));
            n.drive(&mut self.sh, now);
        }
        self.sh.event(Event::IkeSaRekeyed { old, new });
    }

    fn act(&mut self, now: Instant, a: Action) {
        match a {
            Action::Rekey(old) => {
                let Some(o) = self.sas.get(&old) else { return };
                if o.superseded || !o.is_established() {
                    return;
                }
                let (peer, local, remote) = (o.peer.clone(), o.local, o.remote);
                match IsakmpSa::initiate(&mut self.sh, now, peer, local, remote, Some(old)) {
                    Ok(sa) => {
                        tracing::info!(old = old.0, new = sa.id.0, "IKEv1 phase 1 rekey started");
                        self.insert(sa);
                    }
                    Err(e) => {
                        tracing::warn!(sa = old.0, error = %e, "IKEv1 phase 1 rekey could not start")
                    }
                }
            }
            Action::Replaced { old, new } => {
                if self.sas.get(&old).is_none_or(|o| o.is_closed()) {
                    return;
                }
                self.move_children(now, old, new);
                if let Some(o) = self.sas.get_mut(&old) {
                    o.retire(&mut self.sh, now);
                }
            }
            Action::PeerDeleted(old) => match self.replacement(old) {
                Some(new) => {
                    self.move_children(now, old, new);
                    if let Some(o) = self.sas.get_mut(&old) {
                        o.close(&mut self.sh, CloseReason::Rekeyed);
                    }
                }
                None => {
                    if let Some(o) = self.sas.get_mut(&old) {
                        o.close(&mut self.sh, CloseReason::PeerDeleted);
                    }
                }
            },
            Action::InitialContact(fresh) => {
                let Some(f) = self.sas.get(&fresh) else {
                    return;
                };
                let (ip, pid) = (f.remote.ip(), f.peer_id.clone());
                let stale: Vec<IkeSaId> = self
                    .sas
                    .values()
                    .filter(|s| {
                        s.id != fresh && !s.is_closed() && s.remote.ip() == ip && s.peer_id == pid
                    })
                    .map(|s| s.id)
                    .collect();
                for id in stale {
                    if let Some(s) = self.sas.get_mut(&id) {
                        tracing::info!(
                            sa = id.0,
                            "INITIAL-CONTACT: the peer restarted, old ISAKMP SA dropped"
                        );
                        s.close(&mut self.sh, CloseReason::PeerDeleted);
                    }
                }
            }
            Action::ChildInstalled(sa, child) => self.collision(now, sa, child),
        }
    }

    /// Both ends started a quick mode for the same policy at the same time: two child
    /// SAs came up. Both ends keep the one whose smaller SPI is larger and delete the
    /// other (each end computes the same answer from the same SPIs).
    fn collision(&mut self, now: Instant, sa: IkeSaId, child: ChildId) {
        let Some(s) = self.sas.get(&sa) else { return };
        let Some(c) = s.children.iter().find(|c| c.id == child).cloned() else {
            return;
        };
        let (name, ip) = (s.peer.peer.name.clone(), s.remote.ip());
        let mut rival = None;
        for other in self
            .sas
            .values()
            .filter(|o| !o.is_closed() && o.peer.peer.name == name && o.remote.ip() == ip)
        {
            for d in &other.children {
                let overlap = d.started <= c.created && c.started <= d.created;
                if d.id != c.id && d.config == c.config && !d.replaced && overlap {
                    rival = Some((other.id, d.clone()));
                }
            }
        }
        let Some((rsa, d)) = rival else { return };
        let key = |x: &super::sa::Child| x.spi_in.min(x.spi_out);
        let (loser_sa, loser) = if key(&c) < key(&d) {
            (sa, c.id)
        } else {
            (rsa, d.id)
        };
        tracing::info!(
            sa = loser_sa.0,
            child = loser.0,
            "quick mode collision: the duplicate child SA is deleted"
        );
        if let Some(l) = self.sas.get_mut(&loser_sa) {
            if let Some(x) = l.children.iter_mut().find(|x| x.id == loser) {
                x.replaced = true;
            }
            l.queue.push_back(Task::DeleteChild(loser));
            l.drive(&mut self.sh, now);
        }
    }
}
