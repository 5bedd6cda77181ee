//! Overlay tests through the whole pipeline; etherparse is the independent
//! oracle that parses outer and inner headers and recomputes every checksum.

mod kernel_peer;

use std::sync::Arc;

use etherparse::{
    Icmpv4Type, LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice, icmpv4,
};
use proptest::prelude::*;

use super::*;
use crate::config::{NodeConfig, Snapshot};

mod fragments;
use crate::packet::{
    Batch, DropReason, Event, Frame, GsoKind, MAX_FRAME_LEN, Offload, PortId, Verdict,
};
use crate::pipeline::Pipeline;

mod gso;

const GW_MAC: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 1];
const UP_MAC: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 1];
const POD_A: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 2];
const NODE_B_MAC: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 2];
/// Default VTEP MACs (02:56 + node IP).
const OUR_VTEP: [u8; 6] = [2, 0x56, 192, 168, 100, 1];
const B_VTEP: [u8; 6] = [2, 0x56, 192, 168, 100, 2];
const C_VTEP: [u8; 6] = [2, 0xcc, 0, 0, 0, 3];
const A: PortId = PortId(0);
const UP: PortId = PortId(2);
const OUR_IP: [u8; 4] = [192, 168, 100, 1];
const NODE_B: [u8; 4] = [192, 168, 100, 2];
const VNI: u32 = 42;

const OVERLAY: &str = r#"
[overlay]
vni = 42

[[nodes]]
name = "node-b"
node_ip = "192.168.100.2"
pod_cidr = "10.244.2.0/24"

[[nodes]]
name = "node-c"
node_ip = "192.168.100.3"
pod_cidr = "10.244.3.0/24"
vtep_mac = "02:cc:00:00:00:03"
"#;

fn config(extra: &str) -> NodeConfig {
    let text = include_str!("../../../config/node.example.toml").to_string() + extra;
    let mut cfg = NodeConfig::from_toml_str(&text).unwrap();
    for p in &mut cfg.ports {
        p.mac = None;
        p.ips.clear();
    }
    cfg
}

fn snapshot(extra: &str) -> Arc<Snapshot> {
    Arc::new(Snapshot::build(&config(&(OVERLAY.to_string() + extra)), 1).unwrap())
}

fn pipeline(extra: &str) -> Pipeline {
    Pipeline::new(snapshot(extra), Arc::default(), MAX_FRAME_LEN)
}

fn run(p: &mut Pipeline, now: u64, frames: &[(PortId, Vec<u8>)]) -> Vec<(Vec<u8>, Verdict)> {
    let mut batch = Batch::with_size(8, MAX_FRAME_LEN);
    for (port, bytes) in frames {
        assert!(batch.push_rx(*port, now, bytes));
    }
    p.process(&mut batch, now);
    batch.iter().map(|(f, v)| (f.data().to_vec(), v)).collect()
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4], dst: [u8; 6]) -> Vec<u8> {
    let mut out = vec![0u8; 42];
    out[..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&sha);
    out[12..14].copy_from_slice(&[0x08, 0x06]);
    crate::wire::arp::ArpRepr {
        operation: op,
        sender_hw_addr: MacAddr(sha),
        sender_ip: spa.into(),
        target_hw_addr: MacAddr(if op == 2 { UP_MAC } else { [0; 6] }),
        target_ip: tpa.into(),
    }
    .emit(&mut out[14..])
    .unwrap();
    out
}

fn udp_frame(dst: [u8; 4], payload_len: usize, dont_frag: bool) -> Vec<u8> {
    let mut header =
        etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, [10, 244, 1, 2], dst)
            .unwrap();
    header.dont_fragment = dont_frag;
    header.dscp = etherparse::IpDscp::try_new(10).unwrap();
    header.ecn = etherparse::IpEcn::CongestionExperienced;
    let builder = PacketBuilder::ethernet2(POD_A, GW_MAC)
        .ip(etherparse::IpHeaders::Ipv4(header, Default::default()))
        .udp(40000, 53);
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let mut out = Vec::new();
    builder.write(&mut out, &payload).unwrap();
    out
}

