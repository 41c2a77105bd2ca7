//! The filter statements of the IPsec policy file (the Policy Agent's IP
//! filter policy), read into a [`FilterSet`] for the dataplane's `policy`
//! set.
//!
//! | statement | what it is |
//! |---|---|
//! | `IpFilterPolicy { … }` | required: set-wide options and the ordered rule list |
//! | `IpFilterRule name { … }` | addresses, services and an action; generates one filter per service and address family |
//! | `IpFilterGroup name { … }` | an ordered list of rules, referenced from IpFilterPolicy |
//! | `IpGenericFilterAction name { … }` | `IpFilterAction Permit\|Deny\|IpSec`, `IpFilterLogging`, `DiscardAction` |
//! | `IpAddr name { Addr a }` | a named address (also `a/len`, `a-b`) |
//! | `IpAddrSet name { Prefix a/len \| Range a-b }` | a named subnet or range |
//! | `IpAddrGroup name { IpAddr… IpAddrSet… }` | a named list of addresses and sets |
//! | `IpService name { … }` | protocol, ports, ICMP type/code, direction, routing, security class |
//! | `IpServiceGroup name { IpService… }` | several services |
//!
//! The file is parsed into a [`policy_tree`](crate::policy_tree) first; this
//! module converts the filter statements and skips the IKE statements (see
//! [`crate::ike_policy`]) and `IpLocalStartAction`. Any other statement is an
//! error.
//!
//! # `IpFilterPolicy`
//!
//! ```text
//! IpFilterPolicy
//! {
//!   FilterLogging          On | Off            (default On: rules may log)
//!   FilterLogImplicit      Yes | No            (default No: log the implicit deny)
//!   ImplicitDiscardAction  Silent | ICMP       (default Silent)
//!   AllowOnDemand          Yes | No            (default Yes; for iked)
//!   IpFilterRuleRef name | IpFilterRule name { … } | IpFilterGroupRef name   (ordered, repeatable)
//! }
//! ```
//! A file without an IpFilterPolicy, or whose IpFilterPolicy lists no rule,
//! is an error: the `default` (profile) set stays in force. If the
//! IpFilterPolicy names no rules at all but the file defines IpFilterRules,
//! those rules are used in the order written (with a notice).
//!
//! # `IpFilterRule`
//!
//! ```text
//! IpFilterRule name
//! {
//!   IpSourceAddr all | all4 | all6 | a | a/len | a-b     (default all)
//!   IpSourceAddrRange a b | IpSourceAddrSet a/len | a-b
//!   IpSourceAddrRef n | IpSourceAddrSetRef n | IpSourceAddrGroupRef n
//!   …the same with IpDest…
//!   IpService { … } | IpServiceRef n | IpServiceGroupRef n    (repeatable; default: all traffic)
//!   IpGenericFilterActionRef n | IpGenericFilterAction { … }
//!   IpDynVpnActionRef n | IpManVpnActionRef n                 (required with IpFilterAction IpSec)
//!   IpLocalStartActionRef n                                   (for iked; ignored here)
//! }
//! ```
//! `IpService` parameters: `Protocol all|tcp|udp|icmp|icmpv6|ospf|igmp|esp|ah|gre|n`
//! (default all), `SourcePortRange p [q]`, `DestinationPortRange p [q]` (TCP and
//! UDP; `0` = all), `Type t [u]` and `Code c [d]` (ICMP, ICMPv6; `Type` also for
//! OSPF), `Direction bidirectional [InboundConnect|OutboundConnect] | inbound |
//! outbound` (default bidirectional), `Routing local|routed|either` (default
//! local), `SecurityClass n` (default 0 = any).
//!
//! Keywords and keyword values are case-insensitive and cannot be
//! abbreviated; statement names are 1–32 characters, case-sensitive, must not
//! start with `-` or contain `,`. One parameter per line; several on one line
//! are accepted when each starts with a known keyword. Other text after a
//! parameter's values is ignored, as on z/OS, with a notice.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use crate::filter::{
    AddrRange, ConnectDir, Direction, DiscardAction, Family, FilterAction, FilterRule, FilterSet,
    L4Match, LogMode, PortRange, Routing, proto,
};
use crate::iked_conf::{Diagnostics, LoadError};
use crate::lex::{self, CommentStyle, Diagnostic, Pos, Token};
use crate::policy_tree::{Block, Node, parse_tree};

/// The statement keywords this module converts.
pub const FILTER_STATEMENTS: &[&str] = &[
    "IpFilterPolicy",
    "IpFilterRule",
    "IpFilterGroup",
    "IpGenericFilterAction",
    "IpAddr",
    "IpAddrSet",
    "IpAddrGroup",
    "IpService",
    "IpServiceGroup",
];

/// Statements of the policy file this module accepts and skips (besides
/// [`crate::ike_policy::IKE_STATEMENTS`]).
const OTHER_STATEMENTS: &[&str] = &["IpLocalStartAction", "IpTimeCondition"];

/// Is `tok` the keyword of one of this module's statements?
pub fn is_filter_statement(tok: &Token) -> bool {
    FILTER_STATEMENTS.iter().any(|k| tok.is_word(k))
}

/// The filter part of an IPsec policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPolicy {
    /// The filters in order, with the set-wide logging switches.
    pub set: FilterSet,
    /// `AllowOnDemand` (for iked).
    pub allow_on_demand: bool,
    /// `ImplicitDiscardAction`.
    pub implicit_discard: DiscardAction,
    /// Where `IpFilterPolicy` is.
    pub pos: Pos,
    /// Informational notices (ignored text, accepted no-op settings).
    pub notices: Vec<Diagnostic>,
}

/// Read and parse the filter statements of a policy file.
pub fn load(path: &Path) -> Result<FilterPolicy, LoadError> {
    let src = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&path.display().to_string(), &src)?)
}

/// Parse the filter statements of a policy file; `file` labels errors. All
/// errors found are returned, in order of position.
pub fn parse(file: &str, src: &str) -> Result<FilterPolicy, Diagnostics> {
    let toks = lex::tokenize(file, src, CommentStyle::Hash).map_err(|d| Diagnostics(vec![d]))?;
    let mut errors = Vec::new();
    let nodes = parse_tree(file, &toks, lex::end_pos(src), &mut errors);
    let mut c = Conv {
        file: Arc::from(file),
        errors,
        notices: Vec::new(),
        defs: Defs::default(),
    };
    let result = c.file(&nodes);
    let mut errors = c.errors;
    if errors.is_empty()
        && let Some(mut policy) = result
    {
        policy.notices.extend(c.notices);
        policy.notices.sort_by_key(|d| d.pos);
        return Ok(policy);
    }
    errors.sort_by_key(|d| d.pos);
    errors.dedup();
    Err(Diagnostics(errors))
}

// ---------------------------------------------------------------------------
// Intermediate values

/// One address selector of a rule side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddrSel {
    /// `all` (None), `all4`, `all6`.
    All(Option<Family>),
    /// An address, prefix or range.
    Range(AddrRange),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    protocol: Option<u8>,
    l4: L4Match,
    direction: Direction,
    connect: Option<ConnectDir>,
    routing: Routing,
    secclass: u8,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            protocol: None,
            l4: L4Match::Any,
            direction: Direction::Bidirectional,
            connect: None,
            routing: Routing::Local,
            secclass: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GenericAction {
    action: GenericKind,
    log: LogMode,
    discard: DiscardAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GenericKind {
    Permit,
    Deny,
    IpSec,
}

/// A statement or inline block: its keyword, its name token and its block.
#[derive(Debug, Clone, Copy)]
struct Stmt<'a> {
    key: &'a Token,
    name: Option<&'a Token>,
    block: Option<&'a Block<'a>>,
}

impl<'a> Stmt<'a> {
    fn of(node: &'a Node<'a>) -> Self {
        Self {
            key: node.key,
            name: node.first(),
            block: node.block.as_ref(),
        }
    }

    fn children(&self) -> &'a [Node<'a>] {
        self.block.map_or(&[], |b| b.children.as_slice())
    }
}

/// Global named statements, by kind and name.
#[derive(Debug, Default)]
struct Defs<'a> {
    rules: BTreeMap<String, Stmt<'a>>,
    groups: BTreeMap<String, Stmt<'a>>,
    actions: BTreeMap<String, Stmt<'a>>,
    addrs: BTreeMap<String, Stmt<'a>>,
    addr_sets: BTreeMap<String, Stmt<'a>>,
    addr_groups: BTreeMap<String, Stmt<'a>>,
    services: BTreeMap<String, Stmt<'a>>,
    service_groups: BTreeMap<String, Stmt<'a>>,
    /// IpDynVpnAction / IpManVpnAction / IpLocalStartAction names (checked
    /// for existence only; iked reads them).
    dyn_actions: BTreeMap<String, Pos>,
    man_actions: BTreeMap<String, Pos>,
    local_start: BTreeMap<String, Pos>,
}

