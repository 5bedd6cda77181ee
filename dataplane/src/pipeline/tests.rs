//! Pipeline tests over hand-built frames; etherparse builds inputs and
//! checks every checksum the pipeline writes.

use std::net::Ipv4Addr;
use std::sync::Arc;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use proptest::prelude::*;

use super::*;
use crate::config::{NodeConfig, Snapshot};
use crate::wire::MacAddr;
use crate::wire::testdata::cut_into_fragments;

const GW_MAC: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 1];
const UP_MAC: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 1];
const POD_A: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 2];
const POD_B: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 3];
const ROUTER: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 2];
const A: PortId = PortId(0);
const B: PortId = PortId(1);
const UP: PortId = PortId(2);
const SEC: u64 = 1_000_000_000;

/// The example config with plain bridge ports (no assigned MAC/IPs, so no
/// anti-spoofing), or as written when `enforce` is set.
fn snapshot_with(enforce: bool) -> Arc<Snapshot> {
    let mut cfg =
        NodeConfig::from_toml_str(include_str!("../../../config/node.example.toml")).unwrap();
    if !enforce {
        for p in &mut cfg.ports {
            p.mac = None;
            p.ips.clear();
        }
    }
    Arc::new(Snapshot::build(&cfg, 1).unwrap())
}

fn snapshot() -> Arc<Snapshot> {
    snapshot_with(false)
}

fn pipeline() -> Pipeline {
    Pipeline::new(snapshot(), Arc::default(), 2048)
}

/// Runs `frames` through `p` as one batch; returns (bytes, verdict) for every output.
fn run(p: &mut Pipeline, now: u64, frames: &[(PortId, Vec<u8>)]) -> Vec<(Vec<u8>, Verdict)> {
    let mut batch = Batch::with_size(8, 2048);
    for (port, bytes) in frames {
        assert!(batch.push_rx(*port, now, bytes));
    }
    p.process(&mut batch, now);
    batch.iter().map(|(f, v)| (f.data().to_vec(), v)).collect()
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .udp(40000, 53);
    let payload = b"podswitch-test";
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

fn ping(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .icmpv4_echo_request(0x77, 3);
    let mut out = Vec::new();
    builder.write(&mut out, b"abcdefgh").unwrap();
    out
}

fn arp(op: u16, sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4], dst: [u8; 6]) -> Vec<u8> {
    let mut out = vec![0u8; 42];
    out[..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&sha);
    out[12..14].copy_from_slice(&[0x08, 0x06]);
    crate::wire::arp::ArpRepr {
        operation: op,
        sender_hw_addr: MacAddr(sha),
        sender_ip: spa.into(),
        target_hw_addr: MacAddr(tha),
        target_ip: tpa.into(),
    }
    .emit(&mut out[14..])
    .unwrap();
    out
}

