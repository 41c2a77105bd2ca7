//! `gatekey-filter`: load a stack's default IP filter policy (the profile's
//! `IPSEC … ENDIPSEC` block) into the eBPF filter at boot, without a daemon,
//! and inspect or switch it.
//!
//! Programs, links and maps are pinned under `/sys/fs/bpf/gatekey/<stack>/`,
//! so enforcement continues after this command exits. Running `load` again
//! replaces the rules in place (atomically); an invalid profile leaves the
//! rules in force untouched.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Parser as _;
use gatekey_config::filter::{
    AddrRange, Direction, FilterAction, FilterRule, L4Match, LogMode, Routing,
};
use gatekey_dataplane::cli::{Cli, Cmd};
use gatekey_dataplane::compile::{Dir, DynamicFilter, SaMatch, compile};
use gatekey_dataplane::dataplane::{Dataplane, Options, SetId};
use gatekey_dataplane::logread::LogReader;
use gatekey_dataplane::stack::{StackFilter, TrafficQuery, traffic_test};
use gatekey_dataplane::{Stack, marker};

/// Message IDs of this command (see docs/messages.md).
mod msg {
    pub const LOADED: &str = "EZD0824I";
    pub const SWITCHED: &str = "EZD0825I";
    pub const ATTACHED: &str = "EZD0826I";
    pub const NOT_LOADED: &str = "EZD0827E";
    pub const NOTICE: &str = "EZD0828I";
    pub const UNLOADED: &str = "EZD0829I";
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut log = gatekey_syslog::Config::new("gatekey-filter");
    log.target = match &cli.cmd {
        Cmd::Log { stderr: true } => gatekey_syslog::Target::Stderr,
        Cmd::Log { stderr: false } => gatekey_syslog::Target::Syslog,
        _ => gatekey_syslog::Target::Stderr,
    };
    if let Err(e) = gatekey_syslog::init(&log) {
        eprintln!("gatekey-filter: {e}");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatekey-filter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The StackConfig of `stack` from iked.conf, if one is configured.
fn stack_config(
    config: Option<&Path>,
    stack: &str,
) -> Result<Option<gatekey_config::iked_conf::StackConfig>> {
    let path = match config {
        Some(p) => p.to_path_buf(),
        None => {
            let p = gatekey_config::iked_conf::config_path(None);
            if !p.exists() {
                return Ok(None);
            }
            p
        }
    };
    let conf = gatekey_config::iked_conf::load(&path)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(conf
        .stacks()
        .into_iter()
        .find(|s| s.stack == stack)
        .map(|mut s| {
            if let Some(dir) = path.parent() {
                s.resolve_paths(dir);
            }
            s
        }))
}

fn profile_path(
    explicit: Option<PathBuf>,
    sc: Option<&gatekey_config::iked_conf::StackConfig>,
    stack: &str,
) -> PathBuf {
    explicit
        .or_else(|| sc.map(|s| s.profile_file.clone()))
        .unwrap_or_else(|| gatekey_config::iked_conf::StackConfig::defaults(stack).profile_file)
}

fn load_profile(path: &Path, stack: &Stack) -> Result<gatekey_config::profile::Profile> {
    match gatekey_config::profile::load(path) {
        Ok(p) => {
            for n in &p.notices {
                tracing::info!("{} {n}", msg::NOTICE);
            }
            Ok(p)
        }
        Err(e) => {
            // Every located error on stderr, then one summary.
            eprintln!("{e}");
            bail!(
                "{} the default filter set of stack {stack} was not loaded from {}; the rules in force are unchanged",
                msg::NOT_LOADED,
                path.display()
            )
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let stack = Stack::new(&cli.stack)?;
    match cli.cmd {
        Cmd::Load {
            profile,
            config,
            interfaces,
            secclass,
            classes,
            log_rate,
        } => {
            let sc = stack_config(config.as_deref(), stack.name())?;
            let path = profile_path(profile, sc.as_ref(), stack.name());
            let profile = load_profile(&path, &stack)?;
            let opts = Options {
                classes_per_slot: classes,
                log_rate,
                ..Options::default()
            };
            let mut sf = StackFilter::open(&stack, &opts)
                .with_context(|| format!("loading the eBPF filter into stack {stack}"))?;
            let report = sf.load_default(profile.set).with_context(|| {
                format!(
                    "{} the rules of {} cannot be enforced; the rules in force are unchanged",
                    msg::NOT_LOADED,
                    path.display()
                )
            })?;
            let wanted: Vec<String> = if interfaces.is_empty() {
                sc.map(|s| s.interfaces).unwrap_or_default()
            } else {
                interfaces
            };
            let classes: BTreeMap<String, u32> = secclass.into_iter().collect();
            let att = sf
                .dataplane()
                .attach((!wanted.is_empty()).then_some(wanted.as_slice()), &classes)
                .with_context(|| {
                    format!("attaching the filter to the interfaces of stack {stack}")
                })?;
            let active = sf.active()?;
            let msg_text = format!(
                "{} Filter set default loaded for stack {stack} from {}: {} inbound and {} outbound filters, {} lookup classes; active set {}",
                msg::LOADED,
                path.display(),
                report.filters[0],
                report.filters[1],
                report.classes,
                active.name()
            );
            tracing::info!("{msg_text}");
            println!("{msg_text}");
            let mut by_if: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for a in &att {
                by_if.entry(&a.ifname).or_default().push(format!(
                    "{}{}",
                    if a.dir == Dir::In { "in" } else { "out" },
                    if a.replaced { " (updated)" } else { "" }
                ));
            }
            for (ifname, dirs) in by_if {
                let mode = att.first().map_or("", |a| match a.mode {
                    gatekey_dataplane::dataplane::AttachMode::Tcx => "tcx",
                    gatekey_dataplane::dataplane::AttachMode::Netlink => "tc clsact",
                });
                let line = format!(
                    "{} Filter attached to {ifname}: {} ({mode})",
                    msg::ATTACHED,
                    dirs.join(", ")
                );
                tracing::info!("{line}");
                println!("{line}");
            }
            Ok(())
        }
        Cmd::Policy { policy, dynamic } => {
            let p = match gatekey_config::filter_policy::load(&policy) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    bail!(
                        "{} the policy filter set of stack {stack} was not loaded from {}; the rules in force are unchanged",
                        msg::NOT_LOADED,
                        policy.display()
                    );
                }
            };
            for n in &p.notices {
                tracing::info!("{} {n}", msg::NOTICE);
            }
            let mut sf = StackFilter::open(&stack, &Options::default())?;
            let added = dynamic
                .iter()
                .enumerate()
                .map(|(n, spec)| parse_dynamic(spec, n))
                .collect::<Result<Vec<_>>>()?;
            let n = added.len();
            let (report, active, _, _) = sf.load_policy_with(p.set, added)?;
            let line = format!(
                "{} Filter set policy loaded for stack {stack} from {}: {} inbound and {} outbound filters, {n} dynamic; active set {}",
                msg::LOADED,
                policy.display(),
                report.filters[0],
                report.filters[1],
                active.name()
            );
            tracing::info!("{line}");
            println!("{line}");
            Ok(())
        }
        Cmd::Switch { set } => {
            let set = match set.to_ascii_lowercase().as_str() {
                "default" | "def" => SetId::Default,
                "policy" | "pol" | "reload" | "rel" => SetId::Policy,
                other => bail!("unknown filter set '{other}': use default or policy"),
            };
            let dp = open_existing(&stack)?;
            let mut sf = StackFilter::with_dataplane(dp, Path::new(marker::MARKER_ROOT));
            sf.switch(set)?;
            let line = format!(
                "{} Filter set {} is active for stack {stack}",
                msg::SWITCHED,
                set.name()
            );
            tracing::info!("{line}");
            println!("{line}");
            Ok(())
        }
        Cmd::Show { json } => show(&open_existing(&stack)?, json),
        Cmd::Test {
            policy,
            profile,
            config,
            args,
        } => {
            let q = parse_test(&args)?;
            let (set, filters) = match policy {
                Some(p) => {
                    let fp = gatekey_config::filter_policy::load(&p).map_err(|e| anyhow!("{e}"))?;
                    (SetId::Policy, fp.set)
                }
                None => {
                    let sc = stack_config(config.as_deref(), stack.name())?;
                    let path = profile_path(profile, sc.as_ref(), stack.name());
                    (SetId::Default, load_profile(&path, &stack)?.set)
                }
            };
            let compiled = compile(set.number(), &filters, &[], u32::MAX)?;
            let t = traffic_test(set, &compiled, &q);
            println!(
                "TestData: {} {} {} {} {} {} {}",
                q.src,
                q.dst,
                q.protocol,
                q.sport.unwrap_or(0),
                q.dport.unwrap_or(0),
                if q.dir == Dir::In { "in" } else { "out" },
                q.secclass
            );
            for (i, m) in t.matches.iter().enumerate() {
                println!(
                    "{} FilterName: {:<32} Position: {:<5} Action: {}{}",
                    if i == 0 { "*" } else { " " },
                    m.name,
                    m.position + 1,
                    m.action,
                    if i == 0 { "  (decides)" } else { "" }
                );
            }
            if t.icmp_exception {
                println!("* stack-required ICMP message: permitted before the filters");
            } else if t.implicit_deny {
                println!("* FilterName: SYSDEFAULTDENYRULE               Action: Deny  (decides)");
            }
            println!(
                "{} entries selected; result: {}",
                t.matches.len(),
                if t.permitted { "permit" } else { "deny" }
            );
            Ok(())
        }
        Cmd::Log { .. } => {
            let dp = open_existing(&stack)?;
            let mut reader = dp.log_reader()?;
            tracing::info!(
                "{} Filter log reader started for stack {stack}",
                msg::NOTICE
            );
            let mut last_check = std::time::Instant::now() - Duration::from_secs(60);
            loop {
                for r in reader.poll(Duration::from_millis(500))? {
                    if r.permitted {
                        tracing::info!("{}", r.text());
                    } else {
                        tracing::warn!("{}", r.text());
                    }
                }
                if last_check.elapsed() >= Duration::from_secs(10) {
                    last_check = std::time::Instant::now();
                    if let Some((limited, lost)) = reader.suppressed()? {
                        tracing::warn!("{}", LogReader::suppressed_text(limited, lost));
                    }
                }
            }
        }
        Cmd::Watch { interval, secclass } => {
            let mut dp = open_existing(&stack)?;
            let classes: BTreeMap<String, u32> = secclass.into_iter().collect();
            // The interfaces present now were handled by `load` (which may
            // have been told to leave some out): only new ones are attached.
            let list = |dp: &Dataplane| -> Result<std::collections::BTreeSet<(u32, String)>> {
                Ok(dp
                    .interfaces()?
                    .into_iter()
                    .filter(|i| !i.loopback && i.ethernet().is_some())
                    .map(|i| (i.index, i.name))
                    .collect())
            };
            let mut known = list(&dp)?;
            tracing::info!(
                "{} Filter interface watch started for stack {stack}",
                msg::NOTICE
            );
            loop {
                let now = list(&dp)?;
                let new: Vec<String> = now.difference(&known).map(|(_, n)| n.clone()).collect();
                if !new.is_empty() {
                    match dp.attach(Some(&new), &classes) {
                        Ok(att) => {
                            for a in att.iter().filter(|a| a.dir == Dir::In) {
                                tracing::info!(
                                    "{} Filter attached to {}: in, out",
                                    msg::ATTACHED,
                                    a.ifname
                                );
                            }
                        }
                        // An interface may vanish between listing and
                        // attaching; try again next time.
                        Err(e) => tracing::warn!("{} attaching to {new:?}: {e}", msg::NOTICE),
                    }
                }
                known = now;
                std::thread::sleep(Duration::from_secs(interval.max(1)));
            }
        }
        Cmd::Unload => {
            Dataplane::unload(&stack)?;
            let line = format!(
                "{} Filter removed from stack {stack}: its traffic is no longer filtered",
                msg::UNLOADED
            );
            tracing::warn!("{line}");
            println!("{line}");
            Ok(())
        }
    }
}

fn open_existing(stack: &Stack) -> Result<Dataplane> {
    if !stack
        .pin_dir()
        .join(gatekey_dataplane_common::MAP_CONTROL)
        .exists()
    {
        bail!(
            "no gatekey filter is loaded in stack {stack} ({} is empty); run `gatekey-filter load` first",
            stack.pin_dir().display()
        );
    }
    Ok(Dataplane::open(stack, &Options::default())?)
}

fn show(dp: &Dataplane, json: bool) -> Result<()> {
    let active = dp.active_set()?;
    let counters = dp.counters()?;
    let stats = dp.stats()?;
    let loaded: Vec<&str> = [SetId::Default, SetId::Policy]
        .into_iter()
        .filter(|s| dp.is_loaded(*s).unwrap_or(false))
        .map(SetId::name)
        .collect();
    if json {
        let rules: Vec<serde_json::Value> = counters
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "set": c.set.name(),
                    "direction": c.dir.display_name(),
                    "family": c.family,
                    "kind": c.kind,
                    "position": (c.position != u32::MAX).then(|| c.position + 1),
                    "packets": c.packets,
                    "bytes": c.bytes,
                    "sa_drops": c.sa_drops,
                })
            })
            .collect();
        let v = serde_json::json!({
            "stack": dp.stack().name(),
            "active_set": active.name(),
            "loaded_sets": loaded,
            "filters": rules,
            "stats": {
                "log_emitted": stats.log_emitted,
                "log_rate_limited": stats.log_rate_limited,
                "log_lost": stats.log_lost,
                "frag_hit": stats.frag_hit,
                "frag_miss": stats.frag_miss,
                "non_ip": stats.non_ip,
            },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "Stack: {}  Active set: {}  Loaded: {}",
        dp.stack(),
        active.name(),
        loaded.join(", ")
    );
    println!(
        "{:<8} {:<9} {:>5} {:<32} {:>12} {:>14} {:>9}",
        "Set", "Direction", "Pos", "FilterName", "Packets", "Bytes", "SA drops"
    );
    for c in &counters {
        println!(
            "{:<8} {:<9} {:>5} {:<32} {:>12} {:>14} {:>9}",
            c.set.name(),
            c.dir.display_name(),
            if c.position == u32::MAX {
                "-".to_owned()
            } else {
                (c.position + 1).to_string()
            },
            c.name,
            c.packets,
            c.bytes,
            c.sa_drops
        );
    }
    println!(
        "Log events: {} written, {} rate-limited, {} lost; fragments: {} by first-fragment verdict, {} without ports; non-IP passed: {}",
        stats.log_emitted,
        stats.log_rate_limited,
        stats.log_lost,
        stats.frag_hit,
        stats.frag_miss,
        stats.non_ip
    );
    Ok(())
}

