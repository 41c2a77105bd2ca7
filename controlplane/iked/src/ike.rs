//! The IKEv2 driver of one stack: the policy file turned into the engine's
//! configuration, the engine's outputs turned into datagrams, kernel SAs and
//! log messages, and the tunnel bookkeeping the NMI reports (K<n>/Y<n>
//! tunnel IDs with generations).
//!
//! - One [`ike_proto::ikev2::PeerConfig`] per KeyExchangeRule (name = the
//!   rule's name). Its children are the LocalDynVpnRules whose
//!   RemoteSecurityEndpoint lies in the rule's remote Location, in file
//!   order; the child's name is the LocalDynVpnRule's name.
//! - Child SAs carry the request ID of their LocalDynVpnRule's fail-closed
//!   policies, so the kernel uses them for that traffic as soon as they are
//!   installed. A rekeyed child is installed before the old one is deleted
//!   (make-before-break): the kernel prefers the newest SA, so no packet is
//!   lost; the old SA is removed when the engine says so.
//! - Deleting a child SA never removes the fail-closed policies.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatekey_config::ike_policy::{
    self as pol, AddrSpec, AuthMethod, EspAuth, EspEncrypt, HowToInitiate, IdType, IkeEncrypt,
    IkeIntegrity, IkePolicy, Initiation, KeyExchangeRule, LocalDynVpnRule, PortRange, Prf,
    Protocol,
};
use gatekey_keyring::Keyring;
use gatekey_nmi::records as rec;
use ike_proto::crypto::Secret as IkeSecret;
use ike_proto::crypto::cert::ChainVerifier;
use ike_proto::crypto::encr::EncrAlg;
use ike_proto::crypto::integ::IntegAlg;
use ike_proto::crypto::keys::IkeSuite;
use ike_proto::crypto::prf::PrfAlg;
use ike_proto::crypto::sig::Signer as _;
use ike_proto::identity::Identity;
use ike_proto::ikev2::{
    ChildConfig, ChildId, ChildProposal, CloseReason, EndpointConfig, Event, IkeSaId,
    InstallChildSa, Lifetimes, LocalAuth, Mode, PeerConfig, RemoteAuth,
};
use ike_proto::wire::{DhGroup, TrafficSelector};
use tracing::{info, warn};

/// How a dynamic tunnel was started (NMI ActivationMethod).
pub use rec::Activation;

/// One IKE tunnel (K<n>): an IKE SA and its rekeyed successors.
#[derive(Debug, Clone)]
pub struct IkeTunnel {
    /// The n of K<n>.
    pub k: u32,
    /// 1 for the first SA, +1 per rekey.
    pub generation: u32,
    /// KeyExchangeRule name.
    pub rule: String,
    /// Whether we initiated it.
    pub initiator: bool,
    /// Established.
    pub up: bool,
    /// When it was created (unix seconds).
    pub created: u64,
    /// Authenticated peer identity.
    pub peer_id: Option<String>,
    /// IKE SPIs.
    pub spis: (u64, u64),
    /// Addresses.
    pub local: Option<SocketAddr>,
    /// Peer address.
    pub remote: Option<SocketAddr>,
    /// NAT in front of us / the peer.
    pub nat: (bool, bool),
    /// The address we started it to (initiator, before it is up): other
    /// rules to the same peer join it instead of starting another IKE SA.
    pub target: Option<IpAddr>,
}

/// One installed child SA pair.
#[derive(Debug, Clone)]
pub struct ChildTunnel {
    /// The n of Y<n>.
    pub y: u32,
    /// 1 for the first SA of the tunnel, +1 per rekey.
    pub generation: u32,
    /// LocalDynVpnRule name.
    pub rule: String,
    /// The IKE SA it belongs to.
    pub ike_sa: IkeSaId,
    /// Request ID of its kernel SAs.
    pub reqid: u32,
    /// How it was activated.
    pub activation: Activation,
    /// What was installed (keys dropped).
    pub spi_in: u32,
    /// Outbound SPI.
    pub spi_out: u32,
    /// Tunnel endpoints.
    pub local: SocketAddr,
    /// Remote tunnel endpoint.
    pub remote: SocketAddr,
    /// Tunnel or transport.
    pub mode: Mode,
    /// ESP cipher.
    pub encr: EncrAlg,
    /// ESP integrity.
    pub integ: Option<IntegAlg>,
    /// UDP encapsulation ports.
    pub encap: Option<(u16, u16)>,
    /// Whether we initiated.
    pub initiator: bool,
    /// Installed at (unix seconds).
    pub created: u64,
    /// Kernel lifetimes (seconds).
    pub soft_secs: u64,
    /// Hard lifetime.
    pub hard_secs: u64,
    /// Replaced by a newer generation, waiting for deletion.
    pub expired: bool,
}

/// Which SAs of a child to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dirs {
    /// Inbound and outbound.
    Both,
    /// Inbound only (a rekey's responder: the peer may use it at once).
    Inbound,
    /// Outbound only (the deferred half of a rekey's responder).
    Outbound,
}

