use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the dataplane library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stack (network namespace) name is not usable.
    #[error("invalid stack name {name:?}: {reason}")]
    InvalidStackName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The stack's network namespace could not be entered.
    #[error("cannot enter the network namespace of stack {stack} ({path}): {source}")]
    EnterNetns {
        /// The stack name.
        stack: String,
        /// The namespace file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A helper thread panicked.
    #[error("a helper thread for stack {stack} panicked")]
    ThreadPanicked {
        /// The stack name.
        stack: String,
    },
    /// An external command (iproute2) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// A file-system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Loading or verifying the eBPF object failed.
    #[error("loading the eBPF filter failed: {0}")]
    Ebpf(#[from] Box<aya::EbpfError>),
    /// A program operation (load, attach, link) failed.
    #[error("eBPF program operation failed ({what}): {source}")]
    Program {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// A map operation failed.
    #[error("eBPF map operation failed ({what}): {source}")]
    Map {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// The eBPF object lacks a map or program this library expects.
    #[error("the eBPF object has no {kind} named {name}")]
    Missing {
        /// "map" or "program".
        kind: &'static str,
        /// The name looked for.
        name: &'static str,
    },
}

impl From<aya::EbpfError> for Error {
    fn from(e: aya::EbpfError) -> Self {
        Self::Ebpf(Box::new(e))
    }
}
