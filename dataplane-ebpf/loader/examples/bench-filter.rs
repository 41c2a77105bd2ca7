//! `cargo xtask bench filter`: the cost of the eBPF filter per packet with
//! 10, 100, 1,000 and 4,000 rules (the decisive rule last), against
//! nftables with the equivalent rules generated from the same IPSECRule
//! profile, and against no filter at all — all in one run.
//!
//! Two network namespaces joined by a veth pair; the sender floods a bounded
//! number of UDP datagrams to a receiver in the other namespace. Cost per
//! packet = the sender's wall time / packets (on veth, the receive path runs
//! in the sender's context). Each configuration is measured once per round,
//! in `GATEKEY_BENCH_TRIALS` interleaved rounds, after a short warm-up burst;
//! medians are printed, the ratios are ratios of medians (a
//! `BENCH filter-paired` line gives medians of per-round ratios as a
//! cross-check):
//!
//! ```text
//! BENCH filter rules=<N> ebpf_ns_per_pkt=<x> nft_ns_per_pkt=<y> none_ns_per_pkt=<z>
//! BENCH filter-scaling ebpf_4000_over_10=<x> ebpf_4000_over_none=<w> nft_over_ebpf_at_4000=<y>
//! ```
//!
//! A `BENCH filter-program` line adds the program's own cost per packet
//! (`BPF_PROG_TEST_RUN`), which the rest of the path does not blur.
//!
//! Needs root. Environment: `GATEKEY_BENCH_PACKETS` (default 30000),
//! `GATEKEY_BENCH_TRIALS` (rounds, default 15).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gatekey_config::filter::{AddrRange, FilterSet, PortRange};
use gatekey_dataplane::compile::{Dir, Entry, compile, entries, order};
use gatekey_dataplane::dataplane::{Dataplane, Options, SetId};
use gatekey_dataplane::testnet::{VethPair, privileged};

const SIZES: [usize; 4] = [10, 100, 1000, 4000];
const PORT: u16 = 9000;

/// The profile: N-1 rules that do not match the flood, then the one that
/// does. Rules are written from the receiver's outbound point of view, so
/// the receiver's port is SRCPort.
fn profile(n: usize) -> String {
    let mut p = String::from("IPSEC\n");
    for i in 0..n - 1 {
        let _ = writeln!(p, "  IPSECRule * * UDP SRCPort {} DESTport *", 20_000 + i);
    }
    let _ = writeln!(p, "  IPSECRule * * UDP SRCPort {PORT} DESTport *\nENDIPSEC");
    p
}

fn nft_range(r: &AddrRange) -> String {
    match r.as_prefix() {
        Some(l) => format!("{}/{l}", r.lo),
        None if r.lo == r.hi => r.lo.to_string(),
        None => format!("{}-{}", r.lo, r.hi),
    }
}

fn nft_ports(r: PortRange) -> Option<String> {
    if r == PortRange::ANY {
        None
    } else if r.lo == r.hi {
        Some(r.lo.to_string())
    } else {
        Some(format!("{}-{}", r.lo, r.hi))
    }
}

/// nftables rules equivalent to the inbound filters of `set` (input hook,
/// first match, drop by default).
fn nft_ruleset(set: &FilterSet) -> String {
    let ordered = order(set, &[]).unwrap_or_default();
    let inbound: Vec<Entry> = entries(&ordered, Dir::In);
    let mut out = String::from(
        "table inet gkbench {\n  chain input {\n    type filter hook input priority 0; policy drop;\n",
    );
    for e in &inbound {
        let fam = if e.family == gatekey_config::filter::Family::V4 {
            "ip"
        } else {
            "ip6"
        };
        let mut r = String::from("    ");
        if !e.src.is_empty() {
            let s: Vec<String> = e.src.iter().map(nft_range).collect();
            let _ = write!(r, "{fam} saddr {{ {} }} ", s.join(", "));
        }
        if !e.dst.is_empty() {
            let s: Vec<String> = e.dst.iter().map(nft_range).collect();
            let _ = write!(r, "{fam} daddr {{ {} }} ", s.join(", "));
        }
        match e.protocol {
            Some(p @ (6 | 17)) => {
                let name = if p == 6 { "tcp" } else { "udp" };
                let _ = write!(r, "meta l4proto {name} ");
                if let Some(s) = nft_ports(e.sport) {
                    let _ = write!(r, "{name} sport {s} ");
                }
                if let Some(d) = nft_ports(e.dport) {
                    let _ = write!(r, "{name} dport {d} ");
                }
            }
            Some(p) => {
                let _ = write!(r, "meta l4proto {p} ");
            }
            None => {
                let _ = write!(
                    r,
                    "meta nfproto {} ",
                    if fam == "ip" { "ipv4" } else { "ipv6" }
                );
            }
        }
        r.push_str(if e.action == gatekey_dataplane_common::action::PERMIT {
            "accept\n"
        } else {
            "drop\n"
        });
        out.push_str(&r);
    }
    out.push_str("  }\n}\n");
    out
}

