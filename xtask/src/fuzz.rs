//! `cargo xtask fuzz [TARGET…] [--seconds N]`: run the cargo-fuzz targets.
//!
//! Every cargo-fuzz project in the workspace (a directory `…/fuzz/` whose
//! `Cargo.toml` has `[package.metadata] cargo-fuzz = true`, e.g.
//! `controlplane/ike-proto/fuzz/`) is found by itself; each `[[bin]]` in it
//! is a target. A target runs for a bounded time, starting from its committed
//! seed corpus (`fuzz/corpus/TARGET/`, read only: new inputs go to
//! `target/fuzz/corpus/PROJECT/TARGET/`). A crash is reported with the input
//! libFuzzer saved and the command that reproduces it; the task fails if any
//! target crashed. Not part of `cargo xtask test`.
//!
//! The targets build with the stable toolchain and `RUSTC_BOOTSTRAP=1` (the
//! sanitizer flags are unstable), as the eBPF crate does; no nightly needed.
//! cargo-fuzz is installed on first use (`cargo install cargo-fuzz`).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::fail;
use crate::util::{self, Ctx, Result};

/// The cargo-fuzz version `cargo xtask fuzz` installs when none is there.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The toolchain the fuzz targets build with (plus `RUSTC_BOOTSTRAP=1`).
const FUZZ_TOOLCHAIN: &str = "stable";

/// Seconds per target unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 60;

const USAGE: &str = "usage: cargo xtask fuzz [--list] [--seconds N] [TARGET…]\n\
    TARGET is a target name (`message_decode`), PROJECT/TARGET (`ike-proto/message_decode`),\n\
    a project (`ike-proto`), or a glob over PROJECT/TARGET (`ike-proto/*`, `*decode*`)";

/// One cargo-fuzz project (`<crate>/fuzz`).
#[derive(Debug, Clone)]
struct Project {
    /// The crate directory's name relative to the workspace (`ike-proto`).
    name: String,
    /// The fuzz project directory.
    dir: PathBuf,
    targets: Vec<String>,
}

