//! `ike`: the AIX IKE tunnel command for gatekey (see the crate docs).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = ike_cli::run(
        &args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