fn parse_addr_spec(s: &str) -> Result<Vec<AddrRange>> {
    if s == "*" || s.eq_ignore_ascii_case("all") {
        return Ok(Vec::new());
    }
    let bad = || anyhow!("'{s}' is not an address, address/len or address-address");
    if let Some((a, l)) = s.split_once('/') {
        let a: IpAddr = a.parse().map_err(|_| bad())?;
        return Ok(vec![
            AddrRange::prefix(a, l.parse().map_err(|_| bad())?).ok_or_else(bad)?,
        ]);
    }
    if let Some((a, b)) = s.split_once('-') {
        let a: IpAddr = a.parse().map_err(|_| bad())?;
        let b: IpAddr = b.parse().map_err(|_| bad())?;
        return Ok(vec![AddrRange::range(a, b).ok_or_else(bad)?]);
    }
    Ok(vec![AddrRange::host(s.parse().map_err(|_| bad())?)])
}

fn parse_proto(s: &str) -> Result<Option<u8>> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "all" | "*" => None,
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        "ospf" => Some(89),
        "esp" => Some(50),
        "ah" => Some(51),
        "gre" => Some(47),
        n => Some(n.parse().map_err(|_| anyhow!("'{s}' is not a protocol"))?),
    })
}

/// `ANCHOR,src=A,dst=B,reqid=N[,spi=N][,proto=P]`.
fn parse_dynamic(spec: &str, n: usize) -> Result<DynamicFilter> {
    let mut parts = spec.split(',');
    let anchor = parts
        .next()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow!("--dynamic needs ANCHOR first"))?;
    let mut src = Vec::new();
    let mut dst = Vec::new();
    let mut reqid = None;
    let mut spi = None;
    let mut protocol = None;
    for p in parts {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| anyhow!("'{p}' in --dynamic is not key=value"))?;
        match k {
            "src" => src = parse_addr_spec(v)?,
            "dst" => dst = parse_addr_spec(v)?,
            "reqid" => reqid = Some(parse_num(v)?),
            "spi" => spi = Some(parse_num(v)?),
            "proto" => protocol = parse_proto(v)?,
            _ => bail!("unknown key '{k}' in --dynamic (src, dst, reqid, spi, proto)"),
        }
    }
    let family = src
        .first()
        .or(dst.first())
        .map(AddrRange::family)
        .ok_or_else(|| anyhow!("--dynamic needs src= or dst= addresses"))?;
    let reqid = reqid.ok_or_else(|| anyhow!("--dynamic needs reqid="))?;
    let mut rule = FilterRule::permit_all(anchor, family);
    rule.src = src;
    rule.dst = dst;
    rule.protocol = protocol;
    rule.l4 = L4Match::Any;
    rule.routing = Routing::Either;
    rule.direction = Direction::Bidirectional;
    rule.action = FilterAction::IpSec {
        vpn_action: format!("dynamic-{n}"),
        manual: false,
    };
    rule.log = LogMode::None;
    Ok(DynamicFilter {
        anchor: anchor.to_owned(),
        rule,
        sa: SaMatch { reqid, spi },
    })
}

