//! What the control API manages: ports added at run time, routes, the
//! node's addressing, services and endpoints, nodes and mirrors; their
//! validation (every error names the field and the value), and the diff a
//! declarative apply makes.
//!
//! Services, nodes and mirrors are stored and served now; the dataplane
//! starts enforcing them with the services, VXLAN and mirror issues.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use compact_str::CompactString;
use podswitch_dataplane::config::{
    BridgeSection, Ipv4Cidr, NodeConfig, PortSection, RouteSection, UplinkSection,
};
use serde::{Deserialize, Serialize};

mod node_name;
mod port_map;
pub use node_name::NodeName;
pub use port_map::PortMap;

use crate::error::ControlError;

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    /// Port name (optional, unique within the service).
    #[serde(default, skip_serializing_if = "CompactString::is_empty")]
    pub name: CompactString,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(default = "default_protocol")]
    pub protocol: CompactString,
    /// The service port on the cluster IP.
    pub port: u32,
    /// The endpoints' port (default: `port`).
    #[serde(default)]
    pub target_port: Option<u32>,
    /// NodePort, 30000–32767.
    #[serde(default)]
    pub node_port: Option<u32>,
}

fn default_protocol() -> CompactString {
    CompactString::const_new("TCP")
}

/// A service (ClusterIP, optionally NodePort). Its strings are short
/// (names, `TCP`, `Cluster`) and kept inline: a node may hold 100,000.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// `namespace/name`.
    pub name: CompactString,
    /// The virtual IP.
    pub cluster_ip: Ipv4Addr,
    /// Ports, at least one.
    pub ports: Vec<ServicePort>,
    /// `None` or `ClientIP`.
    #[serde(default = "default_affinity")]
    pub session_affinity: CompactString,
    /// ClientIP affinity timeout in seconds (1–86400).
    #[serde(default = "default_affinity_timeout")]
    pub affinity_timeout_secs: u32,
    /// More addresses the service answers on with its ports: `externalIPs`
    /// and load-balancer ingress IPs (traffic from outside the cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<Ipv4Addr>,
    /// `Cluster` (default) or `Local`: NodePort and external addresses go
    /// only to this node's endpoints, keeping the client's address.
    #[serde(default = "default_policy", skip_serializing_if = "is_cluster")]
    pub external_traffic_policy: CompactString,
    /// `Cluster` (default) or `Local`: the cluster IP goes only to this node's endpoints.
    #[serde(default = "default_policy", skip_serializing_if = "is_cluster")]
    pub internal_traffic_policy: CompactString,
    /// Who manages it: `api` (hand-made, the default) or `kubernetes`.
    #[serde(default, skip_serializing_if = "Source::is_api")]
    pub source: Source,
}

/// Who manages a stored object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Made through the control API (`podswitchctl`, `PUT /v1/state`).
    #[default]
    Api,
    /// Translated from the Kubernetes API; read-only through the control API.
    Kubernetes,
}

impl Source {
    /// True for hand-made objects.
    pub fn is_api(&self) -> bool {
        *self == Source::Api
    }
}

fn default_policy() -> CompactString {
    CompactString::const_new("Cluster")
}
fn is_cluster(p: &CompactString) -> bool {
    p == "Cluster"
}

fn default_affinity() -> CompactString {
    CompactString::const_new("None")
}
fn default_affinity_timeout() -> u32 {
    10_800
}

/// An endpoint of a service: 32 bytes (a node at 100,000 services keeps
/// a million).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Pod address.
    pub address: Ipv4Addr,
    /// Ready for new connections.
    #[serde(default = "yes")]
    pub ready: bool,
    /// Being deleted: keeps existing flows, gets no new ones.
    #[serde(default)]
    pub terminating: bool,
    /// Node the pod runs on.
    #[serde(default, skip_serializing_if = "NodeName::is_empty")]
    pub node: NodeName,
    /// Serving (ready or not while terminating), when the source says so
    /// (EndpointSlices): when none of a service's endpoints is ready, the
    /// serving terminating ones take new connections, as with kube-proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    /// The endpoint's port per service port name (`""` for an unnamed
    /// one), as an EndpointSlice resolves named target ports; empty: every
    /// service port's `target_port`. With a map, a service port missing
    /// from it has no backend here.
    #[serde(default, skip_serializing_if = "PortMap::is_empty")]
    pub ports: PortMap,
}

