//! IKEv1 (RFC 2409) beside IKEv2, sans-IO like [`crate::ikev2`].
//!
//! - [`wire`]: the ISAKMP codec (RFC 2408, RFC 2407, RFC 3947 payloads).
//! - [`crypto`]: SKEYID and its derivatives, IVs, HASH_I/R, quick mode hashes and KEYMAT,
//!   NAT-D, message encryption.
//! - [`Endpoint`]: all ISAKMP SAs of one stack. Same driver contract and output types as
//!   [`crate::ikev2::Endpoint`] ([`crate::ikev2::Transmit`], [`crate::ikev2::Event`] —
//!   including the same `SignRequest`, so an NSS-held key signs IKEv1 too —,
//!   [`crate::ikev2::Statistics`]); handles live in their own number range so a driver can
//!   keep both endpoints' handles in one table. Route a datagram by [`is_ikev1`].
//! - Policies: [`V1Peer`] = the shared [`crate::ikev2::PeerConfig`] plus [`V1Options`]
//!   (exchange mode, responder modes, phase 1 offers, aggressive-mode PSK opt-in).
//!
//! Exchanges: `phase1` (main and aggressive mode, PSK and RSA signatures, NAT-T),
//! `quick` (quick mode, PFS, IDs, lifetimes, RESPONDER-LIFETIME, rekey), `info`
//! (DELETE, notifies, DPD); `sa` holds one ISAKMP SA with its IV chains, retransmission and
//! timers.

mod config;
pub mod crypto;
mod endpoint;
pub mod ids;
mod info;
mod phase1;
pub mod proposal;
mod quick;
mod sa;
pub mod wire;

pub use config::{
    ExchangeMode, P1Proposal, ResponderModes, V1Options, V1Peer, default_p1_proposals,
};
pub use endpoint::{Endpoint, V1ChildInfo, V1SaInfo, is_ikev1};
