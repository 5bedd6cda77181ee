//! Super-frames across the overlay: segmented before encapsulation,
//! coalesced after decapsulation.

use super::*;

fn tcp_super_frame(payload_len: usize) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(POD_A, GW_MAC)
        .ipv4([10, 244, 1, 2], [10, 244, 2, 7], 64)
        .tcp(40000, 5001, 1_000_000, 64000)
        .ack(7)
        .psh();
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
    let mut out = Vec::new();
    builder.write(&mut out, &payload).unwrap();
    out
}

#[test]
fn gso_super_frame_is_segmented_before_encapsulation() {
    let mut p = resolved_pipeline("");
    let bytes = tcp_super_frame(20_000);
    let mut batch = Batch::with_size(4, MAX_FRAME_LEN);
    assert!(batch.push_rx(A, 2, &bytes));
    {
        let f = batch.frame_mut(0);
        // As a TAP hands it over: TSO with a partial checksum (pseudo-header sum only).
        let pseudo = crate::wire::checksum::pseudo_header_v4(
            [10, 244, 1, 2].into(),
            [10, 244, 2, 7].into(),
            6,
            (bytes.len() - 34) as u32,
        );
        let folded = crate::wire::checksum::fold(pseudo);
        f.data_mut()[34 + 16..34 + 18].copy_from_slice(&folded.to_be_bytes());
        f.offload = Offload {
            gso: GsoKind::TcpV4,
            gso_size: 1398,
            hdr_len: 54,
            csum: Some((34, 16)),
            csum_valid: false,
        };
    }
    p.process(&mut batch, 2);
    let (frame, verdict) = batch.get(0).unwrap();
    assert_eq!(verdict, Verdict::Forward(UP));
    assert_eq!(frame.encap_len as usize, OUTER_LEN);
    let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let n = segment_encapsulated(frame, &mut scratch, 1500, |s| {
        segments.push(s.data().to_vec())
    })
    .unwrap();
    assert_eq!(n, 20_000usize.div_ceil(1398));
    let mut payload = Vec::new();
    let mut first_id = None;
    for (k, s) in segments.iter().enumerate() {
        assert!(s.len() - 14 <= 1500, "segment {k} fits the underlay MTU");
        let (_, inner) = outer_and_inner(s);
        let (id, _) = assert_outer(s, inner.len(), false);
        let first = *first_id.get_or_insert(id);
        assert_eq!(id, first.wrapping_add(k as u16));
        assert_inner(inner, B_VTEP, 63);
        let sliced = SlicedPacket::from_ethernet(inner).unwrap();
        let Some(TransportSlice::Tcp(t)) = &sliced.transport else {
            panic!()
        };
        assert_eq!(t.sequence_number(), 1_000_000 + payload.len() as u32);
        assert_eq!(t.psh(), k == n - 1);
        payload.extend_from_slice(t.payload());
    }
    assert_eq!(payload, bytes[54..]);
}

#[test]
fn gso_segments_larger_than_the_tunnel_get_frag_needed() {
    let mut p = resolved_pipeline("");
    let bytes = tcp_super_frame(10_000);
    let mut batch = Batch::with_size(4, MAX_FRAME_LEN);
    assert!(batch.push_rx(A, 2, &bytes));
    batch.frame_mut(0).offload = Offload {
        gso: GsoKind::TcpV4,
        gso_size: 1448,
        hdr_len: 54,
        csum: None,
        csum_valid: false,
    };
    p.process(&mut batch, 2);
    let (frame, verdict) = batch.get(0).unwrap();
    assert_eq!(verdict, Verdict::Forward(A));
    let sliced = SlicedPacket::from_ethernet(frame.data()).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
        panic!()
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1450
        })
    );
}

/// The wire frames the worker's segmenter cuts `frame` into.
pub(super) fn segments_of(frame: &[u8], offload: &Offload) -> Vec<Vec<u8>> {
    let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
    let mut segments = Vec::new();
    crate::io::gso::segment(frame, offload, &mut scratch, |s| {
        segments.push(s.data().to_vec());
        Ok::<(), crate::io::gso::GsoError>(())
    })
    .unwrap();
    segments
}

