//! Encryption algorithms and the SK payload's protection (RFC 7296 §3.14, RFC 5282 for
//! AES-GCM, RFC 7634 for ChaCha20-Poly1305).

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use ring::aead;
use ring::rand::SecureRandom;

use super::integ::IntegAlg;
use super::secret::Secret;
use crate::error::{Error, Result};
use crate::wire::{EncrId, Transform, TransformType};

/// A negotiated encryption algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncrAlg {
    /// ENCR_AES_GCM_16 with a 128- or 256-bit key.
    AesGcm16 {
        /// Key length in bits (128 or 256).
        key_bits: u16,
    },
    /// ENCR_CHACHA20_POLY1305.
    ChaCha20Poly1305,
    /// ENCR_AES_CBC with a 128-, 192- or 256-bit key.
    AesCbc {
        /// Key length in bits.
        key_bits: u16,
    },
    /// ENCR_3DES (legacy).
    TripleDes,
}

impl EncrAlg {
    /// From a transform ID and Key Length attribute.
    pub fn from_transform(id: EncrId, key_len: Option<u16>) -> Option<Self> {
        Some(match (id, key_len) {
            (EncrId::AES_GCM_16, Some(k @ (128 | 256))) => Self::AesGcm16 { key_bits: k },
            (EncrId::CHACHA20_POLY1305, None) => Self::ChaCha20Poly1305,
            (EncrId::AES_CBC, Some(k @ (128 | 192 | 256))) => Self::AesCbc { key_bits: k },
            (EncrId::TRIPLE_DES, None) => Self::TripleDes,
            _ => return None,
        })
    }

    /// The transform for a proposal.
    pub fn transform(self) -> Transform {
        match self {
            Self::AesGcm16 { key_bits } => {
                Transform::with_key_length(TransformType::ENCR, EncrId::AES_GCM_16.0, key_bits)
            }
            Self::AesCbc { key_bits } => {
                Transform::with_key_length(TransformType::ENCR, EncrId::AES_CBC.0, key_bits)
            }
            Self::ChaCha20Poly1305 => {
                Transform::new(TransformType::ENCR, EncrId::CHACHA20_POLY1305.0)
            }
            Self::TripleDes => Transform::new(TransformType::ENCR, EncrId::TRIPLE_DES.0),
        }
    }

    /// Whether only offered when legacy algorithms are enabled.
    pub fn is_legacy(self) -> bool {
        self == Self::TripleDes
    }

    /// Whether it is an AEAD (no separate integrity transform).
    pub fn is_aead(self) -> bool {
        matches!(self, Self::AesGcm16 { .. } | Self::ChaCha20Poly1305)
    }

    /// Keying material length in bytes (AEADs include the 4-byte salt).
    pub fn key_len(self) -> usize {
        match self {
            Self::AesGcm16 { key_bits } => usize::from(key_bits) / 8 + 4,
            Self::ChaCha20Poly1305 => 36,
            Self::AesCbc { key_bits } => usize::from(key_bits) / 8,
            Self::TripleDes => 24,
        }
    }

    /// Length of the explicit IV in the SK payload.
    pub fn iv_len(self) -> usize {
        match self {
            Self::AesGcm16 { .. } | Self::ChaCha20Poly1305 | Self::TripleDes => 8,
            Self::AesCbc { .. } => 16,
        }
    }

    /// Block size the padded plaintext must be a multiple of.
    pub fn block_len(self) -> usize {
        match self {
            Self::AesGcm16 { .. } | Self::ChaCha20Poly1305 => 1,
            Self::AesCbc { .. } => 16,
            Self::TripleDes => 8,
        }
    }

    /// AEAD tag length (0 for CBC ciphers).
    pub fn tag_len(self) -> usize {
        if self.is_aead() { 16 } else { 0 }
    }

    /// The Linux crypto API name for ESP (AEADs: the `rfc…` template; ICV 128 bits).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Self::AesGcm16 { .. } => "rfc4106(gcm(aes))",
            Self::ChaCha20Poly1305 => "rfc7539esp(chacha20,poly1305)",
            Self::AesCbc { .. } => "cbc(aes)",
            Self::TripleDes => "cbc(des3_ede)",
        }
    }
}

/// One direction of SK protection: cipher, optional integrity, and their keys.
#[derive(Debug, Clone)]
pub struct SkCrypto {
    encr: EncrAlg,
    integ: Option<IntegAlg>,
    sk_e: Secret,
    sk_a: Secret,
}

impl SkCrypto {
    /// Builds one direction from negotiated algorithms and keys (`sk_a` empty for AEADs).
    pub fn new(encr: EncrAlg, integ: Option<IntegAlg>, sk_e: Secret, sk_a: Secret) -> Result<Self> {
        if encr.is_aead() != integ.is_none() {
            return Err(Error::Config("AEAD with integrity, or CBC without".into()));
        }
        if sk_e.len() != encr.key_len() || integ.is_some_and(|i| i.key_len() != sk_a.len()) {
            return Err(Error::Crypto("SK key length"));
        }
        Ok(Self {
            encr,
            integ,
            sk_e,
            sk_a,
        })
    }

