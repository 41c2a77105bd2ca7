//! `nssd`, the gatekey Network Security Services server.
//!
//! It keeps the private keys of every NSS client (iked stacks) in one keyring
//! and signs and verifies for them over TLS 1.3 (TCP 4159, the protocol in
//! `docs/nss-protocol.md`), authenticates clients by password or PassTicket,
//! authorizes them with SERVAUTH-style profiles (`EZB.NSS.*`,
//! `EZB.NSSCERT.*`), keeps one live connection per client name, and routes
//! NMI requests from `ipsec -z` on its socket `/run/nssd/nss` to the clients
//! that enabled remote management (`EZB.NETMGMT.*`).
//!
//! Modules: [`server`] (state, registry, listeners, refresh), `conn` (one
//! connection), `auth`, `certsvc`, `nmi`, [`runtime`] (loading the files),
//! [`log`] (DBGnnnnI messages). The binary is a thin `main` around
//! [`main`]. This package is a binary: nothing may depend on it.

pub mod auth;
mod certsvc;
mod conn;
pub mod log;
mod nmi;
pub mod runtime;
pub mod server;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use gatekey_config::nssd_conf;

pub use server::{Options, ServerHandle};

/// The default NMI socket.
pub const NMI_SOCKET: &str = "/run/nssd/nss";
/// The default state directory (pid file, running configuration).
pub const STATE_DIR: &str = "/run/nssd";

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// Syslog facility local4 (falls back to stderr).
    Syslog,
    /// Standard error.
    Stderr,
    /// Both.
    Both,
}

/// The format of lines on standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Text lines.
    Text,
    /// JSON lines.
    Json,
}

/// The gatekey Network Security Services server (NSSD).
///
/// Without a subcommand, nssd runs in the foreground: it reads its
/// configuration ($NSSD_FILE, else /etc/security/nssd.conf), listens for NSS
/// clients over TLS 1.3 on TCP port 4159, and serves the NMI on
/// /run/nssd/nss. `nssd refresh` (the NMI request REFRESH_CONFIG) or SIGHUP
/// re-reads every file; a file with any error is rejected whole and the
/// running configuration stays.
#[derive(Debug, Parser)]
#[command(name = "nssd", version, about, long_about)]
pub struct Cli {
    /// The configuration file (overrides $NSSD_FILE and /etc/security/nssd.conf).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration, the security database and the keyrings, print
    /// the effective configuration, and exit (0 = valid).
    #[arg(long)]
    pub check: bool,
    /// The NMI socket (the server's, and the one `nssd refresh` talks to).
    #[arg(long, global = true, value_name = "PATH", default_value = NMI_SOCKET)]
    pub nmi_socket: PathBuf,
    /// Where the pid file, the running configuration and refresh results go.
    #[arg(long, global = true, value_name = "DIR", default_value = STATE_DIR)]
    pub state_dir: PathBuf,
    /// Where log lines go.
    #[arg(long, value_enum, default_value_t = LogTarget::Syslog)]
    pub log_target: LogTarget,
    /// Format of log lines on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do instead of running the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the running server's configuration (z/OS: MODIFY NSSD,DISPLAY).
    Display,
    /// Make the running server re-read its files (z/OS: MODIFY NSSD,REFRESH)
    /// through its NMI socket (request REFRESH_CONFIG; the caller needs
    /// EZB.NETMGMT.<sys>.<sys>.NSS.CONTROL, root is permitted when no profile
    /// covers it). Prints what changed, or why the refresh was rejected
    /// (file:line:column); exit 0 = applied, 1 = rejected or failed.
    Refresh,
    /// Hash a password for a `User` statement of the security database. The
    /// password is read from the first line of standard input.
    Passwd {
        /// The user ID the line is for.
        user: String,
    },
    /// Print a PassTicket for a user, from the application key in the
    /// security database (or a key file).
    Passticket {
        /// The user ID.
        #[arg(long)]
        user: String,
        /// The application name.
        #[arg(long, default_value = nss_proto::passticket::DEFAULT_APPL)]
        appl: String,
        /// Read the key from this file (hex) instead of the security database.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Print a new random PassTicket application key (hex, 32 bytes) for a
    /// `PtktData` statement or key file.
    PtktKeygen,
}

/// The clap command (for the man page).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nssd: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(cli: &Cli) -> Result<()> {
    let mut cfg = gatekey_syslog::Config::new("nssd");
    cfg.target = match cli.log_target {
        LogTarget::Syslog => gatekey_syslog::Target::Syslog,
        LogTarget::Stderr => gatekey_syslog::Target::Stderr,
        LogTarget::Both => gatekey_syslog::Target::Both,
    };
    cfg.format = match cli.log_format {
        LogFormat::Text => gatekey_syslog::Format::Text,
        LogFormat::Json => gatekey_syslog::Format::Json,
    };
    gatekey_syslog::init(&cfg).map_err(|e| anyhow!("{e}"))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let path = nssd_conf::config_path(cli.config.as_deref());
    match &cli.command {
        Some(Command::Display) => return display(&cli.state_dir),
        Some(Command::Refresh) => return refresh(&cli.nmi_socket),
        Some(Command::Passwd { user }) => return passwd(user),
        Some(Command::Passticket {
            user,
            appl,
            key_file,
        }) => return passticket(&path, user, appl, key_file.as_deref()),
        Some(Command::PtktKeygen) => return keygen(),
        None => {}
    }
    if cli.check {
        let rt = runtime::Runtime::load(&path)?;
        println!("{}", rt.config.display());
        println!(
            "# valid: {} users, {} groups, {} profiles, {} PassTicket keys; keyring {}; TLS certificate {:?}",
            rt.saf.users.len(),
            rt.saf.groups.len(),
            rt.saf.profiles.len(),
            rt.ptkt_keys.len(),
            rt.keyring.as_ref().map_or("none".to_owned(), |k| format!(
                "{} certificates",
                k.entries().len()
            )),
            rt.tls_label
        );
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&cli)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(serve(cli, path))
}

