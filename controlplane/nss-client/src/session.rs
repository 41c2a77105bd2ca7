//! One established connection to an NSS server: TLS, CONNECT, a reader task
//! that matches responses to requests by correlator and serves routed
//! management requests, and keepalives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nss_proto::{
    API_VERSIONS, AuthMethod, ConnectRequest, ConnectResponse, Correlator, HEADER_LEN, Header,
    MAX_FRAME_LEN, Message, MessageType, MgmtResponse, Rc, Reply, Request, ResponseBody, Rsn,
    Secret, Services, Status, error_reply,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{MgmtHandler, Shared, unix_now};

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Why a request on a session did not get an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lost;

/// Why establishing a session failed.
#[derive(Debug, Clone)]
pub(crate) enum ConnectFailure {
    /// TCP connect failed or timed out.
    Unreachable(String),
    /// TLS failed: not secure / identity mismatch.
    NotSecure(String),
    /// The server refused CONNECT.
    Refused(Status, Correlator),
    /// Anything else (protocol errors, closed).
    Other(String),
}

/// Facts about an established session.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub connect: ConnectResponse,
    pub time_connected: u64,
}

/// An established session.
#[derive(Debug)]
pub(crate) struct Session {
    pub info: SessionInfo,
    epoch: u64,
    next_seq: AtomicU64,
    tx: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<Correlator, oneshot::Sender<Message>>>,
    closed: AtomicBool,
    /// Unix seconds of the last frame sent.
    pub last_tx: AtomicU64,
    /// Set when the session ends (with the reason).
    pub ended: watch::Sender<Option<String>>,
}

/// Removes a pending entry when the waiting request goes away (timeout,
/// cancellation), so that a late answer is discarded, never delivered twice.
struct PendingGuard<'a> {
    session: &'a Session,
    corr: Correlator,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.session.pending.lock() {
            p.remove(&self.corr);
        }
    }
}

impl Session {
    /// Send `request` and wait for its response (no timeout here: the caller
    /// wraps the future). `Err(Lost)` if the session ends first.
    pub(crate) async fn request(&self, request: Request) -> Result<Message, Lost> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Lost);
        }
        let corr = Correlator::new(self.next_seq.fetch_add(1, Ordering::Relaxed), self.epoch);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| Lost)?.insert(corr, tx);
        let _guard = PendingGuard {
            session: self,
            corr,
        };
        let bytes = Message::Request {
            correlator: corr,
            request,
        }
        .encode()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot encode an NSS request");
            Lost
        })?;
        if self.tx.send(bytes).await.is_err() {
            // The writer is gone: the session is over (the reader will see it too).
            self.end("the connection's writer stopped".into());
            return Err(Lost);
        }
        self.last_tx.store(unix_now(), Ordering::Relaxed);
        rx.await.map_err(|_| Lost)
    }

    /// True once the session has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn end(&self, why: String) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            if let Ok(mut p) = self.pending.lock() {
                p.clear();
            }
            self.ended.send_replace(Some(why));
        }
    }

    /// Close the session (DISCONNECT first if `orderly`).
    pub(crate) async fn close(&self, orderly: bool) {
        if orderly && !self.is_closed() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.request(Request::Disconnect))
                .await;
        }
        self.end("closed by the client".into());
    }
}

async fn read_frame(rd: &mut ReadHalf<Tls>) -> Result<(Header, Vec<u8>), String> {
    let mut h = [0u8; HEADER_LEN];
    rd.read_exact(&mut h)
        .await
        .map_err(|e| format!("connection closed ({e})"))?;
    let header = Header::parse(&h, MAX_FRAME_LEN).map_err(|e| format!("protocol error: {e}"))?;
    let mut body = vec![0u8; header.body_len()];
    rd.read_exact(&mut body)
        .await
        .map_err(|e| format!("connection closed inside a frame ({e})"))?;
    Ok((header, body))
}

