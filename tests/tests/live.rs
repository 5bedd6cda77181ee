//! The live node service in real namespaces: pods on TAP and AF_PACKET
//! ports, GSO super-frames, anti-spoofing, fragmented pings of the gateway,
//! SIGTERM under load, SIGHUP, restart.
//!
//! Each test builds its own namespaces (`ps<pid>-<tag>-…`), runs
//! `podswitchd run` inside a node namespace, generates traffic with sockets
//! opened inside the pod namespaces, and removes everything afterwards.
//! The tests need root; without it they print why and pass as skipped.
//! They run one at a time (a lock) so two daemons never share the 2 cores.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podswitch_tests::live::{
    Daemon, Netns, ip, ping, ping_sized, root_or_skip, send_raw_frames, tcp_transfer, veth_pod,
    wait_reachable,
};

static SERIAL: Mutex<()> = Mutex::new(());

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const MIB: u64 = 1024 * 1024;

/// How a pod is attached in a test topology.
#[derive(Clone, Copy, PartialEq)]
enum Attach {
    Tap,
    Veth { offload: bool },
}

struct Topology {
    // Field order is drop order: the daemon stops before its namespaces go.
    daemon: Daemon,
    a: Netns,
    b: Netns,
    node: Netns,
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Stop the daemon before its run directory (config, log, stats) goes.
        let _ = self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.daemon.run_dir);
    }
}

fn port_toml(
    name: &str,
    tag: &str,
    ip: Ipv4Addr,
    mac: &str,
    pod: &Netns,
    attach: Attach,
) -> String {
    let ident = format!("ps{}{}{}", std::process::id() % 100_000, tag, &name[4..]);
    match attach {
        Attach::Tap => format!(
            "[[ports]]\nname = \"{name}\"\nkind = \"tap\"\nifname = \"{ident}\"\nnetns = \"{}\"\nmac = \"{mac}\"\nips = [\"{ip}\"]\n",
            pod.path().display()
        ),
        Attach::Veth { offload } => format!(
            "[[ports]]\nname = \"{name}\"\nkind = \"afpacket\"\nifname = \"veth-{}\"\nmac = \"{mac}\"\nips = [\"{ip}\"]\noffload = {offload}\n",
            &name[4..]
        ),
    }
}

fn topology(tag: &str, a: Attach, b: Attach, workers: usize) -> Topology {
    let node = Netns::new(&format!("{tag}-node"));
    let pa = Netns::new(&format!("{tag}-a"));
    let pb = Netns::new(&format!("{tag}-b"));
    let (mac_a, mac_b) = ("02:00:0a:f4:01:02", "02:00:0a:f4:01:03");
    if let Attach::Veth { .. } = a {
        veth_pod(&node, "veth-a", &pa, mac_a, A_IP, GW);
    }
    if let Attach::Veth { .. } = b {
        veth_pod(&node, "veth-b", &pb, mac_b, B_IP, GW);
    }
    let config = format!(
        "[node]\nname = \"{tag}\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n{}{}",
        port_toml("pod-a", tag, A_IP, mac_a, &pa, a),
        port_toml("pod-b", tag, B_IP, mac_b, &pb, b),
    );
    let daemon = Daemon::start(&node, tag, &config, workers);
    Topology {
        daemon,
        a: pa,
        b: pb,
        node,
    }
}

fn stat(stats: &serde_json::Value, group: &str, key: &str) -> u64 {
    stats[group][key].as_u64().unwrap_or(0)
}

