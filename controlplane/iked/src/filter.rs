//! The stack's eBPF IP filter, driven by iked through `gatekey-dataplane`.
//!
//! - **Sets.** At stack start iked opens the stack's pinned filter
//!   (`/sys/fs/bpf/gatekey/<stack>/`; created if `gatekey-filter load` did not
//!   run at boot), loads the `default` set from the StackConfig's ProfileFile
//!   (`IPSEC … ENDIPSEC`) and the `policy` set from the policy file's
//!   `IpFilterPolicy`, and attaches the program to the StackConfig's
//!   `Interface`s (all but loopback when none is coded). The policy set
//!   becomes active unless the per-stack marker file says `default` (an
//!   operator's `ipsec -f default` survives iked restarts). A stack with
//!   neither a profile nor filter statements is left alone.
//! - **Dynamic filters.** When a child SA is installed, iked adds one dynamic
//!   filter per family before the anchor — the IpFilterRule whose IpSec action
//!   names the child's IpDynVpnAction: the intersection of the anchor and the
//!   negotiated traffic selectors, accepting inbound traffic only if the
//!   kernel decapsulated it with an SA of the LocalDynVpnRule's request ID.
//!   The filter is added before the SAs are installed and removed after the
//!   last SA of the tunnel is deleted, so there is no moment in which
//!   the tunnel's traffic is admitted without its SA. One filter serves all
//!   generations of a tunnel (a rekey keeps it and its counters).
//! - **Fail closed.** Everything is pinned: when iked stops or dies the sets
//!   and dynamic filters stay in force. A restarted iked reloads the sets
//!   (counters of unchanged filters keep counting); the dynamic filters of
//!   the previous run go with its SAs, which reconciliation removes.
//! - **NMI.** GET_IPFLTCURR/DEFAULT/POLICY (records in evaluation order with
//!   the eBPF counters), SET_IPFLTDEFAULT/SET_IPFLTPOLICY, TRAFFIC_TEST and
//!   GET_IPINTERFACES.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use gatekey_config::filter::{
    AddrRange, ConnectDir, DiscardAction, Family, FilterAction, FilterRule, FilterSet, L4Match,
    LogMode, PortRange, Routing,
};
use gatekey_config::filter_policy::FilterPolicy;
use gatekey_config::profile::Profile;
use gatekey_dataplane::compile::{self, Dir, DynamicFilter, Kind, SaMatch};
use gatekey_dataplane::dataplane::{Options, RuleCounter, SetId};
use gatekey_dataplane::stack::{DynamicId, StackFilter, TrafficQuery};
use gatekey_nmi::records::{self as rec, FilterRecord, Selection, StackRecord};
use gatekey_nmi::{Failure, ReasonCode};
use ike_proto::wire::TrafficSelector;
use tracing::{info, warn};

use crate::conf::StackSetup;
use crate::ike::{Dirs, KernelWork};
use crate::stack::Stack;

/// The dynamic filters of one dynamic tunnel (LocalDynVpnRule, peer).
#[derive(Debug, Clone)]
struct Tunnel {
    /// Its filters (one per family and anchor).
    ids: Vec<DynamicId>,
    /// The `Y<n>` of the tunnel.
    y: u32,
    /// What they were made from, to remake them after a policy reload.
    vpn_action: String,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    reqid: u32,
    /// When the first filter was added.
    created: u64,
}

/// One stack's filter as iked drives it.
#[derive(Debug)]
pub struct Filters {
    sf: StackFilter,
    stack: String,
    default: Option<Arc<Profile>>,
    policy: Option<Arc<FilterPolicy>>,
    attached: BTreeSet<String>,
    tunnels: BTreeMap<(String, IpAddr), Tunnel>,
}

/// A filter record with where it sits in the kernel's table.
struct Placed {
    dir: Dir,
    position: Option<u32>,
    record: FilterRecord,
}

