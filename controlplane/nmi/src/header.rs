//! The 64-byte message header and message types — `docs/nmi-protocol.md` §2, §3.

use std::fmt;

use crate::codes::{Failure, ReasonCode, ReturnCode};
use crate::error::Error;

/// Header identifier, ASCII `GKNM`.
pub const IDENT: [u8; 4] = *b"GKNM";
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;
/// Length of the target field.
pub const TARGET_LEN: usize = 32;
/// Lowest protocol version this crate speaks.
pub const MIN_VERSION: u16 = 1;
/// Highest protocol version this crate speaks (2: version 1 plus `REFRESH_CONFIG`).
pub const MAX_VERSION: u16 = 2;
/// Largest request (header + body) a server accepts.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Largest response (header + body) a client accepts.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;
/// `flags` bit: the message is a response (or INIT/TERM).
pub const FLAG_RESPONSE: u16 = 0x0001;

/// A message type (z/OS NMsMType).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgType(pub u16);

/// Whether a request monitors or changes state (selects the DISPLAY or CONTROL profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Monitoring: `GET_*`, `TRAFFIC_TEST`.
    Display,
    /// State changes: `SET_*`, `ACT_*`, `DEACT_*`, `REFRESH_*`.
    Control,
}

impl Access {
    /// The profile suffix, `DISPLAY` or `CONTROL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Display => "DISPLAY",
            Access::Control => "CONTROL",
        }
    }
}

impl MsgType {
    /// Server → client on connect.
    pub const INIT: Self = Self(1);
    /// Server → client before close.
    pub const TERM: Self = Self(2);
    /// Stack summary.
    pub const GET_STACKINFO: Self = Self(16);
    /// IKE tunnels.
    pub const GET_IKETUN: Self = Self(17);
    /// IKE tunnels with their dynamic tunnels.
    pub const GET_IKETUNCASCADE: Self = Self(18);
    /// Dynamic tunnels as iked knows them (incl. in negotiation).
    pub const GET_IPTUNDYNIKE: Self = Self(19);
    /// Dynamic tunnels installed in the kernel.
    pub const GET_IPTUNDYNSTACK: Self = Self(20);
    /// Manual tunnels.
    pub const GET_IPTUNMANUAL: Self = Self(21);
    /// Current filter table.
    pub const GET_IPFLTCURR: Self = Self(22);
    /// Default (profile) filter table.
    pub const GET_IPFLTDEFAULT: Self = Self(23);
    /// Policy filter table.
    pub const GET_IPFLTPOLICY: Self = Self(24);
    /// Interfaces.
    pub const GET_IPINTERFACES: Self = Self(25);
    /// NAT-T port translation table.
    pub const GET_PORTTRANS: Self = Self(26);
    /// iked's NSS client state per stack.
    pub const GET_IKENSINFO: Self = Self(27);
    /// nssd's connected clients.
    pub const GET_CLIENTINFO: Self = Self(28);
    /// Summary statistics.
    pub const GET_SUMMARY: Self = Self(29);
    /// Traffic test against the current filter table.
    pub const TRAFFIC_TEST: Self = Self(30);
    /// Switch to the default filter set (`ipsec -f default`).
    pub const SET_IPFLTDEFAULT: Self = Self(64);
    /// Switch to the policy filter set (`ipsec -f reload`).
    pub const SET_IPFLTPOLICY: Self = Self(65);
    /// Activate manual tunnels.
    pub const ACT_IPTUNMANUAL: Self = Self(66);
    /// Deactivate manual tunnels.
    pub const DEACT_IPTUNMANUAL: Self = Self(67);
    /// Activate dynamic tunnels.
    pub const ACT_IPTUNDYN: Self = Self(68);
    /// Deactivate dynamic tunnels.
    pub const DEACT_IPTUNDYN: Self = Self(69);
    /// Refresh (rekey) dynamic tunnels.
    pub const REFRESH_IPTUNDYN: Self = Self(70);
    /// Deactivate IKE tunnels.
    pub const DEACT_IKETUN: Self = Self(71);
    /// Refresh (rekey) IKE tunnels.
    pub const REFRESH_IKETUN: Self = Self(72);
    /// Activate an IKE tunnel only (AIX `ike cmd=activate phase=1`).
    pub const ACT_IKETUN: Self = Self(73);
    /// Re-read the daemon's configuration files (z/OS `MODIFY IKED,REFRESH` /
    /// `MODIFY NSSD,REFRESH`); protocol version 2.
    pub const REFRESH_CONFIG: Self = Self(74);

