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
mod tests {
    use super::*;

    // fd00::a -> fd00:244:0:1::5, UDP, hop limit 64, traffic class 0xb8,
    // flow label 0x12345, 12 bytes payload (UDP 53000 -> 53, "data"), 2 bytes padding.
    static PACKET_BYTES: [u8; 54] = [
        0x6b, 0x81, 0x23, 0x45, 0x00, 0x0c, 0x11, 0x40, // ver, tc, flow, len, nh, hlim
        0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, // src
        0xfd, 0x00, 0x02, 0x44, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x05, // dst
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, b'd', b'a', b't', b'a', // UDP
        0xee, 0xee, // padding
    ];

    fn src() -> Ipv6Addr {
        "fd00::a".parse().unwrap()
    }

    fn dst() -> Ipv6Addr {
        "fd00:244:0:1::5".parse().unwrap()
    }

    /// A packet with `exts` (as `(type, bytes)`, bytes without the next-header byte) then UDP.
    fn with_exts(exts: &[(u8, Vec<u8>)], upper: &[u8]) -> Vec<u8> {
        let mut bytes = PACKET_BYTES[..HEADER_LEN].to_vec();
        bytes[6] = exts.first().map_or(17, |e| e.0);
        for (i, (_, body)) in exts.iter().enumerate() {
            bytes.push(exts.get(i + 1).map_or(17, |e| e.0));
            bytes.extend_from_slice(body);
        }
        bytes.extend_from_slice(upper);
        let len = (bytes.len() - HEADER_LEN) as u16;
        bytes[4..6].copy_from_slice(&len.to_be_bytes());
        bytes
    }

    /// An 8-byte Hop-by-Hop/Routing/Destination header body: length 0, PadN.
    fn opts8() -> Vec<u8> {
        vec![0, 1, 4, 0, 0, 0, 0]
    }

