//! UDP datagrams (RFC 768) and their checksum over IPv4 and IPv6.
//!
//! Over IPv4 a checksum field of 0 means "no checksum" and stays 0 through
//! every rewrite; a computed 0 is sent as 0xffff. Over IPv6 the checksum is
//! mandatory (RFC 8200 §8.1), so a 0 never verifies.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ipv4::IpProtocol;
use super::ipv6::update_checksum_for_addr;
use super::{Result, WireError, read_u16, write_u16};

pub(crate) mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
///
/// `new_checked` accepts a buffer longer than the datagram (IP padding);
/// [`UdpPacket::payload`] ends where the length field says.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header fits and that the length field lies in `8..=buffer length`.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if len > buf.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field (0 over IPv4 means "not computed").
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// End of the datagram in the buffer: the length field, clamped to the buffer.
    fn datagram_end(&self) -> usize {
        usize::from(self.len()).min(self.buffer.as_ref().len())
    }

    /// Header and payload, as covered by the checksum.
    fn datagram(&self) -> &[u8] {
        let buf = self.buffer.as_ref();
        buf.get(..self.datagram_end()).unwrap_or(buf)
    }

    /// The payload, from the end of the header to the length field.
    pub fn payload(&self) -> &[u8] {
        let end = self.datagram_end();
        self.buffer
            .as_ref()
            .get(HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// Unfolded sum of pseudo-header and datagram over IPv4.
    fn sum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
        checksum::combine(pseudo, checksum::sum(self.datagram()))
    }

    /// Unfolded sum of pseudo-header and datagram over IPv6.
    fn sum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, u32::from(self.len()));
        checksum::combine(pseudo, checksum::sum(self.datagram()))
    }

    /// True when the checksum verifies over IPv4, or is 0 (not present).
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0 || checksum::fold(self.sum_v4(src, dst)) == 0xffff
    }

    /// True when the checksum verifies over IPv6 (where 0 is never valid).
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        self.checksum() != 0 && checksum::fold(self.sum_v6(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port (no checksum update).
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (no checksum update).
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field (no checksum update).
    pub fn set_len(&mut self, len: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Mutable payload, from the end of the header to the length field.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.datagram_end();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// Rewrites the source port and updates the checksum; returns the old port.
    pub fn rewrite_src_port(&mut self, port: u16) -> u16 {
        let old = self.src_port();
        let check = checksum::update_udp_u16(self.checksum(), old, port);
        self.set_src_port(port);
        self.set_checksum(check);
        old
    }

    /// Rewrites the destination port and updates the checksum; returns the old port.
    pub fn rewrite_dst_port(&mut self, port: u16) -> u16 {
        let old = self.dst_port();
        let check = checksum::update_udp_u16(self.checksum(), old, port);
        self.set_dst_port(port);
        self.set_checksum(check);
        old
    }

    /// Updates the checksum after the IPv4 header changed an address from `old` to `new`.
    pub fn update_checksum_for_v4_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let check = checksum::update_udp_u32(self.checksum(), old.into(), new.into());
        self.set_checksum(check);
    }

    /// Updates the checksum after the IPv6 header changed an address from `old` to `new`.
    pub fn update_checksum_for_v6_addr(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        let check = match self.checksum() {
            0 => 0,
            c => match update_checksum_for_addr(c, old, new) {
                0 => 0xffff,
                c => c,
            },
        };
        self.set_checksum(check);
    }

    /// Computes the checksum over IPv4 from scratch (a computed 0 becomes 0xffff).
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let check = !checksum::fold(self.sum_v4(src, dst));
        self.set_checksum(if check == 0 { 0xffff } else { check });
    }

    /// Computes the checksum over IPv6 from scratch (a computed 0 becomes 0xffff).
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let check = !checksum::fold(self.sum_v6(src, dst));
        self.set_checksum(if check == 0 { 0xffff } else { check });
    }
}

/// The fields needed to emit a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: u16,
}

