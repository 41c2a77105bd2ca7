//! Typed IPsec algorithms: kernel crypto names, key lengths, ICV and truncation lengths,
//! IKEv2 transform IDs, and the SA's cryptographic transform ([`SaCrypto`]).
//!
//! Key lengths here are the lengths of the keying material the kernel expects, which for
//! AEAD and counter modes includes the 4-octet salt/nonce that IKEv2 takes from KEYMAT
//! (RFC 4106 §8.1, RFC 7634 §2, RFC 3686 §5.1).

use crate::error::{Error, Result};
use crate::key::SecretKey;

/// AES key sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AesKeySize {
    /// 128-bit key.
    Aes128,
    /// 192-bit key.
    Aes192,
    /// 256-bit key.
    Aes256,
}

impl AesKeySize {
    /// Key size in bits.
    pub const fn bits(self) -> u32 {
        match self {
            AesKeySize::Aes128 => 128,
            AesKeySize::Aes192 => 192,
            AesKeySize::Aes256 => 256,
        }
    }

    /// Key size in bytes.
    pub const fn bytes(self) -> usize {
        (self.bits() / 8) as usize
    }

    /// The size for a key of `bits` bits, if AES has one.
    pub const fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            128 => Some(AesKeySize::Aes128),
            192 => Some(AesKeySize::Aes192),
            256 => Some(AesKeySize::Aes256),
            _ => None,
        }
    }
}

/// Combined-mode (AEAD) algorithms for ESP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AeadAlgorithm {
    /// AES-GCM with a 16-octet ICV (RFC 4106), `rfc4106(gcm(aes))`; IKEv2 ENCR_AES_GCM_16 (20).
    AesGcm16(AesKeySize),
    /// AES-GCM with a 12-octet ICV (RFC 4106); IKEv2 ENCR_AES_GCM_12 (19).
    AesGcm12(AesKeySize),
    /// AES-GCM with an 8-octet ICV (RFC 4106); IKEv2 ENCR_AES_GCM_8 (18).
    AesGcm8(AesKeySize),
    /// ChaCha20-Poly1305 (RFC 7634), `rfc7539esp(chacha20,poly1305)`; IKEv2 ENCR_CHACHA20_POLY1305 (28).
    ChaCha20Poly1305,
    /// An algorithm this crate does not model, as the kernel named it.
    Other {
        /// Kernel crypto API name.
        name: String,
        /// ICV length in bits.
        icv_bits: u32,
    },
}

impl AeadAlgorithm {
    /// The kernel crypto API name.
    pub fn kernel_name(&self) -> &str {
        match self {
            AeadAlgorithm::AesGcm16(_) | AeadAlgorithm::AesGcm12(_) | AeadAlgorithm::AesGcm8(_) => {
                "rfc4106(gcm(aes))"
            }
            AeadAlgorithm::ChaCha20Poly1305 => "rfc7539esp(chacha20,poly1305)",
            AeadAlgorithm::Other { name, .. } => name,
        }
    }

    /// ICV length in bits.
    pub fn icv_bits(&self) -> u32 {
        match self {
            AeadAlgorithm::AesGcm16(_) | AeadAlgorithm::ChaCha20Poly1305 => 128,
            AeadAlgorithm::AesGcm12(_) => 96,
            AeadAlgorithm::AesGcm8(_) => 64,
            AeadAlgorithm::Other { icv_bits, .. } => *icv_bits,
        }
    }

    /// Keying material length in bytes, salt included (`None` for [`AeadAlgorithm::Other`]).
    pub fn key_len(&self) -> Option<usize> {
        match self {
            AeadAlgorithm::AesGcm16(k) | AeadAlgorithm::AesGcm12(k) | AeadAlgorithm::AesGcm8(k) => {
                Some(k.bytes() + 4)
            }
            AeadAlgorithm::ChaCha20Poly1305 => Some(32 + 4),
            AeadAlgorithm::Other { .. } => None,
        }
    }

    /// Salt length in bytes (the tail of the keying material).
    pub fn salt_len(&self) -> usize {
        match self {
            AeadAlgorithm::Other { .. } => 0,
            _ => 4,
        }
    }

