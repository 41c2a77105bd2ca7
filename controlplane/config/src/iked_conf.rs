//! The IKE daemon's configuration file, `iked.conf`.
//!
//! Statements (z/OS syntax, `#` comments, keywords case-insensitive):
//!
//! - `IkeConfig { … }` — daemon-wide settings. If the statement is coded more
//!   than once, the **last** one is used; within it a repeated parameter takes
//!   its last value, except `SMF119` and `SupportedCertAuth`, which accumulate.
//! - `NssStackConfig stackname { … }` — makes a stack an NSS client. The same
//!   stack coded twice: the last statement wins. Coding it without an
//!   `IkeConfig` `NetworkSecurityServer` or `NetworkSecurityServerBackup` is an
//!   error.
//! - `StackConfig stackname { … }` — gatekey extension: which policy file,
//!   profile file and interfaces a stack (network namespace) uses. Last
//!   statement for a stack wins.
//!
//! Every default is documented on the field that carries it and in
//! `docs/configuration.md`. Errors name `file:line:column`; [`parse`] reports
//! every error it finds, not only the first, so `iked --check` shows them all.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::lex::{self, CommentStyle, Cursor, Diagnostic, Pos, Token, TokenKind};

/// Where iked looks for its configuration when neither `--config` nor
/// `IKED_FILE` names one.
pub const DEFAULT_PATH: &str = "/etc/security/iked.conf";

/// The environment variable that names the configuration file (z/OS
/// `IKED_FILE`).
pub const ENV_FILE: &str = "IKED_FILE";

/// The name of the initial network namespace's stack.
pub const DEFAULT_STACK: &str = "default";

/// Default NSS server TCP port.
pub const NSS_PORT: u16 = 4159;

/// Longest NSS client name (the NMI field NMsIKENSClientName is 24 bytes).
pub const MAX_CLIENT_NAME: usize = 24;

/// The configuration file to read: `--config` if given, else `$IKED_FILE` if
/// set and non-empty, else [`DEFAULT_PATH`].
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(ENV_FILE) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// A secret string (password, pre-shared key): zeroized on drop, redacted in
/// `Debug`, compared in constant time.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wrap secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// The secret bytes. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time equality (length is not hidden).
    pub fn ct_eq(&self, other: &Secret) -> bool {
        let (a, b) = (self.expose(), other.expose());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for Secret {}

/// IkeSyslogLevel bits (they add together).
pub mod syslog_level {
    /// Minimal: start/stop, errors, tunnel up/down (the default, 1).
    pub const MINIMUM: u32 = 1;
    /// Verbose: more detail on each event.
    pub const VERBOSE: u32 = 2;
    /// Phase 1 (IKE SA) negotiation detail.
    pub const PHASE1: u32 = 4;
    /// Phase 2 (child SA) negotiation detail.
    pub const PHASE2: u32 = 8;
    /// System and stack events (sockets, namespaces, kernel).
    pub const SYSTEM: u32 = 16;
    /// Filter and dataplane events.
    pub const FILTER: u32 = 32;
    /// Policy loading and selection.
    pub const POLICY: u32 = 64;
    /// Debug trace (equivalent to `RUST_LOG=debug` for iked).
    pub const TRACE: u32 = 128;
    /// Every defined bit.
    pub const ALL: u32 = 255;
}

/// SMF119 accounting record classes (JSON-lines accounting log on gatekey).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Smf119 {
    /// Every IKE record: IKE tunnels and dynamic tunnels.
    IkeAll,
    /// IKE (phase 1) tunnel start, refresh and stop.
    IkeTunnel,
    /// Dynamic (phase 2) tunnel start, refresh and stop.
    DynTunnel,
}

/// Where the local key ring is (`KeyRing`, `NoKeyRing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRing {
    /// `NoKeyRing`: no local certificate services.
    None,
    /// `userid/ringname`: the ring `ringname` owned by `userid`.
    UserRing {
        /// Owner.
        user: String,
        /// Ring name.
        ring: String,
    },
    /// `ringname`: a ring owned by the daemon's own user (`iked`).
    Ring(String),
    /// An absolute keyring directory path (gatekey extension).
    Path(PathBuf),
}

/// The directory keyrings named by user and ring live under.
pub const KEYRING_ROOT: &str = "/etc/security/keyrings";

impl KeyRing {
    /// The keyring directory this names, or `None` for `NoKeyRing`.
    ///
    /// `userid/ringname` → `/etc/security/keyrings/userid/ringname`;
    /// `ringname` → `/etc/security/keyrings/iked/ringname`; an absolute path
    /// is used as it is.
    pub fn directory(&self) -> Option<PathBuf> {
        match self {
            KeyRing::None => None,
            KeyRing::UserRing { user, ring } => Some(Path::new(KEYRING_ROOT).join(user).join(ring)),
            KeyRing::Ring(r) => Some(Path::new(KEYRING_ROOT).join("iked").join(r)),
            KeyRing::Path(p) => Some(p.clone()),
        }
    }
}

impl fmt::Display for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyRing::None => f.write_str("NoKeyRing"),
            KeyRing::UserRing { user, ring } => write!(f, "{user}/{ring}"),
            KeyRing::Ring(r) => f.write_str(r),
            KeyRing::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The identity type of an expected NSS server identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityType {
    /// `IpAddr`: an IP address in the server certificate's subjectAltName.
    IpAddr,
    /// `Fqdn`: a DNS name.
    Fqdn,
    /// `UserAtFqdn`: an RFC 822 name.
    UserAtFqdn,
    /// `X500dn`: the certificate subject distinguished name.
    X500dn,
}

/// `Identity type value` on a NetworkSecurityServer(Backup) parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    /// The identity type.
    pub kind: IdentityType,
    /// The identity value (an IP address for `IpAddr`).
    pub value: String,
}

/// A `NetworkSecurityServer` or `NetworkSecurityServerBackup` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NssServer {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 4159).
    pub port: u16,
    /// The identity the server's TLS certificate must prove; when absent the
    /// host name (or address) itself is checked.
    pub identity: Option<ServerIdentity>,
}

/// The `IkeConfig` statement, with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeConfig {
    /// `IkeSyslogLevel` (default 1): a sum of [`syslog_level`] bits.
    pub ike_syslog_level: u32,
    /// `PagentSyslogLevel` (default 0): logging of policy processing.
    pub pagent_syslog_level: u32,
    /// `SMF119` classes (default none; accumulates; `None` clears).
    pub smf119: Vec<Smf119>,
    /// `IkeRetries` (default 6, 1-10): retransmissions of an IKE message.
    pub ike_retries: u32,
    /// `IkeInitWait` (default 2 s, 1-10): wait before the first retransmission;
    /// doubles on each retry.
    pub ike_init_wait: u32,
    /// `FIPS140` (default no): only FIPS 140 algorithms (no DES, no group 1).
    pub fips140: bool,
    /// `KeyRing` / `NoKeyRing` (default `iked/keyring`).
    pub key_ring: KeyRing,
    /// `Echo` (default no): also write log messages to standard output.
    pub echo: bool,
    /// `NetworkSecurityServer host [Port n] [Identity type value]`.
    pub nss: Option<NssServer>,
    /// `NetworkSecurityServerBackup …` (same syntax).
    pub nss_backup: Option<NssServer>,
    /// `NssWaitLimit` (default 60 s, 1-3600).
    pub nss_wait_limit: u32,
    /// `NssWaitRetries` (default 3, 1-100).
    pub nss_wait_retries: u32,
    /// `PagentWait` (default 0 s, 0-3600): how long to wait at start for the
    /// stacks' policy files to appear before using the default policy.
    pub pagent_wait: u32,
    /// `SupportedCertAuth label` (accumulates): CA certificates to advertise
    /// in CERTREQ payloads; none = every CERTAUTH certificate of the ring.
    pub supported_cert_auth: Vec<String>,
    /// `SystemName` (gatekey extension): overrides the system name derived
    /// from the host name.
    pub system_name: Option<String>,
    /// `SafDatabase path` (gatekey extension; default
    /// `/etc/security/iked.saf`): the authorization profiles
    /// (`EZB.IPSECCMD.*`, `EZB.NETMGMT.*`) checked for NMI callers; a
    /// missing file means no profiles (only root is permitted). A relative
    /// path is relative to the directory of iked.conf.
    pub saf_database: Option<PathBuf>,
}

