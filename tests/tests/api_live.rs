//! The control API of a real daemon, driven by the real `podswitchctl`:
//! pods attached at run time through the API, state kept across `kill -9`,
//! persistent TAPs re-attached and traffic resumed, ports removed.
//! Needs root (namespaces, TAP); skips with a printed reason otherwise.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use podswitch_tests::live::{Daemon, Netns, ping, root_or_skip, tcp_transfer, wait_reachable};

const B_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);

fn add_pod(d: &Daemon, name: &str, ns: &Netns, mac: &str, ip_addr: &str) {
    let ifname = format!("ps{}{}", std::process::id() % 100_000, &name[4..]);
    let netns = ns.path().display().to_string();
    d.ctl_ok(&[
        "port", "add", name, "--kind", "tap", "--ifname", &ifname, "--netns", &netns, "--mac", mac,
        "--ip", ip_addr,
    ]);
}

/// Everything the API serves about stored resources, as JSON text (counters removed).
fn state(d: &Daemon) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for args in [
        ["port", "list"],
        ["service", "list"],
        ["node", "list"],
        ["route", "list"],
    ] {
        let text = d.ctl_ok(&["-o", "json", args[0], args[1]]);
        let mut v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"));
        if let Some(ports) = v.get_mut("ports").and_then(|p| p.as_array_mut()) {
            for p in ports {
                p.as_object_mut().map(|o| o.remove("counters"));
            }
        }
        out.push(v);
    }
    out
}

#[test]
fn ports_through_the_api_survive_kill_9() {
    if !root_or_skip("ports_through_the_api_survive_kill_9") {
        return;
    }
    let node = Netns::new("ap-node");
    let a = Netns::new("ap-a");
    let b = Netns::new("ap-b");
    let config = "[node]\nname = \"ap\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";
    let mut d = Daemon::start(&node, "ap", config, 2);
    assert!(
        d.ctl_ok(&["status"]).contains("forwarding"),
        "{}",
        d.log_text()
    );
    add_pod(&d, "pod-a", &a, "02:00:0a:f4:01:02", "10.244.1.2");
    add_pod(&d, "pod-b", &b, "02:00:0a:f4:01:03", "10.244.1.3");
    assert!(
        wait_reachable(&a, B_IP, Duration::from_secs(10)),
        "pods attached through the API talk: {}",
        d.log_text()
    );
    d.ctl_ok(&[
        "service",
        "add",
        "default/web",
        "--cluster-ip",
        "10.96.0.10",
        "--port",
        "http:80:8080/TCP,nodeport=30080",
    ]);
    d.ctl_ok(&["endpoint", "add", "default/web", "10.244.1.3"]);
    d.ctl_ok(&[
        "node",
        "add",
        "node-b",
        "--node-ip",
        "192.168.100.2",
        "--pod-cidr",
        "10.244.2.0/24",
    ]);
    // Errors come back unchanged, with exit code 1, and change nothing.
    let before = state(&d);
    let (code, _, err) = d.ctl(&[
        "service",
        "add",
        "default/web",
        "--cluster-ip",
        "10.96.0.11",
        "--port",
        "80",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("name = default/web: a service with this name exists"),
        "{err}"
    );
    let (code, out, err) = d.ctl(&["conntrack", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("flow entries have been shown"), "{out}");
    assert_eq!(state(&d), before);

    // kill -9, then start again on the same state directory.
    let killed = d.stop_with(libc::SIGKILL, Duration::from_secs(2));
    assert!(killed.is_some(), "SIGKILL ends it");
    assert!(
        ping(&a, B_IP, Duration::from_millis(300)).is_none(),
        "nothing forwards while it is down"
    );
    let started = Instant::now();
    let metrics_at = "127.0.0.1:9641";
    d = Daemon::start_with_args(
        &node,
        d.run_dir.clone(),
        d.config.clone(),
        2,
        &["--metrics-listen", metrics_at],
    );
    let api_up = started.elapsed();
    assert!(
        wait_reachable(&a, B_IP, Duration::from_secs(10)),
        "traffic resumes: {}",
        d.log_text()
    );
    let forwarding = started.elapsed();
    println!(
        "restart after kill -9: API and stats up after {api_up:?}, pod-to-pod ping answered after {forwarding:?}"
    );
    assert_eq!(state(&d), before, "the same state is served after kill -9");
    let log = d.log_text();
    assert_eq!(
        log.matches("Reattached").count(),
        2,
        "both TAPs re-attached: {log}"
    );
    let (verified, _) = tcp_transfer(&a, &b, B_IP, 5301, 16 << 20);
    assert_eq!(verified, 16 << 20);

    // Removing a port takes the pod's interface away.
    d.ctl_ok(&["port", "del", "pod-b"]);
    assert!(ping(&a, B_IP, Duration::from_millis(500)).is_none());
    let links = std::process::Command::new("ip")
        .args(["-n", &b.name, "-o", "link"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&links.stdout).contains("eth0"),
        "pod-b's TAP is gone"
    );
    let stats = d.ctl_ok(&["stats"]);
    assert!(stats.contains("pod-a"), "{stats}");
    // Metrics: on the socket, and over TCP inside the node's namespace.
    let metrics = d.ctl_ok(&["metrics"]);
    assert!(
        metrics.contains("podswitch_port_rx_packets_total{port=\"pod-a\"}"),
        "{metrics}"
    );
    let tcp = node.run(move || {
        let mut s = std::net::TcpStream::connect(metrics_at).expect("metrics listener");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    });
    assert!(tcp.starts_with("HTTP/1.1 200"), "{tcp}");
    assert!(tcp.contains("podswitch_snapshot_generation"), "{tcp}");
    assert!(
        tcp.contains("podswitch_api_requests_total{method=\"DELETE\",status=\"204\"}"),
        "{tcp}"
    );
    let _ = std::fs::remove_dir_all(&d.run_dir);
}
