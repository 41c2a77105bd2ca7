//! Wire round trips against real netlink traffic: every datagram in the fixtures was captured
//! from the kernel and iproute2 (and this crate's examples) by `tests/fixtures/capture.sh`.
//! Each message must parse into a typed message and re-emit to the identical bytes.
//!
//! `host.txt`: policies, SPI allocation, ACQUIRE/POLEXPIRE, errors with extended acks (host
//! kernel, no ESP). `vm.txt`: ESP/AH SAs of every algorithm family, encapsulation, ESN, marks,
//! lifetimes, counters, EXPIRE (captured in a test guest).

use std::collections::BTreeSet;

use gatekey_xfrm::Event;
use gatekey_xfrm::wire::{Message, NlMessages, XfrmMsg, align4, emit_message, msg};

struct Datagram {
    line: usize,
    send: bool,
    bytes: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| s.get(2 * i..2 * i + 2))
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("bad hex {b}")))
        .collect()
}

fn load(text: &str) -> Vec<Datagram> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let (dir, h) = l.split_once(' ')?;
            match dir {
                "send" | "recv" => Some(Datagram {
                    line: i + 1,
                    send: dir == "send",
                    bytes: hex(h),
                }),
                _ => None,
            }
        })
        .collect()
}

/// iproute2 leaves the 2 padding bytes of `struct xfrm_encap_tmpl` uninitialised in its
/// requests (the kernel ignores them, and its own messages zero them). Padding is not data, so
/// a typed message cannot carry it: zero it in requests before comparing.
fn zero_request_padding(msg: &mut [u8]) {
    let u16_at = |m: &[u8], i: usize| {
        m.get(i..i + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, u16::from_ne_bytes)
    };
    let ty = u16_at(msg, 4);
    if ty != msg::NEWSA && ty != msg::UPDSA {
        return;
    }
    let mut pos = 16 + 224; // nlmsghdr + xfrm_usersa_info
    while pos + 4 <= msg.len() {
        let len = usize::from(u16_at(msg, pos));
        let kind = u16_at(msg, pos + 2) & 0x3fff;
        if len < 4 {
            break;
        }
        if kind == 4
            && let Some(pad) = msg.get_mut(pos + 4 + 6..pos + 4 + 8)
        {
            // XFRMA_ENCAP: type(2) sport(2) dport(2) pad(2) oa(16)
            pad.fill(0);
        }
        pos += align4(len);
    }
}

/// Round-trips every message of every datagram; returns the (direction, type) pairs seen.
fn roundtrip(name: &str, text: &str) -> BTreeSet<(&'static str, u16)> {
    let mut seen = BTreeSet::new();
    let grams = load(text);
    assert!(!grams.is_empty(), "{name}: no datagrams");
    for d in &grams {
        let mut off = 0usize;
        for m in NlMessages::new(&d.bytes) {
            let (hdr, payload) = m.unwrap_or_else(|e| panic!("{name}:{}: framing: {e}", d.line));
            let parsed = Message::parse(&hdr, payload)
                .unwrap_or_else(|e| panic!("{name}:{}: type {:#x}: {e}", d.line, hdr.ty));
            if let Message::Xfrm(x) = &parsed {
                assert!(
                    !matches!(**x, XfrmMsg::Other { .. }) || hdr.ty == msg::NEWSPDINFO + 100,
                    "{name}:{}: type {:#x} fell through to Other",
                    d.line,
                    hdr.ty
                );
            }
            let mut out = Vec::new();
            emit_message(&mut out, hdr, &parsed);
            let len = hdr.len as usize;
            let mut orig = d.bytes.get(off..off + len).unwrap_or_default().to_vec();
            if d.send {
                zero_request_padding(&mut orig);
            }
            assert_eq!(
                out.get(..len).unwrap_or_default(),
                orig.as_slice(),
                "{name}:{}: type {:#x} did not re-emit identically",
                d.line,
                hdr.ty
            );
            // alignment padding, where the datagram has it, is zero on both sides
            let padded = d
                .bytes
                .get(off + len..(off + align4(len)).min(d.bytes.len()))
                .unwrap_or_default();
            assert!(padded.iter().all(|b| *b == 0));
            off += align4(len);
            seen.insert((if d.send { "send" } else { "recv" }, hdr.ty));

            // Kernel notifications and replies also convert to the typed model without error.
            if !d.send
                && let Message::Xfrm(x) = parsed
            {
                let ty = x.message_type();
                let ev = Event::from_message(*x);
                assert!(
                    ev.is_ok(),
                    "{name}:{}: type {ty:#x} → event: {:?}",
                    d.line,
                    ev.err()
                );
            }
        }
    }
    seen
}

