//! Signing and signature verification, usable outside IKE (the NSS server signs with it).
//!
//! - [`SignatureScheme`]: RSASSA-PKCS1-v1_5 and RSASSA-PSS with SHA-256/384/512 (SHA-1
//!   verification for legacy peers), ECDSA with SHA-256/384 on P-256/P-384, Ed25519; each
//!   maps to and from its RFC 7427 AlgorithmIdentifier.
//! - [`Signer`]: the trait a key holder implements; [`LocalSigner`] holds a PKCS#8 (or
//!   PKCS#1 / SEC1) key in process. A remote signer (the NSS server) does not implement it:
//!   the IKE engine asks its caller for signatures through events instead.
//! - [`PublicKey`]: a key from a SubjectPublicKeyInfo or certificate, with
//!   [`PublicKey::verify`].
//!
//! ECDSA signatures are exchanged in their DER `ECDSA-Sig-Value` form (as RFC 7427, X.509
//! and TLS use); [`ecdsa_der_to_fixed`] and [`ecdsa_fixed_to_der`] convert to and from the
//! fixed `r || s` form of IKEv2 auth methods 9–11 (RFC 4754).

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::der::{self, DerError, Reader, oid};
use crate::error::{Error, Result};

/// Hash algorithms of the RFC 7427 SIGNATURE_HASH_ALGORITHMS registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HashAlgorithm(pub u16);

impl HashAlgorithm {
    /// SHA1 (legacy).
    pub const SHA1: Self = Self(1);
    /// SHA2-256.
    pub const SHA2_256: Self = Self(2);
    /// SHA2-384.
    pub const SHA2_384: Self = Self(3);
    /// SHA2-512.
    pub const SHA2_512: Self = Self(4);
    /// "Identity" (RFC 8420, used with Ed25519).
    pub const IDENTITY: Self = Self(5);
}

/// A signature algorithm: padding/curve family plus hash.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PKCS1-v1_5 with SHA-1 (verification only; legacy peers).
    RsaPkcs1Sha1,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSASSA-PSS, MGF1 with the same hash, salt length = hash length, SHA-256.
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384.
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512.
    RsaPssSha512,
    /// ECDSA with SHA-256 (P-256 or P-384 key; DER signature).
    EcdsaSha256,
    /// ECDSA with SHA-384 (P-256 or P-384 key; DER signature).
    EcdsaSha384,
    /// Ed25519 (RFC 8032; RFC 8420 in IKEv2).
    Ed25519,
    /// RSASSA-PKCS1-v1_5 padding over a digest *without* a DigestInfo: IKEv1 RSA
    /// signatures (RFC 2409 §5.1). The "message" to sign or verify is the digest itself
    /// (HASH_I or HASH_R, 1–64 bytes). Not in [`SignatureScheme::ALL`] and never offered
    /// by [`Signer::schemes`]: IKEv2 does not use it.
    RsaPkcs1Raw,
}

impl SignatureScheme {
    /// All schemes, strongest preference first within each family.
    pub const ALL: [Self; 10] = [
        Self::RsaPkcs1Sha256,
        Self::RsaPkcs1Sha384,
        Self::RsaPkcs1Sha512,
        Self::RsaPssSha256,
        Self::RsaPssSha384,
        Self::RsaPssSha512,
        Self::EcdsaSha256,
        Self::EcdsaSha384,
        Self::Ed25519,
        Self::RsaPkcs1Sha1,
    ];

    /// The RFC 7427 hash algorithm this scheme uses.
    pub fn hash(self) -> HashAlgorithm {
        match self {
            Self::RsaPkcs1Sha1 => HashAlgorithm::SHA1,
            Self::RsaPkcs1Sha256 | Self::RsaPssSha256 | Self::EcdsaSha256 => {
                HashAlgorithm::SHA2_256
            }
            Self::RsaPkcs1Sha384 | Self::RsaPssSha384 | Self::EcdsaSha384 => {
                HashAlgorithm::SHA2_384
            }
            Self::RsaPkcs1Sha512 | Self::RsaPssSha512 => HashAlgorithm::SHA2_512,
            Self::Ed25519 | Self::RsaPkcs1Raw => HashAlgorithm::IDENTITY,
        }
    }

