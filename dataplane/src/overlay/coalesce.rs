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
use crate::wire::{checksum, ethernet, ipv4, tcp};

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
/// IPv4 bytes compared between segments: version/IHL, TOS, flags, TTL,
/// protocol, addresses (length, identification and checksum may differ).
const IP_SAME: [core::ops::Range<usize>; 3] = [L3..L3 + 2, L3 + 6..L3 + 10, L3 + 12..L3 + 20];

/// The TCP header length and payload length of `f` when it is a plain
/// IPv4 TCP segment (no IP options, not a fragment, no offload state, data
/// and only ACK or ACK|PSH) that coalescing may use.
fn segment(f: &Frame) -> Option<(usize, usize, u8)> {
    let d = f.data();
    if f.offload != Offload::default() || f.encap_len != 0 || d.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    if *d.get(L3)? != 0x45
        || *d.get(L3 + 9)? != 6
        || u16::from_be_bytes([d[L3 + 6], d[L3 + 7]]) & 0x3fff != 0
    {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([d[L3 + 2], d[L3 + 3]]));
    let tcp_len = usize::from(*d.get(L4 + 12)? >> 4) * 4;
    let flags = *d.get(L4 + 13)?;
    if tcp_len < tcp::HEADER_LEN || L3 + total != d.len() || total < ipv4::HEADER_LEN + tcp_len {
        return None;
    }
    if flags & !tcp::FLAG_PSH != tcp::FLAG_ACK {
        return None;
    }
    let payload = total - ipv4::HEADER_LEN - tcp_len;
    (payload > 0).then_some((tcp_len, payload, flags))
}

fn seq(d: &[u8]) -> u32 {
    u32::from_be_bytes([d[L4 + 4], d[L4 + 5], d[L4 + 6], d[L4 + 7]])
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
    let same_ip = IP_SAME.iter().all(|r| a.get(r.clone()) == b.get(r.clone()));
    // Ports, ACK number, data offset, window; then the options.
    let same_tcp = a.get(L4..L4 + 4) == b.get(L4..L4 + 4)
        && a.get(L4 + 8..L4 + 13) == b.get(L4 + 8..L4 + 13)
        && a.get(L4 + 14..L4 + 16) == b.get(L4 + 14..L4 + 16)
        && a.get(L4 + tcp::HEADER_LEN..L4 + tcp_len) == b.get(L4 + tcp::HEADER_LEN..L4 + tcp_len);
    let len = a.len();
    if run.mss == 0
        || !same_ip
        || !same_tcp
        || tcp_len != run.tcp_len
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
        first.data_mut()[L4 + 13] |= tcp::FLAG_PSH;
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
    let len = first.len();
    let d = first.data_mut();
    let total = (len - L3) as u16;
    d[L3 + 2..L3 + 4].copy_from_slice(&total.to_be_bytes());
    d[L3 + 10..L3 + 12].copy_from_slice(&[0, 0]);
    let ip_csum = checksum::checksum(&d[L3..L4]);
    d[L3 + 10..L3 + 12].copy_from_slice(&ip_csum.to_be_bytes());
    let src = [d[L3 + 12], d[L3 + 13], d[L3 + 14], d[L3 + 15]].into();
    let dst = [d[L3 + 16], d[L3 + 17], d[L3 + 18], d[L3 + 19]].into();
    let pseudo = checksum::pseudo_header_v4(src, dst, 6, u32::from(total) - 20);
    d[L4 + 16..L4 + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    first.offload = Offload {
        gso: GsoKind::TcpV4,
        gso_size: mss as u16,
        hdr_len: (L4 + run.tcp_len) as u16,
        csum: Some((L4 as u16, 16)),
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
