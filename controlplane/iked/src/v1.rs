//! IKEv1 beside IKEv2: one stack's two engines behind the IKEv2 engine's
//! interface, the KeyExchangeRules turned into IKEv1 policies, and what the
//! displays need from both engines' snapshots.
//!
//! - [`Engines`] holds the `ike_proto::ikev2::Endpoint` and the
//!   `ike_proto::ikev1::Endpoint` built from the same `EndpointConfig`. The
//!   IKEv1 engine's handles (IKE SAs, child SAs, signature requests) start at
//!   2^62, so one table holds both and every call on a handle goes to the
//!   engine that made it. A datagram goes to the engine its ISAKMP header's
//!   major version names (after the non-ESP marker on the NAT-T port).
//!   Both engines emit the same events; the driver (`crate::ike`) handles
//!   them alike.
//! - Every KeyExchangeRule gets an IKEv1 policy ([`v1_peer`]) next to its
//!   IKEv2 one: `HowToInitiate Main|Aggressive` initiates with IKEv1; every
//!   rule answers IKEv1 as `HowToRespondIKEv1` says (z/OS answers in the
//!   initiator's version). Coding `Aggressive` (to initiate, or
//!   `HowToRespondIKEv1 Aggressive|Either`) is the opt-in for aggressive
//!   mode with a pre-shared key, which exposes a hash of the key to offline
//!   guessing. Phase 1 offers come from the KeyExchangeOffers (HowToEncrypt
//!   AES_CBC/3DES, HowToAuthMsgs, DHGroup). IKEv1 signs with RSA only.
//! - Snapshots: [`sa_display`] gives each IKE SA's version, exchange mode and
//!   negotiated algorithms for `ipsec -k display`, [`child_display`] each
//!   child's version and PFS group for `ipsec -y display`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatekey_config::ike_policy::{
    self as pol, AuthMethod, HowToInitiate, HowToRespondV1, IkeEncrypt, IkeHash,
};
use gatekey_nmi::records::{self as rec, IkeTunnelRecord};
use ike_proto::crypto::encr::EncrAlg;
use ike_proto::crypto::sig::KeyAlgorithm;
use ike_proto::ikev1::crypto::HashAlg;
use ike_proto::ikev1::wire::P1Auth;
use ike_proto::ikev1::{self, ExchangeMode, P1Proposal, ResponderModes, V1Options, V1Peer};
use ike_proto::ikev2::{
    self, ChildId, EndpointConfig, Event, IkeSaId, LocalAuth, PeerConfig, RequestId, Statistics,
    Transmit,
};
use ike_proto::wire::DhGroup;

/// The first handle the IKEv1 engine gives out.
const V1_BASE: u64 = 1 << 62;

/// Is this IKE SA the IKEv1 engine's?
pub fn is_v1_sa(id: IkeSaId) -> bool {
    id.0 >= V1_BASE
}

/// Is this child SA the IKEv1 engine's?
pub fn is_v1_child(id: ChildId) -> bool {
    id.0 >= V1_BASE
}

/// `1.0` or `2.0` for log messages.
pub fn version_text(id: IkeSaId) -> &'static str {
    if is_v1_sa(id) { "1.0" } else { "2.0" }
}

/// A stack's IKEv2 and IKEv1 engines with the IKEv2 engine's interface.
#[derive(Debug)]
pub struct Engines {
    /// The IKEv2 engine.
    pub v2: ikev2::Endpoint,
    /// The IKEv1 engine.
    pub v1: ikev1::Endpoint,
    /// Rules that initiate with IKEv1 (HowToInitiate Main|Aggressive).
    v1_initiators: BTreeSet<String>,
    nat_t_port: u16,
}

impl Engines {
    /// Both engines with the same configuration and no peers.
    pub fn new(config: EndpointConfig) -> Self {
        let nat_t_port = config.nat_t_port;
        Engines {
            v2: ikev2::Endpoint::new(config.clone()),
            v1: ikev1::Endpoint::new(config),
            v1_initiators: BTreeSet::new(),
            nat_t_port,
        }
    }

    /// Replace the peers of both engines (existing SAs keep theirs).
    pub fn set_peers(&mut self, v2: Vec<PeerConfig>, v1: Vec<(V1Peer, bool)>) {
        self.v2.set_peers(v2);
        self.v1_initiators = v1
            .iter()
            .filter(|(_, initiates)| *initiates)
            .map(|(p, _)| p.peer.name.clone())
            .collect();
        self.v1.set_peers(v1.into_iter().map(|(p, _)| p).collect());
    }

