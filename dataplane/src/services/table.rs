//! The service table: (protocol, ClusterIP, port) and (protocol, NodePort)
//! → [`ServiceEntry`], each with a Maglev table over its ready backends.
//!
//! Built once per snapshot, immutable afterwards. Keys are packed into
//! integers and looked up in the flat [`ServiceIndex`] (one hash of a `u64`
//! and, at most half full, usually one slot whatever the number of
//! services); the index slot carries what selecting a backend reads.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::sync::Arc;

use hashbrown::HashMap;

use super::index::{Indexed, ServiceIndex, ServiceKey, Taken};
use super::maglev::{BackendId, Maglev, table_size};
pub use super::protocol::Protocol;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// A backend as selection returns it: where to DNAT to.
pub type Backend = BackendId;

/// One endpoint of a service port, as the snapshot is given it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec {
    /// Pod address.
    pub addr: Ipv4Addr,
    /// The port on the pod (the service's target port, resolved).
    pub port: u16,
    /// Ready for new connections.
    pub ready: bool,
    /// Being deleted: keeps its existing flows, gets no new ones.
    pub terminating: bool,
}

impl BackendSpec {
    /// A ready, not terminating endpoint.
    pub const fn ready(addr: Ipv4Addr, port: u16) -> BackendSpec {
        BackendSpec {
            addr,
            port,
            ready: true,
            terminating: false,
        }
    }

    /// Whether new flows may go to it.
    pub const fn takes_new_flows(&self) -> bool {
        self.ready && !self.terminating
    }
}

/// One service port: the dataplane's view of a Kubernetes `ServicePort`
/// with its endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The ClusterIP.
    pub vip: Ipv4Addr,
    /// The service port on the ClusterIP.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// The endpoints' port as configured; each backend carries its resolved port.
    pub target_port: u16,
    /// The NodePort, if the service has one.
    pub node_port: Option<u16>,
    /// ClientIP session affinity timeout; `None` without affinity.
    pub affinity: Option<Duration>,
    /// All endpoints, ready or not.
    pub backends: Vec<BackendSpec>,
    /// `externalTrafficPolicy: Local`: connections from outside the node
    /// (NodePort, external IPs) keep the client's address. Otherwise
    /// (`Cluster`) they are masqueraded as kube-proxy does, so that the
    /// endpoint's reply comes back through this node's conntrack.
    pub external_local: bool,
}

/// Why a service table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceTableError {
    /// Two services claim the same ClusterIP, port and protocol.
    #[error("services {first} and {second} both use {protocol:?} {vip}:{port}")]
    DuplicateCluster {
        /// Index of the first service in the list.
        first: usize,
        /// Index of the second.
        second: usize,
        /// The shared protocol.
        protocol: Protocol,
        /// The shared ClusterIP.
        vip: Ipv4Addr,
        /// The shared port.
        port: u16,
    },
    /// Two services claim the same NodePort and protocol.
    #[error("services {first} and {second} both use {protocol:?} node port {node_port}")]
    DuplicateNodePort {
        /// Index of the first service in the list.
        first: usize,
        /// Index of the second.
        second: usize,
        /// The shared protocol.
        protocol: Protocol,
        /// The shared NodePort.
        node_port: u16,
    },
    /// A service port or node port is 0.
    #[error("service {index} ({vip}): port and node_port must not be 0")]
    ZeroPort {
        /// Index of the service in the list.
        index: usize,
        /// Its ClusterIP.
        vip: Ipv4Addr,
    },
    /// More services than entries can be indexed.
    #[error("too many services: {0} (at most {max})", max = u32::MAX)]
    TooMany(usize),
}

