//! `cargo xtask vm-test [GLOB…]`: run VM scenarios, one guest each.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fail;
use crate::guest;
use crate::scenario::{self, Scenario};
use crate::util::{self, Ctx, Result};

/// Seconds allowed for the guest to boot and power off, on top of a
/// scenario's own timeout.
const BOOT_MARGIN: f64 = 90.0;

/// How long a guest may take to report its kernel up before its start is
/// counted as failed (boots take 2–4 s, 20 s on a machine under heavy load).
/// `GATEKEY_BOOT_LIMIT` (seconds) overrides it.
fn boot_limit() -> Duration {
    std::env::var("GATEKEY_BOOT_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(75), Duration::from_secs)
}

#[derive(Debug, Default, Clone)]
pub struct Options {
    pub patterns: Vec<String>,
    pub build: bool,
    pub release: bool,
    pub jobs: usize,
    pub list: bool,
    pub verbose: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            build: true,
            jobs: 1,
            ..Options::default()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--no-build" => o.build = false,
                "--release" => o.release = true,
                "--list" => o.list = true,
                "-v" | "--verbose" => o.verbose = true,
                "-j" | "--jobs" => {
                    o.jobs = it
                        .next()
                        .and_then(|n| n.parse().ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| fail!("-j needs a number ≥ 1"))?;
                }
                s if s.starts_with('-') => {
                    return Err(fail!(
                        "unknown option `{s}`; usage: cargo xtask vm-test [--list] [--no-build] \
                         [--release] [-j N] [-v] [GLOB…]"
                    ));
                }
                s => o.patterns.push(s.to_string()),
            }
        }
        Ok(o)
    }
}

/// One scenario's outcome, as printed and summarised.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: String,
    pub pass: bool,
    pub line: String,
    pub boot: Option<f64>,
    pub bench: Vec<String>,
}

/// Select scenarios: with no pattern, all but the `bench` suite.
pub fn select(patterns: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let all = scenario::discover()?;
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(id, _)| {
            if patterns.is_empty() {
                !id.starts_with("bench/")
            } else {
                patterns.iter().any(|p| scenario::selects(p, id))
            }
        })
        .collect();
    if chosen.is_empty() {
        return Err(fail!(
            "no scenario matches {:?} (scenarios live in vm-tests/scenarios/SUITE/NAME/scenario.toml)",
            patterns
        ));
    }
    Ok(chosen)
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let chosen = select(&opts.patterns)?;
    // Parse everything first: a typo fails before any guest boots.
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for (id, dir) in &chosen {
        match Scenario::load(id, dir) {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.push(format!("{id}: {e}")),
        }
    }
    if opts.list {
        for s in &scenarios {
            let first = s.description.lines().next().unwrap_or_default();
            println!(
                "{:<32} topology {}: {} hosts; {} steps, {} captures  {first}",
                s.id,
                s.topology.source,
                s.topology.hosts.len(),
                s.steps.len(),
                s.captures.len()
            );
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        return Err(fail!("{} scenario file(s) have errors", errors.len()));
    }
    if opts.list {
        return Ok(());
    }
    let outcomes = run_scenarios(&scenarios, &opts)?;
    let failed = outcomes.iter().filter(|o| !o.pass).count();
    if failed > 0 {
        Err(fail!("{failed} of {} scenario(s) failed", outcomes.len()))
    } else {
        Ok(())
    }
}

/// Build the binaries scenarios run.
pub fn build(release: bool) -> Result<()> {
    let mut c = util::cargo();
    c.args(["build", "--workspace", "--bins", "--examples"]);
    if release {
        c.arg("--release");
    }
    util::run_inherit(&mut c).map_err(|e| {
        fail!("{e}; fix the build, or run `cargo xtask vm-test --no-build` to use what is built")
    })
}

