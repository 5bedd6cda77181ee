//! The NAT stage through the whole pipeline, over hand-built frames;
//! etherparse (an independent implementation) checks every checksum the
//! stage rewrote, including the quoted headers of translated ICMP errors.

use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use crate::config::{NodeConfig, Snapshot};
use crate::conntrack::{TcpState, Timeouts};
use crate::nat::ConntrackFilter;
use crate::pipeline::{Batch, DropReason, Event, Pipeline, PortId, SharedTables, Verdict};

const GW_MAC: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 1];
const UP_MAC: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 1];
const MAC_A: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 2];
const MAC_B: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 3];
const MAC_C: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 4];
const ROUTER: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 2];
const A: PortId = PortId(0);
const B: PortId = PortId(1);
const C: PortId = PortId(2);
const UP: PortId = PortId(3);
const IP_A: [u8; 4] = [10, 244, 1, 2];
const IP_B: [u8; 4] = [10, 244, 1, 3];
const IP_C: [u8; 4] = [10, 244, 1, 4];
const GW: [u8; 4] = [10, 244, 1, 1];
const NODE: [u8; 4] = [192, 168, 100, 1];
const WEB: [u8; 4] = [10, 96, 0, 10];
const DNS: [u8; 4] = [10, 96, 0, 53];
const EMPTY: [u8; 4] = [10, 96, 0, 99];
const SELF: [u8; 4] = [10, 96, 0, 20];
const STICKY: [u8; 4] = [10, 96, 0, 30];
const REMOTE: [u8; 4] = [203, 0, 113, 7];
const EXTERNAL: [u8; 4] = [198, 51, 100, 9];
const SEC: u64 = 1_000_000_000;

const BASE: &str = r#"
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[uplink]
port = "up0"
address = "192.168.100.1/24"
mac = "02:00:c0:a8:64:01"
[[ports]]
name = "pod-a"
kind = "tap"
[[ports]]
name = "pod-b"
kind = "tap"
[[ports]]
name = "pod-c"
kind = "tap"
[[ports]]
name = "up0"
kind = "afpacket"
[[routes]]
prefix = "0.0.0.0/0"
via = "192.168.100.2"
"#;

/// `web` (TCP 80 → 8080, NodePort 30080) on `web_endpoints`, `dns` (UDP
/// 53 → B:5353), `empty` (no endpoints), `self` (→ A:8080, hairpin for A),
/// `sticky` (affinity, 3 endpoints).
fn config(web_endpoints: &str) -> NodeConfig {
    let services = format!(
        r#"
[[services]]
name = "web"
cluster_ip = "10.96.0.10"
protocol = "TCP"
port = 80
target_port = 8080
node_port = 30080
endpoints = [{web_endpoints}]
[[services]]
name = "dns"
cluster_ip = "10.96.0.53"
protocol = "UDP"
port = 53
target_port = 5353
endpoints = [{{ address = "10.244.1.3" }}]
[[services]]
name = "empty-tcp"
cluster_ip = "10.96.0.99"
protocol = "TCP"
port = 80
[[services]]
name = "empty-udp"
cluster_ip = "10.96.0.99"
protocol = "UDP"
port = 53
[[services]]
name = "self"
cluster_ip = "10.96.0.20"
protocol = "TCP"
port = 80
target_port = 8080
endpoints = [{{ address = "10.244.1.2" }}]
[[services]]
name = "sticky"
cluster_ip = "10.96.0.30"
protocol = "TCP"
port = 80
affinity_timeout_secs = 60
endpoints = [{{ address = "10.244.1.2" }}, {{ address = "10.244.1.3" }}, {{ address = "10.244.1.4" }}]
"#
    );
    NodeConfig::from_toml_str(&(BASE.to_string() + &services)).unwrap()
}

const WEB_ON_B: &str = r#"{ address = "10.244.1.3" }"#;

struct Node {
    p: Pipeline,
    now: u64,
}

impl Node {
    fn new() -> Node {
        Node::with(
            config(WEB_ON_B),
            SharedTables::new(4096, Timeouts::default()),
        )
    }

    fn with(cfg: NodeConfig, shared: SharedTables) -> Node {
        let snapshot = Arc::new(Snapshot::build(&cfg, 1).unwrap());
        let mut node = Node {
            p: Pipeline::new(snapshot, Arc::new(shared), 2048),
            now: 1000 * SEC,
        };
        // Every pod and the router announce themselves: MACs learned, neighbours resolved.
        for (port, mac, ip) in [(A, MAC_A, IP_A), (B, MAC_B, IP_B), (C, MAC_C, IP_C)] {
            node.send(port, arp(mac, ip, GW));
        }
        node.send(UP, arp(ROUTER, [192, 168, 100, 2], NODE));
        node
    }

