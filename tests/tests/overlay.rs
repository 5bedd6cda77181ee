//! The VXLAN overlay in real namespaces: two node namespaces joined by a
//! veth underlay (192.168.200.0/24), each node's uplink an AF_PACKET port
//! on its end of it.
//!
//! - two podswitchd nodes, two pods each attached by the real CNI plugin,
//!   nodes registered with `podswitchctl node add`: ICMP, a verified
//!   256 MiB TCP transfer and UDP (including datagrams the pod fragments)
//!   across nodes, both ways;
//! - interop: node 2 is the kernel's own `vxlan` device + bridge, set up as
//!   flannel's vxlan backend does (route via the remote VTEP address,
//!   permanent neighbour, FDB entry), with the underlay veth's default
//!   offloads, so the kernel sends tunnel GSO super-frames; ping, verified
//!   64 MiB TCP transfers both ways and UDP, with no checksum error counted
//!   by any receiving kernel; again (16 MiB) with podswitch's uplink
//!   without vnet headers;
//! - PMTU: pods whose MTU is misconfigured to 1500 still complete a TCP
//!   transfer, because podswitch sends ICMP fragmentation needed (1450);
//! - fragments: a UDP ClusterIP on node 1 with its endpoint on node 2 and
//!   3,000- and 9,000-byte datagrams both ways; a kernel vxlan peer whose
//!   small underlay MTU fragments its outer packets, reassembled by
//!   podswitch before it decapsulates (a TAP uplink, so the fragments reach
//!   the pipeline, and an AF_PACKET one).
//!
//! Needs root; skips with a printed reason otherwise. One test at a time.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use podswitch_tests::live::{
    Daemon, Netns, echo, ip, link_mtu, ping, root_or_skip, round_trip, serve, tcp_ask,
    tcp_transfer, veth, wait_reachable,
};
use podswitch_tests::overlay_nodes::{
    KERNEL_VTEP, KPOD_IP, KernelPeer, MIB, U1_MAC, U2_MAC, ethtool_features, kernel_node,
    node_config, pod_beside_the_kernel_node, stat, two_podswitch_nodes, vxlan_drops,
    with_kernel_peer,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// `count` datagrams of growing sizes (some larger than the pod MTU, so the
/// pod's kernel fragments them) from `client` to `server_ip`; returns how
/// many arrived intact.
fn udp_exchange(client: &Netns, server: &Netns, server_ip: Ipv4Addr, count: usize) -> usize {
    let addr = SocketAddr::V4(SocketAddrV4::new(server_ip, 7000));
    let sock = server.run(move || UdpSocket::bind(addr)).expect("bind UDP");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    // Room for every datagram at once: on a loaded machine the reader
    // thread may not run for a while, and what this test counts is
    // podswitch's losses, not the receive buffer's (`Udp RcvbufErrors`).
    let room: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on a socket we own, with a c_int option value of the right size.
    let forced = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const room).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        forced,
        0,
        "SO_RCVBUFFORCE: {}",
        std::io::Error::last_os_error()
    );
    let datagram =
        |i: usize| -> Vec<u8> { (0..(i * 37) % 3000 + 1).map(|k| (k + i) as u8).collect() };
    // Read while the client sends: reassembled datagrams fill a receive buffer quickly.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let mut intact = 0;
        while let Ok(n) = sock.recv(&mut buf) {
            let i = (0..count).find(|&i| datagram(i).len() == n && buf[..n] == datagram(i)[..]);
            intact += usize::from(i.is_some());
        }
        intact
    });
    let sender = client
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("client UDP socket");
    for i in 0..count {
        sender.send_to(&datagram(i), addr).expect("send");
        std::thread::sleep(Duration::from_millis(1));
    }
    reader.join().expect("UDP reader")
}

