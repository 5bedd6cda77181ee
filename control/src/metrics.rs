//! Prometheus text exposition of the dataplane and API counters, read from
//! the workers' counters (relaxed loads; the workers never wait for it).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::stats::Stats;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes a gauge family of one value.
fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// Writes a counter family with one label, a sample per key of `values`.
fn labeled_counters(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<String, u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (key, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {n}", escape(key));
    }
}

/// Renders the metrics page.
pub fn render(stats: &Stats, api_requests: &BTreeMap<(String, u16), u64>) -> String {
    let mut out = String::new();
    gauge(
        &mut out,
        "podswitch_workers",
        "Worker threads.",
        stats.workers,
    );
    gauge(
        &mut out,
        "podswitch_snapshot_generation",
        "Generation of the configuration snapshot in use.",
        stats.generation,
    );
    for (metric, help, get) in [
        (
            "podswitch_port_rx_packets_total",
            "Frames received per port.",
            (|p: &crate::stats::PortStats| p.rx_packets) as fn(&crate::stats::PortStats) -> u64,
        ),
        (
            "podswitch_port_rx_bytes_total",
            "Bytes received per port.",
            |p| p.rx_bytes,
        ),
        (
            "podswitch_port_tx_packets_total",
            "Frames sent per port.",
            |p| p.tx_packets,
        ),
        (
            "podswitch_port_tx_bytes_total",
            "Bytes sent per port.",
            |p| p.tx_bytes,
        ),
        (
            "podswitch_port_rx_errors_total",
            "Frames the port's device failed to deliver or gave unusable (bad vnet header, cut short, too long).",
            |p| p.rx_errors,
        ),
        (
            "podswitch_port_rx_dropped_total",
            "Frames the kernel dropped before the workers read them (AF_PACKET ring or socket buffer full).",
            |p| p.rx_dropped,
        ),
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for p in &stats.ports {
            let _ = writeln!(out, "{metric}{{port=\"{}\"}} {}", escape(&p.name), get(p));
        }
    }
    let _ = writeln!(
        out,
        "# HELP podswitch_port_up 1 when the port's device is open, 0 when it is down (see the port's down_reason).\n# TYPE podswitch_port_up gauge"
    );
    for p in &stats.ports {
        let up = u8::from(p.state != "down");
        let _ = writeln!(
            out,
            "podswitch_port_up{{port=\"{}\"}} {up}",
            escape(&p.name)
        );
    }
    labeled_counters(
        &mut out,
        "podswitch_drops_total",
        "Frames dropped, by reason.",
        "reason",
        &stats.drops,
    );
    labeled_counters(
        &mut out,
        "podswitch_events_total",
        "Pipeline events.",
        "event",
        &stats.events,
    );
    if let Some(ct) = &stats.conntrack {
        gauge(
            &mut out,
            "podswitch_conntrack_entries",
            "Connections tracked.",
            ct.entries,
        );
        gauge(
            &mut out,
            "podswitch_conntrack_capacity",
            "Most connections the table holds.",
            ct.capacity,
        );
        gauge(
            &mut out,
            "podswitch_conntrack_memory_bytes",
            "Memory of the connection table.",
            ct.memory_bytes,
        );
        labeled_counters(
            &mut out,
            "podswitch_conntrack_total",
            "Connection table operations: inserted, expired, evicted_unassured, evicted_assured, ...",
            "op",
            &ct.counters,
        );
    }
    if let Some(state) = &stats.state {
        gauge(
            &mut out,
            "podswitch_state_attached_entries",
            "Connections the daemon found in the state file at start and kept.",
            state.attached_entries,
        );
        let _ = writeln!(
            out,
            "# HELP podswitch_state_discarded_total State files discarded at start (incompatible or damaged).\n# TYPE podswitch_state_discarded_total counter\npodswitch_state_discarded_total {}",
            state.discarded
        );
    }
    let _ = writeln!(
        out,
        "# HELP podswitch_api_requests_total Control API requests, by method and status.\n# TYPE podswitch_api_requests_total counter"
    );
    for ((method, status), n) in api_requests {
        let _ = writeln!(
            out,
            "podswitch_api_requests_total{{method=\"{}\",status=\"{status}\"}} {n}",
            escape(method)
        );
    }
    out
}
