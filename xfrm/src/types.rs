//! Value types shared by SAs, policies and events: protocols, modes, directions, selectors,
//! marks, lifetimes, counters, encapsulation.
//!
//! Kernel enumerations are open: values this crate does not name survive as `Other(raw)`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_xfrm as nx;

use crate::error::{Error, Result};

macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident : $repr:ty { $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this crate does not name.
            Other($repr),
        }

        impl From<$repr> for $name {
            fn from(v: $repr) -> Self {
                match v {
                    $( x if x == $value => $name::$variant, )+
                    other => $name::Other(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(v: $name) -> $repr {
                match v {
                    $( $name::$variant => $value, )+
                    $name::Other(x) => x,
                }
            }
        }
    };
}

open_enum! {
    /// The IPsec protocol of an SA or template (`xfrm_id.proto`).
    Proto: u8 {
        /// ESP (50).
        Esp = 50,
        /// AH (51).
        Ah = 51,
        /// IPComp (108).
        Comp = 108,
        /// Any IPsec protocol (255), for flushes and dump filters.
        Any = 255,
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Esp => f.write_str("esp"),
            Proto::Ah => f.write_str("ah"),
            Proto::Comp => f.write_str("comp"),
            Proto::Any => f.write_str("any"),
            Proto::Other(p) => write!(f, "proto-{p}"),
        }
    }
}

open_enum! {
    /// SA / template mode.
    Mode: u8 {
        /// Transport mode (0).
        Transport = 0,
        /// Tunnel mode (1).
        Tunnel = 1,
        /// Mobile IPv6 route optimisation (2).
        RouteOptimization = 2,
        /// Mobile IPv6 inbound trigger (3).
        InTrigger = 3,
        /// Bound end-to-end tunnel (4).
        Beet = 4,
    }
}

open_enum! {
    /// Policy direction.
    Direction: u8 {
        /// Inbound (0).
        In = 0,
        /// Outbound (1).
        Out = 1,
        /// Forwarded (2).
        Fwd = 2,
    }
}

open_enum! {
    /// What a policy does with matching traffic.
    PolicyAction: u8 {
        /// Apply the templates (or pass, with no templates).
        Allow = 0,
        /// Drop.
        Block = 1,
    }
}

open_enum! {
    /// Address family of a selector, SA or template.
    AddressFamily: u16 {
        /// Unspecified (0): a selector matching any inner family.
        Unspec = 0,
        /// IPv4 (2).
        Inet = 2,
        /// IPv6 (10).
        Inet6 = 10,
    }
}

impl AddressFamily {
    /// The family of an address.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }

    /// Maximum prefix length for this family.
    pub fn max_prefix(self) -> u8 {
        match self {
            AddressFamily::Inet6 => 128,
            _ => 32,
        }
    }
}

open_enum! {
    /// UDP/TCP encapsulation type (`xfrm_encap_tmpl.encap_type`).
    EncapType: u16 {
        /// Non-IKE marker ESP-in-UDP (draft-ietf-ipsec-udp-encaps-00), 1.
        EspInUdpNonIke = 1,
        /// ESP in UDP (RFC 3948), 2.
        EspInUdp = 2,
        /// ESP in TCP (RFC 8229), 7.
        EspInTcp = 7,
    }
}

/// A Security Parameter Index, in host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Spi(pub u32);

impl fmt::Display for Spi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

/// An address with a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
}

impl IpPrefix {
    /// A prefix; fails if `len` is longer than the address.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self> {
        let max = AddressFamily::of(&addr).max_prefix();
        if len > max {
            return Err(Error::invalid(format!(
                "prefix length /{len} longer than /{max} for {addr}"
            )));
        }
        Ok(IpPrefix { addr, len })
    }

    /// A host prefix (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        IpPrefix {
            addr,
            len: AddressFamily::of(&addr).max_prefix(),
        }
    }

    /// 0.0.0.0/0.
    pub const ANY_V4: IpPrefix = IpPrefix {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        len: 0,
    };

    /// ::/0.
    pub const ANY_V6: IpPrefix = IpPrefix {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        len: 0,
    };
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl std::str::FromStr for IpPrefix {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| Error::invalid(format!("bad address in prefix {s:?}")))?;
        match l {
            None => Ok(IpPrefix::host(addr)),
            Some(l) => {
                let len = l
                    .parse()
                    .map_err(|_| Error::invalid(format!("bad prefix length in {s:?}")))?;
                IpPrefix::new(addr, len)
            }
        }
    }
}

