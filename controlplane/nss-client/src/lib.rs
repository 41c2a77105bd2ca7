//! The NSS client library: what iked uses, per stack, to reach the Network
//! Security Services server (`docs/nss-protocol.md`).
//!
//! - One connection per stack ([`NssClient::start`]), TLS 1.3 with the
//!   server's certificate checked against the configured [`Identity`]
//!   (IpAddr, Fqdn, UserAtFqdn, X500dn); login by password or a freshly
//!   generated PassTicket.
//! - Pipelined requests ([`NssClient::sign`], [`NssClient::verify`],
//!   [`NssClient::get_certificate`], [`NssClient::get_ca_certificates`]), each
//!   with a deadline; a request whose connection is lost is sent again on the
//!   next connection before its deadline (every request type is idempotent),
//!   and answered exactly once.
//! - Primary/backup failover: after a lost connection the client tries the
//!   same server again at once, after a failed attempt it waits NssWaitLimit
//!   seconds; after NssWaitRetries failed attempts it switches to the other
//!   server; round-robin while both are down; all in a background task.
//! - [`config_from_iked`] builds the configuration from iked.conf's
//!   IkeConfig and NssStackConfig.
//! - Remote management: routed NMI requests go to the [`MgmtHandler`] the
//!   daemon provides; its answer goes back to the server.
//! - [`NssClient::status`] is the state `ipsec -w` shows
//!   ([`ClientStatus::to_record`] gives the NMI record).
//!
//! Log messages (tracing, `EZD11xxI`, see `docs/messages.md`) say when the
//! client connects, fails, switches servers, finds a service not available
//! or a connection not secure.
//!
//! Depends on `nss-proto`, `ike-proto` (certificates), `gatekey-nmi` (the
//! record type), `gatekey-config` (the key file format), tokio and rustls;
//! must not depend on iked or nssd.

mod session;
mod status;
mod verifier;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatekey_nmi::records::{NssConnectionState, NssServerRole};
use nss_proto::passticket::{DEFAULT_APPL, TicketGenerator};
pub use nss_proto::{
    CaCertificate, GetCertificateResponse, MessageType, Rc, Rsn, Secret, Services, SignInput,
    SignResponse, SignatureAlgorithm, Status, Verdict, VerifyResponse, VerifySubject,
};
use nss_proto::{
    Correlator, GetCertificateRequest, Message, Request, ResponseBody, SignRequest, VerifyRequest,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use session::{ConnectFailure, Session};
pub use status::ClientStatus;
pub use verifier::Identity;

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The daemon's handler for routed NMI requests: gets the complete NMI
/// request message and the requesting user on the server host, returns the
/// complete NMI response message.
pub type MgmtHandler = Arc<
    dyn Fn(Vec<u8>, Option<String>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync,
>;

/// Receives every log line the client emits (tests).
pub type LogHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Makes the (unconnected) TCP socket of a connection attempt to the given
/// server: iked creates it inside the stack's network namespace, so that
/// each stack reaches its NSS server over its own network. The client
/// connects it.
pub type SocketFactory =
    Arc<dyn Fn(SocketAddr) -> std::io::Result<tokio::net::TcpSocket> + Send + Sync>;

/// How the user ID is authenticated.
#[derive(Clone)]
pub enum Credentials {
    /// A password.
    Password(Secret),
    /// PassTickets generated from the application key.
    PassTicket {
        /// The application key (PTKTDATA).
        key: Secret,
        /// The application name (`NSSD`).
        appl: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password(_) => f.write_str("Password(<redacted>)"),
            Credentials::PassTicket { appl, .. } => {
                write!(f, "PassTicket {{ appl: {appl}, key: <redacted> }}")
            }
        }
    }
}

impl Credentials {
    /// PassTickets for application `NSSD` with `key`.
    pub fn passticket(key: Secret) -> Self {
        Credentials::PassTicket {
            key,
            appl: DEFAULT_APPL.to_owned(),
        }
    }
}

/// An NSS server (`NetworkSecurityServer[Backup] host Port n Identity …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Host name or address.
    pub host: String,
    /// TCP port (4159).
    pub port: u16,
    /// The identity its certificate must prove; `None`: the host itself.
    pub identity: Option<Identity>,
}