/// A pipeline that has resolved node-b's MAC on the uplink and pod-a's on the bridge.
fn resolved_pipeline(extra: &str) -> Pipeline {
    let mut p = pipeline(extra);
    let learn_b = arp(2, NODE_B_MAC, NODE_B, OUR_IP, UP_MAC);
    let learn_a = arp(1, POD_A, [10, 244, 1, 2], [10, 244, 1, 1], [0xff; 6]);
    let out = run(&mut p, 1, &[(UP, learn_b), (A, learn_a)]);
    assert_eq!(out[0].1, Verdict::Consumed);
    p
}

/// Parses a VXLAN frame with the oracle: (outer packet, inner frame).
fn outer_and_inner(frame: &[u8]) -> (SlicedPacket<'_>, &[u8]) {
    let outer = SlicedPacket::from_ethernet(frame).expect("oracle parses the outer frame");
    let Some(TransportSlice::Udp(udp)) = &outer.transport else {
        panic!("outer is not UDP")
    };
    let vxlan = udp.payload();
    assert_eq!(vxlan[0], 0x08, "VXLAN flags: I only");
    assert_eq!(&vxlan[1..4], &[0, 0, 0], "reserved");
    assert_eq!(u32::from_be_bytes([0, vxlan[4], vxlan[5], vxlan[6]]), VNI);
    assert_eq!(vxlan[7], 0, "reserved");
    let inner = &frame[frame.len() - (vxlan.len() - 8)..];
    (outer, inner)
}

