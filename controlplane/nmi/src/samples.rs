//! Realistic example records and a response for every request type (feature `samples`): for
//! round-trip tests, fuzz seeds, the `ipsec` golden tests, and fake servers. Not for production.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::message::{Request, Response};
use crate::records::*;

/// 2024-03-01 12:00:00 UTC.
pub const T0: u64 = 1_709_294_400;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// The INIT body of an iked.
pub fn server_info() -> ServerInfo {
    ServerInfo {
        server: ServerKind::Iked,
        software_version: "0.1.0".into(),
        system_name: "GW1".into(),
        min_version: 1,
        max_version: 2,
    }
}

/// A stack on the policy filter set.
pub fn stack() -> StackRecord {
    StackRecord {
        stack_name: "default".into(),
        ip_security: true,
        ipv6_security: true,
        dvipsec: false,
        logging: true,
        log_implicit: false,
        predecap: false,
        filter_set: FilterSet::Policy,
        policy_available: true,
        fips140: false,
        nat_keepalive: 20,
        ike_listening: true,
    }
}

/// Three filters: a dynamic filter for Y1, its anchor, and the final deny.
pub fn filters() -> Vec<FilterRecord> {
    let mut dynf = FilterRecord::new("gw-gw", FilterAction::Ipsec, Direction::Outbound);
    dynf.filter_name_extension = Some("1".into());
    dynf.vpn_action_name = Some("esp-gcm".into());
    dynf.local_start_action_name = Some("start-gw".into());
    dynf.tunnel_id = Some("Y1".into());
    dynf.filter_type = FilterType::Dynamic;
    dynf.scope = Scope::Routed;
    dynf.on_demand = Some(false);
    dynf.logging = Logging::All;
    dynf.source_address = Some(v4(10, 1, 0, 0));
    dynf.source_address_prefix = Some(16);
    dynf.source_address_granularity = Some(Granularity::Rule);
    dynf.dest_address = Some(v4(10, 2, 0, 0));
    dynf.dest_address_prefix = Some(16);
    dynf.dest_address_granularity = Some(Granularity::Rule);
    dynf.create_time = Some(T0 + 60);
    dynf.update_time = Some(T0 + 60);
    dynf.matched_packets = 1234;
    dynf.matched_bytes = Some(104_890);
    let mut anchor = FilterRecord::new("gw-gw", FilterAction::Ipsec, Direction::Outbound);
    anchor.filter_name_extension = Some("1".into());
    anchor.vpn_action_name = Some("esp-gcm".into());
    anchor.filter_type = FilterType::DynamicAnchor;
    anchor.scope = Scope::Routed;
    anchor.on_demand = Some(true);
    anchor.source_address = Some(v4(10, 1, 0, 0));
    anchor.source_address_prefix = Some(16);
    anchor.dest_address = Some(v4(10, 2, 0, 0));
    anchor.dest_address_prefix = Some(16);
    anchor.create_time = Some(T0);
    anchor.update_time = Some(T0);
    anchor.matched_packets = 1;
    let mut deny = FilterRecord::new("SYSDEFAULTDENYRULE", FilterAction::Deny, Direction::Inbound);
    deny.scope = Scope::Either;
    deny.logging = Logging::Deny;
    deny.discard_action = Some(DiscardAction::Silent);
    deny.ipv6 = true;
    deny.source_address = Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    deny.source_address_prefix = Some(0);
    deny.matched_packets = 17;
    deny.matched_bytes = Some(1_480);
    vec![dynf, anchor, deny]
}

/// The NAT topology of a tunnel behind a NAPT.
pub fn nat() -> NatTopology {
    NatTopology {
        udp_encap_mode: true,
        nat_allowed: true,
        lcl_nat_detected: false,
        rmt_nat_detected: true,
        rmt_napt_detected: true,
        rmt_is_gw: Some(true),
        rmt_udp_encap_port: Some(4500),
        src_nat_oa_rcvd: None,
        dst_nat_oa_rcvd: None,
    }
}