impl ServerSpec {
    /// `host` on `port`, identity = the host.
    pub fn new(host: &str, port: u16) -> Self {
        ServerSpec {
            host: host.to_owned(),
            port,
            identity: None,
        }
    }

    fn identity(&self) -> Identity {
        self.identity
            .clone()
            .unwrap_or_else(|| Identity::for_host(&self.host))
    }
}

/// One stack's NSS client configuration.
#[derive(Clone)]
pub struct ClientConfig {
    /// ClientName (at most 24 characters).
    pub client_name: String,
    /// The stack.
    pub stack_name: String,
    /// This system's name.
    pub system_name: String,
    /// UserId on the server.
    pub user_id: String,
    /// AuthBy.
    pub credentials: Credentials,
    /// ServiceType(s).
    pub services: Services,
    /// NetworkSecurityServer.
    pub primary: Option<ServerSpec>,
    /// NetworkSecurityServerBackup.
    pub backup: Option<ServerSpec>,
    /// NssWaitLimit.
    pub wait_limit: Duration,
    /// NssWaitRetries.
    pub wait_retries: u32,
    /// DER CA certificates that may issue the servers' TLS certificates.
    pub trust_anchors: Vec<Vec<u8>>,
    /// DER CRLs checked for the servers' certificates.
    pub crls: Vec<Vec<u8>>,
    /// Default request timeout.
    pub request_timeout: Duration,
    /// Time allowed for one connection attempt (TCP, TLS, CONNECT).
    pub connect_timeout: Duration,
    /// Receives every log line (tests).
    pub log_hook: Option<LogHook>,
    /// Makes the connection sockets; `None`: sockets of the calling
    /// process's network namespace.
    pub socket_factory: Option<SocketFactory>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_name", &self.client_name)
            .field("stack_name", &self.stack_name)
            .field("user_id", &self.user_id)
            .field("credentials", &self.credentials)
            .field("services", &self.services)
            .field("primary", &self.primary)
            .field("backup", &self.backup)
            .field("wait_limit", &self.wait_limit)
            .field("wait_retries", &self.wait_retries)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A configuration with the z/OS defaults: ServiceType Cert, NssWaitLimit
    /// 60 s, NssWaitRetries 3; requests time out after 30 s, connection
    /// attempts after 10 s.
    pub fn new(
        stack_name: &str,
        client_name: &str,
        system_name: &str,
        user_id: &str,
        credentials: Credentials,
    ) -> Self {
        ClientConfig {
            client_name: client_name.to_owned(),
            stack_name: stack_name.to_owned(),
            system_name: system_name.to_owned(),
            user_id: user_id.to_owned(),
            credentials,
            services: Services::CERT,
            primary: None,
            backup: None,
            wait_limit: Duration::from_secs(60),
            wait_retries: 3,
            trust_anchors: Vec::new(),
            crls: Vec::new(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            log_hook: None,
            socket_factory: None,
        }
    }

    /// The default client name `<SYSNAME>_<stack>`, at most 24 characters.
    pub fn default_client_name(system_name: &str, stack_name: &str) -> String {
        format!("{system_name}_{stack_name}")
            .chars()
            .take(24)
            .collect()
    }
}

/// Errors of client requests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a failure.
    #[error("{msg_type} failed - return code {} reason code {}", .status.rc, .status.rsn)]
    Refused {
        /// The request type.
        msg_type: MessageType,
        /// Return and reason code.
        status: Status,
    },
    /// No answer before the deadline (no connection, or no response).
    #[error("no answer from an NSS server before the deadline ({0})")]
    Timeout(String),
    /// The client was shut down.
    #[error("the NSS client is shut down")]
    Shutdown,
    /// The server answered something that does not fit the request.
    #[error("unexpected answer from the NSS server: {0}")]
    Protocol(String),
    /// The configuration cannot work.
    #[error("invalid NSS client configuration: {0}")]
    Config(String),
}

