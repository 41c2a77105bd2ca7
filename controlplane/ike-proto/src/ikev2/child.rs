//! Child SAs in IKE_AUTH and CREATE_CHILD_SA (RFC 7296 §1.3): new child, child rekey with
//! REKEY_SA, IKE SA rekey, PFS, traffic selector narrowing, and rekey collisions (§2.8).

use std::time::Instant;

use crate::crypto::Secret;
use crate::crypto::dh::KeyExchange;
use crate::crypto::integ::IntegAlg;
use crate::crypto::keys::{self, Splitter};
use crate::error::{Error, Result};
use crate::ikev2::config::{ChildConfig, ChildProposal, Mode};
use crate::ikev2::event::{ChildId, Event, InstallChildSa, SaKeys, UdpEncap};
use crate::ikev2::proposal;
use crate::ikev2::sa::{
    ChildReq, ChildSa, ChildState, Find, IkeRekeyReq, IkeSa, Req, Shared, State, Task,
};
use crate::ikev2::ts;
use crate::wire::{DhGroup, ExchangeType, Ke, Notify, NotifyType, Payload, ProtocolId, Ts};

/// Keys for a child SA: (inbound, outbound).
pub(crate) type ChildKeys = (SaKeys, SaKeys);

fn min_nonce(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a <= b { a.to_vec() } else { b.to_vec() }
}

/// Splits KEYMAT (RFC 7296 §2.17): i→r encryption, i→r integrity, r→i encryption, r→i
/// integrity. `we_initiated` says which half is outbound.
fn split_keymat(
    km: &Secret,
    p: &ChildProposal,
    we_initiated: bool,
    spi_in: u32,
    spi_out: u32,
) -> ChildKeys {
    let mut s = Splitter::new(km.expose());
    let e = p.encr.key_len();
    let a = p.integ.map_or(0, IntegAlg::key_len);
    let (ei, ai) = (s.take(e), s.take(a));
    let (er, ar) = (s.take(e), s.take(a));
    let (out_keys, in_keys) = if we_initiated {
        ((ei, ai), (er, ar))
    } else {
        ((er, ar), (ei, ai))
    };
    (
        SaKeys {
            spi: spi_in,
            encr_key: in_keys.0,
            integ_key: in_keys.1,
        },
        SaKeys {
            spi: spi_out,
            encr_key: out_keys.0,
            integ_key: out_keys.1,
        },
    )
}

impl IkeSa {
    /// SA, [Nonce, KE], TSi, TSr (and USE_TRANSPORT_MODE) for a child request;
    /// `create_child` adds the nonce and KE of a CREATE_CHILD_SA request.
    pub(crate) fn child_request_payloads(&self, c: &ChildReq, create_child: bool) -> Vec<Payload> {
        let mut p = Vec::new();
        if c.config.mode == Mode::Transport {
            p.push(Payload::Notify(Notify::new(
                NotifyType::USE_TRANSPORT_MODE,
                Vec::new(),
            )));
        }
        let with_dh = c.ke.is_some();
        let proposals: Vec<ChildProposal> = c
            .config
            .proposals
            .iter()
            .filter(|x| !with_dh || x.pfs == c.ke.as_ref().map(KeyExchange::group))
            .map(|x| {
                if with_dh {
                    *x
                } else {
                    ChildProposal { pfs: None, ..*x }
                }
            })
            .collect();
        p.push(Payload::Sa(proposal::child_offer(
            &proposals, c.spi_in, with_dh,
        )));
        if create_child {
            p.push(Payload::Nonce(c.nonce.clone()));
            if let Some(ke) = &c.ke {
                p.push(Payload::Ke(Ke {
                    group: ke.group(),
                    data: ke.public_value().to_vec(),
                }));
            }
        }
        p.push(Payload::TsI(Ts {
            selectors: c.local_ts.clone(),
        }));
        p.push(Payload::TsR(Ts {
            selectors: c.remote_ts.clone(),
        }));
        p
    }

