//! The running daemon: stacks, signals, refresh, NMI requests, kernel
//! events. One task (the event loop in [`run`]) owns all state; sockets,
//! the NMI server and the XFRM event streams feed it through channels.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use gatekey_nmi::records::{
    FilterSet, IkeNsInfoList, IkeNsInfoRecord, IkeTunnelCascadeList, IkeTunnelList, IpTunnelList,
    PortTransList, Selection, ServerInfo, ServerKind, StackInfoList, StackRecord, Summary,
    SummaryRecord, TunnelControlResult, TunnelOutcome, TunnelSource, TunnelStatus,
};
use gatekey_nmi::server::{Incoming, Origin, Reply, Server, ServerConfig};
use gatekey_nmi::{Failure, ReasonCode, Request, Response, Target};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::conf::{self, Loaded, StackSetup};
use crate::kernel::Kernel;
use crate::net::{self, Datagram};
use crate::netns::Netns;
use crate::nmi::{self, NmiCommand, NmiHandler};
use crate::stack::{Stack, now_secs};
use crate::{Cli, KernelBackend};

/// Counters kept over iked's whole life (NMI GET_SUMMARY): they survive a
/// stack's restart.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// IKE messages received.
    pub received: u64,
    /// IKE messages discarded as malformed or unauthenticated.
    pub invalid_messages: u64,
}

/// An event for the loop from a stack's kernel.
#[derive(Debug)]
pub enum KernelEvent {
    /// Unprotected traffic matched a fail-closed policy (on-demand).
    Acquire {
        /// The stack.
        stack: String,
        /// The packet's addresses.
        src: std::net::IpAddr,
        /// Destination.
        dst: std::net::IpAddr,
        /// The policy's request ID (which LocalDynVpnRule).
        reqid: u32,
    },
    /// An SA reached its soft (rekey) or hard (gone) limit.
    Expire {
        /// The stack.
        stack: String,
        /// Its request ID.
        reqid: u32,
        /// Its SPI.
        spi: u32,
        /// Hard expiry.
        hard: bool,
    },
}

/// Everything iked runs.
#[derive(Debug)]
pub struct Daemon {
    /// The configuration in force.
    pub loaded: Loaded,
    /// Running stacks by name.
    pub stacks: BTreeMap<String, Stack>,
    /// When iked started.
    pub started: SystemTime,
    /// Life-long counters.
    pub totals: Totals,
    backend: KernelBackend,
    inbound: mpsc::Sender<(String, Datagram)>,
    kernel_events: mpsc::Sender<KernelEvent>,
    /// Where NSS clients send their answers and relayed NMI requests.
    pub nss_wiring: Option<crate::nss::Wiring>,
}

/// What a refresh changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Stacks started.
    pub added: Vec<String>,
    /// Stacks stopped.
    pub removed: Vec<String>,
    /// Stacks whose configuration changed.
    pub changed: Vec<String>,
}

impl Daemon {
    /// Start every stack of `loaded`. A stack that cannot start (namespace
    /// missing, port taken) is logged and skipped; the others run.
    pub async fn start(
        loaded: Loaded,
        backend: KernelBackend,
        inbound: mpsc::Sender<(String, Datagram)>,
        kernel_events: mpsc::Sender<KernelEvent>,
        nss_wiring: Option<crate::nss::Wiring>,
    ) -> Self {
        let mut d = Daemon {
            loaded: loaded.clone(),
            stacks: BTreeMap::new(),
            started: SystemTime::now(),
            totals: Totals::default(),
            backend,
            inbound,
            kernel_events,
            nss_wiring,
        };
        for setup in loaded.stacks {
            d.start_stack(setup, loaded.iked.ike.clone()).await;
        }
        d
    }

    async fn start_stack(
        &mut self,
        setup: StackSetup,
        ike_conf: gatekey_config::iked_conf::IkeConfig,
    ) {
        let name = setup.name().to_owned();
        match self.open_stack(&setup) {
            Ok(mut stack) => {
                log_policy(&stack.setup);
                let r = stack.sync_kernel(true, &[]).await;
                info!(
                    "EZD0925I Stack {name} kernel state reconciled: {} policies adopted, {} installed, {} removed, {} stale SAs removed",
                    r.adopted, r.installed, r.removed, r.stale_sas
                );
                if let Some(w) = &self.nss_wiring {
                    crate::nss::reconcile(&mut stack, &ike_conf, &self.system_name(), w);
                }
                stack.filter = crate::filter::Filters::start(&stack.setup);
                stack.configure_ike(&ike_conf);
                auto_activate(&mut stack).await;
                self.stacks.insert(name, stack);
            }
            Err(e) => {
                error!("EZD0916E Stack {name} cannot be started: {e:#}");
            }
        }
    }

