//! The Kubernetes control plane harness (`podswitch_tests::k8s`) against
//! itself: the real EndpointSlice controller follows pods the test makes
//! ready and not ready, and the objects survive a killed and restarted
//! kube-apiserver; and, as root, a control plane inside a network namespace.
//! The first test needs no root. Both need the binaries that
//! `tests/k8s/build-control-plane.sh` builds (it runs when they are missing).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use podswitch_tests::k8s::{ControlPlane, Options, wait_until};
use podswitch_tests::live::{Netns, ip, root_or_skip};
use serde_json::{Value, json};

const NS: &str = "shop";
const WEB_1: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const WEB_2: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const SLICE_LIMIT: Duration = Duration::from_secs(30);

/// The (address, ready) pairs of all slices of Service `shop/web`, sorted.
fn endpoints(cp: &ControlPlane) -> Result<Vec<(String, bool)>, String> {
    let slices = cp.endpoint_slices(NS, "web").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for slice in &slices {
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            let address = ep["addresses"][0].as_str().unwrap_or_default().to_string();
            let ready = ep["conditions"]["ready"].as_bool().unwrap_or(false);
            out.push((address, ready));
        }
    }
    out.sort();
    Ok(out)
}

fn wait_endpoints(cp: &ControlPlane, want: &[(Ipv4Addr, bool)]) -> Duration {
    let want: Vec<(String, bool)> = want.iter().map(|(a, r)| (a.to_string(), *r)).collect();
    let start = Instant::now();
    wait_until(
        SLICE_LIMIT,
        &format!("slices of {NS}/web = {want:?}"),
        || {
            let got = endpoints(cp)?;
            if got == want {
                Ok(())
            } else {
                Err(format!("slices hold {got:?}"))
            }
        },
    );
    start.elapsed()
}

fn resource_version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn endpoint_slices_follow_pods_and_survive_an_apiserver_restart() {
    let start = Instant::now();
    let mut cp = ControlPlane::start();
    eprintln!(
        "control plane up in {:.1?} (kube-apiserver ready in {:.1?}) at {}",
        start.elapsed(),
        cp.apiserver_ready_time(),
        cp.url()
    );
    assert!(cp.kubeconfig_path().is_file());
    assert_eq!(cp.service_cidr(), "10.96.0.0/16");

    cp.create_namespace(NS).unwrap();
    cp.create_node("node-a", "10.244.1.0/24", Ipv4Addr::new(192, 0, 2, 10))
        .unwrap();
    let node = cp.get("/api/v1/nodes/node-a").unwrap();
    assert_eq!(node["spec"]["podCIDRs"], json!(["10.244.1.0/24"]));
    assert_eq!(node["status"]["addresses"][0]["address"], "192.0.2.10");

    let service = cp
        .create(
            &format!("/api/v1/namespaces/{NS}/services"),
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        )
        .unwrap();
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(cluster_ip.starts_with("10.96."), "clusterIP {cluster_ip}");

    for (name, ip) in [("web-1", WEB_1), ("web-2", WEB_2)] {
        cp.create_ready_pod(NS, name, &[("app", "web")], "node-a", ip)
            .unwrap();
    }
    let took = wait_endpoints(&cp, &[(WEB_1, true), (WEB_2, true)]);
    eprintln!("slice with both pods ready after {took:.1?}");
    let slice = &cp.endpoint_slices(NS, "web").unwrap()[0];
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["endpoints"][0]["nodeName"], "node-a");

    cp.set_pod_ready(NS, "web-2", false).unwrap();
    let took = wait_endpoints(&cp, &[(WEB_1, true), (WEB_2, false)]);
    eprintln!("web-2 not ready in the slice after {took:.1?}");

    let pod_path = format!("/api/v1/namespaces/{NS}/pods/web-1");
    let before = resource_version(&cp.get(&pod_path).unwrap());
    cp.stop_apiserver();
    assert!(
        cp.get(&pod_path).is_err(),
        "a killed kube-apiserver still answers"
    );
    cp.start_apiserver();
    eprintln!(
        "kube-apiserver ready again in {:.1?}",
        cp.apiserver_ready_time()
    );
    assert_eq!(resource_version(&cp.get(&pod_path).unwrap()), before);
    let service = cp
        .get(&format!("/api/v1/namespaces/{NS}/services/web"))
        .unwrap();
    assert_eq!(service["spec"]["clusterIP"], cluster_ip.as_str());
    assert_eq!(
        endpoints(&cp).unwrap(),
        [(WEB_1.to_string(), true), (WEB_2.to_string(), false)]
    );

    // The controller manager reconnected: it still follows the pods.
    cp.set_pod_ready(NS, "web-2", true).unwrap();
    let took = wait_endpoints(&cp, &[(WEB_1, true), (WEB_2, true)]);
    eprintln!("after the restart, web-2 ready again after {took:.1?}");

    // Deleted without a kubelet, web-1 stays terminating (not ready) for its
    // grace period; deleted at once, it leaves the slice.
    cp.delete(&format!("/api/v1/namespaces/{NS}/pods/web-1"))
        .unwrap();
    wait_endpoints(&cp, &[(WEB_1, false), (WEB_2, true)]);
    let slice = &cp.endpoint_slices(NS, "web").unwrap()[0];
    let web_1 = slice["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ep| ep["addresses"][0] == WEB_1.to_string().as_str())
        .unwrap();
    assert_eq!(web_1["conditions"]["terminating"], true, "{web_1}");
    cp.delete_with_grace(&format!("/api/v1/namespaces/{NS}/pods/web-1"), 0)
        .unwrap();
    wait_endpoints(&cp, &[(WEB_2, true)]);
    let err = cp
        .get(&format!("/api/v1/namespaces/{NS}/pods/nothing"))
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    eprintln!("test body took {:.1?}", start.elapsed());
}

