use super::*;
use crate::io::netns::run_in_netns;
use crate::io::netns::testing::{TestNetns, can_build_namespaces};

#[test]
fn interface_names() {
    for good in ["eth0", "a", "pstap-123456789"] {
        assert!(check_ifname(good).is_ok(), "{good}");
    }
    for bad in ["", "pstap-1234567890", "a/b", "a:b", "a b", ".", ".."] {
        assert!(check_ifname(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn ext_ack_text_is_found_after_the_capped_header() {
    // 16-byte echoed header, then NLMSGERR_ATTR_MSG "bad prefix\0" (padded).
    let mut echoed = vec![0u8; 16];
    echoed.extend_from_slice(&15u16.to_ne_bytes());
    echoed.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
    echoed.extend_from_slice(b"bad prefix\0\0");
    let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
    assert_eq!(
        ext_ack_message(flags, &echoed).as_deref(),
        Some("bad prefix")
    );
    assert_eq!(ext_ack_message(NLM_F_CAPPED, &echoed), None);
    assert_eq!(ext_ack_message(flags, &echoed[..18]), None);
}

/// Every operation against a TAP made by `ip tuntap` in a fresh netns;
/// `ip -j` is the oracle.
#[test]
fn link_address_and_route_operations() {
    if !can_build_namespaces("link_address_and_route_operations") {
        return;
    }
    let ns = TestNetns::new("nl");
    ns.ip(&["tuntap", "add", "mode", "tap", "name", "t0"]);
    let mac = MacAddr([0x02, 0, 0, 0, 0x0a, 0x01]);
    let index = run_in_netns(&ns.path, || {
        let mut nl = Rtnetlink::open().unwrap();
        let lo = nl.link_by_name("lo").unwrap();
        assert_eq!((lo.index, lo.up, lo.mac), (1, false, MacAddr::ZERO));
        let index = nl.link_index("t0").unwrap();
        nl.link_set_name(index, "pod0").unwrap();
        nl.link_set_mac(index, mac).unwrap();
        nl.link_set_mtu(index, 1400).unwrap();
        nl.link_set_up(index).unwrap();
        let link = nl.link_by_index(index).unwrap();
        assert_eq!(
            (link.name.as_str(), link.mac, link.mtu, link.up),
            ("pod0", mac, 1400, true)
        );
        assert_eq!(nl.link_mac(index).unwrap(), mac);

        let missing = nl.link_index("t0").unwrap_err();
        assert!(missing.is_no_such_link(), "{missing:?}");

        nl.addr_add_v4(index, Ipv4Addr::new(10, 9, 8, 7), 24)
            .unwrap();
        let dup = nl
            .addr_add_v4(index, Ipv4Addr::new(10, 9, 8, 7), 24)
            .unwrap_err();
        assert_eq!(dup.raw_os_error(), Some(libc::EEXIST), "{dup}");
        let ours = (Ipv4Addr::new(10, 9, 8, 7), 24);
        assert_eq!(nl.addrs_v4(index).unwrap(), vec![ours]);
        assert_eq!(nl.all_addrs_v4().unwrap(), vec![(index, ours.0, ours.1)]);
        let gw = Some(Ipv4Addr::new(10, 9, 8, 1));
        nl.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, gw, Some(index))
            .unwrap();
        nl.route_add_v4(Ipv4Addr::new(192, 0, 2, 0), 24, gw, Some(index))
            .unwrap();
        nl.route_add_v4(Ipv4Addr::new(172, 16, 0, 1), 32, None, Some(index))
            .unwrap();
        // A gateway that is not on-link is refused, with an ext-ack text.
        let off_link = Some(Ipv4Addr::new(172, 17, 0, 1));
        let err = nl
            .route_add_v4(Ipv4Addr::new(198, 51, 100, 0), 24, off_link, Some(index))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENETUNREACH), "{err}");
        assert!(
            matches!(
                &err,
                NetlinkError::Refused {
                    message: Some(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            nl.link_set_name(index, "a:b"),
            Err(NetlinkError::BadName(_))
        ));
        assert!(matches!(
            nl.addr_add_v4(index, Ipv4Addr::LOCALHOST, 33),
            Err(NetlinkError::BadPrefixLen(33))
        ));
        index
    })
    .unwrap();

    let routes = ns.ip_json(&["-4", "route", "show"]);
    let has_route = |dst: &str, gateway: Option<&str>| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == dst && r["dev"] == "pod0" && r["gateway"].as_str() == gateway)
    };
    assert!(has_route("default", Some("10.9.8.1")), "{routes}");
    assert!(has_route("192.0.2.0/24", Some("10.9.8.1")), "{routes}");
    assert!(has_route("172.16.0.1", None), "{routes}");
    let addrs = ns.ip(&["addr", "show", "dev", "pod0"]);
    assert!(addrs.contains("inet 10.9.8.7/24 brd 10.9.8.255"), "{addrs}");
    assert!(addrs.contains("link/ether 02:00:00:00:0a:01"), "{addrs}");

    run_in_netns(&ns.path, || {
        let mut nl = Rtnetlink::open().unwrap();
        nl.link_del(index).unwrap();
        assert!(nl.link_by_index(index).unwrap_err().is_no_such_link());
    })
    .unwrap();
}
