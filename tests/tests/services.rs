//! Services in real namespaces with real sockets: a client pod and three
//! server pods on one node, an "external" host on the uplink, services and
//! endpoints created with the real `podswitchctl`.
//!
//! ```text
//!  client 10.244.1.2 ─┐                       ┌─ up0 ═══ ext 192.168.50.1
//!  s1 10.244.1.11 ────┤ podswitchd (node ns)  │   node address 192.168.50.2
//!  s2 10.244.1.12 ────┤ gateway 10.244.1.1    │
//!  s3 10.244.1.13 ────┘                       ┘
//! ```
//!
//! Every server answers a TCP connection or a UDP datagram with its name
//! and the peer address it saw, so the client knows which endpoint the
//! dataplane picked and each server knows what source NAT it got.
//! Needs root; skips with a printed reason otherwise. One test at a time.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podswitch_tests::live::{
    Daemon, Netns, Servers, root_or_skip, serve, tap_port, tcp_ask, uplink_host, wait_reachable,
};

static SERIAL: Mutex<()> = Mutex::new(());

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const EXT_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SERVER_NAMES: [&str; 3] = ["s1", "s2", "s3"];

fn server_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, 11 + i as u8)
}

struct Cluster {
    // Field order is drop order: servers, then the daemon, then namespaces.
    servers: Vec<Servers>,
    daemon: Daemon,
    client: Netns,
    pods: Vec<Netns>,
    ext: Netns,
    _node: Netns,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.daemon.run_dir);
    }
}

/// The node, a client pod, three server pods (TCP/UDP on 8080 and 8053) and
/// the external host; `web` is 10.96.0.10 with http 80→8080 (NodePort
/// 30080) and dns 53→8053/UDP, backed by s1–s3.
fn cluster(tag: &str, workers: usize) -> Cluster {
    let node = Netns::new(&format!("{tag}-node"));
    let client = Netns::new(&format!("{tag}-c"));
    let pods: Vec<Netns> = (1..=3)
        .map(|i| Netns::new(&format!("{tag}-s{i}")))
        .collect();
    let ext = uplink_host(&node, tag, EXT_IP);
    let mut config = format!(
        "[node]\nname = \"{tag}\"\n[bridge]\ngateway = \"{GW}/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
         [uplink]\nport = \"up0\"\naddress = \"{NODE_IP}/24\"\nmac = \"02:00:c0:a8:32:02\"\n\
         [[ports]]\nname = \"up0\"\nkind = \"afpacket\"\nifname = \"up0\"\n"
    );
    config.push_str(&tap_port("c", tag, &client, "02:00:0a:f4:01:02", CLIENT));
    for (i, ns) in pods.iter().enumerate() {
        let mac = format!("02:00:0a:f4:01:{:02x}", 11 + i);
        config.push_str(&tap_port(SERVER_NAMES[i], tag, ns, &mac, server_ip(i)));
    }
    let daemon = Daemon::start(&node, tag, &config, workers);
    let servers = pods
        .iter()
        .enumerate()
        .map(|(i, ns)| serve(ns, SERVER_NAMES[i], server_ip(i), &[8080, 8053]))
        .collect();
    let c = Cluster {
        servers,
        daemon,
        client,
        pods,
        ext,
        _node: node,
    };
    for (i, ns) in std::iter::once(&c.client).chain(&c.pods).enumerate() {
        assert!(
            wait_reachable(ns, GW, Duration::from_secs(10)),
            "pod {i} cannot reach the gateway: {}",
            c.daemon.log_text()
        );
    }
    assert!(wait_reachable(&c.ext, NODE_IP, Duration::from_secs(10)));
    c.daemon.ctl_ok(&[
        "service",
        "add",
        "default/web",
        "--cluster-ip",
        &WEB.to_string(),
        "--port",
        "http:80:8080/TCP,nodeport=30080",
        "--port",
        "dns:53:8053/UDP",
    ]);
    let eps: Vec<String> = (0..3).map(|i| server_ip(i).to_string()).collect();
    let mut args = vec!["endpoint", "set", "default/web"];
    args.extend(eps.iter().map(String::as_str));
    c.daemon.ctl_ok(&args);
    c
}

/// One UDP request on `sock` (retried on loss): the answering server's name.
fn udp_ask(sock: &UdpSocket, addr: SocketAddrV4) -> Result<String, String> {
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        sock.send_to(b"q", addr).map_err(|e| e.to_string())?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if from != SocketAddr::V4(addr) {
                    return Err(format!("answer from {from}, not {addr}"));
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                return Ok(text.split_whitespace().next().unwrap_or("").to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err("refused".into());
            }
            Err(_) => continue,
        }
    }
    Err(format!("no answer from {addr}"))
}

