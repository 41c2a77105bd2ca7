//! The crate's error type.

use std::io;
use std::path::PathBuf;

use crate::codes::{ReasonCode, ReturnCode};
use crate::header::{MAX_VERSION, MIN_VERSION, MsgType};

/// Errors of the NMI codec and client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket could not be connected (daemon not running, no permission, …).
    #[error("cannot connect to {}: {source}", path.display())]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("I/O error on the NMI connection: {0}")]
    Io(#[source] io::Error),
    /// No answer within the client's timeout.
    #[error("timed out waiting for the server")]
    Timeout,
    /// The server closed the connection without TERM.
    #[error("the server closed the connection")]
    Closed,
    /// The server sent TERM (it is shutting down, busy, or rejected the stream).
    #[error("the server ended the session: rc {rc} rsn {rsn}: {message}")]
    Terminated {
        /// TERM rc.
        rc: ReturnCode,
        /// TERM rsn.
        rsn: ReasonCode,
        /// TERM message, if any.
        message: String,
    },
    /// The server answered the request with a nonzero rc.
    #[error("{msg_type} failed: rc {rc} rsn {rsn}: {message}")]
    Failed {
        /// Request type.
        msg_type: MsgType,
        /// Return code.
        rc: ReturnCode,
        /// Reason code.
        rsn: ReasonCode,
        /// The server's message.
        message: String,
        /// On `EACCES`: the profile checked.
        profile: Option<String>,
    },
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No protocol version in common.
    #[error(
        "no common protocol version: the server speaks {server_min} to {server_max}, this client {MIN_VERSION} to {MAX_VERSION}"
    )]
    Version {
        /// Server's lowest.
        server_min: u16,
        /// Server's highest.
        server_max: u16,
    },
    /// The request type needs a newer protocol version than the session speaks (the server is
    /// older than this client).
    #[error(
        "{msg_type} needs NMI protocol version {needs}; the server speaks at most version {server_max} (upgrade the daemon)"
    )]
    Unsupported {
        /// Request type.
        msg_type: MsgType,
        /// The version that defines it.
        needs: u16,
        /// The server's highest version.
        server_max: u16,
    },
    /// A response body did not decode.
    #[error("cannot decode the {msg_type} response body: {source}")]
    Decode {
        /// Request type.
        msg_type: MsgType,
        /// JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A body could not be encoded.
    #[error("cannot encode a message body: {0}")]
    Encode(#[source] serde_json::Error),
    /// A message would exceed the protocol's limits.
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// A target name is not valid.
    #[error("invalid target {0}")]
    BadTarget(String),
}