/// Default security database of iked.
pub const DEFAULT_SAF_DATABASE: &str = "/etc/security/iked.saf";

impl IkeConfig {
    /// The security database path (`SafDatabase` or the default), relative
    /// paths resolved against `base`.
    pub fn saf_database(&self, base: &Path) -> PathBuf {
        match &self.saf_database {
            Some(p) if p.is_relative() => base.join(p),
            Some(p) => p.clone(),
            None => PathBuf::from(DEFAULT_SAF_DATABASE),
        }
    }
}

impl Default for IkeConfig {
    fn default() -> Self {
        IkeConfig {
            ike_syslog_level: syslog_level::MINIMUM,
            pagent_syslog_level: 0,
            smf119: Vec::new(),
            ike_retries: 6,
            ike_init_wait: 2,
            fips140: false,
            key_ring: KeyRing::UserRing {
                user: "iked".into(),
                ring: "keyring".into(),
            },
            echo: false,
            nss: None,
            nss_backup: None,
            nss_wait_limit: 60,
            nss_wait_retries: 3,
            pagent_wait: 0,
            supported_cert_auth: Vec::new(),
            system_name: None,
            saf_database: None,
        }
    }
}

/// An NSS service a stack uses (`ServiceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceType {
    /// `Cert`: signatures and peer verification done by the NSS server.
    Cert,
    /// `RemoteMgmt`: NMI requests routed from the NSS server.
    RemoteMgmt,
}

/// How the NSS client authenticates (`AuthBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthBy {
    /// `Password` (default).
    Password,
    /// `PassTicket`: a one-time code from the shared application key.
    PassTicket,
}

/// The `NssStackConfig stackname` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NssStackConfig {
    /// The stack (network namespace) name.
    pub stack: String,
    /// `ClientName` (default `<SYSNAME>_<stack>`, cut to 24 characters).
    pub client_name: Option<String>,
    /// `ServiceType Cert|RemoteMgmt` (repeatable; default Cert only).
    pub services: Vec<ServiceType>,
    /// `UserId` (required): the user the NSS server authenticates.
    pub user_id: String,
    /// `AuthBy Password|PassTicket` (default Password).
    pub auth_by: AuthBy,
    /// `Password` (required with AuthBy Password).
    pub password: Option<Secret>,
    /// `PassTicketKeyFile path` (gatekey extension, required with AuthBy
    /// PassTicket): the file holding the application's PassTicket key.
    pub passticket_key_file: Option<PathBuf>,
    /// Where the statement starts (for messages).
    pub pos: Pos,
}

impl NssStackConfig {
    /// The client name: `ClientName` if coded, else `<sysname>_<stack>` cut
    /// to [`MAX_CLIENT_NAME`] characters.
    pub fn client_name(&self, system_name: &str) -> String {
        match &self.client_name {
            Some(n) => n.clone(),
            None => format!("{system_name}_{}", self.stack)
                .chars()
                .take(MAX_CLIENT_NAME)
                .collect(),
        }
    }

    /// Does the stack use `service`?
    pub fn has_service(&self, service: ServiceType) -> bool {
        self.services.contains(&service)
    }
}

/// The `StackConfig stackname` statement (gatekey extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// The stack (network namespace) name; `default` is the initial one.
    pub stack: String,
    /// `PolicyFile path`: the IPsec policy file; a relative path is relative
    /// to the directory of iked.conf (default
    /// `/etc/security/ipsec-policy.conf` for `default`,
    /// `/etc/security/ipsec-policy.<stack>.conf` otherwise).
    pub policy_file: PathBuf,
    /// `ProfileFile path`: the file with the stack's `IPSEC … ENDIPSEC`
    /// default filter policy (default `/etc/security/ipsec-profile.conf`,
    /// `/etc/security/ipsec-profile.<stack>.conf`).
    pub profile_file: PathBuf,
    /// `Interface name` (repeatable): the interfaces the stack's filter is
    /// attached to; empty = every interface of the namespace but loopback.
    pub interfaces: Vec<String>,
    /// `NatKeepAlive seconds` (default 20, 0 = off, 0-3600).
    pub nat_keepalive: u32,
    /// `IkePort n` (default 500): the IKE UDP port.
    pub ike_port: u16,
    /// `NattPort n` (default 4500): the NAT traversal UDP port.
    pub natt_port: u16,
}

impl StackConfig {
    /// Make relative PolicyFile/ProfileFile paths relative to `base` (the
    /// directory of iked.conf).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.policy_file, &mut self.profile_file] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The defaults for `stack`.
    pub fn defaults(stack: &str) -> Self {
        let (pol, prof) = if stack == DEFAULT_STACK {
            (
                "/etc/security/ipsec-policy.conf".to_owned(),
                "/etc/security/ipsec-profile.conf".to_owned(),
            )
        } else {
            (
                format!("/etc/security/ipsec-policy.{stack}.conf"),
                format!("/etc/security/ipsec-profile.{stack}.conf"),
            )
        };
        StackConfig {
            stack: stack.to_owned(),
            policy_file: pol.into(),
            profile_file: prof.into(),
            interfaces: Vec::new(),
            nat_keepalive: 20,
            ike_port: 500,
            natt_port: 4500,
        }
    }
}

/// A whole, validated iked.conf.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IkedConf {
    /// The effective IkeConfig (the last statement, or the defaults).
    pub ike: IkeConfig,
    /// NssStackConfig statements by stack name (last statement wins).
    pub nss_stacks: BTreeMap<String, NssStackConfig>,
    /// StackConfig statements by stack name (last wins).
    pub stack_configs: BTreeMap<String, StackConfig>,
}

impl IkedConf {
    /// The stacks iked serves: every stack named by a StackConfig or an
    /// NssStackConfig, or `default` alone when there are none; each with
    /// its StackConfig or the defaults.
    pub fn stacks(&self) -> Vec<StackConfig> {
        let mut names: Vec<&String> = self
            .stack_configs
            .keys()
            .chain(self.nss_stacks.keys())
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return vec![StackConfig::defaults(DEFAULT_STACK)];
        }
        names
            .into_iter()
            .map(|n| {
                self.stack_configs
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| StackConfig::defaults(n))
            })
            .collect()
    }

    /// The system name: `SystemName` if coded, else [`crate::system_name`].
    pub fn system_name(&self) -> String {
        self.ike
            .system_name
            .clone()
            .unwrap_or_else(crate::system_name)
    }
}

/// Every error found in a file, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Why [`load`] failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file has errors.
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
}

/// Read and parse `path`.
pub fn load(path: &Path) -> Result<IkedConf, LoadError> {
    let src = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&path.display().to_string(), &src)?)
}