fn counts(names: &[String]) -> [usize; 3] {
    let mut c = [0; 3];
    for n in names {
        if let Some(i) = SERVER_NAMES.iter().position(|s| s == n) {
            c[i] += 1;
        }
    }
    c
}

fn assert_even(what: &str, c: [usize; 3], total: usize) {
    let even = total as f64 / 3.0;
    for (i, &n) in c.iter().enumerate() {
        let off = (n as f64 - even).abs() / even;
        assert!(
            off <= 0.15,
            "{what}: {} got {n} of {total} ({:+.1} % from even); all: {c:?}",
            SERVER_NAMES[i],
            100.0 * (n as f64 - even) / even
        );
    }
    eprintln!("{what}: {c:?} of {total}");
}

#[test]
fn cluster_ip_spreads_tcp_and_udp_over_three_endpoints() {
    if !root_or_skip("cluster_ip_spreads_tcp_and_udp_over_three_endpoints") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster("svb", 2);
    const N: usize = 3000;
    let start = Instant::now();
    let tcp: Vec<String> = c.client.run(|| {
        (0..N)
            .map(|_| {
                let (name, peer) = tcp_ask(SocketAddrV4::new(WEB, 80)).unwrap();
                // No source NAT inside the cluster: the server sees the client.
                assert_eq!(peer, CLIENT.to_string());
                name
            })
            .collect()
    });
    let tcp_time = start.elapsed();
    assert_eq!(tcp.len(), N);
    assert_even("TCP via ClusterIP", counts(&tcp), N);
    let start = Instant::now();
    let (udp, ports): (Vec<String>, std::collections::BTreeSet<u16>) = c.client.run(|| {
        (0..N)
            .map(|_| {
                let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(500))).ok();
                let port = sock.local_addr().unwrap().port();
                (udp_ask(&sock, SocketAddrV4::new(WEB, 53)).unwrap(), port)
            })
            .unzip()
    });
    assert_even("UDP via ClusterIP", counts(&udp), N);
    eprintln!(
        "{N} TCP connections in {tcp_time:?}, {N} UDP flows in {:?}",
        start.elapsed()
    );
    let listing = c
        .daemon
        .ctl_ok(&["conntrack", "list", "-p", "udp", "-d", &WEB.to_string()]);
    let lines = listing.lines().filter(|l| l.starts_with("udp")).count();
    // One entry per 5-tuple (the kernel reuses a closed socket's port).
    assert_eq!(
        lines,
        ports.len(),
        "one UDP entry per flow:\n{}",
        &listing[..listing.len().min(2000)]
    );
    assert!(
        listing
            .lines()
            .next()
            .unwrap()
            .contains(&format!("dst={WEB} sport=")),
        "{listing}"
    );
}

