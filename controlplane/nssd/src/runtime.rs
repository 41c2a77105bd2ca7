//! The running configuration: nssd.conf, the security database, the keyring
//! and the TLS server configuration, loaded together and swapped whole on a
//! refresh (any error rejects the refresh and keeps the old one).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use gatekey_config::nssd_conf::{self, NssConfig};
use gatekey_config::saf::{self, KeySource, SafDatabase};
use gatekey_keyring::Keyring;
use nss_proto::Secret;
use rustls_pki_types::CertificateDer;

/// Everything a refresh replaces.
#[derive(Debug)]
pub struct Runtime {
    /// The parsed nssd.conf (relative paths resolved).
    pub config: NssConfig,
    /// Where it was read from.
    pub config_path: PathBuf,
    /// The system name used in profile names.
    pub system_name: String,
    /// Users, groups, profiles, PassTicket keys.
    pub saf: SafDatabase,
    /// PassTicket application keys by application name.
    pub ptkt_keys: BTreeMap<String, Secret>,
    /// The keyring of the certificate service (none: service unavailable).
    pub keyring: Option<Arc<Keyring>>,
    /// The TLS server configuration.
    pub tls: Arc<rustls::ServerConfig>,
    /// The label of the TLS certificate.
    pub tls_label: String,
}