    /// Every request type a client may send, in numeric order.
    pub const REQUESTS: [MsgType; 26] = [
        Self::GET_STACKINFO,
        Self::GET_IKETUN,
        Self::GET_IKETUNCASCADE,
        Self::GET_IPTUNDYNIKE,
        Self::GET_IPTUNDYNSTACK,
        Self::GET_IPTUNMANUAL,
        Self::GET_IPFLTCURR,
        Self::GET_IPFLTDEFAULT,
        Self::GET_IPFLTPOLICY,
        Self::GET_IPINTERFACES,
        Self::GET_PORTTRANS,
        Self::GET_IKENSINFO,
        Self::GET_CLIENTINFO,
        Self::GET_SUMMARY,
        Self::TRAFFIC_TEST,
        Self::SET_IPFLTDEFAULT,
        Self::SET_IPFLTPOLICY,
        Self::ACT_IPTUNMANUAL,
        Self::DEACT_IPTUNMANUAL,
        Self::ACT_IPTUNDYN,
        Self::DEACT_IPTUNDYN,
        Self::REFRESH_IPTUNDYN,
        Self::DEACT_IKETUN,
        Self::REFRESH_IKETUN,
        Self::ACT_IKETUN,
        Self::REFRESH_CONFIG,
    ];

    /// The documented name (`GET_IKETUN`, …), if the type is assigned.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::INIT => "INIT",
            Self::TERM => "TERM",
            Self::GET_STACKINFO => "GET_STACKINFO",
            Self::GET_IKETUN => "GET_IKETUN",
            Self::GET_IKETUNCASCADE => "GET_IKETUNCASCADE",
            Self::GET_IPTUNDYNIKE => "GET_IPTUNDYNIKE",
            Self::GET_IPTUNDYNSTACK => "GET_IPTUNDYNSTACK",
            Self::GET_IPTUNMANUAL => "GET_IPTUNMANUAL",
            Self::GET_IPFLTCURR => "GET_IPFLTCURR",
            Self::GET_IPFLTDEFAULT => "GET_IPFLTDEFAULT",
            Self::GET_IPFLTPOLICY => "GET_IPFLTPOLICY",
            Self::GET_IPINTERFACES => "GET_IPINTERFACES",
            Self::GET_PORTTRANS => "GET_PORTTRANS",
            Self::GET_IKENSINFO => "GET_IKENSINFO",
            Self::GET_CLIENTINFO => "GET_CLIENTINFO",
            Self::GET_SUMMARY => "GET_SUMMARY",
            Self::TRAFFIC_TEST => "TRAFFIC_TEST",
            Self::SET_IPFLTDEFAULT => "SET_IPFLTDEFAULT",
            Self::SET_IPFLTPOLICY => "SET_IPFLTPOLICY",
            Self::ACT_IPTUNMANUAL => "ACT_IPTUNMANUAL",
            Self::DEACT_IPTUNMANUAL => "DEACT_IPTUNMANUAL",
            Self::ACT_IPTUNDYN => "ACT_IPTUNDYN",
            Self::DEACT_IPTUNDYN => "DEACT_IPTUNDYN",
            Self::REFRESH_IPTUNDYN => "REFRESH_IPTUNDYN",
            Self::DEACT_IKETUN => "DEACT_IKETUN",
            Self::REFRESH_IKETUN => "REFRESH_IKETUN",
            Self::ACT_IKETUN => "ACT_IKETUN",
            Self::REFRESH_CONFIG => "REFRESH_CONFIG",
            _ => return None,
        })
    }

    /// True for the types a client may send (every assigned type but INIT and TERM).
    pub fn is_request(self) -> bool {
        self.name().is_some() && self != Self::INIT && self != Self::TERM
    }

    /// The lowest protocol version that defines this type (a request of an older version with
    /// this type is `EINVAL`/`NMsRsnBadType`).
    pub fn min_version(self) -> u16 {
        if self == Self::REFRESH_CONFIG { 2 } else { 1 }
    }

    /// DISPLAY or CONTROL, for request types; `None` for INIT, TERM and unassigned types.
    pub fn access(self) -> Option<Access> {
        if !self.is_request() {
            return None;
        }
        Some(if self.0 >= 64 {
            Access::Control
        } else {
            Access::Display
        })
    }
}

