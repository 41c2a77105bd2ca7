//! IKEv1 (RFC 2409) beside IKEv2: the ISAKMP codec ([`wire`]), the key derivation and
//! message protection ([`crypto`]).

pub mod crypto;
pub mod wire;
