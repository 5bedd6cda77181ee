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
use super::flow_cache::FlowCacheResult;
use super::host::HostRoute;
use super::nat_hook::AfterNat;
use super::neighbour::Lookup;
use super::reassembly::Reassembly;
use crate::packet::{Batch, DropReason, Event, Frame, L3If, Verdict};
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
    /// An IPv4 packet sent to the router's MAC on `iface`.
    pub(super) fn ipv4_input(
        &mut self,
        batch: &mut Batch,
        i: usize,
        l3_offset: usize,
        iface: L3If,
        now: u64,
    ) -> Verdict {
        let frame = batch.frame_mut(i);
        let (src, dst, ttl) = {
            let Some(l3) = frame.data().get(l3_offset..) else {
                return Verdict::Drop(DropReason::Ipv4Malformed);
            };
            let Ok(ip) = Ipv4Packet::new_checked(l3) else {
                return Verdict::Drop(DropReason::Ipv4Malformed);
            };
            if !ip.verify_checksum() {
                return Verdict::Drop(DropReason::Ipv4BadChecksum);
            }
            if ip.is_fragment() {
                return self.reassemble_then_route(batch, i, l3_offset, iface, now);
            }
            (ip.src_addr(), ip.dst_addr(), ip.ttl())
        };
        if martian(src) || martian(dst) {
            return Verdict::Drop(DropReason::Ipv4BadAddress);
        }
        let original = (src, dst);
        let flow_key = if self.flow_cache_usable() {
            match self.flow_cache_input(batch, i, l3_offset, ttl, now) {
                FlowCacheResult::Hit(verdict) => return verdict,
                FlowCacheResult::Miss(key) => key,
            }
        } else {
            None
        };
        if flow_key.is_some() {
            self.nat_note.set(None);
        }
        let dst = match self.nat_routed(batch, i, l3_offset, iface, now) {
            AfterNat::Route(dst) => dst,
            AfterNat::Verdict(v) => return v,
        };
        let to_host = match self.host_route(dst, iface) {
            HostRoute::Ours => None,
            HostRoute::ToHost(next_hop) => Some(next_hop),
            HostRoute::HostOwned => return Verdict::Drop(DropReason::HostOwned),
        };
        let frame = batch.frame_mut(i);
        if to_host.is_none() && self.snapshot.is_local_ip(dst) {
            return self.local_input(frame, iface, now);
        }
        // VXLAN overlay: a remote pod CIDR at least as specific as any route.
        if let Some(tunnel) = self.tunnel_route(dst) {
            return self.tunnel_output(batch, i, l3_offset, tunnel, iface, now);
        }
        let frame = batch.frame_mut(i);
        let Some(next_hop) = to_host.or_else(|| self.snapshot.routes.next_hop(dst)) else {
            let kind = (icmpv4::DST_UNREACHABLE, icmpv4::CODE_NET_UNREACHABLE);
            return self.icmp_error(frame, iface, kind, DropReason::NoRoute, now);
        };
        if self.rx_tunnel.is_some() && next_hop.iface != L3If::Bridge {
            // Not back out of the uplink, unless it is the reply of a
            // connection this node translated (a NodePort to an endpoint on
            // another node): then it goes back to the client.
            if !translated(frame, l3_offset, original) {
                return Verdict::Drop(DropReason::VxlanSplitHorizon);
            }
            self.tunnel_exit = true;
        }
        if self
            .snapshot
            .l3_interface(next_hop.iface)
            .is_some_and(|l3| l3.address.broadcast() == dst)
        {
            return Verdict::Drop(DropReason::Ipv4BadAddress);
        }
        if ttl <= 1 {
            let kind = (icmpv4::TIME_EXCEEDED, icmpv4::CODE_TTL_EXCEEDED);
            return self.icmp_error(frame, iface, kind, DropReason::TtlExpired, now);
        }
        let tuning = self.snapshot.tuning;
        match self.neighbours.lookup(
            next_hop.iface,
            next_hop.addr,
            now,
            tuning.neighbour_reachable_ns,
        ) {
            Lookup::Reachable(mac) => {
                let frame = batch.frame_mut(i);
                if self.may_exceed_mtu(frame)
                    && let Some(mtu) = self.refused_mtu_toward(frame, next_hop.iface, mac)
                {
                    return self.refuse_too_long(frame, iface, mtu, now);
                }
                let verdict = self.forward_resolved(frame, next_hop.iface, mac);
                if let Some(key) = flow_key {
                    let next_hop = (next_hop.iface, (next_hop.addr, mac));
                    self.flow_cache_remember(key, next_hop, verdict, now);
                }
                verdict
            }
            Lookup::Stale(mac) => {
                if self.neighbours.probe_due(
                    next_hop.iface,
                    next_hop.addr,
                    now,
                    tuning.probe_interval_ns,
                ) {
                    self.send_arp_request(batch, next_hop.iface, next_hop.addr);
                }
                let frame = batch.frame_mut(i);
                if self.may_exceed_mtu(frame)
                    && let Some(mtu) = self.refused_mtu_toward(frame, next_hop.iface, mac)
                {
                    return self.refuse_too_long(frame, iface, mtu, now);
                }
                self.forward_resolved(frame, next_hop.iface, mac)
            }
            Lookup::Unknown => self.hold(batch, i, next_hop.iface, next_hop.addr, now),
        }
    }

    /// A fragment sent to the router: the stages after this one see whole
    /// datagrams, as Linux's do; the datagram goes on once whole.
    #[cold]
    #[inline(never)]
    fn reassemble_then_route(
        &mut self,
        batch: &mut Batch,
        i: usize,
        l3_offset: usize,
        iface: L3If,
        now: u64,
    ) -> Verdict {
        match self.reassemble(batch, i, l3_offset, iface, now) {
            Reassembly::Whole => self.ipv4_input(batch, i, l3_offset, iface, now),
            Reassembly::Done(verdict) => verdict,
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