fn nft(ns: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "nft"])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("nft: {e}"))?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        w.write_all(text.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Send `n` datagrams from `pair.a` to `pair.b`:PORT (sender on CPU 0,
/// receiver on the last CPU); return ns per packet and the fraction
/// received.
fn flood(pair: &VethPair, n: u64) -> Result<(f64, f64), String> {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let rx = {
        let (stack, received, stop, ready, b) = (
            pair.b.stack().clone(),
            received.clone(),
            stop.clone(),
            ready.clone(),
            pair.b4,
        );
        thread::spawn(move || {
            stack.run_in(move || {
                pin_to_cpu(usize::MAX);
                let s = UdpSocket::bind((b, PORT)).map_err(|e| e.to_string())?;
                // A deep queue so that a busy receiver loses nothing.
                let _ = nix::sys::socket::setsockopt(
                    &s,
                    nix::sys::socket::sockopt::RcvBufForce,
                    &(64 << 20),
                );
                s.set_read_timeout(Some(Duration::from_millis(50)))
                    .map_err(|e| e.to_string())?;
                ready.store(true, Ordering::SeqCst);
                let mut buf = [0u8; 2048];
                // Until told to stop and the queue is drained.
                loop {
                    if s.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    } else if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
                Ok::<(), String>(())
            })
        })
    };
    while !ready.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    let b: Ipv4Addr = pair.b4;
    let elapsed = pair
        .a
        .stack()
        .run_in(move || -> Result<Duration, String> {
            pin_to_cpu(0);
            let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
            s.connect((b, PORT)).map_err(|e| e.to_string())?;
            let payload = [0x5au8; 64];
            let t = Instant::now();
            for _ in 0..n {
                // A full socket buffer at the receiver drops silently; a
                // send error (e.g. ENOBUFS) is retried.
                while s.send(&payload).is_err() {}
            }
            Ok(t.elapsed())
        })
        .map_err(|e| e.to_string())??;
    stop.store(true, Ordering::SeqCst);
    let _ = rx.join();
    let got = received.load(Ordering::Relaxed);
    Ok((elapsed.as_nanos() as f64 / n as f64, got as f64 / n as f64))
}

/// The program's own cost per packet (BPF_PROG_TEST_RUN, repeated, on the
/// flood's packet): a diagnostic free of the rest of the path's noise.
fn prog_cost(dp: &Dataplane, pair: &VethPair) -> Result<f64, String> {
    use aya::programs::{TestRun as _, TestRunOptions};
    let pkt = gatekey_dataplane::compile::PacketDesc::new(
        Dir::In,
        pair.a4.into(),
        pair.b4.into(),
        17,
        40000,
        PORT,
    );
    let frame = gatekey_dataplane::testnet::frame(&pkt, gatekey_dataplane::testnet::Frag::None, 0);
    let repeat = 200_000;
    let r = pair
        .b
        .stack()
        .run_in(|| -> Result<std::time::Duration, String> {
            let prog = dp
                .program(gatekey_dataplane_common::PROG_IN_ETH)
                .map_err(|e| e.to_string())?;
            let res = prog
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    repeat,
                    ..TestRunOptions::default()
                })
                .map_err(|e| e.to_string())?;
            Ok(res.duration)
        })
        .map_err(|e| e.to_string())??;
    // The kernel reports the mean time per run.
    Ok(r.as_nanos() as f64)
}

