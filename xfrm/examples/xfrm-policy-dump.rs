//! List policies, one line each.

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
    let ps = h.policy().dump().execute().await?;
    for p in &ps {
        println!("{}", common::policy_line(p));
    }
    let info = h.policy().info().await?;
    println!(
        "{} policies (in {} out {} fwd {})",
        ps.len(),
        info.in_count,
        info.out_count,
        info.fwd_count
    );
    Ok(())
}
