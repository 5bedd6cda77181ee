//! The read side of the control plane: what the last commit published,
//! for the API's reads (health, stats, metrics, the GETs) and the daemon's
//! stats file, none of which waits for a change in progress.
//!
//! Writers are serialised by the lock around [`Control`](super::Control)
//! and may hold it for seconds (a `PUT /v1/state` of 100,000 services, a
//! store fsync, a device opened). A reader never takes that lock: the
//! snapshot is an `ArcSwap`, the counters are atomics, and the committed
//! [`ApiState`] sits behind its own `RwLock`, which a writer takes for
//! writing only to swap in a state it has already validated, built and
//! stored (microseconds), never while it builds one; what it replaces is
//! dropped after. A reader holding the state's read guard sees the
//! snapshot of the same commit.
//! (An `ArcSwap` of the state itself would cost a copy of every service per
//! change, 100,000 of them at scale; the lock costs none.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use arc_swap::ArcSwap;
use podswitch_dataplane::config::{NodeConfig, Snapshot};
use podswitch_dataplane::io::PortStates;
use podswitch_dataplane::packet::WorkerCounters;
use podswitch_dataplane::pipeline::SharedTables;

use crate::mirror::MirrorCounters;
use crate::state::ApiState;
use crate::stats::Stats;

/// What the last commit published, and the running dataplane's counters.
pub struct ControlView {
    /// The node's config file.
    file: NodeConfig,
    /// The committed state.
    state: RwLock<ApiState>,
    /// The published snapshot (the workers read it too).
    snapshots: Arc<ArcSwap<Snapshot>>,
    /// Which ports are down, shared with the workers.
    port_states: Arc<PortStates>,
    /// True while the workers run.
    forwarding: AtomicBool,
    /// Per-worker counters, once the workers run.
    counters: OnceLock<Vec<Arc<WorkerCounters>>>,
    /// The tables the workers share, once they run.
    tables: OnceLock<Arc<SharedTables>>,
    /// The mirrors' counters, once the daemon's mirror outputs run.
    mirrors: OnceLock<MirrorCounters>,
}

impl ControlView {
    /// The view of a restored control plane.
    pub(super) fn new(file: NodeConfig, state: ApiState, snapshot: Arc<Snapshot>) -> ControlView {
        ControlView {
            file,
            state: RwLock::new(state),
            snapshots: Arc::new(ArcSwap::from(snapshot)),
            port_states: Arc::new(PortStates::default()),
            forwarding: AtomicBool::new(false),
            counters: OnceLock::new(),
            tables: OnceLock::new(),
            mirrors: OnceLock::new(),
        }
    }

    /// The node's config file.
    pub fn file(&self) -> &NodeConfig {
        &self.file
    }

    /// The committed state (held briefly: a writer waits to publish).
    pub fn state(&self) -> RwLockReadGuard<'_, ApiState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The state for the writer to publish into.
    pub(super) fn state_mut(&self) -> RwLockWriteGuard<'_, ApiState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The published snapshot cell (workers read it).
    pub fn snapshots(&self) -> Arc<ArcSwap<Snapshot>> {
        Arc::clone(&self.snapshots)
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.load_full()
    }

    /// Publishes the state in `state` (already changed under its write
    /// guard) with `snapshot`, so no reader sees one without the other;
    /// returns the snapshot replaced, for the caller to drop after.
    pub(super) fn publish(
        &self,
        state: RwLockWriteGuard<'_, ApiState>,
        snapshot: Snapshot,
    ) -> Arc<Snapshot> {
        let old = self.snapshots.swap(Arc::new(snapshot));
        drop(state);
        old
    }

    /// Which ports are down and why (the daemon and the workers mark them).
    pub fn port_states(&self) -> Arc<PortStates> {
        Arc::clone(&self.port_states)
    }

    /// Records the running workers' counters; forwarding from now on.
    pub(super) fn set_forwarding(&self, counters: Vec<Arc<WorkerCounters>>) {
        let _ = self.counters.set(counters);
        self.forwarding.store(true, Ordering::Release);
    }

    /// Records the tables the workers share.
    pub(super) fn set_tables(&self, tables: Arc<SharedTables>) {
        let _ = self.tables.set(tables);
    }

    /// Records the mirrors' counters.
    pub(super) fn set_mirrors(&self, mirrors: MirrorCounters) {
        let _ = self.mirrors.set(mirrors);
    }

    /// True once the workers run.
    pub fn forwarding(&self) -> bool {
        self.forwarding.load(Ordering::Acquire)
    }

