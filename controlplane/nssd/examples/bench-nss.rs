//! `cargo xtask bench nss`: RSA-2048 signatures per second through nssd with
//! 1, 8 and 64 concurrent NSS clients (each its own TLS connection, one
//! request at a time), against in-process signing with the same library
//! (ike-proto's LocalSigner, the same key) at the same concurrency and with
//! the same one-signature-per-core limit, measured in the same run. Prints
//! `BENCH nss-sign clients=<n> per_s=<r> local_per_s=<l> ratio=<r/l> p99_ms=<x> p50_ms=<y> …`.
//!
//! The two are measured in interleaved slices (`--rounds R` of `--slice S`
//! seconds each, default 5 × 1 s) so that background load hits both alike;
//! rates are medians. `--clients 1,8,64` picks the client counts.

#![expect(
    clippy::expect_used,
    reason = "benchmark set-up: a failure aborts the run"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gatekey_keyring::testpki::{Ca, CertSpec, KeySpec, KeyringBuilder, San};
use ike_proto::crypto::sig::{LocalSigner, SignatureScheme, Signer};
use nss_client::{ClientConfig, Credentials, NssClient, ServerSpec};
use nss_proto::{Secret, Services, SignInput, SignatureAlgorithm};

fn arg(name: &str) -> Option<String> {
    let mut it = std::env::args();
    while let Some(a) = it.next() {
        if a == name {
            return it.next();
        }
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// In-process signing with the same library and the same key, driven like
/// the server drives it: `n` concurrent tasks, each signing on the blocking
/// pool with at most one signature per core at a time — so the ratio shows
/// what TLS, framing and the round trip cost, not scheduling differences.
async fn local_rate(signer: &Arc<LocalSigner>, n: usize, secs: f64) -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let slots = Arc::new(tokio::sync::Semaphore::new(cores));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (signer, stop, slots) = (Arc::clone(signer), Arc::clone(&stop), Arc::clone(&slots));
        set.spawn(async move {
            let mut count = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _slot = slots.acquire().await.expect("semaphore");
                let s = Arc::clone(&signer);
                let data = vec![i as u8; 200];
                tokio::task::spawn_blocking(move || s.sign(SignatureScheme::RsaPkcs1Sha256, &data))
                    .await
                    .expect("join")
                    .expect("sign");
                count += 1;
            }
            count
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0u64;
    while let Some(c) = set.join_next().await {
        total += c.expect("task");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Plain threads signing in a loop (printed for reference, not in the ratio).
fn thread_rate(signer: &Arc<LocalSigner>, n: usize, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (signer, stop) = (Arc::clone(signer), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut count = 0u64;
                let data = vec![i as u8; 200];
                while !stop.load(Ordering::Relaxed) {
                    signer
                        .sign(SignatureScheme::RsaPkcs1Sha256, &data)
                        .expect("sign");
                    count += 1;
                }
                count
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Every client signs in a loop for `secs`; the rate and the latencies.
async fn nssd_slice(clients: &[NssClient], secs: f64) -> (f64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, stop) = (c.clone(), Arc::clone(&stop));
        set.spawn(async move {
            let mut lat = Vec::new();
            let data = vec![i as u8; 200];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.sign(
                    None,
                    SignatureAlgorithm::RsaPkcs1Sha256,
                    SignInput::Data(data.clone()),
                    None,
                )
                .await
                .expect("sign");
                lat.push(t.elapsed());
            }
            lat
        });
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    while let Some(r) = set.join_next().await {
        lat.extend(r.expect("task"));
    }
    (lat.len() as f64 / start.elapsed().as_secs_f64(), lat)
}

fn main() {
    let slice: f64 = arg("--slice").and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let rounds: usize = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(5);
    let counts: Vec<usize> = arg("--clients")
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64]);
    if let Some(n) = arg("--local-only").and_then(|s| s.parse::<usize>().ok()) {
        let signer =
            Arc::new(LocalSigner::from_pem(KeySpec::Rsa2048A.pem().as_bytes()).expect("key"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        for _ in 0..rounds {
            println!(
                "local {n}: tasks {:.0}/s, threads {:.0}/s",
                rt.block_on(local_rate(&signer, n, slice)),
                thread_rate(&signer, n, slice)
            );
        }
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("bench CA");
    let server_cert = ca.issue(
        &CertSpec::new("nss.bench", KeySpec::EcP256)
            .san(San::Ip("127.0.0.1".parse().expect("ip")))
            .server(),
    );
    let client_cert = ca.issue(&CertSpec::new("BENCH", KeySpec::Rsa2048A));
    KeyringBuilder::new(&tmp.path().join("ring"))
        .ca("CA", &ca)
        .keyed("SERVER", "Site", &server_cert, None, false)
        .keyed("BENCH", "Personal", &client_cert, Some("BENCH"), true)
        .finish();
    let hash = nssd::auth::hash_password(
        b"bench",
        argon2::Params::new(256, 1, 1, None).expect("params"),
    )
    .expect("hash");
    let saf = tmp.path().join("nssd.saf");
    std::fs::write(
        &saf,
        format!(
            "User BENCH {{ Password \"{hash}\" }}\nProfile EZB.NSS.BENCHSYS.*.IPSEC.CERT {{ Permit BENCH }}\nProfile EZB.NSSCERT.BENCHSYS.BENCH.HOST {{ Permit BENCH }}\n"
        ),
    )
    .expect("saf");
    std::fs::set_permissions(&saf, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let conf = tmp.path().join("nssd.conf");
    std::fs::write(
        &conf,
        format!(
            "NssConfig {{\n Port {port}\n ListenAddress 127.0.0.1\n SyslogLevel 1\n KeyRing ring\n SafDatabase nssd.saf\n SystemName BENCHSYS\n TlsCertificate SERVER\n}}\n"
        ),
    )
    .expect("conf");

    // The server runs in its own runtime (its own threads), as a daemon would.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = server_rt
        .block_on(nssd::ServerHandle::start(nssd::Options::new(&conf)))
        .expect("nssd starts");
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let local_signer =
        Arc::new(LocalSigner::from_pem(client_cert.key_pem.as_bytes()).expect("key"));
    println!(
        "nss bench: {cores} cores, {rounds} rounds of {slice} s nssd + {slice} s local per client count, RSA-2048 PKCS#1 v1.5 SHA-256"
    );
    for n in counts {
        let clients: Vec<NssClient> = client_rt.block_on(async {
            let mut clients = Vec::new();
            for i in 0..n {
                let mut c = ClientConfig::new(
                    "bench",
                    &format!("BENCH_{i}"),
                    "BENCHSYS",
                    "BENCH",
                    Credentials::Password(Secret::from("bench")),
                );
                c.services = Services::CERT;
                c.primary = Some(ServerSpec::new("127.0.0.1", port));
                c.trust_anchors = vec![ca.der.clone()];
                let cl = NssClient::start(c, None).expect("client");
                cl.wait_connected(Duration::from_secs(20))
                    .await
                    .expect("connected");
                cl.sign(
                    None,
                    SignatureAlgorithm::RsaPkcs1Sha256,
                    SignInput::Data(vec![0; 200]),
                    None,
                )
                .await
                .expect("sign");
                clients.push(cl);
            }
            clients
        });
        // Interleave short slices (nssd, then local) so that background
        // load affects both alike; report medians.
        let mut remote = Vec::new();
        let mut local = Vec::new();
        let mut ratios = Vec::new();
        let mut lat: Vec<Duration> = Vec::new();
        for _ in 0..rounds {
            let (r, l) = client_rt.block_on(nssd_slice(&clients, slice));
            lat.extend(l);
            let loc = client_rt.block_on(local_rate(&local_signer, n, slice));
            ratios.push(r / loc);
            remote.push(r);
            local.push(loc);
        }
        client_rt.block_on(async {
            for c in &clients {
                c.shutdown().await;
            }
        });
        lat.sort();
        let (r, l) = (median(&mut remote), median(&mut local));
        println!(
            "BENCH nss-sign clients={n} per_s={r:.0} local_per_s={l:.0} ratio={:.3} p99_ms={:.2} p50_ms={:.2} rounds={rounds} median_pair_ratio={:.3}",
            r / l,
            percentile(&lat, 0.99),
            percentile(&lat, 0.50),
            median(&mut ratios)
        );
    }
    server_rt.block_on(server.shutdown());
}
