//! Host test: iked drives the eBPF IP filter of its stacks — the profile's
//! default set and the policy's filter set loaded and attached, dynamic
//! filters added and removed with the child SAs of a real IKEv2 negotiation
//! between two iked instances (SAs recorded, not installed: the host kernel
//! has no ESP), `ipsec -f default|reload` with real traffic, the traffic
//! test, the interface list, and the filter staying in force while iked is
//! dead.

#![expect(clippy::unwrap_used, reason = "test code: a failure is a test failure")]

mod common;

use common::{Iked, Ns, Pair, control, dyn_tunnels, tempdir, wait_for};
use gatekey_nmi::records::{
    Direction, FilterRecord, FilterSet, FilterType, Selection, TrafficTest, TunnelRef, TunnelStatus,
};
use gatekey_nmi::{Client, Request, Response, Target};

fn profile(me: &str, peer: &str) -> String {
    format!(
        "; the default filter policy: IKE and ESP with the peer, nothing else\n\
         IPSEC LOGENable\n\
         \x20 IPSECRule {me} {peer} PROTO UDP SRCPort 500 DESTport 500\n\
         \x20 IPSECRule {me} {peer} PROTO UDP SRCPort 4500 DESTport 4500\n\
         \x20 IPSECRule {me} {peer} PROTO 50\n\
         ENDIPSEC\n"
    )
}

fn policy(me: &str, peer: &str, mine: &str, theirs: &str, auto: bool) -> String {
    format!(
        r#"
KeyExchangeRule to-peer {{
  LocalSecurityEndpoint {{ Identity IpAddr {me} Location {me} }}
  RemoteSecurityEndpoint {{ Identity IpAddr {peer} Location {peer} }}
  KeyExchangeAction {{ KeyExchangeOffer {{ HowToEncrypt AES_GCM_16 KeyLength 256 DHGroup Group31 }} }}
  SharedKey Ascii "a long host test pre-shared key"
}}
IpDynVpnAction net-act {{ IpDataOffer {{ HowToEncrypt AES_GCM_16 KeyLength 256 }} }}
LocalDynVpnRule net {{
  IpSourceAddr {mine}
  IpDestAddr {theirs}
  LocalSecurityEndpoint {me}
  RemoteSecurityEndpoint {peer}
  IpDynVpnActionRef net-act
  AutoActivate {auto}
}}

IpFilterPolicy {{
  FilterLogging on
  IpFilterRuleRef ike
  IpFilterRuleRef ping
  IpFilterRuleRef tunnel
}}
IpFilterRule ike {{
  IpSourceAddr {me}
  IpDestAddr {peer}
  IpService {{ Protocol udp SourcePortRange 500 DestinationPortRange 500 }}
  IpService {{ Protocol udp SourcePortRange 4500 DestinationPortRange 4500 }}
  IpService {{ Protocol esp }}
  IpGenericFilterActionRef permit
}}
IpFilterRule ping {{
  IpSourceAddr {me}
  IpDestAddr {peer}
  IpService {{ Protocol icmp }}
  IpGenericFilterActionRef permit
}}
IpFilterRule tunnel {{
  IpSourceAddrSet {mine}
  IpDestAddrSet {theirs}
  IpService {{ Protocol all Routing either }}
  IpGenericFilterActionRef ipsec
  IpDynVpnActionRef net-act
}}
IpGenericFilterAction permit {{ IpFilterAction permit }}
IpGenericFilterAction ipsec {{ IpFilterAction ipsec }}
"#,
        auto = if auto { "Yes" } else { "No" }
    )
}

fn write_conf(dir: &std::path::Path, ns: &Ns, dev: &str, policy: &str, profile: &str) {
    std::fs::write(
        dir.join("iked.conf"),
        format!(
            "IkeConfig {{ SafDatabase iked.saf SystemName GWT }}\n\
             StackConfig {} {{ PolicyFile p.conf ProfileFile profile.conf Interface {dev} }}\n",
            ns.0
        ),
    )
    .unwrap();
    std::fs::write(dir.join("p.conf"), policy).unwrap();
    std::fs::write(dir.join("profile.conf"), profile).unwrap();
}

fn filters(
    c: &mut Client,
    t: &Target,
    req: fn(Selection) -> Request,
) -> (FilterSet, Vec<FilterRecord>) {
    match c
        .call(Some(t), &req(Selection::default()))
        .unwrap()
        .response
    {
        Response::Filters(l) => {
            assert_eq!(l.total_available as usize, l.records.len());
            (l.stack.filter_set, l.records)
        }
        other => panic!("{other:?}"),
    }
}

fn find<'a>(rs: &'a [FilterRecord], name: &str, dir: Direction) -> &'a FilterRecord {
    rs.iter()
        .find(|r| r.filter_name == name && r.direction == dir)
        .unwrap_or_else(|| panic!("no {name} {dir:?} filter in {rs:#?}"))
}

