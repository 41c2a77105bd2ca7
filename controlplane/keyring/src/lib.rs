//! Keyring directories — gatekey's stand-in for a RACF key ring.
//!
//! A keyring is a directory holding PEM certificates, PKCS#8 private keys,
//! optional CRLs and a manifest, `keyring.conf`, in the z/OS statement syntax:
//!
//! ```text
//! # label (1-32 printable characters, blanks allowed), usage, files
//! Certificate "SYSTEMA_STACK1"
//! {
//!   Usage   Personal          # Personal | Site | CertAuth
//!   File    systema1.pem      # PEM; the first certificate is this entry's
//!   Key     systema1.key      # PKCS#8 PEM ("PRIVATE KEY"); Personal/Site only
//!   Owner   A1S1              # the user ID that owns a Personal certificate
//!   Default                   # the owner's (or the ring's) default certificate
//! }
//! Certificate CA { Usage CertAuth  File ca.pem }
//! Crl { File ca.crl }          # PEM or DER; repeatable
//! ```
//!
//! Keys: RSA 2048-4096 bits, ECDSA P-256 or P-384. Loading checks file
//! permissions — the directory and every file must be owned by root or the
//! running user and not writable by group or others, and key files must not
//! be accessible by group or others at all (mode 0600 or stricter); symbolic
//! links and paths outside the directory are refused. Every certificate must
//! parse and every key must match its certificate, or the whole keyring is
//! refused (so a refresh keeps the old one).
//!
//! Used by nssd (the keys of every NSS client, its TLS identity) and by iked
//! (a stack's local keys). Depends on `gatekey-config` (the tokenizer) and
//! `ike-proto` (certificates, signers); must not depend on nssd, iked, tokio
//! or rustls (only on `rustls-pki-types` for the DER types).

mod manifest;
mod perms;
#[cfg(feature = "test-support")]
pub mod testpki;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ike_proto::crypto::cert::Certificate;
use ike_proto::crypto::sig::{KeyAlgorithm, LocalSigner, Signer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use zeroize::Zeroizing;

pub use manifest::{MANIFEST, ManifestEntry, parse_manifest};

/// The usage of a certificate (RACF: PERSONAL, SITE, CERTAUTH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// A user's certificate (may have a private key).
    Personal,
    /// A certificate not tied to a user (may have a private key).
    Site,
    /// A certificate authority (trust anchor).
    CertAuth,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Personal => "PERSONAL",
            Usage::Site => "SITE",
            Usage::CertAuth => "CERTAUTH",
        })
    }
}

