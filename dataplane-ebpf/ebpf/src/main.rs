//! gatekey's IP filter: a TC classifier for ingress (inbound) and egress
//! (outbound), IPv4 and IPv6, enforcing a stack's active filter set.
//!
//! Per packet: parse the IP header (IPv6 extension headers, fragments) and
//! the ports / ICMP type and code; let stack-required ICMP/ICMPv6 through;
//! give non-first fragments their first fragment's verdict; otherwise look up
//! one class per field in the active table, AND the classes' bitmaps and take
//! the lowest set bit (the first matching filter in configured order); apply
//! its action (IpSec filters check the SA that decapsulated the packet with
//! `bpf_skb_get_xfrm_state`); count; log through the ring buffer if asked.
//! No filter matching = `SYSDEFAULTDENYRULE`. See `gatekey-dataplane-common`
//! for the data layout.
//!
//! Built for `bpfel-unknown-none` by the loader's build.rs. Must not depend
//! on any workspace crate except `gatekey-dataplane-common`.
#![no_std]
#![no_main]

use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, bpf_fib_lookup as FibParams, bpf_xfrm_state},
    helpers::{
        bpf_ktime_get_ns,
        generated::{bpf_fib_lookup, bpf_skb_get_xfrm_state},
    },
    macros::{classifier, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::TcContext,
};
use gatekey_dataplane_common::{
    BITMAP_WORDS, Bitmap, Config, Counter, DIR_IN, FragKey, FragVerdict, IfInfo, LPM_HEADER_BITS,
    LogEvent, LpmData, MAX_RULES, MISC_KEYS, RuleMeta, TABLE_ENTRIES, Table, TokenBucket, action,
    addr_field, counter_id, ctl, misc_key, reason, rule_flags, stat, table_flags,
};

// ---------------------------------------------------------------------------
// Maps (names shared with user space through gatekey-dataplane-common; sizes
// of the big ones are set by the loader)

#[map(name = "GK_CONTROL")]
static CONTROL: Array<u32> = Array::with_max_entries(1, 0);

#[map(name = "GK_CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "GK_TABLES")]
static TABLES: Array<Table> = Array::with_max_entries(TABLE_ENTRIES, 0);

#[map(name = "GK_BITMAPS")]
static BITMAPS: Array<Bitmap> = Array::with_max_entries(3 * 12288, 0);

#[map(name = "GK_ADDRS")]
static ADDRS: LpmTrie<LpmData, u32> = LpmTrie::with_max_entries(65536, 0);

#[map(name = "GK_COUNTERS")]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(counter_id::CAPACITY, 0);

/// Written and read by user space only; defined here so that it is created
/// and pinned with the others.
#[map(name = "GK_RULE_META")]
static RULE_META: HashMap<u32, RuleMeta> = HashMap::with_max_entries(counter_id::CAPACITY, 0);

#[map(name = "GK_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map(name = "GK_LOG")]
static LOG: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[map(name = "GK_LOG_STATE")]
static LOG_STATE: PerCpuArray<TokenBucket> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "GK_FRAGS")]
static FRAGS: LruHashMap<FragKey, FragVerdict> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU scratch where the parser leaves the packet's fields. Reading
/// them back from a map makes them unknown to the verifier, so the many
/// parse paths (IPv4/IPv6, extension headers, protocols) merge into one
/// before classification instead of each being verified through it.
#[map(name = "GK_SCRATCH")]
static SCRATCH: PerCpuArray<Pkt> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch for [`launder`].
#[map(name = "GK_OFFSET")]
static OFFSET: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "GK_IFINFO")]
static IFINFO: HashMap<u32, IfInfo> = HashMap::with_max_entries(1024, 0);

// ---------------------------------------------------------------------------
// Entry points

/// Inbound, Ethernet interfaces.
#[classifier]
pub fn gatekey_in_eth(ctx: TcContext) -> i32 {
    filter::<0, 14>(&ctx)
}

/// Outbound, Ethernet interfaces.
#[classifier]
pub fn gatekey_out_eth(ctx: TcContext) -> i32 {
    filter::<1, 14>(&ctx)
}

/// Inbound, interfaces without a link-layer header.
#[classifier]
pub fn gatekey_in_l3(ctx: TcContext) -> i32 {
    filter::<0, 0>(&ctx)
}

/// Outbound, interfaces without a link-layer header.
#[classifier]
pub fn gatekey_out_l3(ctx: TcContext) -> i32 {
    filter::<1, 0>(&ctx)
}

