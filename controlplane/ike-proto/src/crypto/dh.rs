//! Diffie-Hellman key exchange: ECP groups 19/20 (RFC 5903) and Curve25519 (group 31,
//! RFC 8031) with ring; MODP groups 14/15 (RFC 3526) and legacy 2/5 with crypto-bigint
//! (constant-time modular exponentiation).

use std::fmt;

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use ring::agreement;
use ring::rand::SecureRandom;
use zeroize::Zeroize;

use super::modp_primes;
use super::secret::Secret;
use crate::error::{Error, Result};
use crate::wire::DhGroup;

/// Private exponent length for MODP groups, in bits (≥ 2 × the group's security strength).
const MODP_EXPONENT_BITS: u32 = 512;

/// Whether this crate implements `group`.
pub fn is_supported(group: DhGroup) -> bool {
    matches!(
        group,
        DhGroup::ECP_256
            | DhGroup::ECP_384
            | DhGroup::CURVE25519
            | DhGroup::MODP_2048
            | DhGroup::MODP_3072
            | DhGroup::MODP_1024
            | DhGroup::MODP_1536
    )
}

/// Whether `group` is only offered when legacy algorithms are enabled.
pub fn is_legacy(group: DhGroup) -> bool {
    matches!(group, DhGroup::MODP_1024 | DhGroup::MODP_1536)
}

/// Length of the KE payload's public value for `group`.
pub fn public_len(group: DhGroup) -> Option<usize> {
    Some(match group {
        DhGroup::ECP_256 => 64,
        DhGroup::ECP_384 => 96,
        DhGroup::CURVE25519 => 32,
        DhGroup::MODP_1024 => 128,
        DhGroup::MODP_1536 => 192,
        DhGroup::MODP_2048 => 256,
        DhGroup::MODP_3072 => 384,
        _ => return None,
    })
}

fn modp_prime(group: DhGroup) -> Option<&'static [u8]> {
    Some(match group {
        DhGroup::MODP_1024 => &modp_primes::MODP_1024,
        DhGroup::MODP_1536 => &modp_primes::MODP_1536,
        DhGroup::MODP_2048 => &modp_primes::MODP_2048,
        DhGroup::MODP_3072 => &modp_primes::MODP_3072,
        _ => return None,
    })
}

enum Private {
    Ring(agreement::EphemeralPrivateKey),
    Modp {
        x: BoxedUint,
        params: BoxedMontyParams,
        prime: &'static [u8],
    },
}

/// One side's ephemeral key pair for one exchange; consumed by [`KeyExchange::agree`].
pub struct KeyExchange {
    group: DhGroup,
    private: Option<Private>,
    public: Vec<u8>,
}

impl fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl Drop for KeyExchange {
    fn drop(&mut self) {
        if let Some(Private::Modp { x, .. }) = &mut self.private {
            x.zeroize();
        }
    }
}

fn ring_alg(group: DhGroup) -> Option<&'static agreement::Algorithm> {
    match group {
        DhGroup::ECP_256 => Some(&agreement::ECDH_P256),
        DhGroup::ECP_384 => Some(&agreement::ECDH_P384),
        DhGroup::CURVE25519 => Some(&agreement::X25519),
        _ => None,
    }
}

