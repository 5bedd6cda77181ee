//! L2 stage: MAC learning with aging, unicast forwarding, flooding.
//!
//! Every worker keeps its own [`MacTable`] (a plain hash map, no lock on the
//! per-packet path). A MAC learned or moved on one worker is published to
//! the [`SharedMacTable`], whose generation counter tells the other workers
//! to copy it in at their next batch. Learning a known MAC on the same port
//! only refreshes timestamps; the shared copy is refreshed at most once per
//! second per MAC, so aging works across workers without per-packet writes
//! to shared memory.
//!
//! The shared table also writes every change through to the state file
//! ([`SharedMacTable::kept`]), under the lock it takes anyway: a restarted
//! or upgraded daemon starts with the MACs learned before, and the hot
//! path does not change.

use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hashbrown::HashMap;

use crate::mem::hugemem::HugeChunk;
use crate::mem::kept::KeptRecords;
use crate::packet::DropReason;
use crate::packet::{Event, PortId, Verdict, WorkerCounters};
use crate::wire::MacAddr;

/// How often a worker refreshes a MAC's shared timestamp, and sweeps for aged MACs.
const REFRESH_NS: u64 = 1_000_000_000;

/// A learned MAC as stored in the shared table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacRecord {
    /// The port it was last seen on.
    pub port: PortId,
    /// When it was last seen, in pipeline time (ns).
    pub last_seen: u64,
}

/// The node-wide MAC table workers meet in.
#[derive(Debug, Default)]
pub struct SharedMacTable {
    generation: AtomicU64,
    map: Mutex<MacMap>,
}

/// The shared MACs, and the state file's records of them if kept.
#[derive(Debug, Default)]
struct MacMap {
    map: HashMap<u64, MacRecord>,
    kept: Option<KeptRecords>,
}

impl MacMap {
    fn insert(&mut self, mac: u64, record: MacRecord) {
        self.map.insert(mac, record);
        self.keep(mac, record);
    }

    fn keep(&mut self, mac: u64, record: MacRecord) {
        if let Some(kept) = &mut self.kept {
            kept.put(mac, [u64::from(record.port.0), record.last_seen]);
        }
    }

    fn remove(&mut self, mac: u64) {
        self.map.remove(&mac);
        if let Some(kept) = &mut self.kept {
            kept.remove(mac);
        }
    }
}

impl SharedMacTable {
    /// A table kept in `records` (a state file's part), holding the MACs
    /// they have on ports `port_exists` knows; returns it and how many.
    pub fn kept(
        records: HugeChunk<AtomicU64>,
        port_exists: impl Fn(PortId) -> bool,
    ) -> (SharedMacTable, usize) {
        let table = SharedMacTable::default();
        let count = table.take_kept(records, port_exists);
        (table, count)
    }