/// One parameter inside a block after splitting lines that hold several.
#[derive(Debug, Clone)]
struct Param<'a> {
    key: &'a Token,
    values: Vec<&'a Token>,
    block: Option<&'a Block<'a>>,
}

impl<'a> Param<'a> {
    fn stmt(&self) -> Stmt<'a> {
        Stmt {
            key: self.key,
            name: self.values.first().copied(),
            block: self.block,
        }
    }
}

struct Conv<'a> {
    file: Arc<str>,
    errors: Vec<Diagnostic>,
    notices: Vec<Diagnostic>,
    defs: Defs<'a>,
}

type R<T> = Result<T, Diagnostic>;

const RULE_PARAMS: &[&str] = &[
    "IpSourceAddr",
    "IpSourceAddrRange",
    "IpSourceAddrSet",
    "IpSourceAddrRef",
    "IpSourceAddrSetRef",
    "IpSourceAddrGroupRef",
    "IpDestAddr",
    "IpDestAddrRange",
    "IpDestAddrSet",
    "IpDestAddrRef",
    "IpDestAddrSetRef",
    "IpDestAddrGroupRef",
    "IpService",
    "IpServiceRef",
    "IpServiceGroupRef",
    "IpGenericFilterAction",
    "IpGenericFilterActionRef",
    "IpDynVpnActionRef",
    "IpManVpnActionRef",
    "IpLocalStartActionRef",
    "IpTimeConditionRef",
];

const SERVICE_PARAMS: &[&str] = &[
    "Protocol",
    "SourcePortRange",
    "DestinationPortRange",
    "Type",
    "Code",
    "Direction",
    "Routing",
    "SecurityClass",
];

const ACTION_PARAMS: &[&str] = &["IpFilterAction", "IpFilterLogging", "DiscardAction"];

const POLICY_PARAMS: &[&str] = &[
    "FilterLogging",
    "FilterLogImplicit",
    "ImplicitDiscardAction",
    "AllowOnDemand",
    "PreDecap",
    "IpFilterRuleRef",
    "IpFilterRule",
    "IpFilterGroupRef",
];

const GROUP_PARAMS: &[&str] = &["IpFilterRuleRef", "IpFilterRule", "IpFilterGroupRef"];

const ADDR_GROUP_PARAMS: &[&str] = &["IpAddr", "IpAddrRef", "IpAddrSet", "IpAddrSetRef"];

const SERVICE_GROUP_PARAMS: &[&str] = &["IpService", "IpServiceRef"];

/// Nesting limit for group references (loops are errors).
const MAX_DEPTH: usize = 8;