    /// Responder side of a child negotiation (IKE_AUTH or CREATE_CHILD_SA): picks a policy
    /// by narrowing the selectors, a proposal, derives keys. Returns the child, its keys and
    /// the payloads for the response (SA, [KEr], TSi, TSr, [USE_TRANSPORT_MODE]); `ni`/`nr`
    /// are the exchange's nonces (`nr` ours). On failure, the notify to answer with.
    pub(crate) fn accept_child_request(
        &mut self,
        sh: &mut Shared,
        request: &[Payload],
        ni: &[u8],
        nr: &[u8],
        rekey_of: Option<&ChildSa>,
    ) -> std::result::Result<(ChildSa, ChildKeys, Vec<Payload>), NotifyType> {
        let f = Find(request);
        let (Some(sa_p), Some(tsi), Some(tsr)) = (f.sa(), f.tsi(), f.tsr()) else {
            return Err(NotifyType::INVALID_SYNTAX);
        };
        // TSi is the initiator's side: our remote.
        let configs: Vec<ChildConfig> = match rekey_of {
            Some(c) => vec![c.config.clone()],
            None => self.peer.children.clone(),
        };
        let mut chosen = None;
        for cfg in configs {
            let remote = ts::narrow(tsi, &cfg.remote_ts);
            let local = ts::narrow(tsr, &cfg.local_ts);
            if !remote.is_empty() && !local.is_empty() {
                chosen = Some((cfg, local, remote));
                break;
            }
        }
        let Some((cfg, local_ts, remote_ts)) = chosen else {
            return Err(NotifyType::TS_UNACCEPTABLE);
        };
        let peer_ke = f.ke();
        let spi_in = sh
            .new_child_spi()
            .map_err(|_| NotifyType::TEMPORARY_FAILURE)?;
        let release = |sh: &mut Shared| {
            sh.child_spis.remove(&spi_in);
        };
        let Some((prop, spi_out, answer)) =
            proposal::select_child(sa_p, &cfg.proposals, peer_ke.is_some(), spi_in)
        else {
            release(sh);
            return Err(NotifyType::NO_PROPOSAL_CHOSEN);
        };
        let mut resp = Vec::new();
        let g_ir = match (peer_ke, prop.pfs) {
            (Some(k), Some(g)) if k.group == g => {
                let Ok(mine) = KeyExchange::generate(g, &sh.rng) else {
                    release(sh);
                    return Err(NotifyType::TEMPORARY_FAILURE);
                };
                let public = mine.public_value().to_vec();
                let Ok(s) = mine.agree(&k.data) else {
                    release(sh);
                    return Err(NotifyType::INVALID_SYNTAX);
                };
                resp.push(Payload::Ke(Ke {
                    group: g,
                    data: public,
                }));
                Some(s)
            }
            (Some(_), Some(g)) => {
                release(sh);
                return Err(NotifyType::INVALID_KE_PAYLOAD).inspect_err(|_| {
                    tracing::debug!(group = %g, "child KE group mismatch");
                });
            }
            _ => None,
        };
        let mode = if cfg.mode == Mode::Transport && f.has(NotifyType::USE_TRANSPORT_MODE) {
            Mode::Transport
        } else {
            Mode::Tunnel
        };
        let Ok(sk_d) = self.sk_d() else {
            release(sh);
            return Err(NotifyType::TEMPORARY_FAILURE);
        };
        let km = keys::child_keymat(
            self.suite.prf,
            sk_d,
            g_ir.as_ref(),
            ni,
            nr,
            prop.keymat_len(),
        );
        let keys = split_keymat(&km, &prop, false, spi_in, spi_out);
        let mut payloads = Vec::new();
        if mode == Mode::Transport {
            payloads.push(Payload::Notify(Notify::new(
                NotifyType::USE_TRANSPORT_MODE,
                Vec::new(),
            )));
        }
        payloads.push(Payload::Sa(answer));
        payloads.extend(resp);
        payloads.push(Payload::TsI(Ts {
            selectors: remote_ts.clone(),
        }));
        payloads.push(Payload::TsR(Ts {
            selectors: local_ts.clone(),
        }));
        let child = ChildSa {
            id: sh.new_child_id(),
            lifetimes: cfg.lifetimes,
            config: cfg,
            spi_in,
            spi_out,
            proposal: prop,
            mode,
            local_ts,
            remote_ts,
            state: ChildState::Installed,
            min_nonce: min_nonce(ni, nr),
            peer_rekey: None,
            our_rekey: None,
        };
        Ok((child, keys, payloads))
    }

