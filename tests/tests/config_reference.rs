//! `docs/config.md` against the code: every field of the node configuration
//! and of the CNI network configuration has a row, every row names a field
//! that exists, and the defaults the doc states for fields with serde
//! defaults are the ones the code applies. The field lists come from serde
//! itself ([`struct_fields`]), so a field added to a section, or a new
//! section, fails here until it is documented.

use std::collections::{BTreeMap, BTreeSet};

use podswitch_cni::types::{
    Attachment, DEFAULT_DATA_DIR, DEFAULT_SOCKET, Dns, IpamConf, NetConf, RangeConf, RouteConf,
};
use podswitch_dataplane::config::nat::{
    ConntrackSection, EndpointSection, NatSection, ServiceSection,
};
use podswitch_dataplane::config::{
    BridgeSection, HostSection, IcmpSection, KubernetesSection, NeighbourSection, NodeConfig,
    NodeSection, PortSection, RouteSection, UplinkSection,
};
use podswitch_dataplane::config::{OverlaySection, RemoteNodeSection};
use podswitch_tests::{struct_fields, workspace};

/// One table row of the doc: field, type, default, meaning.
#[derive(Debug, Clone)]
struct Row {
    ty: String,
    default: String,
}

/// The rows of each `## ` part of the doc, keyed by the field name.
fn doc_parts(text: &str) -> BTreeMap<String, BTreeMap<String, Row>> {
    let mut parts: BTreeMap<String, BTreeMap<String, Row>> = BTreeMap::new();
    let mut part = String::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            part = title.trim().to_string();
            continue;
        }
        let Some(rest) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = rest.split(" | ").collect();
        assert!(
            cells.len() >= 4,
            "docs/config.md: a row with < 4 cells: {line}"
        );
        let field = cells[0].trim_end_matches('`').to_string();
        let row = Row {
            ty: cells[1].to_string(),
            default: cells[2].to_string(),
        };
        let rows = parts.entry(part.clone()).or_default();
        assert!(
            rows.insert(field.clone(), row).is_none(),
            "docs/config.md, part {part:?}: `{field}` has two rows"
        );
    }
    parts
}

fn doc() -> (String, BTreeMap<String, BTreeMap<String, Row>>) {
    let path = workspace().join("docs/config.md");
    let text = std::fs::read_to_string(&path).expect("docs/config.md");
    let parts = doc_parts(&text);
    (text, parts)
}

/// `prefix.field` for every field of a struct's list.
fn rows_of(prefix: &str, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .map(|f| {
            if prefix.is_empty() {
                f.to_string()
            } else {
                format!("{prefix}.{f}")
            }
        })
        .collect()
}

/// The documented rows of one `NodeConfig` field (a section), with the
/// section's struct(s) read from serde. `None` for a section this test does
/// not know yet: add it here and to docs/config.md.
fn node_section_rows(section: &str) -> Option<Vec<String>> {
    let rows = match section {
        "node" => rows_of("node", struct_fields::<NodeSection>()),
        "bridge" => rows_of("bridge", struct_fields::<BridgeSection>()),
        "uplink" => rows_of("uplink", struct_fields::<UplinkSection>()),
        "ports" => rows_of("ports[]", struct_fields::<PortSection>()),
        "routes" => rows_of("routes[]", struct_fields::<RouteSection>()),
        "neighbours" => rows_of("neighbours", struct_fields::<NeighbourSection>()),
        "icmp" => rows_of("icmp", struct_fields::<IcmpSection>()),
        "services" => {
            let mut rows = rows_of("services[]", struct_fields::<ServiceSection>());
            rows.extend(rows_of(
                "services[].endpoints[]",
                struct_fields::<EndpointSection>(),
            ));
            rows
        }
        "nat" => rows_of("nat", struct_fields::<NatSection>()),
        "conntrack" => rows_of("conntrack", struct_fields::<ConntrackSection>()),
        "overlay" => rows_of("overlay", struct_fields::<OverlaySection>()),
        "nodes" => rows_of("nodes[]", struct_fields::<RemoteNodeSection>()),
        "kubernetes" => rows_of("kubernetes", struct_fields::<KubernetesSection>()),
        "host" => rows_of("host", struct_fields::<HostSection>()),
        _ => return None,
    };
    Some(rows)
}

/// Every row the node configuration part must have, walked from
/// `NodeConfig`'s own field list.
fn node_rows() -> BTreeSet<String> {
    let sections = struct_fields::<NodeConfig>();
    assert!(
        sections.len() >= 12,
        "NodeConfig's fields: {sections:?} (struct_fields broken?)"
    );
    let mut rows = BTreeSet::new();
    for section in sections {
        let Some(section_rows) = node_section_rows(section) else {
            panic!(
                "NodeConfig has a section `{section}` this test does not know: map it to its \
                 struct in node_section_rows() and document its fields in docs/config.md"
            );
        };
        assert!(
            !section_rows.is_empty(),
            "section {section}: no fields read"
        );
        rows.extend(section_rows);
    }
    rows
}

