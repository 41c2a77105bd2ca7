//! The security database: the SERVAUTH-style authorization profiles
//! (`EZB.NSS.*`, `EZB.NSSCERT.*`, `EZB.NETMGMT.*`, `EZB.IPSECCMD.*`), and —
//! for nssd — the users, groups and PassTicket application keys that z/OS
//! keeps in RACF.
//!
//! ```text
//! User A1S1 { Password "$argon2id$v=19$m=19456,t=2,p=1$…" Group NSSCLNT }
//! Group NSSADMIN { Member ROOT ALICE }
//! Profile EZB.NSS.NSSSYS.*.IPSEC.CERT { Permit NSSCLNT }
//! Profile EZB.NSSCERT.NSSSYS.A1S1_CERT.HOST { Permit A1S1 Access Read }
//! Profile EZB.NETMGMT.NSSSYS.** { Uacc None Permit NSSADMIN }
//! PtktData NSSD { KeyFile /etc/security/nssd.ptkt }
//! ```
//!
//! Rules, as RACF applies them to the SERVAUTH class:
//!
//! - Profile names, user IDs and group names are case-insensitive (stored
//!   upper case). A profile name is qualifiers separated by `.`. Generic
//!   characters (enhanced generic naming): `%` matches one character, `*`
//!   inside a qualifier matches zero or more characters of that qualifier, a
//!   qualifier that is exactly `*` matches one whole qualifier, and `**`
//!   matches zero or more qualifiers.
//! - When several profiles match a resource, the **most specific** one
//!   decides, and only it: a discrete profile beats any generic one; generic
//!   profiles are compared character by character from the left, and at the
//!   first difference a literal character beats `%`, which beats `*`, which
//!   beats the end of the name.
//! - Within the deciding profile: the user's own `Permit` entry if there is
//!   one; otherwise the highest access among the user's groups' entries
//!   (`Permit *` applies to every user); otherwise `Uacc` (default None).
//!   Access levels: None < Read < Update < Control < Alter; the checks need
//!   Read.
//! - No matching profile: no decision ([`Decision::NoProfile`]); the caller
//!   decides (nssd denies; the NMI servers permit uid 0 only).
//! - The certificate label mapping rule for `EZB.NSSCERT.<sys>.<label>.…`
//!   ([`map_label`]): lower case to upper case; blank, `*`, `%` and `&` to `$`.
//!
//! The parser checks syntax and references it can check (a user's groups
//! exist, a name is defined once); password hashes are opaque strings here
//! (nssd verifies them), PassTicket keys are 16-64 bytes of hex.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::iked_conf::{Diagnostics, statements};
use crate::lex::{self, CommentStyle, Cursor, Diagnostic, Pos, Token, TokenKind};

/// RACF access levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessLevel {
    /// No access.
    None,
    /// Read (what every gatekey check requires).
    Read,
    /// Update.
    Update,
    /// Control.
    Control,
    /// Alter.
    Alter,
}

impl AccessLevel {
    fn parse(t: &Token) -> Option<Self> {
        [
            ("None", AccessLevel::None),
            ("Read", AccessLevel::Read),
            ("Update", AccessLevel::Update),
            ("Control", AccessLevel::Control),
            ("Alter", AccessLevel::Alter),
        ]
        .into_iter()
        .find(|(n, _)| t.is_word(n))
        .map(|(_, a)| a)
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessLevel::None => "NONE",
            AccessLevel::Read => "READ",
            AccessLevel::Update => "UPDATE",
            AccessLevel::Control => "CONTROL",
            AccessLevel::Alter => "ALTER",
        })
    }
}

/// A secret byte string (PassTicket key): zeroized on drop, redacted in
/// `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(pub Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// The bytes. Never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// A `User` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user ID (upper case).
    pub name: String,
    /// `Password` — a PHC string (`$argon2id$…`) made by `nssd passwd`; none
    /// = the user cannot log in with a password.
    pub password_hash: Option<String>,
    /// `Group` entries (upper case).
    pub groups: Vec<String>,
    /// `Revoke` — the user cannot log in at all.
    pub revoked: bool,
    /// Where the statement is.
    pub pos: Pos,
}

/// A `Group` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group name (upper case).
    pub name: String,
    /// `Member` entries (upper case).
    pub members: Vec<String>,
    /// Where the statement is.
    pub pos: Pos,
}

/// A `Profile` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The profile name (upper case), possibly generic.
    pub name: String,
    /// `Uacc` (default None).
    pub uacc: AccessLevel,
    /// `Permit id [Access level]` entries by user/group ID (`*` = every
    /// user), upper case.
    pub permits: BTreeMap<String, AccessLevel>,
    /// Where the statement is.
    pub pos: Pos,
}

