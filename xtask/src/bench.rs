//! `cargo xtask bench [NAME]`: the benchmark dispatcher.
//!
//! Benchmarks are registered where they live, so nobody edits xtask to add
//! one:
//!
//! * a crate declares host benchmarks in its `Cargo.toml`:
//!   ```toml
//!   [[package.metadata.gatekey.bench]]
//!   name = "filter-lookup"
//!   description = "eBPF filter cost per packet vs. an empty TC program"
//!   run = ["cargo", "run", "--release", "-p", "gatekey-dataplane", "--example", "bench-filter"]
//!   ```
//!   The command runs from the workspace root (as root, so it may create
//!   network namespaces);
//! * a VM scenario in `vm-tests/scenarios/bench/NAME/` is the benchmark
//!   `NAME`.
//!
//! Either way the benchmark prints `BENCH NAME key=value …` lines; they are
//! collected, printed at the end and appended to `target/bench/NAME.txt`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::fail;
use crate::runner::{self, Options};
use crate::scenario::{self, Scenario};
use crate::util::{self, Ctx, Result};

#[derive(Debug, Clone)]
enum Kind {
    Command { package: String, argv: Vec<String> },
    Scenario(String),
}

#[derive(Debug, Clone)]
struct Bench {
    name: String,
    description: String,
    kind: Kind,
}

/// Benchmarks declared in the workspace's Cargo.toml files.
fn from_metadata() -> Result<Vec<Bench>> {
    let meta = util::workspace_metadata()?;
    let mut out = Vec::new();
    let packages = meta
        .get("packages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for p in &packages {
        let pkg = p.get("name").and_then(Value::as_str).unwrap_or("?");
        let Some(list) = p
            .pointer("/metadata/gatekey/bench")
            .and_then(Value::as_array)
        else {
            continue;
        };
        for b in list {
            let name = b.get("name").and_then(Value::as_str);
            let argv: Option<Vec<String>> = b.get("run").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            });
            match (name, argv) {
                (Some(name), Some(argv)) if !argv.is_empty() => out.push(Bench {
                    name: name.to_string(),
                    description: b
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    kind: Kind::Command {
                        package: pkg.to_string(),
                        argv,
                    },
                }),
                _ => {
                    return Err(fail!(
                        "package {pkg}: [[package.metadata.gatekey.bench]] entries need \
                         `name` and a non-empty `run` list"
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn all() -> Result<Vec<Bench>> {
    let mut v = from_metadata()?;
    for (id, dir) in scenario::discover()? {
        if let Some(name) = id.strip_prefix("bench/") {
            let description = Scenario::load(&id, &dir)
                .map(|s| s.description.lines().next().unwrap_or_default().to_string())
                .unwrap_or_else(|e| format!("(scenario has errors: {e})"));
            v.push(Bench {
                name: name.to_string(),
                description,
                kind: Kind::Scenario(id),
            });
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(v)
}

pub fn run(args: &[String]) -> Result<()> {
    let benches = all()?;
    let Some((name, rest)) = args.split_first() else {
        println!("benchmarks (run one with `cargo xtask bench NAME`):");
        for b in &benches {
            let from = match &b.kind {
                Kind::Command { package, .. } => format!("crate {package}"),
                Kind::Scenario(id) => format!("VM scenario {id}"),
            };
            println!("  {:<24} {}  [{from}]", b.name, b.description);
        }
        if benches.is_empty() {
            println!("  (none yet; see docs/testing.md, \"Adding a benchmark\")");
        }
        return Ok(());
    };
    let bench = benches
        .iter()
        .find(|b| &b.name == name)
        .ok_or_else(|| fail!("no benchmark `{name}`; `cargo xtask bench` lists them"))?;
    let t = Instant::now();
    let lines = match &bench.kind {
        Kind::Command { argv, .. } => run_command(&bench.name, argv, rest)?,
        Kind::Scenario(id) => {
            let dir = scenario::vm_tests_dir().join("scenarios").join(id);
            let sc = Scenario::load(id, &dir)?;
            let opts = Options {
                build: !rest.iter().any(|a| a == "--no-build"),
                release: true,
                jobs: 1,
                ..Options::default()
            };
            let outcomes = runner::run_scenarios(std::slice::from_ref(&sc), &opts)?;
            if outcomes.iter().any(|o| !o.pass) {
                return Err(fail!("benchmark scenario {id} failed"));
            }
            outcomes.into_iter().flat_map(|o| o.bench).collect()
        }
    };
    if lines.is_empty() {
        return Err(fail!(
            "benchmark {name} printed no `BENCH {name} key=value …` line"
        ));
    }
    let dir = util::target_dir().join("bench");
    fs::create_dir_all(&dir)?;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.txt")))?;
    println!("\nbench {name} ({}):", util::secs(t.elapsed()));
    for l in &lines {
        println!("{l}");
        let _ = writeln!(f, "{} {l}", util::timestamp());
    }
    Ok(())
}

/// Run a host benchmark command, echoing its output and keeping BENCH lines.
fn run_command(name: &str, argv: &[String], extra: &[String]) -> Result<Vec<String>> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| fail!("benchmark {name} has an empty command"))?;
    let mut c = if prog == "cargo" {
        util::cargo()
    } else {
        let mut c = Command::new(prog);
        c.current_dir(util::workspace_root());
        c
    };
    c.args(args)
        .args(extra)
        .env("GATEKEY_BENCH", name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let shown = util::show(&c);
    println!("bench: {shown}");
    let mut child = c.spawn().ctx(|| format!("cannot start `{shown}`"))?;
    let mut lines = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            println!("{line}");
            if line.starts_with("BENCH ") {
                lines.push(line);
            }
        }
    }
    let st = child.wait()?;
    if !st.success() {
        return Err(fail!("`{shown}` failed ({st})"));
    }
    Ok(lines)
}