    /// Marks the dataplane as stopped (shutdown).
    pub fn set_stopped(&self) {
        self.forwarding.store(false, Ordering::Release);
    }

    /// Worker count.
    pub fn workers(&self) -> usize {
        self.worker_counters().len()
    }

    /// Per-worker counters.
    pub fn worker_counters(&self) -> &[Arc<WorkerCounters>] {
        self.counters.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// The tables the workers share, once they run.
    pub fn tables(&self) -> Option<Arc<SharedTables>> {
        self.tables.get().cloned()
    }

    /// Counters summed over workers.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::collect(&self.snapshot(), self.worker_counters(), &self.port_states);
        stats.conntrack = self
            .tables
            .get()
            .map(|t| crate::stats::ConntrackStats::read(t));
        stats
    }

    /// The down ports' names with their reasons, in port order.
    pub fn ports_down(&self) -> Vec<(String, String)> {
        let snapshot = self.snapshot();
        self.port_states
            .down()
            .into_iter()
            .filter_map(|(id, reason)| Some((snapshot.port(id)?.name.clone(), reason)))
            .collect()
    }

    /// Logs each port gone down since the last call, once (workers mark
    /// ports down without logging).
    pub fn log_ports_down(&self) {
        let snapshot = self.snapshot();
        for (id, reason) in self.port_states.take_unreported() {
            // A port deleted meanwhile (its queue failed while it went) is no news.
            let Some(port) = snapshot.port(id).map(|p| p.name.as_str()) else {
                continue;
            };
            tracing::error!(port, %reason, "port down; the other ports forward (delete the port, or add it again once its pod is back)");
        }
    }

    /// The mirrors with their counters (for `GET /v1/mirrors`).
    pub fn mirror_views(&self) -> Vec<serde_json::Value> {
        let counters = self.mirrors.get();
        self.state()
            .mirrors
            .values()
            .filter_map(|m| {
                let mut v = serde_json::to_value(m).ok()?;
                let counts = counters.and_then(|c| c.counts(&m.name));
                let obj = v.as_object_mut()?;
                obj.insert("active".into(), counts.is_some().into());
                let (c, errors) = counts.unwrap_or_default();
                obj.insert(
                    "counters".into(),
                    serde_json::json!({
                        "frames": c.frames, "bytes": c.bytes, "dropped": c.dropped,
                        "write_errors": errors,
                    }),
                );
                Some(v)
            })
            .collect()
    }

    /// Prometheus lines of the active mirror sessions.
    pub fn mirror_metrics(&self) -> String {
        self.mirrors
            .get()
            .map(MirrorCounters::metrics)
            .unwrap_or_default()
    }

    /// Ports with their id, origin and counters (for `GET /v1/ports`).
    pub fn port_views(&self) -> Vec<serde_json::Value> {
        let (snapshot, config, api_ports) = {
            let state = self.state();
            let api_ports: Vec<String> = state.ports.keys().cloned().collect();
            let config = state.effective_config(&self.file);
            (self.snapshot(), config, api_ports)
        };
        let stats = self.stats();
        snapshot
            .ports
            .iter()
            .filter_map(|spec| {
                let section = config.ports.iter().find(|p| p.name == spec.name)?;
                let mut v = serde_json::to_value(section).ok()?;
                let counters = stats
                    .ports
                    .iter()
                    .find(|p| p.name == spec.name)
                    .cloned()
                    .unwrap_or_default();
                let obj = v.as_object_mut()?;
                obj.retain(|_, value| !value.is_null());
                obj.insert("id".into(), spec.id.0.into());
                // The MTU in effect (a pod's default follows the overlay).
                obj.insert("mtu".into(), spec.mtu.into());
                let source = if api_ports.contains(&spec.name) {
                    "api"
                } else {
                    "config"
                };
                obj.insert("source".into(), source.into());
                obj.insert("state".into(), counters.state.clone().into());
                if let Some(reason) = &counters.down_reason {
                    obj.insert("down_reason".into(), reason.clone().into());
                }
                obj.insert(
                    "counters".into(),
                    serde_json::json!({
                        "rx_packets": counters.rx_packets, "rx_bytes": counters.rx_bytes,
                        "tx_packets": counters.tx_packets, "tx_bytes": counters.tx_bytes,
                        "rx_errors": counters.rx_errors, "rx_dropped": counters.rx_dropped,
                    }),
                );
                Some(v)
            })
            .collect()
    }
}