impl Profile {
    /// True if the name has generic characters.
    pub fn is_generic(&self) -> bool {
        self.name.contains(['*', '%'])
    }
}

/// Where a PassTicket key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `Key hex` coded inline.
    Inline(SecretBytes),
    /// `KeyFile path`: a file holding the key in hex (see [`parse_key_hex`]).
    File(PathBuf),
}

/// A `PtktData appl` statement (RACF PTKTDATA profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtktData {
    /// The application name (upper case, 1-8 characters), `NSSD` for nssd.
    pub appl: String,
    /// The application key.
    pub key: KeySource,
    /// Where the statement is.
    pub pos: Pos,
}

/// The outcome of an authorization check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The deciding profile grants at least the requested access.
    Permit {
        /// The profile that decided.
        profile: String,
    },
    /// The deciding profile does not grant it.
    Deny {
        /// The profile that decided.
        profile: String,
        /// The access the user has.
        access: AccessLevel,
    },
    /// No profile covers the resource.
    NoProfile,
}

impl Decision {
    /// True for [`Decision::Permit`].
    pub fn is_permit(&self) -> bool {
        matches!(self, Decision::Permit { .. })
    }
}

/// A whole, validated security database.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SafDatabase {
    /// Users by ID.
    pub users: BTreeMap<String, User>,
    /// Groups by name.
    pub groups: BTreeMap<String, Group>,
    /// Profiles in the order of the file.
    pub profiles: Vec<Profile>,
    /// PassTicket keys by application.
    pub ptktdata: BTreeMap<String, PtktData>,
}

impl SafDatabase {
    /// The groups `user` belongs to according to this database (User
    /// `Group` entries and Group `Member` entries), upper case, sorted.
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let user = user.to_ascii_uppercase();
        let mut out: Vec<String> = self
            .users
            .get(&user)
            .map(|u| u.groups.clone())
            .unwrap_or_default();
        out.extend(
            self.groups
                .values()
                .filter(|g| g.members.contains(&user))
                .map(|g| g.name.clone()),
        );
        out.sort();
        out.dedup();
        out
    }

    /// The profile that covers `resource` (the most specific match), if any.
    pub fn find_profile(&self, resource: &str) -> Option<&Profile> {
        let resource = resource.to_ascii_uppercase();
        self.profiles
            .iter()
            .filter(|p| generic_match(&p.name, &resource))
            .min_by(|a, b| specificity_cmp(&a.name, &b.name))
    }

    /// The access `user` (member of the database's groups plus
    /// `extra_groups`, e.g. Unix groups) has to `resource`, and the profile
    /// that decided.
    pub fn access(
        &self,
        resource: &str,
        user: &str,
        extra_groups: &[String],
    ) -> Option<(&Profile, AccessLevel)> {
        let p = self.find_profile(resource)?;
        let user = user.to_ascii_uppercase();
        if let Some(a) = p.permits.get(&user) {
            return Some((p, *a));
        }
        let mut groups = self.groups_of(&user);
        groups.extend(extra_groups.iter().map(|g| g.to_ascii_uppercase()));
        groups.push("*".into());
        let best = groups
            .iter()
            .filter_map(|g| p.permits.get(g))
            .max()
            .copied();
        Some((p, best.unwrap_or(p.uacc)))
    }

    /// Check whether `user` has at least `needed` access to `resource`.
    pub fn check(
        &self,
        resource: &str,
        user: &str,
        extra_groups: &[String],
        needed: AccessLevel,
    ) -> Decision {
        match self.access(resource, user, extra_groups) {
            None => Decision::NoProfile,
            Some((p, a)) if a >= needed => Decision::Permit {
                profile: p.name.clone(),
            },
            Some((p, a)) => Decision::Deny {
                profile: p.name.clone(),
                access: a,
            },
        }
    }

    /// Make relative `KeyFile` paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in self.ptktdata.values_mut() {
            if let KeySource::File(f) = &mut p.key
                && f.is_relative()
            {
                *f = base.join(&*f);
            }
        }
    }
}

