//! iked as an NSS client (`docs/nss-protocol.md`, reference §1.3): one
//! connection per NssStackConfig stack to the Network Security Services
//! server, through the `nss-client` library.
//!
//! - **ServiceType Cert**: the stack's private keys live only on the NSS
//!   server. Every signature of the stack's IKE SAs is a SIGN request; the
//!   certificates sent in CERT payloads come from GET_CERTIFICATE (the
//!   KeyExchangeAction's CertificateLabel, or the client's default
//!   certificate), and peers are verified in the engine against the CA
//!   certificates the server permits the client (GET_CA_CERTIFICATES,
//!   filtered by `EZB.NSSCERT.<sys>.<label>.CERTAUTH` on the server, and by
//!   the RemoteSecurityEndpoint's CaLabel here). Certificates are fetched at
//!   each connection and every [`REFETCH`]; a signature that does not verify
//!   with the cached certificate (the key was rotated on the server) fails
//!   that negotiation and fetches the certificates again at once.
//! - **ServiceType RemoteMgmt**: NMI requests the server routes to the
//!   client are served like local ones ([`gatekey_nmi::server::serve_relayed`]
//!   into the daemon's event loop); nssd has authorized them against
//!   `EZB.NETMGMT.<sys>.<client>.IPSEC.DISPLAY|CONTROL`.
//! - A negotiation that needs a signature while no connection is up waits
//!   for the next connection (the library retries the primary, switches to
//!   the backup after NssWaitRetries attempts NssWaitLimit apart), at most
//!   NssWaitLimit × NssWaitRetries (30 s at least); the engine waits for the
//!   answer.
//! - Refresh: an NssStackConfig removed closes its connection, one added
//!   opens one, a changed one (or changed NetworkSecurityServer(Backup),
//!   NssWaitLimit, NssWaitRetries, SystemName or trust anchors) disconnects
//!   and reconnects.
//! - The server's TLS certificate is checked against the CERTAUTH
//!   certificates of iked's KeyRing (which then needs no private key at all).
//!
//! The connection state is what `ipsec -w display` shows (GET_IKENSINFO).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gatekey_config::ike_policy::{AuthMethod, IkePolicy, KeyExchangeRule};
use gatekey_config::iked_conf::{IkeConfig, NssStackConfig, ServiceType};
use gatekey_nmi::records::{IkeNsInfoRecord, NssConnectionState};
use ike_proto::crypto::cert::{Certificate, ChainVerifier};
use ike_proto::crypto::sig::{KeyAlgorithm, PublicKey, SignatureScheme};
use ike_proto::ikev2::{LocalAuth, RemoteAuth, RequestId};
use nss_client::{NssClient, Services, SignInput, SignatureAlgorithm};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::ike::IkeDriver;
use crate::nmi::NmiHandler;
use crate::stack::Stack;

/// How often certificates are fetched again while connected (to pick up
/// certificates rotated on the NSS server).
pub const REFETCH: Duration = Duration::from_secs(300);

/// How [`auth_for`] says that a rule waits for the certificate service.
pub const WAITING: &str = "waits for the NSS certificate service";

/// Does the stack wait for its first certificates from the NSS server?
pub fn waiting(stack: &Stack) -> bool {
    stack
        .nss
        .as_ref()
        .is_some_and(|n| n.cert_selected && n.certs == CertState::Pending)
}

/// The shortest time a signing request waits for an NSS connection.
pub const MIN_REQUEST_WAIT: Duration = Duration::from_secs(30);

/// A request of the IKE engine that the NSS server answers.
#[derive(Debug)]
pub enum Pending {
    /// Sign `octets` for KeyExchangeRule `peer`.
    Sign {
        /// The engine's correlator.
        id: RequestId,
        /// KeyExchangeRule name.
        peer: String,
        /// The scheme the engine chose.
        scheme: SignatureScheme,
        /// What to sign.
        octets: Vec<u8>,
    },
    /// Verify a peer (only asked for rules whose certificates could not be
    /// obtained: it fails with the reason).
    Verify {
        /// The engine's correlator.
        id: RequestId,
    },
}

/// An answer for the event loop.
#[derive(Debug)]
pub enum NssEvent {
    /// A signature (or why there is none).
    Signed {
        /// The stack.
        stack: String,
        /// Which IKE engine asked (answers for a replaced one are dropped).
        engine: u64,
        /// The engine's correlator.
        id: RequestId,
        /// The signature.
        result: Result<Vec<u8>, String>,
    },
    /// Certificates fetched from the server (or why they cannot be).
    Certificates {
        /// The stack.
        stack: String,
        /// Which client instance fetched them.
        instance: u64,
        /// The outcome.
        result: CertState,
    },
}

