//! A minimal DER reader and writer: just enough ASN.1 for certificates (subject,
//! SubjectAltName, SubjectPublicKeyInfo), PKCS#8 key envelopes, RFC 7427
//! AlgorithmIdentifiers and ECDSA signature values.
//!
//! Every read is bounds-checked; malformed input yields [`DerError`], never a panic.

use std::fmt;

/// Where and why DER input was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerError {
    /// What was being read.
    pub what: &'static str,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed DER ({})", self.what)
    }
}

impl std::error::Error for DerError {}

pub(crate) type DerResult<T> = Result<T, DerError>;

fn err<T>(what: &'static str) -> DerResult<T> {
    Err(DerError { what })
}

pub(crate) const TAG_BOOLEAN: u8 = 0x01;
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_UTF8STRING: u8 = 0x0c;
pub(crate) const TAG_PRINTABLESTRING: u8 = 0x13;
pub(crate) const TAG_T61STRING: u8 = 0x14;
pub(crate) const TAG_IA5STRING: u8 = 0x16;
pub(crate) const TAG_UNIVERSALSTRING: u8 = 0x1c;
pub(crate) const TAG_BMPSTRING: u8 = 0x1e;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_SET: u8 = 0x31;

/// One decoded TLV.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    /// The complete encoding (tag, length and value).
    pub raw: &'a [u8],
}

/// Sequential reader over concatenated TLVs.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads the next TLV of any tag.
    pub fn any(&mut self) -> DerResult<Tlv<'a>> {
        let d = self.data;
        let (&tag, rest) = d.split_first().ok_or(DerError { what: "tag" })?;
        if tag & 0x1f == 0x1f {
            return err("multi-byte tag");
        }
        let (&l0, mut rest) = rest.split_first().ok_or(DerError { what: "length" })?;
        let len = if l0 < 0x80 {
            usize::from(l0)
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 {
                return err("length form");
            }
            let (lb, r) = rest
                .split_at_checked(n)
                .ok_or(DerError { what: "length" })?;
            rest = r;
            let mut v = 0usize;
            for b in lb {
                v = (v << 8) | usize::from(*b);
            }
            if v < 0x80 || (n > 1 && lb.first() == Some(&0)) {
                return err("non-minimal length");
            }
            v
        };
        let (value, after) = rest.split_at_checked(len).ok_or(DerError {
            what: "truncated value",
        })?;
        let header = d.len() - rest.len();
        let raw = d
            .get(..header + len)
            .ok_or(DerError { what: "truncated" })?;
        self.data = after;
        Ok(Tlv { tag, value, raw })
    }

    /// Reads the next TLV, requiring `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> DerResult<Tlv<'a>> {
        let t = self.any().map_err(|_| DerError { what })?;
        if t.tag != tag {
            return err(what);
        }
        Ok(t)
    }

    /// Reads the next TLV if it has `tag`.
    pub fn optional(&mut self, tag: u8) -> DerResult<Option<Tlv<'a>>> {
        if self.peek_tag() == Some(tag) {
            self.any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Reads a SEQUENCE and returns a reader over its contents.
    pub fn sequence(&mut self, what: &'static str) -> DerResult<Reader<'a>> {
        Ok(Reader::new(self.expect(TAG_SEQUENCE, what)?.value))
    }

    pub fn finish(&self, what: &'static str) -> DerResult<()> {
        if self.data.is_empty() {
            Ok(())
        } else {
            err(what)
        }
    }
}

/// Parses `data` as exactly one TLV with `tag`.
pub(crate) fn single<'a>(data: &'a [u8], tag: u8, what: &'static str) -> DerResult<Tlv<'a>> {
    let mut r = Reader::new(data);
    let t = r.expect(tag, what)?;
    r.finish(what)?;
    Ok(t)
}

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let lb = bytes.get(skip..).unwrap_or(&[]);
        out.push(0x80 | lb.len() as u8);
        out.extend_from_slice(lb);
    }
    out.extend_from_slice(value);
    out
}

