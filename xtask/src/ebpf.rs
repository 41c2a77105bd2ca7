//! `cargo xtask build-ebpf [--release]`: build the eBPF filter object and say
//! where it is.
//!
//! The object is built the normal way, by the loader crate's `build.rs`
//! (aya-build, see `dataplane-ebpf/loader/build.rs`), so this is
//! `cargo build -p gatekey-dataplane --lib` plus reading where cargo put the
//! build script's output. The object is copied to `target/ebpf/` under a
//! stable name for tools (`bpftool`, `llvm-objdump`), and its programs and
//! map sections are listed.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use crate::fail;
use crate::util::{self, Ctx, Result};

/// The loader package whose build script builds the object.
const LOADER: &str = "gatekey-dataplane";
/// The object's file name in the build script's `OUT_DIR`.
const OBJECT: &str = "gatekey-filter";

pub fn run(args: &[String]) -> Result<()> {
    let mut release = false;
    for a in args {
        match a.as_str() {
            "--release" => release = true,
            other => {
                return Err(fail!(
                    "unknown argument `{other}`; usage: cargo xtask build-ebpf [--release]"
                ));
            }
        }
    }
    let mut c = util::cargo();
    c.args(["build", "-p", LOADER, "--lib"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if release {
        c.arg("--release");
    }
    println!("build-ebpf: {}", util::show(&c));
    let mut child = c
        .spawn()
        .ctx(|| format!("cannot start `{}`", util::show(&c)))?;
    let mut out_dir: Option<PathBuf> = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            let Ok(msg) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(dir) = out_dir_of(&msg) {
                out_dir = Some(dir);
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(fail!(
            "building {LOADER} failed ({status}); if bpf-linker is missing, run `cargo xtask setup`"
        ));
    }
    let dir = out_dir.ok_or_else(|| {
        fail!("cargo did not report the build script output of {LOADER}; is its build.rs gone?")
    })?;
    let object = dir.join(OBJECT);
    let data = fs::read(&object).ctx(|| {
        format!(
            "{LOADER}'s build script ran but wrote no {}",
            object.display()
        )
    })?;
    let stable = util::target_dir().join("ebpf");
    fs::create_dir_all(&stable).ctx(|| format!("creating {}", stable.display()))?;
    let copy = stable.join(format!("{OBJECT}.o"));
    fs::write(&copy, &data).ctx(|| format!("writing {}", copy.display()))?;
    println!("build-ebpf: {} ({} bytes)", object.display(), data.len());
    println!("build-ebpf: copied to {}", copy.display());
    match sections(&data) {
        Ok(secs) => {
            for s in secs.iter().filter(|s| s.exec && s.size > 0) {
                println!(
                    "build-ebpf:   program section {:<28} {:>6} instructions",
                    s.name,
                    s.size / 8
                );
            }
            for s in secs
                .iter()
                .filter(|s| s.name == ".maps" || s.name == "maps")
            {
                println!(
                    "build-ebpf:   map section     {:<28} {:>6} bytes",
                    s.name, s.size
                );
            }
        }
        Err(e) => println!("build-ebpf: note: cannot list its sections: {e}"),
    }
    Ok(())
}

/// The `OUT_DIR` of the loader's build script, from one cargo JSON message.
fn out_dir_of(msg: &Value) -> Option<PathBuf> {
    if msg.get("reason").and_then(Value::as_str) != Some("build-script-executed") {
        return None;
    }
    let id = msg.get("package_id").and_then(Value::as_str)?;
    // `path+file:///…/dataplane-ebpf/loader#gatekey-dataplane@0.1.0`, or the
    // older `gatekey-dataplane 0.1.0 (path+file:///…)`.
    let is_loader = id.contains(&format!("#{LOADER}@")) || id.starts_with(&format!("{LOADER} "));
    if !is_loader {
        return None;
    }
    msg.get("out_dir")
        .and_then(Value::as_str)
        .map(PathBuf::from)
}

/// One ELF section: name, size, whether it holds code.
#[derive(Debug, PartialEq)]
struct Section {
    name: String,
    size: u64,
    exec: bool,
}

/// The sections of a 64-bit little-endian ELF file (what bpfel objects are).
fn sections(data: &[u8]) -> std::result::Result<Vec<Section>, String> {
    // Little-endian unsigned field of `n` bytes at `o`, if it is in the file.
    let le = |o: usize, n: usize| -> Option<u64> {
        let b = data.get(o..o.checked_add(n)?)?;
        Some(b.iter().rev().fold(0u64, |v, x| (v << 8) | u64::from(*x)))
    };
    let u16_at = |o: usize| le(o, 2);
    let u64_at = |o: usize| le(o, 8);
    if data.get(0..4) != Some(b"\x7fELF") || data.get(4) != Some(&2) || data.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = || "truncated ELF header".to_string();
    let shoff = usize::try_from(u64_at(0x28).ok_or_else(bad)?).map_err(|_| bad())?;
    let shentsize = usize::try_from(u16_at(0x3a).ok_or_else(bad)?).map_err(|_| bad())?;
    let shnum = usize::try_from(u16_at(0x3c).ok_or_else(bad)?).map_err(|_| bad())?;
    let shstrndx = usize::try_from(u16_at(0x3e).ok_or_else(bad)?).map_err(|_| bad())?;
    if shentsize < 0x40 {
        return Err("bad section header size".into());
    }
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = header(shstrndx)
        .and_then(|h| Some((u64_at(h.checked_add(0x18)?)?, u64_at(h.checked_add(0x20)?)?)))
        .ok_or("no section name table")?;
    let mut out = Vec::new();
    for i in 0..shnum {
        let h = header(i).ok_or("section header out of range")?;
        let field = |off: usize, n: usize| h.checked_add(off).and_then(|o| le(o, n));
        let (Some(name_off), Some(flags), Some(size)) =
            (field(0, 4), field(0x08, 8), field(0x20, 8))
        else {
            return Err(format!("section header {i} is truncated"));
        };
        let start = usize::try_from(strtab.0.saturating_add(name_off)).unwrap_or(usize::MAX);
        let name = data
            .get(start..)
            .and_then(|rest| rest.split(|b| *b == 0).next())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        const SHF_EXECINSTR: u64 = 0x4;
        out.push(Section {
            name,
            size,
            exec: flags & SHF_EXECINSTR != 0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_out_dir_from_cargo_messages() {
        let msg: Value = serde_json::json!({
            "reason": "build-script-executed",
            "package_id": "path+file:///w/dataplane-ebpf/loader#gatekey-dataplane@0.1.0",
            "out_dir": "/w/target/debug/build/gatekey-dataplane-0123/out"
        });
        assert_eq!(
            out_dir_of(&msg),
            Some(PathBuf::from(
                "/w/target/debug/build/gatekey-dataplane-0123/out"
            ))
        );
        let other: Value = serde_json::json!({
            "reason": "build-script-executed",
            "package_id": "registry+https://github.com/rust-lang/crates.io-index#ring@0.17.14",
            "out_dir": "/w/target/debug/build/ring-1/out"
        });
        assert_eq!(out_dir_of(&other), None);
    }

    /// A minimal ELF64 LE with a null section, one code section and the
    /// section name table.
    fn tiny_elf() -> Vec<u8> {
        let names = b"\0tc/ingress\0.shstrtab\0";
        let mut f = vec![0u8; 0x40];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        let names_off = f.len() as u64;
        f.extend_from_slice(names);
        let shoff = f.len() as u64;
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        let mut sh = |name: u32, flags: u64, off: u64, size: u64| {
            let mut h = [0u8; 0x40];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[0x08..0x10].copy_from_slice(&flags.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&off.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0, 0);
        sh(1, 0x6, 0, 80);
        sh(12, 0, names_off, names.len() as u64);
        f
    }

    #[test]
    fn elf_sections() {
        let s = sections(&tiny_elf()).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[1],
            Section {
                name: "tc/ingress".into(),
                size: 80,
                exec: true
            }
        );
        assert_eq!(s[2].name, ".shstrtab");
        assert!(sections(b"not an elf").is_err());
        let mut cut = tiny_elf();
        cut.truncate(0x70);
        assert!(sections(&cut).is_err());
    }
}
