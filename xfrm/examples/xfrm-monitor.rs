//! Print XFRM events, one line each, until `--count` events or `--timeout` seconds:
//! `xfrm-monitor [--groups ike|all] [--count N] [--timeout S]`.

mod common;

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use gatekey_xfrm::{Event, EventGroups};

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    ns: common::NetnsArg,
    /// Groups: ike (acquire, expire, mapping) or all.
    #[arg(long, default_value = "ike")]
    groups: String,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<usize>,
    /// Exit (status 0) after this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
}

fn line(e: &Event) -> String {
    match e {
        Event::Expire { sa, hard } => format!(
            "expire {} {} bytes {} packets {} {}",
            if *hard { "hard" } else { "soft" },
            sa.sa.id().spi,
            sa.current.bytes,
            sa.current.packets,
            common::sa_line(sa)
        ),
        Event::Acquire(a) => format!(
            "acquire seq {} proto {} src {} dst {} sel {} policy-index {} dir {:?} templates {}",
            a.seq,
            a.proto,
            a.src,
            a.dst,
            a.selector,
            a.policy.policy.index,
            a.policy.policy.dir,
            a.policy.policy.templates.len()
        ),
        Event::PolicyExpire { policy, hard } => {
            format!("polexpire hard={hard} {}", common::policy_line(policy))
        }
        Event::Mapping(m) => format!(
            "mapping spi {} reqid {} old {} new {}",
            m.sa.spi, m.reqid, m.old, m.new
        ),
        Event::SaAdded(s) => format!("sa-added {}", common::sa_line(s)),
        Event::SaUpdated(s) => format!("sa-updated {}", common::sa_line(s)),
        Event::SaDeleted(s) => format!("sa-deleted {}", common::sa_line(s)),
        Event::SaFlushed(p) => format!("sa-flushed {p}"),
        Event::PolicyAdded(p) => format!("policy-added {}", common::policy_line(p)),
        Event::PolicyUpdated(p) => format!("policy-updated {}", common::policy_line(p)),
        Event::PolicyDeleted(p) => format!("policy-deleted {}", common::policy_line(p)),
        Event::PolicyFlushed => "policy-flushed".into(),
        Event::AsyncEvent(a) => format!("aevent spi {} flags {:#x}", a.sa.spi, a.flags),
        other => format!("{other:?}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let groups = match cli.groups.as_str() {
        "ike" => EventGroups::IKE,
        "all" => EventGroups::ALL,
        g => bail!("unknown group set {g} (ike, all)"),
    };
    let h = cli.ns.open()?;
    let mut ev = h.events(groups)?;
    println!("monitoring");
    let deadline = cli
        .timeout
        .map(|t| tokio::time::Instant::now() + Duration::from_secs_f64(t));
    let mut n = 0;
    loop {
        let next = ev.next();
        let e = match deadline {
            Some(d) => match tokio::time::timeout_at(d, next).await {
                Ok(e) => e,
                Err(_) => {
                    println!("timeout after {n} events");
                    return Ok(());
                }
            },
            None => next.await,
        };
        match e {
            Ok(e) => println!("{}", line(&e)),
            Err(e) => println!("error {e}"),
        }
        n += 1;
        if cli.count.is_some_and(|c| n >= c) {
            return Ok(());
        }
    }
}
