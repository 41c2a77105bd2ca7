//! The JSON bodies of protocol versions 1 and 2 — `docs/nmi-protocol.md` §5 (version 2 adds
//! [`ConfigRefreshResult`]).
//!
//! Every struct is decoded strictly (`deny_unknown_fields`; required fields must be present);
//! optional fields are omitted when unset. Field order is the display order.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// `hex64`: a u64 as `"0x"` + 16 lowercase hex digits (IKE SPIs).
pub mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Serializes `v` as `"0x%016x"`.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{v:016x}"))
    }

    /// Accepts exactly `"0x"` followed by 16 lowercase hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        let digits = s
            .strip_prefix("0x")
            .filter(|h| h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .ok_or_else(|| D::Error::custom("expected \"0x\" and 16 lowercase hex digits"))?;
        u64::from_str_radix(digits, 16).map_err(D::Error::custom)
    }
}

macro_rules! display_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $json:literal => $disp:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $json)] $var),+
        }
        impl $name {
            /// The text the `ipsec` report prints.
            pub fn display(self) -> &'static str {
                match self { $(Self::$var => $disp),+ }
            }
            /// The JSON value.
            pub fn json(self) -> &'static str {
                match self { $(Self::$var => $json),+ }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// §5.1

display_enum!(
    /// Which daemon serves the socket.
    ServerKind { Iked = "iked" => "IKED", Nssd = "nssd" => "NSSD" }
);

/// INIT body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerInfo {
    /// Which daemon answers.
    pub server: ServerKind,
    /// gatekey version, e.g. `0.1.0`.
    pub software_version: String,
    /// System name.
    pub system_name: String,
    /// Lowest protocol version spoken.
    pub min_version: u16,
    /// Highest protocol version spoken.
    pub max_version: u16,
}

/// TERM or error-response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorInfo {
    /// What failed and what to do.
    pub message: String,
    /// On `EACCES`: the profile checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// §5.2

/// Selection for the monitoring requests; all fields optional. An all-default selection is sent
/// as an empty body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Only this tunnel (`K<n>`, `Y<n>`, `M<n>`), or filters of this tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<String>,
    /// Rule, action or filter name (case-sensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every SA of each dynamic tunnel (`-y display -c`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_sas: bool,
}

impl Selection {
    /// True if nothing is selected (sent as an empty body).
    pub fn is_empty(&self) -> bool {
        self == &Selection::default()
    }
}

// ---------------------------------------------------------------------------------------------
// §5.3

display_enum!(
    /// Filter set (NMsecStack FilterSet bit).
    FilterSet {
        /// The profile's IPSECRule rules.
        Default = "default" => "Stack Profile",
        /// The IPsec policy file's rules.
        Policy = "policy" => "Stack Policy",
    }
);

/// NMsecStack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackRecord {
    /// Network namespace name.
    pub stack_name: String,
    /// IPv4 filtering enforced.
    pub ip_security: bool,
    /// IPv6 filtering enforced.
    pub ipv6_security: bool,
    /// Always false on Linux.
    pub dvipsec: bool,
    /// LOGENable.
    pub logging: bool,
    /// LOGImplicit.
    pub log_implicit: bool,
    /// Always false on Linux.
    pub predecap: bool,
    /// Active filter set.
    pub filter_set: FilterSet,
    /// A valid IPsec policy is loaded.
    pub policy_available: bool,
    /// FIPS 140 mode.
    pub fips140: bool,
    /// NAT keepalive interval, seconds, 0 = off.
    pub nat_keepalive: u32,
    /// iked has UDP 500/4500 open in this stack.
    pub ike_listening: bool,
}

/// GET_STACKINFO response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackInfoList {
    /// Number of stacks.
    pub total_available: u32,
    /// One per stack.
    pub records: Vec<StackRecord>,
}

// ---------------------------------------------------------------------------------------------
// §5.4

