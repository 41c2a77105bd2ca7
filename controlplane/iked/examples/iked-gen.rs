//! Writes the man page `iked.8`, generated from iked's clap definitions:
//! `cargo run -p iked --example iked-gen -- <outdir>` (`cargo xtask man` runs it).

use clap::CommandFactory as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: iked-gen <outdir>")?;
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut buf = Vec::new();
    clap_mangen::Man::new(iked::Cli::command().name("iked"))
        .section("8")
        .render(&mut buf)?;
    let p = dir.join("iked.8");
    std::fs::write(&p, buf)?;
    println!("{}", p.display());
    Ok(())
}
