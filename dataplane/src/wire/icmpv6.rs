//! ICMPv6 messages (RFC 4443) and the Neighbor Discovery fields (RFC 4861)
//! the switch needs to answer for its gateway addresses.
//!
//! The view is made over the upper-layer bytes of the IPv6 packet; the
//! checksum covers all of them plus the IPv6 pseudo-header.

use core::net::Ipv6Addr;

use super::checksum;
use super::ipv4::IpProtocol;
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

/// An ICMPv6 message type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Icmpv6Type(pub u8);

impl Icmpv6Type {
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: Icmpv6Type = Icmpv6Type(1);
    /// Packet Too Big.
    pub const PACKET_TOO_BIG: Icmpv6Type = Icmpv6Type(2);
    /// Time Exceeded.
    pub const TIME_EXCEEDED: Icmpv6Type = Icmpv6Type(3);
    /// Parameter Problem.
    pub const PARAM_PROBLEM: Icmpv6Type = Icmpv6Type(4);
    /// Echo Request.
    pub const ECHO_REQUEST: Icmpv6Type = Icmpv6Type(128);
    /// Echo Reply.
    pub const ECHO_REPLY: Icmpv6Type = Icmpv6Type(129);
    /// Multicast Listener Query (RFC 2710, RFC 3810): sent by routers.
    pub const MLD_QUERY: Icmpv6Type = Icmpv6Type(130);
    /// Multicast Listener Report (MLDv1).
    pub const MLD_REPORT: Icmpv6Type = Icmpv6Type(131);
    /// Multicast Listener Done (MLDv1).
    pub const MLD_DONE: Icmpv6Type = Icmpv6Type(132);
    /// Router Solicitation.
    pub const ROUTER_SOLICIT: Icmpv6Type = Icmpv6Type(133);
    /// Router Advertisement.
    pub const ROUTER_ADVERT: Icmpv6Type = Icmpv6Type(134);
    /// Neighbor Solicitation.
    pub const NEIGHBOR_SOLICIT: Icmpv6Type = Icmpv6Type(135);
    /// Neighbor Advertisement.
    pub const NEIGHBOR_ADVERT: Icmpv6Type = Icmpv6Type(136);
    /// Redirect.
    pub const REDIRECT: Icmpv6Type = Icmpv6Type(137);
    /// Router Renumbering (RFC 2894).
    pub const ROUTER_RENUMBERING: Icmpv6Type = Icmpv6Type(138);
    /// Version 2 Multicast Listener Report (RFC 3810).
    pub const MLD_V2_REPORT: Icmpv6Type = Icmpv6Type(143);
    /// Multicast Router Advertisement (RFC 4286).
    pub const MULTICAST_ROUTER_ADVERT: Icmpv6Type = Icmpv6Type(151);
    /// Multicast Router Termination (RFC 4286).
    pub const MULTICAST_ROUTER_TERMINATION: Icmpv6Type = Icmpv6Type(153);

    /// True for error messages (types 0..=127), which carry the invoking packet.
    pub fn is_error(self) -> bool {
        self.0 < 128
    }

    /// True for the Neighbor Discovery messages that carry a target address.
    pub fn has_target_addr(self) -> bool {
        self == Self::NEIGHBOR_SOLICIT || self == Self::NEIGHBOR_ADVERT || self == Self::REDIRECT
    }

    /// Where the options of a Neighbor Discovery message start (RFC 4861
    /// §4): after the reserved word of a Router Solicitation, the target of
    /// a Neighbor Solicitation/Advertisement, both addresses of a Redirect,
    /// the timers of a Router Advertisement. `None` for other types.
    pub fn nd_options_offset(self) -> Option<usize> {
        match self {
            Self::ROUTER_SOLICIT => Some(HEADER_LEN),
            Self::ROUTER_ADVERT => Some(HEADER_LEN + 8),
            Self::NEIGHBOR_SOLICIT | Self::NEIGHBOR_ADVERT => Some(ND_HEADER_LEN),
            Self::REDIRECT => Some(ND_HEADER_LEN + 16),
            _ => None,
        }
    }
}

/// ND option: Source Link-Layer Address.
pub const ND_OPTION_SOURCE_LL_ADDR: u8 = 1;
/// ND option: Target Link-Layer Address.
pub const ND_OPTION_TARGET_LL_ADDR: u8 = 2;

