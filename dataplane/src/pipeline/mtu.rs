//! Egress MTU: a packet the sender asked not to fragment (DF) that is
//! longer than the MTU of the port it would leave by is refused with ICMP
//! "fragmentation needed" carrying that MTU, as Linux's `ip_forward` does
//! (`ip_exceeds_mtu`), so the sender's path MTU discovery learns it.
//!
//! What counts is the longest packet the frame becomes on the wire: a GSO
//! super-frame (a TAP's TSO frame, the overlay's coalesced frames) is
//! legitimately longer than the MTU as long as its segments fit. The check
//! runs where the output port is known and the sender's packet still is
//! as it came (before the TTL decrement and the MAC rewrite; after the NAT
//! stage, whose translation the error takes back): the router's output
//! (`l3.rs`, also for packets released from the hold queue), the flow
//! cache (a cached flow's packet that is too long takes the full path),
//! and the L2 switch between pods, whose MTUs may differ (the error then
//! comes from the gateway). A packet without DF is not refused: the worker
//! sends it in fragments (`io::fragment`); anything still too long at
//! transmit is dropped there (`mtu_exceeded`), never sent oversized.

use super::Pipeline;
use crate::config::Snapshot;
use crate::packet::Step;
use crate::packet::{DropReason, Frame, GsoKind, L3If, PortId, Verdict};
use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::{Ipv4Packet, MacAddr, icmpv4};

/// The longest frame every port of `snapshot` takes: the Ethernet header
/// plus the smallest MTU. Up to it, the checks here are one compare
/// ([`Pipeline::may_exceed_mtu`]), and the rest stays out of the hot path.
pub(super) fn fits_everywhere(snapshot: &Snapshot) -> usize {
    let smallest = snapshot.ports.iter().map(|p| p.mtu).min().unwrap_or(576);
    ETH_LEN + usize::from(smallest)
}

impl Pipeline {
    /// Whether `frame` may be longer than some port's MTU: the guard in
    /// front of the checks below.
    #[inline(always)]
    pub(super) fn may_exceed_mtu(&self, frame: &Frame) -> bool {
        frame.len() > self.fits_everywhere
    }

    /// The MTU of `port` when `frame` must be refused: an IPv4 packet with
    /// DF whose longest wire packet is longer than the port's MTU.
    #[inline(never)]
    pub(super) fn refused_mtu(&self, frame: &Frame, port: PortId) -> Option<u16> {
        let mtu = self.snapshot.port(port)?.mtu;
        if frame.len() <= ETH_LEN + usize::from(mtu) {
            return None;
        }
        too_long_with_df(frame, mtu).then_some(mtu)
    }

    /// As [`Pipeline::refused_mtu`] for a routed frame about to leave by
    /// `iface` toward the next hop `mac` (no port yet: flooded, not refused).
    #[inline(never)]
    pub(super) fn refused_mtu_toward(
        &self,
        frame: &Frame,
        iface: L3If,
        mac: MacAddr,
    ) -> Option<u16> {
        let port = match iface {
            L3If::Bridge => self.macs.lookup(mac)?,
            L3If::Uplink => self.snapshot.uplink?.0,
        };
        self.refused_mtu(frame, port)
    }

    /// A frame switched between pods (to `dst`), before the NAT stage may
    /// rewrite a reply in it: refused when too long for the destination's
    /// port (`Break`), the error coming from the gateway.
    #[inline(never)]
    pub(super) fn bridged_too_long(&mut self, frame: &mut Frame, dst: MacAddr, now: u64) -> Step {
        let port = self.macs.lookup(dst).filter(|&p| p != frame.in_port);
        match port.and_then(|port| self.refused_mtu(frame, port)) {
            Some(mtu) => Step::Break(self.refuse_too_long(frame, L3If::Bridge, mtu, now)),
            None => Step::Continue(()),
        }
    }

    /// Turns `frame` (arrived on `iface`) into ICMP fragmentation needed
    /// with next-hop MTU `mtu`, back to its sender; the packet counts as
    /// dropped (`frag_needed`).
    #[cold]
    pub(super) fn refuse_too_long(
        &mut self,
        frame: &mut Frame,
        iface: L3If,
        mtu: u16,
        now: u64,
    ) -> Verdict {
        let kind = (icmpv4::DST_UNREACHABLE, icmpv4::CODE_FRAG_NEEDED);
        let rest = u32::from(mtu);
        self.icmp_error_rest(frame, iface, kind, rest, DropReason::FragNeeded, now)
    }

    /// The L3 interface a frame released from the hold queue arrived on
    /// (by its input port).
    pub(super) fn arrival_iface(&self, in_port: PortId) -> L3If {
        match self.snapshot.uplink {
            Some((uplink, _)) if uplink == in_port => L3If::Uplink,
            _ => L3If::Bridge,
        }
    }
}

/// Whether `frame`, longer than `ETH_LEN + mtu`, is an untagged IPv4
/// packet with DF whose longest wire packet exceeds `mtu`.
#[cold]
fn too_long_with_df(frame: &Frame, mtu: u16) -> bool {
    let data = frame.data();
    let Some(Ok(ip)) = crate::wire::ethernet::ipv4_payload(data).map(Ipv4Packet::new_checked)
    else {
        return false;
    };
    if !ip.dont_frag() {
        return false;
    }
    let longest = if frame.offload.gso == GsoKind::None {
        usize::from(ip.total_len())
    } else {
        // A super-frame that cannot be cut is the output's to refuse.
        let Some(len) = crate::io::gso::longest_wire_frame(data, &frame.offload) else {
            return false;
        };
        len.saturating_sub(ETH_LEN)
    };
    longest > usize::from(mtu)
}