/// Read a PassTicket application key file (hex digits, 16-64 bytes; must
/// not be accessible by group or others).
pub fn read_passticket_key(path: &Path) -> Result<Secret, Error> {
    let m = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{} holds a PassTicket key but is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?,
    );
    let k = gatekey_config::saf::parse_key_hex(&text)
        .map_err(|m| Error::Config(format!("{}: {m}", path.display())))?;
    Ok(Secret::from_slice(k.expose()))
}

pub(crate) struct Shared {
    pub(crate) config: ClientConfig,
    pub(crate) mgmt: Option<MgmtHandler>,
    session: watch::Sender<Option<Arc<Session>>>,
    status: Mutex<ClientStatus>,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    fn log(&self, id: &str, text: std::fmt::Arguments<'_>) {
        let line = format!("{id} {text}");
        if id.ends_with('E') {
            tracing::error!(stack = %self.config.stack_name, "{line}");
        } else if id.ends_with('W') {
            tracing::warn!(stack = %self.config.stack_name, "{line}");
        } else {
            tracing::info!(stack = %self.config.stack_name, "{line}");
        }
        if let Some(h) = &self.config.log_hook {
            h(&line);
        }
    }

    fn update(&self, f: impl FnOnce(&mut ClientStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
}

/// The z/OS-style name of a request type in EZD1139I.
pub fn request_name(t: MessageType) -> &'static str {
    match t {
        MessageType::CONNECT => "NSS_ConnectClientReqToSrv",
        MessageType::DISCONNECT => "NSS_DisconnectClientReqToSrv",
        MessageType::KEEPALIVE => "NSS_KeepaliveReqToSrv",
        MessageType::SIGN => "NSS_CertSignReqToSrv",
        MessageType::VERIFY => "NSS_CertVerifyReqToSrv",
        MessageType::GET_CERTIFICATE => "NSS_CertGetReqToSrv",
        MessageType::GET_CA_CERTIFICATES => "NSS_CertGetCAReqToSrv",
        _ => "NSS_UnknownReqToSrv",
    }
}

/// A running NSS client for one stack. Cheap to clone.
#[derive(Clone)]
pub struct NssClient {
    shared: Arc<Shared>,
    manager: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for NssClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NssClient")
            .field("stack", &self.shared.config.stack_name)
            .field("client", &self.shared.config.client_name)
            .finish()
    }
}

