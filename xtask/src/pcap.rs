//! The capture check: read a pcap file and decide whether the traffic
//! between two sets of addresses was protected (ESP, AH, ESP-in-UDP) and
//! never in clear.

use std::net::IpAddr;

use crate::scenario::parse_prefix;

/// What one packet between the two endpoints was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Esp,
    Ah,
    /// ESP in UDP port 4500 (RFC 3948).
    EspInUdp,
    /// IKE on UDP 500, or on 4500 behind the non-ESP marker; NAT-T keepalives.
    Ike,
    /// ICMPv6 neighbour discovery and MLD: link housekeeping, not data.
    Housekeeping,
    /// Anything else: data in clear.
    Clear,
}

#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub packets: u64,
    pub between: u64,
    pub esp: u64,
    pub ah: u64,
    pub esp_in_udp: u64,
    pub ike: u64,
    pub clear: u64,
    pub first_clear: Option<String>,
}

impl Verdict {
    pub fn protected(&self) -> u64 {
        self.esp + self.ah + self.esp_in_udp
    }

    /// `None` if the check passes, else why it fails.
    pub fn failure(&self, min_protected: u64, a: &str, b: &str) -> Option<String> {
        if self.clear > 0 {
            return Some(format!(
                "{} cleartext packet(s) between {a} and {b} (first: {}); {} protected",
                self.clear,
                self.first_clear.as_deref().unwrap_or("?"),
                self.protected()
            ));
        }
        if self.protected() < min_protected {
            return Some(format!(
                "only {} protected packet(s) between {a} and {b}, expected at least {min_protected} \
                 ({} packets captured in all)",
                self.protected(),
                self.packets
            ));
        }
        None
    }

    pub fn summary(&self) -> String {
        format!(
            "{} packets, {} between the endpoints: {} ESP, {} AH, {} ESP-in-UDP, {} IKE, {} clear",
            self.packets, self.between, self.esp, self.ah, self.esp_in_udp, self.ike, self.clear
        )
    }
}

/// A set of address prefixes.
#[derive(Debug, Clone)]
pub struct Endpoint(Vec<(IpAddr, u8)>);

impl Endpoint {
    /// From `addr/len` strings. A host's interface address `192.0.2.1/24`
    /// means that address (not its subnet): host endpoints are given as
    /// full-length prefixes by the caller.
    pub fn new(prefixes: &[String]) -> Self {
        Endpoint(prefixes.iter().filter_map(|p| parse_prefix(p)).collect())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, len)| in_prefix(ip, *net, *len))
    }
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn le_or_be32(d: &[u8], at: usize, be: bool) -> Option<u32> {
    let b = [
        *d.get(at)?,
        *d.get(at + 1)?,
        *d.get(at + 2)?,
        *d.get(at + 3)?,
    ];
    Some(if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// Read a pcap file's packets as (link type, frame) pairs.
pub fn read_pcap(data: &[u8]) -> Result<(u32, Vec<&[u8]>), String> {
    let magic = le_or_be32(data, 0, false).ok_or("file too short for a pcap header")?;
    let be = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => false,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
        _ => return Err(format!("not a pcap file (magic {magic:08x})")),
    };
    let linktype = le_or_be32(data, 20, be).ok_or("truncated pcap header")?;
    let mut at = 24usize;
    let mut frames = Vec::new();
    while at < data.len() {
        let Some(caplen) = le_or_be32(data, at + 8, be) else {
            break; // truncated record at the end: tcpdump was stopped mid-write
        };
        let start = at + 16;
        let end = start.saturating_add(caplen as usize);
        match data.get(start..end) {
            Some(f) => frames.push(f),
            None => break,
        }
        at = end;
    }
    Ok((linktype, frames))
}

/// The IP packet inside a frame of this link type.
fn ip_payload(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    match linktype {
        // Ethernet, with any number of VLAN tags
        1 => {
            let mut at = 12;
            loop {
                let et = be16(frame, at)?;
                match et {
                    0x8100 | 0x88a8 => at += 4,
                    0x0800 | 0x86dd => return frame.get(at + 2..),
                    _ => return None,
                }
            }
        }
        // raw IP
        101 | 228 | 229 => Some(frame),
        // Linux cooked capture (SLL)
        113 => match be16(frame, 14)? {
            0x0800 | 0x86dd => frame.get(16..),
            _ => None,
        },
        _ => None,
    }
}

/// Where an IP fragment belongs: its datagram (source, destination,
/// protocol, identification) and whether it is the first fragment, the
/// one that carries the transport header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    pub datagram: (IpAddr, IpAddr, u8, u32),
    pub first: bool,
}

