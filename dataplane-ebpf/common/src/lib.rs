//! Types shared between gatekey's eBPF filter (`gatekey-ebpf`, built for the
//! BPF target) and its user-space loader (`gatekey-dataplane`): map names,
//! `#[repr(C)]` map keys and values, and the constants both sides must agree
//! on.
//!
//! `#![no_std]`, no dependencies; with the `user` feature it implements
//! `aya::Pod` for the map types. Must not depend on any other workspace crate.
//!
//! # How classification works
//!
//! A *table* holds the filters of one filter set for one direction, in
//! configured order (bit *i* = filter *i*). For each packet field (source
//! address, destination address, protocol, source port, destination port,
//! and a "misc" key made of security class, routing, fragment and TCP-SYN
//! bits) one lookup yields a *class*; each class has a [`Bitmap`] of the
//! filters that accept that field value. The AND of the six bitmaps has a bit
//! set for every filter the packet matches; the lowest set bit is the first
//! match. Lookups are an LPM trie per address, a direct array for protocol and
//! misc and ports (all 65,536 port values are indexed), so the cost does not
//! depend on the number of filters (up to [`MAX_RULES`]).
//!
//! Filter sets live in *slots* (three: one per set plus a spare). Replacing a
//! set writes the spare slot and then flips one byte of [`MAP_CONTROL`]; the
//! program reads that byte once per packet, so no packet sees a half-built
//! set.
#![no_std]

#[cfg(feature = "user")]
extern crate alloc;

/// Filters per table (per set and direction). Also the bitmap width.
pub const MAX_RULES: usize = 4096;
/// 64-bit words in a bitmap.
pub const BITMAP_WORDS: usize = MAX_RULES / 64;
/// Table slots: one live slot per filter set plus a spare.
pub const SLOTS: u32 = 3;
/// Inbound (TC ingress).
pub const DIR_IN: u32 = 0;
/// Outbound (TC egress).
pub const DIR_OUT: u32 = 1;
/// Entries in [`MAP_TABLES`]: `slot * 2 + dir`.
pub const TABLE_ENTRIES: u32 = SLOTS * 2;
/// Keys of the misc index: `secclass << 3 | routed << 2 | fragment << 1 | syn`.
pub const MISC_KEYS: usize = 256 * 8;

/// Filter set numbers.
pub const SET_DEFAULT: u32 = 0;
/// The policy set (policy file plus dynamic filters).
pub const SET_POLICY: u32 = 1;

// ---------------------------------------------------------------------------
// Map names

/// `Array<u32>`, one entry: the control word (see [`ctl`]).
pub const MAP_CONTROL: &str = "GK_CONTROL";
/// `Array<Config>`, one entry.
pub const MAP_CONFIG: &str = "GK_CONFIG";
/// `Array<Table>`, [`TABLE_ENTRIES`] entries.
pub const MAP_TABLES: &str = "GK_TABLES";
/// `Array<Bitmap>`: the class bitmaps of every slot.
pub const MAP_BITMAPS: &str = "GK_BITMAPS";
/// `LpmTrie<LpmData, u32>`: address → class.
pub const MAP_ADDRS: &str = "GK_ADDRS";
/// `PerCpuArray<Counter>`: per-filter counters, by counter id.
pub const MAP_COUNTERS: &str = "GK_COUNTERS";
/// `HashMap<u32, RuleMeta>`: what each counter id belongs to.
pub const MAP_RULE_META: &str = "GK_RULE_META";
/// `PerCpuArray<u64>`: dataplane statistics ([`stat`]).
pub const MAP_STATS: &str = "GK_STATS";
/// `RingBuf` of [`LogEvent`]s.
pub const MAP_LOG: &str = "GK_LOG";
/// `PerCpuArray<TokenBucket>`, one entry: log rate limiting state.
pub const MAP_LOG_STATE: &str = "GK_LOG_STATE";
/// `LruHashMap<FragKey, FragVerdict>`: verdicts of first fragments.
pub const MAP_FRAGS: &str = "GK_FRAGS";
/// `HashMap<u32, IfInfo>`: per-interface data (security class), by ifindex.
pub const MAP_IFINFO: &str = "GK_IFINFO";