/// A certificate and its chain from the NSS server.
#[derive(Debug, Clone, PartialEq)]
pub struct CertChain {
    /// The label on the server's keyring.
    pub label: String,
    /// DER, end entity first, then its issuers.
    pub chain: Vec<Vec<u8>>,
    /// The key's algorithm.
    pub key: KeyAlgorithm,
    /// The public key (to check the server's signatures).
    pub public: PublicKey,
    /// The subject, for messages.
    pub subject: String,
}

/// What the certificate service gave a stack.
#[derive(Debug, Clone, PartialEq)]
pub struct NssCerts {
    /// By CertificateLabel (`None` = the client's default certificate).
    pub chains: BTreeMap<Option<String>, Result<CertChain, String>>,
    /// CA certificates the client may use: (label, DER).
    pub cas: Vec<(String, Vec<u8>)>,
    /// The server that answered (`system ip port`), for messages.
    pub server: String,
}

/// The state of a stack's certificate service.
#[derive(Debug, Clone, PartialEq)]
pub enum CertState {
    /// Not connected yet: rules that sign wait.
    Pending,
    /// Certificates are known.
    Ready(Arc<NssCerts>),
    /// The server refuses the certificate service: rules that sign fail
    /// with this reason.
    Refused(String),
}

/// What the NSS side of iked needs from the daemon: where answers go and
/// who serves relayed NMI requests.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Answers for the event loop.
    pub events: mpsc::Sender<NssEvent>,
    /// The NMI handler relayed requests go to.
    pub nmi: NmiHandler,
}

/// The parameters a client was started with (a refresh that changes them
/// reconnects).
#[derive(Debug, Clone, PartialEq)]
struct Params {
    stack: NssStackConfig,
    system_name: String,
    primary: Option<gatekey_config::iked_conf::NssServer>,
    backup: Option<gatekey_config::iked_conf::NssServer>,
    wait_limit: u32,
    wait_retries: u32,
    trust_anchors: Vec<Vec<u8>>,
}

impl Params {
    fn new(ike: &IkeConfig, nss: &NssStackConfig, system_name: &str) -> (Params, Vec<String>) {
        let mut stack = nss.clone();
        stack.pos = Default::default();
        let (trust_anchors, notes) = trust_anchors(ike);
        (
            Params {
                stack,
                system_name: system_name.to_owned(),
                primary: ike.nss.clone(),
                backup: ike.nss_backup.clone(),
                wait_limit: ike.nss_wait_limit,
                wait_retries: ike.nss_wait_retries,
                trust_anchors,
            },
            notes,
        )
    }
}

/// The CA certificates of iked's KeyRing: the trust anchors for the NSS
/// servers' TLS certificates.
fn trust_anchors(ike: &IkeConfig) -> (Vec<Vec<u8>>, Vec<String>) {
    let Some(dir) = ike.key_ring.directory() else {
        return (
            Vec::new(),
            vec!["IkeConfig says NoKeyRing, so no CA certificate can vouch for the NSS server's TLS certificate; code a KeyRing holding the CA certificate (no private key is needed)".into()],
        );
    };
    match gatekey_keyring::Keyring::load(&dir) {
        Ok(k) => {
            let cas: Vec<Vec<u8>> = k.ca_entries().map(|e| e.der().to_vec()).collect();
            if cas.is_empty() {
                (
                    cas,
                    vec![format!(
                        "key ring {} has no CERTAUTH certificate to verify the NSS server's TLS certificate with",
                        dir.display()
                    )],
                )
            } else {
                (cas, Vec::new())
            }
        }
        Err(e) => (
            Vec::new(),
            vec![format!(
                "key ring {} cannot be loaded, so the NSS server's TLS certificate cannot be verified: {e}",
                dir.display()
            )],
        ),
    }
}

static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A running NSS client of one stack.
#[derive(Debug)]
pub struct StackNss {
    /// The client (connection manager, requests).
    pub client: NssClient,
    /// The client name.
    pub client_name: String,
    /// ServiceType Cert selected.
    pub cert_selected: bool,
    /// ServiceType RemoteMgmt selected.
    pub mgmt_selected: bool,
    /// The certificate service's state (kept across reconnections and
    /// client restarts until new certificates arrive).
    pub certs: CertState,
    /// This client's instance number (answers of older ones are dropped).
    pub instance: u64,
    /// The stack's IKE engine this client signs for (kept across client
    /// restarts: the engine stays).
    pub engine: u64,
    params: Params,
    labels: watch::Sender<Vec<Option<String>>>,
    refetch: Arc<Notify>,
    events: mpsc::Sender<NssEvent>,
    watcher: Option<JoinHandle<()>>,
}

