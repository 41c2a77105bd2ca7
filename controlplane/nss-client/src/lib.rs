//! The NSS client library (in progress).
