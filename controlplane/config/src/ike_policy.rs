//! The IKE statements of the IPsec policy file, read by iked.
//!
//! The policy file uses the z/OS Policy Agent statement syntax (`#`
//! comments, `Keyword name { … }` blocks, case-insensitive keywords). This
//! module parses the statements that describe key exchange and tunnels:
//!
//! | statement | what it is |
//! |---|---|
//! | `KeyExchangeRule` | which peer (security endpoints, identities) uses which KeyExchangeAction, and its pre-shared key |
//! | `KeyExchangeAction` | IKE version and mode, authentication, NAT traversal, DPD, ordered offers |
//! | `KeyExchangeOffer` | one IKE SA proposal: encryption, integrity, PRF, DH group, lifetimes |
//! | `LocalSecurityEndpoint` / `RemoteSecurityEndpoint` | an IKE identity and the address it is reached at |
//! | `LocalDynVpnRule` | a dynamic tunnel: traffic selectors, security endpoints, activation |
//! | `IpDynVpnAction` | child SA settings: initiation, PFS, encapsulation, ordered data offers |
//! | `IpDataOffer` | one child SA proposal: ESP/AH algorithms, mode, lifetimes |
//! | `IpManVpnAction` | a manual tunnel: static SPIs and keys |
//!
//! Other statements of the file (the filter statements `IpFilterRule`,
//! `IpGenericFilterAction`, …) belong to the dataplane's module; [`parse`]
//! skips them (see [`is_ike_statement`]).
//!
//! Inline blocks (`KeyExchangeOffer { … }` inside an action) and references
//! (`KeyExchangeOfferRef name`) may be mixed; order is kept, and a reference
//! may point to a statement later in the file. Names are 1-32 characters,
//! must not start with `-` and must not contain `,`. Every default is
//! documented on its field and in `docs/configuration.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use crate::iked_conf::{
    Diagnostics, LoadError, Secret, expect_statement_end, parse_block, statements,
};
use crate::lex::{self, CommentStyle, Cursor, Diagnostic, Pos, Token, TokenKind};

/// The statement keywords this module parses.
pub const IKE_STATEMENTS: &[&str] = &[
    "KeyExchangeRule",
    "KeyExchangeAction",
    "KeyExchangeOffer",
    "LocalSecurityEndpoint",
    "RemoteSecurityEndpoint",
    "LocalDynVpnRule",
    "IpDynVpnAction",
    "IpDataOffer",
    "IpManVpnAction",
];

/// Is `tok` the keyword of one of this module's statements?
pub fn is_ike_statement(tok: &Token) -> bool {
    IKE_STATEMENTS.iter().any(|k| tok.is_word(k))
}

// ---------------------------------------------------------------------------
// Values

/// An address selector: `*`, an address, `addr/prefix` or `addr-addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrSpec {
    /// `*` / `All`: any address (of either family).
    Any,
    /// One address.
    Host(IpAddr),
    /// A prefix (the address is stored with the host bits cleared).
    Prefix(IpAddr, u8),
    /// An inclusive range of the same family.
    Range(IpAddr, IpAddr),
}

impl AddrSpec {
    /// The address family: `Some(true)` IPv6, `Some(false)` IPv4, `None` for `*`.
    pub fn is_ipv6(&self) -> Option<bool> {
        match self {
            AddrSpec::Any => None,
            AddrSpec::Host(a) | AddrSpec::Prefix(a, _) | AddrSpec::Range(a, _) => Some(a.is_ipv6()),
        }
    }

    /// The first and last address covered, or `None` for `*`.
    pub fn bounds(&self) -> Option<(IpAddr, IpAddr)> {
        match *self {
            AddrSpec::Any => None,
            AddrSpec::Host(a) => Some((a, a)),
            AddrSpec::Range(a, b) => Some((a, b)),
            AddrSpec::Prefix(IpAddr::V4(a), len) => {
                let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                let lo = u32::from(a) & !host;
                Some((IpAddr::V4(lo.into()), IpAddr::V4((lo | host).into())))
            }
            AddrSpec::Prefix(IpAddr::V6(a), len) => {
                let host = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                let lo = u128::from(a) & !host;
                Some((IpAddr::V6(lo.into()), IpAddr::V6((lo | host).into())))
            }
        }
    }

    /// Does this selector contain `addr`?
    pub fn contains(&self, addr: IpAddr) -> bool {
        match self.bounds() {
            None => true,
            Some((lo, hi)) => lo.is_ipv6() == addr.is_ipv6() && lo <= addr && addr <= hi,
        }
    }

    /// Parse `*`, `All`, `a`, `a/len` or `a-b`.
    pub fn parse(s: &str) -> Result<AddrSpec, String> {
        if s == "*" || s.eq_ignore_ascii_case("all") {
            return Ok(AddrSpec::Any);
        }
        if let Some((a, len)) = s.split_once('/') {
            let a: IpAddr = a
                .parse()
                .map_err(|_| format!("'{a}' is not an IP address"))?;
            let max = if a.is_ipv6() { 128 } else { 32 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("prefix length must be 0 to {max}, found '{len}'"))?;
            let spec = AddrSpec::Prefix(a, len);
            let lo = spec.bounds().map_or(a, |b| b.0);
            return Ok(AddrSpec::Prefix(lo, len));
        }
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a
                .parse()
                .map_err(|_| format!("'{a}' is not an IP address"))?;
            let b: IpAddr = b
                .parse()
                .map_err(|_| format!("'{b}' is not an IP address"))?;
            if a.is_ipv6() != b.is_ipv6() {
                return Err("a range must not mix IPv4 and IPv6".into());
            }
            if a > b {
                return Err("a range must run from the lower to the higher address".into());
            }
            return Ok(AddrSpec::Range(a, b));
        }
        s.parse()
            .map(AddrSpec::Host)
            .map_err(|_| format!("'{s}' is not an IP address, prefix (a/len), range (a-b) or *"))
    }
}

impl fmt::Display for AddrSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrSpec::Any => f.write_str("*"),
            AddrSpec::Host(a) => write!(f, "{a}"),
            AddrSpec::Prefix(a, l) => write!(f, "{a}/{l}"),
            AddrSpec::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// An inclusive port range; `0..=65535` is "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    /// Every port.
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };

    /// True for the full range.
    pub fn is_any(&self) -> bool {
        *self == Self::ANY
    }
}

/// An IP protocol selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Every protocol.
    All,
    /// One protocol number (6 = TCP, 17 = UDP, 1 = ICMP, 58 = ICMPv6, …).
    Number(u8),
}

/// An IKE identity type (RFC 7296 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdType {
    /// `IpAddr` (ID_IPV4_ADDR / ID_IPV6_ADDR).
    IpAddr,
    /// `Fqdn` (ID_FQDN).
    Fqdn,
    /// `UserFqdn` / `UserAtFqdn` (ID_RFC822_ADDR).
    UserFqdn,
    /// `X500dn` (ID_DER_ASN1_DN).
    X500dn,
    /// `KeyId` (ID_KEY_ID).
    KeyId,
}

/// An IKE identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The type.
    pub kind: IdType,
    /// The value as written (an IP address for `IpAddr`).
    pub value: String,
}

/// IKE SA encryption (`KeyExchangeOffer HowToEncrypt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeEncrypt {
    /// DES-CBC (legacy, only when configured; refused in FIPS 140 mode).
    Des,
    /// 3DES-CBC (legacy).
    TripleDes,
    /// AES-CBC with a key length of 128, 192 or 256 bits.
    AesCbc(u16),
    /// AES-GCM with a 16-byte ICV (IKEv2 only), 128 or 256 bits.
    AesGcm16(u16),
}

/// IKEv1 hash (`HowToAuthMsgs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeHash {
    /// MD5 (legacy).
    Md5,
    /// SHA-1 (legacy).
    Sha1,
    /// SHA2-256.
    Sha2_256,
    /// SHA2-384.
    Sha2_384,
    /// SHA2-512.
    Sha2_512,
}

/// IKEv2 integrity (`HowToVerifyMsgs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeIntegrity {
    /// HMAC-MD5-96 (legacy).
    HmacMd5_96,
    /// HMAC-SHA1-96 (legacy).
    HmacSha1_96,
    /// AES-XCBC-96.
    Aes128Xcbc96,
    /// HMAC-SHA2-256-128.
    HmacSha2_256_128,
    /// HMAC-SHA2-384-192.
    HmacSha2_384_192,
    /// HMAC-SHA2-512-256.
    HmacSha2_512_256,
}

/// IKEv2 pseudo-random function (`PseudoRandomFunction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prf {
    /// HMAC-MD5 (legacy).
    HmacMd5,
    /// HMAC-SHA1 (legacy).
    HmacSha1,
    /// AES128-XCBC.
    Aes128Xcbc,
    /// HMAC-SHA2-256.
    HmacSha2_256,
    /// HMAC-SHA2-384.
    HmacSha2_384,
    /// HMAC-SHA2-512.
    HmacSha2_512,
}

/// A Diffie-Hellman group by IANA number: 1, 2, 5 (legacy), 14, 15, 16, 19,
/// 20, 21, 24 and 31 (Curve25519, a gatekey addition to the z/OS list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DhGroup(pub u16);

impl DhGroup {
    /// The groups the policy file accepts.
    pub const SUPPORTED: &[u16] = &[1, 2, 5, 14, 15, 16, 19, 20, 21, 24, 31];

    /// Groups only used when configured explicitly.
    pub fn is_legacy(self) -> bool {
        matches!(self.0, 1 | 2 | 5)
    }
}

/// Authentication method (`HowToAuthMe`, `HowToAuthPeers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Pre-shared key.
    PresharedKey,
    /// RSA signature (IKEv1 RSA, IKEv2 auth method 1).
    RsaSignature,
    /// ECDSA with P-256 and SHA-256.
    Ecdsa256,
    /// ECDSA with P-384 and SHA-384.
    Ecdsa384,
    /// ECDSA with P-521 and SHA-512.
    Ecdsa521,
    /// IKEv2 digital signature (RFC 7427), algorithm from the key.
    DigitalSignature,
}

impl AuthMethod {
    /// True for every signature method.
    pub fn is_signature(self) -> bool {
        self != AuthMethod::PresharedKey
    }
}

/// IKE version and phase 1 mode (`HowToInitiate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HowToInitiate {
    /// IKEv1 main mode.
    Main,
    /// IKEv1 aggressive mode.
    Aggressive,
    /// IKEv2 (the gatekey default).
    IkeV2,
    /// Never initiate; respond only.
    DoNot,
}

/// Accepted IKEv1 phase 1 modes when responding (`HowToRespondIKEv1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HowToRespondV1 {
    /// Main or aggressive.
    Either,
    /// Main only (the gatekey default: aggressive mode with a pre-shared key
    /// exposes a hash of the key to offline guessing).
    Main,
    /// Aggressive only.
    Aggressive,
}

/// A `KeyExchangeOffer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchangeOffer {
    /// The name (`~offerN` for an inline offer).
    pub name: String,
    /// `HowToEncrypt` (default `AES_CBC KeyLength 128`).
    pub encrypt: IkeEncrypt,
    /// `HowToAuthMsgs` (IKEv1 hash; default `SHA2_256`).
    pub hash: IkeHash,
    /// `HowToVerifyMsgs` (IKEv2 integrity; default `HMAC_SHA2_256_128`;
    /// ignored with AES_GCM_16).
    pub integrity: IkeIntegrity,
    /// `PseudoRandomFunction` (IKEv2; default `HMAC_SHA2_256`).
    pub prf: Prf,
    /// `DHGroup` (default `Group19`).
    pub dh_group: DhGroup,
    /// `HowToAuthPeers` (IKEv1 authentication method of this offer; default
    /// the action's HowToAuthMe).
    pub auth_peers: Option<AuthMethod>,
    /// `RefreshLifetimeProposed` minutes (default 480).
    pub lifetime_proposed: u32,
    /// `RefreshLifetimeAccepted min max` minutes (default 240 1440).
    pub lifetime_accepted: (u32, u32),
    /// `RefreshLifesizeProposed` KB (default None).
    pub lifesize_proposed: Option<u64>,
    /// `RefreshLifesizeAccepted min max` KB (default None).
    pub lifesize_accepted: Option<(u64, u64)>,
    /// Where it is defined.
    pub pos: Pos,
}

impl KeyExchangeOffer {
    fn defaults(name: String, pos: Pos) -> Self {
        KeyExchangeOffer {
            name,
            encrypt: IkeEncrypt::AesCbc(128),
            hash: IkeHash::Sha2_256,
            integrity: IkeIntegrity::HmacSha2_256_128,
            prf: Prf::HmacSha2_256,
            dh_group: DhGroup(19),
            auth_peers: None,
            lifetime_proposed: 480,
            lifetime_accepted: (240, 1440),
            lifesize_proposed: None,
            lifesize_accepted: None,
            pos,
        }
    }
}

/// A `KeyExchangeAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchangeAction {
    /// The name.
    pub name: String,
    /// `HowToInitiate` (default `IKEv2`).
    pub initiate: HowToInitiate,
    /// `HowToRespondIKEv1` (default `Main`).
    pub respond_v1: HowToRespondV1,
    /// `HowToAuthMe` (default `PresharedKey` when the rule has a SharedKey,
    /// else `DigitalSignature`; see [`KeyExchangeRule::auth_me`]).
    pub auth_me: Option<AuthMethod>,
    /// `AllowNat` (default Yes): NAT traversal (UDP 4500) allowed.
    pub allow_nat: bool,
    /// `CertificateLabel` (gatekey): the keyring label of the certificate to
    /// authenticate with; default the ring's default PERSONAL certificate.
    pub certificate_label: Option<String>,
    /// `DpdInterval seconds` (gatekey; default 30, 0 = off): dead peer
    /// detection probes after this much inbound silence.
    pub dpd_interval: u32,
    /// `ReauthInterval minutes` (default 0 = only on lifetime expiry).
    pub reauth_interval: u32,
    /// The offers in preference order (`KeyExchangeOffer { … }` /
    /// `KeyExchangeOfferRef`); one default offer if none is coded.
    pub offers: Vec<KeyExchangeOffer>,
    /// Where it is defined.
    pub pos: Pos,
}