/// An established IKEv2 SA.
pub fn ike_tunnel() -> IkeTunnelRecord {
    IkeTunnelRecord {
        tunnel_id: "K1".into(),
        generation: 2,
        ike_version: IkeVersion::V2,
        exchange_mode: None,
        key_exchange_rule_name: Some("gw1-gw2".into()),
        key_exchange_action_name: Some("ikev2-rsa".into()),
        local_endpoint: v4(192, 0, 2, 1),
        local_port: 4500,
        local_id_type: Some(IdType::DerAsn1Dn),
        local_id: Some("CN=gw1,O=Example".into()),
        remote_endpoint: v4(198, 51, 100, 7),
        remote_port: 4500,
        remote_id_type: Some(IdType::KeyId),
        remote_id: Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into()),
        state: IkeState::Done,
        role: Role::Initiator,
        authentication_algorithm: None,
        encryption_algorithm: Some("AES_GCM_16".into()),
        key_length: Some(256),
        pseudo_random_function: Some("HMAC_SHA2_256".into()),
        diffie_hellman_group: Some(31),
        local_authentication_method: Some("RsaSignature".into()),
        remote_authentication_method: Some("RsaSignature".into()),
        certificate_service: Some(CertService::Nss),
        initiator_spi: 0x0123_4567_89ab_cdef,
        responder_spi: 0xfedc_ba98_7654_3210,
        lifesize: None,
        current_byte_count: Some(208_000),
        lifetime: Some(28_800),
        lifetime_refresh: Some(T0 + 25_000),
        lifetime_expires: Some(T0 + 28_800),
        reauth_interval: None,
        reauth_time: None,
        refresh_overlap_percent: None,
        create_time: Some(T0),
        associated_dynamic_tunnels: 1,
        nat: nat(),
        can_init_p1: true,
        fips140: false,
        ipv6: false,
    }
}

/// The same SA negotiated with IKEv1 main mode.
pub fn ike_tunnel_v1() -> IkeTunnelRecord {
    IkeTunnelRecord {
        tunnel_id: "K2".into(),
        generation: 1,
        ike_version: IkeVersion::V1,
        exchange_mode: Some(ExchangeMode::Main),
        local_id_type: Some(IdType::Ipv4Addr),
        local_id: Some("192.0.2.1".into()),
        remote_endpoint: v4(203, 0, 113, 9),
        remote_id_type: Some(IdType::Ipv4Addr),
        remote_id: Some("203.0.113.9".into()),
        local_port: 500,
        remote_port: 500,
        role: Role::Responder,
        authentication_algorithm: Some("HMAC_SHA2_256_128".into()),
        encryption_algorithm: Some("AES_CBC".into()),
        key_length: Some(128),
        pseudo_random_function: None,
        diffie_hellman_group: Some(14),
        local_authentication_method: Some("PresharedKey".into()),
        remote_authentication_method: Some("PresharedKey".into()),
        certificate_service: None,
        nat: NatTopology::default(),
        refresh_overlap_percent: Some(10),
        associated_dynamic_tunnels: 0,
        ..ike_tunnel()
    }
}

/// An active dynamic tunnel with counters.
pub fn dyn_tunnel() -> IpTunnelRecord {
    IpTunnelRecord {
        tunnel_id: "Y1".into(),
        tunnel_type: IpTunnelType::Dynamic,
        generation: 3,
        parent_ike_tunnel_id: Some("K1".into()),
        vpn_action_name: Some("esp-gcm".into()),
        local_dyn_vpn_rule: Some("gw1-subnets".into()),
        state: SaState::Active,
        activation: Some(Activation::Auto),
        ike_version: Some(IkeVersion::V2),
        role: Some(Role::Initiator),
        how_to_encap: Encap::Tunnel,
        local_endpoint: v4(192, 0, 2, 1),
        remote_endpoint: v4(198, 51, 100, 7),
        local_address_base: Some(v4(10, 1, 0, 0)),
        local_address_prefix: Some(16),
        local_address_range: None,
        remote_address_base: Some(v4(10, 2, 0, 0)),
        remote_address_prefix: Some(16),
        remote_address_range: None,
        how_to_auth: Some(AuthProtocol::Esp),
        auth_algorithm: None,
        auth_inbound_spi: None,
        auth_outbound_spi: None,
        how_to_encrypt: Some("AES_GCM_16".into()),
        encrypt_key_length: Some(256),
        encrypt_inbound_spi: Some(3_405_691_582),
        encrypt_outbound_spi: Some(195_936_478),
        pfs_group: Some(31),
        protocol: None,
        local_port: None,
        remote_port: None,
        outbound_packets: 1234,
        outbound_bytes: 104_890,
        inbound_packets: 1230,
        inbound_bytes: 103_320,
        lifesize: None,
        lifesize_refresh: None,
        current_byte_count: 208_210,
        lifetime_refresh: Some(T0 + 3_000),
        lifetime_expires: Some(T0 + 3_600),
        vpn_life_expires: Some(T0 + 86_400),
        create_time: Some(T0 + 60),
        nat: NatTopology {
            nat_allowed: false,
            ..nat()
        },
        fips140: false,
        ipv6: false,
    }
}

