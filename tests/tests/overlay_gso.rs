//! VXLAN super-frames cross the overlay whole, in real namespaces (issue 23).
//!
//! A pod's 64 KiB TCP super-frame leaves podswitch's uplink as one
//! UDP-tunnel GSO frame (the transmit TAP, `io::tap::tunnel_tx`), as a
//! kernel `vxlan` device's does; the receiving node, kernel or podswitch,
//! takes it whole. Shown by the underlay: the receiving end of the veth
//! counts frames of several KiB on average, not 1,450-byte packets. Every
//! transfer's bytes are verified, and the receiving kernels' checksum-error
//! counters must not move. With the sender's underlay offloads off, the
//! kernel cuts the same super-frames in software from the partial
//! checksums podswitch left, and the receivers verify every checksum.
//! With `--tunnel-gso off` the software segmentation (and the receiver's
//! coalescing of its segments) still works.
//!
//! Needs root; skips with a printed reason otherwise. One test at a time.

use std::sync::Mutex;
use std::time::Duration;

use podswitch_tests::live::{Netns, ping, root_or_skip, tcp_transfer, wait_reachable};
use podswitch_tests::overlay_nodes::{
    KPOD_IP, KernelPeer, MIB, checksum_errors, stat, two_podswitch_nodes, two_podswitch_nodes_with,
    vxlan_drops, with_kernel_peer,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// (frames, bytes) `dev` in `ns` received.
fn rx_counts(ns: &Netns, dev: &str) -> (u64, u64) {
    let out = std::process::Command::new("ip")
        .args(["-n", &ns.name, "-s", "-j", "link", "show", "dev", dev])
        .output()
        .expect("ip -s link");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    let rx = &json[0]["stats64"]["rx"];
    (
        rx["packets"].as_u64().unwrap_or(0),
        rx["bytes"].as_u64().unwrap_or(0),
    )
}

/// Runs `transfer` and returns the average size of the frames `dev` in
/// `ns` received meanwhile.
fn average_rx_frame(ns: &Netns, dev: &str, transfer: impl FnOnce()) -> u64 {
    let (frames, bytes) = rx_counts(ns, dev);
    transfer();
    let (frames_after, bytes_after) = rx_counts(ns, dev);
    (bytes_after - bytes) / (frames_after - frames).max(1)
}

/// `mib` MiB from `from` to `to_ip`, every byte verified.
fn verified(from: &Netns, to: &Netns, to_ip: std::net::Ipv4Addr, port: u16, mib: u64) {
    let (got, took) = tcp_transfer(from, to, to_ip, port, mib * MIB);
    assert_eq!(got, mib * MIB, "{} -> {}", from.name, to.name);
    println!("{mib} MiB {} -> {} in {took:?}", from.name, to.name);
}

/// Sets `features` of `dev` in `ns` with ethtool.
fn ethtool_set(ns: &Netns, dev: &str, features: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "ethtool", "-K", dev])
        .args(features)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ethtool -K");
    assert!(status.success(), "ethtool -K {dev} {features:?}");
}

/// A frame this large on average is a super-frame (the MTU is 1,500).
const SUPER: u64 = 4000;

