//! Overlay stage: routing into VXLAN tunnels and taking decapsulated frames
//! in (the formats and checks live in `crate::overlay`).
//!
//! Out: the router hands a packet for a remote pod CIDR to
//! [`Pipeline::tunnel_output`]: TTL and MTU checks (ICMP time exceeded,
//! ICMP fragmentation needed for a packet with DF too long for the tunnel;
//! one without DF is cut into fragments that fit it, each encapsulated,
//! when sent), partial checksum completed, inner MACs set
//! (our VTEP → theirs), TTL − 1, then [`encap::encapsulate`] toward the
//! node, the outer next hop resolved by ARP on the uplink (held while it
//! resolves). In: a VXLAN packet for us is decapsulated and its inner IPv4
//! packet goes through the router as if it came from the bridge domain;
//! what would leave by the uplink or a tunnel again is dropped (split
//! horizon), except the gateway's own answers (echo replies, ICMP errors),
//! which go back through the tunnel they concern. After the batch, runs of
//! decapsulated TCP segments of one flow are merged into GSO frames
//! ([`Pipeline::coalesce_decapsulated`]).

use core::net::Ipv4Addr;

use super::Pipeline;
use super::context::Packet;
use super::neighbour::Lookup;
use crate::io::fragment::Fragmenter;
use crate::mirror::{MirrorNote, MirrorStage};
use crate::overlay::encap::{self, EncapParams};
use crate::overlay::{TunnelId, coalesce, decap};
use crate::packet::{Batch, DropReason, Event, Frame, GsoKind, L3If, PortId, Verdict};
use crate::packet::{Step, verdict};
use crate::wire::{EtherType, EthernetFrame, Ipv4Packet, L2Header, MacAddr, icmpv4};

/// What the tunnel output needs to know about the inner IPv4 packet.
struct InnerFacts {
    ttl: u8,
    dont_frag: bool,
    tos: u8,
    /// Length of the largest IP packet this frame becomes (a segment for GSO).
    wire_len: usize,
    /// Outer packets this frame becomes.
    segments: u16,
}

/// Where a tunnel leads.
struct TunnelTarget {
    /// The remote node's address (the outer destination).
    node_ip: Ipv4Addr,
    /// The remote VTEP's MAC (the inner destination).
    vtep_mac: MacAddr,
    /// Our VTEP's MAC (the inner source).
    local_vtep_mac: MacAddr,
    /// The outer next hop on the uplink.
    next_hop: Ipv4Addr,
}

/// Readies the inner frame: its partial checksum completed (no GSO),
/// our VTEP's MAC to the remote one, TTL − 1. `Continue` with the
/// outer UDP source port of its flow.
#[inline(always)]
fn ready_inner(frame: &mut Frame, l3_offset: usize, target: &TunnelTarget) -> Step<u16> {
    if frame.offload.gso == GsoKind::None {
        if let Some((start, offset)) = frame.offload.csum {
            let done = crate::io::gso::complete_checksum(
                frame.data_mut(),
                usize::from(start),
                usize::from(offset),
            );
            if done.is_err() {
                return Step::Break(Verdict::Drop(DropReason::VxlanEncapFailed));
            }
        }
        frame.offload = crate::packet::Offload::default();
    }
    let Some(mut eth) = EthernetFrame::new_checked(frame.data_mut()).ok() else {
        return Step::Break(Verdict::Drop(DropReason::EthernetMalformed));
    };
    eth.set_src_addr(target.local_vtep_mac);
    eth.set_dst_addr(target.vtep_mac);
    let data = frame.data_mut();
    let Some(mut ip) = data
        .get_mut(l3_offset..)
        .and_then(|b| Ipv4Packet::new_checked(b).ok())
    else {
        return Step::Break(Verdict::Drop(DropReason::Ipv4Malformed));
    };
    ip.decrement_ttl();
    Step::Continue(encap::flow_src_port(ip.into_inner()))
}

