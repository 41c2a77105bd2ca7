//! Helpers for iked's host tests with namespaces, filters and IKEv1
//! (`tests/filter.rs`, `tests/ikev1.rs`): namespaces joined by a veth pair,
//! an iked child process with its log, an NMI client.

#![expect(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "each test binary uses a different subset of these helpers; a failure is a test failure"
)]

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatekey_nmi::records::{Selection, TunnelControl, TunnelRef, TunnelStatus};
use gatekey_nmi::{Client, Request, Response, Target};

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Reports a skipped test the way `cargo xtask test` collects it
/// (docs/testing.md): `GATEKEY-SKIP: <test>: <reason>` on stderr and appended
/// to `$GATEKEY_SKIP_LOG`.
pub fn report_skip(why: &str) {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("?");
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

/// Skip the test (saying why) unless it runs as root; on CI, fail instead.
#[macro_export]
macro_rules! require_root {
    () => {
        if !common::is_root() {
            if std::env::var_os("CI").is_some() {
                panic!("host tests must run as root on CI");
            }
            common::report_skip("this test needs root (network namespaces, eBPF, UDP 500)");
            return;
        }
    };
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command, returning (success, stdout + stderr).
pub fn try_sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A fresh network namespace with loopback up; removed (with any eBPF
/// filter pinned for it) when dropped.
pub struct Ns(pub String);

impl Ns {
    pub fn bare(tag: &str) -> Ns {
        let name = format!("ikedt-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Ns(name)
    }

    /// `ip -n NS …`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.0];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Run a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> (bool, String) {
        let mut v = vec!["ip", "netns", "exec", &self.0];
        v.extend_from_slice(args);
        try_sh(&v)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/sys/fs/bpf/gatekey/{}", self.0));
        let _ = std::fs::remove_dir_all(format!("/run/gatekey/{}", self.0));
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Two namespaces joined by a veth pair: `a` has 192.0.2.1/24 on gka, `b`
/// 192.0.2.2/24 on gkb.
pub struct Pair(pub Ns, pub Ns);

impl Pair {
    pub fn new(tag: &str) -> Pair {
        let a = Ns::bare(&format!("{tag}a"));
        let b = Ns::bare(&format!("{tag}b"));
        sh(&[
            "ip", "link", "add", "gka", "netns", &a.0, "type", "veth", "peer", "name", "gkb",
            "netns", &b.0,
        ]);
        for (ns, dev, addr) in [(&a, "gka", "192.0.2.1/24"), (&b, "gkb", "192.0.2.2/24")] {
            sh(&["ip", "-n", &ns.0, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", &ns.0, "link", "set", dev, "up"]);
        }
        Pair(a, b)
    }
}

/// An iked child process logging to a file in its directory.
pub struct Iked {
    child: Child,
    log: PathBuf,
}

impl Iked {
    pub fn start(dir: &Path, extra: &[&str]) -> Iked {
        let log = dir.join(format!(
            "iked-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let sock = dir.join("ipsecmgmt");
        let child = Command::new(env!("CARGO_BIN_EXE_iked"))
            .arg("-f")
            .arg(dir.join("iked.conf"))
            .arg("--nmi-socket")
            .arg(&sock)
            .args(["--log-target", "stderr"])
            .args(extra)
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let i = Iked { child, log };
        i.wait_log("EZD0911I");
        i
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn wait_log(&self, what: &str) -> String {
        let t0 = Instant::now();
        loop {
            let l = self.log();
            if l.contains(what) {
                return l;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no {what} in iked's log:\n{l}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        sh(&["kill", &format!("-{sig}"), &self.child.id().to_string()]);
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Iked {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iked-host-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn control(
    c: &mut Client,
    t: &Target,
    req: fn(TunnelControl) -> Request,
    tr: TunnelRef,
) -> TunnelStatus {
    match c
        .call(Some(t), &req(TunnelControl { tunnels: vec![tr] }))
        .unwrap()
        .response
    {
        Response::TunnelControl(r) => r.tunnels[0].status,
        other => panic!("{other:?}"),
    }
}

pub fn dyn_tunnels(c: &mut Client, t: &Target) -> Vec<gatekey_nmi::records::IpTunnelRecord> {
    match c
        .call(Some(t), &Request::GetIpTunDynIke(Selection::default()))
        .unwrap()
        .response
    {
        Response::IpTunnels(l) => l.records,
        other => panic!("{other:?}"),
    }
}

pub fn ike_tunnels(c: &mut Client, t: &Target) -> Vec<gatekey_nmi::records::IkeTunnelRecord> {
    match c
        .call(Some(t), &Request::GetIkeTun(Selection::default()))
        .unwrap()
        .response
    {
        Response::IkeTunnels(l) => l.records,
        other => panic!("{other:?}"),
    }
}
