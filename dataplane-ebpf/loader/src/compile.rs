//! Compiling a filter set into the eBPF program's lookup tables, and
//! classifying packets with those same tables in user space (the traffic
//! test, and the equivalence tests against [`crate::model`]).
//!
//! Order: the set's filters in configured order, with each anchor's dynamic
//! filters placed just before it. Each filter yields one entry per direction
//! it applies to (bidirectional filters are mirrored for inbound packets:
//! source and destination addresses and ports swapped). Entry *i* of a
//! direction's table is bit *i* of every bitmap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use gatekey_config::filter::{
    AddrRange, ConnectDir, Direction, Family, FilterAction, FilterRule, FilterSet, L4Match,
    LogMode, PortRange, Routing,
};
use gatekey_dataplane_common::{
    BITMAP_WORDS, Bitmap, DIR_IN, DIR_OUT, LPM_HEADER_BITS, LpmData, MAX_RULES, MISC_KEYS,
    PortIndex, RuleInfo, Table, TableHdr, action, addr_field, misc_key, rule_flags, table_flags,
};

use crate::Error;

/// A direction: which TC hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// Inbound (ingress).
    In,
    /// Outbound (egress).
    Out,
}

impl Dir {
    /// Both directions, inbound first.
    pub const BOTH: [Dir; 2] = [Dir::In, Dir::Out];

    /// The number the eBPF side uses.
    pub fn index(self) -> u32 {
        match self {
            Dir::In => DIR_IN,
            Dir::Out => DIR_OUT,
        }
    }

    /// From the eBPF side's number.
    pub fn from_index(i: u32) -> Self {
        if i == DIR_OUT { Dir::Out } else { Dir::In }
    }

    /// `Inbound` / `Outbound` as z/OS displays them.
    pub fn display_name(self) -> &'static str {
        match self {
            Dir::In => "Inbound",
            Dir::Out => "Outbound",
        }
    }
}

/// Which SA must have decapsulated a packet for an inbound dynamic filter to
/// accept it (`bpf_skb_get_xfrm_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaMatch {
    /// The SA's reqid (as installed by iked).
    pub reqid: u32,
    /// The SA's SPI (host byte order), if it must match too.
    pub spi: Option<u32>,
}

/// A per-SA filter placed just before its anchor (the IpFilterRule with an
/// IpSec action that it belongs to). Its rule's action must be IpSec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicFilter {
    /// Name of the anchor IpFilterRule.
    pub anchor: String,
    /// The traffic (addresses, protocol, ports, direction) and the name
    /// shown for the filter.
    pub rule: FilterRule,
    /// The SA that must protect inbound traffic.
    pub sa: SaMatch,
}

/// What kind of filter an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A configured filter.
    Generic,
    /// An IpSec filter that anchors dynamic filters.
    Anchor,
    /// A dynamic filter.
    Dynamic,
}

impl Kind {
    /// The eBPF-side code ([`gatekey_dataplane_common::rule_kind`]).
    pub fn code(self) -> u8 {
        use gatekey_dataplane_common::rule_kind;
        match self {
            Kind::Generic => rule_kind::GENERIC,
            Kind::Anchor => rule_kind::ANCHOR,
            Kind::Dynamic => rule_kind::DYNAMIC,
        }
    }
}

/// A filter in final order (dynamic filters before their anchors).
#[derive(Debug, Clone)]
pub struct Ordered<'a> {
    /// The filter.
    pub rule: &'a FilterRule,
    /// Its kind.
    pub kind: Kind,
    /// For dynamic filters: the SA.
    pub sa: Option<SaMatch>,
}

