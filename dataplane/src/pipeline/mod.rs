//! The pipeline: a batch of frames in, a verdict per frame out.
//!
//! One [`Pipeline`] belongs to one worker thread. Per batch it syncs the
//! tables it shares with the other workers (only when their generation
//! moved), then runs every received frame through the stages:
//!
//! ```text
//! frame ─► parse L2 ─► pod port: learn src MAC ─┬─ dst = gateway MAC ─► router ─┬─ to us: gateway (ARP, ICMP echo)
//!          uplink: dst must be the uplink MAC ──┘                                └─ else: l3 (LPM, TTL, neighbour)
//!                                               └─ else: l2 (unicast / flood)
//! ```
//!
//! A frame's stages share what they learn about it through its
//! per-packet context (`context.rs`: input port, Ethernet header, L3
//! interface, addresses before NAT, the tunnel it came out of, its
//! conntrack entry); each stage returns a [`Step`](crate::packet::Step),
//! `Continue` (with what the next one needs) or `Break` with the frame's
//! verdict, so a path through the stages reads as a sequence of `?`
//! (`l3.rs`: the router's stages in order). This module only composes
//! them.
//!
//! Routed packets of tracked flows first try the worker's established-flow
//! cache (`flow_cache.rs`), which skips the NAT lookups, the route and the
//! neighbour for flows it has seen; its plain frames skip the stages in
//! between too (`fast_path.rs`). The frame is rewritten in place. The hot
//! path never allocates, logs or panics: drops bump a per-worker counter
//! keyed by [`DropReason`]. Frames the switch originates (ARP requests,
//! packets released from the neighbour hold queue) are appended to the
//! batch after the received ones, each with its own verdict.

mod antispoof;
mod context;
mod fast_path;
mod flow_cache;
mod gateway;
mod host;
mod l2;
mod l3;
mod mtu;
mod nat_hook;
mod neighbour;
mod overlay;
mod reassembly;

use std::sync::Arc;

pub use l2::{MacRecord, SharedMacTable};
pub use neighbour::{NeighbourRecord, SharedNeighbourTable};

use crate::config::Snapshot;
use crate::mirror::{MirrorNote, MirrorRegistry, MirrorStage, MirrorView};
use crate::packet::Step;
use crate::packet::{
    Batch, DropReason, Event, Frame, GsoKind, L3If, PortId, Verdict, WorkerCounters,
};
use crate::wire::{EtherType, L2Header};
use context::Packet;

/// The tables every worker of a node shares: MACs and neighbours are
/// written rarely and read through per-worker copies; connection tracking
/// is sharded and locked per packet (see [`crate::nat`]).
#[derive(Debug, Default)]
pub struct SharedTables {
    /// Learned MACs.
    pub macs: SharedMacTable,
    /// Resolved neighbours.
    pub neighbours: SharedNeighbourTable,
    // --- services / NAT (issue 6) ---
    /// Connection tracking (services, masquerade).
    pub conntrack: crate::nat::SharedConntrack,
    /// Session affinity (ClientIP).
    pub affinity: crate::nat::AffinityTable,
    // --- end services / NAT ---
    /// Active mirror sessions (outside the snapshot: captures do not bump its generation).
    pub mirrors: Arc<MirrorRegistry>,
}

impl SharedTables {
    /// Shared tables with a conntrack of `capacity` entries and `timeouts`.
    pub fn new(capacity: usize, timeouts: crate::conntrack::Timeouts) -> SharedTables {
        SharedTables {
            conntrack: crate::nat::SharedConntrack::new(capacity, timeouts),
            ..SharedTables::default()
        }
    }

    /// Shared tables sized by a snapshot's `[conntrack]` settings.
    pub fn for_snapshot(snapshot: &Snapshot) -> SharedTables {
        SharedTables::new(snapshot.nat.conntrack_capacity, snapshot.nat.timeouts)
    }
}

