//! Delete a policy by selector and direction: `xfrm-policy-delete --src P --dst P --dir out`.

mod common;

use anyhow::Result;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    #[command(flatten)]
    policy: common::PolicyArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    let p = cli.policy.build()?;
    h.policy().delete(p.id()).execute().await?;
    println!("policy deleted");
    Ok(())
}
