//! Golden scenarios of the NAT stage (services, hairpin, masquerade): the
//! inputs, the node configuration they run with, and the checks beyond the
//! generic oracle (which every expected frame passes too).

use etherparse::PacketBuilder;
use podswitch_dataplane::conntrack::Timeouts;
use podswitch_dataplane::nat::SharedConntrack;
use podswitch_dataplane::wire::IpProtocol;

use super::{
    EXT, Frames, GW_IP, GW_MAC, MS, POD_A, POD_B, T0, UP_IP, UP_MAC, golden, ipv4_of, outputs,
    ping, scenarios_dir,
};

pub(super) const SCENARIOS: &[&str] = &[
    "service-tcp-clusterip",
    "service-udp-dns",
    "service-icmp-echo",
    "service-icmp-unreachable",
    "service-nodeport",
    "service-hairpin",
    "service-masquerade",
];

/// The node of every services scenario (written to each scenario's `node.toml` when blessing).
pub(super) const NODE_TOML: &str = r#"# Node configuration of the services golden scenarios (written by
# tests/tests/golden/services.rs when blessing): pcaps/node.toml plus a
# default route, services, and the cluster CIDR.
[node]
name = "pcap-node-services"

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
name = "up0"
kind = "afpacket"

[[routes]]
prefix = "0.0.0.0/0"
via = "192.168.100.2"

[nat]
cluster_cidrs = ["10.244.0.0/16"]

[conntrack]
capacity = 65536

[[services]]
name = "default/web:http"
cluster_ip = "10.96.0.10"
protocol = "TCP"
port = 80
target_port = 8080
node_port = 30080
endpoints = [{ address = "10.244.1.3" }]

[[services]]
name = "kube-system/dns:dns"
cluster_ip = "10.96.0.53"
protocol = "UDP"
port = 53
target_port = 5353
endpoints = [{ address = "10.244.1.3" }]

[[services]]
name = "default/self:http"
cluster_ip = "10.96.0.20"
protocol = "TCP"
port = 80
target_port = 8080
endpoints = [{ address = "10.244.1.2" }]

[[services]]
name = "default/empty:http"
cluster_ip = "10.96.0.99"
protocol = "TCP"
port = 80
"#;

const CONNTRACK_CAPACITY: usize = 65_536;
const IP_A: [u8; 4] = [10, 244, 1, 2];
const IP_B: [u8; 4] = [10, 244, 1, 3];
const WEB: [u8; 4] = [10, 96, 0, 10];
const DNS: [u8; 4] = [10, 96, 0, 53];
const SELF_VIP: [u8; 4] = [10, 96, 0, 20];
const EMPTY: [u8; 4] = [10, 96, 0, 99];
const REMOTE: [u8; 4] = [203, 0, 113, 7];
const EXTERNAL: [u8; 4] = [198, 51, 100, 9];
const ROUTER_IP: [u8; 4] = [192, 168, 100, 2];

type Ep = ([u8; 4], u16);

fn arp_request(ts: u64, mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> (u64, Vec<u8>) {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    (ts, f)
}

/// TCP flags: SYN, ACK (with the ack number), FIN.
#[derive(Clone, Copy)]
struct Seg {
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
}

const fn seg(seq: u32, ack: Option<u32>, syn: bool, fin: bool) -> Seg {
    Seg { seq, ack, syn, fin }
}

fn tcp(ts: u64, macs: ([u8; 6], [u8; 6]), src: Ep, dst: Ep, s: Seg, data: &[u8]) -> (u64, Vec<u8>) {
    let mut b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, s.seq, 64_240);
    if s.syn {
        b = b.syn();
    }
    if s.fin {
        b = b.fin();
    }
    if let Some(ack) = s.ack {
        b = b.ack(ack);
    }
    let mut out = Vec::new();
    b.write(&mut out, data).unwrap();
    (ts, out)
}

fn udp(ts: u64, macs: ([u8; 6], [u8; 6]), src: Ep, dst: Ep, data: &[u8]) -> (u64, Vec<u8>) {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1);
    let mut out = Vec::new();
    b.write(&mut out, data).unwrap();
    (ts, out)
}