display_enum!(
    /// Which filter table a FilterList holds.
    FilterScope { Current = "current" => "Current", Default = "default" => "Profile", Policy = "policy" => "Policy" }
);
display_enum!(
    /// Filter type.
    FilterType {
        /// A configured rule.
        Generic = "generic" => "Generic",
        /// Anchor for dynamic filters.
        DynamicAnchor = "dynamic_anchor" => "Dynamic Anchor",
        /// Inserted with a child SA.
        Dynamic = "dynamic" => "Dynamic",
        /// NAT-T anchor.
        NattAnchor = "natt_anchor" => "NATT Anchor",
        /// NAT-T dynamic.
        NattDynamic = "natt_dynamic" => "NATT Dynamic",
        /// NAT-T resolution filter.
        Nrf = "nrf" => "NRF",
        /// Defensive filter.
        Defensive = "defensive" => "Defensive",
    }
);
display_enum!(
    /// Filter state.
    FilterState { Active = "active" => "Active", Inactive = "inactive" => "Inactive" }
);
display_enum!(
    /// Filter action.
    FilterAction { Permit = "permit" => "Permit", Deny = "deny" => "Deny", Ipsec = "ipsec" => "IPSec" }
);
display_enum!(
    /// Routing scope.
    Scope { Local = "local" => "Local", Routed = "routed" => "Routed", Either = "either" => "Either" }
);
display_enum!(
    /// Direction of a filter or a traffic test.
    Direction { Inbound = "inbound" => "Inbound", Outbound = "outbound" => "Outbound" }
);
display_enum!(
    /// Filter logging.
    Logging { All = "all" => "All", Deny = "deny" => "Deny", Permit = "permit" => "Permit", None = "none" => "None" }
);
display_enum!(
    /// Granularity of a dynamic filter's field (from IpLocalStartAction).
    Granularity { Rule = "rule" => "Rule", Packet = "packet" => "Packet" }
);
display_enum!(
    /// TCP connection direction qualifier.
    TcpQualifier { InboundConnect = "inbound_connect" => "InboundConnect", OutboundConnect = "outbound_connect" => "OutboundConnect" }
);
display_enum!(
    /// What a deny does.
    DiscardAction { Silent = "silent" => "Silent", Icmp = "icmp" => "ICMP" }
);

/// One filter: the z/OS filter detail fields (reference §3.4) and gatekey's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.4`.
pub struct FilterRecord {
    pub filter_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_name_extension: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_start_action_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_action_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<String>,
    #[serde(rename = "type")]
    pub filter_type: FilterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defensive_type: Option<String>,
    pub state: FilterState,
    pub action: FilterAction,
    pub scope: Scope,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_demand: Option<bool>,
    pub security_class: u8,
    pub logging: Logging,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type_granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code_granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ospf_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_qualifier: Option<TcpQualifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_range: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_address_prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_address_range: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_address_granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port_range: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_port_granularity: Option<Granularity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_rmt_conn_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmt_id_payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmt_udp_encap_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_action: Option<DiscardAction>,
    pub ipv6: bool,
    pub matched_packets: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_bytes: Option<u64>,
}

impl FilterRecord {
    /// A generic filter with every optional field unset (a starting point for servers and tests).
    pub fn new(
        filter_name: impl Into<String>,
        action: FilterAction,
        direction: Direction,
    ) -> FilterRecord {
        FilterRecord {
            filter_name: filter_name.into(),
            filter_name_extension: None,
            group_name: None,
            local_start_action_name: None,
            vpn_action_name: None,
            tunnel_id: None,
            filter_type: FilterType::Generic,
            defensive_type: None,
            state: FilterState::Active,
            action,
            scope: Scope::Local,
            direction,
            on_demand: None,
            security_class: 0,
            logging: Logging::None,
            log_limit: None,
            protocol: None,
            icmp_type: None,
            icmp_type_granularity: None,
            icmp_code: None,
            icmp_code_granularity: None,
            ospf_type: None,
            tcp_qualifier: None,
            protocol_granularity: None,
            source_address: None,
            source_address_prefix: None,
            source_address_range: None,
            source_address_granularity: None,
            source_port: None,
            source_port_range: None,
            source_port_granularity: None,
            dest_address: None,
            dest_address_prefix: None,
            dest_address_range: None,
            dest_address_granularity: None,
            dest_port: None,
            dest_port_range: None,
            dest_port_granularity: None,
            orig_rmt_conn_port: None,
            rmt_id_payload: None,
            rmt_udp_encap_port: None,
            create_time: None,
            update_time: None,
            discard_action: None,
            ipv6: false,
            matched_packets: 0,
            matched_bytes: None,
        }
    }
}

