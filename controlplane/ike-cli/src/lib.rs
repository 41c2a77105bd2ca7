//! `ike`: the AIX IKE tunnel command (`ike cmd=activate|list|remove|log`) for gatekey.
//!
//! AIX administrators start, list and remove IKE tunnels with `ike cmd=…` (AIX System
//! Management Guide, "Configuring IKE Tunnels"); this front end takes the same parameters
//! and maps them onto NMI requests to iked, exactly as `ipsec -k`/`-y` does:
//!
//! | `ike` | NMI |
//! |---|---|
//! | `cmd=activate numlist=RULE[,…]` | `ACT_IPTUNDYN` (LocalDynVpnRule), or `ACT_IKETUN` with `phase=1` (KeyExchangeRule) |
//! | `cmd=activate numlist=N[,…]` | `REFRESH_IPTUNDYN` of `Y<N>` (or `REFRESH_IKETUN` of `K<N>` with `phase=1`): renegotiate |
//! | `cmd=activate remid=ID` / `ipaddr=[SRC,]DST` | `ACT_IKETUN` with the peer identity / address |
//! | `cmd=list [phase=1\|2\|1+2] [numlist=…] [verbose]` | `GET_IKETUN`, `GET_IPTUNDYNIKE` |
//! | `cmd=remove [phase=…] numlist=N[,…]\|all` | `DEACT_IPTUNDYN` of `Y<N>`, `DEACT_IKETUN` of `K<N>` |
//!
//! Tunnel numbers are gatekey's tunnel IDs without their letter: phase 1 tunnel `n` is
//! `K<n>`, phase 2 tunnel `n` is `Y<n>` (AIX: "each activation creates a unique tunnel
//! number"). `stack=NAME` (or `-p NAME`) picks the stack; the socket is `/run/iked/ipsecmgmt`
//! unless `IKE_IKED_SOCKET` or `IPSEC_IKED_SOCKET` names another. `list verbose` prints the
//! fields of the AIX output, labels included (even AIX's "Remote Portocol").
//!
//! The man page `ike.1` (example `ike-gen`, run by `cargo xtask man`) is written from
//! [`USAGE`], [`PARAMETERS`], [`exit`] and [`SOCKET_ENV`], the same items the command uses.
//!
//! Depends on `gatekey-nmi` alone, like `ipsec` (clap_mangen only for the example).

use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use gatekey_nmi::records::{
    IdType, IkeState, IkeTunnelRecord, IpTunnelRecord, Role, SaState, Selection, TunnelControl,
    TunnelRef, TunnelStatus,
};
use gatekey_nmi::{Client, Error, IKED_SOCKET, Request, Response, Target};

/// Exit codes (the `ipsec` command's).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A request was refused or a tunnel could not be acted on.
    pub const FAILED: i32 = 1;
    /// Bad command line.
    pub const USAGE: i32 = 2;
    /// iked is not reachable.
    pub const UNREACHABLE: i32 = 6;
    /// The session broke.
    pub const PROTOCOL: i32 = 7;
}

/// The usage text `ike --help` (and any bad command line) prints; also the
/// SYNOPSIS of the man page `ike.1` (example `ike-gen`, `cargo xtask man`).
pub const USAGE: &str = "usage: ike cmd=activate [phase=1|2] [numlist=RULE|N[,…]] [remid=ID] [ipaddr=[SRC,]DST] [stack=NAME]
       ike cmd=list [phase=1|2|1+2] [numlist=N[,…]] [verbose] [stack=NAME]
       ike cmd=remove [phase=1|2|1+2] numlist=N[,…]|all [stack=NAME]
       ike cmd=log
Phase 1 tunnel N is gatekey's K<N>, phase 2 tunnel N is Y<N>; RULE names a LocalDynVpnRule
(phase 2) or, with phase=1, a KeyExchangeRule.";

/// One command-line parameter of `ike`, as the man page `ike.1` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// How it is written (`phase=1|2|1+2`).
    pub syntax: &'static str,
    /// Another spelling [`parse`] accepts for it, if any.
    pub alias: Option<&'static str>,
    /// What it does.
    pub help: &'static str,
}

