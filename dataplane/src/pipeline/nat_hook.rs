//! Where the NAT stage ([`crate::nat`]) plugs into the pipeline: routed
//! IPv4, IPv4 switched between pods, and per-batch conntrack expiry.

use core::cell::Cell;
use core::net::Ipv4Addr;

use super::Pipeline;
use super::context::Packet;
use super::flow_cache::{FlowKey, HINTED_FRAMES, NO_SLOT};
use crate::config::Snapshot;
use crate::conntrack::ConnKey;
use crate::mirror::{MirrorNote, MirrorStage, NatKind, NatRewrite};
use crate::nat::{NatAction, NatStage, TrackedFlow};
use crate::packet::Step;
use crate::packet::{Batch, DropReason, Event, Frame, L3If, Verdict};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet};
use crate::wire::{ethernet, icmpv4, ipv4};

/// Fewest tracked connections for which [`Pipeline::nat_prefetch`]
/// prefetches conntrack lines: below, the flows' index slots and entries
/// (two lines each) fit in a core's L2. Unit tests always prefetch, so
/// that they run the pass.
const PREFETCH_MIN_CONNECTIONS: usize = if cfg!(test) { 1 } else { 4096 };
/// Fewest services for which it prefetches what new flows read (a few
/// services' Maglev tables and backends stay in cache).
const PREFETCH_MIN_SERVICES: usize = if cfg!(test) { 1 } else { 256 };

/// Conntrack slots expiry visits per batch with traffic, and when idle:
/// at 1 Mpps (31k batches/s) a 1M table is swept in about 4 s.
const EXPIRE_BUDGET: usize = 8;
const EXPIRE_BUDGET_IDLE: usize = 4096;