impl Filters {
    /// Open the stack's filter, load its sets and attach it. `None` when the
    /// stack has neither a profile nor filter statements in its policy file,
    /// or when the filter cannot be loaded (logged).
    pub fn start(setup: &StackSetup) -> Option<Filters> {
        let name = setup.name().to_owned();
        if setup.profile.is_none() && setup.filter_policy.is_none() {
            info!(
                "EZD0947I Stack {name}: no ProfileFile ({}) and no IpFilterPolicy in {}: iked leaves the stack's IP filter alone",
                setup.conf.profile_file.display(),
                setup.conf.policy_file.display()
            );
            return None;
        }
        let opened = gatekey_dataplane::Stack::new(&name)
            .and_then(|s| StackFilter::open(&s, &Options::default()));
        let sf = match opened {
            Ok(sf) => sf,
            Err(e) => {
                warn!(
                    "EZD0943E Stack {name}: the eBPF IP filter cannot be loaded: {e}; the filter rules in force (if any) are unchanged"
                );
                return None;
            }
        };
        let mut f = Filters {
            sf,
            stack: name.clone(),
            default: None,
            policy: None,
            attached: BTreeSet::new(),
            tunnels: BTreeMap::new(),
        };
        f.load_sets(setup);
        let active_loaded =
            f.sf.active()
                .and_then(|a| f.sf.dataplane().is_loaded(a))
                .unwrap_or(false);
        if !active_loaded {
            warn!(
                "EZD0943E Stack {name}: no usable filter set is loaded; the filter is not attached"
            );
            return Some(f);
        }
        let names = (!setup.conf.interfaces.is_empty()).then_some(setup.conf.interfaces.as_slice());
        match f.sf.dataplane().attach(names, &BTreeMap::new()) {
            Ok(att) => {
                let ifs: BTreeSet<String> = att.iter().map(|a| a.ifname.clone()).collect();
                info!(
                    "EZD0944I Stack {name}: IP filter attached to {} (ingress and egress)",
                    ifs.iter().cloned().collect::<Vec<_>>().join(" ")
                );
                f.attached = ifs;
            }
            Err(e) => warn!(
                "EZD0943E Stack {name}: the IP filter cannot be attached: {e}; the filter rules in force (if any) are unchanged"
            ),
        }
        Some(f)
    }

    /// Load (or replace) both sets from `setup`. Dynamic filters whose anchor
    /// is gone are dropped; tunnels are refiltered against the new anchors.
    fn load_sets(&mut self, setup: &StackSetup) {
        let name = self.stack.clone();
        if let Some(p) = &setup.profile {
            match self.sf.load_default(p.set.clone()) {
                Ok(r) => {
                    info!(
                        "EZD0942I Stack {name}: filter set default loaded from {}: {} inbound and {} outbound filters",
                        setup.conf.profile_file.display(),
                        r.filters[0],
                        r.filters[1]
                    );
                    self.default = Some(p.clone());
                }
                Err(e) => warn!(
                    "EZD0943E Stack {name}: the default filter set was not loaded from {}: {e}; the rules in force are unchanged",
                    setup.conf.profile_file.display()
                ),
            }
        }
        if let Some(p) = &setup.filter_policy {
            match self.sf.load_policy(p.set.clone()) {
                Ok((r, active, dropped)) => {
                    info!(
                        "EZD0942I Stack {name}: filter set policy loaded from {}: {} inbound and {} outbound filters; active set {}",
                        setup.conf.policy_file.display(),
                        r.filters[0],
                        r.filters[1],
                        active.name()
                    );
                    self.policy = Some(p.clone());
                    for t in self.tunnels.values_mut() {
                        t.ids.retain(|id| !dropped.contains(id));
                    }
                    self.refilter_tunnels();
                }
                Err(e) => warn!(
                    "EZD0943E Stack {name}: the policy filter set was not loaded from {}: {e}; the rules in force are unchanged",
                    setup.conf.policy_file.display()
                ),
            }
        }
    }

    /// A refresh: reload the sets when their files changed.
    pub fn refresh(&mut self, setup: &StackSetup) {
        let same_default = setup.profile == self.default;
        let same_policy = setup.filter_policy == self.policy;
        if same_default && same_policy {
            return;
        }
        self.load_sets(setup);
    }