/// A service port in the table: its identity, its backends and the Maglev
/// table that picks one of the ready ones. Cloning is cheap (the backend
/// lists and the Maglev slots are shared), so a control plane can keep the
/// entries of unchanged services across table rebuilds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    vip: Ipv4Addr,
    port: u16,
    protocol: Protocol,
    target_port: u16,
    node_port: Option<u16>,
    affinity: Option<Duration>,
    external_local: bool,
    /// Ready, not terminating backends, in identity order: the Maglev
    /// table's indices point here.
    selectable: Arc<[Backend]>,
    /// Every backend (ready, not ready, terminating), sorted, deduplicated.
    all: Arc<[Backend]>,
    maglev: Maglev,
}

impl ServiceEntry {
    /// What the index keeps of this entry, at position `entry`.
    pub(crate) fn indexed(&self, entry: u32) -> Indexed {
        Indexed::new(
            entry,
            self.affinity.is_some(),
            self.external_local,
            self.maglev.clone(),
            self.selectable.clone(),
        )
    }

    /// Builds the entry. The Maglev table size follows the number of all
    /// backends, not only the ready ones, so readiness flapping does not
    /// resize (and so reshuffle) the table.
    pub fn new(spec: &ServiceSpec) -> ServiceEntry {
        ServiceEntry::with_table_size(spec, None)
    }

    /// As [`ServiceEntry::new`], keeping the Maglev table size of the
    /// service's previous entry when it still suits the backend count (from
    /// half to four times the size [`table_size`] would pick). Maglev moves
    /// only the removed backend's flows only while the size stays the same:
    /// a new size reshuffles everything, so a control plane passes the
    /// previous size on every endpoint change.
    pub fn with_table_size(spec: &ServiceSpec, previous: Option<u32>) -> ServiceEntry {
        let id = |b: &BackendSpec| BackendId::new(b.addr, b.port);
        let mut all: Vec<Backend> = spec.backends.iter().map(id).collect();
        all.sort_unstable();
        all.dedup();
        let mut selectable: Vec<Backend> = spec
            .backends
            .iter()
            .filter(|b| b.takes_new_flows())
            .map(id)
            .collect();
        selectable.sort_unstable();
        selectable.dedup();
        let wanted = table_size(all.len());
        let size = previous
            .filter(|&p| p > 0 && wanted <= p.saturating_mul(2) && p <= wanted.saturating_mul(4))
            .unwrap_or(wanted);
        let maglev = Maglev::with_size(&selectable, size);
        let selectable: Arc<[Backend]> = selectable.into();
        // Usually every backend is ready: one list then serves as both.
        let all = if *selectable == *all {
            Arc::clone(&selectable)
        } else {
            all.into()
        };
        ServiceEntry {
            vip: spec.vip,
            port: spec.port,
            protocol: spec.protocol,
            target_port: spec.target_port,
            node_port: spec.node_port,
            affinity: spec.affinity,
            external_local: spec.external_local,
            selectable,
            all,
            maglev,
        }
    }

    /// The backend for a new flow; `None` when no backend is ready.
    #[inline]
    pub fn select(&self, flow_hash: u64) -> Option<Backend> {
        super::index::select(&self.maglev, &self.selectable, flow_hash)
    }

    /// True when new flows have nowhere to go: the pipeline answers them
    /// with a TCP RST or an ICMP port unreachable.
    #[inline]
    pub fn has_no_ready_backend(&self) -> bool {
        self.selectable.is_empty()
    }

    /// Whether `addr:port` is any backend of the service, ready or not,
    /// terminating or not: existing flows to it stay valid.
    #[inline]
    pub fn backend_exists(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.all.binary_search(&BackendId::new(addr, port)).is_ok()
    }

    /// Whether connections from outside keep the client's address
    /// ([`ServiceSpec::external_local`]).
    pub fn external_local(&self) -> bool {
        self.external_local
    }

    /// The ClusterIP.
    pub fn vip(&self) -> Ipv4Addr {
        self.vip
    }

    /// The service port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The transport protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The configured target port.
    pub fn target_port(&self) -> u16 {
        self.target_port
    }

    /// The NodePort, if any.
    pub fn node_port(&self) -> Option<u16> {
        self.node_port
    }

    /// ClientIP affinity timeout; `None` without affinity.
    pub fn affinity_timeout(&self) -> Option<Duration> {
        self.affinity
    }

