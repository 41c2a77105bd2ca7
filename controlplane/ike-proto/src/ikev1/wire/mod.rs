//! The ISAKMP codec (RFC 2408) for every payload IKEv1 uses (RFC 2407, RFC 2409, RFC 3706,
//! RFC 3947).
//!
//! Decoding is strict in the same way as [`crate::wire`]: lengths are checked against
//! their containers, counts against the bytes present, and errors say where
//! ([`DecodeError`]). Registry values are open newtypes ([`registry`]). Encrypted bodies
//! (E flag) stay opaque here: the IKEv1 engine decrypts them and decodes the chain with
//! [`decode_payloads`] and [`Trailing::Padding`].

mod header;
mod payload;
pub mod registry;

pub use crate::wire::DecodeError;
pub use header::{Flags, HEADER_LEN, Header, VERSION_1_0};
pub use payload::{
    Attribute, CertPayload, Delete, IdPayload, Located, MAX_PADDING, MAX_PAYLOADS, Message, NatOa,
    Notify, Payload, Proposal, Sa, Trailing, Transform, Unknown, attr_basic_or_long, attr_type,
    attr_value, decode_attrs, decode_payloads, encode_attrs, encode_payloads,
};
pub use registry::*;
