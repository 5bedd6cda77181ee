//! Egress MTU (issue 25, A7): a packet with DF longer than the MTU of the
//! port it would leave by (a TAP pod, an AF_PACKET pod, the uplink) is
//! refused with ICMP fragmentation needed carrying that MTU and quoting
//! the packet as its sender sent it; one without DF is forwarded whole
//! (the worker cuts it into fragments); a GSO super-frame is measured by
//! its segments.

use super::*;
use crate::packet::{MAX_FRAME_LEN, Offload};

const IP_A: [u8; 4] = [10, 244, 1, 2];
const IP_B: [u8; 4] = [10, 244, 1, 3];
const GW_IP: [u8; 4] = [10, 244, 1, 1];
const NODE_IP: [u8; 4] = [192, 168, 100, 1];
const ROUTER_IP: [u8; 4] = [192, 168, 100, 2];
/// Behind the router on the uplink (the example config's route).
const FAR: [u8; 4] = [10, 244, 2, 5];

/// The example config (pod-a a TAP, pod-b an AF_PACKET port) without
/// anti-spoofing, with these MTUs for pod-a, pod-b and the uplink.
fn pipeline_with_mtus(a: u16, b: u16, up: u16) -> Pipeline {
    let mut cfg =
        NodeConfig::from_toml_str(include_str!("../../../../config/node.example.toml")).unwrap();
    for p in &mut cfg.ports {
        (p.mac, p.ips) = (None, Vec::new());
        p.mtu = Some(match p.name.as_str() {
            "pod-a" => a,
            "pod-b" => b,
            _ => up,
        });
    }
    let snapshot = Arc::new(Snapshot::build(&cfg, 1).unwrap());
    Pipeline::new(snapshot, Arc::default(), MAX_FRAME_LEN)
}

/// Runs `frames` as one batch with buffers for 64 KiB frames.
fn run_big(p: &mut Pipeline, now: u64, frames: &[(PortId, Vec<u8>)]) -> Vec<(Vec<u8>, Verdict)> {
    let mut batch = Batch::with_size(8, MAX_FRAME_LEN);
    for (port, bytes) in frames {
        assert!(batch.push_rx(*port, now, bytes));
    }
    p.process(&mut batch, now);
    batch.iter().map(|(f, v)| (f.data().to_vec(), v)).collect()
}

/// The pods and the router announce themselves: MACs and neighbours known.
fn learn_everyone(p: &mut Pipeline) {
    let announce = |mac: [u8; 6], ip: [u8; 4], gw: [u8; 4]| arp(1, mac, ip, [0; 6], gw, [0xff; 6]);
    let frames = [
        (A, announce(POD_A, IP_A, GW_IP)),
        (B, announce(POD_B, IP_B, GW_IP)),
        (UP, announce(ROUTER, ROUTER_IP, NODE_IP)),
    ];
    run(p, 0, &frames);
}

/// A UDP datagram of `len` payload bytes from `src` to `dst`, DF as `df`.
fn datagram(macs: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], len: usize, df: bool) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0, macs.1)
        .ipv4(src, dst, 64)
        .udp(40000, 7000)
        .write(&mut out, &vec![0x5a; len])
        .unwrap();
    if !df {
        out[20] &= !0x40;
        crate::wire::Ipv4Packet::new_checked(&mut out[14..])
            .unwrap()
            .fill_checksum();
    }
    out
}

/// An ICMP fragmentation needed, read by etherparse: its MACs, addresses,
/// next-hop MTU and the quoted bytes.
struct FragNeeded {
    macs: ([u8; 6], [u8; 6]),
    addrs: ([u8; 4], [u8; 4]),
    mtu: u16,
    quote: Vec<u8>,
}

fn frag_needed(frame: &[u8]) -> FragNeeded {
    assert_checksums_valid(frame);
    let sliced = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("not IPv4")
    };
    let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
        panic!("not ICMP")
    };
    let etherparse::Icmpv4Type::DestinationUnreachable(
        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
    ) = icmp.icmp_type()
    else {
        panic!("not fragmentation needed: {:?}", icmp.icmp_type())
    };
    FragNeeded {
        macs: (
            frame[6..12].try_into().unwrap(),
            frame[..6].try_into().unwrap(),
        ),
        addrs: (ip.header().source(), ip.header().destination()),
        mtu: next_hop_mtu,
        quote: icmp.payload().to_vec(),
    }
}

/// Asserts that `quote` is the start of `sent`'s IP packet, byte for byte.
fn assert_quotes(quote: &[u8], sent: &[u8]) {
    assert_eq!(quote.len(), 576 - 28, "as much as fits 576 bytes");
    assert_eq!(
        quote,
        &sent[14..14 + quote.len()],
        "the packet as it was sent"
    );
}

#[test]
fn too_long_for_the_uplink() {
    let mut p = pipeline_with_mtus(9000, 1500, 1500);
    learn_everyone(&mut p);
    // A 1,642-byte packet with DF: refused, from the gateway, with the uplink's MTU.
    let sent = datagram((POD_A, GW_MAC), IP_A, FAR, 1614, true);
    let out = run_big(&mut p, SEC, &[(A, sent.clone())]);
    assert_eq!(out[0].1, Verdict::Forward(A));
    let err = frag_needed(&out[0].0);
    assert_eq!(
        (err.macs, err.addrs, err.mtu),
        ((GW_MAC, POD_A), (GW_IP, IP_A), 1500)
    );
    assert_quotes(&err.quote, &sent);
    assert_eq!(p.counters().drops(DropReason::FragNeeded), 1);
    // Without DF it goes (the worker sends it in fragments), as what fits does.
    let unset = datagram((POD_A, GW_MAC), IP_A, FAR, 1614, false);
    let fits = datagram((POD_A, GW_MAC), IP_A, FAR, 1472, true);
    let out = run_big(&mut p, 2 * SEC, &[(A, unset), (A, fits)]);
    assert_eq!(
        (out[0].1, out[1].1),
        (Verdict::Forward(UP), Verdict::Forward(UP))
    );
    assert_eq!(p.counters().drops(DropReason::FragNeeded), 1);
}

