//! The IP filter rule model shared by the profile's `IPSEC … ENDIPSEC` block
//! ([`crate::profile`]) and the IPsec policy file's filter statements
//! ([`crate::filter_policy`]).
//!
//! A [`FilterRule`] is one *filter* in configured order, written from the
//! outbound point of view for bidirectional rules (z/OS: the source address
//! and port are the local ones of an outbound packet; the mirrored inbound
//! filter swaps source and destination). The dataplane compiles a list of
//! them into its lookup tables; first match in list order decides.

use std::fmt;
use std::net::IpAddr;

use crate::lex::Pos;

/// The address family a filter applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4 (`IPSECRule`, `all4`).
    V4,
    /// IPv6 (`IPSEC6Rule`, `all6`).
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        if addr.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    /// The lowest and highest address of the family.
    pub fn full_range(self) -> AddrRange {
        match self {
            Self::V4 => AddrRange {
                lo: IpAddr::V4(0.into()),
                hi: IpAddr::V4(u32::MAX.into()),
            },
            Self::V6 => AddrRange {
                lo: IpAddr::V6(0.into()),
                hi: IpAddr::V6(u128::MAX.into()),
            },
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// An inclusive range of addresses of one family (a host is `lo == hi`, a
/// prefix is the range it covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrRange {
    /// First address.
    pub lo: IpAddr,
    /// Last address (same family as `lo`, not below it).
    pub hi: IpAddr,
}

impl AddrRange {
    /// One address.
    pub fn host(a: IpAddr) -> Self {
        Self { lo: a, hi: a }
    }

    /// The addresses covered by `a/len` (host bits of `a` are ignored).
    /// `None` if `len` is longer than the address.
    pub fn prefix(a: IpAddr, len: u8) -> Option<Self> {
        match a {
            IpAddr::V4(v4) => {
                if len > 32 {
                    return None;
                }
                let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                let lo = u32::from(v4) & !host;
                Some(Self {
                    lo: IpAddr::V4(lo.into()),
                    hi: IpAddr::V4((lo | host).into()),
                })
            }
            IpAddr::V6(v6) => {
                if len > 128 {
                    return None;
                }
                let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                let lo = u128::from(v6) & !host;
                Some(Self {
                    lo: IpAddr::V6(lo.into()),
                    hi: IpAddr::V6((lo | host).into()),
                })
            }
        }
    }

    /// A range `lo - hi`; `None` if the families differ or `lo > hi`.
    pub fn range(lo: IpAddr, hi: IpAddr) -> Option<Self> {
        (lo.is_ipv4() == hi.is_ipv4() && lo <= hi).then_some(Self { lo, hi })
    }

    /// The family of the range.
    pub fn family(&self) -> Family {
        Family::of(self.lo)
    }

    /// Does the range contain `a`?
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.lo.is_ipv4() && self.lo <= a && a <= self.hi
    }

    /// The prefix length if the range is exactly one prefix.
    pub fn as_prefix(&self) -> Option<u8> {
        let (lo, hi, bits) = match (self.lo, self.hi) {
            (IpAddr::V4(l), IpAddr::V4(h)) => {
                (u128::from(u32::from(l)), u128::from(u32::from(h)), 32)
            }
            (IpAddr::V6(l), IpAddr::V6(h)) => (u128::from(l), u128::from(h), 128),
            _ => return None,
        };
        let span = hi ^ lo;
        // span must be 0…01…1 and lo must have those bits clear.
        if span & span.wrapping_add(1) != 0 || lo & span != 0 {
            return None;
        }
        let host_bits = 128 - span.leading_zeros();
        u8::try_from(bits - host_bits).ok()
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else if let Some(len) = self.as_prefix() {
            write!(f, "{}/{len}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// An inclusive range of port numbers (or ICMP types/codes, OSPF types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First value.
    pub lo: u16,
    /// Last value.
    pub hi: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: Self = Self { lo: 0, hi: 65535 };
    /// Every ICMP type or code (0–255).
    pub const ANY_U8: Self = Self { lo: 0, hi: 255 };

    /// One value.
    pub fn single(v: u16) -> Self {
        Self { lo: v, hi: v }
    }

    /// Does the range contain `v`?
    pub fn contains(&self, v: u16) -> bool {
        self.lo <= v && v <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// IP protocol numbers with names in the filter syntax.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IGMP.
    pub const IGMP: u8 = 2;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ESP.
    pub const ESP: u8 = 50;
    /// AH.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// OSPF.
    pub const OSPF: u8 = 89;
}

/// What part of a packet beyond the protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Match {
    /// Nothing (all protocols, or a protocol without ports).
    Any,
    /// TCP or UDP ports (outbound view: `src` is the local port of an
    /// outbound packet for bidirectional rules).
    Ports {
        /// Source port range.
        src: PortRange,
        /// Destination port range.
        dst: PortRange,
    },
    /// ICMP / ICMPv6 type and code ranges.
    Icmp {
        /// Type range (0–255).
        types: PortRange,
        /// Code range (0–255).
        codes: PortRange,
    },
    /// OSPF packet type range.
    Ospf {
        /// Type range (1–5 in practice).
        types: PortRange,
    },
}

impl L4Match {
    /// True if the match puts no condition beyond the protocol.
    pub fn is_any(&self) -> bool {
        match *self {
            Self::Any => true,
            Self::Ports { src, dst } => src == PortRange::ANY && dst == PortRange::ANY,
            Self::Icmp { types, codes } => types == PortRange::ANY_U8 && codes == PortRange::ANY_U8,
            Self::Ospf { types } => types == PortRange::ANY_U8,
        }
    }
}

/// Which traffic a rule applies to by where it comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Routing {
    /// Traffic to or from this host (the default).
    Local,
    /// Traffic forwarded through this host.
    Routed,
    /// Both.
    Either,
}

/// The direction(s) a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Both directions: as written for outbound packets, mirrored (source
    /// and destination swapped) for inbound ones.
    Bidirectional,
    /// Inbound packets only, as written.
    Inbound,
    /// Outbound packets only, as written.
    Outbound,
}

/// A TCP connection-setup restriction of a bidirectional rule
/// (`INBConnect` / `OUTBConnect`, `bidirectional InboundConnect|OutboundConnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectDir {
    /// Only inbound connections: an outbound TCP SYN (without ACK) does not
    /// match the rule.
    Inbound,
    /// Only outbound connections: an inbound TCP SYN does not match.
    Outbound,
}