fn inner_facts(frame: &Frame, l3_offset: usize) -> Option<InnerFacts> {
    let ip = Ipv4Packet::new_checked(frame.data().get(l3_offset..)?).ok()?;
    let total_len = usize::from(ip.total_len());
    let (wire_len, segments) = match frame.offload.gso {
        GsoKind::None => (total_len, 1),
        kind => {
            let l4 = ip.payload();
            let l4_header = match kind {
                GsoKind::TcpV4 => usize::from(l4.get(12)? >> 4) * 4,
                _ => 8,
            };
            let headers = ip.header_len() + l4_header;
            let mss = usize::from(frame.offload.gso_size).max(1);
            let payload = total_len.saturating_sub(headers);
            let segments = u16::try_from(payload.div_ceil(mss).max(1)).unwrap_or(u16::MAX);
            ((headers + mss).min(total_len), segments)
        }
    };
    Some(InnerFacts {
        ttl: ip.ttl(),
        dont_frag: ip.dont_frag(),
        tos: ip.dscp_ecn(),
        wire_len,
        segments,
    })
}

impl Pipeline {
    /// The tunnel for `dst`: a remote pod CIDR covering it at least as
    /// specifically as the most specific route.
    #[inline]
    pub(super) fn tunnel_route(&self, dst: Ipv4Addr) -> Option<TunnelId> {
        let overlay = self.snapshot.overlay.as_ref()?;
        if self.snapshot.gateway.address.contains(dst) {
            // Our own pod subnet: no node's CIDR overlaps it.
            return None;
        }
        let (prefix_len, id) = overlay.tunnels.lookup(dst)?;
        match self.snapshot.routes.lookup(dst) {
            Some(route) if route.prefix.prefix_len > prefix_len => None,
            _ => Some(id),
        }
    }

    /// Sends the routed IPv4 packet `pkt` into tunnel `tunnel`: the
    /// tunnel's checks, the inner frame readied, the outer headers put on,
    /// out of the uplink (held while the outer next hop resolves).
    pub(super) fn tunnel_output(
        &mut self,
        batch: &mut Batch,
        pkt: &Packet,
        tunnel: TunnelId,
    ) -> Verdict {
        verdict(self.encapsulate_into(batch, pkt, tunnel))
    }

    #[inline(always)]
    fn encapsulate_into(
        &mut self,
        batch: &mut Batch,
        pkt: &Packet,
        tunnel: TunnelId,
    ) -> Step<Verdict> {
        let (i, now) = (pkt.index, pkt.now);
        let (target, facts, fragments) = self.tunnel_checks(batch.frame_mut(i), pkt, tunnel)?;
        let src_port = ready_inner(batch.frame_mut(i), pkt.l3(), &target)?;
        self.counters.event(Event::Routed);
        let outer_mac = self.outer_next_hop_mac(batch, target.next_hop, now);
        let ip_id = self.overlay_ip_id;
        self.overlay_ip_id = ip_id.wrapping_add(facts.segments.max(fragments));
        let (Some(overlay), Some((uplink_port, uplink))) =
            (self.snapshot.overlay.as_ref(), self.snapshot.uplink)
        else {
            return Step::Break(Verdict::Drop(DropReason::NoRoute));
        };
        let params = EncapParams {
            src_mac: uplink.mac,
            dst_mac: outer_mac.unwrap_or(MacAddr::ZERO),
            src_ip: overlay.node_ip,
            dst_ip: target.node_ip,
            src_port,
            dst_port: overlay.udp_port,
            vni: overlay.vni,
            ip_id,
            tos: encap::outer_tos(facts.tos),
            df: overlay.df,
            udp_checksum: overlay.outer_udp_checksum,
        };
        self.encapsulate_frame(batch.frame_mut(i), &params, uplink_port, fragments)?;
        Step::Break(match outer_mac {
            Some(_) => Verdict::Forward(uplink_port),
            None => self.hold_frame(batch, i, L3If::Uplink, target.next_hop, now, true),
        })
    }