/// Run scenarios and print one line each plus a summary.
pub fn run_scenarios(scenarios: &[Scenario], opts: &Options) -> Result<Vec<Outcome>> {
    if opts.build {
        let t = Instant::now();
        match build(opts.release) {
            Ok(()) => println!("vm-test: build took {}", util::secs(t.elapsed())),
            // Others' work in progress shares this tree: run anyway, loudly.
            Err(e) => println!(
                "vm-test: WARNING: {e}\nvm-test: WARNING: scenarios run with the binaries \
                 already in target/, which may be stale"
            ),
        }
    }
    let base = util::target_dir().join("vm-tests");
    prune_old_runs(&base);
    let run_dir = base.join(format!("{}-{}", util::timestamp(), std::process::id()));
    fs::create_dir_all(&run_dir).ctx(|| format!("creating {}", run_dir.display()))?;
    let latest = base.join("latest");
    let _ = fs::remove_file(&latest);
    if let Some(name) = run_dir.file_name() {
        let _ = std::os::unix::fs::symlink(name, &latest);
    }
    // The agent is this very binary; copy it so a rebuild during the run
    // cannot change it under the guests. /proc/self/exe still reads when
    // cargo has replaced the file since this process started (a workspace
    // build may rebuild xtask with other features).
    let agent = run_dir.join(".xtask-agent");
    fs::copy("/proc/self/exe", &agent)
        .ctx(|| format!("copying the running xtask binary to {}", agent.display()))?;
    let bin = util::target_dir().join(if opts.release { "release" } else { "debug" });
    println!(
        "vm-test: {} scenario(s), results in {}",
        scenarios.len(),
        run_dir.display()
    );
    let t0 = Instant::now();
    let queue: Arc<Mutex<Vec<&Scenario>>> = Arc::new(Mutex::new(scenarios.iter().rev().collect()));
    let results: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.min(scenarios.len()).max(1) {
            let queue = Arc::clone(&queue);
            let results = Arc::clone(&results);
            let (run_dir, agent, bin) = (&run_dir, &agent, &bin);
            s.spawn(move || {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.pop());
                    let Some(sc) = next else { break };
                    let o = run_one(sc, run_dir, agent, bin, opts.verbose);
                    println!("{}", o.line);
                    if let Ok(mut r) = results.lock() {
                        r.push(o);
                    }
                }
            });
        }
    });
    let mut outcomes = results.lock().map(|r| r.clone()).unwrap_or_default();
    outcomes.sort_by(|a, b| a.id.cmp(&b.id));
    let passed = outcomes.iter().filter(|o| o.pass).count();
    let failed = outcomes.len() - passed;
    let boots: Vec<f64> = outcomes.iter().filter_map(|o| o.boot).collect();
    let boot = median(&boots)
        .map(|b| format!(", median boot {b:.1}s"))
        .unwrap_or_default();
    let summary = format!(
        "vm-test: {passed} passed, {failed} failed in {}{boot}",
        util::secs(t0.elapsed())
    );
    println!("{summary}");
    for o in outcomes.iter().filter(|o| !o.bench.is_empty()) {
        for b in &o.bench {
            println!("{b}");
        }
    }
    let mut text: String = outcomes.iter().map(|o| format!("{}\n", o.line)).collect();
    text.push_str(&summary);
    text.push('\n');
    let _ = fs::write(run_dir.join("summary.txt"), text);
    Ok(outcomes)
}

/// Remove run directories older than two days (results worth keeping
/// longer belong somewhere else than target/).
fn prune_old_runs(base: &Path) {
    let Ok(rd) = fs::read_dir(base) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_run = name.len() > 15 && name.chars().take(8).all(|c| c.is_ascii_digit());
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(2 * 86_400));
        if is_run && old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// One result from the per-guest results of a multi-guest scenario.
