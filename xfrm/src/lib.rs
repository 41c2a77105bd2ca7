//! Typed XFRM netlink client: SAs, policies, SPI allocation, counters, events.
