//! Translating policy-file objects into XFRM objects: selectors (address
//! ranges and port ranges become prefix/mask blocks), algorithms, keys.

use std::net::IpAddr;

use gatekey_config::ike_policy::{
    AddrSpec, EspAuth, EspEncrypt, IpManVpnAction, IpsecProto, PortRange, Protocol,
};
use gatekey_xfrm::{
    AeadAlgorithm, AesKeySize, CipherAlgorithm, IntegrityAlgorithm, IpPrefix, SaCrypto, SecretKey,
    Selector,
};

/// Most XFRM selectors one rule may expand to (ranges that are not prefix
/// aligned, port ranges that are not mask aligned).
pub const MAX_SELECTORS: usize = 64;

/// The prefixes that exactly cover `spec`; `*` becomes `0.0.0.0/0` or `::/0`
/// of `family_v6`.
pub fn prefixes(spec: &AddrSpec, family_v6: bool) -> Vec<IpPrefix> {
    match spec.bounds() {
        None => vec![if family_v6 {
            IpPrefix::ANY_V6
        } else {
            IpPrefix::ANY_V4
        }],
        Some((IpAddr::V4(lo), IpAddr::V4(hi))) => {
            range_blocks(u128::from(u32::from(lo)), u128::from(u32::from(hi)), 32)
                .into_iter()
                .map(|(a, len)| IpPrefix {
                    addr: IpAddr::V4(u32::try_from(a).unwrap_or(0).into()),
                    len,
                })
                .collect()
        }
        Some((IpAddr::V6(lo), IpAddr::V6(hi))) => range_blocks(u128::from(lo), u128::from(hi), 128)
            .into_iter()
            .map(|(a, len)| IpPrefix {
                addr: IpAddr::V6(a.into()),
                len,
            })
            .collect(),
        Some(_) => Vec::new(),
    }
}

/// Split the inclusive range `lo..=hi` of `bits`-bit numbers into aligned
/// blocks `(start, prefix length)`.
fn range_blocks(lo: u128, hi: u128, bits: u8) -> Vec<(u128, u8)> {
    let last_of = |cur: u128, k: u32| -> Option<u128> {
        if k >= 128 {
            (cur == 0).then_some(u128::MAX)
        } else {
            cur.checked_add((1u128 << k) - 1)
        }
    };
    let mut out = Vec::new();
    let mut cur = lo;
    loop {
        // The largest aligned block starting at `cur` that ends by `hi`.
        let mut k = if cur == 0 {
            u32::from(bits)
        } else {
            cur.trailing_zeros().min(u32::from(bits))
        };
        while k > 0 && last_of(cur, k).is_none_or(|l| l > hi) {
            k -= 1;
        }
        out.push((cur, bits.saturating_sub(u8::try_from(k).unwrap_or(bits))));
        let last = last_of(cur, k).unwrap_or(u128::MAX);
        if last >= hi || out.len() > MAX_SELECTORS {
            break;
        }
        cur = last + 1;
    }
    out
}

/// `(port, mask)` blocks covering a port range; `(0, 0)` for any.
pub fn port_masks(r: PortRange) -> Vec<(u16, u16)> {
    if r.is_any() {
        return vec![(0, 0)];
    }
    range_blocks(u128::from(r.lo), u128::from(r.hi), 16)
        .into_iter()
        .map(|(p, len)| {
            let mask = if len == 0 {
                0
            } else {
                u16::MAX << (16 - u32::from(len))
            };
            (u16::try_from(p).unwrap_or(0), mask)
        })
        .collect()
}

