//! Fragments and the tunnel: a packet without DF too long for the tunnel
//! goes in inner fragments that fit it; a VXLAN packet whose outer packet
//! the underlay fragmented is reassembled before it is decapsulated.

use etherparse::defrag::IpDefragPool;

use super::*;

/// The datagram etherparse's defragmenter makes of `inners` (inner frames).
fn defragment(inners: &[&[u8]]) -> Vec<u8> {
    let mut pool: IpDefragPool = IpDefragPool::new();
    let mut whole = None;
    for inner in inners {
        let sliced = SlicedPacket::from_ethernet(inner).unwrap();
        if let Some(done) = pool.process_sliced_packet(&sliced, (), ()).unwrap() {
            assert!(whole.is_none(), "one datagram");
            whole = Some(done.payload);
        }
    }
    whole.expect("the fragments make a datagram")
}

#[test]
fn a_packet_without_df_too_long_for_the_tunnel_goes_in_inner_fragments() {
    let mut p = resolved_pipeline("");
    // 3,000 bytes of IP: more than twice the tunnel's 1,450.
    let frame = udp_frame([10, 244, 2, 7], 2972, false);
    let mut batch = Batch::with_size(4, MAX_FRAME_LEN);
    assert!(batch.push_rx(A, 2, &frame));
    p.process(&mut batch, 2);
    let (encapsulated, verdict) = batch.get(0).unwrap();
    assert_eq!(verdict, Verdict::Forward(UP));
    assert_eq!(usize::from(encapsulated.encap_len), OUTER_LEN);
    assert_eq!(p.counters().events(Event::Ipv4Fragmented), 1);
    assert_eq!(p.counters().drops(DropReason::VxlanTooBig), 0);
    let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
    let mut outer = Vec::new();
    let n = segment_encapsulated(encapsulated, &mut scratch, 1500, |s| {
        outer.push(s.data().to_vec())
    })
    .unwrap();
    assert_eq!(n, 3);
    let mut inners = Vec::new();
    let mut first_id = None;
    for (k, o) in outer.iter().enumerate() {
        assert!(o.len() - 14 <= 1500, "outer packet {k} fits the uplink");
        let (_, inner) = outer_and_inner(o);
        let (id, _) = assert_outer(o, inner.len(), false);
        assert_eq!(id, first_id.get_or_insert(id).wrapping_add(k as u16));
        assert!(
            inner.len() - 14 <= 1450,
            "inner fragment {k} fits the tunnel"
        );
        let h = etherparse::Ipv4Header::from_slice(&inner[14..]).unwrap().0;
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert_eq!(h.time_to_live, 63);
        inners.push(inner);
    }
    assert_eq!(defragment(&inners), frame[34..]);
    // The next packet's outer identification follows the fragments'.
    let out = run(&mut p, 3, &[(A, udp_frame([10, 244, 2, 7], 100, false))]);
    let (id, _) = assert_outer(&out[0].0, out[0].0.len() - OUTER_LEN, false);
    assert_eq!(id, first_id.unwrap().wrapping_add(3));
}

/// A VXLAN packet from node B around a 1,400-byte UDP datagram for pod A,
/// its outer packet cut into fragments of at most `mtu` bytes, as a
/// kernel vxlan peer whose underlay MTU is small sends it.
fn outer_fragments(mtu: usize, id: u16) -> (Vec<u8>, Vec<Vec<u8>>) {
    let payload: Vec<u8> = (0..1400).map(|i| (i * 3) as u8).collect();
    let mut inner = Vec::new();
    PacketBuilder::ethernet2(B_VTEP, OUR_VTEP)
        .ipv4([10, 244, 2, 7], [10, 244, 1, 2], 63)
        .udp(5353, 7777)
        .write(&mut inner, &payload)
        .unwrap();
    let outer = vxlan_packet(NODE_B, VNI, 0x08, &inner);
    let fragments = crate::wire::testdata::cut_into_fragments(&outer, id, mtu);
    (inner, fragments)
}

#[test]
fn a_vxlan_packet_in_outer_fragments_is_reassembled_then_decapsulated() {
    let mut p = resolved_pipeline("");
    let (inner, fragments) = outer_fragments(1000, 40);
    assert_eq!(fragments.len(), 2);
    // In order, in one batch.
    let input: Vec<_> = fragments.iter().map(|f| (UP, f.clone())).collect();
    let out = run(&mut p, 2, &input);
    assert_eq!(out[0].1, Verdict::Consumed);
    assert_eq!(out[1].1, Verdict::Forward(A));
    let f = &out[1].0;
    assert_eq!((&f[..6], &f[6..12]), (&POD_A[..], &GW_MAC[..]));
    assert_eq!(f[14 + 8], 62, "inner TTL − 1");
    assert_eq!(&f[14 + 20..], &inner[14 + 20..]);
    // Reversed, one per batch, and cut smaller: the same.
    let (_, mut fragments) = outer_fragments(576, 41);
    assert_eq!(fragments.len(), 3);
    fragments.reverse();
    let mut last = Vec::new();
    for (k, f) in fragments.into_iter().enumerate() {
        last = run(&mut p, 3 + k as u64, &[(UP, f)]);
    }
    assert_eq!(last[0].1, Verdict::Forward(A));
    assert_eq!(&last[0].0[14 + 20..], &inner[14 + 20..]);
    assert_eq!(p.counters().events(Event::Ipv4Reassembled), 2);
    assert_eq!(p.counters().events(Event::VxlanDecapsulated), 2);
    assert_eq!(p.counters().drops(DropReason::VxlanFragmented), 0);
}

#[test]
fn outer_fragments_that_never_complete_time_out() {
    let mut p = resolved_pipeline("");
    let (_, fragments) = outer_fragments(1000, 50);
    let out = run(&mut p, 2, &[(UP, fragments[1].clone())]);
    assert_eq!(out[0].1, Verdict::Consumed);
    run(&mut p, 31_000_000_000, &[]);
    assert_eq!(p.counters().drops(DropReason::FragmentTimeout), 1);
    assert_eq!(p.counters().events(Event::VxlanDecapsulated), 0);
}
