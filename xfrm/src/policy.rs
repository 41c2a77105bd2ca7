//! Security policies: [`Policy`], its [`Template`]s, and how to name one ([`PolicyId`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_xfrm as nx;
use nx::XfrmAttrs;

use crate::error::{Error, Result};
use crate::types::{
    AddressFamily, CurrentLifetime, Direction, Lifetimes, Mark, Mode, PolicyAction, Proto,
    Selector, Spi, addr_from_wire,
};
use crate::wire::{Attrs, PolicyIdMsg, PolicyInfoMsg};

/// Most templates a policy may carry (`XFRM_MAX_DEPTH`).
pub const MAX_TEMPLATES: usize = 6;

/// One transform a policy requires (`xfrm_user_tmpl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Template {
    /// Address family of the endpoints.
    pub family: AddressFamily,
    /// Tunnel source (unspecified for transport mode).
    pub src: IpAddr,
    /// Tunnel destination (unspecified for transport mode).
    pub dst: IpAddr,
    /// Protocol.
    pub proto: Proto,
    /// SPI to require (`None` = any).
    pub spi: Option<Spi>,
    /// Mode.
    pub mode: Mode,
    /// Request ID that SAs for this template carry.
    pub reqid: u32,
    /// Optional template (`level use`): traffic passes when no SA exists.
    pub optional: bool,
    /// Sharing (`XFRM_SHARE_*`), normally 0.
    pub share: u8,
    /// Allowed authentication algorithms bitmap (legacy PF_KEY numbering; all by default).
    pub aalgos: u32,
    /// Allowed encryption algorithms bitmap.
    pub ealgos: u32,
    /// Allowed compression algorithms bitmap.
    pub calgos: u32,
}

impl Template {
    /// A tunnel-mode template between `src` and `dst`.
    pub fn tunnel(proto: Proto, src: IpAddr, dst: IpAddr, reqid: u32) -> Self {
        Template {
            family: AddressFamily::of(&dst),
            src,
            dst,
            proto,
            spi: None,
            mode: Mode::Tunnel,
            reqid,
            optional: false,
            share: 0,
            aalgos: u32::MAX,
            ealgos: u32::MAX,
            calgos: u32::MAX,
        }
    }

    /// A transport-mode template (endpoints come from the packet).
    pub fn transport(proto: Proto, family: AddressFamily, reqid: u32) -> Self {
        let any = match family {
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        Template {
            family,
            src: any,
            dst: any,
            proto,
            spi: None,
            mode: Mode::Transport,
            reqid,
            optional: false,
            share: 0,
            aalgos: u32::MAX,
            ealgos: u32::MAX,
            calgos: u32::MAX,
        }
    }

    /// Makes the template optional (`level use`).
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    pub(crate) fn to_wire(self) -> nx::UserTemplate {
        nx::UserTemplate {
            id: nx::Id {
                daddr: nx::Address::from_ip(&self.dst),
                spi: self.spi.map_or(0, |s| s.0),
                proto: self.proto.into(),
            },
            family: self.family.into(),
            saddr: nx::Address::from_ip(&self.src),
            reqid: self.reqid,
            mode: self.mode.into(),
            share: self.share,
            optional: u8::from(self.optional),
            aalgos: self.aalgos,
            ealgos: self.ealgos,
            calgos: self.calgos,
        }
    }

    pub(crate) fn from_wire(t: &nx::UserTemplate) -> Self {
        let family = AddressFamily::from(t.family);
        Template {
            family,
            src: addr_from_wire(family, &t.saddr),
            dst: addr_from_wire(family, &t.id.daddr),
            proto: Proto::from(t.id.proto),
            spi: (t.id.spi != 0).then_some(Spi(t.id.spi)),
            mode: Mode::from(t.mode),
            reqid: t.reqid,
            optional: t.optional != 0,
            share: t.share,
            aalgos: t.aalgos,
            ealgos: t.ealgos,
            calgos: t.calgos,
        }
    }
}

/// Policy flags (`XFRM_POLICY_LOCALOK`, `XFRM_POLICY_ICMP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PolicyFlags(pub u8);

impl PolicyFlags {
    /// Allow user space to override the policy per socket.
    pub const LOCALOK: PolicyFlags = PolicyFlags(1);
    /// Match ICMP errors by the inner packet.
    pub const ICMP: PolicyFlags = PolicyFlags(2);
}

/// A security policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    /// Which traffic.
    pub selector: Selector,
    /// Direction.
    pub dir: Direction,
    /// Allow (apply templates) or block.
    pub action: PolicyAction,
    /// Priority: lower values win.
    pub priority: u32,
    /// Index; 0 lets the kernel choose one (reported back in dumps).
    pub index: u32,
    /// Required transforms, outermost last.
    pub templates: Vec<Template>,
    /// Policy lifetimes (rarely used).
    pub lifetimes: Lifetimes,
    /// Flags.
    pub flags: PolicyFlags,
    /// Sharing (`XFRM_SHARE_*`), normally 0.
    pub share: u8,
    /// Mark to match.
    pub mark: Option<Mark>,
    /// XFRM interface ID.
    pub if_id: Option<u32>,
}

