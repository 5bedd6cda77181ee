//! Software segmentation (GSO) and checksum completion for ports without offloads.
//!
//! A frame read from a TAP or AF_PACKET socket with vnet headers may be a
//! super-frame of up to 64 KiB that the sender expects the device to cut into
//! MSS-sized segments (TSO/USO), and its L4 checksum may be partial: the
//! field holds the folded pseudo-header sum, not complemented, as Linux
//! `CHECKSUM_PARTIAL` leaves it, and the device is to finish it. When the
//! output port cannot take that state, the worker does the device's work
//! here: [`complete_checksum`] for a single frame, [`Segmenter`] (or its
//! wrapper [`segment`]) for a super-frame.
//!
//! Every segment is a complete wire frame: headers copied from the
//! super-frame, IPv4 total length, identification (+1 per segment, as Linux
//! does without `FIXEDID`) and header checksum, IPv6 payload length, TCP
//! sequence number and flags (FIN and PSH on the last segment only, CWR on
//! the first only, as `tcp_gso_segment` does), UDP length, and the L4
//! checksum summed in full over pseudo-header and segment. The checksum the
//! super-frame carries is never trusted, so a GSO frame without a partial
//! checksum is segmented just as well. Header lengths come from the packet,
//! not from the vnet `hdr_len`, which Linux fills with the length of the
//! linear part of its buffer (a hint, not the header length).
//!
//! Nothing here allocates: the segments are written one at a time into a
//! caller-provided scratch [`Frame`]. Hand-written because the crates that
//! segment (the kernel's, DPDK's) are not Rust, and the Rust packet crates
//! parse and build packets but do not cut a super-frame into a buffer the
//! caller owns.
//!
//! ```
//! use podswitch_dataplane::io::gso::{self, GsoError};
//! use podswitch_dataplane::packet::{Frame, MAX_FRAME_LEN};
//!
//! /// Hands `frame` to `send` as wire frames a port without offloads can take.
//! fn send_plain(
//!     frame: &Frame,
//!     scratch: &mut Frame,
//!     mut send: impl FnMut(&Frame) -> Result<(), GsoError>,
//! ) -> Result<usize, GsoError> {
//!     if !frame.offload.needs_software() {
//!         send(frame)?;
//!         return Ok(1);
//!     }
//!     gso::segment(frame.data(), &frame.offload, scratch, send)
//! }
//!
//! // One scratch buffer per worker, allocated once.
//! let mut scratch = Frame::with_capacity(MAX_FRAME_LEN);
//! let mut frame = Frame::with_capacity(MAX_FRAME_LEN);
//! frame.fill(&podswitch_dataplane::wire::testdata::ICMP_ECHO_FRAME);
//! let mut sent = Vec::new();
//! send_plain(&frame, &mut scratch, |f| {
//!     sent.push(f.len());
//!     Ok(())
//! })?;
//! assert_eq!(sent, [frame.len()]);
//! # Ok::<(), GsoError>(())
//! ```
#![forbid(unsafe_code)]

mod headers;
pub mod tunnel;

pub use headers::offload_from_headers;

use crate::packet::{Frame, GsoKind, MAX_FRAME_LEN, Offload};
use crate::wire::{
    EtherType, IpProtocol, Ipv4Packet, Ipv6Packet, L2Header, TcpPacket, UdpPacket, WireError,
    checksum, ipv4, ipv6, tcp, udp,
};

/// Most segments one super-frame may produce. Linux senders never go below
/// a 48-byte MSS (`TCP_MIN_SND_MSS`), which gives at most 1366 segments for
/// 64 KiB, and cap USO at `UDP_MAX_SEGMENTS` (64, or 128 on recent
/// kernels); a frame asking for more is refused rather than flooding the
/// output queue.
pub const MAX_SEGMENTS: usize = 2048;

/// IPv4 option types whose route changes the final destination, and so the
/// pseudo-header the L4 checksum covers (LSRR, SSRR).
const IPV4_OPTION_SOURCE_ROUTES: [u8; 2] = [0x83, 0x89];
/// IPv4 option "end of option list".
const IPV4_OPTION_END: u8 = 0;
/// IPv4 option "no operation".
const IPV4_OPTION_NOP: u8 = 1;

