use super::*;

// fd00::a -> fd00:244:0:1::5, UDP, hop limit 64, traffic class 0xb8,
// flow label 0x12345, 12 bytes payload (UDP 53000 -> 53, "data"), 2 bytes padding.
static PACKET_BYTES: [u8; 54] = [
    0x6b, 0x81, 0x23, 0x45, 0x00, 0x0c, 0x11, 0x40, // ver, tc, flow, len, nh, hlim
    0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, // src
    0xfd, 0x00, 0x02, 0x44, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x05, // dst
    0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'd', b'a', b't', b'a', // UDP
    0xee, 0xee, // padding
];

fn src() -> Ipv6Addr {
    "fd00::a".parse().unwrap()
}

fn dst() -> Ipv6Addr {
    "fd00:244:0:1::5".parse().unwrap()
}

/// A packet with `exts` (as `(type, bytes)`, bytes without the next-header byte) then UDP.
fn with_exts(exts: &[(u8, Vec<u8>)], upper: &[u8]) -> Vec<u8> {
    let mut bytes = PACKET_BYTES[..HEADER_LEN].to_vec();
    bytes[6] = exts.first().map_or(17, |e| e.0);
    for (i, (_, body)) in exts.iter().enumerate() {
        bytes.push(exts.get(i + 1).map_or(17, |e| e.0));
        bytes.extend_from_slice(body);
    }
    bytes.extend_from_slice(upper);
    let len = (bytes.len() - HEADER_LEN) as u16;
    bytes[4..6].copy_from_slice(&len.to_be_bytes());
    bytes
}

/// An 8-byte Hop-by-Hop/Routing/Destination header body: length 0, PadN.
fn opts8() -> Vec<u8> {
    vec![0, 1, 4, 0, 0, 0, 0]
}

fn frag(offset: u16, more: bool, ident: u32) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
    v.extend_from_slice(&ident.to_be_bytes());
    v
}

#[test]
fn deconstruct() {
    let p = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
    assert_eq!(p.version(), 6);
    assert_eq!(p.traffic_class(), 0xb8);
    assert_eq!(p.flow_label(), 0x12345);
    assert_eq!(p.payload_len(), 12);
    assert_eq!(p.next_header(), IpProtocol::UDP);
    assert_eq!(p.hop_limit(), 64);
    assert_eq!(p.src_addr(), src());
    assert_eq!(p.dst_addr(), dst());
    assert_eq!(p.payload(), &PACKET_BYTES[40..52]);
    assert!(!p.is_jumbogram());
    let upper = p.upper_layer().unwrap();
    assert_eq!(
        upper,
        UpperLayer {
            protocol: IpProtocol::UDP,
            offset: 40,
            fragment: None
        }
    );
    assert_eq!(p.upper_layer_payload(&upper), &PACKET_BYTES[40..52]);

    let oracle = etherparse::Ipv6HeaderSlice::from_slice(&PACKET_BYTES).unwrap();
    assert_eq!(oracle.traffic_class(), p.traffic_class());
    assert_eq!(oracle.flow_label().value(), p.flow_label());
    assert_eq!(oracle.payload_length(), p.payload_len());
    assert_eq!(oracle.next_header().0, p.next_header().0);
    assert_eq!(oracle.source_addr(), p.src_addr());
    assert_eq!(oracle.destination_addr(), p.dst_addr());
}

#[test]
fn construct() {
    let mut bytes = [0xeeu8; 54];
    let mut p = Ipv6Packet::new_unchecked(&mut bytes[..]);
    p.set_version(6);
    p.set_traffic_class(0xb8);
    p.set_flow_label(0x12345);
    p.set_payload_len(12);
    p.set_next_header(IpProtocol::UDP);
    p.set_hop_limit(64);
    p.set_src_addr(src());
    p.set_dst_addr(dst());
    p.payload_mut().copy_from_slice(&PACKET_BYTES[40..52]);
    assert_eq!(bytes, PACKET_BYTES);
}

#[test]
fn truncated() {
    for len in 0..HEADER_LEN {
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET_BYTES[..len]).unwrap_err(),
            WireError::Truncated
        );
    }
    assert_eq!(
        Ipv6Packet::new_checked(&PACKET_BYTES[..51]).unwrap_err(),
        WireError::Truncated
    );
    assert!(Ipv6Packet::new_checked(&PACKET_BYTES[..52]).is_ok());
}

#[test]
fn malformed_version() {
    let mut bytes = PACKET_BYTES;
    bytes[0] = 0x4b;
    assert_eq!(
        Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
        WireError::Malformed
    );
}

#[test]
fn hop_limit_and_setters_keep_other_bits() {
    let mut bytes = PACKET_BYTES;
    let mut p = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
    p.decrement_hop_limit();
    assert_eq!(p.hop_limit(), 63);
    p.set_traffic_class(0x01);
    assert_eq!((p.version(), p.flow_label()), (6, 0x12345));
    p.set_flow_label(0xfff_ffff);
    assert_eq!(
        (p.version(), p.traffic_class(), p.flow_label()),
        (6, 0x01, 0xf_ffff)
    );
    p.set_hop_limit(0);
    p.decrement_hop_limit();
    assert_eq!(p.hop_limit(), 0);
}

