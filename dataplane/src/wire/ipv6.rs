//! IPv6 packets (RFC 8200), their extension headers and jumbograms (RFC 2675).
//!
//! The fixed header is a view like every other format. The extension headers
//! are walked on demand by [`Ipv6Packet::upper_layer`], which finds the
//! upper-layer protocol and its offset without copying: Hop-by-Hop, Routing,
//! Fragment, Destination Options and AH are walked, at most
//! [`MAX_EXT_HEADERS`] of them, so a crafted chain cannot make a worker spin.

use core::net::Ipv6Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// How many extension headers [`Ipv6Packet::upper_layer`] walks before giving up.
pub const MAX_EXT_HEADERS: usize = 8;
/// Length of the Fragment extension header.
const FRAGMENT_HEADER_LEN: usize = 8;
/// Hop-by-Hop option type Pad1: a single byte with no length field.
const OPTION_PAD1: u8 = 0;
/// Hop-by-Hop option type Jumbo Payload (RFC 2675).
const OPTION_JUMBO: u8 = 0xc2;
/// A jumbogram's length must not fit the 16-bit payload length field.
const MIN_JUMBO_LEN: u32 = 65_536;

/// A view of an IPv6 packet.
///
/// `new_checked` accepts a buffer longer than the packet (Ethernet padding);
/// [`Ipv6Packet::payload`] ends at `payload_len`, or at the end of the buffer
/// for a jumbogram.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The Fragment header found while walking the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Fragment {
    /// Fragment offset in bytes (a multiple of 8).
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl Ipv6Fragment {
    /// True when this is any fragment of a larger datagram (not an atomic fragment).
    pub fn is_fragment(&self) -> bool {
        self.more || self.offset != 0
    }
}

