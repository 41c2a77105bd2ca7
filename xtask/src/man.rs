//! `cargo xtask man [DIR]`: man pages and shell completions for the binaries.
//!
//! Each binary crate that generates its man page (and completions) from its
//! clap definitions has an example named `<binary>-gen` taking the output
//! directory (`cargo run -p ipsec-cli --example ipsec-gen -- DIR`). This task
//! finds every such example through `cargo metadata` (so a new one needs no
//! edit here), runs each, lists what they wrote, and names the binaries that
//! have no generator yet.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::fail;
use crate::util::{self, Ctx, Result};

/// The suffix that marks an example as a man page / completion generator.
const GEN_SUFFIX: &str = "-gen";

/// A generator: the package and example name, and the binary it documents.
#[derive(Debug, Clone, PartialEq)]
struct Generator {
    package: String,
    example: String,
    binary: String,
}

/// Generators and the workspace's binaries without one, from `cargo metadata`.
fn discover(meta: &Value) -> (Vec<Generator>, Vec<String>) {
    let mut gens = Vec::new();
    let mut bins = Vec::new();
    let packages = meta
        .get("packages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for p in &packages {
        let pkg = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if pkg == "xtask" {
            continue;
        }
        let targets = p
            .get("targets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in &targets {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            let kinds: Vec<&str> = t
                .get("kind")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if kinds.contains(&"bin") {
                bins.push(name.to_string());
            }
            if kinds.contains(&"example")
                && let Some(binary) = name.strip_suffix(GEN_SUFFIX)
            {
                gens.push(Generator {
                    package: pkg.to_string(),
                    example: name.to_string(),
                    binary: binary.to_string(),
                });
            }
        }
    }
    gens.sort_by(|a, b| a.binary.cmp(&b.binary));
    bins.sort();
    let missing = bins
        .into_iter()
        .filter(|b| !gens.iter().any(|g| &g.binary == b))
        .collect();
    (gens, missing)
}

pub fn run(args: &[String]) -> Result<()> {
    let dir = match args {
        [] => util::target_dir().join("man"),
        [d] if !d.starts_with('-') => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                std::env::current_dir()?.join(d)
            }
        }
        _ => return Err(fail!("usage: cargo xtask man [DIR]  (default: target/man)")),
    };
    let meta = util::workspace_metadata()?;
    let (gens, missing) = discover(&meta);
    if gens.is_empty() {
        return Err(fail!(
            "no generator found (an example named `<binary>{GEN_SUFFIX}` that takes the output directory)"
        ));
    }
    std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let mut failed = Vec::new();
    let mut written = Vec::new();
    for g in &gens {
        let mut c = util::cargo();
        c.args([
            "run",
            "--quiet",
            "-p",
            &g.package,
            "--example",
            &g.example,
            "--",
        ])
        .arg(&dir);
        println!("man: {}", util::show(&c));
        match util::stdout_of(&mut c) {
            Ok(out) => {
                for l in out.lines().filter(|l| !l.trim().is_empty()) {
                    written.push(l.trim().to_string());
                }
            }
            Err(e) => {
                println!("man: {} failed: {e}", g.example);
                failed.push(g.example.clone());
            }
        }
    }
    println!("man: wrote into {}:", dir.display());
    for w in &written {
        let shown = Path::new(w)
            .strip_prefix(&dir)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| w.clone());
        println!("  {shown}");
    }
    println!(
        "man: read one with `man -l {}`",
        dir.join(
            gens.first()
                .map(|g| format!("{}.{}", g.binary, section_guess(&written, &g.binary)))
                .unwrap_or_default()
        )
        .display()
    );
    if !missing.is_empty() {
        println!(
            "man: no generator yet for: {} (add an example `<binary>{GEN_SUFFIX}` to its crate)",
            missing.join(", ")
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(fail!("generator(s) failed: {}", failed.join(", ")))
    }
}

/// The man section a generator used for `binary` (from the files it wrote).
fn section_guess(written: &[String], binary: &str) -> String {
    written
        .iter()
        .filter_map(|w| Path::new(w).file_name()?.to_str())
        .filter_map(|f| f.strip_prefix(binary)?.strip_prefix('.'))
        .find(|s| s.chars().all(|c| c.is_ascii_digit()) && !s.is_empty())
        .unwrap_or("1")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_from_metadata() {
        let meta = serde_json::json!({"packages": [
            {"name": "ipsec-cli", "targets": [
                {"name": "ipsec", "kind": ["bin"]},
                {"name": "ipsec-gen", "kind": ["example"]},
                {"name": "ipsec_cli", "kind": ["lib"]}]},
            {"name": "iked", "targets": [{"name": "iked", "kind": ["bin"]}]},
            {"name": "xtask", "targets": [{"name": "xtask", "kind": ["bin"]}]}
        ]});
        let (g, missing) = discover(&meta);
        assert_eq!(
            g,
            vec![Generator {
                package: "ipsec-cli".into(),
                example: "ipsec-gen".into(),
                binary: "ipsec".into()
            }]
        );
        assert_eq!(missing, vec!["iked".to_string()]);
    }

    #[test]
    fn man_sections() {
        let w = vec!["/m/nssd.8".to_string(), "/m/ipsec.bash".to_string()];
        assert_eq!(section_guess(&w, "nssd"), "8");
        assert_eq!(section_guess(&w, "ipsec"), "1");
    }
}