    /// Adds a child and emits its installation.
    pub(crate) fn install_child(
        &mut self,
        sh: &mut Shared,
        child: ChildSa,
        keys: ChildKeys,
        initiator: bool,
        replaces: Option<ChildId>,
    ) {
        let encap = (self.local_nat || self.remote_nat).then_some(UdpEncap {
            local_port: self.local.port(),
            remote_port: self.remote.port(),
        });
        sh.event(Event::InstallChildSa(Box::new(InstallChildSa {
            ike_sa: self.id,
            child: child.id,
            name: child.config.name.clone(),
            initiator,
            local: self.local,
            remote: self.remote,
            mode: child.mode,
            encap,
            encr: child.proposal.encr,
            integ: child.proposal.integ,
            esn: child.proposal.esn,
            inbound: keys.0,
            outbound: keys.1,
            local_ts: child.local_ts.clone(),
            remote_ts: child.remote_ts.clone(),
            lifetimes: child.lifetimes,
            replaces,
        })));
        if self.reauth_of.is_some() {
            self.reauth_created += 1;
        }
        self.children.push(child);
    }

    /// Initiator side: the response to our child request (IKE_AUTH or CREATE_CHILD_SA).
    /// Returns the new child's id when it was installed.
    pub(crate) fn complete_child_initiator(
        &mut self,
        sh: &mut Shared,
        response: &[Payload],
        req: ChildReq,
        ni: &[u8],
        nr: &[u8],
    ) -> Option<ChildId> {
        let r = (|| -> Result<(ChildSa, ChildKeys)> {
            let f = Find(response);
            if let Some(e) = f.error() {
                return Err(Error::NoProposalChosen(format!("peer answered {}", e.ty)));
            }
            let (Some(sa_p), Some(tsi), Some(tsr)) = (f.sa(), f.tsi(), f.tsr()) else {
                return Err(Error::Protocol("child response lacks SA or TS".into()));
            };
            let pfs = req.ke.is_some();
            let (prop, spi_out) = proposal::accept_child(sa_p, &req.config.proposals, pfs)
                .ok_or_else(|| {
                    Error::NoProposalChosen("peer chose an ESP proposal we did not offer".into())
                })?;
            if !ts::within(tsi, &req.local_ts) || !ts::within(tsr, &req.remote_ts) {
                return Err(Error::TsUnacceptable);
            }
            let g_ir = match req.ke {
                Some(ke) => {
                    let k = f
                        .ke()
                        .ok_or(Error::Protocol("PFS response without KE".into()))?;
                    if k.group != ke.group() {
                        return Err(Error::Protocol("PFS KE group mismatch".into()));
                    }
                    Some(ke.agree(&k.data)?)
                }
                None => None,
            };
            let mode =
                if req.config.mode == Mode::Transport && f.has(NotifyType::USE_TRANSPORT_MODE) {
                    Mode::Transport
                } else {
                    Mode::Tunnel
                };
            let km = keys::child_keymat(
                self.suite.prf,
                self.sk_d()?,
                g_ir.as_ref(),
                ni,
                nr,
                prop.keymat_len(),
            );
            let keys = split_keymat(&km, &prop, true, req.spi_in, spi_out);
            Ok((
                ChildSa {
                    id: req.id,
                    lifetimes: req.config.lifetimes,
                    config: req.config.clone(),
                    spi_in: req.spi_in,
                    spi_out,
                    proposal: prop,
                    mode,
                    local_ts: tsi.to_vec(),
                    remote_ts: tsr.to_vec(),
                    state: ChildState::Installed,
                    min_nonce: min_nonce(ni, nr),
                    peer_rekey: None,
                    our_rekey: None,
                },
                keys,
            ))
        })();
        match r {
            Ok((child, keys)) => {
                sh.stats.p2_local_act_success += 1;
                let id = child.id;
                self.install_child(sh, child, keys, true, req.rekey_of);
                Some(id)
            }
            Err(e) => {
                tracing::info!(sa = self.id.0, child = %req.config.name, error = %e, "child SA failed");
                sh.stats.p2_local_act_failure += 1;
                sh.child_spis.remove(&req.spi_in);
                sh.event(Event::ChildSaFailed {
                    ike_sa: self.id,
                    name: req.config.name.clone(),
                    reason: e.to_string(),
                });
                None
            }
        }
    }

