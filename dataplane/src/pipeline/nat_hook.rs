//! Where the NAT stage ([`crate::nat`]) plugs into the pipeline: routed
//! IPv4, IPv4 switched between pods, and per-batch conntrack expiry.

use super::{Batch, DropReason, Event, L3If, Pipeline, Verdict};
use crate::nat::{NatAction, NatStage};
use crate::wire::icmpv4;
use crate::wire::{EthernetFrame, Ipv4Packet};

/// Conntrack slots expiry visits per batch with traffic, and when idle:
/// at 1 Mpps (31k batches/s) a 1M table is swept in about 4 s.
const EXPIRE_BUDGET: usize = 8;
const EXPIRE_BUDGET_IDLE: usize = 4096;

/// What routing does after the NAT stage.
pub(super) enum AfterNat {
    /// Route to this (possibly translated) destination.
    Route(core::net::Ipv4Addr),
    /// Done.
    Verdict(Verdict),
}

impl Pipeline {
    fn nat_stage(&self, now: u64) -> NatStage<'_> {
        NatStage {
            snapshot: &self.snapshot,
            conntrack: &self.shared.conntrack,
            affinity: &self.shared.affinity,
            counters: &self.counters,
            now,
        }
    }

    /// The NAT stage for a routed IPv4 packet (header already checked).
    pub(super) fn nat_routed(
        &mut self,
        batch: &mut Batch,
        i: usize,
        l3: usize,
        iface: L3If,
        now: u64,
    ) -> AfterNat {
        let frame = batch.frame_mut(i);
        let action = self.nat_stage(now).routed(frame, l3, iface);
        match action {
            NatAction::Continue => {
                let dst = frame
                    .data()
                    .get(l3..)
                    .map(|ip| Ipv4Packet::new_unchecked(ip).dst_addr())
                    .unwrap_or(core::net::Ipv4Addr::UNSPECIFIED);
                AfterNat::Route(dst)
            }
            NatAction::Verdict(v) => AfterNat::Verdict(v),
            NatAction::EchoReply => AfterNat::Verdict(self.local_input(frame, iface)),
            NatAction::RejectIcmp(from) => {
                let kind = (icmpv4::DST_UNREACHABLE, icmpv4::CODE_PORT_UNREACHABLE);
                AfterNat::Verdict(self.icmp_error_from(
                    frame,
                    iface,
                    from,
                    kind,
                    DropReason::ServiceNoEndpoints,
                    now,
                ))
            }
        }
    }

    /// The NAT stage for an IPv4 frame switched between bridge ports: a
    /// translated reply leaves with the gateway's MAC and TTL − 1, as if
    /// routed. `Some`: drop it.
    pub(super) fn nat_bridged(
        &mut self,
        batch: &mut Batch,
        i: usize,
        l3: usize,
        now: u64,
    ) -> Option<Verdict> {
        if self.shared.conntrack.is_empty() {
            return None;
        }
        let frame = batch.frame_mut(i);
        match self.nat_stage(now).bridged(frame, l3) {
            Ok(false) => None,
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
                None
            }
            Err(reason) => Some(Verdict::Drop(reason)),
        }
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
