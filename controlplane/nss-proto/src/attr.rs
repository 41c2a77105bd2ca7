//! Attribute encoding (`docs/nss-protocol.md` §3): `type u16, length u32,
//! value`, strict decoding.

use crate::Error;

/// Attribute types (the registry of §3.1).
pub mod types {
    #![expect(
        missing_docs,
        reason = "names are the registry's; see docs/nss-protocol.md §3.1"
    )]
    pub const CLIENT_NAME: u16 = 0x0001;
    pub const STACK_NAME: u16 = 0x0002;
    pub const SYSTEM_NAME: u16 = 0x0003;
    pub const USER_ID: u16 = 0x0004;
    pub const AUTH_METHOD: u16 = 0x0005;
    pub const CREDENTIAL: u16 = 0x0006;
    pub const SERVICES: u16 = 0x0007;
    pub const API_VERSION: u16 = 0x0008;
    pub const SERVER_API_VERSION: u16 = 0x0009;
    pub const SOFTWARE: u16 = 0x000A;
    pub const CONNECTION_ID: u16 = 0x000B;
    pub const KEEPALIVE_INTERVAL: u16 = 0x000C;
    pub const CERT_LABEL: u16 = 0x0020;
    pub const SIGNATURE_ALGORITHM: u16 = 0x0021;
    pub const DATA: u16 = 0x0022;
    pub const DIGEST: u16 = 0x0023;
    pub const SIGNATURE: u16 = 0x0024;
    pub const CERTIFICATE: u16 = 0x0025;
    pub const CA_CERTIFICATE: u16 = 0x0026;
    pub const VERDICT: u16 = 0x0027;
    pub const SUBJECT_DN: u16 = 0x0028;
    pub const NMI_MESSAGE: u16 = 0x0040;
    pub const REQUESTER: u16 = 0x0041;
    /// Types with this bit set are optional extensions (skipped if unknown).
    pub const EXTENSION_BIT: u16 = 0x8000;
}

/// The attribute header length.
pub const ATTR_HEADER_LEN: usize = 6;
/// At most this many attributes in one body (a bound on decoder work).
pub const MAX_ATTRIBUTES: usize = 4096;

/// Which characters a string attribute may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    /// Printable ASCII without blanks (0x21–0x7E): names.
    Name,
    /// Printable ASCII with blanks (0x20–0x7E): certificate labels.
    Label,
    /// UTF-8 without control characters.
    Text,
}

impl Charset {
    fn allows(self, s: &str) -> bool {
        match self {
            Charset::Name => s.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            Charset::Label => s.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            Charset::Text => !s.chars().any(char::is_control),
        }
    }
}

/// Builds a body of attributes.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn bytes(&mut self, t: u16, v: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(v.len()).map_err(|_| Error::TooLarge { length: v.len() })?;
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(v);
        Ok(())
    }

    pub(crate) fn u8(&mut self, t: u16, v: u8) -> Result<(), Error> {
        self.bytes(t, &[v])
    }

    pub(crate) fn u16(&mut self, t: u16, v: u16) -> Result<(), Error> {
        self.bytes(t, &v.to_be_bytes())
    }

    pub(crate) fn u32(&mut self, t: u16, v: u32) -> Result<(), Error> {
        self.bytes(t, &v.to_be_bytes())
    }

    pub(crate) fn string(
        &mut self,
        t: u16,
        v: &str,
        max: usize,
        charset: Charset,
    ) -> Result<(), Error> {
        check_string(t, v, max, charset).map_err(|e| Error::InvalidField { attr: t, reason: e })?;
        self.bytes(t, v.as_bytes())
    }

    pub(crate) fn bounded(
        &mut self,
        t: u16,
        v: &[u8],
        min: usize,
        max: usize,
    ) -> Result<(), Error> {
        if v.len() < min || v.len() > max {
            return Err(Error::InvalidField {
                attr: t,
                reason: "length out of range",
            });
        }
        self.bytes(t, v)
    }

    pub(crate) fn nested(
        &mut self,
        t: u16,
        max: usize,
        f: impl FnOnce(&mut Writer) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut inner = Writer::default();
        f(&mut inner)?;
        self.bounded(t, &inner.buf, 0, max)
    }
}

fn check_string(_t: u16, v: &str, max: usize, charset: Charset) -> Result<(), &'static str> {
    if v.is_empty() {
        return Err("empty string");
    }
    if v.len() > max {
        return Err("string too long");
    }
    if !charset.allows(v) {
        return Err("character not allowed");
    }
    Ok(())
}

