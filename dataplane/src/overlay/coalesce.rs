//! Receive coalescing of decapsulated TCP segments (GRO for the tunnel).
//!
//! A sender's GSO super-frame crosses the underlay as MSS-sized VXLAN
//! packets; delivered one by one, each costs the receiving pod's kernel a
//! TAP write and a pass through its TCP stack. Consecutive segments of one
//! flow in a batch — same addresses, ports, TTL, TOS, ACK number, window and
//! TCP options, contiguous sequence numbers, equal sizes but for a shorter
//! last one, only ACK (PSH on the last) — are merged back into one GSO
//! frame with a partial checksum, as Linux's `tcp_gro_receive` would: the
//! pod's TAP takes it whole, and a port without offloads gets it cut again
//! by the worker. Nothing is allocated: payloads are appended in the first
//! frame's tailroom.

use crate::packet::{Frame, GsoKind, Offload};
use crate::wire::{Ipv4Packet, TcpPacket, checksum, ethernet, ipv4, tcp};

/// The first segment of a run being merged.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// TCP header length.
    tcp_len: usize,
    /// Payload bytes of every segment but the last.
    mss: usize,
    /// Sequence number the next segment must carry.
    next_seq: u32,
    /// Segments merged into the first.
    merged: u16,
}

const L3: usize = ethernet::HEADER_LEN;
const L4: usize = L3 + ipv4::HEADER_LEN;

/// The TCP header length and payload length of `f` when it is a plain
/// IPv4 TCP segment (no IP options, not a fragment, no offload state, data
/// and only ACK or ACK|PSH) that coalescing may use.
fn segment(f: &Frame) -> Option<(usize, usize, u8)> {
    if f.offload != Offload::default() || f.encap_len != 0 {
        return None;
    }
    let d = f.data();
    let ip = Ipv4Packet::new_unchecked(
        ethernet::ipv4_payload(d)?.first_chunk::<{ ipv4::HEADER_LEN }>()?,
    );
    if !ip.is_plain() || ip.protocol() != crate::wire::IpProtocol::TCP || ip.is_fragment() {
        return None;
    }
    let total = usize::from(ip.total_len());
    let tcp = TcpPacket::new_unchecked(d.get(L4..)?.first_chunk::<{ tcp::HEADER_LEN }>()?);
    let (tcp_len, flags) = (tcp.header_len(), tcp.flags());
    if tcp_len < tcp::HEADER_LEN || L3 + total != d.len() || total < ipv4::HEADER_LEN + tcp_len {
        return None;
    }
    if flags & !tcp::FLAG_PSH != tcp::FLAG_ACK {
        return None;
    }
    let payload = total - ipv4::HEADER_LEN - tcp_len;
    (payload > 0).then_some((tcp_len, payload, flags))
}

/// The IPv4 header of a frame [`segment`] accepted.
fn ip_of(d: &[u8]) -> Ipv4Packet<&[u8]> {
    Ipv4Packet::new_unchecked(&d[L3..L4])
}

/// The TCP header (options included) of a frame [`segment`] accepted.
fn tcp_of(d: &[u8], tcp_len: usize) -> TcpPacket<&[u8]> {
    TcpPacket::new_unchecked(&d[L4..L4 + tcp_len])
}

fn seq(d: &[u8]) -> u32 {
    tcp_of(d, tcp::HEADER_LEN).seq_number()
}

/// Whether two segments [`segment`] accepted, whose TCP headers are both
/// `tcp_len` long, belong to one run: the same TOS, DF, TTL and addresses,
/// and the same ports, ACK number, window and options (IPv4 length,
/// identification and checksum, and the sequence number, may differ).
fn same_headers(a: &[u8], b: &[u8], tcp_len: usize) -> bool {
    let (ia, ib) = (ip_of(a), ip_of(b));
    let (ta, tb) = (tcp_of(a, tcp_len), tcp_of(b, tcp_len));
    ia.dscp_ecn() == ib.dscp_ecn()
        && ia.dont_frag() == ib.dont_frag()
        && ia.ttl() == ib.ttl()
        && (ia.src_addr(), ia.dst_addr()) == (ib.src_addr(), ib.dst_addr())
        && (ta.src_port(), ta.dst_port()) == (tb.src_port(), tb.dst_port())
        && ta.ack_number() == tb.ack_number()
        && ta.window() == tb.window()
        && ta.options() == tb.options()
}

/// Starts a run at `first` if it can head one (a full segment without PSH).
pub fn start(first: &Frame) -> Option<Run> {
    let (tcp_len, payload, flags) = segment(first)?;
    if flags & tcp::FLAG_PSH != 0 {
        return None;
    }
    Some(Run {
        tcp_len,
        mss: payload,
        next_seq: seq(first.data()).wrapping_add(payload as u32),
        merged: 0,
    })
}

/// Appends `next`'s payload to `first` when it continues the run; returns
/// false (and changes nothing) otherwise. After a short or PSH segment the
/// run is over: `run.mss` becomes 0.
pub fn append(run: &mut Run, first: &mut Frame, next: &Frame) -> bool {
    let Some((tcp_len, payload, flags)) = segment(next) else {
        return false;
    };
    let (a, b) = (first.data(), next.data());
    let len = a.len();
    if run.mss == 0
        || tcp_len != run.tcp_len
        || !same_headers(a, b, tcp_len)
        || seq(b) != run.next_seq
        || payload > run.mss
        || len - L3 + payload > usize::from(u16::MAX)
        || len + payload > first.capacity()
    {
        return false;
    }
    let start = L4 + tcp_len;
    let (Some(src), true) = (
        next.data().get(start..start + payload),
        first.set_len(len + payload),
    ) else {
        return false;
    };
    first.data_mut()[len..].copy_from_slice(src);
    if flags & tcp::FLAG_PSH != 0 {
        let mut tcp = TcpPacket::new_unchecked(&mut first.data_mut()[L4..]);
        tcp.set_flags(tcp.flags() | tcp::FLAG_PSH);
    }
    if payload < run.mss || flags & tcp::FLAG_PSH != 0 {
        run.mss = 0;
    }
    run.next_seq = run.next_seq.wrapping_add(payload as u32);
    run.merged += 1;
    true
}

/// Turns `first` into a GSO super-frame after segments were appended:
/// IPv4 length and checksum, TCP checksum left partial, offload state set.
/// Returns how many segments were merged into it.
pub fn finish(run: &Run, first: &mut Frame, mss: usize) -> u16 {
    if run.merged == 0 {
        return 0;
    }
    let total = (first.len() - L3) as u16;
    let mut ip = Ipv4Packet::new_unchecked(&mut first.data_mut()[L3..]);
    ip.set_total_len(total);
    ip.fill_checksum();
    let pseudo = checksum::fold(ip.pseudo_header_sum());
    TcpPacket::new_unchecked(ip.payload_mut()).set_checksum(pseudo);
    first.offload = Offload {
        gso: GsoKind::TcpV4,
        gso_size: mss as u16,
        hdr_len: (L4 + run.tcp_len) as u16,
        csum: Some((L4 as u16, tcp::field::CHECKSUM as u16)),
        csum_valid: false,
    };
    run.merged
}

impl Run {
    /// Payload bytes per segment of the run's first segment.
    pub fn segment_size(&self) -> usize {
        self.mss
    }
}
