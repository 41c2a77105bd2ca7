//! Quick mode (RFC 2409 §5.5): child SAs with and without PFS, quick mode IDs, lifetimes in
//! seconds and kilobytes with RESPONDER-LIFETIME (RFC 2407 §4.6.3.1), UDP encapsulation
//! modes when a NAT is in the path (RFC 3947 §5.1), rekeying.
//!
//! ```text
//! I: HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr]
//! R: HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, N(RESPONDER-LIFETIME)]
//! I: HDR*, HASH(3)
//! ```

use std::time::Instant;

use super::crypto;
use super::ids::{id_to_ts, ts_to_id};
use super::phase1::{Fault, NONCE_LEN, Step};
use super::proposal::{self, P2Choice};
use super::sa::*;
use super::wire::*;
use crate::crypto::Secret;
use crate::crypto::dh::{self, KeyExchange};
use crate::crypto::integ::IntegAlg;
use crate::crypto::secret::ct_eq;
use crate::error::{Error, Result};
use crate::ikev2::config::{ChildProposal, Mode};
use crate::ikev2::event::{ChildId, Event, InstallChildSa, SaKeys, UdpEncap};
use crate::ikev2::ts;
use crate::wire::{DhGroup, TrafficSelector};

/// Quick mode progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QState {
    /// Initiator: QM1 sent.
    Sent,
    /// Responder: QM2 sent.
    Replied,
    /// Finished; kept a while to answer repeats.
    Done,
}

/// One quick mode exchange.
pub(crate) struct Quick {
    pub mid: u32,
    pub initiator: bool,
    pub name: String,
    pub config: usize,
    /// This exchange's CBC chain.
    pub iv: Vec<u8>,
    pub state: QState,
    pub flight: Option<Flight>,
    pub last_rx: Option<Vec<u8>>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    pub spi_in: u32,
    pub spi_out: u32,
    pub dh: Option<KeyExchange>,
    pub g_qm: Option<Secret>,
    pub local_ts: TrafficSelector,
    pub remote_ts: TrafficSelector,
    /// The ID payloads sent (initiator) or received (responder), if any.
    pub ids: Option<(IdPayload, IdPayload)>,
    pub offered: Vec<ChildProposal>,
    pub pfs: Option<DhGroup>,
    pub choice: Option<P2Choice>,
    /// Negotiated lifetime (seconds, kilobytes).
    pub life: (u64, u64),
    pub replaces: Option<ChildId>,
    pub started: Instant,
    pub linger_until: Option<Instant>,
}

impl Quick {
    pub fn is_pending(&self) -> bool {
        self.state != QState::Done
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        match self.state {
            QState::Done => self.linger_until,
            _ => self
                .flight
                .as_ref()
                .filter(|f| f.retransmit)
                .map(|f| f.next_at),
        }
    }
}

/// The lifetimes a RESPONDER-LIFETIME notify carries (RFC 2407 §4.6.3.1).
fn parse_lifetime_notify(data: &[u8]) -> (Option<u64>, Option<u64>) {
    let Ok(attrs) = decode_attrs(data, 0, "RESPONDER-LIFETIME") else {
        return (None, None);
    };
    let (mut secs, mut kb, mut ty) = (None, None, None);
    for a in &attrs {
        match IpsecAttrType(attr_type(a)) {
            IpsecAttrType::SA_LIFE_TYPE => ty = attr_value(a),
            IpsecAttrType::SA_LIFE_DURATION => match ty.map(|t| LifeType(t as u16)) {
                Some(LifeType::SECONDS) => secs = attr_value(a),
                Some(LifeType::KILOBYTES) => kb = attr_value(a),
                _ => {}
            },
            _ => {}
        }
    }
    (secs, kb)
}

fn lifetime_attrs(secs: u64, kb: u64) -> Vec<u8> {
    let mut v = Vec::new();
    let mut attrs = Vec::new();
    if secs > 0 {
        attrs.push(Attribute::Tv(
            IpsecAttrType::SA_LIFE_TYPE.0,
            LifeType::SECONDS.0,
        ));
        attrs.push(attr_basic_or_long(IpsecAttrType::SA_LIFE_DURATION.0, secs));
    }
    if kb > 0 {
        attrs.push(Attribute::Tv(
            IpsecAttrType::SA_LIFE_TYPE.0,
            LifeType::KILOBYTES.0,
        ));
        attrs.push(attr_basic_or_long(IpsecAttrType::SA_LIFE_DURATION.0, kb));
    }
    encode_attrs(&attrs, &mut v);
    v
}