    /// IKEv2 transform type 1 ID (RFC 7296 §3.3.2, IANA registry).
    pub fn ikev2_transform_id(&self) -> Option<u16> {
        match self {
            AeadAlgorithm::AesGcm8(_) => Some(18),
            AeadAlgorithm::AesGcm12(_) => Some(19),
            AeadAlgorithm::AesGcm16(_) => Some(20),
            AeadAlgorithm::ChaCha20Poly1305 => Some(28),
            AeadAlgorithm::Other { .. } => None,
        }
    }

    /// The algorithm for an IKEv2 transform ID and key length attribute (bits, salt excluded).
    pub fn from_ikev2(transform_id: u16, key_bits: Option<u16>) -> Option<Self> {
        let aes = || AesKeySize::from_bits(u32::from(key_bits?));
        match transform_id {
            18 => Some(AeadAlgorithm::AesGcm8(aes()?)),
            19 => Some(AeadAlgorithm::AesGcm12(aes()?)),
            20 => Some(AeadAlgorithm::AesGcm16(aes()?)),
            28 if key_bits.is_none() || key_bits == Some(256) => {
                Some(AeadAlgorithm::ChaCha20Poly1305)
            }
            _ => None,
        }
    }

    /// Legacy algorithms are only installed on explicit request. No AEAD is legacy.
    pub fn is_legacy(&self) -> bool {
        false
    }

    /// Recognise a kernel name/lengths triple as reported by the kernel.
    pub fn from_kernel(name: &str, key_bits: u32, icv_bits: u32) -> Self {
        if name == "rfc4106(gcm(aes))"
            && let Some(size) = key_bits.checked_sub(32).and_then(AesKeySize::from_bits)
        {
            match icv_bits {
                128 => return AeadAlgorithm::AesGcm16(size),
                96 => return AeadAlgorithm::AesGcm12(size),
                64 => return AeadAlgorithm::AesGcm8(size),
                _ => {}
            }
        }
        if name == "rfc7539esp(chacha20,poly1305)" && key_bits == 288 && icv_bits == 128 {
            return AeadAlgorithm::ChaCha20Poly1305;
        }
        AeadAlgorithm::Other {
            name: name.to_owned(),
            icv_bits,
        }
    }
}

/// Encryption-only ciphers for ESP (used together with an [`IntegrityAlgorithm`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CipherAlgorithm {
    /// AES-CBC (RFC 3602), `cbc(aes)`; IKEv2 ENCR_AES_CBC (12).
    AesCbc(AesKeySize),
    /// AES-CTR (RFC 3686), `rfc3686(ctr(aes))`, key plus 4-octet nonce; IKEv2 ENCR_AES_CTR (13).
    AesCtr(AesKeySize),
    /// 3DES-CBC (RFC 2451), `cbc(des3_ede)`; legacy; IKEv2 ENCR_3DES (3).
    TripleDesCbc,
    /// No encryption (RFC 2410), `ecb(cipher_null)`; IKEv2 ENCR_NULL (11).
    Null,
    /// An algorithm this crate does not model, as the kernel named it.
    Other {
        /// Kernel crypto API name.
        name: String,
    },
}

impl CipherAlgorithm {
    /// The kernel crypto API name.
    pub fn kernel_name(&self) -> &str {
        match self {
            CipherAlgorithm::AesCbc(_) => "cbc(aes)",
            CipherAlgorithm::AesCtr(_) => "rfc3686(ctr(aes))",
            CipherAlgorithm::TripleDesCbc => "cbc(des3_ede)",
            CipherAlgorithm::Null => "ecb(cipher_null)",
            CipherAlgorithm::Other { name } => name,
        }
    }

    /// Keying material length in bytes (nonce included for CTR).
    pub fn key_len(&self) -> Option<usize> {
        match self {
            CipherAlgorithm::AesCbc(k) => Some(k.bytes()),
            CipherAlgorithm::AesCtr(k) => Some(k.bytes() + 4),
            CipherAlgorithm::TripleDesCbc => Some(24),
            CipherAlgorithm::Null => Some(0),
            CipherAlgorithm::Other { .. } => None,
        }
    }

