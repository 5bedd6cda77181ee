//! DNAT: ClusterIP and NodePort, replies at L2 and routed, REJECT, ICMP errors, checksum offload.

use super::*;

#[test]
fn cluster_ip_tcp_handshake_data_and_close() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    let data = n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"GET /"), B);
    assert_eq!(data.payload, b"GET /");
    // The endpoint may also answer through the gateway (routed): translated too.
    let resp = n.through(
        B,
        tcp(
            (MAC_B, GW_MAC),
            (IP_B, 8080),
            CLIENT,
            501,
            Flags::Ack(106),
            b"200 OK",
        ),
        A,
    );
    assert_eq!(
        (resp.src, resp.dst, resp.payload.as_slice()),
        ((WEB, 80), CLIENT, &b"200 OK"[..])
    );
    n.through(A, to_web(CLIENT, 106, Flags::Fin(507), b""), B);
    n.through(B, web_reply(CLIENT, 507, Flags::Fin(107), b""), A);
    n.through(A, to_web(CLIENT, 107, Flags::Ack(508), b""), B);
    let listed =
        n.p.shared_tables()
            .conntrack
            .list(&ConntrackFilter::default(), n.now, 10);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tcp_state, Some(TcpState::TimeWait));
    assert!(listed[0].assured);
    assert_eq!(n.events(Event::Dnat), 1);
    assert_eq!(n.events(Event::ReverseNat), 3);
}

#[test]
fn simultaneous_open_through_a_cluster_ip_is_forwarded() {
    // Both sides send a SYN, then each a SYN-ACK, as Linux lets through.
    let mut n = Node::new();
    n.through(A, to_web(CLIENT, 100, Flags::Syn, b""), B);
    let syn = n.through(B, web_reply(CLIENT, 500, Flags::Syn, b""), A);
    assert_eq!((syn.src, syn.dst), ((WEB, 80), CLIENT));
    let synack = n.through(A, to_web(CLIENT, 100, Flags::SynAck(501), b""), B);
    assert_eq!((synack.src, synack.dst), (CLIENT, (IP_B, 8080)));
    let synack = n.through(B, web_reply(CLIENT, 500, Flags::SynAck(101), b""), A);
    assert_eq!((synack.src, synack.dst), ((WEB, 80), CLIENT));
    n.through(B, web_reply(CLIENT, 501, Flags::Ack(101), b"hello"), A);
    n.through(A, to_web(CLIENT, 101, Flags::Ack(506), b"hi"), B);
    assert_eq!(n.first_tcp_state(), Some(TcpState::Established));
    assert_eq!(n.drops(DropReason::ConntrackInvalid), 0);
}

#[test]
fn out_of_window_and_invalid_segments_are_dropped() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    far_segment_is_dropped(&mut n);
    // SYN-ACK from the client makes no sense.
    let bogus = to_web(CLIENT, 101, Flags::SynAck(501), b"");
    assert_eq!(
        n.verdict(A, bogus),
        Verdict::Drop(DropReason::ConntrackInvalid)
    );
    // A FIN to the service with no connection is not NATed.
    let stray = tcp(
        (MAC_A, GW_MAC),
        (IP_A, 999),
        (WEB, 80),
        1,
        Flags::Fin(1),
        b"",
    );
    assert_eq!(
        n.verdict(A, stray),
        Verdict::Drop(DropReason::ConntrackInvalid)
    );
    assert_eq!(n.drops(DropReason::ConntrackInvalid), 3);
    // The connection itself still works.
    n.through(A, to_web(CLIENT, 101, Flags::Ack(501), b"ok"), B);
}

#[test]
fn rst_closes_the_tracked_connection() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    let rst = n.through(B, web_reply(CLIENT, 501, Flags::Rst, b""), A);
    assert_eq!(rst.src, (WEB, 80));
    let listed =
        n.p.shared_tables()
            .conntrack
            .list(&ConntrackFilter::default(), n.now, 10);
    assert_eq!(listed[0].tcp_state, Some(TcpState::Close));
    assert!(listed[0].timeout_secs <= 10);
}

#[test]
fn udp_query_and_response() {
    let mut n = Node::new();
    let client = (IP_A, 33333);
    let q = n.through(A, udp((MAC_A, GW_MAC), client, (DNS, 53), b"query"), B);
    assert_eq!(
        (q.src, q.dst, q.payload.as_slice()),
        (client, (IP_B, 5353), &b"query"[..])
    );
    let r = n.through(B, udp((MAC_B, MAC_A), (IP_B, 5353), client, b"answer"), A);
    assert_eq!((r.src, r.dst, r.src_mac), ((DNS, 53), client, GW_MAC));
    let rec =
        &n.p.shared_tables()
            .conntrack
            .list(&ConntrackFilter::default(), n.now, 1)[0];
    assert!(rec.assured && rec.seen_reply);
    assert_eq!(rec.timeout_secs, 120);
}