/// An active manual tunnel.
pub fn manual_tunnel() -> IpTunnelRecord {
    IpTunnelRecord {
        tunnel_id: "M1".into(),
        tunnel_type: IpTunnelType::Manual,
        generation: 1,
        parent_ike_tunnel_id: None,
        vpn_action_name: Some("man-ah".into()),
        local_dyn_vpn_rule: None,
        activation: None,
        ike_version: None,
        role: None,
        how_to_encap: Encap::Transport,
        how_to_auth: Some(AuthProtocol::Ah),
        auth_algorithm: Some("HMAC_SHA2_256_128".into()),
        auth_inbound_spi: Some(4096),
        auth_outbound_spi: Some(4097),
        how_to_encrypt: Some("DoNot".into()),
        encrypt_key_length: None,
        encrypt_inbound_spi: None,
        encrypt_outbound_spi: None,
        pfs_group: None,
        protocol: Some(6),
        local_port: Some(0),
        remote_port: Some(179),
        vpn_life_expires: None,
        lifetime_refresh: None,
        lifetime_expires: None,
        nat: NatTopology::default(),
        ..dyn_tunnel()
    }
}

/// One interface.
pub fn interface() -> InterfaceRecord {
    InterfaceRecord {
        interface_name: "eth0".into(),
        interface_index: 2,
        addresses: vec![
            v4(192, 0, 2, 1),
            "2001:db8::1".parse().unwrap_or(v4(0, 0, 0, 0)),
        ],
        security_class: 0,
        dvipa: false,
        link_up: true,
        filter_attached: true,
    }
}

/// One port translation.
pub fn port_trans() -> PortTransRecord {
    PortTransRecord {
        protocol: 17,
        remote_address: v4(198, 51, 100, 7),
        orig_rmt_conn_port: 5060,
        translated_rmt_port: 1025,
        rmt_udp_encap_port: Some(4500),
        tunnel_id: Some("Y1".into()),
        create_time: Some(T0 + 60),
    }
}

/// Two stacks: one NSS client, one not.
pub fn ike_ns_info() -> IkeNsInfoList {
    IkeNsInfoList {
        system_name: "GW1".into(),
        total_available: 2,
        records: vec![
            IkeNsInfoRecord {
                stack_name: "default".into(),
                client_name: Some("GW1_default".into()),
                client_api_version: Some(1),
                server_api_version: Some(1),
                ns_services_supported: true,
                remote_management_selected: true,
                remote_management_enabled: Some(true),
                certificate_services_selected: true,
                certificate_services_enabled: Some(true),
                ns_client_ip_address: Some(v4(192, 0, 2, 1)),
                ns_client_port: Some(50_008),
                ns_server_ip_address: Some(v4(192, 0, 2, 99)),
                ns_server_port: Some(4159),
                ns_server_system_name: Some("NSS1".into()),
                ns_server_role: Some(NssServerRole::Primary),
                user_id: Some("gw1".into()),
                connection_state: Some(NssConnectionState::Connected),
                time_connected_to_ns_server: Some(T0 + 5),
                time_of_last_message_to_ns_server: Some(T0 + 65),
            },
            IkeNsInfoRecord {
                stack_name: "lab".into(),
                client_name: None,
                client_api_version: None,
                server_api_version: None,
                ns_services_supported: false,
                remote_management_selected: false,
                remote_management_enabled: None,
                certificate_services_selected: false,
                certificate_services_enabled: None,
                ns_client_ip_address: None,
                ns_client_port: None,
                ns_server_ip_address: None,
                ns_server_port: None,
                ns_server_system_name: None,
                ns_server_role: None,
                user_id: None,
                connection_state: None,
                time_connected_to_ns_server: None,
                time_of_last_message_to_ns_server: None,
            },
        ],
    }
}