#[test]
fn two_podswitch_nodes_icmp_tcp_udp() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("two_podswitch_nodes_icmp_tcp_udp") {
        return;
    }
    let (t, ips) = two_podswitch_nodes("ov", 2, None);
    let listed = t.d1.ctl_ok(&["node", "list"]);
    assert!(
        listed.contains("n2") && listed.contains("10.244.2.0/24"),
        "{listed}"
    );
    // Pods default to the uplink MTU − 50.
    assert_eq!(link_mtu(&t.pods[0], "eth0"), 1450);
    let (p1a, p1b, p2a, p2b) = (&t.pods[0], &t.pods[1], &t.pods[2], &t.pods[3]);
    for (from, to) in [(p1a, ips[2]), (p1b, ips[3]), (p2a, ips[0]), (p2b, ips[1])] {
        assert!(
            wait_reachable(from, to, Duration::from_secs(10)),
            "{} -> {to} unreachable\nnode 1: {}\nnode 2: {}",
            from.name,
            t.d1.log_text(),
            t.d2.log_text()
        );
    }
    // The remote gateway answers through the tunnel too.
    assert!(ping(p1a, Ipv4Addr::new(10, 244, 2, 1), Duration::from_secs(2)).is_some());
    let intact = udp_exchange(p1b, p2b, ips[3], 200);
    assert!(
        intact >= 190,
        "UDP across nodes: {intact} of 200 arrived intact\nreceiver: {:?}, UDP RcvbufErrors {}",
        [
            "ReasmReqds",
            "ReasmOKs",
            "ReasmFails",
            "InHdrErrors",
            "InDiscards",
            "InAddrErrors"
        ]
        .map(|f| (f, p2b.snmp("Ip", f))),
        p2b.snmp("Udp", "RcvbufErrors"),
    );
    assert_eq!(p2b.snmp("Udp", "InCsumErrors"), 0);
    let intact = udp_exchange(p2a, p1a, ips[0], 100);
    assert!(intact >= 95, "UDP back: {intact} of 100 arrived intact");
    let csum_before = p2a.snmp("Tcp", "InCsumErrors") + p2a.snmp("Ip", "InHdrErrors");
    let (verified, took) = tcp_transfer(p1a, p2a, ips[2], 5301, 256 * MIB);
    assert_eq!(verified, 256 * MIB);
    println!(
        "overlay: 256 MiB verified across nodes in {took:?} ({:.2} Gbit/s)",
        256.0 * 8.0 * 1.048_576 / 1000.0 / took.as_secs_f64()
    );
    let (verified, _) = tcp_transfer(p2b, p1b, ips[1], 5302, 32 * MIB);
    assert_eq!(verified, 32 * MIB, "the other way");
    let csum_after = p2a.snmp("Tcp", "InCsumErrors") + p2a.snmp("Ip", "InHdrErrors");
    assert_eq!(
        csum_before, csum_after,
        "the receiving kernel saw bad checksums"
    );
    for d in [&t.d1, &t.d2] {
        let s = d.fresh_stats();
        assert!(stat(&s, "events", "vxlan_encapsulated") > 1000, "{s}");
        assert!(stat(&s, "events", "vxlan_decapsulated") > 1000, "{s}");
        assert!(vxlan_drops(d).is_empty(), "{:?}", vxlan_drops(d));
    }
    // Super-frames crossed whole: sent as one tunnel GSO frame, and
    // decapsulated as one (`overlay_gso.rs` shows it on the underlay).
    assert!(stat(&t.d1.stats(), "events", "vxlan_gso_sent_whole") > 0);
    assert!(stat(&t.d2.stats(), "events", "vxlan_gso_decapsulated") > 0);
    // (Receive coalescing of segments: `overlay_gso.rs`, with --tunnel-gso off.)
    // A node deleted through the API takes its tunnel with it.
    t.d1.ctl_ok(&["node", "del", "n2"]);
    assert!(ping(p1a, ips[2], Duration::from_millis(500)).is_none());
}

