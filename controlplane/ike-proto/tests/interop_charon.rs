//! Interoperability with strongSwan's charon at the UDP level (no ESP: the host kernel has
//! none, so charon's own CHILD_SA installation fails; IKE itself is fully exercised).
//!
//! Two fresh network namespaces joined by a veth pair; charon runs in one
//! (`tests/interop/charon-netns.sh`), the `udp-peer` example drives this engine in the
//! other: first as initiator (IKE_SA_INIT + IKE_AUTH with PSK against charon), then as
//! responder to charon. Needs root, `ip` and charon/swanctl; skips, saying why, otherwise.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHARON: &str = "/usr/lib/ipsec/charon";
const PLUGINS: &str = "/usr/lib/ipsec/plugins";

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
        let id = std::process::id();
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
                "charon {{\n load = {load}\n install_routes = no\n filelog {{ log {{ path = {}/charon.log\n default = 1\n ike = 2\n flush_line = yes }} }}\n plugins {{ vici {{ socket = unix://{}/charon.vici }} }}\n}}\n",
                d.display(),
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("swanctl.conf"),
            format!(
                "connections {{ gk {{ version = 2\n local_addrs = 192.0.2.2\n remote_addrs = 192.0.2.1\n proposals = {ike}\n local {{ auth = psk\n id = b.example.com }}\n remote {{ auth = psk\n id = a.example.com }}\n children {{ gk {{ local_ts = 10.2.0.0/24\n remote_ts = 10.1.0.0/24\n esp_proposals = {esp}\n start_action = none }} }} }} }}\nsecrets {{ ike-1 {{ id-a = a.example.com\n id-b = b.example.com\n secret = \"gatekey-interop-psk\" }} }}\n"
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

#[test]
fn strongswan_psk_both_directions() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED strongswan_psk_both_directions: {why}");
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
        let out = udp_peer(&n.a, ours, true).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let log = n.charon_log();
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
        let responder = udp_peer(&n.a, ours, false)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
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
        let out = responder.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
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
