//! Echo requests to the switch's own addresses that arrive in fragments
//! (`ping -s 3000` to the gateway): answered from the slot they were
//! reassembled in, the answer sent in fragments that fit the MTU of the
//! port the request came by.
//!
//! The answer is as large as the request. Its fragments are generated
//! frames: as many as the batch has room for at the end of the batch that
//! completed the request, the rest at the end of the next batches. A request
//! that came whole though larger than the port's MTU (an AF_PACKET fanout
//! with `PACKET_FANOUT_FLAG_DEFRAG` reassembles fragments before the
//! pipeline sees them) is answered the same way.

use super::{DatagramKey, State};
use crate::io::fragment::Fragmenter;
use crate::packet::{Batch, DropReason, Event, Frame, L3If, Verdict};
use crate::pipeline::Pipeline;
use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::wire::{EtherType, EthernetFrame, IpProtocol};

/// TTL of the answer (Linux's default).
const REPLY_TTL: u8 = 64;

impl Pipeline {
    /// The echo reply `frame` (built in place, from one of our addresses,
    /// arrived on `iface`), larger than the MTU of the port it goes back
    /// by: sent in fragments as the answer to a fragmented request is.
    pub(in crate::pipeline) fn answer_in_fragments(
        &mut self,
        frame: &Frame,
        iface: L3If,
        now: u64,
    ) -> Verdict {
        let Some(ip) = frame
            .data()
            .get(ETH_LEN..)
            .and_then(|b| Ipv4Packet::new_checked(b).ok())
        else {
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        let key = DatagramKey {
            src: ip.dst_addr(),
            dst: ip.src_addr(),
            protocol: IpProtocol::ICMP,
            ident: ip.ident(),
        };
        let message = ip.payload();
        let Some(i) = self.claim_slot(key, frame, ETH_LEN, iface, now) else {
            return Verdict::Drop(DropReason::FragmentMemory);
        };
        let Some(d) = self.reassembly.slots.get_mut(i) else {
            return Verdict::Drop(DropReason::FragmentMemory);
        };
        let Some(to) = d.data.get_mut(..message.len()) else {
            self.reassembly.free(i);
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        to.copy_from_slice(message);
        d.end = Some(message.len());
        d.state = State::Replying { sent: 0 };
        self.counters.event(Event::IcmpEchoReplySent);
        Verdict::Consumed
    }

    /// A whole datagram in slot `i`: an echo request becomes its answer
    /// (sent by [`Pipeline::reassembly_step`]); anything else is dropped.
    pub(super) fn answer_datagram(&mut self, i: usize) -> Verdict {
        let Some(d) = self.reassembly.slots.get_mut(i) else {
            return Verdict::Consumed;
        };
        let end = d.end.unwrap_or(0);
        let reason = match Icmpv4Packet::new_checked(d.data.get_mut(..end).unwrap_or_default()) {
            Ok(mut icmp) if icmp.verify_checksum() => {
                if icmp.msg_type() == icmpv4::ECHO_REQUEST {
                    icmp.make_echo_reply();
                    d.state = State::Replying { sent: 0 };
                    d.fragments = 0;
                    self.counters.event(Event::IcmpEchoReplySent);
                    return Verdict::Consumed;
                }
                DropReason::LocalUnsupported
            }
            _ => DropReason::IcmpMalformed,
        };
        self.give_up(i, reason, 1)
    }

    /// Sends the fragments of slot `i`'s answer from byte `sent` on, as many
    /// as the batch has room for.
    pub(super) fn send_answer(&mut self, batch: &mut Batch, i: usize, sent: usize) {
        let Some(d) = self.reassembly.slots.get(i) else {
            return;
        };
        let (key, to, end) = (d.key, d.reply_to, d.end.unwrap_or(0));
        let mtu = self
            .snapshot
            .port(to.port)
            .map_or(0, |p| usize::from(p.mtu));
        let Some(l3) = self.snapshot.l3_interface(to.iface).copied() else {
            self.reassembly.free(i);
            return;
        };
        let mut l2 = [0u8; ETH_LEN];
        let mut eth = EthernetFrame::new_unchecked(&mut l2[..]);
        eth.set_dst_addr(to.mac);
        eth.set_src_addr(l3.mac);
        eth.set_ethertype(EtherType::IPV4);
        let mut header = [0u8; ipv4::HEADER_LEN];
        let repr = Ipv4Repr {
            src_addr: key.dst,
            dst_addr: key.src,
            protocol: IpProtocol::ICMP,
            payload_len: 0,
            ttl: REPLY_TTL,
        };
        if repr.emit(&mut header).is_err() {
            return;
        }
        Ipv4Packet::new_unchecked(&mut header[..]).set_ident(key.ident);
        let message = d.data.get(..end).unwrap_or_default();
        // Fragments within the MTU and the batch's buffers.
        let room = batch.frame_capacity().saturating_sub(ETH_LEN);
        let cut = Fragmenter::from_parts(&l2, &header, message, mtu.min(room));
        let Ok(mut fragmenter) = cut else {
            self.reassembly.free(i);
            return;
        };
        fragmenter.resume_at(sent);
        let mut failed = false;
        while fragmenter.remaining() > 0 {
            let Some(j) = batch.alloc_generated() else {
                break;
            };
            if !matches!(fragmenter.next_into(batch.frame_mut(j)), Ok(true)) {
                batch.release_last_generated();
                self.counters.count_drop(DropReason::BatchFull);
                failed = true;
                break;
            }
            batch.set_verdict(j, Verdict::Forward(to.port));
        }
        let (left, sent) = (fragmenter.remaining(), fragmenter.position());
        if left == 0 || failed {
            self.reassembly.free(i);
        } else if let Some(d) = self.reassembly.slots.get_mut(i) {
            d.state = State::Replying { sent };
        }
    }
}