/// One classified IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub kind: Kind,
    /// A short description.
    pub what: String,
    /// Set for fragments; a non-first fragment's kind is its datagram's.
    pub fragment: Option<Fragment>,
}

/// Classify one IP packet.
pub fn classify(ip: &[u8]) -> Option<Packet> {
    let version = ip.first()? >> 4;
    let mut fragment = None;
    let (src, dst, mut proto, mut at) = match version {
        4 => {
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let (src, dst, proto) = (IpAddr::from(s), IpAddr::from(d), *ip.get(9)?);
            let flags_offset = be16(ip, 6)?;
            let (more, offset) = (flags_offset & 0x2000 != 0, flags_offset & 0x1fff);
            if more || offset != 0 {
                fragment = Some(Fragment {
                    datagram: (src, dst, proto, u32::from(be16(ip, 4)?)),
                    first: offset == 0,
                });
            }
            (src, dst, proto, ihl)
        }
        6 => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), *ip.get(6)?, 40)
        }
        _ => return None,
    };
    // IPv6 extension headers (hop-by-hop, routing, fragment, destination options)
    if version == 6 {
        for _ in 0..8 {
            match proto {
                0 | 43 | 60 => {
                    let next = *ip.get(at)?;
                    let len = (usize::from(*ip.get(at + 1)?) + 1) * 8;
                    proto = next;
                    at += len;
                }
                44 => {
                    proto = *ip.get(at)?;
                    let offset = be16(ip, at + 2)? >> 3;
                    let id = ip
                        .get(at + 4..at + 8)?
                        .try_into()
                        .ok()
                        .map(u32::from_be_bytes)?;
                    fragment = Some(Fragment {
                        datagram: (src, dst, proto, id),
                        first: offset == 0,
                    });
                    at += 8;
                }
                _ => break,
            }
        }
    }
    if fragment.is_some_and(|f| !f.first) {
        return Some(Packet {
            src,
            dst,
            kind: match proto {
                50 => Kind::Esp,
                51 => Kind::Ah,
                _ => Kind::Clear,
            },
            what: format!("fragment of an IP protocol {proto} datagram {src} > {dst}"),
            fragment,
        });
    }
    let l4 = ip.get(at..).unwrap_or_default();
    let (kind, what) = match proto {
        50 => (Kind::Esp, "ESP".to_string()),
        51 => (Kind::Ah, "AH".to_string()),
        17 => {
            let sport = be16(l4, 0)?;
            let dport = be16(l4, 2)?;
            let payload = l4.get(8..).unwrap_or_default();
            let what = format!("UDP {sport} > {dport}");
            if sport == 4500 || dport == 4500 {
                match payload {
                    [0xff] => (Kind::Ike, "NAT-T keepalive".to_string()),
                    [0, 0, 0, 0, ..] => (Kind::Ike, "IKE on 4500".to_string()),
                    p if p.len() >= 8 => (Kind::EspInUdp, "ESP in UDP".to_string()),
                    _ => (Kind::Clear, what),
                }
            } else if sport == 500 || dport == 500 {
                (Kind::Ike, "IKE".to_string())
            } else {
                (Kind::Clear, what)
            }
        }
        6 => {
            let sport = be16(l4, 0).unwrap_or(0);
            let dport = be16(l4, 2).unwrap_or(0);
            (Kind::Clear, format!("TCP {sport} > {dport}"))
        }
        1 => {
            let t = l4.first().copied().unwrap_or(255);
            let name = match t {
                0 => "echo reply",
                8 => "echo request",
                3 => "unreachable",
                _ => "",
            };
            (
                Kind::Clear,
                format!("ICMP type {t} {name}").trim_end().to_string(),
            )
        }
        58 => {
            let t = l4.first().copied().unwrap_or(0);
            match t {
                130..=137 | 143 => (Kind::Housekeeping, format!("ICMPv6 type {t}")),
                128 => (Kind::Clear, "ICMPv6 echo request".to_string()),
                129 => (Kind::Clear, "ICMPv6 echo reply".to_string()),
                _ => (Kind::Clear, format!("ICMPv6 type {t}")),
            }
        }
        p => (Kind::Clear, format!("IP protocol {p}")),
    };
    Some(Packet {
        src,
        dst,
        kind,
        what: format!("{what} {src} > {dst}"),
        fragment,
    })
}