#[test]
fn echo_to_cluster_ip_is_answered_by_the_gateway() {
    let mut n = Node::new();
    let reply = n.through(A, echo((MAC_A, GW_MAC), IP_A, WEB, 7, false), A);
    assert_eq!(
        (reply.src.0, reply.dst.0, reply.icmp),
        (WEB, IP_A, Some((0, 0)))
    );
    assert_eq!(
        n.verdict(A, echo((MAC_A, GW_MAC), IP_A, EMPTY, 7, false)),
        Verdict::Drop(DropReason::ServiceNoEndpoints)
    );
}

#[test]
fn no_endpoints_tcp_gets_a_reset_and_udp_a_port_unreachable() {
    let mut n = Node::new();
    let syn = tcp(
        (MAC_A, GW_MAC),
        (IP_A, 41000),
        (EMPTY, 80),
        7777,
        Flags::Syn,
        b"",
    );
    let rst = n.through(A, syn, A);
    assert_eq!((rst.src, rst.dst), ((EMPTY, 80), (IP_A, 41000)));
    assert_eq!((rst.src_mac, rst.dst_mac), (GW_MAC, MAC_A));
    // No ACK in the SYN: RST|ACK acking SYN.seq + 1, like iptables' tcp-reset.
    assert_eq!(rst.tcp, Some((0, 7778, false, true, true)));
    let ack = tcp(
        (MAC_A, GW_MAC),
        (IP_A, 41001),
        (EMPTY, 80),
        1,
        Flags::Ack(4242),
        b"",
    );
    let rst = n.through(A, ack, A);
    assert_eq!(rst.tcp, Some((4242, 0, false, false, true)));
    let q = udp((MAC_A, GW_MAC), (IP_A, 41002), (EMPTY, 53), b"q");
    let unreach = n.through(A, q, A);
    assert_eq!(
        (unreach.src.0, unreach.dst.0, unreach.icmp),
        (EMPTY, IP_A, Some((3, 3)))
    );
    assert_eq!(unreach.inner, Some(((IP_A, 41002), (EMPTY, 53))));
    assert_eq!(n.drops(DropReason::ServiceNoEndpoints), 3);
    assert_eq!(n.events(Event::ServiceRejected), 3);
    assert!(
        n.p.shared_tables().conntrack.is_empty(),
        "refused flows are not tracked"
    );
}

/// externalTrafficPolicy Cluster: a local endpoint sees the node (the
/// gateway address, as kube-proxy's masquerade shows it the bridge's
/// address), not the client; its answer is translated back.
#[test]
fn node_port_from_outside() {
    let mut n = Node::new();
    let client = (EXTERNAL, 5555);
    let inb = n.through(
        UP,
        tcp((ROUTER, UP_MAC), client, (NODE, 30080), 1, Flags::Syn, b""),
        B,
    );
    assert_eq!(
        (inb.src.0, inb.dst, inb.src_mac),
        (GW, (IP_B, 8080), GW_MAC)
    );
    assert_eq!(n.events(Event::SnatMasquerade), 1);
    let out = n.through(
        B,
        tcp(
            (MAC_B, GW_MAC),
            (IP_B, 8080),
            inb.src,
            9,
            Flags::SynAck(2),
            b"",
        ),
        UP,
    );
    assert_eq!(
        (out.src, out.dst, out.dst_mac),
        ((NODE, 30080), client, ROUTER)
    );
}

/// externalTrafficPolicy Local: the endpoint (on this node) sees the client.
#[test]
fn node_port_local_policy_keeps_the_client() {
    let mut n = Node::new();
    let client = (EXTERNAL, 5556);
    let inb = n.through(
        UP,
        tcp((ROUTER, UP_MAC), client, (NODE, 30081), 1, Flags::Syn, b""),
        B,
    );
    assert_eq!((inb.src, inb.dst), (client, (IP_B, 8080)));
    assert_eq!(n.events(Event::SnatMasquerade), 0);
    let answer = tcp(
        (MAC_B, GW_MAC),
        (IP_B, 8080),
        client,
        9,
        Flags::SynAck(2),
        b"",
    );
    let out = n.through(B, answer, UP);
    assert_eq!((out.src, out.dst), ((NODE, 30081), client));
}

