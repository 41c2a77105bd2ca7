//! A minimal UDP driver for the IKEv1 engine, for interoperability checks (no kernel SAs).
//!
//! ```text
//! ikev1-peer --local 192.0.2.1 --remote 192.0.2.2 --id a.example.com --peer-id b.example.com
//!            (--psk SECRET | --cert CERT.pem --key KEY.pem --ca CA.pem)
//!            [--initiate] [--aggressive] [--seconds 20] [--pfs GROUP]
//!            [--local-ts 10.1.0.0/24 --remote-ts 10.2.0.0/24] [--dpd SECONDS]
//!            [--retries N] [--init-wait SECONDS]
//!            [--until up | deleted | forever] [--delete-after SECONDS]
//!            [--delete-child-after SECONDS] [--install]
//! ```
//!
//! Binds UDP 500 and 4500 on `--local` and drives an [`ike_proto::ikev1::Endpoint`]:
//! `--initiate` starts phase 1 and quick mode. Prints one line per event (`IKE_SA_UP`,
//! `CHILD_SA_UP`, `CHILD_SA_FAILED`, `CHILD_SA_DELETED`, `IKE_SA_DOWN`, `NAT`) and exits 0
//! when the `--until` condition holds: `up` (default: the ISAKMP SA and, when initiating,
//! the child SA are up) or `deleted` (the peer deleted the ISAKMP SA after a child was up).
//! With `--delete-after N` it deletes its ISAKMP SA N seconds after the child came up and
//! exits 0 once the DELETE is sent. With `--delete-child-after N` it deletes each child SA
//! (an ESP DELETE each, the ISAKMP SA stays) N seconds after it came up. `--until forever` keeps running for `--seconds` and
//! exits 0 if a child SA came up.
//!
//! `--install` (for VM scenarios with a kernel that has ESP) installs each child SA and its
//! tunnel-mode policies with `ip xfrm` and removes them on deletion — a stand-in for iked,
//! without UDP encapsulation (a NAT needs iked's encapsulation socket).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ike_proto::crypto::Secret;
use ike_proto::crypto::cert::ChainVerifier;
use ike_proto::crypto::encr::EncrAlg;
use ike_proto::crypto::integ::IntegAlg;
use ike_proto::crypto::sig::{LocalSigner, Signer};
use ike_proto::ikev1::{Endpoint, ExchangeMode, V1Peer};
use ike_proto::ikev2::{
    ChildConfig, ChildId, ChildProposal, EndpointConfig, Event, LocalAuth, PeerConfig, RemoteAuth,
    ts,
};
use ike_proto::ikev2::{InstallChildSa, SaKeys};
use ike_proto::wire::{DhGroup, TrafficSelector};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `a/len` when the selector is one prefix.
fn cidr(ts: &TrafficSelector) -> Option<String> {
    let TrafficSelector::Range { start, end, .. } = ts else {
        return None;
    };
    let (s, e, bits) = match (start, end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => {
            (u128::from(u32::from(*s)), u128::from(u32::from(*e)), 32u32)
        }
        (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(*s), u128::from(*e), 128u32),
        _ => return None,
    };
    let host = e ^ s;
    if host.checked_add(1).is_some_and(|x| !x.is_power_of_two()) || s & host != 0 {
        return None;
    }
    let len = bits - (128 - host.leading_zeros()).min(bits);
    Some(format!("{start}/{len}"))
}

