//! IKEv1 key derivation and message protection (RFC 2409 §5, §5.5, Appendix B; RFC 3947
//! §3.2 for NAT-D).
//!
//! The PRF is the HMAC form of the negotiated hash. Every secret is a [`Secret`]; the
//! functions here are pure so they can be checked against the values strongSwan logs
//! (`tests/ikev1_vectors.rs`).

use std::net::{IpAddr, SocketAddr};

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use ring::digest;

use super::wire::P1Hash;
use crate::crypto::Secret;
use crate::crypto::encr::EncrAlg;
use crate::crypto::prf::PrfAlg;
use crate::error::{Error, Result};

/// A phase 1 hash algorithm; its HMAC is the PRF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlg {
    /// MD5 (legacy).
    Md5,
    /// SHA-1 (legacy).
    Sha1,
    /// SHA2-256.
    Sha256,
    /// SHA2-384.
    Sha384,
    /// SHA2-512.
    Sha512,
}

impl HashAlg {
    /// From the Hash Algorithm attribute.
    pub fn from_p1(h: P1Hash) -> Option<Self> {
        Some(match h {
            P1Hash::MD5 => Self::Md5,
            P1Hash::SHA => Self::Sha1,
            P1Hash::SHA2_256 => Self::Sha256,
            P1Hash::SHA2_384 => Self::Sha384,
            P1Hash::SHA2_512 => Self::Sha512,
            _ => return None,
        })
    }

    /// The Hash Algorithm attribute value.
    pub fn p1(self) -> P1Hash {
        match self {
            Self::Md5 => P1Hash::MD5,
            Self::Sha1 => P1Hash::SHA,
            Self::Sha256 => P1Hash::SHA2_256,
            Self::Sha384 => P1Hash::SHA2_384,
            Self::Sha512 => P1Hash::SHA2_512,
        }
    }

    /// The HMAC PRF of this hash.
    pub fn prf(self) -> PrfAlg {
        match self {
            Self::Md5 => PrfAlg::HmacMd5,
            Self::Sha1 => PrfAlg::HmacSha1,
            Self::Sha256 => PrfAlg::HmacSha256,
            Self::Sha384 => PrfAlg::HmacSha384,
            Self::Sha512 => PrfAlg::HmacSha512,
        }
    }

    /// The hash whose HMAC is `prf` (IKEv2 proposals map onto IKEv1 this way).
    pub fn from_prf(prf: PrfAlg) -> Self {
        match prf {
            PrfAlg::HmacMd5 => Self::Md5,
            PrfAlg::HmacSha1 => Self::Sha1,
            PrfAlg::HmacSha256 => Self::Sha256,
            PrfAlg::HmacSha384 => Self::Sha384,
            PrfAlg::HmacSha512 => Self::Sha512,
        }
    }

    /// Whether only accepted when legacy algorithms are enabled.
    pub fn is_legacy(self) -> bool {
        matches!(self, Self::Md5 | Self::Sha1)
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        self.prf().output_len()
    }

    /// The digest of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        let alg = match self {
            Self::Md5 => {
                use md5::{Digest, Md5};
                let mut h = Md5::new();
                for p in parts {
                    h.update(p);
                }
                return h.finalize().to_vec();
            }
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        };
        let mut ctx = digest::Context::new(alg);
        for p in parts {
            ctx.update(p);
        }
        ctx.finish().as_ref().to_vec()
    }
}

/// The phase 1 keys (RFC 2409 §5).
#[derive(Debug, Clone)]
pub struct Phase1Keys {
    /// SKEYID.
    pub skeyid: Secret,
    /// SKEYID_d: derives quick mode keying material.
    pub skeyid_d: Secret,
    /// SKEYID_a: authenticates phase 2 and informational messages.
    pub skeyid_a: Secret,
    /// SKEYID_e: source of the encryption key.
    pub skeyid_e: Secret,
    /// The encryption key, expanded or truncated from SKEYID_e (Appendix B).
    pub enc_key: Secret,
}

fn concat(parts: &[&[u8]]) -> Secret {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        v.extend_from_slice(p);
    }
    Secret::new(v)
}

/// SKEYID for pre-shared keys: prf(pre-shared-key, Ni_b | Nr_b).
pub fn skeyid_psk(prf: PrfAlg, psk: &Secret, ni: &[u8], nr: &[u8]) -> Secret {
    Secret::new(prf.prf(psk.expose(), &[ni, nr]))
}

