//! The ICMP errors podswitch itself sends about a translated packet (time
//! exceeded, fragmentation needed) quote it as its sender sent it, so the
//! sender can match them (path MTU discovery to a service).

use super::*;

/// `frame` with its IPv4 TTL set to `ttl` (header checksum fixed).
fn with_ttl(mut frame: Vec<u8>, ttl: u8) -> Vec<u8> {
    let mut ip = crate::wire::Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
    ip.set_ttl(ttl);
    ip.fill_checksum();
    frame
}

#[test]
fn time_exceeded_about_a_service_packet_quotes_the_cluster_ip() {
    let mut n = Node::new();
    // A new connection's first packet, with TTL 1.
    let syn = with_ttl(to_web(CLIENT, 100, Flags::Syn, b""), 1);
    let err = n.through(A, syn, A);
    assert_eq!(err.icmp, Some((11, 0)));
    assert_eq!((err.src.0, err.dst.0, err.dst_mac), (GW, IP_A, MAC_A));
    assert_eq!(err.inner, Some((CLIENT, (WEB, 80))));
    // An established one's, both ways.
    let client = (IP_A, 40001);
    handshake(&mut n, client);
    let data = with_ttl(to_web(client, 101, Flags::Ack(501), b"x"), 1);
    let err = n.through(A, data, A);
    assert_eq!(err.inner, Some((client, (WEB, 80))));
    // The endpoint answering through the gateway gets its own packet quoted.
    let reply = tcp(
        (MAC_B, GW_MAC),
        (IP_B, 8080),
        client,
        501,
        Flags::Ack(102),
        b"y",
    );
    let err = n.through(B, with_ttl(reply, 1), B);
    assert_eq!((err.dst.0, err.icmp), (IP_B, Some((11, 0))));
    assert_eq!(err.inner, Some(((IP_B, 8080), client)));
}

#[test]
fn time_exceeded_about_a_masqueraded_packet_quotes_the_pod() {
    let mut n = Node::new();
    let syn = tcp((MAC_A, GW_MAC), CLIENT, (REMOTE, 443), 1, Flags::Syn, b"");
    let out = n.through(A, syn, UP);
    assert_eq!(out.src.0, NODE);
    let node_port = out.src.1;
    let synack = tcp(
        (ROUTER, UP_MAC),
        (REMOTE, 443),
        (NODE, node_port),
        900,
        Flags::SynAck(2),
        b"",
    );
    n.through(UP, synack, A);
    let data = tcp(
        (MAC_A, GW_MAC),
        CLIENT,
        (REMOTE, 443),
        2,
        Flags::Ack(901),
        b"x",
    );
    let err = n.through(A, with_ttl(data, 1), A);
    assert_eq!(err.icmp, Some((11, 0)));
    assert_eq!((err.src.0, err.dst.0, err.dst_mac), (GW, IP_A, MAC_A));
    assert_eq!(err.inner, Some((CLIENT, (REMOTE, 443))));
}

/// The base config with an overlay and `web` on a pod of node-b.
fn overlay_config() -> NodeConfig {
    let text = BASE.to_string()
        + r#"
[overlay]
vni = 42
[[nodes]]
name = "node-b"
node_ip = "192.168.100.2"
pod_cidr = "10.244.2.0/24"
[[services]]
name = "web"
cluster_ip = "10.96.0.10"
protocol = "UDP"
port = 80
target_port = 8080
endpoints = [{ address = "10.244.2.7" }]
"#;
    NodeConfig::from_toml_str(&text).unwrap()
}