/// Every row the CNI plugin configuration part must have.
fn cni_plugin_rows() -> BTreeSet<String> {
    let mut rows: BTreeSet<String> = rows_of("", struct_fields::<NetConf>())
        .into_iter()
        .collect();
    rows.extend(rows_of("dns", struct_fields::<Dns>()));
    rows.extend(rows_of("routes[]", struct_fields::<RouteConf>()));
    rows.extend(rows_of("ipam", struct_fields::<IpamConf>()));
    rows.extend(rows_of("ipam.ranges[][]", struct_fields::<RangeConf>()));
    for list in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        rows.extend(rows_of(&format!("{list}[]"), struct_fields::<Attachment>()));
    }
    // Every object-valued field expanded above is itself a field of its parent.
    for container in ["dns", "routes", "ipam", "ipam.ranges"] {
        let (parent, field) = container.rsplit_once('.').unwrap_or(("", container));
        let parent_rows = if parent.is_empty() {
            rows_of("", struct_fields::<NetConf>())
        } else {
            rows_of(parent, struct_fields::<IpamConf>())
        };
        assert!(
            parent_rows.contains(&container.to_string()),
            "{container} ({field}) is not a field any more: update this test"
        );
    }
    rows
}

/// The conflist's own keys (around the plugin objects). The plugin does not
/// parse this wrapper (the runtime does), so the list is the spec's.
const CONFLIST_ROWS: [&str; 3] = ["cniVersion", "name", "plugins"];

fn compare(part: &str, documented: &BTreeMap<String, Row>, expected: &BTreeSet<String>) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|f| !documented.contains_key(*f))
        .collect();
    let unknown: Vec<&String> = documented
        .keys()
        .filter(|f| !expected.contains(*f))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md, part {part:?}: fields of the code without a row: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/config.md, part {part:?}: rows for fields the code does not have: {unknown:?}"
    );
    for (field, row) in documented {
        assert!(
            !row.ty.trim().is_empty() && !row.default.trim().is_empty(),
            "docs/config.md: `{field}` needs a type and a default (or `required`/`none`)"
        );
    }
}

fn part<'a>(
    parts: &'a BTreeMap<String, BTreeMap<String, Row>>,
    title: &str,
) -> &'a BTreeMap<String, Row> {
    parts
        .get(title)
        .unwrap_or_else(|| panic!("docs/config.md has no `## {title}` part with rows"))
}

#[test]
fn every_node_config_field_is_documented_and_every_row_exists() {
    let (text, parts) = doc();
    compare(
        "Node configuration",
        part(&parts, "Node configuration"),
        &node_rows(),
    );
    for section in struct_fields::<NodeConfig>() {
        let heading = [format!("### `[{section}]`"), format!("### `[[{section}]]`")];
        assert!(
            text.lines()
                .any(|l| heading.iter().any(|h| l.starts_with(h))),
            "docs/config.md: no heading for section {section} ({heading:?})"
        );
    }
}

#[test]
fn every_cni_field_is_documented_and_every_row_exists() {
    let (_, parts) = doc();
    compare(
        "CNI plugin configuration",
        part(&parts, "CNI plugin configuration"),
        &cni_plugin_rows(),
    );
    let conflist: BTreeSet<String> = CONFLIST_ROWS.iter().map(|s| s.to_string()).collect();
    compare("CNI conflist", part(&parts, "CNI conflist"), &conflist);
    let plugin = part(&parts, "CNI plugin configuration");
    assert!(plugin["socket"].default.contains(DEFAULT_SOCKET));
    assert!(plugin["ipam.dataDir"].default.contains(DEFAULT_DATA_DIR));
}