    /// Whether a key of `alg` can produce or check this scheme.
    pub fn fits_key(self, alg: KeyAlgorithm) -> bool {
        match alg {
            KeyAlgorithm::Rsa { .. } => matches!(
                self,
                Self::RsaPkcs1Sha1
                    | Self::RsaPkcs1Sha256
                    | Self::RsaPkcs1Sha384
                    | Self::RsaPkcs1Sha512
                    | Self::RsaPssSha256
                    | Self::RsaPssSha384
                    | Self::RsaPssSha512
                    | Self::RsaPkcs1Raw
            ),
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                matches!(self, Self::EcdsaSha256 | Self::EcdsaSha384)
            }
            KeyAlgorithm::Ed25519 => self == Self::Ed25519,
        }
    }

    /// The DER AlgorithmIdentifier carried in an RFC 7427 AUTH payload.
    pub fn algorithm_identifier(self) -> Vec<u8> {
        let null = der::tlv(der::TAG_NULL, &[]);
        let with_null = |o: &[u8]| der::sequence(&[&der::tlv(der::TAG_OID, o), &null]);
        let bare = |o: &[u8]| der::sequence(&[&der::tlv(der::TAG_OID, o)]);
        let pss = |h: &[u8], salt: u8| {
            let hash_alg = with_null(h);
            let mgf = der::sequence(&[&der::tlv(der::TAG_OID, oid::MGF1), &hash_alg]);
            let params = der::sequence(&[
                &der::tlv(0xa0, &hash_alg),
                &der::tlv(0xa1, &mgf),
                &der::tlv(0xa2, &der::uint(&[salt])),
            ]);
            der::sequence(&[&der::tlv(der::TAG_OID, oid::RSASSA_PSS), &params])
        };
        match self {
            Self::RsaPkcs1Sha1 => with_null(oid::SHA1_WITH_RSA),
            Self::RsaPkcs1Sha256 => with_null(oid::SHA256_WITH_RSA),
            Self::RsaPkcs1Sha384 => with_null(oid::SHA384_WITH_RSA),
            Self::RsaPkcs1Sha512 => with_null(oid::SHA512_WITH_RSA),
            Self::RsaPssSha256 => pss(oid::SHA256, 32),
            Self::RsaPssSha384 => pss(oid::SHA384, 48),
            Self::RsaPssSha512 => pss(oid::SHA512, 64),
            Self::EcdsaSha256 => bare(oid::ECDSA_SHA256),
            Self::EcdsaSha384 => bare(oid::ECDSA_SHA384),
            Self::Ed25519 => bare(oid::ED25519),
            // No RFC 7427 identifier exists: IKEv2 never uses this scheme.
            Self::RsaPkcs1Raw => with_null(oid::RSA_ENCRYPTION),
        }
    }

    /// Parses an RFC 7427 AlgorithmIdentifier. RSASSA-PSS parameters must use MGF1 with
    /// the message hash and a salt as long as the hash (what every IKE implementation sends).
    pub fn from_algorithm_identifier(der_bytes: &[u8]) -> Result<Self> {
        let mut outer = Reader::new(der_bytes);
        let mut seq = outer.sequence("AlgorithmIdentifier")?;
        outer.finish("AlgorithmIdentifier trailing data")?;
        let o = seq.expect(der::TAG_OID, "algorithm OID")?.value;
        let unsupported = || Error::UnsupportedSignature(format!("OID {}", der::oid_to_dotted(o)));
        let s = match o {
            x if x == oid::SHA1_WITH_RSA => Self::RsaPkcs1Sha1,
            x if x == oid::SHA256_WITH_RSA => Self::RsaPkcs1Sha256,
            x if x == oid::SHA384_WITH_RSA => Self::RsaPkcs1Sha384,
            x if x == oid::SHA512_WITH_RSA => Self::RsaPkcs1Sha512,
            x if x == oid::ECDSA_SHA256 => Self::EcdsaSha256,
            x if x == oid::ECDSA_SHA384 => Self::EcdsaSha384,
            x if x == oid::ED25519 => Self::Ed25519,
            x if x == oid::RSASSA_PSS => return parse_pss_params(&mut seq),
            _ => return Err(unsupported()),
        };
        Ok(s)
    }

    fn ring_verify_alg(
        self,
        key: KeyAlgorithm,
    ) -> Option<&'static dyn signature::VerificationAlgorithm> {
        use signature as s;
        Some(match (self, key) {
            (Self::RsaPkcs1Sha1, KeyAlgorithm::Rsa { .. }) => {
                &s::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
            }
            (Self::RsaPkcs1Sha256, KeyAlgorithm::Rsa { .. }) => &s::RSA_PKCS1_2048_8192_SHA256,
            (Self::RsaPkcs1Sha384, KeyAlgorithm::Rsa { .. }) => &s::RSA_PKCS1_2048_8192_SHA384,
            (Self::RsaPkcs1Sha512, KeyAlgorithm::Rsa { .. }) => &s::RSA_PKCS1_2048_8192_SHA512,
            (Self::RsaPssSha256, KeyAlgorithm::Rsa { .. }) => &s::RSA_PSS_2048_8192_SHA256,
            (Self::RsaPssSha384, KeyAlgorithm::Rsa { .. }) => &s::RSA_PSS_2048_8192_SHA384,
            (Self::RsaPssSha512, KeyAlgorithm::Rsa { .. }) => &s::RSA_PSS_2048_8192_SHA512,
            (Self::EcdsaSha256, KeyAlgorithm::EcdsaP256) => &s::ECDSA_P256_SHA256_ASN1,
            (Self::EcdsaSha384, KeyAlgorithm::EcdsaP256) => &s::ECDSA_P256_SHA384_ASN1,
            (Self::EcdsaSha256, KeyAlgorithm::EcdsaP384) => &s::ECDSA_P384_SHA256_ASN1,
            (Self::EcdsaSha384, KeyAlgorithm::EcdsaP384) => &s::ECDSA_P384_SHA384_ASN1,
            (Self::Ed25519, KeyAlgorithm::Ed25519) => &s::ED25519,
            _ => return None,
        })
    }
}

