//! Golden reports: the real `ipsec` binary against a fake iked and a fake nssd (real AF_UNIX
//! servers built with gatekey-nmi's server helper, in a temporary directory) that answer with
//! gatekey-nmi's sample records. `UPDATE_GOLDEN=1 cargo test -p ipsec-cli` rewrites the files
//! under tests/golden/ (review the diff).

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions panic on failure by design"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use gatekey_nmi::records::{ServerKind, TunnelControl};
use gatekey_nmi::samples;
use gatekey_nmi::server::{Handler, Incoming, Reply, Server, ServerConfig};
use gatekey_nmi::{Failure, MsgType, ReasonCode, Request, ReturnCode, Target};

struct Fake {
    nssd: bool,
    seen: Mutex<Vec<(MsgType, Option<String>, Request)>>,
}

impl Handler for Fake {
    async fn handle(&self, req: Incoming) -> Reply {
        let target = req.target.as_ref().map(|t| t.as_str().to_owned());
        self.seen
            .lock()
            .expect("lock")
            .push((req.msg_type(), target.clone(), req.request.clone()));
        match target.as_deref() {
            Some("denied") => {
                return Failure::not_authorized("EZB.IPSECCMD.GW1.denied.CONTROL").into();
            }
            Some("nosuch") => return Failure::no_target("no stack nosuch").into(),
            Some("nomgmt") => {
                return Failure::new(ReturnCode::EOPNOTSUPP, ReasonCode::NONE, "not enabled")
                    .into();
            }
            Some("slow") => {
                return Failure::new(
                    ReturnCode::ETIMEDOUT,
                    ReasonCode::NONE,
                    "the NSS client did not answer within 30 s",
                )
                .into();
            }
            Some("broken") => {
                return Failure::invalid(ReasonCode::BAD_PARAMETER, "tunnel ID Y0 is not valid")
                    .into();
            }
            _ => {}
        }
        if self.nssd && target.is_none() && req.msg_type() != MsgType::GET_CLIENTINFO {
            return Failure::invalid(ReasonCode::TARGET_REQUIRED, "name an NSS client").into();
        }
        let resolved = match (&req.target, self.nssd) {
            (Some(t), _) => Some(t.clone()),
            (None, false) => Some(Target::new("default").expect("target")),
            (None, true) => None,
        };
        Reply::ok(resolved, samples::response_for(&req.request))
    }
}

struct Env {
    busy: PathBuf,
    iked: PathBuf,
    nssd: PathBuf,
    iked_handler: Arc<Fake>,
    nssd_handler: Arc<Fake>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ipsec-cli-test-{}", std::process::id()));
        let iked = dir.join("iked/ipsecmgmt");
        let nssd = dir.join("nssd/nss");
        let busy = dir.join("busy/ipsecmgmt");
        let bp = busy.clone();
        let iked_handler = Arc::new(Fake {
            nssd: false,
            seen: Mutex::new(Vec::new()),
        });
        let nssd_handler = Arc::new(Fake {
            nssd: true,
            seen: Mutex::new(Vec::new()),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let (ih, nh, ip, np) = (
            Arc::clone(&iked_handler),
            Arc::clone(&nssd_handler),
            iked.clone(),
            nssd.clone(),
        );
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let s1 = Server::bind(ServerConfig::new(&ip, samples::server_info()))
                    .await
                    .expect("bind iked");
                let mut info = samples::server_info();
                info.server = ServerKind::Nssd;
                info.system_name = "NSS1".into();
                let s2 = Server::bind(ServerConfig::new(&np, info))
                    .await
                    .expect("bind nssd");
                let mut cfg = ServerConfig::new(&bp, samples::server_info());
                cfg.max_clients = 0;
                let s3 = Server::bind(cfg).await.expect("bind busy");
                let busy_handler = Arc::new(Fake {
                    nssd: false,
                    seen: Mutex::new(Vec::new()),
                });
                tx.send(()).expect("ready");
                let a = tokio::spawn(s1.run(ih, std::future::pending()));
                let b = tokio::spawn(s2.run(nh, std::future::pending()));
                let c = tokio::spawn(s3.run(busy_handler, std::future::pending()));
                let _ = tokio::join!(a, b, c);
            });
        });
        rx.recv().expect("servers up");
        Env {
            busy,
            iked,
            nssd,
            iked_handler,
            nssd_handler,
        }
    })
}

fn ipsec(args: &[&str]) -> Output {
    let e = env();
    Command::new(env!("CARGO_BIN_EXE_ipsec"))
        .args(args)
        .env("IPSEC_IKED_SOCKET", &e.iked)
        .env("IPSEC_NSSD_SOCKET", &e.nssd)
        .env("TZ", "UTC")
        .output()
        .expect("run ipsec")
}

/// Replaces the heading's date (the end of line 1) with `<date>`.
fn normalize(s: &str) -> String {
    let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
    if let Some(first) = lines.first_mut()
        && first.starts_with("gatekey ")
        && let Some(i) = first.rfind("  ")
    {
        first.truncate(i);
        first.push_str("  <date>");
    }
    lines.join("\n") + "\n"
}

