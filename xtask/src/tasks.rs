//! `cargo xtask test` (what CI runs) and `cargo xtask demo`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
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
    c.args(["test", "--workspace", "--no-fail-fast"])
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

/// The scenario `cargo xtask demo` runs.
const DEMO_SCENARIO: &str = "nss/demo";

const DEMO_USAGE: &str = "usage: cargo xtask demo [--no-build] [-v]";

/// What the demo prints after the run: (step name in the scenario, title,
/// fields to keep — empty: the whole output).
const DEMO_SHOWS: &[(&str, &str, &[&str])] = &[
    (
        "alice pings bob through the tunnel",
        "alice (10.1.0.10) pings bob (10.2.0.10): moon and sun carry it in ESP",
        &[],
    ),
    (
        "moon: ipsec -y display",
        "the tunnel on gateway moon, with its live counters (5 pings out, 5 replies in)",
        &[],
    ),
    (
        "moon: ipsec -f display -n tunnel -r short",
        "moon's IP filters for the tunnel: the inbound dynamic filter iked added with the SA \
         counted the 5 decapsulated replies",
        &[],
    ),
    (
        "moon: ipsec -w display (its NSS client)",
        "moon's NSS client: connected to the NSS server vault, which signs IKE for it",
        &[],
    ),
    (
        "vault: ipsec -x display (its NSS clients)",
        "on the NSS server vault: both gateways are connected",
        &[],
    ),
    (
        "vault: ipsec -y display -z MOON_default (through NSS)",
        "on vault, moon's tunnel through the NSS remote management service (excerpt)",
        &[
            "TunnelID",
            "State",
            "ActivationMethod",
            "IKEVersion",
            "LocalEndPoint",
            "RemoteEndPoint",
            "HowToEncrypt",
            "OutboundPackets",
            "InboundPackets",
        ],
    ),
];

/// Messages of moon's log that tell the failover.
const DEMO_FAILOVER_STEP: &str =
    "moon: switched to the backup NSS server vault2 (EZD1140I, EZD1141I, EZD1138I)";
const DEMO_FAILBACK_STEP: &str = "moon: back on the primary NSS server vault";
const DEMO_FAILOVER_MESSAGES: &[&str] = &["EZD1138I", "EZD1140I", "EZD1141I", "EZD1142I"];
const DEMO_AFTER_FAILOVER: &[(&str, &str, &[&str])] = &[
    (
        "alice pings bob again: the tunnel stayed up",
        "alice pings bob again while the gateways use the backup",
        &[],
    ),
    (
        "vault2: ipsec -y display -z MOON_default (through the backup)",
        "on vault2, moon's tunnel: the same SA (generation 1) carried all 10 pings (excerpt)",
        &[
            "TunnelID",
            "State",
            "Generation",
            "OutboundPackets",
            "InboundPackets",
        ],
    ),
    (
        "moon: the new IKE SA K2 is up, the tunnel's new child SA under it",
        "moon closes its IKE SA and starts a new one: IKE_AUTH signed by vault2 now \
         (ipsec -k deactivate K1; ipsec -y activate alice-bob; excerpt)",
        &[
            "TunnelID",
            "ParentIKETunnelID",
            "State",
            "LocalAuthenticationMethod",
            "CertificateService",
            "RemoteID",
        ],
    ),
];
const DEMO_AFTER_FAILBACK: &[(&str, &str, &[&str])] = &[(
    "vault: ipsec -y display -z SUN_default (sun's side of the new tunnel)",
    "on vault again, sun's side of the new tunnel (excerpt)",
    &[
        "TunnelID",
        "ParentIKETunnelID",
        "State",
        "Role",
        "OutboundPackets",
        "InboundPackets",
    ],
)];

