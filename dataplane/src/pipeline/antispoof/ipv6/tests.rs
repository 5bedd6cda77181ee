//! The RA guard and the IPv6 source check over byte fixtures.

use super::*;
use crate::config::PortKind;
use crate::packet::PortId;
use crate::wire::testdata::ROUTER_ADVERT as RA;

/// The pod's MAC and the link-local address Linux forms from it.
const MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02];
const OWN: &str = "fe80::aff:fef4:102";

/// A Neighbor Solicitation for duplicate address detection of `fe80::aff:fef4:102`.
const DAD_NS: [u8; 24] = [
    0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // type, code, checksum, reserved
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x0a, 0xff, 0xfe, 0xf4, 0x01, 0x02, // target
];

/// A Neighbor Advertisement (solicited, override) of `fe80::aff:fef4:102`
/// with its Target Link-Layer Address option.
const NA: [u8; 32] = [
    0x88, 0x00, 0x00, 0x00, 0x60, 0x00, 0x00, 0x00, // type, code, checksum, S+O
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x0a, 0xff, 0xfe, 0xf4, 0x01, 0x02, // target
    0x02, 0x01, 0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02, // target link-layer address
];

/// An MLDv2 report (type 143) joining the solicited-node group of the pod's address.
const MLD_V2_REPORT: [u8; 28] = [
    0x8f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x01, // type, code, checksum, reserved, 1 record
    0x04, 0x00, 0x00, 0x00, // change to exclude, no sources
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0xf4, 0x01, 0x02,
];

/// UDP 5353 -> 5353 with 4 bytes of data (checksum 0: not read).
const UDP: [u8; 12] = [
    0x14, 0xe9, 0x14, 0xe9, 0x00, 0x0c, 0x00, 0x00, b'p', b'o', b'd', b'!',
];

fn port(mac: Option<[u8; 6]>) -> PortSpec {
    PortSpec {
        id: PortId(0),
        name: "pod-a".into(),
        kind: PortKind::Tap,
        ifname: "tap-a".into(),
        is_uplink: false,
        mac: mac.map(MacAddr),
        ips: vec!["10.244.1.2".parse().unwrap()],
        netns: None,
        pod_ifname: "eth0".into(),
        mtu: 1500,
        offload: true,
        rx_ring: false,
        masquerade: None,
    }
}

/// An IPv6 packet from `src` to `dst` (hop limit 255) whose payload is
/// the extension headers `exts` (next-header byte filled in) then `upper`
/// of protocol `protocol`.
fn packet(src: &str, dst: &str, exts: &[(u8, Vec<u8>)], protocol: u8, upper: &[u8]) -> Vec<u8> {
    let src: Ipv6Addr = src.parse().unwrap();
    let dst: Ipv6Addr = dst.parse().unwrap();
    let mut payload = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        payload.push(exts.get(i + 1).map_or(protocol, |e| e.0));
        payload.extend_from_slice(body);
    }
    payload.extend_from_slice(upper);
    let mut bytes = vec![0x60, 0, 0, 0];
    bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    bytes.push(exts.first().map_or(protocol, |e| e.0));
    bytes.push(255);
    bytes.extend_from_slice(&src.octets());
    bytes.extend_from_slice(&dst.octets());
    bytes.extend_from_slice(&payload);
    bytes
}

fn icmp(src: &str, dst: &str, message: &[u8]) -> Vec<u8> {
    packet(src, dst, &[], 58, message)
}

fn verdict(port: &PortSpec, bytes: &[u8]) -> Result<(), DropReason> {
    check(port, bytes)
}

#[test]
fn the_pods_link_local_address_is_its_macs_eui64() {
    assert_eq!(
        link_local_eui64(MacAddr(MAC)),
        OWN.parse::<Ipv6Addr>().unwrap()
    );
    let p = port(Some(MAC));
    assert_eq!(verdict(&p, &packet(OWN, "ff02::fb", &[], 17, &UDP)), Ok(()));
    assert_eq!(verdict(&p, &icmp(OWN, "ff02::1:fff4:102", &NA)), Ok(()));
}

