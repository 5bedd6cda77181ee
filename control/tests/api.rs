//! The control API in-process (router calls) and over a real Unix socket:
//! every stored resource's create/list/get/delete, bad inputs answered with
//! the right status and a message naming the field (state unchanged after
//! each), declarative apply, persistence across a restart, concurrent
//! clients, and refusal of non-root peers. Ports need real devices and are
//! covered by the live tests in `tests/tests/api_live.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use podswitch_control::api::{self, Api, RootOnlyListener};
use podswitch_control::control::Control;
use podswitch_control::store::Store;
use podswitch_dataplane::config::NodeConfig;
use serde_json::{Value, json};

mod common;
use common::{TempDir, call};

const CONFIG: &str = r#"
[node]
name = "api-test"
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
[[ports]]
name = "up0"
kind = "afpacket"
[[routes]]
prefix = "10.244.9.0/24"
via = "192.168.100.9"
"#;

fn temp_dir(tag: &str) -> TempDir {
    common::temp_dir("api", tag)
}

fn control(dir: &Path) -> Control {
    let file = NodeConfig::from_toml_str(CONFIG).unwrap();
    Control::restore(file, Store::open(dir).unwrap()).unwrap().0
}

fn app(dir: &Path) -> Router {
    api::router(Api::new(control(dir)))
}

async fn post(app: &Router, path: &str, v: Value) -> (u16, Value) {
    call(app, "POST", path, Some(("application/json", v.to_string()))).await
}

fn web() -> Value {
    json!({"name": "default/web", "cluster_ip": "10.96.0.10",
           "ports": [{"name": "http", "protocol": "TCP", "port": 80, "target_port": 8080, "node_port": 30080}]})
}

/// A service named `default/{name}` on cluster IP 10.96.0.`{ip}`.
fn named(name: &str, ip: u8) -> Value {
    json!({"name": format!("default/{name}"), "cluster_ip": format!("10.96.0.{ip}"),
           "ports": [{"port": 80}]})
}

/// Everything the API serves about stored resources.
async fn everything(app: &Router) -> Value {
    let mut all = serde_json::Map::new();
    for p in [
        "/v1/services",
        "/v1/nodes",
        "/v1/mirrors",
        "/v1/routes",
        "/v1/node",
        "/v1/ports",
    ] {
        let (status, mut v) = call(app, "GET", p, None).await;
        assert_eq!(status, 200, "{p}");
        strip_counters(&mut v);
        all.insert(p.to_string(), v);
    }
    Value::Object(all)
}

