//! Text reports in z/OS's layout: three heading lines (report line, Primary/Function/Format,
//! Source/Scope/TotAvail), the records as `Name:` padded to 30 columns with the value from column
//! 31, `n/a` for unset values, a line of asterisks after each record, and `N entries selected`.

use std::fmt::{Display, Write as _};
use std::net::IpAddr;

use gatekey_nmi::records::*;
use time::{OffsetDateTime, UtcOffset, macros::format_description};

/// Report format (`-r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Every field (default).
    Detail,
    /// The main fields.
    Short,
    /// Every field, nothing truncated.
    Wide,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Detail => "Detail",
            Format::Short => "Short",
            Format::Wide => "Wide",
        }
    }
}

/// What the heading needs.
#[derive(Debug, Clone)]
pub struct Context {
    /// gatekey version of the answering daemon.
    pub software_version: String,
    /// `Stack Name` or `NSS Client Name`.
    pub target_label: &'static str,
    /// The resolved target, or `n/a`.
    pub target: String,
    /// Report time (Unix seconds).
    pub now: u64,
    /// Format.
    pub format: Format,
    /// `-y display -c`: every SA (Scope: All).
    pub all_sas: bool,
}

/// The separator printed after each record.
pub const SEPARATOR: &str =
    "***********************************************************************";

/// Column where detail values start (0-based): labels are padded to 30 characters.
const VALUE_COLUMN: usize = 30;
/// Longest value printed in detail format before an ID_KEY_ID is truncated with `...`.
const KEY_ID_MAX: usize = 48;

fn local(secs: u64) -> OffsetDateTime {
    let utc = OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    match UtcOffset::local_offset_at(utc) {
        Ok(off) => utc.to_offset(off),
        Err(_) => utc,
    }
}

/// `2024/03/01 12:00:00`, local time.
pub fn fmt_time(secs: u64) -> String {
    let f = format_description!("[year]/[month]/[day] [hour]:[minute]:[second]");
    local(secs).format(&f).unwrap_or_else(|_| secs.to_string())
}

/// `Fri Mar  1 12:00:00 2024`, local time (the heading's date).
pub fn fmt_date(secs: u64) -> String {
    let f = format_description!(
        "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
    );
    local(secs).format(&f).unwrap_or_else(|_| secs.to_string())
}

fn yes(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

fn na<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

fn na_yes(v: Option<bool>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |b| yes(b).to_owned())
}

fn na_time(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), fmt_time)
}

fn proto_name(p: u8) -> String {
    let name = match p {
        1 => "ICMP",
        2 => "IGMP",
        6 => "TCP",
        17 => "UDP",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "ICMPv6",
        89 => "OSPF",
        132 => "SCTP",
        _ => return p.to_string(),
    };
    format!("{name}({p})")
}

/// Builds a report.
#[derive(Debug, Default)]
pub struct Out {
    text: String,
}

impl Out {
    /// The report text.
    pub fn into_string(self) -> String {
        self.text
    }

    fn line(&mut self, s: &str) {
        self.text.push_str(s);
        self.text.push('\n');
    }

    /// `Name:` padded to 30, then the value.
    fn field(&mut self, name: &str, value: impl Display) {
        let label = format!("{name}:");
        let _ = writeln!(self.text, "{label:<VALUE_COLUMN$}{value}");
    }

    /// An indented field of a block (NAT Traversal Topology).
    fn sub(&mut self, name: &str, value: impl Display) {
        let label = format!("  {name}:");
        let _ = writeln!(self.text, "{label:<VALUE_COLUMN$}{value}");
    }

    fn sep(&mut self) {
        self.line(SEPARATOR);
    }

    fn grid(&mut self, cells: &[(&str, String)]) {
        const WIDTHS: [usize; 2] = [26, 29];
        let mut s = String::new();
        for (i, (label, value)) in cells.iter().enumerate() {
            let mut cell = if label.len() >= 10 {
                format!("{label}  {value}")
            } else {
                format!("{label:<10}{value}")
            };
            if let Some(w) = WIDTHS.get(i).filter(|_| i + 1 < cells.len()) {
                while cell.len() < *w {
                    cell.push(' ');
                }
                if !cell.ends_with(' ') {
                    cell.push(' ');
                }
            }
            s.push_str(&cell);
        }
        self.line(s.trim_end());
    }

