//! The NAT stage through the whole pipeline, over hand-built frames;
//! etherparse (an independent implementation) checks every checksum the
//! stage rewrote, including the quoted headers of translated ICMP errors.

use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use crate::config::{NodeConfig, Snapshot};
use crate::conntrack::{TcpState, Timeouts};
use crate::nat::ConntrackFilter;
use crate::packet::{Batch, DropReason, Event, PortId, Verdict};
use crate::pipeline::{Pipeline, SharedTables};

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
/// `sticky` (affinity, 3 endpoints), `local` (TCP 80 → B:8080, NodePort
/// 30081, externalTrafficPolicy Local).
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
[[services]]
name = "local"
cluster_ip = "10.96.0.40"
protocol = "TCP"
port = 80
target_port = 8080
node_port = 30081
external_traffic_policy = "Local"
endpoints = [{{ address = "10.244.1.3" }}]
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

    /// The TCP state of the first tracked connection.
    fn first_tcp_state(&self) -> Option<TcpState> {
        let ct = &self.p.shared_tables().conntrack;
        ct.list(&ConntrackFilter::default(), self.now, 1)
            .first()
            .and_then(|r| r.tcp_state)
    }
}

/// After [`handshake`] for [`CLIENT`]: a segment far out of the window is dropped.
fn far_segment_is_dropped(n: &mut Node) {
    let far = to_web(CLIENT, 101 + 0x4000_0000, Flags::Ack(501), b"x");
    assert_eq!(
        n.verdict(A, far),
        Verdict::Drop(DropReason::ConntrackInvalid)
    );
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

/// The key the batch prefetch reads: TCP and UDP from any IPv4 header
/// length; nothing from other protocols or short packets.
#[test]
fn prefetch_key_reads_tcp_and_udp_only() {
    use crate::conntrack::ConnKey;
    let t = to_web(([10, 244, 1, 2], 40000), 1, Flags::Syn, b"");
    let key = super::prefetch_key(&t[14..]).unwrap();
    assert_eq!(key, ConnKey::tcp((IP_A.into(), 40000), (WEB.into(), 80)));
    let u = udp((MAC_A, GW_MAC), (IP_A, 5353), (WEB, 53), b"q");
    let key = super::prefetch_key(&u[14..]).unwrap();
    assert_eq!(key.protocol, crate::wire::IpProtocol::UDP);
    assert_eq!((key.src_port, key.dst_port), (5353, 53));
    let e = echo((MAC_A, GW_MAC), IP_A, WEB, 7, false);
    assert_eq!(super::prefetch_key(&e[14..]), None);
    assert_eq!(super::prefetch_key(&t[14..30]), None);
    assert_eq!(super::prefetch_key(&[]), None);
    // IHL 15: the ports are read after the options, and need 64 bytes.
    let mut long = t[14..].to_vec();
    long[0] = 0x4f;
    long.resize(60, 0);
    assert_eq!(super::prefetch_key(&long), None);
    long.resize(64, 0);
    assert_eq!(super::prefetch_key(&long).map(|k| k.src_port), Some(0));
    assert!(super::prefetch_key(&[0x4f; 64]).is_none());
}

/// One batch of 150 frames (more than a prefetch group of 64): new flows
/// and established ones mixed, every one translated as if sent alone.
#[test]
fn a_big_batch_of_new_and_established_flows_is_translated() {
    let mut n = Node::new();
    for port in 0..50u16 {
        handshake(&mut n, (IP_A, 30000 + port));
    }
    let mut batch = Batch::with_size(256, 2048);
    for port in 0..150u16 {
        // Even: established (an ACK of a handshaken flow); odd: a new SYN.
        let frame = if port % 2 == 0 && port < 100 {
            to_web((IP_A, 30000 + port / 2), 101, Flags::Ack(501), b"")
        } else {
            to_web((IP_A, 50000 + port), 1, Flags::Syn, b"")
        };
        assert!(batch.push_rx(A, n.now, &frame));
    }
    n.p.process(&mut batch, n.now);
    assert_eq!(batch.iter().count(), 150);
    for (frame, verdict) in batch.iter() {
        assert_eq!(verdict, Verdict::Forward(B));
        let f = facts(frame.data());
        assert_eq!(f.dst.0, IP_B, "DNATed to web's endpoint");
    }
}

mod dnat;
mod flow_cache;
mod fragments;
mod invalid;
mod lifecycle;
mod own_errors;
mod snat;
