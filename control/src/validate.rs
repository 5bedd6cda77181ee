//! Checks of what the API is given, each on its own (a service, its
//! endpoints, a node, a mirror) or against the others of its kind (cluster
//! IPs, frontends and node ports of services; pod CIDRs of nodes). Every
//! error names the field's path and the value. Checks against the node's
//! own addresses live with the control plane (`control::conflicts`), and
//! the snapshot build checks the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use podswitch_dataplane::config::Ipv4Cidr;

use crate::error::ControlError;

/// Returns `ControlError::invalid(field, value, reason)` from the enclosing
/// function when `condition` holds; the field's path and the value are
/// formatted only then.
macro_rules! reject_if {
    ($condition:expr, $field:expr, $value:expr, $reason:expr $(,)?) => {
        if $condition {
            return Err(ControlError::invalid($field, $value, $reason));
        }
    };
}
use crate::state::{Endpoint, Mirror, NodeRecord, Service};

/// `namespace/name` with DNS-1123 labels.
pub fn check_service_name(field: impl std::fmt::Display, name: &str) -> Result<(), ControlError> {
    let ok = name
        .split_once('/')
        .is_some_and(|(ns, n)| dns_label(ns) && dns_label(n));
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(
            field.to_string(),
            format!("{name:?}"),
            "must be namespace/name, each a DNS label (a-z, 0-9, '-', at most 63)",
        ))
    }
}

/// A DNS-1123 label.
pub fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A resource name for nodes, mirrors, ports: 1–64 of `[A-Za-z0-9._-]`.
pub fn check_name(field: impl std::fmt::Display, name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(
            field.to_string(),
            format!("{name:?}"),
            "must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// Validates one service on its own (`field` prefixes every error; it is
/// written out only for an error, as an apply checks 100,000 services).
pub fn validate_service(field: impl std::fmt::Display, s: &Service) -> Result<(), ControlError> {
    check_service_name(format_args!("{field}.name"), &s.name)?;
    let ip = s.cluster_ip;
    reject_if!(
        !is_unicast(ip),
        format!("{field}.cluster_ip"),
        ip,
        "must be a unicast address"
    );
    reject_if!(
        s.ports.is_empty(),
        format!("{field}.ports"),
        "[]",
        "a service needs at least one port"
    );
    let mut seen = BTreeSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        let f = format_args!("{field}.ports[{i}]");
        reject_if!(
            !matches!(p.protocol.as_str(), "TCP" | "UDP" | "SCTP"),
            format!("{f}.protocol"),
            &p.protocol,
            "must be TCP, UDP or SCTP"
        );
        reject_if!(
            !(1..=65535).contains(&p.port),
            format!("{f}.port"),
            p.port,
            "must be 1 to 65535"
        );
        if let Some(t) = p.target_port.filter(|t| !(1..=65535).contains(t)) {
            return Err(ControlError::invalid(
                format!("{f}.target_port"),
                t,
                "must be 1 to 65535",
            ));
        }
        if let Some(n) = p.node_port.filter(|n| !(30000..=32767).contains(n)) {
            return Err(ControlError::invalid(
                format!("{f}.node_port"),
                n,
                "must be 30000 to 32767",
            ));
        }
        reject_if!(
            !p.name.is_empty() && !dns_label(&p.name),
            format!("{f}.name"),
            &p.name,
            "must be a DNS label"
        );
        reject_if!(
            !seen.insert((p.port, p.protocol.clone())),
            format!("{f}.port"),
            p.port,
            format!("{} is listed twice", p.protocol)
        );
    }
    if s.ports.iter().filter(|p| !p.name.is_empty()).count()
        != s.ports
            .iter()
            .filter(|p| !p.name.is_empty())
            .map(|p| &p.name)
            .collect::<BTreeSet<_>>()
            .len()
    {
        return Err(ControlError::invalid(
            format!("{field}.ports"),
            "names",
            "port names must be unique",
        ));
    }
    reject_if!(
        !matches!(s.session_affinity.as_str(), "None" | "ClientIP"),
        format!("{field}.session_affinity"),
        &s.session_affinity,
        "must be None or ClientIP"
    );
    reject_if!(
        !(1..=86400).contains(&s.affinity_timeout_secs),
        format!("{field}.affinity_timeout_secs"),
        s.affinity_timeout_secs,
        "must be 1 to 86400"
    );
    for (i, ip) in s.external_ips.iter().enumerate() {
        reject_if!(
            !is_unicast(*ip),
            format!("{field}.external_ips[{i}]"),
            ip,
            "must be a unicast address"
        );
    }
    for (name, policy) in [
        ("external_traffic_policy", &s.external_traffic_policy),
        ("internal_traffic_policy", &s.internal_traffic_policy),
    ] {
        reject_if!(
            !matches!(policy.as_str(), "Cluster" | "Local"),
            format!("{field}.{name}"),
            policy,
            "must be Cluster or Local"
        );
    }
    Ok(())
}

fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback())
}