    /// The three heading lines.
    pub fn heading(
        &mut self,
        ctx: &Context,
        primary: &str,
        function: &str,
        source: &str,
        scope: &str,
        total: u32,
    ) {
        let line1 = format!(
            "gatekey {} ipsec  {}: {}  {}",
            ctx.software_version,
            ctx.target_label,
            ctx.target,
            fmt_date(ctx.now)
        );
        self.line(&line1);
        self.grid(&[
            ("Primary:", primary.to_owned()),
            ("Function:", function.to_owned()),
            ("Format:", ctx.format.name().to_owned()),
        ]);
        self.grid(&[
            ("Source:", source.to_owned()),
            ("Scope:", scope.to_owned()),
            ("TotAvail:", total.to_string()),
        ]);
    }

    /// Heading lines 4-5 of filter reports.
    pub fn stack_lines(&mut self, s: &StackRecord) {
        self.grid(&[
            ("Logging:", if s.logging { "On" } else { "Off" }.to_owned()),
            (
                "Predecap:",
                if s.predecap { "On" } else { "Off" }.to_owned(),
            ),
            ("DVIPSec:", yes(s.dvipsec).to_owned()),
        ]);
        self.grid(&[
            ("NatKeepAlive:", s.nat_keepalive.to_string()),
            ("FIPS140:", yes(s.fips140).to_owned()),
        ]);
    }

    /// The final line.
    pub fn selected(&mut self, n: usize, truncated: bool) {
        self.line("");
        self.line(&format!("{n} entries selected"));
        if truncated {
            self.line("(the server truncated the list to fit the maximum message size)");
        }
    }

    /// One filter.
    pub fn filter(&mut self, f: &FilterRecord, format: Format) {
        let addr = |a: Option<IpAddr>| na(a);
        let g = |g: Option<Granularity>| na(g.map(Granularity::display));
        let proto = f.protocol.map_or_else(|| "All".to_owned(), proto_name);
        if format == Format::Short {
            self.field("FilterName", &f.filter_name);
            self.field("FilterNameExtension", na(f.filter_name_extension.as_ref()));
            self.field("VpnActionName", na(f.vpn_action_name.as_ref()));
            self.field("TunnelID", f.tunnel_id.as_deref().unwrap_or("0x00"));
            self.field("Type", f.filter_type.display());
            self.field("Action", f.action.display());
            self.field("Direction", f.direction.display());
            self.field("Protocol", proto);
            self.field("MatchedPackets", f.matched_packets);
            self.sep();
            return;
        }
        self.field("FilterName", &f.filter_name);
        self.field("FilterNameExtension", na(f.filter_name_extension.as_ref()));
        self.field("GroupName", na(f.group_name.as_ref()));
        self.field(
            "LocalStartActionName",
            na(f.local_start_action_name.as_ref()),
        );
        self.field("VpnActionName", na(f.vpn_action_name.as_ref()));
        self.field("TunnelID", f.tunnel_id.as_deref().unwrap_or("0x00"));
        self.field("Type", f.filter_type.display());
        self.field("DefensiveType", na(f.defensive_type.as_ref()));
        self.field("State", f.state.display());
        self.field("Action", f.action.display());
        self.field("Scope", f.scope.display());
        self.field("Direction", f.direction.display());
        self.field("OnDemand", na_yes(f.on_demand));
        self.field("SecurityClass", f.security_class);
        self.field("Logging", f.logging.display());
        self.field("LogLimit", na(f.log_limit));
        self.field("Protocol", proto);
        self.field("ICMPType", na(f.icmp_type));
        self.field("ICMPTypeGranularity", g(f.icmp_type_granularity));
        self.field("ICMPCode", na(f.icmp_code));
        self.field("ICMPCodeGranularity", g(f.icmp_code_granularity));
        self.field("OSPFType", na(f.ospf_type));
        self.field(
            "TCPQualifier",
            na(f.tcp_qualifier.map(TcpQualifier::display)),
        );
        self.field("ProtocolGranularity", g(f.protocol_granularity));
        self.field("SourceAddress", addr(f.source_address));
        self.field("SourceAddressPrefix", na(f.source_address_prefix));
        self.field("SourceAddressRange", addr(f.source_address_range));
        self.field("SourceAddressGranularity", g(f.source_address_granularity));
        self.field("SourcePort", na(f.source_port));
        self.field("SourcePortRange", na(f.source_port_range));
        self.field("SourcePortGranularity", g(f.source_port_granularity));
        self.field("DestAddress", addr(f.dest_address));
        self.field("DestAddressPrefix", na(f.dest_address_prefix));
        self.field("DestAddressRange", addr(f.dest_address_range));
        self.field("DestAddressGranularity", g(f.dest_address_granularity));
        self.field("DestPort", na(f.dest_port));
        self.field("DestPortRange", na(f.dest_port_range));
        self.field("DestPortGranularity", g(f.dest_port_granularity));
        self.field("OrigRmtConnPort", na(f.orig_rmt_conn_port));
        self.field("RmtIDPayload", na(f.rmt_id_payload.as_ref()));
        self.field("RmtUdpEncapPort", na(f.rmt_udp_encap_port));
        self.field("CreateTime", na_time(f.create_time));
        self.field("UpdateTime", na_time(f.update_time));
        self.field(
            "DiscardAction",
            na(f.discard_action.map(DiscardAction::display)),
        );
        self.field("MatchedPackets", f.matched_packets);
        self.field("MatchedBytes", na(f.matched_bytes));
        self.sep();
    }

