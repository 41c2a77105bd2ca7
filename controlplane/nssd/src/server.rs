//! The server: shared state, the client registry (one live connection per
//! client name), listeners, refresh and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nss_proto::passticket::TicketVerifier;
use nss_proto::{Correlator, Message, Request, Services, Status};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::log::{LogHook, Logger, level};
use crate::nsslog;
use crate::runtime::Runtime;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a connection's writer task is asked to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Write this encoded frame.
    Frame(Vec<u8>),
    /// Flush, send TLS close_notify and stop.
    Close,
}

/// A client that completed CONNECT.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client name as the client sent it.
    pub client_name: String,
    /// Upper-case key of the registry.
    pub key: String,
    /// The stack name.
    pub stack_name: String,
    /// The client's system name.
    pub system_name: String,
    /// The user ID (upper case).
    pub user_id: String,
    /// Services the client selected.
    pub selected: Services,
    /// Services enabled.
    pub enabled: Services,
    /// API version chosen.
    pub api_version: u16,
    /// Highest API version the client offered.
    pub client_api_version: u16,
    /// When CONNECT succeeded (Unix seconds).
    pub time_connected: u64,
}

/// One TLS connection.
#[derive(Debug)]
pub struct ConnState {
    /// The connection ID (as in the logs).
    pub id: u32,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address.
    pub local: SocketAddr,
    pub(crate) tx: mpsc::Sender<Out>,
    /// Set once CONNECT succeeded.
    pub client: OnceLock<ClientInfo>,
    pub(crate) connecting: AtomicBool,
    pub(crate) pending: Mutex<HashMap<Correlator, oneshot::Sender<Message>>>,
    next_corr: AtomicU64,
    /// Unix seconds of the last frame received.
    pub last_rx: AtomicU64,
    pub(crate) close: watch::Sender<Option<Status>>,
    pub(crate) inflight: Arc<Semaphore>,
}

/// Why a server-initiated request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqError {
    /// No answer in time.
    Timeout,
    /// The connection is gone.
    Closed,
}

/// Server-initiated correlators carry this in their last 8 bytes.
const SERVER_EPOCH: u64 = 0x5345_5256_4552_0000;

impl ConnState {
    pub(crate) fn new(id: u32, peer: SocketAddr, local: SocketAddr, tx: mpsc::Sender<Out>) -> Self {
        ConnState {
            id,
            peer,
            local,
            tx,
            client: OnceLock::new(),
            connecting: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            next_corr: AtomicU64::new(1),
            last_rx: AtomicU64::new(unix_now()),
            close: watch::channel(None).0,
            inflight: Arc::new(Semaphore::new(256)),
        }
    }

    /// Queue a message for sending.
    pub(crate) async fn send(&self, m: &Message) -> bool {
        match m.encode() {
            Ok(b) => self.tx.send(Out::Frame(b)).await.is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an NSS message");
                false
            }
        }
    }

    /// Send a request to the client and wait for its response.
    pub async fn request(&self, request: Request, timeout: Duration) -> Result<Message, ReqError> {
        let corr = Correlator::new(self.next_corr.fetch_add(1, Ordering::Relaxed), SERVER_EPOCH);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(corr, tx);
        }
        let m = Message::Request {
            correlator: corr,
            request,
        };
        if !self.send(&m).await {
            self.forget(corr);
            return Err(ReqError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(ReqError::Closed),
            Err(_) => {
                self.forget(corr);
                Err(ReqError::Timeout)
            }
        }
    }

    fn forget(&self, corr: Correlator) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&corr);
        }
    }

    /// Ask the connection to close, with a TERMINATE if `status` is given.
    pub fn close(&self, status: Option<Status>) {
        self.close.send_replace(Some(status.unwrap_or_default()));
    }

    /// True if the connection is closing or closed.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.close.borrow().is_some()
    }
}

/// Connected clients by upper-case client name.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<ConnState>>>,
}

impl Registry {
    /// The connection holding `key`.
    pub fn get(&self, key: &str) -> Option<Arc<ConnState>> {
        self.map
            .lock()
            .ok()?
            .get(&key.to_ascii_uppercase())
            .cloned()
    }