/// Why a frame could not be segmented or its checksum completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// The partial checksum's start or field lies outside the frame.
    #[error(
        "partial checksum at start {start} + offset {offset} does not fit the {len}-byte frame"
    )]
    ChecksumOutOfBounds {
        /// `csum_start`.
        start: usize,
        /// `csum_offset`.
        offset: usize,
        /// Frame length.
        len: usize,
    },
    /// The super-frame is longer than any 64 KiB IP packet can be.
    #[error("GSO frame of {0} bytes is longer than {MAX_FRAME_LEN}")]
    TooLong(usize),
    /// GSO requested with `gso_size` 0.
    #[error("GSO frame with gso_size 0")]
    ZeroGsoSize,
    /// The Ethernet header or its VLAN tags could not be parsed.
    #[error("GSO frame: bad Ethernet header")]
    Ethernet(#[source] WireError),
    /// The EtherType does not match the GSO kind.
    #[error("GSO {kind:?} frame carries EtherType {ethertype:#06x}")]
    WrongEtherType {
        /// The requested segmentation.
        kind: GsoKind,
        /// The EtherType after the VLAN tags.
        ethertype: u16,
    },
    /// The IPv4 header is truncated or malformed.
    #[error("GSO frame: bad IPv4 header")]
    Ipv4(#[source] WireError),
    /// IPv4 total length 0 (BIG TCP) is not supported.
    #[error("GSO frame: IPv4 total length 0 (BIG TCP) is not supported")]
    Ipv4BigTcp,
    /// The IPv4 total length is not the length of the rest of the frame.
    #[error("GSO frame: IPv4 total length {total_len} but {available} bytes follow the L2 header")]
    Ipv4LengthMismatch {
        /// The total length field.
        total_len: u16,
        /// Bytes from the IPv4 header to the frame end.
        available: usize,
    },
    /// A super-frame cannot be an IP fragment.
    #[error("GSO frame is an IPv4 fragment")]
    Ipv4Fragment,
    /// The IPv4 options do not parse.
    #[error("GSO frame: malformed IPv4 option at byte {0} of the options")]
    Ipv4Options(usize),
    /// A source route changes the pseudo-header's destination.
    #[error("GSO frame: IPv4 source route option {0:#04x} cannot be segmented")]
    Ipv4SourceRoute(u8),
    /// The IPv6 header is truncated or malformed.
    #[error("GSO frame: bad IPv6 header")]
    Ipv6(#[source] WireError),
    /// A jumbogram (BIG TCP over IPv6) is not supported.
    #[error("GSO frame: IPv6 jumbogram (BIG TCP) is not supported")]
    Ipv6Jumbogram,
    /// The IPv6 payload length is not the length of the rest of the frame.
    #[error(
        "GSO frame: IPv6 payload length {payload_len} but {available} bytes follow the fixed header"
    )]
    Ipv6LengthMismatch {
        /// The payload length field.
        payload_len: u16,
        /// Bytes from the end of the fixed header to the frame end.
        available: usize,
    },
    /// An IPv6 extension header other than Hop-by-Hop or Destination
    /// Options, or more of them than [`ipv6::MAX_EXT_HEADERS`].
    #[error("GSO frame: IPv6 extension header {0} cannot be segmented")]
    Ipv6ExtensionHeader(u8),
    /// The L4 protocol does not match the GSO kind.
    #[error("GSO {kind:?} frame carries IP protocol {protocol}")]
    WrongProtocol {
        /// The requested segmentation.
        kind: GsoKind,
        /// The upper-layer protocol found.
        protocol: u8,
    },
    /// The TCP header is truncated or malformed.
    #[error("GSO frame: bad TCP header")]
    Tcp(#[source] WireError),
    /// The UDP header is truncated or malformed.
    #[error("GSO frame: bad UDP header")]
    Udp(#[source] WireError),
    /// The UDP length is not the length of the rest of the frame.
    #[error("GSO frame: UDP length {len} but {available} bytes follow the IP header")]
    UdpLengthMismatch {
        /// The UDP length field.
        len: u16,
        /// Bytes from the UDP header to the frame end.
        available: usize,
    },
    /// More segments than [`MAX_SEGMENTS`].
    #[error("GSO frame would make {0} segments, more than {MAX_SEGMENTS}")]
    TooManySegments(usize),
    /// The scratch frame cannot hold a segment.
    #[error("scratch frame holds {capacity} bytes, a segment needs {needed}")]
    ScratchTooSmall {
        /// Bytes one segment needs.
        needed: usize,
        /// Bytes the scratch frame holds.
        capacity: usize,
    },
}

impl GsoError {
    /// True when the frame is well formed but asks for something this
    /// module does not do (a GSO kind that does not match the packet, BIG
    /// TCP, source routes, IPv6 extension headers, too many segments);
    /// false when it is malformed.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            GsoError::WrongEtherType { .. }
                | GsoError::WrongProtocol { .. }
                | GsoError::Ipv4BigTcp
                | GsoError::Ipv4SourceRoute(_)
                | GsoError::Ipv6Jumbogram
                | GsoError::Ipv6ExtensionHeader(_)
                | GsoError::TooManySegments(_)
        )
    }
}