fn strip_counters(v: &mut Value) {
    if let Some(ports) = v.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(o) = p.as_object_mut() {
                o.remove("counters");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_endpoints_crud() {
    let dir = temp_dir("svc");
    let app = app(&dir);
    let (s, v) = post(&app, "/v1/services", web()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["ports"][0]["target_port"], 8080);
    assert_eq!(v["session_affinity"], "None");
    let (s, v) = call(&app, "GET", "/v1/services", None).await;
    assert_eq!((s, v["services"].as_array().unwrap().len()), (200, 1));
    let (s, v) = call(&app, "GET", "/v1/services/default/web", None).await;
    assert_eq!((s, v["cluster_ip"].as_str()), (200, Some("10.96.0.10")));
    let (s, _) = post(
        &app,
        "/v1/services/default/web/endpoints",
        json!({"address": "10.244.1.5", "node": "node-a"}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = post(
        &app,
        "/v1/services/default/web/endpoints",
        json!({"address": "10.244.2.7", "ready": false}),
    )
    .await;
    assert_eq!(s, 201);
    let (_, v) = call(&app, "GET", "/v1/services/default/web/endpoints", None).await;
    assert_eq!(v["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(v["endpoints"][1]["ready"], false);
    let (s, _) = call(
        &app,
        "DELETE",
        "/v1/services/default/web/endpoints/10.244.1.5",
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/services/default/web/endpoints",
        Some((
            "application/json",
            json!({"endpoints": [{"address": "10.244.1.8", "terminating": true}]}).to_string(),
        )),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["endpoints"][0]["terminating"], true);
    assert!(v["generation"].as_u64().unwrap() > 1);
    let (s, _) = call(&app, "DELETE", "/v1/services/default/web", None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&app, "GET", "/v1/services/default/web", None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&app, "DELETE", "/v1/services/default/web", None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_mirrors_routes_and_node_addressing_crud() {
    let dir = temp_dir("misc");
    let app = app(&dir);
    let (s, v) = post(&app, "/v1/nodes", json!({"name": "node-b", "node_ip": "192.168.100.2", "pod_cidr": "10.244.2.0/24", "vni": 42})).await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = call(&app, "GET", "/v1/nodes/node-b", None).await;
    assert_eq!(v["vni"], 42);
    assert_eq!(
        call(&app, "GET", "/v1/nodes", None).await.1["nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(call(&app, "DELETE", "/v1/nodes/node-b", None).await.0, 204);
    assert_eq!(call(&app, "GET", "/v1/nodes/node-b", None).await.0, 404);

    let (s, v) = post(&app, "/v1/mirrors", json!({"name": "m1", "ports": ["pod-a"], "stage": "drop", "filter": "tcp port 80", "iface": "psmirror0"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        call(&app, "GET", "/v1/mirrors/m1", None).await.1["stage"],
        "drop"
    );
    assert_eq!(
        call(&app, "GET", "/v1/mirrors", None).await.1["mirrors"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(call(&app, "DELETE", "/v1/mirrors/m1", None).await.0, 204);

    let (s, v) = post(
        &app,
        "/v1/routes",
        json!({"prefix": "10.244.3.0/24", "via": "192.168.100.3"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = call(&app, "GET", "/v1/routes", None).await;
    let sources: Vec<(&str, &str)> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["prefix"].as_str().unwrap(), r["source"].as_str().unwrap()))
        .collect();
    assert!(
        sources.contains(&("10.244.1.0/24", "connected")),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("10.244.9.0/24", "config")),
        "{sources:?}"
    );
    assert!(sources.contains(&("10.244.3.0/24", "api")), "{sources:?}");
    assert_eq!(
        call(&app, "DELETE", "/v1/routes/10.244.3.0/24", None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&app, "DELETE", "/v1/routes/10.244.9.0/24", None)
            .await
            .0,
        409,
        "config routes stay"
    );

    let (s, v) = call(&app, "PUT", "/v1/node", Some(("application/json", json!({"gateway": "10.244.1.1/24", "gateway_mac": "02:00:0a:f4:01:99", "uplink": {"port": "up0", "address": "192.168.100.1/24", "mac": "02:00:c0:a8:64:01"}}).to_string()))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["gateway_mac"], "02:00:0a:f4:01:99");
    let (_, v) = call(&app, "GET", "/v1/config", None).await;
    assert!(v["generation"].as_u64().unwrap() >= 6, "{v}");
    let (s, v) = call(&app, "GET", "/v1/ports/pod-a", None).await;
    assert_eq!(
        (s, v["source"].as_str(), v["id"].as_u64()),
        (200, Some("config"), Some(0))
    );
    assert_eq!(
        call(&app, "DELETE", "/v1/ports/pod-a", None).await.0,
        409,
        "config ports stay"
    );
    assert_eq!(call(&app, "DELETE", "/v1/ports/nope", None).await.0, 404);
}

/// (method, path, body with its content type, expected status, text the error must contain)
type Case<'a> = (&'a str, &'a str, Option<(&'a str, String)>, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_name_the_field_and_change_nothing() {
    let dir = temp_dir("bad");
    let app = app(&dir);
    assert_eq!(post(&app, "/v1/services", web()).await.0, 201);
    assert_eq!(
        post(
            &app,
            "/v1/nodes",
            json!({"name": "node-b", "node_ip": "192.168.100.2", "pod_cidr": "10.244.2.0/24"})
        )
        .await
        .0,
        201
    );
    let before = everything(&app).await;
    let svc = |patch: Value| {
        let mut v = web();
        v["name"] = json!("default/other");
        v["cluster_ip"] = json!("10.96.0.11");
        v["ports"][0]["node_port"] = json!(30081);
        for (k, val) in patch.as_object().unwrap() {
            if let Some(p) = k.strip_prefix("port.") {
                v["ports"][0][p] = val.clone();
            } else {
                v[k] = val.clone();
            }
        }
        v.to_string()
    };
    let json_ct = "application/json";
    let cases: Vec<Case> = vec![
        ("POST", "/v1/services", Some((json_ct, "{not json".into())), 400, "invalid JSON body"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"port.port": "80"})))), 400, "ports[0].port"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"colour": "red"})))), 400, "colour"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"port.port": 70000})))), 400, "ports[0].port = 70000"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"port.target_port": 0})))), 400, "ports[0].target_port = 0"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"port.node_port": 80})))), 400, "ports[0].node_port = 80"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"port.protocol": "ICMP"})))), 400, "ports[0].protocol = ICMP"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"name": "web"})))), 400, "name = \"web\""),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"cluster_ip": "10.96.0.300"})))), 400, "cluster_ip"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"ports": []})))), 400, "ports = []"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"session_affinity": "Sticky"})))), 400, "session_affinity = Sticky"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"affinity_timeout_secs": 0})))), 400, "affinity_timeout_secs = 0"),
        ("POST", "/v1/services", Some((json_ct, web().to_string())), 409, "name = default/web"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"cluster_ip": "10.96.0.10"})))), 409, "cluster_ip = 10.96.0.10"),
        ("POST", "/v1/services", Some((json_ct, svc(json!({"port.node_port": 30080})))), 409, "node_port = 30080"),
        ("POST", "/v1/services", Some(("text/plain", "hello".into())), 415, "Content-Type text/plain"),
        ("POST", "/v1/services/default/web/endpoints", Some((json_ct, json!({"address": "10.244.1.5", "ready": "yes"}).to_string())), 400, "ready"),
        ("POST", "/v1/services/default/nope/endpoints", Some((json_ct, json!({"address": "10.244.1.5"}).to_string())), 404, "default/nope"),
        ("PUT", "/v1/services/default/web/endpoints", Some((json_ct, json!({"endpoints": [{"address": "10.244.1.5"}, {"address": "10.244.1.5"}]}).to_string())), 409, "endpoints[1].address = 10.244.1.5"),
        ("POST", "/v1/nodes", Some((json_ct, json!({"name": "node-c", "node_ip": "192.168.100.3", "pod_cidr": "10.244.1.0/25"}).to_string())), 400, "pod_cidr = 10.244.1.0/25"),
        ("POST", "/v1/nodes", Some((json_ct, json!({"name": "node-c", "node_ip": "192.168.100.3", "pod_cidr": "10.244.2.128/25"}).to_string())), 400, "overlaps node node-b"),
        ("POST", "/v1/nodes", Some((json_ct, json!({"name": "node-c", "node_ip": "192.168.100.3", "pod_cidr": "10.244.3.0/24", "vni": 0}).to_string())), 400, "vni = 0"),
        ("POST", "/v1/nodes", Some((json_ct, json!({"name": "node-b", "node_ip": "192.168.100.4", "pod_cidr": "10.244.4.0/24"}).to_string())), 409, "name = node-b"),
        ("POST", "/v1/routes", Some((json_ct, json!({"prefix": "10.244.5.0/24", "via": "172.16.0.1"}).to_string())), 400, "via = 172.16.0.1"),
        ("POST", "/v1/routes", Some((json_ct, json!({"prefix": "10.244.5.0/33", "via": "192.168.100.5"}).to_string())), 400, "prefix"),
        ("POST", "/v1/routes", Some((json_ct, json!({"prefix": "10.244.9.0/24", "via": "192.168.100.5"}).to_string())), 409, "prefix = 10.244.9.0/24"),
        ("DELETE", "/v1/routes/10.244.77.0/24", None, 404, "10.244.77.0/24"),
        ("POST", "/v1/mirrors", Some((json_ct, json!({"name": "m", "ports": ["nope"]}).to_string())), 400, "ports = nope"),
        ("POST", "/v1/mirrors", Some((json_ct, json!({"name": "m", "stage": "middle"}).to_string())), 400, "stage = middle"),
        ("PUT", "/v1/node", Some((json_ct, json!({"gateway": "10.244.1.1/24", "gateway_mac": "01:00:5e:00:00:01"}).to_string())), 400, "gateway_mac = 01:00:5e:00:00:01"),
        ("POST", "/v1/ports", Some((json_ct, json!({"name": "pod-a", "kind": "tap"}).to_string())), 409, "name = pod-a"),
        ("POST", "/v1/ports", Some((json_ct, json!({"name": "pod-x", "kind": "vhost"}).to_string())), 400, "kind"),
        ("POST", "/v1/ports", Some((json_ct, json!({"name": "pod-x", "kind": "tap", "ips": ["10.244.1.7"]}).to_string())), 400, "ips"),
        ("PUT", "/v1/state", Some((json_ct, json!({"services": [web(), web()]}).to_string())), 409, "services[1].name = default/web"),
        // The first service that repeats an earlier one, in the document's order.
        ("PUT", "/v1/state", Some((json_ct, json!({"services": [named("z", 1), named("b", 2), web(), named("b", 3), named("z", 4)]}).to_string())), 409, "services[3].name = default/b"),
        ("PUT", "/v1/state", Some((json_ct, json!({"services": [{"name": "a/b", "cluster_ip": "10.96.1.1", "ports": [{"port": 0}]}]}).to_string())), 400, "services[0].ports[0].port = 0"),
        ("GET", "/v1/nope", None, 404, "no such API path"),
        ("PATCH", "/v1/services", None, 405, "method not allowed"),
    ];
    assert!(cases.len() >= 20);
    for (method, path, body, status, needle) in cases {
        let (s, v) = call(&app, method, path, body.clone()).await;
        let message = v["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(s, status, "{method} {path} {body:?}: {v}");
        assert!(
            message.contains(needle),
            "{method} {path}: message {message:?} does not name {needle:?}"
        );
        assert_eq!(
            everything(&app).await,
            before,
            "{method} {path} changed the state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_converges_and_reports_changes() {
    let dir = temp_dir("apply");
    let app = app(&dir);
    let doc = |n: u32| {
        let services: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("ns/s{i}"), "cluster_ip": format!("10.96.1.{i}"), "ports": [{"port": 80}], "endpoints": [{"address": format!("10.244.1.{}", i + 10)}]}))
            .collect();
        json!({"services": services, "routes": [{"prefix": "10.244.3.0/24", "via": "192.168.100.3"}], "nodes": [{"name": "b", "node_ip": "192.168.100.2", "pod_cidr": "10.244.2.0/24"}]})
    };
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/state",
        Some(("application/json", doc(5).to_string())),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changed"]["services"]["added"], 5);
    assert_eq!(v["changed"]["endpoints"]["added"], 5);
    assert_eq!(v["changed"]["routes"]["added"], 1);
    let (_, v) = call(
        &app,
        "PUT",
        "/v1/state",
        Some(("application/json", doc(3).to_string())),
    )
    .await;
    assert_eq!(
        v["changed"]["services"],
        json!({"added": 0, "updated": 0, "removed": 2})
    );
    assert_eq!(
        call(&app, "GET", "/v1/services", None).await.1["services"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let toml_doc = "[[services]]\nname = \"ns/t\"\ncluster_ip = \"10.96.2.1\"\n[[services.ports]]\nport = 53\nprotocol = \"UDP\"\n";
    let (s, v) = call(
        &app,
        "PUT",
        "/v1/state",
        Some(("application/toml", toml_doc.into())),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["changed"]["services"],
        json!({"added": 1, "updated": 0, "removed": 3})
    );
    assert_eq!(v["changed"]["nodes"]["removed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let dir = temp_dir("restart");
    let before = {
        let app = app(&dir);
        assert_eq!(post(&app, "/v1/services", web()).await.0, 201);
        assert_eq!(
            post(
                &app,
                "/v1/nodes",
                json!({"name": "b", "node_ip": "192.168.100.2", "pod_cidr": "10.244.2.0/24"})
            )
            .await
            .0,
            201
        );
        assert_eq!(
            post(
                &app,
                "/v1/routes",
                json!({"prefix": "10.244.3.0/24", "via": "192.168.100.3"})
            )
            .await
            .0,
            201
        );
        everything(&app).await
    };
    let app = app(&dir);
    assert_eq!(everything(&app).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_conntrack_and_metrics() {
    let dir = temp_dir("health");
    let app = app(&dir);
    let (s, v) = call(&app, "GET", "/v1/health", None).await;
    assert_eq!(
        (s, v["forwarding"].as_bool()),
        (503, Some(false)),
        "no workers attached in this test"
    );
    let (s, v) = call(&app, "GET", "/v1/conntrack", None).await;
    assert_eq!(s, 503, "no tables before the workers run: {v}");
    assert!(v["error"].as_str().unwrap().contains("not running"));
    let (s, v) = call(&app, "GET", "/metrics", None).await;
    assert_eq!(s, 200);
    let text = v.as_str().unwrap();
    for needle in [
        "podswitch_snapshot_generation 1",
        "podswitch_port_rx_packets_total{port=\"pod-a\"} 0",
        "podswitch_drops_total{reason=\"spoofed_src_mac\"} 0",
        "podswitch_api_requests_total{method=\"GET\",status=\"503\"} 2",
    ] {
        assert!(text.contains(needle), "missing {needle}:\n{text}");
    }
}

/// One request over the real socket with the project's client (`podswitchctl`'s).
fn http(socket: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    let client = podswitch_control::client::ApiClient::new(socket);
    let body = (!body.is_empty()).then_some(("application/json", body.as_bytes()));
    let resp = client
        .request(method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (
        resp.status,
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
    )
}

fn serve_on_socket(dir: &Path) -> (PathBuf, tokio::runtime::Runtime) {
    serve_router(dir, app(dir))
}

/// Serves `router` on `dir/api.sock` (a real socket, so hyper reads the
/// request as it would from podswitchctl).
fn serve_router(dir: &Path, router: Router) -> (PathBuf, tokio::runtime::Runtime) {
    std::fs::create_dir_all(dir).unwrap();
    let socket = dir.join("api.sock");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(async { RootOnlyListener::bind(&socket) })
        .unwrap();
    rt.spawn(async move { axum::serve(listener, router).await });
    (socket, rt)
}

/// Issue 25 C3: every refusal, also those of the HTTP layer before a
/// handler runs (a body over the limit, a path that does not decode), is
/// the documented `{"error": "…"}` with a JSON content type.
#[test]
fn refusals_of_the_http_layer_are_json_errors() {
    let dir = temp_dir("refusals");
    let router = api::router_with_body_limit(Api::new(control(&dir)), 4096);
    let (socket, _rt) = serve_router(&dir, router);
    let client = podswitch_control::client::ApiClient::new(&socket);
    let big = format!("{{\"services\": []}}{}", " ".repeat(8192));
    let json = "application/json";
    #[rustfmt::skip]
    let cases: [Case; 6] = [
        ("PUT", "/v1/state", Some((json, big)), 413, "4096 bytes"),
        ("GET", "/v1/services/%FF%FE/web", None, 400, "UTF-8"),
        ("POST", "/v1/services", Some((json, "{not json".into())), 400, "invalid JSON body"),
        ("POST", "/v1/services", Some(("text/plain", "hello".into())), 415, "Content-Type text/plain"),
        ("GET", "/v1/nope", None, 404, "no such API path"),
        ("PATCH", "/v1/services", None, 405, "method not allowed"),
    ];
    for (method, path, body, status, needle) in cases {
        let body = body.as_ref().map(|(ct, text)| (*ct, text.as_bytes()));
        let resp = client.request(method, path, body).unwrap();
        let text = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.status, status, "{method} {path}: {text}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{method} {path}: {text}"
        );
        let v: Value = serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text:?}"));
        let message = v["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle) && v.as_object().is_some_and(|o| o.len() == 1),
            "{method} {path}: {v} does not name {needle:?}"
        );
    }
}

/// Issue 25 C3: a document over the old 64 MiB limit (a 100,000-service
/// apply is about 80 MB) is taken; here 70 MiB of it is white space, which
/// JSON allows, so the test stays cheap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_over_64_mib_is_applied() {
    let dir = temp_dir("large");
    let app = app(&dir);
    let doc = json!({"services": [web()]}).to_string();
    let body = format!("{doc}{}", " ".repeat(70 << 20));
    let (s, v) = call(&app, "PUT", "/v1/state", Some(("application/json", body))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changed"]["services"]["added"], 1, "{v}");
}

#[test]
fn concurrent_clients_serialise_and_lose_nothing() {
    let dir = temp_dir("conc");
    let (socket, _rt) = serve_on_socket(&dir);
    assert_eq!(
        http(&socket, "POST", "/v1/services", &web().to_string()).0,
        201
    );
    let socket = Arc::new(socket);
    let handles: Vec<_> = (0..8)
        .map(|client| {
            let socket = Arc::clone(&socket);
            std::thread::spawn(move || {
                let mut acks = Vec::new();
                for i in 0..10 {
                    // Each client creates its own services and rewrites one shared endpoint set.
                    let svc = json!({"name": format!("c{client}/s{i}"), "cluster_ip": format!("10.97.{client}.{i}"), "ports": [{"port": 80}]});
                    assert_eq!(http(&socket, "POST", "/v1/services", &svc.to_string()).0, 201);
                    let eps = json!({"endpoints": [{"address": format!("10.244.{client}.{}", i + 1)}]});
                    let (s, v) = http(&socket, "PUT", "/v1/services/default/web/endpoints", &eps.to_string());
                    assert_eq!(s, 200);
                    acks.push((v["generation"].as_u64().unwrap(), eps["endpoints"].clone()));
                }
                acks
            })
        })
        .collect();
    let acks: Vec<(u64, Value)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let (_, services) = http(&socket, "GET", "/v1/services", "");
    assert_eq!(
        services["services"].as_array().unwrap().len(),
        1 + 8 * 10,
        "no creation lost"
    );
    let mut generations: Vec<u64> = acks.iter().map(|a| a.0).collect();
    generations.sort_unstable();
    generations.dedup();
    assert_eq!(generations.len(), 80, "every write got its own generation");
    let last = acks.iter().max_by_key(|a| a.0).unwrap();
    let (_, eps) = http(&socket, "GET", "/v1/services/default/web/endpoints", "");
    assert_eq!(
        eps["endpoints"][0]["address"], last.1[0]["address"],
        "the final state is the last write in the serial order"
    );
    let (_, config) = http(&socket, "GET", "/v1/config", "");
    assert_eq!(
        config["generation"].as_u64().unwrap(),
        1 + 1 + 160,
        "one generation per acknowledged change"
    );
}

#[test]
fn non_root_clients_are_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("skipping non_root_clients_are_refused: needs root to drop privileges");
        return;
    }
    let dir = temp_dir("nonroot");
    let (socket, _rt) = serve_on_socket(&dir);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Open the socket file so the peer-credential check is what refuses.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&*dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = format!(
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect({:?}); print(s.recv(4096).decode().split()[1])",
        socket.display().to_string()
    );
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "403");
    assert_eq!(
        http(&socket, "GET", "/v1/health", "").0,
        503,
        "root is served"
    );
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conntrack_lists_filters_and_flushes() {
    use podswitch_dataplane::conntrack::{ConnKey, Nat};
    use podswitch_dataplane::nat::monotonic_ns;
    use podswitch_dataplane::pipeline::SharedTables;
    use podswitch_dataplane::wire::IpProtocol;
    use std::net::Ipv4Addr;

    let dir = temp_dir("conntrack");
    let mut c = control(&dir);
    let tables = Arc::new(SharedTables::default());
    c.attach_tables(Arc::clone(&tables));
    let app = api::router(Api::new(c));
    let ct = &tables.conntrack;
    let client = Ipv4Addr::new(10, 244, 1, 2);
    let vip = (Ipv4Addr::new(10, 96, 0, 10), 53);
    let now = monotonic_ns();
    for i in 0..10u16 {
        let (proto, key) = if i % 2 == 0 {
            (IpProtocol::UDP, ConnKey::udp((client, 40000 + i), vip))
        } else {
            (
                IpProtocol::TCP,
                ConnKey::tcp((client, 40000 + i), (vip.0, 80)),
            )
        };
        let endpoint = (Ipv4Addr::new(10, 244, 1, 5 + (i % 3) as u8), 8053);
        let shard = ct.shard_of(client, 40000 + i, proto);
        ct.insert_with(shard, key, Nat::dnat(endpoint), now, |_, _| ())
            .unwrap();
    }
    let (s, v) = call(&app, "GET", "/v1/conntrack", None).await;
    assert_eq!(
        (s, v["count"].as_u64(), v["total"].as_u64()),
        (200, Some(10), Some(10)),
        "{v}"
    );
    let (_, v) = call(
        &app,
        "GET",
        "/v1/conntrack?proto=udp&reply_src=10.244.1.5",
        None,
    )
    .await;
    let entries = v["entries"].as_array().unwrap();
    // UDP flows are i = 0, 2, 4, 6, 8; endpoint .5 takes i % 3 == 0: 0 and 6.
    assert_eq!(entries.len(), 2, "{v}");
    assert_eq!(entries[0]["protocol"], "udp");
    assert_eq!(entries[0]["flags"], json!(["UNREPLIED"]));
    assert_eq!(entries[0]["nat"]["dnat"], "10.244.1.5:8053");
    let (_, v) = call(&app, "GET", "/v1/conntrack?limit=3", None).await;
    assert_eq!(v["count"], 3);
    for bad in [
        "proto=gre",
        "src=1.2.3",
        "dport=99999",
        "state=OPEN",
        "colour=red",
    ] {
        let (s, v) = call(&app, "GET", &format!("/v1/conntrack?{bad}"), None).await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains(bad.split('=').next().unwrap())
        );
    }
    let (s, v) = call(&app, "DELETE", "/v1/conntrack?proto=tcp", None).await;
    assert_eq!((s, v["flushed"].as_u64()), (200, Some(5)));
    let (_, v) = call(&app, "GET", "/v1/conntrack", None).await;
    assert_eq!(v["total"], 5);
    let (_, v) = call(&app, "GET", "/metrics", None).await;
    let text = v.as_str().unwrap();
    assert!(text.contains("podswitch_conntrack_entries 5"), "{text}");
    assert!(
        text.contains("podswitch_conntrack_total{op=\"inserted\"} 10"),
        "{text}"
    );
}
