//! ISAKMP wire round trips: every unencrypted message strongSwan 5.9.8 sent in the IKEv1
//! vectors re-encodes byte for byte, every payload type round-trips, and malformed input
//! is rejected with the place it went wrong.
#![expect(clippy::unwrap_used, reason = "tests")]

use std::net::IpAddr;

use ike_proto::IdType;
use ike_proto::ikev1::wire::*;
use ike_proto::wire::CertEncoding;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/ikev1/");

fn captures() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(DIR).unwrap() {
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
    assert!(out.len() >= 40, "captures missing");
    out
}

#[test]
fn strongswan_messages_round_trip_byte_for_byte() {
    let mut plain = 0;
    for (name, bytes) in captures() {
        let h = Header::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(h.version, VERSION_1_0, "{name}");
        assert_eq!(h.to_bytes(), bytes[..HEADER_LEN], "{name}");
        if h.flags.encrypted() {
            assert!(Message::decode(&bytes).is_err(), "{name}");
            continue;
        }
        let m = Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.encode(), bytes, "{name}");
        plain += 1;
    }
    assert!(plain >= 18);
}

#[test]
fn strongswan_main_mode_first_message() {
    let bytes = std::fs::read(format!("{DIR}mm-psk-modp2048-aes256-sha256/01-main-i.bin")).unwrap();
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.header.exchange, ExchangeType::IDENTITY_PROTECTION);
    assert_eq!(m.header.cookie_r, 0);
    assert_eq!(m.header.message_id, 0);
    let Payload::Sa(sa) = &m.payloads[0] else {
        panic!()
    };
    assert_eq!((sa.doi, sa.situation), (DOI_IPSEC, SIT_IDENTITY_ONLY));
    let p = &sa.proposals[0];
    assert_eq!(p.protocol, ProtocolId::ISAKMP);
    let t = &p.transforms[0];
    assert_eq!(t.id, KEY_IKE);
    assert_eq!(
        t.value(P1AttrType::ENCRYPTION_ALGORITHM.0),
        Some(u64::from(P1Encr::AES_CBC.0))
    );
    assert_eq!(t.value(P1AttrType::KEY_LENGTH.0), Some(256));
    assert_eq!(
        t.value(P1AttrType::HASH_ALGORITHM.0),
        Some(u64::from(P1Hash::SHA2_256.0))
    );
    assert_eq!(t.value(P1AttrType::GROUP_DESCRIPTION.0), Some(14));
    assert_eq!(t.value(P1AttrType::AUTHENTICATION_METHOD.0), Some(1));
    assert_eq!(t.value(P1AttrType::LIFE_TYPE.0), Some(1));
    assert!(t.value(P1AttrType::LIFE_DURATION.0).is_some());
    let vids = m
        .payloads
        .iter()
        .filter(|p| matches!(p, Payload::VendorId(_)))
        .count();
    assert_eq!(vids, 5);
    assert!(
        m.payloads
            .contains(&Payload::VendorId(vendor::NAT_T_RFC3947.to_vec()))
    );
    assert!(
        m.payloads
            .contains(&Payload::VendorId(vendor::DPD.to_vec()))
    );
}