/// Errors loading a keyring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest has errors (file:line:column).
    #[error("{0}")]
    Manifest(String),
    /// A file's ownership or mode is unsafe.
    #[error("{path}: {problem}")]
    Permission {
        /// The path.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A certificate cannot be used.
    #[error("certificate {label:?} ({path}): {reason}")]
    Certificate {
        /// The label.
        label: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A private key cannot be used.
    #[error("key of {label:?} ({path}): {reason}")]
    Key {
        /// The label.
        label: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A CRL cannot be used.
    #[error("CRL {path}: {reason}")]
    Crl {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Why no default certificate could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefaultError {
    /// The user owns no PERSONAL certificate.
    #[error("user {0} owns no PERSONAL certificate in the keyring")]
    None(String),
    /// The user owns several and none (or more than one) is marked Default.
    #[error("user {0} owns several PERSONAL certificates and not exactly one is marked Default")]
    Ambiguous(String),
}

struct KeyMaterial {
    signer: Arc<LocalSigner>,
    pkcs8: Zeroizing<Vec<u8>>,
}

/// One certificate of a keyring.
pub struct Entry {
    label: String,
    usage: Usage,
    cert: Certificate,
    extra: Vec<Vec<u8>>,
    key: Option<KeyMaterial>,
    owner: Option<String>,
    default: bool,
    file: PathBuf,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("label", &self.label)
            .field("usage", &self.usage)
            .field("subject", &self.cert.subject().to_string())
            .field("has_key", &self.key.is_some())
            .field("owner", &self.owner)
            .field("default", &self.default)
            .finish()
    }
}

impl Entry {
    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The usage.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The parsed certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    /// The certificate's DER.
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    /// Further certificates that followed the first one in its PEM file (an
    /// issuer chain), in file order.
    pub fn extra_chain(&self) -> &[Vec<u8>] {
        &self.extra
    }

    /// The signer, if the entry has a private key.
    pub fn signer(&self) -> Option<&Arc<LocalSigner>> {
        self.key.as_ref().map(|k| &k.signer)
    }

    /// The key's algorithm, if the entry has a private key.
    pub fn key_algorithm(&self) -> Option<KeyAlgorithm> {
        self.key.as_ref().map(|k| k.signer.key_algorithm())
    }

    /// The private key as DER for TLS (a copy; the caller keeps it as
    /// briefly as it can).
    pub fn private_key_der(&self) -> Option<PrivateKeyDer<'static>> {
        self.key
            .as_ref()
            .map(|k| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.pkcs8.to_vec())))
    }

    /// The owner (upper case), for PERSONAL certificates.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Marked `Default`.
    pub fn is_default(&self) -> bool {
        self.default
    }

    /// The certificate file.
    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// A loaded keyring.
#[derive(Debug, Default)]
pub struct Keyring {
    dir: PathBuf,
    entries: Vec<Entry>,
    crls: Vec<Vec<u8>>,
}

impl Keyring {
    /// Load the keyring in `dir` (see the crate documentation for the rules).
    pub fn load(dir: &Path) -> Result<Keyring, Error> {
        perms::check_dir(dir)?;
        let manifest_path = dir.join(MANIFEST);
        perms::check_file(&manifest_path, false)?;
        let src = std::fs::read_to_string(&manifest_path).map_err(|source| Error::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let (items, crl_files) =
            parse_manifest(&manifest_path.display().to_string(), &src).map_err(Error::Manifest)?;
        let mut entries = Vec::with_capacity(items.len());
        for it in items {
            entries.push(load_entry(dir, it)?);
        }
        let mut crls = Vec::new();
        for f in crl_files {
            let path = perms::inside(dir, &f)?;
            perms::check_file(&path, false)?;
            let bytes = std::fs::read(&path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let ders: Vec<Vec<u8>> = if bytes.starts_with(b"-----") {
                CertificateRevocationListDer::pem_slice_iter(&bytes)
                    .map(|c| c.map(|c| c.to_vec()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| Error::Crl {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
            } else {
                vec![bytes]
            };
            if ders.is_empty() {
                return Err(Error::Crl {
                    path,
                    reason: "no CRL in the file".into(),
                });
            }
            // Check that each parses (the issuer's signature is checked at use).
            for d in &ders {
                let mut v = ike_proto::crypto::cert::ChainVerifier::new();
                v.add_crl_der(d).map_err(|e| Error::Crl {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            crls.extend(ders);
        }
        warn_mapped_collisions(&entries);
        Ok(Keyring {
            dir: dir.to_path_buf(),
            entries,
            crls,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every entry, in manifest order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with exactly this label (labels are case-sensitive).
    pub fn get(&self, label: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.label == label)
    }

    /// The CERTAUTH entries, in manifest order.
    pub fn ca_entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.usage == Usage::CertAuth)
    }

    /// The CRLs (DER), in manifest order.
    pub fn crls(&self) -> &[Vec<u8>] {
        &self.crls
    }

    /// The default PERSONAL certificate of `user`: the only one it owns, or
    /// the one of several marked `Default`.
    pub fn default_for_owner(&self, user: &str) -> Result<&Entry, DefaultError> {
        let owned: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| {
                e.usage == Usage::Personal
                    && e.owner
                        .as_deref()
                        .is_some_and(|o| o.eq_ignore_ascii_case(user))
            })
            .collect();
        match owned.as_slice() {
            [] => Err(DefaultError::None(user.to_ascii_uppercase())),
            [one] => Ok(one),
            many => {
                let d: Vec<&&Entry> = many.iter().filter(|e| e.default).collect();
                match d.as_slice() {
                    [one] => Ok(one),
                    _ => Err(DefaultError::Ambiguous(user.to_ascii_uppercase())),
                }
            }
        }
    }

    /// The keyring's default certificate: the single entry with a key marked
    /// `Default` and no owner, else the single entry with a key.
    pub fn default_entry(&self) -> Option<&Entry> {
        let keyed: Vec<&Entry> = self.entries.iter().filter(|e| e.key.is_some()).collect();
        let marked: Vec<&&Entry> = keyed
            .iter()
            .filter(|e| e.default && e.owner.is_none())
            .collect();
        match (marked.as_slice(), keyed.as_slice()) {
            ([one], _) => Some(one),
            ([], [only]) => Some(only),
            _ => None,
        }
    }

    /// The issuers of `entry` found in the keyring (any usage, matched by
    /// subject = issuer), nearest first, up to a self-signed certificate;
    /// where the keyring has no issuer, the extra certificates of the
    /// entry's own file are used. At most 8 levels.
    pub fn issuer_chain(&self, entry: &Entry) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut cur = entry.cert.clone();
        for _ in 0..8 {
            if cur.issuer() == cur.subject() {
                break;
            }
            let next = self
                .entries
                .iter()
                .map(|e| e.cert.clone())
                .find(|c| c.subject() == cur.issuer() && c.der() != cur.der())
                .or_else(|| {
                    entry
                        .extra
                        .iter()
                        .filter_map(|d| Certificate::from_der(d).ok())
                        .find(|c| c.subject() == cur.issuer())
                });
            match next {
                Some(n) if !out.iter().any(|d| d.as_slice() == n.der()) => {
                    out.push(n.der().to_vec());
                    cur = n;
                }
                _ => break,
            }
        }
        out
    }
}

fn warn_mapped_collisions(entries: &[Entry]) {
    for (i, a) in entries.iter().enumerate() {
        for b in entries.iter().skip(i + 1) {
            if gatekey_config::saf::map_label(&a.label) == gatekey_config::saf::map_label(&b.label)
            {
                tracing::warn!(
                    "keyring labels {:?} and {:?} map to the same profile qualifier {}; one profile controls both",
                    a.label,
                    b.label,
                    gatekey_config::saf::map_label(&a.label)
                );
            }
        }
    }
}

fn load_entry(dir: &Path, it: ManifestEntry) -> Result<Entry, Error> {
    let cert_path = perms::inside(dir, &it.file)?;
    perms::check_file(&cert_path, false)?;
    let pem = std::fs::read(&cert_path).map_err(|source| Error::Io {
        path: cert_path.clone(),
        source,
    })?;
    let cerr = |reason: String| Error::Certificate {
        label: it.label.clone(),
        path: cert_path.clone(),
        reason,
    };
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cerr(format!("not a PEM certificate file: {e}")))?;
    let mut ders = ders.into_iter();
    let first = ders
        .next()
        .ok_or_else(|| cerr("no CERTIFICATE in the file".into()))?;
    let cert = Certificate::from_der(&first).map_err(|e| cerr(e.to_string()))?;
    let extra: Vec<Vec<u8>> = ders.map(|d| d.to_vec()).collect();
    for d in &extra {
        Certificate::from_der(d).map_err(|e| cerr(format!("a further certificate: {e}")))?;
    }
    let key = match &it.key {
        None => None,
        Some(k) => {
            let key_path = perms::inside(dir, k)?;
            perms::check_file(&key_path, true)?;
            Some(load_key(&it.label, &key_path, &cert)?)
        }
    };
    Ok(Entry {
        label: it.label,
        usage: it.usage,
        cert,
        extra,
        key,
        owner: it.owner,
        default: it.default,
        file: cert_path,
    })
}

fn load_key(label: &str, path: &Path, cert: &Certificate) -> Result<KeyMaterial, Error> {
    let kerr = |reason: String| Error::Key {
        label: label.to_owned(),
        path: path.to_path_buf(),
        reason,
    };
    let text = Zeroizing::new(std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?);
    let der = match PrivateKeyDer::from_pem_slice(&text) {
        Ok(PrivateKeyDer::Pkcs8(k)) => Zeroizing::new(k.secret_pkcs8_der().to_vec()),
        Ok(PrivateKeyDer::Pkcs1(_)) => {
            return Err(kerr(format!(
                "the key is PKCS#1 (RSA PRIVATE KEY); convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.p8`",
                path.display()
            )));
        }
        Ok(PrivateKeyDer::Sec1(_)) => {
            return Err(kerr(format!(
                "the key is SEC1 (EC PRIVATE KEY); convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.p8`",
                path.display()
            )));
        }
        Ok(_) => return Err(kerr("unsupported private key encoding".into())),
        Err(e) => {
            return Err(kerr(format!(
                "not an unencrypted PKCS#8 PEM key (\"PRIVATE KEY\"): {e}"
            )));
        }
    };
    let signer = LocalSigner::from_pkcs8_der(&der).map_err(|e| {
        let text = e.to_string();
        if text.contains("TooSmall") || text.contains("TooLarge") {
            kerr("RSA keys must be 2048 to 4096 bits".into())
        } else {
            kerr(text)
        }
    })?;
    match signer.key_algorithm() {
        KeyAlgorithm::Rsa { bits } if (2048..=4096).contains(&bits) => {}
        KeyAlgorithm::Rsa { bits } => {
            return Err(kerr(format!(
                "RSA keys must be 2048 to 4096 bits; this one has {bits}"
            )));
        }
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {}
        other => {
            return Err(kerr(format!(
                "unsupported key type {other:?}: use RSA 2048-4096 or ECDSA P-256/P-384"
            )));
        }
    }
    let pk = signer.public_key();
    if pk.algorithm() != cert.public_key().algorithm() || pk.raw() != cert.public_key().raw() {
        return Err(kerr(format!(
            "the key does not belong to the certificate (subject {})",
            cert.subject()
        )));
    }
    Ok(KeyMaterial {
        signer: Arc::new(signer),
        pkcs8: der,
    })
}

#[cfg(test)]
mod tests;
