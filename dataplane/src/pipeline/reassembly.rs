//! Echo requests to the switch's own addresses that arrive in fragments
//! (`ping -s 3000` to the gateway): reassembled, answered, and the answer
//! sent in fragments that fit the MTU of the port the request came by.
//!
//! Linux reassembles every datagram to a local address; the switch answers
//! nothing but echo, so only ICMP fragments to it are kept. Memory is
//! bounded: [`SLOTS`] datagrams of up to 64 KiB per worker, allocated with
//! the pipeline (the kernel maps the pages only once a large ping touches
//! them). A datagram whose fragments do not all come within 30 s (Linux's
//! `ipfrag_time`) is dropped, and when every slot is busy the oldest
//! datagram gives way; either way its fragments count as
//! `fragment_timeout`. A fragment overlapping one already received, or one
//! that does not fit its datagram, drops the datagram (`fragment_overlap`),
//! as Linux does since 4.19; an exact repeat drops only itself.
//!
//! The answer is as large as the request. Its fragments are generated
//! frames: as many as the batch has room for at the end of the batch that
//! completed the request, the rest at the end of the next batches. A request
//! that came whole though larger than the port's MTU (an AF_PACKET fanout
//! with `PACKET_FANOUT_FLAG_DEFRAG` reassembles fragments before the
//! pipeline sees them) is answered the same way.

use core::net::Ipv4Addr;

use super::{Batch, DropReason, Event, Frame, L3If, Pipeline, PortId, Verdict};
use crate::io::fragment::Fragmenter;
use crate::wire::ethernet::HEADER_LEN as ETH_LEN;
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use crate::wire::{EtherType, EthernetFrame, IpProtocol, MacAddr};

/// Datagrams reassembled at once, per worker.
const SLOTS: usize = 4;
/// The largest IPv4 payload (a 65,535-byte datagram with a 20-byte header).
const MAX_PAYLOAD: usize = 65_535 - ipv4::HEADER_LEN;
/// Payload bytes per bit of a datagram's map of what arrived.
const BLOCK: usize = 8;
const MAP_WORDS: usize = MAX_PAYLOAD.div_ceil(BLOCK).div_ceil(64);
/// How long the fragments of a datagram (or its answer) may take.
const TIMEOUT_NS: u64 = 30_000_000_000;
/// TTL of the answer (Linux's default).
const REPLY_TTL: u8 = 64;

/// Identifies a datagram (RFC 791: source, destination, protocol and ID;
/// the protocol is always ICMP here).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct DatagramKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
}

/// Where the answer goes: back to the sender, by the port it came in on.
#[derive(Clone, Copy, Debug)]
struct ReplyTo {
    port: PortId,
    iface: L3If,
    mac: MacAddr,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Free,
    /// Fragments are arriving.
    Collecting,
    /// The answer is in `data`; `sent` bytes of it have left.
    Replying {
        sent: usize,
    },
}

/// One datagram being reassembled, or answered.
struct Datagram {
    state: State,
    key: DatagramKey,
    reply_to: ReplyTo,
    /// The IP payload, at its offsets.
    data: Box<[u8]>,
    /// A bit per [`BLOCK`] bytes of `data` received.
    map: Box<[u64]>,
    /// The payload length, once the last fragment came.
    end: Option<usize>,
    /// Payload bytes received.
    received: usize,
    /// Where the furthest fragment received stops.
    max_stop: usize,
    /// Fragments held.
    fragments: u32,
    /// When its first fragment came.
    since: u64,
}

impl Datagram {
    fn new() -> Datagram {
        Datagram {
            state: State::Free,
            key: DatagramKey {
                src: Ipv4Addr::UNSPECIFIED,
                dst: Ipv4Addr::UNSPECIFIED,
                ident: 0,
            },
            reply_to: ReplyTo {
                port: PortId::LOCAL,
                iface: L3If::Bridge,
                mac: MacAddr::ZERO,
            },
            data: vec![0u8; MAX_PAYLOAD].into_boxed_slice(),
            map: vec![0u64; MAP_WORDS].into_boxed_slice(),
            end: None,
            received: 0,
            max_stop: 0,
            fragments: 0,
            since: 0,
        }
    }

    fn start(&mut self, key: DatagramKey, now: u64) {
        self.state = State::Collecting;
        self.key = key;
        self.map.fill(0);
        self.end = None;
        self.received = 0;
        self.max_stop = 0;
        self.fragments = 0;
        self.since = now;
    }

    /// Frees the slot; returns the fragments it held.
    fn drop_all(&mut self) -> u32 {
        self.state = State::Free;
        core::mem::take(&mut self.fragments)
    }

    /// How many of the blocks `first..last` arrived.
    fn blocks_present(&self, first: usize, last: usize) -> usize {
        (first..last)
            .filter(|&b| {
                self.map
                    .get(b / 64)
                    .is_some_and(|w| w & (1 << (b % 64)) != 0)
            })
            .count()
    }

    fn mark(&mut self, first: usize, last: usize) {
        for b in first..last {
            if let Some(w) = self.map.get_mut(b / 64) {
                *w |= 1 << (b % 64);
            }
        }
    }