/// The filters of a set in evaluation order: the set's rules with each
/// anchor's dynamic filters just before it. Fails if a dynamic filter names
/// no anchor of the set or is not an IpSec filter.
pub fn order<'a>(
    set: &'a FilterSet,
    dynamic: &'a [DynamicFilter],
) -> Result<Vec<Ordered<'a>>, Error> {
    let anchors: BTreeSet<&str> = set
        .rules
        .iter()
        .filter(|r| matches!(r.action, FilterAction::IpSec { .. }))
        .map(|r| r.name.as_str())
        .collect();
    for d in dynamic {
        if !anchors.contains(d.anchor.as_str()) {
            return Err(Error::Compile(format!(
                "dynamic filter {} names anchor {}, which is not an IpSec filter of the policy",
                d.rule.name, d.anchor
            )));
        }
        if !matches!(d.rule.action, FilterAction::IpSec { .. }) {
            return Err(Error::Compile(format!(
                "dynamic filter {} must have an IpSec action",
                d.rule.name
            )));
        }
    }
    let mut out = Vec::new();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for r in &set.rules {
        let is_anchor = matches!(r.action, FilterAction::IpSec { .. });
        // A rule generates several filters (families, services) that share a
        // name: the dynamic filters go before the first of them.
        if is_anchor && placed.insert(r.name.as_str()) {
            for d in dynamic.iter().filter(|d| d.anchor == r.name) {
                out.push(Ordered {
                    rule: &d.rule,
                    kind: Kind::Dynamic,
                    sa: Some(d.sa),
                });
            }
        }
        out.push(Ordered {
            rule: r,
            kind: if is_anchor {
                Kind::Anchor
            } else {
                Kind::Generic
            },
            sa: None,
        });
    }
    Ok(out)
}

/// One filter as it applies to one direction: the packet's view (mirrored
/// for inbound bidirectional filters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Index into the ordered list.
    pub ordinal: usize,
    /// Filter name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Address family.
    pub family: Family,
    /// Packet source addresses (empty = any of the family).
    pub src: Vec<AddrRange>,
    /// Packet destination addresses.
    pub dst: Vec<AddrRange>,
    /// Protocol (None = all).
    pub protocol: Option<u8>,
    /// Source port / ICMP type / OSPF type range.
    pub sport: PortRange,
    /// Destination port / ICMP code range.
    pub dport: PortRange,
    /// No condition beyond the protocol (matches packets whose ports are
    /// unknown).
    pub l4_any: bool,
    /// Routing condition.
    pub routing: Routing,
    /// Only fragments.
    pub fragments_only: bool,
    /// Required interface security class (0 = any).
    pub secclass: u8,
    /// A TCP SYN (without ACK) in this direction does not match.
    pub forbid_syn: bool,
    /// The eBPF [`action`].
    pub action: u8,
    /// The eBPF [`rule_flags`].
    pub flags: u8,
    /// Required SA reqid.
    pub reqid: u32,
    /// Required SA SPI (network byte order in the table).
    pub spi: u32,
    /// Configured logging.
    pub log: LogMode,
}

impl Entry {
    /// Does the misc key (security class, routed, fragment, SYN) satisfy this
    /// entry?
    pub fn misc_ok(&self, secclass: u8, routed: bool, fragment: bool, syn: bool) -> bool {
        (self.secclass == 0 || self.secclass == secclass)
            && match self.routing {
                Routing::Local => !routed,
                Routing::Routed => routed,
                Routing::Either => true,
            }
            && (!self.fragments_only || fragment)
            && !(self.forbid_syn && syn)
    }

    /// A stable identity of the entry's content (for keeping counters when a
    /// set is replaced).
    pub fn identity(&self, dir: Dir) -> String {
        format!(
            "{dir:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{:?}|{}|{}|{}|{}|{}|{:?}",
            self.name,
            self.kind,
            self.family,
            self.src,
            self.dst,
            self.protocol,
            self.sport,
            self.dport,
            self.fragments_only,
            self.routing,
            self.secclass,
            self.forbid_syn,
            self.action,
            self.flags,
            self.reqid,
            self.log
        )
    }
}

