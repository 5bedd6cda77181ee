//! A kernel `vxlan` peer's tunnel GSO super-frame, as Linux 6.18 hands it
//! to an AF_PACKET socket with vnet headers (`dataplane/testdata`), through
//! the whole pipeline: decapsulated and passed to the pod whole, then cut by
//! the worker's segmenter for a port without offloads, every segment read
//! back by etherparse.

use std::sync::Arc;

use etherparse::{LinkSlice, NetSlice, SlicedPacket, TransportSlice};

use super::arp;
use super::gso::segments_of;
use crate::config::{NodeConfig, Snapshot};
use crate::io::vnet;
use crate::packet::{Batch, DropReason, Event, GsoKind, MAX_FRAME_LEN, Offload, PortId, Verdict};
use crate::pipeline::Pipeline;

/// The fixture: 10-byte vnet header, then the frame.
const KERNEL_VXLAN_GSO: &[u8] = include_bytes!("../../../testdata/kernel-vxlan-gso.vnet");
const POD_A: PortId = PortId(0);
const UPLINK: PortId = PortId(2);
const POD_A_MAC: [u8; 6] = super::POD_A;
const GATEWAY_MAC: [u8; 6] = super::GW_MAC;
/// Outer Ethernet, IPv4, UDP and VXLAN headers.
const OUTER: usize = 50;

/// Node 1 of the capture: uplink 192.168.200.1 (MAC 02:00:c0:a8:c8:01),
/// VNI 7, the kernel node 192.168.200.2 with pod CIDR 10.244.2.0/24 behind
/// its default VTEP MAC; pod-a (10.244.1.2) resolved.
fn pipeline() -> Pipeline {
    let text = include_str!("../../../../config/node.example.toml")
        .replace("192.168.100.", "192.168.200.")
        .replace("02:00:c0:a8:64:01", "02:00:c0:a8:c8:01")
        + "[overlay]\nvni = 7\n[[nodes]]\nname = \"n2\"\nnode_ip = \"192.168.200.2\"\npod_cidr = \"10.244.2.0/24\"\n";
    let cfg = NodeConfig::from_toml_str(&text).unwrap();
    let snapshot = Arc::new(Snapshot::build(&cfg, 1).unwrap());
    let mut p = Pipeline::new(snapshot, Arc::default(), MAX_FRAME_LEN);
    let learn_a = arp(1, POD_A_MAC, [10, 244, 1, 2], [10, 244, 1, 1], [0xff; 6]);
    super::run(&mut p, 1, &[(POD_A, learn_a)]);
    p
}

/// Runs the fixture's frame, with `offload` and `edit` applied, through `p`.
fn run(
    p: &mut Pipeline,
    offload: Offload,
    edit: impl FnOnce(&mut [u8]),
) -> (Vec<u8>, Offload, Verdict) {
    let (_, bytes) = KERNEL_VXLAN_GSO.split_at(vnet::VNET_HDR_LEN_LEGACY);
    let mut batch = Batch::with_size(2, MAX_FRAME_LEN);
    assert!(batch.push_rx(UPLINK, 2, bytes));
    let frame = batch.frame_mut(0);
    frame.offload = offload;
    edit(frame.data_mut());
    p.process(&mut batch, 2);
    let (frame, verdict) = batch.get(0).unwrap();
    (frame.data().to_vec(), frame.offload, verdict)
}

fn kernel_offload() -> Offload {
    vnet::decode(&KERNEL_VXLAN_GSO[..vnet::VNET_HDR_LEN_LEGACY]).unwrap()
}

/// The captured TCP payload: a kernel pod's first 3,000-byte write.
fn payload() -> Vec<u8> {
    (0..3000usize).map(|i| ((i * 7) % 251) as u8).collect()
}

#[test]
fn a_kernel_peers_tunnel_gso_frame_reaches_the_pod_whole() {
    let mut p = pipeline();
    let (inner, offload, verdict) = run(&mut p, kernel_offload(), |_| {});
    // Before tunnel GSO was accepted: Drop(VxlanMalformed).
    assert_eq!(verdict, Verdict::Forward(POD_A));
    let total = KERNEL_VXLAN_GSO.len() - vnet::VNET_HDR_LEN_LEGACY;
    assert_eq!(inner.len(), total - OUTER);
    assert_eq!(
        offload,
        Offload {
            gso: GsoKind::TcpV4,
            gso_size: 1398,
            hdr_len: 66,
            csum: Some((34, 16)),
            csum_valid: false,
        }
    );
    // What a TAP with vnet headers is given: TCPv4 GSO, NEEDS_CSUM.
    let mut hdr = [0u8; vnet::VNET_HDR_LEN_V1];
    vnet::encode(&offload, &mut hdr);
    assert_eq!(hdr, [1, 1, 66, 0, 0x76, 0x05, 34, 0, 16, 0, 0, 0]);
    assert_eq!(p.counters().events(Event::VxlanDecapsulated), 1);
    assert_eq!(p.counters().events(Event::VxlanGsoDecapsulated), 1);
    // What a port without offloads is given: the worker's segmenter cuts it.
    let segments = segments_of(&inner, &offload);
    assert_eq!(segments.len(), 3);
    let mut received = Vec::new();
    for s in &segments {
        assert!(s.len() - 14 <= 1450, "each segment fits the pod MTU");
        received.extend_from_slice(check_segment(s));
    }
    assert_eq!(received, payload());
}

/// Checks one segment for pod-a with the oracle; returns its TCP payload.
fn check_segment(segment: &[u8]) -> &[u8] {
    let sliced = SlicedPacket::from_ethernet(segment).expect("oracle parses the segment");
    let Some(LinkSlice::Ethernet2(eth)) = &sliced.link else {
        panic!("not Ethernet II")
    };
    assert_eq!((eth.source(), eth.destination()), (GATEWAY_MAC, POD_A_MAC));
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("not IPv4")
    };
    let h = ip.header().to_header();
    assert_eq!(
        (h.source, h.destination),
        ([10, 244, 2, 2], [10, 244, 1, 2])
    );
    assert_eq!(h.time_to_live, 62, "routed by the kernel node and by us");
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Tcp(t)) = &sliced.transport else {
        panic!("not TCP")
    };
    let expect = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
    assert_eq!(t.checksum(), expect, "TCP checksum");
    t.payload()
}

/// A change to the fixture's bytes.
type Edit = fn(&mut [u8]);

#[test]
fn tunnel_gso_metadata_that_does_not_fit_is_dropped_by_reason() {
    let mut p = pipeline();
    let offload = kernel_offload();
    let cases: [(Offload, Edit, DropReason); 4] = [
        (
            Offload {
                csum: None,
                ..offload
            },
            |_| {},
            DropReason::VxlanGsoChecksum,
        ),
        (
            Offload {
                csum: Some((34, 6)),
                ..offload
            },
            |_| {},
            DropReason::VxlanGsoChecksum,
        ),
        (
            Offload {
                gso: GsoKind::UdpL4,
                ..offload
            },
            |_| {},
            DropReason::VxlanGsoUnsupported,
        ),
        // The inner IPv4 total length one short of the frame.
        (
            offload,
            |f| f[OUTER + 17] -= 1,
            DropReason::VxlanGsoMalformed,
        ),
    ];
    for (i, (offload, edit, reason)) in cases.into_iter().enumerate() {
        let (_, _, verdict) = run(&mut p, offload, edit);
        assert_eq!(verdict, Verdict::Drop(reason), "case {i}");
        assert!(p.counters().drops(reason) > 0, "case {i}");
    }
    assert_eq!(p.counters().drops(DropReason::VxlanMalformed), 0);
}
