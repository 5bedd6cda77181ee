//! Neighbours (IPv4 → MAC, learned from ARP) and the hold queue.
//!
//! A routed packet whose next hop is unknown is **held**, not dropped: it
//! moves (a buffer swap, no copy) into a small per-worker queue while the
//! switch sends ARP requests, like Linux's `unres_qlen`. When the answer is
//! learned — by this worker or, through the shared table, by another — the
//! held packets are sent in order. After `probes` unanswered requests they
//! are dropped and counted as `neighbour_unresolved`; a full queue drops
//! with `neighbour_hold_full`. A resolved entry older than `reachable_secs`
//! is still used while it is probed again (Linux's STALE/PROBE states), so
//! established traffic never waits on ARP.
//!
//! The shared table writes every entry through to the state file
//! ([`SharedNeighbourTable::kept`]): a restarted or upgraded daemon knows
//! its neighbours without asking again.

use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hashbrown::HashMap;

use super::Pipeline;
use crate::config::MAX_HOLD_PER_NEIGHBOUR;
use crate::mem::hugemem::HugeChunk;
use crate::mem::kept::KeptRecords;
use crate::packet::{Batch, DropReason, Event, Frame, L3If, Verdict};
use crate::wire::arp::{ArpRepr, OP_REQUEST};
use crate::wire::{EtherType, EthernetFrame, MacAddr};

/// Next hops being resolved at once, per worker.
pub(super) const MAX_PENDING: usize = 64;
/// Frames held at once, per worker.
const HOLD_SLOTS: usize = 64;
// `HoldQueue::encapsulated` has one bit per slot.
const _: () = assert!(HOLD_SLOTS <= 64);

/// A resolved neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourRecord {
    /// Its MAC.
    pub mac: MacAddr,
    /// When ARP last confirmed it (pipeline time, ns).
    pub confirmed: u64,
}

fn key(iface: L3If, ip: Ipv4Addr) -> u64 {
    let tag: u64 = match iface {
        L3If::Bridge => 0,
        L3If::Uplink => 1,
    };
    tag << 32 | u64::from(u32::from(ip))
}

/// The node-wide neighbour table workers meet in.
#[derive(Debug, Default)]
pub struct SharedNeighbourTable {
    generation: AtomicU64,
    map: Mutex<NeighbourMap>,
}

/// The shared neighbours, and the state file's records of them if kept.
#[derive(Debug, Default)]
struct NeighbourMap {
    map: HashMap<u64, NeighbourRecord>,
    kept: Option<KeptRecords>,
}

impl NeighbourMap {
    fn insert(&mut self, key: u64, record: NeighbourRecord) {
        self.map.insert(key, record);
        if let Some(kept) = &mut self.kept {
            kept.put(key, [record.mac.to_u64(), record.confirmed]);
        }
    }
}

impl SharedNeighbourTable {
    /// A table kept in `records` (a state file's part), holding the
    /// neighbours they have; returns it and how many.
    pub fn kept(records: HugeChunk<AtomicU64>) -> (SharedNeighbourTable, usize) {
        let table = SharedNeighbourTable::default();
        let count = table.take_kept(records);
        (table, count)
    }

