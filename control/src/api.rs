//! The v1 control API (`docs/api.md`): HTTP/JSON on a Unix socket.
//!
//! Handlers parse and check the request, then run a change on a blocking
//! thread against the one [`Control`] (a mutex serialises writers: devices
//! are opened and the store is fsynced there, never on the async runtime).
//! Reads (health, stats, metrics, every GET) never take that mutex: they
//! are served from the [`ControlView`], what the last commit published, so
//! a health probe is answered while a long write runs.
//!
//! Errors: the domain returns [`ControlError`]s; [`ApiError`] (`errors`)
//! is where each becomes an HTTP status and the documented JSON body.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::control::{Control, ControlView, SharedControl};
use crate::error::ControlError;
use crate::state::{Endpoint, Mirror, NodeAddressing, NodeRecord, ServiceWithEndpoints};
pub use errors::ApiError;

/// State shared by the handlers.
pub struct Api {
    /// The control plane: changes lock it (on a blocking thread only),
    /// reads go to its view.
    control: Arc<SharedControl>,
    /// Requests by (method, status), for `/metrics`.
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// The Kubernetes source, when podswitchd follows a cluster.
    pub source: std::sync::OnceLock<Arc<crate::kubernetes::SourceStatus>>,
}

impl Api {
    /// Wraps a control plane.
    pub fn new(control: Control) -> Arc<Api> {
        Arc::new(Api {
            control: SharedControl::new(control),
            requests: Mutex::new(BTreeMap::new()),
            source: std::sync::OnceLock::new(),
        })
    }

    /// The control plane, locked for a change: it may wait for the change
    /// in progress, so never on the async runtime's threads.
    pub fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock()
    }

    /// What the last commit published (never waits for a change).
    pub fn view(&self) -> &ControlView {
        self.control.view()
    }

    /// The control plane, for another of its users (the Kubernetes source).
    pub fn shared(&self) -> Arc<SharedControl> {
        Arc::clone(&self.control)
    }
}

type Shared = State<Arc<Api>>;

mod document;
mod errors;
mod listener;
pub use listener::RootOnlyListener;

/// Largest request body: a declarative apply of 100,000 services with 10
/// endpoints each is about 80 MB of JSON; the body is read whole before
/// it is decoded, and only root may send one.
pub const MAX_BODY: usize = 256 << 20;

fn ok(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// The body's media type, lower case without parameters (JSON when none is given).
fn media_type(headers: &HeaderMap) -> String {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a JSON (default) or TOML body into a value tree; other media are 415.
fn parse_value(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = media_type(headers);
    match ct.as_str() {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"))),
        "application/toml" | "text/toml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("invalid TOML body: not UTF-8"))?;
            toml::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("invalid TOML body: {}", e.to_string().trim()))
            })
        }
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {other} is not supported; send application/json or application/toml"
            ),
        )),
    }
}

/// Turns a value tree into `T`; errors name the path of the bad field
/// (prefixed with `prefix`), e.g. `ports[0].port: invalid type …`.
fn from_value<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = match (prefix.is_empty(), path == ".") {
            (true, true) => String::new(),
            (true, false) => format!("{path}: "),
            (false, true) => format!("{prefix}: "),
            // `endpoints` + `[0].address`, `routes[0]` + `via`.
            (false, false) if path.starts_with('[') => format!("{prefix}{path}: "),
            (false, false) => format!("{prefix}.{path}: "),
        };
        ApiError::bad_request(format!("invalid body: {field}{inner}"))
    })
}

/// Decodes a JSON or TOML body into `T` with field paths in errors.
fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    from_value(parse_value(headers, body)?, "")
}

/// A service object with an optional `endpoints` list, split in two (so
/// that errors keep their field paths).
fn service_from_value(mut value: Value, prefix: &str) -> Result<ServiceWithEndpoints, ApiError> {
    let endpoints = match value.as_object_mut().and_then(|o| o.remove("endpoints")) {
        Some(e) => from_value(e, &format!("{prefix}endpoints"))?,
        None => Vec::new(),
    };
    let service = from_value(value, prefix.trim_end_matches('.'))?;
    Ok(ServiceWithEndpoints { service, endpoints })
}