/// `cargo xtask demo [--no-build] [-v]`: setup, build, the nss/demo VM
/// scenario with live progress, then its main outputs.
pub fn demo(args: &[String]) -> Result<()> {
    let mut build = true;
    let mut verbose = false;
    for a in args {
        match a.as_str() {
            "--no-build" => build = false,
            "-v" | "--verbose" => verbose = true,
            other => return Err(fail!("unknown option `{other}`; {DEMO_USAGE}")),
        }
    }
    println!(
        "gatekey demo\n\
         \n\
         One QEMU guest (the stock Debian kernel) holds six hosts, each a network namespace:\n\
         \n\
         \x20 alice 10.1.0.10 ── moon ══ ESP tunnel ══ sun ── bob 10.2.0.10\n\
         \x20                     │    (wide area)      │\n\
         \x20                     └── vault, vault2 ────┘  NSS servers, holding the gateways' keys\n\
         \n\
         The gateways moon and sun run iked; their private keys exist only on the NSS servers,\n\
         where nssd signs their IKEv2 authentication. alice pings bob through the tunnel, a\n\
         capture on the wide-area link proves only ESP crossed it, and `ipsec` shows tunnels,\n\
         counters, filters and NSS clients, on the gateways and through NSS on vault. Then vault\n\
         stops: both gateways move to vault2 while the tunnel stays up, and vault2 signs a new\n\
         IKE SA; vault returns, vault2 stops, and they move back.\n\
         Configuration: examples/demo/ (install.sh HOST). The checks: vm-tests/scenarios/{DEMO_SCENARIO}/.\n"
    );
    let t0 = Instant::now();
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let phase_failed = |n: u32, name: &str, e: &dyn std::fmt::Display| {
        fail!("demo step {n}/4 ({name}) failed: {e}")
    };

    println!("demo: [1/4] setup (Debian packages, guest kernel, initramfs; idempotent)");
    let t = Instant::now();
    setup::run(&[]).map_err(|e| phase_failed(1, "setup", &e))?;
    phases.push(("setup", t.elapsed()));

    if build {
        println!(
            "\ndemo: [2/4] build (cargo build --workspace --bins --examples; the first build \
             takes several minutes)"
        );
        let t = Instant::now();
        runner::build(false).map_err(|e| phase_failed(2, "build", &e))?;
        phases.push(("build", t.elapsed()));
    } else {
        println!("\ndemo: [2/4] build skipped (--no-build): using what is in target/debug");
    }

    println!(
        "\ndemo: [3/4] the scenario {DEMO_SCENARIO}: boot the guest, run each step (about a minute)"
    );
    let t = Instant::now();
    let chosen = runner::select(&[DEMO_SCENARIO.to_string()])
        .map_err(|e| phase_failed(3, "scenario", &e))?;
    let mut scenarios = Vec::new();
    for (sid, dir) in &chosen {
        scenarios.push(Scenario::load(sid, dir).map_err(|e| phase_failed(3, "scenario", &e))?);
    }
    let total = scenarios.iter().map(|s| s.steps.len()).sum::<usize>();
    let opts = Options {
        build: false,
        jobs: 1,
        verbose,
        ..Options::default()
    };
    let done = AtomicBool::new(false);
    let outcomes = std::thread::scope(|sc| {
        sc.spawn(|| demo_progress(total, &done));
        let r = runner::run_scenarios(&scenarios, &opts);
        done.store(true, Ordering::Release);
        r
    })
    .map_err(|e| phase_failed(3, "scenario", &e))?;
    phases.push(("scenario", t.elapsed()));
    let pass = !outcomes.is_empty() && outcomes.iter().all(|o| o.pass);

    println!("\ndemo: [4/4] tear down: the guest has powered off; nothing of it keeps running");
    let Some(dir) = demo_run_dir().map(|d| d.join(DEMO_SCENARIO)) else {
        return Err(fail!(
            "demo step 3/4 (scenario): no results directory target/vm-tests/*-{} was made",
            std::process::id()
        ));
    };
    let result: Option<serde_json::Value> = fs::read_to_string(dir.join("result.json"))
        .ok()
        .and_then(|r| serde_json::from_str(&r).ok());
    let steps = result
        .as_ref()
        .and_then(|v| v.get("steps"))
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();

    for (name, title, keep) in DEMO_SHOWS {
        demo_show(&dir, &steps, name, title, keep);
    }
    demo_captures(result.as_ref());
    let failover = demo_log_lines(&dir, &steps, DEMO_FAILOVER_STEP);
    if !failover.is_empty() {
        println!(
            "\n─── vault's nssd stops: moon loses the primary NSS server and switches to the backup vault2\n\
             moon# (iked log)\n{}",
            failover.join("\n")
        );
    }
    for (name, title, keep) in DEMO_AFTER_FAILOVER {
        demo_show(&dir, &steps, name, title, keep);
    }
    let failback: Vec<String> = demo_log_lines(&dir, &steps, DEMO_FAILBACK_STEP)
        .into_iter()
        .filter(|l| !failover.contains(l))
        .collect();
    if !failback.is_empty() {
        println!(
            "\n─── vault's nssd is back and vault2's stops: moon returns to the primary\n\
             moon# (iked log)\n{}",
            failback.join("\n")
        );
    }
    for (name, title, keep) in DEMO_AFTER_FAILBACK {
        demo_show(&dir, &steps, name, title, keep);
    }

    println!();
    for (name, d) in &phases {
        println!("demo: {name:<9} {:>7}", util::secs(*d));
    }
    println!("demo: total     {:>7}", util::secs(t0.elapsed()));
    println!(
        "\nEverything the guest did is in {}:\n\
         \x20 steps/NN.txt (each step: command, exit status, output), hosts/HOST/*.log (iked, nssd),\n\
         \x20 console.log (the guest), wan.pcap (the wide-area link: `tshark -r wan.pcap`, or Wireshark).\n\
         Run one step by hand: docs/testing.md; operate the real thing: docs/operations.md.",
        dir.display()
    );
    if pass {
        println!("\ndemo: PASS: every check of {DEMO_SCENARIO} held");
        return Ok(());
    }
    Err(demo_failure(&dir, result.as_ref(), &steps, &outcomes))
}

