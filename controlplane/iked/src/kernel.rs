//! The kernel side of a stack: IPsec SAs and policies.
//!
//! [`Kernel::Xfrm`] talks XFRM netlink through `gatekey-xfrm` in the stack's
//! namespace. [`Kernel::Recording`] keeps the same objects in memory and
//! records every call: host tests use it where the host kernel cannot
//! install ESP SAs (no `CONFIG_INET_ESP`), so two iked instances can
//! negotiate on the host and the test can compare what each would have
//! installed. Select it with the hidden `--kernel recording` option.
//!
//! Every object iked installs carries a request ID in iked's band
//! ([`REQID_BASE`]): that is how iked recognises its own SAs and policies
//! after a restart (reconciliation) and never touches anyone else's.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use gatekey_xfrm::{Direction, Handle, Policy, PolicyId, Proto, Sa, SaId, Spi};

/// iked's request IDs are `REQID_BASE | n` with n < 2^24.
pub const REQID_BASE: u32 = 0x6b00_0000;
/// The mask selecting the band.
pub const REQID_MASK: u32 = 0xff00_0000;

/// Is `reqid` one of iked's?
pub fn is_ours(reqid: u32) -> bool {
    reqid & REQID_MASK == REQID_BASE
}

/// Policy priorities (lower wins). Both sit above the default other tools
/// use (0), so an administrator's explicit policies keep precedence. Manual
/// tunnels win over the fail-closed policies of dynamic rules, so a manual
/// tunnel can carve a subnet out of a broader dynamic rule; when it is
/// deactivated the broader rule's policy takes the traffic again (dropped
/// until its tunnel is up, never clear).
pub const PRIORITY_MANUAL: u32 = 0x2000;
/// Priority of the policies of dynamic tunnels (LocalDynVpnRule).
pub const PRIORITY_TUNNEL: u32 = 0x3000;

/// What iked reports about an installed SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaState {
    /// Which SA.
    pub id: SaId,
    /// Source (outer) address.
    pub src: IpAddr,
    /// Its request ID.
    pub reqid: u32,
    /// Bytes processed.
    pub bytes: u64,
    /// Packets processed.
    pub packets: u64,
    /// When it was added (seconds since the epoch), if known.
    pub add_time: u64,
}

/// One call recorded by [`Kernel::Recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// An SA was added or updated.
    AddSa(Box<Sa>),
    /// An SA was deleted.
    DeleteSa(SaId),
    /// A policy was added or updated.
    AddPolicy(Box<Policy>),
    /// A policy was deleted.
    DeletePolicy(PolicyId),
}

/// The in-memory kernel of [`Kernel::Recording`].
#[derive(Debug, Default)]
pub struct Recording {
    /// Every call in order.
    pub journal: Vec<Recorded>,
    sas: BTreeMap<(IpAddr, u32, u8), Sa>,
    policies: Vec<Policy>,
    next_spi: u32,
}

/// Where a stack's SAs and policies go.
#[derive(Debug, Clone)]
pub enum Kernel {
    /// The kernel, through XFRM netlink.
    Xfrm(Handle),
    /// In memory (tests).
    Recording(Arc<Mutex<Recording>>),
}

/// A kernel error, as text for messages.
pub type Result<T> = std::result::Result<T, String>;

fn xerr(e: gatekey_xfrm::Error) -> String {
    e.to_string()
}

fn same_policy(a: &Policy, b: &Policy) -> bool {
    a.selector == b.selector && a.dir == b.dir && a.mark == b.mark && a.if_id == b.if_id
}

impl Kernel {
    /// A recording kernel.
    pub fn recording() -> Self {
        Kernel::Recording(Arc::new(Mutex::new(Recording {
            next_spi: 0xc000_0000,
            ..Recording::default()
        })))
    }

    /// The journal of a recording kernel (empty for XFRM).
    pub fn journal(&self) -> Vec<Recorded> {
        match self {
            Kernel::Xfrm(_) => Vec::new(),
            Kernel::Recording(r) => r.lock().map(|r| r.journal.clone()).unwrap_or_default(),
        }
    }