/// GET_IPFLT* response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterList {
    /// The stack, for the heading lines.
    pub stack: StackRecord,
    /// Which table.
    pub set: FilterScope,
    /// Filters in the table before selection.
    pub total_available: u32,
    /// The record list was cut to fit MAX_RESPONSE.
    pub truncated: bool,
    /// Filters in evaluation order.
    pub records: Vec<FilterRecord>,
}

// ---------------------------------------------------------------------------------------------
// §5.5, §5.7

display_enum!(
    /// IKE major.minor version.
    IkeVersion { V1 = "1.0" => "1.0", V2 = "2.0" => "2.0" }
);
display_enum!(
    /// IKEv1 phase 1 exchange mode.
    ExchangeMode { Main = "main" => "Main", Aggressive = "aggressive" => "Aggressive" }
);
display_enum!(
    /// IKE identity type.
    IdType {
        Ipv4Addr = "ID_IPV4_ADDR" => "ID_IPV4_ADDR",
        Ipv6Addr = "ID_IPV6_ADDR" => "ID_IPV6_ADDR",
        Fqdn = "ID_FQDN" => "ID_FQDN",
        UserFqdn = "ID_USER_FQDN" => "ID_USER_FQDN",
        DerAsn1Dn = "ID_DER_ASN1_DN" => "ID_DER_ASN1_DN",
        KeyId = "ID_KEY_ID" => "ID_KEY_ID",
    }
);
display_enum!(
    /// IKE tunnel state.
    IkeState {
        Init = "init" => "INIT",
        Wait = "wait" => "WAIT",
        Pending = "pending" => "PENDING",
        Done = "done" => "DONE",
        Expired = "expired" => "EXPIRED",
    }
);
display_enum!(
    /// Negotiation role.
    Role { Initiator = "initiator" => "Initiator", Responder = "responder" => "Responder" }
);
display_enum!(
    /// Where signatures come from.
    CertService { Local = "local" => "Local", Nss = "nss" => "NSS" }
);

/// NAT traversal topology of a tunnel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.7`.
pub struct NatTopology {
    pub udp_encap_mode: bool,
    pub nat_allowed: bool,
    pub lcl_nat_detected: bool,
    pub rmt_nat_detected: bool,
    pub rmt_napt_detected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmt_is_gw: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmt_udp_encap_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_nat_oa_rcvd: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_nat_oa_rcvd: Option<IpAddr>,
}

/// NMsecIKETunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.5`.
pub struct IkeTunnelRecord {
    pub tunnel_id: String,
    pub generation: u32,
    pub ike_version: IkeVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_mode: Option<ExchangeMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_exchange_rule_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_exchange_action_name: Option<String>,
    pub local_endpoint: IpAddr,
    pub local_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id_type: Option<IdType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
    pub remote_endpoint: IpAddr,
    pub remote_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id_type: Option<IdType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    pub state: IkeState,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_length: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo_random_function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diffie_hellman_group: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_authentication_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_authentication_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_service: Option<CertService>,
    #[serde(with = "hex64")]
    pub initiator_spi: u64,
    #[serde(with = "hex64")]
    pub responder_spi: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifesize: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_byte_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_refresh: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth_interval: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reauth_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_overlap_percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<u64>,
    pub associated_dynamic_tunnels: u32,
    pub nat: NatTopology,
    pub can_init_p1: bool,
    pub fips140: bool,
    pub ipv6: bool,
}

