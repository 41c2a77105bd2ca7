//! Host tests: iked running in a fresh network namespace per test.
//!
//! They need root (namespaces, XFRM policies, binding UDP 500). The host
//! kernel has XFRM policies but no ESP SAs, so tests that would install an
//! ESP SA use the recording kernel backend (`--kernel recording`); the
//! fail-closed policies use the real kernel.

#![expect(clippy::unwrap_used, reason = "test code: a failure is a test failure")]

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gatekey_nmi::records::{Selection, TunnelControl, TunnelRef, TunnelStatus};
use gatekey_nmi::{Client, Request, Response, ReturnCode, Target};

mod common;

use common::*;

/// A fresh network namespace with a veth pair whose gk0 carries 192.0.2.1/24
/// and 10.1.0.1/16, and a route to 10.2.0.0/16 through it.
impl Ns {
    pub fn new(tag: &str) -> Ns {
        let name = format!("ikedt-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "-n", &name, "link", "add", "gk0", "type", "veth", "peer", "name", "gk1",
        ]);
        sh(&["ip", "-n", &name, "link", "set", "gk1", "up"]);
        sh(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            "192.0.2.1/24",
            "dev",
            "gk0",
        ]);
        sh(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            "10.1.0.1/16",
            "dev",
            "gk0",
        ]);
        sh(&["ip", "-n", &name, "link", "set", "gk0", "up"]);
        sh(&[
            "ip",
            "-n",
            &name,
            "route",
            "add",
            "10.2.0.0/16",
            "via",
            "192.0.2.2",
        ]);
        Ns(name)
    }

    fn xfrm_policies(&self) -> Vec<String> {
        let out = sh(&["ip", "-n", &self.0, "xfrm", "policy", "list"]);
        out.split("src ")
            .filter(|p| p.contains("reqid") && !p.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }
}

const POLICY: &str = r#"
KeyExchangeRule gw2 {
  RemoteSecurityEndpoint { Location 192.0.2.2 }
  KeyExchangeAction { }
  SharedKey Ascii "host test key"
}
LocalDynVpnRule net1-net2 {
  IpSourceAddr 10.1.0.0/16
  IpDestAddr 10.2.0.0/16
  RemoteSecurityEndpoint 192.0.2.2
  IpDynVpnAction { }
}
IpManVpnAction man1 {
  Active No
  LocalSecurityEndpoint 192.0.2.1
  RemoteSecurityEndpoint 192.0.2.3
  IpDestAddr 10.3.0.0/16
  HowToEncrypt AES_GCM_16 KeyLength 128
  InboundSpi 4096
  OutboundSpi 8192
  InboundEncryptionKey 000102030405060708090a0b0c0d0e0f10111213
  OutboundEncryptionKey 101112131415161718191a1b1c1d1e1f20212223
}
"#;

fn write_conf(dir: &Path, ns: &Ns, policy: &str) {
    std::fs::write(
        dir.join("iked.conf"),
        format!("IkeConfig {{ SafDatabase iked.saf SystemName GWT }}\nStackConfig {} {{ PolicyFile p.conf }}\n", ns.0),
    )
    .unwrap();
    std::fs::write(dir.join("p.conf"), policy).unwrap();
}

fn manual(c: &mut Client, t: &Target) -> Vec<gatekey_nmi::records::IpTunnelRecord> {
    match c
        .call(Some(t), &Request::GetIpTunManual(Selection::default()))
        .unwrap()
        .response
    {
        Response::IpTunnels(l) => l.records,
        other => panic!("{other:?}"),
    }
}

