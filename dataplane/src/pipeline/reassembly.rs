//! IPv4 datagrams that arrive in fragments, reassembled before the stages
//! that need a whole datagram see them, as Linux's `nf_defrag_ipv4` does
//! before conntrack.
//!
//! The NAT stage translates by ports, which only a datagram's first
//! fragment carries, and a reply's translation must reach every fragment;
//! Linux reassembles every datagram it routes when conntrack is loaded
//! (a kube-proxy node), translates the whole datagram, and fragments it
//! again on the way out. podswitch does the same: a routed fragment (from
//! a pod, from the uplink, decapsulated from a tunnel) and a fragment
//! switched from a service backend (a reply that may need translating
//! back) are held until their datagram is whole. The fragment that
//! completes it gets the whole datagram written into its frame (the first
//! fragment's IP header, flags and offset cleared, event
//! `ipv4_reassembled`), and that frame goes through the stages as if it
//! had come whole; the output cuts it to the port's MTU again
//! (`io::fragment`), a tunnel to the tunnel's. The other fragments are
//! consumed. An echo request to one of our addresses (`ping -s 3000` to
//! the gateway) is answered from its slot instead (see `echo.rs`), so it
//! needs no frame buffer as large as itself.
//!
//! Memory is bounded: [`SLOTS`] datagrams of up to 64 KiB per worker
//! (2 MiB), allocated with the pipeline (the kernel maps the pages only
//! once large datagrams touch them). A datagram whose fragments do not all
//! come within 30 s (Linux's `ipfrag_time`) is dropped and its fragments
//! counted as `fragment_timeout`. When every slot is busy, the oldest
//! datagram gives way to a new one and its fragments count as
//! `fragment_memory`. A fragment overlapping one already received, or one
//! that does not fit its datagram (past 65,535 bytes or the datagram's
//! end, not a multiple of 8 bytes before the end), drops the datagram
//! (`fragment_overlap`), as Linux does since 4.19; an exact repeat drops
//! only itself. Fragments of one datagram meet on one worker: a TAP queue
//! and the AF_PACKET fanout hash pick a queue by addresses alone for
//! fragments (the fanout even reassembles them before us).

use core::net::Ipv4Addr;

use super::Pipeline;
use crate::packet::{Batch, DropReason, Event, Frame, L3If, PortId, Step, Verdict};
use crate::wire::ipv4::{self, Ipv4Packet};
use crate::wire::{EthernetFrame, IpProtocol, MacAddr};

mod echo;
#[cfg(test)]
mod tests;

/// Datagrams reassembled at once, per worker.
pub(super) const SLOTS: usize = 32;
/// The largest IPv4 datagram.
const MAX_DATAGRAM: usize = 65_535;
/// The largest IPv4 payload (a 65,535-byte datagram with a 20-byte header).
const MAX_PAYLOAD: usize = MAX_DATAGRAM - ipv4::HEADER_LEN;
/// The longest IPv4 header (IHL 15).
const MAX_HEADER: usize = 60;
/// Payload bytes per bit of a datagram's map of what arrived.
const BLOCK: usize = 8;
const MAP_WORDS: usize = MAX_PAYLOAD.div_ceil(BLOCK).div_ceil(64);
/// How long the fragments of a datagram (or its answer) may take.
pub(super) const TIMEOUT_NS: u64 = 30_000_000_000;

/// Identifies a datagram (RFC 791: source, destination, protocol and ID).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct DatagramKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: IpProtocol,
    ident: u16,
}

/// Where an echo answer goes: back to the sender, by the port it came in on.
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
    /// An echo answer is in `data`; `sent` bytes of it have left.
    Replying {
        sent: usize,
    },
}

