//! Checks of what the API is given, each on its own (a service, its
//! endpoints, a node, a mirror) or against the others of its kind (cluster
//! IPs, frontends and node ports of services; pod CIDRs of nodes). Every
//! error names the field's path and the value. Checks against the node's
//! own addresses live with the control plane (`control::conflicts`), and
//! the snapshot build checks the rest.

use std::collections::BTreeSet;
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
/// Kubernetes allows. The clash reported is the first one met taking the
/// services in turn, each naming the service that had it before.
///
/// The claims are sorted lists rather than maps filled one service at a
/// time: at 100,000 services that is faster, and the few large blocks it
/// frees are returned whole, where a map's thousands of small nodes leave
/// holes between the service tables built at the same time.
pub fn check_service_conflicts<'a>(
    services: impl Iterator<Item = &'a Service>,
) -> Result<(), ControlError> {
    let services: Vec<&Service> = services.collect();
    let mut ips: Vec<Claim<Ipv4Addr>> = Vec::with_capacity(services.len());
    let mut frontends: Vec<Claim<(Ipv4Addr, u32, &str)>> = Vec::with_capacity(services.len());
    let mut node_ports: Vec<Claim<(u32, &str)>> = Vec::new();
    for (i, s) in services.iter().enumerate() {
        ips.push((s.cluster_ip, i, 0));
        let addresses = std::iter::once(s.cluster_ip).chain(s.external_ips.iter().copied());
        let ports = addresses.flat_map(|ip| s.ports.iter().map(move |p| (ip, p)));
        frontends.extend(
            ports
                .enumerate()
                .map(|(k, (ip, p))| ((ip, p.port, p.protocol.as_str()), i, k)),
        );
        let with_node_port = s
            .ports
            .iter()
            .filter_map(|p| Some((p.node_port?, p.protocol.as_str())));
        node_ports.extend(with_node_port.enumerate().map(|(k, key)| (key, i, k)));
    }
    // A service may list one frontend twice (an external address equal to
    // its cluster IP), but never one node port twice.
    let clashes = [
        first_clash(&mut ips, false).map(|c| (c, Clash::ClusterIp)),
        first_clash(&mut frontends, true).map(|c| (c, Clash::Frontend)),
        first_clash(&mut node_ports, false).map(|c| (c, Clash::NodePort)),
    ];
    let first = clashes
        .into_iter()
        .flatten()
        .min_by_key(|((_, (service, place), _), kind)| (*service, *kind, *place));
    let Some(((claim, _, other), kind)) = first else {
        return Ok(());
    };
    let other = services[other].name.as_str();
    Err(match kind {
        Clash::ClusterIp => ControlError::taken(
            "cluster_ip",
            ips[claim].0,
            format!("used by service {other}"),
        ),
        Clash::Frontend => {
            let (ip, port, protocol) = frontends[claim].0;
            ControlError::FrontendTaken {
                frontend: format!("{ip}:{port}/{protocol}"),
                service: other.to_string(),
            }
        }
        Clash::NodePort => ControlError::taken(
            "node_port",
            node_ports[claim].0.0,
            format!("used by service {other}"),
        ),
    })
}

/// Something a service claims (`key`), with the service's place in the
/// list and the claim's place among the service's claims of that kind.
type Claim<K> = (K, usize, usize);

/// The kinds of clash, in the order a service's claims are checked.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Clash {
    ClusterIp,
    Frontend,
    NodePort,
}

/// Sorts `claims` and finds the clash met first taking the services in
/// turn: the index (in the sorted claims) of the claim that clashes, its
/// service's and claim's place, and the service that claimed the key
/// last before it. With `same_service_may_repeat`, a service meeting its
/// own claim is no clash.
fn first_clash<K: Ord + Copy>(
    claims: &mut [Claim<K>],
    same_service_may_repeat: bool,
) -> Option<(usize, (usize, usize), usize)> {
    claims.sort_unstable();
    claims
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0].0 == w[1].0 && !(same_service_may_repeat && w[0].1 == w[1].1))
        .map(|(i, w)| (i + 1, (w[1].1, w[1].2), w[0].1))
        .min_by_key(|(_, at, _)| *at)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use super::check_service_conflicts;
    use crate::error::ControlError;
    use crate::state::Service;

    /// The check as it was, filling maps one service at a time: the
    /// oracle for which clash comes first and whose it is.
    fn one_at_a_time(services: &[Service]) -> Result<(), ControlError> {
        let mut ips: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        let mut node_ports: BTreeMap<(u32, &str), &str> = BTreeMap::new();
        let mut frontends: BTreeMap<(Ipv4Addr, u32, &str), &str> = BTreeMap::new();
        for s in services {
            if let Some(other) = ips.insert(s.cluster_ip, &s.name) {
                let whose = format!("used by service {other}");
                return Err(ControlError::taken("cluster_ip", s.cluster_ip, whose));
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
                    let whose = format!("used by service {other}");
                    return Err(ControlError::taken("node_port", np, whose));
                }
            }
        }
        Ok(())
    }

    /// `count` services drawn from few addresses and ports, so that they
    /// clash in every way (xorshift from `seed`).
    fn services(seed: u64, count: usize) -> Vec<Service> {
        let mut x = seed | 1;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        (0..count)
            .map(|i| {
                let ports: Vec<serde_json::Value> = (0..1 + next(3))
                    .map(|_| {
                        let protocol = ["TCP", "UDP"][next(2) as usize];
                        let mut port =
                            serde_json::json!({"port": 80 + next(3), "protocol": protocol});
                        if next(4) == 0 {
                            port["node_port"] = (30000 + next(4 * count as u64)).into();
                        }
                        port
                    })
                    .collect();
                let external: Vec<String> = (0..next(3))
                    .map(|_| format!("192.0.2.{}", next(8)))
                    .collect();
                let cluster_ip = format!("10.96.0.{}", next(4 * count as u64));
                serde_json::from_value(serde_json::json!({
                    "name": format!("s{i}"), "cluster_ip": cluster_ip, "ports": ports,
                    "external_ips": external,
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_first_clash_is_the_one_met_one_service_at_a_time() {
        const MIN: usize = 20;
        let mut kinds = BTreeMap::new();
        for seed in 0..2_000 {
            let list = services(seed, 2 + (seed % 12) as usize);
            let expected = one_at_a_time(&list).map_err(|e| e.to_string());
            let found = check_service_conflicts(list.iter()).map_err(|e| e.to_string());
            assert_eq!(found, expected, "seed {seed}: {list:?}");
            let kind = match expected {
                Ok(()) => "none",
                Err(e) if e.starts_with("cluster_ip") => "cluster IP",
                Err(e) if e.starts_with("node_port") => "node port",
                Err(_) => "frontend",
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
        // Every kind of clash, and none, came up often.
        let often = kinds.values().all(|&n| n >= MIN);
        assert!(kinds.len() == 4 && often, "{kinds:?}");
    }
}
