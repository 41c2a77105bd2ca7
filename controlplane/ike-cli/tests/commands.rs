//! The real `ike` binary against a fake iked (gatekey-nmi's server helper on an AF_UNIX
//! socket in a temporary directory) answering with gatekey-nmi's sample records: the
//! requests each command line makes, and the reports.
#![expect(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use gatekey_nmi::records::{TunnelOutcome, TunnelStatus};
use gatekey_nmi::samples;
use gatekey_nmi::server::{Handler, Incoming, Reply, Server, ServerConfig};
use gatekey_nmi::{Request, Response, Target};

struct Fake {
    seen: Mutex<Vec<(Option<String>, Request)>>,
}

impl Handler for Fake {
    async fn handle(&self, req: Incoming) -> Reply {
        let target = req.target.as_ref().map(|t| t.as_str().to_owned());
        self.seen
            .lock()
            .unwrap()
            .push((target, req.request.clone()));
        let resp = match &req.request {
            // Tunnel Y9 / K9 does not exist.
            Request::DeactIpTunDyn(c) | Request::DeactIkeTun(c) | Request::RefreshIpTunDyn(c)
                if c.tunnels
                    .iter()
                    .any(|t| t.tunnel_id.as_deref().is_some_and(|i| i.ends_with('9'))) =>
            {
                Response::TunnelControl(gatekey_nmi::records::TunnelControlResult {
                    tunnels: c
                        .tunnels
                        .iter()
                        .map(|t| TunnelOutcome {
                            name: None,
                            tunnel_id: t.tunnel_id.clone(),
                            status: TunnelStatus::NotFound,
                            message: Some("no such tunnel".into()),
                        })
                        .collect(),
                })
            }
            r => samples::response_for(r),
        };
        Reply::ok(Some(Target::new("default").unwrap()), resp)
    }
}

struct Env {
    sock: PathBuf,
    fake: Arc<Fake>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ike-cli-test-{}", std::process::id()));
        let sock = dir.join("ipsecmgmt");
        let fake = Arc::new(Fake {
            seen: Mutex::new(Vec::new()),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let (f, p) = (Arc::clone(&fake), sock.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let s = Server::bind(ServerConfig::new(&p, samples::server_info()))
                    .await
                    .expect("bind");
                tx.send(()).expect("ready");
                s.run(f, std::future::pending()).await
            })
        });
        rx.recv().expect("server up");
        Env { sock, fake }
    })
}

