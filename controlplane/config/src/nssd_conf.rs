//! The NSS server's configuration file, `nssd.conf` (NssConfig).
//!
//! ```text
//! NssConfig
//! {
//!   Port        4159                  # 1-65535
//!   SyslogLevel 1                     # sum of the syslog_level bits
//!   KeyRing     nssd/keyring          # keyring directory (relative: to this file's directory)
//! }
//! ```
//!
//! Rules (z/OS): **several NssConfig statements are combined** (unlike
//! IkeConfig, where the last statement wins); a parameter coded more than once
//! takes its last value. Search order: `$NSSD_FILE`, then
//! `/etc/security/nssd.conf` (`nssd --config` overrides both). gatekey adds a
//! few parameters that z/OS keeps elsewhere (AT-TLS policy, RACF): the TLS
//! certificate, the security database (users, groups, profiles, PassTicket
//! keys, see [`crate::saf`]), the listening address, the system name and the
//! keepalive interval. Every default is on the accessor that applies it and in
//! `docs/configuration.md`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::iked_conf::{Diagnostics, statements};
use crate::lex::{self, CommentStyle, Cursor, Diagnostic, TokenKind};

/// Where nssd looks for its configuration when neither `--config` nor
/// `NSSD_FILE` names one.
pub const DEFAULT_PATH: &str = "/etc/security/nssd.conf";
/// The environment variable that names the configuration file.
pub const ENV_FILE: &str = "NSSD_FILE";
/// The default TCP port (IANA-registered for NSS).
pub const DEFAULT_PORT: u16 = 4159;
/// The default security database.
pub const DEFAULT_SAF_DATABASE: &str = "/etc/security/nssd.saf";
/// The default keepalive interval in seconds.
pub const DEFAULT_KEEPALIVE: u32 = 60;

/// SyslogLevel bits (they add together).
pub mod syslog_level {
    /// 1 — minimal: start, stop, refresh, errors (the default).
    pub const MINIMUM: u32 = 1;
    /// 2 — `NSS_VERBOSE`: every authorization check (DBG0032I) and
    /// authentication failure in detail.
    pub const VERBOSE: u32 = 2;
    /// 4 — `NSS_CERTINFO`: certificate operations (sign, verify, get), DBG0004I.
    pub const CERTINFO: u32 = 4;
    /// 8 — `NSS_LIFECYCLE`: client connections (DBG0104I …).
    pub const LIFECYCLE: u32 = 8;
    /// 16 — `NSS_MGMT`: remote management requests routed to clients and
    /// the NMI socket.
    pub const MGMT: u32 = 16;
    /// 32 — `NSS_TRACE`: protocol trace (frames, correlators).
    pub const TRACE: u32 = 32;
    /// Every defined bit.
    pub const ALL: u32 = 63;
}

/// The file to read: `--config` if given, else `$NSSD_FILE` if set and
/// non-empty, else [`DEFAULT_PATH`].
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(ENV_FILE) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// The combined NssConfig statements. `None` fields were not coded; the
/// accessors apply the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NssConfig {
    /// `Port n` (default 4159).
    pub port: Option<u16>,
    /// `SyslogLevel n` (default 1).
    pub syslog_level: Option<u32>,
    /// `KeyRing path`: the keyring directory. No default: without it the
    /// certificate service is not available (z/OS: "NSS certificate services
    /// are not activated if the KeyRing parameter is not specified").
    pub key_ring: Option<PathBuf>,
    /// `Discipline IPSec Enable|Disable` (default Enable).
    pub ipsec_enabled: Option<bool>,
    /// `Discipline XMLAppliance Enable|Disable`: accepted for compatibility;
    /// gatekey has no XML appliance services.
    pub xml_appliance_enabled: Option<bool>,
    /// `SystemName name` (gatekey): overrides the system name used in
    /// profile names and displays.
    pub system_name: Option<String>,
    /// `ListenAddress ip` (gatekey; default `::` = every address, IPv4 and
    /// IPv6).
    pub listen_address: Option<IpAddr>,
    /// `SafDatabase path` (gatekey; default `/etc/security/nssd.saf`): users,
    /// groups, profiles and PassTicket keys.
    pub saf_database: Option<PathBuf>,
    /// `TlsKeyRing path` (gatekey; default: the KeyRing): the keyring that
    /// holds the server's TLS certificate and key.
    pub tls_key_ring: Option<PathBuf>,
    /// `TlsCertificate label` (gatekey; default: the TLS keyring's
    /// certificate marked `Default`).
    pub tls_certificate: Option<String>,
    /// `KeepaliveInterval seconds` (gatekey; default 60, 1-3600).
    pub keepalive_interval: Option<u32>,
}