fn parse_pss_params(seq: &mut Reader<'_>) -> Result<SignatureScheme> {
    let unsupported = |why: &str| Error::UnsupportedSignature(format!("RSASSA-PSS: {why}"));
    let mut params = seq.sequence("RSASSA-PSS params")?;
    // Defaults (RFC 4055): SHA-1, MGF1-SHA1, salt 20 — none of which we support.
    let hash_alg = |t: der::Tlv<'_>| -> Result<Vec<u8>> {
        let mut r = Reader::new(t.value);
        let mut a = r.sequence("hash AlgorithmIdentifier")?;
        let o = a.expect(der::TAG_OID, "hash OID")?.value.to_vec();
        // parameters: absent or NULL
        if let Some(p) = a.optional(der::TAG_NULL)?
            && !p.value.is_empty()
        {
            return Err(DerError {
                what: "hash parameters",
            }
            .into());
        }
        a.finish("hash AlgorithmIdentifier")?;
        Ok(o)
    };
    let hash = match params.optional(0xa0)? {
        Some(t) => hash_alg(t)?,
        None => oid::SHA1.to_vec(),
    };
    let mgf_hash = match params.optional(0xa1)? {
        Some(t) => {
            let mut r = Reader::new(t.value);
            let mut m = r.sequence("maskGenAlgorithm")?;
            if m.expect(der::TAG_OID, "MGF OID")?.value != oid::MGF1 {
                return Err(unsupported("mask generation function is not MGF1"));
            }
            let inner = m.expect(der::TAG_SEQUENCE, "MGF1 hash")?;
            hash_alg(der::Tlv {
                tag: 0xa0,
                value: inner.raw,
                raw: inner.raw,
            })?
        }
        None => oid::SHA1.to_vec(),
    };
    let salt = match params.optional(0xa2)? {
        Some(t) => {
            let i = der::single(t.value, der::TAG_INTEGER, "saltLength")?;
            let v = der::uint_value(i.value, "saltLength")?;
            if v.len() > 2 {
                return Err(unsupported("salt length"));
            }
            v.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b))
        }
        None => 20,
    };
    if let Some(t) = params.optional(0xa3)? {
        let i = der::single(t.value, der::TAG_INTEGER, "trailerField")?;
        if i.value != [1] {
            return Err(unsupported("trailer field"));
        }
    }
    params.finish("RSASSA-PSS params")?;
    if mgf_hash != hash {
        return Err(unsupported("MGF1 hash differs from message hash"));
    }
    match (hash.as_slice(), salt) {
        (h, 32) if h == oid::SHA256 => Ok(SignatureScheme::RsaPssSha256),
        (h, 48) if h == oid::SHA384 => Ok(SignatureScheme::RsaPssSha384),
        (h, 64) if h == oid::SHA512 => Ok(SignatureScheme::RsaPssSha512),
        _ => Err(unsupported("hash or salt length")),
    }
}

