//! Gateway stage: what the switch answers itself.
//!
//! The pod gateway (and the uplink address) answer ARP requests for their
//! own address and ICMP echo requests to it, rewriting the request into the
//! reply in place. This module also builds ICMP errors (time exceeded,
//! unreachable) in place from the offending packet, under a per-worker
//! token bucket like Linux's `icmp_msgs_per_sec`/`icmp_msgs_burst`; a
//! packet the NAT stage translated is first put back as its sender sent it,
//! so the error quotes what the sender knows and goes to it.

use core::net::Ipv4Addr;

use super::Pipeline;
use crate::packet::Step;
use crate::packet::{Batch, DropReason, Event, Frame, L3If, Offload, Verdict};
use crate::wire::arp::{ArpPacket, ArpRepr, OP_REPLY, OP_REQUEST};
use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::wire::{EtherType, EthernetFrame, IpProtocol, MacAddr};

/// Largest ICMP error datagram (RFC 1812 §4.3.2.3: at most 576 bytes).
const ICMP_ERROR_MAX_LEN: usize = 576;
/// TTL of packets the switch originates (Linux default).
const DEFAULT_TTL: u8 = 64;
const NS: u64 = 1_000_000_000;

/// A token bucket in nanosecond-scaled tokens.
#[derive(Debug, Clone, Copy)]
pub(super) struct TokenBucket {
    rate_per_sec: u64,
    capacity: u64,
    tokens: u64,
    last: u64,
}

impl TokenBucket {
    pub(super) fn new(rate_per_sec: u32, burst: u32) -> TokenBucket {
        let capacity = u64::from(burst.max(1)).saturating_mul(NS);
        TokenBucket {
            rate_per_sec: u64::from(rate_per_sec),
            capacity,
            tokens: capacity,
            last: 0,
        }
    }

    /// Takes one token if there is one.
    pub(super) fn take(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(self.rate_per_sec))
            .min(self.capacity);
        if self.tokens >= NS {
            self.tokens -= NS;
            true
        } else {
            false
        }
    }
}

impl Pipeline {
    /// Handles an ARP packet seen by `iface`. Learns the sender when the
    /// request or reply concerns us (or refreshes a known neighbour);
    /// answers requests for our address. `None`: not for us (the bridge
    /// floods it on).
    pub(super) fn arp_input(&mut self, batch: &mut Batch, i: usize, iface: L3If, now: u64) -> Step {
        let Some(&l3) = self.snapshot.l3_interface(iface) else {
            return Step::Continue(());
        };
        let frame = batch.frame_mut(i);
        let in_port = frame.in_port;
        let Some(payload) = frame.data_mut().get_mut(ETH_LEN..) else {
            return Step::Break(Verdict::Drop(DropReason::ArpMalformed));
        };
        let Ok(mut arp) = ArpPacket::new_checked(payload) else {
            return Step::Break(Verdict::Drop(DropReason::ArpMalformed));
        };
        let repr = ArpRepr::parse(&arp);
        let for_us = repr.target_ip == l3.address.addr;
        let sender = repr.sender_ip;
        let sender_ok = repr.sender_hw_addr.is_unicast()
            && repr.sender_hw_addr != l3.mac
            && l3.address.contains(sender)
            && sender != l3.address.addr
            && (sender != l3.address.network() || self.is_host_address(iface, sender))
            && sender != l3.address.broadcast();
        if sender_ok
            && (for_us || self.neighbours.contains(iface, sender))
            && self.neighbours.learn(
                &self.shared.neighbours,
                iface,
                sender,
                repr.sender_hw_addr,
                now,
            )
        {
            self.counters.event(Event::NeighbourLearned);
        }
        if !for_us {
            return Step::Continue(());
        }
        Step::Break(match repr.operation {
            // The node's stack answers for the address it keeps.
            OP_REQUEST if iface == L3If::Uplink && self.snapshot.uplink_shared => {
                Verdict::Drop(DropReason::HostOwned)
            }
            OP_REQUEST if sender_ok => {
                arp.set_operation(OP_REPLY);
                arp.set_sender_hw_addr(l3.mac);
                arp.set_sender_ip(l3.address.addr);
                arp.set_target_hw_addr(repr.sender_hw_addr);
                arp.set_target_ip(sender);
                let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
                eth.set_dst_addr(repr.sender_hw_addr);
                eth.set_src_addr(l3.mac);
                frame.offload = Offload::default();
                self.counters.event(Event::ArpReplySent);
                Verdict::Forward(in_port)
            }
            OP_REPLY if sender_ok => Verdict::Consumed,
            _ => Verdict::Drop(DropReason::ArpIgnored),
        })
    }

