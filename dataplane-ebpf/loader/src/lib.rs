//! User-space loader and API for gatekey's eBPF IP filter.
