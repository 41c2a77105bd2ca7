//! Writes `ipsec.1` and shell completions (bash, zsh, fish) generated from the clap definitions:
//! `cargo run -p ipsec-cli --example ipsec-gen -- <outdir>`.

mod common {
    pub mod generate;
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: ipsec-gen <outdir>")?;
    for p in common::generate::generate(std::path::Path::new(&dir))? {
        println!("{}", p.display());
    }
    Ok(())
}
