//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! Only the Ethernet/IPv4 flavour (htype 1, ptype 0x0800, hlen 6, plen 4)
//! is accepted: that is the only one a pod network carries, and it gives
//! the view fixed offsets.

use core::net::Ipv4Addr;

use super::{MacAddr, Result, WireError, read_u16, read_u32, write_u16, write_u32};

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

/// ARP operation: request.
pub const OP_REQUEST: u16 = 1;
/// ARP operation: reply.
pub const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the length and that this is Ethernet/IPv4 ARP.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        if buf.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        let ethernet_ipv4 = read_u16(buf, field::HTYPE) == 1
            && read_u16(buf, field::PTYPE) == 0x0800
            && buf[field::HLEN] == 6
            && buf[field::PLEN] == 4;
        if ethernet_ipv4 {
            Ok(())
        } else {
            Err(WireError::Malformed)
        }
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Operation ([`OP_REQUEST`], [`OP_REPLY`], or another value).
    pub fn operation(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware address.
    pub fn sender_hw_addr(&self) -> MacAddr {
        let b = self.buffer.as_ref();
        MacAddr([b[8], b[9], b[10], b[11], b[12], b[13]])
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::SPA))
    }

    /// Target hardware address.
    pub fn target_hw_addr(&self) -> MacAddr {
        let b = self.buffer.as_ref();
        MacAddr([b[18], b[19], b[20], b[21], b[22], b[23]])
    }

    /// Target protocol address.
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(read_u32(self.buffer.as_ref(), field::TPA))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the operation.
    pub fn set_operation(&mut self, op: u16) {
        write_u16(self.buffer.as_mut(), field::OPER, op);
    }

    /// Sets the sender hardware address.
    pub fn set_sender_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SHA..field::SHA + 6].copy_from_slice(&addr.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_ip(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::SPA, addr.into());
    }

    /// Sets the target hardware address.
    pub fn set_target_hw_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::THA..field::THA + 6].copy_from_slice(&addr.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_ip(&mut self, addr: Ipv4Addr) {
        write_u32(self.buffer.as_mut(), field::TPA, addr.into());
    }
}

/// An Ethernet/IPv4 ARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    /// [`OP_REQUEST`] or [`OP_REPLY`].
    pub operation: u16,
    /// Sender MAC.
    pub sender_hw_addr: MacAddr,
    /// Sender IP.
    pub sender_ip: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub target_hw_addr: MacAddr,
    /// Target IP.
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Reads the message from a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> ArpRepr {
        ArpRepr {
            operation: packet.operation(),
            sender_hw_addr: packet.sender_hw_addr(),
            sender_ip: packet.sender_ip(),
            target_hw_addr: packet.target_hw_addr(),
            target_ip: packet.target_ip(),
        }
    }

    /// Writes the 28-byte message into the start of `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<()> {
        let buf = buffer.get_mut(..PACKET_LEN).ok_or(WireError::Truncated)?;
        write_u16(buf, field::HTYPE, 1);
        write_u16(buf, field::PTYPE, 0x0800);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        let mut p = ArpPacket::new_unchecked(buf);
        p.set_operation(self.operation);
        p.set_sender_hw_addr(self.sender_hw_addr);
        p.set_sender_ip(self.sender_ip);
        p.set_target_hw_addr(self.target_hw_addr);
        p.set_target_ip(self.target_ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // who-has 10.244.1.1 tell 10.244.1.2
    static REQUEST_BYTES: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // eth/ipv4, request
        0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02, 0x0a, 0xf4, 0x01, 0x02, // sha, spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0x01, 0x01, // tha, tpa
    ];

    fn repr() -> ArpRepr {
        ArpRepr {
            operation: OP_REQUEST,
            sender_hw_addr: MacAddr([2, 0, 0x0a, 0xf4, 1, 2]),
            sender_ip: Ipv4Addr::new(10, 244, 1, 2),
            target_hw_addr: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 244, 1, 1),
        }
    }

    #[test]
    fn deconstruct() {
        let p = ArpPacket::new_checked(&REQUEST_BYTES[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), repr());
    }

    #[test]
    fn construct() {
        let mut bytes = [0xaau8; 28];
        repr().emit(&mut bytes).unwrap();
        assert_eq!(bytes, REQUEST_BYTES);
    }

    #[test]
    fn truncated_and_other_flavours() {
        for len in 0..PACKET_LEN {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
        let mut bad = REQUEST_BYTES;
        bad[4] = 8; // hlen 8
        assert_eq!(
            ArpPacket::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
        let mut bad = REQUEST_BYTES;
        bad[1] = 6; // IEEE 802 htype
        assert_eq!(
            ArpPacket::new_checked(&bad[..]).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn oracle_agrees() {
        let oracle = etherparse::ArpPacket::from_slice(&REQUEST_BYTES).unwrap();
        assert_eq!(oracle.operation, etherparse::ArpOperation::REQUEST);
        assert_eq!(oracle.sender_hw_addr(), &repr().sender_hw_addr.0[..]);
        assert_eq!(oracle.target_protocol_addr(), &[10, 244, 1, 1]);
    }
}