impl NssClient {
    /// Start the client: a background task connects (and keeps reconnecting)
    /// as configured. Must be called inside a tokio runtime. `mgmt` serves
    /// routed NMI requests (RemoteMgmt).
    pub fn start(config: ClientConfig, mgmt: Option<MgmtHandler>) -> Result<NssClient, Error> {
        if config.primary.is_none() && config.backup.is_none() {
            return Err(Error::Config(
                "no NetworkSecurityServer or NetworkSecurityServerBackup".into(),
            ));
        }
        if config.client_name.is_empty() || config.client_name.len() > 24 {
            return Err(Error::Config(format!(
                "ClientName {:?} must be 1 to 24 characters",
                config.client_name
            )));
        }
        if config.wait_retries == 0 || config.wait_limit.is_zero() {
            return Err(Error::Config(
                "NssWaitLimit and NssWaitRetries must be at least 1".into(),
            ));
        }
        let status = ClientStatus::initial(
            &config.stack_name,
            &config.client_name,
            &config.user_id,
            config.services,
        );
        let shared = Arc::new(Shared {
            config,
            mgmt,
            session: watch::channel(None).0,
            status: Mutex::new(status),
            shutdown: watch::channel(false).0,
        });
        let task = tokio::spawn(manage(Arc::clone(&shared)));
        Ok(NssClient {
            shared,
            manager: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// The current state (`ipsec -w`).
    pub fn status(&self) -> ClientStatus {
        let mut s = self
            .shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        if let Some(sess) = self.shared.session.borrow().as_ref() {
            s.time_last_message = Some(sess.last_tx.load(std::sync::atomic::Ordering::Relaxed));
        }
        s
    }

    /// Wait until a connection is up (or `timeout`).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.session(deadline).await.map(|_| ())
    }

    async fn session(&self, deadline: tokio::time::Instant) -> Result<Arc<Session>, Error> {
        let mut rx = self.shared.session.subscribe();
        loop {
            if *self.shared.shutdown.borrow() {
                return Err(Error::Shutdown);
            }
            if let Some(s) = rx.borrow_and_update().clone()
                && !s.is_closed()
            {
                return Ok(s);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Shutdown),
                Err(_) => {
                    let why = self
                        .status()
                        .last_error
                        .unwrap_or_else(|| "not connected".to_owned());
                    return Err(Error::Timeout(format!("not connected: {why}")));
                }
            }
        }
    }

    /// Send `request` and wait for its response, within `timeout` (default:
    /// the configured request timeout). The request is sent again on a new
    /// connection if the current one is lost before the answer.
    pub async fn request(
        &self,
        request: Request,
        timeout: Option<Duration>,
    ) -> Result<ResponseBody, Error> {
        let t = timeout.unwrap_or(self.shared.config.request_timeout);
        let deadline = tokio::time::Instant::now() + t;
        let mt = request.msg_type();
        loop {
            let s = self.session(deadline).await?;
            match tokio::time::timeout_at(deadline, s.request(request.clone())).await {
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "no answer to {mt} within {} s",
                        t.as_secs_f32()
                    )));
                }
                Ok(Err(session::Lost)) => continue,
                Ok(Ok(Message::Response {
                    status,
                    body,
                    correlator,
                })) => {
                    if status.is_ok() {
                        return Ok(body);
                    }
                    self.log_refused(mt, correlator, status);
                    return Err(Error::Refused {
                        msg_type: mt,
                        status,
                    });
                }
                Ok(Ok(other)) => {
                    return Err(Error::Protocol(format!(
                        "{} in answer to {mt}",
                        other.msg_type()
                    )));
                }
            }
        }
    }

    fn log_refused(&self, mt: MessageType, corr: Correlator, st: Status) {
        self.shared.log(
            "EZD1139I",
            format_args!(
                "Request type {} with correlator ID {corr} for stack {} failed - return code {} reason code {}",
                request_name(mt),
                self.shared.config.stack_name,
                st.rc,
                st.rsn
            ),
        );
    }

    /// Sign with the certificate `label` (or the client's default).
    pub async fn sign(
        &self,
        label: Option<&str>,
        algorithm: SignatureAlgorithm,
        input: SignInput,
        timeout: Option<Duration>,
    ) -> Result<SignResponse, Error> {
        let r = Request::Sign(SignRequest {
            label: label.map(str::to_owned),
            algorithm,
            input,
        });
        match self.request(r, timeout).await? {
            ResponseBody::Sign(s) => Ok(s),
            other => Err(Error::Protocol(format!(
                "{} in answer to SIGN",
                other.msg_type()
            ))),
        }
    }

    /// Verify a signature with the peer's certificates or a keyring label.
    pub async fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        input: SignInput,
        signature: Vec<u8>,
        subject: VerifySubject,
        timeout: Option<Duration>,
    ) -> Result<VerifyResponse, Error> {
        let r = Request::Verify(VerifyRequest {
            algorithm,
            input,
            signature,
            subject,
        });
        match self.request(r, timeout).await? {
            ResponseBody::Verify(v) => Ok(v),
            other => Err(Error::Protocol(format!(
                "{} in answer to VERIFY",
                other.msg_type()
            ))),
        }
    }

    /// The certificate `label` (or the default) and its issuers.
    pub async fn get_certificate(
        &self,
        label: Option<&str>,
        timeout: Option<Duration>,
    ) -> Result<GetCertificateResponse, Error> {
        let r = Request::GetCertificate(GetCertificateRequest {
            label: label.map(str::to_owned),
        });
        match self.request(r, timeout).await? {
            ResponseBody::GetCertificate(g) => Ok(g),
            other => Err(Error::Protocol(format!(
                "{} in answer to GET_CERTIFICATE",
                other.msg_type()
            ))),
        }
    }

    /// The CA certificates the client may use.
    pub async fn get_ca_certificates(
        &self,
        timeout: Option<Duration>,
    ) -> Result<Vec<CaCertificate>, Error> {
        match self.request(Request::GetCaCertificates, timeout).await? {
            ResponseBody::GetCaCertificates(v) => Ok(v),
            other => Err(Error::Protocol(format!(
                "{} in answer to GET_CA_CERTIFICATES",
                other.msg_type()
            ))),
        }
    }

    /// Stop: DISCONNECT from the server, stop reconnecting, fail waiting
    /// requests with [`Error::Shutdown`].
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let task = self.manager.lock().ok().and_then(|mut m| m.take());
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

