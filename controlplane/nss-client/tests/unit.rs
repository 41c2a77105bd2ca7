//! Client-side behaviour that needs no server: configuration checks, key
//! files, identities, the `ipsec -w` record while disconnected, and the
//! retry/switch schedule against ports where nothing listens.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use gatekey_nmi::records::{NssConnectionState, NssServerRole};
use nss_client::{ClientConfig, Credentials, Error, Identity, NssClient, Secret, ServerSpec};

fn config() -> ClientConfig {
    ClientConfig::new(
        "stack1",
        "SYS_stack1",
        "SYS",
        "a1s1",
        Credentials::Password(Secret::from("pw")),
    )
}

fn closed_port() -> u16 {
    // Bind, learn the port, close: nothing listens there afterwards.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(1, |a| a.port())
}

#[test]
fn identities() {
    assert_eq!(
        Identity::for_host("10.1.1.1"),
        Identity::IpAddr("10.1.1.1".parse().unwrap())
    );
    assert_eq!(
        Identity::for_host("nss.example.com."),
        Identity::Fqdn("nss.example.com".into())
    );
    assert_eq!(
        Identity::X500dn("CN=nss, O=x".into()).to_string(),
        "X500dn \"CN=nss, O=x\""
    );
    assert_eq!(
        ClientConfig::default_client_name("SYSTEMA", "a-very-long-stack-name"),
        "SYSTEMA_a-very-long-stac"
    );
}

#[test]
fn passticket_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("k");
    std::fs::write(&p, "00112233445566778899aabbccddeeff\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = nss_client::read_passticket_key(&p).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(nss_client::read_passticket_key(&p).unwrap().len(), 16);
    std::fs::write(&p, "0011").unwrap();
    assert!(nss_client::read_passticket_key(&p).is_err());
    assert!(format!("{:?}", Credentials::passticket(Secret::from("k"))).contains("<redacted>"));
}

#[tokio::test]
async fn configuration_errors() {
    let e = NssClient::start(config(), None).unwrap_err();
    assert!(
        matches!(e, Error::Config(ref m) if m.contains("NetworkSecurityServer")),
        "{e}"
    );
    let mut c = config();
    c.primary = Some(ServerSpec::new("127.0.0.1", 1));
    c.client_name = "x".repeat(25);
    assert!(NssClient::start(c, None).is_err());
    let mut c = config();
    c.primary = Some(ServerSpec::new("127.0.0.1", 1));
    c.wait_retries = 0;
    assert!(NssClient::start(c, None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_every_wait_limit_then_switches() {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Instant, String)>::new()));
    let l2 = std::sync::Arc::clone(&lines);
    let mut c = config();
    c.primary = Some(ServerSpec::new("127.0.0.1", closed_port()));
    c.backup = Some(ServerSpec::new("127.0.0.1", closed_port()));
    c.wait_limit = Duration::from_millis(300);
    c.wait_retries = 3;
    c.log_hook = Some(std::sync::Arc::new(move |s: &str| {
        l2.lock().unwrap().push((Instant::now(), s.to_owned()));
    }));
    let start = Instant::now();
    let client = NssClient::start(c, None).unwrap();
    // Disconnected: the record shows the state and the server being tried, n/a for the rest.
    let r = client.status().to_record();
    assert!(r.ns_services_supported);
    assert_eq!(r.ns_server_port, None);
    assert_eq!(r.certificate_services_enabled, None);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let st = client.status();
    assert!(st.switches >= 2, "{st:?}");
    assert_eq!(st.state, NssConnectionState::Disconnected);
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot reach"))
    );
    let lines = lines.lock().unwrap().clone();
    let attempts: Vec<&(Instant, String)> = lines
        .iter()
        .filter(|(_, l)| l.starts_with("EZD1142I"))
        .collect();
    let switches: Vec<&(Instant, String)> = lines
        .iter()
        .filter(|(_, l)| l.starts_with("EZD1141I"))
        .collect();
    // 3 attempts on the primary (at 0, +0.3 s, +0.6 s), then the backup at once.
    assert!(attempts.len() >= 6, "{lines:?}");
    assert!(attempts[0].1.contains("attempt 1 of 3") && attempts[2].1.contains("attempt 3 of 3"));
    let gap = attempts[1].0 - attempts[0].0;
    assert!(
        gap >= Duration::from_millis(250) && gap < Duration::from_millis(1000),
        "{gap:?}"
    );
    assert!(switches[0].1.contains("from the Primary") && switches[0].1.contains("to the Backup"));
    assert!(switches[0].0 - start < Duration::from_millis(1500));
    assert!(matches!(
        client.status().role,
        Some(NssServerRole::Primary | NssServerRole::Backup)
    ));
    // Requests wait for a connection until their deadline, then fail once.
    let e = client
        .sign(
            None,
            nss_client::SignatureAlgorithm::RsaPkcs1Sha256,
            nss_client::SignInput::Data(vec![1]),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
    client.shutdown().await;
    let e = client
        .wait_connected(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e, Error::Shutdown);
}

#[test]
fn configuration_from_iked_conf() {
    let conf = gatekey_config::iked_conf::parse(
        "iked.conf",
        "IkeConfig {\n NetworkSecurityServer 10.1.1.1 Port 4160 Identity Fqdn nss.example\n NetworkSecurityServerBackup nss2.example\n NssWaitLimit 5\n NssWaitRetries 4\n}\nNssStackConfig stack1 {\n ServiceType Cert\n ServiceType RemoteMgmt\n UserId a1s1\n AuthBy Password\n Password secret\n}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stack = conf.nss_stacks.get("stack1").unwrap();
    let c = nss_client::config_from_iked(&conf.ike, stack, "SYSTEMA", vec![vec![1]]).unwrap();
    assert_eq!(c.client_name, "SYSTEMA_stack1");
    assert_eq!(c.user_id, "a1s1");
    assert_eq!(
        c.services,
        nss_client::Services::CERT.with(nss_client::Services::REMOTE_MGMT)
    );
    let p = c.primary.unwrap();
    assert_eq!((p.host.as_str(), p.port), ("10.1.1.1", 4160));
    assert_eq!(p.identity, Some(Identity::Fqdn("nss.example".into())));
    let b = c.backup.unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.identity),
        ("nss2.example", 4159, None)
    );
    assert_eq!((c.wait_limit, c.wait_retries), (Duration::from_secs(5), 4));
    assert!(matches!(c.credentials, Credentials::Password(ref p) if p.ct_eq(b"secret")));
}