    fn frag(offset: u16, more: bool, ident: u32) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
        v.extend_from_slice(&ident.to_be_bytes());
        v
    }

    #[test]
    fn deconstruct() {
        let p = Ipv6Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 12);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), src());
        assert_eq!(p.dst_addr(), dst());
        assert_eq!(p.payload(), &PACKET_BYTES[40..52]);
        assert!(!p.is_jumbogram());
        let upper = p.upper_layer().unwrap();
        assert_eq!(
            upper,
            UpperLayer {
                protocol: IpProtocol::UDP,
                offset: 40,
                fragment: None
            }
        );
        assert_eq!(p.upper_layer_payload(&upper), &PACKET_BYTES[40..52]);

        let oracle = etherparse::Ipv6HeaderSlice::from_slice(&PACKET_BYTES).unwrap();
        assert_eq!(oracle.traffic_class(), p.traffic_class());
        assert_eq!(oracle.flow_label().value(), p.flow_label());
        assert_eq!(oracle.payload_length(), p.payload_len());
        assert_eq!(oracle.next_header().0, p.next_header().0);
        assert_eq!(oracle.source_addr(), p.src_addr());
        assert_eq!(oracle.destination_addr(), p.dst_addr());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xeeu8; 54];
        let mut p = Ipv6Packet::new_unchecked(&mut bytes[..]);
        p.set_version(6);
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        p.set_payload_len(12);
        p.set_next_header(IpProtocol::UDP);
        p.set_hop_limit(64);
        p.set_src_addr(src());
        p.set_dst_addr(dst());
        p.payload_mut().copy_from_slice(&PACKET_BYTES[40..52]);
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Ipv6Packet::new_checked(&PACKET_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        assert_eq!(
            Ipv6Packet::new_checked(&PACKET_BYTES[..51]).unwrap_err(),
            WireError::Truncated
        );
        assert!(Ipv6Packet::new_checked(&PACKET_BYTES[..52]).is_ok());
    }

    #[test]
    fn malformed_version() {
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x4b;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn hop_limit_and_setters_keep_other_bits() {
        let mut bytes = PACKET_BYTES;
        let mut p = Ipv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 63);
        p.set_traffic_class(0x01);
        assert_eq!((p.version(), p.flow_label()), (6, 0x12345));
        p.set_flow_label(0xfff_ffff);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0x01, 0xf_ffff)
        );
        p.set_hop_limit(0);
        p.decrement_hop_limit();
        assert_eq!(p.hop_limit(), 0);
    }

    #[test]
    fn extension_chain_matches_oracle() {
        let udp = &PACKET_BYTES[40..52];
        let exts = [
            (0, opts8()),
            (60, opts8()),
            (43, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (44, frag(0, true, 7)),
        ];
        let bytes = with_exts(&exts, udp);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::UDP);
        assert_eq!(upper.offset, 40 + 8 + 8 + 16 + 8);
        assert_eq!(
            upper.fragment,
            Some(Ipv6Fragment {
                offset: 0,
                more: true,
                ident: 7
            })
        );
        assert_eq!(p.upper_layer_payload(&upper), udp);

        let oracle = etherparse::Ipv6Slice::from_slice(&bytes).unwrap();
        assert_eq!(oracle.payload().ip_number.0, upper.protocol.0);
        assert_eq!(oracle.payload().payload, p.upper_layer_payload(&upper));
        assert!(oracle.is_payload_fragmented());
        let (exts, next, rest) =
            etherparse::Ipv6Extensions::from_slice(etherparse::IpNumber(0), p.payload()).unwrap();
        let f = exts.fragment.unwrap();
        assert_eq!((next.0, rest.len()), (17, udp.len()));
        assert_eq!(
            (
                f.fragment_offset.byte_offset(),
                f.more_fragments,
                f.identification
            ),
            (0, true, 7)
        );
    }

    #[test]
    fn auth_header_length_in_four_byte_units() {
        // AH with payload length 4: (4 + 2) * 4 = 24 bytes.
        let mut ah = vec![4, 0, 0];
        ah.extend_from_slice(&[0xaa; 21]);
        let bytes = with_exts(&[(51, ah)], &PACKET_BYTES[40..52]);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 64));
        let oracle = etherparse::Ipv6Slice::from_slice(&bytes).unwrap();
        assert_eq!(oracle.payload().payload, p.upper_layer_payload(&upper));
    }

    #[test]
    fn later_fragment_stops_walk() {
        // The fragment says "Destination Options follow" but this is a later fragment.
        let mut f = frag(1448, true, 0xdead_beef);
        f[0] = 0;
        let mut bytes = with_exts(&[(44, f)], &[0xff; 16]);
        bytes[HEADER_LEN] = 60;
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!(upper.protocol, IpProtocol::IPV6_OPTS);
        assert_eq!(upper.offset, 48);
        assert_eq!(
            upper.fragment,
            Some(Ipv6Fragment {
                offset: 1448,
                more: true,
                ident: 0xdead_beef
            })
        );
        assert!(upper.fragment.unwrap().is_fragment());
    }

    #[test]
    fn esp_and_no_next_header_end_the_walk() {
        let bytes = with_exts(&[(60, opts8())], &[0; 8]);
        let mut bytes = bytes;
        bytes[HEADER_LEN] = 50;
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap().protocol, IpProtocol::ESP);
        let mut bytes = PACKET_BYTES;
        bytes[6] = 59;
        bytes[5] = 0;
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: IpProtocol::IPV6_NO_NEXT,
                offset: 40,
                fragment: None
            }
        );
        assert!(p.payload().is_empty());
    }

    #[test]
    fn at_most_eight_extension_headers() {
        let eight: Vec<_> = (0..8).map(|_| (60, opts8())).collect();
        let bytes = with_exts(&eight, &[0; 8]);
        let upper = Ipv6Packet::new_checked(&bytes[..])
            .unwrap()
            .upper_layer()
            .unwrap();
        assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 40 + 64));
        let nine: Vec<_> = (0..9).map(|_| (60, opts8())).collect();
        let bytes = with_exts(&nine, &[0; 8]);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn hop_by_hop_only_first() {
        let bytes = with_exts(&[(60, opts8()), (0, opts8())], &[0; 8]);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), WireError::Malformed);
        assert!(etherparse::Ipv6Slice::from_slice(&bytes).is_err());
    }

    #[test]
    fn truncated_extension_headers() {
        // Routing header claiming 16 bytes with 8 present.
        let mut bytes = with_exts(&[(43, opts8())], &[]);
        bytes[HEADER_LEN + 1] = 1;
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.upper_layer().unwrap_err(), WireError::Truncated);
        // Every cut of an extension chain: the payload length bounds the walk.
        let full = with_exts(
            &[
                (0, opts8()),
                (44, frag(0, false, 1)),
                (51, vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            ],
            &[],
        );
        for cut in HEADER_LEN..full.len() {
            let mut bytes = full[..cut].to_vec();
            let len = (cut - HEADER_LEN) as u16;
            bytes[4..6].copy_from_slice(&len.to_be_bytes());
            if len == 0 {
                continue; // payload length 0 with Hop-by-Hop: a (bad) jumbogram.
            }
            let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(
                p.upper_layer().unwrap_err(),
                WireError::Truncated,
                "cut at {cut}"
            );
        }
        let p = Ipv6Packet::new_checked(&full[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!(
            (upper.protocol, upper.offset),
            (IpProtocol::UDP, full.len())
        );
        assert_eq!(
            upper.fragment,
            Some(Ipv6Fragment {
                offset: 0,
                more: false,
                ident: 1
            })
        );
        assert!(!upper.fragment.unwrap().is_fragment());
    }

    fn jumbogram(jumbo_len: u32, total_payload: usize) -> Vec<u8> {
        let mut bytes = PACKET_BYTES[..HEADER_LEN].to_vec();
        bytes[4] = 0;
        bytes[5] = 0;
        bytes[6] = 0;
        // Hop-by-Hop: next header UDP, length 0 (8 bytes), Jumbo Payload at 4n+2.
        bytes.extend_from_slice(&[17, 0, 0xc2, 4]);
        bytes.extend_from_slice(&jumbo_len.to_be_bytes());
        bytes.resize(HEADER_LEN + total_payload, 0x5a);
        bytes
    }

    #[test]
    fn jumbogram_accepted_with_option() {
        let bytes = jumbogram(70_000, 70_000);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.is_jumbogram());
        assert_eq!(p.payload().len(), 70_000);
        let upper = p.upper_layer().unwrap();
        assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 48));
        assert_eq!(p.upper_layer_payload(&upper).len(), 70_000 - 8);
    }

    #[test]
    fn jumbogram_option_after_padding() {
        // 16-byte Hop-by-Hop: Pad1 x4, Jumbo Payload, PadN(2).
        let mut bytes = jumbogram(70_000, 70_000);
        let hbh = [17, 1, 0, 0, 0, 0, 0xc2, 4, 0, 1, 0x11, 0x70, 1, 2, 0, 0];
        bytes[HEADER_LEN..HEADER_LEN + 16].copy_from_slice(&hbh);
        let p = Ipv6Packet::new_checked(&bytes[..]).unwrap();
        let upper = p.upper_layer().unwrap();
        assert_eq!((upper.protocol, upper.offset), (IpProtocol::UDP, 56));
        // Only padding: no Jumbo Payload option.
        bytes[HEADER_LEN + 6] = 1;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn jumbogram_rejections() {
        // Jumbo length that fits 16 bits.
        assert_eq!(
            Ipv6Packet::new_checked(&jumbogram(65_535, 70_000)[..]).unwrap_err(),
            WireError::Malformed
        );
        // Longer than the buffer.
        assert_eq!(
            Ipv6Packet::new_checked(&jumbogram(70_001, 70_000)[..]).unwrap_err(),
            WireError::Truncated
        );
        // No Jumbo option: PadN only.
        let mut bytes = jumbogram(70_000, 70_000);
        bytes[HEADER_LEN + 2] = 1;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed
        );
        // Jumbo option with a bad length.
        let mut bytes = jumbogram(70_000, 70_000);
        bytes[HEADER_LEN + 3] = 3;
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed
        );
        // An option overrunning the header.
        let mut bytes = jumbogram(70_000, 70_000);
        bytes[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&[1, 9]);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed
        );
        // Hop-by-Hop header cut short.
        let bytes = jumbogram(70_000, 70_000);
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..HEADER_LEN + 1]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&bytes[..HEADER_LEN + 7]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn address_update_matches_full_sum() {
        let data = [0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc];
        let full = |a: Ipv6Addr| {
            !checksum::fold(checksum::combine(
                checksum::pseudo_header_v6(a, dst(), 17, 6),
                checksum::sum(&data),
            ))
        };
        let new = Ipv6Addr::new(0xffff, 0xffff, 0, 0, 0xffff, 0, 1, 0xfffe);
        assert_eq!(update_checksum_for_addr(full(src()), src(), new), full(new));
    }

    #[test]
    fn link_local_from_a_mac() {
        // As Linux forms it for 02:00:0a:f4:01:02 (`ip -6 addr`: fe80::aff:fef4:102).
        let mac = crate::wire::MacAddr([0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02]);
        let want: Ipv6Addr = "fe80::aff:fef4:102".parse().unwrap();
        assert_eq!(link_local_eui64(mac), want);
        let global = crate::wire::MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let want: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        assert_eq!(link_local_eui64(global), want);
    }
}
