//! The established-flow cache: per worker, an exact-match cache of the
//! routed flows conntrack tracks, so that their packets skip the lookups
//! whose answers cannot have changed.
//!
//! A routed packet of a tracked flow takes the same decisions every time:
//! the conntrack probe finds the same entry, the route lookup of its
//! translated destination returns the same next hop, the neighbour and MAC
//! tables the same MAC and port. The cache keeps those answers per input
//! port and 5-tuple (as OVS's exact-match cache keeps a flow's actions), so
//! that a hit costs one probe here and one visit to the conntrack entry
//! under its shard lock, where the TCP state machine still runs on every
//! segment. What the cache does not keep is checked on every hit:
//!
//! - the conntrack entry is the same connection: live, same key in the
//!   same direction, same rewrite, validated against the current services
//!   (an entry removed, expired or re-used is a miss);
//! - the answers it keeps are still current: each cached flow carries the
//!   epoch it was filled in, the sum of the worker's snapshot, MAC-table and
//!   neighbour-table versions, which grows with any change to them;
//! - the next hop's MAC is still fresh (within the neighbour reachable
//!   time: after it the slow path runs, and probes it);
//! - the packet itself could take the fast path: TCP or UDP, not a
//!   fragment, TTL above 1, no pre-/post-NAT mirror session, not out of
//!   a tunnel.
//!
//! Anything else (new flows, ICMP, the VXLAN overlay, held or flooded
//! frames) takes the full path, which fills the cache when it forwarded a
//! tracked packet to a resolved neighbour.
//!
//! The prefetch pass looks a batch's routed frames up here before they
//! are processed (`nat_hook.rs`). A frame it found whose headers are the
//! plain case goes through the fast path (`fast_path.rs`), which uses the
//! cached answers without the stages in between; the others come here
//! from the L3 stage.

use core::cell::Cell;
use core::hash::BuildHasher;
use core::net::Ipv4Addr;

use super::Pipeline;
use crate::conntrack::{ConnKey, Direction, EntryId, TcpSegment};
use crate::mem::hugemem::{self, HugeChunk};
use crate::mirror::MirrorStage;
use crate::nat::{CachedTranslation, TrackedFlow};
use crate::packet::Step;
use crate::packet::{Batch, Event, L3If, PortId, Verdict};
use crate::wire::MacAddr;

/// A slot number that names no slot.
pub(super) const NO_SLOT: u32 = u32::MAX;
/// The first frames of a batch whose cache slots the prefetch pass notes.
pub(super) const HINTED_FRAMES: usize = 64;

/// Ways per set: a flow may sit in any of four slots (a set is 256
/// bytes). With two, a third of the default cache's sets overflow at
/// 10,000 flows, and their flows evict each other.
const WAYS: usize = 4;

const _: () = assert!(
    size_of::<CachedFlow>() == 64,
    "a cached flow is one cache line"
);

/// The key of a cached flow: the input port and the 5-tuple, packed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct FlowKey(u128);

impl FlowKey {
    /// The key of a packet with conntrack key `key` received on `in_port`.
    #[inline]
    pub(super) fn new(in_port: PortId, key: &ConnKey) -> FlowKey {
        let addrs = u64::from(key.src_addr.to_bits()) << 32 | u64::from(key.dst_addr.to_bits());
        let rest = u64::from(key.src_port) << 48
            | u64::from(key.dst_port) << 32
            | u64::from(key.protocol.0) << 16
            | u64::from(in_port.0);
        FlowKey(u128::from(addrs) << 64 | u128::from(rest))
    }

    /// The conntrack key it was made of.
    #[inline]
    pub(super) fn conn_key(self) -> ConnKey {
        let (addrs, rest) = ((self.0 >> 64) as u64, self.0 as u64);
        ConnKey {
            src_addr: Ipv4Addr::from_bits((addrs >> 32) as u32),
            dst_addr: Ipv4Addr::from_bits(addrs as u32),
            src_port: (rest >> 48) as u16,
            dst_port: (rest >> 32) as u16,
            protocol: crate::wire::IpProtocol((rest >> 16) as u8),
        }
    }

    /// Never the key of a packet (protocol 255, no addresses).
    pub(super) const EMPTY: FlowKey = FlowKey(255 << 16);