    fn reconfigure(&mut self, cfg: NodeConfig, generation: u64) {
        self.p
            .set_snapshot(Arc::new(Snapshot::build(&cfg, generation).unwrap()));
    }

    /// Runs one frame; returns every output (the frame itself first).
    fn send(&mut self, port: PortId, frame: Vec<u8>) -> Vec<(Vec<u8>, Verdict)> {
        self.now += 1_000_000;
        let mut batch = Batch::with_size(4, 2048);
        assert!(batch.push_rx(port, self.now, &frame));
        self.p.process(&mut batch, self.now);
        batch.iter().map(|(f, v)| (f.data().to_vec(), v)).collect()
    }

    /// Runs one frame that must come out of `expect` exactly once; returns it, oracle-checked.
    fn through(&mut self, port: PortId, frame: Vec<u8>, expect: PortId) -> Facts {
        let out = self.send(port, frame);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].1, Verdict::Forward(expect));
        facts(&out[0].0)
    }

    fn verdict(&mut self, port: PortId, frame: Vec<u8>) -> Verdict {
        self.send(port, frame)[0].1
    }

    fn events(&self, e: Event) -> u64 {
        self.p.counters().events(e)
    }

    fn drops(&self, d: DropReason) -> u64 {
        self.p.counters().drops(d)
    }
}

fn arp(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0u8; 42];
    out[..6].copy_from_slice(&[0xff; 6]);
    out[6..12].copy_from_slice(&mac);
    out[12..14].copy_from_slice(&[0x08, 0x06]);
    crate::wire::arp::ArpRepr {
        operation: 1,
        sender_hw_addr: crate::wire::MacAddr(mac),
        sender_ip: ip.into(),
        target_hw_addr: crate::wire::MacAddr([0; 6]),
        target_ip: target.into(),
    }
    .emit(&mut out[14..])
    .unwrap();
    out
}

type Mac = [u8; 6];
type Ep = ([u8; 4], u16);

#[derive(Clone, Copy)]
enum Flags {
    Syn,
    SynAck(u32),
    Ack(u32),
    Fin(u32),
    Rst,
}

fn tcp(macs: (Mac, Mac), src: Ep, dst: Ep, seq: u32, flags: Flags, data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, 64_000);
    let b = match flags {
        Flags::Syn => b.syn(),
        Flags::SynAck(ack) => b.syn().ack(ack),
        Flags::Ack(ack) => b.ack(ack),
        Flags::Fin(ack) => b.fin().ack(ack),
        Flags::Rst => b.rst(),
    };
    let mut out = Vec::new();
    b.write(&mut out, data).unwrap();
    out
}

/// A segment from pod-a (`client`) to the web ClusterIP, via the gateway.
fn to_web(client: Ep, seq: u32, flags: Flags, data: &[u8]) -> Vec<u8> {
    tcp((MAC_A, GW_MAC), client, (WEB, 80), seq, flags, data)
}

/// A segment from web's endpoint on pod-b to `client`, straight at L2.
fn web_reply(client: Ep, seq: u32, flags: Flags, data: &[u8]) -> Vec<u8> {
    tcp((MAC_B, MAC_A), (IP_B, 8080), client, seq, flags, data)
}

fn udp(macs: (Mac, Mac), src: Ep, dst: Ep, data: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1);
    let mut out = Vec::new();
    b.write(&mut out, data).unwrap();
    out
}

fn echo(macs: (Mac, Mac), src: [u8; 4], dst: [u8; 4], ident: u16, reply: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(macs.0, macs.1).ipv4(src, dst, 64);
    let b = if reply {
        b.icmpv4_echo_reply(ident, 1)
    } else {
        b.icmpv4_echo_request(ident, 1)
    };
    let mut out = Vec::new();
    b.write(&mut out, b"ping-data").unwrap();
    out
}

/// An ICMP error from `src` to `dst` quoting the IPv4 packet of `quoted` (a frame).
fn icmp_error(
    macs: (Mac, Mac),
    src: [u8; 4],
    dst: [u8; 4],
    kind: (u8, u8),
    quoted: &[u8],
    quote_len: usize,
) -> Vec<u8> {
    let ip = &quoted[14..];
    let ip = &ip[..quote_len.min(ip.len())];
    let icmp_type = match kind {
        (3, 4) => etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ),
        (3, code) => etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::from_values(code, 0).unwrap(),
        ),
        (11, code) => etherparse::Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::from_u8(code).unwrap(),
        ),
        other => panic!("{other:?}"),
    };
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src, dst, 64)
        .icmpv4(icmp_type);
    let mut out = Vec::new();
    b.write(&mut out, ip).unwrap();
    out
}