    /// Starts CREATE_CHILD_SA for policy `index`, or a rekey of `rekey_of`.
    pub(crate) fn start_create_child(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        index: usize,
        rekey_of: Option<ChildId>,
    ) -> Result<()> {
        let (config, local_ts, remote_ts, old_spi) =
            match rekey_of.and_then(|c| self.child_index(c)) {
                Some(i) => {
                    let c = self.children.get(i).ok_or(Error::Unknown("child"))?;
                    (
                        c.config.clone(),
                        c.local_ts.clone(),
                        c.remote_ts.clone(),
                        Some(c.spi_in),
                    )
                }
                None if rekey_of.is_some() => return Err(Error::Unknown("child")),
                None => {
                    let c = self
                        .peer
                        .children
                        .get(index)
                        .ok_or(Error::Unknown("child policy"))?;
                    (c.clone(), c.local_ts.clone(), c.remote_ts.clone(), None)
                }
            };
        let pfs = config.proposals.first().and_then(|p| p.pfs);
        let ke = match pfs {
            Some(g) => Some(KeyExchange::generate(g, &sh.rng)?),
            None => None,
        };
        let req = ChildReq {
            id: sh.new_child_id(),
            config,
            spi_in: sh.new_child_spi()?,
            ke,
            nonce: sh.random(32)?,
            local_ts,
            remote_ts,
            rekey_of,
        };
        let mut p = Vec::new();
        if let Some(spi) = old_spi {
            p.push(Payload::Notify(Notify {
                protocol: ProtocolId::ESP,
                spi: spi.to_be_bytes().to_vec(),
                ty: NotifyType::REKEY_SA,
                data: Vec::new(),
            }));
        }
        p.extend(self.child_request_payloads(&req, true));
        if let Some(i) = rekey_of.and_then(|c| self.child_index(c))
            && let Some(c) = self.children.get_mut(i)
        {
            c.state = ChildState::Rekeying;
        }
        self.send_request(
            sh,
            now,
            ExchangeType::CREATE_CHILD_SA,
            &p,
            Req::CreateChild(Box::new(req)),
        )
    }

    pub(crate) fn start_rekey_child(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        child: ChildId,
    ) -> Result<()> {
        match self.child_index(child).and_then(|i| self.children.get(i)) {
            Some(c) if c.state == ChildState::Installed => {
                self.start_create_child(sh, now, 0, Some(child))
            }
            _ => Ok(()),
        }
    }