/// Every parameter [`parse`] accepts (the tests hold the two together), for the man page.
pub const PARAMETERS: &[Param] = &[
    Param {
        syntax: "cmd=activate|list|remove|log",
        alias: None,
        help: "The action (required). activate starts tunnels, or renegotiates existing ones; \
               list shows them; remove stops them; log tells where IKE logging is set \
               (IkeSyslogLevel in iked.conf, syslog facility local4).",
    },
    Param {
        syntax: "phase=1|2|1+2",
        alias: None,
        help: "Which tunnels: 1 = key management (the IKE SA; phase 1 tunnel N is gatekey's K<N> \
               in ipsec -k display), 2 = data management (the IPsec SAs; phase 2 tunnel N is \
               Y<N> in ipsec -y display), 1+2 = both (the default). With cmd=activate, phase=1 \
               makes numlist= name KeyExchangeRules and phase 1 tunnel numbers.",
    },
    Param {
        syntax: "numlist=RULE|N[,…]",
        alias: Some("tid=RULE|N[,…]"),
        help: "Tunnels, comma-separated. A number N is an existing tunnel (cmd=activate \
               renegotiates it, cmd=remove stops it, cmd=list shows only it); a name (cmd=activate \
               only) is a LocalDynVpnRule, or with phase=1 a KeyExchangeRule, to start a tunnel \
               from; all in the list stands for every tunnel (cmd=remove).",
    },
    Param {
        syntax: "all",
        alias: None,
        help: "With cmd=remove: every tunnel of the chosen phases, phase 2 tunnels first.",
    },
    Param {
        syntax: "remid=ID",
        alias: None,
        help: "With cmd=activate: start a phase 1 tunnel to the peer with this IKE identity.",
    },
    Param {
        syntax: "ipaddr=[SRC,]DST",
        alias: None,
        help: "With cmd=activate: start a phase 1 tunnel to the peer at address DST (SRC is only \
               checked to be an IP address).",
    },
    Param {
        syntax: "verbose",
        alias: None,
        help: "With cmd=list: one block per tunnel with the fields and labels of AIX's output, \
               instead of the lists of tunnel numbers.",
    },
    Param {
        syntax: "stack=NAME",
        alias: Some("-p NAME"),
        help: "The stack (network namespace name) whose tunnels to act on; default: iked's \
               default stack.",
    },
];

/// Environment variables naming iked's NMI socket, the first set one wins (default
/// [`IKED_SOCKET`]).
pub const SOCKET_ENV: [&str; 2] = ["IKE_IKED_SOCKET", "IPSEC_IKED_SOCKET"];

/// The subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Start tunnels.
    Activate,
    /// Show tunnels.
    List,
    /// Stop tunnels.
    Remove,
    /// Logging settings.
    Log,
}

/// Which phases a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Key management (IKE SA).
    One,
    /// Data management (IPsec SAs).
    Two,
    /// Both (the default).
    Both,
}

impl Phase {
    fn one(self) -> bool {
        matches!(self, Self::One | Self::Both)
    }

    fn two(self) -> bool {
        matches!(self, Self::Two | Self::Both)
    }
}

/// One `numlist` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A tunnel number.
    Number(u32),
    /// A rule name.
    Name(String),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Subcommand.
    pub cmd: Cmd,
    /// `phase=`.
    pub phase: Phase,
    /// `numlist=` / `tid=`.
    pub items: Vec<Item>,
    /// `all` (remove).
    pub all: bool,
    /// `remid=`.
    pub remid: Option<String>,
    /// `ipaddr=` destination (the source is only checked).
    pub ipaddr: Option<IpAddr>,
    /// `verbose`.
    pub verbose: bool,
    /// `stack=` / `-p`.
    pub stack: Option<String>,
}