    fn stop_stack(&mut self, name: &str) {
        if self.stacks.remove(name).is_some() {
            info!("EZD0917I Stack {name} stopped; its IPsec policies stay in force");
        }
    }

    fn open_stack(&self, setup: &StackSetup) -> anyhow::Result<Stack> {
        let name = setup.name().to_owned();
        let netns = Netns::for_stack(&name)?;
        let (sockets, notes) = net::open(&netns, setup.conf.ike_port, setup.conf.natt_port)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open UDP ports {} and {}: {e}",
                    setup.conf.ike_port,
                    setup.conf.natt_port
                )
            })?;
        for n in notes {
            warn!("EZD0919W Stack {name}: {n}");
        }
        let kernel = match self.backend {
            KernelBackend::Recording => Kernel::recording(),
            KernelBackend::Xfrm => {
                let xns = if name == conf_default() {
                    gatekey_xfrm::Netns::current()
                } else {
                    gatekey_xfrm::Netns::named(&name)?
                };
                Kernel::Xfrm(gatekey_xfrm::Handle::open(xns)?)
            }
        };
        let sockets = Arc::new(sockets);
        let mut stack = Stack::new(setup.clone(), netns, sockets.clone(), kernel.clone());
        for i in 0..sockets.sockets.len() {
            let socks = sockets.clone();
            let tx = self.inbound.clone();
            let sname = name.clone();
            stack.tasks.push(tokio::spawn(async move {
                let Some(sock) = socks.sockets.get(i) else {
                    return;
                };
                let mut buf = vec![0u8; net::MAX_DATAGRAM];
                loop {
                    match sock.recv(&mut buf).await {
                        Ok(d) => {
                            if tx.send((sname.clone(), d)).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            warn!(
                                "EZD0919W Stack {sname}: receive on {} failed: {e}",
                                sock.bound()
                            );
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        if let Kernel::Xfrm(h) = &kernel {
            match h.events(gatekey_xfrm::EventGroups::IKE) {
                Ok(mut events) => {
                    let tx = self.kernel_events.clone();
                    let sname = name.clone();
                    stack.tasks.push(tokio::spawn(async move {
                        loop {
                            let ev = match events.next().await {
                                Ok(ev) => ev,
                                Err(e) => {
                                    warn!("EZD0928E Stack {sname}: XFRM event stream failed: {e}");
                                    return;
                                }
                            };
                            let out = match ev {
                                // The selector is the packet's flow; src/dst of
                                // the ACQUIRE are the template's tunnel endpoints.
                                gatekey_xfrm::Event::Acquire(a) => Some(KernelEvent::Acquire {
                                    stack: sname.clone(),
                                    src: a.selector.src.addr,
                                    dst: a.selector.dst.addr,
                                    reqid: a.policy.policy.templates.first().map_or(0, |t| t.reqid),
                                }),
                                gatekey_xfrm::Event::Expire { sa, hard } => {
                                    Some(KernelEvent::Expire {
                                        stack: sname.clone(),
                                        reqid: sa.sa.reqid,
                                        spi: sa.sa.spi.0,
                                        hard,
                                    })
                                }
                                _ => None,
                            };
                            if let Some(out) = out
                                && tx.send(out).await.is_err()
                            {
                                return;
                            }
                        }
                    }));
                }
                Err(e) => warn!("EZD0928E Stack {name}: cannot subscribe to XFRM events: {e}"),
            }
        }
        let ports: Vec<String> = sockets
            .sockets
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.bound().port(),
                    if s.is_ipv6() { "IPv6" } else { "IPv4" }
                )
            })
            .collect();
        info!(
            "EZD0915I Stack {name} IKE listening on UDP {}",
            ports.join(" ")
        );
        Ok(stack)
    }

    /// Apply a new, valid configuration: stop removed stacks, start added
    /// ones, reopen sockets whose ports changed, replace changed policies
    /// and bring the kernel in line with them.
    pub async fn apply(&mut self, new: Loaded) -> RefreshOutcome {
        let mut out = RefreshOutcome::default();
        let old_names: Vec<String> = self.stacks.keys().cloned().collect();
        for name in &old_names {
            if new.stack(name).is_none() {
                self.stop_stack(name);
                out.removed.push(name.clone());
            }
        }
        for setup in &new.stacks {
            let name = setup.name().to_owned();
            let running_setup = self.stacks.get(&name).map(|s| s.setup.clone());
            match running_setup {
                None => {
                    self.start_stack(setup.clone(), new.iked.ike.clone()).await;
                    out.added.push(name);
                }
                Some(old) if old != *setup => {
                    let ports_changed = old.conf.ike_port != setup.conf.ike_port
                        || old.conf.natt_port != setup.conf.natt_port;
                    if ports_changed {
                        self.stop_stack(&name);
                        self.start_stack(setup.clone(), new.iked.ike.clone()).await;
                    } else if let Some(running) = self.stacks.get_mut(&name) {
                        let old_policy = running.setup.policy.get().cloned();
                        running.setup = setup.clone();
                        log_policy(&running.setup);
                        let live = running.live_sa_ids();
                        let r = running.sync_kernel(false, &live).await;
                        info!(
                            "EZD0925I Stack {name} kernel state reconciled: {} policies adopted, {} installed, {} removed, {} stale SAs removed",
                            r.adopted, r.installed, r.removed, r.stale_sas
                        );
                        match &mut running.filter {
                            Some(f) => f.refresh(&running.setup),
                            None => {
                                running.filter = crate::filter::Filters::start(&running.setup);
                            }
                        }
                        running.configure_ike(&new.iked.ike);
                        running.renegotiate_changed(old_policy.as_deref());
                        auto_activate(running).await;
                    }
                    out.changed.push(name);
                }
                Some(_) => {}
            }
        }
        self.loaded = new;
        // NssStackConfig added, removed or changed, or the servers changed.
        self.reconcile_nss().await;
        out
    }

    /// A datagram arrived on one of `stack`'s sockets.
    pub async fn on_datagram(&mut self, stack: &str, d: Datagram) {
        self.totals.received += 1;
        let Some(s) = self.stacks.get_mut(stack) else {
            return;
        };
        debug!(
            stack,
            local = %d.local,
            remote = %d.remote,
            len = d.data.len(),
            "IKE datagram received"
        );
        if s.ike.is_none() {
            // No policy: this stack accepts no tunnel.
            self.totals.invalid_messages += 1;
            return;
        }
        s.ike_datagram(std::time::Instant::now(), d).await;
    }

    /// The earliest time a stack's IKE engine wants to run.
    pub fn next_deadline(&self) -> Option<std::time::Instant> {
        self.stacks.values().filter_map(Stack::ike_deadline).min()
    }

    /// Run every stack whose deadline has passed.
    pub async fn on_timer(&mut self) {
        let now = std::time::Instant::now();
        for s in self.stacks.values_mut() {
            if s.ike_deadline().is_some_and(|d| d <= now) {
                s.ike_timeout(now).await;
            }
        }
    }

    /// An event from a stack's kernel.
    pub async fn on_kernel_event(&mut self, ev: KernelEvent) {
        let now = std::time::Instant::now();
        match ev {
            KernelEvent::Acquire {
                stack,
                src,
                dst,
                reqid,
            } => {
                let Some(s) = self.stacks.get_mut(&stack) else {
                    return;
                };
                let rule = s
                    .traps
                    .iter()
                    .find(|(_, t)| t.reqid == reqid)
                    .map(|(n, _)| n.clone());
                let Some(rule) = rule else {
                    debug!(stack, %src, %dst, reqid, "ACQUIRE for a policy iked does not own");
                    return;
                };
                info!(
                    "EZD0931I Stack {stack}: traffic {src} -> {dst} needs LocalDynVpnRule {rule}; it is dropped until the tunnel is up"
                );
                let on_demand = s
                    .setup
                    .policy
                    .get()
                    .and_then(|p| p.dyn_rule(&rule))
                    .is_some_and(|r| r.on_demand);
                if on_demand {
                    let o = s.activate_rule(now, &rule, gatekey_nmi::records::Activation::OnDemand);
                    if !o.status.is_success() {
                        debug!(
                            stack,
                            rule,
                            status = o.status.display(),
                            "on-demand activation not started"
                        );
                    }
                    s.ike_pump(now).await;
                }
            }
            KernelEvent::Expire {
                stack,
                reqid,
                spi,
                hard,
            } => {
                debug!(stack, reqid, spi, hard, "SA expire event");
                if let Some(s) = self.stacks.get_mut(&stack) {
                    s.on_expire(now, spi, hard);
                    s.ike_pump(now).await;
                }
            }
        }
    }

    fn system_name(&self) -> String {
        self.loaded.iked.system_name()
    }

    /// The NMI StackRecord of a running stack.
    fn stack_record(&self, s: &Stack) -> StackRecord {
        let policy_available = s.setup.policy.get().is_some();
        let mut r = StackRecord {
            stack_name: s.name().to_owned(),
            ip_security: false,
            ipv6_security: false,
            dvipsec: false,
            logging: false,
            log_implicit: false,
            predecap: false,
            filter_set: if policy_available {
                FilterSet::Policy
            } else {
                FilterSet::Default
            },
            policy_available,
            fips140: self.loaded.iked.ike.fips140,
            nat_keepalive: s.setup.conf.nat_keepalive,
            ike_listening: !s.sockets.sockets.is_empty(),
        };
        crate::filter::stack_bits(s, &mut r);
        r
    }

    /// Resolve the request's target to a running stack (§2 target rules).
    fn resolve(&self, target: Option<&Target>) -> Result<&Stack, Failure> {
        match target {
            Some(t) => self
                .stacks
                .values()
                .find(|s| t.matches(s.name()))
                .ok_or_else(|| {
                    Failure::no_target(format!("iked runs no stack named {}", t.as_str()))
                }),
            None => {
                if let Some(s) = self.stacks.get(crate::netns::DEFAULT_STACK) {
                    return Ok(s);
                }
                let mut it = self.stacks.values();
                match (it.next(), it.next()) {
                    (Some(s), None) => Ok(s),
                    _ => Err(Failure::invalid(
                        ReasonCode::TARGET_REQUIRED,
                        "iked runs several stacks and none is named default: name one with -p",
                    )),
                }
            }
        }
    }

    /// Answer one NMI request.
    pub async fn nmi(&mut self, req: Incoming) -> Reply {
        let sys = self.system_name();
        // Relayed by an NSS server (`ipsec -z`): nssd has checked
        // EZB.NETMGMT.<sys>.<client>.IPSEC.*, and the request is for the
        // stack whose NSS connection carried it (docs/nmi-protocol.md §7).
        let relayed = match &req.origin {
            Origin::Local(_) => None,
            Origin::Relayed { client_name } => {
                match crate::nss::relayed_stack(&self.stacks, client_name) {
                    Ok(s) => {
                        info!(
                            "EZD1154I Stack {s}: {} request through network security server for NSS client {client_name}",
                            req.header.msg_type
                        );
                        Some(s)
                    }
                    Err(f) => return f.into(),
                }
            }
        };
        let caller = req.caller();
        let access = req.access();
        let db = self.loaded.saf.clone();
        let check = |profile: &str| match &caller {
            Some(c) => nmi::authorize(&db, c, profile),
            None => Ok(()),
        };
        let in_scope = |s: &str| relayed.as_deref().is_none_or(|r| r == s);
        // Requests about every stack.
        match (&req.request, &req.target) {
            (Request::GetStackInfo, None) => {
                let records: Vec<StackRecord> = self
                    .stacks
                    .values()
                    .filter(|s| {
                        in_scope(s.name())
                            && check(&nmi::profile_for(&sys, s.name(), access, false)).is_ok()
                    })
                    .map(|s| self.stack_record(s))
                    .collect();
                return ok(
                    None,
                    Response::StackInfo(StackInfoList {
                        total_available: u32::try_from(records.len()).unwrap_or(u32::MAX),
                        records,
                    }),
                );
            }
            (Request::GetIkeNsInfo, _) => {
                if let Err(f) = check(&nmi::profile_for(&sys, &sys, access, true)) {
                    return f.into();
                }
                let records: Vec<IkeNsInfoRecord> = self
                    .stacks
                    .values()
                    .filter(|s| {
                        in_scope(s.name())
                            && (relayed.is_some()
                                || req.target.as_ref().is_none_or(|t| t.matches(s.name())))
                    })
                    .map(|s| crate::nss::nsinfo_record(s, &sys))
                    .collect();
                return ok(
                    req.target.clone(),
                    Response::IkeNsInfo(IkeNsInfoList {
                        system_name: sys,
                        total_available: u32::try_from(records.len()).unwrap_or(u32::MAX),
                        records,
                    }),
                );
            }
            (Request::GetClientInfo, _) => {
                return Failure::not_served("GET_CLIENTINFO is served by nssd").into();
            }
            _ => {}
        }
        let stack_name = match (&relayed, self.resolve(req.target.as_ref())) {
            (Some(r), _) => r.clone(),
            (None, Ok(s)) => s.name().to_owned(),
            (None, Err(f)) => return f.into(),
        };
        if let Err(f) = check(&nmi::profile_for(&sys, &stack_name, access, false)) {
            return f.into();
        }
        // A relayed answer carries the request's target (the client name).
        let target = match &relayed {
            Some(_) => req.target.clone(),
            None => Target::new(&stack_name).ok(),
        };
        let fips = self.loaded.iked.ike.fips140;
        let stack_rec = self.stacks.get(&stack_name).map(|s| self.stack_record(s));
        let Some(stack) = self.stacks.get_mut(&stack_name) else {
            return Failure::no_target(format!("stack {stack_name} stopped")).into();
        };
        match req.request {
            Request::GetStackInfo => {
                let r = self.stacks.get(&stack_name).map(|s| self.stack_record(s));
                ok(
                    target,
                    Response::StackInfo(StackInfoList {
                        total_available: 1,
                        records: r.into_iter().collect(),
                    }),
                )
            }
            Request::GetSummary => {
                let mut st = SummaryRecord {
                    invalid_messages: self.totals.invalid_messages,
                    ..SummaryRecord::default()
                };
                if let Some(d) = &stack.ike {
                    let e = d.endpoint.statistics();
                    st.p1_active = e.p1_active;
                    st.p1_in_progress = e.p1_in_progress;
                    st.p1_expired = e.p1_expired;
                    st.p1_lcl_act_success = e.p1_local_act_success;
                    st.p1_rmt_act_success = e.p1_remote_act_success;
                    st.p1_lcl_act_failure = e.p1_local_act_failure;
                    st.p1_rmt_act_failure = e.p1_remote_act_failure;
                    st.p1_retransmit = e.p1_retransmit;
                    st.p2_active = e.p2_active;
                    st.p2_in_progress = e.p2_in_progress;
                    st.p2_lcl_act_success = e.p2_local_act_success;
                    st.p2_rmt_act_success = e.p2_remote_act_success;
                    st.p2_lcl_act_failure = e.p2_local_act_failure;
                    st.p2_rmt_act_failure = e.p2_remote_act_failure;
                    st.p2_retransmit = e.p2_retransmit;
                    st.invalid_messages += e.invalid_packets;
                }
                ok(target, Response::Summary(Summary {
                    since: self
                        .started
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs()),
                    statistics: st,
                }))
            }
            Request::GetIkeTun(sel) => {
                let all = stack.ike_records(fips);
                let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let records = all
                    .into_iter()
                    .filter(|r| selected(&sel, &r.tunnel_id, r.key_exchange_rule_name.as_deref()))
                    .collect();
                ok(target, Response::IkeTunnels(IkeTunnelList {
                    total_available: total,
                    truncated: false,
                    records,
                }))
            }
            Request::GetIkeTunCascade(sel) => {
                let all = stack.ike_records(fips);
                let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let dyns = stack.dyn_records(fips, sel.all_sas).await;
                let records = all
                    .into_iter()
                    .filter(|r| selected(&sel, &r.tunnel_id, r.key_exchange_rule_name.as_deref()))
                    .map(|r| gatekey_nmi::records::IkeTunnelCascade {
                        dynamic_tunnels: dyns
                            .iter()
                            .filter(|d| d.parent_ike_tunnel_id.as_deref() == Some(r.tunnel_id.as_str()))
                            .cloned()
                            .collect(),
                        ike_tunnel: r,
                    })
                    .collect();
                ok(target, Response::IkeTunnelCascade(IkeTunnelCascadeList {
                    total_available: total,
                    truncated: false,
                    records,
                }))
            }
            Request::GetIpTunDynIke(ref sel) | Request::GetIpTunDynStack(ref sel) => {
                let source = if matches!(req.request, Request::GetIpTunDynIke(_)) {
                    TunnelSource::Iked
                } else {
                    TunnelSource::Stack
                };
                let all = stack.dyn_records(fips, sel.all_sas).await;
                let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let records = all
                    .into_iter()
                    .filter(|r| {
                        selected(sel, &r.tunnel_id, r.local_dyn_vpn_rule.as_deref())
                            || sel.name.as_deref().is_some_and(|n| r.vpn_action_name.as_deref() == Some(n))
                    })
                    .collect();
                ok(target, Response::IpTunnels(IpTunnelList {
                    source,
                    current_time: now_secs(),
                    total_available: total,
                    truncated: false,
                    records,
                }))
            }
            Request::GetIpTunManual(sel) => {
                let all = stack.manual_records(fips).await;
                let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
                let records = all
                    .into_iter()
                    .filter(|r| selected(&sel, &r.tunnel_id, r.vpn_action_name.as_deref()))
                    .collect();
                ok(
                    target,
                    Response::IpTunnels(IpTunnelList {
                        source: TunnelSource::Stack,
                        current_time: now_secs(),
                        total_available: total,
                        truncated: false,
                        records,
                    }),
                )
            }
            Request::GetPortTrans => ok(
                target,
                Response::PortTrans(PortTransList {
                    total_available: 0,
                    records: Vec::new(),
                }),
            ),
            Request::ActIpTunManual(tc) => {
                let mut out = Vec::new();
                for t in &tc.tunnels {
                    out.push(match manual_name(stack, t) {
                        Some(n) => stack.activate_manual(&n).await,
                        None => not_found(t),
                    });
                }
                ok(
                    target,
                    Response::TunnelControl(TunnelControlResult { tunnels: out }),
                )
            }
            Request::DeactIpTunManual(tc) => {
                let mut out = Vec::new();
                for t in &tc.tunnels {
                    out.push(match manual_name(stack, t) {
                        Some(n) => stack.deactivate_manual(&n).await,
                        None => not_found(t),
                    });
                }
                ok(
                    target,
                    Response::TunnelControl(TunnelControlResult { tunnels: out }),
                )
            }
            Request::ActIpTunDyn(tc) => {
                let now = std::time::Instant::now();
                let mut out = Vec::new();
                for t in &tc.tunnels {
                    out.push(match &t.name {
                        Some(n) => {
                            let o = stack.activate_rule(now, n, gatekey_nmi::records::Activation::Command);
                            if o.status == TunnelStatus::NotFound {
                                dynamic_control_one(stack, t)
                            } else {
                                o
                            }
                        }
                        None => not_found(t),
                    });
                }
                stack.ike_pump(now).await;
                ok(target, Response::TunnelControl(TunnelControlResult { tunnels: out }))
            }
            Request::DeactIpTunDyn(ref tc) | Request::RefreshIpTunDyn(ref tc) => {
                let refresh = matches!(req.request, Request::RefreshIpTunDyn(_));
                let now = std::time::Instant::now();
                let mut out = Vec::new();
                for t in &tc.tunnels {
                    out.push(if refresh {
                        stack.refresh_dyn(now, t.name.as_deref(), t.tunnel_id.as_deref())
                    } else {
                        stack.deactivate_dyn(now, t.name.as_deref(), t.tunnel_id.as_deref())
                    });
                }
                stack.ike_pump(now).await;
                ok(target, Response::TunnelControl(TunnelControlResult { tunnels: out }))
            }
            Request::DeactIkeTun(ref tc) | Request::RefreshIkeTun(ref tc) => {
                let refresh = matches!(req.request, Request::RefreshIkeTun(_));
                let now = std::time::Instant::now();
                let mut out = Vec::new();
                for t in &tc.tunnels {
                    out.push(stack.ike_control(now, t.name.as_deref(), t.tunnel_id.as_deref(), refresh));
                }
                stack.ike_pump(now).await;
                ok(target, Response::TunnelControl(TunnelControlResult { tunnels: out }))
            }
            Request::ActIkeTun(tc) => ok(target, Response::TunnelControl(TunnelControlResult {
                tunnels: tc
                    .tunnels
                    .iter()
                    .map(|t| TunnelOutcome {
                        status: TunnelStatus::Failed,
                        message: Some(
                            "activate a LocalDynVpnRule instead (ipsec -y activate): its IKE SA comes up with it".into(),
                        ),
                        ..not_found(t)
                    })
                    .collect(),
            })),
            Request::GetIpFltCurr(ref sel)
            | Request::GetIpFltDefault(ref sel)
            | Request::GetIpFltPolicy(ref sel) => {
                let scope = match req.request {
                    Request::GetIpFltDefault(_) => gatekey_nmi::records::FilterScope::Default,
                    Request::GetIpFltPolicy(_) => gatekey_nmi::records::FilterScope::Policy,
                    _ => gatekey_nmi::records::FilterScope::Current,
                };
                let Some(sr) = stack_rec else {
                    return Failure::no_target(format!("stack {stack_name} stopped")).into();
                };
                ok(target, Response::Filters(crate::filter::filter_list(stack, scope, sel, sr)))
            }
            Request::TrafficTest(ref t) => {
                let Some(sr) = stack_rec else {
                    return Failure::no_target(format!("stack {stack_name} stopped")).into();
                };
                match crate::filter::traffic_test(stack, t, sr) {
                    Ok(r) => ok(target, Response::TrafficTest(r)),
                    Err(f) => f.into(),
                }
            }
            Request::GetIpInterfaces => match crate::filter::interfaces(stack) {
                Ok(r) => ok(target, Response::Interfaces(r)),
                Err(f) => f.into(),
            },
            Request::SetIpFltDefault | Request::SetIpFltPolicy => {
                let to = if matches!(req.request, Request::SetIpFltDefault) {
                    gatekey_dataplane::dataplane::SetId::Default
                } else {
                    gatekey_dataplane::dataplane::SetId::Policy
                };
                match crate::filter::switch(stack, to) {
                    Ok(r) => ok(target, Response::FilterSet(r)),
                    Err(f) => f.into(),
                }
            }
            Request::GetIkeNsInfo | Request::GetClientInfo => {
                Failure::internal("handled above").into()
            }
            _ => Failure::not_served("request type not served by iked").into(),
        }
    }
}

fn ok(target: Option<Target>, r: Response) -> Reply {
    Reply::ok(target, r)
}

fn conf_default() -> &'static str {
    crate::netns::DEFAULT_STACK
}