/// The entries of `dir` in order.
pub fn entries(ordered: &[Ordered<'_>], dir: Dir) -> Vec<Entry> {
    let mut out = Vec::new();
    for (ordinal, o) in ordered.iter().enumerate() {
        let r = o.rule;
        let applies = match r.direction {
            Direction::Bidirectional => true,
            Direction::Inbound => dir == Dir::In,
            Direction::Outbound => dir == Dir::Out,
        };
        if !applies {
            continue;
        }
        let mirror = r.direction == Direction::Bidirectional && dir == Dir::In;
        let (src, dst) = if mirror {
            (r.dst.clone(), r.src.clone())
        } else {
            (r.src.clone(), r.dst.clone())
        };
        let (sport, dport) = match r.l4 {
            L4Match::Any => (PortRange::ANY, PortRange::ANY),
            L4Match::Ports { src, dst } => {
                if mirror {
                    (dst, src)
                } else {
                    (src, dst)
                }
            }
            L4Match::Icmp { types, codes } => (types, codes),
            L4Match::Ospf { types } => (types, PortRange::ANY),
        };
        let forbid_syn = matches!(
            (r.connect, dir),
            (Some(ConnectDir::Inbound), Dir::Out) | (Some(ConnectDir::Outbound), Dir::In)
        );
        let (act, mut flags, reqid, spi) = match (&r.action, o.sa) {
            (FilterAction::Permit, _) => (action::PERMIT, 0, 0, 0),
            (FilterAction::Deny, _) => (action::DENY, 0, 0, 0),
            (FilterAction::IpSec { .. }, None) => (action::IPSEC, 0, 0, 0),
            (FilterAction::IpSec { .. }, Some(sa)) => {
                let mut f = rule_flags::CHECK_REQID;
                let spi = match sa.spi {
                    Some(s) => {
                        f |= rule_flags::CHECK_SPI;
                        s.to_be()
                    }
                    None => 0,
                };
                (action::IPSEC, f, sa.reqid, spi)
            }
        };
        let log = r.log;
        if log.logs(true) {
            flags |= rule_flags::LOG_PERMIT;
        }
        if log.logs(false) {
            flags |= rule_flags::LOG_DENY;
        }
        out.push(Entry {
            ordinal,
            name: r.name.clone(),
            kind: o.kind,
            family: r.family,
            src,
            dst,
            protocol: r.protocol,
            sport,
            dport,
            l4_any: r.l4.is_any(),
            routing: r.routing,
            fragments_only: r.fragments_only,
            secclass: r.secclass,
            forbid_syn,
            action: act,
            flags,
            reqid,
            spi,
            log,
        });
    }
    out
}

/// A set of filter positions.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Bits([u64; BITMAP_WORDS]);

impl std::fmt::Debug for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Bits {
    const EMPTY: Self = Self([0; BITMAP_WORDS]);

    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1u64 << (i % 64);
        }
    }

    fn clear(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1u64 << (i % 64));
        }
    }

    fn or(&mut self, o: &Bits) {
        for (a, b) in self.0.iter_mut().zip(o.0.iter()) {
            *a |= *b;
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            (0..64)
                .filter(move |b| word & (1u64 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }

    fn to_bitmap(&self) -> Bitmap {
        let mut summary = 0u64;
        for (w, &word) in self.0.iter().enumerate() {
            if word != 0 {
                summary |= 1u64 << w;
            }
        }
        Bitmap {
            summary,
            words: self.0,
        }
    }
}

/// An address-trie entry: `prefix` of `family` for `field` in `dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LpmEntry {
    /// Direction.
    pub dir: Dir,
    /// [`addr_field::SRC`] or [`addr_field::DST`].
    pub field: u8,
    /// 4 or 6.
    pub family: u8,
    /// Prefix length (bits of the address).
    pub len: u8,
    /// The address, host bits clear (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// Class (relative to the slot's class base).
    pub class: u32,
}

impl LpmEntry {
    /// The trie key data for `slot`, and its prefix length.
    pub fn key(&self, slot: u32) -> (u32, LpmData) {
        let mut data: LpmData = [0; 20];
        data[0] = u8::try_from(slot).unwrap_or(u8::MAX);
        data[1] = u8::try_from(self.dir.index()).unwrap_or(0);
        data[2] = self.field;
        data[3] = self.family;
        data[4..].copy_from_slice(&self.addr);
        (LPM_HEADER_BITS + u32::from(self.len), data)
    }
}

/// A compiled filter set: both directions' tables, the class bitmaps and
/// the address-trie entries. Class ids are relative (0-based); the
/// installer adds the slot's class base.
#[derive(Debug)]
pub struct Compiled {
    /// Inbound then outbound table (counter ids not yet assigned).
    pub tables: [Box<Table>; 2],
    /// The entries of each table, in order.
    pub entries: [Vec<Entry>; 2],
    /// Class bitmaps, by relative class id.
    pub bitmaps: Vec<Bitmap>,
    /// Address-trie entries.
    pub lpm: Vec<LpmEntry>,
    /// For user-space lookups: (dir, field, family, len, addr) → class.
    lpm_index: HashMap<(Dir, u8, u8, u8, [u8; 16]), u32>,
}

/// Compile `set` (with `dynamic` filters) for the filter set number
/// `set_no`. `max_classes` bounds the number of distinct bitmaps (the slot
/// size of the bitmap map).
pub fn compile(
    set_no: u32,
    set: &FilterSet,
    dynamic: &[DynamicFilter],
    max_classes: u32,
) -> Result<Compiled, Error> {
    let ordered = order(set, dynamic)?;
    let mut classes = ClassPool::default();
    let mut lpm = Vec::new();
    let mut tables = Vec::new();
    let mut all_entries = Vec::new();
    for dir in Dir::BOTH {
        let entries = entries(&ordered, dir);
        if entries.len() > MAX_RULES {
            return Err(Error::Compile(format!(
                "{} {} filters; at most {MAX_RULES} per direction are supported",
                entries.len(),
                dir.display_name().to_lowercase()
            )));
        }
        let mut table = new_table();
        table.hdr = TableHdr {
            n_rules: u32::try_from(entries.len()).unwrap_or(u32::MAX),
            flags: table_flags::VALID,
            set: set_no,
            generation: 0,
        };
        if set.log_enabled {
            table.hdr.flags |= table_flags::LOG_ENABLED;
        }
        if set.log_implicit {
            table.hdr.flags |= table_flags::LOG_IMPLICIT;
        }
        if entries.iter().any(|e| e.routing != Routing::Either) {
            table.hdr.flags |= table_flags::NEED_ROUTE;
        }
        if entries.iter().any(|e| e.secclass != 0) {
            table.hdr.flags |= table_flags::NEED_SECCLASS;
        }
        for (i, e) in entries.iter().enumerate() {
            if let Some(r) = table.rules.get_mut(i) {
                *r = RuleInfo {
                    counter: 0,
                    generation: 0,
                    reqid: e.reqid,
                    spi: e.spi,
                    action: e.action,
                    flags: e.flags,
                    _pad: [0; 2],
                };
            }
        }
        // Addresses.
        for (field, pick) in [
            (
                addr_field::SRC,
                (|e: &Entry| &e.src) as fn(&Entry) -> &Vec<AddrRange>,
            ),
            (addr_field::DST, |e: &Entry| &e.dst),
        ] {
            for family in [Family::V4, Family::V6] {
                addr_index(&entries, dir, field, family, pick, &mut classes, &mut lpm);
            }
        }
        // Protocols.
        for p in 0..=255u8 {
            let mut b = Bits::EMPTY;
            for (i, e) in entries.iter().enumerate() {
                if e.protocol.is_none_or(|q| q == p) {
                    b.set(i);
                }
            }
            if let Some(c) = table.proto_class.get_mut(usize::from(p)) {
                *c = classes.id(b);
            }
        }
        // Ports.
        port_index(&entries, |e| e.sport, &mut classes, &mut table.sport);
        port_index(&entries, |e| e.dport, &mut classes, &mut table.dport);
        // Misc.
        for sc in 0..=255u8 {
            for bits in 0..8u32 {
                let (routed, frag, syn) = (bits & 4 != 0, bits & 2 != 0, bits & 1 != 0);
                let mut b = Bits::EMPTY;
                for (i, e) in entries.iter().enumerate() {
                    if e.misc_ok(sc, routed, frag, syn) {
                        b.set(i);
                    }
                }
                let k = misc_key(sc, routed, frag, syn) as usize;
                if let Some(slot) = table.misc_class.get_mut(k % MISC_KEYS) {
                    *slot = classes.id(b);
                }
            }
        }
        tables.push(table);
        all_entries.push(entries);
    }
    if classes.len() > max_classes as usize {
        return Err(Error::Compile(format!(
            "the filter set needs {} distinct lookup classes; this stack's maps hold {max_classes} \
             (reload with a larger --classes, or simplify the rules)",
            classes.len()
        )));
    }
    let lpm_index = lpm
        .iter()
        .map(|l: &LpmEntry| ((l.dir, l.field, l.family, l.len, l.addr), l.class))
        .collect();
    let [t_in, t_out]: [Box<Table>; 2] = tables
        .try_into()
        .map_err(|_| Error::Compile("internal: expected two tables".into()))?;
    let [e_in, e_out]: [Vec<Entry>; 2] = all_entries
        .try_into()
        .map_err(|_| Error::Compile("internal: expected two entry lists".into()))?;
    Ok(Compiled {
        tables: [t_in, t_out],
        entries: [e_in, e_out],
        bitmaps: classes.into_bitmaps(),
        lpm,
        lpm_index,
    })
}

fn new_table() -> Box<Table> {
    let mut t = Table::boxed_zeroed();
    t.proto_class.fill(u32::MAX);
    t.misc_class.fill(u32::MAX);
    for ix in [&mut t.sport, &mut t.dport] {
        ix.unknown_class = u32::MAX;
        ix.classes.fill(u32::MAX);
    }
    t
}

/// Deduplicated bitmaps.
#[derive(Default)]
struct ClassPool {
    ids: HashMap<Bits, u32>,
    list: Vec<Bits>,
}

impl ClassPool {
    fn id(&mut self, b: Bits) -> u32 {
        if let Some(&id) = self.ids.get(&b) {
            return id;
        }
        let id = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(b.clone());
        self.ids.insert(b, id);
        id
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn into_bitmaps(self) -> Vec<Bitmap> {
        self.list.iter().map(Bits::to_bitmap).collect()
    }
}

fn addr_bits(a: IpAddr) -> (u8, u128, u8) {
    match a {
        IpAddr::V4(v4) => (4, u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (6, u128::from(v6), 128),
    }
}

/// The prefixes covering exactly `r` (a range of addresses `width` bits
/// wide), as (address, length).
pub fn range_to_prefixes(lo: u128, hi: u128, width: u8) -> Vec<(u128, u8)> {
    let mut out = Vec::new();
    let max: u128 = if width >= 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let (mut lo, hi) = (lo & max, hi & max);
    loop {
        if lo > hi {
            break;
        }
        // The largest aligned block at `lo` that does not pass `hi`.
        let mut size_bits = if lo == 0 {
            u32::from(width)
        } else {
            lo.trailing_zeros().min(u32::from(width))
        };
        loop {
            let block_last = if size_bits >= 128 {
                u128::MAX
            } else {
                lo.saturating_add((1u128 << size_bits) - 1)
            };
            if block_last <= hi {
                break;
            }
            size_bits -= 1;
        }
        let len = u8::try_from(u32::from(width) - size_bits).unwrap_or(0);
        out.push((lo, len));
        let step = if size_bits >= 128 {
            return out;
        } else {
            1u128 << size_bits
        };
        match lo.checked_add(step) {
            Some(n) if n <= max => lo = n,
            _ => break,
        }
    }
    out
}

fn to_bytes(family: u8, v: u128) -> [u8; 16] {
    let mut out = [0u8; 16];
    if family == 4 {
        let b = u32::try_from(v).unwrap_or(0).to_be_bytes();
        out[..4].copy_from_slice(&b);
    } else {
        out = v.to_be_bytes();
    }
    out
}

fn mask(v: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let host = u32::from(width - len.min(width));
    let m = if host >= 128 {
        0
    } else {
        !((1u128 << host) - 1)
    };
    v & m
        & if width >= 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        }
}

fn addr_index(
    entries: &[Entry],
    dir: Dir,
    field: u8,
    family: Family,
    pick: fn(&Entry) -> &Vec<AddrRange>,
    classes: &mut ClassPool,
    lpm: &mut Vec<LpmEntry>,
) {
    let (fam, width) = match family {
        Family::V4 => (4u8, 32u8),
        Family::V6 => (6u8, 128u8),
    };
    // Exact prefix → filters that list it.
    let mut exact: BTreeMap<(u8, u128), Bits> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.family != family {
            continue;
        }
        let ranges = pick(e);
        if ranges.is_empty() {
            exact.entry((0, 0)).or_insert(Bits::EMPTY).set(i);
            continue;
        }
        for r in ranges {
            let (_, lo, _) = addr_bits(r.lo);
            let (_, hi, _) = addr_bits(r.hi);
            for (p, len) in range_to_prefixes(lo, hi, width) {
                exact.entry((len, p)).or_insert(Bits::EMPTY).set(i);
            }
        }
    }
    // Each prefix's class: the filters of it and of every shorter prefix
    // containing it (longest-prefix match then yields all filters that
    // contain the address).
    let keys: Vec<(u8, u128)> = exact.keys().copied().collect();
    for &(len, p) in &keys {
        let mut b = Bits::EMPTY;
        for l in 0..=len {
            if let Some(x) = exact.get(&(l, mask(p, l, width))) {
                b.or(x);
            }
        }
        let class = classes.id(b);
        lpm.push(LpmEntry {
            dir,
            field,
            family: fam,
            len,
            addr: to_bytes(fam, p),
            class,
        });
    }
}

fn port_index(
    entries: &[Entry],
    pick: fn(&Entry) -> PortRange,
    classes: &mut ClassPool,
    ix: &mut PortIndex,
) {
    // Sweep over the interval starts, adding a filter at its range's start
    // and removing it after its end.
    let mut events: BTreeMap<u32, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    events.entry(0).or_default();
    for (i, e) in entries.iter().enumerate() {
        let r = pick(e);
        events.entry(u32::from(r.lo)).or_default().0.push(i);
        events.entry(u32::from(r.hi) + 1).or_default().1.push(i);
    }
    let mut bounds: Vec<u16> = Vec::new();
    let mut ids: Vec<u32> = Vec::new();
    let mut cur = Bits::EMPTY;
    for (&s, (adds, removes)) in &events {
        if s > 65535 {
            break;
        }
        for &i in removes {
            cur.clear(i);
        }
        for &i in adds {
            cur.set(i);
        }
        let id = classes.id(cur.clone());
        if ids.last() == Some(&id) {
            continue; // same class as the previous interval: merge
        }
        bounds.push(u16::try_from(s).unwrap_or(0));
        ids.push(id);
    }
    let mut unknown = Bits::EMPTY;
    for (i, e) in entries.iter().enumerate() {
        if e.l4_any {
            unknown.set(i);
        }
    }
    ix.unknown_class = classes.id(unknown);
    // Fill every value of each interval with its class.
    for (k, (&start, &id)) in bounds.iter().zip(ids.iter()).enumerate() {
        let end = bounds.get(k + 1).map_or(65536, |&n| usize::from(n));
        if let Some(run) = ix.classes.get_mut(usize::from(start)..end) {
            run.fill(id);
        }
    }
}

// ---------------------------------------------------------------------------
// User-space classification with the compiled tables

/// A packet (or a traffic-test description of one) as the classifier sees
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketDesc {
    /// Inbound or outbound.
    pub dir: Dir,
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family).
    pub dst: IpAddr,
    /// IP protocol (upper layer, after IPv6 extension headers).
    pub protocol: u8,
    /// Source port, ICMP type or OSPF type.
    pub sport: u16,
    /// Destination port or ICMP code.
    pub dport: u16,
    /// False for non-first fragments (and truncated headers).
    pub ports_known: bool,
    /// Any fragment.
    pub fragment: bool,
    /// A TCP SYN without ACK.
    pub syn: bool,
    /// Forwarded: inbound, not to a local address; outbound, not from a
    /// local address (so the ESP this host builds around forwarded traffic
    /// is local).
    pub routed: bool,
    /// Security class of the interface.
    pub secclass: u8,
    /// IP TTL / hop limit.
    pub hop_limit: u8,
    /// The SA that decapsulated the packet (inbound), if any: (reqid, SPI).
    pub sa: Option<(u32, u32)>,
}