/// SKEYID for signatures: prf(Ni_b | Nr_b, g^xy).
pub fn skeyid_sig(prf: PrfAlg, ni: &[u8], nr: &[u8], g_xy: &Secret) -> Secret {
    let key = concat(&[ni, nr]);
    Secret::new(prf.prf(key.expose(), &[g_xy.expose()]))
}

/// SKEYID_d, SKEYID_a, SKEYID_e and the encryption key of `enc_key_len` bytes.
pub fn derive_phase1(
    prf: PrfAlg,
    skeyid: Secret,
    g_xy: &Secret,
    cky_i: u64,
    cky_r: u64,
    enc_key_len: usize,
) -> Phase1Keys {
    let (ci, cr) = (cky_i.to_be_bytes(), cky_r.to_be_bytes());
    let k = skeyid.expose();
    let d = Secret::new(prf.prf(k, &[g_xy.expose(), &ci, &cr, &[0]]));
    let a = Secret::new(prf.prf(k, &[d.expose(), g_xy.expose(), &ci, &cr, &[1]]));
    let e = Secret::new(prf.prf(k, &[a.expose(), g_xy.expose(), &ci, &cr, &[2]]));
    let enc_key = expand_enc_key(prf, &e, enc_key_len);
    Phase1Keys {
        skeyid,
        skeyid_d: d,
        skeyid_a: a,
        skeyid_e: e,
        enc_key,
    }
}

/// The encryption key from SKEYID_e (RFC 2409 Appendix B): its first `len` bytes, or when
/// it is too short Ka = K1 | K2 | … with K1 = prf(SKEYID_e, 0), Kn = prf(SKEYID_e, Kn-1).
pub fn expand_enc_key(prf: PrfAlg, skeyid_e: &Secret, len: usize) -> Secret {
    let e = skeyid_e.expose();
    if e.len() >= len {
        return Secret::from_slice(e.get(..len).unwrap_or(e));
    }
    let mut out = Vec::with_capacity(len + prf.output_len());
    let mut k = Secret::new(prf.prf(e, &[&[0]]));
    while out.len() < len {
        out.extend_from_slice(k.expose());
        k = Secret::new(prf.prf(e, &[k.expose()]));
    }
    out.truncate(len);
    Secret::new(out)
}

/// HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) (RFC 2409 §5).
#[expect(clippy::too_many_arguments, reason = "the RFC's formula")]
pub fn hash_i(
    prf: PrfAlg,
    skeyid: &Secret,
    g_xi: &[u8],
    g_xr: &[u8],
    cky_i: u64,
    cky_r: u64,
    sai_b: &[u8],
    idii_b: &[u8],
) -> Vec<u8> {
    prf.prf(
        skeyid.expose(),
        &[
            g_xi,
            g_xr,
            &cky_i.to_be_bytes(),
            &cky_r.to_be_bytes(),
            sai_b,
            idii_b,
        ],
    )
}

/// HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b).
#[expect(clippy::too_many_arguments, reason = "the RFC's formula")]
pub fn hash_r(
    prf: PrfAlg,
    skeyid: &Secret,
    g_xi: &[u8],
    g_xr: &[u8],
    cky_i: u64,
    cky_r: u64,
    sai_b: &[u8],
    idir_b: &[u8],
) -> Vec<u8> {
    prf.prf(
        skeyid.expose(),
        &[
            g_xr,
            g_xi,
            &cky_r.to_be_bytes(),
            &cky_i.to_be_bytes(),
            sai_b,
            idir_b,
        ],
    )
}

/// The phase 1 IV: hash(g^xi | g^xr) truncated to the block size (Appendix B).
pub fn initial_iv(hash: HashAlg, g_xi: &[u8], g_xr: &[u8], block_len: usize) -> Vec<u8> {
    let mut h = hash.digest(&[g_xi, g_xr]);
    h.truncate(block_len);
    h
}

/// The first IV of a phase 2 or informational exchange: hash(last phase 1 CBC output
/// block | M-ID) truncated to the block size.
pub fn phase2_iv(
    hash: HashAlg,
    phase1_last_block: &[u8],
    message_id: u32,
    block_len: usize,
) -> Vec<u8> {
    let mut h = hash.digest(&[phase1_last_block, &message_id.to_be_bytes()]);
    h.truncate(block_len);
    h
}