fn port_stat(stats: &serde_json::Value, port: &str, key: &str) -> u64 {
    stats["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == port)
        .map_or(0, |p| p[key].as_u64().unwrap_or(0))
}

/// ARP (implicit in the first ping), ICMP to the gateway and the other pod,
/// and a verified 256 MiB TCP transfer, with no checksum errors in the receiver.
fn exercise(t: &Topology, label: &str) {
    assert!(
        wait_reachable(&t.a, GW, Duration::from_secs(10)),
        "{label}: gateway unreachable\n{}",
        t.daemon.log_text()
    );
    assert!(
        wait_reachable(&t.a, B_IP, Duration::from_secs(10)),
        "{label}: pod-b unreachable\n{}",
        t.daemon.log_text()
    );
    assert!(
        ping(&t.b, A_IP, Duration::from_secs(2)).is_some(),
        "{label}: pod-b -> pod-a"
    );
    let csum_errors = t.b.snmp("Tcp", "InCsumErrors") + t.b.snmp("Ip", "InHdrErrors");
    let (verified, took) = tcp_transfer(&t.a, &t.b, B_IP, 5201, 256 * MIB);
    assert_eq!(verified, 256 * MIB, "{label}");
    let after = t.b.snmp("Tcp", "InCsumErrors") + t.b.snmp("Ip", "InHdrErrors");
    assert_eq!(
        csum_errors, after,
        "{label}: the receiving kernel saw bad checksums"
    );
    println!(
        "{label}: 256 MiB verified in {took:?} ({:.2} Gbit/s)",
        256.0 * 8.0 * 1.048_576 / 1000.0 / took.as_secs_f64()
    );
}

#[test]
fn tap_pods_arp_icmp_tcp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("tap_pods_arp_icmp_tcp") {
        return;
    }
    let t = topology("tt", Attach::Tap, Attach::Tap, 2);
    exercise(&t, "tap<->tap");
    let s = t.daemon.fresh_stats();
    assert!(stat(&s, "events", "arp_reply_sent") >= 1, "{s}");
    assert!(stat(&s, "events", "icmp_echo_reply_sent") >= 1, "{s}");
    assert!(port_stat(&s, "pod-b", "tx_bytes") > 256 * MIB, "{s}");
    assert!(
        stat(&s, "events", "gso_frames") > 0,
        "TSO super-frames crossed TAP -> TAP as one unit: {s}"
    );
    let frames = port_stat(&s, "pod-a", "rx_packets");
    assert!(
        frames < 256 * MIB / 1448 / 4,
        "super-frames, not MTU-sized frames: {frames} frames for 256 MiB"
    );
}

#[test]
fn afpacket_pods_arp_icmp_tcp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("afpacket_pods_arp_icmp_tcp") {
        return;
    }
    let t = topology(
        "aa",
        Attach::Veth { offload: true },
        Attach::Veth { offload: true },
        2,
    );
    exercise(&t, "veth<->veth (AF_PACKET)");
    let s = t.daemon.fresh_stats();
    assert!(port_stat(&s, "pod-b", "tx_bytes") > 256 * MIB, "{s}");
}

#[test]
fn mixed_tap_and_afpacket() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("mixed_tap_and_afpacket") {
        return;
    }
    let t = topology("ma", Attach::Tap, Attach::Veth { offload: true }, 2);
    exercise(&t, "tap<->veth (AF_PACKET)");
}

#[test]
fn gso_segmented_for_port_without_vnet_hdr() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("gso_segmented_for_port_without_vnet_hdr") {
        return;
    }
    let t = topology("gs", Attach::Tap, Attach::Veth { offload: false }, 2);
    exercise(&t, "tap -> AF_PACKET without vnet_hdr");
    let s = t.daemon.fresh_stats();
    assert!(
        stat(&s, "events", "gso_segmented") > 0,
        "super-frames were segmented in software: {s}"
    );
    assert_eq!(stat(&s, "drops", "tx_offload_error"), 0, "{s}");
}