    /// IKEv2 transform type 1 ID.
    pub fn ikev2_transform_id(&self) -> Option<u16> {
        match self {
            CipherAlgorithm::TripleDesCbc => Some(3),
            CipherAlgorithm::Null => Some(11),
            CipherAlgorithm::AesCbc(_) => Some(12),
            CipherAlgorithm::AesCtr(_) => Some(13),
            CipherAlgorithm::Other { .. } => None,
        }
    }

    /// The cipher for an IKEv2 transform ID and key length attribute (bits).
    pub fn from_ikev2(transform_id: u16, key_bits: Option<u16>) -> Option<Self> {
        let aes = || AesKeySize::from_bits(u32::from(key_bits?));
        match transform_id {
            3 => Some(CipherAlgorithm::TripleDesCbc),
            11 => Some(CipherAlgorithm::Null),
            12 => Some(CipherAlgorithm::AesCbc(aes()?)),
            13 => Some(CipherAlgorithm::AesCtr(aes()?)),
            _ => None,
        }
    }

    /// Legacy ciphers (3DES) are only installed on explicit request.
    pub fn is_legacy(&self) -> bool {
        matches!(self, CipherAlgorithm::TripleDesCbc)
    }

    /// Recognise a kernel name and key length.
    pub fn from_kernel(name: &str, key_bits: u32) -> Self {
        match name {
            "cbc(aes)" => {
                if let Some(k) = AesKeySize::from_bits(key_bits) {
                    return CipherAlgorithm::AesCbc(k);
                }
            }
            "rfc3686(ctr(aes))" => {
                if let Some(k) = key_bits.checked_sub(32).and_then(AesKeySize::from_bits) {
                    return CipherAlgorithm::AesCtr(k);
                }
            }
            "cbc(des3_ede)" if key_bits == 192 => return CipherAlgorithm::TripleDesCbc,
            "ecb(cipher_null)" if key_bits == 0 => return CipherAlgorithm::Null,
            _ => {}
        }
        CipherAlgorithm::Other {
            name: name.to_owned(),
        }
    }
}

/// Integrity algorithms for ESP (with a cipher) and AH, with their RFC truncation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IntegrityAlgorithm {
    /// HMAC-SHA-256-128 (RFC 4868), `hmac(sha256)`; IKEv2 AUTH_HMAC_SHA2_256_128 (12).
    HmacSha256,
    /// HMAC-SHA-384-192 (RFC 4868), `hmac(sha384)`; IKEv2 AUTH_HMAC_SHA2_384_192 (13).
    HmacSha384,
    /// HMAC-SHA-512-256 (RFC 4868), `hmac(sha512)`; IKEv2 AUTH_HMAC_SHA2_512_256 (14).
    HmacSha512,
    /// HMAC-SHA1-96 (RFC 2404), `hmac(sha1)`; legacy; IKEv2 AUTH_HMAC_SHA1_96 (2).
    HmacSha1,
    /// HMAC-MD5-96 (RFC 2403), `hmac(md5)`; legacy; IKEv2 AUTH_HMAC_MD5_96 (1).
    HmacMd5,
    /// AES-XCBC-MAC-96 (RFC 3566), `xcbc(aes)`; IKEv2 AUTH_AES_XCBC_96 (5).
    AesXcbc,
    /// AES-CMAC-96 (RFC 4494), `cmac(aes)`; IKEv2 AUTH_AES_CMAC_96 (8).
    AesCmac,
    /// An algorithm this crate does not model, as the kernel named it.
    Other {
        /// Kernel crypto API name.
        name: String,
        /// Truncated ICV length in bits.
        trunc_bits: u32,
    },
}

