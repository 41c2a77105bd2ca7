//! A stack's IKE sockets: UDP 500 and 4500 (NAT-T), IPv4 and IPv6, created
//! inside the stack's network namespace.
//!
//! - Every socket learns the local address a datagram was sent to
//!   (`IP_PKTINFO` / `IPV6_RECVPKTINFO`) and answers from that address, so a
//!   multi-homed gateway replies from the address the peer used.
//! - Every socket bypasses IPsec policies (`IP_XFRM_POLICY`), so the
//!   policies that wait for IKE never catch IKE itself.
//! - The 4500 sockets are `UDP_ENCAP_ESPINUDP`: the kernel decapsulates
//!   ESP-in-UDP itself; IKE messages carry the 4-byte non-ESP marker (RFC
//!   3948 §2.2), stripped on receive and added on send; NAT keepalives (one
//!   0xFF byte) are dropped.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage,
    recvmsg, sendmsg, setsockopt, sockopt,
};
use tokio::io::Interest;

use crate::netns::Netns;
use crate::sys;

/// The largest IKE datagram accepted (IKEv2 messages are usually far
/// smaller; fragmentation keeps them under the path MTU).
pub const MAX_DATAGRAM: usize = 65535;

/// Which port a datagram used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// The IKE port (500).
    Ike,
    /// The NAT-T port (4500), with the non-ESP marker.
    Natt,
}

/// A received IKE datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Our address and port the peer sent to.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
    /// Which socket it arrived on.
    pub port: PortKind,
    /// The IKE message (non-ESP marker removed).
    pub data: Vec<u8>,
}

/// One bound socket.
#[derive(Debug)]
pub struct IkeSocket {
    sock: tokio::net::UdpSocket,
    port: PortKind,
    ipv6: bool,
    bound: SocketAddr,
}

impl IkeSocket {
    /// The address the socket is bound to.
    pub fn bound(&self) -> SocketAddr {
        self.bound
    }

    /// Which port this is.
    pub fn port(&self) -> PortKind {
        self.port
    }

    /// True for the IPv6 sockets.
    pub fn is_ipv6(&self) -> bool {
        self.ipv6
    }

    /// Receive the next IKE datagram (skipping keepalives and stray
    /// non-IKE packets).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        loop {
            let (n, remote, local) = self
                .sock
                .async_io(Interest::READABLE, || {
                    recv_pktinfo(&self.sock, buf, self.bound)
                })
                .await?;
            let data = buf.get(..n).unwrap_or(&[]);
            let payload = match self.port {
                PortKind::Ike => data,
                PortKind::Natt => match data {
                    [0xff] => continue, // NAT keepalive (RFC 3948 §2.3)
                    [0, 0, 0, 0, rest @ ..] => rest,
                    _ => continue, // ESP the kernel did not take, or junk
                },
            };
            return Ok(Datagram {
                local,
                remote,
                port: self.port,
                data: payload.to_vec(),
            });
        }
    }

    /// Send `data` to `remote` from `local`'s address (port ignored; the
    /// socket's port is used), adding the non-ESP marker on port 4500.
    pub async fn send(&self, local: IpAddr, remote: SocketAddr, data: &[u8]) -> io::Result<()> {
        let marker: &[u8] = match self.port {
            PortKind::Ike => &[],
            PortKind::Natt => &[0, 0, 0, 0],
        };
        self.sock
            .async_io(Interest::WRITABLE, || {
                send_from(&self.sock, local, remote, marker, data)
            })
            .await
    }

    /// Send `data` exactly as given (the IKE engine adds the non-ESP marker
    /// itself).
    pub async fn send_raw(&self, local: IpAddr, remote: SocketAddr, data: &[u8]) -> io::Result<()> {
        self.sock
            .async_io(Interest::WRITABLE, || {
                send_from(&self.sock, local, remote, &[], data)
            })
            .await
    }

    /// Send a NAT keepalive (one 0xFF byte) from the NAT-T socket.
    pub async fn send_keepalive(&self, local: IpAddr, remote: SocketAddr) -> io::Result<()> {
        self.sock
            .async_io(Interest::WRITABLE, || {
                send_from(&self.sock, local, remote, &[], &[0xff])
            })
            .await
    }
}