fn check_secret_file(path: &Path, secret: bool) -> Result<()> {
    let m = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let uid = m.uid();
    if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
        bail!(
            "{} is owned by uid {uid}; it must be owned by root or the user nssd runs as",
            path.display()
        );
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        bail!(
            "{} is writable by group or others (mode {mode:04o}); run `chmod go-w {}`",
            path.display(),
            path.display()
        );
    }
    if secret && mode & 0o077 != 0 {
        bail!(
            "{} holds password hashes or PassTicket keys but is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Load and check the security database at `path`.
pub fn load_saf(path: &Path) -> Result<(SafDatabase, BTreeMap<String, Secret>)> {
    let db = saf::load(path).map_err(|e| anyhow!("{e}"))?;
    let has_secrets = db.users.values().any(|u| u.password_hash.is_some())
        || db
            .ptktdata
            .values()
            .any(|p| matches!(p.key, KeySource::Inline(_)));
    check_secret_file(path, has_secrets)?;
    for u in db.users.values() {
        if let Some(h) = &u.password_hash {
            argon2::PasswordHash::new(h).map_err(|e| {
                anyhow!(
                    "{}:{}: the Password of user {} is not a valid hash ({e}); make one with `nssd passwd`",
                    path.display(),
                    u.pos.line,
                    u.name
                )
            })?;
        }
    }
    let mut keys = BTreeMap::new();
    for p in db.ptktdata.values() {
        let key = match &p.key {
            KeySource::Inline(k) => Secret::from_slice(k.expose()),
            KeySource::File(f) => {
                check_secret_file(f, true)?;
                let text =
                    zeroize::Zeroizing::new(std::fs::read_to_string(f).with_context(|| {
                        format!("cannot read PassTicket key file {}", f.display())
                    })?);
                let k = saf::parse_key_hex(&text).map_err(|m| anyhow!("{}: {m}", f.display()))?;
                Secret::from_slice(k.expose())
            }
        };
        keys.insert(p.appl.clone(), key);
    }
    Ok((db, keys))
}

/// Build the TLS server configuration from `ring` and `label` (or its default
/// certificate).
pub fn tls_config(
    ring: &Keyring,
    label: Option<&str>,
) -> Result<(Arc<rustls::ServerConfig>, String)> {
    let entry = match label {
        Some(l) => ring
            .get(l)
            .ok_or_else(|| anyhow!("TlsCertificate {l:?} is not in the keyring {}", ring.dir().display()))?,
        None => ring.default_entry().ok_or_else(|| {
            anyhow!(
                "the keyring {} has no single certificate with a key marked Default; code TlsCertificate",
                ring.dir().display()
            )
        })?,
    };
    let key = entry.private_key_der().ok_or_else(|| {
        anyhow!(
            "the TLS certificate {:?} has no private key in the keyring",
            entry.label()
        )
    })?;
    let mut chain = vec![CertificateDer::from(entry.der().to_vec())];
    chain.extend(
        ring.issuer_chain(entry)
            .into_iter()
            .map(CertificateDer::from),
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| format!("TLS certificate {:?}", entry.label()))?;
    Ok((Arc::new(cfg), entry.label().to_owned()))
}

impl Runtime {
    /// Load everything named by the configuration file `path`.
    pub fn load(path: &Path) -> Result<Runtime> {
        let config = nssd_conf::load(path).map_err(|e| anyhow!("{e}"))?;
        let system_name = config.system_name();
        let (saf, ptkt_keys) = load_saf(&config.saf_database())?;
        let keyring = match &config.key_ring {
            Some(k) => Some(Arc::new(
                Keyring::load(k).with_context(|| format!("KeyRing {}", k.display()))?,
            )),
            None => None,
        };
        let tls_ring_owned;
        let tls_ring: &Keyring = match (&config.tls_key_ring, &keyring) {
            (Some(t), _) => {
                tls_ring_owned =
                    Keyring::load(t).with_context(|| format!("TlsKeyRing {}", t.display()))?;
                &tls_ring_owned
            }
            (None, Some(k)) => k,
            (None, None) => bail!(
                "{}: nssd needs a TLS certificate: code KeyRing (or TlsKeyRing) in NssConfig",
                path.display()
            ),
        };
        let (tls, tls_label) = tls_config(tls_ring, config.tls_certificate.as_deref())?;
        Ok(Runtime {
            config,
            config_path: path.to_path_buf(),
            system_name,
            saf,
            ptkt_keys,
            keyring,
            tls,
            tls_label,
        })
    }
}

/// The settings lines of a configuration display, without the default marks.
fn settings(display: &str) -> Vec<String> {
    display
        .lines()
        .map(|l| {
            l.split("   # default")
                .next()
                .unwrap_or(l)
                .trim()
                .to_owned()
        })
        .filter(|l| {
            !l.is_empty() && !l.starts_with('#') && !matches!(l.as_str(), "{" | "}" | "NssConfig")
        })
        .collect()
}

/// What differs between two configurations, one line each (the REFRESH_CONFIG
/// response's `changes`): NssConfig settings, the users, groups, profiles and
/// PassTicket keys of the security database, keyring certificates and CRLs,
/// the TLS certificate.
pub fn changes(old: &Runtime, new: &Runtime) -> Vec<String> {
    let mut out = Vec::new();
    let (o, n) = (
        settings(&old.config.display()),
        settings(&new.config.display()),
    );
    let key = |l: &str| -> String {
        let mut w = l.split_whitespace();
        match (w.next(), w.next()) {
            (Some("Discipline"), Some(d)) => format!("Discipline {d}"),
            (Some(k), _) => k.to_owned(),
            (None, _) => String::new(),
        }
    };
    for l in n.iter().filter(|l| !o.contains(l)) {
        match o.iter().find(|x| key(x) == key(l) && !n.contains(x)) {
            Some(was) => out.push(format!("{l} (was: {was})")),
            None => out.push(format!("{l} (added)")),
        }
    }
    for l in o.iter().filter(|l| !n.contains(l)) {
        if !n.iter().any(|x| key(x) == key(l)) {
            out.push(format!("{l} (removed)"));
        }
    }
    let count = |what: &str, a: usize, b: usize, out: &mut Vec<String>| {
        if a != b {
            out.push(format!("security database: {b} {what} (was {a})"));
        }
    };
    count("users", old.saf.users.len(), new.saf.users.len(), &mut out);
    count(
        "groups",
        old.saf.groups.len(),
        new.saf.groups.len(),
        &mut out,
    );
    count(
        "profiles",
        old.saf.profiles.len(),
        new.saf.profiles.len(),
        &mut out,
    );
    count(
        "PassTicket keys",
        old.ptkt_keys.len(),
        new.ptkt_keys.len(),
        &mut out,
    );
    let labels = |r: &Option<Arc<Keyring>>| -> Vec<String> {
        r.as_ref().map_or_else(Vec::new, |k| {
            k.entries().iter().map(|e| e.label().to_owned()).collect()
        })
    };
    let (ol, nl) = (labels(&old.keyring), labels(&new.keyring));
    let added: Vec<&str> = nl
        .iter()
        .filter(|l| !ol.contains(l))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = ol
        .iter()
        .filter(|l| !nl.contains(l))
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        out.push(format!("keyring: certificates added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        out.push(format!(
            "keyring: certificates removed: {}",
            removed.join(", ")
        ));
    }
    let crls = |r: &Option<Arc<Keyring>>| r.as_ref().map_or(0, |k| k.crls().len());
    if crls(&old.keyring) != crls(&new.keyring) {
        out.push(format!(
            "keyring: {} CRLs (was {})",
            crls(&new.keyring),
            crls(&old.keyring)
        ));
    }
    if old.tls_label != new.tls_label {
        out.push(format!(
            "TLS certificate {:?} (was {:?}; new connections only)",
            new.tls_label, old.tls_label
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The fuzz seeds are valid examples of each file kind; they must parse.
    #[test]
    fn fuzz_seed_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_parsers");
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        let c = gatekey_config::nssd_conf::parse("nssd.conf", &read("nssd.conf"));
        assert!(c.is_ok(), "{c:?}");
        let s = gatekey_config::saf::parse("nssd.saf", &read("nssd.saf"));
        assert!(s.is_ok(), "{s:?}");
        let k = gatekey_keyring::parse_manifest("keyring.conf", &read("keyring.conf"));
        assert!(k.is_ok(), "{k:?}");
    }

    #[test]
    fn settings_lines() {
        let s = super::settings(
            "NssConfig\n{\n  Port               4160\n  SyslogLevel        1   # default\n  # KeyRing not coded\n}\n",
        );
        assert_eq!(s, vec!["Port               4160", "SyslogLevel        1"]);
    }
}