/// What happens to a packet that matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FilterAction {
    /// Pass it.
    Permit,
    /// Drop it.
    Deny,
    /// Pass it only if it is protected by IPsec (an anchor for dynamic
    /// filters, or a manual tunnel).
    IpSec {
        /// The IpDynVpnAction or IpManVpnAction the rule names.
        vpn_action: String,
        /// True for an IpManVpnAction (manual tunnel).
        manual: bool,
    },
}

/// Which matches are logged (when logging is enabled for the set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogMode {
    /// Nothing.
    #[default]
    None,
    /// Permitted packets only (for IpSec rules: a valid SA was found).
    Permit,
    /// Denied packets only (for IpSec rules: no valid SA).
    Deny,
    /// Every match.
    All,
}

impl LogMode {
    /// Does this mode log a packet with the given outcome?
    pub fn logs(self, permitted: bool) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Permit => permitted,
            Self::Deny => !permitted,
        }
    }
}

/// What a discard looks like to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DiscardAction {
    /// Drop silently (the default).
    #[default]
    Silent,
    /// Also send ICMP/ICMPv6 "administratively prohibited" (accepted; the
    /// dataplane currently drops silently and says so when loading).
    Icmp,
}

/// One filter in configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// The filter name (`SYSDEFAULTRULE.n`, or the IpFilterRule name, with
    /// `~n` appended when one IpFilterRule generates several filters).
    pub name: String,
    /// Where the rule is written.
    pub pos: Pos,
    /// IPv4 or IPv6.
    pub family: Family,
    /// Source addresses (outbound view); empty = any address of the family.
    pub src: Vec<AddrRange>,
    /// Destination addresses (outbound view); empty = any.
    pub dst: Vec<AddrRange>,
    /// IP protocol; `None` = all protocols.
    pub protocol: Option<u8>,
    /// Ports, ICMP type/code or OSPF type.
    pub l4: L4Match,
    /// Local, routed or either.
    pub routing: Routing,
    /// Only fragments (routed traffic).
    pub fragments_only: bool,
    /// Security class of the interface (0 = any).
    pub secclass: u8,
    /// Direction(s).
    pub direction: Direction,
    /// TCP connection-setup restriction (bidirectional TCP rules only).
    pub connect: Option<ConnectDir>,
    /// Permit, deny or IpSec.
    pub action: FilterAction,
    /// What is logged.
    pub log: LogMode,
    /// How a discard looks.
    pub discard: DiscardAction,
}