fn ip(args: &[String]) -> bool {
    match std::process::Command::new("ip").args(args).status() {
        Ok(s) if s.success() => true,
        other => {
            println!("IP_FAILED ip {} ({other:?})", args.join(" "));
            false
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn state_args(c: &InstallChildSa, k: &SaKeys, src: IpAddr, dst: IpAddr) -> Vec<String> {
    let (src, dst, spi) = (src.to_string(), dst.to_string(), format!("{:#010x}", k.spi));
    let mut v = strings(&[
        "xfrm", "state", "add", "src", &src, "dst", &dst, "proto", "esp", "spi", &spi, "reqid",
        "1", "mode", "tunnel",
    ]);
    match c.integ {
        None => v.extend([
            "aead".into(),
            c.encr.kernel_name().into(),
            format!("0x{}", hex(k.encr_key.expose())),
            "128".into(),
        ]),
        Some(i) => v.extend([
            "enc".into(),
            c.encr.kernel_name().into(),
            format!("0x{}", hex(k.encr_key.expose())),
            "auth-trunc".into(),
            i.kernel_name().into(),
            format!("0x{}", hex(k.integ_key.expose())),
            (i.icv_len() * 8).to_string(),
        ]),
    }
    v
}

fn install(c: &InstallChildSa) {
    let (l, r) = (c.local.ip(), c.remote.ip());
    ip(&state_args(c, &c.inbound, r, l));
    ip(&state_args(c, &c.outbound, l, r));
    let (Some(lts), Some(rts)) = (
        c.local_ts.first().and_then(cidr),
        c.remote_ts.first().and_then(cidr),
    ) else {
        println!("IP_FAILED selectors are not prefixes");
        return;
    };
    let (ls, rs) = (l.to_string(), r.to_string());
    for (dir, src, dst, ts, td) in [
        ("out", &lts, &rts, &ls, &rs),
        ("in", &rts, &lts, &rs, &ls),
        ("fwd", &rts, &lts, &rs, &ls),
    ] {
        ip(&strings(&[
            "xfrm", "policy", "update", "src", src, "dst", dst, "dir", dir, "tmpl", "src", ts,
            "dst", td, "proto", "esp", "reqid", "1", "mode", "tunnel",
        ]));
    }
}

fn uninstall(local: IpAddr, remote: IpAddr, spi_in: u32, spi_out: u32) {
    for (src, dst, spi) in [(remote, local, spi_in), (local, remote, spi_out)] {
        let (src, dst, spi) = (src.to_string(), dst.to_string(), format!("{spi:#010x}"));
        ip(&strings(&[
            "xfrm", "state", "delete", "src", &src, "dst", &dst, "proto", "esp", "spi", &spi,
        ]));
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn net(s: &str) -> Result<ike_proto::wire::TrafficSelector, String> {
    let (a, l) = s.split_once('/').ok_or_else(|| format!("bad prefix {s}"))?;
    let a: IpAddr = a.parse().map_err(|e| format!("{s}: {e}"))?;
    let l: u8 = l.parse().map_err(|e| format!("{s}: {e}"))?;
    Ok(ts::subnet(a, l))
}

fn run() -> Result<bool, String> {
    let args: Vec<String> = std::env::args().collect();
    let need = |n: &str| arg(&args, n).ok_or_else(|| format!("missing {n}"));
    let flag = |n: &str| args.iter().any(|a| a == n);
    let local: IpAddr = need("--local")?
        .parse()
        .map_err(|e| format!("--local: {e}"))?;
    let remote: IpAddr = need("--remote")?
        .parse()
        .map_err(|e| format!("--remote: {e}"))?;
    let id = need("--id")?.parse().map_err(|e| format!("--id: {e}"))?;
    let peer_id = need("--peer-id")?
        .parse()
        .map_err(|e| format!("--peer-id: {e}"))?;
    let seconds: u64 = arg(&args, "--seconds")
        .map_or(Ok(20), |s| s.parse())
        .map_err(|e| format!("--seconds: {e}"))?;
    let initiate = flag("--initiate");
    let do_install = flag("--install");
    let until = arg(&args, "--until").unwrap_or_else(|| "up".into());
    let delete_after: Option<u64> = arg(&args, "--delete-after")
        .map(|s| s.parse())
        .transpose()
        .map_err(|e| format!("--delete-after: {e}"))?;
    let delete_child_after: Option<Duration> = arg(&args, "--delete-child-after")
        .map(|s| s.parse().map(Duration::from_secs))
        .transpose()
        .map_err(|e| format!("--delete-child-after: {e}"))?;
    let local_ts = net(&arg(&args, "--local-ts").unwrap_or_else(|| format!("{local}/32")))?;
    let remote_ts = net(&arg(&args, "--remote-ts").unwrap_or_else(|| format!("{remote}/32")))?;
    let pfs = arg(&args, "--pfs")
        .map(|g| g.parse::<u16>().map(DhGroup))
        .transpose()
        .map_err(|e| format!("--pfs: {e}"))?;
    let mut child = ChildConfig::tunnel("gk", vec![local_ts], vec![remote_ts]);
    child.proposals = vec![
        ChildProposal {
            encr: EncrAlg::AesCbc { key_bits: 128 },
            integ: Some(IntegAlg::HmacSha256_128),
            esn: false,
            pfs,
        },
        ChildProposal {
            encr: EncrAlg::AesGcm16 { key_bits: 256 },
            integ: None,
            esn: false,
            pfs,
        },
    ];
    let mut signer = None;
    let (local_auth, remote_auth) = match arg(&args, "--psk") {
        Some(psk) => (
            LocalAuth::Psk(Secret::from(psk.as_str())),
            RemoteAuth::Psk(Secret::from(psk.as_str())),
        ),
        None => {
            let cert = std::fs::read(need("--cert")?).map_err(|e| format!("--cert: {e}"))?;
            let key = std::fs::read(need("--key")?).map_err(|e| format!("--key: {e}"))?;
            let ca = std::fs::read(need("--ca")?).map_err(|e| format!("--ca: {e}"))?;
            let s = Arc::new(LocalSigner::from_pem(&key).map_err(|e| format!("--key: {e}"))?);
            let cert = ike_proto::crypto::cert::Certificate::from_pem(&cert)
                .map_err(|e| format!("--cert: {e}"))?;
            let mut v = ChainVerifier::new();
            v.add_ca_pem(&ca).map_err(|e| format!("--ca: {e}"))?;
            let la = LocalAuth::Signature {
                certs: vec![cert.der().to_vec()],
                key: s.key_algorithm(),
                schemes: Vec::new(),
            };
            signer = Some(s);
            (la, RemoteAuth::Certificate(Arc::new(v)))
        }
    };
    let mut peer = PeerConfig::psk("gk", id, peer_id, Secret::from("unused"), child);
    peer.local_auth = local_auth;
    peer.remote_auth = remote_auth;
    peer.remote_addrs = vec![remote];
    peer.dpd_interval = arg(&args, "--dpd")
        .map(|s| s.parse().map(Duration::from_secs))
        .transpose()
        .map_err(|e| format!("--dpd: {e}"))?;
    let mut v1 = V1Peer::new(peer);
    if flag("--aggressive") {
        v1.v1.initiate = ExchangeMode::Aggressive;
        v1.v1.aggressive_psk = true;
    }
    let mut config = EndpointConfig::default();
    if let Some(r) = arg(&args, "--retries") {
        config.retries = r.parse().map_err(|e| format!("--retries: {e}"))?;
    }
    if let Some(w) = arg(&args, "--init-wait") {
        config.init_wait = Duration::from_secs(w.parse().map_err(|e| format!("--init-wait: {e}"))?);
    }
    let mut ep = Endpoint::new(config);
    ep.set_peers(vec![v1]);
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ep.set_unix_time(unix);

    let s500 = UdpSocket::bind((local, 500)).map_err(|e| format!("bind 500: {e}"))?;
    let s4500 = UdpSocket::bind((local, 4500)).map_err(|e| format!("bind 4500: {e}"))?;
    for s in [&s500, &s4500] {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    if initiate {
        ep.connect(
            start,
            "gk",
            SocketAddr::new(local, 500),
            SocketAddr::new(remote, 500),
        )
        .map_err(|e| format!("connect: {e}"))?;
    }
    let (mut ike_up, mut child_up, mut child_at, mut done) = (false, false, None, false);
    // Children to delete with `--delete-child-after`, and when each came up.
    let mut children: Vec<(ChildId, Instant)> = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now.duration_since(start) > Duration::from_secs(seconds) {
            if until == "forever" {
                return Ok(child_up);
            }
            println!("TIMEOUT");
            return Ok(false);
        }
        for (s, port) in [(&s500, 500u16), (&s4500, 4500u16)] {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                ep.handle_datagram(
                    now,
                    SocketAddr::new(local, port),
                    from,
                    buf.get(..n).unwrap_or(&[]),
                );
            }
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        if let (Some(at), Some(d)) = (child_at, delete_after)
            && now.duration_since(at) >= Duration::from_secs(d)
        {
            for sa in ep.ike_sas(now) {
                let _ = ep.delete_ike(now, sa.id);
            }
            child_at = None;
        }
        if let Some(d) = delete_child_after {
            let (due, keep): (Vec<_>, Vec<_>) = children
                .into_iter()
                .partition(|(_, at)| now.duration_since(*at) >= d);
            children = keep;
            for (child, _) in due {
                if let Err(e) = ep.delete_child(now, child) {
                    println!("DELETE_CHILD_FAILED {e}");
                }
            }
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::SignRequest {
                    id, scheme, octets, ..
                } => {
                    let r = signer
                        .as_ref()
                        .ok_or_else(|| "no key".to_string())
                        .and_then(|s| s.sign(scheme, &octets).map_err(|e| e.to_string()));
                    ep.handle_signature(now, id, r);
                }
                Event::IkeSaUp {
                    peer_id,
                    local,
                    remote,
                    ..
                } => {
                    let mode = ep.ike_sas(now).last().map_or("?", |s| s.mode.name());
                    println!(
                        "IKE_SA_UP mode={mode} peer_id={peer_id} local={local} remote={remote}"
                    );
                    ike_up = true;
                }
                Event::InstallChildSa(c) => {
                    if do_install {
                        install(&c);
                    }
                    println!(
                        "CHILD_SA_UP spi_in={:08x} spi_out={:08x} encr={:?} integ={:?} encap={} hard={}",
                        c.inbound.spi,
                        c.outbound.spi,
                        c.encr,
                        c.integ,
                        c.encap.is_some(),
                        c.lifetimes.hard_secs
                    );
                    child_up = true;
                    child_at = Some(now);
                    children.push((c.child, now));
                }
                Event::ChildSaFailed { reason, .. } => println!("CHILD_SA_FAILED {reason}"),
                Event::DeleteChildSa {
                    spi_in, spi_out, ..
                } => {
                    if do_install {
                        uninstall(local, remote, spi_in, spi_out);
                    }
                    println!("CHILD_SA_DELETED spi_in={spi_in:08x}");
                }
                Event::IkeSaDown { reason, .. } => {
                    println!("IKE_SA_DOWN {reason:?}");
                    if child_up && (until == "deleted" || delete_after.is_some()) {
                        done = true;
                    }
                }
                Event::NatDetected {
                    local_nat,
                    remote_nat,
                    ..
                } => {
                    println!("NAT local={local_nat} remote={remote_nat}");
                }
                _ => {}
            }
        }
        while let Some(t) = ep.poll_transmit() {
            let sock = if t.local.port() == 4500 {
                &s4500
            } else {
                &s500
            };
            if let Err(e) = sock.send_to(&t.data, t.remote) {
                println!("SEND_ERROR {e}");
            }
        }
        if done || (until == "up" && delete_after.is_none() && ike_up && child_up) {
            // Give the peer a moment to get our last message.
            std::thread::sleep(Duration::from_millis(300));
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ikev1-peer: {e}");
            ExitCode::from(2)
        }
    }
}