fn merge_results(parts: &[Value]) -> Value {
    let arr = |v: &Value, k: &str| -> Vec<Value> {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut steps: Vec<Value> = parts.iter().flat_map(|p| arr(p, "steps")).collect();
    steps.sort_by_key(|s| s.get("index").and_then(Value::as_u64).unwrap_or(0));
    let failed: Vec<&Value> = parts
        .iter()
        .filter(|p| p.get("status").and_then(Value::as_str) != Some("PASS"))
        .collect();
    // The guest where the failure happened explains it best.
    let reason = failed
        .iter()
        .find(|p| p.get("remote_failure").and_then(Value::as_bool) != Some(true))
        .or(failed.first())
        .and_then(|p| p.get("reason").cloned())
        .unwrap_or(Value::Null);
    let first = parts.first().cloned().unwrap_or(Value::Null);
    serde_json::json!({
        "scenario": first.get("scenario").cloned().unwrap_or(Value::Null),
        "guests": parts.len(),
        "status": if failed.is_empty() { "PASS" } else { "FAIL" },
        "reason": reason,
        "expected_failures_seen": parts.iter().flat_map(|p| arr(p, "expected_failures_seen")).collect::<Vec<_>>(),
        "steps": steps,
        "captures": parts.iter().flat_map(|p| arr(p, "captures")).collect::<Vec<_>>(),
        "bench": parts.iter().flat_map(|p| arr(p, "bench")).collect::<Vec<_>>(),
        "per_guest": parts,
    })
}

pub fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return None;
    }
    let hi = v.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        v.get(n / 2 - 1).map(|lo| (lo + hi) / 2.0)
    }
}

