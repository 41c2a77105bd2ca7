//! Wire round trips and strict-decoding tests for every message.

use crate::attr::types as t;
use crate::*;

fn c(n: u64) -> Correlator {
    Correlator::new(n, 7)
}

/// One of every message, as each side would send it: (message, receiver).
pub(crate) fn samples() -> Vec<(Message, Role)> {
    // Requests are received by the server, except MGMT_REQUEST (n = 99).
    let req = |n: u64, request| {
        let receiver = if n == 99 { Role::Client } else { Role::Server };
        (
            Message::Request {
                correlator: c(n),
                request,
            },
            receiver,
        )
    };
    let resp = |n, body| (Message::ok(c(n), body), Role::Client);
    let cert = vec![0x30, 0x82, 0x01, 0x00, 1, 2, 3];
    vec![
        req(
            1,
            Request::Connect(ConnectRequest {
                client_name: "SYSTEMA_STACK1".into(),
                stack_name: "stack1".into(),
                system_name: "SYSTEMA".into(),
                user_id: "A1S1".into(),
                auth_method: AuthMethod::PassTicket,
                credential: Secret::from("C55VLTP3NH9QW8EW"),
                services: Services::CERT.with(Services::REMOTE_MGMT),
                api_versions: vec![1],
                software: Some("gatekey 0.1.0".into()),
            }),
        ),
        req(2, Request::Disconnect),
        req(3, Request::Keepalive),
        req(
            4,
            Request::Sign(SignRequest {
                label: Some("SYSTEMA STACK1 cert".into()),
                algorithm: SignatureAlgorithm::RsaPkcs1Sha256,
                input: SignInput::Data(b"octets to sign".to_vec()),
            }),
        ),
        req(
            5,
            Request::Sign(SignRequest {
                label: None,
                algorithm: SignatureAlgorithm::RsaPkcs1Raw,
                input: SignInput::Digest(vec![0xaa; 20]),
            }),
        ),
        req(
            6,
            Request::Verify(VerifyRequest {
                algorithm: SignatureAlgorithm::EcdsaP256Sha256,
                input: SignInput::Data(vec![1, 2, 3]),
                signature: vec![9; 70],
                subject: VerifySubject::Certificates(vec![cert.clone(), cert.clone()]),
            }),
        ),
        req(
            7,
            Request::Verify(VerifyRequest {
                algorithm: SignatureAlgorithm::RsaPkcs1Sha384,
                input: SignInput::Digest(vec![5; 48]),
                signature: vec![9; 256],
                subject: VerifySubject::Label("PEER".into()),
            }),
        ),
        req(
            8,
            Request::GetCertificate(GetCertificateRequest { label: None }),
        ),
        req(
            9,
            Request::GetCertificate(GetCertificateRequest {
                label: Some("A1S1_CERT".into()),
            }),
        ),
        req(10, Request::GetCaCertificates),
        req(
            99,
            Request::Mgmt(MgmtRequest {
                nmi: b"an NMI request".to_vec(),
                requester: Some("ALICE".into()),
            }),
        ),
        resp(
            1,
            ResponseBody::Connect(ConnectResponse {
                services: Services::CERT,
                system_name: "NSSSYS".into(),
                api_version: 1,
                server_api_versions: vec![1],
                connection_id: 42,
                keepalive_interval: 60,
                software: None,
            }),
        ),
        resp(2, ResponseBody::Disconnect),
        resp(3, ResponseBody::Keepalive),
        resp(
            4,
            ResponseBody::Sign(SignResponse {
                signature: vec![7; 256],
                label: "SYSTEMA STACK1 cert".into(),
            }),
        ),
        resp(
            6,
            ResponseBody::Verify(VerifyResponse {
                verdict: Verdict::Revoked,
                subject_dn: Some("CN=peer, O=Example".into()),
            }),
        ),
        resp(
            8,
            ResponseBody::GetCertificate(GetCertificateResponse {
                label: "A1S1_CERT".into(),
                chain: vec![cert.clone(), cert.clone(), cert.clone()],
            }),
        ),
        resp(
            10,
            ResponseBody::GetCaCertificates(vec![
                CaCertificate {
                    label: "CA".into(),
                    der: cert.clone(),
                },
                CaCertificate {
                    label: "Sub CA".into(),
                    der: cert,
                },
            ]),
        ),
        resp(10, ResponseBody::GetCaCertificates(vec![])),
        (
            Message::ok(
                c(99),
                ResponseBody::Mgmt(MgmtResponse {
                    nmi: b"an NMI response".to_vec(),
                }),
            ),
            Role::Server,
        ),
        (
            Message::error(
                c(4),
                MessageType::SIGN,
                Status::new(Rc::EACCES, Rsn::CERT_NOT_AUTHORIZED),
            ),
            Role::Client,
        ),
        (
            Message::Response {
                correlator: c(1),
                status: Status::new(Rc::EINVAL, Rsn::BAD_VERSION),
                body: ResponseBody::Failed {
                    msg_type: MessageType::CONNECT,
                    server_api_versions: vec![1, 2],
                },
            },
            Role::Client,
        ),
        (
            Message::Terminate {
                correlator: Correlator::ZERO,
                status: Status::new(Rc::ESHUTDOWN, Rsn::SERVER_SHUTDOWN),
            },
            Role::Client,
        ),
        (
            Message::Terminate {
                correlator: c(3),
                status: Status::new(Rc::EINVAL, Rsn::PROTOCOL_VIOLATION),
            },
            Role::Server,
        ),
    ]
}