    /// Initiator: CREATE_CHILD_SA response for a new child or child rekey.
    pub(crate) fn handle_child_response(
        &mut self,
        sh: &mut Shared,
        _now: Instant,
        payloads: Vec<Payload>,
        req: Box<ChildReq>,
    ) -> Result<()> {
        let f = Find(&payloads);
        let rekey_of = req.rekey_of;
        let ni = req.nonce.clone();
        let nr = f.nonce().map(<[u8]>::to_vec);
        let peer_error = f.error().map(|n| n.ty);
        let new = match nr {
            Some(nr) if peer_error.is_none() => {
                self.complete_child_initiator(sh, &payloads, *req, &ni, &nr)
            }
            _ => {
                let reason = peer_error.map_or("response without nonce".to_string(), |t| {
                    format!("peer answered {t}")
                });
                sh.stats.p2_local_act_failure += 1;
                sh.child_spis.remove(&req.spi_in);
                sh.event(Event::ChildSaFailed {
                    ike_sa: self.id,
                    name: req.config.name.clone(),
                    reason,
                });
                None
            }
        };
        let Some(old) = rekey_of else {
            return Ok(());
        };
        let Some(oi) = self.child_index(old) else {
            return Ok(());
        };
        if peer_error == Some(NotifyType::CHILD_SA_NOT_FOUND) {
            self.remove_child(sh, oi);
            return Ok(());
        }
        let peer_rekey = self.children.get(oi).and_then(|c| c.peer_rekey);
        match (new, peer_rekey) {
            (Some(ours), Some(theirs)) => {
                // Both rekeyed at once (RFC 7296 §2.8.1): the exchange with the lowest nonce
                // is redundant and deleted by whoever started it; the winner's initiator
                // deletes the old child.
                let ours_min = self
                    .child_index(ours)
                    .and_then(|i| self.children.get(i))
                    .map(|c| c.min_nonce.clone());
                let theirs_min = self
                    .child_index(theirs)
                    .and_then(|i| self.children.get(i))
                    .map(|c| c.min_nonce.clone());
                if let Some(c) = self.children.get_mut(oi) {
                    c.state = ChildState::Rekeyed;
                }
                if ours_min < theirs_min {
                    tracing::debug!(sa = self.id.0, "rekey collision: ours is redundant");
                    self.queue.push_back(Task::DeleteChild(ours));
                } else {
                    tracing::debug!(sa = self.id.0, "rekey collision: ours wins");
                    self.queue.push_back(Task::DeleteChild(old));
                }
            }
            (Some(ours), None) => {
                if let Some(c) = self.children.get_mut(oi) {
                    c.state = ChildState::Rekeyed;
                    c.our_rekey = Some(ours);
                }
                self.queue.push_back(Task::DeleteChild(old));
            }
            (None, Some(_)) => {
                // Ours failed but the peer's rekey replaced it; the peer deletes the old one.
                if let Some(c) = self.children.get_mut(oi) {
                    c.state = ChildState::Rekeyed;
                }
            }
            (None, None) => {
                if let Some(c) = self.children.get_mut(oi) {
                    c.state = ChildState::Installed;
                }
            }
        }
        Ok(())
    }

