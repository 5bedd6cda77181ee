//! The transport header as NAT sees it: whatever the protocol, the fields
//! a translation reads and writes — the ports that open TCP, UDP and SCTP
//! headers, ICMP echo's identifier and the L4 checksum — found where that
//! protocol keeps them, in a header that may be cut short.
//!
//! An ICMP error quotes only the first 8 bytes of the packet's transport
//! header (RFC 792), so a TCP quote holds its ports but not its checksum.
//! The view therefore answers every getter with an `Option` (`None`: the
//! field is not in the buffer, or not in this protocol's header) and makes
//! every setter a no-op for a field that is not there; it never panics.
//! The complete views ([`super::TcpPacket`], [`super::UdpPacket`],
//! [`super::Icmpv4Packet`]) name the same offsets.

use super::{IpProtocol, icmpv4, read_u16, read_u32, tcp, udp, write_u16, write_u32};

/// Offsets of the fields SCTP's common header has beyond its ports (RFC 9260).
pub(crate) mod sctp_field {
    /// The CRC32c of the whole packet.
    pub const CHECKSUM: usize = 8;
}

/// Length of SCTP's common header.
pub const SCTP_HEADER_LEN: usize = 12;

/// Offset of the source port (TCP, UDP, SCTP).
const SRC_PORT: usize = 0;
/// Offset of the destination port (TCP, UDP, SCTP).
const DST_PORT: usize = 2;

/// Where `protocol`'s header keeps its 16-bit checksum (TCP, UDP, ICMP);
/// `None` for protocols without one (SCTP's is a 32-bit CRC).
#[inline]
pub const fn checksum_offset(protocol: IpProtocol) -> Option<usize> {
    match protocol {
        IpProtocol::TCP => Some(tcp::field::CHECKSUM),
        IpProtocol::UDP => Some(udp::field::CHECKSUM),
        IpProtocol::ICMP => Some(icmpv4::field::CHECKSUM),
        _ => None,
    }
}

/// Whether `protocol`'s header opens with a source and destination port.
#[inline]
pub const fn has_ports(protocol: IpProtocol) -> bool {
    matches!(
        protocol,
        IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP
    )
}

/// A view of the transport header of protocol `protocol` in `buffer`,
/// which may end anywhere.
#[derive(Debug)]
pub struct L4Header<T: AsRef<[u8]>> {
    protocol: IpProtocol,
    buffer: T,
}

impl<T: AsRef<[u8]>> L4Header<T> {
    /// Views `buffer` as the start of a `protocol` header.
    #[inline]
    pub const fn new(protocol: IpProtocol, buffer: T) -> Self {
        L4Header { protocol, buffer }
    }