#[test]
fn every_message_round_trips_byte_for_byte() {
    for (m, receiver) in samples() {
        let bytes = m.encode().unwrap_or_else(|e| panic!("{m:?}: {e}"));
        let back = Message::decode_frame(&bytes, MAX_FRAME_LEN, receiver)
            .unwrap_or_else(|e| panic!("{m:?}: {e}"));
        assert_eq!(back, m);
        assert_eq!(back.encode().unwrap(), bytes, "canonical encoding");
        // Every strict prefix of the body is rejected (never a panic).
        let header = Header::parse_prefix(&bytes, MAX_FRAME_LEN).unwrap();
        for cut in HEADER_LEN..bytes.len() {
            assert!(Message::decode(&header, &bytes[HEADER_LEN..cut], receiver).is_err());
        }
    }
}

#[test]
fn connect_golden_bytes() {
    let m = Message::Request {
        correlator: Correlator::new(0x40, 0),
        request: Request::Keepalive,
    };
    let b = m.encode().unwrap();
    let expect: Vec<u8> = [
        b"GKNS".as_slice(),
        &[1, 0, 0, 3],
        &[0, 0, 0, 40],
        &[0; 12],
        &[0, 0, 0, 0, 0, 0, 0, 0x40],
        &[0; 8],
    ]
    .concat();
    assert_eq!(b, expect);

    let m = Message::Request {
        correlator: Correlator::new(1, 0),
        request: Request::GetCertificate(GetCertificateRequest {
            label: Some("A b".into()),
        }),
    };
    let b = m.encode().unwrap();
    assert_eq!(&b[8..12], &[0, 0, 0, 49]);
    assert_eq!(&b[40..], &[0x00, 0x20, 0, 0, 0, 3, b'A', b' ', b'b']);
}

/// Build a request frame by hand from raw attributes.
fn raw(mt: MessageType, flags: u8, status: Status, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (ty, v) in attrs {
        body.extend_from_slice(&ty.to_be_bytes());
        body.extend_from_slice(&u32::try_from(v.len()).unwrap().to_be_bytes());
        body.extend_from_slice(v);
    }
    let h = Header {
        flags,
        msg_type: mt,
        length: u32::try_from(HEADER_LEN + body.len()).unwrap(),
        status,
        reserved: 0,
        correlator: c(5),
    };
    [h.encode().as_slice(), &body].concat()
}

fn server_decode(b: &[u8]) -> Result<Message, Error> {
    Message::decode_frame(b, MAX_FRAME_LEN, Role::Server)
}

