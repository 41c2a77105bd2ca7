//! Any datagram: the ISAKMP (IKEv1) decoder must not panic, and whatever it accepts must
//! re-encode to bytes that decode to the same message. The same bytes are also decoded as
//! a decrypted payload chain (with padding), as the IKEv1 engine does after decryption,
//! and the phase 1 / quick mode transform parsers and ID decoders run on what decodes.
#![no_main]

use ike_proto::ikev1::ids::id_to_ts;
use ike_proto::ikev1::proposal::{parse_esp, parse_p1};
use ike_proto::ikev1::wire::{
    Header, Message, Payload, PayloadType, Trailing, decode_payloads, encode_payloads,
};
use libfuzzer_sys::fuzz_target;

fn exercise(p: &Payload) {
    match p {
        Payload::Sa(sa) => {
            for prop in &sa.proposals {
                for t in &prop.transforms {
                    let _ = parse_p1(t);
                    let _ = parse_esp(t);
                }
            }
        }
        Payload::Id(id) => {
            let _ = id_to_ts(id);
            let _ = ike_proto::Identity::from_payload(id.id_type, &id.data);
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = ike_proto::ikev1::is_ikev1(data);
    if let Ok(h) = Header::decode(data) {
        assert_eq!(h.to_bytes().as_slice(), &data[..28]);
    }
    if let Ok(m) = Message::decode(data) {
        m.payloads.iter().for_each(exercise);
        let again = m.encode();
        let m2 = Message::decode(&again).expect("re-encoded message must decode");
        assert_eq!(m.payloads, m2.payloads);
    }
    // As a decrypted chain: first byte the first payload type, the rest the plaintext.
    if let Some((first, rest)) = data.split_first() {
        if let Ok((located, used)) = decode_payloads(PayloadType(*first), rest, 28, Trailing::Padding) {
            assert!(used <= rest.len());
            let p: Vec<Payload> = located.iter().map(|l| l.payload.clone()).collect();
            for (l, w) in located.iter().zip(located.iter().skip(1)) {
                assert!(l.start < l.end && l.end == w.start);
            }
            p.iter().for_each(exercise);
            let (f, bytes) = encode_payloads(&p);
            let (p2, _) = decode_payloads(f, &bytes, 0, Trailing::Strict).expect("re-encoded chain must decode");
            assert_eq!(p, p2.into_iter().map(|l| l.payload).collect::<Vec<_>>());
        }
    }
});
