//! The crate's error type.

use crate::crypto::der::DerError;

/// Every failure ike-proto reports.
///
/// Variants fall into three groups, as in rustls: the peer misbehaved (malformed or
/// unauthentic input), the peer is incompatible (nothing acceptable in common), and local
/// misuse (bad keys, bad configuration, calls in the wrong state).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- peer misbehaved ----
    /// A message or payload could not be decoded; says where.
    #[error("malformed message: {0}")]
    Decode(#[from] crate::wire::DecodeError),
    /// A signature or AUTH payload did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// The peer's certificate chain was rejected.
    #[error("certificate chain rejected: {0}")]
    CertificateChain(#[source] webpki::Error),
    /// The peer's certificate could not be parsed or is unusable.
    #[error("bad certificate: {0}")]
    Certificate(String),
    /// The identity the peer claims is not in its certificate.
    #[error("peer identity {0} does not match its certificate")]
    IdentityMismatch(String),
    /// An integrity check (ICV or MAC) failed.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// The peer broke the protocol (wrong payloads, wrong state).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer's authentication failed.
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),

    // ---- peer incompatible ----
    /// No proposal was acceptable.
    #[error("no proposal chosen: {0}")]
    NoProposalChosen(String),
    /// The traffic selectors did not overlap the local policy.
    #[error("traffic selectors unacceptable")]
    TsUnacceptable,
    /// A signature scheme or key type is not supported.
    #[error("unsupported signature scheme or key: {0}")]
    UnsupportedSignature(String),

    // ---- local misuse ----
    /// A private or public key could not be used.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A DER structure in a local file or argument was malformed.
    #[error("{0}")]
    Der(#[from] DerError),
    /// PEM input could not be read.
    #[error("PEM: {0}")]
    Pem(String),
    /// Configuration given to the engine is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The referenced SA or request does not exist.
    #[error("unknown {0}")]
    Unknown(&'static str),
    /// The engine is not in a state that allows this call.
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// A cryptographic primitive failed (random source, key agreement, …).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