#[test]
fn strict_request_decoding() {
    let sign = |attrs: &[(u16, &[u8])]| raw(MessageType::SIGN, 0, Status::OK, attrs);
    let alg = 2u16.to_be_bytes();
    let ok = sign(&[(t::SIGNATURE_ALGORITHM, &alg), (t::DATA, b"x")]);
    assert!(server_decode(&ok).is_ok());
    // Missing algorithm.
    assert_eq!(
        server_decode(&sign(&[(t::DATA, b"x")])),
        Err(Error::MissingAttribute {
            attr: t::SIGNATURE_ALGORITHM
        })
    );
    // Both inputs, no input, digest of the wrong length, PSS with a digest.
    assert!(matches!(
        server_decode(&sign(&[
            (t::SIGNATURE_ALGORITHM, &alg),
            (t::DATA, b"x"),
            (t::DIGEST, &[0; 32])
        ])),
        Err(Error::BadAttribute { .. })
    ));
    assert_eq!(
        server_decode(&sign(&[(t::SIGNATURE_ALGORITHM, &alg)])),
        Err(Error::MissingAttribute { attr: t::DATA })
    );
    assert!(matches!(
        server_decode(&sign(&[
            (t::SIGNATURE_ALGORITHM, &alg),
            (t::DIGEST, &[0; 20])
        ])),
        Err(Error::BadAttribute {
            attr: t::DIGEST,
            ..
        })
    ));
    assert!(matches!(
        server_decode(&sign(&[
            (t::SIGNATURE_ALGORITHM, &5u16.to_be_bytes()),
            (t::DIGEST, &[0; 32])
        ])),
        Err(Error::BadAttribute {
            attr: t::DIGEST,
            ..
        })
    ));
    // Unknown algorithm, wrong integer width.
    assert!(matches!(
        server_decode(&sign(&[
            (t::SIGNATURE_ALGORITHM, &99u16.to_be_bytes()),
            (t::DATA, b"x")
        ])),
        Err(Error::BadAttribute { .. })
    ));
    assert!(matches!(
        server_decode(&sign(&[(t::SIGNATURE_ALGORITHM, &[2]), (t::DATA, b"x")])),
        Err(Error::BadAttribute { .. })
    ));
    // Duplicate, unknown, and an unknown extension (skipped).
    assert_eq!(
        server_decode(&sign(&[
            (t::SIGNATURE_ALGORITHM, &alg),
            (t::SIGNATURE_ALGORITHM, &alg),
            (t::DATA, b"x")
        ])),
        Err(Error::DuplicateAttribute {
            attr: t::SIGNATURE_ALGORITHM
        })
    );
    assert_eq!(
        server_decode(&sign(&[
            (t::SIGNATURE_ALGORITHM, &alg),
            (t::DATA, b"x"),
            (0x0777, b"")
        ])),
        Err(Error::UnknownAttribute { attr: 0x0777 })
    );
    assert!(
        server_decode(&sign(&[
            (t::SIGNATURE_ALGORITHM, &alg),
            (t::DATA, b"x"),
            (0x8777, b"zz")
        ]))
        .is_ok()
    );
    // A label with a control character.
    assert!(matches!(
        server_decode(&sign(&[
            (t::CERT_LABEL, b"a\nb"),
            (t::SIGNATURE_ALGORITHM, &alg),
            (t::DATA, b"x")
        ])),
        Err(Error::BadAttribute {
            attr: t::CERT_LABEL,
            ..
        })
    ));
    // Reserved flag bits, codes in a request, unknown type.
    let mut b = ok.clone();
    b[5] = 0x80;
    assert_eq!(server_decode(&b), Err(Error::ReservedNonzero));
    let mut b = ok.clone();
    b[23] = 1;
    assert_eq!(server_decode(&b), Err(Error::ReservedNonzero));
    assert_eq!(
        server_decode(&raw(
            MessageType::SIGN,
            0,
            Status::new(Rc::EIO, Rsn::NONE),
            &[]
        )),
        Err(Error::ReservedNonzero)
    );
    assert_eq!(
        server_decode(&raw(MessageType(0x0999), 0, Status::OK, &[])),
        Err(Error::BadType(0x0999))
    );
    // Wrong direction: a client may not send MGMT_REQUEST requests.
    assert_eq!(
        server_decode(&raw(
            MessageType::MGMT_REQUEST,
            0,
            Status::OK,
            &[(t::NMI_MESSAGE, b"x")]
        )),
        Err(Error::WrongDirection(MessageType::MGMT_REQUEST))
    );
}