/// Parses `ike` arguments.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut cmd = None;
    let mut c = Command {
        cmd: Cmd::List,
        phase: Phase::Both,
        items: Vec::new(),
        all: false,
        remid: None,
        ipaddr: None,
        verbose: false,
        stack: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-p" {
            c.stack = Some(it.next().ok_or("-p needs a stack name")?.clone());
            continue;
        }
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (a.to_ascii_lowercase(), None),
        };
        let need = |what: &str| {
            v.filter(|v| !v.is_empty())
                .ok_or(format!("{what}= needs a value"))
        };
        match k.as_str() {
            "cmd" => {
                cmd = Some(match need("cmd")?.to_ascii_lowercase().as_str() {
                    "activate" => Cmd::Activate,
                    "list" => Cmd::List,
                    "remove" => Cmd::Remove,
                    "log" => Cmd::Log,
                    other => {
                        return Err(format!("unknown cmd={other} (activate, list, remove, log)"));
                    }
                })
            }
            "phase" => {
                c.phase = match need("phase")? {
                    "1" => Phase::One,
                    "2" => Phase::Two,
                    "1+2" | "2+1" => Phase::Both,
                    other => return Err(format!("phase={other}: use 1, 2 or 1+2")),
                }
            }
            "numlist" | "tid" => {
                for x in need(&k)?
                    .split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                {
                    if x.eq_ignore_ascii_case("all") {
                        c.all = true;
                    } else if let Ok(n) = x.parse::<u32>() {
                        c.items.push(Item::Number(n));
                    } else {
                        c.items.push(Item::Name(x.to_string()));
                    }
                }
            }
            "all" if v.is_none() => c.all = true,
            "verbose" if v.is_none() => c.verbose = true,
            "remid" => c.remid = Some(need("remid")?.to_string()),
            "ipaddr" => {
                let v = need("ipaddr")?;
                let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                let parse_ip = |s: &str| {
                    s.parse::<IpAddr>()
                        .map_err(|_| format!("ipaddr={v}: {s} is not an IP address"))
                };
                c.ipaddr = Some(match parts.as_slice() {
                    [dst] => parse_ip(dst)?,
                    [src, dst] => {
                        parse_ip(src)?;
                        parse_ip(dst)?
                    }
                    _ => return Err(format!("ipaddr={v}: use DST or SRC,DST")),
                });
            }
            "stack" => c.stack = Some(need("stack")?.to_string()),
            "-h" | "--help" | "help" => return Err(String::new()),
            _ => return Err(format!("unknown parameter {a}")),
        }
    }
    c.cmd = cmd.ok_or("cmd= is required")?;
    match c.cmd {
        Cmd::Activate => {
            if c.items.is_empty() && c.remid.is_none() && c.ipaddr.is_none() {
                return Err("cmd=activate needs numlist=, remid= or ipaddr=".into());
            }
            if c.all {
                return Err("cmd=activate does not take all".into());
            }
        }
        Cmd::Remove => {
            if c.items.is_empty() && !c.all {
                return Err("cmd=remove needs numlist= or all".into());
            }
            if c.items.iter().any(|i| matches!(i, Item::Name(_))) {
                return Err("cmd=remove takes tunnel numbers (see ike cmd=list)".into());
            }
        }
        Cmd::List | Cmd::Log => {}
    }
    Ok(c)
}

fn tref(name: Option<String>, tunnel_id: Option<String>) -> TunnelRef {
    TunnelRef {
        name,
        tunnel_id,
        remote_id: None,
        remote_address: None,
    }
}

fn control(refs: Vec<TunnelRef>) -> TunnelControl {
    TunnelControl { tunnels: refs }
}

/// The NMI requests an `activate` or `remove` command makes (for `remove all`, after the
/// lists have been read: `p1`/`p2` are the tunnel numbers present).
pub fn control_requests(c: &Command, p1: &[u32], p2: &[u32]) -> Vec<Request> {
    let mut v = Vec::new();
    match c.cmd {
        Cmd::Activate => {
            let (mut names, mut nums) = (Vec::new(), Vec::new());
            for i in &c.items {
                match i {
                    Item::Name(n) => names.push(tref(Some(n.clone()), None)),
                    Item::Number(n) => nums.push(*n),
                }
            }
            if !names.is_empty() {
                v.push(if c.phase == Phase::One {
                    Request::ActIkeTun(control(names))
                } else {
                    Request::ActIpTunDyn(control(names))
                });
            }
            if !nums.is_empty() {
                if c.phase == Phase::One {
                    let r = nums
                        .iter()
                        .map(|n| tref(None, Some(format!("K{n}"))))
                        .collect();
                    v.push(Request::RefreshIkeTun(control(r)));
                } else {
                    let r = nums
                        .iter()
                        .map(|n| tref(None, Some(format!("Y{n}"))))
                        .collect();
                    v.push(Request::RefreshIpTunDyn(control(r)));
                }
            }
            if c.remid.is_some() || c.ipaddr.is_some() {
                v.push(Request::ActIkeTun(control(vec![TunnelRef {
                    name: None,
                    tunnel_id: None,
                    remote_id: c.remid.clone(),
                    remote_address: c.ipaddr,
                }])));
            }
        }
        Cmd::Remove => {
            let nums: Vec<u32> = c
                .items
                .iter()
                .filter_map(|i| match i {
                    Item::Number(n) => Some(*n),
                    Item::Name(_) => None,
                })
                .collect();
            let (n2, n1) = if c.all {
                (p2.to_vec(), p1.to_vec())
            } else {
                (nums.clone(), nums)
            };
            // Phase 2 first, then the IKE SAs that carried them.
            if c.phase.two() && !n2.is_empty() {
                for chunk in n2.chunks(64) {
                    let r = chunk
                        .iter()
                        .map(|n| tref(None, Some(format!("Y{n}"))))
                        .collect();
                    v.push(Request::DeactIpTunDyn(control(r)));
                }
            }
            if c.phase.one() && !n1.is_empty() {
                for chunk in n1.chunks(64) {
                    let r = chunk
                        .iter()
                        .map(|n| tref(None, Some(format!("K{n}"))))
                        .collect();
                    v.push(Request::DeactIkeTun(control(r)));
                }
            }
        }
        Cmd::List | Cmd::Log => {}
    }
    v
}

