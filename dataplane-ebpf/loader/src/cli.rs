//! The `gatekey-filter` command line (clap definitions), shared by the
//! binary and the example `gatekey-filter-gen` that writes its man page
//! (`cargo xtask man`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

// `gatekey-filter` arguments. (Plain comments on the derived types: a doc
// comment here would become part of the help text.)
#[derive(Debug, Parser)]
#[command(
    name = "gatekey-filter",
    version,
    about = "Load, inspect and switch a stack's eBPF IP filter (default IP filter policy)"
)]
pub struct Cli {
    /// The stack: a network namespace name (`/run/netns/NAME`); `default` =
    /// the namespace this command runs in.
    #[arg(long, short = 'p', global = true, default_value = "default")]
    pub stack: String,
    #[command(subcommand)]
    pub cmd: Cmd,
}

// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Load (or replace) the default set from the profile, attach to the
    /// stack's interfaces and pin everything.
    Load {
        /// The profile file (default: ProfileFile of the stack's StackConfig
        /// in iked.conf, else /etc/security/ipsec-profile[.<stack>].conf).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// iked.conf to read StackConfig from (default: $IKED_FILE, else
        /// /etc/security/iked.conf if it exists).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Attach to these interfaces only (repeatable; default: all but
        /// loopback, or the StackConfig's Interface list).
        #[arg(long = "interface", short = 'i')]
        interfaces: Vec<String>,
        /// Security class of an interface, `IF=N` (repeatable).
        #[arg(long = "secclass", value_parser = parse_secclass)]
        secclass: Vec<(String, u32)>,
        /// Lookup classes per table slot (only when the maps are created).
        #[arg(long, default_value_t = crate::dataplane::DEFAULT_CLASSES_PER_SLOT)]
        classes: u32,
        /// Log events per second per CPU (0 = unlimited).
        #[arg(long, default_value_t = 100)]
        log_rate: u32,
    },
    /// Load (or replace) the policy set from an IPsec policy file, with
    /// optional dynamic filters; it becomes active unless the marker file
    /// says `default`. (iked does this itself; this is for tests and
    /// recovery.)
    Policy {
        /// The IPsec policy file.
        #[arg(long)]
        policy: PathBuf,
        /// A dynamic filter: `ANCHOR,src=A,dst=B,reqid=N[,spi=N][,proto=P]`
        /// (addresses as a, a/len or a-b; repeatable).
        #[arg(long = "dynamic")]
        dynamic: Vec<String>,
    },
    /// Make a set active and record it in the marker file (`ipsec -f
    /// default` / `-f reload`).
    Switch {
        /// `default` or `policy`.
        set: String,
    },
    /// Show the active set, per-filter counters and statistics.
    Show {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Traffic test: which filters match a packet (`ipsec -t` semantics).
    Test {
        /// Evaluate this policy file instead of the profile.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The profile (default as for `load`).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// iked.conf for the StackConfig.
        #[arg(long)]
        config: Option<PathBuf>,
        /// `src dst proto [sport dport] [in|out] [secclass]`.
        args: Vec<String>,
    },
    /// Write filter log events to syslog (local4) until stopped.
    Log {
        /// Log to standard error instead of syslog.
        #[arg(long)]
        stderr: bool,
    },
    /// Attach the loaded filter to interfaces that appear later (checks every
    /// `--interval` seconds; runs until stopped).
    Watch {
        /// Seconds between checks.
        #[arg(long, default_value_t = 1)]
        interval: u64,
        /// Security class of an interface, `IF=N` (repeatable).
        #[arg(long = "secclass", value_parser = parse_secclass)]
        secclass: Vec<(String, u32)>,
    },
    /// Detach and remove everything pinned for the stack (the stack is then
    /// unfiltered).
    Unload,
}

fn parse_secclass(s: &str) -> Result<(String, u32), String> {
    let (i, n) = s.split_once('=').ok_or("expected IF=N")?;
    let n: u32 = n
        .parse()
        .map_err(|_| format!("'{n}' is not a number 0-255"))?;
    if n > 255 {
        return Err(format!("security class {n} is not 0-255"));
    }
    Ok((i.to_owned(), n))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn secclass_values() {
        let c = Cli::try_parse_from([
            "gatekey-filter",
            "-p",
            "red",
            "watch",
            "--secclass",
            "eth0=7",
        ]);
        match c {
            Ok(Cli {
                stack,
                cmd: Cmd::Watch { secclass, .. },
            }) => {
                assert_eq!(stack, "red");
                assert_eq!(secclass, vec![("eth0".to_string(), 7)]);
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        for bad in ["eth0", "eth0=x", "eth0=256"] {
            assert!(
                Cli::try_parse_from(["gatekey-filter", "watch", "--secclass", bad]).is_err(),
                "{bad} accepted"
            );
        }
    }
}
