//! Print an SA's counters as `key=value` pairs (what `ipsec -y display` shows):
//! `xfrm-counters --dst 192.0.2.2 --spi 0x1001`.

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
    /// Read the replay/lifetime state with XFRM_MSG_GETAE instead (no keys cross).
    #[arg(long)]
    replay: bool,
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
    if cli.replay {
        let ae = h.state().async_event(cli.id()).await?;
        let cur = ae.current.unwrap_or_default();
        println!(
            "bytes={} packets={} oseq={} seq={} window={}",
            cur.bytes,
            cur.packets,
            ae.replay.as_ref().map_or(0, |r| r.oseq),
            ae.replay.as_ref().map_or(0, |r| r.seq),
            ae.replay.as_ref().map_or(0, |r| r.window),
        );
        return Ok(());
    }
    let c = h.state().counters(cli.id()).await?;
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
