//! Pseudo-random functions and prf+ (RFC 7296 §2.13, RFC 4868).

use ring::hmac;

use super::secret::Secret;
use crate::wire::PrfId;

/// A negotiated PRF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA2_256.
    HmacSha256,
    /// PRF_HMAC_SHA2_384.
    HmacSha384,
    /// PRF_HMAC_SHA2_512.
    HmacSha512,
    /// PRF_HMAC_SHA1 (legacy).
    HmacSha1,
    /// PRF_HMAC_MD5 (legacy).
    HmacMd5,
}

impl PrfAlg {
    /// From a transform ID.
    pub fn from_id(id: PrfId) -> Option<Self> {
        Some(match id {
            PrfId::HMAC_SHA2_256 => Self::HmacSha256,
            PrfId::HMAC_SHA2_384 => Self::HmacSha384,
            PrfId::HMAC_SHA2_512 => Self::HmacSha512,
            PrfId::HMAC_SHA1 => Self::HmacSha1,
            PrfId::HMAC_MD5 => Self::HmacMd5,
            _ => return None,
        })
    }

    /// The transform ID.
    pub fn id(self) -> PrfId {
        match self {
            Self::HmacSha256 => PrfId::HMAC_SHA2_256,
            Self::HmacSha384 => PrfId::HMAC_SHA2_384,
            Self::HmacSha512 => PrfId::HMAC_SHA2_512,
            Self::HmacSha1 => PrfId::HMAC_SHA1,
            Self::HmacMd5 => PrfId::HMAC_MD5,
        }
    }

    /// Whether only offered when legacy algorithms are enabled.
    pub fn is_legacy(self) -> bool {
        matches!(self, Self::HmacSha1 | Self::HmacMd5)
    }

    /// Output length, which is also the preferred key length (SK_d, SK_pi, SK_pr).
    pub fn output_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
            Self::HmacSha1 => 20,
            Self::HmacMd5 => 16,
        }
    }

    fn ring_alg(self) -> Option<hmac::Algorithm> {
        match self {
            Self::HmacSha256 => Some(hmac::HMAC_SHA256),
            Self::HmacSha384 => Some(hmac::HMAC_SHA384),
            Self::HmacSha512 => Some(hmac::HMAC_SHA512),
            Self::HmacSha1 => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            Self::HmacMd5 => None,
        }
    }

    /// prf(key, data) over the concatenation of `data` parts.
    pub fn prf(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        match self.ring_alg() {
            Some(a) => {
                let k = hmac::Key::new(a, key);
                let mut ctx = hmac::Context::with_key(&k);
                for d in data {
                    ctx.update(d);
                }
                ctx.sign().as_ref().to_vec()
            }
            None => hmac_md5(key, data).to_vec(),
        }
    }

    /// prf+(key, seed) truncated to `len` bytes (RFC 7296 §2.13). At most 255 blocks.
    pub fn prf_plus(self, key: &[u8], seed: &[&[u8]], len: usize) -> Secret {
        let mut out = Vec::with_capacity(len + self.output_len());
        let mut t: Vec<u8> = Vec::new();
        let mut n: u8 = 1;
        while out.len() < len {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(seed.len() + 2);
            parts.push(&t);
            parts.extend_from_slice(seed);
            let counter = [n];
            parts.push(&counter);
            let block = Secret::new(self.prf(key, &parts));
            out.extend_from_slice(block.expose());
            t = block.expose().to_vec();
            n = match n.checked_add(1) {
                Some(x) => x,
                None => break,
            };
        }
        zeroize::Zeroize::zeroize(&mut t);
        out.truncate(len);
        Secret::new(out)
    }
}

/// HMAC-MD5 (RFC 2104) for legacy peers; ring has no MD5.
pub(crate) fn hmac_md5(key: &[u8], data: &[&[u8]]) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        let d = Md5::digest(key);
        k[..16].copy_from_slice(&d);
    } else if let Some(slot) = k.get_mut(..key.len()) {
        slot.copy_from_slice(key);
    }
    let mut inner = Md5::new();
    inner.update(k.map(|b| b ^ 0x36));
    for d in data {
        inner.update(d);
    }
    let ih = inner.finalize();
    let mut outer = Md5::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    zeroize::Zeroize::zeroize(&mut k);
    outer.finalize().into()
}