    fn id(&mut self, name: &str, ty: Option<IdType>, id: Option<&String>, format: Format) {
        let v = match (ty, id) {
            (Some(IdType::KeyId), Some(s)) if format != Format::Wide && s.len() > KEY_ID_MAX => {
                let cut: String = s.chars().take(KEY_ID_MAX.saturating_sub(3)).collect();
                format!("{cut}...")
            }
            (_, id) => na(id),
        };
        self.field(name, v);
    }

    fn nat_block(&mut self, n: &NatTopology, ike: bool) {
        self.line("NAT Traversal Topology:");
        self.sub("UdpEncapMode", yes(n.udp_encap_mode));
        if ike {
            self.sub("NATAllowed", yes(n.nat_allowed));
        }
        self.sub("LclNATDetected", yes(n.lcl_nat_detected));
        self.sub("RmtNATDetected", yes(n.rmt_nat_detected));
        self.sub("RmtNAPTDetected", yes(n.rmt_napt_detected));
        self.sub("RmtIsGw", na_yes(n.rmt_is_gw));
        self.sub("RmtUdpEncapPort", na(n.rmt_udp_encap_port));
        if !ike {
            self.sub("SrcNATOARcvd", na(n.src_nat_oa_rcvd));
            self.sub("DstNATOARcvd", na(n.dst_nat_oa_rcvd));
        }
    }

