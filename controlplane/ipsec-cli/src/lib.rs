//! The `ipsec` command: z/OS's ipsec on gatekey. It turns options into one NMI request
//! (`docs/nmi-protocol.md`), sends it to iked (`/run/iked/ipsecmgmt`) or, with `-x`/`-z`, to
//! nssd (`/run/nssd/nss`), and prints the answer as a z/OS-style report or, with `--json`, as the
//! NMI records. Exit codes are stable (see [`exit`]).
//!
//! This crate depends on no workspace crate but `gatekey-nmi` (default features: no tokio).

pub mod cli;
pub mod report;

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::ArgMatches;
use gatekey_nmi::records::*;
use gatekey_nmi::{
    Client, Error, IKED_SOCKET, NSSD_SOCKET, ReasonCode, Reply, Request, Response, ReturnCode,
    Target,
};

use report::{Context, Format, Out};

/// Exit codes (documented in `ipsec --help` and docs/nmi-protocol.md §11).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The server failed the request.
    pub const FAILED: i32 = 1;
    /// Usage error.
    pub const USAGE: i32 = 2;
    /// Not authorized (EACCES).
    pub const NOT_AUTHORIZED: i32 = 3;
    /// No such stack / NSS client not connected (ENXIO).
    pub const NO_TARGET: i32 = 4;
    /// Not supported (EOPNOTSUPP).
    pub const NOT_SUPPORTED: i32 = 5;
    /// The daemon cannot be reached.
    pub const UNREACHABLE: i32 = 6;
    /// Protocol error.
    pub const PROTOCOL: i32 = 7;
    /// Some tunnel of a control request was not changed.
    pub const PARTIAL: i32 = 8;
    /// Timed out.
    pub const TIMEOUT: i32 = 9;
}

/// A usage error found after clap parsing.
struct Usage(String);

/// What to do, decided from the options.
struct Plan {
    request: Request,
    target: Option<Target>,
    nssd: bool,
    primary: &'static str,
    function: String,
    /// Heading label is "NSS Client Name".
    nss_label: bool,
}

fn str_arg<'a>(m: &'a ArgMatches, id: &str) -> Option<&'a str> {
    m.get_one::<String>(id).map(String::as_str)
}

fn tunnel_refs(m: &ArgMatches, prefix: char, by_id: bool) -> Result<TunnelControl, Usage> {
    let mut names: Vec<String> = m
        .get_many::<String>("targets")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    if let Some(a) = str_arg(m, "tunnel") {
        names.push(a.to_owned());
    }
    if names.is_empty() {
        return Err(Usage(
            "name at least one tunnel ID or rule name (e.g. ipsec -y deactivate Y1)".into(),
        ));
    }
    if names.len() > MAX_TUNNELS_PER_REQUEST {
        return Err(Usage(format!(
            "at most {MAX_TUNNELS_PER_REQUEST} tunnels per command"
        )));
    }
    let is_id = |s: &str| {
        let mut c = s.chars();
        c.next().is_some_and(|p| p.eq_ignore_ascii_case(&prefix))
            && !s.get(1..).unwrap_or("").is_empty()
            && s.get(1..).unwrap_or("").bytes().all(|b| b.is_ascii_digit())
    };
    let tunnels = names
        .into_iter()
        .map(|n| {
            if by_id && is_id(&n) {
                TunnelRef {
                    tunnel_id: Some(n.to_ascii_uppercase()),
                    ..TunnelRef::default()
                }
            } else {
                TunnelRef {
                    name: Some(n),
                    ..TunnelRef::default()
                }
            }
        })
        .collect();
    Ok(TunnelControl { tunnels })
}

fn parse_proto(s: &str) -> Result<u8, Usage> {
    let l = s.to_ascii_lowercase();
    Ok(match l.as_str() {
        "*" | "all" => 0,
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "esp" => 50,
        "ah" => 51,
        "icmpv6" => 58,
        "ospf" => 89,
        _ => l
            .parse()
            .map_err(|_| Usage(format!("-t: {s:?} is not a protocol name or number")))?,
    })
}

