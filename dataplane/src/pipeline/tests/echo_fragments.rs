//! A fragmented echo request to the gateway (`ping -s 3000`) is
//! reassembled and answered in fragments that fit the pod's MTU.

use super::*;

const POD_IP: [u8; 4] = [10, 244, 1, 2];
const GW_IP: [u8; 4] = [10, 244, 1, 1];

/// An echo request with `len` bytes of data from pod A to the gateway,
/// cut into fragments of at most `mtu` bytes (IP identification `id`),
/// as `ping -s len` sends it.
fn fragmented_ping(len: usize, id: u16, mtu: usize) -> Vec<Vec<u8>> {
    let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    let mut whole = Vec::new();
    PacketBuilder::ethernet2(POD_A, GW_MAC)
        .ipv4(POD_IP, GW_IP, 64)
        .icmpv4_echo_request(0x77, 3)
        .write(&mut whole, &data)
        .unwrap();
    cut_into_fragments(&whole, id, mtu)
}

/// The datagram the fragments among `out` sent to pod A make, checked:
/// each from the gateway's MAC and address to the pod's, at most `mtu`
/// bytes, its header checksum right, one identification, one last
/// fragment. Returns the ICMP message.
fn reassemble_replies(out: &[(Vec<u8>, Verdict)], mtu: usize) -> Vec<u8> {
    let mut parts: Vec<(usize, bool, Vec<u8>)> = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (frame, verdict) in out {
        if *verdict != Verdict::Forward(A) {
            continue;
        }
        assert_eq!((&frame[..6], &frame[6..12]), (&POD_A[..], &GW_MAC[..]));
        let (h, rest) = etherparse::Ipv4Header::from_slice(&frame[14..]).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert!(usize::from(h.total_len) <= mtu, "{} > {mtu}", h.total_len);
        assert_eq!((h.source, h.destination), (GW_IP, POD_IP));
        ids.insert(h.identification);
        let offset = usize::from(h.fragment_offset.value()) * 8;
        parts.push((offset, h.more_fragments, rest.to_vec()));
    }
    assert_eq!(ids.len(), 1, "one datagram");
    parts.sort_by_key(|p| p.0);
    assert_eq!(
        parts.iter().filter(|p| !p.1).count(),
        1,
        "one last fragment"
    );
    let mut icmp = Vec::new();
    for (offset, _, bytes) in parts {
        assert_eq!(offset, icmp.len(), "fragments follow each other");
        icmp.extend_from_slice(&bytes);
    }
    icmp
}

/// Checks `icmp` is the echo reply to [`fragmented_ping`] of `len` bytes.
fn assert_echo_reply(icmp: &[u8], len: usize) {
    let slice = etherparse::Icmpv4Slice::from_slice(icmp).unwrap();
    assert!(matches!(
        slice.icmp_type(),
        etherparse::Icmpv4Type::EchoReply(e) if e.id == 0x77 && e.seq == 3
    ));
    assert_eq!(
        slice.checksum(),
        slice.icmp_type().calc_checksum(slice.payload())
    );
    let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
    assert_eq!(slice.payload(), &data[..]);
}

#[test]
fn ping_of_3000_bytes_to_the_gateway_is_answered_in_fragments() {
    let mut p = pipeline();
    let fragments = fragmented_ping(3000, 41, 1500);
    assert_eq!(fragments.len(), 3);
    let input: Vec<_> = fragments.iter().map(|f| (A, f.clone())).collect();
    let out = run(&mut p, SEC, &input);
    assert!(out[..3].iter().all(|(_, v)| *v == Verdict::Consumed));
    assert_eq!(out.len(), 6);
    assert_echo_reply(&reassemble_replies(&out, 1500), 3000);
    assert_eq!(p.counters().events(Event::IcmpEchoReplySent), 1);
    // Out of order, one per batch: the same answer.
    let mut out = Vec::new();
    for f in fragmented_ping(3000, 42, 1500).into_iter().rev() {
        out.extend(run(&mut p, 2 * SEC, &[(A, f)]));
    }
    assert_echo_reply(&reassemble_replies(&out, 1500), 3000);
}

