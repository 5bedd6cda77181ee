//! The NAT stage as the pipeline calls it: per packet, the conntrack
//! lookup (both directions) and the rewrite; for a new flow, the service
//! lookup, endpoint choice (affinity, Maglev), hairpin and masquerade
//! decisions, and the refusal of services without endpoints.

use core::cell::Cell;
use core::net::Ipv4Addr;

use super::affinity::AffinityTable;
use super::icmp_error::{self, IcmpErrorOutcome};
use super::masquerade::{AllocError, insert_with_port};
use super::parse::{Parsed, Unparsed, parse};
use super::reject;
use super::rewrite::{L4Sum, rewrite_packet, rewrite_routed};
use super::shared::{Found, SharedConntrack};
use crate::config::Snapshot;
use crate::conntrack::{
    ConnKey, ConntrackTable, Direction, Entry, EntryId, Evictions, InsertError, Nat, TcpReject,
    TcpSegment,
};
use crate::packet::{DropReason, Event, Frame, L3If, PortId, Verdict, WorkerCounters};
use crate::services::{Backend, Indexed, Protocol, ServiceEntry, ServiceKey, flow_hash};
use crate::wire::tcp::FLAG_SYN;
use crate::wire::{IpProtocol, Ipv4Packet};

/// What the pipeline does after the NAT stage.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NatAction {
    /// Route the packet (it may have been rewritten: re-read its destination).
    Continue,
    /// Final: drop, or send the reply built in place.
    Verdict(Verdict),
    /// Answer the ICMP echo as the gateway does (a ClusterIP with endpoints).
    EchoReply,
    /// Refuse with an ICMP port unreachable from this address.
    RejectIcmp(Ipv4Addr),
}

/// What the stage needs from the pipeline, for one packet.
#[derive(Clone, Copy)]
pub struct NatStage<'a> {
    /// The configuration.
    pub snapshot: &'a Snapshot,
    /// The node's conntrack.
    pub conntrack: &'a SharedConntrack,
    /// The node's affinity table.
    pub affinity: &'a AffinityTable,
    /// This worker's counters.
    pub counters: &'a WorkerCounters,
    /// Pipeline time.
    pub now: u64,
    /// The packet came out of a VXLAN tunnel: another node's pod, whose
    /// own node masquerades for it; never masqueraded here.
    pub from_tunnel: bool,
    /// Where a routed packet that found its flow tracked leaves the entry
    /// and its rewrite, for the pipeline's flow cache.
    pub note: &'a Cell<Option<TrackedFlow>>,
}

/// A tracked flow as the pipeline's flow cache remembers it: the entry one
/// direction of it found, and the addresses and ports that direction is
/// rewritten to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TrackedFlow {
    /// The conntrack shard.
    pub shard: u16,
    /// Which way the cached packets travel.
    pub direction: Direction,
    /// The entry in that shard.
    pub id: EntryId,
    /// Source address after translation.
    pub src_addr: Ipv4Addr,
    /// Destination address after translation.
    pub dst_addr: Ipv4Addr,
    /// Source port after translation.
    pub src_port: u16,
    /// Destination port after translation.
    pub dst_port: u16,
}

impl TrackedFlow {
    fn rewrite(&self) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
        (
            (self.src_addr, self.src_port),
            (self.dst_addr, self.dst_port),
        )
    }
}

/// What [`NatStage::translate_cached`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CachedTranslation {
    /// Tracked and rewritten.
    Translated,
    /// Conntrack refused the segment: drop it.
    Drop(DropReason),
    /// The entry is not the flow's any more: take the full path.
    Miss,
}

/// The first stage of prefetching what choosing an endpoint for new
/// flows reads: for each of `keys` that may be addressed to a service, its
/// index slot (whose address follows from the key). Run before the
/// conntrack prefetch, whose work covers the wait.
pub fn prefetch_service_slots(snapshot: &Snapshot, keys: &[ConnKey]) {
    let services = &snapshot.services;
    for key in keys {
        if let Some(k) = service_key(snapshot, key) {
            services.prefetch_indexed(k);
        }
    }
}

