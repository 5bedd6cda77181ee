//! Port changes survive a crash at any point: a port and its TAP exist
//! together after a restart, or neither does. The daemon is made to abort
//! between the store write and the device change of a port add or delete
//! (`PODSWITCH_CRASH_AT`), then started again; a start also cleans up what
//! a crash inside the device's creation left. Needs root (namespaces,
//! TAP); skips otherwise.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use podswitch_tests::live::{Daemon, Netns, ip, root_or_skip, wait_reachable};

const CONFIG: &str = "[node]\nname = \"pc\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

fn tap_name(tag: &str) -> String {
    format!("ps{}{tag}", std::process::id() % 100_000)
}

fn add_pod(d: &Daemon, ns: &Netns, tag: &str) -> (i32, String) {
    let (code, out, err) = d.ctl(&[
        "port",
        "add",
        "pod-a",
        "--kind",
        "tap",
        "--ifname",
        &tap_name(tag),
        "--netns",
        &ns.path().display().to_string(),
        "--mac",
        "02:00:0a:f4:01:02",
        "--ip",
        "10.244.1.2",
    ]);
    (code, format!("{out}{err}"))
}

fn links(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (the daemon lists pod-a, the pod has its eth0).
fn port_and_tap(d: &Daemon, pod: &Netns) -> (bool, bool) {
    let listed = d.ctl_ok(&["port", "list"]).contains("pod-a");
    (listed, links(&pod.name).contains(" eth0"))
}

fn run_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("podswitch-live-{}-{tag}", std::process::id()))
}

/// Starts the daemon of `tag` (again) with `env`.
fn start(node: &Netns, tag: &str, env: &[(&str, &str)]) -> Daemon {
    let dir = run_dir(tag);
    Daemon::start_with_env(node, dir.clone(), dir.join("node.toml"), 1, &[], env)
}

#[test]
fn a_crash_between_the_store_and_the_device_leaves_port_and_tap_together() {
    if !root_or_skip("a_crash_between_the_store_and_the_device") {
        return;
    }
    let node = Netns::new("pc1-node");
    let pod = Netns::new("pc1-a");
    let peer = Netns::new("pc1-b");
    let tag = "pc1";
    std::fs::create_dir_all(run_dir(tag)).unwrap();
    std::fs::write(run_dir(tag).join("node.toml"), CONFIG).unwrap();

    // Add: the daemon dies between storing the port and making its TAP.
    let mut d = start(&node, tag, &[("PODSWITCH_CRASH_AT", "port-add")]);
    let (code, out) = add_pod(&d, &pod, "a");
    assert_ne!(code, 0, "the request dies with the daemon: {out}");
    assert!(d.wait_exit(Duration::from_secs(5)).is_some(), "it crashed");
    let mut d = start(&node, tag, &[]);
    let after_add = port_and_tap(&d, &pod);
    println!("after a crash inside an add: (port, tap) = {after_add:?}");
    assert!(
        after_add.0 == after_add.1,
        "port and TAP together or neither: {after_add:?}\n{}",
        d.log_text()
    );
    if !after_add.0 {
        assert_eq!(add_pod(&d, &pod, "a").0, 0);
    }
    // The port works: a second pod reaches it.
    let (code, out, err) = d.ctl(&[
        "port",
        "add",
        "pod-b",
        "--kind",
        "tap",
        "--ifname",
        &tap_name("b"),
        "--netns",
        &peer.path().display().to_string(),
        "--mac",
        "02:00:0a:f4:01:03",
        "--ip",
        "10.244.1.3",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(wait_reachable(
        &peer,
        "10.244.1.2".parse().unwrap(),
        Duration::from_secs(10)
    ));
    d.stop();

    // Delete: the daemon dies between the store and the device again.
    let mut d = start(&node, tag, &[("PODSWITCH_CRASH_AT", "port-delete")]);
    let (code, _, _) = d.ctl(&["port", "del", "pod-a"]);
    assert_ne!(code, 0);
    assert!(d.wait_exit(Duration::from_secs(5)).is_some(), "it crashed");
    let d = start(&node, tag, &[]);
    let after_delete = port_and_tap(&d, &pod);
    println!("after a crash inside a delete: (port, tap) = {after_delete:?}");
    assert!(
        after_delete.0 == after_delete.1,
        "no TAP left that nothing tracks: {after_delete:?}\n{}",
        d.log_text()
    );
    d.ctl_ok(&["port", "del", "pod-a"]);
    assert_eq!(port_and_tap(&d, &pod), (false, false));
    drop(d);
    let _ = std::fs::remove_dir_all(run_dir(tag));
}

#[test]
fn a_start_removes_a_tap_a_crash_left_half_made() {
    if !root_or_skip("a_start_removes_a_tap_a_crash_left_half_made") {
        return;
    }
    let node = Netns::new("pc2-node");
    let pod = Netns::new("pc2-a");
    let tag = "pc2";
    std::fs::create_dir_all(run_dir(tag)).unwrap();
    std::fs::write(run_dir(tag).join("node.toml"), CONFIG).unwrap();
    let mut d = start(&node, tag, &[]);
    assert_eq!(add_pod(&d, &pod, "a").0, 0);
    d.stop();
    // As if a crash came while the TAP was being made: it is still in the
    // node's namespace under its node-side name, not yet in the pod.
    ip(&["-n", &pod.name, "link", "del", "eth0"]);
    let name = tap_name("a");
    ip(&[
        "-n",
        &node.name,
        "tuntap",
        "add",
        "dev",
        &name,
        "mode",
        "tap",
        "multi_queue",
        "vnet_hdr",
    ]);
    let d = start(&node, tag, &[]);
    let port = d.ctl_ok(&["-o", "json", "port", "show", "pod-a"]);
    assert!(
        port.contains("\"state\": \"up\""),
        "{port}\n{}",
        d.log_text()
    );
    assert_eq!(port_and_tap(&d, &pod), (true, true));
    assert!(!links(&node.name).contains(&name), "the leftover is gone");
    drop(d);
    let _ = std::fs::remove_dir_all(run_dir(tag));
}
