//! Traffic selector narrowing (RFC 7296 §2.9).

use std::net::IpAddr;

use crate::wire::TrafficSelector;

fn addr_num(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v) => (false, u128::from(u32::from(v))),
        IpAddr::V6(v) => (true, u128::from(v)),
    }
}

fn num_addr(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(n.into())
    } else {
        IpAddr::V4(u32::try_from(n).unwrap_or(u32::MAX).into())
    }
}

/// A selector for a whole address (any protocol and port).
pub fn host(a: IpAddr) -> TrafficSelector {
    TrafficSelector::Range {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start: a,
        end: a,
    }
}

/// A selector for a prefix `a/len` (any protocol and port).
pub fn subnet(a: IpAddr, len: u8) -> TrafficSelector {
    let (v6, n) = addr_num(a);
    let bits = if v6 { 128 } else { 32 };
    let len = u32::from(len).min(bits);
    let host_bits = bits - len;
    let mask: u128 = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    TrafficSelector::Range {
        ip_protocol: 0,
        start_port: 0,
        end_port: 65535,
        start: num_addr(v6, n & !mask),
        end: num_addr(v6, n | mask),
    }
}

/// The intersection of two selectors, if any.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    let (
        TrafficSelector::Range {
            ip_protocol: pa,
            start_port: sa,
            end_port: ea,
            start: a0,
            end: a1,
        },
        TrafficSelector::Range {
            ip_protocol: pb,
            start_port: sb,
            end_port: eb,
            start: b0,
            end: b1,
        },
    ) = (a, b)
    else {
        return None;
    };
    let proto = match (pa, pb) {
        (0, x) | (x, 0) => *x,
        (x, y) if x == y => *x,
        _ => return None,
    };
    let (sp, ep) = ((*sa).max(*sb), (*ea).min(*eb));
    if sp > ep {
        return None;
    }
    let ((v6a, a0), (_, a1)) = (addr_num(*a0), addr_num(*a1));
    let ((v6b, b0), (_, b1)) = (addr_num(*b0), addr_num(*b1));
    if v6a != v6b {
        return None;
    }
    let (s, e) = (a0.max(b0), a1.min(b1));
    if s > e {
        return None;
    }
    Some(TrafficSelector::Range {
        ip_protocol: proto,
        start_port: sp,
        end_port: ep,
        start: num_addr(v6a, s),
        end: num_addr(v6a, e),
    })
}

/// Responder narrowing: every non-empty intersection of a proposed selector with a
/// configured one.
pub fn narrow(
    proposed: &[TrafficSelector],
    configured: &[TrafficSelector],
) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for p in proposed {
        for c in configured {
            if let Some(x) = intersect(p, c)
                && !out.contains(&x)
            {
                out.push(x);
            }
        }
    }
    out
}

/// Whether every selector in `got` lies within some selector of `allowed`.
pub fn within(got: &[TrafficSelector], allowed: &[TrafficSelector]) -> bool {
    !got.is_empty()
        && got
            .iter()
            .all(|g| allowed.iter().any(|a| intersect(g, a).as_ref() == Some(g)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn narrowing() {
        let wide = subnet(ip("10.0.0.0"), 8);
        let narrow_cfg = subnet(ip("10.1.2.0"), 24);
        assert_eq!(intersect(&wide, &narrow_cfg), Some(narrow_cfg.clone()));
        assert_eq!(
            narrow(
                std::slice::from_ref(&wide),
                std::slice::from_ref(&narrow_cfg)
            ),
            vec![narrow_cfg.clone()]
        );
        let other = subnet(ip("192.168.0.0"), 16);
        assert!(narrow(&[other], std::slice::from_ref(&narrow_cfg)).is_empty());
        assert!(within(
            std::slice::from_ref(&narrow_cfg),
            std::slice::from_ref(&wide)
        ));
        assert!(!within(std::slice::from_ref(&wide), &[narrow_cfg]));
        let v6 = subnet(ip("2001:db8::"), 32);
        assert!(intersect(&v6, &wide).is_none());
        let tcp443 = TrafficSelector::Range {
            ip_protocol: 6,
            start_port: 443,
            end_port: 443,
            start: ip("10.0.0.1"),
            end: ip("10.0.0.1"),
        };
        assert_eq!(intersect(&tcp443, &wide), Some(tcp443.clone()));
        let udp = TrafficSelector::Range {
            ip_protocol: 17,
            start_port: 0,
            end_port: 65535,
            start: ip("10.0.0.0"),
            end: ip("10.255.255.255"),
        };
        assert!(intersect(&tcp443, &udp).is_none());
        assert_eq!(host(ip("10.0.0.1")), subnet(ip("10.0.0.1"), 32));
        assert_eq!(
            subnet(ip("0.0.0.0"), 0),
            TrafficSelector::Range {
                ip_protocol: 0,
                start_port: 0,
                end_port: 65535,
                start: ip("0.0.0.0"),
                end: ip("255.255.255.255"),
            }
        );
    }
}