impl KeyExchange {
    /// Generates a key pair for `group`.
    pub fn generate(group: DhGroup, rng: &dyn SecureRandom) -> Result<Self> {
        if let Some(alg) = ring_alg(group) {
            let private = agreement::EphemeralPrivateKey::generate(alg, rng)
                .map_err(|_| Error::Crypto("ECDH key generation"))?;
            let pk = private
                .compute_public_key()
                .map_err(|_| Error::Crypto("ECDH public key"))?;
            // RFC 5903 §7: x || y without the SEC1 0x04 prefix.
            let public = match group {
                DhGroup::CURVE25519 => pk.as_ref().to_vec(),
                _ => pk.as_ref().get(1..).unwrap_or(&[]).to_vec(),
            };
            return Ok(Self {
                group,
                private: Some(Private::Ring(private)),
                public,
            });
        }
        let prime = modp_prime(group)
            .ok_or_else(|| Error::NoProposalChosen(format!("DH group {group} not supported")))?;
        let bits = (prime.len() * 8) as u32;
        let p = BoxedUint::from_be_slice(prime, bits).map_err(|_| Error::Crypto("MODP prime"))?;
        let p = Option::<Odd<BoxedUint>>::from(Odd::new(p)).ok_or(Error::Crypto("MODP prime"))?;
        let params = BoxedMontyParams::new_vartime(p);
        let mut xb = vec![0u8; (MODP_EXPONENT_BITS / 8) as usize];
        rng.fill(&mut xb)
            .map_err(|_| Error::Crypto("random exponent"))?;
        if let Some(b) = xb.first_mut() {
            *b |= 0x80; // full-length exponent
        }
        let x = BoxedUint::from_be_slice(&xb, bits).map_err(|_| Error::Crypto("exponent"))?;
        xb.zeroize();
        let g = BoxedMontyForm::new(
            BoxedUint::from_be_slice(&[2], bits).map_err(|_| Error::Crypto("g"))?,
            params.clone(),
        );
        let y = g.pow_bounded_exp(&x, MODP_EXPONENT_BITS).retrieve();
        let public = pad_be(&y.to_be_bytes(), prime.len());
        Ok(Self {
            group,
            private: Some(Private::Modp { x, params, prime }),
            public,
        })
    }

    /// The group.
    pub fn group(&self) -> DhGroup {
        self.group
    }

    /// The public value for the KE payload.
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// Computes the shared secret g^ir from the peer's KE data. Rejects malformed or
    /// degenerate public values (RFC 6989).
    pub fn agree(self, peer: &[u8]) -> Result<Secret> {
        let group = self.group;
        let bad = || Error::Protocol(format!("invalid {group} public value"));
        if public_len(group) != Some(peer.len()) {
            return Err(bad());
        }
        let mut me = self;
        let private = me
            .private
            .take()
            .ok_or(Error::Crypto("key exchange already used"))?;
        match private {
            Private::Ring(k) => {
                let alg = ring_alg(group).ok_or(Error::Crypto("group"))?;
                let mut pk = Vec::with_capacity(peer.len() + 1);
                if group != DhGroup::CURVE25519 {
                    pk.push(4);
                }
                pk.extend_from_slice(peer);
                let s = agreement::agree_ephemeral(
                    k,
                    &agreement::UnparsedPublicKey::new(alg, &pk),
                    Secret::from_slice,
                )
                .map_err(|_| bad())?;
                if s.expose().iter().all(|b| *b == 0) {
                    return Err(bad());
                }
                Ok(s)
            }
            Private::Modp { x, params, prime } => {
                let bits = (prime.len() * 8) as u32;
                let y = BoxedUint::from_be_slice(peer, bits).map_err(|_| bad())?;
                let p = BoxedUint::from_be_slice(prime, bits).map_err(|_| bad())?;
                let one = BoxedUint::one_with_precision(bits);
                let p_minus_1 = p.wrapping_sub(&one);
                // 1 < y < p - 1
                if y <= one || y >= p_minus_1 {
                    return Err(bad());
                }
                let ym = BoxedMontyForm::new(y, params);
                let mut x = x;
                let s = ym.pow_bounded_exp(&x, MODP_EXPONENT_BITS).retrieve();
                x.zeroize();
                let mut be = s.to_be_bytes().to_vec();
                let out = pad_be(&be, prime.len());
                be.zeroize();
                Ok(Secret::new(out))
            }
        }
    }
}

fn pad_be(b: &[u8], len: usize) -> Vec<u8> {
    let start = b.len().saturating_sub(len);
    let b = b.get(start..).unwrap_or(b);
    let mut out = vec![0u8; len - b.len()];
    out.extend_from_slice(b);
    out
}