/// The second stage: for each of `keys` (at most 64) that `tracked` says
/// looks untracked and is addressed to a service, reads its index slot
/// (loading since [`prefetch_service_slots`]) and starts loading its
/// Maglev slot and backends.
pub fn prefetch_new_flows(snapshot: &Snapshot, keys: &[ConnKey], tracked: &[bool]) {
    for (key, &tracked) in keys.iter().zip(tracked) {
        if !tracked && let Some(service) = service_indexed(snapshot, key) {
            service.prefetch_select(flow_hash(
                key.src_addr,
                key.dst_addr,
                key.src_port,
                key.dst_port,
                key.protocol.0,
            ));
        }
    }
}

/// The index key to prefetch for a packet with `key`: its NodePort when
/// addressed to one of the node's addresses, else its ClusterIP and port.
/// A hint only: [`service_indexed`] tries the ClusterIP first either way.
fn service_key(snapshot: &Snapshot, key: &ConnKey) -> Option<ServiceKey> {
    let protocol = Protocol::from_number(key.protocol.0)?;
    if snapshot.services.is_empty() {
        return None;
    }
    Some(if snapshot.is_local_ip(key.dst_addr) {
        ServiceKey::node_port(protocol, key.dst_port)
    } else {
        ServiceKey::cluster(protocol, key.dst_addr, key.dst_port)
    })
}

/// The service a packet with `key` is addressed to, as the index holds it
/// (see [`service_for`]).
#[inline]
fn service_indexed<'a>(snapshot: &'a Snapshot, key: &ConnKey) -> Option<&'a Indexed> {
    let protocol = Protocol::from_number(key.protocol.0)?;
    let services = &snapshot.services;
    services
        .indexed(ServiceKey::cluster(protocol, key.dst_addr, key.dst_port))
        .or_else(|| {
            snapshot
                .is_local_ip(key.dst_addr)
                .then(|| services.indexed(ServiceKey::node_port(protocol, key.dst_port)))
                .flatten()
        })
}

/// How the frame's L4 checksum is kept (partial with checksum offload).
pub(crate) fn l4_sum(frame: &Frame) -> L4Sum {
    if frame.offload.csum.is_some() {
        L4Sum::Partial
    } else {
        L4Sum::Full
    }
}

/// The result of a conntrack lookup.
enum Established {
    /// Not tracked.
    Miss,
    /// Done with it.
    Action(NatAction),
    /// A TCP segment of a flow whose endpoint left: RST the client.
    ResetClient,
}

/// Inside the shard lock: what to do with a found entry.
enum Hit {
    Rewrite(Direction, (Ipv4Addr, u16), (Ipv4Addr, u16)),
    Invalid,
    Stale,
    OtherDirection,
}

/// Whether the endpoint a DNAT entry points to is still in its service
/// (ready or not, terminating or not): if not, the flow is stale.
fn endpoint_still_in_service(snapshot: &Snapshot, entry: &Entry) -> bool {
    let (orig, reply) = (entry.original(), entry.reply());
    if reply.src_addr == orig.dst_addr {
        return true;
    }
    if Protocol::from_number(orig.protocol.0).is_none() {
        return true;
    }
    service_for(snapshot, orig).is_some_and(|s| s.backend_exists(reply.src_addr, reply.src_port))
}

/// The service a packet with `key` is addressed to: a ClusterIP and port,
/// or a NodePort on one of the node's addresses.
fn service_for<'a>(snapshot: &'a Snapshot, key: &ConnKey) -> Option<&'a ServiceEntry> {
    snapshot
        .services
        .entry(service_indexed(snapshot, key)?.entry())
}