/// GET_IKETUN response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IkeTunnelList {
    /// IKE SAs before selection.
    pub total_available: u32,
    /// The record list was cut to fit MAX_RESPONSE.
    pub truncated: bool,
    /// IKE SAs.
    pub records: Vec<IkeTunnelRecord>,
}

/// One GET_IKETUNCASCADE record: an IKE tunnel and its dynamic tunnels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IkeTunnelCascade {
    /// The IKE SA.
    pub ike_tunnel: IkeTunnelRecord,
    /// Its child SAs.
    pub dynamic_tunnels: Vec<IpTunnelRecord>,
}

/// GET_IKETUNCASCADE response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IkeTunnelCascadeList {
    /// IKE SAs before selection.
    pub total_available: u32,
    /// The record list was cut to fit MAX_RESPONSE.
    pub truncated: bool,
    /// IKE SAs with children.
    pub records: Vec<IkeTunnelCascade>,
}

// ---------------------------------------------------------------------------------------------
// §5.6

display_enum!(
    /// Where IP tunnel records come from.
    TunnelSource { Stack = "stack" => "Stack", Iked = "iked" => "IKED" }
);
display_enum!(
    /// NMsIPTunType.
    IpTunnelType { Manual = "manual" => "Manual", Dynamic = "dynamic" => "Dynamic" }
);
display_enum!(
    /// NMsIPTunState.
    SaState {
        Inactive = "inactive" => "Inactive",
        Pending = "pending" => "Pending",
        InProgress = "in_progress" => "InProgress",
        Active = "active" => "Active",
        Expired = "expired" => "Expired",
    }
);
display_enum!(
    /// How a dynamic tunnel was activated.
    Activation {
        Auto = "auto" => "Auto",
        Command = "command" => "Command",
        OnDemand = "on_demand" => "OnDemand",
        Remote = "remote" => "Remote",
        Nmi = "nmi" => "NMI",
    }
);
display_enum!(
    /// Encapsulation mode.
    Encap { Tunnel = "tunnel" => "Tunnel", Transport = "transport" => "Transport" }
);
display_enum!(
    /// IPsec protocol that authenticates.
    AuthProtocol { Ah = "ah" => "AH", Esp = "esp" => "ESP" }
);

/// NMsecIPTunnel (manual and dynamic tunnels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.6`.
pub struct IpTunnelRecord {
    pub tunnel_id: String,
    #[serde(rename = "type")]
    pub tunnel_type: IpTunnelType,
    pub generation: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ike_tunnel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_action_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_dyn_vpn_rule: Option<String>,
    pub state: SaState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_version: Option<IkeVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub how_to_encap: Encap,
    pub local_endpoint: IpAddr,
    pub remote_endpoint: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address_base: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address_prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address_range: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address_base: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address_prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address_range: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how_to_auth: Option<AuthProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_inbound_spi: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_outbound_spi: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how_to_encrypt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_key_length: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_inbound_spi: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_outbound_spi: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pfs_group: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_port: Option<u16>,
    pub outbound_packets: u64,
    pub outbound_bytes: u64,
    pub inbound_packets: u64,
    pub inbound_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifesize: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifesize_refresh: Option<u64>,
    pub current_byte_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_refresh: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_life_expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<u64>,
    pub nat: NatTopology,
    pub fips140: bool,
    pub ipv6: bool,
}

/// GET_IPTUNDYNIKE / GET_IPTUNDYNSTACK / GET_IPTUNMANUAL response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpTunnelList {
    /// Stack (kernel) or IKED view.
    pub source: TunnelSource,
    /// The server's clock (`CurrentTime:`).
    pub current_time: u64,
    /// SAs before selection.
    pub total_available: u32,
    /// The record list was cut to fit MAX_RESPONSE.
    pub truncated: bool,
    /// SAs.
    pub records: Vec<IpTunnelRecord>,
}

// ---------------------------------------------------------------------------------------------
// §5.8, §5.9

