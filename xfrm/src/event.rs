//! XFRM events: expiring SAs and policies, acquires for traffic without an SA, NAT-T mapping
//! changes, and (optionally) every SA/policy change.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_xfrm as nx;
use nx::XfrmAttrs;
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::policy::PolicyInfo;
use crate::sa::{SaId, SaInfo};
use crate::types::{
    AddressFamily, CurrentLifetime, Mark, Proto, ReplayState, Selector, Spi, addr_from_wire,
};
use crate::wire::{Message, NlMessages, XfrmMsg};

/// Multicast groups to listen to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventGroups(pub u32);

impl EventGroups {
    /// ACQUIRE (traffic hit a policy whose templates have no SA).
    pub const ACQUIRE: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_ACQUIRE - 1));
    /// EXPIRE (SA soft/hard expiry) and POLEXPIRE.
    pub const EXPIRE: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_EXPIRE - 1));
    /// SA added/updated/deleted/flushed.
    pub const SA: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_SA - 1));
    /// Policy added/updated/deleted/flushed.
    pub const POLICY: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_POLICY - 1));
    /// Asynchronous replay/lifetime updates (NEWAE).
    pub const AEVENTS: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_AEVENTS - 1));
    /// REPORT.
    pub const REPORT: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_REPORT - 1));
    /// MIGRATE.
    pub const MIGRATE: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_MIGRATE - 1));
    /// MAPPING (NAT-T peer address or port changed).
    pub const MAPPING: EventGroups = EventGroups(1 << (nx::XFRMNLGRP_MAPPING - 1));
    /// What an IKE daemon needs: ACQUIRE, EXPIRE, MAPPING.
    pub const IKE: EventGroups = EventGroups(Self::ACQUIRE.0 | Self::EXPIRE.0 | Self::MAPPING.0);
    /// Every group.
    pub const ALL: EventGroups = EventGroups(0xff);

    pub(crate) fn group_numbers(self) -> Vec<u32> {
        (0..32)
            .filter(|b| self.0 & (1 << b) != 0)
            .map(|b| b + 1)
            .collect()
    }
}

impl std::ops::BitOr for EventGroups {
    type Output = EventGroups;
    fn bitor(self, rhs: Self) -> Self {
        EventGroups(self.0 | rhs.0)
    }
}

/// An ACQUIRE: outbound traffic matched a policy but no SA exists for a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquire {
    /// Destination of the SA the kernel wants.
    pub dst: IpAddr,
    /// Source of the SA the kernel wants.
    pub src: IpAddr,
    /// Protocol of the SA the kernel wants.
    pub proto: Proto,
    /// The triggering packet's selector.
    pub selector: Selector,
    /// The policy that matched (templates included).
    pub policy: PolicyInfo,
    /// Sequence number; put it in [`Sa::acquire_seq`](crate::Sa::acquire_seq) of the SA that answers.
    pub seq: u32,
}

/// A NAT-T mapping change: the peer's public address or port for an inbound SA changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The SA.
    pub sa: SaId,
    /// Its reqid.
    pub reqid: u32,
    /// Previous peer address and source port.
    pub old: SocketAddr,
    /// New peer address and source port.
    pub new: SocketAddr,
}

/// A NEWAE: replay/lifetime state of an SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncEvent {
    /// The SA.
    pub sa: SaId,
    /// SA source address.
    pub src: IpAddr,
    /// Reqid.
    pub reqid: u32,
    /// `XFRM_AE_*` flags (the cause).
    pub flags: u32,
    /// Current lifetime, if included.
    pub current: Option<CurrentLifetime>,
    /// Replay state, if included.
    pub replay: Option<ReplayState>,
}