#[derive(Debug)]
struct Entry<'a> {
    t: u16,
    v: &'a [u8],
    used: bool,
}

/// A parsed attribute list; typed getters consume entries and
/// [`AttrList::finish`] rejects whatever unknown non-extension is left.
#[derive(Debug)]
pub(crate) struct AttrList<'a> {
    entries: Vec<Entry<'a>>,
}

fn bad(attr: u16, reason: &'static str) -> Error {
    Error::BadAttribute { attr, reason }
}

impl<'a> AttrList<'a> {
    /// Split `body` into attributes; `base` is its offset in the frame body.
    pub(crate) fn parse(body: &'a [u8], base: usize) -> Result<Self, Error> {
        let mut entries = Vec::new();
        let mut rest = body;
        let mut off = 0usize;
        while !rest.is_empty() {
            if entries.len() >= MAX_ATTRIBUTES {
                return Err(Error::TooManyAttributes);
            }
            let (hdr, tail) = rest
                .split_at_checked(ATTR_HEADER_LEN)
                .ok_or(Error::Truncated { at: base + off })?;
            let (t, l) = hdr.split_at(2);
            let t = u16::from_be_bytes([
                t.first().copied().unwrap_or(0),
                t.get(1).copied().unwrap_or(0),
            ]);
            let mut lb = [0u8; 4];
            lb.copy_from_slice(l);
            let len = usize::try_from(u32::from_be_bytes(lb)).unwrap_or(usize::MAX);
            let (v, tail) = tail.split_at_checked(len).ok_or(Error::Truncated {
                at: base + off + ATTR_HEADER_LEN,
            })?;
            entries.push(Entry { t, v, used: false });
            off += ATTR_HEADER_LEN + len;
            rest = tail;
        }
        Ok(AttrList { entries })
    }

    /// The single value of attribute `t`, if present; a second occurrence is
    /// an error.
    pub(crate) fn take(&mut self, t: u16) -> Result<Option<&'a [u8]>, Error> {
        let mut found = None;
        for e in self.entries.iter_mut().filter(|e| e.t == t) {
            if found.is_some() {
                return Err(Error::DuplicateAttribute { attr: t });
            }
            e.used = true;
            found = Some(e.v);
        }
        Ok(found)
    }

    /// Every value of the repeatable attribute `t`, in order.
    pub(crate) fn take_all(&mut self, t: u16) -> Vec<&'a [u8]> {
        self.entries
            .iter_mut()
            .filter(|e| e.t == t)
            .map(|e| {
                e.used = true;
                e.v
            })
            .collect()
    }

    pub(crate) fn required(&mut self, t: u16) -> Result<&'a [u8], Error> {
        self.take(t)?.ok_or(Error::MissingAttribute { attr: t })
    }

    pub(crate) fn u8_opt(&mut self, t: u16) -> Result<Option<u8>, Error> {
        self.take(t)?
            .map(|v| fixed::<1>(t, v).map(|[b]| b))
            .transpose()
    }

    pub(crate) fn u8_req(&mut self, t: u16) -> Result<u8, Error> {
        self.u8_opt(t)?.ok_or(Error::MissingAttribute { attr: t })
    }

    pub(crate) fn u16_req(&mut self, t: u16) -> Result<u16, Error> {
        let v = self.required(t)?;
        fixed::<2>(t, v).map(u16::from_be_bytes)
    }

    pub(crate) fn u16_list(&mut self, t: u16) -> Result<Vec<u16>, Error> {
        self.take_all(t)
            .into_iter()
            .map(|v| fixed::<2>(t, v).map(u16::from_be_bytes))
            .collect()
    }

    pub(crate) fn u32_req(&mut self, t: u16) -> Result<u32, Error> {
        let v = self.required(t)?;
        fixed::<4>(t, v).map(u32::from_be_bytes)
    }

    pub(crate) fn string_opt(
        &mut self,
        t: u16,
        max: usize,
        charset: Charset,
    ) -> Result<Option<String>, Error> {
        self.take(t)?
            .map(|v| decode_string(t, v, max, charset))
            .transpose()
    }

    pub(crate) fn string_req(
        &mut self,
        t: u16,
        max: usize,
        charset: Charset,
    ) -> Result<String, Error> {
        self.string_opt(t, max, charset)?
            .ok_or(Error::MissingAttribute { attr: t })
    }

    pub(crate) fn bytes_opt(
        &mut self,
        t: u16,
        min: usize,
        max: usize,
    ) -> Result<Option<&'a [u8]>, Error> {
        match self.take(t)? {
            Some(v) if v.len() < min || v.len() > max => Err(bad(t, "length out of range")),
            other => Ok(other),
        }
    }

    pub(crate) fn bytes_req(&mut self, t: u16, min: usize, max: usize) -> Result<&'a [u8], Error> {
        self.bytes_opt(t, min, max)?
            .ok_or(Error::MissingAttribute { attr: t })
    }

    pub(crate) fn bytes_list(
        &mut self,
        t: u16,
        min: usize,
        max: usize,
    ) -> Result<Vec<&'a [u8]>, Error> {
        let all = self.take_all(t);
        if all.iter().any(|v| v.len() < min || v.len() > max) {
            return Err(bad(t, "length out of range"));
        }
        Ok(all)
    }

    /// Fail on any unconsumed attribute that is not an optional extension.
    pub(crate) fn finish(self) -> Result<(), Error> {
        match self
            .entries
            .iter()
            .find(|e| !e.used && e.t & types::EXTENSION_BIT == 0)
        {
            Some(e) => Err(Error::UnknownAttribute { attr: e.t }),
            None => Ok(()),
        }
    }
}