/// Every map, for pinning.
pub const ALL_MAPS: &[&str] = &[
    MAP_CONTROL,
    MAP_CONFIG,
    MAP_TABLES,
    MAP_BITMAPS,
    MAP_ADDRS,
    MAP_COUNTERS,
    MAP_RULE_META,
    MAP_STATS,
    MAP_LOG,
    MAP_LOG_STATE,
    MAP_FRAGS,
    MAP_IFINFO,
];

/// Program names: ingress/egress on interfaces with a 14-byte Ethernet
/// header, and on interfaces without a link-layer header (tun, ipip, …).
pub const PROG_IN_ETH: &str = "gatekey_in_eth";
/// Egress, Ethernet.
pub const PROG_OUT_ETH: &str = "gatekey_out_eth";
/// Ingress, no link-layer header.
pub const PROG_IN_L3: &str = "gatekey_in_l3";
/// Egress, no link-layer header.
pub const PROG_OUT_L3: &str = "gatekey_out_l3";

/// Layout version of the maps; a pinned set of maps with another version is
/// not reused.
pub const LAYOUT_VERSION: u32 = 1;

// ---------------------------------------------------------------------------
// Control word

/// The control word: all state lives in its low byte, so that even a
/// byte-wise copy by the kernel cannot tear it.
pub mod ctl {
    /// Bit 0: the active set (0 = default, 1 = policy).
    pub const ACTIVE_POLICY: u32 = 1;
    /// Bit 7: the word has been initialised by the loader.
    pub const INITIALIZED: u32 = 1 << 7;

    /// The slot of the default set (bits 1–2).
    pub const fn default_slot(c: u32) -> u32 {
        (c >> 1) & 3
    }

    /// The slot of the policy set (bits 3–4).
    pub const fn policy_slot(c: u32) -> u32 {
        (c >> 3) & 3
    }

    /// The active set (`SET_DEFAULT` or `SET_POLICY`).
    pub const fn active_set(c: u32) -> u32 {
        c & ACTIVE_POLICY
    }

    /// The slot of `set`.
    pub const fn slot_of(c: u32, set: u32) -> u32 {
        if set == super::SET_POLICY {
            policy_slot(c)
        } else {
            default_slot(c)
        }
    }

    /// The slot used by neither set.
    pub const fn spare_slot(c: u32) -> u32 {
        let (d, p) = (default_slot(c), policy_slot(c));
        let mut s = 0;
        while s == d || s == p {
            s += 1;
        }
        s
    }

    /// A control word.
    pub const fn make(active_set: u32, default_slot: u32, policy_slot: u32) -> u32 {
        INITIALIZED | (active_set & 1) | ((default_slot & 3) << 1) | ((policy_slot & 3) << 3)
    }
}

// ---------------------------------------------------------------------------
// Tables

/// Table flags ([`TableHdr::flags`]).
pub mod table_flags {
    /// The table has been written (an unwritten table denies everything).
    pub const VALID: u32 = 1;
    /// Some inbound filter depends on local vs routed: do a FIB lookup.
    pub const NEED_ROUTE: u32 = 1 << 1;
    /// Some filter has a security class: look up the interface's class.
    pub const NEED_SECCLASS: u32 = 1 << 2;
    /// Logging is enabled for the set (LOGENable / FilterLogging).
    pub const LOG_ENABLED: u32 = 1 << 3;
    /// Log the implicit deny (LOGImplicit / FilterLogImplicit).
    pub const LOG_IMPLICIT: u32 = 1 << 4;
}

/// Filter actions ([`RuleInfo::action`]).
pub mod action {
    /// Pass.
    pub const PERMIT: u8 = 0;
    /// Drop.
    pub const DENY: u8 = 1;
    /// Pass only if protected by IPsec (see [`super::rule_flags`]).
    pub const IPSEC: u8 = 2;
}

