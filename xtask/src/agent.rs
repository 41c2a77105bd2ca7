//! The scenario agent: runs inside the guest as `xtask guest-agent`, builds
//! the topology, runs the steps, evaluates the checks and writes
//! `result.json` into the results share (`/out`).

use std::fs;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::checks;
use crate::fail;
use crate::pcap;
use crate::scenario::{Action, Capture, GUEST_HOST, Scenario, Step};
use crate::util::{Ctx, Result};

const BUSYBOX: &str = "/gatekey/busybox";
const OUT: &str = "/out";
const POLL: Duration = Duration::from_millis(25);
const RETRY: Duration = Duration::from_millis(250);

/// `xtask guest-agent --id ID --dir SCENARIO_DIR --bin BIN`
pub fn main(args: &[String]) -> Result<()> {
    let mut id = None;
    let mut dir = None;
    let mut bin = None;
    let mut guest = 1u32;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--id" => id = it.next().cloned(),
            "--dir" => dir = it.next().map(PathBuf::from),
            "--bin" => bin = it.next().map(PathBuf::from),
            "--guest" => {
                guest = it
                    .next()
                    .and_then(|g| g.parse().ok())
                    .ok_or_else(|| fail!("guest-agent: --guest needs a number"))?;
            }
            other => return Err(fail!("guest-agent: unknown argument `{other}`")),
        }
    }
    let (Some(id), Some(dir), Some(bin)) = (id, dir, bin) else {
        return Err(fail!(
            "usage: xtask guest-agent --id ID --dir DIR --bin BIN"
        ));
    };
    let uptime = fs::read_to_string("/proc/uptime").ok().and_then(|s| {
        s.split_whitespace()
            .next()
            .and_then(|u| u.parse::<f64>().ok())
    });
    let mut agent = Agent {
        started: Instant::now(),
        bin,
        guest,
        remote_failure: false,
        daemons: Vec::new(),
        captures: Vec::new(),
        step_results: Vec::new(),
        expected: Vec::new(),
        bench: Vec::new(),
    };
    let scenario = Scenario::load(&id, &dir);
    let outcome = match &scenario {
        Ok(sc) => agent.run(sc),
        Err(e) => Err(format!("scenario: {e}")),
    };
    if let (Err(e), Ok(sc)) = (&outcome, &scenario)
        && sc.topology.guests() > 1
        && !agent.remote_failure
    {
        // tell the other guests, so they stop waiting
        let _ = write_marker("abort", &format!("fail guest {guest}: {e}"));
    }
    agent.stop_all();
    let guests = scenario.as_ref().map(|s| s.topology.guests()).unwrap_or(1);
    let (status, reason) = match &outcome {
        Ok(()) => ("PASS", Value::Null),
        Err(r) => ("FAIL", Value::String(r.clone())),
    };
    let result = json!({
        "scenario": id,
        "guest": guest,
        "status": status,
        "reason": reason,
        "remote_failure": agent.remote_failure,
        "expected_failures_seen": agent.expected,
        "guest_uptime_at_agent_start": uptime,
        "agent_secs": agent.started.elapsed().as_secs_f64(),
        "steps": agent.step_results,
        "captures": agent.captures.iter().map(|c| c.result.clone()).collect::<Vec<_>>(),
        "bench": agent.bench,
    });
    let text = serde_json::to_string_pretty(&result).unwrap_or_default();
    let file = if guests > 1 {
        format!("result-g{guest}.json")
    } else {
        "result.json".to_string()
    };
    fs::write(Path::new(OUT).join(file), text + "\n")?;
    println!(
        "gatekey-agent: {status} {}",
        outcome.err().unwrap_or_default()
    );
    Ok(())
}