/// The Neighbor Discovery options in `options` (RFC 4861 §4.6), as
/// `(type, bytes of the option after its type and length)`; an option of
/// length 0 or running past the end yields `Err` once and ends the walk
/// (receivers discard such a message).
pub fn nd_options(options: &[u8]) -> NdOptions<'_> {
    NdOptions { rest: options }
}

/// Iterator over Neighbor Discovery options; see [`nd_options`].
#[derive(Debug, Clone)]
pub struct NdOptions<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after) = self.rest.split_first()?;
        let units = after.first().copied().unwrap_or(0);
        let len = usize::from(units) * 8;
        let Some((option, rest)) = self.rest.split_at_checked(len).filter(|_| len > 0) else {
            self.rest = &[];
            return Some(Err(WireError::Malformed));
        };
        self.rest = rest;
        Some(Ok((kind, option.get(2..).unwrap_or_default())))
    }
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ_NO: usize = 6;
    pub const MTU: usize = 4;
    pub const POINTER: usize = 4;
    pub const ND_FLAGS: usize = 4;
    pub const PAYLOAD: usize = 8;
    pub const TARGET_ADDR: Range<usize> = 8..24;
}

/// Length of the ICMPv6 header: type, code, checksum and four message bytes.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of a Neighbor Solicitation/Advertisement without options.
pub const ND_HEADER_LEN: usize = field::TARGET_ADDR.end;

/// Neighbor Advertisement flag: the sender is a router.
pub const ND_FLAG_ROUTER: u8 = 0x80;
/// Neighbor Advertisement flag: sent in response to a solicitation.
pub const ND_FLAG_SOLICITED: u8 = 0x40;
/// Neighbor Advertisement flag: override an existing cache entry.
pub const ND_FLAG_OVERRIDE: u8 = 0x20;