impl NssConfig {
    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// The syslog level bits.
    pub fn syslog_level(&self) -> u32 {
        self.syslog_level.unwrap_or(syslog_level::MINIMUM)
    }

    /// Is the IPSec discipline (the NSS client services) enabled?
    pub fn ipsec_enabled(&self) -> bool {
        self.ipsec_enabled.unwrap_or(true)
    }

    /// The listening address.
    pub fn listen_address(&self) -> IpAddr {
        self.listen_address
            .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
    }

    /// The security database path.
    pub fn saf_database(&self) -> PathBuf {
        self.saf_database
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SAF_DATABASE))
    }

    /// The TLS keyring: `TlsKeyRing`, else `KeyRing`.
    pub fn tls_key_ring(&self) -> Option<&Path> {
        self.tls_key_ring.as_deref().or(self.key_ring.as_deref())
    }

    /// The keepalive interval in seconds.
    pub fn keepalive_interval(&self) -> u32 {
        self.keepalive_interval.unwrap_or(DEFAULT_KEEPALIVE)
    }

    /// The system name: `SystemName` if coded, else [`crate::system_name`].
    pub fn system_name(&self) -> String {
        self.system_name.clone().unwrap_or_else(crate::system_name)
    }

    /// Make relative paths relative to `base` (the directory of nssd.conf).
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.key_ring,
            &mut self.saf_database,
            &mut self.tls_key_ring,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The running configuration as `nssd display` shows it: one NssConfig
    /// statement with every parameter, defaults included (marked).
    pub fn display(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for NssConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn line(
            f: &mut fmt::Formatter<'_>,
            name: &str,
            value: &dyn fmt::Display,
            default: bool,
        ) -> fmt::Result {
            let mark = if default { "   # default" } else { "" };
            writeln!(f, "  {name:<18} {value}{mark}")
        }
        fn quoted(s: &str) -> String {
            if s.is_empty()
                || s.chars()
                    .any(|c| c.is_whitespace() || matches!(c, '#' | '{' | '}' | '"'))
            {
                format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                s.to_owned()
            }
        }
        writeln!(f, "NssConfig")?;
        writeln!(f, "{{")?;
        line(f, "Port", &self.port(), self.port.is_none())?;
        line(
            f,
            "SyslogLevel",
            &self.syslog_level(),
            self.syslog_level.is_none(),
        )?;
        match &self.key_ring {
            Some(k) => line(f, "KeyRing", &quoted(&k.display().to_string()), false)?,
            None => writeln!(
                f,
                "  # KeyRing not coded: the certificate service is not available"
            )?,
        }
        let ed = |b: bool| if b { "Enable" } else { "Disable" };
        line(
            f,
            "Discipline",
            &format!("IPSec {}", ed(self.ipsec_enabled())),
            self.ipsec_enabled.is_none(),
        )?;
        if let Some(x) = self.xml_appliance_enabled {
            line(f, "Discipline", &format!("XMLAppliance {}", ed(x)), false)?;
        }
        line(
            f,
            "SystemName",
            &self.system_name(),
            self.system_name.is_none(),
        )?;
        line(
            f,
            "ListenAddress",
            &self.listen_address(),
            self.listen_address.is_none(),
        )?;
        line(
            f,
            "SafDatabase",
            &quoted(&self.saf_database().display().to_string()),
            self.saf_database.is_none(),
        )?;
        if let Some(k) = self.tls_key_ring() {
            line(
                f,
                "TlsKeyRing",
                &quoted(&k.display().to_string()),
                self.tls_key_ring.is_none(),
            )?;
        }
        match &self.tls_certificate {
            Some(l) => line(f, "TlsCertificate", &quoted(l), false)?,
            None => writeln!(
                f,
                "  # TlsCertificate not coded: the TLS keyring's Default certificate"
            )?,
        }
        line(
            f,
            "KeepaliveInterval",
            &self.keepalive_interval(),
            self.keepalive_interval.is_none(),
        )?;
        writeln!(f, "}}")
    }
}

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

