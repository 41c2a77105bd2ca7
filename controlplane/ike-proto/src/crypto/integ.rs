//! Integrity algorithms for the SK payload with non-AEAD ciphers (RFC 7296, RFC 4868).

use ring::hmac;

use super::prf::hmac_md5;
use super::secret::ct_eq;
use crate::wire::IntegId;

/// A negotiated integrity algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntegAlg {
    /// AUTH_HMAC_SHA2_256_128.
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192.
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256.
    HmacSha512_256,
    /// AUTH_HMAC_SHA1_96 (legacy).
    HmacSha1_96,
    /// AUTH_HMAC_MD5_96 (legacy).
    HmacMd5_96,
}

impl IntegAlg {
    /// From a transform ID.
    pub fn from_id(id: IntegId) -> Option<Self> {
        Some(match id {
            IntegId::HMAC_SHA2_256_128 => Self::HmacSha256_128,
            IntegId::HMAC_SHA2_384_192 => Self::HmacSha384_192,
            IntegId::HMAC_SHA2_512_256 => Self::HmacSha512_256,
            IntegId::HMAC_SHA1_96 => Self::HmacSha1_96,
            IntegId::HMAC_MD5_96 => Self::HmacMd5_96,
            _ => return None,
        })
    }

    /// The transform ID.
    pub fn id(self) -> IntegId {
        match self {
            Self::HmacSha256_128 => IntegId::HMAC_SHA2_256_128,
            Self::HmacSha384_192 => IntegId::HMAC_SHA2_384_192,
            Self::HmacSha512_256 => IntegId::HMAC_SHA2_512_256,
            Self::HmacSha1_96 => IntegId::HMAC_SHA1_96,
            Self::HmacMd5_96 => IntegId::HMAC_MD5_96,
        }
    }

    /// Whether only offered when legacy algorithms are enabled.
    pub fn is_legacy(self) -> bool {
        matches!(self, Self::HmacSha1_96 | Self::HmacMd5_96)
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
            Self::HmacSha1_96 => 20,
            Self::HmacMd5_96 => 16,
        }
    }

    /// Truncated output (ICV) length in bytes.
    pub fn icv_len(self) -> usize {
        match self {
            Self::HmacSha256_128 => 16,
            Self::HmacSha384_192 => 24,
            Self::HmacSha512_256 => 32,
            Self::HmacSha1_96 | Self::HmacMd5_96 => 12,
        }
    }

    /// The Linux crypto API name (for ESP/AH SAs).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Self::HmacSha256_128 => "hmac(sha256)",
            Self::HmacSha384_192 => "hmac(sha384)",
            Self::HmacSha512_256 => "hmac(sha512)",
            Self::HmacSha1_96 => "hmac(sha1)",
            Self::HmacMd5_96 => "hmac(md5)",
        }
    }

    /// Computes the truncated MAC.
    pub fn compute(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        let alg = match self {
            Self::HmacSha256_128 => hmac::HMAC_SHA256,
            Self::HmacSha384_192 => hmac::HMAC_SHA384,
            Self::HmacSha512_256 => hmac::HMAC_SHA512,
            Self::HmacSha1_96 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::HmacMd5_96 => {
                let full = hmac_md5(key, data);
                return full.get(..12).unwrap_or(&full).to_vec();
            }
        };
        let k = hmac::Key::new(alg, key);
        let mut ctx = hmac::Context::with_key(&k);
        for d in data {
            ctx.update(d);
        }
        let tag = ctx.sign();
        let full = tag.as_ref();
        full.get(..self.icv_len()).unwrap_or(full).to_vec()
    }

    /// Checks a MAC in constant time.
    pub fn verify(self, key: &[u8], data: &[&[u8]], icv: &[u8]) -> bool {
        ct_eq(&self.compute(key, data), icv)
    }
}
