//! IPv4 packets (RFC 791): header with options, fragments recognised.

use core::net::Ipv4Addr;

use super::checksum;
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

/// An IP protocol number (IPv4 `protocol`, IPv6 `next header`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 Hop-by-Hop options.
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    /// ICMP for IPv4.
    pub const ICMP: IpProtocol = IpProtocol(1);
    /// TCP.
    pub const TCP: IpProtocol = IpProtocol(6);
    /// UDP.
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 Fragment header.
    pub const IPV6_FRAGMENT: IpProtocol = IpProtocol(44);
    /// Encapsulating Security Payload.
    pub const ESP: IpProtocol = IpProtocol(50);
    /// Authentication Header.
    pub const AH: IpProtocol = IpProtocol(51);
    /// ICMP for IPv6.
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 "no next header".
    pub const IPV6_NO_NEXT: IpProtocol = IpProtocol(59);
    /// IPv6 Destination options.
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
    /// SCTP.
    pub const SCTP: IpProtocol = IpProtocol(132);
}

pub(crate) mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: usize = 12;
    pub const DST_ADDR: usize = 16;
}

/// Length of the IPv4 header without options.
pub const HEADER_LEN: usize = 20;
/// Flag bit "don't fragment" in the flags/offset word.
const FLAG_DF: u16 = 0x4000;
/// Flag bit "more fragments".
const FLAG_MF: u16 = 0x2000;
/// The fragment offset (in 8-byte units) in the flags/offset word.
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
///
/// `new_checked` accepts a buffer longer than the packet (Ethernet padding);
/// [`Ipv4Packet::payload`] ends at `total_len`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// True when the checksum of a 20-byte header (no options) verifies:
/// its five 32-bit words summed and folded once, unrolled (every routed
/// packet is checked; 12 instructions fewer than the loop of
/// [`checksum::sum_u64`]).
#[inline]
pub fn plain_header_checksum_ok(h: &[u8; HEADER_LEN]) -> bool {
    checksum::fold_u64(plain_header_sum(h)) == 0xffff
}

