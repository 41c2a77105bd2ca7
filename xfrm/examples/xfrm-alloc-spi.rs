//! Allocate an SPI for an inbound SA: `xfrm-alloc-spi --src PEER --dst ME [--min 0x1000 --max 0x1fff]`.
//! Prints the SPI; the kernel holds a larval SA for it until `xfrm-sa-add --update` fills it in.

mod common;

use std::net::IpAddr;

use anyhow::Result;
use clap::Parser;
use gatekey_xfrm::Proto;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    /// Peer (source of inbound traffic).
    #[arg(long)]
    src: IpAddr,
    /// Local address.
    #[arg(long)]
    dst: IpAddr,
    /// Protocol.
    #[arg(long, default_value = "esp", value_parser = common::parse_proto)]
    proto: Proto,
    /// Lowest SPI.
    #[arg(long, default_value = "0x100", value_parser = common::parse_u32)]
    min: u32,
    /// Highest SPI.
    #[arg(long, default_value = "0x0fffffff", value_parser = common::parse_u32)]
    max: u32,
    /// Reqid of the future SA.
    #[arg(long, default_value_t = 0)]
    reqid: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    let spi = h
        .state()
        .alloc_spi(cli.src, cli.dst, cli.proto)
        .range(cli.min, cli.max)
        .reqid(cli.reqid)
        .execute()
        .await?;
    println!("spi {spi}");
    Ok(())
}
