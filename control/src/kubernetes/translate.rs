//! Kubernetes objects to podswitch's services, endpoints and nodes, with
//! kube-proxy's semantics (its `pkg/proxy` service and endpoint change
//! trackers are the reference):
//!
//! - a Service gives one podswitch service on its IPv4 cluster IP, with
//!   its `externalIPs` and load-balancer ingress IPs as more frontends,
//!   its node ports, ClientIP affinity and traffic policies; headless and
//!   ExternalName services and those labelled
//!   `service.kubernetes.io/service-proxy-name` are not ours;
//! - its EndpointSlices (IPv4 ones) are merged into one endpoint list; each
//!   endpoint keeps its conditions and node, and the port each service
//!   port resolves to in its slice (named target ports differ per slice);
//! - a Node with an InternalIP and a pod CIDR is an overlay peer; this
//!   node's pod CIDR is the pod subnet.
//!
//! Every function here is pure: the watchers feed it, tests call it with
//! objects built in memory.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Node, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podswitch_dataplane::config::Ipv4Cidr;
use podswitch_dataplane::wire::MacAddr;

use crate::state::{Endpoint, NodeRecord, PortMap, Service, ServicePort, Source};

/// The label that hands a Service to another proxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The annotation on a Node carrying its podswitch VTEP MAC (as flannel's backend-data).
pub const VTEP_MAC_ANNOTATION: &str = "podswitch.io/vtep-mac";
/// The EndpointSlice annotation kube-proxy measures programming latency from.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Why a Service or part of it was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// A short reason, for a metric label.
    pub reason: &'static str,
    /// What was wrong, naming the field and the value.
    pub message: String,
}

impl Skip {
    fn new(reason: &'static str, message: impl Into<String>) -> Skip {
        Skip {
            reason,
            message: message.into(),
        }
    }
}

