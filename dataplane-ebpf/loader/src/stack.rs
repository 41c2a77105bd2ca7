//! [`StackFilter`]: the API iked (and the `gatekey-filter` command) use for
//! one stack — load the default and policy sets, switch between them with
//! the marker file, add and remove dynamic filters per child SA, read
//! counters, and run the traffic test.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use gatekey_config::filter::{FilterAction, FilterSet};

use crate::Error;
use crate::compile::{Compiled, Decider, Dir, DynamicFilter, Entry, Kind, PacketDesc, compile};
use crate::dataplane::{Dataplane, InstallReport, Options, RuleCounter, SetId};
use crate::marker;
use crate::netns::Stack;

/// Identifies a dynamic filter added with [`StackFilter::add_dynamic`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DynamicId(pub u64);

/// A traffic-test question (`ipsec -t src dst proto sport dport dir
/// secclass`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficQuery {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol number.
    pub protocol: u8,
    /// Source port (ICMP type); `None` = any (z/OS: 0).
    pub sport: Option<u16>,
    /// Destination port (ICMP code); `None` = any.
    pub dport: Option<u16>,
    /// Direction.
    pub dir: Dir,
    /// Interface security class (0 = none).
    pub secclass: u8,
    /// Routed rather than local traffic.
    pub routed: bool,
}

/// One filter that matches a traffic-test question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestMatch {
    /// Filter name.
    pub name: String,
    /// Position in the direction's table.
    pub position: usize,
    /// Generic, anchor or dynamic.
    pub kind: Kind,
    /// `Permit`, `Deny` or `IpSec`.
    pub action: &'static str,
}

/// The traffic test's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficTest {
    /// The set evaluated.
    pub set: SetId,
    /// Every matching filter, in order.
    pub matches: Vec<TestMatch>,
    /// Whether the first match (or the implicit deny) lets the packet pass
    /// (for IpSec filters: assuming it is protected by the right SA).
    pub permitted: bool,
    /// No filter matched: `SYSDEFAULTDENYRULE` decides.
    pub implicit_deny: bool,
    /// The packet is a stack-required ICMP message, permitted before the
    /// filters.
    pub icmp_exception: bool,
}

/// The test's answer from compiled tables (shared by [`StackFilter`] and the
/// one-shot command).
pub fn traffic_test(set: SetId, compiled: &Compiled, q: &TrafficQuery) -> TrafficTest {
    let pkt = PacketDesc {
        dir: q.dir,
        src: q.src,
        dst: q.dst,
        protocol: q.protocol,
        sport: q.sport.unwrap_or(0),
        dport: q.dport.unwrap_or(0),
        ports_known: true,
        fragment: false,
        syn: false,
        routed: q.routed,
        secclass: q.secclass,
        hop_limit: 64,
        sa: None,
    };
    let d = compiled.classify_with(&pkt, q.sport.is_none(), q.dport.is_none());
    let entries: &[Entry] = compiled
        .entries
        .get(usize::from(q.dir == Dir::Out))
        .map_or(&[], Vec::as_slice);
    let matches: Vec<TestMatch> = d
        .matches
        .iter()
        .filter_map(|&i| entries.get(i).map(|e| (i, e)))
        .map(|(i, e)| TestMatch {
            name: e.name.clone(),
            position: i,
            kind: e.kind,
            action: match e.action {
                gatekey_dataplane_common::action::PERMIT => "Permit",
                gatekey_dataplane_common::action::DENY => "Deny",
                _ => "IpSec",
            },
        })
        .collect();
    let permitted = match d.decider {
        Decider::IcmpException => true,
        Decider::ImplicitDeny => false,
        Decider::Entry(_) => matches.first().is_some_and(|m| m.action != "Deny"),
    };
    TrafficTest {
        set,
        matches,
        permitted,
        implicit_deny: d.decider == Decider::ImplicitDeny,
        icmp_exception: d.decider == Decider::IcmpException,
    }
}

/// One stack's filter: both sets, the dynamic filters, the marker file.
///
/// The kernel state (pinned maps, links) outlives this value; the
/// in-memory copies of the sets (for recompiling with dynamic filters and
/// for the traffic test) do not. After a restart, load the sets again:
/// replacing a set keeps the counters of unchanged filters.
#[derive(Debug)]
pub struct StackFilter {
    dp: Dataplane,
    marker: PathBuf,
    default: Option<(FilterSet, Compiled)>,
    policy: Option<(FilterSet, Compiled)>,
    dynamic: BTreeMap<DynamicId, DynamicFilter>,
    next_id: u64,
}

impl StackFilter {
    /// Open the stack's pinned filter (creating the maps if needed) with the
    /// marker under [`marker::MARKER_ROOT`].
    pub fn open(stack: &Stack, opts: &Options) -> Result<Self, Error> {
        let dp = Dataplane::open(stack, opts)?;
        Ok(Self::with_dataplane(dp, Path::new(marker::MARKER_ROOT)))
    }