    /// One IKE tunnel (no separator).
    pub fn ike_tunnel(&mut self, t: &IkeTunnelRecord, format: Format) {
        let v1 = t.ike_version == IkeVersion::V1;
        self.field("TunnelID", &t.tunnel_id);
        self.field("Generation", t.generation);
        self.field("IKEVersion", t.ike_version.display());
        self.field("KeyExchangeRuleName", na(t.key_exchange_rule_name.as_ref()));
        if format != Format::Short {
            self.field(
                "KeyExchangeActionName",
                na(t.key_exchange_action_name.as_ref()),
            );
        }
        self.field("LocalEndpoint", t.local_endpoint);
        if format != Format::Short {
            self.field("LocalPort", t.local_port);
            self.field("LocalIDType", na(t.local_id_type.map(IdType::display)));
            self.id("LocalID", t.local_id_type, t.local_id.as_ref(), format);
        }
        self.field("RemoteEndpoint", t.remote_endpoint);
        if format != Format::Short {
            self.field("RemotePort", t.remote_port);
            self.field("RemoteIDType", na(t.remote_id_type.map(IdType::display)));
        }
        self.id("RemoteID", t.remote_id_type, t.remote_id.as_ref(), format);
        self.field(
            "ExchangeMode",
            na(t.exchange_mode.map(ExchangeMode::display)),
        );
        self.field("State", t.state.display());
        if format == Format::Short {
            self.field("Role", t.role.display());
            return;
        }
        self.field(
            "AuthenticationAlgorithm",
            na(t.authentication_algorithm.as_ref()),
        );
        self.field("EncryptionAlgorithm", na(t.encryption_algorithm.as_ref()));
        self.field("KeyLength", na(t.key_length));
        self.field(
            "PseudoRandomFunction",
            na(t.pseudo_random_function.as_ref()),
        );
        self.field("DiffieHellmanGroup", na(t.diffie_hellman_group));
        self.field(
            "LocalAuthenticationMethod",
            na(t.local_authentication_method.as_ref()),
        );
        self.field(
            "RemoteAuthenticationMethod",
            na(t.remote_authentication_method.as_ref()),
        );
        self.field(
            "CertificateService",
            na(t.certificate_service.map(CertService::display)),
        );
        let (ilabel, rlabel) = if v1 {
            ("InitiatorCookie", "ResponderCookie")
        } else {
            ("InitiatorSPI", "ResponderSPI")
        };
        self.field(ilabel, format!("0x{:016X}", t.initiator_spi));
        self.field(rlabel, format!("0x{:016X}", t.responder_spi));
        self.field("Lifesize", format!("{}K", t.lifesize.unwrap_or(0) / 1024));
        self.field(
            "CurrentByteCount",
            format!("{}b", t.current_byte_count.unwrap_or(0)),
        );
        self.field("Lifetime", na(t.lifetime));
        self.field("LifetimeRefresh", na_time(t.lifetime_refresh));
        self.field("LifetimeExpires", na_time(t.lifetime_expires));
        self.field("ReauthInterval", na(t.reauth_interval));
        self.field("ReauthTime", na_time(t.reauth_time));
        self.field("Role", t.role.display());
        self.field("CreateTime", na_time(t.create_time));
        self.field("AssociatedDynamicTunnels", t.associated_dynamic_tunnels);
        self.nat_block(&t.nat, true);
        self.field("FIPS140", yes(t.fips140));
    }

    /// One manual or dynamic tunnel (no separator).
    pub fn ip_tunnel(&mut self, t: &IpTunnelRecord, format: Format, current_time: Option<u64>) {
        let dynamic = t.tunnel_type == IpTunnelType::Dynamic;
        self.field("TunnelID", &t.tunnel_id);
        if dynamic {
            self.field("ParentIKETunnelID", na(t.parent_ike_tunnel_id.as_ref()));
        }
        self.field("VpnActionName", na(t.vpn_action_name.as_ref()));
        if dynamic {
            self.field("LocalDynVpnRule", na(t.local_dyn_vpn_rule.as_ref()));
        }
        self.field("State", t.state.display());
        if format == Format::Short {
            self.field("LocalEndPoint", t.local_endpoint);
            self.field("RemoteEndPoint", t.remote_endpoint);
            self.field("OutboundPackets", t.outbound_packets);
            self.field("InboundPackets", t.inbound_packets);
            return;
        }
        self.field("Type", t.tunnel_type.display());
        self.field("Generation", t.generation);
        if dynamic {
            self.field(
                "ActivationMethod",
                na(t.activation.map(Activation::display)),
            );
            self.field("IKEVersion", na(t.ike_version.map(IkeVersion::display)));
            self.field("Role", na(t.role.map(Role::display)));
        }
        self.field("HowToEncap", t.how_to_encap.display());
        self.field("LocalEndPoint", t.local_endpoint);
        self.field("RemoteEndPoint", t.remote_endpoint);
        self.field("LocalAddressBase", na(t.local_address_base));
        self.field("LocalAddressPrefix", na(t.local_address_prefix));
        self.field("LocalAddressRange", na(t.local_address_range));
        self.field("RemoteAddressBase", na(t.remote_address_base));
        self.field("RemoteAddressPrefix", na(t.remote_address_prefix));
        self.field("RemoteAddressRange", na(t.remote_address_range));
        self.field("HowToAuth", na(t.how_to_auth.map(AuthProtocol::display)));
        self.field("AuthAlgorithm", na(t.auth_algorithm.as_ref()));
        self.field("AuthInboundSpi", na(t.auth_inbound_spi));
        self.field("AuthOutboundSpi", na(t.auth_outbound_spi));
        self.field("HowToEncrypt", na(t.how_to_encrypt.as_ref()));
        self.field("EncryptKeyLength", na(t.encrypt_key_length));
        self.field("EncryptInboundSpi", na(t.encrypt_inbound_spi));
        self.field("EncryptOutboundSpi", na(t.encrypt_outbound_spi));
        if dynamic {
            self.field("DiffieHellmanGroup", na(t.pfs_group));
        }
        self.field(
            "Protocol",
            t.protocol.map_or_else(|| "ALL(0)".to_owned(), proto_name),
        );
        self.field("LocalPort", t.local_port.unwrap_or(0));
        self.field("RemotePort", t.remote_port.unwrap_or(0));
        self.field("OutboundPackets", t.outbound_packets);
        self.field("OutboundBytes", t.outbound_bytes);
        self.field("InboundPackets", t.inbound_packets);
        self.field("InboundBytes", t.inbound_bytes);
        self.field("Lifesize", format!("{}K", t.lifesize.unwrap_or(0) / 1024));
        self.field(
            "LifesizeRefresh",
            format!("{}K", t.lifesize_refresh.unwrap_or(0) / 1024),
        );
        self.field("CurrentByteCount", format!("{}b", t.current_byte_count));
        self.field("LifetimeRefresh", na_time(t.lifetime_refresh));
        self.field("LifetimeExpires", na_time(t.lifetime_expires));
        if let Some(now) = current_time {
            self.field("CurrentTime", fmt_time(now));
        }
        if dynamic {
            self.field("VPNLifeExpires", na_time(t.vpn_life_expires));
        }
        self.field("CreateTime", na_time(t.create_time));
        if dynamic {
            self.nat_block(&t.nat, false);
        }
        self.field("FIPS140", yes(t.fips140));
    }