/// One connected client as nssd sees it.
pub fn client_info() -> ClientInfoList {
    ClientInfoList {
        system_name: "NSS1".into(),
        total_available: 1,
        records: vec![ClientInfoRecord {
            client_name: "GW1_default".into(),
            stack_name: "default".into(),
            system_name: "GW1".into(),
            client_ip_address: v4(192, 0, 2, 1),
            client_port: 50_008,
            server_ip_address: v4(192, 0, 2, 99),
            server_port: 4159,
            user_id: "gw1".into(),
            client_api_version: Some(1),
            remote_management_selected: true,
            remote_management_enabled: true,
            certificate_services_selected: true,
            certificate_services_enabled: true,
            connect_state: ClientConnectState::Connected,
            time_connected: T0 + 5,
            time_of_last_message_from_client: Some(T0 + 65),
        }],
    }
}

/// Summary statistics.
pub fn summary() -> Summary {
    Summary {
        since: T0 - 3_600,
        statistics: SummaryRecord {
            p1_active: 1,
            p1_in_progress: 0,
            p1_expired: 1,
            p1_lcl_act_success: 3,
            p1_rmt_act_success: 2,
            p1_lcl_act_failure: 1,
            p1_rmt_act_failure: 0,
            p1_retransmit: 4,
            p2_active: 1,
            p2_in_progress: 0,
            p2_expired: 2,
            p2_lcl_act_success: 5,
            p2_rmt_act_success: 1,
            p2_lcl_act_failure: 0,
            p2_rmt_act_failure: 0,
            p2_retransmit: 0,
            invalid_messages: 7,
        },
    }
}

/// The traffic test `10.1.1.1 10.2.2.2 tcp 0 22 out 0`.
pub fn traffic_test() -> TrafficTest {
    TrafficTest {
        source: v4(10, 1, 1, 1),
        destination: v4(10, 2, 2, 2),
        protocol: 6,
        source_port: 0,
        destination_port: 22,
        direction: Some(Direction::Outbound),
        security_class: 0,
    }
}

/// A control request naming a tunnel by ID and one by name.
pub fn tunnel_control() -> TunnelControl {
    TunnelControl {
        tunnels: vec![
            TunnelRef {
                tunnel_id: Some("Y1".into()),
                ..TunnelRef::default()
            },
            TunnelRef {
                name: Some("gw1-subnets".into()),
                ..TunnelRef::default()
            },
        ],
    }
}

/// A selection with every field set.
pub fn selection() -> Selection {
    Selection {
        tunnel_id: Some("Y1".into()),
        name: Some("gw1-subnets".into()),
        all_sas: true,
    }
}

/// One request of every type.
pub fn requests() -> Vec<Request> {
    let c = tunnel_control;
    vec![
        Request::GetStackInfo,
        Request::GetIkeTun(Selection::default()),
        Request::GetIkeTunCascade(selection()),
        Request::GetIpTunDynIke(selection()),
        Request::GetIpTunDynStack(Selection::default()),
        Request::GetIpTunManual(selection()),
        Request::GetIpFltCurr(Selection::default()),
        Request::GetIpFltDefault(selection()),
        Request::GetIpFltPolicy(selection()),
        Request::GetIpInterfaces,
        Request::GetPortTrans,
        Request::GetIkeNsInfo,
        Request::GetClientInfo,
        Request::GetSummary,
        Request::TrafficTest(traffic_test()),
        Request::SetIpFltDefault,
        Request::SetIpFltPolicy,
        Request::ActIpTunManual(c()),
        Request::DeactIpTunManual(c()),
        Request::ActIpTunDyn(c()),
        Request::DeactIpTunDyn(c()),
        Request::RefreshIpTunDyn(c()),
        Request::DeactIkeTun(c()),
        Request::RefreshIkeTun(c()),
        Request::ActIkeTun(TunnelControl {
            tunnels: vec![TunnelRef {
                remote_id: Some("gw2.example".into()),
                remote_address: Some(v4(198, 51, 100, 7)),
                ..TunnelRef::default()
            }],
        }),
        Request::RefreshConfig,
    ]
}

