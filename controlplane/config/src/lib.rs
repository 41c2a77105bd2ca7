//! Parsers for gatekey's z/OS-style statement files: iked.conf (IkeConfig,
//! NssStackConfig), nssd.conf (NssConfig), the TCP/IP profile's
//! `IPSEC … ENDIPSEC` block, the IPsec policy file, and the authorization
//! profiles file.
//!
//! Every parser reports errors as [`lex::Diagnostic`]s naming
//! `file:line:column` and what was expected. This crate does no I/O beyond
//! reading the files it is asked to parse and depends on no other workspace
//! crate.

pub mod filter;
pub mod filter_policy;
pub mod ike_policy;
pub mod iked_conf;
pub mod lex;
pub mod nssd_conf;
pub mod policy_tree;
pub mod profile;
pub mod saf;
mod sysname;

pub use sysname::{system_name, system_name_from};