#[test]
fn frag_needed_over_the_overlay_quotes_the_cluster_ip() {
    let mut n = Node::with(
        overlay_config(),
        SharedTables::new(4096, Timeouts::default()),
    );
    n.send(UP, arp(ROUTER, [192, 168, 100, 2], NODE));
    let mut header =
        etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, IP_A, WEB).unwrap();
    header.dont_fragment = true;
    let big = |len: usize| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, GW_MAC)
            .ip(etherparse::IpHeaders::Ipv4(
                header.clone(),
                Default::default(),
            ))
            .udp(CLIENT.1, 80)
            .write(&mut out, &vec![7u8; len])
            .unwrap();
        out
    };
    // 1472 bytes of payload: a 1500-byte packet, 50 more than the tunnel takes.
    let err = n.through(A, big(1472), A);
    assert_eq!(err.icmp, Some((3, 4)));
    assert_eq!((err.src.0, err.dst.0), (GW, IP_A));
    assert_eq!(err.inner, Some((CLIENT, (WEB, 80))));
    assert_eq!(n.events(Event::VxlanFragNeededSent), 1);
    // What fits is DNATed and encapsulated.
    assert_eq!(n.verdict(A, big(1422)), Verdict::Forward(UP));
}

/// The base config with pod-b's and the uplink's MTU at 1280.
fn small_mtu_config() -> NodeConfig {
    let mut cfg = config(WEB_ON_B);
    for p in &mut cfg.ports {
        if p.name == "pod-b" || p.name == "up0" {
            p.mtu = Some(1280);
        }
    }
    cfg
}

/// The next-hop MTU of the ICMP fragmentation needed in `frame`.
fn next_hop_mtu(frame: &[u8]) -> u16 {
    assert_eq!(&frame[34..36], &[3, 4], "fragmentation needed");
    u16::from_be_bytes([frame[40], frame[41]])
}

/// Sends `frame` from pod-a; it must come back as fragmentation needed
/// with MTU 1280 from the gateway; returns what the error quotes.
fn refused(n: &mut Node, frame: Vec<u8>) -> Option<(Ep, Ep)> {
    let out = n.send(A, frame);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1, Verdict::Forward(A));
    assert_eq!(next_hop_mtu(&out[0].0), 1280);
    let err = facts(&out[0].0);
    assert_eq!((err.src.0, err.dst.0, err.dst_mac), (GW, IP_A, MAC_A));
    err.inner
}

#[test]
fn frag_needed_about_a_service_packet_quotes_the_cluster_ip() {
    let mut n = Node::with(
        small_mtu_config(),
        SharedTables::new(4096, Timeouts::default()),
    );
    // UDP with DF to the dns ClusterIP, whose endpoint is on pod-b (MTU 1280).
    let query = |len: usize| udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), &vec![7u8; len]);
    assert_eq!(refused(&mut n, query(1400)), Some((CLIENT, (DNS, 53))));
    assert_eq!(n.drops(DropReason::FragNeeded), 1);
    // What fits is translated to the endpoint.
    let out = n.through(A, query(1200), B);
    assert_eq!(out.dst, (IP_B, 5353));
}

#[test]
fn frag_needed_about_a_masqueraded_packet_quotes_the_pod() {
    let mut n = Node::with(
        small_mtu_config(),
        SharedTables::new(4096, Timeouts::default()),
    );
    let out = n.through(A, udp((MAC_A, GW_MAC), CLIENT, (REMOTE, 443), b"hello"), UP);
    assert_eq!(out.src.0, NODE, "masqueraded");
    let big = udp((MAC_A, GW_MAC), CLIENT, (REMOTE, 443), &[9u8; 1400]);
    assert_eq!(refused(&mut n, big), Some((CLIENT, (REMOTE, 443))));
}

#[test]
fn a_cached_flow_too_long_for_its_port_is_refused_and_stays_cached() {
    let mut n = Node::with(
        small_mtu_config(),
        SharedTables::new(4096, Timeouts::default()),
    );
    handshake(&mut n, CLIENT);
    n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"x"), B);
    let hits = n.events(Event::FlowCacheHit);
    assert_eq!(hits, 1, "the flow is cached");
    // A segment too long for pod-b: refused, quoting the ClusterIP.
    let big = to_web(CLIENT, 102, Flags::Ack(501), &[b'y'; 1400]);
    assert_eq!(refused(&mut n, big), Some((CLIENT, (WEB, 80))));
    // The next segment that fits still takes the cache to pod-b.
    let out = n.through(A, to_web(CLIENT, 102, Flags::Ack(501), &[b'z'; 1200]), B);
    assert_eq!(out.dst, (IP_B, 8080));
    assert_eq!(n.events(Event::FlowCacheHit), hits + 1);
}
