//! Quick mode identities (RFC 2407 §4.6.2): traffic selectors as ID payloads for a host,
//! a subnet or an address range, with one protocol and one port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::IdPayload;
use crate::error::{Error, Result};
use crate::identity::{IdType, Identity};
use crate::wire::TrafficSelector;

fn addr_num(a: IpAddr) -> (bool, u128) {
    match a {
        IpAddr::V4(v) => (false, u128::from(u32::from(v))),
        IpAddr::V6(v) => (true, u128::from(v)),
    }
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// The prefix length if `start..=end` is exactly one CIDR block.
fn prefix_of(start: IpAddr, end: IpAddr) -> Option<u8> {
    let ((v6, s), (v6e, e)) = (addr_num(start), addr_num(end));
    if v6 != v6e || s > e {
        return None;
    }
    let bits: u32 = if v6 { 128 } else { 32 };
    let host = e ^ s;
    // host must be 2^k - 1 and s aligned to it.
    if host.checked_add(1).is_some_and(|x| x.is_power_of_two()) || host == u128::MAX {
        if s & host != 0 {
            return None;
        }
        let host_bits = 128 - host.leading_zeros();
        Some((bits - host_bits.min(bits)) as u8)
    } else {
        None
    }
}

fn mask_bytes(v6: bool, len: u8) -> Vec<u8> {
    let bits = if v6 { 128 } else { 32 };
    let len = u32::from(len).min(bits);
    let m: u128 = if len == 0 {
        0
    } else {
        (u128::MAX << (128 - len)) >> (128 - bits)
    };
    if v6 {
        m.to_be_bytes().to_vec()
    } else {
        (m as u32).to_be_bytes().to_vec()
    }
}

/// An ID payload for a traffic selector. The selector must name one port or all ports.
pub fn ts_to_id(ts: &TrafficSelector) -> Result<IdPayload> {
    let TrafficSelector::Range {
        ip_protocol,
        start_port,
        end_port,
        start,
        end,
    } = ts
    else {
        return Err(Error::Config(
            "IKEv1 cannot express this traffic selector".into(),
        ));
    };
    let port = match (*start_port, *end_port) {
        (0, 65535) => 0,
        (a, b) if a == b => a,
        (a, b) => {
            return Err(Error::Config(format!(
                "IKEv1 quick mode IDs carry one port or all ports, not {a}-{b}"
            )));
        }
    };
    let v6 = start.is_ipv6();
    if v6 != end.is_ipv6() {
        return Err(Error::Config("selector mixes IPv4 and IPv6".into()));
    }
    let (id_type, data) = if start == end {
        (
            if v6 {
                IdType::IPV6_ADDR
            } else {
                IdType::IPV4_ADDR
            },
            addr_bytes(*start),
        )
    } else if let Some(len) = prefix_of(*start, *end) {
        let mut d = addr_bytes(*start);
        d.extend_from_slice(&mask_bytes(v6, len));
        (
            if v6 {
                IdType::IPV6_ADDR_SUBNET
            } else {
                IdType::IPV4_ADDR_SUBNET
            },
            d,
        )
    } else {
        let mut d = addr_bytes(*start);
        d.extend_from_slice(&addr_bytes(*end));
        (
            if v6 {
                IdType::IPV6_ADDR_RANGE
            } else {
                IdType::IPV4_ADDR_RANGE
            },
            d,
        )
    };
    Ok(IdPayload {
        id_type,
        protocol: *ip_protocol,
        port,
        data,
    })
}

fn v4(b: &[u8]) -> Option<IpAddr> {
    let a: [u8; 4] = b.try_into().ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(a)))
}

fn v6(b: &[u8]) -> Option<IpAddr> {
    let a: [u8; 16] = b.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(a)))
}

