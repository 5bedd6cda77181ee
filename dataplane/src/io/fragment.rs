//! IPv4 fragmentation for egress: an IPv4 packet without DF that is longer
//! than the MTU of the port (or tunnel) it leaves by is cut into fragments
//! that fit, as Linux's `ip_do_fragment` cuts it.
//!
//! Every fragment is a complete wire frame: the Ethernet header (tags
//! included) copied, the IPv4 header of the packet with its own total
//! length, fragment offset, MF flag and header checksum; the identification
//! stays the packet's. Each carries a multiple of 8 payload bytes (but the
//! last). Options whose "copied" flag is clear go only into the first
//! fragment; later fragments carry NOPs in their place, so every header
//! keeps its length, as Linux's `ip_options_fragment` does. A packet that
//! is already a fragment is cut the same way, its offsets shifted by its
//! own and the last piece keeping its MF flag.
//!
//! The worker uses it at transmit (like [`super::gso`], nothing here
//! allocates: the fragments are written one at a time into a caller's
//! scratch [`Frame`]); the tunnel uses it for inner packets larger than
//! the tunnel's MTU, the gateway for answers larger than the port's MTU.
//! Whether a packet with DF may be fragmented is the caller's decision
//! (ICMP fragmentation needed is the pipeline's): [`Fragmenter::new`]
//! refuses it.
//!
//! ```
//! use podswitch_dataplane::io::fragment;
//! use podswitch_dataplane::packet::{Frame, MAX_FRAME_LEN};
//!
//! // A 3,000-byte UDP datagram without DF, to a port with MTU 1500.
//! let mut packet = vec![0u8; 14 + 20 + 8 + 2972];
//! packet[12..14].copy_from_slice(&[0x08, 0x00]);
//! packet[14] = 0x45;
//! packet[16..18].copy_from_slice(&3000u16.to_be_bytes());
//! packet[22] = 64;
//! packet[23] = 17;
//! let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
//! let mut sizes = Vec::new();
//! let n = fragment::fragment(&packet, 1500, &mut scratch, |f| sizes.push(f.len()))?;
//! assert_eq!((n, sizes), (3, vec![14 + 1500, 14 + 1500, 14 + 40]));
//! # Ok::<(), fragment::FragmentError>(())
//! ```
#![forbid(unsafe_code)]

use crate::packet::{Frame, Offload};
use crate::wire::{EtherType, Ipv4Packet, L2Header, WireError, ipv4};

/// IPv4 option "end of option list".
const OPTION_END: u8 = 0;
/// IPv4 option "no operation".
const OPTION_NOP: u8 = 1;
/// The "copied" flag of an option type: the option goes into every fragment.
const OPTION_COPIED: u8 = 0x80;
/// Fragment offsets count 8-byte blocks.
const BLOCK: usize = 8;

/// Why a packet could not be fragmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The frame is not IPv4 behind an Ethernet header.
    #[error("fragmenting: the frame is not IPv4 over Ethernet")]
    NotIpv4,
    /// The IPv4 header is truncated or malformed.
    #[error("fragmenting: bad IPv4 header")]
    Ipv4(#[source] WireError),
    /// DF is set: the sender asked not to fragment.
    #[error("fragmenting: the packet has DF set")]
    DontFragment,
    /// The MTU leaves no room for 8 payload bytes behind the header.
    #[error("fragmenting: MTU {mtu} leaves no room behind a {header_len}-byte header")]
    MtuTooSmall {
        /// The MTU asked for.
        mtu: usize,
        /// The packet's header length.
        header_len: usize,
    },
    /// A fragment does not fit the scratch frame.
    #[error("fragmenting: a {0}-byte fragment does not fit the scratch frame")]
    NoRoom(usize),
}

/// True when `frame` is an IPv4 packet longer than `mtu` (its IP total
/// length): it must be fragmented, or refused with ICMP if it has DF.
#[inline]
pub fn exceeds_mtu(frame: &[u8], mtu: usize) -> bool {
    // An untagged Ethernet header: the worker's egress frames have no tags.
    const ETH: usize = crate::wire::ethernet::HEADER_LEN;
    frame.len() > ETH + mtu
        && crate::wire::ethernet::ipv4_payload(frame)
            .and_then(|ip| ip.first_chunk::<{ ipv4::HEADER_LEN }>())
            .is_some_and(|ip| usize::from(Ipv4Packet::new_unchecked(ip).total_len()) > mtu)
}

/// Cuts the IPv4 packet in `frame` into fragments of at most `mtu` IP
/// bytes, written one by one into `scratch`; `emit` is called for each.
/// Returns how many were emitted. A packet that fits is emitted whole.
/// Errors come before anything is emitted.
pub fn fragment(
    frame: &[u8],
    mtu: usize,
    scratch: &mut Frame,
    mut emit: impl FnMut(&Frame),
) -> Result<usize, FragmentError> {
    let mut fragmenter = Fragmenter::new(frame, mtu)?;
    let mut n = 0;
    while fragmenter.next_into(scratch)? {
        emit(scratch);
        n += 1;
    }
    Ok(n)
}