fn run_one(sc: &Scenario, run_dir: &Path, agent: &Path, bin: &Path, verbose: bool) -> Outcome {
    let t = Instant::now();
    let out = run_dir.join(&sc.id);
    let rel = out
        .strip_prefix(util::workspace_root())
        .unwrap_or(&out)
        .display()
        .to_string();
    let fail_line = |why: String| Outcome {
        id: sc.id.clone(),
        pass: false,
        line: format!("FAIL {}: {why} [{rel}]", sc.id),
        boot: None,
        bench: Vec::new(),
    };
    if let Err(e) = fs::create_dir_all(&out) {
        return fail_line(format!("cannot create {}: {e}", out.display()));
    }
    let script = format!(
        "exec {} guest-agent --id {} --dir {} --bin {} --guest ${{gkguest:-1}}\n",
        agent.display(),
        sc.id,
        sc.dir.display(),
        bin.display()
    );
    let guests = sc.topology.guests();
    // Unix sockets for links between guests (short paths: sun_path is small).
    let sock_dir = std::env::temp_dir().join(format!(
        "gk-{}-{}",
        std::process::id(),
        sc.id.replace('/', "-")
    ));
    if guests > 1 {
        let _ = fs::remove_dir_all(&sock_dir);
        if let Err(e) = fs::create_dir_all(&sock_dir) {
            return fail_line(format!("cannot create {}: {e}", sock_dir.display()));
        }
    }
    let mut running = Vec::new();
    let mut attempt = 1;
    'boot: loop {
        for g in 1..=guests {
            let mut spec = match guest::standard_spec(&out, script.clone()) {
                Ok(s) => s,
                Err(e) => return fail_line(e.0),
            };
            spec.memory_mb = sc.memory_mb;
            spec.cpus = sc.cpus;
            spec.index = g;
            if verbose {
                spec.echo = Some(if guests > 1 {
                    format!("[{} g{g}] ", sc.id)
                } else {
                    format!("[{}] ", sc.id)
                });
            }
            for (li, l) in sc.topology.links.iter().enumerate() {
                let lg = sc.topology.link_guests(l);
                if lg.len() == 2 && lg.contains(&g) {
                    let other = lg.iter().copied().find(|x| *x != g).unwrap_or(g);
                    let path = |a: u32| sock_dir.join(format!("{li}-{a}"));
                    spec.add_link_nic(li, &path(g), &path(other));
                }
            }
            let console = if g == 1 {
                out.join("console.log")
            } else {
                out.join(format!("console-g{g}.log"))
            };
            match spec.spawn(&console) {
                Ok(r) => running.push(r),
                Err(e) => return fail_line(e.0),
            }
        }
        // A TCG guest very rarely stays silent from the start (no kernel
        // output at all); such a start is retried once rather than waited on
        // for the whole scenario timeout.
        let limit = boot_limit();
        let silent = running
            .iter()
            .position(|r| r.wait_boot(limit) == guest::BootWait::Silent);
        match silent {
            Some(g) if attempt < 2 => {
                eprintln!(
                    "vm-test: {}: guest {} showed no sign of booting within {}s; starting the scenario's guests again",
                    sc.id,
                    g + 1,
                    limit.as_secs()
                );
                for r in running.drain(..) {
                    r.kill();
                }
                attempt += 1;
                continue 'boot;
            }
            Some(g) => {
                for r in running.drain(..) {
                    r.kill();
                }
                return fail_line(format!(
                    "guest {} showed no sign of booting within {}s, twice; see console.log",
                    g + 1,
                    limit.as_secs()
                ));
            }
            None => break 'boot,
        }
    }
    let limit = Duration::from_secs_f64(sc.timeout + BOOT_MARGIN);
    let mut runs = Vec::new();
    for r in running {
        match r.wait(limit) {
            Ok(x) => runs.push(x),
            Err(e) => return fail_line(e.0),
        }
    }
    if guests > 1 {
        let _ = fs::remove_dir_all(&sock_dir);
    }
    let secs = t.elapsed().as_secs_f64();
    let boot = runs.first().and_then(|(r, _)| r.boot_secs);
    let result_path = out.join("result.json");
    let read = |p: &Path| -> Option<Value> {
        fs::read_to_string(p)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
    };
    let result = if guests == 1 {
        read(&result_path)
    } else {
        let parts: Option<Vec<Value>> = (1..=guests)
            .map(|g| read(&out.join(format!("result-g{g}.json"))))
            .collect();
        parts.map(|p| merge_results(&p))
    };
    let Some(mut result) = result else {
        let (run, stderr) = match runs.iter().find(|(r, _)| r.timed_out) {
            Some(x) => x,
            None => match runs.first() {
                Some(x) => x,
                None => return fail_line("no guest ran".into()),
            },
        };
        let why = if run.timed_out {
            format!("guest killed after {:.0}s", limit.as_secs_f64())
        } else if !stderr.trim().is_empty() {
            format!("qemu: {}", stderr.trim().lines().last().unwrap_or_default())
        } else {
            "the guest wrote no result.json".to_string()
        };
        let mut o = fail_line(format!("{why}; see console.log"));
        o.boot = boot;
        return o;
    };
    if let Some(obj) = result.as_object_mut() {
        obj.insert("boot_secs".into(), boot.into());
        obj.insert("wall_secs".into(), secs.into());
    }
    let _ = fs::write(
        &result_path,
        serde_json::to_string_pretty(&result).unwrap_or_default() + "\n",
    );
    let pass = result.get("status").and_then(Value::as_str) == Some("PASS");
    let timing = format!(
        "{secs:.1}s, boot {}",
        boot.map(|b| format!("{b:.1}s")).unwrap_or("?".into())
    );
    let expected: Vec<String> = result
        .get("expected_failures_seen")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let bench: Vec<String> = result
        .get("bench")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let line = if pass {
        let xf = if expected.is_empty() {
            String::new()
        } else {
            format!(" — expected failure seen: {}", expected.join("; "))
        };
        format!("PASS {} ({timing}){xf}", sc.id)
    } else {
        let reason = result
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        format!("FAIL {}: {reason} ({timing}) [{rel}]", sc.id)
    };
    Outcome {
        id: sc.id.clone(),
        pass,
        line,
        boot,
        bench,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn options() {
        let o = Options::parse(&["smoke".into(), "-j".into(), "2".into(), "--no-build".into()])
            .unwrap_or_default();
        assert_eq!((o.patterns.len(), o.jobs, o.build), (1, 2, false));
        assert!(Options::parse(&["--bogus".into()]).is_err());
    }
}
