//! Add (or `--update`) a policy:
//! `xfrm-policy-add --src 10.1.0.0/16 --dst 10.2.0.0/16 --dir out --tmpl-proto esp --tmpl-src A --tmpl-dst B --reqid 1`.

mod common;

use anyhow::Result;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    #[command(flatten)]
    policy: common::PolicyArgs,
    /// Replace an existing policy.
    #[arg(long)]
    update: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    let p = cli.policy.build()?;
    if cli.update {
        h.policy().update(p).execute().await?;
    } else {
        h.policy().add(p).execute().await?;
    }
    println!("policy installed");
    Ok(())
}