/// A plausible successful response to `request`.
pub fn response_for(request: &Request) -> Response {
    match request {
        Request::GetStackInfo => Response::StackInfo(StackInfoList {
            total_available: 1,
            records: vec![stack()],
        }),
        Request::GetIkeTun(_) => Response::IkeTunnels(IkeTunnelList {
            total_available: 2,
            truncated: false,
            records: vec![ike_tunnel(), ike_tunnel_v1()],
        }),
        Request::GetIkeTunCascade(_) => Response::IkeTunnelCascade(IkeTunnelCascadeList {
            total_available: 2,
            truncated: false,
            records: vec![
                IkeTunnelCascade {
                    ike_tunnel: ike_tunnel(),
                    dynamic_tunnels: vec![dyn_tunnel()],
                },
                IkeTunnelCascade {
                    ike_tunnel: ike_tunnel_v1(),
                    dynamic_tunnels: vec![],
                },
            ],
        }),
        Request::GetIpTunDynIke(_) | Request::GetIpTunDynStack(_) => {
            Response::IpTunnels(IpTunnelList {
                source: if matches!(request, Request::GetIpTunDynIke(_)) {
                    TunnelSource::Iked
                } else {
                    TunnelSource::Stack
                },
                current_time: T0 + 120,
                total_available: 1,
                truncated: false,
                records: vec![dyn_tunnel()],
            })
        }
        Request::GetIpTunManual(_) => Response::IpTunnels(IpTunnelList {
            source: TunnelSource::Stack,
            current_time: T0 + 120,
            total_available: 1,
            truncated: false,
            records: vec![manual_tunnel()],
        }),
        Request::GetIpFltCurr(_) | Request::GetIpFltDefault(_) | Request::GetIpFltPolicy(_) => {
            Response::Filters(FilterList {
                stack: stack(),
                set: match request {
                    Request::GetIpFltDefault(_) => FilterScope::Default,
                    Request::GetIpFltPolicy(_) => FilterScope::Policy,
                    _ => FilterScope::Current,
                },
                total_available: 3,
                truncated: false,
                records: filters(),
            })
        }
        Request::GetIpInterfaces => Response::Interfaces(InterfaceList {
            total_available: 1,
            records: vec![interface()],
        }),
        Request::GetPortTrans => Response::PortTrans(PortTransList {
            total_available: 1,
            records: vec![port_trans()],
        }),
        Request::GetIkeNsInfo => Response::IkeNsInfo(ike_ns_info()),
        Request::GetClientInfo => Response::ClientInfo(client_info()),
        Request::GetSummary => Response::Summary(summary()),
        Request::TrafficTest(t) => Response::TrafficTest(TrafficTestResult {
            stack: stack(),
            test: t.clone(),
            total_available: 3,
            records: filters().into_iter().take(1).collect(),
        }),
        Request::SetIpFltDefault => Response::FilterSet(FilterSetResult {
            filter_set: FilterSet::Default,
            status: TunnelStatus::StateUpdated,
        }),
        Request::SetIpFltPolicy => Response::FilterSet(FilterSetResult {
            filter_set: FilterSet::Policy,
            status: TunnelStatus::StateAlreadySet,
        }),
        Request::ActIpTunManual(c)
        | Request::DeactIpTunManual(c)
        | Request::ActIpTunDyn(c)
        | Request::DeactIpTunDyn(c)
        | Request::RefreshIpTunDyn(c)
        | Request::DeactIkeTun(c)
        | Request::RefreshIkeTun(c)
        | Request::ActIkeTun(c) => Response::TunnelControl(TunnelControlResult {
            tunnels: c
                .tunnels
                .iter()
                .enumerate()
                .map(|(i, t)| TunnelOutcome {
                    name: t.name.clone(),
                    tunnel_id: t.tunnel_id.clone(),
                    status: if i == 0 {
                        TunnelStatus::StateUpdated
                    } else {
                        TunnelStatus::NotFound
                    },
                    message: (i != 0).then(|| "no LocalDynVpnRule of that name".to_owned()),
                })
                .collect(),
        }),
        Request::RefreshConfig => Response::ConfigRefresh(ConfigRefreshResult {
            server: ServerKind::Iked,
            config_file: "/etc/security/iked.conf".into(),
            refreshed_at: T0 + 60,
            changes: vec!["stack red added".into(), "stack default changed".into()],
        }),
    }
}
