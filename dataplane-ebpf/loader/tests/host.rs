//! Privileged host tests with real traffic in fresh network namespaces:
//! protocols and fragments permitted and denied as configured with exact
//! counters, TCP connection direction, LOG events, set switches and set
//! replacement under traffic, dynamic filters and IpSec filters without an
//! SA, the one-shot command (enforcement after it exits, invalid and empty
//! profiles leave the rules in force).
#![expect(clippy::unwrap_used, reason = "test code")]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gatekey_config::filter::{FilterAction, FilterSet, Routing};
use gatekey_dataplane::Stack;
use gatekey_dataplane::compile::{Dir, DynamicFilter, SaMatch, compile};
use gatekey_dataplane::dataplane::{Dataplane, Options, RuleCounter, SetId};
use gatekey_dataplane::stack::{StackFilter, TrafficQuery};
use gatekey_dataplane::testnet::{VethPair, privileged};

fn opts() -> Options {
    Options {
        classes_per_slot: 1024,
        log_rate: 0,
        ..Options::default()
    }
}

fn profile(text: &str) -> FilterSet {
    gatekey_config::profile::parse("test.profile", text)
        .unwrap_or_else(|e| panic!("{e}"))
        .set
}

/// Packets counted on `name` in `set`/`dir`.
fn count(c: &[RuleCounter], set: SetId, dir: Dir, name: &str) -> u64 {
    c.iter()
        .filter(|r| r.set == set && r.dir == dir && r.name == name)
        .map(|r| r.packets)
        .sum()
}

/// Receive UDP datagrams on `addr` in `stack` until `expect` arrived or
/// nothing came for `quiet`; returns how many arrived.
fn udp_receiver(stack: Stack, addr: SocketAddr, ready: Arc<AtomicBool>) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        stack
            .run_in(move || {
                let s = UdpSocket::bind(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(400)))
                    .unwrap();
                ready.store(true, Ordering::SeqCst);
                let mut n = 0u64;
                let mut buf = [0u8; 65536];
                while s.recv(&mut buf).is_ok() {
                    n += 1;
                }
                n
            })
            .unwrap()
    })
}

fn wait_ready(r: &AtomicBool) {
    let t = Instant::now();
    while !r.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(5));
    }
}

fn send_udp(stack: &Stack, from_v6: bool, to: SocketAddr, n: usize, size: usize) {
    stack
        .run_in(move || {
            let s = UdpSocket::bind(if from_v6 { "[::]:0" } else { "0.0.0.0:0" }).unwrap();
            let data = vec![7u8; size];
            for _ in 0..n {
                s.send_to(&data, to).unwrap();
                thread::sleep(Duration::from_micros(200));
            }
        })
        .unwrap();
}

fn ping(stack: &Stack, dst: IpAddr, n: u32) -> bool {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            stack.name(),
            "ping",
            "-c",
            &n.to_string(),
            "-i",
            "0.2",
            "-W",
            "1",
        ])
        .arg(dst.to_string())
        .output()
        .unwrap();
    out.status.success()
}

const PROFILE: &str = "
IPSEC LOGENable LOGImplicit
; b serves TCP; connections may only come in
  IPSECRule * * LOG TCP DIRECtion INBConnect
; UDP to b's port 9000 (written from b's outbound view: b's source port)
  IPSECRule * * UDP SRCPort 9000 DESTport *
; ping b (requests in, replies out)
  IPSECRule * * ICMP TYPE 8 DIRECtion INBound
  IPSECRule * * ICMP TYPE 0 DIRECtion OUTBound
  IPSEC6Rule * * ICMPv6 TYPE 128 DIRECtion INBound
  IPSEC6Rule * * ICMPv6 TYPE 129 DIRECtion OUTBound
  IPSEC6Rule * * UDP SRCPort 9000 DESTport *
ENDIPSEC
";