    /// Keeps the table in `records` from now on, taking the MACs they have
    /// on ports `port_exists` knows (one the table learned since it was
    /// made wins); returns how many it took. Workers copy them in at their
    /// next batch.
    pub fn take_kept(
        &self,
        records: HugeChunk<AtomicU64>,
        port_exists: impl Fn(PortId) -> bool,
    ) -> usize {
        let valid = |mac: u64, [port, _]: [u64; 2]| {
            mac >> 48 == 0 && u16::try_from(port).is_ok_and(|p| port_exists(PortId(p)))
        };
        let (kept, found) = KeptRecords::attach(records, valid);
        let mut shared = self.lock();
        let learned = std::mem::take(&mut shared.map);
        shared.kept = Some(kept);
        let count = found.len();
        for (mac, [port, last_seen]) in found {
            let port = PortId(u16::try_from(port).unwrap_or_default());
            shared.map.insert(mac, MacRecord { port, last_seen });
        }
        for (mac, record) in learned {
            shared.insert(mac, record);
        }
        drop(shared);
        self.generation.fetch_add(1, Ordering::Release);
        count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MacMap> {
        // A worker that panicked while holding the lock leaves valid data.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, mac: u64, record: MacRecord) {
        self.lock().insert(mac, record);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn refresh(&self, mac: u64, record: MacRecord) {
        let mut map = self.lock();
        let Some(r) = map.map.get_mut(&mac).filter(|r| r.port == record.port) else {
            return;
        };
        r.last_seen = r.last_seen.max(record.last_seen);
        let r = *r;
        map.keep(mac, r);
    }

    /// A copy of every entry, for state views.
    pub fn entries(&self) -> Vec<(MacAddr, MacRecord)> {
        let mut v: Vec<_> = self
            .lock()
            .map
            .iter()
            .map(|(k, r)| (MacAddr::from_u64(*k), *r))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

#[derive(Debug, Clone, Copy)]
struct LocalMac {
    port: PortId,
    last_seen: u64,
    published: u64,
}

/// One worker's MAC table.
#[derive(Debug)]
pub(super) struct MacTable {
    local: HashMap<u64, LocalMac, foldhash::fast::RandomState>,
    synced_generation: u64,
    next_sweep: u64,
    /// Grows whenever a lookup's answer may have changed (see [`MacTable::version`]).
    version: u64,
    /// The last (MAC, port, time, version) learned: learning it again
    /// changes nothing (same timestamps; no change since, or the version
    /// would differ), so a batch of frames from one source skips the map.
    last_learned: (u64, PortId, u64, u64),
}

impl Default for MacTable {
    fn default() -> MacTable {
        MacTable {
            local: HashMap::default(),
            synced_generation: 0,
            next_sweep: 0,
            version: 0,
            // No MAC is u64::MAX (48 bits).
            last_learned: (u64::MAX, PortId(0), 0, 0),
        }
    }
}

impl MacTable {
    /// Learns (or refreshes) `mac` on `port`: nothing to do for the MAC
    /// just learned on the same port at the same time (a batch's frames of
    /// one pod), checked inline.
    #[inline(always)]
    pub(super) fn learn(
        &mut self,
        shared: &SharedMacTable,
        counters: &WorkerCounters,
        mac: MacAddr,
        port: PortId,
        now: u64,
    ) {
        let key = mac.to_u64();
        if self.last_learned != (key, port, now, self.version) {
            self.learn_in_map(shared, counters, key, port, now);
        }
    }

    /// The learning itself (out of line: the hot path rarely gets here).
    #[inline(never)]
    fn learn_in_map(
        &mut self,
        shared: &SharedMacTable,
        counters: &WorkerCounters,
        key: u64,
        port: PortId,
        now: u64,
    ) {
        match self.local.get_mut(&key) {
            Some(e) if e.port == port => {
                e.last_seen = now;
                if now.saturating_sub(e.published) >= REFRESH_NS {
                    e.published = now;
                    shared.refresh(
                        key,
                        MacRecord {
                            port,
                            last_seen: now,
                        },
                    );
                }
            }
            Some(e) => {
                self.version += 1;
                *e = LocalMac {
                    port,
                    last_seen: now,
                    published: now,
                };
                shared.publish(
                    key,
                    MacRecord {
                        port,
                        last_seen: now,
                    },
                );
                counters.event(Event::MacMoved);
            }
            None => {
                self.version += 1;
                self.local.insert(
                    key,
                    LocalMac {
                        port,
                        last_seen: now,
                        published: now,
                    },
                );
                shared.publish(
                    key,
                    MacRecord {
                        port,
                        last_seen: now,
                    },
                );
                counters.event(Event::MacLearned);
            }
        }
        self.last_learned = (key, port, now, self.version);
    }

    /// A number that grows whenever the port a MAC maps to may have changed
    /// (learned, moved, aged, or synced from other workers): what the flow
    /// cache validates its output ports against.
    #[inline]
    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// The port `mac` was learned on.
    #[inline]
    pub(super) fn lookup(&self, mac: MacAddr) -> Option<PortId> {
        self.local.get(&mac.to_u64()).map(|e| e.port)
    }

    /// Copies in what other workers published since the last sync.
    #[inline]
    pub(super) fn sync(&mut self, shared: &SharedMacTable) {
        let generation = shared.generation.load(Ordering::Acquire);
        if generation == self.synced_generation {
            return;
        }
        self.version += 1;
        let map = shared.lock();
        for (key, rec) in map.map.iter() {
            let e = self.local.entry(*key).or_insert(LocalMac {
                port: rec.port,
                last_seen: rec.last_seen,
                published: rec.last_seen,
            });
            if rec.last_seen >= e.last_seen {
                e.port = rec.port;
                e.last_seen = rec.last_seen;
            }
        }
        self.synced_generation = generation;
    }

    /// Once per second: removes MACs not seen by any worker within `aging_ns`.
    #[inline]
    pub(super) fn sweep(
        &mut self,
        shared: &SharedMacTable,
        counters: &WorkerCounters,
        now: u64,
        aging_ns: u64,
    ) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now.saturating_add(REFRESH_NS);
        let stale = |t: u64| now.saturating_sub(t) > aging_ns;
        if !self.local.values().any(|e| stale(e.last_seen)) {
            return;
        }
        self.version += 1;
        let mut map = shared.lock();
        self.local.retain(|key, e| {
            if !stale(e.last_seen) {
                return true;
            }
            match map.map.get(key) {
                Some(r) if !stale(r.last_seen) => {
                    e.port = r.port;
                    e.last_seen = r.last_seen;
                    true
                }
                Some(_) => {
                    map.remove(*key);
                    counters.event(Event::MacAged);
                    false
                }
                None => false,
            }
        });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.local.len()
    }
}

/// Verdict for a unicast frame to `dst` that entered on `in_port`.
#[inline]
pub(super) fn unicast_verdict(
    macs: &MacTable,
    counters: &WorkerCounters,
    dst: MacAddr,
    in_port: PortId,
) -> Verdict {
    match macs.lookup(dst) {
        Some(port) if port == in_port => Verdict::Drop(DropReason::SamePort),
        Some(port) => Verdict::Forward(port),
        None => {
            counters.event(Event::UnknownUnicastFlooded);
            Verdict::Flood
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn learn_move_age() {
        let shared = SharedMacTable::default();
        let counters = WorkerCounters::default();
        let mut t = MacTable::default();
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        t.learn(&shared, &counters, m, PortId(1), 0);
        assert_eq!(t.lookup(m), Some(PortId(1)));
        t.learn(&shared, &counters, m, PortId(2), SEC);
        assert_eq!(t.lookup(m), Some(PortId(2)));
        assert_eq!(counters.events(Event::MacLearned), 1);
        assert_eq!(counters.events(Event::MacMoved), 1);
        t.sweep(&shared, &counters, 100 * SEC, 300 * SEC);
        assert_eq!(t.lookup(m), Some(PortId(2)));
        t.sweep(&shared, &counters, 302 * SEC, 300 * SEC);
        assert_eq!(t.lookup(m), None);
        assert!(shared.entries().is_empty());
        assert_eq!(counters.events(Event::MacAged), 1);
    }

    #[test]
    fn workers_meet_in_shared_table() {
        let shared = SharedMacTable::default();
        let counters = WorkerCounters::default();
        let (mut a, mut b) = (MacTable::default(), MacTable::default());
        let m = MacAddr([2, 0, 0, 0, 0, 7]);
        a.learn(&shared, &counters, m, PortId(3), 0);
        assert_eq!(b.lookup(m), None);
        b.sync(&shared);
        assert_eq!(b.lookup(m), Some(PortId(3)));
        // Only worker a keeps seeing traffic from m; b must not age it out.
        for s in 1..=400 {
            a.learn(&shared, &counters, m, PortId(3), s * SEC);
            b.sweep(&shared, &counters, s * SEC, 300 * SEC);
        }
        assert_eq!(b.lookup(m), Some(PortId(3)));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn learning_again_in_one_batch_sees_every_change() {
        let shared = SharedMacTable::default();
        let counters = WorkerCounters::default();
        let (mut a, mut b) = (MacTable::default(), MacTable::default());
        let m = MacAddr([2, 0, 0, 0, 0, 5]);
        // Same MAC, port and time: nothing new.
        a.learn(&shared, &counters, m, PortId(1), SEC);
        a.learn(&shared, &counters, m, PortId(1), SEC);
        assert_eq!(counters.events(Event::MacLearned), 1);
        // Another port at the same time is a move, and back again.
        a.learn(&shared, &counters, m, PortId(2), SEC);
        assert_eq!(a.lookup(m), Some(PortId(2)));
        a.learn(&shared, &counters, m, PortId(1), SEC);
        assert_eq!(a.lookup(m), Some(PortId(1)));
        assert_eq!(counters.events(Event::MacMoved), 2);
        // Another worker sees it on its port (later); a's sync takes that
        // in. The same (MAC, port, time) as a's last learn is then a move.
        b.learn(&shared, &counters, m, PortId(4), 2 * SEC);
        a.sync(&shared);
        assert_eq!(a.lookup(m), Some(PortId(4)));
        a.learn(&shared, &counters, m, PortId(1), SEC);
        assert_eq!(a.lookup(m), Some(PortId(1)));
        assert_eq!(counters.events(Event::MacMoved), 3);
        // Aged out by a sweep, then seen again at the same time: relearned.
        let mut c = MacTable::default();
        let lone = SharedMacTable::default();
        c.learn(&lone, &counters, m, PortId(1), SEC);
        c.sweep(&lone, &counters, 400 * SEC, 300 * SEC);
        assert_eq!(c.lookup(m), None);
        c.learn(&lone, &counters, m, PortId(1), SEC);
        assert_eq!(c.lookup(m), Some(PortId(1)));
    }

    /// A state file part of `records` records at `path`: made new, or the one there.
    fn kept_part(path: &std::path::Path, new: bool) -> HugeChunk<AtomicU64> {
        use crate::mem::statefile::StateFile;
        let words = KeptRecords::words_for(8);
        let file = if new {
            StateFile::create(path, words * 8)
        } else {
            StateFile::open(path)
        };
        file.unwrap().chunks(0, 1, words).unwrap().pop().unwrap()
    }

    #[test]
    fn learned_macs_outlive_the_process() {
        let path = std::env::temp_dir().join(format!("podswitch-l2-{}", std::process::id()));
        let (shared, found) = SharedMacTable::kept(kept_part(&path, true), |_| true);
        assert_eq!(found, 0);
        let counters = WorkerCounters::default();
        let mut t = MacTable::default();
        let (m, gone, aged) = (
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            MacAddr([2, 0, 0, 0, 0, 3]),
        );
        t.learn(&shared, &counters, aged, PortId(1), 0);
        t.learn(&shared, &counters, m, PortId(1), 200 * SEC);
        t.learn(&shared, &counters, m, PortId(2), 250 * SEC);
        t.learn(&shared, &counters, gone, PortId(7), 250 * SEC);
        t.sweep(&shared, &counters, 302 * SEC, 300 * SEC);
        drop(shared);
        // The next process: port 7 is no more.
        let (shared, found) = SharedMacTable::kept(kept_part(&path, false), |p| p.0 < 5);
        assert_eq!(found, 1);
        let mut next = MacTable::default();
        next.sync(&shared);
        assert_eq!(next.lookup(m), Some(PortId(2)));
        assert_eq!((next.lookup(gone), next.lookup(aged)), (None, None));
        assert_eq!(shared.entries()[0].1.last_seen, 250 * SEC);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn no_hairpin() {
        let shared = SharedMacTable::default();
        let counters = WorkerCounters::default();
        let mut t = MacTable::default();
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        t.learn(&shared, &counters, m, PortId(1), 0);
        assert_eq!(
            unicast_verdict(&t, &counters, m, PortId(1)),
            Verdict::Drop(DropReason::SamePort)
        );
        assert_eq!(
            unicast_verdict(&t, &counters, m, PortId(2)),
            Verdict::Forward(PortId(1))
        );
        assert_eq!(
            unicast_verdict(&t, &counters, MacAddr([2, 0, 0, 0, 0, 9]), PortId(2)),
            Verdict::Flood
        );
    }
}
