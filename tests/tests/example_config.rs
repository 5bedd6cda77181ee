//! `config/node.example.toml` copied as it is makes a node that starts with
//! every port up, given the interfaces the file says it needs (the uplink
//! NIC `up0` and the veth `veth-pod-b`): no port in it points at a pod
//! namespace that would not exist. Needs root (namespaces); skips otherwise.

use std::time::Duration;

use podswitch_tests::live::{Daemon, Netns, root_or_skip, veth};
use podswitch_tests::workspace;

#[test]
fn the_example_config_starts_with_every_port_up() {
    if !root_or_skip("the_example_config_starts_with_every_port_up") {
        return;
    }
    let node = Netns::new("ex-node");
    let outside = Netns::new("ex-out");
    veth("up0", &node, "eth0", &outside);
    veth("veth-pod-b", &node, "eth1", &outside);
    let example = std::fs::read_to_string(workspace().join("config/node.example.toml")).unwrap();
    let d = Daemon::start(&node, "ex", &example, 1);
    std::thread::sleep(Duration::from_millis(200));
    let text = d.ctl_ok(&["-o", "json", "status"]);
    let status: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["health"]["forwarding"], true, "{text}");
    assert_eq!(
        status["health"]["ports_down"],
        serde_json::json!([]),
        "{}\n{}",
        d.ctl_ok(&["port", "list"]),
        d.log_text()
    );
    let ports = d.ctl_ok(&["port", "list"]);
    assert_eq!(
        ports.lines().filter(|l| l.contains(" up ")).count(),
        3,
        "{ports}"
    );
    let run_dir = d.run_dir.clone();
    drop(d);
    let _ = std::fs::remove_dir_all(run_dir);
}
