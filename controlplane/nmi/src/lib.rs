//! The network management interface (NMI) protocol spoken between ipsec, iked and nssd.
