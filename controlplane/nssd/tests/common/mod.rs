//! Test environment: a CA and keyring made at test time, a security
//! database, nssd.conf, in-process servers, clients, a raw protocol client.

#![allow(dead_code, reason = "each test file uses part of the harness")]
#![expect(
    clippy::expect_used,
    reason = "test harness: a failed set-up step is a test failure"
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatekey_keyring::testpki::{Ca, CertSpec, Issued, KeySpec, KeyringBuilder, San};
use nss_client::{ClientConfig, Credentials, NssClient, ServerSpec};
use nss_proto::{
    Correlator, HEADER_LEN, Header, MAX_FRAME_LEN, Message, Request, Role, Secret, Services,
};
use nssd::{Options, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SYS: &str = "NSSSYS";
pub const PTKT_KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Log lines collected from a server or a client.
#[derive(Clone, Default)]
pub struct Logs(pub Arc<Mutex<Vec<String>>>);

impl Logs {
    pub fn hook(&self) -> Arc<dyn Fn(&str) + Send + Sync> {
        let l = Arc::clone(&self.0);
        Arc::new(move |s: &str| {
            if let Ok(mut v) = l.lock() {
                v.push(s.to_owned());
            }
        })
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn find(&self, needles: &[&str]) -> Option<String> {
        self.lines()
            .into_iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
    }

    /// Wait up to 10 s for a line containing every needle.
    pub async fn wait_for(&self, needles: &[&str]) -> String {
        for _ in 0..500 {
            if let Some(l) = self.find(needles) {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no log line with {needles:?}; lines:\n{}",
            self.lines().join("\n")
        );
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The PKI and files of one test.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub ca: Ca,
    pub server_cert: Issued,
    pub a1s1_rsa2048: Issued,
    pub a1s1_rsa3072: Issued,
    pub a1s1_ec: Issued,
    pub other: Issued,
    pub conf: PathBuf,
    pub saf: PathBuf,
    pub port: u16,
}

pub fn hash(pw: &str) -> String {
    let p = argon2::Params::new(256, 1, 1, None).expect("params");
    nssd::auth::hash_password(pw.as_bytes(), p).expect("hash")
}

pub fn saf_text() -> String {
    format!(
        r#"
User A1S1 {{ Password "{a1s1}" }}
User B2 {{ Password "{b2}" }}
User C3 {{ Password "{c3}" }}
User OPER {{ }}
PtktData NSSD {{ Key {PTKT_KEY_HEX} }}
Profile EZB.NSS.{SYS}.*.IPSEC.CERT {{ Permit A1S1  Permit B2 }}
Profile EZB.NSS.{SYS}.*.IPSEC.NETMGMT {{ Permit A1S1 }}
Profile EZB.NSSCERT.{SYS}.A1S1_CERT.HOST {{ Permit A1S1 Permit B2 }}
Profile EZB.NSSCERT.{SYS}.A1S1$3072.HOST {{ Permit A1S1 }}
Profile EZB.NSSCERT.{SYS}.A1S1$EC.HOST {{ Permit A1S1 }}
Profile EZB.NSSCERT.{SYS}.TESTCA.CERTAUTH {{ Permit * }}
Profile EZB.NETMGMT.{SYS}.*.IPSEC.CONTROL {{ Permit OPER }}
"#,
        a1s1 = hash("pw-a1s1"),
        b2 = hash("pw-b2"),
        c3 = hash("pw-c3"),
    )
}

pub fn conf_text(port: u16, extra: &str) -> String {
    format!(
        "NssConfig\n{{\n  Port {port}\n  ListenAddress 127.0.0.1\n  SyslogLevel 63\n  KeyRing ring\n  SafDatabase nssd.saf\n  SystemName {SYS}\n  TlsCertificate \"NSS SERVER\"\n{extra}}}\n"
    )
}

pub fn write_600(p: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(p, text).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

impl Env {
    pub fn new() -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("gatekey test CA");
        let server_cert = ca.issue(
            &CertSpec::new("nss.test", KeySpec::EcP256)
                .san(San::Dns("nss.test".into()))
                .san(San::Ip("127.0.0.1".parse().expect("ip")))
                .san(San::Email("nss@nss.test".into()))
                .server(),
        );
        let a1s1_rsa2048 = ca.issue(&CertSpec::new("SYSTEMA_STACK1", KeySpec::Rsa2048A));
        let a1s1_rsa3072 = ca.issue(&CertSpec::new("SYSTEMA_STACK1 3072", KeySpec::Rsa3072));
        let a1s1_ec = ca.issue(&CertSpec::new("SYSTEMA_STACK1 EC", KeySpec::EcP256));
        let other = ca.issue(&CertSpec::new("other", KeySpec::Rsa2048B));
        KeyringBuilder::new(&tmp.path().join("ring"))
            .ca("TESTCA", &ca)
            .keyed("NSS SERVER", "Site", &server_cert, None, false)
            .keyed("A1S1_CERT", "Personal", &a1s1_rsa2048, Some("A1S1"), true)
            .keyed("A1S1 3072", "Personal", &a1s1_rsa3072, Some("A1S1"), false)
            .keyed("A1S1 EC", "Personal", &a1s1_ec, Some("A1S1"), false)
            .keyed("OTHER CERT", "Personal", &other, Some("B9"), false)
            .finish();
        let saf = tmp.path().join("nssd.saf");
        write_600(&saf, &saf_text());
        let port = free_port();
        let conf = tmp.path().join("nssd.conf");
        std::fs::write(&conf, conf_text(port, "")).expect("conf");
        Env {
            tmp,
            ca,
            server_cert,
            a1s1_rsa2048,
            a1s1_rsa3072,
            a1s1_ec,
            other,
            conf,
            saf,
            port,
        }
    }

    pub async fn server(&self, logs: &Logs) -> ServerHandle {
        self.server_with(logs, |_| {}).await
    }

    pub async fn server_with(&self, logs: &Logs, f: impl FnOnce(&mut Options)) -> ServerHandle {
        let mut o = Options::new(&self.conf);
        o.log_hook = Some(logs.hook());
        f(&mut o);
        ServerHandle::start(o).await.expect("server starts")
    }

    pub fn client_config(&self, client: &str, user: &str, pw: &str, port: u16) -> ClientConfig {
        let mut c = ClientConfig::new(
            "stack1",
            client,
            "SYSTEMA",
            user,
            Credentials::Password(Secret::from(pw)),
        );
        c.primary = Some(ServerSpec::new("127.0.0.1", port));
        c.trust_anchors = vec![self.ca.der.clone()];
        c.services = Services::CERT.with(Services::REMOTE_MGMT);
        c.wait_limit = Duration::from_secs(1);
        c.wait_retries = 2;
        c.request_timeout = Duration::from_secs(10);
        c.connect_timeout = Duration::from_secs(3);
        c
    }

    pub async fn client(&self, client: &str, user: &str, pw: &str, logs: &Logs) -> NssClient {
        let mut c = self.client_config(client, user, pw, self.port);
        c.log_hook = Some(logs.hook());
        NssClient::start(c, None).expect("client starts")
    }
}

/// A raw protocol client over TLS, for malformed frames and hand-made
/// CONNECTs.
pub struct Raw {
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl Raw {
    pub async fn connect(env: &Env, addr: SocketAddr) -> Raw {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls_pki_types::CertificateDer::from(env.ca.der.clone()))
            .expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .expect("tls");
        Raw { stream }
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.stream.write_all(b).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    pub async fn send(&mut self, m: &Message) {
        let b = m.encode().expect("encode");
        self.send_bytes(&b).await;
    }

    /// The next frame's header (body discarded), or `None` when closed.
    pub async fn recv_header(&mut self) -> Option<Header> {
        let mut h = [0u8; HEADER_LEN];
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut h))
            .await
            .ok()?
            .ok()?;
        let header = Header::parse(&h, MAX_FRAME_LEN).ok()?;
        let mut body = vec![0u8; header.body_len()];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(header)
    }

    /// The next message, or `None` when the server closed.
    pub async fn recv(&mut self) -> Option<Message> {
        let mut h = [0u8; HEADER_LEN];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut h)).await {
            Ok(Ok(_)) => {}
            _ => return None,
        }
        let header = Header::parse(&h, MAX_FRAME_LEN).expect("header");
        let mut body = vec![0u8; header.body_len()];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Message::decode(&header, &body, Role::Client).expect("decode"))
    }

    pub async fn connect_msg(
        &mut self,
        client: &str,
        user: &str,
        method: nss_proto::AuthMethod,
        cred: &[u8],
    ) -> Message {
        self.send(&Message::Request {
            correlator: Correlator::new(1, 0),
            request: Request::Connect(nss_proto::ConnectRequest {
                client_name: client.into(),
                stack_name: "raw".into(),
                system_name: "RAWSYS".into(),
                user_id: user.into(),
                auth_method: method,
                credential: Secret::from_slice(cred),
                services: Services::CERT,
                api_versions: vec![1],
                software: None,
            }),
        })
        .await;
        loop {
            match self.recv().await {
                Some(Message::Request {
                    correlator,
                    request: Request::Keepalive,
                }) => {
                    self.send(&Message::ok(correlator, nss_proto::ResponseBody::Keepalive))
                        .await;
                }
                Some(m) => return m,
                None => panic!("closed before the CONNECT response"),
            }
        }
    }
}

/// The status of a response message.
pub fn status_of(m: &Message) -> nss_proto::Status {
    match m {
        Message::Response { status, .. } | Message::Terminate { status, .. } => *status,
        Message::Request { .. } => nss_proto::Status::OK,
    }
}