/// The number of a `K<n>`/`Y<n>` tunnel ID.
pub fn tunnel_number(id: &str) -> Option<u32> {
    id.get(1..).and_then(|n| n.parse().ok())
}

fn id_type(t: Option<IdType>) -> &'static str {
    match t {
        Some(IdType::Ipv4Addr) => "IPv4_Address",
        Some(IdType::Ipv6Addr) => "IPv6_Address",
        Some(IdType::Fqdn) => "Fully_Qualified_Domain_Name",
        Some(IdType::UserFqdn) => "User_FQDN",
        Some(IdType::DerAsn1Dn) => "X500_Distinguished_Name",
        Some(IdType::KeyId) => "KEY_ID",
        _ => "N/A",
    }
}

fn or_na(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("N/A").to_string()
}

fn secs(v: Option<u64>) -> String {
    format!("{} Seconds", v.unwrap_or(0))
}

fn kbytes(v: Option<u64>) -> String {
    format!("{} Kbytes", v.unwrap_or(0) / 1024)
}

fn encr(alg: Option<&str>, bits: Option<u16>) -> String {
    match (alg, bits) {
        (None | Some("DoNot"), _) => "N/A".into(),
        (Some("3DES"), _) => "3DES-CBC".into(),
        (Some(a), Some(b)) => format!("{}-{b}", a.replace('_', "-")),
        (Some(a), None) => a.replace('_', "-"),
    }
}

/// IKEv1 hash name from the integrity or PRF name (`HMAC_SHA2_256_128` → `SHA2-256`).
fn hash_name(r: &IkeTunnelRecord) -> String {
    let src = r
        .pseudo_random_function
        .as_deref()
        .or(r.authentication_algorithm.as_deref());
    match src {
        Some(s) if s.contains("MD5") => "MD5".into(),
        Some(s) if s.contains("SHA2_256") => "SHA2-256".into(),
        Some(s) if s.contains("SHA2_384") => "SHA2-384".into(),
        Some(s) if s.contains("SHA2_512") => "SHA2-512".into(),
        Some(s) if s.contains("SHA") => "SHA1".into(),
        Some(s) => s.to_string(),
        None => "N/A".into(),
    }
}

fn auth_method(m: Option<&str>) -> String {
    match m {
        Some("PresharedKey") => "Preshared Key".into(),
        Some("RsaSignature") => "RSA Signature".into(),
        Some(o) => o.to_string(),
        None => "N/A".into(),
    }
}

fn remaining(at: Option<u64>, now: u64) -> Option<u64> {
    at.map(|t| t.saturating_sub(now))
}

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    out.push_str(&format!("{:<24}{value}\n", format!("{label}:")));
}

