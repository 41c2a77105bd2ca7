//! Wire round trips for every message type, strict decoding, and doc/schema agreement.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions panic on failure by design"
)]

use gatekey_nmi::records::*;
use gatekey_nmi::samples;
use gatekey_nmi::*;

fn target(s: &str) -> Target {
    Target::new(s).expect("valid target")
}

#[test]
fn every_request_round_trips_byte_for_byte() {
    let reqs = samples::requests();
    let mut seen = std::collections::BTreeSet::new();
    for (i, req) in reqs.iter().enumerate() {
        let t = target("default");
        let v = req.msg_type().min_version();
        let frame = Frame::request(req, v, i as u32 + 100, Some(&t)).expect("encode");
        let bytes = frame.to_bytes();
        let parsed = Frame::parse(&bytes, MAX_REQUEST).expect("parse");
        assert_eq!(parsed, frame);
        assert_eq!(
            parsed.header.check_request(MAX_VERSION),
            Ok(Some(t.clone()))
        );
        let decoded = Request::decode(parsed.header.msg_type, &parsed.body).expect("decode");
        assert_eq!(&decoded, req, "{}", req.msg_type());
        // Emit again: same bytes.
        let again = Frame::request(&decoded, v, i as u32 + 100, Some(&t)).expect("encode");
        assert_eq!(again.to_bytes(), bytes);
        seen.insert(req.msg_type());
    }
    for t in MsgType::REQUESTS {
        assert!(seen.contains(&t), "no sample request for {t}");
    }
}

#[test]
fn every_response_round_trips_byte_for_byte() {
    for req in samples::requests() {
        let t = target("default");
        let rh = Header::request(req.msg_type(), req.msg_type().min_version(), 9, Some(&t));
        let resp = samples::response_for(&req);
        assert!(resp.answers(req.msg_type()));
        let frame = Frame::response(&rh, Some(&t), &resp).expect("encode");
        assert!(frame.header.is_response());
        assert_eq!(frame.header.correlator, 9);
        let bytes = frame.to_bytes();
        let parsed = Frame::parse(&bytes, MAX_RESPONSE).expect("parse");
        let decoded = Response::decode(parsed.header.msg_type, &parsed.body).expect("decode");
        assert_eq!(decoded, resp, "{}", req.msg_type());
        let again = Frame::response(&rh, Some(&t), &decoded).expect("encode");
        assert_eq!(again.to_bytes(), bytes);
    }
}

#[test]
fn responses_are_checked_against_the_request_type() {
    let resp = samples::response_for(&Request::GetSummary);
    assert!(resp.answers(MsgType::GET_SUMMARY));
    assert!(!resp.answers(MsgType::GET_IKETUN));
    // A summary body does not decode as an IKE tunnel list.
    let body = resp.encode_body().expect("encode");
    assert!(Response::decode(MsgType::GET_IKETUN, &body).is_err());
    assert!(Response::decode(MsgType::INIT, &body).is_err());
}

#[test]
fn init_and_term_round_trip() {
    let info = samples::server_info();
    let init = Frame::init(&info).expect("init");
    let bytes = init.to_bytes();
    let p = Frame::parse(&bytes, MAX_RESPONSE).expect("parse");
    assert_eq!(p.header.msg_type, MsgType::INIT);
    assert_eq!(p.header.version, info.max_version);
    assert!(p.header.is_response());
    let back: ServerInfo = serde_json::from_slice(&p.body).expect("info");
    assert_eq!(back, info);
    // The INIT example of docs/nmi-protocol.md §10, byte for byte.
    let doc_body = br#"{"server":"iked","software_version":"0.1.0","system_name":"GW1","min_version":1,"max_version":2}"#;
    assert_eq!(p.body, doc_body);
    assert_eq!(
        &bytes[..32],
        &[
            0x47, 0x4b, 0x4e, 0x4d, 0x00, 0x40, 0x00, 0x02, 0x00, 0x01, 0x00, 0x01, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x60, 0, 0, 0, 0,
        ]
    );

    let f = Failure::not_authorized("EZB.IPSECCMD.GW1.default.CONTROL");
    let term = Frame::term(1, &f);
    let p = Frame::parse(&term.to_bytes(), MAX_RESPONSE).expect("parse");
    assert_eq!(p.header.msg_type, MsgType::TERM);
    assert_eq!(p.header.rc, ReturnCode::EACCES);
    let info = p.error_info().expect("error info");
    assert_eq!(
        info.profile.as_deref(),
        Some("EZB.IPSECCMD.GW1.default.CONTROL")
    );
}

fn rsn(r: Result<Request, Failure>) -> Option<ReasonCode> {
    r.err().map(|f| f.rsn)
}

