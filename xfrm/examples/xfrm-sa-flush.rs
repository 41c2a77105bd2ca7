//! Delete all SAs (of one protocol): `xfrm-sa-flush [--proto esp]`.

mod common;

use anyhow::Result;
use clap::Parser;
use gatekey_xfrm::Proto;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    /// Only this protocol (default: every SA).
    #[arg(long, value_parser = common::parse_proto)]
    proto: Option<Proto>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    let mut req = h.state().flush();
    if let Some(p) = cli.proto {
        req = req.proto(p);
    }
    req.execute().await?;
    println!("SAs flushed");
    Ok(())
}
