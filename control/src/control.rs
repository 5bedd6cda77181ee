//! The control plane's state machine: every API change is validated in
//! full, stored durably, then published to the workers as one new snapshot.
//!
//! One [`Control`] lives behind a mutex: changes are serialised, so the
//! final state of concurrent clients always equals some serial order of
//! their requests. A change is (1) checked on its own and against the
//! state, then takes the one commit path (`control/commit.rs`): (2) everything it
//! leads to is built — the candidate state, the snapshot (which checks it
//! against everything else), the service table — changing nothing; (3) for
//! a port, its device is opened; (4) the keys that differ are committed to
//! the store, and only then (5) the new state and snapshot are published and
//! the workers get their queues. Any failure before (5) leaves both the
//! running and the stored state as they were.
//!
//! Readers never take that mutex: [`ControlView`] holds what the last
//! commit published (the state, the snapshot, the counters), and (5) is the
//! only moment a change touches it. Errors are [`ControlError`]s that say
//! what went wrong; the API picks their HTTP status (`api/errors.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, RwLockReadGuard};

use podswitch_dataplane::config::{NodeConfig, RouteSection, Snapshot};
use podswitch_dataplane::packet::WorkerCounters;
use podswitch_dataplane::pipeline::SharedTables;
use podswitch_dataplane::services::ServiceEntry;
use podswitch_dataplane::worker::WorkerCommand;

use crate::error::{ControlError, Manager};
use crate::mirror::{MirrorRuntime, Selection, capture};
use crate::services::ServiceCache;
use crate::state::{
    ApiState, Changed, Endpoint, Mirror, NodeAddressing, NodeRecord, Service, Source, route_key,
};
use crate::store::Store;
use crate::validate::{
    check_node_overlaps, check_service_conflicts, check_service_name, validate_endpoints,
    validate_mirror, validate_node, validate_service,
};

mod apply;
mod commit;
mod conflicts;
mod port_changes;
mod shared;
mod source;
mod view;
use commit::{Candidate, Entries, ServiceEdit};
pub use shared::SharedControl;
pub use source::{ServiceChange, Skipped, SourceReport, SourceUpdate};
pub use view::ControlView;

/// What an apply changed, per kind of resource.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    /// Generation after the apply.
    pub generation: u64,
    /// Changes per kind.
    pub changed: BTreeMap<&'static str, Changed>,
}

/// The running control plane: the writer. Its reads go through [`ControlView`].
pub struct Control {
    /// What the last commit published, shared with the readers.
    view: Arc<ControlView>,
    store: Store,
    workers: Vec<Sender<WorkerCommand>>,
    fanout_base: u16,
    /// Built service entries, reused across snapshots.
    services: ServiceCache,
    /// Services of the config file (`[[services]]`), after the API's.
    static_services: Vec<ServiceEntry>,
    /// mirror: the daemon's mirror outputs (`None` without a dataplane, e.g. in tests).
    mirrors: Option<MirrorRuntime>,
}

impl Control {
    /// Builds the first snapshot from the file and the stored state (port
    /// ids assigned and stored). Fails when the stored state no longer fits
    /// the file.
    pub fn restore(file: NodeConfig, store: Store) -> anyhow::Result<(Control, Arc<Snapshot>)> {
        let mut state = store.load()?;
        let before = state.clone();
        let config = state.effective_config(&file);
        state.assign_port_ids(&config);
        store.commit_diff(&before, &state)?;
        let snapshot = Snapshot::build_with_ids(&config, 1, Some(&state.port_ids))?;
        let static_services = snapshot.services.entries().to_vec();
        let mut services = ServiceCache::new(&snapshot.node_name);
        let table = services
            .table(&state, &static_services, &[])
            .map_err(|e| anyhow::anyhow!("stored services: {e}"))?;
        services.settle();
        let snapshot = Arc::new(snapshot.with_services(table));
        let control = Control {
            view: Arc::new(ControlView::new(file, state, Arc::clone(&snapshot))),
            store,
            workers: Vec::new(),
            fanout_base: 0,
            services,
            static_services,
            mirrors: None,
        };
        Ok((control, snapshot))
    }

    /// Connects the running workers (their command channels and counters).
    pub fn attach_workers(
        &mut self,
        workers: Vec<Sender<WorkerCommand>>,
        counters: Vec<Arc<WorkerCounters>>,
        fanout_base: u16,
    ) {
        self.workers = workers;
        self.fanout_base = fanout_base;
        self.view.set_forwarding(counters);
    }