#[test]
fn extension_chain_matches_oracle() {
    let udp = &PACKET_BYTES[40..52];
    let exts = [
        (0, opts8()),
        (60, opts8()),
        (43, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        (44, frag(0, true, 7)),
    ];
    let bytes = with_exts(&exts, udp);
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let upper = p.upper_layer().unwrap();
    assert_eq!(upper.protocol, IpProtocol::UDP);
    assert_eq!(upper.offset, 40 + 8 + 8 + 16 + 8);
    assert_eq!(
        upper.fragment,
        Some(Ipv6Fragment {
            offset: 0,
            more: true,
            ident: 7
        })
    );
    assert_eq!(p.upper_layer_payload(&upper), udp);

    let oracle = etherparse::Ipv6Slice::from_slice(&bytes).unwrap();
    assert_eq!(oracle.payload().ip_number.0, upper.protocol.0);
    assert_eq!(oracle.payload().payload, p.upper_layer_payload(&upper));
    assert!(oracle.is_payload_fragmented());
    let (exts, next, rest) =
        etherparse::Ipv6Extensions::from_slice(etherparse::IpNumber(0), p.payload()).unwrap();
    let f = exts.fragment.unwrap();
    assert_eq!((next.0, rest.len()), (17, udp.len()));
    assert_eq!(
        (
            f.fragment_offset.byte_offset(),
            f.more_fragments,
            f.identification
        ),
        (0, true, 7)
    );
}

#[test]
fn auth_header_length_in_four_byte_units() {
    // AH with payload length 4: (4 + 2) * 4 = 24 bytes.
    let mut ah = vec![4, 0, 0];
    ah.extend_from_slice(&[0xaa; 21]);
    let bytes = with_exts(&[(51, ah)], &PACKET_BYTES[40..52]);
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let upper = p.upper_layer().unwrap();
    assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 64));
    let oracle = etherparse::Ipv6Slice::from_slice(&bytes).unwrap();
    assert_eq!(oracle.payload().payload, p.upper_layer_payload(&upper));
}

#[test]
fn later_fragment_stops_walk() {
    // The fragment says "Destination Options follow" but this is a later fragment.
    let mut f = frag(1448, true, 0xdead_beef);
    f[0] = 0;
    let mut bytes = with_exts(&[(44, f)], &[0xff; 16]);
    bytes[HEADER_LEN] = 60;
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let upper = p.upper_layer().unwrap();
    assert_eq!(upper.protocol, IpProtocol::IPV6_OPTS);
    assert_eq!(upper.offset, 48);
    assert_eq!(
        upper.fragment,
        Some(Ipv6Fragment {
            offset: 1448,
            more: true,
            ident: 0xdead_beef
        })
    );
    assert!(upper.fragment.unwrap().is_fragment());
}

#[test]
fn esp_and_no_next_header_end_the_walk() {
    let bytes = with_exts(&[(60, opts8())], &[0; 8]);
    let mut bytes = bytes;
    bytes[HEADER_LEN] = 50;
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.upper_layer().unwrap().protocol, IpProtocol::ESP);
    let mut bytes = PACKET_BYTES;
    bytes[6] = 59;
    bytes[5] = 0;
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(
        p.upper_layer().unwrap(),
        UpperLayer {
            protocol: IpProtocol::IPV6_NO_NEXT,
            offset: 40,
            fragment: None
        }
    );
    assert!(p.payload().is_empty());
}

#[test]
fn at_most_eight_extension_headers() {
    let eight: Vec<_> = (0..8).map(|_| (60, opts8())).collect();
    let bytes = with_exts(&eight, &[0; 8]);
    let upper = Ipv6Packet::new_checked(&bytes[..])
        .unwrap()
        .upper_layer()
        .unwrap();
    assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 40 + 64));
    let nine: Vec<_> = (0..9).map(|_| (60, opts8())).collect();
    let bytes = with_exts(&nine, &[0; 8]);
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.upper_layer().unwrap_err(), WireError::Malformed);
}

#[test]
fn hop_by_hop_only_first() {
    let bytes = with_exts(&[(60, opts8()), (0, opts8())], &[0; 8]);
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.upper_layer().unwrap_err(), WireError::Malformed);
    assert!(etherparse::Ipv6Slice::from_slice(&bytes).is_err());
}

