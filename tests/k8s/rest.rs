//! The REST helpers of [`ControlPlane`]: one `curl` per request, so the
//! tests crate needs no HTTP or TLS client; `kubectl` is not assumed either.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use super::process::command;
use super::{ControlPlane, REQUEST_TIMEOUT};

/// The REST helpers: `path` starts with `/` (e.g. `/api/v1/namespaces/x/pods`).
impl ControlPlane {
    /// Sends one request; `body` is sent with `content_type`. Returns the
    /// decoded JSON answer (`Null` when empty) of a 2xx status.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let what = format!("{method} {path}");
        let body_text = body.map(Value::to_string);
        let (status, text) = self
            .curl(
                method,
                &format!("{}{path}", self.url()),
                Some(content_type),
                body_text.as_deref(),
            )
            .map_err(|detail| ApiError::Transport {
                request: what.clone(),
                detail,
            })?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Status {
                request: what,
                status,
                body: text,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiError::Decode {
            request: what,
            detail: e.to_string(),
            body: text,
        })
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.request("GET", path, "application/json", None)
    }

    /// POST `body` to the collection `path`.
    pub fn create(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request("POST", path, "application/json", Some(body))
    }

    /// PUT `body` at the object `path` (it must carry the current `resourceVersion`
    /// to avoid a conflict, or none to overwrite).
    pub fn replace(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request("PUT", path, "application/json", Some(body))
    }

    /// Server-side apply of `body` (a whole object with apiVersion, kind and
    /// name) at the object `path`: creates or updates it.
    pub fn apply_json(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.request(
            "PATCH",
            &format!("{path}{sep}fieldManager=podswitch-tests&force=true"),
            "application/apply-patch+yaml",
            Some(body),
        )
    }

    /// JSON merge patch (RFC 7386) of the object `path`.
    pub fn patch_merge(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request("PATCH", path, "application/merge-patch+json", Some(body))
    }

    /// JSON merge patch of the `/status` subresource of the object `path`;
    /// `body` is the patch of the whole object (`{"status": {...}}`).
    pub fn patch_status(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.patch_merge(&format!("{path}/status"), body)
    }

    /// DELETE the object `path`.
    pub fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.request("DELETE", path, "application/json", None)
    }

    /// Creates namespace `name` and its `default` ServiceAccount (which Pod
    /// admission requires and no controller creates here); either may exist.
    pub fn create_namespace(&self, name: &str) -> Result<(), ApiError> {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        ignore_exists(self.create("/api/v1/namespaces", &ns))?;
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": name}});
        ignore_exists(self.create(
            &format!("/api/v1/namespaces/{name}/serviceaccounts"),
            &account,
        ))
    }

    /// Creates Node `name` with `spec.podCIDR(s)` = `pod_cidr`, then sets its
    /// status: InternalIP `internal_ip`, condition Ready. Returns the Node.
    pub fn create_node(
        &self,
        name: &str,
        pod_cidr: &str,
        internal_ip: Ipv4Addr,
    ) -> Result<Value, ApiError> {
        self.create_node_with(name, Some(pod_cidr), internal_ip)
    }

    /// As [`ControlPlane::create_node`]; `None`: no pod CIDR yet (as before
    /// kube-controller-manager's node IPAM gives one).
    pub fn create_node_with(
        &self,
        name: &str,
        pod_cidr: Option<&str>,
        internal_ip: Ipv4Addr,
    ) -> Result<Value, ApiError> {
        let spec = match pod_cidr {
            Some(cidr) => json!({"podCIDR": cidr, "podCIDRs": [cidr]}),
            None => json!({}),
        };
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": spec});
        self.create("/api/v1/nodes", &node)?;
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": internal_ip.to_string()},
                          {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "PodswitchTest",
                            "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        }});
        self.patch_status(&format!("/api/v1/nodes/{name}"), &status)
    }

    /// Creates Pod `namespace/name` with `labels` bound to Node `node` (which
    /// must exist, or the EndpointSlice controller skips the pod), then sets
    /// its status as a kubelet would: Running, Ready, `podIP` = `pod_ip`.
    pub fn create_ready_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        node: &str,
        pod_ip: Ipv4Addr,
    ) -> Result<Value, ApiError> {
        self.create_ready_pod_with_ports(namespace, name, labels, node, pod_ip, &[])
    }

    /// As [`ControlPlane::create_ready_pod`], the container declaring `ports`
    /// as (name, containerPort, protocol), which a Service's named
    /// `targetPort` resolves against.
    pub fn create_ready_pod_with_ports(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        node: &str,
        pod_ip: Ipv4Addr,
        ports: &[(&str, u16, &str)],
    ) -> Result<Value, ApiError> {
        let ports: Vec<Value> = ports
            .iter()
            .map(|(name, port, protocol)| {
                json!({"name": name, "containerPort": port, "protocol": protocol})
            })
            .collect();
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"nodeName": node, "automountServiceAccountToken": false,
                     "containers": [{"name": "app", "image": "registry.invalid/podswitch-test:0",
                                     "ports": ports}]}});
        self.create(&format!("/api/v1/namespaces/{namespace}/pods"), &pod)?;
        let ip = pod_ip.to_string();
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now(), "conditions": pod_conditions(true)}});
        self.patch_status(
            &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
            &status,
        )
    }

    /// Sets the Ready (and ContainersReady) condition of Pod `namespace/name`.
    pub fn set_pod_ready(
        &self,
        namespace: &str,
        name: &str,
        ready: bool,
    ) -> Result<Value, ApiError> {
        let status = json!({"status": {"conditions": pod_conditions(ready)}});
        self.patch_status(
            &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
            &status,
        )
    }

    /// DELETE the object `path` with `gracePeriodSeconds`. With no kubelet to
    /// confirm, a Pod bound to a node stays terminating (its endpoint not
    /// ready, `terminating: true`) for its grace period; 0 deletes it at once.
    pub fn delete_with_grace(&self, path: &str, seconds: u32) -> Result<Value, ApiError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.delete(&format!("{path}{sep}gracePeriodSeconds={seconds}"))
    }

    /// The EndpointSlices of Service `namespace/service` (`items`).
    pub fn endpoint_slices(&self, namespace: &str, service: &str) -> Result<Vec<Value>, ApiError> {
        let list = self.get(&format!(
            "/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices\
             ?labelSelector=kubernetes.io%2Fservice-name%3D{service}"
        ))?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Runs curl with the admin token; returns (HTTP status, body) or why curl failed.
    fn curl(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        let header = self.dir.join("auth-header");
        curl_raw(
            self.options.netns.as_deref(),
            Some(&header),
            method,
            url,
            content_type,
            body,
            REQUEST_TIMEOUT,
        )
    }
}