fn assert_outer(frame: &[u8], inner_len: usize, udp_checksum: bool) -> (u16, u16) {
    let (outer, _) = outer_and_inner(frame);
    let Some(LinkSlice::Ethernet2(eth)) = &outer.link else {
        panic!("not Ethernet II")
    };
    assert_eq!(eth.source(), UP_MAC);
    assert_eq!(eth.destination(), NODE_B_MAC);
    let Some(NetSlice::Ipv4(ip)) = &outer.net else {
        panic!("outer not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.source, OUR_IP);
    assert_eq!(h.destination, NODE_B);
    assert_eq!(h.time_to_live, 64);
    assert_eq!(h.dscp.value(), 0, "outer DSCP 0");
    assert!(!h.dont_fragment);
    assert!(h.options.is_empty());
    assert_eq!(usize::from(h.total_len), inner_len + 36);
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Udp(u)) = &outer.transport else {
        panic!()
    };
    assert_eq!(u.destination_port(), 4789);
    assert!((32768..61000).contains(&u.source_port()));
    assert_eq!(usize::from(u.length()), inner_len + 16);
    if udp_checksum {
        let expect = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
        assert_eq!(u.checksum(), expect, "outer UDP checksum");
    } else {
        assert_eq!(u.checksum(), 0, "outer UDP checksum off");
    }
    (h.identification, u.source_port())
}

/// Checks the inner frame: our VTEP → theirs, TTL decremented, checksums valid.
fn assert_inner(inner: &[u8], dst_vtep: [u8; 6], ttl: u8) {
    let sliced = SlicedPacket::from_ethernet(inner).expect("oracle parses the inner frame");
    let Some(LinkSlice::Ethernet2(eth)) = &sliced.link else {
        panic!()
    };
    assert_eq!(eth.source(), OUR_VTEP);
    assert_eq!(eth.destination(), dst_vtep);
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("inner not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.time_to_live, ttl);
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "inner IPv4 checksum"
    );
    match &sliced.transport {
        Some(TransportSlice::Udp(u)) => {
            let expect = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
            assert_eq!(u.checksum(), expect, "inner UDP checksum");
        }
        Some(TransportSlice::Tcp(t)) => {
            let expect = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(t.checksum(), expect, "inner TCP checksum");
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(i.checksum(), i.icmp_type().calc_checksum(i.payload()));
        }
        other => panic!("unexpected inner transport {other:?}"),
    }
}

#[test]
fn encapsulation_field_by_field() {
    let mut p = resolved_pipeline("");
    let frame = udp_frame([10, 244, 2, 7], 100, false);
    let out = run(&mut p, 2, &[(A, frame.clone())]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    let bytes = &out[0].0;
    assert_eq!(bytes.len(), frame.len() + OUTER_LEN);
    let (_, src_port) = assert_outer(bytes, frame.len(), false);
    let (outer, inner) = outer_and_inner(bytes);
    // RFC 6040: CE inside becomes ECT(0) outside.
    let Some(NetSlice::Ipv4(ip)) = &outer.net else {
        panic!()
    };
    assert_eq!(ip.header().ecn(), etherparse::IpEcn::Ect0);
    assert_inner(inner, B_VTEP, 63);
    assert_eq!(&inner[14 + 20..], &frame[14 + 20..], "inner L4 untouched");
    // The same flow always takes the same source port; another flow may not.
    let again = run(&mut p, 3, &[(A, frame.clone())]);
    assert_eq!(assert_outer(&again[0].0, frame.len(), false).1, src_port);
    let ids: Vec<u16> = [&out[0].0, &again[0].0]
        .iter()
        .map(|b| u16::from_be_bytes([b[18], b[19]]))
        .collect();
    assert_eq!(
        ids[1],
        ids[0].wrapping_add(1),
        "outer identification counts"
    );
    assert_eq!(p.counters().events(Event::VxlanEncapsulated), 2);
}

#[test]
fn outer_udp_checksum_and_df_when_configured() {
    let extra = "";
    let mut cfg = config(&(OVERLAY.to_string() + extra));
    let overlay = cfg.overlay.as_mut().unwrap();
    overlay.outer_udp_checksum = true;
    overlay.df = true;
    let mut p = Pipeline::new(
        Arc::new(Snapshot::build(&cfg, 1).unwrap()),
        Arc::default(),
        MAX_FRAME_LEN,
    );
    run(
        &mut p,
        1,
        &[(UP, arp(2, NODE_B_MAC, NODE_B, OUR_IP, UP_MAC))],
    );
    let frame = udp_frame([10, 244, 2, 7], 333, false);
    let out = run(&mut p, 2, &[(A, frame.clone())]);
    let bytes = &out[0].0;
    let outer = SlicedPacket::from_ethernet(bytes).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &outer.net else {
        panic!()
    };
    assert!(ip.header().dont_fragment());
    let Some(TransportSlice::Udp(u)) = &outer.transport else {
        panic!()
    };
    let expect = u
        .to_header()
        .calc_checksum_ipv4(&ip.header().to_header(), u.payload())
        .unwrap();
    assert_ne!(u.checksum(), 0);
    assert_eq!(u.checksum(), expect);
}

#[test]
fn unresolved_node_is_held_then_encapsulated() {
    let mut p = pipeline("");
    let frame = udp_frame([10, 244, 2, 9], 10, false);
    let out = run(&mut p, 1, &[(A, frame.clone())]);
    assert_eq!(out[0].1, Verdict::Held);
    // The ARP request for node-b's IP goes out of the uplink.
    assert_eq!(out[1].1, Verdict::Forward(UP));
    assert_eq!(&out[1].0[38..42], &NODE_B);
    let out = run(
        &mut p,
        2,
        &[(UP, arp(2, NODE_B_MAC, NODE_B, OUR_IP, UP_MAC))],
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].1, Verdict::Forward(UP));
    assert_outer(&out[1].0, frame.len(), false);
    let (_, inner) = outer_and_inner(&out[1].0);
    assert_inner(inner, B_VTEP, 63);
}

#[test]
fn configured_vtep_mac_is_the_inner_destination() {
    let mut p = resolved_pipeline("");
    run(
        &mut p,
        1,
        &[(
            UP,
            arp(2, [2, 0, 0, 0, 0, 3], [192, 168, 100, 3], OUR_IP, UP_MAC),
        )],
    );
    let out = run(&mut p, 2, &[(A, udp_frame([10, 244, 3, 1], 20, false))]);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    let (_, inner) = outer_and_inner(&out[0].0);
    assert_inner(inner, C_VTEP, 63);
}

/// A VXLAN packet from `src` with VNI `vni` around `inner`.
fn vxlan_packet(src: [u8; 4], vni: u32, flags: u8, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![flags, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(inner);
    let builder = PacketBuilder::ethernet2(NODE_B_MAC, UP_MAC)
        .ipv4(src, OUR_IP, 64)
        .udp(51234, 4789);
    let mut out = Vec::new();
    builder.write(&mut out, &payload).unwrap();
    out
}

fn inner_udp(dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(B_VTEP, dst_mac)
        .ipv4(src, dst, 63)
        .udp(5353, 7777);
    let mut out = Vec::new();
    builder.write(&mut out, b"from node b").unwrap();
    out
}

#[test]
fn decapsulation_routes_to_the_local_pod() {
    let mut p = resolved_pipeline("");
    let inner = inner_udp(OUR_VTEP, [10, 244, 2, 7], [10, 244, 1, 2]);
    let out = run(&mut p, 2, &[(UP, vxlan_packet(NODE_B, VNI, 0x08, &inner))]);
    assert_eq!(out[0].1, Verdict::Forward(A));
    let f = &out[0].0;
    assert_eq!(f.len(), inner.len());
    assert_eq!(&f[..6], &POD_A);
    assert_eq!(&f[6..12], &GW_MAC);
    assert_eq!(f[14 + 8], 62, "TTL − 1");
    assert_eq!(&f[14 + 20..], &inner[14 + 20..]);
    assert_eq!(p.counters().events(Event::VxlanDecapsulated), 1);
}

#[test]
fn priority_tagged_outer_and_inner_frames_are_decapsulated() {
    // VLAN ID 0 only carries a priority: Linux handles such frames as untagged.
    let priority_tagged = |frame: &[u8]| {
        let mut out = frame[..12].to_vec();
        out.extend_from_slice(&[0x81, 0x00, 0xa0, 0x00]);
        out.extend_from_slice(&frame[12..]);
        out
    };
    let mut p = resolved_pipeline("");
    let inner = inner_udp(OUR_VTEP, [10, 244, 2, 7], [10, 244, 1, 2]);
    let want = run(&mut p, 2, &[(UP, vxlan_packet(NODE_B, VNI, 0x08, &inner))]);
    assert_eq!(want[0].1, Verdict::Forward(A));
    let out = run(
        &mut p,
        3,
        &[
            (
                UP,
                priority_tagged(&vxlan_packet(NODE_B, VNI, 0x08, &inner)),
            ),
            (
                UP,
                vxlan_packet(NODE_B, VNI, 0x08, &priority_tagged(&inner)),
            ),
        ],
    );
    assert_eq!(out[0], want[0], "outer tag");
    assert_eq!(out[1], want[0], "inner tag");
}

#[test]
fn outer_congestion_is_copied_to_an_ect_inner_packet() {
    let mut p = resolved_pipeline("");
    let mut header = etherparse::Ipv4Header::new(
        0,
        63,
        etherparse::IpNumber::UDP,
        [10, 244, 2, 7],
        [10, 244, 1, 2],
    )
    .unwrap();
    header.ecn = etherparse::IpEcn::Ect0;
    let builder = PacketBuilder::ethernet2(B_VTEP, OUR_VTEP)
        .ip(etherparse::IpHeaders::Ipv4(header, Default::default()))
        .udp(5353, 7777);
    let mut inner = Vec::new();
    builder.write(&mut inner, b"ecn").unwrap();
    let mut packet = vxlan_packet(NODE_B, VNI, 0x08, &inner);
    packet[15] |= 0b11; // outer CE
    packet[24..26].copy_from_slice(&[0, 0]);
    let c = crate::wire::checksum::checksum(&packet[14..34]);
    packet[24..26].copy_from_slice(&c.to_be_bytes());
    let out = run(&mut p, 2, &[(UP, packet)]);
    assert_eq!(out[0].1, Verdict::Forward(A));
    let sliced = SlicedPacket::from_ethernet(&out[0].0).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!()
    };
    assert_eq!(ip.header().ecn(), etherparse::IpEcn::CongestionExperienced);
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum());
}

