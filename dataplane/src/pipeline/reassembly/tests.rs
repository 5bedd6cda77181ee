//! The reassembly slot on its own: fragments in any order, repeats,
//! overlaps and misfits.

use super::*;

const HEADER: [u8; 20] = [0x45; 20];

/// A slot collecting a datagram from 10.0.0.2 to 10.0.0.1.
fn started() -> Datagram {
    let mut d = Datagram::new();
    let key = DatagramKey {
        src: Ipv4Addr::new(10, 0, 0, 2),
        dst: Ipv4Addr::new(10, 0, 0, 1),
        protocol: IpProtocol::UDP,
        ident: 1,
    };
    d.start(key, 0);
    d
}

#[test]
fn fragments_in_any_order_make_the_datagram() {
    let mut d = started();
    assert_eq!(d.add(16, false, &[9; 20], &[3; 5]), Added::Held);
    assert_eq!(d.header_len, 0, "no first fragment yet");
    assert_eq!(d.add(0, true, &HEADER, &[1; 8]), Added::Held);
    assert_eq!(d.add(0, true, &HEADER, &[1; 8]), Added::Repeat);
    assert_eq!(d.add(8, true, &[9; 20], &[2; 8]), Added::Complete);
    assert_eq!(d.end, Some(21));
    let mut want = vec![1u8; 8];
    want.extend([2; 8]);
    want.extend([3; 5]);
    assert_eq!(&d.data[..21], &want[..]);
    // The first fragment's header is the datagram's.
    assert_eq!(&d.header[..d.header_len], &HEADER);
}

#[test]
fn misfits_are_refused() {
    let mut d = started();
    // Not a multiple of 8 before the end; empty; beyond 64 KiB.
    assert_eq!(d.add(0, true, &HEADER, &[1; 7]), Added::Misfit);
    assert_eq!(d.add(0, true, &HEADER, &[]), Added::Misfit);
    assert_eq!(d.add(65_512, false, &HEADER, &[0; 8]), Added::Misfit);
    // Within 65,535 bytes with a 20-byte header, not with a 60-byte one.
    assert_eq!(d.add(65_504, false, &[0x4f; 60], &[0; 8]), Added::Misfit);
    assert_eq!(d.add(0, true, &HEADER, &[1; 16]), Added::Held);
    // Overlapping in part.
    assert_eq!(d.add(8, true, &HEADER, &[1; 16]), Added::Misfit);
    // Past the end, or a second, different end.
    assert_eq!(d.add(32, false, &HEADER, &[1; 4]), Added::Held);
    assert_eq!(d.add(40, true, &HEADER, &[1; 8]), Added::Misfit);
    assert_eq!(d.add(16, false, &HEADER, &[1; 4]), Added::Misfit);
    // A last fragment ending before data already received.
    let mut e = started();
    assert_eq!(e.add(64, true, &HEADER, &[1; 8]), Added::Held);
    assert_eq!(e.add(0, false, &HEADER, &[1; 8]), Added::Misfit);
}

#[test]
fn the_oldest_datagram_gives_way_when_every_slot_is_busy() {
    let mut r = Reassembler::default();
    let key = |ident| DatagramKey {
        src: Ipv4Addr::new(10, 0, 0, 2),
        dst: Ipv4Addr::new(10, 0, 0, 1),
        protocol: IpProtocol::UDP,
        ident,
    };
    for n in 0..SLOTS as u16 {
        let (i, given_up) = r.slot_for(key(n), u64::from(n));
        assert_eq!(given_up, 0);
        r.slots[i].add(0, true, &HEADER, &[0; 8]);
    }
    assert_eq!(r.busy, SLOTS);
    // The same datagram finds its slot; a new one takes the oldest's.
    let (i, _) = r.slot_for(key(5), 100);
    assert_eq!(r.slots[i].key, key(5));
    let (i, given_up) = r.slot_for(key(1000), 100);
    assert_eq!(
        (r.slots[i].key, r.slots[i].since, given_up),
        (key(1000), 100, 1)
    );
    assert!(r.slots.iter().all(|d| d.key != key(0)));
    // The same identification with another protocol is another datagram.
    let mut icmp = key(7);
    icmp.protocol = IpProtocol::ICMP;
    let (i, _) = r.slot_for(icmp, 101);
    assert_eq!(r.slots[i].received, 0);
}