fn spi_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

impl IsakmpSa {
    fn prf(&self) -> Result<crate::crypto::prf::PrfAlg> {
        Ok(self.suite()?.prop.hash.prf())
    }

    fn nat(&self) -> bool {
        self.local_nat || self.remote_nat
    }

    /// The ESP proposals of child policy `config` IKEv1 can offer.
    fn child_offer(&self, config: usize) -> Result<(Vec<ChildProposal>, Option<DhGroup>)> {
        let cfg = self
            .peer
            .peer
            .children
            .get(config)
            .ok_or(Error::Unknown("child policy"))?;
        let legacy = self.peer.peer.allow_legacy;
        let mut v: Vec<ChildProposal> = cfg
            .proposals
            .iter()
            .filter(|p| proposal::esp_supported(p))
            .filter(|p| legacy || !(p.encr.is_legacy() || p.integ.is_some_and(IntegAlg::is_legacy)))
            .copied()
            .collect();
        // One KE per quick mode: every transform uses the first one's PFS group.
        let pfs = v.first().and_then(|p| p.pfs);
        v.retain(|p| p.pfs == pfs);
        if pfs.is_some_and(|g| !dh::is_supported(g) || (!legacy && dh::is_legacy(g))) {
            return Err(Error::Config(format!(
                "child {}: PFS group not usable",
                cfg.name
            )));
        }
        if v.is_empty() {
            return Err(Error::Config(format!(
                "child {}: no ESP proposal IKEv1 can negotiate (ChaCha20 is IKEv2 only)",
                cfg.name
            )));
        }
        Ok((v, pfs))
    }

    /// Initiator: QM1 for child policy `config`.
    pub(crate) fn start_quick(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        config: usize,
        replaces: Option<ChildId>,
    ) -> Result<()> {
        let cfg = self
            .peer
            .peer
            .children
            .get(config)
            .ok_or(Error::Unknown("child policy"))?
            .clone();
        let r = (|| -> Result<()> {
            let (offered, pfs) = self.child_offer(config)?;
            let local_ts = cfg
                .local_ts
                .first()
                .cloned()
                .unwrap_or_else(|| ts::host(self.local.ip()));
            let remote_ts = cfg
                .remote_ts
                .first()
                .cloned()
                .unwrap_or_else(|| ts::host(self.remote.ip()));
            if cfg.local_ts.len() > 1 || cfg.remote_ts.len() > 1 {
                tracing::info!(child = %cfg.name, "IKEv1 negotiates one selector pair per quick mode: using the first");
            }
            let idci = ts_to_id(&local_ts)?;
            let idcr = ts_to_id(&remote_ts)?;
            let mid = self.new_mid(sh)?;
            let spi_in = sh.new_child_spi()?;
            let ni = sh.random(NONCE_LEN)?;
            let encap = proposal::encap_mode(cfg.mode == Mode::Tunnel, self.nat());
            let life = (cfg.lifetimes.hard_secs, cfg.lifetimes.hard_bytes / 1024);
            let transforms: Vec<Transform> = offered
                .iter()
                .enumerate()
                .filter_map(|(i, p)| proposal::esp_transform((i + 1) as u8, p, pfs, encap, life))
                .collect();
            let sa = Sa {
                doi: DOI_IPSEC,
                situation: SIT_IDENTITY_ONLY,
                proposals: vec![Proposal {
                    number: 1,
                    protocol: ProtocolId::ESP,
                    spi: spi_in.to_be_bytes().to_vec(),
                    transforms,
                }],
            };
            let mut payloads = vec![Payload::Sa(sa), Payload::Nonce(ni.clone())];
            let kex = match pfs {
                Some(g) => {
                    let k = KeyExchange::generate(g, &sh.rng)?;
                    payloads.push(Payload::Ke(k.public_value().to_vec()));
                    Some(k)
                }
                None => None,
            };
            payloads.push(Payload::Id(idci.clone()));
            payloads.push(Payload::Id(idcr.clone()));
            let payloads = self.with_hash1(mid, payloads)?;
            let iv = crypto::phase2_iv(
                self.suite()?.prop.hash,
                &self.p1_last,
                mid,
                self.suite()?.prop.encr.block_len(),
            );
            let (msg, next) = self.seal(ExchangeType::QUICK, mid, &payloads, &iv)?;
            sh.send(self.local, self.remote, &msg);
            self.quick.insert(
                mid,
                Quick {
                    mid,
                    initiator: true,
                    name: cfg.name.clone(),
                    config,
                    iv: next,
                    state: QState::Sent,
                    flight: Some(Flight::request(msg, now, sh.config.init_wait)),
                    last_rx: None,
                    ni,
                    nr: Vec::new(),
                    spi_in,
                    spi_out: 0,
                    dh: kex,
                    g_qm: None,
                    local_ts,
                    remote_ts,
                    ids: Some((idci, idcr)),
                    offered,
                    pfs,
                    choice: None,
                    life,
                    replaces,
                    started: now,
                    linger_until: None,
                },
            );
            tracing::debug!(sa = self.id.0, mid, child = %cfg.name, "IKEv1 quick mode initiated");
            Ok(())
        })();
        if let Err(e) = &r {
            sh.stats.p2_local_act_failure += 1;
            sh.event(Event::ChildSaFailed {
                ike_sa: self.id,
                name: cfg.name.clone(),
                reason: e.to_string(),
            });
        }
        r
    }

