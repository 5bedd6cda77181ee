//! Measures the declarative apply: 10,000 services with 10 endpoints each
//! through the API router (JSON decoding, validation, diff, durable store
//! commit, new snapshot), then one more service added next to them, then
//! the same document again (no change).
//!
//! `cargo run --release -p podswitch-control --example apply_bench [services] [endpoints]`

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use podswitch_control::api::{self, Api};
use podswitch_control::control::Control;
use podswitch_control::store::Store;
use podswitch_dataplane::config::NodeConfig;
use serde_json::json;
use tower::ServiceExt;

const CONFIG: &str = "[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

fn document(services: u32, endpoints: u32) -> String {
    let list: Vec<_> = (0..services)
        .map(|i| {
            let eps: Vec<_> = (0..endpoints)
                .map(|e| json!({"address": format!("10.{}.{}.{}", 100 + e, i >> 8, i & 0xff), "node": "node-a"}))
                .collect();
            json!({"name": format!("ns{}/svc-{i}", i % 50), "cluster_ip": format!("10.96.{}.{}", i >> 8, i & 0xff),
                   "ports": [{"name": "http", "port": 80, "target_port": 8080}, {"name": "https", "port": 443, "target_port": 8443}],
                   "endpoints": eps})
        })
        .collect();
    json!({"services": list}).to_string()
}

async fn send(app: &axum::Router, method: &str, path: &str, body: String) -> (u16, Duration) {
    let start = Instant::now();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = axum::body::to_bytes(resp.into_body(), 1 << 20).await;
    (status, start.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (services, endpoints) = (
        args.first().copied().unwrap_or(10_000),
        args.get(1).copied().unwrap_or(10),
    );
    let dir = std::env::temp_dir().join(format!("podswitch-apply-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = NodeConfig::from_toml_str(CONFIG).unwrap();
    let (control, _) = Control::restore(file, Store::open(&dir).unwrap()).unwrap();
    let app = api::router(Api::new(control));
    let doc = document(services, endpoints);
    println!(
        "document: {services} services x {endpoints} endpoints, {} bytes of JSON",
        doc.len()
    );
    let (s, t) = send(&app, "PUT", "/v1/state", doc.clone()).await;
    println!(
        "apply {services} services (all new):      {:>8.1} ms  (status {s})",
        t.as_secs_f64() * 1e3
    );
    let one = json!({"name": "extra/one", "cluster_ip": "10.99.0.1", "ports": [{"port": 80}]})
        .to_string();
    let mut adds = Vec::new();
    for i in 0..20 {
        let body = one
            .replace("one", &format!("one{i}"))
            .replace("10.99.0.1", &format!("10.99.0.{}", i + 1));
        let (s, t) = send(&app, "POST", "/v1/services", body).await;
        assert_eq!(s, 201);
        adds.push(t);
    }
    adds.sort();
    println!(
        "add 1 service next to {services} (POST, 20 runs): median {:>6.2} ms, max {:>6.2} ms",
        adds[adds.len() / 2].as_secs_f64() * 1e3,
        adds[adds.len() - 1].as_secs_f64() * 1e3
    );
    let (s, t) = send(&app, "PUT", "/v1/state", doc).await;
    println!(
        "apply the same document again (removes the 20): {:>8.1} ms  (status {s})",
        t.as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_dir_all(&dir);
}
