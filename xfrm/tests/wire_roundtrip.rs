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
            let orig = d.bytes.get(off..off + len).unwrap_or_default();
            assert_eq!(
                out.get(..len).unwrap_or_default(),
                orig,
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