/// Parse the text of an iked.conf; `file` labels errors.
pub fn parse(file: &str, src: &str) -> Result<IkedConf, Diagnostics> {
    let toks = lex::tokenize(file, src, CommentStyle::Hash).map_err(|d| Diagnostics(vec![d]))?;
    let end = lex::end_pos(src);
    let mut errors = Vec::new();
    let mut ike: Option<(IkeConfig, Pos)> = None;
    let mut nss_stacks = BTreeMap::new();
    let mut stack_configs = BTreeMap::new();

    for stmt in statements(file, &toks, end, &mut errors) {
        let mut cur = Cursor::new(file, stmt.toks, stmt.end);
        let Some(head) = cur.next() else { continue };
        let result = if head.is_word("IkeConfig") {
            parse_ike_config(&mut cur).map(|c| {
                ike = Some((c, head.pos));
            })
        } else if head.is_word("NssStackConfig") {
            parse_nss_stack(&mut cur, head.pos).map(|c| {
                nss_stacks.insert(c.stack.clone(), c);
            })
        } else if head.is_word("StackConfig") {
            parse_stack_config(&mut cur).map(|c| {
                stack_configs.insert(c.stack.clone(), c);
            })
        } else {
            Err(cur.error_at(
                head.pos,
                format!(
                    "unknown statement '{}'; expected IkeConfig, NssStackConfig or StackConfig",
                    head.text
                ),
            ))
        };
        if let Err(e) = result.and_then(|()| expect_statement_end(&mut cur)) {
            errors.push(e);
        }
    }

    let ike = ike.map(|(c, _)| c).unwrap_or_default();
    if ike.nss.is_none() && ike.nss_backup.is_none() {
        for n in nss_stacks.values() {
            errors.push(Diagnostic {
                file: Arc::from(file),
                pos: n.pos,
                message: format!(
                    "NssStackConfig {} needs a NetworkSecurityServer or NetworkSecurityServerBackup in IkeConfig",
                    n.stack
                ),
            });
        }
    }
    if errors.is_empty() {
        Ok(IkedConf {
            ike,
            nss_stacks,
            stack_configs,
        })
    } else {
        errors.sort_by_key(|d| d.pos);
        Err(Diagnostics(errors))
    }
}

/// One top-level statement: its tokens up to and including the closing brace.
pub(crate) struct Statement<'a> {
    pub(crate) toks: &'a [Token],
    pub(crate) end: Pos,
}

/// Split a token list into top-level statements (`Keyword words… { … }`).
///
/// An unbalanced brace is reported and ends the split; a stray `}` is
/// reported and skipped. Used so that an error inside one statement does not
/// hide errors in the next ones.
pub(crate) fn statements<'a>(
    file: &str,
    toks: &'a [Token],
    end: Pos,
    errors: &mut Vec<Diagnostic>,
) -> Vec<Statement<'a>> {
    let err = |pos, message: String| Diagnostic {
        file: Arc::from(file),
        pos,
        message,
    };
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(first) = toks.get(i) {
        if first.kind == TokenKind::RBrace {
            errors.push(err(first.pos, "unexpected '}' (no block is open)".into()));
            i += 1;
            continue;
        }
        if first.kind == TokenKind::LBrace {
            errors.push(err(
                first.pos,
                "unexpected '{': a block must follow a statement keyword".into(),
            ));
        }
        // Find the opening brace of this statement.
        let mut j = i;
        let mut open = None;
        while let Some(t) = toks.get(j) {
            match t.kind {
                TokenKind::LBrace => {
                    open = Some(j);
                    break;
                }
                TokenKind::RBrace => break,
                _ => {}
            }
            // A value on a later line than the statement keyword that looks
            // like the start of the next statement ends this one.
            j += 1;
        }
        let Some(open) = open else {
            errors.push(err(
                first.pos,
                format!("statement '{}' has no '{{ … }}' block", first.text),
            ));
            i = j.max(i + 1);
            continue;
        };
        let mut depth = 0usize;
        let mut k = open;
        let mut close = None;
        while let Some(t) = toks.get(k) {
            match t.kind {
                TokenKind::LBrace => depth += 1,
                TokenKind::RBrace => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(k);
                        break;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        let Some(close) = close else {
            let pos = toks.get(open).map_or(end, |t| t.pos);
            errors.push(err(
                pos,
                format!(
                    "the block of '{}' is not closed (a '}}' is missing)",
                    first.text
                ),
            ));
            break;
        };
        let slice = toks.get(i..=close).unwrap_or(&[]);
        let close_pos = toks.get(close).map_or(end, |t| t.pos);
        out.push(Statement {
            toks: slice,
            end: close_pos,
        });
        i = close + 1;
    }
    out
}

fn parse_yes_no(cur: &mut Cursor<'_>, what: &str) -> Result<bool, Diagnostic> {
    let t = cur.expect_value(&format!("Yes or No after {what}"))?;
    if t.is_word("yes") {
        Ok(true)
    } else if t.is_word("no") {
        Ok(false)
    } else {
        Err(cur.error_at(
            t.pos,
            format!("{what} must be Yes or No, found '{}'", t.text),
        ))
    }
}

/// Parse the body of a block: `{ param… }`, calling `param` for each
/// parameter keyword token.
pub(crate) fn parse_block<'a>(
    cur: &mut Cursor<'a>,
    mut param: impl FnMut(&mut Cursor<'a>, &'a Token) -> Result<(), Diagnostic>,
) -> Result<(), Diagnostic> {
    cur.expect_lbrace()?;
    loop {
        let Some(t) = cur.next() else {
            return Err(cur.error_here("expected '}', found end of file"));
        };
        match t.kind {
            TokenKind::RBrace => break,
            TokenKind::LBrace => return Err(cur.error_at(t.pos, "unexpected '{'")),
            TokenKind::Quoted => {
                return Err(cur.error_at(
                    t.pos,
                    format!("expected a parameter keyword, found \"{}\"", t.text),
                ));
            }
            TokenKind::Word => param(cur, t)?,
        }
    }
    Ok(())
}

/// Fail if tokens remain after a statement's closing brace.
pub(crate) fn expect_statement_end(cur: &mut Cursor<'_>) -> Result<(), Diagnostic> {
    if let Some(t) = cur.next() {
        return Err(cur.error_at(t.pos, format!("unexpected '{}' after '}}'", t.text)));
    }
    Ok(())
}

