//! Developer tasks for gatekey: `cargo xtask <task>`.
//!
//! xtask must build quickly on a fresh machine before anything else is
//! installed, so it depends on no other workspace crate and on very few
//! third-party ones (toml, serde_json, regex-lite).

mod agent;
mod bench;
mod checks;
mod ebpf;
mod fuzz;
mod guest;
mod man;
mod pcap;
mod runner;
mod scenario;
mod setup;
mod tasks;
mod util;

use std::process::ExitCode;
use std::time::Duration;

const HELP: &str = "\
usage: cargo xtask <task> [args]

tasks:
  demo             the newcomer's demo
  test             what CI runs: setup, build, cargo test --workspace, all VM scenarios;
                   --no-vm, --require-all (fail if a test skipped; GATEKEY_CI=1 does too), -j N
  setup            install what the build and the tests need (idempotent)
  vm-test [GLOB…]  run VM scenarios (vm-tests/scenarios/SUITE/NAME); --list, --no-build,
                   --release, -j N; see docs/testing.md
  bench [NAME]     list the benchmarks, or run one (BENCH lines)
  build-ebpf       build the eBPF filter object (through the loader's build) and print where
                   it is; --release
  man [DIR]        write the man pages and shell completions of every binary that has a
                   generator (default DIR: target/man)
  fuzz [TARGET…]   run the cargo-fuzz targets from their seed corpora; --seconds N each
                   (default 60), --list
  vm-run CMD       boot a test guest, run the shell command CMD in it, print its output
  help             this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match task {
        "setup" => setup::run(rest),
        "vm-run" => vm_run(rest),
        "vm-test" => runner::run(rest),
        "test" => tasks::test(rest),
        "demo" => tasks::demo(rest),
        "bench" => bench::run(rest),
        "fuzz" => fuzz::run(rest),
        "build-ebpf" => ebpf::run(rest),
        "man" => man::run(rest),
        "guest-agent" => agent::main(rest),
        "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        _ => Err(fail!("unknown task `{task}`; see `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Boot a guest and run one shell command in its initial namespace.
fn vm_run(args: &[String]) -> util::Result<()> {
    if args.is_empty() {
        return Err(fail!("usage: cargo xtask vm-run 'SHELL COMMAND'"));
    }
    let out = util::target_dir()
        .join("vm-tests")
        .join("vm-run")
        .join(format!("{}-{}", util::timestamp(), std::process::id()));
    std::fs::create_dir_all(&out)?;
    let script = format!(
        "cd /out\n( {} ) > /out/output.txt 2>&1\necho $? > /out/status\n",
        args.join(" ")
    );
    let spec = guest::standard_spec(&out, script)?;
    let console = out.join("console.log");
    let guest = spec.spawn(&console)?;
    let (run, stderr) = guest.wait(Duration::from_secs(600))?;
    print!(
        "{}",
        std::fs::read_to_string(out.join("output.txt")).unwrap_or_default()
    );
    let status = std::fs::read_to_string(out.join("status")).unwrap_or_default();
    eprintln!(
        "vm-run: boot {} , total {}, status {}, console: {}",
        run.boot_secs
            .map(|b| format!("{b:.1}s"))
            .unwrap_or("?".into()),
        util::secs(run.total),
        status.trim(),
        console.display()
    );
    if !stderr.trim().is_empty() {
        eprintln!("qemu: {}", stderr.trim());
    }
    match status.trim() {
        "0" => Ok(()),
        _ if run.timed_out => Err(fail!("guest timed out")),
        s => Err(fail!("command exited with status `{s}`")),
    }
}