    /// Responder: CREATE_CHILD_SA request (new child, child rekey, or IKE rekey).
    pub(crate) fn handle_child_request(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        msg_id: u32,
        payloads: Vec<Payload>,
    ) -> Result<()> {
        let f = Find(&payloads);
        let x = ExchangeType::CREATE_CHILD_SA;
        if !self.state.is_established() {
            return self.respond_error(sh, x, msg_id, NotifyType::TEMPORARY_FAILURE, Vec::new());
        }
        let is_ike = f
            .sa()
            .and_then(|s| s.proposals.first())
            .is_some_and(|p| p.protocol == ProtocolId::IKE);
        if is_ike {
            return self.respond_ike_rekey(sh, now, msg_id, &payloads);
        }
        if self.superseded {
            return self.respond_error(sh, x, msg_id, NotifyType::TEMPORARY_FAILURE, Vec::new());
        }
        let Some(ni) = f.nonce().map(<[u8]>::to_vec) else {
            return self.respond_error(sh, x, msg_id, NotifyType::INVALID_SYNTAX, Vec::new());
        };
        // Bound what an authenticated peer can make us install (rekeys replace, so they
        // are allowed one over the limit).
        let rekey = f.has(NotifyType::REKEY_SA);
        let limit = sh.config.max_children_per_ike_sa + usize::from(rekey);
        if self.children.len() >= limit {
            tracing::warn!(
                sa = self.id.0,
                children = self.children.len(),
                "child SA limit reached"
            );
            sh.stats.p2_remote_act_failure += 1;
            return self.respond_error(sh, x, msg_id, NotifyType::NO_ADDITIONAL_SAS, Vec::new());
        }
        let mut old_idx = None;
        if let Some(n) = f.notify(NotifyType::REKEY_SA) {
            let spi = <[u8; 4]>::try_from(n.spi.as_slice())
                .map(u32::from_be_bytes)
                .ok();
            match spi.and_then(|s| self.child_by_spi_out(s)) {
                None => {
                    let spi = n.spi.clone();
                    return self.send_response(
                        sh,
                        x,
                        msg_id,
                        &[Payload::Notify(Notify {
                            protocol: ProtocolId::ESP,
                            spi,
                            ty: NotifyType::CHILD_SA_NOT_FOUND,
                            data: Vec::new(),
                        })],
                    );
                }
                Some(i) => {
                    let st = self.children.get(i).map(|c| c.state);
                    if matches!(st, Some(ChildState::Deleting | ChildState::Rekeyed)) {
                        return self.respond_error(
                            sh,
                            x,
                            msg_id,
                            NotifyType::TEMPORARY_FAILURE,
                            Vec::new(),
                        );
                    }
                    old_idx = Some(i);
                }
            }
        }
        let nr = sh.random(32)?;
        let old = old_idx.and_then(|i| self.children.get(i)).cloned();
        match self.accept_child_request(sh, &payloads, &ni, &nr, old.as_ref()) {
            Ok((child, keys, body)) => {
                let mut resp = Vec::new();
                for p in body {
                    // Nonce goes right after SA (order is not significant, but conventional).
                    let is_sa = matches!(p, Payload::Sa(_));
                    resp.push(p);
                    if is_sa {
                        resp.push(Payload::Nonce(nr.clone()));
                    }
                }
                self.send_response(sh, x, msg_id, &resp)?;
                sh.stats.p2_remote_act_success += 1;
                let new_id = child.id;
                let replaces = old.as_ref().map(|c| c.id);
                self.install_child(sh, child, keys, false, replaces);
                if let Some(i) = old_idx
                    && let Some(c) = self.children.get_mut(i)
                {
                    if c.state == ChildState::Rekeying {
                        c.peer_rekey = Some(new_id);
                    } else {
                        c.state = ChildState::Rekeyed;
                    }
                }
                Ok(())
            }
            Err(n) => {
                sh.stats.p2_remote_act_failure += 1;
                let data = if n == NotifyType::INVALID_KE_PAYLOAD {
                    old.as_ref()
                        .map(|c| c.config.clone())
                        .or_else(|| self.peer.children.first().cloned())
                        .and_then(|c| c.proposals.first().and_then(|p| p.pfs))
                        .unwrap_or(DhGroup::NONE)
                        .0
                        .to_be_bytes()
                        .to_vec()
                } else {
                    Vec::new()
                };
                self.respond_error(sh, x, msg_id, n, data)
            }
        }
    }

    /// Starts an IKE SA rekey (RFC 7296 §1.3.2).
    pub(crate) fn start_ike_rekey(&mut self, sh: &mut Shared, now: Instant) -> Result<()> {
        if self.superseded {
            return Ok(());
        }
        let new_spi = sh.new_ike_spi()?;
        let ke = KeyExchange::generate(self.suite.dh, &sh.rng)?;
        let nonce = sh.random(32)?;
        let mut offer = self.peer.ike_proposals.clone();
        offer.sort_by_key(|s| *s != self.suite);
        offer.retain(|s| s.dh == self.suite.dh);
        let p = vec![
            Payload::Sa(proposal::ike_offer(&offer, &new_spi.to_be_bytes())),
            Payload::Nonce(nonce.clone()),
            Payload::Ke(Ke {
                group: ke.group(),
                data: ke.public_value().to_vec(),
            }),
        ];
        let req = IkeRekeyReq {
            new_spi,
            ke: Some(ke),
            nonce,
        };
        self.send_request(
            sh,
            now,
            ExchangeType::CREATE_CHILD_SA,
            &p,
            Req::RekeyIke(Box::new(req)),
        )
    }