/// Cuts one IPv4 packet into fragments (see the module documentation).
#[derive(Debug)]
pub struct Fragmenter<'a> {
    /// Ethernet header, tags included.
    l2: &'a [u8],
    /// IPv4 header, options included.
    header: &'a [u8],
    payload: &'a [u8],
    /// The packet's own fragment offset (bytes) and MF flag.
    base_offset: usize,
    base_more: bool,
    /// Payload bytes per fragment (but the last).
    step: usize,
    /// Next payload byte to send.
    at: usize,
    /// Every fragment was written.
    done: bool,
}

impl<'a> Fragmenter<'a> {
    /// A fragmenter for the IPv4 packet in the Ethernet frame `frame`, to
    /// fragments of at most `mtu` IP bytes.
    pub fn new(frame: &'a [u8], mtu: usize) -> Result<Fragmenter<'a>, FragmentError> {
        let l2 = L2Header::parse(frame).map_err(|_| FragmentError::NotIpv4)?;
        if l2.ethertype != EtherType::IPV4 {
            return Err(FragmentError::NotIpv4);
        }
        let (l2_bytes, ip) = frame.split_at(l2.l3_offset.min(frame.len()));
        let ip = Ipv4Packet::new_checked(ip).map_err(FragmentError::Ipv4)?;
        if ip.dont_frag() {
            return Err(FragmentError::DontFragment);
        }
        let header_len = ip.header_len();
        let total = usize::from(ip.total_len());
        let (header, rest) = ip.into_inner().split_at(header_len);
        let payload = rest.get(..total - header_len).unwrap_or_default();
        Self::from_parts(l2_bytes, header, payload, mtu)
    }

    /// A fragmenter for a packet given as its Ethernet header `l2`, IPv4
    /// header `header` (whose offset, MF flag and identification the
    /// fragments take) and `payload`.
    pub fn from_parts(
        l2: &'a [u8],
        header: &'a [u8],
        payload: &'a [u8],
        mtu: usize,
    ) -> Result<Fragmenter<'a>, FragmentError> {
        if header.len() < ipv4::HEADER_LEN {
            return Err(FragmentError::Ipv4(WireError::Truncated));
        }
        let ip = Ipv4Packet::new_unchecked(header);
        let step = mtu.saturating_sub(header.len()) / BLOCK * BLOCK;
        if step == 0 {
            return Err(FragmentError::MtuTooSmall {
                mtu,
                header_len: header.len(),
            });
        }
        Ok(Fragmenter {
            l2,
            header,
            payload,
            base_offset: usize::from(ip.frag_offset()),
            base_more: ip.more_frags(),
            step,
            at: 0,
            done: false,
        })
    }

    /// Fragments still to come.
    pub fn remaining(&self) -> usize {
        if self.done {
            return 0;
        }
        let left = self.payload.len().saturating_sub(self.at);
        left.div_ceil(self.step).max(1)
    }

    /// Payload bytes already sent (a multiple of 8 until the end).
    pub fn position(&self) -> usize {
        self.at
    }

    /// Continues from payload byte `at` (rounded down to 8 bytes), as
    /// after an earlier fragmenter of the same packet stopped there.
    pub fn resume_at(&mut self, at: usize) {
        self.at = (at / BLOCK * BLOCK).min(self.payload.len());
        self.done = at > 0 && self.at >= self.payload.len();
    }

    /// Writes the next fragment into `out`; false when none is left.
    pub fn next_into(&mut self, out: &mut Frame) -> Result<bool, FragmentError> {
        if self.done {
            return Ok(false);
        }
        let end = (self.at + self.step).min(self.payload.len());
        let part = self.payload.get(self.at..end).unwrap_or_default();
        let (l2_len, header_len) = (self.l2.len(), self.header.len());
        let len = l2_len + header_len + part.len();
        let offset = self.base_offset + self.at;
        // The offset field holds 13 bits of 8-byte blocks.
        let Ok(offset16) = u16::try_from(offset) else {
            return Err(FragmentError::Ipv4(WireError::Malformed));
        };
        out.fill(&[]);
        out.offload = Offload::default();
        if !out.set_len(len) {
            return Err(FragmentError::NoRoom(len));
        }
        let data = out.data_mut();
        let (l2, rest) = data.split_at_mut(l2_len);
        l2.copy_from_slice(self.l2);
        let (header, body) = rest.split_at_mut(header_len);
        header.copy_from_slice(self.header);
        body.copy_from_slice(part);
        if self.at > 0 {
            strip_uncopied_options(&mut header[ipv4::HEADER_LEN..]);
        }
        let more = end < self.payload.len() || self.base_more;
        let mut ip = Ipv4Packet::new_unchecked(&mut *rest);
        let Ok(total) = u16::try_from(header_len + part.len()) else {
            return Err(FragmentError::Ipv4(WireError::Malformed));
        };
        ip.set_total_len(total);
        ip.set_fragment(more, offset16);
        ip.fill_checksum();
        self.at = end;
        self.done = end >= self.payload.len();
        Ok(true)
    }
}

/// Replaces every option without the "copied" flag by NOPs.
fn strip_uncopied_options(options: &mut [u8]) {
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            OPTION_END => return,
            OPTION_NOP => i += 1,
            _ => {
                let len = options.get(i + 1).map_or(1, |&l| usize::from(l).max(2));
                let end = (i + len).min(options.len());
                if kind & OPTION_COPIED == 0
                    && let Some(option) = options.get_mut(i..end)
                {
                    option.fill(OPTION_NOP);
                }
                i = end;
            }
        }
    }
}

#[cfg(test)]
mod tests;