#[test]
fn pod_mtu_misconfigured_to_1500_completes_by_pmtu() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("pod_mtu_misconfigured_to_1500_completes_by_pmtu") {
        return;
    }
    let (t, ips) = two_podswitch_nodes("pm", 1, Some(1500));
    assert_eq!(link_mtu(&t.pods[0], "eth0"), 1500);
    assert!(wait_reachable(&t.pods[0], ips[1], Duration::from_secs(10)));
    let (verified, took) = tcp_transfer(&t.pods[0], &t.pods[1], ips[1], 5401, 64 * MIB);
    assert_eq!(verified, 64 * MIB);
    println!("pmtu: 64 MiB with 1500-byte pods in {took:?}");
    let s = t.d1.fresh_stats();
    assert!(stat(&s, "events", "vxlan_frag_needed_sent") >= 1, "{s}");
    // The sender's kernel learned the tunnel's MTU.
    let ip2 = ips[1].to_string();
    let route = t.pods[0].run(move || {
        Command::new("ip")
            .args(["route", "get", &ip2])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    assert!(route.contains("mtu 1450"), "{route}");
}

#[test]
fn interop_with_kernel_vxlan_and_bridge() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("interop_with_kernel_vxlan_and_bridge") {
        return;
    }
    interop("ki", "", 64);
}

/// The uplink without vnet headers (`offload = false`): the AF_PACKET ring's
/// status word is all that says a frame is a super-frame or has a partial
/// checksum, and podswitch finds the rest in the headers.
#[test]
fn interop_with_kernel_vxlan_on_an_uplink_without_vnet_headers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("interop_with_kernel_vxlan_on_an_uplink_without_vnet_headers") {
        return;
    }
    interop("kr", "offload = false\n", 16);
}

/// Podswitch node 1 (`uplink` added to its uplink port's section) and a
/// kernel node 2 with its default offloads: ping, `mib` MiB of TCP each way
/// verified, UDP each way, no checksum error counted by a receiving kernel.
fn interop(tag: &str, uplink: &str, mib: u64) {
    with_kernel_peer(tag, uplink, |peer| {
        let KernelPeer {
            n2,
            d1,
            pod,
            pod_ip,
            kpod,
            ..
        } = peer;
        let offloads = ethtool_features(n2, "u2");
        for feature in ["tx-udp_tnl-segmentation", "tx-udp_tnl-csum-segmentation"] {
            assert!(
                offloads.contains(&format!("{feature}: on")),
                "the kernel node's default {feature} is on\n{offloads}"
            );
        }
        assert!(
            wait_reachable(pod, KPOD_IP, Duration::from_secs(10)),
            "podswitch pod -> kernel pod\n{}",
            d1.log_text()
        );
        assert!(
            ping(kpod, *pod_ip, Duration::from_secs(2)).is_some(),
            "kernel pod -> podswitch pod"
        );
        let (verified, took) = tcp_transfer(pod, kpod, KPOD_IP, 5501, mib * MIB);
        assert_eq!(verified, mib * MIB);
        println!("interop {tag}: {mib} MiB podswitch -> kernel in {took:?}");
        // Before podswitch took tunnel GSO frames, this direction stalled:
        // every super-frame was dropped as vxlan_malformed.
        let (verified, took) = tcp_transfer(kpod, pod, *pod_ip, 5502, mib * MIB);
        assert_eq!(verified, mib * MIB);
        println!("interop {tag}: {mib} MiB kernel -> podswitch in {took:?}");
        let intact = udp_exchange(kpod, pod, *pod_ip, 100);
        assert!(intact >= 95, "UDP kernel -> podswitch: {intact} of 100");
        let intact = udp_exchange(pod, kpod, KPOD_IP, 100);
        assert!(intact >= 95, "UDP podswitch -> kernel: {intact} of 100");
        let stats = d1.fresh_stats();
        assert!(
            stat(&stats, "events", "vxlan_gso_decapsulated") > 0,
            "the kernel sent tunnel GSO frames: {stats}"
        );
    });
}

