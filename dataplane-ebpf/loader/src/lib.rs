//! User-space loader and API for gatekey's eBPF IP filter.
//!
//! The eBPF object is built from `dataplane-ebpf/ebpf` by this crate's
//! `build.rs` (aya-build, stable toolchain with `RUSTC_BOOTSTRAP=1`) and
//! embedded as [`EBPF_OBJECT`].
//!
//! Depends on `gatekey-dataplane-common` only among workspace crates; must not
//! depend on any binary crate or on the control-plane crates.

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
