//! Wire round trips: every payload, and IKE messages captured from strongSwan 5.9.8.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;

use ike_proto::IdType;
use ike_proto::wire::*;

const SS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/strongswan/");

fn captures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(SS).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "bin") {
                out.push((f.display().to_string(), std::fs::read(&f).unwrap()));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 12, "captures missing");
    out
}

#[test]
fn strongswan_captures_round_trip_byte_for_byte() {
    for (name, bytes) in captures() {
        let m = Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.encode(), bytes, "{name}");
        assert_eq!(m.header.major_version(), 2);
    }
}

#[test]
fn strongswan_ike_sa_init_contents() {
    let bytes = std::fs::read(format!("{SS}psk-x25519-aes256gcm/01-ike-sa-init-req.bin")).unwrap();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
    assert!(m.header.flags.initiator() && !m.header.flags.response());
    assert_eq!(m.header.spi_r, 0);
    assert_eq!(m.header.message_id, 0);
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!("first payload {:?}", m.payloads[0]);
    };
    let p = &sa.proposals[0];
    assert_eq!(p.protocol, ProtocolId::IKE);
    assert!(p.transforms.iter().any(|t| t.ty == TransformType::ENCR
        && t.id == EncrId::AES_GCM_16.0
        && t.key_length() == Some(256)));
    assert!(
        p.transforms
            .iter()
            .any(|t| t.ty == TransformType::DH && t.id == DhGroup::CURVE25519.0)
    );
    let Payload::Ke(ke) = &m.payloads[1] else {
        panic!()
    };
    assert_eq!(ke.group, DhGroup::CURVE25519);
    assert_eq!(ke.data.len(), 32);
    assert!(matches!(&m.payloads[2], Payload::Nonce(n) if n.len() == 32));
    let notifies: Vec<NotifyType> = m
        .payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some(n.ty),
            _ => None,
        })
        .collect();
    for n in [
        NotifyType::NAT_DETECTION_SOURCE_IP,
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType::SIGNATURE_HASH_ALGORITHMS,
    ] {
        assert!(notifies.contains(&n), "{n} missing from {notifies:?}");
    }
    // IKE_AUTH is one SK payload whose first inner payload is IDi.
    let bytes = std::fs::read(format!("{SS}psk-x25519-aes256gcm/03-ike-auth-req.bin")).unwrap();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.payloads.len(), 1);
    let Payload::Encrypted(sk) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!(sk.first_inner, PayloadType::IDI);
}

fn every_payload() -> Vec<Payload> {
    vec![
        Payload::Sa(Sa {
            proposals: vec![
                Proposal {
                    number: 1,
                    protocol: ProtocolId::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform::with_key_length(TransformType::ENCR, EncrId::AES_GCM_16.0, 256),
                        Transform::new(TransformType::PRF, PrfId::HMAC_SHA2_256.0),
                        Transform::new(TransformType::DH, DhGroup::CURVE25519.0),
                        Transform {
                            ty: TransformType(200),
                            id: 7,
                            attrs: vec![TransformAttr::Tlv(3, vec![1, 2, 3])],
                        },
                    ],
                },
                Proposal {
                    number: 2,
                    protocol: ProtocolId::ESP,
                    spi: vec![1, 2, 3, 4],
                    transforms: vec![Transform::new(TransformType::ESN, 0)],
                },
            ],
        }),
        Payload::Ke(Ke {
            group: DhGroup::ECP_256,
            data: vec![9; 64],
        }),
        Payload::IdI(IdPayload {
            id_type: IdType::FQDN,
            reserved: [0; 3],
            data: b"gw.example.com".to_vec(),
        }),
        Payload::IdR(IdPayload {
            id_type: IdType::IPV4_ADDR,
            reserved: [0, 0, 1],
            data: vec![192, 0, 2, 1],
        }),
        Payload::Cert(Cert {
            encoding: CertEncoding::X509_SIGNATURE,
            data: vec![0x30, 0x00],
        }),
        Payload::CertReq(Cert {
            encoding: CertEncoding::X509_SIGNATURE,
            data: vec![0xaa; 40],
        }),
        Payload::Auth(Auth {
            method: AuthMethod::PSK,
            data: vec![5; 32],
        }),
        Payload::Nonce(vec![7; 32]),
        Payload::Notify(Notify {
            protocol: ProtocolId::ESP,
            spi: vec![0, 0, 0, 1],
            ty: NotifyType::REKEY_SA,
            data: vec![],
        }),
        Payload::Notify(Notify::new(NotifyType(40000), vec![1, 2])),
        Payload::Delete(Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
        }),
        Payload::Delete(Delete {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: vec![],
        }),
        Payload::VendorId(b"gatekey".to_vec()),
        Payload::TsI(Ts {
            selectors: vec![
                TrafficSelector::Range {
                    ip_protocol: 0,
                    start_port: 0,
                    end_port: 65535,
                    start: "10.1.0.0".parse().unwrap(),
                    end: "10.1.0.255".parse().unwrap(),
                },
                TrafficSelector::Other {
                    ts_type: TsType(10),
                    body: vec![0, 0, 8, 1, 2, 3, 4],
                },
            ],
        }),
        Payload::TsR(Ts {
            selectors: vec![TrafficSelector::Range {
                ip_protocol: 6,
                start_port: 443,
                end_port: 443,
                start: "2001:db8::".parse::<IpAddr>().unwrap(),
                end: "2001:db8::ffff".parse::<IpAddr>().unwrap(),
            }],
        }),
        Payload::Cp(Cp {
            cfg_type: CfgType::REQUEST,
            attributes: vec![
                CfgAttribute {
                    ty: CfgAttrType::INTERNAL_IP4_ADDRESS,
                    value: vec![],
                },
                CfgAttribute {
                    ty: CfgAttrType::INTERNAL_IP4_DNS,
                    value: vec![10, 0, 0, 53],
                },
            ],
        }),
        Payload::Eap(vec![1, 1, 0, 4]),
        Payload::Unknown(Unknown {
            ty: PayloadType(150),
            critical: false,
            body: vec![1, 2, 3],
        }),
    ]
}