impl PacketDesc {
    /// A simple unfragmented local packet.
    pub fn new(dir: Dir, src: IpAddr, dst: IpAddr, protocol: u8, sport: u16, dport: u16) -> Self {
        Self {
            dir,
            src,
            dst,
            protocol,
            sport,
            dport,
            ports_known: true,
            fragment: false,
            syn: false,
            routed: false,
            secclass: 0,
            hop_limit: 64,
            sa: None,
        }
    }

    /// Is this packet a stack-required ICMP/ICMPv6 message, permitted before
    /// the filters (IPv6 neighbour discovery with hop limit 255, MLD with hop
    /// limit 1, ICMPv6 Packet Too Big, ICMP Fragmentation Needed)?
    pub fn is_icmp_exception(&self) -> bool {
        if !self.ports_known || self.fragment {
            return false;
        }
        match (self.src.is_ipv6(), self.protocol) {
            (true, 58) => match self.sport {
                133..=137 => self.hop_limit == 255,
                130..=132 | 143 => self.hop_limit == 1,
                2 => true,
                _ => false,
            },
            (false, 1) => self.sport == 3 && self.dport == 4,
            _ => false,
        }
    }

    /// Is this the protected form of IPsec traffic (ESP, AH, ESP-in-UDP
    /// 4500), which IpSec filters pass?
    pub fn is_protected_form(&self) -> bool {
        self.protocol == 50
            || self.protocol == 51
            || (self.protocol == 17
                && self.ports_known
                && (self.sport == 4500 || self.dport == 4500))
    }
}