#[test]
fn cluster_ip_on_node_1_with_endpoints_on_node_2() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("cluster_ip_on_node_1_with_endpoints_on_node_2") {
        return;
    }
    let (t, ips) = two_podswitch_nodes("os", 2, None);
    let (client, client_ip) = (&t.pods[0], ips[0]);
    let _servers = [
        serve(&t.pods[2], "n2a", ips[2], &[8080]),
        serve(&t.pods[3], "n2b", ips[3], &[8080]),
    ];
    for ip in [ips[2], ips[3]] {
        assert!(wait_reachable(client, ip, Duration::from_secs(10)));
    }
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    t.d1.ctl_ok(&[
        "service",
        "add",
        "default/remote",
        "--cluster-ip",
        &vip.to_string(),
        "--port",
        "80:8080/TCP",
    ]);
    let (e1, e2) = (ips[2].to_string(), ips[3].to_string());
    t.d1.ctl_ok(&["endpoint", "set", "default/remote", &e1, &e2]);
    let answers: Vec<(String, String)> = client.run(move || {
        (0..60)
            .map(|_| tcp_ask(SocketAddrV4::new(vip, 80)).expect("an answer through the ClusterIP"))
            .collect()
    });
    // Both endpoints on node 2 answered, each seeing the client's own address.
    for name in ["n2a", "n2b"] {
        let n = answers.iter().filter(|(who, _)| who == name).count();
        assert!(n >= 10, "{name} served {n} of 60: {answers:?}");
    }
    for (_, peer) in &answers {
        assert_eq!(peer, &client_ip.to_string(), "{answers:?}");
    }
    let listing = t.d1.ctl_ok(&["conntrack", "list", "-d", &vip.to_string()]);
    assert!(
        listing.contains(&format!("src={e1} dst={client_ip}"))
            && listing.contains(&format!("src={e2} dst={client_ip}")),
        "{listing}"
    );
    let s = t.d1.fresh_stats();
    assert!(stat(&s, "events", "dnat") >= 60, "{s}");
    assert!(stat(&s, "events", "vxlan_encapsulated") > 0, "{s}");
}

/// A UDP service on node 1 whose endpoint is on node 2 (issue 25 A1): a
/// 3,000- and a 9,000-byte datagram each way. Node 1 reassembles the
/// client's fragments, translates the datagram and sends it through the
/// tunnel in inner fragments that fit it; node 2 reassembles them for the
/// endpoint's port, and the answer takes the same way back.
#[test]
fn udp_cluster_ip_in_fragments_to_an_endpoint_on_node_2() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("udp_cluster_ip_in_fragments_to_an_endpoint_on_node_2") {
        return;
    }
    let (t, ips) = two_podswitch_nodes("of", 1, None);
    let (client, endpoint) = (&t.pods[0], ips[1]);
    let _echo = echo(&t.pods[1], endpoint, 7000);
    assert!(wait_reachable(client, endpoint, Duration::from_secs(10)));
    let vip = Ipv4Addr::new(10, 96, 0, 63);
    t.d1.ctl_ok(&[
        "service",
        "add",
        "default/echo",
        "--cluster-ip",
        &vip.to_string(),
        "--port",
        "53:7000/UDP",
    ]);
    t.d1.ctl_ok(&["endpoint", "set", "default/echo", &endpoint.to_string()]);
    for size in [3000, 9000] {
        let answered = round_trip(client, SocketAddrV4::new(vip, 53), size);
        assert!(
            answered.is_ok(),
            "{answered:?}\nnode 1: {}\nnode 2: {}",
            t.d1.fresh_stats(),
            t.d2.fresh_stats()
        );
    }
    for d in [&t.d1, &t.d2] {
        let s = d.fresh_stats();
        assert!(stat(&s, "events", "ipv4_reassembled") >= 2, "{s}");
        assert!(stat(&s, "events", "ipv4_fragmented") >= 2, "{s}");
        assert!(vxlan_drops(d).is_empty(), "{:?}", vxlan_drops(d));
    }
}

/// `sizes`-byte UDP datagrams sent without DF (`IP_PMTUDISC_DONT`: cut at
/// the device's MTU, never refused for a smaller path MTU) from `client`
/// to `server_ip`:7001; returns how many arrived intact.
fn udp_without_df(client: &Netns, server: &Netns, server_ip: Ipv4Addr, sizes: &[usize]) -> usize {
    let addr = SocketAddr::V4(SocketAddrV4::new(server_ip, 7001));
    let sock = server.run(move || UdpSocket::bind(addr)).expect("bind UDP");
    sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
    let datagram = |size: usize| -> Vec<u8> { (0..size).map(|k| (k * 5 + size) as u8).collect() };
    let sizes = sizes.to_vec();
    let expected = sizes.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut intact = 0;
        while let Ok(n) = sock.recv(&mut buf) {
            intact += usize::from(expected.contains(&n) && buf[..n] == datagram(n)[..]);
        }
        intact
    });
    let sender = client
        .run(|| UdpSocket::bind("0.0.0.0:0"))
        .expect("client UDP socket");
    let dont: libc::c_int = libc::IP_PMTUDISC_DONT;
    // SAFETY: a valid socket fd and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sender),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const dont).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "IP_MTU_DISCOVER: {}",
        std::io::Error::last_os_error()
    );
    for &size in &sizes {
        sender.send_to(&datagram(size), addr).expect("send");
        std::thread::sleep(Duration::from_millis(2));
    }
    reader.join().expect("UDP reader")
}