impl<'a> Conv<'a> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            pos,
            message: message.into(),
        }
    }

    fn notice(&mut self, pos: Pos, message: impl Into<String>) {
        let d = self.err(pos, message);
        self.notices.push(d);
    }

    /// Split a block's lines into parameters: a line holding several
    /// `Keyword value…` groups (each keyword one of `known`) becomes several
    /// parameters; the line's block belongs to the last one.
    fn params(block: &'a [Node<'a>], known: &[&str]) -> Vec<Param<'a>> {
        let is_known =
            |t: &Token| t.kind == lex::TokenKind::Word && known.iter().any(|k| t.is_word(k));
        let mut out = Vec::new();
        for node in block {
            let mut cur = Param {
                key: node.key,
                values: Vec::new(),
                block: None,
            };
            for &v in &node.values {
                if is_known(v) {
                    let next = Param {
                        key: v,
                        values: Vec::new(),
                        block: None,
                    };
                    out.push(std::mem::replace(&mut cur, next));
                } else {
                    cur.values.push(v);
                }
            }
            cur.block = node.block.as_ref();
            out.push(cur);
        }
        out
    }

    /// Values after the first `n` are ignored, with a notice (z/OS ignores
    /// text after an attribute's value).
    fn extra(&mut self, p: &Param<'a>, n: usize) {
        if let Some(t) = p.values.get(n) {
            let (pos, key) = (t.pos, p.key.text.clone());
            self.notice(pos, format!("text after the value of {key} is ignored"));
        }
    }

    fn no_block(&self, p: &Param<'a>) -> R<()> {
        match p.block {
            Some(b) => Err(self.err(b.open, format!("{} takes no '{{ … }}' block", p.key.text))),
            None => Ok(()),
        }
    }

    fn value(&self, p: &Param<'a>, i: usize, what: &str) -> R<&'a Token> {
        p.values.get(i).copied().ok_or_else(|| {
            let pos = p.values.last().map_or(p.key.pos, |t| t.pos);
            self.err(pos, format!("expected {what} after {}", p.key.text))
        })
    }

    fn name(&self, t: &Token, what: &str) -> R<String> {
        let n = t.text.chars().count();
        if n == 0 || n > 32 {
            return Err(self.err(
                t.pos,
                format!("{what} name must be 1 to 32 characters, found '{}'", t.text),
            ));
        }
        if t.text.starts_with('-') || t.text.contains(',') {
            return Err(self.err(
                t.pos,
                format!(
                    "{what} name '{}' must not start with '-' or contain ','",
                    t.text
                ),
            ));
        }
        Ok(t.text.clone())
    }

    fn yes_no(&self, p: &Param<'a>) -> R<bool> {
        let t = self.value(p, 0, "Yes or No")?;
        if t.is_word("yes") || t.is_word("on") {
            Ok(true)
        } else if t.is_word("no") || t.is_word("off") {
            Ok(false)
        } else {
            Err(self.err(
                t.pos,
                format!("{} must be Yes or No, found '{}'", p.key.text, t.text),
            ))
        }
    }

    fn discard(&self, p: &Param<'a>) -> R<DiscardAction> {
        let t = self.value(p, 0, "Silent or ICMP")?;
        if t.is_word("silent") {
            Ok(DiscardAction::Silent)
        } else if t.is_word("icmp") {
            Ok(DiscardAction::Icmp)
        } else {
            Err(self.err(
                t.pos,
                format!("{} must be Silent or ICMP, found '{}'", p.key.text, t.text),
            ))
        }
    }

    fn unknown(&self, p: &Param<'a>, within: &str, expected: &[&str]) -> Diagnostic {
        self.err(
            p.key.pos,
            format!(
                "unknown parameter '{}' in {within}; expected one of {}",
                p.key.text,
                expected.join(", ")
            ),
        )
    }

    // -----------------------------------------------------------------------
    // The file

    fn file(&mut self, nodes: &'a [Node<'a>]) -> Option<FilterPolicy> {
        let mut policies: Vec<&'a Node<'a>> = Vec::new();
        let mut rules_in_order: Vec<Stmt<'a>> = Vec::new();
        for node in nodes {
            let k = node.key;
            type Pick<'a> = for<'d> fn(&'d mut Defs<'a>) -> &'d mut BTreeMap<String, Stmt<'a>>;
            let pick: Option<Pick<'a>> = if k.is_word("IpFilterRule") {
                rules_in_order.push(Stmt::of(node));
                Some(|d| &mut d.rules)
            } else if k.is_word("IpFilterGroup") {
                Some(|d| &mut d.groups)
            } else if k.is_word("IpGenericFilterAction") {
                Some(|d| &mut d.actions)
            } else if k.is_word("IpAddr") {
                Some(|d| &mut d.addrs)
            } else if k.is_word("IpAddrSet") {
                Some(|d| &mut d.addr_sets)
            } else if k.is_word("IpAddrGroup") {
                Some(|d| &mut d.addr_groups)
            } else if k.is_word("IpService") {
                Some(|d| &mut d.services)
            } else if k.is_word("IpServiceGroup") {
                Some(|d| &mut d.service_groups)
            } else {
                None
            };
            if let Some(pick) = pick {
                match self.def_name(node) {
                    Ok(name) => {
                        if let Some(prev) = pick(&mut self.defs).get(&name) {
                            let line = prev.key.pos.line;
                            let e = self.err(
                                k.pos,
                                format!(
                                    "{} {name} is defined twice (first at line {line})",
                                    k.text
                                ),
                            );
                            self.errors.push(e);
                        } else {
                            pick(&mut self.defs).insert(name, Stmt::of(node));
                        }
                    }
                    Err(e) => self.errors.push(e),
                }
            } else if k.is_word("IpFilterPolicy") {
                policies.push(node);
            } else if k.is_word("IpDynVpnAction")
                || k.is_word("IpManVpnAction")
                || k.is_word("IpLocalStartAction")
            {
                if let Some(n) = node.first() {
                    let map = if k.is_word("IpDynVpnAction") {
                        &mut self.defs.dyn_actions
                    } else if k.is_word("IpManVpnAction") {
                        &mut self.defs.man_actions
                    } else {
                        &mut self.defs.local_start
                    };
                    map.insert(n.text.clone(), n.pos);
                }
            } else if crate::ike_policy::is_ike_statement(k)
                || OTHER_STATEMENTS.iter().any(|s| k.is_word(s))
            {
                // Another module's statement.
            } else {
                let e = self.err(
                    k.pos,
                    format!(
                        "unknown statement '{}'; expected one of {}, {}, {}",
                        k.text,
                        FILTER_STATEMENTS.join(", "),
                        crate::ike_policy::IKE_STATEMENTS.join(", "),
                        OTHER_STATEMENTS.join(", ")
                    ),
                );
                self.errors.push(e);
            }
        }

        let Some(&policy_node) = policies.first() else {
            let e = self.err(
                Pos { line: 1, col: 1 },
                "no IpFilterPolicy statement: a policy file needs IpFilterPolicy { IpFilterRuleRef … } \
                 to define IP filters (the default filter set stays in force)",
            );
            self.errors.push(e);
            // Still check every rule so that all errors are reported at once.
            for r in rules_in_order {
                if let Err(e) = self.rule(r) {
                    self.errors.push(e);
                }
            }
            return None;
        };
        for extra in policies.iter().skip(1) {
            let e = self.err(
                extra.key.pos,
                format!(
                    "only one IpFilterPolicy is allowed (the first is at line {})",
                    policy_node.key.pos.line
                ),
            );
            self.errors.push(e);
        }
        if let Some(t) = policy_node.first() {
            let pos = t.pos;
            self.notice(pos, "IpFilterPolicy takes no name; the name is ignored");
        }
        let mut out = FilterPolicy {
            set: FilterSet {
                rules: Vec::new(),
                log_enabled: true,
                log_implicit: false,
            },
            allow_on_demand: true,
            implicit_discard: DiscardAction::Silent,
            pos: policy_node.key.pos,
            notices: Vec::new(),
        };
        let Some(block) = &policy_node.block else {
            let e = self.err(policy_node.key.pos, "IpFilterPolicy needs a '{ … }' block");
            self.errors.push(e);
            return None;
        };
        let mut listed = false;
        let mut rules: Vec<Stmt<'a>> = Vec::new();
        for p in Self::params(&block.children, POLICY_PARAMS) {
            if let Err(e) = self.policy_param(&p, &mut out, &mut listed, &mut rules, 0) {
                self.errors.push(e);
            }
        }
        if !listed {
            if rules_in_order.is_empty() {
                let e = self.err(
                    policy_node.key.pos,
                    "IpFilterPolicy lists no IpFilterRule and the file defines none: an empty IP \
                     filter policy is an error (the default filter set stays in force)",
                );
                self.errors.push(e);
            } else {
                let pos = policy_node.key.pos;
                self.notice(
                    pos,
                    "IpFilterPolicy lists no rules; using every IpFilterRule in the order written",
                );
                rules = rules_in_order;
            }
        }
        for r in rules {
            match self.rule(r) {
                Ok(filters) => out.set.rules.extend(filters),
                Err(e) => self.errors.push(e),
            }
        }
        Some(out)
    }

    fn def_name(&self, node: &Node<'a>) -> R<String> {
        let t = node.first().ok_or_else(|| {
            self.err(
                node.key.pos,
                format!("expected a name after {}", node.key.text),
            )
        })?;
        self.name(t, &node.key.text)
    }

    fn policy_param(
        &mut self,
        p: &Param<'a>,
        out: &mut FilterPolicy,
        listed: &mut bool,
        rules: &mut Vec<Stmt<'a>>,
        depth: usize,
    ) -> R<()> {
        let k = p.key;
        let top = depth == 0;
        if k.is_word("IpFilterRule") {
            *listed = true;
            if p.block.is_none() {
                return Err(self.err(k.pos, "an inline IpFilterRule needs a '{ … }' block"));
            }
            rules.push(p.stmt());
            return Ok(());
        }
        self.no_block(p)?;
        if top && k.is_word("FilterLogging") {
            out.set.log_enabled = self.yes_no(p)?;
            self.extra(p, 1);
        } else if top && k.is_word("FilterLogImplicit") {
            out.set.log_implicit = self.yes_no(p)?;
            self.extra(p, 1);
        } else if top && k.is_word("AllowOnDemand") {
            out.allow_on_demand = self.yes_no(p)?;
            self.extra(p, 1);
        } else if top && k.is_word("ImplicitDiscardAction") {
            out.implicit_discard = self.discard(p)?;
            self.extra(p, 1);
        } else if top && k.is_word("PreDecap") {
            let pos = k.pos;
            self.notice(pos, "PreDecap is accepted and ignored");
        } else if k.is_word("IpFilterRuleRef") {
            *listed = true;
            let t = self.value(p, 0, "an IpFilterRule name")?;
            self.extra(p, 1);
            let stmt = self.defs.rules.get(&t.text).copied().ok_or_else(|| {
                self.err(
                    t.pos,
                    format!("IpFilterRuleRef {}: no IpFilterRule of that name", t.text),
                )
            })?;
            rules.push(stmt);
        } else if k.is_word("IpFilterGroupRef") {
            *listed = true;
            let t = self.value(p, 0, "an IpFilterGroup name")?;
            self.extra(p, 1);
            if depth >= MAX_DEPTH {
                return Err(self.err(t.pos, "IpFilterGroup references nest too deeply (a loop?)"));
            }
            let group = self.defs.groups.get(&t.text).copied().ok_or_else(|| {
                self.err(
                    t.pos,
                    format!("IpFilterGroupRef {}: no IpFilterGroup of that name", t.text),
                )
            })?;
            for gp in Self::params(group.children(), GROUP_PARAMS) {
                self.policy_param(&gp, out, listed, rules, depth + 1)?;
            }
        } else if top {
            return Err(self.unknown(p, "IpFilterPolicy", POLICY_PARAMS));
        } else {
            return Err(self.unknown(p, "IpFilterGroup", GROUP_PARAMS));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // IpFilterRule

    fn rule(&mut self, stmt: Stmt<'a>) -> R<Vec<FilterRule>> {
        let name_tok = stmt
            .name
            .ok_or_else(|| self.err(stmt.key.pos, "expected a name after IpFilterRule"))?;
        let name = self.name(name_tok, "IpFilterRule")?;
        if stmt.block.is_none() {
            return Err(self.err(
                stmt.key.pos,
                format!("IpFilterRule {name} needs a '{{ … }}' block"),
            ));
        }
        let mut src: Option<(Vec<AddrSel>, Pos)> = None;
        let mut dst: Option<(Vec<AddrSel>, Pos)> = None;
        let mut services: Vec<Service> = Vec::new();
        let mut generic: Option<GenericAction> = None;
        let mut vpn: Option<(String, bool, Pos)> = None;
        for p in Self::params(stmt.children(), RULE_PARAMS) {
            let k = p.key;
            let side = if k.text.len() > 8
                && k.text
                    .get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("IpSource"))
            {
                Some(&mut src)
            } else if k.text.len() > 6
                && k.text
                    .get(..6)
                    .is_some_and(|s| s.eq_ignore_ascii_case("IpDest"))
            {
                Some(&mut dst)
            } else {
                None
            };
            if let Some(side) = side {
                if !RULE_PARAMS.iter().any(|r| k.is_word(r)) {
                    return Err(self.unknown(&p, "IpFilterRule", RULE_PARAMS));
                }
                let sels = self.rule_addr(&p)?;
                if let Some((_, first)) = side {
                    return Err(self.err(
                        k.pos,
                        format!(
                            "{}: the {} addresses are already given at line {}",
                            k.text,
                            if k.text.len() > 8
                                && k.text
                                    .get(..8)
                                    .is_some_and(|s| s.eq_ignore_ascii_case("IpSource"))
                            {
                                "source"
                            } else {
                                "destination"
                            },
                            first.line
                        ),
                    ));
                }
                *side = Some((sels, k.pos));
            } else if k.is_word("IpService") {
                let svc = match p.values.first() {
                    Some(t) => {
                        return Err(self.err(
                            t.pos,
                            "an inline IpService takes no name (use IpServiceRef to name a global one)",
                        ));
                    }
                    None => self.service(p.block.map_or(&[], |b| b.children.as_slice()), k)?,
                };
                services.push(svc);
            } else if k.is_word("IpServiceRef") {
                self.no_block(&p)?;
                let t = self.value(&p, 0, "an IpService name")?;
                self.extra(&p, 1);
                services.push(self.service_ref(t)?);
            } else if k.is_word("IpServiceGroupRef") {
                self.no_block(&p)?;
                let t = self.value(&p, 0, "an IpServiceGroup name")?;
                self.extra(&p, 1);
                let group = self
                    .defs
                    .service_groups
                    .get(&t.text)
                    .copied()
                    .ok_or_else(|| {
                        self.err(
                            t.pos,
                            format!(
                                "IpServiceGroupRef {}: no IpServiceGroup of that name",
                                t.text
                            ),
                        )
                    })?;
                for gp in Self::params(group.children(), SERVICE_GROUP_PARAMS) {
                    if gp.key.is_word("IpService") {
                        services.push(
                            self.service(gp.block.map_or(&[], |b| b.children.as_slice()), gp.key)?,
                        );
                    } else if gp.key.is_word("IpServiceRef") {
                        let t = self.value(&gp, 0, "an IpService name")?;
                        services.push(self.service_ref(t)?);
                    } else {
                        return Err(self.unknown(&gp, "IpServiceGroup", SERVICE_GROUP_PARAMS));
                    }
                }
            } else if k.is_word("IpGenericFilterActionRef") || k.is_word("IpGenericFilterAction") {
                if generic.is_some() {
                    return Err(self.err(k.pos, "the rule already has an IpGenericFilterAction"));
                }
                let action = if k.is_word("IpGenericFilterAction") {
                    if let Some(t) = p.values.first() {
                        return Err(self.err(
                            t.pos,
                            "an inline IpGenericFilterAction takes no name (use IpGenericFilterActionRef)",
                        ));
                    }
                    let block = p.block.ok_or_else(|| {
                        self.err(k.pos, "IpGenericFilterAction needs a '{ … }' block")
                    })?;
                    self.generic_action(&block.children, k.pos)?
                } else {
                    self.no_block(&p)?;
                    let t = self.value(&p, 0, "an IpGenericFilterAction name")?;
                    self.extra(&p, 1);
                    let def = self.defs.actions.get(&t.text).copied().ok_or_else(|| {
                        self.err(t.pos, format!("IpGenericFilterActionRef {}: no IpGenericFilterAction of that name", t.text))
                    })?;
                    self.generic_action(def.children(), def.key.pos)?
                };
                generic = Some(action);
            } else if k.is_word("IpDynVpnActionRef") || k.is_word("IpManVpnActionRef") {
                self.no_block(&p)?;
                let manual = k.is_word("IpManVpnActionRef");
                let t = self.value(&p, 0, "an action name")?;
                self.extra(&p, 1);
                let known = if manual {
                    &self.defs.man_actions
                } else {
                    &self.defs.dyn_actions
                };
                if !known.contains_key(&t.text) {
                    return Err(self.err(
                        t.pos,
                        format!(
                            "{} {}: no {} of that name in this file",
                            k.text,
                            t.text,
                            if manual {
                                "IpManVpnAction"
                            } else {
                                "IpDynVpnAction"
                            }
                        ),
                    ));
                }
                if let Some((_, _, first)) = &vpn {
                    return Err(self.err(
                        k.pos,
                        format!("the rule already names a VPN action at line {}", first.line),
                    ));
                }
                vpn = Some((t.text.clone(), manual, k.pos));
            } else if k.is_word("IpLocalStartActionRef") {
                self.no_block(&p)?;
                let t = self.value(&p, 0, "an IpLocalStartAction name")?;
                self.extra(&p, 1);
                if !self.defs.local_start.contains_key(&t.text) {
                    return Err(self.err(
                        t.pos,
                        format!(
                            "IpLocalStartActionRef {}: no IpLocalStartAction of that name",
                            t.text
                        ),
                    ));
                }
            } else if k.is_word("IpTimeConditionRef") {
                return Err(self.err(
                    k.pos,
                    "IpTimeConditionRef is not supported: filters are always in effect",
                ));
            } else {
                return Err(self.unknown(&p, "IpFilterRule", RULE_PARAMS));
            }
        }

        // The action.
        let generic = match (generic, &vpn) {
            (Some(g), _) => g,
            (None, Some(_)) => GenericAction {
                action: GenericKind::IpSec,
                log: LogMode::None,
                discard: DiscardAction::Silent,
            },
            (None, None) => {
                return Err(self.err(
                    stmt.key.pos,
                    format!("IpFilterRule {name} needs an IpGenericFilterActionRef (Permit, Deny or IpSec)"),
                ));
            }
        };
        let action = match (generic.action, vpn) {
            (GenericKind::Permit, None) => FilterAction::Permit,
            (GenericKind::Deny, None) => FilterAction::Deny,
            (GenericKind::IpSec, Some((vpn_action, manual, _))) => {
                FilterAction::IpSec { vpn_action, manual }
            }
            (GenericKind::IpSec, None) => {
                return Err(self.err(
                    stmt.key.pos,
                    format!("IpFilterRule {name}: IpFilterAction IpSec needs an IpDynVpnActionRef or IpManVpnActionRef"),
                ));
            }
            (_, Some((_, _, pos))) => {
                return Err(self.err(
                    pos,
                    format!("IpFilterRule {name}: a VPN action needs IpFilterAction IpSec in its IpGenericFilterAction"),
                ));
            }
        };

        // Address families.
        let src_sels = src.map_or_else(|| vec![AddrSel::All(None)], |s| s.0);
        let dst_sels = dst.map_or_else(|| vec![AddrSel::All(None)], |s| s.0);
        let per_family: Vec<(Family, Vec<AddrRange>, Vec<AddrRange>)> = [Family::V4, Family::V6]
            .into_iter()
            .filter_map(|f| {
                let s = side_for(&src_sels, f)?;
                let d = side_for(&dst_sels, f)?;
                Some((f, s, d))
            })
            .collect();
        if per_family.is_empty() {
            return Err(self.err(
                stmt.key.pos,
                format!("IpFilterRule {name}: the source and destination addresses are of different families (IPv4 and IPv6), so it matches nothing"),
            ));
        }
        if services.is_empty() {
            services.push(Service::default());
        }
        let mut out = Vec::new();
        for (family, s, d) in per_family {
            for svc in &services {
                match (svc.protocol, family) {
                    (Some(proto::ICMP), Family::V6) | (Some(proto::ICMPV6), Family::V4) => continue,
                    _ => {}
                }
                out.push(FilterRule {
                    name: name.clone(),
                    pos: stmt.key.pos,
                    family,
                    src: s.clone(),
                    dst: d.clone(),
                    protocol: svc.protocol,
                    l4: svc.l4,
                    routing: svc.routing,
                    fragments_only: false,
                    secclass: svc.secclass,
                    direction: svc.direction,
                    connect: svc.connect,
                    action: action.clone(),
                    log: generic.log,
                    discard: generic.discard,
                });
            }
        }
        if out.is_empty() {
            return Err(self.err(
                stmt.key.pos,
                format!("IpFilterRule {name}: its services (ICMP for IPv6 only, or ICMPv6 for IPv4 only) match none of its address families"),
            ));
        }
        Ok(out)
    }

    /// The selectors given by one IpSource…/IpDest… parameter.
    fn rule_addr(&mut self, p: &Param<'a>) -> R<Vec<AddrSel>> {
        self.no_block(p)?;
        let k = p.key;
        let suffix = if k.text.len() > 8
            && k.text
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("IpSource"))
        {
            k.text.get(8..).unwrap_or_default().to_ascii_lowercase()
        } else {
            k.text.get(6..).unwrap_or_default().to_ascii_lowercase()
        };
        match suffix.as_str() {
            "addr" | "addrset" => {
                let t = self.value(p, 0, "an address (all, all4, all6, a, a/len or a-b)")?;
                self.extra(p, 1);
                Ok(vec![self.addr_value(t, suffix == "addr")?])
            }
            "addrrange" => {
                let t = self.value(p, 0, "the first address of the range")?;
                if t.text.contains('-') {
                    self.extra(p, 1);
                    return Ok(vec![self.addr_value(t, false)?]);
                }
                let u = self.value(p, 1, "the last address of the range")?;
                self.extra(p, 2);
                let lo = self.ip(t)?;
                let hi = self.ip(u)?;
                AddrRange::range(lo, hi)
                    .map(|r| vec![AddrSel::Range(r)])
                    .ok_or_else(|| self.err(t.pos, format!("the range {lo} {hi} must run from the lower to the higher address of one family")))
            }
            "addrref" => {
                let t = self.value(p, 0, "an IpAddr name")?;
                self.extra(p, 1);
                let def = self.defs.addrs.get(&t.text).copied().ok_or_else(|| {
                    self.err(
                        t.pos,
                        format!("{} {}: no IpAddr of that name", k.text, t.text),
                    )
                })?;
                Ok(vec![self.ip_addr_stmt(def)?])
            }
            "addrsetref" => {
                let t = self.value(p, 0, "an IpAddrSet name")?;
                self.extra(p, 1);
                let def = self.defs.addr_sets.get(&t.text).copied().ok_or_else(|| {
                    self.err(
                        t.pos,
                        format!("{} {}: no IpAddrSet of that name", k.text, t.text),
                    )
                })?;
                Ok(vec![self.ip_addr_set_stmt(def)?])
            }
            "addrgroupref" => {
                let t = self.value(p, 0, "an IpAddrGroup name")?;
                self.extra(p, 1);
                let def = self.defs.addr_groups.get(&t.text).copied().ok_or_else(|| {
                    self.err(
                        t.pos,
                        format!("{} {}: no IpAddrGroup of that name", k.text, t.text),
                    )
                })?;
                let mut out = Vec::new();
                for gp in Self::params(def.children(), ADDR_GROUP_PARAMS) {
                    let gk = gp.key;
                    if gk.is_word("IpAddr") {
                        out.push(self.ip_addr_stmt(gp.stmt_inline())?);
                    } else if gk.is_word("IpAddrSet") {
                        out.push(self.ip_addr_set_stmt(gp.stmt_inline())?);
                    } else if gk.is_word("IpAddrRef") || gk.is_word("IpAddrSetRef") {
                        let t = self.value(&gp, 0, "a name")?;
                        let (map, what) = if gk.is_word("IpAddrRef") {
                            (&self.defs.addrs, "IpAddr")
                        } else {
                            (&self.defs.addr_sets, "IpAddrSet")
                        };
                        let def = map.get(&t.text).copied().ok_or_else(|| {
                            self.err(
                                t.pos,
                                format!("{} {}: no {what} of that name", gk.text, t.text),
                            )
                        })?;
                        out.push(if gk.is_word("IpAddrRef") {
                            self.ip_addr_stmt(def)?
                        } else {
                            self.ip_addr_set_stmt(def)?
                        });
                    } else {
                        return Err(self.unknown(&gp, "IpAddrGroup", ADDR_GROUP_PARAMS));
                    }
                }
                if out.is_empty() {
                    return Err(self.err(def.key.pos, format!("IpAddrGroup {} is empty", t.text)));
                }
                Ok(out)
            }
            _ => Err(self.unknown(p, "IpFilterRule", RULE_PARAMS)),
        }
    }

    /// `IpAddr [name] { Addr a }`.
    fn ip_addr_stmt(&mut self, s: Stmt<'a>) -> R<AddrSel> {
        self.single_param_stmt(s, "Addr", "IpAddr", true)
    }

    /// `IpAddrSet [name] { Prefix a/len | Range a-b }`.
    fn ip_addr_set_stmt(&mut self, s: Stmt<'a>) -> R<AddrSel> {
        let mut found = None;
        for p in Self::params(s.children(), &["Prefix", "Range"]) {
            self.no_block(&p)?;
            let t = if p.key.is_word("Prefix") {
                let t = self.value(&p, 0, "a prefix (a/len)")?;
                if !t.text.contains('/') {
                    return Err(self.err(
                        t.pos,
                        format!("Prefix must be address/length, found '{}'", t.text),
                    ));
                }
                self.extra(&p, 1);
                self.addr_value(t, false)?
            } else if p.key.is_word("Range") {
                let t = self.value(&p, 0, "a range (a-b or a b)")?;
                if t.text.contains('-') {
                    self.extra(&p, 1);
                    self.addr_value(t, false)?
                } else {
                    let u = self.value(&p, 1, "the last address of the range")?;
                    self.extra(&p, 2);
                    let (lo, hi) = (self.ip(t)?, self.ip(u)?);
                    AddrSel::Range(AddrRange::range(lo, hi).ok_or_else(|| {
                        self.err(t.pos, format!("the range {lo} {hi} must run from the lower to the higher address of one family"))
                    })?)
                }
            } else {
                return Err(self.unknown(&p, "IpAddrSet", &["Prefix", "Range"]));
            };
            if found.is_some() {
                return Err(self.err(p.key.pos, "IpAddrSet takes one Prefix or Range"));
            }
            found = Some(t);
        }
        found.ok_or_else(|| self.err(s.key.pos, "IpAddrSet needs a Prefix or Range"))
    }

    fn single_param_stmt(
        &mut self,
        s: Stmt<'a>,
        param: &str,
        what: &str,
        host_only: bool,
    ) -> R<AddrSel> {
        let mut found = None;
        for p in Self::params(s.children(), &[param]) {
            if !p.key.is_word(param) {
                return Err(self.unknown(&p, what, &[param]));
            }
            self.no_block(&p)?;
            let t = self.value(&p, 0, "an address")?;
            self.extra(&p, 1);
            if found.is_some() {
                return Err(self.err(p.key.pos, format!("{what} takes one {param}")));
            }
            let sel = if host_only {
                AddrSel::Range(AddrRange::host(self.ip(t)?))
            } else {
                self.addr_value(t, false)?
            };
            found = Some(sel);
        }
        found.ok_or_else(|| self.err(s.key.pos, format!("{what} needs {param}")))
    }

    fn ip(&self, t: &Token) -> R<IpAddr> {
        t.text
            .parse()
            .map_err(|_| self.err(t.pos, format!("expected an IP address, found '{}'", t.text)))
    }

    /// `all`, `all4`, `all6` (when `allow_all`), `a`, `a/len`, `a-b`.
    fn addr_value(&self, t: &Token, allow_all: bool) -> R<AddrSel> {
        let s = t.text.as_str();
        if allow_all {
            if s.eq_ignore_ascii_case("all") || s == "*" {
                return Ok(AddrSel::All(None));
            }
            if s.eq_ignore_ascii_case("all4") {
                return Ok(AddrSel::All(Some(Family::V4)));
            }
            if s.eq_ignore_ascii_case("all6") {
                return Ok(AddrSel::All(Some(Family::V6)));
            }
        }
        let bad = || {
            self.err(
                t.pos,
                format!(
                    "expected {}an address, address/prefix_length or address-address, found '{s}'",
                    if allow_all { "all, all4, all6, " } else { "" }
                ),
            )
        };
        if let Some((a, len)) = s.split_once('/') {
            let a: IpAddr = a.parse().map_err(|_| bad())?;
            let max = if a.is_ipv4() { 32 } else { 128 };
            return len
                .parse::<u8>()
                .ok()
                .and_then(|l| AddrRange::prefix(a, l))
                .map(AddrSel::Range)
                .ok_or_else(|| {
                    self.err(
                        t.pos,
                        format!("prefix length must be 0 to {max}, found '{len}'"),
                    )
                });
        }
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.parse().map_err(|_| bad())?;
            let b: IpAddr = b.parse().map_err(|_| bad())?;
            return AddrRange::range(a, b).map(AddrSel::Range).ok_or_else(|| {
                self.err(t.pos, format!("the range {a}-{b} must run from the lower to the higher address of one family"))
            });
        }
        s.parse()
            .map(|a| AddrSel::Range(AddrRange::host(a)))
            .map_err(|_| bad())
    }

    // -----------------------------------------------------------------------
    // IpService

    fn service_ref(&mut self, t: &Token) -> R<Service> {
        let def = self.defs.services.get(&t.text).copied().ok_or_else(|| {
            self.err(
                t.pos,
                format!("IpServiceRef {}: no IpService of that name", t.text),
            )
        })?;
        self.service(def.children(), def.key)
    }

    fn service(&mut self, children: &'a [Node<'a>], at: &Token) -> R<Service> {
        let mut svc = Service::default();
        let mut src_ports: Option<(PortRange, Pos)> = None;
        let mut dst_ports: Option<(PortRange, Pos)> = None;
        let mut types: Option<(PortRange, Pos)> = None;
        let mut codes: Option<(PortRange, Pos)> = None;
        for p in Self::params(children, SERVICE_PARAMS) {
            self.no_block(&p)?;
            let k = p.key;
            if k.is_word("Protocol") {
                let t = self.value(
                    &p,
                    0,
                    "a protocol (all, tcp, udp, icmp, icmpv6, ospf, igmp, esp, ah, gre or 0-255)",
                )?;
                self.extra(&p, 1);
                svc.protocol = self.protocol(t)?;
            } else if k.is_word("SourcePortRange") {
                src_ports = Some((self.range_param(&p, 65535)?, k.pos));
            } else if k.is_word("DestinationPortRange") {
                dst_ports = Some((self.range_param(&p, 65535)?, k.pos));
            } else if k.is_word("Type") {
                types = Some((self.range_param(&p, 255)?, k.pos));
            } else if k.is_word("Code") {
                codes = Some((self.range_param(&p, 255)?, k.pos));
            } else if k.is_word("Direction") {
                let t = self.value(&p, 0, "bidirectional, inbound or outbound")?;
                if t.is_word("bidirectional") {
                    svc.direction = Direction::Bidirectional;
                    match p.values.get(1) {
                        Some(c) if c.is_word("InboundConnect") => {
                            svc.connect = Some(ConnectDir::Inbound)
                        }
                        Some(c) if c.is_word("OutboundConnect") => {
                            svc.connect = Some(ConnectDir::Outbound)
                        }
                        Some(c) => {
                            return Err(self.err(
                                c.pos,
                                format!("expected InboundConnect or OutboundConnect after bidirectional, found '{}'", c.text),
                            ));
                        }
                        None => {}
                    }
                    self.extra(&p, 2);
                } else if t.is_word("inbound") {
                    svc.direction = Direction::Inbound;
                    self.extra(&p, 1);
                } else if t.is_word("outbound") {
                    svc.direction = Direction::Outbound;
                    self.extra(&p, 1);
                } else {
                    return Err(self.err(
                        t.pos,
                        format!(
                            "Direction must be bidirectional, inbound or outbound, found '{}'",
                            t.text
                        ),
                    ));
                }
            } else if k.is_word("Routing") {
                let t = self.value(&p, 0, "local, routed or either")?;
                self.extra(&p, 1);
                svc.routing = if t.is_word("local") {
                    Routing::Local
                } else if t.is_word("routed") {
                    Routing::Routed
                } else if t.is_word("either") {
                    Routing::Either
                } else {
                    return Err(self.err(
                        t.pos,
                        format!(
                            "Routing must be local, routed or either, found '{}'",
                            t.text
                        ),
                    ));
                };
            } else if k.is_word("SecurityClass") {
                let t = self.value(&p, 0, "a security class (0-255)")?;
                self.extra(&p, 1);
                let v = lex::parse_u32_in(&self.file, t, "SecurityClass", 0, 255)?;
                svc.secclass = u8::try_from(v).unwrap_or(0);
            } else {
                return Err(self.unknown(&p, "IpService", SERVICE_PARAMS));
            }
        }
        let proto_name = |p: Option<u8>| p.map_or_else(|| "all".to_owned(), |n| n.to_string());
        match svc.protocol {
            Some(proto::TCP | proto::UDP) => {
                if let Some((_, pos)) = types.or(codes) {
                    return Err(self.err(
                        pos,
                        "Type and Code apply only to ICMP, ICMPv6 and OSPF services",
                    ));
                }
                svc.l4 = L4Match::Ports {
                    src: src_ports.map_or(PortRange::ANY, |r| r.0),
                    dst: dst_ports.map_or(PortRange::ANY, |r| r.0),
                };
            }
            other => {
                if let Some((_, pos)) = src_ports.or(dst_ports) {
                    return Err(self.err(
                        pos,
                        format!(
                            "port ranges apply only to TCP and UDP services, not protocol {}",
                            proto_name(other)
                        ),
                    ));
                }
                match other {
                    Some(proto::ICMP | proto::ICMPV6) => {
                        svc.l4 = L4Match::Icmp {
                            types: types.map_or(PortRange::ANY_U8, |r| r.0),
                            codes: codes.map_or(PortRange::ANY_U8, |r| r.0),
                        };
                    }
                    Some(proto::OSPF) => {
                        if let Some((_, pos)) = codes {
                            return Err(self.err(pos, "Code does not apply to OSPF (use Type)"));
                        }
                        svc.l4 = L4Match::Ospf {
                            types: types.map_or(PortRange::ANY_U8, |r| r.0),
                        };
                    }
                    _ => {
                        if let Some((_, pos)) = types.or(codes) {
                            return Err(self.err(
                                pos,
                                format!("Type and Code apply only to ICMP, ICMPv6 and OSPF services, not protocol {}", proto_name(other)),
                            ));
                        }
                    }
                }
            }
        }
        if svc.connect.is_some() && svc.protocol.is_some_and(|p| p != proto::TCP) {
            return Err(self.err(
                at.pos,
                "InboundConnect/OutboundConnect apply only to TCP (or all-protocol) services",
            ));
        }
        Ok(svc)
    }

    fn protocol(&self, t: &Token) -> R<Option<u8>> {
        let named: &[(&str, Option<u8>)] = &[
            ("all", None),
            ("tcp", Some(proto::TCP)),
            ("udp", Some(proto::UDP)),
            ("icmp", Some(proto::ICMP)),
            ("icmpv6", Some(proto::ICMPV6)),
            ("ospf", Some(proto::OSPF)),
            ("igmp", Some(proto::IGMP)),
            ("esp", Some(proto::ESP)),
            ("ah", Some(proto::AH)),
            ("gre", Some(47)),
        ];
        if let Some((_, v)) = named.iter().find(|(n, _)| t.is_word(n)) {
            return Ok(*v);
        }
        let v = lex::parse_u32_in(&self.file, t, "Protocol", 0, 255).map_err(|_| {
            self.err(
                t.pos,
                format!("Protocol must be all, tcp, udp, icmp, icmpv6, ospf, igmp, esp, ah, gre or a number 0-255, found '{}'", t.text),
            )
        })?;
        Ok(u8::try_from(v).ok())
    }

    /// `p`, `p q`, `p-q` or `p:q`; for ports, `0` alone means all.
    fn range_param(&mut self, p: &Param<'a>, max: u32) -> R<PortRange> {
        let t = self.value(p, 0, "a number or a range")?;
        let what = p.key.text.as_str();
        let parse = |s: &str, pos: Pos| -> R<u16> {
            let tok = Token {
                kind: lex::TokenKind::Word,
                text: s.to_owned(),
                pos,
            };
            let v = lex::parse_u32_in(&self.file, &tok, what, 0, max)?;
            u16::try_from(v).map_err(|_| self.err(pos, format!("{what} is out of range")))
        };
        let (lo, hi, used) = if let Some((a, b)) = t.text.split_once(['-', ':']) {
            (parse(a, t.pos)?, parse(b, t.pos)?, 1)
        } else if let Some(u) = p
            .values
            .get(1)
            .filter(|u| u.text.bytes().all(|b| b.is_ascii_digit()))
        {
            (parse(&t.text, t.pos)?, parse(&u.text, u.pos)?, 2)
        } else {
            let v = parse(&t.text, t.pos)?;
            if v == 0 && max == 65535 {
                // SourcePortRange 0 / DestinationPortRange 0: all ports.
                self.extra(p, 1);
                return Ok(PortRange::ANY);
            }
            (v, v, 1)
        };
        self.extra(p, used);
        if hi < lo {
            return Err(self.err(
                t.pos,
                format!("{what} {lo} {hi} must run from the lower to the higher value"),
            ));
        }
        Ok(PortRange { lo, hi })
    }

    // -----------------------------------------------------------------------
    // IpGenericFilterAction

    fn generic_action(&mut self, children: &'a [Node<'a>], at: Pos) -> R<GenericAction> {
        let mut action = None;
        let mut log = LogMode::None;
        let mut log_pos = None;
        let mut discard = DiscardAction::Silent;
        for p in Self::params(children, ACTION_PARAMS) {
            self.no_block(&p)?;
            let k = p.key;
            if k.is_word("IpFilterAction") {
                let t = self.value(&p, 0, "Permit, Deny or IpSec")?;
                self.extra(&p, 1);
                action = Some(if t.is_word("permit") {
                    GenericKind::Permit
                } else if t.is_word("deny") {
                    GenericKind::Deny
                } else if t.is_word("ipsec") {
                    GenericKind::IpSec
                } else {
                    return Err(self.err(
                        t.pos,
                        format!(
                            "IpFilterAction must be Permit, Deny or IpSec, found '{}'",
                            t.text
                        ),
                    ));
                });
            } else if k.is_word("IpFilterLogging") {
                let t = self.value(&p, 0, "Yes, No, LogPermit or LogDeny")?;
                log_pos = Some(t.pos);
                let mut permit = false;
                let mut deny = false;
                let mut yes = false;
                for v in &p.values {
                    if v.is_word("yes") {
                        yes = true;
                    } else if v.is_word("no") {
                        yes = false;
                    } else if v.is_word("logpermit") {
                        permit = true;
                    } else if v.is_word("logdeny") {
                        deny = true;
                    } else {
                        return Err(self.err(
                            v.pos,
                            format!(
                                "IpFilterLogging takes Yes, No, LogPermit or LogDeny, found '{}'",
                                v.text
                            ),
                        ));
                    }
                }
                log = match (yes, permit, deny) {
                    (_, true, true) | (true, false, false) => LogMode::All,
                    (_, true, false) => LogMode::Permit,
                    (_, false, true) => LogMode::Deny,
                    (false, false, false) => LogMode::None,
                };
            } else if k.is_word("DiscardAction") {
                discard = self.discard(&p)?;
                self.extra(&p, 1);
            } else {
                return Err(self.unknown(&p, "IpGenericFilterAction", ACTION_PARAMS));
            }
        }
        let action = action.ok_or_else(|| {
            self.err(
                at,
                "IpGenericFilterAction needs IpFilterAction Permit, Deny or IpSec",
            )
        })?;
        if action != GenericKind::IpSec && matches!(log, LogMode::Permit | LogMode::Deny) {
            let pos = log_pos.unwrap_or(at);
            return Err(self.err(
                pos,
                "LogPermit and LogDeny apply only to IpFilterAction IpSec; use Yes or No",
            ));
        }
        Ok(GenericAction {
            action,
            log,
            discard,
        })
    }
}

