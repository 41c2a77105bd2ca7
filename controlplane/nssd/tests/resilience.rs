//! Failover under a stream of signing requests (primary killed with
//! SIGKILL), and refresh (bad files rejected whole, good ones applied,
//! connections surviving a port change).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Env, Logs, conf_text, free_port};
use ike_proto::crypto::cert::Certificate;
use ike_proto::crypto::sig::SignatureScheme;
use nss_client::{Error as ClientError, NssClient, ServerSpec};
use nss_proto::{
    MessageType, Rc, Rsn, SignInput, SignatureAlgorithm, Status, Verdict, VerifySubject,
};

/// Kills the child process when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_the_backup_under_a_stream_of_signatures() {
    let env = Env::new();
    // The primary is a real nssd process (so that it can be killed -9).
    let state = env.tmp.path().join("state");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nssd"))
        .arg("--config")
        .arg(&env.conf)
        .arg("--nmi-socket")
        .arg(env.tmp.path().join("primary.sock"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--log-target")
        .arg("stderr")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nssd starts");
    let mut primary = Child(child);
    wait_port(env.port).await;
    // The backup: same keyring and security database, another port.
    let backup_port = free_port();
    let backup_conf = env.tmp.path().join("backup.conf");
    std::fs::write(&backup_conf, conf_text(backup_port, "")).expect("conf");
    let blogs = Logs::default();
    let mut o = nssd::Options::new(&backup_conf);
    o.log_hook = Some(blogs.hook());
    let backup = nssd::ServerHandle::start(o).await.expect("backup");
    // NssWaitLimit 1 s × NssWaitRetries 2.
    let clogs = Logs::default();
    let mut cfg = env.client_config("SYSTEMA_STACK1", "A1S1", "pw-a1s1", env.port);
    cfg.backup = Some(ServerSpec::new("127.0.0.1", backup_port));
    cfg.request_timeout = Duration::from_secs(20);
    cfg.log_hook = Some(clogs.hook());
    let bound = cfg.wait_limit * cfg.wait_retries;
    let client = NssClient::start(cfg, None).expect("client");
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("connected to the primary");
    assert_eq!(
        client.status().role,
        Some(gatekey_nmi::records::NssServerRole::Primary)
    );

    // A stream of signing requests from 6 tasks; every request's outcome is
    // recorded exactly once, by id.
    type Outcome = (Instant, Result<Vec<u8>, ClientError>);
    let results: Arc<Mutex<HashMap<u64, Outcome>>> = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..6u64 {
        let (client, results, stop, issued) = (
            client.clone(),
            Arc::clone(&results),
            Arc::clone(&stop),
            Arc::clone(&issued),
        );
        workers.spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let id = w * 1_000_000 + i;
                i += 1;
                issued.fetch_add(1, Ordering::SeqCst);
                let r = client
                    .sign(
                        None,
                        SignatureAlgorithm::RsaPkcs1Sha256,
                        SignInput::Data(id.to_be_bytes().to_vec()),
                        None,
                    )
                    .await
                    .map(|s| s.signature);
                let prev = results
                    .lock()
                    .expect("lock")
                    .insert(id, (Instant::now(), r));
                assert!(prev.is_none(), "request {id} answered twice");
            }
        });
    }
    let successes = |after: Option<Instant>| {
        results
            .lock()
            .expect("lock")
            .values()
            .filter(|(t, r)| r.is_ok() && after.is_none_or(|a| *t > a))
            .count()
    };
    while successes(None) < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Kill the primary.
    let killed = Instant::now();
    let _ = primary.0.kill();
    let _ = primary.0.wait();
    while successes(Some(killed)) < 50 && killed.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    while let Some(r) = workers.join_next().await {
        r.expect("worker");
    }
    let results: HashMap<u64, Outcome> = std::mem::take(&mut *results.lock().expect("lock"));
    assert_eq!(
        results.len() as u64,
        issued.load(Ordering::SeqCst),
        "every request answered exactly once"
    );
    let failures: Vec<_> = results.iter().filter(|(_, (_, r))| r.is_err()).collect();
    assert!(failures.is_empty(), "requests failed: {failures:?}");
    let cert = Certificate::from_der(&env.a1s1_rsa2048.der).expect("cert");
    for (id, (_, r)) in results.iter() {
        let sig = r.as_ref().expect("ok");
        cert.public_key()
            .verify(SignatureScheme::RsaPkcs1Sha256, &id.to_be_bytes(), sig)
            .expect("every signature verifies");
    }
    let first_after = results
        .values()
        .filter(|(t, _)| *t > killed)
        .map(|(t, _)| *t)
        .min()
        .expect("signatures after the kill");
    let gap = first_after - killed;
    println!(
        "failover: {} requests, first signature through the backup {} ms after the kill (bound {} ms)",
        results.len(),
        gap.as_millis(),
        bound.as_millis()
    );
    assert!(
        gap <= bound + Duration::from_secs(2),
        "failover took {gap:?}, bound {bound:?}"
    );
    let st = client.status();
    assert_eq!(st.role, Some(gatekey_nmi::records::NssServerRole::Backup));
    assert!(st.switches >= 1);
    assert_eq!(st.to_record().ns_server_port, Some(backup_port));
    clogs
        .wait_for(&["EZD1140I", "lost the connection of stack stack1"])
        .await;
    clogs
        .wait_for(&[
            "EZD1141I",
            "from the Primary network security server",
            "to the Backup server",
        ])
        .await;
    blogs.wait_for(&["DBG0101I", "client SYSTEMA_STACK1"]).await;
    client.shutdown().await;
    backup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_while_both_are_down() {
    let env = Env::new();
    let clogs = Logs::default();
    let mut cfg = env.client_config("SYSTEMA_STACK1", "A1S1", "pw-a1s1", free_port());
    cfg.backup = Some(ServerSpec::new("127.0.0.1", free_port()));
    cfg.wait_limit = Duration::from_millis(200);
    cfg.wait_retries = 2;
    cfg.log_hook = Some(clogs.hook());
    let client = NssClient::start(cfg, None).expect("client");
    // Nothing listens: the client alternates primary → backup → primary.
    for _ in 0..100 {
        if client.status().switches >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(client.status().switches >= 2, "{:?}", client.status());
    clogs
        .wait_for(&[
            "EZD1141I",
            "from the Backup network security server",
            "to the Primary server",
        ])
        .await;
    clogs.wait_for(&["EZD1142I", "attempt 2 of 2"]).await;
    let e = client
        .sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(vec![1]),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout(_)), "{e}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rejects_bad_files_whole_and_applies_good_ones() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    let clogs = Logs::default();
    let client = env
        .client("SYSTEMA_STACK1", "A1S1", "pw-a1s1", &clogs)
        .await;
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("connected");
    let sign = |c: NssClient| async move {
        c.sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(b"x".to_vec()),
            None,
        )
        .await
    };
    sign(client.clone()).await.expect("signs");
    // A bad nssd.conf: rejected whole, nothing changes.
    let new_port = free_port();
    std::fs::write(&env.conf, conf_text(new_port, "  SyslogLevel 9999\n")).expect("write");
    let e = server.refresh().await.unwrap_err();
    assert!(
        format!("{e:#}").contains("nssd.conf:10:15: SyslogLevel must be a whole number"),
        "{e:#}"
    );
    slogs.wait_for(&["DBG0008E", "nssd.conf:10:15"]).await;
    slogs
        .wait_for(&[
            "DBG0008E",
            "refresh rejected; the running configuration stays in force",
        ])
        .await;
    assert_eq!(server.local_addr().await.port(), env.port);
    // A bad security database with a good nssd.conf: rejected whole too (the port stays).
    std::fs::write(&env.conf, conf_text(new_port, "")).expect("write");
    common::write_600(
        &env.saf,
        &format!("{}\nProfile A..B {{ }}\n", common::saf_text()),
    );
    let e = server.refresh().await.unwrap_err();
    assert!(format!("{e:#}").contains("empty qualifier"), "{e:#}");
    assert_eq!(server.local_addr().await.port(), env.port);
    // A keyring with a world-readable key: rejected.
    let key = env.tmp.path().join("ring/cert2.key");
    common::write_600(&env.saf, &common::saf_text());
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let e = server.refresh().await.unwrap_err();
    assert!(format!("{e:#}").contains("chmod 600"), "{e:#}");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    sign(client.clone())
        .await
        .expect("still signs after rejected refreshes");
    // A good refresh: new port, a CRL revoking the 3072 certificate, and
    // A1S1 no longer permitted A1S1_CERT.
    let crl = env.ca.crl(&[env.a1s1_rsa3072.serial]);
    std::fs::write(env.tmp.path().join("ring/revoked.crl"), crl).expect("crl");
    let manifest = env.tmp.path().join("ring/keyring.conf");
    let m = std::fs::read_to_string(&manifest).expect("manifest");
    std::fs::write(&manifest, format!("{m}Crl {{ File revoked.crl }}\n")).expect("manifest");
    let saf = common::saf_text().replace(
        &format!(
            "Profile EZB.NSSCERT.{}.A1S1_CERT.HOST {{ Permit A1S1 Permit B2 }}",
            common::SYS
        ),
        &format!(
            "Profile EZB.NSSCERT.{}.A1S1_CERT.HOST {{ Permit B2 }}",
            common::SYS
        ),
    );
    common::write_600(&env.saf, &saf);
    let r = server.refresh().await.expect("good refresh");
    assert_eq!(r.listen.0.port(), env.port);
    assert_eq!(r.listen.1.port(), new_port);
    slogs
        .wait_for(&["DBG0007I", "refresh complete", "new connections only"])
        .await;
    // The existing connection survives the port change, and the new
    // authorization applies to it.
    let e = sign(client.clone()).await.unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            msg_type: MessageType::SIGN,
            status: Status::new(Rc::EACCES, Rsn::CERT_NOT_AUTHORIZED)
        }
    );
    assert_eq!(
        client.status().connects,
        1,
        "the connection was never re-established"
    );
    let s = client
        .sign(
            Some("A1S1 3072"),
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(b"y".to_vec()),
            None,
        )
        .await
        .expect("3072 signs");
    let v = client
        .verify(
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(b"y".to_vec()),
            s.signature,
            VerifySubject::Certificates(vec![env.a1s1_rsa3072.der.clone()]),
            None,
        )
        .await
        .expect("verify");
    assert_eq!(v.verdict, Verdict::Revoked);
    // New connections: the new port works, the old one is closed.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", env.port))
            .await
            .is_err()
    );
    let mut cfg = env.client_config("SYSTEMA_STACK2", "A1S1", "pw-a1s1", new_port);
    cfg.log_hook = None;
    let c2 = NssClient::start(cfg, None).expect("client");
    c2.wait_connected(Duration::from_secs(10))
        .await
        .expect("connects to the new port");
    c2.shutdown().await;
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_name_the_file_and_line() {
    let env = Env::new();
    std::fs::write(&env.conf, "NssConfig {\n  Port 4159\n  Bogus yes\n}\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nssd"))
        .arg("--config")
        .arg(&env.conf)
        .arg("--nmi-socket")
        .arg(env.tmp.path().join("x.sock"))
        .arg("--state-dir")
        .arg(env.tmp.path().join("state"))
        .arg("--log-target")
        .arg("stderr")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nssd.conf:3:3: unknown NssConfig parameter 'Bogus'"),
        "{err}"
    );
    assert!(err.contains("DBG0005E"), "{err}");
    // --check on a good configuration prints the display.
    std::fs::write(&env.conf, conf_text(env.port, "")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nssd"))
        .arg("--check")
        .arg("--config")
        .arg(&env.conf)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("Port               {}", env.port)),
        "{text}"
    );
    assert!(text.contains("valid: 4 users"), "{text}");
}