    /// Put `conn` under `key` if the slot is empty or still holds `expected`
    /// (by connection ID). Returns the holder if it is someone else.
    pub(crate) fn claim(
        &self,
        key: &str,
        conn: &Arc<ConnState>,
        expected: Option<u32>,
    ) -> Result<(), Arc<ConnState>> {
        let Ok(mut m) = self.map.lock() else {
            return Ok(());
        };
        match m.get(key) {
            Some(cur) if Some(cur.id) != expected && cur.id != conn.id => Err(Arc::clone(cur)),
            _ => {
                m.insert(key.to_owned(), Arc::clone(conn));
                Ok(())
            }
        }
    }

    /// Remove `key` if connection `id` holds it.
    pub(crate) fn release(&self, key: &str, id: u32) {
        if let Ok(mut m) = self.map.lock()
            && m.get(key).is_some_and(|c| c.id == id)
        {
            m.remove(key);
        }
    }

    /// Every connected client, sorted by name.
    pub fn all(&self) -> Vec<Arc<ConnState>> {
        let mut v: Vec<Arc<ConnState>> = self
            .map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            let ka = a.client.get().map(|c| c.key.clone());
            let kb = b.client.get().map(|c| c.key.clone());
            ka.cmp(&kb)
        });
        v
    }
}

/// State shared by every task.
#[derive(Debug)]
pub struct Shared {
    runtime: RwLock<Arc<Runtime>>,
    /// The logger.
    pub logger: Logger,
    /// Connected clients.
    pub registry: Registry,
    next_conn_id: AtomicU32,
    pub(crate) tickets: Mutex<TicketVerifier>,
    pub(crate) password_slots: Semaphore,
    /// Private-key operations run at most this many at a time (one per
    /// core): more would only add threads, not signatures.
    pub(crate) sign_slots: Semaphore,
    pub(crate) shutdown: watch::Sender<bool>,
    /// Timeout for a routed NMI request.
    pub mgmt_timeout: Duration,
    /// How long the probe of an old connection with the same client name waits.
    pub probe_timeout: Duration,
    /// The TCP listener (replaced when a refresh moves the port; `None` after shutdown).
    listener: tokio::sync::Mutex<Option<ListenerCtl>>,
    /// Held for the whole of a refresh: SIGHUP and NMI refreshes run one at a time.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Where `running.conf` and `refresh.result` go.
    state_dir: Option<PathBuf>,
}

impl Shared {
    /// The running configuration.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    fn set_runtime(&self, r: Arc<Runtime>) {
        match self.runtime.write() {
            Ok(mut g) => *g = r,
            Err(p) => *p.into_inner() = r,
        }
    }

    pub(crate) fn next_conn_id(&self) -> u32 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The address the listener is bound to.
    pub async fn local_addr(&self) -> SocketAddr {
        self.listener
            .lock()
            .await
            .as_ref()
            .map_or_else(|| listen_addr(&self.runtime()), |l| l.addr)
    }

    /// Re-read every file, for `who` (`SIGHUP`, or the NMI caller). Any
    /// error rejects the refresh whole: the running configuration stays and
    /// the error is returned (and logged, DBG0008E). A new port or address
    /// gets a new listener; connections stay. Refreshes run one at a time.
    pub async fn refresh(self: &Arc<Self>, who: &str) -> Result<RefreshReport> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let old = self.runtime();
        nsslog!(
            self.logger,
            level::MINIMUM,
            "DBG0006I",
            "NSS server refresh of {} requested by {who}",
            old.config_path.display()
        );
        let result = self.try_refresh(&old).await;
        match &result {
            Ok(r) => {
                write_state(
                    &self.state_dir,
                    "refresh.result",
                    &format!("OK {}\n", r.time),
                );
                let rt = self.runtime();
                write_state(
                    &self.state_dir,
                    "running.conf",
                    &display_text(&rt, r.listen.1),
                );
            }
            Err(e) => {
                for line in format!("{e:#}").lines() {
                    nsslog!(self.logger, level::MINIMUM, "DBG0008E", "{line}");
                }
                nsslog!(
                    self.logger,
                    level::MINIMUM,
                    "DBG0008E",
                    "NSS server refresh rejected; the running configuration stays in force"
                );
                write_state(
                    &self.state_dir,
                    "refresh.result",
                    &format!("REJECTED {}\n{e:#}\n", unix_now()),
                );
            }
        }
        result
    }

    async fn try_refresh(self: &Arc<Self>, old: &Arc<Runtime>) -> Result<RefreshReport> {
        let path = old.config_path.clone();
        let new = tokio::task::spawn_blocking(move || Runtime::load(&path))
            .await
            .context("refresh task")??;
        let mut guard = self.listener.lock().await;
        let Some(listener) = guard.as_mut() else {
            anyhow::bail!("the server is shutting down");
        };
        let before = listener.addr;
        let want = listen_addr(&new);
        let moved = want.port() != old.config.port() || want.ip() != old.config.listen_address();
        if moved {
            // Bind first: if the new port cannot be used, nothing changes.
            let l = bind(want).await?;
            let ctl = spawn_listener(self, l);
            listener.stop.send_replace(true);
            let old_ctl = std::mem::replace(listener, ctl);
            let _ = old_ctl.task.await;
        }
        let after = listener.addr;
        drop(guard);
        let mut changes = crate::runtime::changes(old, &new);
        if moved {
            changes.insert(
                0,
                format!("listening on {after} (was {before}; new connections only)"),
            );
        }
        self.logger.set_level(new.config.syslog_level());
        let config_path = new.config_path.clone();
        self.set_runtime(Arc::new(new));
        nsslog!(
            self.logger,
            level::MINIMUM,
            "DBG0007I",
            "NSS server refresh complete: listening on {after}{}; {} connected clients unaffected",
            if moved {
                format!(" (was {before}; new connections only)")
            } else {
                String::new()
            },
            self.registry.all().len()
        );
        Ok(RefreshReport {
            listen: (before, after),
            config_path,
            time: unix_now(),
            changes,
        })
    }
}

