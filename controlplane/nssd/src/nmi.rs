//! nssd's NMI on `/run/nssd/nss` (`docs/nmi-protocol.md`): GET_CLIENTINFO
//! served here, every other request routed to the named NSS client over its
//! NSS connection (MGMT_REQUEST), at most 10 management clients.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use gatekey_config::saf::{AccessLevel, Decision, names};
use gatekey_nmi::codes::{Failure, ReasonCode, ReturnCode};
use gatekey_nmi::header::{Access, MAX_VERSION, MIN_VERSION};
use gatekey_nmi::message::{Request as NmiRequest, Response as NmiResponse};
use gatekey_nmi::records::{
    ClientConnectState, ClientInfoList, ClientInfoRecord, ConfigRefreshResult, ServerInfo,
    ServerKind,
};
use gatekey_nmi::server::{Caller, Handler, Incoming, Reply, Server, ServerConfig};
use nss_proto::{Message, MgmtRequest, Request, ResponseBody, Services};
use tokio::task::JoinHandle;

use crate::log::level;
use crate::nsslog;
use crate::server::{ConnState, ReqError, Shared};

/// At most this many management clients at a time (z/OS: 10).
pub const MAX_MGMT_CLIENTS: usize = 10;

/// Bind the NMI socket and serve it until the server shuts down.
pub(crate) async fn start(shared: Arc<Shared>, path: PathBuf) -> Result<JoinHandle<()>> {
    let rt = shared.runtime();
    let info = ServerInfo {
        server: ServerKind::Nssd,
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        system_name: rt.system_name.clone(),
        min_version: MIN_VERSION,
        max_version: MAX_VERSION,
    };
    let mut cfg = ServerConfig::new(&path, info);
    cfg.max_clients = MAX_MGMT_CLIENTS;
    let server = match Server::bind(cfg).await {
        Ok(s) => s,
        Err(e) => {
            if let Some(dir) = path.parent()
                && !dir.is_dir()
            {
                nsslog!(
                    shared.logger,
                    level::VERBOSE,
                    "DBG0040I",
                    "Cannot create socket directory {} - {e}",
                    dir.display()
                );
            }
            return Err(e).with_context(|| format!("NMI socket {}", path.display()));
        }
    };
    nsslog!(
        shared.logger,
        level::MGMT,
        "DBG0200I",
        "NMI listening on {} (at most {MAX_MGMT_CLIENTS} management clients)",
        path.display()
    );
    let mut stop = shared.shutdown.subscribe();
    let handler = Arc::new(NmiHandler {
        shared: Arc::clone(&shared),
    });
    Ok(tokio::spawn(async move {
        let done = async move {
            let _ = stop.changed().await;
        };
        if let Err(e) = server.run(handler, done).await {
            tracing::warn!("NMI server ended: {e}");
        }
    }))
}

/// The caller's user name (upper case) and group names.
fn identity(c: &Caller) -> (String, Vec<String>) {
    let uid = nix::unistd::Uid::from_raw(c.uid);
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    let name = user
        .as_ref()
        .map_or_else(|| format!("UID{}", c.uid), |u| u.name.to_ascii_uppercase());
    let mut groups = Vec::new();
    if let Some(u) = &user
        && let Ok(cname) = std::ffi::CString::new(u.name.clone())
        && let Ok(gids) = nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(c.gid))
    {
        for g in gids {
            if let Ok(Some(gr)) = nix::unistd::Group::from_gid(g) {
                groups.push(gr.name.to_ascii_uppercase());
            }
        }
    }
    (name, groups)
}

struct NmiHandler {
    shared: Arc<Shared>,
}

