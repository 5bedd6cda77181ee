//! From the API's services and endpoints to the dataplane's service table.
//!
//! Every change to a service or its endpoints publishes a snapshot with a
//! new [`ServiceTable`]. Building a service's Maglev table is the costly
//! part (a few microseconds per service), so the [`ServiceCache`] keeps the
//! built entries of every service and rebuilds only those whose definition
//! or endpoints changed; the rest are shared with the previous table
//! (entries clone by reference count). One change next to 10,000 services
//! then costs one Maglev build plus re-indexing the table.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use podswitch_dataplane::services::{
    BackendSpec, Protocol, ServiceEntry, ServiceSpec, ServiceTable,
};

use crate::state::{ApiError, ApiState, Endpoint, Service};

/// The service ports of one API service as dataplane specs: per port, the
/// cluster IP's frontend, one per external address, and with
/// `externalTrafficPolicy: Local` different from the internal policy, the
/// NodePort's own frontend (on `0.0.0.0`, which no packet carries, keyed by
/// the node port so that two such services never meet). `local_node` names
/// this node, for the `Local` policies.
pub fn service_specs(
    service: &Service,
    endpoints: &[Endpoint],
    local_node: &str,
) -> Vec<ServiceSpec> {
    let affinity = (service.session_affinity == "ClientIP")
        .then(|| Duration::from_secs(u64::from(service.affinity_timeout_secs)));
    let internal_local = service.internal_traffic_policy == "Local";
    let external_local = service.external_traffic_policy == "Local";
    let mut specs = Vec::new();
    for p in &service.ports {
        let protocol = match p.protocol.as_str() {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => continue,
        };
        // Validated to 1–65535 when stored.
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let target_port = p
            .target_port
            .and_then(|t| u16::try_from(t).ok())
            .unwrap_or(port);
        let node_port = p.node_port.and_then(|n| u16::try_from(n).ok());
        let cluster = backends(
            endpoints,
            &p.name,
            target_port,
            internal_local.then_some(local_node),
        );
        let external = if external_local == internal_local {
            cluster.clone()
        } else {
            backends(
                endpoints,
                &p.name,
                target_port,
                external_local.then_some(local_node),
            )
        };
        let spec =
            |vip: Ipv4Addr, port: u16, node_port: Option<u16>, backends: Vec<BackendSpec>| {
                ServiceSpec {
                    external_local,
                    vip,
                    port,
                    protocol,
                    target_port,
                    node_port,
                    affinity,
                    backends,
                }
            };
        let shared_node_port = if external_local == internal_local {
            node_port
        } else {
            None
        };
        specs.push(spec(service.cluster_ip, port, shared_node_port, cluster));
        for ip in &service.external_ips {
            specs.push(spec(*ip, port, None, external.clone()));
        }
        if shared_node_port.is_none()
            && let Some(node_port) = node_port
        {
            specs.push(spec(
                Ipv4Addr::UNSPECIFIED,
                node_port,
                Some(node_port),
                external,
            ));
        }
    }
    specs
}

/// The backends of one service port among `endpoints` (only those on
/// `local_node` when given). An endpoint with a port map (from an
/// EndpointSlice) serves the ports it names, at the port it names; without
/// one, every port at `target_port`. Endpoints that say whether they are
/// serving follow kube-proxy: when none of the set is ready, the serving
/// ones that terminate take new connections.
fn backends(
    endpoints: &[Endpoint],
    port_name: &str,
    target_port: u16,
    local_node: Option<&str>,
) -> Vec<BackendSpec> {
    let candidates = || {
        endpoints.iter().filter_map(|e| {
            if local_node.is_some_and(|n| e.node != n) {
                return None;
            }
            let port = if e.ports.is_empty() {
                target_port
            } else {
                u16::try_from(*e.ports.get(port_name)?).ok()?
            };
            Some((e, port))
        })
    };
    let any_ready = candidates().any(|(e, _)| e.ready && !e.terminating);
    candidates()
        .map(|(e, port)| {
            let fallback = !any_ready && e.serving == Some(true) && e.terminating;
            BackendSpec {
                addr: e.address,
                port,
                ready: e.ready || fallback,
                terminating: e.terminating && !fallback,
            }
        })
        .collect()
}

/// One service as last built.
struct Built {
    service: Service,
    endpoints: Vec<Endpoint>,
    entries: Vec<ServiceEntry>,
}

/// Built service entries, kept across table rebuilds.
#[derive(Default)]
pub struct ServiceCache {
    built: HashMap<String, Built>,
    /// This node's name, for the `Local` traffic policies.
    local_node: String,
}

impl ServiceCache {
    /// A cache for the node named `local_node`.
    pub fn new(local_node: &str) -> ServiceCache {
        ServiceCache {
            built: HashMap::new(),
            local_node: local_node.to_string(),
        }
    }

