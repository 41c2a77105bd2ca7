//! Builds the eBPF filter (`dataplane-ebpf/ebpf`) for `bpfel-unknown-none`
//! with aya-build and the *stable* toolchain (`RUSTC_BOOTSTRAP=1`,
//! `-Z build-std=core`, release profile), so a plain `cargo build` builds it.
//! The object lands in `$OUT_DIR/gatekey-filter` and is embedded by the loader.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Set on the re-executed build script (see `main`).
const CHILD_MARKER: &str = "GATEKEY_EBPF_BUILD_CHILD";

fn main() -> ExitCode {
    // The eBPF crate needs `-Z build-std=core`, which stable cargo accepts only
    // with RUSTC_BOOTSTRAP=1, and aya-build reads that variable from this
    // process's environment. Instead of mutating our own environment (unsafe
    // in edition 2024), run this same build script again with the variable
    // set; its stdout (the `cargo:` directives) goes straight to cargo.
    if env::var_os(CHILD_MARKER).is_none() {
        return reexec_with_bootstrap();
    }
    match build() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: building the eBPF filter failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn reexec_with_bootstrap() -> ExitCode {
    let exe = match env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("error: cannot find the build script's own path: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = Command::new(exe);
    // aya-build runs `cargo build --package gatekey-ebpf` in the current
    // directory; the eBPF crate is a workspace of its own, so run it there.
    cmd.env(CHILD_MARKER, "1")
        .env("RUSTC_BOOTSTRAP", "1")
        .current_dir(ebpf_dir());
    match find_bpf_linker() {
        Some(dir) => {
            // Make sure the nested rustc finds bpf-linker even when
            // ~/.cargo/bin is not on PATH.
            let mut paths = vec![dir];
            paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
            if let Ok(joined) = env::join_paths(paths) {
                cmd.env("PATH", joined);
            }
        }
        None => {
            if env::var_os("AYA_BUILD_SKIP").is_none() {
                eprintln!(
                    "error: bpf-linker was not found on PATH or in $CARGO_HOME/bin; \
                     it is needed to build gatekey's eBPF filter.\n\
                     help: run `cargo xtask setup` (it builds bpf-linker for LLVM 22)"
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let output = match cmd.stderr(Stdio::inherit()).output() {
        Ok(output) => output,
        Err(e) => {
            eprintln!("error: cannot re-run the build script: {e}");
            return ExitCode::FAILURE;
        }
    };
    // aya-build turns every line the nested cargo prints into a
    // `cargo:warning`, so each build would "warn" about `Compiling …` and
    // `Finished …`. Pass on everything else (real compiler warnings and
    // errors, and the rerun directives).
    let failed = !output.status.success();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if !failed && is_progress_line(line) {
            continue;
        }
        println!("{line}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Cargo's progress messages, forwarded by aya-build as warnings.
fn is_progress_line(line: &str) -> bool {
    let Some(msg) = line.strip_prefix("cargo:warning=") else {
        return false;
    };
    let msg = msg.trim_start();
    msg.is_empty()
        || [
            "Compiling ",
            "Finished ",
            "Blocking ",
            "Downloading ",
            "Downloaded ",
            "Updating ",
            "Locking ",
            "Adding ",
            "Fresh ",
        ]
        .iter()
        .any(|p| msg.starts_with(p))
}

/// The directory holding an executable `bpf-linker`: first on PATH, then
/// `$CARGO_HOME/bin` (default `~/.cargo/bin`).
fn find_bpf_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        env::split_paths(&env::var_os("PATH").unwrap_or_default()).collect();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .find(|d| is_executable(&d.join("bpf-linker")))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
}

fn ebpf_dir() -> PathBuf {
    let dir = manifest_dir().join("../ebpf");
    dir.canonicalize().unwrap_or(dir)
}

fn build() -> aya_build::Result<()> {
    let ebpf_dir = ebpf_dir();
    // aya-build watches the eBPF crate's directory; watch the shared types too.
    let common = manifest_dir().join("../common");
    let common = common.canonicalize().unwrap_or(common);
    println!("cargo:rerun-if-changed={}", common.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        common.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-env-changed=PATH");
    let root = ebpf_dir.to_string_lossy().into_owned();
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "gatekey-ebpf",
            root_dir: &root,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom("stable"),
    )
}