    /// Does this KeyExchangeRule initiate with IKEv1?
    pub fn initiates_v1(&self, rule: &str) -> bool {
        self.v1_initiators.contains(rule)
    }

    /// Wall-clock time for certificate validity.
    pub fn set_unix_time(&mut self, secs: u64) {
        self.v2.set_unix_time(secs);
        self.v1.set_unix_time(secs);
    }

    /// Start an IKE SA with the rule's IKE version.
    pub fn connect(
        &mut self,
        now: Instant,
        peer: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> ike_proto::Result<IkeSaId> {
        if self.initiates_v1(peer) {
            self.v1.connect(now, peer, local, remote)
        } else {
            self.v2.connect(now, peer, local, remote)
        }
    }

    /// Another child SA under an IKE SA.
    pub fn create_child(
        &mut self,
        now: Instant,
        sa: IkeSaId,
        index: usize,
    ) -> ike_proto::Result<()> {
        if is_v1_sa(sa) {
            self.v1.create_child(now, sa, index)
        } else {
            self.v2.create_child(now, sa, index)
        }
    }

    /// Rekey a child SA.
    pub fn rekey_child(&mut self, now: Instant, child: ChildId) -> ike_proto::Result<()> {
        if is_v1_child(child) {
            self.v1.rekey_child(now, child)
        } else {
            self.v2.rekey_child(now, child)
        }
    }

    /// Rekey an IKE SA.
    pub fn rekey_ike(&mut self, now: Instant, sa: IkeSaId) -> ike_proto::Result<()> {
        if is_v1_sa(sa) {
            self.v1.rekey_ike(now, sa)
        } else {
            self.v2.rekey_ike(now, sa)
        }
    }

    /// Delete a child SA.
    pub fn delete_child(&mut self, now: Instant, child: ChildId) -> ike_proto::Result<()> {
        if is_v1_child(child) {
            self.v1.delete_child(now, child)
        } else {
            self.v2.delete_child(now, child)
        }
    }

    /// Delete an IKE SA and its children.
    pub fn delete_ike(&mut self, now: Instant, sa: IkeSaId) -> ike_proto::Result<()> {
        if is_v1_sa(sa) {
            self.v1.delete_ike(now, sa)
        } else {
            self.v2.delete_ike(now, sa)
        }
    }

    /// A liveness check now.
    pub fn liveness_check(&mut self, now: Instant, sa: IkeSaId) -> ike_proto::Result<()> {
        if is_v1_sa(sa) {
            self.v1.liveness_check(now, sa)
        } else {
            self.v2.liveness_check(now, sa)
        }
    }

    /// A datagram (with the non-ESP marker when it came on the NAT-T port)
    /// goes to the engine of its IKE version.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        let natt = local.port() == self.nat_t_port || remote.port() == self.nat_t_port;
        let bare = match (natt, data) {
            (true, [0, 0, 0, 0, rest @ ..]) => rest,
            (true, _) => data,
            (false, _) => data,
        };
        if ikev1::is_ikev1(bare) {
            self.v1.handle_datagram(now, local, remote, data);
        } else {
            self.v2.handle_datagram(now, local, remote, data);
        }
    }

