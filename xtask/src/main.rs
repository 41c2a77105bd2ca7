//! Developer tasks: setup, eBPF build, VM scenarios, demo, benchmarks.

fn main() {}