/// Runs `ike` and returns its output and the requests the fake iked saw for it.
fn ike(args: &[&str]) -> (Output, Vec<(Option<String>, Request)>) {
    let e = env();
    // Tests run in parallel: serialize so each sees only its own requests.
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    e.fake.seen.lock().unwrap().clear();
    let out = Command::new(env!("CARGO_BIN_EXE_ike"))
        .args(args)
        .env("IKE_IKED_SOCKET", &e.sock)
        .output()
        .expect("run ike");
    let seen = e.fake.seen.lock().unwrap().clone();
    (out, seen)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn list_shows_tunnel_numbers() {
    let (o, seen) = ike(&["cmd=list"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "Phase 1 Tunnel ID       [1 2]\nPhase 2 Tunnel ID       [1]\n"
    );
    assert!(matches!(
        &seen[..],
        [
            (None, Request::GetIkeTun(_)),
            (None, Request::GetIpTunDynIke(_))
        ]
    ));
    let (o, seen) = ike(&["cmd=list", "phase=1", "stack=gw"]);
    assert_eq!(stdout(&o), "Phase 1 Tunnel ID       [1 2]\n");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0.as_deref(), Some("gw"));
}

#[test]
fn list_verbose_has_the_aix_fields() {
    let (o, _) = ike(&["cmd=list", "verbose", "numlist=2,1"]);
    assert!(o.status.success());
    let s = stdout(&o);
    // The IKEv1 SA (K2) in the AIX layout.
    for l in [
        "Phase 1 Tunnel ID       2\n",
        "Local ID Type:          IPv4_Address\n",
        "Local ID:               192.0.2.1\n",
        "Remote ID:              203.0.113.9\n",
        "Mode:                   Main\n",
        "Role:                   Responder\n",
        "Encryption Alg:         AES-CBC-128\n",
        "Auth Alg:               Preshared Key\n",
        "Hash Alg:               SHA2-256\n",
        "Key Lifetime:           28800 Seconds\n",
        "Key Refresh Overlap:    10%\n",
        "Status:                 Active\n",
    ] {
        assert!(s.contains(l), "missing {l:?} in\n{s}");
    }
    // The phase 2 tunnel Y1.
    for l in [
        "Phase 2 Tunnel ID       1\n",
        "Local ID Type:          IPv4_Subnet\n",
        "Local ID:               10.1.0.0\n",
        "Local Subnet Mask:      255.255.0.0\n",
        "Local Port:             any\n",
        "Local Protocol:         all\n",
        "Remote Portocol:        all\n",
        "Encryption Alg:         ESP_AES_GCM_16_256\n",
        "AH Transform:           N/A\n",
        "PFS:                    Yes (group 31)\n",
        "SA Lifetime:            3540 Seconds\n",
        "SA Rem Lifetime:        3480 Seconds\n",
        "Assoc P1 Tunnel:        1\n",
        "Encap Mode:             ESP_tunnel\n",
        "Status:                 Active\n",
    ] {
        assert!(s.contains(l), "missing {l:?} in\n{s}");
    }
    // Every label of the AIX example appears, in the AIX order.
    let labels = [
        "Phase 1 Tunnel ID",
        "Local ID Type:",
        "Local ID:",
        "Remote ID Type:",
        "Remote ID:",
        "Mode:",
        "Security Policy:",
        "Role:",
        "Encryption Alg:",
        "Auth Alg:",
        "Hash Alg:",
        "Key Lifetime:",
        "Key Lifesize:",
        "Key Rem Lifetime:",
        "Key Rem Lifesize:",
        "Key Refresh Overlap:",
        "Tunnel Lifetime:",
        "Tunnel Lifesize:",
        "Tun Rem Lifetime:",
        "Status:",
        "Phase 2 Tunnel ID",
        "Local ID Type:",
        "Local ID:",
        "Local Subnet Mask:",
        "Local Port:",
        "Local Protocol:",
        "Remote ID Type:",
        "Remote ID:",
        "Remote Subnet Mask:",
        "Remote Port:",
        "Remote Portocol:",
        "Mode:",
        "Security Policy:",
        "Role:",
        "Encryption Alg:",
        "AH Transform:",
        "Auth Alg:",
        "PFS:",
        "SA Lifetime:",
        "SA Lifesize:",
        "SA Rem Lifetime:",
        "SA Rem Lifesize:",
        "Key Refresh Overlap:",
        "Tunnel Lifetime:",
        "Tunnel Lifesize:",
        "Tun Rem Lifetime:",
        "Assoc P1 Tunnel:",
        "Encap Mode:",
        "Status:",
    ];
    let k2 = s.find("Phase 1 Tunnel ID       2").unwrap();
    let mut at = k2;
    for l in labels {
        at += s[at..]
            .find(l)
            .unwrap_or_else(|| panic!("{l} out of order in\n{}", &s[k2..]));
    }
}

#[test]
fn activate_maps_to_nmi() {
    let (o, seen) = ike(&["cmd=activate", "numlist=gw-subnets"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        matches!(&seen[..], [(_, Request::ActIpTunDyn(c))] if c.tunnels[0].name.as_deref() == Some("gw-subnets"))
    );
    assert!(stdout(&o).contains("negotiation started"));
    let (o, seen) = ike(&[
        "cmd=activate",
        "phase=1",
        "remid=b.example.com",
        "ipaddr=192.0.2.1,198.51.100.7",
    ]);
    assert!(o.status.success());
    assert!(matches!(&seen[..], [(_, Request::ActIkeTun(c))]
        if c.tunnels[0].remote_id.as_deref() == Some("b.example.com")
            && c.tunnels[0].remote_address == Some("198.51.100.7".parse().unwrap())));
    let (o, seen) = ike(&["cmd=activate", "numlist=1"]);
    assert!(o.status.success());
    assert!(
        matches!(&seen[..], [(_, Request::RefreshIpTunDyn(c))] if c.tunnels[0].tunnel_id.as_deref() == Some("Y1"))
    );
}

#[test]
fn remove_maps_to_nmi() {
    let (o, seen) = ike(&["cmd=remove", "numlist=1"]);
    assert!(o.status.success());
    assert!(
        matches!(&seen[..], [(_, Request::DeactIpTunDyn(a)), (_, Request::DeactIkeTun(b))]
        if a.tunnels[0].tunnel_id.as_deref() == Some("Y1") && b.tunnels[0].tunnel_id.as_deref() == Some("K1"))
    );
    // `all`: the lists first, then every tunnel found (the fake answers "not found" for
    // the second tunnel of a request, which makes the exit code 1).
    let (o, seen) = ike(&["cmd=remove", "all"]);
    assert_eq!(seen.len(), 4, "two lists, two deactivations: {seen:?}");
    assert!(matches!(&seen[3], (_, Request::DeactIkeTun(b)) if b.tunnels.len() == 2));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("K1: state updated\nK2: not found"),
        "{}",
        stdout(&o)
    );
    // A tunnel that does not exist: reported, exit 1.
    let (o, _) = ike(&["cmd=remove", "phase=2", "numlist=9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("Y9: not found: no such tunnel"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_and_unreachable() {
    let o = Command::new(env!("CARGO_BIN_EXE_ike"))
        .arg("cmd=bogus")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("usage: ike cmd=activate"));
    let o = Command::new(env!("CARGO_BIN_EXE_ike"))
        .args(["cmd=list"])
        .env("IKE_IKED_SOCKET", "/nonexistent/ipsecmgmt")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is iked running"));
    let o = Command::new(env!("CARGO_BIN_EXE_ike"))
        .args(["cmd=log"])
        .output()
        .unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("IkeSyslogLevel"));
}