#[test]
fn strict_request_bodies() {
    let t = MsgType::GET_IKETUN;
    assert_eq!(
        Request::decode(t, b""),
        Ok(Request::GetIkeTun(Selection::default()))
    );
    assert_eq!(
        Request::decode(t, b"{}"),
        Ok(Request::GetIkeTun(Selection::default()))
    );
    assert_eq!(
        rsn(Request::decode(t, br#"{"tunnel":"K1"}"#)),
        Some(ReasonCode::BAD_BODY)
    );
    assert_eq!(
        rsn(Request::decode(
            t,
            br#"{"tunnel_id":"K1","tunnel_id":"K2"}"#
        )),
        Some(ReasonCode::BAD_BODY)
    );
    assert_eq!(
        rsn(Request::decode(t, br#"{"all_sas":1}"#)),
        Some(ReasonCode::BAD_BODY)
    );
    assert_eq!(rsn(Request::decode(t, b"{")), Some(ReasonCode::BAD_BODY));
    assert_eq!(
        rsn(Request::decode(t, b"\xff\xfe")),
        Some(ReasonCode::BAD_BODY)
    );
    assert_eq!(
        rsn(Request::decode(t, br#"{} {}"#)),
        Some(ReasonCode::BAD_BODY)
    );
    // Body where none is allowed; none where one is required.
    assert_eq!(
        rsn(Request::decode(MsgType::GET_SUMMARY, b"{}")),
        Some(ReasonCode::MSG_SIZE)
    );
    assert_eq!(
        rsn(Request::decode(MsgType::ACT_IPTUNDYN, b"")),
        Some(ReasonCode::MSG_SIZE)
    );
    assert_eq!(
        rsn(Request::decode(MsgType::TRAFFIC_TEST, b"")),
        Some(ReasonCode::MSG_SIZE)
    );
    // Control: 1..=64 tunnels.
    let empty = br#"{"tunnels":[]}"#;
    assert_eq!(
        rsn(Request::decode(MsgType::DEACT_IPTUNDYN, empty)),
        Some(ReasonCode::BAD_BODY)
    );
    let many = serde_json::to_vec(&TunnelControl {
        tunnels: vec![
            TunnelRef {
                tunnel_id: Some("Y1".into()),
                ..TunnelRef::default()
            };
            65
        ],
    })
    .expect("json");
    assert_eq!(
        rsn(Request::decode(MsgType::DEACT_IPTUNDYN, &many)),
        Some(ReasonCode::BAD_BODY)
    );
    // Traffic test: addresses must be addresses, protocol a u8.
    let bad = br#"{"source":"10.1.1.1","destination":"nope","protocol":6,"source_port":0,"destination_port":22,"security_class":0}"#;
    assert_eq!(
        rsn(Request::decode(MsgType::TRAFFIC_TEST, bad)),
        Some(ReasonCode::BAD_BODY)
    );
    let bad = br#"{"source":"10.1.1.1","destination":"10.1.1.2","protocol":256,"source_port":0,"destination_port":22,"security_class":0}"#;
    assert_eq!(
        rsn(Request::decode(MsgType::TRAFFIC_TEST, bad)),
        Some(ReasonCode::BAD_BODY)
    );
    // Unassigned and server-only types.
    assert_eq!(
        rsn(Request::decode(MsgType::INIT, b"")),
        Some(ReasonCode::BAD_TYPE)
    );
    assert_eq!(
        rsn(Request::decode(MsgType(40), b"")),
        Some(ReasonCode::BAD_TYPE)
    );
}

#[test]
fn refresh_config_round_trip_and_strictness() {
    // Version 2, empty body, CONTROL; the response is a ConfigRefreshResult.
    let f = Frame::request(&Request::RefreshConfig, 2, 7, None).expect("encode");
    assert!(f.body.is_empty());
    assert_eq!(f.header.check_request(MAX_VERSION), Ok(None));
    assert_eq!(MsgType::REFRESH_CONFIG.access(), Some(Access::Control));
    let v1 = Frame::request(&Request::RefreshConfig, 1, 7, None).expect("encode");
    assert_eq!(
        v1.header.check_request(MAX_VERSION).err().map(|f| f.rsn),
        Some(ReasonCode::BAD_TYPE)
    );
    assert_eq!(
        rsn(Request::decode(MsgType::REFRESH_CONFIG, b"{}")),
        Some(ReasonCode::MSG_SIZE)
    );
    let resp = samples::response_for(&Request::RefreshConfig);
    let body = resp.encode_body().expect("encode");
    assert_eq!(
        std::str::from_utf8(&body).expect("utf-8"),
        r#"{"server":"iked","config_file":"/etc/security/iked.conf","refreshed_at":1709294460,"changes":["stack red added","stack default changed"]}"#
    );
    assert!(
        Response::decode(
            MsgType::REFRESH_CONFIG,
            br#"{"server":"nssd","config_file":"x","refreshed_at":1}"#
        )
        .is_err()
    );
    assert!(
        Response::decode(
            MsgType::REFRESH_CONFIG,
            br#"{"server":"nssd","config_file":"x","refreshed_at":1,"changes":[],"extra":0}"#
        )
        .is_err()
    );
    assert!(!resp.answers(MsgType::REFRESH_IKETUN));
    // The rejection reason.
    let f = Failure::config_rejected("/etc/security/nssd.conf:3:7: unknown keyword Prot");
    assert_eq!(
        (f.rc, f.rsn),
        (ReturnCode::EINVAL, ReasonCode::CONFIG_REJECTED)
    );
    assert_eq!(
        ReasonCode::CONFIG_REJECTED.name(),
        Some("GkRsnConfigRejected")
    );
}

#[test]
fn strict_response_bodies() {
    let mut v: serde_json::Value = serde_json::from_slice(
        &samples::response_for(&Request::GetIkeTun(Selection::default()))
            .encode_body()
            .expect("encode"),
    )
    .expect("json");
    // hex64 is exactly 0x + 16 lowercase digits.
    v["records"][0]["initiator_spi"] = "0x0123456789ABCDEF".into();
    let body = serde_json::to_vec(&v).expect("json");
    assert!(Response::decode(MsgType::GET_IKETUN, &body).is_err());
    v["records"][0]["initiator_spi"] = "0x0123456789abcdef".into();
    v["records"][0]["surprise"] = 1.into();
    let body = serde_json::to_vec(&v).expect("json");
    assert!(Response::decode(MsgType::GET_IKETUN, &body).is_err());
    v["records"][0]
        .as_object_mut()
        .expect("object")
        .remove("surprise");
    v["records"][0]
        .as_object_mut()
        .expect("object")
        .remove("state");
    let body = serde_json::to_vec(&v).expect("json");
    assert!(Response::decode(MsgType::GET_IKETUN, &body).is_err());
    v["records"][0]["state"] = "sleeping".into();
    let body = serde_json::to_vec(&v).expect("json");
    assert!(Response::decode(MsgType::GET_IKETUN, &body).is_err());
    v["records"][0]["state"] = "done".into();
    let body = serde_json::to_vec(&v).expect("json");
    assert!(Response::decode(MsgType::GET_IKETUN, &body).is_ok());
}

#[test]
fn json_shape_of_an_ike_tunnel() {
    let j = serde_json::to_value(samples::ike_tunnel()).expect("json");
    assert_eq!(j["tunnel_id"], "K1");
    assert_eq!(j["ike_version"], "2.0");
    assert_eq!(j["remote_id_type"], "ID_KEY_ID");
    assert_eq!(j["initiator_spi"], "0x0123456789abcdef");
    assert_eq!(j["state"], "done");
    assert_eq!(j["certificate_service"], "nss");
    assert!(
        j.get("exchange_mode").is_none(),
        "unset optional fields are omitted"
    );
    let j = serde_json::to_value(samples::ike_tunnel_v1()).expect("json");
    assert_eq!(j["ike_version"], "1.0");
    assert_eq!(j["exchange_mode"], "main");
    let j = serde_json::to_value(samples::filters()).expect("json");
    assert_eq!(j[0]["type"], "dynamic");
    assert_eq!(j[0]["source_address"], "10.1.0.0");
}

fn collect_keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.insert(k.clone());
                collect_keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

/// Every JSON key the crate emits is documented in docs/nmi-protocol.md.
#[test]
fn every_key_is_documented() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/nmi-protocol.md"
    ))
    .expect("docs/nmi-protocol.md");
    let mut keys = std::collections::BTreeSet::new();
    for req in samples::requests() {
        let b = req.encode_body().expect("encode");
        if !b.is_empty() {
            collect_keys(&serde_json::from_slice(&b).expect("json"), &mut keys);
        }
        let b = samples::response_for(&req).encode_body().expect("encode");
        collect_keys(&serde_json::from_slice(&b).expect("json"), &mut keys);
    }
    collect_keys(
        &serde_json::to_value(samples::server_info()).expect("json"),
        &mut keys,
    );
    collect_keys(
        &serde_json::to_value(samples::ike_tunnel_v1()).expect("json"),
        &mut keys,
    );
    collect_keys(
        &serde_json::to_value(samples::manual_tunnel()).expect("json"),
        &mut keys,
    );
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")) && !doc.contains(&format!("\"{k}\":")))
        .collect();
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    assert!(keys.len() > 150, "only {} keys collected", keys.len());
}

#[test]
fn frame_parse_rejects_bad_lengths() {
    let f = Frame::request(&Request::GetSummary, 1, 1, None).expect("encode");
    let mut b = f.to_bytes();
    b.push(0);
    assert_eq!(
        Frame::parse(&b, MAX_REQUEST).err().map(|f| f.rsn),
        Some(ReasonCode::MSG_SIZE)
    );
    assert_eq!(
        Frame::parse(&b[..10], MAX_REQUEST).err().map(|f| f.rsn),
        Some(ReasonCode::MSG_SIZE)
    );
    b.pop();
    b[0] = b'X';
    assert_eq!(
        Frame::parse(&b, MAX_REQUEST).err().map(|f| f.rsn),
        Some(ReasonCode::BAD_IDENT)
    );
}

#[test]
fn tunnel_status_codes() {
    use TunnelStatus::*;
    let all = [
        NotFound,
        StateUpdated,
        StateAlreadySet,
        NotAllowed,
        NoKer,
        NoFilter,
        NoDataOffer,
        Failed,
    ];
    let codes: Vec<u8> = all.iter().map(|s| s.code()).collect();
    assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(StateUpdated.is_success() && StateAlreadySet.is_success() && !NoKer.is_success());
}
