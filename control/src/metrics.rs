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

/// Renders the metrics page.
pub fn render(stats: &Stats, api_requests: &BTreeMap<(String, u16), u64>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        name.to_string()
    };
    let _ = family("podswitch_workers", "Worker threads.", "gauge");
    let mut s = format!("podswitch_workers {}\n", stats.workers);
    let _ = write!(s, "");
    out.push_str(&s);
    let gen_name = "podswitch_snapshot_generation";
    let _ = writeln!(
        out,
        "# HELP {gen_name} Generation of the configuration snapshot in use.\n# TYPE {gen_name} gauge\n{gen_name} {}",
        stats.generation
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
    ] {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for p in &stats.ports {
            let _ = writeln!(out, "{metric}{{port=\"{}\"}} {}", escape(&p.name), get(p));
        }
    }
    let _ = writeln!(
        out,
        "# HELP podswitch_drops_total Frames dropped, by reason.\n# TYPE podswitch_drops_total counter"
    );
    for (reason, n) in &stats.drops {
        let _ = writeln!(
            out,
            "podswitch_drops_total{{reason=\"{}\"}} {n}",
            escape(reason)
        );
    }
    let _ = writeln!(
        out,
        "# HELP podswitch_events_total Pipeline events.\n# TYPE podswitch_events_total counter"
    );
    for (event, n) in &stats.events {
        let _ = writeln!(
            out,
            "podswitch_events_total{{event=\"{}\"}} {n}",
            escape(event)
        );
    }
    if let Some(ct) = &stats.conntrack {
        for (name, help, value) in [
            (
                "podswitch_conntrack_entries",
                "Connections tracked.",
                ct.entries,
            ),
            (
                "podswitch_conntrack_capacity",
                "Most connections the table holds.",
                ct.capacity,
            ),
            (
                "podswitch_conntrack_memory_bytes",
                "Memory of the connection table.",
                ct.memory_bytes,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP podswitch_conntrack_total Connection table operations: inserted, expired, evicted_unassured, evicted_assured, ...\n# TYPE podswitch_conntrack_total counter"
        );
        for (op, n) in &ct.counters {
            let _ = writeln!(
                out,
                "podswitch_conntrack_total{{op=\"{}\"}} {n}",
                escape(op)
            );
        }
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
