//! Interoperability with strongSwan's charon at the UDP level (no ESP: the host kernel has
//! none, so charon's own CHILD_SA installation fails; IKE itself is fully exercised).
//!
//! Two fresh network namespaces joined by a veth pair; charon runs in one
//! (`tests/interop/charon-netns.sh`), the `udp-peer` example drives this engine in the
//! other: first as initiator (IKE_SA_INIT + IKE_AUTH with PSK against charon, then an IKE
//! SA rekey and a DELETE over the new SA), then as responder to charon; and with RSA
//! certificates and IKE fragmentation in both directions. Needs root, `ip` and charon/swanctl; skips, saying why, otherwise.
//! The `udp-peer` example must be built: `cargo test -p ike-proto` builds it (a lone
//! `--test interop_charon` does not).
#![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PLUGINS: &str = "/usr/lib/ipsec/plugins";

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
    // SAFETY-free root check: /proc/self/status Uid line.
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
        "/usr/sbin/swanctl",
        "/usr/sbin/ip",
        "/usr/bin/unshare",
    ] {
        if !Path::new(p).exists() && !Path::new(&p.replace("/usr/sbin", "/sbin")).exists() {
            return Some(format!(
                "{p} not installed (cargo xtask setup installs strongSwan)"
            ));
        }
    }
    None
}

fn example_binary() -> PathBuf {
    // target/debug/deps/interop_charon-… → target/debug/examples/udp-peer
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("udp-peer")
}

struct Netns {
    dir: PathBuf,
    a: String,
    b: String,
}