    /// Timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.v2.poll_timeout().is_some_and(|t| t <= now) {
            self.v2.handle_timeout(now);
        }
        if self.v1.poll_timeout().is_some_and(|t| t <= now) {
            self.v1.handle_timeout(now);
        }
    }

    /// The caller's signature.
    pub fn handle_signature(
        &mut self,
        now: Instant,
        id: RequestId,
        result: Result<Vec<u8>, String>,
    ) {
        if id.0 >= V1_BASE {
            self.v1.handle_signature(now, id, result);
        } else {
            self.v2.handle_signature(now, id, result);
        }
    }

    /// The caller's verification.
    pub fn handle_verification(&mut self, now: Instant, id: RequestId, result: Result<(), String>) {
        if id.0 >= V1_BASE {
            self.v1.handle_verification(now, id, result);
        } else {
            self.v2.handle_verification(now, id, result);
        }
    }

    /// The next datagram of either engine.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.v2.poll_transmit().or_else(|| self.v1.poll_transmit())
    }

    /// The next event of either engine.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.v2.poll_event().or_else(|| self.v1.poll_event())
    }

    /// The earlier of the engines' deadlines.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.v2.poll_timeout(), self.v1.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Both engines' counters added up (NMI GET_SUMMARY).
    pub fn statistics(&self) -> Statistics {
        let (a, b) = (self.v2.statistics(), self.v1.statistics());
        Statistics {
            p1_active: a.p1_active + b.p1_active,
            p1_in_progress: a.p1_in_progress + b.p1_in_progress,
            p1_expired: a.p1_expired + b.p1_expired,
            p1_local_act_success: a.p1_local_act_success + b.p1_local_act_success,
            p1_remote_act_success: a.p1_remote_act_success + b.p1_remote_act_success,
            p1_local_act_failure: a.p1_local_act_failure + b.p1_local_act_failure,
            p1_remote_act_failure: a.p1_remote_act_failure + b.p1_remote_act_failure,
            p1_retransmit: a.p1_retransmit + b.p1_retransmit,
            p2_active: a.p2_active + b.p2_active,
            p2_in_progress: a.p2_in_progress + b.p2_in_progress,
            p2_local_act_success: a.p2_local_act_success + b.p2_local_act_success,
            p2_remote_act_success: a.p2_remote_act_success + b.p2_remote_act_success,
            p2_local_act_failure: a.p2_local_act_failure + b.p2_local_act_failure,
            p2_remote_act_failure: a.p2_remote_act_failure + b.p2_remote_act_failure,
            p2_retransmit: a.p2_retransmit + b.p2_retransmit,
            invalid_packets: a.invalid_packets + b.invalid_packets,
            duplicate_requests: a.duplicate_requests + b.duplicate_requests,
            cookies_sent: a.cookies_sent + b.cookies_sent,
        }
    }
}

// ---------------------------------------------------------------------------
// Policy

fn p1_proposal(o: &pol::KeyExchangeOffer) -> Option<P1Proposal> {
    let encr = match o.encrypt {
        IkeEncrypt::AesCbc(b) => EncrAlg::AesCbc { key_bits: b },
        IkeEncrypt::TripleDes => EncrAlg::TripleDes,
        IkeEncrypt::Des | IkeEncrypt::AesGcm16(_) => return None,
    };
    let hash = match o.hash {
        IkeHash::Md5 => HashAlg::Md5,
        IkeHash::Sha1 => HashAlg::Sha1,
        IkeHash::Sha2_256 => HashAlg::Sha256,
        IkeHash::Sha2_384 => HashAlg::Sha384,
        IkeHash::Sha2_512 => HashAlg::Sha512,
    };
    let p = P1Proposal {
        encr,
        hash,
        dh: DhGroup(o.dh_group.0),
    };
    p.is_supported().then_some(p)
}

/// The IKEv1 policy of a KeyExchangeRule, made from its IKEv2 policy `pc`,
/// and whether the rule initiates with IKEv1. `Err` says why the rule
/// cannot speak IKEv1 (the caller reports it when the rule initiates with
/// IKEv1, and only notes it otherwise).
pub fn v1_peer(r: &pol::KeyExchangeRule, pc: &PeerConfig) -> Result<(V1Peer, bool), String> {
    let initiate = match r.action.initiate {
        HowToInitiate::Main => Some(ExchangeMode::Main),
        HowToInitiate::Aggressive => Some(ExchangeMode::Aggressive),
        HowToInitiate::IkeV2 | HowToInitiate::DoNot => None,
    };
    if let LocalAuth::Signature { key, .. } = &pc.local_auth
        && !matches!(key, KeyAlgorithm::Rsa { .. })
    {
        return Err(format!(
            "IKEv1 signs with RSA keys only; the certificate's key is {key:?}"
        ));
    }
    if matches!(
        r.auth_me(),
        AuthMethod::Ecdsa256 | AuthMethod::Ecdsa384 | AuthMethod::Ecdsa521
    ) {
        return Err("IKEv1 has no ECDSA authentication in gatekey (use RsaSignature)".into());
    }
    let proposals: Vec<P1Proposal> = r.action.offers.iter().filter_map(p1_proposal).collect();
    if proposals.is_empty() && initiate.is_some() {
        return Err(
            "no KeyExchangeOffer can be negotiated with IKEv1 (HowToEncrypt AES_CBC or 3DES with a supported DHGroup)"
                .into(),
        );
    }
    let respond = match r.action.respond_v1 {
        HowToRespondV1::Either => ResponderModes::Either,
        HowToRespondV1::Main => ResponderModes::Main,
        HowToRespondV1::Aggressive => ResponderModes::Aggressive,
    };
    let mut peer = pc.clone();
    peer.allow_legacy = pc.allow_legacy || proposals.iter().any(P1Proposal::is_legacy);
    if let LocalAuth::Signature { certs, .. } = &mut peer.local_auth {
        without_trust_anchors(certs);
    }
    Ok((
        V1Peer {
            peer,
            v1: V1Options {
                initiate: initiate.unwrap_or(ExchangeMode::Main),
                respond,
                // Coding aggressive mode anywhere is the opt-in for it with a
                // pre-shared key (see the module documentation).
                aggressive_psk: initiate == Some(ExchangeMode::Aggressive)
                    || r.action.respond_v1 != HowToRespondV1::Main,
                proposals,
                ..V1Options::default()
            },
        },
        initiate.is_some(),
    ))
}

