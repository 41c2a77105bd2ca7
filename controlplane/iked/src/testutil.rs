//! Helpers shared by the crate's unit tests.

/// Reports a skipped test the way `cargo xtask test` collects it (docs/testing.md,
/// "Skipped tests"): `GATEKEY-SKIP: <test>: <reason>` on stderr and appended to
/// `$GATEKEY_SKIP_LOG`. The test's name is libtest's (the thread name) when there is one.
pub(crate) fn report_skip(test: &str, why: &str) {
    let thread = std::thread::current();
    let name = thread.name().filter(|n| *n != "main").unwrap_or(test);
    let line = format!("GATEKEY-SKIP: {}::{name}: {why}\n", env!("CARGO_PKG_NAME"));
    eprint!("{line}");
    if let Some(log) = std::env::var_os("GATEKEY_SKIP_LOG") {
        use std::io::Write as _;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}