#[test]
fn decapsulation_drops_are_counted() {
    let mut p = resolved_pipeline("");
    let inner = inner_udp(OUR_VTEP, [10, 244, 2, 7], [10, 244, 1, 2]);
    let cases = [
        (
            vxlan_packet(NODE_B, 7, 0x08, &inner),
            DropReason::VxlanWrongVni,
        ),
        (
            vxlan_packet([192, 168, 100, 9], VNI, 0x08, &inner),
            DropReason::VxlanUnknownNode,
        ),
        (
            vxlan_packet(NODE_B, VNI, 0x00, &inner),
            DropReason::VxlanMalformed,
        ),
        (
            vxlan_packet(NODE_B, VNI, 0x08, &inner[..10]),
            DropReason::VxlanMalformed,
        ),
        (
            vxlan_packet(
                NODE_B,
                VNI,
                0x08,
                &inner_udp([2, 0, 0, 0, 0, 9], [10, 244, 2, 7], [10, 244, 1, 2]),
            ),
            DropReason::VxlanInnerNotForUs,
        ),
        (
            vxlan_packet(
                NODE_B,
                VNI,
                0x08,
                &inner_udp(OUR_VTEP, [10, 244, 2, 7], [10, 244, 3, 2]),
            ),
            DropReason::VxlanSplitHorizon,
        ),
        (
            vxlan_packet(
                NODE_B,
                VNI,
                0x08,
                &inner_udp(OUR_VTEP, [10, 244, 2, 7], [192, 168, 100, 50]),
            ),
            DropReason::VxlanSplitHorizon,
        ),
    ];
    for (i, (packet, reason)) in cases.iter().enumerate() {
        let out = run(&mut p, 2 + i as u64, &[(UP, packet.clone())]);
        assert_eq!(out[0].1, Verdict::Drop(*reason), "case {i}");
        assert!(p.counters().drops(*reason) > 0);
    }
    // A wrong non-zero outer UDP checksum.
    let mut bad = vxlan_packet(NODE_B, VNI, 0x08, &inner);
    bad[40] ^= 0x55;
    bad[41] |= 1;
    let out = run(&mut p, 20, &[(UP, bad)]);
    assert_eq!(out[0].1, Verdict::Drop(DropReason::VxlanBadChecksum));
    // Other UDP to us is not VXLAN: the router answers it as before.
    let other = inner_udp(UP_MAC, NODE_B, OUR_IP);
    let mut other = other;
    other[6..12].copy_from_slice(&NODE_B_MAC);
    let out = run(&mut p, 21, &[(UP, other)]);
    assert_eq!(out[0].1, Verdict::Drop(DropReason::LocalUnsupported));
}

