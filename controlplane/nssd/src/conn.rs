//! One client connection: plaintext detection, TLS, framing, CONNECT,
//! dispatch of requests, server-initiated requests, keepalive and close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nss_proto::{
    API_VERSIONS, AuthMethod, ConnectRequest, ConnectResponse, Correlator, Error as ProtoError,
    HEADER_LEN, Header, MAX_FRAME_LEN, MAX_PREAUTH_FRAME_LEN, Message, MessageType, Rc, Reply,
    Request, ResponseBody, Rsn, Services, Status, error_reply,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::log::level;
use crate::nsslog;
use crate::server::{ClientInfo, ConnState, Out, ReqError, Shared, unix_now};

/// Time allowed for the first byte and the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed between the handshake and CONNECT.
const CONNECT_TIMEOUT: u64 = 30;

type Tls = tokio_rustls::server::TlsStream<TcpStream>;

/// Serve one accepted TCP connection until it ends.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let id = shared.next_conn_id();
    let log = shared.logger.clone();
    nsslog!(
        log,
        level::LIFECYCLE,
        "DBG0100I",
        "NSS connID {id} - connection accepted from {} port {} on port {}",
        peer.ip(),
        peer.port(),
        local.port()
    );
    // 1. A client that does not start with a TLS handshake record is not secure.
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 0x16 => {}
        Ok(Ok(0)) => {
            nsslog!(
                log,
                level::LIFECYCLE,
                "DBG0102I",
                "NSS connID {id} - closed by the peer before any data"
            );
            return;
        }
        Ok(Ok(_)) => {
            nsslog!(
                log,
                level::LIFECYCLE,
                "DBG0104I",
                "NSS connID {id} - the connection is not secure - the connection will be closed"
            );
            drop(tcp);
            return;
        }
        Ok(Err(e)) => {
            nsslog!(
                log,
                level::LIFECYCLE,
                "DBG0102I",
                "NSS connID {id} - read failed: {e}"
            );
            return;
        }
        Err(_) => {
            nsslog!(
                log,
                level::LIFECYCLE,
                "DBG0104I",
                "NSS connID {id} - the connection is not secure (no TLS handshake within {} s) - the connection will be closed",
                HANDSHAKE_TIMEOUT.as_secs()
            );
            return;
        }
    }
    // 2. TLS 1.3.
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.runtime().tls.clone());
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            nsslog!(
                log,
                level::LIFECYCLE,
                "DBG0103I",
                "NSS connID {id} - TLS handshake failed: {e} - the connection will be closed"
            );
            return;
        }
        Err(_) => {
            nsslog!(
                log,
                level::LIFECYCLE,
                "DBG0103I",
                "NSS connID {id} - TLS handshake timed out - the connection will be closed"
            );
            return;
        }
    };
    let (rd, wr) = tokio::io::split(tls);
    let (tx, rx) = mpsc::channel::<Out>(1024);
    let writer = tokio::spawn(write_loop(wr, rx));
    let conn = Arc::new(ConnState::new(id, peer, local, tx));
    let reason = read_loop(&shared, &conn, rd).await;
    // Clean up: the registry slot, pending server requests, the writer.
    if let Some(c) = conn.client.get() {
        shared.registry.release(&c.key, id);
    }
    if let Ok(mut p) = conn.pending.lock() {
        p.clear();
    }
    let _ = conn.tx.send(Out::Close).await;
    let _ = writer.await;
    let who = conn
        .client
        .get()
        .map_or(String::new(), |c| format!(" client {}", c.client_name));
    nsslog!(
        log,
        level::LIFECYCLE,
        "DBG0102I",
        "NSS connID {id} -{who} disconnected: {reason}"
    );
}