#[test]
fn a_reply_of_more_fragments_than_a_batch_holds_goes_out_over_batches() {
    let mut p = pipeline();
    let fragments = fragmented_ping(20_000, 7, 1500);
    assert_eq!(fragments.len(), 14);
    let mut out = Vec::new();
    for chunk in fragments.chunks(8) {
        let input: Vec<_> = chunk.iter().map(|f| (A, f.clone())).collect();
        out.extend(run(&mut p, SEC, &input));
    }
    // The rest leaves with the next batches, received frames or not.
    for _ in 0..3 {
        out.extend(run(&mut p, SEC, &[]));
    }
    assert_echo_reply(&reassemble_replies(&out, 1500), 20_000);
    // A pod with a smaller MTU gets smaller fragments.
    let mut cfg =
        NodeConfig::from_toml_str(include_str!("../../../../config/node.example.toml")).unwrap();
    cfg.ports[0].mtu = Some(1280);
    cfg.ports[0].ips.clear();
    let mut p = Pipeline::new(
        Arc::new(Snapshot::build(&cfg, 1).unwrap()),
        Arc::default(),
        2048,
    );
    let input: Vec<_> = fragmented_ping(3000, 8, 1280)
        .into_iter()
        .map(|f| (A, f))
        .collect();
    let out = run(&mut p, SEC, &input);
    assert_echo_reply(&reassemble_replies(&out, 1280), 3000);
}

#[test]
fn a_request_reassembled_before_us_gets_its_answer_in_fragments() {
    // An AF_PACKET fanout with PACKET_FANOUT_FLAG_DEFRAG gives the pipeline
    // the whole 3,028-byte request: the answer must still fit the MTU.
    let mut p = pipeline();
    let mut whole = Vec::new();
    let data: Vec<u8> = (0..3000).map(|i| (i * 7) as u8).collect();
    PacketBuilder::ethernet2(POD_A, GW_MAC)
        .ipv4(POD_IP, GW_IP, 64)
        .icmpv4_echo_request(0x77, 3)
        .write(&mut whole, &data)
        .unwrap();
    let mut batch = Batch::with_size(4, 4096);
    assert!(batch.push_rx(A, SEC, &whole));
    p.process(&mut batch, SEC);
    let out: Vec<_> = batch.iter().map(|(f, v)| (f.data().to_vec(), v)).collect();
    assert_eq!(out[0].1, Verdict::Consumed);
    assert_echo_reply(&reassemble_replies(&out, 1500), 3000);
}

#[test]
fn incomplete_overlapping_and_excess_fragments_are_dropped_and_counted() {
    let mut p = pipeline();
    let drops = |p: &Pipeline, r| p.counters().drops(r);
    // Two of three fragments, then nothing for 30 s: both dropped.
    let f = fragmented_ping(3000, 1, 1500);
    let out = run(&mut p, SEC, &[(A, f[0].clone()), (A, f[2].clone())]);
    assert!(out.iter().all(|(_, v)| *v == Verdict::Consumed));
    run(&mut p, 40 * SEC, &[]);
    assert_eq!(drops(&p, DropReason::FragmentTimeout), 2);
    // The missing one arriving later starts over, and times out too.
    run(&mut p, 41 * SEC, &[(A, f[1].clone())]);
    // A fragment overlapping another in part drops the datagram.
    let g = fragmented_ping(3000, 2, 1500);
    let mut overlap = fragmented_ping(3000, 2, 1508)[1].clone();
    overlap.truncate(14 + 20 + 16);
    overlap[16..18].copy_from_slice(&36u16.to_be_bytes());
    overlap[20..22].copy_from_slice(&(0x2000u16 | 184).to_be_bytes());
    let mut ip = crate::wire::Ipv4Packet::new_checked(&mut overlap[14..]).unwrap();
    ip.fill_checksum();
    let out = run(&mut p, 42 * SEC, &[(A, g[0].clone()), (A, overlap)]);
    assert_eq!(out[1].1, Verdict::Drop(DropReason::FragmentOverlap));
    assert_eq!(drops(&p, DropReason::FragmentOverlap), 2);
    run(&mut p, 80 * SEC, &[]);
    assert_eq!(drops(&p, DropReason::FragmentTimeout), 3);
    // More datagrams at once than it keeps: the oldest give way, counted
    // apart from those that time out.
    for id in 10..10 + 64u16 {
        run(
            &mut p,
            81 * SEC,
            &[(A, fragmented_ping(3000, id, 1500)[0].clone())],
        );
    }
    let slots = crate::pipeline::reassembly::SLOTS as u64;
    assert_eq!(drops(&p, DropReason::FragmentMemory), 64 - slots);
    assert_eq!(drops(&p, DropReason::FragmentTimeout), 3);
    run(&mut p, 120 * SEC, &[]);
    assert_eq!(drops(&p, DropReason::FragmentTimeout), 3 + slots);
    // Datagrams of other protocols to the gateway are refused once whole.
    let fragments = cut_into_fragments(&udp(POD_A, GW_MAC, POD_IP, GW_IP, 64), 9, 36);
    let input: Vec<_> = fragments.into_iter().map(|f| (A, f)).collect();
    let out = run(&mut p, 121 * SEC, &input);
    assert_eq!(out[0].1, Verdict::Consumed);
    assert_eq!(out[1].1, Verdict::Drop(DropReason::LocalUnsupported));
    assert_eq!(p.counters().events(Event::Ipv4Reassembled), 1);
}
