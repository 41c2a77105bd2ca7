//! Key material: zeroized on drop, redacted in `Debug`, compared in constant time.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Secret key bytes for an SA (encryption, integrity or AEAD key including its salt).
///
/// The bytes are wiped when the value is dropped, `Debug` prints only the length, and
/// equality is constant-time.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Copies `bytes` into a new key.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretKey(bytes.to_vec())
    }

    /// Takes ownership of `bytes` (no copy is left behind).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        SecretKey(bytes)
    }

    /// The key bytes. Do not log or copy them into long-lived, non-zeroizing storage.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Key length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty (as for the `null` cipher).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretKey {
    fn from(v: Vec<u8>) -> Self {
        SecretKey(v)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<{} bytes redacted>)", self.0.len())
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for SecretKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let k = SecretKey::from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let s = format!("{k:?}");
        assert!(!s.contains("de") && !s.contains("222"), "{s}");
        assert!(s.contains("4 bytes"));
    }

    #[test]
    fn equality() {
        assert_eq!(SecretKey::from_slice(b"abc"), SecretKey::from_slice(b"abc"));
        assert_ne!(SecretKey::from_slice(b"abc"), SecretKey::from_slice(b"abd"));
        assert_ne!(SecretKey::from_slice(b"abc"), SecretKey::from_slice(b"ab"));
    }
}