impl fmt::Debug for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "type {}", self.0),
        }
    }
}

/// A validated target: a stack name or an NSS client name, 1–32 bytes of 0x21–0x7E.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target(String);

impl Target {
    /// Validates a target name.
    pub fn new(name: &str) -> Result<Target, Error> {
        if name.is_empty() || name.len() > TARGET_LEN {
            return Err(Error::BadTarget(format!(
                "{name:?}: a target must be 1 to {TARGET_LEN} characters"
            )));
        }
        if let Some(c) = name.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
            return Err(Error::BadTarget(format!(
                "{name:?}: byte 0x{c:02x} is not allowed (printable ASCII, no blanks)"
            )));
        }
        Ok(Target(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive comparison (targets are looked up case-insensitively).
    pub fn matches(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }

    /// The blank-padded 32-byte field.
    pub fn to_field(target: Option<&Target>) -> [u8; TARGET_LEN] {
        let mut f = [b' '; TARGET_LEN];
        if let Some(t) = target {
            for (d, s) in f.iter_mut().zip(t.0.bytes()) {
                *d = s;
            }
        }
        f
    }

    /// Parses a 32-byte target field: trailing blanks are padding; all blanks = no target.
    pub fn from_field(field: &[u8; TARGET_LEN]) -> Result<Option<Target>, Failure> {
        let end = field
            .iter()
            .rposition(|&b| b != b' ')
            .map_or(0, |p| p.saturating_add(1));
        let name = field.get(..end).unwrap_or_default();
        if name.is_empty() {
            return Ok(None);
        }
        if name.iter().any(|b| !(0x21..=0x7e).contains(b)) {
            return Err(Failure::invalid(
                ReasonCode::BAD_TARGET,
                "the target field holds bytes outside printable ASCII, or a blank inside the name",
            ));
        }
        // All bytes are ASCII, so this cannot fail.
        let s = String::from_utf8_lossy(name).into_owned();
        Ok(Some(Target(s)))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({:?})", self.0)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The message header, with every field as received (validation is separate, so that a server
/// can answer each defect with its documented reason code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `GKNM` in a valid message.
    pub ident: [u8; 4],
    /// 64 in a valid message.
    pub header_size: u16,
    /// Protocol version.
    pub version: u16,
    /// Message type.
    pub msg_type: MsgType,
    /// Flags; [`FLAG_RESPONSE`].
    pub flags: u16,
    /// Return code.
    pub rc: ReturnCode,
    /// Reason code.
    pub rsn: ReasonCode,
    /// Request correlator, echoed in the response.
    pub correlator: u32,
    /// Length of the body.
    pub body_len: u32,
    /// Reserved, 0.
    pub reserved: u32,
    /// Target field, blank-padded ASCII.
    pub target: [u8; TARGET_LEN],
}

fn be16(b: &[u8; HEADER_LEN], at: usize) -> u16 {
    let mut v = [0u8; 2];
    if let Some(s) = b.get(at..at.saturating_add(2)) {
        v.copy_from_slice(s);
    }
    u16::from_be_bytes(v)
}

fn be32(b: &[u8; HEADER_LEN], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at.saturating_add(4)) {
        v.copy_from_slice(s);
    }
    u32::from_be_bytes(v)
}

fn put(b: &mut [u8; HEADER_LEN], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at.saturating_add(v.len())) {
        d.copy_from_slice(v);
    }
}

impl Header {
    /// A request header.
    pub fn request(
        msg_type: MsgType,
        version: u16,
        correlator: u32,
        target: Option<&Target>,
    ) -> Self {
        Header {
            ident: IDENT,
            header_size: HEADER_LEN as u16,
            version,
            msg_type,
            flags: 0,
            rc: ReturnCode::OK,
            rsn: ReasonCode::NONE,
            correlator,
            body_len: 0,
            reserved: 0,
            target: Target::to_field(target),
        }
    }

    /// A server-originated header (response, INIT or TERM).
    pub fn server(
        msg_type: MsgType,
        version: u16,
        correlator: u32,
        rc: ReturnCode,
        rsn: ReasonCode,
        target: Option<&Target>,
    ) -> Self {
        Header {
            flags: FLAG_RESPONSE,
            rc,
            rsn,
            ..Header::request(msg_type, version, correlator, target)
        }
    }