fn echo_reply(
    ts: u64,
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
) -> (u64, Vec<u8>) {
    let b = PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src, dst, 64)
        .icmpv4_echo_reply(id, 1);
    let mut out = Vec::new();
    b.write(&mut out, b"0123456789abcdef").unwrap();
    (ts, out)
}

/// The pods and the router introduce themselves (ARP for the gateway / the node).
fn hello(port: &str) -> (u64, Vec<u8>) {
    match port {
        "pod-a" => arp_request(T0, POD_A, IP_A, GW_IP),
        "pod-b" => arp_request(T0, POD_B, IP_B, GW_IP),
        _ => arp_request(T0, EXT, ROUTER_IP, UP_IP),
    }
}

fn with_hello(port: &'static str, mut frames: Frames) -> (&'static str, Frames) {
    frames.insert(0, hello(port));
    (port, frames)
}

/// A source port of pod-a for which hairpin SNAT keeps the port: the
/// gateway's (address, port) falls into the client's conntrack shard.
fn hairpin_port() -> u16 {
    let ct = SharedConntrack::new(CONNTRACK_CAPACITY, Timeouts::default());
    (40000..50000)
        .find(|&p| {
            ct.shard_of(GW_IP.into(), p, IpProtocol::TCP)
                == ct.shard_of(IP_A.into(), p, IpProtocol::TCP)
        })
        .expect("some port shares the shard")
}

