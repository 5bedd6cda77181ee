//! Datagrams to and from services in fragments (issue 25 A1): reassembled
//! before the NAT stage, translated whole and translated back whole, as
//! Linux does (defragmentation before conntrack). The output cuts them to
//! the port's MTU again (`io::fragment`, tested in the worker).

use super::*;
use crate::packet::MAX_FRAME_LEN;
use crate::wire::testdata::cut_into_fragments;

/// Runs `frames` as one batch with frame buffers as large as the worker's;
/// returns every output.
fn run(n: &mut Node, frames: &[(PortId, Vec<u8>)]) -> Vec<(Vec<u8>, Verdict)> {
    n.now += 1_000_000;
    let mut batch = Batch::with_size(frames.len().max(1), MAX_FRAME_LEN);
    for (port, frame) in frames {
        assert!(batch.push_rx(*port, n.now, frame));
    }
    n.p.process(&mut batch, n.now);
    batch.iter().map(|(f, v)| (f.data().to_vec(), v)).collect()
}

/// `datagram` cut into fragments of at most 1,500 bytes (identification
/// `id`) entering on `port`, one batch; returns the one output the last
/// fragment made, the others having been taken in.
fn fragments_through(n: &mut Node, port: PortId, datagram: &[u8], id: u16) -> (Vec<u8>, Verdict) {
    let fragments: Vec<_> = cut_into_fragments(datagram, id, 1500)
        .into_iter()
        .map(|f| (port, f))
        .collect();
    assert!(fragments.len() > 1);
    let mut out = run(n, &fragments);
    assert_eq!(out.len(), fragments.len(), "{:?}", out.last().map(|o| o.1));
    let last = out.pop().unwrap();
    assert!(out.iter().all(|(_, v)| *v == Verdict::Consumed));
    last
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

#[test]
fn a_datagram_to_a_cluster_ip_in_fragments_is_translated_whole() {
    for size in [3000, 9000] {
        let mut n = Node::new();
        let payload = data(size - 28);
        let request = udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), &payload);
        let (frame, verdict) = fragments_through(&mut n, A, &request, 77);
        assert_eq!(verdict, Verdict::Forward(B), "{size}");
        let f = facts(&frame);
        assert_eq!((f.src, f.dst), (CLIENT, (IP_B, 5353)));
        assert_eq!((f.src_mac, f.dst_mac, f.ttl), (GW_MAC, MAC_B, 63));
        assert_eq!(f.payload, payload);
        assert_eq!(n.events(Event::Dnat), 1);
        assert_eq!(n.events(Event::Ipv4Reassembled), 1);
        // The endpoint's answer, in fragments straight to A at L2, goes
        // back whole from the service's address.
        let answer = udp((MAC_B, MAC_A), (IP_B, 5353), CLIENT, &payload);
        let (frame, verdict) = fragments_through(&mut n, B, &answer, 78);
        assert_eq!(verdict, Verdict::Forward(A));
        let f = facts(&frame);
        assert_eq!((f.src, f.dst), ((DNS, 53), CLIENT));
        assert_eq!((f.src_mac, f.dst_mac), (GW_MAC, MAC_A));
        assert_eq!(f.payload, payload);
        assert_eq!(n.events(Event::ReverseNat), 1);
    }
}

#[test]
fn a_masqueraded_datagram_and_its_answer_in_fragments() {
    let mut n = Node::new();
    let payload = data(5000);
    let out = udp((MAC_A, GW_MAC), CLIENT, (REMOTE, 9999), &payload);
    let (frame, verdict) = fragments_through(&mut n, A, &out, 5);
    assert_eq!(verdict, Verdict::Forward(UP));
    let f = facts(&frame);
    assert_eq!((f.src.0, f.dst), (NODE, (REMOTE, 9999)));
    assert_eq!(f.payload, payload);
    let node_port = f.src.1;
    // The answer arrives by the uplink in fragments (a TAP uplink, or
    // from another node's tunnel, hands them over as they came).
    let back = udp(
        (ROUTER, UP_MAC),
        (REMOTE, 9999),
        (NODE, node_port),
        &payload,
    );
    let (frame, verdict) = fragments_through(&mut n, UP, &back, 6);
    assert_eq!(verdict, Verdict::Forward(A));
    let f = facts(&frame);
    assert_eq!((f.src, f.dst), ((REMOTE, 9999), CLIENT));
    assert_eq!(f.payload, payload);
}

#[test]
fn fragments_in_any_order_and_over_several_batches() {
    let mut n = Node::new();
    let payload = data(9000);
    let request = udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), &payload);
    let mut fragments = cut_into_fragments(&request, 9, 1500);
    fragments.reverse();
    let last = fragments.pop().unwrap();
    for f in fragments {
        assert_eq!(run(&mut n, &[(A, f)])[0].1, Verdict::Consumed);
    }
    let out = run(&mut n, &[(A, last)]);
    assert_eq!(out[0].1, Verdict::Forward(B));
    assert_eq!(facts(&out[0].0).payload, payload);
}

#[test]
fn overlapping_and_incomplete_datagrams_are_dropped_and_counted() {
    let mut n = Node::new();
    let request = udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), &data(2972));
    // The same datagram cut two ways: the second cut's middle piece
    // overlaps the first cut's first piece in part.
    let one = cut_into_fragments(&request, 3, 1500);
    let other = cut_into_fragments(&request, 3, 1000);
    let out = run(&mut n, &[(A, one[0].clone()), (A, other[1].clone())]);
    assert_eq!(out[0].1, Verdict::Consumed);
    assert_eq!(out[1].1, Verdict::Drop(DropReason::FragmentOverlap));
    assert_eq!(n.drops(DropReason::FragmentOverlap), 2);
    // Nothing of it left: its last piece starts another datagram, which
    // times out after 30 s.
    assert_eq!(run(&mut n, &[(A, one[2].clone())])[0].1, Verdict::Consumed);
    n.now += 31 * SEC;
    run(&mut n, &[]);
    assert_eq!(n.drops(DropReason::FragmentTimeout), 1);
    assert_eq!(n.events(Event::Dnat), 0);
}
