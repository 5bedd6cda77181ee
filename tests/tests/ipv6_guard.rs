//! IPv6 from pods, live (issue 25, A8): a Router Advertisement sent by one
//! pod gives no other pod a default route or an address (RA guard), a
//! frame with a forged IPv6 source is dropped and counted, and the pods'
//! own link-local traffic still flows. One pod is a TAP podswitch places
//! (in a namespace whose default address generation is random: podswitch
//! makes it EUI-64), the other a veth read through AF_PACKET.
//!
//! Needs root; without it the test prints why and passes as skipped.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use podswitch_dataplane::wire::testdata::ROUTER_ADVERT as RA;
use podswitch_tests::live::{Daemon, Netns, root_or_skip, send_raw_frames, veth_pod};
use socket2::{Domain, Protocol, Socket, Type};

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const MAC_A: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02];
const MAC_B: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0x03];

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The link-local address Linux forms from `mac` with `addr_gen_mode` eui64.
fn eui64(mac: [u8; 6]) -> Ipv6Addr {
    podswitch_dataplane::wire::ipv6::link_local_eui64(podswitch_dataplane::wire::MacAddr(mac))
}

/// `ip -n NS ARGS` output.
fn ip_out(ns: &Netns, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", &ns.name])
        .args(args)
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pod's link-local address on `eth0` once duplicate address detection is over.
fn link_local(ns: &Netns, limit: Duration) -> Option<Ipv6Addr> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let text = ip_out(
            ns,
            &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"],
        );
        if !text.is_empty() && !text.contains("tentative") {
            let word = text
                .split_whitespace()
                .skip_while(|w| *w != "inet6")
                .nth(1)?;
            return word.split('/').next()?.parse().ok();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// What a Router Advertisement would have given the pod: its IPv6 default
/// routes and global addresses (`ip` lines; empty when none).
fn router_given(ns: &Netns) -> String {
    ip_out(ns, &["-6", "route", "show", "default"])
        + &ip_out(ns, &["-6", "-o", "addr", "show", "scope", "global"])
}

/// Index of the pod's `eth0`.
fn eth0_index(ns: &Netns) -> u32 {
    ns.run(|| {
        let name = std::ffi::CString::new("eth0").unwrap();
        // SAFETY: if_nametoindex reads a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    })
}

/// Sends the Router Advertisement from `ns` to all nodes, as a router
/// daemon does: a raw ICMPv6 socket, hop limit 255, from its link-local address.
fn send_router_advertisement(ns: &Netns) {
    let index = eth0_index(ns);
    ns.run(move || {
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6)).unwrap();
        sock.set_multicast_hops_v6(255).unwrap();
        sock.set_multicast_if_v6(index).unwrap();
        // Not to the sender itself: only what crosses podswitch counts.
        sock.set_multicast_loop_v6(false).unwrap();
        let all_nodes = SocketAddrV6::new("ff02::1".parse().unwrap(), 0, 0, index);
        for _ in 0..3 {
            sock.send_to(&RA, &SocketAddr::V6(all_nodes).into())
                .expect("send the RA");
        }
    });
}

/// A UDP socket bound to port 7000 on every IPv6 address of `ns`.
fn udp_listener(ns: &Netns) -> UdpSocket {
    let sock = ns
        .run(|| UdpSocket::bind("[::]:7000"))
        .expect("bind [::]:7000");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    sock
}

/// The next datagram `sock` receives within its timeout.
fn receive(sock: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

fn drops(d: &Daemon, reason: &str) -> u64 {
    d.stats()["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn router_advertisements_and_forged_ipv6_sources_from_pods_are_dropped() {
    if !root_or_skip("router_advertisements_and_forged_ipv6_sources_from_pods_are_dropped") {
        return;
    }
    let node = Netns::new("v6-node");
    let a = Netns::new("v6-a");
    let b = Netns::new("v6-b");
    // Pod a's namespace makes random link-local addresses by default.
    let random = "echo 3 > /proc/sys/net/ipv6/conf/default/addr_gen_mode";
    let status = Command::new("ip")
        .args(["netns", "exec", &a.name, "sh", "-c", random])
        .status()
        .unwrap();
    assert!(status.success());
    let b_ip = Ipv4Addr::new(10, 244, 1, 3);
    veth_pod(&node, "veth-b", &b, &mac_text(MAC_B), b_ip, GW);
    let tap = format!("ps{}v6a", std::process::id() % 100_000);
    let config = format!(
        "[node]\nname = \"v6\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
         [[ports]]\nname = \"pod-a\"\nkind = \"tap\"\nifname = \"{tap}\"\nnetns = \"{}\"\nmac = \"{}\"\nips = [\"10.244.1.2\"]\n\
         [[ports]]\nname = \"pod-b\"\nkind = \"afpacket\"\nifname = \"veth-b\"\nmac = \"{}\"\nips = [\"{b_ip}\"]\n",
        a.path().display(),
        mac_text(MAC_A),
        mac_text(MAC_B),
    );
    let daemon = Daemon::start(&node, "v6", &config, 1);
    let limit = Duration::from_secs(10);
    let a_ll = link_local(&a, limit).expect("pod a's link-local address");
    let b_ll = link_local(&b, limit).expect("pod b's link-local address");
    assert_eq!(
        a_ll,
        eui64(MAC_A),
        "podswitch gives its TAP the EUI-64 address"
    );
    assert_eq!(b_ll, eui64(MAC_B));

    // The pods' own link-local traffic flows (neighbour discovery included).
    let (a_sock, b_sock) = (udp_listener(&a), udp_listener(&b));
    let a_index = eth0_index(&a);
    let to_b = SocketAddrV6::new(b_ll, 7000, 0, a_index);
    let mut delivered = false;
    for _ in 0..10 {
        a_sock.send_to(b"link-local", to_b).unwrap();
        if receive(&b_sock).as_deref() == Some(b"link-local") {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "a -> b over link-local: {}", daemon.log_text());

    // Each pod sends Router Advertisements; the other gets nothing from them.
    for sender in [&a, &b] {
        send_router_advertisement(sender);
    }
    std::thread::sleep(Duration::from_millis(1500));
    for pod in [&a, &b] {
        assert_eq!(
            router_given(pod),
            "",
            "{} took a router from the other pod",
            pod.name
        );
    }

    // A frame with a forged source never reaches pod b.
    let forged = {
        let builder = etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(
                "fe80::dead".parse::<Ipv6Addr>().unwrap().octets(),
                b_ll.octets(),
                64,
            )
            .udp(7001, 7000);
        let mut out = Vec::new();
        builder.write(&mut out, b"forged").unwrap();
        out
    };
    send_raw_frames(&a, "eth0", vec![forged; 3]);
    assert_eq!(receive(&b_sock), None, "the forged datagram arrived");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stats = daemon.fresh_stats();
    while drops(&daemon, "spoofed_src_ipv6") < 3 && Instant::now() < deadline {
        stats = daemon.fresh_stats();
    }
    assert_eq!(drops(&daemon, "spoofed_src_ipv6"), 3, "{stats}");
    assert!(drops(&daemon, "ra_guard_router_advert") >= 6, "{stats}");
    let mut daemon = daemon;
    daemon.stop();
    let _ = std::fs::remove_dir_all(&daemon.run_dir);
}