const PASS: i32 = TC_ACT_UNSPEC;
const DROP: i32 = TC_ACT_SHOT as i32;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86dd;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const P_ICMP: u8 = 1;
const P_TCP: u8 = 6;
const P_UDP: u8 = 17;
const P_ESP: u8 = 50;
const P_AH: u8 = 51;
const P_ICMPV6: u8 = 58;
const P_OSPF: u8 = 89;

/// What the parser learned about a packet.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pkt {
    family: u8,
    protocol: u8,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    ports_known: bool,
    fragment: bool,
    first_fragment: bool,
    frag_id: u32,
    syn: bool,
    hop_limit: u8,
    len: u32,
}

/// The outcome of classification.
struct Verdict {
    permitted: bool,
    counter: u32,
    generation: u32,
    reason: u8,
    log: bool,
    sa_drop: bool,
}

#[inline(always)]
fn filter<const DIR: u32, const L2: usize>(ctx: &TcContext) -> i32 {
    // SAFETY: `ctx.skb.skb` is the __sk_buff the kernel passed to this
    // program; reading its fields is what the context is for.
    let proto = unsafe { (*ctx.skb.skb).protocol };
    let proto = u32::from(u16::from_be(proto as u16));
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return DROP;
    };
    // SAFETY: this CPU's scratch slot from a successful lookup; nothing else
    // uses it while this program runs on this CPU.
    let slot = unsafe { &mut *scratch };
    let parsed = match proto {
        ETH_P_IP => parse_v4(ctx, L2, slot),
        ETH_P_IPV6 => parse_v6(ctx, L2, slot),
        _ => {
            bump_stat(stat::NON_IP);
            return PASS;
        }
    };
    if !parsed {
        count(counter_id::MALFORMED + DIR, 0, false);
        return DROP;
    }
    // The funnel: from here on the packet's fields are read back from the
    // map, so every parse path arrives with the same (unknown) state.
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    // SAFETY: as above.
    let pkt: &Pkt = unsafe { &*scratch };
    if icmp_exception(pkt) {
        count(counter_id::ICMP_EXCEPTION + DIR, pkt.len, false);
        return PASS;
    }

    // Non-first fragments carry no ports: reuse the first fragment's verdict.
    let frag_key = FragKey {
        id: pkt.frag_id,
        family: pkt.family,
        protocol: pkt.protocol,
        dir: DIR as u8,
        _pad: 0,
        src: pkt.src,
        dst: pkt.dst,
    };
    if pkt.fragment && !pkt.first_fragment {
        if let Some(v) = FRAGS.get_ptr(&frag_key) {
            // SAFETY: the pointer comes from a successful map lookup.
            let v = unsafe { *v };
            bump_stat(stat::FRAG_HIT);
            count(v.counter, pkt.len, false);
            return if v.permitted != 0 { PASS } else { DROP };
        }
        bump_stat(stat::FRAG_MISS);
    }

    let control = CONTROL.get(0).copied().unwrap_or(0);
    let set = ctl::active_set(control);
    let slot = ctl::slot_of(control, set);
    let verdict = classify::<DIR>(ctx, pkt, set, slot);

    count(verdict.counter, pkt.len, verdict.sa_drop);
    if verdict.log {
        log_event::<DIR>(ctx, pkt, &verdict, set);
    }
    if pkt.fragment && pkt.first_fragment {
        let _ = FRAGS.insert(
            &frag_key,
            &FragVerdict {
                counter: verdict.counter,
                permitted: u32::from(verdict.permitted),
            },
            0,
        );
    }
    if verdict.permitted { PASS } else { DROP }
}

// ---------------------------------------------------------------------------
// Parsing

#[inline(always)]
fn parse_v4(ctx: &TcContext, l3: usize, pkt: &mut Pkt) -> bool {
    let Ok(hdr) = ctx.load::<[u8; 20]>(l3) else {
        return false;
    };
    if hdr[0] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < 20 {
        return false;
    }
    let total = u32::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    let offset = frag & 0x1fff;
    let more = frag & 0x2000 != 0;
    *pkt = Pkt {
        family: 4,
        protocol: hdr[9],
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        ports_known: false,
        fragment: more || offset != 0,
        first_fragment: offset == 0,
        frag_id: u32::from(u16::from_be_bytes([hdr[4], hdr[5]])),
        syn: false,
        hop_limit: hdr[8],
        len: total,
    };
    pkt.src[..4].copy_from_slice(&hdr[12..16]);
    pkt.dst[..4].copy_from_slice(&hdr[16..20]);
    if offset == 0 {
        parse_l4(ctx, pkt, l3 + ihl);
    }
    true
}

