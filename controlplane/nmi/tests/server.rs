//! The server helper on a real AF_UNIX socket in a temporary directory, driven by the blocking
//! client and by raw bytes.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions panic on failure by design"
)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gatekey_nmi::client::read_frame;
use gatekey_nmi::records::*;
use gatekey_nmi::samples;
use gatekey_nmi::server::{
    Caller, Handler, Incoming, Origin, Reply, Server, ServerConfig, serve_relayed,
};
use gatekey_nmi::*;
use tokio::sync::oneshot;

static N: AtomicU32 = AtomicU32::new(0);

fn temp_socket(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gatekey-nmi-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    dir.join("sock")
}

/// An iked-like handler: answers with the samples, resolves a blank target to "default",
/// knows only the stacks "default" and "lab", denies CONTROL to anyone but "root-like" uid
/// `control_uid`.
struct Fake {
    control_uid: u32,
    seen: Mutex<Vec<(Origin, MsgType, Option<Target>)>>,
}

impl Handler for Fake {
    async fn handle(&self, req: Incoming) -> Reply {
        self.seen.lock().expect("lock").push((
            req.origin.clone(),
            req.msg_type(),
            req.target.clone(),
        ));
        // Relayed requests are served for the stack of the NSS connection, whatever the target.
        let stack = match &req.target {
            _ if matches!(req.origin, Origin::Relayed { .. }) => "default".to_owned(),
            None => "default".to_owned(),
            Some(t) if t.matches("default") || t.matches("lab") => t.as_str().to_lowercase(),
            Some(t) => return Failure::no_target(format!("no stack {t}")).into(),
        };
        if req.msg_type() == MsgType::GET_CLIENTINFO {
            return Failure::not_served("GET_CLIENTINFO is served by nssd").into();
        }
        if let Some(c) = req.caller()
            && req.access() == Access::Control
            && c.uid != self.control_uid
        {
            return Failure::not_authorized(format!("EZB.IPSECCMD.GW1.{stack}.CONTROL")).into();
        }
        Reply::ok(
            Some(Target::new(&stack).expect("target")),
            samples::response_for(&req.request),
        )
    }
}

struct Running {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    handler: Arc<Fake>,
}

async fn start(cfg: impl FnOnce(&mut ServerConfig), control_uid: u32) -> Running {
    let path = temp_socket("srv");
    let mut config = ServerConfig::new(&path, samples::server_info());
    cfg(&mut config);
    let server = Server::bind(config).await.expect("bind");
    let handler = Arc::new(Fake {
        control_uid,
        seen: Mutex::new(Vec::new()),
    });
    let (tx, rx) = oneshot::channel::<()>();
    let h = Arc::clone(&handler);
    let task = tokio::spawn(server.run(h, async move {
        let _ = rx.await;
    }));
    Running {
        path,
        stop: Some(tx),
        task,
        handler,
    }
}

