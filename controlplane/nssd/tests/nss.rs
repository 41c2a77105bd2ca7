//! nssd and the NSS client over loopback TLS: signing, verification,
//! certificates, and every refusal, asserted on both sides.

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed step is a test failure"
)]

mod common;

use std::time::Duration;

use common::{Env, Logs, Raw, status_of};
use ike_proto::crypto::cert::Certificate;
use ike_proto::crypto::sig::SignatureScheme;
use nss_client::{Error as ClientError, NssClient};
use nss_proto::passticket;
use nss_proto::{
    AuthMethod, Correlator, FLAG_RESPONSE, Header, Message, MessageType, Rc, Request, Rsn,
    SignInput, SignatureAlgorithm, Status, Verdict, VerifySubject,
};

const WAIT: Duration = Duration::from_secs(10);

async fn connected(env: &Env, name: &str, logs: &Logs) -> NssClient {
    let c = env.client(name, "A1S1", "pw-a1s1", logs).await;
    c.wait_connected(WAIT).await.expect("connected");
    c
}

fn verify_locally(cert_der: &[u8], scheme: SignatureScheme, data: &[u8], sig: &[u8]) {
    let cert = Certificate::from_der(cert_der).expect("cert");
    cert.public_key()
        .verify(scheme, data, sig)
        .expect("signature verifies with the certificate's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_and_verify_round_trips() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    let clogs = Logs::default();
    let c = connected(&env, "SYSTEMA_STACK1", &clogs).await;
    let st = c.status();
    assert!(st.is_connected());
    assert_eq!(st.server_system_name.as_deref(), Some(common::SYS));
    let data = b"IKE_SA_INIT | Nr | prf(SK_pi, IDi')".to_vec();
    let cases: [(Option<&str>, SignatureAlgorithm, SignatureScheme, &[u8]); 8] = [
        (
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignatureScheme::RsaPkcs1Sha256,
            &env.a1s1_rsa2048.der,
        ),
        (
            Some("A1S1_CERT"),
            SignatureAlgorithm::RsaPssSha256,
            SignatureScheme::RsaPssSha256,
            &env.a1s1_rsa2048.der,
        ),
        (
            Some("A1S1_CERT"),
            SignatureAlgorithm::RsaPkcs1Sha384,
            SignatureScheme::RsaPkcs1Sha384,
            &env.a1s1_rsa2048.der,
        ),
        (
            Some("A1S1 3072"),
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignatureScheme::RsaPkcs1Sha256,
            &env.a1s1_rsa3072.der,
        ),
        (
            Some("A1S1 3072"),
            SignatureAlgorithm::RsaPssSha512,
            SignatureScheme::RsaPssSha512,
            &env.a1s1_rsa3072.der,
        ),
        (
            Some("A1S1 3072"),
            SignatureAlgorithm::RsaPssSha256,
            SignatureScheme::RsaPssSha256,
            &env.a1s1_rsa3072.der,
        ),
        (
            Some("A1S1 EC"),
            SignatureAlgorithm::EcdsaP256Sha256,
            SignatureScheme::EcdsaSha256,
            &env.a1s1_ec.der,
        ),
        (
            Some("A1S1 EC"),
            SignatureAlgorithm::EcdsaP256Sha256Fixed,
            SignatureScheme::EcdsaSha256,
            &env.a1s1_ec.der,
        ),
    ];
    for (label, alg, scheme, cert) in cases {
        let r = c
            .sign(label, alg, SignInput::Data(data.clone()), None)
            .await
            .unwrap_or_else(|e| panic!("{alg} {label:?}: {e}"));
        assert_eq!(r.label, label.unwrap_or("A1S1_CERT"));
        let der_sig = if alg == SignatureAlgorithm::EcdsaP256Sha256Fixed {
            assert_eq!(r.signature.len(), 64);
            ike_proto::crypto::sig::ecdsa_fixed_to_der(&r.signature).expect("fixed")
        } else {
            r.signature.clone()
        };
        verify_locally(cert, scheme, &data, &der_sig);
        // The server verifies it too, through the chain to the CA.
        let v = c
            .verify(
                alg,
                SignInput::Data(data.clone()),
                r.signature.clone(),
                VerifySubject::Certificates(vec![cert.to_vec()]),
                None,
            )
            .await
            .expect("verify");
        assert_eq!(v.verdict, Verdict::Valid, "{alg}");
        assert!(
            v.subject_dn
                .as_deref()
                .is_some_and(|d| d.contains("SYSTEMA_STACK1"))
        );
        // A flipped byte does not verify.
        let mut bad = r.signature.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        let v = c
            .verify(
                alg,
                SignInput::Data(data.clone()),
                bad,
                VerifySubject::Certificates(vec![cert.to_vec()]),
                None,
            )
            .await
            .expect("verify");
        assert_eq!(v.verdict, Verdict::BadSignature, "{alg}");
    }
    slogs
        .wait_for(&["DBG0010I", "signed with certificate ( A1S1_CERT )"])
        .await;
    // Verify with a keyring label; an untrusted (self-issued) chain; a revoked one needs a CRL (see refresh test).
    let r = c
        .sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(data.clone()),
            None,
        )
        .await
        .expect("sign");
    let v = c
        .verify(
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(data.clone()),
            r.signature.clone(),
            VerifySubject::Label("A1S1_CERT".into()),
            None,
        )
        .await
        .expect("verify by label");
    assert_eq!(v.verdict, Verdict::Valid);
    let stranger = gatekey_keyring::testpki::Ca::new("stranger").issue(
        &gatekey_keyring::testpki::CertSpec::new("x", gatekey_keyring::testpki::KeySpec::Rsa2048A),
    );
    let v = c
        .verify(
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(data.clone()),
            r.signature.clone(),
            VerifySubject::Certificates(vec![stranger.der.clone()]),
            None,
        )
        .await
        .expect("verify untrusted");
    assert_eq!(v.verdict, Verdict::Untrusted);
    let v = c
        .verify(
            SignatureAlgorithm::EcdsaP256Sha256,
            SignInput::Data(data.clone()),
            r.signature.clone(),
            VerifySubject::Certificates(vec![env.a1s1_rsa2048.der.clone()]),
            None,
        )
        .await
        .expect("verify mismatch");
    assert_eq!(v.verdict, Verdict::AlgorithmMismatch);
    // Certificates.
    let g = c
        .get_certificate(None, None)
        .await
        .expect("get certificate");
    assert_eq!(g.label, "A1S1_CERT");
    assert_eq!(
        g.chain,
        vec![env.a1s1_rsa2048.der.clone(), env.ca.der.clone()]
    );
    let cas = c.get_ca_certificates(None).await.expect("CA certificates");
    assert_eq!(cas.len(), 1);
    assert_eq!(cas[0].label, "TESTCA");
    assert_eq!(cas[0].der, env.ca.der);
    // Algorithms the key cannot do, and inputs ring cannot sign.
    let e = c
        .sign(
            Some("A1S1 EC"),
            SignatureAlgorithm::RsaPssSha256,
            SignInput::Data(data.clone()),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            msg_type: MessageType::SIGN,
            status: Status::new(Rc::EINVAL, Rsn::ALGORITHM_MISMATCH)
        }
    );
    // IKEv1's raw RSA signature over HASH_I (a SHA-1 or SHA-256 sized digest).
    for len in [20, 32] {
        let digest = vec![0x5a; len];
        let r = c
            .sign(
                None,
                SignatureAlgorithm::RsaPkcs1Raw,
                SignInput::Digest(digest.clone()),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("RSA_PKCS1_RAW over {len} bytes: {e}"));
        assert_eq!(r.signature.len(), 256);
        verify_locally(
            &env.a1s1_rsa2048.der,
            SignatureScheme::RsaPkcs1Raw,
            &digest,
            &r.signature,
        );
        let verdict = |sig: Vec<u8>| {
            c.verify(
                SignatureAlgorithm::RsaPkcs1Raw,
                SignInput::Digest(digest.clone()),
                sig,
                VerifySubject::Certificates(vec![env.a1s1_rsa2048.der.clone()]),
                None,
            )
        };
        assert_eq!(
            verdict(r.signature.clone()).await.expect("verify").verdict,
            Verdict::Valid
        );
        let mut bad = r.signature.clone();
        if let Some(b) = bad.first_mut() {
            *b ^= 0x40;
        }
        assert_eq!(
            verdict(bad).await.expect("verify").verdict,
            Verdict::BadSignature
        );
    }
    // Other algorithms sign data only: ring hashes what it signs.
    let e = c
        .sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Digest(vec![1; 32]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            msg_type: MessageType::SIGN,
            status: Status::new(Rc::EOPNOTSUPP, Rsn::UNSUPPORTED_ALGORITHM)
        }
    );
    let e = c
        .sign(
            Some("NO SUCH"),
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(data.clone()),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            msg_type: MessageType::SIGN,
            status: Status::new(Rc::ENOENT, Rsn::CERT_NOT_FOUND)
        }
    );
    clogs
        .wait_for(&[
            "EZD1139I",
            "NSS_CertSignReqToSrv",
            "ENOENT",
            "NSSRsnCertNotFound",
        ])
        .await;
    // Many requests in flight at once on one connection.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..40u8 {
        let c = c.clone();
        set.spawn(async move {
            c.sign(
                None,
                SignatureAlgorithm::RsaPkcs1Sha256,
                SignInput::Data(vec![i; 64]),
                None,
            )
            .await
            .map(|r| (i, r.signature))
        });
    }
    let mut n = 0;
    while let Some(r) = set.join_next().await {
        let (i, sig) = r.expect("join").expect("sign");
        verify_locally(
            &env.a1s1_rsa2048.der,
            SignatureScheme::RsaPkcs1Sha256,
            &[i; 64],
            &sig,
        );
        n += 1;
    }
    assert_eq!(n, 40);
    c.shutdown().await;
    slogs
        .wait_for(&["DBG0102I", "SYSTEMA_STACK1", "DISCONNECT"])
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_on_both_sides() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    let clogs = Logs::default();
    let c = env
        .client("SYSTEMA_STACK1", "A1S1", "not-the-password", &clogs)
        .await;
    let l = clogs
        .wait_for(&["EZD1139I", "NSS_ConnectClientReqToSrv"])
        .await;
    assert!(
        l.ends_with("failed - return code EACCES reason code NSSRsnUserAuthentication"),
        "{l}"
    );
    slogs
        .wait_for(&["DBG0021I", "user A1S1 (Password)", "wrong password"])
        .await;
    assert_eq!(
        c.status().state,
        gatekey_nmi::records::NssConnectionState::AuthFailed
    );
    let e = c
        .sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(vec![1]),
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Timeout(ref t) if t.contains("EACCES")),
        "{e}"
    );
    c.shutdown().await;
    // Unknown users get the same answer.
    let mut raw = Raw::connect(&env, server.local_addr().await).await;
    let m = raw
        .connect_msg("X", "NOBODY", AuthMethod::Password, b"pw")
        .await;
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EACCES, Rsn::USER_AUTHENTICATION)
    );
    assert!(raw.recv().await.is_none(), "closed after a failed CONNECT");
    slogs
        .wait_for(&["DBG0021I", "user NOBODY", "unknown user ID"])
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passtickets_expired_replayed_forged() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    let addr = server.local_addr().await;
    let key = gatekey_config::saf::parse_key_hex(common::PTKT_KEY_HEX).expect("key");
    let now = nssd::server::unix_now();
    // The client library generates fresh tickets: it connects.
    let clogs = Logs::default();
    let mut cfg = env.client_config("SYSTEMA_STACK1", "A1S1", "", env.port);
    cfg.credentials =
        nss_client::Credentials::passticket(nss_proto::Secret::from_slice(key.expose()));
    cfg.log_hook = Some(clogs.hook());
    let c = NssClient::start(cfg, None).expect("client");
    c.wait_connected(WAIT).await.expect("PassTicket login");
    slogs
        .wait_for(&["DBG0020I", "user A1S1 authenticated by PassTicket"])
        .await;
    c.shutdown().await;
    // A valid ticket is accepted once, then replay is refused.
    let t = passticket::generate(key.expose(), "NSSD", "A1S1", now - 30).expect("ticket");
    let mut raw = Raw::connect(&env, addr).await;
    let m = raw
        .connect_msg("P1", "A1S1", AuthMethod::PassTicket, t.expose())
        .await;
    assert!(status_of(&m).is_ok(), "{m:?}");
    let mut raw2 = Raw::connect(&env, addr).await;
    let m = raw2
        .connect_msg("P2", "A1S1", AuthMethod::PassTicket, t.expose())
        .await;
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EACCES, Rsn::USER_AUTHENTICATION)
    );
    slogs.wait_for(&["DBG0021I", "client P2", "replayed"]).await;
    // Expired (11 minutes old).
    let old = passticket::generate(key.expose(), "NSSD", "A1S1", now - 660).expect("ticket");
    let mut raw3 = Raw::connect(&env, addr).await;
    let m = raw3
        .connect_msg("P3", "A1S1", AuthMethod::PassTicket, old.expose())
        .await;
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EACCES, Rsn::USER_AUTHENTICATION)
    );
    slogs.wait_for(&["DBG0021I", "client P3", "expired"]).await;
    // Forged: another key.
    let forged = passticket::generate(&[7u8; 32], "NSSD", "A1S1", now).expect("ticket");
    let mut raw4 = Raw::connect(&env, addr).await;
    let m = raw4
        .connect_msg("P4", "A1S1", AuthMethod::PassTicket, forged.expose())
        .await;
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EACCES, Rsn::USER_AUTHENTICATION)
    );
    slogs.wait_for(&["DBG0021I", "client P4", "forged"]).await;
    // Garbage.
    let mut raw5 = Raw::connect(&env, addr).await;
    let m = raw5
        .connect_msg("P5", "A1S1", AuthMethod::PassTicket, b"short")
        .await;
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EACCES, Rsn::USER_AUTHENTICATION)
    );
    slogs
        .wait_for(&["DBG0021I", "client P5", "malformed"])
        .await;
    drop(raw);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_certificates_not_permitted() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    // C3 is not permitted EZB.NSS.NSSSYS.C3CLIENT.IPSEC.CERT nor NETMGMT.
    let clogs = Logs::default();
    let c = env.client("C3CLIENT", "C3", "pw-c3", &clogs).await;
    c.wait_connected(WAIT)
        .await
        .expect("connects without services");
    clogs
        .wait_for(&[
            "EZD1145I",
            "The network security certificate service is not available for stack stack1",
        ])
        .await;
    clogs
        .wait_for(&[
            "EZD1147I",
            "The network security remote management service is not available for stack stack1",
        ])
        .await;
    slogs
        .wait_for(&[
            "DBG0032I",
            "ServauthCheck(C3      ,EZB.NSS.NSSSYS.C3CLIENT.IPSEC.CERT) rc 4 (DENY)",
        ])
        .await;
    let st = c.status();
    assert_eq!(st.enabled, Some(nss_proto::Services::NONE));
    let rec = st.to_record();
    assert!(rec.certificate_services_selected);
    assert_eq!(rec.certificate_services_enabled, Some(false));
    let e = c
        .sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(vec![1]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            msg_type: MessageType::SIGN,
            status: Status::new(Rc::EOPNOTSUPP, Rsn::SERVICE_NOT_ENABLED)
        }
    );
    c.shutdown().await;
    // A1S1 may not use OTHER CERT (HOST profile).
    let clogs = Logs::default();
    let a = connected(&env, "SYSTEMA_STACK1", &clogs).await;
    let e = a
        .sign(
            Some("OTHER CERT"),
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(vec![1]),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            msg_type: MessageType::SIGN,
            status: Status::new(Rc::EACCES, Rsn::CERT_NOT_AUTHORIZED)
        }
    );
    let l = slogs
        .wait_for(&["DBG0004I", "NSS_CERTINFO Client SYSTEMA_STACK1 connected as userid A1S1 is not authorized to profile EZB.NSSCERT.NSSSYS.OTHER$CERT.HOST associated with matching certificate ( OTHER CERT ) for request"])
        .await;
    assert!(l.len() > 10);
    clogs
        .wait_for(&["EZD1139I", "EACCES", "NSSRsnCertNotAuthorized"])
        .await;
    let e = a
        .get_certificate(Some("OTHER CERT"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Refused { status, .. } if status.rsn == Rsn::CERT_NOT_AUTHORIZED)
    );
    // B2 owns no certificate: no default.
    a.shutdown().await;
    let b = env
        .client("B2CLIENT", "B2", "pw-b2", &Logs::default())
        .await;
    b.wait_connected(WAIT).await.expect("B2");
    let e = b
        .sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(vec![1]),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Refused { status, .. } if status == Status::new(Rc::ENOENT, Rsn::NO_DEFAULT_CERT))
    );
    b.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_client_is_closed_and_logged() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr().await)
        .await
        .expect("tcp");
    // An NSS CONNECT in clear.
    let m = Message::Request {
        correlator: Correlator::new(1, 0),
        request: Request::Keepalive,
    };
    tcp.write_all(&m.encode().expect("encode"))
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server sends nothing in clear and closes");
    slogs
        .wait_for(&[
            "DBG0104I",
            "NSS_LIFECYCLE NSS connID",
            "the connection is not secure - the connection will be closed",
        ])
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_identity_must_match() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    for (identity, ok) in [
        (nss_client::Identity::Fqdn("other.example".into()), false),
        (
            nss_client::Identity::X500dn("CN=someone else, O=gatekey test".into()),
            false,
        ),
        (
            nss_client::Identity::IpAddr("127.0.0.2".parse().expect("ip")),
            false,
        ),
        (nss_client::Identity::Fqdn("NSS.test".into()), true),
        (
            nss_client::Identity::UserAtFqdn("nss@nss.test".into()),
            true,
        ),
        (nss_client::Identity::X500dn("CN=nss.test".into()), true),
    ] {
        let clogs = Logs::default();
        let mut cfg = env.client_config("SYSTEMA_STACK1", "A1S1", "pw-a1s1", env.port);
        cfg.primary = Some(nss_client::ServerSpec {
            host: "127.0.0.1".into(),
            port: env.port,
            identity: Some(identity.clone()),
        });
        cfg.log_hook = Some(clogs.hook());
        let c = NssClient::start(cfg, None).expect("client");
        if ok {
            c.wait_connected(WAIT)
                .await
                .unwrap_or_else(|e| panic!("{identity}: {e}"));
        } else {
            let l = clogs
                .wait_for(&[
                    "EZD1149I",
                    "is not secure",
                    "does not match the configured Identity",
                ])
                .await;
            assert!(l.contains(&identity.to_string()), "{l}");
            assert_eq!(
                c.status().state,
                gatekey_nmi::records::NssConnectionState::NotSecure
            );
            slogs.wait_for(&["DBG0103I", "TLS handshake failed"]).await;
        }
        c.shutdown().await;
    }
    // A client that does not trust the server's CA.
    let clogs = Logs::default();
    let mut cfg = env.client_config("SYSTEMA_STACK1", "A1S1", "pw-a1s1", env.port);
    cfg.trust_anchors = vec![gatekey_keyring::testpki::Ca::new("other CA").der];
    cfg.log_hook = Some(clogs.hook());
    let c = NssClient::start(cfg, None).expect("client");
    clogs.wait_for(&["EZD1149I", "not trusted"]).await;
    c.shutdown().await;
    server.shutdown().await;
}

