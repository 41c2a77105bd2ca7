//! Types shared between gatekey's eBPF filter (`gatekey-ebpf`, built for the
//! BPF target) and its user-space loader (`gatekey-dataplane`): map names,
//! `#[repr(C)]` map keys and values, and constants.
//!
//! `#![no_std]`, no dependencies; with the `user` feature it implements
//! `aya::Pod` for the map types. Must not depend on any other workspace crate.
#![no_std]

/// Name of the per-CPU array counting IP packets per protocol number
/// (index 0‥=255) seen by the pipeline-proof program.
pub const PROTO_COUNTS_MAP: &str = "PROTO_COUNTS";
