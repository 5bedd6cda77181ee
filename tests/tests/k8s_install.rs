//! The install manifests (`deploy/podswitch-daemonset.yaml`) against a real
//! kube-apiserver (`tests/k8s.rs`) and the `kubectl` of the same release:
//!
//! - `kubectl apply --dry-run=server` accepts every object (with strict
//!   field validation: a misspelt field is refused, which the test checks
//!   too), and the DaemonSet agrees with itself and with what the daemon
//!   needs (metrics port and annotations, host paths, downward API), and
//!   updates by surge without a host port, so a takeover can happen;
//! - applied for real, the ServiceAccount's token is enough for podswitchd
//!   `--kubernetes` and nothing more: started with it and the ConfigMap's
//!   settings file, podswitchd waits for its Node's pod CIDR, takes the pod
//!   subnet, gateway and uplink from its Node and its interfaces, follows
//!   Services and Nodes, annotates its Node, serves metrics over TCP, and a
//!   pod attached through the CNI plugin gets an address of that subnet.
//!
//! The first test needs no root, the second does (namespaces, TAP,
//! AF_PACKET); both need the binaries `tests/k8s/build-control-plane.sh`
//! builds (it runs when they are missing).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use podswitch_control::node_config::{Completion, UplinkInterface, complete};
use podswitch_tests::k8s::{ControlPlane, Kubectl, Options, wait_until};
use podswitch_tests::live::{Daemon, Netns, cni_add, ip, root_or_skip, veth, wait_reachable};
use podswitch_tests::workspace;
use serde_json::{Value, json};

const MANIFEST: &str = "deploy/podswitch-daemonset.yaml";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:kube-system:podswitch";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const POD_CIDR: &str = "10.244.1.0/24";
const METRICS_PORT: u16 = 9612;

fn manifest() -> String {
    workspace().join(MANIFEST).display().to_string()
}

/// The objects of the manifest as the API server would store them.
fn dry_run(kubectl: &Kubectl, file: &str) -> Vec<Value> {
    let out = kubectl.ok(&["apply", "--dry-run=server", "-o", "json", "-f", file]);
    let list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    match list["kind"].as_str() {
        Some("List") => list["items"].as_array().unwrap().clone(),
        _ => vec![list],
    }
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {MANIFEST}"))
}

/// The ClusterRole's rules as (API group, resource, verbs) triples, sorted.
fn rules(role: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let mut verbs = strings(&rule["verbs"]);
        verbs.sort();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.push((group.clone(), resource, verbs.clone()));
            }
        }
    }
    out.sort();
    out
}