#[test]
fn icmp_error_from_the_endpoint_is_unnated() {
    let mut n = Node::new();
    let client = (IP_A, 33333);
    let query = udp((MAC_A, GW_MAC), client, (DNS, 53), b"query");
    n.send(A, query);
    // What B received (after DNAT) is what B quotes; B sends the error to A at L2.
    let seen_by_b = udp((GW_MAC, MAC_B), client, (IP_B, 5353), b"query");
    let err = icmp_error((MAC_B, MAC_A), IP_B, IP_A, (3, 3), &seen_by_b, 1500);
    let out = n.through(B, err, A);
    assert_eq!((out.src.0, out.dst.0, out.icmp), (DNS, IP_A, Some((3, 3))));
    assert_eq!(out.inner, Some((client, (DNS, 53))));
    assert_eq!(out.src_mac, GW_MAC);
    // The other direction: A complains about a reply (quoting DNS:53 → A) to the
    // service; the error goes to B with the quoted source put back to B:5353.
    let reply_seen_by_a = udp((GW_MAC, MAC_A), (DNS, 53), client, b"answer");
    let err = icmp_error((MAC_A, GW_MAC), IP_A, DNS, (3, 3), &reply_seen_by_a, 1500);
    let out = n.through(A, err, B);
    assert_eq!((out.src.0, out.dst.0), (IP_A, IP_B));
    assert_eq!(out.inner, Some(((IP_B, 5353), client)));
    assert_eq!(n.events(Event::IcmpErrorUnnat), 2);
}

#[test]
fn l2_traffic_without_nat_is_untouched() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    let frame = udp((MAC_B, MAC_A), (IP_B, 7), (IP_A, 8), b"plain");
    let out = n.send(B, frame.clone());
    assert_eq!(out[0], (frame, Verdict::Forward(A)));
}

#[test]
fn partial_checksums_stay_partial() {
    use crate::packet::Offload;
    use crate::wire::checksum;
    let mut n = Node::new();
    let mut frame = to_web(CLIENT, 100, Flags::Syn, b"");
    // A TAP frame with a partial checksum: the field holds the pseudo-header sum.
    let pseudo = |src: [u8; 4], dst: [u8; 4]| {
        checksum::fold(checksum::pseudo_header_v4(src.into(), dst.into(), 6, 20))
    };
    frame[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&pseudo(IP_A, WEB).to_be_bytes());
    let mut batch = Batch::with_size(2, 2048);
    assert!(batch.push_rx(A, n.now, &frame));
    batch.frame_mut(0).offload = Offload {
        csum: Some((34, 16)),
        ..Default::default()
    };
    n.p.process(&mut batch, n.now);
    let (out, v) = batch.get(0).unwrap();
    assert_eq!(v, Verdict::Forward(B));
    let data = out.data();
    assert_eq!(
        &data[14 + 20 + 16..14 + 20 + 18],
        &pseudo(IP_A, IP_B).to_be_bytes()
    );
    assert_eq!(&data[14 + 20 + 2..14 + 20 + 4], &8080u16.to_be_bytes());
}

#[test]
fn a_clash_of_reply_tuples_remaps_the_source_port() {
    // Two services on one endpoint: the same client port to both would
    // be answered with the same tuple (B:8080 → A:40000).
    let mut cfg = config(WEB_ON_B);
    let web2 = NodeConfig::from_toml_str(&format!(
        "{BASE}\n[[services]]\nname = \"web2\"\ncluster_ip = \"10.96.0.11\"\nprotocol = \"TCP\"\nport = 80\ntarget_port = 8080\nendpoints = [{WEB_ON_B}]\n"
    ))
    .unwrap();
    cfg.services.extend(web2.services);
    let mut n = Node::with(cfg, SharedTables::default());
    const WEB2: [u8; 4] = [10, 96, 0, 11];
    handshake(&mut n, CLIENT);
    let syn = n.through(
        A,
        tcp((MAC_A, GW_MAC), CLIENT, (WEB2, 80), 7, Flags::Syn, b""),
        B,
    );
    assert_eq!(syn.dst, (IP_B, 8080));
    assert_eq!(syn.src.0, IP_A);
    let remapped = syn.src.1;
    assert_ne!(
        remapped, CLIENT.1,
        "the reply tuple must differ from the first flow's"
    );
    assert_eq!(n.events(Event::SourcePortRemapped), 1);
    // The endpoint's answers reach the client from the service it called.
    let synack = tcp(
        (MAC_B, MAC_A),
        (IP_B, 8080),
        (IP_A, remapped),
        900,
        Flags::SynAck(8),
        b"",
    );
    let out = n.through(B, synack, A);
    assert_eq!((out.src, out.dst), ((WEB2, 80), CLIENT));
    let ack = tcp(
        (MAC_A, GW_MAC),
        CLIENT,
        (WEB2, 80),
        8,
        Flags::Ack(901),
        b"two",
    );
    let out = n.through(A, ack, B);
    assert_eq!(out.src, (IP_A, remapped));
    // The first connection is untouched.
    let out = n.through(B, web_reply(CLIENT, 501, Flags::Ack(101), b"one"), A);
    assert_eq!((out.src, out.dst), ((WEB, 80), CLIENT));
    assert_eq!(n.drops(DropReason::ConntrackFull), 0);
}