impl Policy {
    /// A policy for `selector` in direction `dir`, allowing, priority 0, no templates.
    pub fn new(selector: Selector, dir: Direction) -> Self {
        Policy {
            selector,
            dir,
            action: PolicyAction::Allow,
            priority: 0,
            index: 0,
            templates: Vec::new(),
            lifetimes: Lifetimes::default(),
            flags: PolicyFlags::default(),
            share: 0,
            mark: None,
            if_id: None,
        }
    }

    /// Adds a template.
    pub fn template(mut self, t: Template) -> Self {
        self.templates.push(t);
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, p: u32) -> Self {
        self.priority = p;
        self
    }

    /// Sets the action.
    pub fn action(mut self, a: PolicyAction) -> Self {
        self.action = a;
        self
    }

    /// Sets the index.
    pub fn index(mut self, i: u32) -> Self {
        self.index = i;
        self
    }

    /// Sets the mark.
    pub fn mark(mut self, m: Mark) -> Self {
        self.mark = Some(m);
        self
    }

    /// The ID to get or delete this policy by selector.
    pub fn id(&self) -> PolicyId {
        PolicyId::Selector {
            selector: self.selector,
            dir: self.dir,
            mark: self.mark,
            if_id: self.if_id,
        }
    }

    pub(crate) fn to_wire(&self) -> Result<PolicyInfoMsg> {
        if self.templates.len() > MAX_TEMPLATES {
            return Err(Error::invalid(format!(
                "a policy has at most {MAX_TEMPLATES} templates, got {}",
                self.templates.len()
            )));
        }
        if self.selector.family == AddressFamily::Unspec {
            return Err(Error::invalid("a policy selector needs an address family"));
        }
        let info = nx::UserPolicyInfo {
            selector: self.selector.to_wire(),
            lifetime_cfg: self.lifetimes.to_wire(),
            lifetime_cur: nx::Lifetime::default(),
            priority: self.priority,
            index: self.index,
            direction: self.dir.into(),
            action: self.action.into(),
            flags: self.flags.0,
            share: self.share,
        };
        let mut attrs = Vec::new();
        if !self.templates.is_empty() {
            attrs.push(XfrmAttrs::Template(
                self.templates.iter().map(|t| t.to_wire()).collect(),
            ));
        }
        push_mark_ifid(&mut attrs, self.mark, self.if_id);
        Ok(PolicyInfoMsg {
            info,
            attrs: Attrs(attrs),
        })
    }
}

fn push_mark_ifid(attrs: &mut Vec<XfrmAttrs>, mark: Option<Mark>, if_id: Option<u32>) {
    if let Some(m) = mark {
        attrs.push(XfrmAttrs::Mark(nx::Mark {
            value: m.value,
            mask: m.mask,
        }));
    }
    if let Some(id) = if_id {
        attrs.push(XfrmAttrs::IfId(id));
    }
}

/// A policy as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyInfo {
    /// The policy (with the kernel-assigned index).
    pub policy: Policy,
    /// Current lifetime: bytes/packets matched and add/use times.
    pub current: CurrentLifetime,
}

