//! Fragments checked against etherparse: every header parses with a right
//! checksum, and etherparse's own defragmenter puts the datagram back.

use etherparse::defrag::IpDefragPool;
use etherparse::{NetSlice, PacketBuilder, SlicedPacket};
use proptest::prelude::*;

use super::*;
use crate::packet::MAX_FRAME_LEN;

const SRC: [u8; 4] = [10, 244, 1, 2];
const DST: [u8; 4] = [10, 96, 0, 10];

/// A UDP datagram of `len` payload bytes, identification `ident`.
fn udp_datagram(len: usize, ident: u16) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(SRC, DST, 64)
        .udp(40000, 5353)
        .write(&mut out, &payload)
        .unwrap();
    out[18..20].copy_from_slice(&ident.to_be_bytes());
    // etherparse sets DF; a datagram that may be fragmented has it clear.
    out[20] &= !0x40;
    let mut ip = Ipv4Packet::new_checked(&mut out[14..]).unwrap();
    ip.fill_checksum();
    out
}

/// Cuts `frame` at `mtu`; returns the fragments.
fn cut(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
    let mut out = Vec::new();
    let n = fragment(frame, mtu, &mut scratch, |f| out.push(f.data().to_vec())).unwrap();
    assert_eq!(n, out.len());
    out
}

/// Checks each fragment's header and size, and that etherparse's
/// defragmenter makes `original`'s IP payload of them.
fn assert_reassembles(fragments: &[Vec<u8>], original: &[u8], mtu: usize) {
    let mut pool: IpDefragPool = IpDefragPool::new();
    let mut whole = None;
    let want = Ipv4Packet::new_checked(&original[14..]).unwrap();
    for f in fragments {
        assert_eq!(&f[..14], &original[..14], "Ethernet header copied");
        let sliced = SlicedPacket::from_ethernet(f).expect("oracle parses a fragment");
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!("not IPv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        assert!(usize::from(h.total_len) <= mtu, "{} > {mtu}", h.total_len);
        assert_eq!(h.identification, want.ident());
        assert_eq!((h.source, h.destination), (SRC, DST));
        assert_eq!(h.time_to_live, want.ttl());
        if h.more_fragments {
            assert_eq!(ip.payload().payload.len() % 8, 0);
        }
        if let Some(done) = pool.process_sliced_packet(&sliced, (), ()).unwrap() {
            assert!(whole.is_none(), "one datagram");
            whole = Some(done.payload);
        }
    }
    assert_eq!(whole.as_deref(), Some(want.payload()));
}

#[test]
fn a_datagram_is_cut_to_the_mtu() {
    let original = udp_datagram(2972, 7);
    assert!(exceeds_mtu(&original, 1500));
    let fragments = cut(&original, 1500);
    let sizes: Vec<usize> = fragments.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1514, 1514, 14 + 20 + 20]);
    assert_reassembles(&fragments, &original, 1500);
    for mtu in [576, 1280, 1450, 9000] {
        let original = udp_datagram(8972, 9);
        assert_reassembles(&cut(&original, mtu), &original, mtu);
    }
    // The largest datagram.
    let original = udp_datagram(65_535 - 28, 1);
    let fragments = cut(&original, 1500);
    assert_eq!(fragments.len(), 45);
    assert_reassembles(&fragments, &original, 1500);
}

#[test]
fn a_packet_that_fits_goes_whole() {
    let original = udp_datagram(1472, 3);
    assert!(!exceeds_mtu(&original, 1500));
    assert_eq!(cut(&original, 1500), std::slice::from_ref(&original));
    // Not IPv4, or shorter than its frame says: not "too long".
    let mut arp = original.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(!exceeds_mtu(&arp, 1000));
}