/// [`RuleInfo::flags`].
pub mod rule_flags {
    /// Inbound: the packet must have been decapsulated by an SA with
    /// [`super::RuleInfo::reqid`].
    pub const CHECK_REQID: u8 = 1;
    /// Inbound: … and with SPI [`super::RuleInfo::spi`].
    pub const CHECK_SPI: u8 = 1 << 1;
    /// Log permitted packets.
    pub const LOG_PERMIT: u8 = 1 << 2;
    /// Log denied packets.
    pub const LOG_DENY: u8 = 1 << 3;
}

/// Table header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableHdr {
    /// Filters in the table.
    pub n_rules: u32,
    /// [`table_flags`].
    pub flags: u32,
    /// The filter set this table belongs to ([`SET_DEFAULT`]/[`SET_POLICY`]).
    pub set: u32,
    /// Bumped on every write (for diagnostics).
    pub generation: u32,
}

/// Port (or ICMP type/code, OSPF type) → class, directly indexed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortIndex {
    /// Class for packets whose ports are unknown (non-first fragments,
    /// truncated headers): filters with no port condition.
    pub unknown_class: u32,
    /// Class of each value.
    pub classes: [u32; 65536],
}

/// What to do on a match of filter *i*.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleInfo {
    /// Counter id ([`MAP_COUNTERS`], [`MAP_RULE_META`]).
    pub counter: u32,
    /// Generation of the counter id's assignment (copied into log events).
    pub generation: u32,
    /// Required SA reqid ([`rule_flags::CHECK_REQID`]).
    pub reqid: u32,
    /// Required SA SPI in network byte order ([`rule_flags::CHECK_SPI`]).
    pub spi: u32,
    /// [`action`].
    pub action: u8,
    /// [`rule_flags`].
    pub flags: u8,
    /// Padding.
    pub _pad: [u8; 2],
}

/// One compiled table: the filters of one set for one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Header.
    pub hdr: TableHdr,
    /// Protocol number → class.
    pub proto_class: [u32; 256],
    /// Misc key → class (see [`MISC_KEYS`]).
    pub misc_class: [u32; MISC_KEYS],
    /// Source port (ICMP type, OSPF type) → class.
    pub sport: PortIndex,
    /// Destination port (ICMP code) → class.
    pub dport: PortIndex,
    /// Filter *i*'s action.
    pub rules: [RuleInfo; MAX_RULES],
}

/// The filters accepting one class of field values. Bit *i* of `words` =
/// filter *i*; bit *w* of `summary` is set iff `words[w] != 0`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bitmap {
    /// Non-zero words.
    pub summary: u64,
    /// The filters.
    pub words: [u64; BITMAP_WORDS],
}

impl Bitmap {
    /// No filters.
    pub const EMPTY: Self = Self {
        summary: 0,
        words: [0; BITMAP_WORDS],
    };
}

/// Address-trie fields.
pub mod addr_field {
    /// Source address.
    pub const SRC: u8 = 0;
    /// Destination address.
    pub const DST: u8 = 1;
}

/// The data part of an [`MAP_ADDRS`] key: `slot, dir, field, family` then the
/// address (IPv4 in the first 4 bytes). The trie prefix length is 32 plus
/// the address prefix length.
pub type LpmData = [u8; 20];

/// Bits of an LPM key before the address.
pub const LPM_HEADER_BITS: u32 = 32;

// ---------------------------------------------------------------------------
// Counters, metadata, statistics

/// Per-CPU counters of one filter (summed on read).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets that matched.
    pub packets: u64,
    /// Their bytes (IP length as seen by TC).
    pub bytes: u64,
    /// IpSec filters: packets dropped because no (or the wrong) SA
    /// protected them.
    pub sa_drops: u64,
}

/// Fixed counter ids.
pub mod counter_id {
    /// `SYSDEFAULTDENYRULE`: `IMPLICIT_DENY + set * 2 + dir`.
    pub const IMPLICIT_DENY: u32 = 0;
    /// Stack-required ICMP/ICMPv6 permitted before the filters: `+ dir`.
    pub const ICMP_EXCEPTION: u32 = 4;
    /// Unparseable IP packets (dropped): `+ dir`.
    pub const MALFORMED: u32 = 6;
    /// First id for filters.
    pub const FIRST_RULE: u32 = 16;
    /// Ids per filter set: two directions, old and new table during a
    /// replacement.
    pub const PER_SET: u32 = 4 * super::MAX_RULES as u32;
    /// Size of the counter map.
    pub const CAPACITY: u32 = FIRST_RULE + 2 * PER_SET;
}