    /// Connects the tables the workers share (for `conntrack list/flush`).
    pub fn attach_tables(&mut self, tables: Arc<SharedTables>) {
        self.view.set_tables(tables);
    }

    /// The read side: what the last commit published.
    pub fn view(&self) -> &Arc<ControlView> {
        &self.view
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.view.snapshot()
    }

    /// Closes the store for the process taking over (`--takeover`);
    /// changes fail until [`reopen_store`](Self::reopen_store).
    pub fn close_store(&mut self) {
        self.store.close();
    }

    /// Opens the store again (a takeover that did not happen).
    pub fn reopen_store(&mut self, dir: &std::path::Path) -> anyhow::Result<()> {
        self.store = Store::open(dir)?;
        Ok(())
    }

    /// The committed API state (a read guard: drop it before the next change).
    pub fn state(&self) -> RwLockReadGuard<'_, ApiState> {
        self.view.state()
    }

    /// Refuses API services on a ClusterIP or NodePort of a config-file service.
    fn check_static_conflicts<'a>(
        &self,
        services: impl Iterator<Item = &'a Service>,
    ) -> Result<(), ControlError> {
        check_static_conflicts(&self.static_services, services)
    }

    fn port_names(&self) -> BTreeSet<String> {
        self.snapshot()
            .ports
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// `POST /v1/routes`.
    pub fn add_route(&mut self, route: RouteSection) -> Result<u64, ControlError> {
        let key = route_key(&route.prefix);
        if self
            .snapshot()
            .routes
            .routes()
            .iter()
            .any(|r| route_key(&r.prefix) == key)
        {
            return Err(ControlError::Exists {
                field: "prefix",
                value: key,
                kind: "route",
                key: "for this prefix",
            });
        }
        let mut candidate = self.state().clone();
        candidate.routes.insert(key, route);
        self.commit(Candidate::state(candidate))
            .map_err(|e| e.within_item("routes"))
    }

    /// `DELETE /v1/routes/{prefix}`.
    pub fn delete_route(&mut self, prefix: &str) -> Result<u64, ControlError> {
        let cidr: podswitch_dataplane::config::Ipv4Cidr = prefix
            .parse()
            .map_err(|e: String| ControlError::invalid("prefix", prefix, e))?;
        let key = route_key(&cidr);
        if !self.state().routes.contains_key(&key) {
            let from_file = self
                .view
                .file()
                .routes
                .iter()
                .any(|r| route_key(&r.prefix) == key);
            return Err(if from_file {
                ControlError::FromConfigFile {
                    kind: "route",
                    name: key,
                }
            } else {
                ControlError::not_found("route", key)
            });
        }
        let mut candidate = self.state().clone();
        candidate.routes.remove(&key);
        self.commit(Candidate::state(candidate))
    }

    /// `PUT /v1/node`.
    pub fn set_node(&mut self, node: NodeAddressing) -> Result<u64, ControlError> {
        let mut candidate = self.state().clone();
        candidate.node = Some(node);
        let prepared = self.prepare(Candidate::state(candidate))?;
        conflicts::check_node_addresses(prepared.snapshot(), self.state().services.values())?;
        let old = self.snapshot();
        let generation = self.finish(prepared)?;
        self.readdress_pods(&old);
        Ok(generation)
    }

    /// `POST /v1/services`.
    pub fn add_service(
        &mut self,
        service: Service,
        endpoints: Vec<Endpoint>,
    ) -> Result<u64, ControlError> {
        validate_service("service", &service)?;
        validate_endpoints("endpoints", &endpoints)?;
        if self.state().services.contains_key(&service.name) {
            return Err(ControlError::exists("service", &service.name));
        }
        check_service_conflicts(
            self.state()
                .services
                .values()
                .chain(std::iter::once(&service)),
        )?;
        self.check_static_conflicts(std::iter::once(&service))?;
        conflicts::NodeAddresses::of(&self.snapshot()).check_cluster_ip("", &service)?;
        let name = service.name.clone();
        let edit = ServiceEdit::Put(service, endpoints);
        self.commit(Candidate::Entries(Entries::service(&name, edit)))
    }

    /// `DELETE /v1/services/{ns}/{name}`.
    pub fn delete_service(&mut self, name: &str) -> Result<u64, ControlError> {
        self.require_service(name)?;
        let edit = ServiceEdit::Remove;
        self.commit(Candidate::Entries(Entries::service(name, edit)))
    }

    fn require_service(&self, name: &str) -> Result<(), ControlError> {
        check_service_name("service", name)?;
        match self.state().services.get(name) {
            Some(s) => refuse_managed("service", name, s.source),
            None => Err(ControlError::not_found("service", name)),
        }
    }

    /// `PUT /v1/services/{ns}/{name}/endpoints`.
    pub fn set_endpoints(
        &mut self,
        service: &str,
        endpoints: Vec<Endpoint>,
    ) -> Result<u64, ControlError> {
        self.require_service(service)?;
        validate_endpoints("endpoints", &endpoints)?;
        let edit = ServiceEdit::Endpoints(endpoints);
        self.commit(Candidate::Entries(Entries::service(service, edit)))
    }

    /// `POST /v1/services/{ns}/{name}/endpoints`.
    pub fn add_endpoint(&mut self, service: &str, endpoint: Endpoint) -> Result<u64, ControlError> {
        self.require_service(service)?;
        let mut list = self
            .state()
            .endpoints
            .get(service)
            .cloned()
            .unwrap_or_default();
        if list.iter().any(|e| e.address == endpoint.address) {
            return Err(ControlError::taken(
                "address",
                endpoint.address,
                format!("an endpoint of {service}"),
            ));
        }
        list.push(endpoint);
        validate_endpoints("endpoint", &list)?;
        self.set_endpoints(service, list)
    }

    /// `DELETE /v1/services/{ns}/{name}/endpoints/{address}`.
    pub fn delete_endpoint(
        &mut self,
        service: &str,
        address: Ipv4Addr,
    ) -> Result<u64, ControlError> {
        self.require_service(service)?;
        let mut list = self
            .state()
            .endpoints
            .get(service)
            .cloned()
            .unwrap_or_default();
        let before = list.len();
        list.retain(|e| e.address != address);
        if list.len() == before {
            return Err(ControlError::not_found(
                "endpoint",
                format!("{address} of {service}"),
            ));
        }
        self.set_endpoints(service, list)
    }

    /// `POST /v1/nodes`.
    pub fn add_node(&mut self, node: NodeRecord) -> Result<u64, ControlError> {
        validate_node("node", &node)?;
        if self.state().nodes.contains_key(&node.name) {
            return Err(ControlError::exists("node", &node.name));
        }
        if let Some(other) = self
            .state()
            .nodes
            .values()
            .find(|n| n.node_ip == node.node_ip)
        {
            return Err(ControlError::taken(
                "node_ip",
                node.node_ip,
                format!("node {}", other.name),
            ));
        }
        check_node_overlaps(
            self.state().nodes.values().chain(std::iter::once(&node)),
            self.snapshot().gateway.address,
        )?;
        let mut candidate = self.state().clone();
        candidate.nodes.insert(node.name.clone(), node);
        self.commit(Candidate::state(candidate))
            .map_err(|e| e.within_item("nodes"))
    }

    /// `DELETE /v1/nodes/{name}`.
    pub fn delete_node(&mut self, name: &str) -> Result<u64, ControlError> {
        match self.state().nodes.get(name) {
            Some(n) => refuse_managed("node", name, n.source)?,
            None => return Err(ControlError::not_found("node", name)),
        }
        let mut candidate = self.state().clone();
        candidate.nodes.remove(name);
        self.commit(Candidate::state(candidate))
    }

    /// `POST /v1/mirrors`: validated (ports, stages, the filter compiled by
    /// libpcap, a free interface name), its interface created, then stored.
    pub fn add_mirror(&mut self, mirror: Mirror) -> Result<u64, ControlError> {
        validate_mirror("mirror", &mirror, &self.port_names())?;
        if self.state().mirrors.contains_key(&mirror.name) {
            return Err(ControlError::exists("mirror", &mirror.name));
        }
        if let Some(other) = self
            .state()
            .mirrors
            .values()
            .find(|m| m.iface == mirror.iface)
        {
            return Err(ControlError::taken(
                "iface",
                &mirror.iface,
                format!("the interface of mirror {}", other.name),
            ));
        }
        let spec = Selection::of_mirror(&mirror).resolve("mirror", &self.snapshot())?;
        if let Some(runtime) = &mut self.mirrors {
            runtime.start(&mirror, spec)?;
        }
        let name = mirror.name.clone();
        let entries = Entries::mirror(&name, Some(mirror));
        let committed = self.commit(Candidate::Entries(entries));
        if committed.is_err()
            && let Some(runtime) = &mut self.mirrors
        {
            runtime.stop(&name);
        }
        committed
    }

    /// `DELETE /v1/mirrors/{name}`: its interface is removed.
    pub fn delete_mirror(&mut self, name: &str) -> Result<u64, ControlError> {
        if !self.state().mirrors.contains_key(name) {
            return Err(ControlError::not_found("mirror", name));
        }
        let generation = self.commit(Candidate::Entries(Entries::mirror(name, None)))?;
        if let Some(runtime) = &mut self.mirrors {
            runtime.stop(name);
        }
        Ok(generation)
    }

    /// Starts the mirror outputs of the running daemon: the stored mirrors'
    /// interfaces are created again (a failure is logged, not fatal).
    pub fn attach_mirrors(&mut self, registry: Arc<podswitch_dataplane::mirror::MirrorRegistry>) {
        let mut runtime = MirrorRuntime::new(registry);
        let snapshot = self.snapshot();
        for mirror in self.state().mirrors.values() {
            let started = Selection::of_mirror(mirror)
                .resolve("mirror", &snapshot)
                .and_then(|spec| runtime.start(mirror, spec));
            if let Err(e) = started {
                tracing::warn!(mirror = %mirror.name, error = %e, "stored mirror not restored");
            }
        }
        self.view.set_mirrors(runtime.counters());
        self.mirrors = Some(runtime);
    }

    /// Ends captures and removes the mirror interfaces (shutdown).
    pub fn close_mirrors(&mut self) {
        if let Some(runtime) = &mut self.mirrors {
            runtime.close();
        }
    }

    /// `POST /v1/capture`: validates the request and registers a transient
    /// session (not stored, no new generation); the caller streams it.
    pub fn start_capture(
        &mut self,
        request: &capture::CaptureRequest,
    ) -> Result<capture::Capture, ControlError> {
        crate::validate::check_selection(
            "capture",
            &request.ports,
            &request.direction,
            &request.stage,
            &request.stages,
            &self.port_names(),
        )?;
        let format = capture::Format::from_name(&request.format).ok_or_else(|| {
            ControlError::invalid("capture.format", &request.format, "must be pcap or pcapng")
        })?;
        if !(request.duration_secs.is_finite() && request.duration_secs >= 0.0) {
            return Err(ControlError::invalid(
                "capture.duration_secs",
                request.duration_secs,
                "must be a number of seconds ≥ 0",
            ));
        }
        let snapshot = self.snapshot();
        let selection = Selection {
            ports: &request.ports,
            direction: &request.direction,
            stage: &request.stage,
            stages: &request.stages,
            filter: &request.filter,
            snaplen: request.snaplen,
        };
        let spec = selection.resolve("capture", &snapshot)?;
        let Some(runtime) = &self.mirrors else {
            return Err(ControlError::NotRunning(
                "no dataplane is running to capture from",
            ));
        };
        let snaplen = spec.snaplen;
        let queue = crate::mirror::new_queue(&spec);
        let session = Arc::new(podswitch_dataplane::mirror::Session::new(
            format!("capture-{}", next_capture_id()),
            spec,
            queue,
        ));
        runtime.registry().add(Arc::clone(&session));
        Ok(capture::Capture {
            session,
            registry: Arc::clone(runtime.registry()),
            closing: runtime.closing(),
            port_names: snapshot
                .ports
                .iter()
                .map(|p| (p.id, p.name.clone()))
                .collect(),
            format,
            count: request.count,
            duration: (request.duration_secs > 0.0)
                .then(|| std::time::Duration::from_secs_f64(request.duration_secs)),
            snaplen,
        })
    }
}