#[test]
fn super_frames_cross_whole_to_and_from_a_kernel_vxlan_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("super_frames_cross_whole_to_and_from_a_kernel_vxlan_node") {
        return;
    }
    with_kernel_peer("tg", "", |peer| {
        let KernelPeer {
            n1,
            n2,
            d1,
            pod,
            pod_ip,
            kpod,
        } = peer;
        let pod_ip = *pod_ip;
        assert!(
            d1.log_text().contains("super-frames sent whole"),
            "{}",
            d1.log_text()
        );
        assert!(wait_reachable(pod, KPOD_IP, Duration::from_secs(10)));
        assert!(ping(kpod, pod_ip, Duration::from_secs(2)).is_some());
        let to_kernel = average_rx_frame(n2, "u2", || verified(pod, kpod, KPOD_IP, 5601, 64));
        let stats = d1.fresh_stats();
        assert!(
            to_kernel > SUPER,
            "podswitch -> kernel: {to_kernel} bytes per underlay frame\n{stats}"
        );
        assert!(
            stat(&stats, "events", "vxlan_gso_sent_whole") > 0,
            "{stats}"
        );
        let from_kernel = average_rx_frame(n1, "u1", || verified(kpod, pod, pod_ip, 5602, 64));
        assert!(
            from_kernel > SUPER,
            "kernel -> podswitch: {from_kernel} bytes per frame"
        );
        assert!(stat(&d1.fresh_stats(), "events", "vxlan_gso_decapsulated") > 0);
        // The kernel now cuts podswitch's super-frames on the underlay and
        // fills every checksum from the partial sums podswitch left; the
        // kernel node and its pod verify them all (checked on the way out).
        ethtool_set(
            n1,
            "u1",
            &[
                "tx",
                "off",
                "tx-udp_tnl-segmentation",
                "off",
                "tx-udp_tnl-csum-segmentation",
                "off",
            ],
        );
        let cut = average_rx_frame(n2, "u2", || verified(pod, kpod, KPOD_IP, 5603, 16));
        assert!(
            cut <= 1514,
            "segmented on the underlay: {cut} bytes per frame"
        );
    });
}

#[test]
fn super_frames_cross_whole_between_two_podswitch_nodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("super_frames_cross_whole_between_two_podswitch_nodes") {
        return;
    }
    let (t, ips) = two_podswitch_nodes("tp", 1, None);
    let (p1, p2) = (&t.pods[0], &t.pods[1]);
    let (n1, n2) = &t.nodes;
    assert!(wait_reachable(p1, ips[1], Duration::from_secs(10)));
    let errors_before = [p1, p2].map(checksum_errors);
    let to_2 = average_rx_frame(n2, "u2", || verified(p1, p2, ips[1], 5611, 64));
    let to_1 = average_rx_frame(n1, "u1", || verified(p2, p1, ips[0], 5612, 64));
    assert!(
        to_2 > SUPER && to_1 > SUPER,
        "{to_2} and {to_1} bytes per frame"
    );
    assert_eq!([p1, p2].map(checksum_errors), errors_before);
    for d in [&t.d1, &t.d2] {
        let s = d.fresh_stats();
        assert!(stat(&s, "events", "vxlan_gso_sent_whole") > 0, "{s}");
        assert!(stat(&s, "events", "vxlan_gso_decapsulated") > 0, "{s}");
        assert_eq!(stat(&s, "events", "vxlan_gso_segmented"), 0, "{s}");
        assert!(vxlan_drops(d).is_empty(), "{:?}", vxlan_drops(d));
    }
}

/// `--tunnel-gso off` on node 1 forces the software path: its worker cuts
/// the super-frames into segments, node 2 merges them back for its pod
/// (receive coalescing), and the transfer still verifies.
#[test]
fn tunnel_gso_off_segments_in_software() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("tunnel_gso_off_segments_in_software") {
        return;
    }
    let (t, ips) = two_podswitch_nodes_with("ts", 1, None, &["--tunnel-gso", "off"]);
    let (p1, p2) = (&t.pods[0], &t.pods[1]);
    assert!(
        t.d1.log_text().contains("segmented in software"),
        "{}",
        t.d1.log_text()
    );
    assert!(wait_reachable(p1, ips[1], Duration::from_secs(10)));
    let errors_before = checksum_errors(p2);
    let frame = average_rx_frame(&t.nodes.1, "u2", || verified(p1, p2, ips[1], 5621, 32));
    assert!(frame <= 1514, "{frame} bytes per underlay frame");
    assert_eq!(checksum_errors(p2), errors_before);
    let (s1, s2) = (t.d1.fresh_stats(), t.d2.fresh_stats());
    assert!(stat(&s1, "events", "vxlan_gso_segmented") > 0, "{s1}");
    assert_eq!(stat(&s1, "events", "vxlan_gso_sent_whole"), 0, "{s1}");
    // The receiving node merged segments back into GSO frames for its pod.
    assert!(stat(&s2, "events", "vxlan_rx_coalesced") > 0, "{s2}");
}