async fn write_loop(
    mut wr: WriteHalf<Tls>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut ended: watch::Receiver<Option<String>>,
) {
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                    if rx.is_empty() && wr.flush().await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            _ = ended.changed() => break,
        }
    }
    let _ = wr.shutdown().await;
}

/// Connect to `server`, run TLS and CONNECT; on success the reader,
/// writer and keepalive tasks run until the session ends.
pub(crate) async fn establish(
    shared: &Arc<Shared>,
    server: SocketAddr,
    server_name: rustls_pki_types::ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    credential: Secret,
    epoch: u64,
    verifier_failure: &(dyn Fn() -> Option<String> + Sync),
) -> Result<Arc<Session>, ConnectFailure> {
    let tcp = match &shared.config.socket_factory {
        Some(make) => match make(server) {
            Ok(socket) => socket.connect(server).await,
            Err(e) => Err(e),
        },
        None => TcpStream::connect(server).await,
    }
    .map_err(|e| ConnectFailure::Unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|e| ConnectFailure::Unreachable(e.to_string()))?;
    let tls_stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| {
            ConnectFailure::NotSecure(
                verifier_failure().unwrap_or_else(|| format!("TLS handshake failed: {e}")),
            )
        })?;
    let (mut rd, mut wr) = tokio::io::split(tls_stream);
    // CONNECT (the first request; nothing else is in flight yet).
    let cfg = &shared.config;
    let corr = Correlator::new(0, epoch);
    let connect = Message::Request {
        correlator: corr,
        request: Request::Connect(ConnectRequest {
            client_name: cfg.client_name.clone(),
            stack_name: cfg.stack_name.clone(),
            system_name: cfg.system_name.clone(),
            user_id: cfg.user_id.clone(),
            auth_method: match cfg.credentials {
                crate::Credentials::Password(_) => AuthMethod::Password,
                crate::Credentials::PassTicket { .. } => AuthMethod::PassTicket,
            },
            credential,
            services: cfg.services,
            api_versions: API_VERSIONS.to_vec(),
            software: Some(format!("gatekey {}", env!("CARGO_PKG_VERSION"))),
        }),
    };
    let bytes = connect
        .encode()
        .map_err(|e| ConnectFailure::Other(format!("cannot encode CONNECT: {e}")))?;
    wr.write_all(&bytes)
        .await
        .map_err(|e| ConnectFailure::Other(format!("write failed: {e}")))?;
    wr.flush()
        .await
        .map_err(|e| ConnectFailure::Other(format!("write failed: {e}")))?;
    let resp = loop {
        let (h, body) = read_frame(&mut rd).await.map_err(ConnectFailure::Other)?;
        match Message::decode(&h, &body, nss_proto::Role::Client) {
            Ok(Message::Response {
                correlator,
                status,
                body,
            }) if correlator == corr => break (status, body),
            Ok(Message::Request {
                correlator,
                request: Request::Keepalive,
            }) => {
                let b = Message::ok(correlator, ResponseBody::Keepalive)
                    .encode()
                    .map_err(|e| ConnectFailure::Other(e.to_string()))?;
                let _ = wr.write_all(&b).await;
            }
            Ok(Message::Terminate { status, .. }) => {
                return Err(ConnectFailure::Refused(status, corr));
            }
            Ok(other) => {
                return Err(ConnectFailure::Other(format!(
                    "unexpected {} before the CONNECT response",
                    other.msg_type()
                )));
            }
            Err(e) => return Err(ConnectFailure::Other(format!("protocol error: {e}"))),
        }
    };
    let connect = match resp {
        (status, ResponseBody::Connect(c)) if status.is_ok() => c,
        (status, _) => return Err(ConnectFailure::Refused(status, corr)),
    };
    let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
    let (ended, ended_rx) = watch::channel(None);
    let session = Arc::new(Session {
        info: SessionInfo {
            local,
            server,
            connect,
            time_connected: unix_now(),
        },
        epoch,
        next_seq: AtomicU64::new(1),
        tx,
        pending: Mutex::new(HashMap::new()),
        closed: AtomicBool::new(false),
        last_tx: AtomicU64::new(unix_now()),
        ended,
    });
    tokio::spawn(write_loop(wr, rx, ended_rx));
    tokio::spawn(read_loop(Arc::clone(shared), Arc::clone(&session), rd));
    tokio::spawn(keepalive_loop(Arc::clone(shared), Arc::clone(&session)));
    Ok(session)
}