#[test]
fn truncated_extension_headers() {
    // Routing header claiming 16 bytes with 8 present.
    let mut bytes = with_exts(&[(43, opts8())], &[]);
    bytes[HEADER_LEN + 1] = 1;
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    assert_eq!(p.upper_layer().unwrap_err(), WireError::Truncated);
    // Every cut of an extension chain: the payload length bounds the walk.
    let full = with_exts(
        &[
            (0, opts8()),
            (44, frag(0, false, 1)),
            (51, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ],
        &[],
    );
    for cut in HEADER_LEN..full.len() {
        let mut bytes = full[..cut].to_vec();
        let len = (cut - HEADER_LEN) as u16;
        bytes[4..6].copy_from_slice(&len.to_be_bytes());
        if len == 0 {
            continue; // payload length 0 with Hop-by-Hop: a (bad) jumbogram.
        }
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap_err(),
            WireError::Truncated,
            "cut at {cut}"
        );
    }
    let p = Ipv6Packet::new_checked(&full[..]).unwrap();
    let upper = p.upper_layer().unwrap();
    assert_eq!(
        (upper.protocol, upper.offset),
        (IpProtocol::UDP, full.len())
    );
    assert_eq!(
        upper.fragment,
        Some(Ipv6Fragment {
            offset: 0,
            more: false,
            ident: 1
        })
    );
    assert!(!upper.fragment.unwrap().is_fragment());
}

fn jumbogram(jumbo_len: u32, total_payload: usize) -> Vec<u8> {
    let mut bytes = PACKET_BYTES[..HEADER_LEN].to_vec();
    bytes[4] = 0;
    bytes[5] = 0;
    bytes[6] = 0;
    // Hop-by-Hop: next header UDP, length 0 (8 bytes), Jumbo Payload at 4n+2.
    bytes.extend_from_slice(&[17, 0, 0xc2, 4]);
    bytes.extend_from_slice(&jumbo_len.to_be_bytes());
    bytes.resize(HEADER_LEN + total_payload, 0x5a);
    bytes
}

#[test]
fn jumbogram_accepted_with_option() {
    let bytes = jumbogram(70_000, 70_000);
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    assert!(p.is_jumbogram());
    assert_eq!(p.payload().len(), 70_000);
    let upper = p.upper_layer().unwrap();
    assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 48));
    assert_eq!(p.upper_layer_payload(&upper).len(), 70_000 - 8);
}

#[test]
fn jumbogram_option_after_padding() {
    // 16-byte Hop-by-Hop: Pad1 x4, Jumbo Payload, PadN(2).
    let mut bytes = jumbogram(70_000, 70_000);
    let hbh = [17, 1, 0, 0, 0, 0, 0xc2, 4, 0, 1, 0x11, 0x70, 1, 2, 0, 0];
    bytes[HEADER_LEN..HEADER_LEN + 16].copy_from_slice(&hbh);
    let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
    let upper = p.upper_layer().unwrap();
    assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 56));
    // Only padding: no Jumbo Payload option.
    bytes[HEADER_LEN + 6] = 1;
    assert_eq!(
        Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
        WireError::Malformed
    );
}

#[test]
fn jumbogram_rejections() {
    // Jumbo length that fits 16 bits.
    assert_eq!(
        Ipv6Packet::new_checked(&jumbogram(65_535, 70_000)[..]).unwrap_err(),
        WireError::Malformed
    );
    // Longer than the buffer.
    assert_eq!(
        Ipv6Packet::new_checked(&jumbogram(70_001, 70_000)[..]).unwrap_err(),
        WireError::Truncated
    );
    // No Jumbo option: PadN only.
    let mut bytes = jumbogram(70_000, 70_000);
    bytes[HEADER_LEN + 2] = 1;
    assert_eq!(
        Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
        WireError::Malformed
    );
    // Jumbo option with a bad length.
    let mut bytes = jumbogram(70_000, 70_000);
    bytes[HEADER_LEN + 3] = 3;
    assert_eq!(
        Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
        WireError::Malformed
    );
    // An option overrunning the header.
    let mut bytes = jumbogram(70_000, 70_000);
    bytes[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&[1, 9]);
    assert_eq!(
        Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
        WireError::Malformed
    );
    // Hop-by-Hop header cut short.
    let bytes = jumbogram(70_000, 70_000);
    assert_eq!(
        Ipv6Packet::new_checked(&bytes[..HEADER_LEN + 1]).unwrap_err(),
        WireError::Truncated
    );
    assert_eq!(
        Ipv6Packet::new_checked(&bytes[..HEADER_LEN + 7]).unwrap_err(),
        WireError::Truncated
    );
}

#[test]
fn address_update_matches_full_sum() {
    let data = [0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc];
    let full = |a: Ipv6Addr| {
        !checksum::fold(checksum::combine(
            checksum::pseudo_header_v6(a, dst(), 17, 6),
            checksum::sum(&data),
        ))
    };
    let new = Ipv6Addr::new(0xffff, 0xffff, 0, 0, 0xffff, 0, 1, 0xfffe);
    assert_eq!(update_checksum_for_addr(full(src()), src(), new), full(new));
}

#[test]
fn link_local_from_a_mac() {
    // As Linux forms it for 02:00:0a:f4:01:02 (`ip -6 addr`: fe80::aff:fef4:102).
    let mac = crate::wire::MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]);
    let want: Ipv6Addr = "fe80::aff:fef4:102".parse().unwrap();
    assert_eq!(link_local_eui64(mac), want);
    let global = crate::wire::MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    let want: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
    assert_eq!(link_local_eui64(global), want);
}
