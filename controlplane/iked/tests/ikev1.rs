//! Host tests: IKEv1 between two iked instances in network namespaces
//! (SAs recorded, not installed: the host kernel has no ESP) — main mode
//! with a pre-shared key, aggressive mode, main mode with RSA signatures
//! from local key rings — and what `ipsec -k`/`-y` and GET_SUMMARY show.

#![expect(clippy::unwrap_used, reason = "test code: a failure is a test failure")]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::{Iked, Pair, control, dyn_tunnels, ike_tunnels, tempdir, wait_for};
use gatekey_nmi::records::{ExchangeMode, IkeVersion, TunnelRef, TunnelStatus};
use gatekey_nmi::{Client, Request, Response, Target};

/// A gateway's policy: `action` is the KeyExchangeAction body, `auth` the
/// rule's authentication lines (SharedKey, or nothing for signatures).
fn policy(me: &str, peer: &str, ids: (&str, &str), action: &str, auth: &str, auto: bool) -> String {
    let (mine, theirs) = if me == "192.0.2.1" {
        ("10.1.0.0/24", "10.2.0.0/24")
    } else {
        ("10.2.0.0/24", "10.1.0.0/24")
    };
    format!(
        r#"
KeyExchangeRule to-peer {{
  LocalSecurityEndpoint {{ Identity {} Location {me} }}
  RemoteSecurityEndpoint {{ Identity {} Location {peer} }}
  KeyExchangeAction {{ {action} }}
  {auth}
}}
LocalDynVpnRule net {{
  IpSourceAddr {mine}
  IpDestAddr {theirs}
  LocalSecurityEndpoint {me}
  RemoteSecurityEndpoint {peer}
  IpDynVpnAction {{ InitiateWithPfs Group19 IpDataOffer {{ HowToEncrypt AES_CBC KeyLength 128 HowToAuth ESP HMAC_SHA2_256_128 }} }}
  AutoActivate {}
}}
"#,
        ids.0,
        ids.1,
        if auto { "Yes" } else { "No" }
    )
}

const PSK: &str = "SharedKey Ascii \"an IKEv1 host test pre-shared key\"";
const OFFER: &str = "KeyExchangeOffer { HowToEncrypt AES_CBC KeyLength 256 HowToAuthMsgs SHA2_256 DHGroup Group14 }";