/// Something the driver wants done with the kernel (async, by the caller).
#[derive(Debug)]
pub enum KernelWork {
    /// Install a child SA pair (or half of it) with a request ID.
    Install(Box<InstallChildSa>, u32, Dirs),
    /// Delete a child SA pair.
    Delete {
        /// Outer source of the inbound SA (peer).
        remote: IpAddr,
        /// Our address.
        local: IpAddr,
        /// Inbound SPI.
        spi_in: u32,
        /// Outbound SPI.
        spi_out: u32,
    },
}

/// The IKEv2 side of one stack.
#[derive(Debug)]
pub struct IkeDriver {
    /// The engine.
    /// The IKEv2 and IKEv1 engines (`crate::v1`).
    pub endpoint: crate::v1::Engines,
    /// IKE tunnels by IKE SA.
    pub ike: BTreeMap<IkeSaId, IkeTunnel>,
    /// Child SAs by handle.
    pub children: BTreeMap<ChildId, ChildTunnel>,
    /// Y numbers by (rule, peer address).
    y_numbers: BTreeMap<(String, IpAddr), u32>,
    /// Activations waiting for an IKE SA: rule → how.
    pending: BTreeMap<String, (Activation, IkeSaId)>,
    /// Rules to re-activate (AutoActivate) at a time.
    pub retry: BTreeMap<String, Instant>,
    /// Rules an operator deactivated: AutoActivate leaves them down until
    /// they are activated again (command, on-demand traffic or the peer).
    pub deactivated: std::collections::BTreeSet<String>,
    /// Peer configs by KeyExchangeRule name, with their child rule names.
    peers: BTreeMap<String, Vec<String>>,
    /// Signers by KeyExchangeRule name.
    signers: BTreeMap<String, Arc<ike_proto::crypto::sig::LocalSigner>>,
    next_k: u32,
    next_y: u32,
    /// Outbound SAs of rekeyed children held back until the old child is
    /// deleted (or a deadline passes), by Y number.
    deferred_out: BTreeMap<u32, (Box<InstallChildSa>, u32, Instant)>,
    /// Datagrams to send: (local, remote, bytes with the marker on 4500).
    pub outbox: Vec<ike_proto::ikev2::Transmit>,
    /// Kernel work for the caller.
    pub kernel: Vec<KernelWork>,
    /// Statistics of removed/old engines are not kept: the engine lives as
    /// long as the stack.
    nat_t_port: u16,
    /// Signatures of rules without a local signer go to the NSS server.
    pub nss_signing: bool,
    /// Requests for the NSS server (drained by [`crate::nss::serve_engine`]).
    pub remote: Vec<crate::nss::Pending>,
}

fn now_secs() -> u64 {
    crate::stack::now_secs()
}

/// Convert a policy identity into the engine's.
pub fn identity(id: &pol::Identity) -> Result<Identity, String> {
    Ok(match id.kind {
        IdType::IpAddr => match id.value.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Identity::Ipv4(a),
            Ok(IpAddr::V6(a)) => Identity::Ipv6(a),
            Err(_) => return Err(format!("bad IpAddr identity {}", id.value)),
        },
        IdType::Fqdn => Identity::Fqdn(id.value.clone()),
        IdType::UserFqdn => Identity::Rfc822(id.value.clone()),
        IdType::X500dn => Identity::Dn(
            id.value
                .parse()
                .map_err(|e| format!("identity {}: {e}", id.value))?,
        ),
        IdType::KeyId => Identity::KeyId(id.value.as_bytes().to_vec()),
    })
}

fn ip_identity(a: IpAddr) -> Identity {
    match a {
        IpAddr::V4(a) => Identity::Ipv4(a),
        IpAddr::V6(a) => Identity::Ipv6(a),
    }
}

/// The engine's traffic selectors for an address spec, protocol and ports.
pub fn selectors(
    spec: &AddrSpec,
    v6: bool,
    proto: Protocol,
    ports: PortRange,
) -> Vec<TrafficSelector> {
    let ip_protocol = match proto {
        Protocol::All => 0,
        Protocol::Number(n) => n,
    };
    let (start, end) = spec.bounds().unwrap_or(if v6 {
        (IpAddr::V6(0u128.into()), IpAddr::V6(u128::MAX.into()))
    } else {
        (IpAddr::V4(0u32.into()), IpAddr::V4(u32::MAX.into()))
    });
    vec![TrafficSelector::Range {
        ip_protocol,
        start_port: ports.lo,
        end_port: ports.hi,
        start,
        end,
    }]
}

