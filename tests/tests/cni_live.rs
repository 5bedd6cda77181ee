//! The `podswitch` CNI plugin executed directly, the way a runtime does
//! (`CNI_*` variables, the config on stdin), against a real podswitchd in
//! a node namespace, with real pod namespaces: ADD, traffic, CHECK, DEL for
//! every supported version, GC and STATUS at 1.1.0, and 64 concurrent ADDs
//! and DELs from separate plugin processes.
//! Needs root (namespaces, TAP); skips with a printed reason otherwise.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podswitch_control::client::ApiClient;
use podswitch_tests::live::{Daemon, Netns, cni_bin, root_or_skip, wait_reachable};
use podswitch_tests::workspace;

const NODE_CONFIG: &str =
    "[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

/// The plugin object of the repo's example conflist, as a runtime sends it:
/// `name` and `cniVersion` injected, socket and store pointed at this test.
fn request_config(version: &str, daemon: &Daemon) -> serde_json::Value {
    let text = std::fs::read_to_string(workspace().join("cni/10-podswitch.conflist")).unwrap();
    let list: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut plugin = list["plugins"][0].clone();
    plugin["name"] = list["name"].clone();
    plugin["cniVersion"] = version.into();
    plugin["socket"] = socket(daemon).display().to_string().into();
    plugin["ipam"]["dataDir"] = data_dir(daemon).display().to_string().into();
    plugin
}

fn socket(daemon: &Daemon) -> PathBuf {
    daemon.run_dir.join("api.sock")
}

fn data_dir(daemon: &Daemon) -> PathBuf {
    daemon.run_dir.join("ipam")
}

fn store(daemon: &Daemon) -> PathBuf {
    data_dir(daemon).join("podswitch")
}

/// Starts the plugin with `command` for (`id`, eth0) in `netns`.
fn spawn(command: &str, id: &str, netns: &str, stdin: &serde_json::Value) -> Child {
    spawn_with_args(command, id, netns, stdin, "")
}

/// As [`spawn`], with more `CNI_ARGS` (e.g. `;IP=10.244.1.3`).
fn spawn_with_args(
    command: &str,
    id: &str,
    netns: &str,
    stdin: &serde_json::Value,
    more_args: &str,
) -> Child {
    let mut child = Command::new(cni_bin())
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", if id.is_empty() { "" } else { "eth0" })
        .env("CNI_PATH", "/opt/cni/bin")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default{more_args}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CNI plugin");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.to_string().as_bytes()).unwrap();
    child
}

/// Waits for the plugin; returns (exit code, stdout, stderr).
fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().expect("wait for the CNI plugin");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn cni(command: &str, id: &str, netns: &str, stdin: &serde_json::Value) -> (i32, String, String) {
    finish(spawn(command, id, netns, stdin))
}

fn cni_ok(command: &str, id: &str, netns: &str, stdin: &serde_json::Value) -> String {
    let (code, out, err) = cni(command, id, netns, stdin);
    assert_eq!(code, 0, "{command} {id}: {out} {err}");
    out
}

fn ns_path(ns: &Netns) -> String {
    ns.path().display().to_string()
}

fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reservation files (addresses) in the store.
fn reservations(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn cni_ports(daemon: &Daemon) -> Vec<String> {
    let ports = ApiClient::new(socket(daemon))
        .get_json("/v1/ports")
        .unwrap();
    ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|n| n.starts_with("cni-"))
        .map(str::to_string)
        .collect()
}

fn address_of(result: &serde_json::Value) -> Ipv4Addr {
    let cidr = result["ips"][0]["address"].as_str().unwrap();
    cidr.split('/').next().unwrap().parse().unwrap()
}

