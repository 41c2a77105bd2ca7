//! Any datagram: the IKEv2 decoder must not panic, and whatever it accepts must re-encode
//! to bytes that decode to the same message.
#![no_main]

use ike_proto::wire::{Header, Message, PayloadType, decode_payloads, encode_payloads};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Header::peek(data);
    if let Ok(m) = Message::decode(data) {
        let again = m.encode();
        let m2 = Message::decode(&again).expect("re-encoded message must decode");
        assert_eq!(m.payloads, m2.payloads);
    }
    // The same bytes as a bare payload chain (as inside a decrypted SK payload).
    if let Some((first, rest)) = data.split_first() {
        if let Ok(p) = decode_payloads(PayloadType(*first), rest, 0) {
            let (f, bytes) = encode_payloads(&p);
            let p2 = decode_payloads(f, &bytes, 0).expect("re-encoded chain must decode");
            assert_eq!(p, p2);
        }
    }
});