    /// Retransmissions and linger expiry of quick mode exchanges.
    pub(crate) fn quick_timeouts(&mut self, sh: &mut Shared, now: Instant) {
        let mut failed = Vec::new();
        let mut gone = Vec::new();
        for q in self.quick.values_mut() {
            if q.state == QState::Done {
                if q.linger_until.is_some_and(|t| t <= now) {
                    gone.push(q.mid);
                }
                continue;
            }
            let Some(f) = q.flight.as_mut() else { continue };
            if !f.retransmit || f.next_at > now {
                continue;
            }
            if f.retries >= sh.config.retries {
                failed.push(q.mid);
                continue;
            }
            f.retries += 1;
            f.next_at = now + sh.config.init_wait * 2u32.saturating_pow(f.retries);
            sh.stats.p2_retransmit += 1;
            sh.send(self.local, self.remote, &f.data);
        }
        for m in gone {
            self.quick.remove(&m);
        }
        for m in failed {
            let Some(q) = self.quick.remove(&m) else {
                continue;
            };
            sh.child_spis.remove(&q.spi_in);
            let reason = if q.initiator {
                sh.stats.p2_local_act_failure += 1;
                "the peer did not answer quick mode (retransmissions exhausted)"
            } else {
                sh.stats.p2_remote_act_failure += 1;
                "the initiator never sent the last quick mode message"
            };
            tracing::info!(sa = self.id.0, mid = m, child = %q.name, reason, "IKEv1 quick mode failed");
            sh.event(Event::ChildSaFailed {
                ike_sa: self.id,
                name: q.name.clone(),
                reason: reason.into(),
            });
            if q.initiator {
                // The peer is unreachable: the ISAKMP SA is dead too.
                self.close(sh, crate::ikev2::event::CloseReason::Timeout);
                return;
            }
        }
    }

    /// A quick mode message.
    pub(crate) fn handle_quick(&mut self, sh: &mut Shared, now: Instant, data: &[u8], h: &Header) {
        if !self.is_established() || !h.flags.encrypted() || h.message_id == 0 {
            sh.stats.invalid_packets += 1;
            return;
        }
        let mid = h.message_id;
        if let Some(q) = self.quick.get_mut(&mid) {
            if q.last_rx.as_deref() == Some(data) {
                sh.stats.duplicate_requests += 1;
                if let Some(f) = &q.flight {
                    let d = f.data.clone();
                    sh.send(self.local, self.remote, &d);
                }
                return;
            }
            let r = match (q.initiator, q.state) {
                (true, QState::Sent) => self.on_qm2(sh, now, data, h),
                (false, QState::Replied) => self.on_qm3(sh, now, data, h),
                _ => Err(Fault::Drop("unexpected quick mode message".into())),
            };
            self.quick_result(sh, now, mid, data, r);
            return;
        }
        if self.seen_mids.contains(&mid) {
            tracing::debug!(sa = self.id.0, mid, "quick mode message ID reused: dropped");
            sh.stats.invalid_packets += 1;
            return;
        }
        if self.quick.values().filter(|q| q.is_pending()).count() >= MAX_QUICK {
            sh.stats.invalid_packets += 1;
            return;
        }
        let r = self.on_qm1(sh, now, data, h);
        self.quick_result(sh, now, mid, data, r);
    }