    /// A packet to one of our addresses: answer ICMP echo, refuse the rest.
    pub(super) fn local_input(
        &mut self,
        frame: &mut Frame,
        iface: L3If,
        from_tunnel: bool,
        now: u64,
    ) -> Verdict {
        let Some(l3) = self.snapshot.l3_interface(iface).copied() else {
            return Verdict::Drop(DropReason::LocalUnsupported);
        };
        let in_port = frame.in_port;
        let data = frame.data_mut();
        let src_mac = EthernetFrame::new_unchecked(&*data).src_addr();
        let Some(l3_bytes) = data.get_mut(ETH_LEN..) else {
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        let Ok(mut ip) = Ipv4Packet::new_checked(l3_bytes) else {
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        if ip.protocol() != IpProtocol::ICMP || ip.is_fragment() {
            return Verdict::Drop(DropReason::LocalUnsupported);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        {
            let Ok(mut icmp) = Icmpv4Packet::new_checked(ip.payload_mut()) else {
                return Verdict::Drop(DropReason::IcmpMalformed);
            };
            if !icmp.verify_checksum() {
                return Verdict::Drop(DropReason::IcmpMalformed);
            }
            if icmp.msg_type() != icmpv4::ECHO_REQUEST {
                return Verdict::Drop(DropReason::LocalUnsupported);
            }
            icmp.make_echo_reply();
        }
        // Swapping the addresses leaves the header sum unchanged; only the
        // TTL word needs an incremental update.
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl_with_checksum(DEFAULT_TTL);
        let mtu = self.snapshot.port(in_port).map_or(0, |p| p.mtu);
        if ip.total_len() > mtu && !from_tunnel {
            // The request came whole though larger than the MTU (an
            // AF_PACKET fanout reassembles fragments): answered in fragments.
            return self.answer_in_fragments(frame, iface, now);
        }
        let mut eth = EthernetFrame::new_unchecked(frame.data_mut());
        eth.set_dst_addr(src_mac);
        eth.set_src_addr(l3.mac);
        frame.offload = Offload::default();
        self.counters.event(Event::IcmpEchoReplySent);
        Verdict::Forward(in_port)
    }

    /// Turns `frame` (an IPv4 packet that arrived on `iface`) into an ICMP
    /// error to its sender, sent back the way it came. `dropped` is the
    /// reason the original counts as dropped.
    pub(super) fn icmp_error(
        &mut self,
        frame: &mut Frame,
        iface: L3If,
        kind: (u8, u8),
        dropped: DropReason,
        now: u64,
    ) -> Verdict {
        self.icmp_error_rest(frame, iface, kind, 0, dropped, now)
    }

    /// As [`Pipeline::icmp_error`], with the ICMP header's last four bytes
    /// set to `rest` (the next-hop MTU of a "fragmentation needed").
    pub(super) fn icmp_error_rest(
        &mut self,
        frame: &mut Frame,
        iface: L3If,
        kind: (u8, u8),
        rest: u32,
        dropped: DropReason,
        now: u64,
    ) -> Verdict {
        self.icmp_error_from(frame, iface, None, (kind, rest), dropped, now)
    }

    /// As [`Pipeline::icmp_error_rest`], sent from `src_ip` (e.g. the
    /// ClusterIP a refused connection was sent to; `None`: the address of
    /// `iface`); `kind` is (type, code) and the header's last four bytes.
    pub(super) fn icmp_error_from(
        &mut self,
        frame: &mut Frame,
        iface: L3If,
        src_ip: Option<Ipv4Addr>,
        kind: ((u8, u8), u32),
        dropped: DropReason,
        now: u64,
    ) -> Verdict {
        self.counters.count_drop(dropped);
        self.mirror_drop(frame, dropped);
        let Some(l3) = self.snapshot.l3_interface(iface).copied() else {
            return Verdict::Consumed;
        };
        if !icmp_error_allowed(frame) {
            return Verdict::Consumed;
        }
        if !self.icmp_bucket.take(now) {
            self.counters.count_drop(DropReason::IcmpRateLimited);
            return Verdict::Consumed;
        }
        // A translated packet is quoted, and answered, as its sender sent it.
        if let Some(ip) = frame.data_mut().get_mut(ETH_LEN..) {
            let no_note = core::cell::Cell::new(None);
            self.nat_stage(now, false, &no_note).untranslate(ip);
        }
        let src_ip = src_ip.unwrap_or(l3.address.addr);
        if build_icmp_error(frame, src_ip, l3.mac, kind.0, kind.1).is_none() {
            return Verdict::Consumed;
        }
        self.counters.event(Event::IcmpErrorSent);
        Verdict::Forward(frame.in_port)
    }
}

/// RFC 1122 §3.2.2: no ICMP error about an ICMP error, a later fragment,
/// or a packet from a broadcast, multicast or unspecified source.
fn icmp_error_allowed(frame: &Frame) -> bool {
    let Some(l3) = frame.data().get(ETH_LEN..) else {
        return false;
    };
    let Ok(ip) = Ipv4Packet::new_checked(l3) else {
        return false;
    };
    let src = ip.src_addr();
    if src.is_multicast() || src.is_broadcast() || src.is_unspecified() || ip.is_later_fragment() {
        return false;
    }
    if ip.protocol() == IpProtocol::ICMP {
        // Unknown or truncated ICMP counts as an error message: stay silent.
        return ip
            .payload()
            .first()
            .is_some_and(|&t| matches!(t, icmpv4::ECHO_REQUEST | icmpv4::ECHO_REPLY));
    }
    true
}

/// Rewrites `frame` in place into an ICMP error quoting the original
/// datagram (as much as fits in 576 bytes); `None` if the buffer is too small.
fn build_icmp_error(
    frame: &mut Frame,
    src_ip: Ipv4Addr,
    src_mac: MacAddr,
    (icmp_type, code): (u8, u8),
    rest: u32,
) -> Option<()> {
    let data = frame.data();
    let orig_mac = EthernetFrame::new_checked(data).ok()?.src_addr();
    let orig = Ipv4Packet::new_checked(data.get(ETH_LEN..)?).ok()?;
    let orig_src = orig.src_addr();
    let quote_len = usize::from(orig.total_len())
        .min(ICMP_ERROR_MAX_LEN - ipv4::HEADER_LEN - icmpv4::HEADER_LEN);
    let icmp_at = ETH_LEN + ipv4::HEADER_LEN;
    let quote_at = icmp_at + icmpv4::HEADER_LEN;
    let new_len = quote_at + quote_len;
    let buf = frame.with_tailroom_mut();
    if buf.len() < new_len {
        return None;
    }
    buf.copy_within(ETH_LEN..ETH_LEN + quote_len, quote_at);
    frame.set_len(new_len);
    frame.offload = Offload::default();
    let data = frame.data_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut *data);
    eth.set_dst_addr(orig_mac);
    eth.set_src_addr(src_mac);
    eth.set_ethertype(EtherType::IPV4);
    let repr = Ipv4Repr {
        src_addr: src_ip,
        dst_addr: orig_src,
        protocol: IpProtocol::ICMP,
        payload_len: u16::try_from(new_len - icmp_at).ok()?,
        ttl: DEFAULT_TTL,
    };
    repr.emit(data.get_mut(ETH_LEN..)?).ok()?;
    let mut icmp = Icmpv4Packet::new_checked(data.get_mut(icmp_at..)?).ok()?;
    icmp.set_msg_type(icmp_type);
    icmp.set_code(code);
    icmp.set_rest_of_header(rest);
    icmp.fill_checksum();
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_rate_and_burst() {
        let mut b = TokenBucket::new(1000, 5);
        let taken = (0..10).filter(|_| b.take(0)).count();
        assert_eq!(taken, 5);
        // 1000/s refills one token per millisecond.
        assert!(!b.take(500_000));
        assert!(b.take(1_000_000));
        assert!(!b.take(1_000_000));
        let later = (0..100).filter(|_| b.take(10 * NS)).count();
        assert_eq!(later, 5);
    }
}
