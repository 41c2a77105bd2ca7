//! Typed XFRM netlink client: SAs, policies, SPI allocation, counters, events, namespaces.
//!
//! gatekey's IKE daemon installs every IPsec SA and policy through this crate, reads traffic
//! counters from it for `ipsec -y display`, and learns about expiring SAs, unprotected traffic
//! (ACQUIRE) and NAT mapping changes from its events.
//!
//! # Model
//!
//! * [`Handle`] — one XFRM netlink socket in one network namespace
//!   ([`Handle::new`], [`Handle::open_named`], [`Handle::open`] with a [`Netns`] from a path or
//!   fd). The calling thread never changes namespace: a short-lived helper thread enters the
//!   namespace, creates the socket and exits.
//! * Requests are built rtnetlink-style and executed:
//!   `handle.state().add(sa).execute().await`, `handle.policy().dump().execute().await`,
//!   `handle.state().alloc_spi(src, dst, Proto::Esp).range(..).execute().await`.
//! * [`Sa`] is what to install: endpoints, SPI, mode, reqid, selector, [`SaCrypto`] (typed
//!   [`AeadAlgorithm`] / [`CipherAlgorithm`] + [`IntegrityAlgorithm`] with kernel names, key,
//!   ICV and truncation lengths), replay window and ESN, lifetimes, NAT-T [`Encap`], marks.
//!   Legacy algorithms (3DES, HMAC-MD5, HMAC-SHA1) are refused unless the SA allows them.
//!   [`SaInfo`] is what the kernel reports: the `Sa` plus counters ([`CurrentLifetime`],
//!   [`SaStats`], [`ReplayState`]).
//! * [`Policy`] has a [`Selector`], a [`Direction`], priority, action, index and
//!   [`Template`]s; [`PolicyId`] names one by selector or index.
//! * [`Batch`] installs many objects fast: requests are packed into large datagrams without
//!   per-request acknowledgements, each datagram closed by an `NLMSG_NOOP` barrier that is
//!   acknowledged. Failures still come back per request (the kernel always reports errors),
//!   so every request gets its own `Result`.
//! * [`Handle::events`] opens a separate multicast socket; [`EventStream::next`] yields typed
//!   [`Event`]s: `Expire` (soft = rekey, hard = gone), `Acquire`, `PolicyExpire`, `Mapping`,
//!   and, when subscribed, SA/policy change notifications.
//! * Errors ([`Error`]) carry the kernel's errno and extended-ack message
//!   ([`KernelError`]). Keys are [`SecretKey`]s: wiped on drop, redacted in `Debug`; every
//!   buffer that held key bytes (requests, replies, parsed attributes) is wiped too.
//!
//! # Layers
//!
//! [`wire`] parses raw datagrams into typed netlink headers and typed XFRM messages (on
//! `netlink-packet-xfrm`'s structures) and emits them back byte-for-byte; the model types
//! above convert to and from those messages; `conn` runs the socket.
//!
//! # Dependencies
//!
//! This crate depends on no other gatekey crate and must not: it is the kernel interface the
//! daemons share. It uses no `unsafe` (namespace entry and socket options go through
//! `rustix`'s safe wrappers).

mod alg;
mod conn;
mod error;
mod event;
mod handle;
mod key;
mod netns;
mod policy;
mod sa;
mod stat;
mod types;
pub mod wire;

pub use alg::{AeadAlgorithm, AesKeySize, CipherAlgorithm, IntegrityAlgorithm, SaCrypto};
pub use error::{Error, KernelError, Result, libc_errno};
pub use event::{Acquire, AsyncEvent, Event, EventGroups, EventStream, Mapping};
pub use handle::{
    AddPolicy, AddSa, AllocSpi, Batch, BatchRequest, DeletePolicy, DeleteSa, DumpPolicy, DumpSa,
    FlushPolicy, FlushSa, GetPolicy, GetSa, Handle, PolicyHandle, StateHandle,
};
pub use key::SecretKey;
pub use netns::Netns;
pub use policy::{MAX_TEMPLATES, Policy, PolicyFlags, PolicyId, PolicyInfo, SpdInfo, Template};
pub use sa::{Sa, SaCounters, SaId, SaInfo, SadInfo};
pub use stat::XfrmStat;
pub use types::{
    AddressFamily, CurrentLifetime, Direction, Encap, EncapType, IpPrefix, LifetimeLimits,
    Lifetimes, Mark, Mode, PolicyAction, Proto, ReplayState, SaFlags, SaStats, Selector, Spi,
    ipproto,
};