/// Where the extension headers end and what follows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol (for a later fragment: the fragment's next header).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub offset: usize,
    /// The Fragment header, if one was walked.
    pub fragment: Option<Ipv6Fragment>,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks version 6 and that header and `payload_len` fit the buffer.
    ///
    /// A `payload_len` of 0 with a Hop-by-Hop header is a jumbogram: it is
    /// accepted only if that header carries a valid Jumbo Payload option.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 6 {
            return Err(WireError::Malformed);
        }
        if self.is_jumbogram() {
            return check_jumbo(buf);
        }
        if buf.len() < HEADER_LEN + usize::from(self.payload_len()) {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (6 after a successful check).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (read_u16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length: everything after the fixed header (0 for a jumbogram).
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// The header following the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::NEXT_HEADER])
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        read_addr(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_addr(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// True for a jumbogram: payload length 0 and a Hop-by-Hop header.
    pub fn is_jumbogram(&self) -> bool {
        self.payload_len() == 0 && self.next_header() == IpProtocol::HOP_BY_HOP
    }

    /// End of the packet in the buffer, clamped to the buffer.
    fn packet_end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        if self.is_jumbogram() {
            len
        } else {
            (HEADER_LEN + usize::from(self.payload_len())).min(len)
        }
    }

    /// The payload (extension headers included), from byte 40 to `payload_len`.
    pub fn payload(&self) -> &[u8] {
        let end = self.packet_end();
        self.buffer
            .as_ref()
            .get(HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// The upper-layer bytes that `upper` (from [`upper_layer`](Self::upper_layer)) points at.
    pub fn upper_layer_payload(&self, upper: &UpperLayer) -> &[u8] {
        let end = self.packet_end();
        self.buffer
            .as_ref()
            .get(upper.offset..end)
            .unwrap_or_default()
    }

    /// Walks the extension headers to the upper-layer protocol.
    ///
    /// Stops at the first header that is not Hop-by-Hop, Routing, Fragment,
    /// Destination Options or AH (so ESP and No Next Header are reported as
    /// the protocol), and after the Fragment header of a later fragment, whose
    /// payload carries no upper-layer header. A header cut short by the
    /// payload length is `Truncated`; a Hop-by-Hop header after the first
    /// position or more than [`MAX_EXT_HEADERS`] headers are `Malformed`.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let buf = self.buffer.as_ref();
        let packet = buf.get(..self.packet_end()).unwrap_or(buf);
        let mut protocol = self.next_header();
        let mut offset = HEADER_LEN;
        let mut fragment = None;
        for walked in 0..=MAX_EXT_HEADERS {
            let len = match protocol {
                IpProtocol::HOP_BY_HOP if walked != 0 => return Err(WireError::Malformed),
                IpProtocol::HOP_BY_HOP | IpProtocol::IPV6_ROUTE | IpProtocol::IPV6_OPTS => {
                    let units = packet.get(offset + 1).ok_or(WireError::Truncated)?;
                    (usize::from(*units) + 1) * 8
                }
                IpProtocol::AH => {
                    let units = packet.get(offset + 1).ok_or(WireError::Truncated)?;
                    (usize::from(*units) + 2) * 4
                }
                IpProtocol::IPV6_FRAGMENT => FRAGMENT_HEADER_LEN,
                _ => {
                    return Ok(UpperLayer {
                        protocol,
                        offset,
                        fragment,
                    });
                }
            };
            if walked == MAX_EXT_HEADERS {
                return Err(WireError::Malformed);
            }
            // Every length above is at least 8, so `header[0]` exists.
            let header = packet
                .get(offset..offset + len)
                .ok_or(WireError::Truncated)?;
            let is_fragment_header = protocol == IpProtocol::IPV6_FRAGMENT;
            protocol = IpProtocol(header[0]);
            offset += len;
            if is_fragment_header {
                let offset_flags = read_u16(header, 2);
                let frag = Ipv6Fragment {
                    offset: offset_flags & 0xfff8,
                    more: offset_flags & 0x0001 != 0,
                    ident: read_u32(header, 4),
                };
                fragment = Some(frag);
                if frag.offset != 0 {
                    return Ok(UpperLayer {
                        protocol,
                        offset,
                        fragment,
                    });
                }
            }
        }
        // The loop returns on its last iteration at the latest.
        Err(WireError::Malformed)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the version field (callers set 6).
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_TC_FLOW];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the traffic class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let buf = self.buffer.as_mut();
        let word = read_u16(buf, field::VER_TC_FLOW);
        write_u16(
            buf,
            field::VER_TC_FLOW,
            (word & 0xf00f) | (u16::from(value) << 4),
        );
    }

    /// Sets the flow label (only the low 20 bits are used).
    pub fn set_flow_label(&mut self, value: u32) {
        let buf = self.buffer.as_mut();
        let word = read_u32(buf, field::VER_TC_FLOW);
        write_u32(
            buf,
            field::VER_TC_FLOW,
            (word & 0xfff0_0000) | (value & 0x000f_ffff),
        );
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::PAYLOAD_LEN, value);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value.0;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Decrements the hop limit by one (IPv6 has no header checksum).
    ///
    /// Callers check `hop_limit() > 1` first; 0 stays 0.
    pub fn decrement_hop_limit(&mut self) {
        let b = &mut self.buffer.as_mut()[field::HOP_LIMIT];
        *b = b.saturating_sub(1);
    }

    /// Mutable payload, from byte 40 to `payload_len` (or the buffer end for a jumbogram).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.packet_end();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// Mutable upper-layer bytes that `upper` points at.
    pub fn upper_layer_payload_mut(&mut self, upper: &UpperLayer) -> &mut [u8] {
        let end = self.packet_end();
        self.buffer
            .as_mut()
            .get_mut(upper.offset..end)
            .unwrap_or_default()
    }
}

/// The link-local address a host forms from `mac` by modified EUI-64
/// (RFC 4291 appendix A, RFC 4862 §5.3): `fe80::` with the MAC split by
/// `ff:fe` and its universal/local bit flipped. Linux's `addr_gen_mode`
/// `eui64` (the default) gives an interface this address.
pub fn link_local_eui64(mac: crate::wire::MacAddr) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac.octets();
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

/// Reads the 16-byte address at `at`; callers have checked the length.
fn read_addr(buf: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&buf[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// Checks that the Hop-by-Hop header at byte 40 carries a Jumbo Payload
/// option whose length needs a jumbogram and fits the buffer.
fn check_jumbo(buf: &[u8]) -> Result<()> {
    let units = buf.get(HEADER_LEN + 1).ok_or(WireError::Truncated)?;
    let hbh_len = (usize::from(*units) + 1) * 8;
    let hbh = buf
        .get(HEADER_LEN..HEADER_LEN + hbh_len)
        .ok_or(WireError::Truncated)?;
    let mut options = hbh.get(2..).unwrap_or_default();
    while let Some((&kind, rest)) = options.split_first() {
        if kind == OPTION_PAD1 {
            options = rest;
            continue;
        }
        let (&len, rest) = rest.split_first().ok_or(WireError::Malformed)?;
        let (data, rest) = rest
            .split_at_checked(usize::from(len))
            .ok_or(WireError::Malformed)?;
        if kind == OPTION_JUMBO {
            let jumbo: [u8; 4] = data.try_into().map_err(|_| WireError::Malformed)?;
            let jumbo_len = u32::from_be_bytes(jumbo);
            if jumbo_len < MIN_JUMBO_LEN {
                return Err(WireError::Malformed);
            }
            let available = buf.len() - HEADER_LEN;
            return if usize::try_from(jumbo_len).unwrap_or(usize::MAX) > available {
                Err(WireError::Truncated)
            } else {
                Ok(())
            };
        }
        options = rest;
    }
    Err(WireError::Malformed)
}

/// RFC 1624 update of a TCP/UDP/ICMPv6 checksum after an IPv6 address in
/// the pseudo-header changed from `old` to `new`.
pub(crate) fn update_checksum_for_addr(check: u16, old: Ipv6Addr, new: Ipv6Addr) -> u16 {
    // One pass of eqn. 3 over all eight words: 17 terms of 16 bits fit in u32.
    let mut acc = u32::from(!check);
    for (o, n) in old.segments().into_iter().zip(new.segments()) {
        acc += u32::from(!o) + u32::from(n);
    }
    !checksum::fold(acc)
}

#[cfg(test)]
mod tests;