/// One worker's pipeline.
pub struct Pipeline {
    snapshot: Arc<Snapshot>,
    shared: Arc<SharedTables>,
    macs: l2::MacTable,
    neighbours: neighbour::NeighbourTable,
    hold: neighbour::HoldQueue,
    icmp_bucket: gateway::TokenBucket,
    counters: Arc<WorkerCounters>,
    mirror: MirrorView,
    // VXLAN overlay (overlay/).
    /// Next outer IPv4 identification.
    overlay_ip_id: u16,
    /// Bit per received frame of the batch that was decapsulated.
    tunnel_rx_mask: u64,
    // Established-flow cache (flow_cache.rs).
    flow_cache: flow_cache::FlowCache,
    /// Snapshots installed so far (part of the flow cache's epoch).
    snapshot_changes: u64,
    /// Per received frame of the batch: the cache slot the prefetch pass found.
    flow_hints: [u32; flow_cache::HINTED_FRAMES],
    /// The prefetch pass's working space.
    prefetch_scratch: nat_hook::PrefetchScratch,
    /// Echo requests to us arriving in fragments (reassembly.rs).
    reassembly: reassembly::Reassembler,
    /// The longest frame every port takes (mtu.rs): the egress MTU checks'
    /// one compare.
    fits_everywhere: usize,
    /// Frames the fast path forwarded (tests check it is taken).
    #[cfg(test)]
    fast_forwarded: u64,
}

impl Pipeline {
    /// A pipeline for one worker; `max_frame_len` sizes the hold-queue buffers.
    pub fn new(
        snapshot: Arc<Snapshot>,
        shared: Arc<SharedTables>,
        max_frame_len: usize,
    ) -> Pipeline {
        let icmp_bucket = gateway::TokenBucket::new(
            snapshot.tuning.icmp_errors_per_sec,
            snapshot.tuning.icmp_burst,
        );
        let flow_cache = flow_cache::FlowCache::new(snapshot.nat.flow_cache_entries);
        let fits_everywhere = mtu::fits_everywhere(&snapshot);
        Pipeline {
            snapshot,
            shared,
            macs: l2::MacTable::default(),
            neighbours: neighbour::NeighbourTable::default(),
            hold: neighbour::HoldQueue::new(max_frame_len),
            icmp_bucket,
            counters: Arc::new(WorkerCounters::default()),
            mirror: MirrorView::default(),
            overlay_ip_id: 0,
            tunnel_rx_mask: 0,
            flow_cache,
            snapshot_changes: 0,
            flow_hints: [flow_cache::NO_SLOT; flow_cache::HINTED_FRAMES],
            prefetch_scratch: nat_hook::PrefetchScratch::default(),
            reassembly: reassembly::Reassembler::default(),
            fits_everywhere,
            #[cfg(test)]
            fast_forwarded: 0,
        }
    }

    /// Installs a new configuration snapshot (between batches).
    pub fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        if snapshot.tuning.icmp_errors_per_sec != self.snapshot.tuning.icmp_errors_per_sec
            || snapshot.tuning.icmp_burst != self.snapshot.tuning.icmp_burst
        {
            self.icmp_bucket = gateway::TokenBucket::new(
                snapshot.tuning.icmp_errors_per_sec,
                snapshot.tuning.icmp_burst,
            );
        }
        if snapshot.nat.flow_cache_entries != self.snapshot.nat.flow_cache_entries {
            self.flow_cache = flow_cache::FlowCache::new(snapshot.nat.flow_cache_entries);
        }
        self.snapshot_changes += 1;
        self.fits_everywhere = mtu::fits_everywhere(&snapshot);
        self.snapshot = snapshot;
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// The tables shared with the other workers.
    pub fn shared_tables(&self) -> &Arc<SharedTables> {
        &self.shared
    }

    /// Runs every received frame of `batch` through the stages and sets its
    /// verdict; appends generated frames. `now_ns` drives aging and timers:
    /// call with an empty batch now and then so timers run when idle.
    pub fn process(&mut self, batch: &mut Batch, now_ns: u64) {
        self.mirror.sync(&self.shared.mirrors);
        self.macs.sync(&self.shared.macs);
        self.neighbours.sync(&self.shared.neighbours);
        self.macs.sweep(
            &self.shared.macs,
            &self.counters,
            now_ns,
            self.snapshot.tuning.mac_aging_ns,
        );
        // Batches without frames of cached flows run a loop without the
        // fast path: its code would cost the other paths registers.
        if self.nat_prefetch(batch, now_ns) {
            self.process_frames::<true>(batch, now_ns);
        } else {
            self.process_frames::<false>(batch, now_ns);
        }
        self.nat_expire(batch.rx_len(), now_ns);
        self.coalesce_decapsulated(batch);
        self.reassembly_step(batch, now_ns);
        self.service_hold_queue(batch, now_ns);
    }

