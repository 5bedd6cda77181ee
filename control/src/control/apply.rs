//! The declarative apply (`PUT /v1/state`): the document's services
//! (with endpoints), API routes and nodes become the state, in one commit.
//!
//! At 100,000 services the document is most of the state: it is moved,
//! not copied, into the candidate, and only services that differ from the
//! running ones get new Maglev tables.

use std::collections::BTreeMap;

use compact_str::CompactString;

use super::{ApplyReport, Control, check_static_conflicts, conflicts, refuse_managed};
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
        let (services, endpoints, order) = self.document_services(doc.services)?;
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
        // The services are checked while their tables are built: at
        // 100,000 services the checks take a core for a third of a second.
        let addresses = conflicts::NodeAddresses::of(&self.snapshot());
        let statics = self.static_services.clone();
        let checks = move |state: &ApiState| {
            check_document_services(state, &order, &addresses)?;
            check_service_conflicts(state.services.values())?;
            let api = state.services.values().filter(|s| s.source == Source::Api);
            check_static_conflicts(&statics, api)
        };
        let mapped = started.elapsed();
        let changes = changed.len();
        report.generation = self.commit_state_while_storing(candidate, changed, checks)?;
        let committed = started.elapsed();
        // The old state, the old table and the decoding's garbage are
        // free now: hundreds of MB at 100,000 services.
        podswitch_dataplane::mem::heap::release_free_memory();
        tracing::debug!(
            services = self.state().services.len(),
            changed = changes,
            mapped_ms = mapped.as_millis(),
            committed_ms = committed.as_millis(),
            total_ms = started.elapsed().as_millis(),
            "apply: time from the decoded document"
        );
        Ok(report)
    }

    /// The document's services and endpoints, with the services of other
    /// sources (the Kubernetes source's) kept, and the document's service
    /// names in its order (to check them in it: see
    /// [`check_document_services`]). The maps are built in one go from
    /// lists in name order, which fills their B-tree nodes (inserting
    /// 100,000 services one by one leaves them half full); the order is
    /// found once, on the services' places rather than on the services.
    fn document_services(
        &self,
        list: Vec<ServiceWithEndpoints>,
    ) -> Result<(ServiceMap, EndpointMap, Vec<CompactString>), ControlError> {
        let order: Vec<CompactString> = list.iter().map(|s| s.service.name.clone()).collect();
        // The document's places in name order, then document order: a name
        // listed twice sits next to itself.
        let mut by_name: Vec<usize> = (0..list.len()).collect();
        by_name.sort_unstable_by(|&a, &b| order[a].cmp(&order[b]).then(a.cmp(&b)));
        let again = by_name.windows(2).filter(|w| order[w[0]] == order[w[1]]);
        if let Some(i) = again.map(|w| w[1]).min() {
            return Err(ControlError::ListedTwice {
                field: format!("services[{i}].name"),
                value: order[i].to_string(),
            });
        }
        let mut list: Vec<Option<ServiceWithEndpoints>> = list.into_iter().map(Some).collect();
        let mut services = Vec::with_capacity(list.len());
        let mut endpoints = Vec::with_capacity(list.len());
        for &i in &by_name {
            let Some(s) = list[i].take() else { continue };
            if !s.endpoints.is_empty() {
                endpoints.push((order[i].clone(), s.endpoints));
            }
            services.push((order[i].clone(), s.service));
        }
        let listed = |name: &CompactString| {
            let found = by_name.binary_search_by(|&i| order[i].cmp(name));
            found.is_ok()
        };
        for (name, s) in &self.state().services {
            if s.source != Source::Api {
                if listed(name) {
                    refuse_managed("service", name, s.source)?;
                }
                if let Some(e) = self.state().endpoints.get(name) {
                    endpoints.push((name.clone(), e.clone()));
                }
                services.push((name.clone(), s.clone()));
            }
        }
        // In name order but for the other sources' services at the end:
        // the maps' sort merges the two runs.
        Ok((
            services.into_iter().collect(),
            endpoints.into_iter().collect(),
            order,
        ))
    }
}

/// Checks each of the document's services (named in `order`, its order)
/// as `state` holds them, and its cluster IP against the node's
/// `addresses`: the first bad one is reported, with its place in the document.
fn check_document_services(
    state: &ApiState,
    order: &[CompactString],
    addresses: &conflicts::NodeAddresses,
) -> Result<(), ControlError> {
    for (i, name) in order.iter().enumerate() {
        let Some(service) = state.services.get(name) else {
            continue;
        };
        let endpoints = state.endpoints.get(name).map(Vec::as_slice);
        validate_service(format_args!("services[{i}]"), service)?;
        addresses.check_cluster_ip(format_args!("services[{i}]."), service)?;
        validate_endpoints(
            format_args!("services[{i}].endpoints"),
            endpoints.unwrap_or_default(),
        )?;
    }
    Ok(())
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