/// Runs `f` with the control plane on a blocking thread.
async fn with_control<T: Send + 'static>(
    api: &Arc<Api>,
    f: impl FnOnce(&mut Control) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ApiError> {
    let api = Arc::clone(api);
    tokio::task::spawn_blocking(move || f(&mut api.control()))
        .await
        .map_err(|e| ApiError::internal(format!("request failed: {e}")))?
        .map_err(ApiError::from)
}

/// The router of the v1 API plus `/metrics`.
pub fn router(api: Arc<Api>) -> Router {
    router_with_body_limit(api, MAX_BODY)
}

/// As [`router`], taking request bodies of at most `max_body` bytes.
pub fn router_with_body_limit(api: Arc<Api>, max_body: usize) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/config", get(config))
        .route("/v1/stats", get(stats))
        .route("/v1/conntrack", get(conntrack_list).delete(conntrack_flush))
        .route("/v1/ports", get(list_ports).post(add_port))
        .route("/v1/ports/{name}", get(get_port).delete(delete_port))
        .route("/v1/node", get(get_node).put(put_node))
        .route("/v1/routes", get(list_routes).post(add_route))
        .route("/v1/routes/{*prefix}", axum::routing::delete(delete_route))
        .route("/v1/services", get(list_services).post(add_service))
        .route(
            "/v1/services/{ns}/{name}",
            get(get_service).delete(delete_service),
        )
        .route(
            "/v1/services/{ns}/{name}/endpoints",
            get(get_endpoints).put(put_endpoints).post(add_endpoint),
        )
        .route(
            "/v1/services/{ns}/{name}/endpoints/{address}",
            axum::routing::delete(delete_endpoint),
        )
        .route("/v1/nodes", get(list_nodes).post(add_node))
        .route("/v1/nodes/{name}", get(get_node_record).delete(delete_node))
        .route("/v1/mirrors", get(list_mirrors).post(add_mirror))
        .route("/v1/mirrors/{name}", get(get_mirror).delete(delete_mirror))
        .route("/v1/capture", axum::routing::post(capture))
        .route("/v1/state", axum::routing::put(apply))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such API path; see docs/api.md")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            max_body,
            errors::json_errors,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&api),
            count_requests,
        ))
        .with_state(api)
}

/// The metrics-only router for `--metrics-listen`.
pub fn metrics_router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(api)
}

async fn count_requests(State(api): Shared, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let response = next.run(req).await;
    let key = (method, response.status().as_u16());
    *api.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_insert(0) += 1;
    response
}

async fn health(State(api): Shared) -> Response {
    let c = api.view();
    let down: Vec<String> = c.ports_down().into_iter().map(|(name, _)| name).collect();
    let mut body = json!({ "forwarding": c.forwarding(), "workers": c.workers(), "generation": c.snapshot().generation, "ports_down": down });
    if let Some(source) = api.source.get() {
        // Degraded (API server unreachable) still forwards on the last state.
        body["source"] = source.json();
    }
    ok(
        if c.forwarding() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}

async fn config(State(api): Shared) -> Response {
    let c = api.view();
    let ports = c.port_views();
    let st = c.state();
    let snapshot = c.snapshot();
    let routes: Vec<Value> = snapshot
        .routes
        .routes()
        .iter()
        .map(|r| json!({"prefix": r.prefix.to_string(), "via": r.via}))
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "generation": snapshot.generation,
            "node": node_json(&snapshot),
            "ports": ports,
            "routes": routes,
            "services": st.services.len(),
            "endpoints": st.endpoints.values().map(Vec::len).sum::<usize>(),
            "nodes": st.nodes.len(),
            "mirrors": st.mirrors.len(),
        }),
    )
}