fn parse_ike_config(cur: &mut Cursor<'_>) -> Result<IkeConfig, Diagnostic> {
    let mut c = IkeConfig::default();
    if let Some(t) = cur.peek()
        && t.kind != TokenKind::LBrace
    {
        return Err(cur.error_at(
            t.pos,
            format!("IkeConfig takes no name; expected '{{', found '{}'", t.text),
        ));
    }
    parse_block(cur, |cur, p| {
        if p.is_word("IkeSyslogLevel") {
            c.ike_syslog_level = cur.expect_u32_in("IkeSyslogLevel", 0, syslog_level::ALL)?;
        } else if p.is_word("PagentSyslogLevel") {
            c.pagent_syslog_level = cur.expect_u32_in("PagentSyslogLevel", 0, 255)?;
        } else if p.is_word("SMF119") {
            let t = cur.expect_value("None, IKEALL, IKETunnel or DynTunnel after SMF119")?;
            let v = if t.is_word("None") {
                None
            } else if t.is_word("IKEALL") {
                Some(Smf119::IkeAll)
            } else if t.is_word("IKETunnel") {
                Some(Smf119::IkeTunnel)
            } else if t.is_word("DynTunnel") {
                Some(Smf119::DynTunnel)
            } else {
                return Err(cur.error_at(
                    t.pos,
                    format!(
                        "SMF119 must be None, IKEALL, IKETunnel or DynTunnel, found '{}'",
                        t.text
                    ),
                ));
            };
            match v {
                None => c.smf119.clear(),
                Some(v) if !c.smf119.contains(&v) => c.smf119.push(v),
                Some(_) => {}
            }
        } else if p.is_word("IkeRetries") {
            c.ike_retries = cur.expect_u32_in("IkeRetries", 1, 10)?;
        } else if p.is_word("IkeInitWait") {
            c.ike_init_wait = cur.expect_u32_in("IkeInitWait", 1, 10)?;
        } else if p.is_word("FIPS140") {
            c.fips140 = parse_yes_no(cur, "FIPS140")?;
        } else if p.is_word("Echo") {
            c.echo = parse_yes_no(cur, "Echo")?;
        } else if p.is_word("KeyRing") {
            let t = cur.expect_value("a key ring name after KeyRing")?;
            c.key_ring = parse_key_ring(cur, t)?;
        } else if p.is_word("NoKeyRing") {
            c.key_ring = KeyRing::None;
        } else if p.is_word("NetworkSecurityServer") {
            c.nss = Some(parse_nss_server(cur, "NetworkSecurityServer")?);
        } else if p.is_word("NetworkSecurityServerBackup") {
            c.nss_backup = Some(parse_nss_server(cur, "NetworkSecurityServerBackup")?);
        } else if p.is_word("NssWaitLimit") {
            c.nss_wait_limit = cur.expect_u32_in("NssWaitLimit", 1, 3600)?;
        } else if p.is_word("NssWaitRetries") {
            c.nss_wait_retries = cur.expect_u32_in("NssWaitRetries", 1, 100)?;
        } else if p.is_word("PagentWait") {
            c.pagent_wait = cur.expect_u32_in("PagentWait", 0, 3600)?;
        } else if p.is_word("SupportedCertAuth") {
            let t = cur.expect_value("a certificate label after SupportedCertAuth")?;
            check_label(cur, t, "SupportedCertAuth label", 1, 32)?;
            if !c.supported_cert_auth.contains(&t.text) {
                c.supported_cert_auth.push(t.text.clone());
            }
        } else if p.is_word("SafDatabase") {
            c.saf_database = Some(file_path(cur, "SafDatabase")?);
        } else if p.is_word("SystemName") {
            let t = cur.expect_value("a system name after SystemName")?;
            if t.text.is_empty()
                || t.text.len() > 8
                || !t
                    .text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'$' || b == b'#' || b == b'@')
            {
                return Err(cur.error_at(
                    t.pos,
                    format!(
                        "SystemName must be 1 to 8 letters, digits, $, # or @, found '{}'",
                        t.text
                    ),
                ));
            }
            c.system_name = Some(t.text.to_ascii_uppercase());
        } else {
            return Err(cur.error_at(
                p.pos,
                format!(
                    "unknown IkeConfig parameter '{}'; expected one of IkeSyslogLevel, PagentSyslogLevel, \
                     SMF119, IkeRetries, IkeInitWait, FIPS140, KeyRing, NoKeyRing, Echo, \
                     NetworkSecurityServer, NetworkSecurityServerBackup, NssWaitLimit, NssWaitRetries, \
                     PagentWait, SupportedCertAuth, SystemName, SafDatabase",
                    p.text
                ),
            ));
        }
        Ok(())
    })?;
    Ok(c)
}

fn check_label(
    cur: &Cursor<'_>,
    t: &Token,
    what: &str,
    min: usize,
    max: usize,
) -> Result<(), Diagnostic> {
    let n = t.text.chars().count();
    if n < min || n > max {
        return Err(cur.error_at(
            t.pos,
            format!(
                "{what} must be {min} to {max} characters, found '{}'",
                t.text
            ),
        ));
    }
    Ok(())
}

fn parse_key_ring(cur: &Cursor<'_>, t: &Token) -> Result<KeyRing, Diagnostic> {
    let bad = |msg: &str| cur.error_at(t.pos, format!("KeyRing {msg}, found '{}'", t.text));
    if t.text.starts_with('/') {
        if t.text.split('/').any(|c| c == "..") {
            return Err(bad("path must not contain '..'"));
        }
        return Ok(KeyRing::Path(PathBuf::from(&t.text)));
    }
    let ok_part = |s: &str| {
        !s.is_empty()
            && s.len() <= 237
            && s != "."
            && s != ".."
            && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
    };
    match t.text.split_once('/') {
        Some((user, ring)) => {
            if !ok_part(user) || !ok_part(ring) {
                return Err(bad(
                    "must be userid/ringname, ringname or an absolute directory path",
                ));
            }
            Ok(KeyRing::UserRing {
                user: user.to_owned(),
                ring: ring.to_owned(),
            })
        }
        None if ok_part(&t.text) => Ok(KeyRing::Ring(t.text.clone())),
        None => Err(bad(
            "must be userid/ringname, ringname or an absolute directory path",
        )),
    }
}

fn parse_nss_server(cur: &mut Cursor<'_>, what: &str) -> Result<NssServer, Diagnostic> {
    let host = cur.expect_value_on_line(&format!("a host name or IP address after {what}"))?;
    check_host(cur, host, what)?;
    let mut s = NssServer {
        host: host.text.clone(),
        port: NSS_PORT,
        identity: None,
    };
    loop {
        if cur.eat_word("Port") {
            let v = cur.expect_u32_in(&format!("{what} Port"), 1, 65535)?;
            s.port = u16::try_from(v).unwrap_or(NSS_PORT);
        } else if cur.eat_word("Identity") {
            let kt = cur.expect_value("IpAddr, Fqdn, UserAtFqdn or X500dn after Identity")?;
            let kind = if kt.is_word("IpAddr") {
                IdentityType::IpAddr
            } else if kt.is_word("Fqdn") {
                IdentityType::Fqdn
            } else if kt.is_word("UserAtFqdn") {
                IdentityType::UserAtFqdn
            } else if kt.is_word("X500dn") {
                IdentityType::X500dn
            } else {
                return Err(cur.error_at(
                    kt.pos,
                    format!(
                        "Identity type must be IpAddr, Fqdn, UserAtFqdn or X500dn, found '{}'",
                        kt.text
                    ),
                ));
            };
            let v = cur.expect_value("the identity value")?;
            match kind {
                IdentityType::IpAddr if v.text.parse::<IpAddr>().is_err() => {
                    return Err(cur.error_at(
                        v.pos,
                        format!("Identity IpAddr needs an IP address, found '{}'", v.text),
                    ));
                }
                IdentityType::UserAtFqdn if !v.text.contains('@') => {
                    return Err(cur.error_at(
                        v.pos,
                        format!("Identity UserAtFqdn needs user@domain, found '{}'", v.text),
                    ));
                }
                IdentityType::X500dn if !v.text.contains('=') => {
                    return Err(cur.error_at(
                        v.pos,
                        format!(
                            "Identity X500dn needs a distinguished name such as \"CN=nss,O=Example\", found '{}'",
                            v.text
                        ),
                    ));
                }
                _ => {}
            }
            s.identity = Some(ServerIdentity {
                kind,
                value: v.text.clone(),
            });
        } else {
            break;
        }
    }
    Ok(s)
}

