//! L3 stage: IPv4 forwarding.
//!
//! Reassembles fragments first (`reassembly.rs`). Checks the header (RFC
//! 1812 §5.2.2: length, version, checksum, no martian addresses), looks the destination up in the snapshot's LPM
//! table, sends ICMP time exceeded when the TTL runs out and ICMP net
//! unreachable when no route matches, and resolves the next hop through the
//! neighbour table (holding the packet while ARP runs). The forwarded frame
//! gets the outgoing interface's MAC as source, the next hop's MAC as
//! destination, and TTL − 1 with an incremental checksum update.

use core::net::Ipv4Addr;

use super::Pipeline;
use super::context::Packet;
use super::host::HostRoute;
use super::neighbour::Lookup;
use crate::packet::{Batch, DropReason, Event, Frame, L3If, Verdict};
use crate::packet::{Step, verdict};
use crate::routes::NextHop;
use crate::wire::icmpv4;
use crate::wire::{EthernetFrame, Ipv4Packet, MacAddr};

/// Multicast (224/4), limited broadcast, unspecified or loopback (127/8):
/// never a routed packet's address. Tested on the bits, once per address
/// of every routed packet.
fn martian(ip: Ipv4Addr) -> bool {
    let bits = ip.to_bits();
    let first = bits >> 24;
    // Without short-circuits: four compares, no branches.
    (first & 0xf0 == 0xe0) | (first == 127) | (bits.wrapping_add(1) <= 1)
}