    /// Whether new flows may go to `backend` (ready, not terminating).
    #[inline]
    pub fn is_selectable(&self, backend: Backend) -> bool {
        self.selectable.binary_search(&backend).is_ok()
    }

    /// The service port's identity packed into one integer (ClusterIP,
    /// port, protocol), e.g. to key per-service state such as affinity.
    #[inline]
    pub fn key(&self) -> u64 {
        ServiceKey::cluster(self.protocol, self.vip, self.port).bits()
    }

    /// The backends new flows may go to, in identity order.
    pub fn selectable_backends(&self) -> &[Backend] {
        &self.selectable
    }

    /// Every backend, sorted.
    pub fn backends(&self) -> &[Backend] {
        &self.all
    }

    /// The Maglev table.
    pub fn maglev(&self) -> &Maglev {
        &self.maglev
    }

    /// Heap bytes held by the entry (backend lists and Maglev table).
    pub fn heap_bytes(&self) -> usize {
        let all = if Arc::ptr_eq(&self.selectable, &self.all) {
            0
        } else {
            self.all.len()
        };
        (self.selectable.len() + all) * core::mem::size_of::<Backend>() + self.maglev.heap_bytes()
    }
}

/// The immutable service table of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    entries: Vec<ServiceEntry>,
    /// ClusterIP and NodePort keys → entries.
    index: ServiceIndex,
    /// ClusterIP → whether any of its service ports has a ready backend.
    vips: FastMap<u32, bool>,
    /// Every backend's address: only packets from these can be replies of
    /// a DNATed flow, so the L2 path looks only those up in conntrack.
    backend_ips: FastMap<u32, ()>,
}

impl ServiceTable {
    /// Builds the table; two services on the same (protocol, ClusterIP,
    /// port) or the same (protocol, NodePort) are an error.
    pub fn new(specs: Vec<ServiceSpec>) -> Result<ServiceTable, ServiceTableError> {
        ServiceTable::from_entries(specs.iter().map(ServiceEntry::new).collect())
    }

    /// Builds the table from entries built before (e.g. kept from the last
    /// table for services that did not change); same checks as [`ServiceTable::new`].
    pub fn from_entries(entries: Vec<ServiceEntry>) -> Result<ServiceTable, ServiceTableError> {
        if u32::try_from(entries.len()).is_err() {
            return Err(ServiceTableError::TooMany(entries.len()));
        }
        let hasher = || foldhash::fast::FixedState::with_seed(0);
        let node_ports = entries.iter().filter(|e| e.node_port.is_some()).count();
        let mut index = ServiceIndex::with_capacity(entries.len() + node_ports);
        for (i, s) in entries.iter().enumerate() {
            if s.port == 0 || s.node_port == Some(0) {
                return Err(ServiceTableError::ZeroPort {
                    index: i,
                    vip: s.vip,
                });
            }
            let position = i as u32;
            let key = ServiceKey::cluster(s.protocol, s.vip, s.port);
            if let Err(Taken(first)) = index.insert(key, s.indexed(position)) {
                return Err(ServiceTableError::DuplicateCluster {
                    first: first as usize,
                    second: i,
                    protocol: s.protocol,
                    vip: s.vip,
                    port: s.port,
                });
            }
            if let Some(node_port) = s.node_port {
                let key = ServiceKey::node_port(s.protocol, node_port);
                if let Err(Taken(first)) = index.insert(key, s.indexed(position)) {
                    return Err(ServiceTableError::DuplicateNodePort {
                        first: first as usize,
                        second: i,
                        protocol: s.protocol,
                        node_port,
                    });
                }
            }
        }
        let mut vips = FastMap::with_capacity_and_hasher(entries.len(), hasher());
        let backends: usize = entries.iter().map(|e| e.all.len()).sum();
        let mut backend_ips = FastMap::with_capacity_and_hasher(backends, hasher());
        for e in &entries {
            *vips.entry(u32::from(e.vip)).or_insert(false) |= !e.has_no_ready_backend();
            for b in e.all.iter() {
                backend_ips.insert(u32::from(b.addr), ());
            }
        }
        Ok(ServiceTable {
            entries,
            index,
            vips,
            backend_ips,
        })
    }

