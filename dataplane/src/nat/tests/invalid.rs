//! Packets conntrack cannot read (Linux's INVALID, which kube-proxy drops):
//! broken TCP, UDP and ICMP headers, ICMP errors with an unreadable quote.

use super::*;

/// `frame` with its IPv4 packet cut to `l4_len` bytes after the IP header
/// (total length and header checksum fixed).
fn cut(mut frame: Vec<u8>, l4_len: usize) -> Vec<u8> {
    frame.truncate(14 + 20 + l4_len);
    let total = (20 + l4_len) as u16;
    frame[16..18].copy_from_slice(&total.to_be_bytes());
    let mut ip = crate::wire::Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
    ip.fill_checksum();
    frame
}

/// `frame` (TCP) with its data offset set to `words`.
fn data_offset(mut frame: Vec<u8>, words: u8) -> Vec<u8> {
    frame[14 + 20 + 12] = (words << 4) | (frame[14 + 20 + 12] & 0x0f);
    frame
}

#[test]
fn broken_tcp_and_udp_headers_to_a_cluster_ip_are_dropped_as_invalid() {
    let mut n = Node::new();
    let syn = || to_web(CLIENT, 100, Flags::Syn, b"");
    let mut broken = vec![
        data_offset(syn(), 0),
        data_offset(syn(), 2),
        data_offset(syn(), 6),
        data_offset(syn(), 15),
        cut(syn(), 0),
        cut(syn(), 4),
        cut(syn(), 19),
        cut(udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), b"query"), 7),
        cut(udp((MAC_A, GW_MAC), CLIENT, (DNS, 53), b"query"), 2),
    ];
    // Masqueraded traffic too: it would leave with the pod's address.
    broken.push(data_offset(
        tcp((MAC_A, GW_MAC), CLIENT, (REMOTE, 443), 1, Flags::Syn, b""),
        3,
    ));
    broken.push(cut(echo((MAC_A, GW_MAC), IP_A, REMOTE, 7, false), 5));
    let count = broken.len() as u64;
    for frame in broken {
        assert_eq!(n.verdict(A, frame), Verdict::Drop(DropReason::L4Malformed));
    }
    assert_eq!(n.drops(DropReason::L4Malformed), count);
    assert!(n.p.shared_tables().conntrack.is_empty());
    // A 24-byte header with its options present is fine.
    let mut options = to_web(CLIENT, 100, Flags::Syn, b"");
    options.splice(14 + 20 + 20..14 + 20 + 20, [1, 1, 1, 1]);
    let options = cut(data_offset(options, 6), 24);
    let out = n.send(A, options);
    assert_eq!(out[0].1, Verdict::Forward(B));
}

#[test]
fn icmp_errors_with_an_unreadable_quote_are_dropped_as_invalid() {
    let mut n = Node::new();
    handshake(&mut n, CLIENT);
    // B (web's endpoint) complains to A at L2 about what it received; a quote
    // too short for the ports would carry B's address to A untranslated.
    let seen_by_b = tcp(
        (GW_MAC, MAC_B),
        CLIENT,
        (IP_B, 8080),
        101,
        Flags::Ack(501),
        b"",
    );
    for quote in [0, 10, 20, 24, 27] {
        let err = icmp_error((MAC_B, MAC_A), IP_B, IP_A, (3, 3), &seen_by_b, quote);
        assert_eq!(
            n.verdict(B, err),
            Verdict::Drop(DropReason::L4Malformed),
            "quote of {quote} bytes"
        );
    }
    // Routed to the gateway, the same.
    let err = icmp_error((MAC_B, GW_MAC), IP_B, IP_A, (3, 3), &seen_by_b, 24);
    assert_eq!(n.verdict(B, err), Verdict::Drop(DropReason::L4Malformed));
    // 28 bytes (the IP header and 8 bytes) is enough, and translated.
    let err = icmp_error((MAC_B, MAC_A), IP_B, IP_A, (3, 3), &seen_by_b, 28);
    let out = n.through(B, err, A);
    assert_eq!(out.inner, Some((CLIENT, (WEB, 80))));
    assert_eq!(n.drops(DropReason::L4Malformed), 6);
}
