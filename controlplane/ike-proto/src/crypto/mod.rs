//! Cryptography.
//!
//! - [`sig`]: signature schemes, keys, the [`sig::Signer`] trait (usable outside IKE).
//!   `rsa_raw` adds the DigestInfo-less RSA signatures of IKEv1.
//! - [`cert`]: certificates, distinguished names, chain validation with CRLs.
//! - [`dh`], [`prf`], [`integ`], [`encr`]: the IKE transforms.
//! - [`keys`]: the IKEv2 key schedule (SKEYSEED, SK_*, child KEYMAT).
//! - [`secret`]: zeroizing, redacting byte strings.
//! - [`der`]: a minimal DER codec.

pub mod cert;
pub mod der;
pub mod dh;
pub mod encr;
pub mod integ;
pub mod keys;
mod modp_primes;
pub mod prf;
mod rsa_raw;
pub mod secret;
pub mod sig;

pub use secret::Secret;