    #[inline]
    fn hash(self, seed: u64) -> u64 {
        let (high, low) = ((self.0 >> 64) as u64, self.0 as u64);
        crate::services::maglev::mix64(high ^ low.rotate_left(23) ^ seed)
    }
}

/// What the cache remembers of a flow (one cache line).
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
pub(super) struct CachedFlow {
    key: FlowKey,
    epoch: u64,
    /// Until when (pipeline time) the next hop's MAC is fresh.
    fresh_until: u64,
    /// Where the full path sent it.
    pub(super) flow: Cached,
}

impl CachedFlow {
    const EMPTY: CachedFlow = CachedFlow {
        key: FlowKey::EMPTY,
        epoch: u64::MAX,
        fresh_until: 0,
        flow: Cached {
            tracked: TrackedFlow {
                shard: 0,
                id: EntryId::NONE,
                direction: Direction::Original,
                src_addr: Ipv4Addr::UNSPECIFIED,
                dst_addr: Ipv4Addr::UNSPECIFIED,
                src_port: 0,
                dst_port: 0,
            },
            out_port: PortId(0),
            iface: L3If::Bridge,
            next_hop_mac: MacAddr([0; 6]),
        },
    };

    /// Whether it is `key`'s flow, of `epoch`, with a next hop fresh at `now`.
    #[inline]
    fn holds(&self, key: FlowKey, epoch: u64, now: u64) -> bool {
        self.key == key && self.epoch == epoch && now <= self.fresh_until
    }
}

/// One worker's flow cache: `sets` sets of [`WAYS`] flows, in huge pages.
pub(super) struct FlowCache {
    flows: Option<HugeChunk<CachedFlow>>,
    mask: usize,
    seed: u64,
    /// Flows ever inserted (none: nothing to look up or prefetch).
    inserted: u64,
}

impl core::fmt::Debug for FlowCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlowCache")
            .field("entries", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl FlowCache {
    /// A cache of `entries` flows (rounded up to a power of two, at least
    /// one set); 0: no cache, every lookup misses.
    pub(super) fn new(entries: usize) -> FlowCache {
        if entries == 0 {
            return FlowCache {
                flows: None,
                mask: 0,
                seed: 0,
                inserted: 0,
            };
        }
        let entries = entries.next_power_of_two().max(WAYS);
        let flows = hugemem::chunks(1, entries, || CachedFlow::EMPTY).pop();
        let seed = foldhash::fast::RandomState::default().hash_one(0x666c_6f77_u64);
        FlowCache {
            flows,
            mask: entries / WAYS - 1,
            seed,
            inserted: 0,
        }
    }

    /// How many flows it holds at most.
    pub(super) fn capacity(&self) -> usize {
        self.flows.as_ref().map_or(0, |f| f.len())
    }

    /// True when it caches anything.
    #[inline]
    pub(super) fn enabled(&self) -> bool {
        self.flows.is_some()
    }

    /// True once a flow was inserted: before, every lookup misses.
    #[inline]
    pub(super) fn ever_filled(&self) -> bool {
        self.inserted != 0
    }

    #[inline]
    fn set_start(&self, key: FlowKey) -> usize {
        (key.hash(self.seed) as usize & self.mask) * WAYS
    }

    /// The flow cached for `key` in `epoch`.
    #[inline]
    pub(super) fn lookup(&self, key: FlowKey, epoch: u64, now: u64) -> Option<&CachedFlow> {
        let slot = self.find(self.set_start(key), key, epoch, now)?;
        self.flows.as_ref()?.get(slot)
    }

    /// The slot holding `key` in `epoch` in the set starting at `start`.
    #[inline]
    fn find(&self, start: usize, key: FlowKey, epoch: u64, now: u64) -> Option<usize> {
        let set = self.flows.as_ref()?.get(start..start + WAYS)?;
        let way = set.iter().position(|f| f.holds(key, epoch, now))?;
        Some(start + way)
    }

    /// The flow at `slot` if it is `key`'s in `epoch` (a slot from
    /// [`find_in_set`](Self::find_in_set) saves hashing again).
    #[inline]
    pub(super) fn at(&self, slot: u32, key: FlowKey, epoch: u64, now: u64) -> Option<&CachedFlow> {
        self.flows
            .as_ref()?
            .get(slot as usize)
            .filter(|f| f.holds(key, epoch, now))
    }

    /// Starts loading the set `key` would be in; returns its first slot
    /// (for [`find_in_set`](Self::find_in_set)).
    #[inline]
    pub(super) fn prefetch_set(&self, key: FlowKey) -> u32 {
        let start = self.set_start(key);
        if let Some(flows) = &self.flows {
            let set = flows.as_ptr() as usize + start * size_of::<CachedFlow>();
            for way in 0..WAYS {
                hugemem::prefetch(set + way * size_of::<CachedFlow>());
            }
        }
        start as u32
    }

    /// The slot and flow of `key` in `epoch`, fresh at `now`, in the set
    /// starting at `start` (from [`prefetch_set`](Self::prefetch_set)).
    #[inline]
    pub(super) fn find_in_set(
        &self,
        start: u32,
        key: FlowKey,
        epoch: u64,
        now: u64,
    ) -> Option<(u32, &CachedFlow)> {
        let slot = self.find(start as usize, key, epoch, now)?;
        Some((slot as u32, self.flows.as_ref()?.get(slot)?))
    }

    /// Remembers a flow: over the same key, else over a slot of an old
    /// epoch, else over the way the key's hash picks.
    pub(super) fn insert(&mut self, key: FlowKey, epoch: u64, fresh_until: u64, flow: Cached) {
        let start = self.set_start(key);
        let pick = (key.hash(!self.seed) as usize) % WAYS;
        let Some(set) = self
            .flows
            .as_mut()
            .and_then(|f| f.get_mut(start..start + WAYS))
        else {
            return;
        };
        let way = set
            .iter()
            .position(|f| f.key == key)
            .or_else(|| set.iter().position(|f| f.epoch != epoch))
            .unwrap_or(pick);
        self.inserted += 1;
        if let Some(slot) = set.get_mut(way) {
            *slot = CachedFlow {
                key,
                epoch,
                fresh_until,
                flow,
            };
        }
    }
}

/// A flow to cache, as the full path forwarded it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cached {
    /// The conntrack entry and the rewrite it gave.
    pub(super) tracked: TrackedFlow,
    /// The output port.
    pub(super) out_port: PortId,
    /// The L3 interface it leaves by.
    pub(super) iface: L3If,
    /// The next hop's MAC.
    pub(super) next_hop_mac: MacAddr,
}