    /// One interface.
    pub fn interface(&mut self, i: &InterfaceRecord) {
        self.field("InterfaceName", &i.interface_name);
        self.field("InterfaceIndex", i.interface_index);
        if i.addresses.is_empty() {
            self.field("InterfaceAddress", "n/a");
        }
        for a in &i.addresses {
            self.field("InterfaceAddress", a);
        }
        self.field("State", if i.link_up { "Up" } else { "Down" });
        self.field("SecurityClass", i.security_class);
        self.field("DVIPA", yes(i.dvipa));
        self.field("FilterAttached", yes(i.filter_attached));
        self.sep();
    }

    /// One port translation.
    pub fn port_trans(&mut self, p: &PortTransRecord) {
        self.field("Protocol", proto_name(p.protocol));
        self.field("RemoteAddress", p.remote_address);
        self.field("OrigRmtConnPort", p.orig_rmt_conn_port);
        self.field("TranslatedRmtPort", p.translated_rmt_port);
        self.field("RmtUdpEncapPort", na(p.rmt_udp_encap_port));
        self.field("TunnelID", na(p.tunnel_id.as_ref()));
        self.field("CreateTime", na_time(p.create_time));
        self.sep();
    }

    /// One stack's NSS state (`-w`).
    pub fn ike_ns(&mut self, r: &IkeNsInfoRecord) {
        self.field("StackName", &r.stack_name);
        self.field("ClientName", na(r.client_name.as_ref()));
        self.field("ClientAPIVersion", na(r.client_api_version));
        self.field("ServerAPIVersion", na(r.server_api_version));
        self.field("NSServicesSupported", yes(r.ns_services_supported));
        self.field(
            "RemoteManagementSelected",
            yes(r.remote_management_selected),
        );
        self.field(
            "RemoteManagementEnabled",
            na_yes(r.remote_management_enabled),
        );
        self.field(
            "CertificateServicesSelected",
            yes(r.certificate_services_selected),
        );
        self.field(
            "CertificateServicesEnabled",
            na_yes(r.certificate_services_enabled),
        );
        self.field("NSClientIPAddress", na(r.ns_client_ip_address));
        self.field("NSClientPort", na(r.ns_client_port));
        self.field("NSServerIPAddress", na(r.ns_server_ip_address));
        self.field("NSServerPort", na(r.ns_server_port));
        self.field("NSServerSystemName", na(r.ns_server_system_name.as_ref()));
        self.field(
            "NSServerRole",
            na(r.ns_server_role.map(NssServerRole::display)),
        );
        self.field("UserID", na(r.user_id.as_ref()));
        self.field(
            "ConnectionState",
            na(r.connection_state.map(NssConnectionState::display)),
        );
        self.field(
            "TimeConnectedToNSServer",
            na_time(r.time_connected_to_ns_server),
        );
        self.field(
            "TimeOfLastMessageToNSServer",
            na_time(r.time_of_last_message_to_ns_server),
        );
        self.sep();
    }

