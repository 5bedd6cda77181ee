//! The declarative apply (`PUT /v1/state`): the document's services
//! (with endpoints), API routes and nodes become the state, in one commit.
//!
//! At 100,000 services the document is most of the state: it is moved,
//! not copied, into the candidate, and only services that differ from the
//! running ones get new Maglev tables.

use std::collections::{BTreeMap, HashSet};

use compact_str::CompactString;

use super::{ApplyReport, Control, conflicts, refuse_managed};
use crate::error::ControlError;
use crate::state::{
    ApiState, ApplyDocument, Endpoint, Service, ServiceWithEndpoints, Source, diff, route_key,
};
use crate::validate::{
    check_node_overlaps, check_service_conflicts, validate_endpoints, validate_node,
    validate_service,
};

type ServiceMap = BTreeMap<CompactString, Service>;
type EndpointMap = BTreeMap<CompactString, Vec<Endpoint>>;

impl Control {
    /// `PUT /v1/state`: services (with endpoints), API routes and nodes
    /// become exactly the document's.
    pub fn apply(&mut self, doc: ApplyDocument) -> Result<ApplyReport, ControlError> {
        let started = std::time::Instant::now();
        let (services, endpoints) = self.document_services(doc.services)?;
        check_service_conflicts(services.values())?;
        self.check_static_conflicts(services.values().filter(|s| s.source == Source::Api))?;
        let mut routes = BTreeMap::new();
        for (i, r) in doc.routes.into_iter().enumerate() {
            let key = route_key(&r.prefix);
            if routes.insert(key.clone(), r).is_some() {
                return Err(ControlError::ListedTwice {
                    field: format!("routes[{i}].prefix"),
                    value: key,
                });
            }
        }
        let mut nodes = BTreeMap::new();
        for (i, n) in doc.nodes.into_iter().enumerate() {
            validate_node(&format!("nodes[{i}]"), &n)?;
            let name = n.name.clone();
            if nodes.insert(name.clone(), n).is_some() {
                return Err(ControlError::ListedTwice {
                    field: format!("nodes[{i}].name"),
                    value: name,
                });
            }
        }
        for (name, n) in &self.state().nodes {
            if n.source != Source::Api {
                if nodes.contains_key(name) {
                    refuse_managed("node", name, n.source)?;
                }
                nodes.insert(name.clone(), n.clone());
            }
        }
        check_node_overlaps(nodes.values(), self.snapshot().gateway.address)?;
        let mut report = ApplyReport::default();
        report
            .changed
            .insert("services", diff(&self.state().services, &services));
        report
            .changed
            .insert("endpoints", diff(&self.state().endpoints, &endpoints));
        report
            .changed
            .insert("routes", diff(&self.state().routes, &routes));
        report
            .changed
            .insert("nodes", diff(&self.state().nodes, &nodes));
        let changed = changed_services(&self.state(), &services, &endpoints);
        // The services and endpoints are the document's: not a copy of the
        // state's, which at 100,000 services is most of the time and memory.
        let candidate = ApiState {
            services,
            endpoints,
            routes,
            nodes,
            ..self.state().without_services()
        };
        let checked = started.elapsed();
        let changes = changed.len();
        report.generation = self.commit_state_while_storing(candidate, changed)?;
        let committed = started.elapsed();
        // The old state, the old table and the decoding's garbage are
        // free now: hundreds of MB at 100,000 services.
        podswitch_dataplane::mem::heap::release_free_memory();
        tracing::debug!(
            services = self.state().services.len(),
            changed = changes,
            checked_ms = checked.as_millis(),
            committed_ms = committed.as_millis(),
            total_ms = started.elapsed().as_millis(),
            "apply: time from the decoded document"
        );
        Ok(report)
    }

    /// The document's services and endpoints, each checked, with the
    /// services of other sources (the Kubernetes source's) kept. The maps
    /// are built in one go from sorted lists, which fills their B-tree
    /// nodes: inserting 100,000 services one by one leaves them half full.
    fn document_services(
        &self,
        list: Vec<ServiceWithEndpoints>,
    ) -> Result<(ServiceMap, EndpointMap), ControlError> {
        let addresses = conflicts::NodeAddresses::of(&self.snapshot());
        let mut names = HashSet::with_capacity(list.len());
        let mut services = Vec::with_capacity(list.len());
        let mut endpoints = Vec::with_capacity(list.len());
        for (i, s) in list.into_iter().enumerate() {
            validate_service(format_args!("services[{i}]"), &s.service)?;
            addresses.check_cluster_ip(format_args!("services[{i}]."), &s.service)?;
            validate_endpoints(format_args!("services[{i}].endpoints"), &s.endpoints)?;
            let name = s.service.name.clone();
            if !names.insert(name.clone()) {
                return Err(ControlError::ListedTwice {
                    field: format!("services[{i}].name"),
                    value: name.to_string(),
                });
            }
            if !s.endpoints.is_empty() {
                endpoints.push((name.clone(), s.endpoints));
            }
            services.push((name, s.service));
        }
        for (name, s) in &self.state().services {
            if s.source != Source::Api {
                if names.contains(name) {
                    refuse_managed("service", name, s.source)?;
                }
                if let Some(e) = self.state().endpoints.get(name) {
                    endpoints.push((name.clone(), e.clone()));
                }
                services.push((name.clone(), s.clone()));
            }
        }
        Ok((
            services.into_iter().collect(),
            endpoints.into_iter().collect(),
        ))
    }
}

/// The services added, changed (with their endpoints) or removed between
/// `old` and the given maps.
fn changed_services(
    old: &ApiState,
    services: &ServiceMap,
    endpoints: &EndpointMap,
) -> Vec<CompactString> {
    let differs = |name: &CompactString, service| {
        old.services.get(name) != Some(service) || old.endpoints.get(name) != endpoints.get(name)
    };
    services
        .iter()
        .filter(|(name, service)| differs(name, service))
        .map(|(name, _)| name)
        .chain(old.services.keys().filter(|n| !services.contains_key(*n)))
        .cloned()
        .collect()
}
