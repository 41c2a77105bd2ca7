//! nssd's NMI: GET_CLIENTINFO, routing to NSS clients (remote management),
//! and every refusal (ENXIO, EOPNOTSUPP, EACCES, target required, not
//! served, the 11th management client).

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed step is a test failure"
)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Env, Logs};
use gatekey_nmi::codes::{ReasonCode, ReturnCode};
use gatekey_nmi::header::{MAX_VERSION, Target};
use gatekey_nmi::message::{Request as NmiRequest, Response as NmiResponse};
use gatekey_nmi::records::{Summary, SummaryRecord};
use gatekey_nmi::server::{Handler, Incoming, Reply};
use gatekey_nmi::{Client as NmiClient, Error as NmiError};
use nss_client::{MgmtHandler, NssClient};

/// Captures tracing output of the whole test binary (the NMI server helper
/// logs through tracing).
fn traces() -> &'static Mutex<Vec<String>> {
    static T: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    T.get_or_init(|| {
        struct W;
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut v) = traces().lock() {
                    v.push(String::from_utf8_lossy(b).into_owned());
                }
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_writer(|| W)
            .with_ansi(false)
            .try_init();
        Mutex::new(Vec::new())
    })
}

/// iked's side, faked: answers GET_SUMMARY for relayed requests.
struct FakeIked;

impl Handler for FakeIked {
    async fn handle(&self, req: Incoming) -> Reply {
        match req.request {
            NmiRequest::GetSummary => Reply::ok(
                None,
                NmiResponse::Summary(Summary {
                    since: 1_700_000_000,
                    statistics: SummaryRecord {
                        p1_active: 3,
                        ..SummaryRecord::default()
                    },
                }),
            ),
            _ => gatekey_nmi::codes::Failure::not_served("fake").into(),
        }
    }
}

fn fake_iked_handler(client_name: &'static str) -> MgmtHandler {
    let h = Arc::new(FakeIked);
    Arc::new(move |bytes: Vec<u8>, _requester: Option<String>| {
        let h = Arc::clone(&h);
        Box::pin(async move {
            gatekey_nmi::server::serve_relayed(&*h, client_name, MAX_VERSION, &bytes).await
        })
    })
}

async fn nmi<T: Send + 'static>(path: PathBuf, f: impl FnOnce(PathBuf) -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || f(path))
        .await
        .expect("blocking task")
}