fn recv_pktinfo(
    sock: &impl AsFd,
    buf: &mut [u8],
    bound: SocketAddr,
) -> io::Result<(usize, SocketAddr, SocketAddr)> {
    let mut cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let n = msg.bytes;
    let remote = msg
        .address
        .as_ref()
        .and_then(storage_to_std)
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut local = bound;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(pi) => {
                    let a = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                    local = SocketAddr::new(IpAddr::V4(a), bound.port());
                }
                ControlMessageOwned::Ipv6PacketInfo(pi) => {
                    let a = Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                    local = SocketAddr::new(IpAddr::V6(a), bound.port());
                }
                _ => {}
            }
        }
    }
    Ok((n, unmap(remote), unmap(local)))
}

/// IPv4-mapped IPv6 addresses never occur (the IPv6 sockets are
/// V6ONLY), but normalize anyway.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

fn storage_to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6().map(|v6| {
        SocketAddr::V6(SocketAddrV6::new(
            v6.ip(),
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
        ))
    })
}

fn send_from(
    sock: &impl AsFd,
    local: IpAddr,
    remote: SocketAddr,
    prefix: &[u8],
    data: &[u8],
) -> io::Result<()> {
    let iov = [IoSlice::new(prefix), IoSlice::new(data)];
    let fd = sock.as_fd().as_raw_fd();
    let sent = match (local, remote) {
        (IpAddr::V4(l), SocketAddr::V4(r)) => {
            let pi = nix::libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: nix::libc::in_addr {
                    s_addr: u32::from(l).to_be(),
                },
                ipi_addr: nix::libc::in_addr { s_addr: 0 },
            };
            let cm = [ControlMessage::Ipv4PacketInfo(&pi)];
            let use_cm: &[ControlMessage<'_>] = if l.is_unspecified() { &[] } else { &cm };
            sendmsg(
                fd,
                &iov,
                use_cm,
                MsgFlags::MSG_DONTWAIT,
                Some(&SockaddrIn::from(r)),
            )
        }
        (IpAddr::V6(l), SocketAddr::V6(r)) => {
            let pi = nix::libc::in6_pktinfo {
                ipi6_addr: nix::libc::in6_addr {
                    s6_addr: l.octets(),
                },
                ipi6_ifindex: 0,
            };
            let cm = [ControlMessage::Ipv6PacketInfo(&pi)];
            let use_cm: &[ControlMessage<'_>] = if l.is_unspecified() { &[] } else { &cm };
            sendmsg(
                fd,
                &iov,
                use_cm,
                MsgFlags::MSG_DONTWAIT,
                Some(&SockaddrIn6::from(r)),
            )
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "local and remote address families differ",
            ));
        }
    }
    .map_err(io::Error::from)?;
    if sent != prefix.len() + data.len() {
        return Err(io::Error::other("short UDP send"));
    }
    Ok(())
}

/// The sockets of one stack.
#[derive(Debug)]
pub struct StackSockets {
    /// Every socket that could be opened (IPv6 ones are missing when IPv6
    /// is disabled in the namespace).
    pub sockets: Vec<IkeSocket>,
}

impl StackSockets {
    /// The socket for sending to `remote` on `port`.
    pub fn socket_for(&self, port: PortKind, remote: &SocketAddr) -> Option<&IkeSocket> {
        self.sockets
            .iter()
            .find(|s| s.port == port && s.ipv6 == remote.is_ipv6())
    }
}