/// Asserts that the IPv4 header and L4 checksums of `frame` are what etherparse computes.
fn assert_checksums_valid(frame: &[u8]) {
    let sliced = SlicedPacket::from_ethernet(frame).expect("oracle parses the frame");
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("not IPv4")
    };
    let header = ip.header().to_header();
    assert_eq!(
        header.header_checksum,
        header.calc_header_checksum(),
        "IPv4 header checksum"
    );
    match sliced.transport {
        Some(TransportSlice::Udp(u)) => {
            let expect = u
                .to_header()
                .calc_checksum_ipv4(&header, u.payload())
                .unwrap();
            assert_eq!(u.checksum(), expect, "UDP checksum");
        }
        Some(TransportSlice::Icmpv4(icmp)) => {
            let expect = icmp.icmp_type().calc_checksum(icmp.payload());
            assert_eq!(icmp.checksum(), expect, "ICMP checksum");
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

#[test]
fn arp_request_for_gateway_is_answered() {
    let mut p = pipeline();
    let req = arp(
        1,
        POD_A,
        [10, 244, 1, 2],
        [0; 6],
        [10, 244, 1, 1],
        [0xff; 6],
    );
    let out = run(&mut p, 0, &[(A, req)]);
    assert_eq!(out.len(), 1);
    let (reply, verdict) = &out[0];
    assert_eq!(*verdict, Verdict::Forward(A));
    let oracle = etherparse::ArpPacketSlice::from_slice(&reply[14..]).unwrap();
    assert_eq!(oracle.operation(), etherparse::ArpOperation::REPLY);
    assert_eq!(oracle.sender_hw_addr(), GW_MAC);
    assert_eq!(oracle.sender_protocol_addr(), [10, 244, 1, 1]);
    assert_eq!(oracle.target_hw_addr(), POD_A);
    assert_eq!(oracle.target_protocol_addr(), [10, 244, 1, 2]);
    assert_eq!(&reply[..6], &POD_A);
    assert_eq!(&reply[6..12], &GW_MAC);
    assert_eq!(p.counters().events(Event::ArpReplySent), 1);
    assert_eq!(p.counters().events(Event::NeighbourLearned), 1);
}

#[test]
fn arp_for_someone_else_is_flooded_and_not_learned() {
    let mut p = pipeline();
    let req = arp(
        1,
        POD_A,
        [10, 244, 1, 2],
        [0; 6],
        [10, 244, 1, 3],
        [0xff; 6],
    );
    let out = run(&mut p, 0, &[(A, req)]);
    assert_eq!(out[0].1, Verdict::Flood);
    assert_eq!(p.counters().events(Event::NeighbourLearned), 0);
}

#[test]
fn ping_to_gateway_is_answered() {
    let mut p = pipeline();
    let out = run(
        &mut p,
        0,
        &[(A, ping(POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 1, 1]))],
    );
    let (reply, verdict) = &out[0];
    assert_eq!(*verdict, Verdict::Forward(A));
    assert_checksums_valid(reply);
    let sliced = SlicedPacket::from_ethernet(reply).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), [10, 244, 1, 1]);
    assert_eq!(ip.header().destination(), [10, 244, 1, 2]);
    let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
        panic!()
    };
    assert!(
        matches!(icmp.icmp_type(), etherparse::Icmpv4Type::EchoReply(e) if e.id == 0x77 && e.seq == 3)
    );
    assert_eq!(icmp.payload(), b"abcdefgh");
}

/// `frame` with an 802.1Q tag (`tci`: priority, DEI, VLAN ID) after the MACs.
fn with_vlan_tag(frame: &[u8], tci: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&tci.to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

#[test]
fn priority_tagged_frames_are_handled_as_untagged() {
    // VLAN ID 0 only carries a priority (802.1p): Linux strips the tag and
    // handles the frame as untagged; tagged frames of a real VLAN stay dropped.
    let mut p = pipeline();
    let echo = ping(POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 1, 1]);
    let a_to_b = udp(POD_A, POD_B, [10, 244, 1, 2], [10, 244, 1, 3], 64);
    let want = run(&mut p, 0, &[(A, echo.clone())]);
    let out = run(
        &mut p,
        0,
        &[
            (A, with_vlan_tag(&echo, 5 << 13)),
            (A, with_vlan_tag(&a_to_b, 3 << 13)),
            (A, with_vlan_tag(&a_to_b, (5 << 13) | 7)),
            (A, with_vlan_tag(&with_vlan_tag(&a_to_b, 7), 0)),
        ],
    );
    assert_eq!(out[0], want[0], "the echo reply, untagged");
    assert_eq!(out[1], (a_to_b, Verdict::Flood), "switched, untagged");
    assert_eq!(out[2].1, Verdict::Drop(DropReason::VlanTagged));
    assert_eq!(out[3].1, Verdict::Drop(DropReason::VlanTagged));
    assert_eq!(p.counters().drops(DropReason::VlanTagged), 2);
}