impl Running {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.expect("join").expect("run");
        assert!(!self.path.exists(), "socket removed at shutdown");
    }
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_through_a_real_socket() {
    let srv = start(|_| {}, my_uid()).await;
    let mode = std::fs::metadata(&srv.path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let path = srv.path.clone();
    blocking(move || {
        let mut c = Client::connect(&path).expect("connect");
        assert_eq!(c.server_info(), &samples::server_info());
        assert_eq!(c.version(), MAX_VERSION);
        for req in samples::requests() {
            let t = Target::new("default").expect("target");
            let r = c.call(Some(&t), &req);
            if req.msg_type() == MsgType::GET_CLIENTINFO {
                match r {
                    Err(Error::Failed { rc, rsn, .. }) => {
                        assert_eq!((rc, rsn), (ReturnCode::EOPNOTSUPP, ReasonCode::NOT_SERVED));
                    }
                    other => panic!("GET_CLIENTINFO to iked: {other:?}"),
                }
                continue;
            }
            let reply = r.unwrap_or_else(|e| panic!("{}: {e}", req.msg_type()));
            assert_eq!(reply.response, samples::response_for(&req));
            assert_eq!(reply.header.msg_type, req.msg_type());
            assert_eq!(
                reply.target().map(|t| t.as_str().to_owned()).as_deref(),
                Some("default")
            );
            assert_eq!(reply.body, reply.response.encode_body().expect("encode"));
        }
        // Blank target resolves to the default stack; the response says which.
        let reply = c.call(None, &Request::GetSummary).expect("summary");
        assert_eq!(reply.target().expect("target").as_str(), "default");
        // Unknown stack: ENXIO, and the connection stays usable.
        let t = Target::new("nosuch").expect("target");
        match c.call(Some(&t), &Request::GetSummary) {
            Err(Error::Failed { rc, message, .. }) => {
                assert_eq!(rc, ReturnCode::ENXIO);
                assert!(message.contains("nosuch"));
            }
            other => panic!("{other:?}"),
        }
        c.call(None, &Request::GetSummary).expect("still usable");
    })
    .await;
    let seen = srv.handler.seen.lock().expect("lock").clone();
    assert!(
        seen.iter()
            .all(|(o, _, _)| matches!(o, Origin::Local(Caller { uid, .. }) if *uid == my_uid()))
    );
    srv.stop().await;
}

/// A version-1 server: version-1 requests work, REFRESH_CONFIG is refused by the client before
/// it is sent, and a raw version-2 request is refused by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_one_server() {
    let srv = start(|c| c.info.max_version = 1, my_uid()).await;
    let path = srv.path.clone();
    blocking(move || {
        let mut c = Client::connect(&path).expect("connect");
        assert_eq!(c.version(), 1);
        c.call(None, &Request::GetSummary)
            .expect("version 1 request");
        match c.call(None, &Request::RefreshConfig) {
            Err(Error::Unsupported {
                msg_type,
                needs,
                server_max,
            }) => {
                assert_eq!(
                    (msg_type, needs, server_max),
                    (MsgType::REFRESH_CONFIG, 2, 1)
                );
            }
            other => panic!("{other:?}"),
        }
        c.call(None, &Request::GetSummary).expect("still usable");
        let mut s = raw_connect(&path);
        let h = Header::request(MsgType::REFRESH_CONFIG, 2, 3, None);
        let r = raw_call(&mut s, h, b"");
        assert_eq!(
            (r.header.rc, r.header.rsn, r.header.version),
            (ReturnCode::EINVAL, ReasonCode::BAD_VERSION, 2)
        );
    })
    .await;
    let seen = srv.handler.seen.lock().expect("lock").clone();
    assert!(seen.iter().all(|(_, t, _)| *t == MsgType::GET_SUMMARY));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_is_refused_with_the_profile() {
    let srv = start(|_| {}, my_uid().wrapping_add(1)).await;
    let path = srv.path.clone();
    blocking(move || {
        let mut c = Client::connect(&path).expect("connect");
        c.call(None, &Request::GetIkeTun(Selection::default()))
            .expect("display allowed");
        match c.call(None, &Request::SetIpFltDefault) {
            Err(Error::Failed { rc, profile, .. }) => {
                assert_eq!(rc, ReturnCode::EACCES);
                assert_eq!(profile.as_deref(), Some("EZB.IPSECCMD.GW1.default.CONTROL"));
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
    srv.stop().await;
}

fn raw_connect(path: &PathBuf) -> UnixStream {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let init = read_frame(&mut s, MAX_RESPONSE).expect("INIT");
    assert_eq!(init.header.msg_type, MsgType::INIT);
    s
}

fn raw_call(s: &mut UnixStream, header: Header, body: &[u8]) -> Frame {
    let mut h = header;
    h.body_len = body.len() as u32;
    s.write_all(&h.to_bytes()).expect("write");
    s.write_all(body).expect("write");
    read_frame(s, MAX_RESPONSE).expect("response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_keep_the_connection() {
    let srv = start(|_| {}, my_uid()).await;
    let path = srv.path.clone();
    blocking(move || {
        let mut s = raw_connect(&path);
        let base = Header::request(MsgType::GET_IKETUN, 1, 5, None);
        let cases: Vec<(Header, &[u8], ReasonCode)> = vec![
            (
                Header {
                    header_size: 48,
                    ..base.clone()
                },
                b"",
                ReasonCode::HDR_SIZE,
            ),
            (
                Header {
                    version: 3,
                    ..base.clone()
                },
                b"",
                ReasonCode::BAD_VERSION,
            ),
            (
                Header {
                    version: 0,
                    ..base.clone()
                },
                b"",
                ReasonCode::BAD_VERSION,
            ),
            (
                Header {
                    reserved: 1,
                    ..base.clone()
                },
                b"",
                ReasonCode::RESERVED_NONZERO,
            ),
            (
                Header {
                    flags: FLAG_RESPONSE,
                    ..base.clone()
                },
                b"",
                ReasonCode::RESERVED_NONZERO,
            ),
            (
                Header {
                    rc: ReturnCode::EINVAL,
                    ..base.clone()
                },
                b"",
                ReasonCode::RESERVED_NONZERO,
            ),
            (
                Header {
                    msg_type: MsgType(99),
                    ..base.clone()
                },
                b"",
                ReasonCode::BAD_TYPE,
            ),
            (
                Header {
                    msg_type: MsgType::TERM,
                    ..base.clone()
                },
                b"",
                ReasonCode::BAD_TYPE,
            ),
            // REFRESH_CONFIG exists from version 2 on.
            (
                Header {
                    msg_type: MsgType::REFRESH_CONFIG,
                    ..base.clone()
                },
                b"",
                ReasonCode::BAD_TYPE,
            ),
            (
                Header {
                    msg_type: MsgType::REFRESH_CONFIG,
                    version: 2,
                    ..base.clone()
                },
                b"{}",
                ReasonCode::MSG_SIZE,
            ),
            (base.clone(), br#"{"bogus":1}"#, ReasonCode::BAD_BODY),
            (
                Header {
                    msg_type: MsgType::GET_SUMMARY,
                    ..base.clone()
                },
                b"{}",
                ReasonCode::MSG_SIZE,
            ),
        ];
        for (h, body, want) in cases {
            let r = raw_call(&mut s, h.clone(), body);
            assert_eq!(r.header.rc, ReturnCode::EINVAL, "{want}");
            assert_eq!(r.header.rsn, want);
            assert_eq!(r.header.correlator, 5);
            assert_eq!(r.header.msg_type, h.msg_type);
            assert!(r.header.is_response());
            assert!(r.error_info().is_some_and(|i| !i.message.is_empty()));
        }
        // Still usable, and pipelined requests come back in order.
        let a = Frame::request(&Request::GetSummary, 1, 1, None)
            .expect("a")
            .to_bytes();
        let b = Frame::request(&Request::GetIpInterfaces, 1, 2, None)
            .expect("b")
            .to_bytes();
        s.write_all(&[a, b].concat()).expect("write");
        let ra = read_frame(&mut s, MAX_RESPONSE).expect("ra");
        let rb = read_frame(&mut s, MAX_RESPONSE).expect("rb");
        assert_eq!((ra.header.correlator, ra.header.rc), (1, ReturnCode::OK));
        assert_eq!(
            (rb.header.correlator, rb.header.msg_type),
            (2, MsgType::GET_IPINTERFACES)
        );
    })
    .await;
    srv.stop().await;
}

fn expect_term_then_eof(s: &mut UnixStream, rc: ReturnCode, rsn: ReasonCode) {
    let t = read_frame(s, MAX_RESPONSE).expect("TERM");
    assert_eq!(t.header.msg_type, MsgType::TERM);
    assert_eq!((t.header.rc, t.header.rsn), (rc, rsn));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("eof");
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ident_and_excessive_size_close() {
    let srv = start(|_| {}, my_uid()).await;
    let path = srv.path.clone();
    blocking(move || {
        let mut s = raw_connect(&path);
        let mut h = Header::request(MsgType::GET_SUMMARY, 1, 1, None);
        h.ident = *b"NMSC";
        s.write_all(&h.to_bytes()).expect("write");
        expect_term_then_eof(&mut s, ReturnCode::EINVAL, ReasonCode::BAD_IDENT);

        let mut s = raw_connect(&path);
        let mut h = Header::request(MsgType::GET_IKETUN, 1, 1, None);
        h.body_len = MAX_REQUEST as u32; // header + body > MAX_REQUEST
        s.write_all(&h.to_bytes()).expect("write");
        expect_term_then_eof(&mut s, ReturnCode::EINVAL, ReasonCode::EXCESSIVE_SIZE);
    })
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limit_and_idle_timeout() {
    let srv = start(
        |c| {
            c.max_clients = 1;
            c.idle_timeout = Duration::from_millis(700);
        },
        my_uid(),
    )
    .await;
    let path = srv.path.clone();
    blocking(move || {
        let _first = Client::connect(&path).expect("first client");
        match Client::connect(&path) {
            Err(Error::Terminated { rc, rsn, .. }) => {
                assert_eq!((rc, rsn), (ReturnCode::EBUSY, ReasonCode::TOO_MANY_CLIENTS));
            }
            other => panic!("second client: {other:?}"),
        }
        drop(_first);
        // The slot is free again once the first connection is gone.
        let mut ok = None;
        for _ in 0..50 {
            if let Ok(c) = Client::connect(&path) {
                ok = Some(c);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut c = ok.expect("slot freed");
        c.call(None, &Request::GetSummary).expect("works");
        // Idle: TERM ETIMEDOUT.
        std::thread::sleep(Duration::from_millis(1200));
        match c.call(None, &Request::GetSummary) {
            Err(Error::Terminated { rc, .. }) => assert_eq!(rc, ReturnCode::ETIMEDOUT),
            Err(Error::Io(_)) | Err(Error::Closed) => {} // the TERM may be lost if the write raced the close
            other => panic!("after idle: {other:?}"),
        }
    })
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_term() {
    let srv = start(|_| {}, my_uid()).await;
    let path = srv.path.clone();
    let mut s = blocking(move || raw_connect(&path)).await;
    let path = srv.path.clone();
    srv.stop().await;
    blocking(move || expect_term_then_eof(&mut s, ReturnCode::OK, ReasonCode::NONE)).await;
    // No daemon: a clear connect error.
    match Client::connect(&path) {
        Err(Error::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced_and_live_one_refused() {
    let srv = start(|_| {}, my_uid()).await;
    let config = ServerConfig::new(&srv.path, samples::server_info());
    let err = Server::bind(config)
        .await
        .expect_err("second server on a live socket");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let path = srv.path.clone();
    // Leave a stale socket behind: bind a std listener and drop it.
    srv.stop().await;
    let _l = std::os::unix::net::UnixListener::bind(&path).expect("stale");
    drop(_l);
    assert!(path.exists());
    let srv2 = Server::bind(ServerConfig::new(&path, samples::server_info())).await;
    assert!(srv2.is_ok(), "stale socket replaced");
}

/// nssd-like: forwards the raw request bytes to an "NSS client" (serve_relayed on an iked-like
/// handler) and answers with what comes back.
struct Relay {
    inner: Arc<Fake>,
}

impl Handler for Relay {
    async fn handle(&self, req: Incoming) -> Reply {
        let Some(t) = req.target.clone() else {
            return Failure::invalid(ReasonCode::TARGET_REQUIRED, "name an NSS client").into();
        };
        if !t.matches("GW1_default") {
            return Failure::no_target(format!("NSS client {t} is not connected")).into();
        }
        // Pretend the NSS link rewrote nothing; the client answers with the same correlator.
        let bytes = req.to_bytes();
        let answer = serve_relayed(&*self.inner, t.as_str(), MAX_VERSION, &bytes).await;
        Reply::Relayed(answer)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_requests() {
    let path = temp_socket("relay");
    let inner = Arc::new(Fake {
        control_uid: u32::MAX,
        seen: Mutex::new(Vec::new()),
    });
    let server = Server::bind(ServerConfig::new(
        &path,
        ServerInfo {
            server: ServerKind::Nssd,
            ..samples::server_info()
        },
    ))
    .await
    .expect("bind");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(
        Arc::new(Relay {
            inner: Arc::clone(&inner),
        }),
        async move {
            let _ = rx.await;
        },
    ));
    let p = path.clone();
    blocking(move || {
        let mut c = Client::connect(&p).expect("connect");
        assert_eq!(c.server_info().server, ServerKind::Nssd);
        let t = Target::new("GW1_default").expect("target");
        // Control through the relay: the inner handler does no authorization for relayed
        // requests (control_uid matches nobody, yet it succeeds).
        let req = Request::DeactIpTunDyn(samples::tunnel_control());
        let reply = c.call(Some(&t), &req).expect("relayed control");
        assert_eq!(reply.response, samples::response_for(&req));
        assert_eq!(reply.target(), Some(t.clone()), "the client name is echoed");
        // Several calls: the correlator of the answer is the local one each time.
        for _ in 0..3 {
            c.call(Some(&t), &Request::GetIkeTun(Selection::default()))
                .expect("relayed");
        }
        match c.call(None, &Request::GetSummary) {
            Err(Error::Failed { rsn, .. }) => assert_eq!(rsn, ReasonCode::TARGET_REQUIRED),
            other => panic!("{other:?}"),
        }
        let t2 = Target::new("GW9_x").expect("target");
        match c.call(Some(&t2), &Request::GetSummary) {
            Err(Error::Failed { rc, .. }) => assert_eq!(rc, ReturnCode::ENXIO),
            other => panic!("{other:?}"),
        }
    })
    .await;
    let seen = inner.seen.lock().expect("lock").clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|(o, _, _)| *o
        == Origin::Relayed {
            client_name: "GW1_default".into()
        }));
    let _ = tx.send(());
    task.await.expect("join").expect("run");
}

#[tokio::test]
async fn serve_relayed_answers_malformed_bytes() {
    let inner = Fake {
        control_uid: 0,
        seen: Mutex::new(Vec::new()),
    };
    // Too short to be a message.
    let out = serve_relayed(&inner, "c", 1, b"GKNM").await;
    let f = Frame::parse(&out, MAX_RESPONSE).expect("a response");
    assert_eq!(
        (f.header.rc, f.header.rsn),
        (ReturnCode::EINVAL, ReasonCode::MSG_SIZE)
    );
    // Bad version.
    let mut req = Frame::request(&Request::GetSummary, 1, 42, None).expect("req");
    req.header.version = 7;
    let out = serve_relayed(&inner, "c", 1, &req.to_bytes()).await;
    let f = Frame::parse(&out, MAX_RESPONSE).expect("a response");
    assert_eq!(
        (f.header.rsn, f.header.correlator),
        (ReasonCode::BAD_VERSION, 42)
    );
    assert!(
        inner.seen.lock().expect("lock").is_empty(),
        "handler not called"
    );
}