#[test]
fn add_ping_check_del_for_each_version() {
    if !root_or_skip("add_ping_check_del_for_each_version") {
        return;
    }
    let node = Netns::new("cv-node");
    let d = Daemon::start(&node, "cv", NODE_CONFIG, 2);
    let _ = std::fs::remove_dir_all(data_dir(&d));
    for version in ["0.4.0", "1.0.0", "1.1.0"] {
        let started = Instant::now();
        let tag = version.replace('.', "");
        let a = Netns::new(&format!("cv{tag}a"));
        let b = Netns::new(&format!("cv{tag}b"));
        let conf = request_config(version, &d);
        let (id_a, id_b) = (format!("pod-a-{tag}"), format!("pod-b-{tag}"));
        let ra: serde_json::Value =
            serde_json::from_str(&cni_ok("ADD", &id_a, &ns_path(&a), &conf)).unwrap();
        let rb: serde_json::Value =
            serde_json::from_str(&cni_ok("ADD", &id_b, &ns_path(&b), &conf)).unwrap();
        println!("{version} ADD result: {ra}");
        assert_eq!(ra["cniVersion"], version);
        assert_eq!(ra["ips"][0].get("version").is_some(), version == "0.4.0");
        assert_eq!(ra["interfaces"][0]["sandbox"], ns_path(&a).as_str());
        let (ip_a, ip_b) = (address_of(&ra), address_of(&rb));
        assert_ne!(ip_a, ip_b);
        for (ns, ip) in [(&a, ip_a), (&b, ip_b)] {
            let addrs = ip_out(&["-n", &ns.name, "-o", "addr", "show", "dev", "eth0"]);
            assert!(addrs.contains(&format!("{ip}/24")), "{version}: {addrs}");
            let route = ip_out(&["-n", &ns.name, "route", "show", "default"]);
            assert!(
                route.contains("via 10.244.1.1 dev eth0"),
                "{version}: {route}"
            );
        }
        assert!(
            wait_reachable(&a, ip_b, Duration::from_secs(10)),
            "{version}: pod a reaches pod b through podswitchd: {}",
            d.log_text()
        );
        // CHECK with prevResult, as libcni builds it.
        let mut check = conf.clone();
        check["prevResult"] = ra.clone();
        cni_ok("CHECK", &id_a, &ns_path(&a), &check);
        // CHECK of b's attachment against a's result fails with a code.
        let (code, out, _) = cni("CHECK", &id_b, &ns_path(&b), &check);
        assert_ne!(code, 0, "{out}");
        // DEL: the interface and the reservation go; a second DEL (no
        // prevResult, no netns) succeeds.
        let mut del = conf.clone();
        del["prevResult"] = ra.clone();
        assert_eq!(cni_ok("DEL", &id_a, &ns_path(&a), &del), "");
        assert!(
            !ip_out(&["-n", &a.name, "-o", "link"]).contains("eth0"),
            "{version}: eth0 removed from pod a"
        );
        assert!(!reservations(&store(&d)).contains(&ip_a.to_string()));
        cni_ok("DEL", &id_a, "", &conf);
        cni_ok("DEL", &id_a, &ns_path(&a), &conf);
        // b: its namespace is deleted first, then DEL (the runtime's order after a crash).
        drop(b);
        cni_ok("DEL", &id_b, "/var/run/netns/gone-already", &conf);
        assert!(reservations(&store(&d)).is_empty());
        assert!(cni_ports(&d).is_empty());
        println!(
            "{version}: ADD x2, ping, CHECK, DEL x4 in {:?}",
            started.elapsed()
        );
    }
    let _ = std::fs::remove_dir_all(&d.run_dir);
}

#[test]
fn gc_and_status_at_1_1_0() {
    if !root_or_skip("gc_and_status_at_1_1_0") {
        return;
    }
    let node = Netns::new("cg-node");
    let mut d = Daemon::start(&node, "cg", NODE_CONFIG, 2);
    let _ = std::fs::remove_dir_all(data_dir(&d));
    let conf = request_config("1.1.0", &d);
    let keep = Netns::new("cgkeep");
    let stale = Netns::new("cgstale");
    cni_ok("ADD", "keep", &ns_path(&keep), &conf);
    cni_ok("ADD", "stale", &ns_path(&stale), &conf);
    assert_eq!(cni_ports(&d).len(), 2);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "keep", "ifname": "eth0"}]);
    cni_ok("GC", "", "", &gc);
    assert_eq!(
        cni_ports(&d),
        vec![podswitch_cni::attach::port_name("keep", "eth0")]
    );
    assert_eq!(reservations(&store(&d)).len(), 1);
    assert!(ip_out(&["-n", &keep.name, "-o", "link"]).contains("eth0"));
    assert!(!ip_out(&["-n", &stale.name, "-o", "link"]).contains("eth0"));
    cni_ok("STATUS", "", "", &conf);
    cni_ok("DEL", "keep", &ns_path(&keep), &conf);
    d.stop();
    let (code, out, _) = cni("STATUS", "", "", &conf);
    assert_eq!(code, 1);
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(e["code"], 50, "{e}");
    assert_eq!(e["cniVersion"], "1.1.0");
    let _ = std::fs::remove_dir_all(&d.run_dir);
}