fn header(mt: MessageType, flags: u8, length: u32) -> Header {
    Header {
        flags,
        msg_type: mt,
        length,
        status: Status::OK,
        reserved: 0,
        correlator: Correlator::new(9, 9),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_truncated_and_oversized_frames() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env.server(&slogs).await;
    let addr = server.local_addr().await;
    // Malformed: a SIGN without attributes. Answered, the connection stays.
    let mut raw = Raw::connect(&env, addr).await;
    raw.send_bytes(&header(MessageType::SIGN, 0, 40).encode())
        .await;
    let m = raw.recv().await.expect("answer");
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EINVAL, Rsn::MISSING_ATTRIBUTE)
    );
    assert_eq!(m.correlator(), Correlator::new(9, 9));
    slogs
        .wait_for(&["DBG0109I", "SIGN", "rejected", "NSSRsnMissingAttribute"])
        .await;
    // An unknown type, reserved bits: answered too; then a KEEPALIVE still works.
    raw.send_bytes(&header(MessageType(0x0777), 0, 40).encode())
        .await;
    let h = raw.recv_header().await.expect("answer");
    assert_eq!(
        (h.msg_type, h.is_response(), h.status),
        (
            MessageType(0x0777),
            true,
            Status::new(Rc::EINVAL, Rsn::BAD_TYPE)
        )
    );
    raw.send_bytes(&header(MessageType::KEEPALIVE, 0x80, 40).encode())
        .await;
    assert_eq!(
        status_of(&raw.recv().await.expect("answer")),
        Status::new(Rc::EINVAL, Rsn::RESERVED_NONZERO)
    );
    // A request before CONNECT.
    raw.send(&Message::Request {
        correlator: Correlator::new(3, 0),
        request: Request::GetCaCertificates,
    })
    .await;
    assert_eq!(
        status_of(&raw.recv().await.expect("answer")),
        Status::new(Rc::EINVAL, Rsn::NOT_CONNECTED)
    );
    raw.send(&Message::Request {
        correlator: Correlator::new(4, 0),
        request: Request::Keepalive,
    })
    .await;
    assert!(status_of(&raw.recv().await.expect("keepalive answer")).is_ok());
    // A response the client may not send (SIGN response): protocol violation, closed.
    raw.send_bytes(&header(MessageType::SIGN, FLAG_RESPONSE, 40).encode())
        .await;
    let m = raw.recv().await.expect("TERMINATE");
    assert!(
        matches!(m, Message::Terminate { status, .. } if status == Status::new(Rc::EINVAL, Rsn::PROTOCOL_VIOLATION)),
        "{m:?}"
    );
    assert!(raw.recv().await.is_none());
    // Oversized before CONNECT (the limit is 16 KiB).
    let mut raw = Raw::connect(&env, addr).await;
    raw.send_bytes(&header(MessageType::SIGN, 0, 1 << 20).encode())
        .await;
    let m = raw.recv().await.expect("TERMINATE");
    assert!(
        matches!(m, Message::Terminate { status, .. } if status == Status::new(Rc::EINVAL, Rsn::EXCESSIVE_SIZE)),
        "{m:?}"
    );
    assert!(raw.recv().await.is_none());
    slogs
        .wait_for(&[
            "DBG0105I",
            "exceeds the limit of 16384 bytes",
            "NSSRsnExcessiveSize",
            "will be closed",
        ])
        .await;
    // Bad identifier.
    let mut raw = Raw::connect(&env, addr).await;
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: nss.test\r\n\r\n.....")
        .await;
    let m = raw.recv().await.expect("TERMINATE");
    assert!(
        matches!(m, Message::Terminate { status, .. } if status == Status::new(Rc::EINVAL, Rsn::BAD_IDENT)),
        "{m:?}"
    );
    // Truncated: a header promising 100 bytes, 10 sent, then the client closes.
    let mut raw = Raw::connect(&env, addr).await;
    raw.send_bytes(&header(MessageType::SIGN, 0, 140).encode())
        .await;
    raw.send_bytes(&[0u8; 10]).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut raw.stream).await;
    drop(raw);
    slogs
        .wait_for(&["DBG0102I", "read failed inside a frame"])
        .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_live_connection_per_client_name() {
    let env = Env::new();
    let slogs = Logs::default();
    let server = env
        .server_with(&slogs, |o| o.probe_timeout = Duration::from_secs(1))
        .await;
    let addr = server.local_addr().await;
    // A live holder: the second connection is refused.
    let c1 = connected(&env, "SYSTEMA_STACK1", &Logs::default()).await;
    let mut raw = Raw::connect(&env, addr).await;
    let m = raw
        .connect_msg("systema_stack1", "A1S1", AuthMethod::Password, b"pw-a1s1")
        .await;
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EADDRINUSE, Rsn::CLIENT_NAME_IN_USE)
    );
    slogs
        .wait_for(&[
            "DBG0106I",
            "client name systema_stack1 is held by live connID",
        ])
        .await;
    let r = c1
        .sign(
            None,
            SignatureAlgorithm::RsaPkcs1Sha256,
            SignInput::Data(vec![2]),
            None,
        )
        .await;
    assert!(r.is_ok(), "the first connection is untouched");
    c1.shutdown().await;
    // A holder that stopped answering (half-open): replaced, and told so.
    let mut stale = Raw::connect(&env, addr).await;
    let m = stale
        .connect_msg("STALE1", "A1S1", AuthMethod::Password, b"pw-a1s1")
        .await;
    assert!(status_of(&m).is_ok());
    // `stale` now never reads (so never answers the probe).
    let mut fresh = Raw::connect(&env, addr).await;
    let m = fresh
        .connect_msg("STALE1", "A1S1", AuthMethod::Password, b"pw-a1s1")
        .await;
    assert!(status_of(&m).is_ok(), "{m:?}");
    slogs
        .wait_for(&[
            "DBG0107I",
            "client name STALE1 was held by unresponsive connID",
            "takes over",
        ])
        .await;
    // The old one got the probe, then TERMINATE ECONNRESET.
    let mut got_terminate = false;
    while let Some(m) = stale.recv().await {
        if let Message::Terminate { status, .. } = m {
            assert_eq!(status, Status::new(Rc::ECONNRESET, Rsn::CLIENT_REPLACED));
            got_terminate = true;
        }
    }
    assert!(got_terminate);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_version_negotiation_and_double_connect() {
    let env = Env::new();
    let server = env.server(&Logs::default()).await;
    let mut raw = Raw::connect(&env, server.local_addr().await).await;
    raw.send(&Message::Request {
        correlator: Correlator::new(1, 0),
        request: Request::Connect(nss_proto::ConnectRequest {
            client_name: "V".into(),
            stack_name: "s".into(),
            system_name: "S".into(),
            user_id: "A1S1".into(),
            auth_method: AuthMethod::Password,
            credential: nss_proto::Secret::from("pw-a1s1"),
            services: nss_proto::Services::CERT,
            api_versions: vec![7, 9],
            software: None,
        }),
    })
    .await;
    match raw.recv().await.expect("answer") {
        Message::Response {
            status,
            body:
                nss_proto::ResponseBody::Failed {
                    server_api_versions,
                    ..
                },
            ..
        } => {
            assert_eq!(status, Status::new(Rc::EINVAL, Rsn::BAD_VERSION));
            assert_eq!(server_api_versions, vec![1]);
        }
        other => panic!("{other:?}"),
    }
    let mut raw = Raw::connect(&env, server.local_addr().await).await;
    assert!(
        status_of(
            &raw.connect_msg("V2", "A1S1", AuthMethod::Password, b"pw-a1s1")
                .await
        )
        .is_ok()
    );
    let m = raw
        .connect_msg("V2", "A1S1", AuthMethod::Password, b"pw-a1s1")
        .await;
    assert_eq!(
        status_of(&m),
        Status::new(Rc::EINVAL, Rsn::ALREADY_CONNECTED)
    );
    server.shutdown().await;
}