/// `ike cmd=list verbose` for one phase 1 tunnel.
pub fn phase1_verbose(r: &IkeTunnelRecord, now: u64) -> String {
    let mut o = String::new();
    let n = tunnel_number(&r.tunnel_id).unwrap_or(0);
    o.push_str(&format!("{:<24}{n}\n", "Phase 1 Tunnel ID"));
    line(&mut o, "Local ID Type", id_type(r.local_id_type));
    line(&mut o, "Local ID", or_na(r.local_id.as_deref()));
    line(&mut o, "Remote ID Type", id_type(r.remote_id_type));
    line(&mut o, "Remote ID", or_na(r.remote_id.as_deref()));
    let mode = match (&r.exchange_mode, r.ike_version.display()) {
        (Some(m), _) => m.display().to_string(),
        (None, v) => format!("IKEv{}", v.trim_end_matches(".0")),
    };
    line(&mut o, "Mode", mode);
    line(
        &mut o,
        "Security Policy",
        or_na(
            r.key_exchange_action_name
                .as_deref()
                .or(r.key_exchange_rule_name.as_deref()),
        ),
    );
    line(
        &mut o,
        "Role",
        if r.role == Role::Initiator {
            "Initiator"
        } else {
            "Responder"
        },
    );
    line(
        &mut o,
        "Encryption Alg",
        encr(r.encryption_algorithm.as_deref(), r.key_length),
    );
    line(
        &mut o,
        "Auth Alg",
        auth_method(r.local_authentication_method.as_deref()),
    );
    line(&mut o, "Hash Alg", hash_name(r));
    line(&mut o, "Key Lifetime", secs(r.lifetime.map(u64::from)));
    line(&mut o, "Key Lifesize", kbytes(r.lifesize));
    line(
        &mut o,
        "Key Rem Lifetime",
        secs(remaining(r.lifetime_expires, now)),
    );
    let rem_size = r
        .lifesize
        .map(|l| l.saturating_sub(r.current_byte_count.unwrap_or(0)));
    line(&mut o, "Key Rem Lifesize", kbytes(rem_size));
    let overlap = r.refresh_overlap_percent.map(u64::from).or_else(|| {
        match (r.lifetime_refresh, r.lifetime_expires, r.lifetime) {
            (Some(f), Some(x), Some(l)) if l > 0 => Some(x.saturating_sub(f) * 100 / u64::from(l)),
            _ => None,
        }
    });
    line(
        &mut o,
        "Key Refresh Overlap",
        format!("{}%", overlap.unwrap_or(0)),
    );
    // gatekey renews IKE SAs for as long as the policy stands: no tunnel lifetime.
    line(
        &mut o,
        "Tunnel Lifetime",
        secs(r.reauth_interval.map(u64::from)),
    );
    line(&mut o, "Tunnel Lifesize", kbytes(None));
    line(
        &mut o,
        "Tun Rem Lifetime",
        secs(remaining(r.reauth_time, now)),
    );
    let status = match r.state {
        IkeState::Done => "Active",
        IkeState::Expired => "Expired",
        _ => "Negotiating",
    };
    line(&mut o, "Status", status);
    o
}

fn v4_mask(prefix: u8) -> String {
    let m: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    std::net::Ipv4Addr::from(m).to_string()
}

/// (ID type, ID, subnet mask) of one side of a phase 2 tunnel.
fn selector(
    base: Option<IpAddr>,
    prefix: Option<u8>,
    range: Option<IpAddr>,
) -> (String, String, String) {
    let Some(b) = base else {
        return ("N/A".into(), "N/A".into(), "N/A".into());
    };
    let v6 = b.is_ipv6();
    let full = if v6 { 128 } else { 32 };
    let fam = if v6 { "IPv6" } else { "IPv4" };
    match (prefix, range) {
        (_, Some(end)) => (
            format!("{fam}_Address_Range"),
            format!("{b}-{end}"),
            "N/A".into(),
        ),
        (Some(p), None) if p < full => (
            format!("{fam}_Subnet"),
            b.to_string(),
            if v6 { format!("/{p}") } else { v4_mask(p) },
        ),
        _ => (format!("{fam}_Address"), b.to_string(), "N/A".into()),
    }
}

fn protocol(p: Option<u8>) -> String {
    match p {
        None | Some(0) => "all".into(),
        Some(1) => "icmp".into(),
        Some(6) => "tcp".into(),
        Some(17) => "udp".into(),
        Some(58) => "icmpv6".into(),
        Some(n) => n.to_string(),
    }
}

fn port(p: Option<u16>) -> String {
    match p {
        None | Some(0) => "any".into(),
        Some(n) => n.to_string(),
    }
}