impl FilterRule {
    /// A permit-everything rule of `family` named `name` (a convenient base
    /// for building rules in code and tests).
    pub fn permit_all(name: impl Into<String>, family: Family) -> Self {
        Self {
            name: name.into(),
            pos: Pos::default(),
            family,
            src: Vec::new(),
            dst: Vec::new(),
            protocol: None,
            l4: L4Match::Any,
            routing: Routing::Either,
            fragments_only: false,
            secclass: 0,
            direction: Direction::Bidirectional,
            connect: None,
            action: FilterAction::Permit,
            log: LogMode::None,
            discard: DiscardAction::Silent,
        }
    }
}

/// A set of filters with its set-wide settings: what the dataplane loads as
/// the `default` (profile) or `policy` set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterSet {
    /// The filters in order.
    pub rules: Vec<FilterRule>,
    /// Logging enabled for the set (profile `LOGENable`, policy
    /// `FilterLogging`). When off, no rule logs.
    pub log_enabled: bool,
    /// Log packets dropped by the implicit deny (`LOGImplicit`,
    /// `FilterLogImplicit`).
    pub log_implicit: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_and_ranges() {
        let p = AddrRange::prefix(a("10.1.2.3"), 16).unwrap();
        assert_eq!(p.lo, a("10.1.0.0"));
        assert_eq!(p.hi, a("10.1.255.255"));
        assert_eq!(p.as_prefix(), Some(16));
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.contains(a("10.1.9.9")));
        assert!(!p.contains(a("10.2.0.0")));
        assert!(!p.contains(a("::1")));
        assert_eq!(
            AddrRange::prefix(a("0.0.0.0"), 0).unwrap().as_prefix(),
            Some(0)
        );
        assert_eq!(AddrRange::prefix(a("::"), 0).unwrap().as_prefix(), Some(0));
        assert_eq!(
            AddrRange::prefix(a("fd00::1"), 128).unwrap().as_prefix(),
            Some(128)
        );
        assert!(AddrRange::prefix(a("1.2.3.4"), 33).is_none());
        let r = AddrRange::range(a("10.0.0.1"), a("10.0.0.6")).unwrap();
        assert_eq!(r.as_prefix(), None);
        assert_eq!(r.to_string(), "10.0.0.1-10.0.0.6");
        assert!(AddrRange::range(a("10.0.0.6"), a("10.0.0.1")).is_none());
        assert!(AddrRange::range(a("10.0.0.1"), a("::1")).is_none());
        assert_eq!(AddrRange::host(a("1.2.3.4")).to_string(), "1.2.3.4");
    }

    #[test]
    fn log_modes() {
        assert!(LogMode::All.logs(true) && LogMode::All.logs(false));
        assert!(LogMode::Permit.logs(true) && !LogMode::Permit.logs(false));
        assert!(!LogMode::Deny.logs(true) && LogMode::Deny.logs(false));
        assert!(!LogMode::None.logs(true));
    }
}
