//! Loading the whole configuration: iked.conf and every stack's policy file.
//!
//! A configuration is loaded as a unit: either every file is valid and the
//! result is used, or the errors are reported and nothing changes (start
//! fails; a refresh keeps the running configuration).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gatekey_config::filter_policy::{self, FilterPolicy};
use gatekey_config::ike_policy::{self, IkePolicy};
use gatekey_config::iked_conf::{self, IkedConf, LoadError, NssStackConfig, StackConfig};
use gatekey_config::profile::{self, Profile};
use gatekey_config::saf::{self, SafDatabase};

/// A stack's policy as loaded.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// The file was read and is valid.
    Loaded(Arc<IkePolicy>),
    /// The file does not exist: the stack runs without IKE policy (it
    /// neither initiates nor accepts tunnels) and its default filter policy
    /// stays in force.
    Missing(PathBuf),
}

impl Policy {
    /// The loaded policy, if any.
    pub fn get(&self) -> Option<&Arc<IkePolicy>> {
        match self {
            Policy::Loaded(p) => Some(p),
            Policy::Missing(_) => None,
        }
    }
}

/// One stack's complete configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct StackSetup {
    /// StackConfig (or its defaults), paths resolved.
    pub conf: StackConfig,
    /// NssStackConfig, when the stack is an NSS client.
    pub nss: Option<NssStackConfig>,
    /// The stack's IPsec policy.
    pub policy: Policy,
    /// The filter part of the policy file (its `IpFilterPolicy` and
    /// `IpFilterRule`s), when it has one: the dataplane's `policy` set.
    pub filter_policy: Option<Arc<FilterPolicy>>,
    /// The ProfileFile's `IPSEC … ENDIPSEC` block, when the file exists:
    /// the dataplane's `default` set.
    pub profile: Option<Arc<Profile>>,
}

impl StackSetup {
    /// The stack name.
    pub fn name(&self) -> &str {
        &self.conf.stack
    }
}

/// A complete, valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The iked.conf that was read.
    pub path: PathBuf,
    /// Its contents.
    pub iked: IkedConf,
    /// Every stack iked serves, sorted by name.
    pub stacks: Vec<StackSetup>,
    /// The authorization profiles for NMI callers (empty if the file does
    /// not exist).
    pub saf: Arc<SafDatabase>,
}

impl Loaded {
    /// The stack named `name`.
    pub fn stack(&self, name: &str) -> Option<&StackSetup> {
        self.stacks.iter().find(|s| s.name() == name)
    }

    /// Human-readable warnings (not errors): missing policy files.
    pub fn warnings(&self) -> Vec<String> {
        self.stacks
            .iter()
            .filter_map(|s| match &s.policy {
                Policy::Missing(p) => Some(format!(
                    "stack {}: policy file {} does not exist; the stack will negotiate no tunnels",
                    s.name(),
                    p.display()
                )),
                Policy::Loaded(_) => None,
            })
            .collect()
    }
}

/// Every error found, each a complete line (`file:line:col: message` or
/// `file: what went wrong`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<String>);

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("\n"))
    }
}

impl std::error::Error for Errors {}

fn push_load_error(out: &mut Vec<String>, e: LoadError) {
    match e {
        LoadError::Invalid(d) => out.extend(d.0.iter().map(ToString::to_string)),
        other => out.push(other.to_string()),
    }
}