/// Refuses a change through the API to an object another source manages.
fn refuse_managed(kind: &'static str, name: &str, source: Source) -> Result<(), ControlError> {
    match source {
        Source::Api => Ok(()),
        Source::Kubernetes => Err(ControlError::Managed {
            kind,
            name: name.to_string(),
            manager: Manager::Kubernetes,
        }),
    }
}

/// A number per capture, for session names (metrics labels).
fn next_capture_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Refuses a service whose cluster IP, or one of whose node ports, is one
/// of `statics` (the node file's services).
fn check_static_conflicts<'a>(
    statics: &[ServiceEntry],
    services: impl Iterator<Item = &'a Service>,
) -> Result<(), ControlError> {
    if statics.is_empty() {
        return Ok(());
    }
    for s in services {
        // The dataplane's view of the service's ports, as the table gets them.
        let specs = crate::services::service_specs(s, &[], "");
        for e in statics {
            let node_port_taken = specs.iter().any(|p| {
                p.node_port.is_some() && p.node_port == e.node_port() && p.protocol == e.protocol()
            });
            if s.cluster_ip == e.vip() || node_port_taken {
                return Err(ControlError::FileServiceClash {
                    name: s.name.to_string(),
                    cluster_ip: s.cluster_ip,
                });
            }
        }
    }
    Ok(())
}
