//! The open-addressing index of the table: two slots per entry (original
//! and reply key), each an entry id and direction plus 32 bits of the
//! key's hash.

use core::hash::BuildHasher;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::entry::{Entry, EntryId};
use crate::conntrack::key::ConnKey;
use crate::mem::hugemem::HugeChunk;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Slot {
    /// Low 32 bits of the key's hash; its low bits are the home slot.
    pub(super) tag: u32,
    /// `id << 1 | direction`, or `EMPTY`.
    pub(super) value: u32,
}

impl Slot {
    pub(super) const fn from_bits(bits: u64) -> Slot {
        Slot {
            tag: (bits >> 32) as u32,
            value: bits as u32,
        }
    }

    pub(super) const fn to_bits(self) -> u64 {
        ((self.tag as u64) << 32) | self.value as u64
    }
}

/// The index: slots written only under the table's `&mut` (its shard
/// lock), and atomic so that a prefetch pass may read one without the
/// lock ([`ConntrackTable::index_reader`]); relaxed loads and stores are
/// plain moves.
pub(super) type Index = Arc<HugeChunk<AtomicU64>>;

/// Bytes of one index slot (for computing a slot's address).
pub const INDEX_SLOT_BYTES: usize = size_of::<AtomicU64>();

pub(super) const EMPTY: Slot = Slot {
    tag: 0,
    value: u32::MAX,
};

/// Hashes keys for the index; tables that share one (the shards of the
/// shared table) let a key be hashed once, outside their locks.
#[derive(Clone, Debug)]
pub struct KeyHasher(foldhash::fast::FixedState, u64);

impl Default for KeyHasher {
    /// A hasher with a seed drawn at random (per process and call).
    fn default() -> KeyHasher {
        KeyHasher::with_seed(foldhash::fast::RandomState::default().hash_one(0u64))
    }
}

impl KeyHasher {
    /// A hasher with this seed: an index kept in a state file is read
    /// with the seed it was built with.
    pub fn with_seed(seed: u64) -> KeyHasher {
        KeyHasher(foldhash::fast::FixedState::with_seed(seed), seed)
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.1
    }

    /// The index tag of `key`.
    #[inline]
    pub fn hash(&self, key: &ConnKey) -> u32 {
        self.0.hash_one(key.words()) as u32
    }
}

/// A table's index as a prefetch pass sees it, without the table's lock:
/// where a key's probe starts, and which entry the slot there names (a
/// guess while other threads change the table; only ever used as a hint).
#[derive(Clone, Debug)]
pub struct IndexReader {
    pub(super) index: Index,
    pub(super) mask: usize,
    pub(super) entries: usize,
}

impl IndexReader {
    /// Address of the home slot of a key hashed to `tag`.
    #[inline]
    pub fn slot_address(&self, tag: u32) -> usize {
        home_slot_address(&self.index, self.mask, tag)
    }

    /// Address of the entry that a slot holding `tag` names, among the
    /// first few of its probe sequence (most keys sit at or just after
    /// their home slot); `None` if none holds it now.
    #[inline]
    pub fn entry_address(&self, tag: u32) -> Option<usize> {
        const PROBES: usize = 4;
        let home = tag as usize & self.mask;
        for i in 0..PROBES {
            let slot = Slot::from_bits(
                self.index
                    .get((home + i) & self.mask)?
                    .load(Ordering::Relaxed),
            );
            if slot.value == EMPTY.value {
                return None;
            }
            if slot.tag == tag {
                return Some(self.entries + (slot.value >> 1) as usize * size_of::<Entry>());
            }
        }
        None
    }

    /// Address of entry `id` (for prefetching; any id gives an address).
    #[inline]
    pub fn entry_address_of(&self, id: EntryId) -> usize {
        self.entries + id.0 as usize * size_of::<Entry>()
    }
}

/// Address of the home slot of a key hashed to `tag` in `index`.
#[inline]
pub(super) fn home_slot_address(index: &Index, mask: usize, tag: u32) -> usize {
    index.as_ptr() as usize + (tag as usize & mask) * INDEX_SLOT_BYTES
}
