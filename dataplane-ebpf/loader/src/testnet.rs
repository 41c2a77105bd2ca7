//! Throw-away network namespaces joined by veth pairs, for host tests and
//! benchmarks (`cargo xtask bench filter`). Uses iproute2 (`ip`), which
//! `cargo xtask setup` installs. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::Error;
use crate::netns::Stack;

/// Runs `ip ARGS…` and fails with its stderr if it exits non-zero.
pub fn ip(args: &[&str]) -> Result<String, Error> {
    run("ip", args)
}

/// Runs a command and returns its stdout; fails with stderr on non-zero exit.
pub fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| Error::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace created for a test; deleted (with its interfaces) on
/// drop.
#[derive(Debug)]
pub struct TempNetns {
    stack: Stack,
}

impl TempNetns {
    /// Creates `/run/netns/<prefix>-<pid>-<n>` with its loopback up.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let stack = Stack::new(&name)?;
        ip(&["netns", "add", &name])?;
        let ns = Self { stack };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace as a stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        self.stack.name()
    }

    /// Runs `ip -n <ns> ARGS…`.
    pub fn ip(&self, args: &[&str]) -> Result<String, Error> {
        let mut full = vec!["-n", self.name()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, Error> {
        let mut full = vec!["netns", "exec", self.name(), program];
        full.extend_from_slice(args);
        ip(&full)
    }
}

impl Drop for TempNetns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", self.stack.name()]);
    }
}

/// Two namespaces `a` and `b` joined by a veth pair (`va` in `a`, `vb` in
/// `b`) with IPv4 `10.<net>.0.1/24`–`.2/24` and IPv6
/// `fd00:<net>::1/64`–`::2/64`, both up, IPv6 DAD disabled.
#[derive(Debug)]
pub struct VethPair {
    /// The first namespace (holds `va`, `.1`).
    pub a: TempNetns,
    /// The second namespace (holds `vb`, `.2`).
    pub b: TempNetns,
    /// IPv4 address of `va`.
    pub a4: std::net::Ipv4Addr,
    /// IPv4 address of `vb`.
    pub b4: std::net::Ipv4Addr,
    /// IPv6 address of `va`.
    pub a6: std::net::Ipv6Addr,
    /// IPv6 address of `vb`.
    pub b6: std::net::Ipv6Addr,
}