/// Open the UDP sockets of a stack inside `netns`. Must run inside a Tokio
/// runtime. IPv4 sockets are required; IPv6 ones are skipped (with a
/// returned note) when the namespace has IPv6 disabled.
pub fn open(
    netns: &Netns,
    ike_port: u16,
    natt_port: u16,
) -> io::Result<(StackSockets, Vec<String>)> {
    let mut std_socks = Vec::new();
    let mut notes = Vec::new();
    let plan = [
        (false, ike_port, PortKind::Ike),
        (false, natt_port, PortKind::Natt),
        (true, ike_port, PortKind::Ike),
        (true, natt_port, PortKind::Natt),
    ];
    let opened = netns.run(|| {
        let mut out = Vec::new();
        for (v6, port, kind) in plan {
            out.push((v6, kind, bind_one(v6, port, kind)));
        }
        Ok(out)
    })?;
    for (v6, kind, r) in opened {
        match r {
            Ok(s) => std_socks.push((v6, kind, s)),
            Err(e) if v6 && is_v6_unavailable(&e) => {
                notes.push(format!("IPv6 unavailable ({e}); IKE over IPv6 disabled"));
            }
            Err(e) => return Err(e),
        }
    }
    notes.dedup();
    let mut sockets = Vec::new();
    for (ipv6, port, s) in std_socks {
        let bound = s.local_addr()?;
        sockets.push(IkeSocket {
            sock: tokio::net::UdpSocket::from_std(s)?,
            port,
            ipv6,
            bound,
        });
    }
    Ok((StackSockets { sockets }, notes))
}

fn is_v6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EAFNOSUPPORT) | Some(nix::libc::EADDRNOTAVAIL)
    )
}

fn bind_one(ipv6: bool, port: u16, kind: PortKind) -> io::Result<UdpSocket> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, bind, socket};
    let family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(io::Error::from)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(io::Error::from)?;
    if ipv6 {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(io::Error::from)?;
        setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0)),
        )
        .map_err(io::Error::from)?;
    } else {
        setsockopt(&fd, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
        bind(
            fd.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)),
        )
        .map_err(io::Error::from)?;
    }
    sys::bypass_ipsec(&fd, ipv6)?;
    if kind == PortKind::Natt {
        sys::set_udp_encap_espinudp(&fd)?;
    }
    Ok(UdpSocket::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::report_skip;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[tokio::test]
    async fn ike_and_natt_round_trip_with_marker_and_pktinfo() {
        if !is_root() {
            report_skip(
                module_path!(),
                "binding IKE sockets with IP_XFRM_POLICY needs root",
            );
            return;
        }
        let (socks, _notes) = open_on_free_ports().await;
        let ike = socks
            .socket_for(PortKind::Ike, &"127.0.0.1:1".parse().unwrap())
            .unwrap();
        let natt = socks
            .socket_for(PortKind::Natt, &"127.0.0.1:1".parse().unwrap())
            .unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();

        // IKE port: bytes unchanged; the local address is learned.
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"hello", ("127.0.0.1", ike.bound().port()))
            .unwrap();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let d = ike.recv(&mut buf).await.unwrap();
        assert_eq!(d.data, b"hello");
        assert_eq!(d.local, SocketAddr::new(lo, ike.bound().port()));
        assert_eq!(d.remote, peer.local_addr().unwrap());
        ike.send(lo, d.remote, b"reply").await.unwrap();
        let mut b2 = [0u8; 64];
        let (n, from) = peer.recv_from(&mut b2).unwrap();
        assert_eq!(&b2[..n], b"reply");
        assert_eq!(from.port(), ike.bound().port());

        // NAT-T port: keepalives and non-marker packets dropped, marker stripped.
        let natt_port = natt.bound().port();
        peer.send_to(&[0xff], ("127.0.0.1", natt_port)).unwrap();
        peer.send_to(&[0, 0, 0, 0, 9, 9], ("127.0.0.1", natt_port))
            .unwrap();
        let d = natt.recv(&mut buf).await.unwrap();
        assert_eq!(d.data, [9, 9]);
        assert_eq!(d.port, PortKind::Natt);
        natt.send(lo, d.remote, b"ike").await.unwrap();
        let (n, _) = peer.recv_from(&mut b2).unwrap();
        assert_eq!(&b2[..n], &[0, 0, 0, 0, b'i', b'k', b'e']);
        natt.send_keepalive(lo, d.remote).await.unwrap();
        let (n, _) = peer.recv_from(&mut b2).unwrap();
        assert_eq!(&b2[..n], &[0xff]);
    }

    async fn open_on_free_ports() -> (StackSockets, Vec<String>) {
        // Port 0 lets the kernel choose; both sockets must still differ.
        open(&Netns::current(), 0, 0).unwrap()
    }
}