#[test]
fn runs_in_a_network_namespace_on_its_address() {
    if !root_or_skip("runs_in_a_network_namespace_on_its_address") {
        return;
    }
    const API_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
    // Declared first, dropped last: the control plane stops before its namespace goes.
    let ns = Netns::new("kcp");
    ip(&["-n", &ns.name, "link", "add", "api0", "type", "bridge"]);
    ip(&[
        "-n",
        &ns.name,
        "addr",
        "add",
        &format!("{API_IP}/24"),
        "dev",
        "api0",
    ]);
    ip(&["-n", &ns.name, "link", "set", "api0", "up"]);
    let start = Instant::now();
    let cp = ControlPlane::start_with(Options {
        netns: Some(ns.name.clone()),
        address: API_IP,
        ..Options::default()
    });
    eprintln!(
        "control plane up in {:.1?} in {} at {}",
        start.elapsed(),
        ns.name,
        cp.url()
    );
    assert!(cp.url().starts_with("https://10.255.0.1:"), "{}", cp.url());
    assert!(
        std::fs::read_to_string(cp.kubeconfig_path())
            .unwrap()
            .contains(&format!("server: {}\n", cp.url()))
    );
    cp.create_namespace(NS).unwrap();
    assert_eq!(
        cp.get(&format!("/api/v1/namespaces/{NS}")).unwrap()["metadata"]["name"],
        NS
    );
    // Off loopback, the apiserver publishes itself as the `kubernetes` Service's endpoint.
    wait_until(
        Duration::from_secs(20),
        "default/kubernetes endpoint",
        || {
            let slices = cp
                .endpoint_slices("default", "kubernetes")
                .map_err(|e| e.to_string())?;
            let first = &slices.first().ok_or("no slice")?["endpoints"][0]["addresses"][0];
            if first == API_IP.to_string().as_str() {
                Ok(())
            } else {
                Err(format!("first address {first}"))
            }
        },
    );
}
