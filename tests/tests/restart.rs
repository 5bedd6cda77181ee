//! Restarts keep connections through a ClusterIP (issue 24): the state
//! file under the run directory carries connection tracking over to the
//! next `podswitchd run`. Two byte streams cross the restarts, each
//! checked end to end by a hash: one where the client sends, one where the
//! endpoint sends (server push: without the entry its packets would no
//! longer be translated back, and the client would reset the connection).
//! The same holds across a takeover (`--takeover`, an upgrade). The
//! learned MACs, the neighbours and the counters are kept too: after a
//! `kill -9` the switch asks no ARP and learns no MAC again, and the
//! counters go on from what was published. A damaged or incompatible
//! state file gives a clean start with a log line. Needs root
//! (namespaces, TAP); skips otherwise.
//!
//! ```text
//!  c 10.244.1.2 ─┐ podswitchd (node ns)
//!  s 10.244.1.3 ─┘ up   10.96.0.10:80 → s:8080 (c sends)
//!                  push 10.96.0.11:80 → s:8081 (s sends)
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use podswitch_tests::live::{Daemon, Launch, Netns, pattern_byte, root_or_skip, wait_reachable};
use podswitch_tests::workspace;

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const C_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const S_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const UP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80);
const PUSH: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 11), 80);
const CHUNK: usize = 16 * 1024;

fn tap_port(name: &str, tag: &str, ns: &Netns, addr: Ipv4Addr) -> String {
    let ifname = format!("ps{}{tag}{name}", std::process::id() % 100_000);
    let last = addr.octets()[3];
    format!(
        "[[ports]]\nname = \"{name}\"\nkind = \"tap\"\nifname = \"{ifname}\"\nnetns = \"{}\"\n\
         mac = \"02:00:0a:f4:01:{last:02x}\"\nips = [\"{addr}\"]\n",
        ns.path().display()
    )
}

fn service(name: &str, vip: SocketAddrV4, target: u16) -> String {
    format!(
        "[[services]]\nname = \"{name}\"\ncluster_ip = \"{}\"\nprotocol = \"TCP\"\nport = {}\n\
         target_port = {target}\nendpoints = [{{ address = \"{S_IP}\" }}]\n",
        vip.ip(),
        vip.port()
    )
}

/// FNV-1a, 64 bits.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Writes the pattern in chunks, a few milliseconds apart, until `stop`;
/// returns (bytes, hash) of what it wrote.
fn send(mut stream: TcpStream, stop: Arc<AtomicBool>) -> std::io::Result<(u64, u64)> {
    let (mut sent, mut hash) = (0u64, Fnv::new());
    let mut chunk = vec![0u8; CHUNK];
    while !stop.load(Ordering::Relaxed) {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = pattern_byte(sent + i as u64);
        }
        stream.write_all(&chunk)?;
        hash.add(&chunk);
        sent += CHUNK as u64;
        std::thread::sleep(Duration::from_millis(5));
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok((sent, hash.0))
}

/// Reads to the end; returns (bytes, hash). A stream that stalls for 10 s
/// (its peer reset by the other side's kernel) is an error.
fn receive(mut stream: TcpStream) -> std::io::Result<(u64, u64)> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let (mut got, mut hash) = (0u64, Fnv::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok((got, hash.0));
        }
        hash.add(&buf[..n]);
        got += n as u64;
    }
}

type Side = JoinHandle<std::io::Result<(u64, u64)>>;

/// One stream through a ClusterIP: (sender, receiver) threads.
struct Stream {
    name: &'static str,
    sender: Side,
    receiver: Side,
}

impl Stream {
    fn check(self) {
        let sent = self.sender.join().expect("sender thread");
        let got = self.receiver.join().expect("receiver thread");
        let (sent, got) = match (sent, got) {
            (Ok(s), Ok(g)) => (s, g),
            (s, g) => panic!(
                "{}: the connection broke: sender {s:?}, receiver {g:?}",
                self.name
            ),
        };
        assert!(sent.0 > 0, "{}: nothing sent", self.name);
        assert_eq!(sent, got, "{}: (bytes, hash) sent and received", self.name);
    }
}