fn golden(name: &str, args: &[&str], expect_code: i32) {
    let out = ipsec(args);
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(expect_code),
        "ipsec {args:?}: {stderr}"
    );
    assert!(
        stderr.is_empty(),
        "ipsec {args:?} wrote to stderr: {stderr}"
    );
    let got = normalize(&stdout);
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(got, want, "ipsec {args:?} differs from {}", path.display());
}

#[test]
fn filter_reports() {
    golden("f-display", &["-f", "display"], 0);
    golden(
        "f-display-profile-short",
        &["-f", "DIS", "-c", "PRO", "-r", "sho"],
        0,
    );
    golden("f-default", &["-f", "def", "-p", "default"], 0);
    golden(
        "t-traffic-test",
        &["-t", "10.1.1.1", "10.2.2.2", "tcp", "0", "22", "out", "0"],
        0,
    );
}

#[test]
fn tunnel_reports() {
    golden("k-display", &["-k", "display"], 0);
    golden("k-display-wide", &["-k", "display", "-r", "wide"], 0);
    golden("k-display-short", &["-k", "display", "-r", "short"], 0);
    golden("k-display-cascade", &["-k", "display", "-e"], 0);
    golden("y-display", &["-y", "display", "-p", "lab"], 0);
    golden("y-display-iked-all", &["-y", "display", "-b", "-c"], 0);
    golden("m-display", &["-m", "display"], 0);
    golden(
        "y-deactivate",
        &["-y", "deactivate", "Y1", "gw1-subnets"],
        8,
    );
}

#[test]
fn other_reports() {
    golden("i-display", &["-i", "display"], 0);
    golden("o-display", &["-o", "display"], 0);
    golden("w-display", &["-w", "display"], 0);
    golden("x-display", &["-x", "display"], 0);
    golden("S-display", &["-S", "display"], 0);
    golden("y-display-z", &["-y", "display", "-z", "GW1_default"], 0);
}

/// The requests the options produce. Each command names its own target so that tests running in
/// parallel do not see each other's requests.
#[test]
fn options_map_to_requests() {
    let e = env();
    let find = |h: &Fake, target: &str| {
        h.seen
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|(_, t, _)| t.as_deref() == Some(target))
            .cloned()
            .expect("the request reached the server")
    };
    let run = |args: &[&str]| {
        let out = ipsec(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "-y",
        "display",
        "-a",
        "Y1",
        "-n",
        "gw1-subnets",
        "-c",
        "-p",
        "MAP1",
    ]);
    let (t, _, req) = find(&e.iked_handler, "MAP1");
    assert_eq!(t, MsgType::GET_IPTUNDYNSTACK);
    assert_eq!(req, Request::GetIpTunDynStack(samples::selection()));
    run(&["-f", "reload", "-p", "map2"]);
    assert_eq!(find(&e.iked_handler, "map2").0, MsgType::SET_IPFLTPOLICY);
    run(&["-f", "display", "-c", "policy", "-n", "gw-gw", "-p", "map3"]);
    assert_eq!(find(&e.iked_handler, "map3").0, MsgType::GET_IPFLTPOLICY);
    run(&["-k", "refresh", "k3", "-p", "map4"]);
    let (t, _, req) = find(&e.iked_handler, "map4");
    assert_eq!(t, MsgType::REFRESH_IKETUN);
    let Request::RefreshIkeTun(TunnelControl { tunnels }) = req else {
        panic!("{req:?}")
    };
    assert_eq!(tunnels[0].tunnel_id.as_deref(), Some("K3"));
    run(&["-y", "activate", "gw1-subnets", "-p", "map5"]);
    let (t, _, req) = find(&e.iked_handler, "map5");
    assert_eq!(t, MsgType::ACT_IPTUNDYN);
    let Request::ActIpTunDyn(TunnelControl { tunnels }) = req else {
        panic!("{req:?}")
    };
    assert_eq!(tunnels[0].name.as_deref(), Some("gw1-subnets"));
    run(&["-m", "deactivate", "M1", "-p", "map6"]);
    assert_eq!(find(&e.iked_handler, "map6").0, MsgType::DEACT_IPTUNMANUAL);
    run(&[
        "-t",
        "2001:db8::1",
        "2001:db8::2",
        "icmpv6",
        "128",
        "0",
        "-p",
        "map7",
    ]);
    let (_, _, req) = find(&e.iked_handler, "map7");
    let Request::TrafficTest(tt) = req else {
        panic!("{req:?}")
    };
    assert_eq!((tt.protocol, tt.source_port, tt.direction), (58, 128, None));
    run(&["-f", "default", "-z", "GW1_map8"]);
    assert_eq!(
        find(&e.nssd_handler, "GW1_map8").0,
        MsgType::SET_IPFLTDEFAULT
    );
    run(&["-k", "display", "-e", "-z", "GW1_map9"]);
    assert_eq!(
        find(&e.nssd_handler, "GW1_map9").0,
        MsgType::GET_IKETUNCASCADE
    );
}

