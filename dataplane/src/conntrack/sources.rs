//! Entries per local pod: the count a per-pod limit is checked against.
//!
//! A counter per value of the source address's low 16 bits, exact for pod
//! subnets up to a /16 and small (256 KiB) whatever the table's size; the
//! shards of one table share it, so a pod's entries are counted wherever
//! their keys put them. Entries carry a flag saying they were counted, so
//! the count goes down with the entry however it goes (removed, expired,
//! evicted).

use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::mem::hugemem::{self, HugeChunk};

/// Counters a [`SourceCounts`] holds (one per value of the low 16 bits).
pub const SOURCE_COUNTERS: usize = 1 << 16;

/// How many entries each local pod's source address holds. Charged by
/// [`ConntrackTable::insert_charged`](super::ConntrackTable::insert_charged),
/// released with the entry.
#[derive(Debug)]
pub struct SourceCounts(HugeChunk<AtomicU32>);

impl Default for SourceCounts {
    fn default() -> SourceCounts {
        let mut chunks = hugemem::chunks(1, SOURCE_COUNTERS, || AtomicU32::new(0));
        SourceCounts(chunks.pop().expect("one chunk"))
    }
}

impl SourceCounts {
    /// The counts kept in `counters` (a state file's part of
    /// [`SOURCE_COUNTERS`], or fewer: addresses beyond it are not counted),
    /// as they hold them.
    pub fn over(counters: HugeChunk<AtomicU32>) -> SourceCounts {
        SourceCounts(counters)
    }

    /// Sets every count to zero (before the shards' entries are counted again).
    pub fn clear(&self) {
        self.0.iter().for_each(|c| c.store(0, Ordering::Relaxed));
    }

    #[inline]
    fn counter(&self, addr: Ipv4Addr) -> Option<&AtomicU32> {
        self.0.get((addr.to_bits() & 0xffff) as usize)
    }

    /// Entries charged to `addr` (and to addresses equal to it in their low 16 bits).
    #[inline]
    pub fn get(&self, addr: Ipv4Addr) -> u32 {
        self.counter(addr).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub(super) fn add(&self, addr: Ipv4Addr) {
        if let Some(c) = self.counter(addr) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn sub(&self, addr: Ipv4Addr) {
        if let Some(c) = self.counter(addr) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Bytes it holds.
    pub fn memory_bytes(&self) -> usize {
        self.0.len() * size_of::<AtomicU32>()
    }
}