impl Pipeline {
    /// The epoch cached flows must carry to be used: grows whenever the
    /// snapshot, the MAC table or the neighbour table changes.
    #[inline]
    pub(super) fn flow_epoch(&self) -> u64 {
        self.snapshot_changes + self.macs.version() + self.neighbours.version()
    }

    /// Whether routed packets may use the flow cache now (those out of a
    /// tunnel never do).
    #[inline]
    pub(super) fn flow_cache_usable(&self) -> bool {
        self.flow_cache.enabled()
            && !self.shared.conntrack.is_empty()
            && !self.mirror_active(MirrorStage::PreNat)
            && !self.mirror_active(MirrorStage::PostNat)
    }

    /// The flow-cache stage of a routed IPv4 packet (header checked, TTL
    /// read), when [`flow_cache_usable`](Self::flow_cache_usable): `Break`
    /// when its cached flow forwarded it; `Continue` with the key to
    /// remember its flow by, if it may be cached.
    pub(super) fn flow_cache_input(
        &mut self,
        batch: &mut Batch,
        (i, l3): (usize, usize),
        ttl: u8,
        now: u64,
    ) -> Step<Option<FlowKey>> {
        if ttl <= 1 {
            return Step::Continue(None);
        }
        // Not TCP/UDP, or a SYN (it opens a flow, or retries one): the full path decides.
        let flow = batch
            .frame_mut(i)
            .data()
            .get(l3..)
            .and_then(crate::nat::flow_of);
        let Some((key, segment)) = flow else {
            return Step::Continue(None);
        };
        let hint = self.flow_hints.get(i).copied().unwrap_or(NO_SLOT);
        self.forward_cached(batch, (i, l3), (&key, segment.as_ref()), hint, now)
    }

