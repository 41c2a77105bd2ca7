//! List SAs, one line each: `xfrm-sa-dump [--proto esp]`.

mod common;

use anyhow::Result;
use clap::Parser;
use gatekey_xfrm::Proto;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    /// Only this protocol.
    #[arg(long, value_parser = common::parse_proto)]
    proto: Option<Proto>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    let mut req = h.state().dump();
    if let Some(p) = cli.proto {
        req = req.proto(p);
    }
    let sas = req.execute().await?;
    for sa in &sas {
        println!("{}", common::sa_line(sa));
    }
    println!("{} SAs", sas.len());
    Ok(())
}