/// One datagram being reassembled, or answered.
struct Datagram {
    state: State,
    key: DatagramKey,
    reply_to: ReplyTo,
    /// The first fragment's IP header (`header_len` bytes of it), once it came.
    header: [u8; MAX_HEADER],
    header_len: usize,
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
                protocol: IpProtocol(0),
                ident: 0,
            },
            reply_to: ReplyTo {
                port: PortId::LOCAL,
                iface: L3If::Bridge,
                mac: MacAddr::ZERO,
            },
            header: [0; MAX_HEADER],
            header_len: 0,
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
        self.header_len = 0;
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

    /// Takes one fragment: `offset` and `payload` as on the wire, `more`
    /// its MF flag, `header` its IP header (kept from the first fragment).
    fn add(&mut self, offset: usize, more: bool, header: &[u8], payload: &[u8]) -> Added {
        let stop = offset + payload.len();
        let misfit = stop + header.len() > MAX_DATAGRAM
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
        if offset == 0
            && let Some(kept) = self.header.get_mut(..header.len())
        {
            kept.copy_from_slice(header);
            self.header_len = header.len();
        }
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
    /// Frame `i`, an IPv4 fragment (header at `l3`, arrived on `iface`):
    /// held until its datagram is whole (`Break`: held, answered or
    /// dropped), then the datagram written into
    /// the frame (or, an echo request to us, answered).
    pub(super) fn reassemble(
        &mut self,
        batch: &mut Batch,
        i: usize,
        l3: usize,
        iface: L3If,
        from_tunnel: bool,
        now: u64,
    ) -> Step {
        let frame = batch.frame_mut(i);
        let ip = frame.data().get(l3..).map(Ipv4Packet::new_checked);
        let Some(Ok(ip)) = ip else {
            return Step::Break(Verdict::Drop(DropReason::Ipv4Malformed));
        };
        if !ip.verify_checksum() {
            return Step::Break(Verdict::Drop(DropReason::Ipv4BadChecksum));
        }
        let key = DatagramKey {
            src: ip.src_addr(),
            dst: ip.dst_addr(),
            protocol: ip.protocol(),
            ident: ip.ident(),
        };
        // Echo to us (not through a tunnel) is answered from the slot.
        let echo_to_us =
            key.protocol == IpProtocol::ICMP && self.snapshot.is_local_ip(key.dst) && !from_tunnel;
        let Some(slot) = self.claim_slot(key, frame, l3, iface, now) else {
            return Step::Break(Verdict::Drop(DropReason::FragmentMemory));
        };
        let Some(d) = self.reassembly.slots.get_mut(slot) else {
            return Step::Break(Verdict::Drop(DropReason::FragmentMemory));
        };
        let offset = usize::from(ip.frag_offset());
        match d.add(offset, ip.more_frags(), ip.header(), ip.payload()) {
            Added::Held => Step::Break(Verdict::Consumed),
            Added::Repeat => Step::Break(Verdict::Drop(DropReason::FragmentOverlap)),
            Added::Misfit => Step::Break(self.give_up(slot, DropReason::FragmentOverlap, 0)),
            Added::Complete if echo_to_us => Step::Break(self.answer_datagram(slot)),
            Added::Complete => self.restore(batch.frame_mut(i), l3, slot),
        }
    }

    /// Frees slot `slot` and counts its fragments as dropped for `reason`,
    /// but `spared` of them (the one being handled, counted by its verdict).
    fn give_up(&mut self, slot: usize, reason: DropReason, spared: u32) -> Verdict {
        let held = self.reassembly.free(slot);
        self.counters.add_drops(reason, held.saturating_sub(spared));
        Verdict::Drop(reason)
    }

    /// Writes the whole datagram of slot `slot` into `frame` (its IP
    /// header at `l3`) and frees the slot.
    fn restore(&mut self, frame: &mut Frame, l3: usize, slot: usize) -> Step {
        let Some(d) = self.reassembly.slots.get(slot) else {
            return Step::Break(Verdict::Drop(DropReason::FragmentMemory));
        };
        let (header_len, end) = (d.header_len, d.end.unwrap_or(0));
        let total = header_len + end;
        if total > MAX_DATAGRAM {
            // Its first fragment's options made it longer than IPv4 allows.
            return Step::Break(self.give_up(slot, DropReason::FragmentOverlap, 1));
        }
        if !frame.set_len(l3 + total) {
            return Step::Break(self.give_up(slot, DropReason::FragmentMemory, 1));
        }
        let whole = frame.data_mut().get_mut(l3..).unwrap_or_default();
        let (header, payload) = whole.split_at_mut(header_len.min(whole.len()));
        header.copy_from_slice(d.header.get(..header.len()).unwrap_or_default());
        payload.copy_from_slice(d.data.get(..payload.len()).unwrap_or_default());
        let mut ip = Ipv4Packet::new_unchecked(whole);
        ip.set_total_len(total as u16);
        ip.set_unfragmented(false);
        ip.fill_checksum();
        frame.offload = crate::packet::Offload::default();
        self.reassembly.free(slot);
        self.counters.event(Event::Ipv4Reassembled);
        Step::Continue(())
    }

    /// The slot for `key`'s datagram (see [`Reassembler::slot_for`]; what
    /// it gives up is counted), an answer to go back to `frame`'s sender
    /// (its IP header at `l3`) by `iface`.
    fn claim_slot(
        &mut self,
        key: DatagramKey,
        frame: &Frame,
        l3: usize,
        iface: L3If,
        now: u64,
    ) -> Option<usize> {
        let l2 = frame.data().get(..l3)?;
        let mac = EthernetFrame::new_checked(l2).ok()?.src_addr();
        let (i, given_up) = self.reassembly.slot_for(key, now);
        self.counters
            .add_drops(DropReason::FragmentMemory, given_up);
        let d = self.reassembly.slots.get_mut(i)?;
        d.reply_to = ReplyTo {
            port: frame.in_port,
            iface,
            mac,
        };
        Some(i)
    }

    /// At the end of a batch: sends what echo answers fit in its free
    /// slots, and gives up datagrams older than 30 s.
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
}
