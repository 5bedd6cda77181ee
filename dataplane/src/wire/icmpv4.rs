//! ICMP for IPv4 (RFC 792): echo, and the error messages that quote a packet.

use super::checksum;
use super::{Result, WireError, read_u16, write_u16};

pub(crate) mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
    pub const REST: usize = 8;
}

/// Length of the ICMP header (type, code, checksum, 4 bytes of "rest").
pub const HEADER_LEN: usize = field::REST;

/// Echo reply.
pub const ECHO_REPLY: u8 = 0;
/// Destination unreachable.
pub const DST_UNREACHABLE: u8 = 3;
/// Echo request.
pub const ECHO_REQUEST: u8 = 8;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 11;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 12;

/// Destination unreachable code: network unreachable.
pub const CODE_NET_UNREACHABLE: u8 = 0;
/// Destination unreachable code: host unreachable.
pub const CODE_HOST_UNREACHABLE: u8 = 1;
/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// A view of an ICMPv4 message (the whole IPv4 payload).
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 8-byte header is present.
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
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (echo request/reply).
    pub fn echo_ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request/reply).
    pub fn echo_seq_no(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191).
    pub fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }

    /// True for the types that quote an offending packet.
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            DST_UNREACHABLE | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }

    /// Everything after the 8-byte header: echo data, or the quoted packet.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::REST..]
    }

    /// True when the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the type (no checksum update).
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the code (no checksum update).
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
        write_u16(self.buffer.as_mut(), field::ECHO_SEQ, value);
    }

    /// Sets the 4 "rest of header" bytes: unused (0) for most errors,
    /// the next-hop MTU in the low half for "fragmentation needed".
    pub fn set_rest_of_header(&mut self, value: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&value.to_be_bytes());
    }

    /// Rewrites the echo identifier and updates the checksum incrementally.
    pub fn rewrite_echo_ident(&mut self, value: u16) {
        let check = checksum::update_u16(self.checksum(), self.echo_ident(), value);
        self.set_echo_ident(value);
        self.set_checksum(check);
    }

    /// Turns an echo request into a reply in place (type 8 → 0), with an
    /// incremental checksum update.
    pub fn make_echo_reply(&mut self) {
        let old = read_u16(self.buffer.as_ref(), field::TYPE);
        let new = u16::from(ECHO_REPLY) << 8 | (old & 0x00ff);
        let check = checksum::update_u16(self.checksum(), old, new);
        write_u16(self.buffer.as_mut(), field::TYPE, new);
        self.set_checksum(check);
    }

    /// Mutable access to everything after the header.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::REST..]
    }

    /// Recomputes the checksum over the whole message.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ECHO_BYTES: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x07, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn echo() -> Vec<u8> {
        let mut bytes = ECHO_BYTES.to_vec();
        Icmpv4Packet::new_checked(&mut bytes[..])
            .unwrap()
            .fill_checksum();
        bytes
    }

    #[test]
    fn deconstruct() {
        let bytes = echo();
        let p = Icmpv4Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.msg_type(), ECHO_REQUEST);
        assert_eq!(p.code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 7);
        assert_eq!(p.data(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
        assert!(!p.is_error());
    }

    #[test]
    fn construct_matches_oracle() {
        let bytes = echo();
        let (hdr, payload) = etherparse::Icmpv4Header::from_slice(&bytes).unwrap();
        let expected = hdr.icmp_type.calc_checksum(payload);
        assert_eq!(
            Icmpv4Packet::new_checked(&bytes[..]).unwrap().checksum(),
            expected
        );
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Icmpv4Packet::new_checked(&ECHO_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
    }

    #[test]
    fn echo_reply_and_ident_rewrite_match_oracle() {
        let mut bytes = echo();
        let mut p = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        p.make_echo_reply();
        p.rewrite_echo_ident(0xbeef);
        assert!(p.verify_checksum());
        let ours = p.checksum();
        let (hdr, payload) = etherparse::Icmpv4Header::from_slice(&bytes).unwrap();
        assert_eq!(hdr.icmp_type.calc_checksum(payload), ours);
        assert_eq!(bytes[0], ECHO_REPLY);
    }

    #[test]
    fn error_accessors() {
        let mut bytes = [3u8, 4, 0, 0, 0, 0, 0x05, 0xaa, 0x45, 0, 0, 0];
        let mut p = Icmpv4Packet::new_checked(&mut bytes[..]).unwrap();
        assert!(p.is_error());
        assert_eq!(p.code(), CODE_FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1450);
        p.set_rest_of_header(1400);
        assert_eq!(p.next_hop_mtu(), 1400);
        assert_eq!(p.data(), &[0x45, 0, 0, 0]);
    }
}