#[inline(always)]
fn parse_v6(ctx: &TcContext, l3: usize, pkt: &mut Pkt) -> bool {
    let Ok(hdr) = ctx.load::<[u8; 40]>(l3) else {
        return false;
    };
    if hdr[0] >> 4 != 6 {
        return false;
    }
    *pkt = Pkt {
        family: 6,
        protocol: hdr[6],
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        ports_known: false,
        fragment: false,
        first_fragment: true,
        frag_id: 0,
        syn: false,
        hop_limit: hdr[7],
        len: 40 + u32::from(u16::from_be_bytes([hdr[4], hdr[5]])),
    };
    pkt.src.copy_from_slice(&hdr[8..24]);
    pkt.dst.copy_from_slice(&hdr[24..40]);
    // Walk the extension headers to the upper-layer protocol.
    let mut off = l3 + 40;
    let mut next = pkt.protocol;
    let mut upper = false;
    for _ in 0..6 {
        // Forget what the previous iteration knew about the offset so that
        // the verifier does not follow every header combination.
        let off_now = launder(off);
        off = off_now;
        match next {
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => {
                let Ok(ext) = ctx.load::<[u8; 2]>(off) else {
                    return false;
                };
                next = ext[0];
                off += (usize::from(ext[1]) + 1) * 8;
            }
            // Fragment.
            44 => {
                let Ok(ext) = ctx.load::<[u8; 8]>(off) else {
                    return false;
                };
                next = ext[0];
                let fo = u16::from_be_bytes([ext[2], ext[3]]);
                pkt.fragment = true;
                pkt.first_fragment = fo >> 3 == 0;
                pkt.frag_id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
                off += 8;
            }
            _ => {
                upper = true;
                break;
            }
        }
    }
    pkt.protocol = next;
    if upper && pkt.first_fragment {
        parse_l4(ctx, pkt, off);
    }
    // Otherwise (too many extension headers, or a later fragment) the
    // packet is classified without ports.
    true
}

#[inline(always)]
fn parse_l4(ctx: &TcContext, pkt: &mut Pkt, off: usize) {
    match pkt.protocol {
        P_TCP => {
            if let Ok(h) = ctx.load::<[u8; 14]>(off) {
                pkt.sport = u16::from_be_bytes([h[0], h[1]]);
                pkt.dport = u16::from_be_bytes([h[2], h[3]]);
                // SYN without ACK: a connection being opened.
                pkt.syn = h[13] & 0x12 == 0x02;
                pkt.ports_known = true;
            }
        }
        P_UDP => {
            if let Ok(h) = ctx.load::<[u8; 4]>(off) {
                pkt.sport = u16::from_be_bytes([h[0], h[1]]);
                pkt.dport = u16::from_be_bytes([h[2], h[3]]);
                pkt.ports_known = true;
            }
        }
        P_ICMP | P_ICMPV6 => {
            if let Ok(h) = ctx.load::<[u8; 2]>(off) {
                pkt.sport = u16::from(h[0]);
                pkt.dport = u16::from(h[1]);
                pkt.ports_known = true;
            }
        }
        P_OSPF => {
            if let Ok(h) = ctx.load::<[u8; 2]>(off) {
                pkt.sport = u16::from(h[1]);
                pkt.ports_known = true;
            }
        }
        _ => pkt.ports_known = true,
    }
}