/// Headings printed before the step that opens each part of the scenario.
const DEMO_PHASES: &[(&str, &str)] = &[
    (
        "vault: install the NSS server's configuration (examples/demo)",
        "install examples/demo on each host; the private keys only on the NSS servers",
    ),
    (
        "vault: daemon nssd",
        "start nssd on vault and vault2, iked on sun and moon",
    ),
    (
        "moon: the tunnel comes up by itself (AutoActivate)",
        "IKEv2 signed by nssd, ESP, counters, filters, NSS displays",
    ),
    (
        "vault: the primary NSS server stops",
        "vault's nssd stops: failover to vault2, the tunnel stays up",
    ),
    (
        "moon: close the IKE SA (ipsec -k deactivate K1)",
        "a new IKE SA, signed by vault2",
    ),
    (
        "vault: the primary NSS server starts again",
        "vault returns, vault2 stops: back to vault",
    ),
    ("moon: stop iked", "orderly stop"),
];

/// Print each step of the running scenario as it completes (the guest
/// writes steps/NN.txt into the results directory when a step ends).
fn demo_progress(total: usize, done: &AtomicBool) {
    let mut next = 1usize;
    loop {
        let finished = done.load(Ordering::Acquire);
        if let Some(dir) = demo_run_dir() {
            let steps = dir.join(DEMO_SCENARIO).join("steps");
            while let Ok(text) = fs::read_to_string(steps.join(format!("{next:02}.txt"))) {
                // Written in one go, but read it whole or wait for the next look.
                if !text.contains("\n--- stdout\n") {
                    break;
                }
                let (name, secs) = demo_step_header(&text);
                if let Some((_, heading)) = DEMO_PHASES.iter().find(|(first, _)| *first == name) {
                    println!("  ── {heading}");
                }
                println!("  [{next:>2}/{total}] {name}  ({secs})");
                next += 1;
            }
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// This process's run directory, `target/vm-tests/<time>-<pid>`
/// (`target/vm-tests/latest` may be another engineer's run by then).
fn demo_run_dir() -> Option<std::path::PathBuf> {
    let suffix = format!("-{}", std::process::id());
    fs::read_dir(util::target_dir().join("vm-tests"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(&suffix) && n.starts_with(|c: char| c.is_ascii_digit())
            })
        })
}

/// A step file's name and time: `step 12 (line 90): NAME` … `time: 2.70s`.
fn demo_step_header(text: &str) -> (String, String) {
    let name = text
        .lines()
        .next()
        .and_then(|l| l.split_once("): "))
        .map_or_else(|| "?".to_string(), |(_, n)| n.to_string());
    let secs = text
        .lines()
        .take(5)
        .find_map(|l| l.split_once("time: "))
        .and_then(|(_, t)| t.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    (name, secs)
}

/// The part of a step file after `--- stdout` (or `--- stderr`).
fn demo_section<'a>(text: &'a str, which: &str) -> &'a str {
    let marker = format!("--- {which}\n");
    let Some((_, rest)) = text.split_once(&marker) else {
        return "";
    };
    if which == "stdout" {
        rest.split_once("--- stderr\n").map_or(rest, |(o, _)| o)
    } else {
        rest
    }
}