#[test]
fn ping_of_the_gateway_through_the_tunnel_is_answered_through_it() {
    let mut p = resolved_pipeline("");
    let builder = PacketBuilder::ethernet2(B_VTEP, OUR_VTEP)
        .ipv4([10, 244, 2, 7], [10, 244, 1, 1], 63)
        .icmpv4_echo_request(9, 1);
    let mut inner = Vec::new();
    builder.write(&mut inner, b"hello").unwrap();
    let out = run(&mut p, 2, &[(UP, vxlan_packet(NODE_B, VNI, 0x08, &inner))]);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    let (_, reply) = outer_and_inner(&out[0].0);
    let sliced = SlicedPacket::from_ethernet(reply).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
        panic!()
    };
    assert!(matches!(icmp.icmp_type(), Icmpv4Type::EchoReply(_)));
    assert_inner(reply, B_VTEP, 63);
}

#[test]
fn too_big_with_df_gets_frag_needed_with_the_tunnel_mtu() {
    let mut p = resolved_pipeline("");
    // 1472 bytes of UDP payload: a 1500-byte IP packet, 50 too many.
    let frame = udp_frame([10, 244, 2, 7], 1472, true);
    let out = run(&mut p, 2, &[(A, frame)]);
    assert_eq!(out[0].1, Verdict::Forward(A));
    let sliced = SlicedPacket::from_ethernet(&out[0].0).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1450
        })
    );
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!()
    };
    assert_eq!(ip.header().destination(), [10, 244, 1, 2]);
    assert_eq!(p.counters().drops(DropReason::VxlanTooBig), 1);
    assert_eq!(p.counters().events(Event::VxlanFragNeededSent), 1);
    // 1450 fits exactly.
    let out = run(&mut p, 3, &[(A, udp_frame([10, 244, 2, 7], 1422, true))]);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    // Without DF: sent in fragments that fit (see `fragments.rs`).
    let out = run(&mut p, 4, &[(A, udp_frame([10, 244, 2, 7], 1472, false))]);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    assert_eq!(p.counters().drops(DropReason::VxlanTooBig), 1);
}