    fn quick_result(&mut self, sh: &mut Shared, now: Instant, mid: u32, data: &[u8], r: Step) {
        match r {
            Ok(()) => {
                self.alive(now);
                if let Some(q) = self.quick.get_mut(&mid) {
                    q.last_rx = Some(data.to_vec());
                }
            }
            Err(Fault::Drop(why)) => {
                tracing::debug!(sa = self.id.0, mid, why, "IKEv1 quick mode message dropped");
                sh.stats.invalid_packets += 1;
            }
            Err(Fault::Fatal(reason, notify)) => {
                let Some(q) = self.quick.remove(&mid) else {
                    return;
                };
                tracing::info!(sa = self.id.0, mid, child = %q.name, reason = ?reason, "IKEv1 quick mode failed");
                sh.child_spis.remove(&q.spi_in);
                if q.initiator {
                    sh.stats.p2_local_act_failure += 1;
                } else {
                    sh.stats.p2_remote_act_failure += 1;
                }
                if let Some(n) = notify {
                    let spi = if q.initiator { q.spi_in } else { q.spi_out };
                    let p = Payload::Notify(Notify::new(
                        ProtocolId::ESP,
                        spi.to_be_bytes().to_vec(),
                        n,
                        Vec::new(),
                    ));
                    let _ = self.send_info(sh, now, vec![p]);
                }
                sh.event(Event::ChildSaFailed {
                    ike_sa: self.id,
                    name: q.name,
                    reason: format!("{reason:?}"),
                });
            }
        }
    }

