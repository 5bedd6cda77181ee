//! Faults of a port's device that must not hurt the other ports: a pod
//! whose network namespace is gone while the daemon was down (the daemon
//! starts anyway, that port is down with its reason), and a TAP deleted
//! while the daemon runs (detected, the port marked down, logged once, no
//! longer polled; the same for an AF_PACKET port's interface, while a link
//! merely set down passes); and frames a device drops before the workers read them,
//! which are counted per port. Needs root (namespaces, TAP); skips otherwise.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use podswitch_tests::live::{
    Daemon, Netns, ip, root_or_skip, send_raw_frames, veth, wait_reachable,
};

const CONFIG: &str = "[node]\nname = \"pf\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);

fn add_pod(d: &Daemon, name: &str, ns: &Netns, last: u8) {
    let ifname = format!("ps{}{}", std::process::id() % 100_000, &name[4..]);
    let netns = ns.path().display().to_string();
    d.ctl_ok(&[
        "port",
        "add",
        name,
        "--kind",
        "tap",
        "--ifname",
        &ifname,
        "--netns",
        &netns,
        "--mac",
        &format!("02:00:0a:f4:01:{last:02x}"),
        "--ip",
        &format!("10.244.1.{last}"),
    ]);
}

fn port_json(d: &Daemon, name: &str) -> serde_json::Value {
    let text = d.ctl_ok(&["-o", "json", "port", "show", name]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn health(d: &Daemon) -> serde_json::Value {
    let text = d.ctl_ok(&["-o", "json", "status"]);
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["health"].clone()
}

/// CPU time (user + system, in clock ticks) of the threads of `pid` whose name starts with `prefix`.
fn thread_ticks(pid: u32, prefix: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let Some((name, rest)) = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')) else {
            continue;
        };
        if name.starts_with(prefix) {
            // After the name: field 3 (state) onwards; utime and stime are fields 14 and 15.
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let get = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
            total += get(14).unwrap_or(0) + get(15).unwrap_or(0);
        }
    }
    total
}

