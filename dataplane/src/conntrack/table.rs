//! The table: an entry slab, a free list and an open-addressing index.
//!
//! The index holds two slots per entry (original and reply key), each an
//! entry id with the direction in its low bit plus 32 bits of the key's
//! hash; probing is linear, deletion shifts back (no tombstones, so churn
//! does not slow lookups). Its size is the power of two at or above four
//! slots per entry: load ≤ 0.5.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod entry;
mod free;
mod index;

use super::key::{ConnKey, Nat};
use super::sources::SourceCounts;
use super::tcp::{TcpReject, TcpSegment, TcpState, TcpTracking};
use super::{ConntrackStats, Direction, Timeouts};
use crate::mem::hugemem::{self, HugeChunk};
use crate::wire::IpProtocol;
#[cfg(test)]
pub(crate) use entry::tcp_state_offset;
use entry::{CHARGED, IN_USE, update_entry, update_tcp_entry};
pub use entry::{Entry, EntryId, Listing};
use free::FreeList;
pub use free::slots_for as free_list_slots;
use index::{EMPTY, Index, Slot, home_slot_address};
pub use index::{INDEX_SLOT_BYTES, IndexReader, KeyHasher};

/// How far an insert into a full table looks for an entry it may evict
/// (expired, unassured, or closing).
const EVICTION_SCAN: usize = 4096;
/// How far it looks again within the second after a scan found none: a
/// flood against a table full of established connections costs a short
/// scan per packet, not a lap of the table.
const EVICTION_RESCAN: usize = 64;
/// The most entries a table may hold (index slots must fit the hash tag).
pub const MAX_CAPACITY: usize = 1 << 29;

/// Why an insert failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum InsertError {
    /// A live entry already holds the original or the reply key.
    #[error("a live connection already uses this tuple")]
    Clash(EntryId),
    /// The table is full of entries it may not evict (assured, not closing).
    #[error("the connection table is full of established connections")]
    Full,
    /// The source already has as many entries as its limit allows.
    #[error("the source has as many tracked connections as it may")]
    SourceLimit,
}

/// Table time: whole seconds of the pipeline clock.
#[inline]
fn seconds(now_ns: u64) -> u32 {
    u32::try_from(now_ns / 1_000_000_000).unwrap_or(u32::MAX)
}

/// The memory of one table: entries, index slots, free list (see
/// [`free_list_slots`]) and the per-source counts it shares with the
/// other shards.
pub type TableMemory = (
    HugeChunk<Entry>,
    HugeChunk<AtomicU64>,
    HugeChunk<u32>,
    Arc<SourceCounts>,
);

/// A bounded connection tracking table, owned by one worker.
pub struct ConntrackTable {
    entries: HugeChunk<Entry>,
    free: FreeList,
    index: Index,
    mask: usize,
    hasher: KeyHasher,
    timeouts: Timeouts,
    hand: usize,
    len: usize,
    stats: ConntrackStats,
    /// Entries per local pod, shared with the other shards.
    sources: Arc<SourceCounts>,
    /// Table time of the last eviction scan that found nothing to evict.
    full_since: Option<u32>,
}