fn sample_payloads() -> Vec<Payload> {
    vec![
        Payload::Sa(Sa {
            doi: DOI_IPSEC,
            situation: SIT_IDENTITY_ONLY,
            proposals: vec![
                Proposal {
                    number: 1,
                    protocol: ProtocolId::ESP,
                    spi: vec![1, 2, 3, 4],
                    transforms: vec![
                        Transform {
                            number: 1,
                            id: EspTransformId::AES.0,
                            attrs: vec![
                                Attribute::Tv(IpsecAttrType::SA_LIFE_TYPE.0, 1),
                                attr_basic_or_long(IpsecAttrType::SA_LIFE_DURATION.0, 86400),
                                Attribute::Tv(IpsecAttrType::SA_LIFE_TYPE.0, 2),
                                attr_basic_or_long(
                                    IpsecAttrType::SA_LIFE_DURATION.0,
                                    5_000_000_000,
                                ),
                                Attribute::Tv(IpsecAttrType::ENCAPSULATION_MODE.0, 1),
                                Attribute::Tv(IpsecAttrType::KEY_LENGTH.0, 256),
                            ],
                        },
                        Transform {
                            number: 2,
                            id: EspTransformId::AES_GCM_16.0,
                            attrs: vec![],
                        },
                    ],
                },
                Proposal {
                    number: 2,
                    protocol: ProtocolId(200),
                    spi: vec![],
                    transforms: vec![Transform {
                        number: 1,
                        id: 99,
                        attrs: vec![Attribute::Tlv(77, vec![9; 3])],
                    }],
                },
            ],
        }),
        Payload::Ke(vec![7; 32]),
        Payload::Id(IdPayload {
            id_type: IdType::IPV4_ADDR_SUBNET,
            protocol: 6,
            port: 443,
            data: vec![10, 0, 0, 0, 255, 0, 0, 0],
        }),
        Payload::Cert(CertPayload {
            encoding: CertEncoding::X509_SIGNATURE,
            data: vec![0x30, 0],
        }),
        Payload::CertReq(CertPayload {
            encoding: CertEncoding::X509_SIGNATURE,
            data: vec![],
        }),
        Payload::Hash(vec![1; 32]),
        Payload::Sig(vec![2; 256]),
        Payload::Nonce(vec![3; 32]),
        Payload::Notify(Notify::new(
            ProtocolId::ISAKMP,
            vec![4; 16],
            NotifyType::R_U_THERE,
            vec![0, 0, 0, 1],
        )),
        Payload::Notify(Notify::new(
            ProtocolId::ESP,
            vec![],
            NotifyType(40000),
            vec![],
        )),
        Payload::Delete(Delete {
            doi: DOI_IPSEC,
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: vec![vec![1, 1, 1, 1], vec![2, 2, 2, 2]],
        }),
        Payload::VendorId(vendor::DPD.to_vec()),
        Payload::NatD(vec![5; 32]),
        Payload::NatOa(NatOa {
            addr: "192.0.2.7".parse::<IpAddr>().unwrap(),
        }),
        Payload::NatOa(NatOa {
            addr: "2001:db8::7".parse::<IpAddr>().unwrap(),
        }),
        Payload::Unknown(Unknown {
            ty: PayloadType::ATTRIBUTE,
            body: vec![1, 0, 0, 0],
        }),
    ]
}

#[test]
fn every_payload_round_trips() {
    let payloads = sample_payloads();
    let m = Message {
        header: Header {
            cookie_i: 0x0102030405060708,
            cookie_r: 0x1112131415161718,
            next_payload: PayloadType::NONE,
            version: VERSION_1_0,
            exchange: ExchangeType::QUICK,
            flags: Flags(0),
            message_id: 0xdeadbeef,
            length: 0,
        },
        payloads: payloads.clone(),
    };
    let bytes = m.encode();
    let back = Message::decode(&bytes).unwrap();
    assert_eq!(back.payloads, payloads);
    assert_eq!(back.encode(), bytes);
    assert_eq!(back.header.next_payload, PayloadType::SA);
    // Lifetimes above 16 bits travel as 4- or 8-byte TLVs and read back.
    let Payload::Sa(sa) = &back.payloads[0] else {
        panic!()
    };
    let t = &sa.proposals[0].transforms[0];
    let durations: Vec<u64> = t
        .attrs
        .iter()
        .filter(|a| attr_type(a) == IpsecAttrType::SA_LIFE_DURATION.0)
        .filter_map(attr_value)
        .collect();
    assert_eq!(durations, [86400, 5_000_000_000]);
    // A decrypted body may carry cipher padding after the last payload.
    let (first, mut chain) = encode_payloads(&payloads[5..8]);
    let len = chain.len();
    chain.extend_from_slice(&[0; 15]);
    let (located, used) = decode_payloads(first, &chain, HEADER_LEN, Trailing::Padding).unwrap();
    assert_eq!(used, len);
    assert_eq!(located.len(), 3);
    assert_eq!(located[0].start, 0);
    assert_eq!(located[2].end, len);
    assert!(decode_payloads(first, &chain, HEADER_LEN, Trailing::Strict).is_err());
}

