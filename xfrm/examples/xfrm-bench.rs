//! Benchmark: install N tunnels (2 SAs + 2 policies each) through this crate and the same set
//! through `ip -batch`, in the same run, each into a fresh network namespace.
//!
//! Needs a kernel with ESP and AES-GCM (a test guest): `cargo xtask bench xfrm` runs it there.
//! Prints, per N, `BENCH xfrm-install n=N crate_s=… ip_batch_s=… ratio_vs_ip_batch=…` where the
//! ratio is `ip_batch_s / crate_s` (how many times faster the crate is), and
//! `BENCH xfrm-install-scaling per_tunnel_10k_over_1k=…` (the crate's per-tunnel time at the
//! largest N over that at the smallest). Medians of `--runs` runs; the two tools alternate.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use gatekey_xfrm::{
    AeadAlgorithm, AesKeySize, Direction, Handle, IpPrefix, Policy, Proto, Sa, SaCrypto, SecretKey,
    Selector, Spi, Template,
};

#[derive(Parser, Debug)]
struct Cli {
    /// Tunnel counts to measure (comma-separated); the scaling line compares the last with the first.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    n: Vec<usize>,
    /// Runs per tool and count (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// iproute2 binary.
    #[arg(long, default_value = "/sbin/ip")]
    ip: String,
    /// Install only the 2 policies per tunnel (runs on a kernel without ESP, e.g. natively on
    /// the development host); the BENCH lines are then named `xfrm-install-policies…`.
    #[arg(long)]
    policies_only: bool,
}

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// Peer address of tunnel `i`. Scrambled (an odd multiplier permutes 0..65536) rather than
/// sequential: the kernel hashes SAs by `(daddr + saddr) ^ reqid`, so peers and reqids that both
/// count up in step collide into a handful of buckets and make every insert O(n) — for any tool.
/// Real peers' addresses are not in step with the reqids a daemon hands out.
fn peer(i: usize) -> Ipv4Addr {
    let k = (i & 0xffff).wrapping_mul(40503) & 0xffff;
    Ipv4Addr::new(198, 18 + (i >> 16) as u8, (k >> 8) as u8, k as u8)
}

fn local_net(i: usize) -> IpPrefix {
    IpPrefix {
        addr: IpAddr::V4(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)),
        len: 32,
    }
}

fn remote_net(i: usize) -> IpPrefix {
    IpPrefix {
        addr: IpAddr::V4(Ipv4Addr::new(
            172,
            16 + (i >> 16) as u8,
            (i >> 8) as u8,
            i as u8,
        )),
        len: 32,
    }
}

fn key(i: usize, dir: u8) -> [u8; 20] {
    let mut k = [0u8; 20];
    for (j, b) in k.iter_mut().enumerate() {
        *b = (i as u8)
            .wrapping_mul(31)
            .wrapping_add(j as u8)
            .wrapping_add(dir);
    }
    k
}