fn role_of(idx: usize, servers: &[(NssServerRole, ServerSpec)]) -> NssServerRole {
    servers.get(idx).map_or(NssServerRole::Primary, |(r, _)| *r)
}

fn services_text(s: Services) -> String {
    let mut v = Vec::new();
    if s.contains(Services::CERT) {
        v.push("Cert");
    }
    if s.contains(Services::REMOTE_MGMT) {
        v.push("RemoteMgmt");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// The connection manager (background task).
async fn manage(shared: Arc<Shared>) {
    let cfg = shared.config.clone();
    let mut servers: Vec<(NssServerRole, ServerSpec)> = Vec::new();
    if let Some(p) = &cfg.primary {
        servers.push((NssServerRole::Primary, p.clone()));
    }
    if let Some(b) = &cfg.backup {
        servers.push((NssServerRole::Backup, b.clone()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut shutdown = shared.shutdown.subscribe();
    let mut tickets = TicketGenerator::new();
    let mut idx = 0usize;
    let mut attempts = 0u32;
    let mut epoch = 0u64;
    let stack = cfg.stack_name.clone();
    'outer: loop {
        if *shutdown.borrow() {
            break;
        }
        let Some((_, spec)) = servers.get(idx).cloned() else {
            break;
        };
        let role = role_of(idx, &servers);
        let label = format!("{}:{}", spec.host, spec.port);
        shared.update(|s| {
            s.state = NssConnectionState::Connecting;
            s.role = Some(role);
            s.server = Some(label.clone());
        });
        epoch += 1;
        let attempt = attempt(&shared, &spec, Arc::clone(&provider), &mut tickets, epoch);
        let outcome = tokio::select! {
            r = tokio::time::timeout(cfg.connect_timeout, attempt) => r.unwrap_or_else(|_| Err(ConnectFailure::Unreachable(format!("no connection within {} s", cfg.connect_timeout.as_secs_f32())))),
            _ = shutdown.changed() => break,
        };
        match outcome {
            Ok(session) => {
                attempts = 0;
                let info = session.info.clone();
                let c = &info.connect;
                shared.update(|s| {
                    s.state = NssConnectionState::Connected;
                    s.local_addr = Some(info.local);
                    s.server_addr = Some(info.server);
                    s.server_system_name = Some(c.system_name.clone());
                    s.server_api_version = Some(c.api_version);
                    s.enabled = Some(c.services);
                    s.time_connected = Some(info.time_connected);
                    s.last_error = None;
                    s.connects += 1;
                });
                shared.log(
                    "EZD1138I",
                    format_args!(
                        "IKE connected stack {stack} to network security server {} port {} ({role:?}, system {}) as client {} from {} port {}; services selected {} enabled {}",
                        info.server.ip(),
                        info.server.port(),
                        c.system_name,
                        cfg.client_name,
                        info.local.ip(),
                        info.local.port(),
                        services_text(cfg.services),
                        services_text(c.services)
                    ),
                );
                if cfg.services.contains(Services::CERT) && !c.services.contains(Services::CERT) {
                    shared.log(
                        "EZD1145I",
                        format_args!("The network security certificate service is not available for stack {stack}"),
                    );
                }
                if cfg.services.contains(Services::REMOTE_MGMT)
                    && !c.services.contains(Services::REMOTE_MGMT)
                {
                    shared.log(
                        "EZD1147I",
                        format_args!("The network security remote management service is not available for stack {stack}"),
                    );
                }
                shared.session.send_replace(Some(Arc::clone(&session)));
                let mut ended = session.ended.subscribe();
                let why = tokio::select! {
                    r = async { ended.wait_for(Option::is_some).await.map(|v| v.clone()) } => r.ok().flatten().unwrap_or_default(),
                    _ = shutdown.changed() => {
                        session.close(true).await;
                        shared.session.send_replace(None);
                        break 'outer;
                    }
                };
                shared.session.send_replace(None);
                shared.update(|s| {
                    s.state = NssConnectionState::Disconnected;
                    s.enabled = None;
                    s.time_connected = None;
                    s.last_error = Some(why.clone());
                });
                shared.log(
                    "EZD1140I",
                    format_args!(
                        "IKE lost the connection of stack {stack} to network security server {} port {}: {why}",
                        info.server.ip(),
                        info.server.port()
                    ),
                );
                // Reconnect at once (first retry of the same server).
                continue;
            }
            Err(f) => {
                attempts += 1;
                let (state, text) = match &f {
                    ConnectFailure::Unreachable(e) => (
                        NssConnectionState::Disconnected,
                        format!("cannot reach the server: {e}"),
                    ),
                    ConnectFailure::NotSecure(e) => (NssConnectionState::NotSecure, e.clone()),
                    ConnectFailure::Refused(st, _) if st.rsn == Rsn::USER_AUTHENTICATION => (
                        NssConnectionState::AuthFailed,
                        format!("CONNECT refused: {st}"),
                    ),
                    ConnectFailure::Refused(st, _) => (
                        NssConnectionState::Disconnected,
                        format!("CONNECT refused: {st}"),
                    ),
                    ConnectFailure::Other(e) => (NssConnectionState::Disconnected, e.clone()),
                };
                match &f {
                    ConnectFailure::NotSecure(e) => shared.log(
                        "EZD1149I",
                        format_args!("The connection of stack {stack} to network security server {label} is not secure: {e}"),
                    ),
                    ConnectFailure::Refused(st, corr) => shared.log(
                        "EZD1139I",
                        format_args!(
                            "Request type {} with correlator ID {corr} for stack {stack} failed - return code {} reason code {}",
                            request_name(MessageType::CONNECT),
                            st.rc,
                            st.rsn
                        ),
                    ),
                    _ => shared.log(
                        "EZD1142I",
                        format_args!("IKE cannot connect stack {stack} to network security server {label} (attempt {attempts} of {}): {text}", cfg.wait_retries),
                    ),
                }
                shared.update(|s| {
                    s.state = state;
                    s.last_error = Some(text.clone());
                });
                if attempts >= cfg.wait_retries {
                    attempts = 0;
                    if servers.len() > 1 {
                        let from = role;
                        idx = (idx + 1) % servers.len();
                        let to = role_of(idx, &servers);
                        shared.update(|s| s.switches += 1);
                        let next = servers
                            .get(idx)
                            .map(|(_, s)| format!("{}:{}", s.host, s.port))
                            .unwrap_or_default();
                        shared.log(
                            "EZD1141I",
                            format_args!("IKE switches stack {stack} from the {from:?} network security server {label} to the {to:?} server {next}"),
                        );
                        continue;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(cfg.wait_limit) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
    shared.update(|s| {
        s.state = NssConnectionState::Disconnected;
        s.enabled = None;
    });
    shared.session.send_replace(None);
}

async fn attempt(
    shared: &Arc<Shared>,
    spec: &ServerSpec,
    provider: Arc<rustls::crypto::CryptoProvider>,
    tickets: &mut TicketGenerator,
    epoch: u64,
) -> Result<Arc<Session>, ConnectFailure> {
    let cfg = &shared.config;
    let addr: SocketAddr = tokio::net::lookup_host((spec.host.as_str(), spec.port))
        .await
        .map_err(|e| ConnectFailure::Unreachable(format!("cannot resolve {}: {e}", spec.host)))?
        .next()
        .ok_or_else(|| ConnectFailure::Unreachable(format!("{} has no address", spec.host)))?;
    let verifier = Arc::new(
        verifier::IdentityVerifier::new(
            &cfg.trust_anchors,
            &cfg.crls,
            spec.identity(),
            Arc::clone(&provider),
        )
        .map_err(ConnectFailure::NotSecure)?,
    );
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ConnectFailure::Other(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(
            Arc::clone(&verifier) as Arc<dyn rustls::client::danger::ServerCertVerifier>
        )
        .with_no_client_auth();
    let server_name = match spec.host.parse::<std::net::IpAddr>() {
        Ok(a) => rustls_pki_types::ServerName::IpAddress(a.into()),
        Err(_) => rustls_pki_types::ServerName::try_from(spec.host.clone())
            .unwrap_or_else(|_| rustls_pki_types::ServerName::IpAddress(addr.ip().into())),
    };
    let credential = match &cfg.credentials {
        Credentials::Password(p) => p.clone(),
        Credentials::PassTicket { key, appl } => tickets
            .next(key.expose(), appl, &cfg.user_id, unix_now())
            .map_err(|e| ConnectFailure::Other(format!("cannot make a PassTicket: {e}")))?,
    };
    let v = Arc::clone(&verifier);
    let failure = move || v.last_failure.lock().ok().and_then(|l| l.clone());
    session::establish(
        shared,
        addr,
        server_name,
        Arc::new(tls),
        credential,
        epoch,
        &failure,
    )
    .await
}

/// The client configuration of one NSS client stack from iked.conf: the
/// IkeConfig NetworkSecurityServer(Backup) (with Port and Identity),
/// NssWaitLimit and NssWaitRetries, and the stack's NssStackConfig
/// (ClientName or `<SYSNAME>_<stack>`, ServiceType, UserId, AuthBy with
/// Password or PassTicketKeyFile). `trust_anchors` are the DER CA
/// certificates that may issue the NSS servers' TLS certificates (iked takes
/// them from its keyring).
pub fn config_from_iked(
    ike: &gatekey_config::iked_conf::IkeConfig,
    stack: &gatekey_config::iked_conf::NssStackConfig,
    system_name: &str,
    trust_anchors: Vec<Vec<u8>>,
) -> Result<ClientConfig, Error> {
    use gatekey_config::iked_conf::{AuthBy, IdentityType, NssServer, ServiceType};
    let credentials = match stack.auth_by {
        AuthBy::Password => Credentials::Password(Secret::from_slice(
            stack
                .password
                .as_ref()
                .ok_or_else(|| {
                    Error::Config(format!(
                        "NssStackConfig {}: AuthBy Password needs Password",
                        stack.stack
                    ))
                })?
                .expose(),
        )),
        AuthBy::PassTicket => {
            let f = stack.passticket_key_file.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "NssStackConfig {}: AuthBy PassTicket needs PassTicketKeyFile",
                    stack.stack
                ))
            })?;
            Credentials::passticket(read_passticket_key(f)?)
        }
    };
    let spec = |s: &NssServer| -> Result<ServerSpec, Error> {
        let identity = match &s.identity {
            None => None,
            Some(i) => Some(match i.kind {
                IdentityType::IpAddr => Identity::IpAddr(i.value.parse().map_err(|_| {
                    Error::Config(format!("Identity IpAddr {:?} is not an address", i.value))
                })?),
                IdentityType::Fqdn => Identity::Fqdn(i.value.clone()),
                IdentityType::UserAtFqdn => Identity::UserAtFqdn(i.value.clone()),
                IdentityType::X500dn => Identity::X500dn(i.value.clone()),
            }),
        };
        Ok(ServerSpec {
            host: s.host.clone(),
            port: s.port,
            identity,
        })
    };
    let mut services = Services::NONE;
    for s in &stack.services {
        services = services.with(match s {
            ServiceType::Cert => Services::CERT,
            ServiceType::RemoteMgmt => Services::REMOTE_MGMT,
        });
    }
    let mut c = ClientConfig::new(
        &stack.stack,
        &stack.client_name(system_name),
        system_name,
        &stack.user_id,
        credentials,
    );
    c.services = services;
    c.primary = ike.nss.as_ref().map(spec).transpose()?;
    c.backup = ike.nss_backup.as_ref().map(spec).transpose()?;
    c.wait_limit = Duration::from_secs(u64::from(ike.nss_wait_limit.max(1)));
    c.wait_retries = ike.nss_wait_retries.max(1);
    c.trust_anchors = trust_anchors;
    Ok(c)
}