impl PolicyInfo {
    pub(crate) fn from_wire(info: &nx::UserPolicyInfo, attrs: &Attrs) -> Self {
        let mut p = Policy {
            selector: Selector::from_wire(&info.selector),
            dir: Direction::from(info.direction),
            action: PolicyAction::from(info.action),
            priority: info.priority,
            index: info.index,
            templates: Vec::new(),
            lifetimes: Lifetimes::from_wire(&info.lifetime_cfg),
            flags: PolicyFlags(info.flags),
            share: info.share,
            mark: None,
            if_id: None,
        };
        apply_common_attrs(&mut p, attrs);
        PolicyInfo {
            policy: p,
            current: CurrentLifetime::from_wire(&info.lifetime_cur),
        }
    }
}

pub(crate) fn apply_common_attrs(p: &mut Policy, attrs: &Attrs) {
    for a in &attrs.0 {
        match a {
            XfrmAttrs::Template(ts) => p.templates = ts.iter().map(Template::from_wire).collect(),
            XfrmAttrs::Mark(m) => {
                p.mark = Some(Mark {
                    value: m.value,
                    mask: m.mask,
                })
            }
            XfrmAttrs::IfId(v) => p.if_id = Some(*v),
            _ => {}
        }
    }
}

/// How to name a policy for get/delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyId {
    /// By selector, direction (and mark / interface ID).
    Selector {
        /// Selector.
        selector: Selector,
        /// Direction.
        dir: Direction,
        /// Mark.
        mark: Option<Mark>,
        /// Interface ID.
        if_id: Option<u32>,
    },
    /// By kernel index and direction.
    Index {
        /// Index.
        index: u32,
        /// Direction.
        dir: Direction,
    },
}

impl PolicyId {
    pub(crate) fn to_wire(self) -> PolicyIdMsg {
        match self {
            PolicyId::Selector {
                selector,
                dir,
                mark,
                if_id,
            } => {
                let mut attrs = Vec::new();
                push_mark_ifid(&mut attrs, mark, if_id);
                PolicyIdMsg {
                    id: nx::UserPolicyId {
                        selector: selector.to_wire(),
                        index: 0,
                        direction: dir.into(),
                    },
                    attrs: Attrs(attrs),
                }
            }
            PolicyId::Index { index, dir } => PolicyIdMsg {
                id: nx::UserPolicyId {
                    selector: nx::Selector::default(),
                    index,
                    direction: dir.into(),
                },
                attrs: Attrs::default(),
            },
        }
    }
}

/// SPD summary (`XFRM_MSG_GETSPDINFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpdInfo {
    /// Inbound policies.
    pub in_count: u32,
    /// Outbound policies.
    pub out_count: u32,
    /// Forward policies.
    pub fwd_count: u32,
    /// Socket policies inbound.
    pub in_socket_count: u32,
    /// Socket policies outbound.
    pub out_socket_count: u32,
    /// Socket policies forward.
    pub fwd_socket_count: u32,
    /// Hash table size.
    pub hash_size: u32,
    /// Hash table maximum.
    pub hash_max: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_roundtrip_through_wire() -> Result<()> {
        let sel = Selector::new("10.1.0.0/16".parse()?, "10.2.0.0/16".parse()?)?;
        let p = Policy::new(sel, Direction::Out)
            .priority(1000)
            .template(Template::tunnel(
                Proto::Esp,
                IpAddr::from([192, 0, 2, 1]),
                IpAddr::from([192, 0, 2, 2]),
                7,
            ))
            .mark(Mark { value: 1, mask: 1 });
        let w = p.to_wire()?;
        let back = PolicyInfo::from_wire(&w.info, &w.attrs);
        assert_eq!(back.policy, p);
        Ok(())
    }

    #[test]
    fn too_many_templates_rejected() -> Result<()> {
        let sel = Selector::new("10.1.0.0/16".parse()?, "10.2.0.0/16".parse()?)?;
        let mut p = Policy::new(sel, Direction::Out);
        for _ in 0..7 {
            p = p.template(Template::transport(Proto::Esp, AddressFamily::Inet, 1));
        }
        assert!(p.to_wire().is_err());
        Ok(())
    }
}