impl Pipeline {
    /// The NAT stage at `now`, for a packet out of a tunnel or not, noting
    /// the conntrack entry it tracks a routed packet under in `note`.
    pub(super) fn nat_stage<'a>(
        &'a self,
        now: u64,
        from_tunnel: bool,
        note: &'a Cell<Option<TrackedFlow>>,
    ) -> NatStage<'a> {
        NatStage {
            snapshot: &self.snapshot,
            conntrack: &self.shared.conntrack,
            affinity: &self.shared.affinity,
            counters: &self.counters,
            now,
            from_tunnel,
            note,
        }
    }

    /// The NAT stage for a routed IPv4 packet (header already checked):
    /// `Continue` with its destination after translation.
    pub(super) fn nat_routed(&mut self, batch: &mut Batch, pkt: &Packet) -> Step<Ipv4Addr> {
        let (l3, iface, now) = (pkt.l3(), pkt.iface, pkt.now);
        let frame = batch.frame_mut(pkt.index);
        let before = self.mirror_pre_nat(frame, l3);
        let action = self
            .nat_stage(now, pkt.decapsulated(), &pkt.tracked)
            .routed(frame, l3, iface);
        if let NatAction::Continue = action {
            self.mirror_post_nat(frame, l3, before);
        }
        Step::Break(match action {
            NatAction::Continue => {
                let dst = frame
                    .data()
                    .get(l3..)
                    .map(|ip| Ipv4Packet::new_unchecked(ip).dst_addr())
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                return Step::Continue(dst);
            }
            NatAction::Verdict(v) => v,
            NatAction::EchoReply => self.local_input(frame, iface, pkt.decapsulated(), now),
            NatAction::RejectIcmp(from) => {
                let kind = ((icmpv4::DST_UNREACHABLE, icmpv4::CODE_PORT_UNREACHABLE), 0);
                let reason = DropReason::ServiceNoEndpoints;
                self.icmp_error_from(frame, iface, Some(from), kind, reason, now)
            }
        })
    }

    /// The NAT stage for an IPv4 frame switched between bridge ports: a
    /// translated reply leaves with the gateway's MAC and TTL − 1, as if
    /// routed; a backend's fragments are reassembled first. `Break`: its
    /// verdict (dropped, or a fragment held).
    pub(super) fn nat_bridged(&mut self, batch: &mut Batch, i: usize, l3: usize, now: u64) -> Step {
        if self.shared.conntrack.is_empty() {
            return Step::Continue(());
        }
        let frame = batch.frame_mut(i);
        // Only a service backend's packets can be replies of DNATed flows
        // (and its ICMP errors about them): everything else between pods
        // is switched without a conntrack lookup.
        let Some((src, fragment)) = frame
            .data()
            .get(l3..)
            .and_then(|ip| Ipv4Packet::new_checked(ip).ok())
            .map(|ip| (ip.src_addr(), ip.is_fragment()))
        else {
            return Step::Continue(());
        };
        if !self.snapshot.services.is_backend_ip(src) {
            return Step::Continue(());
        }
        // A reply in fragments is translated back whole.
        if fragment
            && let Step::Break(verdict) = self.reassemble(batch, i, l3, L3If::Bridge, false, now)
        {
            return Step::Break(verdict);
        }
        let frame = batch.frame_mut(i);
        let before = self.mirror_pre_nat(frame, l3);
        // Replies only: the NAT stage notes no entry for the flow cache.
        let no_note = Cell::new(None);
        let result = self.nat_stage(now, false, &no_note).bridged(frame, l3);
        if result.is_ok() {
            self.mirror_post_nat(frame, l3, before);
        }
        match result {
            Ok(false) => Step::Continue(()),
            Ok(true) => {
                let data = frame.data_mut();
                EthernetFrame::new_unchecked(&mut *data).set_src_addr(self.snapshot.gateway.mac);
                if let Some(ip) = data.get_mut(l3..)
                    && let Ok(mut ip) = Ipv4Packet::new_checked(ip)
                    && ip.ttl() > 1
                {
                    ip.decrement_ttl();
                }
                self.counters.event(Event::Routed);
                Step::Continue(())
            }
            Err(reason) => Step::Break(Verdict::Drop(reason)),
        }
    }

    /// The `pre-nat` mirror stage: a frame as it enters the NAT stage. Returns
    /// its addresses and ports when a `post-nat` session will want the
    /// rewrite (one branch per stage when no session is active).
    fn mirror_pre_nat(&self, frame: &Frame, l3: usize) -> Option<Tuple> {
        if self.mirror_active(MirrorStage::PreNat) {
            let note = MirrorNote::new(MirrorStage::PreNat, frame.in_port);
            self.mirror(MirrorStage::PreNat, frame.in_port, frame.data(), note);
        }
        if self.mirror_active(MirrorStage::PostNat) {
            tuple(frame.data(), l3)
        } else {
            None
        }
    }

    /// The `post-nat` mirror stage: the frame as the NAT stage left it, with
    /// the rewrite it got (`before`: from [`Pipeline::mirror_pre_nat`]).
    fn mirror_post_nat(&self, frame: &Frame, l3: usize, before: Option<Tuple>) {
        let Some(before) = before else {
            return;
        };
        let Some(after) = tuple(frame.data(), l3) else {
            return;
        };
        let mut note = MirrorNote::new(MirrorStage::PostNat, frame.in_port);
        if after.dst != before.dst {
            note = note.with_nat(NatRewrite {
                kind: NatKind::Dnat,
                from: before.dst,
                to: after.dst,
            });
        } else if after.src != before.src {
            // A reply un-DNATed gets the service's address back as its
            // source; a masqueraded packet the node's: both are source rewrites.
            let kind = if self
                .snapshot
                .services
                .cluster_ip_ready(after.src.0)
                .is_some()
            {
                NatKind::Reverse
            } else {
                NatKind::Snat
            };
            note = note.with_nat(NatRewrite {
                kind,
                from: before.src,
                to: after.src,
            });
        }
        self.mirror(MirrorStage::PostNat, frame.in_port, frame.data(), note);
    }

    /// Before a batch is processed: start loading what its frames will
    /// read. For a frame of a cached flow, its flow-cache set, then its
    /// conntrack entry, and its slot noted for the fast path
    /// (`fast_path.rs`) and the flow cache; for the others, the conntrack
    /// slots and entries they will probe (see
    /// [`crate::nat::SharedConntrack::prefetch_batch`]) and, for frames
    /// that look untracked, what picking their service endpoint reads.
    /// `true`: it noted a slot.
    pub(super) fn nat_prefetch(&mut self, batch: &Batch, now: u64) -> bool {
        let conntrack = &self.shared.conntrack;
        // Cached flows: finding their slots and entries here, for the whole
        // batch, hides the misses even when all is in L2 (1,000 flows:
        // 7.9 → 11.4 Mpps). The conntrack index and the services only pay
        // when what the frames read is unlikely to be in cache: skipped for
        // a small conntrack and a few services (that part costs ~150
        // instructions per frame, −14 % on in-cache traffic).
        // Slots are noted only when the flow cache (and so the fast path) may be used.
        let plan = PrefetchPlan {
            flows: self.flow_cache.ever_filled()
                && !conntrack.is_empty()
                && self.flow_cache_usable(),
            conntrack: conntrack.len() >= PREFETCH_MIN_CONNECTIONS,
            services: self.snapshot.services.len() >= PREFETCH_MIN_SERVICES,
        };
        let mut hints = [NO_SLOT; HINTED_FRAMES];
        let noted = (plan.flows || plan.conntrack || plan.services)
            && self.prefetch_batch(batch, plan, &mut hints, now);
        self.flow_hints = hints;
        noted
    }

    /// [`nat_prefetch`](Self::nat_prefetch) for a batch with something to
    /// prefetch; notes the cache slots of frames of cached flows in `hints`.
    #[inline(always)]
    fn prefetch_batch(
        &mut self,
        batch: &Batch,
        plan: PrefetchPlan,
        hints: &mut [u32; HINTED_FRAMES],
        now: u64,
    ) -> bool {
        let conntrack = &self.shared.conntrack;
        let epoch = self.flow_epoch();
        let PrefetchScratch { probes, misses } = &mut self.prefetch_scratch;
        probes.len = 0;
        misses.len = 0;
        let flush = |keys: &[ConnKey]| plan.prefetch(&self.snapshot, conntrack, keys);
        for i in 0..batch.rx_len() {
            let Some((frame, _)) = batch.get(i) else {
                break;
            };
            let switched = plan.conntrack || plan.services;
            let Some((key, routed)) = prefetch_candidate(&self.snapshot, frame, switched) else {
                continue;
            };
            let ip = &frame.data()[ethernet::HEADER_LEN..];
            // New flows (TCP SYNs) skip the flow cache.
            if plan.flows && routed && i < HINTED_FRAMES && !crate::nat::is_tcp_syn(ip) {
                let flow_key = FlowKey::new(frame.in_port, &key);
                let set = self.flow_cache.prefetch_set(flow_key);
                probes.push(i as u8, flow_key, set);
            } else if misses.push(key) {
                flush(misses.take());
            }
        }
        // The sets are on their way: find the flows, start loading their
        // conntrack entries; the flows not cached go to the conntrack prefetch.
        let noted = find_probed_flows(
            &self.flow_cache,
            conntrack,
            probes,
            hints,
            (epoch, now),
            |key| {
                if misses.push(key) {
                    flush(misses.take());
                }
            },
        );
        flush(misses.take());
        noted
    }

    /// Once per batch: collect expired conntrack entries of one shard.
    pub(super) fn nat_expire(&self, received: usize, now: u64) {
        let conntrack = &self.shared.conntrack;
        if !conntrack.is_empty() {
            let budget = if received == 0 {
                EXPIRE_BUDGET_IDLE
            } else {
                EXPIRE_BUDGET
            };
            conntrack.expire_step(now, budget);
        }
    }
}

