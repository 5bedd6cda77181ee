//! From the API's services and endpoints to the dataplane's service table.
//!
//! Every change to a service or its endpoints publishes a snapshot with a
//! new [`ServiceTable`]. Building a service's Maglev table is the costly
//! part (a few microseconds per service), so the [`ServiceCache`] keeps the
//! built entries of every service and rebuilds only those whose definition
//! or endpoints changed; the rest are shared with the previous table
//! (entries clone by reference count). One change next to 10,000 services
//! then costs one Maglev build plus re-indexing the table.

use std::collections::HashSet;
use std::sync::Arc;

use compact_str::CompactString;
use std::net::Ipv4Addr;
use std::time::Duration;

use podswitch_dataplane::services::{
    BackendSpec, Protocol, ServiceEntry, ServiceSpec, ServiceTable,
};

use crate::error::ControlError;
use crate::state::{ApiState, Endpoint, Service};

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

/// Built service entries, kept across table rebuilds.
///
/// The entries are those of the last published table itself; the cache
/// adds only which API service has which of them (its name and first
/// entry: 32 bytes a service), not the services they were built from
/// (that would be a second copy of every service and endpoint). So the
/// caller names the services that may have changed since the last
/// published table, and only those are built again. A table built for a
/// candidate waits as `pending` until it is published ([`ServiceCache::settle`]);
/// a candidate given up (refused, or its store write failed) leaves its
/// services to be built again next time, as the state may have kept them.
#[derive(Default)]
pub struct ServiceCache {
    /// The last published table and its services.
    published: Built,
    /// The table built for the last candidate, and the services it named.
    pending: Option<(Built, Vec<CompactString>)>,
    /// This node's name, for the `Local` traffic policies.
    local_node: String,
}

/// A table and, in name order, each API service's name and first entry
/// (its entries run to the next service's first).
#[derive(Default)]
struct Built {
    table: Arc<ServiceTable>,
    services: Vec<(CompactString, u32)>,
    /// How many entries at the end are the config file's services.
    statics: usize,
}

impl Built {
    /// The entries of service `name`, if the table has it.
    fn entries(&self, name: &str) -> Option<&[ServiceEntry]> {
        let i = self
            .services
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        let start = self.services[i].1 as usize;
        let end = self
            .services
            .get(i + 1)
            .map(|(_, e)| *e as usize)
            .unwrap_or(self.api_entries());
        self.table.entries().get(start..end)
    }

    /// The number of entries of API services (the static ones follow).
    fn api_entries(&self) -> usize {
        self.table.len() - self.statics
    }
}

impl ServiceCache {
    /// A cache for the node named `local_node`.
    pub fn new(local_node: &str) -> ServiceCache {
        ServiceCache {
            local_node: local_node.to_string(),
            ..ServiceCache::default()
        }
    }

    /// Renames this node: every service is built again on the next table.
    pub fn set_local_node(&mut self, local_node: &str) {
        if self.local_node != local_node {
            self.local_node = local_node.to_string();
            self.published = Built::default();
            self.pending = None;
        }
    }

    /// The service table for `state`'s services and endpoints, followed by
    /// `static_entries` (services from the node's config file); see
    /// [`ServiceCache::table_of`].
    pub fn table(
        &mut self,
        state: &ApiState,
        static_entries: &[ServiceEntry],
        changed: &[&str],
    ) -> Result<Arc<ServiceTable>, ControlError> {
        self.table_of(&services_of(state), static_entries, changed)
    }