/// Node-b's pod sent a TSO super-frame; it crosses the underlay as
/// segments in VXLAN and is merged back into one GSO frame for pod-a.
#[test]
fn decapsulated_segments_of_a_flow_are_coalesced() {
    let mut p = resolved_pipeline("");
    let builder = PacketBuilder::ethernet2(B_VTEP, OUR_VTEP)
        .ipv4([10, 244, 2, 7], [10, 244, 1, 2], 64)
        .tcp(5001, 40000, 7_000_000, 64000)
        .ack(9)
        .psh();
    let payload: Vec<u8> = (0..16 * 1398 + 100).map(|i| (i * 13) as u8).collect();
    let mut inner = Vec::new();
    builder.write(&mut inner, &payload).unwrap();
    let offload = Offload {
        gso: GsoKind::TcpV4,
        gso_size: 1398,
        hdr_len: 54,
        csum: None,
        csum_valid: false,
    };
    let segments = segments_of(&inner, &offload);
    assert_eq!(segments.len(), 17);
    let mut batch = Batch::with_size(32, MAX_FRAME_LEN);
    // An unrelated frame first: a run starts at any position.
    assert!(batch.push_rx(
        UP,
        2,
        &vxlan_packet(
            NODE_B,
            VNI,
            0x08,
            &inner_udp(OUR_VTEP, [10, 244, 2, 7], [10, 244, 1, 2])
        )
    ));
    for s in &segments {
        assert!(batch.push_rx(UP, 2, &vxlan_packet(NODE_B, VNI, 0x08, s)));
    }
    p.process(&mut batch, 2);
    let verdicts: Vec<Verdict> = batch.iter().map(|(_, v)| v).collect();
    assert_eq!(verdicts[0], Verdict::Forward(A));
    assert_eq!(verdicts[1], Verdict::Forward(A));
    assert!(
        verdicts[2..18].iter().all(|v| *v == Verdict::Consumed),
        "{verdicts:?}"
    );
    assert_eq!(p.counters().events(Event::VxlanRxCoalesced), 16);
    let (merged, _) = batch.get(1).unwrap();
    assert_eq!(merged.offload.gso, GsoKind::TcpV4);
    assert_eq!(merged.offload.gso_size, 1398);
    // Cut again, it gives exactly the segments, routed (MACs, TTL − 1).
    let again = segments_of(merged.data(), &merged.offload);
    assert_eq!(again.len(), segments.len());
    for (got, sent) in again.iter().zip(&segments) {
        assert_eq!(&got[..12], &[POD_A, GW_MAC].concat()[..]);
        assert_eq!(got[22], sent[22] - 1, "TTL − 1");
        assert_eq!(&got[34..], &sent[34..], "TCP header and payload");
        assert_eq!(&got[14..22], &sent[14..22]);
        let sliced = SlicedPacket::from_ethernet(got).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!()
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
    }
}

#[test]
fn segments_that_do_not_continue_a_run_are_left_alone() {
    let mut p = resolved_pipeline("");
    let seg = |seq: u32, flags_psh: bool, len: usize| {
        let b = PacketBuilder::ethernet2(B_VTEP, OUR_VTEP)
            .ipv4([10, 244, 2, 7], [10, 244, 1, 2], 64)
            .tcp(5001, 40000, seq, 64000)
            .ack(9);
        let b = if flags_psh { b.psh() } else { b };
        let mut out = Vec::new();
        b.write(&mut out, &vec![7u8; len]).unwrap();
        vxlan_packet(NODE_B, VNI, 0x08, &out)
    };
    // A gap in sequence, a PSH head, a larger second segment: nothing merges.
    for frames in [
        vec![seg(1000, false, 500), seg(1600, false, 500)],
        vec![seg(1000, true, 500), seg(1500, false, 500)],
        vec![seg(1000, false, 500), seg(1500, false, 600)],
    ] {
        let mut batch = Batch::with_size(8, MAX_FRAME_LEN);
        for f in &frames {
            assert!(batch.push_rx(UP, 2, f));
        }
        p.process(&mut batch, 2);
        assert!(
            batch
                .iter()
                .all(|(f, v)| v == Verdict::Forward(A) && f.offload.gso == GsoKind::None)
        );
    }
    assert_eq!(p.counters().events(Event::VxlanRxCoalesced), 0);
}

/// A pod's TSO super-frame of `payload_len` bytes as its TAP hands it over
/// (partial TCP checksum), encapsulated with `udp_checksum` as a template.
fn encapsulated_tso(payload_len: usize, udp_checksum: bool) -> Frame {
    let bytes = tcp_super_frame(payload_len);
    let mut frame = Frame::with_capacity(MAX_FRAME_LEN);
    assert!(frame.fill(&bytes));
    let pseudo = crate::wire::checksum::pseudo_header_v4(
        [10, 244, 1, 2].into(),
        [10, 244, 2, 7].into(),
        6,
        (bytes.len() - 34) as u32,
    );
    let folded = crate::wire::checksum::fold(pseudo);
    frame.data_mut()[34 + 16..34 + 18].copy_from_slice(&folded.to_be_bytes());
    frame.offload = Offload {
        gso: GsoKind::TcpV4,
        gso_size: 1398,
        hdr_len: 54,
        csum: Some((34, 16)),
        csum_valid: false,
    };
    let params = EncapParams {
        src_mac: MacAddr(UP_MAC),
        dst_mac: MacAddr(NODE_B_MAC),
        src_ip: OUR_IP.into(),
        dst_ip: NODE_B.into(),
        src_port: 40000,
        dst_port: 4789,
        vni: 7,
        ip_id: 100,
        tos: 0,
        df: false,
        udp_checksum,
    };
    encap::encapsulate(&mut frame, &params).unwrap();
    frame
}