    /// Renames this node: every service is built again on the next table.
    pub fn set_local_node(&mut self, local_node: &str) {
        if self.local_node != local_node {
            self.local_node = local_node.to_string();
            self.built.clear();
        }
    }

    /// The service table for `state`'s services and endpoints, followed by
    /// `static_entries` (services from the node's config file). Reuses the
    /// entries of services whose definition and endpoints compare equal to
    /// the last build, and forgets deleted ones.
    pub fn table(
        &mut self,
        state: &ApiState,
        static_entries: &[ServiceEntry],
    ) -> Result<ServiceTable, ApiError> {
        self.build(state, static_entries, None)
    }

    /// As [`ServiceCache::table`] when only the services named in `changed`
    /// can differ from the last build (the caller knows which keys it
    /// stored): the others are reused without comparing them, which is
    /// most of the cost next to thousands of services.
    pub fn table_after(
        &mut self,
        state: &ApiState,
        static_entries: &[ServiceEntry],
        changed: &[&str],
    ) -> Result<ServiceTable, ApiError> {
        for name in changed {
            if !state.services.contains_key(*name) {
                self.built.remove(*name);
            }
        }
        self.build(state, static_entries, Some(changed))
    }

    fn build(
        &mut self,
        state: &ApiState,
        static_entries: &[ServiceEntry],
        changed: Option<&[&str]>,
    ) -> Result<ServiceTable, ApiError> {
        if changed.is_none() {
            self.built
                .retain(|name, _| state.services.contains_key(name));
        }
        let mut entries = Vec::with_capacity(2 * state.services.len() + static_entries.len());
        let changed: Option<std::collections::HashSet<&str>> =
            changed.map(|c| c.iter().copied().collect());
        for (name, service) in &state.services {
            // The common case next to thousands of services: unchanged,
            // reused without even looking up its endpoints.
            if let Some(changed) = &changed
                && !changed.contains(name.as_str())
                && let Some(b) = self.built.get(name)
            {
                entries.extend(b.entries.iter().cloned());
                continue;
            }
            let endpoints = state
                .endpoints
                .get(name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let fresh = changed.is_none()
                && self
                    .built
                    .get(name)
                    .is_some_and(|b| b.service == *service && b.endpoints == endpoints);
            if !fresh {
                let previous = self.built.get(name).map(|b| b.entries.as_slice());
                let entries = service_specs(service, endpoints, &self.local_node)
                    .iter()
                    .map(|spec| {
                        // Same Maglev size as before, so an endpoint change
                        // moves only the flows it must.
                        let size = previous
                            .into_iter()
                            .flatten()
                            .find(|e| {
                                e.protocol() == spec.protocol
                                    && e.port() == spec.port
                                    && e.vip() == spec.vip
                            })
                            .map(|e| e.maglev().size() as u32);
                        ServiceEntry::with_table_size(spec, size)
                    })
                    .collect();
                let built = Built {
                    service: service.clone(),
                    endpoints: endpoints.to_vec(),
                    entries,
                };
                self.built.insert(name.clone(), built);
            }
            if let Some(b) = self.built.get(name) {
                entries.extend(b.entries.iter().cloned());
            }
        }
        entries.extend(static_entries.iter().cloned());
        ServiceTable::from_entries(entries).map_err(|e| ApiError::conflict(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::state::ServicePort;

    fn service(name: &str, ip: [u8; 4], ports: &[(&str, u32, Option<u32>)]) -> Service {
        Service {
            name: name.to_string(),
            cluster_ip: Ipv4Addr::from(ip),
            ports: ports
                .iter()
                .map(|&(protocol, port, node_port)| ServicePort {
                    name: String::new(),
                    protocol: protocol.to_string(),
                    port,
                    target_port: Some(port + 8000),
                    node_port,
                })
                .collect(),
            session_affinity: "ClientIP".to_string(),
            affinity_timeout_secs: 60,
            external_ips: Vec::new(),
            external_traffic_policy: "Cluster".to_string(),
            internal_traffic_policy: "Cluster".to_string(),
            source: Default::default(),
        }
    }

    fn endpoint(last: u8, ready: bool, terminating: bool) -> Endpoint {
        Endpoint {
            address: Ipv4Addr::new(10, 244, 1, last),
            ready,
            terminating,
            node: String::new(),
            serving: None,
            ports: Default::default(),
        }
    }

    #[test]
    fn specs_carry_ports_protocols_affinity_and_readiness() {
        let s = service(
            "default/web",
            [10, 96, 0, 10],
            &[("TCP", 80, Some(30080)), ("UDP", 53, None)],
        );
        let eps = [endpoint(5, true, false), endpoint(6, true, true)];
        let specs = service_specs(&s, &eps, "");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].protocol, Protocol::Tcp);
        assert_eq!((specs[0].port, specs[0].target_port), (80, 8080));
        assert_eq!(specs[0].node_port, Some(30080));
        assert_eq!(specs[0].affinity, Some(Duration::from_secs(60)));
        assert_eq!(specs[1].protocol, Protocol::Udp);
        assert_eq!(specs[1].backends[1].port, 8053);
        assert!(specs[1].backends[1].terminating);
        let table = ServiceTable::new(specs).unwrap();
        let web = table
            .lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 0, 10), 80)
            .unwrap();
        // The terminating endpoint keeps flows but gets no new ones.
        assert_eq!(web.selectable_backends().len(), 1);
        assert!(web.backend_exists(Ipv4Addr::new(10, 244, 1, 6), 8080));
    }