#[test]
fn snapshot_defaults_and_errors() {
    let s = snapshot("");
    let overlay = s.overlay.as_ref().unwrap();
    assert_eq!(
        (overlay.vni, overlay.udp_port, overlay.inner_mtu),
        (42, 4789, 1450)
    );
    assert_eq!(overlay.vtep_mac, MacAddr(OUR_VTEP));
    // Pods without an MTU of their own get the tunnel's.
    let pod_b = s.port_by_name("pod-b").unwrap();
    assert_eq!(pod_b.mtu, 1450);
    assert_eq!(s.port_by_name("pod-a").unwrap().mtu, 1500, "set explicitly");
    assert!(Snapshot::build(&config(""), 1).unwrap().overlay.is_none());
    let err = |extra: &str| match Snapshot::build(&config(&(OVERLAY.to_string() + extra)), 1) {
        Ok(_) => panic!("accepted {extra}"),
        Err(e) => e.to_string(),
    };
    let node = |ip: &str, cidr: &str| {
        format!("[[nodes]]\nname = \"x\"\nnode_ip = \"{ip}\"\npod_cidr = \"{cidr}\"\n")
    };
    assert!(
        err(&node("192.168.100.9", "10.244.1.0/24")).contains("nodes[2].pod_cidr = 10.244.1.0/24")
    );
    assert!(err(&node("192.168.100.9", "10.244.2.128/25")).contains("overlaps node node-b"));
    assert!(
        err(&node("192.168.100.2", "10.244.9.0/24")).contains("nodes[2].node_ip = 192.168.100.2")
    );
    assert!(err(&node("192.168.100.1", "10.244.9.0/24")).contains("own address"));
    assert!(err(&node("172.16.0.1", "10.244.9.0/24")).contains("not reachable by the uplink"));
    assert!(
        err(&(node("192.168.100.9", "10.244.9.0/24") + "vni = 5\n")).contains("nodes[2].vni = 5")
    );
    // Without an uplink: [overlay] is refused, API-style nodes wait for one.
    let mut no_uplink = config(OVERLAY);
    no_uplink.uplink = None;
    no_uplink.ports.retain(|p| p.name != "up0");
    no_uplink.routes.clear();
    let e = Snapshot::build(&no_uplink, 1).unwrap_err().to_string();
    assert!(
        e.contains("overlay = [overlay]: the overlay needs an [uplink]"),
        "{e}"
    );
    no_uplink.overlay = None;
    assert!(Snapshot::build(&no_uplink, 1).unwrap().overlay.is_none());
    let bad_vni = OVERLAY.replace("vni = 42", "vni = 16777216");
    let e = Snapshot::build(&config(&bad_vni), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overlay.vni = 16777216"), "{e}");
}

#[test]
fn flow_src_port_spreads_flows() {
    let mut ports = std::collections::HashSet::new();
    for sport in 0..200u16 {
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 244, 1, 2]);
        ip[16..20].copy_from_slice(&[10, 244, 2, 7]);
        ip[20..22].copy_from_slice(&(30000 + sport).to_be_bytes());
        ip[22..24].copy_from_slice(&53u16.to_be_bytes());
        let port = encap::flow_src_port(&ip);
        assert!((32768..61000).contains(&port));
        ports.insert(port);
    }
    assert!(ports.len() > 190, "{} distinct ports of 200", ports.len());
}

