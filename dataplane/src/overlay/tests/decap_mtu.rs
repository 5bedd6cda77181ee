//! A decapsulated packet with DF too long for the local pod's port is
//! refused with ICMP fragmentation needed, sent back through the tunnel it
//! came by (issue 25, A7).

use super::*;

#[test]
fn a_decapsulated_packet_too_long_for_the_pod_is_refused_through_the_tunnel() {
    let mut cfg = config(OVERLAY);
    for p in &mut cfg.ports {
        if p.name == "pod-a" {
            p.mtu = Some(1280);
        }
    }
    let snapshot = Arc::new(Snapshot::build(&cfg, 1).unwrap());
    let mut p = Pipeline::new(snapshot, Arc::default(), MAX_FRAME_LEN);
    let learn_b = arp(2, NODE_B_MAC, NODE_B, OUR_IP, UP_MAC);
    let learn_a = arp(1, POD_A, [10, 244, 1, 2], [10, 244, 1, 1], [0xff; 6]);
    run(&mut p, 1, &[(UP, learn_b), (A, learn_a)]);
    // A 1,428-byte packet with DF from a pod on node-b (its tunnel takes 1,450).
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(B_VTEP, OUR_VTEP)
        .ipv4([10, 244, 2, 7], [10, 244, 1, 2], 63)
        .udp(5353, 7777)
        .write(&mut inner, &[3u8; 1400])
        .unwrap();
    let out = run(&mut p, 2, &[(UP, vxlan_packet(NODE_B, VNI, 0x08, &inner))]);
    assert_eq!(out[0].1, Verdict::Forward(UP));
    let (outer, error) = outer_and_inner(&out[0].0);
    let Some(NetSlice::Ipv4(outer_ip)) = &outer.net else {
        panic!()
    };
    assert_eq!(outer_ip.header().destination(), NODE_B);
    assert_inner(error, B_VTEP, 63);
    let sliced = SlicedPacket::from_ethernet(error).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source(), ip.header().destination()),
        ([10, 244, 1, 1], [10, 244, 2, 7])
    );
    let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1280
        })
    );
    assert_eq!(
        &icmp.payload()[..20],
        &inner[14..34],
        "the packet as node-b's pod sent it"
    );
    assert_eq!(p.counters().drops(DropReason::FragNeeded), 1);
}