async fn write_loop(mut wr: WriteHalf<Tls>, mut rx: mpsc::Receiver<Out>) {
    while let Some(o) = rx.recv().await {
        match o {
            Out::Frame(b) => {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
                // Flush when nothing else is queued.
                if rx.is_empty() && wr.flush().await.is_err() {
                    break;
                }
            }
            Out::Close => break,
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

enum ReadEnd {
    Frame(Header, Vec<u8>),
    Closed(String),
    Fatal(ProtoError),
    Timeout,
}

async fn read_frame(rd: &mut ReadHalf<Tls>, limit: usize) -> ReadEnd {
    let mut h = [0u8; HEADER_LEN];
    let (ident, rest) = h.split_at_mut(4);
    if let Err(e) = rd.read_exact(ident).await {
        return ReadEnd::Closed(if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "connection closed by the client".into()
        } else {
            format!("read failed: {e}")
        });
    }
    // Reject a stream that is not NSS as soon as its first bytes show it.
    if *ident != nss_proto::IDENT {
        return ReadEnd::Fatal(ProtoError::BadIdent);
    }
    if let Err(e) = rd.read_exact(rest).await {
        return ReadEnd::Closed(format!("read failed inside a frame header: {e}"));
    }
    let header = match Header::parse(&h, limit) {
        Ok(h) => h,
        Err(e) => return ReadEnd::Fatal(e),
    };
    let mut body = vec![0u8; header.body_len()];
    if let Err(e) = rd.read_exact(&mut body).await {
        return ReadEnd::Closed(format!("read failed inside a frame: {e}"));
    }
    ReadEnd::Frame(header, body)
}

async fn read_loop(shared: &Arc<Shared>, conn: &Arc<ConnState>, mut rd: ReadHalf<Tls>) -> String {
    let log = shared.logger.clone();
    let id = conn.id;
    let mut close_rx = conn.close.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let started = unix_now();
    loop {
        let connected = conn.client.get().is_some();
        let limit = if connected {
            MAX_FRAME_LEN
        } else {
            MAX_PREAUTH_FRAME_LEN
        };
        let ka = u64::from(shared.runtime().config.keepalive_interval());
        let wait = if connected {
            (conn.last_rx.load(Ordering::Relaxed) + 3 * ka).saturating_sub(unix_now())
        } else {
            (started + CONNECT_TIMEOUT).saturating_sub(unix_now())
        };
        let end = tokio::select! {
            _ = close_rx.changed() => {
                let st = (*close_rx.borrow()).unwrap_or_default();
                if !st.is_ok() {
                    conn.send(&Message::Terminate { correlator: Correlator::ZERO, status: st }).await;
                    return format!("closed by the server ({st})");
                }
                return "closed by the server".into();
            }
            _ = shutdown.changed() => {
                let st = Status::new(Rc::ESHUTDOWN, Rsn::SERVER_SHUTDOWN);
                conn.send(&Message::Terminate { correlator: Correlator::ZERO, status: st }).await;
                return "the server is shutting down".into();
            }
            r = tokio::time::timeout(Duration::from_secs(wait.max(1)), read_frame(&mut rd, limit)) => {
                r.unwrap_or(ReadEnd::Timeout)
            }
        };
        match end {
            ReadEnd::Closed(why) => return why,
            ReadEnd::Timeout => {
                // The timeout may be stale if a frame arrived meanwhile; re-check.
                let now = unix_now();
                let expired = if conn.client.get().is_some() {
                    now >= conn.last_rx.load(Ordering::Relaxed) + 3 * ka
                } else {
                    now >= started + CONNECT_TIMEOUT
                };
                if !expired {
                    continue;
                }
                let (st, what) = if conn.client.get().is_some() {
                    (
                        Status::new(Rc::ETIMEDOUT, Rsn::IDLE_TIMEOUT),
                        "nothing received for three keepalive intervals",
                    )
                } else {
                    (
                        Status::new(Rc::ETIMEDOUT, Rsn::CONNECT_TIMEOUT),
                        "no CONNECT within 30 s",
                    )
                };
                nsslog!(
                    log,
                    level::LIFECYCLE,
                    "DBG0108I",
                    "NSS connID {id} - {what} - the connection will be closed"
                );
                conn.send(&Message::Terminate {
                    correlator: Correlator::ZERO,
                    status: st,
                })
                .await;
                return what.into();
            }
            ReadEnd::Fatal(e) => {
                let st = e.status();
                nsslog!(
                    log,
                    level::LIFECYCLE,
                    "DBG0105I",
                    "NSS connID {id} - protocol error: {e} - {st} - the connection will be closed"
                );
                conn.send(&Message::Terminate {
                    correlator: Correlator::ZERO,
                    status: st,
                })
                .await;
                return format!("protocol error: {e}");
            }
            ReadEnd::Frame(header, body) => {
                conn.last_rx.store(unix_now(), Ordering::Relaxed);
                let role = nss_proto::Role::Server;
                match Message::decode(&header, &body, role) {
                    Ok(m) => {
                        if let Some(why) = dispatch(shared, conn, m).await {
                            return why;
                        }
                    }
                    Err(e) => match error_reply(Some(&header), &e) {
                        Reply::Respond(m) => {
                            nsslog!(
                                log,
                                level::LIFECYCLE,
                                "DBG0109I",
                                "NSS connID {id} - request {} correlator {} rejected: {e} - {}",
                                header.msg_type,
                                header.correlator,
                                e.status()
                            );
                            conn.send(&m).await;
                        }
                        Reply::Terminate(m) => {
                            nsslog!(
                                log,
                                level::LIFECYCLE,
                                "DBG0105I",
                                "NSS connID {id} - protocol error in {} correlator {}: {e} - {} - the connection will be closed",
                                header.msg_type,
                                header.correlator,
                                e.status()
                            );
                            conn.send(&m).await;
                            return format!("protocol error: {e}");
                        }
                    },
                }
            }
        }
    }
}

/// Handle one decoded message; `Some(reason)` ends the connection.
async fn dispatch(shared: &Arc<Shared>, conn: &Arc<ConnState>, m: Message) -> Option<String> {
    match m {
        Message::Terminate { status, .. } => Some(format!("TERMINATE from the client ({status})")),
        Message::Response {
            correlator,
            status,
            body,
        } => {
            let waiter = conn
                .pending
                .lock()
                .ok()
                .and_then(|mut p| p.remove(&correlator));
            match waiter {
                Some(w) => {
                    let _ = w.send(Message::Response {
                        correlator,
                        status,
                        body,
                    });
                }
                None => {
                    tracing::debug!(conn = conn.id, %correlator, "discarding a late or unknown response")
                }
            }
            None
        }
        Message::Request {
            correlator,
            request,
        } => {
            let mt = request.msg_type();
            match request {
                Request::Keepalive => {
                    conn.send(&Message::ok(correlator, ResponseBody::Keepalive))
                        .await;
                    None
                }
                Request::Disconnect => {
                    conn.send(&Message::ok(correlator, ResponseBody::Disconnect))
                        .await;
                    Some("DISCONNECT from the client".into())
                }
                Request::Connect(c) => {
                    if conn.client.get().is_some() || conn.connecting.swap(true, Ordering::SeqCst) {
                        let st = Status::new(Rc::EINVAL, Rsn::ALREADY_CONNECTED);
                        conn.send(&Message::error(correlator, mt, st)).await;
                        return None;
                    }
                    let (sh, cn) = (Arc::clone(shared), Arc::clone(conn));
                    tokio::spawn(async move {
                        connect(&sh, &cn, correlator, c).await;
                    });
                    None
                }
                other => {
                    let Some(client) = conn.client.get().cloned() else {
                        let st = Status::new(Rc::EINVAL, Rsn::NOT_CONNECTED);
                        conn.send(&Message::error(correlator, mt, st)).await;
                        return None;
                    };
                    let Ok(permit) = Arc::clone(&conn.inflight).try_acquire_owned() else {
                        let st = Status::new(Rc::EAGAIN, Rsn::TOO_MANY_REQUESTS);
                        conn.send(&Message::error(correlator, mt, st)).await;
                        return None;
                    };
                    let (sh, cn) = (Arc::clone(shared), Arc::clone(conn));
                    tokio::spawn(async move {
                        let resp = crate::certsvc::handle(&sh, &client, correlator, other).await;
                        cn.send(&resp).await;
                        drop(permit);
                    });
                    None
                }
            }
        }
    }
}

fn choose_version(offered: &[u16]) -> Option<u16> {
    offered
        .iter()
        .copied()
        .filter(|v| API_VERSIONS.contains(v))
        .max()
}

/// CONNECT (`docs/nss-protocol.md` §5.1).
async fn connect(shared: &Arc<Shared>, conn: &Arc<ConnState>, corr: Correlator, c: ConnectRequest) {
    let log = shared.logger.clone();
    let id = conn.id;
    let rt = shared.runtime();
    let fail = |st: Status| Message::error(corr, MessageType::CONNECT, st);
    // 1. API version.
    let Some(version) = choose_version(&c.api_versions) else {
        nsslog!(
            log,
            level::LIFECYCLE,
            "DBG0110I",
            "NSS connID {id} - client {} offers API versions {:?}; this server speaks {:?} - the connection will be closed",
            c.client_name,
            c.api_versions,
            API_VERSIONS
        );
        let m = Message::Response {
            correlator: corr,
            status: Status::new(Rc::EINVAL, Rsn::BAD_VERSION),
            body: ResponseBody::Failed {
                msg_type: MessageType::CONNECT,
                server_api_versions: API_VERSIONS.to_vec(),
            },
        };
        conn.send(&m).await;
        conn.close(None);
        return;
    };
    // 2. Authentication.
    let user = c.user_id.to_ascii_uppercase();
    if let Err(why) =
        crate::auth::authenticate(shared, &rt, &user, c.auth_method, &c.credential).await
    {
        let how = match c.auth_method {
            AuthMethod::Password => "Password",
            AuthMethod::PassTicket => "PassTicket",
        };
        nsslog!(
            log,
            level::VERBOSE,
            "DBG0021I",
            "NSS connID {id} - authentication of user {user} ({how}) for client {} failed: {why}",
            c.client_name
        );
        conn.send(&fail(Status::new(Rc::EACCES, Rsn::USER_AUTHENTICATION)))
            .await;
        conn.close(None);
        return;
    }
    nsslog!(
        log,
        level::VERBOSE,
        "DBG0020I",
        "NSS connID {id} - user {user} authenticated by {} for client {}",
        match c.auth_method {
            AuthMethod::Password => "Password",
            AuthMethod::PassTicket => "PassTicket",
        },
        c.client_name
    );
    if !rt.config.ipsec_enabled() {
        nsslog!(
            log,
            level::LIFECYCLE,
            "DBG0111I",
            "NSS connID {id} - the IPSec discipline is disabled (Discipline IPSec Disable) - the connection will be closed"
        );
        conn.send(&fail(Status::new(Rc::EOPNOTSUPP, Rsn::SERVICE_NOT_ENABLED)))
            .await;
        conn.close(None);
        return;
    }
    // 3. One live connection per client name.
    let key = c.client_name.to_ascii_uppercase();
    let mut expected = None;
    loop {
        match shared.registry.claim(&key, conn, expected) {
            Ok(()) => break,
            Err(old) => {
                let alive = matches!(
                    old.request(Request::Keepalive, shared.probe_timeout).await,
                    Ok(Message::Response { status, .. }) if status.is_ok()
                ) && !old.is_closed();
                if alive {
                    nsslog!(
                        log,
                        level::LIFECYCLE,
                        "DBG0106I",
                        "NSS connID {id} - client name {} is held by live connID {}; the new connection is refused",
                        c.client_name,
                        old.id
                    );
                    conn.send(&fail(Status::new(Rc::EADDRINUSE, Rsn::CLIENT_NAME_IN_USE)))
                        .await;
                    conn.close(None);
                    return;
                }
                nsslog!(
                    log,
                    level::LIFECYCLE,
                    "DBG0107I",
                    "NSS connID {id} - client name {} was held by unresponsive connID {}, which is closed; the new connection takes over",
                    c.client_name,
                    old.id
                );
                old.close(Some(Status::new(Rc::ECONNRESET, Rsn::CLIENT_REPLACED)));
                expected = Some(old.id);
            }
        }
    }
    // 4. Services.
    let sys = rt.system_name.clone();
    let mut enabled = Services::NONE;
    if c.services.contains(Services::CERT) {
        let p = gatekey_config::saf::names::nss_cert(&sys, &key);
        if crate::certsvc::authorize(shared, &rt, &user, &p) {
            if rt.keyring.is_some() {
                enabled = enabled.with(Services::CERT);
            } else {
                nsslog!(
                    log,
                    level::VERBOSE,
                    "DBG0033I",
                    "NSS connID {id} - certificate service requested by client {} but no KeyRing is configured",
                    c.client_name
                );
            }
        }
    }
    if c.services.contains(Services::REMOTE_MGMT) {
        let p = gatekey_config::saf::names::nss_netmgmt(&sys, &key);
        if crate::certsvc::authorize(shared, &rt, &user, &p) {
            enabled = enabled.with(Services::REMOTE_MGMT);
        }
    }
    let info = ClientInfo {
        client_name: c.client_name.clone(),
        key: key.clone(),
        stack_name: c.stack_name.clone(),
        system_name: c.system_name.clone(),
        user_id: user.clone(),
        selected: c.services,
        enabled,
        api_version: version,
        client_api_version: c.api_versions.iter().copied().max().unwrap_or(version),
        time_connected: unix_now(),
    };
    let _ = conn.client.set(info);
    let resp = Message::ok(
        corr,
        ResponseBody::Connect(ConnectResponse {
            services: enabled,
            system_name: sys.clone(),
            api_version: version,
            server_api_versions: API_VERSIONS.to_vec(),
            connection_id: id,
            keepalive_interval: rt.config.keepalive_interval(),
            software: Some(format!("gatekey {}", env!("CARGO_PKG_VERSION"))),
        }),
    );
    conn.send(&resp).await;
    let names = |s: Services| {
        let mut v = Vec::new();
        if s.contains(Services::CERT) {
            v.push("Cert");
        }
        if s.contains(Services::REMOTE_MGMT) {
            v.push("RemoteMgmt");
        }
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(",")
        }
    };
    nsslog!(
        log,
        level::LIFECYCLE,
        "DBG0101I",
        "NSS connID {id} - client {} stack {} system {} connected as userid {user} from {} port {}, API version {version}, services selected {} enabled {}",
        c.client_name,
        c.stack_name,
        c.system_name,
        conn.peer.ip(),
        conn.peer.port(),
        names(c.services),
        names(enabled)
    );
}

impl ConnState {
    /// Probe liveness (used by tests and the registry).
    pub async fn probe(&self, timeout: Duration) -> bool {
        matches!(self.request(Request::Keepalive, timeout).await, Ok(Message::Response { status, .. }) if status.is_ok())
    }
}

/// Map a server-initiated request failure to a short text.
pub(crate) fn req_error_text(e: ReqError) -> &'static str {
    match e {
        ReqError::Timeout => "no answer in time",
        ReqError::Closed => "the connection closed",
    }
}
