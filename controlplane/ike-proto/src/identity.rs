//! IKE identities (RFC 7296 §3.5 ID payload bodies), shared by IKEv2 and IKEv1.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::crypto::cert::DistinguishedName;
use crate::error::{Error, Result};

/// The ID Type field (RFC 7296 §3.5; IANA "IKEv2 Identification Payload ID Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdType(pub u8);

impl IdType {
    /// ID_IPV4_ADDR.
    pub const IPV4_ADDR: Self = Self(1);
    /// ID_FQDN.
    pub const FQDN: Self = Self(2);
    /// ID_RFC822_ADDR.
    pub const RFC822_ADDR: Self = Self(3);
    /// ID_IPV4_ADDR_SUBNET (IKEv1 only).
    pub const IPV4_ADDR_SUBNET: Self = Self(4);
    /// ID_IPV6_ADDR.
    pub const IPV6_ADDR: Self = Self(5);
    /// ID_IPV6_ADDR_SUBNET (IKEv1 only).
    pub const IPV6_ADDR_SUBNET: Self = Self(6);
    /// ID_IPV4_ADDR_RANGE (IKEv1 only).
    pub const IPV4_ADDR_RANGE: Self = Self(7);
    /// ID_IPV6_ADDR_RANGE (IKEv1 only).
    pub const IPV6_ADDR_RANGE: Self = Self(8);
    /// ID_DER_ASN1_DN.
    pub const DER_ASN1_DN: Self = Self(9);
    /// ID_DER_ASN1_GN.
    pub const DER_ASN1_GN: Self = Self(10);
    /// ID_KEY_ID.
    pub const KEY_ID: Self = Self(11);
}

/// An IKE identity: what a peer claims to be (IDi/IDr) or what local policy expects.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// ID_IPV4_ADDR.
    Ipv4(Ipv4Addr),
    /// ID_IPV6_ADDR.
    Ipv6(Ipv6Addr),
    /// ID_FQDN (no trailing dot, not NUL terminated).
    Fqdn(String),
    /// ID_RFC822_ADDR.
    Rfc822(String),
    /// ID_DER_ASN1_DN.
    Dn(DistinguishedName),
    /// ID_KEY_ID: opaque bytes.
    KeyId(Vec<u8>),
}

impl Identity {
    /// The ID Type for the payload.
    pub fn id_type(&self) -> IdType {
        match self {
            Self::Ipv4(_) => IdType::IPV4_ADDR,
            Self::Ipv6(_) => IdType::IPV6_ADDR,
            Self::Fqdn(_) => IdType::FQDN,
            Self::Rfc822(_) => IdType::RFC822_ADDR,
            Self::Dn(_) => IdType::DER_ASN1_DN,
            Self::KeyId(_) => IdType::KEY_ID,
        }
    }

    /// The Identification Data field.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Self::Ipv4(a) => a.octets().to_vec(),
            Self::Ipv6(a) => a.octets().to_vec(),
            Self::Fqdn(s) | Self::Rfc822(s) => s.as_bytes().to_vec(),
            Self::Dn(d) => d.as_der().to_vec(),
            Self::KeyId(k) => k.clone(),
        }
    }

    /// Decodes an ID Type and Identification Data.
    pub fn from_payload(id_type: IdType, data: &[u8]) -> Result<Self> {
        let text = |what: &str| {
            String::from_utf8(data.to_vec())
                .map_err(|_| Error::Protocol(format!("{what} identity is not UTF-8")))
        };
        Ok(match id_type {
            IdType::IPV4_ADDR => {
                let b: [u8; 4] = data
                    .try_into()
                    .map_err(|_| Error::Protocol("ID_IPV4_ADDR is not 4 bytes".into()))?;
                Self::Ipv4(Ipv4Addr::from(b))
            }
            IdType::IPV6_ADDR => {
                let b: [u8; 16] = data
                    .try_into()
                    .map_err(|_| Error::Protocol("ID_IPV6_ADDR is not 16 bytes".into()))?;
                Self::Ipv6(Ipv6Addr::from(b))
            }
            IdType::FQDN => Self::Fqdn(text("FQDN")?),
            IdType::RFC822_ADDR => Self::Rfc822(text("RFC822")?),
            IdType::DER_ASN1_DN => Self::Dn(DistinguishedName::from_der(data)?),
            IdType::KEY_ID => Self::KeyId(data.to_vec()),
            IdType(t) => return Err(Error::Protocol(format!("unsupported ID type {t}"))),
        })
    }

    /// Whether this (received) identity satisfies `pattern` (configured). Patterns may use
    /// `*.example.com` (FQDN), `*@example.com` (RFC 822) and `*` RDN values (DN); otherwise
    /// the identities must be equal (names compared without regard to ASCII case).
    pub fn matches(&self, pattern: &Identity) -> bool {
        match (self, pattern) {
            (Self::Fqdn(a), Self::Fqdn(p)) => match p.strip_prefix("*.") {
                Some(suffix) => a
                    .split_once('.')
                    .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix)),
                None => a.eq_ignore_ascii_case(p),
            },
            (Self::Rfc822(a), Self::Rfc822(p)) => match p.strip_prefix("*@") {
                Some(domain) => a
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain)),
                None => a.eq_ignore_ascii_case(p),
            },
            (Self::Dn(a), Self::Dn(p)) => a.matches(p),
            (a, p) => a == p,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4(a) => write!(f, "{a}"),
            Self::Ipv6(a) => write!(f, "{a}"),
            Self::Fqdn(s) => write!(f, "{s}"),
            Self::Rfc822(s) => write!(f, "{s}"),
            Self::Dn(d) => write!(f, "{d}"),
            Self::KeyId(k) => {
                f.write_str("@#")?;
                k.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?}, {self})", self.id_type().0)
    }
}