fn target(s: &str) -> Target {
    Target::new(s).expect("target")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_info_routing_and_refusals() {
    if !nix::unistd::geteuid().is_root() {
        // The test relies on the NMI rule "uid 0 is permitted where no
        // profile matches" (docs/nmi-protocol.md §7); CI runs as root.
        report_skip(
            module_path!(),
            "the NMI authorization test must run as root",
        );
        return;
    }
    let _ = traces();
    let env = Env::new();
    let sock = env.tmp.path().join("run/nss");
    let slogs = Logs::default();
    let server = env
        .server_with(&slogs, |o| {
            o.nmi_socket = Some(sock.clone());
            o.mgmt_timeout = Duration::from_secs(5);
        })
        .await;
    // A client with RemoteMgmt (permitted), one without (C3 is not permitted NETMGMT).
    let mut cfg = env.client_config("SYSTEMA_STACK1", "A1S1", "pw-a1s1", env.port);
    cfg.log_hook = None;
    let a = NssClient::start(cfg, Some(fake_iked_handler("SYSTEMA_STACK1"))).expect("client");
    a.wait_connected(Duration::from_secs(10))
        .await
        .expect("A connected");
    let c3 = env
        .client("C3CLIENT", "C3", "pw-c3", &Logs::default())
        .await;
    c3.wait_connected(Duration::from_secs(10))
        .await
        .expect("C3 connected");

    let port = env.port;
    let results = nmi(sock.clone(), move |p| {
        let mut c = NmiClient::connect(&p).expect("NMI connect");
        assert_eq!(
            c.server_info().server,
            gatekey_nmi::records::ServerKind::Nssd
        );
        // GET_CLIENTINFO: all clients, then one.
        let all = c
            .call(None, &NmiRequest::GetClientInfo)
            .expect("clientinfo");
        let NmiResponse::ClientInfo(list) = all.response else {
            panic!("wrong response")
        };
        assert_eq!(list.system_name, common::SYS);
        assert_eq!(list.total_available, 2);
        let a = list
            .records
            .iter()
            .find(|r| r.client_name == "SYSTEMA_STACK1")
            .expect("A");
        assert_eq!(a.user_id, "A1S1");
        assert_eq!(a.stack_name, "stack1");
        assert_eq!(a.system_name, "SYSTEMA");
        assert_eq!(a.server_port, port);
        assert!(a.remote_management_selected && a.remote_management_enabled);
        assert!(a.certificate_services_selected && a.certificate_services_enabled);
        let c3 = list
            .records
            .iter()
            .find(|r| r.client_name == "C3CLIENT")
            .expect("C3");
        assert!(c3.remote_management_selected && !c3.remote_management_enabled);
        let one = c
            .call(Some(&target("c3client")), &NmiRequest::GetClientInfo)
            .expect("one");
        let NmiResponse::ClientInfo(list) = one.response else {
            panic!()
        };
        assert_eq!(list.records.len(), 1);
        let none = c
            .call(Some(&target("NOSUCH")), &NmiRequest::GetClientInfo)
            .expect("none");
        let NmiResponse::ClientInfo(list) = none.response else {
            panic!()
        };
        assert!(
            list.records.is_empty(),
            "a named client that is not connected: no records"
        );
        // Routed to the client and answered by its (fake) iked.
        let r = c
            .call(Some(&target("systema_stack1")), &NmiRequest::GetSummary)
            .expect("routed");
        assert_eq!(
            r.target().map(|t| t.as_str().to_owned()).as_deref(),
            Some("systema_stack1")
        );
        let NmiResponse::Summary(s) = r.response else {
            panic!()
        };
        assert_eq!(s.statistics.p1_active, 3);
        let mut out = Vec::new();
        for (t, req) in [
            (Some("NOSUCH"), NmiRequest::GetSummary),
            (Some("C3CLIENT"), NmiRequest::GetSummary),
            (None, NmiRequest::GetSummary),
            (Some("SYSTEMA_STACK1"), NmiRequest::SetIpFltDefault),
            (Some("SYSTEMA_STACK1"), NmiRequest::GetStackInfo),
        ] {
            let e = c.call(t.map(target).as_ref(), &req).expect_err("refused");
            out.push(e);
        }
        out
    })
    .await;
    let codes: Vec<(ReturnCode, ReasonCode)> = results
        .iter()
        .map(|e| match e {
            NmiError::Failed { rc, rsn, .. } => (*rc, *rsn),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (ReturnCode::ENXIO, ReasonCode::NONE),
            (ReturnCode::EOPNOTSUPP, ReasonCode::NONE),
            (ReturnCode::EINVAL, ReasonCode::TARGET_REQUIRED),
            (ReturnCode::EACCES, ReasonCode::NONE),
            (ReturnCode::EOPNOTSUPP, ReasonCode::NOT_SERVED),
        ]
    );
    match &results[3] {
        NmiError::Failed { profile, .. } => {
            assert_eq!(
                profile.as_deref(),
                Some("EZB.NETMGMT.NSSSYS.SYSTEMA_STACK1.IPSEC.CONTROL")
            );
        }
        other => panic!("{other}"),
    }
    slogs
        .wait_for(&[
            "DBG0202I",
            "GET_SUMMARY",
            "routed to client SYSTEMA_STACK1 and answered",
        ])
        .await;
    slogs
        .wait_for(&[
            "DBG0201I",
            "client C3CLIENT refused: remote management is not enabled",
        ])
        .await;
    slogs
        .wait_for(&[
            "DBG0032I",
            "EZB.NETMGMT.NSSSYS.SYSTEMA_STACK1.IPSEC.CONTROL",
            "rc 4 (DENY)",
        ])
        .await;

    // A client without a handler refuses routed requests (EOPNOTSUPP on the NSS wire).
    a.shutdown().await;
    let b = NssClient::start(
        env.client_config("SYSTEMA_STACK1", "A1S1", "pw-a1s1", env.port),
        None,
    )
    .expect("client");
    b.wait_connected(Duration::from_secs(10)).await.expect("b");
    let e = nmi(sock.clone(), |p| {
        let mut c = NmiClient::connect(&p).expect("NMI connect");
        c.call(Some(&target("SYSTEMA_STACK1")), &NmiRequest::GetSummary)
            .expect_err("refused")
    })
    .await;
    assert!(
        matches!(
            e,
            NmiError::Failed {
                rc: ReturnCode::EOPNOTSUPP,
                ..
            }
        ),
        "{e}"
    );
    slogs
        .wait_for(&["DBG0201I", "refused by the client", "EOPNOTSUPP"])
        .await;

    // At most 10 management clients: the 11th gets TERM EBUSY.
    // The server releases the earlier requests' connections asynchronously:
    // ten are held once it has (bounded retry), then the 11th is refused.
    let e = nmi(sock.clone(), |p| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let held: Vec<NmiClient> = loop {
            match (0..10)
                .map(|_| NmiClient::connect(&p))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(held) => break held,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("ten management clients at once: {e}"),
            }
        };
        let e = NmiClient::connect(&p).expect_err("the 11th is refused");
        drop(held);
        e
    })
    .await;
    match e {
        NmiError::Terminated { rc, rsn, .. } => {
            assert_eq!((rc, rsn), (ReturnCode::EBUSY, ReasonCode::TOO_MANY_CLIENTS));
        }
        other => panic!("{other}"),
    }
    let seen = traces()
        .lock()
        .map(|v| {
            v.iter()
                .any(|l| l.contains("NMI connection refused: too many clients"))
        })
        .unwrap_or(false);
    assert!(seen, "the server logs the refused 11th client");
    b.shutdown().await;
    c3.shutdown().await;
    server.shutdown().await;
}

/// The user name nssd's NMI maps this process's uid to (upper case).
fn my_user_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| format!("UID{uid}"), |u| u.name.to_ascii_uppercase())
}