fn ike_suite(o: &pol::KeyExchangeOffer) -> Option<IkeSuite> {
    let encr = match o.encrypt {
        IkeEncrypt::AesCbc(b) => EncrAlg::AesCbc { key_bits: b },
        IkeEncrypt::AesGcm16(b) => EncrAlg::AesGcm16 { key_bits: b },
        IkeEncrypt::TripleDes => EncrAlg::TripleDes,
        IkeEncrypt::Des => return None,
    };
    let integ = if matches!(encr, EncrAlg::AesGcm16 { .. }) {
        None
    } else {
        Some(match o.integrity {
            IkeIntegrity::HmacSha2_256_128 => IntegAlg::HmacSha256_128,
            IkeIntegrity::HmacSha2_384_192 => IntegAlg::HmacSha384_192,
            IkeIntegrity::HmacSha2_512_256 => IntegAlg::HmacSha512_256,
            IkeIntegrity::HmacSha1_96 => IntegAlg::HmacSha1_96,
            IkeIntegrity::HmacMd5_96 => IntegAlg::HmacMd5_96,
            IkeIntegrity::Aes128Xcbc96 => return None,
        })
    };
    let prf = match o.prf {
        Prf::HmacSha2_256 => PrfAlg::HmacSha256,
        Prf::HmacSha2_384 => PrfAlg::HmacSha384,
        Prf::HmacSha2_512 => PrfAlg::HmacSha512,
        Prf::HmacSha1 => PrfAlg::HmacSha1,
        Prf::HmacMd5 => PrfAlg::HmacMd5,
        Prf::Aes128Xcbc => return None,
    };
    Some(IkeSuite {
        encr,
        integ,
        prf,
        dh: DhGroup(o.dh_group.0),
    })
}

fn child_proposal(o: &pol::IpDataOffer, pfs: Option<pol::DhGroup>) -> Option<ChildProposal> {
    let encr = match o.encrypt {
        EspEncrypt::AesGcm16(b) => EncrAlg::AesGcm16 { key_bits: b },
        EspEncrypt::ChaCha20Poly1305 => EncrAlg::ChaCha20Poly1305,
        EspEncrypt::AesCbc(b) => EncrAlg::AesCbc { key_bits: b },
        EspEncrypt::TripleDes => EncrAlg::TripleDes,
        EspEncrypt::DoNot | EspEncrypt::Des => return None,
    };
    let integ = match o.auth {
        EspAuth::Null => None,
        EspAuth::HmacSha2_256_128 => Some(IntegAlg::HmacSha256_128),
        EspAuth::HmacSha2_384_192 => Some(IntegAlg::HmacSha384_192),
        EspAuth::HmacSha2_512_256 => Some(IntegAlg::HmacSha512_256),
        EspAuth::HmacSha1 => Some(IntegAlg::HmacSha1_96),
        EspAuth::HmacMd5 => Some(IntegAlg::HmacMd5_96),
        EspAuth::Aes128Xcbc96 | EspAuth::AesGmac128 | EspAuth::AesGmac256 => return None,
    };
    if o.auth_proto == pol::IpsecProto::Ah {
        return None;
    }
    Some(ChildProposal {
        encr,
        integ,
        esn: false,
        pfs: pfs.map(|g| DhGroup(g.0)),
    })
}

fn child_config(rule: &LocalDynVpnRule) -> Result<ChildConfig, String> {
    let v6 = rule
        .src
        .is_ipv6()
        .or(rule.dst.is_ipv6())
        .unwrap_or(rule.remote_endpoint.is_ipv6());
    let proposals: Vec<ChildProposal> = rule
        .action
        .offers
        .iter()
        .filter_map(|o| child_proposal(o, rule.action.initiate_with_pfs))
        .collect();
    if proposals.is_empty() {
        return Err("no IpDataOffer of its IpDynVpnAction can be negotiated (ESP with AES-GCM, ChaCha20-Poly1305, AES-CBC or 3DES)".into());
    }
    let mode = match rule
        .action
        .encap_ikev2
        .or_else(|| rule.action.offers.first().map(|o| o.encap))
    {
        Some(pol::Encap::Transport) => Mode::Transport,
        _ => Mode::Tunnel,
    };
    let minutes = rule
        .action
        .offers
        .first()
        .map_or(240, |o| o.lifetime_proposed);
    let hard = u64::from(minutes) * 60;
    let bytes = rule
        .action
        .offers
        .first()
        .and_then(|o| o.lifesize_proposed)
        .map_or(0, |kb| kb * 1024);
    Ok(ChildConfig {
        name: rule.name.clone(),
        local_ts: selectors(&rule.src, v6, rule.protocol, rule.src_port),
        remote_ts: selectors(&rule.dst, v6, rule.protocol, rule.dst_port),
        proposals,
        mode,
        lifetimes: Lifetimes {
            // Rekey at 90 % of the lifetime, hard expiry at 100 %.
            soft_secs: hard.saturating_mul(9) / 10,
            hard_secs: hard,
            soft_bytes: bytes.saturating_mul(9) / 10,
            hard_bytes: bytes,
        },
    })
}