/// Run as uid/gid 65534: the test binary re-executes itself in client mode.
fn call_as_nobody(sock: &Path, target: &str, control: bool) -> String {
    // A copy in the temporary directory: the build directory may not be
    // reachable for uid 65534 (e.g. a checkout under /root).
    let exe = std::env::temp_dir().join(format!("iked-host-nobody-{}", std::process::id()));
    if !exe.exists() {
        std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(&exe)
        .args([
            "--exact",
            "nobody_client",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "IKED_TEST_CLIENT",
            format!("{}|{target}|{control}", sock.display()),
        )
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.lines()
        .find_map(|l| l.find("RESULT ").map(|i| l[i..].trim().to_owned()))
        .unwrap_or_else(|| {
            panic!(
                "client printed no result: {s}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Client mode for [`call_as_nobody`]; does nothing in a normal run.
#[test]
fn nobody_client() {
    let Ok(spec) = std::env::var("IKED_TEST_CLIENT") else {
        return;
    };
    let mut parts = spec.split('|');
    let (sock, target, control) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap() == "true",
    );
    let mut c = match Client::connect(sock) {
        Ok(c) => c,
        Err(e) => {
            println!("RESULT connect-failed {e}");
            return;
        }
    };
    let t = Target::new(target).unwrap();
    let req = if control {
        Request::ActIpTunManual(TunnelControl {
            tunnels: vec![TunnelRef {
                name: Some("man1".into()),
                ..TunnelRef::default()
            }],
        })
    } else {
        Request::GetStackInfo
    };
    match c.call(Some(&t), &req) {
        Ok(_) => println!("RESULT ok"),
        Err(gatekey_nmi::Error::Failed { rc, .. }) => println!("RESULT rc={}", rc.0),
        Err(e) => println!("RESULT error {e}"),
    }
}

#[test]
fn nmi_manual_tunnels_and_authorization() {
    require_root!();
    let ns = Ns::new("nmi");
    let dir = tempdir("nmi");
    write_conf(&dir, &ns, POLICY);
    let iked = Iked::start(&dir, &["--kernel", "recording", "--nmi-group", "nogroup"]);
    let sock = dir.join("ipsecmgmt");
    let mut c = Client::connect(&sock).unwrap();
    assert_eq!(c.server_info().system_name, "GWT");
    let t = Target::new(&ns.0).unwrap();

    // Stack info, by name and blank (iked runs one stack).
    let r = c.call(None, &Request::GetStackInfo).unwrap();
    match r.response {
        Response::StackInfo(l) => {
            assert_eq!(l.records.len(), 1);
            assert_eq!(l.records[0].stack_name, ns.0);
            assert!(l.records[0].ike_listening && l.records[0].policy_available);
        }
        other => panic!("{other:?}"),
    }
    let r = c
        .call(None, &Request::GetIpTunManual(Selection::default()))
        .unwrap();
    assert_eq!(
        r.target().map(|t| t.as_str().to_owned()),
        Some(ns.0.clone())
    );

    // Unknown stack: ENXIO.
    let e = c
        .call(
            Some(&Target::new("nosuchstack").unwrap()),
            &Request::GetStackInfo,
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            gatekey_nmi::Error::Failed {
                rc: ReturnCode::ENXIO,
                ..
            }
        ),
        "{e}"
    );

    // Manual tunnel: inactive, activate, already active, display, deactivate by ID.
    let m = manual(&mut c, &t);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].tunnel_id.as_str(), m[0].state.display()),
        ("M1", "Inactive")
    );
    let by_name = TunnelRef {
        name: Some("man1".into()),
        ..TunnelRef::default()
    };
    assert_eq!(
        control(&mut c, &t, Request::ActIpTunManual, by_name.clone()),
        TunnelStatus::StateUpdated
    );
    assert_eq!(
        control(&mut c, &t, Request::ActIpTunManual, by_name.clone()),
        TunnelStatus::StateAlreadySet
    );
    let m = manual(&mut c, &t);
    assert_eq!(m[0].state.display(), "Active");
    assert_eq!(m[0].encrypt_inbound_spi, Some(4096));
    assert_eq!(m[0].how_to_encrypt.as_deref(), Some("AES_GCM_16"));
    assert!(iked.log().contains("EZD0927I"));
    let by_id = TunnelRef {
        tunnel_id: Some("M1".into()),
        ..TunnelRef::default()
    };
    assert_eq!(
        control(&mut c, &t, Request::DeactIpTunManual, by_id),
        TunnelStatus::StateUpdated
    );
    assert_eq!(manual(&mut c, &t)[0].state.display(), "Inactive");
    let nope = TunnelRef {
        name: Some("nope".into()),
        ..TunnelRef::default()
    };
    assert_eq!(
        control(&mut c, &t, Request::ActIpTunManual, nope.clone()),
        TunnelStatus::NotFound
    );
    assert_eq!(
        control(&mut c, &t, Request::ActIpTunDyn, nope),
        TunnelStatus::NotFound
    );

    // Authorization: without profiles only root; nobody gets EACCES (13).
    assert_eq!(call_as_nobody(&sock, &ns.0, false), "RESULT rc=13");
    assert!(iked.log().contains("EZD0930W"));
    // A profile permits DISPLAY to everyone; CONTROL stays refused.
    std::fs::write(
        dir.join("iked.saf"),
        "Profile EZB.IPSECCMD.GWT.*.DISPLAY { Permit * }\nProfile EZB.IPSECCMD.GWT.*.CONTROL { Uacc None }\n",
    )
    .unwrap();
    iked.signal("HUP");
    iked.wait_log("EZD0905I");
    assert_eq!(call_as_nobody(&sock, &ns.0, false), "RESULT ok");
    assert_eq!(call_as_nobody(&sock, &ns.0, true), "RESULT rc=13");
    let _ = std::fs::remove_file(
        std::env::temp_dir().join(format!("iked-host-nobody-{}", std::process::id())),
    );

    // A refresh with an error is rejected whole; the running configuration stays.
    std::fs::write(
        dir.join("p.conf"),
        "LocalDynVpnRule broken { IpSourceAddr 10.1.0.0/33 }\n",
    )
    .unwrap();
    iked.signal("HUP");
    let log = iked.wait_log("EZD0906E");
    assert!(
        log.contains("p.conf:1:39: IpSourceAddr: prefix length must be 0 to 32"),
        "{log}"
    );
    assert_eq!(manual(&mut c, &t).len(), 1);
}

#[test]
fn fail_closed_policies_survive_kill_and_are_adopted_on_restart() {
    require_root!();
    let ns = Ns::new("fc");
    let dir = tempdir("fc");
    let policy: String = POLICY.split("IpManVpnAction").next().unwrap().to_owned();
    write_conf(&dir, &ns, &policy);
    let iked = Iked::start(&dir, &[]);
    let log = iked.log();
    assert!(log.contains("0 policies adopted, 3 installed"), "{log}");
    assert_eq!(ns.xfrm_policies().len(), 3, "{:?}", ns.xfrm_policies());

    // Traffic the rule protects is dropped (no SA) and reported (ACQUIRE).
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "ping", "-c", "1", "-W", "1", "-I", "10.1.0.1", "10.2.0.9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    iked.wait_log("EZD0931I");

    // kill -9: the policies stay; a new iked adopts them, no duplicates.
    iked.kill9();
    assert_eq!(ns.xfrm_policies().len(), 3);
    let iked = Iked::start(&dir, &[]);
    let log = iked.log();
    assert!(
        log.contains("3 policies adopted, 0 installed, 0 removed"),
        "{log}"
    );
    assert_eq!(ns.xfrm_policies().len(), 3);

    // A refresh that removes the rule removes its policies; others' policies are untouched.
    sh(&[
        "ip",
        "-n",
        &ns.0,
        "xfrm",
        "policy",
        "add",
        "src",
        "10.9.0.0/16",
        "dst",
        "10.8.0.0/16",
        "dir",
        "out",
        "action",
        "block",
    ]);
    std::fs::write(dir.join("p.conf"), "# no rules\n").unwrap();
    iked.signal("HUP");
    let log = iked.wait_log("EZD0905I");
    assert!(log.contains("3 removed"), "{log}");
    assert!(ns.xfrm_policies().is_empty());
    let all = sh(&["ip", "-n", &ns.0, "xfrm", "policy", "list"]);
    assert!(all.contains("10.9.0.0/16"), "{all}");

    // SIGTERM: orderly stop; the NMI socket is removed.
    iked.signal("TERM");
    iked.wait_log("EZD0910I");
    let t0 = Instant::now();
    while dir.join("ipsecmgmt").exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!dir.join("ipsecmgmt").exists());
}

