//! TCP segments (RFC 9293): header, options and checksum over IPv4 and IPv6.
//!
//! A TCP header carries no length of its own, so the view is made over the
//! IP payload: the segment is the whole buffer, and the checksum covers it.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::ipv4::IpProtocol;
use super::ipv6::update_checksum_for_addr;
use super::{Result, WireError, read_u16, read_u32, write_u16, write_u32};

pub(crate) mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUMBER: usize = 4;
    pub const ACK_NUMBER: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Length of the TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header the 4-bit data offset can describe.
pub const MAX_HEADER_LEN: usize = 60;

/// FIN flag bit in [`TcpPacket::flags`].
pub const FLAG_FIN: u8 = 0x01;
/// SYN flag bit.
pub const FLAG_SYN: u8 = 0x02;
/// RST flag bit.
pub const FLAG_RST: u8 = 0x04;
/// PSH flag bit.
pub const FLAG_PSH: u8 = 0x08;
/// ACK flag bit.
pub const FLAG_ACK: u8 = 0x10;
/// URG flag bit.
pub const FLAG_URG: u8 = 0x20;
/// ECE flag bit (RFC 3168).
pub const FLAG_ECE: u8 = 0x40;
/// CWR flag bit (RFC 3168).
pub const FLAG_CWR: u8 = 0x80;

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the fixed header fits, data offset ≥ 5, and the options fit.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > buf.len() {
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUMBER)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUMBER)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The eight flag bits, CWR down to FIN (see the `FLAG_*` constants).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// FIN flag.
    pub fn fin(&self) -> bool {
        self.flags() & FLAG_FIN != 0
    }

    /// SYN flag.
    pub fn syn(&self) -> bool {
        self.flags() & FLAG_SYN != 0
    }

    /// RST flag.
    pub fn rst(&self) -> bool {
        self.flags() & FLAG_RST != 0
    }

    /// PSH flag.
    pub fn psh(&self) -> bool {
        self.flags() & FLAG_PSH != 0
    }

    /// ACK flag.
    pub fn ack(&self) -> bool {
        self.flags() & FLAG_ACK != 0
    }

    /// URG flag.
    pub fn urg(&self) -> bool {
        self.flags() & FLAG_URG != 0
    }

    /// ECE flag.
    pub fn ece(&self) -> bool {
        self.flags() & FLAG_ECE != 0
    }

    /// CWR flag.
    pub fn cwr(&self) -> bool {
        self.flags() & FLAG_CWR != 0
    }

    /// Receive window.
    pub fn window(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_ptr(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options bytes (empty when the data offset is 5).
    pub fn options(&self) -> &[u8] {
        let end = self.header_len();
        self.buffer
            .as_ref()
            .get(HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        let start = self.header_len().max(HEADER_LEN);
        self.buffer.as_ref().get(start..).unwrap_or_default()
    }

    /// Segment length for the pseudo-header: the whole buffer.
    fn segment_len(&self) -> u32 {
        u32::try_from(self.buffer.as_ref().len()).unwrap_or(u32::MAX)
    }

    /// Unfolded sum of pseudo-header and segment over IPv4.
    fn sum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u32 {
        let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::TCP.0, self.segment_len());
        checksum::combine(pseudo, checksum::sum(self.buffer.as_ref()))
    }

    /// Unfolded sum of pseudo-header and segment over IPv6.
    fn sum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> u32 {
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::TCP.0, self.segment_len());
        checksum::combine(pseudo, checksum::sum(self.buffer.as_ref()))
    }

    /// True when the checksum verifies over IPv4.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        checksum::fold(self.sum_v4(src, dst)) == 0xffff
    }

    /// True when the checksum verifies over IPv6.
    pub fn verify_checksum_v6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        checksum::fold(self.sum_v6(src, dst)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port (no checksum update).
    pub fn set_src_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port (no checksum update).
    pub fn set_dst_port(&mut self, port: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the sequence number (no checksum update).
    pub fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUMBER, value);
    }

    /// Sets the acknowledgment number (no checksum update).
    pub fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUMBER, value);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60); keeps the reserved bits.
    pub fn set_header_len(&mut self, header_len: usize) {
        let data_offset = (header_len / 4).min(15) as u8;
        let b = &mut self.buffer.as_mut()[field::DATA_OFFSET];
        *b = (*b & 0x0f) | (data_offset << 4);
    }

    /// Sets all eight flag bits at once (no checksum update).
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the receive window (no checksum update).
    pub fn set_window(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WINDOW, value);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the urgent pointer (no checksum update).
    pub fn set_urgent_ptr(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Mutable options bytes.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or_default()
    }

    /// Mutable access to everything after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len().max(HEADER_LEN);
        self.buffer.as_mut().get_mut(start..).unwrap_or_default()
    }

    /// Rewrites the source port and updates the checksum; returns the old port.
    pub fn rewrite_src_port(&mut self, port: u16) -> u16 {
        let old = self.src_port();
        let check = checksum::update_u16(self.checksum(), old, port);
        self.set_src_port(port);
        self.set_checksum(check);
        old
    }

    /// Rewrites the destination port and updates the checksum; returns the old port.
    pub fn rewrite_dst_port(&mut self, port: u16) -> u16 {
        let old = self.dst_port();
        let check = checksum::update_u16(self.checksum(), old, port);
        self.set_dst_port(port);
        self.set_checksum(check);
        old
    }

    /// Updates the checksum after the IPv4 header changed an address from `old` to `new`.
    pub fn update_checksum_for_v4_addr(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let check = checksum::update_u32(self.checksum(), old.into(), new.into());
        self.set_checksum(check);
    }

    /// Updates the checksum after the IPv6 header changed an address from `old` to `new`.
    pub fn update_checksum_for_v6_addr(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        let check = update_checksum_for_addr(self.checksum(), old, new);
        self.set_checksum(check);
    }

    /// Computes the checksum over IPv4 from scratch.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let check = !checksum::fold(self.sum_v4(src, dst));
        self.set_checksum(check);
    }

    /// Computes the checksum over IPv6 from scratch.
    pub fn fill_checksum_v6(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let check = !checksum::fold(self.sum_v6(src, dst));
        self.set_checksum(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
    const DST_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const SRC_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0244, 0, 1, 0, 0, 0, 2);
    const DST_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0096, 0, 0, 0, 0, 0, 0x0a);

    // 45678 -> 443, seq 0x01020304, ack 0x0a0b0c0d, data offset 6 (MSS 1460),
    // PSH|ACK, window 64240, checksum 0, urgent 0, 4 bytes payload.
    static SEGMENT_BYTES: [u8; 28] = [
        0xb2, 0x6e, 0x01, 0xbb, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x60, 0x18, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, b'G', b'E', b'T', b' ',
    ];

    fn oracle_v4(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let hdr = etherparse::TcpHeaderSlice::from_slice(bytes).unwrap();
        let payload = &bytes[hdr.slice().len()..];
        hdr.calc_checksum_ipv4_raw(src.octets(), dst.octets(), payload)
            .unwrap()
    }

    fn oracle_v6(bytes: &[u8], src: Ipv6Addr, dst: Ipv6Addr) -> u16 {
        let hdr = etherparse::TcpHeaderSlice::from_slice(bytes).unwrap();
        let payload = &bytes[hdr.slice().len()..];
        hdr.calc_checksum_ipv6_raw(src.octets(), dst.octets(), payload)
            .unwrap()
    }

    #[test]
    fn deconstruct() {
        let p = TcpPacket::new_checked(&SEGMENT_BYTES[..]).unwrap();
        assert_eq!(p.src_port(), 45678);
        assert_eq!(p.dst_port(), 443);
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.ack_number(), 0x0a0b_0c0d);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), FLAG_PSH | FLAG_ACK);
        assert!(p.psh() && p.ack());
        assert!(!(p.fin() || p.syn() || p.rst() || p.urg() || p.ece() || p.cwr()));
        assert_eq!(p.window(), 64240);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.urgent_ptr(), 0);
        assert_eq!(p.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(p.payload(), b"GET ");

        let (oracle, payload) = etherparse::TcpHeader::from_slice(&SEGMENT_BYTES).unwrap();
        assert_eq!(
            (oracle.source_port, oracle.destination_port),
            (p.src_port(), p.dst_port())
        );
        assert_eq!(
            (oracle.sequence_number, oracle.acknowledgment_number),
            (p.seq_number(), p.ack_number())
        );
        assert_eq!(oracle.header_len(), p.header_len());
        assert_eq!(
            (oracle.psh, oracle.ack, oracle.syn),
            (p.psh(), p.ack(), p.syn())
        );
        assert_eq!(oracle.window_size, p.window());
        assert_eq!(oracle.options.as_slice(), p.options());
        assert_eq!(payload, p.payload());
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 28];
        let mut p = TcpPacket::new_unchecked(&mut bytes[..]);
        p.set_src_port(45678);
        p.set_dst_port(443);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0x0a0b_0c0d);
        p.set_header_len(24);
        p.set_flags(FLAG_PSH | FLAG_ACK);
        p.set_window(64240);
        p.set_checksum(0);
        p.set_urgent_ptr(0);
        p.options_mut().copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]);
        p.payload_mut().copy_from_slice(b"GET ");
        assert_eq!(bytes, SEGMENT_BYTES);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                TcpPacket::new_checked(&SEGMENT_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        // Data offset 6 needs 24 bytes.
        for len in HEADER_LEN..24 {
            assert_eq!(
                TcpPacket::new_checked(&SEGMENT_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let p = TcpPacket::new_checked(&SEGMENT_BYTES[..24]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn malformed_data_offset() {
        for offset in 0..5u8 {
            let mut bytes = SEGMENT_BYTES;
            bytes[12] = offset << 4;
            assert_eq!(
                TcpPacket::new_checked(&bytes[..]).unwrap_err(),
                WireError::Malformed
            );
        }
        let mut bytes = SEGMENT_BYTES;
        bytes[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&bytes[..]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn flags_one_by_one() {
        let mut bytes = SEGMENT_BYTES;
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        type FlagGetter = fn(&TcpPacket<&mut [u8]>) -> bool;
        let getters: [(u8, FlagGetter); 8] = [
            (FLAG_FIN, |p| p.fin()),
            (FLAG_SYN, |p| p.syn()),
            (FLAG_RST, |p| p.rst()),
            (FLAG_PSH, |p| p.psh()),
            (FLAG_ACK, |p| p.ack()),
            (FLAG_URG, |p| p.urg()),
            (FLAG_ECE, |p| p.ece()),
            (FLAG_CWR, |p| p.cwr()),
        ];
        for (bit, getter) in getters {
            p.set_flags(bit);
            assert!(getter(&p));
            p.set_flags(!bit);
            assert!(!getter(&p));
        }
        // The reserved/AE nibble survives a header length change.
        p.set_flags(0);
        p.buffer[12] = 0x61;
        p.set_header_len(20);
        assert_eq!(p.buffer[12], 0x51);
    }

    #[test]
    fn fill_matches_oracle() {
        let mut bytes = SEGMENT_BYTES;
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC_V4, DST_V4);
        assert!(p.verify_checksum_v4(SRC_V4, DST_V4));
        assert!(!p.verify_checksum_v4(SRC_V4, Ipv4Addr::LOCALHOST));
        let ours = p.checksum();
        assert_eq!(ours, oracle_v4(&bytes, SRC_V4, DST_V4));

        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v6(SRC_V6, DST_V6);
        assert!(p.verify_checksum_v6(SRC_V6, DST_V6));
        assert!(!p.verify_checksum_v6(SRC_V6, Ipv6Addr::LOCALHOST));
        let ours = p.checksum();
        assert_eq!(ours, oracle_v6(&bytes, SRC_V6, DST_V6));
    }

    #[test]
    fn reserved_bits_are_covered() {
        // etherparse's owned TcpHeader drops these bits; the checksum must not.
        let mut bytes = SEGMENT_BYTES;
        bytes[12] |= 0x0e;
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC_V4, DST_V4);
        let ours = p.checksum();
        assert_eq!(ours, oracle_v4(&bytes, SRC_V4, DST_V4));
        let (owned, payload) = etherparse::TcpHeader::from_slice(&bytes).unwrap();
        let lossy = owned.calc_checksum_ipv4_raw(SRC_V4.octets(), DST_V4.octets(), payload);
        assert_ne!(lossy.unwrap(), ours);
    }

    #[test]
    fn odd_length_segment() {
        let mut bytes = SEGMENT_BYTES[..27].to_vec();
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.fill_checksum_v4(SRC_V4, DST_V4);
        assert!(p.verify_checksum_v4(SRC_V4, DST_V4));
        let ours = p.checksum();
        assert_eq!(ours, oracle_v4(&bytes, SRC_V4, DST_V4));
    }

    #[test]
    fn nat_rewrites_match_oracle_v4() {
        let builder = etherparse::PacketBuilder::ipv4(SRC_V4.octets(), DST_V4.octets(), 64)
            .tcp(45678, 443, 1, 64240)
            .syn()
            .options_raw(&[0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07])
            .unwrap();
        let mut frame = Vec::new();
        builder.write(&mut frame, b"hello").unwrap();
        let mut bytes = frame[20..].to_vec();
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(p.verify_checksum_v4(SRC_V4, DST_V4));

        // DNAT to a pod, SNAT to the node, port rewrites both ways.
        let pod = Ipv4Addr::new(10, 244, 2, 7);
        let node = Ipv4Addr::new(192, 168, 1, 10);
        assert_eq!(p.rewrite_dst_port(8443), 443);
        assert_eq!(p.rewrite_src_port(61000), 45678);
        p.update_checksum_for_v4_addr(DST_V4, pod);
        p.update_checksum_for_v4_addr(SRC_V4, node);
        assert!(p.verify_checksum_v4(node, pod));
        let ours = p.checksum();
        assert_eq!(ours, oracle_v4(&bytes, node, pod));
    }

    #[test]
    fn nat_rewrites_match_oracle_v6() {
        let builder = etherparse::PacketBuilder::ipv6(SRC_V6.octets(), DST_V6.octets(), 64)
            .tcp(45678, 443, 1, 64240)
            .ack(99);
        let mut frame = Vec::new();
        builder.write(&mut frame, b"hello, v6").unwrap();
        let mut bytes = frame[40..].to_vec();
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        assert!(p.verify_checksum_v6(SRC_V6, DST_V6));

        let pod: Ipv6Addr = "fd00:244:0:2::7".parse().unwrap();
        p.rewrite_dst_port(8443);
        p.update_checksum_for_v6_addr(DST_V6, pod);
        assert!(p.verify_checksum_v6(SRC_V6, pod));
        let ours = p.checksum();
        assert_eq!(ours, oracle_v6(&bytes, SRC_V6, pod));
    }

    #[test]
    fn header_setter_cannot_break_accessors() {
        let mut bytes = SEGMENT_BYTES;
        let mut p = TcpPacket::new_checked(&mut bytes[..]).unwrap();
        p.set_header_len(0);
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 8);
        p.set_header_len(60);
        assert!(p.options().is_empty() && p.payload().is_empty());
        assert!(p.options_mut().is_empty() && p.payload_mut().is_empty());
    }
}