    /// Runs the received frames through the stages (`FAST`: trying the
    /// fast path for those the prefetch pass found cached).
    #[inline(never)]
    fn process_frames<const FAST: bool>(&mut self, batch: &mut Batch, now: u64) {
        for i in 0..batch.rx_len() {
            let verdict = self.process_frame::<FAST>(batch, i, now);
            if let Verdict::Drop(reason) = verdict {
                self.counters.count_drop(reason);
                if let Some((frame, _)) = batch.get(i) {
                    self.mirror_drop(frame, reason);
                }
            }
            batch.set_verdict(i, verdict);
        }
    }

    #[inline(always)]
    fn process_frame<const FAST: bool>(
        &mut self,
        batch: &mut Batch,
        i: usize,
        now: u64,
    ) -> Verdict {
        let frame = batch.frame_mut(i);
        let in_port = frame.in_port;
        self.counters.rx(in_port, frame.len());
        if self.mirror_active(MirrorStage::Ingress) {
            let note = MirrorNote::new(MirrorStage::Ingress, in_port);
            self.mirror(MirrorStage::Ingress, in_port, frame.data(), note);
        }
        if frame.offload.gso != GsoKind::None {
            self.counters.event(Event::GsoFrames);
        }
        // A frame of a flow the prefetch pass found cached: the fast path, if it is plain.
        if FAST
            && let Some(&slot) = self.flow_hints.get(i)
            && slot != flow_cache::NO_SLOT
            && let Some(verdict) = self.fast_forward(batch, i, slot, now)
        {
            return verdict;
        }
        let frame = batch.frame_mut(i);
        let in_port = frame.in_port;
        let Some(port) = self.snapshot.port(in_port) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let is_uplink = port.is_uplink;
        let l2 = match L2Header::parse(frame.data()) {
            Ok(l2) => l2,
            Err(_) => return Verdict::Drop(DropReason::EthernetMalformed),
        };
        let Some(l2) = strip_priority_tags(frame, l2) else {
            return Verdict::Drop(DropReason::EthernetMalformed);
        };
        if l2.vlan_tags > 0 {
            return Verdict::Drop(DropReason::VlanTagged);
        }
        if antispoof::applies(port, l2.ethertype)
            && let Err(reason) = antispoof::check(port, &l2, frame.data())
        {
            return Verdict::Drop(reason);
        }
        if is_uplink {
            let mut pkt = Packet::new(i, l2, now);
            self.uplink_input(batch, &mut pkt)
        } else {
            self.bridge_input(batch, i, &l2, now)
        }
    }

    /// A frame from a pod's port: learned, then routed (to the gateway's
    /// MAC), flooded (ARP and other multicast) or switched. Switched frames
    /// need no packet context: it is built for the router.
    #[inline(always)]
    fn bridge_input(&mut self, batch: &mut Batch, i: usize, l2: &L2Header, now: u64) -> Verdict {
        let in_port = batch.frame_mut(i).in_port;
        if !l2.src.is_unicast() {
            return Verdict::Drop(DropReason::InvalidSrcMac);
        }
        let gateway = self.snapshot.gateway;
        if l2.src == gateway.mac {
            return Verdict::Drop(DropReason::SrcMacIsOurs);
        }
        self.macs
            .learn(&self.shared.macs, &self.counters, l2.src, in_port, now);
        if l2.dst == gateway.mac {
            let mut pkt = Packet::new(i, *l2, now);
            return self.router_input(batch, &mut pkt);
        }
        if l2.dst.is_multicast() {
            if l2.ethertype == EtherType::ARP
                && let Step::Break(v) = self.arp_input(batch, i, L3If::Bridge, now)
            {
                return v;
            }
            self.counters.event(Event::MulticastFlooded);
            return Verdict::Flood;
        }
        if l2.ethertype == EtherType::IPV4 {
            let frame = batch.frame_mut(i);
            if self.may_exceed_mtu(frame)
                && let Step::Break(v) = self.bridged_too_long(frame, l2.dst, now)
            {
                return v;
            }
            if let Step::Break(v) = self.nat_bridged(batch, i, l2.l3_offset, now) {
                return v;
            }
        }
        l2::unicast_verdict(&self.macs, &self.counters, l2.dst, in_port)
    }