/// What became of a Service.
#[derive(Debug, Clone, PartialEq)]
pub enum Translation {
    /// A service for the dataplane, with its endpoints; `notes` are parts
    /// left out (an IPv6 cluster IP, a port of an unknown protocol).
    Service {
        /// The service.
        service: Service,
        /// Its endpoints, merged across slices.
        endpoints: Vec<Endpoint>,
        /// Parts left out.
        notes: Vec<Skip>,
    },
    /// Not a service podswitch proxies (headless, ExternalName, another proxy's); `reason` says which.
    Ignored(&'static str),
}

/// `namespace/name` of an object.
pub fn object_key(namespace: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", namespace.unwrap_or("default"), name.unwrap_or(""))
}

/// Translates a Service and the EndpointSlices that name it.
pub fn translate_service(
    svc: &KubeService,
    slices: &[&EndpointSlice],
) -> Result<Translation, Skip> {
    let meta = &svc.metadata;
    let name = object_key(meta.namespace.as_deref(), meta.name.as_deref());
    if meta
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
    {
        return Ok(Translation::Ignored("service_proxy_name"));
    }
    let spec = svc
        .spec
        .as_ref()
        .ok_or_else(|| Skip::new("invalid", format!("{name}: no spec")))?;
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return Ok(Translation::Ignored("external_name"));
    }
    let cluster_ips: Vec<&str> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    if cluster_ips.is_empty() || cluster_ips.contains(&"None") {
        return Ok(Translation::Ignored("headless"));
    }
    let mut notes = Vec::new();
    let mut cluster_ip = None;
    for ip in &cluster_ips {
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) if cluster_ip.is_none() => cluster_ip = Some(v4),
            Ok(IpAddr::V4(v4)) => notes.push(Skip::new(
                "extra_cluster_ip",
                format!(
                    "{name}: cluster IP {v4} beside {}",
                    cluster_ip.unwrap_or(v4)
                ),
            )),
            Ok(IpAddr::V6(v6)) => notes.push(Skip::new(
                "ipv6",
                format!("{name}: IPv6 cluster IP {v6} (no IPv6 forwarding yet)"),
            )),
            Err(_) => {
                return Err(Skip::new(
                    "invalid",
                    format!("{name}: spec.clusterIPs = {ip:?}: not an IP address"),
                ));
            }
        }
    }
    let Some(cluster_ip) = cluster_ip else {
        return Ok(Translation::Ignored("ipv6_only"));
    };
    let node_ports_allowed = matches!(kind, "NodePort" | "LoadBalancer");
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            notes.push(Skip::new(
                "protocol",
                format!("{name}: spec.ports[{i}].protocol = {protocol}: not supported"),
            ));
            continue;
        }
        let port = u32::try_from(p.port).map_err(|_| {
            Skip::new(
                "invalid",
                format!("{name}: spec.ports[{i}].port = {}", p.port),
            )
        })?;
        let target_port = match &p.target_port {
            Some(IntOrString::Int(t)) => Some(u32::try_from(*t).map_err(|_| {
                Skip::new(
                    "invalid",
                    format!("{name}: spec.ports[{i}].targetPort = {t}"),
                )
            })?),
            // A named port is resolved per EndpointSlice.
            Some(IntOrString::String(_)) | None => None,
        };
        let node_port = if node_ports_allowed {
            p.node_port
                .filter(|n| *n != 0)
                .map(|n| {
                    u32::try_from(n).map_err(|_| {
                        Skip::new("invalid", format!("{name}: spec.ports[{i}].nodePort = {n}"))
                    })
                })
                .transpose()?
        } else {
            None
        };
        ports.push(ServicePort {
            name: p.name.as_deref().unwrap_or_default().into(),
            protocol: protocol.into(),
            port,
            target_port,
            node_port,
        });
    }
    if ports.is_empty() {
        return Err(Skip::new(
            "no_ports",
            format!("{name}: no port podswitch can serve"),
        ));
    }
    let mut external_ips = Vec::new();
    let lb_ips = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref());
    let lb_ips: Vec<&str> = if kind == "LoadBalancer" {
        lb_ips.collect()
    } else {
        Vec::new()
    };
    for ip in spec
        .external_ips
        .iter()
        .flatten()
        .map(String::as_str)
        .chain(lb_ips)
    {
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) if v4 != cluster_ip && !external_ips.contains(&v4) => {
                external_ips.push(v4)
            }
            Ok(IpAddr::V4(_)) => {}
            Ok(IpAddr::V6(_)) => notes.push(Skip::new(
                "ipv6",
                format!("{name}: IPv6 external address {ip}"),
            )),
            Err(_) => notes.push(Skip::new(
                "invalid",
                format!("{name}: external address {ip:?}: not an IP address"),
            )),
        }
    }
    let (session_affinity, affinity_timeout_secs) = match spec.session_affinity.as_deref() {
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(10_800);
            let timeout = u32::try_from(timeout)
                .ok()
                .filter(|t| (1..=86_400).contains(t))
                .ok_or_else(|| {
                    Skip::new(
                        "invalid",
                        format!(
                            "{name}: sessionAffinityConfig.clientIP.timeoutSeconds = {timeout}"
                        ),
                    )
                })?;
            ("ClientIP".to_string(), timeout)
        }
        _ => ("None".to_string(), 10_800),
    };
    let policy = |p: Option<&str>| match p {
        Some("Local") => "Local".to_string(),
        _ => "Cluster".to_string(),
    };
    let service = Service {
        name: name.as_str().into(),
        cluster_ip,
        ports,
        session_affinity: session_affinity.into(),
        affinity_timeout_secs,
        external_ips,
        // Only node ports and external addresses follow the external policy.
        external_traffic_policy: policy(spec.external_traffic_policy.as_deref()).into(),
        internal_traffic_policy: policy(spec.internal_traffic_policy.as_deref()).into(),
        source: Source::Kubernetes,
    };
    let endpoints = merge_slices(slices, &mut notes, &name);
    Ok(Translation::Service {
        service,
        endpoints,
        notes,
    })
}