#[test]
fn sixty_four_concurrent_adds_and_dels() {
    if !root_or_skip("sixty_four_concurrent_adds_and_dels") {
        return;
    }
    const PODS: usize = 64;
    let node = Netns::new("cc-node");
    let d = Daemon::start(&node, "cc", NODE_CONFIG, 2);
    let _ = std::fs::remove_dir_all(data_dir(&d));
    let conf = request_config("1.0.0", &d);
    let started = Instant::now();
    let pods: Vec<Netns> = (0..PODS).map(|i| Netns::new(&format!("cc{i}"))).collect();
    let netns_time = started.elapsed();

    let started = Instant::now();
    let children: Vec<Child> = pods
        .iter()
        .enumerate()
        .map(|(i, ns)| spawn("ADD", &format!("conc-{i}"), &ns_path(ns), &conf))
        .collect();
    let mut addresses = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let (code, out, err) = finish(child);
        assert_eq!(code, 0, "ADD conc-{i}: {out} {err}");
        let result: serde_json::Value = serde_json::from_str(&out).unwrap();
        addresses.push(address_of(&result));
    }
    let add_time = started.elapsed();
    let unique: std::collections::HashSet<_> = addresses.iter().collect();
    assert_eq!(unique.len(), PODS, "unique addresses");
    assert_eq!(reservations(&store(&d)).len(), PODS);
    assert_eq!(cni_ports(&d).len(), PODS);
    assert!(
        wait_reachable(&pods[0], addresses[PODS - 1], Duration::from_secs(10)),
        "first pod reaches the last: {}",
        d.log_text()
    );

    let started = Instant::now();
    let children: Vec<Child> = pods
        .iter()
        .enumerate()
        .map(|(i, ns)| spawn("DEL", &format!("conc-{i}"), &ns_path(ns), &conf))
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let (code, out, err) = finish(child);
        assert_eq!(code, 0, "DEL conc-{i}: {out} {err}");
    }
    let del_time = started.elapsed();
    assert!(reservations(&store(&d)).is_empty(), "no reservation left");
    assert!(cni_ports(&d).is_empty(), "no port left in the daemon");
    println!(
        "{PODS} pods: namespaces {netns_time:?}, parallel ADD {add_time:?}, parallel DEL {del_time:?}"
    );
    assert!(
        add_time < Duration::from_secs(120) && del_time < Duration::from_secs(120),
        "bounded: ADD {add_time:?}, DEL {del_time:?}"
    );
    drop(pods);
    let _ = std::fs::remove_dir_all(&d.run_dir);
}