/// `ike cmd=list verbose` for one phase 2 tunnel.
pub fn phase2_verbose(r: &IpTunnelRecord, now: u64) -> String {
    let mut o = String::new();
    let n = tunnel_number(&r.tunnel_id).unwrap_or(0);
    o.push_str(&format!("{:<24}{n}\n", "Phase 2 Tunnel ID"));
    let (lt, lid, lmask) = selector(
        r.local_address_base,
        r.local_address_prefix,
        r.local_address_range,
    );
    let (rt, rid, rmask) = selector(
        r.remote_address_base,
        r.remote_address_prefix,
        r.remote_address_range,
    );
    line(&mut o, "Local ID Type", lt);
    line(&mut o, "Local ID", lid);
    line(&mut o, "Local Subnet Mask", lmask);
    line(&mut o, "Local Port", port(r.local_port));
    line(&mut o, "Local Protocol", protocol(r.protocol));
    line(&mut o, "Remote ID Type", rt);
    line(&mut o, "Remote ID", rid);
    line(&mut o, "Remote Subnet Mask", rmask);
    line(&mut o, "Remote Port", port(r.remote_port));
    // The AIX label, typo included, for scripts written against AIX.
    line(&mut o, "Remote Portocol", protocol(r.protocol));
    let mode = match r.ike_version.map(|v| v.display()) {
        Some("1.0") => "Oakley_quick",
        Some(_) => "IKEv2_child",
        None => "Manual",
    };
    line(&mut o, "Mode", mode);
    line(
        &mut o,
        "Security Policy",
        or_na(
            r.vpn_action_name
                .as_deref()
                .or(r.local_dyn_vpn_rule.as_deref()),
        ),
    );
    line(
        &mut o,
        "Role",
        match r.role {
            Some(Role::Initiator) => "Initiator",
            Some(Role::Responder) => "Responder",
            None => "N/A",
        },
    );
    let esp = matches!(r.how_to_auth.map(|a| a.display()), Some("ESP") | None);
    let enc = match r.how_to_encrypt.as_deref() {
        None | Some("DoNot") => "N/A".to_string(),
        Some(e) => match r.encrypt_key_length {
            Some(b) => format!("ESP_{e}_{b}"),
            None => format!("ESP_{e}"),
        },
    };
    line(&mut o, "Encryption Alg", enc);
    let auth = r.auth_algorithm.as_deref().map(|a| {
        let a = a
            .trim_end_matches("_96")
            .trim_end_matches("_128")
            .trim_end_matches("_192")
            .trim_end_matches("_256");
        a.replace('_', "-")
    });
    line(
        &mut o,
        "AH Transform",
        if esp {
            "N/A".into()
        } else {
            or_na(auth.as_deref())
        },
    );
    line(&mut o, "Auth Alg", or_na(auth.as_deref()));
    line(
        &mut o,
        "PFS",
        match r.pfs_group {
            Some(g) => format!("Yes (group {g})"),
            None => "No".into(),
        },
    );
    let life = match (r.create_time, r.lifetime_expires) {
        (Some(c), Some(x)) => Some(x.saturating_sub(c)),
        _ => None,
    };
    line(&mut o, "SA Lifetime", secs(life));
    line(&mut o, "SA Lifesize", kbytes(r.lifesize));
    line(
        &mut o,
        "SA Rem Lifetime",
        secs(remaining(r.lifetime_expires, now)),
    );
    line(
        &mut o,
        "SA Rem Lifesize",
        kbytes(r.lifesize.map(|l| l.saturating_sub(r.current_byte_count))),
    );
    let overlap = match (r.lifetime_refresh, r.lifetime_expires, life) {
        (Some(f), Some(x), Some(l)) if l > 0 => x.saturating_sub(f) * 100 / l,
        _ => 0,
    };
    line(&mut o, "Key Refresh Overlap", format!("{overlap}%"));
    let vpn = match (r.create_time, r.vpn_life_expires) {
        (Some(c), Some(x)) => Some(x.saturating_sub(c)),
        _ => None,
    };
    line(&mut o, "Tunnel Lifetime", secs(vpn));
    line(&mut o, "Tunnel Lifesize", kbytes(None));
    line(
        &mut o,
        "Tun Rem Lifetime",
        secs(remaining(r.vpn_life_expires, now)),
    );
    line(
        &mut o,
        "Assoc P1 Tunnel",
        r.parent_ike_tunnel_id
            .as_deref()
            .and_then(tunnel_number)
            .unwrap_or(0),
    );
    let encap = format!(
        "{}_{}",
        if esp { "ESP" } else { "AH" },
        r.how_to_encap.display().to_ascii_lowercase()
    );
    line(&mut o, "Encap Mode", encap);
    let status = match r.state {
        SaState::Active => "Active",
        SaState::Expired => "Expired",
        SaState::Inactive => "Inactive",
        _ => "Negotiating",
    };
    line(&mut o, "Status", status);
    o
}

/// `ike cmd=list` without `verbose`: the tunnel numbers of each phase.
pub fn list_plain(p1: Option<&[IkeTunnelRecord]>, p2: Option<&[IpTunnelRecord]>) -> String {
    let nums = |ids: Vec<u32>| {
        let mut ids = ids;
        ids.sort_unstable();
        ids.dedup();
        ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
    };
    let mut o = String::new();
    if let Some(p1) = p1 {
        let ids = p1
            .iter()
            .filter_map(|r| tunnel_number(&r.tunnel_id))
            .collect();
        o.push_str(&format!("{:<24}[{}]\n", "Phase 1 Tunnel ID", nums(ids)));
    }
    if let Some(p2) = p2 {
        let ids = p2
            .iter()
            .filter_map(|r| tunnel_number(&r.tunnel_id))
            .collect();
        o.push_str(&format!("{:<24}[{}]\n", "Phase 2 Tunnel ID", nums(ids)));
    }
    o
}

