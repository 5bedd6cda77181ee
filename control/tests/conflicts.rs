//! Address conflicts refused with 409, as docs/api.md promises: a port
//! with another port's IP or MAC (or the switch's own MAC), a cluster IP
//! that is the gateway's, the uplink's or a pod's address, and the same
//! clashes reached from the other side (a port on a cluster IP, the
//! gateway moved onto one). Each refusal changes nothing. The ports are
//! refused before any device is opened (their netns does not even exist).

use std::path::Path;

use axum::Router;
use podswitch_control::api::{self, Api};
use podswitch_control::control::Control;
use podswitch_control::store::Store;
use podswitch_dataplane::config::NodeConfig;
use serde_json::{Value, json};

mod common;
use common::call_json as call;

const CONFIG: &str = r#"
[node]
name = "conflicts"
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[uplink]
port = "up0"
address = "192.168.100.1/24"
mac = "02:00:c0:a8:64:01"
[[ports]]
name = "pod-a"
kind = "tap"
mac = "02:00:0a:f4:01:02"
ips = ["10.244.1.2"]
[[ports]]
name = "up0"
kind = "afpacket"
"#;

fn app(dir: &Path) -> Router {
    let file = NodeConfig::from_toml_str(CONFIG).unwrap();
    let control = Control::restore(file, Store::open(dir).unwrap()).unwrap().0;
    api::router(Api::new(control))
}

/// A port in a namespace that does not exist: opening it would fail, so
/// only a check made before opening can answer 409.
fn port(name: &str, mac: &str, ip: &str) -> Value {
    json!({"name": name, "kind": "tap", "netns": "/nonexistent/netns", "mac": mac, "ips": [ip]})
}

fn service(name: &str, cluster_ip: &str) -> Value {
    json!({"name": name, "cluster_ip": cluster_ip, "ports": [{"port": 80}]})
}

async fn stored(app: &Router) -> Vec<Value> {
    let mut out = Vec::new();
    for path in ["/v1/ports", "/v1/services", "/v1/node"] {
        let (status, mut v) = call(app, "GET", path, None).await;
        assert_eq!(status, 200);
        for p in v["ports"].as_array_mut().into_iter().flatten() {
            p.as_object_mut().map(|o| o.remove("counters"));
        }
        out.push(v);
    }
    out
}

async fn refused(app: &Router, method: &str, path: &str, body: Value, message: &str) {
    let before = stored(app).await;
    let (status, v) = call(app, method, path, Some(body)).await;
    assert_eq!((status, v["error"].as_str()), (409, Some(message)), "{v}");
    assert_eq!(stored(app).await, before, "{method} {path} changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_with_another_ports_address_or_mac_is_refused() {
    let dir = common::temp_dir("conflicts", "ports");
    let app = app(&dir);
    let other_mac = "02:00:0a:f4:01:03";
    refused(
        &app,
        "POST",
        "/v1/ports",
        port("pod-b", other_mac, "10.244.1.2"),
        "ips = 10.244.1.2: already the address of port pod-a",
    )
    .await;
    refused(
        &app,
        "POST",
        "/v1/ports",
        port("pod-b", "02:00:0a:f4:01:02", "10.244.1.3"),
        "mac = 02:00:0a:f4:01:02: already the MAC of port pod-a",
    )
    .await;
    for (mac, whose) in [
        ("02:00:0a:f4:01:01", "the gateway"),
        ("02:00:c0:a8:64:01", "the uplink"),
    ] {
        refused(
            &app,
            "POST",
            "/v1/ports",
            port("pod-b", mac, "10.244.1.3"),
            &format!("mac = {mac}: already the MAC of {whose}"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_ip_on_a_node_or_pod_address_is_refused_from_either_side() {
    let dir = common::temp_dir("conflicts", "services");
    let app = app(&dir);
    for (ip, whose) in [
        ("10.244.1.1", "the gateway"),
        ("192.168.100.1", "the uplink"),
        ("10.244.1.2", "port pod-a"),
    ] {
        refused(
            &app,
            "POST",
            "/v1/services",
            service("default/web", ip),
            &format!("cluster_ip = {ip}: already the address of {whose}"),
        )
        .await;
        refused(
            &app,
            "PUT",
            "/v1/state",
            json!({"services": [service("default/ok", "10.96.0.9"), service("default/web", ip)]}),
            &format!("services[1].cluster_ip = {ip}: already the address of {whose}"),
        )
        .await;
    }
    // A cluster IP inside the pod subnet, then a port or the gateway onto it.
    let (status, v) = call(
        &app,
        "POST",
        "/v1/services",
        Some(service("default/odd", "10.244.1.50")),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    refused(
        &app,
        "POST",
        "/v1/ports",
        port("pod-b", "02:00:0a:f4:01:03", "10.244.1.50"),
        "ips = 10.244.1.50: already the cluster IP of service default/odd",
    )
    .await;
    refused(
        &app,
        "PUT",
        "/v1/node",
        json!({"gateway": "10.244.1.50/24", "gateway_mac": "02:00:0a:f4:01:01",
               "uplink": {"port": "up0", "address": "192.168.100.1/24", "mac": "02:00:c0:a8:64:01"}}),
        "gateway = 10.244.1.50: already the cluster IP of service default/odd",
    )
    .await;
}