#[test]
fn removing_an_endpoint_moves_only_its_flows() {
    if !root_or_skip("removing_an_endpoint_moves_only_its_flows") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster("svm", 2);
    const FLOWS: usize = 600;
    let dns = SocketAddrV4::new(WEB, 53);
    // Long-lived UDP flows: one socket (one 5-tuple) each.
    let socks: Vec<UdpSocket> = c.client.run(|| {
        (0..FLOWS)
            .map(|_| {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                s
            })
            .collect()
    });
    let ask_all = |socks: &[UdpSocket]| -> Vec<String> {
        socks.iter().map(|s| udp_ask(s, dns).unwrap()).collect()
    };
    let before = ask_all(&socks);
    // A TCP connection to s3 stays open while s3 is terminating.
    let long_lived = c.client.run(|| {
        for _ in 0..200 {
            let s = TcpStream::connect_timeout(
                &SocketAddr::V4(SocketAddrV4::new(WEB, 80)),
                Duration::from_secs(2),
            )
            .unwrap();
            let mut first = [0u8; 2];
            s.peek(&mut first).unwrap();
            if &first == b"s3" {
                return Some(s);
            }
        }
        None
    });
    let mut long_lived = long_lived.expect("a connection to s3 within 200 tries");
    // s2 goes away entirely.
    c.daemon
        .ctl_ok(&["endpoint", "del", "default/web", &server_ip(1).to_string()]);
    // s3 terminates: it keeps its flows, gets no new ones.
    c.daemon
        .ctl_ok(&["endpoint", "del", "default/web", &server_ip(2).to_string()]);
    c.daemon.ctl_ok(&[
        "endpoint",
        "add",
        "default/web",
        &server_ip(2).to_string(),
        "--terminating",
    ]);
    let after = ask_all(&socks);
    let mut moved_others = 0;
    for (b, a) in before.iter().zip(&after) {
        if b == "s2" {
            // No stale conntrack: re-resolved to a ready endpoint on the next packet.
            assert!(a == "s1" || a == "s3", "a flow of s2 went to {a}");
        } else if a != b {
            moved_others += 1;
        }
    }
    assert_eq!(moved_others, 0, "flows of s1/s3 must stay where they were");
    let mut text = String::new();
    long_lived.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("s3 "), "{text:?}");
    let fresh: Vec<String> = c.client.run(|| {
        (0..300)
            .map(|_| tcp_ask(SocketAddrV4::new(WEB, 80)).unwrap().0)
            .collect()
    });
    assert_eq!(counts(&fresh), [300, 0, 0], "new connections go to s1 only");
    // Maglev itself: with s3 ready again and the conntrack table flushed,
    // every flow is placed anew by the Maglev table of {s1, s3}; flows that
    // were on s1 or s3 before s2 went away should (nearly all) stay.
    c.daemon.ctl_ok(&[
        "endpoint",
        "set",
        "default/web",
        &server_ip(0).to_string(),
        &server_ip(2).to_string(),
    ]);
    let flushed = c.daemon.ctl_ok(&["conntrack", "flush", "-p", "udp"]);
    assert!(
        flushed.contains("flow entries have been deleted"),
        "{flushed}"
    );
    let replaced = ask_all(&socks);
    let kept = before
        .iter()
        .zip(&replaced)
        .filter(|(b, _)| b.as_str() != "s2")
        .filter(|(b, r)| b == r)
        .count();
    let others = before.iter().filter(|b| b.as_str() != "s2").count();
    eprintln!("Maglev after removing s2: {kept} of {others} other flows kept their endpoint");
    assert!(
        kept as f64 >= 0.95 * others as f64,
        "Maglev moved {} of {others} flows that were not on the removed endpoint",
        others - kept
    );
}

