use super::*;

fn uplink() -> UplinkInterface {
    UplinkInterface {
        name: "eth0".into(),
        address: "192.168.50.2/24".parse().unwrap(),
        mac: "52:54:00:12:34:56".parse().unwrap(),
    }
}

fn cluster() -> Completion {
    Completion {
        node_name: Some("node-a".into()),
        pod_cidr: Some("10.244.1.0/24".parse().unwrap()),
        uplink: Some(uplink()),
    }
}

fn table(text: &str) -> Table {
    text.parse().unwrap()
}

#[test]
fn an_empty_file_is_completed_from_the_node_and_the_interface() {
    let config = complete(Table::new(), &cluster()).unwrap();
    assert_eq!(config.node.name, "node-a");
    assert_eq!(config.bridge.gateway, "10.244.1.1/24".parse().unwrap());
    assert_eq!(
        config.bridge.gateway_mac,
        "02:00:0a:f4:01:01".parse().unwrap()
    );
    let up = config.uplink.as_ref().unwrap();
    assert_eq!(up.port, "eth0");
    assert_eq!(up.address, "192.168.50.2/24".parse().unwrap());
    assert_eq!(up.mac, "52:54:00:12:34:56".parse().unwrap());
    assert!(up.shared, "the node's NIC keeps its address");
    assert_eq!(config.ports.len(), 2);
    assert_eq!(config.ports[0].name, "eth0");
    assert_eq!(config.ports[0].ifname.as_deref(), Some("eth0"));
    assert_eq!(
        config.ports[0].kind,
        podswitch_dataplane::config::PortKind::Afpacket
    );
    assert_eq!(config.ports[1].name, HOST_IFNAME);
    assert_eq!(
        config.ports[1].kind,
        podswitch_dataplane::config::PortKind::Tap
    );
    assert_eq!(
        config.host.as_ref().map(|h| h.port.as_str()),
        Some(HOST_IFNAME)
    );
    let snapshot = podswitch_dataplane::config::Snapshot::build(&config, 1).expect("a usable node");
    let host = snapshot.host.expect("host access");
    assert_eq!(host.address, Ipv4Addr::new(10, 244, 1, 0));
}

#[test]
fn the_files_cluster_wide_settings_stay_and_its_sections_win() {
    let file = "[node]\nname = \"custom\"\n[nat]\ncluster_cidrs = [\"10.244.0.0/16\"]\n\
                [[ports]]\nname = \"eth0\"\nkind = \"afpacket\"\nifname = \"eth0\"\nrx_ring = true\n";
    let config = complete(table(file), &cluster()).unwrap();
    assert_eq!(config.node.name, "custom", "[node] name stays");
    assert_eq!(
        config.nat.cluster_cidrs,
        vec!["10.244.0.0/16".parse().unwrap()]
    );
    let named = |name: &str| config.ports.iter().filter(|p| p.name == name).count();
    assert_eq!(
        (named("eth0"), config.ports.len()),
        (1, 2),
        "the file's port of that name is used (and the host's port added)"
    );
    assert_eq!(config.ports[0].rx_ring, Some(true));

    let own = "[bridge]\ngateway = \"10.9.0.1/16\"\ngateway_mac = \"02:00:00:00:00:01\"\n";
    let config = complete(table(own), &cluster()).unwrap();
    assert_eq!(config.bridge.gateway, "10.9.0.1/16".parse().unwrap());
}

#[test]
fn a_pod_cidr_without_room_for_pods_is_refused_naming_it() {
    let completion = Completion {
        pod_cidr: Some("10.244.1.4/31".parse().unwrap()),
        ..Completion::default()
    };
    let err = complete(Table::new(), &completion).unwrap_err().to_string();
    assert!(err.contains("spec.podCIDR = 10.244.1.4/31"), "{err}");
}

#[test]
fn without_a_pod_cidr_the_bridge_is_still_required() {
    let err = complete(Table::new(), &Completion::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bridge"), "{err}");
}

#[test]
fn the_uplink_is_the_interface_with_the_internal_ip() {
    let ip = Ipv4Addr::new(192, 168, 50, 2);
    let addresses = [
        (1, Ipv4Addr::LOCALHOST, 8),
        (2, Ipv4Addr::new(10, 0, 0, 5), 16),
        (3, Ipv4Addr::new(192, 168, 60, 9), 24),
        (3, ip, 24),
    ];
    let want = |i, addr: &str| Ok((i, addr.parse::<Ipv4Cidr>().unwrap()));
    assert_eq!(
        choose_uplink(&addresses, None, Some(ip)),
        want(3, "192.168.50.2/24")
    );
    // A named interface: its InternalIP when it has it, else its first address.
    assert_eq!(
        choose_uplink(&addresses, Some(3), Some(ip)),
        want(3, "192.168.50.2/24")
    );
    assert_eq!(
        choose_uplink(&addresses, Some(2), Some(ip)),
        want(2, "10.0.0.5/16")
    );
    assert_eq!(
        choose_uplink(&addresses, Some(3), None),
        want(3, "192.168.60.9/24")
    );
    let none = choose_uplink(&addresses, Some(4), Some(ip)).unwrap_err();
    assert!(none.contains("no IPv4 address"), "{none}");
    let elsewhere = choose_uplink(&addresses, None, Some(Ipv4Addr::new(192, 0, 2, 1))).unwrap_err();
    assert!(
        elsewhere.contains("InternalIP 192.0.2.1") && elsewhere.contains("--uplink"),
        "{elsewhere}"
    );
}