/// Build the engine's peer configurations from a stack's policy. Rules
/// that cannot be used are reported and skipped.
pub fn peer_configs(
    policy: &IkePolicy,
    keyring: Option<&Keyring>,
    nss: Option<&crate::nss::CertState>,
    local_for: &dyn Fn(IpAddr) -> Option<IpAddr>,
    stack: &str,
) -> PeerSet {
    let mut peers = Vec::new();
    let mut v1_peers = Vec::new();
    let mut children_of = BTreeMap::new();
    let mut signers = BTreeMap::new();
    for r in &policy.key_exchange_rules {
        match peer_config(policy, r, keyring, nss, local_for) {
            Ok((pc, signer)) => {
                children_of.insert(
                    pc.name.clone(),
                    pc.children.iter().map(|c| c.name.clone()).collect(),
                );
                if let Some(s) = signer {
                    signers.insert(pc.name.clone(), s);
                }
                match crate::v1::v1_peer(r, &pc) {
                    Ok(p) => v1_peers.push(p),
                    Err(e)
                        if matches!(
                            r.action.initiate,
                            HowToInitiate::Main | HowToInitiate::Aggressive
                        ) =>
                    {
                        warn!(
                            "EZD0932W Stack {stack}: KeyExchangeRule {} cannot initiate IKEv1: {e}",
                            r.name
                        );
                    }
                    Err(e) => tracing::debug!(rule = r.name, "no IKEv1 for this rule: {e}"),
                }
                peers.push(pc);
            }
            Err(e) if e.starts_with(crate::nss::WAITING) => {
                info!("EZD1157I Stack {stack}: KeyExchangeRule {} {e}", r.name)
            }
            Err(e) => warn!(
                "EZD0932W Stack {stack}: KeyExchangeRule {} is not usable: {e}",
                r.name
            ),
        }
    }
    (peers, children_of, signers, v1_peers)
}

/// The engine's peers, each KeyExchangeRule's child rule names, the
/// signers of the rules that sign with a local key, and the IKEv1 policies
/// (with whether the rule initiates with IKEv1).
pub type PeerSet = (
    Vec<PeerConfig>,
    BTreeMap<String, Vec<String>>,
    BTreeMap<String, Arc<ike_proto::crypto::sig::LocalSigner>>,
    Vec<(ike_proto::ikev1::V1Peer, bool)>,
);

type PeerAndSigner = (PeerConfig, Option<Arc<ike_proto::crypto::sig::LocalSigner>>);

fn peer_config(
    policy: &IkePolicy,
    r: &KeyExchangeRule,
    keyring: Option<&Keyring>,
    nss: Option<&crate::nss::CertState>,
    local_for: &dyn Fn(IpAddr) -> Option<IpAddr>,
) -> Result<PeerAndSigner, String> {
    let remote_addrs = match r.remote.location {
        AddrSpec::Host(a) => vec![a],
        _ => Vec::new(),
    };
    let local_id = match r.local.effective_identity() {
        Some(id) => identity(&id)?,
        None => {
            let remote = remote_addrs.first().copied().ok_or(
                "the LocalSecurityEndpoint needs an Identity or a Location address (the remote Location is not one host)",
            )?;
            ip_identity(local_for(remote).ok_or_else(|| format!("no route to {remote}"))?)
        }
    };
    let remote_id = r
        .remote
        .effective_identity()
        .map(|i| identity(&i))
        .transpose()?;
    let psk = r
        .shared_key
        .as_ref()
        .map(|k| IkeSecret::from_slice(k.expose()));
    let mut signer = None;
    // An NSS client stack with ServiceType Cert signs and verifies through
    // the NSS server, never with a local key (reference §1.3).
    let nss_auth = match nss {
        Some(c) if r.auth_me() != AuthMethod::PresharedKey => Some(crate::nss::auth_for(c, r)?),
        _ => None,
    };
    let local_auth = if r.auth_me() == AuthMethod::PresharedKey {
        LocalAuth::Psk(psk.clone().ok_or("PresharedKey needs a SharedKey")?)
    } else if let Some((l, _)) = &nss_auth {
        l.clone()
    } else {
        let ring = keyring.ok_or(
            "signature authentication needs the IkeConfig KeyRing, which could not be loaded",
        )?;
        let entry = match &r.action.certificate_label {
            Some(l) => ring
                .get(l)
                .ok_or_else(|| format!("the key ring has no certificate labelled {l}"))?,
            None => ring
                .default_entry()
                .ok_or("the key ring has no default certificate; code CertificateLabel")?,
        };
        let s = entry.signer().ok_or_else(|| {
            format!(
                "certificate {} has no private key in the key ring",
                entry.label()
            )
        })?;
        signer = Some(s.clone());
        let mut certs = vec![entry.der().to_vec()];
        certs.extend(ring.issuer_chain(entry));
        LocalAuth::Signature {
            certs,
            key: s.key_algorithm(),
            schemes: Vec::new(),
        }
    };
    let remote_auth = match (&psk, r.auth_me(), nss_auth) {
        (Some(k), AuthMethod::PresharedKey, _) => RemoteAuth::Psk(k.clone()),
        (_, _, Some((_, remote))) => remote,
        _ => {
            let ring =
                keyring.ok_or("verifying a peer's certificate needs the IkeConfig KeyRing")?;
            let mut v = ChainVerifier::new();
            let mut n = 0;
            for ca in ring.ca_entries() {
                if r.remote.ca_label.as_ref().is_none_or(|l| l == ca.label()) {
                    v.add_ca_der(ca.der()).map_err(|e| e.to_string())?;
                    n += 1;
                }
            }
            if n == 0 {
                return Err(
                    "the key ring has no CERTAUTH certificate to verify the peer with".into(),
                );
            }
            for crl in ring.crls() {
                v.add_crl_der(crl).map_err(|e| e.to_string())?;
            }
            RemoteAuth::Certificate(Arc::new(v))
        }
    };
    let ike_proposals: Vec<IkeSuite> = r.action.offers.iter().filter_map(ike_suite).collect();
    if ike_proposals.is_empty() {
        return Err("no KeyExchangeOffer can be negotiated with IKEv2".into());
    }
    let allow_legacy = ike_proposals.iter().any(IkeSuite::is_legacy);
    let mut children = Vec::new();
    for d in &policy.local_dyn_vpn_rules {
        if r.remote.location.contains(d.remote_endpoint)
            && d.local_endpoint
                .is_none_or(|l| r.local.location.contains(l))
        {
            match child_config(d) {
                Ok(c) => children.push(c),
                Err(e) => warn!("EZD0932W LocalDynVpnRule {} is not usable: {e}", d.name),
            }
        }
    }
    let minutes = r.action.offers.first().map_or(480, |o| o.lifetime_proposed);
    let ike_lifetime = Duration::from_secs(u64::from(minutes) * 60);
    Ok((
        PeerConfig {
            name: r.name.clone(),
            remote_addrs,
            local_id,
            remote_id,
            local_auth,
            remote_auth,
            ike_proposals,
            allow_legacy,
            children,
            ike_lifetime,
            rekey_margin: (ike_lifetime / 10)
                .max(Duration::from_secs(30))
                .min(ike_lifetime / 2),
            dpd_interval: (r.action.dpd_interval > 0)
                .then(|| Duration::from_secs(u64::from(r.action.dpd_interval))),
            initial_contact: true,
            // KeyExchangeAction ReauthInterval is not acted on yet.
            reauth_interval: None,
            // RFC 7427 signatures (method 14) for every key type: the
            // classic RSA method 1 means SHA-1, which gatekey does not sign
            // with. HowToAuthMe RsaSignature/ECDSA-* name the key type.
            rfc7427: true,
        },
        signer,
    ))
}