#[test]
fn a_fragment_is_cut_again_within_its_datagram() {
    let original = udp_datagram(5972, 11);
    let first_cut = cut(&original, 4000);
    assert_eq!(first_cut.len(), 2);
    // Each piece cut again at 1500: together the same datagram.
    let again: Vec<Vec<u8>> = first_cut.iter().flat_map(|f| cut(f, 1500)).collect();
    assert_eq!(again.len(), 5);
    assert_reassembles(&again, &original, 1500);
}

#[test]
fn options_not_copied_are_only_in_the_first_fragment() {
    let mut original = udp_datagram(2000, 5);
    // IHL 7: a record-route option (7, not copied) of 7 bytes and an
    // end-of-list; then 1 byte of padding.
    let options = [7u8, 7, 4, 0, 0, 0, 0, 0];
    original.splice(34..34, options);
    original[14] = 0x47;
    let total = (original.len() - 14) as u16;
    original[16..18].copy_from_slice(&total.to_be_bytes());
    let mut ip = Ipv4Packet::new_checked(&mut original[14..]).unwrap();
    ip.fill_checksum();
    let fragments = cut(&original, 1500);
    assert_eq!(fragments.len(), 2);
    assert_eq!(&fragments[0][34..42], &options);
    assert_eq!(&fragments[1][34..42], &[1, 1, 1, 1, 1, 1, 1, 0]);
    for f in &fragments {
        assert!(Ipv4Packet::new_checked(&f[14..]).unwrap().verify_checksum());
    }
    // A copied option (security, 130) stays in every fragment.
    assert_eq!(
        {
            let mut o = [130u8, 4, 1, 2, 7, 3, 0, 0];
            strip_uncopied_options(&mut o);
            o
        },
        [130, 4, 1, 2, 1, 1, 1, 0]
    );
}

#[test]
fn what_cannot_be_fragmented_is_refused_before_anything_is_emitted() {
    let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
    let mut df = udp_datagram(2972, 1);
    df[20] |= 0x40;
    let mut emitted = 0;
    let mut count = |_: &Frame| emitted += 1;
    assert_eq!(
        fragment(&df, 1500, &mut scratch, &mut count),
        Err(FragmentError::DontFragment)
    );
    let plain = udp_datagram(2972, 1);
    assert!(matches!(
        fragment(&plain, 27, &mut scratch, &mut count),
        Err(FragmentError::MtuTooSmall { mtu: 27, .. })
    ));
    assert_eq!(
        fragment(&plain[..40], 1500, &mut scratch, &mut count),
        Err(FragmentError::Ipv4(WireError::Truncated))
    );
    assert_eq!(emitted, 0);
    // A scratch frame too small for a fragment.
    let mut small = Frame::with_capacity(1000);
    assert_eq!(
        fragment(&plain, 1500, &mut small, |_| {}),
        Err(FragmentError::NoRoom(1514))
    );
}

#[test]
fn a_fragmenter_resumes_where_another_stopped() {
    let original = udp_datagram(8972, 2);
    let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
    let mut all = Vec::new();
    let mut f = Fragmenter::new(&original, 1500).unwrap();
    assert_eq!(f.remaining(), 7);
    for _ in 0..3 {
        assert!(f.next_into(&mut scratch).unwrap());
        all.push(scratch.data().to_vec());
    }
    let mut g = Fragmenter::new(&original, 1500).unwrap();
    g.resume_at(f.position());
    assert_eq!(g.remaining(), 4);
    while g.next_into(&mut scratch).unwrap() {
        all.push(scratch.data().to_vec());
    }
    assert_eq!(g.remaining(), 0);
    assert_reassembles(&all, &original, 1500);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any datagram at any MTU from 68 up: fragments that fit and make it again.
    #[test]
    fn any_datagram_at_any_mtu(len in 0usize..20_000, mtu in 68usize..9001, ident: u16) {
        let original = udp_datagram(len, ident);
        let fragments = cut(&original, mtu);
        if original.len() - 14 <= mtu {
            prop_assert_eq!(fragments, vec![original]);
        } else {
            assert_reassembles(&fragments, &original, mtu);
        }
    }
}