/// Finishes a partial L4 checksum in place, as a device would.
///
/// The field at `csum_start + csum_offset` holds the folded pseudo-header
/// sum; the ones'-complement sum from `csum_start` to the end of `frame`
/// (field included) is folded, complemented and stored. A result of 0 is
/// stored as 0xffff, as Linux does for every protocol (`CSUM_MANGLED_0`):
/// UDP needs it, and for TCP both encode the same sum.
pub fn complete_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), GsoError> {
    let field = checksum_field(frame.len(), csum_start, csum_offset)?;
    let covered = frame.get(csum_start..).unwrap_or_default();
    let value = match !checksum::fold(checksum::sum(covered)) {
        0 => 0xffff,
        c => c,
    };
    if let Some(dst) = frame.get_mut(field..field + 2) {
        dst.copy_from_slice(&value.to_be_bytes());
    }
    Ok(())
}

/// Offset of the checksum field, checked to lie inside a `len`-byte frame.
fn checksum_field(len: usize, start: usize, offset: usize) -> Result<usize, GsoError> {
    start
        .checked_add(offset)
        .filter(|field| field.checked_add(2).is_some_and(|end| end <= len))
        .ok_or(GsoError::ChecksumOutOfBounds { start, offset, len })
}

/// Cuts `frame` into wire frames written one by one into `out`, calling
/// `emit` for each; returns how many were emitted.
///
/// An error from `emit` stops the loop and is returned. A [`GsoError`]
/// (returned through `E: From<GsoError>`) always comes before anything is
/// emitted: the frame is validated up front and the first segment is the
/// longest, so a bad frame is never half sent. See [`Segmenter`].
pub fn segment<E: From<GsoError>>(
    frame: &[u8],
    offload: &Offload,
    out: &mut Frame,
    mut emit: impl FnMut(&Frame) -> Result<(), E>,
) -> Result<usize, E> {
    let mut segmenter = Segmenter::new(frame, offload)?;
    let mut emitted = 0;
    while segmenter.next_into(out)? {
        emit(out)?;
        emitted += 1;
    }
    Ok(emitted)
}

/// The length of the longest wire frame `frame` becomes: itself, or for a
/// GSO super-frame its longest segment (headers plus `gso_size`), which is
/// what an MTU limits (Linux's `skb_gso_validate_network_len`). `None` for
/// a super-frame [`Segmenter`] refuses.
pub fn longest_wire_frame(frame: &[u8], offload: &Offload) -> Option<usize> {
    if offload.gso == GsoKind::None {
        return Some(frame.len());
    }
    Segmenter::new(frame, offload)
        .ok()
        .map(|s| s.max_segment_len())
}

/// Where the headers of a validated super-frame lie.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Offset of the IP header.
    l3: usize,
    /// Offset of the L4 header.
    l4: usize,
    /// End of the L4 header: where the payload starts.
    payload: usize,
    /// IPv4 (else IPv6).
    is_ipv4: bool,
    /// TCP (else UDP).
    is_tcp: bool,
}

/// What a [`Segmenter`] does with its frame.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Copy the frame whole, completing its partial checksum if it has one.
    Whole { csum: Option<(usize, usize)> },
    /// Cut the payload into `mss`-byte segments.
    Split { layout: Layout, mss: usize },
}

