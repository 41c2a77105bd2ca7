//! The gatekey IKE daemon.
//!
//! One iked serves every configured stack (network namespace): per stack it
//! opens UDP 500 and 4500 (IPv4 and IPv6), drives the sans-IO IKE engine
//! (`ike-proto`), installs SAs and policies through `gatekey-xfrm` and
//! dynamic filters through `gatekey-dataplane`, and answers NMI requests on
//! `/run/iked/ipsecmgmt`. Configuration: `/etc/security/iked.conf`
//! (`IKED_FILE`, `--config`) and each stack's IPsec policy file; `SIGHUP`
//! re-reads both, and a configuration with any error is rejected whole.
//!
//! iked never forks (systemd runs it, `Type=exec`); it logs to syslog
//! facility local4 with stable message IDs (`docs/messages.md`).
//!
//! The library target exists so the binary and the tests share the
//! daemon's modules; nothing outside this package depends on it.

pub mod conf;
pub mod daemon;
pub mod filter;
pub mod ike;
pub mod kernel;
pub mod net;
pub mod netns;
pub mod nmi;
pub mod nss;
pub mod stack;
pub mod sys;
#[cfg(test)]
mod testutil;
pub mod v1;
pub mod xlate;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

/// Command line of `iked`.
#[derive(Debug, Parser)]
#[command(
    name = "iked",
    version,
    about = "gatekey IKE daemon: IKEv2 and IKEv1 tunnels on Linux XFRM, the eBPF IP filter, z/OS-style configuration and NMI",
    long_about = None
)]
pub struct Cli {
    /// Configuration file (default: $IKED_FILE, else /etc/security/iked.conf).
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate iked.conf and every stack's policy file, print every error
    /// with file:line:column, and exit (0 = valid, 1 = errors).
    #[arg(long)]
    pub check: bool,

    /// Log to standard error as well as syslog (for running in a terminal
    /// or under a supervisor that captures stderr). iked never forks.
    #[arg(long)]
    pub foreground: bool,

    /// Where log lines go (default: syslog; with --foreground: both).
    #[arg(long, value_enum, value_name = "TARGET")]
    pub log_target: Option<LogTarget>,

    /// Format of log lines on standard error.
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax (e.g. `debug`, `iked=trace`);
    /// overrides IkeSyslogLevel. RUST_LOG, when set, overrides both.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// The NMI socket.
    #[arg(long, value_name = "PATH", default_value = "/run/iked/ipsecmgmt")]
    pub nmi_socket: PathBuf,

    /// Group owning the NMI socket (mode 0660), e.g. an operators' group;
    /// default: root's group.
    #[arg(long, value_name = "GROUP")]
    pub nmi_group: Option<String>,

    /// Where SAs and policies go: the kernel (XFRM), or an in-memory
    /// recorder for tests on hosts without ESP support.
    #[arg(long, value_enum, default_value = "xfrm", hide = true)]
    pub kernel: KernelBackend,

    /// Keep every capability (for debugging; by default iked drops all but
    /// CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, CAP_SYS_ADMIN and CAP_BPF once
    /// its sockets are open).
    #[arg(long)]
    pub keep_privileges: bool,
}

/// `--kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelBackend {
    /// XFRM netlink in each stack's namespace.
    Xfrm,
    /// In memory, recording every call (tests only).
    Recording,
}

