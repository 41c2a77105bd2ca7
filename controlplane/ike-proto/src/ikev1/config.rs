//! IKEv1 policy: the shared [`PeerConfig`] (identities, authentication, children,
//! lifetimes, DPD) plus what only IKEv1 has — the exchange mode to initiate with, the modes
//! accepted as responder (z/OS `HowToInitiate` / `HowToRespondIKEv1`), the phase 1 offers
//! (encryption, hash, group: a z/OS KeyExchangeOffer), and whether aggressive mode may use
//! a pre-shared key at all.

use std::time::Duration;

use super::crypto::HashAlg;
use crate::crypto::dh;
use crate::crypto::encr::EncrAlg;
use crate::ikev2::config::PeerConfig;
use crate::wire::DhGroup;

/// Phase 1 exchange (RFC 2409 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ExchangeMode {
    /// Main mode (identity protection): six messages, identities encrypted.
    #[default]
    Main,
    /// Aggressive mode: three messages, identities and the responder's proof in clear.
    Aggressive,
}

impl ExchangeMode {
    /// The name z/OS displays (`ExchangeMode`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Main => "Main",
            Self::Aggressive => "Aggressive",
        }
    }
}

/// Which phase 1 modes the responder accepts (z/OS `HowToRespondIKEv1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ResponderModes {
    /// Main or aggressive.
    #[default]
    Either,
    /// Main mode only.
    Main,
    /// Aggressive mode only.
    Aggressive,
}

impl ResponderModes {
    /// Whether `mode` is accepted.
    pub fn allows(self, mode: ExchangeMode) -> bool {
        matches!(
            (self, mode),
            (Self::Either, _)
                | (Self::Main, ExchangeMode::Main)
                | (Self::Aggressive, ExchangeMode::Aggressive)
        )
    }
}

/// One phase 1 offer: the cipher protecting IKE messages, the hash (whose HMAC is the PRF)
/// and the Diffie-Hellman group. The authentication method follows from the policy's
/// [`crate::ikev2::LocalAuth`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct P1Proposal {
    /// AES-CBC (128/192/256) or 3DES.
    pub encr: EncrAlg,
    /// Hash algorithm.
    pub hash: HashAlg,
    /// Diffie-Hellman group.
    pub dh: DhGroup,
}

impl P1Proposal {
    /// Whether it uses a legacy algorithm (3DES, MD5, SHA-1, MODP 1024/1536).
    pub fn is_legacy(&self) -> bool {
        self.encr.is_legacy() || self.hash.is_legacy() || dh::is_legacy(self.dh)
    }

    /// Whether this crate can run it.
    pub fn is_supported(&self) -> bool {
        super::crypto::is_p1_cipher(self.encr) && dh::is_supported(self.dh)
    }
}

/// The default phase 1 offer: AES-CBC-256 and AES-CBC-128 with SHA2-256 over groups 14,
/// 19, 20 and 31, then AES-CBC-256 with SHA2-384/512 over group 20.
pub fn default_p1_proposals() -> Vec<P1Proposal> {
    let mut v = Vec::new();
    for key_bits in [256, 128] {
        for dh in [
            DhGroup::MODP_2048,
            DhGroup::ECP_256,
            DhGroup::ECP_384,
            DhGroup::CURVE25519,
        ] {
            v.push(P1Proposal {
                encr: EncrAlg::AesCbc { key_bits },
                hash: HashAlg::Sha256,
                dh,
            });
        }
    }
    for hash in [HashAlg::Sha384, HashAlg::Sha512] {
        v.push(P1Proposal {
            encr: EncrAlg::AesCbc { key_bits: 256 },
            hash,
            dh: DhGroup::ECP_384,
        });
    }
    v
}

/// IKEv1 settings of one policy.
#[derive(Debug, Clone)]
pub struct V1Options {
    /// Exchange to initiate with (z/OS `HowToInitiate Main|Aggressive`).
    pub initiate: ExchangeMode,
    /// Exchanges accepted as responder (z/OS `HowToRespondIKEv1`).
    pub respond: ResponderModes,
    /// Permit aggressive mode with a pre-shared key. Off by default: in aggressive mode the
    /// responder sends HASH_R, a keyed hash of public values under the PSK, in the clear to
    /// whoever sent the first message, so anyone — even without the key — can collect it and
    /// test PSK guesses offline at leisure (a dictionary attack). Main mode does not expose
    /// anything keyed by the PSK to an unauthenticated party.
    pub aggressive_psk: bool,
    /// Phase 1 offers in preference order; empty: the CBC suites of the policy's IKEv2
    /// proposals (hash = the PRF's hash) followed by [`default_p1_proposals`].
    pub proposals: Vec<P1Proposal>,
    /// How long a rekeyed child SA stays installed after its replacement, so packets in
    /// flight on the old SA still arrive (make-before-break).
    pub rekey_overlap: Duration,
}

impl Default for V1Options {
    fn default() -> Self {
        Self {
            initiate: ExchangeMode::Main,
            respond: ResponderModes::Either,
            aggressive_psk: false,
            proposals: Vec::new(),
            rekey_overlap: Duration::from_secs(2),
        }
    }
}

/// A peer policy for IKEv1.
#[derive(Debug, Clone)]
pub struct V1Peer {
    /// The policy shared with IKEv2.
    pub peer: PeerConfig,
    /// IKEv1 specifics.
    pub v1: V1Options,
}

impl V1Peer {
    /// Main mode with the defaults.
    pub fn new(peer: PeerConfig) -> Self {
        Self {
            peer,
            v1: V1Options::default(),
        }
    }

    /// The phase 1 offers this policy makes and accepts, legacy ones removed unless the
    /// policy allows them.
    pub fn p1_proposals(&self) -> Vec<P1Proposal> {
        let mut v: Vec<P1Proposal> = if self.v1.proposals.is_empty() {
            self.peer
                .ike_proposals
                .iter()
                .filter(|s| super::crypto::is_p1_cipher(s.encr))
                .map(|s| P1Proposal {
                    encr: s.encr,
                    hash: HashAlg::from_prf(s.prf),
                    dh: s.dh,
                })
                .chain(default_p1_proposals())
                .collect()
        } else {
            self.v1.proposals.clone()
        };
        v.retain(|p| p.is_supported() && (self.peer.allow_legacy || !p.is_legacy()));
        let mut seen = Vec::with_capacity(v.len());
        v.retain(|p| {
            let fresh = !seen.contains(p);
            seen.push(*p);
            fresh
        });
        v
    }
}