/// The one's-complement sum of a 20-byte header: its five 32-bit words,
/// unrolled.
#[inline]
fn plain_header_sum(h: &[u8; HEADER_LEN]) -> u64 {
    let word = |at: usize| u64::from(u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]));
    word(0) + word(4) + word(8) + word(12) + word(16)
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks version 4, IHL ≥ 5, and that header and `total_len` fit the buffer.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if buf[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::Malformed);
        }
        if buf.len() < total_len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 after a successful check).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// True for version 4 with a 20-byte header (no options): the
    /// common case, told by one byte.
    #[inline]
    pub fn is_plain(&self) -> bool {
        self.buffer.as_ref()[field::VER_IHL] == 0x45
    }

    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP and ECN byte.
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length: header plus payload.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True when this is any fragment of a larger datagram.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// True for a non-first fragment (it carries no L4 header).
    pub fn is_later_fragment(&self) -> bool {
        self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SRC_ADDR))
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::DST_ADDR))
    }

    /// The header bytes, options included.
    pub fn header(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..self.header_len())
            .unwrap_or_default()
    }

    /// The options bytes (empty when IHL is 5).
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or_default()
    }

    /// True when the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        let header = self.header();
        match <&[u8; HEADER_LEN]>::try_from(header) {
            Ok(h) => plain_header_checksum_ok(h),
            Err(_) => checksum::fold_u64(checksum::sum_u64(header)) == 0xffff,
        }
    }

    /// The payload, from the end of the header to `total_len`.
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or_default()
    }

    /// Partial sum of the TCP/UDP pseudo-header for this packet's payload.
    pub fn pseudo_header_sum(&self) -> u32 {
        let len = self.payload().len();
        checksum::pseudo_header_v4(
            self.src_addr(),
            self.dst_addr(),
            self.protocol().0,
            len as u32,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = (header_len / 4).min(15) as u8;
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ihl;
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length (no checksum update).
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification (no checksum update).
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets DF, clears MF and the offset (no checksum update).
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        write_u16(
            self.buffer.as_mut(),
            field::FLG_OFF,
            if dont_frag { FLAG_DF } else { 0 },
        );
    }

    /// Marks the packet a fragment at `offset` bytes (a multiple of 8,
    /// below 65,536) of its datagram, with more to come if `more`; DF
    /// clear (no checksum update).
    pub fn set_fragment(&mut self, more: bool, offset: u16) {
        let more = if more { FLAG_MF } else { 0 };
        write_u16(self.buffer.as_mut(), field::FLG_OFF, more | (offset >> 3));
    }

    /// Sets the TTL (no checksum update).
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol (no checksum update).
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.0;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address (no checksum update).
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SRC_ADDR, addr.into());
    }

    /// Sets the destination address (no checksum update).
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::DST_ADDR, addr.into());
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = match self.buffer.as_ref().first_chunk::<HEADER_LEN>() {
            // The common header, without options: summed unrolled.
            Some(h) if self.is_plain() => !checksum::fold_u64(plain_header_sum(h)),
            _ => checksum::checksum(self.header()),
        };
        self.set_checksum(c);
    }

    /// Decrements the TTL by one and updates the checksum incrementally.
    ///
    /// Callers check `ttl() > 1` first (RFC 1812 §5.3.1).
    pub fn decrement_ttl(&mut self) {
        let buf = self.buffer.as_ref();
        let old = read_u16(buf, field::TTL);
        let new = old.wrapping_sub(0x0100);
        let check = checksum::update_u16(self.checksum(), old, new);
        write_u16(self.buffer.as_mut(), field::TTL, new);
        self.set_checksum(check);
    }

    /// Sets the DSCP/ECN byte and updates the checksum (RFC 1624: the
    /// byte shares a 16-bit word with version and IHL).
    pub fn set_dscp_ecn_with_checksum(&mut self, value: u8) {
        let old = read_u16(self.buffer.as_ref(), field::VER_IHL);
        let new = (old & 0xff00) | u16::from(value);
        let check = checksum::update_u16(self.checksum(), old, new);
        self.set_dscp_ecn(value);
        self.set_checksum(check);
    }

    /// Sets the TTL and updates the checksum incrementally.
    pub fn set_ttl_with_checksum(&mut self, ttl: u8) {
        let buf = self.buffer.as_ref();
        let old = read_u16(buf, field::TTL);
        let new = u16::from(ttl) << 8 | (old & 0x00ff);
        let check = checksum::update_u16(self.checksum(), old, new);
        write_u16(self.buffer.as_mut(), field::TTL, new);
        self.set_checksum(check);
    }

    /// Rewrites the source address and updates the header checksum;
    /// returns the old address so L4 checksums can be updated too.
    pub fn rewrite_src_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.src_addr();
        let check = checksum::update_u32(self.checksum(), old.into(), addr.into());
        self.set_src_addr(addr);
        self.set_checksum(check);
        old
    }

    /// Rewrites the destination address and updates the header checksum;
    /// returns the old address.
    pub fn rewrite_dst_addr(&mut self, addr: Ipv4Addr) -> Ipv4Addr {
        let old = self.dst_addr();
        let check = checksum::update_u32(self.checksum(), old.into(), addr.into());
        self.set_dst_addr(addr);
        self.set_checksum(check);
        old
    }

    /// Mutable payload, from the end of the header to `total_len`.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        self.buffer.as_mut().get_mut(range).unwrap_or_default()
    }
}

