//! Fragments and the tunnel: a packet without DF too long for the tunnel
//! goes in inner fragments that fit it.

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
