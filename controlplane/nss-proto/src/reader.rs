//! A sans-IO incremental frame reader: feed it bytes as they arrive, take
//! decoded messages out.

use crate::Error;
use crate::frame::{HEADER_LEN, Header, IDENT, Role};
use crate::msg::Message;

/// The outcome of decoding one frame from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A well-formed message.
    Message(Message),
    /// A frame whose header was sound but whose contents were not; the
    /// stream is still in sync. See [`crate::error_reply`].
    Rejected {
        /// The frame's header.
        header: Header,
        /// What was wrong.
        error: Error,
    },
}

/// Splits a byte stream into frames (`docs/nss-protocol.md` §2).
///
/// After a framing error (bad `Ident`, `Version` or `Length`) the stream
/// cannot be resynchronised: the reader returns that error once and then
/// nothing more.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    limit: usize,
    role: Role,
    failed: bool,
}

impl FrameReader {
    /// A reader for an endpoint of `role` accepting frames up to `limit`
    /// bytes.
    pub fn new(role: Role, limit: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            limit,
            role,
            failed: false,
        }
    }

    /// Change the size limit (the server raises it after CONNECT).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Append received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, `Ok(None)` if more bytes are needed, or a fatal
    /// framing error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        if self.failed {
            return Ok(None);
        }
        // Reject a stream that is not NSS at all as early as possible.
        if let Some(id) = self.buf.get(..4).or(Some(self.buf.as_slice()))
            && !IDENT.starts_with(id)
        {
            self.failed = true;
            self.buf = Vec::new();
            return Err(Error::BadIdent);
        }
        let Some(hdr) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let header = match Header::parse_prefix(hdr, self.limit) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                return Err(e);
            }
        };
        let total = HEADER_LEN + header.body_len();
        let Some(body) = self.buf.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let frame = match Message::decode(&header, body, self.role) {
            Ok(m) => Frame::Message(m),
            Err(error) => Frame::Rejected { header, error },
        };
        self.buf.drain(..total);
        Ok(Some(frame))
    }
}