/// Turns one frame with offload state into wire frames, one per call to
/// [`Segmenter::next_into`], without allocating.
///
/// [`Segmenter::new`] validates the whole frame once, so a segmenter that
/// exists only fails for a scratch frame too small
/// ([`Segmenter::max_segment_len`] says how large it must be). A frame
/// without GSO comes out as one copy with its checksum completed; a caller
/// that owns such a frame can call [`complete_checksum`] in place instead.
/// The segments' `offload` is the default (nothing left to do); their
/// `in_port` and `timestamp_ns` are left as the caller set them.
#[derive(Debug)]
pub struct Segmenter<'a> {
    frame: &'a [u8],
    plan: Plan,
    /// Offset in `frame` of the next segment's payload.
    next: usize,
    /// Segments written so far.
    index: usize,
}

impl<'a> Segmenter<'a> {
    /// Validates `frame` against `offload` and plans its segments.
    pub fn new(frame: &'a [u8], offload: &Offload) -> Result<Segmenter<'a>, GsoError> {
        let plan = match offload.gso {
            GsoKind::None => {
                let csum = offload.csum.map(|(s, o)| (usize::from(s), usize::from(o)));
                if let Some((start, offset)) = csum {
                    checksum_field(frame.len(), start, offset)?;
                }
                Plan::Whole { csum }
            }
            kind => {
                let mss = usize::from(offload.gso_size);
                if mss == 0 {
                    return Err(GsoError::ZeroGsoSize);
                }
                if frame.len() > MAX_FRAME_LEN {
                    return Err(GsoError::TooLong(frame.len()));
                }
                let layout = parse_layout(frame, kind)?;
                let segments = (frame.len() - layout.payload).div_ceil(mss).max(1);
                if segments > MAX_SEGMENTS {
                    return Err(GsoError::TooManySegments(segments));
                }
                Plan::Split { layout, mss }
            }
        };
        let next = match plan {
            Plan::Whole { .. } => 0,
            Plan::Split { layout, .. } => layout.payload,
        };
        Ok(Segmenter {
            frame,
            plan,
            next,
            index: 0,
        })
    }

    /// Bytes the longest segment needs in the scratch frame.
    pub fn max_segment_len(&self) -> usize {
        match self.plan {
            Plan::Whole { .. } => self.frame.len(),
            Plan::Split { layout, mss } => {
                layout.payload + mss.min(self.frame.len() - layout.payload)
            }
        }
    }

    /// Writes the next segment into `out`; false when all have been written.
    pub fn next_into(&mut self, out: &mut Frame) -> Result<bool, GsoError> {
        let done = self.index > 0 && self.next >= self.frame.len();
        if done {
            return Ok(false);
        }
        match self.plan {
            Plan::Whole { csum } => {
                copy_into(out, self.frame, &[])?;
                if let Some((start, offset)) = csum {
                    complete_checksum(out.data_mut(), start, offset)?;
                }
                self.next = self.frame.len();
            }
            Plan::Split { layout, mss } => self.write_segment(out, layout, mss)?,
        }
        out.offload = Offload::default();
        self.index += 1;
        Ok(true)
    }

    /// Copies the headers and the next `mss` payload bytes into `out` and
    /// fixes the headers for them.
    fn write_segment(
        &mut self,
        out: &mut Frame,
        layout: Layout,
        mss: usize,
    ) -> Result<(), GsoError> {
        let start = self.next;
        let end = start.saturating_add(mss).min(self.frame.len());
        let headers = self.frame.get(..layout.payload).unwrap_or_default();
        let chunk = self.frame.get(start..end).unwrap_or_default();
        copy_into(out, headers, chunk)?;
        let segment = out.data_mut();
        let first = self.index == 0;
        let last = end == self.frame.len();
        fix_ip_header(segment, layout, self.index);
        if layout.is_tcp {
            // The payload offset fits: the frame is at most 64 KiB.
            let seq_offset = u32::try_from(start - layout.payload).unwrap_or(0);
            fix_tcp_header(segment, layout, seq_offset, first, last);
        } else {
            fix_udp_header(segment, layout);
        }
        self.next = end;
        Ok(())
    }
}

/// Fills `out` with `headers` followed by `payload`.
fn copy_into(out: &mut Frame, headers: &[u8], payload: &[u8]) -> Result<(), GsoError> {
    let needed = headers.len() + payload.len();
    if !out.fill(headers) || !out.set_len(needed) {
        let capacity = out.capacity();
        out.set_len(0);
        return Err(GsoError::ScratchTooSmall { needed, capacity });
    }
    if let Some(dst) = out.data_mut().get_mut(headers.len()..) {
        dst.copy_from_slice(payload);
    }
    Ok(())
}

/// Length field value for the bytes of `segment` from `from` on. Segments
/// are no longer than their validated super-frame, so the value fits.
fn len_from(segment: &[u8], from: usize) -> u16 {
    u16::try_from(segment.len().saturating_sub(from)).unwrap_or(u16::MAX)
}

/// Sets the IP length (and for IPv4 identification and checksum) of segment `index`.
fn fix_ip_header(segment: &mut [u8], layout: Layout, index: usize) {
    let Some(ip) = segment.get_mut(layout.l3..) else {
        return;
    };
    if layout.is_ipv4 {
        let total_len = len_from(ip, 0);
        let mut packet = Ipv4Packet::new_unchecked(ip);
        // Linux numbers the segments' identification consecutively, wrapping.
        let ident = packet.ident().wrapping_add(index as u16);
        packet.set_total_len(total_len);
        packet.set_ident(ident);
        packet.fill_checksum();
    } else {
        let payload_len = len_from(ip, ipv6::HEADER_LEN);
        Ipv6Packet::new_unchecked(ip).set_payload_len(payload_len);
    }
}

/// Sets the TCP sequence number, flags and full checksum of one segment.
fn fix_tcp_header(segment: &mut [u8], layout: Layout, seq_offset: u32, first: bool, last: bool) {
    let (ip, l4) = segment.split_at_mut(layout.l4.min(segment.len()));
    let ip = ip.get(layout.l3..).unwrap_or_default();
    let mut tcp = TcpPacket::new_unchecked(l4);
    tcp.set_seq_number(tcp.seq_number().wrapping_add(seq_offset));
    let mut flags = tcp.flags();
    if !last {
        flags &= !(tcp::FLAG_FIN | tcp::FLAG_PSH);
    }
    if !first {
        flags &= !tcp::FLAG_CWR;
    }
    tcp.set_flags(flags);
    if layout.is_ipv4 {
        let ip = Ipv4Packet::new_unchecked(ip);
        tcp.fill_checksum_v4(ip.src_addr(), ip.dst_addr());
    } else {
        let ip = Ipv6Packet::new_unchecked(ip);
        tcp.fill_checksum_v6(ip.src_addr(), ip.dst_addr());
    }
}

/// Sets the UDP length and full checksum of one datagram.
fn fix_udp_header(segment: &mut [u8], layout: Layout) {
    let (ip, l4) = segment.split_at_mut(layout.l4.min(segment.len()));
    let ip = ip.get(layout.l3..).unwrap_or_default();
    let len = len_from(l4, 0);
    let mut udp = UdpPacket::new_unchecked(l4);
    udp.set_len(len);
    if layout.is_ipv4 {
        let ip = Ipv4Packet::new_unchecked(ip);
        udp.fill_checksum_v4(ip.src_addr(), ip.dst_addr());
    } else {
        let ip = Ipv6Packet::new_unchecked(ip);
        udp.fill_checksum_v6(ip.src_addr(), ip.dst_addr());
    }
}

/// Validates a super-frame's headers against `kind` and finds them.
fn parse_layout(frame: &[u8], kind: GsoKind) -> Result<Layout, GsoError> {
    let l2 = L2Header::parse(frame).map_err(GsoError::Ethernet)?;
    let l3 = l2.l3_offset;
    let ip = frame.get(l3..).unwrap_or_default();
    let (is_ipv4, (ip_header_len, protocol)) = match (l2.ethertype, kind) {
        (EtherType::IPV4, GsoKind::TcpV4 | GsoKind::UdpL4) => (true, parse_ipv4(ip)?),
        (EtherType::IPV6, GsoKind::TcpV6 | GsoKind::UdpL4) => (false, parse_ipv6(ip)?),
        (ethertype, kind) => {
            return Err(GsoError::WrongEtherType {
                kind,
                ethertype: ethertype.0,
            });
        }
    };
    let is_tcp = kind != GsoKind::UdpL4;
    let expected = if is_tcp {
        IpProtocol::TCP
    } else {
        IpProtocol::UDP
    };
    if protocol != expected {
        return Err(GsoError::WrongProtocol {
            kind,
            protocol: protocol.0,
        });
    }
    let l4 = l3 + ip_header_len;
    let l4_bytes = frame.get(l4..).unwrap_or_default();
    let l4_header_len = if is_tcp {
        TcpPacket::new_checked(l4_bytes)
            .map_err(GsoError::Tcp)?
            .header_len()
    } else {
        check_udp(l4_bytes)?
    };
    Ok(Layout {
        l3,
        l4,
        payload: l4 + l4_header_len,
        is_ipv4,
        is_tcp,
    })
}

/// Checks an IPv4 super-frame header; returns its length and protocol.
fn parse_ipv4(ip: &[u8]) -> Result<(usize, IpProtocol), GsoError> {
    if ip.len() >= ipv4::HEADER_LEN && Ipv4Packet::new_unchecked(ip).total_len() == 0 {
        return Err(GsoError::Ipv4BigTcp);
    }
    let packet = Ipv4Packet::new_checked(ip).map_err(GsoError::Ipv4)?;
    let total_len = packet.total_len();
    if usize::from(total_len) != ip.len() {
        return Err(GsoError::Ipv4LengthMismatch {
            total_len,
            available: ip.len(),
        });
    }
    if packet.is_fragment() {
        return Err(GsoError::Ipv4Fragment);
    }
    check_ipv4_options(packet.options())?;
    Ok((packet.header_len(), packet.protocol()))
}

/// Checks that the IPv4 options parse and that none is a source route.
fn check_ipv4_options(options: &[u8]) -> Result<(), GsoError> {
    let mut at = 0;
    while let Some(&kind) = options.get(at) {
        match kind {
            IPV4_OPTION_END => return Ok(()),
            IPV4_OPTION_NOP => at += 1,
            _ if IPV4_OPTION_SOURCE_ROUTES.contains(&kind) => {
                return Err(GsoError::Ipv4SourceRoute(kind));
            }
            _ => match options.get(at + 1).map(|&len| usize::from(len)) {
                Some(len) if len >= 2 && at + len <= options.len() => at += len,
                _ => return Err(GsoError::Ipv4Options(at)),
            },
        }
    }
    Ok(())
}

/// Checks an IPv6 super-frame header; returns the length of the fixed and
/// extension headers and the upper-layer protocol.
///
/// Only Hop-by-Hop and Destination Options are walked: a Routing header
/// changes the pseudo-header's destination, a Fragment header cannot head
/// a super-frame, and AH authenticates the payload it would be cut from.
fn parse_ipv6(ip: &[u8]) -> Result<(usize, IpProtocol), GsoError> {
    let packet = Ipv6Packet::new_checked(ip).map_err(GsoError::Ipv6)?;
    if packet.is_jumbogram() {
        return Err(GsoError::Ipv6Jumbogram);
    }
    let payload_len = packet.payload_len();
    let available = ip.len() - ipv6::HEADER_LEN;
    if usize::from(payload_len) != available {
        return Err(GsoError::Ipv6LengthMismatch {
            payload_len,
            available,
        });
    }
    let mut protocol = packet.next_header();
    let mut offset = ipv6::HEADER_LEN;
    for walked in 0..=ipv6::MAX_EXT_HEADERS {
        let walkable = match protocol {
            IpProtocol::HOP_BY_HOP => walked == 0,
            IpProtocol::IPV6_OPTS => true,
            IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_FRAGMENT | IpProtocol::AH => false,
            _ => return Ok((offset, protocol)),
        };
        if !walkable || walked == ipv6::MAX_EXT_HEADERS {
            return Err(GsoError::Ipv6ExtensionHeader(protocol.0));
        }
        let (next, units) = match ip.get(offset..offset + 2) {
            Some(&[next, units]) => (next, units),
            _ => return Err(GsoError::Ipv6(WireError::Truncated)),
        };
        offset += (usize::from(units) + 1) * 8;
        if offset > ip.len() {
            return Err(GsoError::Ipv6(WireError::Truncated));
        }
        protocol = IpProtocol(next);
    }
    // The loop returns on its last iteration at the latest.
    Err(GsoError::Ipv6ExtensionHeader(protocol.0))
}

/// Checks a USO super-frame's UDP header; returns its length.
fn check_udp(l4: &[u8]) -> Result<usize, GsoError> {
    let udp = UdpPacket::new_checked(l4).map_err(GsoError::Udp)?;
    let len = udp.len();
    if usize::from(len) != l4.len() {
        return Err(GsoError::UdpLengthMismatch {
            len,
            available: l4.len(),
        });
    }
    Ok(udp::HEADER_LEN)
}

#[cfg(test)]
mod tests;
