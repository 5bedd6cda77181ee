//! Changes from a source that owns its objects (the Kubernetes API): one
//! update carries every service, endpoint list and node that changed since
//! the last, and becomes one stored commit and one published snapshot.
//!
//! Unlike an API request, an update is not refused as a whole when one of
//! its objects is bad: that object is skipped (with its reason, for the
//! source's counters and its one log line) and the rest applied, so one
//! untranslatable Service never stops the sync nor removes good state.
//! Hand-made objects win over the source's on a clash of names or
//! addresses; the source's objects are read-only through the API.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use compact_str::CompactString;
use podswitch_dataplane::config::Ipv4Cidr;
use podswitch_dataplane::nat::ConntrackFilter;
use podswitch_dataplane::wire::IpProtocol;

use super::Control;
use super::commit::{Candidate, Entries, Prepared, ServiceEdit};
use crate::error::ControlError;
use crate::state::{Endpoint, NodeRecord, Service, Source};
use crate::validate::{check_node_overlaps, validate_endpoints, validate_node, validate_service};

/// Services changed by an update after which the heap's freed pages are
/// given back (a first sync, a watch resumed after a long gap).
const LARGE_UPDATE: usize = 1_000;

/// A service to store (with its endpoints) or remove (`None`), by name.
pub type ServiceChange = (String, Option<(Service, Vec<Endpoint>)>);

/// What changed at the source since its last update.
#[derive(Debug, Default, Clone)]
pub struct SourceUpdate {
    /// Services to store (with their endpoints), or to remove (`None`), by `namespace/name`.
    pub services: BTreeMap<String, Option<(Service, Vec<Endpoint>)>>,
    /// When set, the source's nodes become exactly these.
    pub nodes: Option<Vec<NodeRecord>>,
    /// When set, this node's pod subnet (its gateway is the subnet's first address).
    pub pod_subnet: Option<Ipv4Cidr>,
}

impl SourceUpdate {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.nodes.is_none() && self.pod_subnet.is_none()
    }
}

/// An object of an update that was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `service`, `node` or `pod_subnet`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// A short reason, for a metric label: `invalid`, `conflict`, `name_taken`.
    pub reason: &'static str,
    /// What was wrong, naming the field and the value.
    pub message: String,
}

/// What an update did.
#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    /// The generation published (unchanged when nothing changed).
    pub generation: u64,
    /// Services stored or changed.
    pub services_changed: usize,
    /// Services removed.
    pub services_removed: usize,
    /// Whether the nodes or the pod subnet changed.
    pub nodes_changed: bool,
    /// Objects left out, with why.
    pub skipped: Vec<Skipped>,
    /// Conntrack entries removed because their UDP endpoint went away.
    pub conntrack_flushed: usize,
}