async fn read_loop(shared: Arc<Shared>, s: Arc<Session>, mut rd: ReadHalf<Tls>) {
    let mut ended = s.ended.subscribe();
    let why = loop {
        let (h, body) = tokio::select! {
            r = read_frame(&mut rd) => match r {
                Ok(f) => f,
                Err(e) => break e,
            },
            _ = ended.changed() => return,
        };
        match Message::decode(&h, &body, nss_proto::Role::Client) {
            Ok(Message::Response {
                correlator,
                status,
                body,
            }) => {
                let w = s
                    .pending
                    .lock()
                    .ok()
                    .and_then(|mut p| p.remove(&correlator));
                match w {
                    Some(w) => {
                        let _ = w.send(Message::Response {
                            correlator,
                            status,
                            body,
                        });
                    }
                    None => tracing::debug!(%correlator, "discarding a late NSS response"),
                }
            }
            Ok(Message::Request {
                correlator,
                request: Request::Keepalive,
            }) => send(&s, Message::ok(correlator, ResponseBody::Keepalive)).await,
            Ok(Message::Request {
                correlator,
                request: Request::Mgmt(m),
            }) => {
                let handler: Option<MgmtHandler> = shared.mgmt.clone();
                let enabled = shared.config.services.contains(Services::REMOTE_MGMT);
                let s2 = Arc::clone(&s);
                tokio::spawn(async move {
                    let reply = match handler {
                        Some(h) if enabled => {
                            let nmi = h(m.nmi, m.requester).await;
                            Message::ok(correlator, ResponseBody::Mgmt(MgmtResponse { nmi }))
                        }
                        _ => Message::error(
                            correlator,
                            MessageType::MGMT_REQUEST,
                            Status::new(Rc::EOPNOTSUPP, Rsn::SERVICE_NOT_ENABLED),
                        ),
                    };
                    send(&s2, reply).await;
                });
            }
            Ok(Message::Request {
                correlator,
                request,
            }) => {
                // The decoder only lets through requests a server may send.
                send(
                    &s,
                    Message::error(
                        correlator,
                        request.msg_type(),
                        Status::new(Rc::EINVAL, Rsn::BAD_TYPE),
                    ),
                )
                .await;
            }
            Ok(Message::Terminate { status, .. }) => {
                break format!("TERMINATE from the server ({status})");
            }
            Err(e) => match error_reply(Some(&h), &e) {
                Reply::Respond(m) => send(&s, m).await,
                Reply::Terminate(m) => {
                    send(&s, m).await;
                    break format!("protocol error from the server: {e}");
                }
            },
        }
    };
    s.end(why);
}

async fn send(s: &Session, m: Message) {
    if let Ok(b) = m.encode() {
        let _ = s.tx.send(b).await;
        s.last_tx.store(unix_now(), Ordering::Relaxed);
    }
}

async fn keepalive_loop(shared: Arc<Shared>, s: Arc<Session>) {
    let interval = u64::from(s.info.connect.keepalive_interval.max(1));
    let mut ended = s.ended.subscribe();
    loop {
        let idle = unix_now().saturating_sub(s.last_tx.load(Ordering::Relaxed));
        let wait = interval.saturating_sub(idle).max(1);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
            _ = ended.changed() => return,
        }
        if s.is_closed() {
            return;
        }
        if unix_now().saturating_sub(s.last_tx.load(Ordering::Relaxed)) < interval {
            continue;
        }
        let ok = tokio::time::timeout(shared.config.request_timeout, s.request(Request::Keepalive))
            .await;
        if !matches!(ok, Ok(Ok(Message::Response { status, .. })) if status.is_ok()) {
            s.end("the server did not answer a KEEPALIVE".into());
            return;
        }
    }
}
