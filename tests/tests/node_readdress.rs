//! `PUT /v1/node` re-places the pods it moves: a new gateway address or
//! pod prefix reaches the interfaces already in the pods (their address
//! prefix and default route), so they keep talking through the gateway;
//! also when the daemon dies between storing the change and applying it
//! (the next start applies it to the TAPs it re-attaches).
//! Needs root (namespaces, TAP); skips otherwise.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use podswitch_control::client::ApiClient;
use podswitch_tests::live::{Daemon, Netns, ping, root_or_skip, wait_reachable};

const CONFIG: &str = "[node]\nname = \"nr\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Attaches pods 10.244.1.2 and .3 through the API; waits until the first reaches the gateway.
fn attach(d: &Daemon, pods: &[Netns; 2]) {
    for (i, ns) in pods.iter().enumerate() {
        d.ctl_ok(&[
            "port",
            "add",
            &format!("pod-{i}"),
            "--kind",
            "tap",
            "--ifname",
            &format!("ps{}nr{i}", std::process::id() % 100_000),
            "--netns",
            &ns.path().display().to_string(),
            "--mac",
            &format!("02:00:0a:f4:01:0{}", i + 2),
            "--ip",
            &format!("10.244.1.{}", i + 2),
        ]);
    }
    let gateway = Ipv4Addr::new(10, 244, 1, 1);
    assert!(wait_reachable(&pods[0], gateway, Duration::from_secs(10)));
}

/// `PUT /v1/node`: gateway 10.244.1.254/23.
fn move_gateway(d: &Daemon) -> Result<(), String> {
    let client = ApiClient::new(d.run_dir.join("api.sock"));
    let node_json =
        serde_json::json!({"gateway": "10.244.1.254/23", "gateway_mac": "02:00:0a:f4:01:fe"});
    client
        .send_json("PUT", "/v1/node", &node_json)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The pods carry the new addressing and reach the new gateway and each other.
fn assert_readdressed(d: &Daemon, pods: &[Netns; 2]) {
    for (i, ns) in pods.iter().enumerate() {
        let addrs = ip_out(&["-n", &ns.name, "-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(
            addrs.contains(&format!("10.244.1.{}/23", i + 2)),
            "{addrs}\n{}",
            d.log_text()
        );
        assert!(!addrs.contains("/24"), "{addrs}");
        let route = ip_out(&["-n", &ns.name, "route", "show", "default"]);
        assert!(route.contains("via 10.244.1.254 dev eth0"), "{route}");
    }
    let new_gateway = Ipv4Addr::new(10, 244, 1, 254);
    assert!(
        wait_reachable(&pods[0], new_gateway, Duration::from_secs(10)),
        "the pod reaches the new gateway: {}",
        d.log_text()
    );
    assert!(
        ping(
            &pods[0],
            Ipv4Addr::new(10, 244, 1, 3),
            Duration::from_secs(2)
        )
        .is_some()
    );
}

#[test]
fn a_new_gateway_and_prefix_reach_the_pods_already_there() {
    if !root_or_skip("a_new_gateway_and_prefix_reach_the_pods_already_there") {
        return;
    }
    let node = Netns::new("nr-node");
    let pods = [Netns::new("nr-a"), Netns::new("nr-b")];
    let d = Daemon::start(&node, "nr", CONFIG, 1);
    attach(&d, &pods);
    move_gateway(&d).unwrap_or_else(|e| panic!("PUT /v1/node: {e}"));
    assert_readdressed(&d, &pods);
    let run_dir = d.run_dir.clone();
    drop(d);
    let _ = std::fs::remove_dir_all(run_dir);
}

#[test]
fn a_start_re_addresses_the_pods_a_crash_left_behind() {
    if !root_or_skip("a_start_re_addresses_the_pods_a_crash_left_behind") {
        return;
    }
    let node = Netns::new("nc-node");
    let pods = [Netns::new("nc-a"), Netns::new("nc-b")];
    let mut d = Daemon::start(&node, "nc", CONFIG, 1);
    attach(&d, &pods);
    d.stop();
    // Stored, then the daemon dies before the pods follow.
    let crash = [("PODSWITCH_CRASH_AT", "node-set")];
    let (run_dir, config) = (d.run_dir.clone(), d.config.clone());
    let mut d = Daemon::start_with_env(&node, run_dir.clone(), config.clone(), 1, &[], &crash);
    assert!(move_gateway(&d).is_err(), "the answer is lost");
    assert!(d.wait_exit(Duration::from_secs(5)).is_some(), "it crashed");
    let d = Daemon::start_with(&node, run_dir.clone(), config, 1);
    assert_readdressed(&d, &pods);
    drop(d);
    let _ = std::fs::remove_dir_all(run_dir);
}
