//! A minimal UDP driver for the IKEv2 engine, for interoperability checks (no kernel SAs).
//!
//! ```text
//! udp-peer --local 192.0.2.1 --remote 192.0.2.2 --id a.example.com --peer-id b.example.com \
//!          --psk SECRET [--initiate] [--seconds 20] [--local-ts 10.1.0.0/16 --remote-ts 10.2.0.0/16]
//!          [--proposal x25519-gcm256 | modp2048-cbc256]
//!          [--cert CERT.pem --key KEY.pem --ca CA.pem] [--fragment-size N] [--rekey-ike]
//! ```
//!
//! `--rekey-ike`: once up, rekey the IKE SA, then delete the new SA; prints `REKEY_OK` when
//! the peer answered the DELETE on the rekeyed SA (proving the new keys agree).
//!
//! With `--cert`, this end authenticates with a signature made by a local key (answering the
//! engine's sign requests) and checks the peer's certificate chain against `--ca`.
//!
//! Binds UDP 500 and 4500 on `--local`, runs until the IKE SA is established (and, when
//! initiating, the first child SA negotiated or refused), prints `IKE_SA_UP`, `CHILD_SA_UP`
//! or `CHILD_SA_FAILED` lines, and exits 0 on success.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ike_proto::crypto::Secret;
use ike_proto::crypto::cert::ChainVerifier;
use ike_proto::crypto::encr::EncrAlg;
use ike_proto::crypto::integ::IntegAlg;
use ike_proto::crypto::keys::IkeSuite;
use ike_proto::crypto::prf::PrfAlg;
use ike_proto::crypto::sig::{LocalSigner, Signer};
use ike_proto::ikev2::{
    ChildConfig, ChildProposal, Endpoint, EndpointConfig, Event, LocalAuth, PeerConfig, RemoteAuth,
    ts,
};
use ike_proto::wire::DhGroup;

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
    let psk = Secret::from(need("--psk")?.as_str());
    let initiate = args.iter().any(|a| a == "--initiate");
    let secs: u64 = arg(&args, "--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let lts = net(&arg(&args, "--local-ts").unwrap_or("10.1.0.0/16".into()))?;
    let rts = net(&arg(&args, "--remote-ts").unwrap_or("10.2.0.0/16".into()))?;
    let (suite, esp) = match arg(&args, "--proposal").as_deref() {
        None | Some("x25519-gcm256") => (IkeSuite::DEFAULT, ChildProposal::DEFAULT),
        Some("modp2048-cbc256") => (
            IkeSuite {
                encr: EncrAlg::AesCbc { key_bits: 256 },
                integ: Some(IntegAlg::HmacSha256_128),
                prf: PrfAlg::HmacSha256,
                dh: DhGroup::MODP_2048,
            },
            ChildProposal {
                encr: EncrAlg::AesCbc { key_bits: 128 },
                integ: Some(IntegAlg::HmacSha256_128),
                esn: false,
                pfs: None,
            },
        ),
        Some(p) => return Err(format!("unknown proposal {p}")),
    };
    let mut child = ChildConfig::tunnel("interop", vec![lts], vec![rts]);
    child.proposals = vec![esp];
    let mut peer = PeerConfig::psk("interop", id, peer_id, psk, child);
    peer.ike_proposals = vec![suite];
    peer.remote_addrs = vec![remote];
    let mut signer = None;
    if let Some(cert) = arg(&args, "--cert") {
        let read = |f: &str| std::fs::read(f).map_err(|e| format!("{f}: {e}"));
        let certs = ike_proto::crypto::cert::Certificate::all_from_pem(&read(&cert)?)
            .map_err(|e| format!("{cert}: {e}"))?;
        let key_file = need("--key")?;
        let s = LocalSigner::from_pem(&read(&key_file)?).map_err(|e| format!("{key_file}: {e}"))?;
        let ca = need("--ca")?;
        let mut v = ChainVerifier::new();
        v.add_ca_pem(&read(&ca)?)
            .map_err(|e| format!("{ca}: {e}"))?;
        peer.local_auth = LocalAuth::Signature {
            certs: certs.iter().map(|c| c.der().to_vec()).collect(),
            key: s.key_algorithm(),
            schemes: Vec::new(),
        };
        peer.remote_auth = RemoteAuth::Certificate(Arc::new(v));
        signer = Some(s);
    }
    let mut config = EndpointConfig::default();
    if let Some(n) = arg(&args, "--fragment-size").and_then(|n| n.parse().ok()) {
        config.fragment_size = n;
    }
    let mut ep = Endpoint::new(config);
    ep.set_peers(vec![peer]);
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ep.set_unix_time(unix);
    let s500 =
        UdpSocket::bind(SocketAddr::new(local, 500)).map_err(|e| format!("bind 500: {e}"))?;
    let s4500 =
        UdpSocket::bind(SocketAddr::new(local, 4500)).map_err(|e| format!("bind 4500: {e}"))?;
    for s in [&s500, &s4500] {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    // Tells a test harness the sockets are bound.
    println!("READY");
    let start = Instant::now();
    if initiate {
        ep.connect(
            start,
            "interop",
            SocketAddr::new(local, 500),
            SocketAddr::new(remote, 500),
        )
        .map_err(|e| e.to_string())?;
    }
    let rekey = args.iter().any(|a| a == "--rekey-ike");
    let (mut ike_up, mut child_done) = (false, false);
    let mut current = None;
    let mut rekey_started = false;
    let mut rekeyed_to = None;
    let mut buf = [0u8; 65536];
    while start.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        for (s, port) in [(&s500, 500u16), (&s4500, 4500)] {
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
        while let Some(t) = ep.poll_transmit() {
            let s = if t.local.port() == 4500 {
                &s4500
            } else {
                &s500
            };
            s.send_to(&t.data, t.remote)
                .map_err(|e| format!("send: {e}"))?;
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::SignRequest {
                    id, scheme, octets, ..
                } => {
                    let r = match &signer {
                        Some(s) => s.sign(scheme, &octets).map_err(|e| e.to_string()),
                        None => Err("no key".to_string()),
                    };
                    println!("SIGNED {scheme:?}");
                    ep.handle_signature(now, id, r);
                }
                Event::IkeSaUp {
                    ike_sa,
                    peer_id,
                    spis,
                    local_nat,
                    remote_nat,
                    ..
                } => {
                    println!(
                        "IKE_SA_UP peer={peer_id} spi_i={:016x} spi_r={:016x} nat={local_nat}/{remote_nat}",
                        spis.0, spis.1
                    );
                    ike_up = true;
                    current = Some(ike_sa);
                }
                Event::IkeSaRekeyed { old, new } => {
                    println!("IKE_SA_REKEYED old={} new={}", old.0, new.0);
                    rekeyed_to = Some(new);
                    ep.delete_ike(now, new).map_err(|e| e.to_string())?;
                }
                Event::InstallChildSa(c) => {
                    println!(
                        "CHILD_SA_UP spi_in={:08x} spi_out={:08x} encr={} local_ts={:?} remote_ts={:?}",
                        c.inbound.spi,
                        c.outbound.spi,
                        c.encr.kernel_name(),
                        c.local_ts,
                        c.remote_ts
                    );
                    child_done = true;
                }
                Event::ChildSaFailed { reason, .. } => {
                    println!("CHILD_SA_FAILED {reason}");
                    child_done = true;
                }
                Event::IkeSaDown { ike_sa, reason } => {
                    println!("IKE_SA_DOWN {reason:?}");
                    match reason {
                        ike_proto::ikev2::CloseReason::Rekeyed if rekey => {}
                        ike_proto::ikev2::CloseReason::LocalDeleted
                            if Some(ike_sa) == rekeyed_to =>
                        {
                            println!("REKEY_OK");
                            return Ok(true);
                        }
                        _ => return Ok(false),
                    }
                }
                _ => {}
            }
        }
        if rekey {
            if ike_up
                && (child_done || !initiate)
                && !rekey_started
                && let Some(sa) = current
            {
                ep.rekey_ike(now, sa).map_err(|e| e.to_string())?;
                rekey_started = true;
            }
        } else if ike_up && (child_done || !initiate) {
            // Give the last datagram a moment to leave, then report.
            std::thread::sleep(Duration::from_millis(200));
            while let Some(t) = ep.poll_transmit() {
                let s = if t.local.port() == 4500 {
                    &s4500
                } else {
                    &s500
                };
                let _ = s.send_to(&t.data, t.remote);
            }
            let st = ep.statistics();
            println!(
                "STATS p1_active={} p2_active={} retransmits={} invalid={}",
                st.p1_active, st.p2_active, st.p1_retransmit, st.invalid_packets
            );
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("TIMEOUT");
    Ok(false)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("udp-peer: {e}");
            ExitCode::from(2)
        }
    }
}