/// A daemon in its node namespace with pods a, b and c attached through
/// the API (10.244.1.2, .3, .4), a reaching b.
fn three_pods(tag: &str) -> (Daemon, Netns, [Netns; 3]) {
    let node = Netns::new(&format!("{tag}-node"));
    let pods = ["a", "b", "c"].map(|p| Netns::new(&format!("{tag}-{p}")));
    let d = Daemon::start(&node, tag, CONFIG, 2);
    for (i, (name, ns)) in ["pod-a", "pod-b", "pod-c"].iter().zip(&pods).enumerate() {
        add_pod(&d, name, ns, 2 + i as u8);
    }
    assert!(
        wait_reachable(&pods[0], B_IP, Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
    (d, node, pods)
}

#[test]
fn a_pod_namespace_gone_while_stopped_leaves_its_port_down_and_the_rest_forwarding() {
    if !root_or_skip("a_pod_namespace_gone_while_stopped_leaves_its_port_down") {
        return;
    }
    let (mut d, node, [a, _b, c]) = three_pods("pf1");
    assert_eq!(port_json(&d, "pod-c")["state"], "up");
    d.stop();
    // The pod goes while the daemon is down (its TAP goes with the namespace).
    drop(c);

    let d = Daemon::start_with(&node, d.run_dir.clone(), d.config.clone(), 2);
    assert!(
        wait_reachable(&a, B_IP, Duration::from_secs(10)),
        "the other pods forward: {}",
        d.log_text()
    );
    let port = port_json(&d, "pod-c");
    assert_eq!(port["state"], "down", "{port}");
    let reason = port["down_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("network namespace") && reason.contains("No such file"),
        "{port}"
    );
    assert_eq!(port_json(&d, "pod-a")["state"], "up");
    let list = d.ctl_ok(&["port", "list"]);
    let line = list.lines().find(|l| l.starts_with("pod-c")).unwrap_or("");
    assert!(line.contains("down"), "{list}");
    let h = health(&d);
    assert_eq!(h["forwarding"], true, "{h}");
    assert_eq!(h["ports_down"], serde_json::json!(["pod-c"]), "{h}");
    let status = d.ctl_ok(&["status"]);
    assert!(status.contains("pod-c"), "{status}");
    let metrics = d.ctl_ok(&["metrics"]);
    assert!(
        metrics.contains("podswitch_port_up{port=\"pod-c\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("podswitch_port_up{port=\"pod-a\"} 1"),
        "{metrics}"
    );
    assert!(d.log_text().contains("pod-c"), "the reason is logged");

    // The API works: the port can be deleted.
    d.ctl_ok(&["port", "del", "pod-c"]);
    assert_eq!(health(&d)["ports_down"], serde_json::json!([]));
    assert!(wait_reachable(&a, B_IP, Duration::from_secs(5)));
    drop(d);
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("podswitch-live-{}-pf1", std::process::id())),
    );
}

#[test]
fn a_tap_deleted_while_running_is_marked_down_once_and_no_longer_polled() {
    if !root_or_skip("a_tap_deleted_while_running_is_marked_down_once") {
        return;
    }
    let (d, _node, [a, _b, c]) = three_pods("pf2");
    let pid = d.pid().expect("running");
    let idle = Duration::from_secs(2);
    let before = thread_ticks(pid, "podswitch-w");
    std::thread::sleep(idle);
    let idle_ticks = thread_ticks(pid, "podswitch-w") - before;

    // The pod's interface is deleted behind the daemon's back.
    ip(&["-n", &c.name, "link", "del", "eth0"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while port_json(&d, "pod-c")["state"] != "down" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = port_json(&d, "pod-c");
    assert_eq!(port["state"], "down", "{port}\n{}", d.log_text());
    let reason = port["down_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("deleted"), "{port}");
    assert_eq!(health(&d)["ports_down"], serde_json::json!(["pod-c"]));

    // The workers sleep again: no more CPU than before the deletion.
    let before = thread_ticks(pid, "podswitch-w");
    std::thread::sleep(idle);
    let after_ticks = thread_ticks(pid, "podswitch-w") - before;
    println!("worker CPU ticks in {idle:?}: {idle_ticks} idle, {after_ticks} after the TAP went");
    assert!(
        after_ticks <= idle_ticks + 10,
        "workers used {after_ticks} ticks in {idle:?} after the TAP went (idle: {idle_ticks})"
    );
    let log = d.log_text();
    assert_eq!(
        log.matches("the TAP was deleted").count(),
        1,
        "logged once: {log}"
    );
    assert!(
        wait_reachable(&a, B_IP, Duration::from_secs(5)),
        "the others forward"
    );
    d.ctl_ok(&["port", "del", "pod-c"]);
    assert_eq!(health(&d)["ports_down"], serde_json::json!([]));
    drop(d);
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("podswitch-live-{}-pf2", std::process::id())),
    );
}

#[test]
fn frames_the_kernel_drops_before_the_workers_read_them_are_counted_per_port() {
    if !root_or_skip("frames_the_kernel_drops_before_the_workers_read_them_are_counted") {
        return;
    }
    let node = Netns::new("pf3-node");
    let x = Netns::new("pf3-x");
    let y = Netns::new("pf3-y");
    veth("veth-x", &node, "eth0", &x);
    veth("veth-y", &node, "eth0", &y);
    // pod-x receives with recvmmsg (a socket buffer), pod-y through the mmap ring.
    let config = format!(
        "{CONFIG}[[ports]]\nname = \"pod-x\"\nkind = \"afpacket\"\nifname = \"veth-x\"\n\
         [[ports]]\nname = \"pod-y\"\nkind = \"afpacket\"\nifname = \"veth-y\"\nrx_ring = true\n"
    );
    let mut d = Daemon::start(&node, "pf3", &config, 2);
    let pid = d.pid().expect("running");
    // While the workers cannot read, a burst overflows the sockets.
    // SAFETY: signals to the daemon this test started; no memory is involved.
    unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
    let frame: Vec<u8> = [[0x02, 0, 0, 0, 0, 0x99], [0x02, 0, 0, 0, 0, 0x98]]
        .concat()
        .into_iter()
        .chain([0x08, 0x00])
        .chain(std::iter::repeat_n(0x45, 1486))
        .collect();
    for ns in [&x, &y] {
        send_raw_frames(ns, "eth0", vec![frame.clone(); 30_000]);
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    std::thread::sleep(Duration::from_millis(300));
    let text = d.ctl_ok(&["-o", "json", "stats"]);
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
    let metrics = d.ctl_ok(&["metrics"]);
    for name in ["pod-x", "pod-y"] {
        let port = stats["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{name} in {text}"));
        let dropped = port["rx_dropped"].as_u64().unwrap_or(0);
        let received = port["rx_packets"].as_u64().unwrap_or(0);
        println!("{name}: {received} received, {dropped} dropped by the kernel of 30000 sent");
        assert!(dropped > 0, "{name}: {port}");
        // Received may hold a few frames of the pod's own (IPv6 neighbour discovery).
        assert!(dropped <= 30_000, "{name}: {port}");
        let line = format!("podswitch_port_rx_dropped_total{{port=\"{name}\"}} {dropped}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
        assert!(
            metrics.contains(&format!(
                "podswitch_port_rx_errors_total{{port=\"{name}\"}} 0"
            )),
            "{metrics}"
        );
        let listed = d.ctl_ok(&["-o", "json", "port", "show", name]);
        let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
        assert_eq!(listed["counters"]["rx_dropped"], dropped, "{listed}");
    }
    let table = d.ctl_ok(&["stats"]);
    assert!(table.contains("RX-DROPPED"), "{table}");
    d.stop();
    let _ = std::fs::remove_dir_all(&d.run_dir);
}

#[test]
fn an_afpacket_interface_deleted_while_running_is_marked_down_and_no_longer_polled() {
    if !root_or_skip("an_afpacket_interface_deleted_while_running_is_marked_down") {
        return;
    }
    let node = Netns::new("pf4-node");
    let x = Netns::new("pf4-x");
    let y = Netns::new("pf4-y");
    veth("veth-x", &node, "eth0", &x);
    veth("veth-y", &node, "eth0", &y);
    let config = format!(
        "{CONFIG}[[ports]]\nname = \"pod-x\"\nkind = \"afpacket\"\nifname = \"veth-x\"\n\
         [[ports]]\nname = \"pod-y\"\nkind = \"afpacket\"\nifname = \"veth-y\"\nrx_ring = true\n"
    );
    let mut d = Daemon::start(&node, "pf4", &config, 2);
    let pid = d.pid().expect("running");
    let idle = Duration::from_secs(2);
    let before = thread_ticks(pid, "podswitch-w");
    std::thread::sleep(idle);
    let idle_ticks = thread_ticks(pid, "podswitch-w") - before;
    // A link set down and up again passes: the ports stay up, no spinning.
    for dev in ["veth-x", "veth-y"] {
        ip(&["-n", &node.name, "link", "set", dev, "down"]);
    }
    let before = thread_ticks(pid, "podswitch-w");
    std::thread::sleep(idle);
    let down_ticks = thread_ticks(pid, "podswitch-w") - before;
    assert!(
        down_ticks <= idle_ticks + 10,
        "{down_ticks} ticks while the links were down"
    );
    for dev in ["veth-x", "veth-y"] {
        ip(&["-n", &node.name, "link", "set", dev, "up"]);
    }
    assert_eq!(health(&d)["ports_down"], serde_json::json!([]));
    ip(&["-n", &node.name, "link", "del", "veth-x"]);
    ip(&["-n", &node.name, "link", "del", "veth-y"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while health(&d)["ports_down"].as_array().map_or(0, Vec::len) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        health(&d)["ports_down"],
        serde_json::json!(["pod-x", "pod-y"]),
        "{}",
        d.log_text()
    );
    let before = thread_ticks(pid, "podswitch-w");
    std::thread::sleep(idle);
    let after_ticks = thread_ticks(pid, "podswitch-w") - before;
    println!(
        "worker CPU ticks in {idle:?}: {idle_ticks} idle, {after_ticks} after the interfaces went"
    );
    assert!(
        after_ticks <= idle_ticks + 10,
        "{after_ticks} ticks (idle: {idle_ticks})"
    );
    d.stop();
    let _ = std::fs::remove_dir_all(&d.run_dir);
}
