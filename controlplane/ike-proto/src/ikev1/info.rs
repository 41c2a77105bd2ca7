//! Informational exchanges (RFC 2409 §5.7): DELETE for ISAKMP and ESP SAs, notifies, and
//! dead peer detection (RFC 3706: R-U-THERE / R-U-THERE-ACK under the ISAKMP SA).
//!
//! ```text
//! HDR*, HASH(1), N/D       HASH(1) = prf(SKEYID_a, M-ID | N/D)
//! ```
//! Each informational message is one-way: it has its own message ID and IV, and no answer
//! (an R-U-THERE-ACK is a new informational of its own).

use std::net::SocketAddr;
use std::time::Instant;

use super::crypto;
use super::sa::*;
use super::wire::*;
use crate::crypto::secret::ct_eq;
use crate::error::{Error, Result};
use crate::ikev2::event::{ChildId, CloseReason, Event};

impl IsakmpSa {
    /// The CBC block informational IVs derive from: the last phase 1 block once phase 1
    /// is done, the current phase 1 IV before.
    fn info_base(&self) -> &[u8] {
        if self.is_established() {
            &self.p1_last
        } else {
            &self.iv
        }
    }

    /// Sends `HDR*, HASH(1), payloads` as a new informational exchange.
    pub(crate) fn send_info(
        &mut self,
        sh: &mut Shared,
        _now: Instant,
        payloads: Vec<Payload>,
    ) -> Result<()> {
        let c = self.suite()?;
        let mid = self.new_mid(sh)?;
        let iv = crypto::phase2_iv(c.prop.hash, self.info_base(), mid, c.prop.encr.block_len());
        let payloads = self.with_hash1(mid, payloads)?;
        let (msg, _) = self.seal(ExchangeType::INFORMATIONAL, mid, &payloads, &iv)?;
        sh.send(self.local, self.remote, &msg);
        Ok(())
    }

    fn cookies(&self) -> Vec<u8> {
        let mut spi = self.cky_i.to_be_bytes().to_vec();
        spi.extend_from_slice(&self.cky_r.to_be_bytes());
        spi
    }

    /// DELETE for this ISAKMP SA (RFC 2408 §3.15: protocol ISAKMP, the cookies as SPI).
    pub(crate) fn send_isakmp_delete(&mut self, sh: &mut Shared, now: Instant) -> Result<()> {
        let d = Payload::Delete(Delete {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ISAKMP,
            spi_size: 16,
            spis: vec![self.cookies()],
        });
        self.send_info(sh, now, vec![d])
    }

    /// Deletes a child: DELETE with its inbound SPI, then the event.
    pub(crate) fn delete_child(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        id: ChildId,
    ) -> Result<()> {
        let idx = self.child_index(id).ok_or(Error::Unknown("child SA"))?;
        let spi = self.children.get(idx).map_or(0, |c| c.spi_in);
        let d = Payload::Delete(Delete {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![spi.to_be_bytes().to_vec()],
        });
        let r = self.send_info(sh, now, vec![d]);
        self.remove_child(sh, idx);
        r
    }

    fn send_dpd(&mut self, sh: &mut Shared, now: Instant, ty: NotifyType, seq: u32) -> Result<()> {
        let n = Payload::Notify(Notify::new(
            ProtocolId::ISAKMP,
            self.cookies(),
            ty,
            seq.to_be_bytes().to_vec(),
        ));
        self.send_info(sh, now, vec![n])
    }

    /// Dead peer detection: R-U-THERE after `dpd_interval` without word from the peer,
    /// retransmitted (new sequence number each time) with the IkeRetries/IkeInitWait
    /// schedule; no answer at all means the peer is dead.
    pub(crate) fn dpd_timer(&mut self, sh: &mut Shared, now: Instant) {
        if let Some(mut d) = self.dpd {
            if d.next_at > now {
                return;
            }
            if d.retries >= sh.config.retries {
                tracing::info!(sa = self.id.0, peer = %self.remote, "dead peer detected (no R-U-THERE-ACK)");
                self.close(sh, CloseReason::Timeout);
                return;
            }
            d.retries += 1;
            d.next_at = now + sh.config.init_wait * 2u32.saturating_pow(d.retries);
            self.dpd = Some(d);
            self.dpd_seq = self.dpd_seq.wrapping_add(1);
            sh.stats.p1_retransmit += 1;
            let _ = self.send_dpd(sh, now, NotifyType::R_U_THERE, self.dpd_seq);
            return;
        }
        let Some(interval) = self.peer.peer.dpd_interval else {
            return;
        };
        if !self.peer_dpd || self.last_recv + interval > now {
            return;
        }
        if self.dpd_seq == 0 {
            self.dpd_seq = sh.random_u32().unwrap_or(1) & 0x7fff_ffff | 1;
        }
        self.dpd_seq = self.dpd_seq.wrapping_add(1);
        self.dpd = Some(DpdWait {
            retries: 0,
            next_at: now + sh.config.init_wait,
        });
        let _ = self.send_dpd(sh, now, NotifyType::R_U_THERE, self.dpd_seq);
    }