    /// The protocol the header belongs to.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        self.protocol
    }

    #[inline]
    fn u16_at(&self, at: usize) -> Option<u16> {
        let b = self.buffer.as_ref();
        (b.len() >= at + 2).then(|| read_u16(b, at))
    }

    /// The source port (TCP, UDP, SCTP).
    #[inline]
    pub fn src_port(&self) -> Option<u16> {
        self.u16_at(SRC_PORT).filter(|_| has_ports(self.protocol))
    }

    /// The destination port (TCP, UDP, SCTP).
    #[inline]
    pub fn dst_port(&self) -> Option<u16> {
        self.u16_at(DST_PORT).filter(|_| has_ports(self.protocol))
    }

    /// Both ports as one word, source in the high half (TCP, UDP, SCTP).
    #[inline]
    pub fn ports(&self) -> Option<u32> {
        let b = self.buffer.as_ref();
        (has_ports(self.protocol) && b.len() >= DST_PORT + 2).then(|| read_u32(b, SRC_PORT))
    }

    /// An ICMP echo request's or reply's identifier.
    #[inline]
    pub fn echo_ident(&self) -> Option<u16> {
        self.u16_at(icmpv4::field::ECHO_IDENT)
            .filter(|_| self.protocol == IpProtocol::ICMP)
    }

    /// The 16-bit checksum (TCP, UDP, ICMP).
    #[inline]
    pub fn checksum(&self) -> Option<u16> {
        self.u16_at(checksum_offset(self.protocol)?)
    }

    /// The whole buffer.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> L4Header<T> {
    #[inline]
    fn set_u16_at(&mut self, at: usize, value: u16) {
        let b = self.buffer.as_mut();
        if b.len() >= at + 2 {
            write_u16(b, at, value);
        }
    }

    /// Sets the source port, if there is one (no checksum update).
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        if has_ports(self.protocol) {
            self.set_u16_at(SRC_PORT, port);
        }
    }

    /// Sets the destination port, if there is one (no checksum update).
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        if has_ports(self.protocol) {
            self.set_u16_at(DST_PORT, port);
        }
    }

    /// Sets both ports from one word, source in the high half (no checksum update).
    #[inline]
    pub fn set_ports(&mut self, ports: u32) {
        let b = self.buffer.as_mut();
        if has_ports(self.protocol) && b.len() >= DST_PORT + 2 {
            write_u32(b, SRC_PORT, ports);
        }
    }

    /// Sets an ICMP echo's identifier (no checksum update).
    #[inline]
    pub fn set_echo_ident(&mut self, ident: u16) {
        if self.protocol == IpProtocol::ICMP {
            self.set_u16_at(icmpv4::field::ECHO_IDENT, ident);
        }
    }

    /// Sets the 16-bit checksum, if the header has one and holds it.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        if let Some(at) = checksum_offset(self.protocol) {
            self.set_u16_at(at, value);
        }
    }

    /// The whole buffer, writable.
    #[inline]
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_where_each_protocol_keeps_them() {
        let mut tcp = [0u8; 20];
        tcp[..4].copy_from_slice(&[0x12, 0x34, 0x00, 0x50]);
        tcp[16..18].copy_from_slice(&[0xab, 0xcd]);
        let view = L4Header::new(IpProtocol::TCP, &tcp[..]);
        assert_eq!(view.src_port(), Some(0x1234));
        assert_eq!(view.dst_port(), Some(80));
        assert_eq!(view.ports(), Some(0x1234_0050));
        assert_eq!(view.checksum(), Some(0xabcd));
        assert_eq!(view.echo_ident(), None);
        let udp = [0, 53, 0, 54, 0, 8, 0x11, 0x22];
        assert_eq!(
            L4Header::new(IpProtocol::UDP, &udp[..]).checksum(),
            Some(0x1122)
        );
        let icmp = [8, 0, 0xfe, 0xdc, 0x01, 0x02, 0, 1];
        let view = L4Header::new(IpProtocol::ICMP, &icmp[..]);
        assert_eq!(
            (view.echo_ident(), view.checksum()),
            (Some(0x0102), Some(0xfedc))
        );
        assert_eq!(view.src_port(), None);
        let sctp = [0, 1, 0, 2, 0, 0, 0, 0, 9, 9, 9, 9];
        let view = L4Header::new(IpProtocol::SCTP, &sctp[..]);
        assert_eq!((view.src_port(), view.checksum()), (Some(1), None));
    }

    #[test]
    fn a_quote_cut_short_has_its_ports_but_no_checksum() {
        let mut quote = [0x12, 0x34, 0x00, 0x50, 1, 2, 3, 4];
        let mut view = L4Header::new(IpProtocol::TCP, &mut quote[..]);
        assert_eq!(view.ports(), Some(0x1234_0050));
        assert_eq!(view.checksum(), None);
        view.set_checksum(0xffff);
        view.set_ports(0x0001_0002);
        assert_eq!(quote, [0, 1, 0, 2, 1, 2, 3, 4]);
        let mut short = [0x12];
        let mut view = L4Header::new(IpProtocol::UDP, &mut short[..]);
        assert_eq!((view.src_port(), view.ports()), (None, None));
        view.set_src_port(7);
        view.set_ports(7);
        assert_eq!(short, [0x12]);
    }
}