impl IntegrityAlgorithm {
    /// The kernel crypto API name.
    pub fn kernel_name(&self) -> &str {
        match self {
            IntegrityAlgorithm::HmacSha256 => "hmac(sha256)",
            IntegrityAlgorithm::HmacSha384 => "hmac(sha384)",
            IntegrityAlgorithm::HmacSha512 => "hmac(sha512)",
            IntegrityAlgorithm::HmacSha1 => "hmac(sha1)",
            IntegrityAlgorithm::HmacMd5 => "hmac(md5)",
            IntegrityAlgorithm::AesXcbc => "xcbc(aes)",
            IntegrityAlgorithm::AesCmac => "cmac(aes)",
            IntegrityAlgorithm::Other { name, .. } => name,
        }
    }

    /// Key length in bytes.
    pub fn key_len(&self) -> Option<usize> {
        match self {
            IntegrityAlgorithm::HmacSha256 => Some(32),
            IntegrityAlgorithm::HmacSha384 => Some(48),
            IntegrityAlgorithm::HmacSha512 => Some(64),
            IntegrityAlgorithm::HmacSha1 => Some(20),
            IntegrityAlgorithm::HmacMd5
            | IntegrityAlgorithm::AesXcbc
            | IntegrityAlgorithm::AesCmac => Some(16),
            IntegrityAlgorithm::Other { .. } => None,
        }
    }

    /// Truncated ICV length in bits (RFC 4868 §2.3 for SHA-2: half the hash length).
    pub fn trunc_bits(&self) -> u32 {
        match self {
            IntegrityAlgorithm::HmacSha256 => 128,
            IntegrityAlgorithm::HmacSha384 => 192,
            IntegrityAlgorithm::HmacSha512 => 256,
            IntegrityAlgorithm::HmacSha1
            | IntegrityAlgorithm::HmacMd5
            | IntegrityAlgorithm::AesXcbc
            | IntegrityAlgorithm::AesCmac => 96,
            IntegrityAlgorithm::Other { trunc_bits, .. } => *trunc_bits,
        }
    }

    /// IKEv2 transform type 3 ID.
    pub fn ikev2_transform_id(&self) -> Option<u16> {
        match self {
            IntegrityAlgorithm::HmacMd5 => Some(1),
            IntegrityAlgorithm::HmacSha1 => Some(2),
            IntegrityAlgorithm::AesXcbc => Some(5),
            IntegrityAlgorithm::AesCmac => Some(8),
            IntegrityAlgorithm::HmacSha256 => Some(12),
            IntegrityAlgorithm::HmacSha384 => Some(13),
            IntegrityAlgorithm::HmacSha512 => Some(14),
            IntegrityAlgorithm::Other { .. } => None,
        }
    }

    /// The algorithm for an IKEv2 transform type 3 ID.
    pub fn from_ikev2(transform_id: u16) -> Option<Self> {
        Some(match transform_id {
            1 => IntegrityAlgorithm::HmacMd5,
            2 => IntegrityAlgorithm::HmacSha1,
            5 => IntegrityAlgorithm::AesXcbc,
            8 => IntegrityAlgorithm::AesCmac,
            12 => IntegrityAlgorithm::HmacSha256,
            13 => IntegrityAlgorithm::HmacSha384,
            14 => IntegrityAlgorithm::HmacSha512,
            _ => return None,
        })
    }

    /// Legacy algorithms (HMAC-MD5, HMAC-SHA1) are only installed on explicit request.
    pub fn is_legacy(&self) -> bool {
        matches!(
            self,
            IntegrityAlgorithm::HmacSha1 | IntegrityAlgorithm::HmacMd5
        )
    }

    /// Recognise a kernel name and truncation length.
    pub fn from_kernel(name: &str, trunc_bits: u32) -> Self {
        let known = match name {
            "hmac(sha256)" => IntegrityAlgorithm::HmacSha256,
            "hmac(sha384)" => IntegrityAlgorithm::HmacSha384,
            "hmac(sha512)" => IntegrityAlgorithm::HmacSha512,
            "hmac(sha1)" => IntegrityAlgorithm::HmacSha1,
            "hmac(md5)" => IntegrityAlgorithm::HmacMd5,
            "xcbc(aes)" => IntegrityAlgorithm::AesXcbc,
            "cmac(aes)" => IntegrityAlgorithm::AesCmac,
            _ => {
                return IntegrityAlgorithm::Other {
                    name: name.to_owned(),
                    trunc_bits,
                };
            }
        };
        if known.trunc_bits() == trunc_bits {
            known
        } else {
            IntegrityAlgorithm::Other {
                name: name.to_owned(),
                trunc_bits,
            }
        }
    }
}

