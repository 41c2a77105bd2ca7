//! Parsers for gatekey's z/OS-style statement files: iked.conf, nssd.conf, the IPSEC profile block and the IPsec policy file.