fn write_conf(dir: &Path, ns: &str, policy: &str, keyring: Option<&Path>) {
    let ring = keyring.map_or(String::new(), |k| format!("KeyRing {}", k.display()));
    std::fs::write(
        dir.join("iked.conf"),
        format!(
            "IkeConfig {{ SafDatabase iked.saf SystemName GWT {ring} }}\nStackConfig {ns} {{ PolicyFile p.conf }}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("p.conf"), policy).unwrap();
}

struct Run {
    moon: Iked,
    sun: Iked,
    ca: Client,
    cb: Client,
    ta: Target,
    tb: Target,
    _pair: Pair,
}

fn run(tag: &str, moon_policy: &str, sun_policy: &str, rings: Option<(&Path, &Path)>) -> Run {
    let pair = Pair::new(tag);
    let (da, db) = (tempdir(&format!("{tag}a")), tempdir(&format!("{tag}b")));
    write_conf(&da, &pair.0.0, moon_policy, rings.map(|r| r.0));
    write_conf(&db, &pair.1.0, sun_policy, rings.map(|r| r.1));
    let sun = Iked::start(&db, &["--kernel", "recording"]);
    let moon = Iked::start(&da, &["--kernel", "recording"]);
    let (ta, tb) = (
        Target::new(&pair.0.0).unwrap(),
        Target::new(&pair.1.0).unwrap(),
    );
    let ca = Client::connect(da.join("ipsecmgmt")).unwrap();
    let cb = Client::connect(db.join("ipsecmgmt")).unwrap();
    Run {
        moon,
        sun,
        ca,
        cb,
        ta,
        tb,
        _pair: pair,
    }
}

impl Run {
    fn wait_up(&mut self) {
        let (ca, ta) = (&mut self.ca, &self.ta);
        let moon = &self.moon;
        let sun = &self.sun;
        let t0 = std::time::Instant::now();
        loop {
            if dyn_tunnels(ca, ta)
                .iter()
                .any(|y| y.state.display() == "Active")
            {
                return;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "no IKEv1 tunnel; moon:\n{}\nsun:\n{}",
                moon.log(),
                sun.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[test]
fn main_mode_psk() {
    require_root!();
    let ids = ("IpAddr 192.0.2.1", "IpAddr 192.0.2.2");
    let mut r = run(
        "v1m",
        &policy(
            "192.0.2.1",
            "192.0.2.2",
            ids,
            &format!("HowToInitiate Main {OFFER}"),
            PSK,
            true,
        ),
        // sun initiates IKEv2 but answers IKEv1 main mode (the default).
        &policy("192.0.2.2", "192.0.2.1", (ids.1, ids.0), OFFER, PSK, false),
        None,
    );
    r.wait_up();
    let k = ike_tunnels(&mut r.ca, &r.ta);
    assert_eq!(k.len(), 1, "{k:#?}");
    let k = &k[0];
    assert_eq!(k.ike_version, IkeVersion::V1);
    assert_eq!(k.exchange_mode, Some(ExchangeMode::Main));
    assert_eq!(k.state.display(), "DONE");
    assert_eq!(k.role.display(), "Initiator");
    assert_eq!(k.encryption_algorithm.as_deref(), Some("AES_CBC"));
    assert_eq!(k.key_length, Some(256));
    assert_eq!(k.authentication_algorithm.as_deref(), Some("SHA2_256"));
    assert_eq!(k.pseudo_random_function.as_deref(), Some("HMAC_SHA2_256"));
    assert_eq!(k.diffie_hellman_group, Some(14));
    assert_eq!(
        k.local_authentication_method.as_deref(),
        Some("PresharedKey")
    );
    assert_eq!(k.remote_id.as_deref(), Some("192.0.2.2"));
    assert!(k.lifetime.is_some() && k.lifetime_expires.is_some());
    let kb = ike_tunnels(&mut r.cb, &r.tb);
    assert_eq!(kb[0].ike_version, IkeVersion::V1);
    assert_eq!(kb[0].role.display(), "Responder");
    assert_eq!(kb[0].initiator_spi, k.initiator_spi);

    let y = dyn_tunnels(&mut r.ca, &r.ta);
    assert_eq!(y.len(), 1);
    assert_eq!(y[0].ike_version, Some(IkeVersion::V1));
    assert_eq!(y[0].how_to_encrypt.as_deref(), Some("AES_CBC"));
    assert_eq!(y[0].auth_algorithm.as_deref(), Some("HMAC_SHA2_256_128"));
    assert_eq!(y[0].pfs_group, Some(19));
    assert_eq!(y[0].parent_ike_tunnel_id.as_deref(), Some("K1"));
    let yb = dyn_tunnels(&mut r.cb, &r.tb);
    assert_eq!(yb[0].encrypt_inbound_spi, y[0].encrypt_outbound_spi);
    assert!(
        r.moon.log().contains("EZD0935I") && r.moon.log().contains("IKE version 1.0 SA"),
        "{}",
        r.moon.log()
    );
    match r
        .ca
        .call(Some(&r.ta), &Request::GetSummary)
        .unwrap()
        .response
    {
        Response::Summary(s) => {
            assert_eq!(s.statistics.p1_active, 1);
            assert_eq!(s.statistics.p1_lcl_act_success, 1);
            assert_eq!(s.statistics.p2_active, 1);
        }
        other => panic!("{other:?}"),
    }

    // Refresh (quick mode rekey), then deactivate: the child goes on both sides.
    let st = control(
        &mut r.ca,
        &r.ta,
        Request::RefreshIpTunDyn,
        TunnelRef {
            tunnel_id: Some("Y1".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(st, TunnelStatus::StateUpdated);
    let (ca, ta) = (&mut r.ca, &r.ta);
    wait_for("generation 2", || {
        dyn_tunnels(ca, ta)
            .into_iter()
            .find(|y| y.generation == 2)
            .map(|_| ())
    });
    wait_for("generation 1 deleted", || {
        (dyn_tunnels(ca, ta).len() == 1).then_some(())
    });
    let st = control(
        &mut r.ca,
        &r.ta,
        Request::DeactIpTunDyn,
        TunnelRef {
            name: Some("net".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(st, TunnelStatus::StateUpdated);
    let (cb, tb) = (&mut r.cb, &r.tb);
    wait_for("sun's child gone", || {
        dyn_tunnels(cb, tb).is_empty().then_some(())
    });
    // The ISAKMP SA goes with ipsec -k deactivate, on both sides.
    let st = control(
        &mut r.ca,
        &r.ta,
        Request::DeactIkeTun,
        TunnelRef {
            tunnel_id: Some("K1".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(st, TunnelStatus::StateUpdated);
    let (cb, tb) = (&mut r.cb, &r.tb);
    wait_for("sun's ISAKMP SA gone", || {
        ike_tunnels(cb, tb).is_empty().then_some(())
    });
}

#[test]
fn aggressive_mode_needs_the_opt_in() {
    require_root!();
    let ids = ("Fqdn moon.example.net", "Fqdn sun.example.net");
    let moon = policy(
        "192.0.2.1",
        "192.0.2.2",
        ids,
        &format!("HowToInitiate Aggressive {OFFER}"),
        PSK,
        true,
    );
    // sun answers main mode only (the default): aggressive mode is refused.
    let mut r = run(
        "v1a",
        &moon,
        &policy("192.0.2.2", "192.0.2.1", (ids.1, ids.0), OFFER, PSK, false),
        None,
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(dyn_tunnels(&mut r.ca, &r.ta).is_empty());
    drop(r);
    // With HowToRespondIKEv1 Aggressive it comes up.
    let mut r = run(
        "v1b",
        &moon,
        &policy(
            "192.0.2.2",
            "192.0.2.1",
            (ids.1, ids.0),
            &format!("HowToRespondIKEv1 Aggressive {OFFER}"),
            PSK,
            false,
        ),
        None,
    );
    r.wait_up();
    let k = &ike_tunnels(&mut r.ca, &r.ta)[0];
    assert_eq!(k.exchange_mode, Some(ExchangeMode::Aggressive));
    assert_eq!(k.remote_id.as_deref(), Some("sun.example.net"));
    let kb = &ike_tunnels(&mut r.cb, &r.tb)[0];
    assert_eq!(kb.exchange_mode, Some(ExchangeMode::Aggressive));
    assert_eq!(kb.role.display(), "Responder");
}

/// A key ring with the test PKI of the RSA VM scenarios.
fn keyring(dir: &Path, host: &str) -> std::path::PathBuf {
    let pki =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vm-tests/scenarios/iked/rsa-keyring/pki");
    let k = dir.join("ring");
    std::fs::create_dir_all(&k).unwrap();
    for f in [
        "ca.pem".to_owned(),
        format!("{host}.pem"),
        format!("{host}.key"),
    ] {
        std::fs::copy(pki.join(&f), k.join(&f)).unwrap();
        std::fs::set_permissions(k.join(&f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(
        k.join("keyring.conf"),
        format!(
            "Certificate {host} {{ Usage Personal File {host}.pem Key {host}.key Default }}\nCertificate CA {{ Usage CertAuth File ca.pem }}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        k.join("keyring.conf"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    k
}

#[test]
fn main_mode_rsa_from_local_key_rings() {
    require_root!();
    let (ra, rb) = (tempdir("v1ringa"), tempdir("v1ringb"));
    let (ka, kb) = (keyring(&ra, "moon"), keyring(&rb, "sun"));
    let ids = ("Fqdn moon.example.net", "Fqdn sun.example.net");
    let action = format!("HowToInitiate Main HowToAuthMe RsaSignature {OFFER}");
    let mut r = run(
        "v1r",
        &policy("192.0.2.1", "192.0.2.2", ids, &action, "", true),
        &policy("192.0.2.2", "192.0.2.1", (ids.1, ids.0), &action, "", false),
        Some((&ka, &kb)),
    );
    r.wait_up();
    let k = &ike_tunnels(&mut r.ca, &r.ta)[0];
    assert_eq!(k.ike_version, IkeVersion::V1);
    assert_eq!(
        k.local_authentication_method.as_deref(),
        Some("RsaSignature")
    );
    assert_eq!(k.remote_id.as_deref(), Some("sun.example.net"));
    assert_eq!(k.certificate_service.map(|c| c.display()), Some("Local"));
}