impl UdpRepr {
    /// Writes the 8-byte header with checksum 0; fill it once the payload is in place.
    ///
    /// `Truncated` if `buffer` is shorter than [`HEADER_LEN`], `Malformed` if
    /// the payload does not fit the 16-bit length field.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<()> {
        let len = self
            .payload_len
            .checked_add(HEADER_LEN as u16)
            .ok_or(WireError::Malformed)?;
        let hdr = buffer.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let mut p = UdpPacket::new_unchecked(hdr);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(len);
        p.set_checksum(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
    const DST_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
    const SRC_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x0a);
    const DST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0244, 0, 1, 0, 0, 0, 5);

    // 53000 -> 53, length 13 (5 bytes payload), checksum 0, plus 3 bytes padding.
    static DATAGRAM_BYTES: [u8; 16] = [
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0xee, 0xee,
        0xee,
    ];

    fn oracle_v4(bytes: &[u8]) -> u16 {
        let (hdr, rest) = etherparse::UdpHeader::from_slice(bytes).unwrap();
        let payload = &rest[..usize::from(hdr.length) - HEADER_LEN];
        hdr.calc_checksum_ipv4_raw(SRC_V4.octets(), DST_V4.octets(), payload)
            .unwrap()
    }

    fn oracle_v6(bytes: &[u8]) -> u16 {
        let (hdr, rest) = etherparse::UdpHeader::from_slice(bytes).unwrap();
        let payload = &rest[..usize::from(hdr.length) - HEADER_LEN];
        hdr.calc_checksum_ipv6_raw(SRC_V6.octets(), DST_V6.octets(), payload)
            .unwrap()
    }

    #[test]
    fn deconstruct() {
        let p = UdpPacket::new_checked(&DATAGRAM_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 53000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 13);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload(), b"hello");
        assert!(
            p.verify_checksum_v4(SRC_V4, DST_V4),
            "0 means no checksum over IPv4"
        );
        assert!(
            !p.verify_checksum_v6(SRC_V6, DST_V6),
            "0 is invalid over IPv6"
        );
    }

    #[test]
    fn construct() {
        let mut bytes = [0xeeu8; 16];
        UdpRepr {
            src_port: 53000,
            dst_port: 53,
            payload_len: 5,
        }
        .emit(&mut bytes)
        .unwrap();
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        p.payload_mut().copy_from_slice(b"hello");
        assert_eq!(bytes, DATAGRAM_BYTES);
        assert_eq!(
            UdpRepr {
                src_port: 1,
                dst_port: 2,
                payload_len: 0
            }
            .emit(&mut [0; 7]),
            Err(WireError::Truncated)
        );
        let too_long = UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: u16::MAX - 7,
        };
        assert_eq!(too_long.emit(&mut [0; 8]), Err(WireError::Malformed));
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                UdpPacket::new_checked(&DATAGRAM_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        // Length field 13 but only 12 bytes.
        assert_eq!(
            UdpPacket::new_checked(&DATAGRAM_BYTES[..12]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn malformed_length() {
        let mut bytes = DATAGRAM_BYTES;
        bytes[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&bytes[..]).unwrap_err(),
            WireError::Malformed
        );
        bytes[5] = 8;
        let p = UdpPacket::new_checked(&bytes[..]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn fill_matches_oracle() {
        let mut bytes = DATAGRAM_BYTES;
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC_V4, DST_V4);
        assert!(p.verify_checksum_v4(SRC_V4, DST_V4));
        let ours = p.checksum();
        assert_eq!(ours, oracle_v4(&bytes));

        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v6(SRC_V6, DST_V6);
        assert!(p.verify_checksum_v6(SRC_V6, DST_V6));
        assert!(!p.verify_checksum_v6(SRC_V6, Ipv6Addr::LOCALHOST));
        let ours = p.checksum();
        assert_eq!(ours, oracle_v6(&bytes));
    }

    #[test]
    fn computed_zero_sent_as_ffff() {
        // Pick a payload word that makes the sum come out as 0xffff.
        let mut bytes = [0u8; 10];
        UdpRepr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        }
        .emit(&mut bytes)
        .unwrap();
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC_V4, DST_V4);
        let word = p.checksum();
        p.payload_mut().copy_from_slice(&word.to_be_bytes());
        p.fill_checksum_v4(SRC_V4, DST_V4);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(SRC_V4, DST_V4));
        assert_eq!(oracle_v4(&bytes), 0xffff);
    }

    #[test]
    fn rewrites_match_oracle() {
        let payload = b"podswitch says hello";
        let builder =
            etherparse::PacketBuilder::ipv4(SRC_V4.octets(), DST_V4.octets(), 64).udp(40000, 8080);
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        let mut bytes = frame[20..].to_vec();

        let new_src = Ipv4Addr::new(172, 16, 0, 9);
        let new_dst = Ipv4Addr::new(10, 96, 0, 10);
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(p.verify_checksum_v4(SRC_V4, DST_V4));
        assert_eq!(p.rewrite_src_port(33333), 40000);
        assert_eq!(p.rewrite_dst_port(80), 8080);
        p.update_checksum_for_v4_addr(SRC_V4, new_src);
        p.update_checksum_for_v4_addr(DST_V4, new_dst);
        assert!(p.verify_checksum_v4(new_src, new_dst));
        let ours = p.checksum();
        let (hdr, rest) = etherparse::UdpHeader::from_slice(&bytes).unwrap();
        assert_eq!(
            hdr.calc_checksum_ipv4_raw(new_src.octets(), new_dst.octets(), rest)
                .unwrap(),
            ours
        );
    }

    #[test]
    fn v6_rewrites_match_oracle() {
        let payload = b"podswitch says hello over v6";
        let builder =
            etherparse::PacketBuilder::ipv6(SRC_V6.octets(), DST_V6.octets(), 64).udp(40000, 8080);
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        let mut bytes = frame[40..].to_vec();

        let new_src = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0xffff, 1);
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(p.verify_checksum_v6(SRC_V6, DST_V6));
        p.rewrite_src_port(1);
        p.update_checksum_for_v6_addr(SRC_V6, new_src);
        assert!(p.verify_checksum_v6(new_src, DST_V6));
        let ours = p.checksum();
        let (hdr, rest) = etherparse::UdpHeader::from_slice(&bytes).unwrap();
        assert_eq!(
            hdr.calc_checksum_ipv6_raw(new_src.octets(), DST_V6.octets(), rest)
                .unwrap(),
            ours
        );
    }

    #[test]
    fn zero_checksum_stays_zero() {
        let mut bytes = DATAGRAM_BYTES;
        let mut p = UdpPacket::new_checked(&mut bytes[..]).unwrap();
        p.rewrite_src_port(1);
        p.rewrite_dst_port(2);
        p.update_checksum_for_v4_addr(SRC_V4, Ipv4Addr::new(1, 2, 3, 4));
        p.update_checksum_for_v6_addr(SRC_V6, DST_V6);
        assert_eq!(p.checksum(), 0);
    }
}