/// Drop the self-signed certificates (trust anchors) after the first from an
/// IKEv1 certificate chain. The peer must hold the anchor to trust us
/// anyway, and IKEv1 has no fragmentation of its own here: a main-mode
/// message with two RSA certificates exceeds a 1500-byte MTU and travels as
/// IP fragments, which middleboxes often drop. Intermediate CAs stay.
fn without_trust_anchors(certs: &mut Vec<Vec<u8>>) {
    let mut first = true;
    certs.retain(|der| {
        if std::mem::take(&mut first) {
            return true;
        }
        ike_proto::crypto::cert::Certificate::from_der(der)
            .map_or(true, |c| c.subject() != c.issuer())
    });
}

// ---------------------------------------------------------------------------
// Displays

/// What the engines know about an IKE SA beyond iked's bookkeeping.
#[derive(Debug, Clone, Default)]
pub struct SaDisplay {
    /// IKE version.
    pub version: Option<rec::IkeVersion>,
    /// IKEv1 exchange mode.
    pub mode: Option<rec::ExchangeMode>,
    /// Encryption algorithm name and key length.
    pub encryption: Option<(&'static str, Option<u16>)>,
    /// Integrity algorithm (IKEv2) or hash (IKEv1).
    pub authentication: Option<&'static str>,
    /// PRF.
    pub prf: Option<&'static str>,
    /// Diffie-Hellman group.
    pub dh: Option<u16>,
    /// IKEv1: the negotiated authentication method.
    pub auth_method: Option<&'static str>,
    /// IKEv1: negotiated lifetime (seconds), refresh and expiry (unix).
    pub lifetime: Option<(u32, Option<u64>, Option<u64>)>,
}

impl SaDisplay {
    /// Fill a record's fields from this snapshot.
    pub fn apply(&self, r: &mut IkeTunnelRecord) {
        if let Some(v) = self.version {
            r.ike_version = v;
        }
        r.exchange_mode = self.mode.or(r.exchange_mode);
        if let Some((e, k)) = self.encryption {
            r.encryption_algorithm = Some(e.to_owned());
            r.key_length = k;
        }
        if let Some(a) = self.authentication {
            r.authentication_algorithm = Some(a.to_owned());
        }
        if let Some(p) = self.prf {
            r.pseudo_random_function = Some(p.to_owned());
        }
        if self.dh.is_some() {
            r.diffie_hellman_group = self.dh;
        }
        if let Some(m) = self.auth_method {
            r.local_authentication_method = Some(m.to_owned());
            r.remote_authentication_method = Some(m.to_owned());
        }
        if let Some((l, refresh, expires)) = self.lifetime {
            r.lifetime = Some(l);
            r.lifetime_refresh = refresh.or(r.lifetime_refresh);
            r.lifetime_expires = expires.or(r.lifetime_expires);
        }
    }
}

fn prf_name(p: ike_proto::crypto::prf::PrfAlg) -> &'static str {
    use ike_proto::crypto::prf::PrfAlg as P;
    match p {
        P::HmacSha256 => "HMAC_SHA2_256",
        P::HmacSha384 => "HMAC_SHA2_384",
        P::HmacSha512 => "HMAC_SHA2_512",
        P::HmacSha1 => "HMAC_SHA1",
        P::HmacMd5 => "HMAC_MD5",
    }
}

fn hash_names(h: HashAlg) -> (&'static str, &'static str) {
    match h {
        HashAlg::Md5 => ("MD5", "HMAC_MD5"),
        HashAlg::Sha1 => ("SHA1", "HMAC_SHA1"),
        HashAlg::Sha256 => ("SHA2_256", "HMAC_SHA2_256"),
        HashAlg::Sha384 => ("SHA2_384", "HMAC_SHA2_384"),
        HashAlg::Sha512 => ("SHA2_512", "HMAC_SHA2_512"),
    }
}

