//! Print the namespace's XFRM error counters (`/proc/net/xfrm_stat`), non-zero ones only
//! unless `--all`.

mod common;

use anyhow::Result;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    /// Print zero counters too.
    #[arg(long)]
    all: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let h = cli.ns.open()?;
    let s = h.xfrm_stat()?;
    for (name, v) in &s.entries {
        if cli.all || *v != 0 {
            println!("{name}={v}");
        }
    }
    println!(
        "inbound_errors={} outbound_errors={}",
        s.inbound_errors(),
        s.outbound_errors()
    );
    Ok(())
}