/// moon (namespace a, 192.0.2.1) and sun (namespace b, 192.0.2.2), each
/// with an iked (recording kernel; sun started first), its directory and an
/// NMI client. Destructure with `_pair` first: it is dropped last.
struct Gateways {
    _pair: Pair,
    moon: Iked,
    sun: Iked,
    ca: Client,
    cb: Client,
    ta: Target,
    tb: Target,
    da: std::path::PathBuf,
    db: std::path::PathBuf,
}

fn gateways(tag: &str, moon_policy: &str, sun_policy: &str) -> Gateways {
    let pair = Pair::new(tag);
    let (da, db) = (tempdir(&format!("{tag}a")), tempdir(&format!("{tag}b")));
    write_conf(&da, &pair.0, moon_policy);
    write_conf(&db, &pair.1, sun_policy);
    let sun = Iked::start(&db, &["--kernel", "recording"]);
    let moon = Iked::start(&da, &["--kernel", "recording"]);
    let (ta, tb) = (
        Target::new(&pair.0.0).unwrap(),
        Target::new(&pair.1.0).unwrap(),
    );
    let ca = Client::connect(da.join("ipsecmgmt")).unwrap();
    let cb = Client::connect(db.join("ipsecmgmt")).unwrap();
    Gateways {
        _pair: pair,
        moon,
        sun,
        ca,
        cb,
        ta,
        tb,
        da,
        db,
    }
}

