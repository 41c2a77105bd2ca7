//! Configuration the driver gives the IKEv2 engine: endpoint-wide limits and per-peer policy.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::Secret;
use crate::crypto::cert::ChainVerifier;
use crate::crypto::dh;
use crate::crypto::encr::EncrAlg;
use crate::crypto::integ::IntegAlg;
use crate::crypto::keys::IkeSuite;
use crate::crypto::prf::PrfAlg;
use crate::crypto::sig::{KeyAlgorithm, SignatureScheme};
use crate::identity::Identity;
use crate::wire::{DhGroup, TrafficSelector};

/// Endpoint-wide settings (one endpoint serves one stack).
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// IkeRetries: retransmissions of a request before the IKE SA is given up (z/OS default 6).
    pub retries: u32,
    /// IkeInitWait: wait before the first retransmission; doubles each time (default 2 s).
    pub init_wait: Duration,
    /// Half-open responder SAs (IKE_SA_INIT answered, IKE_AUTH not yet) at which COOKIEs
    /// are demanded.
    pub cookie_threshold: usize,
    /// Half-open responder SAs beyond which new IKE_SA_INIT requests are dropped.
    pub half_open_limit: usize,
    /// Half-open responder SAs allowed per peer IP address.
    pub half_open_per_peer: usize,
    /// Total IKE SAs (all states) beyond which new IKE_SA_INIT requests are refused.
    pub max_ike_sas: usize,
    /// Child SAs one IKE SA may hold; a peer asking for more gets NO_ADDITIONAL_SAS.
    pub max_children_per_ike_sa: usize,
    /// Half-open SAs are removed after this long.
    pub half_open_timeout: Duration,
    /// NAT keepalive interval when this end is behind a NAT (RFC 3948 §4).
    pub nat_keepalive: Duration,
    /// The NAT-T port (4500): datagrams on it carry the non-ESP marker.
    pub nat_t_port: u16,
    /// Vendor ID payload content, if any.
    pub vendor_id: Option<Vec<u8>>,
    /// Announce and use IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
    /// Largest IKE message (UDP payload without the non-ESP marker) sent unfragmented when
    /// the peer supports fragmentation; fragments are at most this long.
    pub fragment_size: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            retries: 6,
            init_wait: Duration::from_secs(2),
            cookie_threshold: 64,
            half_open_limit: 1024,
            half_open_per_peer: 32,
            max_ike_sas: 16384,
            max_children_per_ike_sa: 64,
            half_open_timeout: Duration::from_secs(30),
            nat_keepalive: Duration::from_secs(20),
            nat_t_port: 4500,
            vendor_id: None,
            fragmentation: true,
            fragment_size: 1228,
        }
    }
}

/// An IKE SA proposal (one transform of each type; several proposals make an offer).
pub type IkeProposal = IkeSuite;

impl IkeSuite {
    /// PSK/Curve25519/AES-GCM-256/SHA-256 — the default and the benchmark suite.
    pub const DEFAULT: Self = Self {
        encr: EncrAlg::AesGcm16 { key_bits: 256 },
        integ: None,
        prf: PrfAlg::HmacSha256,
        dh: DhGroup::CURVE25519,
    };

    /// Whether the suite uses a legacy algorithm (3DES, SHA-1, MD5, MODP 1024/1536).
    pub fn is_legacy(&self) -> bool {
        self.encr.is_legacy()
            || self.prf.is_legacy()
            || self.integ.is_some_and(IntegAlg::is_legacy)
            || dh::is_legacy(self.dh)
    }
}

/// The default IKE offer: AES-GCM-256 and AES-CBC-256/HMAC-SHA2-256 with groups 31, 19, 20, 14.
pub fn default_ike_proposals() -> Vec<IkeProposal> {
    let mut v = Vec::new();
    for dh in [
        DhGroup::CURVE25519,
        DhGroup::ECP_256,
        DhGroup::ECP_384,
        DhGroup::MODP_2048,
    ] {
        v.push(IkeSuite {
            dh,
            ..IkeSuite::DEFAULT
        });
    }
    v.push(IkeSuite {
        encr: EncrAlg::AesCbc { key_bits: 256 },
        integ: Some(IntegAlg::HmacSha256_128),
        prf: PrfAlg::HmacSha256,
        dh: DhGroup::MODP_2048,
    });
    v
}

/// A child SA (ESP) proposal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChildProposal {
    /// Encryption.
    pub encr: EncrAlg,
    /// Integrity (None with AEADs).
    pub integ: Option<IntegAlg>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// PFS group for CREATE_CHILD_SA (None: no PFS). Not used in IKE_AUTH.
    pub pfs: Option<DhGroup>,
}

impl ChildProposal {
    /// AES-GCM-256 without PFS.
    pub const DEFAULT: Self = Self {
        encr: EncrAlg::AesGcm16 { key_bits: 256 },
        integ: None,
        esn: false,
        pfs: None,
    };

    /// Keying material length for both directions.
    pub fn keymat_len(&self) -> usize {
        2 * (self.encr.key_len() + self.integ.map_or(0, IntegAlg::key_len))
    }
}

/// Tunnel or transport mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Tunnel mode.
    Tunnel,
    /// Transport mode (USE_TRANSPORT_MODE).
    Transport,
}