/// Every outbound selector for traffic from `src` to `dst` with `proto`
/// and ports; an error if they mix families or expand to too many.
pub fn selectors(
    src: &AddrSpec,
    dst: &AddrSpec,
    proto: Protocol,
    sport: PortRange,
    dport: PortRange,
) -> Result<Vec<Selector>, String> {
    let v6 = src.is_ipv6().or(dst.is_ipv6()).unwrap_or(false);
    let proto = match proto {
        Protocol::All => 0,
        Protocol::Number(n) => n,
    };
    let with_ports = matches!(proto, 6 | 17 | 132);
    let sps = if with_ports {
        port_masks(sport)
    } else {
        vec![(0, 0)]
    };
    let dps = if with_ports {
        port_masks(dport)
    } else {
        vec![(0, 0)]
    };
    let mut out = Vec::new();
    for s in prefixes(src, v6) {
        for d in prefixes(dst, v6) {
            for &(sp, spm) in &sps {
                for &(dp, dpm) in &dps {
                    let mut sel = Selector::new(s, d).map_err(|e| e.to_string())?;
                    sel.proto = proto;
                    sel.sport = sp;
                    sel.sport_mask = spm;
                    sel.dport = dp;
                    sel.dport_mask = dpm;
                    out.push(sel);
                    if out.len() > MAX_SELECTORS {
                        return Err(format!(
                            "the traffic selectors expand to more than {MAX_SELECTORS} kernel policies; use prefixes instead of ranges"
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn aes(bits: u16) -> Result<AesKeySize, String> {
    AesKeySize::from_bits(u32::from(bits)).ok_or_else(|| format!("AES key length {bits}"))
}

fn integrity(a: EspAuth) -> Result<IntegrityAlgorithm, String> {
    Ok(match a {
        EspAuth::HmacSha2_256_128 => IntegrityAlgorithm::HmacSha256,
        EspAuth::HmacSha2_384_192 => IntegrityAlgorithm::HmacSha384,
        EspAuth::HmacSha2_512_256 => IntegrityAlgorithm::HmacSha512,
        EspAuth::HmacSha1 => IntegrityAlgorithm::HmacSha1,
        EspAuth::HmacMd5 => IntegrityAlgorithm::HmacMd5,
        EspAuth::Aes128Xcbc96 => IntegrityAlgorithm::AesXcbc,
        EspAuth::Null | EspAuth::AesGmac128 | EspAuth::AesGmac256 => {
            return Err(format!(
                "{a:?} is not supported by the kernel interface yet"
            ));
        }
    })
}

/// The kernel transform for a manual SA direction.
pub fn manual_crypto(
    m: &IpManVpnAction,
    encryption_key: &[u8],
    auth_key: &[u8],
) -> Result<SaCrypto, String> {
    if m.auth_proto == IpsecProto::Ah {
        return Ok(SaCrypto::ah(
            integrity(m.auth)?,
            SecretKey::from_slice(auth_key),
        ));
    }
    Ok(match m.encrypt {
        EspEncrypt::AesGcm16(b) => SaCrypto::esp_aead(
            AeadAlgorithm::AesGcm16(aes(b)?),
            SecretKey::from_slice(encryption_key),
        ),
        EspEncrypt::ChaCha20Poly1305 => SaCrypto::esp_aead(
            AeadAlgorithm::ChaCha20Poly1305,
            SecretKey::from_slice(encryption_key),
        ),
        EspEncrypt::AesCbc(b) => SaCrypto::esp(
            CipherAlgorithm::AesCbc(aes(b)?),
            SecretKey::from_slice(encryption_key),
            integrity(m.auth)?,
            SecretKey::from_slice(auth_key),
        ),
        EspEncrypt::TripleDes => SaCrypto::esp(
            CipherAlgorithm::TripleDesCbc,
            SecretKey::from_slice(encryption_key),
            integrity(m.auth)?,
            SecretKey::from_slice(auth_key),
        ),
        EspEncrypt::DoNot => SaCrypto::esp(
            CipherAlgorithm::Null,
            SecretKey::from_slice(&[]),
            integrity(m.auth)?,
            SecretKey::from_slice(auth_key),
        ),
        EspEncrypt::Des => return Err("DES is not supported by the kernel interface".into()),
    })
}

/// The NMI name of an IPsec cipher and its key length in bits.
pub fn encrypt_name(e: EspEncrypt) -> (&'static str, Option<u16>) {
    match e {
        EspEncrypt::DoNot => ("DoNot", None),
        EspEncrypt::Des => ("DES", Some(56)),
        EspEncrypt::TripleDes => ("3DES", Some(168)),
        EspEncrypt::AesCbc(b) => ("AES_CBC", Some(b)),
        EspEncrypt::AesGcm16(b) => ("AES_GCM_16", Some(b)),
        EspEncrypt::ChaCha20Poly1305 => ("CHACHA20_POLY1305", Some(256)),
    }
}

/// The NMI name of an IPsec integrity algorithm (None for Null).
pub fn auth_name(a: EspAuth) -> Option<&'static str> {
    Some(match a {
        EspAuth::Null => return None,
        EspAuth::AesGmac128 => "AES_GMAC_128",
        EspAuth::AesGmac256 => "AES_GMAC_256",
        EspAuth::Aes128Xcbc96 => "AES128_XCBC_96",
        EspAuth::HmacMd5 => "HMAC_MD5",
        EspAuth::HmacSha1 => "HMAC_SHA1",
        EspAuth::HmacSha2_256_128 => "HMAC_SHA2_256_128",
        EspAuth::HmacSha2_384_192 => "HMAC_SHA2_384_192",
        EspAuth::HmacSha2_512_256 => "HMAC_SHA2_512_256",
    })
}

/// Split an address selector into the NMI base/prefix/range fields.
pub fn addr_fields(spec: &AddrSpec) -> (Option<IpAddr>, Option<u8>, Option<IpAddr>) {
    match *spec {
        AddrSpec::Any => (None, None, None),
        AddrSpec::Host(a) => (Some(a), None, None),
        AddrSpec::Prefix(a, l) => (Some(a), Some(l), None),
        AddrSpec::Range(a, b) => (Some(a), None, Some(b)),
    }
}

/// A stable request ID in iked's band for an object of `kind` named `name`
/// (FNV-1a of both), avoiding `taken`.
pub fn reqid_for(kind: &str, name: &str, taken: &std::collections::BTreeSet<u32>) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in kind.bytes().chain([b':']).chain(name.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut n = (h & 0x00ff_ffff).max(1);
    loop {
        let r = crate::kernel::REQID_BASE | n;
        if !taken.contains(&r) {
            return r;
        }
        n = (n % 0x00ff_fffe) + 1;
    }
}

/// The kernel SA pair (outbound, inbound) of a negotiated child SA.
pub fn child_sas(
    inst: &ike_proto::ikev2::InstallChildSa,
    reqid: u32,
) -> Result<(gatekey_xfrm::Sa, gatekey_xfrm::Sa), String> {
    use gatekey_xfrm::{Encap, LifetimeLimits, Lifetimes, Mode, Sa, Spi};
    use ike_proto::crypto::encr::EncrAlg;
    use ike_proto::crypto::integ::IntegAlg;
    let integ = |i: Option<IntegAlg>| -> Result<IntegrityAlgorithm, String> {
        Ok(match i {
            Some(IntegAlg::HmacSha256_128) => IntegrityAlgorithm::HmacSha256,
            Some(IntegAlg::HmacSha384_192) => IntegrityAlgorithm::HmacSha384,
            Some(IntegAlg::HmacSha512_256) => IntegrityAlgorithm::HmacSha512,
            Some(IntegAlg::HmacSha1_96) => IntegrityAlgorithm::HmacSha1,
            Some(IntegAlg::HmacMd5_96) => IntegrityAlgorithm::HmacMd5,
            other => return Err(format!("integrity {other:?} cannot be installed")),
        })
    };
    let crypto = |k: &ike_proto::ikev2::SaKeys| -> Result<SaCrypto, String> {
        let ek = SecretKey::from_slice(k.encr_key.expose());
        let ik = SecretKey::from_slice(k.integ_key.expose());
        Ok(match inst.encr {
            EncrAlg::AesGcm16 { key_bits } => {
                SaCrypto::esp_aead(AeadAlgorithm::AesGcm16(aes(key_bits)?), ek)
            }
            EncrAlg::ChaCha20Poly1305 => SaCrypto::esp_aead(AeadAlgorithm::ChaCha20Poly1305, ek),
            EncrAlg::AesCbc { key_bits } => SaCrypto::esp(
                CipherAlgorithm::AesCbc(aes(key_bits)?),
                ek,
                integ(inst.integ)?,
                ik,
            ),
            EncrAlg::TripleDes => {
                SaCrypto::esp(CipherAlgorithm::TripleDesCbc, ek, integ(inst.integ)?, ik)
            }
        })
    };
    let mode = match inst.mode {
        ike_proto::ikev2::Mode::Transport => Mode::Transport,
        _ => Mode::Tunnel,
    };
    let lt = &inst.lifetimes;
    let limit = |secs: u64, bytes: u64| LifetimeLimits {
        bytes: (bytes > 0).then_some(bytes),
        packets: None,
        add_seconds: (secs > 0).then_some(secs),
        use_seconds: None,
    };
    // A little jitter on the soft limit so both ends do not start the rekey
    // at the same instant.
    let jitter = (u64::from(inst.inbound.spi) % 16).min(lt.soft_secs / 20);
    let lifetimes = Lifetimes {
        soft: limit(lt.soft_secs.saturating_sub(jitter), lt.soft_bytes),
        hard: limit(lt.hard_secs, lt.hard_bytes),
    };
    let (l, r) = (inst.local.ip(), inst.remote.ip());
    let out_c = crypto(&inst.outbound)?;
    let legacy = out_c.is_legacy();
    let mut out_sa = Sa::new(l, r, Spi(inst.outbound.spi), out_c)
        .mode(mode)
        .reqid(reqid)
        .esn(inst.esn)
        .lifetimes(lifetimes)
        .allow_legacy(legacy);
    let mut in_sa = Sa::new(r, l, Spi(inst.inbound.spi), crypto(&inst.inbound)?)
        .mode(mode)
        .reqid(reqid)
        .esn(inst.esn)
        .lifetimes(lifetimes)
        .replay_window(if inst.esn { 128 } else { 32 })
        .allow_legacy(legacy);
    if let Some(e) = inst.encap {
        out_sa = out_sa.encap(Encap::udp(e.local_port, e.remote_port));
        in_sa = in_sa.encap(Encap::udp(e.remote_port, e.local_port));
    }
    if mode == Mode::Transport {
        // The kernel checks a transport-mode SA's selector against the
        // packets themselves: the two endpoints.
        out_sa = out_sa.selector(Selector::hosts(l, r).map_err(|e| e.to_string())?);
        in_sa = in_sa.selector(Selector::hosts(r, l).map_err(|e| e.to_string())?);
    }
    if mode == Mode::Tunnel && carries_other_family(inst) {
        // IPv4 in IPv6 or IPv6 in IPv4: without XFRM_STATE_AF_UNSPEC the
        // kernel gives the SA's any-selector the outer family, and the
        // inner packets of the other family find no SA.
        out_sa.flags |= gatekey_xfrm::SaFlags::AF_UNSPEC;
        in_sa.flags |= gatekey_xfrm::SaFlags::AF_UNSPEC;
    }
    Ok((out_sa, in_sa))
}

/// Do the child's selectors name addresses of another family than its
/// endpoints?
fn carries_other_family(inst: &ike_proto::ikev2::InstallChildSa) -> bool {
    let outer_v4 = inst.local.ip().is_ipv4();
    inst.local_ts
        .iter()
        .chain(&inst.remote_ts)
        .any(|t| match t {
            ike_proto::wire::TrafficSelector::Range { start, .. } => start.is_ipv4() != outer_v4,
            _ => false,
        })
}

/// Policies for a child SA whose rule has no fail-closed policies: one per
/// pair of negotiated selectors that is a prefix.
pub fn child_policies(
    inst: &ike_proto::ikev2::InstallChildSa,
    reqid: u32,
) -> Vec<gatekey_xfrm::Policy> {
    use ike_proto::wire::TrafficSelector;
    let spec = |ts: &TrafficSelector| match ts {
        TrafficSelector::Range {
            start,
            end,
            ip_protocol,
            start_port,
            end_port,
        } => Some((
            if start == end {
                AddrSpec::Host(*start)
            } else {
                AddrSpec::Range(*start, *end)
            },
            *ip_protocol,
            PortRange {
                lo: *start_port,
                hi: *end_port,
            },
        )),
        TrafficSelector::Other { .. } => None,
    };
    let mode = match inst.mode {
        ike_proto::ikev2::Mode::Transport => gatekey_xfrm::Mode::Transport,
        _ => gatekey_xfrm::Mode::Tunnel,
    };
    let mut out = Vec::new();
    for lt in inst.local_ts.iter().filter_map(spec) {
        for rt in inst.remote_ts.iter().filter_map(spec) {
            let proto = if lt.1 == 0 {
                Protocol::All
            } else {
                Protocol::Number(lt.1)
            };
            if let Ok(sels) = selectors(&lt.0, &rt.0, proto, lt.2, rt.2) {
                for sel in sels {
                    out.extend(crate::kernel::tunnel_policies(
                        sel,
                        inst.local.ip(),
                        inst.remote.ip(),
                        gatekey_xfrm::Proto::Esp,
                        mode,
                        reqid,
                        crate::kernel::PRIORITY_TUNNEL,
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    fn install(
        local: &str,
        remote: &str,
        ts: (&str, &str),
        mode: ike_proto::ikev2::Mode,
    ) -> ike_proto::ikev2::InstallChildSa {
        use ike_proto::crypto::Secret;
        use ike_proto::ikev2::{ChildId, IkeSaId, InstallChildSa, Lifetimes, SaKeys};
        use ike_proto::wire::TrafficSelector;
        let keys = |spi| SaKeys {
            spi,
            encr_key: Secret::from(vec![7u8; 36]),
            integ_key: Secret::from(Vec::new()),
        };
        let sel = |a: &str| TrafficSelector::Range {
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: a.parse().unwrap(),
            end: a.parse().unwrap(),
        };
        InstallChildSa {
            ike_sa: IkeSaId(1),
            child: ChildId(1),
            name: "r".into(),
            initiator: true,
            local: format!("{local}:500").parse().unwrap(),
            remote: format!("{remote}:500").parse().unwrap(),
            mode,
            encap: None,
            encr: ike_proto::crypto::encr::EncrAlg::AesGcm16 { key_bits: 256 },
            integ: None,
            esn: false,
            inbound: keys(0x1000),
            outbound: keys(0x2000),
            local_ts: vec![sel(ts.0)],
            remote_ts: vec![sel(ts.1)],
            lifetimes: Lifetimes::default(),
            replaces: None,
        }
    }

    #[test]
    fn inter_family_tunnels_get_unspecified_selector_families() {
        use gatekey_xfrm::SaFlags;
        use ike_proto::ikev2::Mode;
        let v4_in_v6 = install(
            "[2001:db8::1]",
            "[2001:db8::2]",
            ("10.1.0.1", "10.2.0.1"),
            Mode::Tunnel,
        );
        let (o, i) = super::child_sas(&v4_in_v6, 0x6b00_0001).unwrap();
        assert!(o.flags.contains(SaFlags::AF_UNSPEC) && i.flags.contains(SaFlags::AF_UNSPEC));
        let v6_in_v4 = install(
            "192.0.2.1",
            "192.0.2.2",
            ("fd01::1", "fd02::1"),
            Mode::Tunnel,
        );
        let (o, _) = super::child_sas(&v6_in_v4, 0x6b00_0001).unwrap();
        assert!(o.flags.contains(SaFlags::AF_UNSPEC));
        let same = install(
            "192.0.2.1",
            "192.0.2.2",
            ("10.1.0.1", "10.2.0.1"),
            Mode::Tunnel,
        );
        let (o, i) = super::child_sas(&same, 0x6b00_0001).unwrap();
        assert!(!o.flags.contains(SaFlags::AF_UNSPEC) && !i.flags.contains(SaFlags::AF_UNSPEC));
    }

    #[test]
    fn transport_mode_sas_get_the_endpoints_as_selector() {
        let t = install(
            "192.0.2.1",
            "192.0.2.2",
            ("192.0.2.1", "192.0.2.2"),
            ike_proto::ikev2::Mode::Transport,
        );
        let (o, i) = super::child_sas(&t, 0x6b00_0002).unwrap();
        o.validate().unwrap();
        i.validate().unwrap();
        let host = |a: &str| gatekey_xfrm::IpPrefix::host(a.parse().unwrap());
        assert_eq!(
            (o.selector.src, o.selector.dst),
            (host("192.0.2.1"), host("192.0.2.2"))
        );
        assert_eq!(
            (i.selector.src, i.selector.dst),
            (host("192.0.2.2"), host("192.0.2.1"))
        );
        let tunnel = install(
            "192.0.2.1",
            "192.0.2.2",
            ("10.1.0.1", "10.2.0.1"),
            ike_proto::ikev2::Mode::Tunnel,
        );
        let (o, _) = super::child_sas(&tunnel, 0x6b00_0002).unwrap();
        o.validate().unwrap();
    }

    use super::*;

    fn p(s: &str) -> AddrSpec {
        AddrSpec::parse(s).unwrap()
    }

    #[test]
    fn prefixes_cover_ranges_exactly() {
        let v: Vec<String> = prefixes(&p("10.0.0.1-10.0.0.6"), false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            v,
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        let v: Vec<String> = prefixes(&p("10.1.0.0/16"), false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(v, ["10.1.0.0/16"]);
        assert_eq!(prefixes(&p("*"), true), vec![IpPrefix::ANY_V6]);
        let v: Vec<String> = prefixes(&p("0.0.0.0/0"), false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(v, ["0.0.0.0/0"]);
        let v: Vec<String> = prefixes(&p("::/0"), true)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(v, ["::/0"]);
        let v: Vec<String> = prefixes(&p("2001:db8::1"), true)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(v, ["2001:db8::1/128"]);
    }

    #[test]
    fn port_ranges_become_masks() {
        assert_eq!(port_masks(PortRange::ANY), vec![(0, 0)]);
        assert_eq!(port_masks(PortRange { lo: 22, hi: 22 }), vec![(22, 0xffff)]);
        assert_eq!(
            port_masks(PortRange {
                lo: 1024,
                hi: 65535
            }),
            vec![
                (1024, 0xfc00),
                (2048, 0xf800),
                (4096, 0xf000),
                (8192, 0xe000),
                (16384, 0xc000),
                (32768, 0x8000)
            ]
        );
    }

    #[test]
    fn selectors_combine_and_are_bounded() {
        let s = selectors(
            &p("10.1.0.0/16"),
            &p("10.2.0.0/16"),
            Protocol::Number(6),
            PortRange::ANY,
            PortRange { lo: 443, hi: 443 },
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].proto, s[0].dport, s[0].dport_mask), (6, 443, 0xffff));
        // Ports are ignored for protocols without them.
        let s = selectors(
            &p("10.1.0.1"),
            &p("10.2.0.1"),
            Protocol::All,
            PortRange { lo: 1, hi: 9 },
            PortRange::ANY,
        )
        .unwrap();
        assert_eq!((s.len(), s[0].sport_mask), (1, 0));
        let e = selectors(
            &p("10.0.0.1-10.0.255.254"),
            &p("10.1.0.1-10.1.255.254"),
            Protocol::All,
            PortRange::ANY,
            PortRange::ANY,
        );
        assert!(e.is_err());
    }

    #[test]
    fn reqids_are_stable_and_unique() {
        let mut taken = std::collections::BTreeSet::new();
        let a = reqid_for("dyn", "net1", &taken);
        assert_eq!(a, reqid_for("dyn", "net1", &taken));
        assert!(crate::kernel::is_ours(a));
        taken.insert(a);
        assert_ne!(a, reqid_for("dyn", "net1", &taken));
        assert_ne!(
            reqid_for("dyn", "x", &Default::default()),
            reqid_for("man", "x", &Default::default())
        );
    }
}
