//! The running daemon: stacks, signals, refresh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::Cli;
use crate::conf::{self, Loaded, StackSetup};
use crate::net::{self, Datagram, StackSockets};
use crate::netns::Netns;

/// Counters kept over iked's whole life (NMI GET_SUMMARY): they survive a
/// stack's restart.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// IKE messages received.
    pub received: u64,
    /// IKE messages discarded as malformed or unauthenticated.
    pub invalid_messages: u64,
}

/// One running stack.
#[derive(Debug)]
pub struct Stack {
    /// Its configuration.
    pub setup: StackSetup,
    /// Its namespace.
    pub netns: Netns,
    /// Its IKE sockets.
    pub sockets: Arc<StackSockets>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Everything iked runs.
#[derive(Debug)]
pub struct Daemon {
    /// The configuration in force.
    pub loaded: Loaded,
    /// Running stacks by name.
    pub stacks: BTreeMap<String, Stack>,
    /// When iked started.
    pub started: SystemTime,
    /// Life-long counters.
    pub totals: Totals,
    inbound: mpsc::Sender<(String, Datagram)>,
}

/// What a refresh changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Stacks started.
    pub added: Vec<String>,
    /// Stacks stopped.
    pub removed: Vec<String>,
    /// Stacks whose configuration changed.
    pub changed: Vec<String>,
}

impl Daemon {
    /// Start every stack of `loaded`. A stack that cannot start (namespace
    /// missing, port taken) is logged and skipped; the others run.
    pub async fn start(loaded: Loaded, inbound: mpsc::Sender<(String, Datagram)>) -> Self {
        let mut d = Daemon {
            loaded: loaded.clone(),
            stacks: BTreeMap::new(),
            started: SystemTime::now(),
            totals: Totals::default(),
            inbound,
        };
        for setup in loaded.stacks {
            d.start_stack(setup);
        }
        d
    }

    fn start_stack(&mut self, setup: StackSetup) {
        let name = setup.name().to_owned();
        match open_stack(&setup, self.inbound.clone()) {
            Ok(stack) => {
                log_policy(&stack.setup);
                self.stacks.insert(name, stack);
            }
            Err(e) => {
                error!("EZD0916E Stack {name} cannot be started: {e:#}");
            }
        }
    }

    fn stop_stack(&mut self, name: &str) {
        if self.stacks.remove(name).is_some() {
            info!("EZD0917I Stack {name} stopped");
        }
    }

    /// Apply a new, valid configuration: stop removed stacks, start added
    /// ones, reopen sockets whose ports changed, replace changed policies.
    pub fn apply(&mut self, new: Loaded) -> RefreshOutcome {
        let mut out = RefreshOutcome::default();
        let old_names: Vec<String> = self.stacks.keys().cloned().collect();
        for name in &old_names {
            if new.stack(name).is_none() {
                self.stop_stack(name);
                out.removed.push(name.clone());
            }
        }
        for setup in &new.stacks {
            let name = setup.name().to_owned();
            match self.stacks.get_mut(&name) {
                None => {
                    self.start_stack(setup.clone());
                    out.added.push(name);
                }
                Some(running) if running.setup != *setup => {
                    let ports_changed = running.setup.conf.ike_port != setup.conf.ike_port
                        || running.setup.conf.natt_port != setup.conf.natt_port;
                    if ports_changed {
                        self.stop_stack(&name);
                        self.start_stack(setup.clone());
                    } else {
                        running.setup = setup.clone();
                        log_policy(&running.setup);
                    }
                    out.changed.push(name);
                }
                Some(_) => {}
            }
        }
        self.loaded = new;
        out
    }

    /// A datagram arrived on one of `stack`'s sockets.
    pub fn on_datagram(&mut self, stack: &str, d: Datagram) {
        self.totals.received += 1;
        let Some(s) = self.stacks.get(stack) else {
            return;
        };
        debug!(
            stack,
            local = %d.local,
            remote = %d.remote,
            len = d.data.len(),
            "IKE datagram received"
        );
        if s.setup.policy.get().is_none() {
            // No policy: this stack accepts no tunnel.
            self.totals.invalid_messages += 1;
        }
    }
}