/// The DaemonSet's parts that must agree with the daemon and with each other.
fn check_daemonset(ds: &Value) {
    let pod = &ds["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "podswitch");
    assert_eq!(spec["hostNetwork"], true);
    assert_ne!(spec["hostPID"], true, "--host-proc is for hostPID: false");
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], METRICS_PORT.to_string());
    let daemon = &spec["containers"][0];
    let args: Vec<&str> = daemon["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--kubernetes"), "{args:?}");
    let metrics = format!("--metrics-listen=$(POD_IP):{METRICS_PORT}");
    assert!(args.contains(&metrics.as_str()), "{args:?}");
    // An update is a takeover: the new pod starts beside the old one, so
    // nothing may claim a host port (on hostNetwork every declared
    // containerPort is one); metrics are found by the annotations.
    let update = &ds["spec"]["updateStrategy"];
    assert_eq!(update["type"], "RollingUpdate");
    assert_eq!(update["rollingUpdate"]["maxSurge"], 1, "{update}");
    assert_eq!(update["rollingUpdate"]["maxUnavailable"], 0, "{update}");
    for container in spec["containers"].as_array().unwrap() {
        assert!(container["ports"].is_null(), "{}", container["ports"]);
    }
    let command: Vec<&str> = daemon["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        command,
        [
            "/opt/podswitch/podswitchd-entrypoint.sh",
            "/usr/local/bin/podswitchd"
        ]
    );
    assert_eq!(args[0], "run", "{args:?}");
    assert!(!args.contains(&"--takeover"), "the entrypoint decides");
    let env = |name: &str| -> &Value {
        let vars = daemon["env"].as_array().unwrap();
        vars.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the daemon's env"))
    };
    assert_eq!(
        env("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(
        env("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    let requests = &daemon["resources"]["requests"];
    assert!(requests["cpu"].is_string() && requests["memory"].is_string());
    // Each host path the daemon needs, at the path its arguments name.
    let volumes = spec["volumes"].as_array().unwrap();
    let mounts = daemon["volumeMounts"].as_array().unwrap();
    let mounted = |host: &str| -> String {
        let volume = volumes
            .iter()
            .find(|v| v["hostPath"]["path"] == host)
            .unwrap_or_else(|| panic!("no hostPath volume for {host}"));
        let mount = mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("hostPath {host} not mounted in podswitchd"));
        mount["mountPath"].as_str().unwrap().to_string()
    };
    for netns in ["/run/netns", "/var/run/netns"] {
        assert_eq!(mounted(netns), netns);
    }
    let host_proc = format!("--host-proc={}", mounted("/proc"));
    assert!(args.contains(&host_proc.as_str()), "{args:?}");
    assert_eq!(mounted("/run/podswitch"), "/run/podswitch");
    assert_eq!(mounted("/var/lib/podswitch"), "/var/lib/podswitch");
}

#[test]
fn the_manifests_are_accepted_by_the_api_server() {
    let cp = ControlPlane::start_with(Options {
        controllers: Vec::new(),
        ..Options::default()
    });
    let kubectl = cp.kubectl();
    let objects = dry_run(&kubectl, &manifest());
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet"
        ]
    );
    // Server-side defaults show the API server, not kubectl, took them.
    let ds = of_kind(&objects, "DaemonSet");
    assert_eq!(
        ds["spec"]["template"]["spec"]["schedulerName"],
        "default-scheduler"
    );
    check_daemonset(ds);
    let role = of_kind(&objects, "ClusterRole");
    let verbs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules(role),
        vec![
            (
                String::new(),
                "nodes".into(),
                verbs(&["get", "list", "patch", "watch"])
            ),
            (String::new(), "services".into(), verbs(&["list", "watch"])),
            (
                "discovery.k8s.io".into(),
                "endpointslices".into(),
                verbs(&["list", "watch"])
            ),
        ]
    );
    let config = of_kind(&objects, "ConfigMap");
    let toml = config["data"]["node.toml"].as_str().unwrap();
    let settings: toml::Table = toml.parse().unwrap();
    for per_node in ["node", "bridge", "uplink", "ports"] {
        assert!(
            !settings.contains_key(per_node),
            "the shared settings carry [{per_node}]"
        );
    }
    // Completed with one node's settings, they make a valid node.
    let completion = Completion {
        node_name: Some("node-a".into()),
        pod_cidr: Some(POD_CIDR.parse().unwrap()),
        uplink: Some(UplinkInterface {
            name: "eth0".into(),
            address: format!("{NODE_IP}/24").parse().unwrap(),
            mac: "52:54:00:12:34:56".parse().unwrap(),
        }),
    };
    let node = complete(settings, &completion).unwrap();
    podswitch_dataplane::config::Snapshot::build(&node, 1).unwrap();

    // The check has teeth: a misspelt field is refused by the server.
    let broken = cp.dir().join("broken.yaml");
    let text = std::fs::read_to_string(manifest()).unwrap();
    assert!(text.contains("hostNetwork: true"));
    std::fs::write(
        &broken,
        text.replace("hostNetwork: true", "hostNetwrk: true"),
    )
    .unwrap();
    let refused = kubectl.run(&["apply", "--dry-run=server", "-f", broken.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("hostNetwrk"),
        "a misspelt field was accepted: {stderr}"
    );
}

/// The node: `up0` (kernel address NODE_IP/24) to an `ext` namespace.
fn node_with_uplink(tag: &str) -> (Netns, Netns) {
    let node = Netns::new(&format!("{tag}-node"));
    let ext = Netns::new(&format!("{tag}-ext"));
    veth("up0", &node, "eth0", &ext);
    ip(&[
        "-n",
        &node.name,
        "addr",
        "add",
        &format!("{NODE_IP}/24"),
        "dev",
        "up0",
    ]);
    (node, ext)
}

fn link_mac(ns: &Netns, ifname: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "-j", "link", "show", ifname])
        .output()
        .unwrap();
    let links: Value = serde_json::from_slice(&out.stdout).unwrap();
    links[0]["address"].as_str().unwrap().to_string()
}

/// GET /metrics at `addr:port` from inside `ns`: the body.
fn scrape(ns: &Netns, addr: Ipv4Addr, port: u16) -> String {
    ns.run(move || {
        let mut s = TcpStream::connect((addr, port)).expect("metrics listener");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    })
}

/// The node's settings file from the applied ConfigMap.
fn shared_settings(kubectl: &Kubectl, path: &Path) {
    let out = kubectl.ok(&[
        "get",
        "configmap",
        "podswitch-config",
        "-n",
        "kube-system",
        "-o",
        "json",
    ]);
    let config: Value = serde_json::from_str(&out).unwrap();
    std::fs::write(path, config["data"]["node.toml"].as_str().unwrap()).unwrap();
}

/// Gives node-a its pod CIDR once podswitchd says it waits for it (as
/// kube-controller-manager's node IPAM would, a little after registration).
fn allocate_pod_cidr_when_waited_for(kubectl: Kubectl, log: std::path::PathBuf) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("waiting for this node's Node") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let patch = json!({"spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]}}).to_string();
        kubectl.ok(&["patch", "node", "node-a", "--type=merge", "-p", &patch]);
    });
}

