//! Writes the man page `nssd.8`, generated from the clap definitions:
//! `cargo run -p nssd --example nssd-gen -- <outdir>`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: nssd-gen <outdir>")?;
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let mut buf = Vec::new();
    clap_mangen::Man::new(nssd::command())
        .section("8")
        .render(&mut buf)?;
    let p = dir.join("nssd.8");
    std::fs::write(&p, buf)?;
    println!("{}", p.display());
    Ok(())
}