async fn serve(cli: Cli, path: PathBuf) -> Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut opts = Options::new(&path);
    opts.nmi_socket = Some(cli.nmi_socket.clone());
    opts.state_dir = Some(cli.state_dir.clone());
    let handle = match ServerHandle::start(opts).await {
        Ok(h) => h,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                tracing::error!("DBG0005E NSS_MINIMUM {line}");
            }
            tracing::error!("DBG0005E NSS_MINIMUM NSS server initialization failed");
            eprintln!("nssd: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    // Signal handlers before the pid file: `nssd refresh` may signal at once.
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let _ = std::fs::create_dir_all(&cli.state_dir);
    let pid_file = cli.state_dir.join("nssd.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = handle.refresh().await; }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    handle.shutdown().await;
    let _ = std::fs::remove_file(&pid_file);
    Ok(ExitCode::SUCCESS)
}

fn display(state_dir: &Path) -> Result<ExitCode> {
    let f = state_dir.join("running.conf");
    let text = std::fs::read_to_string(&f).with_context(|| {
        format!(
            "cannot read {} (is nssd running with --state-dir {}?)",
            f.display(),
            state_dir.display()
        )
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn refresh(socket: &Path) -> Result<ExitCode> {
    use gatekey_nmi::{Client, Error, Request, Response};
    let mut c = Client::connect(socket).with_context(|| {
        format!(
            "cannot reach nssd on {} (is it running? --nmi-socket names another socket)",
            socket.display()
        )
    })?;
    match c.call(None, &Request::RefreshConfig) {
        Ok(reply) => {
            let Response::ConfigRefresh(r) = reply.response else {
                bail!("nssd answered REFRESH_CONFIG with another response");
            };
            println!("OK {} refreshed {}", r.server.display(), r.config_file);
            if r.changes.is_empty() {
                println!("  no changes");
            }
            for line in &r.changes {
                println!("  {line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Failed { rsn, message, .. })
            if rsn == gatekey_nmi::ReasonCode::CONFIG_REJECTED =>
        {
            println!("REJECTED");
            println!("{message}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(anyhow!(e)).context("the refresh request failed"),
    }
}

fn passwd(user: &str) -> Result<ExitCode> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        bail!("empty password");
    }
    let h = auth::hash_password(pw.as_bytes(), auth::default_params()).map_err(|e| anyhow!(e))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "User {} {{ Password \"{h}\" }}",
        user.to_ascii_uppercase()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn passticket(config: &Path, user: &str, appl: &str, key_file: Option<&Path>) -> Result<ExitCode> {
    let appl = appl.to_ascii_uppercase();
    let key = match key_file {
        Some(f) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?,
            );
            let k = gatekey_config::saf::parse_key_hex(&text)
                .map_err(|m| anyhow!("{}: {m}", f.display()))?;
            nss_proto::Secret::from_slice(k.expose())
        }
        None => {
            let cfg = nssd_conf::load(config).map_err(|e| anyhow!("{e}"))?;
            let (_, keys) = runtime::load_saf(&cfg.saf_database())?;
            keys.get(&appl).cloned().ok_or_else(|| {
                anyhow!(
                    "the security database {} has no PtktData {appl}",
                    cfg.saf_database().display()
                )
            })?
        }
    };
    let now = server::unix_now();
    let t = nss_proto::passticket::generate(key.expose(), &appl, user, now)
        .map_err(|e| anyhow!("{e}"))?;
    println!("{}", String::from_utf8_lossy(t.expose()));
    Ok(ExitCode::SUCCESS)
}

fn keygen() -> Result<ExitCode> {
    use ring::rand::SecureRandom;
    let mut k = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(k.as_mut())
        .map_err(|_| anyhow!("no random numbers"))?;
    let hex: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(k.iter().map(|b| format!("{b:02x}")).collect());
    println!("{}", hex.as_str());
    Ok(ExitCode::SUCCESS)
}