impl NatStage<'_> {
    fn mark(&self) -> u16 {
        self.snapshot.generation as u16
    }

    /// An IPv4 packet routed by the gateway (`iface` received it), after
    /// the header checks and before the local-address check.
    pub fn routed(&self, frame: &mut Frame, l3: usize, iface: L3If) -> NatAction {
        if self.conntrack.is_empty()
            && self.snapshot.services.is_empty()
            && !self.may_masquerade(frame, l3, iface)
        {
            return NatAction::Continue;
        }
        let sum = l4_sum(frame);
        let Some(ip) = frame.data_mut().get_mut(l3..) else {
            return NatAction::Continue;
        };
        let p = match parse(ip) {
            Ok(p) => p,
            Err(Unparsed::Skip) => return NatAction::Continue,
            Err(Unparsed::Malformed) => {
                return NatAction::Verdict(Verdict::Drop(DropReason::L4Malformed));
            }
        };
        if p.icmp_error {
            return match self.icmp_error(ip) {
                Err(reason) => NatAction::Verdict(Verdict::Drop(reason)),
                Ok(_) => NatAction::Continue,
            };
        }
        if !self.conntrack.is_empty() {
            match self.established(ip, &p, sum, false) {
                Established::Miss => {}
                Established::Action(action) => return action,
                Established::ResetClient => {
                    self.counters.count_drop(DropReason::ServiceEndpointRemoved);
                    return self.reset(frame, l3, iface);
                }
            }
        }
        self.new_flow(frame, l3, &p, iface, sum)
    }

    /// An IPv4 frame switched at L2 between bridge ports (the endpoint
    /// answering an on-link client directly): translated if it is the
    /// reply of a tracked flow, or an ICMP error about one. `Ok(true)`:
    /// translated (the caller makes it look routed).
    pub fn bridged(&self, frame: &mut Frame, l3: usize) -> Result<bool, DropReason> {
        if self.conntrack.is_empty() {
            return Ok(false);
        }
        let sum = l4_sum(frame);
        let Some(ip) = frame.data_mut().get_mut(l3..) else {
            return Ok(false);
        };
        let p = match parse(ip) {
            Ok(p) => p,
            Err(Unparsed::Skip) => return Ok(false),
            Err(Unparsed::Malformed) => return Err(DropReason::L4Malformed),
        };
        if p.icmp_error {
            return self.icmp_error(ip);
        }
        match self.established(ip, &p, sum, true) {
            Established::Action(NatAction::Continue) => Ok(true),
            Established::Action(NatAction::Verdict(Verdict::Drop(reason))) => Err(reason),
            _ => Ok(false),
        }
    }

    /// An ICMP error: translated if it quotes a tracked flow (`Ok(true)`),
    /// dropped if its quote cannot be read.
    fn icmp_error(&self, ip: &mut [u8]) -> Result<bool, DropReason> {
        match icmp_error::translate(self.conntrack, ip, self.now) {
            IcmpErrorOutcome::Translated(_) => {
                self.counters.event(Event::IcmpErrorUnnat);
                Ok(true)
            }
            IcmpErrorOutcome::NotTracked => Ok(false),
            IcmpErrorOutcome::Malformed => Err(DropReason::L4Malformed),
        }
    }

    /// Puts a packet the stage translated (the IPv4 packet `ip`) back as
    /// its sender sent it, to be quoted in an ICMP error the pipeline
    /// sends about it. `true`: it was translated and is put back.
    pub fn untranslate(&self, ip: &mut [u8]) -> bool {
        icmp_error::untranslate(self.conntrack, ip, self.now)
    }

    /// Looks the packet up; on a hit tracks it and rewrites it.
    fn established(&self, ip: &mut [u8], p: &Parsed, sum: L4Sum, reply_only: bool) -> Established {
        let (now, mark) = (self.now, self.mark());
        let track = |table: &mut ConntrackTable, found: Found| {
            let (id, dir) = (found.id, found.direction);
            let entry = table.get(id)?;
            if reply_only && dir != Direction::Reply {
                return Some(Hit::OtherDirection);
            }
            let (src, dst) = entry.rewrite(dir);
            if dir == Direction::Original && entry.mark() != mark {
                if !endpoint_still_in_service(self.snapshot, entry) {
                    table.remove(id);
                    return Some(Hit::Stale);
                }
                table.set_mark(id, mark);
            }
            Some(match table.track(id, dir, p.tcp.as_ref(), now) {
                Ok(_) | Err(TcpReject::Ignored) => {
                    if !reply_only {
                        self.note.set(Some(TrackedFlow {
                            shard: found.shard as u16,
                            direction: dir,
                            id,
                            src_addr: src.0,
                            dst_addr: dst.0,
                            src_port: src.1,
                            dst_port: dst.1,
                        }));
                    }
                    Hit::Rewrite(dir, src, dst)
                }
                Err(_) => Hit::Invalid,
            })
        };
        let hit = if reply_only {
            self.conntrack.with_entry_at_dst(&p.key, now, track)
        } else {
            self.conntrack.with_entry(&p.key, now, track)
        };
        match hit.flatten() {
            None | Some(Hit::OtherDirection) => Established::Miss,
            Some(Hit::Rewrite(dir, src, dst)) => {
                rewrite_packet(ip, sum, src, dst);
                if dir == Direction::Reply {
                    self.counters.event(Event::ReverseNat);
                }
                Established::Action(NatAction::Continue)
            }
            Some(Hit::Invalid) => Established::Action(NatAction::Verdict(Verdict::Drop(
                DropReason::ConntrackInvalid,
            ))),
            Some(Hit::Stale) => {
                self.counters.event(Event::FlowReresolved);
                match p.tcp {
                    Some(segment) if segment.flags & FLAG_SYN == 0 => Established::ResetClient,
                    _ => Established::Miss,
                }
            }
        }
    }

    /// A routed packet of a flow the pipeline's flow cache remembers as
    /// `flow` (`key`: the packet's key, `segment`: its TCP segment): if the
    /// entry is still this flow's, with the same rewrite and validated
    /// against the current services, tracks the packet on it and rewrites
    /// it as [`routed`](Self::routed) would, decrementing its TTL in the
    /// same checksum update (the caller checked that it is above 1).
    #[inline]
    pub(crate) fn translate_cached(
        &self,
        ip: &mut [u8],
        sum: L4Sum,
        key: &ConnKey,
        segment: Option<&TcpSegment>,
        flow: &TrackedFlow,
    ) -> CachedTranslation {
        let (now, mark, dir) = (self.now, self.mark(), flow.direction);
        let at = (usize::from(flow.shard), flow.id);
        let tracked = self.conntrack.track_if(at, (dir, segment), now, |entry| {
            entry.key(dir).words() == key.words()
                && entry.remaining_secs(now) > 0
                && entry.rewrite(dir) == flow.rewrite()
                && (dir == Direction::Reply || entry.mark() == mark)
        });
        match tracked {
            None => CachedTranslation::Miss,
            Some(Ok(_) | Err(TcpReject::Ignored)) => {
                let (src, dst) = flow.rewrite();
                rewrite_routed(ip, sum, key, src, dst);
                if dir == Direction::Reply {
                    self.counters.event(Event::ReverseNat);
                }
                CachedTranslation::Translated
            }
            Some(Err(_)) => CachedTranslation::Drop(DropReason::ConntrackInvalid),
        }
    }

    fn new_flow(
        &self,
        frame: &mut Frame,
        l3: usize,
        p: &Parsed,
        iface: L3If,
        sum: L4Sum,
    ) -> NatAction {
        let snapshot = self.snapshot;
        let key = p.key;
        if p.echo_request
            && let Some(ready) = snapshot.services.cluster_ip_ready(key.dst_addr)
        {
            return if ready {
                NatAction::EchoReply
            } else {
                NatAction::Verdict(Verdict::Drop(DropReason::ServiceNoEndpoints))
            };
        }
        if let Some(service) = service_indexed(snapshot, &key) {
            return self.service_flow(frame, l3, p, service, iface, sum);
        }
        // A packet whose TTL runs out here gets its ICMP error untranslated.
        let ttl = frame
            .data()
            .get(l3..)
            .map_or(0, |ip| Ipv4Packet::new_unchecked(ip).ttl());
        if ttl > 1 && self.masquerades(frame.in_port, iface, &key) {
            return self.masquerade_flow(frame, l3, p, sum);
        }
        NatAction::Continue
    }

    /// The first packet's tracking, run on the new entry under its lock;
    /// `false` (entry removed) if a TCP segment does not fit.
    fn first_packet(
        &self,
        p: &Parsed,
    ) -> impl FnOnce(&mut ConntrackTable, EntryId) -> bool + use<> {
        let (now, mark, tcp) = (self.now, self.mark(), p.tcp);
        move |table: &mut ConntrackTable, id: EntryId| {
            table.set_mark(id, mark);
            let ok = table
                .track(id, Direction::Original, tcp.as_ref(), now)
                .is_ok();
            if !ok {
                table.remove(id);
            }
            ok
        }
    }

    /// A backend for a new flow: the Maglev pick (from the index slot
    /// alone), or with session affinity the client's remembered backend.
    fn pick_backend(&self, service: &Indexed, key: &ConnKey) -> Option<Backend> {
        let hash = flow_hash(
            key.src_addr,
            key.dst_addr,
            key.src_port,
            key.dst_port,
            key.protocol.0,
        );
        if !service.has_affinity() {
            return service.select(hash);
        }
        let service = self.snapshot.services.entry(service.entry())?;
        let timeout = service.affinity_timeout();
        if timeout.is_some()
            && let Some(b) = self.affinity.lookup(service.key(), key.src_addr, self.now)
            && service.is_selectable(b)
        {
            return Some(b);
        }
        let backend = service.select(hash)?;
        if let Some(t) = timeout {
            let t = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            self.affinity
                .remember(service.key(), key.src_addr, backend, self.now, t);
        }
        Some(backend)
    }

    fn service_flow(
        &self,
        frame: &mut Frame,
        l3: usize,
        p: &Parsed,
        service: &Indexed,
        iface: L3If,
        sum: L4Sum,
    ) -> NatAction {
        let key = p.key;
        if p.tcp.is_some_and(|s| !s.can_open()) {
            return NatAction::Verdict(Verdict::Drop(DropReason::ConntrackInvalid));
        }
        let Some(backend) = self.pick_backend(service, &key) else {
            self.counters.event(Event::ServiceRejected);
            if p.tcp.is_some() {
                self.counters.count_drop(DropReason::ServiceNoEndpoints);
                return self.reset(frame, l3, iface);
            }
            return NatAction::RejectIcmp(key.dst_addr);
        };
        let endpoint = (backend.addr, backend.port);
        let shard = self
            .conntrack
            .shard_of(key.src_addr, key.src_port, key.protocol);
        // Source NAT to the gateway address for a pod reaching itself
        // (hairpin), and for a connection from outside (a NodePort, an
        // external IP) with externalTrafficPolicy Cluster, as kube-proxy
        // masquerades it: an endpoint on another node would answer the
        // client directly, around this node's conntrack, and a local one
        // sees the node, as it would under kube-proxy. With the Local
        // policy the endpoints are this node's and see the client.
        let hairpin = backend.addr == key.src_addr;
        let outside = iface == L3If::Uplink
            && (!service.external_local() || !self.snapshot.gateway.address.contains(backend.addr));
        let limit = self.source_limit(iface);
        let inserted = if hairpin || outside {
            let gateway = self.snapshot.gateway.address.addr;
            self.insert_snat_dnat((shard, limit), p, (gateway, 0), endpoint)
                .map(|(ok, nat, evicted)| {
                    let event = if hairpin {
                        Event::SnatHairpin
                    } else {
                        Event::SnatMasquerade
                    };
                    (ok, nat, evicted, event)
                })
        } else {
            let nat = Nat::dnat(endpoint);
            let first = self.first_packet(p);
            match (self.conntrack).insert_charged_with(shard, (key, nat), limit, self.now, first) {
                Ok((ok, evicted)) => Ok((ok, nat, evicted, Event::Dnat)),
                Err(InsertError::Clash(_)) => self.remap_source((shard, limit), p, endpoint),
                Err(refused) => Err(AllocError::Refused(refused)),
            }
        };
        self.finish_insert(frame, l3, p, sum, inserted)
    }

    /// A DNAT flow whose insert clashed: if its reply tuple is another
    /// flow's (the same client port to two services that share an
    /// endpoint), the client's port is remapped to one that makes the reply
    /// tuple unique and keeps the entry in the client's shard, as Linux's
    /// implicit source NAT does on a clash. If the flow itself is tracked
    /// (another worker raced us), [`AllocError::Clash`].
    fn remap_source(
        &self,
        at: (usize, Option<u32>),
        p: &Parsed,
        endpoint: (Ipv4Addr, u16),
    ) -> Result<(bool, Nat, Evictions, Event), AllocError> {
        let (ok, nat, evicted) = self.insert_snat_dnat(at, p, (p.key.src_addr, 2), endpoint)?;
        if ok {
            self.counters.event(Event::SourcePortRemapped);
        }
        Ok((ok, nat, evicted, Event::Dnat))
    }

    /// Inserts a flow DNATed to `endpoint` with its source translated to
    /// `src_addr` and a port [`insert_with_port`] finds (its search started
    /// by the flow's hash salted with `salt`), kept in `shard` and held to
    /// `source_limit` (see [`NatStage::source_limit`]).
    fn insert_snat_dnat(
        &self,
        (shard, source_limit): (usize, Option<u32>),
        p: &Parsed,
        (src_addr, salt): (Ipv4Addr, u8),
        endpoint: (Ipv4Addr, u16),
    ) -> Result<(bool, Nat, Evictions), AllocError> {
        let key = p.key;
        let make = |port| Nat {
            src: Some((src_addr, port)),
            dst: Some(endpoint),
        };
        let same_shard = |port| self.conntrack.shard_of(src_addr, port, key.protocol) == shard;
        let hash = flow_hash(key.src_addr, key.dst_addr, key.src_port, key.dst_port, salt);
        insert_with_port(
            self.conntrack,
            shard,
            &self.snapshot.nat,
            (key, source_limit),
            hash,
            make,
            same_shard,
            self.now,
            self.first_packet(p),
        )
    }

    /// What a new entry from `iface` is held to: a connection from a local
    /// pod counts against `conntrack.max_per_pod` (`u32::MAX`: no limit);
    /// others (from the uplink or a tunnel) are not counted.
    fn source_limit(&self, iface: L3If) -> Option<u32> {
        (iface == L3If::Bridge && !self.from_tunnel).then_some(self.snapshot.nat.max_per_pod)
    }

    /// Rewrites the first packet of a new entry, or says why there is none.
    fn finish_insert(
        &self,
        frame: &mut Frame,
        l3: usize,
        p: &Parsed,
        sum: L4Sum,
        inserted: Result<(bool, Nat, Evictions, Event), AllocError>,
    ) -> NatAction {
        let (nat, evicted, event) = match inserted {
            Ok((true, nat, evicted, event)) => (nat, evicted, event),
            Ok((false, ..)) => {
                return NatAction::Verdict(Verdict::Drop(DropReason::ConntrackInvalid));
            }
            Err(AllocError::Exhausted) => {
                return NatAction::Verdict(Verdict::Drop(DropReason::NatPortExhausted));
            }
            Err(AllocError::Refused(InsertError::SourceLimit)) => {
                return NatAction::Verdict(Verdict::Drop(DropReason::ConntrackPodLimit));
            }
            Err(AllocError::Refused(_)) => {
                return NatAction::Verdict(Verdict::Drop(DropReason::ConntrackFull));
            }
            Err(AllocError::Clash) => {
                // Another worker tracked the same flow a moment ago: use its entry.
                let Some(ip) = frame.data_mut().get_mut(l3..) else {
                    return NatAction::Continue;
                };
                return match self.established(ip, p, sum, false) {
                    Established::Action(action) => action,
                    _ => NatAction::Verdict(Verdict::Drop(DropReason::ConntrackFull)),
                };
            }
        };
        for _ in 0..evicted.unassured {
            self.counters.event(Event::ConntrackEvicted);
        }
        for _ in 0..evicted.closing {
            self.counters.event(Event::ConntrackEvictedClosing);
        }
        self.counters.event(event);
        let src = nat.src.unwrap_or(p.key.src());
        let dst = nat.dst.unwrap_or(p.key.dst());
        if let Some(ip) = frame.data_mut().get_mut(l3..) {
            rewrite_packet(ip, sum, src, dst);
        }
        NatAction::Continue
    }

    /// A cheap first test of [`masquerades`](Self::masquerades) (no route lookup).
    fn may_masquerade(&self, frame: &Frame, l3: usize, iface: L3If) -> bool {
        let s = self.snapshot;
        if iface != L3If::Bridge || s.uplink.is_none() || self.from_tunnel {
            return false;
        }
        let Some(ip) = frame.data().get(l3..) else {
            return false;
        };
        let ip = Ipv4Packet::new_unchecked(ip);
        ip.header().len() >= 20
            && s.nat.in_cluster(ip.src_addr())
            && !s.nat.in_cluster(ip.dst_addr())
            && !s.is_remote_pod_ip(ip.dst_addr())
            && s.port(frame.in_port)
                .is_some_and(|p| p.masquerade.unwrap_or(s.nat.masquerade))
    }

    /// Whether a new flow from `in_port` is masqueraded: from inside the
    /// cluster to outside it, leaving by the uplink, masquerade on for the port.
    fn masquerades(&self, in_port: PortId, iface: L3If, key: &ConnKey) -> bool {
        let s = self.snapshot;
        let nat = &s.nat;
        iface == L3If::Bridge
            && !self.from_tunnel
            && s.uplink.is_some()
            && s.port(in_port)
                .is_some_and(|p| p.masquerade.unwrap_or(nat.masquerade))
            && nat.in_cluster(key.src_addr)
            && !nat.in_cluster(key.dst_addr)
            && !s.is_remote_pod_ip(key.dst_addr)
            && !s.is_local_ip(key.dst_addr)
            && s.routes
                .next_hop(key.dst_addr)
                .is_some_and(|hop| hop.iface == L3If::Uplink)
    }

    fn masquerade_flow(&self, frame: &mut Frame, l3: usize, p: &Parsed, sum: L4Sum) -> NatAction {
        let key = p.key;
        if p.tcp.is_some_and(|s| !s.can_open()) {
            return NatAction::Verdict(Verdict::Drop(DropReason::ConntrackInvalid));
        }
        if key.protocol == IpProtocol::ICMP && !p.echo_request {
            return NatAction::Continue;
        }
        let Some((_, uplink)) = self.snapshot.uplink else {
            return NatAction::Continue;
        };
        let node = uplink.address.addr;
        let icmp = key.protocol == IpProtocol::ICMP;
        let make = |port| Nat {
            src: Some((node, port)),
            // ICMP: the identifier stands in for both ports.
            dst: icmp.then_some((key.dst_addr, port)),
        };
        let shard = self
            .conntrack
            .shard_of(key.dst_addr, key.dst_port, key.protocol);
        let hash = flow_hash(key.src_addr, key.dst_addr, key.src_port, key.dst_port, 1);
        let inserted = insert_with_port(
            self.conntrack,
            shard,
            &self.snapshot.nat,
            (key, self.source_limit(L3If::Bridge)),
            hash,
            make,
            |_| true,
            self.now,
            self.first_packet(p),
        )
        .map(|(ok, nat, evicted)| (ok, nat, evicted, Event::SnatMasquerade));
        self.finish_insert(frame, l3, p, sum, inserted)
    }

    /// Turns the TCP segment into a RST back to its sender.
    fn reset(&self, frame: &mut Frame, l3: usize, iface: L3If) -> NatAction {
        let Some(l3if) = self.snapshot.l3_interface(iface) else {
            return NatAction::Verdict(Verdict::Consumed);
        };
        match reject::tcp_reset_in_place(frame, l3, l3if.mac) {
            Some(()) => NatAction::Verdict(Verdict::Forward(frame.in_port)),
            None => NatAction::Verdict(Verdict::Consumed),
        }
    }
}