/// For each frame whose flow-cache set was prefetched (`probes`): its
/// cached flow's slot noted in `hints` and its conntrack entry prefetched,
/// or, not cached, its key handed to `uncached`. `true`: it noted a slot.
#[inline(always)]
fn find_probed_flows(
    flow_cache: &super::flow_cache::FlowCache,
    conntrack: &crate::nat::SharedConntrack,
    probes: &FlowProbes,
    hints: &mut [u32; HINTED_FRAMES],
    (epoch, now): (u64, u64),
    mut uncached: impl FnMut(ConnKey),
) -> bool {
    let mut noted = false;
    for p in probes.iter() {
        match flow_cache.find_in_set(p.set, p.flow_key, epoch, now) {
            Some((slot, flow)) => {
                let t = &flow.flow.tracked;
                conntrack.prefetch_entry(usize::from(t.shard), t.id);
                if let Some(hint) = hints.get_mut(usize::from(p.frame)) {
                    *hint = slot;
                    noted = true;
                }
            }
            None => uncached(p.flow_key.conn_key()),
        }
    }
    noted
}

/// What the prefetch pass loads for a batch: the flow cache's sets, the
/// conntrack's slots and entries, what new flows of services read.
#[derive(Clone, Copy)]
struct PrefetchPlan {
    flows: bool,
    conntrack: bool,
    services: bool,
}