    /// An informational message for this SA.
    pub(crate) fn handle_info(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        _local: SocketAddr,
        _remote: SocketAddr,
        data: &[u8],
        h: &Header,
    ) {
        if !h.flags.encrypted() {
            self.handle_plain_info(sh, data);
            return;
        }
        let mid = h.message_id;
        if mid == 0 || self.keys.is_none() || self.seen_mids.contains(&mid) {
            sh.stats.invalid_packets += 1;
            return;
        }
        let Ok(c) = self.suite() else {
            sh.stats.invalid_packets += 1;
            return;
        };
        let iv = crypto::phase2_iv(c.prop.hash, self.info_base(), mid, c.prop.encr.block_len());
        let checked = self.open(data, h, &iv).and_then(|o| {
            let (rest, hash) = Self::after_hash(&o)?;
            let keys = self.phase1_keys()?;
            if ct_eq(
                &crypto::hash1(c.prop.hash.prf(), &keys.skeyid_a, mid, rest),
                hash,
            ) {
                Ok(o)
            } else {
                Err(Error::IntegrityCheckFailed)
            }
        });
        let o = match checked {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(sa = self.id.0, error = %e, "IKEv1 informational dropped");
                sh.stats.invalid_packets += 1;
                return;
            }
        };
        self.mid_seen(mid);
        self.alive(now);
        let payloads = o.list();
        let cookies = self.cookies();
        for p in payloads.iter().skip(1) {
            match p {
                Payload::Notify(n) => self.on_notify(sh, now, n, &cookies),
                Payload::Delete(d) => self.on_delete(sh, d, &cookies),
                _ => {}
            }
            if self.is_closed() {
                return;
            }
        }
    }

    fn on_notify(&mut self, sh: &mut Shared, now: Instant, n: &Notify, cookies: &[u8]) {
        match n.ty {
            NotifyType::R_U_THERE => {
                if let Ok(seq) = <[u8; 4]>::try_from(n.data.as_slice()) {
                    let _ =
                        self.send_dpd(sh, now, NotifyType::R_U_THERE_ACK, u32::from_be_bytes(seq));
                }
            }
            NotifyType::R_U_THERE_ACK => {
                // Any acknowledgement of an outstanding sequence number will do (alive()
                // already cleared the wait).
                tracing::trace!(sa = self.id.0, "R-U-THERE-ACK");
            }
            NotifyType::INITIAL_CONTACT => sh.actions.push(Action::InitialContact(self.id)),
            t if t.is_error() => {
                if n.protocol == ProtocolId::ESP || n.protocol == ProtocolId::AH {
                    let spi = <[u8; 4]>::try_from(n.spi.as_slice())
                        .map(u32::from_be_bytes)
                        .ok();
                    let hit = self
                        .quick
                        .values()
                        .find(|q| {
                            q.is_pending() && spi.is_some_and(|s| s == q.spi_in || s == q.spi_out)
                        })
                        .map(|q| q.mid);
                    if let Some(mid) = hit
                        && let Some(q) = self.quick.remove(&mid)
                    {
                        tracing::info!(sa = self.id.0, child = %q.name, notify = %t, "the peer refused the quick mode");
                        sh.child_spis.remove(&q.spi_in);
                        if q.initiator {
                            sh.stats.p2_local_act_failure += 1;
                        } else {
                            sh.stats.p2_remote_act_failure += 1;
                        }
                        sh.event(Event::ChildSaFailed {
                            ike_sa: self.id,
                            name: q.name,
                            reason: format!("peer answered {t}"),
                        });
                    }
                } else if !self.is_established() && (n.spi.is_empty() || n.spi == cookies) {
                    let reason = if t == NotifyType::AUTHENTICATION_FAILED {
                        CloseReason::AuthFailed(format!("peer answered {t}"))
                    } else {
                        CloseReason::NegotiationFailed(format!("peer answered {t}"))
                    };
                    self.fail(sh, reason);
                } else {
                    tracing::info!(sa = self.id.0, notify = %t, "error notify from the peer");
                }
            }
            _ => {}
        }
    }

    fn on_delete(&mut self, sh: &mut Shared, d: &Delete, cookies: &[u8]) {
        match d.protocol {
            ProtocolId::ISAKMP if d.spis.iter().any(|s| s.as_slice() == cookies) => {
                tracing::info!(sa = self.id.0, peer = %self.remote, "the peer deleted the ISAKMP SA");
                sh.actions.push(Action::PeerDeleted(self.id));
            }
            ProtocolId::ESP | ProtocolId::AH => {
                for s in &d.spis {
                    let Ok(spi) = <[u8; 4]>::try_from(s.as_slice()).map(u32::from_be_bytes) else {
                        continue;
                    };
                    if let Some(i) = self.children.iter().position(|c| c.spi_out == spi) {
                        tracing::info!(
                            sa = self.id.0,
                            spi = format_args!("{spi:#010x}"),
                            "the peer deleted a child SA"
                        );
                        self.remove_child(sh, i);
                    }
                }
            }
            _ => {}
        }
    }

    /// Unencrypted informationals are believed only while nothing is at stake: an error
    /// answer to our first message.
    fn handle_plain_info(&mut self, sh: &mut Shared, data: &[u8]) {
        let early =
            matches!(self.state, P1State::MmSentSa | P1State::AmSent) && self.keys.is_none();
        let Ok(m) = Message::decode(data) else {
            sh.stats.invalid_packets += 1;
            return;
        };
        match Find(&m.payloads).notifies().find(|n| n.ty.is_error()) {
            Some(n) if early => {
                tracing::info!(sa = self.id.0, notify = %n.ty, "the responder refused phase 1");
                self.fail(
                    sh,
                    CloseReason::NegotiationFailed(format!("peer answered {}", n.ty)),
                );
            }
            _ => sh.stats.invalid_packets += 1,
        }
    }
}