/// Validates a service's endpoint list.
pub fn validate_endpoints(
    field: impl std::fmt::Display,
    endpoints: &[Endpoint],
) -> Result<(), ControlError> {
    let mut seen = BTreeSet::new();
    for (i, e) in endpoints.iter().enumerate() {
        let a = e.address;
        reject_if!(
            !is_unicast(a),
            format!("{field}[{i}].address"),
            a,
            "must be a unicast address"
        );
        if !seen.insert(a) {
            return Err(ControlError::ListedTwice {
                field: format!("{field}[{i}].address"),
                value: a.to_string(),
            });
        }
        if !e.node.is_empty() {
            check_name(format_args!("{field}[{i}].node"), &e.node)?;
        }
        if let Some((name, port)) = e.ports.iter().find(|(_, p)| !(1..=65535).contains(*p)) {
            return Err(ControlError::invalid(
                format!("{field}[{i}].ports.{name:?}"),
                port,
                "must be 1 to 65535",
            ));
        }
    }
    Ok(())
}

/// Checks that no two services share a cluster IP or a NodePort, and
/// that no two frontends (cluster or external address, port, protocol)
/// meet: services may share an external address on different ports, as
/// Kubernetes allows.
pub fn check_service_conflicts<'a>(
    services: impl Iterator<Item = &'a Service>,
) -> Result<(), ControlError> {
    let mut ips: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    let mut node_ports: BTreeMap<(u32, &str), &str> = BTreeMap::new();
    let mut frontends: BTreeMap<(Ipv4Addr, u32, &str), &str> = BTreeMap::new();
    for s in services {
        if let Some(other) = ips.insert(s.cluster_ip, &s.name) {
            return Err(ControlError::taken(
                "cluster_ip",
                s.cluster_ip,
                format!("used by service {other}"),
            ));
        }
        let addresses = std::iter::once(s.cluster_ip).chain(s.external_ips.iter().copied());
        for (ip, p) in addresses.flat_map(|ip| s.ports.iter().map(move |p| (ip, p))) {
            if let Some(other) = frontends.insert((ip, p.port, p.protocol.as_str()), &s.name)
                && other != s.name
            {
                return Err(ControlError::FrontendTaken {
                    frontend: format!("{ip}:{}/{}", p.port, p.protocol),
                    service: other.to_string(),
                });
            }
        }
        for p in &s.ports {
            if let Some(np) = p.node_port
                && let Some(other) = node_ports.insert((np, p.protocol.as_str()), &s.name)
            {
                return Err(ControlError::taken(
                    "node_port",
                    np,
                    format!("used by service {other}"),
                ));
            }
        }
    }
    Ok(())
}