impl fmt::Debug for ConntrackTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConntrackTable")
            .field("capacity", &self.entries.len())
            .field("len", &self.len)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ConntrackTable {
    /// A table for `capacity` connections (clamped to 1..=[`MAX_CAPACITY`]);
    /// allocates everything now.
    pub fn new(capacity: usize, timeouts: Timeouts) -> ConntrackTable {
        let hasher = KeyHasher::default();
        ConntrackTable::many(1, capacity, &hasher, timeouts)
            .pop()
            .expect("one table")
    }

    /// `count` tables of `capacity` connections each (clamped as in
    /// [`new`](Self::new)), hashing keys with `hasher`, their entries and
    /// index slots in one region of huge pages ([`hugemem`]): the shards
    /// of the shared table.
    pub fn many(
        count: usize,
        capacity: usize,
        hasher: &KeyHasher,
        timeouts: Timeouts,
    ) -> Vec<ConntrackTable> {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let slots = Self::index_slots(capacity);
        let entries = hugemem::chunks(count, capacity, || Entry::FREE);
        let indexes = hugemem::chunks(count, slots, || AtomicU64::new(EMPTY.to_bits()));
        let frees = hugemem::chunks(count, free_list_slots(capacity), || 0u32);
        let sources = Arc::new(SourceCounts::default());
        entries
            .into_iter()
            .zip(indexes)
            .zip(frees)
            .map(|((entries, index), free)| {
                let memory = (entries, Arc::new(index), free, Arc::clone(&sources));
                let mut table = ConntrackTable::with_memory(memory, hasher.clone(), timeouts);
                table.refill();
                table
            })
            .collect()
    }

    /// A table over memory kept in a state file: `entries` (read as they
    /// are), `index` (its slots) and `free` (its free list). `fresh`: the
    /// memory holds nothing yet (the index is emptied, every entry is
    /// free). Otherwise the table takes the entries and the index as they
    /// are, and an index slot naming no entry of the table refuses the
    /// memory (its number is the error); its free list, length and
    /// per-source counts are not trusted until [`settle`](Self::settle)
    /// (the process that wrote them may still be running).
    pub fn attach(
        (entries, index, free, sources): TableMemory,
        hasher: KeyHasher,
        timeouts: Timeouts,
        fresh: bool,
    ) -> Result<ConntrackTable, usize> {
        if !index.len().is_power_of_two() || entries.is_empty() {
            return Err(0);
        }
        if free_list_slots(entries.len()) > free.len() {
            return Err(0);
        }
        if fresh {
            index
                .iter()
                .for_each(|s| s.store(EMPTY.to_bits(), Ordering::Relaxed));
        } else if let Some(bad) = index.iter().position(|s| {
            let value = Slot::from_bits(s.load(Ordering::Relaxed)).value;
            value != EMPTY.value && (value >> 1) as usize >= entries.len()
        }) {
            return Err(bad);
        }
        let memory = (entries, Arc::new(index), free, sources);
        let mut table = ConntrackTable::with_memory(memory, hasher, timeouts);
        if fresh {
            table.refill();
        }
        Ok(table)
    }

    /// Takes the free list and the per-source counts as the state file
    /// holds them (written by a process that stopped cleanly); `false` if
    /// the list's length cannot be right (then [`rebuild`](Self::rebuild)
    /// must make them). The ids on the list are not read here (a million
    /// of them would lengthen a takeover's gap): one naming no entry or
    /// one in use is skipped when it comes up ([`insert`](Self::insert)).
    pub fn settle(&mut self) -> bool {
        let sound = self.free.reload() && self.free.len() <= self.entries.len();
        self.len = self.entries.len().saturating_sub(self.free.len());
        sound
    }

    /// Makes the free list, the length and the per-source counts from the
    /// entries (the counts of other shards sharing them must have been
    /// cleared first: see [`SourceCounts::clear`]).
    pub fn rebuild(&mut self) {
        self.free.clear();
        for (i, e) in self.entries.iter().enumerate().rev() {
            if !e.in_use() {
                self.free.push(i as u32);
            } else if e.flags & CHARGED != 0 {
                self.sources.add(e.original.src_addr);
            }
        }
        self.len = self.entries.len() - self.free.len();
    }

    /// Every entry free: the free list holds every id, lowest on top.
    fn refill(&mut self) {
        self.free.clear();
        for id in (0..self.entries.len()).rev() {
            self.free.push(id as u32);
        }
        self.len = 0;
    }

    /// Index slots of a table of `capacity` (clamped) entries.
    pub fn index_slots(capacity: usize) -> usize {
        (capacity.clamp(1, MAX_CAPACITY) * 4).next_power_of_two()
    }

    fn with_memory(
        (entries, index, free, sources): (
            HugeChunk<Entry>,
            Index,
            HugeChunk<u32>,
            Arc<SourceCounts>,
        ),
        hasher: KeyHasher,
        timeouts: Timeouts,
    ) -> ConntrackTable {
        ConntrackTable {
            mask: index.len() - 1,
            entries,
            free: FreeList::over(free),
            index,
            hasher,
            timeouts,
            hand: 0,
            len: 0,
            stats: ConntrackStats::default(),
            sources,
            full_since: None,
        }
    }

    /// Live and not-yet-expired-away entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// The counters.
    pub fn stats(&self) -> &ConntrackStats {
        &self.stats
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Entries per local pod (shared with the table's other shards).
    pub fn sources(&self) -> &SourceCounts {
        &self.sources
    }

    /// Bytes the table allocated: entries, free list and index.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * size_of::<Entry>()
            + (self.free.capacity() + 1) * size_of::<u32>()
            + self.index.len() * INDEX_SLOT_BYTES
    }

    /// The entry `id` names, if it is in use.
    #[inline]
    pub fn get(&self, id: EntryId) -> Option<&Entry> {
        self.entries.get(id.0 as usize).filter(|e| e.in_use())
    }

    /// Every entry in use (including expired ones not yet collected), for listings.
    pub fn iter(&self) -> impl Iterator<Item = (EntryId, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.in_use())
            .map(|(i, e)| (EntryId(i as u32), e))
    }

    #[inline]
    fn hash(&self, key: &ConnKey) -> u32 {
        self.hasher.hash(key)
    }

    /// A read-only view of the index, usable without the table's lock,
    /// for prefetching: see [`IndexReader`].
    pub fn index_reader(&self) -> IndexReader {
        IndexReader {
            index: Arc::clone(&self.index),
            mask: self.mask,
            entries: self.entries.as_ptr() as usize,
        }
    }

    /// The index value (`id << 1 | direction`) of `key`.
    #[inline]
    fn find(&self, key: &ConnKey) -> Option<u32> {
        self.find_hashed(key, self.hash(key))
    }

    #[inline]
    fn find_hashed(&self, key: &ConnKey, tag: u32) -> Option<u32> {
        let mut i = tag as usize & self.mask;
        loop {
            let slot = self.slot(i)?;
            if slot.value == EMPTY.value {
                return None;
            }
            if slot.tag == tag {
                let dir = if slot.value & 1 == 0 {
                    Direction::Original
                } else {
                    Direction::Reply
                };
                let entry = self.entries.get((slot.value >> 1) as usize)?;
                if entry.key(dir).words() == key.words() {
                    return Some(slot.value);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The live entry `key` belongs to, and the direction `key` travels in.
    /// Read-only: call [`update`](Self::update) or
    /// [`update_tcp`](Self::update_tcp) to refresh it.
    #[inline]
    pub fn lookup(&self, key: &ConnKey, now_ns: u64) -> Option<(EntryId, Direction)> {
        self.resolve(self.find(key)?, seconds(now_ns))
    }

    /// [`lookup`](Self::lookup) for a batch: `out[i]` answers `keys[i]`
    /// (up to the shorter of the two). Hashing every key and touching its
    /// index slot first lets the CPU overlap the cache misses of the batch.
    pub fn lookup_batch(
        &self,
        keys: &[ConnKey],
        now_ns: u64,
        out: &mut [Option<(EntryId, Direction)>],
    ) {
        const CHUNK: usize = 32;
        let now = seconds(now_ns);
        for (keys, out) in keys.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let mut tags = [0u32; CHUNK];
            let mut touched = 0u32;
            for (tag, key) in tags.iter_mut().zip(keys) {
                *tag = self.hash(key);
                // Reading the home slot now starts its cache miss early.
                touched ^= self.slot(*tag as usize & self.mask).map_or(0, |s| s.value);
            }
            core::hint::black_box(touched);
            for ((o, key), &tag) in out.iter_mut().zip(keys).zip(&tags) {
                *o = self
                    .find_hashed(key, tag)
                    .and_then(|value| self.resolve(value, now));
            }
        }
    }

    #[inline]
    fn resolve(&self, value: u32, now: u32) -> Option<(EntryId, Direction)> {
        let id = value >> 1;
        let entry = self.entries.get(id as usize)?;
        if !entry.live(now) {
            return None;
        }
        let dir = if value & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        };
        Some((EntryId(id), dir))
    }

    /// Tracks a new connection whose first packet has key `original`,
    /// translated by `nat`. A full table evicts one entry first: expired,
    /// unassured, or an assured TCP connection already closing, like
    /// Linux's early drop; never an established one to make room for a new
    /// one ([`InsertError::Full`] then). Fails with a clash if a live entry
    /// holds either key (e.g. two clients masqueraded onto the same port).
    /// TCP entries start in NONE: feed the first segment to
    /// [`update_tcp`](Self::update_tcp) next.
    pub fn insert(
        &mut self,
        original: ConnKey,
        nat: Nat,
        now_ns: u64,
    ) -> Result<EntryId, InsertError> {
        self.insert_charged(original, nat, now_ns, None)
    }

    /// [`insert`](Self::insert) for a connection from a local pod when
    /// `source_limit` is given: the entry is counted under the original
    /// source address in [`SourceCounts`] until it goes, and refused
    /// ([`InsertError::SourceLimit`]) if that address already holds
    /// `source_limit` entries.
    pub fn insert_charged(
        &mut self,
        original: ConnKey,
        nat: Nat,
        now_ns: u64,
        source_limit: Option<u32>,
    ) -> Result<EntryId, InsertError> {
        let now = seconds(now_ns);
        let reply = nat.reply_key(&original);
        for key in [original, reply] {
            if let Some(value) = self.find(&key) {
                let id = EntryId(value >> 1);
                if self.get(id).is_some_and(|e| e.live(now)) {
                    self.stats.clashes += 1;
                    return Err(InsertError::Clash(id));
                }
                self.release(id);
                self.stats.expired += 1;
            }
        }
        if source_limit.is_some_and(|limit| self.sources.get(original.src_addr) >= limit) {
            return Err(InsertError::SourceLimit);
        }
        if self.free.is_empty() {
            self.evict(now);
        }
        let Some(id) = self.take_free() else {
            return Err(InsertError::Full);
        };
        let timeout = match original.protocol {
            IpProtocol::TCP => self.timeouts.tcp_syn_sent,
            IpProtocol::UDP => self.timeouts.udp_unreplied,
            IpProtocol::ICMP => self.timeouts.icmp,
            _ => self.timeouts.generic,
        };
        let flags = if source_limit.is_some() {
            self.sources.add(original.src_addr);
            IN_USE | CHARGED
        } else {
            IN_USE
        };
        if let Some(e) = self.entries.get_mut(id as usize) {
            *e = Entry {
                original,
                reply,
                tcp: TcpTracking::NEW,
                expires: now.saturating_add(timeout),
                flags,
                mark: 0,
            };
        }
        self.index_insert(&original, id << 1);
        self.index_insert(&reply, (id << 1) | 1);
        self.len += 1;
        self.stats.inserted += 1;
        Ok(EntryId(id))
    }

    /// An id off the free list whose entry is free: a list kept in a state
    /// file that names an entry in use (damaged) loses that id, never the
    /// entry.
    #[inline]
    fn take_free(&mut self) -> Option<u32> {
        while let Some(id) = self.free.pop() {
            if self.entries.get(id as usize).is_some_and(|e| !e.in_use()) {
                return Some(id);
            }
        }
        None
    }

    /// Records a non-TCP packet (UDP, ICMP echo, other) of direction `dir`:
    /// refreshes the timeout; the first reply marks the entry replied (UDP:
    /// assured, with the longer timeout).
    #[inline]
    pub fn update(&mut self, id: EntryId, dir: Direction, now_ns: u64) {
        if let Some(e) = self.entries.get_mut(id.0 as usize).filter(|e| e.in_use()) {
            update_entry(e, &self.timeouts, dir, now_ns);
        }
    }

    /// Runs a TCP segment of direction `dir` through the entry's state
    /// machine: on success refreshes the timeout for the new state and marks
    /// the entry assured once established with both sides seen. On failure
    /// nothing changes and the reason is counted; the caller decides whether
    /// to forward the segment (Linux forwards it untracked) or drop it.
    #[inline]
    pub fn update_tcp(
        &mut self,
        id: EntryId,
        dir: Direction,
        segment: &TcpSegment,
        now_ns: u64,
    ) -> Result<TcpState, TcpReject> {
        let Some(e) = self.entries.get_mut(id.0 as usize).filter(|e| e.in_use()) else {
            return Err(TcpReject::InvalidTransition);
        };
        update_tcp_entry(e, (&self.timeouts, &mut self.stats), dir, segment, now_ns)
    }

    /// Records a packet of direction `dir` on entry `id`: a TCP `segment`
    /// through [`update_tcp`](Self::update_tcp), anything else through
    /// [`update`](Self::update) (which always succeeds).
    #[inline]
    pub fn track(
        &mut self,
        id: EntryId,
        dir: Direction,
        segment: Option<&TcpSegment>,
        now_ns: u64,
    ) -> Result<TcpState, TcpReject> {
        // A free entry: what update_tcp and update give for it.
        let free = match segment {
            Some(_) => Err(TcpReject::InvalidTransition),
            None => Ok(TcpState::default()),
        };
        self.track_if(id, dir, segment, now_ns, |_| true)
            .unwrap_or(free)
    }

    /// [`track`](Self::track) for an entry the caller named before (a
    /// cached flow), if `check` still accepts it: one visit to the entry.
    /// `None`: the entry is free or `check` refused it; nothing changed.
    #[inline]
    pub fn track_if(
        &mut self,
        id: EntryId,
        dir: Direction,
        segment: Option<&TcpSegment>,
        now_ns: u64,
        check: impl FnOnce(&Entry) -> bool,
    ) -> Option<Result<TcpState, TcpReject>> {
        let e = self.entries.get_mut(id.0 as usize).filter(|e| e.in_use())?;
        if !check(e) {
            return None;
        }
        Some(match segment {
            Some(segment) => {
                update_tcp_entry(e, (&self.timeouts, &mut self.stats), dir, segment, now_ns)
            }
            None => {
                update_entry(e, &self.timeouts, dir, now_ns);
                Ok(TcpState::default())
            }
        })
    }

    /// Sets the owner's tag of entry `id` (no-op if it is free).
    #[inline]
    pub fn set_mark(&mut self, id: EntryId, mark: u16) {
        if let Some(e) = self.entries.get_mut(id.0 as usize).filter(|e| e.in_use()) {
            e.mark = mark;
        }
    }

    /// Removes the entry `id` names (no-op if it is free).
    pub fn remove(&mut self, id: EntryId) {
        if self.get(id).is_some() {
            self.release(id);
            self.stats.removed += 1;
        }
    }

    /// Moves the clock hand over at most `budget` slots, removing entries
    /// whose timeout ran out; returns how many it removed.
    pub fn expire(&mut self, now_ns: u64, budget: usize) -> usize {
        let now = seconds(now_ns);
        let mut removed = 0;
        for _ in 0..budget.min(self.entries.len()) {
            let i = self.hand;
            self.hand = if i + 1 == self.entries.len() {
                0
            } else {
                i + 1
            };
            if self
                .entries
                .get(i)
                .is_some_and(|e| e.in_use() && e.expires <= now)
            {
                self.release(EntryId(i as u32));
                removed += 1;
            }
        }
        self.stats.expired += removed as u64;
        removed
    }

    /// Frees one slot of a full table: the first entry the clock hand
    /// meets within `EVICTION_SCAN` that is expired, unassured, or an
    /// assured TCP connection already closing; none if there is none (then
    /// the next scans within the same second look only `EVICTION_RESCAN`
    /// far). The hand keeps moving, so a run of established entries is
    /// crossed once per lap, not once per insert.
    fn evict(&mut self, now: u32) {
        let scan = if self.full_since == Some(now) {
            EVICTION_RESCAN
        } else {
            EVICTION_SCAN
        };
        self.full_since = (!self.evict_one(now, scan)).then_some(now);
        self.prefetch_next_victim();
    }

    /// A full table stays full under a flood: the next insert evicts too,
    /// most likely the entry under the hand. Start loading the index slots
    /// its removal will rewrite (random lines of a large index) now.
    fn prefetch_next_victim(&self) {
        if let Some(e) = self.entries.get(self.hand).filter(|e| e.in_use()) {
            for key in [&e.original, &e.reply] {
                hugemem::prefetch(home_slot_address(&self.index, self.mask, self.hash(key)));
            }
        }
    }

    /// [`evict`](Self::evict) looking at most `scan` entries; `true` if it freed one.
    fn evict_one(&mut self, now: u32, scan: usize) -> bool {
        let n = self.entries.len();
        for _ in 0..scan.min(n) {
            let i = self.hand;
            self.hand = if i + 1 == n { 0 } else { i + 1 };
            let Some(e) = self.entries.get(i).filter(|e| e.in_use()) else {
                continue;
            };
            let counter = if e.expires <= now {
                &mut self.stats.expired
            } else if !e.is_assured() {
                &mut self.stats.evicted_unassured
            } else if e.tcp.state().is_closing() {
                &mut self.stats.evicted_assured
            } else {
                continue;
            };
            *counter += 1;
            self.release(EntryId(i as u32));
            return true;
        }
        false
    }

    /// Unlinks an in-use entry from the index and frees its slot.
    fn release(&mut self, id: EntryId) {
        let Some(e) = self.entries.get_mut(id.0 as usize) else {
            return;
        };
        let (original, reply, flags) = (e.original, e.reply, e.flags);
        *e = Entry::FREE;
        if flags & CHARGED != 0 {
            self.sources.sub(original.src_addr);
        }
        self.index_remove(&original, id.0 << 1);
        self.index_remove(&reply, (id.0 << 1) | 1);
        self.free.push(id.0);
        self.len -= 1;
    }

    #[inline]
    fn slot(&self, i: usize) -> Option<Slot> {
        self.index
            .get(i)
            .map(|s| Slot::from_bits(s.load(Ordering::Relaxed)))
    }

    #[inline]
    fn set_slot(&mut self, i: usize, slot: Slot) {
        if let Some(s) = self.index.get(i) {
            s.store(slot.to_bits(), Ordering::Relaxed);
        }
    }

    fn index_insert(&mut self, key: &ConnKey, value: u32) {
        let tag = self.hash(key);
        let mut i = tag as usize & self.mask;
        while let Some(slot) = self.slot(i) {
            if slot.value == EMPTY.value {
                self.set_slot(i, Slot { tag, value });
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `value` from `key`'s probe sequence, shifting later slots back.
    fn index_remove(&mut self, key: &ConnKey, value: u32) {
        let mask = self.mask;
        let mut hole = self.hash(key) as usize & mask;
        loop {
            match self.slot(hole) {
                Some(s) if s.value == value => break,
                Some(s) if s.value != EMPTY.value => hole = (hole + 1) & mask,
                _ => return,
            }
        }
        let mut j = (hole + 1) & mask;
        while let Some(slot) = self.slot(j) {
            if slot.value == EMPTY.value {
                break;
            }
            let home = slot.tag as usize & mask;
            // The slot may move back into the hole unless its home lies after the hole.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.set_slot(hole, slot);
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.set_slot(hole, EMPTY);
    }
}

#[cfg(test)]
mod tests;