#[test]
fn l2_learning_flooding_and_no_hairpin() {
    let mut p = pipeline();
    let a_to_b = udp(POD_A, POD_B, [10, 244, 1, 2], [10, 244, 1, 3], 64);
    let b_to_a = udp(POD_B, POD_A, [10, 244, 1, 3], [10, 244, 1, 2], 64);
    // B unknown: flooded. Then B talks, and A's next frame is unicast.
    let out = run(
        &mut p,
        0,
        &[
            (A, a_to_b.clone()),
            (B, b_to_a.clone()),
            (A, a_to_b.clone()),
        ],
    );
    let verdicts: Vec<_> = out.iter().map(|o| o.1).collect();
    assert_eq!(
        verdicts,
        vec![Verdict::Flood, Verdict::Forward(A), Verdict::Forward(B)]
    );
    assert_eq!(out[2].0, a_to_b, "switched frames are not modified");
    // A frame to B arriving on B's own port is not sent back.
    let out = run(&mut p, SEC, &[(B, a_to_b)]);
    assert_eq!(out[0].1, Verdict::Drop(DropReason::SamePort));
    assert_eq!(p.counters().drops(DropReason::SamePort), 1);
}

#[test]
fn bad_source_macs_dropped() {
    let mut p = pipeline();
    let out = run(
        &mut p,
        0,
        &[
            (
                A,
                udp(
                    [1, 0, 0x5e, 0, 0, 1],
                    POD_B,
                    [10, 244, 1, 2],
                    [10, 244, 1, 3],
                    64,
                ),
            ),
            (A, udp(GW_MAC, POD_B, [10, 244, 1, 2], [10, 244, 1, 3], 64)),
            (A, vec![0u8; 10]),
        ],
    );
    assert_eq!(out[0].1, Verdict::Drop(DropReason::InvalidSrcMac));
    assert_eq!(out[1].1, Verdict::Drop(DropReason::SrcMacIsOurs));
    assert_eq!(out[2].1, Verdict::Drop(DropReason::EthernetMalformed));
}

#[test]
fn routed_packet_waits_for_arp_then_leaves_with_ttl_decremented() {
    let mut p = pipeline();
    let original = udp(POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 2, 5], 64);
    let out = run(&mut p, 0, &[(A, original.clone())]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1, Verdict::Held);
    let (req, v) = &out[1];
    assert_eq!(*v, Verdict::Forward(UP));
    let oracle = etherparse::ArpPacketSlice::from_slice(&req[14..]).unwrap();
    assert_eq!(oracle.operation(), etherparse::ArpOperation::REQUEST);
    assert_eq!(oracle.sender_protocol_addr(), [192, 168, 100, 1]);
    assert_eq!(oracle.target_protocol_addr(), [192, 168, 100, 2]);
    assert_eq!(&req[..6], &[0xff; 6]);
    assert_eq!(&req[6..12], &UP_MAC);

    // The router answers; the held packet goes out in the same batch.
    let reply = arp(
        2,
        ROUTER,
        [192, 168, 100, 2],
        UP_MAC,
        [192, 168, 100, 1],
        UP_MAC,
    );
    let out = run(&mut p, SEC / 10, &[(UP, reply)]);
    assert_eq!(out[0].1, Verdict::Consumed);
    let (routed, v) = &out[1];
    assert_eq!(*v, Verdict::Forward(UP));
    assert_eq!(&routed[..6], &ROUTER);
    assert_eq!(&routed[6..12], &UP_MAC);
    assert_eq!(routed[14 + 8], 63, "TTL decremented");
    assert_eq!(&routed[14 + 9..14 + 10], &original[14 + 9..14 + 10]);
    assert_eq!(&routed[34..], &original[34..], "payload untouched");
    assert_checksums_valid(routed);

    // Now resolved: the next packet is forwarded at once.
    let out = run(&mut p, SEC / 5, &[(A, original)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    assert_eq!(p.counters().events(Event::HeldReleased), 1);
}

#[test]
fn unresolved_next_hop_gives_up_after_probes() {
    let mut p = pipeline();
    let frame = udp(POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 2, 5], 64);
    let out = run(
        &mut p,
        0,
        &[
            (A, frame.clone()),
            (A, frame.clone()),
            (A, frame.clone()),
            (A, frame),
        ],
    );
    let held = out.iter().filter(|o| o.1 == Verdict::Held).count();
    assert_eq!(held, 3, "hold_per_neighbour = 3");
    assert_eq!(out[3].1, Verdict::Drop(DropReason::NeighbourHoldFull));
    let mut requests = 1;
    for t in 1..=5u64 {
        requests += run(&mut p, t * SEC, &[]).len();
    }
    assert_eq!(requests, 3, "probes = 3");
    assert_eq!(p.counters().drops(DropReason::NeighbourUnresolved), 3);
    assert_eq!(p.hold.held(), 0);
}

