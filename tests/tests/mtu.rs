//! Egress MTU, live (issue 25, A7): pods of different MTUs on one node (a
//! TAP pod with MTU 9000, an AF_PACKET veth pod and a TAP pod with 1500)
//! and an external host behind the uplink (MTU 1500). A datagram with DF
//! too long for where it goes gets ICMP fragmentation needed with the right
//! MTU, which the sender's kernel learns (also for a ClusterIP, whose error
//! quotes the ClusterIP); one without DF arrives in fragments and is
//! reassembled intact, also when an AF_PACKET port handed podswitch the
//! datagram already reassembled (`PACKET_FANOUT_FLAG_DEFRAG`); pings of
//! 9,000 bytes between the pods are answered.
//!
//! Needs root; without it the test prints why and passes as skipped.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use podswitch_tests::live::{
    Daemon, Netns, pattern_byte, ping_sized, root_or_skip, tap_port, uplink_host, veth_pod,
    wait_reachable,
};

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const C_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const EXT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 2);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const PORT: u16 = 7000;

/// A UDP socket in `ns` bound to `src`, connected to `dst`, with DF on
/// every datagram (`IP_PMTUDISC_DO`) or on none (`IP_PMTUDISC_DONT`).
fn udp_socket(ns: &Netns, src: Ipv4Addr, dst: SocketAddrV4, df: bool) -> UdpSocket {
    let sock = ns
        .run(move || UdpSocket::bind(SocketAddrV4::new(src, 0)))
        .expect("bind");
    let mode: libc::c_int = if df {
        libc::IP_PMTUDISC_DO
    } else {
        libc::IP_PMTUDISC_DONT
    };
    // SAFETY: setsockopt on an open socket with a c_int value of its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const mode).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "IP_MTU_DISCOVER");
    sock.connect(dst).expect("connect");
    sock
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(seed + i)).collect()
}

/// The path MTU `ns`'s kernel has learned toward `dst` (`ip route get`).
fn learned_mtu(ns: &Netns, dst: Ipv4Addr) -> Option<u32> {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "route", "get", &dst.to_string()])
        .output()
        .expect("ip route get");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "mtu")?;
    words.next()?.parse().ok()
}

/// Sends `len` bytes with DF from `ns` to `dst` until the sender's kernel
/// has learned a path MTU toward it (at most 5 s); returns it.
fn mtu_learned_by_sending(ns: &Netns, src: Ipv4Addr, dst: SocketAddrV4, len: usize) -> Option<u32> {
    let sock = udp_socket(ns, src, dst, true);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        // Refused locally (EMSGSIZE) once the kernel knows: the loop then reads it.
        let _ = sock.send(&pattern(len, 0));
        std::thread::sleep(Duration::from_millis(100));
        if let Some(mtu) = learned_mtu(ns, *dst.ip()) {
            return Some(mtu);
        }
    }
    None
}

/// Sends `len` bytes without DF from `from` to `to` (a socket bound in the
/// receiver); true when they arrive whole and intact (a few tries).
fn arrives_intact(from: (&Netns, Ipv4Addr), to: (&Netns, Ipv4Addr), len: usize, seed: u64) -> bool {
    let addr = SocketAddrV4::new(to.1, PORT);
    let receiver =
        to.0.run(move || UdpSocket::bind(addr))
            .expect("bind receiver");
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let sender = udp_socket(from.0, from.1, addr, false);
    let data = pattern(len, seed);
    let mut buf = vec![0u8; 65_536];
    for _ in 0..5 {
        sender.send(&data).expect("send");
        if let Ok(n) = receiver.recv(&mut buf) {
            return buf[..n] == data[..];
        }
    }
    false
}

fn stat(s: &serde_json::Value, group: &str, key: &str) -> u64 {
    s[group][key].as_u64().unwrap_or(0)
}