#[test]
fn json_is_the_nmi_records() {
    for (args, req) in [
        (
            vec!["-k", "display", "--json"],
            Request::GetIkeTun(Default::default()),
        ),
        (
            vec!["-f", "display", "--json"],
            Request::GetIpFltCurr(Default::default()),
        ),
        (vec!["-w", "display", "--json"], Request::GetIkeNsInfo),
        (vec!["-x", "display", "--json"], Request::GetClientInfo),
        (
            vec!["-y", "display", "-b", "--json"],
            Request::GetIpTunDynIke(Default::default()),
        ),
    ] {
        let out = ipsec(&args);
        assert_eq!(out.status.code(), Some(0));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
        let want: serde_json::Value =
            serde_json::from_slice(&samples::response_for(&req).encode_body().expect("encode"))
                .expect("json");
        assert_eq!(got, want, "{args:?}");
    }
    // Control requests print their result, and the exit code still reports the partial failure.
    let out = ipsec(&["-y", "deactivate", "Y1", "nosuchrule", "--json"]);
    assert_eq!(out.status.code(), Some(8));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["tunnels"][0]["status"], "state_updated");
    assert_eq!(v["tunnels"][1]["status"], "not_found");
}

fn expect_error(args: &[&str], code: i32, needle: &str) {
    let out = ipsec(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "ipsec {args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    assert!(
        stderr.contains(needle),
        "ipsec {args:?}: {stderr:?} lacks {needle:?}"
    );
}

#[test]
fn error_paths() {
    expect_error(
        &["-f", "default", "-p", "denied"],
        3,
        "READ access to EZB.IPSECCMD.GW1.denied.CONTROL",
    );
    expect_error(
        &["-k", "display", "-p", "nosuch"],
        4,
        "no stack named nosuch",
    );
    expect_error(
        &["-y", "display", "-z", "nosuch"],
        4,
        "NSS client nosuch is not connected",
    );
    expect_error(
        &["-y", "display", "-z", "nomgmt"],
        5,
        "not enabled for remote management",
    );
    expect_error(
        &["-y", "refresh", "Y0", "-p", "broken"],
        1,
        "tunnel ID Y0 is not valid",
    );
    // Usage errors.
    expect_error(&["-f", "de"], 2, "at least 3 characters");
    expect_error(
        &["-f", "display", "-k", "display"],
        2,
        "cannot be used with",
    );
    expect_error(&["-y", "deactivate"], 2, "at least one tunnel");
    expect_error(
        &["-k", "display", "-p", "a", "-z", "b"],
        2,
        "cannot be used with",
    );
    expect_error(
        &["-t", "10.0.0.1", "2001:db8::1", "udp", "0", "0"],
        2,
        "same address family",
    );
    expect_error(
        &["-t", "10.0.0.1", "10.0.0.2", "tcp"],
        2,
        "need SPORT and DPORT",
    );
    expect_error(&["-y", "display", "-e"], 2, "not valid");
    expect_error(
        &["-f", "display", "-c"],
        2,
        "needs current, profile or policy",
    );
    expect_error(&["-p", "default"], 2, "required");
    expect_error(&["-y", "display", "-z", "slow"], 9, "did not answer");
    // A server with no free client slot.
    let out = Command::new(env!("CARGO_BIN_EXE_ipsec"))
        .args(["-k", "display"])
        .env("IPSEC_IKED_SOCKET", &env().busy)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("iked is busy"));
    // No daemon: a clear message and its own exit code.
    let out = Command::new(env!("CARGO_BIN_EXE_ipsec"))
        .args(["-k", "display"])
        .env("IPSEC_IKED_SOCKET", "/nonexistent/ipsecmgmt")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach iked at /nonexistent/ipsecmgmt"),
        "{stderr}"
    );
    assert!(stderr.contains("is iked running?"), "{stderr}");
}

#[test]
fn help_and_version() {
    let out = ipsec(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Exit status:") && s.contains("IPSEC_IKED_SOCKET"));
    let out = ipsec(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        concat!("ipsec ", env!("CARGO_PKG_VERSION"))
    );
}

/// A server that speaks only a future protocol version: exit 7 with a clear message.
#[test]
fn version_mismatch_is_a_protocol_error() {
    use gatekey_nmi::Frame;
    use gatekey_nmi::records::ServerInfo;
    let path = std::env::temp_dir().join(format!("ipsec-cli-v9-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = listener.accept().expect("accept");
        let info = ServerInfo {
            min_version: 9,
            max_version: 9,
            ..samples::server_info()
        };
        s.write_all(&Frame::init(&info).expect("init").to_bytes())
            .expect("write");
    });
    let out = Command::new(env!("CARGO_BIN_EXE_ipsec"))
        .args(["-k", "display"])
        .env("IPSEC_IKED_SOCKET", &path)
        .output()
        .expect("run");
    server.join().expect("server");
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(7));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no common protocol version"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