async fn stats(State(api): Shared) -> Response {
    let c = api.view();
    let mut v = serde_json::to_value(c.stats()).unwrap_or(Value::Null);
    let per_worker: Vec<Value> = c
        .worker_counters()
        .iter()
        .map(|w| {
            let drops: BTreeMap<&str, u64> = podswitch_dataplane::packet::DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), w.drops(*r)))
                .filter(|d| d.1 > 0)
                .collect();
            let events: BTreeMap<&str, u64> = podswitch_dataplane::packet::Event::ALL
                .iter()
                .map(|e| (e.as_str(), w.events(*e)))
                .filter(|d| d.1 > 0)
                .collect();
            json!({ "drops": drops, "events": events })
        })
        .collect();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("per_worker".into(), Value::Array(per_worker));
    }
    ok(StatusCode::OK, v)
}

/// The shared connection table, or 503 before the workers run.
fn conntrack_tables(
    api: &Api,
) -> Result<Arc<podswitch_dataplane::pipeline::SharedTables>, ApiError> {
    api.view()
        .tables()
        .ok_or(ControlError::NotRunning("the dataplane is not running yet").into())
}

async fn conntrack_list(
    State(api): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (filter, limit) = crate::conntrack_view::parse_filter(&query)?;
    let tables = conntrack_tables(&api)?;
    // Listing walks the table shard by shard: off the async runtime.
    let body = tokio::task::spawn_blocking(move || {
        let now = podswitch_dataplane::nat::monotonic_ns();
        let records = tables.conntrack.list(&filter, now, limit);
        let entries: Vec<Value> = records
            .iter()
            .map(crate::conntrack_view::record_json)
            .collect();
        json!({
            "count": entries.len(),
            "entries": entries,
            "total": tables.conntrack.len(),
            "capacity": tables.conntrack.capacity(),
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("listing failed: {e}")))?;
    Ok(ok(StatusCode::OK, body))
}

async fn conntrack_flush(
    State(api): Shared,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (filter, _) = crate::conntrack_view::parse_filter(&query)?;
    let tables = conntrack_tables(&api)?;
    if tables.conntrack.is_handed_over() {
        let taken = "this process has been taken over; the new one serves the API";
        return Err(ControlError::NotRunning(taken).into());
    }
    let flushed = tokio::task::spawn_blocking(move || tables.conntrack.flush(&filter))
        .await
        .map_err(|e| ApiError::internal(format!("flush failed: {e}")))?;
    Ok(ok(StatusCode::OK, json!({ "flushed": flushed })))
}

async fn metrics(State(api): Shared) -> Response {
    let stats = api.view().stats();
    let requests = api
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut body = crate::metrics::render(&stats, &requests);
    body.push_str(&api.view().mirror_metrics());
    if let Some(source) = api.source.get() {
        body.push_str(&source.metrics());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn list_ports(State(api): Shared) -> Response {
    ok(StatusCode::OK, json!({ "ports": api.view().port_views() }))
}

async fn get_port(
    State(api): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    let views = api.view().port_views();
    let port = views
        .into_iter()
        .find(|p| p["name"] == name.as_str())
        .ok_or_else(|| ControlError::not_found("port", &name))?;
    Ok(ok(StatusCode::OK, port))
}

async fn add_port(
    State(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let port: podswitch_dataplane::config::PortSection = parse(&headers, &body)?;
    let name = port.name.clone();
    with_control(&api, move |c| c.add_port(port)).await?;
    let views = api.view().port_views();
    Ok(ok(
        StatusCode::CREATED,
        views
            .into_iter()
            .find(|p| p["name"] == name.as_str())
            .unwrap_or(Value::Null),
    ))
}

async fn delete_port(
    State(api): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    with_control(&api, move |c| c.delete_port(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn node_json(snapshot: &podswitch_dataplane::config::Snapshot) -> Value {
    let uplink = snapshot.uplink.map(|(port, l3)| {
        let name = snapshot
            .port(port)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        json!({ "port": name, "address": l3.address.to_string(), "mac": l3.mac.to_string() })
    });
    json!({
        "name": snapshot.node_name,
        "gateway": snapshot.gateway.address.to_string(),
        "gateway_mac": snapshot.gateway.mac.to_string(),
        "uplink": uplink,
        "mac_aging_secs": snapshot.tuning.mac_aging_ns / 1_000_000_000,
    })
}

async fn get_node(State(api): Shared) -> Response {
    ok(StatusCode::OK, node_json(&api.view().snapshot()))
}

async fn put_node(
    State(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let node: NodeAddressing = parse(&headers, &body)?;
    with_control(&api, move |c| c.set_node(node)).await?;
    Ok(ok(StatusCode::OK, node_json(&api.view().snapshot())))
}

async fn list_routes(State(api): Shared) -> Response {
    let st = api.view().state();
    let snapshot = api.view().snapshot();
    let api_keys: Vec<&String> = st.routes.keys().collect();
    let routes: Vec<Value> = snapshot
        .routes
        .routes()
        .iter()
        .map(|r| {
            let key = crate::state::route_key(&r.prefix);
            let source = if r.via.is_none() {
                "connected"
            } else if api_keys.contains(&&key) {
                "api"
            } else {
                "config"
            };
            json!({ "prefix": key, "via": r.via, "source": source })
        })
        .collect();
    ok(StatusCode::OK, json!({ "routes": routes }))
}

async fn add_route(
    State(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let route: podswitch_dataplane::config::RouteSection = parse(&headers, &body)?;
    let v = json!({ "prefix": crate::state::route_key(&route.prefix), "via": route.via });
    with_control(&api, move |c| c.add_route(route)).await?;
    Ok(ok(StatusCode::CREATED, v))
}

async fn delete_route(
    State(api): Shared,
    UrlPath(prefix): UrlPath<String>,
) -> Result<Response, ApiError> {
    with_control(&api, move |c| c.delete_route(&prefix)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn service_json(st: &crate::state::ApiState, name: &str) -> Option<Value> {
    let s = st.services.get(name)?;
    let endpoints = st.endpoints.get(name).cloned().unwrap_or_default();
    serde_json::to_value(ServiceWithEndpoints {
        service: s.clone(),
        endpoints,
    })
    .ok()
}

async fn list_services(State(api): Shared) -> Response {
    let st = api.view().state();
    let list: Vec<Value> = st
        .services
        .keys()
        .filter_map(|n| service_json(&st, n))
        .collect();
    ok(StatusCode::OK, json!({ "services": list }))
}

async fn get_service(
    State(api): Shared,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let full = format!("{ns}/{name}");
    let v = service_json(&api.view().state(), &full)
        .ok_or_else(|| ControlError::not_found("service", &full))?;
    Ok(ok(StatusCode::OK, v))
}

async fn add_service(
    State(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s = service_from_value(parse_value(&headers, &body)?, "")?;
    let name = s.service.name.clone();
    with_control(&api, move |c| c.add_service(s.service, s.endpoints)).await?;
    Ok(ok(
        StatusCode::CREATED,
        service_json(&api.view().state(), &name).unwrap_or(Value::Null),
    ))
}

async fn delete_service(
    State(api): Shared,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let full = format!("{ns}/{name}");
    with_control(&api, move |c| c.delete_service(&full)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_endpoints(
    State(api): Shared,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let full = format!("{ns}/{name}");
    let st = api.view().state();
    if !st.services.contains_key(full.as_str()) {
        return Err(ControlError::not_found("service", &full).into());
    }
    Ok(ok(
        StatusCode::OK,
        json!({ "endpoints": st.endpoints.get(full.as_str()).cloned().unwrap_or_default() }),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointList {
    endpoints: Vec<Endpoint>,
}

async fn put_endpoints(
    State(api): Shared,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let list: EndpointList = parse(&headers, &body)?;
    let full = format!("{ns}/{name}");
    let svc = full.clone();
    let generation = with_control(&api, move |c| c.set_endpoints(&svc, list.endpoints)).await?;
    let endpoints = api
        .view()
        .state()
        .endpoints
        .get(full.as_str())
        .cloned()
        .unwrap_or_default();
    Ok(ok(
        StatusCode::OK,
        json!({ "endpoints": endpoints, "generation": generation }),
    ))
}

async fn add_endpoint(
    State(api): Shared,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let e: Endpoint = parse(&headers, &body)?;
    let v = serde_json::to_value(&e).unwrap_or(Value::Null);
    let full = format!("{ns}/{name}");
    with_control(&api, move |c| c.add_endpoint(&full, e)).await?;
    Ok(ok(StatusCode::CREATED, v))
}

async fn delete_endpoint(
    State(api): Shared,
    UrlPath((ns, name, address)): UrlPath<(String, String, String)>,
) -> Result<Response, ApiError> {
    let addr: Ipv4Addr = address
        .parse()
        .map_err(|_| ControlError::invalid("address", &address, "not an IPv4 address"))?;
    let full = format!("{ns}/{name}");
    with_control(&api, move |c| c.delete_endpoint(&full, addr)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_nodes(State(api): Shared) -> Response {
    let nodes: Vec<NodeRecord> = api.view().state().nodes.values().cloned().collect();
    ok(StatusCode::OK, json!({ "nodes": nodes }))
}

async fn get_node_record(
    State(api): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    let n = api
        .view()
        .state()
        .nodes
        .get(&name)
        .cloned()
        .ok_or_else(|| ControlError::not_found("node", &name))?;
    Ok(ok(
        StatusCode::OK,
        serde_json::to_value(n).unwrap_or(Value::Null),
    ))
}

async fn add_node(
    State(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let n: NodeRecord = parse(&headers, &body)?;
    let v = serde_json::to_value(&n).unwrap_or(Value::Null);
    with_control(&api, move |c| c.add_node(n)).await?;
    Ok(ok(StatusCode::CREATED, v))
}

async fn delete_node(
    State(api): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    with_control(&api, move |c| c.delete_node(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_mirrors(State(api): Shared) -> Response {
    ok(
        StatusCode::OK,
        json!({ "mirrors": api.view().mirror_views() }),
    )
}

async fn get_mirror(
    State(api): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    let m = api
        .view()
        .mirror_views()
        .into_iter()
        .find(|m| m["name"] == name.as_str())
        .ok_or_else(|| ControlError::not_found("mirror", &name))?;
    Ok(ok(StatusCode::OK, m))
}

async fn add_mirror(
    State(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m: Mirror = parse(&headers, &body)?;
    let v = serde_json::to_value(&m).unwrap_or(Value::Null);
    with_control(&api, move |c| c.add_mirror(m)).await?;
    Ok(ok(StatusCode::CREATED, v))
}

async fn delete_mirror(
    State(api): Shared,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    with_control(&api, move |c| c.delete_mirror(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/capture`: streams a pcap or pcapng file of a transient session.
async fn capture(
    State(api): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: crate::mirror::capture::CaptureRequest = parse(&headers, &body)?;
    let capture = with_control(&api, move |c| c.start_capture(&request)).await?;
    let content_type = capture.format.content_type();
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        crate::mirror::capture::body(capture),
    )
        .into_response())
}

async fn apply(State(api): Shared, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    // JSON is decoded as it is read, one service at a time (100,000 of
    // them are about 80 MB), and the body freed before the change runs.
    let started = std::time::Instant::now();
    let doc = match media_type(&headers).as_str() {
        "application/json" | "" => document::from_json(&body)?,
        _ => document::from_value(parse_value(&headers, &body)?)?,
    };
    drop(body);
    tracing::debug!(
        decoded_ms = started.elapsed().as_millis(),
        "apply: document decoded"
    );
    let report = with_control(&api, move |c| c.apply(doc)).await?;
    Ok(ok(
        StatusCode::OK,
        serde_json::to_value(report).unwrap_or(Value::Null),
    ))
}