    /// Forwards frame `i` (its IPv4 header at `l3`, checked; conntrack key
    /// `key`, TCP `segment`) by its cached flow, if it has one: found at
    /// `slot` (the prefetch pass's hint), or looked up for [`NO_SLOT`]. The
    /// full path's flow-cache stage and the fast path both end here
    /// (inlined in each).
    #[inline(always)]
    pub(super) fn forward_cached(
        &mut self,
        batch: &mut Batch,
        (i, l3): (usize, usize),
        (key, segment): (&ConnKey, Option<&TcpSegment>),
        slot: u32,
        now: u64,
    ) -> Step<Option<FlowKey>> {
        let frame = batch.frame_mut(i);
        let flow_key = FlowKey::new(frame.in_port, key);
        let sum = crate::nat::l4_sum(frame);
        let epoch = self.flow_epoch();
        let cached = match slot {
            NO_SLOT => self.flow_cache.lookup(flow_key, epoch, now),
            slot => self.flow_cache.at(slot, flow_key, epoch, now),
        };
        let Some(&CachedFlow { flow, .. }) = cached else {
            return Step::Continue(Some(flow_key));
        };
        let Some(src_mac) = self.snapshot.l3_interface(flow.iface).map(|l3| l3.mac) else {
            return Step::Continue(None);
        };
        // Too long for its port with DF: the full path refuses it (and,
        // without a key, does not cache the error's way back).
        if self.may_exceed_mtu(frame) && self.refused_mtu(frame, flow.out_port).is_some() {
            return Step::Continue(None);
        }
        let Some(ip) = frame.data_mut().get_mut(l3..) else {
            return Step::Continue(None);
        };
        let no_note = Cell::new(None);
        let translated = self.nat_stage(now, false, &no_note).translate_cached(
            ip,
            sum,
            key,
            segment,
            &flow.tracked,
        );
        match translated {
            CachedTranslation::Translated => {}
            CachedTranslation::Drop(reason) => return Step::Break(Verdict::Drop(reason)),
            CachedTranslation::Miss => return Step::Continue(Some(flow_key)),
        }
        if let Some(macs) = frame.data_mut().first_chunk_mut::<12>() {
            macs[..6].copy_from_slice(&flow.next_hop_mac.0);
            macs[6..].copy_from_slice(&src_mac.0);
        }
        self.counters.event(Event::FlowCacheHit);
        self.counters.event(Event::Routed);
        Step::Break(Verdict::Forward(flow.out_port))
    }