/// One endpoint list from a service's slices: IPv4 slices only; an address
/// listed twice (in two slices while the controller moves it) is kept
/// once, ready over not ready; its ports are the union.
fn merge_slices(slices: &[&EndpointSlice], notes: &mut Vec<Skip>, name: &str) -> Vec<Endpoint> {
    let mut merged: BTreeMap<Ipv4Addr, Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let mut ports = BTreeMap::new();
        for p in slice.ports.iter().flatten() {
            let (Some(port), protocol) = (p.port, p.protocol.as_deref().unwrap_or("TCP")) else {
                continue;
            };
            if let Ok(port) = u32::try_from(port)
                && matches!(protocol, "TCP" | "UDP" | "SCTP")
            {
                ports.insert(p.name.clone().unwrap_or_default(), port);
            }
        }
        // One map for the slice, shared by its endpoints.
        let ports: PortMap = ports.into_iter().collect();
        for e in slice.endpoints.iter().flatten() {
            let conditions = e.conditions.as_ref();
            // Unset conditions: ready and serving count as true, terminating as false.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            for address in &e.addresses {
                let Ok(address) = address.parse::<Ipv4Addr>() else {
                    notes.push(Skip::new(
                        "invalid",
                        format!("{name}: endpoint address {address:?} in an IPv4 slice"),
                    ));
                    continue;
                };
                let endpoint = Endpoint {
                    address,
                    ready: ready && !terminating,
                    terminating,
                    node: e.node_name.as_deref().unwrap_or_default().into(),
                    serving: Some(serving),
                    ports: ports.clone(),
                };
                match merged.get_mut(&address) {
                    None => {
                        merged.insert(address, endpoint);
                    }
                    Some(have) => {
                        let ports = have.ports.union(&endpoint.ports);
                        if endpoint.ready && !have.ready {
                            *have = endpoint;
                        }
                        have.ports = ports;
                    }
                }
            }
        }
    }
    merged.into_values().collect()
}

/// What the Nodes say: the overlay peers, and this node's pod subnet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeTranslation {
    /// Every other node with an InternalIP and an IPv4 pod CIDR.
    pub peers: Vec<NodeRecord>,
    /// This node's IPv4 pod CIDR, once allocated.
    pub pod_subnet: Option<Ipv4Cidr>,
    /// Nodes left out (not yet complete, or bad).
    pub skipped: Vec<(String, Skip)>,
}

/// A Node's IPv4 pod CIDR: the first IPv4 one of `spec.podCIDRs`, else `spec.podCIDR`.
pub fn node_pod_cidr(node: &Node) -> Option<Ipv4Cidr> {
    let cidrs: Vec<&str> = match node.spec.as_ref() {
        Some(spec) => match &spec.pod_cidrs {
            Some(list) if !list.is_empty() => list.iter().map(String::as_str).collect(),
            _ => spec.pod_cidr.as_deref().into_iter().collect(),
        },
        None => Vec::new(),
    };
    cidrs.iter().find_map(|c| c.parse::<Ipv4Cidr>().ok())
}

/// A Node's first IPv4 `InternalIP` (`status.addresses`).
pub fn node_internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
}

/// Translates every Node; `local` names this node, `vni` is the overlay's.
pub fn translate_nodes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    local: &str,
    vni: u32,
) -> NodeTranslation {
    let mut out = NodeTranslation::default();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let pod_cidr = node_pod_cidr(node);
        if name == local {
            out.pod_subnet = pod_cidr;
            continue;
        }
        let Some(pod_cidr) = pod_cidr else {
            out.skipped.push((
                name.clone(),
                Skip::new("incomplete", format!("node {name}: no IPv4 pod CIDR yet")),
            ));
            continue;
        };
        let Some(node_ip) = node_internal_ip(node) else {
            out.skipped.push((
                name.clone(),
                Skip::new("incomplete", format!("node {name}: no IPv4 InternalIP yet")),
            ));
            continue;
        };
        let annotation = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(VTEP_MAC_ANNOTATION));
        let vtep_mac = match annotation.map(|m| m.parse::<MacAddr>()) {
            None => None,
            Some(Ok(mac)) => Some(mac),
            Some(Err(_)) => {
                out.skipped.push((
                    name.clone(),
                    Skip::new(
                        "invalid",
                        format!(
                            "node {name}: {VTEP_MAC_ANNOTATION} = {:?}: not a MAC",
                            annotation.map(String::as_str).unwrap_or("")
                        ),
                    ),
                ));
                continue;
            }
        };
        out.peers.push(NodeRecord {
            name,
            node_ip,
            pod_cidr,
            vni,
            vtep_mac,
            source: Source::Kubernetes,
        });
    }
    out.peers.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests;