/// Pin the calling thread to `cpu` (`usize::MAX`: the last CPU).
fn pin_to_cpu(cpu: usize) {
    let n = thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = if cpu == usize::MAX {
        n - 1
    } else {
        cpu.min(n - 1)
    };
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let packets = env_u64("GATEKEY_BENCH_PACKETS", 30_000);
    let rounds = env_u64("GATEKEY_BENCH_TRIALS", 15) as usize;
    // Three identical pairs: one without a filter, one with the eBPF filter,
    // one with nftables, so that configurations can be interleaved finely
    // (the median over many short interleaved bursts resists the drift of
    // a busy machine).
    let none_pair = VethPair::new("gkbn", 250).map_err(|e| e.to_string())?;
    let ebpf_pair = VethPair::new("gkbe", 251).map_err(|e| e.to_string())?;
    let nft_pair = VethPair::new("gkbf", 252).map_err(|e| e.to_string())?;
    let mut sets: BTreeMap<usize, FilterSet> = BTreeMap::new();
    let mut compiled = BTreeMap::new();
    let mut nft_text = BTreeMap::new();
    for &n in &SIZES {
        let set = gatekey_config::profile::parse("bench.profile", &profile(n))
            .map_err(|e| e.to_string())?
            .set;
        compiled.insert(
            n,
            compile(SetId::Default.number(), &set, &[], 8192).map_err(|e| e.to_string())?,
        );
        nft_text.insert(n, nft_ruleset(&set));
        sets.insert(n, set);
    }
    let opts = Options {
        classes_per_slot: 8192,
        ..Options::default()
    };
    let mut dp =
        Dataplane::open_with(ebpf_pair.b.stack(), None, &opts).map_err(|e| e.to_string())?;
    dp.install(SetId::Default, compiled.get(&10).ok_or("missing set")?)
        .map_err(|e| e.to_string())?;
    dp.attach(Some(&["vb".to_owned()]), &BTreeMap::new())
        .map_err(|e| e.to_string())?;
    let ns_f = nft_pair.b.name().to_owned();

    // Warm up every path.
    for p in [&none_pair, &ebpf_pair, &nft_pair] {
        flood(p, packets / 4)?;
    }
    let mut none: Vec<f64> = Vec::new();
    let mut ebpf: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut nftv: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut prog: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let check = |what: &str, ok: f64| -> Result<(), String> {
        if ok < 0.9 {
            return Err(format!(
                "{what}: only {:.0}% of the packets arrived",
                ok * 100.0
            ));
        }
        Ok(())
    };
    for round in 0..rounds {
        flood(&none_pair, packets / 10)?;
        let (ns, ok) = flood(&none_pair, packets)?;
        check("no filter", ok)?;
        none.push(ns);
        for &n in &SIZES {
            dp.install(SetId::Default, compiled.get(&n).ok_or("missing set")?)
                .map_err(|e| e.to_string())?;
            // Warm the new tables' cache lines before timing.
            flood(&ebpf_pair, packets / 10)?;
            let before = decisive(&dp, n)?;
            let (ns, ok) = flood(&ebpf_pair, packets)?;
            check(&format!("eBPF with {n} rules"), ok)?;
            let counted = decisive(&dp, n)? - before;
            if counted < packets {
                return Err(format!(
                    "eBPF with {n} rules: the decisive rule counted {counted} of {packets}"
                ));
            }
            ebpf.entry(n).or_default().push(ns);
            prog.entry(n).or_default().push(prog_cost(&dp, &ebpf_pair)?);
        }
        for &n in &SIZES {
            nft(&ns_f, &["-f", "-"], nft_text.get(&n).map(String::as_str))?;
            flood(&nft_pair, packets / 10)?;
            let (ns, ok) = flood(&nft_pair, packets)?;
            nft(&ns_f, &["delete", "table", "inet", "gkbench"], None)?;
            check(&format!("nftables with {n} rules"), ok)?;
            nftv.entry(n).or_default().push(ns);
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let none_m = median(&mut none.clone());
    for &n in &SIZES {
        let e = median(&mut ebpf.get(&n).cloned().unwrap_or_default());
        let f = median(&mut nftv.get(&n).cloned().unwrap_or_default());
        let p = median(&mut prog.get(&n).cloned().unwrap_or_default());
        println!(
            "BENCH filter rules={n} ebpf_ns_per_pkt={e:.0} nft_ns_per_pkt={f:.0} none_ns_per_pkt={none_m:.0}"
        );
        println!("BENCH filter-program rules={n} prog_ns_per_pkt={p:.0}");
    }
    // Ratios of the medians; and, as a cross-check, medians of the ratios of
    // measurements taken in the same round.
    let series = |m: &BTreeMap<usize, Vec<f64>>, k: usize| m.get(&k).cloned().unwrap_or_default();
    let (e10, e4k, f4k) = (series(&ebpf, 10), series(&ebpf, 4000), series(&nftv, 4000));
    let med = |v: &[f64]| median(&mut v.to_vec());
    println!(
        "BENCH filter-scaling ebpf_4000_over_10={:.3} ebpf_4000_over_none={:.3} nft_over_ebpf_at_4000={:.2}",
        med(&e4k) / med(&e10),
        med(&e4k) / none_m,
        med(&f4k) / med(&e4k)
    );
    let paired = |a: &[f64], b: &[f64]| -> f64 {
        let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
        median(&mut r)
    };
    println!(
        "BENCH filter-paired ebpf_4000_over_10={:.3} ebpf_4000_over_none={:.3} nft_over_ebpf_at_4000={:.2} rounds={rounds}",
        paired(&e4k, &e10),
        paired(&e4k, &none),
        paired(&f4k, &e4k)
    );
    let _ = sets;
    Ok(())
}

/// Packets counted so far on the decisive (last) inbound filter.
fn decisive(dp: &Dataplane, n: usize) -> Result<u64, String> {
    Ok(dp
        .counters()
        .map_err(|e| e.to_string())?
        .iter()
        .filter(|c| c.set == SetId::Default && c.dir == Dir::In && c.position as usize == n - 1)
        .map(|c| c.packets)
        .sum())
}

fn main() -> ExitCode {
    if !privileged("bench-filter") {
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-filter: {e}");
            ExitCode::FAILURE
        }
    }
}