/// Quick mode HASH(1) = prf(SKEYID_a, M-ID | <payloads after HASH(1)>) (RFC 2409 §5.5);
/// also the HASH(1) of informational exchanges (§5.7).
pub fn hash1(prf: PrfAlg, skeyid_a: &Secret, message_id: u32, rest: &[u8]) -> Vec<u8> {
    prf.prf(skeyid_a.expose(), &[&message_id.to_be_bytes(), rest])
}

/// Quick mode HASH(2) = prf(SKEYID_a, M-ID | Ni_b | <payloads after HASH(2)>).
pub fn hash2(prf: PrfAlg, skeyid_a: &Secret, message_id: u32, ni_b: &[u8], rest: &[u8]) -> Vec<u8> {
    prf.prf(skeyid_a.expose(), &[&message_id.to_be_bytes(), ni_b, rest])
}

/// Quick mode HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b).
pub fn hash3(prf: PrfAlg, skeyid_a: &Secret, message_id: u32, ni_b: &[u8], nr_b: &[u8]) -> Vec<u8> {
    prf.prf(
        skeyid_a.expose(),
        &[&[0], &message_id.to_be_bytes(), ni_b, nr_b],
    )
}

/// Quick mode KEYMAT for one SA (RFC 2409 §5.5): K1 = prf(SKEYID_d, [g(qm)^xy |] protocol
/// | SPI | Ni_b | Nr_b), Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b |
/// Nr_b), `len` bytes. `spi` is the SPI of that SA (chosen by its receiver).
#[expect(clippy::too_many_arguments, reason = "the RFC's formula")]
pub fn keymat(
    prf: PrfAlg,
    skeyid_d: &Secret,
    g_qm: Option<&Secret>,
    protocol: u8,
    spi: u32,
    ni_b: &[u8],
    nr_b: &[u8],
    len: usize,
) -> Secret {
    let spi = spi.to_be_bytes();
    let proto = [protocol];
    let g: &[u8] = g_qm.map_or(&[], Secret::expose);
    let seed: [&[u8]; 5] = [g, &proto, &spi, ni_b, nr_b];
    let mut out = Vec::with_capacity(len + prf.output_len());
    let mut prev: Option<Secret> = None;
    while out.len() < len {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(6);
        if let Some(p) = &prev {
            parts.push(p.expose());
        }
        parts.extend_from_slice(&seed);
        let k = Secret::new(prf.prf(skeyid_d.expose(), &parts));
        out.extend_from_slice(k.expose());
        prev = Some(k);
    }
    out.truncate(len);
    Secret::new(out)
}