fn yes() -> bool {
    true
}

/// A service with its endpoints, as listed and as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceWithEndpoints {
    /// The service.
    #[serde(flatten)]
    pub service: Service,
    /// Its endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// Another node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Its address on the underlay.
    pub node_ip: Ipv4Addr,
    /// The pod CIDR it owns.
    pub pod_cidr: Ipv4Cidr,
    /// VXLAN network identifier (1–16777215).
    #[serde(default = "default_vni")]
    pub vni: u32,
    /// Its VTEP MAC (default: derived from `node_ip`); absent in records stored before the overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<podswitch_dataplane::wire::MacAddr>,
    /// Who manages it: `api` (hand-made, the default) or `kubernetes`.
    #[serde(default, skip_serializing_if = "Source::is_api")]
    pub source: Source,
}

impl NodeRecord {
    /// The node as the dataplane's `[[nodes]]` entry.
    pub fn to_section(&self) -> podswitch_dataplane::config::RemoteNodeSection {
        podswitch_dataplane::config::RemoteNodeSection {
            name: self.name.clone(),
            node_ip: self.node_ip,
            pod_cidr: self.pod_cidr,
            vtep_mac: self.vtep_mac,
            vni: Some(self.vni),
        }
    }
}

fn default_vni() -> u32 {
    1
}

/// A mirror session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Session name.
    pub name: String,
    /// Ports to mirror (empty: all).
    #[serde(default)]
    pub ports: Vec<String>,
    /// `ingress`, `egress` or `both`: the port stages taken when no stage is given.
    #[serde(default = "default_direction")]
    pub direction: String,
    /// Pipeline stage (empty: the port stages of `direction`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stage: String,
    /// More pipeline stages, for a session over several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// tcpdump filter expression.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter: String,
    /// Mirror interface name (a TAP the daemon creates in its netns).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iface: String,
    /// Bytes kept of each frame (0: whole frames).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub snaplen: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn default_direction() -> String {
    "both".to_string()
}

/// The node's own addressing (`PUT /v1/node`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddressing {
    /// Gateway with the pod subnet prefix.
    pub gateway: Ipv4Cidr,
    /// Gateway MAC.
    pub gateway_mac: podswitch_dataplane::wire::MacAddr,
    /// Uplink, if any.
    #[serde(default)]
    pub uplink: Option<UplinkSection>,
    /// MAC aging.
    #[serde(default = "default_aging")]
    pub mac_aging_secs: u64,
}

fn default_aging() -> u64 {
    300
}

/// Everything set through the API (persisted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiState {
    /// Ports added through the API, by name.
    pub ports: BTreeMap<String, PortSection>,
    /// Port ids of every port (config file and API), by name.
    pub port_ids: BTreeMap<String, u16>,
    /// Routes added through the API, by prefix.
    pub routes: BTreeMap<String, RouteSection>,
    /// Node addressing set through the API (overrides the file's).
    pub node: Option<NodeAddressing>,
    /// Services by name.
    pub services: BTreeMap<CompactString, Service>,
    /// Endpoints by service name.
    pub endpoints: BTreeMap<CompactString, Vec<Endpoint>>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Mirrors by name.
    pub mirrors: BTreeMap<String, Mirror>,
}

impl ApiState {
    /// A copy of everything but the services and endpoints (left empty),
    /// for a candidate that gets services of its own.
    pub fn without_services(&self) -> ApiState {
        ApiState {
            ports: self.ports.clone(),
            port_ids: self.port_ids.clone(),
            routes: self.routes.clone(),
            node: self.node.clone(),
            services: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            nodes: self.nodes.clone(),
            mirrors: self.mirrors.clone(),
        }
    }

    /// The node configuration the dataplane runs: the file's, with the API's
    /// node addressing, ports and routes added.
    pub fn effective_config(&self, file: &NodeConfig) -> NodeConfig {
        let mut config = file.clone();
        if let Some(node) = &self.node {
            config.bridge = BridgeSection {
                gateway: node.gateway,
                gateway_mac: node.gateway_mac,
                mac_aging_secs: node.mac_aging_secs,
            };
            config.uplink = node.uplink.clone();
        }
        config.ports.extend(self.ports.values().cloned());
        config.routes.extend(self.routes.values().cloned());
        config
            .nodes
            .extend(self.nodes.values().map(NodeRecord::to_section));
        config
    }