/// The traffic selector an ID payload names (INVALID-ID-INFORMATION if it names none).
pub fn id_to_ts(id: &IdPayload) -> Result<TrafficSelector> {
    let bad = || Error::Protocol(format!("quick mode ID of type {} is invalid", id.id_type.0));
    let d = id.data.as_slice();
    let (start, end) = match id.id_type {
        IdType::IPV4_ADDR => {
            let a = v4(d).ok_or_else(bad)?;
            (a, a)
        }
        IdType::IPV6_ADDR => {
            let a = v6(d).ok_or_else(bad)?;
            (a, a)
        }
        IdType::IPV4_ADDR_SUBNET | IdType::IPV6_ADDR_SUBNET => {
            let is6 = id.id_type == IdType::IPV6_ADDR_SUBNET;
            let n = if is6 { 16 } else { 4 };
            if d.len() != 2 * n {
                return Err(bad());
            }
            let (a, m) = d.split_at(n);
            let (an, mn) = if is6 {
                (
                    u128::from_be_bytes(a.try_into().map_err(|_| bad())?),
                    u128::from_be_bytes(m.try_into().map_err(|_| bad())?),
                )
            } else {
                (
                    u128::from(u32::from_be_bytes(a.try_into().map_err(|_| bad())?)),
                    u128::from(u32::from_be_bytes(m.try_into().map_err(|_| bad())?)),
                )
            };
            let full: u128 = if is6 { u128::MAX } else { u128::from(u32::MAX) };
            let host = !mn & full;
            // The mask must be contiguous.
            if host.checked_add(1).is_some_and(|x| !x.is_power_of_two()) {
                return Err(bad());
            }
            let s = an & mn;
            let e = s | host;
            if is6 {
                (IpAddr::V6(s.into()), IpAddr::V6(e.into()))
            } else {
                (IpAddr::V4((s as u32).into()), IpAddr::V4((e as u32).into()))
            }
        }
        IdType::IPV4_ADDR_RANGE => {
            if d.len() != 8 {
                return Err(bad());
            }
            let (a, b) = d.split_at(4);
            (v4(a).ok_or_else(bad)?, v4(b).ok_or_else(bad)?)
        }
        IdType::IPV6_ADDR_RANGE => {
            if d.len() != 32 {
                return Err(bad());
            }
            let (a, b) = d.split_at(16);
            (v6(a).ok_or_else(bad)?, v6(b).ok_or_else(bad)?)
        }
        _ => return Err(bad()),
    };
    if addr_num(start).1 > addr_num(end).1 {
        return Err(bad());
    }
    let (start_port, end_port) = if id.port == 0 {
        (0, 65535)
    } else {
        (id.port, id.port)
    };
    Ok(TrafficSelector::Range {
        ip_protocol: id.protocol,
        start_port,
        end_port,
        start,
        end,
    })
}

/// The phase 1 ID payload for an identity (protocol and port 0: RFC 2407 §4.6.2 lets the
/// receiver ignore them).
pub fn identity_payload(id: &Identity) -> IdPayload {
    IdPayload {
        id_type: id.id_type(),
        protocol: 0,
        port: 0,
        data: id.data(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ikev2::ts;

    #[test]
    fn selectors_round_trip() {
        let subnet = ts::subnet(
            "10.1.0.0"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            24,
        );
        let id = ts_to_id(&subnet).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.id_type, IdType::IPV4_ADDR_SUBNET);
        assert_eq!(id.data, [10, 1, 0, 0, 255, 255, 255, 0]);
        assert_eq!(id_to_ts(&id).ok(), Some(subnet.clone()));
        let host6 = ts::host(
            "2001:db8::1"
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        );
        let id = ts_to_id(&host6).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.id_type, IdType::IPV6_ADDR);
        assert_eq!(id_to_ts(&id).ok(), Some(host6));
        let range = TrafficSelector::Range {
            ip_protocol: 17,
            start_port: 53,
            end_port: 53,
            start: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 10)),
            end: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 20)),
        };
        let id = ts_to_id(&range).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (id.id_type, id.protocol, id.port),
            (IdType::IPV4_ADDR_RANGE, 17, 53)
        );
        assert_eq!(id_to_ts(&id).ok(), Some(range));
        let all6 = ts::subnet("::".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
        let id = ts_to_id(&all6).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.id_type, IdType::IPV6_ADDR_SUBNET);
        assert_eq!(id_to_ts(&id).ok(), Some(all6));
        // Non-contiguous masks and port ranges are refused.
        let mut bad = ts_to_id(&subnet).unwrap_or_else(|e| panic!("{e}"));
        bad.data = vec![10, 1, 0, 0, 255, 0, 255, 0];
        assert!(id_to_ts(&bad).is_err());
        let ports = TrafficSelector::Range {
            ip_protocol: 6,
            start_port: 1000,
            end_port: 2000,
            start: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 10)),
            end: IpAddr::V4(Ipv4Addr::new(10, 2, 0, 10)),
        };
        assert!(ts_to_id(&ports).is_err());
    }
}
