//! Cryptography: signature schemes and keys ([`sig`]), certificates and chain validation
//! ([`cert`]), and a minimal DER codec ([`der`]).

pub mod cert;
pub mod der;
pub mod sig;
