//! The connection table under a flood, in real namespaces: one pod opening
//! connections by the thousand through a ClusterIP must not break another
//! pod's idle connection (issue 25 B6).
//!
//! ```text
//!  a 10.244.1.2 ─┐ podswitchd (node ns), [conntrack] capacity = 1024
//!  c 10.244.1.4 ─┤ gateway 10.244.1.1, web 10.96.0.10:80 → s:8080
//!  s 10.244.1.3 ─┘
//! ```
//!
//! Needs root; skips with a printed reason otherwise.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use podswitch_tests::live::{Daemon, Netns, root_or_skip, wait_reachable};
use socket2::{Domain, Socket, Type};

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const A_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const S_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const C_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 4);
const WEB: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80);
const CAPACITY: usize = 1024;

fn tap_port(name: &str, tag: &str, ns: &Netns, ip_addr: Ipv4Addr) -> String {
    let ifname = format!("ps{}{tag}{name}", std::process::id() % 100_000);
    let last = ip_addr.octets()[3];
    format!(
        "[[ports]]\nname = \"{name}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nnetns = \"{}\"\n\
         mac = \"02:00:0a:f4:01:{last:02x}\"\nips = [\"{ip_addr}\"]\n",
        ns.path().display()
    )
}

/// Opens `n` connections from inside `ns` to `WEB`, 32 at a time, each
/// wave given a few milliseconds to complete its handshakes (non-blocking
/// connects: a refused one does not hold the next up); returns the
/// sockets, to keep them open.
fn open_many(ns: &Netns, n: usize) -> Vec<Socket> {
    ns.run(move || {
        let mut open = Vec::with_capacity(n);
        while open.len() < n {
            for _ in 0..32 {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None)
                    .unwrap_or_else(|e| panic!("socket {} of {n}: {e}", open.len()));
                s.set_nonblocking(true).unwrap();
                let _ = s.connect(&SocketAddr::V4(WEB).into());
                open.push(s);
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        open
    })
}

/// Raises this process's open-file limit to at least `n` (as far as the
/// hard limit allows): the flood holds its sockets open.
fn allow_open_files(n: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write the one struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < n {
            limit.rlim_cur = n.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[test]
fn one_pod_opening_ten_times_capacity_leaves_another_pods_idle_connection() {
    if !root_or_skip("one_pod_opening_ten_times_capacity_leaves_another_pods_idle_connection") {
        return;
    }
    allow_open_files(4 * CAPACITY as u64 * 10);
    let tag = "ct";
    let node = Netns::new(&format!("{tag}-node"));
    let (a, s, c) = (
        Netns::new(&format!("{tag}-a")),
        Netns::new(&format!("{tag}-s")),
        Netns::new(&format!("{tag}-c")),
    );
    let config = format!(
        "[node]\nname = \"{tag}\"\n[bridge]\ngateway = \"{GW}/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
         {}{}{}[conntrack]\ncapacity = {CAPACITY}\n\
         [[services]]\nname = \"web\"\ncluster_ip = \"{}\"\nprotocol = \"TCP\"\nport = 80\n\
         target_port = 8080\nendpoints = [{{ address = \"{S_IP}\" }}]\n",
        tap_port("a", tag, &a, A_IP),
        tap_port("s", tag, &s, S_IP),
        tap_port("c", tag, &c, C_IP),
        WEB.ip(),
    );
    let mut daemon = Daemon::start(&node, tag, &config, 1);
    for ns in [&a, &s, &c] {
        assert!(
            wait_reachable(ns, GW, Duration::from_secs(10)),
            "{}: {}",
            ns.name,
            daemon.log_text()
        );
    }
    // The server keeps every connection; it hands the one from a over.
    let listener = s.run(|| {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        l.set_reuse_address(true)?;
        l.bind(&SocketAddr::V4(SocketAddrV4::new(S_IP, 8080)).into())?;
        l.listen(4096)?;
        Ok::<_, std::io::Error>(std::net::TcpListener::from(l))
    });
    let listener = listener.expect("listen in s");
    let (from_a, got_a) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        while let Ok((conn, peer)) = listener.accept() {
            if peer.ip() == std::net::IpAddr::V4(A_IP) {
                let _ = from_a.send(conn);
            } else {
                kept.push(conn);
            }
        }
    });
    let mut idle = a
        .run(|| TcpStream::connect_timeout(&SocketAddr::V4(WEB), Duration::from_secs(2)))
        .expect("a connects to web");
    let mut at_server = got_a
        .recv_timeout(Duration::from_secs(2))
        .expect("the server accepts a's connection");
    idle.write_all(b"hello\n").unwrap();
    // c opens ten times the table's capacity and keeps them open.
    let flood = open_many(&c, 10 * CAPACITY);
    std::thread::sleep(Duration::from_secs(1));
    // The server speaks first on a's idle connection: without its entry
    // the segment would reach a from the endpoint's own address, and a's
    // kernel would reset the connection.
    at_server.write_all(b"still here\n").unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 11];
    let read = idle.read_exact(&mut buf);
    let stats = daemon.fresh_stats();
    assert!(
        read.is_ok() && &buf == b"still here\n",
        "a's idle connection broke: {read:?}\n{stats}"
    );
    // c got its share of the table, no more; a can still open connections.
    let limited = stats["drops"]["conntrack_pod_limit"].as_u64().unwrap_or(0);
    assert!(limited > 0, "{stats}");
    let again = a.run(|| TcpStream::connect_timeout(&SocketAddr::V4(WEB), Duration::from_secs(2)));
    assert!(again.is_ok(), "a's new connection: {again:?}\n{stats}");
    drop(flood);
    let _ = daemon.stop();
    let _ = std::fs::remove_dir_all(&daemon.run_dir);
}