/// A step's record: its index and the text of steps/NN.txt.
fn demo_step_text(
    dir: &std::path::Path,
    steps: &[serde_json::Value],
    name: &str,
) -> Option<(u64, String)> {
    let index = steps
        .iter()
        .find(|s| s.get("name").and_then(serde_json::Value::as_str) == Some(name))?
        .get("index")?
        .as_u64()?;
    let text = fs::read_to_string(dir.join(format!("steps/{index:02}.txt"))).ok()?;
    Some((index, text))
}

/// Print one step's command and output (only the `keep` fields, with the
/// report's header and count, when `keep` is not empty).
fn demo_show(
    dir: &std::path::Path,
    steps: &[serde_json::Value],
    name: &str,
    title: &str,
    keep: &[&str],
) {
    let Some((index, text)) = demo_step_text(dir, steps, name) else {
        return;
    };
    let host = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("host: "))
        .unwrap_or("?");
    let command = text
        .lines()
        .nth(2)
        .and_then(|l| l.strip_prefix("$ "))
        .unwrap_or("?");
    let out = demo_section(&text, "stdout").trim_end();
    let body = if keep.is_empty() {
        out.to_string()
    } else {
        demo_excerpt(out, keep, &format!("steps/{index:02}.txt"))
    };
    println!("\n─── {title}\n{host}# {command}\n{body}");
}

/// The first three lines of an `ipsec` report (its header), the lines of
/// the `keep` fields and the `N entries selected` line.
fn demo_excerpt(out: &str, keep: &[&str], file: &str) -> String {
    let mut lines: Vec<&str> = out.lines().take(3).collect();
    let mut left = 0usize;
    for l in out.lines().skip(3) {
        let field = l.split(':').next().unwrap_or_default().trim();
        if keep.contains(&field) || l.contains("entries selected") {
            lines.push(l);
        } else if !l.trim().is_empty() && !l.starts_with('*') {
            left += 1;
        }
    }
    let mut s = lines.join("\n");
    if left > 0 {
        s.push_str(&format!("\n({left} more lines in {file})"));
    }
    s
}

/// The NSS connection messages of a `log` step's snapshot, shortened.
fn demo_log_lines(dir: &std::path::Path, steps: &[serde_json::Value], name: &str) -> Vec<String> {
    demo_step_text(dir, steps, name)
        .map(|(_, text)| {
            demo_section(&text, "stdout")
                .lines()
                .filter(|l| DEMO_FAILOVER_MESSAGES.iter().any(|m| l.contains(m)))
                .map(demo_log_line)
                .collect()
        })
        .unwrap_or_default()
}

/// `2026-11-22T10:43:43.545Z  INFO iked: EZD1141I …` → `10:43:43.545 EZD1141I …`.
fn demo_log_line(line: &str) -> String {
    let time = line
        .split_whitespace()
        .next()
        .and_then(|t| t.split_once('T'))
        .map(|(_, t)| t.trim_end_matches('Z'))
        .unwrap_or_default();
    let msg = line.split_once(": ").map_or(line, |(_, m)| m);
    let msg = msg.strip_suffix(" stack=default").unwrap_or(msg);
    format!("{time} {msg}")
}

/// The capture checks' verdicts.
fn demo_captures(result: Option<&serde_json::Value>) {
    let Some(caps) = result
        .and_then(|v| v.get("captures"))
        .and_then(serde_json::Value::as_array)
    else {
        return;
    };
    // A scenario that failed early never checked its captures.
    if !caps.iter().any(|c| c.get("summary").is_some()) {
        return;
    }
    println!("\n─── the capture on the wide-area link (wan.pcap) while all this ran");
    for c in caps {
        let s = |k: &str| c.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
        let what = match s("name") {
            "wan" => "between moon and sun (ESP and IKE only, nothing in clear):",
            "wan-inner" => "between the subnets 10.1.0.0/24 and 10.2.0.0/24 (never in clear):",
            other => other,
        };
        let ok = c.get("ok").and_then(serde_json::Value::as_bool) == Some(true);
        let verdict = if ok {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", s("failure"))
        };
        println!("{what}\n  {}  → {verdict}", s("summary"));
    }
}