    /// Keeps the table in `records` from now on, taking the neighbours
    /// they have (one the table resolved since it was made wins); returns
    /// how many it took. Workers copy them in at their next batch.
    pub fn take_kept(&self, records: HugeChunk<AtomicU64>) -> usize {
        let valid = |key: u64, [mac, _]: [u64; 2]| key >> 32 <= 1 && mac >> 48 == 0;
        let (kept, found) = KeptRecords::attach(records, valid);
        let mut shared = self.lock();
        let resolved = std::mem::take(&mut shared.map);
        shared.kept = Some(kept);
        let count = found.len();
        for (key, [mac, confirmed]) in found {
            let mac = MacAddr::from_u64(mac);
            shared.map.insert(key, NeighbourRecord { mac, confirmed });
        }
        for (key, record) in resolved {
            shared.insert(key, record);
        }
        drop(shared);
        self.generation.fetch_add(1, Ordering::Release);
        count
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NeighbourMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of every entry, for state views.
    pub fn entries(&self) -> Vec<(L3If, Ipv4Addr, NeighbourRecord)> {
        let mut v: Vec<_> = self
            .lock()
            .map
            .iter()
            .map(|(k, r)| {
                let iface = if k >> 32 == 0 {
                    L3If::Bridge
                } else {
                    L3If::Uplink
                };
                (iface, Ipv4Addr::from(*k as u32), *r)
            })
            .collect();
        v.sort_by_key(|e| (e.0 == L3If::Uplink, e.1));
        v
    }
}

#[derive(Debug, Clone, Copy)]
struct LocalNeighbour {
    record: NeighbourRecord,
    last_probe: u64,
}

/// One worker's neighbour table.
#[derive(Debug, Default)]
pub(super) struct NeighbourTable {
    local: HashMap<u64, LocalNeighbour, foldhash::fast::RandomState>,
    synced_generation: u64,
    /// Grows whenever a neighbour's MAC may have changed.
    version: u64,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// Resolved and fresh.
    Reachable(MacAddr),
    /// Resolved but older than the reachable time: use it, and probe.
    Stale(MacAddr),
    /// Unknown.
    Unknown,
}

impl NeighbourTable {
    pub(super) fn sync(&mut self, shared: &SharedNeighbourTable) {
        let generation = shared.generation.load(Ordering::Acquire);
        if generation == self.synced_generation {
            return;
        }
        self.version += 1;
        for (k, rec) in shared.lock().map.iter() {
            let e = self.local.entry(*k).or_insert(LocalNeighbour {
                record: *rec,
                last_probe: 0,
            });
            if rec.confirmed >= e.record.confirmed {
                e.record = *rec;
            }
        }
        self.synced_generation = generation;
    }

    #[inline]
    pub(super) fn lookup(&self, iface: L3If, ip: Ipv4Addr, now: u64, reachable_ns: u64) -> Lookup {
        match self.local.get(&key(iface, ip)) {
            Some(e) if now.saturating_sub(e.record.confirmed) <= reachable_ns => {
                Lookup::Reachable(e.record.mac)
            }
            Some(e) => Lookup::Stale(e.record.mac),
            None => Lookup::Unknown,
        }
    }

    /// A number that grows whenever a neighbour's MAC may have changed
    /// (learned, or synced from other workers).
    #[inline]
    pub(super) fn version(&self) -> u64 {
        self.version
    }

    /// Until when `ip`'s entry stays reachable (its last confirmation plus
    /// `reachable_ns`); `None` if unknown.
    pub(super) fn fresh_until(&self, iface: L3If, ip: Ipv4Addr, reachable_ns: u64) -> Option<u64> {
        self.local
            .get(&key(iface, ip))
            .map(|e| e.record.confirmed.saturating_add(reachable_ns))
    }

    /// True when `ip` has an entry (fresh or stale).
    pub(super) fn contains(&self, iface: L3If, ip: Ipv4Addr) -> bool {
        self.local.contains_key(&key(iface, ip))
    }

    /// Records `ip` at `mac`, confirmed now; publishes changes. Returns true if new or changed.
    pub(super) fn learn(
        &mut self,
        shared: &SharedNeighbourTable,
        iface: L3If,
        ip: Ipv4Addr,
        mac: MacAddr,
        now: u64,
    ) -> bool {
        let record = NeighbourRecord {
            mac,
            confirmed: now,
        };
        let k = key(iface, ip);
        let changed = self.local.get(&k).is_none_or(|e| e.record.mac != mac);
        self.local.insert(
            k,
            LocalNeighbour {
                record,
                last_probe: 0,
            },
        );
        shared.lock().insert(k, record);
        if changed {
            self.version += 1;
            shared.generation.fetch_add(1, Ordering::Release);
        }
        changed
    }