/// Opens both streams: `up` (the client sends) and `push` (the endpoint sends).
fn open_streams(c: &Netns, s: &Netns, stop: &Arc<AtomicBool>) -> [Stream; 2] {
    let listen = |port: u16| {
        s.run(move || TcpListener::bind(SocketAddrV4::new(S_IP, port)))
            .expect("listen in s")
    };
    let (up_listener, push_listener) = (listen(8080), listen(8081));
    let connect = |vip: SocketAddrV4| {
        c.run(move || TcpStream::connect_timeout(&vip.into(), Duration::from_secs(5)))
            .expect("connect through the ClusterIP")
    };
    let (up_client, push_client) = (connect(UP), connect(PUSH));
    let (up_server, _) = up_listener.accept().expect("accept up");
    let (push_server, _) = push_listener.accept().expect("accept push");
    let (stop_up, stop_push) = (Arc::clone(stop), Arc::clone(stop));
    [
        Stream {
            name: "client sends first",
            sender: std::thread::spawn(move || send(up_client, stop_up)),
            receiver: std::thread::spawn(move || receive(up_server)),
        },
        Stream {
            name: "endpoint sends first",
            sender: std::thread::spawn(move || send(push_server, stop_push)),
            receiver: std::thread::spawn(move || receive(push_client)),
        },
    ]
}