    /// The service table for `services` (in name order, each with its
    /// endpoints), followed by `static_entries`. The services named in
    /// `changed` (added, changed or removed since the last
    /// [`settle`](Self::settle)d table) and those not built yet are built;
    /// the others reuse their entries without being looked at, which is
    /// most of the cost next to thousands of services.
    pub fn table_of(
        &mut self,
        services: &[ServiceRef<'_>],
        static_entries: &[ServiceEntry],
        changed: &[&str],
    ) -> Result<Arc<ServiceTable>, ControlError> {
        // A candidate never published: the state may have kept its
        // changes, so its services are built again too.
        let given_up = self.pending.take().map(|(_, names)| names);
        let changed: HashSet<&str> = changed
            .iter()
            .copied()
            .chain(given_up.iter().flatten().map(CompactString::as_str))
            .collect();
        // Each service's entries as last published, or `None` to build them.
        let reuse: Vec<Option<&[ServiceEntry]>> = services
            .iter()
            .map(|(name, _, _)| {
                self.published
                    .entries(name)
                    .filter(|_| !changed.contains(name.as_str()))
            })
            .collect();
        let jobs: Vec<Job> = services
            .iter()
            .zip(&reuse)
            .filter(|(_, reused)| reused.is_none())
            .map(|((name, service, endpoints), _)| Job {
                service,
                endpoints,
                previous: self.published.entries(name),
            })
            .collect();
        let mut fresh = build_all(&jobs, &self.local_node).into_iter();
        let mut entries = Vec::with_capacity(services.len() + static_entries.len());
        let mut names = Vec::with_capacity(services.len());
        for ((name, _, _), reused) in services.iter().zip(reuse) {
            names.push(((*name).clone(), entries.len() as u32));
            match reused {
                Some(built) => entries.extend(built.iter().cloned()),
                None => entries.extend(fresh.next().into_iter().flatten()),
            }
        }
        entries.extend(static_entries.iter().cloned());
        let table = Arc::new(ServiceTable::from_entries(entries)?);
        let built = Built {
            table: Arc::clone(&table),
            services: names,
            statics: static_entries.len(),
        };
        let names = changed.into_iter().map(CompactString::from).collect();
        self.pending = Some((built, names));
        Ok(table)
    }

    /// The last table was published: its entries become the cache's.
    pub fn settle(&mut self) {
        if let Some((built, _)) = self.pending.take() {
            self.published = built;
        }
    }
}

/// A service with its endpoints, as a table is built from it.
pub type ServiceRef<'a> = (&'a CompactString, &'a Service, &'a [Endpoint]);

/// `state`'s services with their endpoints, in name order.
pub fn services_of(state: &ApiState) -> Vec<ServiceRef<'_>> {
    state
        .services
        .iter()
        .map(|(name, service)| {
            let endpoints = state.endpoints.get(name).map(Vec::as_slice);
            (name, service, endpoints.unwrap_or_default())
        })
        .collect()
}

/// A service whose entries are to be built.
struct Job<'a> {
    service: &'a Service,
    endpoints: &'a [Endpoint],
    /// Its entries as last published, for their Maglev table sizes.
    previous: Option<&'a [ServiceEntry]>,
}

/// Fewest services worth building on more than one thread.
const PARALLEL_BUILD: usize = 256;

/// The entries of every job, in order. A Maglev table takes about 20 µs
/// to fill (10 backends), so 100,000 new services take two seconds of
/// CPU: large sets are built on every core the process may use.
fn build_all(jobs: &[Job], local_node: &str) -> Vec<Vec<ServiceEntry>> {
    crate::parallel::map(jobs, PARALLEL_BUILD, |job| {
        build_entries(job.service, job.endpoints, local_node, job.previous)
    })
}

