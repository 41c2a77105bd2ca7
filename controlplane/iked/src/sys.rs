//! The few kernel interfaces iked reaches without a safe wrapper, and the
//! privilege drop.
//!
//! Everything `unsafe` in iked is in this module: two `setsockopt(2)` calls
//! whose options no safe crate exposes.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// `SOL_UDP` / `IPPROTO_UDP`.
const SOL_UDP: libc::c_int = 17;
/// `UDP_ENCAP` (linux/udp.h).
const UDP_ENCAP: libc::c_int = 100;
/// `UDP_ENCAP_ESPINUDP` (RFC 3948).
const UDP_ENCAP_ESPINUDP: libc::c_int = 2;
/// `IP_XFRM_POLICY` (linux/in.h).
const IP_XFRM_POLICY: libc::c_int = 17;
/// `IPV6_XFRM_POLICY` (linux/in6.h).
const IPV6_XFRM_POLICY: libc::c_int = 35;
/// `XFRM_POLICY_IN` / `XFRM_POLICY_OUT` (linux/xfrm.h).
const XFRM_POLICY_IN: u8 = 0;
const XFRM_POLICY_OUT: u8 = 1;
/// `XFRM_POLICY_ALLOW`.
const XFRM_POLICY_ALLOW: u8 = 0;

/// Mark a UDP socket as the NAT-T socket: the kernel decapsulates
/// ESP-in-UDP packets (RFC 3948) arriving on it and passes packets that
/// start with the non-ESP marker (IKE) to the socket.
pub fn set_udp_encap_espinudp(sock: &impl AsFd) -> io::Result<()> {
    let val: libc::c_int = UDP_ENCAP_ESPINUDP;
    let fd = sock.as_fd().as_raw_fd();
    // SAFETY: `fd` is a valid open socket borrowed for the duration of the
    // call; `val` is a live c_int and its exact size is passed.
    #[expect(unsafe_code, reason = "UDP_ENCAP has no safe wrapper")]
    let rc = unsafe {
        libc::setsockopt(
            fd,
            SOL_UDP,
            UDP_ENCAP,
            (&raw const val).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The bytes of a `struct xfrm_userpolicy_info` that says "bypass IPsec"
/// for direction `dir` (linux/xfrm.h; x86-64 and every 64-bit Linux ABI:
/// selector 56 bytes, lifetime_cfg 64, lifetime_cur 32, then priority,
/// index, dir, action, flags, share; padded to 168).
fn bypass_policy(dir: u8, ipv6: bool) -> [u8; 168] {
    let mut b = [0u8; 168];
    // xfrm_selector.family (offset 40, native endian): the kernel rejects a
    // policy whose selector family is neither AF_INET nor AF_INET6.
    let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET } as u16;
    if let Some(f) = b.get_mut(40..42) {
        f.copy_from_slice(&family.to_ne_bytes());
    }
    // xfrm_lifetime_cfg: eight u64 limits, XFRM_INF (all ones) = no limit.
    if let Some(lft) = b.get_mut(56..120) {
        lft.fill(0xff);
    }
    // dir, action (ALLOW), flags, share at offsets 160..164.
    if let Some(tail) = b.get_mut(160..164) {
        tail.copy_from_slice(&[dir, XFRM_POLICY_ALLOW, 0, 0]);
    }
    b
}

/// Exempt a socket from IPsec policies in both directions (what strongSwan
/// does for its IKE sockets): IKE packets must never be caught by the very
/// policies that wait for IKE to negotiate their SAs.
pub fn bypass_ipsec(sock: &impl AsFd, ipv6: bool) -> io::Result<()> {
    let fd = sock.as_fd().as_raw_fd();
    let (level, opt) = if ipv6 {
        (libc::IPPROTO_IPV6, IPV6_XFRM_POLICY)
    } else {
        (libc::IPPROTO_IP, IP_XFRM_POLICY)
    };
    for dir in [XFRM_POLICY_IN, XFRM_POLICY_OUT] {
        let pol = bypass_policy(dir, ipv6);
        // SAFETY: `fd` is a valid open socket; `pol` is a live buffer whose
        // exact length is passed; the kernel copies it and keeps no pointer.
        #[expect(unsafe_code, reason = "IP_XFRM_POLICY has no safe wrapper")]
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                opt,
                pol.as_ptr().cast(),
                pol.len() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The capabilities iked keeps after start: network administration (XFRM,
/// TC, routes), binding ports below 1024 (stacks added by a refresh),
/// entering network namespaces (`setns` needs CAP_SYS_ADMIN) and BPF maps.
pub const KEPT_CAPABILITIES: &[&str] = &[
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_ADMIN",
    "CAP_BPF",
];

/// Drop every capability but [`KEPT_CAPABILITIES`] from the effective,
/// permitted and inheritable sets of the calling thread (threads created
/// afterwards inherit the reduced sets) and from the bounding set.
///
/// Returns `Ok(false)` when the process had none of them to begin with
/// (not running as root): nothing to drop.
pub fn drop_capabilities() -> io::Result<bool> {
    use rustix::thread::{CapabilitySet, CapabilitySets, capabilities, set_capabilities};
    let keep = CapabilitySet::NET_ADMIN
        | CapabilitySet::NET_BIND_SERVICE
        | CapabilitySet::SYS_ADMIN
        | CapabilitySet::BPF;
    let cur = capabilities(None)?;
    if cur.permitted.is_empty() {
        return Ok(false);
    }
    let sets = CapabilitySets {
        effective: cur.effective & keep,
        permitted: cur.permitted & keep,
        inheritable: CapabilitySet::empty(),
    };
    // The bounding set first (needs CAP_SETPCAP, which is still held).
    for cap in CapabilitySet::all().iter() {
        if !keep.contains(cap) {
            drop_bounding(cap);
        }
    }
    set_capabilities(None, sets)?;
    Ok(true)
}

fn drop_bounding(cap: rustix::thread::CapabilitySet) {
    // Failure (no CAP_SETPCAP, or a bit the kernel does not know) leaves the
    // bounding set as it was; the effective/permitted drop still happens.
    let _ = rustix::thread::remove_capability_from_bounding_set(cap);
}

#[cfg(test)]
mod tests {
    use crate::testutil::report_skip;

    use super::*;

    #[test]
    fn bypass_policy_layout() {
        let b = bypass_policy(XFRM_POLICY_OUT, false);
        assert_eq!(u16::from_ne_bytes([b[40], b[41]]), libc::AF_INET as u16);
        assert!(b[..40].iter().all(|&x| x == 0));
        assert!(b[56..120].iter().all(|&x| x == 0xff));
        assert_eq!(&b[160..164], &[1, 0, 0, 0]);
    }

    #[test]
    fn socket_options_apply_to_udp_sockets() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        set_udp_encap_espinudp(&s).unwrap();
        // The bypass policy needs CAP_NET_ADMIN; as root it must succeed.
        if rustix::process::geteuid().is_root() {
            bypass_ipsec(&s, false).unwrap();
        } else {
            report_skip(module_path!(), "the IP_XFRM_POLICY check needs root");
        }
    }
}