/// A security endpoint: who we are or whom we accept, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEndpoint {
    /// The name (`~local`/`~remote` when inline).
    pub name: String,
    /// `Identity type value` (default: the IpAddr of Location, if a host).
    pub identity: Option<Identity>,
    /// `Location` (local: the address IKE uses; remote: the peer address,
    /// prefix, range or `*`). Default `*`.
    pub location: AddrSpec,
    /// `CaLabel` (remote, gatekey): only certificates issued by this CA
    /// (keyring label) are accepted.
    pub ca_label: Option<String>,
    /// Where it is defined.
    pub pos: Pos,
}

impl SecurityEndpoint {
    /// The identity to use or expect: `Identity`, else the Location
    /// address as an IpAddr identity when it is a single host.
    pub fn effective_identity(&self) -> Option<Identity> {
        self.identity.clone().or(match self.location {
            AddrSpec::Host(a) => Some(Identity {
                kind: IdType::IpAddr,
                value: a.to_string(),
            }),
            _ => None,
        })
    }
}

/// A `KeyExchangeRule`: which peers use which action and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExchangeRule {
    /// The name.
    pub name: String,
    /// `LocalSecurityEndpoint { … }` / `LocalSecurityEndpointRef`.
    pub local: SecurityEndpoint,
    /// `RemoteSecurityEndpoint { … }` / `RemoteSecurityEndpointRef`.
    pub remote: SecurityEndpoint,
    /// `KeyExchangeActionRef` / inline `KeyExchangeAction { … }` (required).
    pub action: KeyExchangeAction,
    /// `SharedKey Ascii text | Hex digits` (required for PresharedKey).
    pub shared_key: Option<Secret>,
    /// Where it is defined.
    pub pos: Pos,
}

impl KeyExchangeRule {
    /// How we authenticate: the action's HowToAuthMe, else PresharedKey
    /// when a SharedKey is coded, else DigitalSignature.
    pub fn auth_me(&self) -> AuthMethod {
        self.action.auth_me.unwrap_or(if self.shared_key.is_some() {
            AuthMethod::PresharedKey
        } else {
            AuthMethod::DigitalSignature
        })
    }
}

/// IPsec encryption (`IpDataOffer HowToEncrypt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspEncrypt {
    /// `DoNot`: ESP with NULL encryption (integrity only), or AH.
    DoNot,
    /// DES-CBC (legacy).
    Des,
    /// 3DES-CBC (legacy).
    TripleDes,
    /// AES-CBC 128/192/256.
    AesCbc(u16),
    /// AES-GCM with 16-byte ICV, 128/192/256 (no separate HowToAuth).
    AesGcm16(u16),
    /// ChaCha20-Poly1305 (RFC 7634; gatekey addition).
    ChaCha20Poly1305,
}

impl EspEncrypt {
    /// An AEAD (combined-mode) cipher: integrity is part of it.
    pub fn is_aead(self) -> bool {
        matches!(self, EspEncrypt::AesGcm16(_) | EspEncrypt::ChaCha20Poly1305)
    }
}

/// IPsec protocol for authentication (`HowToAuth AH|ESP …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpsecProto {
    /// ESP.
    Esp,
    /// AH.
    Ah,
}

/// IPsec integrity algorithm (`HowToAuth … alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EspAuth {
    /// No separate integrity (with an AEAD cipher).
    Null,
    /// AES-GMAC-128 (integrity only).
    AesGmac128,
    /// AES-GMAC-256 (integrity only).
    AesGmac256,
    /// AES-XCBC-96.
    Aes128Xcbc96,
    /// HMAC-MD5-96 (legacy).
    HmacMd5,
    /// HMAC-SHA1-96 (legacy).
    HmacSha1,
    /// HMAC-SHA2-256-128.
    HmacSha2_256_128,
    /// HMAC-SHA2-384-192.
    HmacSha2_384_192,
    /// HMAC-SHA2-512-256.
    HmacSha2_512_256,
}

/// Encapsulation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encap {
    /// Tunnel mode (default).
    Tunnel,
    /// Transport mode.
    Transport,
}

/// An `IpDataOffer`: one child SA proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpDataOffer {
    /// The name (`~offerN` when inline).
    pub name: String,
    /// `HowToEncap` (default Tunnel).
    pub encap: Encap,
    /// `HowToEncrypt` (default `AES_CBC KeyLength 128`).
    pub encrypt: EspEncrypt,
    /// `HowToAuth` protocol (default ESP).
    pub auth_proto: IpsecProto,
    /// `HowToAuth` algorithm (default `HMAC_SHA2_256_128`, or `Null` with an
    /// AEAD cipher).
    pub auth: EspAuth,
    /// `RefreshLifetimeProposed` minutes (default 240).
    pub lifetime_proposed: u32,
    /// `RefreshLifetimeAccepted min max` minutes (default 120 480).
    pub lifetime_accepted: (u32, u32),
    /// `RefreshLifesizeProposed` KB (default None).
    pub lifesize_proposed: Option<u64>,
    /// `RefreshLifesizeAccepted min max` KB (default None).
    pub lifesize_accepted: Option<(u64, u64)>,
    /// Where it is defined.
    pub pos: Pos,
}

/// Who may start a dynamic tunnel (`Initiation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiation {
    /// Either side (default).
    Either,
    /// Only this side.
    LocalOnly,
    /// Only the peer.
    RemoteOnly,
}

/// An `IpDynVpnAction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpDynVpnAction {
    /// The name.
    pub name: String,
    /// `Initiation` (default Either).
    pub initiation: Initiation,
    /// `VpnLife` minutes (default 1440): how long IKE keeps refreshing the
    /// tunnel; 0 = for ever.
    pub vpn_life: u32,
    /// `InitiateWithPfs None|GroupN` (default None; `Pfs` is a synonym).
    pub initiate_with_pfs: Option<DhGroup>,
    /// `AcceptablePfs` (repeatable; default: the InitiateWithPfs group,
    /// `None` accepted when InitiateWithPfs is None). `None` in the list
    /// means "no PFS is acceptable".
    pub acceptable_pfs: Vec<Option<DhGroup>>,
    /// `HowToEncapIKEv2 Either|Tunnel|Transport` (default Either: the
    /// offer's HowToEncap decides).
    pub encap_ikev2: Option<Encap>,
    /// `PassthroughDF Yes|No` (default Yes).
    pub passthrough_df: bool,
    /// `PassthroughDSCP Yes|No` (default Yes).
    pub passthrough_dscp: bool,
    /// The data offers in preference order; one default offer if none.
    pub offers: Vec<IpDataOffer>,
    /// Where it is defined.
    pub pos: Pos,
}

/// A `LocalDynVpnRule`: a dynamic tunnel this host can activate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDynVpnRule {
    /// The name (used by `ipsec -y activate name`).
    pub name: String,
    /// `IpSourceAddr` (local traffic selector; required).
    pub src: AddrSpec,
    /// `IpDestAddr` (remote traffic selector; required).
    pub dst: AddrSpec,
    /// `Protocol` (default All).
    pub protocol: Protocol,
    /// `SourcePort p [q]` (default any).
    pub src_port: PortRange,
    /// `DestinationPort p [q]` (default any).
    pub dst_port: PortRange,
    /// `LocalSecurityEndpoint addr` (default: IpSourceAddr if a host, else
    /// the stack's address towards the remote endpoint).
    pub local_endpoint: Option<IpAddr>,
    /// `RemoteSecurityEndpoint addr` (default: IpDestAddr when it is a host;
    /// required otherwise).
    pub remote_endpoint: IpAddr,
    /// `IpDynVpnActionRef` (required).
    pub action: IpDynVpnAction,
    /// `AutoActivate Yes|No` (default No): activate when iked starts and
    /// re-activate when the tunnel goes down.
    pub auto_activate: bool,
    /// `OnDemand Yes|No` (gatekey; default Yes): matching outbound traffic
    /// starts the tunnel (kernel ACQUIRE); without a tunnel it is dropped.
    pub on_demand: bool,
    /// Where it is defined.
    pub pos: Pos,
}

/// One direction of a manual SA.
#[derive(Clone, PartialEq, Eq)]
pub struct ManualSa {
    /// The SPI.
    pub spi: u32,
    /// The encryption key (empty for NULL/AH).
    pub encryption_key: Secret,
    /// The integrity key (empty with an AEAD cipher).
    pub auth_key: Secret,
}

impl fmt::Debug for ManualSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("encryption_key", &self.encryption_key)
            .field("auth_key", &self.auth_key)
            .finish()
    }
}

/// An `IpManVpnAction`: a manually keyed tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpManVpnAction {
    /// The name (used by `ipsec -m activate name`).
    pub name: String,
    /// `Active Yes|No` (default Yes): installed when iked starts.
    pub active: bool,
    /// `IpSourceAddr` (local traffic selector; default the local endpoint).
    pub src: AddrSpec,
    /// `IpDestAddr` (remote traffic selector; default the remote endpoint).
    pub dst: AddrSpec,
    /// `LocalSecurityEndpoint addr` (required).
    pub local_endpoint: IpAddr,
    /// `RemoteSecurityEndpoint addr` (required).
    pub remote_endpoint: IpAddr,
    /// `HowToEncap` (default Tunnel).
    pub encap: Encap,
    /// `HowToEncrypt` (default `AES_CBC KeyLength 128`).
    pub encrypt: EspEncrypt,
    /// `HowToAuth` protocol (default ESP).
    pub auth_proto: IpsecProto,
    /// `HowToAuth` algorithm (default `HMAC_SHA2_256_128`, `Null` with AEAD).
    pub auth: EspAuth,
    /// `InboundSpi`, `InboundEncryptionKey`, `InboundAuthKey`.
    pub inbound: ManualSa,
    /// `OutboundSpi`, `OutboundEncryptionKey`, `OutboundAuthKey`.
    pub outbound: ManualSa,
    /// Where it is defined.
    pub pos: Pos,
}

/// The IKE part of a policy file, with every reference resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IkePolicy {
    /// KeyExchangeRules in file order (first match wins).
    pub key_exchange_rules: Vec<KeyExchangeRule>,
    /// LocalDynVpnRules in file order.
    pub local_dyn_vpn_rules: Vec<LocalDynVpnRule>,
    /// Every IpDynVpnAction by name (also those only IpFilterRules use).
    pub ip_dyn_vpn_actions: BTreeMap<String, IpDynVpnAction>,
    /// IpManVpnActions in file order.
    pub ip_man_vpn_actions: Vec<IpManVpnAction>,
}

impl IkePolicy {
    /// The first KeyExchangeRule whose remote endpoint location contains
    /// `peer` and whose local location contains `local`.
    pub fn rule_for_peer(&self, local: IpAddr, peer: IpAddr) -> Option<&KeyExchangeRule> {
        self.key_exchange_rules
            .iter()
            .find(|r| r.remote.location.contains(peer) && r.local.location.contains(local))
    }

    /// The LocalDynVpnRule named `name`.
    pub fn dyn_rule(&self, name: &str) -> Option<&LocalDynVpnRule> {
        self.local_dyn_vpn_rules.iter().find(|r| r.name == name)
    }

    /// The IpManVpnAction named `name`.
    pub fn man_action(&self, name: &str) -> Option<&IpManVpnAction> {
        self.ip_man_vpn_actions.iter().find(|r| r.name == name)
    }

    /// Errors for algorithms FIPS 140 mode forbids (DES, 3DES-less rules:
    /// DES and DH group 1, as z/OS; MD5 too).
    pub fn fips_violations(&self, file: &str) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut bad = |pos: Pos, what: &str, name: &str| {
            out.push(Diagnostic {
                file: Arc::from(file),
                pos,
                message: format!("{what} in {name} is not allowed with FIPS140 Yes"),
            });
        };
        for r in &self.key_exchange_rules {
            for o in &r.action.offers {
                if o.encrypt == IkeEncrypt::Des {
                    bad(o.pos, "DES", &o.name);
                }
                if o.dh_group == DhGroup(1) {
                    bad(o.pos, "DH Group1", &o.name);
                }
                if o.hash == IkeHash::Md5
                    || o.integrity == IkeIntegrity::HmacMd5_96
                    || o.prf == Prf::HmacMd5
                {
                    bad(o.pos, "MD5", &o.name);
                }
            }
        }
        for a in self.ip_dyn_vpn_actions.values() {
            if a.initiate_with_pfs == Some(DhGroup(1))
                || a.acceptable_pfs.contains(&Some(DhGroup(1)))
            {
                bad(a.pos, "PFS Group1", &a.name);
            }
            for o in &a.offers {
                if o.encrypt == EspEncrypt::Des {
                    bad(o.pos, "DES", &o.name);
                }
                if o.auth == EspAuth::HmacMd5 {
                    bad(o.pos, "HMAC_MD5", &o.name);
                }
            }
        }
        for m in &self.ip_man_vpn_actions {
            if m.encrypt == EspEncrypt::Des {
                bad(m.pos, "DES", &m.name);
            }
            if m.auth == EspAuth::HmacMd5 {
                bad(m.pos, "HMAC_MD5", &m.name);
            }
        }
        out.sort_by_key(|d| d.pos);
        out
    }
}

/// Read and parse the IKE statements of a policy file.
pub fn load(path: &Path) -> Result<IkePolicy, LoadError> {
    let src = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&path.display().to_string(), &src)?)
}

