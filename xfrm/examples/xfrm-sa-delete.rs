//! Delete one SA: `xfrm-sa-delete --dst 192.0.2.2 --spi 0x1001 [--proto esp]`.

mod common;

use std::net::IpAddr;

use anyhow::Result;
use clap::Parser;
use gatekey_xfrm::{Mark, Proto, SaId, Spi};

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
    /// Mark the SA was installed with (VALUE/MASK).
    #[arg(long, value_parser = common::parse_mark)]
    mark: Option<Mark>,
}

impl Cli {
    fn id(&self) -> SaId {
        SaId {
            mark: self.mark,
            ..SaId::new(self.dst, Spi(self.spi), self.proto)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    h.state().delete(cli.id()).execute().await?;
    println!("sa deleted");
    Ok(())
}