    /// Parses the 64 header bytes. Never fails: see [`Header::check_framing`] and
    /// [`Header::check_request`].
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        let mut ident = [0u8; 4];
        ident.copy_from_slice(b.get(0..4).unwrap_or(&[0; 4]));
        let mut target = [0u8; TARGET_LEN];
        target.copy_from_slice(b.get(32..64).unwrap_or(&[0; TARGET_LEN]));
        Header {
            ident,
            header_size: be16(b, 4),
            version: be16(b, 6),
            msg_type: MsgType(be16(b, 8)),
            flags: be16(b, 10),
            rc: ReturnCode(be32(b, 12)),
            rsn: ReasonCode(be32(b, 16)),
            correlator: be32(b, 20),
            body_len: be32(b, 24),
            reserved: be32(b, 28),
            target,
        }
    }

    /// Parses a header from the start of a buffer.
    pub fn parse_slice(b: &[u8]) -> Option<Header> {
        let arr: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header::parse(arr))
    }

    /// The 64 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, 0, &self.ident);
        put(&mut b, 4, &self.header_size.to_be_bytes());
        put(&mut b, 6, &self.version.to_be_bytes());
        put(&mut b, 8, &self.msg_type.0.to_be_bytes());
        put(&mut b, 10, &self.flags.to_be_bytes());
        put(&mut b, 12, &self.rc.0.to_be_bytes());
        put(&mut b, 16, &self.rsn.0.to_be_bytes());
        put(&mut b, 20, &self.correlator.to_be_bytes());
        put(&mut b, 24, &self.body_len.to_be_bytes());
        put(&mut b, 28, &self.reserved.to_be_bytes());
        put(&mut b, 32, &self.target);
        b
    }

    /// Length of the whole message: 64 + `body_len`.
    pub fn message_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.body_len as usize)
    }

    /// True if the `RESPONSE` flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// The target, validated.
    pub fn target(&self) -> Result<Option<Target>, Failure> {
        Target::from_field(&self.target)
    }

    /// Steps 1–2 of the processing order: failures here close the connection.
    pub fn check_framing(&self, max_len: usize) -> Result<(), Failure> {
        if self.ident != IDENT {
            return Err(Failure::invalid(
                ReasonCode::BAD_IDENT,
                "the message does not start with the NMI identifier GKNM",
            ));
        }
        if self.message_len() > max_len {
            return Err(Failure::invalid(
                ReasonCode::EXCESSIVE_SIZE,
                format!(
                    "message of {} bytes exceeds the maximum of {max_len}",
                    self.message_len()
                ),
            ));
        }
        Ok(())
    }

    /// Steps 4–8 of the processing order for a request: each failure fails only the request.
    /// Returns the validated target.
    pub fn check_request(&self, max_version: u16) -> Result<Option<Target>, Failure> {
        if usize::from(self.header_size) != HEADER_LEN {
            return Err(Failure::invalid(
                ReasonCode::HDR_SIZE,
                format!("header size {} is not {HEADER_LEN}", self.header_size),
            ));
        }
        if self.version == 0 || self.version > max_version {
            return Err(Failure::invalid(
                ReasonCode::BAD_VERSION,
                format!(
                    "protocol version {} is not supported (this server speaks {MIN_VERSION} to {max_version})",
                    self.version
                ),
            ));
        }
        if self.flags != 0 || !self.rc.is_ok() || self.rsn.0 != 0 || self.reserved != 0 {
            return Err(Failure::invalid(
                ReasonCode::RESERVED_NONZERO,
                "flags, rc, rsn and reserved must be 0 in a request",
            ));
        }
        if !self.msg_type.is_request() {
            return Err(Failure::invalid(
                ReasonCode::BAD_TYPE,
                format!("{} is not a request type", self.msg_type),
            ));
        }
        if self.version < self.msg_type.min_version() {
            return Err(Failure::invalid(
                ReasonCode::BAD_TYPE,
                format!(
                    "{} is defined from protocol version {}; this request is version {}",
                    self.msg_type,
                    self.msg_type.min_version(),
                    self.version
                ),
            ));
        }
        self.target()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let t = Target::new("default").unwrap_or_else(|e| panic!("{e}"));
        let mut h = Header::request(MsgType::GET_IKETUN, 1, 1, Some(&t));
        h.body_len = 0;
        let b = h.to_bytes();
        let expect: [u8; 32] = [
            0x47, 0x4b, 0x4e, 0x4d, 0x00, 0x40, 0x00, 0x01, 0x00, 0x11, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(&b[..32], &expect);
        assert_eq!(&b[32..39], b"default");
        assert!(b[39..].iter().all(|&c| c == b' '));
        assert_eq!(Header::parse(&b), h);
        assert_eq!(h.check_request(MAX_VERSION), Ok(Some(t)));
    }

    #[test]
    fn request_checks_in_order() {
        let mut h = Header::request(MsgType::GET_IKETUN, 1, 7, None);
        h.header_size = 60;
        h.version = 0;
        assert_eq!(
            h.check_request(1).map_err(|f| f.rsn),
            Err(ReasonCode::HDR_SIZE)
        );
        h.header_size = 64;
        assert_eq!(
            h.check_request(1).map_err(|f| f.rsn),
            Err(ReasonCode::BAD_VERSION)
        );
        h.version = 1;
        h.reserved = 1;
        assert_eq!(
            h.check_request(1).map_err(|f| f.rsn),
            Err(ReasonCode::RESERVED_NONZERO)
        );
        h.reserved = 0;
        h.msg_type = MsgType::INIT;
        assert_eq!(
            h.check_request(1).map_err(|f| f.rsn),
            Err(ReasonCode::BAD_TYPE)
        );
        h.msg_type = MsgType(999);
        assert_eq!(
            h.check_request(1).map_err(|f| f.rsn),
            Err(ReasonCode::BAD_TYPE)
        );
        h.msg_type = MsgType::GET_SUMMARY;
        h.target[3] = b'x';
        assert_eq!(
            h.check_request(1).map_err(|f| f.rsn),
            Err(ReasonCode::BAD_TARGET)
        );
        h.target = Target::to_field(None);
        assert_eq!(h.check_request(1), Ok(None));
        // A version-2 type in a version-1 request.
        h.msg_type = MsgType::REFRESH_CONFIG;
        assert_eq!(
            h.check_request(2).map_err(|f| f.rsn),
            Err(ReasonCode::BAD_TYPE)
        );
        h.version = 2;
        assert_eq!(h.check_request(2), Ok(None));
        assert_eq!(
            h.check_request(1).map_err(|f| f.rsn),
            Err(ReasonCode::BAD_VERSION)
        );
    }

    #[test]
    fn framing_failures_close() {
        let mut h = Header::request(MsgType::GET_IKETUN, 1, 7, None);
        h.body_len = MAX_REQUEST as u32;
        let f = h.check_framing(MAX_REQUEST).err();
        assert!(f.as_ref().is_some_and(Failure::closes_connection));
        h.body_len = 0;
        h.ident = *b"NMSC";
        let f = h.check_framing(MAX_REQUEST).err();
        assert_eq!(f.as_ref().map(|f| f.rsn), Some(ReasonCode::BAD_IDENT));
        assert!(f.is_some_and(|f| f.closes_connection()));
    }

    #[test]
    fn targets() {
        assert!(Target::new("").is_err());
        assert!(Target::new("a b").is_err());
        assert!(Target::new(&"x".repeat(33)).is_err());
        assert!(Target::new(&"x".repeat(32)).is_ok());
        let t = Target::new("GW1_default").unwrap_or_else(|e| panic!("{e}"));
        assert!(t.matches("gw1_DEFAULT"));
        assert_eq!(Target::from_field(&Target::to_field(Some(&t))), Ok(Some(t)));
    }

    #[test]
    fn access_classes() {
        assert_eq!(MsgType::GET_IKETUN.access(), Some(Access::Display));
        assert_eq!(MsgType::TRAFFIC_TEST.access(), Some(Access::Display));
        assert_eq!(MsgType::SET_IPFLTDEFAULT.access(), Some(Access::Control));
        assert_eq!(MsgType::ACT_IKETUN.access(), Some(Access::Control));
        assert_eq!(MsgType::REFRESH_CONFIG.access(), Some(Access::Control));
        assert_eq!(MsgType(75).access(), None);
        assert_eq!(MsgType::INIT.access(), None);
        assert_eq!(MsgType(31).access(), None);
    }
}