fn nssd_cmd(args: &[&std::ffi::OsStr]) -> std::process::Output {
    match std::process::Command::new(env!("CARGO_BIN_EXE_nssd"))
        .args(args)
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("nssd does not run: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_and_refresh_commands_talk_to_the_running_daemon() {
    let env = Env::new();
    let state = env.tmp.path().join("state");
    let sock = env.tmp.path().join("nss.sock");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_nssd"))
        .arg("--config")
        .arg(&env.conf)
        .arg("--nmi-socket")
        .arg(&sock)
        .arg("--state-dir")
        .arg(&state)
        .arg("--log-target")
        .arg("stderr")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nssd starts");
    let _daemon = Child(child);
    wait_port(env.port).await;
    // The pid file is written last, once nssd is ready for signals.
    for _ in 0..400 {
        if state.join("nssd.pid").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let sd = state.as_os_str();
    let out = nssd_cmd(&["display".as_ref(), "--state-dir".as_ref(), sd]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("Port               {}", env.port)),
        "{text}"
    );
    assert!(text.contains("SystemName         NSSSYS"), "{text}");
    // `nssd refresh` asks over the NMI socket (REFRESH_CONFIG); root is
    // permitted when no profile covers EZB.NETMGMT.<sys>.<sys>.NSS.CONTROL.
    let refresh = || {
        nssd_cmd(&[
            "refresh".as_ref(),
            "--nmi-socket".as_ref(),
            sock.as_os_str(),
        ])
    };
    if nix::unistd::geteuid().is_root() {
        // A bad file: REJECTED with file:line:column, exit 1, the daemon keeps serving.
        std::fs::write(&env.conf, "NssConfig { Port 0 }\n").expect("write");
        let out = refresh();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success());
        assert!(text.starts_with("REJECTED"), "{text}");
        assert!(
            text.contains("nssd.conf:1:18: Port must be a whole number from 1 to 65535"),
            "{text}"
        );
        // A good one: OK with the change, and the display shows it.
        std::fs::write(&env.conf, conf_text(env.port, "  KeepaliveInterval 30\n")).expect("write");
        let out = refresh();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.starts_with("OK NSSD refreshed"), "{text}");
        assert!(text.contains("  KeepaliveInterval  30 (was: "), "{text}");
        let out = nssd_cmd(&["display".as_ref(), "--state-dir".as_ref(), sd]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("KeepaliveInterval  30\n"), "{text}");
    } else {
        // Without a profile only root may refresh: the command says why.
        let out = refresh();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(text.contains("NSS.CONTROL"), "{text}");
    }
    // SIGHUP still refreshes (systemctl reload).
    std::fs::write(&env.conf, conf_text(env.port, "  KeepaliveInterval 40\n")).expect("write");
    let pid: i32 = std::fs::read_to_string(state.join("nssd.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP");
    let mut text = String::new();
    for _ in 0..200 {
        let out = nssd_cmd(&["display".as_ref(), "--state-dir".as_ref(), sd]);
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("KeepaliveInterval  40\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(text.contains("KeepaliveInterval  40\n"), "{text}");
    let c = env
        .client("SYSTEMA_STACK1", "A1S1", "pw-a1s1", &Logs::default())
        .await;
    c.wait_connected(Duration::from_secs(10))
        .await
        .expect("still serving");
    c.shutdown().await;
}

#[test]
fn tools_hash_passwords_make_keys_and_passtickets() {
    use std::io::Write;
    let mut p = std::process::Command::new(env!("CARGO_BIN_EXE_nssd"))
        .args(["passwd", "a1s1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("passwd");
    p.stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret\n")
        .expect("write");
    let out = p.wait_with_output().expect("passwd output");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("User A1S1 { Password \"$argon2id$v=19$m=19456,t=2,p=1$"),
        "{line}"
    );
    assert!(!line.contains("s3cret"));
    let out = nssd_cmd(&["ptkt-keygen".as_ref()]);
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(key.len(), 64);
    let dir = tempfile::tempdir().expect("tmp");
    let kf = dir.path().join("k");
    common::write_600(&kf, &key);
    let out = nssd_cmd(&[
        "passticket".as_ref(),
        "--user".as_ref(),
        "A1S1".as_ref(),
        "--key-file".as_ref(),
        kf.as_os_str(),
    ]);
    let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(t.len(), 16, "{t}");
    let k = gatekey_config::saf::parse_key_hex(&key).expect("hex");
    let mut v = nss_proto::passticket::TicketVerifier::new();
    assert!(
        v.evaluate(
            k.expose(),
            "NSSD",
            "A1S1",
            t.as_bytes(),
            nssd::server::unix_now()
        )
        .is_ok()
    );
}

#[test]
fn man_page_is_current() {
    let mut buf = Vec::new();
    clap_mangen::Man::new(nssd::command())
        .section("8")
        .render(&mut buf)
        .expect("render");
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/nssd.8")).expect("dist/nssd.8");
    assert!(
        committed == buf,
        "dist/nssd.8 is stale: run `cargo run -p nssd --example nssd-gen -- controlplane/nssd/dist`"
    );
}
