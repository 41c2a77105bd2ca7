//! `cargo xtask test` (what CI runs) and `cargo xtask demo`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fail;
use crate::runner::{self, Options};
use crate::scenario::Scenario;
use crate::setup;
use crate::util::{self, Ctx, Result};

/// VM scenarios `cargo xtask test` runs at once (`-j N` overrides). Each
/// guest is one TCG vCPU, so two keep both cores of the CI machine busy:
/// measured on it, the 18 scenarios took 261 s with 2 at once against 666 s
/// one at a time (same load, every scenario passing both ways).
const DEFAULT_VM_JOBS: usize = 2;

/// Counts from `cargo test`'s `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Counts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Counts {
    /// Add one `test result: ok. 3 passed; 0 failed; 1 ignored; …` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// The marker a test prints (on stderr, and appended to `$GATEKEY_SKIP_LOG`)
/// when it skips: `GATEKEY-SKIP: <test>: <reason>`. See docs/testing.md.
pub const SKIP_MARKER: &str = "GATEKEY-SKIP:";

/// The environment variable naming the file skip markers are appended to.
pub const SKIP_LOG_ENV: &str = "GATEKEY_SKIP_LOG";

/// Set (to anything but `0` or empty) by `.ci/run`: every test must run.
pub const CI_ENV: &str = "GATEKEY_CI";

/// One skipped test: its name and why.
#[derive(Debug, Clone, PartialEq)]
struct Skip {
    test: String,
    reason: String,
}

/// The skip markers in a skip log (or any text), each test once.
fn parse_skips(text: &str) -> Vec<Skip> {
    let mut out: Vec<Skip> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix(SKIP_MARKER) else {
            continue;
        };
        let (test, reason) = match rest.trim().split_once(": ") {
            Some((t, r)) => (t.trim(), r.trim()),
            None => (rest.trim(), ""),
        };
        let skip = Skip {
            test: test.to_string(),
            reason: if reason.is_empty() {
                "(no reason given)".into()
            } else {
                reason.to_string()
            },
        };
        if !out.contains(&skip) {
            out.push(skip);
        }
    }
    out
}

/// Is this a CI run, where no test may skip?
fn ci_requires_all() -> bool {
    std::env::var(CI_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// What `cargo test --workspace` did.
struct TestRun {
    ok: bool,
    counts: Counts,
    skips: Vec<Skip>,
}

/// Run `cargo test --workspace`, echoing its output, counting results and
/// collecting the tests that skipped (through `$GATEKEY_SKIP_LOG`).
fn cargo_test() -> Result<TestRun> {
    let dir = util::target_dir().join("xtask");
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let skip_log = dir.join(format!("skipped-{}.log", std::process::id()));
    fs::write(&skip_log, "").ctx(|| format!("creating {}", skip_log.display()))?;
    let mut c = util::cargo();
    c.args(["test", "--workspace"])
        .env(SKIP_LOG_ENV, &skip_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = c.spawn().ctx(|| "cannot start cargo test")?;
    let mut counts = Counts::default();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            println!("{line}");
            counts.add_line(&line);
        }
    }
    let ok = child.wait()?.success();
    let skips = parse_skips(&fs::read_to_string(&skip_log).unwrap_or_default());
    let _ = fs::remove_file(&skip_log);
    Ok(TestRun { ok, counts, skips })
}

const TEST_USAGE: &str = "usage: cargo xtask test [--no-vm] [--require-all] [-j N]";

/// `cargo xtask test [--no-vm] [--require-all] [-j N]`
pub fn test(args: &[String]) -> Result<()> {
    let mut vm = true;
    let mut require_all = ci_requires_all();
    let mut jobs = DEFAULT_VM_JOBS;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-vm" => vm = false,
            "--require-all" => require_all = true,
            "-j" | "--jobs" => {
                jobs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| fail!("-j needs a number ≥ 1; {TEST_USAGE}"))?;
            }
            other => {
                return Err(fail!("unknown option `{other}`; {TEST_USAGE}"));
            }
        }
    }
    let t0 = Instant::now();
    let mut phases: Vec<(&str, Duration, String)> = Vec::new();
    let report = |phases: &[(&str, Duration, String)]| {
        println!();
        for (name, d, what) in phases {
            println!("test: phase {name:<13} {:>7}  {what}", util::secs(*d));
        }
        println!("test: total {}", util::secs(t0.elapsed()));
    };

    let t = Instant::now();
    println!("test: == phase setup ==");
    let r = setup::run(&[]);
    phases.push(("setup", t.elapsed(), ok_or(&r)));
    if let Err(e) = r {
        report(&phases);
        return Err(e);
    }

    let t = Instant::now();
    println!("test: == phase build ==");
    let r = util::run_inherit(util::cargo().args([
        "build",
        "--workspace",
        "--bins",
        "--examples",
        "--tests",
    ]));
    phases.push(("build", t.elapsed(), ok_or(&r)));
    if let Err(e) = r {
        report(&phases);
        return Err(e);
    }

    let t = Instant::now();
    println!("test: == phase cargo test ==");
    let run = cargo_test()?;
    let counts = run.counts;
    let skipped = run.skips.len() as u64;
    phases.push((
        "cargo test",
        t.elapsed(),
        format!(
            "{} passed, {} failed, {} skipped, {} ignored{}",
            counts.passed.saturating_sub(skipped),
            counts.failed,
            skipped,
            counts.ignored,
            if run.ok { "" } else { " — cargo test FAILED" }
        ),
    ));

    let mut vm_passed = 0;
    let mut vm_failed = 0;
    if vm {
        let t = Instant::now();
        println!("test: == phase vm scenarios ==");
        let chosen = runner::select(&[])?;
        let mut scenarios = Vec::new();
        let mut bad = Vec::new();
        for (id, dir) in &chosen {
            match Scenario::load(id, dir) {
                Ok(s) => scenarios.push(s),
                Err(e) => {
                    println!("FAIL {id}: {e}");
                    bad.push(id.clone());
                }
            }
        }
        let opts = Options {
            build: false,
            jobs,
            ..Options::default()
        };
        match runner::run_scenarios(&scenarios, &opts) {
            Ok(outcomes) => {
                vm_passed = outcomes.iter().filter(|o| o.pass).count();
                vm_failed = outcomes.len() - vm_passed + bad.len();
                phases.push((
                    "vm scenarios",
                    t.elapsed(),
                    format!("{vm_passed} passed, {vm_failed} failed (-j {jobs})"),
                ));
            }
            Err(e) => {
                vm_failed = scenarios.len() + bad.len();
                phases.push(("vm scenarios", t.elapsed(), format!("FAILED: {e}")));
            }
        }
    }
    report(&phases);
    if !run.skips.is_empty() {
        println!(
            "\ntest: {} test(s) skipped{}:",
            run.skips.len(),
            if require_all {
                " — not allowed here (GATEKEY_CI / --require-all)"
            } else {
                ""
            }
        );
        for s in &run.skips {
            println!("  {}: {}", s.test, s.reason);
        }
    }
    let passed = counts.passed.saturating_sub(skipped) + vm_passed as u64;
    let failed = counts.failed + vm_failed as u64;
    println!(
        "total: {passed} passed, {failed} failed, {skipped} skipped, {} ignored",
        counts.ignored
    );
    let mut problems = Vec::new();
    if !run.ok {
        problems.push("cargo test failed".to_string());
    }
    if vm_failed > 0 {
        problems.push(format!("{vm_failed} VM scenario(s) failed"));
    }
    if require_all && skipped > 0 {
        problems.push(format!(
            "{skipped} test(s) skipped but every test must run on CI: {}",
            run.skips
                .iter()
                .map(|s| s.test.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(fail!("{}", problems.join("; ")));
    }
    Ok(())
}

fn ok_or<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("FAILED: {e}"),
    }
}