#[test]
fn an_address_a_port_already_holds_is_never_handed_out() {
    if !root_or_skip("an_address_a_port_already_holds_is_never_handed_out") {
        return;
    }
    let node = Netns::new("ch-node");
    let d = Daemon::start(&node, "ch", NODE_CONFIG, 1);
    let _ = std::fs::remove_dir_all(data_dir(&d));
    // A port made by hand (not through the plugin) on the range's first
    // two addresses: the range overlaps it.
    let manual = Netns::new("ch-manual");
    let netns = ns_path(&manual);
    let ifname = format!("ps{}ch", std::process::id() % 100_000);
    d.ctl_ok(&[
        "port",
        "add",
        "manual",
        "--kind",
        "tap",
        "--ifname",
        &ifname,
        "--netns",
        &netns,
        "--mac",
        "02:00:0a:f4:01:fe",
        "--ip",
        "10.244.1.2",
        "--ip",
        "10.244.1.3",
    ]);
    let pod = Netns::new("ch-pod");
    let conf = request_config("1.1.0", &d);
    let out = cni_ok("ADD", "pod-ch", &ns_path(&pod), &conf);
    let result: serde_json::Value = serde_json::from_str(&out).unwrap();
    let given = address_of(&result);
    assert_eq!(given, Ipv4Addr::new(10, 244, 1, 4), "{out}");
    // Asked for by name, a port's address is a conflict, not handed out.
    let other = Netns::new("ch-other");
    let child = spawn_with_args("ADD", "pod-ch2", &ns_path(&other), &conf, ";IP=10.244.1.3");
    let (code, out, _) = finish(child);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("10.244.1.3") && out.contains("port manual"),
        "{out}"
    );
    assert_eq!(reservations(&store(&d)), ["10.244.1.4"]);
    cni_ok("DEL", "pod-ch", &ns_path(&pod), &conf);
    let _ = std::fs::remove_dir_all(&d.run_dir);
}

/// The container ID of every reservation file in `dir`.
fn reservation_owners(dir: &Path) -> std::collections::BTreeSet<String> {
    reservations(dir)
        .iter()
        .filter_map(|ip| std::fs::read_to_string(dir.join(ip)).ok())
        .filter_map(|text| text.lines().next().map(str::to_string))
        .collect()
}

#[test]
fn adds_whose_answer_is_lost_leave_port_and_address_together() {
    if !root_or_skip("adds_whose_answer_is_lost_leave_port_and_address_together") {
        return;
    }
    const PODS: usize = 48;
    let node = Netns::new("cl-node");
    let run_dir = std::env::temp_dir().join(format!("podswitch-live-{}-cl", std::process::id()));
    std::fs::create_dir_all(&run_dir).unwrap();
    let config = run_dir.join("node.toml");
    std::fs::write(&config, NODE_CONFIG).unwrap();
    // The daemon dies after it has added a port and before it answers.
    let crash = [("PODSWITCH_CRASH_AT", "port-added")];
    let mut d = Daemon::start_with_env(&node, run_dir.clone(), config.clone(), 2, &[], &crash);
    let _ = std::fs::remove_dir_all(data_dir(&d));
    let conf = request_config("1.0.0", &d);
    let pods: Vec<Netns> = (0..PODS).map(|i| Netns::new(&format!("cl{i}"))).collect();
    let ids: Vec<String> = (0..PODS).map(|i| format!("lost-{i}")).collect();
    let children: Vec<Child> = pods
        .iter()
        .zip(&ids)
        .map(|(ns, id)| spawn("ADD", id, &ns_path(ns), &conf))
        .collect();
    assert!(
        d.wait_exit(Duration::from_secs(20)).is_some(),
        "the daemon crashed: {}",
        d.log_text()
    );
    // systemd would start it again 100 ms later.
    std::thread::sleep(Duration::from_millis(100));
    let d = Daemon::start_with(&node, run_dir.clone(), config, 2);
    let mut failed = 0;
    for (id, child) in ids.iter().zip(children) {
        let (code, out, err) = finish(child);
        if code != 0 {
            failed += 1;
            println!("ADD {id}: {out} {err}");
        }
    }
    let ports: std::collections::BTreeSet<String> = cni_ports(&d).into_iter().collect();
    let owners = reservation_owners(&store(&d));
    println!(
        "{PODS} ADDs with a crash among them: {failed} failed, {} ports, {} reservations after the restart",
        ports.len(),
        owners.len()
    );
    assert!(failed > 0, "the crash failed some ADDs");
    for id in &ids {
        let port = ports.contains(&podswitch_cni::attach::port_name(id, "eth0"));
        assert_eq!(
            port,
            owners.contains(id),
            "{id}: port {port}, reservation {}\n{}",
            owners.contains(id),
            d.log_text()
        );
    }
    for (ns, id) in pods.iter().zip(&ids) {
        cni_ok("DEL", id, &ns_path(ns), &conf);
    }
    assert!(cni_ports(&d).is_empty() && reservations(&store(&d)).is_empty());
    drop(pods);
    let _ = std::fs::remove_dir_all(&run_dir);
}