#[test]
fn ttl_expiry_sends_time_exceeded() {
    let mut p = pipeline();
    let original = udp(POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 2, 5], 1);
    let out = run(&mut p, 0, &[(A, original.clone())]);
    let (err, v) = &out[0];
    assert_eq!(*v, Verdict::Forward(A));
    assert_eq!(&err[..6], &POD_A);
    assert_eq!(&err[6..12], &GW_MAC);
    assert_checksums_valid(err);
    let sliced = SlicedPacket::from_ethernet(err).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!()
    };
    assert_eq!(ip.header().source(), [10, 244, 1, 1]);
    assert_eq!(ip.header().destination(), [10, 244, 1, 2]);
    let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
        panic!()
    };
    assert!(matches!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::TimeExceeded(_)
    ));
    assert_eq!(
        icmp.payload(),
        &original[14..],
        "quotes the whole original datagram"
    );
    assert_eq!(p.counters().drops(DropReason::TtlExpired), 1);
}

#[test]
fn no_route_sends_net_unreachable_and_icmp_errors_are_not_answered() {
    let mut p = pipeline();
    let out = run(
        &mut p,
        0,
        &[(A, udp(POD_A, GW_MAC, [10, 244, 1, 2], [172, 16, 0, 1], 64))],
    );
    assert_checksums_valid(&out[0].0);
    let sliced = SlicedPacket::from_ethernet(&out[0].0).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = sliced.transport else {
        panic!()
    };
    assert!(matches!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(_)
    ));
    // An ICMP error toward nowhere produces nothing.
    let mut quoted = out[0].0.clone();
    quoted[..6].copy_from_slice(&GW_MAC);
    quoted[6..12].copy_from_slice(&POD_A);
    let mut ip = crate::wire::Ipv4Packet::new_checked(&mut quoted[14..]).unwrap();
    ip.set_src_addr(Ipv4Addr::new(10, 244, 1, 2));
    ip.set_dst_addr(Ipv4Addr::new(172, 16, 0, 1));
    ip.fill_checksum();
    let out = run(&mut p, 0, &[(A, quoted)]);
    assert_eq!(out[0].1, Verdict::Consumed);
    assert_eq!(p.counters().drops(DropReason::NoRoute), 2);
    assert_eq!(p.counters().events(Event::IcmpErrorSent), 1);
}

#[test]
fn ipv4_checks() {
    let mut p = pipeline();
    let mut bad = udp(POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 2, 5], 64);
    bad[14 + 10] ^= 0xff;
    let mcast = udp(POD_A, GW_MAC, [10, 244, 1, 2], [224, 0, 0, 1], 64);
    let out = run(&mut p, 0, &[(A, bad), (A, mcast)]);
    assert_eq!(out[0].1, Verdict::Drop(DropReason::Ipv4BadChecksum));
    assert_eq!(out[1].1, Verdict::Drop(DropReason::Ipv4BadAddress));
}