/// The certificate label mapping rule: lower case → upper case; blank, `*`,
/// `%` and `&` → `$`.
pub fn map_label(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            ' ' | '*' | '%' | '&' => '$',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The profile names gatekey checks.
pub mod names {
    use super::map_label;

    /// `EZB.NSS.<sys>.<client>.IPSEC.CERT` — the certificate service.
    pub fn nss_cert(sys: &str, client: &str) -> String {
        format!("EZB.NSS.{sys}.{client}.IPSEC.CERT").to_ascii_uppercase()
    }

    /// `EZB.NSS.<sys>.<client>.IPSEC.NETMGMT` — the remote management service.
    pub fn nss_netmgmt(sys: &str, client: &str) -> String {
        format!("EZB.NSS.{sys}.{client}.IPSEC.NETMGMT").to_ascii_uppercase()
    }

    /// `EZB.NSSCERT.<sys>.<mappedlabel>.HOST` — sign with / get a PERSONAL or
    /// SITE certificate.
    pub fn nsscert_host(sys: &str, label: &str) -> String {
        format!(
            "EZB.NSSCERT.{}.{}.HOST",
            sys.to_ascii_uppercase(),
            map_label(label)
        )
    }

    /// `EZB.NSSCERT.<sys>.<mappedlabel>.CERTAUTH` — use a CA certificate.
    pub fn nsscert_certauth(sys: &str, label: &str) -> String {
        format!(
            "EZB.NSSCERT.{}.{}.CERTAUTH",
            sys.to_ascii_uppercase(),
            map_label(label)
        )
    }

    /// `EZB.NETMGMT.<sys>.<client>.IPSEC.DISPLAY` or `.CONTROL`.
    pub fn netmgmt_ipsec(sys: &str, client: &str, control: bool) -> String {
        let a = if control { "CONTROL" } else { "DISPLAY" };
        format!("EZB.NETMGMT.{sys}.{client}.IPSEC.{a}").to_ascii_uppercase()
    }

    /// `EZB.NETMGMT.<sys>.<sys>.NSS.DISPLAY` — `ipsec -x`, GET_CLIENTINFO.
    pub fn netmgmt_nss_display(sys: &str) -> String {
        format!("EZB.NETMGMT.{sys}.{sys}.NSS.DISPLAY").to_ascii_uppercase()
    }

    /// `EZB.NETMGMT.<sys>.<sys>.IKED.DISPLAY` — `ipsec -w`, GET_IKENSINFO.
    pub fn netmgmt_iked_display(sys: &str) -> String {
        format!("EZB.NETMGMT.{sys}.{sys}.IKED.DISPLAY").to_ascii_uppercase()
    }

    /// `EZB.IPSECCMD.<sys>.<stack>.DISPLAY` or `.CONTROL` — local `ipsec`.
    pub fn ipseccmd(sys: &str, stack: &str, control: bool) -> String {
        let a = if control { "CONTROL" } else { "DISPLAY" };
        format!("EZB.IPSECCMD.{sys}.{stack}.{a}").to_ascii_uppercase()
    }
}

/// Does the (possibly generic) profile `pattern` cover `resource`? Both
/// upper case.
pub fn generic_match(pattern: &str, resource: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let r: Vec<&str> = resource.split('.').collect();
    match_quals(&p, &r)
}

fn match_quals(p: &[&str], r: &[&str]) -> bool {
    match p.split_first() {
        None => r.is_empty(),
        Some((&"**", rest)) => {
            (0..=r.len()).any(|k| r.get(k..).is_some_and(|tail| match_quals(rest, tail)))
        }
        Some((q, rest)) => match r.split_first() {
            Some((rq, rrest)) => {
                // A qualifier that is exactly `*` matches one whole (non-empty) qualifier.
                let ok = if *q == "*" {
                    !rq.is_empty()
                } else {
                    match_qual(q.as_bytes(), rq.as_bytes())
                };
                ok && match_quals(rest, rrest)
            }
            None => false,
        },
    }
}

fn match_qual(p: &[u8], r: &[u8]) -> bool {
    match p.split_first() {
        None => r.is_empty(),
        Some((b'*', rest)) => {
            (0..=r.len()).any(|k| r.get(k..).is_some_and(|t| match_qual(rest, t)))
        }
        Some((b'%', rest)) => r.split_first().is_some_and(|(_, rr)| match_qual(rest, rr)),
        Some((c, rest)) => r
            .split_first()
            .is_some_and(|(rc, rr)| rc == c && match_qual(rest, rr)),
    }
}

/// Order two matching profile names: `Less` means `a` is more specific.
fn specificity_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn rank(c: Option<u8>) -> u8 {
        match c {
            Some(b'%') => 1,
            Some(b'*') => 2,
            None => 3,
            Some(_) => 0,
        }
    }
    let (ga, gb) = (a.contains(['*', '%']), b.contains(['*', '%']));
    if ga != gb {
        return ga.cmp(&gb);
    }
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let n = ab.len().max(bb.len());
    for i in 0..n {
        let (ca, cb) = (ab.get(i).copied(), bb.get(i).copied());
        if ca != cb {
            let (ra, rb) = (rank(ca), rank(cb));
            if ra != rb {
                return ra.cmp(&rb);
            }
            return ca.cmp(&cb);
        }
    }
    std::cmp::Ordering::Equal
}

