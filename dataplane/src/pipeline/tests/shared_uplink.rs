//! A node whose uplink is shared with the node's network stack, with the
//! host's port (here port A): what podswitch takes and what it leaves to
//! the kernel, and the route from pods to the node's address.

use super::*;
use crate::config::HostSection;

const NODE_IP: [u8; 4] = [192, 168, 100, 1];
const HOST_IP: [u8; 4] = [10, 244, 1, 0];
const HOST_MAC: [u8; 6] = POD_A;

fn shared(shared: bool) -> Pipeline {
    let mut cfg =
        NodeConfig::from_toml_str(include_str!("../../../../config/node.example.toml")).unwrap();
    for p in &mut cfg.ports {
        p.mac = None;
        p.ips.clear();
    }
    cfg.uplink.as_mut().unwrap().shared = shared;
    cfg.host = Some(HostSection {
        port: cfg.ports[0].name.clone(),
        address: None,
        service_cidrs: Vec::new(),
    });
    let snapshot = Arc::new(Snapshot::build(&cfg, 1).unwrap());
    assert_eq!(snapshot.host.map(|h| h.port), Some(A));
    Pipeline::new(snapshot, Arc::default(), 2048)
}

fn verdicts(out: &[(Vec<u8>, Verdict)]) -> Vec<Verdict> {
    out.iter().map(|(_, v)| *v).collect()
}

#[test]
fn arp_for_the_node_ip_is_left_to_the_kernel() {
    let request = arp(1, ROUTER, [192, 168, 100, 2], [0; 6], NODE_IP, [0xff; 6]);
    let mut own = shared(false);
    let out = run(&mut own, SEC, &[(UP, request.clone())]);
    assert_eq!(verdicts(&out), [Verdict::Forward(UP)], "answered when ours");
    let mut p = shared(true);
    let out = run(&mut p, SEC, &[(UP, request)]);
    assert_eq!(verdicts(&out), [Verdict::Drop(DropReason::HostOwned)]);
    assert_eq!(p.counters().drops(DropReason::HostOwned), 1);
}

#[test]
fn the_node_ips_own_traffic_is_left_to_the_kernel() {
    let mut p = shared(true);
    let frames = [
        // The kernel answers pings to its address, and owns its ports.
        (UP, ping(ROUTER, UP_MAC, [192, 168, 100, 2], NODE_IP)),
        (UP, udp(ROUTER, UP_MAC, [192, 168, 100, 2], NODE_IP, 64)),
        // Routed through the node to somewhere that is not a pod: the
        // kernel's business too.
        (
            UP,
            udp(ROUTER, UP_MAC, [192, 168, 100, 2], [172, 16, 0, 9], 64),
        ),
        // IPv6 to the NIC's MAC.
        (UP, {
            let mut f = ping(ROUTER, UP_MAC, [192, 168, 100, 2], NODE_IP);
            f[12..14].copy_from_slice(&[0x86, 0xdd]);
            f
        }),
    ];
    let out = run(&mut p, SEC, &frames);
    assert_eq!(verdicts(&out), [Verdict::Drop(DropReason::HostOwned); 4]);
    let mut own = shared(false);
    let out = run(&mut own, SEC, &frames[..1]);
    assert_eq!(
        verdicts(&out),
        [Verdict::Forward(UP)],
        "echo answered when ours"
    );
}

#[test]
fn pods_on_the_wire_are_still_ours() {
    let mut p = shared(true);
    // A pod of this node from the wire is routed (held while ARP runs).
    let to_pod = udp(ROUTER, UP_MAC, [192, 168, 100, 2], [10, 244, 1, 3], 64);
    let out = run(&mut p, SEC, &[(UP, to_pod)]);
    assert!(
        !out.iter()
            .any(|(_, v)| *v == Verdict::Drop(DropReason::HostOwned)),
        "{out:?}"
    );
}

#[test]
fn pods_reach_the_node_ip_through_the_host_port() {
    let mut p = shared(true);
    // The host's stack resolves the gateway: podswitch learns its address
    // (the pod subnet's network address) and answers.
    let request = arp(1, HOST_MAC, HOST_IP, [0; 6], [10, 244, 1, 1], [0xff; 6]);
    let out = run(&mut p, SEC, &[(A, request)]);
    assert_eq!(verdicts(&out), [Verdict::Forward(A)]);
    // A pod's packet to the node IP is routed to the host's port.
    let from_pod = udp(POD_B, GW_MAC, [10, 244, 1, 3], NODE_IP, 64);
    let out = run(&mut p, SEC, &[(B, from_pod)]);
    assert_eq!(verdicts(&out), [Verdict::Forward(A)]);
    let (frame, _) = &out[0];
    assert_eq!(frame[..6], HOST_MAC, "to the host's MAC");
    assert_eq!(frame[6..12], GW_MAC, "from the gateway");
    assert_eq!(frame[22], 63, "routed: TTL decremented");
    assert_checksums_valid(frame);
    // Without a shared uplink the node IP is podswitch's own: it answers.
    let mut own = shared(false);
    let out = run(
        &mut own,
        SEC,
        &[(B, ping(POD_B, GW_MAC, [10, 244, 1, 3], NODE_IP))],
    );
    assert_eq!(verdicts(&out), [Verdict::Forward(B)]);
}