proptest! {
    /// Whatever follows a UDP/4789 header to our node IP, whatever its UDP
    /// length and fragment fields say, the pipeline does not panic.
    #[test]
    fn arbitrary_vxlan_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..200), src_last in 0u8..4, vni in 0u32..64, udp_len in proptest::option::of(any::<u16>()), frag in proptest::option::of(any::<u16>())) {
        let mut p = resolved_pipeline("");
        let mut bytes = vxlan_packet([192, 168, 100, src_last], vni, 0x08, &[]);
        bytes.truncate(14 + 20 + 8);
        bytes.extend_from_slice(&payload);
        let ip_len = (bytes.len() - 14) as u16;
        bytes[16..18].copy_from_slice(&ip_len.to_be_bytes());
        bytes[24..26].copy_from_slice(&[0, 0]);
        let csum = crate::wire::checksum::checksum(&bytes[14..34]);
        bytes[24..26].copy_from_slice(&csum.to_be_bytes());
        bytes[38..40].copy_from_slice(&udp_len.unwrap_or(ip_len - 20).to_be_bytes());
        if let Some(frag) = frag {
            bytes[20..22].copy_from_slice(&frag.to_be_bytes());
            bytes[24..26].copy_from_slice(&[0, 0]);
            let csum = crate::wire::checksum::checksum(&bytes[14..34]);
            bytes[24..26].copy_from_slice(&csum.to_be_bytes());
        }
        bytes[40..42].copy_from_slice(&[0, 0]);
        let fragment = u16::from_be_bytes([bytes[20], bytes[21]]) & 0x3fff != 0;
        let out = run(&mut p, 5, &[(UP, bytes)]);
        // A fragment (other than alone in its datagram) is held for reassembly.
        let held = fragment && out[0].1 == Verdict::Consumed;
        prop_assert!(held || matches!(out[0].1, Verdict::Drop(_) | Verdict::Forward(_) | Verdict::Held | Verdict::Flood));
    }
}

#[test]
fn mirror_sees_the_inner_frame_before_and_the_outer_frame_after_encapsulation() {
    use crate::mirror::{MirrorStage, PortSelection};
    let mut p = resolved_pipeline("");
    let (queue, session) = crate::mirror::tests::session(
        "encap",
        PortSelection::of(&[A]),
        &[MirrorStage::PreEncap, MirrorStage::PostEncap],
    );
    p.shared_tables().mirrors.add(session);
    let frame = udp_frame([10, 244, 2, 7], 100, false);
    let out = run(&mut p, 2, &[(A, frame.clone())]);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    let mut got = Vec::new();
    while let Some(r) = queue.pop() {
        got.push((r.data().to_vec(), r.note));
        queue.recycle(r);
    }
    assert_eq!(got.len(), 2);
    let (pre, post) = (&got[0], &got[1]);
    assert_eq!(pre.1.stage, MirrorStage::PreEncap);
    assert_eq!(post.1.stage, MirrorStage::PostEncap);
    assert_eq!((pre.1.out_port, post.1.out_port), (Some(UP), Some(UP)));
    // Before: the routed inner packet (TTL − 1 already); after: what leaves.
    assert_eq!(pre.0.len(), frame.len());
    assert_eq!(&pre.0[14 + 20..], &frame[14 + 20..]);
    assert_eq!(post.0, out[0].0);
    assert_outer(&post.0, frame.len(), false);
}

mod decap_mtu;