fn parse_num(v: &str) -> Result<u32> {
    let r = if let Some(h) = v.strip_prefix("0x") {
        u32::from_str_radix(h, 16)
    } else {
        v.parse()
    };
    r.map_err(|_| anyhow!("'{v}' is not a number"))
}

/// `src dst proto [sport dport] [in|out] [secclass]`.
fn parse_test(args: &[String]) -> Result<TrafficQuery> {
    let mut it = args.iter();
    let mut next = |what: &str| {
        it.next().ok_or_else(|| {
            anyhow!(
                "traffic test: {what} is missing (src dst proto [sport dport] [in|out] [secclass])"
            )
        })
    };
    let src: IpAddr = next("the source address")?
        .parse()
        .context("source address")?;
    let dst: IpAddr = next("the destination address")?
        .parse()
        .context("destination address")?;
    if src.is_ipv4() != dst.is_ipv4() {
        bail!("traffic test: source and destination must be of the same family");
    }
    let protocol = parse_proto(next("the protocol")?)?
        .ok_or_else(|| anyhow!("traffic test: give one protocol"))?;
    let rest: Vec<&String> = it.collect();
    let mut i = 0;
    let port = |i: &mut usize| -> Result<Option<u16>> {
        match rest.get(*i) {
            Some(s) if s.chars().all(|c| c.is_ascii_digit()) => {
                *i += 1;
                let v: u16 = s.parse().context("port")?;
                Ok((v != 0).then_some(v))
            }
            _ => Ok(None),
        }
    };
    let (sport, dport) = if matches!(protocol, 6 | 17 | 1 | 58) {
        let s = port(&mut i)?;
        let d = port(&mut i)?;
        (s, d)
    } else {
        (None, None)
    };
    let dir = match rest.get(i).map(|s| s.to_ascii_lowercase()) {
        Some(d) if d == "in" => {
            i += 1;
            Dir::In
        }
        Some(d) if d == "out" => {
            i += 1;
            Dir::Out
        }
        _ => Dir::In,
    };
    let secclass = match rest.get(i) {
        Some(s) => s.parse().context("security class")?,
        None => 0,
    };
    Ok(TrafficQuery {
        src,
        dst,
        protocol,
        sport,
        dport,
        dir,
        secclass,
        routed: false,
    })
}
