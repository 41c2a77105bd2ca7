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
    /// The IKEv2 driver (when the stack has a policy).
    pub ike: Option<crate::ike::IkeDriver>,
    /// The local key ring, when one is configured and loads.
    pub keyring: Option<Arc<gatekey_keyring::Keyring>>,
    /// The eBPF IP filter, when iked drives it (`crate::filter`).
    pub filter: Option<crate::filter::Filters>,
    /// The NSS client, when the stack has an NssStackConfig.
    pub nss: Option<crate::nss::StackNss>,
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
            ike: None,
            keyring: None,
            filter: None,
            nss: None,
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

// ---------------------------------------------------------------------------
// IKE

use crate::ike::{self, IkeDriver, KernelWork};
use gatekey_nmi::records::{Activation, IkeTunnelRecord};
use std::time::Instant;

impl Stack {
    /// The kernel SAs of live child SAs (kept by a refresh's reconciliation).
    pub fn live_sa_ids(&self) -> Vec<SaId> {
        let Some(d) = &self.ike else {
            return Vec::new();
        };
        d.children
            .values()
            .flat_map(|c| {
                [
                    SaId {
                        src: Some(c.remote.ip()),
                        ..SaId::new(c.local.ip(), Spi(c.spi_in), Proto::Esp)
                    },
                    SaId {
                        src: Some(c.local.ip()),
                        ..SaId::new(c.remote.ip(), Spi(c.spi_out), Proto::Esp)
                    },
                ]
            })
            .collect()
    }

    /// Create or update the IKE driver from the stack's policy.
    pub fn configure_ike(&mut self, ike_conf: &gatekey_config::iked_conf::IkeConfig) {
        let Some(policy) = self.setup.policy.get().cloned() else {
            self.ike = None;
            return;
        };
        let needs_ring = policy
            .key_exchange_rules
            .iter()
            .any(|r| r.auth_me().is_signature() || r.shared_key.is_none());
        let nss = self
            .nss
            .as_ref()
            .and_then(crate::nss::StackNss::cert_source);
        if needs_ring && nss.is_none() && self.keyring.is_none() {
            match ike_conf.key_ring.directory() {
                Some(dir) => match gatekey_keyring::Keyring::load(&dir) {
                    Ok(k) => self.keyring = Some(Arc::new(k)),
                    Err(e) => warn!(
                        "EZD0932W Stack {}: key ring {} cannot be loaded: {e}",
                        self.name(),
                        dir.display()
                    ),
                },
                None => warn!(
                    "EZD0932W Stack {}: signature authentication is configured but IkeConfig says NoKeyRing",
                    self.name()
                ),
            }
        }
        let netns = self.netns.clone();
        let local_for = move |remote: IpAddr| -> Option<IpAddr> {
            netns
                .run(move || {
                    let any: IpAddr = if remote.is_ipv6() {
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                    };
                    let s = UdpSocket::bind(SocketAddr::new(any, 0))?;
                    s.connect(SocketAddr::new(remote, 500))?;
                    Ok(s.local_addr()?.ip())
                })
                .ok()
        };
        let peers = ike::peer_configs(
            &policy,
            self.keyring.as_deref(),
            nss,
            &local_for,
            self.setup.name(),
        );
        let nss_signing = nss.is_some();
        match &mut self.ike {
            Some(d) => d.set_peers(peers),
            None => {
                self.ike = Some(IkeDriver::new(
                    ike_conf.ike_retries,
                    ike_conf.ike_init_wait,
                    self.setup.conf.natt_port,
                    self.setup.conf.nat_keepalive,
                    peers,
                ));
            }
        }
        if let Some(d) = &mut self.ike {
            d.nss_signing = nss_signing;
        }
    }