/// An interface of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.8`.
pub struct InterfaceRecord {
    pub interface_name: String,
    pub interface_index: u32,
    pub addresses: Vec<IpAddr>,
    pub security_class: u8,
    pub dvipa: bool,
    pub link_up: bool,
    pub filter_attached: bool,
}

/// GET_IPINTERFACES response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceList {
    /// Interfaces.
    pub total_available: u32,
    /// One per interface.
    pub records: Vec<InterfaceRecord>,
}

/// A NAT-T port translation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.9`.
pub struct PortTransRecord {
    pub protocol: u8,
    pub remote_address: IpAddr,
    pub orig_rmt_conn_port: u16,
    pub translated_rmt_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmt_udp_encap_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<u64>,
}

/// GET_PORTTRANS response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortTransList {
    /// Translations.
    pub total_available: u32,
    /// Records.
    pub records: Vec<PortTransRecord>,
}

// ---------------------------------------------------------------------------------------------
// §5.10, §5.11

display_enum!(
    /// Which configured NSS server a client is connected to.
    NssServerRole { Primary = "primary" => "Primary", Backup = "backup" => "Backup" }
);
display_enum!(
    /// iked's NSS connection state.
    NssConnectionState {
        Connecting = "connecting" => "connecting",
        Connected = "connected" => "connected",
        Disconnected = "disconnected" => "disconnected",
        NotSecure = "not_secure" => "not secure",
        AuthFailed = "auth_failed" => "authentication failed",
    }
);
display_enum!(
    /// nssd's view of a client connection.
    ClientConnectState {
        Connected = "connected" => "connected",
        Authenticating = "authenticating" => "authenticating",
        Closing = "closing" => "closing",
    }
);

/// NMsecNSS: one stack's NSS client state (`ipsec -w`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.10`.
pub struct IkeNsInfoRecord {
    pub stack_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_api_version: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_api_version: Option<u16>,
    pub ns_services_supported: bool,
    pub remote_management_selected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_management_enabled: Option<bool>,
    pub certificate_services_selected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_services_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_client_ip_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_client_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_server_ip_address: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_server_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_server_system_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_server_role: Option<NssServerRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<NssConnectionState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_connected_to_ns_server: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_of_last_message_to_ns_server: Option<u64>,
}

/// GET_IKENSINFO response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IkeNsInfoList {
    /// iked's system name.
    pub system_name: String,
    /// Stacks.
    pub total_available: u32,
    /// One per stack.
    pub records: Vec<IkeNsInfoRecord>,
}

/// One connected NSS client (`ipsec -x`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.11`.
pub struct ClientInfoRecord {
    pub client_name: String,
    pub stack_name: String,
    pub system_name: String,
    pub client_ip_address: IpAddr,
    pub client_port: u16,
    pub server_ip_address: IpAddr,
    pub server_port: u16,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_api_version: Option<u16>,
    pub remote_management_selected: bool,
    pub remote_management_enabled: bool,
    pub certificate_services_selected: bool,
    pub certificate_services_enabled: bool,
    pub connect_state: ClientConnectState,
    pub time_connected: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_of_last_message_from_client: Option<u64>,
}

/// GET_CLIENTINFO response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientInfoList {
    /// nssd's system name.
    pub system_name: String,
    /// Connected clients.
    pub total_available: u32,
    /// Records.
    pub records: Vec<ClientInfoRecord>,
}

// ---------------------------------------------------------------------------------------------
// §5.12

/// NMsecStatistics: cumulative over iked's life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
///
/// Fields: see `docs/nmi-protocol.md §5.12`.
pub struct SummaryRecord {
    pub p1_active: u32,
    pub p1_in_progress: u32,
    pub p1_expired: u32,
    pub p1_lcl_act_success: u64,
    pub p1_rmt_act_success: u64,
    pub p1_lcl_act_failure: u64,
    pub p1_rmt_act_failure: u64,
    pub p1_retransmit: u64,
    pub p2_active: u32,
    pub p2_in_progress: u32,
    pub p2_expired: u32,
    pub p2_lcl_act_success: u64,
    pub p2_rmt_act_success: u64,
    pub p2_lcl_act_failure: u64,
    pub p2_rmt_act_failure: u64,
    pub p2_retransmit: u64,
    pub invalid_messages: u64,
}