/// Read and parse `path`; relative paths in it are resolved against its
/// directory.
pub fn load(path: &Path) -> Result<NssConfig, LoadError> {
    let src = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut c = parse(&path.display().to_string(), &src)?;
    if let Some(dir) = path.parent() {
        c.resolve_paths(dir);
    }
    Ok(c)
}

/// Parse the text of an nssd.conf; `file` labels errors. Every error is
/// reported, not only the first.
pub fn parse(file: &str, src: &str) -> Result<NssConfig, Diagnostics> {
    let toks = lex::tokenize(file, src, CommentStyle::Hash).map_err(|d| Diagnostics(vec![d]))?;
    let end = lex::end_pos(src);
    let mut errors = Vec::new();
    let mut cfg = NssConfig::default();
    for stmt in statements(file, &toks, end, &mut errors) {
        let mut cur = Cursor::new(file, stmt.toks, stmt.end);
        let Some(head) = cur.next() else { continue };
        if !head.is_word("NssConfig") {
            errors.push(cur.error_at(
                head.pos,
                format!("unknown statement '{}'; expected NssConfig", head.text),
            ));
            continue;
        }
        if let Err(e) = cur.expect_lbrace() {
            errors.push(e);
            continue;
        }
        parse_block(&mut cur, &mut cfg, &mut errors);
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        errors.sort_by_key(|d| d.pos);
        Err(Diagnostics(errors))
    }
}

fn parse_block(cur: &mut Cursor<'_>, cfg: &mut NssConfig, errors: &mut Vec<Diagnostic>) {
    while let Some(t) = cur.peek() {
        if t.kind == TokenKind::RBrace {
            cur.next();
            return;
        }
        let start = cur.mark();
        if let Err(e) = parse_param(cur, cfg) {
            errors.push(e);
            // Skip to the next line (the rest of this parameter).
            cur.rewind(start + 1);
            cur.rest_of_line();
        }
    }
}