    /// Builds the IKE SA that replaces this one.
    #[expect(clippy::too_many_arguments, reason = "the rekey's inputs")]
    fn spawn_rekeyed(
        &self,
        sh: &mut Shared,
        now: Instant,
        we_initiated: bool,
        suite: crate::crypto::keys::IkeSuite,
        g_ir: &Secret,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSa> {
        let mut new = IkeSa::new(
            sh,
            now,
            we_initiated,
            spi_i,
            spi_r,
            self.local,
            self.remote,
            self.peer.clone(),
            State::Established,
        );
        new.suite = suite;
        new.ni = ni.to_vec();
        new.nr = nr.to_vec();
        let seed = keys::skeyseed_rekey(self.suite.prf, self.sk_d()?, g_ir, ni, nr);
        let k = keys::derive_ike_keys(&suite, &seed, ni, nr, spi_i, spi_r);
        new.set_keys(k)?;
        new.peer_id = self.peer_id.clone();
        new.local_nat = self.local_nat;
        new.remote_nat = self.remote_nat;
        new.peer_hashes = self.peer_hashes.clone();
        new.peer_frag = self.peer_frag;
        new.established(sh, now);
        // A rekey keeps the original authentication: its reauthentication time too.
        new.reauth_at = self.reauth_at;
        new.reauth_failures = self.reauth_failures;
        Ok(new)
    }

    /// Moves every child to `to`, re-homing their events.
    fn move_children(&mut self, to: &mut IkeSa) {
        to.children.append(&mut self.children);
    }

    /// Initiator: the IKE rekey response.
    pub(crate) fn handle_ike_rekey_response(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        payloads: Vec<Payload>,
        req: IkeRekeyReq,
    ) -> Result<()> {
        let f = Find(&payloads);
        let IkeRekeyReq { new_spi, ke, nonce } = req;
        let result = (|| -> Result<IkeSa> {
            if let Some(e) = f.error() {
                return Err(Error::NoProposalChosen(format!("peer answered {}", e.ty)));
            }
            let (Some(sa_p), Some(ke_p), Some(nr)) = (f.sa(), f.ke(), f.nonce()) else {
                return Err(Error::Protocol(
                    "IKE rekey response lacks SA, KE or Nonce".into(),
                ));
            };
            let (suite, spi) = proposal::accept_ike(sa_p, &self.peer.ike_proposals)
                .ok_or_else(|| Error::NoProposalChosen("unexpected IKE proposal".into()))?;
            let peer_spi = <[u8; 8]>::try_from(spi.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Protocol("IKE rekey SPI size".into()))?;
            let ke = ke.ok_or(Error::InvalidState("key exchange used"))?;
            if ke_p.group != ke.group() || suite.dh != ke.group() {
                return Err(Error::Protocol("IKE rekey KE group mismatch".into()));
            }
            let g = ke.agree(&ke_p.data)?;
            self.spawn_rekeyed(sh, now, true, suite, &g, &nonce, nr, new_spi, peer_spi)
        })();
        let mut ours = match result {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(sa = self.id.0, error = %e, "IKE rekey failed");
                sh.ike_spis.remove(&new_spi);
                // Try again later unless the peer's own rekey already replaced us.
                if let Some((theirs, _, _)) = self.rekeyed.first().cloned() {
                    sh.moves.push((self.id, theirs));
                    self.superseded = true;
                } else {
                    self.rekey_at = Some(now + sh.config.init_wait * 8);
                }
                return Err(e);
            }
        };
        let ours_min = min_nonce(&ours.ni, &ours.nr);
        match self.rekeyed.first().cloned() {
            Some((theirs, theirs_min, _)) if ours_min < theirs_min => {
                // Ours is redundant (RFC 7296 §2.8.2): delete it; the peer's survives and
                // the peer deletes this old SA.
                tracing::debug!(sa = self.id.0, "IKE rekey collision: ours is redundant");
                sh.moves.push((self.id, theirs));
                ours.superseded = true;
                ours.queue.push_back(Task::DeleteIke);
                sh.event(Event::IkeSaRekeyed {
                    old: self.id,
                    new: theirs,
                });
            }
            _ => {
                // Ours survives (alone or winning the collision): take the children, and
                // delete this SA (the peer deletes its redundant one).
                self.move_children(&mut ours);
                sh.event(Event::IkeSaRekeyed {
                    old: self.id,
                    new: ours.id,
                });
                self.queue.push_back(Task::DeleteIke);
            }
        }
        self.superseded = true;
        self.rekey_at = None;
        sh.spawned.push(ours);
        Ok(())
    }