    /// Responder: QM1.
    fn on_qm1(&mut self, sh: &mut Shared, now: Instant, data: &[u8], h: &Header) -> Step {
        let mid = h.message_id;
        let c = self.suite()?;
        let iv = crypto::phase2_iv(c.prop.hash, &self.p1_last, mid, c.prop.encr.block_len());
        let o = self.open(data, h, &iv)?;
        let (rest, hash) = Self::after_hash(&o)?;
        let keys = self.phase1_keys()?;
        if !ct_eq(
            &crypto::hash1(c.prop.hash.prf(), &keys.skeyid_a, mid, rest),
            hash,
        ) {
            return Err(Fault::Drop("quick mode HASH(1) mismatch".into()));
        }
        self.mid_seen(mid);
        let payloads = o.list();
        let f = Find(&payloads);
        let offer = f.sa().ok_or_else(|| Fault::Drop("QM1 without SA".into()))?;
        let ni = f
            .nonce()
            .ok_or_else(|| Fault::Drop("QM1 without nonce".into()))?
            .to_vec();
        let peer_spi = offer
            .proposals
            .first()
            .and_then(|p| spi_u32(&p.spi))
            .ok_or_else(|| Fault::Drop("QM1 proposal without a 4-byte SPI".into()))?;
        // A placeholder so a failure can be reported with the peer's SPI.
        let ids: Vec<IdPayload> = f.ids().into_iter().cloned().collect();
        let fail_exchange = |me: &mut Self, name: &str, n: NotifyType, why: String| -> Step {
            me.quick
                .insert(mid, Quick::failed(mid, name, peer_spi, now));
            Err(Fault::Fatal(
                crate::ikev2::event::CloseReason::NegotiationFailed(why),
                Some(n),
            ))
        };
        let (local_ts, remote_ts, id_pair) = match ids.as_slice() {
            [] => (ts::host(self.local.ip()), ts::host(self.remote.ip()), None),
            [ci, cr] => match (id_to_ts(ci), id_to_ts(cr)) {
                (Ok(r), Ok(l)) => (l, r, Some((ci.clone(), cr.clone()))),
                _ => {
                    return fail_exchange(
                        self,
                        "?",
                        NotifyType::INVALID_ID_INFORMATION,
                        "quick mode IDs invalid".into(),
                    );
                }
            },
            _ => {
                return fail_exchange(
                    self,
                    "?",
                    NotifyType::INVALID_ID_INFORMATION,
                    "quick mode needs 0 or 2 IDs".into(),
                );
            }
        };
        let Some(config) = self.peer.peer.children.iter().position(|cfg| {
            let l = if cfg.local_ts.is_empty() {
                vec![ts::host(self.local.ip())]
            } else {
                cfg.local_ts.clone()
            };
            let r = if cfg.remote_ts.is_empty() {
                vec![ts::host(self.remote.ip())]
            } else {
                cfg.remote_ts.clone()
            };
            ts::within(std::slice::from_ref(&local_ts), &l)
                && ts::within(std::slice::from_ref(&remote_ts), &r)
        }) else {
            return fail_exchange(
                self,
                "?",
                NotifyType::INVALID_ID_INFORMATION,
                format!("no child policy covers {local_ts:?} <-> {remote_ts:?}"),
            );
        };
        let cfg = self
            .peer
            .peer
            .children
            .get(config)
            .cloned()
            .ok_or(Error::Unknown("child policy"))?;
        let legacy = self.peer.peer.allow_legacy;
        let ke = f.ke();
        // The first acceptable transform of the first single-protocol ESP proposal.
        let mut pick = None;
        for p in &offer.proposals {
            if p.protocol != ProtocolId::ESP
                || offer
                    .proposals
                    .iter()
                    .filter(|x| x.number == p.number)
                    .count()
                    != 1
            {
                continue;
            }
            let Some(spi) = spi_u32(&p.spi) else { continue };
            for t in &p.transforms {
                let Some(ch) = proposal::parse_esp(t) else {
                    continue;
                };
                let ours = cfg
                    .proposals
                    .iter()
                    .any(|cp| proposal::esp_supported(cp) && ch.fits(cp));
                let legacy_ok = legacy
                    || !(ch.encr.is_legacy()
                        || ch.integ.is_some_and(IntegAlg::is_legacy)
                        || ch.pfs.is_some_and(dh::is_legacy));
                let mode_ok = ch.is_tunnel() == (cfg.mode == Mode::Tunnel);
                let ke_ok = ch.pfs.is_some() == ke.is_some()
                    && ch
                        .pfs
                        .is_none_or(|g| dh::public_len(g) == ke.map(<[u8]>::len));
                if ours && legacy_ok && mode_ok && ke_ok {
                    pick = Some((p.number, spi, t.clone(), ch));
                    break;
                }
            }
            if pick.is_some() {
                break;
            }
        }
        let Some((number, spi_out, transform, choice)) = pick else {
            return fail_exchange(
                self,
                &cfg.name,
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!("no acceptable ESP transform for {}", cfg.name),
            );
        };
        // Lifetimes: at most ours; tell the initiator when we shorten them.
        let ours = (cfg.lifetimes.hard_secs, cfg.lifetimes.hard_bytes / 1024);
        let proposed_secs = if choice.life_secs == 0 {
            proposal::DEFAULT_LIFETIME
        } else {
            choice.life_secs
        };
        let secs = if ours.0 == 0 {
            proposed_secs
        } else {
            proposed_secs.min(ours.0)
        };
        let kb = match (choice.life_kb, ours.1) {
            (0, o) => o,
            (p, 0) => p,
            (p, o) => p.min(o),
        };
        let shortened =
            secs < proposed_secs || (kb > 0 && (choice.life_kb == 0 || kb < choice.life_kb));
        let spi_in = sh.new_child_spi()?;
        let nr = sh.random(NONCE_LEN)?;
        let mut g_qm = None;
        let mut our_ke = None;
        if let (Some(g), Some(peer_ke)) = (choice.pfs, ke) {
            let k = KeyExchange::generate(g, &sh.rng)?;
            our_ke = Some(k.public_value().to_vec());
            g_qm = Some(k.agree(peer_ke)?);
        }
        let mut payloads = vec![
            Payload::Sa(Sa {
                doi: DOI_IPSEC,
                situation: SIT_IDENTITY_ONLY,
                proposals: vec![Proposal {
                    number,
                    protocol: ProtocolId::ESP,
                    spi: spi_in.to_be_bytes().to_vec(),
                    transforms: vec![transform],
                }],
            }),
            Payload::Nonce(nr.clone()),
        ];
        if let Some(k) = our_ke {
            payloads.push(Payload::Ke(k));
        }
        if let Some((ci, cr)) = &id_pair {
            payloads.push(Payload::Id(ci.clone()));
            payloads.push(Payload::Id(cr.clone()));
        }
        if shortened {
            payloads.push(Payload::Notify(Notify::new(
                ProtocolId::ESP,
                spi_in.to_be_bytes().to_vec(),
                NotifyType::RESPONDER_LIFETIME,
                lifetime_attrs(secs, kb),
            )));
        }
        let (_, rest2) = encode_payloads(&payloads);
        let keys = self.phase1_keys()?;
        let h2 = crypto::hash2(c.prop.hash.prf(), &keys.skeyid_a, mid, &ni, &rest2);
        payloads.insert(0, Payload::Hash(h2));
        let (msg, next) = self.seal(ExchangeType::QUICK, mid, &payloads, &o.last_block)?;
        sh.send(self.local, self.remote, &msg);
        self.quick.insert(
            mid,
            Quick {
                mid,
                initiator: false,
                name: cfg.name.clone(),
                config,
                iv: next,
                state: QState::Replied,
                // QM3 ends the exchange: QM2 is retransmitted until it arrives.
                flight: Some(Flight::request(msg, now, sh.config.init_wait)),
                last_rx: None,
                ni,
                nr,
                spi_in,
                spi_out,
                dh: None,
                g_qm,
                local_ts,
                remote_ts,
                ids: id_pair,
                offered: Vec::new(),
                pfs: choice.pfs,
                choice: Some(choice),
                life: (secs, kb),
                replaces: None,
                started: now,
                linger_until: None,
            },
        );
        Ok(())
    }