    /// Add or replace an SA.
    pub async fn put_sa(&self, sa: Sa) -> Result<()> {
        match self {
            Kernel::Xfrm(h) => match h.state().add(sa.clone()).execute().await {
                Err(e) if e.is_exists() => h.state().update(sa).execute().await.map_err(xerr),
                r => r.map_err(xerr),
            },
            Kernel::Recording(r) => {
                let mut r = r
                    .lock()
                    .map_err(|_| "recording kernel poisoned".to_string())?;
                r.journal.push(Recorded::AddSa(Box::new(sa.clone())));
                let proto: u8 = sa_proto(&sa).into();
                r.sas.insert((sa.dst, sa.spi.0, proto), sa);
                Ok(())
            }
        }
    }

    /// Delete an SA; a missing one is not an error.
    pub async fn delete_sa(&self, id: SaId) -> Result<()> {
        match self {
            Kernel::Xfrm(h) => match h.state().delete(id).execute().await {
                Err(e) if e.is_not_found() => Ok(()),
                r => r.map_err(xerr),
            },
            Kernel::Recording(r) => {
                let mut r = r
                    .lock()
                    .map_err(|_| "recording kernel poisoned".to_string())?;
                r.journal.push(Recorded::DeleteSa(id));
                r.sas.remove(&(id.dst, id.spi.0, id.proto.into()));
                Ok(())
            }
        }
    }

    /// Add or replace a policy.
    pub async fn put_policy(&self, p: Policy) -> Result<()> {
        match self {
            Kernel::Xfrm(h) => h.policy().update(p).execute().await.map_err(xerr),
            Kernel::Recording(r) => {
                let mut r = r
                    .lock()
                    .map_err(|_| "recording kernel poisoned".to_string())?;
                r.journal.push(Recorded::AddPolicy(Box::new(p.clone())));
                r.policies.retain(|q| !same_policy(q, &p));
                r.policies.push(p);
                Ok(())
            }
        }
    }

    /// Delete a policy; a missing one is not an error.
    pub async fn delete_policy(&self, p: &Policy) -> Result<()> {
        let id = p.id();
        match self {
            Kernel::Xfrm(h) => match h.policy().delete(id).execute().await {
                Err(e) if e.is_not_found() => Ok(()),
                r => r.map_err(xerr),
            },
            Kernel::Recording(r) => {
                let mut r = r
                    .lock()
                    .map_err(|_| "recording kernel poisoned".to_string())?;
                r.journal.push(Recorded::DeletePolicy(id));
                r.policies.retain(|q| !same_policy(q, p));
                Ok(())
            }
        }
    }

    /// Every policy that carries one of iked's request IDs.
    pub async fn our_policies(&self) -> Result<Vec<Policy>> {
        let all = match self {
            Kernel::Xfrm(h) => h
                .policy()
                .dump()
                .execute()
                .await
                .map_err(xerr)?
                .into_iter()
                .map(|i| i.policy)
                .collect(),
            Kernel::Recording(r) => r
                .lock()
                .map_err(|_| "recording kernel poisoned".to_string())?
                .policies
                .clone(),
        };
        Ok(all
            .into_iter()
            .filter(|p| p.templates.iter().any(|t| is_ours(t.reqid)))
            .collect())
    }

    /// Every SA that carries one of iked's request IDs, with counters.
    pub async fn our_sas(&self) -> Result<Vec<SaState>> {
        match self {
            Kernel::Xfrm(h) => Ok(h
                .state()
                .dump()
                .execute()
                .await
                .map_err(xerr)?
                .into_iter()
                .filter(|i| is_ours(i.sa.reqid))
                .map(|i| SaState {
                    id: SaId {
                        src: Some(i.sa.src),
                        ..SaId::new(i.sa.dst, i.sa.spi, sa_proto(&i.sa))
                    },
                    src: i.sa.src,
                    reqid: i.sa.reqid,
                    bytes: i.current.bytes,
                    packets: i.current.packets,
                    add_time: i.current.add_time,
                })
                .collect()),
            Kernel::Recording(r) => Ok(r
                .lock()
                .map_err(|_| "recording kernel poisoned".to_string())?
                .sas
                .values()
                .filter(|sa| is_ours(sa.reqid))
                .map(|sa| SaState {
                    id: SaId {
                        src: Some(sa.src),
                        ..SaId::new(sa.dst, sa.spi, sa_proto(sa))
                    },
                    src: sa.src,
                    reqid: sa.reqid,
                    bytes: 0,
                    packets: 0,
                    add_time: 0,
                })
                .collect()),
        }
    }