impl VethPair {
    /// Creates the pair; `net` picks the subnet (1–254).
    pub fn new(prefix: &str, net: u8) -> Result<Self, Error> {
        let a = TempNetns::new(&format!("{prefix}a"))?;
        let b = TempNetns::new(&format!("{prefix}b"))?;
        let a4 = std::net::Ipv4Addr::new(10, net, 0, 1);
        let b4 = std::net::Ipv4Addr::new(10, net, 0, 2);
        let a6 = std::net::Ipv6Addr::new(0xfd00, u16::from(net), 0, 0, 0, 0, 0, 1);
        let b6 = std::net::Ipv6Addr::new(0xfd00, u16::from(net), 0, 0, 0, 0, 0, 2);
        ip(&[
            "link",
            "add",
            "va",
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            "vb",
            "netns",
            b.name(),
        ])?;
        for (ns, dev, v4, v6) in [(&a, "va", a4, a6), (&b, "vb", b4, b6)] {
            ns.exec("sysctl", &["-qw", "net.ipv6.conf.all.accept_dad=0"])?;
            ns.exec(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{dev}.accept_dad=0")],
            )?;
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        let pair = Self {
            a,
            b,
            a4,
            b4,
            a6,
            b6,
        };
        pair.wait_usable()?;
        Ok(pair)
    }

    /// Wait (at most 5 s) until both addresses of `b` answer pings from `a`:
    /// links up, neighbours resolved.
    fn wait_usable(&self) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for dst in [self.b4.to_string(), self.b6.to_string()] {
            loop {
                if self.a.exec("ping", &["-c", "1", "-W", "1", &dst]).is_ok() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(Error::Command {
                        command: format!("ping {dst}"),
                        detail: "the veth pair did not come up within 5 s".into(),
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// Environment variable that turns a skipped privileged test into a failure
/// (CI sets it: CI runs as root and must not skip these tests).
pub const REQUIRE_ENV: &str = "GATEKEY_REQUIRE_PRIVILEGED_TESTS";

/// True if privileged host tests can run here (root, iproute2, bpffs).
/// Otherwise prints why the test named `test` is skipped and returns false,
/// or panics if [`REQUIRE_ENV`] is set.
pub fn privileged(test: &str) -> bool {
    let why = if !nix::unistd::Uid::effective().is_root() {
        Some("not running as root")
    } else if run("ip", &["-V"]).is_err() {
        Some("iproute2 (`ip`) is not installed; run `cargo xtask setup`")
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            assert!(
                std::env::var_os(REQUIRE_ENV).is_none(),
                "{test}: cannot run ({why}) but {REQUIRE_ENV} is set"
            );
            report_skip(test, why);
            false
        }
    }
}

/// Reports a skipped test the way `cargo xtask test` collects it (docs/testing.md,
/// "Skipped tests"): `GATEKEY-SKIP: <test>: <reason>` on stderr and appended to
/// `$GATEKEY_SKIP_LOG`. The test's name is libtest's (the thread name) when there is one.
fn report_skip(test: &str, why: &str) {
    let thread = std::thread::current();
    let name = thread.name().filter(|n| *n != "main").unwrap_or(test);
    let line = format!("GATEKEY-SKIP: {}::{name}: {why}\n", env!("CARGO_PKG_NAME"));
    eprint!("{line}");
    if let Some(log) = std::env::var_os("GATEKEY_SKIP_LOG") {
        use std::io::Write as _;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// How a test frame is fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frag {
    /// Not a fragment.
    None,
    /// The first fragment (offset 0, more fragments), with the L4 header.
    First,
    /// A later fragment (offset 8 bytes), without the L4 header.
    Later,
}

/// An Ethernet frame carrying the packet `p` describes (for
/// `BPF_PROG_TEST_RUN`): IPv4 or IPv6, TCP/UDP/ICMP/ICMPv6/OSPF headers with
/// its ports or type/code, SYN or ACK as `p.syn` says, TTL/hop limit
/// `p.hop_limit`, and fragment headers with identification `frag_id`.
pub fn frame(p: &crate::compile::PacketDesc, frag: Frag, frag_id: u32) -> Vec<u8> {
    let mut l4: Vec<u8> = Vec::new();
    let [s0, s1] = p.sport.to_be_bytes();
    let [d0, d1] = p.dport.to_be_bytes();
    match p.protocol {
        6 => {
            l4.extend_from_slice(&[s0, s1, d0, d1, 0, 0, 0, 1, 0, 0, 0, 0, 0x50]);
            l4.push(if p.syn { 0x02 } else { 0x10 });
            l4.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        }
        17 => l4.extend_from_slice(&[s0, s1, d0, d1, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
        1 | 58 => l4.extend_from_slice(&[s1, d1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
        89 => l4.extend_from_slice(&[2, s1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        _ => l4.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]),
    }
    if frag == Frag::Later {
        l4 = vec![0xab; 16];
    }
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    match (p.src, p.dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
            let fl: u16 = match frag {
                Frag::None => 0,
                Frag::First => 0x2000,
                Frag::Later => 1,
            };
            let id = u16::try_from(frag_id & 0xffff).unwrap_or(0);
            f.push(0x45);
            f.push(0);
            f.extend_from_slice(&total.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&fl.to_be_bytes());
            f.push(p.hop_limit);
            f.push(p.protocol);
            f.extend_from_slice(&[0, 0]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let (s, d) = match (s, d) {
                (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => (s, d),
                _ => (
                    std::net::Ipv6Addr::UNSPECIFIED,
                    std::net::Ipv6Addr::UNSPECIFIED,
                ),
            };
            f.extend_from_slice(&[0x86, 0xdd]);
            let ext = if frag == Frag::None { 0 } else { 8 };
            let plen = u16::try_from(ext + l4.len()).unwrap_or(u16::MAX);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&plen.to_be_bytes());
            f.push(if frag == Frag::None { p.protocol } else { 44 });
            f.push(p.hop_limit);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
            if frag != Frag::None {
                let off: u16 = if frag == Frag::First { 1 } else { 1 << 3 | 1 };
                f.push(p.protocol);
                f.push(0);
                f.extend_from_slice(&off.to_be_bytes());
                f.extend_from_slice(&frag_id.to_be_bytes());
            }
        }
    }
    f.extend_from_slice(&l4);
    f
}