/// The inputs of scenario `name`, per port.
pub(super) fn inputs(name: &str) -> Vec<(&'static str, Frames)> {
    let (a_gw, b_a, b_gw) = ((POD_A, GW_MAC), (POD_B, POD_A), (POD_B, GW_MAC));
    let up = (EXT, UP_MAC);
    let t = |ms: u64| T0 + ms * MS;
    let client: Ep = (IP_A, 40000);
    match name {
        "service-tcp-clusterip" => {
            let (vip, ep) = ((WEB, 80), (IP_B, 8080));
            vec![
                with_hello(
                    "pod-a",
                    vec![
                        tcp(t(2), a_gw, client, vip, seg(1000, None, true, false), b""),
                        tcp(
                            t(6),
                            a_gw,
                            client,
                            vip,
                            seg(1001, Some(5001), false, false),
                            b"",
                        ),
                        tcp(
                            t(8),
                            a_gw,
                            client,
                            vip,
                            seg(1001, Some(5001), false, false),
                            b"GET /",
                        ),
                        tcp(
                            t(12),
                            a_gw,
                            client,
                            vip,
                            seg(1006, Some(5016), false, true),
                            b"",
                        ),
                        tcp(
                            t(16),
                            a_gw,
                            client,
                            vip,
                            seg(1007, Some(5017), false, false),
                            b"",
                        ),
                    ],
                ),
                // The endpoint answers the on-link client directly (dst = pod-a's MAC).
                with_hello(
                    "pod-b",
                    vec![
                        tcp(
                            t(4),
                            b_a,
                            ep,
                            client,
                            seg(5000, Some(1001), true, false),
                            b"",
                        ),
                        tcp(
                            t(10),
                            b_a,
                            ep,
                            client,
                            seg(5001, Some(1006), false, false),
                            b"HTTP/1.1 200 OK",
                        ),
                        tcp(
                            t(14),
                            b_a,
                            ep,
                            client,
                            seg(5016, Some(1007), false, true),
                            b"",
                        ),
                    ],
                ),
            ]
        }
        "service-udp-dns" => vec![
            with_hello(
                "pod-a",
                vec![udp(
                    t(2),
                    a_gw,
                    (IP_A, 33333),
                    (DNS, 53),
                    b"\x12\x34query example.org",
                )],
            ),
            with_hello(
                "pod-b",
                vec![udp(
                    t(4),
                    b_a,
                    (IP_B, 5353),
                    (IP_A, 33333),
                    b"\x12\x34answer 93.184.216.34",
                )],
            ),
        ],
        "service-icmp-echo" => vec![with_hello(
            "pod-a",
            vec![
                ping(t(2), POD_A, GW_MAC, IP_A, WEB, 64),
                ping(t(4), POD_A, GW_MAC, IP_A, EMPTY, 64),
            ],
        )],
        "service-icmp-unreachable" => {
            let query = udp(t(2), a_gw, (IP_A, 33333), (DNS, 53), b"\x12\x34query");
            // What pod-b received (after DNAT), quoted whole in its port unreachable.
            let (_, seen) = udp(
                0,
                (GW_MAC, POD_B),
                (IP_A, 33333),
                (IP_B, 5353),
                b"\x12\x34query",
            );
            let b = PacketBuilder::ethernet2(POD_B, POD_A)
                .ipv4(IP_B, IP_A, 64)
                .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                    etherparse::icmpv4::DestUnreachableHeader::Port,
                ));
            let mut err = Vec::new();
            b.write(&mut err, &seen[14..]).unwrap();
            vec![
                with_hello("pod-a", vec![query]),
                with_hello("pod-b", vec![(t(4), err)]),
            ]
        }
        "service-nodeport" => {
            let ext: Ep = (EXTERNAL, 5555);
            vec![
                with_hello(
                    "up0",
                    vec![
                        tcp(
                            t(2),
                            up,
                            ext,
                            (UP_IP, 30080),
                            seg(7000, None, true, false),
                            b"",
                        ),
                        tcp(
                            t(6),
                            up,
                            ext,
                            (UP_IP, 30080),
                            seg(7001, Some(9001), false, false),
                            b"",
                        ),
                    ],
                ),
                // The client is off-link: the endpoint answers through the gateway.
                with_hello(
                    "pod-b",
                    vec![tcp(
                        t(4),
                        b_gw,
                        (IP_B, 8080),
                        ext,
                        seg(9000, Some(7001), true, false),
                        b"",
                    )],
                ),
            ]
        }
        "service-hairpin" => {
            let client: Ep = (IP_A, hairpin_port());
            vec![with_hello(
                "pod-a",
                vec![
                    tcp(
                        t(2),
                        a_gw,
                        client,
                        (SELF_VIP, 80),
                        seg(1000, None, true, false),
                        b"",
                    ),
                    // pod-a (the endpoint) sees the connection from the gateway and answers it.
                    tcp(
                        t(4),
                        a_gw,
                        (IP_A, 8080),
                        (GW_IP, client.1),
                        seg(3000, Some(1001), true, false),
                        b"",
                    ),
                    tcp(
                        t(6),
                        a_gw,
                        client,
                        (SELF_VIP, 80),
                        seg(1001, Some(3001), false, false),
                        b"",
                    ),
                ],
            )]
        }
        "service-masquerade" => vec![
            with_hello(
                "pod-a",
                vec![
                    tcp(
                        t(2),
                        a_gw,
                        client,
                        (REMOTE, 443),
                        seg(1000, None, true, false),
                        b"",
                    ),
                    tcp(
                        t(6),
                        a_gw,
                        client,
                        (REMOTE, 443),
                        seg(1001, Some(8001), false, false),
                        b"",
                    ),
                    ping(t(8), POD_A, GW_MAC, IP_A, REMOTE, 64),
                ],
            ),
            with_hello(
                "up0",
                vec![
                    tcp(
                        t(4),
                        up,
                        (REMOTE, 443),
                        (UP_IP, 40000),
                        seg(8000, Some(1001), true, false),
                        b"",
                    ),
                    echo_reply(t(10), up, REMOTE, UP_IP, 0x4242),
                ],
            ),
        ],
        other => panic!("unknown scenario {other}"),
    }
}

/// Writes the scenario's node.toml (when blessing).
pub(super) fn write_config(name: &str) {
    std::fs::write(scenarios_dir().join(name).join("node.toml"), NODE_TOML).unwrap();
}

fn facts(port: &str, name: &str) -> Vec<podswitch_tests::Ipv4Facts> {
    outputs(name)[port]
        .iter()
        .filter_map(|f| ipv4_of(f))
        .collect()
}

fn ports(f: &podswitch_tests::Ipv4Facts) -> (u16, u16) {
    let p = &f.payload;
    (
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    )
}