impl Drop for StackNss {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        // DISCONNECT (a no-op when shut down already).
        let c = self.client.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move { c.shutdown().await });
        }
    }
}

impl StackNss {
    /// Does the stack sign and verify through NSS?
    pub fn uses_certs(&self) -> bool {
        self.cert_selected
    }

    /// The certificates for the engine's peer configurations.
    pub fn cert_source(&self) -> Option<&CertState> {
        self.cert_selected.then_some(&self.certs)
    }

    /// Tell the watcher which certificate labels the policy needs.
    pub fn set_labels(&self, labels: Vec<Option<String>>) {
        self.labels.send_if_modified(|l| {
            if *l == labels {
                false
            } else {
                *l = labels;
                true
            }
        });
    }
}

/// The labels a policy's signing rules need (`None`: the default
/// certificate).
pub fn labels_of(policy: Option<&IkePolicy>) -> Vec<Option<String>> {
    let mut v: Vec<Option<String>> = Vec::new();
    for r in policy
        .map(|p| p.key_exchange_rules.as_slice())
        .unwrap_or(&[])
    {
        if signs(r) && !v.contains(&r.action.certificate_label) {
            v.push(r.action.certificate_label.clone());
        }
    }
    v
}

fn signs(r: &KeyExchangeRule) -> bool {
    r.auth_me() != AuthMethod::PresharedKey
}

/// Start the NSS client of `stack` (its setup has an NssStackConfig).
fn start(stack: &Stack, ike: &IkeConfig, system_name: &str, w: &Wiring) -> Option<StackNss> {
    let nss = stack.setup.nss.as_ref()?;
    let name = stack.name().to_owned();
    let (params, notes) = Params::new(ike, nss, system_name);
    for n in notes {
        warn!("EZD1156W Stack {name}: {n}");
    }
    let mut cfg =
        match nss_client::config_from_iked(ike, nss, system_name, params.trust_anchors.clone()) {
            Ok(c) => c,
            Err(e) => {
                warn!("EZD1153E Stack {name}: the NSS client cannot start: {e}");
                return None;
            }
        };
    cfg.request_timeout = (cfg.wait_limit * cfg.wait_retries).max(MIN_REQUEST_WAIT);
    // The connection goes over the stack's own network: its socket is made
    // inside the stack's namespace.
    let netns = stack.netns.clone();
    cfg.socket_factory = Some(Arc::new(move |server: std::net::SocketAddr| {
        netns.run(|| {
            if server.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
        })
    }));
    let client_name = cfg.client_name.clone();
    let mgmt_selected = nss.has_service(ServiceType::RemoteMgmt);
    let cert_selected = cfg.services.contains(Services::CERT);
    let mgmt: Option<nss_client::MgmtHandler> = mgmt_selected.then(|| {
        let h = w.nmi.clone();
        let cn = client_name.clone();
        let handler: nss_client::MgmtHandler = Arc::new(move |bytes: Vec<u8>, _requester| {
            let h = h.clone();
            let cn = cn.clone();
            Box::pin(async move {
                gatekey_nmi::server::serve_relayed(&h, &cn, gatekey_nmi::MAX_VERSION, &bytes).await
            })
        });
        handler
    });
    let servers = [&ike.nss, &ike.nss_backup]
        .iter()
        .filter_map(|s| s.as_ref().map(|s| format!("{}:{}", s.host, s.port)))
        .collect::<Vec<_>>()
        .join(" then ");
    let client = match NssClient::start(cfg, mgmt) {
        Ok(c) => c,
        Err(e) => {
            warn!("EZD1153E Stack {name}: the NSS client cannot start: {e}");
            return None;
        }
    };
    info!(
        "EZD1150I Stack {name}: NSS client {client_name} started for user {} ({}), services {}, network security server {servers}",
        nss.user_id.to_ascii_uppercase(),
        match nss.auth_by {
            gatekey_config::iked_conf::AuthBy::Password => "Password",
            gatekey_config::iked_conf::AuthBy::PassTicket => "PassTicket",
        },
        [
            cert_selected.then_some("Cert"),
            mgmt_selected.then_some("RemoteMgmt")
        ]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(",")
    );
    let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (labels, labels_rx) = watch::channel(labels_of(stack.setup.policy.get().map(|p| &**p)));
    let refetch = Arc::new(Notify::new());
    let watcher = cert_selected.then(|| {
        tokio::spawn(watch_certs(
            client.clone(),
            name.clone(),
            instance,
            labels_rx,
            Arc::clone(&refetch),
            w.events.clone(),
        ))
    });
    Some(StackNss {
        client,
        client_name,
        cert_selected,
        mgmt_selected,
        certs: CertState::Pending,
        instance,
        engine: instance,
        params,
        labels,
        refetch,
        events: w.events.clone(),
        watcher,
    })
}