/// What etherparse reads from a frame whose every checksum it verified.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    src_mac: Mac,
    dst_mac: Mac,
    src: Ep,
    dst: Ep,
    ttl: u8,
    tcp: Option<(u32, u32, bool, bool, bool)>,
    icmp: Option<(u8, u8)>,
    /// Quoted datagram of an ICMP error: (src, dst), checksums verified when fully quoted.
    inner: Option<(Ep, Ep)>,
    payload: Vec<u8>,
}

fn facts(frame: &[u8]) -> Facts {
    let sliced = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "IPv4 header checksum"
    );
    let mut f = Facts {
        src_mac: frame[6..12].try_into().unwrap(),
        dst_mac: frame[..6].try_into().unwrap(),
        src: (h.source, 0),
        dst: (h.destination, 0),
        ttl: h.time_to_live,
        tcp: None,
        icmp: None,
        inner: None,
        payload: Vec::new(),
    };
    match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => {
            let expect = t.calc_checksum_ipv4(h.source, h.destination).unwrap();
            assert_eq!(t.checksum(), expect, "TCP checksum");
            f.src.1 = t.source_port();
            f.dst.1 = t.destination_port();
            f.tcp = Some((
                t.sequence_number(),
                t.acknowledgment_number(),
                t.syn(),
                t.ack(),
                t.rst(),
            ));
            f.payload = t.payload().to_vec();
        }
        Some(TransportSlice::Udp(u)) => {
            let expect = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), expect, "UDP checksum");
            f.src.1 = u.source_port();
            f.dst.1 = u.destination_port();
            f.payload = u.payload().to_vec();
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let expect = i.icmp_type().calc_checksum(i.payload());
            assert_eq!(i.checksum(), expect, "ICMP checksum");
            f.icmp = Some((i.type_u8(), i.code_u8()));
            if let etherparse::Icmpv4Type::EchoRequest(e) | etherparse::Icmpv4Type::EchoReply(e) =
                i.icmp_type()
            {
                f.src.1 = e.id;
                f.dst.1 = e.id;
            }
            f.payload = i.payload().to_vec();
            if matches!(i.type_u8(), 3 | 11 | 12) {
                f.inner = Some(quoted(i.payload()));
            }
        }
        other => panic!("unexpected transport {other:?}"),
    }
    f
}

/// The quoted datagram's addresses and ports; its IP header checksum is
/// checked, and its L4 checksum when the whole datagram is quoted.
fn quoted(q: &[u8]) -> (Ep, Ep) {
    let (h, rest) = etherparse::Ipv4Header::from_slice(q).expect("quoted IPv4 header");
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "quoted IPv4 header checksum"
    );
    let sport = u16::from_be_bytes([rest[0], rest[1]]);
    let dport = u16::from_be_bytes([rest[2], rest[3]]);
    let complete = usize::from(h.total_len) == q.len();
    if complete {
        match h.protocol {
            etherparse::IpNumber::UDP => {
                let (u, payload) = etherparse::UdpHeader::from_slice(rest).unwrap();
                assert_eq!(
                    u.checksum,
                    u.calc_checksum_ipv4(&h, payload).unwrap(),
                    "quoted UDP checksum"
                );
            }
            etherparse::IpNumber::TCP => {
                let (t, payload) = etherparse::TcpHeader::from_slice(rest).unwrap();
                assert_eq!(
                    t.checksum,
                    t.calc_checksum_ipv4(&h, payload).unwrap(),
                    "quoted TCP checksum"
                );
            }
            _ => {}
        }
    }
    if h.protocol == etherparse::IpNumber::ICMP {
        let id = u16::from_be_bytes([rest[4], rest[5]]);
        return ((h.source, id), (h.destination, id));
    }
    ((h.source, sport), (h.destination, dport))
}

const CLIENT: Ep = (IP_A, 40000);