/// The entries of one service, keeping each port's Maglev table size from
/// `previous` (so an endpoint change moves only the flows it must).
fn build_entries(
    service: &Service,
    endpoints: &[Endpoint],
    local_node: &str,
    previous: Option<&[ServiceEntry]>,
) -> Vec<ServiceEntry> {
    service_specs(service, endpoints, local_node)
        .iter()
        .map(|spec| {
            let size = previous
                .into_iter()
                .flatten()
                .find(|e| {
                    e.protocol() == spec.protocol && e.port() == spec.port && e.vip() == spec.vip
                })
                .map(|e| e.maglev().size() as u32);
            ServiceEntry::with_table_size(spec, size)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::state::ServicePort;

    fn service(name: &str, ip: [u8; 4], ports: &[(&str, u32, Option<u32>)]) -> Service {
        Service {
            name: name.into(),
            cluster_ip: Ipv4Addr::from(ip),
            ports: ports
                .iter()
                .map(|&(protocol, port, node_port)| ServicePort {
                    name: Default::default(),
                    protocol: protocol.into(),
                    port,
                    target_port: Some(port + 8000),
                    node_port,
                })
                .collect(),
            session_affinity: "ClientIP".into(),
            affinity_timeout_secs: 60,
            external_ips: Vec::new(),
            external_traffic_policy: "Cluster".into(),
            internal_traffic_policy: "Cluster".into(),
            source: Default::default(),
        }
    }

    fn endpoint(last: u8, ready: bool, terminating: bool) -> Endpoint {
        Endpoint {
            address: Ipv4Addr::new(10, 244, 1, last),
            ready,
            terminating,
            node: Default::default(),
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
        let first = cache.table(&state, &[], &[]).unwrap();
        cache.settle();
        assert_eq!(first.len(), 50);
        let maglev = |t: &ServiceTable, ip: [u8; 4]| {
            t.lookup_cluster(Protocol::Tcp, Ipv4Addr::from(ip), 80)
                .unwrap()
                .maglev()
                .clone()
        };
        let same =
            |a: &ServiceTable, b: &ServiceTable, ip| maglev(a, ip).shares_storage(&maglev(b, ip));
        // Change one service's endpoints: only its Maglev table is new.
        state.endpoints.insert(
            "default/s7".into(),
            vec![endpoint(9, true, false), endpoint(10, true, false)],
        );
        state.services.remove("default/s3");
        let second = cache
            .table(&state, &[], &["default/s7", "default/s3"])
            .unwrap();
        cache.settle();
        assert_eq!(second.len(), 49);
        assert!(same(&first, &second, [10, 96, 1, 8]));
        assert!(!same(&first, &second, [10, 96, 1, 7]));
        let s7 = second
            .lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 1, 7), 80)
            .unwrap();
        assert_eq!(s7.selectable_backends().len(), 2);
        assert!(
            second
                .lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 1, 3), 80)
                .is_none()
        );
        assert_eq!(cache.published.services.len(), 49);
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
        let third = cache.table(&state, &[], &["default/s7"]).unwrap();
        cache.settle();
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
        // Nothing named, nothing built: every table is reused.
        let fourth = cache.table(&state, &[], &[]).unwrap();
        assert!(same(&third, &fourth, [10, 96, 1, 7]));
        assert!(
            cache
                .pending
                .as_ref()
                .is_some_and(|(_, names)| names.is_empty())
        );
    }

    #[test]
    fn a_candidate_given_up_leaves_its_services_to_be_built_again() {
        let mut state = services_with_one_endpoint(5);
        let mut cache = ServiceCache::default();
        cache.table(&state, &[], &[]).unwrap();
        cache.settle();
        // A candidate changes s1 and is not published (e.g. its store
        // write failed)...
        let published = state.clone();
        state.endpoints.insert("default/s1".into(), vec![]);
        state.services.remove("default/s2");
        let t = cache
            .table(&state, &[], &["default/s1", "default/s2"])
            .unwrap();
        assert_eq!(t.len(), 4);
        let s1 = |t: &ServiceTable| {
            t.lookup_cluster(Protocol::Tcp, Ipv4Addr::new(10, 96, 1, 1), 80)
                .map(|e| e.has_no_ready_backend())
        };
        assert_eq!(s1(&t), Some(true));
        // ...so the next table, of the published state with nothing
        // named, builds s1 and s2 again rather than keep either version.
        let t = cache.table(&published, &[], &[]).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(s1(&t), Some(false));
        cache.settle();
        assert_eq!(cache.published.services.len(), 5);
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
        let err = ServiceCache::default()
            .table(&state, &statics, &[])
            .unwrap_err();
        assert!(matches!(err, ControlError::ServiceTable(_)), "{err:?}");
        assert!(err.to_string().contains("10.96.0.10"), "{err}");
    }
}
