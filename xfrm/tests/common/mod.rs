//! Helpers for privileged host tests: a fresh network namespace per test.
#![allow(dead_code, reason = "shared by several test files; each uses a subset")]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether we run as root. Without root, a test is skipped with a message — unless the
/// environment says it must run (`CI` or `GATEKEY_REQUIRE_PRIVILEGED` set), then it fails.
pub fn privileged(test: &str) -> bool {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    if euid == "0" {
        return true;
    }
    let must = std::env::var_os("CI").is_some()
        || std::env::var_os("GATEKEY_REQUIRE_PRIVILEGED").is_some();
    assert!(
        !must,
        "{test}: needs root (network namespaces, XFRM), and CI requires it to run"
    );
    report_skip(
        test,
        "needs root to create network namespaces and program XFRM",
    );
    false
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

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace created with `ip netns add` and deleted on drop.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub fn new() -> Self {
        let name = format!(
            "gkx-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(&["netns", "add", &name]);
        run(&["-n", &name, "link", "set", "lo", "up"]);
        TestNs { name }
    }

    /// Adds a veth pair `v0`/`v1` with `addr` (CIDR) on `v0`, both up.
    pub fn with_veth(self, addr: &str) -> Self {
        run(&[
            "-n", &self.name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
        ]);
        run(&["-n", &self.name, "addr", "add", addr, "dev", "v0"]);
        run(&["-n", &self.name, "link", "set", "v0", "up"]);
        run(&["-n", &self.name, "link", "set", "v1", "up"]);
        self
    }

    /// `ip -n NS ARGS…`, output as text.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip ARGS…`; panics with its stderr on failure.
pub fn run(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running ip {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
