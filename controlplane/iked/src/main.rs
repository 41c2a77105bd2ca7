//! `iked`: see the library documentation of this package.

fn main() -> std::process::ExitCode {
    iked::main()
}