/// The error of a failed scenario: the step that failed, its check, and
/// where the logs are.
fn demo_failure(
    dir: &std::path::Path,
    result: Option<&serde_json::Value>,
    steps: &[serde_json::Value],
    outcomes: &[runner::Outcome],
) -> util::TaskError {
    let reason = result
        .and_then(|v| v.get("reason"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .or_else(|| outcomes.first().map(|o| o.line.clone()))
        .unwrap_or_else(|| "the guest left no result".into());
    let failed = steps
        .iter()
        .find(|s| s.get("ok").and_then(serde_json::Value::as_bool) == Some(false));
    if let Some(text) = failed
        .and_then(|s| s.get("index"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| fs::read_to_string(dir.join(format!("steps/{n:02}.txt"))).ok())
    {
        println!("\n─── the step that failed\n{}", text.trim_end());
    }
    let at = match failed {
        Some(s) => {
            let n = s
                .get("index")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let name = s
                .get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            let host = s
                .get("host")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?");
            let line = s
                .get("line")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            format!(
                "step {n} ({name}; vm-tests/scenarios/{DEMO_SCENARIO}/scenario.toml:{line}); \
                 its record: {}/steps/{n:02}.txt; the host's daemons: {}/hosts/{host}/",
                dir.display(),
                dir.display()
            )
        }
        None => format!("see {}/console.log and result.json", dir.display()),
    };
    fail!("demo step 3/4 (scenario {DEMO_SCENARIO}) failed at {at}: {reason}")
}

#[cfg(test)]
mod demo_tests {
    use super::*;

    const STEP: &str = "step 12 (line 90): moon: the tunnel comes up\nhost: moon\n\
                        $ ipsec -y display\nexit: 0  time: 2.70s  attempts: 3\n\
                        --- stdout\nhead 1\nhead 2\nhead 3\nTunnelID:   Y1\nState:  Active\n\
                        Other:  x\n*****\n\n1 entries selected\n--- stderr\nwarn\n";

    #[test]
    fn step_file_parts() {
        assert_eq!(
            demo_step_header(STEP),
            ("moon: the tunnel comes up".to_string(), "2.70s".to_string())
        );
        assert!(demo_section(STEP, "stdout").starts_with("head 1\n"));
        assert!(demo_section(STEP, "stdout").ends_with("1 entries selected\n"));
        assert_eq!(demo_section(STEP, "stderr"), "warn\n");
        assert_eq!(demo_section("no markers", "stdout"), "");
    }

    #[test]
    fn excerpt_keeps_header_fields_and_count() {
        let out = demo_section(STEP, "stdout");
        assert_eq!(
            demo_excerpt(out, &["State"], "steps/12.txt"),
            "head 1\nhead 2\nhead 3\nState:  Active\n1 entries selected\n\
             (2 more lines in steps/12.txt)"
        );
    }

    /// Every step the demo prints or heads must exist in the scenario: a
    /// renamed step would silently drop it from the demo's output.
    #[test]
    fn demo_names_steps_of_the_scenario() {
        let chosen = runner::select(&[DEMO_SCENARIO.to_string()]).expect("the demo scenario");
        let (id, dir) = chosen.first().expect("one scenario");
        let sc = Scenario::load(id, dir).expect("the demo scenario parses");
        let names: Vec<&str> = sc.steps.iter().map(|s| s.name.as_str()).collect();
        let wanted = DEMO_SHOWS
            .iter()
            .chain(DEMO_AFTER_FAILOVER)
            .chain(DEMO_AFTER_FAILBACK)
            .map(|(n, _, _)| *n)
            .chain(DEMO_PHASES.iter().map(|(n, _)| *n))
            .chain([DEMO_FAILOVER_STEP, DEMO_FAILBACK_STEP]);
        for n in wanted {
            assert!(names.contains(&n), "no step named {n:?} in {DEMO_SCENARIO}");
        }
    }

    #[test]
    fn log_lines_shortened() {
        assert_eq!(
            demo_log_line(
                "2026-11-22T10:43:43.545Z  INFO iked: EZD1141I IKE switches stack default stack=default"
            ),
            "10:43:43.545 EZD1141I IKE switches stack default"
        );
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
