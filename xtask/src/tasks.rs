//! `cargo xtask test` (what CI runs) and `cargo xtask demo`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fail;
use crate::runner::{self, Options};
use crate::scenario::Scenario;
use crate::setup;
use crate::util::{self, Ctx, Result};

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

/// Run `cargo test --workspace`, echoing its output and counting results.
fn cargo_test() -> Result<(bool, Counts)> {
    let mut c = util::cargo();
    c.args(["test", "--workspace"])
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
    Ok((ok, counts))
}

/// `cargo xtask test [--no-vm]`
pub fn test(args: &[String]) -> Result<()> {
    let mut vm = true;
    for a in args {
        match a.as_str() {
            "--no-vm" => vm = false,
            other => {
                return Err(fail!(
                    "unknown option `{other}`; usage: cargo xtask test [--no-vm]"
                ));
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
    let (tests_ok, counts) = cargo_test()?;
    phases.push((
        "cargo test",
        t.elapsed(),
        format!(
            "{} passed, {} failed, {} ignored{}",
            counts.passed,
            counts.failed,
            counts.ignored,
            if tests_ok {
                ""
            } else {
                " — cargo test FAILED"
            }
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
            jobs: 1,
            ..Options::default()
        };
        match runner::run_scenarios(&scenarios, &opts) {
            Ok(outcomes) => {
                vm_passed = outcomes.iter().filter(|o| o.pass).count();
                vm_failed = outcomes.len() - vm_passed + bad.len();
                phases.push((
                    "vm scenarios",
                    t.elapsed(),
                    format!("{vm_passed} passed, {vm_failed} failed"),
                ));
            }
            Err(e) => {
                vm_failed = scenarios.len() + bad.len();
                phases.push(("vm scenarios", t.elapsed(), format!("FAILED: {e}")));
            }
        }
    }
    report(&phases);
    let passed = counts.passed + vm_passed as u64;
    let failed = counts.failed + vm_failed as u64;
    println!(
        "total: {passed} passed, {failed} failed, {} skipped",
        counts.ignored
    );
    if !tests_ok || vm_failed > 0 {
        return Err(fail!(
            "{}{}",
            if tests_ok { "" } else { "cargo test failed; " },
            if vm_failed > 0 {
                format!("{vm_failed} VM scenario(s) failed")
            } else {
                String::new()
            }
        ));
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
}
