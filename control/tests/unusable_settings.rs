//! Settings of the node configuration that cannot work are refused when
//! podswitchd starts, with the field, the value and the reason: another
//! node (`[[nodes]]`) or a NodePort without an `[uplink]` to reach it by;
//! two ports with one address or MAC, a cluster IP on a pod's address.
//! Nothing is opened before the refusal (the pod netns named does not exist).

use std::process::Output;

mod common;

const BASE: &str = "[node]\nname = \"unusable\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

fn start(tag: &str, extra: &str) -> Output {
    let dir = common::temp_dir("unusable", tag);
    std::fs::create_dir_all(&*dir).unwrap();
    let config = dir.join("node.toml");
    std::fs::write(&config, format!("{BASE}{extra}")).unwrap();
    let mut child = common::podswitchd_run(&dir)
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run podswitchd");
    // A daemon that starts would run until stopped: give it a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        // SAFETY: a signal to the child this test started; no memory is involved.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    child.wait_with_output().unwrap()
}

fn refused(tag: &str, extra: &str, field: &str) {
    let output = start(tag, extra);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(field), "{stderr}");
    assert!(stderr.contains("[uplink]"), "{stderr}");
    assert!(
        !stderr.contains("forwarding"),
        "refused before forwarding: {stderr}"
    );
}

#[test]
fn another_node_without_an_uplink_is_refused_at_start() {
    refused(
        "nodes",
        "[[nodes]]\nname = \"node-b\"\nnode_ip = \"192.168.100.2\"\npod_cidr = \"10.244.2.0/24\"\n",
        "nodes[0].name = node-b",
    );
}

#[test]
fn a_node_port_without_an_uplink_is_refused_at_start() {
    refused(
        "nodeport",
        "[[services]]\nname = \"default/web\"\ncluster_ip = \"10.96.0.10\"\nprotocol = \"TCP\"\nport = 80\nnode_port = 30080\nendpoints = []\n",
        "services[0].node_port = 30080",
    );
}

/// Ports on interfaces that do not exist (down, nothing made), with these extras.
fn two_ports(a: &str, b: &str) -> String {
    format!(
        "[[ports]]\nname = \"pod-a\"\nkind = \"afpacket\"\nifname = \"nonexistent0\"\n{a}\n\
         [[ports]]\nname = \"pod-b\"\nkind = \"afpacket\"\nifname = \"nonexistent1\"\n{b}\n"
    )
}

#[test]
fn ports_sharing_an_address_or_a_mac_are_refused_at_start() {
    let output = start(
        "same-ip",
        &two_ports(
            "mac = \"02:00:0a:f4:01:02\"\nips = [\"10.244.1.2\"]",
            "mac = \"02:00:0a:f4:01:03\"\nips = [\"10.244.1.2\"]",
        ),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ports[1].ips = 10.244.1.2: already the address of port pod-a"),
        "{stderr}"
    );
    let output = start(
        "same-mac",
        &two_ports("mac = \"02:00:0a:f4:01:02\"", "mac = \"02:00:0a:f4:01:02\""),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ports[1].mac = 02:00:0a:f4:01:02: already the MAC of port pod-a"),
        "{stderr}"
    );
    let service = "[[services]]\nname = \"default/web\"\ncluster_ip = \"10.244.1.2\"\nprotocol = \"TCP\"\nport = 80\nendpoints = []\n";
    let ports = two_ports("mac = \"02:00:0a:f4:01:02\"\nips = [\"10.244.1.2\"]", "");
    let output = start("cluster-ip", &format!("{ports}{service}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("services[0].cluster_ip = 10.244.1.2: already the address of port pod-a"),
        "{stderr}"
    );
}
