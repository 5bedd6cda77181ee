//! Session affinity (`sessionAffinity: ClientIP`): which endpoint a client
//! was last sent to, per service, for the service's timeout.
//!
//! Shared by all workers (a client's connections spread over workers), in
//! a few mutex-guarded shards of preallocated slots, bounded: a full bucket
//! replaces its expired or soonest-expiring pair. Plain words, so the
//! table can live in the state file and outlive the process. Only new
//! connections to services with affinity touch it — kube-proxy's
//! `-m recent --rcheck --seconds T` then `--set`.

use core::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use crate::mem::hugemem::{self, HugeChunk};
use crate::services::Backend;

const SHARDS: usize = 16;
/// Slots a (service, client) pair may sit in: one cache-line pair of a shard.
const WAYS: usize = 8;
/// Default bound on remembered (service, client) pairs.
pub const DEFAULT_AFFINITY_CAPACITY: usize = 65_536;

/// One remembered pair as four words: the service key; the client address
/// shifted up by 32 with bit 0 set when the slot is used; the endpoint's
/// [`Backend::key`]; the pipeline time (ns) after which it is forgotten.
/// Plain words, so the table can live in a state file.
pub type AffinitySlot = [u64; 4];

const USED: u64 = 1;

/// The node's affinity table: per shard, buckets of [`WAYS`] slots; a full
/// bucket replaces its expired or soonest-expiring pair.
#[derive(Debug)]
pub struct AffinityTable {
    shards: Box<[Mutex<HugeChunk<AffinitySlot>>]>,
}

impl Default for AffinityTable {
    fn default() -> Self {
        AffinityTable::new(DEFAULT_AFFINITY_CAPACITY)
    }
}

impl AffinityTable {
    /// A table for about `capacity` (service, client) pairs; allocates now.
    pub fn new(capacity: usize) -> AffinityTable {
        let per_shard = AffinityTable::slots_per_shard(capacity);
        AffinityTable::from_shards(hugemem::chunks(SHARDS, per_shard, || [0; 4]))
    }

    /// Slots per shard of a table for `capacity` pairs.
    pub fn slots_per_shard(capacity: usize) -> usize {
        capacity.div_ceil(SHARDS).next_multiple_of(WAYS).max(WAYS)
    }

    /// Shards of a table built elsewhere (a state file): each of the same
    /// length, a multiple of [`WAYS`] slots.
    pub fn from_shards(shards: Vec<HugeChunk<AffinitySlot>>) -> AffinityTable {
        AffinityTable {
            shards: shards.into_iter().map(Mutex::new).collect(),
        }
    }

    /// Shards a table has.
    pub const SHARDS: usize = SHARDS;

    fn bucket(
        &self,
        service: u64,
        client: Ipv4Addr,
    ) -> (MutexGuard<'_, HugeChunk<AffinitySlot>>, usize) {
        let mix = crate::services::maglev::mix64(u64::from(client.to_bits()));
        let shard = self.shards[(mix as usize) % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let buckets = (shard.len() / WAYS).max(1);
        let bucket = (crate::services::maglev::mix64(mix ^ service) as usize) % buckets;
        (shard, bucket * WAYS)
    }

    fn tag(client: Ipv4Addr) -> u64 {
        (u64::from(client.to_bits()) << 32) | USED
    }

    /// The endpoint `client` was last sent to for `service` (a
    /// [`ServiceEntry::key`](crate::services::ServiceEntry::key)), if not expired.
    pub fn lookup(&self, service: u64, client: Ipv4Addr, now_ns: u64) -> Option<Backend> {
        let (shard, first) = self.bucket(service, client);
        let tag = AffinityTable::tag(client);
        let slot = shard
            .get(first..first + WAYS)?
            .iter()
            .find(|s| s[0] == service && s[1] == tag && s[3] > now_ns)?;
        let key = slot[2];
        Some(Backend::new(Ipv4Addr::from((key >> 16) as u32), key as u16))
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
        let (mut shard, first) = self.bucket(service, client);
        let tag = AffinityTable::tag(client);
        let Some(ways) = shard.get_mut(first..first + WAYS) else {
            return;
        };
        let slot = match ways.iter().position(|s| s[0] == service && s[1] == tag) {
            Some(i) => i,
            // Unused slots expire at 0: the soonest to expire is free, or the victim.
            None => (0..WAYS).min_by_key(|&i| ways[i][3]).unwrap_or(0),
        };
        ways[slot] = [
            service,
            tag,
            backend.key(),
            now_ns.saturating_add(timeout_ns),
        ];
    }

    /// Remembered pairs (expired ones included until replaced).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(|e| e.into_inner());
                shard.iter().filter(|s| s[1] & USED != 0).count()
            })
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
        let bound = AffinityTable::SHARDS * AffinityTable::slots_per_shard(32);
        assert!(t.len() <= bound, "{}", t.len());
        assert_eq!(t.lookup(9_999, Ipv4Addr::from(9_999), SEC), Some(b));
    }
}
