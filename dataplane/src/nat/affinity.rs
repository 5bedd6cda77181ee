//! Session affinity (`sessionAffinity: ClientIP`): which endpoint a client
//! was last sent to, per service, for the service's timeout.
//!
//! Shared by all workers (a client's connections spread over workers), in
//! a few mutex-guarded shards of preallocated maps, bounded: a full shard
//! first drops expired entries, else replaces an arbitrary one. Only new
//! connections to services with affinity touch it — kube-proxy's
//! `-m recent --rcheck --seconds T` then `--set`.

use core::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashMap;

use crate::services::Backend;

const SHARDS: usize = 16;
/// Default bound on remembered (service, client) pairs.
pub const DEFAULT_AFFINITY_CAPACITY: usize = 65_536;

#[derive(Clone, Copy, Debug)]
struct Remembered {
    backend: Backend,
    /// Pipeline time (ns) after which it is forgotten.
    expires: u64,
}

type Map = HashMap<(u64, u32), Remembered, foldhash::fast::FixedState>;

/// The node's affinity table.
#[derive(Debug)]
pub struct AffinityTable {
    shards: Box<[Mutex<Map>]>,
    per_shard: usize,
}

impl Default for AffinityTable {
    fn default() -> Self {
        AffinityTable::new(DEFAULT_AFFINITY_CAPACITY)
    }
}

impl AffinityTable {
    /// A table for about `capacity` (service, client) pairs; allocates now.
    pub fn new(capacity: usize) -> AffinityTable {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        AffinityTable {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Map::with_capacity_and_hasher(
                        per_shard,
                        foldhash::fast::FixedState::with_seed(7),
                    ))
                })
                .collect(),
            per_shard,
        }
    }

    fn shard(&self, client: Ipv4Addr) -> MutexGuard<'_, Map> {
        let i = (crate::services::maglev::mix64(u64::from(client.to_bits())) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint `client` was last sent to for `service` (a
    /// [`ServiceEntry::key`](crate::services::ServiceEntry::key)), if not expired.
    pub fn lookup(&self, service: u64, client: Ipv4Addr, now_ns: u64) -> Option<Backend> {
        self.shard(client)
            .get(&(service, client.to_bits()))
            .filter(|r| r.expires > now_ns)
            .map(|r| r.backend)
    }

    /// Remembers `backend` for (`service`, `client`) for `timeout_ns`.
    pub fn remember(
        &self,
        service: u64,
        client: Ipv4Addr,
        backend: Backend,
        now_ns: u64,
        timeout_ns: u64,
    ) {
        let mut map = self.shard(client);
        let key = (service, client.to_bits());
        if map.len() >= self.per_shard && !map.contains_key(&key) {
            map.retain(|_, r| r.expires > now_ns);
            if map.len() >= self.per_shard
                && let Some(victim) = map.keys().next().copied()
            {
                map.remove(&victim);
            }
        }
        map.insert(
            key,
            Remembered {
                backend,
                expires: now_ns.saturating_add(timeout_ns),
            },
        );
    }

    /// Remembered pairs (expired ones included until replaced).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn remembers_until_timeout_and_stays_bounded() {
        let t = AffinityTable::new(32);
        let client = Ipv4Addr::new(10, 244, 1, 2);
        let b = Backend::new(Ipv4Addr::new(10, 244, 1, 3), 80);
        t.remember(1, client, b, 0, 10 * SEC);
        assert_eq!(t.lookup(1, client, 9 * SEC), Some(b));
        assert_eq!(t.lookup(2, client, 9 * SEC), None);
        assert_eq!(t.lookup(1, client, 10 * SEC), None);
        for i in 0..10_000u32 {
            t.remember(u64::from(i), Ipv4Addr::from(i), b, SEC, 100 * SEC);
        }
        assert!(t.len() <= 32, "{}", t.len());
        assert_eq!(t.lookup(9_999, Ipv4Addr::from(9_999), SEC), Some(b));
    }
}
