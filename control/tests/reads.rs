//! Reads never wait behind a write (docs/api.md): while a change holds the
//! control plane — here a thread holds its lock as a long `PUT /v1/state`
//! would — a health probe and every GET are answered from what the last
//! commit published, and a second change waits its turn on a blocking
//! thread, not on the runtime's. The runtime has one thread, so a handler
//! that blocked it would stall every other request.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podswitch_control::api::{self, Api};
use podswitch_control::control::Control;
use podswitch_control::store::Store;
use podswitch_dataplane::config::NodeConfig;
use serde_json::json;

mod common;
use common::call_json as call;

/// How long the write in progress holds the control plane at most.
const HOLD: Duration = Duration::from_secs(5);

fn control(dir: &Path) -> Control {
    let file = NodeConfig::from_toml_str(&common::uplink_node("reads")).unwrap();
    Control::restore(file, Store::open(dir).unwrap()).unwrap().0
}

#[tokio::test(flavor = "current_thread")]
async fn health_and_gets_are_answered_while_a_write_holds_the_control_plane() {
    let dir = common::temp_dir("reads", "held");
    let api = Api::new(control(&dir));
    let app = api::router(Arc::clone(&api));
    let web = json!({"name": "default/web", "cluster_ip": "10.96.0.10", "ports": [{"port": 80}],
                     "endpoints": [{"address": "10.244.1.5"}]});
    assert_eq!(call(&app, "POST", "/v1/services", Some(web)).await.0, 201);

    // A write in progress: the control plane held until released (or HOLD).
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let api = Arc::clone(&api);
        std::thread::spawn(move || {
            let _control = api.control();
            held_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(HOLD);
        })
    };
    held_rx.recv().unwrap();
    // A second change queues behind it.
    let route = json!({"prefix": "10.244.9.0/24", "via": "192.168.100.9"});
    let queued = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "POST", "/v1/routes", Some(route)).await }
    });

    let started = Instant::now();
    let (status, health) = call(&app, "GET", "/v1/health", None).await;
    // No workers run in this test: not forwarding, but answered.
    assert_eq!(
        (status, &health["generation"]),
        (503, &json!(2)),
        "{health}"
    );
    for path in [
        "/v1/services",
        "/v1/services/default/web",
        "/v1/services/default/web/endpoints",
        "/v1/ports",
        "/v1/ports/up0",
        "/v1/routes",
        "/v1/node",
        "/v1/nodes",
        "/v1/mirrors",
        "/v1/config",
        "/v1/stats",
        "/metrics",
    ] {
        let (status, body) = call(&app, "GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    let (_, services) = call(&app, "GET", "/v1/services", None).await;
    assert_eq!(services["services"][0]["name"], "default/web");
    let elapsed = started.elapsed();
    assert!(
        elapsed < HOLD / 2,
        "the reads took {elapsed:?}: they waited for the write in progress"
    );
    assert!(
        !queued.is_finished(),
        "a change waits for the one in progress"
    );

    release_tx.send(()).unwrap();
    writer.join().unwrap();
    let (status, body) = queued.await.unwrap();
    assert_eq!(status, 201, "{body}");
    let (_, health) = call(&app, "GET", "/v1/health", None).await;
    assert_eq!(health["generation"], 3);
}
