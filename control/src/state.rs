//! What the control API manages: ports added at run time, routes, the
//! node's addressing, services and endpoints, nodes and mirrors, and the
//! diff a declarative apply makes. Their checks are in the `validate`
//! module; this one imports no other module of the control plane.
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

/// A list decoded into a `Vec` of exactly its length. Read from text, a
/// list's length is known only at its end: a `Vec` grown by doubling and
/// then shrunk leaves its freed tail between blocks that stay, which at
/// 100,000 services was about 200 bytes of memory each. Up to 16 items are
/// gathered on the stack and copied once.
pub fn exact_list<'de, D, T>(input: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    input.deserialize_seq(ExactList(std::marker::PhantomData))
}

/// The visitor of [`exact_list`] (and a seed for it).
pub struct ExactList<T>(pub std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ExactList<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        // As serde's own `Vec`, so that errors read the same.
        f.write_str("a sequence")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        if let Some(len) = seq.size_hint() {
            let mut items = Vec::with_capacity(len.min(1 << 16));
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            return Ok(items);
        }
        let mut gathered = smallvec::SmallVec::<[T; 16]>::new();
        while let Some(item) = seq.next_element()? {
            gathered.push(item);
        }
        let mut items = Vec::with_capacity(gathered.len());
        items.extend(gathered);
        Ok(items)
    }
}

impl<'de, T: Deserialize<'de>> serde::de::DeserializeSeed<'de> for ExactList<T> {
    type Value = Vec<T>;

    fn deserialize<D: serde::Deserializer<'de>>(self, input: D) -> Result<Vec<T>, D::Error> {
        input.deserialize_seq(self)
    }
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
    #[serde(deserialize_with = "exact_list")]
    pub ports: Vec<ServicePort>,
    /// `None` or `ClientIP`.
    #[serde(default = "default_affinity")]
    pub session_affinity: CompactString,
    /// ClientIP affinity timeout in seconds (1–86400).
    #[serde(default = "default_affinity_timeout")]
    pub affinity_timeout_secs: u32,
    /// More addresses the service answers on with its ports: `externalIPs`
    /// and load-balancer ingress IPs (traffic from outside the cluster).
    #[serde(
        default,
        deserialize_with = "exact_list",
        skip_serializing_if = "Vec::is_empty"
    )]
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
