//! Writes the fuzz seed corpus: one request and one response message of every type, INIT and TERM.
//! `cargo run -p gatekey-nmi --features samples --example nmi_fuzz_seeds -- <dir>`

use gatekey_nmi::records::ServerInfo;
use gatekey_nmi::{Failure, Frame, Header, Target, samples};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: nmi_fuzz_seeds <dir>")?;
    std::fs::create_dir_all(&dir)?;
    let target = Target::new("default")?;
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(format!("{dir}/{name}"), bytes);
    for (i, req) in samples::requests().iter().enumerate() {
        let v = req.msg_type().min_version();
        let f = Frame::request(req, v, i as u32, Some(&target))?;
        write(&format!("req-{}", req.msg_type()), f.to_bytes())?;
        let h = Header::request(req.msg_type(), v, i as u32, Some(&target));
        let r = Frame::response(&h, Some(&target), &samples::response_for(req))?;
        write(&format!("resp-{}", req.msg_type()), r.to_bytes())?;
    }
    let info: ServerInfo = samples::server_info();
    write("init", Frame::init(&info)?.to_bytes())?;
    let f = Failure::not_authorized("EZB.IPSECCMD.GW1.default.CONTROL");
    write("term", Frame::term(1, &f).to_bytes())?;
    Ok(())
}