    /// After a refresh: tunnels whose rules were removed or changed are
    /// taken down (their replacements come up by AutoActivate, on demand
    /// or by command with the new settings); unchanged ones are untouched.
    pub fn renegotiate_changed(&mut self, old: Option<&gatekey_config::ike_policy::IkePolicy>) {
        let now = Instant::now();
        let new = self.setup.policy.get().cloned();
        let name = self.setup.name().to_owned();
        let Some(drv) = &mut self.ike else { return };
        // Compare settings, not where they are written in the file.
        let dyn_changed = |rule: &str| {
            let before = old.and_then(|p| p.dyn_rule(rule)).map(unplaced_dyn);
            let after = new
                .as_deref()
                .and_then(|p| p.dyn_rule(rule))
                .map(unplaced_dyn);
            after.is_none() || before != after
        };
        let ker_changed = |rule: &str| {
            let find = |p: &gatekey_config::ike_policy::IkePolicy| {
                p.key_exchange_rules
                    .iter()
                    .find(|k| k.name == rule)
                    .map(unplaced_ker)
            };
            let before = old.and_then(find);
            let after = new.as_deref().and_then(find);
            after.is_none() || before != after
        };
        // An IKE SA keeps the configuration it was negotiated with, so a
        // changed LocalDynVpnRule takes its IKE SA down too: both come back
        // with the new settings.
        let mut down: Vec<(IkeSaId, String)> = Vec::new();
        for (id, t) in &drv.ike {
            if ker_changed(&t.rule) {
                down.push((
                    *id,
                    format!(
                        "KeyExchangeRule {} changed or removed; IKE tunnel K{} is deleted",
                        t.rule, t.k
                    ),
                ));
            }
        }
        for c in drv.children.values() {
            if !c.expired && dyn_changed(&c.rule) && !down.iter().any(|(sa, _)| *sa == c.ike_sa) {
                let k = drv.ike.get(&c.ike_sa).map_or(0, |t| t.k);
                down.push((
                    c.ike_sa,
                    format!("LocalDynVpnRule {} changed or removed; dynamic tunnel Y{} and IKE tunnel K{k} are deleted", c.rule, c.y),
                ));
            }
        }
        for (sa, why) in down {
            info!("EZD0941I Stack {name}: {why}");
            let _ = drv.endpoint.delete_ike(now, sa);
        }
    }

    /// Feed a received datagram to the engine.
    pub async fn ike_datagram(&mut self, now: Instant, d: crate::net::Datagram) {
        let Some(drv) = &mut self.ike else { return };
        let mut data = d.data;
        if d.port == crate::net::PortKind::Natt {
            let mut v = vec![0u8; 4];
            v.extend_from_slice(&data);
            data = v;
        }
        drv.endpoint.handle_datagram(now, d.local, d.remote, &data);
        self.ike_pump(now).await;
    }

    /// The engine's timer fired.
    pub async fn ike_timeout(&mut self, now: Instant) {
        if let Some(drv) = &mut self.ike {
            drv.endpoint.set_unix_time(now_secs());
            drv.endpoint.handle_timeout(now);
        }
        self.ike_retry(now);
        self.ike_pump(now).await;
    }