/// Kinds of filters ([`RuleMeta::kind`]).
pub mod rule_kind {
    /// A configured filter.
    pub const GENERIC: u8 = 0;
    /// A dynamic filter (per SA, before its anchor).
    pub const DYNAMIC: u8 = 1;
    /// An IpSec filter that anchors dynamic filters.
    pub const ANCHOR: u8 = 2;
    /// A fixed counter (implicit deny, ICMP exception, malformed).
    pub const SYSTEM: u8 = 3;
}

/// What a counter id belongs to (written by user space, read by the log
/// reader and `ipsec -f display`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleMeta {
    /// Filter name, NUL-padded.
    pub name: [u8; 48],
    /// Filter set.
    pub set: u8,
    /// [`DIR_IN`] / [`DIR_OUT`].
    pub dir: u8,
    /// 4 or 6.
    pub family: u8,
    /// [`rule_kind`].
    pub kind: u8,
    /// Position in its table.
    pub position: u32,
    /// Generation of this assignment (matches [`RuleInfo::generation`]).
    pub generation: u32,
    /// Padding.
    pub _pad: u32,
    /// Identity of the filter (name, direction, content) for keeping its
    /// counter across replacements.
    pub key_hash: u64,
}

/// Indexes of [`MAP_STATS`].
pub mod stat {
    /// Log events written.
    pub const LOG_EMITTED: u32 = 0;
    /// Log events suppressed by the rate limit.
    pub const LOG_RATE_LIMITED: u32 = 1;
    /// Log events lost because the ring buffer was full (no reader).
    pub const LOG_LOST: u32 = 2;
    /// Non-first fragments that took their first fragment's verdict.
    pub const FRAG_HIT: u32 = 3;
    /// Non-first fragments classified without ports.
    pub const FRAG_MISS: u32 = 4;
    /// Non-IP frames passed (ARP, …).
    pub const NON_IP: u32 = 5;
    /// Packets classified.
    pub const CLASSIFIED: u32 = 6;
    /// Entries in the map.
    pub const COUNT: u32 = 8;
}

/// Global settings and bookkeeping (written by user space).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// [`LAYOUT_VERSION`] of the maps.
    pub layout_version: u32,
    /// Log events per second per CPU (0 = no limit).
    pub log_rate: u32,
    /// Burst size of the log rate limit.
    pub log_burst: u32,
    /// Last table generation written.
    pub generation: u32,
    /// Bit *n*: filter set *n* has been loaded.
    pub loaded_sets: u32,
    /// Padding.
    pub _pad: u32,
}

/// Log rate-limit state (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens × 2^20.
    pub tokens: u64,
    /// Last refill (bpf_ktime_get_ns).
    pub last_ns: u64,
}

/// Why a packet was logged ([`LogEvent::reason`]).
pub mod reason {
    /// A filter matched.
    pub const RULE: u8 = 0;
    /// No filter matched (`SYSDEFAULTDENYRULE`).
    pub const IMPLICIT: u8 = 1;
    /// An IpSec filter matched but the packet was not protected by the
    /// required SA.
    pub const SA_MISMATCH: u8 = 2;
}

/// One log event (ring buffer record).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEvent {
    /// bpf_ktime_get_ns.
    pub ts_ns: u64,
    /// Counter id of the deciding filter.
    pub counter: u32,
    /// Its [`RuleInfo::generation`].
    pub generation: u32,
    /// Interface.
    pub ifindex: u32,
    /// IP length.
    pub len: u32,
    /// Source port / ICMP type (host order; 0 if unknown).
    pub sport: u16,
    /// Destination port / ICMP code.
    pub dport: u16,
    /// 4 or 6.
    pub family: u8,
    /// [`DIR_IN`] / [`DIR_OUT`].
    pub dir: u8,
    /// IP protocol.
    pub protocol: u8,
    /// 1 = permitted, 0 = dropped.
    pub permitted: u8,
    /// [`reason`].
    pub reason: u8,
    /// Bit 0: fragment; bit 1: ports unknown.
    pub flags: u8,
    /// Filter set.
    pub set: u8,
    /// Padding.
    pub _pad: u8,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Padding (to a multiple of 8 bytes).
    pub _pad2: u32,
}

