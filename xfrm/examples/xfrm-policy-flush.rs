//! Delete all policies.

mod common;

use anyhow::Result;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    h.policy().flush().execute().await?;
    println!("policies flushed");
    Ok(())
}