    /// Bytes the SK payload body (IV, ciphertext, padding, ICV) takes for `plaintext_len`.
    pub fn sealed_len(&self, plaintext_len: usize) -> usize {
        let b = self.encr.block_len();
        let padded = (plaintext_len + 1).div_ceil(b) * b;
        self.encr.iv_len() + padded + self.icv_len()
    }

    /// The cipher's block length (padding granularity).
    pub fn block_len(&self) -> usize {
        self.encr.block_len()
    }

    fn icv_len(&self) -> usize {
        self.encr.tag_len() + self.integ.map_or(0, IntegAlg::icv_len)
    }

    /// Encrypts `plaintext` (the inner payload chain). `prefix` is the message so far: IKE
    /// header (with its final length) and any unencrypted payloads up to and including the
    /// SK payload's generic header. Returns the SK payload body.
    pub fn seal(&self, prefix: &[u8], plaintext: &[u8], rng: &dyn SecureRandom) -> Result<Vec<u8>> {
        let iv_len = self.encr.iv_len();
        let b = self.encr.block_len();
        let pad = (plaintext.len() + 1).div_ceil(b) * b - plaintext.len() - 1;
        let mut body = vec![0u8; iv_len];
        rng.fill(&mut body)
            .map_err(|_| Error::Crypto("random IV"))?;
        let mut pt = Vec::with_capacity(plaintext.len() + pad + 1 + 16);
        pt.extend_from_slice(plaintext);
        pt.resize(plaintext.len() + pad, 0);
        pt.push(pad as u8);
        let iv = body.clone();
        match self.encr {
            EncrAlg::AesGcm16 { .. } | EncrAlg::ChaCha20Poly1305 => {
                let key = self.aead_key()?;
                let nonce = self.aead_nonce(&iv)?;
                key.seal_in_place_append_tag(nonce, aead::Aad::from(prefix), &mut pt)
                    .map_err(|_| Error::Crypto("AEAD seal"))?;
                body.extend_from_slice(&pt);
            }
            EncrAlg::AesCbc { .. } | EncrAlg::TripleDes => {
                let ct = self.cbc_encrypt(&iv, &pt)?;
                zeroize::Zeroize::zeroize(&mut pt);
                body.extend_from_slice(&ct);
                let integ = self.integ.ok_or(Error::Crypto("missing integrity"))?;
                let icv = integ.compute(self.sk_a.expose(), &[prefix, &body]);
                body.extend_from_slice(&icv);
            }
        }
        Ok(body)
    }

    /// Verifies and decrypts an SK payload body; `prefix` as for [`SkCrypto::seal`] (the
    /// received bytes). Returns the inner payload chain without padding.
    pub fn open(&self, prefix: &[u8], body: &[u8]) -> Result<Vec<u8>> {
        let iv_len = self.encr.iv_len();
        let icv_len = self.icv_len();
        let b = self.encr.block_len();
        if body.len() < iv_len + icv_len + b {
            return Err(Error::IntegrityCheckFailed);
        }
        let (iv, rest) = body.split_at(iv_len);
        let mut pt = match self.encr {
            EncrAlg::AesGcm16 { .. } | EncrAlg::ChaCha20Poly1305 => {
                let key = self.aead_key()?;
                let nonce = self.aead_nonce(iv)?;
                let mut buf = rest.to_vec();
                let n = key
                    .open_in_place(nonce, aead::Aad::from(prefix), &mut buf)
                    .map_err(|_| Error::IntegrityCheckFailed)?
                    .len();
                buf.truncate(n);
                buf
            }
            EncrAlg::AesCbc { .. } | EncrAlg::TripleDes => {
                let integ = self.integ.ok_or(Error::Crypto("missing integrity"))?;
                let (signed, icv) = body.split_at(body.len() - icv_len);
                if !integ.verify(self.sk_a.expose(), &[prefix, signed], icv) {
                    return Err(Error::IntegrityCheckFailed);
                }
                let ct = signed.get(iv_len..).unwrap_or(&[]);
                if ct.is_empty() || !ct.len().is_multiple_of(b) {
                    return Err(Error::Protocol(
                        "ciphertext not a multiple of the block size".into(),
                    ));
                }
                self.cbc_decrypt(iv, ct)?
            }
        };
        let pad = usize::from(pt.last().copied().unwrap_or(0));
        if pad + 1 > pt.len() {
            return Err(Error::Protocol("SK pad length exceeds plaintext".into()));
        }
        pt.truncate(pt.len() - pad - 1);
        Ok(pt)
    }