impl Netns {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/charon-netns.sh")
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("sh")
            .arg(Self::script())
            .args(args)
            .env("GK_NS_A", &self.a)
            .env("GK_NS_B", &self.b)
            .output()
            .unwrap()
    }

    fn up() -> Self {
        // Unique per test in this process (tests run in parallel).
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let n = Self {
            dir: std::env::temp_dir().join(format!("gk-interop-{id}")),
            a: format!("gki-a-{id}"),
            b: format!("gki-b-{id}"),
        };
        let _ = std::fs::remove_dir_all(&n.dir);
        std::fs::create_dir_all(n.dir.join(&n.b)).unwrap();
        let o = n.run(&["up", n.dir.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "netns setup: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        n
    }

    fn start_charon(&self, ike: &str, esp: &str) {
        self.start_charon_with(ike, esp, None);
    }

    /// `certs`: (CA PEM, charon's certificate PEM, charon's key PEM) for public-key
    /// authentication (charon then fragments messages above 600 bytes); None: PSK.
    fn start_charon_with(&self, ike: &str, esp: &str, certs: Option<(&str, &str, &str)>) {
        let d = self.dir.join(&self.b);
        let mut load = String::from(
            "random nonce kdf aes sha1 sha2 hmac gmp x509 pubkey pkcs1 pkcs8 pem revocation",
        );
        for p in ["openssl", "gcm", "curve25519"] {
            if Path::new(PLUGINS)
                .join(format!("libstrongswan-{p}.so"))
                .exists()
            {
                load.push(' ');
                load.push_str(p);
            }
        }
        load.push_str(" kernel-netlink socket-default vici");
        std::fs::write(
            d.join("strongswan.conf"),
            format!(
                "charon {{\n load = {load}\n install_routes = no\n fragment_size = 600\n filelog {{ log {{ path = {}/charon.log\n default = 1\n ike = 2\n flush_line = yes }} }}\n plugins {{ vici {{ socket = unix://{}/charon.vici }} }}\n}}\n",
                d.display(),
                d.display()
            ),
        )
        .unwrap();
        let (local_auth, remote_auth) = match certs {
            Some((ca, cert, key)) => {
                for (sub, file, body) in [
                    ("x509ca", "ca.pem", ca),
                    ("x509", "b.pem", cert),
                    ("private", "b.key", key),
                ] {
                    std::fs::create_dir_all(d.join(sub)).unwrap();
                    std::fs::write(d.join(sub).join(file), body).unwrap();
                }
                ("auth = pubkey\n certs = b.pem", "auth = pubkey")
            }
            None => ("auth = psk", "auth = psk"),
        };
        std::fs::write(
            d.join("swanctl.conf"),
            format!(
                "connections {{ gk {{ version = 2\n local_addrs = 192.0.2.2\n remote_addrs = 192.0.2.1\n proposals = {ike}\n local {{ {local_auth}\n id = b.example.com }}\n remote {{ {remote_auth}\n id = a.example.com }}\n children {{ gk {{ local_ts = 10.2.0.0/24\n remote_ts = 10.1.0.0/24\n esp_proposals = {esp}\n start_action = none }} }} }} }}\nsecrets {{ ike-1 {{ id-a = a.example.com\n id-b = b.example.com\n secret = \"gatekey-interop-psk\" }} }}\n"
            ),
        )
        .unwrap();
        let o = self.run(&["charon", self.dir.to_str().unwrap(), &self.b]);
        assert!(
            o.status.success(),
            "charon start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let load_out = std::fs::read_to_string(d.join("load.out")).unwrap_or_default();
        assert!(
            load_out.contains("loaded connection 'gk'"),
            "swanctl: {load_out}"
        );
    }

    fn stop_charon(&self) {
        let pid = self.dir.join(&self.b).join("charon.pid");
        if let Ok(p) = std::fs::read_to_string(&pid) {
            let _ = Command::new("kill").arg(p.trim()).status();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let _ = std::fs::remove_file(pid);
        }
    }

    fn charon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(&self.b).join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.run(&["down", self.dir.to_str().unwrap()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn udp_peer(ns: &str, proposal: &str, initiate: bool) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(example_binary()).args([
        "--local",
        "192.0.2.1",
        "--remote",
        "192.0.2.2",
        "--id",
        "a.example.com",
        "--peer-id",
        "b.example.com",
        "--psk",
        "gatekey-interop-psk",
        "--proposal",
        proposal,
        "--seconds",
        "15",
    ]);
    if initiate {
        c.arg("--initiate");
    }
    c
}

type Lines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

/// Reads the child's stdout until it says its sockets are bound.
fn wait_ready(child: &mut std::process::Child) -> Lines {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.by_ref().any(|l| l.is_ok_and(|l| l == "READY"));
    assert!(
        ready,
        "udp-peer never said READY (could not bind, or a stale build: `cargo test -p ike-proto` builds the example)"
    );
    lines
}

fn rest_of(lines: &mut Lines) -> String {
    lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")
}

#[test]
fn strongswan_psk_both_directions() {
    if let Some(why) = skip_reason() {
        report_skip("strongswan_psk_both_directions", &why);
        return;
    }
    assert!(
        example_binary().exists(),
        "udp-peer example not built at {}",
        example_binary().display()
    );
    let modern = ["openssl", "gcm", "curve25519"].iter().all(|p| {
        Path::new(PLUGINS)
            .join(format!("libstrongswan-{p}.so"))
            .exists()
    });
    let cases: Vec<(&str, &str, &str)> = if modern {
        vec![
            (
                "aes256gcm16-prfsha256-x25519",
                "aes256gcm16",
                "x25519-gcm256",
            ),
            ("aes256-sha256-modp2048", "aes128-sha256", "modp2048-cbc256"),
        ]
    } else {
        eprintln!("note: strongSwan's gcm/curve25519 plugins are missing; testing MODP/CBC only");
        vec![("aes256-sha256-modp2048", "aes128-sha256", "modp2048-cbc256")]
    };
    for (ike, esp, ours) in cases {
        // We initiate.
        let n = Netns::up();
        n.start_charon(ike, esp);
        // ... then rekey the IKE SA and delete the new one: charon must accept both.
        let out = udp_peer(&n.a, ours, true)
            .arg("--rekey-ike")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let log = n.charon_log();
        assert!(text.contains("REKEY_OK"), "{ike}: IKE rekey: {text}\n{log}");
        assert!(
            log.contains("rekeyed between 192.0.2.2[b.example.com]...192.0.2.1[a.example.com]"),
            "{log}"
        );
        assert!(
            out.status.success(),
            "{ike}: initiator failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("IKE_SA_UP peer=b.example.com"), "{text}");
        assert!(
            log.contains("authentication of 'a.example.com' with pre-shared key successful"),
            "{log}"
        );
        assert!(
            log.contains("established between 192.0.2.2[b.example.com]...192.0.2.1[a.example.com]"),
            "{log}"
        );
        // charon cannot install ESP on this kernel, so it refuses the child; a real kernel
        // (VM scenarios) gets CHILD_SA_UP here.
        assert!(
            text.contains("CHILD_SA_UP") || text.contains("CHILD_SA_FAILED"),
            "{text}"
        );
        n.stop_charon();

        // charon initiates, we respond (TS narrowed to charon's /24s).
        n.start_charon(ike, esp);
        let mut responder = udp_peer(&n.a, ours, false)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = wait_ready(&mut responder);
        let vici = format!("unix://{}/charon.vici", n.dir.join(&n.b).display());
        let _ = Command::new("swanctl")
            .args([
                "--initiate",
                "--child",
                "gk",
                "--timeout",
                "5",
                "--uri",
                &vici,
            ])
            .output();
        let text = rest_of(&mut lines);
        let out = responder.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{ike}: responder failed: {text}\n{}",
            n.charon_log()
        );
        assert!(text.contains("IKE_SA_UP peer=b.example.com"), "{text}");
        assert!(text.contains("CHILD_SA_UP"), "{text}");
        assert!(
            text.contains("start: 10.1.0.0, end: 10.1.0.255"),
            "narrowed local TS: {text}"
        );
        n.stop_charon();
    }
}

struct CertFiles {
    dir: PathBuf,
    ca: String,
    b_cert: String,
    b_key: String,
}

/// A CA and certificates for a.example.com and b.example.com (RSA-2048 keys from
/// tests/vectors/pki), issued with rcgen; a's files are written for the udp-peer example.
fn make_certs(dir: &Path) -> CertFiles {
    let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/pki");
    let key = |f: &str| std::fs::read_to_string(pki.join(f)).unwrap();
    let validity = |p: &mut rcgen::CertificateParams| {
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    };
    let ca_key = rcgen::KeyPair::from_pem(&key("rsa-ca.key")).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Gatekey Interop CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    validity(&mut ca);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut out = Vec::new();
    for (name, file) in [
        ("a.example.com", "rsa-ee.key"),
        ("b.example.com", "rsa-b.key"),
    ] {
        let k = rcgen::KeyPair::from_pem(&key(file)).unwrap();
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        validity(&mut p);
        out.push((p.signed_by(&k, &issuer).unwrap().pem(), key(file)));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.join("a.pem"), &out[0].0).unwrap();
    std::fs::write(dir.join("a.key"), &out[0].1).unwrap();
    CertFiles {
        dir: dir.to_path_buf(),
        ca: ca_pem,
        b_cert: out[1].0.clone(),
        b_key: out[1].1.clone(),
    }
}

#[test]
fn strongswan_rsa_certificates_with_fragmentation() {
    if let Some(why) = skip_reason() {
        report_skip("strongswan_rsa_certificates_with_fragmentation", &why);
        return;
    }
    let n = Netns::up();
    let c = make_certs(&n.dir.join("a-certs"));
    let files = |f: &str| c.dir.join(f).display().to_string();
    let cert_args = [
        "--cert".to_string(),
        files("a.pem"),
        "--key".to_string(),
        files("a.key"),
        "--ca".to_string(),
        files("ca.pem"),
        "--fragment-size".to_string(),
        "500".to_string(),
    ];
    let (ike, esp, ours) = ("aes256-sha256-modp2048", "aes128-sha256", "modp2048-cbc256");
    // We initiate; both sides fragment IKE_AUTH (ours at 500 bytes, charon's at 600).
    n.start_charon_with(ike, esp, Some((&c.ca, &c.b_cert, &c.b_key)));
    let out = udp_peer(&n.a, ours, true)
        .args(&cert_args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let log = n.charon_log();
    assert!(out.status.success(), "initiator failed: {text}\n{log}");
    assert!(text.contains("IKE_SA_UP peer=b.example.com"), "{text}");
    assert!(
        log.contains("authentication of 'a.example.com' with RSA_EMSA_PKCS1_SHA2_256 successful"),
        "{log}"
    );
    assert!(
        log.contains("IKE_AUTH request 1 [ EF(1/"),
        "our IKE_AUTH was not fragmented: {log}"
    );
    n.stop_charon();

    // charon initiates with certificates; we respond.
    n.start_charon_with(ike, esp, Some((&c.ca, &c.b_cert, &c.b_key)));
    let mut responder = udp_peer(&n.a, ours, false)
        .args(&cert_args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = wait_ready(&mut responder);
    let vici = format!("unix://{}/charon.vici", n.dir.join(&n.b).display());
    let _ = Command::new("swanctl")
        .args([
            "--initiate",
            "--child",
            "gk",
            "--timeout",
            "5",
            "--uri",
            &vici,
        ])
        .output();
    let text = rest_of(&mut lines);
    let out = responder.wait_with_output().unwrap();
    let log = n.charon_log();
    assert!(out.status.success(), "responder failed: {text}\n{log}");
    assert!(text.contains("SIGNED"), "{text}");
    assert!(text.contains("CHILD_SA_UP"), "{text}");
    assert!(
        log.contains("authentication of 'a.example.com' with RSA_EMSA_PKCS1_SHA2_256 successful"),
        "{log}"
    );
    n.stop_charon();
}