/// `--log-target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// Syslog (/dev/log), facility local4.
    Syslog,
    /// Standard error only.
    Stderr,
    /// Syslog and standard error.
    Both,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The program: parse the command line and run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = gatekey_config::iked_conf::config_path(cli.config.as_deref());
    if cli.check {
        return check(&path);
    }
    match run(cli, path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iked: {e:#}");
            tracing::error!("EZD0907E IKE initialization failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `iked --check`.
fn check(path: &std::path::Path) -> ExitCode {
    match conf::load(path) {
        Ok(l) => {
            for w in l.warnings() {
                eprintln!("warning: {w}");
            }
            let policies: usize = l.stacks.iter().filter(|s| s.policy.get().is_some()).count();
            println!(
                "{}: valid ({} stack{}, {} with an IPsec policy)",
                path.display(),
                l.stacks.len(),
                if l.stacks.len() == 1 { "" } else { "s" },
                policies
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for line in &e.0 {
                eprintln!("{line}");
            }
            eprintln!(
                "{}: {} error{}; iked would not start with this configuration",
                path.display(),
                e.0.len(),
                if e.0.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

/// The log filter for an IkeSyslogLevel (see docs/configuration.md).
pub fn filter_for_level(level: u32) -> String {
    use gatekey_config::iked_conf::syslog_level as l;
    if level == 0 {
        return "warn".into();
    }
    if level & l::TRACE != 0 {
        return "info,iked=trace,ike_proto=debug,gatekey_xfrm=debug".into();
    }
    let detail = l::VERBOSE | l::PHASE1 | l::PHASE2 | l::SYSTEM | l::FILTER | l::POLICY;
    if level & detail != 0 {
        return "info,iked=debug".into();
    }
    "info".into()
}

fn run(cli: Cli, path: PathBuf) -> anyhow::Result<()> {
    let loaded = conf::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let target = match (cli.log_target, cli.foreground, loaded.iked.ike.echo) {
        (Some(LogTarget::Syslog), ..) => gatekey_syslog::Target::Syslog,
        (Some(LogTarget::Stderr), ..) => gatekey_syslog::Target::Stderr,
        (Some(LogTarget::Both), ..) | (None, true, _) | (None, false, true) => {
            gatekey_syslog::Target::Both
        }
        (None, false, false) => gatekey_syslog::Target::Syslog,
    };
    let mut log = gatekey_syslog::Config::new("iked");
    log.target = target;
    log.format = match cli.log_format {
        LogFormat::Text => gatekey_syslog::Format::Text,
        LogFormat::Json => gatekey_syslog::Format::Json,
    };
    log.filter = cli
        .log_level
        .clone()
        .unwrap_or_else(|| filter_for_level(loaded.iked.ike.ike_syslog_level));
    gatekey_syslog::init(&log).context("cannot set up logging")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(daemon::run(cli, loaded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn syslog_levels_map_to_filters() {
        assert_eq!(filter_for_level(0), "warn");
        assert_eq!(filter_for_level(1), "info");
        assert_eq!(filter_for_level(1 | 4), "info,iked=debug");
        assert!(filter_for_level(255).contains("iked=trace"));
    }

    /// Every message ID used in the source is documented in
    /// docs/messages.md, and every iked ID documented there is used.
    #[test]
    fn message_ids_are_documented() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let docs = std::fs::read_to_string(format!("{root}/docs/messages.md")).unwrap();
        let section = docs
            .split("\n## ")
            .find(|s| s.starts_with("iked"))
            .unwrap_or_else(|| panic!("docs/messages.md has no `## iked` section"));
        let mut used = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src")).unwrap() {
            let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            used.extend(ids(&src));
        }
        let documented = ids(section);
        let undocumented: Vec<_> = used.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "not in docs/messages.md: {undocumented:?}"
        );
        let unused: Vec<_> = documented.difference(&used).collect();
        assert!(unused.is_empty(), "documented but never logged: {unused:?}");
    }

    fn ids(text: &str) -> std::collections::BTreeSet<String> {
        let b = text.as_bytes();
        let mut out = std::collections::BTreeSet::new();
        for i in 0..b.len().saturating_sub(7) {
            let w = &b[i..i + 8];
            if &w[..3] == b"EZD"
                && w[3..7].iter().all(u8::is_ascii_digit)
                && b"IEWA".contains(&w[7])
                && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
            {
                out.insert(String::from_utf8_lossy(w).into_owned());
            }
        }
        out
    }
}
