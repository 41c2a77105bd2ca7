//! The `ipsec` command; see the library crate `ipsec_cli` and `ipsec --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = ipsec_cli::run(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