/// Key of [`MAP_FRAGS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    /// Fragment identification (IPv4: 16 bits).
    pub id: u32,
    /// 4 or 6.
    pub family: u8,
    /// Upper protocol.
    pub protocol: u8,
    /// Direction.
    pub dir: u8,
    /// Padding.
    pub _pad: u8,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
}

/// Value of [`MAP_FRAGS`]: the first fragment's outcome.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragVerdict {
    /// Counter id to count the fragment on.
    pub counter: u32,
    /// 1 = pass.
    pub permitted: u32,
}

/// Value of [`MAP_IFINFO`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfInfo {
    /// Security class of the interface (0 = none).
    pub secclass: u32,
}

/// The misc key of a packet.
pub const fn misc_key(secclass: u8, routed: bool, fragment: bool, syn: bool) -> u32 {
    ((secclass as u32) << 3) | ((routed as u32) << 2) | ((fragment as u32) << 1) | (syn as u32)
}

#[cfg(feature = "user")]
impl Table {
    /// An all-zero table on the heap (a table is ~700 KiB: too big to build
    /// on the stack).
    pub fn boxed_zeroed() -> alloc::boxed::Box<Self> {
        let b = alloc::boxed::Box::<Self>::new_zeroed();
        // SAFETY: Table is #[repr(C)] and made only of integers and arrays of
        // integers, for which all-zero bits are a valid value.
        #[expect(
            unsafe_code,
            reason = "zero-initialising a plain-data struct on the heap"
        )]
        unsafe {
            b.assume_init()
        }
    }

    /// A heap copy of `self` (without a stack temporary).
    pub fn boxed_copy(&self) -> alloc::boxed::Box<Self> {
        let mut b = Self::boxed_zeroed();
        *b = *self;
        b
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;

    macro_rules! pod {
        ($($t:ty),* $(,)?) => {$(
            // SAFETY: every type listed is #[repr(C)], Copy, made only of
            // integers and integer arrays, and has no padding that is not an
            // explicit field, so any bit pattern is a valid value.
            #[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(
        Table,
        Bitmap,
        Counter,
        RuleMeta,
        Config,
        TokenBucket,
        LogEvent,
        FragKey,
        FragVerdict,
        IfInfo,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_word() {
        let c = ctl::make(SET_POLICY, 2, 0);
        assert_eq!(ctl::active_set(c), SET_POLICY);
        assert_eq!(ctl::default_slot(c), 2);
        assert_eq!(ctl::policy_slot(c), 0);
        assert_eq!(ctl::spare_slot(c), 1);
        assert_eq!(ctl::slot_of(c, SET_DEFAULT), 2);
        assert!(c < 256, "the control word must fit in one byte");
        assert_eq!(ctl::spare_slot(ctl::make(0, 0, 1)), 2);
        assert_eq!(ctl::spare_slot(ctl::make(0, 1, 2)), 0);
    }

    #[test]
    fn layouts_have_no_hidden_padding() {
        use core::mem::size_of;
        assert_eq!(size_of::<RuleInfo>(), 20);
        assert_eq!(size_of::<Bitmap>(), 8 + 8 * BITMAP_WORDS);
        assert_eq!(size_of::<RuleMeta>(), 48 + 4 + 4 + 4 + 4 + 8);
        assert_eq!(size_of::<LogEvent>(), 8 + 4 * 4 + 2 * 2 + 8 + 32 + 4);
        assert_eq!(size_of::<FragKey>(), 4 + 4 + 32);
        assert_eq!(size_of::<PortIndex>(), 4 + 4 * 65536);
        assert_eq!(
            size_of::<Table>(),
            size_of::<TableHdr>()
                + 4 * 256
                + 4 * MISC_KEYS
                + 2 * size_of::<PortIndex>()
                + 20 * MAX_RULES
        );
        assert_eq!(misc_key(255, true, true, true), MISC_KEYS as u32 - 1);
    }
}
