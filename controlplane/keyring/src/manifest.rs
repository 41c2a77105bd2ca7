//! The keyring manifest, `keyring.conf`.

use std::path::PathBuf;

use gatekey_config::lex::{self, CommentStyle, Cursor, Diagnostic, Token, TokenKind};

use crate::Usage;

/// The manifest's file name inside the keyring directory.
pub const MANIFEST: &str = "keyring.conf";

/// One `Certificate` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The label.
    pub label: String,
    /// `Usage`.
    pub usage: Usage,
    /// `File`: the PEM certificate (relative to the keyring).
    pub file: PathBuf,
    /// `Key`: the PKCS#8 key (relative to the keyring).
    pub key: Option<PathBuf>,
    /// `Owner` (upper case).
    pub owner: Option<String>,
    /// `Default`.
    pub default: bool,
}

fn label_ok(l: &str) -> bool {
    !l.is_empty() && l.len() <= 32 && l.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Parse a manifest: the certificates and the CRL files, or every error as
/// `file:line:column: message` lines.
pub fn parse_manifest(file: &str, src: &str) -> Result<(Vec<ManifestEntry>, Vec<PathBuf>), String> {
    let toks = lex::tokenize(file, src, CommentStyle::Hash).map_err(|d| d.to_string())?;
    let mut cur = Cursor::for_source(file, src, &toks);
    let mut entries: Vec<ManifestEntry> = Vec::new();
    let mut crls = Vec::new();
    let mut errors: Vec<Diagnostic> = Vec::new();
    while let Some(head) = cur.next() {
        let mark = cur.mark();
        let r = if head.is_word("Certificate") {
            parse_cert(&mut cur).and_then(|e| {
                if entries.iter().any(|x| x.label == e.label) {
                    Err(cur.error_at(head.pos, format!("label {:?} is used twice", e.label)))
                } else {
                    entries.push(e);
                    Ok(())
                }
            })
        } else if head.is_word("Crl") {
            parse_crl(&mut cur).map(|f| crls.push(f))
        } else {
            Err(cur.error_at(
                head.pos,
                format!(
                    "unknown statement '{}'; expected Certificate or Crl",
                    head.text
                ),
            ))
        };
        if let Err(e) = r {
            errors.push(e);
            // Resynchronise: skip the rest of the head line and the block.
            cur.rewind(mark);
            while cur.on_same_line() && cur.peek().is_some_and(|t| t.kind != TokenKind::LBrace) {
                cur.next();
            }
            if cur.eat(TokenKind::LBrace) {
                cur.skip_block();
            }
        }
    }
    // A user may mark at most one of its certificates Default.
    let mut owners: Vec<&str> = entries
        .iter()
        .filter(|e| e.default)
        .map(|e| e.owner.as_deref().unwrap_or(""))
        .collect();
    owners.sort_unstable();
    for w in owners.windows(2) {
        if let [a, b] = w
            && a == b
        {
            let who = if a.is_empty() { "the keyring" } else { a };
            errors.push(Diagnostic {
                file: cur.file().clone(),
                pos: lex::Pos { line: 1, col: 1 },
                message: format!("more than one certificate of {who} is marked Default"),
            });
        }
    }
    if errors.is_empty() {
        Ok((entries, crls))
    } else {
        errors.sort_by_key(|d| d.pos);
        errors.dedup();
        Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

fn file_value(cur: &mut Cursor<'_>, what: &str) -> Result<PathBuf, Diagnostic> {
    let v = cur.expect_value_on_line(what)?;
    let p = PathBuf::from(&v.text);
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(cur.error_at(
            v.pos,
            format!(
                "'{}': files must be named relative to the keyring directory, without '..'",
                v.text
            ),
        ));
    }
    Ok(p)
}

fn parse_cert(cur: &mut Cursor<'_>) -> Result<ManifestEntry, Diagnostic> {
    let l = cur.expect_value("a certificate label")?;
    if !label_ok(&l.text) {
        return Err(cur.error_at(
            l.pos,
            format!(
                "a label is 1 to 32 printable ASCII characters (blanks allowed), found {:?}",
                l.text
            ),
        ));
    }
    let lpos = l.pos;
    cur.expect_lbrace()?;
    let mut usage = None;
    let mut file = None;
    let mut key = None;
    let mut owner = None;
    let mut default = false;
    loop {
        let Some(k) = cur.next() else {
            return Err(cur.error_here("expected '}'"));
        };
        if k.kind == TokenKind::RBrace {
            break;
        }
        if k.is_word("Usage") {
            let v = cur.expect_value_on_line("Personal, Site or CertAuth after Usage")?;
            usage = Some(parse_usage(cur, v)?);
        } else if k.is_word("File") {
            file = Some(file_value(cur, "a PEM file after File")?);
        } else if k.is_word("Key") {
            key = Some(file_value(cur, "a PKCS#8 key file after Key")?);
        } else if k.is_word("Owner") {
            let v = cur.expect_value_on_line("a user ID after Owner")?;
            owner = Some(v.text.to_ascii_uppercase());
        } else if k.is_word("Default") {
            default = true;
        } else {
            return Err(cur.error_at(
                k.pos,
                format!(
                    "unknown Certificate parameter '{}'; expected Usage, File, Key, Owner or Default",
                    k.text
                ),
            ));
        }
    }
    let label = l.text.clone();
    let usage =
        usage.ok_or_else(|| cur.error_at(lpos, format!("certificate {label:?} needs Usage")))?;
    let file =
        file.ok_or_else(|| cur.error_at(lpos, format!("certificate {label:?} needs File")))?;
    if usage == Usage::CertAuth && key.is_some() {
        return Err(cur.error_at(
            lpos,
            format!("certificate {label:?}: a CertAuth certificate has no Key in an NSS keyring"),
        ));
    }
    if owner.is_some() && usage != Usage::Personal {
        return Err(cur.error_at(
            lpos,
            format!("certificate {label:?}: only a Personal certificate has an Owner"),
        ));
    }
    Ok(ManifestEntry {
        label,
        usage,
        file,
        key,
        owner,
        default,
    })
}

fn parse_usage(cur: &Cursor<'_>, v: &Token) -> Result<Usage, Diagnostic> {
    if v.is_word("Personal") {
        Ok(Usage::Personal)
    } else if v.is_word("Site") {
        Ok(Usage::Site)
    } else if v.is_word("CertAuth") {
        Ok(Usage::CertAuth)
    } else {
        Err(cur.error_at(
            v.pos,
            format!(
                "Usage must be Personal, Site or CertAuth, found '{}'",
                v.text
            ),
        ))
    }
}

fn parse_crl(cur: &mut Cursor<'_>) -> Result<PathBuf, Diagnostic> {
    let open = cur.expect_lbrace()?.pos;
    let mut file = None;
    loop {
        let Some(k) = cur.next() else {
            return Err(cur.error_here("expected '}'"));
        };
        if k.kind == TokenKind::RBrace {
            break;
        }
        if k.is_word("File") {
            file = Some(file_value(cur, "a CRL file after File")?);
        } else {
            return Err(cur.error_at(
                k.pos,
                format!("unknown Crl parameter '{}'; expected File", k.text),
            ));
        }
    }
    file.ok_or_else(|| cur.error_at(open, "Crl needs File"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_crls() {
        let (e, c) = parse_manifest(
            "k",
            "Certificate \"SYSTEMA STACK1\" {\n Usage Personal\n File a.pem\n Key a.key\n Owner a1s1\n Default\n}\nCertificate CA { Usage CertAuth File ca.pem }\nCrl { File ca.crl }\n",
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].label, "SYSTEMA STACK1");
        assert_eq!(e[0].owner.as_deref(), Some("A1S1"));
        assert!(e[0].default);
        assert_eq!(e[1].usage, Usage::CertAuth);
        assert_eq!(c, vec![PathBuf::from("ca.crl")]);
    }

    #[test]
    fn errors() {
        let e = parse_manifest(
            "k",
            "Certificate A { Usage Personal File /etc/x.pem }\nCertificate B { Usage Nope File b.pem }\nCertificate C { File c.pem }\nCertificate D { Usage CertAuth File d.pem Key d.key }\nCertificate \"a label longer than thirty-two chars\" { }\nCertificate E { Usage Site File ../e.pem }\nThing\nCertificate F { Usage Site File f.pem Owner X }\n",
        )
        .unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 8, "{e}");
        assert!(
            lines[0].starts_with("k:1:37: '/etc/x.pem': files must be named relative"),
            "{e}"
        );
        assert!(lines[1].starts_with("k:2:23: Usage must be"), "{e}");
        assert!(
            lines[2].starts_with("k:3:13: certificate \"C\" needs Usage"),
            "{e}"
        );
        assert!(lines[3].contains("CertAuth certificate has no Key"), "{e}");
        assert!(lines[4].starts_with("k:5:13: a label is 1 to 32"), "{e}");
        assert!(lines[5].contains("'../e.pem'"), "{e}");
        assert!(
            lines[6].starts_with("k:7:1: unknown statement 'Thing'"),
            "{e}"
        );
        assert!(
            lines[7].contains("only a Personal certificate has an Owner"),
            "{e}"
        );
        let dup = parse_manifest(
            "k",
            "Certificate A { Usage CertAuth File a }\nCertificate A { Usage CertAuth File b }",
        )
        .unwrap_err();
        assert!(dup.contains("label \"A\" is used twice"), "{dup}");
        let two_defaults = parse_manifest(
            "k",
            "Certificate A { Usage Personal File a Owner U Default }\nCertificate B { Usage Personal File b Owner u Default }",
        )
        .unwrap_err();
        assert!(
            two_defaults.contains("more than one certificate of U"),
            "{two_defaults}"
        );
    }
}