/// The cryptographic transform of an SA; it also determines the SA's protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaCrypto {
    /// ESP with a combined-mode algorithm.
    EspAead {
        /// The AEAD algorithm.
        alg: AeadAlgorithm,
        /// Keying material, salt included.
        key: SecretKey,
    },
    /// ESP with a cipher and an integrity algorithm.
    Esp {
        /// The cipher.
        cipher: CipherAlgorithm,
        /// Cipher key (nonce included for CTR).
        cipher_key: SecretKey,
        /// The integrity algorithm.
        integrity: IntegrityAlgorithm,
        /// Integrity key.
        integrity_key: SecretKey,
    },
    /// AH with an integrity algorithm.
    Ah {
        /// The integrity algorithm.
        integrity: IntegrityAlgorithm,
        /// Integrity key.
        key: SecretKey,
    },
    /// IP payload compression (IPComp) with the named kernel compressor, e.g. `deflate`.
    Comp {
        /// Kernel compressor name.
        name: String,
    },
    /// A combination the kernel reported that this crate does not model (for example an
    /// SA with no algorithms, or ESP with a cipher but no integrity).
    Unmodeled {
        /// The SA's protocol as the kernel reported it.
        proto: crate::types::Proto,
    },
}

impl SaCrypto {
    /// ESP with AEAD.
    pub fn esp_aead(alg: AeadAlgorithm, key: SecretKey) -> Self {
        SaCrypto::EspAead { alg, key }
    }

    /// ESP with cipher plus integrity.
    pub fn esp(
        cipher: CipherAlgorithm,
        cipher_key: SecretKey,
        integrity: IntegrityAlgorithm,
        integrity_key: SecretKey,
    ) -> Self {
        SaCrypto::Esp {
            cipher,
            cipher_key,
            integrity,
            integrity_key,
        }
    }

    /// AH.
    pub fn ah(integrity: IntegrityAlgorithm, key: SecretKey) -> Self {
        SaCrypto::Ah { integrity, key }
    }

    /// The XFRM protocol of this transform.
    pub fn proto(&self) -> crate::types::Proto {
        use crate::types::Proto;
        match self {
            SaCrypto::EspAead { .. } | SaCrypto::Esp { .. } => Proto::Esp,
            SaCrypto::Ah { .. } => Proto::Ah,
            SaCrypto::Comp { .. } => Proto::Comp,
            SaCrypto::Unmodeled { proto } => *proto,
        }
    }

    /// Whether any algorithm in this transform is legacy.
    pub fn is_legacy(&self) -> bool {
        match self {
            SaCrypto::EspAead { alg, .. } => alg.is_legacy(),
            SaCrypto::Esp {
                cipher, integrity, ..
            } => cipher.is_legacy() || integrity.is_legacy(),
            SaCrypto::Ah { integrity, .. } => integrity.is_legacy(),
            SaCrypto::Comp { .. } | SaCrypto::Unmodeled { .. } => false,
        }
    }