fn open_stack(
    setup: &StackSetup,
    inbound: mpsc::Sender<(String, Datagram)>,
) -> anyhow::Result<Stack> {
    let name = setup.name().to_owned();
    let netns = Netns::for_stack(&name)?;
    let (sockets, notes) =
        net::open(&netns, setup.conf.ike_port, setup.conf.natt_port).map_err(|e| {
            anyhow::anyhow!(
                "cannot open UDP ports {} and {}: {e}",
                setup.conf.ike_port,
                setup.conf.natt_port
            )
        })?;
    for n in notes {
        warn!("EZD0919W Stack {name}: {n}");
    }
    let sockets = Arc::new(sockets);
    let mut tasks = Vec::new();
    for i in 0..sockets.sockets.len() {
        let socks = sockets.clone();
        let tx = inbound.clone();
        let stack = name.clone();
        tasks.push(tokio::spawn(async move {
            let Some(sock) = socks.sockets.get(i) else {
                return;
            };
            let mut buf = vec![0u8; net::MAX_DATAGRAM];
            loop {
                match sock.recv(&mut buf).await {
                    Ok(d) => {
                        if tx.send((stack.clone(), d)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!(
                            "EZD0919W Stack {stack}: receive on {} failed: {e}",
                            sock.bound()
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    let ports: Vec<String> = sockets
        .sockets
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s.bound().port(),
                if s.is_ipv6() { "IPv6" } else { "IPv4" }
            )
        })
        .collect();
    info!(
        "EZD0915I Stack {name} IKE listening on UDP {}",
        ports.join(" ")
    );
    Ok(Stack {
        setup: setup.clone(),
        netns,
        sockets,
        tasks,
    })
}

fn log_policy(setup: &StackSetup) {
    let name = setup.name();
    match &setup.policy {
        conf::Policy::Loaded(p) => info!(
            "EZD0918I Stack {name} policy {} in force: {} KeyExchangeRules, {} LocalDynVpnRules, {} IpManVpnActions",
            setup.conf.policy_file.display(),
            p.key_exchange_rules.len(),
            p.local_dyn_vpn_rules.len(),
            p.ip_man_vpn_actions.len()
        ),
        conf::Policy::Missing(f) => warn!(
            "EZD0919W Stack {name}: policy file {} does not exist; no tunnels will be negotiated",
            f.display()
        ),
    }
}

/// Run until SIGTERM or SIGINT.
pub async fn run(cli: Cli, loaded: Loaded) -> anyhow::Result<()> {
    info!(
        "EZD0967I IKE release gatekey {} starting: configuration {}, pid {}",
        env!("CARGO_PKG_VERSION"),
        loaded.path.display(),
        std::process::id()
    );
    for w in loaded.warnings() {
        warn!("EZD0919W {w}");
    }
    let path = loaded.path.clone();
    let (tx, mut rx) = mpsc::channel::<(String, Datagram)>(1024);
    let mut daemon = Daemon::start(loaded, tx).await;

    if !cli.keep_privileges {
        match crate::sys::drop_capabilities() {
            Ok(true) => info!(
                "EZD0920I IKE privileges reduced to {}",
                crate::sys::KEPT_CAPABILITIES.join(", ")
            ),
            Ok(false) => {}
            Err(e) => warn!("EZD0921W IKE could not drop privileges: {e}"),
        }
    }

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    info!(
        "EZD0911I IKE initialization complete: {} of {} stacks running",
        daemon.stacks.len(),
        daemon.loaded.stacks.len()
    );
    loop {
        tokio::select! {
            Some((stack, d)) = rx.recv() => daemon.on_datagram(&stack, d),
            _ = hup.recv() => refresh(&mut daemon, &path),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("EZD0923I IKE has received the STOP command");
    drop(daemon);
    info!("EZD0910I IKE daemon ending; IPsec policies stay in force (fail closed)");
    Ok(())
}

/// Re-read the configuration (SIGHUP, NMI). A configuration with any error
/// is rejected whole; the running one stays.
pub fn refresh(daemon: &mut Daemon, path: &std::path::Path) {
    info!("EZD0904I IKE refresh of {} requested", path.display());
    match conf::load(path) {
        Ok(new) => {
            for w in new.warnings() {
                warn!("EZD0919W {w}");
            }
            let o = daemon.apply(new);
            info!(
                "EZD0905I IKE refresh complete: stacks added [{}], removed [{}], changed [{}]",
                o.added.join(" "),
                o.removed.join(" "),
                o.changed.join(" ")
            );
        }
        Err(e) => {
            for line in &e.0 {
                error!("EZD0906E IKE refresh rejected: {line}");
            }
            error!(
                "EZD0906E IKE refresh rejected: {} error(s); the running configuration stays in force",
                e.0.len()
            );
        }
    }
}