impl NmiHandler {
    /// Authorize a local caller: the profile decides; with no profile, only
    /// uid 0 is permitted (`docs/nmi-protocol.md` §7).
    fn check(&self, caller: &Caller, profile: &str) -> Result<String, Failure> {
        let rt = self.shared.runtime();
        let (user, groups) = identity(caller);
        let d = rt.saf.check(profile, &user, &groups, AccessLevel::Read);
        let ok = match &d {
            Decision::Permit { .. } => true,
            Decision::NoProfile => caller.uid == 0,
            Decision::Deny { .. } => false,
        };
        if ok {
            Ok(user)
        } else {
            // As for NSS clients (certsvc::authorize): racfRC 8 names the
            // profile that decided, so the operator knows which to change.
            let why = match &d {
                Decision::Deny {
                    profile: by,
                    access,
                } => {
                    format!("racfRC 8 racfRsn 0 profile {by} grants {access}")
                }
                _ => "racfRC 4 racfRsn 0 (no profile)".to_owned(),
            };
            nsslog!(
                self.shared.logger,
                level::VERBOSE,
                "DBG0032I",
                "ServauthCheck({user:<8},{profile}) rc 4 (DENY) {why} (NMI caller uid {})",
                caller.uid
            );
            Err(Failure::not_authorized(profile))
        }
    }

    /// REFRESH_CONFIG (`docs/nmi-protocol.md` §5.15): re-read every file, as
    /// SIGHUP does; a file with any error rejects the refresh whole and the
    /// answer names file:line:column. Served by nssd itself: a named target
    /// (an NSS client) is not routed.
    async fn refresh(&self, caller: &Caller, sys: &str, req: &Incoming) -> Reply {
        if let Some(t) = &req.target {
            return Failure::not_served(format!(
                "REFRESH_CONFIG refreshes the NSS server itself and is not routed to NSS client {t}; send it with a blank target, and refresh a gateway's iked on the gateway"
            ))
            .into();
        }
        let profile = format!("EZB.NETMGMT.{sys}.{sys}.NSS.CONTROL").to_ascii_uppercase();
        let user = match self.check(caller, &profile) {
            Ok(u) => u,
            Err(f) => return f.into(),
        };
        let who = format!("NMI caller {user} (uid {})", caller.uid);
        match self.shared.refresh(&who).await {
            Ok(r) => Reply::ok(
                None,
                NmiResponse::ConfigRefresh(ConfigRefreshResult {
                    server: ServerKind::Nssd,
                    config_file: r.config_path.display().to_string(),
                    refreshed_at: r.time,
                    changes: r.changes,
                }),
            ),
            Err(e) => Failure::config_rejected(format!(
                "{e:#}\nthe refresh was rejected; the running configuration stays in force"
            ))
            .into(),
        }
    }

    fn client_info(&self, target: Option<&str>) -> ClientInfoList {
        let rt = self.shared.runtime();
        let records: Vec<ClientInfoRecord> = self
            .shared
            .registry
            .all()
            .iter()
            .filter_map(|c| record(c))
            .filter(|r| target.is_none_or(|t| r.client_name.eq_ignore_ascii_case(t)))
            .collect();
        ClientInfoList {
            system_name: rt.system_name.clone(),
            total_available: u32::try_from(records.len()).unwrap_or(u32::MAX),
            records,
        }
    }
}

fn unmap(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}

fn record(c: &ConnState) -> Option<ClientInfoRecord> {
    let i = c.client.get()?;
    let last = c.last_rx.load(std::sync::atomic::Ordering::Relaxed);
    Some(ClientInfoRecord {
        client_name: i.client_name.clone(),
        stack_name: i.stack_name.clone(),
        system_name: i.system_name.clone(),
        client_ip_address: unmap(c.peer.ip()),
        client_port: c.peer.port(),
        server_ip_address: unmap(c.local.ip()),
        server_port: c.local.port(),
        user_id: i.user_id.clone(),
        client_api_version: Some(i.client_api_version),
        remote_management_selected: i.selected.contains(Services::REMOTE_MGMT),
        remote_management_enabled: i.enabled.contains(Services::REMOTE_MGMT),
        certificate_services_selected: i.selected.contains(Services::CERT),
        certificate_services_enabled: i.enabled.contains(Services::CERT),
        connect_state: if c.is_closed() {
            ClientConnectState::Closing
        } else {
            ClientConnectState::Connected
        },
        time_connected: i.time_connected,
        time_of_last_message_from_client: Some(last),
    })
}