#[test]
fn host_fixture_roundtrips() {
    let seen = roundtrip("host.txt", include_str!("fixtures/host.txt"));
    // Requests iproute2 and this crate send, replies and notifications the kernel sends.
    for want in [
        ("send", msg::NEWPOLICY),
        ("send", msg::UPDPOLICY),
        ("send", msg::DELPOLICY),
        ("send", msg::GETPOLICY),
        ("send", msg::FLUSHPOLICY),
        ("send", msg::GETSA),
        ("send", msg::NEWSA),
        ("send", msg::ALLOCSPI),
        ("send", msg::FLUSHSA),
        ("send", msg::GETSADINFO),
        ("send", msg::GETSPDINFO),
        ("recv", 2), // NLMSG_ERROR: acks and errors with extended acks
        ("recv", 3), // NLMSG_DONE
        ("recv", msg::NEWSA),
        ("recv", msg::NEWPOLICY),
        ("recv", msg::DELPOLICY),
        ("recv", msg::UPDPOLICY),
        ("recv", msg::FLUSHPOLICY),
        ("recv", msg::FLUSHSA),
        ("recv", msg::ACQUIRE),
        ("recv", msg::POLEXPIRE),
        ("recv", msg::NEWSADINFO),
        ("recv", msg::NEWSPDINFO),
    ] {
        assert!(seen.contains(&want), "host.txt has no {want:?}");
    }
}

#[test]
fn host_fixture_error_carries_errno_and_extack() {
    // The ESP add on a kernel without ESP: EPROTONOSUPPORT with "Requested type not found".
    let grams = load(include_str!("fixtures/host.txt"));
    let mut found = false;
    for d in grams.iter().filter(|d| !d.send) {
        for (hdr, payload) in NlMessages::new(&d.bytes).flatten() {
            if let Ok(Message::Error(e)) = Message::parse(&hdr, payload)
                && e.code == -93
            {
                assert_eq!(e.ext_ack().msg.as_deref(), Some("Requested type not found"));
                found = true;
            }
        }
    }
    assert!(found, "no EPROTONOSUPPORT error in host.txt");
}

#[test]
fn host_fixture_acquire_is_typed() {
    let grams = load(include_str!("fixtures/host.txt"));
    let mut acquires = 0;
    for d in grams.iter().filter(|d| !d.send) {
        for (hdr, payload) in NlMessages::new(&d.bytes).flatten() {
            if let Ok(Message::Xfrm(x)) = Message::parse(&hdr, payload)
                && let Ok(Event::Acquire(a)) = Event::from_message(*x)
            {
                acquires += 1;
                assert_eq!(a.dst.to_string(), "10.9.0.2");
                assert_eq!(a.src.to_string(), "10.9.0.1");
                assert_eq!(a.selector.dport, 9999);
                assert_eq!(a.policy.policy.templates.len(), 1);
                assert_eq!(a.policy.policy.templates.first().map(|t| t.reqid), Some(9));
                assert_ne!(a.seq, 0);
            }
        }
    }
    assert_eq!(acquires, 1);
}

#[test]
fn vm_fixture_roundtrips() {
    let seen = roundtrip("vm.txt", include_str!("fixtures/vm.txt"));
    for want in [
        ("send", msg::NEWSA),
        ("send", msg::UPDSA),
        ("send", msg::DELSA),
        ("send", msg::GETSA),
        ("send", msg::GETAE),
        ("recv", msg::NEWSA),
        ("recv", msg::UPDSA),
        ("recv", msg::DELSA),
        ("recv", msg::EXPIRE),
        ("recv", msg::NEWAE),
        ("recv", msg::FLUSHSA),
        ("recv", msg::MAPPING),
    ] {
        assert!(seen.contains(&want), "vm.txt has no {want:?}");
    }
}

/// Every SA the kernel reported (dump replies and notifications) as the typed model.
fn vm_sas() -> Vec<gatekey_xfrm::SaInfo> {
    let mut out = Vec::new();
    for d in load(include_str!("fixtures/vm.txt"))
        .iter()
        .filter(|d| !d.send)
    {
        for (hdr, payload) in NlMessages::new(&d.bytes).flatten() {
            if let Ok(Message::Xfrm(x)) = Message::parse(&hdr, payload)
                && let Ok(Event::SaAdded(s) | Event::SaUpdated(s)) = Event::from_message(*x)
            {
                out.push(*s);
            }
        }
    }
    out
}

