//! The service index: (protocol, ClusterIP, port) and (protocol, NodePort)
//! → the service, with what picking a backend for a new flow reads, in one
//! cache line.
//!
//! A new flow to a service reads its index slot, a Maglev slot and the
//! backend list. In a hash map the probe alone is two dependent loads
//! (control bytes, then the bucket), the entry behind it a third, and
//! only then are the Maglev table and backends known: with 100k services
//! each is a miss, and a batch cannot start them early. Here the slot's
//! address follows from the key's hash, so the prefetch pass loads a
//! batch's slots in one sweep ([`ServiceIndex::prefetch`]); each slot
//! holds the Maglev table and backends themselves (shared with the
//! [`ServiceEntry`]), so a second sweep starts loading the Maglev slot and
//! backends ([`Indexed::prefetch_select`]), and the entry is only read
//! for session affinity.
//!
//! Open addressing with linear probing over at most half-full slots of 64
//! bytes; the table is built once per snapshot and never changes.

use std::sync::Arc;

use super::maglev::BackendId as Backend;
use super::maglev::{Maglev, mix64};
use super::protocol::Protocol;

/// Never a key: packed keys use at most 57 bits.
const EMPTY: u64 = u64::MAX;
/// Tells NodePort keys from ClusterIP keys.
const NODE_PORT: u64 = 1 << 62;

/// A service's key in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceKey(u64);

impl ServiceKey {
    /// The key of a ClusterIP service port.
    #[inline]
    pub fn cluster(protocol: Protocol, vip: core::net::Ipv4Addr, port: u16) -> ServiceKey {
        ServiceKey(
            (u64::from(vip.to_bits()) << 24)
                | (u64::from(port) << 8)
                | u64::from(protocol.number()),
        )
    }

    /// The key of a NodePort.
    #[inline]
    pub fn node_port(protocol: Protocol, node_port: u16) -> ServiceKey {
        ServiceKey(NODE_PORT | (u64::from(node_port) << 8) | u64::from(protocol.number()))
    }

    /// The key packed into one integer.
    #[inline]
    pub fn bits(self) -> u64 {
        self.0
    }
}

/// What the index holds of a service: the entry's position, and what
/// selecting a backend reads.
#[derive(Clone, Debug)]
pub struct Indexed {
    entry: u32,
    affinity: bool,
    external_local: bool,
    maglev: Maglev,
    selectable: Arc<[Backend]>,
}

impl Indexed {
    /// What the index keeps of the service in entry `entry`.
    pub(super) fn new(
        entry: u32,
        affinity: bool,
        external_local: bool,
        maglev: Maglev,
        selectable: Arc<[Backend]>,
    ) -> Indexed {
        Indexed {
            entry,
            affinity,
            external_local,
            maglev,
            selectable,
        }
    }

    /// The entry's position in the table.
    #[inline]
    pub fn entry(&self) -> u32 {
        self.entry
    }

    /// Whether the service has ClientIP affinity (its entry has the timeout).
    #[inline]
    pub fn has_affinity(&self) -> bool {
        self.affinity
    }

    /// Whether connections from outside keep the client's address.
    #[inline]
    pub fn external_local(&self) -> bool {
        self.external_local
    }

    /// The backend for a new flow, as [`ServiceEntry::select`].
    #[inline]
    pub fn select(&self, flow_hash: u64) -> Option<Backend> {
        select(&self.maglev, &self.selectable, flow_hash)
    }

    /// Starts loading what [`select`](Self::select) reads (a hint).
    #[inline]
    pub fn prefetch_select(&self, flow_hash: u64) {
        prefetch_select(&self.maglev, &self.selectable, flow_hash);
    }
}

/// The backend of `selectable` that `maglev` picks for `flow_hash`.
#[inline]
pub(super) fn select(maglev: &Maglev, selectable: &[Backend], flow_hash: u64) -> Option<Backend> {
    maglev
        .lookup(flow_hash)
        .and_then(|i| selectable.get(i).copied())
}

/// Starts loading what [`select`] reads for `flow_hash`: the Maglev slot
/// and the backends (a hint).
#[inline]
pub(super) fn prefetch_select(maglev: &Maglev, selectable: &[Backend], flow_hash: u64) {
    if let Some(slot) = maglev.slot_address(flow_hash) {
        crate::mem::hugemem::prefetch(slot);
        crate::mem::hugemem::prefetch(selectable.as_ptr() as usize);
    }
}

/// One slot: a key and its service (one cache line).
#[derive(Clone, Debug)]
#[repr(align(64))]
struct Slot {
    key: u64,
    service: Option<Indexed>,
}

const _: () = assert!(size_of::<Slot>() == 64, "a slot is one cache line");

/// The index: built once per service table.
#[derive(Clone, Debug, Default)]
pub struct ServiceIndex {
    slots: Vec<Slot>,
    mask: usize,
    len: usize,
}

/// A key already in the index, with the position of the entry holding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken(pub u32);