    /// Takes one fragment (`offset` and `payload` as on the wire, `more`
    /// its MF flag).
    fn add(&mut self, offset: usize, more: bool, payload: &[u8]) -> Added {
        let stop = offset + payload.len();
        let misfit = stop > MAX_PAYLOAD
            || (more && (payload.is_empty() || !payload.len().is_multiple_of(BLOCK)))
            || self
                .end
                .is_some_and(|end| stop > end || (!more && stop != end))
            || (!more && self.max_stop > stop);
        let (first, last) = (offset / BLOCK, stop.div_ceil(BLOCK));
        let present = self.blocks_present(first, last);
        if !misfit && present == last - first && last > first {
            return Added::Repeat;
        }
        if misfit || present > 0 {
            return Added::Misfit;
        }
        let Some(to) = self.data.get_mut(offset..stop) else {
            return Added::Misfit;
        };
        to.copy_from_slice(payload);
        self.mark(first, last);
        self.received += payload.len();
        self.max_stop = self.max_stop.max(stop);
        self.fragments += 1;
        if !more {
            self.end = Some(stop);
        }
        if self.end == Some(self.received) {
            Added::Complete
        } else {
            Added::Held
        }
    }
}

/// What [`Datagram::add`] did with a fragment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Added {
    Held,
    /// The datagram is whole.
    Complete,
    /// It repeats fragments already held: drop it alone.
    Repeat,
    /// It overlaps what was received, or does not fit: drop the datagram.
    Misfit,
}

/// The datagrams a worker reassembles.
pub(super) struct Reassembler {
    slots: Box<[Datagram]>,
    /// Slots not free (the per-batch step does nothing while it is 0).
    busy: usize,
}

impl Default for Reassembler {
    fn default() -> Reassembler {
        Reassembler {
            slots: (0..SLOTS).map(|_| Datagram::new()).collect(),
            busy: 0,
        }
    }
}

impl Reassembler {
    /// The slot of `key`'s datagram, or a new one: a free slot, else the
    /// oldest datagram's (whose fragments are returned, to be counted).
    fn slot_for(&mut self, key: DatagramKey, now: u64) -> (usize, u32) {
        let collecting = |d: &Datagram| d.state == State::Collecting;
        if let Some(i) = self
            .slots
            .iter()
            .position(|d| collecting(d) && d.key == key)
        {
            return (i, 0);
        }
        let (i, given_up) = match self.slots.iter().position(|d| d.state == State::Free) {
            Some(i) => {
                self.busy += 1;
                (i, 0)
            }
            None => {
                let oldest = (0..self.slots.len())
                    .min_by_key(|&i| self.slots.get(i).map_or(u64::MAX, |d| d.since))
                    .unwrap_or(0);
                let held = self.slots.get_mut(oldest).map_or(0, Datagram::drop_all);
                (oldest, held)
            }
        };
        if let Some(d) = self.slots.get_mut(i) {
            d.start(key, now);
        }
        (i, given_up)
    }

    fn free(&mut self, i: usize) -> u32 {
        match self.slots.get_mut(i) {
            Some(d) if d.state != State::Free => {
                self.busy = self.busy.saturating_sub(1);
                d.drop_all()
            }
            _ => 0,
        }
    }
}

impl Pipeline {
    /// A fragment of an ICMP datagram to one of our addresses (`frame`,
    /// IPv4 at [`ETH_LEN`], arrived on `iface`): held until its datagram
    /// is whole; then, an echo request, answered at the end of the batch.
    pub(super) fn echo_fragment_input(&mut self, frame: &Frame, iface: L3If, now: u64) -> Verdict {
        let Some(ip) = ipv4_of(frame) else {
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        if self.rx_tunnel.is_some() || ip.protocol() != IpProtocol::ICMP {
            // Answers through a tunnel are not fragmented: not answered.
            return Verdict::Drop(DropReason::LocalUnsupported);
        }
        let key = DatagramKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            ident: ip.ident(),
        };
        let Some(i) = self.claim_slot(key, frame, iface, now) else {
            return Verdict::Drop(DropReason::FragmentTimeout);
        };
        let Some(d) = self.reassembly.slots.get_mut(i) else {
            return Verdict::Drop(DropReason::FragmentTimeout);
        };
        let offset = usize::from(ip.frag_offset());
        match d.add(offset, ip.more_frags(), ip.payload()) {
            Added::Held => Verdict::Consumed,
            Added::Repeat => Verdict::Drop(DropReason::FragmentOverlap),
            Added::Misfit => {
                let held = self.reassembly.free(i);
                self.counters.add_drops(DropReason::FragmentOverlap, held);
                Verdict::Drop(DropReason::FragmentOverlap)
            }
            Added::Complete => self.answer_datagram(i),
        }
    }

