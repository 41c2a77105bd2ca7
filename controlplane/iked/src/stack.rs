//! One running stack: sockets, kernel objects, tunnels.
//!
//! Kernel state iked owns is recognised by its request-ID band
//! ([`crate::kernel::REQID_BASE`]). [`Stack::sync_kernel`] makes the
//! kernel match the policy: at start it reconciles what a previous iked left
//! (policies still wanted are adopted, the rest removed; SAs nobody
//! negotiates any more removed) and after a refresh it applies the changes.
//!
//! Fail closed: every LocalDynVpnRule's traffic selectors get policies
//! whose templates require ESP, whether or not a tunnel is up. Without an
//! SA the kernel drops matching traffic (and reports ACQUIRE for on-demand
//! activation). These policies stay when iked stops or dies.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use gatekey_config::ike_policy::{Encap, IpManVpnAction, IpsecProto, LocalDynVpnRule};
use gatekey_nmi::records::{
    self as rec, IpTunnelRecord, IpTunnelType, NatTopology, SaState as NmiSaState, TunnelOutcome,
    TunnelStatus,
};
use gatekey_xfrm::{Mode, Policy, Proto, Sa, SaId, Spi};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::conf::StackSetup;
use crate::kernel::Kernel;
use crate::net::StackSockets;
use crate::netns::Netns;
use crate::xlate;

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A manual tunnel (IpManVpnAction).
#[derive(Debug, Clone)]
pub struct ManualTunnel {
    /// `M<n>`.
    pub id: u32,
    /// Installed in the kernel.
    pub active: bool,
    /// When it was installed.
    pub since: Option<u64>,
    /// Its request ID.
    pub reqid: u32,
}

/// The kernel objects that make a LocalDynVpnRule fail closed.
#[derive(Debug, Clone)]
pub struct Trap {
    /// Its request ID (child SAs of this rule carry it too).
    pub reqid: u32,
    /// Our IKE address for this rule.
    pub local: IpAddr,
    /// The policies.
    pub policies: Vec<Policy>,
}

/// One running stack.
#[derive(Debug)]
pub struct Stack {
    /// Its configuration.
    pub setup: StackSetup,
    /// Its namespace.
    pub netns: Netns,
    /// Its IKE sockets.
    pub sockets: Arc<StackSockets>,
    /// Where its SAs and policies go.
    pub kernel: Kernel,
    /// Manual tunnels by IpManVpnAction name.
    pub manual: BTreeMap<String, ManualTunnel>,
    /// Fail-closed policies by LocalDynVpnRule name.
    pub traps: BTreeMap<String, Trap>,
    /// Tasks to stop with the stack.
    pub tasks: Vec<JoinHandle<()>>,
    next_m: u32,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What [`Stack::sync_kernel`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Policies already in the kernel and still wanted.
    pub adopted: usize,
    /// Policies installed now.
    pub installed: usize,
    /// Policies removed (no longer in the policy).
    pub removed: usize,
    /// SAs removed (no IKE SA manages them, or their tunnel is gone).
    pub stale_sas: usize,
}

impl Stack {
    /// A stack with nothing installed yet.
    pub fn new(
        setup: StackSetup,
        netns: Netns,
        sockets: Arc<StackSockets>,
        kernel: Kernel,
    ) -> Self {
        Stack {
            setup,
            netns,
            sockets,
            kernel,
            manual: BTreeMap::new(),
            traps: BTreeMap::new(),
            tasks: Vec::new(),
            next_m: 1,
        }
    }

    /// The stack name.
    pub fn name(&self) -> &str {
        self.setup.name()
    }

    fn policy(&self) -> Option<&gatekey_config::ike_policy::IkePolicy> {
        self.setup.policy.get().map(AsRef::as_ref)
    }

    /// The address this stack uses to reach `remote` (a route lookup in the
    /// namespace).
    pub fn source_for(&self, remote: IpAddr) -> std::io::Result<IpAddr> {
        self.netns.run(move || {
            let any: IpAddr = if remote.is_ipv6() {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            };
            let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
            s.connect(SocketAddr::new(remote, 500))?;
            Ok(s.local_addr()?.ip())
        })
    }