/// The family and size of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus length in bits.
        bits: u32,
    },
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

/// A public key that can verify signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    alg: KeyAlgorithm,
    /// RSA: DER RSAPublicKey; EC: uncompressed point; Ed25519: 32 bytes.
    key: Vec<u8>,
    spki: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &self.alg)
            .field("len", &self.key.len())
            .finish()
    }
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self> {
        let mut outer = Reader::new(spki);
        let mut seq = outer.sequence("SubjectPublicKeyInfo")?;
        outer.finish("SubjectPublicKeyInfo trailing data")?;
        let mut alg = seq.sequence("SPKI algorithm")?;
        let alg_oid = alg.expect(der::TAG_OID, "SPKI algorithm OID")?.value;
        let bits = seq.expect(der::TAG_BIT_STRING, "subjectPublicKey")?.value;
        let key = match bits.split_first() {
            Some((0, k)) => k,
            _ => {
                return Err(DerError {
                    what: "subjectPublicKey unused bits",
                }
                .into());
            }
        };
        let alg = if alg_oid == oid::RSA_ENCRYPTION {
            let mut r = Reader::new(key);
            let mut k = r.sequence("RSAPublicKey")?;
            let n = k.expect(der::TAG_INTEGER, "RSA modulus")?.value;
            let n = der::uint_value(n, "RSA modulus")?;
            let lead = n.first().map_or(0, |b| 8 - b.leading_zeros());
            let bits = (n.len().saturating_sub(1) * 8) as u32 + lead;
            KeyAlgorithm::Rsa { bits }
        } else if alg_oid == oid::EC_PUBLIC_KEY {
            let curve = alg.expect(der::TAG_OID, "EC curve")?.value;
            if curve == oid::P256 && key.len() == 65 {
                KeyAlgorithm::EcdsaP256
            } else if curve == oid::P384 && key.len() == 97 {
                KeyAlgorithm::EcdsaP384
            } else {
                return Err(Error::UnsupportedSignature(format!(
                    "EC curve {} or point form",
                    der::oid_to_dotted(curve)
                )));
            }
        } else if alg_oid == oid::ED25519 && key.len() == 32 {
            KeyAlgorithm::Ed25519
        } else {
            return Err(Error::UnsupportedSignature(format!(
                "public key algorithm {}",
                der::oid_to_dotted(alg_oid)
            )));
        };
        Ok(Self {
            alg,
            key: key.to_vec(),
            spki: spki.to_vec(),
        })
    }

    /// The public key of a DER X.509 certificate.
    pub fn from_certificate_der(cert: &[u8]) -> Result<Self> {
        Ok(super::cert::Certificate::from_der(cert)?
            .public_key()
            .clone())
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The raw key (RSA: DER RSAPublicKey; EC: uncompressed point; Ed25519: 32 bytes).
    pub fn raw(&self) -> &[u8] {
        &self.key
    }

    /// Whether this key can check `scheme`.
    pub fn supports(&self, scheme: SignatureScheme) -> bool {
        if scheme == SignatureScheme::RsaPkcs1Raw {
            return matches!(self.alg, KeyAlgorithm::Rsa { .. });
        }
        scheme.ring_verify_alg(self.alg).is_some()
    }

    /// Verifies `signature` over `message`. ECDSA signatures are DER.
    pub fn verify(&self, scheme: SignatureScheme, message: &[u8], sig: &[u8]) -> Result<()> {
        if scheme == SignatureScheme::RsaPkcs1Raw && matches!(self.alg, KeyAlgorithm::Rsa { .. }) {
            return super::rsa_raw::verify_raw(&self.key, message, sig);
        }
        let alg = scheme.ring_verify_alg(self.alg).ok_or_else(|| {
            Error::UnsupportedSignature(format!("{scheme:?} with a {:?} key", self.alg))
        })?;
        signature::UnparsedPublicKey::new(alg, &self.key)
            .verify(message, sig)
            .map_err(|_| Error::BadSignature)
    }
}