/// An XFRM event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An SA reached a soft (`hard == false`: rekey now) or hard (deleted) limit.
    Expire {
        /// The SA (its algorithms are not included by the kernel).
        sa: Box<SaInfo>,
        /// Hard expiry.
        hard: bool,
    },
    /// Outbound traffic needs an SA.
    Acquire(Box<Acquire>),
    /// A policy reached a lifetime limit.
    PolicyExpire {
        /// The policy.
        policy: Box<PolicyInfo>,
        /// Hard expiry.
        hard: bool,
    },
    /// NAT-T mapping changed.
    Mapping(Mapping),
    /// An SA was added (group SA).
    SaAdded(Box<SaInfo>),
    /// An SA was updated (group SA).
    SaUpdated(Box<SaInfo>),
    /// An SA was deleted (group SA).
    SaDeleted(Box<SaInfo>),
    /// SAs were flushed (group SA): `Other(0)` = all, else the protocol.
    SaFlushed(Proto),
    /// A policy was added (group POLICY).
    PolicyAdded(Box<PolicyInfo>),
    /// A policy was updated (group POLICY).
    PolicyUpdated(Box<PolicyInfo>),
    /// A policy was deleted (group POLICY).
    PolicyDeleted(Box<PolicyInfo>),
    /// Policies were flushed (group POLICY).
    PolicyFlushed,
    /// Replay/lifetime update (group AEVENTS).
    AsyncEvent(Box<AsyncEvent>),
    /// A message this crate does not turn into an event (REPORT, MIGRATE, …).
    Other {
        /// The netlink message type.
        msg_type: u16,
    },
}

impl Event {
    /// Converts a parsed XFRM message into an event.
    pub fn from_message(msg: XfrmMsg) -> Result<Self> {
        let ty = msg.message_type();
        Ok(match msg {
            XfrmMsg::Expire(mut m) => Event::Expire {
                sa: Box::new(SaInfo::from_wire(&m.expire.state, &mut m.attrs)),
                hard: m.expire.hard != 0,
            },
            XfrmMsg::Acquire(m) => {
                let a = &m.acquire;
                let family = AddressFamily::from(a.selector.family);
                let policy = PolicyInfo::from_wire(&a.policy, &m.attrs);
                // The acquire's own family is the template's; fall back to the selector's.
                let tmpl_family = policy
                    .policy
                    .templates
                    .first()
                    .map(|t| t.family)
                    .filter(|f| *f != AddressFamily::Unspec)
                    .unwrap_or(family);
                Event::Acquire(Box::new(Acquire {
                    dst: addr_from_wire(tmpl_family, &a.id.daddr),
                    src: addr_from_wire(tmpl_family, &a.saddr),
                    proto: Proto::from(a.id.proto),
                    selector: Selector::from_wire(&a.selector),
                    policy,
                    seq: a.seq,
                }))
            }
            XfrmMsg::PolExpire(m) => Event::PolicyExpire {
                policy: Box::new(PolicyInfo::from_wire(&m.expire.pol, &m.attrs)),
                hard: m.expire.hard != 0,
            },
            XfrmMsg::Mapping(m) => {
                let family = AddressFamily::from(m.id.family);
                let sa = SaId::new(
                    addr_from_wire(family, &m.id.daddr),
                    Spi(m.id.spi),
                    Proto::from(m.id.proto),
                );
                Event::Mapping(Mapping {
                    sa,
                    reqid: m.reqid,
                    old: SocketAddr::new(addr_from_wire(family, &m.old_saddr), m.old_sport),
                    new: SocketAddr::new(addr_from_wire(family, &m.new_saddr), m.new_sport),
                })
            }
            XfrmMsg::NewSa(mut m) => {
                Event::SaAdded(Box::new(SaInfo::from_wire(&m.info, &mut m.attrs)))
            }
            XfrmMsg::UpdSa(mut m) => {
                Event::SaUpdated(Box::new(SaInfo::from_wire(&m.info, &mut m.attrs)))
            }
            XfrmMsg::DelSa(mut m) => {
                // The notification carries the full SA in XFRMA_SA.
                let info = m.attrs.0.iter().find_map(|a| match a {
                    XfrmAttrs::SaInfo(i) => Some(*i),
                    _ => None,
                });
                match info {
                    Some(i) => Event::SaDeleted(Box::new(SaInfo::from_wire(&i, &mut m.attrs))),
                    None => return Err(Error::decode("DELSA notification without XFRMA_SA")),
                }
            }
            XfrmMsg::FlushSa { proto, .. } => Event::SaFlushed(Proto::from(proto)),
            XfrmMsg::NewPolicy(m) => {
                Event::PolicyAdded(Box::new(PolicyInfo::from_wire(&m.info, &m.attrs)))
            }
            XfrmMsg::UpdPolicy(m) => {
                Event::PolicyUpdated(Box::new(PolicyInfo::from_wire(&m.info, &m.attrs)))
            }
            XfrmMsg::DelPolicy(m) => {
                let info = m.attrs.0.iter().find_map(|a| match a {
                    XfrmAttrs::PolicyInfo(i) => Some(*i),
                    _ => None,
                });
                match info {
                    Some(i) => Event::PolicyDeleted(Box::new(PolicyInfo::from_wire(&i, &m.attrs))),
                    None => {
                        return Err(Error::decode("DELPOLICY notification without XFRMA_POLICY"));
                    }
                }
            }
            XfrmMsg::FlushPolicy(_) => Event::PolicyFlushed,
            XfrmMsg::NewAe(m) => Event::AsyncEvent(Box::new(async_event(&m.id, &m.attrs))),
            _ => Event::Other { msg_type: ty },
        })
    }
}