fn header(exchange: ExchangeType) -> Header {
    Header {
        spi_i: 0x0102030405060708,
        spi_r: 0x1112131415161718,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange,
        flags: Flags::new(true, false),
        message_id: 7,
        length: 0,
    }
}

#[test]
fn every_payload_round_trips() {
    let payloads = every_payload();
    // Each alone, then all in one chain.
    for p in &payloads {
        let m = Message {
            header: header(ExchangeType::INFORMATIONAL),
            payloads: vec![p.clone()],
        };
        let bytes = m.encode();
        let back = Message::decode(&bytes).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        assert_eq!(back.payloads, m.payloads);
        assert_eq!(back.encode(), bytes);
    }
    let (first, chain) = encode_payloads(&payloads);
    let back = decode_payloads(first, &chain, 0).unwrap();
    assert_eq!(back, payloads);
    // SK and SKF end a chain and name their first inner payload.
    for last in [
        Payload::Encrypted(Encrypted {
            first_inner: PayloadType::IDI,
            data: vec![3; 40],
        }),
        Payload::EncryptedFragment(EncryptedFragment {
            first_inner: PayloadType::IDI,
            number: 1,
            total: 3,
            data: vec![4; 40],
        }),
    ] {
        let m = Message {
            header: header(ExchangeType::IKE_AUTH),
            payloads: vec![Payload::VendorId(vec![1]), last],
        };
        let bytes = m.encode();
        assert_eq!(
            Message::decode(&bytes).unwrap(),
            Message {
                header: Message::decode(&bytes).unwrap().header,
                ..m.clone()
            }
        );
        assert_eq!(Message::decode(&bytes).unwrap().encode(), bytes);
    }
}

fn err_of(bytes: &[u8]) -> DecodeError {
    Message::decode(bytes).unwrap_err()
}

#[test]
fn malformed_messages_say_where() {
    let good = Message {
        header: header(ExchangeType::IKE_SA_INIT),
        payloads: every_payload(),
    }
    .encode();
    // Truncated datagram: the header length no longer matches.
    let e = err_of(&good[..good.len() - 1]);
    assert_eq!(e.offset, 24, "{e}");
    // Short header.
    assert!(Message::decode(&good[..20]).is_err());
    // A payload length running past the end.
    let mut bad = good.clone();
    bad[28 + 2] = 0xff;
    let e = err_of(&bad);
    assert_eq!(e.offset, 30, "{e}");
    assert!(e.context.contains("payload 1"), "{e}");
    // A transform length inside the SA payload.
    let mut bad = good.clone();
    // SA payload header (4) + proposal header (8) → first transform at 28+12; its length at +2.
    bad[28 + 12 + 3] = 4;
    let e = err_of(&bad);
    assert!(e.context.contains("proposal 1 / transform 1"), "{e}");
    // Trailing garbage after the last payload (fix up the header length).
    let mut bad = good.clone();
    bad.extend_from_slice(&[0, 0]);
    let len = bad.len() as u32;
    bad[24..28].copy_from_slice(&len.to_be_bytes());
    let e = err_of(&bad);
    assert!(e.reason.contains("after the last payload"), "{e}");
    // Unknown critical payload.
    let m = Message {
        header: header(ExchangeType::INFORMATIONAL),
        payloads: vec![Payload::Unknown(Unknown {
            ty: PayloadType(200),
            critical: true,
            body: vec![],
        })],
    };
    let e = err_of(&m.encode());
    assert_eq!(e.critical_payload, Some(PayloadType(200)));
    // Wrong major version.
    let mut bad = good.clone();
    bad[17] = 0x10;
    assert!(err_of(&bad).reason.contains("major version"));
    // Nonce too short.
    let m = Message {
        header: header(ExchangeType::IKE_SA_INIT),
        payloads: vec![Payload::Nonce(vec![1; 8])],
    };
    assert!(err_of(&m.encode()).reason.contains("nonce"));
    // Delete with inconsistent SPI count.
    let m = Message {
        header: header(ExchangeType::INFORMATIONAL),
        payloads: vec![Payload::Delete(Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![vec![1, 2, 3, 4]],
        })],
    };
    let mut bad = m.encode();
    bad[28 + 7] = 2;
    assert!(err_of(&bad).reason.contains("SPIs"));
}

#[test]
fn registry_names() {
    assert_eq!(format!("{}", NotifyType::COOKIE), "COOKIE");
    assert_eq!(format!("{:?}", NotifyType(50000)), "NotifyType(50000)");
    assert!(NotifyType::NO_PROPOSAL_CHOSEN.is_error());
    assert!(!NotifyType::INITIAL_CONTACT.is_error());
}