impl<'a> Param<'a> {
    /// An inline statement (`IpAddr { Addr … }` inside a group).
    fn stmt_inline(&self) -> Stmt<'a> {
        Stmt {
            key: self.key,
            name: None,
            block: self.block,
        }
    }
}

/// The ranges of family `f` a rule side admits: `Some(empty)` for "any",
/// `None` if the side has nothing of that family.
fn side_for(sels: &[AddrSel], f: Family) -> Option<Vec<AddrRange>> {
    let mut ranges = Vec::new();
    for s in sels {
        match *s {
            AddrSel::All(None) => return Some(Vec::new()),
            AddrSel::All(Some(g)) if g == f => return Some(Vec::new()),
            AddrSel::All(Some(_)) => {}
            AddrSel::Range(r) if r.family() == f => ranges.push(r),
            AddrSel::Range(_) => {}
        }
    }
    (!ranges.is_empty()).then_some(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> FilterPolicy {
        parse("pagent.conf", src).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errs(src: &str) -> Vec<String> {
        parse("pagent.conf", src)
            .expect_err("expected errors")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const NSS_SAMPLE: &str = "
IpFilterPolicy
{
  IpFilterRuleRef NssTrafficIPv4
  IpFilterRuleRef NssTrafficIPv6
}
IpFilterRule             NssTrafficIPv4
{
    IpSourceAddr             all4
    IpDestAddr               all4
    IpService
    {
       SourcePortRange        1024 65535
       DestinationPortRange   4159
       Protocol               tcp
       Direction              bidirectional OutboundConnect
       Routing                local
    }
    IpGenericFilterActionRef  permit-nolog
}
IpFilterRule             NssTrafficIPv6
{
   IpSourceAddr             all6
   IpDestAddr               all6
   IpService
   {
      SourcePortRange        1024 65535
      DestinationPortRange   4159
      Protocol               tcp
      Direction              bidirectional InboundConnect
      Routing                local
   }
   IpGenericFilterActionRef  permit-nolog
}
IpGenericFilterAction     permit-nolog
{
   IpFilterAction           permit
   IpFilterLogging          no
}
";

    #[test]
    fn the_nss_sample_from_the_iked_documentation() {
        let p = ok(NSS_SAMPLE);
        assert!(p.set.log_enabled);
        assert!(!p.set.log_implicit);
        assert!(p.allow_on_demand);
        let r = &p.set.rules;
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name, "NssTrafficIPv4");
        assert_eq!(r[0].family, Family::V4);
        assert!(r[0].src.is_empty() && r[0].dst.is_empty());
        assert_eq!(r[0].protocol, Some(proto::TCP));
        assert_eq!(
            r[0].l4,
            L4Match::Ports {
                src: PortRange {
                    lo: 1024,
                    hi: 65535
                },
                dst: PortRange::single(4159)
            }
        );
        assert_eq!(r[0].direction, Direction::Bidirectional);
        assert_eq!(r[0].connect, Some(ConnectDir::Outbound));
        assert_eq!(r[0].routing, Routing::Local);
        assert_eq!(r[0].action, FilterAction::Permit);
        assert_eq!(r[0].log, LogMode::None);
        assert_eq!(r[1].family, Family::V6);
        assert_eq!(r[1].connect, Some(ConnectDir::Inbound));
        assert_eq!(r[1].pos.line, 21);
    }

    #[test]
    fn every_address_form_and_reference() {
        let p = ok("
IpFilterPolicy { FilterLogging off FilterLogImplicit yes
  ImplicitDiscardAction ICMP
  AllowOnDemand no
  IpFilterRuleRef r1
  IpFilterGroupRef g
}
IpFilterGroup g { IpFilterRuleRef r2
  IpFilterRule r3 { IpSourceAddrRange 10.0.0.1 10.0.0.9 IpDestAddrRange 10.0.1.1-10.0.1.2 IpGenericFilterActionRef deny }
}
IpFilterRule r1 { IpSourceAddr 10.1.0.0/16
  IpDestAddrSet 10.2.0.0-10.2.0.255
  IpGenericFilterActionRef deny }
IpFilterRule r2 {
  IpSourceAddrRef host
  IpDestAddrGroupRef grp
  IpGenericFilterActionRef deny
}
IpAddr host { Addr 192.0.2.7 }
IpAddrSet net { Prefix 198.51.100.0/24 }
IpAddrGroup grp
{
  IpAddr { Addr 203.0.113.5 }
  IpAddrRef host
  IpAddrSet { Range 203.0.113.10 203.0.113.20 }
  IpAddrSetRef net
}
IpGenericFilterAction deny { IpFilterAction deny IpFilterLogging yes DiscardAction silent }
");
        assert!(!p.set.log_enabled);
        assert!(p.set.log_implicit);
        assert!(!p.allow_on_demand);
        assert_eq!(p.implicit_discard, DiscardAction::Icmp);
        let r = &p.set.rules;
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["r1", "r2", "r3"]);
        assert_eq!(
            r[0].src,
            vec![AddrRange::prefix(a("10.1.0.0"), 16).unwrap()]
        );
        assert_eq!(
            r[0].dst,
            vec![AddrRange::prefix(a("10.2.0.0"), 24).unwrap()]
        );
        assert_eq!(r[0].action, FilterAction::Deny);
        assert_eq!(r[0].log, LogMode::All);
        assert_eq!(r[0].protocol, None);
        assert_eq!(r[1].src, vec![AddrRange::host(a("192.0.2.7"))]);
        assert_eq!(
            r[1].dst,
            vec![
                AddrRange::host(a("203.0.113.5")),
                AddrRange::host(a("192.0.2.7")),
                AddrRange::range(a("203.0.113.10"), a("203.0.113.20")).unwrap(),
                AddrRange::prefix(a("198.51.100.0"), 24).unwrap(),
            ]
        );
        assert_eq!(
            r[2].src,
            vec![AddrRange::range(a("10.0.0.1"), a("10.0.0.9")).unwrap()]
        );
        assert_eq!(
            r[2].dst,
            vec![AddrRange::range(a("10.0.1.1"), a("10.0.1.2")).unwrap()]
        );
    }

    #[test]
    fn all_addresses_generate_one_filter_per_family_and_service() {
        let p = ok("
IpFilterPolicy { IpFilterRuleRef any }
IpService ssh { Protocol tcp DestinationPortRange 22 Direction inbound Routing either SecurityClass 9 }
IpServiceGroup mgmt { IpServiceRef ssh
  IpService { Protocol icmp Type 8 Code 0 Direction outbound }
  IpService { Protocol icmpv6 Type 128 135 }
  IpService { Protocol ospf Type 1 }
}
IpFilterRule any { IpServiceGroupRef mgmt IpGenericFilterActionRef p }
IpGenericFilterAction p { IpFilterAction permit }
");
        let r = &p.set.rules;
        let got: Vec<_> = r.iter().map(|r| (r.family, r.protocol)).collect();
        assert_eq!(
            got,
            [
                (Family::V4, Some(proto::TCP)),
                (Family::V4, Some(proto::ICMP)),
                (Family::V4, Some(proto::OSPF)),
                (Family::V6, Some(proto::TCP)),
                (Family::V6, Some(proto::ICMPV6)),
                (Family::V6, Some(proto::OSPF)),
            ]
        );
        assert_eq!(r[0].direction, Direction::Inbound);
        assert_eq!(r[0].routing, Routing::Either);
        assert_eq!(r[0].secclass, 9);
        assert_eq!(
            r[0].l4,
            L4Match::Ports {
                src: PortRange::ANY,
                dst: PortRange::single(22)
            }
        );
        assert_eq!(
            r[1].l4,
            L4Match::Icmp {
                types: PortRange::single(8),
                codes: PortRange::single(0)
            }
        );
        assert_eq!(r[1].direction, Direction::Outbound);
        assert_eq!(
            r[4].l4,
            L4Match::Icmp {
                types: PortRange { lo: 128, hi: 135 },
                codes: PortRange::ANY_U8
            }
        );
        assert_eq!(
            r[2].l4,
            L4Match::Ospf {
                types: PortRange::single(1)
            }
        );
    }

    #[test]
    fn ipsec_actions_and_logging_modes() {
        let p = ok("
IpFilterPolicy { IpFilterRuleRef tun IpFilterRuleRef man }
IpFilterRule tun { IpSourceAddr 10.1.0.0/16 IpDestAddr 10.2.0.0/16
  IpGenericFilterActionRef ipsec IpDynVpnActionRef dyn1 IpLocalStartActionRef ls }
IpFilterRule man { IpSourceAddr fd00:1::/64 IpDestAddr fd00:2::/64
  IpGenericFilterAction { IpFilterAction ipsec IpFilterLogging LogDeny }
  IpManVpnActionRef m1 }
IpGenericFilterAction ipsec { IpFilterAction IpSec IpFilterLogging Yes LogPermit }
IpDynVpnAction dyn1 { }
IpManVpnAction m1 { }
IpLocalStartAction ls { }
KeyExchangeRule k { }
");
        let r = &p.set.rules;
        assert_eq!(
            r[0].action,
            FilterAction::IpSec {
                vpn_action: "dyn1".into(),
                manual: false
            }
        );
        assert_eq!(r[0].log, LogMode::Permit);
        assert_eq!(
            r[1].action,
            FilterAction::IpSec {
                vpn_action: "m1".into(),
                manual: true
            }
        );
        assert_eq!(r[1].log, LogMode::Deny);
        assert_eq!(r[1].family, Family::V6);
    }

    #[test]
    fn without_a_rule_list_every_rule_is_used_in_file_order() {
        let p = ok("
IpFilterRule b { IpGenericFilterActionRef p }
IpFilterRule a { IpGenericFilterActionRef p }
IpFilterPolicy { FilterLogging yes }
IpGenericFilterAction p { IpFilterAction permit }
");
        let names: Vec<_> = p.set.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b", "b", "a", "a"]);
        assert!(
            p.notices
                .iter()
                .any(|n| n.message.contains("order written"))
        );
    }

    #[test]
    fn trailing_text_is_ignored_with_a_notice() {
        let p = ok("
IpFilterPolicy { IpFilterRuleRef r }
IpFilterRule r { IpSourceAddrRef h
  IpGenericFilterActionRef p }
IpAddr h { Addr 10.1.0.2 ZOSA }
IpGenericFilterAction p { IpFilterAction permit }
");
        assert_eq!(p.notices.len(), 1);
        assert_eq!(
            p.notices[0].to_string(),
            "pagent.conf:5:26: text after the value of Addr is ignored"
        );
    }

    #[test]
    fn errors_name_file_line_column_and_what_was_expected() {
        let base = "IpGenericFilterAction p { IpFilterAction permit }\n";
        let cases: &[(&str, &str)] = &[
            (
                "IpFilterRule r { IpGenericFilterActionRef p }\n",
                "pagent.conf:1:1: no IpFilterPolicy statement",
            ),
            (
                "IpFilterPolicy { }\n",
                "pagent.conf:1:1: IpFilterPolicy lists no IpFilterRule and the file defines none",
            ),
            (
                "IpFilterPolicy\n",
                "pagent.conf:1:1: IpFilterPolicy needs a '{ … }' block",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef nope }\n",
                "pagent.conf:1:34: IpFilterRuleRef nope: no IpFilterRule of that name",
            ),
            (
                "IpFilterPolicy { Bogus 1 }\n",
                "pagent.conf:1:18: unknown parameter 'Bogus' in IpFilterPolicy; expected one of FilterLogging",
            ),
            (
                "IpFilterPolicy { FilterLogging maybe }\n",
                "pagent.conf:1:32: FilterLogging must be Yes or No, found 'maybe'",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { }\n",
                "pagent.conf:2:1: IpFilterRule r needs an IpGenericFilterActionRef",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef q }\n",
                "pagent.conf:2:43: IpGenericFilterActionRef q: no IpGenericFilterAction of that name",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpSourceAddr 10.0.0.999 IpGenericFilterActionRef p }\n",
                "pagent.conf:2:31: expected all, all4, all6, an address",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpSourceAddr 10.0.0.0/40 IpGenericFilterActionRef p }\n",
                "pagent.conf:2:31: prefix length must be 0 to 32, found '40'",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpSourceAddr 10.0.0.9-10.0.0.1 IpGenericFilterActionRef p }\n",
                "pagent.conf:2:31: the range 10.0.0.9-10.0.0.1 must run from the lower to the higher address",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpSourceAddr all4 IpDestAddr fd00::1 IpGenericFilterActionRef p }\n",
                "pagent.conf:2:1: IpFilterRule r: the source and destination addresses are of different families",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpSourceAddr all4\n IpSourceAddr all6 IpGenericFilterActionRef p }\n",
                "pagent.conf:3:2: IpSourceAddr: the source addresses are already given at line 2",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Protocol tcp Type 3 } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:43: Type and Code apply only to ICMP",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Protocol udp SourcePortRange 70000 } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:59: SourcePortRange must be a whole number from 0 to 65535",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Protocol 47 DestinationPortRange 3 } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:42: port ranges apply only to TCP and UDP services, not protocol 47",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Protocol tcp SourcePortRange 9 3 } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:59: SourcePortRange 9 3 must run from the lower to the higher value",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Protocol xyz } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:39: Protocol must be all, tcp",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Direction sideways } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:40: Direction must be bidirectional, inbound or outbound, found 'sideways'",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Direction bidirectional Sometimes } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:54: expected InboundConnect or OutboundConnect after bidirectional",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Protocol udp Direction bidirectional InboundConnect } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:18: InboundConnect/OutboundConnect apply only to TCP",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Routing nowhere } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:38: Routing must be local, routed or either, found 'nowhere'",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { SecurityClass 300 } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:44: SecurityClass must be a whole number from 0 to 255",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Colour red } IpGenericFilterActionRef p }\n",
                "pagent.conf:2:30: unknown parameter 'Colour' in IpService",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef i }\nIpGenericFilterAction i { IpFilterAction ipsec }\n",
                "pagent.conf:2:1: IpFilterRule r: IpFilterAction IpSec needs an IpDynVpnActionRef or IpManVpnActionRef",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef p IpDynVpnActionRef d }\nIpDynVpnAction d { }\n",
                "pagent.conf:2:45: IpFilterRule r: a VPN action needs IpFilterAction IpSec",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpDynVpnActionRef nope }\n",
                "pagent.conf:2:36: IpDynVpnActionRef nope: no IpDynVpnAction of that name in this file",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef p IpTimeConditionRef t }\n",
                "pagent.conf:2:45: IpTimeConditionRef is not supported",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef x }\nIpGenericFilterAction x { IpFilterAction permit IpFilterLogging LogPermit }\n",
                "pagent.conf:3:65: LogPermit and LogDeny apply only to IpFilterAction IpSec",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef x }\nIpGenericFilterAction x { IpFilterLogging yes }\n",
                "pagent.conf:3:1: IpGenericFilterAction needs IpFilterAction",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef x }\nIpGenericFilterAction x { IpFilterAction allow }\n",
                "pagent.conf:3:42: IpFilterAction must be Permit, Deny or IpSec, found 'allow'",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef p }\nIpFilterRule r { IpGenericFilterActionRef p }\n",
                "pagent.conf:3:1: IpFilterRule r is defined twice (first at line 2)",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule -r { IpGenericFilterActionRef p }\n",
                "pagent.conf:2:14: IpFilterRule name '-r' must not start with '-' or contain ','",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule abcdefghijabcdefghijabcdefghijabc { }\n",
                "pagent.conf:2:14: IpFilterRule name must be 1 to 32 characters",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef p }\nIpFilterThing z { }\n",
                "pagent.conf:3:1: unknown statement 'IpFilterThing'; expected one of IpFilterPolicy",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef p\n",
                "pagent.conf:2:16: this '{' is not closed",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpGenericFilterActionRef p }\n",
                "pagent.conf:2:1: only one IpFilterPolicy is allowed (the first is at line 1)",
            ),
            (
                "IpFilterPolicy { IpFilterGroupRef g }\nIpFilterGroup g { IpFilterGroupRef g }\n",
                "pagent.conf:2:36: IpFilterGroup references nest too deeply",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpSourceAddrGroupRef g IpGenericFilterActionRef p }\nIpAddrGroup g { }\n",
                "pagent.conf:3:1: IpAddrGroup g is empty",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpSourceAddrSetRef s IpGenericFilterActionRef p }\nIpAddrSet s { Prefix 10.0.0.1 }\n",
                "pagent.conf:3:22: Prefix must be address/length",
            ),
            (
                "IpFilterPolicy { IpFilterRuleRef r }\nIpFilterRule r { IpService { Protocol icmpv6 } IpSourceAddr all4 IpGenericFilterActionRef p }\n",
                "pagent.conf:2:1: IpFilterRule r: its services",
            ),
        ];
        let mut bad = Vec::new();
        for (src, want) in cases {
            let full = format!("{src}{base}");
            let got = errs(&full);
            if !got.iter().any(|e| e.starts_with(want)) {
                bad.push(format!("for {src:?}\n  got:  {got:?}\n  want: {want}…"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    #[test]
    fn ike_statements_are_left_to_ike_policy_and_it_skips_ours() {
        let src = format!(
            "{NSS_SAMPLE}\nKeyExchangeRule k {{ }}\nIpDataOffer o {{ }}\nIpDynVpnAction d {{ }}\n"
        );
        let p = ok(&src);
        assert_eq!(p.set.rules.len(), 2);
    }
}