fn selected(sel: &Selection, tunnel_id: &str, name: Option<&str>) -> bool {
    sel.tunnel_id
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case(tunnel_id))
        && sel.name.as_deref().is_none_or(|n| Some(n) == name)
}

fn not_found(t: &gatekey_nmi::records::TunnelRef) -> TunnelOutcome {
    TunnelOutcome {
        name: t.name.clone(),
        tunnel_id: t.tunnel_id.clone(),
        status: TunnelStatus::NotFound,
        message: None,
    }
}

/// The IpManVpnAction a TunnelRef names (by name or `M<n>`).
fn manual_name(stack: &Stack, t: &gatekey_nmi::records::TunnelRef) -> Option<String> {
    if let Some(n) = &t.name {
        return stack.manual.contains_key(n).then(|| n.clone());
    }
    let id = t.tunnel_id.as_deref()?;
    let n: u32 = id.strip_prefix(['M', 'm'])?.parse().ok()?;
    stack
        .manual
        .iter()
        .find(|(_, m)| m.id == n)
        .map(|(k, _)| k.clone())
}

/// Why a LocalDynVpnRule could not be activated: unknown, or no
/// KeyExchangeRule covers its remote security endpoint.
fn dynamic_control_one(stack: &Stack, t: &gatekey_nmi::records::TunnelRef) -> TunnelOutcome {
    let policy = stack.setup.policy.get();
    let Some(name) = &t.name else {
        return not_found(t);
    };
    let Some(rule) = policy.and_then(|p| p.dyn_rule(name)) else {
        return not_found(t);
    };
    let has_ker = policy.is_some_and(|p| {
        p.key_exchange_rules
            .iter()
            .any(|k| k.remote.location.contains(rule.remote_endpoint))
    });
    TunnelOutcome {
        status: if has_ker {
            TunnelStatus::Failed
        } else {
            TunnelStatus::NoKer
        },
        ..not_found(t)
    }
}