    /// `default/s0…` on 10.96.1.i:80 (TCP), each with endpoint 10.244.1.(i + 2).
    fn services_with_one_endpoint(count: u8) -> ApiState {
        let mut state = ApiState::default();
        for i in 0..count {
            let s = service(
                &format!("default/s{i}"),
                [10, 96, 1, i],
                &[("TCP", 80, None)],
            );
            state
                .endpoints
                .insert(s.name.clone(), vec![endpoint(i + 2, true, false)]);
            state.services.insert(s.name.clone(), s);
        }
        state
    }

    #[test]
    fn cache_rebuilds_only_changed_services_and_forgets_deleted_ones() {
        let mut state = services_with_one_endpoint(50);
        let mut cache = ServiceCache::default();
        let first = cache.table(&state, &[]).unwrap();
        assert_eq!(first.len(), 50);
        let slots = |t: &ServiceTable, ip: [u8; 4]| {
            t.lookup_cluster(Protocol::Tcp, Ipv4Addr::from(ip), 80)
                .unwrap()
                .maglev()
                .slots()
                .as_ptr()
        };
        // Change one service's endpoints: only its Maglev table is new.
        state.endpoints.insert(
            "default/s7".into(),
            vec![endpoint(9, true, false), endpoint(10, true, false)],
        );
        state.services.remove("default/s3");
        let second = cache.table(&state, &[]).unwrap();
        assert_eq!(second.len(), 49);
        assert_eq!(
            slots(&first, [10, 96, 1, 8]),
            slots(&second, [10, 96, 1, 8])
        );
        assert_ne!(
            slots(&first, [10, 96, 1, 7]),
            slots(&second, [10, 96, 1, 7])
        );
        let s7 = second
            .lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 1, 7), 80)
            .unwrap();
        assert_eq!(s7.selectable_backends().len(), 2);
        assert!(
            second
                .lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 1, 3), 80)
                .is_none()
        );
        assert_eq!(cache.built.len(), 49);
        // Shrinking from two endpoints to one keeps the Maglev size.
        let size = |t: &ServiceTable| {
            t.lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 1, 7), 80)
                .unwrap()
                .maglev()
                .size()
        };
        state
            .endpoints
            .insert("default/s7".into(), vec![endpoint(9, true, false)]);
        let third = cache.table(&state, &[]).unwrap();
        assert_eq!(size(&third), size(&second));
        assert!(
            size(&third)
                > ServiceTable::new(service_specs(
                    &state.services["default/s7"],
                    &state.endpoints["default/s7"],
                    ""
                ))
                .map(|t| size(&t))
                .unwrap()
        );
    }

    #[test]
    fn table_after_rebuilds_the_named_services_only() {
        let mut state = services_with_one_endpoint(5);
        let mut cache = ServiceCache::default();
        cache.table(&state, &[]).unwrap();
        state.endpoints.insert("default/s1".into(), vec![]);
        state.services.remove("default/s2");
        let t = cache
            .table_after(&state, &[], &["default/s1", "default/s2"])
            .unwrap();
        assert_eq!(t.len(), 4);
        let s1 = t
            .lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 1, 1), 80)
            .unwrap();
        assert!(s1.has_no_ready_backend());
        assert!(!cache.built.contains_key("default/s2"));
    }

    #[test]
    fn a_static_service_on_an_api_service_address_is_a_conflict() {
        let mut state = ApiState::default();
        let s = service("default/web", [10, 96, 0, 10], &[("TCP", 80, None)]);
        let statics: Vec<ServiceEntry> = service_specs(&s, &[], "")
            .iter()
            .map(ServiceEntry::new)
            .collect();
        state.services.insert(s.name.clone(), s);
        let err = ServiceCache::default().table(&state, &statics).unwrap_err();
        assert_eq!(err.status, 409);
        assert!(err.message.contains("10.96.0.10"), "{}", err.message);
    }
}