/// REFRESH_CONFIG: the same refresh as SIGHUP, answered over the NMI — a bad
/// file is rejected whole with file:line:column, a good one applies and the
/// answer lists the changes; EZB.NETMGMT.<sys>.<sys>.NSS.CONTROL decides; a
/// named target (an NSS client) is not routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_config_over_nmi() {
    let env = Env::new();
    let sock = env.tmp.path().join("run/nss");
    let slogs = Logs::default();
    let server = env
        .server_with(&slogs, |o| o.nmi_socket = Some(sock.clone()))
        .await;
    let profile = format!("EZB.NETMGMT.{0}.{0}.NSS.CONTROL", common::SYS);
    let permit = format!(
        "{}Profile {profile} {{ Permit {} }}\n",
        common::saf_text(),
        my_user_name()
    );
    common::write_600(&env.saf, &permit);
    server.refresh().await.expect("the permit is loaded");
    let client = env
        .client("SYSTEMA_STACK1", "A1S1", "pw-a1s1", &Logs::default())
        .await;
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("connected");

    // A bad nssd.conf: EINVAL/GkRsnConfigRejected naming file:line:column.
    let new_port = common::free_port();
    std::fs::write(
        &env.conf,
        common::conf_text(new_port, "  SyslogLevel 9999\n"),
    )
    .expect("write");
    let call = |req: NmiRequest, t: Option<&'static str>| {
        let sock = sock.clone();
        nmi(sock, move |p| {
            let mut c = NmiClient::connect(&p).expect("NMI connect");
            c.call(t.map(target).as_ref(), &req)
        })
    };
    match call(NmiRequest::RefreshConfig, None).await {
        Err(NmiError::Failed {
            rc, rsn, message, ..
        }) => {
            assert_eq!((rc, rsn), (ReturnCode::EINVAL, ReasonCode::CONFIG_REJECTED));
            assert!(
                message.contains("nssd.conf:10:15: SyslogLevel must be a whole number"),
                "{message}"
            );
            assert!(
                message.contains("the running configuration stays in force"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    slogs
        .wait_for(&["DBG0006I", "requested by NMI caller"])
        .await;
    slogs.wait_for(&["DBG0008E", "nssd.conf:10:15"]).await;
    assert_eq!(server.local_addr().await.port(), env.port);

    // A good one: new port and keepalive interval, answered with the changes.
    std::fs::write(
        &env.conf,
        common::conf_text(new_port, "  KeepaliveInterval 45\n"),
    )
    .expect("write");
    let r = call(NmiRequest::RefreshConfig, None)
        .await
        .expect("refresh applied");
    assert_eq!(r.target(), None);
    let NmiResponse::ConfigRefresh(res) = r.response else {
        panic!("wrong response")
    };
    assert_eq!(res.server, gatekey_nmi::records::ServerKind::Nssd);
    assert_eq!(res.config_file, env.conf.display().to_string());
    let changes = res.changes.join("\n");
    assert!(
        changes.contains(&format!(
            "listening on 127.0.0.1:{new_port} (was 127.0.0.1:{}",
            env.port
        )),
        "{changes}"
    );
    assert!(
        changes.contains("KeepaliveInterval  45 (was: KeepaliveInterval"),
        "{changes}"
    );
    assert!(
        changes.contains(&format!("Port               {new_port} (was: Port")),
        "{changes}"
    );
    assert_eq!(server.local_addr().await.port(), new_port);
    slogs.wait_for(&["DBG0007I", "refresh complete"]).await;
    // The NSS connection survived.
    client
        .sign(
            None,
            nss_client::SignatureAlgorithm::RsaPkcs1Sha256,
            nss_client::SignInput::Data(b"still here".to_vec()),
            None,
        )
        .await
        .expect("signs after the refresh");
    assert_eq!(client.status().connects, 1);

    // Not routed to a client.
    match call(NmiRequest::RefreshConfig, Some("SYSTEMA_STACK1")).await {
        Err(NmiError::Failed { rc, rsn, .. }) => {
            assert_eq!((rc, rsn), (ReturnCode::EOPNOTSUPP, ReasonCode::NOT_SERVED));
        }
        other => panic!("{other:?}"),
    }

    // The profile decides (for root too).
    let deny = format!(
        "{}Profile {profile} {{ Permit NOBODY }}\n",
        common::saf_text()
    );
    common::write_600(&env.saf, &deny);
    server.refresh().await.expect("the denial is loaded");
    match call(NmiRequest::RefreshConfig, None).await {
        Err(NmiError::Failed { rc, profile: p, .. }) => {
            assert_eq!(rc, ReturnCode::EACCES);
            assert_eq!(p.as_deref(), Some(profile.as_str()));
        }
        other => panic!("{other:?}"),
    }
    slogs
        .wait_for(&[
            "DBG0032I",
            &format!("{profile}) rc 4 (DENY) racfRC 8 racfRsn 0 profile {profile} grants NONE (NMI caller uid 0)"),
        ])
        .await;
    client.shutdown().await;
    server.shutdown().await;
}