/// Make `stack`'s NSS client match its configuration: start, stop or
/// restart it. Returns true when the client changed.
pub fn reconcile(stack: &mut Stack, ike: &IkeConfig, system_name: &str, w: &Wiring) -> bool {
    let name = stack.name().to_owned();
    let wanted = stack
        .setup
        .nss
        .as_ref()
        .map(|n| Params::new(ike, n, system_name).0);
    match (&stack.nss, wanted) {
        (None, None) => false,
        (Some(_), None) => {
            if let Some(old) = stack.nss.take() {
                info!(
                    "EZD1151I Stack {name}: NSS client {} stopped: its NssStackConfig was removed",
                    old.client_name
                );
            }
            true
        }
        (Some(old), Some(p)) if old.params == p => {
            old.set_labels(labels_of(stack.setup.policy.get().map(|p| &**p)));
            false
        }
        (_, Some(_)) => {
            let kept = stack.nss.take().map(|o| {
                info!(
                    "EZD1151I Stack {name}: NSS client {} stopped: its configuration changed; reconnecting",
                    o.client_name
                );
                (o.certs.clone(), o.engine)
            });
            stack.nss = start(stack, ike, system_name, w);
            if let (Some(n), Some((certs, engine))) = (&mut stack.nss, kept) {
                n.engine = engine;
                // Keep signing with what is known until new certificates
                // arrive (requests wait for the new connection).
                if let CertState::Ready(c) = certs {
                    n.certs = CertState::Ready(c);
                }
            }
            true
        }
    }
}

/// Stop every stack's NSS client: DISCONNECT from the server.
pub async fn shutdown(stacks: &mut BTreeMap<String, Stack>) {
    let mut all = Vec::new();
    for s in stacks.values_mut() {
        if let Some(n) = &s.nss {
            all.push(n.client.clone());
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        for c in all {
            c.shutdown().await;
        }
    })
    .await;
}

