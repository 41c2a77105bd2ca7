//! iked's side of the NMI (`docs/nmi-protocol.md`): authorization and the
//! answers to each request.
//!
//! The socket, framing and validation are `gatekey-nmi`'s server helper;
//! [`NmiHandler`] forwards each decoded request to the daemon's event loop
//! (the single owner of the stacks), which answers it with
//! [`crate::daemon::Daemon::nmi`].
//!
//! Authorization (§7): a local caller's uid from `SO_PEERCRED` is mapped to
//! its user name and groups; the request needs READ access to
//! `EZB.IPSECCMD.<sys>.<stack>.DISPLAY` or `.CONTROL` (`GET_IKENSINFO`:
//! `EZB.NETMGMT.<sys>.<sys>.IKED.DISPLAY`) in iked's security database
//! (IkeConfig `SafDatabase`). When no profile covers the resource, only
//! uid 0 is permitted.

use std::future::Future;

use gatekey_config::saf::{AccessLevel, Decision, SafDatabase};
use gatekey_nmi::server::{Caller, Handler, Incoming, Reply};
use gatekey_nmi::{Access, Failure};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// A request for the event loop.
#[derive(Debug)]
pub struct NmiCommand {
    /// The request.
    pub request: Box<Incoming>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// The `gatekey-nmi` handler: passes requests to the event loop.
#[derive(Debug, Clone)]
pub struct NmiHandler {
    tx: mpsc::Sender<NmiCommand>,
}

impl NmiHandler {
    /// A handler sending to `tx`.
    pub fn new(tx: mpsc::Sender<NmiCommand>) -> Self {
        NmiHandler { tx }
    }
}

impl Handler for NmiHandler {
    fn handle(&self, request: Incoming) -> impl Future<Output = Reply> + Send {
        let tx = self.tx.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            let cmd = NmiCommand {
                request: Box::new(request),
                reply,
            };
            if tx.send(cmd).await.is_err() {
                return Failure::internal("iked is stopping").into();
            }
            rx.await
                .unwrap_or_else(|_| Failure::internal("iked dropped the request").into())
        }
    }
}

/// The profile a request on `stack` needs.
pub fn profile_for(sys: &str, stack: &str, access: Access, nsinfo: bool) -> String {
    if nsinfo {
        return format!("EZB.NETMGMT.{sys}.{sys}.IKED.DISPLAY").to_ascii_uppercase();
    }
    let a = match access {
        Access::Display => "DISPLAY",
        Access::Control => "CONTROL",
    };
    format!("EZB.IPSECCMD.{sys}.{stack}.{a}").to_ascii_uppercase()
}

/// The user name and supplementary group names of a uid.
pub fn identity(caller: &Caller) -> (String, Vec<String>) {
    use nix::unistd::{Gid, Group, Uid, User};
    let user = User::from_uid(Uid::from_raw(caller.uid)).ok().flatten();
    let name = user
        .as_ref()
        .map_or_else(|| format!("UID{}", caller.uid), |u| u.name.clone());
    let mut groups = Vec::new();
    if let Some(u) = &user
        && let Ok(c) = std::ffi::CString::new(u.name.clone())
        && let Ok(gids) = nix::unistd::getgrouplist(&c, Gid::from_raw(caller.gid))
    {
        for g in gids {
            if let Ok(Some(gr)) = Group::from_gid(g) {
                groups.push(gr.name);
            }
        }
    } else if let Ok(Some(gr)) = Group::from_gid(Gid::from_raw(caller.gid)) {
        groups.push(gr.name);
    }
    (name, groups)
}

/// Check `caller` against `profile`. uid 0 is permitted when no profile
/// covers the resource.
pub fn authorize(db: &SafDatabase, caller: &Caller, profile: &str) -> Result<(), Failure> {
    let (user, groups) = identity(caller);
    match db.check(profile, &user, &groups, AccessLevel::Read) {
        Decision::Permit { .. } => Ok(()),
        Decision::NoProfile if caller.uid == 0 => Ok(()),
        Decision::NoProfile | Decision::Deny { .. } => {
            warn!(
                "EZD0930W NMI request denied: uid {} ({user}) lacks READ access to {profile}",
                caller.uid
            );
            Err(Failure::not_authorized(profile))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        assert_eq!(
            profile_for("gw1", "red", Access::Control, false),
            "EZB.IPSECCMD.GW1.RED.CONTROL"
        );
        assert_eq!(
            profile_for("GW1", "default", Access::Display, true),
            "EZB.NETMGMT.GW1.GW1.IKED.DISPLAY"
        );
    }

    #[test]
    fn root_only_without_profiles_and_profiles_decide() {
        let root = Caller {
            uid: 0,
            gid: 0,
            pid: None,
        };
        let nobody = Caller {
            uid: 65534,
            gid: 65534,
            pid: None,
        };
        let empty = SafDatabase::default();
        let p = "EZB.IPSECCMD.GW1.DEFAULT.DISPLAY";
        assert!(authorize(&empty, &root, p).is_ok());
        let e = authorize(&empty, &nobody, p).unwrap_err();
        assert_eq!(e.profile.as_deref(), Some(p));
        let db = gatekey_config::saf::parse(
            "t.saf",
            "Profile EZB.IPSECCMD.GW1.*.DISPLAY { Permit * }\nProfile EZB.IPSECCMD.GW1.*.CONTROL { Uacc None }\n",
        )
        .unwrap();
        assert!(authorize(&db, &nobody, p).is_ok());
        // A profile that exists decides, for root too.
        assert!(authorize(&db, &root, "EZB.IPSECCMD.GW1.DEFAULT.CONTROL").is_err());
    }
}