fn encr_names(e: EncrAlg) -> (&'static str, Option<u16>) {
    crate::ike::encr_name(e)
}

/// Every IKE SA's snapshot, by handle.
pub fn sa_display(e: &Engines, now: Instant) -> BTreeMap<IkeSaId, SaDisplay> {
    let mut out = BTreeMap::new();
    for s in e.v2.ike_sas() {
        let mut d = SaDisplay {
            version: Some(rec::IkeVersion::V2),
            ..SaDisplay::default()
        };
        if let Some(suite) = s.suite {
            d.encryption = Some(encr_names(suite.encr));
            d.authentication = suite.integ.map(crate::ike::integ_name);
            d.prf = Some(prf_name(suite.prf));
            d.dh = Some(suite.dh.0);
        }
        out.insert(s.id, d);
    }
    let unix = crate::stack::now_secs();
    let at = |d: Option<Duration>| d.map(|d| unix + d.as_secs());
    for s in e.v1.ike_sas(now) {
        let mut d = SaDisplay {
            version: Some(rec::IkeVersion::V1),
            mode: Some(match s.mode {
                ExchangeMode::Main => rec::ExchangeMode::Main,
                ExchangeMode::Aggressive => rec::ExchangeMode::Aggressive,
            }),
            ..SaDisplay::default()
        };
        if let Some((encr, hash, dh, auth)) = s.algorithms {
            let (h, prf) = hash_names(hash);
            d.encryption = Some(encr_names(encr));
            d.authentication = Some(h);
            d.prf = Some(prf);
            d.dh = Some(dh.0);
            d.auth_method = Some(match auth {
                P1Auth::PRE_SHARED_KEY => "PresharedKey",
                P1Auth::RSA_SIGNATURES => "RsaSignature",
                _ => "DigitalSignature",
            });
            d.lifetime = Some((
                u32::try_from(s.lifetime.as_secs()).unwrap_or(u32::MAX),
                at(s.rekey_in),
                at(s.expires_in),
            ));
        }
        out.insert(s.id, d);
    }
    out
}

/// What the engines know about a child SA: IKE version and PFS group.
#[derive(Debug, Clone, Copy)]
pub struct ChildDisplay {
    /// IKE version of the SA that made it.
    pub version: rec::IkeVersion,
    /// The PFS group it was negotiated with.
    pub pfs: Option<u16>,
}

