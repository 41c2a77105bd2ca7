//! Types shared between gatekey's eBPF filter and its user-space loader.