#[test]
fn spoofed_frames_are_dropped_and_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("spoofed_frames_are_dropped_and_counted") {
        return;
    }
    let t = topology("sp", Attach::Tap, Attach::Tap, 1);
    assert!(
        wait_reachable(&t.a, B_IP, Duration::from_secs(10)),
        "{}",
        t.daemon.log_text()
    );
    let udp = |src_mac: [u8; 6], src_ip: [u8; 4]| {
        let b = etherparse::PacketBuilder::ethernet2(src_mac, [2, 0, 0x0a, 0xf4, 1, 3])
            .ipv4(src_ip, [10, 244, 1, 3], 64)
            .udp(1000, 2000);
        let mut out = Vec::new();
        b.write(&mut out, b"spoofed").unwrap();
        out
    };
    let frames = vec![
        udp([2, 0, 0, 0, 0, 0x66], [10, 244, 1, 2]),
        udp([2, 0, 0, 0, 0, 0x66], [10, 244, 1, 2]),
        udp([2, 0, 0x0a, 0xf4, 1, 2], [10, 244, 1, 99]),
    ];
    send_raw_frames(&t.a, "eth0", frames);
    // The stats file is written every second: wait (bounded) for the one
    // that has seen the frames, so a loaded machine does not fail the test.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = t.daemon.fresh_stats();
    while stat(&s, "drops", "spoofed_src_mac") + stat(&s, "drops", "spoofed_src_ip") < 3
        && Instant::now() < deadline
    {
        s = t.daemon.fresh_stats();
    }
    assert_eq!(stat(&s, "drops", "spoofed_src_mac"), 2, "{s}");
    assert_eq!(stat(&s, "drops", "spoofed_src_ip"), 1, "{s}");
}

#[test]
fn sigterm_under_load_exits_within_2s() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("sigterm_under_load_exits_within_2s") {
        return;
    }
    let mut t = topology("st", Attach::Tap, Attach::Tap, 2);
    assert!(
        wait_reachable(&t.a, B_IP, Duration::from_secs(10)),
        "{}",
        t.daemon.log_text()
    );
    // Load: UDP from pod-a to pod-b for at most 4 s (bounded in count too).
    let load =
        t.a.run(|| std::net::UdpSocket::bind("10.244.1.2:0"))
            .unwrap();
    let flood = std::thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(4) && sent < 5_000_000 {
            if load.send_to(&[0u8; 64], "10.244.1.3:9").is_ok() {
                sent += 1;
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(800));
    // The stats file is written once a second: wait (bounded, within the
    // flood's 4 s) for one written under load.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut before = t.daemon.stats();
    while port_stat(&before, "pod-a", "rx_packets") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        before = t.daemon.stats();
    }
    let took = t
        .daemon
        .stop()
        .expect("podswitchd did not exit within 2 s of SIGTERM");
    let sent = flood.join().unwrap();
    println!("SIGTERM under load ({sent} datagrams offered): exited in {took:?}");
    assert!(took <= Duration::from_secs(2));
    assert!(
        port_stat(&before, "pod-a", "rx_packets") > 0,
        "there was load: {before}"
    );
    let log = t.daemon.log_text();
    assert!(
        log.contains("stopped; persistent TAPs left in place"),
        "{log}"
    );
    // The pods keep their interfaces.
    ip(&["-n", &t.a.name, "link", "show", "eth0"]);
    let _ = &t.node;
}

#[test]
fn fragmented_ping_of_the_gateway_is_answered() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("fragmented_ping_of_the_gateway_is_answered") {
        return;
    }
    let t = topology("fp", Attach::Tap, Attach::Veth { offload: false }, 1);
    assert!(
        wait_reachable(&t.a, GW, Duration::from_secs(10)),
        "gateway unreachable\n{}",
        t.daemon.log_text()
    );
    // `ping -s 3000` and `-s 9000` from pods on a TAP and on a veth (MTU
    // 1500): the request leaves the pod in fragments (the veth's AF_PACKET
    // fanout reassembles them before the pipeline), the answer comes back
    // in fragments the pod's kernel reassembles.
    for (pod, len) in [(&t.a, 3000), (&t.b, 3000), (&t.a, 9000), (&t.b, 9000)] {
        assert!(
            ping_sized(pod, GW, len, Duration::from_secs(2)).is_some(),
            "no answer to {len} bytes\n{}\n{}",
            t.daemon.log_text(),
            t.daemon.fresh_stats()
        );
    }
    let s = t.daemon.fresh_stats();
    assert!(stat(&s, "events", "icmp_echo_reply_sent") >= 4, "{s}");
    for reason in ["fragment_timeout", "fragment_overlap", "local_unsupported"] {
        assert_eq!(stat(&s, "drops", reason), 0, "{reason}: {s}");
    }
}