struct Node {
    node: Netns,
    c: Netns,
    s: Netns,
    run_dir: PathBuf,
    config: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Node {
        let node = Netns::new(&format!("{tag}-node"));
        let (c, s) = (
            Netns::new(&format!("{tag}-c")),
            Netns::new(&format!("{tag}-s")),
        );
        let config = format!(
            "[node]\nname = \"{tag}\"\n[bridge]\ngateway = \"{GW}/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
             {}{}[conntrack]\ncapacity = 4096\n{}{}",
            tap_port("c", tag, &c, C_IP),
            tap_port("s", tag, &s, S_IP),
            service("up", UP, 8080),
            service("push", PUSH, 8081),
        );
        let run_dir =
            std::env::temp_dir().join(format!("podswitch-live-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).unwrap();
        let config_path = run_dir.join("node.toml");
        std::fs::write(&config_path, config).unwrap();
        Node {
            node,
            c,
            s,
            run_dir,
            config: config_path,
        }
    }

    fn start(&self, extra: &[&str]) -> Daemon {
        self.start_wrapped(extra, &[])
    }

    /// Starts `wrapper podswitchd run ...`.
    fn start_wrapped(&self, extra: &[&str], wrapper: &[&str]) -> Daemon {
        let launch = Launch {
            workers: 1,
            extra,
            env: &[],
            wrapper,
        };
        let d = Daemon::launch(
            &self.node,
            self.run_dir.clone(),
            self.config.clone(),
            &launch,
        );
        for ns in [&self.c, &self.s] {
            assert!(
                wait_reachable(ns, GW, Duration::from_secs(10)),
                "{}: {}",
                ns.name,
                d.log_text()
            );
        }
        d
    }

    /// Both streams, for `run`, checked.
    fn streams_for(&self, run: Duration) {
        let stop = Arc::new(AtomicBool::new(false));
        let streams = open_streams(&self.c, &self.s, &stop);
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        for s in streams {
            s.check();
        }
    }

    fn state_file(&self) -> PathBuf {
        self.run_dir.join("dataplane.state")
    }
}

/// The daemon's log says it attached `at_least` connections.
fn attached(d: &Daemon, at_least: u64) {
    let stats = d.stats();
    let n = stats["state"]["attached_entries"].as_u64().unwrap_or(0);
    assert!(n >= at_least, "attached {n}: {}", d.log_text());
    assert_eq!(stats["state"]["discarded"], 0, "{}", d.log_text());
}

#[test]
fn streams_through_a_cluster_ip_survive_kill_sigterm_and_takeover() {
    if !root_or_skip("streams_through_a_cluster_ip_survive_kill_sigterm_and_takeover") {
        return;
    }
    let n = Node::new("rs1");
    let mut d = n.start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let streams = open_streams(&n.c, &n.s, &stop);
    std::thread::sleep(Duration::from_millis(300));

    // kill -9: nothing is written at exit; the file has it all already.
    let t = Instant::now();
    assert!(d.stop_with(libc::SIGKILL, Duration::from_secs(2)).is_some());
    d = n.start(&[]);
    eprintln!("kill -9 -> forwarding again in {:?}", t.elapsed());
    attached(&d, 2);
    // Killed: its free lists may be cut short, so they are made anew.
    let log = d.log_text();
    assert!(log.contains("clean_stop=false lists_rebuilt=true"), "{log}");
    std::thread::sleep(Duration::from_millis(800));

    // SIGTERM: a clean stop.
    let t = Instant::now();
    assert!(d.stop().is_some(), "stops on SIGTERM");
    d = n.start(&[]);
    eprintln!("SIGTERM -> forwarding again in {:?}", t.elapsed());
    attached(&d, 2);
    // Stopped cleanly: the free lists are taken as the file keeps them.
    let log = d.log_text();
    assert!(log.contains("clean_stop=true lists_rebuilt=false"), "{log}");
    kept_l2_and_counters(&d);
    std::thread::sleep(Duration::from_millis(800));

    // Takeover (an upgrade): a new process beside the running one.
    let mut old = d;
    // The old process keeps writing its log, under another name.
    let log = n.run_dir.join("daemon.log");
    std::fs::rename(&log, n.run_dir.join("daemon.old.log")).unwrap();
    let d = n.start(&["--takeover"]);
    let line = wait_log(&d, "forwarding", Duration::from_secs(10));
    eprintln!("takeover: {line}");
    assert!(
        old.wait_exit(Duration::from_secs(5)).is_some(),
        "the old process exits once taken over"
    );
    let log = d.log_text();
    assert!(log.contains("tap handed over"), "{log}");
    assert!(log.contains("clean_stop=true lists_rebuilt=false"), "{log}");
    let state = &d.stats()["state"];
    assert_eq!(state["lists_rebuilt"], false, "{state}");
    assert!(state["settle_us"].as_u64().is_some(), "{state}");
    kept_l2_and_counters(&d);
    std::thread::sleep(Duration::from_millis(800));

    stop.store(true, Ordering::Relaxed);
    for s in streams {
        s.check();
    }
    // The new process serves the API and is itself taken over or stopped.
    assert!(d.ctl_ok(&["port", "list"]).contains("c"));
    drop(d);
    let _ = std::fs::remove_dir_all(&n.run_dir);
}

/// The daemon found the MACs of c and s, their neighbour entries and the
/// counters in the state file.
fn kept_l2_and_counters(d: &Daemon) {
    let state = api_stats(d)["state"].clone();
    assert!(state["attached_macs"].as_u64() >= Some(2), "{state}");
    assert!(state["attached_neighbours"].as_u64() >= Some(2), "{state}");
    assert_eq!(state["counters_continued"], true, "{state}");
}

/// The API's stats: totals, and per worker what this process counted.
fn api_stats(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&d.ctl_ok(&["-o", "json", "stats"])).expect("stats JSON")
}

/// What this process's workers counted of `event`.
fn own_events(stats: &serde_json::Value, event: &str) -> u64 {
    let workers = stats["per_worker"].as_array().expect("per_worker");
    workers
        .iter()
        .map(|w| w["events"][event].as_u64().unwrap_or(0))
        .sum()
}

fn port_rx(stats: &serde_json::Value, name: &str) -> u64 {
    let ports = stats["ports"].as_array().expect("ports");
    let port = ports.iter().find(|p| p["name"] == name).expect("the port");
    port["rx_packets"].as_u64().unwrap_or(0)
}

#[test]
fn macs_neighbours_and_counters_survive_kill_9() {
    if !root_or_skip("macs_neighbours_and_counters_survive_kill_9") {
        return;
    }
    let n = Node::new("rs4");
    let mut d = n.start(&[]);
    // Traffic through the ClusterIPs: the MACs of c and s are learned, and
    // the pods' neighbour entries (from their ARP requests for the gateway).
    n.streams_for(Duration::from_millis(200));
    let before = api_stats(&d);
    assert!(own_events(&before, "neighbour_learned") >= 2, "{before}");
    assert!(own_events(&before, "mac_learned") >= 2, "{before}");
    let published = port_rx(&before, "c");
    let drops_before = before["drops"].clone();
    assert!(published > 0, "{before}");

    assert!(d.stop_with(libc::SIGKILL, Duration::from_secs(2)).is_some());
    let d = n.start(&[]);
    kept_l2_and_counters(&d);
    // The counters go on from what was published before the kill.
    let after = api_stats(&d);
    assert!(port_rx(&after, "c") >= published, "{after}");
    for (reason, n) in drops_before.as_object().expect("drops") {
        assert!(
            after["drops"][reason].as_u64() >= n.as_u64(),
            "{reason}: {after}"
        );
    }
    // New connections through the ClusterIPs: no MAC to learn, and no ARP
    // to send (the pods' kernels know the gateway; without the kept
    // neighbours the switch would ask for s, the DNAT's next hop).
    n.streams_for(Duration::from_millis(200));
    let again = api_stats(&d);
    assert_eq!(own_events(&again, "arp_request_sent"), 0, "{again}");
    assert_eq!(own_events(&again, "mac_learned"), 0, "{again}");
    // Nor do the pods ask for the gateway: their kernels kept its MAC
    // while the TAP had no carrier (arp_evict_nocarrier = 0).
    assert_eq!(own_events(&again, "arp_reply_sent"), 0, "{again}");
    for ns in [&n.c, &n.s] {
        let kept =
            ns.run(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth0/arp_evict_nocarrier"));
        assert_eq!(kept.expect("the sysctl").trim(), "0", "{}", ns.name);
    }
    assert!(own_events(&again, "dnat") >= 2, "{again}");
    assert!(port_rx(&again, "c") > port_rx(&after, "c"), "{again}");
    drop(d);
    let _ = std::fs::remove_dir_all(&n.run_dir);
}

/// `GET /metrics` at `addr` in `ns`, retried for up to 10 s; the body.
fn scrape(ns: &Netns, addr: SocketAddrV4) -> String {
    let start = Instant::now();
    loop {
        let got = ns.run(move || -> std::io::Result<String> {
            let mut conn = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(1))?;
            conn.set_read_timeout(Some(Duration::from_secs(2)))?;
            conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut body = String::new();
            conn.read_to_string(&mut body)?;
            Ok(body)
        });
        match got {
            Ok(body) if body.contains("podswitch_port_rx_packets_total") => return body,
            other => assert!(start.elapsed() < Duration::from_secs(10), "{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The DaemonSet's entrypoint (deploy/podswitchd-entrypoint.sh): started
/// beside a running daemon (a surge update; the two share the run dir), it
/// takes the node over; the old one's container stays, idle, until it is
/// stopped; the streams through the ClusterIPs go on and the metrics
/// address moves to the new process. Without a running daemon it starts
/// as usual.
#[test]
fn the_entrypoint_takes_over_from_a_running_pod() {
    if !root_or_skip("the_entrypoint_takes_over_from_a_running_pod") {
        return;
    }
    let n = Node::new("rs5");
    let entrypoint = workspace().join("deploy/podswitchd-entrypoint.sh");
    let wrapper = ["sh", entrypoint.to_str().unwrap()];
    let metrics_addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9612);
    let metrics = format!("--metrics-listen={metrics_addr}");
    let mut old = n.start_wrapped(&[&metrics], &wrapper);
    assert!(!old.log_text().contains("--takeover"), "{}", old.log_text());
    scrape(&n.node, metrics_addr);
    let stop = Arc::new(AtomicBool::new(false));
    let streams = open_streams(&n.c, &n.s, &stop);
    std::thread::sleep(Duration::from_millis(300));

    let old_log = n.run_dir.join("daemon.old.log");
    std::fs::rename(n.run_dir.join("daemon.log"), &old_log).unwrap();
    let mut new = n.start_wrapped(&[&metrics], &wrapper);
    wait_log(&new, "forwarding", Duration::from_secs(10));
    let log = new.log_text();
    assert!(log.contains("starting with --takeover"), "{log}");
    assert!(log.contains("tap handed over"), "{log}");
    // The old podswitchd exits; its container does not.
    let start = Instant::now();
    while !std::fs::read_to_string(&old_log)
        .unwrap_or_default()
        .contains("handed the node over")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the old one did not hand over"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        old.wait_exit(Duration::from_millis(500)).is_none(),
        "the old container stays"
    );
    let body = scrape(&n.node, metrics_addr);
    assert!(body.contains("podswitch_state_discarded_total 0"), "{body}");
    // The DaemonSet deletes the old pod: SIGTERM, and it is gone at once.
    assert!(old.stop().is_some(), "the idle container stops on SIGTERM");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        s.check();
    }
    assert!(new.ctl_ok(&["port", "list"]).contains("c"));
    // SIGTERM reaches podswitchd through the entrypoint; it cleans up.
    assert!(new.stop().is_some());
    assert!(!n.run_dir.join("takeover.sock").exists());
    let again = n.start_wrapped(&[], &wrapper);
    assert!(
        !again.log_text().contains("--takeover"),
        "{}",
        again.log_text()
    );
    drop(again);
    let _ = std::fs::remove_dir_all(&n.run_dir);
}

/// Waits for a log line of `d` containing `needle`; returns it.
fn wait_log(d: &Daemon, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let log = d.log_text();
        if let Some(line) = log.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(start.elapsed() < limit, "no {needle:?} in the log: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts on a state file `spoil` damaged: the log names the file and the
/// reason, the counter says one discard, and a new connection works.
fn clean_start_after(tag: &str, spoil: impl FnOnce(&std::fs::File), reason: &str) {
    let n = Node::new(tag);
    let mut d = n.start(&[]);
    assert!(d.stop().is_some());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(n.state_file())
        .expect("the state file is there");
    spoil(&file);
    drop(file);
    let d = n.start(&[]);
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("state file discarded"))
        .unwrap_or_else(|| panic!("no log line: {log}"));
    assert!(
        line.contains(reason) && line.contains("dataplane.state"),
        "{line}"
    );
    let stats = d.stats();
    assert_eq!(stats["state"]["discarded"], 1, "{stats}");
    assert_eq!(stats["state"]["persistent"], true, "{stats}");
    n.streams_for(Duration::from_millis(100));
    drop(d);
    let _ = std::fs::remove_dir_all(&n.run_dir);
}

#[test]
fn a_damaged_state_file_gives_a_clean_start() {
    if !root_or_skip("a_damaged_state_file_gives_a_clean_start") {
        return;
    }
    // A byte of the header's hash seed: the checksum no longer matches.
    clean_start_after(
        "rs2",
        |f| f.write_all_at(&[0x5a], 7 * 8).unwrap(),
        "checksum",
    );
}

#[test]
fn an_incompatible_state_file_gives_a_clean_start() {
    if !root_or_skip("an_incompatible_state_file_gives_a_clean_start") {
        return;
    }
    // Another layout version (what an older or newer build would write).
    let version = |f: &std::fs::File| f.write_all_at(&7u64.to_le_bytes(), 8).unwrap();
    clean_start_after("rs3", version, "layout version 7");
}