#[test]
fn connect_field_rules() {
    type Attrs = Vec<(u16, Vec<u8>)>;
    let base: Attrs = vec![
        (t::CLIENT_NAME, b"C1".to_vec()),
        (t::STACK_NAME, b"s".to_vec()),
        (t::SYSTEM_NAME, b"S".to_vec()),
        (t::USER_ID, b"U".to_vec()),
        (t::AUTH_METHOD, vec![1]),
        (t::CREDENTIAL, b"pw".to_vec()),
        (t::SERVICES, 3u32.to_be_bytes().to_vec()),
        (t::API_VERSION, 1u16.to_be_bytes().to_vec()),
    ];
    let build = |f: &dyn Fn(&mut Attrs)| {
        let mut a = base.clone();
        f(&mut a);
        let refs: Vec<(u16, &[u8])> = a.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        server_decode(&raw(MessageType::CONNECT, 0, Status::OK, &refs))
    };
    assert!(build(&|_| {}).is_ok());
    assert!(build(&|a| a[0].1 = b"a client name longer than 24".to_vec()).is_err());
    assert!(build(&|a| a[0].1 = b"with blank".to_vec()).is_err());
    assert!(build(&|a| a[4].1 = vec![3]).is_err());
    assert!(build(&|a| a[6].1 = 4u32.to_be_bytes().to_vec()).is_err());
    assert!(build(&|a| a[5].1 = Vec::new()).is_err());
    assert!(build(&|a| a[5].1 = vec![b'x'; 257]).is_err());
    assert_eq!(
        build(&|a| {
            a.pop();
        }),
        Err(Error::MissingAttribute {
            attr: t::API_VERSION
        })
    );
    // Several API versions are a list, in order.
    let m = build(&|a| a.push((t::API_VERSION, 2u16.to_be_bytes().to_vec()))).unwrap();
    match m {
        Message::Request {
            request: Request::Connect(c),
            ..
        } => assert_eq!(c.api_versions, vec![1, 2]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn responses_are_checked_and_errors_are_fatal() {
    let client = |b: &[u8]| Message::decode_frame(b, MAX_FRAME_LEN, Role::Client);
    // A failed response must have an empty body (apart from the CONNECT case).
    let b = raw(
        MessageType::SIGN,
        FLAG_RESPONSE,
        Status::new(Rc::EACCES, Rsn::NONE),
        &[(t::SIGNATURE, b"x")],
    );
    let e = client(&b).unwrap_err();
    let h = Header::parse_prefix(&b, MAX_FRAME_LEN).unwrap();
    assert!(e.is_fatal_for(&h));
    assert!(matches!(error_reply(Some(&h), &e), Reply::Terminate(_)));
    // The server never receives SIGN responses.
    let b = raw(MessageType::SIGN, FLAG_RESPONSE, Status::OK, &[]);
    assert_eq!(
        server_decode(&b),
        Err(Error::WrongDirection(MessageType::SIGN))
    );
    // A TERMINATE with the response flag is a protocol violation.
    let b = raw(MessageType::TERMINATE, FLAG_RESPONSE, Status::OK, &[]);
    assert!(client(&b).is_err());
    // A request error is answered, same type and correlator.
    let b = raw(MessageType::SIGN, 0, Status::OK, &[]);
    let h = Header::parse_prefix(&b, MAX_FRAME_LEN).unwrap();
    let e = server_decode(&b).unwrap_err();
    match error_reply(Some(&h), &e) {
        Reply::Respond(Message::Response {
            correlator,
            status,
            body,
        }) => {
            assert_eq!(correlator, c(5));
            assert_eq!(status, Status::new(Rc::EINVAL, Rsn::MISSING_ATTRIBUTE));
            assert_eq!(body.msg_type(), MessageType::SIGN);
        }
        other => panic!("{other:?}"),
    }
    // Unknown type: answered with the unknown type echoed.
    let b = raw(MessageType(0x0abc), 0, Status::OK, &[]);
    let h = Header::parse_prefix(&b, MAX_FRAME_LEN).unwrap();
    let e = server_decode(&b).unwrap_err();
    let Reply::Respond(m) = error_reply(Some(&h), &e) else {
        panic!("should respond")
    };
    let bytes = m.encode().unwrap();
    assert_eq!(&bytes[6..8], &[0x0a, 0xbc]);
    assert_eq!(
        client(&bytes),
        Err(Error::BadType(0x0abc)),
        "the client cannot decode a response to a type it never sends"
    );
}

#[test]
fn encoder_refuses_invalid_messages() {
    let too_big = Message::Request {
        correlator: c(1),
        request: Request::Sign(SignRequest {
            label: None,
            algorithm: SignatureAlgorithm::RsaPssSha256,
            input: SignInput::Data(vec![0; limits::DATA + 1]),
        }),
    };
    assert!(too_big.encode().is_err());
    let bad_input = Message::Request {
        correlator: c(1),
        request: Request::Sign(SignRequest {
            label: None,
            algorithm: SignatureAlgorithm::RsaPssSha256,
            input: SignInput::Digest(vec![0; 32]),
        }),
    };
    assert!(bad_input.encode().is_err());
    let ok_with_failed = Message::Response {
        correlator: c(1),
        status: Status::OK,
        body: ResponseBody::failed(MessageType::SIGN),
    };
    assert!(ok_with_failed.encode().is_err());
    let err_with_body = Message::Response {
        correlator: c(1),
        status: Status::new(Rc::EIO, Rsn::NONE),
        body: ResponseBody::Keepalive,
    };
    assert!(err_with_body.encode().is_err());
    let huge_nmi = Message::Request {
        correlator: c(1),
        request: Request::Mgmt(MgmtRequest {
            nmi: vec![0; MAX_FRAME_LEN],
            requester: None,
        }),
    };
    assert!(huge_nmi.encode().is_err());
    let max_nmi = Message::Request {
        correlator: c(1),
        request: Request::Mgmt(MgmtRequest {
            nmi: vec![0; limits::NMI_MESSAGE],
            requester: Some("R".into()),
        }),
    };
    let b = max_nmi.encode().unwrap();
    assert!(b.len() <= MAX_FRAME_LEN);
    assert_eq!(
        Message::decode_frame(&b, MAX_FRAME_LEN, Role::Client).unwrap(),
        max_nmi
    );
}

#[test]
fn frame_reader_splits_a_stream_at_any_boundary() {
    let frames: Vec<(Vec<u8>, Message)> = samples()
        .into_iter()
        .filter(|(_, r)| *r == Role::Server)
        .map(|(m, _)| (m.encode().unwrap(), m))
        .collect();
    let stream: Vec<u8> = frames.iter().flat_map(|(b, _)| b.clone()).collect();
    for chunk in [1usize, 3, 39, 40, 41, 1000] {
        let mut r = FrameReader::new(Role::Server, MAX_FRAME_LEN);
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            r.feed(piece);
            while let Some(f) = r.next_frame().unwrap() {
                match f {
                    Frame::Message(m) => got.push(m),
                    Frame::Rejected { error, .. } => panic!("{error}"),
                }
            }
        }
        assert_eq!(r.buffered(), 0);
        assert_eq!(
            got,
            frames.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn frame_reader_rejects_bad_frames_and_stays_in_sync() {
    let mut r = FrameReader::new(Role::Server, MAX_PREAUTH_FRAME_LEN);
    // A malformed request, then a good one: both come out, in order.
    r.feed(&raw(MessageType::SIGN, 0, Status::OK, &[]));
    r.feed(
        &Message::Request {
            correlator: c(6),
            request: Request::Keepalive,
        }
        .encode()
        .unwrap(),
    );
    assert!(matches!(
        r.next_frame(),
        Ok(Some(Frame::Rejected {
            error: Error::MissingAttribute { .. },
            ..
        }))
    ));
    assert!(matches!(r.next_frame(), Ok(Some(Frame::Message(_)))));
    // Oversized before login: fatal, and nothing after it.
    let big = Message::Request {
        correlator: c(7),
        request: Request::Sign(SignRequest {
            label: None,
            algorithm: SignatureAlgorithm::RsaPssSha256,
            input: SignInput::Data(vec![0; 20_000]),
        }),
    }
    .encode()
    .unwrap();
    r.feed(&big[..40]);
    assert!(matches!(r.next_frame(), Err(Error::ExcessiveSize { .. })));
    r.feed(&big);
    assert_eq!(r.next_frame(), Ok(None));
    // Garbage (a plaintext client): bad ident.
    let mut r = FrameReader::new(Role::Server, MAX_FRAME_LEN);
    r.feed(b"GET / HTTP/1.1\r\nHost: nss\r\n\r\n++++++++++");
    assert_eq!(r.next_frame(), Err(Error::BadIdent));
    // After raising the limit the big frame passes.
    let mut r = FrameReader::new(Role::Server, MAX_PREAUTH_FRAME_LEN);
    r.set_limit(MAX_FRAME_LEN);
    r.feed(&big);
    assert!(matches!(r.next_frame(), Ok(Some(Frame::Message(_)))));
}

/// Writes the fuzz seed corpus (run with `NSS_WRITE_CORPUS=1`).
#[test]
fn seed_corpus_decodes_without_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frame_decoder");
    if std::env::var_os("NSS_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (m, r)) in samples().into_iter().enumerate() {
            let mut b = vec![u8::from(r == Role::Client)];
            b.extend(m.encode().unwrap());
            std::fs::write(dir.join(format!("seed-{i:02}-{}", m.msg_type())), b).unwrap();
        }
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("seed corpus missing at {}", dir.display());
    };
    let mut n = 0;
    for e in entries {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        let (role, rest) = b.split_first().unwrap();
        let role = if *role & 1 == 1 {
            Role::Client
        } else {
            Role::Server
        };
        let mut r = FrameReader::new(role, MAX_FRAME_LEN);
        r.feed(rest);
        assert!(matches!(r.next_frame(), Ok(Some(Frame::Message(_)))));
        n += 1;
    }
    assert!(n >= 20, "only {n} seeds");
}
