//! Frames cut to an MTU, read back by etherparse (its defragmenter puts
//! every datagram back together).

use std::collections::BTreeMap;

use etherparse::defrag::IpDefragPool;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket};

use super::*;
use crate::packet::{MAX_FRAME_LEN, Offload};
use crate::wire::Ipv4Packet;

const MACS: ([u8; 6], [u8; 6]) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
const SRC: [u8; 4] = [10, 244, 1, 2];
const DST: [u8; 4] = [10, 244, 1, 3];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 255) as u8).collect()
}

/// A UDP datagram with `len` payload bytes, DF as `df`.
fn udp(len: usize, df: bool) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MACS.0, MACS.1)
        .ipv4(SRC, DST, 64)
        .udp(40000, 7000)
        .write(&mut out, &payload(len))
        .unwrap();
    set_df(&mut out, df);
    out
}

fn set_df(frame: &mut [u8], df: bool) {
    if df {
        frame[20] |= 0x40;
    } else {
        frame[20] &= !0x40;
    }
    Ipv4Packet::new_checked(&mut frame[14..])
        .unwrap()
        .fill_checksum();
}

fn frame(bytes: &[u8], offload: Offload) -> Frame {
    let mut f = Frame::with_capacity(MAX_FRAME_LEN);
    assert!(f.fill(bytes));
    f.offload = offload;
    f
}

/// Cuts `f` at `mtu`; returns what was emitted.
fn cut_at(f: &Frame, mtu: usize) -> (Cut, Vec<Vec<u8>>) {
    let (mut s1, mut s2) = (
        Frame::with_capacity(MAX_FRAME_LEN),
        Frame::with_capacity(MAX_FRAME_LEN),
    );
    let mut out = Vec::new();
    let done = cut(f, mtu, &mut s1, &mut s2, |w| out.push(w.data().to_vec())).unwrap();
    assert_eq!(done.emitted, out.len());
    (done, out)
}

/// The IP payloads the wire frames make, by IP identification, each frame
/// checked to fit `mtu` with a right header checksum.
fn reassembled(frames: &[Vec<u8>], mtu: usize) -> BTreeMap<u16, Vec<u8>> {
    let mut pool: IpDefragPool = IpDefragPool::new();
    let mut whole = BTreeMap::new();
    for f in frames {
        assert!(f.len() <= 14 + mtu, "{} bytes > {mtu}", f.len() - 14);
        let sliced = SlicedPacket::from_ethernet(f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        if let Some(done) = pool.process_sliced_packet(&sliced, (), ()).unwrap() {
            whole.insert(h.identification, done.payload);
        } else if !h.is_fragmenting_payload() {
            whole.insert(h.identification, ip.payload().payload.to_vec());
        }
    }
    whole
}

#[test]
fn a_packet_without_df_is_fragmented_one_with_df_refused() {
    let plain = udp(8000, false);
    let f = frame(&plain, Offload::default());
    assert!(exceeds(&f, 1500));
    assert!(!exceeds(&f, 9000));
    let (done, out) = cut_at(&f, 1500);
    assert_eq!((done.fragmented, done.refused, out.len()), (1, 0, 6));
    assert_eq!(
        reassembled(&out, 1500).into_values().collect::<Vec<_>>(),
        [plain[34..].to_vec()]
    );
    let (done, out) = cut_at(&frame(&udp(8000, true), Offload::default()), 1500);
    assert_eq!((done.refused, out.len()), (1, 0));
}

#[test]
fn only_what_is_not_ipv4_and_too_long_is_refused() {
    // An IPv6 frame (switched between pods) longer than the MTU.
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(MACS.0, MACS.1)
        .ipv6(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            64,
        )
        .udp(1, 2)
        .write(&mut v6, &payload(3000))
        .unwrap();
    let f = frame(&v6, Offload::default());
    assert!(exceeds(&f, 1500));
    let (done, out) = cut_at(&f, 1500);
    assert_eq!((done.refused, out.len()), (1, 0));
}

#[test]
fn a_super_frame_fits_when_its_segments_do() {
    // TCP (DF, as Linux sends it), 20,000 bytes in 1,448-byte segments.
    let mut tso = Vec::new();
    PacketBuilder::ethernet2(MACS.0, MACS.1)
        .ipv4(SRC, DST, 64)
        .tcp(40000, 80, 1, 65535)
        .ack(1)
        .write(&mut tso, &payload(20_000))
        .unwrap();
    let offload = Offload {
        gso: GsoKind::TcpV4,
        gso_size: 1448,
        hdr_len: 54,
        ..Offload::default()
    };
    let f = frame(&tso, offload);
    assert!(!exceeds(&f, 1500), "1,488-byte segments fit 1,500");
    assert!(exceeds(&f, 1400));
    // Cut for a 1,400-byte port: the segments have DF; the 13 full ones
    // are refused, the last (1,176 bytes of payload) fits and goes.
    let (done, out) = cut_at(&f, 1400);
    assert_eq!((done.refused, out.len()), (13, 1));
    assert_eq!(out[0].len(), 14 + 40 + 20_000 - 13 * 1448);
}

#[test]
fn super_frame_segments_without_df_go_in_fragments() {
    // USO without DF: 3 datagrams of 2,000 bytes, to a 1,500-byte port,
    // with the partial checksum the sender left to the device.
    let mut uso = udp(6000, false);
    let data = payload(6000);
    let offload = Offload {
        gso: GsoKind::UdpL4,
        gso_size: 2000,
        hdr_len: 42,
        csum: Some((34, 6)),
        ..Offload::default()
    };
    uso[40..42].copy_from_slice(&[0, 0]);
    let f = frame(&uso, offload);
    assert!(exceeds(&f, 1500));
    let (done, out) = cut_at(&f, 1500);
    assert_eq!((done.fragmented, done.refused, out.len()), (3, 0, 6));
    let datagrams = reassembled(&out, 1500);
    assert_eq!(datagrams.len(), 3);
    for (i, d) in datagrams.values().enumerate() {
        assert_eq!(&d[8..], &data[i * 2000..(i + 1) * 2000], "datagram {i}");
        let checked = etherparse::UdpSlice::from_slice(d).unwrap();
        let expect = checked
            .to_header()
            .calc_checksum_ipv4_raw(SRC, DST, checked.payload())
            .unwrap();
        assert_eq!(checked.checksum(), expect, "datagram {i} checksum");
    }
}