fn check_host(cur: &Cursor<'_>, t: &Token, what: &str) -> Result<(), Diagnostic> {
    if t.text.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !t.text.is_empty()
        && t.text.len() <= 253
        && t.text.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err(cur.error_at(
            t.pos,
            format!("{what} needs a host name or IP address, found '{}'", t.text),
        ))
    }
}

/// A stack (network namespace) name: what `ip netns` accepts.
pub(crate) fn check_stack_name(cur: &Cursor<'_>, t: &Token, what: &str) -> Result<(), Diagnostic> {
    let ok = !t.text.is_empty()
        && t.text.len() <= 64
        && t.text != "."
        && t.text != ".."
        && t.text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(cur.error_at(
            t.pos,
            format!(
                "{what} needs a stack (network namespace) name of letters, digits, '-', '_' or '.', found '{}'",
                t.text
            ),
        ))
    }
}

fn parse_nss_stack(cur: &mut Cursor<'_>, pos: Pos) -> Result<NssStackConfig, Diagnostic> {
    let name = cur.expect_value_on_line("a stack name after NssStackConfig")?;
    if name.kind == TokenKind::LBrace {
        return Err(cur.error_at(name.pos, "NssStackConfig needs a stack name before '{'"));
    }
    check_stack_name(cur, name, "NssStackConfig")?;
    let mut n = NssStackConfig {
        stack: name.text.clone(),
        client_name: None,
        services: Vec::new(),
        user_id: String::new(),
        auth_by: AuthBy::Password,
        password: None,
        passticket_key_file: None,
        pos,
    };
    let mut user_seen = false;
    let mut auth_pos = None;
    parse_block(cur, |cur, p| {
        if p.is_word("ClientName") {
            let t = cur.expect_value("a client name after ClientName")?;
            check_label(cur, t, "ClientName", 1, MAX_CLIENT_NAME)?;
            if !t.text.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(cur.error_at(
                    t.pos,
                    format!(
                        "ClientName must be printable ASCII without blanks, found '{}'",
                        t.text
                    ),
                ));
            }
            n.client_name = Some(t.text.clone());
        } else if p.is_word("ServiceType") {
            let t = cur.expect_value("Cert or RemoteMgmt after ServiceType")?;
            let s = if t.is_word("Cert") {
                ServiceType::Cert
            } else if t.is_word("RemoteMgmt") {
                ServiceType::RemoteMgmt
            } else {
                return Err(cur.error_at(
                    t.pos,
                    format!("ServiceType must be Cert or RemoteMgmt, found '{}'", t.text),
                ));
            };
            if !n.services.contains(&s) {
                n.services.push(s);
            }
        } else if p.is_word("UserId") {
            let t = cur.expect_value("a user ID after UserId")?;
            check_label(cur, t, "UserId", 1, 64)?;
            n.user_id = t.text.clone();
            user_seen = true;
        } else if p.is_word("AuthBy") {
            let t = cur.expect_value("Password or PassTicket after AuthBy")?;
            n.auth_by = if t.is_word("Password") {
                AuthBy::Password
            } else if t.is_word("PassTicket") {
                AuthBy::PassTicket
            } else {
                return Err(cur.error_at(
                    t.pos,
                    format!("AuthBy must be Password or PassTicket, found '{}'", t.text),
                ));
            };
            auth_pos = Some(p.pos);
        } else if p.is_word("Password") {
            let t = cur.expect_value("a password after Password")?;
            if t.text.is_empty() || t.text.len() > 128 {
                return Err(cur.error_at(t.pos, "Password must be 1 to 128 characters"));
            }
            n.password = Some(Secret::new(t.text.as_bytes().to_vec()));
        } else if p.is_word("PassTicketKeyFile") {
            let t = cur.expect_value("a file path after PassTicketKeyFile")?;
            if !t.text.starts_with('/') {
                return Err(cur.error_at(
                    t.pos,
                    format!(
                        "PassTicketKeyFile must be an absolute path, found '{}'",
                        t.text
                    ),
                ));
            }
            n.passticket_key_file = Some(PathBuf::from(&t.text));
        } else {
            return Err(cur.error_at(
                p.pos,
                format!(
                    "unknown NssStackConfig parameter '{}'; expected one of ClientName, ServiceType, \
                     UserId, AuthBy, Password, PassTicketKeyFile",
                    p.text
                ),
            ));
        }
        Ok(())
    })?;
    let at = |pos| Diagnostic {
        file: cur.file().clone(),
        pos,
        message: String::new(),
    };
    if !user_seen {
        let mut d = at(pos);
        d.message = format!("NssStackConfig {} needs a UserId", n.stack);
        return Err(d);
    }
    match n.auth_by {
        AuthBy::Password if n.password.is_none() => {
            let mut d = at(auth_pos.unwrap_or(pos));
            d.message = format!(
                "NssStackConfig {} authenticates by Password but codes no Password",
                n.stack
            );
            return Err(d);
        }
        AuthBy::PassTicket if n.passticket_key_file.is_none() => {
            let mut d = at(auth_pos.unwrap_or(pos));
            d.message = format!(
                "NssStackConfig {} authenticates by PassTicket but codes no PassTicketKeyFile",
                n.stack
            );
            return Err(d);
        }
        _ => {}
    }
    if n.services.is_empty() {
        n.services.push(ServiceType::Cert);
    }
    Ok(n)
}

fn parse_stack_config(cur: &mut Cursor<'_>) -> Result<StackConfig, Diagnostic> {
    let name = cur.expect_value_on_line("a stack name after StackConfig")?;
    check_stack_name(cur, name, "StackConfig")?;
    let mut s = StackConfig::defaults(&name.text);
    let mut seen_ports: Vec<(&str, u16, Pos)> = Vec::new();
    parse_block(cur, |cur, p| {
        if p.is_word("PolicyFile") {
            s.policy_file = file_path(cur, "PolicyFile")?;
        } else if p.is_word("ProfileFile") {
            s.profile_file = file_path(cur, "ProfileFile")?;
        } else if p.is_word("Interface") {
            let t = cur.expect_value("an interface name after Interface")?;
            if t.text.is_empty()
                || t.text.len() > 15
                || t.text.contains('/')
                || !t.text.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(cur.error_at(
                    t.pos,
                    format!(
                        "Interface needs a Linux interface name (1-15 characters), found '{}'",
                        t.text
                    ),
                ));
            }
            if !s.interfaces.contains(&t.text) {
                s.interfaces.push(t.text.clone());
            }
        } else if p.is_word("NatKeepAlive") {
            s.nat_keepalive = cur.expect_u32_in("NatKeepAlive", 0, 3600)?;
        } else if p.is_word("IkePort") {
            let v = cur.expect_u32_in("IkePort", 1, 65535)?;
            s.ike_port = u16::try_from(v).unwrap_or(500);
            seen_ports.push(("IkePort", s.ike_port, p.pos));
        } else if p.is_word("NattPort") {
            let v = cur.expect_u32_in("NattPort", 1, 65535)?;
            s.natt_port = u16::try_from(v).unwrap_or(4500);
            seen_ports.push(("NattPort", s.natt_port, p.pos));
        } else {
            return Err(cur.error_at(
                p.pos,
                format!(
                    "unknown StackConfig parameter '{}'; expected one of PolicyFile, ProfileFile, \
                     Interface, NatKeepAlive, IkePort, NattPort",
                    p.text
                ),
            ));
        }
        Ok(())
    })?;
    if s.ike_port == s.natt_port {
        let pos = seen_ports.last().map_or(name.pos, |p| p.2);
        return Err(cur.error_at(
            pos,
            format!(
                "StackConfig {}: IkePort and NattPort must differ (both are {})",
                s.stack, s.ike_port
            ),
        ));
    }
    Ok(s)
}