    /// Wrap an opened dataplane; the marker lives under `marker_root`.
    pub fn with_dataplane(dp: Dataplane, marker_root: &Path) -> Self {
        let marker = marker::marker_path(marker_root, dp.stack());
        Self {
            dp,
            marker,
            default: None,
            policy: None,
            dynamic: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// The dataplane (attach, stats, log reader).
    pub fn dataplane(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    /// The marker file path.
    pub fn marker_path(&self) -> &Path {
        &self.marker
    }

    /// Replace the default (profile) set. The active set does not change.
    pub fn load_default(&mut self, set: FilterSet) -> Result<InstallReport, Error> {
        let compiled = compile(
            SetId::Default.number(),
            &set,
            &[],
            self.dp.classes_per_slot(),
        )?;
        let report = self.dp.install(SetId::Default, &compiled)?;
        self.default = Some((set, compiled));
        Ok(report)
    }

    /// Replace the policy set (keeping the dynamic filters whose anchors
    /// still exist; the others are dropped and returned). Then make the
    /// policy set active unless the marker says `default` (an operator's
    /// `ipsec -f default` survives a policy reload and a restart).
    pub fn load_policy(
        &mut self,
        set: FilterSet,
    ) -> Result<(InstallReport, SetId, Vec<DynamicId>), Error> {
        let (report, active, dropped, _) = self.load_policy_with(set, Vec::new())?;
        Ok((report, active, dropped))
    }

    /// [`StackFilter::load_policy`] with `added` dynamic filters installed in
    /// the same atomic replacement; returns their ids last.
    pub fn load_policy_with(
        &mut self,
        set: FilterSet,
        added: Vec<DynamicFilter>,
    ) -> Result<(InstallReport, SetId, Vec<DynamicId>, Vec<DynamicId>), Error> {
        let anchors: std::collections::BTreeSet<&str> = set
            .rules
            .iter()
            .filter(|r| matches!(r.action, FilterAction::IpSec { .. }))
            .map(|r| r.name.as_str())
            .collect();
        let dropped: Vec<DynamicId> = self
            .dynamic
            .iter()
            .filter(|(_, d)| !anchors.contains(d.anchor.as_str()))
            .map(|(id, _)| *id)
            .collect();
        let mut dynamic = self.dynamic.clone();
        for id in &dropped {
            dynamic.remove(id);
        }
        let mut next_id = self.next_id;
        let mut new_ids = Vec::new();
        for d in added {
            let id = DynamicId(next_id);
            next_id += 1;
            dynamic.insert(id, d);
            new_ids.push(id);
        }
        let list: Vec<DynamicFilter> = dynamic.values().cloned().collect();
        let compiled = compile(
            SetId::Policy.number(),
            &set,
            &list,
            self.dp.classes_per_slot(),
        )?;
        let report = self.dp.install(SetId::Policy, &compiled)?;
        self.policy = Some((set, compiled));
        self.dynamic = dynamic;
        self.next_id = next_id;
        let active = if marker::read(&self.marker) == Some(SetId::Default) {
            SetId::Default
        } else {
            self.dp.switch(SetId::Policy)?;
            SetId::Policy
        };
        Ok((report, active, dropped, new_ids))
    }

    fn reinstall_policy(
        &mut self,
        dynamic: &BTreeMap<DynamicId, DynamicFilter>,
    ) -> Result<(), Error> {
        let Some((set, _)) = &self.policy else {
            return Err(Error::Compile(
                "no policy set is loaded: dynamic filters need their anchors".into(),
            ));
        };
        let list: Vec<DynamicFilter> = dynamic.values().cloned().collect();
        let compiled = compile(
            SetId::Policy.number(),
            set,
            &list,
            self.dp.classes_per_slot(),
        )?;
        self.dp.install(SetId::Policy, &compiled)?;
        if let Some(p) = &mut self.policy {
            p.1 = compiled;
        }
        Ok(())
    }

    /// Add a dynamic filter (a child SA came up): the policy set is
    /// recompiled with it just before its anchor and replaced atomically.
    pub fn add_dynamic(&mut self, f: DynamicFilter) -> Result<DynamicId, Error> {
        let id = DynamicId(self.next_id);
        let mut next = self.dynamic.clone();
        next.insert(id, f);
        self.reinstall_policy(&next)?;
        self.dynamic = next;
        self.next_id += 1;
        Ok(id)
    }

    /// Remove a dynamic filter (its child SA went away).
    pub fn remove_dynamic(&mut self, id: DynamicId) -> Result<bool, Error> {
        if !self.dynamic.contains_key(&id) {
            return Ok(false);
        }
        let mut next = self.dynamic.clone();
        next.remove(&id);
        self.reinstall_policy(&next)?;
        self.dynamic = next;
        Ok(true)
    }

    /// The dynamic filters.
    pub fn dynamic_filters(&self) -> &BTreeMap<DynamicId, DynamicFilter> {
        &self.dynamic
    }

    /// Make `set` active and record it in the marker file (`ipsec -f
    /// default` / `-f reload`). Switching to a set that was never loaded is
    /// refused (it would deny everything).
    pub fn switch(&mut self, set: SetId) -> Result<(), Error> {
        if !self.dp.is_loaded(set)? {
            return Err(Error::NotLoaded { set: set.name() });
        }
        marker::write(&self.marker, set)?;
        self.dp.switch(set)
    }

    /// The active set.
    pub fn active(&self) -> Result<SetId, Error> {
        self.dp.active_set()
    }

    /// Every counter (filters of both sets, implicit denies, exceptions).
    pub fn counters(&self) -> Result<Vec<RuleCounter>, Error> {
        self.dp.counters()
    }

    /// The traffic test against `set` (default: the active one), with the
    /// same compiled tables the kernel uses.
    pub fn traffic_test(&self, set: Option<SetId>, q: &TrafficQuery) -> Result<TrafficTest, Error> {
        let set = match set {
            Some(s) => s,
            None => self.active()?,
        };
        let compiled = match set {
            SetId::Default => self.default.as_ref(),
            SetId::Policy => self.policy.as_ref(),
        }
        .map(|(_, c)| c)
        .ok_or(Error::NotLoaded { set: set.name() })?;
        Ok(traffic_test(set, compiled, q))
    }
}
