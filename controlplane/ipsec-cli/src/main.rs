//! The ipsec command.

fn main() {}