/// Something that holds a private key and signs with it.
///
/// [`LocalSigner`] implements it for keys in process. The IKE engine never calls a signer
/// itself: it emits a signature request and the caller answers, so a signer may be remote
/// and slow.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The key's algorithm.
    fn key_algorithm(&self) -> KeyAlgorithm;
    /// The matching public key.
    fn public_key(&self) -> &PublicKey;
    /// Signs `message` with `scheme` (ECDSA signatures are DER).
    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>>;
    /// The schemes [`Signer::sign`] accepts, most preferred first.
    fn schemes(&self) -> Vec<SignatureScheme> {
        let alg = self.key_algorithm();
        SignatureScheme::ALL
            .into_iter()
            .filter(|s| s.fits_key(alg) && *s != SignatureScheme::RsaPkcs1Sha1)
            .filter(|s| {
                // ring signs ECDSA only with the curve's own hash.
                !matches!(
                    (alg, s),
                    (KeyAlgorithm::EcdsaP256, SignatureScheme::EcdsaSha384)
                        | (KeyAlgorithm::EcdsaP384, SignatureScheme::EcdsaSha256)
                )
            })
            .collect()
    }
}

enum LocalKey {
    Rsa(signature::RsaKeyPair),
    Ecdsa(signature::EcdsaKeyPair),
    Ed25519(signature::Ed25519KeyPair),
}

