//! IPv6 from pods (issue 25, A8): Router Advertisements and other
//! router-only ICMPv6 are dropped (RA guard), sources other than the pod's
//! link-local address are dropped, each counted by its reason; the pod's
//! own link-local traffic is switched as before.

use core::net::Ipv6Addr;

use super::*;
use crate::wire::Icmpv6Packet;
use crate::wire::testdata::ROUTER_ADVERT as RA;

/// Pod A's link-local address (modified EUI-64 of 02:00:0a:f4:01:02).
const A_LINK_LOCAL: &str = "fe80::aff:fef4:102";
/// The all-nodes group and its multicast MAC.
const ALL_NODES: &str = "ff02::1";
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// An ICMPv6 echo request.
const ECHO: [u8; 12] = [0x80, 0, 0, 0, 0x12, 0x34, 0, 1, b'p', b'i', b'n', b'g'];

/// An Ethernet frame from `src_mac` to `dst_mac` carrying ICMPv6 `message`
/// from `src` to `dst` (hop limit 255, checksum filled).
fn icmpv6(src_mac: [u8; 6], dst_mac: [u8; 6], src: &str, dst: &str, message: &[u8]) -> Vec<u8> {
    let (src, dst): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut frame = dst_mac.to_vec();
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    frame.extend_from_slice(&(message.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[58, 255]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(message);
    Icmpv6Packet::new_checked(&mut frame[54..])
        .unwrap()
        .fill_checksum(src, dst);
    frame
}

#[test]
fn a_router_advertisement_from_a_pod_reaches_no_other_pod() {
    for enforce in [true, false] {
        let mut p = Pipeline::new(snapshot_with(enforce), Arc::default(), 2048);
        let ra = icmpv6(POD_A, ALL_NODES_MAC, A_LINK_LOCAL, ALL_NODES, &RA);
        let out = run(&mut p, 0, &[(A, ra)]);
        assert_eq!(out[0].1, Verdict::Drop(DropReason::RaGuardRouterAdvert));
        assert_eq!(p.counters().drops(DropReason::RaGuardRouterAdvert), 1);
        // A redirect is router-only too.
        let mut redirect = vec![0x89, 0, 0, 0, 0, 0, 0, 0];
        redirect.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        redirect.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        let redirect = icmpv6(POD_A, POD_B, A_LINK_LOCAL, "fe80::aff:fef4:103", &redirect);
        let out = run(&mut p, 1, &[(A, redirect)]);
        assert_eq!(out[0].1, Verdict::Drop(DropReason::RaGuardRedirect));
    }
}

#[test]
fn forged_ipv6_sources_are_dropped_and_counted() {
    let mut p = Pipeline::new(snapshot_with(true), Arc::default(), 2048);
    let own = icmpv6(POD_A, ALL_NODES_MAC, A_LINK_LOCAL, ALL_NODES, &ECHO);
    let forged = [
        icmpv6(POD_A, ALL_NODES_MAC, "fe80::aff:fef4:103", ALL_NODES, &ECHO),
        icmpv6(POD_A, POD_B, "2001:db8::66", "fe80::aff:fef4:103", &ECHO),
    ];
    let frames = [own, forged[0].clone(), forged[1].clone()].map(|f| (A, f));
    let verdicts: Vec<Verdict> = run(&mut p, 0, &frames).iter().map(|o| o.1).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Flood,
            Verdict::Drop(DropReason::SpoofedSrcIpv6),
            Verdict::Drop(DropReason::SpoofedSrcIpv6),
        ]
    );
    assert_eq!(p.counters().drops(DropReason::SpoofedSrcIpv6), 2);
    // The uplink is no pod: its IPv6 is not guarded (nor switched to pods).
    let ra = icmpv6(ROUTER, ALL_NODES_MAC, "fe80::1", ALL_NODES, &RA);
    let out = run(&mut p, 1, &[(UP, ra)]);
    assert_eq!(out[0].1, Verdict::Drop(DropReason::NotForUs));
}