/// Validates one node on its own.
pub fn validate_node(field: &str, n: &NodeRecord) -> Result<(), ControlError> {
    check_name(format_args!("{field}.name"), &n.name)?;
    reject_if!(
        n.node_ip.is_unspecified() || n.node_ip.is_multicast() || n.node_ip.is_broadcast(),
        format!("{field}.node_ip"),
        n.node_ip,
        "must be a unicast address"
    );
    reject_if!(
        n.pod_cidr.prefix_len == 0 || n.pod_cidr.prefix_len > 30,
        format!("{field}.pod_cidr"),
        n.pod_cidr,
        "prefix must be /1 to /30"
    );
    reject_if!(
        !(1..=16_777_215).contains(&n.vni),
        format!("{field}.vni"),
        n.vni,
        "must be 1 to 16777215"
    );
    Ok(())
}

/// Checks that node pod CIDRs do not overlap each other or the local pod subnet.
pub fn check_node_overlaps<'a>(
    nodes: impl Iterator<Item = &'a NodeRecord>,
    local: Ipv4Cidr,
) -> Result<(), ControlError> {
    let overlap = |a: &Ipv4Cidr, b: &Ipv4Cidr| a.contains(b.network()) || b.contains(a.network());
    let nodes: Vec<&NodeRecord> = nodes.collect();
    for (i, n) in nodes.iter().enumerate() {
        reject_if!(
            overlap(&n.pod_cidr, &local),
            format!("nodes[{}].pod_cidr", n.name),
            n.pod_cidr,
            format!("overlaps this node's pod subnet {local}")
        );
        if let Some(m) = nodes[..i]
            .iter()
            .find(|m| overlap(&m.pod_cidr, &n.pod_cidr))
        {
            return Err(ControlError::invalid(
                format!("nodes[{}].pod_cidr", n.name),
                n.pod_cidr,
                format!("overlaps node {}'s {}", m.name, m.pod_cidr),
            ));
        }
    }
    Ok(())
}

/// Validates one mirror against the known port names (the filter is
/// compiled by `mirror::selection`, which needs libpcap).
pub fn validate_mirror(
    field: &str,
    m: &Mirror,
    ports: &BTreeSet<String>,
) -> Result<(), ControlError> {
    check_name(format_args!("{field}.name"), &m.name)?;
    check_selection(field, &m.ports, &m.direction, &m.stage, &m.stages, ports)?;
    reject_if!(
        m.iface.is_empty(),
        format!("{field}.iface"),
        "\"\"",
        "required: the mirror interface to create (for a transient capture use POST /v1/capture)"
    );
    if m.iface.len() > 15 || m.iface.contains(['/', ' ', ':']) || m.iface == "." || m.iface == ".."
    {
        return Err(ControlError::invalid(
            format!("{field}.iface"),
            &m.iface,
            "a Linux interface name has 1 to 15 characters, without '/', ':' or spaces",
        ));
    }
    Ok(())
}

/// Checks the ports, direction and stages of a mirror or a capture.
pub fn check_selection(
    field: &str,
    selected: &[String],
    direction: &str,
    stage: &str,
    stages: &[String],
    ports: &BTreeSet<String>,
) -> Result<(), ControlError> {
    if let Some(p) = selected.iter().find(|p| !ports.contains(*p)) {
        return Err(ControlError::invalid(
            format!("{field}.ports"),
            p,
            "no such port",
        ));
    }
    reject_if!(
        !matches!(direction, "ingress" | "egress" | "both"),
        format!("{field}.direction"),
        direction,
        "must be ingress, egress or both"
    );
    let names: Vec<&str> = podswitch_dataplane::mirror::MirrorStage::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let given = (!stage.is_empty()).then_some(stage);
    for s in given.into_iter().chain(stages.iter().map(String::as_str)) {
        if !names.contains(&s) {
            let key = if s == stage { "stage" } else { "stages" };
            return Err(ControlError::invalid(
                format!("{field}.{key}"),
                s,
                format!("must be one of {}", names.join(", ")),
            ));
        }
    }
    Ok(())
}