    /// The service on a ClusterIP and port, for a protocol.
    #[inline]
    pub fn lookup_cluster(
        &self,
        protocol: Protocol,
        dst_ip: Ipv4Addr,
        dst_port: u16,
    ) -> Option<&ServiceEntry> {
        self.entry(self.cluster_index(protocol, dst_ip, dst_port)?)
    }

    /// As [`lookup_cluster`](Self::lookup_cluster), the entry's index
    /// (for [`entry`](Self::entry)).
    #[inline]
    pub fn cluster_index(
        &self,
        protocol: Protocol,
        dst_ip: Ipv4Addr,
        dst_port: u16,
    ) -> Option<u32> {
        let key = ServiceKey::cluster(protocol, dst_ip, dst_port);
        self.index.get(key).map(Indexed::entry)
    }

    /// As [`lookup_node_port`](Self::lookup_node_port), the entry's index.
    #[inline]
    pub fn node_port_index(&self, protocol: Protocol, dst_port: u16) -> Option<u32> {
        let key = ServiceKey::node_port(protocol, dst_port);
        self.index.get(key).map(Indexed::entry)
    }

    /// The service indexed under `key`, with what selecting its backend reads.
    #[inline]
    pub fn indexed(&self, key: ServiceKey) -> Option<&Indexed> {
        self.index.get(key)
    }

    /// Starts loading `key`'s index slot (a hint).
    #[inline]
    pub fn prefetch_indexed(&self, key: ServiceKey) {
        self.index.prefetch(key);
    }

    /// The entry at `index`.
    #[inline]
    pub fn entry(&self, index: u32) -> Option<&ServiceEntry> {
        self.entries.get(index as usize)
    }

    /// The service on a NodePort, for a protocol. The caller checks that the
    /// destination is one of the node's addresses.
    #[inline]
    pub fn lookup_node_port(&self, protocol: Protocol, dst_port: u16) -> Option<&ServiceEntry> {
        self.entry(self.node_port_index(protocol, dst_port)?)
    }

    /// `Some(ready)` when `ip` is a ClusterIP: `ready` tells whether any
    /// service port on it has a ready backend (ICMP echo is answered then).
    #[inline]
    pub fn cluster_ip_ready(&self, ip: Ipv4Addr) -> Option<bool> {
        self.vips.get(&u32::from(ip)).copied()
    }

    /// Whether `ip` is the address of any service's backend (ready or not).
    #[inline]
    pub fn is_backend_ip(&self, ip: Ipv4Addr) -> bool {
        !self.backend_ips.is_empty() && self.backend_ips.contains_key(&u32::from(ip))
    }

    /// All entries, in configuration order.
    pub fn entries(&self) -> &[ServiceEntry] {
        &self.entries
    }

    /// Number of service ports.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without services.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate memory held by the table, in bytes: entries, their heap
    /// data, the index's slots and the two maps' buckets.
    pub fn memory_bytes(&self) -> usize {
        let entries = self.entries.capacity() * core::mem::size_of::<ServiceEntry>()
            + self
                .entries
                .iter()
                .map(ServiceEntry::heap_bytes)
                .sum::<usize>();
        // hashbrown: one control byte plus one (key, value) per bucket;
        // buckets ≥ capacity · 8/7, rounded up to a power of two.
        let map = |cap: usize, slot: usize| {
            if cap == 0 {
                0
            } else {
                (cap * 8 / 7).next_power_of_two() * (slot + 1)
            }
        };
        entries
            + self.index.memory_bytes()
            + map(self.vips.capacity(), core::mem::size_of::<(u32, bool)>())
            + map(self.backend_ips.capacity(), core::mem::size_of::<u32>())
    }
}

#[cfg(test)]
mod tests;