/// A file path; a relative one is kept as written and resolved against the
/// directory of iked.conf by [`StackConfig::resolve_paths`].
fn file_path(cur: &mut Cursor<'_>, what: &str) -> Result<PathBuf, Diagnostic> {
    let t = cur.expect_value(&format!("a file path after {what}"))?;
    if t.text.is_empty() || t.text.ends_with('/') {
        return Err(cur.error_at(
            t.pos,
            format!("{what} must name a file, found '{}'", t.text),
        ));
    }
    Ok(PathBuf::from(&t.text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> IkedConf {
        match parse("t.conf", src) {
            Ok(c) => c,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    fn errs(src: &str) -> Vec<String> {
        match parse("t.conf", src) {
            Ok(c) => panic!("expected an error, parsed {c:?}"),
            Err(e) => e.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn one_err(src: &str) -> String {
        let e = errs(src);
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = ok("# nothing\n");
        let i = &c.ike;
        assert_eq!(i.ike_syslog_level, 1);
        assert_eq!(i.pagent_syslog_level, 0);
        assert!(i.smf119.is_empty());
        assert_eq!(i.ike_retries, 6);
        assert_eq!(i.ike_init_wait, 2);
        assert!(!i.fips140);
        assert_eq!(i.key_ring.to_string(), "iked/keyring");
        assert_eq!(
            i.key_ring.directory(),
            Some(PathBuf::from("/etc/security/keyrings/iked/keyring"))
        );
        assert!(!i.echo);
        assert_eq!(i.nss, None);
        assert_eq!(i.nss_wait_limit, 60);
        assert_eq!(i.nss_wait_retries, 3);
        assert_eq!(i.pagent_wait, 0);
        assert!(i.supported_cert_auth.is_empty());
        let stacks = c.stacks();
        assert_eq!(stacks.len(), 1);
        assert_eq!(stacks[0].stack, "default");
        assert_eq!(
            stacks[0].policy_file,
            PathBuf::from("/etc/security/ipsec-policy.conf")
        );
        assert_eq!(stacks[0].ike_port, 500);
        assert_eq!(stacks[0].natt_port, 4500);
        assert_eq!(stacks[0].nat_keepalive, 20);
    }

    #[test]
    fn every_ike_config_parameter() {
        let c = ok(r#"
IkeConfig
{
  IkeSyslogLevel 7
  PagentSyslogLevel 1
  SMF119 IKEALL
  IkeRetries 10
  IkeInitWait 1
  FIPS140 yes
  KeyRing gw1/ring1
  Echo Yes
  NetworkSecurityServer 192.0.2.5 Port 4160 Identity Fqdn nss.example.net
  NetworkSecurityServerBackup nss2.example.net Identity X500dn "CN=nss2,O=Example"
  NssWaitLimit 30
  NssWaitRetries 5
  PagentWait 10
  SupportedCertAuth CA1
  SystemName gw1
  SafDatabase auth/iked.saf
}
"#);
        let i = &c.ike;
        assert_eq!(i.ike_syslog_level, 7);
        assert_eq!(i.pagent_syslog_level, 1);
        assert_eq!(i.smf119, vec![Smf119::IkeAll]);
        assert_eq!(i.ike_retries, 10);
        assert_eq!(i.ike_init_wait, 1);
        assert!(i.fips140);
        assert_eq!(
            i.key_ring,
            KeyRing::UserRing {
                user: "gw1".into(),
                ring: "ring1".into()
            }
        );
        assert!(i.echo);
        assert_eq!(
            i.nss,
            Some(NssServer {
                host: "192.0.2.5".into(),
                port: 4160,
                identity: Some(ServerIdentity {
                    kind: IdentityType::Fqdn,
                    value: "nss.example.net".into()
                })
            })
        );
        let b = i.nss_backup.as_ref().map(|b| (b.host.as_str(), b.port));
        assert_eq!(b, Some(("nss2.example.net", 4159)));
        assert_eq!(
            i.nss_backup
                .as_ref()
                .and_then(|b| b.identity.as_ref())
                .map(|i| i.kind),
            Some(IdentityType::X500dn)
        );
        assert_eq!(i.nss_wait_limit, 30);
        assert_eq!(i.nss_wait_retries, 5);
        assert_eq!(i.pagent_wait, 10);
        assert_eq!(i.supported_cert_auth, vec!["CA1".to_owned()]);
        assert_eq!(c.system_name(), "GW1");
        assert_eq!(
            i.saf_database(Path::new("/etc/security")),
            PathBuf::from("/etc/security/auth/iked.saf")
        );
        assert_eq!(
            IkeConfig::default().saf_database(Path::new("/x")),
            PathBuf::from(DEFAULT_SAF_DATABASE)
        );
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let c = ok("ikeconfig { IKERETRIES 3 ikeinitwait 4 fips140 NO }");
        assert_eq!((c.ike.ike_retries, c.ike.ike_init_wait), (3, 4));
    }

    #[test]
    fn last_ike_config_wins_and_last_parameter_wins() {
        let c = ok(
            "IkeConfig { IkeRetries 3 IkeInitWait 5 }\nIkeConfig { IkeRetries 4 IkeRetries 8 }\n",
        );
        assert_eq!(c.ike.ike_retries, 8);
        // The earlier statement is not merged in: IkeInitWait is back to the default.
        assert_eq!(c.ike.ike_init_wait, 2);
    }

    #[test]
    fn smf119_and_supported_cert_auth_accumulate() {
        let c = ok(
            "IkeConfig {\n SMF119 IKETunnel\n SMF119 DynTunnel\n SMF119 IKETunnel\n \
                    SupportedCertAuth CA1\n SupportedCertAuth \"Root CA 2\"\n}",
        );
        assert_eq!(c.ike.smf119, vec![Smf119::IkeTunnel, Smf119::DynTunnel]);
        assert_eq!(
            c.ike.supported_cert_auth,
            vec!["CA1".to_owned(), "Root CA 2".to_owned()]
        );
        let c = ok("IkeConfig { SMF119 IKEALL SMF119 None SMF119 DynTunnel }");
        assert_eq!(c.ike.smf119, vec![Smf119::DynTunnel]);
    }

    #[test]
    fn key_ring_forms() {
        let c = ok("IkeConfig { KeyRing myring }");
        assert_eq!(c.ike.key_ring, KeyRing::Ring("myring".into()));
        assert_eq!(
            c.ike.key_ring.directory(),
            Some(PathBuf::from("/etc/security/keyrings/iked/myring"))
        );
        let c = ok("IkeConfig { KeyRing /var/lib/gatekey/ring }");
        assert_eq!(
            c.ike.key_ring.directory(),
            Some(PathBuf::from("/var/lib/gatekey/ring"))
        );
        let c = ok("IkeConfig { KeyRing r NoKeyRing }");
        assert_eq!(c.ike.key_ring, KeyRing::None);
        assert_eq!(c.ike.key_ring.directory(), None);
        let e = one_err("IkeConfig { KeyRing a/b/c }");
        assert!(
            e.starts_with("t.conf:1:21: KeyRing must be userid/ringname"),
            "{e}"
        );
        let e = one_err("IkeConfig { KeyRing /etc/../x }");
        assert!(e.contains("'..'"), "{e}");
    }

    #[test]
    fn nss_stack_config_full() {
        let c = ok(r#"
IkeConfig { NetworkSecurityServer 10.0.0.1 }
NssStackConfig blue
{
  ClientName BLUECLIENT
  ServiceType Cert
  ServiceType RemoteMgmt
  UserId GW1USER
  AuthBy Password
  Password "s3cret pass"
}
NssStackConfig red { UserId U2 AuthBy PassTicket PassTicketKeyFile /etc/security/ptkt.key }
"#);
        let b = &c.nss_stacks["blue"];
        assert_eq!(b.client_name("GW1"), "BLUECLIENT");
        assert_eq!(b.services, vec![ServiceType::Cert, ServiceType::RemoteMgmt]);
        assert_eq!(b.user_id, "GW1USER");
        assert_eq!(b.auth_by, AuthBy::Password);
        assert_eq!(
            b.password.as_ref().map(Secret::expose),
            Some(&b"s3cret pass"[..])
        );
        assert!(!format!("{b:?}").contains("s3cret"));
        let r = &c.nss_stacks["red"];
        assert_eq!(r.auth_by, AuthBy::PassTicket);
        assert_eq!(r.services, vec![ServiceType::Cert]);
        assert!(r.has_service(ServiceType::Cert) && !r.has_service(ServiceType::RemoteMgmt));
        assert_eq!(r.client_name("GW1"), "GW1_red");
        // Both NSS stacks are served, with default stack settings.
        let names: Vec<_> = c.stacks().into_iter().map(|s| s.stack).collect();
        assert_eq!(names, ["blue", "red"]);
    }

    #[test]
    fn default_client_name_is_cut_to_24() {
        let c = ok("IkeConfig { NetworkSecurityServerBackup nss }\n\
                    NssStackConfig averyveryverylongstackname { UserId u Password p }");
        let n = &c.nss_stacks["averyveryverylongstackname"];
        let name = n.client_name("SYSTEMAB");
        assert_eq!(name, "SYSTEMAB_averyveryverylo");
        assert_eq!(name.len(), 24);
    }

    #[test]
    fn nss_stack_without_server_is_an_error() {
        let e = one_err("IkeConfig { IkeRetries 2 }\nNssStackConfig s1 { UserId u Password p }\n");
        assert_eq!(
            e,
            "t.conf:2:1: NssStackConfig s1 needs a NetworkSecurityServer or NetworkSecurityServerBackup in IkeConfig"
        );
        // The server must be in the *last* IkeConfig.
        let e = one_err(
            "IkeConfig { NetworkSecurityServer a }\nIkeConfig { IkeRetries 2 }\nNssStackConfig s1 { UserId u Password p }",
        );
        assert!(e.starts_with("t.conf:3:1:"), "{e}");
    }

    #[test]
    fn same_nss_stack_twice_last_wins() {
        let c = ok("IkeConfig { NetworkSecurityServer a }\n\
                    NssStackConfig s { UserId one Password p ServiceType RemoteMgmt }\n\
                    NssStackConfig s { UserId two Password p }\n");
        assert_eq!(c.nss_stacks.len(), 1);
        assert_eq!(c.nss_stacks["s"].user_id, "two");
        assert_eq!(c.nss_stacks["s"].services, vec![ServiceType::Cert]);
    }

    #[test]
    fn nss_stack_errors() {
        let pre = "IkeConfig { NetworkSecurityServer a }\n";
        let e = one_err(&format!("{pre}NssStackConfig s {{ Password p }}"));
        assert_eq!(e, "t.conf:2:1: NssStackConfig s needs a UserId");
        let e = one_err(&format!("{pre}NssStackConfig s {{ UserId u }}"));
        assert!(
            e.contains("authenticates by Password but codes no Password"),
            "{e}"
        );
        let e = one_err(&format!(
            "{pre}NssStackConfig s {{ UserId u\n AuthBy PassTicket }}"
        ));
        assert_eq!(
            e,
            "t.conf:3:2: NssStackConfig s authenticates by PassTicket but codes no PassTicketKeyFile"
        );
        let e = one_err(&format!(
            "{pre}NssStackConfig s {{ UserId u Password p ServiceType Certs }}"
        ));
        assert!(
            e.starts_with("t.conf:2:52: ServiceType must be Cert or RemoteMgmt"),
            "{e}"
        );
        let e = one_err(&format!(
            "{pre}NssStackConfig s {{ UserId u Password p ClientName abcdefghijklmnopqrstuvwxy }}"
        ));
        assert!(e.contains("ClientName must be 1 to 24 characters"), "{e}");
        let e = one_err(&format!(
            "{pre}NssStackConfig s {{ UserId u Password p AuthBy Cert }}"
        ));
        assert!(e.contains("AuthBy must be Password or PassTicket"), "{e}");
        let e = one_err(&format!(
            "{pre}NssStackConfig s/x {{ UserId u Password p }}"
        ));
        assert!(e.contains("stack (network namespace) name"), "{e}");
        let e = one_err(&format!("{pre}NssStackConfig\n{{ UserId u Password p }}"));
        assert!(e.starts_with("t.conf:2:15: expected a stack name"), "{e}");
        let e = one_err(&format!(
            "{pre}NssStackConfig s {{ UserId u Password p Colour red }}"
        ));
        assert!(
            e.contains("unknown NssStackConfig parameter 'Colour'"),
            "{e}"
        );
        let e = one_err(&format!(
            "{pre}NssStackConfig s {{ UserId u AuthBy PassTicket PassTicketKeyFile rel/key }}"
        ));
        assert!(
            e.contains("PassTicketKeyFile must be an absolute path"),
            "{e}"
        );
    }

    #[test]
    fn stack_config_extension() {
        let c = ok(r#"
StackConfig red
{
  PolicyFile /etc/gatekey/red.pol
  ProfileFile /etc/gatekey/red.profile
  Interface eth0
  Interface eth1
  Interface eth0
  NatKeepAlive 0
  IkePort 1500
  NattPort 14500
}
StackConfig default { }
"#);
        let s = c.stacks();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].stack, "default");
        assert_eq!(s[0], StackConfig::defaults("default"));
        let r = &s[1];
        assert_eq!(r.policy_file, PathBuf::from("/etc/gatekey/red.pol"));
        assert_eq!(r.profile_file, PathBuf::from("/etc/gatekey/red.profile"));
        assert_eq!(r.interfaces, ["eth0", "eth1"]);
        assert_eq!((r.nat_keepalive, r.ike_port, r.natt_port), (0, 1500, 14500));
        assert_eq!(
            StackConfig::defaults("blue").policy_file,
            PathBuf::from("/etc/security/ipsec-policy.blue.conf")
        );
    }

    #[test]
    fn stack_config_errors() {
        let e = one_err("StackConfig r { PolicyFile dir/ }");
        assert!(
            e.starts_with("t.conf:1:28: PolicyFile must name a file"),
            "{e}"
        );
        let mut s = ok("StackConfig r { PolicyFile rel.pol ProfileFile /abs/p }")
            .stacks()
            .remove(0);
        s.resolve_paths(Path::new("/etc/security"));
        assert_eq!(s.policy_file, PathBuf::from("/etc/security/rel.pol"));
        assert_eq!(s.profile_file, PathBuf::from("/abs/p"));
        let e = one_err("StackConfig r { IkePort 4500 }");
        assert!(e.contains("IkePort and NattPort must differ"), "{e}");
        let e = one_err("StackConfig r { Interface averyveryverylongname }");
        assert!(e.contains("Interface needs a Linux interface name"), "{e}");
        let e = one_err("StackConfig r { NatKeepAlive 9999 }");
        assert!(
            e.contains("NatKeepAlive must be a whole number from 0 to 3600"),
            "{e}"
        );
        let e = one_err("StackConfig r { Mtu 1400 }");
        assert!(e.contains("unknown StackConfig parameter 'Mtu'"), "{e}");
    }

    #[test]
    fn value_errors_name_line_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "IkeConfig {\n  IkeRetries 11\n}",
                "t.conf:2:14: IkeRetries must be a whole number from 1 to 10, found '11'",
            ),
            (
                "IkeConfig {\n  IkeInitWait 0\n}",
                "t.conf:2:15: IkeInitWait must be a whole number from 1 to 10, found '0'",
            ),
            (
                "IkeConfig { IkeSyslogLevel 256 }",
                "t.conf:1:28: IkeSyslogLevel must be a whole number from 0 to 255, found '256'",
            ),
            (
                "IkeConfig { PagentSyslogLevel x }",
                "t.conf:1:31: PagentSyslogLevel must be a whole number from 0 to 255, found 'x'",
            ),
            (
                "IkeConfig { NssWaitLimit 0 }",
                "t.conf:1:26: NssWaitLimit must be a whole number from 1 to 3600, found '0'",
            ),
            (
                "IkeConfig { NssWaitRetries 0 }",
                "t.conf:1:28: NssWaitRetries must be a whole number from 1 to 100, found '0'",
            ),
            (
                "IkeConfig { PagentWait -1 }",
                "t.conf:1:24: PagentWait must be a whole number from 0 to 3600, found '-1'",
            ),
            (
                "IkeConfig { FIPS140 maybe }",
                "t.conf:1:21: FIPS140 must be Yes or No, found 'maybe'",
            ),
            (
                "IkeConfig { Echo 1 }",
                "t.conf:1:18: Echo must be Yes or No, found '1'",
            ),
            (
                "IkeConfig { SMF119 All }",
                "t.conf:1:20: SMF119 must be None, IKEALL, IKETunnel or DynTunnel, found 'All'",
            ),
            (
                "IkeConfig { NetworkSecurityServer a Port 0 }",
                "t.conf:1:42: NetworkSecurityServer Port must be a whole number from 1 to 65535, found '0'",
            ),
            (
                "IkeConfig { NetworkSecurityServer bad_host! }",
                "t.conf:1:35: NetworkSecurityServer needs a host name or IP address, found 'bad_host!'",
            ),
            (
                "IkeConfig { NetworkSecurityServer a Identity Dns x }",
                "t.conf:1:46: Identity type must be IpAddr, Fqdn, UserAtFqdn or X500dn, found 'Dns'",
            ),
            (
                "IkeConfig { NetworkSecurityServer a Identity IpAddr nss }",
                "t.conf:1:53: Identity IpAddr needs an IP address, found 'nss'",
            ),
            (
                "IkeConfig { NetworkSecurityServerBackup a Identity UserAtFqdn nss }",
                "t.conf:1:63: Identity UserAtFqdn needs user@domain, found 'nss'",
            ),
            (
                "IkeConfig { NetworkSecurityServer a Identity X500dn nss }",
                "t.conf:1:53: Identity X500dn needs a distinguished name such as \"CN=nss,O=Example\", found 'nss'",
            ),
            (
                "IkeConfig { SupportedCertAuth \"\" }",
                "t.conf:1:31: SupportedCertAuth label must be 1 to 32 characters, found ''",
            ),
            (
                "IkeConfig { SystemName toolongname }",
                "t.conf:1:24: SystemName must be 1 to 8 letters, digits, $, # or @, found 'toolongname'",
            ),
            (
                "IkeConfig { IkeRetries }",
                "t.conf:1:24: expected IkeRetries, found '}'",
            ),
            (
                "IkeConfig { Bogus 1 }",
                "t.conf:1:13: unknown IkeConfig parameter 'Bogus'",
            ),
            (
                "IkeConfig name { }",
                "t.conf:1:11: IkeConfig takes no name; expected '{', found 'name'",
            ),
            (
                "IkeConfig { \"q\" }",
                "t.conf:1:13: expected a parameter keyword, found \"q\"",
            ),
            ("IkeConfig { { } }", "t.conf:1:13: unexpected '{'"),
            (
                "IkeConfig { NetworkSecurityServer\n a }",
                "t.conf:1:34: expected a host name or IP address after NetworkSecurityServer on this line",
            ),
        ];
        for (src, want) in cases {
            let e = one_err(src);
            assert!(e.starts_with(want), "for {src:?}\n got: {e}\nwant: {want}");
        }
    }

    #[test]
    fn structural_errors() {
        let e = one_err("Bogus { }");
        assert_eq!(
            e,
            "t.conf:1:1: unknown statement 'Bogus'; expected IkeConfig, NssStackConfig or StackConfig"
        );
        let e = one_err("IkeConfig { IkeRetries 2");
        assert_eq!(
            e,
            "t.conf:1:11: the block of 'IkeConfig' is not closed (a '}' is missing)"
        );
        let e = one_err("}\nIkeConfig { }");
        assert_eq!(e, "t.conf:1:1: unexpected '}' (no block is open)");
        let e = one_err("IkeConfig");
        assert_eq!(e, "t.conf:1:1: statement 'IkeConfig' has no '{ … }' block");
        let e = one_err("IkeConfig { Echo \"yes }");
        assert!(
            e.starts_with("t.conf:1:18: unterminated quoted string"),
            "{e}"
        );
    }

    #[test]
    fn every_error_is_reported_and_valid_statements_are_kept_out() {
        let e =
            errs("IkeConfig { IkeRetries 0 }\nStackConfig a { IkePort x }\nIkeConfig { Echo x }\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("t.conf:1:"));
        assert!(e[1].starts_with("t.conf:2:"));
        assert!(e[2].starts_with("t.conf:3:"));
    }

    #[test]
    fn config_path_order() {
        assert_eq!(config_path(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
        // IKED_FILE is read from the environment; this test only checks the
        // fall-back when it is unset, so it does not touch the environment.
        if std::env::var_os(ENV_FILE).is_none() {
            assert_eq!(config_path(None), PathBuf::from(DEFAULT_PATH));
        }
    }

    #[test]
    fn secrets_compare_in_constant_time_and_redact() {
        let a = Secret::new(b"abc".to_vec());
        assert!(a.ct_eq(&Secret::new(b"abc".to_vec())));
        assert!(!a.ct_eq(&Secret::new(b"abd".to_vec())));
        assert!(!a.ct_eq(&Secret::new(b"ab".to_vec())));
        assert_eq!(format!("{a:?}"), "Secret(<3 bytes redacted>)");
    }

    #[test]
    fn load_reads_files_and_names_them() {
        let dir = std::env::temp_dir().join(format!("iked-conf-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("iked.conf");
        assert!(std::fs::write(&f, "IkeConfig {\n IkeRetries 99\n}\n").is_ok());
        let e = load(&f).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err(format!(
                "{}:2:13: IkeRetries must be a whole number from 1 to 10, found '99'",
                f.display()
            ))
        );
        let missing = load(&dir.join("missing.conf"));
        assert!(matches!(missing, Err(LoadError::Io { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
