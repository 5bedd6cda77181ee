//! UDP datagrams larger than the MTU through a ClusterIP, live (issue 25,
//! A1): every fragment of a request is translated and every fragment of
//! the answer translated back, as on a Linux node, which reassembles before
//! conntrack.
//!
//! ```text
//!  tap-client 10.244.1.2  (TAP)  ─┐                       ┌─ tap-echo 10.244.1.11  (TAP)
//!  veth-client 10.244.1.3 (veth) ─┤ podswitchd, 2 workers ├─ veth-echo 10.244.1.12 (veth)
//! ```
//!
//! A TAP hands the pipeline the fragments as the pod's kernel cut them; a
//! veth is read through an AF_PACKET fanout that reassembles them first, so
//! the pipeline sees a datagram longer than the MTU, which must still leave
//! in fragments that fit. Service `tap` (10.96.0.61) has the TAP pod as its
//! endpoint, `veth` (10.96.0.62) the veth pod, both UDP 53 → 7000, and each
//! endpoint echoes every datagram back. Both clients send 3,000- and
//! 9,000-byte datagrams to both services; the answer must come back whole
//! and from the ClusterIP. The remote endpoint (over the overlay) is in
//! `overlay.rs`.
//!
//! Needs root; skips with a printed reason otherwise.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use podswitch_tests::live::{
    Daemon, Netns, echo, root_or_skip, round_trip, tap_port, veth_pod, wait_reachable,
};

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const TAP_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const VETH_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const TAP_ECHO: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 11);
const VETH_ECHO: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 12);
const TAP_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 61);
const VETH_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 62);
const ECHO_PORT: u16 = 7000;

/// A counter of the daemon's stats (`group` "drops" or "events").
fn stat(daemon: &Daemon, group: &str, key: &str) -> u64 {
    daemon.fresh_stats()[group][key].as_u64().unwrap_or(0)
}

#[test]
fn udp_through_a_cluster_ip_in_fragments_both_ways() {
    if !root_or_skip("udp_through_a_cluster_ip_in_fragments_both_ways") {
        return;
    }
    let node = Netns::new("fr-node");
    let tap_client = Netns::new("fr-tc");
    let veth_client = Netns::new("fr-vc");
    let tap_echo = Netns::new("fr-te");
    let veth_echo = Netns::new("fr-ve");
    veth_pod(
        &node,
        "veth-vc",
        &veth_client,
        "02:00:0a:f4:01:03",
        VETH_CLIENT,
        GW,
    );
    veth_pod(
        &node,
        "veth-ve",
        &veth_echo,
        "02:00:0a:f4:01:0c",
        VETH_ECHO,
        GW,
    );
    let mut config = String::from(
        "[node]\nname = \"fr\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n",
    );
    config += &tap_port("tc", "fr", &tap_client, "02:00:0a:f4:01:02", TAP_CLIENT);
    config += &tap_port("te", "fr", &tap_echo, "02:00:0a:f4:01:0b", TAP_ECHO);
    for (name, mac, addr) in [
        ("vc", "02:00:0a:f4:01:03", VETH_CLIENT),
        ("ve", "02:00:0a:f4:01:0c", VETH_ECHO),
    ] {
        config += &format!(
            "[[ports]]\nname = \"{name}\"\nkind = \"afpacket\"\nifname = \"veth-{name}\"\nmac = \"{mac}\"\nips = [\"{addr}\"]\n"
        );
    }
    let mut daemon = Daemon::start(&node, "fr", &config, 2);
    let _echoes = [
        echo(&tap_echo, TAP_ECHO, ECHO_PORT),
        echo(&veth_echo, VETH_ECHO, ECHO_PORT),
    ];
    for pod in [&tap_client, &veth_client, &tap_echo, &veth_echo] {
        assert!(
            wait_reachable(pod, GW, Duration::from_secs(10)),
            "{} cannot reach the gateway\n{}",
            pod.name,
            daemon.log_text()
        );
    }
    for (name, vip, endpoint) in [
        ("tap", TAP_SERVICE, TAP_ECHO),
        ("veth", VETH_SERVICE, VETH_ECHO),
    ] {
        let service = format!("default/{name}");
        daemon.ctl_ok(&[
            "service",
            "add",
            &service,
            "--cluster-ip",
            &vip.to_string(),
            "--port",
            &format!("53:{ECHO_PORT}/UDP"),
        ]);
        daemon.ctl_ok(&["endpoint", "set", &service, &endpoint.to_string()]);
    }
    let mut failures = Vec::new();
    for client in [&tap_client, &veth_client] {
        for vip in [TAP_SERVICE, VETH_SERVICE] {
            for size in [3000, 9000] {
                let to = SocketAddrV4::new(vip, 53);
                if let Err(e) = round_trip(client, to, size) {
                    failures.push(format!("{}: {e}", client.name));
                }
            }
        }
    }
    let stats = daemon.fresh_stats();
    assert!(
        failures.is_empty(),
        "{failures:#?}\ndrops {}\nevents {}",
        stats["drops"],
        stats["events"]
    );
    // The TAP pods' fragments were reassembled here; whole datagrams
    // longer than a port's MTU left in fragments.
    assert!(stat(&daemon, "events", "ipv4_reassembled") >= 4, "{stats}");
    assert!(stat(&daemon, "events", "ipv4_fragmented") >= 8, "{stats}");
    for reason in ["fragment_timeout", "fragment_overlap", "fragment_memory"] {
        assert_eq!(stat(&daemon, "drops", reason), 0, "{reason}: {stats}");
    }
    let _ = daemon.stop();
    let _ = std::fs::remove_dir_all(&daemon.run_dir);
}
