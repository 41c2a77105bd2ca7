//! The Network Security Services (NSS) client/server protocol carried over TLS.