/// GET_SUMMARY response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// When iked started.
    pub since: u64,
    /// Counters.
    pub statistics: SummaryRecord,
}

// ---------------------------------------------------------------------------------------------
// §5.13

/// TRAFFIC_TEST request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficTest {
    /// Source address.
    pub source: IpAddr,
    /// Destination address.
    pub destination: IpAddr,
    /// IP protocol, 0 = any.
    pub protocol: u8,
    /// Source port (ICMP: type), 0 = any.
    pub source_port: u16,
    /// Destination port (ICMP: code), 0 = any.
    pub destination_port: u16,
    /// Absent = both directions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Security class, 0 = any.
    pub security_class: u8,
}

/// TRAFFIC_TEST response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficTestResult {
    /// The stack, for the heading.
    pub stack: StackRecord,
    /// The test as understood.
    pub test: TrafficTest,
    /// Filters in the current table.
    pub total_available: u32,
    /// Matching filters in evaluation order.
    pub records: Vec<FilterRecord>,
}

// ---------------------------------------------------------------------------------------------
// §5.14

/// One tunnel named in a control request (NMsecTunnel).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelRef {
    /// Rule/action name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tunnel ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<String>,
    /// ACT_IKETUN: peer identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// ACT_IKETUN: peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address: Option<IpAddr>,
}

/// Most tunnels one control request may name.
pub const MAX_TUNNELS_PER_REQUEST: usize = 64;

/// Control request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelControl {
    /// 1..=64 tunnels.
    pub tunnels: Vec<TunnelRef>,
}

display_enum!(
    /// NMsTunStatus.
    TunnelStatus {
        NotFound = "not_found" => "not found",
        StateUpdated = "state_updated" => "state updated",
        StateAlreadySet = "state_already_set" => "state already set",
        NotAllowed = "not_allowed" => "not allowed",
        NoKer = "no_ker" => "no KeyExchangeRule",
        NoFilter = "no_filter" => "no filter rule",
        NoDataOffer = "no_data_offer" => "no acceptable IpDataOffer",
        Failed = "failed" => "failed",
    }
);

impl TunnelStatus {
    /// The NMsTunStatus code (1–8).
    pub fn code(self) -> u8 {
        match self {
            TunnelStatus::NotFound => 1,
            TunnelStatus::StateUpdated => 2,
            TunnelStatus::StateAlreadySet => 3,
            TunnelStatus::NotAllowed => 4,
            TunnelStatus::NoKer => 5,
            TunnelStatus::NoFilter => 6,
            TunnelStatus::NoDataOffer => 7,
            TunnelStatus::Failed => 8,
        }
    }

    /// True for `state_updated` and `state_already_set`.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            TunnelStatus::StateUpdated | TunnelStatus::StateAlreadySet
        )
    }
}

/// Outcome for one tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelOutcome {
    /// Name as requested or resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tunnel acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<String>,
    /// Status.
    pub status: TunnelStatus,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Control response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelControlResult {
    /// One per requested tunnel, in request order.
    pub tunnels: Vec<TunnelOutcome>,
}

/// SET_IPFLTDEFAULT / SET_IPFLTPOLICY response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSetResult {
    /// The set now in force.
    pub filter_set: FilterSet,
    /// `state_updated` or `state_already_set`.
    pub status: TunnelStatus,
}

/// REFRESH_CONFIG response (protocol version 2): the configuration was re-read and is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRefreshResult {
    /// Which daemon refreshed.
    pub server: ServerKind,
    /// The main configuration file that was re-read (the files it names were read too).
    pub config_file: String,
    /// When the new configuration took effect (Unix seconds).
    pub refreshed_at: u64,
    /// What the refresh changed, one line each, for humans (empty: nothing the daemon reports).
    pub changes: Vec<String>,
}