fn fixed<const N: usize>(t: u16, v: &[u8]) -> Result<[u8; N], Error> {
    v.try_into()
        .map_err(|_| bad(t, "wrong length for an integer"))
}

fn decode_string(t: u16, v: &[u8], max: usize, charset: Charset) -> Result<String, Error> {
    let s = std::str::from_utf8(v).map_err(|_| bad(t, "not UTF-8"))?;
    check_string(t, s, max, charset).map_err(|r| bad(t, r))?;
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_list_round_trip() {
        let mut w = Writer::default();
        w.u8(1, 7).unwrap();
        w.u16(2, 0x1234).unwrap();
        w.u16(2, 0x5678).unwrap();
        w.string(3, "abc", 8, Charset::Name).unwrap();
        w.u32(0x8001, 9).unwrap();
        let mut l = AttrList::parse(&w.buf, 0).unwrap();
        assert_eq!(l.u8_req(1).unwrap(), 7);
        assert_eq!(l.u16_list(2).unwrap(), vec![0x1234, 0x5678]);
        assert_eq!(l.string_req(3, 8, Charset::Name).unwrap(), "abc");
        // 0x8001 is an unknown extension: skipped.
        l.finish().unwrap();
    }

    #[test]
    fn strictness() {
        let mut w = Writer::default();
        w.u8(1, 7).unwrap();
        w.u8(1, 8).unwrap();
        w.u16(5, 1).unwrap();
        let mut l = AttrList::parse(&w.buf, 0).unwrap();
        assert_eq!(l.u8_req(1), Err(Error::DuplicateAttribute { attr: 1 }));
        assert!(matches!(
            l.u8_req(5),
            Err(Error::BadAttribute { attr: 5, .. })
        ));
        let l = AttrList::parse(&w.buf, 0).unwrap();
        assert_eq!(l.finish(), Err(Error::UnknownAttribute { attr: 1 }));
        // Truncated header and value.
        assert!(matches!(
            AttrList::parse(&[0, 1, 0], 40),
            Err(Error::Truncated { at: 40 })
        ));
        assert!(matches!(
            AttrList::parse(&[0, 1, 0, 0, 0, 5, 1], 0),
            Err(Error::Truncated { at: 6 })
        ));
        assert!(matches!(
            AttrList::parse(&[0, 1, 0xff, 0xff, 0xff, 0xff], 0),
            Err(Error::Truncated { .. })
        ));
        // Strings.
        let mut w = Writer::default();
        w.bytes(3, b"a b").unwrap();
        w.bytes(4, &[0xff]).unwrap();
        w.bytes(6, b"").unwrap();
        let mut l = AttrList::parse(&w.buf, 0).unwrap();
        assert!(l.string_req(3, 8, Charset::Name).is_err());
        assert!(l.string_req(4, 8, Charset::Text).is_err());
        assert!(l.string_req(6, 8, Charset::Text).is_err());
        assert_eq!(
            l.string_req(7, 8, Charset::Text),
            Err(Error::MissingAttribute { attr: 7 })
        );
        assert!(
            Writer::default()
                .string(1, "x\u{7}", 8, Charset::Text)
                .is_err()
        );
    }

    #[test]
    fn attribute_count_is_bounded() {
        let body = vec![0u8; ATTR_HEADER_LEN * (MAX_ATTRIBUTES + 1)];
        assert_eq!(
            AttrList::parse(&body, 0).map(|_| ()),
            Err(Error::TooManyAttributes)
        );
    }
}
