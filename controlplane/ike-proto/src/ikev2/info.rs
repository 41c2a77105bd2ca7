//! INFORMATIONAL (RFC 7296 §1.4): DELETE of child and IKE SAs (with simultaneous deletes),
//! liveness checks, notifies.

use std::time::Instant;

use crate::error::Result;
use crate::ikev2::event::{ChildId, CloseReason};
use crate::ikev2::sa::{ChildState, Find, IkeSa, Req, Shared};
use crate::wire::{Delete, ExchangeType, Payload, ProtocolId};

impl IkeSa {
    /// Sends a DELETE for one child.
    pub(crate) fn start_delete_child(
        &mut self,
        sh: &mut Shared,
        now: Instant,
        child: ChildId,
    ) -> Result<()> {
        let Some(i) = self.child_index(child) else {
            return Ok(());
        };
        let Some(c) = self.children.get_mut(i) else {
            return Ok(());
        };
        if c.state == ChildState::Deleting {
            return Ok(());
        }
        c.state = ChildState::Deleting;
        let spi = c.spi_in;
        self.send_request(
            sh,
            now,
            ExchangeType::INFORMATIONAL,
            &[IkeSa::delete_payload(&[spi])],
            Req::Delete(vec![child]),
        )
    }

    /// Sends a DELETE for the IKE SA.
    pub(crate) fn start_delete_ike(&mut self, sh: &mut Shared, now: Instant) -> Result<()> {
        self.send_request(
            sh,
            now,
            ExchangeType::INFORMATIONAL,
            &[Payload::Delete(Delete {
                protocol: ProtocolId::IKE,
                spi_size: 0,
                spis: Vec::new(),
            })],
            Req::DeleteIke,
        )
    }

    /// The answer to our child DELETE: the children are gone.
    pub(crate) fn handle_delete_response(&mut self, sh: &mut Shared, ids: &[ChildId]) {
        for id in ids {
            if let Some(i) = self.child_index(*id) {
                self.remove_child(sh, i);
            }
        }
    }

    /// Responder: an INFORMATIONAL request.
    pub(crate) fn handle_info_request(
        &mut self,
        sh: &mut Shared,
        _now: Instant,
        msg_id: u32,
        payloads: Vec<Payload>,
    ) -> Result<()> {
        let f = Find(&payloads);
        let x = ExchangeType::INFORMATIONAL;
        if f.deletes().any(|d| d.protocol == ProtocolId::IKE) {
            self.send_response(sh, x, msg_id, &[])?;
            let reason = if self.superseded {
                CloseReason::Rekeyed
            } else {
                CloseReason::PeerDeleted
            };
            self.close(sh, reason);
            return Ok(());
        }
        let mut ours = Vec::new();
        for d in f
            .deletes()
            .filter(|d| d.protocol == ProtocolId::ESP || d.protocol == ProtocolId::AH)
        {
            for spi in &d.spis {
                let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                    continue;
                };
                let Some(i) = self.child_by_spi_out(u32::from_be_bytes(b)) else {
                    continue;
                };
                let Some(c) = self.children.get(i) else {
                    continue;
                };
                // Simultaneous delete (RFC 7296 §1.4.1): no Delete payload back for a child
                // we are deleting ourselves.
                if c.state != ChildState::Deleting {
                    ours.push(c.spi_in);
                }
                self.remove_child(sh, i);
            }
        }
        let resp = if ours.is_empty() {
            Vec::new()
        } else {
            vec![IkeSa::delete_payload(&ours)]
        };
        self.send_response(sh, x, msg_id, &resp)
    }
}