/// A private key held in this process (loaded from PKCS#8, PKCS#1 or SEC1).
///
/// Debug output never shows key material.
pub struct LocalSigner {
    key: LocalKey,
    public: PublicKey,
    rng: SystemRandom,
    /// RSA keys: the exponents again, for [`SignatureScheme::RsaPkcs1Raw`] (IKEv1).
    raw_rsa: Option<super::rsa_raw::RawRsaKey>,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSigner")
            .field("alg", &self.public.alg)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl LocalSigner {
    /// Loads a DER PKCS#8 (RFC 5958) private key: RSA, ECDSA P-256/P-384 or Ed25519.
    pub fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Self> {
        let mut outer = Reader::new(pkcs8);
        let mut seq = outer.sequence("PrivateKeyInfo")?;
        seq.expect(der::TAG_INTEGER, "PrivateKeyInfo version")?;
        let mut alg = seq.sequence("PrivateKeyInfo algorithm")?;
        let alg_oid = alg.expect(der::TAG_OID, "key algorithm OID")?.value;
        let rng = SystemRandom::new();
        let bad = |e: ring::error::KeyRejected| Error::InvalidKey(e.to_string());
        let key = if alg_oid == oid::RSA_ENCRYPTION {
            LocalKey::Rsa(signature::RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?)
        } else if alg_oid == oid::EC_PUBLIC_KEY {
            let curve = alg.expect(der::TAG_OID, "EC curve")?.value;
            let a = if curve == oid::P256 {
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING
            } else if curve == oid::P384 {
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING
            } else {
                return Err(Error::InvalidKey(format!(
                    "unsupported EC curve {}",
                    der::oid_to_dotted(curve)
                )));
            };
            LocalKey::Ecdsa(signature::EcdsaKeyPair::from_pkcs8(a, pkcs8, &rng).map_err(bad)?)
        } else if alg_oid == oid::ED25519 {
            LocalKey::Ed25519(
                signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(bad)?,
            )
        } else {
            return Err(Error::InvalidKey(format!(
                "unsupported key algorithm {}",
                der::oid_to_dotted(alg_oid)
            )));
        };
        let public = match &key {
            LocalKey::Rsa(k) => {
                let spki = spki_der(oid::RSA_ENCRYPTION, None, k.public_key().as_ref());
                PublicKey::from_spki_der(&spki)?
            }
            LocalKey::Ecdsa(k) => {
                let curve = alg_curve(pkcs8)?;
                let spki = spki_der(oid::EC_PUBLIC_KEY, Some(&curve), k.public_key().as_ref());
                PublicKey::from_spki_der(&spki)?
            }
            LocalKey::Ed25519(k) => {
                let spki = spki_der(oid::ED25519, None, k.public_key().as_ref());
                PublicKey::from_spki_der(&spki)?
            }
        };
        let raw_rsa = match key {
            LocalKey::Rsa(_) => Some(super::rsa_raw::RawRsaKey::from_pkcs8(pkcs8)?),
            _ => None,
        };
        Ok(Self {
            key,
            public,
            rng,
            raw_rsa,
        })
    }

    /// Loads a PEM private key: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) or
    /// `EC PRIVATE KEY` (SEC1). Encrypted keys are not supported.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| Error::Pem(e.to_string()))?;
        Self::from_key_der(&key)
    }

    /// Loads a private key in any of the DER forms rustls-pki-types knows.
    pub fn from_key_der(key: &PrivateKeyDer<'_>) -> Result<Self> {
        match key {
            PrivateKeyDer::Pkcs8(k) => Self::from_pkcs8_der(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => {
                let wrapped = pkcs8_wrap(
                    &der::sequence(&[
                        &der::tlv(der::TAG_OID, oid::RSA_ENCRYPTION),
                        &der::tlv(der::TAG_NULL, &[]),
                    ]),
                    k.secret_pkcs1_der(),
                );
                Self::from_pkcs8_der(wrapped.secret_pkcs8_der())
            }
            PrivateKeyDer::Sec1(k) => {
                // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters, [1] publicKey }
                let sec1 = k.secret_sec1_der();
                let mut outer = Reader::new(sec1);
                let mut seq = outer.sequence("ECPrivateKey")?;
                seq.expect(der::TAG_INTEGER, "ECPrivateKey version")?;
                seq.expect(der::TAG_OCTET_STRING, "ECPrivateKey key")?;
                let params = seq.optional(0xa0)?.ok_or(Error::InvalidKey(
                    "SEC1 key without curve parameters".into(),
                ))?;
                let curve = der::single(params.value, der::TAG_OID, "EC curve")?;
                let alg = der::sequence(&[&der::tlv(der::TAG_OID, oid::EC_PUBLIC_KEY), curve.raw]);
                let wrapped = pkcs8_wrap(&alg, sec1);
                Self::from_pkcs8_der(wrapped.secret_pkcs8_der())
            }
            _ => Err(Error::InvalidKey("unsupported private key encoding".into())),
        }
    }
}

/// The curve OID TLV from a PKCS#8 EC key's AlgorithmIdentifier.
fn alg_curve(pkcs8: &[u8]) -> Result<Vec<u8>> {
    let mut outer = Reader::new(pkcs8);
    let mut seq = outer.sequence("PrivateKeyInfo")?;
    seq.expect(der::TAG_INTEGER, "version")?;
    let mut alg = seq.sequence("algorithm")?;
    alg.expect(der::TAG_OID, "algorithm OID")?;
    Ok(alg.expect(der::TAG_OID, "EC curve")?.raw.to_vec())
}

fn pkcs8_wrap(alg_id: &[u8], private_key: &[u8]) -> PrivatePkcs8KeyDer<'static> {
    let v = der::sequence(&[
        &der::tlv(der::TAG_INTEGER, &[0]),
        alg_id,
        &der::tlv(der::TAG_OCTET_STRING, private_key),
    ]);
    PrivatePkcs8KeyDer::from(v)
}