    /// Responder: an IKE SA rekey request.
    fn respond_ike_rekey(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        msg_id: u32,
        payloads: &[Payload],
    ) -> Result<()> {
        let x = ExchangeType::CREATE_CHILD_SA;
        let f = Find(payloads);
        if self.superseded {
            return self.respond_error(sh, x, msg_id, NotifyType::TEMPORARY_FAILURE, Vec::new());
        }
        let (Some(sa_p), Some(ke_p), Some(ni)) = (f.sa(), f.ke(), f.nonce()) else {
            return self.respond_error(sh, x, msg_id, NotifyType::INVALID_SYNTAX, Vec::new());
        };
        let new_spi = sh.new_ike_spi()?;
        let Some((suite, answer)) =
            proposal::select_ike(sa_p, &self.peer.ike_proposals, &new_spi.to_be_bytes())
        else {
            sh.ike_spis.remove(&new_spi);
            return self.respond_error(sh, x, msg_id, NotifyType::NO_PROPOSAL_CHOSEN, Vec::new());
        };
        let peer_spi = answer
            .proposals
            .first()
            .and_then(|_| {
                sa_p.proposals
                    .iter()
                    .find(|p| p.protocol == ProtocolId::IKE)
            })
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok());
        // The peer's SPI is in the proposal we chose.
        let chosen_number = answer.proposals.first().map(|p| p.number);
        let peer_spi = sa_p
            .proposals
            .iter()
            .find(|p| Some(p.number) == chosen_number)
            .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
            .or(peer_spi)
            .map(u64::from_be_bytes);
        let Some(peer_spi) = peer_spi else {
            sh.ike_spis.remove(&new_spi);
            return self.respond_error(sh, x, msg_id, NotifyType::INVALID_SYNTAX, Vec::new());
        };
        if ke_p.group != suite.dh {
            sh.ike_spis.remove(&new_spi);
            return self.respond_error(
                sh,
                x,
                msg_id,
                NotifyType::INVALID_KE_PAYLOAD,
                suite.dh.0.to_be_bytes().to_vec(),
            );
        }
        let nr = sh.random(32)?;
        let mine = KeyExchange::generate(suite.dh, &sh.rng)?;
        let public = mine.public_value().to_vec();
        let g = match mine.agree(&ke_p.data) {
            Ok(g) => g,
            Err(_) => {
                sh.ike_spis.remove(&new_spi);
                return self.respond_error(sh, x, msg_id, NotifyType::INVALID_SYNTAX, Vec::new());
            }
        };
        let mut new = self.spawn_rekeyed(sh, now, false, suite, &g, ni, &nr, peer_spi, new_spi)?;
        self.send_response(
            sh,
            x,
            msg_id,
            &[
                Payload::Sa(answer),
                Payload::Nonce(nr.clone()),
                Payload::Ke(Ke {
                    group: suite.dh,
                    data: public,
                }),
            ],
        )?;
        let ours_pending = matches!(
            self.outstanding.as_ref().map(|o| &o.kind),
            Some(Req::RekeyIke(_))
        );
        if ours_pending {
            // Collision: decide when our own rekey completes.
            self.rekeyed.push((new.id, min_nonce(ni, &nr), false));
        } else {
            self.move_children(&mut new);
            self.superseded = true;
            self.rekey_at = None;
            sh.event(Event::IkeSaRekeyed {
                old: self.id,
                new: new.id,
            });
        }
        sh.spawned.push(new);
        Ok(())
    }
}