/// Parse the IKE statements of a policy file; other statements are checked
/// only for balanced braces and skipped.
pub fn parse(file: &str, src: &str) -> Result<IkePolicy, Diagnostics> {
    let toks = lex::tokenize(file, src, CommentStyle::Hash).map_err(|d| Diagnostics(vec![d]))?;
    let end = lex::end_pos(src);
    let mut errors = Vec::new();
    let mut raw = Raw::default();
    for stmt in statements(file, &toks, end, &mut errors) {
        let mut cur = Cursor::new(file, stmt.toks, stmt.end);
        let Some(head) = cur.next() else { continue };
        if !is_ike_statement(head) {
            continue;
        }
        if let Err(e) = raw
            .statement(&mut cur, head)
            .and_then(|()| expect_statement_end(&mut cur))
        {
            errors.push(e);
        }
    }
    let policy = raw.resolve(file, &mut errors);
    if errors.is_empty() {
        Ok(policy)
    } else {
        errors.sort_by_key(|d| d.pos);
        errors.dedup();
        Err(Diagnostics(errors))
    }
}

// ---------------------------------------------------------------------------
// Raw (unresolved) statements

#[derive(Debug, Clone)]
enum Ref<T> {
    Name(String, Pos),
    Inline(T),
}

#[derive(Debug, Clone)]
struct RawAction {
    action: KeyExchangeAction,
    offers: Vec<Ref<KeyExchangeOffer>>,
}

#[derive(Debug, Clone)]
struct RawRule {
    name: String,
    local: Option<Ref<SecurityEndpoint>>,
    remote: Option<Ref<SecurityEndpoint>>,
    action: Option<Ref<RawAction>>,
    shared_key: Option<Secret>,
    pos: Pos,
}

#[derive(Debug, Clone)]
struct RawDynAction {
    action: IpDynVpnAction,
    offers: Vec<Ref<IpDataOffer>>,
}

#[derive(Debug, Clone)]
struct RawDynRule {
    rule: LocalDynVpnRule,
    src: Option<AddrSpec>,
    dst: Option<AddrSpec>,
    remote: Option<IpAddr>,
    action: Option<Ref<RawDynAction>>,
}

#[derive(Debug, Default)]
struct Raw {
    rules: Vec<RawRule>,
    actions: BTreeMap<String, RawAction>,
    offers: BTreeMap<String, KeyExchangeOffer>,
    locals: BTreeMap<String, SecurityEndpoint>,
    remotes: BTreeMap<String, SecurityEndpoint>,
    dyn_rules: Vec<RawDynRule>,
    dyn_actions: BTreeMap<String, RawDynAction>,
    data_offers: BTreeMap<String, IpDataOffer>,
    man_actions: Vec<IpManVpnAction>,
    /// (kind, lowercase name) → first definition, for duplicate checks.
    defined: BTreeMap<(&'static str, String), Pos>,
    inline_count: usize,
}

fn name_token<'a>(cur: &mut Cursor<'a>, kind: &str) -> Result<&'a Token, Diagnostic> {
    let t = cur.expect_value_on_line(&format!("a name after {kind}"))?;
    check_name(cur, t)?;
    Ok(t)
}

fn check_name(cur: &Cursor<'_>, t: &Token) -> Result<(), Diagnostic> {
    let n = t.text.chars().count();
    if n == 0 || n > 32 || t.text.starts_with('-') || t.text.contains(',') {
        return Err(cur.error_at(
            t.pos,
            format!(
                "a name must be 1 to 32 characters, not start with '-' and not contain ',', found '{}'",
                t.text
            ),
        ));
    }
    Ok(())
}

fn yes_no(cur: &mut Cursor<'_>, what: &str) -> Result<bool, Diagnostic> {
    let t = cur.expect_value(&format!("Yes or No after {what}"))?;
    if t.is_word("yes") {
        Ok(true)
    } else if t.is_word("no") {
        Ok(false)
    } else {
        Err(cur.error_at(
            t.pos,
            format!("{what} must be Yes or No, found '{}'", t.text),
        ))
    }
}

fn addr_spec(cur: &mut Cursor<'_>, what: &str) -> Result<AddrSpec, Diagnostic> {
    let t = cur.expect_value(&format!("an address after {what}"))?;
    AddrSpec::parse(&t.text).map_err(|m| cur.error_at(t.pos, format!("{what}: {m}")))
}

fn ip_addr(cur: &mut Cursor<'_>, what: &str) -> Result<IpAddr, Diagnostic> {
    let t = cur.expect_value(&format!("an IP address after {what}"))?;
    t.text.parse().map_err(|_| {
        cur.error_at(
            t.pos,
            format!("{what} needs an IP address, found '{}'", t.text),
        )
    })
}

/// `p [q]`: a port or a range on the same line.
fn port_range(cur: &mut Cursor<'_>, what: &str) -> Result<PortRange, Diagnostic> {
    let lo = cur.expect_u32_in(what, 0, 65535)?;
    let hi = match cur.peek() {
        Some(t)
            if cur.on_same_line()
                && t.kind == TokenKind::Word
                && t.text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            cur.expect_u32_in(what, lo, 65535)?
        }
        _ => lo,
    };
    let (lo, hi) = (
        u16::try_from(lo).unwrap_or(0),
        u16::try_from(hi).unwrap_or(u16::MAX),
    );
    // A single 0 means "any port", as in the z/OS samples.
    if lo == 0 && hi == 0 {
        return Ok(PortRange::ANY);
    }
    Ok(PortRange { lo, hi })
}

fn protocol(cur: &mut Cursor<'_>) -> Result<Protocol, Diagnostic> {
    let t = cur.expect_value("a protocol after Protocol")?;
    let named = [
        ("All", None),
        ("TCP", Some(6)),
        ("UDP", Some(17)),
        ("ICMP", Some(1)),
        ("ICMPv6", Some(58)),
        ("OSPF", Some(89)),
        ("IGMP", Some(2)),
        ("GRE", Some(47)),
        ("ESP", Some(50)),
        ("AH", Some(51)),
        ("SCTP", Some(132)),
    ];
    for (n, v) in named {
        if t.is_word(n) {
            return Ok(v.map_or(Protocol::All, Protocol::Number));
        }
    }
    if t.text.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = t.text.parse::<u8>()
    {
        return Ok(Protocol::Number(n));
    }
    Err(cur.error_at(
        t.pos,
        format!(
            "Protocol must be All, TCP, UDP, ICMP, ICMPv6, OSPF, IGMP, GRE, ESP, AH, SCTP or a number 0-255, found '{}'",
            t.text
        ),
    ))
}

fn key_length(
    cur: &mut Cursor<'_>,
    what: &str,
    allowed: &[u16],
    default: u16,
) -> Result<u16, Diagnostic> {
    if !cur.eat_word("KeyLength") {
        return Ok(default);
    }
    let t = cur.expect_value("a key length after KeyLength")?;
    match t.text.parse::<u16>() {
        Ok(v) if allowed.contains(&v) => Ok(v),
        _ => Err(cur.error_at(
            t.pos,
            format!(
                "KeyLength for {what} must be one of {}, found '{}'",
                allowed
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                t.text
            ),
        )),
    }
}

fn one_of<T: Copy>(cur: &mut Cursor<'_>, what: &str, table: &[(&str, T)]) -> Result<T, Diagnostic> {
    let names = table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let t = cur.expect_value(&format!("one of {names} after {what}"))?;
    table
        .iter()
        .find(|(n, _)| t.is_word(n))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            cur.error_at(
                t.pos,
                format!("{what} must be one of {names}, found '{}'", t.text),
            )
        })
}

fn dh_group(
    cur: &mut Cursor<'_>,
    what: &str,
    allow_none: bool,
) -> Result<Option<DhGroup>, Diagnostic> {
    let t = cur.expect_value(&format!("a group after {what}"))?;
    if allow_none && t.is_word("None") {
        return Ok(None);
    }
    let num = t
        .text
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("group"))
        .and_then(|_| t.text.get(5..))
        .and_then(|n| n.parse::<u16>().ok())
        .filter(|n| DhGroup::SUPPORTED.contains(n));
    match num {
        Some(n) => Ok(Some(DhGroup(n))),
        None => Err(cur.error_at(
            t.pos,
            format!(
                "{what} must be {}Group1, Group2, Group5, Group14, Group15, Group16, Group19, Group20, Group21, Group24 or Group31, found '{}'",
                if allow_none { "None, " } else { "" },
                t.text
            ),
        )),
    }
}

fn lifesize(cur: &mut Cursor<'_>, what: &str) -> Result<Option<u64>, Diagnostic> {
    let t = cur.expect_value(&format!("None or a size in KB after {what}"))?;
    if t.is_word("None") {
        return Ok(None);
    }
    match t.text.parse::<u64>() {
        Ok(v) if v > 0 && t.text.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(v)),
        _ => Err(cur.error_at(
            t.pos,
            format!(
                "{what} must be None or a size in KB greater than 0, found '{}'",
                t.text
            ),
        )),
    }
}

fn lifesize_range(cur: &mut Cursor<'_>, what: &str) -> Result<Option<(u64, u64)>, Diagnostic> {
    let lo = lifesize(cur, what)?;
    let Some(lo) = lo else {
        // `None` or `None None`.
        if cur.on_same_line() && cur.peek().is_some_and(|t| t.is_word("None")) {
            cur.next();
        }
        return Ok(None);
    };
    let pos = cur.pos();
    let hi = lifesize(cur, what)?
        .ok_or_else(|| cur.error_at(pos, format!("{what}: the maximum must be a size too")))?;
    if hi < lo {
        return Err(cur.error_at(
            pos,
            format!("{what}: the maximum {hi} is below the minimum {lo}"),
        ));
    }
    Ok(Some((lo, hi)))
}

fn lifetime_range(cur: &mut Cursor<'_>, what: &str) -> Result<(u32, u32), Diagnostic> {
    let lo = cur.expect_u32_in(&format!("{what} minimum"), 1, 65535)?;
    let hi = cur.expect_u32_in(&format!("{what} maximum"), lo, 65535)?;
    Ok((lo, hi))
}

fn auth_method(cur: &mut Cursor<'_>, what: &str) -> Result<AuthMethod, Diagnostic> {
    one_of(
        cur,
        what,
        &[
            ("PresharedKey", AuthMethod::PresharedKey),
            ("RsaSignature", AuthMethod::RsaSignature),
            ("ECDSA-256", AuthMethod::Ecdsa256),
            ("ECDSA-384", AuthMethod::Ecdsa384),
            ("ECDSA-521", AuthMethod::Ecdsa521),
            ("DigitalSignature", AuthMethod::DigitalSignature),
        ],
    )
}

fn esp_encrypt(cur: &mut Cursor<'_>) -> Result<EspEncrypt, Diagnostic> {
    let t = cur.expect_value("an algorithm after HowToEncrypt")?;
    Ok(if t.is_word("DoNot") {
        EspEncrypt::DoNot
    } else if t.is_word("DES") {
        EspEncrypt::Des
    } else if t.is_word("3DES") {
        EspEncrypt::TripleDes
    } else if t.is_word("AES") {
        EspEncrypt::AesCbc(128)
    } else if t.is_word("AES_CBC") {
        EspEncrypt::AesCbc(key_length(cur, "AES_CBC", &[128, 192, 256], 128)?)
    } else if t.is_word("AES_GCM_16") {
        EspEncrypt::AesGcm16(key_length(cur, "AES_GCM_16", &[128, 192, 256], 128)?)
    } else if t.is_word("CHACHA20_POLY1305") {
        EspEncrypt::ChaCha20Poly1305
    } else {
        return Err(cur.error_at(
            t.pos,
            format!(
                "HowToEncrypt must be DoNot, DES, 3DES, AES, AES_CBC [KeyLength n], AES_GCM_16 [KeyLength n] or CHACHA20_POLY1305, found '{}'",
                t.text
            ),
        ));
    })
}

fn esp_auth(cur: &mut Cursor<'_>) -> Result<(IpsecProto, Option<EspAuth>), Diagnostic> {
    let proto = one_of(
        cur,
        "HowToAuth",
        &[("ESP", IpsecProto::Esp), ("AH", IpsecProto::Ah)],
    )?;
    let alg = if cur.on_same_line() && cur.peek().is_some_and(Token::is_value) {
        Some(one_of(
            cur,
            "the HowToAuth algorithm",
            &[
                ("Null", EspAuth::Null),
                ("AES_GMAC_128", EspAuth::AesGmac128),
                ("AES_GMAC_256", EspAuth::AesGmac256),
                ("AES128_XCBC_96", EspAuth::Aes128Xcbc96),
                ("HMAC_MD5", EspAuth::HmacMd5),
                ("HMAC_SHA", EspAuth::HmacSha1),
                ("HMAC_SHA1", EspAuth::HmacSha1),
                ("HMAC_SHA2_256_128", EspAuth::HmacSha2_256_128),
                ("HMAC_SHA2_384_192", EspAuth::HmacSha2_384_192),
                ("HMAC_SHA2_512_256", EspAuth::HmacSha2_512_256),
            ],
        )?)
    } else {
        None
    };
    Ok((proto, alg))
}