fn spki_der(alg_oid: &[u8], curve_tlv: Option<&[u8]>, key: &[u8]) -> Vec<u8> {
    let oid_tlv = der::tlv(der::TAG_OID, alg_oid);
    let alg = match (curve_tlv, alg_oid) {
        (Some(c), _) => der::sequence(&[&oid_tlv, c]),
        (None, o) if o == oid::RSA_ENCRYPTION => {
            der::sequence(&[&oid_tlv, &der::tlv(der::TAG_NULL, &[])])
        }
        (None, _) => der::sequence(&[&oid_tlv]),
    };
    let mut bits = vec![0u8];
    bits.extend_from_slice(key);
    der::sequence(&[&alg, &der::tlv(der::TAG_BIT_STRING, &bits)])
}

impl Signer for LocalSigner {
    fn key_algorithm(&self) -> KeyAlgorithm {
        self.public.alg
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, scheme: SignatureScheme, message: &[u8]) -> Result<Vec<u8>> {
        let unsupported =
            || Error::UnsupportedSignature(format!("{scheme:?} with a {:?} key", self.public.alg));
        if scheme == SignatureScheme::RsaPkcs1Raw {
            return match &self.raw_rsa {
                Some(k) => k.sign(message),
                None => Err(unsupported()),
            };
        }
        if scheme == SignatureScheme::RsaPkcs1Sha1 {
            // IKEv2 auth method 1 for peers without RFC 7427: PKCS#1 v1.5 over a SHA-1
            // DigestInfo. ring signs SHA-1 only for verification, so the DigestInfo goes
            // through the raw RSA operation (which checks its result before returning it).
            const SHA1_DIGEST_INFO: [u8; 15] = [
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ];
            let Some(k) = &self.raw_rsa else {
                return Err(unsupported());
            };
            let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
            let mut info = SHA1_DIGEST_INFO.to_vec();
            info.extend_from_slice(d.as_ref());
            return k.sign(&info);
        }
        match &self.key {
            LocalKey::Rsa(k) => {
                let enc: &'static dyn signature::RsaEncoding = match scheme {
                    SignatureScheme::RsaPkcs1Sha256 => &signature::RSA_PKCS1_SHA256,
                    SignatureScheme::RsaPkcs1Sha384 => &signature::RSA_PKCS1_SHA384,
                    SignatureScheme::RsaPkcs1Sha512 => &signature::RSA_PKCS1_SHA512,
                    SignatureScheme::RsaPssSha256 => &signature::RSA_PSS_SHA256,
                    SignatureScheme::RsaPssSha384 => &signature::RSA_PSS_SHA384,
                    SignatureScheme::RsaPssSha512 => &signature::RSA_PSS_SHA512,
                    _ => return Err(unsupported()),
                };
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(enc, &self.rng, message, &mut sig)
                    .map_err(|_| Error::Crypto("RSA signing"))?;
                Ok(sig)
            }
            LocalKey::Ecdsa(k) => {
                let ok = matches!(
                    (self.public.alg, scheme),
                    (KeyAlgorithm::EcdsaP256, SignatureScheme::EcdsaSha256)
                        | (KeyAlgorithm::EcdsaP384, SignatureScheme::EcdsaSha384)
                );
                if !ok {
                    return Err(unsupported());
                }
                let s = k
                    .sign(&self.rng, message)
                    .map_err(|_| Error::Crypto("ECDSA signing"))?;
                Ok(s.as_ref().to_vec())
            }
            LocalKey::Ed25519(k) => {
                if scheme != SignatureScheme::Ed25519 {
                    return Err(unsupported());
                }
                Ok(k.sign(message).as_ref().to_vec())
            }
        }
    }
}