    fn taken_reqids(&self) -> BTreeSet<u32> {
        self.manual
            .values()
            .map(|m| m.reqid)
            .chain(self.traps.values().map(|t| t.reqid))
            .collect()
    }

    /// Compute the fail-closed policies of every LocalDynVpnRule.
    fn build_traps(&self) -> BTreeMap<String, Trap> {
        let mut out = BTreeMap::new();
        let Some(policy) = self.policy() else {
            return out;
        };
        let mut taken: BTreeSet<u32> = self.manual.values().map(|m| m.reqid).collect();
        for rule in &policy.local_dyn_vpn_rules {
            let reqid = self
                .traps
                .get(&rule.name)
                .map(|t| t.reqid)
                .filter(|r| !taken.contains(r))
                .unwrap_or_else(|| xlate::reqid_for("dyn", &rule.name, &taken));
            taken.insert(reqid);
            match self.trap_for(rule, reqid) {
                Ok(t) => {
                    out.insert(rule.name.clone(), t);
                }
                Err(e) => warn!(
                    "EZD0926W Stack {}: LocalDynVpnRule {} cannot be enforced in the kernel: {e}",
                    self.name(),
                    rule.name
                ),
            }
        }
        out
    }

    fn trap_for(&self, rule: &LocalDynVpnRule, reqid: u32) -> Result<Trap, String> {
        let local = match rule.local_endpoint {
            Some(a) => a,
            None => self.source_for(rule.remote_endpoint).map_err(|e| {
                format!(
                    "no route to RemoteSecurityEndpoint {}: {e}",
                    rule.remote_endpoint
                )
            })?,
        };
        let encap = rule
            .action
            .encap_ikev2
            .or_else(|| rule.action.offers.first().map(|o| o.encap))
            .unwrap_or(Encap::Tunnel);
        let mode = match encap {
            Encap::Tunnel => Mode::Tunnel,
            Encap::Transport => Mode::Transport,
        };
        let proto = match rule.action.offers.first().map(|o| o.auth_proto) {
            Some(IpsecProto::Ah) => Proto::Ah,
            _ => Proto::Esp,
        };
        let sels = xlate::selectors(
            &rule.src,
            &rule.dst,
            rule.protocol,
            rule.src_port,
            rule.dst_port,
        )?;
        let mut policies = Vec::new();
        for sel in sels {
            policies.extend(crate::kernel::tunnel_policies(
                sel,
                local,
                rule.remote_endpoint,
                proto,
                mode,
                reqid,
                crate::kernel::PRIORITY_TUNNEL,
            ));
        }
        Ok(Trap {
            reqid,
            local,
            policies,
        })
    }

    fn manual_objects(
        &self,
        m: &IpManVpnAction,
        reqid: u32,
    ) -> Result<(Vec<Sa>, Vec<Policy>), String> {
        let mode = match m.encap {
            Encap::Tunnel => Mode::Tunnel,
            Encap::Transport => Mode::Transport,
        };
        let proto = match m.auth_proto {
            IpsecProto::Ah => Proto::Ah,
            IpsecProto::Esp => Proto::Esp,
        };
        let sels = xlate::selectors(
            &m.src,
            &m.dst,
            gatekey_config::ike_policy::Protocol::All,
            gatekey_config::ike_policy::PortRange::ANY,
            gatekey_config::ike_policy::PortRange::ANY,
        )?;
        let out_crypto = xlate::manual_crypto(
            m,
            m.outbound.encryption_key.expose(),
            m.outbound.auth_key.expose(),
        )?;
        let in_crypto = xlate::manual_crypto(
            m,
            m.inbound.encryption_key.expose(),
            m.inbound.auth_key.expose(),
        )?;
        let legacy = out_crypto.is_legacy();
        // Manually keyed SAs run without anti-replay (RFC 4303 §3.3.3): their
        // sequence numbers restart whenever either side reinstalls them, and
        // a peer keeping its old window would drop every packet as a replay.
        let out_sa = Sa::new(
            m.local_endpoint,
            m.remote_endpoint,
            Spi(m.outbound.spi),
            out_crypto,
        )
        .mode(mode)
        .reqid(reqid)
        .replay_window(0)
        .allow_legacy(legacy);
        let in_sa = Sa::new(
            m.remote_endpoint,
            m.local_endpoint,
            Spi(m.inbound.spi),
            in_crypto,
        )
        .mode(mode)
        .reqid(reqid)
        .replay_window(0)
        .allow_legacy(legacy);
        let mut policies = Vec::new();
        for sel in sels {
            policies.extend(crate::kernel::tunnel_policies(
                sel,
                m.local_endpoint,
                m.remote_endpoint,
                proto,
                mode,
                reqid,
                crate::kernel::PRIORITY_MANUAL,
            ));
        }
        Ok((vec![out_sa, in_sa], policies))
    }