/// NAT-D = HASH(CKY-I | CKY-R | IP | Port) (RFC 3947 §3.2).
pub fn natd_hash(hash: HashAlg, cky_i: u64, cky_r: u64, addr: SocketAddr) -> Vec<u8> {
    let ip = match addr.ip() {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    hash.digest(&[
        &cky_i.to_be_bytes(),
        &cky_r.to_be_bytes(),
        &ip,
        &addr.port().to_be_bytes(),
    ])
}

/// Whether `encr` can protect IKEv1 messages (CBC ciphers only).
pub fn is_p1_cipher(encr: EncrAlg) -> bool {
    matches!(encr, EncrAlg::AesCbc { .. } | EncrAlg::TripleDes)
}

/// Encrypts a payload chain in place of an ISAKMP body (RFC 2408 §3.1): pads with zero
/// bytes to the block size and CBC-encrypts with `iv`. Returns the ciphertext; its last
/// block is the next IV.
pub fn encrypt_body(encr: EncrAlg, key: &Secret, iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let b = encr.block_len();
    if b <= 1 || !is_p1_cipher(encr) {
        return Err(Error::Config(format!(
            "{encr:?} cannot protect IKEv1 messages"
        )));
    }
    let pt = Secret::new({
        let mut v = plaintext.to_vec();
        v.resize(plaintext.len().div_ceil(b).max(1) * b, 0);
        v
    });
    let k = key.expose();
    let bad = |_| Error::Crypto("CBC key/IV");
    let ct = match encr {
        EncrAlg::AesCbc { key_bits: 128 } => cbc::Encryptor::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(bad)?
            .encrypt_padded_vec_mut::<NoPadding>(pt.expose()),
        EncrAlg::AesCbc { key_bits: 192 } => cbc::Encryptor::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(bad)?
            .encrypt_padded_vec_mut::<NoPadding>(pt.expose()),
        EncrAlg::AesCbc { key_bits: 256 } => cbc::Encryptor::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(bad)?
            .encrypt_padded_vec_mut::<NoPadding>(pt.expose()),
        EncrAlg::TripleDes => cbc::Encryptor::<des::TdesEde3>::new_from_slices(k, iv)
            .map_err(bad)?
            .encrypt_padded_vec_mut::<NoPadding>(pt.expose()),
        _ => return Err(Error::Crypto("not a CBC cipher")),
    };
    Ok(ct)
}

/// Decrypts an ISAKMP body. The caller keeps the last ciphertext block as the next IV.
/// Fails if the length is not a positive multiple of the block size.
pub fn decrypt_body(encr: EncrAlg, key: &Secret, iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
    let b = encr.block_len();
    if b <= 1 || !is_p1_cipher(encr) {
        return Err(Error::Config(format!(
            "{encr:?} cannot protect IKEv1 messages"
        )));
    }
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(b) {
        return Err(Error::Protocol(format!(
            "encrypted body of {} bytes is not a multiple of the {b}-byte block",
            ciphertext.len()
        )));
    }
    let k = key.expose();
    let bad = |_| Error::Crypto("CBC key/IV");
    let unpad = |_| Error::Protocol("CBC ciphertext".into());
    Ok(match encr {
        EncrAlg::AesCbc { key_bits: 128 } => cbc::Decryptor::<aes::Aes128>::new_from_slices(k, iv)
            .map_err(bad)?
            .decrypt_padded_vec_mut::<NoPadding>(ciphertext)
            .map_err(unpad)?,
        EncrAlg::AesCbc { key_bits: 192 } => cbc::Decryptor::<aes::Aes192>::new_from_slices(k, iv)
            .map_err(bad)?
            .decrypt_padded_vec_mut::<NoPadding>(ciphertext)
            .map_err(unpad)?,
        EncrAlg::AesCbc { key_bits: 256 } => cbc::Decryptor::<aes::Aes256>::new_from_slices(k, iv)
            .map_err(bad)?
            .decrypt_padded_vec_mut::<NoPadding>(ciphertext)
            .map_err(unpad)?,
        EncrAlg::TripleDes => cbc::Decryptor::<des::TdesEde3>::new_from_slices(k, iv)
            .map_err(bad)?
            .decrypt_padded_vec_mut::<NoPadding>(ciphertext)
            .map_err(unpad)?,
        _ => return Err(Error::Crypto("not a CBC cipher")),
    })
}

/// The last `block_len` bytes of `ct` (the next CBC IV).
pub fn last_block(ct: &[u8], block_len: usize) -> Vec<u8> {
    ct.get(ct.len().saturating_sub(block_len)..)
        .unwrap_or(ct)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_only_when_short() {
        let e = Secret::from_slice(&[7u8; 20]);
        let short = expand_enc_key(PrfAlg::HmacSha1, &e, 16);
        assert_eq!(short.expose(), &[7u8; 16]);
        let long = expand_enc_key(PrfAlg::HmacSha1, &e, 32);
        let k1 = PrfAlg::HmacSha1.prf(e.expose(), &[&[0]]);
        let k2 = PrfAlg::HmacSha1.prf(e.expose(), &[&k1]);
        assert_eq!(&long.expose()[..20], &k1[..]);
        assert_eq!(&long.expose()[20..], &k2[..12]);
    }

    #[test]
    fn cbc_round_trip_and_padding() {
        let key = Secret::from_slice(&[1u8; 32]);
        let iv = [2u8; 16];
        let enc = EncrAlg::AesCbc { key_bits: 256 };
        let ct = encrypt_body(enc, &key, &iv, b"seventeen bytes!!").unwrap_or_default();
        assert_eq!(ct.len(), 32);
        let pt = decrypt_body(enc, &key, &iv, &ct).unwrap_or_default();
        assert_eq!(&pt[..17], b"seventeen bytes!!");
        assert!(pt[17..].iter().all(|b| *b == 0));
        assert!(decrypt_body(enc, &key, &iv, &ct[..31]).is_err());
        assert!(encrypt_body(EncrAlg::AesGcm16 { key_bits: 128 }, &key, &iv, b"x").is_err());
    }
}