#[test]
fn uplink_only_takes_its_own_frames() {
    let mut p = pipeline();
    let other = udp(
        ROUTER,
        [2, 0, 0, 0, 0, 0x99],
        [192, 168, 100, 2],
        [10, 244, 1, 2],
        64,
    );
    let arp_us = arp(
        1,
        ROUTER,
        [192, 168, 100, 2],
        [0; 6],
        [192, 168, 100, 1],
        [0xff; 6],
    );
    let out = run(&mut p, 0, &[(UP, other), (UP, arp_us)]);
    assert_eq!(out[0].1, Verdict::Drop(DropReason::NotForUs));
    assert_eq!(out[1].1, Verdict::Forward(UP));
}

#[test]
fn anti_spoofing_drops_foreign_sources() {
    let mut p = Pipeline::new(snapshot_with(true), Arc::default(), 2048);
    let good = udp(POD_A, POD_B, [10, 244, 1, 2], [10, 244, 1, 3], 64);
    let bad_mac = udp(
        [2, 0, 0, 0, 0, 0x66],
        POD_B,
        [10, 244, 1, 2],
        [10, 244, 1, 3],
        64,
    );
    let bad_ip = udp(POD_A, POD_B, [10, 244, 1, 66], [10, 244, 1, 3], 64);
    let arp_bad_ip = arp(
        1,
        POD_A,
        [10, 244, 1, 66],
        [0; 6],
        [10, 244, 1, 1],
        [0xff; 6],
    );
    let arp_bad_sha = arp(
        1,
        [2, 0, 0, 0, 0, 0x66],
        [10, 244, 1, 2],
        [0; 6],
        [10, 244, 1, 1],
        [0xff; 6],
    );
    let arp_probe = arp(1, POD_A, [0, 0, 0, 0], [0; 6], [10, 244, 1, 2], [0xff; 6]);
    let frames = [good, bad_mac, bad_ip, arp_bad_ip, arp_bad_sha, arp_probe].map(|f| (A, f));
    let out = run(&mut p, 0, &frames);
    let verdicts: Vec<Verdict> = out.iter().map(|o| o.1).collect();
    assert_eq!(
        verdicts,
        vec![
            Verdict::Flood,
            Verdict::Drop(DropReason::SpoofedSrcMac),
            Verdict::Drop(DropReason::SpoofedSrcIp),
            Verdict::Drop(DropReason::SpoofedSrcIp),
            Verdict::Drop(DropReason::SpoofedSrcMac),
            Verdict::Flood,
        ]
    );
    assert_eq!(p.counters().drops(DropReason::SpoofedSrcMac), 2);
    assert_eq!(p.counters().drops(DropReason::SpoofedSrcIp), 2);
    // The uplink has no assigned MAC: anything goes there.
    let out = run(
        &mut p,
        1,
        &[(
            UP,
            udp(ROUTER, UP_MAC, [192, 168, 100, 2], [10, 244, 1, 2], 64),
        )],
    );
    assert_ne!(out[0].1, Verdict::Drop(DropReason::SpoofedSrcMac));
}