    /// Assign `M<n>` IDs and request IDs to the policy's manual tunnels
    /// (kept across refreshes by name) and forget removed ones.
    fn index_manual(&mut self) {
        let names: Vec<String> = self
            .policy()
            .map(|p| {
                p.ip_man_vpn_actions
                    .iter()
                    .map(|m| m.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.manual.retain(|n, _| names.contains(n));
        for n in names {
            if !self.manual.contains_key(&n) {
                let taken = self.taken_reqids();
                let t = ManualTunnel {
                    id: self.next_m,
                    active: false,
                    since: None,
                    reqid: xlate::reqid_for("man", &n, &taken),
                };
                self.next_m += 1;
                self.manual.insert(n, t);
            }
        }
    }

    /// Make the kernel match the policy. `initial`: also install manual
    /// tunnels coded `Active Yes` (at start; a refresh keeps the operator's
    /// activations). Dynamic SAs not in `live_sas` are removed.
    pub async fn sync_kernel(&mut self, initial: bool, live_sas: &[SaId]) -> SyncReport {
        let mut report = SyncReport::default();
        self.index_manual();
        self.traps = self.build_traps();
        let policy = self.setup.policy.get().cloned();
        let mut want_policies: Vec<Policy> = self
            .traps
            .values()
            .flat_map(|t| t.policies.clone())
            .collect();
        let mut want_sas: Vec<Sa> = Vec::new();
        if let Some(policy) = &policy {
            for m in &policy.ip_man_vpn_actions {
                let Some(state) = self.manual.get(&m.name).cloned() else {
                    continue;
                };
                let active = state.active || (initial && m.active);
                if !active {
                    continue;
                }
                match self.manual_objects(m, state.reqid) {
                    Ok((sas, pols)) => {
                        want_sas.extend(sas);
                        want_policies.extend(pols);
                        if let Some(s) = self.manual.get_mut(&m.name)
                            && !s.active
                        {
                            s.active = true;
                            s.since = Some(now_secs());
                            info!(
                                "EZD0927I Stack {} manual tunnel M{} ({}) activated: ESP SPIs in {:#010x} out {:#010x}",
                                self.setup.name(),
                                s.id,
                                m.name,
                                m.inbound.spi,
                                m.outbound.spi
                            );
                        }
                    }
                    Err(e) => warn!(
                        "EZD0926W Stack {}: IpManVpnAction {} cannot be installed: {e}",
                        self.setup.name(),
                        m.name
                    ),
                }
            }
        }
        let existing = match self.kernel.our_policies().await {
            Ok(p) => p,
            Err(e) => {
                warn!(
                    "EZD0928E Stack {}: cannot read kernel policies: {e}",
                    self.name()
                );
                Vec::new()
            }
        };
        let same =
            |a: &Policy, b: &Policy| a.selector == b.selector && a.dir == b.dir && a.mark == b.mark;
        for p in &existing {
            if !want_policies.iter().any(|w| same(w, p)) {
                match self.kernel.delete_policy(p).await {
                    Ok(()) => report.removed += 1,
                    Err(e) => warn!(
                        "EZD0928E Stack {}: cannot remove a stale policy: {e}",
                        self.name()
                    ),
                }
            }
        }
        for w in &want_policies {
            if existing.iter().any(|p| same(w, p)) {
                report.adopted += 1;
            } else {
                report.installed += 1;
            }
            if let Err(e) = self.kernel.put_policy(w.clone()).await {
                warn!(
                    "EZD0928E Stack {}: cannot install a policy: {e}",
                    self.name()
                );
            }
        }
        let want_ids: Vec<SaId> = want_sas
            .iter()
            .map(|sa| SaId {
                src: Some(sa.src),
                ..SaId::new(sa.dst, sa.spi, crate::kernel::sa_proto(sa))
            })
            .collect();
        if let Ok(existing_sas) = self.kernel.our_sas().await {
            for s in existing_sas {
                if !want_ids.contains(&s.id)
                    && !live_sas.contains(&s.id)
                    && self.kernel.delete_sa(s.id).await.is_ok()
                {
                    report.stale_sas += 1;
                }
            }
        }
        for sa in want_sas {
            if let Err(e) = self.kernel.put_sa(sa).await {
                warn!(
                    "EZD0928E Stack {}: cannot install a manual SA: {e}",
                    self.name()
                );
            }
        }
        report
    }

    /// `ipsec -m activate`.
    pub async fn activate_manual(&mut self, name: &str) -> TunnelOutcome {
        let id = self.manual.get(name).map(|m| format!("M{}", m.id));
        let outcome = |status, message: Option<String>| TunnelOutcome {
            name: Some(name.to_owned()),
            tunnel_id: id.clone(),
            status,
            message,
        };
        let Some(policy) = self.setup.policy.get().cloned() else {
            return outcome(
                TunnelStatus::NotFound,
                Some("the stack has no IPsec policy".into()),
            );
        };
        let Some(m) = policy.man_action(name) else {
            return outcome(TunnelStatus::NotFound, None);
        };
        let Some(state) = self.manual.get(name).cloned() else {
            return outcome(TunnelStatus::NotFound, None);
        };
        if state.active {
            return outcome(TunnelStatus::StateAlreadySet, None);
        }
        let (sas, pols) = match self.manual_objects(m, state.reqid) {
            Ok(x) => x,
            Err(e) => return outcome(TunnelStatus::Failed, Some(e)),
        };
        for sa in sas {
            if let Err(e) = self.kernel.put_sa(sa).await {
                return outcome(TunnelStatus::Failed, Some(e));
            }
        }
        for p in pols {
            if let Err(e) = self.kernel.put_policy(p).await {
                return outcome(TunnelStatus::Failed, Some(e));
            }
        }
        if let Some(s) = self.manual.get_mut(name) {
            s.active = true;
            s.since = Some(now_secs());
            info!(
                "EZD0927I Stack {} manual tunnel M{} ({name}) activated: ESP SPIs in {:#010x} out {:#010x}",
                self.setup.name(),
                s.id,
                m.inbound.spi,
                m.outbound.spi
            );
        }
        outcome(TunnelStatus::StateUpdated, None)
    }

    /// `ipsec -m deactivate`: removes the SAs and their policies together.
    pub async fn deactivate_manual(&mut self, name: &str) -> TunnelOutcome {
        let id = self.manual.get(name).map(|m| format!("M{}", m.id));
        let outcome = |status, message: Option<String>| TunnelOutcome {
            name: Some(name.to_owned()),
            tunnel_id: id.clone(),
            status,
            message,
        };
        let Some(policy) = self.setup.policy.get().cloned() else {
            return outcome(TunnelStatus::NotFound, None);
        };
        let (Some(m), Some(state)) = (policy.man_action(name), self.manual.get(name).cloned())
        else {
            return outcome(TunnelStatus::NotFound, None);
        };
        if !state.active {
            return outcome(TunnelStatus::StateAlreadySet, None);
        }
        let (sas, pols) = match self.manual_objects(m, state.reqid) {
            Ok(x) => x,
            Err(e) => return outcome(TunnelStatus::Failed, Some(e)),
        };
        // SAs first: between the two steps matching traffic is dropped (the
        // policy still requires an SA), never sent in clear.
        for sa in &sas {
            let id = SaId {
                src: Some(sa.src),
                ..SaId::new(sa.dst, sa.spi, crate::kernel::sa_proto(sa))
            };
            if let Err(e) = self.kernel.delete_sa(id).await {
                return outcome(TunnelStatus::Failed, Some(e));
            }
        }
        for p in &pols {
            if let Err(e) = self.kernel.delete_policy(p).await {
                return outcome(TunnelStatus::Failed, Some(e));
            }
        }
        if let Some(s) = self.manual.get_mut(name) {
            s.active = false;
            s.since = None;
            info!(
                "EZD0929I Stack {} manual tunnel M{} ({name}) deactivated",
                self.setup.name(),
                s.id
            );
        }
        outcome(TunnelStatus::StateUpdated, None)
    }

    /// The manual tunnels as NMI records, with kernel counters.
    pub async fn manual_records(&self, fips140: bool) -> Vec<IpTunnelRecord> {
        let Some(policy) = self.policy() else {
            return Vec::new();
        };
        let sas = self.kernel.our_sas().await.unwrap_or_default();
        let mut out = Vec::new();
        for m in &policy.ip_man_vpn_actions {
            let Some(state) = self.manual.get(&m.name) else {
                continue;
            };
            let counter = |spi: u32, dst: IpAddr| {
                sas.iter()
                    .find(|s| s.id.spi.0 == spi && s.id.dst == dst && state.active)
                    .map_or((0, 0), |s| (s.packets, s.bytes))
            };
            let (out_p, out_b) = counter(m.outbound.spi, m.remote_endpoint);
            let (in_p, in_b) = counter(m.inbound.spi, m.local_endpoint);
            let (enc, keylen) = xlate::encrypt_name(m.encrypt);
            let (lb, lp, lr) = xlate::addr_fields(&m.src);
            let (rb, rp, rr) = xlate::addr_fields(&m.dst);
            let esp = m.auth_proto == IpsecProto::Esp;
            out.push(IpTunnelRecord {
                tunnel_id: format!("M{}", state.id),
                tunnel_type: IpTunnelType::Manual,
                generation: 1,
                parent_ike_tunnel_id: None,
                vpn_action_name: Some(m.name.clone()),
                local_dyn_vpn_rule: None,
                state: if state.active {
                    NmiSaState::Active
                } else {
                    NmiSaState::Inactive
                },
                activation: None,
                ike_version: None,
                role: None,
                how_to_encap: match m.encap {
                    Encap::Tunnel => rec::Encap::Tunnel,
                    Encap::Transport => rec::Encap::Transport,
                },
                local_endpoint: m.local_endpoint,
                remote_endpoint: m.remote_endpoint,
                local_address_base: lb,
                local_address_prefix: lp,
                local_address_range: lr,
                remote_address_base: rb,
                remote_address_prefix: rp,
                remote_address_range: rr,
                how_to_auth: Some(if esp {
                    rec::AuthProtocol::Esp
                } else {
                    rec::AuthProtocol::Ah
                }),
                auth_algorithm: xlate::auth_name(m.auth).map(str::to_owned),
                auth_inbound_spi: Some(m.inbound.spi),
                auth_outbound_spi: Some(m.outbound.spi),
                how_to_encrypt: esp.then(|| enc.to_owned()),
                encrypt_key_length: if esp { keylen } else { None },
                encrypt_inbound_spi: esp.then_some(m.inbound.spi),
                encrypt_outbound_spi: esp.then_some(m.outbound.spi),
                pfs_group: None,
                protocol: None,
                local_port: None,
                remote_port: None,
                outbound_packets: out_p,
                outbound_bytes: out_b,
                inbound_packets: in_p,
                inbound_bytes: in_b,
                lifesize: None,
                lifesize_refresh: None,
                current_byte_count: out_b + in_b,
                lifetime_refresh: None,
                lifetime_expires: None,
                vpn_life_expires: None,
                create_time: state.since,
                nat: NatTopology {
                    udp_encap_mode: false,
                    nat_allowed: false,
                    lcl_nat_detected: false,
                    rmt_nat_detected: false,
                    rmt_napt_detected: false,
                    rmt_is_gw: None,
                    rmt_udp_encap_port: None,
                    src_nat_oa_rcvd: None,
                    dst_nat_oa_rcvd: None,
                },
                fips140,
                ipv6: m.local_endpoint.is_ipv6(),
            });
        }
        out
    }
}