/// Why a packet was decided the way it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decider {
    /// The entry at this position of the direction's table.
    Entry(usize),
    /// No entry matched (`SYSDEFAULTDENYRULE`).
    ImplicitDeny,
    /// A stack-required ICMP/ICMPv6 message.
    IcmpException,
}

/// The outcome of classifying a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the packet passes.
    pub permitted: bool,
    /// What decided.
    pub decider: Decider,
    /// Every matching entry position, in order (for the traffic test).
    pub matches: Vec<usize>,
    /// An IpSec filter matched but the SA check failed.
    pub sa_mismatch: bool,
}

/// Apply an entry's action to a packet (shared by the compiled classifier
/// and the reference model).
pub fn apply_action(act: u8, flags: u8, reqid: u32, spi_be: u32, pkt: &PacketDesc) -> (bool, bool) {
    match act {
        action::PERMIT => (true, false),
        action::IPSEC => {
            if pkt.is_protected_form() {
                return (true, false);
            }
            if pkt.dir != Dir::In || flags & rule_flags::CHECK_REQID == 0 {
                return (false, true);
            }
            let ok = pkt.sa.is_some_and(|(r, s)| {
                r == reqid && (flags & rule_flags::CHECK_SPI == 0 || s.to_be() == spi_be)
            });
            (ok, !ok)
        }
        _ => (false, false),
    }
}

