//! SNAT: hairpin to the gateway, masquerade to the uplink, port allocation, frag-needed.

use super::*;

#[test]
fn hairpin_snats_to_the_gateway() {
    let mut n = Node::new();
    let out = n.through(
        A,
        tcp((MAC_A, GW_MAC), CLIENT, (SELF, 80), 1, Flags::Syn, b""),
        A,
    );
    assert_eq!(out.src.0, GW);
    assert_eq!(out.dst, (IP_A, 8080));
    assert_eq!((out.src_mac, out.dst_mac), (GW_MAC, MAC_A));
    let gw_port = out.src.1;
    let ct = &n.p.shared_tables().conntrack;
    let shard = ct.shard_of(IP_A.into(), CLIENT.1, crate::wire::IpProtocol::TCP);
    assert_eq!(
        ct.shard_of(GW.into(), gw_port, crate::wire::IpProtocol::TCP),
        shard,
        "meets in the client's shard"
    );
    // A answers the gateway; the reply comes back from the service.
    let back = n.through(
        A,
        tcp(
            (MAC_A, GW_MAC),
            (IP_A, 8080),
            (GW, gw_port),
            9,
            Flags::SynAck(2),
            b"",
        ),
        A,
    );
    assert_eq!((back.src, back.dst), ((SELF, 80), CLIENT));
    assert_eq!(n.events(Event::SnatHairpin), 1);
}

#[test]
fn masquerade_out_and_back_never_collides() {
    let mut n = Node::new();
    let out = n.through(
        A,
        tcp((MAC_A, GW_MAC), CLIENT, (REMOTE, 443), 1, Flags::Syn, b""),
        UP,
    );
    assert_eq!((out.src, out.dst), ((NODE, 40000), (REMOTE, 443)));
    assert_eq!((out.src_mac, out.dst_mac), (UP_MAC, ROUTER));
    let back = n.through(
        UP,
        tcp(
            (ROUTER, UP_MAC),
            (REMOTE, 443),
            (NODE, 40000),
            9,
            Flags::SynAck(2),
            b"",
        ),
        A,
    );
    assert_eq!(
        (back.src, back.dst, back.dst_mac),
        ((REMOTE, 443), CLIENT, MAC_A)
    );
    // B uses the same source port toward the same remote: another port.
    let other = n.through(
        B,
        tcp(
            (MAC_B, GW_MAC),
            (IP_B, 40000),
            (REMOTE, 443),
            1,
            Flags::Syn,
            b"",
        ),
        UP,
    );
    assert_eq!(other.src.0, NODE);
    assert_ne!(other.src.1, 40000);
    let back = n.through(
        UP,
        tcp(
            (ROUTER, UP_MAC),
            (REMOTE, 443),
            (NODE, other.src.1),
            9,
            Flags::SynAck(2),
            b"",
        ),
        B,
    );
    assert_eq!(back.dst, (IP_B, 40000));
    // ICMP echo: the identifier is the port.
    let ping = n.through(A, echo((MAC_A, GW_MAC), IP_A, REMOTE, 40000, false), UP);
    let ping2 = n.through(B, echo((MAC_B, GW_MAC), IP_B, REMOTE, 40000, false), UP);
    assert_eq!(ping.src, (NODE, 40000));
    assert_ne!(ping2.src.1, 40000);
    let pong = n.through(
        UP,
        echo((ROUTER, UP_MAC), REMOTE, NODE, ping2.src.1, true),
        B,
    );
    assert_eq!((pong.dst, pong.icmp), ((IP_B, 40000), Some((0, 0))));
    // Pod-to-pod and cluster-internal traffic is not masqueraded.
    let internal = n.through(
        A,
        udp((MAC_A, GW_MAC), (IP_A, 1), ([10, 244, 1, 4], 2), b"x"),
        C,
    );
    assert_eq!(internal.src, (IP_A, 1));
    assert_eq!(n.events(Event::SnatMasquerade), 4);
}

#[test]
fn masquerade_off_per_port() {
    let mut cfg = config(WEB_ON_B);
    cfg.ports[0].masquerade = Some(false);
    let mut n = Node::with(cfg, SharedTables::default());
    let out = n.through(A, udp((MAC_A, GW_MAC), (IP_A, 5), (REMOTE, 53), b"x"), UP);
    assert_eq!(out.src, (IP_A, 5));
    let out = n.through(B, udp((MAC_B, GW_MAC), (IP_B, 5), (REMOTE, 53), b"x"), UP);
    assert_eq!(out.src.0, NODE);
}

#[test]
fn masquerade_port_exhaustion_is_counted() {
    let mut cfg = config(WEB_ON_B);
    cfg.nat.masquerade_ports = Some("20000-20001".parse().unwrap());
    let mut n = Node::with(cfg, SharedTables::default());
    for (port, mac, ip) in [(A, MAC_A, IP_A), (B, MAC_B, IP_B)] {
        n.through(
            port,
            udp((mac, GW_MAC), (ip, 20000), (REMOTE, 53), b"x"),
            UP,
        );
    }
    let v = n.verdict(C, udp((MAC_C, GW_MAC), (IP_C, 20000), (REMOTE, 53), b"x"));
    assert_eq!(v, Verdict::Drop(DropReason::NatPortExhausted));
}

#[test]
fn frag_needed_for_a_masqueraded_flow_reaches_the_pod() {
    let mut n = Node::new();
    let syn = tcp((MAC_A, GW_MAC), CLIENT, (REMOTE, 443), 1, Flags::Syn, b"");
    let out = n.send(A, syn);
    let sent = out[0].0.clone();
    // A router on the way quotes the translated packet: in full, then cut to 28 bytes.
    for quote in [1500, 28] {
        let err = icmp_error(
            (ROUTER, UP_MAC),
            [192, 168, 100, 2],
            NODE,
            (3, 4),
            &sent,
            quote,
        );
        let f = n.through(UP, err, A);
        assert_eq!(
            (f.src.0, f.dst.0, f.icmp),
            ([192, 168, 100, 2], IP_A, Some((3, 4)))
        );
        assert_eq!(f.inner, Some((CLIENT, (REMOTE, 443))));
    }
    // A time exceeded about an untracked packet passes untouched.
    let other = udp((UP_MAC, ROUTER), (NODE, 1), (REMOTE, 2), b"");
    let err = icmp_error(
        (ROUTER, UP_MAC),
        [192, 168, 100, 2],
        NODE,
        (11, 0),
        &other,
        1500,
    );
    assert_eq!(
        n.verdict(UP, err),
        Verdict::Drop(DropReason::LocalUnsupported)
    );
}