#[test]
fn sighup_is_logged_and_ignored() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("sighup_is_logged_and_ignored") {
        return;
    }
    let mut t = topology("hu", Attach::Tap, Attach::Tap, 1);
    assert!(
        wait_reachable(&t.a, B_IP, Duration::from_secs(10)),
        "{}",
        t.daemon.log_text()
    );
    let pid = t.daemon.pid().expect("running") as i32;
    for _ in 0..2 {
        // SAFETY: kill() on the pid of the daemon we started and have not reaped.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(200));
    }
    // Still forwarding and answering its API.
    assert!(
        ping(&t.a, B_IP, Duration::from_secs(2)).is_some(),
        "pod-a -> pod-b after SIGHUP: {}",
        t.daemon.log_text()
    );
    let status = t.daemon.ctl_ok(&["status"]);
    assert!(status.contains("forwarding"), "{status}");
    let (verified, _) = tcp_transfer(&t.a, &t.b, B_IP, 5203, 4 * MIB);
    assert_eq!(verified, 4 * MIB);
    let log = t.daemon.log_text();
    assert!(log.contains("SIGHUP"), "the signal is logged: {log}");
    t.daemon.stop().expect("a clean stop after SIGHUP");
}

/// The unit restarts the daemon after any exit systemd did not ask for
/// (a signal or a clean exit too, not only a failure), without waiting,
/// and keeps the run directory (the state file) across the restart.
#[test]
fn systemd_unit_restarts_after_any_exit() {
    let unit =
        std::fs::read_to_string(podswitch_tests::workspace().join("deploy/podswitchd.service"))
            .unwrap();
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Restart") || l.starts_with("RuntimeDirectoryPreserve"))
        .collect();
    assert_eq!(
        settings,
        [
            "Restart=always",
            "RestartSec=0",
            "RuntimeDirectoryPreserve=yes"
        ],
        "{unit}"
    );
}

#[test]
fn restart_reattaches_persistent_taps() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("restart_reattaches_persistent_taps") {
        return;
    }
    let mut t = topology("rs", Attach::Tap, Attach::Tap, 2);
    assert!(
        wait_reachable(&t.a, B_IP, Duration::from_secs(10)),
        "{}",
        t.daemon.log_text()
    );
    t.daemon.stop().expect("clean stop");
    assert!(
        ping(&t.a, B_IP, Duration::from_millis(500)).is_none(),
        "no forwarding while the daemon is down"
    );
    let start = Instant::now();
    let (run_dir, config) = (t.daemon.run_dir.clone(), t.daemon.config.clone());
    t.daemon = Daemon::start_with(&t.node, run_dir, config, 2);
    let log = t.daemon.log_text();
    assert!(
        log.contains("Reattached"),
        "TAPs re-attached, not re-created: {log}"
    );
    assert!(
        wait_reachable(&t.a, B_IP, Duration::from_secs(10)),
        "traffic resumes: {}",
        t.daemon.log_text()
    );
    println!(
        "restart: forwarding again {:?} after start",
        start.elapsed()
    );
    let (verified, _) = tcp_transfer(&t.a, &t.b, B_IP, 5202, 16 * MIB);
    assert_eq!(verified, 16 * MIB);
}

#[test]
fn second_instance_is_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("second_instance_is_refused") {
        return;
    }
    let t = topology("si", Attach::Tap, Attach::Tap, 1);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &t.node.name])
        .arg(podswitch_tests::live::daemon_bin())
        .arg("run")
        .arg("--config")
        .arg(&t.daemon.config)
        .arg("--run-dir")
        .arg(&t.daemon.run_dir)
        .arg("--api-socket")
        .arg(t.daemon.run_dir.join("api2.sock"))
        .arg("--state-dir")
        .arg(t.daemon.run_dir.join("state2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another podswitchd is already running"),
        "{err}"
    );
}
