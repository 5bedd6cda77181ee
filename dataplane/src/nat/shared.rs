//! The conntrack table all workers share: shards keyed by the flow's
//! meeting tuple, each a plain [`ConntrackTable`] behind its own mutex.
//!
//! An entry lives in the shard of the (address, port) that appears in both
//! of its keys, so either direction finds it by probing the shard of its
//! source and then of its destination: DNAT entries live with the client
//! (original source = reply destination), masquerade entries with the
//! remote peer (original destination = reply source), and hairpin entries
//! (SNAT + DNAT) pick their SNAT port so that the gateway's (address, port)
//! falls into the client's shard, as does a DNAT entry whose client port is
//! remapped because its reply tuple was taken. ICMP keys shard by address alone, since
//! masquerading rewrites the identifier that stands in for both ports.

use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::conntrack::{
    ConnKey, ConntrackStats, ConntrackTable, Direction, Entry, EntryId, Evictions, IndexReader,
    InsertError, KeyHasher, Nat, TcpReject, TcpSegment, TcpState, Timeouts,
};
use crate::mem::hugemem;
use crate::wire::IpProtocol;

/// Most shards a table is cut into (enough for 16 workers at 4 shards each).
pub const MAX_SHARDS: usize = 64;
/// Fewest entries per shard worth a shard of its own.
const MIN_SHARD_CAPACITY: usize = 256;

/// Which entries [`SharedConntrack::list`] and [`SharedConntrack::flush`]
/// select; `None` matches anything. Fields name the original tuple like
/// `conntrack -L -s/-d/--sport/--dport`, `reply_*` the reply tuple (`-r`/`-q`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackFilter {
    /// IP protocol.
    pub protocol: Option<IpProtocol>,
    /// Original source address.
    pub src: Option<Ipv4Addr>,
    /// Original destination address.
    pub dst: Option<Ipv4Addr>,
    /// Original source port (ICMP: identifier).
    pub sport: Option<u16>,
    /// Original destination port (ICMP: identifier).
    pub dport: Option<u16>,
    /// Reply source address.
    pub reply_src: Option<Ipv4Addr>,
    /// Reply destination address.
    pub reply_dst: Option<Ipv4Addr>,
    /// TCP state (entries of other protocols never match a state).
    pub state: Option<TcpState>,
}

impl ConntrackFilter {
    fn matches(&self, original: &ConnKey, reply: &ConnKey, state: TcpState) -> bool {
        let is = |want: Option<Ipv4Addr>, got: Ipv4Addr| want.is_none_or(|w| w == got);
        let port = |want: Option<u16>, got: u16| want.is_none_or(|w| w == got);
        self.protocol.is_none_or(|p| p == original.protocol)
            && is(self.src, original.src_addr)
            && is(self.dst, original.dst_addr)
            && port(self.sport, original.src_port)
            && port(self.dport, original.dst_port)
            && is(self.reply_src, reply.src_addr)
            && is(self.reply_dst, reply.dst_addr)
            && self
                .state
                .is_none_or(|s| original.protocol == IpProtocol::TCP && s == state)
    }
}

/// One entry as listings show it (`conntrack -L`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackRecord {
    /// IP protocol.
    pub protocol: IpProtocol,
    /// TCP state; `None` for other protocols.
    pub tcp_state: Option<TcpState>,
    /// Seconds until the entry expires.
    pub timeout_secs: u32,
    /// The original direction's tuple.
    pub original: ConnKey,
    /// The reply direction's tuple (carries the NAT).
    pub reply: ConnKey,
    /// Seen both ways (and, for TCP, established).
    pub assured: bool,
    /// A packet of the reply direction was seen.
    pub seen_reply: bool,
    /// The translation of the original direction.
    pub nat: Nat,
}

/// Where a live entry was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its shard.
    pub shard: usize,
    /// Its id in that shard.
    pub id: EntryId,
    /// The direction of the key that found it.
    pub direction: Direction,
}