impl IkeDriver {
    /// An engine for a stack with `peers`.
    pub fn new(
        retries: u32,
        init_wait: u32,
        nat_t_port: u16,
        nat_keepalive: u32,
        peers: PeerSet,
    ) -> Self {
        let config = EndpointConfig {
            retries,
            init_wait: Duration::from_secs(u64::from(init_wait)),
            nat_t_port,
            nat_keepalive: Duration::from_secs(u64::from(nat_keepalive.max(1))),
            ..EndpointConfig::default()
        };
        let mut endpoint = crate::v1::Engines::new(config);
        endpoint.set_unix_time(now_secs());
        endpoint.set_peers(peers.0, peers.3);
        IkeDriver {
            endpoint,
            ike: BTreeMap::new(),
            children: BTreeMap::new(),
            y_numbers: BTreeMap::new(),
            pending: BTreeMap::new(),
            retry: BTreeMap::new(),
            deactivated: std::collections::BTreeSet::new(),
            peers: peers.1,
            signers: peers.2,
            next_k: 1,
            next_y: 1,
            deferred_out: BTreeMap::new(),
            outbox: Vec::new(),
            kernel: Vec::new(),
            nat_t_port,
            nss_signing: false,
            remote: Vec::new(),
        }
    }

    /// Replace the peer configurations (refresh); established SAs stay.
    pub fn set_peers(&mut self, peers: PeerSet) {
        self.endpoint.set_peers(peers.0, peers.3);
        self.peers = peers.1;
        self.signers = peers.2;
    }

    /// The NAT-T port.
    pub fn nat_t_port(&self) -> u16 {
        self.nat_t_port
    }

    /// The KeyExchangeRule whose children include `rule`.
    pub fn peer_of_rule(&self, rule: &str) -> Option<(String, usize)> {
        self.peers
            .iter()
            .find_map(|(p, kids)| kids.iter().position(|k| k == rule).map(|i| (p.clone(), i)))
    }