#[test]
fn gso_super_frame_is_readied_to_leave_whole() {
    for udp_checksum in [false, true] {
        let frame = encapsulated_tso(20_000, udp_checksum);
        let mut outer = [0u8; OUTER_LEN];
        let whole = whole_super_frame(&frame, &mut outer).unwrap();
        // Offsets from the outer Ethernet header, as the tunnel vnet header
        // names them: inner TCP at 84, its header ends at 104.
        assert_eq!(
            whole.offload,
            Offload {
                gso: GsoKind::TcpV4,
                gso_size: 1398,
                hdr_len: 104,
                csum: Some((84, 16)),
                csum_valid: false,
            }
        );
        assert_eq!(
            whole.tunnel,
            crate::io::vnet::TunnelOffsets {
                outer_l4: 34,
                inner_l3: 64,
                outer_ipv6: false,
                outer_udp_checksum: udp_checksum,
            }
        );
        let mut wire = outer.to_vec();
        wire.extend_from_slice(&frame.data()[OUTER_LEN..]);
        // Outer lengths cover the whole frame; the IPv4 header checks.
        let outer_ip = SlicedPacket::from_ethernet(&wire).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &outer_ip.net else {
            panic!("outer IPv4")
        };
        assert_eq!(usize::from(ip.header().total_len()), wire.len() - 14);
        assert_eq!(ip.header().identification(), 100);
        assert_eq!(crate::wire::checksum::checksum(&wire[14..34]), 0);
        assert_eq!(
            u16::from_be_bytes([wire[38], wire[39]]) as usize,
            wire.len() - 34
        );
        // The outer UDP checksum is the pseudo-header sum of the whole
        // frame (each segment's is finished by whoever cuts it), or 0.
        let pseudo = crate::wire::checksum::pseudo_header_v4(
            OUR_IP.into(),
            NODE_B.into(),
            17,
            (wire.len() - 34) as u32,
        );
        let expected = if udp_checksum {
            crate::wire::checksum::fold(pseudo)
        } else {
            0
        };
        assert_eq!(u16::from_be_bytes([wire[40], wire[41]]), expected);
        // The receiver's parser of kernel tunnel GSO frames takes it.
        let legacy = Offload {
            hdr_len: 104,
            ..whole.offload
        };
        let layout = crate::io::gso::tunnel::parse_vxlan(&wire, &legacy).unwrap();
        assert_eq!(
            (layout.inner_l3, layout.inner_l4, layout.inner_payload),
            (64, 84, 104)
        );
        assert_eq!(layout.segments, 20_000usize.div_ceil(1398));
        assert_eq!(layout.outer_udp_checksum, udp_checksum);
        // The inner frame is untouched.
        assert_eq!(&wire[OUTER_LEN..], &frame.data()[OUTER_LEN..]);
    }
}

#[test]
fn what_cannot_leave_whole_is_left_to_software() {
    let mut outer = [0u8; OUTER_LEN];
    // One segment: nothing to cut, and Linux would not make it GSO.
    let single = encapsulated_tso(1398, false);
    assert_eq!(whole_super_frame(&single, &mut outer), None);
    let mut no_csum = encapsulated_tso(20_000, false);
    no_csum.offload.csum = None;
    assert_eq!(whole_super_frame(&no_csum, &mut outer), None);
    let mut not_tcp_checksum = encapsulated_tso(20_000, false);
    not_tcp_checksum.offload.csum = Some((34, 6));
    assert_eq!(whole_super_frame(&not_tcp_checksum, &mut outer), None);
    let mut udp = encapsulated_tso(20_000, false);
    udp.offload.gso = GsoKind::UdpL4;
    assert_eq!(whole_super_frame(&udp, &mut outer), None);
    let mut v6 = encapsulated_tso(20_000, false);
    v6.offload.gso = GsoKind::TcpV6;
    assert_eq!(whole_super_frame(&v6, &mut outer), None);
    let mut plain = encapsulated_tso(20_000, false);
    plain.encap_len = 0;
    assert_eq!(whole_super_frame(&plain, &mut outer), None);
}