/// Parse a PassTicket key given in hex (blanks and newlines ignored; 32-128
/// hex digits = 16-64 bytes). The format of `KeyFile` files, shared with
/// iked's `PassTicketKeyFile`.
pub fn parse_key_hex(text: &str) -> Result<SecretBytes, &'static str> {
    let digits: Zeroizing<Vec<u8>> =
        Zeroizing::new(text.bytes().filter(|b| !b.is_ascii_whitespace()).collect());
    if !digits.len().is_multiple_of(2) || !(32..=128).contains(&digits.len()) {
        return Err("a PassTicket key is 32 to 128 hexadecimal digits (16 to 64 bytes)");
    }
    let mut out = Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for pair in digits.chunks(2) {
        let s = std::str::from_utf8(pair).map_err(|_| "not hexadecimal")?;
        out.push(
            u8::from_str_radix(s, 16).map_err(|_| "a PassTicket key must be hexadecimal digits")?,
        );
    }
    Ok(SecretBytes(out))
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

/// Read and parse `path` (relative `KeyFile`s resolved against its
/// directory). File permissions are the caller's concern.
pub fn load(path: &Path) -> Result<SafDatabase, LoadError> {
    let src = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut db = parse(&path.display().to_string(), &src)?;
    if let Some(dir) = path.parent() {
        db.resolve_paths(dir);
    }
    Ok(db)
}

const ID_MAX: usize = 32;

fn check_id(
    cur: &Cursor<'_>,
    t: &Token,
    what: &str,
    allow_star: bool,
) -> Result<String, Diagnostic> {
    let ok = (allow_star && t.text == "*")
        || (!t.text.is_empty()
            && t.text.len() <= ID_MAX
            && t.text.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$' | b'#' | b'@' | b'.')
            }));
    if ok {
        Ok(t.text.to_ascii_uppercase())
    } else {
        Err(cur.error_at(
            t.pos,
            format!(
                "{what} must be 1-{ID_MAX} letters, digits, '_', '-', '$', '#', '@' or '.', found '{}'",
                t.text
            ),
        ))
    }
}

fn check_profile_name(cur: &Cursor<'_>, t: &Token) -> Result<String, Diagnostic> {
    let name = t.text.to_ascii_uppercase();
    let bad = |m: &str| Err(cur.error_at(t.pos, format!("profile name '{}': {m}", t.text)));
    if name.is_empty() || name.len() > 246 {
        return bad("must be 1 to 246 characters");
    }
    if !name.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return bad("only printable characters without blanks are allowed");
    }
    for q in name.split('.') {
        if q.is_empty() {
            return bad("empty qualifier (two dots in a row, or a dot at either end)");
        }
        if q.contains("**") && q != "**" {
            return bad("'**' must be a whole qualifier");
        }
    }
    Ok(name)
}