/// The frontends (address, port, protocol) and node ports taken, by service.
#[derive(Default)]
struct Frontends<'a> {
    addresses: HashMap<(Ipv4Addr, u32, &'a str), &'a str>,
    cluster_ips: HashMap<Ipv4Addr, &'a str>,
    node_ports: HashMap<(u32, &'a str), &'a str>,
}

impl<'a> Frontends<'a> {
    /// Why `s` clashes with a service already in, if it does.
    fn clash(&self, s: &Service) -> Option<String> {
        if let Some(other) = self.cluster_ips.get(&s.cluster_ip) {
            return Some(format!(
                "cluster_ip = {}: already used by service {other}",
                s.cluster_ip
            ));
        }
        for p in &s.ports {
            let addresses = std::iter::once(s.cluster_ip).chain(s.external_ips.iter().copied());
            for ip in addresses {
                if let Some(other) = self.addresses.get(&(ip, p.port, p.protocol.as_str())) {
                    return Some(format!(
                        "{ip}:{}/{}: already a frontend of service {other}",
                        p.port, p.protocol
                    ));
                }
            }
            if let Some(np) = p.node_port
                && let Some(other) = self.node_ports.get(&(np, p.protocol.as_str()))
            {
                return Some(format!("node_port = {np}: already used by service {other}"));
            }
        }
        None
    }

    fn insert(&mut self, s: &'a Service) {
        self.cluster_ips.insert(s.cluster_ip, &s.name);
        for p in &s.ports {
            let addresses = std::iter::once(s.cluster_ip).chain(s.external_ips.iter().copied());
            for ip in addresses {
                self.addresses
                    .insert((ip, p.port, p.protocol.as_str()), &s.name);
            }
            if let Some(np) = p.node_port {
                self.node_ports.insert((np, p.protocol.as_str()), &s.name);
            }
        }
    }
}

/// The services of `accepted` as entries to commit.
fn entries_of(accepted: Vec<ServiceChange>) -> Entries {
    let services = accepted.into_iter().map(|(name, value)| {
        let edit = match value {
            Some((service, endpoints)) => ServiceEdit::Put(service, endpoints),
            None => ServiceEdit::Remove,
        };
        (CompactString::from(name), edit)
    });
    Entries {
        services: services.collect(),
        ..Entries::default()
    }
}

/// Whether two versions of a service answer on the same frontends
/// (addresses, ports, protocols, node ports).
fn same_frontends(a: &Service, b: &Service) -> bool {
    fn ports(s: &Service) -> Vec<(u32, &str, Option<u32>)> {
        s.ports
            .iter()
            .map(|p| (p.port, p.protocol.as_str(), p.node_port))
            .collect()
    }
    a.cluster_ip == b.cluster_ip && a.external_ips == b.external_ips && ports(a) == ports(b)
}

impl Control {
    /// Names this node for the `Local` traffic policies (the source's node name).
    pub fn set_local_node(&mut self, name: &str) {
        self.services.set_local_node(name);
    }

    /// Applies a source's update: every object checked on its own and
    /// against the others (a bad one skipped), the changed keys stored in
    /// one commit, then one snapshot published. UDP conntrack entries of
    /// endpoints that went away are removed, so no datagram keeps going to
    /// a pod that is gone (kubernetes#48370).
    pub fn apply_source(&mut self, update: SourceUpdate) -> Result<SourceReport, ControlError> {
        let report = self.apply_update(update)?;
        if report.services_changed + report.services_removed >= LARGE_UPDATE {
            podswitch_dataplane::mem::heap::release_free_memory();
        }
        Ok(report)
    }

    fn apply_update(&mut self, update: SourceUpdate) -> Result<SourceReport, ControlError> {
        let mut report = SourceReport {
            generation: self.snapshot().generation,
            ..SourceReport::default()
        };
        let accepted = self.accept_services(update.services, &mut report);
        let stale_udp = self.stale_udp_flows(&accepted);
        let mut candidate_nodes = None;
        if let Some(nodes) = update.nodes {
            let nodes = self.accept_nodes(nodes, &mut report);
            let state = self.state();
            let current: Vec<&NodeRecord> = state
                .nodes
                .values()
                .filter(|n| n.source == Source::Kubernetes)
                .collect();
            if current.len() != nodes.len() || nodes.iter().any(|n| !current.contains(&n)) {
                candidate_nodes = Some(nodes);
            }
        }
        let mut candidate_subnet = None;
        if let Some(subnet) = update.pod_subnet {
            match self.pod_subnet_addressing(subnet) {
                Ok(Some(node)) => candidate_subnet = Some(node),
                Ok(None) => {}
                Err(e) => report.skipped.push(Skipped {
                    kind: "pod_subnet",
                    name: subnet.to_string(),
                    reason: "invalid",
                    message: e.to_string(),
                }),
            }
        }
        for (_, value) in &accepted {
            match value {
                Some(_) => report.services_changed += 1,
                None => report.services_removed += 1,
            }
        }
        if candidate_nodes.is_some() || candidate_subnet.is_some() {
            // Nodes or the addressing change the overlay and the pod
            // subnet: the whole snapshot is built again.
            let mut candidate = self.state().clone();
            entries_of(accepted.clone()).apply(&mut candidate);
            if let Some(nodes) = candidate_nodes {
                candidate
                    .nodes
                    .retain(|_, n| n.source != Source::Kubernetes);
                candidate
                    .nodes
                    .extend(nodes.into_iter().map(|n| (n.name.clone(), n)));
            }
            if let Some(node) = candidate_subnet {
                candidate.node = Some(node);
            }
            let changed: Vec<&str> = accepted.iter().map(|(name, _)| name.as_str()).collect();
            match self.build_dropping_bad_nodes(&mut candidate, &changed, &mut report) {
                Ok(snapshot) => {
                    let changed = changed.into_iter().map(CompactString::from).collect();
                    let prepared = Prepared::new(candidate, changed, snapshot);
                    report.nodes_changed = true;
                    report.generation = self.finish(prepared)?;
                    self.flush_udp(&stale_udp, &mut report);
                    return Ok(report);
                }
                // The nodes cannot run here (e.g. no overlay configured):
                // the services still apply.
                Err(e) => report.skipped.push(Skipped {
                    kind: "node",
                    name: "nodes".into(),
                    reason: "invalid",
                    message: e.to_string(),
                }),
            }
        }
        if !accepted.is_empty() {
            report.generation = self.commit(Candidate::Entries(entries_of(accepted)))?;
        }
        self.flush_udp(&stale_udp, &mut report);
        Ok(report)
    }

    /// Builds `candidate`'s snapshot; a source's node the dataplane refuses
    /// (e.g. its node IP is not reachable by the uplink) is left out, with
    /// the dataplane's reason, and the build tried again.
    fn build_dropping_bad_nodes(
        &mut self,
        candidate: &mut crate::state::ApiState,
        changed: &[&str],
        report: &mut SourceReport,
    ) -> Result<podswitch_dataplane::config::Snapshot, ControlError> {
        loop {
            let e = match self.build(candidate, changed) {
                Ok(snapshot) => return Ok(snapshot),
                Err(e) => e,
            };
            // `nodes[i]` counts the file's nodes, then the stored ones in order.
            let index = e
                .item_index("nodes")
                .and_then(|i| i.checked_sub(self.view.file().nodes.len()));
            let name = index.and_then(|i| candidate.nodes.keys().nth(i).cloned());
            match name {
                Some(name) if candidate.nodes[&name].source == Source::Kubernetes => {
                    candidate.nodes.remove(&name);
                    report.skipped.push(Skipped {
                        kind: "node",
                        name: name.clone(),
                        reason: "invalid",
                        message: format!("node {name}: {e}"),
                    });
                }
                _ => return Err(e),
            }
        }
    }

    /// Removes the conntrack entries `flows` match.
    fn flush_udp(&self, flows: &[ConntrackFilter], report: &mut SourceReport) {
        if let Some(tables) = &self.view.tables()
            && !flows.is_empty()
        {
            report.conntrack_flushed += tables.conntrack.flush_any(flows);
        }
    }

    /// The services of an update that can be applied, each checked on its
    /// own and against every other service; the rest go to `report`.
    fn accept_services(
        &self,
        services: BTreeMap<String, Option<(Service, Vec<Endpoint>)>>,
        report: &mut SourceReport,
    ) -> Vec<ServiceChange> {
        let state = self.state();
        let mut accepted = Vec::new();
        // The gateway's, the uplink's and the pods' addresses are no cluster IPs.
        let node_addresses = super::conflicts::NodeAddresses::of(&self.snapshot());
        let mut skip = |name: &str, reason, message: String| {
            report.skipped.push(Skipped {
                kind: "service",
                name: name.to_string(),
                reason,
                message,
            })
        };
        // New services, and changed ones whose frontends moved: checked
        // against every other service's frontends below.
        let mut checked = Vec::new();
        for (name, value) in services {
            let current = state.services.get(name.as_str());
            if current.is_some_and(|s| s.source != Source::Kubernetes) {
                skip(
                    &name,
                    "name_taken",
                    format!("{name}: a hand-made service has this name"),
                );
                continue;
            }
            match value {
                None if current.is_some() => accepted.push((name, None)),
                None => {}
                Some((mut service, endpoints)) => {
                    service.source = Source::Kubernetes;
                    let valid = validate_service("service", &service)
                        .and_then(|()| validate_endpoints("endpoints", &endpoints))
                        .and_then(|()| self.check_static_conflicts(std::iter::once(&service)))
                        .and_then(|()| node_addresses.check_cluster_ip("", &service));
                    if let Err(e) = valid {
                        skip(&name, "invalid", format!("{name}: {e}"));
                        // Whatever was stored for it stays until it is fixed or deleted.
                        continue;
                    }
                    let stored_endpoints = state
                        .endpoints
                        .get(name.as_str())
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    match current {
                        Some(s) if *s == service && stored_endpoints == endpoints.as_slice() => {}
                        // The usual churn: endpoints or settings changed,
                        // the frontends stayed (and stay its own).
                        Some(s) if same_frontends(s, &service) => {
                            accepted.push((name, Some((service, endpoints))));
                        }
                        _ => checked.push((name, service, endpoints)),
                    }
                }
            }
        }
        if checked.is_empty() {
            return accepted;
        }
        // Every frontend that stays: services not changing, those whose
        // change keeps their frontends, those skipped (their stored version).
        let moving: std::collections::HashSet<&str> = accepted
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| n.as_str())
            .chain(checked.iter().map(|(n, _, _)| n.as_str()))
            .collect();
        let mut frontends = Frontends::default();
        for (name, s) in &state.services {
            if !moving.contains(name.as_str()) {
                frontends.insert(s);
            }
        }
        let mut more = Vec::new();
        for (name, service, endpoints) in &checked {
            if let Some(why) = frontends.clash(service) {
                skip(name, "conflict", format!("{name}: {why}"));
                // Its stored version, if any, keeps its frontends.
                if let Some(s) = state.services.get(name.as_str()) {
                    frontends.insert(s);
                }
                continue;
            }
            frontends.insert(service);
            more.push((name.clone(), Some((service.clone(), endpoints.clone()))));
        }
        accepted.extend(more);
        accepted
    }

    /// What to flush for the UDP endpoints of the changed services that
    /// were ready and no longer are (gone, not ready, terminating), as
    /// kube-proxy does: per frontend of the service (cluster IP, external
    /// addresses, node port) and endpoint address, so that other services'
    /// flows to the same pod stay.
    fn stale_udp_flows(&self, accepted: &[ServiceChange]) -> Vec<ConntrackFilter> {
        let state = self.state();
        let mut stale = Vec::new();
        for (name, value) in accepted {
            let Some(old) = state.services.get(name.as_str()) else {
                continue;
            };
            let udp: Vec<&crate::state::ServicePort> =
                old.ports.iter().filter(|p| p.protocol == "UDP").collect();
            if udp.is_empty() {
                continue;
            }
            let still_ready = |a: Ipv4Addr| {
                value.as_ref().is_some_and(|(_, eps)| {
                    eps.iter()
                        .any(|e| e.address == a && e.ready && !e.terminating)
                })
            };
            for e in state.endpoints.get(name.as_str()).into_iter().flatten() {
                if !e.ready || e.terminating || still_ready(e.address) {
                    continue;
                }
                let flow = |dst: Option<Ipv4Addr>, dport: Option<u16>| ConntrackFilter {
                    protocol: Some(IpProtocol::UDP),
                    dst,
                    dport,
                    reply_src: Some(e.address),
                    ..ConntrackFilter::default()
                };
                for ip in std::iter::once(old.cluster_ip).chain(old.external_ips.iter().copied()) {
                    stale.push(flow(Some(ip), None));
                }
                for np in udp.iter().filter_map(|p| p.node_port) {
                    stale.push(flow(None, u16::try_from(np).ok()));
                }
            }
        }
        stale
    }

    /// The source's nodes that can be applied; the rest go to `report`.
    fn accept_nodes(&self, nodes: Vec<NodeRecord>, report: &mut SourceReport) -> Vec<NodeRecord> {
        let state = self.state();
        let mut accepted: Vec<NodeRecord> = Vec::new();
        let hand_made: Vec<&NodeRecord> = state
            .nodes
            .values()
            .filter(|n| n.source != Source::Kubernetes)
            .collect();
        let gateway = self.snapshot().gateway.address;
        for mut node in nodes {
            node.source = Source::Kubernetes;
            let mut skip = |reason, message: String| {
                report.skipped.push(Skipped {
                    kind: "node",
                    name: node.name.clone(),
                    reason,
                    message,
                })
            };
            if let Err(e) = validate_node("node", &node) {
                skip("invalid", e.to_string());
                continue;
            }
            if hand_made.iter().any(|n| n.name == node.name) {
                skip(
                    "name_taken",
                    format!("{}: a hand-made node has this name", node.name),
                );
                continue;
            }
            let others = hand_made.iter().copied().chain(accepted.iter());
            if let Some(other) = others.clone().find(|n| n.node_ip == node.node_ip) {
                skip(
                    "conflict",
                    format!("node_ip = {}: already node {}", node.node_ip, other.name),
                );
                continue;
            }
            if let Err(e) = check_node_overlaps(others.chain(std::iter::once(&node)), gateway) {
                skip("conflict", e.to_string());
                continue;
            }
            accepted.push(node);
        }
        accepted.sort_by(|a, b| a.name.cmp(&b.name));
        accepted
    }

    /// The node addressing with `subnet` as the pod subnet (gateway: its
    /// first address), or `None` when it is so already.
    fn pod_subnet_addressing(
        &self,
        subnet: Ipv4Cidr,
    ) -> Result<Option<crate::state::NodeAddressing>, ControlError> {
        let snapshot = self.snapshot();
        if subnet.prefix_len > 30 {
            return Err(ControlError::invalid(
                "pod_subnet",
                subnet,
                "must leave room for pods (prefix /30 or shorter)",
            ));
        }
        let gateway = Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1)),
            prefix_len: subnet.prefix_len,
        };
        if snapshot.gateway.address == gateway {
            return Ok(None);
        }
        let config = self.state().effective_config(self.view.file());
        Ok(Some(crate::state::NodeAddressing {
            gateway,
            gateway_mac: config.bridge.gateway_mac,
            uplink: config.uplink.clone(),
            mac_aging_secs: config.bridge.mac_aging_secs,
        }))
    }
}