/// Leaves of `value` as (row name, value), arrays written `[]`.
fn leaves(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&name, v, out);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for item in items {
                leaves(&format!("{prefix}[]"), item, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// A configuration with one entry in every array section and only the
/// required fields: what it parses to shows every serde default.
const MINIMAL: &str = r#"
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[[ports]]
name = "p"
kind = "tap"
[[services]]
name = "s"
cluster_ip = "10.96.0.1"
protocol = "TCP"
port = 80
endpoints = [{ address = "10.244.1.2" }]
[overlay]
[[nodes]]
name = "n"
node_ip = "192.168.100.2"
pod_cidr = "10.244.2.0/24"
[kubernetes]
"#;

#[test]
fn documented_defaults_are_the_code_defaults() {
    let (_, parts) = doc();
    let rows = part(&parts, "Node configuration");
    let cfg = NodeConfig::from_toml_str(MINIMAL).expect("minimal config parses");
    let given = [
        "bridge.gateway",
        "bridge.gateway_mac",
        "ports[].name",
        "ports[].kind",
        "services[].name",
        "services[].cluster_ip",
        "services[].protocol",
        "services[].port",
        "services[].endpoints[].address",
        "nodes[].name",
        "nodes[].node_ip",
        "nodes[].pod_cidr",
    ];
    let mut found = Vec::new();
    leaves("", &serde_json::to_value(&cfg).unwrap(), &mut found);
    let mut checked = 0;
    for (field, value) in found {
        // `given` fields have no default; a bare name is an empty section (`routes = []`).
        if given.contains(&field.as_str()) || !field.contains('.') {
            continue;
        }
        let shown = match &value {
            serde_json::Value::Null => continue,
            serde_json::Value::Array(a) if a.is_empty() => "[]".to_string(),
            serde_json::Value::String(s) => format!("\"{s}\""),
            other => other.to_string(),
        };
        let row = rows
            .get(&field)
            .unwrap_or_else(|| panic!("docs/config.md: no row for `{field}`"));
        let cell = &row.default;
        assert!(
            cell.starts_with(&format!("`{shown}`")),
            "docs/config.md: `{field}` default is {cell:?}, the code's is {shown}"
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} defaults checked");
}

#[test]
fn example_node_config_parses_and_builds() {
    let path = workspace().join("config/node.example.toml");
    let text = std::fs::read_to_string(&path).expect("config/node.example.toml");
    let cfg = NodeConfig::from_toml_str(&text).expect("config/node.example.toml parses");
    podswitch_dataplane::config::Snapshot::build(&cfg, 1).expect("and validates");
    // The example's commented-out [overlay] and [[nodes]] are valid too.
    let start = text
        .find("# [overlay]")
        .expect("the example shows [overlay]");
    let mut uncommented = text[..start].to_string();
    for line in text[start..].lines() {
        let line = line.strip_prefix('#').unwrap_or(line);
        uncommented.push_str(line.strip_prefix(' ').unwrap_or(line));
        uncommented.push('\n');
    }
    let with_overlay =
        NodeConfig::from_toml_str(&uncommented).expect("the example with [overlay] parses");
    assert!(with_overlay.overlay.is_some() && with_overlay.nodes.len() == 1);
    assert!(
        with_overlay.kubernetes.is_some(),
        "the example shows [kubernetes]"
    );
    podswitch_dataplane::config::Snapshot::build(&with_overlay, 1)
        .expect("the example with [overlay] validates");
}

#[test]
fn example_conflist_parses_and_every_key_is_documented() {
    let (_, parts) = doc();
    let path = workspace().join("cni/10-podswitch.conflist");
    let text = std::fs::read_to_string(&path).expect("cni/10-podswitch.conflist");
    let conflist: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let wrapper = part(&parts, "CNI conflist");
    let plugin_rows = part(&parts, "CNI plugin configuration");
    for key in conflist.as_object().expect("an object").keys() {
        assert!(wrapper.contains_key(key), "conflist key {key} undocumented");
    }
    let plugins = conflist["plugins"].as_array().expect("plugins is a list");
    let ours: Vec<&serde_json::Value> = plugins
        .iter()
        .filter(|p| p["type"] == "podswitch")
        .collect();
    assert_eq!(ours.len(), 1, "one podswitch plugin in the conflist");
    // What the runtime hands the plugin: the object with cniVersion and name.
    let mut request = ours[0].clone();
    request["cniVersion"] = conflist["cniVersion"].clone();
    request["name"] = conflist["name"].clone();
    let bytes = serde_json::to_vec(&request).unwrap();
    podswitch_cni::config::parse(&bytes)
        .unwrap_or_else(|e| panic!("the conflist's plugin object is refused: {e}"));
    let mut keys = Vec::new();
    leaves("", &request, &mut keys);
    for (key, _) in keys {
        assert!(
            plugin_rows.contains_key(&key),
            "the conflist's `{key}` has no row in docs/config.md"
        );
    }
}

#[test]
fn the_doc_parser_sees_a_missing_row() {
    // The check above must be able to fail: drop one row and compare.
    let (_, parts) = doc();
    let mut rows = part(&parts, "Node configuration").clone();
    assert!(rows.remove("bridge.gateway").is_some());
    let expected = node_rows();
    let result = std::panic::catch_unwind(|| compare("Node configuration", &rows, &expected));
    assert!(result.is_err(), "a missing row went unnoticed");
}
