//! The IKEv2 engine (RFC 7296), sans-IO.
//!
//! One [`Endpoint`] serves one stack: every IKE SA of that stack, demultiplexed by SPI. The
//! driver owns the sockets and the clock:
//!
//! - inputs: [`Endpoint::handle_datagram`], [`Endpoint::handle_timeout`],
//!   [`Endpoint::connect`] and the other commands, [`Endpoint::handle_signature`],
//!   [`Endpoint::handle_verification`], [`Endpoint::set_unix_time`];
//! - outputs: [`Endpoint::poll_transmit`] (datagrams, with the non-ESP marker on the NAT-T
//!   port), [`Endpoint::poll_timeout`] (when to call `handle_timeout` next),
//!   [`Endpoint::poll_event`] (sign/verify requests, child SAs to install or delete, state
//!   changes) and [`Endpoint::statistics`].
//!
//! `now` is always a parameter; the engine never reads a clock, opens a socket or blocks.
//! Exchanges: `init` (IKE_SA_INIT), `auth` (IKE_AUTH), `child` (CREATE_CHILD_SA), `info`
//! (INFORMATIONAL); `sa` holds one IKE SA's message window, retransmission and timers.

mod auth;
mod child;
pub mod config;
mod endpoint;
pub mod event;
mod info;
mod init;
mod proposal;
mod sa;
pub mod ts;

pub use config::{
    ChildConfig, ChildProposal, EndpointConfig, IkeProposal, Lifetimes, LocalAuth, Mode,
    PeerConfig, RemoteAuth, default_ike_proposals,
};
pub use endpoint::Endpoint;
pub use event::{
    ChildId, CloseReason, Event, IkeSaId, InstallChildSa, RequestId, SaKeys, Statistics, Transmit,
    UdpEncap,
};
