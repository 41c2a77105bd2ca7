//! The gatekey IKE daemon.

fn main() {}