    /// Initiator: QM2, then QM3 and the child SA.
    fn on_qm2(&mut self, sh: &mut Shared, now: Instant, data: &[u8], h: &Header) -> Step {
        let mid = h.message_id;
        let c = self.suite()?;
        let q = self.quick.get(&mid).ok_or(Error::Unknown("quick mode"))?;
        let o = self.open(data, h, &q.iv)?;
        let (rest, hash) = Self::after_hash(&o)?;
        let keys = self.phase1_keys()?;
        if !ct_eq(
            &crypto::hash2(c.prop.hash.prf(), &keys.skeyid_a, mid, &q.ni, rest),
            hash,
        ) {
            return Err(Fault::Drop("quick mode HASH(2) mismatch".into()));
        }
        let payloads = o.list();
        let f = Find(&payloads);
        let fatal = |n: NotifyType, why: &str| {
            Fault::Fatal(
                crate::ikev2::event::CloseReason::NegotiationFailed(why.into()),
                Some(n),
            )
        };
        let answer = f
            .sa()
            .ok_or_else(|| fatal(NotifyType::BAD_PROPOSAL_SYNTAX, "QM2 without SA"))?;
        let (spi_out, choice) = match answer.proposals.as_slice() {
            [p] if p.protocol == ProtocolId::ESP => {
                match (spi_u32(&p.spi), p.transforms.as_slice()) {
                    (Some(spi), [t]) => (spi, proposal::parse_esp(t)),
                    _ => (0, None),
                }
            }
            _ => (0, None),
        };
        let choice = choice
            .filter(|ch| q.offered.iter().any(|p| ch.fits(p)) && ch.pfs == q.pfs)
            .ok_or_else(|| {
                fatal(
                    NotifyType::NO_PROPOSAL_CHOSEN,
                    "the responder chose an ESP transform we did not offer",
                )
            })?;
        let nr = f
            .nonce()
            .ok_or_else(|| fatal(NotifyType::PAYLOAD_MALFORMED, "QM2 without nonce"))?
            .to_vec();
        let ids: Vec<IdPayload> = f.ids().into_iter().cloned().collect();
        if !ids.is_empty()
            && q.ids
                .as_ref()
                .is_none_or(|(a, b)| ids.as_slice() != [a.clone(), b.clone()])
        {
            return Err(fatal(
                NotifyType::INVALID_ID_INFORMATION,
                "the responder changed the quick mode IDs",
            ));
        }
        let (mut secs, mut kb) = (
            if choice.life_secs == 0 {
                q.life.0
            } else {
                choice.life_secs.min(q.life.0.max(1))
            },
            if choice.life_kb == 0 {
                q.life.1
            } else {
                choice.life_kb
            },
        );
        if let Some(n) = f.notify(NotifyType::RESPONDER_LIFETIME) {
            let (s, k) = parse_lifetime_notify(&n.data);
            if let Some(s) = s.filter(|s| *s > 0) {
                secs = secs.min(s);
            }
            if let Some(k) = k.filter(|k| *k > 0) {
                kb = if kb == 0 { k } else { kb.min(k) };
            }
        }
        let peer_ke = f.ke().map(<[u8]>::to_vec);
        let q = self
            .quick
            .get_mut(&mid)
            .ok_or(Error::Unknown("quick mode"))?;
        let g_qm = match (q.dh.take(), peer_ke) {
            (Some(k), Some(pk)) => Some(
                k.agree(&pk)
                    .map_err(|e| fatal(NotifyType::INVALID_KEY_INFORMATION, &e.to_string()))?,
            ),
            (None, None) => None,
            _ => {
                return Err(fatal(
                    NotifyType::INVALID_KEY_INFORMATION,
                    "PFS KE missing or unexpected",
                ));
            }
        };
        q.iv = o.last_block.clone();
        q.nr = nr;
        q.spi_out = spi_out;
        q.g_qm = g_qm;
        q.choice = Some(choice);
        q.life = (secs, kb);
        let (ni, nr2, iv) = (q.ni.clone(), q.nr.clone(), q.iv.clone());
        let keys = self.phase1_keys()?;
        let h3 = crypto::hash3(c.prop.hash.prf(), &keys.skeyid_a, mid, &ni, &nr2);
        let (msg, _) = self.seal(ExchangeType::QUICK, mid, &[Payload::Hash(h3)], &iv)?;
        sh.send(self.local, self.remote, &msg);
        let q = self
            .quick
            .get_mut(&mid)
            .ok_or(Error::Unknown("quick mode"))?;
        q.flight = Some(Flight::reply(msg, now));
        q.state = QState::Done;
        q.linger_until = Some(now + QUICK_LINGER);
        self.install(sh, now, mid)?;
        Ok(())
    }

