//! The NMI server helper (feature `server`, tokio): what iked and nssd run on their sockets.
//!
//! [`Server::bind`] creates the socket (stale socket removed, mode and group set);
//! [`Server::run`] accepts connections until its shutdown future completes. Per connection it
//! takes the caller's identity from `SO_PEERCRED`, sends INIT, reads requests (size limit, idle
//! timeout), validates them in the documented order (`docs/nmi-protocol.md` §4 steps 1–10), hands
//! each decoded request to the daemon's [`Handler`], writes the response, and sends TERM before it
//! closes. Connections beyond `max_clients` receive TERM `EBUSY` instead of INIT.
//!
//! Remote management: nssd's handler answers [`Reply::Relayed`] with the response bytes it got
//! from an NSS client (after forwarding [`Incoming::to_bytes`]); iked passes requests that arrive
//! over its NSS connection to [`serve_relayed`], which runs them through the same validation and
//! the same handler with [`Origin::Relayed`].

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::codes::{Failure, ReasonCode, ReturnCode};
use crate::header::{Access, HEADER_LEN, Header, MAX_REQUEST, MAX_RESPONSE, MsgType, Target};
use crate::message::{Frame, Request, Response};
use crate::records::ServerInfo;

/// The peer of a local connection, from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Process ID, if the kernel reported one.
    pub pid: Option<i32>,
}

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A process on this host, on the daemon's socket.
    Local(Caller),
    /// Relayed by the NSS server over this NSS client's connection (iked: no authorization
    /// check; serve only the stack of that connection, only if it selected RemoteMgmt).
    Relayed {
        /// The NSS client name the connection belongs to.
        client_name: String,
    },
}

/// A validated, decoded request handed to the [`Handler`].
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Who asked.
    pub origin: Origin,
    /// The request header as received.
    pub header: Header,
    /// The target (None = blank).
    pub target: Option<Target>,
    /// The decoded request.
    pub request: Request,
    body: Vec<u8>,
}

impl Incoming {
    /// The message type.
    pub fn msg_type(&self) -> MsgType {
        self.header.msg_type
    }

    /// DISPLAY or CONTROL.
    pub fn access(&self) -> Access {
        self.header.msg_type.access().unwrap_or(Access::Control)
    }

    /// The request message exactly as received (header and body), for relaying to an NSS client.
    pub fn to_bytes(&self) -> Vec<u8> {
        Frame {
            header: self.header.clone(),
            body: self.body.clone(),
        }
        .to_bytes()
    }

    /// The local caller, if the request did not come through NSS.
    pub fn caller(&self) -> Option<Caller> {
        match self.origin {
            Origin::Local(c) => Some(c),
            Origin::Relayed { .. } => None,
        }
    }
}

/// The daemon's answer to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Success: the response body and the resolved target to put in the header.
    Response {
        /// Resolved target (stack or client name).
        target: Option<Target>,
        /// Body; must be the kind the request type requires (else the client gets `EIO`).
        response: Response,
    },
    /// Failure with rc/rsn and a message.
    Failed(Failure),
    /// A complete response message received from an NSS client (nssd). The helper checks it is
    /// a response to the same type, sets the local correlator, and writes it.
    Relayed(Vec<u8>),
}

impl Reply {
    /// Success.
    pub fn ok(target: Option<Target>, response: Response) -> Reply {
        Reply::Response { target, response }
    }
}

impl From<Failure> for Reply {
    fn from(f: Failure) -> Reply {
        Reply::Failed(f)
    }
}

/// What the daemon implements: answer one request. Called concurrently for different
/// connections; requests on one connection are handled one after another.
pub trait Handler: Send + Sync + 'static {
    /// Answers `request`. Authorization is the handler's job (it knows the profiles); use
    /// [`Incoming::access`] and [`Incoming::caller`].
    fn handle(&self, request: Incoming) -> impl Future<Output = Reply> + Send;
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Socket path.
    pub path: PathBuf,
    /// Socket file mode (default 0o660).
    pub mode: u32,
    /// Group to give the socket (default: unchanged).
    pub group: Option<u32>,
    /// Concurrent clients (default 16; nssd uses 10).
    pub max_clients: usize,
    /// Idle timeout per connection (default 300 s).
    pub idle_timeout: Duration,
    /// INIT body.
    pub info: ServerInfo,
}