/// A view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Icmpv6Type {
        Icmpv6Type(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (meaningful for Echo Request/Reply).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (meaningful for Echo Request/Reply).
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ_NO)
    }

    /// The MTU of the next hop (meaningful for Packet Too Big).
    pub fn mtu(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::MTU)
    }

    /// Offset of the offending byte (meaningful for Parameter Problem).
    pub fn pointer(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::POINTER)
    }

    /// Everything after the 8-byte header (echo data, ND body, invoking packet).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// The start of the packet that caused an error message.
    pub fn invoking_packet(&self) -> &[u8] {
        self.payload()
    }

    /// The Neighbor Advertisement R/S/O flags byte (see the `ND_FLAG_*` constants).
    pub fn nd_flags(&self) -> u8 {
        self.buffer.as_ref()[field::ND_FLAGS]
    }

    /// The target of a Neighbor Solicitation/Advertisement or Redirect.
    ///
    /// `None` for other types, or when the message is shorter than 24 bytes.
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        if !self.msg_type().has_target_addr() {
            return None;
        }
        let octets: [u8; 16] = self
            .buffer
            .as_ref()
            .get(field::TARGET_ADDR)?
            .try_into()
            .ok()?;
        Some(Ipv6Addr::from(octets))
    }

    /// The ND options after the target address (empty when there are none or the message is short).
    pub fn nd_options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(ND_HEADER_LEN..)
            .unwrap_or_default()
    }

    /// Unfolded sum of pseudo-header and message.
    fn sum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        let buf = self.buffer.as_ref();
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::ICMPV6.0, len);
        checksum::combine(pseudo, checksum::sum(buf))
    }

    /// True when the checksum verifies for a packet from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::fold(self.sum(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type (no checksum update).
    pub fn set_msg_type(&mut self, value: Icmpv6Type) {
        self.buffer.as_mut()[field::TYPE] = value.0;
    }

    /// Sets the message code (no checksum update).
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the echo identifier (no checksum update).
    pub fn set_echo_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Sets the echo sequence number (no checksum update).
    pub fn set_echo_seq_no(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ_NO, value);
    }

    /// Sets the MTU of a Packet Too Big (no checksum update).
    pub fn set_mtu(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::MTU, value);
    }

    /// Sets the pointer of a Parameter Problem (no checksum update).
    pub fn set_pointer(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::POINTER, value);
    }

    /// Sets the Neighbor Advertisement flags and clears the reserved bytes (no checksum update).
    pub fn set_nd_flags(&mut self, flags: u8) {
        write_u32(
            self.buffer.as_mut(),
            field::ND_FLAGS,
            u32::from(flags) << 24,
        );
    }

    /// Sets the ND target address; `Truncated` if the message is shorter than 24 bytes.
    pub fn set_target_addr(&mut self, addr: Ipv6Addr) -> Result<()> {
        let target = self
            .buffer
            .as_mut()
            .get_mut(field::TARGET_ADDR)
            .ok_or(WireError::Truncated)?;
        target.copy_from_slice(&addr.octets());
        Ok(())
    }

    /// Mutable access to everything after the 8-byte header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }

    /// Mutable ND options after the target address.
    pub fn nd_options_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(ND_HEADER_LEN..)
            .unwrap_or_default()
    }

    /// Computes the checksum from scratch for a packet from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let check = !checksum::fold(self.sum(src, dst));
        self.set_checksum(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0244, 0, 1, 0, 0, 0, 2);
    const GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0244, 0, 1, 0, 0, 0, 1);

    // Echo request id 0x1234 seq 7, checksum filled by the test, 4 bytes data.
    static ECHO_BYTES: [u8; 12] = [
        0x80, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x07, 0xde, 0xad, 0xbe, 0xef,
    ];

    // Neighbor Solicitation for the gateway, with a Source Link-Layer Address option.
    static NS_BYTES: [u8; 32] = [
        0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // type, code, checksum, reserved
        0xfd, 0x00, 0x02, 0x44, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, // target
        0x01, 0x01, 0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02, // SLLA option
    ];

    fn oracle_valid(bytes: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        etherparse::Icmpv6Slice::from_slice(bytes)
            .unwrap()
            .is_checksum_valid(src.octets(), dst.octets())
    }

    #[test]
    fn deconstruct() {
        let p = Icmpv6Packet::new_checked(&ECHO_BYTES[..]).unwrap();
        assert_eq!(p.msg_type(), Icmpv6Type::ECHO_REQUEST);
        assert!(!p.msg_type().is_error());
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 7);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(p.target_addr(), None);
        let oracle = etherparse::Icmpv6Slice::from_slice(&ECHO_BYTES).unwrap();
        assert_eq!(
            oracle.icmp_type(),
            etherparse::Icmpv6Type::EchoRequest(etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 })
        );
        assert_eq!(oracle.payload(), p.payload());
    }

    #[test]
    fn construct_echo_reply() {
        let mut bytes = [0u8; 12];
        let mut p = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_msg_type(Icmpv6Type::ECHO_REPLY);
        p.set_code(0);
        p.set_echo_ident(0x1234);
        p.set_echo_seq_no(7);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        p.fill_checksum(GATEWAY, SRC);
        assert!(p.verify_checksum(GATEWAY, SRC));
        assert!(oracle_valid(&bytes, GATEWAY, SRC));

        // The same reply built by etherparse carries the same checksum.
        let builder = etherparse::PacketBuilder::ipv6(GATEWAY.octets(), SRC.octets(), 64)
            .icmpv6_echo_reply(0x1234, 7);
        let mut frame = Vec::new();
        builder
            .write(&mut frame, &[0xde, 0xad, 0xbe, 0xef])
            .unwrap();
        assert_eq!(&frame[40..], &bytes[..]);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv6Packet::new_checked(&ECHO_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let p = Icmpv6Packet::new_checked(&ECHO_BYTES[..HEADER_LEN]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn neighbor_solicitation() {
        let mut bytes = NS_BYTES;
        let mut p = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum(SRC, "ff02::1:ff00:1".parse().unwrap());
        assert_eq!(p.msg_type(), Icmpv6Type::NEIGHBOR_SOLICIT);
        assert_eq!(p.target_addr(), Some(GATEWAY));
        assert_eq!(p.nd_options(), &NS_BYTES[24..]);
        assert!(oracle_valid(&bytes, SRC, "ff02::1:ff00:1".parse().unwrap()));

        // Truncated NS: the view is fine, the target is not there.
        let p = Icmpv6Packet::new_checked(&NS_BYTES[..23]).unwrap();
        assert_eq!(p.target_addr(), None);
        assert!(p.nd_options().is_empty());
        let mut short = NS_BYTES;
        let mut p = Icmpv6Packet::new_checked(&mut short[..20]).unwrap();
        assert_eq!(p.set_target_addr(GATEWAY), Err(WireError::Truncated));
        assert!(p.nd_options_mut().is_empty());
    }

    #[test]
    fn answer_solicitation_in_place() {
        let mut bytes = NS_BYTES;
        let mut p = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_msg_type(Icmpv6Type::NEIGHBOR_ADVERT);
        p.set_nd_flags(ND_FLAG_ROUTER | ND_FLAG_SOLICITED | ND_FLAG_OVERRIDE);
        p.nd_options_mut()
            .copy_from_slice(&[0x02, 0x01, 0x02, 0x00, 0x0a, 0xf4, 0x01, 0x01]);
        p.fill_checksum(GATEWAY, SRC);
        assert_eq!(p.nd_flags(), 0xe0);
        assert_eq!(p.target_addr(), Some(GATEWAY));
        assert!(p.verify_checksum(GATEWAY, SRC));
        let ours = p.checksum();
        assert!(oracle_valid(&bytes, GATEWAY, SRC));
        let oracle = etherparse::Icmpv6Slice::from_slice(&bytes).unwrap();
        let expected = oracle
            .icmp_type()
            .calc_checksum(GATEWAY.octets(), SRC.octets(), oracle.payload())
            .unwrap();
        assert_eq!(expected, ours);
        match oracle.icmp_type() {
            etherparse::Icmpv6Type::NeighborAdvertisement(h) => {
                assert!(h.router && h.solicited && h.r#override);
            }
            other => panic!("etherparse saw {other:?}"),
        }
    }

    #[test]
    fn packet_too_big_and_errors() {
        let invoking = [0x60u8, 0, 0, 0, 0, 8, 17, 64];
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes.extend_from_slice(&invoking);
        let mut p = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_msg_type(Icmpv6Type::PACKET_TOO_BIG);
        p.set_mtu(1450);
        p.fill_checksum(GATEWAY, SRC);
        assert_eq!(p.mtu(), 1450);
        assert!(p.msg_type().is_error());
        assert_eq!(p.invoking_packet(), &invoking);
        assert!(oracle_valid(&bytes, GATEWAY, SRC));
        match etherparse::Icmpv6Slice::from_slice(&bytes)
            .unwrap()
            .icmp_type()
        {
            etherparse::Icmpv6Type::PacketTooBig { mtu } => assert_eq!(mtu, 1450),
            other => panic!("etherparse saw {other:?}"),
        }

        let mut p = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.set_msg_type(Icmpv6Type::PARAM_PROBLEM);
        p.set_pointer(6);
        p.fill_checksum(GATEWAY, SRC);
        assert_eq!(p.pointer(), 6);
        assert!(oracle_valid(&bytes, GATEWAY, SRC));
    }

    #[test]
    fn verify_rejects_corruption() {
        let mut bytes = ECHO_BYTES;
        let mut p = Icmpv6Packet::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum(SRC, GATEWAY);
        assert!(p.verify_checksum(SRC, GATEWAY));
        assert!(!p.verify_checksum(SRC, Ipv6Addr::LOCALHOST));
        p.payload_mut()[0] ^= 1;
        assert!(!p.verify_checksum(SRC, GATEWAY));
        assert!(!oracle_valid(&bytes, SRC, GATEWAY));
    }

    #[test]
    fn nd_options_walk() {
        let ns = Icmpv6Packet::new_checked(&NS_BYTES[..]).unwrap();
        let at = ns.msg_type().nd_options_offset().unwrap();
        assert_eq!(at, ND_HEADER_LEN);
        let options: Vec<_> = nd_options(&NS_BYTES[at..]).collect();
        assert_eq!(
            options,
            [Ok((
                ND_OPTION_SOURCE_LL_ADDR,
                &[2, 0, 0x0a, 0xf4, 1, 2][..]
            ))]
        );
        // A zero length, or one past the end, stops the walk with an error.
        for bad in [&[1u8, 0, 0, 0, 0, 0, 0, 0][..], &[1, 2, 0, 0, 0, 0, 0, 0]] {
            let mut walk = nd_options(bad);
            assert_eq!(walk.next(), Some(Err(WireError::Malformed)));
            assert_eq!(walk.next(), None);
        }
        assert_eq!(nd_options(&[]).next(), None);
        let offsets = [133u8, 134, 137, 128].map(|t| Icmpv6Type(t).nd_options_offset());
        assert_eq!(offsets, [Some(8), Some(16), Some(40), None]);
    }
}