/// Node 2 is the kernel's vxlan (device MTU 1450) over an underlay whose
/// MTU is 1000, so it cuts the outer packets of inner packets without DF
/// into outer fragments (issue 25 D4); node 1 must reassemble them before
/// it decapsulates. Node 1's uplink is a TAP bridged to the underlay, so
/// the fragments reach podswitch as they are; with an AF_PACKET uplink the
/// fanout's defragmentation hands them over whole, which must work too.
#[test]
fn outer_fragments_from_a_kernel_vxlan_peer_are_reassembled() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !root_or_skip("outer_fragments_from_a_kernel_vxlan_peer_are_reassembled") {
        return;
    }
    for kind in ["tap", "afpacket"] {
        let tag = format!("kf{}", &kind[..1]);
        let n1 = Netns::new(&format!("{tag}n1"));
        let n2 = Netns::new(&format!("{tag}n2"));
        let kpod = Netns::new(&format!("{tag}kp"));
        let underlay_end = if kind == "tap" { "v1" } else { "u1" };
        veth(underlay_end, &n1, "u2", &n2);
        ip(&["-n", &n2.name, "link", "set", "u2", "address", U2_MAC]);
        if kind == "afpacket" {
            ip(&["-n", &n1.name, "link", "set", "u1", "address", U1_MAC]);
        }
        kernel_node(&n2, &kpod, KERNEL_VTEP);
        ip(&["-n", &n2.name, "link", "set", "u2", "mtu", "1000"]);
        let config =
            node_config(1, U1_MAC).replace("kind = \"afpacket\"", &format!("kind = \"{kind}\""));
        let mut d1 = Daemon::start(&n1, &tag, &config, 2);
        if kind == "tap" {
            // The TAP's kernel side and the underlay veth on one bridge.
            let n = n1.name.as_str();
            ip(&["-n", n, "link", "add", "bru", "type", "bridge"]);
            ip(&["-n", n, "link", "set", "u1", "master", "bru"]);
            ip(&["-n", n, "link", "set", "v1", "master", "bru"]);
            ip(&["-n", n, "link", "set", "bru", "up"]);
            ip(&["-n", n, "link", "set", "u1", "up"]);
        }
        let (pod, pod_ip) = pod_beside_the_kernel_node(&d1, &format!("{tag}p"));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert!(
                wait_reachable(&pod, KPOD_IP, Duration::from_secs(10)),
                "{kind}: podswitch pod -> kernel pod\n{}",
                d1.log_text()
            );
            // Inner packets of 1,028 to 1,428 bytes (outer 1,078 to 1,478)
            // and datagrams the kernel pod cuts at its MTU of 1,450.
            let sizes: Vec<usize> = (1000..=1400)
                .step_by(50)
                .chain([2000, 3000, 9000])
                .collect();
            let intact = udp_without_df(&kpod, &pod, pod_ip, &sizes);
            let stats = d1.fresh_stats();
            assert_eq!(intact, sizes.len(), "{kind}: {stats}");
            if kind == "tap" {
                // At least the 9 outer packets cut in two and the 3
                // datagrams the kernel pod sent in fragments.
                assert!(stat(&stats, "events", "ipv4_reassembled") >= 12, "{stats}");
            }
            assert!(
                vxlan_drops(&d1).is_empty(),
                "{kind}: {:?}",
                vxlan_drops(&d1)
            );
        }));
        let _ = d1.stop();
        let _ = std::fs::remove_dir_all(&d1.run_dir);
        drop((pod, kpod, n1, n2));
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
