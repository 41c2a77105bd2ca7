//! Delete one SA: `xfrm-sa-delete --dst 192.0.2.2 --spi 0x1001 [--proto esp]`.

mod common;

use std::net::IpAddr;

use anyhow::Result;
use clap::Parser;
use gatekey_xfrm::{Proto, SaId, Spi};

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    /// Destination address.
    #[arg(long)]
    dst: IpAddr,
    /// SPI.
    #[arg(long, value_parser = common::parse_u32)]
    spi: u32,
    /// Protocol.
    #[arg(long, default_value = "esp", value_parser = common::parse_proto)]
    proto: Proto,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    h.state()
        .delete(SaId::new(cli.dst, Spi(cli.spi), cli.proto))
        .execute()
        .await?;
    println!("sa deleted");
    Ok(())
}