/// `cargo xtask demo`
pub fn demo(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        return Err(fail!("`cargo xtask demo` takes no arguments (got `{a}`)"));
    }
    println!(
        "gatekey demo\n\
         \n\
         NOTE: the full demo is not there yet. It will show two gateways whose private keys\n\
         live on an NSS server, tunnels brought up by iked, and `ipsec` displaying SAs,\n\
         counters and filter hits; it lands with the integration work.\n\
         \n\
         Until then, this runs the smoke scenario the demo will stand on: a QEMU guest with\n\
         the stock Debian kernel, two hosts (alice, bob) as network namespaces on a bridge,\n\
         static ESP SAs (AES-GCM) set with `ip xfrm`, a ping through them, the SA counters,\n\
         and a capture proving the wire carried ESP only.\n"
    );
    setup::run(&[])?;
    let id = "smoke/esp-static";
    let chosen = runner::select(&[id.to_string()])?;
    let mut scenarios = Vec::new();
    for (sid, dir) in &chosen {
        scenarios.push(Scenario::load(sid, dir)?);
    }
    let opts = Options {
        build: false,
        jobs: 1,
        ..Options::default()
    };
    let outcomes = runner::run_scenarios(&scenarios, &opts)?;
    let dir = util::target_dir().join("vm-tests/latest").join(id);
    let show = |n: u32, title: &str| {
        let text =
            std::fs::read_to_string(dir.join(format!("steps/{n:02}.txt"))).unwrap_or_default();
        let body: String = text
            .split("--- stdout\n")
            .nth(1)
            .and_then(|s| s.split("--- stderr\n").next())
            .unwrap_or_default()
            .to_string();
        println!("\n--- {title}\n{}", body.trim_end());
    };
    show(7, "alice pings bob through ESP");
    show(8, "alice's SAs after the ping (ip -s xfrm state)");
    if let Ok(r) = std::fs::read_to_string(dir.join("result.json"))
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&r)
        && let Some(s) = v
            .pointer("/captures/0/summary")
            .and_then(serde_json::Value::as_str)
    {
        println!("\n--- the capture on the wire (wire.pcap)\n{s}");
    }
    println!(
        "\nEverything the guest did is in {} (console.log, steps/, wire.pcap — open it in Wireshark).",
        dir.display()
    );
    if outcomes.iter().all(|o| o.pass) {
        Ok(())
    } else {
        Err(fail!("the smoke scenario failed; see above"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_cargo_test_lines() {
        let mut c = Counts::default();
        c.add_line("test result: ok. 15 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        c.add_line(
            "test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        c.add_line("running 15 tests");
        assert_eq!(
            c,
            Counts {
                passed: 18,
                failed: 1,
                ignored: 2
            }
        );
    }

    #[test]
    fn skip_markers() {
        let text = "GATEKEY-SKIP: host::a: not root\n\
                    noise\n\
                    GATEKEY-SKIP: host::a: not root\n\
                    GATEKEY-SKIP: b: charon: not installed\n\
                    GATEKEY-SKIP: c\n";
        let s = parse_skips(text);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].test.as_str(), s[0].reason.as_str()),
            ("host::a", "not root")
        );
        assert_eq!(
            (s[1].test.as_str(), s[1].reason.as_str()),
            ("b", "charon: not installed")
        );
        assert_eq!(
            (s[2].test.as_str(), s[2].reason.as_str()),
            ("c", "(no reason given)")
        );
    }
}