fn spi(i: usize, dir: u32) -> u32 {
    0x1000_0000 + (i as u32) * 2 + dir
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The same tunnels as `ip -batch` commands.
fn ip_batch_text(n: usize, sas: bool) -> String {
    let mut s = String::with_capacity(n * 700);
    let l = LOCAL;
    for i in 0..n {
        let (p, reqid) = (peer(i), i + 1);
        let (ln, rn) = (local_net(i), remote_net(i));
        if sas {
            let _ = writeln!(
                s,
                "xfrm state add src {l} dst {p} proto esp spi {:#x} reqid {reqid} mode tunnel aead rfc4106(gcm(aes)) 0x{} 128",
                spi(i, 0),
                hex(&key(i, 0))
            );
            let _ = writeln!(
                s,
                "xfrm state add src {p} dst {l} proto esp spi {:#x} reqid {reqid} mode tunnel aead rfc4106(gcm(aes)) 0x{} 128",
                spi(i, 1),
                hex(&key(i, 1))
            );
        }
        let _ = writeln!(
            s,
            "xfrm policy add src {ln} dst {rn} dir out tmpl src {l} dst {p} proto esp reqid {reqid} mode tunnel"
        );
        let _ = writeln!(
            s,
            "xfrm policy add src {rn} dst {ln} dir in tmpl src {p} dst {l} proto esp reqid {reqid} mode tunnel"
        );
    }
    s
}

struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Result<Self> {
        let name = format!("gkx-bench-{tag}-{}", std::process::id());
        let st = Command::new("ip").args(["netns", "add", &name]).status()?;
        ensure!(st.success(), "ip netns add {name} failed");
        Ok(Ns(name))
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

async fn count(h: &Handle) -> Result<(u32, u32)> {
    let sad = h.state().info().await?.count;
    let spd = h.policy().info().await?;
    Ok((sad, spd.in_count + spd.out_count + spd.fwd_count))
}

/// Installs n tunnels through the crate; returns seconds.
async fn run_crate(n: usize, sas: bool) -> Result<f64> {
    let ns = Ns::new("crate")?;
    let h = Handle::open_named(&ns.0)?;
    let local = IpAddr::V4(LOCAL);
    let start = Instant::now();
    let mut b = h.batch();
    for i in 0..n {
        let (p, reqid) = (IpAddr::V4(peer(i)), (i + 1) as u32);
        let gcm = AeadAlgorithm::AesGcm16(AesKeySize::Aes128);
        if sas {
            b.add_sa(
                Sa::new(
                    local,
                    p,
                    Spi(spi(i, 0)),
                    SaCrypto::esp_aead(gcm.clone(), SecretKey::from_slice(&key(i, 0))),
                )
                .reqid(reqid),
            )?;
            b.add_sa(
                Sa::new(
                    p,
                    local,
                    Spi(spi(i, 1)),
                    SaCrypto::esp_aead(gcm, SecretKey::from_slice(&key(i, 1))),
                )
                .reqid(reqid),
            )?;
        }
        b.add_policy(
            Policy::new(Selector::new(local_net(i), remote_net(i))?, Direction::Out)
                .template(Template::tunnel(Proto::Esp, local, p, reqid)),
        )?;
        b.add_policy(
            Policy::new(Selector::new(remote_net(i), local_net(i))?, Direction::In)
                .template(Template::tunnel(Proto::Esp, p, local, reqid)),
        )?;
    }
    let results = b.execute().await?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
        bail!("crate install failed: {e}");
    }
    check(&h, n, sas, "crate").await?;
    Ok(secs)
}

async fn check(h: &Handle, n: usize, with_sas: bool, who: &str) -> Result<()> {
    let (sas, pols) = count(h).await?;
    let want_sas = if with_sas { 2 * n } else { 0 };
    ensure!(
        sas as usize == want_sas && pols as usize == 2 * n,
        "{who} installed {sas} SAs / {pols} policies, expected {want_sas} / {}",
        2 * n
    );
    Ok(())
}

/// Installs n tunnels with `ip -batch`; returns seconds.
async fn run_ip(ip: &str, n: usize, sas: bool) -> Result<f64> {
    let ns = Ns::new("ip")?;
    let file = std::env::temp_dir().join(format!("gkx-bench-{}-{n}.batch", std::process::id()));
    std::fs::write(&file, ip_batch_text(n, sas))?;
    let start = Instant::now();
    let st = Command::new(ip)
        .args(["-n", &ns.0, "-batch"])
        .arg(&file)
        .status()
        .with_context(|| format!("running {ip} -batch"))?;
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);
    ensure!(st.success(), "ip -batch failed");
    let h = Handle::open_named(&ns.0)?;
    check(&h, n, sas, "ip -batch").await?;
    Ok(secs)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        l if l % 2 == 1 => v.get(l / 2).copied().unwrap_or(f64::NAN),
        l => {
            (v.get(l / 2 - 1).copied().unwrap_or(f64::NAN)
                + v.get(l / 2).copied().unwrap_or(f64::NAN))
                / 2.0
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(
        !cli.n.is_empty() && cli.runs > 0,
        "need at least one N and one run"
    );
    // Warm-up (not measured): the first SA loads the ESP and AES-GCM modules and their drbg.
    let sas = !cli.policies_only;
    let name = if sas {
        "xfrm-install"
    } else {
        "xfrm-install-policies"
    };
    run_crate(10, sas).await?;
    run_ip(&cli.ip, 10, sas).await?;
    let mut per_tunnel = Vec::new();
    for &n in &cli.n {
        let (mut c, mut ipb) = (Vec::new(), Vec::new());
        for r in 0..cli.runs {
            // alternate which tool goes first
            if r % 2 == 0 {
                c.push(run_crate(n, sas).await?);
                ipb.push(run_ip(&cli.ip, n, sas).await?);
            } else {
                ipb.push(run_ip(&cli.ip, n, sas).await?);
                c.push(run_crate(n, sas).await?);
            }
            println!(
                "run {} n={n}: crate {:.3}s ip -batch {:.3}s",
                r + 1,
                c.last().copied().unwrap_or_default(),
                ipb.last().copied().unwrap_or_default()
            );
        }
        let (cm, im) = (median(&mut c), median(&mut ipb));
        per_tunnel.push((n, cm / n as f64, im / n as f64));
        println!(
            "BENCH {name} n={n} crate_s={cm:.4} ip_batch_s={im:.4} ratio_vs_ip_batch={:.2} crate_us_per_tunnel={:.1} ip_batch_us_per_tunnel={:.1} runs={} stat=median",
            im / cm,
            cm / n as f64 * 1e6,
            im / n as f64 * 1e6,
            cli.runs
        );
    }
    if let (Some(first), Some(last)) = (per_tunnel.first(), per_tunnel.last())
        && per_tunnel.len() > 1
    {
        println!(
            "BENCH {name}-scaling per_tunnel_10k_over_1k={:.2} ip_batch_per_tunnel_10k_over_1k={:.2} small_n={} large_n={} stat=median",
            last.1 / first.1,
            last.2 / first.2,
            first.0,
            last.0
        );
    }
    Ok(())
}