impl PrefetchPlan {
    /// Starts loading what looking `keys` up reads: their conntrack slots
    /// and entries, their services, and what picking an endpoint for the
    /// untracked ones reads.
    #[inline(always)]
    fn prefetch(
        self,
        snapshot: &Snapshot,
        conntrack: &crate::nat::SharedConntrack,
        keys: &[ConnKey],
    ) {
        let mut tracked = [false; CHUNK];
        let tracked = &mut tracked[..keys.len()];
        if self.services {
            crate::nat::prefetch_service_slots(snapshot, keys);
        }
        if self.conntrack {
            conntrack.prefetch_batch(keys, tracked);
        }
        if self.services {
            crate::nat::prefetch_new_flows(snapshot, keys, tracked);
        }
    }
}

/// The conntrack key of a frame the NAT stage will look up, and whether
/// it is routed: untagged IPv4 to the gateway's or the uplink's MAC, or
/// (`switched`: when the conntrack or the services are prefetched)
/// switched from a service backend. Only routed frames use the flow cache.
#[inline(always)]
fn prefetch_candidate(s: &Snapshot, frame: &Frame, switched: bool) -> Option<(ConnKey, bool)> {
    let data = frame.data();
    let head = data.first_chunk::<{ ethernet::HEADER_LEN + ipv4::HEADER_LEN }>()?;
    let eth = EthernetFrame::new_unchecked(&head[..]);
    if eth.ethertype() != EtherType::IPV4 {
        return None;
    }
    let dst = eth.dst_addr();
    let routed = dst == s.gateway.mac || s.uplink.is_some_and(|(_, u)| dst == u.mac);
    if !routed {
        let src = Ipv4Packet::new_unchecked(&head[ethernet::HEADER_LEN..]).src_addr();
        if !switched || !s.services.is_backend_ip(src) {
            return None;
        }
    }
    let key = crate::nat::prefetch_key(&data[ethernet::HEADER_LEN..])?;
    Some((key, routed))
}

/// Keys per conntrack prefetch round.
const CHUNK: usize = 64;

/// What the prefetch pass gathers, kept with the pipeline (not set up
/// again for every batch).
pub(super) struct PrefetchScratch {
    probes: FlowProbes,
    misses: Uncached,
}

impl Default for PrefetchScratch {
    fn default() -> PrefetchScratch {
        let none = FlowProbe {
            frame: 0,
            flow_key: FlowKey::EMPTY,
            set: 0,
        };
        PrefetchScratch {
            probes: FlowProbes {
                probes: [none; HINTED_FRAMES],
                len: 0,
            },
            misses: Uncached {
                keys: [ConnKey::UNUSED; CHUNK],
                len: 0,
            },
        }
    }
}

/// The keys of frames not in the flow cache, gathered for the conntrack
/// prefetch in rounds of [`CHUNK`].
struct Uncached {
    keys: [ConnKey; CHUNK],
    len: usize,
}

impl Uncached {
    /// Adds a key; `true` when a round is full.
    #[inline]
    fn push(&mut self, key: ConnKey) -> bool {
        if let Some(k) = self.keys.get_mut(self.len) {
            *k = key;
            self.len += 1;
        }
        self.len == CHUNK
    }

    /// The keys gathered, leaving none.
    #[inline]
    fn take(&mut self) -> &[ConnKey] {
        let n = core::mem::take(&mut self.len);
        &self.keys[..n]
    }
}

/// A frame whose flow-cache set is being loaded.
#[derive(Clone, Copy)]
struct FlowProbe {
    frame: u8,
    flow_key: FlowKey,
    set: u32,
}

/// The frames of a batch (the first [`HINTED_FRAMES`]) probing the flow cache.
struct FlowProbes {
    probes: [FlowProbe; HINTED_FRAMES],
    len: usize,
}

impl FlowProbes {
    #[inline]
    fn push(&mut self, frame: u8, flow_key: FlowKey, set: u32) {
        if let Some(p) = self.probes.get_mut(self.len) {
            *p = FlowProbe {
                frame,
                flow_key,
                set,
            };
            self.len += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = &FlowProbe> {
        self.probes[..self.len].iter()
    }
}

/// Source and destination (address, port) of an IPv4 packet; port 0 for
/// protocols without ports.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Tuple {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
}

fn tuple(data: &[u8], l3: usize) -> Option<Tuple> {
    let ip = Ipv4Packet::new_checked(data.get(l3..)?).ok()?;
    // TCP, UDP and SCTP have ports; the others get port 0.
    let l4 = crate::wire::L4Header::new(ip.protocol(), ip.payload());
    let (sport, dport) = l4.ports().map_or((0, 0), |p| ((p >> 16) as u16, p as u16));
    Some(Tuple {
        src: (ip.src_addr(), sport),
        dst: (ip.dst_addr(), dport),
    })
}