impl Pipeline {
    /// An IPv4 packet sent to the router's MAC on `pkt.iface`: the router's
    /// stages in order.
    pub(super) fn ipv4_input(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Verdict {
        verdict(self.route_ipv4(batch, pkt))
    }

    #[inline(always)]
    fn route_ipv4(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Step<Verdict> {
        self.ipv4_header(batch, pkt)?;
        self.flow_cache_stage(batch, pkt)?;
        let dst = self.nat_routed(batch, pkt)?;
        let to_host = self.local_stage(batch, pkt, dst)?;
        if let Some(tunnel) = self.tunnel_route(dst) {
            // VXLAN overlay: a remote pod CIDR at least as specific as any route.
            return Step::Break(self.tunnel_output(batch, pkt, tunnel));
        }
        let next_hop = self.next_hop(batch, pkt, dst, to_host)?;
        Step::Break(self.resolve_next_hop(batch, pkt, next_hop))
    }

    /// Checks the header (RFC 1812 §5.2.2) and notes its addresses and TTL;
    /// a fragment goes to reassembly and the router sees the whole datagram.
    #[inline(always)]
    fn ipv4_header(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Step {
        let frame = batch.frame_mut(pkt.index);
        let Some(l3) = frame.data().get(pkt.l3()..) else {
            return Step::Break(Verdict::Drop(DropReason::Ipv4Malformed));
        };
        let Ok(ip) = Ipv4Packet::new_checked(l3) else {
            return Step::Break(Verdict::Drop(DropReason::Ipv4Malformed));
        };
        if !ip.verify_checksum() {
            return Step::Break(Verdict::Drop(DropReason::Ipv4BadChecksum));
        }
        if ip.is_fragment() {
            return Step::Break(self.reassemble_then_route(batch, pkt));
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if martian(src) || martian(dst) {
            return Step::Break(Verdict::Drop(DropReason::Ipv4BadAddress));
        }
        pkt.original = (src, dst);
        pkt.ttl = ip.ttl();
        Step::Continue(())
    }

    /// Packets of a flow the worker has routed before: forwarded from the
    /// flow cache. The others get the key to remember their flow by.
    #[inline(always)]
    fn flow_cache_stage(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Step {
        if !pkt.decapsulated() && self.flow_cache_usable() {
            let at = (pkt.index, pkt.l3());
            pkt.flow_key = self.flow_cache_input(batch, at, pkt.ttl, pkt.now)?;
        }
        Step::Continue(())
    }

    /// Packets to the node itself: answered here, or sent to the host
    /// port; `Continue` with the host port's next hop when it takes them.
    #[inline(always)]
    fn local_stage(
        &mut self,
        batch: &mut Batch,
        pkt: &Packet,
        dst: Ipv4Addr,
    ) -> Step<Option<NextHop>> {
        let to_host = match self.host_route(dst, pkt.iface) {
            HostRoute::Ours => None,
            HostRoute::ToHost(next_hop) => Some(next_hop),
            HostRoute::HostOwned => return Step::Break(Verdict::Drop(DropReason::HostOwned)),
        };
        if to_host.is_none() && self.snapshot.is_local_ip(dst) {
            let frame = batch.frame_mut(pkt.index);
            return Step::Break(self.local_input(frame, pkt.iface, pkt.decapsulated(), pkt.now));
        }
        Step::Continue(to_host)
    }

    /// The route to `dst` (or the host port's `to_host`), with the checks
    /// that need it: no route (ICMP net unreachable), split horizon out of
    /// a tunnel, the outgoing subnet's broadcast, TTL (ICMP time exceeded).
    #[inline(always)]
    fn next_hop(
        &mut self,
        batch: &mut Batch,
        pkt: &mut Packet,
        dst: Ipv4Addr,
        to_host: Option<NextHop>,
    ) -> Step<NextHop> {
        let (iface, now) = (pkt.iface, pkt.now);
        let frame = batch.frame_mut(pkt.index);
        let Some(next_hop) = to_host.or_else(|| self.snapshot.routes.next_hop(dst)) else {
            let kind = (icmpv4::DST_UNREACHABLE, icmpv4::CODE_NET_UNREACHABLE);
            return Step::Break(self.icmp_error(frame, iface, kind, DropReason::NoRoute, now));
        };
        if pkt.decapsulated() && next_hop.iface != L3If::Bridge {
            // Not back out of the uplink, unless it is the reply of a
            // connection this node translated (a NodePort to an endpoint on
            // another node): then it goes back to the client.
            if !translated(frame, pkt.l3(), pkt.original) {
                return Step::Break(Verdict::Drop(DropReason::VxlanSplitHorizon));
            }
            pkt.tunnel_exit = true;
        }
        if self
            .snapshot
            .l3_interface(next_hop.iface)
            .is_some_and(|l3| l3.address.broadcast() == dst)
        {
            return Step::Break(Verdict::Drop(DropReason::Ipv4BadAddress));
        }
        if pkt.ttl <= 1 {
            let kind = (icmpv4::TIME_EXCEEDED, icmpv4::CODE_TTL_EXCEEDED);
            return Step::Break(self.icmp_error(frame, iface, kind, DropReason::TtlExpired, now));
        }
        Step::Continue(next_hop)
    }

    /// Sends the packet to `next_hop` once its MAC is known (probing a
    /// stale one, holding the packet while an unknown one resolves);
    /// remembers the flow in the flow cache.
    #[inline(always)]
    fn resolve_next_hop(&mut self, batch: &mut Batch, pkt: &Packet, next_hop: NextHop) -> Verdict {
        let (i, now) = (pkt.index, pkt.now);
        let tuning = self.snapshot.tuning;
        let (iface, addr) = (next_hop.iface, next_hop.addr);
        match self
            .neighbours
            .lookup(iface, addr, now, tuning.neighbour_reachable_ns)
        {
            Lookup::Reachable(mac) => {
                let verdict = match self.forward_checked(batch.frame_mut(i), pkt, iface, mac) {
                    Step::Continue(forwarded) => forwarded,
                    Step::Break(refused) => return refused,
                };
                if let Some(key) = pkt.flow_key {
                    let tracked = pkt.tracked.take();
                    self.flow_cache_remember(key, tracked, (iface, (addr, mac)), verdict, now);
                }
                verdict
            }
            Lookup::Stale(mac) => {
                if self
                    .neighbours
                    .probe_due(iface, addr, now, tuning.probe_interval_ns)
                {
                    self.send_arp_request(batch, iface, addr);
                }
                verdict(self.forward_checked(batch.frame_mut(i), pkt, iface, mac))
            }
            Lookup::Unknown => self.hold(batch, i, iface, addr, now),
        }
    }

    /// [`forward_resolved`](Self::forward_resolved) after the egress MTU
    /// check (`Break`: refused, the ICMP error in its place).
    #[inline(always)]
    fn forward_checked(
        &mut self,
        frame: &mut Frame,
        pkt: &Packet,
        iface: L3If,
        mac: MacAddr,
    ) -> Step<Verdict> {
        if self.may_exceed_mtu(frame)
            && let Some(mtu) = self.refused_mtu_toward(frame, iface, mac)
        {
            return Step::Break(self.refuse_too_long(frame, pkt.iface, mtu, pkt.now));
        }
        Step::Continue(self.forward_resolved(frame, iface, mac))
    }

    /// A fragment sent to the router: the stages after this one see whole
    /// datagrams, as Linux's do; the datagram goes on once whole.
    #[cold]
    #[inline(never)]
    fn reassemble_then_route(&mut self, batch: &mut Batch, pkt: &mut Packet) -> Verdict {
        let from_tunnel = pkt.decapsulated();
        match self.reassemble(batch, pkt.index, pkt.l3(), pkt.iface, from_tunnel, pkt.now) {
            Step::Continue(()) => self.ipv4_input(batch, pkt),
            Step::Break(verdict) => verdict,
        }
    }

    /// Rewrites a routed frame for next hop `mac` on `iface` and picks its output.
    pub(super) fn forward_resolved(&self, frame: &mut Frame, iface: L3If, mac: MacAddr) -> Verdict {
        let Some(l3) = self.snapshot.l3_interface(iface) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let data = frame.data_mut();
        let Ok(mut eth) = EthernetFrame::new_checked(&mut *data) else {
            return Verdict::Drop(DropReason::EthernetMalformed);
        };
        eth.set_dst_addr(mac);
        eth.set_src_addr(l3.mac);
        let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else {
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        ip.decrement_ttl();
        self.counters.event(Event::Routed);
        self.output_verdict(iface, mac)
    }
}

/// Whether the NAT stage rewrote the packet's addresses (`original`: its
/// source and destination before).
fn translated(frame: &Frame, l3_offset: usize, original: (Ipv4Addr, Ipv4Addr)) -> bool {
    frame
        .data()
        .get(l3_offset..)
        .and_then(|b| Ipv4Packet::new_checked(b).ok())
        .is_some_and(|ip| (ip.src_addr(), ip.dst_addr()) != original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn martian_is_the_four_address_classes() {
        let reference = |ip: Ipv4Addr| {
            ip.is_multicast() || ip.is_broadcast() || ip.is_unspecified() || ip.is_loopback()
        };
        let edges = [0u32, 1, 0x00ff_ffff, 0x0100_0000, 0x7eff_ffff, 0x7f00_0000];
        let more = [
            0x7fff_ffff,
            0x8000_0000,
            0xdfff_ffff,
            0xe000_0000,
            0xefff_ffff,
        ];
        let last = [
            0xf000_0000,
            0xffff_fffe,
            0xffff_ffff,
            0x0af4_0102,
            0x0a60_0001,
        ];
        let spread = (0..=u32::MAX).step_by(65_521);
        for bits in edges.into_iter().chain(more).chain(last).chain(spread) {
            let ip = Ipv4Addr::from_bits(bits);
            assert_eq!(martian(ip), reference(ip), "{ip}");
        }
    }
}