impl Compiled {
    /// Classify `pkt` with these tables exactly as the eBPF program does.
    pub fn classify(&self, pkt: &PacketDesc) -> Decision {
        self.classify_with(pkt, false, false)
    }

    /// Classify with the source and/or destination port as a wildcard (the
    /// traffic test's port 0): every filter's port condition is then met.
    pub fn classify_with(&self, pkt: &PacketDesc, any_sport: bool, any_dport: bool) -> Decision {
        if pkt.is_icmp_exception() {
            return Decision {
                permitted: true,
                decider: Decider::IcmpException,
                matches: Vec::new(),
                sa_mismatch: false,
            };
        }
        let d = usize::from(pkt.dir == Dir::Out);
        let deny = Decision {
            permitted: false,
            decider: Decider::ImplicitDeny,
            matches: Vec::new(),
            sa_mismatch: false,
        };
        let (Some(table), Some(entries)) = (self.tables.get(d), self.entries.get(d)) else {
            return deny;
        };
        let (Some(c_src), Some(c_dst)) = (
            self.lookup_addr(pkt.dir, addr_field::SRC, pkt.src),
            self.lookup_addr(pkt.dir, addr_field::DST, pkt.dst),
        ) else {
            return deny;
        };
        let class_of = |a: &[u32], i: u16| a.get(usize::from(i)).copied().unwrap_or(u32::MAX);
        let c_proto = class_of(&table.proto_class, u16::from(pkt.protocol));
        let (c_sport, c_dport) = if pkt.ports_known {
            (
                class_of(&table.sport.classes, pkt.sport),
                class_of(&table.dport.classes, pkt.dport),
            )
        } else {
            (table.sport.unknown_class, table.dport.unknown_class)
        };
        let misc = misc_key(pkt.secclass, pkt.routed, pkt.fragment, pkt.syn) as usize;
        let c_misc = table.misc_class.get(misc).copied().unwrap_or(u32::MAX);
        let all = Bitmap {
            summary: u64::MAX,
            words: [u64::MAX; BITMAP_WORDS],
        };
        let pick = |c: u32, wildcard: bool| -> Option<&Bitmap> {
            if wildcard {
                Some(&all)
            } else {
                self.bitmaps.get(c as usize)
            }
        };
        let maps: Vec<&Bitmap> = [
            pick(c_src, false),
            pick(c_dst, false),
            pick(c_proto, false),
            pick(c_sport, any_sport),
            pick(c_dport, any_dport),
            pick(c_misc, false),
        ]
        .into_iter()
        .flatten()
        .collect();
        if maps.len() != 6 {
            return deny;
        }
        let mut matches = Vec::new();
        for w in 0..BITMAP_WORDS {
            let mut word = u64::MAX;
            for m in &maps {
                word &= m.words.get(w).copied().unwrap_or(0);
            }
            for b in 0..64 {
                if word & (1u64 << b) != 0 {
                    matches.push(w * 64 + b);
                }
            }
        }
        let Some(&first) = matches.first() else {
            return deny;
        };
        let Some(e) = entries.get(first) else {
            return deny;
        };
        let (permitted, sa_mismatch) = apply_action(e.action, e.flags, e.reqid, e.spi, pkt);
        Decision {
            permitted,
            decider: Decider::Entry(first),
            matches,
            sa_mismatch,
        }
    }