/// How to run a server.
#[derive(Clone)]
pub struct Options {
    /// nssd.conf.
    pub config_path: PathBuf,
    /// The NMI socket (`None`: no NMI server).
    pub nmi_socket: Option<PathBuf>,
    /// Where `running.conf` (the display) and `refresh.result` are written
    /// (`None`: not written).
    pub state_dir: Option<PathBuf>,
    /// Receives every log line (tests).
    pub log_hook: Option<LogHook>,
    /// Routed NMI request timeout (default 30 s).
    pub mgmt_timeout: Duration,
    /// Probe timeout for a second connection with the same name (default 5 s).
    pub probe_timeout: Duration,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("config_path", &self.config_path)
            .field("nmi_socket", &self.nmi_socket)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

impl Options {
    /// Defaults for `config_path`: no NMI socket, no state files.
    pub fn new(config_path: impl Into<PathBuf>) -> Self {
        Options {
            config_path: config_path.into(),
            nmi_socket: None,
            state_dir: None,
            log_hook: None,
            mgmt_timeout: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
struct ListenerCtl {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running server.
pub struct ServerHandle {
    shared: Arc<Shared>,
    nmi: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle").finish_non_exhaustive()
    }
}

/// What a successful refresh changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    /// The listening address before and after.
    pub listen: (SocketAddr, SocketAddr),
    /// The configuration file that was re-read.
    pub config_path: PathBuf,
    /// When the new configuration took effect (Unix seconds).
    pub time: u64,
    /// What changed, one line each, for humans.
    pub changes: Vec<String>,
}

fn listen_addr(r: &Runtime) -> SocketAddr {
    SocketAddr::new(r.config.listen_address(), r.config.port())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn spawn_listener(shared: &Arc<Shared>, l: TcpListener) -> ListenerCtl {
    let addr = l
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (stop, mut stop_rx) = watch::channel(false);
    let sh = Arc::clone(shared);
    let mut shutdown = shared.shutdown.subscribe();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop_rx.changed() => break,
                _ = shutdown.changed() => break,
                a = l.accept() => match a {
                    Ok((tcp, peer)) => {
                        let local = tcp.local_addr().unwrap_or(addr);
                        tokio::spawn(crate::conn::serve(Arc::clone(&sh), tcp, peer, local));
                    }
                    Err(e) => {
                        nsslog!(sh.logger, level::MINIMUM, "DBG0009W", "accept on {addr} failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    });
    ListenerCtl { addr, stop, task }
}

fn write_state(dir: &Option<PathBuf>, name: &str, text: &str) {
    if let Some(d) = dir {
        let _ = std::fs::create_dir_all(d);
        let tmp = d.join(format!(".{name}.tmp"));
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, d.join(name));
        }
    }
}

fn display_text(r: &Runtime, listen: SocketAddr) -> String {
    format!(
        "# nssd running configuration (from {}), listening on {listen}\n# TLS certificate: {:?}; keyring: {}\n{}",
        r.config_path.display(),
        r.tls_label,
        r.keyring.as_ref().map_or(
            "none (certificate service not available)".to_owned(),
            |k| format!("{} ({} certificates)", k.dir().display(), k.entries().len())
        ),
        r.config.display()
    )
}

impl ServerHandle {
    /// Load the configuration, bind the listener and the NMI socket, and
    /// start serving. Configuration errors are returned (the caller logs
    /// them and exits non-zero).
    pub async fn start(opts: Options) -> Result<ServerHandle> {
        let runtime = Runtime::load(&opts.config_path)?;
        let logger = Logger::new(runtime.config.syslog_level(), opts.log_hook.clone());
        let addr = listen_addr(&runtime);
        let l = bind(addr).await?;
        let bound = l.local_addr().unwrap_or(addr);
        let (shutdown, _) = watch::channel(false);
        let state_dir = opts.state_dir.clone();
        let shared = Arc::new(Shared {
            runtime: RwLock::new(Arc::new(runtime)),
            logger,
            registry: Registry::default(),
            next_conn_id: AtomicU32::new(1),
            tickets: Mutex::new(TicketVerifier::new()),
            password_slots: Semaphore::new(2),
            sign_slots: Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
            shutdown,
            mgmt_timeout: opts.mgmt_timeout,
            probe_timeout: opts.probe_timeout,
            listener: tokio::sync::Mutex::new(None),
            refresh_lock: tokio::sync::Mutex::new(()),
            state_dir,
        });
        let rt = shared.runtime();
        nsslog!(
            shared.logger,
            level::MINIMUM,
            "DBG0001I",
            "NSS server gatekey {} starting: configuration {}, system name {}",
            env!("CARGO_PKG_VERSION"),
            rt.config_path.display(),
            rt.system_name
        );
        *shared.listener.lock().await = Some(spawn_listener(&shared, l));
        nsslog!(
            shared.logger,
            level::MINIMUM,
            "DBG0002I",
            "NSS server listening on {bound} (TLS 1.3, certificate {:?}); certificate service {}",
            rt.tls_label,
            if rt.keyring.is_some() {
                "available"
            } else {
                "not available (no KeyRing)"
            }
        );
        let nmi = match &opts.nmi_socket {
            Some(p) => Some(crate::nmi::start(Arc::clone(&shared), p.clone()).await?),
            None => None,
        };
        write_state(&opts.state_dir, "running.conf", &display_text(&rt, bound));
        Ok(ServerHandle { shared, nmi })
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The address the listener is bound to.
    pub async fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr().await
    }

    /// Re-read every file (SIGHUP; the NMI request REFRESH_CONFIG does the
    /// same through [`Shared::refresh`]). Any error rejects the refresh whole:
    /// the running configuration stays and the error is returned (and
    /// logged). A new port or address gets a new listener; connections stay.
    pub async fn refresh(&self) -> Result<RefreshReport> {
        self.shared.refresh("SIGHUP").await
    }

    /// Stop: TERMINATE (ESHUTDOWN) to every client, close the NMI socket.
    pub async fn shutdown(self) {
        nsslog!(
            self.shared.logger,
            level::MINIMUM,
            "DBG0003I",
            "NSS server ending"
        );
        self.shared.shutdown.send_replace(true);
        for c in self.shared.registry.all() {
            c.close(Some(Status::new(
                nss_proto::Rc::ESHUTDOWN,
                nss_proto::Rsn::SERVER_SHUTDOWN,
            )));
        }
        let l = self.shared.listener.lock().await.take();
        if let Some(l) = l {
            let _ = l.task.await;
        }
        if let Some(n) = self.nmi {
            let _ = n.await;
        }
        // Give connection tasks a moment to send their TERMINATEs.
        for _ in 0..50 {
            if self.shared.registry.all().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