#[test]
fn the_service_accounts_rights_run_podswitchd_with_settings_from_its_node() {
    if !root_or_skip("the_service_accounts_rights_run_podswitchd_with_settings_from_its_node") {
        return;
    }
    let (node, _ext) = node_with_uplink("ki");
    let cp = ControlPlane::start_with(Options {
        netns: Some(node.name.clone()),
        controllers: Vec::new(),
        ..Options::default()
    });
    let admin = cp.kubectl();
    admin.ok(&["apply", "-f", &manifest()]);
    let token = admin.ok(&["create", "token", "podswitch", "-n", "kube-system"]);
    let account = admin.as_user(cp.kubeconfig_with_token("podswitch", token.trim()));
    for (verb, resource, allowed) in [
        ("watch", "services", "yes"),
        ("list", "endpointslices.discovery.k8s.io", "yes"),
        ("patch", "nodes", "yes"),
        ("list", "pods", "no"),
        ("get", "secrets", "no"),
        ("delete", "nodes", "no"),
        ("update", "services", "no"),
    ] {
        let out = account.run(&["auth", "can-i", verb, resource]);
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            answer.trim(),
            allowed,
            "{SERVICE_ACCOUNT} may {verb} {resource}"
        );
    }
    cp.create_node_with("node-a", None, NODE_IP).unwrap();
    cp.create_node("node-b", "10.244.2.0/24", Ipv4Addr::new(192, 168, 50, 3))
        .unwrap();

    let run_dir =
        std::env::temp_dir().join(format!("podswitch-k8s-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let config = run_dir.join("node.toml");
    shared_settings(&admin, &config);
    allocate_pod_cidr_when_waited_for(admin.clone(), run_dir.join("daemon.log"));
    let kubeconfig = account.kubeconfig.display().to_string();
    let metrics = format!("{NODE_IP}:{METRICS_PORT}");
    let daemon = Daemon::start_with_args(
        &node,
        run_dir.clone(),
        config,
        1,
        &[
            "--kubernetes",
            "--kubeconfig",
            &kubeconfig,
            "--node-name",
            "node-a",
            "--metrics-listen",
            &metrics,
        ],
    );
    let log = daemon.log_text();
    assert!(
        log.contains("waiting for this node's Node: node node-a has no IPv4 spec.podCIDR"),
        "{log}"
    );

    let shown: Value =
        serde_json::from_str(&daemon.ctl_ok(&["-o", "json", "node", "show"])).unwrap();
    assert_eq!(shown["name"], "node-a");
    assert_eq!(shown["gateway"], "10.244.1.1/24");
    assert_eq!(shown["gateway_mac"], "02:00:0a:f4:01:01");
    assert_eq!(shown["uplink"]["port"], "up0");
    assert_eq!(shown["uplink"]["address"], format!("{NODE_IP}/24"));
    assert_eq!(shown["uplink"]["mac"], link_mac(&node, "up0"));

    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    cp.create("/api/v1/namespaces/default/services", &svc)
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "podswitchd follows the cluster",
        || {
            let (_, out, _) = daemon.ctl(&["-o", "json", "status"]);
            let status: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let source = &status["health"]["source"];
            let services = daemon.ctl(&["service", "list"]).1;
            let peers = daemon.ctl(&["node", "list"]).1;
            if source["state"] == "synced"
                && services.contains("default/web")
                && peers.contains("node-b")
            {
                Ok(())
            } else {
                Err(format!("{source}\n{services}\n{peers}"))
            }
        },
    );
    let annotated = wait_until(Duration::from_secs(20), "node-a annotated", || {
        let n = cp.get("/api/v1/nodes/node-a").map_err(|e| e.to_string())?;
        n["metadata"]["annotations"]["podswitch.io/vtep-mac"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| n["metadata"].to_string())
    });
    assert_eq!(annotated, "02:56:c0:a8:32:02");
    let (_, status, _) = daemon.ctl(&["-o", "json", "status"]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        status["health"]["source"]["watch_errors"],
        0,
        "a watch was refused: {status}\n{}",
        daemon.log_text()
    );

    let body = scrape(&node, NODE_IP, METRICS_PORT);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("podswitch_kubernetes_watch_restarts_total 0"),
        "{body}"
    );

    let pod = Netns::new("ki-pod");
    let addr = cni_add(&daemon, &pod, None);
    assert!(
        POD_CIDR
            .parse::<podswitch_dataplane::config::Ipv4Cidr>()
            .unwrap()
            .contains(addr),
        "{addr} outside {POD_CIDR}"
    );
    assert!(wait_reachable(
        &pod,
        Ipv4Addr::new(10, 244, 1, 1),
        Duration::from_secs(10)
    ));
    drop(daemon);
    let _ = std::fs::remove_dir_all(&run_dir);
}