// mirror: the ingress and drop hooks of `process` (issue 8).
#[test]
fn mirror_hooks_copy_ingress_and_drops_with_their_reason() {
    use crate::mirror::{MirrorQueue, MirrorStage, PortSelection, Session};
    let shared: Arc<SharedTables> = Arc::default();
    let mut p = Pipeline::new(snapshot(), Arc::clone(&shared), 2048);
    let good = udp(POD_A, POD_B, [10, 244, 1, 2], [10, 244, 1, 3], 64);
    let bad = udp(GW_MAC, POD_B, [10, 244, 1, 2], [10, 244, 1, 3], 64);
    // No session: nothing is active, nothing copied.
    run(&mut p, 0, &[(A, good.clone())]);
    assert!(MirrorStage::ALL.iter().all(|s| !p.mirror_active(*s)));

    let (queue, session) = crate::mirror::tests::session(
        "t",
        PortSelection::of(&[A]),
        &[MirrorStage::Ingress, MirrorStage::Drop],
    );
    shared.mirrors.add(Arc::clone(&session));
    let generation = p.snapshot().generation;
    run(
        &mut p,
        1,
        &[(A, good.clone()), (A, bad.clone()), (B, good.clone())],
    );
    assert_eq!(
        p.snapshot().generation,
        generation,
        "sessions are not config"
    );
    let mut got = Vec::new();
    while let Some(r) = queue.pop() {
        got.push((r.data().to_vec(), r.note));
        queue.recycle(r);
    }
    assert_eq!(got.len(), 3, "two ingress copies from port A, one drop");
    assert_eq!(got[0].0, good);
    assert_eq!(got[0].1.stage, MirrorStage::Ingress);
    assert_eq!(got[1].0, bad);
    assert_eq!(got[1].1.stage, MirrorStage::Ingress);
    assert_eq!(got[2].0, bad);
    assert_eq!(got[2].1.stage, MirrorStage::Drop);
    assert_eq!(got[2].1.drop_reason(), Some(DropReason::SrcMacIsOurs));
    assert!(got.iter().all(|(_, n)| n.in_port == A));

    // A drop answered with an ICMP error is a drop too: the original is copied.
    let expired = udp(POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 2, 5], 1);
    let out = run(&mut p, 2, &[(A, expired.clone())]);
    assert_eq!(out[0].1, Verdict::Forward(A), "the ICMP error goes back");
    let mut got = Vec::new();
    while let Some(r) = queue.pop() {
        got.push((r.data().to_vec(), r.note));
        queue.recycle(r);
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1.stage, MirrorStage::Ingress);
    assert_eq!(got[1].0, expired);
    assert_eq!(got[1].1.drop_reason(), Some(DropReason::TtlExpired));

    shared.mirrors.remove(&session);
    run(&mut p, 2, &[(A, bad)]);
    assert!(queue.pop().is_none());

    // A consumer that is behind: copies are dropped and counted, frames are not.
    let slow = Arc::new(Session::new(
        "slow",
        crate::mirror::tests::spec(PortSelection::All, &[MirrorStage::Ingress]),
        Arc::new(MirrorQueue::new(1, 2048)),
    ));
    shared.mirrors.add(Arc::clone(&slow));
    let out = run(
        &mut p,
        3,
        &[(A, good.clone()), (A, good.clone()), (A, good)],
    );
    assert!(out.iter().all(|(_, v)| *v == Verdict::Flood), "{out:?}");
    assert_eq!((slow.counts().frames, slow.counts().dropped), (1, 2));
    assert_eq!(p.counters().events(Event::MirrorDropped), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(
        frames in proptest::collection::vec((0u16..4, proptest::collection::vec(any::<u8>(), 0..200)), 1..8),
        prefix in 0usize..4,
        now in any::<u64>(),
    ) {
        // Give some frames a plausible header so deeper stages are reached.
        let heads: [&[u8]; 4] = [&[], &GW_MAC, &POD_B, &UP_MAC];
        let mut p = pipeline();
        let mut batch = Batch::with_size(8, 2048);
        let n_ports = p.snapshot().ports.len();
        for (port, bytes) in &frames {
            let mut f = heads[prefix].to_vec();
            f.extend_from_slice(bytes);
            if f.len() > 14 && f.len().is_multiple_of(3) { f[12] = 0x08; f[13] = 0x00; f[14] = 0x45; }
            batch.push_rx(PortId(*port), now, &f);
        }
        p.process(&mut batch, now);
        for (_, v) in batch.iter() {
            if let Verdict::Forward(port) = v {
                prop_assert!(usize::from(port.0) < n_ports);
            }
            prop_assert_ne!(v, Verdict::Drop(DropReason::NotProcessed));
        }
    }
}

mod echo_fragments;
mod ipv6_guard;
mod mtu;
mod shared_uplink;