fn socket_path() -> OsString {
    SOCKET_ENV
        .iter()
        .find_map(|v| std::env::var_os(v).filter(|v| !v.is_empty()))
        .unwrap_or_else(|| IKED_SOCKET.into())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn selected(items: &[Item], id: &str) -> bool {
    items.is_empty()
        || items
            .iter()
            .any(|i| matches!(i, Item::Number(n) if tunnel_number(id) == Some(*n)))
}

/// Phase 1 records, phase 2 records (each only when asked for) and the server's time.
type Fetched = (
    Option<Vec<IkeTunnelRecord>>,
    Option<Vec<IpTunnelRecord>>,
    u64,
);

fn fetch(client: &mut Client, target: Option<&Target>, c: &Command) -> Result<Fetched, Error> {
    let mut now = unix_now();
    let p1 = if c.phase.one() {
        match client
            .call(target, &Request::GetIkeTun(Selection::default()))?
            .response
        {
            Response::IkeTunnels(l) => Some(
                l.records
                    .into_iter()
                    .filter(|r| selected(&c.items, &r.tunnel_id))
                    .collect(),
            ),
            _ => Some(Vec::new()),
        }
    } else {
        None
    };
    let p2 = if c.phase.two() {
        match client
            .call(target, &Request::GetIpTunDynIke(Selection::default()))?
            .response
        {
            Response::IpTunnels(l) => {
                now = l.current_time;
                Some(
                    l.records
                        .into_iter()
                        .filter(|r| selected(&c.items, &r.tunnel_id))
                        .collect(),
                )
            }
            _ => Some(Vec::new()),
        }
    } else {
        None
    };
    Ok((p1, p2, now))
}

fn error_code(e: &Error) -> i32 {
    match e {
        Error::Connect { .. } => exit::UNREACHABLE,
        Error::Io(_) | Error::Timeout | Error::Closed | Error::Terminated { .. } => exit::PROTOCOL,
        _ => exit::FAILED,
    }
}

/// Runs the command; returns the exit code.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let c = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                let _ = writeln!(err, "ike: {e}");
            }
            let _ = writeln!(err, "{USAGE}");
            return if e.is_empty() { exit::OK } else { exit::USAGE };
        }
    };
    if c.cmd == Cmd::Log {
        let _ = writeln!(
            out,
            "IKE logging is set by IkeSyslogLevel in /etc/security/iked.conf (syslog facility local4); \
             a refresh (SIGHUP or ipsec) applies a change."
        );
        return exit::OK;
    }
    let target = match c.stack.as_deref().map(Target::new).transpose() {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "ike: stack: {e}");
            return exit::USAGE;
        }
    };
    let path = socket_path();
    let mut client = match Client::connect(&path) {
        Ok(cl) => cl,
        Err(e) => {
            let _ = writeln!(err, "ike: {e} (is iked running?)");
            return error_code(&e);
        }
    };
    let r = (|| -> Result<i32, Error> {
        match c.cmd {
            Cmd::List => {
                let (p1, p2, now) = fetch(&mut client, target.as_ref(), &c)?;
                if c.verbose {
                    for r in p1.iter().flatten() {
                        let _ = write!(out, "{}", phase1_verbose(r, now));
                    }
                    for r in p2.iter().flatten() {
                        let _ = write!(out, "{}", phase2_verbose(r, now));
                    }
                } else {
                    let _ = write!(out, "{}", list_plain(p1.as_deref(), p2.as_deref()));
                }
                Ok(exit::OK)
            }
            Cmd::Activate | Cmd::Remove => {
                let (mut p1, mut p2) = (Vec::new(), Vec::new());
                if c.all {
                    let all = Command {
                        items: Vec::new(),
                        ..c.clone()
                    };
                    let (a, b, _) = fetch(&mut client, target.as_ref(), &all)?;
                    p1 = a
                        .iter()
                        .flatten()
                        .filter_map(|r| tunnel_number(&r.tunnel_id))
                        .collect();
                    p2 = b
                        .iter()
                        .flatten()
                        .filter_map(|r| tunnel_number(&r.tunnel_id))
                        .collect();
                    p1.sort_unstable();
                    p1.dedup();
                    p2.sort_unstable();
                    p2.dedup();
                }
                let mut code = exit::OK;
                for req in control_requests(&c, &p1, &p2) {
                    if let Response::TunnelControl(res) =
                        client.call(target.as_ref(), &req)?.response
                    {
                        for t in res.tunnels {
                            let what = t
                                .tunnel_id
                                .clone()
                                .or(t.name.clone())
                                .unwrap_or_else(|| "tunnel".into());
                            let ok = matches!(
                                t.status,
                                TunnelStatus::StateUpdated | TunnelStatus::StateAlreadySet
                            );
                            if !ok {
                                code = exit::FAILED;
                            }
                            let msg = t.message.map(|m| format!(": {m}")).unwrap_or_default();
                            let _ = writeln!(out, "{what}: {}{msg}", t.status.display());
                        }
                    }
                }
                if c.cmd == Cmd::Activate && code == exit::OK {
                    let _ = writeln!(out, "negotiation started; see ike cmd=list");
                }
                Ok(code)
            }
            Cmd::Log => Ok(exit::OK),
        }
    })();
    match r {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "ike: {e}");
            error_code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parsing() {
        let c = p("cmd=activate numlist=1,gw-subnets phase=2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cmd, Cmd::Activate);
        assert_eq!(
            c.items,
            vec![Item::Number(1), Item::Name("gw-subnets".into())]
        );
        let c = p("cmd=activate ipaddr=192.0.2.1,192.0.2.2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.ipaddr,
            Some("192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])))
        );
        assert!(p("cmd=activate").is_err());
        assert!(p("cmd=remove").is_err());
        assert!(p("cmd=remove numlist=gw").is_err());
        assert!(p("cmd=list phase=3").is_err());
        assert!(p("numlist=1").is_err());
        assert!(p("cmd=list bogus=1").is_err());
        let c = p("CMD=LIST verbose phase=1 -p gw").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.verbose && c.phase == Phase::One && c.stack.as_deref() == Some("gw"));
        assert!(p("cmd=remove all").is_ok_and(|c| c.all));
    }

    /// The parameter table of the man page and the parser agree: every documented
    /// parameter (and alias) is one `parse` knows, and every `key=` of the usage text is
    /// documented.
    #[test]
    fn parameters_documented() {
        fn key(s: &str) -> &str {
            s.split(['=', ' ']).next().unwrap_or(s)
        }
        let spellings: Vec<&str> = PARAMETERS
            .iter()
            .flat_map(|p| std::iter::once(p.syntax).chain(p.alias))
            .collect();
        for s in &spellings {
            let k = key(s);
            let mut args = vec!["cmd=list".to_string()];
            if k == "cmd" {
                args = vec!["cmd=x".to_string()];
            } else if s.contains('=') {
                args.push(format!("{k}=x"));
            } else if s.contains(' ') {
                args.extend([k.to_string(), "x".to_string()]);
            } else {
                args.push(k.to_string());
            }
            if let Err(e) = parse(&args) {
                assert!(!e.starts_with("unknown parameter"), "{s}: {e}");
            }
        }
        // An unknown one is told apart (so the loop above can fail).
        assert!(p("cmd=list bogus=x").is_err_and(|e| e.starts_with("unknown parameter")));
        let keys: Vec<&str> = spellings.iter().map(|s| key(s)).collect();
        for w in USAGE.split(|c: char| c.is_whitespace() || "[]|,".contains(c)) {
            if let Some((k, _)) = w.split_once('=') {
                assert!(
                    keys.contains(&k),
                    "{k}= is in the usage text, not in PARAMETERS"
                );
            }
            if w == "verbose" || w == "all" || w == "-p" {
                assert!(
                    keys.contains(&w),
                    "{w} is in the usage text, not in PARAMETERS"
                );
            }
        }
    }

    #[test]
    fn requests() {
        let c = p("cmd=activate numlist=gw,3").unwrap_or_else(|e| panic!("{e}"));
        let r = control_requests(&c, &[], &[]);
        assert!(
            matches!(&r[..], [Request::ActIpTunDyn(a), Request::RefreshIpTunDyn(b)]
            if a.tunnels[0].name.as_deref() == Some("gw") && b.tunnels[0].tunnel_id.as_deref() == Some("Y3"))
        );
        let c = p("cmd=activate phase=1 remid=b.example.com").unwrap_or_else(|e| panic!("{e}"));
        let r = control_requests(&c, &[], &[]);
        assert!(
            matches!(&r[..], [Request::ActIkeTun(a)] if a.tunnels[0].remote_id.as_deref() == Some("b.example.com"))
        );
        let c = p("cmd=remove all").unwrap_or_else(|e| panic!("{e}"));
        let r = control_requests(&c, &[1, 2], &[4]);
        assert!(
            matches!(&r[..], [Request::DeactIpTunDyn(a), Request::DeactIkeTun(b)]
            if a.tunnels.len() == 1 && b.tunnels.len() == 2)
        );
        let c = p("cmd=remove phase=2 numlist=7").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(control_requests(&c, &[], &[]).len(), 1);
    }
}