#[test]
fn too_long_for_a_pod_switched_from_another_pod() {
    // To the AF_PACKET pod from the TAP pod, and the other way round.
    for (mtus, from, to) in [
        ((9000, 1500), (A, POD_A, IP_A), (POD_B, IP_B)),
        ((1500, 9000), (B, POD_B, IP_B), (POD_A, IP_A)),
    ] {
        let mut p = pipeline_with_mtus(mtus.0, mtus.1, 1500);
        learn_everyone(&mut p);
        let sent = datagram((from.1, to.0), from.2, to.1, 8000, true);
        let out = run_big(&mut p, SEC, &[(from.0, sent.clone())]);
        assert_eq!(out[0].1, Verdict::Forward(from.0));
        let err = frag_needed(&out[0].0);
        assert_eq!(
            (err.macs, err.addrs, err.mtu),
            ((GW_MAC, from.1), (GW_IP, from.2), 1500)
        );
        assert_quotes(&err.quote, &sent);
        let unset = datagram((from.1, to.0), from.2, to.1, 8000, false);
        let out = run_big(&mut p, 2 * SEC, &[(from.0, unset)]);
        assert_ne!(out[0].1, Verdict::Forward(from.0));
        assert!(matches!(out[0].1, Verdict::Forward(_)), "{:?}", out[0].1);
    }
}

#[test]
fn too_long_for_a_pod_routed_from_the_uplink() {
    let mut p = pipeline_with_mtus(9000, 1500, 9000);
    learn_everyone(&mut p);
    let outside = [10, 244, 2, 9];
    let sent = datagram((ROUTER, UP_MAC), outside, IP_B, 3000, true);
    let out = run_big(&mut p, SEC, &[(UP, sent.clone())]);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    let err = frag_needed(&out[0].0);
    assert_eq!(
        (err.macs, err.addrs, err.mtu),
        ((UP_MAC, ROUTER), (NODE_IP, outside), 1500)
    );
    assert_quotes(&err.quote, &sent);
    // The TAP pod (MTU 9000) takes it.
    let to_a = datagram((ROUTER, UP_MAC), outside, IP_A, 3000, true);
    assert_eq!(
        run_big(&mut p, 2 * SEC, &[(UP, to_a)])[0].1,
        Verdict::Forward(A)
    );
}

#[test]
fn a_super_frame_is_measured_by_its_segments() {
    let mut p = pipeline_with_mtus(9000, 1500, 1500);
    learn_everyone(&mut p);
    let tso = |mss: u16| {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(POD_A, GW_MAC)
            .ipv4(IP_A, FAR, 64)
            .tcp(40000, 80, 1, 65535)
            .ack(1)
            .write(&mut frame, &[0x5a; 30_000])
            .unwrap();
        let offload = Offload {
            gso: GsoKind::TcpV4,
            gso_size: mss,
            hdr_len: 54,
            ..Offload::default()
        };
        (frame, offload)
    };
    let run_tso = |p: &mut Pipeline, now: u64, (frame, offload): (Vec<u8>, Offload)| {
        let mut batch = Batch::with_size(8, MAX_FRAME_LEN);
        assert!(batch.push_rx(A, now, &frame));
        batch.frame_mut(0).offload = offload;
        p.process(&mut batch, now);
        batch
            .iter()
            .map(|(f, v)| (f.data().to_vec(), v))
            .collect::<Vec<_>>()
    };
    // 1,448-byte segments make 1,488-byte packets: the uplink takes them.
    let out = run_tso(&mut p, SEC, tso(1448));
    assert_eq!(out[0].1, Verdict::Forward(UP));
    // 8,948-byte segments (a pod with MTU 9000) do not fit.
    let out = run_tso(&mut p, 2 * SEC, tso(8948));
    assert_eq!(out[0].1, Verdict::Forward(A));
    assert_eq!(frag_needed(&out[0].0).mtu, 1500);
}

#[test]
fn a_held_packet_too_long_is_refused_once_its_next_hop_resolves() {
    let mut p = pipeline_with_mtus(9000, 1500, 1500);
    let sent = datagram((POD_A, GW_MAC), IP_A, FAR, 3000, true);
    let out = run_big(&mut p, 0, &[(A, sent.clone())]);
    assert_eq!(out[0].1, Verdict::Held);
    let reply = arp(2, ROUTER, ROUTER_IP, UP_MAC, NODE_IP, UP_MAC);
    let out = run_big(&mut p, SEC / 10, &[(UP, reply)]);
    assert_eq!(out[1].1, Verdict::Forward(A));
    let err = frag_needed(&out[1].0);
    assert_eq!(
        (err.macs, err.addrs, err.mtu),
        ((GW_MAC, POD_A), (GW_IP, IP_A), 1500)
    );
    assert_quotes(&err.quote, &sent);
}