/// The fields needed to emit a plain (option-less) IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes.
    pub payload_len: u16,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Writes a 20-byte header with DF clear, ident 0 and a valid checksum.
    ///
    /// `buffer` must hold at least [`HEADER_LEN`] bytes; returns `Truncated` otherwise.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<()> {
        let hdr = buffer.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let mut p = Ipv4Packet::new_unchecked(hdr);
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(0);
        p.set_total_len(self.payload_len.saturating_add(HEADER_LEN as u16));
        p.set_ident(0);
        p.set_unfragmented(false);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 192.168.1.10 -> 10.244.1.5, UDP, TTL 64, 4 bytes payload, plus 2 bytes padding.
    static PACKET_BYTES: [u8; 26] = [
        0x45, 0x00, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x01,
        0x0a, 0x0a, 0xf4, 0x01, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00,
    ];

    fn packet() -> Vec<u8> {
        let mut bytes = PACKET_BYTES.to_vec();
        let c = checksum::checksum(&bytes[..20]);
        bytes[10..12].copy_from_slice(&c.to_be_bytes());
        bytes
    }

    #[test]
    fn deconstruct() {
        let bytes = packet();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(10, 244, 1, 5));
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
    }

    proptest::proptest! {
        /// The unrolled 20-byte check and the general one (with options)
        /// agree with summing 16-bit words, for any header bytes.
        #[test]
        fn verify_checksum_matches_the_16_bit_sum(
            mut header in proptest::collection::vec(proptest::num::u8::ANY, 60),
            options in 0usize..=10,
            fix in proptest::bool::ANY,
        ) {
            let len = HEADER_LEN + options * 4;
            header[0] = 0x40 | (len / 4) as u8;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            if fix {
                header[10..12].fill(0);
                let c = checksum::checksum(&header[..len]);
                header[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let words: u32 = header[..len]
                .chunks_exact(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum();
            let expected = checksum::fold(words) == 0xffff;
            let p = Ipv4Packet::new_checked(&header[..len]).unwrap();
            proptest::prop_assert_eq!(p.verify_checksum(), expected);
            if fix {
                proptest::prop_assert!(p.verify_checksum());
            }
        }
    }

    #[test]
    fn construct() {
        let mut bytes = vec![0u8; 24];
        Ipv4Repr {
            src_addr: Ipv4Addr::new(192, 168, 1, 10),
            dst_addr: Ipv4Addr::new(10, 244, 1, 5),
            protocol: IpProtocol::UDP,
            payload_len: 4,
            ttl: 64,
        }
        .emit(&mut bytes)
        .unwrap();
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.verify_checksum());
        let oracle = etherparse::Ipv4HeaderSlice::from_slice(&bytes)
            .unwrap()
            .to_header();
        assert_eq!(oracle.calc_header_checksum(), p.checksum());
    }

    #[test]
    fn fragment_fields() {
        let mut bytes = packet();
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_fragment(true, 1480);
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        p.set_fragment(false, 65_528);
        assert!(!p.more_frags() && p.is_later_fragment());
        assert_eq!(p.frag_offset(), 65_528);
        p.fill_checksum();
        let oracle = etherparse::Ipv4HeaderSlice::from_slice(&bytes).unwrap();
        assert_eq!(oracle.fragments_offset().value() * 8, 65_528);
        assert!(!oracle.more_fragments());
    }

    #[test]
    fn truncated_and_malformed() {
        let bytes = packet();
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Ipv4Packet::new_checked(&bytes[..23]).unwrap_err(),
            WireError::Truncated
        );
        let mut bad = bytes.clone();
        bad[0] = 0x44; // IHL 4
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut bad = bytes.clone();
        bad[0] = 0x65; // version 6
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut bad = bytes.clone();
        bad[3] = 0x10; // total_len 16 < IHL
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut bad = bytes;
        bad[0] = 0x4f; // IHL 15 = 60 bytes > buffer
        assert!(Ipv4Packet::new_checked(&bad[..]).is_err());
    }

    #[test]
    fn fragments_recognised() {
        let mut bytes = packet();
        bytes[6] = 0x20; // MF, offset 0
        bytes[7] = 0x00;
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.is_fragment() && !p.is_later_fragment());
        bytes[6] = 0x00;
        bytes[7] = 0x03; // offset 24 bytes
        let p = Ipv4Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.is_fragment() && p.is_later_fragment());
        assert_eq!(p.frag_offset(), 24);
    }

    #[test]
    fn options_walked() {
        // IHL 6 with a 4-byte option (NOP NOP NOP EOL).
        let mut bytes = vec![
            0x46, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 1, 1, 1, 0,
        ];
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum();
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn rewrites_match_oracle() {
        let mut bytes = packet();
        let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.decrement_ttl();
        p.rewrite_src_addr(Ipv4Addr::new(172, 16, 0, 9));
        p.rewrite_dst_addr(Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let ours = p.checksum();
        let oracle = etherparse::Ipv4HeaderSlice::from_slice(&bytes)
            .unwrap()
            .to_header();
        assert_eq!(oracle.calc_header_checksum(), ours);
    }

    #[test]
    fn ttl_decrement_property() {
        for ttl in 2..=255u8 {
            for ident in [0u16, 0x00ff, 0xff00, 0xfffe, 0xffff] {
                let mut bytes = packet();
                bytes[8] = ttl;
                bytes[4..6].copy_from_slice(&ident.to_be_bytes());
                let mut p = Ipv4Packet::new_checked(&mut bytes[..]).unwrap();
                p.fill_checksum();
                p.decrement_ttl();
                assert!(p.verify_checksum(), "ttl {ttl} ident {ident:#x}");
                p.set_ttl_with_checksum(ttl ^ 0x5a);
                assert!(p.verify_checksum(), "set ttl {ttl} ident {ident:#x}");
                p.decrement_ttl();
                let ours = p.checksum();
                let oracle = etherparse::Ipv4HeaderSlice::from_slice(&bytes)
                    .unwrap()
                    .to_header();
                assert_eq!(oracle.calc_header_checksum(), ours);
            }
        }
    }
}