/// Encodes a SEQUENCE of already-encoded elements.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &parts.concat())
}

/// Encodes a non-negative big-endian integer (leading zeros stripped, sign byte added).
pub(crate) fn uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().take_while(|b| **b == 0).count();
    let b = bytes.get(start..).unwrap_or(&[]);
    let mut v = Vec::with_capacity(b.len() + 1);
    if b.first().is_none_or(|x| *x & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(b);
    tlv(TAG_INTEGER, &v)
}

/// Returns the magnitude of a DER INTEGER value (sign byte stripped); rejects negatives.
pub(crate) fn uint_value<'a>(value: &'a [u8], what: &'static str) -> DerResult<&'a [u8]> {
    match value {
        [] => err(what),
        [first, ..] if first & 0x80 != 0 => err(what),
        [0, rest @ ..] if !rest.is_empty() => Ok(rest),
        v => Ok(v),
    }
}

/// Encodes a dotted OID string into DER content bytes (no tag).
pub(crate) fn oid_from_dotted(s: &str) -> Option<Vec<u8>> {
    let arcs: Vec<u64> = s
        .split('.')
        .map(|a| a.parse().ok())
        .collect::<Option<_>>()?;
    let (&a0, rest) = arcs.split_first()?;
    let (&a1, rest) = rest.split_first()?;
    if a0 > 2 || (a0 < 2 && a1 >= 40) {
        return None;
    }
    let mut out = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        out.extend_from_slice(&tmp);
    };
    push(a0.checked_mul(40)?.checked_add(a1)?);
    for a in rest {
        push(*a);
    }
    Some(out)
}

/// Formats DER OID content bytes as a dotted string.
pub(crate) fn oid_to_dotted(b: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for byte in b {
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let (x, y) = if v < 40 {
                    (0, v)
                } else if v < 80 {
                    (1, v - 40)
                } else {
                    (2, v - 80)
                };
                arcs.push(x);
                arcs.push(y);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    arcs.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Well-known OIDs (DER content bytes).
pub(crate) mod oid {
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    pub const SHA1_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
    pub const RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    pub const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
    pub const SHA384_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
    pub const SHA512_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
    pub const MGF1: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08];
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    pub const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    pub const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    pub const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
    pub const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    /// id-kp-ipsecIKE, RFC 4945 §5.1.3.12.
    pub const KP_IPSEC_IKE: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x11];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_round_trip() {
        for s in ["1.2.840.113549.1.1.11", "2.5.4.3", "1.3.101.112", "2.999.1"] {
            let b = oid_from_dotted(s).unwrap();
            assert_eq!(oid_to_dotted(&b), s);
        }
        assert_eq!(oid_from_dotted("1.2.840.10045.3.1.7").unwrap(), oid::P256);
        assert!(oid_from_dotted("3.1").is_none());
        assert!(oid_from_dotted("1").is_none());
    }

    #[test]
    fn lengths() {
        let long = vec![7u8; 300];
        let enc = tlv(TAG_OCTET_STRING, &long);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let t = single(&enc, TAG_OCTET_STRING, "x").unwrap();
        assert_eq!(t.value, &long[..]);
        // non-minimal and truncated
        assert!(single(&[0x04, 0x81, 0x01, 0x00], TAG_OCTET_STRING, "x").is_err());
        assert!(single(&[0x04, 0x05, 0x00], TAG_OCTET_STRING, "x").is_err());
        assert!(single(&[0x04, 0x80], TAG_OCTET_STRING, "x").is_err());
        assert!(single(&[], TAG_OCTET_STRING, "x").is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(uint(&[0, 0, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[0x7f]), vec![0x02, 0x01, 0x7f]);
        assert_eq!(uint(&[]), vec![0x02, 0x01, 0x00]);
        assert_eq!(uint_value(&[0x00, 0x80], "i").unwrap(), &[0x80]);
        assert!(uint_value(&[0x80], "i").is_err());
    }
}