    /// Checks key lengths, name lengths and the legacy opt-in.
    pub fn validate(&self, allow_legacy: bool) -> Result<()> {
        fn check_len(what: &str, expected: Option<usize>, key: &SecretKey) -> Result<()> {
            match expected {
                Some(n) if n != key.len() => Err(Error::invalid(format!(
                    "{what} needs a {n}-byte key, got {} bytes",
                    key.len()
                ))),
                _ => Ok(()),
            }
        }
        fn check_name(name: &str) -> Result<()> {
            if name.is_empty() || name.len() >= 64 || name.contains('\0') {
                Err(Error::invalid(format!(
                    "bad kernel algorithm name {name:?}"
                )))
            } else {
                Ok(())
            }
        }
        if !allow_legacy {
            match self {
                SaCrypto::Esp { cipher, .. } if cipher.is_legacy() => {
                    return Err(Error::LegacyAlgorithm("3DES-CBC"));
                }
                SaCrypto::Esp { integrity, .. } | SaCrypto::Ah { integrity, .. }
                    if integrity.is_legacy() =>
                {
                    return Err(Error::LegacyAlgorithm(match integrity {
                        IntegrityAlgorithm::HmacMd5 => "HMAC-MD5-96",
                        _ => "HMAC-SHA1-96",
                    }));
                }
                _ => {}
            }
        }
        match self {
            SaCrypto::EspAead { alg, key } => {
                check_name(alg.kernel_name())?;
                check_len(alg.kernel_name(), alg.key_len(), key)
            }
            SaCrypto::Esp {
                cipher,
                cipher_key,
                integrity,
                integrity_key,
            } => {
                check_name(cipher.kernel_name())?;
                check_name(integrity.kernel_name())?;
                check_len(cipher.kernel_name(), cipher.key_len(), cipher_key)?;
                check_len(integrity.kernel_name(), integrity.key_len(), integrity_key)
            }
            SaCrypto::Ah { integrity, key } => {
                check_name(integrity.kernel_name())?;
                check_len(integrity.kernel_name(), integrity.key_len(), key)
            }
            SaCrypto::Comp { name } => check_name(name),
            SaCrypto::Unmodeled { .. } => Err(Error::invalid("an SA to install needs algorithms")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_names_and_lengths() {
        let a = AeadAlgorithm::AesGcm16(AesKeySize::Aes256);
        assert_eq!(a.kernel_name(), "rfc4106(gcm(aes))");
        assert_eq!(a.key_len(), Some(36));
        assert_eq!(a.icv_bits(), 128);
        assert_eq!(AeadAlgorithm::from_kernel("rfc4106(gcm(aes))", 288, 128), a);
        assert_eq!(
            AeadAlgorithm::from_kernel("rfc4106(gcm(aes))", 160, 128),
            AeadAlgorithm::AesGcm16(AesKeySize::Aes128)
        );
        assert_eq!(AeadAlgorithm::from_ikev2(20, Some(256)), Some(a));
        assert_eq!(
            AeadAlgorithm::from_kernel("rfc7539esp(chacha20,poly1305)", 288, 128),
            AeadAlgorithm::ChaCha20Poly1305
        );
    }

    #[test]
    fn sha2_truncation_per_rfc4868() {
        assert_eq!(IntegrityAlgorithm::HmacSha256.trunc_bits(), 128);
        assert_eq!(IntegrityAlgorithm::HmacSha384.trunc_bits(), 192);
        assert_eq!(IntegrityAlgorithm::HmacSha512.trunc_bits(), 256);
        assert_eq!(IntegrityAlgorithm::HmacSha384.key_len(), Some(48));
        // A kernel SA with a non-standard truncation is not silently called SHA-256-128.
        assert!(matches!(
            IntegrityAlgorithm::from_kernel("hmac(sha256)", 96),
            IntegrityAlgorithm::Other { .. }
        ));
    }

    #[test]
    fn legacy_requires_opt_in() {
        let c = SaCrypto::esp(
            CipherAlgorithm::TripleDesCbc,
            SecretKey::from_slice(&[1; 24]),
            IntegrityAlgorithm::HmacSha256,
            SecretKey::from_slice(&[2; 32]),
        );
        assert!(matches!(c.validate(false), Err(Error::LegacyAlgorithm(_))));
        assert!(c.validate(true).is_ok());
        let ah = SaCrypto::ah(
            IntegrityAlgorithm::HmacSha1,
            SecretKey::from_slice(&[0; 20]),
        );
        assert!(matches!(ah.validate(false), Err(Error::LegacyAlgorithm(_))));
    }

    #[test]
    fn key_length_checked() {
        let c = SaCrypto::esp_aead(
            AeadAlgorithm::AesGcm16(AesKeySize::Aes128),
            SecretKey::from_slice(&[0; 16]),
        );
        let e = c.validate(false).unwrap_err().to_string();
        assert!(e.contains("20-byte"), "{e}");
    }
}