/// Parse the text of a security database; `file` labels errors. Every error
/// is reported.
pub fn parse(file: &str, src: &str) -> Result<SafDatabase, Diagnostics> {
    let toks = lex::tokenize(file, src, CommentStyle::Hash).map_err(|d| Diagnostics(vec![d]))?;
    let end = lex::end_pos(src);
    let mut errors = Vec::new();
    let mut db = SafDatabase::default();
    let mut seen_profiles: BTreeMap<String, Pos> = BTreeMap::new();
    let err = |pos: Pos, message: String| Diagnostic {
        file: Arc::from(file),
        pos,
        message,
    };
    for stmt in statements(file, &toks, end, &mut errors) {
        let mut cur = Cursor::new(file, stmt.toks, stmt.end);
        let Some(head) = cur.next() else { continue };
        let r = if head.is_word("User") {
            parse_user(&mut cur, head.pos).and_then(|u| match db.users.get(&u.name) {
                Some(prev) => Err(err(
                    head.pos,
                    format!(
                        "User {} is defined twice (first at line {})",
                        u.name, prev.pos.line
                    ),
                )),
                None => {
                    db.users.insert(u.name.clone(), u);
                    Ok(())
                }
            })
        } else if head.is_word("Group") {
            parse_group(&mut cur, head.pos).and_then(|g| match db.groups.get(&g.name) {
                Some(prev) => Err(err(
                    head.pos,
                    format!(
                        "Group {} is defined twice (first at line {})",
                        g.name, prev.pos.line
                    ),
                )),
                None => {
                    db.groups.insert(g.name.clone(), g);
                    Ok(())
                }
            })
        } else if head.is_word("Profile") {
            parse_profile(&mut cur, head.pos).and_then(|p| match seen_profiles.get(&p.name) {
                Some(prev) => Err(err(
                    head.pos,
                    format!(
                        "Profile {} is defined twice (first at line {})",
                        p.name, prev.line
                    ),
                )),
                None => {
                    seen_profiles.insert(p.name.clone(), p.pos);
                    db.profiles.push(p);
                    Ok(())
                }
            })
        } else if head.is_word("PtktData") {
            parse_ptktdata(&mut cur, head.pos).and_then(|p| match db.ptktdata.get(&p.appl) {
                Some(prev) => Err(err(
                    head.pos,
                    format!(
                        "PtktData {} is defined twice (first at line {})",
                        p.appl, prev.pos.line
                    ),
                )),
                None => {
                    db.ptktdata.insert(p.appl.clone(), p);
                    Ok(())
                }
            })
        } else {
            Err(cur.error_at(
                head.pos,
                format!(
                    "unknown statement '{}'; expected User, Group, Profile or PtktData",
                    head.text
                ),
            ))
        };
        if let Err(e) = r {
            errors.push(e);
        }
    }
    // A user's Group must exist; a user and a group may not share a name.
    for u in db.users.values() {
        for g in &u.groups {
            if !db.groups.contains_key(g) {
                errors.push(err(
                    u.pos,
                    format!("User {} names Group {g}, which is not defined", u.name),
                ));
            }
        }
        if let Some(g) = db.groups.get(&u.name) {
            errors.push(err(
                g.pos,
                format!(
                    "{} is both a User and a Group (line {})",
                    u.name, u.pos.line
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(db)
    } else {
        errors.sort_by_key(|d| d.pos);
        Err(Diagnostics(errors))
    }
}

/// Parse `name {` and return the name token.
fn head_name<'a>(cur: &mut Cursor<'a>, what: &str) -> Result<&'a Token, Diagnostic> {
    let n = cur.expect_value(&format!("a {what} name"))?;
    cur.expect_lbrace()?;
    Ok(n)
}

/// Run `f` for each parameter keyword until `}`.
fn params<'a>(
    cur: &mut Cursor<'a>,
    mut f: impl FnMut(&mut Cursor<'a>, &'a Token) -> Result<(), Diagnostic>,
) -> Result<(), Diagnostic> {
    loop {
        match cur.peek() {
            Some(t) if t.kind == TokenKind::RBrace => {
                cur.next();
                return Ok(());
            }
            Some(_) => {
                let k = cur.expect_value("a parameter")?;
                f(cur, k)?;
            }
            None => return Err(cur.error_here("expected '}'")),
        }
    }
}

fn parse_user(cur: &mut Cursor<'_>, pos: Pos) -> Result<User, Diagnostic> {
    let n = head_name(cur, "user")?;
    let name = check_id(cur, n, "a user ID", false)?;
    let mut u = User {
        name,
        password_hash: None,
        groups: Vec::new(),
        revoked: false,
        pos,
    };
    params(cur, |cur, k| {
        if k.is_word("Password") {
            let v =
                cur.expect_value_on_line("a password hash (from nssd passwd) after Password")?;
            if !v.text.starts_with('$') || v.text.chars().any(char::is_whitespace) {
                return Err(cur.error_at(
                    v.pos,
                    "Password takes a hash made by `nssd passwd` ($argon2id$…), never a clear-text password",
                ));
            }
            u.password_hash = Some(v.text.clone());
        } else if k.is_word("Group") {
            while cur.on_same_line() && cur.peek().is_some_and(Token::is_value) {
                let g = cur.expect_value("a group name")?;
                u.groups.push(check_id(cur, g, "a group name", false)?);
            }
        } else if k.is_word("Revoke") {
            u.revoked = true;
        } else {
            return Err(cur.error_at(
                k.pos,
                format!(
                    "unknown User parameter '{}'; expected Password, Group or Revoke",
                    k.text
                ),
            ));
        }
        Ok(())
    })?;
    Ok(u)
}

fn parse_group(cur: &mut Cursor<'_>, pos: Pos) -> Result<Group, Diagnostic> {
    let n = head_name(cur, "group")?;
    let name = check_id(cur, n, "a group name", false)?;
    let mut g = Group {
        name,
        members: Vec::new(),
        pos,
    };
    params(cur, |cur, k| {
        if k.is_word("Member") {
            let first = cur.expect_value_on_line("a user ID after Member")?;
            g.members.push(check_id(cur, first, "a user ID", false)?);
            while cur.on_same_line() && cur.peek().is_some_and(Token::is_value) {
                let m = cur.expect_value("a user ID")?;
                g.members.push(check_id(cur, m, "a user ID", false)?);
            }
            Ok(())
        } else {
            Err(cur.error_at(
                k.pos,
                format!("unknown Group parameter '{}'; expected Member", k.text),
            ))
        }
    })?;
    Ok(g)
}

fn parse_profile(cur: &mut Cursor<'_>, pos: Pos) -> Result<Profile, Diagnostic> {
    let n = head_name(cur, "profile")?;
    let name = check_profile_name(cur, n)?;
    let mut p = Profile {
        name,
        uacc: AccessLevel::None,
        permits: BTreeMap::new(),
        pos,
    };
    params(cur, |cur, k| {
        if k.is_word("Permit") {
            let id = cur.expect_value_on_line("a user ID, group name or * after Permit")?;
            let id = check_id(cur, id, "a Permit ID", true)?;
            let mut access = AccessLevel::Read;
            if cur.on_same_line() && cur.eat_word("Access") {
                let a = cur.expect_value_on_line("None, Read, Update, Control or Alter")?;
                access = AccessLevel::parse(a).ok_or_else(|| {
                    cur.error_at(
                        a.pos,
                        format!(
                            "Access must be None, Read, Update, Control or Alter, found '{}'",
                            a.text
                        ),
                    )
                })?;
            }
            p.permits.insert(id, access);
        } else if k.is_word("Uacc") {
            let a = cur.expect_value_on_line("None, Read, Update, Control or Alter after Uacc")?;
            p.uacc = AccessLevel::parse(a).ok_or_else(|| {
                cur.error_at(
                    a.pos,
                    format!(
                        "Uacc must be None, Read, Update, Control or Alter, found '{}'",
                        a.text
                    ),
                )
            })?;
        } else {
            return Err(cur.error_at(
                k.pos,
                format!(
                    "unknown Profile parameter '{}'; expected Permit or Uacc",
                    k.text
                ),
            ));
        }
        Ok(())
    })?;
    Ok(p)
}

fn parse_ptktdata(cur: &mut Cursor<'_>, pos: Pos) -> Result<PtktData, Diagnostic> {
    let n = head_name(cur, "application")?;
    if n.text.is_empty() || n.text.len() > 8 || !n.text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(cur.error_at(
            n.pos,
            format!(
                "a PtktData application name is 1-8 letters or digits, found '{}'",
                n.text
            ),
        ));
    }
    let appl = n.text.to_ascii_uppercase();
    let mut key = None;
    params(cur, |cur, k| {
        if k.is_word("Key") {
            let v = cur.expect_value_on_line("the key in hex after Key")?;
            key = Some(KeySource::Inline(
                parse_key_hex(&v.text).map_err(|m| cur.error_at(v.pos, m))?,
            ));
        } else if k.is_word("KeyFile") {
            let v = cur.expect_value_on_line("a file name after KeyFile")?;
            key = Some(KeySource::File(PathBuf::from(&v.text)));
        } else {
            return Err(cur.error_at(
                k.pos,
                format!(
                    "unknown PtktData parameter '{}'; expected Key or KeyFile",
                    k.text
                ),
            ));
        }
        Ok(())
    })?;
    let key =
        key.ok_or_else(|| cur.error_at(pos, format!("PtktData {appl} needs Key or KeyFile")))?;
    Ok(PtktData { appl, key, pos })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(src: &str) -> SafDatabase {
        parse("nssd.saf", src).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn label_mapping_is_exactly_as_documented() {
        assert_eq!(map_label("CERTIFICATE_123"), "CERTIFICATE_123");
        assert_eq!(map_label("certificate_123"), "CERTIFICATE_123");
        assert_eq!(map_label("Certificate_123"), "CERTIFICATE_123");
        for l in [
            "CERTIFICATE 123",
            "Certificate%123",
            "certificate*123",
            "CERTIFICATE&123",
            "CERTIFICATE$123",
        ] {
            assert_eq!(map_label(l), "CERTIFICATE$123", "{l}");
        }
        assert_eq!(
            names::nsscert_host("vic012", "nsclient3"),
            "EZB.NSSCERT.VIC012.NSCLIENT3.HOST"
        );
        assert_eq!(
            names::nss_cert("mvs093", "client2"),
            "EZB.NSS.MVS093.CLIENT2.IPSEC.CERT"
        );
        assert_eq!(
            names::netmgmt_nss_display("s"),
            "EZB.NETMGMT.S.S.NSS.DISPLAY"
        );
        assert_eq!(
            names::netmgmt_ipsec("S", "c", true),
            "EZB.NETMGMT.S.C.IPSEC.CONTROL"
        );
        assert_eq!(
            names::nsscert_certauth("S", "my ca"),
            "EZB.NSSCERT.S.MY$CA.CERTAUTH"
        );
    }

    #[test]
    fn generic_matching() {
        let m = generic_match;
        assert!(m("EZB.NSS.S.C.IPSEC.CERT", "EZB.NSS.S.C.IPSEC.CERT"));
        assert!(!m("EZB.NSS.S.C.IPSEC.CERT", "EZB.NSS.S.C.IPSEC.NETMGMT"));
        assert!(m(
            "EZB.NSS.S.*.IPSEC.CERT",
            "EZB.NSS.S.ANY_CLIENT.IPSEC.CERT"
        ));
        assert!(!m("EZB.NSS.S.*.IPSEC.CERT", "EZB.NSS.S.A.B.IPSEC.CERT"));
        assert!(m("EZB.NSS.**", "EZB.NSS.S.C.IPSEC.CERT"));
        assert!(m("EZB.NSS.**", "EZB.NSS"));
        assert!(m("**", "ANYTHING.AT.ALL"));
        assert!(m("EZB.**.CERT", "EZB.NSS.S.C.IPSEC.CERT"));
        assert!(!m("EZB.**.CERT", "EZB.NSS.S.C.IPSEC.NETMGMT"));
        assert!(m(
            "EZB.NSS.S.CLIENT*.IPSEC.CERT",
            "EZB.NSS.S.CLIENT.IPSEC.CERT"
        ));
        assert!(m(
            "EZB.NSS.S.CLIENT*.IPSEC.CERT",
            "EZB.NSS.S.CLIENT42.IPSEC.CERT"
        ));
        assert!(!m(
            "EZB.NSS.S.CLIENT*.IPSEC.CERT",
            "EZB.NSS.S.CLIEN.IPSEC.CERT"
        ));
        assert!(m(
            "EZB.NSS.S.CLIENT%.IPSEC.CERT",
            "EZB.NSS.S.CLIENT4.IPSEC.CERT"
        ));
        assert!(!m(
            "EZB.NSS.S.CLIENT%.IPSEC.CERT",
            "EZB.NSS.S.CLIENT42.IPSEC.CERT"
        ));
        assert!(!m("EZB.NSS.S.*", "EZB.NSS.S"));
        // A label mapped to '$' is literal in the resource.
        assert!(m("EZB.NSSCERT.S.A$B.HOST", "EZB.NSSCERT.S.A$B.HOST"));
    }

    #[test]
    fn most_specific_profile_decides() {
        let d = db(r#"
            User A1S1 { Password "$argon2id$x" }
            User B2 { }
            Profile EZB.NSS.** { Uacc Read }
            Profile EZB.NSS.S.*.IPSEC.CERT { Permit B2 }
            Profile EZB.NSS.S.C1.IPSEC.CERT { Permit A1S1 }
            Profile EZB.NSS.S.C%.IPSEC.CERT { Permit B2 Access None }
        "#);
        let f = |r: &str| d.find_profile(r).map(|p| p.name.clone());
        assert_eq!(
            f("EZB.NSS.S.C1.IPSEC.CERT").as_deref(),
            Some("EZB.NSS.S.C1.IPSEC.CERT")
        );
        assert_eq!(
            f("EZB.NSS.S.C2.IPSEC.CERT").as_deref(),
            Some("EZB.NSS.S.C%.IPSEC.CERT")
        );
        assert_eq!(
            f("EZB.NSS.S.XY.IPSEC.CERT").as_deref(),
            Some("EZB.NSS.S.*.IPSEC.CERT")
        );
        assert_eq!(
            f("EZB.NSS.S.XY.IPSEC.NETMGMT").as_deref(),
            Some("EZB.NSS.**")
        );
        assert_eq!(f("EZB.NETMGMT.S.S.NSS.DISPLAY"), None);
        // Only the deciding profile counts: B2 is permitted by the '*' profile
        // but C2's more specific profile says None.
        assert!(
            d.check("EZB.NSS.S.XY.IPSEC.CERT", "b2", &[], AccessLevel::Read)
                .is_permit()
        );
        assert_eq!(
            d.check("EZB.NSS.S.C2.IPSEC.CERT", "B2", &[], AccessLevel::Read),
            Decision::Deny {
                profile: "EZB.NSS.S.C%.IPSEC.CERT".into(),
                access: AccessLevel::None
            }
        );
        assert!(
            !d.check("EZB.NSS.S.C1.IPSEC.CERT", "B2", &[], AccessLevel::Read)
                .is_permit()
        );
        assert!(
            d.check("EZB.NSS.S.C1.IPSEC.CERT", "a1s1", &[], AccessLevel::Read)
                .is_permit()
        );
        // Uacc Read applies to anyone.
        assert!(
            d.check(
                "EZB.NSS.S.C1.IPSEC.NETMGMT",
                "nobody",
                &[],
                AccessLevel::Read
            )
            .is_permit()
        );
        assert!(
            !d.check(
                "EZB.NSS.S.C1.IPSEC.NETMGMT",
                "nobody",
                &[],
                AccessLevel::Update
            )
            .is_permit()
        );
        assert_eq!(
            d.check(
                "EZB.NETMGMT.S.S.NSS.DISPLAY",
                "A1S1",
                &[],
                AccessLevel::Read
            ),
            Decision::NoProfile
        );
    }

    #[test]
    fn permit_by_user_group_and_star() {
        let d = db(r#"
            User A1S1 { Group CLIENTS }
            User ALICE { }
            Group CLIENTS { Member B2 }
            Group ADMINS { Member ALICE }
            Profile EZB.NSS.S.*.IPSEC.CERT { Permit CLIENTS }
            Profile EZB.NETMGMT.S.** { Permit ADMINS Access Control  Permit ALICE Access None }
            Profile EZB.NSSCERT.S.CA.CERTAUTH { Permit * }
        "#);
        assert!(
            d.check("EZB.NSS.S.X.IPSEC.CERT", "A1S1", &[], AccessLevel::Read)
                .is_permit()
        );
        assert!(
            d.check("EZB.NSS.S.X.IPSEC.CERT", "b2", &[], AccessLevel::Read)
                .is_permit()
        );
        assert!(
            !d.check("EZB.NSS.S.X.IPSEC.CERT", "C3", &[], AccessLevel::Read)
                .is_permit()
        );
        // External (Unix) groups.
        assert!(
            d.check(
                "EZB.NSS.S.X.IPSEC.CERT",
                "C3",
                &["clients".into()],
                AccessLevel::Read
            )
            .is_permit()
        );
        // The user's own entry wins over the group's.
        assert!(
            !d.check(
                "EZB.NETMGMT.S.C.IPSEC.DISPLAY",
                "ALICE",
                &[],
                AccessLevel::Read
            )
            .is_permit()
        );
        assert!(
            d.check(
                "EZB.NETMGMT.S.C.IPSEC.DISPLAY",
                "BOB",
                &["ADMINS".into()],
                AccessLevel::Read
            )
            .is_permit()
        );
        assert!(
            d.check(
                "EZB.NSSCERT.S.CA.CERTAUTH",
                "anyone",
                &[],
                AccessLevel::Read
            )
            .is_permit()
        );
        assert_eq!(d.groups_of("a1s1"), vec!["CLIENTS".to_string()]);
    }

    #[test]
    fn ptktdata_keys() {
        let d = db(
            "PtktData nssd { Key \"00112233445566778899aabbccddeeff 00112233445566778899aabbccddeeff\" }\nPtktData OTHER { KeyFile other.key }",
        );
        let p = d.ptktdata.get("NSSD").unwrap();
        match &p.key {
            KeySource::Inline(k) => {
                assert_eq!(k.expose().len(), 32);
                assert_eq!(format!("{k:?}"), "SecretBytes(<redacted>)");
            }
            other => panic!("{other:?}"),
        }
        let mut d2 = d.clone();
        d2.resolve_paths(Path::new("/etc/security"));
        assert_eq!(
            d2.ptktdata.get("OTHER").unwrap().key,
            KeySource::File("/etc/security/other.key".into())
        );
        assert!(parse_key_hex("0011").is_err());
        assert!(parse_key_hex(&"zz".repeat(16)).is_err());
        assert_eq!(parse_key_hex(&"ab".repeat(64)).unwrap().expose().len(), 64);
        assert!(parse_key_hex(&"ab".repeat(65)).is_err());
    }

    #[test]
    fn errors_are_located() {
        let e = parse(
            "nssd.saf",
            "User A { Password clear }\nUser C { }\nUser C { }\nUser B { Group NOPE }\nProfile A..B { }\nProfile X { Permit Y Access Lots }\nPtktData TOOLONGNAME { Key 00 }\nPtktData P { }\nThing x { }\nProfile EZB.A**.B { }\n",
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 9, "{e}");
        assert!(
            lines[0].starts_with("nssd.saf:1:19: Password takes a hash"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("nssd.saf:3:1: User C is defined twice (first at line 2)"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("nssd.saf:4:1: User B names Group NOPE"),
            "{e}"
        );
        assert!(
            lines[3].starts_with("nssd.saf:5:9: profile name 'A..B': empty qualifier"),
            "{e}"
        );
        assert!(lines[4].starts_with("nssd.saf:6:29: Access must be"), "{e}");
        assert!(
            lines[5].starts_with("nssd.saf:7:10: a PtktData application name"),
            "{e}"
        );
        assert!(
            lines[6].starts_with("nssd.saf:8:1: PtktData P needs Key or KeyFile"),
            "{e}"
        );
        assert!(
            lines[7].starts_with("nssd.saf:9:1: unknown statement 'Thing'"),
            "{e}"
        );
        assert!(lines[8].contains("'**' must be a whole qualifier"), "{e}");
    }
}