/// The node's connection tracking table, shared by all workers; every
/// method takes `&self` (the control thread lists and flushes while
/// workers run).
#[derive(Debug)]
pub struct SharedConntrack {
    shards: Box<[Mutex<ConntrackTable>]>,
    mask: usize,
    /// The shards' common key hasher and their indexes, readable without
    /// the locks: enough to find a key's slot and entry addresses for
    /// [`prefetch_batch`](Self::prefetch_batch).
    hasher: KeyHasher,
    readers: Box<[IndexReader]>,
    capacity: usize,
    /// Entries in all shards (kept exact under the shard locks), so an
    /// empty table costs the hot path one atomic load.
    len: AtomicUsize,
    /// Round-robin shard for [`expire_step`](Self::expire_step).
    hand: AtomicUsize,
    /// Handed to another process (a takeover): [`flush`](Self::flush)
    /// removes nothing, since that process now writes the same memory.
    handed_over: AtomicBool,
}

impl Default for SharedConntrack {
    /// A small table for tests (16,384 entries, default timeouts).
    fn default() -> Self {
        SharedConntrack::new(16_384, Timeouts::default())
    }
}

/// Shard of an (address, port) under `mask`: a fixed mix, so every worker
/// (and port allocation) computes the same one. ICMP shards by address.
#[inline]
pub(crate) fn shard_index(mask: usize, addr: Ipv4Addr, port: u16, protocol: IpProtocol) -> usize {
    let port = if protocol == IpProtocol::ICMP {
        0
    } else {
        port
    };
    let x = (u64::from(addr.to_bits()) << 16) | u64::from(port);
    (crate::services::maglev::mix64(x) >> 32) as usize & mask
}

impl SharedConntrack {
    /// A table for `capacity` connections in all, cut into up to
    /// [`MAX_SHARDS`] shards; allocates everything now.
    pub fn new(capacity: usize, timeouts: Timeouts) -> SharedConntrack {
        let (shards, per_shard) = SharedConntrack::shape(capacity);
        let hasher = KeyHasher::default();
        let tables = ConntrackTable::many(shards, per_shard, &hasher, timeouts);
        SharedConntrack::from_tables(tables, hasher)
    }

    /// How a table for `capacity` connections is cut: (shards, entries
    /// per shard). Shards are a power of two.
    pub fn shape(capacity: usize) -> (usize, usize) {
        let capacity = capacity.max(1);
        let mut shards = MAX_SHARDS;
        while shards > 1 && capacity / shards < MIN_SHARD_CAPACITY {
            shards /= 2;
        }
        (shards, capacity.div_ceil(shards))
    }

    /// The shared table over `tables` (a power of two of them, of equal
    /// capacity, as [`shape`](Self::shape) cuts), which hash with `hasher`:
    /// how a table kept in a state file is put back together.
    pub fn from_tables(tables: Vec<ConntrackTable>, hasher: KeyHasher) -> SharedConntrack {
        let shards = tables.len().max(1);
        debug_assert!(shards.is_power_of_two());
        let len = tables.iter().map(ConntrackTable::len).sum();
        SharedConntrack {
            readers: tables.iter().map(ConntrackTable::index_reader).collect(),
            hasher,
            capacity: tables.iter().map(ConntrackTable::capacity).sum(),
            shards: tables.into_iter().map(Mutex::new).collect(),
            mask: shards - 1,
            len: AtomicUsize::new(len),
            hand: AtomicUsize::new(0),
            handed_over: AtomicBool::new(false),
        }
    }

    /// Once the process that wrote the state file the shards live in has
    /// stopped: takes their free lists and per-source counts as the file
    /// holds them if `kept` (that process stopped cleanly and kept them)
    /// and every list is sound; else makes them from the entries, on up to
    /// `threads` threads (a million entries are 64 MB to read). Returns
    /// whether they were made anew.
    pub fn settle(&self, kept: bool, threads: usize) -> bool {
        let mut sound = kept;
        for shard in 0..self.shards.len() {
            sound &= self.lock(shard).settle();
        }
        if !sound {
            // The shards share one set of per-source counts: cleared once,
            // each shard's rebuild counts its entries again.
            self.lock(0).sources().clear();
            let threads = threads.clamp(1, self.shards.len());
            std::thread::scope(|scope| {
                for t in 0..threads {
                    scope.spawn(move || {
                        for shard in (t..self.shards.len()).step_by(threads) {
                            self.lock(shard).rebuild();
                        }
                    });
                }
            });
        }
        let len = (0..self.shards.len()).map(|s| self.lock(s).len()).sum();
        self.len.store(len, Ordering::Relaxed);
        !sound
    }