    /// Remake the filters of tunnels that lost theirs in a reload (their
    /// anchors changed).
    fn refilter_tunnels(&mut self) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let keys: Vec<(String, IpAddr)> = self
            .tunnels
            .iter()
            .filter(|(_, t)| t.ids.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            let Some(t) = self.tunnels.get(&k).cloned() else {
                continue;
            };
            let ids = self.add_filters(&policy.set, &k.0, &t);
            if let Some(t) = self.tunnels.get_mut(&k) {
                t.ids = ids;
            }
        }
    }

    fn add_filters(&mut self, set: &FilterSet, rule: &str, t: &Tunnel) -> Vec<DynamicId> {
        let filters = dynamic_filters(set, &t.vpn_action, &t.local_ts, &t.remote_ts, t.reqid);
        if filters.is_empty() {
            warn!(
                "EZD0946W Stack {}: no IpFilterRule with IpDynVpnActionRef {} covers dynamic tunnel Y{} (LocalDynVpnRule {rule}): the filter policy drops its traffic",
                self.stack, t.vpn_action, t.y
            );
        }
        let mut ids = Vec::new();
        for f in filters {
            let anchor = f.anchor.clone();
            match self.sf.add_dynamic(f) {
                Ok(id) => ids.push(id),
                Err(e) => warn!(
                    "EZD0946W Stack {}: the dynamic filter of tunnel Y{} before {anchor} cannot be added: {e}",
                    self.stack, t.y
                ),
            }
        }
        ids
    }

    /// The set that is active.
    pub fn active(&self) -> Option<SetId> {
        self.sf.active().ok()
    }

    fn set_of(&self, set: SetId) -> Option<&FilterSet> {
        match set {
            SetId::Default => self.default.as_ref().map(|p| &p.set),
            SetId::Policy => self.policy.as_ref().map(|p| &p.set),
        }
    }

    /// Every filter of `set` in evaluation order (dynamic filters before
    /// their anchors; per filter inbound, then outbound), then the implicit
    /// denies, with their counters.
    fn records(&self, set: SetId, manual_id: &dyn Fn(&str) -> Option<String>) -> Vec<Placed> {
        let mut out = Vec::new();
        let Some(fs) = self.set_of(set) else {
            return out;
        };
        let all_counters = self.sf.counters().unwrap_or_default();
        let counters: HashMap<(SetId, Dir, u32), &RuleCounter> = all_counters
            .iter()
            .filter(|c| c.position != u32::MAX)
            .map(|c| ((c.set, c.dir, c.position), c))
            .collect();
        let (dyn_ids, list): (Vec<DynamicId>, Vec<DynamicFilter>) = if set == SetId::Policy {
            self.sf
                .dynamic_filters()
                .iter()
                .map(|(id, d)| (*id, d.clone()))
                .unzip()
        } else {
            (Vec::new(), Vec::new())
        };
        let Ok(ordered) = compile::order(fs, &list) else {
            return out;
        };
        let entries: Vec<(Dir, Vec<compile::Entry>)> = [Dir::In, Dir::Out]
            .into_iter()
            .map(|d| (d, compile::entries(&ordered, d)))
            .collect();
        for (ordinal, o) in ordered.iter().enumerate() {
            // Which tunnel a dynamic filter belongs to.
            let tunnel = (o.kind == Kind::Dynamic)
                .then(|| {
                    let i = list.iter().position(|d| std::ptr::eq(&d.rule, o.rule))?;
                    let id = dyn_ids.get(i)?;
                    self.tunnels.values().find(|t| t.ids.contains(id))
                })
                .flatten();
            for (dir, es) in &entries {
                for (pos, e) in es.iter().enumerate().filter(|(_, e)| e.ordinal == ordinal) {
                    let pos = u32::try_from(pos).unwrap_or(u32::MAX);
                    let c = counters.get(&(set, *dir, pos));
                    let mut r = record(o.rule, e, *dir, o.kind, fs.log_enabled);
                    r.matched_packets = c.map_or(0, |c| c.packets);
                    r.matched_bytes = c.map(|c| c.bytes);
                    match (&o.rule.action, tunnel) {
                        (_, Some(t)) => {
                            r.tunnel_id = Some(format!("Y{}", t.y));
                            r.create_time = Some(t.created);
                        }
                        (FilterAction::IpSec { vpn_action, manual }, None) => {
                            if *manual {
                                r.tunnel_id = manual_id(vpn_action);
                            } else if o.kind == Kind::Anchor {
                                r.on_demand = self.policy.as_ref().map(|p| p.allow_on_demand);
                            }
                        }
                        _ => {}
                    }
                    out.push(Placed {
                        dir: *dir,
                        position: Some(pos),
                        record: r,
                    });
                }
            }
        }
        for dir in [Dir::In, Dir::Out] {
            // Fixed counters have no table position.
            let c = all_counters.iter().find(|c| {
                c.set == set
                    && c.dir == dir
                    && c.position == u32::MAX
                    && c.name == "SYSDEFAULTDENYRULE"
            });
            out.push(Placed {
                dir,
                position: None,
                record: implicit_deny(dir, fs.log_implicit, c),
            });
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Dynamic filters

/// The address ranges of selectors of one family.
fn ts_ranges(ts: &[TrafficSelector], fam: Family) -> Vec<AddrRange> {
    ts.iter()
        .filter_map(|t| match t {
            TrafficSelector::Range { start, end, .. } => AddrRange::range(*start, *end),
            _ => None,
        })
        .filter(|r| r.family() == fam)
        .collect()
}

/// The protocol of a set of selectors: `Some(p)` when every selector that
/// names a protocol names `p`, else any.
fn ts_protocol(ts: &[TrafficSelector]) -> Option<u8> {
    let mut protos = ts
        .iter()
        .map(|t| match t {
            TrafficSelector::Range { ip_protocol, .. } => *ip_protocol,
            _ => 0,
        })
        .filter(|p| *p != 0);
    let first = protos.next()?;
    protos.all(|p| p == first).then_some(first)
}

/// The port range of a single selector (any for several).
fn ts_ports(ts: &[TrafficSelector]) -> PortRange {
    match ts {
        [
            TrafficSelector::Range {
                start_port,
                end_port,
                ..
            },
        ] if start_port <= end_port => PortRange {
            lo: *start_port,
            hi: *end_port,
        },
        _ => PortRange::ANY,
    }
}

fn intersect_addrs(anchor: &[AddrRange], ts: &[AddrRange]) -> Option<Vec<AddrRange>> {
    if anchor.is_empty() {
        return (!ts.is_empty()).then(|| ts.to_vec());
    }
    let mut out = Vec::new();
    for a in anchor {
        for t in ts {
            if a.family() != t.family() {
                continue;
            }
            let lo = a.lo.max(t.lo);
            let hi = a.hi.min(t.hi);
            if let Some(r) = AddrRange::range(lo, hi) {
                out.push(r);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn intersect_ports(a: PortRange, b: PortRange) -> Option<PortRange> {
    let lo = a.lo.max(b.lo);
    let hi = a.hi.min(b.hi);
    (lo <= hi).then_some(PortRange { lo, hi })
}

/// The dynamic filters of a child SA: for every IpSec filter of `set` that
/// names `vpn_action` (the anchors), the part of it the SA's selectors
/// cover. Inbound traffic must have been decapsulated by an SA with `reqid`.
pub fn dynamic_filters(
    set: &FilterSet,
    vpn_action: &str,
    local_ts: &[TrafficSelector],
    remote_ts: &[TrafficSelector],
    reqid: u32,
) -> Vec<DynamicFilter> {
    let mut out = Vec::new();
    let ts_proto = {
        let all: Vec<TrafficSelector> = local_ts.iter().chain(remote_ts).cloned().collect();
        ts_protocol(&all)
    };
    for anchor in &set.rules {
        let FilterAction::IpSec {
            vpn_action: a,
            manual: false,
        } = &anchor.action
        else {
            continue;
        };
        if a != vpn_action {
            continue;
        }
        let fam = anchor.family;
        let (Some(src), Some(dst)) = (
            intersect_addrs(&anchor.src, &ts_ranges(local_ts, fam)),
            intersect_addrs(&anchor.dst, &ts_ranges(remote_ts, fam)),
        ) else {
            continue;
        };
        let protocol = match (anchor.protocol, ts_proto) {
            (None, p) | (p, None) => p,
            (Some(p), Some(q)) if p == q => Some(p),
            _ => continue,
        };
        let ports_apply = matches!(protocol, Some(6 | 17 | 132));
        let l4 = match anchor.l4 {
            L4Match::Ports { src: ps, dst: pd } => {
                let (Some(s), Some(d)) = (
                    intersect_ports(ps, ts_ports(local_ts)),
                    intersect_ports(pd, ts_ports(remote_ts)),
                ) else {
                    continue;
                };
                L4Match::Ports { src: s, dst: d }
            }
            L4Match::Any if ports_apply => L4Match::Ports {
                src: ts_ports(local_ts),
                dst: ts_ports(remote_ts),
            },
            other => other,
        };
        let mut rule = anchor.clone();
        rule.src = src;
        rule.dst = dst;
        rule.protocol = protocol;
        rule.l4 = l4;
        out.push(DynamicFilter {
            anchor: anchor.name.clone(),
            rule,
            sa: SaMatch { reqid, spi: None },
        });
    }
    out
}

/// Before the kernel work of an engine pump: every child SA about to be
/// installed whose tunnel has no dynamic filter gets it now, before its SAs
/// exist.
pub fn before_install(stack: &mut Stack, work: &[KernelWork]) {
    let Some(mut f) = stack.filter.take() else {
        return;
    };
    if let Some(policy) = f.policy.clone() {
        for w in work {
            let KernelWork::Install(inst, reqid, dirs) = w else {
                continue;
            };
            if *dirs == Dirs::Outbound {
                continue;
            }
            let key = (inst.name.clone(), inst.remote.ip());
            if f.tunnels.contains_key(&key) {
                continue;
            }
            let Some(vpn_action) = stack
                .setup
                .policy
                .get()
                .and_then(|p| p.dyn_rule(&inst.name))
                .map(|r| r.action.name.clone())
            else {
                continue;
            };
            let y = stack
                .ike
                .as_ref()
                .and_then(|d| d.children.get(&inst.child))
                .map_or(0, |c| c.y);
            let mut t = Tunnel {
                ids: Vec::new(),
                y,
                vpn_action,
                local_ts: inst.local_ts.clone(),
                remote_ts: inst.remote_ts.clone(),
                reqid: *reqid,
                created: crate::stack::now_secs(),
            };
            t.ids = f.add_filters(&policy.set, &inst.name, &t);
            if !t.ids.is_empty() {
                info!(
                    "EZD0948I Stack {}: dynamic filter{} of tunnel Y{y} (LocalDynVpnRule {}) added",
                    f.stack,
                    if t.ids.len() == 1 { "" } else { "s" },
                    inst.name
                );
            }
            f.tunnels.insert(key, t);
        }
    }
    stack.filter = Some(f);
}

/// After the kernel work of an engine pump: tunnels with no SA left lose
/// their dynamic filters.
pub fn after_kernel_work(stack: &mut Stack) {
    let Some(f) = &mut stack.filter else {
        return;
    };
    let live: BTreeSet<(String, IpAddr)> = stack
        .ike
        .as_ref()
        .map(|d| {
            d.children
                .values()
                .map(|c| (c.rule.clone(), c.remote.ip()))
                .collect()
        })
        .unwrap_or_default();
    let gone: Vec<(String, IpAddr)> = f
        .tunnels
        .keys()
        .filter(|k| !live.contains(*k))
        .cloned()
        .collect();
    for k in gone {
        let Some(t) = f.tunnels.remove(&k) else {
            continue;
        };
        let mut removed = 0;
        for id in &t.ids {
            match f.sf.remove_dynamic(*id) {
                Ok(_) => removed += 1,
                Err(e) => warn!(
                    "EZD0946W Stack {}: the dynamic filter of tunnel Y{} cannot be removed: {e}",
                    f.stack, t.y
                ),
            }
        }
        if removed > 0 {
            info!(
                "EZD0948I Stack {}: dynamic filter{} of tunnel Y{} (LocalDynVpnRule {}) removed",
                f.stack,
                if removed == 1 { "" } else { "s" },
                t.y,
                k.0
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Records

fn addr_fields(r: &[AddrRange]) -> (Option<IpAddr>, Option<u8>, Option<IpAddr>) {
    match r.first() {
        None => (None, None, None),
        Some(a) if a.lo == a.hi => (Some(a.lo), None, None),
        Some(a) => match a.as_prefix() {
            Some(len) => (Some(a.lo), Some(len), None),
            None => (Some(a.lo), None, Some(a.hi)),
        },
    }
}

fn port_fields(p: PortRange, full: PortRange) -> (Option<u16>, Option<u16>) {
    if p == full {
        (None, None)
    } else if p.lo == p.hi {
        (Some(p.lo), None)
    } else {
        (Some(p.lo), Some(p.hi))
    }
}

fn single_u8(p: PortRange) -> Option<u8> {
    (p.lo == p.hi).then(|| u8::try_from(p.lo).ok()).flatten()
}

/// The NMI record of one filter in one direction (`e` is the packet's view).
fn record(r: &FilterRule, e: &compile::Entry, dir: Dir, kind: Kind, log_on: bool) -> FilterRecord {
    let (action, manual) = match &r.action {
        FilterAction::Permit => (rec::FilterAction::Permit, false),
        FilterAction::Deny => (rec::FilterAction::Deny, false),
        FilterAction::IpSec { manual, .. } => (rec::FilterAction::Ipsec, *manual),
    };
    let (name, ext) = match e.name.split_once('~') {
        Some((n, x)) => (n.to_owned(), Some(x.to_owned())),
        None => (e.name.clone(), None),
    };
    let mut f = FilterRecord::new(
        name,
        action,
        match dir {
            Dir::In => rec::Direction::Inbound,
            Dir::Out => rec::Direction::Outbound,
        },
    );
    f.filter_name_extension = ext;
    if let FilterAction::IpSec { vpn_action, .. } = &r.action {
        f.vpn_action_name = Some(vpn_action.clone());
    }
    f.filter_type = match kind {
        Kind::Dynamic => rec::FilterType::Dynamic,
        Kind::Anchor if !manual => rec::FilterType::DynamicAnchor,
        _ => rec::FilterType::Generic,
    };
    f.scope = match e.routing {
        Routing::Local => rec::Scope::Local,
        Routing::Routed => rec::Scope::Routed,
        Routing::Either => rec::Scope::Either,
    };
    f.security_class = e.secclass;
    f.logging = if log_on {
        match e.log {
            LogMode::None => rec::Logging::None,
            LogMode::Permit => rec::Logging::Permit,
            LogMode::Deny => rec::Logging::Deny,
            LogMode::All => rec::Logging::All,
        }
    } else {
        rec::Logging::None
    };
    f.protocol = e.protocol;
    match r.l4 {
        L4Match::Ports { .. } => {
            (f.source_port, f.source_port_range) = port_fields(e.sport, PortRange::ANY);
            (f.dest_port, f.dest_port_range) = port_fields(e.dport, PortRange::ANY);
        }
        L4Match::Icmp { .. } => {
            f.icmp_type = single_u8(e.sport);
            f.icmp_code = single_u8(e.dport);
        }
        L4Match::Ospf { .. } => f.ospf_type = single_u8(e.sport),
        L4Match::Any => {}
    }
    f.tcp_qualifier = r.connect.map(|c| match c {
        ConnectDir::Inbound => rec::TcpQualifier::InboundConnect,
        ConnectDir::Outbound => rec::TcpQualifier::OutboundConnect,
    });
    (
        f.source_address,
        f.source_address_prefix,
        f.source_address_range,
    ) = addr_fields(&e.src);
    (f.dest_address, f.dest_address_prefix, f.dest_address_range) = addr_fields(&e.dst);
    f.discard_action = Some(match r.discard {
        DiscardAction::Silent => rec::DiscardAction::Silent,
        DiscardAction::Icmp => rec::DiscardAction::Icmp,
    });
    f.ipv6 = e.family == Family::V6;
    f
}

fn implicit_deny(dir: Dir, logged: bool, c: Option<&RuleCounter>) -> FilterRecord {
    let mut f = FilterRecord::new(
        "SYSDEFAULTDENYRULE",
        rec::FilterAction::Deny,
        match dir {
            Dir::In => rec::Direction::Inbound,
            Dir::Out => rec::Direction::Outbound,
        },
    );
    f.scope = rec::Scope::Either;
    f.logging = if logged {
        rec::Logging::Deny
    } else {
        rec::Logging::None
    };
    f.discard_action = Some(rec::DiscardAction::Silent);
    f.matched_packets = c.map_or(0, |c| c.packets);
    f.matched_bytes = c.map(|c| c.bytes);
    f
}

fn manual_ids(stack: &Stack) -> impl Fn(&str) -> Option<String> + '_ {
    |name| stack.manual.get(name).map(|m| format!("M{}", m.id))
}

fn to_set(scope: rec::FilterScope, f: &Filters) -> Option<SetId> {
    match scope {
        rec::FilterScope::Default => Some(SetId::Default),
        rec::FilterScope::Policy => Some(SetId::Policy),
        _ => f.active(),
    }
}

/// GET_IPFLTCURR / GET_IPFLTDEFAULT / GET_IPFLTPOLICY.
pub fn filter_list(
    stack: &Stack,
    scope: rec::FilterScope,
    sel: &Selection,
    stack_rec: StackRecord,
) -> rec::FilterList {
    let all: Vec<FilterRecord> = stack
        .filter
        .as_ref()
        .and_then(|f| to_set(scope, f).map(|s| f.records(s, &manual_ids(stack))))
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.record)
        .collect();
    let total = u32::try_from(all.len()).unwrap_or(u32::MAX);
    let records = all
        .into_iter()
        .filter(|r| {
            sel.tunnel_id.as_deref().is_none_or(|t| {
                r.tunnel_id
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(t))
            }) && sel.name.as_deref().is_none_or(|n| {
                r.filter_name == n
                    || r.filter_name_extension
                        .as_deref()
                        .is_some_and(|x| format!("{}~{x}", r.filter_name) == n)
            })
        })
        .collect();
    rec::FilterList {
        stack: stack_rec,
        set: scope,
        total_available: total,
        truncated: false,
        records,
    }
}

/// The addresses of the stack (for the traffic test's routed flag).
fn local_addresses(stack: &Stack) -> Vec<IpAddr> {
    stack
        .netns
        .run(|| {
            Ok(nix::ifaddrs::getifaddrs()
                .map(|it| {
                    it.filter_map(|a| a.address.and_then(|s| sockaddr_ip(&s)))
                        .collect()
                })
                .unwrap_or_default())
        })
        .unwrap_or_default()
}

fn sockaddr_ip(s: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// TRAFFIC_TEST: every filter of the active set that matches, in evaluation
/// order per direction (the first one decides), `SYSDEFAULTDENYRULE` when
/// nothing matches.
pub fn traffic_test(
    stack: &Stack,
    t: &rec::TrafficTest,
    stack_rec: StackRecord,
) -> Result<rec::TrafficTestResult, Failure> {
    if t.source.is_ipv4() != t.destination.is_ipv4() {
        return Err(Failure::invalid(
            ReasonCode::BAD_PARAMETER,
            "the source and destination addresses must be of the same family",
        ));
    }
    if t.protocol == 0 {
        return Err(Failure::invalid(
            ReasonCode::BAD_PARAMETER,
            "name one protocol (tcp, udp, icmp, … or a number) to test",
        ));
    }
    let Some(f) = &stack.filter else {
        return Ok(rec::TrafficTestResult {
            stack: stack_rec,
            test: t.clone(),
            total_available: 0,
            records: Vec::new(),
        });
    };
    let set = f
        .active()
        .ok_or_else(|| Failure::internal("cannot read the active filter set"))?;
    let placed = f.records(set, &manual_ids(stack));
    let total = u32::try_from(placed.len()).unwrap_or(u32::MAX);
    let local = local_addresses(stack);
    let dirs: Vec<Dir> = match t.direction {
        Some(rec::Direction::Inbound) => vec![Dir::In],
        Some(rec::Direction::Outbound) => vec![Dir::Out],
        None => vec![Dir::In, Dir::Out],
    };
    let mut records = Vec::new();
    for dir in dirs {
        let routed = match dir {
            Dir::In => !local.contains(&t.destination),
            Dir::Out => !local.contains(&t.source),
        };
        let q = TrafficQuery {
            src: t.source,
            dst: t.destination,
            protocol: t.protocol,
            sport: (t.source_port != 0).then_some(t.source_port),
            dport: (t.destination_port != 0).then_some(t.destination_port),
            dir,
            secclass: t.security_class,
            routed,
        };
        let answer =
            f.sf.traffic_test(Some(set), &q)
                .map_err(|e| Failure::internal(format!("traffic test: {e}")))?;
        for m in &answer.matches {
            let pos = u32::try_from(m.position).ok();
            if let Some(p) = placed
                .iter()
                .find(|p| p.dir == dir && p.position.is_some() && p.position == pos)
            {
                records.push(p.record.clone());
            }
        }
        if answer.implicit_deny
            && let Some(p) = placed.iter().find(|p| p.dir == dir && p.position.is_none())
        {
            records.push(p.record.clone());
        }
    }
    Ok(rec::TrafficTestResult {
        stack: stack_rec,
        test: t.clone(),
        total_available: total,
        records,
    })
}

/// SET_IPFLTDEFAULT / SET_IPFLTPOLICY (`ipsec -f default|reload`): switch
/// the active set and record it in the marker file.
pub fn switch(stack: &mut Stack, to: SetId) -> Result<rec::FilterSetResult, Failure> {
    let name = stack.name().to_owned();
    let Some(f) = &mut stack.filter else {
        return Err(Failure::invalid(
            ReasonCode::BAD_PARAMETER,
            format!(
                "iked does not drive the IP filter of stack {name}: it has no ProfileFile and no IpFilterPolicy"
            ),
        ));
    };
    let loaded = match to {
        SetId::Default => f.default.is_some(),
        SetId::Policy => f.policy.is_some(),
    };
    if !loaded {
        return Err(Failure::invalid(
            ReasonCode::BAD_PARAMETER,
            match to {
                SetId::Default => format!(
                    "stack {name} has no valid default filter set (ProfileFile): the current set stays in force"
                ),
                SetId::Policy => format!(
                    "stack {name} has no valid IP filter policy (IpFilterPolicy in its policy file): the current set stays in force"
                ),
            },
        ));
    }
    let set = match to {
        SetId::Default => rec::FilterSet::Default,
        SetId::Policy => rec::FilterSet::Policy,
    };
    let already = f.active() == Some(to);
    f.sf.switch(to)
        .map_err(|e| Failure::internal(format!("switching to the {} set: {e}", to.name())))?;
    if !already {
        info!(
            "EZD0945I Stack {name}: filter set {} is active ({})",
            to.name(),
            match to {
                SetId::Default => "ipsec -f default: the profile's rules",
                SetId::Policy => "ipsec -f reload: the IP filter policy",
            }
        );
    }
    Ok(rec::FilterSetResult {
        filter_set: set,
        status: if already {
            rec::TunnelStatus::StateAlreadySet
        } else {
            rec::TunnelStatus::StateUpdated
        },
    })
}

/// GET_IPINTERFACES.
pub fn interfaces(stack: &Stack) -> Result<rec::InterfaceList, Failure> {
    use nix::net::if_::InterfaceFlags;
    let rows: Vec<(String, u32, Option<IpAddr>, bool)> = stack
        .netns
        .run(|| {
            let addrs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
            Ok(addrs
                .map(|a| {
                    let index =
                        nix::net::if_::if_nametoindex(a.interface_name.as_str()).unwrap_or(0);
                    let up = a.flags.contains(InterfaceFlags::IFF_UP)
                        && a.flags.contains(InterfaceFlags::IFF_RUNNING);
                    (
                        a.interface_name.clone(),
                        index,
                        a.address.and_then(|s| sockaddr_ip(&s)),
                        up,
                    )
                })
                .collect())
        })
        .map_err(|e| Failure::internal(format!("listing the interfaces: {e}")))?;
    let mut by_name: BTreeMap<(u32, String), rec::InterfaceRecord> = BTreeMap::new();
    let attached = stack.filter.as_ref().map(|f| &f.attached);
    for (name, index, addr, up) in rows {
        let r = by_name
            .entry((index, name.clone()))
            .or_insert_with(|| rec::InterfaceRecord {
                interface_name: name.clone(),
                interface_index: index,
                addresses: Vec::new(),
                security_class: 0,
                dvipa: false,
                link_up: up,
                filter_attached: attached.is_some_and(|a| a.contains(&name)),
            });
        if let Some(a) = addr
            && !r.addresses.contains(&a)
        {
            r.addresses.push(a);
        }
    }
    let records: Vec<rec::InterfaceRecord> = by_name.into_values().collect();
    Ok(rec::InterfaceList {
        total_available: u32::try_from(records.len()).unwrap_or(u32::MAX),
        records,
    })
}

/// The filter bits of the stack's NMI record.
pub fn stack_bits(stack: &Stack, r: &mut StackRecord) {
    let Some(f) = &stack.filter else {
        return;
    };
    r.policy_available = f.policy.is_some();
    if let Some(active) = f.active() {
        r.filter_set = match active {
            SetId::Default => rec::FilterSet::Default,
            SetId::Policy => rec::FilterSet::Policy,
        };
        if let Some(set) = f.set_of(active) {
            r.logging = set.log_enabled;
            r.log_implicit = set.log_implicit;
            let attached = !f.attached.is_empty();
            r.ip_security = attached && set.rules.iter().any(|x| x.family == Family::V4);
            r.ipv6_security = attached && set.rules.iter().any(|x| x.family == Family::V6);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: &str, b: &str) -> TrafficSelector {
        TrafficSelector::Range {
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: a.parse().unwrap(),
            end: b.parse().unwrap(),
        }
    }

    fn anchor(name: &str, action: &str) -> FilterRule {
        let mut r = FilterRule::permit_all(name, Family::V4);
        r.src = vec![AddrRange::prefix("10.1.0.0".parse().unwrap(), 16).unwrap()];
        r.dst = vec![AddrRange::prefix("10.2.0.0".parse().unwrap(), 24).unwrap()];
        r.action = FilterAction::IpSec {
            vpn_action: action.into(),
            manual: false,
        };
        r
    }

    #[test]
    fn dynamic_filters_are_the_anchor_narrowed_to_the_selectors() {
        let mut tcp = anchor("web~2", "act");
        tcp.protocol = Some(6);
        tcp.l4 = L4Match::Ports {
            src: PortRange::ANY,
            dst: PortRange::single(443),
        };
        let set = FilterSet {
            rules: vec![
                FilterRule::permit_all("ike", Family::V4),
                anchor("web~1", "act"),
                tcp,
                anchor("other", "elsewhere"),
            ],
            log_enabled: false,
            log_implicit: false,
        };
        let local = [range("10.1.2.0", "10.1.2.255")];
        let remote = [range("10.2.0.0", "10.2.0.255")];
        let d = dynamic_filters(&set, "act", &local, &remote, 0x6b00_0007);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].anchor, "web~1");
        assert_eq!(
            d[0].rule.src,
            vec![AddrRange::prefix("10.1.2.0".parse().unwrap(), 24).unwrap()]
        );
        assert_eq!(d[0].rule.protocol, None);
        assert_eq!(
            d[0].sa,
            SaMatch {
                reqid: 0x6b00_0007,
                spi: None
            }
        );
        assert_eq!(d[1].anchor, "web~2");
        assert_eq!(d[1].rule.protocol, Some(6));
        assert_eq!(
            d[1].rule.l4,
            L4Match::Ports {
                src: PortRange::ANY,
                dst: PortRange::single(443)
            }
        );
        // Selectors outside the anchor: no filter.
        let far = [range("192.168.0.0", "192.168.0.255")];
        assert!(dynamic_filters(&set, "act", &far, &remote, 1).is_empty());
        // A UDP-only SA cannot use the TCP anchor.
        let udp = [TrafficSelector::Range {
            ip_protocol: 17,
            start_port: 0,
            end_port: 65535,
            start: "10.1.2.1".parse().unwrap(),
            end: "10.1.2.1".parse().unwrap(),
        }];
        let d = dynamic_filters(&set, "act", &udp, &remote, 1);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].rule.protocol, Some(17));
        assert_eq!(d[0].anchor, "web~1");
    }

    #[test]
    fn address_and_port_fields() {
        let p = AddrRange::prefix("10.1.0.0".parse().unwrap(), 24).unwrap();
        assert_eq!(
            addr_fields(&[p]),
            (Some("10.1.0.0".parse().unwrap()), Some(24), None)
        );
        let h = AddrRange::host("10.1.0.5".parse().unwrap());
        assert_eq!(
            addr_fields(&[h]),
            (Some("10.1.0.5".parse().unwrap()), None, None)
        );
        let r = AddrRange::range("10.1.0.5".parse().unwrap(), "10.1.0.9".parse().unwrap()).unwrap();
        assert_eq!(
            addr_fields(&[r]),
            (
                Some("10.1.0.5".parse().unwrap()),
                None,
                Some("10.1.0.9".parse().unwrap())
            )
        );
        assert_eq!(addr_fields(&[]), (None, None, None));
        assert_eq!(port_fields(PortRange::ANY, PortRange::ANY), (None, None));
        assert_eq!(
            port_fields(PortRange::single(500), PortRange::ANY),
            (Some(500), None)
        );
        assert_eq!(
            port_fields(PortRange { lo: 1, hi: 9 }, PortRange::ANY),
            (Some(1), Some(9))
        );
    }
}