    /// Responder: QM3, then the child SA.
    fn on_qm3(&mut self, sh: &mut Shared, now: Instant, data: &[u8], h: &Header) -> Step {
        let mid = h.message_id;
        let c = self.suite()?;
        let q = self.quick.get(&mid).ok_or(Error::Unknown("quick mode"))?;
        let o = self.open(data, h, &q.iv)?;
        let (rest, hash) = Self::after_hash(&o)?;
        let keys = self.phase1_keys()?;
        if !rest.is_empty()
            || !ct_eq(
                &crypto::hash3(c.prop.hash.prf(), &keys.skeyid_a, mid, &q.ni, &q.nr),
                hash,
            )
        {
            return Err(Fault::Drop("quick mode HASH(3) mismatch".into()));
        }
        let q = self
            .quick
            .get_mut(&mid)
            .ok_or(Error::Unknown("quick mode"))?;
        q.state = QState::Done;
        q.flight = None;
        q.linger_until = Some(now + QUICK_LINGER);
        self.install(sh, now, mid)?;
        Ok(())
    }

    /// Derives the keys of a finished quick mode and emits the child SA.
    fn install(&mut self, sh: &mut Shared, now: Instant, mid: u32) -> Result<()> {
        let q = self.quick.get(&mid).ok_or(Error::Unknown("quick mode"))?;
        let choice = q.choice.ok_or(Error::InvalidState("no ESP choice"))?;
        let keys = self.phase1_keys()?;
        let prf = self.prf()?;
        let enc_len = choice.encr.key_len();
        let integ_len = choice.integ.map_or(0, IntegAlg::key_len);
        let sa_keys = |spi: u32| {
            let km = crypto::keymat(
                prf,
                &keys.skeyid_d,
                q.g_qm.as_ref(),
                ProtocolId::ESP.0,
                spi,
                &q.ni,
                &q.nr,
                enc_len + integ_len,
            );
            let (e, a) = km.expose().split_at(enc_len.min(km.len()));
            SaKeys {
                spi,
                encr_key: Secret::from_slice(e),
                integ_key: Secret::from_slice(a),
            }
        };
        let inbound = sa_keys(q.spi_in);
        let outbound = sa_keys(q.spi_out);
        let cfg = self
            .peer
            .peer
            .children
            .get(q.config)
            .ok_or(Error::Unknown("child policy"))?;
        let lifetimes = self.child_lifetimes(&cfg.lifetimes, q.life.0, q.life.1, q.initiator);
        let udp = proposal::is_udp_encap(choice.encap) || self.nat();
        let mode = if choice.is_tunnel() {
            Mode::Tunnel
        } else {
            Mode::Transport
        };
        // The responder learns of a rekey only by seeing a second child for the policy
        // (one that existed before this exchange began, not one made at the same time).
        let replaces = q.replaces.or_else(|| {
            self.children
                .iter()
                .filter(|c| c.config == q.config && !c.replaced && c.created < q.started)
                .max_by_key(|c| c.created)
                .map(|c| c.id)
        });
        let id = sh.new_child_id();
        let child = Child {
            id,
            config: q.config,
            name: q.name.clone(),
            spi_in: q.spi_in,
            spi_out: q.spi_out,
            local_ts: q.local_ts.clone(),
            remote_ts: q.remote_ts.clone(),
            mode,
            encr: choice.encr,
            integ: choice.integ,
            pfs: choice.pfs,
            encap: udp,
            initiator: q.initiator,
            started: q.started,
            created: now,
            lifetimes,
            replaced: false,
            delete_at: None,
        };
        let initiator = q.initiator;
        tracing::info!(
            sa = self.id.0,
            child = %child.name,
            spi_in = format_args!("{:#010x}", child.spi_in),
            spi_out = format_args!("{:#010x}", child.spi_out),
            pfs = ?child.pfs,
            "IKEv1 child SA established"
        );
        sh.event(Event::InstallChildSa(Box::new(InstallChildSa {
            ike_sa: self.id,
            child: id,
            name: child.name.clone(),
            initiator,
            local: self.local,
            remote: self.remote,
            mode,
            encap: udp.then_some(UdpEncap {
                local_port: self.local.port(),
                remote_port: self.remote.port(),
            }),
            encr: choice.encr,
            integ: choice.integ,
            esn: choice.esn,
            inbound,
            outbound,
            local_ts: vec![child.local_ts.clone()],
            remote_ts: vec![child.remote_ts.clone()],
            lifetimes,
            replaces,
        })));
        if initiator {
            sh.stats.p2_local_act_success += 1;
        } else {
            sh.stats.p2_remote_act_success += 1;
        }
        if let Some(old) = replaces
            && let Some(o) = self.children.iter_mut().find(|c| c.id == old)
        {
            o.replaced = true;
            if initiator {
                o.delete_at = Some(now + self.peer.v1.rekey_overlap);
            }
        }
        self.children.push(child);
        sh.actions.push(Action::ChildInstalled(self.id, id));
        Ok(())
    }
}

impl Quick {
    /// A record of a quick mode that failed before it got going (to report with the
    /// peer's SPI).
    fn failed(mid: u32, name: &str, peer_spi: u32, now: Instant) -> Self {
        Self {
            mid,
            initiator: false,
            name: name.to_string(),
            config: 0,
            iv: Vec::new(),
            state: QState::Replied,
            flight: None,
            last_rx: None,
            ni: Vec::new(),
            nr: Vec::new(),
            spi_in: 0,
            spi_out: peer_spi,
            dh: None,
            g_qm: None,
            local_ts: ts::host(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            remote_ts: ts::host(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            ids: None,
            offered: Vec::new(),
            pfs: None,
            choice: None,
            life: (0, 0),
            replaces: None,
            started: now,
            linger_until: None,
        }
    }
}
