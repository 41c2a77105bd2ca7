//! Fuzzes everything that decodes NMI bytes from a peer: message framing and header checks (as a
//! server and as a client), request bodies, response bodies, and TERM/error bodies. Whatever
//! decodes must encode again and decode to the same value.

#![no_main]

use gatekey_nmi::client::read_frame;
use gatekey_nmi::{Frame, MAX_RESPONSE, MAX_VERSION, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::parse(data, MAX_RESPONSE) {
        let _ = frame.header.check_request(MAX_VERSION);
        let _ = frame.header.target();
        let _ = frame.error_info();
        let t = frame.header.msg_type;
        if let Ok(req) = Request::decode(t, &frame.body) {
            let body = req.encode_body().expect("a decoded request encodes");
            assert_eq!(Request::decode(t, &body).as_ref(), Ok(&req));
        }
        if let Ok(resp) = Response::decode(t, &frame.body) {
            let body = resp.encode_body().expect("a decoded response encodes");
            assert_eq!(Response::decode(t, &body).ok().as_ref(), Some(&resp));
        }
        // The header re-encodes byte for byte.
        assert_eq!(&frame.to_bytes()[..], data);
    }
    let mut stream = data;
    while let Ok(f) = read_frame(&mut stream, MAX_RESPONSE) {
        let _ = Response::decode(f.header.msg_type, &f.body);
    }
});