/// Upper-layer protocol numbers for selectors.
pub mod ipproto {
    /// Any protocol.
    pub const ANY: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// GRE.
    pub const GRE: u8 = 47;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// A traffic selector (`xfrm_selector`): which packets a policy or SA covers.
///
/// For ICMP the source "port" is the ICMP type and the destination "port" the code,
/// as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Selector {
    /// Address family of the selector (`Unspec` matches any inner family; tunnel-mode SAs only).
    pub family: AddressFamily,
    /// Source prefix.
    pub src: IpPrefix,
    /// Destination prefix.
    pub dst: IpPrefix,
    /// Upper-layer protocol, 0 for any (see [`ipproto`]).
    pub proto: u8,
    /// Source port (host order).
    pub sport: u16,
    /// Source port mask (0 = any port, 0xffff = exactly `sport`).
    pub sport_mask: u16,
    /// Destination port (host order).
    pub dport: u16,
    /// Destination port mask.
    pub dport_mask: u16,
    /// Interface index, 0 for any.
    pub ifindex: i32,
    /// User ID (`sel.user`), normally 0.
    pub user: u32,
}

impl Selector {
    /// All traffic from `src` to `dst` (same address family).
    pub fn new(src: IpPrefix, dst: IpPrefix) -> Result<Self> {
        let family = AddressFamily::of(&src.addr);
        if family != AddressFamily::of(&dst.addr) {
            return Err(Error::invalid(format!(
                "selector {src} -> {dst} mixes address families"
            )));
        }
        Ok(Selector {
            family,
            src,
            dst,
            proto: 0,
            sport: 0,
            sport_mask: 0,
            dport: 0,
            dport_mask: 0,
            ifindex: 0,
            user: 0,
        })
    }

    /// Host-to-host selector.
    pub fn hosts(src: IpAddr, dst: IpAddr) -> Result<Self> {
        Selector::new(IpPrefix::host(src), IpPrefix::host(dst))
    }

    /// The all-zero selector with an unspecified family (what a tunnel-mode SA normally has).
    pub fn any() -> Self {
        Selector {
            family: AddressFamily::Unspec,
            src: IpPrefix::ANY_V4,
            dst: IpPrefix::ANY_V4,
            proto: 0,
            sport: 0,
            sport_mask: 0,
            dport: 0,
            dport_mask: 0,
            ifindex: 0,
            user: 0,
        }
    }

    /// Restrict to an upper-layer protocol.
    pub fn with_proto(mut self, proto: u8) -> Self {
        self.proto = proto;
        self
    }

    /// Restrict to one source port (ICMP: type).
    pub fn with_sport(mut self, port: u16) -> Self {
        self.sport = port;
        self.sport_mask = 0xffff;
        self
    }

    /// Restrict to one destination port (ICMP: code).
    pub fn with_dport(mut self, port: u16) -> Self {
        self.dport = port;
        self.dport_mask = 0xffff;
        self
    }

    pub(crate) fn to_wire(self) -> nx::Selector {
        nx::Selector {
            daddr: nx::Address::from_ip(&self.dst.addr),
            saddr: nx::Address::from_ip(&self.src.addr),
            dport: self.dport,
            dport_mask: self.dport_mask,
            sport: self.sport,
            sport_mask: self.sport_mask,
            family: self.family.into(),
            prefixlen_d: self.dst.len,
            prefixlen_s: self.src.len,
            proto: self.proto,
            ifindex: self.ifindex,
            user: self.user,
        }
    }

    pub(crate) fn from_wire(s: &nx::Selector) -> Self {
        let family = AddressFamily::from(s.family);
        Selector {
            family,
            src: IpPrefix {
                addr: addr_from_wire(family, &s.saddr),
                len: s.prefixlen_s,
            },
            dst: IpPrefix {
                addr: addr_from_wire(family, &s.daddr),
                len: s.prefixlen_d,
            },
            proto: s.proto,
            sport: s.sport,
            sport_mask: s.sport_mask,
            dport: s.dport,
            dport_mask: s.dport_mask,
            ifindex: s.ifindex,
            user: s.user,
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "src {} dst {}", self.src, self.dst)?;
        if self.proto != 0 {
            write!(f, " proto {}", self.proto)?;
        }
        if self.sport_mask != 0 {
            write!(f, " sport {}", self.sport)?;
        }
        if self.dport_mask != 0 {
            write!(f, " dport {}", self.dport)?;
        }
        Ok(())
    }
}