pub(crate) fn async_event(id: &nx::AsyncEventId, attrs: &crate::wire::Attrs) -> AsyncEvent {
    let family = AddressFamily::from(id.sa_id.family);
    let mut ev = AsyncEvent {
        sa: SaId::new(
            addr_from_wire(family, &id.sa_id.daddr),
            Spi(id.sa_id.spi),
            Proto::from(id.sa_id.proto),
        ),
        src: addr_from_wire(family, &id.saddr),
        reqid: id.reqid,
        flags: id.flags,
        current: None,
        replay: None,
    };
    for a in &attrs.0 {
        match a {
            XfrmAttrs::LifetimeBytes(l) => ev.current = Some(CurrentLifetime::from_wire(l)),
            XfrmAttrs::ReplayState(r) => {
                ev.replay = Some(ReplayState {
                    oseq: u64::from(r.oseq),
                    seq: u64::from(r.seq),
                    window: 0,
                    bitmap: vec![r.bitmap],
                })
            }
            XfrmAttrs::ReplayStateEsn(r) => {
                ev.replay = Some(ReplayState {
                    oseq: (u64::from(r.oseq_hi) << 32) | u64::from(r.oseq),
                    seq: (u64::from(r.seq_hi) << 32) | u64::from(r.seq),
                    window: r.replay_window,
                    bitmap: r.bmp.clone(),
                })
            }
            XfrmAttrs::Mark(m) => {
                ev.sa.mark = Some(Mark {
                    value: m.value,
                    mask: m.mask,
                })
            }
            _ => {}
        }
    }
    ev
}

/// A stream of XFRM events from its own multicast socket (see [`Handle::events`](crate::Handle::events)).
pub struct EventStream {
    sock: netlink_sys::TokioSocket,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<Result<Event>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(crate) fn new(sock: netlink_sys::TokioSocket) -> Result<Self> {
        Ok(EventStream {
            sock,
            buf: Vec::with_capacity(64 * 1024),
            pending: Default::default(),
        })
    }

    /// The next event. [`Error::Overrun`] means events were lost because the socket's queue
    /// overflowed: resynchronise (dump SAs/policies) and keep reading.
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return e;
            }
            if !crate::conn::recv_into(&self.sock, &mut self.buf).await? {
                return Err(Error::Overrun(
                    "XFRM events were lost; resynchronise with a dump",
                ));
            }
            for m in NlMessages::new(&self.buf) {
                let ev = m
                    .and_then(|(hdr, payload)| Message::parse(&hdr, payload))
                    .and_then(|m| match m {
                        Message::Xfrm(x) => Event::from_message(*x).map(Some),
                        _ => Ok(None),
                    });
                match ev {
                    Ok(Some(e)) => self.pending.push_back(Ok(e)),
                    Ok(None) => {}
                    Err(e) => self.pending.push_back(Err(e)),
                }
            }
            self.buf.as_mut_slice().zeroize();
        }
    }
}
