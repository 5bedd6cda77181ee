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