    /// What a packet must pass to enter `tunnel`: split horizon, TTL (ICMP
    /// time exceeded), the tunnel's MTU (ICMP fragmentation needed with DF;
    /// without, the number of fragments it is cut into when sent).
    #[inline(always)]
    fn tunnel_checks(
        &mut self,
        frame: &mut Frame,
        pkt: &Packet,
        tunnel: TunnelId,
    ) -> Step<(TunnelTarget, InnerFacts, u16)> {
        let (iface, now) = (pkt.iface, pkt.now);
        if pkt.decapsulated() {
            return Step::Break(Verdict::Drop(DropReason::VxlanSplitHorizon));
        }
        let Some(overlay) = self.snapshot.overlay.as_ref() else {
            return Step::Break(Verdict::Drop(DropReason::NoRoute));
        };
        let Some(t) = overlay.tunnels.get(tunnel) else {
            return Step::Break(Verdict::Drop(DropReason::NoRoute));
        };
        let inner_mtu = overlay.inner_mtu;
        let target = TunnelTarget {
            node_ip: t.node_ip,
            vtep_mac: t.vtep_mac,
            local_vtep_mac: overlay.vtep_mac,
            next_hop: t.outer_next_hop,
        };
        let Some(facts) = inner_facts(frame, pkt.l3()) else {
            return Step::Break(Verdict::Drop(DropReason::Ipv4Malformed));
        };
        if facts.ttl <= 1 {
            let kind = (icmpv4::TIME_EXCEEDED, icmpv4::CODE_TTL_EXCEEDED);
            return Step::Break(self.icmp_error(frame, iface, kind, DropReason::TtlExpired, now));
        }
        if facts.wire_len <= usize::from(inner_mtu) {
            return Step::Continue((target, facts, 0));
        }
        // Too long for the tunnel: without DF it goes in fragments that
        // fit it (cut when sent); with DF it is refused with ICMP.
        if !facts.dont_frag && frame.offload.gso == GsoKind::None {
            let Ok(cut) = Fragmenter::new(frame.data(), usize::from(inner_mtu)) else {
                return Step::Break(Verdict::Drop(DropReason::VxlanTooBig));
            };
            let fragments = u16::try_from(cut.remaining()).unwrap_or(u16::MAX);
            return Step::Continue((target, facts, fragments));
        }
        let kind = (icmpv4::DST_UNREACHABLE, icmpv4::CODE_FRAG_NEEDED);
        let mtu = u32::from(inner_mtu);
        let verdict = self.icmp_error_rest(frame, iface, kind, mtu, DropReason::VxlanTooBig, now);
        if matches!(verdict, Verdict::Forward(_)) {
            self.counters.event(Event::VxlanFragNeededSent);
        }
        Step::Break(verdict)
    }

    /// The MAC of the tunnel's outer next hop on the uplink, if known
    /// (probing it when stale).
    #[inline(always)]
    fn outer_next_hop_mac(
        &mut self,
        batch: &mut Batch,
        next_hop: Ipv4Addr,
        now: u64,
    ) -> Option<MacAddr> {
        let tuning = self.snapshot.tuning;
        let reachable_ns = tuning.neighbour_reachable_ns;
        match self
            .neighbours
            .lookup(L3If::Uplink, next_hop, now, reachable_ns)
        {
            Lookup::Reachable(mac) => Some(mac),
            Lookup::Stale(mac) => {
                let probe_ns = tuning.probe_interval_ns;
                if self
                    .neighbours
                    .probe_due(L3If::Uplink, next_hop, now, probe_ns)
                {
                    self.send_arp_request(batch, L3If::Uplink, next_hop);
                }
                Some(mac)
            }
            Lookup::Unknown => None,
        }
    }