#[test]
fn vm_fixture_sas_decode_to_typed_algorithms() {
    use gatekey_xfrm::{
        AeadAlgorithm, AesKeySize, CipherAlgorithm, EncapType, IntegrityAlgorithm, Mode, Proto,
        SaCrypto,
    };
    let sas = vm_sas();
    let find = |spi: u32| {
        sas.iter()
            .find(|s| s.sa.spi.0 == spi)
            .unwrap_or_else(|| panic!("no SA {spi:#x} in vm.txt"))
    };
    let gcm = find(0x1001);
    assert!(matches!(
        &gcm.sa.crypto,
        SaCrypto::EspAead { alg: AeadAlgorithm::AesGcm16(AesKeySize::Aes128), key } if key.len() == 20
    ));
    let cbc = find(0x1002);
    assert!(matches!(
        &cbc.sa.crypto,
        SaCrypto::Esp {
            cipher: CipherAlgorithm::AesCbc(AesKeySize::Aes128),
            integrity: IntegrityAlgorithm::HmacSha256,
            ..
        }
    ));
    assert_eq!(cbc.sa.mark.map(|m| (m.value, m.mask)), Some((5, 0xff)));
    assert_eq!(cbc.sa.lifetimes.soft.bytes, Some(1000));
    assert_eq!(cbc.sa.lifetimes.hard.bytes, Some(2000));
    assert_eq!(cbc.sa.lifetimes.hard.add_seconds, Some(3600));
    let chacha = find(0x1003);
    assert!(matches!(
        chacha.sa.crypto,
        SaCrypto::EspAead {
            alg: AeadAlgorithm::ChaCha20Poly1305,
            ..
        }
    ));
    assert!(chacha.sa.esn);
    assert_eq!(chacha.sa.replay_window, 128);
    let encap = chacha.sa.encap.expect("encap");
    assert_eq!(
        (encap.kind, encap.sport, encap.dport),
        (EncapType::EspInUdp, 4500, 4500)
    );
    let ah = find(0x1004);
    assert_eq!(ah.sa.proto(), Proto::Ah);
    assert_eq!(ah.sa.mode, Mode::Transport);
    assert!(ah.sa.dst.is_ipv6());
    assert!(matches!(
        ah.sa.crypto,
        SaCrypto::Ah {
            integrity: IntegrityAlgorithm::HmacSha512,
            ..
        }
    ));
    // installed by this crate's example
    let ours = find(0x1006);
    assert_eq!(ours.sa.reqid, 12);
    assert_eq!(ours.sa.lifetimes.soft.bytes, Some(100_000));
}

#[test]
fn vm_fixture_expire_events() {
    let mut soft = 0;
    let mut hard = 0;
    for d in load(include_str!("fixtures/vm.txt"))
        .iter()
        .filter(|d| !d.send)
    {
        for (hdr, payload) in NlMessages::new(&d.bytes).flatten() {
            if let Ok(Message::Xfrm(x)) = Message::parse(&hdr, payload)
                && let Ok(Event::Expire { sa, hard: h }) = Event::from_message(*x)
                // larval SAs from SPI allocation and the ACQUIRE also expire (hard)
                && sa.sa.spi.0 == 0x1005
            {
                assert_eq!(sa.sa.lifetimes.soft.add_seconds, Some(1));
                if h {
                    hard += 1;
                } else {
                    soft += 1;
                }
            }
        }
    }
    assert_eq!((soft, hard), (1, 1));
}

#[test]
fn vm_fixture_mapping_event() {
    let mut mappings = Vec::new();
    for d in load(include_str!("fixtures/vm.txt"))
        .iter()
        .filter(|d| !d.send)
    {
        for (hdr, payload) in NlMessages::new(&d.bytes).flatten() {
            if let Ok(Message::Xfrm(x)) = Message::parse(&hdr, payload)
                && let Ok(Event::Mapping(m)) = Event::from_message(*x)
            {
                mappings.push(m);
            }
        }
    }
    let m = mappings.first().expect("a MAPPING event in vm.txt");
    assert_eq!(m.sa.spi.0, 0x1010);
    assert_eq!(m.reqid, 10);
    assert_eq!(m.old.to_string(), "10.8.0.2:4501");
    assert_eq!(m.new.to_string(), "10.8.0.2:4500");
}