fn parse_traffic(v: &[String]) -> Result<TrafficTest, Usage> {
    let addr = |s: &String| -> Result<IpAddr, Usage> {
        s.parse()
            .map_err(|_| Usage(format!("-t: {s:?} is not an IP address")))
    };
    let (src, dst, proto) = match v {
        [s, d, p, ..] => (addr(s)?, addr(d)?, parse_proto(p)?),
        _ => return Err(Usage("-t needs SRC DST PROTO".into())),
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(Usage(
            "-t: source and destination must be of the same address family".into(),
        ));
    }
    let mut rest = v.get(3..).unwrap_or_default().iter().peekable();
    let port = |s: &str| s.parse::<u16>().ok();
    let mut ports = (0u16, 0u16);
    let mut have_ports = false;
    if let Some(a) = rest.peek().and_then(|s| port(s)) {
        rest.next();
        let b = rest
            .next()
            .and_then(|s| port(s))
            .ok_or_else(|| Usage("-t: give both SPORT and DPORT (0 = any)".into()))?;
        ports = (a, b);
        have_ports = true;
    }
    if matches!(proto, 6 | 17) && !have_ports {
        return Err(Usage(
            "-t: TCP and UDP tests need SPORT and DPORT (0 = any)".into(),
        ));
    }
    let mut direction = None;
    if let Some(d) = rest.peek() {
        let d = d.to_ascii_lowercase();
        let dir = match d.as_str() {
            "in" | "inb" | "inbound" => Some(Direction::Inbound),
            "out" | "outb" | "outbound" => Some(Direction::Outbound),
            _ => None,
        };
        if dir.is_some() {
            direction = dir;
            rest.next();
        }
    }
    let mut security_class = 0u8;
    if let Some(c) = rest.next() {
        security_class = c.parse().map_err(|_| {
            Usage(format!(
                "-t: {c:?} is not a direction (in|out) or security class (0-255)"
            ))
        })?;
    }
    if let Some(extra) = rest.next() {
        return Err(Usage(format!("-t: unexpected {extra:?}")));
    }
    Ok(TrafficTest {
        source: src,
        destination: dst,
        protocol: proto,
        source_port: ports.0,
        destination_port: ports.1,
        direction,
        security_class,
    })
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

fn plan(m: &ArgMatches) -> Result<Plan, Usage> {
    let targets_given = m.get_many::<String>("targets").is_some();
    let scope_given = m.contains_id("scope");
    let scope_value = str_arg(m, "scope");
    let sel = Selection {
        tunnel_id: str_arg(m, "tunnel").map(str::to_owned),
        name: str_arg(m, "name").map(str::to_owned),
        all_sas: false,
    };
    let only = |ok: bool, what: &str| -> Result<(), Usage> {
        if ok {
            Ok(())
        } else {
            Err(Usage(format!(
                "{what} is not valid with this primary option and function"
            )))
        }
    };

    let (request, primary, function): (Request, &'static str, String);
    let mut fn_label = None;
    if let Some(f) = str_arg(m, "filters") {
        primary = "Filter";
        function = f.to_owned();
        only(!targets_given, "a tunnel name argument")?;
        only(!m.get_flag("cascade") && !m.get_flag("fromiked"), "-e/-b")?;
        request = match f {
            "display" => {
                if scope_given && scope_value.is_none() {
                    return Err(Usage(
                        "-f display -c needs current, profile or policy".into(),
                    ));
                }
                match scope_value.unwrap_or("current") {
                    "profile" => Request::GetIpFltDefault(sel),
                    "policy" => Request::GetIpFltPolicy(sel),
                    _ => Request::GetIpFltCurr(sel),
                }
            }
            other => {
                only(!scope_given && sel.is_empty(), "-c, -n, -a")?;
                if other == "default" {
                    Request::SetIpFltDefault
                } else {
                    Request::SetIpFltPolicy
                }
            }
        };
    } else if let Some(f) = str_arg(m, "ike") {
        primary = "IKE tunnel";
        function = f.to_owned();
        only(!scope_given && !m.get_flag("fromiked"), "-c/-b")?;
        request = match f {
            "display" => {
                only(!targets_given, "a tunnel argument")?;
                if m.get_flag("cascade") {
                    fn_label = Some("Display (cascade)".to_owned());
                    Request::GetIkeTunCascade(sel)
                } else {
                    Request::GetIkeTun(sel)
                }
            }
            other => {
                only(!m.get_flag("cascade") && sel.name.is_none(), "-e/-n")?;
                let c = tunnel_refs(m, 'K', true)?;
                if other == "deactivate" {
                    Request::DeactIkeTun(c)
                } else {
                    Request::RefreshIkeTun(c)
                }
            }
        };
    } else if let Some(f) = str_arg(m, "dynamic") {
        primary = "Dynamic tunnel";
        function = f.to_owned();
        only(!m.get_flag("cascade"), "-e")?;
        request = match f {
            "display" => {
                only(!targets_given, "a tunnel argument")?;
                if scope_value.is_some() {
                    return Err(Usage("-y display -c takes no value".into()));
                }
                let sel = Selection {
                    all_sas: scope_given,
                    ..sel
                };
                if m.get_flag("fromiked") {
                    Request::GetIpTunDynIke(sel)
                } else {
                    Request::GetIpTunDynStack(sel)
                }
            }
            other => {
                only(
                    !scope_given && !m.get_flag("fromiked") && sel.name.is_none(),
                    "-c/-b/-n",
                )?;
                match other {
                    "activate" => Request::ActIpTunDyn(tunnel_refs(m, 'Y', false)?),
                    "deactivate" => Request::DeactIpTunDyn(tunnel_refs(m, 'Y', true)?),
                    _ => Request::RefreshIpTunDyn(tunnel_refs(m, 'Y', true)?),
                }
            }
        };
    } else if let Some(f) = str_arg(m, "manual") {
        primary = "Manual tunnel";
        function = f.to_owned();
        only(
            !scope_given && !m.get_flag("fromiked") && !m.get_flag("cascade"),
            "-c/-b/-e",
        )?;
        request = match f {
            "display" => {
                only(!targets_given, "a tunnel argument")?;
                Request::GetIpTunManual(sel)
            }
            "activate" => Request::ActIpTunManual(tunnel_refs(m, 'M', true)?),
            _ => Request::DeactIpTunManual(tunnel_refs(m, 'M', true)?),
        };
    } else {
        only(
            !targets_given
                && !scope_given
                && sel.is_empty()
                && !m.get_flag("cascade")
                && !m.get_flag("fromiked"),
            "-a, -n, -c, -e, -b or a tunnel argument",
        )?;
        function = "display".to_owned();
        (request, primary) = if str_arg(m, "interfaces").is_some() {
            (Request::GetIpInterfaces, "Interface")
        } else if str_arg(m, "porttrans").is_some() {
            (Request::GetPortTrans, "NATT Port Trans")
        } else if str_arg(m, "stacknss").is_some() {
            (Request::GetIkeNsInfo, "Stack NSS")
        } else if str_arg(m, "nssserver").is_some() {
            (Request::GetClientInfo, "NSS Server")
        } else if str_arg(m, "summary").is_some() {
            (Request::GetSummary, "Summary")
        } else if let Some(v) = m.get_many::<String>("traffic") {
            let v: Vec<String> = v.cloned().collect();
            (Request::TrafficTest(parse_traffic(&v)?), "IP Traffic Test")
        } else {
            return Err(Usage("choose a primary option".into()));
        };
    }
    let client = str_arg(m, "client");
    let stack = str_arg(m, "stack");
    let target = match (client, stack) {
        (Some(c), _) => Some(Target::new(c).map_err(|e| Usage(format!("-z: {e}")))?),
        (None, Some(s)) => Some(Target::new(s).map_err(|e| Usage(format!("-p: {e}")))?),
        (None, None) => None,
    };
    let nssd = client.is_some() || matches!(request, Request::GetClientInfo);
    Ok(Plan {
        nss_label: nssd || matches!(request, Request::GetIkeNsInfo),
        request,
        target,
        nssd,
        primary,
        function: fn_label.unwrap_or_else(|| capitalized(&function)),
    })
}

fn socket_path(nssd: bool) -> OsString {
    let (var, default) = if nssd {
        ("IPSEC_NSSD_SOCKET", NSSD_SOCKET)
    } else {
        ("IPSEC_IKED_SOCKET", IKED_SOCKET)
    };
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Renders a successful reply as the text report.
pub fn render(ctx: &Context, primary: &str, function: &str, reply: &Response) -> String {
    let mut o = Out::default();
    let fmt = ctx.format;
    match reply {
        Response::Filters(l) => {
            o.heading(
                ctx,
                primary,
                function,
                l.stack.filter_set.display(),
                l.set.display(),
                l.total_available,
            );
            o.stack_lines(&l.stack);
            l.records.iter().for_each(|f| o.filter(f, fmt));
            o.selected(l.records.len(), l.truncated);
        }
        Response::TrafficTest(t) => {
            o.heading(
                ctx,
                primary,
                function,
                t.stack.filter_set.display(),
                "n/a",
                t.total_available,
            );
            o.stack_lines(&t.stack);
            o.test_data(&t.test);
            t.records.iter().for_each(|f| o.filter(f, fmt));
            o.selected(t.records.len(), false);
        }
        Response::IkeTunnels(l) => {
            o.heading(ctx, primary, function, "IKED", "n/a", l.total_available);
            for t in &l.records {
                o.ike_tunnel(t, fmt);
                o.text(report::SEPARATOR);
            }
            o.selected(l.records.len(), l.truncated);
        }
        Response::IkeTunnelCascade(l) => {
            o.heading(ctx, primary, function, "IKED", "n/a", l.total_available);
            for c in &l.records {
                o.ike_tunnel(&c.ike_tunnel, fmt);
                o.text(&format!(
                    "DynamicTunnels:               {}",
                    c.dynamic_tunnels.len()
                ));
                for d in &c.dynamic_tunnels {
                    o.text(
                        "-----------------------------------------------------------------------",
                    );
                    o.ip_tunnel(d, fmt, None);
                }
                o.text(report::SEPARATOR);
            }
            o.selected(l.records.len(), l.truncated);
        }
        Response::IpTunnels(l) => {
            let scope = if ctx.all_sas { "All" } else { "Current" };
            o.heading(
                ctx,
                primary,
                function,
                l.source.display(),
                scope,
                l.total_available,
            );
            for t in &l.records {
                o.ip_tunnel(t, fmt, Some(l.current_time));
                o.text(report::SEPARATOR);
            }
            o.selected(l.records.len(), l.truncated);
        }
        Response::Interfaces(l) => {
            o.heading(ctx, primary, function, "Stack", "n/a", l.total_available);
            l.records.iter().for_each(|i| o.interface(i));
            o.selected(l.records.len(), false);
        }
        Response::PortTrans(l) => {
            o.heading(ctx, primary, function, "Stack", "n/a", l.total_available);
            l.records.iter().for_each(|p| o.port_trans(p));
            o.selected(l.records.len(), false);
        }
        Response::IkeNsInfo(l) => {
            o.heading(ctx, primary, function, "IKED", "n/a", l.total_available);
            o.text(&format!("SystemName: {}", l.system_name));
            o.text("");
            l.records.iter().for_each(|r| o.ike_ns(r));
            o.selected(l.records.len(), false);
        }
        Response::ClientInfo(l) => {
            o.heading(ctx, primary, function, "Server", "n/a", l.total_available);
            o.text(&format!("SystemName: {}", l.system_name));
            o.text("");
            l.records.iter().for_each(|c| o.client(c));
            o.selected(l.records.len(), false);
        }
        Response::Summary(s) => {
            o.heading(ctx, primary, function, "IKED", "n/a", 1);
            o.summary(s);
            o.selected(1, false);
        }
        Response::StackInfo(l) => {
            o.heading(ctx, primary, function, "Stack", "n/a", l.total_available);
            o.selected(l.records.len(), false);
        }
        Response::FilterSet(r) => {
            o.heading(ctx, primary, function, r.filter_set.display(), "n/a", 1);
            o.text(&format!("{:<30}{}", "FilterSet:", r.filter_set.display()));
            o.text(&format!(
                "{:<30}{} ({})",
                "Status:",
                r.status.display(),
                r.status.code()
            ));
        }
        Response::TunnelControl(r) => {
            o.heading(
                ctx,
                primary,
                function,
                "IKED",
                "n/a",
                r.tunnels.len() as u32,
            );
            r.tunnels.iter().for_each(|t| o.outcome(t));
            o.text("");
            let ok = r.tunnels.iter().filter(|t| t.status.is_success()).count();
            o.text(&format!("{ok} of {} requests completed", r.tunnels.len()));
        }
        _ => o.text("(a response this version of ipsec cannot display; use --json)"),
    }
    o.into_string()
}

fn error_exit(e: &Error, nssd: bool, target: Option<&Target>, err: &mut dyn Write) -> i32 {
    let daemon = if nssd { "nssd" } else { "iked" };
    let (code, msg) = match e {
        Error::Connect { path, source } => {
            let hint = match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    format!(
                        "is {daemon} running? (systemctl status {daemon}; the socket path can be set with IPSEC_{}_SOCKET)",
                        daemon.to_ascii_uppercase()
                    )
                }
                io::ErrorKind::PermissionDenied => {
                    "permission denied on the socket: run ipsec as root or as a member of the socket's group"
                        .to_owned()
                }
                _ => String::new(),
            };
            (
                exit::UNREACHABLE,
                format!(
                    "cannot reach {daemon} at {}: {source}; {hint}",
                    path.display()
                ),
            )
        }
        Error::Terminated { rc, .. } if *rc == ReturnCode::EBUSY => (
            exit::UNREACHABLE,
            format!(
                "{daemon} is busy: it already serves its maximum number of management clients; try again"
            ),
        ),
        Error::Terminated { rc, rsn, message } => (
            exit::PROTOCOL,
            format!("{daemon} ended the session (rc {rc}, rsn {rsn}): {message}"),
        ),
        Error::Failed {
            msg_type,
            rc,
            rsn,
            message,
            profile,
        } => {
            let code = match *rc {
                ReturnCode::EACCES => exit::NOT_AUTHORIZED,
                ReturnCode::ENXIO => exit::NO_TARGET,
                ReturnCode::EOPNOTSUPP => exit::NOT_SUPPORTED,
                ReturnCode::ETIMEDOUT => exit::TIMEOUT,
                _ => exit::FAILED,
            };
            let what = match (*rc, *rsn) {
                (ReturnCode::EACCES, _) => format!(
                    "not authorized: READ access to {} is required",
                    profile
                        .as_deref()
                        .unwrap_or("the DISPLAY or CONTROL profile")
                ),
                (ReturnCode::ENXIO, _) if nssd => format!(
                    "NSS client {} is not connected to nssd (ipsec -x display lists the connected clients)",
                    target.map_or("n/a", Target::as_str)
                ),
                (ReturnCode::ENXIO, _) => format!(
                    "{daemon} runs no stack named {} ({message})",
                    target.map_or("(default)", Target::as_str)
                ),
                (ReturnCode::EOPNOTSUPP, ReasonCode::NONE) => format!(
                    "NSS client {} is not enabled for remote management (ServiceType RemoteMgmt and EZB.NSS.<sys>.<client>.IPSEC.NETMGMT)",
                    target.map_or("n/a", Target::as_str)
                ),
                _ => message.clone(),
            };
            (
                code,
                format!("{msg_type} failed: {what} (rc {rc}, rsn {rsn})"),
            )
        }
        Error::Timeout => (exit::TIMEOUT, format!("no answer from {daemon} in time")),
        Error::BadTarget(m) => (exit::USAGE, format!("invalid target {m}")),
        other => (exit::PROTOCOL, format!("{daemon}: {other}")),
    };
    let _ = writeln!(err, "ipsec: {msg}");
    code
}

/// Runs `ipsec` with `args` (including argv\[0\]); writes the report to `out` and errors to
/// `err`; returns the exit code.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let matches = match cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            let rendered = e.render().to_string();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = write!(out, "{}", e.render());
                    exit::OK
                }
                _ => {
                    let _ = write!(err, "{rendered}");
                    exit::USAGE
                }
            };
        }
    };
    let plan = match plan(&matches) {
        Ok(p) => p,
        Err(Usage(m)) => {
            let _ = writeln!(err, "ipsec: {m}\n\nFor more information, try '--help'.");
            return exit::USAGE;
        }
    };
    let format = match str_arg(&matches, "format") {
        Some("short") => Format::Short,
        Some("wide") => Format::Wide,
        _ => Format::Detail,
    };
    let json = matches.get_flag("json");
    let path = socket_path(plan.nssd);
    let result = Client::connect(&path).and_then(|mut c| {
        let version = c.server_info().software_version.clone();
        c.call(plan.target.as_ref(), &plan.request)
            .map(|r| (version, r))
    });
    let (software_version, reply): (String, Reply) = match result {
        Ok(v) => v,
        Err(e) => return error_exit(&e, plan.nssd, plan.target.as_ref(), err),
    };
    let code = match &reply.response {
        Response::TunnelControl(r) if !r.tunnels.iter().all(|t| t.status.is_success()) => {
            exit::PARTIAL
        }
        _ => exit::OK,
    };
    if json {
        match reply.response.to_json_pretty() {
            Ok(s) => {
                let _ = writeln!(out, "{s}");
            }
            Err(e) => {
                let _ = writeln!(err, "ipsec: {e}");
                return exit::PROTOCOL;
            }
        }
        return code;
    }
    let resolved = reply.target().map(|t| t.as_str().to_owned());
    let ctx = Context {
        software_version,
        target_label: if plan.nss_label {
            "NSS Client Name"
        } else {
            "Stack Name"
        },
        target: if plan.nss_label && plan.target.is_none() {
            "n/a".to_owned()
        } else {
            resolved
                .or_else(|| plan.target.as_ref().map(|t| t.as_str().to_owned()))
                .unwrap_or_else(|| "n/a".to_owned())
        },
        now: now(),
        format,
        all_sas: matches!(&plan.request, Request::GetIpTunDynStack(s) | Request::GetIpTunDynIke(s) if s.all_sas),
    };
    let text = render(&ctx, plan.primary, &plan.function, &reply.response);
    let _ = out.write_all(text.as_bytes());
    code
}