    /// Start (or join) the negotiation of `rule`'s tunnel.
    pub fn activate(
        &mut self,
        now: Instant,
        rule: &LocalDynVpnRule,
        local: IpAddr,
        how: Activation,
        ike_port: u16,
    ) -> Result<rec::TunnelStatus, String> {
        if rule.action.initiation == Initiation::RemoteOnly && how != Activation::Remote {
            return Ok(rec::TunnelStatus::NotAllowed);
        }
        if how == Activation::Auto && self.deactivated.contains(&rule.name) {
            return Ok(rec::TunnelStatus::StateAlreadySet);
        }
        self.deactivated.remove(&rule.name);
        if self
            .children
            .values()
            .any(|c| c.rule == rule.name && !c.expired)
        {
            return Ok(rec::TunnelStatus::StateAlreadySet);
        }
        let Some((peer, index)) = self.peer_of_rule(&rule.name) else {
            return Ok(rec::TunnelStatus::NoKer);
        };
        if self.pending.contains_key(&rule.name) {
            return Ok(rec::TunnelStatus::StateAlreadySet);
        }
        // An established IKE SA to that peer: add the child to it.
        let existing = self
            .ike
            .iter()
            .find(|(_, t)| {
                t.up && t.rule == peer && t.remote.map(|r| r.ip()) == Some(rule.remote_endpoint)
            })
            .map(|(id, _)| *id);
        if let Some(sa) = existing {
            self.endpoint
                .create_child(now, sa, index)
                .map_err(|e| e.to_string())?;
            self.pending.insert(rule.name.clone(), (how, sa));
            return Ok(rec::TunnelStatus::StateUpdated);
        }
        // An IKE SA to that peer being set up: wait for it (one IKE SA per
        // peer; a second one's INITIAL_CONTACT would make the peer drop the
        // first). The first child of the KeyExchangeRule is negotiated in
        // its IKE_AUTH, any other one with CREATE_CHILD_SA once it is up.
        let starting = self
            .ike
            .iter()
            .find(|(_, t)| {
                !t.up && t.initiator && t.rule == peer && t.target == Some(rule.remote_endpoint)
            })
            .map(|(id, t)| (*id, t.k));
        if let Some((sa, k)) = starting {
            if index != 0 {
                self.pending
                    .insert(format!("\u{0}{}", rule.name), (how, sa));
            }
            self.pending.insert(rule.name.clone(), (how, sa));
            info!(
                "EZD0933I IKE negotiation for LocalDynVpnRule {} with {} started ({}); it waits for IKE tunnel K{k} being set up",
                rule.name,
                rule.remote_endpoint,
                how.display()
            );
            return Ok(rec::TunnelStatus::StateUpdated);
        }
        let sa = self
            .endpoint
            .connect(
                now,
                &peer,
                SocketAddr::new(local, ike_port),
                SocketAddr::new(rule.remote_endpoint, ike_port),
            )
            .map_err(|e| e.to_string())?;
        self.new_ike_tunnel(sa, &peer, true);
        if let Some(t) = self.ike.get_mut(&sa) {
            t.target = Some(rule.remote_endpoint);
        }
        if index != 0 {
            // The first child is negotiated in IKE_AUTH; this one follows
            // once the IKE SA is up.
            self.pending
                .insert(format!("\u{0}{}", rule.name), (how, sa));
        }
        self.pending.insert(rule.name.clone(), (how, sa));
        info!(
            "EZD0933I IKE negotiation for LocalDynVpnRule {} with {} started ({})",
            rule.name,
            rule.remote_endpoint,
            how.display()
        );
        Ok(rec::TunnelStatus::StateUpdated)
    }

    fn new_ike_tunnel(&mut self, sa: IkeSaId, rule: &str, initiator: bool) -> u32 {
        let k = self.next_k;
        self.next_k += 1;
        self.ike.insert(
            sa,
            IkeTunnel {
                k,
                generation: 1,
                rule: rule.to_owned(),
                initiator,
                up: false,
                created: now_secs(),
                peer_id: None,
                spis: (0, 0),
                local: None,
                remote: None,
                nat: (false, false),
                target: None,
            },
        );
        k
    }