/// Load iked.conf from `path` and every stack's policy file.
pub fn load(path: &Path) -> Result<Loaded, Errors> {
    let mut errors = Vec::new();
    let iked = match iked_conf::load(path) {
        Ok(c) => c,
        Err(e) => {
            push_load_error(&mut errors, e);
            return Err(Errors(errors));
        }
    };
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut stacks = Vec::new();
    for mut conf in iked.stacks() {
        conf.resolve_paths(&base);
        let policy = match ike_policy::load(&conf.policy_file) {
            Ok(p) => {
                if iked.ike.fips140 {
                    let file = conf.policy_file.display().to_string();
                    errors.extend(p.fips_violations(&file).iter().map(ToString::to_string));
                }
                Policy::Loaded(Arc::new(p))
            }
            Err(LoadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Policy::Missing(conf.policy_file.clone())
            }
            Err(e) => {
                push_load_error(&mut errors, e);
                Policy::Missing(conf.policy_file.clone())
            }
        };
        let filter_policy = match &policy {
            Policy::Loaded(_) => load_filter_policy(&conf.policy_file, &mut errors),
            Policy::Missing(_) => None,
        };
        let profile = load_profile(&conf.profile_file, &mut errors);
        let nss = iked.nss_stacks.get(&conf.stack).cloned();
        stacks.push(StackSetup {
            conf,
            nss,
            policy,
            filter_policy,
            profile,
        });
    }
    let saf_path = iked.ike.saf_database(&base);
    let saf = match saf::load(&saf_path) {
        Ok(db) => db,
        Err(saf::LoadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            SafDatabase::default()
        }
        Err(saf::LoadError::Invalid(d)) => {
            errors.extend(d.0.iter().map(ToString::to_string));
            SafDatabase::default()
        }
        Err(e) => {
            errors.push(e.to_string());
            SafDatabase::default()
        }
    };
    // Two stacks may not share a policy file path by accident: that is
    // allowed (same policy for both), so nothing to check there. Ports must
    // differ per stack only within one namespace, which stacks never share.
    if errors.is_empty() {
        Ok(Loaded {
            path: path.to_path_buf(),
            iked,
            stacks,
            saf: Arc::new(saf),
        })
    } else {
        Err(Errors(errors))
    }
}

/// The filter statements of a policy file, if it has any (`IpFilterPolicy`
/// or `IpFilterRule`): a file with only IKE statements leaves the stack's
/// filter to the profile.
fn load_filter_policy(path: &Path, errors: &mut Vec<String>) -> Option<Arc<FilterPolicy>> {
    let src = std::fs::read_to_string(path).ok()?;
    let file = path.display().to_string();
    let toks =
        gatekey_config::lex::tokenize(&file, &src, gatekey_config::lex::CommentStyle::Hash).ok()?;
    if !toks
        .iter()
        .any(|t| t.is_word("IpFilterPolicy") || t.is_word("IpFilterRule"))
    {
        return None;
    }
    match filter_policy::parse(&file, &src) {
        Ok(p) => Some(Arc::new(p)),
        Err(d) => {
            errors.extend(d.0.iter().map(ToString::to_string));
            None
        }
    }
}

/// The ProfileFile's default filter policy, if the file exists.
fn load_profile(path: &Path, errors: &mut Vec<String>) -> Option<Arc<Profile>> {
    match profile::load(path) {
        Ok(p) => Some(Arc::new(p)),
        Err(LoadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            push_load_error(errors, e);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "iked-conf-{}-{}",
            std::process::id(),
            std::thread::current()
                .name()
                .unwrap_or("t")
                .replace("::", "-")
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loads_relative_policy_files_and_reports_missing_ones() {
        let d = dir();
        std::fs::write(
            d.join("iked.conf"),
            "StackConfig red { PolicyFile red.pol }\nStackConfig blue { PolicyFile blue.pol }\n",
        )
        .unwrap();
        std::fs::write(
            d.join("red.pol"),
            "KeyExchangeRule r { KeyExchangeAction { } SharedKey Ascii k }\n",
        )
        .unwrap();
        let l = load(&d.join("iked.conf")).unwrap();
        assert_eq!(l.stacks.len(), 2);
        let red = l.stack("red").unwrap();
        assert_eq!(red.policy.get().unwrap().key_exchange_rules.len(), 1);
        let blue = l.stack("blue").unwrap();
        assert_eq!(blue.policy, Policy::Missing(d.join("blue.pol")));
        assert_eq!(l.warnings().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn errors_from_every_file_are_collected() {
        let d = dir();
        std::fs::write(
            d.join("iked.conf"),
            "IkeConfig { FIPS140 yes }\nStackConfig a { PolicyFile a.pol }\nStackConfig b { PolicyFile b.pol }\n",
        )
        .unwrap();
        std::fs::write(d.join("a.pol"), "KeyExchangeOffer o { DHGroup Group99 }\n").unwrap();
        std::fs::write(
            d.join("b.pol"),
            "KeyExchangeRule r { SharedKey Ascii k KeyExchangeAction { KeyExchangeOffer { HowToEncrypt DES } } }\n",
        )
        .unwrap();
        let e = load(&d.join("iked.conf")).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.0[0].contains("a.pol:1:30: DHGroup must be"), "{e}");
        assert!(
            e.0[1].contains("b.pol:1:") && e.0[1].contains("not allowed with FIPS140 Yes"),
            "{e}"
        );
        let e = load(&d.join("missing.conf")).unwrap_err();
        assert!(e.0[0].starts_with("cannot read"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
