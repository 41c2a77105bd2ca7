//! Writes the man pages `gatekey-filter.8` and `gatekey-filter-<subcommand>.8`
//! (the main page lists the subcommands under those names), generated from
//! the clap definitions in `gatekey_dataplane::cli`:
//! `cargo run -p gatekey-dataplane --example gatekey-filter-gen -- <outdir>`
//! (`cargo xtask man` runs it).

use clap::CommandFactory as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: gatekey-filter-gen <outdir>")?;
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    // `help` is clap's own subcommand, not worth a page; building sets each
    // subcommand's display name (`gatekey-filter-load`) and passes the
    // global `--stack` down to it.
    let mut cmd = gatekey_dataplane::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    // Every page's footer names the package, as the main page's does.
    let source = format!("gatekey-filter {}", cmd.get_version().unwrap_or_default());
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    for c in std::iter::once(cmd).chain(subs) {
        let man = clap_mangen::Man::new(c).section("8").source(source.clone());
        let p = dir.join(man.get_filename());
        let mut buf = Vec::new();
        man.render(&mut buf)?;
        std::fs::write(&p, buf)?;
        println!("{}", p.display());
    }
    Ok(())
}
