//! Fuzz the NSS frame decoder: arbitrary bytes, fed in arbitrary chunks, as
//! either role. Properties: no panic; every decoded message re-encodes and
//! decodes to itself; every rejected frame yields an encodable reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nss_proto::{Frame, FrameReader, MAX_FRAME_LEN, Message, Reply, Role, error_reply};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let role = if ctl & 1 == 1 {
        Role::Client
    } else {
        Role::Server
    };
    let chunk = usize::from(ctl >> 1).max(1);
    let mut reader = FrameReader::new(role, MAX_FRAME_LEN);
    for piece in rest.chunks(chunk) {
        reader.feed(piece);
        loop {
            match reader.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    let bytes = m.encode().expect("a decoded message re-encodes");
                    let back = Message::decode_frame(&bytes, MAX_FRAME_LEN, role)
                        .expect("a re-encoded message decodes");
                    assert_eq!(back, m);
                }
                Ok(Some(Frame::Rejected { header, error })) => {
                    let (Reply::Respond(m) | Reply::Terminate(m)) =
                        error_reply(Some(&header), &error);
                    m.encode().expect("error replies encode");
                }
                Ok(None) => break,
                Err(e) => {
                    let (Reply::Respond(m) | Reply::Terminate(m)) = error_reply(None, &e);
                    m.encode().expect("error replies encode");
                    return;
                }
            }
        }
    }
});