    /// The slot for `key`'s datagram (see [`Reassembler::slot_for`]; what
    /// it gives up is counted), its answer to go back to `frame`'s sender by
    /// `iface`.
    fn claim_slot(
        &mut self,
        key: DatagramKey,
        frame: &Frame,
        iface: L3If,
        now: u64,
    ) -> Option<usize> {
        let (i, given_up) = self.reassembly.slot_for(key, now);
        self.counters
            .add_drops(DropReason::FragmentTimeout, given_up);
        let mac = EthernetFrame::new_unchecked(frame.data()).src_addr();
        let d = self.reassembly.slots.get_mut(i)?;
        d.reply_to = ReplyTo {
            port: frame.in_port,
            iface,
            mac,
        };
        Some(i)
    }

    /// The echo reply `frame` (built in place, from one of our addresses,
    /// arrived on `iface`), larger than the MTU of the port it goes back
    /// by: sent in fragments as the answer to a fragmented request is.
    pub(super) fn answer_in_fragments(&mut self, frame: &Frame, iface: L3If, now: u64) -> Verdict {
        let Some(ip) = ipv4_of(frame) else {
            return Verdict::Drop(DropReason::Ipv4Malformed);
        };
        let key = DatagramKey {
            src: ip.dst_addr(),
            dst: ip.src_addr(),
            ident: ip.ident(),
        };
        let message = ip.payload();
        let Some(i) = self.claim_slot(key, frame, iface, now) else {
            return Verdict::Drop(DropReason::FragmentTimeout);
        };
        let Some(d) = self.reassembly.slots.get_mut(i) else {
            return Verdict::Drop(DropReason::FragmentTimeout);
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
    fn answer_datagram(&mut self, i: usize) -> Verdict {
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
        let held = self.reassembly.free(i);
        self.counters.add_drops(reason, held.saturating_sub(1));
        Verdict::Drop(reason)
    }

    /// At the end of a batch: sends what answers fit in its free slots, and
    /// gives up datagrams older than 30 s.
    pub(super) fn reassembly_step(&mut self, batch: &mut Batch, now: u64) {
        if self.reassembly.busy == 0 {
            return;
        }
        for i in 0..self.reassembly.slots.len() {
            let Some(d) = self.reassembly.slots.get(i) else {
                break;
            };
            if d.state != State::Free && now.saturating_sub(d.since) > TIMEOUT_NS {
                let collecting = d.state == State::Collecting;
                let held = self.reassembly.free(i);
                if collecting {
                    self.counters.add_drops(DropReason::FragmentTimeout, held);
                }
                continue;
            }
            if let State::Replying { sent } = d.state {
                self.send_answer(batch, i, sent);
            }
        }
    }

    /// Sends the fragments of slot `i`'s answer from byte `sent` on, as many
    /// as the batch has room for.
    fn send_answer(&mut self, batch: &mut Batch, i: usize, sent: usize) {
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

/// The IPv4 packet of `frame` (after an untagged Ethernet header).
fn ipv4_of(frame: &Frame) -> Option<Ipv4Packet<&[u8]>> {
    Ipv4Packet::new_checked(frame.data().get(ETH_LEN..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot collecting a datagram from 10.0.0.2 to 10.0.0.1.
    fn started() -> Datagram {
        let mut d = Datagram::new();
        let key = DatagramKey {
            src: Ipv4Addr::new(10, 0, 0, 2),
            dst: Ipv4Addr::new(10, 0, 0, 1),
            ident: 1,
        };
        d.start(key, 0);
        d
    }

    #[test]
    fn fragments_in_any_order_make_the_datagram() {
        let mut d = started();
        assert_eq!(d.add(16, false, &[3; 5]), Added::Held);
        assert_eq!(d.add(0, true, &[1; 8]), Added::Held);
        assert_eq!(d.add(0, true, &[1; 8]), Added::Repeat);
        assert_eq!(d.add(8, true, &[2; 8]), Added::Complete);
        assert_eq!(d.end, Some(21));
        let mut want = vec![1u8; 8];
        want.extend([2; 8]);
        want.extend([3; 5]);
        assert_eq!(&d.data[..21], &want[..]);
    }

    #[test]
    fn misfits_are_refused() {
        let mut d = started();
        // Not a multiple of 8 before the end; empty; beyond 64 KiB.
        assert_eq!(d.add(0, true, &[1; 7]), Added::Misfit);
        assert_eq!(d.add(0, true, &[]), Added::Misfit);
        assert_eq!(d.add(65_512, false, &[0; 8]), Added::Misfit);
        assert_eq!(d.add(0, true, &[1; 16]), Added::Held);
        // Overlapping in part.
        assert_eq!(d.add(8, true, &[1; 16]), Added::Misfit);
        // Past the end, or a second, different end.
        assert_eq!(d.add(32, false, &[1; 4]), Added::Held);
        assert_eq!(d.add(40, true, &[1; 8]), Added::Misfit);
        assert_eq!(d.add(16, false, &[1; 4]), Added::Misfit);
        // A last fragment ending before data already received.
        let mut e = started();
        assert_eq!(e.add(64, true, &[1; 8]), Added::Held);
        assert_eq!(e.add(0, false, &[1; 8]), Added::Misfit);
    }
}