/// A → web (DNATed to B:8080): SYN, SYN-ACK (B answers A directly at L2), ACK.
fn handshake(n: &mut Node, client: Ep) {
    let syn = n.through(A, to_web(client, 100, Flags::Syn, b""), B);
    assert_eq!((syn.src, syn.dst), (client, (IP_B, 8080)));
    assert_eq!((syn.src_mac, syn.dst_mac, syn.ttl), (GW_MAC, MAC_B, 63));
    let synack = n.through(B, web_reply(client, 500, Flags::SynAck(101), b""), A);
    assert_eq!((synack.src, synack.dst), ((WEB, 80), client));
    assert_eq!(
        (synack.src_mac, synack.dst_mac, synack.ttl),
        (GW_MAC, MAC_A, 63)
    );
    n.through(A, to_web(client, 101, Flags::Ack(501), b""), B);
}

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
fn out_of_window_and_invalid_segments_are_dropped() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    let far = to_web(CLIENT, 101 + 0x4000_0000, Flags::Ack(501), b"x");
    assert_eq!(
        n.verdict(A, far),
        Verdict::Drop(DropReason::ConntrackInvalid)
    );
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
fn node_port_from_outside() {
    let mut n = Node::new();
    let client = (EXTERNAL, 5555);
    let inb = n.through(
        UP,
        tcp((ROUTER, UP_MAC), client, (NODE, 30080), 1, Flags::Syn, b""),
        B,
    );
    assert_eq!(
        (inb.src, inb.dst, inb.src_mac),
        (client, (IP_B, 8080), GW_MAC)
    );
    let out = n.through(
        B,
        tcp(
            (MAC_B, GW_MAC),
            (IP_B, 8080),
            client,
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

#[test]
fn removed_endpoint_flows_are_reresolved_or_reset() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    // web moves from B to C: the established connection's next segment gets
    // a RST back to the client.
    n.reconfigure(config(r#"{ address = "10.244.1.4" }"#), 2);
    let data = to_web(CLIENT, 101, Flags::Ack(501), b"more");
    let rst = n.through(A, data, A);
    assert_eq!((rst.src, rst.dst), ((WEB, 80), CLIENT));
    assert_eq!(rst.tcp.map(|t| t.4), Some(true));
    assert_eq!(n.drops(DropReason::ServiceEndpointRemoved), 1);
    // A new SYN on the same tuple lands on C.
    let syn = n.through(A, to_web(CLIENT, 9000, Flags::Syn, b""), C);
    assert_eq!(syn.dst, (IP_C, 8080));
    assert!(n.events(Event::FlowReresolved) >= 1);
}

#[test]
fn removed_udp_endpoint_is_reresolved_without_a_flush() {
    let two = r#"{ address = "10.244.1.3" }"#;
    let mut cfg = config(two);
    cfg.services[1].endpoints = vec![crate::nat::EndpointSection {
        address: IP_B.into(),
        port: None,
        ready: true,
        terminating: false,
    }];
    let mut n = Node::with(cfg.clone(), SharedTables::default());
    let client = (IP_A, 33333);
    n.through(A, udp((MAC_A, GW_MAC), client, (DNS, 53), b"q"), B);
    cfg.services[1].endpoints[0].address = IP_C.into();
    n.reconfigure(cfg, 2);
    let q = n.through(A, udp((MAC_A, GW_MAC), client, (DNS, 53), b"q"), C);
    assert_eq!(q.dst, (IP_C, 5353));
    assert_eq!(n.events(Event::FlowReresolved), 1);
    let r = n.through(C, udp((MAC_C, MAC_A), (IP_C, 5353), client, b"a"), A);
    assert_eq!(r.src, (DNS, 53));
}

#[test]
fn terminating_endpoint_keeps_its_flows_but_gets_no_new_ones() {
    let both = r#"{ address = "10.244.1.3" }, { address = "10.244.1.4" }"#;
    let mut n = Node::with(config(both), SharedTables::default());
    // Find a connection that landed on B.
    let mut on_b = None;
    for sport in 40000..40100 {
        let f = n.send(A, to_web((IP_A, sport), 1, Flags::Syn, b""));
        if f[0].1 == Verdict::Forward(B) {
            on_b = Some(sport);
            break;
        }
    }
    let sport = on_b.expect("Maglev sends some flows to B");
    n.through(
        B,
        tcp(
            (MAC_B, MAC_A),
            (IP_B, 8080),
            (IP_A, sport),
            500,
            Flags::SynAck(2),
            b"",
        ),
        A,
    );
    let terminating =
        r#"{ address = "10.244.1.3", terminating = true }, { address = "10.244.1.4" }"#;
    n.reconfigure(config(terminating), 2);
    n.through(A, to_web((IP_A, sport), 2, Flags::Ack(501), b""), B);
    for sport in 50000..50050 {
        n.through(A, to_web((IP_A, sport), 1, Flags::Syn, b""), C);
    }
    assert_eq!(n.events(Event::FlowReresolved), 0);
}

#[test]
fn affinity_keeps_a_client_on_one_endpoint() {
    let mut n = Node::new();
    let mut ports = std::collections::HashSet::new();
    for sport in 1000..1030 {
        let out = n.send(
            B,
            tcp(
                (MAC_B, GW_MAC),
                (IP_B, sport),
                (STICKY, 80),
                1,
                Flags::Syn,
                b"",
            ),
        );
        ports.insert(format!("{:?}", out[0].1));
    }
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(n.p.shared_tables().affinity.len(), 1);
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
    use crate::pipeline::Offload;
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
fn flood_of_ten_times_capacity_keeps_established_flows() {
    const CAP: usize = 1024;
    let mut n = Node::with(
        config(WEB_ON_B),
        SharedTables::new(CAP, Timeouts::default()),
    );
    let established: Vec<Ep> = (0..64).map(|i| (IP_A, 20000 + i)).collect();
    for &c in &established {
        handshake(&mut n, c);
    }
    let ct_len = || n.p.shared_tables().conntrack.len();
    assert_eq!(ct_len(), 64);
    let mut batch = Batch::with_size(32, 256);
    let mut sent = 0u32;
    while sent < 10 * CAP as u32 {
        batch.clear();
        for _ in 0..32 {
            let client = (
                [10, 244, 1, 100 + (sent % 100) as u8],
                1024 + (sent / 100) as u16,
            );
            let syn = tcp((MAC_C, GW_MAC), client, (WEB, 80), 1, Flags::Syn, b"");
            assert!(batch.push_rx(C, n.now, &syn));
            sent += 1;
        }
        n.now += 1_000_000;
        n.p.process(&mut batch, n.now);
        assert!(batch.iter().all(|(_, v)| v == Verdict::Forward(B)));
    }
    let ct = &n.p.shared_tables().conntrack;
    assert!(
        ct.len() <= ct.capacity(),
        "{} > {}",
        ct.len(),
        ct.capacity()
    );
    assert!(
        n.events(Event::ConntrackEvicted) > 8 * CAP as u64,
        "{}",
        n.events(Event::ConntrackEvicted)
    );
    assert_eq!(ct.stats().evicted_assured, 0, "assured flows were evicted");
    for &c in &established {
        let f = n.through(A, to_web(c, 101, Flags::Ack(501), b"still"), B);
        assert_eq!(f.dst, (IP_B, 8080));
        let r = n.through(B, web_reply(c, 501, Flags::Ack(106), b"here"), A);
        assert_eq!(r.src, (WEB, 80));
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn seeds() -> Vec<(PortId, Vec<u8>)> {
        vec![
            (A, to_web(CLIENT, 1, Flags::Syn, b"abc")),
            (B, web_reply(CLIENT, 1, Flags::SynAck(2), b"")),
            (A, udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), b"q")),
            (A, udp((MAC_A, GW_MAC), CLIENT, (REMOTE, 53), b"q")),
            (
                UP,
                tcp(
                    (ROUTER, UP_MAC),
                    (EXTERNAL, 1),
                    (NODE, 30080),
                    1,
                    Flags::Syn,
                    b"",
                ),
            ),
            (A, echo((MAC_A, GW_MAC), IP_A, WEB, 1, false)),
            (
                A,
                tcp((MAC_A, GW_MAC), CLIENT, (EMPTY, 80), 1, Flags::Syn, b""),
            ),
            (
                A,
                tcp((MAC_A, GW_MAC), CLIENT, (SELF, 80), 1, Flags::Syn, b""),
            ),
            {
                let q = udp((GW_MAC, MAC_B), CLIENT, (IP_B, 5353), b"query");
                (B, icmp_error((MAC_B, MAC_A), IP_B, IP_A, (3, 3), &q, 1500))
            },
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Arbitrary mutations of NAT-relevant frames never panic the pipeline.
        #[test]
        fn mutated_frames_never_panic(
            ops in proptest::collection::vec((0usize..9, any::<u16>(), any::<u8>(), 0usize..80), 1..40)
        ) {
            let mut n = Node::new();
            let seeds = seeds();
            for (which, at, byte, cut) in ops {
                let (port, mut frame) = seeds[which].clone();
                let at = usize::from(at) % frame.len();
                frame[at] = byte;
                frame.truncate(frame.len().saturating_sub(cut).max(1));
                n.send(port, frame);
            }
        }
    }
}
