//! What the engine hands its driver: datagrams, events, statistics.

use std::net::SocketAddr;

use crate::crypto::Secret;
use crate::crypto::encr::EncrAlg;
use crate::crypto::integ::IntegAlg;
use crate::crypto::sig::SignatureScheme;
use crate::identity::Identity;
use crate::ikev2::config::{Lifetimes, Mode};
use crate::wire::TrafficSelector;

/// Handle of an IKE SA inside one endpoint (stable across IKE SA rekeying: the rekeyed SA
/// gets a new handle and [`Event::IkeSaRekeyed`] links them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSaId(pub u64);

/// Handle of a child SA (unique within the endpoint, kept when its IKE SA is rekeyed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildId(pub u64);

/// Correlates a signature or verification request with its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Source address (the local socket: port 500 or 4500).
    pub local: SocketAddr,
    /// Destination.
    pub remote: SocketAddr,
    /// UDP payload, already with the 4-byte non-ESP marker when either port is the NAT-T port.
    pub data: Vec<u8>,
}

/// UDP encapsulation for ESP (RFC 3948), when a NAT was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpEncap {
    /// Local port.
    pub local_port: u16,
    /// Remote port.
    pub remote_port: u16,
}

/// One direction of a child SA.
#[derive(Clone, Debug)]
pub struct SaKeys {
    /// SPI (network order value).
    pub spi: u32,
    /// Encryption key (AEADs: key || 4-byte salt).
    pub encr_key: Secret,
    /// Integrity key (empty with AEADs).
    pub integ_key: Secret,
}

/// Everything the kernel needs for a child SA pair (XFRM states and policies).
#[derive(Clone, Debug)]
pub struct InstallChildSa {
    /// The IKE SA it belongs to.
    pub ike_sa: IkeSaId,
    /// The child's handle.
    pub child: ChildId,
    /// Policy name.
    pub name: String,
    /// Whether this end initiated the exchange that created it.
    pub initiator: bool,
    /// Local tunnel endpoint.
    pub local: SocketAddr,
    /// Remote tunnel endpoint.
    pub remote: SocketAddr,
    /// Mode.
    pub mode: Mode,
    /// UDP encapsulation ports when NAT was detected.
    pub encap: Option<UdpEncap>,
    /// ESP encryption.
    pub encr: EncrAlg,
    /// ESP integrity (None with AEADs).
    pub integ: Option<IntegAlg>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// Inbound SA (SPI we chose).
    pub inbound: SaKeys,
    /// Outbound SA (SPI the peer chose).
    pub outbound: SaKeys,
    /// Local traffic selectors (narrowed).
    pub local_ts: Vec<TrafficSelector>,
    /// Remote traffic selectors (narrowed).
    pub remote_ts: Vec<TrafficSelector>,
    /// Kernel lifetimes.
    pub lifetimes: Lifetimes,
    /// The child this one replaces (rekey): install this one first, then delete that one.
    pub replaces: Option<ChildId>,
}

/// Why an IKE SA went away.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer deleted it.
    PeerDeleted,
    /// We deleted it (local request).
    LocalDeleted,
    /// Retransmissions were exhausted.
    Timeout,
    /// Authentication failed (which side, and why).
    AuthFailed(String),
    /// No acceptable proposal or selectors.
    NegotiationFailed(String),
    /// Replaced by a rekeyed IKE SA.
    Rekeyed,
    /// Replaced by a reauthenticated IKE SA (RFC 7296 §2.8.3) that took over its children.
    Reauthenticated,
    /// The peer authenticated a new IKE SA with INITIAL_CONTACT: it lost this one's state.
    InitialContact,
    /// A protocol error.
    Protocol(String),
}

