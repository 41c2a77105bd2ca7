//! The gatekey network management interface (NMI): the request/response protocol that `ipsec`
//! (and any management program) speaks with `iked` on `/run/iked/ipsecmgmt` and with `nssd` on
//! `/run/nssd/nss`, and that nssd relays to NSS clients for remote management. The specification is
//! `docs/nmi-protocol.md`; this crate is its reference implementation:
//!
//! - [`header`], [`codes`], [`records`], [`message`]: the 64-byte header, return/reason codes, the
//!   typed JSON bodies and whole messages — sans-IO, no sockets, no clock;
//! - [`client`]: a blocking client on `std::os::unix::net::UnixStream` (what `ipsec` uses);
//! - `server` (feature `server`, tokio): accept loop with INIT/TERM, SO_PEERCRED caller identity,
//!   size limits, a client limit and idle timeout, dispatch to a [`server::Handler`] the daemon
//!   implements, and [`server::serve_relayed`] for requests that arrive through NSS.
//!
//! Dependencies: serde, serde_json, thiserror; tokio and tracing only with `server`. This crate
//! must not depend on any other workspace crate (the `ipsec` command depends on it alone).

pub mod client;
pub mod codes;
pub mod error;
pub mod header;
pub mod message;
pub mod records;
#[cfg(feature = "samples")]
pub mod samples;
#[cfg(feature = "server")]
pub mod server;

pub use client::{Client, Reply};
pub use codes::{Failure, ReasonCode, ReturnCode};
pub use error::Error;
pub use header::{
    Access, FLAG_RESPONSE, HEADER_LEN, Header, IDENT, MAX_REQUEST, MAX_RESPONSE, MAX_VERSION,
    MIN_VERSION, MsgType, TARGET_LEN, Target,
};
pub use message::{Frame, Request, Response};

/// Default path of iked's NMI socket.
pub const IKED_SOCKET: &str = "/run/iked/ipsecmgmt";
/// Default path of nssd's NMI socket.
pub const NSSD_SOCKET: &str = "/run/nssd/nss";