    fn aead_key(&self) -> Result<aead::LessSafeKey> {
        let k = self.sk_e.expose();
        let (key, _salt) = k.split_at(k.len() - 4);
        let alg = match self.encr {
            EncrAlg::AesGcm16 { key_bits: 128 } => &aead::AES_128_GCM,
            EncrAlg::AesGcm16 { key_bits: 256 } => &aead::AES_256_GCM,
            EncrAlg::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
            _ => return Err(Error::Crypto("not an AEAD")),
        };
        Ok(aead::LessSafeKey::new(
            aead::UnboundKey::new(alg, key).map_err(|_| Error::Crypto("AEAD key"))?,
        ))
    }

    fn aead_nonce(&self, iv: &[u8]) -> Result<aead::Nonce> {
        let k = self.sk_e.expose();
        let salt = k.get(k.len() - 4..).ok_or(Error::Crypto("salt"))?;
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(salt);
        n.get_mut(4..)
            .ok_or(Error::Crypto("nonce"))?
            .copy_from_slice(iv.get(..8).ok_or(Error::Crypto("IV"))?);
        Ok(aead::Nonce::assume_unique_for_key(n))
    }

    fn cbc_encrypt(&self, iv: &[u8], pt: &[u8]) -> Result<Vec<u8>> {
        let k = self.sk_e.expose();
        let bad = |_| Error::Crypto("CBC key/IV");
        Ok(match self.encr {
            EncrAlg::AesCbc { key_bits: 128 } => {
                cbc::Encryptor::<aes::Aes128>::new_from_slices(k, iv)
                    .map_err(bad)?
                    .encrypt_padded_vec_mut::<NoPadding>(pt)
            }
            EncrAlg::AesCbc { key_bits: 192 } => {
                cbc::Encryptor::<aes::Aes192>::new_from_slices(k, iv)
                    .map_err(bad)?
                    .encrypt_padded_vec_mut::<NoPadding>(pt)
            }
            EncrAlg::AesCbc { key_bits: 256 } => {
                cbc::Encryptor::<aes::Aes256>::new_from_slices(k, iv)
                    .map_err(bad)?
                    .encrypt_padded_vec_mut::<NoPadding>(pt)
            }
            EncrAlg::TripleDes => cbc::Encryptor::<des::TdesEde3>::new_from_slices(k, iv)
                .map_err(bad)?
                .encrypt_padded_vec_mut::<NoPadding>(pt),
            _ => return Err(Error::Crypto("not a CBC cipher")),
        })
    }

    fn cbc_decrypt(&self, iv: &[u8], ct: &[u8]) -> Result<Vec<u8>> {
        let k = self.sk_e.expose();
        let bad = |_| Error::Crypto("CBC key/IV");
        let unpad = |_| Error::Protocol("CBC ciphertext".into());
        Ok(match self.encr {
            EncrAlg::AesCbc { key_bits: 128 } => {
                cbc::Decryptor::<aes::Aes128>::new_from_slices(k, iv)
                    .map_err(bad)?
                    .decrypt_padded_vec_mut::<NoPadding>(ct)
                    .map_err(unpad)?
            }
            EncrAlg::AesCbc { key_bits: 192 } => {
                cbc::Decryptor::<aes::Aes192>::new_from_slices(k, iv)
                    .map_err(bad)?
                    .decrypt_padded_vec_mut::<NoPadding>(ct)
                    .map_err(unpad)?
            }
            EncrAlg::AesCbc { key_bits: 256 } => {
                cbc::Decryptor::<aes::Aes256>::new_from_slices(k, iv)
                    .map_err(bad)?
                    .decrypt_padded_vec_mut::<NoPadding>(ct)
                    .map_err(unpad)?
            }
            EncrAlg::TripleDes => cbc::Decryptor::<des::TdesEde3>::new_from_slices(k, iv)
                .map_err(bad)?
                .decrypt_padded_vec_mut::<NoPadding>(ct)
                .map_err(unpad)?,
            _ => return Err(Error::Crypto("not a CBC cipher")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes256_cbc_sp800_38a_f25() {
        let key: Vec<u8> = (0..32)
            .map(|i| {
                let h = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
                u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0)
            })
            .collect();
        let c = SkCrypto::new(
            EncrAlg::AesCbc { key_bits: 256 },
            Some(IntegAlg::HmacSha256_128),
            Secret::new(key),
            Secret::new(vec![0; 32]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let iv: Vec<u8> = (0u8..16).collect();
        let pt = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        let ct = c.cbc_encrypt(&iv, &pt).unwrap_or_default();
        assert_eq!(
            ct,
            [
                0xf5, 0x8c, 0x4c, 0x04, 0xd6, 0xe5, 0xf1, 0xba, 0x77, 0x9e, 0xab, 0xfb, 0x5f, 0x7b,
                0xfb, 0xd6
            ]
        );
        assert_eq!(c.cbc_decrypt(&iv, &ct).unwrap_or_default(), pt);
    }
}
