//! What the Kubernetes source reports: its state for `podswitchctl status`
//! and `/v1/health`, and its metrics for `/metrics` (named as kube-proxy's
//! where they mean the same: `network_programming_duration_seconds` from
//! an EndpointSlice's `last-change-trigger-time` to the snapshot being live).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A Prometheus histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Counts one observation.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (bound, count) in BUCKETS.iter().zip(&mut self.counts) {
            if secs <= *bound {
                *count += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    listed: BTreeSet<&'static str>,
    error: Option<String>,
    error_at: Option<SystemTime>,
    last_sync: Option<SystemTime>,
    generation: u64,
    syncs: u64,
    sync_failures: u64,
    watch_errors: u64,
    conntrack_flushed: u64,
    objects: [usize; 3],
    skipped: BTreeMap<(&'static str, &'static str), u64>,
    ignored: BTreeMap<&'static str, u64>,
    logged: BTreeSet<String>,
    sync_duration: Histogram,
    programming: Histogram,
}

/// The Kubernetes source's state and counters, shared with the API.
#[derive(Debug)]
pub struct SourceStatus {
    node_name: String,
    inner: Mutex<Inner>,
}

impl SourceStatus {
    /// A source for node `node_name` that has not listed yet.
    pub fn new(node_name: &str) -> SourceStatus {
        SourceStatus {
            node_name: node_name.to_string(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `syncing` until every kind listed, `degraded` after an error until
    /// the next relist succeeds, else `synced`.
    pub fn state(&self) -> &'static str {
        let inner = self.inner();
        if inner.error.is_some() {
            "degraded"
        } else if inner.listed.len() < 3 {
            "syncing"
        } else {
            "synced"
        }
    }

    /// The source could not start (no client) or reach the API.
    pub fn set_error(&self, message: String) {
        let mut inner = self.inner();
        inner.error = Some(message);
        inner.error_at = Some(SystemTime::now());
    }

    /// A watcher failed (it lists again after a backoff).
    pub fn watch_error(&self, message: &str) {
        let mut inner = self.inner();
        inner.watch_errors += 1;
        inner.error = Some(message.to_string());
        inner.error_at = Some(SystemTime::now());
    }

    /// A kind finished a (re)list: the API answers again.
    pub fn listed(&self, kind: &'static str) {
        let mut inner = self.inner();
        inner.listed.insert(kind);
        inner.error = None;
    }

    /// An object (or part of one) left out; logged once per distinct message.
    pub fn skipped(&self, kind: &'static str, reason: &'static str, message: &str) {
        let mut inner = self.inner();
        *inner.skipped.entry((kind, reason)).or_insert(0) += 1;
        if inner.logged.len() < 10_000 && inner.logged.insert(message.to_string()) {
            tracing::warn!(kind, reason, "Kubernetes object skipped: {message}");
        }
    }

    /// A Service that is not podswitch's to proxy.
    pub fn ignored(&self, reason: &'static str) {
        *self.inner().ignored.entry(reason).or_insert(0) += 1;
    }

    /// Objects held, by kind.
    pub fn objects(&self, services: usize, slices: usize, nodes: usize) {
        self.inner().objects = [services, slices, nodes];
    }

    /// A change went live `latency` after its trigger time.
    pub fn programmed(&self, latency: Duration) {
        self.inner().programming.observe(latency);
    }

    /// A sync published `generation` in `elapsed`, removing `flushed`
    /// conntrack entries of endpoints no longer ready.
    pub fn synced(&self, elapsed: Duration, generation: u64, flushed: usize) {
        let mut inner = self.inner();
        inner.conntrack_flushed += flushed as u64;
        inner.sync_duration.observe(elapsed);
        inner.syncs += 1;
        inner.generation = generation;
        inner.last_sync = Some(SystemTime::now());
    }

    /// A sync failed as a whole (the last state stays).
    pub fn sync_failed(&self, message: &str) {
        let mut inner = self.inner();
        inner.sync_failures += 1;
        inner.error = Some(format!("sync failed: {message}"));
        inner.error_at = Some(SystemTime::now());
    }

    /// Network programming latencies observed so far.
    pub fn programming_count(&self) -> u64 {
        self.inner().programming.count()
    }

    /// The status as JSON (for `/v1/health` and `podswitchctl status`).
    pub fn json(&self) -> Value {
        let state = self.state();
        let inner = self.inner();
        let unix = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
        };
        let skipped: BTreeMap<String, u64> = inner
            .skipped
            .iter()
            .map(|((k, r), n)| (format!("{k}/{r}"), *n))
            .collect();
        json!({
            "kind": "kubernetes",
            "node_name": self.node_name,
            "state": state,
            "error": inner.error,
            "last_sync_unix": unix(inner.last_sync),
            "generation": inner.generation,
            "syncs": inner.syncs,
            "watch_errors": inner.watch_errors,
            "objects": {
                "services": inner.objects[0],
                "endpointslices": inner.objects[1],
                "nodes": inner.objects[2],
            },
            "skipped": skipped,
            "ignored": inner.ignored,
        })
    }

    /// Prometheus lines.
    pub fn metrics(&self) -> String {
        let state = self.state();
        let inner = self.inner();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP podswitch_kubernetes_up 1 when the Kubernetes source is synced, 0 while syncing or degraded.\n# TYPE podswitch_kubernetes_up gauge\npodswitch_kubernetes_up {}",
            u8::from(state == "synced")
        );
        let _ = writeln!(
            out,
            "# HELP podswitch_kubernetes_objects Kubernetes objects held, by kind.\n# TYPE podswitch_kubernetes_objects gauge"
        );
        for (kind, n) in ["services", "endpointslices", "nodes"]
            .iter()
            .zip(inner.objects)
        {
            let _ = writeln!(out, "podswitch_kubernetes_objects{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP podswitch_kubernetes_skipped_total Kubernetes objects (or parts) not applied, by kind and reason.\n# TYPE podswitch_kubernetes_skipped_total counter"
        );
        for ((kind, reason), n) in &inner.skipped {
            let _ = writeln!(
                out,
                "podswitch_kubernetes_skipped_total{{kind=\"{kind}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP podswitch_kubernetes_ignored_services_total Services not proxied by podswitch, by reason.\n# TYPE podswitch_kubernetes_ignored_services_total counter"
        );
        for (reason, n) in &inner.ignored {
            let _ = writeln!(
                out,
                "podswitch_kubernetes_ignored_services_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP podswitch_kubernetes_watch_restarts_total Watch or list failures (each followed by a relist).\n# TYPE podswitch_kubernetes_watch_restarts_total counter\npodswitch_kubernetes_watch_restarts_total {}",
            inner.watch_errors
        );
        let _ = writeln!(
            out,
            "# HELP podswitch_kubernetes_conntrack_flushed_total UDP conntrack entries removed because their endpoint stopped being ready.\n# TYPE podswitch_kubernetes_conntrack_flushed_total counter\npodswitch_kubernetes_conntrack_flushed_total {}",
            inner.conntrack_flushed
        );
        let _ = writeln!(
            out,
            "# HELP podswitch_kubernetes_sync_failures_total Syncs refused as a whole.\n# TYPE podswitch_kubernetes_sync_failures_total counter\npodswitch_kubernetes_sync_failures_total {}",
            inner.sync_failures
        );
        if let Some(t) = inner
            .last_sync
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        {
            let _ = writeln!(
                out,
                "# HELP podswitch_kubernetes_last_sync_timestamp_seconds When the last sync went live.\n# TYPE podswitch_kubernetes_last_sync_timestamp_seconds gauge\npodswitch_kubernetes_last_sync_timestamp_seconds {}",
                t.as_secs_f64()
            );
        }
        inner.sync_duration.render(
            &mut out,
            "podswitch_kubernetes_sync_duration_seconds",
            "Time to apply one sync (translate, store, publish).",
        );
        inner.programming.render(
            &mut out,
            "network_programming_duration_seconds",
            "From an EndpointSlice's last-change-trigger-time to the snapshot being live (as kube-proxy's).",
        );
        out
    }
}
