//! The TCP/IP profile's `IPSEC … ENDIPSEC` block: a stack's default IP
//! filter policy (z/OS `IPSECRule` / `IPSEC6Rule`), loaded into the eBPF
//! filter at boot by `gatekey-filter`.
//!
//! ```text
//! IPSEC [DVIPsec [DVLOCALFLTR]] [LOGDISable | LOGENable] [NOLOGImplicit | LOGImplicit]
//!   IPSECRule  src dst [NOLOG | LOG] [protocol] [ROUTING LOCAL | ROUTED [FRAGMENTSonly] | EITHER]
//!              [SECCLASS n] [DIRECtion BIDIrectional | INBound | OUTBound | INBConnect | OUTBConnect]
//!   IPSEC6Rule …the same, IPv6 addresses, ICMPv6 instead of ICMP…
//! ENDIPSEC
//! src, dst  := * | address | address/prefix_length | address - address
//! protocol  := PROTOcol * | [PROTOcol] TCP|6 | UDP|17 [SRCPort *|n|n m] [DESTport *|n|n m]
//!            | [PROTOcol] ICMP|1 | ICMPv6|58 [TYPE *|n|n m] [CODE *|n|n m]
//!            | [PROTOcol] OSPF|89 [TYPE *|n] | PROTOcol number
//! ```
//!
//! Keywords are case-insensitive and may be abbreviated to their capitalised
//! part (`LOGEN`, `PROTO`, `DIREC INB`). Parameters must come in the order
//! shown. Defaults: `LOGDISable`, `NOLOGImplicit`, `NOLOG`, all protocols,
//! `ROUTING LOCAL`, `SECCLASS 0` (any), `DIRECtion BIDIrectional`. `;` starts
//! a comment. Statements outside the block are other profile statements and
//! are ignored; only the first `IPSEC` block is honoured (a notice names the
//! others). Rules are named `SYSDEFAULTRULE.n` in order. After the rules
//! comes the implicit deny (`SYSDEFAULTDENYRULE`), which the dataplane adds.

use std::path::Path;
use std::sync::Arc;

use crate::filter::{
    AddrRange, ConnectDir, Direction, DiscardAction, Family, FilterAction, FilterRule, FilterSet,
    L4Match, LogMode, PortRange, Routing, proto,
};
use crate::iked_conf::{Diagnostics, LoadError};
use crate::lex::{self, CommentStyle, Diagnostic, Pos, Token, TokenKind};

/// The name prefix of the profile's rules (`SYSDEFAULTRULE.1`, …).
pub const RULE_NAME_PREFIX: &str = "SYSDEFAULTRULE";

/// The parsed default IP filter policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The rules and set-wide logging switches.
    pub set: FilterSet,
    /// `DVIPsec` was given (accepted; dynamic VIPAs do not exist on Linux).
    pub dvipsec: bool,
    /// `DVLOCALFLTR` was given (accepted, no effect).
    pub dvlocalfltr: bool,
    /// Where the honoured `IPSEC` keyword is.
    pub pos: Pos,
    /// Informational notices (ignored later blocks, accepted no-op keywords).
    pub notices: Vec<Diagnostic>,
}

/// Read and parse a profile file.
pub fn load(path: &Path) -> Result<Profile, LoadError> {
    let src = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&path.display().to_string(), &src)?)
}

/// Parse the text of a profile; `file` labels errors. Fails if there is no
/// `IPSEC … ENDIPSEC` block or the block has any error (all errors found are
/// returned, in order).
pub fn parse(file: &str, src: &str) -> Result<Profile, Diagnostics> {
    let toks =
        lex::tokenize(file, src, CommentStyle::Semicolon).map_err(|d| Diagnostics(vec![d]))?;
    let mut p = Parser {
        file: Arc::from(file),
        toks: &toks,
        next: 0,
        end: lex::end_pos(src),
        errors: Vec::new(),
    };
    let mut notices = Vec::new();
    let mut first: Option<Profile> = None;
    while let Some(t) = p.peek() {
        if t.kind == TokenKind::Word && t.text.eq_ignore_ascii_case("IPSEC") {
            p.next += 1;
            if first.is_none() {
                first = Some(p.block(t.pos));
            } else {
                notices.push(p.error_at(
                    t.pos,
                    "only the first IPSEC block is honoured; this one is ignored",
                ));
                p.skip_to_endipsec();
            }
        } else {
            // Another profile statement: not ours.
            p.next += 1;
        }
    }
    if !p.errors.is_empty() {
        return Err(Diagnostics(p.errors));
    }
    let Some(mut profile) = first else {
        return Err(Diagnostics(vec![Diagnostic {
            file: p.file.clone(),
            pos: Pos { line: 1, col: 1 },
            message: "no IPSEC … ENDIPSEC block found; the default IP filter policy must be \
                      written as IPSEC, IPSECRule/IPSEC6Rule lines, ENDIPSEC"
                .into(),
        }]));
    };
    profile.notices.extend(notices);
    Ok(profile)
}

