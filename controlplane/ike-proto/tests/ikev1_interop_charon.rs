//! IKEv1 interoperability with strongSwan's charon (Debian's 5.9.8) over real UDP sockets.
//!
//! Two fresh network namespaces joined by a veth pair; charon runs in one with its
//! kernel-libipsec plugin (the host kernel has no ESP; charon's userland ESP lets its
//! CHILD_SAs install, which forces UDP encapsulation and so exercises NAT-T as well), the
//! `ikev1-peer` example drives this engine in the other. Main mode and aggressive mode, PSK
//! and RSA signatures, PFS, DELETE, each side as initiator and as responder. Needs root,
//! `ip`, charon and swanctl; skips, saying why, otherwise.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PKI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/ikev1/mm-rsa-modp2048-aes128-sha256/pki/"
);

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

fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string));
    if uid.as_deref() != Some("0") {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    for p in [
        CHARON,
        "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
    ] {
        if !Path::new(p).exists() {
            return Some(format!(
                "{p} not installed (cargo xtask setup installs strongSwan)"
            ));
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun missing (charon's kernel-libipsec needs it)".into());
    }
    None
}

fn peer_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("ikev1-peer")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ikev1-netns.sh")
}

/// Namespaces, charon in `charon_ns`, our engine in `ours`.
struct Lab {
    dir: PathBuf,
    ours: String,
    charon_ns: String,
    all: Vec<String>,
    /// Our address and the peer's, as our engine uses them.
    addrs: (&'static str, &'static str),
}

impl Lab {
    /// Two namespaces joined by a veth pair: ours 192.0.2.1, charon 192.0.2.2 with
    /// kernel-libipsec.
    fn new(swanctl: &str, extra: &str) -> Self {
        Self::build(swanctl, extra, None)
    }

    /// Three namespaces: 10.99.0.2 behind a masquerading router (192.0.2.1), and
    /// 192.0.2.2. Charon is behind the NAT when `charon_behind_nat`, else we are. Charon
    /// uses the kernel here, so its NAT detection is real (and its SAs fail to install).
    fn nat(swanctl: &str, extra: &str, charon_behind_nat: bool) -> Self {
        Self::build(swanctl, extra, Some(charon_behind_nat))
    }

    fn build(swanctl: &str, extra: &str, nat: Option<bool>) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("gk-ikev1-interop-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("swanctl.conf"), swanctl).unwrap();
        std::fs::write(dir.join("charon-extra.conf"), extra).unwrap();
        for sub in ["x509", "x509ca", "private"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::copy(format!("{PKI}b.pem"), dir.join("x509/b.pem")).unwrap();
        std::fs::copy(format!("{PKI}ca.pem"), dir.join("x509ca/ca.pem")).unwrap();
        std::fs::copy(format!("{PKI}b.key"), dir.join("private/b.key")).unwrap();
        let (a, r, b) = (
            format!("g1a{tag}"),
            format!("g1r{tag}"),
            format!("g1b{tag}"),
        );
        let lab = match nat {
            None => {
                std::fs::write(dir.join("libipsec"), "").unwrap();
                Self {
                    dir,
                    ours: a.clone(),
                    charon_ns: b.clone(),
                    all: vec![a.clone(), b.clone()],
                    addrs: ("192.0.2.1", "192.0.2.2"),
                }
            }
            Some(behind) => Self {
                dir,
                ours: if behind { b.clone() } else { a.clone() },
                charon_ns: if behind { a.clone() } else { b.clone() },
                all: vec![a.clone(), r.clone(), b.clone()],
                addrs: if behind {
                    ("192.0.2.2", "192.0.2.1")
                } else {
                    ("10.99.0.2", "192.0.2.2")
                },
            },
        };
        let up = match nat {
            None => Command::new("sh")
                .arg(script())
                .args(["up", &a, &b])
                .output(),
            Some(_) => Command::new("sh")
                .arg(script())
                .args(["up-nat", &a, &r, &b])
                .output(),
        }
        .unwrap();
        assert!(
            up.status.success(),
            "{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let ch = Command::new("sh")
            .arg(script())
            .args(["charon", lab.dir.to_str().unwrap(), &lab.charon_ns])
            .output()
            .unwrap();
        let load = std::fs::read_to_string(lab.dir.join("load.out")).unwrap_or_default();
        assert!(
            ch.status.success() && load.contains("loaded 1 connections"),
            "{load}"
        );
        lab
    }

    fn swanctl(&self, args: &[&str]) -> String {
        let uri = format!("unix://{}", self.dir.join("charon.vici").display());
        let o = Command::new("swanctl")
            .args(args)
            .args(["--uri", &uri])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Starts the engine in its namespace (selectors 10.1.0.0/24 <-> 10.2.0.0/24 unless
    /// `args` names them).
    fn peer(&self, args: &[&str]) -> std::process::Child {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ours])
            .arg(peer_binary())
            .args(["--local", self.addrs.0, "--remote", self.addrs.1]);
        if !args.contains(&"--local-ts") {
            c.args(["--local-ts", "10.1.0.0/24", "--remote-ts", "10.2.0.0/24"]);
        }
        c.args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg(script())
            .args(["down", self.dir.to_str().unwrap()])
            .args(&self.all)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn conf(aggressive: bool, auth: &str, esp: &str) -> String {
    let (local, remote, secrets) = if auth == "psk" {
        (
            "auth = psk\n id = b.example.com".to_string(),
            "auth = psk\n id = a.example.com".to_string(),
            "secrets { ike-1 { id-a = a.example.com\n id-b = b.example.com\n secret = \"gatekey-interop-psk\" } }",
        )
    } else {
        (
            "auth = pubkey\n certs = b.pem\n id = b.example.com".to_string(),
            "auth = pubkey\n id = a.example.com".to_string(),
            "",
        )
    };
    format!(
        "connections {{ gk {{ version = 1\n aggressive = {}\n local_addrs = 192.0.2.2\n remote_addrs = 192.0.2.1\n \
         proposals = aes256-sha256-modp2048,aes128-sha256-ecp256\n local {{ {local} }}\n remote {{ {remote} }}\n \
         children {{ gk {{ local_ts = 10.2.0.0/24\n remote_ts = 10.1.0.0/24\n esp_proposals = {esp}\n start_action = none }} }} }} }}\n{secrets}\n",
        if aggressive { "yes" } else { "no" }
    )
}

const AGGRESSIVE_PSK: &str = "i_dont_care_about_security_and_use_aggressive_mode_psk = yes";

fn our_auth(auth: &str) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--id".into(),
        "a.example.com".into(),
        "--peer-id".into(),
        "b.example.com".into(),
    ];
    if auth == "psk" {
        v.extend(["--psk".into(), "gatekey-interop-psk".into()]);
    } else {
        for (f, n) in [("--cert", "a.pem"), ("--key", "a.key"), ("--ca", "ca.pem")] {
            v.extend([f.into(), format!("{PKI}{n}")]);
        }
    }
    v
}

fn wait(child: std::process::Child) -> (bool, String) {
    let o = child.wait_with_output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// gatekey initiates; charon (responder) installs the child.
fn we_initiate(aggressive: bool, auth: &str, esp: &str, extra_args: &[&str]) {
    if let Some(why) = skip_reason() {
        report_skip(module_path!(), &why);
        return;
    }
    let lab = Lab::new(
        &conf(aggressive, auth, esp),
        if aggressive { AGGRESSIVE_PSK } else { "" },
    );
    let mut args: Vec<String> = our_auth(auth);
    args.extend(["--initiate".into(), "--seconds".into(), "20".into()]);
    if aggressive {
        args.push("--aggressive".into());
    }
    args.extend(extra_args.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = wait(lab.peer(&argv));
    let log = lab.log();
    assert!(ok, "engine output:\n{out}\ncharon log:\n{log}");
    let mode = if aggressive { "Aggressive" } else { "Main" };
    assert!(
        out.contains(&format!("IKE_SA_UP mode={mode} peer_id=b.example.com")),
        "{out}"
    );
    assert!(out.contains("CHILD_SA_UP"), "{out}");
    assert!(log.contains("IKE_SA gk[1] established"), "{log}");
    assert!(log.contains("CHILD_SA gk{1} established"), "{log}");
}

/// charon initiates; gatekey responds.
fn they_initiate(aggressive: bool, auth: &str) {
    if let Some(why) = skip_reason() {
        report_skip(module_path!(), &why);
        return;
    }
    let lab = Lab::new(&conf(aggressive, auth, "aes128-sha256"), "");
    let mut args: Vec<String> = our_auth(auth);
    args.extend(["--seconds".into(), "20".into()]);
    if aggressive {
        args.push("--aggressive".into());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let peer = lab.peer(&argv);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let init = lab.swanctl(&["--initiate", "--child", "gk", "--timeout", "15"]);
    let (ok, out) = wait(peer);
    let log = lab.log();
    assert!(
        ok,
        "engine output:\n{out}\nswanctl:\n{init}\ncharon log:\n{log}"
    );
    assert!(
        init.contains("initiate completed successfully"),
        "{init}\n{log}"
    );
    assert!(
        out.contains("IKE_SA_UP") && out.contains("CHILD_SA_UP"),
        "{out}"
    );
}

#[test]
fn main_mode_psk_we_initiate() {
    we_initiate(false, "psk", "aes128-sha256", &[]);
}

#[test]
fn main_mode_psk_charon_initiates() {
    they_initiate(false, "psk");
}

#[test]
fn aggressive_mode_psk_we_initiate() {
    we_initiate(true, "psk", "aes128-sha256", &[]);
}

#[test]
fn aggressive_mode_psk_charon_initiates() {
    they_initiate(true, "psk");
}

#[test]
fn main_mode_rsa_we_initiate() {
    we_initiate(false, "rsa", "aes128-sha256", &[]);
}

#[test]
fn main_mode_rsa_charon_initiates() {
    they_initiate(false, "rsa");
}

#[test]
fn quick_mode_pfs_and_gcm() {
    we_initiate(false, "psk", "aes256gcm16-ecp256", &["--pfs", "19"]);
}

#[test]
fn delete_both_ways() {
    if let Some(why) = skip_reason() {
        report_skip(module_path!(), &why);
        return;
    }
    // charon deletes: we see the child and the ISAKMP SA go.
    let lab = Lab::new(&conf(false, "psk", "aes128-sha256"), "");
    let mut args = our_auth("psk");
    args.extend([
        "--seconds".into(),
        "20".into(),
        "--until".into(),
        "deleted".into(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let peer = lab.peer(&argv);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let init = lab.swanctl(&["--initiate", "--child", "gk", "--timeout", "15"]);
    assert!(init.contains("initiate completed successfully"), "{init}");
    let term = lab.swanctl(&["--terminate", "--ike", "gk", "--timeout", "10"]);
    let (ok, out) = wait(peer);
    assert!(ok, "{out}\n{term}\n{}", lab.log());
    assert!(
        out.contains("CHILD_SA_DELETED") && out.contains("IKE_SA_DOWN PeerDeleted"),
        "{out}"
    );
    drop(lab);
    // We delete the ISAKMP SA: an ESP DELETE, then the ISAKMP DELETE, back to back. charon
    // hands each datagram to a worker thread of its pool, so it may process the second
    // first; it then destroys the IKE_SA (and its CHILD_SA) and drops the ESP DELETE
    // silently at log level 1 ("IKE_SA checkout not successful" at mgr level 2). Either
    // order is acceptable; a missing ESP DELETE shows as neither.
    let lab = Lab::new(
        &conf(false, "psk", "aes128-sha256"),
        "filelog { log { mgr = 2 } }",
    );
    let mut args = our_auth("psk");
    args.extend(["--initiate".into(), "--delete-after".into(), "1".into()]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = wait(lab.peer(&argv));
    assert!(ok, "{out}\n{}", lab.log());
    let spi = spi_in(&out);
    let esp = format!("received DELETE for ESP CHILD_SA with SPI {spi}");
    // charon logs the DELETEs when it has processed them (it may lag on a loaded machine).
    let t0 = std::time::Instant::now();
    let log = loop {
        let log = lab.log();
        let ike = log.contains("received DELETE for IKE_SA");
        if (ike && (log.contains(&esp) || dropped_after_ike_delete(&log)))
            || t0.elapsed() > std::time::Duration::from_secs(10)
        {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(log.contains("received DELETE for IKE_SA"), "{out}\n{log}");
    assert!(
        log.contains(&esp) || dropped_after_ike_delete(&log),
        "{out}\n{log}"
    );
    if !log.contains(&esp) {
        eprintln!("charon processed the ISAKMP DELETE first and dropped the ESP DELETE");
    }
}

/// The inbound SPI our engine printed (`CHILD_SA_UP spi_in=…`).
fn spi_in(out: &str) -> String {
    out.split("CHILD_SA_UP spi_in=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no CHILD_SA_UP in {out}"))
        .to_string()
}

/// Whether charon (mgr log level 2) dropped a received message for the IKE_SA after it
/// processed our ISAKMP DELETE: a worker thread whose checkout by message failed once the
/// IKE_SA was destroyed.
fn dropped_after_ike_delete(log: &str) -> bool {
    let lines: Vec<&str> = log.lines().collect();
    let Some(del) = lines
        .iter()
        .position(|l| l.contains("received DELETE for IKE_SA"))
    else {
        return false;
    };
    let thread = |l: &str| l.split('[').next().unwrap_or("").to_string();
    lines.iter().enumerate().skip(del + 1).any(|(j, l)| {
        l.contains("IKE_SA checkout not successful")
            && lines
                .iter()
                .take(j)
                .rev()
                .find(|p| thread(p) == thread(l))
                .is_some_and(|p| p.contains("checkout IKEv1 SA by message"))
    })
}

#[test]
fn charon_dropping_a_message_after_the_ike_delete_is_recognised() {
    // From a run where charon's worker threads took our two DELETEs out of order.
    let dropped = "\
04[NET] received packet: from 192.0.2.1[4500] to 192.0.2.2[4500]
04[NET] received packet: from 192.0.2.1[4500] to 192.0.2.2[4500]
02[MGR] checkout IKEv1 SA by message with SPIs 4719fc37ffb744d0_i 34b11ae47eb56ae0_r
02[MGR] IKE_SA gk[1] successfully checked out
02[NET] received packet: from 192.0.2.1[4500] to 192.0.2.2[4500] (92 bytes)
02[ENC] parsed INFORMATIONAL_V1 request 3940546784 [ HASH D ]
02[IKE] received DELETE for IKE_SA gk[1]
02[MGR] checkin and destroy IKE_SA gk[1]
11[MGR] checkout IKEv1 SA by message with SPIs 4719fc37ffb744d0_i 34b11ae47eb56ae0_r
11[MGR] IKE_SA checkout not successful
";
    assert!(dropped_after_ike_delete(dropped));
    // Only the ISAKMP DELETE arrived; a scheduled job's failed checkout is no message.
    let lines: Vec<&str> = dropped.lines().collect();
    let only_ike = lines.get(..8).unwrap().join("\n");
    assert!(!dropped_after_ike_delete(&only_ike));
    let job = format!(
        "{only_ike}\n11[MGR] checkout IKEv1 SA with SPIs 4719fc37ffb744d0_i 34b11ae47eb56ae0_r\n\
         11[MGR] IKE_SA checkout not successful\n"
    );
    assert!(!dropped_after_ike_delete(&job));
    // A failed checkout before the ISAKMP DELETE does not count either.
    let before = format!(
        "{}\n{}\n{only_ike}",
        lines.get(8).unwrap(),
        lines.get(9).unwrap()
    );
    assert!(!dropped_after_ike_delete(&before));
}

#[test]
fn we_delete_a_child() {
    if let Some(why) = skip_reason() {
        report_skip(module_path!(), &why);
        return;
    }
    // An ESP DELETE alone: charon closes its CHILD_SA, the ISAKMP SA stays until charon
    // deletes it.
    let lab = Lab::new(&conf(false, "psk", "aes128-sha256"), "");
    let mut args = our_auth("psk");
    args.extend([
        "--initiate".into(),
        "--delete-child-after".into(),
        "1".into(),
        "--until".into(),
        "deleted".into(),
        "--seconds".into(),
        "25".into(),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let peer = lab.peer(&argv);
    let t0 = std::time::Instant::now();
    let log = loop {
        let log = lab.log();
        if log.contains("closing CHILD_SA gk{1}")
            || t0.elapsed() > std::time::Duration::from_secs(15)
        {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let term = lab.swanctl(&["--terminate", "--ike", "gk", "--timeout", "10"]);
    let (ok, out) = wait(peer);
    assert!(ok, "{out}\n{term}\n{}", lab.log());
    let spi = spi_in(&out);
    assert!(
        log.contains(&format!("received DELETE for ESP CHILD_SA with SPI {spi}"))
            && log.contains("closing CHILD_SA gk{1}"),
        "{out}\n{log}"
    );
    let deleted = out.find(&format!("CHILD_SA_DELETED spi_in={spi}"));
    let down = out.find("IKE_SA_DOWN PeerDeleted");
    assert!(
        deleted.is_some() && down.is_some() && deleted < down,
        "{out}"
    );
}

/// charon's connection for the NAT lab: as responder it does not know the initiator's
/// address in advance (it sees the router's).
fn nat_conf(aggressive: bool, charon_behind_nat: bool) -> String {
    let (local, remote, lts, rts) = if charon_behind_nat {
        ("10.99.0.2", "192.0.2.2", "10.1.0.0/24", "10.2.0.0/24")
    } else {
        ("192.0.2.2", "%any", "10.2.0.0/24", "10.1.0.0/24")
    };
    let (me, them) = if charon_behind_nat {
        ("a.example.com", "b.example.com")
    } else {
        ("b.example.com", "a.example.com")
    };
    format!(
        "connections {{ gk {{ version = 1\n aggressive = {}\n local_addrs = {local}\n remote_addrs = {remote}\n \
         proposals = aes256-sha256-modp2048\n local {{ auth = psk\n id = {me} }}\n remote {{ auth = psk\n id = {them} }}\n \
         children {{ gk {{ local_ts = {lts}\n remote_ts = {rts}\n esp_proposals = aes128-sha256\n start_action = none }} }} }} }}\n\
         secrets {{ ike-1 {{ id-a = a.example.com\n id-b = b.example.com\n secret = \"gatekey-interop-psk\" }} }}\n",
        if aggressive { "yes" } else { "no" }
    )
}

#[test]
fn nat_traversal_through_a_masquerading_router() {
    if let Some(why) = skip_reason() {
        report_skip(module_path!(), &why);
        return;
    }
    if !Path::new("/usr/sbin/nft").exists() {
        report_skip(
            module_path!(),
            "nft not installed (cargo xtask setup installs nftables)",
        );
        return;
    }
    for aggressive in [false, true] {
        // We are behind the NAT and initiate: both ends see exactly one NAT, on our side.
        let lab = Lab::nat(&nat_conf(aggressive, false), AGGRESSIVE_PSK, false);
        let mut args = our_auth("psk");
        args.extend(["--initiate".into(), "--seconds".into(), "15".into()]);
        if aggressive {
            args.push("--aggressive".into());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, out) = wait(lab.peer(&argv));
        let log = lab.log();
        assert!(
            out.contains("NAT local=true remote=false"),
            "aggressive={aggressive}\n{out}"
        );
        assert!(
            out.contains("local=10.99.0.2:4500 remote=192.0.2.2:4500"),
            "{out}"
        );
        assert!(
            out.contains("CHILD_SA_UP") && out.contains("encap=true"),
            "{out}"
        );
        assert!(log.contains("remote host is behind NAT"), "{log}");
        assert!(
            !log.contains("local host is behind NAT"),
            "charon wrongly saw itself behind a NAT (aggressive={aggressive}):\n{log}"
        );
        drop(lab);
        // charon is behind the NAT and initiates; we respond.
        let lab = Lab::nat(&nat_conf(aggressive, true), "", true);
        let mut args: Vec<String> = vec![
            "--id".into(),
            "b.example.com".into(),
            "--peer-id".into(),
            "a.example.com".into(),
            "--psk".into(),
            "gatekey-interop-psk".into(),
            "--seconds".into(),
            "6".into(),
            "--local-ts".into(),
            "10.2.0.0/24".into(),
            "--remote-ts".into(),
            "10.1.0.0/24".into(),
        ];
        if aggressive {
            args.push("--aggressive".into());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let peer = lab.peer(&argv);
        std::thread::sleep(std::time::Duration::from_millis(500));
        // charon cannot install its SAs on the host: the child fails on its side, the IKE
        // SA and the NAT detection are what this checks.
        let init = lab.swanctl(&["--initiate", "--child", "gk", "--timeout", "5"]);
        let (_, out) = wait(peer);
        let log = lab.log();
        assert!(
            out.contains("NAT local=false remote=true"),
            "aggressive={aggressive}\n{out}\n{init}\n{log}"
        );
        assert!(out.contains("IKE_SA_UP"), "{out}");
        assert!(log.contains("local host is behind NAT"), "{log}");
        assert!(!log.contains("remote host is behind NAT"), "{log}");
    }
}
