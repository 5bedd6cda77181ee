//! Helpers shared by the integration tests of this crate.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use tower::ServiceExt;

/// A temporary directory removed on drop (also when the test fails).
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `<tmp>/podswitch-<suite>-<pid>-<tag>`, emptied; not created.
pub fn temp_dir(suite: &str, tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("podswitch-{suite}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    TempDir(dir)
}

/// `podswitchd run` with one worker and its run directory (lock, API
/// socket) and state under `dir`; add `--config` and the rest.
#[allow(dead_code)] // not every test of this crate starts the daemon
pub fn podswitchd_run(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_podswitchd"));
    cmd.arg("run")
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--api-socket")
        .arg(dir.join("run/api.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--workers")
        .arg("1");
    cmd
}

/// A node `name` with an uplink port `up0` (an interface that does not
/// exist: down, nothing opened) and nothing else.
#[allow(dead_code)] // not every test of this crate needs it
pub fn uplink_node(name: &str) -> String {
    format!(
        r#"
[node]
name = "{name}"
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[uplink]
port = "up0"
address = "192.168.100.1/24"
mac = "02:00:c0:a8:64:01"
[[ports]]
name = "up0"
kind = "afpacket"
"#
    )
}

/// Sends one request to `app` (`body`: its content type and text) and
/// returns the status and the answer as JSON (an answer that is not JSON,
/// such as `/metrics`, as a JSON string).
#[allow(dead_code)] // not every test of this crate calls the API in process
pub async fn call(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<(&str, String)>,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(path);
    let body = match body {
        Some((ct, text)) => {
            req = req.header("content-type", ct);
            Body::from(text)
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

/// [`call`] with a JSON body, if any.
#[allow(dead_code)] // not every test of this crate calls the API in process
pub async fn call_json(
    app: &Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|v| ("application/json", v.to_string()));
    call(app, method, path, body).await
}