    /// One NSS client (`-x`).
    pub fn client(&mut self, c: &ClientInfoRecord) {
        self.field("ClientName", &c.client_name);
        self.field("StackName", &c.stack_name);
        self.field("SystemName", &c.system_name);
        self.field("ClientIPAddress", c.client_ip_address);
        self.field("ClientPort", c.client_port);
        self.field("ServerIPAddress", c.server_ip_address);
        self.field("ServerPort", c.server_port);
        self.field("UserID", &c.user_id);
        self.field("ClientAPIVersion", na(c.client_api_version));
        self.field(
            "RemoteManagementSelected",
            yes(c.remote_management_selected),
        );
        self.field("RemoteManagementEnabled", yes(c.remote_management_enabled));
        self.field(
            "CertificateServicesSelected",
            yes(c.certificate_services_selected),
        );
        self.field(
            "CertificateServicesEnabled",
            yes(c.certificate_services_enabled),
        );
        self.field("ConnectState", c.connect_state.display());
        self.field("TimeConnected", fmt_time(c.time_connected));
        self.field(
            "TimeOfLastMessageFromClient",
            na_time(c.time_of_last_message_from_client),
        );
        self.sep();
    }

    /// Summary statistics.
    pub fn summary(&mut self, s: &Summary) {
        let t = &s.statistics;
        self.field("IKEDStartTime", fmt_time(s.since));
        self.field("P1Active", t.p1_active);
        self.field("P1InProgress", t.p1_in_progress);
        self.field("P1Expired", t.p1_expired);
        self.field("P1LclActSuccess", t.p1_lcl_act_success);
        self.field("P1RmtActSuccess", t.p1_rmt_act_success);
        self.field("P1LclActFailure", t.p1_lcl_act_failure);
        self.field("P1RmtActFailure", t.p1_rmt_act_failure);
        self.field("P1Retransmit", t.p1_retransmit);
        self.field("P2Active", t.p2_active);
        self.field("P2InProgress", t.p2_in_progress);
        self.field("P2Expired", t.p2_expired);
        self.field("P2LclActSuccess", t.p2_lcl_act_success);
        self.field("P2RmtActSuccess", t.p2_rmt_act_success);
        self.field("P2LclActFailure", t.p2_lcl_act_failure);
        self.field("P2RmtActFailure", t.p2_rmt_act_failure);
        self.field("P2Retransmit", t.p2_retransmit);
        self.field("InvalidMessages", t.invalid_messages);
        self.sep();
    }

    /// The `TestData:` line of a traffic test.
    pub fn test_data(&mut self, t: &TrafficTest) {
        let proto = match t.protocol {
            0 => "all".to_owned(),
            1 => "icmp".to_owned(),
            6 => "tcp".to_owned(),
            17 => "udp".to_owned(),
            58 => "icmpv6".to_owned(),
            89 => "ospf".to_owned(),
            n => n.to_string(),
        };
        let dir = match t.direction {
            Some(Direction::Inbound) => " in",
            Some(Direction::Outbound) => " out",
            None => "",
        };
        self.line(&format!(
            "TestData: {}  {}  {} {} {}{} {}",
            t.source,
            t.destination,
            proto,
            t.source_port,
            t.destination_port,
            dir,
            t.security_class
        ));
    }

    /// One tunnel control outcome.
    pub fn outcome(&mut self, o: &TunnelOutcome) {
        self.field("TunnelID", na(o.tunnel_id.as_ref()));
        self.field("Name", na(o.name.as_ref()));
        self.field(
            "Status",
            format!("{} ({})", o.status.display(), o.status.code()),
        );
        self.field("Message", na(o.message.as_ref()));
        self.sep();
    }

    /// A plain line.
    pub fn text(&mut self, s: &str) {
        self.line(s);
    }
}