/// Why a REST call failed.
#[derive(Debug)]
pub enum ApiError {
    /// curl failed: it could not run or reach the API server.
    Transport {
        /// Method and path.
        request: String,
        /// curl's error.
        detail: String,
    },
    /// The API server answered with a status other than 2xx.
    Status {
        /// Method and path.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The answer (usually a JSON `Status` object).
        body: String,
    },
    /// A 2xx answer that is not JSON.
    Decode {
        /// Method and path.
        request: String,
        /// serde_json's error.
        detail: String,
        /// The answer.
        body: String,
    },
}

impl ApiError {
    /// The HTTP status, if the API server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Transport { request, detail } => write!(f, "{request}: curl: {detail}"),
            ApiError::Status {
                request,
                status,
                body,
            } => write!(f, "{request}: HTTP {status}: {}", body.trim()),
            ApiError::Decode {
                request,
                detail,
                body,
            } => write!(f, "{request}: answer is not JSON ({detail}): {body}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Runs curl; `header_file` holds extra headers (the token, kept off the command line).
pub(super) fn curl_raw(
    netns: Option<&str>,
    header_file: Option<&Path>,
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut cmd = command(netns, "curl");
    cmd.args(["-sS", "-k", "-X", method, "-w", "\n%{http_code}"])
        .arg("--max-time")
        .arg(timeout.as_secs().to_string());
    if let Some(file) = header_file {
        cmd.arg("-H").arg(format!("@{}", file.display()));
    }
    if let Some(ct) = content_type {
        cmd.arg("-H").arg(format!("Content-Type: {ct}"));
    }
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    let mut child = cmd
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let mut stdin = child.stdin.take().expect("curl stdin");
    if let Some(body) = body {
        stdin
            .write_all(body.as_bytes())
            .map_err(|e| format!("write to curl: {e}"))?;
    }
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait for curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status
        .trim()
        .parse()
        .map_err(|_| format!("no HTTP status in curl's output {text:?}"))?;
    Ok((status, body.to_string()))
}

/// Passes `Ok`, and a 409 AlreadyExists as `Ok`.
fn ignore_exists(result: Result<Value, ApiError>) -> Result<(), ApiError> {
    match result {
        Err(e) if e.status() == Some(409) => Ok(()),
        other => other.map(drop),
    }
}

/// A pod's Ready and ContainersReady conditions.
fn pod_conditions(ready: bool) -> Value {
    let status = if ready { "True" } else { "False" };
    json!([
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
        {"type": "ContainersReady", "status": status, "lastTransitionTime": now()},
        {"type": "Ready", "status": status, "lastTransitionTime": now()},
    ])
}

/// The current time as RFC 3339 (UTC, seconds).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 (UTC), without a date crate.
fn rfc3339(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