    /// True (and notes the time) when a stale entry is due for another probe.
    pub(super) fn probe_due(&mut self, iface: L3If, ip: Ipv4Addr, now: u64, interval: u64) -> bool {
        match self.local.get_mut(&key(iface, ip)) {
            Some(e) if now.saturating_sub(e.last_probe) >= interval => {
                e.last_probe = now;
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    iface: L3If,
    ip: Ipv4Addr,
    slots: [u16; MAX_HOLD_PER_NEIGHBOUR],
    held: usize,
    probes_sent: u32,
    last_probe: u64,
}

/// Packets waiting for ARP, with their preallocated buffers.
pub(super) struct HoldQueue {
    buffers: Vec<Frame>,
    free: Vec<u16>,
    pending: Vec<Pending>,
    /// Bit per slot: the held frame is VXLAN-encapsulated (only its outer
    /// MACs are rewritten on release).
    encapsulated: u64,
}

impl HoldQueue {
    pub(super) fn new(max_frame_len: usize) -> HoldQueue {
        HoldQueue {
            buffers: (0..HOLD_SLOTS)
                .map(|_| Frame::with_capacity(max_frame_len))
                .collect(),
            free: (0..HOLD_SLOTS as u16).rev().collect(),
            pending: Vec::with_capacity(MAX_PENDING),
            encapsulated: 0,
        }
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        HOLD_SLOTS - self.free.len()
    }
}

impl Pipeline {
    /// Holds frame `i` of `batch` until `ip` on `iface` resolves; sends the
    /// first ARP request when the next hop is new.
    pub(super) fn hold(
        &mut self,
        batch: &mut Batch,
        i: usize,
        iface: L3If,
        ip: Ipv4Addr,
        now: u64,
    ) -> Verdict {
        self.hold_frame(batch, i, iface, ip, now, false)
    }

    /// As [`Pipeline::hold`]; `encapsulated` marks a VXLAN packet whose
    /// outer headers are complete but for the MACs.
    pub(super) fn hold_frame(
        &mut self,
        batch: &mut Batch,
        i: usize,
        iface: L3If,
        ip: Ipv4Addr,
        now: u64,
        encapsulated: bool,
    ) -> Verdict {
        let limit = self.snapshot.tuning.hold_per_neighbour;
        let pos = match self
            .hold
            .pending
            .iter()
            .position(|p| p.iface == iface && p.ip == ip)
        {
            Some(pos) => pos,
            None => {
                if self.hold.pending.len() >= MAX_PENDING || limit == 0 {
                    return Verdict::Drop(DropReason::NeighbourHoldFull);
                }
                let pending = Pending {
                    iface,
                    ip,
                    slots: [0; MAX_HOLD_PER_NEIGHBOUR],
                    held: 0,
                    probes_sent: 1,
                    last_probe: now,
                };
                self.hold.pending.push(pending);
                self.send_arp_request(batch, iface, ip);
                self.hold.pending.len() - 1
            }
        };
        let pending = &mut self.hold.pending[pos];
        if pending.held >= limit.min(MAX_HOLD_PER_NEIGHBOUR) {
            return Verdict::Drop(DropReason::NeighbourHoldFull);
        }
        let Some(slot) = self.hold.free.pop() else {
            return Verdict::Drop(DropReason::NeighbourHoldFull);
        };
        core::mem::swap(
            batch.frame_mut(i),
            &mut self.hold.buffers[usize::from(slot)],
        );
        pending.slots[pending.held] = slot;
        pending.held += 1;
        let bit = 1u64 << (slot % 64);
        if encapsulated {
            self.hold.encapsulated |= bit;
        } else {
            self.hold.encapsulated &= !bit;
        }
        self.counters.event(Event::Held);
        Verdict::Held
    }

    /// Releases held frames whose next hop resolved, re-probes the others,
    /// and gives up on those that stayed silent.
    pub(super) fn service_hold_queue(&mut self, batch: &mut Batch, now: u64) {
        let tuning = self.snapshot.tuning;
        let mut p = 0;
        while p < self.hold.pending.len() {
            let pending = self.hold.pending[p];
            let mac = match self.neighbours.lookup(
                pending.iface,
                pending.ip,
                now,
                tuning.neighbour_reachable_ns,
            ) {
                super::neighbour::Lookup::Reachable(mac) | super::neighbour::Lookup::Stale(mac) => {
                    Some(mac)
                }
                super::neighbour::Lookup::Unknown => None,
            };
            if let Some(mac) = mac {
                if self.release(batch, p, mac, now) {
                    self.hold.pending.swap_remove(p);
                    continue;
                }
                p += 1;
                continue;
            }
            if now.saturating_sub(pending.last_probe) >= tuning.probe_interval_ns {
                if pending.probes_sent >= tuning.probes {
                    for &slot in &pending.slots[..pending.held] {
                        self.mirror_drop(
                            &self.hold.buffers[usize::from(slot)],
                            DropReason::NeighbourUnresolved,
                        );
                        self.hold.free.push(slot);
                        self.counters.count_drop(DropReason::NeighbourUnresolved);
                    }
                    self.hold.pending.swap_remove(p);
                    continue;
                }
                self.hold.pending[p].probes_sent += 1;
                self.hold.pending[p].last_probe = now;
                self.send_arp_request(batch, pending.iface, pending.ip);
            }
            p += 1;
        }
    }

    /// Moves the held frames of pending entry `p` into the batch, rewritten
    /// for `mac` (or, too long for their port with DF, refused with ICMP).
    /// Returns false if the batch filled up before all were out.
    fn release(&mut self, batch: &mut Batch, p: usize, mac: MacAddr, now: u64) -> bool {
        let iface = self.hold.pending[p].iface;
        while self.hold.pending[p].held > 0 {
            let Some(j) = batch.alloc_generated() else {
                return false;
            };
            let pending = &mut self.hold.pending[p];
            let slot = pending.slots[0];
            pending.slots.copy_within(1..pending.held, 0);
            pending.held -= 1;
            core::mem::swap(
                batch.frame_mut(j),
                &mut self.hold.buffers[usize::from(slot)],
            );
            self.hold.free.push(slot);
            let frame = batch.frame_mut(j);
            let verdict = if self.hold.encapsulated & (1u64 << (slot % 64)) != 0 {
                self.forward_encapsulated(frame, mac)
            } else if self.may_exceed_mtu(frame)
                && let Some(mtu) = self.refused_mtu_toward(frame, iface, mac)
            {
                let arrived = self.arrival_iface(frame.in_port);
                self.refuse_too_long(frame, arrived, mtu, now)
            } else {
                self.forward_resolved(frame, iface, mac)
            };
            if let Verdict::Drop(r) = verdict {
                self.counters.count_drop(r);
                self.mirror_drop(batch.frame_mut(j), r);
            }
            batch.set_verdict(j, verdict);
            self.counters.event(Event::HeldReleased);
        }
        true
    }

    /// Appends a broadcast ARP request for `ip` out of `iface` to the batch.
    pub(super) fn send_arp_request(&mut self, batch: &mut Batch, iface: L3If, ip: Ipv4Addr) {
        let Some(l3) = self.snapshot.l3_interface(iface).copied() else {
            return;
        };
        let Some(j) = batch.alloc_generated() else {
            self.counters.count_drop(DropReason::BatchFull);
            return;
        };
        let frame = batch.frame_mut(j);
        let len = crate::wire::ethernet::HEADER_LEN + crate::wire::arp::PACKET_LEN;
        if !frame.set_len(len) {
            batch.release_last_generated();
            return;
        }
        let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
        eth.set_dst_addr(MacAddr::BROADCAST);
        eth.set_src_addr(l3.mac);
        eth.set_ethertype(EtherType::ARP);
        let repr = ArpRepr {
            operation: OP_REQUEST,
            sender_hw_addr: l3.mac,
            sender_ip: l3.address.addr,
            target_hw_addr: MacAddr::ZERO,
            target_ip: ip,
        };
        if repr.emit(eth.payload_mut()).is_err() {
            batch.release_last_generated();
            return;
        }
        let verdict = match iface {
            L3If::Bridge => Verdict::Flood,
            L3If::Uplink => match self.snapshot.uplink {
                Some((port, _)) => Verdict::Forward(port),
                None => Verdict::Drop(DropReason::NoRoute),
            },
        };
        batch.set_verdict(j, verdict);
        self.counters.event(Event::ArpRequestSent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::statefile::StateFile;

    #[test]
    fn resolved_neighbours_outlive_the_process() {
        let path = std::env::temp_dir().join(format!("podswitch-nb-{}", std::process::id()));
        let words = KeptRecords::words_for(4);
        let part = |file: std::io::Result<StateFile>| {
            file.unwrap().chunks(0, 1, words).unwrap().pop().unwrap()
        };
        let (shared, found) = SharedNeighbourTable::kept(part(StateFile::create(&path, words * 8)));
        assert_eq!(found, 0);
        let (ip, mac) = (Ipv4Addr::new(10, 244, 1, 3), MacAddr([2, 0, 10, 244, 1, 3]));
        let mut t = NeighbourTable::default();
        assert!(t.learn(&shared, L3If::Uplink, ip, mac, 5));
        drop(shared);
        let (shared, found) = SharedNeighbourTable::kept(part(StateFile::open(&path)));
        assert_eq!(found, 1);
        let mut next = NeighbourTable::default();
        next.sync(&shared);
        assert!(matches!(next.lookup(L3If::Uplink, ip, 6, 10), Lookup::Reachable(m) if m == mac));
        assert!(matches!(
            next.lookup(L3If::Bridge, ip, 6, 10),
            Lookup::Unknown
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
