//! Wire formats: the IKEv2 header, payloads and the message codec (RFC 7296 §3).

use std::fmt;

/// Why and where a message failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset in the datagram (or decrypted SK body) where the problem was found.
    pub offset: usize,
    /// Which structure was being read (e.g. `"SA payload / proposal 1 / transform 2"`).
    pub context: String,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.context, self.offset, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}
