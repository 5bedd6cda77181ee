//! Super-frames built by `etherparse`, segmented by us, every segment read
//! back by `etherparse` as the oracle.

use core::ops::Range;

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, Ipv6RawExtHeader,
    NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice, VlanId,
};
use proptest::prelude::*;

use super::*;
use crate::packet::{Frame, GsoKind, MAX_FRAME_LEN, Offload};
use crate::wire::tcp::{FLAG_ACK, FLAG_CWR, FLAG_ECE, FLAG_FIN, FLAG_PSH};

const SRC_V4: [u8; 4] = [10, 244, 1, 2];
const DST_V4: [u8; 4] = [10, 244, 2, 3];
const SRC_V6: [u8; 16] = [0xfd, 0, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const DST_V6: [u8; 16] = [0xfd, 0, 0x02, 0x44, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
const SEQ: u32 = 0xffff_f000; // wraps within the first super-frame
const IDENT: u16 = 0xfffe; // wraps after two segments
/// Router Alert: a harmless 4-byte IPv4 option.
const IPV4_OPTIONS: [u8; 4] = [0x94, 0x04, 0x00, 0x00];

/// What a test super-frame looks like.
#[derive(Clone, Copy, Debug)]
struct Spec {
    ipv4: bool,
    tcp: bool,
    vlan: bool,
    /// IPv6 only: add a Destination Options header.
    dest_opts: bool,
    flags: u8,
    payload_len: usize,
    mss: u16,
}

impl Spec {
    fn tcp_v4(payload_len: usize, mss: u16) -> Spec {
        Spec {
            ipv4: true,
            tcp: true,
            vlan: false,
            dest_opts: false,
            flags: FLAG_PSH | FLAG_ACK | FLAG_FIN,
            payload_len,
            mss,
        }
    }

    fn l3(&self) -> usize {
        if self.vlan { 18 } else { 14 }
    }

    fn l4(&self) -> usize {
        let ip = match (self.ipv4, self.dest_opts) {
            (true, _) => 20 + IPV4_OPTIONS.len(),
            (false, false) => 40,
            (false, true) => 48,
        };
        self.l3() + ip
    }

    fn kind(&self) -> GsoKind {
        match (self.tcp, self.ipv4) {
            (false, _) => GsoKind::UdpL4,
            (true, true) => GsoKind::TcpV4,
            (true, false) => GsoKind::TcpV6,
        }
    }
}

fn payload_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn ip_headers(spec: &Spec) -> IpHeaders {
    let protocol = if spec.tcp {
        IpNumber::TCP
    } else {
        IpNumber::UDP
    };
    if spec.ipv4 {
        let mut h = Ipv4Header::new(0, 64, protocol, SRC_V4, DST_V4).unwrap();
        h.identification = IDENT;
        h.dont_fragment = true;
        h.options = IPV4_OPTIONS[..].try_into().unwrap();
        return IpHeaders::Ipv4(h, Default::default());
    }
    let h = Ipv6Header {
        traffic_class: 0x28,
        flow_label: Ipv6FlowLabel::try_new(0x1_2345).unwrap(),
        payload_length: 0,
        next_header: protocol,
        hop_limit: 64,
        source: SRC_V6,
        destination: DST_V6,
    };
    let mut exts = Ipv6Extensions::default();
    if spec.dest_opts {
        // PadN over the six option bytes.
        let opts = Ipv6RawExtHeader::new_raw(protocol, &[1, 4, 0, 0, 0, 0]).unwrap();
        exts.destination_options = Some(opts);
    }
    IpHeaders::Ipv6(h, exts)
}

/// Folded, uncomplemented pseudo-header sum, as Linux leaves it in a
/// `CHECKSUM_PARTIAL` field. Written out naively, independent of `checksum`.
fn partial_pseudo_sum(src: &[u8], dst: &[u8], protocol: u8, len: usize) -> u16 {
    let mut acc: u64 = u64::from(protocol) + (len as u64 >> 16) + (len as u64 & 0xffff);
    for pair in src.chunks(2).chain(dst.chunks(2)) {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Builds the super-frame and the offload state a kernel would hand us.
fn build(spec: &Spec) -> (Vec<u8>, Offload) {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = if spec.vlan {
        eth.single_vlan(VlanId::try_new(100).unwrap())
            .ip(ip_headers(spec))
    } else {
        eth.ip(ip_headers(spec))
    };
    let payload = payload_bytes(spec.payload_len);
    let mut frame = Vec::new();
    if spec.tcp {
        let mut t = ip.tcp(40000, 443, SEQ, 502).ack(0x0a0b_0c0d);
        let f = spec.flags;
        t = if f & FLAG_PSH != 0 { t.psh() } else { t };
        t = if f & FLAG_FIN != 0 { t.fin() } else { t };
        t = if f & FLAG_CWR != 0 { t.cwr() } else { t };
        t = if f & FLAG_ECE != 0 { t.ece() } else { t };
        let ts = TcpOptionElement::Timestamp(0x1111_2222, 0x3333_4444);
        let t = t
            .options(&[TcpOptionElement::Noop, TcpOptionElement::Noop, ts])
            .unwrap();
        t.write_to_vec(&mut frame, &payload).unwrap();
    } else {
        ip.udp(5353, 4433)
            .write_to_vec(&mut frame, &payload)
            .unwrap();
    }
    let l4 = spec.l4();
    let (src, dst): (&[u8], &[u8]) = if spec.ipv4 {
        (&SRC_V4, &DST_V4)
    } else {
        (&SRC_V6, &DST_V6)
    };
    let (protocol, field) = if spec.tcp { (6, 16) } else { (17, 6) };
    let partial = partial_pseudo_sum(src, dst, protocol, frame.len() - l4);
    frame[l4 + field..l4 + field + 2].copy_from_slice(&partial.to_be_bytes());
    let offload = Offload {
        gso: spec.kind(),
        gso_size: spec.mss,
        hdr_len: 0, // unreliable in practice; the segmenter must not need it
        csum: Some((l4 as u16, field as u16)),
        csum_valid: false,
    };
    (frame, offload)
}

fn run(frame: &[u8], offload: &Offload) -> Result<Vec<Vec<u8>>, GsoError> {
    let mut out = Frame::with_capacity(MAX_FRAME_LEN);
    let mut segments = Vec::new();
    let emitted = segment(frame, offload, &mut out, |s: &Frame| {
        assert_eq!(s.offload, Offload::default());
        segments.push(s.data().to_vec());
        Ok::<(), GsoError>(())
    })?;
    assert_eq!(emitted, segments.len());
    Ok(segments)
}

/// What the oracle reads from one frame.
#[derive(Debug)]
struct Seen {
    l3_len: usize,
    ident: Option<u16>,
    checksums_ok: bool,
    seq: Option<u32>,
    flags: u8,
    payload: Vec<u8>,
}

/// The addresses the pseudo-header covers.
#[derive(Clone, Copy)]
enum Addrs {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

/// What the oracle reads from the IP header.
struct SeenIp {
    /// Header to the end of the packet, as the header says.
    len: usize,
    /// Bytes after the IP header (and IPv6 extension headers).
    payload_len: usize,
    ident: Option<u16>,
    checksum_ok: bool,
    addrs: Addrs,
}

fn tcp_flags(t: &etherparse::TcpSlice<'_>) -> u8 {
    [
        t.fin(),
        t.syn(),
        t.rst(),
        t.psh(),
        t.ack(),
        t.urg(),
        t.ece(),
        t.cwr(),
    ]
    .iter()
    .enumerate()
    .fold(0, |acc, (bit, &set)| acc | (u8::from(set) << bit))
}

fn oracle_ip(net: &NetSlice<'_>) -> SeenIp {
    match net {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            SeenIp {
                len: usize::from(h.total_len()),
                payload_len: ip.payload().payload.len(),
                ident: Some(h.identification()),
                checksum_ok: h.to_header().calc_header_checksum() == h.header_checksum(),
                addrs: Addrs::V4(h.source(), h.destination()),
            }
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            SeenIp {
                len: 40 + usize::from(h.payload_length()),
                payload_len: ip.payload().payload.len(),
                ident: None,
                checksum_ok: true,
                addrs: Addrs::V6(h.source(), h.destination()),
            }
        }
        NetSlice::Arp(_) => panic!("not IP"),
    }
}

fn oracle(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).expect("oracle parses the segment");
    let ip = oracle_ip(p.net.as_ref().unwrap());
    let (l4_ok, seq, flags, payload) = match p.transport.unwrap() {
        TransportSlice::Tcp(t) => {
            assert_eq!(t.slice().len(), ip.payload_len, "TCP segment length");
            let c = match ip.addrs {
                Addrs::V4(s, d) => t.calc_checksum_ipv4(s, d),
                Addrs::V6(s, d) => t.calc_checksum_ipv6(s, d),
            };
            let ok = c.unwrap() == t.checksum();
            (ok, Some(t.sequence_number()), tcp_flags(&t), t.payload())
        }
        TransportSlice::Udp(u) => {
            let h = u.to_header();
            assert_eq!(usize::from(h.length), ip.payload_len, "UDP length");
            let c = match ip.addrs {
                Addrs::V4(s, d) => h.calc_checksum_ipv4_raw(s, d, u.payload()),
                Addrs::V6(s, d) => h.calc_checksum_ipv6_raw(s, d, u.payload()),
            };
            (c.unwrap() == h.checksum, None, 0, u.payload())
        }
        other => panic!("unexpected transport {other:?}"),
    };
    Seen {
        l3_len: ip.len,
        ident: ip.ident,
        checksums_ok: ip.checksum_ok && l4_ok,
        seq,
        flags,
        payload: payload.to_vec(),
    }
}

/// Header bytes a segment may change: lengths, ident, seq, flags, checksums.
fn changed_fields(spec: &Spec) -> Vec<Range<usize>> {
    let (l3, l4) = (spec.l3(), spec.l4());
    let mut ranges = Vec::new();
    if spec.ipv4 {
        ranges.extend([l3 + 2..l3 + 6, l3 + 10..l3 + 12]);
    } else {
        ranges.push(l3 + 4..l3 + 6);
    }
    if spec.tcp {
        ranges.extend([l4 + 4..l4 + 8, l4 + 13..l4 + 14, l4 + 16..l4 + 18]);
    } else {
        ranges.push(l4 + 4..l4 + 8);
    }
    ranges
}

/// Checks every invariant of `segments` against the super-frame `frame`.
fn check(spec: &Spec, frame: &[u8], segments: &[Vec<u8>]) {
    let payload_start = spec.l4() + if spec.tcp { 32 } else { 8 };
    let original = &frame[payload_start..];
    let mss = usize::from(spec.mss);
    assert_eq!(
        segments.len(),
        original.len().div_ceil(mss).max(1),
        "segment count"
    );
    let changed = changed_fields(spec);
    let mut joined = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        let (first, last) = (i == 0, i + 1 == segments.len());
        let seen = oracle(seg);
        assert!(seen.checksums_ok, "checksums of segment {i}");
        assert_eq!(
            seen.l3_len,
            seg.len() - spec.l3(),
            "IP length of segment {i}"
        );
        let expected_len = if last { original.len() - i * mss } else { mss };
        assert_eq!(
            seen.payload.len(),
            expected_len,
            "payload length of segment {i}"
        );
        if spec.ipv4 {
            assert_eq!(seen.ident, Some(IDENT.wrapping_add(i as u16)));
        }
        if spec.tcp {
            assert_eq!(seen.seq, Some(SEQ.wrapping_add((i * mss) as u32)));
            let mut flags = spec.flags | FLAG_ACK;
            if !last {
                flags &= !(FLAG_FIN | FLAG_PSH);
            }
            if !first {
                flags &= !FLAG_CWR;
            }
            assert_eq!(seen.flags, flags, "flags of segment {i}");
        }
        for at in 0..payload_start {
            if !changed.iter().any(|r| r.contains(&at)) {
                assert_eq!(seg[at], frame[at], "header byte {at} of segment {i}");
            }
        }
        joined.extend_from_slice(&seen.payload);
    }
    assert_eq!(joined, original);
}

fn segment_and_check(spec: Spec) -> Vec<Vec<u8>> {
    let (frame, offload) = build(&spec);
    let segments = run(&frame, &offload).unwrap();
    check(&spec, &frame, &segments);
    segments
}

#[test]
fn tcp_v4_with_timestamps() {
    let spec = Spec {
        flags: FLAG_PSH | FLAG_ACK | FLAG_FIN | FLAG_CWR | FLAG_ECE,
        ..Spec::tcp_v4(10_000, 1448)
    };
    let segments = segment_and_check(spec);
    assert_eq!(segments.len(), 7);
    assert_eq!(segments[0].len(), 14 + 24 + 32 + 1448);
    assert_eq!(segments[6].len(), 14 + 24 + 32 + 10_000 - 6 * 1448);
}

#[test]
fn tcp_v6_with_timestamps() {
    let spec = Spec {
        ipv4: false,
        flags: FLAG_ACK | FLAG_CWR,
        ..Spec::tcp_v4(10_000, 1428)
    };
    assert_eq!(segment_and_check(spec).len(), 8);
}

#[test]
fn tcp_v6_with_destination_options() {
    let spec = Spec {
        ipv4: false,
        dest_opts: true,
        ..Spec::tcp_v4(5000, 1000)
    };
    assert_eq!(segment_and_check(spec).len(), 5);
}

#[test]
fn tcp_v4_vlan_tagged() {
    let spec = Spec {
        vlan: true,
        ..Spec::tcp_v4(3000, 1448)
    };
    assert_eq!(segment_and_check(spec).len(), 3);
}

#[test]
fn udp_l4_v4_and_v6() {
    for ipv4 in [true, false] {
        let spec = Spec {
            ipv4,
            tcp: false,
            ..Spec::tcp_v4(5000, 1200)
        };
        assert_eq!(segment_and_check(spec).len(), 5);
    }
}

#[test]
fn payload_sizes_at_the_edges() {
    let cases = [
        (1448 * 5, 1448, 5),     // exact multiple
        (100, 1448, 1),          // smaller than one segment
        (1448 * 3 + 1, 1448, 4), // 1-byte last segment
        (1000, 9000, 1),         // gso_size larger than the payload
        (0, 1448, 1),            // no payload at all
        (1, 1, 1),
    ];
    for (payload_len, mss, count) in cases {
        for (ipv4, tcp) in [(true, true), (false, true), (true, false)] {
            let spec = Spec {
                ipv4,
                tcp,
                ..Spec::tcp_v4(payload_len, mss)
            };
            assert_eq!(segment_and_check(spec).len(), count, "{spec:?}");
        }
    }
}

#[test]
fn partial_checksum_completed_without_gso() {
    for (ipv4, tcp) in [(true, true), (false, true), (true, false), (false, false)] {
        let spec = Spec {
            ipv4,
            tcp,
            ..Spec::tcp_v4(700, 1448)
        };
        let (mut frame, mut offload) = build(&spec);
        offload.gso = GsoKind::None;
        let segments = run(&frame, &offload).unwrap();
        assert_eq!(segments.len(), 1);
        assert!(oracle(&segments[0]).checksums_ok);
        let (start, offset) = offload.csum.unwrap();
        complete_checksum(&mut frame, start.into(), offset.into()).unwrap();
        assert_eq!(segments[0], frame);
    }
}

#[test]
fn complete_checksum_zero_becomes_ffff() {
    // The field holds 0; the rest sums to 0xffff, whose complement is 0.
    let mut bytes = [0x00, 0x00, 0xff, 0xff];
    complete_checksum(&mut bytes, 0, 0).unwrap();
    assert_eq!(bytes, [0xff, 0xff, 0xff, 0xff]);
}

#[test]
fn complete_checksum_out_of_bounds() {
    let mut bytes = [0u8; 20];
    for (start, offset) in [(21, 0), (18, 1), (0, 19), (usize::MAX, 1), (1, usize::MAX)] {
        assert!(matches!(
            complete_checksum(&mut bytes, start, offset),
            Err(GsoError::ChecksumOutOfBounds { .. })
        ));
    }
    complete_checksum(&mut bytes, 20 - 2, 0).unwrap();
    let none = Offload {
        csum: Some((19, 0)),
        ..Offload::default()
    };
    assert!(matches!(
        Segmenter::new(&bytes, &none),
        Err(GsoError::ChecksumOutOfBounds { .. })
    ));
}

/// Breaks a valid super-frame or its offload state.
type Mutation = fn(&mut Vec<u8>, &mut Offload);

/// Offsets of the IP and L4 headers in an untagged TCP/IPv4 test frame.
const L3: usize = 14;
const L4_V4: usize = 38;

/// Builds each super-frame, breaks it and expects the error.
fn expect_refused(cases: &[(Spec, Mutation, GsoError)]) {
    for (i, (spec, mutate, expected)) in cases.iter().enumerate() {
        let (mut frame, mut offload) = build(spec);
        mutate(&mut frame, &mut offload);
        assert_eq!(run(&frame, &offload).unwrap_err(), *expected, "case {i}");
    }
}

#[test]
fn offload_state_not_matching_the_frame_is_refused() {
    use GsoKind::{TcpV4, TcpV6, UdpL4};
    let v4 = Spec::tcp_v4(3000, 1448);
    let v6 = Spec { ipv4: false, ..v4 };
    let udp = Spec { tcp: false, ..v4 };
    let ethertype = |kind, ethertype| GsoError::WrongEtherType { kind, ethertype };
    let protocol = |kind, protocol| GsoError::WrongProtocol { kind, protocol };
    expect_refused(&[
        (v4, |_, o| o.gso_size = 0, GsoError::ZeroGsoSize),
        (v4, |_, o| o.gso_size = 1, GsoError::TooManySegments(3000)),
        (v4, |_, o| o.gso = TcpV6, ethertype(TcpV6, 0x0800)),
        (v6, |_, o| o.gso = TcpV4, ethertype(TcpV4, 0x86dd)),
        (v4, |f, _| f[12] = 0x86, ethertype(TcpV4, 0x8600)),
        (udp, |_, o| o.gso = TcpV4, protocol(TcpV4, 17)),
        (v4, |_, o| o.gso = UdpL4, protocol(UdpL4, 6)),
        (
            v4,
            |f, _| f.truncate(13),
            GsoError::Ethernet(WireError::Truncated),
        ),
        (
            v4,
            |f, _| f.resize(MAX_FRAME_LEN + 1, 0),
            GsoError::TooLong(MAX_FRAME_LEN + 1),
        ),
    ]);
}

#[test]
fn malformed_headers_are_refused() {
    let v4 = Spec::tcp_v4(3000, 1448);
    let v6 = Spec { ipv4: false, ..v4 };
    let udp = Spec { tcp: false, ..v4 };
    let ipv4_len = GsoError::Ipv4LengthMismatch {
        total_len: 3056,
        available: 3057,
    };
    let ipv6_len = GsoError::Ipv6LengthMismatch {
        payload_len: 3032,
        available: 3033,
    };
    let udp_len = GsoError::UdpLengthMismatch {
        len: 3007,
        available: 3008,
    };
    expect_refused(&[
        (v4, |f, _| f.push(0), ipv4_len),
        (
            v4,
            |f, _| f.truncate(f.len() - 1),
            GsoError::Ipv4(WireError::Truncated),
        ),
        (v4, |f, _| f[L3 + 2..L3 + 4].fill(0), GsoError::Ipv4BigTcp),
        (
            v4,
            |f, _| f[L3] = 0x44,
            GsoError::Ipv4(WireError::Malformed),
        ),
        (v4, |f, _| f[L3 + 6] |= 0x20, GsoError::Ipv4Fragment),
        (v4, |f, _| f[L3 + 21] = 1, GsoError::Ipv4Options(0)),
        (v4, |f, _| f[L3 + 21] = 5, GsoError::Ipv4Options(0)),
        (
            v4,
            |f, _| f[L3 + 20] = 0x83,
            GsoError::Ipv4SourceRoute(0x83),
        ),
        (
            v4,
            |f, _| f[L4_V4 + 12] = 0x40,
            GsoError::Tcp(WireError::Malformed),
        ),
        (v6, |f, _| f.push(0), ipv6_len),
        (v6, |f, _| f[L3 + 6] = 43, GsoError::Ipv6ExtensionHeader(43)),
        (v6, |f, _| f[L3 + 6] = 44, GsoError::Ipv6ExtensionHeader(44)),
        (udp, |f, _| f[L4_V4 + 5] -= 1, udp_len),
    ]);
}

#[test]
fn error_messages_name_the_values() {
    let e = GsoError::Ipv4LengthMismatch {
        total_len: 3056,
        available: 3057,
    };
    assert_eq!(
        e.to_string(),
        "GSO frame: IPv4 total length 3056 but 3057 bytes follow the L2 header"
    );
    let e = GsoError::WrongEtherType {
        kind: GsoKind::TcpV6,
        ethertype: 0x0800,
    };
    assert_eq!(e.to_string(), "GSO TcpV6 frame carries EtherType 0x0800");
    let e = GsoError::Tcp(WireError::Truncated);
    let source = std::error::Error::source(&e).map(ToString::to_string);
    assert_eq!(source.as_deref(), Some("truncated packet"));
}

#[test]
fn scratch_too_small_and_emit_errors() {
    let (frame, offload) = build(&Spec::tcp_v4(3000, 1448));
    let mut small = Frame::with_capacity(1000);
    let err = segment(&frame, &offload, &mut small, |_: &Frame| {
        Ok::<(), GsoError>(())
    })
    .unwrap_err();
    assert_eq!(
        err,
        GsoError::ScratchTooSmall {
            needed: 70 + 1448,
            capacity: 1000
        }
    );
    let segmenter = Segmenter::new(&frame, &offload).unwrap();
    assert_eq!(segmenter.max_segment_len(), 70 + 1448);

    let mut out = Frame::with_capacity(MAX_FRAME_LEN);
    let mut calls = 0;
    let err = segment(&frame, &offload, &mut out, |_: &Frame| {
        calls += 1;
        if calls == 2 {
            Err(GsoError::ZeroGsoSize)
        } else {
            Ok(())
        }
    });
    assert_eq!(err, Err(GsoError::ZeroGsoSize));
    assert_eq!(calls, 2);
}

/// Verifies the IP and L4 checksums of a segment with our own views.
fn wire_checksums_ok(seg: &[u8]) -> bool {
    use crate::wire::{EtherType, L2Header};
    let Ok(l2) = L2Header::parse(seg) else {
        return false;
    };
    let ip = &seg[l2.l3_offset..];
    if l2.ethertype == EtherType::IPV4 {
        let p = Ipv4Packet::new_checked(ip).unwrap();
        let l4 = &ip[p.header_len()..];
        let l4_ok = match p.protocol() {
            IpProtocol::TCP => TcpPacket::new_checked(l4)
                .unwrap()
                .verify_checksum_v4(p.src_addr(), p.dst_addr()),
            _ => UdpPacket::new_checked(l4)
                .unwrap()
                .verify_checksum_v4(p.src_addr(), p.dst_addr()),
        };
        p.verify_checksum() && l4_ok
    } else {
        let p = Ipv6Packet::new_checked(ip).unwrap();
        let upper = p.upper_layer().unwrap();
        let l4 = p.upper_layer_payload(&upper);
        match upper.protocol {
            IpProtocol::TCP => TcpPacket::new_checked(l4)
                .unwrap()
                .verify_checksum_v6(p.src_addr(), p.dst_addr()),
            _ => UdpPacket::new_checked(l4)
                .unwrap()
                .verify_checksum_v6(p.src_addr(), p.dst_addr()),
        }
    }
}

fn gso_kind() -> impl Strategy<Value = GsoKind> {
    prop_oneof![
        Just(GsoKind::None),
        Just(GsoKind::TcpV4),
        Just(GsoKind::TcpV6),
        Just(GsoKind::UdpL4)
    ]
}

fn any_offload() -> impl Strategy<Value = Offload> {
    (
        gso_kind(),
        any::<u16>(),
        any::<u16>(),
        proptest::option::of((0u16..200, 0u16..200)),
        any::<bool>(),
    )
        .prop_map(|(gso, gso_size, hdr_len, csum, csum_valid)| Offload {
            gso,
            gso_size,
            hdr_len,
            csum,
            csum_valid,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn segments_keep_every_invariant(
        payload_len in 1usize..60_000,
        mss in 1u16..9000,
        ipv4 in any::<bool>(),
        tcp in any::<bool>(),
        vlan in any::<bool>(),
        flags in prop_oneof![Just(FLAG_ACK), Just(FLAG_PSH | FLAG_ACK | FLAG_FIN), Just(FLAG_CWR | FLAG_ECE | FLAG_PSH)],
    ) {
        let spec = Spec { ipv4, tcp, vlan, dest_opts: !ipv4 && vlan, flags, payload_len, mss };
        let (frame, offload) = build(&spec);
        let count = payload_len.div_ceil(usize::from(mss));
        match run(&frame, &offload) {
            Ok(segments) => check(&spec, &frame, &segments),
            Err(e) => {
                prop_assert!(count > MAX_SEGMENTS);
                prop_assert_eq!(e, GsoError::TooManySegments(count));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        offload in any_offload(),
        start in 0usize..2100,
        offset in 0usize..2100,
    ) {
        let _ = run(&bytes, &offload);
        let mut copy = bytes.clone();
        let _ = complete_checksum(&mut copy, start, offset);
    }

    #[test]
    fn mutated_headers_never_panic_and_accepted_ones_verify(
        ipv4 in any::<bool>(),
        tcp in any::<bool>(),
        payload_len in 0usize..3000,
        mss in 1u16..1500,
        mutations in proptest::collection::vec((0usize..80, any::<u8>()), 1..6),
        resize in -3isize..3,
    ) {
        let spec = Spec { ipv4, tcp, vlan: false, dest_opts: !ipv4, flags: FLAG_ACK, payload_len, mss };
        let (mut frame, offload) = build(&spec);
        for (at, value) in mutations {
            if let Some(b) = frame.get_mut(at) {
                *b = value;
            }
        }
        let new_len = frame.len().saturating_add_signed(resize);
        frame.resize(new_len, 0xab);
        if let Ok(segments) = run(&frame, &offload) {
            for seg in &segments {
                prop_assert!(wire_checksums_ok(seg));
            }
        }
    }
}

#[test]
fn offload_from_headers_finds_the_checksum() {
    let mut tcp4 = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1, 2, 3, 1000)
        .write(&mut tcp4, &[0u8; 3000])
        .unwrap();
    let o = super::offload_from_headers(&tcp4, false).unwrap();
    assert_eq!(o.csum, Some((34, 16)));
    assert_eq!(o.gso, GsoKind::None);
    let o = super::offload_from_headers(&tcp4, true).unwrap();
    assert_eq!((o.gso, o.gso_size, o.hdr_len), (GsoKind::TcpV4, 1460, 54));
    let mut udp6 = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6([1; 16], [2; 16], 64)
        .udp(1, 2)
        .write(&mut udp6, b"x")
        .unwrap();
    assert_eq!(
        super::offload_from_headers(&udp6, false).unwrap().csum,
        Some((54, 6))
    );
    let mut icmp = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut icmp, b"x")
        .unwrap();
    assert_eq!(super::offload_from_headers(&icmp, false), None);
    assert_eq!(super::offload_from_headers(&icmp[..20], false), None);
}