#[test]
fn router_advertisements_redirects_and_queries_are_dropped_from_any_pod() {
    let redirect = {
        let mut m = vec![0x89, 0, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        m.extend_from_slice(&"2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
        m
    };
    let mld_query = [
        0x82, 0, 0, 0, 0x27, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let renumbering = [0x8a, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let mra = [0x97, 0x14, 0, 0, 0, 0x7d, 0, 0x3c];
    // With and without an assigned MAC: a pod is never a router.
    for p in [port(Some(MAC)), port(None)] {
        let cases: [(&[u8], DropReason); 5] = [
            (&RA, DropReason::RaGuardRouterAdvert),
            (&redirect, DropReason::RaGuardRedirect),
            (&mld_query, DropReason::RaGuardRouterOnly),
            (&renumbering, DropReason::RaGuardRouterOnly),
            (&mra, DropReason::RaGuardRouterOnly),
        ];
        for (message, reason) in cases {
            assert_eq!(verdict(&p, &icmp(OWN, "ff02::1", message)), Err(reason));
        }
    }
}

#[test]
fn an_advertisement_behind_extension_headers_or_in_a_fragment_is_found() {
    let p = port(None);
    let hop_by_hop = (0u8, vec![0, 1, 4, 0, 0, 0, 0]); // PadN
    let dest_opts = (60u8, vec![0, 1, 4, 0, 0, 0, 0]);
    let ra = packet(OWN, "ff02::1", &[hop_by_hop, dest_opts.clone()], 58, &RA);
    assert_eq!(verdict(&p, &ra), Err(DropReason::RaGuardRouterAdvert));
    // First fragment (offset 0, more to come) holding the advertisement.
    let first = (44u8, vec![0, 0, 1, 0, 0, 0, 7]);
    let ra = packet(OWN, "ff02::1", std::slice::from_ref(&first), 58, &RA[..16]);
    assert_eq!(verdict(&p, &ra), Err(DropReason::RaGuardRouterAdvert));
    // A first fragment that ends before the ICMPv6 header does (RFC 7112).
    let cut = packet(OWN, "ff02::1", &[first, dest_opts], 58, &RA[..4]);
    assert_eq!(verdict(&p, &cut), Err(DropReason::Ipv6Malformed));
    // A later fragment carries no upper-layer header: it passes alone.
    let later = (44u8, vec![0, 0, 16, 0, 0, 0, 7]);
    assert_eq!(
        verdict(&p, &packet(OWN, "ff02::1", &[later], 58, &RA[16..])),
        Ok(())
    );
}

#[test]
fn forged_sources_are_dropped() {
    let p = port(Some(MAC));
    for src in [
        "fe80::aff:fef4:103",
        "fe80::1",
        "2001:db8::2",
        "fd00::2",
        "::",
        "ff02::1",
    ] {
        let udp = packet(src, "ff02::fb", &[], 17, &UDP);
        assert_eq!(verdict(&p, &udp), Err(DropReason::SpoofedSrcIpv6), "{src}");
    }
    let echo = [0x80, 0, 0, 0, 0, 1, 0, 1];
    assert_eq!(
        verdict(&p, &icmp("fe80::1", "ff02::1", &echo)),
        Err(DropReason::SpoofedSrcIpv6)
    );
    // Without an assigned MAC there is nothing to check the source against.
    assert_eq!(
        verdict(&port(None), &packet("fe80::1", "ff02::fb", &[], 17, &UDP)),
        Ok(())
    );
}

#[test]
fn the_unspecified_source_is_only_for_what_hosts_send_without_an_address() {
    let p = port(Some(MAC));
    let dad = icmp("::", "ff02::1:fff4:102", &DAD_NS);
    assert_eq!(verdict(&p, &dad), Ok(()));
    assert_eq!(verdict(&p, &icmp("::", "ff02::16", &MLD_V2_REPORT)), Ok(()));
    let rs = [0x85, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(verdict(&p, &icmp("::", "ff02::2", &rs)), Ok(()));
    // Duplicate address detection of another pod's address (it would fail there).
    let mut other = DAD_NS;
    other[23] = 0x03;
    let dad_other = icmp("::", "ff02::1:fff4:103", &other);
    assert_eq!(verdict(&p, &dad_other), Err(DropReason::SpoofedSrcIpv6));
    assert_eq!(
        verdict(&p, &icmp("::", "ff02::1", &NA)),
        Err(DropReason::SpoofedSrcIpv6)
    );
}

#[test]
fn neighbour_discovery_speaks_only_for_the_pod() {
    let p = port(Some(MAC));
    // Advertising another address (fe80::aff:fef4:103), or another MAC.
    let mut other_target = NA;
    other_target[23] = 0x03;
    assert_eq!(
        verdict(&p, &icmp(OWN, "ff02::1", &other_target)),
        Err(DropReason::SpoofedSrcIpv6)
    );
    let mut other_mac = NA;
    other_mac[31] = 0x66;
    assert_eq!(
        verdict(&p, &icmp(OWN, "ff02::1", &other_mac)),
        Err(DropReason::SpoofedSrcMac)
    );
    // A solicitation for another pod's address is address resolution: fine.
    let mut ns = DAD_NS.to_vec();
    ns[23] = 0x03;
    ns.extend_from_slice(&[0x01, 0x01, 0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]);
    assert_eq!(verdict(&p, &icmp(OWN, "ff02::1:fff4:103", &ns)), Ok(()));
    // An option of length 0: receivers discard the message (RFC 4861 §4.6).
    let mut zero = ns.clone();
    zero[25] = 0;
    assert_eq!(
        verdict(&p, &icmp(OWN, "ff02::1:fff4:103", &zero)),
        Err(DropReason::Ipv6Malformed)
    );
}

#[test]
fn malformed_packets_are_dropped() {
    let p = port(None);
    let whole = packet(OWN, "ff02::fb", &[], 17, &UDP);
    // Cut short, not version 6, a payload length past the frame.
    assert_eq!(verdict(&p, &whole[..30]), Err(DropReason::Ipv6Malformed));
    let mut v4 = whole.clone();
    v4[0] = 0x45;
    assert_eq!(verdict(&p, &v4), Err(DropReason::Ipv6Malformed));
    let mut long = whole.clone();
    long[5] += 8;
    assert_eq!(verdict(&p, &long), Err(DropReason::Ipv6Malformed));
    // Nine extension headers: more than the guard walks.
    let opts = (60u8, vec![0, 1, 4, 0, 0, 0, 0]);
    let chain = vec![opts; 9];
    assert_eq!(
        verdict(&p, &packet(OWN, "ff02::1", &chain, 58, &RA)),
        Err(DropReason::Ipv6Malformed)
    );
}