#[test]
fn protocols_fragments_and_connections_are_filtered_as_configured() {
    if !privileged("protocols_fragments_and_connections_are_filtered_as_configured") {
        return;
    }
    let pair = VethPair::new("gkhost", 202).unwrap();
    let mut dp = Dataplane::open_with(pair.b.stack(), None, &opts()).unwrap();
    let set = profile(PROFILE);
    dp.install(SetId::Default, &compile(0, &set, &[], 1024).unwrap())
        .unwrap();
    dp.attach(Some(&["vb".into()]), &BTreeMap::new()).unwrap();

    // UDP: 9000 permitted, 9001 denied; IPv4 and IPv6; 3000-byte datagrams
    // are fragmented: the first fragment is classified with ports, the
    // others take its verdict.
    for (port, size, want) in [
        (9000u16, 100usize, 6u64),
        (9001, 100, 0),
        (9000, 3000, 4),
        (9001, 3000, 0),
    ] {
        for v6 in [false, true] {
            let dst: IpAddr = if v6 { pair.b6.into() } else { pair.b4.into() };
            let ready = Arc::new(AtomicBool::new(false));
            let rx = udp_receiver(
                pair.b.stack().clone(),
                SocketAddr::new(dst, port),
                ready.clone(),
            );
            wait_ready(&ready);
            send_udp(
                pair.a.stack(),
                v6,
                SocketAddr::new(dst, port),
                want.max(3) as usize,
                size,
            );
            let got = rx.join().unwrap();
            assert_eq!(got, want, "UDP port {port}, {size} bytes, IPv6 {v6}");
        }
    }
    let c = dp.counters().unwrap();
    // 6 + 4 datagrams of 1 and 3 packets (3000 bytes = 3 fragments) over
    // IPv4: 6 + 12 packets on SYSDEFAULTRULE.2 inbound.
    assert_eq!(
        count(&c, SetId::Default, Dir::In, "SYSDEFAULTRULE.2"),
        6 + 4 * 3
    );
    assert_eq!(
        count(&c, SetId::Default, Dir::In, "SYSDEFAULTRULE.7"),
        6 + 4 * 3
    );
    let stats = dp.stats().unwrap();
    assert!(
        stats.frag_hit >= 2 * 4 * 2,
        "later fragments took the first one's verdict: {stats:?}"
    );

    // ICMP and ICMPv6 echo.
    assert!(ping(pair.a.stack(), pair.b4.into(), 3));
    assert!(ping(pair.a.stack(), pair.b6.into(), 3));
    let c = dp.counters().unwrap();
    assert_eq!(count(&c, SetId::Default, Dir::In, "SYSDEFAULTRULE.3"), 3);
    assert_eq!(count(&c, SetId::Default, Dir::Out, "SYSDEFAULTRULE.4"), 3);
    assert_eq!(count(&c, SetId::Default, Dir::In, "SYSDEFAULTRULE.5"), 3);
    assert_eq!(count(&c, SetId::Default, Dir::Out, "SYSDEFAULTRULE.6"), 3);
    // Neighbour discovery passed as a stack-required exception.
    assert!(count(&c, SetId::Default, Dir::In, "SYSDEFAULTICMP") > 0);
    // b cannot ping a (its echo request goes out: no rule).
    let before = count(&c, SetId::Default, Dir::Out, "SYSDEFAULTDENYRULE");
    assert!(!ping(pair.b.stack(), pair.a4.into(), 1));
    let c = dp.counters().unwrap();
    // ping retries while its send fails (EPERM from the drop): at least one.
    assert!(count(&c, SetId::Default, Dir::Out, "SYSDEFAULTDENYRULE") > before);

    // TCP: a may connect to b (INBConnect), b may not connect to a.
    let b4 = pair.b4;
    let srv = thread::spawn({
        let stack = pair.b.stack().clone();
        move || {
            stack
                .run_in(move || {
                    let l = TcpListener::bind((b4, 7000)).unwrap();
                    let (_s, _) = l.accept().unwrap();
                })
                .unwrap()
        }
    });
    thread::sleep(Duration::from_millis(100));
    let ok = pair
        .a
        .stack()
        .run_in(move || {
            TcpStream::connect_timeout(&SocketAddr::from((b4, 7000)), Duration::from_secs(2))
                .is_ok()
        })
        .unwrap();
    assert!(ok, "an inbound connection is allowed");
    srv.join().unwrap();
    let a4 = pair.a4;
    let listener = thread::spawn({
        let stack = pair.a.stack().clone();
        move || {
            stack
                .run_in(move || {
                    let l = TcpListener::bind((a4, 7001)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    thread::sleep(Duration::from_millis(1500));
                    l.accept().is_ok()
                })
                .unwrap()
        }
    });
    thread::sleep(Duration::from_millis(100));
    let before = count(
        &dp.counters().unwrap(),
        SetId::Default,
        Dir::Out,
        "SYSDEFAULTDENYRULE",
    );
    let ok = pair
        .b
        .stack()
        .run_in(move || {
            TcpStream::connect_timeout(&SocketAddr::from((a4, 7001)), Duration::from_millis(700))
                .is_ok()
        })
        .unwrap();
    assert!(!ok, "an outbound connection is refused by INBConnect");
    assert!(!listener.join().unwrap());
    let c = dp.counters().unwrap();
    assert!(
        count(&c, SetId::Default, Dir::Out, "SYSDEFAULTDENYRULE") > before,
        "the SYN was dropped by the implicit deny"
    );
}

#[test]
fn log_events_arrive_with_rule_names_and_are_counted_when_lost() {
    if !privileged("log_events_arrive_with_rule_names_and_are_counted_when_lost") {
        return;
    }
    let pair = VethPair::new("gklog", 203).unwrap();
    let mut dp = Dataplane::open_with(pair.b.stack(), None, &opts()).unwrap();
    let set = profile(
        "IPSEC LOGENable LOGImplicit\n IPSECRule * * LOG UDP SRCPort 9000\n IPSECRule * * NOLOG UDP SRCPort 9002\nENDIPSEC\n",
    );
    dp.install(SetId::Default, &compile(0, &set, &[], 1024).unwrap())
        .unwrap();
    dp.attach(Some(&["vb".into()]), &BTreeMap::new()).unwrap();
    let mut reader = dp.log_reader().unwrap();
    let b = pair.b4;
    send_udp(pair.a.stack(), false, SocketAddr::from((b, 9000)), 3, 50);
    send_udp(pair.a.stack(), false, SocketAddr::from((b, 9002)), 2, 50);
    send_udp(pair.a.stack(), false, SocketAddr::from((b, 9001)), 2, 50);
    let mut got: Vec<gatekey_dataplane::logread::LogRecord> = Vec::new();
    let t = Instant::now();
    while got.iter().filter(|r| r.dir == Dir::In).count() < 5
        && t.elapsed() < Duration::from_secs(5)
    {
        got.extend(reader.poll(Duration::from_millis(200)).unwrap());
    }
    // Only inbound events: b answers the UDP to closed ports with ICMP
    // port-unreachable, which its outbound implicit deny drops (and logs).
    let texts: Vec<String> = got
        .iter()
        .filter(|r| r.dir == Dir::In)
        .map(|r| r.text())
        .collect();
    let permitted: Vec<_> = texts.iter().filter(|t| t.starts_with("EZD0814I")).collect();
    let denied: Vec<_> = texts.iter().filter(|t| t.starts_with("EZD0816I")).collect();
    assert_eq!(permitted.len(), 3, "{texts:#?}");
    assert_eq!(denied.len(), 2, "{texts:#?}");
    assert!(
        permitted[0].contains("filter rule= SYSDEFAULTRULE.1 ext= 1"),
        "{}",
        permitted[0]
    );
    assert!(permitted[0].contains(&format!("sipaddr= {} dipaddr= {b} proto= UDP(17)", pair.a4)));
    assert!(permitted[0].contains("dport= 9000 interface= vb (I)"));
    assert!(denied[0].contains("filter rule= SYSDEFAULTDENYRULE"));
    assert_eq!(reader.suppressed().unwrap(), None);

    // With a rate limit of 2 per second and a burst of 2, a burst of 20
    // logged packets yields about 2 events; the rest are counted.
    drop(reader);
    let mut dp2 = Dataplane::open_with(
        pair.b.stack(),
        None,
        &Options {
            classes_per_slot: 1024,
            log_rate: 2,
            log_burst: 2,
        },
    )
    .unwrap();
    dp2.install(SetId::Default, &compile(0, &set, &[], 1024).unwrap())
        .unwrap();
    drop(dp);
    dp2.attach(Some(&["vb".into()]), &BTreeMap::new()).unwrap();
    send_udp(pair.a.stack(), false, SocketAddr::from((b, 9000)), 20, 50);
    let stats = dp2.stats().unwrap();
    assert!(stats.log_emitted <= 4, "{stats:?}");
    assert!(stats.log_rate_limited >= 16, "{stats:?}");
    let mut reader = dp2.log_reader().unwrap();
    let (limited, _lost) = reader
        .suppressed()
        .unwrap()
        .expect("suppression is reported");
    assert!(limited >= 16);
}

#[test]
fn switching_and_replacing_sets_under_traffic_loses_no_permitted_packet() {
    if !privileged("switching_and_replacing_sets_under_traffic_loses_no_permitted_packet") {
        return;
    }
    let pair = VethPair::new("gksw", 204).unwrap();
    let dp = Dataplane::open_with(pair.b.stack(), None, &opts()).unwrap();
    let marker_root = std::env::temp_dir().join(format!("gk-marker-sw-{}", std::process::id()));
    let mut sf = StackFilter::with_dataplane(dp, &marker_root);
    // Both sets permit UDP 9000; only the default set permits 9005.
    sf.load_default(profile(
        "IPSEC\n IPSECRule * * UDP SRCPort 9000\n IPSECRule * * UDP SRCPort 9005\nENDIPSEC\n",
    ))
    .unwrap();
    let policy = gatekey_config::filter_policy::parse(
        "p.policy",
        "IpFilterPolicy { IpFilterRuleRef u }\nIpFilterRule u { IpService { Protocol udp SourcePortRange 9000 } IpGenericFilterActionRef p }\nIpGenericFilterAction p { IpFilterAction permit }\n",
    )
    .unwrap();
    let (_, active, _) = sf.load_policy(policy.set.clone()).unwrap();
    assert_eq!(active, SetId::Policy);
    sf.dataplane()
        .attach(Some(&["vb".into()]), &BTreeMap::new())
        .unwrap();

    // A steady flow to 9000 while the sets switch and are replaced.
    let ready = Arc::new(AtomicBool::new(false));
    let rx = udp_receiver(
        pair.b.stack().clone(),
        SocketAddr::from((pair.b4, 9000)),
        ready.clone(),
    );
    wait_ready(&ready);
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tx = {
        let (stack, sent, stop, b) = (pair.a.stack().clone(), sent.clone(), stop.clone(), pair.b4);
        thread::spawn(move || {
            stack
                .run_in(move || {
                    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                    while !stop.load(Ordering::SeqCst) {
                        s.send_to(b"x", (b, 9000)).unwrap();
                        sent.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_micros(100));
                    }
                })
                .unwrap()
        })
    };
    for i in 0..20 {
        sf.switch(if i % 2 == 0 {
            SetId::Default
        } else {
            SetId::Policy
        })
        .unwrap();
        thread::sleep(Duration::from_millis(20));
        sf.load_policy(policy.set.clone()).unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    tx.join().unwrap();
    let received = rx.join().unwrap();
    let sent = sent.load(Ordering::SeqCst);
    assert!(sent > 1000, "{sent}");
    assert_eq!(received, sent, "every packet of the permitted flow arrived");

    // The marker records the operator's last choice; reloading the policy
    // does not override `default`.
    sf.switch(SetId::Default).unwrap();
    let (_, active, _) = sf.load_policy(policy.set.clone()).unwrap();
    assert_eq!(active, SetId::Default);
    assert_eq!(
        gatekey_dataplane::marker::read(sf.marker_path()),
        Some(SetId::Default)
    );
    // 9005 is permitted only by the default set.
    let n = |port| {
        let ready = Arc::new(AtomicBool::new(false));
        let rx = udp_receiver(
            pair.b.stack().clone(),
            SocketAddr::from((pair.b4, port)),
            ready.clone(),
        );
        wait_ready(&ready);
        send_udp(
            pair.a.stack(),
            false,
            SocketAddr::from((pair.b4, port)),
            3,
            10,
        );
        rx.join().unwrap()
    };
    assert_eq!(n(9005), 3);
    sf.switch(SetId::Policy).unwrap();
    assert_eq!(n(9005), 0);
    assert_eq!(n(9000), 3);
    let _ = std::fs::remove_dir_all(&marker_root);
}

#[test]
fn dynamic_filters_go_before_their_anchor_and_ipsec_filters_drop_clear_traffic() {
    if !privileged("dynamic_filters_go_before_their_anchor_and_ipsec_filters_drop_clear_traffic") {
        return;
    }
    let pair = VethPair::new("gkdyn", 205).unwrap();
    let dp = Dataplane::open_with(pair.b.stack(), None, &opts()).unwrap();
    let marker_root = std::env::temp_dir().join(format!("gk-marker-dyn-{}", std::process::id()));
    let mut sf = StackFilter::with_dataplane(dp, &marker_root);
    let policy = gatekey_config::filter_policy::parse(
        "p.policy",
        &format!(
            "IpFilterPolicy {{ IpFilterRuleRef tunnel IpFilterRuleRef rest }}
IpFilterRule tunnel {{ IpSourceAddr {b} IpDestAddr {a} IpService {{ Protocol udp Routing either }}
  IpGenericFilterActionRef ipsec IpDynVpnActionRef d }}
IpFilterRule rest {{ IpService {{ Protocol udp SourcePortRange 9100 }} IpGenericFilterActionRef permit }}
IpGenericFilterAction ipsec {{ IpFilterAction ipsec IpFilterLogging yes }}
IpGenericFilterAction permit {{ IpFilterAction permit }}
IpDynVpnAction d {{ }}
",
            a = pair.a4,
            b = pair.b4
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    sf.load_policy(policy.set).unwrap();
    sf.dataplane()
        .attach(Some(&["vb".into()]), &BTreeMap::new())
        .unwrap();

    let mut dynf = gatekey_config::filter::FilterRule::permit_all(
        "tunnel",
        gatekey_config::filter::Family::V4,
    );
    dynf.src = vec![gatekey_config::filter::AddrRange::host(pair.b4.into())];
    dynf.dst = vec![gatekey_config::filter::AddrRange::host(pair.a4.into())];
    dynf.protocol = Some(17);
    dynf.routing = Routing::Either;
    dynf.action = FilterAction::IpSec {
        vpn_action: "d".into(),
        manual: false,
    };
    let id = sf
        .add_dynamic(DynamicFilter {
            anchor: "tunnel".into(),
            rule: dynf,
            sa: SaMatch {
                reqid: 7,
                spi: Some(0x1001),
            },
        })
        .unwrap();
    // The traffic test shows the dynamic filter first, then its anchor.
    let t = sf
        .traffic_test(
            None,
            &TrafficQuery {
                src: pair.a4.into(),
                dst: pair.b4.into(),
                protocol: 17,
                sport: None,
                dport: Some(9100),
                dir: Dir::In,
                secclass: 0,
                routed: false,
            },
        )
        .unwrap();
    let names: Vec<_> = t
        .matches
        .iter()
        .map(|m| (m.name.as_str(), m.action))
        .collect();
    assert_eq!(
        names,
        [("tunnel", "IpSec"), ("tunnel", "IpSec"), ("rest", "Permit")]
    );
    assert_eq!(t.matches[0].kind, gatekey_dataplane::compile::Kind::Dynamic);
    assert_eq!(t.matches[1].kind, gatekey_dataplane::compile::Kind::Anchor);

    // Clear UDP from a is not protected by SA reqid 7: dropped on the
    // dynamic filter, counted as an SA drop.
    let deliver = |port| {
        let ready = Arc::new(AtomicBool::new(false));
        let rx = udp_receiver(
            pair.b.stack().clone(),
            SocketAddr::from((pair.b4, port)),
            ready.clone(),
        );
        wait_ready(&ready);
        send_udp(
            pair.a.stack(),
            false,
            SocketAddr::from((pair.b4, port)),
            4,
            10,
        );
        rx.join().unwrap()
    };
    assert_eq!(deliver(9100), 0);
    let c = sf.counters().unwrap();
    let dynamic: Vec<&RuleCounter> = c
        .iter()
        .filter(|r| r.set == SetId::Policy && r.dir == Dir::In && r.name == "tunnel")
        .collect();
    assert_eq!(dynamic.len(), 2);
    assert_eq!(
        (dynamic[0].packets, dynamic[0].sa_drops),
        (4, 4),
        "{dynamic:?}"
    );
    assert_eq!(dynamic[1].packets, 0);
    // Without the dynamic filter the anchor drops the same flow.
    assert!(sf.remove_dynamic(id).unwrap());
    assert_eq!(deliver(9100), 0);
    let c = sf.counters().unwrap();
    let anchor: Vec<&RuleCounter> = c
        .iter()
        .filter(|r| r.set == SetId::Policy && r.dir == Dir::In && r.name == "tunnel")
        .collect();
    assert_eq!(anchor.len(), 1);
    assert_eq!((anchor[0].packets, anchor[0].sa_drops), (4, 4));
    let _ = std::fs::remove_dir_all(&marker_root);
}

/// Runs `gatekey-filter` and returns (success, stdout, stderr).
fn gatekey_filter(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatekey-filter"))
        .args(args)
        .env("IKED_FILE", "/nonexistent/iked.conf")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Unload(String);

impl Drop for Unload {
    fn drop(&mut self) {
        let _ = gatekey_filter(&["--stack", &self.0, "unload"]);
    }
}

#[test]
fn the_one_shot_command_pins_enforcement_and_keeps_it_on_bad_input() {
    if !privileged("the_one_shot_command_pins_enforcement_and_keeps_it_on_bad_input") {
        return;
    }
    let pair = VethPair::new("gkcli", 206).unwrap();
    let stack = pair.b.name().to_owned();
    let _cleanup = Unload(stack.clone());
    let dir = std::env::temp_dir().join(format!("gk-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good: PathBuf = dir.join("good.profile");
    std::fs::write(&good, "IPSEC\n IPSECRule * * UDP SRCPort 9000\nENDIPSEC\n").unwrap();
    let (ok, out, err) = gatekey_filter(&[
        "--stack",
        &stack,
        "load",
        "--profile",
        good.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("EZD0824I Filter set default loaded"), "{out}");
    assert!(
        out.contains("EZD0826I Filter attached to vb: in, out"),
        "{out}"
    );
    assert!(
        Stack::new(&stack)
            .unwrap()
            .pin_dir()
            .join("GK_TABLES")
            .exists()
    );

    // The command has exited; the filter still enforces.
    let deliver = |port| {
        let ready = Arc::new(AtomicBool::new(false));
        let rx = udp_receiver(
            pair.b.stack().clone(),
            SocketAddr::from((pair.b4, port)),
            ready.clone(),
        );
        wait_ready(&ready);
        send_udp(
            pair.a.stack(),
            false,
            SocketAddr::from((pair.b4, port)),
            3,
            10,
        );
        rx.join().unwrap()
    };
    assert_eq!(deliver(9000), 3);
    assert_eq!(deliver(9001), 0);

    // An invalid profile: a located error, and the rules stay.
    let bad = dir.join("bad.profile");
    std::fs::write(&bad, "IPSEC\n IPSECRule * * UDP SRCPort 99999\nENDIPSEC\n").unwrap();
    let (ok, _, err) = gatekey_filter(&[
        "--stack",
        &stack,
        "load",
        "--profile",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{}:2:28: SRCPort must be a whole number from 0 to 65535",
            bad.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("EZD0827E") && err.contains("the rules in force are unchanged"),
        "{err}"
    );
    assert_eq!(deliver(9000), 3);
    assert_eq!(deliver(9001), 0);
    // An empty profile likewise.
    let empty = dir.join("empty.profile");
    std::fs::write(&empty, "; nothing here\n").unwrap();
    let (ok, _, err) = gatekey_filter(&[
        "--stack",
        &stack,
        "load",
        "--profile",
        empty.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("no IPSEC … ENDIPSEC block found"), "{err}");
    assert_eq!(deliver(9000), 3);

    // Re-running with a new profile updates the rules in place.
    let next = dir.join("next.profile");
    std::fs::write(&next, "IPSEC\n IPSECRule * * UDP SRCPort 9001\nENDIPSEC\n").unwrap();
    let (ok, out, err) = gatekey_filter(&[
        "--stack",
        &stack,
        "load",
        "--profile",
        next.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("in (updated), out (updated)"), "{out}");
    assert_eq!(deliver(9000), 0);
    assert_eq!(deliver(9001), 3);

    // show: counters by filter; switch to a set never loaded is refused.
    let (ok, out, _) = gatekey_filter(&["--stack", &stack, "show", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["active_set"], "default");
    let rule1 = v["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "SYSDEFAULTRULE.1" && f["direction"] == "Inbound")
        .unwrap();
    assert_eq!(rule1["packets"], 3);
    let (ok, _, err) = gatekey_filter(&["--stack", &stack, "switch", "policy"]);
    assert!(!ok);
    assert!(
        err.contains("the policy filter set has not been loaded"),
        "{err}"
    );

    // The traffic test.
    let (ok, out, _) = gatekey_filter(&[
        "--stack",
        &stack,
        "test",
        "--profile",
        next.to_str().unwrap(),
        "10.1.1.1",
        "10.1.1.2",
        "udp",
        "53",
        "9001",
        "in",
    ]);
    assert!(ok);
    assert!(out.contains("* FilterName: SYSDEFAULTRULE.1"), "{out}");
    assert!(out.contains("1 entries selected; result: permit"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn watch_attaches_the_filter_to_interfaces_that_appear_later() {
    if !privileged("watch_attaches_the_filter_to_interfaces_that_appear_later") {
        return;
    }
    let pair = VethPair::new("gkwatch", 207).unwrap();
    let stack = pair.b.name().to_owned();
    let _cleanup = Unload(stack.clone());
    let dir = std::env::temp_dir().join(format!("gk-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prof = dir.join("p.profile");
    std::fs::write(&prof, "IPSEC\n IPSECRule * * UDP SRCPort 9000\nENDIPSEC\n").unwrap();
    let (ok, out, err) = gatekey_filter(&[
        "--stack",
        &stack,
        "load",
        "--profile",
        prof.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_gatekey-filter"))
        .args(["--stack", &stack, "watch", "--interval", "1"])
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(500));
    // A second link between the namespaces, after the filter was loaded.
    gatekey_dataplane::testnet::ip(&[
        "link",
        "add",
        "va2",
        "netns",
        pair.a.name(),
        "type",
        "veth",
        "peer",
        "name",
        "vb2",
        "netns",
        &stack,
    ])
    .unwrap();
    pair.a
        .ip(&["addr", "add", "10.207.1.1/24", "dev", "va2"])
        .unwrap();
    pair.b
        .ip(&["addr", "add", "10.207.1.2/24", "dev", "vb2"])
        .unwrap();
    pair.a.ip(&["link", "set", "va2", "up"]).unwrap();
    pair.b.ip(&["link", "set", "vb2", "up"]).unwrap();
    let b2: IpAddr = "10.207.1.2".parse().unwrap();
    // Wait until the watcher has attached (bounded), then check filtering.
    let deadline = Instant::now() + Duration::from_secs(30);
    let deliver = |port| {
        let ready = Arc::new(AtomicBool::new(false));
        let rx = udp_receiver(
            pair.b.stack().clone(),
            SocketAddr::new(b2, port),
            ready.clone(),
        );
        wait_ready(&ready);
        send_udp(pair.a.stack(), false, SocketAddr::new(b2, port), 3, 10);
        rx.join().unwrap()
    };
    let mut denied = deliver(9001);
    while denied != 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(300));
        denied = deliver(9001);
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(denied, 0, "the new interface is filtered");
    assert_eq!(deliver(9000), 3, "and permitted traffic passes");
    let _ = std::fs::remove_dir_all(&dir);
}