#[test]
fn service_tcp_clusterip() {
    let k = golden("service-tcp-clusterip");
    assert_eq!(k.get("nat"), Some(&8), "{k:?}");
    for f in facts("pod-b", "service-tcp-clusterip") {
        assert_eq!((f.src, f.dst, ports(&f)), (IP_A, IP_B, (40000, 8080)));
    }
    let replies = facts("pod-a", "service-tcp-clusterip");
    assert_eq!(replies.len(), 3);
    for f in replies {
        assert_eq!(
            (f.src, f.dst, ports(&f), f.src_mac),
            (WEB, IP_A, (80, 40000), GW_MAC)
        );
    }
}

#[test]
fn service_udp_dns() {
    let k = golden("service-udp-dns");
    assert_eq!(k.get("nat"), Some(&2), "{k:?}");
    let q = &facts("pod-b", "service-udp-dns")[0];
    assert_eq!((q.dst, ports(q)), (IP_B, (33333, 5353)));
    let r = &facts("pod-a", "service-udp-dns")[0];
    assert_eq!((r.src, ports(r)), (DNS, (53, 33333)));
}

#[test]
fn service_icmp_echo() {
    let k = golden("service-icmp-echo");
    assert_eq!(k.get("echo_reply"), Some(&1), "{k:?}");
    let r = &facts("pod-a", "service-icmp-echo")[0];
    assert_eq!((r.src, r.dst, r.icmp), (WEB, IP_A, Some((0, 0))));
    let summary =
        std::fs::read_to_string(scenarios_dir().join("service-icmp-echo/expected/summary.txt"))
            .unwrap();
    assert!(
        summary.contains("drop service_no_endpoints: 1\n"),
        "{summary}"
    );
}

#[test]
fn service_icmp_unreachable() {
    let k = golden("service-icmp-unreachable");
    assert_eq!(k.get("nat_icmp_error"), Some(&1), "{k:?}");
    let e = facts("pod-a", "service-icmp-unreachable")
        .into_iter()
        .find(|f| f.icmp.is_some())
        .unwrap();
    assert_eq!((e.src, e.dst, e.icmp), (DNS, IP_A, Some((3, 3))));
    // The quoted datagram is what pod-a sent: to the ClusterIP, port 53,
    // with valid IP and UDP checksums (the oracle verifies them).
    let inner = &e.payload[8..];
    assert_eq!(&inner[12..16], &IP_A);
    assert_eq!(&inner[16..20], &DNS);
    assert_eq!(&inner[20..24], &[0x82, 0x35, 0, 53]);
    let (h, rest) = etherparse::Ipv4Header::from_slice(inner).unwrap();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let (u, data) = etherparse::UdpHeader::from_slice(rest).unwrap();
    assert_eq!(u.checksum, u.calc_checksum_ipv4(&h, data).unwrap());
}

#[test]
fn service_nodeport() {
    let k = golden("service-nodeport");
    assert_eq!(k.get("nat"), Some(&3), "{k:?}");
    let inb = &facts("pod-b", "service-nodeport")[0];
    assert_eq!(
        (inb.src, inb.dst, ports(inb)),
        (EXTERNAL, IP_B, (5555, 8080))
    );
    let out = facts("up0", "service-nodeport");
    let synack = out.iter().find(|f| f.protocol == 6).unwrap();
    assert_eq!(
        (synack.src, synack.dst, ports(synack)),
        (UP_IP, EXTERNAL, (30080, 5555))
    );
}

#[test]
fn service_hairpin() {
    let k = golden("service-hairpin");
    assert_eq!(k.get("nat"), Some(&3), "{k:?}");
    let port = hairpin_port();
    let f = facts("pod-a", "service-hairpin");
    assert_eq!(
        (f[0].src, f[0].dst, ports(&f[0])),
        (GW_IP, IP_A, (port, 8080))
    );
    assert_eq!(
        (f[1].src, f[1].dst, ports(&f[1])),
        (SELF_VIP, IP_A, (80, port))
    );
}

#[test]
fn service_masquerade() {
    let k = golden("service-masquerade");
    assert_eq!(k.get("nat"), Some(&5), "{k:?}");
    for f in facts("up0", "service-masquerade")
        .iter()
        .filter(|f| f.protocol != 0x06 || f.src == UP_IP)
    {
        assert_eq!(f.src, UP_IP, "masqueraded to the uplink address");
    }
    let back = facts("pod-a", "service-masquerade");
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|f| f.src == REMOTE && f.dst == IP_A));
}