struct Daemon {
    host: String,
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

struct RunningCapture {
    spec: Capture,
    child: Option<Child>,
    pcap: PathBuf,
    result: Value,
}

struct Agent {
    started: Instant,
    bin: PathBuf,
    /// This guest's number (1-based) in a multi-guest scenario.
    guest: u32,
    /// The scenario failed in another guest.
    remote_failure: bool,
    daemons: Vec<Daemon>,
    captures: Vec<RunningCapture>,
    step_results: Vec<Value>,
    expected: Vec<String>,
    bench: Vec<String>,
}

/// What one command run produced.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    secs: f64,
}

fn exit_code(st: ExitStatus) -> Option<i32> {
    st.code().or_else(|| st.signal().map(|s| 128 + s))
}

fn sync_dir() -> PathBuf {
    Path::new(OUT).join(".gatekey/sync")
}

/// Write a marker other guests can see (atomically: write, then rename).
fn write_marker(name: &str, text: &str) -> std::io::Result<()> {
    let d = sync_dir();
    fs::create_dir_all(&d)?;
    let tmp = d.join(format!(".{name}.{}", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(tmp, d.join(name))
}

fn read_marker(name: &str) -> Option<String> {
    fs::read_to_string(sync_dir().join(name)).ok()
}

fn host_dir(host: &str) -> PathBuf {
    Path::new("/gatekey/hosts").join(host)
}

fn out_dir(host: &str) -> PathBuf {
    if host == GUEST_HOST {
        PathBuf::from(OUT)
    } else {
        Path::new(OUT).join("hosts").join(host)
    }
}

/// Run a setup command in the guest's initial namespace; error with its stderr.
fn sh(cmd: &mut Command) -> std::result::Result<(), String> {
    let shown = crate::util::show(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{shown}` failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

fn ip_batch(netns: Option<&str>, lines: &[String], what: &str) -> std::result::Result<(), String> {
    if lines.is_empty() {
        return Ok(());
    }
    let file = Path::new("/gatekey").join(format!("ip-{what}.batch"));
    fs::write(&file, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
    let mut c = Command::new("/sbin/ip");
    if let Some(ns) = netns {
        c.args(["-n", ns]);
    }
    if what.ends_with("-6") {
        c.arg("-6");
    }
    c.arg("-batch").arg(&file);
    sh(&mut c).map_err(|e| format!("{what}: {e}"))
}

/// (interface, MAC) of the guest's network devices.
fn nic_names() -> Vec<(String, String)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/class/net") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(mac) = fs::read_to_string(e.path().join("address")) {
                v.push((name, mac.trim().to_string()));
            }
        }
    }
    v
}

/// Kill a process group: SIGTERM, then SIGKILL after `grace`.
fn kill_group(child: &mut Child, signal: &str, grace: Duration) -> Option<i32> {
    if let Ok(Some(st)) = child.try_wait() {
        return exit_code(st);
    }
    let pg = format!("-{}", child.id());
    let _ = Command::new("/usr/bin/kill")
        .args(["-s", signal, "--", &pg])
        .stderr(Stdio::null())
        .status();
    let t = Instant::now();
    while t.elapsed() < grace {
        if let Ok(Some(st)) = child.try_wait() {
            return exit_code(st);
        }
        std::thread::sleep(POLL);
    }
    let _ = Command::new("/usr/bin/kill")
        .args(["-s", "KILL", "--", &pg])
        .stderr(Stdio::null())
        .status();
    child.wait().ok().and_then(exit_code)
}

impl Agent {
    fn run(&mut self, sc: &Scenario) -> std::result::Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs_f64(sc.timeout);
        let t = Instant::now();
        self.topology(sc).map_err(|e| format!("topology: {e}"))?;
        println!(
            "gatekey-agent: topology up in {:.2}s",
            t.elapsed().as_secs_f64()
        );
        for c in &sc.captures {
            if sc.topology.capture_guest(c) == self.guest {
                self.start_capture(sc, c)?;
            }
        }
        let guests = sc.topology.guests();
        if guests > 1 {
            write_marker(&format!("ready-{}", self.guest), "ok").map_err(|e| e.to_string())?;
            for g in 1..=guests {
                self.wait_marker(&format!("ready-{g}"), deadline)
                    .map_err(|e| format!("waiting for guest {g} to boot: {e}"))?;
            }
            println!("gatekey-agent: all {guests} guests ready");
        }
        for step in &sc.steps {
            if Instant::now() > deadline {
                return Err(format!(
                    "scenario timeout ({}s) reached before step {}",
                    sc.timeout, step.index
                ));
            }
            let marker = format!("step-{:02}", step.index);
            if sc.topology.guest_of(&step.host) != self.guest {
                match self.wait_marker(&marker, deadline) {
                    Ok(()) => continue,
                    Err(e) => {
                        self.remote_failure = true;
                        return Err(e);
                    }
                }
            }
            let outcome = self.step(sc, step, deadline);
            let failure = match outcome {
                Ok(f) => f,
                Err(e) => Some(e),
            };
            let (ok, verdict) = match (&failure, step.expect_failure) {
                (None, false) => (true, "pass"),
                (Some(_), true) => (true, "expected failure seen"),
                (None, true) => (false, "passed but was expected to fail"),
                (Some(_), false) => (false, "fail"),
            };
            if let Some(v) = self.step_results.last_mut()
                && let Some(o) = v.as_object_mut()
            {
                o.insert("ok".into(), json!(ok));
                o.insert("verdict".into(), json!(verdict));
                o.insert("detail".into(), json!(failure));
            }
            if guests > 1 {
                let text = if ok {
                    "ok".to_string()
                } else {
                    format!("fail guest {}", self.guest)
                };
                write_marker(&marker, &text).map_err(|e| e.to_string())?;
            }
            let label = format!("step {} ({}, line {})", step.index, step.name, step.line);
            match (failure, step.expect_failure) {
                (None, false) => {}
                (Some(f), true) => self.expected.push(format!("{label}: {f}")),
                (None, true) => {
                    return Err(format!("{label}: passed but was expected to fail"));
                }
                (Some(f), false) => return Err(format!("{label}: {f}")),
            }
            self.check_daemons()?;
        }
        self.finish_captures()?;
        self.check_daemons()?;
        Ok(())
    }

    /// Wait until another guest writes `name`; an `abort` or a failed step
    /// there ends this guest's run too.
    fn wait_marker(&self, name: &str, deadline: Instant) -> std::result::Result<(), String> {
        loop {
            if let Some(a) = read_marker("abort") {
                return Err(format!(
                    "the scenario failed in another guest ({})",
                    a.trim()
                ));
            }
            match read_marker(name) {
                Some(t) if t.starts_with("ok") => return Ok(()),
                Some(t) => return Err(format!("{name} failed in another guest ({})", t.trim())),
                None => {}
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {name} from another guest"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Links as bridges, hosts as namespaces joined to them by veth pairs.
    fn topology(&mut self, sc: &Scenario) -> std::result::Result<(), String> {
        let mut root = Vec::new();
        let nics = nic_names();
        for (li, l) in sc.topology.links.iter().enumerate() {
            let guests = sc.topology.link_guests(l);
            if !guests.contains(&self.guest) {
                continue;
            }
            root.push(format!(
                "link add br-{l} type bridge stp_state 0 forward_delay 0 mcast_snooping 0"
            ));
            root.push(format!("link set br-{l} up"));
            if guests.len() > 1 {
                // the virtio NIC QEMU connected to the other guest's end
                let mac = crate::guest::link_mac(self.guest, li);
                let dev = nics
                    .iter()
                    .find(|(_, m)| m.eq_ignore_ascii_case(&mac))
                    .map(|(d, _)| d.clone())
                    .ok_or_else(|| format!("no NIC with MAC {mac} for link {l}"))?;
                root.push(format!("link set {dev} master br-{l} up"));
            }
        }
        for (hi, h) in sc.topology.hosts.iter().enumerate() {
            if h.guest != self.guest {
                continue;
            }
            sh(Command::new("/sbin/ip").args(["netns", "add", &h.name]))?;
            for (ii, i) in h.interfaces.iter().enumerate() {
                if let Some(link) = &i.link {
                    let mac = format!("02:00:00:00:{:02x}:{:02x}", hi + 1, ii + 1);
                    let outer = format!("v{hi}-{ii}");
                    root.push(format!(
                        "link add {outer} type veth peer name {} address {mac} netns {}",
                        i.name, h.name
                    ));
                    root.push(format!("link set {outer} master br-{link} up"));
                }
            }
        }
        ip_batch(None, &root, "links")?;
        for h in sc.topology.hosts.iter().filter(|h| h.guest == self.guest) {
            // sysctls first: forwarding and friends before addresses and routes
            if !h.sysctl.is_empty() {
                let mut c = Command::new(BUSYBOX);
                c.args(["nsenter", &format!("--net=/run/netns/{}", h.name)])
                    .args([BUSYBOX, "sysctl", "-q", "-w"]);
                for (k, v) in &h.sysctl {
                    c.arg(format!("{k}={v}"));
                }
                sh(&mut c).map_err(|e| format!("host {}: sysctl: {e}", h.name))?;
            }
            let mut lines = vec!["link set lo up".to_string()];
            for i in &h.interfaces {
                if i.link.is_none() {
                    lines.push(format!("link add {} type dummy", i.name));
                }
                for a in &i.addresses {
                    if a.contains(':') {
                        lines.push(format!("address add {a} dev {} nodad", i.name));
                    } else {
                        lines.push(format!("address add {a} dev {}", i.name));
                    }
                }
                lines.push(format!("link set {} up", i.name));
            }
            let mut v6 = Vec::new();
            for r in &h.routes {
                if r.contains(':') {
                    v6.push(format!("route add {r}"));
                } else {
                    lines.push(format!("route add {r}"));
                }
            }
            ip_batch(Some(&h.name), &lines, &format!("host-{}", h.name))?;
            ip_batch(Some(&h.name), &v6, &format!("host-{}-6", h.name))?;
            self.host_fs(sc, &h.name)
                .map_err(|e| format!("host {}: {e}", h.name))?;
        }
        fs::create_dir_all(Path::new(OUT).join("steps")).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The host's own /etc (overlay), /run, /var, /tmp, bpffs and the
    /// script that enters them.
    fn host_fs(&self, sc: &Scenario, host: &str) -> std::result::Result<(), String> {
        let d = host_dir(host);
        for sub in [
            "etc",
            "etc-upper",
            "etc-work",
            "run/lock",
            "tmp",
            "var/lib",
            "var/log",
            "var/tmp",
            "var/cache",
            "var/spool",
            "bpf",
        ] {
            fs::create_dir_all(d.join(sub)).map_err(|e| e.to_string())?;
        }
        fs::create_dir_all(out_dir(host)).map_err(|e| e.to_string())?;
        let _ = std::os::unix::fs::symlink("/run", d.join("var/run"));
        let _ = std::os::unix::fs::symlink("/run/lock", d.join("var/lock"));
        let mut lower: Vec<String> = sc
            .host_etc_layers(host)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        lower.push("/gatekey/hostetc".into());
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            d.join("etc-upper").display(),
            d.join("etc-work").display()
        );
        sh(Command::new(BUSYBOX)
            .args(["mount", "-t", "overlay", "-o", &opts, "overlay"])
            .arg(d.join("etc")))?;
        sh(Command::new(BUSYBOX)
            .args(["mount", "-t", "bpf", "bpf"])
            .arg(d.join("bpf")))?;
        // The workspace may live under a directory the host gets its own
        // copy of (a checkout in /tmp): bring it back.
        let mut rebind = String::new();
        for b in crate::guest::bind_paths() {
            if ["/tmp", "/run", "/var", "/etc"]
                .iter()
                .any(|p| b.starts_with(p))
            {
                rebind.push_str(&format!(
                    "$B mkdir -p '{p}' && $B mount --bind '/gatekey/host{p}' '{p}'\n",
                    p = b.display()
                ));
            }
        }
        let script = format!(
            "B={BUSYBOX}\nH={h}\n$B hostname {host}\n\
             $B mount --bind $H/etc /etc\n$B mount --bind $H/run /run\n\
             $B mount --bind $H/var /var\n$B mount --bind $H/tmp /tmp\n\
             $B umount -l /sys\n$B mount -t sysfs sysfs /sys\n\
             $B mount --bind $H/bpf /sys/fs/bpf\n\
             $B mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null\n\
             {rebind}cd \"$OUT\" || exit 126\nexec \"$@\"\n",
            h = d.display()
        );
        fs::write(d.join("enter"), script).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// A command for `host`: in its namespaces, with the scenario environment.
    fn command(&self, sc: &Scenario, host: &str, script: &str) -> Command {
        let mut c = if host == GUEST_HOST {
            let mut c = Command::new("/bin/sh");
            c.current_dir(OUT);
            c
        } else {
            let mut c = Command::new(BUSYBOX);
            c.args(["nsenter", &format!("--net=/run/netns/{host}"), BUSYBOX])
                .args(["unshare", "-m", "-u", "--propagation", "private", BUSYBOX])
                .arg("sh")
                .arg(host_dir(host).join("enter"))
                .arg("/bin/sh");
            c
        };
        c.args(["-e", "-c", script]);
        c.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.bin.display()
                ),
            )
            .env("HOME", "/root")
            .env("TERM", "dumb")
            .env("LANG", "C.UTF-8")
            .env("HOST", host)
            .env("OUT", out_dir(host))
            .env("RESULTS", OUT)
            .env("SCENARIO_DIR", &sc.dir)
            .env("WORKSPACE", crate::util::workspace_root())
            .env("BIN", &self.bin)
            .env("EXAMPLES", self.bin.join("examples"))
            .env("RUST_BACKTRACE", "1");
        if let Ok(l) = std::env::var("RUST_LOG") {
            c.env("RUST_LOG", l);
        }
        c.stdin(Stdio::null()).process_group(0);
        c
    }

    /// Run a command to completion (killed after `timeout`).
    fn run_once(&self, sc: &Scenario, step: &Step, script: &str, timeout: f64) -> Result<Ran> {
        let base = Path::new(OUT)
            .join("steps")
            .join(format!("{:02}", step.index));
        let (o, e) = (base.with_extension("stdout"), base.with_extension("stderr"));
        let mut c = self.command(sc, &step.host, script);
        c.stdout(fs::File::create(&o)?)
            .stderr(fs::File::create(&e)?);
        let t = Instant::now();
        let mut child = c.spawn().ctx(|| format!("starting `{script}`"))?;
        let limit = Duration::from_secs_f64(timeout);
        let code = loop {
            if let Some(st) = child.try_wait()? {
                break exit_code(st);
            }
            if t.elapsed() > limit {
                kill_group(&mut child, "TERM", Duration::from_secs(2));
                break None;
            }
            std::thread::sleep(POLL);
        };
        let secs = t.elapsed().as_secs_f64();
        let stdout = fs::read_to_string(&o).unwrap_or_default();
        let stderr = fs::read_to_string(&e).unwrap_or_default();
        let _ = fs::remove_file(&o);
        let _ = fs::remove_file(&e);
        Ok(Ran {
            code,
            stdout,
            stderr,
            secs,
        })
    }

    fn record(&mut self, step: &Step, command: &str, ran: &Ran, attempts: u32) {
        let path = Path::new(OUT)
            .join("steps")
            .join(format!("{:02}.txt", step.index));
        let text = format!(
            "step {} (line {}): {}\nhost: {}\n$ {}\nexit: {}  time: {:.2}s  attempts: {}\n--- stdout\n{}--- stderr\n{}",
            step.index,
            step.line,
            step.name,
            step.host,
            command,
            checks::describe_exit(ran.code),
            ran.secs,
            attempts,
            ran.stdout,
            ran.stderr
        );
        let _ = fs::write(path, text);
        for l in ran.stdout.lines() {
            if let Some(b) = l.strip_prefix("BENCH ") {
                self.bench.push(format!("BENCH {b}"));
            }
        }
        self.step_results.push(json!({
            "index": step.index,
            "line": step.line,
            "name": step.name,
            "host": step.host,
            "exit": ran.code,
            "secs": ran.secs,
            "attempts": attempts,
        }));
    }

    /// Run one step; `Ok(Some(reason))` if a check failed.
    fn step(
        &mut self,
        sc: &Scenario,
        step: &Step,
        deadline: Instant,
    ) -> std::result::Result<Option<String>, String> {
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let timeout = step.timeout.min(remaining.max(0.1));
        println!("gatekey-agent: step {}: {}", step.index, step.name);
        match &step.action {
            Action::Run(cmd) => {
                let ran = self.run_once(sc, step, cmd, timeout).map_err(|e| e.0)?;
                self.record(step, cmd, &ran, 1);
                Ok(checks::first_failure(
                    step,
                    ran.code,
                    &ran.stdout,
                    &ran.stderr,
                ))
            }
            Action::Wait(cmd) => {
                let t = Instant::now();
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let left = (timeout - t.elapsed().as_secs_f64()).max(0.1);
                    let ran = self.run_once(sc, step, cmd, left).map_err(|e| e.0)?;
                    let failure = checks::first_failure(step, ran.code, &ran.stdout, &ran.stderr);
                    if failure.is_none()
                        || t.elapsed().as_secs_f64() + RETRY.as_secs_f64() > timeout
                    {
                        self.record(step, cmd, &ran, attempts);
                        return Ok(failure.map(|f| {
                            format!("still failing after {timeout}s ({attempts} attempts): {f}")
                        }));
                    }
                    std::thread::sleep(RETRY);
                }
            }
            Action::Daemon {
                name,
                command,
                ready,
            } => self.start_daemon(sc, step, name, command, ready.as_deref(), timeout),
            Action::Log(name) => {
                let Some(d) = self
                    .daemons
                    .iter()
                    .find(|d| &d.name == name && d.host == step.host)
                else {
                    return Err(format!("no daemon `{name}` was started on {}", step.host));
                };
                let log = d.log.clone();
                let t = Instant::now();
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let text = fs::read_to_string(&log).unwrap_or_default();
                    let ran = Ran {
                        code: Some(0),
                        stdout: text,
                        stderr: String::new(),
                        secs: t.elapsed().as_secs_f64(),
                    };
                    let failure = checks::first_failure(step, ran.code, &ran.stdout, "");
                    if failure.is_none() || t.elapsed().as_secs_f64() >= timeout {
                        self.record(step, &format!("(log of {name})"), &ran, attempts);
                        return Ok(failure.map(|f| format!("log {name}: {f}")));
                    }
                    std::thread::sleep(RETRY);
                }
            }
            Action::Stop(name) => {
                let Some(d) = self
                    .daemons
                    .iter_mut()
                    .find(|d| &d.name == name && d.host == step.host && !d.stopped)
                else {
                    return Err(format!("no running daemon `{name}` on {}", step.host));
                };
                let t = Instant::now();
                let code = kill_group(&mut d.child, "TERM", Duration::from_secs_f64(timeout));
                d.stopped = true;
                let ran = Ran {
                    code,
                    stdout: String::new(),
                    stderr: String::new(),
                    secs: t.elapsed().as_secs_f64(),
                };
                self.record(step, &format!("(stop {name})"), &ran, 1);
                Ok(checks::first_failure(step, code, "", ""))
            }
            Action::Sleep(s) => {
                std::thread::sleep(Duration::from_secs_f64(s.min(remaining)));
                let ran = Ran {
                    code: Some(0),
                    stdout: String::new(),
                    stderr: String::new(),
                    secs: *s,
                };
                self.record(step, &format!("(sleep {s})"), &ran, 1);
                Ok(None)
            }
        }
    }

    fn start_daemon(
        &mut self,
        sc: &Scenario,
        step: &Step,
        name: &str,
        command: &str,
        ready: Option<&str>,
        timeout: f64,
    ) -> std::result::Result<Option<String>, String> {
        if self
            .daemons
            .iter()
            .any(|d| d.name == name && d.host == step.host && !d.stopped)
        {
            return Err(format!("daemon `{name}` already runs on {}", step.host));
        }
        let log = out_dir(&step.host).join(format!("{name}.log"));
        let file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut c = self.command(sc, &step.host, command);
        c.stdout(file).stderr(err);
        let child = c
            .spawn()
            .map_err(|e| format!("starting daemon {name}: {e}"))?;
        self.daemons.push(Daemon {
            host: step.host.clone(),
            name: name.to_string(),
            child,
            log: log.clone(),
            stopped: false,
        });
        let t = Instant::now();
        let mut attempts = 0;
        let mut last = Ran {
            code: Some(0),
            stdout: String::new(),
            stderr: String::new(),
            secs: 0.0,
        };
        if let Some(ready) = ready {
            loop {
                attempts += 1;
                if let Some(died) = self.daemon_died(name, &step.host) {
                    self.record(step, command, &last, attempts);
                    return Ok(Some(format!("daemon {name} {died} before it was ready")));
                }
                let left = (timeout - t.elapsed().as_secs_f64()).max(0.1);
                last = self.run_once(sc, step, ready, left).map_err(|e| e.0)?;
                if last.code == Some(0) {
                    break;
                }
                if t.elapsed().as_secs_f64() + RETRY.as_secs_f64() > timeout {
                    self.record(step, command, &last, attempts);
                    return Ok(Some(format!(
                        "daemon {name} not ready after {timeout}s: `{ready}` exited {}",
                        checks::describe_exit(last.code)
                    )));
                }
                std::thread::sleep(RETRY);
            }
        }
        last.secs = t.elapsed().as_secs_f64();
        self.record(step, command, &last, attempts.max(1));
        Ok(None)
    }

    /// If the daemon has exited: how, and the end of its log.
    fn daemon_died(&mut self, name: &str, host: &str) -> Option<String> {
        let d = self
            .daemons
            .iter_mut()
            .find(|d| d.name == name && d.host == host && !d.stopped)?;
        let st = d.child.try_wait().ok().flatten()?;
        d.stopped = true;
        let log = fs::read_to_string(&d.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Some(format!(
            "exited with status {} (log hosts/{host}/{name}.log ends: `{}`)",
            checks::describe_exit(exit_code(st)),
            tail.join(" / ")
        ))
    }

    fn check_daemons(&mut self) -> std::result::Result<(), String> {
        let live: Vec<(String, String)> = self
            .daemons
            .iter()
            .filter(|d| !d.stopped)
            .map(|d| (d.name.clone(), d.host.clone()))
            .collect();
        for (name, host) in live {
            if let Some(died) = self.daemon_died(&name, &host) {
                return Err(format!("daemon {name} on {host} {died}"));
            }
        }
        Ok(())
    }

    fn start_capture(&mut self, sc: &Scenario, c: &Capture) -> std::result::Result<(), String> {
        let pcap = Path::new(OUT).join(format!("{}.pcap", c.name));
        let errlog = Path::new(OUT).join(format!("{}.tcpdump.log", c.name));
        let (host, iface) = match (&c.link, &c.at) {
            (Some(l), _) => (GUEST_HOST.to_string(), format!("br-{l}")),
            (None, Some((h, i))) => (h.clone(), i.clone()),
            _ => return Err(format!("capture {}: nowhere to capture", c.name)),
        };
        let script = format!(
            "exec tcpdump -i {iface} -n -U --immediate-mode -Z root -w {} 2>{}",
            pcap.display(),
            errlog.display()
        );
        let mut cmd = self.command(sc, &host, &script);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("capture {}: starting tcpdump: {e}", c.name))?;
        let t = Instant::now();
        loop {
            let log = fs::read_to_string(&errlog).unwrap_or_default();
            if log.contains("listening on") {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "capture {}: tcpdump exited {}: {}",
                    c.name,
                    checks::describe_exit(exit_code(st)),
                    log.trim()
                ));
            }
            if t.elapsed() > Duration::from_secs(15) {
                kill_group(&mut child, "KILL", Duration::ZERO);
                return Err(format!("capture {}: tcpdump did not start in 15s", c.name));
            }
            std::thread::sleep(POLL);
        }
        self.captures.push(RunningCapture {
            spec: c.clone(),
            child: Some(child),
            pcap,
            result: json!({"name": c.name}),
        });
        Ok(())
    }

    /// Stop the captures and run their checks.
    fn finish_captures(&mut self) -> std::result::Result<(), String> {
        // Let in-flight packets reach the files: wait until no pcap has
        // grown for 300 ms (at most 3 s).
        let size = |c: &RunningCapture| fs::metadata(&c.pcap).map(|m| m.len()).unwrap_or(0);
        let t = Instant::now();
        let mut last: Vec<u64> = self.captures.iter().map(size).collect();
        let mut stable_since = Instant::now();
        while !self.captures.is_empty() && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
            let now: Vec<u64> = self.captures.iter().map(size).collect();
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if stable_since.elapsed() >= Duration::from_millis(300) {
                break;
            }
        }
        for c in &mut self.captures {
            if let Some(mut child) = c.child.take() {
                kill_group(&mut child, "INT", Duration::from_secs(5));
            }
        }
        let mut first_failure = None;
        for c in &mut self.captures {
            let Some((a, b)) = &c.spec.protected_between else {
                continue;
            };
            let data = fs::read(&c.pcap).map_err(|e| format!("{}: {e}", c.pcap.display()))?;
            let verdict = pcap::analyse(&data, &pcap::Endpoint::new(a), &pcap::Endpoint::new(b))
                .map_err(|e| format!("capture {}: {e}", c.spec.name))?;
            let (la, lb) = &c.spec.between_labels;
            let failure = verdict.failure(c.spec.min_protected, la, lb);
            let label = format!("capture {}", c.spec.name);
            let ok = failure.is_some() == c.spec.expect_failure;
            c.result = json!({
                "name": c.spec.name,
                "summary": verdict.summary(),
                "failure": failure,
                "expect_failure": c.spec.expect_failure,
                "ok": ok,
            });
            println!("gatekey-agent: {label}: {}", verdict.summary());
            match (failure, c.spec.expect_failure) {
                (None, false) => {}
                (Some(f), true) => self.expected.push(format!("{label}: {f}")),
                (None, true) => {
                    first_failure.get_or_insert(format!(
                        "{label}: the capture check passed but was expected to fail ({})",
                        verdict.summary()
                    ));
                }
                (Some(f), false) => {
                    first_failure.get_or_insert(format!("{label}: {f}"));
                }
            }
        }
        match first_failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    fn stop_all(&mut self) {
        for c in &mut self.captures {
            if let Some(mut child) = c.child.take() {
                kill_group(&mut child, "INT", Duration::from_secs(5));
            }
        }
        for d in &mut self.daemons {
            if !d.stopped {
                kill_group(&mut d.child, "TERM", Duration::from_secs(5));
                d.stopped = true;
            }
        }
        let _ = std::io::stdout().flush();
    }
}