/// The address in a 16-byte XFRM address field, interpreted for `family`
/// (`Unspec` and unknown families are read as IPv4 when the tail is zero, else IPv6).
pub(crate) fn addr_from_wire(family: AddressFamily, a: &nx::Address) -> IpAddr {
    match family {
        AddressFamily::Inet => IpAddr::V4(a.to_ipv4()),
        AddressFamily::Inet6 => IpAddr::V6(a.to_ipv6()),
        _ => {
            if a.addr.get(4..).is_some_and(|t| t.iter().all(|b| *b == 0)) {
                IpAddr::V4(a.to_ipv4())
            } else {
                IpAddr::V6(a.to_ipv6())
            }
        }
    }
}

/// A firewall mark match (`XFRMA_MARK`): a packet matches if `mark & mask == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Mark {
    /// Mark value.
    pub value: u32,
    /// Mask.
    pub mask: u32,
}

/// Soft or hard lifetime limits; `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LifetimeLimits {
    /// Bytes.
    pub bytes: Option<u64>,
    /// Packets.
    pub packets: Option<u64>,
    /// Seconds after the SA was added.
    pub add_seconds: Option<u64>,
    /// Seconds after the SA was first used.
    pub use_seconds: Option<u64>,
}

/// Soft and hard lifetime limits of an SA or policy. Soft expiry raises an EXPIRE event
/// (`hard = false`, the signal to rekey); hard expiry deletes the SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Lifetimes {
    /// Soft limits.
    pub soft: LifetimeLimits,
    /// Hard limits.
    pub hard: LifetimeLimits,
}

impl Lifetimes {
    pub(crate) fn to_wire(self) -> nx::LifetimeConfig {
        let inf = |v: Option<u64>| v.unwrap_or(nx::XFRM_INF);
        let zero = |v: Option<u64>| v.unwrap_or(0);
        nx::LifetimeConfig {
            soft_byte_limit: inf(self.soft.bytes),
            hard_byte_limit: inf(self.hard.bytes),
            soft_packet_limit: inf(self.soft.packets),
            hard_packet_limit: inf(self.hard.packets),
            soft_add_expires_seconds: zero(self.soft.add_seconds),
            hard_add_expires_seconds: zero(self.hard.add_seconds),
            soft_use_expires_seconds: zero(self.soft.use_seconds),
            hard_use_expires_seconds: zero(self.hard.use_seconds),
        }
    }

    pub(crate) fn from_wire(c: &nx::LifetimeConfig) -> Self {
        let inf = |v: u64| (v != nx::XFRM_INF).then_some(v);
        let zero = |v: u64| (v != 0).then_some(v);
        Lifetimes {
            soft: LifetimeLimits {
                bytes: inf(c.soft_byte_limit),
                packets: inf(c.soft_packet_limit),
                add_seconds: zero(c.soft_add_expires_seconds),
                use_seconds: zero(c.soft_use_expires_seconds),
            },
            hard: LifetimeLimits {
                bytes: inf(c.hard_byte_limit),
                packets: inf(c.hard_packet_limit),
                add_seconds: zero(c.hard_add_expires_seconds),
                use_seconds: zero(c.hard_use_expires_seconds),
            },
        }
    }
}

/// The current lifetime of an SA or policy: its traffic counters and timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CurrentLifetime {
    /// Bytes processed (for ESP: the inner packet bytes the kernel accounted).
    pub bytes: u64,
    /// Packets processed.
    pub packets: u64,
    /// When it was added (seconds since the Unix epoch).
    pub add_time: u64,
    /// When it was first used (seconds since the Unix epoch), 0 if never.
    pub use_time: u64,
}

impl CurrentLifetime {
    pub(crate) fn from_wire(l: &nx::Lifetime) -> Self {
        CurrentLifetime {
            bytes: l.bytes,
            packets: l.packets,
            add_time: l.add_time,
            use_time: l.use_time,
        }
    }
}

/// Per-SA error statistics (`xfrm_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SaStats {
    /// Packets dropped as outside the replay window.
    pub replay_window: u32,
    /// Packets dropped as replayed.
    pub replay: u32,
    /// Packets that failed integrity checks.
    pub integrity_failed: u32,
}