    /// Puts the outer headers on (in `fragments` when it is cut), with the
    /// `pre-encap` and `post-encap` mirror stages around it.
    #[inline(always)]
    fn encapsulate_frame(
        &self,
        frame: &mut Frame,
        params: &EncapParams,
        uplink_port: PortId,
        fragments: u16,
    ) -> Step {
        let in_port = frame.in_port;
        if self.mirror_active(MirrorStage::PreEncap) {
            let note = MirrorNote::new(MirrorStage::PreEncap, in_port).with_out_port(uplink_port);
            self.mirror(MirrorStage::PreEncap, in_port, frame.data(), note);
        }
        let encapsulated = if fragments > 0 {
            encap::encapsulate_to_fragment(frame, params)
        } else {
            encap::encapsulate(frame, params)
        };
        if encapsulated.is_err() {
            return Step::Break(Verdict::Drop(DropReason::VxlanEncapFailed));
        }
        // The outer frame as built (a frame waiting for ARP has a zero
        // destination MAC until it is released; a GSO frame's outer lengths
        // are finished per segment at transmit).
        if self.mirror_active(MirrorStage::PostEncap) {
            let note = MirrorNote::new(MirrorStage::PostEncap, in_port).with_out_port(uplink_port);
            self.mirror(MirrorStage::PostEncap, in_port, frame.data(), note);
        }
        self.counters.event(Event::VxlanEncapsulated);
        if fragments > 0 {
            self.counters.event(Event::Ipv4Fragmented);
        }
        Step::Continue(())
    }

    /// Sets the outer MACs of an encapsulated frame released from the hold queue.
    pub(super) fn forward_encapsulated(&self, frame: &mut Frame, mac: MacAddr) -> Verdict {
        let Some((port, uplink)) = self.snapshot.uplink else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let Ok(mut eth) = EthernetFrame::new_checked(frame.data_mut()) else {
            return Verdict::Drop(DropReason::EthernetMalformed);
        };
        eth.set_dst_addr(mac);
        eth.set_src_addr(uplink.mac);
        Verdict::Forward(port)
    }

