//! Faults of a port's device that must not hurt the other ports: a pod
//! whose network namespace is gone while the daemon was down (the daemon
//! starts anyway, that port is down with its reason), and a TAP deleted
//! while the daemon runs (detected, the port marked down, logged once, no
//! longer polled). Needs root (namespaces, TAP); skips otherwise.

use std::net::Ipv4Addr;
use std::time::Duration;

use podswitch_tests::live::{Daemon, Netns, root_or_skip, wait_reachable};

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

#[test]
fn a_pod_namespace_gone_while_stopped_leaves_its_port_down_and_the_rest_forwarding() {
    if !root_or_skip("a_pod_namespace_gone_while_stopped_leaves_its_port_down") {
        return;
    }
    let node = Netns::new("pf1-node");
    let a = Netns::new("pf1-a");
    let b = Netns::new("pf1-b");
    let c = Netns::new("pf1-c");
    let mut d = Daemon::start(&node, "pf1", CONFIG, 2);
    add_pod(&d, "pod-a", &a, 2);
    add_pod(&d, "pod-b", &b, 3);
    add_pod(&d, "pod-c", &c, 4);
    assert!(
        wait_reachable(&a, B_IP, Duration::from_secs(10)),
        "{}",
        d.log_text()
    );
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
