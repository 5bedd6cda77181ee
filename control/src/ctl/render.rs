//! Output of `podswitchctl`: aligned tables, `show` listings, and the
//! server's JSON pretty-printed as the server ordered it.
//!
//! `serde_json::Value` sorts object keys (the `preserve_order` feature would
//! change that for the whole workspace), so `-o json` re-indents the server's
//! bytes instead of re-serializing them, and listings order fields by
//! [`FIELD_ORDER`], the order of the API documentation.

use serde_json::{Map, Value};

/// Spaces between table columns (as kubectl).
const COLUMN_GAP: usize = 3;

/// What an absent or null field shows as (as kubectl).
pub const NONE: &str = "<none>";

/// A table of plain aligned columns with a header row in capitals.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Appends a row (one cell per column).
    pub fn push(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether the table has no rows besides the header.
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 1
    }

    /// The table as lines, each starting with `indent` spaces; the last
    /// column is not padded, so no line ends in spaces.
    pub fn render(&self, indent: usize) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = " ".repeat(indent);
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + COLUMN_GAP;
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The order fields are listed in: the order of `docs/api.md`. Unknown
/// fields follow, alphabetically.
pub const FIELD_ORDER: &[&str] = &[
    "name",
    "id",
    "kind",
    "source",
    "state",
    "down_reason",
    "forwarding",
    "workers",
    "generation",
    "ports_down",
    "ifname",
    "netns",
    "pod_ifname",
    "mac",
    "ips",
    "mtu",
    "offload",
    "rx_ring",
    "gateway",
    "gateway_mac",
    "uplink",
    "protocol",
    "port",
    "address",
    "mac_aging_secs",
    "cluster_ip",
    "target_port",
    "node_port",
    "session_affinity",
    "affinity_timeout_secs",
    "ready",
    "terminating",
    "node",
    "node_ip",
    "pod_cidr",
    "vni",
    "prefix",
    "via",
    "ports",
    "direction",
    "stage",
    "filter",
    "iface",
    "routes",
    "services",
    "nodes",
    "mirrors",
    "endpoints",
    "counters",
    "rx_packets",
    "rx_bytes",
    "tx_packets",
    "tx_bytes",
    "rx_dropped",
    "rx_errors",
];

fn field_rank(key: &str) -> (usize, &str) {
    let rank = FIELD_ORDER
        .iter()
        .position(|k| *k == key)
        .unwrap_or(FIELD_ORDER.len());
    (rank, key)
}

/// The keys of `object` in listing order.
fn ordered_keys(object: &Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_by_key(|k| field_rank(k));
    keys
}

/// A scalar as a table cell: strings bare, null as `<none>`, lists joined
/// with commas, objects as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => NONE.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => NONE.to_string(),
        Value::Array(items) if items.iter().all(is_scalar) => {
            items.iter().map(cell).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// `object[key]` as a cell (`<none>` when absent).
pub fn field(object: &Value, key: &str) -> String {
    object.get(key).map_or_else(|| NONE.to_string(), cell)
}

fn is_scalar(value: &Value) -> bool {
    !matches!(value, Value::Array(_) | Value::Object(_))
}

/// One object as an indented `key: value` listing, like `kubectl describe`:
/// nested objects are indented below their key, and lists of objects become
/// tables.
pub fn describe(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(object) => describe_object(&mut out, object, 0),
        other => {
            out.push_str(&cell(other));
            out.push('\n');
        }
    }
    out
}

fn describe_object(out: &mut String, object: &Map<String, Value>, indent: usize) {
    let keys = ordered_keys(object);
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
    let pad = " ".repeat(indent);
    for key in keys {
        let value = &object[key];
        let label = format!("{key}:");
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}{label}\n"));
                describe_object(out, inner, indent + 2);
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                out.push_str(&format!("{pad}{label}\n"));
                out.push_str(&object_table(items).render(indent + 2));
            }
            _ => {
                let text = match value {
                    Value::Array(items) if items.iter().all(is_scalar) && !items.is_empty() => {
                        items.iter().map(cell).collect::<Vec<_>>().join(", ")
                    }
                    other => cell(other),
                };
                out.push_str(&format!("{pad}{label:width$}  {text}\n"));
            }
        }
    }
}