impl Handler for NmiHandler {
    async fn handle(&self, req: Incoming) -> Reply {
        let log = &self.shared.logger;
        let Some(caller) = req.caller() else {
            return Failure::not_served("nssd does not accept relayed NMI requests").into();
        };
        let sys = self.shared.runtime().system_name.clone();
        let target = req.target.as_ref().map(|t| t.as_str().to_owned());
        match &req.request {
            NmiRequest::GetClientInfo => {
                if let Err(f) = self.check(&caller, &names::netmgmt_nss_display(&sys)) {
                    return f.into();
                }
                let list = self.client_info(target.as_deref());
                return Reply::ok(req.target.clone(), NmiResponse::ClientInfo(list));
            }
            NmiRequest::RefreshConfig => return self.refresh(&caller, &sys, &req).await,
            NmiRequest::GetStackInfo | NmiRequest::GetIkeNsInfo => {
                return Failure::not_served(format!(
                    "{} is not served by the NSS server; ask iked on the gateway",
                    req.msg_type()
                ))
                .into();
            }
            _ => {}
        }
        // Every other request is routed to the named client.
        let Some(name) = target else {
            return Failure::invalid(
                ReasonCode::TARGET_REQUIRED,
                "name the NSS client (ipsec -z clientname); list them with ipsec -x display",
            )
            .into();
        };
        let Some(conn) = self.shared.registry.get(&name) else {
            return Failure::no_target(format!("NSS client {name} is not connected")).into();
        };
        // Name the client as it calls itself.
        let name = conn.client.get().map_or(name, |c| c.client_name.clone());
        let control = req.access() == Access::Control;
        let profile = names::netmgmt_ipsec(&sys, &name, control);
        let user = match self.check(&caller, &profile) {
            Ok(u) => u,
            Err(f) => return f.into(),
        };
        let enabled = conn
            .client
            .get()
            .is_some_and(|c| c.enabled.contains(Services::REMOTE_MGMT));
        if !enabled {
            nsslog!(
                log,
                level::MGMT,
                "DBG0201I",
                "NMI {} from {user} for client {name} refused: remote management is not enabled for the client",
                req.msg_type()
            );
            return Failure::new(
                ReturnCode::EOPNOTSUPP,
                ReasonCode::NONE,
                format!(
                    "NSS client {name} did not select ServiceType RemoteMgmt or is not permitted {}",
                    names::nss_netmgmt(&sys, &name)
                ),
            )
            .into();
        }
        let bytes = req.to_bytes();
        let r = conn
            .request(
                Request::Mgmt(MgmtRequest {
                    nmi: bytes,
                    requester: Some(user.clone()),
                }),
                self.shared.mgmt_timeout,
            )
            .await;
        match r {
            Ok(Message::Response {
                body: ResponseBody::Mgmt(m),
                ..
            }) => {
                nsslog!(
                    log,
                    level::MGMT,
                    "DBG0202I",
                    "NMI {} from {user} routed to client {name} and answered",
                    req.msg_type()
                );
                Reply::Relayed(m.nmi)
            }
            Ok(Message::Response { status, .. }) => {
                nsslog!(
                    log,
                    level::MGMT,
                    "DBG0201I",
                    "NMI {} from {user} for client {name} refused by the client: {status}",
                    req.msg_type()
                );
                if status.rc == nss_proto::Rc::EOPNOTSUPP {
                    Failure::new(
                        ReturnCode::EOPNOTSUPP,
                        ReasonCode::NONE,
                        format!("NSS client {name} does not accept remote management"),
                    )
                    .into()
                } else {
                    Failure::internal(format!("NSS client {name} failed the request: {status}"))
                        .into()
                }
            }
            Ok(_) => Failure::internal("unexpected answer from the NSS client").into(),
            Err(ReqError::Timeout) => {
                nsslog!(
                    log,
                    level::MGMT,
                    "DBG0201I",
                    "NMI {} from {user} for client {name}: no answer within {} s",
                    req.msg_type(),
                    self.shared.mgmt_timeout.as_secs()
                );
                Failure::new(
                    ReturnCode::ETIMEDOUT,
                    ReasonCode::NONE,
                    format!("NSS client {name} did not answer in time"),
                )
                .into()
            }
            Err(e @ ReqError::Closed) => Failure::internal(format!(
                "NSS client {name}: {}",
                crate::conn::req_error_text(e)
            ))
            .into(),
        }
    }
}