#[test]
fn too_long_with_df_is_refused_with_the_mtu_and_without_df_arrives_in_fragments() {
    if !root_or_skip("too_long_with_df_is_refused_with_the_mtu_and_without_df_arrives_in_fragments")
    {
        return;
    }
    let node = Netns::new("mt-node");
    let (a, b, c) = (Netns::new("mt-a"), Netns::new("mt-b"), Netns::new("mt-c"));
    let ext = uplink_host(&node, "mt", EXT_IP);
    veth_pod(&node, "veth-b", &b, "02:00:0a:f4:01:03", B_IP, GW);
    let config = format!(
        "[node]\nname = \"mt\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
         [uplink]\nport = \"up0\"\naddress = \"192.168.100.1/24\"\nmac = \"02:00:c0:a8:64:01\"\n\
         {}mtu = 9000\n\
         [[ports]]\nname = \"pod-b\"\nkind = \"afpacket\"\nifname = \"veth-b\"\nmac = \"02:00:0a:f4:01:03\"\nips = [\"{B_IP}\"]\n\
         {}\
         [[ports]]\nname = \"up0\"\nkind = \"afpacket\"\nifname = \"up0\"\n\
         [[services]]\nname = \"udp\"\ncluster_ip = \"{CLUSTER_IP}\"\nprotocol = \"UDP\"\nport = 80\ntarget_port = {PORT}\n\
         endpoints = [{{ address = \"{B_IP}\" }}]\n",
        tap_port("pod-a", "mt", &a, "02:00:0a:f4:01:02", A_IP),
        tap_port("pod-c", "mt", &c, "02:00:0a:f4:01:04", C_IP),
    );
    let mut daemon = Daemon::start(&node, "mt", &config, 2);
    for (pod, dst) in [(&a, B_IP), (&a, C_IP), (&b, C_IP), (&a, GW)] {
        assert!(
            wait_reachable(pod, dst, Duration::from_secs(10)),
            "{} -> {dst}\n{}",
            pod.name,
            daemon.log_text()
        );
    }
    // Pings of 9,000 bytes: the 9,000-byte pod's first fragment is cut
    // again for the others, their answers come back (from the veth pod
    // reassembled by its AF_PACKET fanout first) and are cut for it.
    for (pod, dst) in [(&a, B_IP), (&a, C_IP), (&b, A_IP)] {
        assert!(
            ping_sized(pod, dst, 9000, Duration::from_secs(2)).is_some(),
            "ping -s 9000 {} -> {dst}\n{}",
            pod.name,
            daemon.fresh_stats()
        );
    }

    // Without DF: in fragments, reassembled intact, whatever the ports.
    let cases = [
        ((&a, A_IP), (&b, B_IP), 8000),     // TAP 9000 -> AF_PACKET 1500
        ((&a, A_IP), (&c, C_IP), 8000),     // TAP 9000 -> TAP 1500
        ((&b, B_IP), (&a, A_IP), 20_000),   // AF_PACKET (reassembled) -> TAP 9000
        ((&b, B_IP), (&c, C_IP), 9000),     // AF_PACKET (reassembled) -> TAP 1500
        ((&a, A_IP), (&ext, EXT_IP), 8000), // TAP 9000 -> the uplink (1500)
    ];
    for (i, (from, to, len)) in cases.into_iter().enumerate() {
        assert!(
            arrives_intact(from, to, len, i as u64 * 1_000_003),
            "{len} bytes {} -> {}\n{}",
            from.0.name,
            to.0.name,
            daemon.fresh_stats()
        );
    }

    // With DF: refused with the MTU of the port the datagram would leave by.
    let refused = [
        (B_IP, 8000),       // switched to the AF_PACKET pod
        (C_IP, 8000),       // switched to the TAP pod
        (CLUSTER_IP, 8000), // DNATed to the AF_PACKET pod: the error quotes the ClusterIP
        (EXT_IP, 1614),     // a 1,642-byte packet out of the uplink (MTU 1500)
    ];
    for (dst, len) in refused {
        let port = if dst == CLUSTER_IP { 80 } else { PORT };
        let learned = mtu_learned_by_sending(&a, A_IP, SocketAddrV4::new(dst, port), len);
        assert_eq!(
            learned,
            Some(1500),
            "toward {dst}\n{}",
            daemon.fresh_stats()
        );
    }
    let s = daemon.fresh_stats();
    println!("drops {}\nevents {}", s["drops"], s["events"]);
    assert!(stat(&s, "drops", "frag_needed") >= 4, "{s}");
    assert!(stat(&s, "events", "ipv4_fragmented") >= 5, "{s}");
    for reason in ["tx_too_big", "mtu_exceeded", "tx_error"] {
        assert_eq!(stat(&s, "drops", reason), 0, "{reason}: {s}");
    }
    daemon.stop();
    let _ = std::fs::remove_dir_all(&daemon.run_dir);
}