fn parse_param(cur: &mut Cursor<'_>, cfg: &mut NssConfig) -> Result<(), Diagnostic> {
    let p = cur.expect_value("a NssConfig parameter")?;
    let pos = p.pos;
    if p.is_word("Port") {
        let v = cur.expect_value_on_line("a port number after Port")?;
        let n = lex::parse_u32_in(cur.file(), v, "Port", 1, 65535)?;
        cfg.port = Some(u16::try_from(n).unwrap_or(DEFAULT_PORT));
    } else if p.is_word("SyslogLevel") {
        let v = cur.expect_value_on_line("a level after SyslogLevel")?;
        cfg.syslog_level = Some(lex::parse_u32_in(
            cur.file(),
            v,
            "SyslogLevel",
            0,
            syslog_level::ALL,
        )?);
    } else if p.is_word("KeyRing") {
        let v = cur.expect_value_on_line("a keyring directory after KeyRing")?;
        cfg.key_ring = Some(PathBuf::from(&v.text));
    } else if p.is_word("Discipline") {
        let d = cur.expect_value_on_line("IPSec or XMLAppliance after Discipline")?;
        let which_ipsec = if d.is_word("IPSec") {
            true
        } else if d.is_word("XMLAppliance") {
            false
        } else {
            return Err(cur.error_at(
                d.pos,
                format!(
                    "Discipline must be IPSec or XMLAppliance, found '{}'",
                    d.text
                ),
            ));
        };
        let e = cur.expect_value_on_line("Enable or Disable")?;
        let on = if e.is_word("Enable") {
            true
        } else if e.is_word("Disable") {
            false
        } else {
            return Err(cur.error_at(
                e.pos,
                format!("expected Enable or Disable, found '{}'", e.text),
            ));
        };
        if which_ipsec {
            cfg.ipsec_enabled = Some(on);
        } else {
            cfg.xml_appliance_enabled = Some(on);
        }
    } else if p.is_word("SystemName") {
        let v = cur.expect_value_on_line("a system name after SystemName")?;
        if v.text.is_empty()
            || v.text.len() > 64
            || !v
                .text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$' | b'#' | b'@'))
        {
            return Err(cur.error_at(
                v.pos,
                format!(
                    "SystemName must be 1-64 letters, digits, '_', '-', '$', '#' or '@', found '{}'",
                    v.text
                ),
            ));
        }
        cfg.system_name = Some(v.text.to_ascii_uppercase());
    } else if p.is_word("ListenAddress") {
        let v = cur.expect_value_on_line("an IP address after ListenAddress")?;
        let a = v.text.parse::<IpAddr>().map_err(|_| {
            cur.error_at(
                v.pos,
                format!(
                    "ListenAddress needs an IP address such as :: or 10.1.1.1, found '{}'",
                    v.text
                ),
            )
        })?;
        cfg.listen_address = Some(a);
    } else if p.is_word("SafDatabase") {
        let v = cur.expect_value_on_line("a file name after SafDatabase")?;
        cfg.saf_database = Some(PathBuf::from(&v.text));
    } else if p.is_word("TlsKeyRing") {
        let v = cur.expect_value_on_line("a keyring directory after TlsKeyRing")?;
        cfg.tls_key_ring = Some(PathBuf::from(&v.text));
    } else if p.is_word("TlsCertificate") {
        let v = cur.expect_value_on_line("a certificate label after TlsCertificate")?;
        if v.text.is_empty() || v.text.len() > 32 {
            return Err(cur.error_at(v.pos, "a certificate label is 1 to 32 characters"));
        }
        cfg.tls_certificate = Some(v.text.clone());
    } else if p.is_word("KeepaliveInterval") {
        let v = cur.expect_value_on_line("seconds after KeepaliveInterval")?;
        cfg.keepalive_interval = Some(lex::parse_u32_in(
            cur.file(),
            v,
            "KeepaliveInterval",
            1,
            3600,
        )?);
    } else {
        return Err(cur.error_at(
            pos,
            format!(
                "unknown NssConfig parameter '{}'; expected Port, SyslogLevel, KeyRing, Discipline, \
                 SystemName, ListenAddress, SafDatabase, TlsKeyRing, TlsCertificate or KeepaliveInterval",
                p.text
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> NssConfig {
        parse("nssd.conf", src).unwrap_or_else(|e| panic!("{e}"))
    }

    fn parse_err(src: &str) -> String {
        parse("nssd.conf", src).unwrap_err().to_string()
    }

    #[test]
    fn the_documented_example() {
        let c = parse_ok(
            "NssConfig\n{\n  # listen on standard port\n  Port 4159\n\n  # minimum tracing\n  SyslogLevel 1\n\n  # specify NSS keyring\n  KeyRing nssd/keyring\n}\n",
        );
        assert_eq!(c.port(), 4159);
        assert_eq!(c.syslog_level(), 1);
        assert_eq!(c.key_ring, Some(PathBuf::from("nssd/keyring")));
        let mut c2 = c.clone();
        c2.resolve_paths(Path::new("/etc/security"));
        assert_eq!(
            c2.key_ring,
            Some(PathBuf::from("/etc/security/nssd/keyring"))
        );
    }

    #[test]
    fn defaults() {
        let c = parse_ok("");
        assert_eq!(c.port(), 4159);
        assert_eq!(c.syslog_level(), 1);
        assert!(c.key_ring.is_none());
        assert!(c.ipsec_enabled());
        assert_eq!(c.saf_database(), PathBuf::from("/etc/security/nssd.saf"));
        assert_eq!(c.keepalive_interval(), 60);
        assert_eq!(c.listen_address().to_string(), "::");
        assert!(c.tls_key_ring().is_none());
    }

    #[test]
    fn statements_combine_and_last_value_wins() {
        let c = parse_ok(
            "NssConfig { Port 5000 \n SyslogLevel 2 }\nnssconfig {\n port 6000\n KeyRing \"/k r\"\n TlsCertificate \"NSS server\" }",
        );
        assert_eq!(c.port(), 6000);
        assert_eq!(c.syslog_level(), 2);
        assert_eq!(c.key_ring, Some(PathBuf::from("/k r")));
        assert_eq!(c.tls_key_ring(), Some(Path::new("/k r")));
        assert_eq!(c.tls_certificate.as_deref(), Some("NSS server"));
    }

    #[test]
    fn extensions() {
        let c = parse_ok(
            "NssConfig {\n SystemName nsssys\n ListenAddress 127.0.0.1\n SafDatabase db.saf\n TlsKeyRing tls\n KeepaliveInterval 5\n Discipline IPSec Disable\n Discipline XMLAppliance Enable\n}",
        );
        assert_eq!(c.system_name(), "NSSSYS");
        assert_eq!(c.listen_address().to_string(), "127.0.0.1");
        assert_eq!(c.keepalive_interval(), 5);
        assert!(!c.ipsec_enabled());
        assert_eq!(c.xml_appliance_enabled, Some(true));
        let mut r = c.clone();
        r.resolve_paths(Path::new("/etc/security"));
        assert_eq!(r.saf_database(), PathBuf::from("/etc/security/db.saf"));
        assert_eq!(r.tls_key_ring(), Some(Path::new("/etc/security/tls")));
    }

    #[test]
    fn every_error_is_located_and_reported() {
        let e = parse_err(
            "NssConfig {\n  Port 70000\n  SyslogLevel x\n  Bogus 1\n  KeyRing\n  ListenAddress nope\n}\nOther { }\n",
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 6, "{e}");
        assert!(lines[0].starts_with("nssd.conf:2:8: Port must be a whole number from 1 to 65535"));
        assert!(lines[1].starts_with("nssd.conf:3:15: SyslogLevel must be"));
        assert!(lines[2].starts_with("nssd.conf:4:3: unknown NssConfig parameter 'Bogus'"));
        assert!(lines[3].starts_with("nssd.conf:5:"), "{}", lines[3]);
        assert!(lines[3].contains("keyring directory"));
        assert!(lines[4].starts_with("nssd.conf:6:17: ListenAddress needs an IP address"));
        assert!(lines[5].starts_with("nssd.conf:8:1: unknown statement 'Other'"));
    }

    #[test]
    fn trailing_values_and_unclosed_blocks() {
        assert!(parse_err("NssConfig { Port 1 2 }").contains("unknown NssConfig parameter '2'"));
        // Several parameters on one line are fine (as in iked.conf).
        assert_eq!(
            parse_ok("NssConfig { Port 7 SyslogLevel 3 }").syslog_level(),
            3
        );
        assert!(parse_err("NssConfig { Port 1").contains("not closed"));
        assert!(parse_err("NssConfig { Discipline IPSec Maybe }").contains("Enable or Disable"));
        assert!(
            parse_err("NssConfig { TlsCertificate \"a label that is far too long for RACF\" }")
                .contains("1 to 32")
        );
        assert!(parse_err("NssConfig { SystemName a.b }").contains("SystemName must be"));
    }

    #[test]
    fn display_shows_every_parameter_and_parses_back() {
        let c = parse_ok(
            "NssConfig { Port 4160\n KeyRing /etc/security/nssd/keyring\n SystemName NSS1 }",
        );
        let d = c.display();
        assert!(d.contains("Port               4160\n"), "{d}");
        assert!(d.contains("SyslogLevel        1   # default"), "{d}");
        assert!(
            d.contains("KeyRing            /etc/security/nssd/keyring"),
            "{d}"
        );
        assert!(d.contains("SafDatabase        /etc/security/nssd.saf   # default"));
        let back = parse_ok(&d);
        assert_eq!(back.port(), c.port());
        assert_eq!(back.key_ring, c.key_ring);
        assert_eq!(back.system_name(), "NSS1");
    }
}