    /// After the full path forwarded a routed packet by `iface` to the
    /// resolved next hop `next_hop` (`verdict`): remembers the flow under
    /// `key` (from [`flow_cache_input`](Self::flow_cache_input), so not out
    /// of a tunnel) if the NAT stage found it `tracked`.
    pub(super) fn flow_cache_remember(
        &mut self,
        key: FlowKey,
        tracked: Option<TrackedFlow>,
        (iface, next_hop): (L3If, (Ipv4Addr, MacAddr)),
        verdict: Verdict,
        now: u64,
    ) {
        let (Some(tracked), Verdict::Forward(out_port)) = (tracked, verdict) else {
            return;
        };
        let reachable_ns = self.snapshot.tuning.neighbour_reachable_ns;
        let Some(fresh_until) = self
            .neighbours
            .fresh_until(iface, next_hop.0, reachable_ns)
            .filter(|&t| now <= t)
        else {
            return;
        };
        let epoch = self.flow_epoch();
        let flow = Cached {
            tracked,
            out_port,
            iface,
            next_hop_mac: next_hop.1,
        };
        self.flow_cache.insert(key, epoch, fresh_until, flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(id: u32) -> TrackedFlow {
        TrackedFlow {
            shard: 1,
            id: EntryId::from_index(id),
            direction: Direction::Original,
            src_addr: Ipv4Addr::new(10, 244, 1, 2),
            dst_addr: Ipv4Addr::new(10, 244, 1, 3),
            src_port: 1000,
            dst_port: 8080,
        }
    }

    fn cached(id: u32) -> Cached {
        Cached {
            tracked: tracked(id),
            out_port: PortId(3),
            iface: L3If::Bridge,
            next_hop_mac: MacAddr([2, 0, 0, 0, 0, 3]),
        }
    }

    fn key(sport: u16) -> FlowKey {
        let k = ConnKey::tcp(
            (Ipv4Addr::new(10, 244, 1, 2), sport),
            (Ipv4Addr::new(10, 96, 0, 1), 80),
        );
        FlowKey::new(PortId(1), &k)
    }

    #[test]
    fn keys_differ_in_every_field() {
        let base = ConnKey::tcp(
            (Ipv4Addr::new(10, 244, 1, 2), 1000),
            (Ipv4Addr::new(10, 96, 0, 1), 80),
        );
        let k = FlowKey::new(PortId(1), &base);
        assert_ne!(k, FlowKey::new(PortId(2), &base));
        assert_ne!(k, FlowKey::new(PortId(1), &base.inverted()));
        let udp = ConnKey::udp(base.src(), base.dst());
        assert_ne!(k, FlowKey::new(PortId(1), &udp));
        let mut other = base;
        other.dst_port = 81;
        assert_ne!(k, FlowKey::new(PortId(1), &other));
        assert_ne!(k, FlowKey::EMPTY);
    }

    #[test]
    fn a_flow_key_gives_back_its_conntrack_key() {
        let tcp = ConnKey::tcp(
            (Ipv4Addr::new(10, 244, 1, 2), 40000),
            (Ipv4Addr::new(10, 96, 0, 1), 443),
        );
        let udp = ConnKey::udp(
            (Ipv4Addr::new(192, 168, 7, 9), 53),
            (Ipv4Addr::new(255, 1, 2, 3), 65535),
        );
        for key in [tcp, udp, tcp.inverted()] {
            assert_eq!(FlowKey::new(PortId(4095), &key).conn_key(), key);
        }
    }

    #[test]
    fn a_flow_is_found_in_its_epoch_while_fresh() {
        let mut c = FlowCache::new(64);
        assert!(c.lookup(key(1), 0, 0).is_none(), "empty cache");
        c.insert(key(1), 7, 100, cached(5));
        let f = c.lookup(key(1), 7, 100).expect("hit");
        let (slot, found) = c
            .find_in_set(c.prefetch_set(key(1)), key(1), 7, 100)
            .expect("hit");
        assert_eq!(found.flow.tracked.id, f.flow.tracked.id);
        assert!(c.at(slot, key(1), 7, 100).is_some());
        assert!(
            c.at(slot, key(2), 7, 100).is_none(),
            "the slot holds another key"
        );
        assert_eq!(f.flow.tracked.id, EntryId::from_index(5));
        assert_eq!(f.flow.out_port, PortId(3));
        assert!(c.lookup(key(1), 8, 100).is_none(), "another epoch");
        assert!(
            c.lookup(key(1), 7, 101).is_none(),
            "next hop no longer fresh"
        );
        assert!(c.lookup(key(2), 7, 0).is_none(), "another flow");
    }

    #[test]
    fn inserting_again_replaces_the_flow() {
        let mut c = FlowCache::new(2);
        c.insert(key(1), 0, 10, cached(5));
        c.insert(key(2), 0, 10, cached(7));
        c.insert(key(1), 0, 10, cached(6));
        assert_eq!(c.lookup(key(1), 0, 0).unwrap().flow.tracked.id.index(), 6);
    }

    #[test]
    fn a_full_set_keeps_the_newest_flow_and_stays_bounded() {
        // One set: a fifth flow cannot stay with four others.
        let mut c = FlowCache::new(1);
        assert_eq!(c.capacity(), WAYS);
        for sport in 0..1000 {
            c.insert(key(sport), 0, 10, cached(u32::from(sport)));
            let hit = c.lookup(key(sport), 0, 0).expect("just inserted");
            assert_eq!(hit.flow.tracked.id.index(), u32::from(sport));
        }
        let found = (0..1000)
            .filter(|&s| c.lookup(key(s), 0, 0).is_some())
            .count();
        assert_eq!(found, WAYS);
    }

    #[test]
    fn a_disabled_cache_misses() {
        let mut c = FlowCache::new(0);
        assert!(!c.enabled());
        c.insert(key(1), 0, 10, cached(1));
        assert!(c.lookup(key(1), 0, 0).is_none());
        let set = c.prefetch_set(key(1));
        assert!(c.find_in_set(set, key(1), 0, 0).is_none());
    }

    #[test]
    fn ten_thousand_flows_fit_the_default_cache() {
        // Four ways at load 0.3: about 0.7 % of flows find their set full.
        let mut c = FlowCache::new(crate::config::nat::DEFAULT_FLOW_CACHE_ENTRIES);
        let flows = 10_000u16;
        for s in 0..flows {
            c.insert(key(s), 0, 10, cached(u32::from(s)));
        }
        let found = (0..flows)
            .filter(|&s| c.lookup(key(s), 0, 0).is_some())
            .count();
        assert!(found * 100 >= usize::from(flows) * 98, "{found} of {flows}");
    }
}