#[test]
fn node_port_affinity_reject_hairpin_and_masquerade() {
    if !root_or_skip("node_port_affinity_reject_hairpin_and_masquerade") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster("svn", 2);
    // NodePort from the external host through the uplink.
    let answers: Vec<(String, String)> = c.ext.run(|| {
        (0..300)
            .map(|_| tcp_ask(SocketAddrV4::new(NODE_IP, 30080)).unwrap())
            .collect()
    });
    let names: Vec<String> = answers.iter().map(|(n, _)| n.clone()).collect();
    let spread = counts(&names);
    assert!(spread.iter().all(|&n| n > 50), "NodePort spread {spread:?}");
    eprintln!(
        "NodePort 300 connections: {spread:?}; peer seen: {}",
        answers[0].1
    );

    // ClientIP affinity: every connection of the client lands on one endpoint.
    c.daemon.ctl_ok(&[
        "service",
        "add",
        "default/sticky",
        "--cluster-ip",
        "10.96.0.11",
        "--port",
        "80:8080/TCP",
        "--affinity",
        "ClientIP",
        "--affinity-timeout",
        "300",
    ]);
    let eps: Vec<String> = (0..3).map(|i| server_ip(i).to_string()).collect();
    let mut args = vec!["endpoint", "set", "default/sticky"];
    args.extend(eps.iter().map(String::as_str));
    c.daemon.ctl_ok(&args);
    let sticky: Vec<String> = c.client.run(|| {
        (0..100)
            .map(|_| {
                tcp_ask(SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 11), 80))
                    .unwrap()
                    .0
            })
            .collect()
    });
    let spread = counts(&sticky);
    assert!(spread.contains(&100), "affinity spread {spread:?}");

    // No endpoints: refused at once, TCP (RST) and UDP (ICMP port unreachable).
    c.daemon.ctl_ok(&[
        "service",
        "add",
        "default/empty",
        "--cluster-ip",
        "10.96.0.12",
        "--port",
        "80/TCP",
        "--port",
        "dns:53/UDP",
    ]);
    let empty = Ipv4Addr::new(10, 96, 0, 12);
    let (tcp_err, tcp_time) = c.client.run(move || {
        let start = Instant::now();
        let r = TcpStream::connect_timeout(
            &SocketAddr::V4(SocketAddrV4::new(empty, 80)),
            Duration::from_secs(3),
        );
        (r.err().map(|e| e.kind()), start.elapsed())
    });
    assert_eq!(tcp_err, Some(std::io::ErrorKind::ConnectionRefused));
    assert!(
        tcp_time < Duration::from_millis(500),
        "refused after {tcp_time:?}"
    );
    let udp_err = c.client.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect(SocketAddrV4::new(empty, 53)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        s.send(b"q").unwrap();
        let mut buf = [0u8; 16];
        s.recv(&mut buf).err().map(|e| e.kind())
    });
    assert_eq!(udp_err, Some(std::io::ErrorKind::ConnectionRefused));
    eprintln!("no endpoints: TCP refused in {tcp_time:?}, UDP refused");

    // Hairpin: s1 reaches a service whose only endpoint is s1 itself, and
    // sees the connection come from the gateway.
    c.daemon.ctl_ok(&[
        "service",
        "add",
        "default/self",
        "--cluster-ip",
        "10.96.0.13",
        "--port",
        "80:8080/TCP",
    ]);
    c.daemon
        .ctl_ok(&["endpoint", "set", "default/self", &server_ip(0).to_string()]);
    let (name, peer) =
        c.pods[0].run(|| tcp_ask(SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 13), 80)).unwrap());
    assert_eq!((name.as_str(), peer.as_str()), ("s1", "10.244.1.1"));

    // Masquerade: the client reaches the external host, which sees the node address.
    let listener = c
        .ext
        .run(|| TcpListener::bind(SocketAddrV4::new(EXT_IP, 9000)))
        .unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let _ = writeln!(s, "ext {}", peer.ip());
        peer
    });
    let (name, peer) = c
        .client
        .run(|| tcp_ask(SocketAddrV4::new(EXT_IP, 9000)).unwrap());
    let seen = server.join().unwrap();
    assert_eq!((name.as_str(), peer.as_str()), ("ext", "192.168.50.2"));
    assert_eq!(seen.ip().to_string(), NODE_IP.to_string());
    let listing = c
        .daemon
        .ctl_ok(&["conntrack", "list", "-p", "tcp", "-d", &EXT_IP.to_string()]);
    assert!(
        listing.contains(&format!("dst={NODE_IP}")),
        "masquerade entry: {listing}"
    );
    let metrics = c.daemon.ctl_ok(&["metrics"]);
    assert!(metrics.contains("podswitch_conntrack_entries"), "{metrics}");
}

#[test]
fn pre_and_post_nat_capture_shows_the_cluster_ip_and_the_endpoint() {
    if !root_or_skip("pre_and_post_nat_capture_shows_the_cluster_ip_and_the_endpoint") {
        return;
    }
    if std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: tshark is not installed (.ci/run installs it)");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster("svc", 1);
    let file = std::env::temp_dir().join(format!("ps{}-nat.pcapng", std::process::id()));
    let mut capture = std::process::Command::new(podswitch_tests::live::ctl_bin());
    capture
        .arg("--socket")
        .arg(c.daemon.run_dir.join("api.sock"))
        .args([
            "capture", "--port", "c", "--stage", "pre-nat", "--stage", "post-nat",
        ])
        .args(["--format", "pcapng", "-c", "2", "--duration", "20", "-w"])
        .arg(&file)
        .args(["udp", "and", "(port", "53", "or", "port", "8053)"]);
    let capture = std::thread::spawn(move || capture.output().expect("podswitchctl capture"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .daemon
        .ctl_ok(&["metrics"])
        .contains("podswitch_mirror_frames_total{session=\"capture-")
    {
        assert!(
            Instant::now() < deadline,
            "the capture session did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = c.client.run(|| {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).ok();
        udp_ask(&s, SocketAddrV4::new(WEB, 53))
    });
    let endpoint = match answer.unwrap().as_str() {
        "s1" => server_ip(0),
        "s2" => server_ip(1),
        other => {
            assert_eq!(other, "s3");
            server_ip(2)
        }
    };
    let out = capture.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("tshark");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&fields.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // The same packet before and after the NAT stage.
    assert!(lines[0].starts_with(&format!("{WEB}\t53\t")), "{text}");
    assert!(lines[0].contains("stage=pre-nat"), "{text}");
    assert!(
        lines[1].starts_with(&format!("{endpoint}\t8053\t")),
        "{text}"
    );
    assert!(
        lines[1].contains(&format!("nat=dnat {WEB}:53->{endpoint}:8053")),
        "{text}"
    );
}