/// SA lifetimes handed to the kernel (soft triggers a rekey by the driver).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lifetimes {
    /// Soft lifetime in seconds.
    pub soft_secs: u64,
    /// Hard lifetime in seconds.
    pub hard_secs: u64,
    /// Soft byte limit (0 = none).
    pub soft_bytes: u64,
    /// Hard byte limit (0 = none).
    pub hard_bytes: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            soft_secs: 3240,
            hard_secs: 3600,
            soft_bytes: 0,
            hard_bytes: 0,
        }
    }
}

/// A child SA policy.
#[derive(Debug, Clone)]
pub struct ChildConfig {
    /// Name (for logs and events).
    pub name: String,
    /// Local traffic selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP proposals in preference order.
    pub proposals: Vec<ChildProposal>,
    /// Mode.
    pub mode: Mode,
    /// Lifetimes for the kernel.
    pub lifetimes: Lifetimes,
}

impl ChildConfig {
    /// A tunnel between two selector sets with the default proposal.
    pub fn tunnel(
        name: &str,
        local_ts: Vec<TrafficSelector>,
        remote_ts: Vec<TrafficSelector>,
    ) -> Self {
        Self {
            name: name.to_string(),
            local_ts,
            remote_ts,
            proposals: vec![ChildProposal::DEFAULT],
            mode: Mode::Tunnel,
            lifetimes: Lifetimes::default(),
        }
    }
}

/// How this end proves its identity.
#[derive(Debug, Clone)]
pub enum LocalAuth {
    /// Pre-shared key.
    Psk(Secret),
    /// A signature made by the caller (local key or NSS) on request.
    Signature {
        /// The certificate chain to send (end entity first), DER; may be empty for raw keys.
        certs: Vec<Vec<u8>>,
        /// The key's algorithm (chooses auth method and scheme).
        key: KeyAlgorithm,
        /// Preferred schemes (first usable one wins); empty = a sensible default.
        schemes: Vec<SignatureScheme>,
    },
}

/// How the peer's AUTH payload is checked.
#[derive(Debug, Clone)]
pub enum RemoteAuth {
    /// Pre-shared key.
    Psk(Secret),
    /// Certificate chain validated in the engine to these CAs (with CRLs).
    Certificate(Arc<ChainVerifier>),
    /// The caller validates certificates and signatures (a `VerifyRequest` event).
    CallerVerifies,
}

/// Policy for one peer (an IKE "connection").
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Name (KeyExchangeRule name in iked).
    pub name: String,
    /// Peer addresses this policy applies to when responding (empty: any).
    pub remote_addrs: Vec<IpAddr>,
    /// Our identity.
    pub local_id: Identity,
    /// The identity the peer must present (patterns allowed); None: any authenticated one.
    pub remote_id: Option<Identity>,
    /// Our authentication.
    pub local_auth: LocalAuth,
    /// The peer's authentication.
    pub remote_auth: RemoteAuth,
    /// IKE proposals in preference order.
    pub ike_proposals: Vec<IkeProposal>,
    /// Accept legacy algorithms (3DES, SHA-1, MD5, MODP 1024/1536) from a peer.
    pub allow_legacy: bool,
    /// Child SA policies; the first is negotiated in IKE_AUTH when we initiate.
    pub children: Vec<ChildConfig>,
    /// IKE SA lifetime; the engine rekeys the IKE SA at `ike_lifetime - rekey_margin`.
    pub ike_lifetime: Duration,
    /// Margin before the IKE lifetime at which to rekey.
    pub rekey_margin: Duration,
    /// Liveness check (DPD) interval when idle; None disables it.
    pub dpd_interval: Option<Duration>,
    /// Send INITIAL_CONTACT in IKE_AUTH.
    pub initial_contact: bool,
    /// Reauthenticate (RFC 7296 §2.8.3, make-before-break) this long after the IKE SA was
    /// authenticated: a new IKE SA (IKE_SA_INIT + IKE_AUTH, without INITIAL_CONTACT) takes
    /// over the children, then the old one is deleted. None: never (IKE rekeys keep the
    /// original authentication).
    pub reauth_interval: Option<Duration>,
    /// Announce SIGNATURE_HASH_ALGORITHMS (RFC 7427) so the peer signs with method 14;
    /// when false the peer uses the classic methods (1, 9, 10).
    pub rfc7427: bool,
}

impl PeerConfig {
    /// A PSK policy with default proposals and one child.
    pub fn psk(
        name: &str,
        local_id: Identity,
        remote_id: Identity,
        psk: Secret,
        child: ChildConfig,
    ) -> Self {
        Self {
            name: name.to_string(),
            remote_addrs: Vec::new(),
            local_id,
            remote_id: Some(remote_id),
            local_auth: LocalAuth::Psk(psk.clone()),
            remote_auth: RemoteAuth::Psk(psk),
            ike_proposals: default_ike_proposals(),
            allow_legacy: false,
            children: vec![child],
            ike_lifetime: Duration::from_secs(4 * 3600),
            rekey_margin: Duration::from_secs(540),
            dpd_interval: None,
            initial_contact: true,
            reauth_interval: None,
            rfc7427: true,
        }
    }
}