fn log_policy(setup: &StackSetup) {
    let name = setup.name();
    match &setup.policy {
        conf::Policy::Loaded(p) => info!(
            "EZD0918I Stack {name} policy {} in force: {} KeyExchangeRules, {} LocalDynVpnRules, {} IpManVpnActions",
            setup.conf.policy_file.display(),
            p.key_exchange_rules.len(),
            p.local_dyn_vpn_rules.len(),
            p.ip_man_vpn_actions.len()
        ),
        conf::Policy::Missing(f) => warn!(
            "EZD0919W Stack {name}: policy file {} does not exist; no tunnels will be negotiated",
            f.display()
        ),
    }
}

/// Run until SIGTERM or SIGINT.
pub async fn run(cli: Cli, loaded: Loaded) -> anyhow::Result<()> {
    info!(
        "EZD0967I IKE release gatekey {} starting: configuration {}, pid {}",
        env!("CARGO_PKG_VERSION"),
        loaded.path.display(),
        std::process::id()
    );
    for w in loaded.warnings() {
        warn!("EZD0919W {w}");
    }
    let path = loaded.path.clone();
    let sys = loaded.iked.system_name();
    let (tx, mut rx) = mpsc::channel::<(String, Datagram)>(1024);
    let (ktx, mut krx) = mpsc::channel::<KernelEvent>(256);
    let (ntx, mut nrx) = mpsc::channel::<NmiCommand>(64);
    let (sstx, mut ssrx) = mpsc::channel::<crate::nss::NssEvent>(256);
    let wiring = crate::nss::Wiring {
        events: sstx,
        nmi: NmiHandler::new(ntx.clone()),
    };
    let mut daemon = Daemon::start(loaded, cli.kernel, tx, ktx, Some(wiring)).await;

    let info = ServerInfo {
        server: ServerKind::Iked,
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        system_name: sys,
        min_version: gatekey_nmi::MIN_VERSION,
        max_version: gatekey_nmi::MAX_VERSION,
    };
    let mut server_config = ServerConfig::new(&cli.nmi_socket, info);
    if let Some(g) = &cli.nmi_group {
        let group = nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .ok_or_else(|| anyhow::anyhow!("--nmi-group {g}: no such group"))?;
        server_config.group = Some(group.gid.as_raw());
    }
    let server = Server::bind(server_config).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot create the NMI socket {}: {e}",
            cli.nmi_socket.display()
        )
    })?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let nmi_task = tokio::spawn(server.run(Arc::new(NmiHandler::new(ntx)), async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    if !cli.keep_privileges {
        match crate::sys::drop_capabilities() {
            Ok(true) => info!(
                "EZD0920I IKE privileges reduced to {}",
                crate::sys::KEPT_CAPABILITIES.join(", ")
            ),
            Ok(false) => {}
            Err(e) => warn!("EZD0921W IKE could not drop privileges: {e}"),
        }
    }

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    info!(
        "EZD0911I IKE initialization complete: {} of {} stacks running, NMI on {}",
        daemon.stacks.len(),
        daemon.loaded.stacks.len(),
        cli.nmi_socket.display()
    );
    loop {
        tokio::select! {
            Some((stack, d)) = rx.recv() => daemon.on_datagram(&stack, d).await,
            Some(ev) = krx.recv() => daemon.on_kernel_event(ev).await,
            Some(ev) = ssrx.recv() => daemon.on_nss_event(ev).await,
            () = sleep_until(daemon.next_deadline()) => daemon.on_timer().await,
            Some(cmd) = nrx.recv() => {
                let reply = daemon.nmi(*cmd.request).await;
                let _ = cmd.reply.send(reply);
            }
            _ = hup.recv() => refresh(&mut daemon, &path).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("EZD0923I IKE has received the STOP command");
    let _ = stop_tx.send(true);
    // Answer what is in flight while the server sends TERM, until the
    // server has finished (the daemon's NSS wiring holds a sender too, so
    // the channel itself never closes here).
    let stopping = || Failure::internal("iked is stopping").into();
    let drain = async {
        let mut nmi_task = nmi_task;
        loop {
            tokio::select! {
                Some(cmd) = nrx.recv() => {
                    let _ = cmd.reply.send(stopping());
                }
                _ = &mut nmi_task => break,
            }
        }
        while let Ok(cmd) = nrx.try_recv() {
            let _ = cmd.reply.send(stopping());
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(6), drain).await;
    crate::nss::shutdown(&mut daemon.stacks).await;
    drop(daemon);
    info!("EZD0910I IKE daemon ending; IPsec policies stay in force (fail closed)");
    Ok(())
}

/// Sleep until `deadline`, or for ever.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Start every AutoActivate rule of a stack.
pub(crate) async fn auto_activate(stack: &mut Stack) {
    let now = std::time::Instant::now();
    let rules: Vec<String> = stack
        .setup
        .policy
        .get()
        .map(|p| {
            p.local_dyn_vpn_rules
                .iter()
                .filter(|r| r.auto_activate)
                .map(|r| r.name.clone())
                .collect()
        })
        .unwrap_or_default();
    for r in rules {
        let o = stack.activate_rule(now, &r, gatekey_nmi::records::Activation::Auto);
        // A rule whose KeyExchangeRule waits for NSS certificates starts
        // when they arrive (EZD1157I).
        if !o.status.is_success() && !crate::nss::waiting(stack) {
            warn!(
                "EZD0936E Stack {}: AutoActivate of LocalDynVpnRule {r} not started: {}{}",
                stack.name(),
                o.status.display(),
                o.message.map(|m| format!(" ({m})")).unwrap_or_default()
            );
        }
    }
    stack.ike_pump(now).await;
}

/// Re-read the configuration (SIGHUP, NMI). A configuration with any error
/// is rejected whole; the running one stays.
pub async fn refresh(daemon: &mut Daemon, path: &std::path::Path) {
    info!("EZD0904I IKE refresh of {} requested", path.display());
    match conf::load(path) {
        Ok(new) => {
            for w in new.warnings() {
                warn!("EZD0919W {w}");
            }
            let o = daemon.apply(new).await;
            info!(
                "EZD0905I IKE refresh complete: stacks added [{}], removed [{}], changed [{}]",
                o.added.join(" "),
                o.removed.join(" "),
                o.changed.join(" ")
            );
        }
        Err(e) => {
            for line in &e.0 {
                error!("EZD0906E IKE refresh rejected: {line}");
            }
            error!(
                "EZD0906E IKE refresh rejected: {} error(s); the running configuration stays in force",
                e.0.len()
            );
        }
    }
}