/// Every child SA's snapshot, by handle.
pub fn child_display(e: &Engines, now: Instant) -> BTreeMap<ChildId, ChildDisplay> {
    let mut out = BTreeMap::new();
    for s in e.v2.ike_sas() {
        for c in s.children {
            out.insert(
                c.id,
                ChildDisplay {
                    version: rec::IkeVersion::V2,
                    pfs: c.proposal.pfs.map(|g| g.0),
                },
            );
        }
    }
    for s in e.v1.ike_sas(now) {
        for c in s.children {
            out.insert(
                c.id,
                ChildDisplay {
                    version: rec::IkeVersion::V1,
                    pfs: c.pfs.map(|g| g.0),
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> pol::KeyExchangeRule {
        let p = pol::parse("t.pol", text).unwrap();
        p.key_exchange_rules[0].clone()
    }

    fn peer_for(r: &pol::KeyExchangeRule) -> PeerConfig {
        let child = ike_proto::ikev2::ChildConfig::tunnel("c", Vec::new(), Vec::new());
        PeerConfig::psk(
            &r.name,
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            ike_proto::crypto::Secret::from("k"),
            child,
        )
    }

    #[test]
    fn ikev1_sends_no_trust_anchor() {
        let pki = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../vm-tests/scenarios/iked/rsa-keyring/pki/"
        );
        let der = |f: &str| {
            let pem = std::fs::read(format!("{pki}{f}")).unwrap();
            ike_proto::crypto::cert::Certificate::from_pem(&pem)
                .unwrap()
                .der()
                .to_vec()
        };
        let (moon, ca) = (der("moon.pem"), der("ca.pem"));
        let mut chain = vec![moon.clone(), ca.clone()];
        without_trust_anchors(&mut chain);
        assert_eq!(chain, vec![moon.clone()]);
        // A self-signed end certificate is still sent.
        let mut only = vec![ca.clone()];
        without_trust_anchors(&mut only);
        assert_eq!(only, vec![ca]);
        // Something unparsable is left for the peer to judge.
        let mut odd = vec![moon.clone(), vec![1, 2, 3]];
        without_trust_anchors(&mut odd);
        assert_eq!(odd.len(), 2);
    }

    #[test]
    fn rules_become_ikev1_policies() {
        let r = rule(
            "KeyExchangeRule r { RemoteSecurityEndpoint { Location 192.0.2.2 } SharedKey Ascii k \
             KeyExchangeAction { HowToInitiate Aggressive \
               KeyExchangeOffer { HowToEncrypt AES_CBC KeyLength 256 HowToAuthMsgs SHA2_384 DHGroup Group20 } \
               KeyExchangeOffer { HowToEncrypt DES } } }",
        );
        let (p, initiates) = v1_peer(&r, &peer_for(&r)).unwrap();
        assert!(initiates);
        assert_eq!(p.v1.initiate, ExchangeMode::Aggressive);
        assert!(p.v1.aggressive_psk);
        assert_eq!(p.v1.respond, ResponderModes::Main);
        assert_eq!(
            p.v1.proposals,
            vec![P1Proposal {
                encr: EncrAlg::AesCbc { key_bits: 256 },
                hash: HashAlg::Sha384,
                dh: DhGroup(20)
            }]
        );
        assert!(!p.peer.allow_legacy);

        // An IKEv2 rule answers IKEv1 main mode only, with the engine's offers.
        let r = rule(
            "KeyExchangeRule r { SharedKey Ascii k KeyExchangeAction { \
               KeyExchangeOffer { HowToEncrypt AES_GCM_16 KeyLength 256 } } }",
        );
        let (p, initiates) = v1_peer(&r, &peer_for(&r)).unwrap();
        assert!(!initiates && !p.v1.aggressive_psk);
        assert!(p.v1.proposals.is_empty());
        // … but initiating main mode with no offer IKEv1 can run is an error.
        let r = rule(
            "KeyExchangeRule r { SharedKey Ascii k KeyExchangeAction { HowToInitiate Main \
               KeyExchangeOffer { HowToEncrypt DES } } }",
        );
        assert!(v1_peer(&r, &peer_for(&r)).is_err());
        // Legacy offers, once coded, are allowed.
        let r = rule(
            "KeyExchangeRule r { SharedKey Ascii k KeyExchangeAction { HowToInitiate Main \
               HowToRespondIKEv1 Either \
               KeyExchangeOffer { HowToEncrypt 3DES HowToAuthMsgs SHA1 DHGroup Group14 } } }",
        );
        let (p, _) = v1_peer(&r, &peer_for(&r)).unwrap();
        assert!(p.peer.allow_legacy && p.v1.aggressive_psk);
        assert_eq!(p.v1.respond, ResponderModes::Either);
    }

    #[test]
    fn datagrams_go_to_their_engine() {
        let mut e = Engines::new(EndpointConfig::default());
        let now = Instant::now();
        let (l, r): (SocketAddr, SocketAddr) = (
            "192.0.2.1:500".parse().unwrap(),
            "192.0.2.2:500".parse().unwrap(),
        );
        // A garbage IKEv1 header (major version 1) counts as invalid in the
        // IKEv1 engine, an IKEv2 one in the IKEv2 engine.
        let mut v1 = vec![0u8; 28];
        v1[17] = 0x10;
        e.handle_datagram(now, l, r, &v1);
        assert_eq!(e.v1.statistics().invalid_packets, 1);
        assert_eq!(e.v2.statistics().invalid_packets, 0);
        let mut v2 = vec![0u8; 28];
        v2[17] = 0x20;
        e.handle_datagram(now, l, r, &v2);
        assert_eq!(e.v2.statistics().invalid_packets, 1);
        // On 4500 the marker is looked past.
        let (l4, r4): (SocketAddr, SocketAddr) = (
            "192.0.2.1:4500".parse().unwrap(),
            "192.0.2.2:4500".parse().unwrap(),
        );
        let mut m = vec![0u8; 4];
        m.extend_from_slice(&v1);
        e.handle_datagram(now, l4, r4, &m);
        assert_eq!(e.v1.statistics().invalid_packets, 2);
        assert_eq!(e.statistics().invalid_packets, 3);
        assert!(is_v1_sa(IkeSaId(V1_BASE)) && !is_v1_sa(IkeSaId(7)));
    }
}