    /// Gives every port of `config` an id, keeping existing ones and
    /// handing out the lowest free id to new ports; drops ids of ports gone.
    pub fn assign_port_ids(&mut self, config: &NodeConfig) {
        let names: BTreeSet<&str> = config.ports.iter().map(|p| p.name.as_str()).collect();
        self.port_ids
            .retain(|name, _| names.contains(name.as_str()));
        for p in &config.ports {
            if !self.port_ids.contains_key(&p.name) {
                let used: BTreeSet<u16> = self.port_ids.values().copied().collect();
                let id = (0u16..).find(|id| !used.contains(id)).unwrap_or(u16::MAX);
                self.port_ids.insert(p.name.clone(), id);
            }
        }
    }
}

/// `namespace/name` with DNS-1123 labels.
pub fn check_service_name(field: &str, name: &str) -> Result<(), ControlError> {
    let ok = name
        .split_once('/')
        .is_some_and(|(ns, n)| dns_label(ns) && dns_label(n));
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(
            field,
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
pub fn check_name(field: &str, name: &str) -> Result<(), ControlError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ControlError::invalid(
            field,
            format!("{name:?}"),
            "must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// Validates one service on its own (`field` prefixes every error).
pub fn validate_service(field: &str, s: &Service) -> Result<(), ControlError> {
    check_service_name(&format!("{field}.name"), &s.name)?;
    let ip = s.cluster_ip;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Err(ControlError::invalid(
            format!("{field}.cluster_ip"),
            ip,
            "must be a unicast address",
        ));
    }
    if s.ports.is_empty() {
        return Err(ControlError::invalid(
            format!("{field}.ports"),
            "[]",
            "a service needs at least one port",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        let f = format!("{field}.ports[{i}]");
        if !matches!(p.protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            return Err(ControlError::invalid(
                format!("{f}.protocol"),
                &p.protocol,
                "must be TCP, UDP or SCTP",
            ));
        }
        if !(1..=65535).contains(&p.port) {
            return Err(ControlError::invalid(
                format!("{f}.port"),
                p.port,
                "must be 1 to 65535",
            ));
        }
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
        if !p.name.is_empty() && !dns_label(&p.name) {
            return Err(ControlError::invalid(
                format!("{f}.name"),
                &p.name,
                "must be a DNS label",
            ));
        }
        if !seen.insert((p.port, p.protocol.clone())) {
            return Err(ControlError::invalid(
                format!("{f}.port"),
                p.port,
                format!("{} is listed twice", p.protocol),
            ));
        }
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
    if !matches!(s.session_affinity.as_str(), "None" | "ClientIP") {
        return Err(ControlError::invalid(
            format!("{field}.session_affinity"),
            &s.session_affinity,
            "must be None or ClientIP",
        ));
    }
    if !(1..=86400).contains(&s.affinity_timeout_secs) {
        return Err(ControlError::invalid(
            format!("{field}.affinity_timeout_secs"),
            s.affinity_timeout_secs,
            "must be 1 to 86400",
        ));
    }
    for (i, ip) in s.external_ips.iter().enumerate() {
        if !is_unicast(*ip) {
            return Err(ControlError::invalid(
                format!("{field}.external_ips[{i}]"),
                ip,
                "must be a unicast address",
            ));
        }
    }
    for (name, policy) in [
        ("external_traffic_policy", &s.external_traffic_policy),
        ("internal_traffic_policy", &s.internal_traffic_policy),
    ] {
        if !matches!(policy.as_str(), "Cluster" | "Local") {
            return Err(ControlError::invalid(
                format!("{field}.{name}"),
                policy,
                "must be Cluster or Local",
            ));
        }
    }
    Ok(())
}

fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback())
}

/// Validates a service's endpoint list.
pub fn validate_endpoints(field: &str, endpoints: &[Endpoint]) -> Result<(), ControlError> {
    let mut seen = BTreeSet::new();
    for (i, e) in endpoints.iter().enumerate() {
        let a = e.address;
        if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
            return Err(ControlError::invalid(
                format!("{field}[{i}].address"),
                a,
                "must be a unicast address",
            ));
        }
        if !seen.insert(a) {
            return Err(ControlError::ListedTwice {
                field: format!("{field}[{i}].address"),
                value: a.to_string(),
            });
        }
        if !e.node.is_empty() {
            check_name(&format!("{field}[{i}].node"), &e.node)?;
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
    check_name(&format!("{field}.name"), &n.name)?;
    if n.node_ip.is_unspecified() || n.node_ip.is_multicast() || n.node_ip.is_broadcast() {
        return Err(ControlError::invalid(
            format!("{field}.node_ip"),
            n.node_ip,
            "must be a unicast address",
        ));
    }
    if n.pod_cidr.prefix_len == 0 || n.pod_cidr.prefix_len > 30 {
        return Err(ControlError::invalid(
            format!("{field}.pod_cidr"),
            n.pod_cidr,
            "prefix must be /1 to /30",
        ));
    }
    if !(1..=16_777_215).contains(&n.vni) {
        return Err(ControlError::invalid(
            format!("{field}.vni"),
            n.vni,
            "must be 1 to 16777215",
        ));
    }
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
        if overlap(&n.pod_cidr, &local) {
            return Err(ControlError::invalid(
                format!("nodes[{}].pod_cidr", n.name),
                n.pod_cidr,
                format!("overlaps this node's pod subnet {local}"),
            ));
        }
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
    check_name(&format!("{field}.name"), &m.name)?;
    check_selection(field, &m.ports, &m.direction, &m.stage, &m.stages, ports)?;
    if m.iface.is_empty() {
        return Err(ControlError::invalid(
            format!("{field}.iface"),
            "\"\"",
            "required: the mirror interface to create (for a transient capture use POST /v1/capture)",
        ));
    }
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
    if !matches!(direction, "ingress" | "egress" | "both") {
        return Err(ControlError::invalid(
            format!("{field}.direction"),
            direction,
            "must be ingress, egress or both",
        ));
    }
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

/// The document of a declarative apply (decoded by `api::apply_document`,
/// which keeps field paths such as `services[3].ports[0].port` in errors).
#[derive(Debug, Clone, Default)]
pub struct ApplyDocument {
    /// Services with their endpoints.
    pub services: Vec<ServiceWithEndpoints>,
    /// API routes.
    pub routes: Vec<RouteSection>,
    /// Nodes.
    pub nodes: Vec<NodeRecord>,
}

/// Counts of what an apply changed in one kind of resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Changed {
    /// New resources.
    pub added: usize,
    /// Changed resources.
    pub updated: usize,
    /// Resources gone.
    pub removed: usize,
}

/// Compares `old` and `new` maps.
pub fn diff<K: Ord, V: PartialEq>(old: &BTreeMap<K, V>, new: &BTreeMap<K, V>) -> Changed {
    let mut c = Changed::default();
    for (k, v) in new {
        match old.get(k) {
            None => c.added += 1,
            Some(o) if o != v => c.updated += 1,
            Some(_) => {}
        }
    }
    c.removed = old.keys().filter(|k| !new.contains_key(*k)).count();
    c
}

/// The route key: the prefix with host bits cleared, as text.
pub fn route_key(prefix: &Ipv4Cidr) -> String {
    format!("{}/{}", prefix.network(), prefix.prefix_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_small() {
        // A million of them at 100,000 services (issue 25 C3).
        assert_eq!(size_of::<Endpoint>(), 32);
    }

    #[test]
    fn node_records_stored_before_the_overlay_still_load() {
        let stored =
            r#"{"name":"node-b","node_ip":"192.168.100.2","pod_cidr":"10.244.2.0/24","vni":4}"#;
        let n: NodeRecord = serde_json::from_str(stored).unwrap();
        assert_eq!(n.vtep_mac, None);
        let section = n.to_section();
        assert_eq!((section.vni, section.vtep_mac), (Some(4), None));
        assert_eq!(serde_json::to_string(&n).unwrap(), stored);
    }
}