fn ping(ns: &Ns, to: &str) -> bool {
    ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "1", to]).0
}

fn set_filter(c: &mut Client, t: &Target, req: Request) -> (FilterSet, TunnelStatus) {
    match c.call(Some(t), &req).unwrap().response {
        Response::FilterSet(r) => (r.filter_set, r.status),
        other => panic!("{other:?}"),
    }
}

#[test]
fn iked_drives_the_ip_filter() {
    require_root!();
    let pair = Pair::new("flt");
    let (da, db) = (tempdir("flta"), tempdir("fltb"));
    write_conf(
        &da,
        &pair.0,
        "gka",
        &policy("192.0.2.1", "192.0.2.2", "10.1.0.0/24", "10.2.0.0/24", true),
        &profile("192.0.2.1", "192.0.2.2"),
    );
    write_conf(
        &db,
        &pair.1,
        "gkb",
        &policy(
            "192.0.2.2",
            "192.0.2.1",
            "10.2.0.0/24",
            "10.1.0.0/24",
            false,
        ),
        &profile("192.0.2.2", "192.0.2.1"),
    );
    let sun = Iked::start(&db, &["--kernel", "recording"]);
    let moon = Iked::start(&da, &["--kernel", "recording"]);
    let l = moon.wait_log("EZD0944I");
    assert!(
        l.contains("filter set default loaded") && l.contains("active set policy"),
        "{l}"
    );
    let (ta, tb) = (
        Target::new(&pair.0.0).unwrap(),
        Target::new(&pair.1.0).unwrap(),
    );
    let mut ca = Client::connect(da.join("ipsecmgmt")).unwrap();
    let mut cb = Client::connect(db.join("ipsecmgmt")).unwrap();

    // The tunnel comes up through the filters (IKE is permitted by `ike`).
    wait_for("moon's dynamic tunnel", || {
        dyn_tunnels(&mut ca, &ta).into_iter().next()
    });
    wait_for("sun's dynamic tunnel", || {
        dyn_tunnels(&mut cb, &tb).into_iter().next()
    });

    // The dynamic filters sit just before their anchor, with the tunnel's ID.
    let (set, rs) = filters(&mut ca, &ta, Request::GetIpFltCurr);
    assert_eq!(set, FilterSet::Policy);
    let names: Vec<(&str, FilterType, Direction)> = rs
        .iter()
        .map(|r| (r.filter_name.as_str(), r.filter_type, r.direction))
        .collect();
    let dyn_at = names
        .iter()
        .position(|n| n.1 == FilterType::Dynamic)
        .unwrap_or_else(|| panic!("no dynamic filter: {names:?}"));
    assert_eq!(
        &names[dyn_at..dyn_at + 4],
        &[
            ("tunnel", FilterType::Dynamic, Direction::Inbound),
            ("tunnel", FilterType::Dynamic, Direction::Outbound),
            ("tunnel", FilterType::DynamicAnchor, Direction::Inbound),
            ("tunnel", FilterType::DynamicAnchor, Direction::Outbound),
        ],
        "{names:?}"
    );
    let d = &rs[dyn_at + 1];
    assert_eq!(d.tunnel_id.as_deref(), Some("Y1"));
    assert_eq!(d.vpn_action_name.as_deref(), Some("net-act"));
    assert_eq!(d.source_address, Some("10.1.0.0".parse().unwrap()));
    assert_eq!(d.source_address_prefix, Some(24));
    assert_eq!(d.dest_address, Some("10.2.0.0".parse().unwrap()));
    // Inbound filters show the packet's view: the addresses swap.
    assert_eq!(rs[dyn_at].source_address, Some("10.2.0.0".parse().unwrap()));
    assert_eq!(rs[dyn_at + 2].on_demand, Some(true));
    // IKE passed the filter and was counted.
    let ike_in = rs
        .iter()
        .filter(|r| r.filter_name == "ike" && r.direction == Direction::Inbound)
        .map(|r| r.matched_packets)
        .sum::<u64>();
    assert!(ike_in >= 2, "{rs:#?}");
    assert_eq!(
        rs.last().map(|r| r.filter_name.as_str()),
        Some("SYSDEFAULTDENYRULE")
    );

    // Pings pass the policy set and are counted on `ping`.
    assert!(ping(&pair.0, "192.0.2.2"));
    let (_, rs) = filters(&mut ca, &ta, Request::GetIpFltCurr);
    assert_eq!(find(&rs, "ping", Direction::Outbound).matched_packets, 3);
    assert_eq!(find(&rs, "ping", Direction::Inbound).matched_packets, 3);

    // The traffic test names the deciding filter first.
    let test = |c: &mut Client, proto: u8, sport: u16, dport: u16| match c
        .call(
            Some(&ta),
            &Request::TrafficTest(TrafficTest {
                source: "192.0.2.1".parse().unwrap(),
                destination: "192.0.2.2".parse().unwrap(),
                protocol: proto,
                source_port: sport,
                destination_port: dport,
                direction: Some(Direction::Outbound),
                security_class: 0,
            }),
        )
        .unwrap()
        .response
    {
        Response::TrafficTest(t) => t.records,
        other => panic!("{other:?}"),
    };
    let t = test(&mut ca, 1, 8, 0);
    assert_eq!(t[0].filter_name, "ping", "{t:#?}");
    let t = test(&mut ca, 6, 40000, 22);
    assert_eq!(t.len(), 1, "{t:#?}");
    assert_eq!(t[0].filter_name, "SYSDEFAULTDENYRULE");
    let bad = ca
        .call(
            Some(&ta),
            &Request::TrafficTest(TrafficTest {
                source: "192.0.2.1".parse().unwrap(),
                destination: "2001:db8::1".parse().unwrap(),
                protocol: 6,
                source_port: 0,
                destination_port: 0,
                direction: None,
                security_class: 0,
            }),
        )
        .unwrap_err();
    assert!(format!("{bad:?}").contains("GkRsnBadParameter"), "{bad:?}");

    // The interfaces: the filter is on gka, not on loopback.
    match ca
        .call(Some(&ta), &Request::GetIpInterfaces)
        .unwrap()
        .response
    {
        Response::Interfaces(l) => {
            let gka = l
                .records
                .iter()
                .find(|i| i.interface_name == "gka")
                .unwrap();
            assert!(gka.filter_attached && gka.link_up);
            assert!(gka.addresses.contains(&"192.0.2.1".parse().unwrap()));
            let lo = l.records.iter().find(|i| i.interface_name == "lo").unwrap();
            assert!(!lo.filter_attached);
        }
        other => panic!("{other:?}"),
    }

    // `ipsec -f default`: the profile has no rule for pings; they are dropped
    // and counted on the implicit deny. The switch is in the marker file.
    assert_eq!(
        set_filter(&mut ca, &ta, Request::SetIpFltDefault),
        (FilterSet::Default, TunnelStatus::StateUpdated)
    );
    assert_eq!(
        set_filter(&mut ca, &ta, Request::SetIpFltDefault),
        (FilterSet::Default, TunnelStatus::StateAlreadySet)
    );
    let marker = format!("/run/gatekey/{}/filter-set", pair.0.0);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "default");
    assert!(!ping(&pair.0, "192.0.2.2"));
    let (set, rs) = filters(&mut ca, &ta, Request::GetIpFltCurr);
    assert_eq!(set, FilterSet::Default);
    assert_eq!(rs[0].filter_name, "SYSDEFAULTRULE.1");
    assert!(find(&rs, "SYSDEFAULTDENYRULE", Direction::Outbound).matched_packets >= 3);
    // The policy set is still there to look at.
    let (_, pol) = filters(&mut ca, &ta, Request::GetIpFltPolicy);
    assert!(pol.iter().any(|r| r.filter_type == FilterType::Dynamic));
    let (_, prof) = filters(&mut ca, &ta, Request::GetIpFltDefault);
    assert_eq!(prof, rs);

    // kill -9: the filter stays (fail closed); a restart keeps `default`.
    drop(ca);
    moon.kill9();
    assert!(!ping(&pair.0, "192.0.2.2"));
    let moon = Iked::start(&da, &["--kernel", "recording"]);
    let l = moon.wait_log("EZD0944I");
    assert!(l.contains("active set default"), "{l}");
    let mut ca = Client::connect(da.join("ipsecmgmt")).unwrap();
    assert!(!ping(&pair.0, "192.0.2.2"));
    // `ipsec -f reload`: the policy set again.
    assert_eq!(
        set_filter(&mut ca, &ta, Request::SetIpFltPolicy),
        (FilterSet::Policy, TunnelStatus::StateUpdated)
    );
    assert!(ping(&pair.0, "192.0.2.2"));

    // The restarted iked's tunnel gets its dynamic filter; deactivating the
    // tunnel removes it with the SAs.
    wait_for("the dynamic filter of the new tunnel", || {
        let (_, rs) = filters(&mut ca, &ta, Request::GetIpFltPolicy);
        rs.iter()
            .any(|r| r.filter_type == FilterType::Dynamic)
            .then_some(())
    });
    let r = control(
        &mut ca,
        &ta,
        Request::DeactIpTunDyn,
        TunnelRef {
            name: Some("net".into()),
            ..TunnelRef::default()
        },
    );
    assert_eq!(r, TunnelStatus::StateUpdated);
    wait_for("the dynamic filter removed", || {
        let (_, rs) = filters(&mut ca, &ta, Request::GetIpFltPolicy);
        (!rs.iter().any(|r| r.filter_type == FilterType::Dynamic)).then_some(())
    });
    assert!(dyn_tunnels(&mut ca, &ta).is_empty());
    let l = moon.log();
    assert!(l.contains("EZD0948I") && l.contains("removed"), "{l}");
    drop((moon, sun));
}
