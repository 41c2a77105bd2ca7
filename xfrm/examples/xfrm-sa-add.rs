//! Add (or with `--update`, update) one SA.
//!
//! `xfrm-sa-add --src 192.0.2.1 --dst 192.0.2.2 --spi 0x1001 --aead aes-gcm-128 --key 0x…(20 bytes)`

mod common;

use anyhow::Result;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    #[command(flatten)]
    sa: common::SaArgs,
    /// Update an existing SA (e.g. one whose SPI came from xfrm-alloc-spi).
    #[arg(long)]
    update: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    let sa = cli.sa.build()?;
    let id = sa.id();
    if cli.update {
        h.state().update(sa).execute().await?;
    } else {
        h.state().add(sa).execute().await?;
    }
    println!("sa {} {} spi {} installed", id.proto, id.dst, id.spi);
    Ok(())
}