    /// The key hasher the shards share (its seed is kept in the state file).
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Live entries (expired ones count until collected).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// No entries: the NAT stage skips its lookups.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// The most entries the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Bytes allocated by all shards.
    pub fn memory_bytes(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.lock(i).memory_bytes())
            .sum::<usize>()
            + self.shards.len() * size_of::<Mutex<ConntrackTable>>()
            + self.lock(0).sources().memory_bytes()
    }

    /// The counters, summed over shards.
    pub fn stats(&self) -> ConntrackStats {
        let mut sum = ConntrackStats::default();
        for i in 0..self.shards.len() {
            let s = *self.lock(i).stats();
            sum.inserted += s.inserted;
            sum.removed += s.removed;
            sum.expired += s.expired;
            sum.evicted_unassured += s.evicted_unassured;
            sum.evicted_assured += s.evicted_assured;
            sum.clashes += s.clashes;
            sum.tcp_invalid += s.tcp_invalid;
            sum.tcp_out_of_window += s.tcp_out_of_window;
            sum.tcp_ignored += s.tcp_ignored;
        }
        sum
    }

    /// The shard an (address, port) of `protocol` belongs to.
    #[inline]
    pub fn shard_of(&self, addr: Ipv4Addr, port: u16, protocol: IpProtocol) -> usize {
        shard_index(self.mask, addr, port, protocol)
    }

    /// The shards [`with_entry`](Self::with_entry) probes for `key`, in
    /// order: its source's, then its destination's.
    #[inline]
    fn shards_of(&self, key: &ConnKey) -> [usize; 2] {
        [
            self.shard_of(key.src_addr, key.src_port, key.protocol),
            self.shard_of(key.dst_addr, key.dst_port, key.protocol),
        ]
    }

    /// Starts loading what looking up `keys` will read: the home index
    /// slots in the shards of each key's source and destination (as
    /// [`with_entry`](Self::with_entry) probes them), then the entries
    /// those slots name. Run over a batch before its frames take their
    /// locks one by one, so that the batch's cache misses overlap instead
    /// of stalling each frame under a lock. `tracked[i]` tells whether
    /// `keys[i]` looked tracked (its tag was near its home slot in either
    /// shard): a guess, for prefetching what a new flow needs. A hint:
    /// changes nothing.
    pub fn prefetch_batch(&self, keys: &[ConnKey], tracked: &mut [bool]) {
        const CHUNK: usize = 64;
        for (keys, tracked) in keys.chunks(CHUNK).zip(tracked.chunks_mut(CHUNK)) {
            let mut probes = [(0u32, 0usize, 0usize); CHUNK];
            for (probe, key) in probes.iter_mut().zip(keys) {
                let tag = self.hasher.hash(key);
                let [first, second] = self.shards_of(key);
                for shard in [first, second] {
                    if let Some(r) = self.readers.get(shard) {
                        hugemem::prefetch(r.slot_address(tag));
                    }
                }
                *probe = (tag, first, second);
            }
            for (&(tag, first, second), tracked) in probes.iter().zip(tracked.iter_mut()) {
                *tracked = false;
                for shard in [first, second] {
                    if let Some(entry) = self.readers.get(shard).and_then(|r| r.entry_address(tag))
                    {
                        hugemem::prefetch(entry);
                        *tracked = true;
                    }
                }
            }
        }
    }

    /// Starts loading entry `id` of `shard` (a hint, as
    /// [`prefetch_batch`](Self::prefetch_batch)).
    #[inline]
    pub fn prefetch_entry(&self, shard: usize, id: EntryId) {
        if let Some(r) = self.readers.get(shard) {
            hugemem::prefetch(r.entry_address_of(id));
        }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, ConntrackTable> {
        let m = &self.shards[shard & self.mask];
        // A worker that panicked holding the lock leaves a consistent table.
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on a shard under its lock, keeping the entry count exact.
    #[inline]
    pub fn with_shard<R>(&self, shard: usize, f: impl FnOnce(&mut ConntrackTable) -> R) -> R {
        let mut table = self.lock(shard);
        let before = table.len();
        let r = f(&mut table);
        let after = table.len();
        if after > before {
            self.len.fetch_add(after - before, Ordering::Relaxed);
        } else if after < before {
            self.len.fetch_sub(before - after, Ordering::Relaxed);
        }
        r
    }

    /// [`ConntrackTable::track_if`] on entry `id` of `shard` under its
    /// lock: tracking neither adds nor removes entries, so the count stays.
    #[inline]
    pub fn track_if(
        &self,
        (shard, id): (usize, EntryId),
        (dir, segment): (Direction, Option<&TcpSegment>),
        now_ns: u64,
        check: impl FnOnce(&Entry) -> bool,
    ) -> Option<Result<TcpState, TcpReject>> {
        self.lock(shard).track_if(id, dir, segment, now_ns, check)
    }

    /// Finds the live entry of `key` (probing its source's shard, then its
    /// destination's) and runs `f` on it under the shard lock.
    #[inline]
    pub fn with_entry<R>(
        &self,
        key: &ConnKey,
        now_ns: u64,
        f: impl FnOnce(&mut ConntrackTable, Found) -> R,
    ) -> Option<R> {
        let [first, second] = self.shards_of(key);
        let mut f = Some(f);
        let found = self.probe(first, key, now_ns, &mut f);
        if found.is_some() || first == second {
            return found;
        }
        self.probe(second, key, now_ns, &mut f)
    }

    /// As [`with_entry`](Self::with_entry), probing only the shard of the
    /// key's destination: where the reply of a DNAT flow (endpoint →
    /// client) is found, the only kind switched at L2.
    #[inline]
    pub fn with_entry_at_dst<R>(
        &self,
        key: &ConnKey,
        now_ns: u64,
        f: impl FnOnce(&mut ConntrackTable, Found) -> R,
    ) -> Option<R> {
        let shard = self.shard_of(key.dst_addr, key.dst_port, key.protocol);
        self.probe(shard, key, now_ns, &mut Some(f))
    }

    /// Looks `key` up in `shard`; on a hit runs `f` (taken once) under the lock.
    #[inline]
    fn probe<R, F: FnOnce(&mut ConntrackTable, Found) -> R>(
        &self,
        shard: usize,
        key: &ConnKey,
        now_ns: u64,
        f: &mut Option<F>,
    ) -> Option<R> {
        self.with_shard(shard, |table| {
            let (id, direction) = table.lookup(key, now_ns)?;
            let f = f.take()?;
            Some(f(
                table,
                Found {
                    shard,
                    id,
                    direction,
                },
            ))
        })
    }

    /// Collects expired entries of one shard (round robin over calls), at
    /// most `budget` slots; skips the shard if another thread holds it.
    pub fn expire_step(&self, now_ns: u64, budget: usize) -> usize {
        let shard = self.hand.fetch_add(1, Ordering::Relaxed) & self.mask;
        let Ok(mut table) = self.shards[shard].try_lock() else {
            return 0;
        };
        let removed = table.expire(now_ns, budget);
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Up to `limit` entries matching `filter`, in shard order.
    pub fn list(
        &self,
        filter: &ConntrackFilter,
        now_ns: u64,
        limit: usize,
    ) -> Vec<ConntrackRecord> {
        let mut out = Vec::new();
        for shard in 0..self.shards.len() {
            let table = self.lock(shard);
            for (_, e) in table.iter() {
                if out.len() >= limit {
                    return out;
                }
                let timeout_secs = e.remaining_secs(now_ns);
                if timeout_secs == 0 || !filter.matches(e.original(), e.reply(), e.tcp_state()) {
                    continue;
                }
                out.push(ConntrackRecord {
                    protocol: e.protocol(),
                    tcp_state: (e.protocol() == IpProtocol::TCP).then_some(e.tcp_state()),
                    timeout_secs,
                    original: *e.original(),
                    reply: *e.reply(),
                    assured: e.is_assured(),
                    seen_reply: e.is_replied(),
                    nat: e.nat(),
                });
            }
        }
        out
    }

    /// Marks the table handed to a process taking over (its state file's
    /// memory is that process's now): nothing here removes entries after it.
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
    }

    /// Whether [`hand_over`](Self::hand_over) was called.
    pub fn is_handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// Removes every entry matching `filter`; returns how many.
    pub fn flush(&self, filter: &ConntrackFilter) -> usize {
        self.flush_any(std::slice::from_ref(filter))
    }

    /// Removes every entry matching any of `filters`, in one walk of the
    /// table; returns how many.
    pub fn flush_any(&self, filters: &[ConntrackFilter]) -> usize {
        if self.is_handed_over() {
            return 0;
        }
        let mut removed = 0;
        let mut ids = Vec::new();
        for shard in 0..self.shards.len() {
            self.with_shard(shard, |table| {
                ids.clear();
                ids.extend(
                    table
                        .iter()
                        .filter(|(_, e)| {
                            filters
                                .iter()
                                .any(|f| f.matches(e.original(), e.reply(), e.tcp_state()))
                        })
                        .map(|(id, _)| id),
                );
                for &id in &ids {
                    table.remove(id);
                }
                removed += ids.len();
            });
        }
        removed
    }

    /// Inserts a connection into the shard of `meeting` and runs `f` on the
    /// new entry under the same lock. Returns `f`'s result and how many
    /// entries the insert evicted.
    pub fn insert_with<R>(
        &self,
        meeting: usize,
        original: ConnKey,
        nat: Nat,
        now_ns: u64,
        f: impl FnOnce(&mut ConntrackTable, EntryId) -> R,
    ) -> Result<(R, u64), InsertError> {
        self.insert_charged_with(meeting, (original, nat), None, now_ns, f)
            .map(|(r, evicted)| (r, evicted.unassured + evicted.closing))
    }

    /// [`insert_with`](Self::insert_with) for a connection charged to its
    /// local pod's source address and held to `source_limit`, when given
    /// (see [`ConntrackTable::insert_charged`]); the evictions by kind.
    pub fn insert_charged_with<R>(
        &self,
        meeting: usize,
        (original, nat): (ConnKey, Nat),
        source_limit: Option<u32>,
        now_ns: u64,
        f: impl FnOnce(&mut ConntrackTable, EntryId) -> R,
    ) -> Result<(R, Evictions), InsertError> {
        self.with_shard(meeting, |table| {
            let before = table.stats().evictions();
            let id = table.insert_charged(original, nat, now_ns, source_limit)?;
            let evicted = table.stats().evictions().since(before);
            Ok((f(table, id), evicted))
        })
    }

    /// Entries charged to the local pod address `addr` (see
    /// [`ConntrackTable::insert_charged`]).
    pub fn entries_from(&self, addr: Ipv4Addr) -> u32 {
        self.lock(0).sources().get(addr)
    }
}

/// The clock the workers' `now_ns` comes from: nanoseconds of
/// `CLOCK_MONOTONIC` (since boot), so that expiry times kept in the state
/// file mean the same to the next process. The control thread passes it
/// to [`SharedConntrack::list`] so timeouts read right.
pub fn monotonic_ns() -> u64 {
    u64::try_from(clock_origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The origin of [`monotonic_ns`]: the instant `CLOCK_MONOTONIC` read zero
/// (the boot); workers measure their time from it.
pub fn clock_origin() -> std::time::Instant {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(|| {
        // Read the clock first: `now` is later, so the difference cannot go below the boot.
        let since_boot = std::time::Duration::from_nanos(crate::mem::statefile::monotonic_now_ns());
        let now = std::time::Instant::now();
        now.checked_sub(since_boot).unwrap_or(now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    const CLIENT: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 244, 1, 2), 40000);
    const VIP: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 96, 0, 10), 80);
    const POD: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 244, 1, 3), 8080);

    #[test]
    fn both_directions_find_a_dnat_entry_in_the_client_shard() {
        let ct = SharedConntrack::new(4096, Timeouts::default());
        assert!(ct.shard_count() > 1);
        let orig = ConnKey::tcp(CLIENT, VIP);
        let meeting = ct.shard_of(CLIENT.0, CLIENT.1, IpProtocol::TCP);
        ct.insert_with(meeting, orig, Nat::dnat(POD), SEC, |_, _| ())
            .unwrap();
        assert_eq!(ct.len(), 1);
        let f = ct.with_entry(&orig, SEC, |_, f| f).unwrap();
        assert_eq!((f.shard, f.direction), (meeting, Direction::Original));
        let reply = ConnKey::tcp(POD, CLIENT);
        let f = ct.with_entry(&reply, SEC, |_, f| f).unwrap();
        assert_eq!((f.shard, f.direction), (meeting, Direction::Reply));
        assert!(
            ct.with_entry(&ConnKey::tcp(POD, VIP), SEC, |_, f| f)
                .is_none()
        );
    }

    #[test]
    fn prefetch_batch_tells_tracked_keys_from_new_ones() {
        let ct = SharedConntrack::new(4096, Timeouts::default());
        let orig = ConnKey::tcp(CLIENT, VIP);
        let shard = ct.shard_of(CLIENT.0, CLIENT.1, IpProtocol::TCP);
        ct.insert_with(shard, orig, Nat::dnat(POD), SEC, |_, _| ())
            .unwrap();
        let unknown = ConnKey::tcp((CLIENT.0, CLIENT.1 + 1), VIP);
        let keys = [orig, ConnKey::tcp(POD, CLIENT), unknown];
        let mut tracked = [false, false, true];
        ct.prefetch_batch(&keys, &mut tracked);
        assert_eq!(tracked, [true, true, false]);
        // More keys than one group, and fewer flags than keys: no panic.
        ct.prefetch_batch(&[unknown; 100], &mut [true; 70]);
        // A hint only: nothing changed.
        assert_eq!(ct.len(), 1);
        assert!(ct.with_entry(&orig, SEC, |_, f| f).is_some());
    }

    #[test]
    fn list_filter_and_flush() {
        let ct = SharedConntrack::new(4096, Timeouts::default());
        for port in 0..10u16 {
            let client = (CLIENT.0, 1000 + port);
            let key = if port % 2 == 0 {
                ConnKey::tcp(client, VIP)
            } else {
                ConnKey::udp(client, VIP)
            };
            let shard = ct.shard_of(client.0, client.1, key.protocol);
            ct.insert_with(shard, key, Nat::dnat(POD), SEC, |_, _| ())
                .unwrap();
        }
        let all = ct.list(&ConntrackFilter::default(), SEC, usize::MAX);
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|r| r.nat == Nat::dnat(POD) && !r.assured));
        let udp = ConntrackFilter {
            protocol: Some(IpProtocol::UDP),
            ..Default::default()
        };
        assert_eq!(ct.list(&udp, SEC, usize::MAX).len(), 5);
        assert_eq!(ct.list(&udp, SEC, 2).len(), 2);
        let one = ConntrackFilter {
            sport: Some(1003),
            reply_src: Some(POD.0),
            ..Default::default()
        };
        assert_eq!(ct.list(&one, SEC, 10)[0].original.src_port, 1003);
        let syn_sent = ConntrackFilter {
            state: Some(TcpState::None),
            ..Default::default()
        };
        assert_eq!(ct.list(&syn_sent, SEC, 10).len(), 5);
        assert_eq!(ct.flush(&udp), 5);
        assert_eq!(ct.len(), 5);
        // Handed to a process taking over: its memory is not ours to change.
        ct.hand_over();
        assert_eq!(ct.flush(&ConntrackFilter::default()), 0);
        assert_eq!(ct.len(), 5);
        ct.handed_over.store(false, Ordering::Release);
        assert_eq!(ct.flush(&ConntrackFilter::default()), 5);
        assert!(ct.is_empty());
        assert_eq!(ct.stats().removed, 10);
    }

    #[test]
    fn expire_step_walks_every_shard() {
        let ct = SharedConntrack::new(4096, Timeouts::default());
        for port in 0..100u16 {
            let key = ConnKey::udp((CLIENT.0, port), VIP);
            let shard = ct.shard_of(CLIENT.0, port, IpProtocol::UDP);
            ct.insert_with(shard, key, Nat::dnat(POD), SEC, |_, _| ())
                .unwrap();
        }
        let later = 100 * SEC;
        let removed: usize = (0..ct.shard_count())
            .map(|_| ct.expire_step(later, 4096))
            .sum();
        assert_eq!(removed, 100);
        assert!(ct.is_empty());
    }

    #[test]
    fn memory_per_entry_at_1m_is_at_most_128_bytes() {
        let ct = SharedConntrack::new(1 << 20, Timeouts::default());
        let per_entry = ct.memory_bytes() as f64 / ct.capacity() as f64;
        assert!(per_entry <= 128.0, "{per_entry:.1} bytes/entry");
    }

    #[test]
    fn shards_scale_with_capacity() {
        assert_eq!(
            SharedConntrack::new(1, Timeouts::default()).shard_count(),
            1
        );
        let big = SharedConntrack::new(1 << 20, Timeouts::default());
        assert_eq!(big.shard_count(), MAX_SHARDS);
        assert_eq!(big.capacity(), 1 << 20);
    }
}