    /// A frame for the uplink's MAC: `Break` when it is VXLAN for us (then
    /// decapsulated and routed), `Continue` for the ordinary router.
    pub(super) fn overlay_input(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Step {
        let Some(overlay) = self.snapshot.overlay.as_ref() else {
            return Step::Continue(());
        };
        if pkt.l2.ethertype != EtherType::IPV4 {
            return Step::Continue(());
        }
        let i = pkt.index;
        let frame = batch.frame_mut(i);
        let tunnel = match decap::decapsulate(frame, overlay) {
            Ok(Some(tunnel)) => tunnel,
            Ok(None) => return Step::Continue(()),
            Err(reason) => return Step::Break(self.decap_refused(batch, pkt, reason)),
        };
        self.counters.event(Event::VxlanDecapsulated);
        if frame.offload.gso != GsoKind::None {
            self.counters.event(Event::VxlanGsoDecapsulated);
        }
        if let Some(bit) = 1u64.checked_shl(i as u32) {
            self.tunnel_rx_mask |= bit;
        }
        let Some(inner) = L2Header::parse(frame.data())
            .ok()
            .and_then(|inner| super::strip_priority_tags(frame, inner))
        else {
            return Step::Break(Verdict::Drop(DropReason::VxlanInnerNotForUs));
        };
        let ours = inner.dst == overlay.vtep_mac || inner.dst == self.snapshot.gateway.mac;
        if !ours || inner.vlan_tags > 0 || inner.ethertype != EtherType::IPV4 {
            return Step::Break(Verdict::Drop(DropReason::VxlanInnerNotForUs));
        }
        Step::Break(self.route_decapsulated(batch, pkt, inner, tunnel))
    }

    /// The inner packet of a VXLAN packet out of `tunnel`: routed as if it
    /// came from the bridge domain; what would leave by the uplink again is
    /// dropped (split horizon) or, a gateway answer, sent back through the
    /// tunnel.
    #[inline(always)]
    fn route_decapsulated(
        &mut self,
        batch: &mut Batch,
        pkt: &mut Packet,
        inner: L2Header,
        tunnel: TunnelId,
    ) -> Verdict {
        pkt.l2 = inner;
        pkt.iface = L3If::Bridge;
        pkt.rx_tunnel = Some(tunnel);
        pkt.tunnel_exit = false;
        let verdict = self.ipv4_input(batch, pkt);
        pkt.rx_tunnel = None;
        if core::mem::take(&mut pkt.tunnel_exit) {
            // A translated reply routed out of the uplink (see `ipv4_input`).
            return verdict;
        }
        match (verdict, self.snapshot.uplink) {
            // The gateway answered the remote sender (echo reply, ICMP
            // error): back through the tunnel its destination lies behind.
            (Verdict::Forward(port), Some((uplink_port, _))) if port == uplink_port => {
                self.reply_into_tunnel(batch, pkt)
            }
            (verdict, _) => verdict,
        }
    }

    /// A packet decapsulation refused for `reason`: dropped, but an outer
    /// fragment of what may be a VXLAN packet to us (the underlay cut it)
    /// is decapsulated once whole, as the Linux vxlan receiver does after
    /// the IP layer's reassembly (not VXLAN after all: routed).
    #[cold]
    #[inline(never)]
    fn decap_refused(
        &mut self,
        batch: &mut Batch,
        pkt: &mut Packet,
        reason: DropReason,
    ) -> Verdict {
        if reason != DropReason::VxlanFragmented {
            return Verdict::Drop(reason);
        }
        let (i, l3, now) = (pkt.index, pkt.l3(), pkt.now);
        match self.reassemble(batch, i, l3, L3If::Uplink, false, now) {
            Step::Continue(()) => match self.overlay_input(batch, pkt) {
                Step::Break(verdict) => verdict,
                Step::Continue(()) => {
                    pkt.iface = L3If::Uplink;
                    self.router_input(batch, pkt)
                }
            },
            Step::Break(verdict) => verdict,
        }
    }

    /// Merges runs of decapsulated TCP segments of one flow, going to the
    /// same port, into GSO frames (see `crate::overlay::coalesce`).
    pub(super) fn coalesce_decapsulated(&mut self, batch: &mut Batch) {
        let mask = core::mem::take(&mut self.tunnel_rx_mask);
        if mask.count_ones() < 2 {
            return;
        }
        let n = batch.rx_len().min(64);
        let decapsulated = |k: usize| mask & (1u64 << k) != 0;
        let mut i = 0;
        while i < n {
            let run = match batch.get(i) {
                Some((frame, Verdict::Forward(_))) if decapsulated(i) => coalesce::start(frame),
                _ => None,
            };
            let Some(mut run) = run else {
                i += 1;
                continue;
            };
            let verdict = batch.get(i).map(|(_, v)| v);
            let mss = run.segment_size();
            let mut j = i + 1;
            while j < n && decapsulated(j) && batch.get(j).map(|(_, v)| v) == verdict {
                let Some((first, next)) = batch.pair_mut(i, j) else {
                    break;
                };
                if !coalesce::append(&mut run, first, next) {
                    break;
                }
                batch.set_verdict(j, Verdict::Consumed);
                j += 1;
            }
            let merged = coalesce::finish(&run, batch.frame_mut(i), mss);
            for _ in 0..merged {
                self.counters.event(Event::VxlanRxCoalesced);
            }
            i = j;
        }
    }

    /// A gateway answer to a packet out of a tunnel, sent back into the
    /// tunnel its destination lies behind.
    fn reply_into_tunnel(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Verdict {
        let dst = batch
            .frame_mut(pkt.index)
            .data()
            .get(pkt.l3()..)
            .and_then(|b| Ipv4Packet::new_checked(b).ok())
            .map(|ip| ip.dst_addr());
        match dst.and_then(|dst| self.tunnel_route(dst)) {
            Some(tunnel) => {
                pkt.iface = L3If::Bridge;
                self.tunnel_output(batch, pkt, tunnel)
            }
            None => Verdict::Drop(DropReason::VxlanSplitHorizon),
        }
    }
}