/// UDP (NAT-T) or TCP encapsulation of ESP (`XFRMA_ENCAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encap {
    /// Encapsulation type; [`EncapType::EspInUdp`] for RFC 3948 NAT traversal.
    pub kind: EncapType,
    /// Source port (host order).
    pub sport: u16,
    /// Destination port (host order).
    pub dport: u16,
    /// Original address before NAT (for transport-mode checksum fix-ups), if known.
    pub original_address: Option<IpAddr>,
}

impl Encap {
    /// RFC 3948 ESP-in-UDP between the given ports (normally 4500/4500).
    pub fn udp(sport: u16, dport: u16) -> Self {
        Encap {
            kind: EncapType::EspInUdp,
            sport,
            dport,
            original_address: None,
        }
    }
}

/// Anti-replay state of an SA (`XFRMA_REPLAY_VAL` or `XFRMA_REPLAY_ESN_VAL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ReplayState {
    /// Last sequence number sent (64-bit with ESN).
    pub oseq: u64,
    /// Highest sequence number received.
    pub seq: u64,
    /// Replay window size in packets (0 when the kernel reported the legacy form).
    pub window: u32,
    /// Replay bitmap words.
    pub bitmap: Vec<u32>,
}

/// SA flags (`xfrm_usersa_info.flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SaFlags(pub u8);

impl SaFlags {
    /// Do not propagate ECN on decapsulation.
    pub const NOECN: SaFlags = SaFlags(1);
    /// Copy DSCP on decapsulation.
    pub const DECAP_DSCP: SaFlags = SaFlags(2);
    /// Do not set DF / do PMTU discovery.
    pub const NOPMTUDISC: SaFlags = SaFlags(4);
    /// Accept packets for this SA from any source (wildcard receive).
    pub const WILDRECV: SaFlags = SaFlags(8);
    /// Allow ICMP errors for this SA's traffic.
    pub const ICMP: SaFlags = SaFlags(16);
    /// The selector's family is unspecified on purpose.
    pub const AF_UNSPEC: SaFlags = SaFlags(32);
    /// 4-byte alignment (IPv6 AH interop).
    pub const ALIGN4: SaFlags = SaFlags(64);
    /// Extended sequence numbers (RFC 4303 §2.2.1).
    pub const ESN: SaFlags = SaFlags(128);

    /// Whether all bits of `other` are set.
    pub fn contains(self, other: SaFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for SaFlags {
    type Output = SaFlags;
    fn bitor(self, rhs: SaFlags) -> SaFlags {
        SaFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for SaFlags {
    fn bitor_assign(&mut self, rhs: SaFlags) {
        self.0 |= rhs.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_enums_keep_unknown_values() {
        assert_eq!(Proto::from(50), Proto::Esp);
        assert_eq!(Proto::from(43), Proto::Other(43));
        assert_eq!(u8::from(Proto::Other(43)), 43);
        assert_eq!(Direction::from(7), Direction::Other(7));
        assert_eq!(u16::from(AddressFamily::Inet6), 10);
    }

    #[test]
    fn prefix_parse() -> Result<()> {
        let p: IpPrefix = "10.1.0.0/16".parse()?;
        assert_eq!(p.len, 16);
        let h: IpPrefix = "fd00::1".parse()?;
        assert_eq!(h.len, 128);
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        Ok(())
    }

    #[test]
    fn selector_rejects_mixed_families() {
        let v4 = IpPrefix::host(
            "10.0.0.1"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        );
        let v6 = IpPrefix::host(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert!(Selector::new(v4, v6).is_err());
    }

    #[test]
    fn selector_wire_roundtrip() -> Result<()> {
        let s = Selector::new("10.0.0.0/24".parse()?, "192.168.1.7/32".parse()?)?
            .with_proto(ipproto::TCP)
            .with_dport(443);
        assert_eq!(Selector::from_wire(&s.to_wire()), s);
        let any = Selector::any();
        assert_eq!(Selector::from_wire(&any.to_wire()), any);
        Ok(())
    }

    #[test]
    fn lifetimes_map_infinity() {
        let l = Lifetimes {
            soft: LifetimeLimits {
                bytes: Some(1000),
                add_seconds: Some(30),
                ..Default::default()
            },
            hard: LifetimeLimits::default(),
        };
        let w = l.to_wire();
        assert_eq!(w.hard_byte_limit, u64::MAX);
        assert_eq!(w.hard_add_expires_seconds, 0);
        assert_eq!(Lifetimes::from_wire(&w), l);
    }
}
