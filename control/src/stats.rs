//! Counter snapshots summed over workers, written as JSON for operators and
//! tests (the control API will serve the same numbers).

use std::path::Path;
use std::sync::Arc;

use podswitch_dataplane::config::Snapshot;
use podswitch_dataplane::io::PortStates;
use podswitch_dataplane::packet::{DropReason, Event, WorkerCounters};
use podswitch_dataplane::pipeline::SharedTables;

pub mod kept;

/// Totals of one port.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PortStats {
    /// Port name.
    pub name: String,
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the device failed to deliver or gave unusable (receive
    /// errors, bad vnet headers, cut short, too long).
    #[serde(default)]
    pub rx_errors: u64,
    /// Frames the kernel dropped before the workers read them (AF_PACKET
    /// ring or socket buffer full).
    #[serde(default)]
    pub rx_dropped: u64,
    /// `up`, or `down` when its device could not be opened or vanished.
    #[serde(default = "up")]
    pub state: String,
    /// Why the port is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_reason: Option<String>,
}

fn up() -> String {
    "up".to_string()
}

/// Counters of the whole dataplane.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Generation of the configuration snapshot in use.
    pub generation: u64,
    /// Worker threads.
    pub workers: usize,
    /// Per port, in port order.
    pub ports: Vec<PortStats>,
    /// Drops by reason (every reason, zeros included).
    pub drops: std::collections::BTreeMap<String, u64>,
    /// Events (every event, zeros included).
    pub events: std::collections::BTreeMap<String, u64>,
    /// The connection-tracking table, once the workers run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConntrackStats>,
    /// The state file (`podswitchd run` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateStats>,
}

/// What the daemon found in the state file at start.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct StateStats {
    /// The file.
    pub file: std::path::PathBuf,
    /// The tables live in it (they outlive the process).
    pub persistent: bool,
    /// Connections found in it and kept.
    pub attached_entries: u64,
    /// The previous process stopped cleanly.
    pub clean_stop: bool,
    /// State files discarded at start (incompatible or damaged): 0 or 1.
    pub discarded: u64,
    /// Why it was discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_reason: Option<String>,
    /// Microseconds spent opening and attaching it.
    pub attach_us: u64,
    /// Of those, the microseconds spent settling it once the previous
    /// process had stopped (a takeover's share of the forwarding gap).
    #[serde(default)]
    pub settle_us: u64,
    /// The conntrack free lists and per-source counts were made from the
    /// entries (the previous process was killed, or wrote an older layout)
    /// rather than taken as it kept them.
    #[serde(default)]
    pub lists_rebuilt: bool,
    /// Learned MACs found in it and kept.
    #[serde(default)]
    pub attached_macs: u64,
    /// Resolved neighbours found in it and kept.
    #[serde(default)]
    pub attached_neighbours: u64,
    /// The counters go on from the totals it held.
    #[serde(default)]
    pub counters_continued: bool,
}

static STATE: std::sync::OnceLock<StateStats> = std::sync::OnceLock::new();

/// Records what the daemon found in the state file (once, at start).
pub fn set_state(state: StateStats) {
    let _ = STATE.set(state);
}

/// Size and counters of the connection-tracking table.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Entries in the table.
    pub entries: u64,
    /// Most entries the table holds.
    pub capacity: u64,
    /// Memory the table holds, in bytes.
    pub memory_bytes: u64,
    /// Entries created, removed, expired, evicted (unassured / assured
    /// first), inserts refused as clashes, and TCP segments found invalid,
    /// out of window or ignored.
    pub counters: std::collections::BTreeMap<String, u64>,
}

impl ConntrackStats {
    /// Reads the shared table.
    pub fn read(tables: &SharedTables) -> ConntrackStats {
        let t = &tables.conntrack;
        let s = t.stats();
        let counters = [
            ("inserted", s.inserted),
            ("removed", s.removed),
            ("expired", s.expired),
            ("evicted_unassured", s.evicted_unassured),
            ("evicted_assured", s.evicted_assured),
            ("clashes", s.clashes),
            ("tcp_invalid", s.tcp_invalid),
            ("tcp_out_of_window", s.tcp_out_of_window),
            ("tcp_ignored", s.tcp_ignored),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        ConntrackStats {
            entries: t.len() as u64,
            capacity: t.capacity() as u64,
            memory_bytes: t.memory_bytes() as u64,
            counters,
        }
    }
}

impl Stats {
    /// Sums `workers`' counters for the ports of `snapshot`, with the
    /// ports' `states`, from where the previous process left them
    /// ([`kept`]); publishes the totals.
    pub fn collect(
        snapshot: &Snapshot,
        workers: &[Arc<WorkerCounters>],
        states: &PortStates,
    ) -> Stats {
        let ports = snapshot
            .ports
            .iter()
            .map(|p| {
                let down_reason = states.down_reason(p.id);
                let mut s = PortStats {
                    name: p.name.clone(),
                    state: if down_reason.is_some() { "down" } else { "up" }.to_string(),
                    down_reason,
                    ..PortStats::default()
                };
                for c in workers.iter().filter_map(|w| w.port(p.id)) {
                    s.rx_packets += c.rx_packets.get();
                    s.rx_bytes += c.rx_bytes.get();
                    s.tx_packets += c.tx_packets.get();
                    s.tx_bytes += c.tx_bytes.get();
                    s.rx_errors += c.rx_errors.get();
                    s.rx_dropped += c.rx_dropped.get();
                }
                s
            })
            .collect();
        let drops = DropReason::ALL
            .iter()
            .map(|r| {
                (
                    r.as_str().to_string(),
                    workers.iter().map(|w| w.drops(*r)).sum(),
                )
            })
            .collect();
        let events = Event::ALL
            .iter()
            .map(|e| {
                (
                    e.as_str().to_string(),
                    workers.iter().map(|w| w.events(*e)).sum(),
                )
            })
            .collect();
        let mut stats = Stats {
            generation: snapshot.generation,
            workers: workers.len(),
            ports,
            drops,
            events,
            conntrack: None,
            state: STATE.get().cloned(),
        };
        kept::carry(&mut stats);
        stats
    }

    /// Writes the stats as JSON to `path` atomically (write, then rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())?;
        std::fs::rename(tmp, path)
    }
}