/// Check a cipher/integrity combination; `pos` is where to report.
fn check_esp_combo(
    cur: &Cursor<'_>,
    pos: Pos,
    encrypt: EspEncrypt,
    proto: IpsecProto,
    auth: EspAuth,
) -> Result<(), Diagnostic> {
    if encrypt.is_aead() && auth != EspAuth::Null {
        return Err(cur.error_at(pos, "an AES_GCM_16 or CHACHA20_POLY1305 offer needs HowToAuth ESP Null (integrity is part of the cipher)"));
    }
    if !encrypt.is_aead() && auth == EspAuth::Null {
        return Err(cur.error_at(pos, "HowToAuth Null needs an AES_GCM_16 or CHACHA20_POLY1305 cipher: without one the traffic would have no integrity protection"));
    }
    if proto == IpsecProto::Ah && (encrypt != EspEncrypt::DoNot) {
        return Err(cur.error_at(
            pos,
            "HowToAuth AH protects integrity only: use HowToEncrypt DoNot with AH, or ESP",
        ));
    }
    if matches!(auth, EspAuth::AesGmac128 | EspAuth::AesGmac256) && encrypt != EspEncrypt::DoNot {
        return Err(cur.error_at(
            pos,
            "AES_GMAC is integrity only: use it with HowToEncrypt DoNot",
        ));
    }
    Ok(())
}

fn default_esp_auth(encrypt: EspEncrypt) -> EspAuth {
    if encrypt.is_aead() {
        EspAuth::Null
    } else {
        EspAuth::HmacSha2_256_128
    }
}