    /// When the engine (or an activation retry) wants to run next.
    pub fn ike_deadline(&self) -> Option<Instant> {
        let d = self.ike.as_ref()?;
        let retry = [d.retry.values().min().copied(), d.deferred_deadline()]
            .into_iter()
            .flatten()
            .min();
        match (d.endpoint.poll_timeout(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn ike_retry(&mut self, now: Instant) {
        let due: Vec<String> = self
            .ike
            .as_ref()
            .map(|d| {
                d.retry
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(r, _)| r.clone())
                    .collect()
            })
            .unwrap_or_default();
        for rule in due {
            if let Some(d) = &mut self.ike {
                d.retry.remove(&rule);
            }
            let _ = self.activate_rule(now, &rule, Activation::Auto);
        }
    }

    /// Drain the engine: send datagrams, do kernel work, re-arm
    /// AutoActivate rules whose tunnel went away.
    pub async fn ike_pump(&mut self, now: Instant) {
        let name = self.setup.name().to_owned();
        let traps = &self.traps;
        let Some(drv) = &mut self.ike else { return };
        drv.pump(now, &name, &|r| traps.get(r).map(|t| t.reqid));
        crate::nss::serve_engine(
            drv,
            self.nss.as_ref(),
            self.setup.policy.get().map(|p| &**p),
            now,
            &name,
            &|r| traps.get(r).map(|t| t.reqid),
        );
        let outbox = std::mem::take(&mut drv.outbox);
        let work = std::mem::take(&mut drv.kernel);
        let natt = drv.nat_t_port();
        // Dynamic filters go in before their SAs.
        crate::filter::before_install(self, &work);
        for t in outbox {
            let kind = if t.local.port() == natt || t.remote.port() == natt {
                crate::net::PortKind::Natt
            } else {
                crate::net::PortKind::Ike
            };
            match self.sockets.socket_for(kind, &t.remote) {
                Some(sock) => {
                    if let Err(e) = sock.send_raw(t.local.ip(), t.remote, &t.data).await {
                        warn!("EZD0919W Stack {name}: sending to {} failed: {e}", t.remote);
                    }
                }
                None => warn!("EZD0919W Stack {name}: no socket to send to {}", t.remote),
            }
        }
        for w in work {
            self.kernel_work(w).await;
        }
        crate::filter::after_kernel_work(self);
        // AutoActivate rules without a live tunnel are retried.
        let Some(policy) = self.setup.policy.get().cloned() else {
            return;
        };
        let Some(drv) = &mut self.ike else { return };
        let live = drv.live_rules();
        for r in &policy.local_dyn_vpn_rules {
            if r.auto_activate
                && !live.contains(&r.name)
                && !drv.deactivated.contains(&r.name)
                && !drv.retry.contains_key(&r.name)
                && drv.peer_of_rule(&r.name).is_some()
                && !drv.is_pending(&r.name)
            {
                let wait = Duration::from_secs(5);
                drv.retry.insert(r.name.clone(), now + wait);
            }
        }
    }

    async fn kernel_work(&mut self, w: KernelWork) {
        let name = self.setup.name().to_owned();
        match w {
            KernelWork::Install(inst, reqid, dirs) => {
                match crate::xlate::child_sas(&inst, reqid) {
                    Ok((out_sa, in_sa)) => {
                        // Inbound first: the peer may already send on it.
                        let sas = match dirs {
                            ike::Dirs::Both => vec![in_sa, out_sa],
                            ike::Dirs::Inbound => vec![in_sa],
                            ike::Dirs::Outbound => vec![out_sa],
                        };
                        for sa in sas {
                            if let Err(e) = self.kernel.put_sa(sa).await {
                                warn!(
                                    "EZD0928E Stack {name}: cannot install the SAs of {}: {e}",
                                    inst.name
                                );
                            }
                        }
                    }
                    Err(e) => warn!(
                        "EZD0928E Stack {name}: cannot install the SAs of {}: {e}",
                        inst.name
                    ),
                }
                if dirs != ike::Dirs::Outbound && !self.traps.contains_key(&inst.name) {
                    // No fail-closed policies for this rule: install
                    // policies for the negotiated selectors.
                    for p in crate::xlate::child_policies(&inst, reqid) {
                        if let Err(e) = self.kernel.put_policy(p).await {
                            warn!(
                                "EZD0928E Stack {name}: cannot install a policy for {}: {e}",
                                inst.name
                            );
                        }
                    }
                }
            }
            KernelWork::Delete {
                remote,
                local,
                spi_in,
                spi_out,
            } => {
                for (dst, src, spi) in [(local, remote, spi_in), (remote, local, spi_out)] {
                    let id = SaId {
                        src: Some(src),
                        ..SaId::new(dst, Spi(spi), Proto::Esp)
                    };
                    if let Err(e) = self.kernel.delete_sa(id).await {
                        warn!("EZD0928E Stack {name}: cannot delete SA {spi:#010x}: {e}");
                    }
                }
            }
        }
    }

    /// Activate a LocalDynVpnRule (command, on-demand, auto).
    pub fn activate_rule(&mut self, now: Instant, name: &str, how: Activation) -> TunnelOutcome {
        let out = |status, message: Option<String>| TunnelOutcome {
            name: Some(name.to_owned()),
            tunnel_id: None,
            status,
            message,
        };
        let Some(policy) = self.setup.policy.get().cloned() else {
            return out(
                TunnelStatus::NotFound,
                Some("the stack has no IPsec policy".into()),
            );
        };
        let Some(rule) = policy.dyn_rule(name) else {
            return out(TunnelStatus::NotFound, None);
        };
        let local = match rule
            .local_endpoint
            .or_else(|| self.traps.get(name).map(|t| t.local))
        {
            Some(l) => l,
            None => match self.source_for(rule.remote_endpoint) {
                Ok(l) => l,
                Err(e) => {
                    return out(
                        TunnelStatus::Failed,
                        Some(format!("no route to {}: {e}", rule.remote_endpoint)),
                    );
                }
            },
        };
        let ike_port = self.setup.conf.ike_port;
        let Some(drv) = &mut self.ike else {
            return out(TunnelStatus::NoKer, None);
        };
        match drv.activate(now, rule, local, how, ike_port) {
            Ok(s) => out(s, None),
            Err(e) => out(TunnelStatus::Failed, Some(e)),
        }
    }

    /// Deactivate a dynamic tunnel: delete its child SAs (the engine sends
    /// DELETE; SAs go once the exchange is done, policies stay).
    pub fn deactivate_dyn(
        &mut self,
        now: Instant,
        name: Option<&str>,
        tunnel_id: Option<&str>,
    ) -> TunnelOutcome {
        let out = outcome(name, tunnel_id);
        let Some(drv) = &mut self.ike else {
            return out(TunnelStatus::NotFound, None);
        };
        let ids = drv.children_named(name, tunnel_id, true);
        if ids.is_empty() {
            return out(TunnelStatus::NotFound, None);
        }
        // AutoActivate must not bring it back: it stays down until activated.
        for id in &ids {
            if let Some(c) = drv.children.get(id) {
                let rule = c.rule.clone();
                drv.retry.remove(&rule);
                drv.deactivated.insert(rule);
            }
        }
        for id in ids {
            if let Err(e) = drv.endpoint.delete_child(now, id) {
                return out(TunnelStatus::Failed, Some(e.to_string()));
            }
        }
        out(TunnelStatus::StateUpdated, None)
    }

    /// Rekey a dynamic tunnel now (`ipsec -y refresh`).
    pub fn refresh_dyn(
        &mut self,
        now: Instant,
        name: Option<&str>,
        tunnel_id: Option<&str>,
    ) -> TunnelOutcome {
        let out = outcome(name, tunnel_id);
        let Some(drv) = &mut self.ike else {
            return out(TunnelStatus::NotFound, None);
        };
        let ids = drv.children_named(name, tunnel_id, false);
        if ids.is_empty() {
            return out(TunnelStatus::NotFound, None);
        }
        for id in ids {
            if let Err(e) = drv.endpoint.rekey_child(now, id) {
                return out(TunnelStatus::Failed, Some(e.to_string()));
            }
        }
        out(TunnelStatus::StateUpdated, None)
    }

    /// `ipsec -k deactivate|refresh`: an IKE tunnel by K<n> or rule name.
    pub fn ike_control(
        &mut self,
        now: Instant,
        name: Option<&str>,
        tunnel_id: Option<&str>,
        refresh: bool,
    ) -> TunnelOutcome {
        let k = tunnel_number(tunnel_id, 'K');
        let out = outcome(name, tunnel_id);
        let Some(drv) = &mut self.ike else {
            return out(TunnelStatus::NotFound, None);
        };
        let sas: Vec<IkeSaId> = drv
            .ike
            .iter()
            .filter(|(_, t)| t.up && k.is_none_or(|k| t.k == k) && name.is_none_or(|n| t.rule == n))
            .map(|(id, _)| *id)
            .collect();
        if sas.is_empty() || (k.is_none() && name.is_none()) {
            return out(TunnelStatus::NotFound, None);
        }
        for sa in sas {
            let r = if refresh {
                drv.endpoint.rekey_ike(now, sa)
            } else {
                // Nothing may come back by itself right away.
                let rules: Vec<String> = drv
                    .children
                    .values()
                    .filter(|c| c.ike_sa == sa)
                    .map(|c| c.rule.clone())
                    .collect();
                for r in rules {
                    drv.retry.remove(&r);
                    drv.deactivated.insert(r);
                }
                drv.endpoint.delete_ike(now, sa)
            };
            if let Err(e) = r {
                return out(TunnelStatus::Failed, Some(e.to_string()));
            }
        }
        out(TunnelStatus::StateUpdated, None)
    }

    /// A kernel SA reached its soft (rekey) or hard limit.
    pub fn on_expire(&mut self, now: Instant, spi: u32, hard: bool) {
        let Some(drv) = &mut self.ike else { return };
        let Some(child) = drv.child_by_spi(spi) else {
            return;
        };
        let expired = drv.children.get(&child).is_some_and(|c| c.expired);
        let r = if hard {
            drv.endpoint.delete_child(now, child)
        } else if expired {
            Ok(())
        } else {
            drv.endpoint.rekey_child(now, child)
        };
        if let Err(e) = r {
            warn!(
                "EZD0936E Stack {}: {} of SPI {spi:#010x} failed: {e}",
                self.setup.name(),
                if hard { "deletion" } else { "rekey" }
            );
        }
    }

    /// IKE tunnels as NMI records.
    pub fn ike_records(&self, fips140: bool) -> Vec<IkeTunnelRecord> {
        let Some(drv) = &self.ike else {
            return Vec::new();
        };
        let policy = self.policy();
        // Version, mode and negotiated algorithms from the engines.
        let now = Instant::now();
        let shown = crate::v1::sa_display(&drv.endpoint, now);
        // ReauthInterval (seconds) and ReauthTime (unix) of IKEv2 SAs with one.
        let unix = now_secs();
        let reauth: std::collections::BTreeMap<_, _> = drv
            .endpoint
            .v2
            .ike_sas()
            .into_iter()
            .filter_map(|s| {
                let interval = u32::try_from(s.reauth_interval?.as_secs()).unwrap_or(u32::MAX);
                let at = s
                    .reauth_at
                    .map(|at| unix + at.saturating_duration_since(now).as_secs());
                Some((s.id, (interval, at)))
            })
            .collect();
        drv.ike
            .iter()
            .map(|(id, t)| {
                let rule =
                    policy.and_then(|p| p.key_exchange_rules.iter().find(|r| r.name == t.rule));
                let local = t
                    .local
                    .unwrap_or(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
                let remote = t
                    .remote
                    .unwrap_or(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
                let offer = rule.and_then(|r| r.action.offers.first());
                let auth = rule.map(|r| match r.auth_me() {
                    gatekey_config::ike_policy::AuthMethod::PresharedKey => "PresharedKey",
                    gatekey_config::ike_policy::AuthMethod::RsaSignature => "RsaSignature",
                    gatekey_config::ike_policy::AuthMethod::Ecdsa256 => "ECDSA-256",
                    gatekey_config::ike_policy::AuthMethod::Ecdsa384 => "ECDSA-384",
                    gatekey_config::ike_policy::AuthMethod::Ecdsa521 => "ECDSA-521",
                    gatekey_config::ike_policy::AuthMethod::DigitalSignature => "DigitalSignature",
                });
                let lifetime = offer.map(|o| o.lifetime_proposed * 60);
                // Our identity as configured (else our address); the peer's
                // type from its configured identity, else from what it sent.
                let local_id = rule.and_then(|r| r.local.effective_identity()).or_else(|| {
                    t.local.map(|l| gatekey_config::ike_policy::Identity {
                        kind: gatekey_config::ike_policy::IdType::IpAddr,
                        value: l.ip().to_string(),
                    })
                });
                let remote_id = rule
                    .and_then(|r| r.remote.effective_identity())
                    .or_else(|| {
                        t.peer_id
                            .as_ref()
                            .map(|p| gatekey_config::ike_policy::Identity {
                                kind: if p.parse::<IpAddr>().is_ok() {
                                    gatekey_config::ike_policy::IdType::IpAddr
                                } else if p.contains('=') {
                                    gatekey_config::ike_policy::IdType::X500dn
                                } else if p.contains('@') {
                                    gatekey_config::ike_policy::IdType::UserFqdn
                                } else {
                                    gatekey_config::ike_policy::IdType::Fqdn
                                },
                                value: p.clone(),
                            })
                    });
                let id_type = |k: gatekey_config::ike_policy::IdType| {
                    use gatekey_config::ike_policy::IdType as C;
                    match k {
                        C::IpAddr if remote.is_ipv6() => rec::IdType::Ipv6Addr,
                        C::IpAddr => rec::IdType::Ipv4Addr,
                        C::Fqdn => rec::IdType::Fqdn,
                        C::UserFqdn => rec::IdType::UserFqdn,
                        C::X500dn => rec::IdType::DerAsn1Dn,
                        C::KeyId => rec::IdType::KeyId,
                    }
                };
                let mut r = IkeTunnelRecord {
                    tunnel_id: format!("K{}", t.k),
                    generation: t.generation,
                    ike_version: rec::IkeVersion::V2,
                    exchange_mode: None,
                    key_exchange_rule_name: Some(t.rule.clone()),
                    key_exchange_action_name: rule.map(|r| r.action.name.clone()),
                    local_endpoint: local.ip(),
                    local_port: local.port(),
                    local_id_type: local_id.as_ref().map(|i| id_type(i.kind)),
                    local_id: local_id.map(|i| i.value),
                    remote_endpoint: remote.ip(),
                    remote_port: remote.port(),
                    remote_id_type: remote_id.as_ref().map(|i| id_type(i.kind)),
                    remote_id: t.peer_id.clone(),
                    state: if t.up {
                        rec::IkeState::Done
                    } else {
                        rec::IkeState::Wait
                    },
                    role: if t.initiator {
                        rec::Role::Initiator
                    } else {
                        rec::Role::Responder
                    },
                    authentication_algorithm: None,
                    encryption_algorithm: None,
                    key_length: None,
                    pseudo_random_function: None,
                    diffie_hellman_group: None,
                    local_authentication_method: auth.map(str::to_owned),
                    remote_authentication_method: auth.map(str::to_owned),
                    certificate_service: auth.filter(|a| *a != "PresharedKey").map(|_| {
                        if self
                            .nss
                            .as_ref()
                            .is_some_and(crate::nss::StackNss::uses_certs)
                        {
                            rec::CertService::Nss
                        } else {
                            rec::CertService::Local
                        }
                    }),
                    initiator_spi: t.spis.0,
                    responder_spi: t.spis.1,
                    lifesize: None,
                    current_byte_count: None,
                    lifetime,
                    lifetime_refresh: lifetime.map(|l| t.created + u64::from(l) * 9 / 10),
                    lifetime_expires: lifetime.map(|l| t.created + u64::from(l)),
                    reauth_interval: reauth.get(id).map(|r| r.0),
                    reauth_time: reauth.get(id).and_then(|r| r.1),
                    refresh_overlap_percent: None,
                    create_time: Some(t.created),
                    associated_dynamic_tunnels: u32::try_from(
                        drv.children
                            .values()
                            .filter(|c| drv.ike.get(&c.ike_sa).is_some_and(|x| x.k == t.k))
                            .count(),
                    )
                    .unwrap_or(u32::MAX),
                    nat: NatTopology {
                        udp_encap_mode: t.nat.0 || t.nat.1,
                        nat_allowed: rule.is_none_or(|r| r.action.allow_nat),
                        lcl_nat_detected: t.nat.0,
                        rmt_nat_detected: t.nat.1,
                        ..NatTopology::default()
                    },
                    can_init_p1: rule.is_some_and(|r| {
                        r.action.initiate != gatekey_config::ike_policy::HowToInitiate::DoNot
                    }),
                    fips140,
                    ipv6: remote.is_ipv6(),
                };
                if let Some(d) = shown.get(id) {
                    d.apply(&mut r);
                }
                r
            })
            .collect()
    }

    /// Dynamic tunnels as NMI records, with kernel counters.
    pub async fn dyn_records(&self, fips140: bool, all_sas: bool) -> Vec<IpTunnelRecord> {
        let Some(drv) = &self.ike else {
            return Vec::new();
        };
        let sas = self.kernel.our_sas().await.unwrap_or_default();
        let policy = self.policy();
        let mut out = Vec::new();
        let shown = crate::v1::child_display(&drv.endpoint, Instant::now());
        for (id, c) in &drv.children {
            let seen = shown.get(id);
            if c.expired && !all_sas {
                continue;
            }
            let rule = policy.and_then(|p| p.dyn_rule(&c.rule));
            let counter = |spi: u32| {
                sas.iter()
                    .find(|s| s.id.spi.0 == spi)
                    .map_or((0, 0), |s| (s.packets, s.bytes))
            };
            let (out_p, out_b) = counter(c.spi_out);
            let (in_p, in_b) = counter(c.spi_in);
            let (enc, keylen) = ike::encr_name(c.encr);
            let (lb, lp, lr) = rule.map_or((None, None, None), |r| xlate::addr_fields(&r.src));
            let (rb, rp, rr) = rule.map_or((None, None, None), |r| xlate::addr_fields(&r.dst));
            let k = drv.ike.get(&c.ike_sa).map(|t| format!("K{}", t.k));
            out.push(IpTunnelRecord {
                tunnel_id: format!("Y{}", c.y),
                tunnel_type: IpTunnelType::Dynamic,
                generation: c.generation,
                parent_ike_tunnel_id: k,
                vpn_action_name: rule.map(|r| r.action.name.clone()),
                local_dyn_vpn_rule: Some(c.rule.clone()),
                state: if c.expired {
                    NmiSaState::Expired
                } else {
                    NmiSaState::Active
                },
                activation: Some(c.activation),
                ike_version: Some(seen.map_or(rec::IkeVersion::V2, |s| s.version)),
                role: Some(if c.initiator {
                    rec::Role::Initiator
                } else {
                    rec::Role::Responder
                }),
                how_to_encap: match c.mode {
                    ike_proto::ikev2::Mode::Transport => rec::Encap::Transport,
                    _ => rec::Encap::Tunnel,
                },
                local_endpoint: c.local.ip(),
                remote_endpoint: c.remote.ip(),
                local_address_base: lb,
                local_address_prefix: lp,
                local_address_range: lr,
                remote_address_base: rb,
                remote_address_prefix: rp,
                remote_address_range: rr,
                how_to_auth: Some(rec::AuthProtocol::Esp),
                auth_algorithm: c.integ.map(|i| ike::integ_name(i).to_owned()),
                auth_inbound_spi: Some(c.spi_in),
                auth_outbound_spi: Some(c.spi_out),
                how_to_encrypt: Some(enc.to_owned()),
                encrypt_key_length: keylen,
                encrypt_inbound_spi: Some(c.spi_in),
                encrypt_outbound_spi: Some(c.spi_out),
                pfs_group: match seen {
                    Some(s) => s.pfs,
                    None => rule.and_then(|r| r.action.initiate_with_pfs).map(|g| g.0),
                },
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
                lifetime_refresh: Some(c.created + c.soft_secs),
                lifetime_expires: Some(c.created + c.hard_secs),
                vpn_life_expires: rule
                    .filter(|r| r.action.vpn_life > 0)
                    .map(|r| c.created + u64::from(r.action.vpn_life) * 60),
                create_time: Some(c.created),
                nat: NatTopology {
                    udp_encap_mode: c.encap.is_some(),
                    rmt_udp_encap_port: c.encap.map(|e| e.1),
                    ..NatTopology::default()
                },
                fips140,
                ipv6: c.remote.is_ipv6(),
            });
        }
        out
    }
}

use ike_proto::ikev2::{ChildId, IkeSaId};

/// A LocalDynVpnRule with every source position cleared.
fn unplaced_dyn(
    r: &gatekey_config::ike_policy::LocalDynVpnRule,
) -> gatekey_config::ike_policy::LocalDynVpnRule {
    let mut r = r.clone();
    r.pos = Default::default();
    r.action.pos = Default::default();
    for o in &mut r.action.offers {
        o.pos = Default::default();
    }
    r
}

/// A KeyExchangeRule with every source position cleared.
fn unplaced_ker(
    r: &gatekey_config::ike_policy::KeyExchangeRule,
) -> gatekey_config::ike_policy::KeyExchangeRule {
    let mut r = r.clone();
    r.pos = Default::default();
    r.local.pos = Default::default();
    r.remote.pos = Default::default();
    r.action.pos = Default::default();
    for o in &mut r.action.offers {
        o.pos = Default::default();
    }
    r
}
use std::time::Duration;

/// The number of a tunnel ID `K<n>` or `Y<n>` (either case).
fn tunnel_number(tunnel_id: Option<&str>, prefix: char) -> Option<u32> {
    tunnel_id
        .and_then(|t| t.strip_prefix([prefix.to_ascii_uppercase(), prefix.to_ascii_lowercase()]))
        .and_then(|n| n.parse().ok())
}

/// A control request's answer, naming what it was asked about.
fn outcome<'a>(
    name: Option<&'a str>,
    tunnel_id: Option<&'a str>,
) -> impl Fn(TunnelStatus, Option<String>) -> TunnelOutcome + 'a {
    move |status, message| TunnelOutcome {
        name: name.map(str::to_owned),
        tunnel_id: tunnel_id.map(str::to_owned),
        status,
        message,
    }
}

impl crate::ike::IkeDriver {
    /// The child SAs of tunnel `Y<n>` and/or LocalDynVpnRule `name` (all
    /// of them when neither is given); expired ones only when asked.
    fn children_named(
        &self,
        name: Option<&str>,
        tunnel_id: Option<&str>,
        with_expired: bool,
    ) -> Vec<ChildId> {
        let y = tunnel_number(tunnel_id, 'Y');
        self.children
            .iter()
            .filter(|(_, c)| {
                (with_expired || !c.expired)
                    && y.is_none_or(|y| c.y == y)
                    && name.is_none_or(|n| c.rule == n)
            })
            .map(|(id, _)| *id)
            .collect()
    }
}
