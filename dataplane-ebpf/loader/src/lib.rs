//! User-space loader and API for gatekey's eBPF IP filter.
//!
//! The filter enforces a stack's active *filter set* — `default` (the
//! profile's `IPSEC … ENDIPSEC` block) or `policy` (the IPsec policy file's
//! filters plus per-SA dynamic filters) — on TC ingress and egress of the
//! stack's interfaces. The eBPF object is built from `dataplane-ebpf/ebpf` by
//! this crate's `build.rs` (aya-build, stable toolchain with
//! `RUSTC_BOOTSTRAP=1`) and embedded as [`EBPF_OBJECT`]. The data layout
//! shared with the program is in `gatekey-dataplane-common`.
//!
//! # Using it (iked, `gatekey-filter`)
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use gatekey_dataplane::{Stack, stack::StackFilter, dataplane::{Options, SetId}};
//! use gatekey_dataplane::compile::{Dir, DynamicFilter, SaMatch};
//! use gatekey_dataplane::stack::TrafficQuery;
//!
//! let stack = Stack::new("default")?;
//! // Maps, programs and links pinned under /sys/fs/bpf/gatekey/default/.
//! let mut sf = StackFilter::open(&stack, &Options::default())?;
//! let profile = gatekey_config::profile::load("/etc/security/ipsec-profile.conf".as_ref())?;
//! sf.load_default(profile.set)?;                          // atomic replace
//! sf.dataplane().attach(None, &Default::default())?;     // all interfaces but lo
//!
//! let policy = gatekey_config::filter_policy::load("/etc/security/ipsec-policy.conf".as_ref())?;
//! let (_report, active, _dropped) = sf.load_policy(policy.set)?; // active unless the marker says default
//!
//! // A child SA came up under the anchor IpFilterRule "tunnel":
//! # let rule: gatekey_config::filter::FilterRule = unimplemented!();
//! let id = sf.add_dynamic(DynamicFilter {
//!     anchor: "tunnel".into(),
//!     rule,                                              // its traffic selectors, IpSec action
//!     sa: SaMatch { reqid: 0x6b00_0001, spi: Some(0xc0ff_ee01) },
//! })?;
//! // … and went away:
//! sf.remove_dynamic(id)?;
//!
//! sf.switch(SetId::Default)?;                            // `ipsec -f default` (marker file)
//! for c in sf.counters()? {                              // `ipsec -f display` hit counts
//!     println!("{} {:?} {} packets", c.name, c.dir, c.packets);
//! }
//! # let q: TrafficQuery = unimplemented!();
//! let answer = sf.traffic_test(None, &q)?;               // `ipsec -t`
//! # Ok(()) }
//! ```
//!
//! - [`stack::StackFilter`]: one stack's sets, dynamic filters, marker file,
//!   counters, traffic test. Replacing a set writes a spare table slot and
//!   switches with one byte, so packets see the old set or the new one, never
//!   a mix; counters of unchanged filters keep counting.
//! - [`dataplane::Dataplane`]: the kernel side (load/pin, attach, install,
//!   switch, counters, statistics, [`dataplane::Dataplane::log_reader`]).
//! - [`compile`]: filter sets → lookup tables, and user-space classification
//!   with the same tables ([`compile::Compiled::classify`]).
//! - [`model`]: the linear reference model the tests compare against.
//! - [`logread`]: log events → operator messages (`EZD0814I` …).
//! - [`marker`]: the per-stack active-set marker file.
//! - [`cli`]: the `gatekey-filter` command line (also read by the example
//!   `gatekey-filter-gen`, which writes the man page `gatekey-filter.8`).
//! - [`netns`], [`testnet`]: stacks (network namespaces), and throw-away
//!   namespaces for tests and benchmarks.
//!
//! Depends on `gatekey-dataplane-common` and `gatekey-config` (the filter
//! model) among workspace crates (and `gatekey-syslog` for the
//! `gatekey-filter` binary); must not depend on any binary crate, iked, or
//! the NMI and NSS crates.

pub mod cli;
pub mod compile;
pub mod dataplane;
mod error;
pub mod logread;
pub mod marker;
pub mod model;
pub mod netns;
pub mod stack;
pub mod testnet;

pub use error::Error;
pub use netns::Stack;

/// The eBPF object file built from `dataplane-ebpf/ebpf`, 8-byte aligned.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/gatekey-filter"));
