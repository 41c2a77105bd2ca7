//! `nssd`: see the library documentation of this package.

fn main() -> std::process::ExitCode {
    nssd::main()
}