/// Converts a DER ECDSA-Sig-Value into fixed `r || s`, each `field_len` bytes
/// (32 for P-256, 48 for P-384).
pub fn ecdsa_der_to_fixed(sig: &[u8], field_len: usize) -> Result<Vec<u8>> {
    let mut outer = Reader::new(sig);
    let mut seq = outer.sequence("ECDSA-Sig-Value")?;
    outer.finish("ECDSA-Sig-Value trailing data")?;
    let mut out = Vec::with_capacity(2 * field_len);
    for what in ["ECDSA r", "ECDSA s"] {
        let v = der::uint_value(seq.expect(der::TAG_INTEGER, what)?.value, what)?;
        if v.len() > field_len {
            return Err(DerError { what }.into());
        }
        out.resize(out.len() + field_len - v.len(), 0);
        out.extend_from_slice(v);
    }
    seq.finish("ECDSA-Sig-Value")?;
    Ok(out)
}

/// Converts fixed `r || s` (equal halves) into a DER ECDSA-Sig-Value.
pub fn ecdsa_fixed_to_der(sig: &[u8]) -> Result<Vec<u8>> {
    if sig.is_empty() || !sig.len().is_multiple_of(2) {
        return Err(DerError {
            what: "fixed ECDSA signature length",
        }
        .into());
    }
    let (r, s) = sig.split_at(sig.len() / 2);
    Ok(der::sequence(&[&der::uint(r), &der::uint(s)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_identifiers_round_trip() {
        for s in SignatureScheme::ALL {
            let der = s.algorithm_identifier();
            assert_eq!(
                SignatureScheme::from_algorithm_identifier(&der).unwrap(),
                s,
                "{s:?}"
            );
        }
    }

    #[test]
    fn rfc7427_appendix_a_encodings() {
        // RFC 7427 A.1.3 sha256WithRSAEncryption
        let a13 = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ];
        assert_eq!(SignatureScheme::RsaPkcs1Sha256.algorithm_identifier(), a13);
        // RFC 7427 A.3.1 ecdsa-with-sha256
        let a31 = [
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ];
        assert_eq!(SignatureScheme::EcdsaSha256.algorithm_identifier(), a31);
        // RSASSA-PSS: SHA-256, MGF1 with SHA-256, salt length 32 (hash parameters NULL)
        let a43: [u8; 67] = [
            0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30,
            0x34, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
            0x02, 0x01, 0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
            0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
            0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x20,
        ];
        assert_eq!(
            SignatureScheme::from_algorithm_identifier(&a43).unwrap(),
            SignatureScheme::RsaPssSha256
        );
        assert_eq!(SignatureScheme::RsaPssSha256.algorithm_identifier(), a43);
        // unknown OID
        let md5rsa = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04, 0x05,
            0x00,
        ];
        assert!(matches!(
            SignatureScheme::from_algorithm_identifier(&md5rsa),
            Err(Error::UnsupportedSignature(_))
        ));
        assert!(SignatureScheme::from_algorithm_identifier(&a13[..10]).is_err());
    }

    #[test]
    fn ecdsa_sig_conversion() {
        let fixed: Vec<u8> = (0..64)
            .map(|i| if i == 0 { 0x80 } else { i as u8 })
            .collect();
        let d = ecdsa_fixed_to_der(&fixed).unwrap();
        assert_eq!(ecdsa_der_to_fixed(&d, 32).unwrap(), fixed);
        let mut small = vec![0u8; 64];
        small[31] = 1;
        small[63] = 2;
        let d = ecdsa_fixed_to_der(&small).unwrap();
        assert_eq!(d, [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]);
        assert_eq!(ecdsa_der_to_fixed(&d, 32).unwrap(), small);
        assert!(ecdsa_der_to_fixed(&d, 0).is_err());
        assert!(ecdsa_fixed_to_der(&[1, 2, 3]).is_err());
    }
}