/// Find the cargo-fuzz projects: `*/fuzz` and `*/*/fuzz` under the workspace.
fn discover() -> Result<Vec<Project>> {
    let root = util::workspace_root();
    let mut dirs = Vec::new();
    let mut level: Vec<PathBuf> = vec![root.clone()];
    for _depth in 0..3 {
        let mut next = Vec::new();
        for d in &level {
            let Ok(rd) = fs::read_dir(d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if !p.is_dir() || name.starts_with('.') || name == "target" {
                    continue;
                }
                if name == "fuzz" && p.join("Cargo.toml").is_file() {
                    dirs.push(p);
                } else {
                    next.push(p);
                }
            }
        }
        level = next;
    }
    let mut out = Vec::new();
    for dir in dirs {
        let manifest = dir.join("Cargo.toml");
        let text =
            fs::read_to_string(&manifest).ctx(|| format!("reading {}", manifest.display()))?;
        let doc: toml::Table =
            toml::from_str(&text).map_err(|e| fail!("{}: {}", manifest.display(), e.message()))?;
        let is_fuzz = doc
            .get("package")
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("cargo-fuzz"))
            .and_then(toml::Value::as_bool)
            == Some(true);
        if !is_fuzz {
            continue;
        }
        let targets: Vec<String> = doc
            .get("bin")
            .and_then(toml::Value::as_array)
            .map(|bins| {
                bins.iter()
                    .filter_map(|b| b.get("name").and_then(toml::Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let crate_dir = dir.parent().unwrap_or(&dir);
        let name = crate_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(Project { name, dir, targets });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Does a pattern select `project/target`?
fn selects(pattern: &str, project: &str, target: &str) -> bool {
    let id = format!("{project}/{target}");
    pattern == target || pattern == project || util::glob_match(pattern, &id)
}

#[derive(Debug)]
struct Options {
    seconds: u64,
    list: bool,
    patterns: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options {
        seconds: DEFAULT_SECONDS,
        list: false,
        patterns: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => o.list = true,
            "--seconds" | "-s" => {
                o.seconds = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| fail!("--seconds needs a number ≥ 1\n{USAGE}"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                o.list = true;
            }
            s if s.starts_with('-') => return Err(fail!("unknown option `{s}`\n{USAGE}")),
            s => o.patterns.push(s.to_string()),
        }
    }
    Ok(o)
}

/// The cargo-fuzz binary, installed if missing.
fn cargo_fuzz() -> Result<PathBuf> {
    let find = || {
        util::which("cargo-fuzz").or_else(|| {
            let p = util::cargo_home().join("bin/cargo-fuzz");
            p.is_file().then_some(p)
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    println!("fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} (once; takes a few minutes)");
    util::run_inherit(util::cargo().args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
    ]))
    .map_err(|e| fail!("{e}; run `cargo install cargo-fuzz --locked` by hand"))?;
    find().ok_or_else(|| fail!("cargo-fuzz installed but not found in $CARGO_HOME/bin"))
}

/// `cargo-fuzz fuzz SUBCOMMAND` for a project, with the toolchain and
/// target directory xtask uses.
fn fuzz_cmd(cargo_fuzz: &Path, sub: &str, p: &Project) -> Command {
    let mut c = Command::new(cargo_fuzz);
    c.arg("fuzz")
        .arg(sub)
        .arg("--fuzz-dir")
        .arg(&p.dir)
        .arg("--target-dir")
        .arg(util::target_dir().join("fuzz"))
        .env("RUSTUP_TOOLCHAIN", FUZZ_TOOLCHAIN)
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(p.dir.parent().unwrap_or(&p.dir))
        .stdin(Stdio::null());
    c
}

/// What one fuzz run found.
#[derive(Debug, Default, PartialEq)]
struct RunReport {
    /// `Done N runs in S second(s)`.
    runs: Option<(u64, u64)>,
    /// Inputs libFuzzer saved: `Test unit written to PATH`.
    artifacts: Vec<String>,
    /// The first sanitizer / libFuzzer error line.
    error: Option<String>,
    /// Units in the starting corpus (`INFO: seed corpus: files: N`).
    seeds: Option<u64>,
    /// The error's line and what follows it (a panic's message, the stack).
    detail: Vec<String>,
}

/// Lines of a crash's report kept for the summary.
const DETAIL_LINES: usize = 24;

impl RunReport {
    fn add_line(&mut self, line: &str) {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("Done ") {
            let mut w = rest.split_whitespace();
            let runs = w.next().and_then(|n| n.parse().ok());
            let secs = w.nth(2).and_then(|n| n.parse().ok());
            if let (Some(r), Some(s)) = (runs, secs) {
                self.runs = Some((r, s));
            }
        } else if let Some(i) = l.find("Test unit written to ") {
            let path = l
                .get(i + "Test unit written to ".len()..)
                .unwrap_or_default()
                .trim();
            self.artifacts.push(path.to_string());
        } else if self.error.is_none()
            && (l.starts_with("==") && l.contains("ERROR:")
                || l.starts_with("thread '") && l.contains("panicked")
                || l.starts_with("SUMMARY:"))
        {
            self.error = Some(l.to_string());
            self.detail.push(line.to_string());
        } else if !self.detail.is_empty() && self.detail.len() < DETAIL_LINES {
            if self.detail.len() == 1
                && let Some(e) = self.error.as_mut()
                && e.contains("panicked")
            {
                // The panic's message is on the next line.
                e.push(' ');
                e.push_str(l);
            }
            self.detail.push(line.to_string());
        } else if let Some(rest) = l.strip_prefix("INFO: seed corpus: files: ") {
            self.seeds = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        }
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let opts = parse(args)?;
    let projects = discover()?;
    if projects.is_empty() {
        return Err(fail!(
            "no cargo-fuzz project found (a `fuzz/Cargo.toml` with `[package.metadata] cargo-fuzz = true`)"
        ));
    }
    let chosen: Vec<(Project, Vec<String>)> = projects
        .iter()
        .map(|p| {
            let t: Vec<String> = p
                .targets
                .iter()
                .filter(|t| {
                    opts.patterns.is_empty() || opts.patterns.iter().any(|g| selects(g, &p.name, t))
                })
                .cloned()
                .collect();
            (p.clone(), t)
        })
        .filter(|(_, t)| !t.is_empty())
        .collect();
    if opts.list {
        for p in &projects {
            let rel = p.dir.strip_prefix(util::workspace_root()).unwrap_or(&p.dir);
            for t in &p.targets {
                println!("{:<40} {}", format!("{}/{t}", p.name), rel.display());
            }
        }
        return Ok(());
    }
    if chosen.is_empty() {
        return Err(fail!(
            "no fuzz target matches {:?}; `cargo xtask fuzz --list` lists them",
            opts.patterns
        ));
    }
    let cargo_fuzz = cargo_fuzz()?;
    let out = util::target_dir().join("fuzz");
    let logs = out.join("logs");
    fs::create_dir_all(&logs).ctx(|| format!("creating {}", logs.display()))?;
    let t0 = Instant::now();

    // Build each project's chosen targets first, so build time does not
    // count against the fuzzing time.
    for (p, targets) in &chosen {
        let t = Instant::now();
        println!("fuzz: building {} ({})", p.name, targets.join(" "));
        let mut ok = true;
        for target in targets {
            let mut c = fuzz_cmd(&cargo_fuzz, "build", p);
            c.arg(target);
            if let Err(e) = util::run_inherit(&mut c) {
                println!("fuzz: building {}/{target} failed: {e}", p.name);
                ok = false;
            }
        }
        if !ok {
            return Err(fail!("the fuzz targets of {} do not build", p.name));
        }
        println!("fuzz: built {} in {}", p.name, util::secs(t.elapsed()));
    }

    let mut lines = Vec::new();
    let mut crashed = 0;
    for (p, targets) in &chosen {
        for target in targets {
            let id = format!("{}/{target}", p.name);
            let seeds = p.dir.join("corpus").join(target);
            let scratch = out.join("corpus").join(&p.name).join(target);
            let artifacts = out.join("artifacts").join(&p.name).join(target);
            fs::create_dir_all(&scratch).ctx(|| format!("creating {}", scratch.display()))?;
            fs::create_dir_all(&artifacts).ctx(|| format!("creating {}", artifacts.display()))?;
            let log_path = logs.join(format!("{}-{target}.log", p.name));
            let mut log =
                fs::File::create(&log_path).ctx(|| format!("creating {}", log_path.display()))?;
            let mut c = fuzz_cmd(&cargo_fuzz, "run", p);
            c.arg(target).arg(&scratch);
            if seeds.is_dir() {
                c.arg(&seeds);
            } else {
                println!("fuzz: note: {id} has no seed corpus at {}", seeds.display());
            }
            c.arg("--")
                .arg(format!("-max_total_time={}", opts.seconds))
                .arg("-timeout=20")
                .arg(format!("-artifact_prefix={}/", artifacts.display()))
                .arg("-print_final_stats=1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            println!("fuzz: {id} for {} s", opts.seconds);
            let t = Instant::now();
            let mut child = c
                .spawn()
                .ctx(|| format!("cannot start `{}`", util::show(&c)))?;
            // libFuzzer reports on stderr; cargo's build lines too.
            let err = child.stderr.take();
            let outp = child.stdout.take();
            let out_thread = std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(o) = outp {
                    for l in BufReader::new(o).lines().map_while(|l| l.ok()) {
                        text.push_str(&l);
                        text.push('\n');
                    }
                }
                text
            });
            let mut report = RunReport::default();
            let mut tail: Vec<String> = Vec::new();
            if let Some(e) = err {
                for l in BufReader::new(e).lines().map_while(|l| l.ok()) {
                    let _ = writeln!(log, "{l}");
                    report.add_line(&l);
                    tail.push(l);
                    if tail.len() > 40 {
                        tail.remove(0);
                    }
                }
            }
            let stdout = out_thread.join().unwrap_or_default();
            let _ = log.write_all(stdout.as_bytes());
            for l in stdout.lines() {
                report.add_line(l);
            }
            let status = child.wait()?;
            let new_units = fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
            let took = util::secs(t.elapsed());
            let rel = |p: &Path| {
                p.strip_prefix(util::workspace_root())
                    .unwrap_or(p)
                    .display()
                    .to_string()
            };
            if status.success() {
                let (runs, secs) = report.runs.unwrap_or((0, opts.seconds));
                lines.push(format!(
                    "OK    {id}: {runs} runs in {secs} s ({}/s), {} seed inputs, {new_units} inputs in {} ({took})",
                    runs / secs.max(1),
                    report
                        .seeds
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "?".into()),
                    rel(&scratch)
                ));
            } else {
                crashed += 1;
                println!("fuzz: {id} FAILED ({status}); from {}:", rel(&log_path));
                let shown = if report.detail.is_empty() {
                    &tail
                } else {
                    &report.detail
                };
                for l in shown {
                    println!("  | {l}");
                }
                let input = report.artifacts.first().cloned();
                let repro = match &input {
                    Some(a) => format!(
                        "RUSTC_BOOTSTRAP=1 cargo +{FUZZ_TOOLCHAIN} fuzz run --fuzz-dir {} {target} {a}",
                        rel(&p.dir)
                    ),
                    None => String::new(),
                };
                lines.push(format!(
                    "CRASH {id}: {}{}; log {}{}",
                    report
                        .error
                        .as_deref()
                        .unwrap_or("the fuzzer exited with an error"),
                    input
                        .as_ref()
                        .map(|a| format!("; input {a}"))
                        .unwrap_or_default(),
                    rel(&log_path),
                    if repro.is_empty() {
                        String::new()
                    } else {
                        format!("\n      reproduce: {repro}")
                    }
                ));
            }
        }
    }
    println!();
    for l in &lines {
        println!("{l}");
    }
    println!(
        "fuzz: {} target(s), {crashed} crashed, in {}",
        lines.len(),
        util::secs(t0.elapsed())
    );
    if crashed > 0 {
        Err(fail!("{crashed} fuzz target(s) crashed; see above"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        assert!(selects("message_decode", "ike-proto", "message_decode"));
        assert!(selects("ike-proto", "ike-proto", "message_decode"));
        assert!(selects("ike-proto/*", "ike-proto", "isakmp_decode"));
        assert!(selects("*decode*", "nmi", "nmi_decode"));
        assert!(!selects("nmi", "ike-proto", "message_decode"));
    }

    #[test]
    fn libfuzzer_output() {
        let mut r = RunReport::default();
        for l in [
            "INFO: seed corpus: files: 37 min: 1b max: 1200b total: 9000b rss: 30Mb",
            "#4096\tpulse  cov: 100 ft: 200 corp: 30/1Kb exec/s: 2048 rss: 40Mb",
            "thread '<unnamed>' (16957) panicked at fuzz_targets/boom.rs:4:9:",
            "boom",
            "==1234== ERROR: libFuzzer: deadly signal",
            "artifact_prefix='/t/'; Test unit written to /t/crash-abc",
            "SUMMARY: libFuzzer: deadly signal",
            "Done 49834 runs in 11 second(s)",
        ] {
            r.add_line(l);
        }
        assert_eq!(r.seeds, Some(37));
        assert_eq!(r.runs, Some((49834, 11)));
        assert_eq!(r.artifacts, vec!["/t/crash-abc".to_string()]);
        assert_eq!(
            r.error.as_deref(),
            Some("thread '<unnamed>' (16957) panicked at fuzz_targets/boom.rs:4:9: boom")
        );
        assert_eq!(r.detail.len(), 4);
    }

    #[test]
    fn finds_the_committed_projects() {
        let found = discover().unwrap_or_default();
        let nmi = found.iter().find(|p| p.name == "nmi");
        assert!(
            nmi.is_some_and(|p| p.targets.contains(&"nmi_decode".to_string())),
            "{found:?}"
        );
    }
}