/// Events for the driver, in order.
#[non_exhaustive]
#[derive(Debug)]
pub enum Event {
    /// Sign `octets` with the key the policy names; answer with
    /// [`crate::ikev2::Endpoint::handle_signature`]. ECDSA signatures are DER.
    SignRequest {
        /// Correlator.
        id: RequestId,
        /// IKE SA.
        ike_sa: IkeSaId,
        /// Policy name.
        peer: String,
        /// Scheme to use.
        scheme: SignatureScheme,
        /// The octets to sign (RFC 7296 §2.15).
        octets: Vec<u8>,
    },
    /// Validate the peer's certificates for `peer_id` and its signature over `octets`;
    /// answer with [`crate::ikev2::Endpoint::handle_verification`].
    VerifyRequest {
        /// Correlator.
        id: RequestId,
        /// IKE SA.
        ike_sa: IkeSaId,
        /// The identity the peer claims.
        peer_id: Identity,
        /// CERT payloads (X.509, DER), end entity first.
        certs: Vec<Vec<u8>>,
        /// Scheme.
        scheme: SignatureScheme,
        /// Signed octets.
        octets: Vec<u8>,
        /// Signature (ECDSA: DER).
        signature: Vec<u8>,
    },
    /// An IKE SA is established (authenticated both ways).
    IkeSaUp {
        /// Handle.
        ike_sa: IkeSaId,
        /// Policy name.
        peer: String,
        /// Whether we initiated.
        initiator: bool,
        /// Authenticated peer identity.
        peer_id: Identity,
        /// SPIs (initiator, responder).
        spis: (u64, u64),
        /// Local address.
        local: SocketAddr,
        /// Remote address.
        remote: SocketAddr,
        /// A NAT is in front of us.
        local_nat: bool,
        /// A NAT is in front of the peer.
        remote_nat: bool,
    },
    /// An IKE SA was replaced by a rekeyed one; its children moved to `new`.
    IkeSaRekeyed {
        /// Old handle.
        old: IkeSaId,
        /// New handle.
        new: IkeSaId,
    },
    /// Reauthentication of `old` started: `new` is a fresh IKE SA (IKE_SA_INIT + IKE_AUTH)
    /// to the same peer that re-creates `old`'s children; `old` stays until it is done.
    IkeSaReauthStarted {
        /// The SA being reauthenticated.
        old: IkeSaId,
        /// The new SA (not yet up).
        new: IkeSaId,
    },
    /// `new` is up with `old`'s children re-created under it; `old` is being deleted.
    IkeSaReauthenticated {
        /// The replaced SA.
        old: IkeSaId,
        /// The SA that replaces it.
        new: IkeSaId,
        /// Children re-created under `new`.
        children: usize,
    },
    /// Reauthentication of `old` failed (`new` is gone); `old` and its children stay and the
    /// engine tries again after `retry_in`.
    IkeSaReauthFailed {
        /// The SA that stays.
        old: IkeSaId,
        /// The SA that failed.
        new: IkeSaId,
        /// Why.
        reason: CloseReason,
        /// When the next attempt starts.
        retry_in: std::time::Duration,
    },
    /// An IKE SA is gone (its children were deleted with [`Event::DeleteChildSa`] first).
    IkeSaDown {
        /// Handle.
        ike_sa: IkeSaId,
        /// Why.
        reason: CloseReason,
    },
    /// Install a child SA pair.
    InstallChildSa(Box<InstallChildSa>),
    /// Remove a child SA pair.
    DeleteChildSa {
        /// IKE SA.
        ike_sa: IkeSaId,
        /// Child.
        child: ChildId,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
    },
    /// A child SA could not be created (the IKE SA stays).
    ChildSaFailed {
        /// IKE SA.
        ike_sa: IkeSaId,
        /// Policy name.
        name: String,
        /// Why.
        reason: String,
    },
    /// NAT detected after IKE_SA_INIT: start keepalives when `local_nat`.
    NatDetected {
        /// IKE SA.
        ike_sa: IkeSaId,
        /// A NAT is in front of us.
        local_nat: bool,
        /// A NAT is in front of the peer.
        remote_nat: bool,
    },
}

/// Counters for NMI's GET_SUMMARY (z/OS NMsecStatistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Established IKE SAs.
    pub p1_active: u32,
    /// IKE SAs being negotiated.
    pub p1_in_progress: u32,
    /// IKE SAs replaced by a rekey and not yet deleted (their children already moved).
    pub p1_expired: u32,
    /// IKE SAs we initiated that came up.
    pub p1_local_act_success: u64,
    /// IKE SAs the peer initiated that came up.
    pub p1_remote_act_success: u64,
    /// IKE SAs we initiated that failed.
    pub p1_local_act_failure: u64,
    /// IKE SAs the peer initiated that failed.
    pub p1_remote_act_failure: u64,
    /// IKE-SA-level (IKE_SA_INIT/IKE_AUTH/IKE rekey/INFORMATIONAL) retransmissions.
    pub p1_retransmit: u64,
    /// Installed child SA pairs.
    pub p2_active: u32,
    /// Child SAs being negotiated.
    pub p2_in_progress: u32,
    /// Child SAs we initiated that came up.
    pub p2_local_act_success: u64,
    /// Child SAs the peer initiated that came up.
    pub p2_remote_act_success: u64,
    /// Child SAs we initiated that failed.
    pub p2_local_act_failure: u64,
    /// Child SAs the peer initiated that failed.
    pub p2_remote_act_failure: u64,
    /// CREATE_CHILD_SA retransmissions.
    pub p2_retransmit: u64,
    /// Datagrams dropped as malformed, unauthentic or unexpected.
    pub invalid_packets: u64,
    /// Duplicate requests answered from the response cache.
    pub duplicate_requests: u64,
    /// IKE_SA_INIT requests answered with a COOKIE.
    pub cookies_sent: u64,
}
