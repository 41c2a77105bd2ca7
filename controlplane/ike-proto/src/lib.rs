//! Sans-IO IKEv2 (and, later, IKEv1) engine: wire codec, state machines, key derivation,
//! crypto suites.
//!
//! This crate performs no I/O and reads no clock: the caller feeds it datagrams and the
//! current time, and polls it for datagrams to send, timers and events. It depends on no
//! other gatekey crate (iked depends on it, never the reverse).
//!
//! Modules:
//! - [`crypto`]: signatures, keys, certificates and chain validation (usable outside IKE:
//!   the NSS server signs with [`crypto::sig::LocalSigner`]).
//! - [`identity`]: IKE identities shared by IKEv2 and IKEv1.
//! - [`wire`]: the message codec.
//! - [`ikev1`]: IKEv1 (RFC 2409): the ISAKMP codec, key derivation, the IKEv1 engine.
//! - [`ikev2`]: the IKEv2 engine ([`ikev2::Endpoint`]).

pub mod crypto;
mod error;
pub mod identity;
pub mod ikev1;
pub mod ikev2;
pub mod wire;

pub use error::{Error, Result};
pub use identity::{IdType, Identity};