impl ServiceIndex {
    /// An empty index with room for `keys` keys at most half full.
    pub fn with_capacity(keys: usize) -> ServiceIndex {
        let slots = (keys * 2).next_power_of_two().max(8);
        ServiceIndex {
            slots: vec![
                Slot {
                    key: EMPTY,
                    service: None,
                };
                slots
            ],
            mask: slots - 1,
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: ServiceKey) -> usize {
        mix64(key.0) as usize & self.mask
    }

    /// Adds `key` for `service`; `Err` names the entry that has it.
    /// The capacity given at construction must not be exceeded.
    pub fn insert(&mut self, key: ServiceKey, service: Indexed) -> Result<(), Taken> {
        if let Some(found) = self.get(key) {
            return Err(Taken(found.entry));
        }
        if (self.len + 1) * 2 > self.slots.len() {
            // More keys than the index was sized for: grow (build-time only).
            let mut bigger = ServiceIndex::with_capacity(self.slots.len());
            for slot in self.slots.drain(..) {
                if let Some(s) = slot.service {
                    bigger.place(ServiceKey(slot.key), s);
                }
            }
            *self = bigger;
        }
        self.place(key, service);
        Ok(())
    }

    fn place(&mut self, key: ServiceKey, service: Indexed) {
        let mut i = self.home(key);
        while self.slots.get(i).is_some_and(|s| s.key != EMPTY) {
            i = (i + 1) & self.mask;
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Slot {
                key: key.0,
                service: Some(service),
            };
            self.len += 1;
        }
    }

    /// The service indexed under `key`.
    #[inline]
    pub fn get(&self, key: ServiceKey) -> Option<&Indexed> {
        let mut i = self.home(key);
        // At most half full: an empty slot ends every probe.
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(i)?;
            if slot.key == key.0 {
                return slot.service.as_ref();
            }
            if slot.key == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Starts loading `key`'s home slot (a hint).
    #[inline]
    pub fn prefetch(&self, key: ServiceKey) {
        if let Some(slot) = self.slots.get(self.home(key)) {
            crate::mem::hugemem::prefetch(core::ptr::from_ref(slot) as usize);
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the slots.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use super::*;
    use crate::services::{BackendSpec, ServiceEntry, ServiceSpec};

    fn service(vip: u32, port: u16, backends: u8) -> ServiceEntry {
        ServiceEntry::new(&ServiceSpec {
            external_local: false,
            vip: Ipv4Addr::from_bits(vip),
            port,
            protocol: Protocol::Tcp,
            target_port: 8080,
            node_port: None,
            affinity: None,
            backends: (1..=backends)
                .map(|b| BackendSpec::ready(Ipv4Addr::new(10, 244, 1, b), 8080))
                .collect(),
        })
    }

    #[test]
    fn keys_of_both_kinds_never_meet() {
        let vip = Ipv4Addr::new(0, 0, 0, 0);
        for port in [1u16, 80, 30_080, u16::MAX] {
            for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
                assert_ne!(
                    ServiceKey::cluster(p, vip, port),
                    ServiceKey::node_port(p, port)
                );
                let top = ServiceKey::cluster(p, Ipv4Addr::BROADCAST, port).bits();
                assert!(top < NODE_PORT && top != EMPTY);
            }
        }
    }

    #[test]
    fn finds_every_key_and_selects_as_the_entry_does() {
        // Start small: the index grows past its first capacity.
        let mut index = ServiceIndex::with_capacity(1);
        let entries: Vec<ServiceEntry> = (0..5_000u32)
            .map(|i| service(0x0a60_0000 + i / 3, 80 + (i % 3) as u16, (i % 4) as u8))
            .collect();
        for (i, e) in entries.iter().enumerate() {
            let key = ServiceKey::cluster(e.protocol(), e.vip(), e.port());
            index.insert(key, e.indexed(i as u32)).unwrap();
        }
        assert_eq!(index.len(), entries.len());
        assert!(index.slots.len() >= 2 * entries.len());
        for (i, e) in entries.iter().enumerate() {
            let key = ServiceKey::cluster(e.protocol(), e.vip(), e.port());
            let found = index.get(key).expect("indexed");
            assert_eq!(found.entry(), i as u32);
            for h in [0u64, 1, u64::MAX, 0x1234_5678_9abc_def0] {
                assert_eq!(found.select(h), e.select(h));
            }
            assert!(
                index
                    .get(ServiceKey::node_port(e.protocol(), e.port()))
                    .is_none()
            );
        }
        let absent = ServiceKey::cluster(Protocol::Udp, Ipv4Addr::new(10, 96, 0, 0), 80);
        assert!(index.get(absent).is_none());
    }

    #[test]
    fn a_key_taken_names_its_entry() {
        let mut index = ServiceIndex::with_capacity(2);
        let e = service(0x0a60_0001, 80, 1);
        let key = ServiceKey::cluster(Protocol::Tcp, e.vip(), 80);
        assert_eq!(index.insert(key, e.indexed(7)), Ok(()));
        assert_eq!(index.insert(key, e.indexed(9)), Err(Taken(7)));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        let index = ServiceIndex::default();
        let key = ServiceKey::node_port(Protocol::Tcp, 30_080);
        assert!(index.get(key).is_none());
        index.prefetch(key);
        assert!(index.is_empty());
    }
}