    /// Allocate an inbound SPI for an SA from `src` to `dst`.
    pub async fn alloc_spi(&self, src: IpAddr, dst: IpAddr, reqid: u32) -> Result<Spi> {
        match self {
            Kernel::Xfrm(h) => h
                .state()
                .alloc_spi(src, dst, Proto::Esp)
                .reqid(reqid)
                .range(0xc000_0000, 0xcfff_ffff)
                .execute()
                .await
                .map_err(xerr),
            Kernel::Recording(r) => {
                let mut r = r
                    .lock()
                    .map_err(|_| "recording kernel poisoned".to_string())?;
                r.next_spi = r.next_spi.wrapping_add(1);
                Ok(Spi(r.next_spi))
            }
        }
    }
}

/// The protocol of an SA to install (ESP unless it is AH).
pub fn sa_proto(sa: &Sa) -> Proto {
    match sa.crypto {
        gatekey_xfrm::SaCrypto::Ah { .. } => Proto::Ah,
        _ => Proto::Esp,
    }
}

/// The three policies (out, in, fwd) that send traffic between `src` and
/// `dst` selectors through templates between `local` and `remote`.
pub fn tunnel_policies(
    out_sel: gatekey_xfrm::Selector,
    local: IpAddr,
    remote: IpAddr,
    proto: Proto,
    mode: gatekey_xfrm::Mode,
    reqid: u32,
    priority: u32,
) -> Vec<Policy> {
    use gatekey_xfrm::{AddressFamily, Template};
    let in_sel = gatekey_xfrm::Selector {
        src: out_sel.dst,
        dst: out_sel.src,
        sport: out_sel.dport,
        sport_mask: out_sel.dport_mask,
        dport: out_sel.sport,
        dport_mask: out_sel.sport_mask,
        ..out_sel
    };
    let (t_out, t_in) = match mode {
        gatekey_xfrm::Mode::Transport => {
            let fam = AddressFamily::of(&remote);
            (
                Template::transport(proto, fam, reqid),
                Template::transport(proto, fam, reqid),
            )
        }
        _ => (
            Template::tunnel(proto, local, remote, reqid),
            Template::tunnel(proto, remote, local, reqid),
        ),
    };
    let mut v = vec![
        Policy::new(out_sel, Direction::Out)
            .priority(priority)
            .template(t_out),
        Policy::new(in_sel, Direction::In)
            .priority(priority)
            .template(t_in),
    ];
    if mode != gatekey_xfrm::Mode::Transport {
        v.push(
            Policy::new(in_sel, Direction::Fwd)
                .priority(priority)
                .template(t_in),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reqid_band() {
        assert!(is_ours(REQID_BASE | 5));
        assert!(!is_ours(5));
        assert!(!is_ours(0x6c00_0001));
    }

    #[tokio::test]
    async fn recording_kernel_keeps_and_reports_objects() {
        let k = Kernel::recording();
        let sel = gatekey_xfrm::Selector::new(
            "10.1.0.0/16".parse().unwrap(),
            "10.2.0.0/16".parse().unwrap(),
        )
        .unwrap();
        let l: IpAddr = "192.0.2.1".parse().unwrap();
        let r: IpAddr = "192.0.2.2".parse().unwrap();
        let pols = tunnel_policies(
            sel,
            l,
            r,
            Proto::Esp,
            gatekey_xfrm::Mode::Tunnel,
            REQID_BASE | 1,
            PRIORITY_TUNNEL,
        );
        assert!(pols.iter().all(|p| p.priority == PRIORITY_TUNNEL));
        assert_eq!(pols.len(), 3);
        assert_eq!(pols[1].selector.src, sel.dst);
        assert_eq!(pols[1].templates[0].src, r);
        for p in &pols {
            k.put_policy(p.clone()).await.unwrap();
            k.put_policy(p.clone()).await.unwrap(); // idempotent
        }
        assert_eq!(k.our_policies().await.unwrap().len(), 3);
        k.delete_policy(&pols[0]).await.unwrap();
        assert_eq!(k.our_policies().await.unwrap().len(), 2);
        let spi = k.alloc_spi(r, l, REQID_BASE | 1).await.unwrap();
        assert_ne!(spi, k.alloc_spi(r, l, REQID_BASE | 1).await.unwrap());
        assert_eq!(k.journal().len(), 7);
    }
}