impl FromStr for Identity {
    type Err = Error;

    /// strongSwan-style: an IP literal; `@#hex` a KEY_ID; `@name` or a name with dots an
    /// FQDN; `user@domain` an RFC 822 address; anything with `=` a distinguished name.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::Config("empty identity".into()));
        }
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(Self::Ipv4(a));
        }
        if let Ok(a) = s.parse::<Ipv6Addr>() {
            return Ok(Self::Ipv6(a));
        }
        if let Some(h) = s.strip_prefix("@#") {
            let bytes = (0..h.len())
                .step_by(2)
                .map(|i| h.get(i..i + 2).and_then(|x| u8::from_str_radix(x, 16).ok()))
                .collect::<Option<Vec<u8>>>()
                .filter(|v| !v.is_empty() && h.len() % 2 == 0)
                .ok_or_else(|| Error::Config(format!("identity {s:?}: bad KEY_ID hex")))?;
            return Ok(Self::KeyId(bytes));
        }
        if let Some(f) = s.strip_prefix('@') {
            return Ok(Self::Fqdn(f.to_string()));
        }
        if s.contains('=') {
            return Ok(Self::Dn(s.parse()?));
        }
        if s.contains('@') {
            return Ok(Self::Rfc822(s.to_string()));
        }
        Ok(Self::Fqdn(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_round_trip() {
        for (s, t) in [
            ("192.0.2.1", IdType::IPV4_ADDR),
            ("2001:db8::1", IdType::IPV6_ADDR),
            ("gw.example.com", IdType::FQDN),
            ("@gw", IdType::FQDN),
            ("ops@example.com", IdType::RFC822_ADDR),
            ("C=US, O=Example, CN=gw", IdType::DER_ASN1_DN),
            ("@#0a0b", IdType::KEY_ID),
        ] {
            let id: Identity = s.parse().unwrap();
            assert_eq!(id.id_type(), t, "{s}");
            let back = Identity::from_payload(t, &id.data()).unwrap();
            assert_eq!(back, id);
        }
        assert!("@#0".parse::<Identity>().is_err());
        assert!(Identity::from_payload(IdType::IPV4_ADDR, &[1, 2, 3]).is_err());
        assert!(Identity::from_payload(IdType(200), &[1]).is_err());
    }

    #[test]
    fn patterns() {
        let id: Identity = "gw1.example.com".parse().unwrap();
        assert!(id.matches(&"*.example.com".parse().unwrap()));
        assert!(id.matches(&"GW1.example.com".parse().unwrap()));
        assert!(!id.matches(&"*.example.org".parse().unwrap()));
        let e: Identity = "a@Example.com".parse().unwrap();
        assert!(e.matches(&"*@example.com".parse().unwrap()));
        let dn: Identity = "C=US, O=Example, CN=gw".parse().unwrap();
        assert!(dn.matches(&"C=US, O=Example, CN=*".parse().unwrap()));
        let ip: Identity = "10.0.0.1".parse().unwrap();
        assert!(!ip.matches(&"10.0.0.2".parse().unwrap()));
    }
}