    /// A frame from the uplink: VXLAN for us, routed, or ARP.
    fn uplink_input(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Verdict {
        let Some((_, uplink)) = self.snapshot.uplink else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        let l2 = pkt.l2;
        if l2.dst == uplink.mac {
            if let Step::Break(verdict) = self.overlay_input(batch, pkt) {
                return verdict;
            }
            pkt.iface = L3If::Uplink;
            return self.router_input(batch, pkt);
        }
        if l2.dst.is_broadcast() && l2.ethertype == EtherType::ARP {
            return match self.arp_input(batch, pkt.index, L3If::Uplink, pkt.now) {
                Step::Break(v) => v,
                Step::Continue(()) => Verdict::Drop(DropReason::ArpIgnored),
            };
        }
        Verdict::Drop(DropReason::NotForUs)
    }

    /// A frame for the router's MAC on `pkt.iface`.
    fn router_input(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Verdict {
        match pkt.l2.ethertype {
            EtherType::IPV4 => self.ipv4_input(batch, pkt),
            EtherType::ARP => match self.arp_input(batch, pkt.index, pkt.iface, pkt.now) {
                Step::Break(v) => v,
                Step::Continue(()) => Verdict::Drop(DropReason::ArpIgnored),
            },
            _ if pkt.iface == L3If::Uplink && self.snapshot.uplink_shared => {
                Verdict::Drop(DropReason::HostOwned)
            }
            _ => Verdict::Drop(DropReason::L3ProtocolUnsupported),
        }
    }

    /// True when a mirror session wants copies at `stage`: one load and a
    /// branch. Stages call it before building a [`MirrorNote`].
    #[inline(always)]
    pub fn mirror_active(&self, stage: MirrorStage) -> bool {
        self.mirror.active(stage)
    }

    /// Offers `data` (as seen at `stage` on `port`) to the active sessions:
    /// those that select the stage and the port and whose filter accepts it
    /// get a copy, or count a drop (per session, and [`Event::MirrorDropped`])
    /// if their output is behind. Never blocks.
    #[inline]
    pub fn mirror(&self, stage: MirrorStage, port: PortId, data: &[u8], note: MirrorNote) {
        for _ in 0..self.mirror.offer(stage, port, data, note) {
            self.counters.event(Event::MirrorDropped);
        }
    }

    /// Drop-stage hook for a frame the pipeline drops (by its input port).
    #[inline]
    fn mirror_drop(&self, frame: &Frame, reason: DropReason) {
        if self.mirror_active(MirrorStage::Drop) {
            let note = MirrorNote::new(MirrorStage::Drop, frame.in_port)
                .with_verdict(Verdict::Drop(reason));
            self.mirror(MirrorStage::Drop, frame.in_port, frame.data(), note);
        }
    }

    /// The output verdict for a frame about to leave by `iface` toward `dst_mac`.
    fn output_verdict(&self, iface: L3If, dst_mac: crate::wire::MacAddr) -> Verdict {
        match iface {
            L3If::Bridge => match self.macs.lookup(dst_mac) {
                Some(port) => Verdict::Forward(port),
                None => {
                    self.counters.event(Event::UnknownUnicastFlooded);
                    Verdict::Flood
                }
            },
            L3If::Uplink => match self.snapshot.uplink {
                Some((port, _)) => Verdict::Forward(port),
                None => Verdict::Drop(DropReason::NoRoute),
            },
        }
    }
}

/// Removes the priority tags (VLAN ID 0: an 802.1p priority, no VLAN) in
/// front of a frame, as Linux does before handling it as untagged; a tag of
/// a real VLAN stays. `None` if the frame is cut short.
fn strip_priority_tags(frame: &mut Frame, mut l2: L2Header) -> Option<L2Header> {
    while l2.vlan == Some(0) {
        if !frame.remove_vlan_tag() {
            return None;
        }
        l2 = L2Header::parse(frame.data()).ok()?;
    }
    Some(l2)
}

#[cfg(test)]
mod tests;