    /// Drain the engine's outputs into `outbox` and `kernel`; `stack` and
    /// `rule_reqid` name things for logs and map rule names to request IDs.
    pub fn pump(&mut self, now: Instant, stack: &str, rule_reqid: &dyn Fn(&str) -> Option<u32>) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.outbox.push(t);
        }
        while let Some(ev) = self.endpoint.poll_event() {
            self.on_event(now, ev, stack, rule_reqid);
            while let Some(t) = self.endpoint.poll_transmit() {
                self.outbox.push(t);
            }
        }
        let due: Vec<u32> = self
            .deferred_out
            .iter()
            .filter(|(_, (_, _, t))| *t <= now)
            .map(|(y, _)| *y)
            .collect();
        for y in due {
            if let Some((inst, reqid, _)) = self.deferred_out.remove(&y) {
                self.kernel
                    .push(KernelWork::Install(inst, reqid, Dirs::Outbound));
            }
        }
    }

    /// When a deferred outbound SA must be installed at the latest.
    pub fn deferred_deadline(&self) -> Option<Instant> {
        self.deferred_out.values().map(|(_, _, t)| *t).min()
    }

    fn on_event(
        &mut self,
        now: Instant,
        ev: Event,
        stack: &str,
        rule_reqid: &dyn Fn(&str) -> Option<u32>,
    ) {
        match ev {
            Event::SignRequest {
                id,
                peer,
                scheme,
                octets,
                ..
            } => {
                if self.nss_signing && !self.signers.contains_key(&peer) {
                    self.remote.push(crate::nss::Pending::Sign {
                        id,
                        peer,
                        scheme,
                        octets,
                    });
                    return;
                }
                let result = match self.signers.get(&peer) {
                    Some(s) => s.sign(scheme, &octets).map_err(|e| e.to_string()),
                    None => Err(format!("no local key for KeyExchangeRule {peer}")),
                };
                if let Err(e) = &result {
                    warn!("EZD0934E Stack {stack}: signing for KeyExchangeRule {peer} failed: {e}");
                }
                self.endpoint.handle_signature(now, id, result);
            }
            Event::VerifyRequest { id, .. } if self.nss_signing => {
                self.remote.push(crate::nss::Pending::Verify { id });
            }
            Event::VerifyRequest { id, .. } => {
                self.endpoint.handle_verification(
                    now,
                    id,
                    Err("iked verifies certificates in the engine".into()),
                );
            }
            Event::IkeSaUp {
                ike_sa,
                peer,
                initiator,
                peer_id,
                spis,
                local,
                remote,
                local_nat,
                remote_nat,
            } => {
                if !self.ike.contains_key(&ike_sa) {
                    self.new_ike_tunnel(ike_sa, &peer, initiator);
                }
                if let Some(t) = self.ike.get_mut(&ike_sa) {
                    t.up = true;
                    t.peer_id = Some(peer_id.to_string());
                    t.spis = spis;
                    t.local = Some(local);
                    t.remote = Some(remote);
                    t.nat = (local_nat, remote_nat);
                    t.rule = peer.clone();
                    info!(
                        "EZD0935I Stack {stack}: IKE version {} SA for tunnel K{} generation {} established with {remote} ({peer_id}) by KeyExchangeRule {peer}, {}{}",
                        crate::v1::version_text(ike_sa),
                        t.k,
                        t.generation,
                        if initiator { "initiator" } else { "responder" },
                        if local_nat || remote_nat {
                            ", NAT detected"
                        } else {
                            ""
                        }
                    );
                }
                // Children that wait for this IKE SA (not the first one).
                let waiting: Vec<String> = self
                    .pending
                    .iter()
                    .filter(|(k, (_, sa))| *sa == ike_sa && k.starts_with('\u{0}'))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in waiting {
                    self.pending.remove(&key);
                    let rule = key.trim_start_matches('\u{0}').to_owned();
                    if let Some((_, idx)) = self.peer_of_rule(&rule)
                        && let Err(e) = self.endpoint.create_child(now, ike_sa, idx)
                    {
                        warn!(
                            "EZD0936E Stack {stack}: child SA for {rule} could not be started: {e}"
                        );
                    }
                }
            }
            Event::IkeSaRekeyed { old, new } => {
                if let Some(mut t) = self.ike.remove(&old) {
                    t.generation += 1;
                    info!(
                        "EZD0937I Stack {stack}: IKE SA of tunnel K{} rekeyed, generation {}",
                        t.k, t.generation
                    );
                    self.ike.insert(new, t);
                }
                for c in self.children.values_mut() {
                    if c.ike_sa == old {
                        c.ike_sa = new;
                    }
                }
                for (_, sa) in self.pending.values_mut() {
                    if *sa == old {
                        *sa = new;
                    }
                }
            }
            Event::IkeSaDown { ike_sa, reason } => {
                if let Some(t) = self.ike.remove(&ike_sa) {
                    let (lvl_warn, why) = match &reason {
                        CloseReason::PeerDeleted => (false, "deleted by the peer".to_owned()),
                        CloseReason::LocalDeleted => (false, "deleted".to_owned()),
                        CloseReason::Timeout => (
                            true,
                            "the peer did not answer (retransmissions exhausted)".to_owned(),
                        ),
                        CloseReason::AuthFailed(s) => (true, format!("authentication failed: {s}")),
                        CloseReason::NegotiationFailed(s) => {
                            (true, format!("negotiation failed: {s}"))
                        }
                        CloseReason::Rekeyed => (false, "replaced by its rekeyed SA".to_owned()),
                        CloseReason::Protocol(s) => (true, format!("protocol error: {s}")),
                        other => (true, format!("{other:?}")),
                    };
                    let remote = t.remote.map_or_else(|| "?".to_owned(), |r| r.to_string());
                    if lvl_warn {
                        warn!(
                            "EZD0938W Stack {stack}: IKE SA of tunnel K{} with {remote} (KeyExchangeRule {}) ended: {why}",
                            t.k, t.rule
                        );
                    } else {
                        info!(
                            "EZD0938I Stack {stack}: IKE SA of tunnel K{} with {remote} (KeyExchangeRule {}) ended: {why}",
                            t.k, t.rule
                        );
                    }
                }
                self.pending.retain(|_, (_, sa)| *sa != ike_sa);
            }
            Event::InstallChildSa(inst) => {
                let rule = inst.name.clone();
                let how = self
                    .pending
                    .remove(&rule)
                    .map(|(h, _)| h)
                    .unwrap_or(if inst.initiator {
                        Activation::Command
                    } else {
                        Activation::Remote
                    });
                let reqid = rule_reqid(&rule).unwrap_or(crate::kernel::REQID_BASE | 0x00ff_fffe);
                let key = (rule.clone(), inst.remote.ip());
                let y = match self.y_numbers.get(&key) {
                    Some(y) => *y,
                    None => {
                        let y = self.next_y;
                        self.next_y += 1;
                        self.y_numbers.insert(key, y);
                        y
                    }
                };
                let generation = self
                    .children
                    .values()
                    .filter(|c| c.y == y)
                    .map(|c| c.generation)
                    .max()
                    .map_or(1, |g| g + 1);
                let mut rekey = false;
                for c in self.children.values_mut() {
                    if c.y == y && !c.expired {
                        c.expired = true;
                        rekey = true;
                    }
                }
                let k = self.ike.get(&inst.ike_sa).map_or(0, |t| t.k);
                info!(
                    "EZD0939I Stack {stack}: dynamic tunnel Y{y} generation {generation} (LocalDynVpnRule {rule}) under K{k} installed: ESP SPIs in {:#010x} out {:#010x}{}",
                    inst.inbound.spi,
                    inst.outbound.spi,
                    if inst.encap.is_some() {
                        ", UDP-encapsulated"
                    } else {
                        ""
                    }
                );
                self.children.insert(
                    inst.child,
                    ChildTunnel {
                        y,
                        generation,
                        rule: rule.clone(),
                        ike_sa: inst.ike_sa,
                        reqid,
                        activation: how,
                        spi_in: inst.inbound.spi,
                        spi_out: inst.outbound.spi,
                        local: inst.local,
                        remote: inst.remote,
                        mode: inst.mode,
                        encr: inst.encr,
                        integ: inst.integ,
                        encap: inst.encap.map(|e| (e.local_port, e.remote_port)),
                        initiator: inst.initiator,
                        created: now_secs(),
                        soft_secs: inst.lifetimes.soft_secs,
                        hard_secs: inst.lifetimes.hard_secs,
                        expired: false,
                    },
                );
                self.retry.remove(&rule);
                self.deactivated.remove(&rule);
                // Make-before-break without loss: the side that installs
                // its new SAs first installs the new inbound SA now, but
                // keeps sending on the old SA until the old child is
                // deleted, by when the other side has its new inbound SA.
                // IKEv2: the responder (the initiator installs both of its
                // new SAs when it gets our response). IKEv1: the initiator
                // (the responder installs after the third quick-mode
                // message; the initiator deletes the old child after the
                // overlap).
                let first_to_install = if crate::v1::is_v1_child(inst.child) {
                    inst.initiator
                } else {
                    !inst.initiator
                };
                if rekey && first_to_install {
                    self.kernel
                        .push(KernelWork::Install(inst.clone(), reqid, Dirs::Inbound));
                    self.deferred_out
                        .insert(y, (inst, reqid, now + Duration::from_secs(5)));
                } else {
                    self.kernel
                        .push(KernelWork::Install(inst, reqid, Dirs::Both));
                }
            }
            Event::DeleteChildSa {
                child,
                spi_in,
                spi_out,
                ..
            } => {
                if let Some(c) = self.children.remove(&child) {
                    if let Some((inst, reqid, _)) = self.deferred_out.remove(&c.y) {
                        self.kernel
                            .push(KernelWork::Install(inst, reqid, Dirs::Outbound));
                    }
                    info!(
                        "EZD0940I Stack {stack}: dynamic tunnel Y{} generation {} (LocalDynVpnRule {}) deleted: ESP SPIs in {spi_in:#010x} out {spi_out:#010x}",
                        c.y, c.generation, c.rule
                    );
                    self.kernel.push(KernelWork::Delete {
                        remote: c.remote.ip(),
                        local: c.local.ip(),
                        spi_in,
                        spi_out,
                    });
                }
            }
            Event::ChildSaFailed { name, reason, .. } => {
                self.pending.remove(&name);
                warn!(
                    "EZD0936E Stack {stack}: dynamic tunnel for LocalDynVpnRule {name} failed: {reason}"
                );
            }
            Event::NatDetected {
                ike_sa,
                local_nat,
                remote_nat,
            } => {
                if let Some(t) = self.ike.get_mut(&ike_sa) {
                    t.nat = (local_nat, remote_nat);
                }
            }
            _ => {}
        }
    }

    /// The child whose inbound or outbound SPI is `spi`.
    pub fn child_by_spi(&self, spi: u32) -> Option<ChildId> {
        self.children
            .iter()
            .find(|(_, c)| c.spi_in == spi || c.spi_out == spi)
            .map(|(id, _)| *id)
    }

    /// Is an activation of `rule` under way?
    pub fn is_pending(&self, rule: &str) -> bool {
        self.pending.contains_key(rule)
    }

    /// Rules with a live (not expired) child SA.
    pub fn live_rules(&self) -> Vec<String> {
        self.children
            .values()
            .filter(|c| !c.expired)
            .map(|c| c.rule.clone())
            .collect()
    }
}

/// The IKEv2 name of an ESP cipher and its key length.
pub fn encr_name(e: EncrAlg) -> (&'static str, Option<u16>) {
    match e {
        EncrAlg::AesGcm16 { key_bits } => ("AES_GCM_16", Some(key_bits)),
        EncrAlg::ChaCha20Poly1305 => ("CHACHA20_POLY1305", Some(256)),
        EncrAlg::AesCbc { key_bits } => ("AES_CBC", Some(key_bits)),
        EncrAlg::TripleDes => ("3DES", Some(168)),
    }
}

/// The IKEv2 name of an integrity algorithm.
pub fn integ_name(i: IntegAlg) -> &'static str {
    match i {
        IntegAlg::HmacSha256_128 => "HMAC_SHA2_256_128",
        IntegAlg::HmacSha384_192 => "HMAC_SHA2_384_192",
        IntegAlg::HmacSha512_256 => "HMAC_SHA2_512_256",
        IntegAlg::HmacSha1_96 => "HMAC_SHA1_96",
        IntegAlg::HmacMd5_96 => "HMAC_MD5_96",
    }
}
