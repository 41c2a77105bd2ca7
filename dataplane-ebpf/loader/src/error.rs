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
    /// A filter set cannot be compiled into the tables.
    #[error("cannot compile the filter set: {0}")]
    Compile(String),
    /// A filter set is needed but has not been loaded.
    #[error("the {set} filter set has not been loaded into this stack")]
    NotLoaded {
        /// `default` or `policy`.
        set: &'static str,
    },
    /// Pinned maps from another version of gatekey are in the way.
    #[error(
        "the maps pinned in {dir} have layout version {found}, this gatekey needs {expected}: \
         run `gatekey-filter unload` for the stack, then load again"
    )]
    Layout {
        /// The pin directory.
        dir: PathBuf,
        /// Version found.
        found: u32,
        /// Version expected.
        expected: u32,
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

impl Error {
    pub(crate) fn program(
        what: impl Into<String>,
        e: impl Into<aya::programs::ProgramError>,
    ) -> Self {
        Self::Program {
            what: what.into(),
            source: Box::new(e.into()),
        }
    }

    pub(crate) fn map(what: impl Into<String>, e: impl Into<aya::maps::MapError>) -> Self {
        Self::Map {
            what: what.into(),
            source: Box::new(e.into()),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