/// Analyse a capture for the traffic between `a` and `b`.
pub fn analyse(data: &[u8], a: &Endpoint, b: &Endpoint) -> Result<Verdict, String> {
    let (linktype, frames) = read_pcap(data)?;
    let mut v = Verdict::default();
    // First fragments' kinds: the later fragments of an IKE message or of
    // ESP-in-UDP carry no UDP header and are what their first one was
    // (a fragment seen before its first one stays cleartext).
    let mut datagrams = std::collections::HashMap::new();
    for (i, f) in frames.iter().enumerate() {
        v.packets += 1;
        let Some(ip) = ip_payload(linktype, f) else {
            continue;
        };
        let Some(Packet {
            src,
            dst,
            mut kind,
            what,
            fragment,
        }) = classify(ip)
        else {
            continue;
        };
        match fragment {
            Some(f) if f.first => {
                datagrams.insert(f.datagram, kind);
            }
            Some(f) => {
                if let Some(k) = datagrams.get(&f.datagram) {
                    kind = *k;
                }
            }
            None => {}
        }
        let between = (a.contains(src) && b.contains(dst)) || (b.contains(src) && a.contains(dst));
        if !between {
            continue;
        }
        v.between += 1;
        match kind {
            Kind::Esp => v.esp += 1,
            Kind::Ah => v.ah += 1,
            Kind::EspInUdp => v.esp_in_udp += 1,
            Kind::Ike => v.ike += 1,
            Kind::Housekeeping => {}
            Kind::Clear => {
                v.clear += 1;
                if v.first_clear.is_none() {
                    v.first_clear = Some(format!("packet {}: {what}", i + 1));
                }
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        d.extend_from_slice(&[2, 0, 4, 0]);
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&65535u32.to_le_bytes());
        d.extend_from_slice(&1u32.to_le_bytes());
        for f in frames {
            d.extend_from_slice(&[0; 8]);
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(&(f.len() as u32).to_le_bytes());
            d.extend_from_slice(f);
        }
        d
    }

    fn eth_v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.extend_from_slice(l4);
        f.extend_from_slice(&ip);
        f
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&[0, 0, 0, 0]);
        u.extend_from_slice(payload);
        u
    }

    const A: [u8; 4] = [192, 0, 2, 1];
    const B: [u8; 4] = [192, 0, 2, 2];
    const C: [u8; 4] = [192, 0, 2, 3];

    fn ends() -> (Endpoint, Endpoint) {
        (
            Endpoint::new(&["192.0.2.1/32".into()]),
            Endpoint::new(&["192.0.2.2".into()]),
        )
    }

    #[test]
    fn esp_only_passes() {
        let (a, b) = ends();
        let data = pcap(&[
            eth_v4(A, B, 17, &udp(500, 500, &[1; 28])),
            eth_v4(A, B, 50, &[0, 0, 0x10, 1, 0, 0, 0, 1]),
            eth_v4(B, A, 50, &[0, 0, 0x10, 2, 0, 0, 0, 1]),
            eth_v4(
                A,
                B,
                17,
                &udp(4500, 4500, &[0, 0, 0x10, 1, 0, 0, 0, 2, 9, 9]),
            ),
            eth_v4(A, B, 17, &udp(4500, 4500, &[0xff])),
            eth_v4(A, C, 1, &[8, 0, 0, 0]), // not between a and b
        ]);
        let v = analyse(&data, &a, &b).unwrap_or_default();
        assert_eq!(
            (v.packets, v.between, v.esp, v.esp_in_udp, v.ike, v.clear),
            (6, 5, 2, 1, 2, 0)
        );
        assert_eq!(v.failure(1, "a", "b"), None);
        assert!(v.failure(4, "a", "b").is_some());
    }

    #[test]
    fn cleartext_fails_and_is_named() {
        let (a, b) = ends();
        let data = pcap(&[
            eth_v4(A, B, 50, &[0; 8]),
            eth_v4(B, A, 1, &[0, 0, 0, 0]),
            eth_v4(A, B, 17, &udp(4500, 4500, &[0, 0])),
        ]);
        let v = analyse(&data, &a, &b).unwrap_or_default();
        assert_eq!(v.clear, 2);
        let why = v.failure(1, "alice", "bob").unwrap_or_default();
        assert!(
            why.contains("2 cleartext packet(s) between alice and bob (first: packet 2: ICMP type 0 echo reply 192.0.2.2 > 192.0.2.1)"),
            "{why}"
        );
    }

    /// An IPv4 fragment: identification `id`, offset in 8-byte units, MF.
    fn frag_v4(
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        id: u16,
        offset: u16,
        more: bool,
        body: &[u8],
    ) -> Vec<u8> {
        let mut f = eth_v4(src, dst, proto, body);
        let fo = offset | if more { 0x2000 } else { 0 };
        f[14 + 4..14 + 6].copy_from_slice(&id.to_be_bytes());
        f[14 + 6..14 + 8].copy_from_slice(&fo.to_be_bytes());
        f
    }

    #[test]
    fn later_fragments_are_what_their_first_was() {
        let (a, b) = ends();
        let data = pcap(&[
            // A large IKE message in two fragments: both IKE.
            frag_v4(A, B, 17, 7, 0, true, &udp(500, 500, &[1; 64])),
            frag_v4(A, B, 17, 7, 9, false, &[2; 40]),
            // A cleartext UDP datagram in two fragments: both clear.
            frag_v4(B, A, 17, 8, 0, true, &udp(5000, 6000, &[3; 64])),
            frag_v4(B, A, 17, 8, 9, false, &[4; 40]),
            // A fragment whose first was never seen: clear.
            frag_v4(A, B, 17, 9, 9, false, &[5; 40]),
            // ESP fragments are ESP by their protocol.
            frag_v4(A, B, 50, 10, 0, true, &[0; 64]),
            frag_v4(A, B, 50, 10, 8, false, &[0; 16]),
        ]);
        let v = analyse(&data, &a, &b).unwrap_or_default();
        assert_eq!((v.ike, v.clear, v.esp), (2, 3, 2));
        assert!(
            v.first_clear
                .as_deref()
                .is_some_and(|w| w.starts_with("packet 3: UDP 5000 > 6000")),
            "{:?}",
            v.first_clear
        );
    }

    #[test]
    fn empty_capture_fails() {
        let (a, b) = ends();
        let v = analyse(&pcap(&[]), &a, &b).unwrap_or_default();
        assert!(
            v.failure(1, "a", "b")
                .is_some_and(|w| w.contains("only 0 protected"))
        );
        assert!(analyse(b"nonsense", &a, &b).is_err());
    }

    #[test]
    fn ipv6_nd_is_housekeeping_echo_is_clear() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        let s: std::net::Ipv6Addr = "2001:db8::1"
            .parse()
            .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
        let d: std::net::Ipv6Addr = "2001:db8::2"
            .parse()
            .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED);
        ip.extend_from_slice(&s.octets());
        ip.extend_from_slice(&d.octets());
        let mut nd = ip.clone();
        nd.extend_from_slice(&[136, 0, 0, 0]);
        let mut echo = ip;
        echo.extend_from_slice(&[128, 0, 0, 0]);
        let mut f1 = f.clone();
        f1.extend_from_slice(&nd);
        let mut f2 = f;
        f2.extend_from_slice(&echo);
        let a = Endpoint::new(&["2001:db8::1/128".into()]);
        let b = Endpoint::new(&["2001:db8::/126".into()]);
        let v = analyse(&pcap(&[f1, f2]), &a, &b).unwrap_or_default();
        assert_eq!((v.between, v.clear), (2, 1));
        assert!(
            v.first_clear
                .is_some_and(|c| c.contains("ICMPv6 echo request"))
        );
    }
}