fn header_with(body: &[u8], first: PayloadType) -> Vec<u8> {
    let h = Header {
        cookie_i: 1,
        cookie_r: 0,
        next_payload: first,
        version: VERSION_1_0,
        exchange: ExchangeType::IDENTITY_PROTECTION,
        flags: Flags(0),
        message_id: 0,
        length: (HEADER_LEN + body.len()) as u32,
    };
    let mut v = Vec::new();
    h.encode(&mut v);
    v.extend_from_slice(body);
    v
}

#[test]
fn malformed_messages_say_where() {
    let good = Message {
        header: Header::decode(&header_with(&[], PayloadType::NONE)).unwrap(),
        payloads: sample_payloads()[..1].to_vec(),
    }
    .encode();
    // Length field disagreeing with the datagram.
    let mut m = good.clone();
    m.push(0);
    let e = Message::decode(&m).unwrap_err();
    assert_eq!(e.offset, 24);
    // IKEv2 version in an ISAKMP header.
    let mut m = good.clone();
    m[17] = 0x20;
    assert!(
        Header::decode(&m)
            .unwrap_err()
            .reason
            .contains("major version 2")
    );
    // Payload length running past the end.
    let mut m = good.clone();
    m[HEADER_LEN + 3] = 0xff;
    let e = Message::decode(&m).unwrap_err();
    assert_eq!(e.offset, HEADER_LEN + 2);
    assert!(e.context.contains("payload 1"), "{e}");
    // Transform count larger than the transforms present.
    let mut m = good.clone();
    m[HEADER_LEN + 4 + 8 + 7] = 3;
    let e = Message::decode(&m).unwrap_err();
    assert!(e.context.contains("proposal 1"), "{e}");
    // Unknown DOI.
    let mut m = good.clone();
    m[HEADER_LEN + 7] = 9;
    assert!(Message::decode(&m).unwrap_err().reason.contains("DOI 9"));
    // Nonce too short, delete without SPIs, NAT-OA with a bad address, empty hash.
    for (ty, body) in [
        (PayloadType::NONCE, vec![0u8; 4]),
        (PayloadType::D, vec![0, 0, 0, 1, 3, 4, 0, 0]),
        (PayloadType::D, vec![0, 0, 0, 1, 3, 4, 0, 2, 1, 2, 3, 4]),
        (PayloadType::NAT_OA, vec![1, 0, 0, 0, 1, 2, 3]),
        (PayloadType::HASH, vec![]),
        (PayloadType::N, vec![0, 0, 0, 1, 3, 16, 0, 14, 1]),
    ] {
        let mut b = vec![0, 0];
        b.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        b.extend_from_slice(&body);
        let e = Message::decode(&header_with(&b, ty)).unwrap_err();
        assert!(e.offset >= HEADER_LEN, "{ty}: {e}");
    }
    // Truncated header.
    assert!(Header::decode(&good[..20]).is_err());
    // Payload chains that never end.
    let mut b = vec![PayloadType::HASH.0, 0, 0, 5, 1];
    b.extend_from_slice(&b.clone());
    assert!(Message::decode(&header_with(&b, PayloadType::HASH)).is_err());
}

#[test]
fn registry_names() {
    assert_eq!(format!("{}", NotifyType::R_U_THERE), "R_U_THERE");
    assert_eq!(format!("{}", NotifyType(7777)), "NotifyType(7777)");
    assert_eq!(format!("{:?}", ExchangeType::QUICK), "QUICK");
    assert!(NotifyType::NO_PROPOSAL_CHOSEN.is_error());
    assert!(!NotifyType::INITIAL_CONTACT.is_error());
}
