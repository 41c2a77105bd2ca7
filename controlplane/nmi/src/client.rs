//! A blocking NMI client (std only), as used by `ipsec`.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::Error;
use crate::header::{HEADER_LEN, Header, MAX_RESPONSE, MAX_VERSION, MIN_VERSION, MsgType, Target};
use crate::message::{Frame, Request, Response};
use crate::records::ServerInfo;

/// How long the client waits for INIT and for each response by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The response header (its target is the resolved stack or client).
    pub header: Header,
    /// The body exactly as received (for `ipsec --json`).
    pub body: Vec<u8>,
    /// The decoded body.
    pub response: Response,
}

impl Reply {
    /// The resolved target the server answered for.
    pub fn target(&self) -> Option<Target> {
        self.header.target().ok().flatten()
    }
}

/// A connected session with iked or nssd.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    info: ServerInfo,
    version: u16,
    next_correlator: u32,
}

fn io_err(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout,
        io::ErrorKind::UnexpectedEof => Error::Closed,
        _ => Error::Io(e),
    }
}

/// Reads one message of at most `max_len` bytes from a blocking stream.
pub fn read_frame<R: Read>(r: &mut R, max_len: usize) -> Result<Frame, Error> {
    let mut hb = [0u8; HEADER_LEN];
    r.read_exact(&mut hb).map_err(io_err)?;
    let header = Header::parse(&hb);
    header
        .check_framing(max_len)
        .map_err(|f| Error::Protocol(f.message))?;
    let mut body = vec![0u8; header.body_len as usize];
    r.read_exact(&mut body).map_err(io_err)?;
    Ok(Frame { header, body })
}

impl Client {
    /// Connects to the socket at `path` and reads INIT, waiting at most [`DEFAULT_TIMEOUT`].
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        Client::connect_with_timeout(path, DEFAULT_TIMEOUT)
    }

    /// Connects and reads INIT; `timeout` also bounds every later response.
    pub fn connect_with_timeout(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<Client, Error> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.to_owned(),
            source,
        })?;
        stream.set_read_timeout(Some(timeout)).map_err(Error::Io)?;
        stream.set_write_timeout(Some(timeout)).map_err(Error::Io)?;
        let mut stream = stream;
        let init = read_frame(&mut stream, MAX_RESPONSE)?;
        if init.header.msg_type == MsgType::TERM {
            return Err(terminated(&init));
        }
        if init.header.msg_type != MsgType::INIT || !init.header.is_response() {
            return Err(Error::Protocol(format!(
                "expected INIT from the server, got {}",
                init.header.msg_type
            )));
        }
        let info: ServerInfo = serde_json::from_slice(&init.body).map_err(|e| Error::Decode {
            msg_type: MsgType::INIT,
            source: e,
        })?;
        if info.max_version != init.header.version || info.min_version > info.max_version {
            return Err(Error::Protocol(format!(
                "INIT announces version {} but its body says {} to {}",
                init.header.version, info.min_version, info.max_version
            )));
        }
        let version = MAX_VERSION.min(info.max_version);
        if version < info.min_version || version < MIN_VERSION {
            return Err(Error::Version {
                server_min: info.min_version,
                server_max: info.max_version,
            });
        }
        Ok(Client {
            stream,
            info,
            version,
            next_correlator: 1,
        })
    }

    /// What the server said in INIT.
    pub fn server_info(&self) -> &ServerInfo {
        &self.info
    }

    /// The protocol version this session speaks.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Sends `request` for `target` (None = blank) and waits for its response.
    pub fn call(&mut self, target: Option<&Target>, request: &Request) -> Result<Reply, Error> {
        let t = request.msg_type();
        if t.min_version() > self.version {
            return Err(Error::Unsupported {
                msg_type: t,
                needs: t.min_version(),
                server_max: self.info.max_version,
            });
        }
        let frame = Frame::request(request, self.version, self.next_correlator, target)?;
        let resp = self.call_frame(&frame)?;
        let response = Response::decode(resp.header.msg_type, &resp.body)?;
        Ok(Reply {
            header: resp.header,
            body: resp.body,
            response,
        })
    }

    /// Sends a prepared request message and returns its successful response message (rc 0);
    /// the correlator is replaced by the session's next one.
    pub fn call_frame(&mut self, frame: &Frame) -> Result<Frame, Error> {
        let correlator = self.next_correlator;
        self.next_correlator = self.next_correlator.wrapping_add(1);
        let mut frame = frame.clone();
        frame.header.correlator = correlator;
        let bytes = frame.to_bytes();
        if bytes.len() > crate::MAX_REQUEST {
            return Err(Error::TooLarge(bytes.len()));
        }
        self.stream.write_all(&bytes).map_err(io_err)?;
        let resp = read_frame(&mut self.stream, MAX_RESPONSE)?;
        let h = &resp.header;
        if h.msg_type == MsgType::TERM {
            return Err(terminated(&resp));
        }
        if !h.is_response() || h.msg_type != frame.header.msg_type || h.correlator != correlator {
            return Err(Error::Protocol(format!(
                "expected the response to {} #{correlator}, got {} #{}{}",
                frame.header.msg_type,
                h.msg_type,
                h.correlator,
                if h.is_response() {
                    ""
                } else {
                    " (not a response)"
                }
            )));
        }
        if !h.rc.is_ok() {
            let info = resp.error_info();
            return Err(Error::Failed {
                msg_type: h.msg_type,
                rc: h.rc,
                rsn: h.rsn,
                message: info.as_ref().map(|i| i.message.clone()).unwrap_or_default(),
                profile: info.and_then(|i| i.profile),
            });
        }
        Ok(resp)
    }
}

fn terminated(f: &Frame) -> Error {
    Error::Terminated {
        rc: f.header.rc,
        rsn: f.header.rsn,
        message: f.error_info().map(|i| i.message).unwrap_or_default(),
    }
}