struct Parser<'a> {
    file: Arc<str>,
    toks: &'a [Token],
    next: usize,
    end: Pos,
    errors: Vec<Diagnostic>,
}

/// The rule-level keywords, in the order they must appear (for messages).
const ORDER_HINT: &str = "src dst [LOG|NOLOG] [PROTOcol …] [ROUTING …] [SECCLASS n] [DIRECtion …]";

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.next)
    }

    fn pos(&self) -> Pos {
        self.peek().map_or(self.end, |t| t.pos)
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            Some(t) => format!("'{}'", t.text),
            None => "end of file".into(),
        }
    }

    fn error_at(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            pos,
            message: message.into(),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> Diagnostic {
        self.error_at(self.pos(), message)
    }

    fn eat_keyword(&mut self, pattern: &str) -> Option<&'a Token> {
        let t = self.peek().filter(|t| t.is_keyword(pattern))?;
        self.next += 1;
        Some(t)
    }

    fn at_rule_boundary(&self) -> bool {
        self.peek().is_none_or(|t| {
            t.is_keyword("IPSECRule") || t.is_keyword("IPSEC6Rule") || t.is_word("ENDIPSEC")
        })
    }

    fn skip_to_endipsec(&mut self) {
        while let Some(t) = self.peek() {
            self.next += 1;
            if t.is_word("ENDIPSEC") {
                return;
            }
        }
    }

    /// Parse after the `IPSEC` keyword up to and including `ENDIPSEC`.
    fn block(&mut self, start: Pos) -> Profile {
        let mut profile = Profile {
            set: FilterSet::default(),
            dvipsec: false,
            dvlocalfltr: false,
            pos: start,
            notices: Vec::new(),
        };
        if let Some(t) = self.eat_keyword("DVIPsec") {
            profile.dvipsec = true;
            profile.notices.push(self.error_at(
                t.pos,
                "DVIPsec is accepted but has no effect (there are no dynamic VIPAs on Linux)",
            ));
            if self.eat_keyword("DVLOCALFLTR").is_some() {
                profile.dvlocalfltr = true;
            }
        }
        if self.eat_keyword("LOGENable").is_some() {
            profile.set.log_enabled = true;
        } else if self.eat_keyword("LOGDISable").is_some() {
            profile.set.log_enabled = false;
        }
        if self.eat_keyword("LOGImplicit").is_some() {
            profile.set.log_implicit = true;
        } else if self.eat_keyword("NOLOGImplicit").is_some() {
            profile.set.log_implicit = false;
        }
        let mut n = 0usize;
        loop {
            let Some(t) = self.peek() else {
                self.errors.push(self.error_at(
                    start,
                    "this IPSEC block has no ENDIPSEC (end of file reached)",
                ));
                return profile;
            };
            if t.is_word("ENDIPSEC") {
                self.next += 1;
                return profile;
            }
            let family = if t.is_keyword("IPSECRule") {
                Family::V4
            } else if t.is_keyword("IPSEC6Rule") {
                Family::V6
            } else {
                let hint = if [
                    "LOGENable",
                    "LOGDISable",
                    "LOGImplicit",
                    "NOLOGImplicit",
                    "DVIPsec",
                ]
                .iter()
                .any(|k| t.is_keyword(k))
                {
                    format!(
                        "'{}' is out of order: IPSEC parameters must be given as \
                         IPSEC [DVIPsec [DVLOCALFLTR]] [LOGDISable|LOGENable] \
                         [NOLOGImplicit|LOGImplicit], before the first rule",
                        t.text
                    )
                } else {
                    format!(
                        "expected IPSECRule, IPSEC6Rule or ENDIPSEC, found '{}'",
                        t.text
                    )
                };
                self.errors.push(self.error_at(t.pos, hint));
                self.next += 1;
                while !self.at_rule_boundary() {
                    self.next += 1;
                }
                continue;
            };
            self.next += 1;
            n += 1;
            let name = format!("{RULE_NAME_PREFIX}.{n}");
            match self.rule(name, t, family) {
                Ok(rule) => profile.set.rules.push(rule),
                Err(e) => {
                    self.errors.push(e);
                    while !self.at_rule_boundary() {
                        self.next += 1;
                    }
                }
            }
        }
    }

    fn rule(&mut self, name: String, kw: &Token, family: Family) -> Result<FilterRule, Diagnostic> {
        let rule_kw = if family == Family::V4 {
            "IPSECRule"
        } else {
            "IPSEC6Rule"
        };
        let src = self.address(family, rule_kw, "source")?;
        let dst = self.address(family, rule_kw, "destination")?;
        let mut rule = FilterRule {
            name,
            pos: kw.pos,
            family,
            src,
            dst,
            protocol: None,
            l4: L4Match::Any,
            routing: Routing::Local,
            fragments_only: false,
            secclass: 0,
            direction: Direction::Bidirectional,
            connect: None,
            action: FilterAction::Permit,
            log: LogMode::None,
            discard: DiscardAction::Silent,
        };
        if self.eat_keyword("LOG").is_some() {
            rule.log = LogMode::All;
        } else {
            self.eat_keyword("NOLOG");
        }
        self.protocol(&mut rule, rule_kw)?;
        if let Some(t) = self.eat_keyword("ROUTING") {
            if self.eat_keyword("LOCAL").is_some() {
                rule.routing = Routing::Local;
            } else if self.eat_keyword("ROUTED").is_some() {
                rule.routing = Routing::Routed;
                if self.eat_keyword("FRAGMENTSonly").is_some() {
                    rule.fragments_only = true;
                }
            } else if self.eat_keyword("EITHER").is_some() {
                rule.routing = Routing::Either;
            } else {
                return Err(self.error_here(format!(
                    "expected LOCAL, ROUTED or EITHER after {}, found {}",
                    t.text,
                    self.describe_next()
                )));
            }
        }
        if self.eat_keyword("SECCLASS").is_some() {
            rule.secclass = self.number("SECCLASS", 0, 255)?;
        }
        if let Some(t) = self.eat_keyword("DIRECtion") {
            if self.eat_keyword("BIDIrectional").is_some() {
                rule.direction = Direction::Bidirectional;
            } else if self.eat_keyword("INBound").is_some() {
                rule.direction = Direction::Inbound;
            } else if self.eat_keyword("OUTBound").is_some() {
                rule.direction = Direction::Outbound;
            } else if let Some(c) = self
                .eat_keyword("INBConnect")
                .map(|c| (c, ConnectDir::Inbound))
                .or_else(|| {
                    self.eat_keyword("OUTBConnect")
                        .map(|c| (c, ConnectDir::Outbound))
                })
            {
                if rule.protocol.is_some_and(|p| p != proto::TCP) {
                    return Err(self.error_at(
                        c.0.pos,
                        format!("{} applies only to TCP (or all-protocol) rules", c.0.text),
                    ));
                }
                rule.direction = Direction::Bidirectional;
                rule.connect = Some(c.1);
            } else {
                return Err(self.error_here(format!(
                    "expected BIDIrectional, INBound, OUTBound, INBConnect or OUTBConnect after {}, found {}",
                    t.text,
                    self.describe_next()
                )));
            }
        }
        if !self.at_rule_boundary() {
            let t = self.peek();
            let known = t.is_some_and(|t| {
                [
                    "LOG",
                    "NOLOG",
                    "PROTOcol",
                    "TCP",
                    "UDP",
                    "ICMP",
                    "ICMPV6",
                    "OSPF",
                    "SRCPort",
                    "DESTport",
                    "TYPE",
                    "CODE",
                    "ROUTING",
                    "SECCLASS",
                    "DIRECtion",
                ]
                .iter()
                .any(|k| t.is_keyword(k))
            });
            let header = t.is_some_and(|t| {
                [
                    "LOGENable",
                    "LOGDISable",
                    "LOGImplicit",
                    "NOLOGImplicit",
                    "DVIPsec",
                    "DVLOCALFLTR",
                ]
                .iter()
                .any(|k| t.is_keyword(k))
            });
            let msg = if header {
                format!(
                    "{} is out of order: IPSEC parameters (DVIPsec, LOGENable/LOGDISable, \
                     LOGImplicit/NOLOGImplicit) come right after IPSEC, before the first rule",
                    self.describe_next()
                )
            } else if known {
                format!(
                    "{} is out of order or repeated: {rule_kw} parameters must be in the order {ORDER_HINT}",
                    self.describe_next()
                )
            } else {
                format!(
                    "unexpected {} in {rule_kw}; expected {ORDER_HINT}, then the next IPSECRule, IPSEC6Rule or ENDIPSEC",
                    self.describe_next()
                )
            };
            return Err(self.error_here(msg));
        }
        Ok(rule)
    }

    /// `*`, `a`, `a/len`, `a - b` (or `a-b`).
    fn address(
        &mut self,
        family: Family,
        rule_kw: &str,
        which: &str,
    ) -> Result<Vec<AddrRange>, Diagnostic> {
        let what = format!(
            "a {which} address for {rule_kw} ({} address, address/prefix_length, address - address or *)",
            family
        );
        let Some(t) = self
            .peek()
            .filter(|t| t.is_value() && !self.at_rule_boundary())
        else {
            return Err(self.error_here(format!("expected {what}, found {}", self.describe_next())));
        };
        self.next += 1;
        if t.text == "*" {
            return Ok(Vec::new());
        }
        if let Some((a, len)) = t.text.split_once('/') {
            let addr = self.parse_addr(a, t.pos, family, rule_kw, &what)?;
            let max = if family == Family::V4 { 32 } else { 128 };
            let range = len
                .parse::<u8>()
                .ok()
                .and_then(|l| AddrRange::prefix(addr, l))
                .ok_or_else(|| {
                    self.error_at(
                        t.pos,
                        format!(
                            "prefix length must be 0 to {max}, found '{len}' in '{}'",
                            t.text
                        ),
                    )
                })?;
            return Ok(vec![range]);
        }
        // `a-b` in one token, or `a - b` in three.
        let (lo_text, hi) = if let Some((a, b)) = t.text.split_once('-') {
            (a.to_owned(), Some((b.to_owned(), t.pos)))
        } else if self.peek().is_some_and(|d| d.is_word("-")) {
            self.next += 1;
            let Some(b) = self
                .peek()
                .filter(|b| b.is_value() && !self.at_rule_boundary())
            else {
                return Err(self.error_here(format!(
                    "expected the last address of the range after '-', found {}",
                    self.describe_next()
                )));
            };
            self.next += 1;
            (t.text.clone(), Some((b.text.clone(), b.pos)))
        } else {
            (t.text.clone(), None)
        };
        let lo = self.parse_addr(&lo_text, t.pos, family, rule_kw, &what)?;
        match hi {
            None => Ok(vec![AddrRange::host(lo)]),
            Some((hi_text, pos)) => {
                let hi = self.parse_addr(&hi_text, pos, family, rule_kw, &what)?;
                AddrRange::range(lo, hi).map(|r| vec![r]).ok_or_else(|| {
                    self.error_at(
                        t.pos,
                        format!(
                            "the range {lo} - {hi} must run from the lower to the higher address"
                        ),
                    )
                })
            }
        }
    }

    fn parse_addr(
        &self,
        s: &str,
        pos: Pos,
        family: Family,
        rule_kw: &str,
        what: &str,
    ) -> Result<std::net::IpAddr, Diagnostic> {
        let a: std::net::IpAddr = s
            .parse()
            .map_err(|_| self.error_at(pos, format!("expected {what}, found '{s}'")))?;
        if Family::of(a) != family {
            return Err(self.error_at(
                pos,
                format!(
                    "{rule_kw} takes {family} addresses, found '{s}' ({})",
                    Family::of(a)
                ),
            ));
        }
        Ok(a)
    }

    fn number(&mut self, what: &str, min: u32, max: u32) -> Result<u8, Diagnostic> {
        let v = self.number_u16(what, min, max)?;
        u8::try_from(v).map_err(|_| self.error_here(format!("{what} is out of range")))
    }

    fn number_u16(&mut self, what: &str, min: u32, max: u32) -> Result<u16, Diagnostic> {
        let Some(t) = self.peek().filter(|t| t.is_value()) else {
            return Err(self.error_here(format!(
                "expected {what} (a number from {min} to {max}), found {}",
                self.describe_next()
            )));
        };
        self.next += 1;
        let v = lex::parse_u32_in(&self.file, t, what, min, max)?;
        u16::try_from(v).map_err(|_| self.error_at(t.pos, format!("{what} is out of range")))
    }

    /// `*` (→ the full range), `n`, or `n m`.
    fn range(&mut self, what: &str, max: u16, any: PortRange) -> Result<PortRange, Diagnostic> {
        if self.peek().is_some_and(|t| t.text == "*") {
            self.next += 1;
            return Ok(any);
        }
        let lo = self.number_u16(what, 0, u32::from(max))?;
        let hi = if self.peek().is_some_and(|t| {
            t.kind == TokenKind::Word && t.text.bytes().all(|b| b.is_ascii_digit())
        }) {
            let start = self.pos();
            let hi = self.number_u16(what, 0, u32::from(max))?;
            if hi < lo {
                return Err(self.error_at(
                    start,
                    format!("{what} range {lo} {hi} must run from the lower to the higher value"),
                ));
            }
            hi
        } else {
            lo
        };
        Ok(PortRange { lo, hi })
    }

    fn protocol(&mut self, rule: &mut FilterRule, rule_kw: &str) -> Result<(), Diagnostic> {
        let explicit = self.eat_keyword("PROTOcol");
        let Some(t) = self.peek() else {
            return match explicit {
                Some(_) => {
                    Err(self.error_here("expected a protocol after PROTOcol, found end of file"))
                }
                None => Ok(()),
            };
        };
        let named = |t: &Token| -> Option<u8> {
            if t.is_word("TCP") {
                Some(proto::TCP)
            } else if t.is_word("UDP") {
                Some(proto::UDP)
            } else if t.is_word("ICMP") {
                Some(proto::ICMP)
            } else if t.is_word("ICMPv6") {
                Some(proto::ICMPV6)
            } else if t.is_word("OSPF") {
                Some(proto::OSPF)
            } else {
                None
            }
        };
        let number: Option<u8> = if let Some(p) = named(t) {
            self.next += 1;
            Some(p)
        } else if explicit.is_some() {
            if t.text == "*" {
                self.next += 1;
                None
            } else if t.kind == TokenKind::Word && t.text.bytes().all(|b| b.is_ascii_digit()) {
                Some(self.number("protocol number", 0, 255)?)
            } else {
                return Err(self.error_here(format!(
                    "expected a protocol after PROTOcol (*, TCP, UDP, ICMP, ICMPv6, OSPF or a number 0-255), found {}",
                    self.describe_next()
                )));
            }
        } else {
            // No protocol given: all protocols.
            return Ok(());
        };
        match (number, rule.family) {
            (Some(proto::ICMP), Family::V6) => {
                return Err(self.error_at(
                    t.pos,
                    "IPSEC6Rule filters ICMPv6 (58), not ICMP (1); write ICMPv6",
                ));
            }
            (Some(proto::ICMPV6), Family::V4) => {
                return Err(self.error_at(
                    t.pos,
                    "IPSECRule filters ICMP (1), not ICMPv6 (58); use IPSEC6Rule for ICMPv6",
                ));
            }
            _ => {}
        }
        rule.protocol = number;
        match number {
            Some(proto::TCP | proto::UDP) => {
                let mut src = PortRange::ANY;
                let mut dst = PortRange::ANY;
                if self.eat_keyword("SRCPort").is_some() {
                    src = self.range("SRCPort", 65535, PortRange::ANY)?;
                }
                if self.eat_keyword("DESTport").is_some() {
                    dst = self.range("DESTport", 65535, PortRange::ANY)?;
                }
                rule.l4 = L4Match::Ports { src, dst };
            }
            Some(proto::ICMP | proto::ICMPV6) => {
                let mut types = PortRange::ANY_U8;
                let mut codes = PortRange::ANY_U8;
                if self.eat_keyword("TYPE").is_some() {
                    types = self.range("TYPE", 255, PortRange::ANY_U8)?;
                }
                if self.eat_keyword("CODE").is_some() {
                    codes = self.range("CODE", 255, PortRange::ANY_U8)?;
                }
                rule.l4 = L4Match::Icmp { types, codes };
            }
            Some(proto::OSPF) => {
                let mut types = PortRange::ANY_U8;
                if self.eat_keyword("TYPE").is_some() {
                    types = if self.peek().is_some_and(|t| t.text == "*") {
                        self.next += 1;
                        PortRange::ANY_U8
                    } else {
                        PortRange::single(u16::from(self.number("OSPF TYPE", 1, 5)?))
                    };
                }
                rule.l4 = L4Match::Ospf { types };
            }
            _ => {}
        }
        if let Some(t) = self.peek()
            && ["SRCPort", "DESTport", "TYPE", "CODE"]
                .iter()
                .any(|k| t.is_keyword(k))
        {
            let proto_name = number.map_or_else(|| "*".to_owned(), |n| n.to_string());
            return Err(self.error_at(
                t.pos,
                format!(
                    "'{}' does not apply to protocol {proto_name} in {rule_kw}: SRCPort/DESTport need TCP or UDP, TYPE/CODE need ICMP, ICMPv6 or OSPF",
                    t.text
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ok(src: &str) -> Profile {
        parse("PROFILE.TCPIP", src).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(src: &str) -> String {
        parse("PROFILE.TCPIP", src)
            .expect_err("expected an error")
            .to_string()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_nss_sample_from_the_iked_documentation() {
        let p = ok("
IPSEC LOGENable
; Rule      SrcAddr DstAddr   Logging Protocol   SrcPort    DestPort     Routing Secclass
; OSPF protocol used by Omproute
  IPSECRule *       *         NOLOG   PROTO OSPF
; IGMP protocol used by Omproute
  IPSECRule *       *         NOLOG   PROTO 2
; DNS queries to UDP port 53
  IPSECRule *       *         NOLOG   PROTO UDP  SRCPort *  DESTport 53
; Administrative access
  IPSECRule *       9.1.1.2   LOG                                                SECCLASS 100
; IKE daemon access to the Network Security Server
  IPSECRule *       *         LOG     TCP        SRCPort *  DESTport 4159
  IPSEC6Rule *      *         LOG     TCP        SRCPort *  DESTport 4159
ENDIPSEC
");
        assert!(p.set.log_enabled);
        assert!(!p.set.log_implicit);
        let r = &p.set.rules;
        assert_eq!(r.len(), 6);
        assert_eq!(r[0].name, "SYSDEFAULTRULE.1");
        assert_eq!(r[0].protocol, Some(proto::OSPF));
        assert_eq!(
            r[0].l4,
            L4Match::Ospf {
                types: PortRange::ANY_U8
            }
        );
        assert_eq!(r[1].protocol, Some(2));
        assert_eq!(r[2].protocol, Some(proto::UDP));
        assert_eq!(
            r[2].l4,
            L4Match::Ports {
                src: PortRange::ANY,
                dst: PortRange::single(53)
            }
        );
        assert_eq!(r[3].dst, vec![AddrRange::host(a("9.1.1.2"))]);
        assert_eq!(r[3].secclass, 100);
        assert_eq!(r[3].log, LogMode::All);
        assert_eq!(r[3].protocol, None);
        assert_eq!(r[4].protocol, Some(proto::TCP));
        assert_eq!(r[5].family, Family::V6);
        assert_eq!(r[5].name, "SYSDEFAULTRULE.6");
        assert_eq!(r[5].pos.line, 14);
        for rule in r {
            assert_eq!(rule.routing, Routing::Local);
            assert_eq!(rule.direction, Direction::Bidirectional);
            assert_eq!(rule.action, FilterAction::Permit);
        }
    }

    #[test]
    fn every_parameter_form() {
        let p = ok("
ipsec dvipsec dvlocalfltr logdis logimp
  IPSECRule 10.0.0.0/8 10.1.1.1 - 10.1.1.9 LOG PROTOCOL TCP SRCP 1024 65535 DESTP 22
     ROUTING ROUTED FRAGMENTSONLY SECCLASS 7 DIRECTION INBCONNECT
  IPSECRule 10.0.0.1-10.0.0.3 * ICMP TYPE 8 CODE 0 ROUTING EITHER DIREC OUTB
  IPSECRule * * PROTO * DIRECTION INB
  IPSECRule * * PROTO 1 TYPE 0 3 CODE * DIREC BIDI
  IPSECRule * * OSPF TYPE 2
  IPSECRule * * PROTO 6 DIRECtion OUTBConnect
  IPSEC6Rule fd00::/64 fd00::1 - fd00::ff ICMPV6 TYPE 128 ROUTING LOCAL
  IPSEC6Rule * * PROTO 58
endipsec
");
        assert!(p.dvipsec && p.dvlocalfltr);
        assert!(!p.set.log_enabled && p.set.log_implicit);
        assert_eq!(p.notices.len(), 1);
        let r = &p.set.rules;
        assert_eq!(r[0].src, vec![AddrRange::prefix(a("10.0.0.0"), 8).unwrap()]);
        assert_eq!(
            r[0].dst,
            vec![AddrRange::range(a("10.1.1.1"), a("10.1.1.9")).unwrap()]
        );
        assert_eq!(
            r[0].l4,
            L4Match::Ports {
                src: PortRange {
                    lo: 1024,
                    hi: 65535
                },
                dst: PortRange::single(22)
            }
        );
        assert_eq!(r[0].routing, Routing::Routed);
        assert!(r[0].fragments_only);
        assert_eq!(r[0].secclass, 7);
        assert_eq!(r[0].direction, Direction::Bidirectional);
        assert_eq!(r[0].connect, Some(ConnectDir::Inbound));
        assert_eq!(
            r[1].src,
            vec![AddrRange::range(a("10.0.0.1"), a("10.0.0.3")).unwrap()]
        );
        assert_eq!(
            r[1].l4,
            L4Match::Icmp {
                types: PortRange::single(8),
                codes: PortRange::single(0)
            }
        );
        assert_eq!(r[1].routing, Routing::Either);
        assert_eq!(r[1].direction, Direction::Outbound);
        assert_eq!(r[2].protocol, None);
        assert_eq!(r[2].direction, Direction::Inbound);
        assert_eq!(
            r[3].l4,
            L4Match::Icmp {
                types: PortRange { lo: 0, hi: 3 },
                codes: PortRange::ANY_U8
            }
        );
        assert_eq!(
            r[4].l4,
            L4Match::Ospf {
                types: PortRange::single(2)
            }
        );
        assert_eq!(r[5].connect, Some(ConnectDir::Outbound));
        assert_eq!(r[6].family, Family::V6);
        assert_eq!(r[6].protocol, Some(proto::ICMPV6));
        assert_eq!(
            r[7].l4,
            L4Match::Icmp {
                types: PortRange::ANY_U8,
                codes: PortRange::ANY_U8
            }
        );
    }

    #[test]
    fn other_statements_are_ignored_and_only_the_first_block_counts() {
        let p = ok("
TCPCONFIG RESTRICTLOWPORTS ; not ours
IPCONFIG IPSECURITY
IPSEC
  IPSECRule * * TCP DESTport 22
ENDIPSEC
IPSEC LOGENABLE
  IPSECRule * * UDP
ENDIPSEC
PORT 22 TCP SSHD
");
        assert_eq!(p.set.rules.len(), 1);
        assert!(!p.set.log_enabled);
        assert_eq!(p.notices.len(), 1);
        assert_eq!(p.notices[0].pos.line, 7);
        assert!(p.notices[0].message.contains("only the first IPSEC block"));
    }

    #[test]
    fn an_empty_block_is_a_deny_all_policy() {
        let p = ok("IPSEC\nENDIPSEC\n");
        assert!(p.set.rules.is_empty());
    }

    #[test]
    fn errors_name_file_line_column_and_what_was_expected() {
        let cases: &[(&str, &str)] = &[
            ("", "PROFILE.TCPIP:1:1: no IPSEC … ENDIPSEC block found"),
            (
                "; only a comment\nTCPCONFIG X\n",
                "PROFILE.TCPIP:1:1: no IPSEC",
            ),
            (
                "IPSEC\n IPSECRule * *\n",
                "PROFILE.TCPIP:1:1: this IPSEC block has no ENDIPSEC",
            ),
            (
                "IPSEC\n IPSECRule\nENDIPSEC",
                "PROFILE.TCPIP:3:1: expected a source address for IPSECRule",
            ),
            (
                "IPSEC\n IPSECRule *\nENDIPSEC",
                "PROFILE.TCPIP:3:1: expected a destination address",
            ),
            (
                "IPSEC\n IPSECRule 10.0.0.300 *\nENDIPSEC",
                "PROFILE.TCPIP:2:12: expected a source address",
            ),
            (
                "IPSEC\n IPSECRule fd00::1 *\nENDIPSEC",
                "PROFILE.TCPIP:2:12: IPSECRule takes IPv4 addresses, found 'fd00::1' (IPv6)",
            ),
            (
                "IPSEC\n IPSEC6Rule * 1.2.3.4\nENDIPSEC",
                "PROFILE.TCPIP:2:15: IPSEC6Rule takes IPv6 addresses",
            ),
            (
                "IPSEC\n IPSECRule 1.2.3.0/33 *\nENDIPSEC",
                "PROFILE.TCPIP:2:12: prefix length must be 0 to 32, found '33'",
            ),
            (
                "IPSEC\n IPSECRule 1.2.3.9 - 1.2.3.1 *\nENDIPSEC",
                "PROFILE.TCPIP:2:12: the range 1.2.3.9 - 1.2.3.1 must run from the lower to the higher address",
            ),
            (
                "IPSEC\n IPSECRule 1.2.3.9 - \nENDIPSEC",
                "PROFILE.TCPIP:3:1: expected the last address of the range after '-', found 'ENDIPSEC'",
            ),
            (
                "IPSEC\n IPSECRule * * PROTO\nENDIPSEC",
                "PROFILE.TCPIP:3:1: expected a protocol after PROTOcol",
            ),
            (
                "IPSEC\n IPSECRule * * PROTO 256\nENDIPSEC",
                "PROFILE.TCPIP:2:22: protocol number must be a whole number from 0 to 255, found '256'",
            ),
            (
                "IPSEC\n IPSECRule * * TCP SRCPort 70000\nENDIPSEC",
                "PROFILE.TCPIP:2:28: SRCPort must be a whole number from 0 to 65535",
            ),
            (
                "IPSEC\n IPSECRule * * TCP SRCPort 90 80\nENDIPSEC",
                "PROFILE.TCPIP:2:31: SRCPort range 90 80 must run from the lower to the higher value",
            ),
            (
                "IPSEC\n IPSECRule * * UDP TYPE 3\nENDIPSEC",
                "PROFILE.TCPIP:2:20: 'TYPE' does not apply to protocol 17",
            ),
            (
                "IPSEC\n IPSECRule * * PROTO 47 DESTport 3\nENDIPSEC",
                "PROFILE.TCPIP:2:25: 'DESTport' does not apply to protocol 47",
            ),
            (
                "IPSEC\n IPSEC6Rule * * ICMP\nENDIPSEC",
                "PROFILE.TCPIP:2:17: IPSEC6Rule filters ICMPv6 (58), not ICMP (1)",
            ),
            (
                "IPSEC\n IPSECRule * * ICMPV6\nENDIPSEC",
                "PROFILE.TCPIP:2:16: IPSECRule filters ICMP (1), not ICMPv6 (58)",
            ),
            (
                "IPSEC\n IPSECRule * * ROUTING SOMEWHERE\nENDIPSEC",
                "PROFILE.TCPIP:2:24: expected LOCAL, ROUTED or EITHER after ROUTING, found 'SOMEWHERE'",
            ),
            (
                "IPSEC\n IPSECRule * * SECCLASS 256\nENDIPSEC",
                "PROFILE.TCPIP:2:25: SECCLASS must be a whole number from 0 to 255",
            ),
            (
                "IPSEC\n IPSECRule * * DIRECTION UP\nENDIPSEC",
                "PROFILE.TCPIP:2:26: expected BIDIrectional, INBound, OUTBound, INBConnect or OUTBConnect",
            ),
            (
                "IPSEC\n IPSECRule * * UDP DIRECTION INBC\nENDIPSEC",
                "PROFILE.TCPIP:2:30: INBC applies only to TCP",
            ),
            (
                "IPSEC\n IPSECRule * * SECCLASS 3 LOG\nENDIPSEC",
                "PROFILE.TCPIP:2:27: 'LOG' is out of order or repeated: IPSECRule parameters must be in the order src dst",
            ),
            (
                "IPSEC\n IPSECRule * * ROUTING LOCAL TCP\nENDIPSEC",
                "PROFILE.TCPIP:2:30: 'TCP' is out of order or repeated",
            ),
            (
                "IPSEC\n IPSECRule * * BOGUS\nENDIPSEC",
                "PROFILE.TCPIP:2:16: unexpected 'BOGUS' in IPSECRule",
            ),
            (
                "IPSEC\n BOGUS\nENDIPSEC",
                "PROFILE.TCPIP:2:2: expected IPSECRule, IPSEC6Rule or ENDIPSEC, found 'BOGUS'",
            ),
            (
                "IPSEC\n IPSECRule * *\n LOGENABLE\nENDIPSEC",
                "PROFILE.TCPIP:3:2: 'LOGENABLE' is out of order",
            ),
            (
                "IPSEC\n IPSECRULES * *\nENDIPSEC",
                "PROFILE.TCPIP:2:2: expected IPSECRule, IPSEC6Rule or ENDIPSEC, found 'IPSECRULES'",
            ),
        ];
        for (src, want) in cases {
            let got = err(src);
            assert!(
                got.starts_with(want),
                "for {src:?}\n  got:  {got}\n  want: {want}…"
            );
        }
    }

    #[test]
    fn abbreviations_follow_the_capitalised_part() {
        // The capitalised part is the shortest accepted form: IPSECR for
        // IPSECRule, IPSEC6R for IPSEC6Rule.
        assert!(parse("p", "IPSEC\n IPSECR * *\nENDIPSEC").is_ok());
        assert!(parse("p", "IPSEC\n IPSEC6R * *\nENDIPSEC").is_ok());
        assert!(parse("p", "IPSEC LOGENA NOLOGI\n IPSECRULE * * PROTOC TCP SRCP 1 DESTP 2 ROUTING EITHER DIREC BIDI\nENDIPSEC").is_ok());
        assert!(parse("p", "IPSEC LOGE\nENDIPSEC").is_err());
        assert!(parse("p", "IPSEC\n IPSECRule * * PROT TCP\nENDIPSEC").is_err());
    }

    #[test]
    fn several_errors_are_reported_together() {
        let e = parse(
            "p",
            "IPSEC\n IPSECRule x *\n IPSECRule * * TCP\n IPSECRule * * SECCLASS 999\nENDIPSEC",
        )
        .unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert_eq!(e.0[0].pos.line, 2);
        assert_eq!(e.0[1].pos.line, 4);
    }
}