/// A table of objects: one column per key (in listing order), headers in
/// capitals with `-` for `_`.
fn object_table(items: &[Value]) -> Table {
    let mut keys: Vec<&str> = Vec::new();
    for item in items.iter().filter_map(Value::as_object) {
        for key in item.keys() {
            if !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
    }
    keys.sort_by_key(|k| field_rank(k));
    let headers: Vec<String> = keys
        .iter()
        .map(|k| k.to_ascii_uppercase().replace('_', "-"))
        .collect();
    let mut table = Table::new(&headers.iter().map(String::as_str).collect::<Vec<_>>());
    for item in items {
        table.push(keys.iter().map(|k| field(item, k)).collect());
    }
    table
}

/// `body` (JSON text) re-indented with two spaces, keys and numbers exactly
/// as sent; an error if it is not JSON.
pub fn pretty_json(body: &[u8]) -> Result<String, serde_json::Error> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
    let mut out: Vec<u8> = Vec::with_capacity(body.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    let mut bytes = body.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if in_string {
            out.push(b);
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                while bytes.next_if(u8::is_ascii_whitespace).is_some() {}
                let close = if b == b'{' { b'}' } else { b']' };
                if bytes.next_if_eq(&close).is_some() {
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            other => out.push(other),
        }
    }
    // The input was valid UTF-8 (serde_json checked), and only ASCII
    // whitespace outside strings was dropped or added.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_pads_all_but_the_last_column() {
        let mut table = Table::new(&["NAME", "KIND", "IPS"]);
        table.push(vec!["pod-a".into(), "tap".into(), "10.244.1.2".into()]);
        table.push(vec!["up0".into(), "afpacket".into(), NONE.into()]);
        assert_eq!(
            table.render(0),
            "NAME    KIND       IPS\n\
             pod-a   tap        10.244.1.2\n\
             up0     afpacket   <none>\n"
        );
    }

    #[test]
    fn pretty_json_matches_serde_json_and_keeps_the_server_order() {
        let value = json!({
            "a": [1, 2.5, -3e-7, {"b": null, "c": []}, {}],
            "d": "x, y: {z} [\"quoted\"] \\",
            "e": {"f": true, "g": "ü"},
            "h": 18446744073709551615u64
        });
        let compact = serde_json::to_string(&value).unwrap();
        assert_eq!(
            pretty_json(compact.as_bytes()).unwrap(),
            serde_json::to_string_pretty(&value).unwrap()
        );
        let spaced = b" {\"z\" : 1 ,\n \"a\": [ ] , \"m\" : { } }\n";
        assert_eq!(
            pretty_json(spaced).unwrap(),
            "{\n  \"z\": 1,\n  \"a\": [],\n  \"m\": {}\n}"
        );
        assert!(pretty_json(b"{\"a\": ").is_err());
    }

    #[test]
    fn describe_orders_fields_and_nests() {
        let port = json!({
            "source": "api", "name": "pod-a", "ips": ["10.244.1.2", "10.244.1.3"],
            "kind": "tap", "netns": null, "zeta": 1,
            "counters": {"tx_bytes": 4, "rx_packets": 1, "rx_bytes": 2, "tx_packets": 3},
        });
        assert_eq!(
            describe(&port),
            "name:      pod-a\n\
             kind:      tap\n\
             source:    api\n\
             netns:     <none>\n\
             ips:       10.244.1.2, 10.244.1.3\n\
             counters:\n\
            \x20 rx_packets:  1\n\
            \x20 rx_bytes:    2\n\
            \x20 tx_packets:  3\n\
            \x20 tx_bytes:    4\n\
             zeta:      1\n"
        );
        let service = json!({
            "name": "default/web",
            "endpoints": [{"address": "10.244.1.5", "ready": true, "node": "node-a"}],
        });
        assert_eq!(
            describe(&service),
            "name:       default/web\n\
             endpoints:\n\
            \x20 ADDRESS      READY   NODE\n\
            \x20 10.244.1.5   true    node-a\n"
        );
    }
}