fn gw_policy(me: &str, peer: &str, mine: &str, theirs: &str, auto: bool) -> String {
    format!(
        r#"
KeyExchangeRule to-peer {{
  LocalSecurityEndpoint {{ Identity IpAddr {me} Location {me} }}
  RemoteSecurityEndpoint {{ Identity IpAddr {peer} Location {peer} }}
  KeyExchangeAction {{ KeyExchangeOffer {{ HowToEncrypt AES_GCM_16 KeyLength 256 DHGroup Group31 }} }}
  SharedKey Ascii "a long host test pre-shared key"
}}
LocalDynVpnRule net {{
  IpSourceAddr {mine}
  IpDestAddr {theirs}
  LocalSecurityEndpoint {me}
  RemoteSecurityEndpoint {peer}
  IpDynVpnAction {{ IpDataOffer {{ HowToEncrypt AES_GCM_16 KeyLength 256 }} }}
  AutoActivate {}
}}
"#,
        if auto { "Yes" } else { "No" }
    )
}

#[test]
fn ikev2_psk_between_two_iked_instances() {
    require_root!();
    // sun (responder) first; moon activates by itself (AutoActivate).
    let Gateways {
        _pair,
        moon,
        sun,
        mut ca,
        mut cb,
        ta,
        tb,
        da,
        db,
    } = gateways(
        "ike",
        &gw_policy("192.0.2.1", "192.0.2.2", "10.1.0.0/24", "10.2.0.0/24", true),
        &gw_policy(
            "192.0.2.2",
            "192.0.2.1",
            "10.2.0.0/24",
            "10.1.0.0/24",
            false,
        ),
    );

    let ya = wait_for("moon's dynamic tunnel", || {
        dyn_tunnels(&mut ca, &ta).into_iter().next()
    });
    let yb = wait_for("sun's dynamic tunnel", || {
        dyn_tunnels(&mut cb, &tb).into_iter().next()
    });
    assert_eq!((ya.tunnel_id.as_str(), ya.generation), ("Y1", 1));
    assert_eq!(ya.state.display(), "Active");
    assert_eq!(ya.activation.map(|a| a.display()), Some("Auto"));
    assert_eq!(yb.activation.map(|a| a.display()), Some("Remote"));
    assert_eq!(ya.how_to_encrypt.as_deref(), Some("AES_GCM_16"));
    assert_eq!(ya.encrypt_key_length, Some(256));
    // Each side's inbound SPI is the other's outbound SPI.
    assert_eq!(ya.encrypt_inbound_spi, yb.encrypt_outbound_spi);
    assert_eq!(ya.encrypt_outbound_spi, yb.encrypt_inbound_spi);
    assert_eq!(ya.parent_ike_tunnel_id.as_deref(), Some("K1"));

    let ka = ike_tunnels(&mut ca, &ta);
    assert_eq!(ka.len(), 1);
    assert_eq!(
        (
            ka[0].tunnel_id.as_str(),
            ka[0].state.display(),
            ka[0].role.display()
        ),
        ("K1", "DONE", "Initiator")
    );
    assert_eq!(ka[0].remote_id.as_deref(), Some("192.0.2.2"));
    assert_eq!(
        ka[0].remote_id_type.map(|t| t.display()),
        Some("ID_IPV4_ADDR")
    );
    assert_eq!(ka[0].local_id.as_deref(), Some("192.0.2.1"));
    assert_eq!(
        ka[0].local_authentication_method.as_deref(),
        Some("PresharedKey")
    );
    let kb = ike_tunnels(&mut cb, &tb);
    assert_eq!(
        (kb[0].role.display(), kb[0].initiator_spi),
        ("Responder", ka[0].initiator_spi)
    );
    assert!(
        moon.log().contains("EZD0935I") && moon.log().contains("EZD0939I"),
        "{}",
        moon.log()
    );
    assert!(sun.log().contains("EZD0939I"), "{}", sun.log());

    // Refresh (rekey) the child from sun: generation 2 on both sides, same Y.
    let r = control(
        &mut cb,
        &tb,
        Request::RefreshIpTunDyn,
        TunnelRef {
            tunnel_id: Some("Y1".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(r, TunnelStatus::StateUpdated);
    let ya2 = wait_for("the rekeyed child on moon", || {
        dyn_tunnels(&mut ca, &ta)
            .into_iter()
            .find(|y| y.generation == 2)
    });
    assert_eq!(ya2.tunnel_id, "Y1");
    assert_ne!(ya2.encrypt_inbound_spi, ya.encrypt_inbound_spi);
    wait_for("the old child deleted on moon", || {
        (dyn_tunnels(&mut ca, &ta).len() == 1).then_some(())
    });

    // Deactivate from moon: both sides lose the child; the IKE SA stays.
    let r = control(
        &mut ca,
        &ta,
        Request::DeactIpTunDyn,
        TunnelRef {
            name: Some("net".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(r, TunnelStatus::StateUpdated);
    wait_for("sun's child gone", || {
        dyn_tunnels(&mut cb, &tb).is_empty().then_some(())
    });
    assert_eq!(ike_tunnels(&mut cb, &tb).len(), 1);

    // Command-line activation brings it back.
    let r = control(
        &mut ca,
        &ta,
        Request::ActIpTunDyn,
        TunnelRef {
            name: Some("net".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(r, TunnelStatus::StateUpdated);
    let y = wait_for("the re-activated child", || {
        dyn_tunnels(&mut cb, &tb).into_iter().next()
    });
    assert_eq!(y.state.display(), "Active");

    // Deleting the IKE tunnel from sun deletes everything on moon.
    let r = control(
        &mut cb,
        &tb,
        Request::DeactIkeTun,
        TunnelRef {
            tunnel_id: Some("K1".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(r, TunnelStatus::StateUpdated);
    wait_for("moon's IKE SA gone", || {
        ike_tunnels(&mut ca, &ta)
            .iter()
            .all(|k| k.tunnel_id != "K1")
            .then_some(())
    });
    // moon's AutoActivate brings the tunnel back.
    let y = wait_for("the tunnel back after the IKE SA was deleted", || {
        dyn_tunnels(&mut ca, &ta)
            .into_iter()
            .find(|y| y.state.display() == "Active")
    });

    // A refresh that only moves lines changes nothing.
    let policy = gw_policy("192.0.2.1", "192.0.2.2", "10.1.0.0/24", "10.2.0.0/24", true);
    std::fs::write(da.join("p.conf"), format!("# a comment\n\n{policy}")).unwrap();
    moon.signal("HUP");
    moon.wait_log("changed [");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!moon.log().contains("EZD0941I"), "{}", moon.log());
    let same = dyn_tunnels(&mut ca, &ta);
    assert_eq!(same.len(), 1);
    assert_eq!(same[0].encrypt_inbound_spi, y.encrypt_inbound_spi);

    // A changed data offer renegotiates the tunnel with the new settings:
    // sun (refreshed first) deletes it, moon's AutoActivate brings it back.
    let gcm128 = |p: String| {
        p.replace(
            "IpDataOffer { HowToEncrypt AES_GCM_16 KeyLength 256 }",
            "IpDataOffer { HowToEncrypt AES_GCM_16 KeyLength 128 }",
        )
    };
    std::fs::write(da.join("p.conf"), gcm128(policy)).unwrap();
    std::fs::write(
        db.join("p.conf"),
        gcm128(gw_policy(
            "192.0.2.2",
            "192.0.2.1",
            "10.2.0.0/24",
            "10.1.0.0/24",
            false,
        )),
    )
    .unwrap();
    sun.signal("HUP");
    sun.wait_log("EZD0941I");
    moon.signal("HUP");
    let t0 = Instant::now();
    let y128 = loop {
        if let Some(y) = dyn_tunnels(&mut ca, &ta)
            .into_iter()
            .find(|y| y.encrypt_key_length == Some(128))
        {
            break y;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no renegotiated tunnel; moon:\n{}\nsun:\n{}",
            moon.log(),
            sun.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(y128.state.display(), "Active");
    drop((moon, sun));
}

/// `gw_policy` with a second LocalDynVpnRule `net-b` (10.1.1.0/24 ↔ 10.2.1.0/24
/// from moon) to the same peer.
fn two_rule_policy(me: &str, peer: &str, moon: bool) -> String {
    let (mine, theirs, mine_b, theirs_b) = if moon {
        ("10.1.0.0/24", "10.2.0.0/24", "10.1.1.0/24", "10.2.1.0/24")
    } else {
        ("10.2.0.0/24", "10.1.0.0/24", "10.2.1.0/24", "10.1.1.0/24")
    };
    let auto = if moon { "Yes" } else { "No" };
    format!(
        r#"{}
LocalDynVpnRule net-b {{
  IpSourceAddr {mine_b}
  IpDestAddr {theirs_b}
  LocalSecurityEndpoint {me}
  RemoteSecurityEndpoint {peer}
  IpDynVpnAction {{ IpDataOffer {{ HowToEncrypt AES_GCM_16 KeyLength 256 }} }}
  AutoActivate {auto}
}}
"#,
        gw_policy(me, peer, mine, theirs, moon)
    )
}

/// Two AutoActivate rules to one peer: one IKE SA carries both children (the
/// second waits for the IKE SA being set up, then CREATE_CHILD_SA), both keep
/// ActivationMethod Auto, and no INITIAL_CONTACT drops anything on the responder.
#[test]
fn two_auto_activate_rules_share_one_ike_sa() {
    require_root!();
    let Gateways {
        _pair,
        moon,
        sun,
        mut ca,
        mut cb,
        ta,
        tb,
        ..
    } = gateways(
        "two",
        &two_rule_policy("192.0.2.1", "192.0.2.2", true),
        &two_rule_policy("192.0.2.2", "192.0.2.1", false),
    );
    let both = |c: &mut Client, t: &Target| {
        let ys = dyn_tunnels(c, t);
        (ys.len() == 2 && ys.iter().all(|y| y.state.display() == "Active")).then_some(ys)
    };
    let ya = wait_for("both tunnels on moon", || both(&mut ca, &ta));
    let yb = wait_for("both tunnels on sun", || both(&mut cb, &tb));
    let ka = ike_tunnels(&mut ca, &ta);
    let kb = ike_tunnels(&mut cb, &tb);
    assert_eq!(ka.len(), 1, "moon: {ka:?}\n{}", moon.log());
    assert_eq!(kb.len(), 1, "sun: {kb:?}\n{}", sun.log());
    assert_eq!(ka[0].initiator_spi, kb[0].initiator_spi);
    let mut names: Vec<&str> = ya
        .iter()
        .map(|y| y.local_dyn_vpn_rule.as_deref().unwrap_or(""))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["net", "net-b"]);
    for y in &ya {
        assert_eq!(y.parent_ike_tunnel_id.as_deref(), Some("K1"), "{y:?}");
        assert_eq!(y.generation, 1, "{y:?}");
        assert_eq!(y.activation.map(|a| a.display()), Some("Auto"), "{y:?}");
    }
    for y in &yb {
        assert_eq!(y.activation.map(|a| a.display()), Some("Remote"), "{y:?}");
    }
    let (ml, sl) = (moon.log(), sun.log());
    assert_eq!(ml.matches("EZD0935I").count(), 1, "{ml}");
    assert!(ml.contains("waits for IKE tunnel K1"), "{ml}");
    assert!(!sl.contains("INITIAL_CONTACT: dropping"), "{sl}");
    assert!(!sl.contains("EZD0938"), "{sl}");
    drop((moon, sun));
}

/// A stack's NSS client reaches the NSS server over the stack's own network:
/// iked runs in the test's namespace (no route to 192.0.2.2) and serves the
/// stack of namespace a; the server address is only reachable from there. A
/// TCP listener in namespace b stands in for nssd and must see the
/// connection come from the stack's address.
#[test]
fn nss_client_connects_over_its_stacks_network() {
    require_root!();
    let pair = Pair::new("nssn");
    let ns_b = std::fs::File::open(format!("/run/netns/{}", pair.1.0)).unwrap();
    let listener = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns_b),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        std::net::TcpListener::bind("192.0.2.2:4159").unwrap()
    })
    .join()
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((conn, peer)) = listener.accept() {
            let _ = tx.send(peer);
            drop(conn);
        }
    });
    let d = tempdir("nssn");
    std::fs::write(
        d.join("iked.conf"),
        format!(
            "IkeConfig {{ SystemName GWT NoKeyRing NetworkSecurityServer 192.0.2.2 Port 4159 \
             NssWaitLimit 1 NssWaitRetries 1 }}\n\
             NssStackConfig {a} {{ ServiceType Cert UserId GW AuthBy Password Password pw }}\n\
             StackConfig {a} {{ PolicyFile p.conf }}\n",
            a = pair.0.0
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("p.conf"),
        gw_policy(
            "192.0.2.1",
            "192.0.2.2",
            "10.1.0.0/24",
            "10.2.0.0/24",
            false,
        ),
    )
    .unwrap();
    let iked = Iked::start(&d, &["--kernel", "recording"]);
    let peer = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("no connection to the NSS server's address:\n{}", iked.log()));
    assert_eq!(peer.ip().to_string(), "192.0.2.1", "{}", iked.log());
    drop(iked);
}

/// ReauthInterval 1 (minute) on both gateways: moon (the original initiator)
/// reauthenticates after a minute with a new IKE SA (new SPIs, same K1 with
/// generation 2) that re-creates the dynamic tunnel, then deletes the old IKE
/// SA; sun keeps the old SA until then (no INITIAL_CONTACT), and the tunnel
/// stays Active throughout.
#[test]
fn ikev2_reauthentication_between_two_iked_instances() {
    require_root!();
    let reauth = |p: String| {
        p.replace(
            "KeyExchangeAction { KeyExchangeOffer",
            "KeyExchangeAction { ReauthInterval 1 KeyExchangeOffer",
        )
    };
    let Gateways {
        _pair,
        moon,
        sun,
        mut ca,
        mut cb,
        ta,
        tb,
        ..
    } = gateways(
        "reau",
        &reauth(gw_policy(
            "192.0.2.1",
            "192.0.2.2",
            "10.1.0.0/24",
            "10.2.0.0/24",
            true,
        )),
        &reauth(gw_policy(
            "192.0.2.2",
            "192.0.2.1",
            "10.2.0.0/24",
            "10.1.0.0/24",
            false,
        )),
    );
    let ya = wait_for("moon's dynamic tunnel", || {
        dyn_tunnels(&mut ca, &ta).into_iter().next()
    });
    wait_for("sun's dynamic tunnel", || {
        dyn_tunnels(&mut cb, &tb).into_iter().next()
    });
    let ka = ike_tunnels(&mut ca, &ta);
    assert_eq!(ka.len(), 1);
    let old = (ka[0].initiator_spi, ka[0].responder_spi);
    assert_eq!((ka[0].tunnel_id.as_str(), ka[0].generation), ("K1", 1));
    assert_eq!(ka[0].reauth_interval, Some(60));
    let created = ka[0].create_time.unwrap();
    let at = ka[0].reauth_time.unwrap();
    assert!(
        (created + 59..=created + 61).contains(&at),
        "{created} {at}"
    );
    // sun has the interval too (shown), but as the original responder waits longer.
    let kb = ike_tunnels(&mut cb, &tb);
    assert_eq!(kb[0].reauth_interval, Some(60));
    assert!(kb[0].reauth_time.unwrap() >= at + 29, "{kb:?}");

    // Poll (up to 100 s) for the reauthentication, checking on the way that
    // the dynamic tunnel never stops being Active on either side.
    let t0 = Instant::now();
    loop {
        for (c, t, who) in [(&mut ca, &ta, "moon"), (&mut cb, &tb, "sun")] {
            let ys = dyn_tunnels(c, t);
            assert!(
                ys.iter().any(|y| y.state.display() == "Active"),
                "{who} lost its tunnel: {ys:?}\nmoon:\n{}\nsun:\n{}",
                moon.log(),
                sun.log()
            );
        }
        let done = |k: &[gatekey_nmi::records::IkeTunnelRecord]| {
            k.len() == 1 && k[0].initiator_spi != old.0 && k[0].state.display() == "DONE"
        };
        if moon.log().contains("EZD1772I")
            && sun.log().contains("EZD1772I")
            && done(&ike_tunnels(&mut ca, &ta))
            && done(&ike_tunnels(&mut cb, &tb))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(100),
            "no reauthentication\nmoon:\n{}\nsun:\n{}",
            moon.log(),
            sun.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let ka = ike_tunnels(&mut ca, &ta);
    let kb = ike_tunnels(&mut cb, &tb);
    // A new IKE SA (both SPIs new), the same tunnel ID, the next generation;
    // the old IKE SA is gone on both sides.
    for k in [&ka[0], &kb[0]] {
        assert_ne!(k.initiator_spi, old.0, "{k:?}");
        assert_ne!(k.responder_spi, old.1, "{k:?}");
        assert_eq!((k.tunnel_id.as_str(), k.generation), ("K1", 2), "{k:?}");
        assert_eq!(k.associated_dynamic_tunnels, 1, "{k:?}");
    }
    assert_eq!(ka[0].initiator_spi, kb[0].initiator_spi);
    assert_eq!(ka[0].role.display(), "Initiator");
    assert_eq!(ka[0].reauth_interval, Some(60));
    assert!(ka[0].reauth_time.unwrap() > at + 50, "{ka:?}");
    // The dynamic tunnel: Active, a new child SA (generation 2) under K1.
    let ya2 = dyn_tunnels(&mut ca, &ta);
    let yb2 = dyn_tunnels(&mut cb, &tb);
    assert_eq!((ya2.len(), yb2.len()), (1, 1), "{ya2:?}\n{yb2:?}");
    let (y, z) = (&ya2[0], &yb2[0]);
    assert_eq!(y.state.display(), "Active");
    assert_eq!(
        (y.tunnel_id.as_str(), y.generation),
        (ya.tunnel_id.as_str(), 2)
    );
    assert_eq!(y.parent_ike_tunnel_id.as_deref(), Some("K1"));
    assert_eq!(y.activation.map(|a| a.display()), Some("Auto"));
    assert_ne!(y.encrypt_inbound_spi, ya.encrypt_inbound_spi);
    assert_eq!(y.encrypt_inbound_spi, z.encrypt_outbound_spi);
    assert_eq!(y.encrypt_outbound_spi, z.encrypt_inbound_spi);
    let (ml, sl) = (moon.log(), sun.log());
    assert!(
        ml.contains("IKE version 2.0 SA for tunnel K1 generation 2 reauthenticated with 192.0.2.2"),
        "{ml}"
    );
    assert!(ml.contains("replaced by its reauthenticated SA"), "{ml}");
    assert!(
        sl.contains("IKE version 2.0 SA for tunnel K1 generation 2 reauthenticated with 192.0.2.1"),
        "{sl}"
    );
    assert!(!sl.contains("INITIAL_CONTACT: dropping"), "{sl}");
    assert!(
        !ml.contains("EZD0938W") && !sl.contains("EZD0938W"),
        "{ml}\n{sl}"
    );
    assert!(!ml.contains("EZD1773W"), "{ml}");
    drop((moon, sun));
}