/// ICMP/ICMPv6 messages the stack needs, permitted before the filters:
/// IPv6 neighbour discovery (hop limit 255) and MLD (hop limit 1), ICMPv6
/// Packet Too Big, ICMP Fragmentation Needed (path MTU discovery).
#[inline(always)]
fn icmp_exception(pkt: &Pkt) -> bool {
    if !pkt.ports_known || pkt.fragment {
        return false;
    }
    match (pkt.family, pkt.protocol) {
        (6, P_ICMPV6) => match pkt.sport {
            133..=137 => pkt.hop_limit == 255,
            130..=132 | 143 => pkt.hop_limit == 1,
            2 => true,
            _ => false,
        },
        (4, P_ICMP) => pkt.sport == 3 && pkt.dport == 4,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Classification

#[inline(always)]
fn implicit_deny<const DIR: u32>(set: u32, log: bool) -> Verdict {
    Verdict {
        permitted: false,
        counter: counter_id::IMPLICIT_DENY + set * 2 + DIR,
        generation: 0,
        reason: reason::IMPLICIT,
        log,
        sa_drop: false,
    }
}

#[inline(always)]
fn classify<const DIR: u32>(ctx: &TcContext, pkt: &Pkt, set: u32, slot: u32) -> Verdict {
    let Some(table) = TABLES.get(slot * 2 + DIR) else {
        return implicit_deny::<DIR>(set, false);
    };
    let flags = table.hdr.flags;
    if flags & table_flags::VALID == 0 {
        return implicit_deny::<DIR>(set, false);
    }
    let log_on = flags & table_flags::LOG_ENABLED != 0;
    let deny = implicit_deny::<DIR>(set, log_on && flags & table_flags::LOG_IMPLICIT != 0);

    // Routed = neither to (inbound) nor from (outbound) this host. An
    // outbound packet this host encapsulated (the ESP of a tunnel) comes
    // from a local address, so it is local even if its payload was
    // forwarded.
    let routed = flags & table_flags::NEED_ROUTE != 0 && is_routed::<DIR>(ctx, pkt);
    let secclass = if flags & table_flags::NEED_SECCLASS != 0 {
        // SAFETY: reading a field of this program's __sk_buff.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        // SAFETY: a lookup result is a valid pointer for this program run.
        unsafe { IFINFO.get(&ifindex) }.map_or(0, |i| i.secclass as u8)
    } else {
        0
    };

    let Some(c_src) = addr_class::<DIR>(slot, addr_field::SRC, pkt.family, &pkt.src) else {
        return deny;
    };
    let Some(c_dst) = addr_class::<DIR>(slot, addr_field::DST, pkt.family, &pkt.dst) else {
        return deny;
    };
    let c_proto = table.proto_class[usize::from(pkt.protocol)];
    let (c_sport, c_dport) = if pkt.ports_known {
        (
            table.sport.classes[usize::from(pkt.sport)],
            table.dport.classes[usize::from(pkt.dport)],
        )
    } else {
        (table.sport.unknown_class, table.dport.unknown_class)
    };
    // The verifier does not know that the flags read back from the scratch
    // map are 0 or 1; LLVM does and would drop the mask: keep it.
    let misc = opaque(misc_key(secclass, routed, pkt.fragment, pkt.syn) as usize);
    let Some(&c_misc) = table.misc_class.get(misc & (MISC_KEYS - 1)) else {
        return deny;
    };

    let (Some(b1), Some(b2), Some(b3), Some(b4), Some(b5), Some(b6)) = (
        BITMAPS.get(c_src),
        BITMAPS.get(c_dst),
        BITMAPS.get(c_proto),
        BITMAPS.get(c_sport),
        BITMAPS.get(c_dport),
        BITMAPS.get(c_misc),
    ) else {
        return deny;
    };
    let mut summary = b1.summary & b2.summary & b3.summary & b4.summary & b5.summary & b6.summary;
    let mut found: Option<usize> = None;
    for _ in 0..BITMAP_WORDS {
        if summary == 0 {
            break;
        }
        // LLVM knows a count of trailing zeros is below 64 and would drop a
        // plain bounds check; the verifier does not know it (the count may
        // come from a lookup table), so the check must survive.
        let w = opaque(ctz64(summary) as usize);
        if w >= BITMAP_WORDS {
            break;
        }
        let word =
            b1.words[w] & b2.words[w] & b3.words[w] & b4.words[w] & b5.words[w] & b6.words[w];
        if word != 0 {
            found = Some(w * 64 + ctz64(word) as usize);
            break;
        }
        summary &= summary - 1;
    }
    let Some(index) = found else {
        return deny;
    };
    let index = opaque(index);
    if index >= MAX_RULES || index >= table.hdr.n_rules as usize {
        return deny;
    }
    let rule = table.rules[index];
    let (permitted, sa_drop, why) = match rule.action {
        action::PERMIT => (true, false, reason::RULE),
        action::IPSEC => {
            if ipsec_ok::<DIR>(ctx, pkt, &rule) {
                (true, false, reason::RULE)
            } else {
                (false, true, reason::SA_MISMATCH)
            }
        }
        _ => (false, false, reason::RULE),
    };
    let wants = if permitted {
        rule.flags & rule_flags::LOG_PERMIT != 0
    } else {
        rule.flags & rule_flags::LOG_DENY != 0
    };
    Verdict {
        permitted,
        counter: rule.counter,
        generation: rule.generation,
        reason: why,
        log: log_on && wants,
        sa_drop,
    }
}

#[inline(always)]
fn addr_class<const DIR: u32>(slot: u32, field: u8, family: u8, addr: &[u8; 16]) -> Option<u32> {
    let mut data: LpmData = [0; 20];
    data[0] = slot as u8;
    data[1] = DIR as u8;
    data[2] = field;
    data[3] = family;
    data[4..20].copy_from_slice(addr);
    let bits = if family == 4 { 32 } else { 128 };
    ADDRS.get(Key::new(LPM_HEADER_BITS + bits, data)).copied()
}

/// `x` laundered through a map: the verifier sees an unknown value (one state
/// instead of one per possible value).
#[inline(always)]
fn launder(x: usize) -> usize {
    match OFFSET.get_ptr_mut(0) {
        Some(p) => {
            // SAFETY: this CPU's slot from a successful lookup.
            unsafe {
                core::ptr::write_volatile(p, x as u32);
                core::ptr::read_volatile(p) as usize & 0xffff
            }
        }
        None => x,
    }
}

/// `x`, hidden from the optimiser so that bounds checks on it are kept for
/// the verifier.
#[inline(always)]
fn opaque(x: usize) -> usize {
    // SAFETY: a volatile read of a local variable.
    unsafe { core::ptr::read_volatile(&x) }
}

/// Index of the lowest set bit of `x` (x != 0), without branches (the
/// verifier then sees one path instead of one per bit position).
#[inline(always)]
fn ctz64(x: u64) -> u32 {
    // Bits below the lowest set one, counted (SWAR popcount).
    let mut v = (x & x.wrapping_neg()).wrapping_sub(1);
    v -= (v >> 1) & 0x5555_5555_5555_5555;
    v = (v & 0x3333_3333_3333_3333) + ((v >> 2) & 0x3333_3333_3333_3333);
    v = (v + (v >> 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    (v.wrapping_mul(0x0101_0101_0101_0101) >> 56) as u32
}

/// Is the packet forwarded, rather than delivered to (inbound) or sent from
/// (outbound) this host? A FIB lookup of the destination (inbound) or of
/// the source (outbound) says whether that address is local.
#[inline(always)]
fn is_routed<const DIR: u32>(ctx: &TcContext, pkt: &Pkt) -> bool {
    // Look up (from a, to b) where b is the address that is ours if the
    // traffic is local.
    let (a, b) = if DIR == DIR_IN {
        (&pkt.src, &pkt.dst)
    } else {
        (&pkt.dst, &pkt.src)
    };
    // SAFETY: bpf_fib_lookup is plain old data; all-zero is a valid value.
    let mut p: FibParams = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: reading a field of this program's __sk_buff.
    p.ifindex = unsafe { (*ctx.skb.skb).ifindex };
    p.l4_protocol = pkt.protocol;
    p.sport = pkt.sport.to_be();
    p.dport = pkt.dport.to_be();
    if pkt.family == 4 {
        p.family = AF_INET;
        p.__bindgen_anon_1.tot_len = pkt.len as u16;
        p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
        p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    } else {
        p.family = AF_INET6;
        p.__bindgen_anon_1.tot_len = pkt.len as u16;
        let mut s = [0u32; 4];
        let mut d = [0u32; 4];
        for i in 0..4 {
            let o = i * 4;
            s[i] = u32::from_ne_bytes([a[o], a[o + 1], a[o + 2], a[o + 3]]);
            d[i] = u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        }
        p.__bindgen_anon_3.ipv6_src = s;
        p.__bindgen_anon_4.ipv6_dst = d;
    }
    // SAFETY: the context pointer is this program's skb and `p` is a valid,
    // writable bpf_fib_lookup of the size passed.
    let rc =
        unsafe { bpf_fib_lookup(ctx.skb.skb.cast(), &mut p, size_of::<FibParams>() as i32, 0) };
    // NOT_FWDED (local, broadcast, multicast), FWD_DISABLED (this
    // interface does not forward) and errors count as local.
    !matches!(rc, 4 | 5) && rc >= 0
}

/// May a packet matching an IpSec filter pass?
#[inline(always)]
fn ipsec_ok<const DIR: u32>(
    ctx: &TcContext,
    pkt: &Pkt,
    rule: &gatekey_dataplane_common::RuleInfo,
) -> bool {
    // The protected form itself (ESP, AH, ESP in UDP 4500) passes: it is
    // what the SA carries, and XFRM policy decides what happens to it.
    if pkt.protocol == P_ESP
        || pkt.protocol == P_AH
        || (pkt.protocol == P_UDP && pkt.ports_known && (pkt.sport == 4500 || pkt.dport == 4500))
    {
        return true;
    }
    if DIR != DIR_IN || rule.flags & rule_flags::CHECK_REQID == 0 {
        // An anchor (no dynamic filter for this traffic) or an outbound
        // packet about to leave unencrypted.
        return false;
    }
    // SAFETY: bpf_xfrm_state is plain old data; all-zero is a valid value.
    let mut st: bpf_xfrm_state = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: this program's skb, and a writable state of the size passed.
    let rc = unsafe {
        bpf_skb_get_xfrm_state(
            ctx.skb.skb,
            0,
            &mut st,
            size_of::<bpf_xfrm_state>() as u32,
            0,
        )
    };
    rc == 0
        && st.reqid == rule.reqid
        && (rule.flags & rule_flags::CHECK_SPI == 0 || st.spi == rule.spi)
}

// ---------------------------------------------------------------------------
// Counting and logging

#[inline(always)]
fn count(id: u32, len: u32, sa_drop: bool) {
    if let Some(c) = COUNTERS.get_ptr_mut(id) {
        // SAFETY: a per-CPU slot from a successful lookup; only this CPU
        // writes it while this program runs.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += u64::from(len);
            if sa_drop {
                (*c).sa_drops += 1;
            }
        }
    }
}

#[inline(always)]
fn bump_stat(i: u32) {
    if let Some(s) = STATS.get_ptr_mut(i) {
        // SAFETY: a per-CPU slot from a successful lookup.
        unsafe { *s += 1 };
    }
}

/// Token bucket per CPU: `log_rate` events per second, bursts of
/// `log_burst`.
#[inline(always)]
fn log_allowed() -> bool {
    let cfg = CONFIG.get(0).copied().unwrap_or_default();
    if cfg.log_rate == 0 {
        return true;
    }
    let Some(b) = LOG_STATE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: the kernel's monotonic clock.
    let now = unsafe { bpf_ktime_get_ns() };
    let per = 1_000_000_000u64 / u64::from(cfg.log_rate);
    let burst = u64::from(cfg.log_burst.max(1));
    // SAFETY: a per-CPU slot from a successful lookup.
    let b = unsafe { &mut *b };
    if b.last_ns == 0 || now < b.last_ns {
        b.last_ns = now;
        b.tokens = burst;
    } else if per > 0 {
        let add = (now - b.last_ns) / per;
        if add > 0 {
            b.tokens = if b.tokens + add > burst {
                burst
            } else {
                b.tokens + add
            };
            b.last_ns += add * per;
        }
    }
    if b.tokens == 0 {
        return false;
    }
    b.tokens -= 1;
    true
}

#[inline(always)]
fn log_event<const DIR: u32>(ctx: &TcContext, pkt: &Pkt, v: &Verdict, set: u32) {
    if !log_allowed() {
        bump_stat(stat::LOG_RATE_LIMITED);
        return;
    }
    let Some(mut entry) = LOG.reserve::<LogEvent>(0) else {
        bump_stat(stat::LOG_LOST);
        return;
    };
    // SAFETY: reading fields of this program's __sk_buff; the clock helper.
    let (ifindex, ts) = unsafe { ((*ctx.skb.skb).ifindex, bpf_ktime_get_ns()) };
    entry.write(LogEvent {
        ts_ns: ts,
        counter: v.counter,
        generation: v.generation,
        ifindex,
        len: pkt.len,
        sport: pkt.sport,
        dport: pkt.dport,
        family: pkt.family,
        dir: DIR as u8,
        protocol: pkt.protocol,
        permitted: u8::from(v.permitted),
        reason: v.reason,
        flags: u8::from(pkt.fragment) | (u8::from(!pkt.ports_known) << 1),
        set: set as u8,
        _pad: 0,
        src: pkt.src,
        dst: pkt.dst,
        _pad2: 0,
    });
    entry.submit(0);
    bump_stat(stat::LOG_EMITTED);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
