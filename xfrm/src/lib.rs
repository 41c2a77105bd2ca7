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
//! # Example
//!
//! ```no_run
//! use gatekey_xfrm::*;
//! # async fn demo() -> Result<()> {
//! let h = Handle::open_named("gw1")?; // /run/netns/gw1; the caller stays where it is
//! let (me, peer) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
//! // Inbound SA: the SPI is ours to choose, so ask the kernel for a free one...
//! let spi_in = h.state().alloc_spi(peer, me, Proto::Esp).reqid(7).execute().await?;
//! let gcm = AeadAlgorithm::AesGcm16(AesKeySize::Aes256);
//! let key_in = SecretKey::from_vec(vec![0; 36]); // from the IKE SA's KEYMAT
//! // ...and complete the larval SA with *update*.
//! h.state()
//!     .update(Sa::new(peer, me, spi_in, SaCrypto::esp_aead(gcm.clone(), key_in)).reqid(7))
//!     .execute()
//!     .await?;
//! let sel = Selector::new("10.1.0.0/16".parse()?, "10.2.0.0/16".parse()?)?;
//! h.policy()
//!     .add(Policy::new(sel, Direction::Out).template(Template::tunnel(Proto::Esp, me, peer, 7)))
//!     .execute()
//!     .await?;
//! let c = h.state().counters(SaId::new(me, spi_in, Proto::Esp)).await?;
//! println!("{} bytes, {} packets", c.current.bytes, c.current.packets);
//! let mut events = h.events(EventGroups::IKE)?;
//! if let Event::Expire { sa, hard: false } = events.next().await? {
//!     println!("rekey child SA {}", sa.sa.spi);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Notes for an IKE daemon
//!
//! * **SPIs**: [`StateHandle::alloc_spi`] leaves a larval SA; install the inbound SA over it
//!   with [`StateHandle::update`]. Outbound SPIs come from the peer: use `add`.
//! * **Rekey (make-before-break)**: add the new inbound SA, then the new outbound SA with the
//!   same reqid (the kernel prefers the newest SA for a template), then delete the old pair.
//!   Policies stay; a [`Batch`] does the whole step in one system call.
//! * **ACQUIRE**: answer with SAs whose [`Sa::acquire_seq`] is [`Acquire::seq`]; the kernel
//!   replaces its larval SA (tested in `vm-tests/scenarios/xfrm/acquire`).
//! * **Expiry**: a soft [`Event::Expire`] means rekey now; a hard one means the SA is gone.
//! * **NAT-T**: a [`Event::Mapping`] reports the peer's new address/port; `update` the inbound
//!   and outbound SAs with the new [`Encap`] ports in place. The kernel checks the *outer*
//!   UDP/4500 datagram against inbound policies before decapsulating it, so the daemon's
//!   sockets need per-socket bypass policies (`IP_XFRM_POLICY`), as strongSwan's have.
//! * **reqids**: the kernel hashes SAs by `(daddr + saddr) ^ reqid`; reqids that count up in
//!   step with peer addresses (198.18.0.1 ↔ 1, .2 ↔ 2, …) land in few buckets and make
//!   installs O(n). Real peers are not in step; lab set-ups can be.
//! * **Cancellation**: dropping a request future is safe: stale replies are skipped by
//!   sequence number and an abandoned dump is read to its end before the next request.
//! * **Counters**: [`StateHandle::counters`] reads the SA (keys cross the socket and are wiped
//!   at once); [`StateHandle::async_event`] reads sequence numbers and lifetime without keys.
//!   Bytes are the kernel's: the inner datagram in tunnel mode, the IP payload in transport
//!   mode. Per-namespace error counters: [`Handle::xfrm_stat`].
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
