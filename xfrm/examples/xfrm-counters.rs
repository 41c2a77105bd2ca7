//! Print an SA's counters as `key=value` pairs (what `ipsec -y display` shows):
//! `xfrm-counters --dst 192.0.2.2 --spi 0x1001`.

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
    let c = h
        .state()
        .counters(SaId::new(cli.dst, Spi(cli.spi), cli.proto))
        .await?;
    println!(
        "bytes={} packets={} add_time={} use_time={} replay_window={} replay={} integrity_failed={} oseq={} seq={}",
        c.current.bytes,
        c.current.packets,
        c.current.add_time,
        c.current.use_time,
        c.stats.replay_window,
        c.stats.replay,
        c.stats.integrity_failed,
        c.replay.as_ref().map_or(0, |r| r.oseq),
        c.replay.as_ref().map_or(0, |r| r.seq),
    );
    Ok(())
}
