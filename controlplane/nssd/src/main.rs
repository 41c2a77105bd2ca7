//! The gatekey Network Security Services server.

fn main() {}