/// Fetch certificates whenever a connection is (re)established, when the
/// labels change, when asked, and every [`REFETCH`].
async fn watch_certs(
    client: NssClient,
    stack: String,
    instance: u64,
    mut labels: watch::Receiver<Vec<Option<String>>>,
    refetch: Arc<Notify>,
    events: mpsc::Sender<NssEvent>,
) {
    let mut seen_connects = 0u64;
    let mut next_due = tokio::time::Instant::now();
    let mut force = false;
    loop {
        let st = client.status();
        let due = st.is_connected()
            && (st.connects != seen_connects || force || tokio::time::Instant::now() >= next_due);
        if due {
            seen_connects = st.connects;
            force = false;
            next_due = tokio::time::Instant::now() + REFETCH;
            let wanted = labels.borrow_and_update().clone();
            let result = fetch(&client, &st, &wanted).await;
            if events
                .send(NssEvent::Certificates {
                    stack: stack.clone(),
                    instance,
                    result,
                })
                .await
                .is_err()
            {
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = refetch.notified() => force = true,
            r = labels.changed() => {
                if r.is_err() {
                    return;
                }
                force = true;
            }
        }
    }
}

async fn fetch(
    client: &NssClient,
    st: &nss_client::ClientStatus,
    labels: &[Option<String>],
) -> CertState {
    let sys = st
        .server_system_name
        .clone()
        .unwrap_or_else(|| "<sysname>".into());
    let server = format!(
        "{sys} ({})",
        st.server_addr
            .map_or_else(|| st.server.clone().unwrap_or_default(), |a| a.to_string())
    );
    if st.enabled.is_some_and(|e| !e.contains(Services::CERT)) {
        return CertState::Refused(format!(
            "the network security server {server} did not enable the certificate service for client {}: user {} needs READ access to EZB.NSS.{sys}.{}.IPSEC.CERT (and the server a KeyRing)",
            st.client_name,
            st.user_id,
            st.client_name.to_ascii_uppercase()
        ));
    }
    let cas = match client.get_ca_certificates(None).await {
        Ok(v) => v.into_iter().map(|c| (c.label, c.der)).collect(),
        Err(nss_client::Error::Refused { status, .. }) => {
            return CertState::Refused(format!(
                "the network security server {server} refused the CA certificates of client {}: {status}",
                st.client_name
            ));
        }
        // Not connected any more: try again at the next connection.
        Err(_) => return CertState::Pending,
    };
    let mut chains = BTreeMap::new();
    for l in labels {
        let r = match client.get_certificate(l.as_deref(), None).await {
            Ok(g) => chain_of(g.label, g.chain),
            Err(nss_client::Error::Refused { status, .. }) => Err(format!(
                "the network security server {server} refused {} of client {} (user {}): {status}{}",
                l.as_deref()
                    .map_or_else(|| "the default certificate".to_owned(), |l| format!("certificate {l}")),
                st.client_name,
                st.user_id,
                match l {
                    Some(l) => format!(
                        " (the user needs READ access to EZB.NSSCERT.{sys}.{}.HOST)",
                        map_label(l)
                    ),
                    None => " (the user owns no Personal certificate marked Default on the server's keyring, or lacks READ access to its EZB.NSSCERT.….HOST profile)".into(),
                }
            )),
            Err(_) => return CertState::Pending,
        };
        chains.insert(l.clone(), r);
    }
    CertState::Ready(Arc::new(NssCerts {
        chains,
        cas,
        server,
    }))
}

/// The label mapping of SERVAUTH profile names (uppercase; blank, `*`,
/// `%`, `&` → `$`).
fn map_label(l: &str) -> String {
    l.chars()
        .map(|c| match c {
            ' ' | '*' | '%' | '&' => '$',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

fn chain_of(label: String, chain: Vec<Vec<u8>>) -> Result<CertChain, String> {
    let ee = chain
        .first()
        .ok_or_else(|| format!("the server sent no certificate for {label}"))?;
    let cert = Certificate::from_der(ee)
        .map_err(|e| format!("certificate {label} cannot be parsed: {e}"))?;
    let public = cert.public_key().clone();
    Ok(CertChain {
        key: public.algorithm(),
        subject: cert.subject().to_string(),
        public,
        label,
        chain,
    })
}

/// The engine's authentication settings for a signing KeyExchangeRule of
/// an NSS Cert stack.
pub fn auth_for(certs: &CertState, r: &KeyExchangeRule) -> Result<(LocalAuth, RemoteAuth), String> {
    // Without a usable certificate from the NSS server the rule still
    // negotiates, and fails at its first signature or verification with the
    // server's reason (the peer gets AUTHENTICATION_FAILED).
    let fails_at_signing = || {
        (
            LocalAuth::Signature {
                certs: Vec::new(),
                key: KeyAlgorithm::Rsa { bits: 2048 },
                schemes: Vec::new(),
            },
            RemoteAuth::CallerVerifies,
        )
    };
    let c = match certs {
        CertState::Pending => {
            return Err(format!(
                "{WAITING} (no connection to a network security server yet); it is used once the certificates arrive"
            ));
        }
        CertState::Refused(_) => return Ok(fails_at_signing()),
        CertState::Ready(c) => c,
    };
    let Some(Ok(chain)) = c.chains.get(&r.action.certificate_label) else {
        return Ok(fails_at_signing());
    };
    let mut v = ChainVerifier::new();
    let mut n = 0;
    for (label, der) in &c.cas {
        if r.remote.ca_label.as_ref().is_none_or(|l| l == label) {
            v.add_ca_der(der)
                .map_err(|e| format!("CA certificate {label} from the NSS server: {e}"))?;
            n += 1;
        }
    }
    if n == 0 {
        return Err(match &r.remote.ca_label {
            Some(l) => format!(
                "the NSS server permits no CA certificate labelled {l} (CaLabel) to this client"
            ),
            None => "the NSS server permits no CA certificate to this client to verify the peer with (EZB.NSSCERT.<sys>.<label>.CERTAUTH)".into(),
        });
    }
    Ok((
        LocalAuth::Signature {
            certs: chain.chain.clone(),
            key: chain.key,
            schemes: Vec::new(),
        },
        RemoteAuth::Certificate(Arc::new(v)),
    ))
}

/// The NSS algorithm for an engine scheme and key.
pub fn algorithm(scheme: SignatureScheme, key: KeyAlgorithm) -> Option<SignatureAlgorithm> {
    Some(match (scheme, key) {
        (SignatureScheme::RsaPkcs1Sha256, KeyAlgorithm::Rsa { .. }) => {
            SignatureAlgorithm::RsaPkcs1Sha256
        }
        (SignatureScheme::RsaPkcs1Sha384, KeyAlgorithm::Rsa { .. }) => {
            SignatureAlgorithm::RsaPkcs1Sha384
        }
        (SignatureScheme::RsaPkcs1Sha512, KeyAlgorithm::Rsa { .. }) => {
            SignatureAlgorithm::RsaPkcs1Sha512
        }
        (SignatureScheme::RsaPkcs1Sha1, KeyAlgorithm::Rsa { .. }) => {
            SignatureAlgorithm::RsaPkcs1Sha1
        }
        (SignatureScheme::RsaPssSha256, KeyAlgorithm::Rsa { .. }) => {
            SignatureAlgorithm::RsaPssSha256
        }
        (SignatureScheme::RsaPssSha384, KeyAlgorithm::Rsa { .. }) => {
            SignatureAlgorithm::RsaPssSha384
        }
        (SignatureScheme::RsaPssSha512, KeyAlgorithm::Rsa { .. }) => {
            SignatureAlgorithm::RsaPssSha512
        }
        (SignatureScheme::EcdsaSha256, KeyAlgorithm::EcdsaP256) => {
            SignatureAlgorithm::EcdsaP256Sha256
        }
        (SignatureScheme::EcdsaSha384, KeyAlgorithm::EcdsaP384) => {
            SignatureAlgorithm::EcdsaP384Sha384
        }
        // IKEv1 RSA signatures: PKCS#1 v1.5 over HASH_I/HASH_R, no DigestInfo.
        (SignatureScheme::RsaPkcs1Raw, KeyAlgorithm::Rsa { .. }) => SignatureAlgorithm::RsaPkcs1Raw,
        _ => return None,
    })
}

/// What the NSS server is asked to sign: IKEv1's HASH_I/HASH_R as it is (a
/// digest, `RsaPkcs1Raw`), anything else as data the server hashes.
fn sign_input(scheme: SignatureScheme, octets: &[u8]) -> SignInput {
    if scheme == SignatureScheme::RsaPkcs1Raw {
        SignInput::Digest(octets.to_vec())
    } else {
        SignInput::Data(octets.to_vec())
    }
}

/// Hand the engine's NSS requests to the server (answers come back as
/// [`NssEvent`]s); requests that cannot be sent are answered at once. Runs
/// until the engine has nothing more for NSS.
pub fn serve_engine(
    drv: &mut IkeDriver,
    nss: Option<&StackNss>,
    policy: Option<&IkePolicy>,
    now: std::time::Instant,
    stack: &str,
    rule_reqid: &dyn Fn(&str) -> Option<u32>,
) {
    loop {
        let pending = std::mem::take(&mut drv.remote);
        if pending.is_empty() {
            return;
        }
        for p in pending {
            match p {
                Pending::Verify { id } => {
                    let why = match nss.map(|n| &n.certs) {
                        Some(CertState::Refused(r)) => r.clone(),
                        _ => "the NSS certificate service gave no certificate for this KeyExchangeRule".into(),
                    };
                    warn!("EZD1155E Stack {stack}: a peer cannot be verified: {why}");
                    drv.endpoint.handle_verification(now, id, Err(why));
                }
                Pending::Sign {
                    id,
                    peer,
                    scheme,
                    octets,
                } => {
                    if let Err(e) = sign(nss, policy, stack, id, &peer, scheme, octets) {
                        warn!(
                            "EZD0934E Stack {stack}: signing for KeyExchangeRule {peer} failed: {e}"
                        );
                        drv.endpoint.handle_signature(now, id, Err(e));
                    }
                }
            }
        }
        drv.pump(now, stack, rule_reqid);
    }
}

/// Send one SIGN; Err = answer the engine now.
fn sign(
    nss: Option<&StackNss>,
    policy: Option<&IkePolicy>,
    stack: &str,
    id: RequestId,
    peer: &str,
    scheme: SignatureScheme,
    octets: Vec<u8>,
) -> Result<(), String> {
    let n = nss.ok_or("the stack is no NSS client")?;
    let certs = match &n.certs {
        CertState::Ready(c) => c,
        CertState::Refused(r) => return Err(r.clone()),
        CertState::Pending => return Err("no certificate from the NSS server yet".into()),
    };
    let label = policy
        .and_then(|p| p.key_exchange_rules.iter().find(|k| k.name == peer))
        .and_then(|k| k.action.certificate_label.clone());
    let chain = match certs.chains.get(&label) {
        Some(Ok(c)) => c.clone(),
        Some(Err(e)) => return Err(e.clone()),
        None => {
            n.refetch.notify_one();
            return Err(format!(
                "certificate {} was not fetched from the NSS server yet",
                label.as_deref().unwrap_or("(default)")
            ));
        }
    };
    let alg = algorithm(scheme, chain.key).ok_or_else(|| {
        format!(
            "the NSS server cannot sign {scheme:?} with the {:?} key of certificate {}",
            chain.key, chain.label
        )
    })?;
    let client = n.client.clone();
    let events = n.events.clone();
    let refetch = Arc::clone(&n.refetch);
    let engine = n.engine;
    let stack = stack.to_owned();
    let peer = peer.to_owned();
    let input = sign_input(scheme, &octets);
    tokio::spawn(async move {
        let result = match client
            .sign(Some(chain.label.as_str()), alg, input, None)
            .await
        {
            Ok(s) => match chain.public.verify(scheme, &octets, &s.signature) {
                Ok(()) => Ok(s.signature),
                Err(_) => {
                    refetch.notify_one();
                    Err(format!(
                        "the NSS server signed with a key that does not match certificate {} ({}): it was replaced on the server; fetching it again",
                        chain.label, chain.subject
                    ))
                }
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &result {
            warn!("EZD0934E Stack {stack}: signing for KeyExchangeRule {peer} failed: {e}");
        }
        let _ = events
            .send(NssEvent::Signed {
                stack,
                engine,
                id,
                result,
            })
            .await;
    });
    Ok(())
}

/// A stack's NSS client record for `ipsec -w` (GET_IKENSINFO).
pub fn nsinfo_record(s: &Stack, sys: &str) -> IkeNsInfoRecord {
    match &s.nss {
        Some(n) => n.client.status().to_record(),
        None => {
            let nss = s.setup.nss.as_ref();
            IkeNsInfoRecord {
                stack_name: s.name().to_owned(),
                client_name: nss.map(|n| n.client_name(sys)),
                client_api_version: None,
                server_api_version: None,
                ns_services_supported: nss.is_some(),
                remote_management_selected: nss
                    .is_some_and(|n| n.has_service(ServiceType::RemoteMgmt)),
                remote_management_enabled: None,
                certificate_services_selected: nss
                    .is_some_and(|n| n.has_service(ServiceType::Cert)),
                certificate_services_enabled: None,
                ns_client_ip_address: None,
                ns_client_port: None,
                ns_server_ip_address: None,
                ns_server_port: None,
                ns_server_system_name: None,
                ns_server_role: None,
                user_id: nss.map(|n| n.user_id.to_ascii_uppercase()),
                connection_state: nss.map(|_| NssConnectionState::Disconnected),
                time_connected_to_ns_server: None,
                time_of_last_message_to_ns_server: None,
            }
        }
    }
}

/// The stack a relayed NMI request is for: the one whose NSS client
/// `client_name` carried it, if it selected RemoteMgmt.
pub fn relayed_stack(
    stacks: &BTreeMap<String, Stack>,
    client_name: &str,
) -> Result<String, gatekey_nmi::Failure> {
    stacks
        .values()
        .find(|s| {
            s.nss
                .as_ref()
                .is_some_and(|n| n.mgmt_selected && n.client_name.eq_ignore_ascii_case(client_name))
        })
        .map(|s| s.name().to_owned())
        .ok_or_else(|| {
            gatekey_nmi::Failure::not_served(format!(
                "no stack of this iked is NSS client {client_name} with ServiceType RemoteMgmt"
            ))
        })
}

/// Log what a certificate state means for the stack (when it changes).
pub fn log_certs(stack: &str, client: &str, old: &CertState, new: &CertState) {
    if old == new {
        return;
    }
    match new {
        CertState::Ready(c) => {
            let certs: Vec<String> = c
                .chains
                .iter()
                .map(|(l, r)| match r {
                    Ok(ch) => format!("{} ({})", ch.label, ch.subject),
                    Err(_) => format!(
                        "{} (refused)",
                        l.as_deref().unwrap_or("default certificate")
                    ),
                })
                .collect();
            info!(
                "EZD1136I Stack {stack}: NSS client {client} uses the certificate service of network security server {}: certificates [{}], {} CA certificate{}",
                c.server,
                certs.join(", "),
                c.cas.len(),
                if c.cas.len() == 1 { "" } else { "s" }
            );
            for (l, r) in &c.chains {
                if let Err(e) = r {
                    warn!(
                        "EZD1153E Stack {stack}: KeyExchangeRules using {} cannot authenticate: {e}",
                        l.as_deref().unwrap_or("the default certificate")
                    );
                }
            }
        }
        CertState::Refused(r) => {
            warn!("EZD1153E Stack {stack}: IKE signatures cannot be made: {r}");
        }
        CertState::Pending => {}
    }
}

impl crate::daemon::Daemon {
    /// Start, stop or restart every stack's NSS client to match the
    /// configuration (start and refresh); stacks whose client changed get
    /// their IKE peers rebuilt.
    pub async fn reconcile_nss(&mut self) {
        let Some(w) = self.nss_wiring.clone() else {
            return;
        };
        let ike = self.loaded.iked.ike.clone();
        let sys = self.loaded.iked.system_name();
        for s in self.stacks.values_mut() {
            if reconcile(s, &ike, &sys, &w) {
                s.configure_ike(&ike);
                crate::daemon::auto_activate(s).await;
            }
        }
    }

    /// An answer from a stack's NSS client.
    pub async fn on_nss_event(&mut self, ev: NssEvent) {
        let now = std::time::Instant::now();
        match ev {
            NssEvent::Signed {
                stack,
                engine,
                id,
                result,
            } => {
                let Some(s) = self.stacks.get_mut(&stack) else {
                    return;
                };
                if s.nss.as_ref().map(|n| n.engine) != Some(engine) {
                    return;
                }
                if let Some(d) = &mut s.ike {
                    d.endpoint.handle_signature(now, id, result);
                }
                s.ike_pump(now).await;
            }
            NssEvent::Certificates {
                stack,
                instance,
                result,
            } => {
                let ike = self.loaded.iked.ike.clone();
                let Some(s) = self.stacks.get_mut(&stack) else {
                    return;
                };
                let Some(n) = &mut s.nss else { return };
                if n.instance != instance || result == CertState::Pending {
                    return;
                }
                let old = std::mem::replace(&mut n.certs, result);
                log_certs(&stack, &n.client_name, &old, &n.certs);
                if old != n.certs {
                    s.configure_ike(&ike);
                    crate::daemon::auto_activate(s).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_map_to_nss_algorithms_for_the_key() {
        let rsa = KeyAlgorithm::Rsa { bits: 2048 };
        assert_eq!(
            algorithm(SignatureScheme::RsaPkcs1Sha256, rsa),
            Some(SignatureAlgorithm::RsaPkcs1Sha256)
        );
        assert_eq!(
            algorithm(SignatureScheme::RsaPssSha384, rsa),
            Some(SignatureAlgorithm::RsaPssSha384)
        );
        assert_eq!(
            algorithm(SignatureScheme::EcdsaSha256, KeyAlgorithm::EcdsaP256),
            Some(SignatureAlgorithm::EcdsaP256Sha256)
        );
        // The server signs ECDSA only with the curve's own hash.
        assert_eq!(
            algorithm(SignatureScheme::EcdsaSha384, KeyAlgorithm::EcdsaP256),
            None
        );
        assert_eq!(algorithm(SignatureScheme::EcdsaSha256, rsa), None);
        assert_eq!(
            algorithm(SignatureScheme::Ed25519, KeyAlgorithm::Ed25519),
            None
        );
        // IKEv1 RSA signatures: the raw digest, which the server accepts as such.
        let raw = algorithm(SignatureScheme::RsaPkcs1Raw, rsa);
        assert_eq!(raw, Some(SignatureAlgorithm::RsaPkcs1Raw));
        let digest = [7u8; 32];
        let input = sign_input(SignatureScheme::RsaPkcs1Raw, &digest);
        assert!(matches!(input, SignInput::Digest(ref d) if d == &digest));
        assert!(SignatureAlgorithm::RsaPkcs1Raw.accepts(&input));
        assert!(SignatureAlgorithm::RsaPkcs1Sha256.accepts(&sign_input(
            SignatureScheme::RsaPkcs1Sha256,
            b"signed octets"
        )));
        assert_eq!(
            algorithm(SignatureScheme::RsaPkcs1Raw, KeyAlgorithm::EcdsaP256),
            None
        );
    }

    #[test]
    fn labels_map_like_servauth_profiles() {
        assert_eq!(map_label("Certificate 123"), "CERTIFICATE$123");
        assert_eq!(map_label("a*b%c&d"), "A$B$C$D");
    }

    #[test]
    fn labels_come_from_signing_rules_only() {
        let p = gatekey_config::ike_policy::parse(
            "t.pol",
            "KeyExchangeRule a { KeyExchangeAction { HowToAuthMe RsaSignature CertificateLabel GW1 } }\n\
             KeyExchangeRule b { KeyExchangeAction { HowToAuthMe RsaSignature } }\n\
             KeyExchangeRule c { SharedKey Ascii k KeyExchangeAction { } }\n\
             KeyExchangeRule d { KeyExchangeAction { CertificateLabel GW1 } }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(labels_of(Some(&p)), vec![Some("GW1".to_owned()), None]);
        assert!(labels_of(None).is_empty());
    }

    #[test]
    fn pending_certificates_leave_signing_rules_unusable_and_refusals_fail_them() {
        let p = gatekey_config::ike_policy::parse(
            "t.pol",
            "KeyExchangeRule a { KeyExchangeAction { HowToAuthMe RsaSignature } }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let r = p
            .key_exchange_rules
            .first()
            .unwrap_or_else(|| panic!("one rule"));
        let e = auth_for(&CertState::Pending, r).err().unwrap_or_default();
        assert!(e.starts_with(WAITING), "{e}");
        let (l, rem) =
            auth_for(&CertState::Refused("no".into()), r).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(l, LocalAuth::Signature { ref certs, .. } if certs.is_empty()));
        assert!(matches!(rem, RemoteAuth::CallerVerifies));
    }
}