    fn lookup_addr(&self, dir: Dir, field: u8, a: IpAddr) -> Option<u32> {
        let (fam, v, width) = addr_bits(a);
        (0..=width).rev().find_map(|len| {
            self.lpm_index
                .get(&(dir, field, fam, len, to_bytes(fam, mask(v, len, width))))
                .copied()
        })
    }

    /// The number of distinct classes.
    pub fn class_count(&self) -> usize {
        self.bitmaps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_minimal_prefixes() {
        assert_eq!(range_to_prefixes(0, u128::from(u32::MAX), 32), vec![(0, 0)]);
        assert_eq!(range_to_prefixes(10, 10, 32), vec![(10, 32)]);
        // 1..=6 = 1/32, 2/31, 4/31, 6/32
        assert_eq!(
            range_to_prefixes(1, 6, 32),
            vec![(1, 32), (2, 31), (4, 31), (6, 32)]
        );
        assert_eq!(range_to_prefixes(0, u128::MAX, 128), vec![(0, 0)]);
        let all: Vec<_> = range_to_prefixes(u128::MAX - 1, u128::MAX, 128);
        assert_eq!(all, vec![(u128::MAX - 1, 127)]);
        // Exhaustive check on a small width.
        for lo in 0..64u128 {
            for hi in lo..64u128 {
                let ps = range_to_prefixes(lo, hi, 6);
                let mut covered = [false; 64];
                for (p, len) in ps {
                    let size = 1u128 << (6 - len);
                    assert_eq!(p % size, 0);
                    for x in p..p + size {
                        assert!(!covered[x as usize], "overlap");
                        covered[x as usize] = true;
                    }
                }
                for (x, c) in covered.iter().enumerate() {
                    assert_eq!(*c, (lo..=hi).contains(&(x as u128)), "{lo}..={hi} at {x}");
                }
            }
        }
    }
}