impl ServerConfig {
    /// Defaults for `path`.
    pub fn new(path: impl Into<PathBuf>, info: ServerInfo) -> ServerConfig {
        ServerConfig {
            path: path.into(),
            mode: 0o660,
            group: None,
            max_clients: 16,
            idle_timeout: Duration::from_secs(300),
            info,
        }
    }
}

/// A bound NMI socket.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    config: Arc<ServerConfig>,
}

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Server {
    /// Creates the socket: makes the parent directory (0750) if missing, removes a stale socket
    /// (refuses if another server answers on it, or if the path is not a socket), binds, and sets
    /// the mode and group. Must be called inside a tokio runtime.
    pub async fn bind(config: ServerConfig) -> io::Result<Server> {
        let path = &config.path;
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            std::fs::create_dir_all(parent)?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o750))?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another server is listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.mode))?;
        if let Some(gid) = config.group {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        tracing::info!(path = %path.display(), max_clients = config.max_clients, "NMI socket listening");
        Ok(Server {
            listener,
            config: Arc::new(config),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Accepts and serves connections until `shutdown` completes; then sends TERM (rc 0) on every
    /// open connection, waits up to 5 s for them, and removes the socket file.
    pub async fn run<H: Handler>(
        self,
        handler: Arc<H>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let Server { listener, config } = self;
        let slots = Arc::new(Semaphore::new(config.max_clients));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => match Arc::clone(&slots).try_acquire_owned() {
                        Ok(permit) => {
                            let handler = Arc::clone(&handler);
                            let config = Arc::clone(&config);
                            let stop = stop_rx.clone();
                            tasks.spawn(async move {
                                connection(stream, handler, config, stop).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            let version = config.info.max_version;
                            tasks.spawn(reject_busy(stream, version));
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "NMI accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let _ = stop_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tasks.abort_all();
        }
        drop(listener);
        match std::fs::remove_file(&config.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> io::Result<()> {
    let bytes = f.to_bytes();
    match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&bytes)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

async fn reject_busy(mut stream: UnixStream, version: u16) {
    let f = Failure::new(
        ReturnCode::EBUSY,
        ReasonCode::TOO_MANY_CLIENTS,
        "the server already serves its maximum number of management clients; try again later",
    );
    tracing::warn!("NMI connection refused: too many clients");
    let _ = write_frame(&mut stream, &Frame::term(version, &f)).await;
    let _ = stream.shutdown().await;
}

/// How reading one request ended.
enum ReadOutcome {
    Frame(Frame),
    /// Framing failure: TERM with this and close.
    Fatal(Failure),
    /// The peer closed (or the read failed).
    Closed,
}

async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> ReadOutcome {
    let mut hb = [0u8; HEADER_LEN];
    if r.read_exact(&mut hb).await.is_err() {
        return ReadOutcome::Closed;
    }
    let header = Header::parse(&hb);
    if let Err(f) = header.check_framing(MAX_REQUEST) {
        return ReadOutcome::Fatal(f);
    }
    let mut body = vec![0u8; header.body_len as usize];
    if r.read_exact(&mut body).await.is_err() {
        return ReadOutcome::Closed;
    }
    ReadOutcome::Frame(Frame { header, body })
}

async fn connection<H: Handler>(
    stream: UnixStream,
    handler: Arc<H>,
    config: Arc<ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let caller = match stream.peer_cred() {
        Ok(c) => Caller {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "NMI: SO_PEERCRED failed; closing the connection");
            return;
        }
    };
    tracing::debug!(uid = caller.uid, pid = ?caller.pid, "NMI client connected");
    let version = config.info.max_version;
    let (mut rd, mut wr) = stream.into_split();
    let init = match Frame::init(&config.info) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "NMI: cannot encode INIT");
            return;
        }
    };
    if write_frame(&mut wr, &init).await.is_err() {
        return;
    }
    loop {
        let outcome = tokio::select! {
            _ = stop.changed() => {
                let f = Failure::new(ReturnCode::OK, ReasonCode::NONE, "the server is shutting down");
                let _ = write_frame(&mut wr, &Frame::term(version, &f)).await;
                break;
            }
            r = tokio::time::timeout(config.idle_timeout, read_request(&mut rd)) => match r {
                Ok(o) => o,
                Err(_) => {
                    let f = Failure::new(
                        ReturnCode::ETIMEDOUT,
                        ReasonCode::NONE,
                        format!("no complete request for {} s", config.idle_timeout.as_secs()),
                    );
                    let _ = write_frame(&mut wr, &Frame::term(version, &f)).await;
                    break;
                }
            },
        };
        match outcome {
            ReadOutcome::Closed => break,
            ReadOutcome::Fatal(f) => {
                tracing::warn!(uid = caller.uid, rsn = %f.rsn, "NMI: closing a connection: {}", f.message);
                let _ = write_frame(&mut wr, &Frame::term(version, &f)).await;
                break;
            }
            ReadOutcome::Frame(frame) => {
                let resp = process(&*handler, Origin::Local(caller), frame, version).await;
                if write_frame(&mut wr, &resp).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    tracing::debug!(uid = caller.uid, "NMI client disconnected");
}

/// Validates one request message (steps 4–10), runs the handler, and builds the response.
async fn process<H: Handler>(handler: &H, origin: Origin, frame: Frame, max_version: u16) -> Frame {
    let Frame { header, body } = frame;
    let target = match header.check_request(max_version) {
        Ok(t) => t,
        Err(f) => return Frame::failure(&header, None, &f),
    };
    let request = match Request::decode(header.msg_type, &body) {
        Ok(r) => r,
        Err(f) => return Frame::failure(&header, target.as_ref(), &f),
    };
    // Relayed requests echo the request's target (the NSS client name) in the response.
    let echo_target = matches!(origin, Origin::Relayed { .. });
    let incoming = Incoming {
        origin,
        header: header.clone(),
        target: target.clone(),
        request,
        body,
    };
    match handler.handle(incoming).await {
        Reply::Response {
            target: resolved,
            response,
        } => {
            if !response.answers(header.msg_type) {
                let f = Failure::internal(format!(
                    "the server built the wrong response kind for {}",
                    header.msg_type
                ));
                tracing::error!("NMI: {}", f.message);
                return Frame::failure(&header, target.as_ref(), &f);
            }
            let resolved = if echo_target {
                target.clone()
            } else {
                resolved
            };
            match Frame::response(&header, resolved.as_ref(), &response) {
                Ok(f) if f.header.message_len() <= MAX_RESPONSE => f,
                Ok(f) => Frame::failure(
                    &header,
                    target.as_ref(),
                    &Failure::internal(format!(
                        "the response of {} bytes exceeds the maximum of {MAX_RESPONSE}",
                        f.header.message_len()
                    )),
                ),
                Err(e) => {
                    Frame::failure(&header, target.as_ref(), &Failure::internal(e.to_string()))
                }
            }
        }
        Reply::Failed(f) => Frame::failure(&header, target.as_ref(), &f),
        Reply::Relayed(bytes) => match check_relayed_response(&header, &bytes) {
            Ok(f) => f,
            Err(f) => {
                tracing::warn!("NMI relay: {}", f.message);
                Frame::failure(&header, target.as_ref(), &f)
            }
        },
    }
}

/// Checks a response message that came back from an NSS client for the local request `request`
/// and gives it the local correlator. Failures are `EIO`.
pub fn check_relayed_response(request: &Header, bytes: &[u8]) -> Result<Frame, Failure> {
    let mut f = Frame::parse(bytes, MAX_RESPONSE).map_err(|e| {
        Failure::internal(format!(
            "the NSS client's answer is not an NMI message: {}",
            e.message
        ))
    })?;
    if !f.header.is_response() || f.header.msg_type != request.msg_type {
        return Err(Failure::internal(format!(
            "the NSS client answered {} with {}",
            request.msg_type, f.header.msg_type
        )));
    }
    f.header.correlator = request.correlator;
    Ok(f)
}

/// Serves one request message that arrived over an NSS connection (iked as an NSS client with
/// RemoteMgmt): the same validation and handler as a local request, with
/// [`Origin::Relayed`]; returns the complete response message to send back. Framing failures
/// come back as error responses (there is no connection to close).
pub async fn serve_relayed<H: Handler>(
    handler: &H,
    client_name: &str,
    max_version: u16,
    bytes: &[u8],
) -> Vec<u8> {
    match Frame::parse(bytes, MAX_REQUEST) {
        Ok(frame) => process(
            handler,
            Origin::Relayed {
                client_name: client_name.to_owned(),
            },
            frame,
            max_version,
        )
        .await
        .to_bytes(),
        Err(f) => {
            let h = Header::parse_slice(bytes)
                .unwrap_or_else(|| Header::request(MsgType(0), max_version, 0, None));
            Frame::failure(&h, None, &f).to_bytes()
        }
    }
}