fn hex_secret(cur: &mut Cursor<'_>, what: &str) -> Result<Secret, Diagnostic> {
    let t = cur.expect_value(&format!("hexadecimal key bytes after {what}"))?;
    let digits = t
        .text
        .strip_prefix("0x")
        .or_else(|| t.text.strip_prefix("0X"))
        .unwrap_or(&t.text);
    decode_hex(digits).map(Secret::new).ok_or_else(|| {
        cur.error_at(
            t.pos,
            format!("{what} must be an even number of hexadecimal digits (optionally 0x-prefixed)"),
        )
    })
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    let b = s.as_bytes();
    b.chunks(2)
        .map(|p| {
            let hi = char::from(*p.first()?).to_digit(16)?;
            let lo = char::from(*p.get(1)?).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// Key sizes in bytes for manual keys (encryption key incl. salt/nonce).
fn esp_key_len(e: EspEncrypt) -> usize {
    match e {
        EspEncrypt::DoNot => 0,
        EspEncrypt::Des => 8,
        EspEncrypt::TripleDes => 24,
        EspEncrypt::AesCbc(b) => usize::from(b / 8),
        EspEncrypt::AesGcm16(b) => usize::from(b / 8) + 4,
        EspEncrypt::ChaCha20Poly1305 => 36,
    }
}

fn auth_key_len(a: EspAuth) -> usize {
    match a {
        EspAuth::Null => 0,
        EspAuth::AesGmac128 => 20,
        EspAuth::AesGmac256 => 36,
        EspAuth::Aes128Xcbc96 | EspAuth::HmacMd5 => 16,
        EspAuth::HmacSha1 => 20,
        EspAuth::HmacSha2_256_128 => 32,
        EspAuth::HmacSha2_384_192 => 48,
        EspAuth::HmacSha2_512_256 => 64,
    }
}

impl Raw {
    fn define(
        &mut self,
        kind: &'static str,
        t: &Token,
        cur: &Cursor<'_>,
    ) -> Result<(), Diagnostic> {
        let key = (kind, t.text.to_ascii_lowercase());
        if let Some(first) = self.defined.get(&key) {
            return Err(cur.error_at(
                t.pos,
                format!(
                    "{kind} {} is already defined at line {}",
                    t.text, first.line
                ),
            ));
        }
        self.defined.insert(key, t.pos);
        Ok(())
    }

    fn inline_name(&mut self, kind: &str) -> String {
        self.inline_count += 1;
        format!("~{kind}{}", self.inline_count)
    }

    fn statement(&mut self, cur: &mut Cursor<'_>, head: &Token) -> Result<(), Diagnostic> {
        if head.is_word("KeyExchangeRule") {
            let n = name_token(cur, "KeyExchangeRule")?;
            self.define("KeyExchangeRule", n, cur)?;
            let r = self.key_exchange_rule(cur, n.text.clone(), head.pos)?;
            self.rules.push(r);
        } else if head.is_word("KeyExchangeAction") {
            let n = name_token(cur, "KeyExchangeAction")?;
            self.define("KeyExchangeAction", n, cur)?;
            let a = self.key_exchange_action(cur, n.text.clone(), head.pos)?;
            self.actions.insert(n.text.to_ascii_lowercase(), a);
        } else if head.is_word("KeyExchangeOffer") {
            let n = name_token(cur, "KeyExchangeOffer")?;
            self.define("KeyExchangeOffer", n, cur)?;
            let o = key_exchange_offer(cur, n.text.clone(), head.pos)?;
            self.offers.insert(n.text.to_ascii_lowercase(), o);
        } else if head.is_word("LocalSecurityEndpoint") {
            let n = name_token(cur, "LocalSecurityEndpoint")?;
            self.define("LocalSecurityEndpoint", n, cur)?;
            let e = security_endpoint(cur, n.text.clone(), head.pos, false)?;
            self.locals.insert(n.text.to_ascii_lowercase(), e);
        } else if head.is_word("RemoteSecurityEndpoint") {
            let n = name_token(cur, "RemoteSecurityEndpoint")?;
            self.define("RemoteSecurityEndpoint", n, cur)?;
            let e = security_endpoint(cur, n.text.clone(), head.pos, true)?;
            self.remotes.insert(n.text.to_ascii_lowercase(), e);
        } else if head.is_word("LocalDynVpnRule") {
            let n = name_token(cur, "LocalDynVpnRule")?;
            self.define("LocalDynVpnRule", n, cur)?;
            let r = self.local_dyn_vpn_rule(cur, n.text.clone(), head.pos)?;
            self.dyn_rules.push(r);
        } else if head.is_word("IpDynVpnAction") {
            let n = name_token(cur, "IpDynVpnAction")?;
            self.define("IpDynVpnAction", n, cur)?;
            let a = self.ip_dyn_vpn_action(cur, n.text.clone(), head.pos)?;
            self.dyn_actions.insert(n.text.to_ascii_lowercase(), a);
        } else if head.is_word("IpDataOffer") {
            let n = name_token(cur, "IpDataOffer")?;
            self.define("IpDataOffer", n, cur)?;
            let o = ip_data_offer(cur, n.text.clone(), head.pos)?;
            self.data_offers.insert(n.text.to_ascii_lowercase(), o);
        } else if head.is_word("IpManVpnAction") {
            let n = name_token(cur, "IpManVpnAction")?;
            self.define("IpManVpnAction", n, cur)?;
            let m = ip_man_vpn_action(cur, n.text.clone(), head.pos)?;
            self.man_actions.push(m);
        }
        Ok(())
    }

    fn key_exchange_rule(
        &mut self,
        cur: &mut Cursor<'_>,
        name: String,
        pos: Pos,
    ) -> Result<RawRule, Diagnostic> {
        let mut r = RawRule {
            name,
            local: None,
            remote: None,
            action: None,
            shared_key: None,
            pos,
        };
        parse_block(cur, |cur, p| {
            if p.is_word("LocalSecurityEndpointRef") {
                let t = cur.expect_value("a LocalSecurityEndpoint name")?;
                r.local = Some(Ref::Name(t.text.clone(), t.pos));
            } else if p.is_word("LocalSecurityEndpoint") {
                r.local = Some(Ref::Inline(security_endpoint(
                    cur,
                    "~local".into(),
                    p.pos,
                    false,
                )?));
            } else if p.is_word("RemoteSecurityEndpointRef") {
                let t = cur.expect_value("a RemoteSecurityEndpoint name")?;
                r.remote = Some(Ref::Name(t.text.clone(), t.pos));
            } else if p.is_word("RemoteSecurityEndpoint") {
                r.remote = Some(Ref::Inline(security_endpoint(
                    cur,
                    "~remote".into(),
                    p.pos,
                    true,
                )?));
            } else if p.is_word("KeyExchangeActionRef") {
                let t = cur.expect_value("a KeyExchangeAction name")?;
                r.action = Some(Ref::Name(t.text.clone(), t.pos));
            } else if p.is_word("KeyExchangeAction") {
                let n = self.inline_name("action");
                r.action = Some(Ref::Inline(self.key_exchange_action(cur, n, p.pos)?));
            } else if p.is_word("SharedKey") {
                let kind = one_of(cur, "SharedKey", &[("Ascii", false), ("Hex", true)])?;
                let key = if kind {
                    hex_secret(cur, "SharedKey Hex")?
                } else {
                    let t = cur.expect_value("the key text after SharedKey Ascii")?;
                    if t.text.is_empty() {
                        return Err(cur.error_at(t.pos, "SharedKey Ascii must not be empty"));
                    }
                    Secret::new(t.text.as_bytes().to_vec())
                };
                r.shared_key = Some(key);
            } else {
                return Err(unknown(
                    cur,
                    p,
                    "KeyExchangeRule",
                    "LocalSecurityEndpoint(Ref), RemoteSecurityEndpoint(Ref), KeyExchangeAction(Ref), SharedKey",
                ));
            }
            Ok(())
        })?;
        Ok(r)
    }

    fn key_exchange_action(
        &mut self,
        cur: &mut Cursor<'_>,
        name: String,
        pos: Pos,
    ) -> Result<RawAction, Diagnostic> {
        let mut a = RawAction {
            action: KeyExchangeAction {
                name,
                initiate: HowToInitiate::IkeV2,
                respond_v1: HowToRespondV1::Main,
                auth_me: None,
                allow_nat: true,
                certificate_label: None,
                dpd_interval: 30,
                reauth_interval: 0,
                offers: Vec::new(),
                pos,
            },
            offers: Vec::new(),
        };
        let mut inline = Vec::new();
        parse_block(cur, |cur, p| {
            let x = &mut a.action;
            if p.is_word("HowToInitiate") {
                x.initiate = one_of(
                    cur,
                    "HowToInitiate",
                    &[
                        ("Main", HowToInitiate::Main),
                        ("Aggressive", HowToInitiate::Aggressive),
                        ("IKEv2", HowToInitiate::IkeV2),
                        ("DoNot", HowToInitiate::DoNot),
                    ],
                )?;
            } else if p.is_word("HowToRespondIKEv1") || p.is_word("HowToRespond") {
                x.respond_v1 = one_of(
                    cur,
                    "HowToRespondIKEv1",
                    &[
                        ("Either", HowToRespondV1::Either),
                        ("Main", HowToRespondV1::Main),
                        ("Aggressive", HowToRespondV1::Aggressive),
                    ],
                )?;
            } else if p.is_word("HowToAuthMe") {
                x.auth_me = Some(auth_method(cur, "HowToAuthMe")?);
            } else if p.is_word("AllowNat") {
                x.allow_nat = yes_no(cur, "AllowNat")?;
            } else if p.is_word("CertificateLabel") {
                let t = cur.expect_value("a keyring label after CertificateLabel")?;
                if t.text.is_empty() || t.text.chars().count() > 32 {
                    return Err(cur.error_at(t.pos, "CertificateLabel must be 1 to 32 characters"));
                }
                x.certificate_label = Some(t.text.clone());
            } else if p.is_word("DpdInterval") {
                x.dpd_interval = cur.expect_u32_in("DpdInterval", 0, 3600)?;
            } else if p.is_word("ReauthInterval") {
                x.reauth_interval = cur.expect_u32_in("ReauthInterval", 0, 65535)?;
            } else if p.is_word("KeyExchangeOfferRef") {
                let t = cur.expect_value("a KeyExchangeOffer name")?;
                a.offers.push(Ref::Name(t.text.clone(), t.pos));
            } else if p.is_word("KeyExchangeOffer") {
                inline.push(a.offers.len());
                a.offers
                    .push(Ref::Inline(key_exchange_offer(cur, String::new(), p.pos)?));
            } else {
                return Err(unknown(
                    cur,
                    p,
                    "KeyExchangeAction",
                    "HowToInitiate, HowToRespondIKEv1, HowToAuthMe, AllowNat, CertificateLabel, DpdInterval, ReauthInterval, KeyExchangeOffer(Ref)",
                ));
            }
            Ok(())
        })?;
        for i in inline {
            let n = self.inline_name("offer");
            if let Some(Ref::Inline(o)) = a.offers.get_mut(i) {
                o.name = n;
            }
        }
        Ok(a)
    }

    fn ip_dyn_vpn_action(
        &mut self,
        cur: &mut Cursor<'_>,
        name: String,
        pos: Pos,
    ) -> Result<RawDynAction, Diagnostic> {
        let mut a = RawDynAction {
            action: IpDynVpnAction {
                name,
                initiation: Initiation::Either,
                vpn_life: 1440,
                initiate_with_pfs: None,
                acceptable_pfs: Vec::new(),
                encap_ikev2: None,
                passthrough_df: true,
                passthrough_dscp: true,
                offers: Vec::new(),
                pos,
            },
            offers: Vec::new(),
        };
        let mut inline = Vec::new();
        parse_block(cur, |cur, p| {
            let x = &mut a.action;
            if p.is_word("Initiation") {
                x.initiation = one_of(
                    cur,
                    "Initiation",
                    &[
                        ("Either", Initiation::Either),
                        ("LocalOnly", Initiation::LocalOnly),
                        ("RemoteOnly", Initiation::RemoteOnly),
                    ],
                )?;
            } else if p.is_word("VpnLife") {
                x.vpn_life = cur.expect_u32_in("VpnLife", 0, 70560)?;
            } else if p.is_word("InitiateWithPfs") || p.is_word("Pfs") {
                x.initiate_with_pfs = dh_group(cur, "InitiateWithPfs", true)?;
            } else if p.is_word("AcceptablePfs") {
                let g = dh_group(cur, "AcceptablePfs", true)?;
                if !x.acceptable_pfs.contains(&g) {
                    x.acceptable_pfs.push(g);
                }
            } else if p.is_word("HowToEncapIKEv2") {
                x.encap_ikev2 = one_of(
                    cur,
                    "HowToEncapIKEv2",
                    &[
                        ("Either", None),
                        ("Tunnel", Some(Encap::Tunnel)),
                        ("Transport", Some(Encap::Transport)),
                    ],
                )?;
            } else if p.is_word("PassthroughDF") {
                x.passthrough_df = yes_no(cur, "PassthroughDF")?;
                // `No Clear|Set` is accepted; the kernel's DF handling applies.
                if cur.on_same_line()
                    && cur
                        .peek()
                        .is_some_and(|t| t.is_word("Clear") || t.is_word("Set"))
                {
                    cur.next();
                }
            } else if p.is_word("PassthroughDSCP") {
                x.passthrough_dscp = yes_no(cur, "PassthroughDSCP")?;
            } else if p.is_word("IpDataOfferRef") {
                let t = cur.expect_value("an IpDataOffer name")?;
                a.offers.push(Ref::Name(t.text.clone(), t.pos));
            } else if p.is_word("IpDataOffer") {
                inline.push(a.offers.len());
                a.offers
                    .push(Ref::Inline(ip_data_offer(cur, String::new(), p.pos)?));
            } else {
                return Err(unknown(
                    cur,
                    p,
                    "IpDynVpnAction",
                    "Initiation, VpnLife, InitiateWithPfs, AcceptablePfs, HowToEncapIKEv2, PassthroughDF, PassthroughDSCP, IpDataOffer(Ref)",
                ));
            }
            Ok(())
        })?;
        for i in inline {
            let n = self.inline_name("dataoffer");
            if let Some(Ref::Inline(o)) = a.offers.get_mut(i) {
                o.name = n;
            }
        }
        let x = &mut a.action;
        if x.acceptable_pfs.is_empty() {
            x.acceptable_pfs.push(x.initiate_with_pfs);
        }
        Ok(a)
    }

    fn local_dyn_vpn_rule(
        &mut self,
        cur: &mut Cursor<'_>,
        name: String,
        pos: Pos,
    ) -> Result<RawDynRule, Diagnostic> {
        let mut r = RawDynRule {
            rule: LocalDynVpnRule {
                name,
                src: AddrSpec::Any,
                dst: AddrSpec::Any,
                protocol: Protocol::All,
                src_port: PortRange::ANY,
                dst_port: PortRange::ANY,
                local_endpoint: None,
                remote_endpoint: IpAddr::from([0, 0, 0, 0]),
                action: IpDynVpnAction {
                    name: String::new(),
                    initiation: Initiation::Either,
                    vpn_life: 0,
                    initiate_with_pfs: None,
                    acceptable_pfs: Vec::new(),
                    encap_ikev2: None,
                    passthrough_df: true,
                    passthrough_dscp: true,
                    offers: Vec::new(),
                    pos,
                },
                auto_activate: false,
                on_demand: true,
                pos,
            },
            src: None,
            dst: None,
            remote: None,
            action: None,
        };
        parse_block(cur, |cur, p| {
            if p.is_word("IpSourceAddr") {
                r.src = Some(addr_spec(cur, "IpSourceAddr")?);
            } else if p.is_word("IpDestAddr") {
                r.dst = Some(addr_spec(cur, "IpDestAddr")?);
            } else if p.is_word("Protocol") {
                r.rule.protocol = protocol(cur)?;
            } else if p.is_word("SourcePort") || p.is_word("SourcePortRange") {
                r.rule.src_port = port_range(cur, "SourcePort")?;
            } else if p.is_word("DestinationPort") || p.is_word("DestinationPortRange") {
                r.rule.dst_port = port_range(cur, "DestinationPort")?;
            } else if p.is_word("LocalSecurityEndpoint") {
                r.rule.local_endpoint = Some(ip_addr(cur, "LocalSecurityEndpoint")?);
            } else if p.is_word("RemoteSecurityEndpoint") {
                r.remote = Some(ip_addr(cur, "RemoteSecurityEndpoint")?);
            } else if p.is_word("IpDynVpnActionRef") {
                let t = cur.expect_value("an IpDynVpnAction name")?;
                r.action = Some(Ref::Name(t.text.clone(), t.pos));
            } else if p.is_word("IpDynVpnAction") {
                let n = self.inline_name("dynaction");
                r.action = Some(Ref::Inline(self.ip_dyn_vpn_action(cur, n, p.pos)?));
            } else if p.is_word("AutoActivate") {
                r.rule.auto_activate = yes_no(cur, "AutoActivate")?;
            } else if p.is_word("OnDemand") {
                r.rule.on_demand = yes_no(cur, "OnDemand")?;
            } else {
                return Err(unknown(
                    cur,
                    p,
                    "LocalDynVpnRule",
                    "IpSourceAddr, IpDestAddr, Protocol, SourcePort, DestinationPort, LocalSecurityEndpoint, RemoteSecurityEndpoint, IpDynVpnAction(Ref), AutoActivate, OnDemand",
                ));
            }
            Ok(())
        })?;
        Ok(r)
    }

    /// Resolve references and fill defaults that depend on other statements.
    fn resolve(self, file: &str, errors: &mut Vec<Diagnostic>) -> IkePolicy {
        let err = |pos: Pos, message: String| Diagnostic {
            file: Arc::from(file),
            pos,
            message,
        };
        let resolve_offers = |offers: &[Ref<KeyExchangeOffer>], errors: &mut Vec<Diagnostic>| {
            let mut out = Vec::new();
            for o in offers {
                match o {
                    Ref::Inline(o) => out.push(o.clone()),
                    Ref::Name(n, pos) => match self.offers.get(&n.to_ascii_lowercase()) {
                        Some(o) => out.push(o.clone()),
                        None => errors.push(err(
                            *pos,
                            format!("KeyExchangeOfferRef {n}: no KeyExchangeOffer {n} is defined"),
                        )),
                    },
                }
            }
            out
        };
        let finish_action = |a: &RawAction, errors: &mut Vec<Diagnostic>| {
            let mut action = a.action.clone();
            action.offers = resolve_offers(&a.offers, errors);
            if action.offers.is_empty() {
                action
                    .offers
                    .push(KeyExchangeOffer::defaults("~default".into(), action.pos));
            }
            action
        };
        let resolve_data_offers = |offers: &[Ref<IpDataOffer>], errors: &mut Vec<Diagnostic>| {
            let mut out = Vec::new();
            for o in offers {
                match o {
                    Ref::Inline(o) => out.push(o.clone()),
                    Ref::Name(n, pos) => match self.data_offers.get(&n.to_ascii_lowercase()) {
                        Some(o) => out.push(o.clone()),
                        None => errors.push(err(
                            *pos,
                            format!("IpDataOfferRef {n}: no IpDataOffer {n} is defined"),
                        )),
                    },
                }
            }
            out
        };
        let finish_dyn = |a: &RawDynAction, errors: &mut Vec<Diagnostic>| {
            let mut action = a.action.clone();
            action.offers = resolve_data_offers(&a.offers, errors);
            if action.offers.is_empty() {
                action.offers.push(IpDataOffer {
                    name: "~default".into(),
                    encap: Encap::Tunnel,
                    encrypt: EspEncrypt::AesCbc(128),
                    auth_proto: IpsecProto::Esp,
                    auth: EspAuth::HmacSha2_256_128,
                    lifetime_proposed: 240,
                    lifetime_accepted: (120, 480),
                    lifesize_proposed: None,
                    lifesize_accepted: None,
                    pos: action.pos,
                });
            }
            action
        };

        let mut policy = IkePolicy::default();
        for r in &self.rules {
            let endpoint = |e: &Option<Ref<SecurityEndpoint>>,
                            map: &BTreeMap<String, SecurityEndpoint>,
                            kind: &str,
                            errors: &mut Vec<Diagnostic>| match e {
                None => Some(SecurityEndpoint {
                    name: String::new(),
                    identity: None,
                    location: AddrSpec::Any,
                    ca_label: None,
                    pos: r.pos,
                }),
                Some(Ref::Inline(e)) => Some(e.clone()),
                Some(Ref::Name(n, pos)) => {
                    let found = map.get(&n.to_ascii_lowercase()).cloned();
                    if found.is_none() {
                        errors.push(err(
                            *pos,
                            format!("{kind}Ref {n}: no {kind} {n} is defined"),
                        ));
                    }
                    found
                }
            };
            let local = endpoint(&r.local, &self.locals, "LocalSecurityEndpoint", errors);
            let remote = endpoint(&r.remote, &self.remotes, "RemoteSecurityEndpoint", errors);
            let action = match &r.action {
                None => {
                    errors.push(err(r.pos, format!("KeyExchangeRule {} needs a KeyExchangeActionRef or a KeyExchangeAction block", r.name)));
                    None
                }
                Some(Ref::Inline(a)) => Some(finish_action(a, errors)),
                Some(Ref::Name(n, pos)) => match self.actions.get(&n.to_ascii_lowercase()) {
                    Some(a) => Some(finish_action(a, errors)),
                    None => {
                        errors.push(err(
                            *pos,
                            format!(
                                "KeyExchangeActionRef {n}: no KeyExchangeAction {n} is defined"
                            ),
                        ));
                        None
                    }
                },
            };
            let (Some(local), Some(remote), Some(action)) = (local, remote, action) else {
                continue;
            };
            let rule = KeyExchangeRule {
                name: r.name.clone(),
                local,
                remote,
                action,
                shared_key: r.shared_key.clone(),
                pos: r.pos,
            };
            let psk_used = rule.auth_me() == AuthMethod::PresharedKey
                || rule
                    .action
                    .offers
                    .iter()
                    .any(|o| o.auth_peers == Some(AuthMethod::PresharedKey));
            if psk_used && rule.shared_key.is_none() {
                errors.push(err(
                    r.pos,
                    format!(
                        "KeyExchangeRule {} authenticates with PresharedKey but codes no SharedKey",
                        r.name
                    ),
                ));
            }
            if matches!(
                rule.action.initiate,
                HowToInitiate::Main | HowToInitiate::Aggressive
            ) {
                for o in &rule.action.offers {
                    if matches!(o.encrypt, IkeEncrypt::AesGcm16(_)) {
                        errors.push(err(o.pos, format!("KeyExchangeOffer {}: AES_GCM_16 is for IKEv2 only, but KeyExchangeRule {} initiates IKEv1", o.name, r.name)));
                    }
                }
            }
            policy.key_exchange_rules.push(rule);
        }
        for (k, a) in &self.dyn_actions {
            policy
                .ip_dyn_vpn_actions
                .insert(k.clone(), finish_dyn(a, errors));
        }
        for r in &self.dyn_rules {
            let mut rule = r.rule.clone();
            match r.src {
                Some(s) => rule.src = s,
                None => errors.push(err(
                    rule.pos,
                    format!("LocalDynVpnRule {} needs an IpSourceAddr", rule.name),
                )),
            }
            match r.dst {
                Some(d) => rule.dst = d,
                None => errors.push(err(
                    rule.pos,
                    format!("LocalDynVpnRule {} needs an IpDestAddr", rule.name),
                )),
            }
            if let (Some(a), Some(b)) = (rule.src.is_ipv6(), rule.dst.is_ipv6())
                && a != b
            {
                errors.push(err(
                    rule.pos,
                    format!(
                        "LocalDynVpnRule {}: IpSourceAddr and IpDestAddr mix IPv4 and IPv6",
                        rule.name
                    ),
                ));
            }
            match (r.remote, rule.dst) {
                (Some(a), _) | (None, AddrSpec::Host(a)) => rule.remote_endpoint = a,
                (None, _) => errors.push(err(rule.pos, format!("LocalDynVpnRule {} needs a RemoteSecurityEndpoint (IpDestAddr is not a single host)", rule.name))),
            }
            if rule.local_endpoint.is_none()
                && let AddrSpec::Host(a) = rule.src
            {
                rule.local_endpoint = Some(a);
            }
            match &r.action {
                None => errors.push(err(
                    rule.pos,
                    format!("LocalDynVpnRule {} needs an IpDynVpnActionRef", rule.name),
                )),
                Some(Ref::Inline(a)) => {
                    let a = finish_dyn(a, errors);
                    policy
                        .ip_dyn_vpn_actions
                        .insert(a.name.to_ascii_lowercase(), a.clone());
                    rule.action = a;
                }
                Some(Ref::Name(n, pos)) => {
                    match policy.ip_dyn_vpn_actions.get(&n.to_ascii_lowercase()) {
                        Some(a) => rule.action = a.clone(),
                        None => errors.push(err(
                            *pos,
                            format!("IpDynVpnActionRef {n}: no IpDynVpnAction {n} is defined"),
                        )),
                    }
                }
            }
            if rule.auto_activate && rule.action.initiation == Initiation::RemoteOnly {
                errors.push(err(rule.pos, format!("LocalDynVpnRule {} has AutoActivate Yes but its IpDynVpnAction {} allows RemoteOnly initiation", rule.name, rule.action.name)));
            }
            policy.local_dyn_vpn_rules.push(rule);
        }
        policy.ip_man_vpn_actions = self.man_actions;
        policy
    }
}

fn unknown(cur: &Cursor<'_>, p: &Token, stmt: &str, expected: &str) -> Diagnostic {
    cur.error_at(
        p.pos,
        format!(
            "unknown {stmt} parameter '{}'; expected one of {expected}",
            p.text
        ),
    )
}

fn key_exchange_offer(
    cur: &mut Cursor<'_>,
    name: String,
    pos: Pos,
) -> Result<KeyExchangeOffer, Diagnostic> {
    let mut o = KeyExchangeOffer::defaults(name, pos);
    parse_block(cur, |cur, p| {
        if p.is_word("HowToEncrypt") {
            let t = cur.expect_value("an algorithm after HowToEncrypt")?;
            o.encrypt = if t.is_word("DES") {
                IkeEncrypt::Des
            } else if t.is_word("3DES") {
                IkeEncrypt::TripleDes
            } else if t.is_word("AES") {
                IkeEncrypt::AesCbc(128)
            } else if t.is_word("AES_CBC") {
                IkeEncrypt::AesCbc(key_length(cur, "AES_CBC", &[128, 192, 256], 128)?)
            } else if t.is_word("AES_GCM_16") {
                IkeEncrypt::AesGcm16(key_length(cur, "AES_GCM_16", &[128, 256], 128)?)
            } else {
                return Err(cur.error_at(
                    t.pos,
                    format!("HowToEncrypt must be DES, 3DES, AES, AES_CBC [KeyLength n] or AES_GCM_16 [KeyLength n], found '{}'", t.text),
                ));
            };
        } else if p.is_word("HowToAuthMsgs") {
            o.hash = one_of(
                cur,
                "HowToAuthMsgs",
                &[
                    ("MD5", IkeHash::Md5),
                    ("SHA1", IkeHash::Sha1),
                    ("SHA2_256", IkeHash::Sha2_256),
                    ("SHA2_384", IkeHash::Sha2_384),
                    ("SHA2_512", IkeHash::Sha2_512),
                ],
            )?;
        } else if p.is_word("HowToVerifyMsgs") {
            o.integrity = one_of(
                cur,
                "HowToVerifyMsgs",
                &[
                    ("HMAC_MD5_96", IkeIntegrity::HmacMd5_96),
                    ("HMAC_SHA1_96", IkeIntegrity::HmacSha1_96),
                    ("AES128_XCBC_96", IkeIntegrity::Aes128Xcbc96),
                    ("HMAC_SHA2_256_128", IkeIntegrity::HmacSha2_256_128),
                    ("HMAC_SHA2_384_192", IkeIntegrity::HmacSha2_384_192),
                    ("HMAC_SHA2_512_256", IkeIntegrity::HmacSha2_512_256),
                ],
            )?;
        } else if p.is_word("PseudoRandomFunction") {
            o.prf = one_of(
                cur,
                "PseudoRandomFunction",
                &[
                    ("HMAC_MD5", Prf::HmacMd5),
                    ("HMAC_SHA1", Prf::HmacSha1),
                    ("AES128_XCBC", Prf::Aes128Xcbc),
                    ("HMAC_SHA2_256", Prf::HmacSha2_256),
                    ("HMAC_SHA2_384", Prf::HmacSha2_384),
                    ("HMAC_SHA2_512", Prf::HmacSha2_512),
                ],
            )?;
        } else if p.is_word("DHGroup") {
            o.dh_group = dh_group(cur, "DHGroup", false)?.unwrap_or(DhGroup(19));
        } else if p.is_word("HowToAuthPeers") {
            o.auth_peers = Some(auth_method(cur, "HowToAuthPeers")?);
        } else if p.is_word("RefreshLifetimeProposed") {
            o.lifetime_proposed = cur.expect_u32_in("RefreshLifetimeProposed", 1, 65535)?;
        } else if p.is_word("RefreshLifetimeAccepted") {
            o.lifetime_accepted = lifetime_range(cur, "RefreshLifetimeAccepted")?;
        } else if p.is_word("RefreshLifesizeProposed") {
            o.lifesize_proposed = lifesize(cur, "RefreshLifesizeProposed")?;
        } else if p.is_word("RefreshLifesizeAccepted") {
            o.lifesize_accepted = lifesize_range(cur, "RefreshLifesizeAccepted")?;
        } else {
            return Err(unknown(
                cur,
                p,
                "KeyExchangeOffer",
                "HowToEncrypt, HowToAuthMsgs, HowToVerifyMsgs, PseudoRandomFunction, DHGroup, HowToAuthPeers, RefreshLifetimeProposed, RefreshLifetimeAccepted, RefreshLifesizeProposed, RefreshLifesizeAccepted",
            ));
        }
        Ok(())
    })?;
    let (lo, hi) = o.lifetime_accepted;
    if o.lifetime_proposed < lo || o.lifetime_proposed > hi {
        return Err(cur.error_at(
            pos,
            format!(
                "KeyExchangeOffer {}: RefreshLifetimeProposed {} is outside RefreshLifetimeAccepted {lo} {hi}",
                o.name, o.lifetime_proposed
            ),
        ));
    }
    Ok(o)
}

fn ip_data_offer(cur: &mut Cursor<'_>, name: String, pos: Pos) -> Result<IpDataOffer, Diagnostic> {
    let mut o = IpDataOffer {
        name,
        encap: Encap::Tunnel,
        encrypt: EspEncrypt::AesCbc(128),
        auth_proto: IpsecProto::Esp,
        auth: EspAuth::HmacSha2_256_128,
        lifetime_proposed: 240,
        lifetime_accepted: (120, 480),
        lifesize_proposed: None,
        lifesize_accepted: None,
        pos,
    };
    let mut auth: Option<EspAuth> = None;
    let mut auth_pos = pos;
    parse_block(cur, |cur, p| {
        if p.is_word("HowToEncap") {
            o.encap = one_of(
                cur,
                "HowToEncap",
                &[("Tunnel", Encap::Tunnel), ("Transport", Encap::Transport)],
            )?;
        } else if p.is_word("HowToEncrypt") {
            o.encrypt = esp_encrypt(cur)?;
        } else if p.is_word("HowToAuth") {
            let (proto, alg) = esp_auth(cur)?;
            o.auth_proto = proto;
            auth = alg;
            auth_pos = p.pos;
        } else if p.is_word("RefreshLifetimeProposed") {
            o.lifetime_proposed = cur.expect_u32_in("RefreshLifetimeProposed", 1, 65535)?;
        } else if p.is_word("RefreshLifetimeAccepted") {
            o.lifetime_accepted = lifetime_range(cur, "RefreshLifetimeAccepted")?;
        } else if p.is_word("RefreshLifesizeProposed") {
            o.lifesize_proposed = lifesize(cur, "RefreshLifesizeProposed")?;
        } else if p.is_word("RefreshLifesizeAccepted") {
            o.lifesize_accepted = lifesize_range(cur, "RefreshLifesizeAccepted")?;
        } else {
            return Err(unknown(
                cur,
                p,
                "IpDataOffer",
                "HowToEncap, HowToEncrypt, HowToAuth, RefreshLifetimeProposed, RefreshLifetimeAccepted, RefreshLifesizeProposed, RefreshLifesizeAccepted",
            ));
        }
        Ok(())
    })?;
    o.auth = auth.unwrap_or_else(|| default_esp_auth(o.encrypt));
    check_esp_combo(cur, auth_pos, o.encrypt, o.auth_proto, o.auth)?;
    let (lo, hi) = o.lifetime_accepted;
    if o.lifetime_proposed < lo || o.lifetime_proposed > hi {
        return Err(cur.error_at(
            pos,
            format!(
                "IpDataOffer {}: RefreshLifetimeProposed {} is outside RefreshLifetimeAccepted {lo} {hi}",
                o.name, o.lifetime_proposed
            ),
        ));
    }
    Ok(o)
}

fn security_endpoint(
    cur: &mut Cursor<'_>,
    name: String,
    pos: Pos,
    remote: bool,
) -> Result<SecurityEndpoint, Diagnostic> {
    let mut e = SecurityEndpoint {
        name,
        identity: None,
        location: AddrSpec::Any,
        ca_label: None,
        pos,
    };
    let kind = if remote {
        "RemoteSecurityEndpoint"
    } else {
        "LocalSecurityEndpoint"
    };
    parse_block(cur, |cur, p| {
        if p.is_word("Identity") {
            let k = one_of(
                cur,
                "Identity",
                &[
                    ("IpAddr", IdType::IpAddr),
                    ("Fqdn", IdType::Fqdn),
                    ("UserFqdn", IdType::UserFqdn),
                    ("UserAtFqdn", IdType::UserFqdn),
                    ("X500dn", IdType::X500dn),
                    ("KeyId", IdType::KeyId),
                ],
            )?;
            let v = cur.expect_value("the identity value")?;
            let bad =
                |m: &str| Err(cur.error_at(v.pos, format!("Identity {m}, found '{}'", v.text)));
            match k {
                IdType::IpAddr if v.text.parse::<IpAddr>().is_err() => {
                    return bad("IpAddr needs an IP address");
                }
                IdType::UserFqdn if !v.text.contains('@') => {
                    return bad("UserFqdn needs user@domain");
                }
                IdType::X500dn if !v.text.contains('=') => {
                    return bad("X500dn needs a distinguished name such as \"CN=gw1,O=Example\"");
                }
                IdType::Fqdn if v.text.is_empty() || v.text.contains(char::is_whitespace) => {
                    return bad("Fqdn needs a domain name");
                }
                IdType::KeyId if v.text.is_empty() => return bad("KeyId must not be empty"),
                _ => {}
            }
            e.identity = Some(Identity {
                kind: k,
                value: v.text.clone(),
            });
        } else if p.is_word("Location") {
            let loc = addr_spec(cur, "Location")?;
            if !remote && !matches!(loc, AddrSpec::Host(_) | AddrSpec::Any) {
                let t = cur.prev().map_or(p.pos, |t| t.pos);
                return Err(cur.error_at(
                    t,
                    "a LocalSecurityEndpoint Location must be one address or *",
                ));
            }
            e.location = loc;
        } else if remote && p.is_word("CaLabel") {
            let t = cur.expect_value("a keyring label after CaLabel")?;
            e.ca_label = Some(t.text.clone());
        } else {
            let extra = if remote { ", CaLabel" } else { "" };
            return Err(unknown(cur, p, kind, &format!("Identity, Location{extra}")));
        }
        Ok(())
    })?;
    Ok(e)
}

fn ip_man_vpn_action(
    cur: &mut Cursor<'_>,
    name: String,
    pos: Pos,
) -> Result<IpManVpnAction, Diagnostic> {
    let zero = IpAddr::from([0, 0, 0, 0]);
    let mut m = IpManVpnAction {
        name,
        active: true,
        src: AddrSpec::Any,
        dst: AddrSpec::Any,
        local_endpoint: zero,
        remote_endpoint: zero,
        encap: Encap::Tunnel,
        encrypt: EspEncrypt::AesCbc(128),
        auth_proto: IpsecProto::Esp,
        auth: EspAuth::HmacSha2_256_128,
        inbound: ManualSa {
            spi: 0,
            encryption_key: Secret::default(),
            auth_key: Secret::default(),
        },
        outbound: ManualSa {
            spi: 0,
            encryption_key: Secret::default(),
            auth_key: Secret::default(),
        },
        pos,
    };
    let (mut src, mut dst, mut lep, mut rep) = (None, None, None, None);
    let mut auth: Option<EspAuth> = None;
    let mut key_pos: BTreeMap<&'static str, Pos> = BTreeMap::new();
    let mut spis = (None, None);
    parse_block(cur, |cur, p| {
        if p.is_word("Active") {
            m.active = yes_no(cur, "Active")?;
        } else if p.is_word("IpSourceAddr") {
            src = Some(addr_spec(cur, "IpSourceAddr")?);
        } else if p.is_word("IpDestAddr") {
            dst = Some(addr_spec(cur, "IpDestAddr")?);
        } else if p.is_word("LocalSecurityEndpoint") {
            lep = Some(ip_addr(cur, "LocalSecurityEndpoint")?);
        } else if p.is_word("RemoteSecurityEndpoint") {
            rep = Some(ip_addr(cur, "RemoteSecurityEndpoint")?);
        } else if p.is_word("HowToEncap") {
            m.encap = one_of(
                cur,
                "HowToEncap",
                &[("Tunnel", Encap::Tunnel), ("Transport", Encap::Transport)],
            )?;
        } else if p.is_word("HowToEncrypt") {
            m.encrypt = esp_encrypt(cur)?;
        } else if p.is_word("HowToAuth") {
            let (proto, alg) = esp_auth(cur)?;
            m.auth_proto = proto;
            auth = alg;
        } else if p.is_word("InboundSpi") || p.is_word("OutboundSpi") {
            let v = cur.expect_u32_in("SPI", 256, u32::MAX)?;
            if p.is_word("InboundSpi") {
                spis.0 = Some(v);
            } else {
                spis.1 = Some(v);
            }
        } else if p.is_word("InboundEncryptionKey") {
            m.inbound.encryption_key = hex_secret(cur, "InboundEncryptionKey")?;
            key_pos.insert("InboundEncryptionKey", p.pos);
        } else if p.is_word("OutboundEncryptionKey") {
            m.outbound.encryption_key = hex_secret(cur, "OutboundEncryptionKey")?;
            key_pos.insert("OutboundEncryptionKey", p.pos);
        } else if p.is_word("InboundAuthKey") {
            m.inbound.auth_key = hex_secret(cur, "InboundAuthKey")?;
            key_pos.insert("InboundAuthKey", p.pos);
        } else if p.is_word("OutboundAuthKey") {
            m.outbound.auth_key = hex_secret(cur, "OutboundAuthKey")?;
            key_pos.insert("OutboundAuthKey", p.pos);
        } else {
            return Err(unknown(
                cur,
                p,
                "IpManVpnAction",
                "Active, IpSourceAddr, IpDestAddr, LocalSecurityEndpoint, RemoteSecurityEndpoint, HowToEncap, HowToEncrypt, HowToAuth, InboundSpi, OutboundSpi, InboundEncryptionKey, OutboundEncryptionKey, InboundAuthKey, OutboundAuthKey",
            ));
        }
        Ok(())
    })?;
    let need = |what: &str| cur.error_at(pos, format!("IpManVpnAction {} needs {what}", m.name));
    m.local_endpoint = lep.ok_or_else(|| need("a LocalSecurityEndpoint"))?;
    m.remote_endpoint = rep.ok_or_else(|| need("a RemoteSecurityEndpoint"))?;
    if m.local_endpoint.is_ipv6() != m.remote_endpoint.is_ipv6() {
        return Err(cur.error_at(
            pos,
            format!(
                "IpManVpnAction {}: the security endpoints mix IPv4 and IPv6",
                m.name
            ),
        ));
    }
    m.inbound.spi = spis.0.ok_or_else(|| need("an InboundSpi"))?;
    m.outbound.spi = spis.1.ok_or_else(|| need("an OutboundSpi"))?;
    m.src = src.unwrap_or(AddrSpec::Host(m.local_endpoint));
    m.dst = dst.unwrap_or(AddrSpec::Host(m.remote_endpoint));
    m.auth = auth.unwrap_or_else(|| default_esp_auth(m.encrypt));
    check_esp_combo(cur, pos, m.encrypt, m.auth_proto, m.auth)?;
    let ek = esp_key_len(m.encrypt);
    let ak = auth_key_len(m.auth);
    for (dir, sa) in [("Inbound", &m.inbound), ("Outbound", &m.outbound)] {
        for (kind, key, len) in [
            ("EncryptionKey", &sa.encryption_key, ek),
            ("AuthKey", &sa.auth_key, ak),
        ] {
            let have = key.expose().len();
            if have != len {
                let at = key_pos
                    .get(format!("{dir}{kind}").as_str())
                    .copied()
                    .unwrap_or(pos);
                return Err(cur.error_at(
                    at,
                    if len == 0 {
                        format!("IpManVpnAction {}: {dir}{kind} is not used with these algorithms; remove it", m.name)
                    } else {
                        format!("IpManVpnAction {}: {dir}{kind} must be {len} bytes ({} hex digits) for these algorithms, found {have} bytes", m.name, len * 2)
                    },
                ));
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> IkePolicy {
        match parse("p.conf", src) {
            Ok(p) => p,
            Err(e) => panic!("unexpected errors:\n{e}"),
        }
    }

    fn errs(src: &str) -> Vec<String> {
        match parse("p.conf", src) {
            Ok(p) => panic!("expected errors, parsed {p:?}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn one_err(src: &str) -> String {
        let e = errs(src);
        assert_eq!(e.len(), 1, "{e:?}");
        e.into_iter().next().unwrap_or_default()
    }

    const GW: &str = r#"
# gateway-to-gateway, PSK
IpFilterRule ignored-by-this-module { IpSourceAddr 10.1.0.0/16 IpDestAddr 10.2.0.0/16 IpDynVpnActionRef dyn1 }
KeyExchangeOffer kxo1
{
  HowToEncrypt AES_GCM_16 KeyLength 256
  PseudoRandomFunction HMAC_SHA2_512
  DHGroup Group31
  RefreshLifetimeProposed 60
  RefreshLifetimeAccepted 30 120
}
KeyExchangeAction kxa1
{
  HowToInitiate IKEv2
  KeyExchangeOfferRef kxo1
  KeyExchangeOffer { DHGroup Group14 }
  DpdInterval 10
}
KeyExchangeRule kxr1
{
  LocalSecurityEndpoint { Identity Fqdn gw1.example.net Location 192.0.2.1 }
  RemoteSecurityEndpointRef peer2
  KeyExchangeActionRef kxa1
  SharedKey Ascii "correct horse battery staple"
}
RemoteSecurityEndpoint peer2 { Identity Fqdn gw2.example.net Location 198.51.100.0/24 }
IpDataOffer gcm { HowToEncrypt AES_GCM_16 KeyLength 256 RefreshLifetimeProposed 60 RefreshLifetimeAccepted 30 120 }
IpDynVpnAction dyn1
{
  InitiateWithPfs Group19
  IpDataOfferRef gcm
  IpDataOffer { HowToEncrypt AES_CBC KeyLength 256 HowToAuth ESP HMAC_SHA2_512_256 }
}
LocalDynVpnRule net1-net2
{
  IpSourceAddr 10.1.0.0/16
  IpDestAddr 10.2.0.0/16
  RemoteSecurityEndpoint 198.51.100.2
  LocalSecurityEndpoint 192.0.2.1
  IpDynVpnActionRef dyn1
  AutoActivate Yes
}
"#;

    #[test]
    fn gateway_policy_resolves() {
        let p = ok(GW);
        assert_eq!(p.key_exchange_rules.len(), 1);
        let r = &p.key_exchange_rules[0];
        assert_eq!(r.name, "kxr1");
        assert_eq!(r.auth_me(), AuthMethod::PresharedKey);
        assert_eq!(r.shared_key.as_ref().map(|k| k.expose().len()), Some(28));
        assert!(!format!("{r:?}").contains("horse"));
        assert_eq!(
            r.local.identity.as_ref().map(|i| i.value.as_str()),
            Some("gw1.example.net")
        );
        assert_eq!(
            r.remote.location,
            AddrSpec::Prefix("198.51.100.0".parse().unwrap(), 24)
        );
        let a = &r.action;
        assert_eq!(a.initiate, HowToInitiate::IkeV2);
        assert_eq!(a.dpd_interval, 10);
        assert!(a.allow_nat);
        assert_eq!(a.offers.len(), 2);
        assert_eq!(a.offers[0].encrypt, IkeEncrypt::AesGcm16(256));
        assert_eq!(a.offers[0].dh_group, DhGroup(31));
        assert_eq!(a.offers[0].prf, Prf::HmacSha2_512);
        assert_eq!(a.offers[0].lifetime_accepted, (30, 120));
        assert_eq!(a.offers[1].dh_group, DhGroup(14));
        assert_eq!(a.offers[1].encrypt, IkeEncrypt::AesCbc(128));
        assert!(a.offers[1].name.starts_with('~'));
        assert_eq!(
            p.rule_for_peer(
                "192.0.2.1".parse().unwrap(),
                "198.51.100.2".parse().unwrap()
            )
            .map(|r| r.name.as_str()),
            Some("kxr1")
        );
        assert!(
            p.rule_for_peer("192.0.2.1".parse().unwrap(), "203.0.113.1".parse().unwrap())
                .is_none()
        );

        let d = p.dyn_rule("net1-net2").unwrap();
        assert_eq!(d.src, AddrSpec::Prefix("10.1.0.0".parse().unwrap(), 16));
        assert_eq!(d.remote_endpoint, "198.51.100.2".parse::<IpAddr>().unwrap());
        assert!(d.auto_activate && d.on_demand);
        assert_eq!(d.action.name, "dyn1");
        assert_eq!(d.action.initiate_with_pfs, Some(DhGroup(19)));
        assert_eq!(d.action.acceptable_pfs, vec![Some(DhGroup(19))]);
        assert_eq!(d.action.offers.len(), 2);
        assert_eq!(d.action.offers[0].encrypt, EspEncrypt::AesGcm16(256));
        assert_eq!(d.action.offers[0].auth, EspAuth::Null);
        assert_eq!(d.action.offers[1].auth, EspAuth::HmacSha2_512_256);
        assert_eq!(d.action.vpn_life, 1440);
    }

    #[test]
    fn defaults_are_modern() {
        let p = ok(
            "KeyExchangeRule r { KeyExchangeAction { } SharedKey Hex 0a0B }\n\
                    LocalDynVpnRule d { IpSourceAddr 10.0.0.1 IpDestAddr 10.0.0.2 IpDynVpnAction { } }",
        );
        let r = &p.key_exchange_rules[0];
        assert_eq!(
            r.shared_key.as_ref().map(Secret::expose),
            Some(&[10u8, 11][..])
        );
        let o = &r.action.offers[0];
        assert_eq!(o.encrypt, IkeEncrypt::AesCbc(128));
        assert_eq!(o.integrity, IkeIntegrity::HmacSha2_256_128);
        assert_eq!(o.prf, Prf::HmacSha2_256);
        assert_eq!(o.dh_group, DhGroup(19));
        assert!(!o.dh_group.is_legacy());
        assert_eq!(
            (o.lifetime_proposed, o.lifetime_accepted),
            (480, (240, 1440))
        );
        assert_eq!(r.action.respond_v1, HowToRespondV1::Main);
        assert_eq!(r.remote.location, AddrSpec::Any);
        let d = &p.local_dyn_vpn_rules[0];
        assert_eq!(d.local_endpoint, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(d.remote_endpoint, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert!(!d.auto_activate);
        let o = &d.action.offers[0];
        assert_eq!(
            (o.encap, o.encrypt, o.auth_proto, o.auth),
            (
                Encap::Tunnel,
                EspEncrypt::AesCbc(128),
                IpsecProto::Esp,
                EspAuth::HmacSha2_256_128
            )
        );
        assert_eq!(
            (o.lifetime_proposed, o.lifetime_accepted),
            (240, (120, 480))
        );
        assert_eq!(d.action.acceptable_pfs, vec![None]);
        assert_eq!(d.action.initiation, Initiation::Either);
        // Without a SharedKey the default is a signature.
        let p = ok("KeyExchangeRule r { KeyExchangeAction { CertificateLabel gw1 } }");
        assert_eq!(
            p.key_exchange_rules[0].auth_me(),
            AuthMethod::DigitalSignature
        );
    }

    #[test]
    fn manual_tunnel() {
        let p = ok(r#"
IpManVpnAction man1
{
  LocalSecurityEndpoint 192.0.2.1
  RemoteSecurityEndpoint 192.0.2.2
  IpDestAddr 10.2.0.0/24
  HowToEncrypt AES_GCM_16 KeyLength 128
  InboundSpi 4096
  OutboundSpi 8192
  InboundEncryptionKey 0x000102030405060708090a0b0c0d0e0f10111213
  OutboundEncryptionKey 101112131415161718191a1b1c1d1e1f20212223
}
"#);
        let m = p.man_action("man1").unwrap();
        assert!(m.active);
        assert_eq!(m.auth, EspAuth::Null);
        assert_eq!(m.src, AddrSpec::Host("192.0.2.1".parse().unwrap()));
        assert_eq!(m.dst, AddrSpec::Prefix("10.2.0.0".parse().unwrap(), 24));
        assert_eq!((m.inbound.spi, m.outbound.spi), (4096, 8192));
        assert_eq!(m.inbound.encryption_key.expose().len(), 20);
        let dbg = format!("{m:?}");
        assert!(dbg.contains("0x00001000") && !dbg.contains("0a0b"), "{dbg}");
    }

    #[test]
    fn manual_tunnel_errors() {
        let base = "LocalSecurityEndpoint 192.0.2.1 RemoteSecurityEndpoint 192.0.2.2 InboundSpi 4096 OutboundSpi 8192";
        let e = one_err(&format!(
            "IpManVpnAction m {{ {base} InboundEncryptionKey 00 }}"
        ));
        assert!(
            e.contains("InboundEncryptionKey must be 16 bytes (32 hex digits)"),
            "{e}"
        );
        let e = one_err("IpManVpnAction m { LocalSecurityEndpoint 192.0.2.1 }");
        assert!(e.contains("needs a RemoteSecurityEndpoint"), "{e}");
        let e = one_err(
            "IpManVpnAction m { LocalSecurityEndpoint 192.0.2.1 RemoteSecurityEndpoint 2001:db8::1 }",
        );
        assert!(e.contains("mix IPv4 and IPv6"), "{e}");
        let e = one_err(&format!(
            "IpManVpnAction m {{ {base} InboundEncryptionKey 0g }}"
        ));
        assert!(e.contains("hexadecimal digits"), "{e}");
        let e = one_err("IpManVpnAction m { InboundSpi 12 }");
        assert!(e.contains("SPI must be a whole number from 256"), "{e}");
        let e = one_err(&format!(
            "IpManVpnAction m {{ {base} HowToEncrypt DoNot HowToAuth ESP Null }}"
        ));
        assert!(e.contains("HowToAuth Null needs an AES_GCM_16"), "{e}");
    }

    #[test]
    fn reference_errors() {
        let e = one_err("KeyExchangeRule r { KeyExchangeActionRef nope SharedKey Ascii k }");
        assert_eq!(
            e,
            "p.conf:1:42: KeyExchangeActionRef nope: no KeyExchangeAction nope is defined"
        );
        let e = one_err("KeyExchangeRule r { SharedKey Ascii k }");
        assert!(e.contains("needs a KeyExchangeActionRef"), "{e}");
        let e = one_err(
            "KeyExchangeAction a { KeyExchangeOfferRef o }\nKeyExchangeRule r { KeyExchangeActionRef a SharedKey Ascii k }",
        );
        assert!(
            e.starts_with("p.conf:1:43: KeyExchangeOfferRef o: no KeyExchangeOffer o"),
            "{e}"
        );
        let e = one_err(
            "KeyExchangeRule r { KeyExchangeAction { } RemoteSecurityEndpointRef x SharedKey Ascii k }",
        );
        assert!(
            e.contains("RemoteSecurityEndpointRef x: no RemoteSecurityEndpoint x is defined"),
            "{e}"
        );
        let e = one_err(
            "LocalDynVpnRule d { IpSourceAddr 10.0.0.1 IpDestAddr 10.0.0.2 IpDynVpnActionRef nope }",
        );
        assert!(
            e.contains("IpDynVpnActionRef nope: no IpDynVpnAction nope is defined"),
            "{e}"
        );
        let e = one_err("IpDynVpnAction a { IpDataOfferRef x }");
        assert!(
            e.contains("IpDataOfferRef x: no IpDataOffer x is defined"),
            "{e}"
        );
        // References are case-insensitive and may point forward.
        ok(
            "KeyExchangeRule r { KeyExchangeActionRef KXA SharedKey Ascii k }\nKeyExchangeAction kxa { }",
        );
    }

    #[test]
    fn rule_errors() {
        let e = one_err("KeyExchangeRule r { KeyExchangeAction { HowToAuthMe PresharedKey } }");
        assert!(
            e.contains("authenticates with PresharedKey but codes no SharedKey"),
            "{e}"
        );
        let e = one_err("LocalDynVpnRule d { IpDestAddr 10.0.0.2 IpDynVpnAction { } }");
        assert!(e.contains("needs an IpSourceAddr"), "{e}");
        let e = one_err(
            "LocalDynVpnRule d { IpSourceAddr 10.0.0.1 IpDestAddr 10.2.0.0/16 IpDynVpnAction { } }",
        );
        assert!(e.contains("needs a RemoteSecurityEndpoint"), "{e}");
        let e = one_err(
            "LocalDynVpnRule d { IpSourceAddr 10.0.0.1 IpDestAddr 2001:db8::1 IpDynVpnAction { } }",
        );
        assert!(e.contains("mix IPv4 and IPv6"), "{e}");
        let e = one_err(
            "LocalDynVpnRule d { IpSourceAddr 10.0.0.1 IpDestAddr 10.0.0.2 AutoActivate yes IpDynVpnAction { Initiation RemoteOnly } }",
        );
        assert!(e.contains("allows RemoteOnly initiation"), "{e}");
        let e = one_err(
            "KeyExchangeRule r { SharedKey Ascii k KeyExchangeAction { HowToInitiate Main KeyExchangeOffer { HowToEncrypt AES_GCM_16 } } }",
        );
        assert!(e.contains("AES_GCM_16 is for IKEv2 only"), "{e}");
        let e = one_err("KeyExchangeOffer a { }\nKeyExchangeOffer A { }");
        assert_eq!(
            e,
            "p.conf:2:18: KeyExchangeOffer A is already defined at line 1"
        );
    }

    #[test]
    fn value_errors_name_line_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "KeyExchangeOffer o { HowToEncrypt AES_CBC KeyLength 64 }",
                "p.conf:1:53: KeyLength for AES_CBC must be one of 128, 192, 256, found '64'",
            ),
            (
                "KeyExchangeOffer o { HowToEncrypt Blowfish }",
                "p.conf:1:35: HowToEncrypt must be DES, 3DES",
            ),
            (
                "KeyExchangeOffer o { DHGroup Group3 }",
                "p.conf:1:30: DHGroup must be Group1",
            ),
            (
                "KeyExchangeOffer o { HowToAuthMsgs SHA3 }",
                "p.conf:1:36: HowToAuthMsgs must be one of MD5, SHA1",
            ),
            (
                "KeyExchangeOffer o { HowToVerifyMsgs X }",
                "p.conf:1:38: HowToVerifyMsgs must be one of",
            ),
            (
                "KeyExchangeOffer o { PseudoRandomFunction X }",
                "p.conf:1:43: PseudoRandomFunction must be one of",
            ),
            (
                "KeyExchangeOffer o { HowToAuthPeers Magic }",
                "p.conf:1:37: HowToAuthPeers must be one of PresharedKey",
            ),
            (
                "KeyExchangeOffer o { RefreshLifetimeAccepted 100 50 }",
                "p.conf:1:50: RefreshLifetimeAccepted maximum must be a whole number from 100 to 65535",
            ),
            (
                "KeyExchangeOffer o { RefreshLifetimeProposed 5000 }",
                "p.conf:1:1: KeyExchangeOffer o: RefreshLifetimeProposed 5000 is outside RefreshLifetimeAccepted 240 1440",
            ),
            (
                "KeyExchangeOffer o { RefreshLifesizeProposed 0 }",
                "p.conf:1:46: RefreshLifesizeProposed must be None or a size in KB greater than 0",
            ),
            (
                "KeyExchangeOffer o { RefreshLifesizeAccepted 100 50 }",
                "p.conf:1:50: RefreshLifesizeAccepted: the maximum 50 is below the minimum 100",
            ),
            (
                "KeyExchangeOffer o { Colour red }",
                "p.conf:1:22: unknown KeyExchangeOffer parameter 'Colour'",
            ),
            (
                "KeyExchangeAction a { HowToInitiate IKEv3 }",
                "p.conf:1:37: HowToInitiate must be one of Main, Aggressive, IKEv2, DoNot",
            ),
            (
                "KeyExchangeAction a { HowToRespondIKEv1 Never }",
                "p.conf:1:41: HowToRespondIKEv1 must be one of Either, Main, Aggressive",
            ),
            (
                "KeyExchangeAction a { AllowNat perhaps }",
                "p.conf:1:32: AllowNat must be Yes or No",
            ),
            (
                "KeyExchangeAction a { DpdInterval 7200 }",
                "p.conf:1:35: DpdInterval must be a whole number from 0 to 3600",
            ),
            (
                "KeyExchangeRule r { SharedKey Base64 abc }",
                "p.conf:1:31: SharedKey must be one of Ascii, Hex",
            ),
            (
                "KeyExchangeRule r { SharedKey Hex abc }",
                "p.conf:1:35: SharedKey Hex must be an even number of hexadecimal digits",
            ),
            (
                "RemoteSecurityEndpoint e { Location 10.0.0.0/33 }",
                "p.conf:1:37: Location: prefix length must be 0 to 32",
            ),
            (
                "RemoteSecurityEndpoint e { Identity IpAddr gw }",
                "p.conf:1:44: Identity IpAddr needs an IP address",
            ),
            (
                "RemoteSecurityEndpoint e { Identity UserFqdn gw }",
                "p.conf:1:46: Identity UserFqdn needs user@domain",
            ),
            (
                "RemoteSecurityEndpoint e { Identity X500dn gw }",
                "p.conf:1:44: Identity X500dn needs a distinguished name",
            ),
            (
                "RemoteSecurityEndpoint e { Identity Email gw }",
                "p.conf:1:37: Identity must be one of IpAddr",
            ),
            (
                "LocalSecurityEndpoint e { Location 10.0.0.0/8 }",
                "p.conf:1:36: a LocalSecurityEndpoint Location must be one address or *",
            ),
            (
                "LocalSecurityEndpoint e { CaLabel x }",
                "p.conf:1:27: unknown LocalSecurityEndpoint parameter 'CaLabel'",
            ),
            (
                "IpDataOffer o { HowToEncrypt AES_GCM_16 HowToAuth ESP HMAC_SHA2_256_128 }",
                "p.conf:1:41: an AES_GCM_16 or CHACHA20_POLY1305 offer needs HowToAuth ESP Null",
            ),
            (
                "IpDataOffer o { HowToEncrypt AES_CBC HowToAuth AH HMAC_SHA2_256_128 }",
                "p.conf:1:38: HowToAuth AH protects integrity only",
            ),
            (
                "IpDataOffer o { HowToEncrypt AES_CBC HowToAuth ESP AES_GMAC_128 }",
                "p.conf:1:38: AES_GMAC is integrity only",
            ),
            (
                "IpDataOffer o { HowToEncap Tunnelled }",
                "p.conf:1:28: HowToEncap must be one of Tunnel, Transport",
            ),
            (
                "IpDataOffer o { HowToAuth GRE }",
                "p.conf:1:27: HowToAuth must be one of ESP, AH",
            ),
            (
                "IpDataOffer o { HowToAuth ESP SHA9 }",
                "p.conf:1:31: the HowToAuth algorithm must be one of Null",
            ),
            (
                "IpDynVpnAction a { Initiation Sometimes }",
                "p.conf:1:31: Initiation must be one of Either, LocalOnly, RemoteOnly",
            ),
            (
                "IpDynVpnAction a { InitiateWithPfs Group7 }",
                "p.conf:1:36: InitiateWithPfs must be None, Group1",
            ),
            (
                "IpDynVpnAction a { VpnLife x }",
                "p.conf:1:28: VpnLife must be a whole number from 0 to 70560",
            ),
            (
                "IpDynVpnAction a { HowToEncapIKEv2 Maybe }",
                "p.conf:1:36: HowToEncapIKEv2 must be one of Either, Tunnel, Transport",
            ),
            (
                "LocalDynVpnRule d { IpSourceAddr 10.0.0.9-10.0.0.1 }",
                "p.conf:1:34: IpSourceAddr: a range must run from the lower to the higher address",
            ),
            (
                "LocalDynVpnRule d { IpSourceAddr 10.0.0.1-2001:db8::1 }",
                "p.conf:1:34: IpSourceAddr: a range must not mix IPv4 and IPv6",
            ),
            (
                "LocalDynVpnRule d { IpDestAddr host.example }",
                "p.conf:1:32: IpDestAddr: 'host.example' is not an IP address",
            ),
            (
                "LocalDynVpnRule d { Protocol XTP }",
                "p.conf:1:30: Protocol must be All, TCP",
            ),
            (
                "LocalDynVpnRule d { SourcePort 70000 }",
                "p.conf:1:32: SourcePort must be a whole number from 0 to 65535",
            ),
            (
                "LocalDynVpnRule d { RemoteSecurityEndpoint gw2 }",
                "p.conf:1:44: RemoteSecurityEndpoint needs an IP address",
            ),
            (
                "LocalDynVpnRule d { AutoActivate 1 }",
                "p.conf:1:34: AutoActivate must be Yes or No",
            ),
            (
                "LocalDynVpnRule -d { }",
                "p.conf:1:17: a name must be 1 to 32 characters, not start with '-'",
            ),
            (
                "LocalDynVpnRule a,b { }",
                "p.conf:1:17: a name must be 1 to 32 characters",
            ),
            (
                "LocalDynVpnRule\n{ }",
                "p.conf:1:16: expected a name after LocalDynVpnRule on this line",
            ),
        ];
        for (src, want) in cases {
            let e = errs(src);
            assert!(
                e.first().is_some_and(|e| e.starts_with(want)),
                "for {src:?}\n got: {e:?}\nwant: {want}"
            );
        }
    }

    #[test]
    fn other_statements_are_skipped_but_must_be_balanced() {
        ok(
            "IpFilterRule x { IpService { Protocol tcp } IpGenericFilterActionRef p }\nIpGenericFilterAction p { IpFilterAction permit }",
        );
        let e = one_err("IpFilterRule x { IpService { Protocol tcp }");
        assert!(e.contains("is not closed"), "{e}");
    }

    #[test]
    fn ports_protocols_and_addresses() {
        let p = ok(
            "LocalDynVpnRule d { IpSourceAddr 2001:db8:1::/48 IpDestAddr 2001:db8:2::5 Protocol TCP SourcePort 1024 65535 DestinationPort 22 IpDynVpnAction { } }",
        );
        let d = &p.local_dyn_vpn_rules[0];
        assert_eq!(d.protocol, Protocol::Number(6));
        assert_eq!(
            d.src_port,
            PortRange {
                lo: 1024,
                hi: 65535
            }
        );
        assert_eq!(d.dst_port, PortRange { lo: 22, hi: 22 });
        assert_eq!(d.src.is_ipv6(), Some(true));
        assert!(d.src.contains("2001:db8:1:ffff::1".parse().unwrap()));
        assert!(!d.src.contains("2001:db8:2::1".parse().unwrap()));
        assert!(!d.src.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(
            AddrSpec::parse("10.1.2.3/16"),
            Ok(AddrSpec::Prefix("10.1.0.0".parse().unwrap(), 16))
        );
        assert_eq!(
            AddrSpec::parse("0.0.0.0/0").map(|a| a.contains("1.2.3.4".parse().unwrap())),
            Ok(true)
        );
        assert_eq!(AddrSpec::parse("*"), Ok(AddrSpec::Any));
        assert_eq!(
            AddrSpec::parse("10.0.0.1-10.0.0.9").map(|a| a.to_string()),
            Ok("10.0.0.1-10.0.0.9".into())
        );
        let p = ok(
            "LocalDynVpnRule d { IpSourceAddr 10.0.0.1 IpDestAddr 10.0.0.2 Protocol 47 SourcePort 0 IpDynVpnAction { } }",
        );
        assert_eq!(p.local_dyn_vpn_rules[0].protocol, Protocol::Number(47));
        assert!(p.local_dyn_vpn_rules[0].src_port.is_any());
    }

    #[test]
    fn fips_mode_violations() {
        let p = ok(
            "KeyExchangeRule r { SharedKey Ascii k KeyExchangeAction { KeyExchangeOffer { HowToEncrypt DES DHGroup Group1 } } }\n\
                    IpDynVpnAction a { Pfs Group1 IpDataOffer { HowToEncrypt DES HowToAuth ESP HMAC_MD5 } }",
        );
        let v = p.fips_violations("p.conf");
        let msgs: Vec<_> = v.iter().map(|d| d.message.clone()).collect();
        assert_eq!(v.len(), 5, "{msgs:?}");
        assert!(msgs.iter().any(|m| m.starts_with("DES in ~offer")));
        assert!(msgs.iter().any(|m| m.starts_with("PFS Group1 in a")));
        assert!(ok(GW).fips_violations("p.conf").is_empty());
    }

    #[test]
    fn legacy_spellings_are_accepted() {
        let p = ok(
            "KeyExchangeAction a { HowToRespond Either }\nKeyExchangeRule r { KeyExchangeActionRef a SharedKey Ascii k }\n\
                    IpDynVpnAction d { Pfs Group14 AcceptablePfs None AcceptablePfs Group14 PassthroughDF No Clear IpDataOffer { HowToEncrypt AES HowToAuth ESP HMAC_SHA } }",
        );
        assert_eq!(
            p.key_exchange_rules[0].action.respond_v1,
            HowToRespondV1::Either
        );
        let d = &p.ip_dyn_vpn_actions["d"];
        assert_eq!(d.acceptable_pfs, vec![None, Some(DhGroup(14))]);
        assert!(!d.passthrough_df);
        assert_eq!(d.offers[0].auth, EspAuth::HmacSha1);
    }
}
