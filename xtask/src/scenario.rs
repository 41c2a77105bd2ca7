//! VM scenarios as data: the scenario file and the topology file.
//!
//! The format is documented in `docs/testing.md`; keep the two in step.

use std::fs;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::fail;
use crate::util::{self, Result};

/// The name of the pseudo-host that is the guest's initial namespace.
pub const GUEST_HOST: &str = "guest";

/// A whole scenario, parsed and checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// `suite/name`
    pub id: String,
    pub dir: PathBuf,
    pub description: String,
    pub topology: Topology,
    pub timeout: f64,
    pub memory_mb: u32,
    pub cpus: u32,
    pub captures: Vec<Capture>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub source: String,
    pub links: Vec<String>,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    /// Which guest (1-based) the host lives in; 1 unless the topology says.
    pub guest: u32,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<String>,
    pub sysctl: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    /// `None` for a dummy interface.
    pub link: Option<String>,
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub link: Option<String>,
    /// `(host, interface)` when not capturing on a link's bridge.
    pub at: Option<(String, String)>,
    /// The capture check: hosts or address prefixes whose traffic must be protected.
    pub protected_between: Option<(Vec<String>, Vec<String>)>,
    /// The two endpoints as written (host names or prefixes), for reports.
    pub between_labels: (String, String),
    pub min_protected: u64,
    pub expect_failure: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run a command once.
    Run(String),
    /// Run a command until its checks pass (or the timeout).
    Wait(String),
    /// Start a long-running command; `ready` is waited for if given.
    Daemon {
        name: String,
        command: String,
        ready: Option<String>,
    },
    /// Check a daemon's log so far (retried until the timeout).
    Log(String),
    /// Stop a daemon (SIGTERM, then SIGKILL) and check its exit status.
    Stop(String),
    Sleep(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExitCheck {
    Code(i32),
    NonZero,
    Any,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub index: usize,
    pub line: usize,
    pub name: String,
    pub host: String,
    pub action: Action,
    pub timeout: f64,
    pub exit: ExitCheck,
    pub regex: Vec<String>,
    pub not_regex: Vec<String>,
    pub json: Option<serde_json::Value>,
    pub expect_failure: bool,
}

/// Where scenarios and topologies live.
pub fn vm_tests_dir() -> PathBuf {
    util::workspace_root().join("vm-tests")
}

/// All scenario ids (`suite/name`) with their directories, sorted.
pub fn discover() -> Result<Vec<(String, PathBuf)>> {
    let root = vm_tests_dir().join("scenarios");
    let mut found = Vec::new();
    let suites = fs::read_dir(&root).map_err(|e| fail!("reading {}: {e}", root.display()))?;
    for suite in suites.flatten() {
        if !suite.path().is_dir() {
            continue;
        }
        for sc in fs::read_dir(suite.path())?.flatten() {
            if sc.path().join("scenario.toml").is_file() {
                let id = format!(
                    "{}/{}",
                    suite.file_name().to_string_lossy(),
                    sc.file_name().to_string_lossy()
                );
                found.push((id, sc.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Does a GLOB select this scenario? `smoke` selects the suite, `smoke/*`
/// and `*cleartext*` are globs over `suite/name`.
pub fn selects(pattern: &str, id: &str) -> bool {
    util::glob_match(pattern, id)
        || util::glob_match(&format!("{pattern}/*"), id)
        || id.split('/').nth(1) == Some(pattern)
}

/// A typed view of one TOML table, collecting the keys it used so unknown
/// keys (typos) are reported.
struct Fields<'a> {
    table: &'a Table,
    used: Vec<&'static str>,
    at: String,
}

impl<'a> Fields<'a> {
    fn new(table: &'a Table, at: String) -> Self {
        Fields {
            table,
            used: Vec::new(),
            at,
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.push(key);
        self.table.get(key)
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(fail!(
                "{}: `{key}` must be a string, not {}",
                self.at,
                v.type_str()
            )),
        }
    }

    fn strings(&mut self, key: &'static str) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    v => Err(fail!(
                        "{}: `{key}` must hold strings, not {}",
                        self.at,
                        v.type_str()
                    )),
                })
                .collect(),
            Some(v) => Err(fail!(
                "{}: `{key}` must be a string or a list of strings, not {}",
                self.at,
                v.type_str()
            )),
        }
    }

    fn number(&mut self, key: &'static str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Integer(i)) if *i >= 0 => Ok(Some(*i as f64)),
            Some(Value::Float(f)) if *f >= 0.0 => Ok(Some(*f)),
            Some(v) => Err(fail!(
                "{}: `{key}` must be a non-negative number, not {}",
                self.at,
                shown(v)
            )),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(fail!(
                "{}: `{key}` must be true or false, not {}",
                self.at,
                shown(v)
            )),
        }
    }

    fn table(&mut self, key: &'static str) -> Result<Option<&'a Table>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(v) => Err(fail!(
                "{}: `{key}` must be a table, not {}",
                self.at,
                v.type_str()
            )),
        }
    }

    fn tables(&mut self, key: &'static str) -> Result<Vec<&'a Table>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Table(t) => Ok(t),
                    _ => Err(fail!("{}: `{key}` must be written [[{key}]]", self.at)),
                })
                .collect(),
            Some(_) => Err(fail!("{}: `{key}` must be written [[{key}]]", self.at)),
        }
    }

    /// Error on keys that were never asked for.
    fn finish(self) -> Result<()> {
        for k in self.table.keys() {
            if !self.used.iter().any(|u| u == k) {
                return Err(fail!(
                    "{}: unknown key `{k}` (known: {})",
                    self.at,
                    self.used.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// A value as it would be written in the file (no toml writer needed).
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        other => format!("a {}", other.type_str()),
    }
}

fn parse_file(path: &Path) -> Result<(String, Table)> {
    let text = fs::read_to_string(path).map_err(|e| fail!("reading {}: {e}", path.display()))?;
    let table: Table = text.parse().map_err(|e| fail!("{}: {e}", path.display()))?;
    Ok((text, table))
}

/// Line numbers (1-based) of each `[[name]]` header, in order.
fn header_lines(text: &str, name: &str) -> Vec<usize> {
    let header = format!("[[{name}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(&header))
        .map(|(i, _)| i + 1)
        .collect()
}

/// Parse a topology: `[link.NAME]` tables and `[host.NAME]` tables.
fn parse_topology(table: &Table, at: &str, source: String) -> Result<Topology> {
    let mut topo = Topology {
        source,
        ..Topology::default()
    };
    if let Some(Value::Table(links)) = table.get("link") {
        for (name, v) in links {
            if !matches!(v, Value::Table(t) if t.is_empty()) {
                return Err(fail!("{at}: [link.{name}] takes no keys yet"));
            }
            check_name(name, at, "link")?;
            topo.links.push(name.clone());
        }
    } else if table.contains_key("link") {
        return Err(fail!("{at}: `link` must be written [link.NAME]"));
    }
    let Some(Value::Table(hosts)) = table.get("host") else {
        return Err(fail!("{at}: no hosts: add [host.NAME] tables"));
    };
    for (name, v) in hosts {
        check_name(name, at, "host")?;
        if name == GUEST_HOST {
            return Err(fail!("{at}: host name `{GUEST_HOST}` is reserved"));
        }
        let Value::Table(t) = v else {
            return Err(fail!("{at}: host `{name}` must be a table"));
        };
        let mut f = Fields::new(t, format!("{at}: host `{name}`"));
        let guest = match f.number("guest")? {
            None => 1,
            Some(g) if (1.0..=4.0).contains(&g) && g.fract() == 0.0 => g as u32,
            Some(g) => return Err(fail!("{at}: host `{name}`: guest = {g}: use 1 to 4")),
        };
        let mut host = Host {
            name: name.clone(),
            guest,
            interfaces: Vec::new(),
            routes: f.strings("routes")?,
            sysctl: Vec::new(),
        };
        if let Some(sys) = f.table("sysctl")? {
            for (k, v) in sys {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Integer(i) => i.to_string(),
                    v => {
                        return Err(fail!(
                            "{at}: host `{name}`: sysctl {k} = {}: use a string",
                            shown(v)
                        ));
                    }
                };
                host.sysctl.push((k.clone(), v));
            }
        }
        if let Some(ifs) = f.table("interfaces")? {
            for (ifname, v) in ifs {
                if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
                    return Err(fail!(
                        "{at}: host `{name}`: `{ifname}` is not a valid interface name"
                    ));
                }
                let Value::Table(it) = v else {
                    return Err(fail!(
                        "{at}: host `{name}` interface `{ifname}` must be a table"
                    ));
                };
                let mut fi = Fields::new(it, format!("{at}: host `{name}` interface `{ifname}`"));
                let link = fi.string("link")?;
                let kind = fi.string("kind")?;
                let addresses = fi.strings("address")?;
                let here = fi.at.clone();
                fi.finish()?;
                match (kind.as_deref(), &link) {
                    (Some("dummy"), None) | (None | Some("veth"), Some(_)) => {}
                    (Some("dummy"), Some(_)) => {
                        return Err(fail!("{here}: a dummy interface has no link"));
                    }
                    (None | Some("veth"), None) => {
                        return Err(fail!(
                            "{here}: needs `link = \"NAME\"` (or kind = \"dummy\")"
                        ));
                    }
                    (Some(k), _) => return Err(fail!("{here}: unknown kind `{k}` (veth, dummy)")),
                }
                if let Some(l) = &link
                    && !topo.links.contains(l)
                {
                    return Err(fail!("{here}: no [link.{l}] in the topology"));
                }
                for a in &addresses {
                    if parse_prefix(a).is_none() {
                        return Err(fail!("{here}: `{a}` is not an address/prefix"));
                    }
                }
                host.interfaces.push(Interface {
                    name: ifname.clone(),
                    link,
                    addresses,
                });
            }
        }
        f.finish()?;
        topo.hosts.push(host);
    }
    for l in &topo.links {
        if topo.link_guests(l).len() > 2 {
            return Err(fail!(
                "{at}: link `{l}` joins hosts in more than two guests; a link can span at most two"
            ));
        }
    }
    Ok(topo)
}

impl Topology {
    /// How many guests the scenario boots.
    pub fn guests(&self) -> u32 {
        self.hosts.iter().map(|h| h.guest).max().unwrap_or(1)
    }

    /// The guests that have a host on `link`, sorted.
    pub fn link_guests(&self, link: &str) -> Vec<u32> {
        let mut g: Vec<u32> = self
            .hosts
            .iter()
            .filter(|h| h.interfaces.iter().any(|i| i.link.as_deref() == Some(link)))
            .map(|h| h.guest)
            .collect();
        g.sort_unstable();
        g.dedup();
        g
    }

    /// The guest a step's host runs in (`guest` is guest 1).
    pub fn guest_of(&self, host: &str) -> u32 {
        self.hosts
            .iter()
            .find(|h| h.name == host)
            .map(|h| h.guest)
            .unwrap_or(1)
    }

    /// Where a capture runs: the host's guest, or the first guest on the link.
    pub fn capture_guest(&self, c: &Capture) -> u32 {
        match (&c.link, &c.at) {
            (Some(l), _) => self.link_guests(l).first().copied().unwrap_or(1),
            (None, Some((h, _))) => self.guest_of(h),
            _ => 1,
        }
    }
}

fn check_name(name: &str, at: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 12
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(fail!(
            "{at}: {what} name `{name}`: use 1-12 characters a-z, 0-9, '-', starting with a letter"
        ))
    }
}

/// Load a topology file by name from `vm-tests/topologies/`.
pub fn load_topology(name: &str) -> Result<Topology> {
    let path = vm_tests_dir()
        .join("topologies")
        .join(format!("{name}.toml"));
    let (_, table) = parse_file(&path)?;
    let at = path.display().to_string();
    let mut f = Fields::new(&table, at.clone());
    f.string("description")?;
    f.get("link");
    f.get("host");
    f.finish()?;
    parse_topology(&table, &at, name.to_string())
}

impl Scenario {
    /// Parse and check `dir/scenario.toml`.
    pub fn load(id: &str, dir: &Path) -> Result<Scenario> {
        let file = dir.join("scenario.toml");
        let (text, table) = parse_file(&file)?;
        let at = file.display().to_string();
        let mut f = Fields::new(&table, at.clone());
        let description = f.string("description")?.unwrap_or_default();
        let topology = match f.string("topology")? {
            Some(name) => {
                if table.contains_key("host") || table.contains_key("link") {
                    return Err(fail!(
                        "{at}: give either `topology = \"NAME\"` or inline [host.*]/[link.*], not both"
                    ));
                }
                load_topology(&name).map_err(|e| fail!("{at}: topology `{name}`: {e}"))?
            }
            None => parse_topology(&table, &at, "inline".into())?,
        };
        f.get("host");
        f.get("link");
        let timeout = f.number("timeout")?.unwrap_or(120.0);
        let memory_mb = f.number("memory")?.map(|m| m as u32).unwrap_or(512);
        let cpus = f.number("cpus")?.map(|c| c as u32).unwrap_or(1).clamp(1, 4);
        let mut sc = Scenario {
            id: id.to_string(),
            dir: dir.to_path_buf(),
            description,
            topology,
            timeout,
            memory_mb,
            cpus,
            captures: Vec::new(),
            steps: Vec::new(),
        };
        let cap_lines = header_lines(&text, "capture");
        for (i, t) in f.tables("capture")?.into_iter().enumerate() {
            let line = cap_lines.get(i).copied().unwrap_or(0);
            sc.captures
                .push(sc.parse_capture(t, format!("{at}:{line}: capture {}", i + 1))?);
        }
        let step_lines = header_lines(&text, "step");
        for (i, t) in f.tables("step")?.into_iter().enumerate() {
            let line = step_lines.get(i).copied().unwrap_or(0);
            let step = sc.parse_step(i + 1, line, t, format!("{at}:{line}: step {}", i + 1))?;
            sc.steps.push(step);
        }
        f.finish()?;
        if sc.steps.is_empty() {
            return Err(fail!("{at}: no [[step]]s"));
        }
        Ok(sc)
    }

    fn host(&self, name: &str) -> Option<&Host> {
        self.topology.hosts.iter().find(|h| h.name == name)
    }

    fn parse_capture(&self, t: &Table, at: String) -> Result<Capture> {
        let mut f = Fields::new(t, at.clone());
        let name = f
            .string("name")?
            .ok_or_else(|| fail!("{at}: needs `name`"))?;
        check_name(&name, &at, "capture")?;
        let link = f.string("link")?;
        let host = f.string("host")?;
        let interface = f.string("interface")?;
        let at_host = match (&link, host, interface) {
            (Some(l), None, None) => {
                if !self.topology.links.contains(l) {
                    return Err(fail!("{at}: no link `{l}` in the topology"));
                }
                None
            }
            (None, Some(h), Some(i)) => {
                if self.host(&h).is_none() {
                    return Err(fail!("{at}: no host `{h}`"));
                }
                Some((h, i))
            }
            _ => {
                return Err(fail!(
                    "{at}: give `link = \"NAME\"`, or `host` and `interface`"
                ));
            }
        };
        let between = f.strings("protected_between")?;
        let between_labels = match between.as_slice() {
            [a, b] => (a.clone(), b.clone()),
            _ => Default::default(),
        };
        let protected_between = match between.as_slice() {
            [] => None,
            [a, b] => Some((self.endpoint(a, &at)?, self.endpoint(b, &at)?)),
            _ => {
                return Err(fail!(
                    "{at}: `protected_between` takes two hosts or prefixes"
                ));
            }
        };
        let min_protected = f.number("min_protected")?.map(|n| n as u64).unwrap_or(1);
        let expect_failure = f.bool("expect_failure")?;
        f.finish()?;
        if expect_failure && protected_between.is_none() {
            return Err(fail!(
                "{at}: `expect_failure` without a check (`protected_between`)"
            ));
        }
        Ok(Capture {
            name,
            link,
            at: at_host,
            protected_between,
            between_labels,
            min_protected,
            expect_failure,
        })
    }

    /// A host name (all its addresses) or a literal address/prefix.
    fn endpoint(&self, s: &str, at: &str) -> Result<Vec<String>> {
        if let Some(h) = self.host(s) {
            let addrs: Vec<String> = h
                .interfaces
                .iter()
                .flat_map(|i| i.addresses.iter())
                // the host's own addresses, not the subnets they are on
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect();
            if addrs.is_empty() {
                return Err(fail!("{at}: host `{s}` has no addresses"));
            }
            return Ok(addrs);
        }
        if parse_prefix(s).is_some() {
            return Ok(vec![s.to_string()]);
        }
        Err(fail!("{at}: `{s}` is neither a host nor an address/prefix"))
    }

    fn parse_step(&self, index: usize, line: usize, t: &Table, at: String) -> Result<Step> {
        let mut f = Fields::new(t, at.clone());
        let host = f.string("host")?;
        let run = f.string("run")?;
        let wait = f.string("wait")?;
        let daemon = f.string("daemon")?;
        let ready = f.string("ready")?;
        let log = f.string("log")?;
        let stop = f.string("stop")?;
        let sleep = f.number("sleep")?;
        let name = f.string("name")?;
        let timeout = f.number("timeout")?;
        let exit = match f.get("exit") {
            None => None,
            Some(Value::Integer(i)) => Some(ExitCheck::Code(*i as i32)),
            Some(Value::String(s)) if s == "any" => Some(ExitCheck::Any),
            Some(Value::String(s)) if s == "nonzero" => Some(ExitCheck::NonZero),
            Some(v) => {
                return Err(fail!(
                    "{at}: `exit` is a number, \"nonzero\" or \"any\", not {}",
                    shown(v)
                ));
            }
        };
        let regex = f.strings("regex")?;
        let not_regex = f.strings("not_regex")?;
        let json = match f.string("json")? {
            None => None,
            Some(j) => {
                Some(serde_json::from_str(&j).map_err(|e| fail!("{at}: `json` is not JSON: {e}"))?)
            }
        };
        let expect_failure = f.bool("expect_failure")?;
        f.finish()?;
        for r in regex.iter().chain(&not_regex) {
            regex_lite::Regex::new(r).map_err(|e| fail!("{at}: bad regex `{r}`: {e}"))?;
        }
        let has_ready = ready.is_some();
        let action = match (run, wait, log, stop, sleep, daemon) {
            (Some(c), None, None, None, None, Some(d)) => {
                check_name(&d, &at, "daemon")?;
                Action::Daemon {
                    name: d,
                    command: c,
                    ready,
                }
            }
            (Some(c), None, None, None, None, None) => Action::Run(c),
            (None, Some(c), None, None, None, None) => Action::Wait(c),
            (None, None, Some(d), None, None, None) => Action::Log(d),
            (None, None, None, Some(d), None, None) => Action::Stop(d),
            (None, None, None, None, Some(s), None) => Action::Sleep(s),
            (None, None, None, None, None, Some(_)) => {
                return Err(fail!("{at}: a daemon needs `run = \"COMMAND\"`"));
            }
            _ => {
                return Err(fail!(
                    "{at}: give exactly one of `run`, `wait`, `daemon` (with `run`), `log`, `stop`, `sleep`"
                ));
            }
        };
        if has_ready && !matches!(action, Action::Daemon { .. }) {
            return Err(fail!("{at}: `ready` belongs to a daemon step"));
        }
        let host = match (&action, host) {
            (Action::Sleep(_), h) => h.unwrap_or_else(|| GUEST_HOST.into()),
            (_, Some(h)) => h,
            (_, None) if self.topology.hosts.len() == 1 => self
                .topology
                .hosts
                .first()
                .map(|h| h.name.clone())
                .unwrap_or_default(),
            (_, None) => return Err(fail!("{at}: needs `host = \"NAME\"`")),
        };
        if host != GUEST_HOST && self.host(&host).is_none() {
            return Err(fail!(
                "{at}: no host `{host}` in the topology (hosts: {}, or `{GUEST_HOST}`)",
                self.topology
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let has_checks = !regex.is_empty() || !not_regex.is_empty() || json.is_some();
        match &action {
            Action::Sleep(_) if has_checks || exit.is_some() => {
                return Err(fail!("{at}: a sleep step has no checks"));
            }
            Action::Log(_) if exit.is_some() || json.is_some() => {
                return Err(fail!("{at}: a log step checks only `regex`/`not_regex`"));
            }
            Action::Daemon { .. } if has_checks => {
                return Err(fail!(
                    "{at}: check a daemon's output with a later `log = \"NAME\"` step"
                ));
            }
            _ => {}
        }
        let default_exit = match &action {
            Action::Stop(_) | Action::Log(_) | Action::Sleep(_) | Action::Daemon { .. } => {
                ExitCheck::Any
            }
            _ => ExitCheck::Code(0),
        };
        let default_timeout = match &action {
            Action::Log(_) | Action::Stop(_) => 10.0,
            // slow starters (charon) on a busy machine
            Action::Daemon { .. } => 60.0,
            _ => 30.0,
        };
        let label = name.unwrap_or_else(|| {
            let what = match &action {
                Action::Run(c) | Action::Wait(c) => c.clone(),
                Action::Daemon { name, .. } => format!("daemon {name}"),
                Action::Log(d) => format!("log {d}"),
                Action::Stop(d) => format!("stop {d}"),
                Action::Sleep(s) => format!("sleep {s}"),
            };
            let what: String = what
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(60)
                .collect();
            format!("{host}: {what}")
        });
        Ok(Step {
            index,
            line,
            name: label,
            host,
            action,
            timeout: timeout.unwrap_or(default_timeout),
            exit: exit.unwrap_or(default_exit),
            regex,
            not_regex,
            json,
            expect_failure,
        })
    }

    /// Layers of per-host files, topmost first (only those that exist).
    pub fn host_etc_layers(&self, host: &str) -> Vec<PathBuf> {
        [
            self.dir.join("hosts").join(host).join("etc"),
            vm_tests_dir().join("hosts").join(host).join("etc"),
        ]
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
    }
}

/// Parse `addr[/len]` into (bytes, prefix length, is_v6).
pub fn parse_prefix(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = a.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((addr, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        assert!(selects("smoke", "smoke/esp-static"));
        assert!(selects("smoke/*", "smoke/esp-static"));
        assert!(selects("esp-static", "smoke/esp-static"));
        assert!(selects("*static", "smoke/esp-static"));
        assert!(!selects("iked", "smoke/esp-static"));
    }

    #[test]
    fn prefixes() {
        assert!(parse_prefix("192.0.2.1/24").is_some());
        assert!(parse_prefix("2001:db8::1/64").is_some());
        assert!(parse_prefix("192.0.2.1").is_some());
        assert!(parse_prefix("192.0.2.1/33").is_none());
        assert!(parse_prefix("alice").is_none());
    }

    fn scenario_from(text: &str) -> Result<Scenario> {
        let dir =
            std::env::temp_dir().join(format!("xtask-scn-{}-{}", std::process::id(), text.len()));
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("scenario.toml"), text)?;
        let r = Scenario::load("t/x", &dir);
        let _ = fs::remove_dir_all(&dir);
        r
    }

    const TOPO: &str = r#"
[link.lan]
[host.alice.interfaces]
eth0 = { link = "lan", address = ["192.0.2.1/24"] }
[host.bob.interfaces]
eth0 = { link = "lan", address = ["192.0.2.2/24"] }
"#;

    #[test]
    fn inline_scenario_parses() {
        let sc = scenario_from(&format!(
            "{TOPO}\n[[capture]]\nname = \"wire\"\nlink = \"lan\"\nprotected_between = [\"alice\", \"bob\"]\n\
             [[step]]\nhost = \"alice\"\nrun = \"true\"\nregex = \"x\"\n\
             [[step]]\nsleep = 0.5\n"
        ));
        let sc = match sc {
            Ok(sc) => sc,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(sc.topology.hosts.len(), 2);
        assert_eq!(sc.steps.len(), 2);
        assert_eq!(sc.steps.first().map(|s| s.line), Some(12));
        assert_eq!(sc.captures.len(), 1);
    }

    #[test]
    fn typos_and_mistakes_are_reported() {
        let e = scenario_from(&format!(
            "{TOPO}\n[[step]]\nhost = \"alice\"\nrun = \"true\"\nrgex = \"x\"\n"
        ))
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
        assert!(e.contains("unknown key `rgex`"), "{e}");
        assert!(e.contains("scenario.toml:8: step 1"), "{e}");
        let e = scenario_from(&format!(
            "{TOPO}\n[[step]]\nhost = \"carol\"\nrun = \"true\"\n"
        ))
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
        assert!(e.contains("no host `carol`"), "{e}");
        let e = scenario_from(&format!(
            "{TOPO}\n[[step]]\nhost = \"alice\"\nrun = \"a\"\nwait = \"b\"\n"
        ))
        .err()
        .map(|e| e.0)
        .unwrap_or_default();
        assert!(e.contains("exactly one of"), "{e}");
    }
}
