//! VXLAN headers (RFC 7348): the 8 bytes between the outer UDP header and
//! the inner Ethernet frame.
//!
//! A receiver must check [`VxlanHeader::has_vni_flag`] before trusting the
//! VNI; the reserved bits are ignored on receipt and zeroed on transmission.

use super::{Result, WireError, read_u32, write_u32};

mod field {
    pub const FLAGS: usize = 0;
    pub const VNI: usize = 4;
    pub const PAYLOAD: usize = 8;
}

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// The IANA-assigned UDP destination port.
pub const VXLAN_PORT: u16 = 4789;
/// The largest VXLAN Network Identifier (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// The I flag: the VNI field is valid.
const FLAG_VNI: u8 = 0x08;

/// A view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Wraps `buffer` without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanHeader { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
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

    /// The flags byte (only the I flag is defined).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// True when the I flag says the VNI is valid.
    pub fn has_vni_flag(&self) -> bool {
        self.flags() & FLAG_VNI != 0
    }

    /// True when the header is exactly as RFC 7348 senders write it: the I
    /// flag and no other flag, every reserved bit zero. Receivers ignore the
    /// reserved bits; this tells a VXLAN header from other bytes by shape.
    pub fn is_canonical(&self) -> bool {
        let b = self.buffer.as_ref();
        b[field::FLAGS] == FLAG_VNI
            && b[field::FLAGS + 1..field::VNI] == [0, 0, 0]
            && b[field::PAYLOAD - 1] == 0
    }

    /// The 24-bit VXLAN Network Identifier.
    pub fn vni(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VNI) >> 8
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanHeader<T> {
    /// Writes the whole header: I flag, `vni` (low 24 bits), reserved fields zero.
    pub fn set_vni(&mut self, vni: u32) {
        let buf = self.buffer.as_mut();
        write_u32(buf, field::FLAGS, u32::from(FLAG_VNI) << 24);
        write_u32(buf, field::VNI, (vni & MAX_VNI) << 8);
    }

    /// Mutable access to the inner Ethernet frame.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The fields needed to emit a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    /// VXLAN Network Identifier (24 bits).
    pub vni: u32,
}

impl VxlanRepr {
    /// Writes the 8-byte header.
    ///
    /// `Truncated` if `buffer` is shorter than [`HEADER_LEN`], `Malformed` if
    /// the VNI does not fit 24 bits.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<()> {
        if self.vni > MAX_VNI {
            return Err(WireError::Malformed);
        }
        let hdr = buffer.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        VxlanHeader::new_unchecked(hdr).set_vni(self.vni);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EtherType, EthernetFrame};

    // I flag, VNI 0x123456, then the start of an inner IPv4 frame.
    static VXLAN_BYTES: [u8; 22] = [
        0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00, // VXLAN
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x00, // inner Ethernet
    ];

    #[test]
    fn deconstruct() {
        let h = VxlanHeader::new_checked(&VXLAN_BYTES[..]).unwrap();
        assert!(h.has_vni_flag());
        assert!(h.is_canonical());
        assert_eq!(h.flags(), 0x08);
        assert_eq!(h.vni(), 0x12_3456);
        let inner = EthernetFrame::new_checked(h.payload()).unwrap();
        assert_eq!(inner.ethertype(), EtherType::IPV4);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xffu8; 22];
        bytes[8..].copy_from_slice(&VXLAN_BYTES[8..]);
        VxlanRepr { vni: 0x12_3456 }.emit(&mut bytes).unwrap();
        assert_eq!(bytes, VXLAN_BYTES);
        assert_eq!(
            VxlanRepr { vni: 1 }.emit(&mut [0; 7]),
            Err(WireError::Truncated)
        );
        assert_eq!(
            VxlanRepr { vni: MAX_VNI + 1 }.emit(&mut [0; 8]),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn set_vni_zeroes_reserved_and_masks() {
        let mut bytes = [0xffu8; 8];
        let mut h = VxlanHeader::new_checked(&mut bytes[..]).unwrap();
        h.set_vni(0xab00_0001);
        assert_eq!(h.vni(), 1);
        assert!(h.payload_mut().is_empty());
        assert_eq!(bytes, [0x08, 0, 0, 0, 0, 0, 0x01, 0]);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                VxlanHeader::new_checked(&VXLAN_BYTES[..len]).unwrap_err(),
                WireError::Truncated
            );
        }
    }

    #[test]
    fn missing_i_flag_and_reserved_bits_ignored() {
        let mut bytes = VXLAN_BYTES;
        bytes[0] = 0xf7;
        bytes[7] = 0xff;
        let h = VxlanHeader::new_checked(&bytes[..]).unwrap();
        assert!(!h.has_vni_flag());
        assert!(!h.is_canonical());
        assert_eq!(h.vni(), 0x12_3456);
        for at in [1, 2, 3, 7] {
            let mut bytes = VXLAN_BYTES;
            bytes[at] = 1;
            let h = VxlanHeader::new_checked(&bytes[..]).unwrap();
            assert!(h.has_vni_flag() && !h.is_canonical(), "reserved byte {at}");
        }
    }

    #[test]
    fn inside_udp_built_by_oracle() {
        let mut inner = [0u8; 14];
        inner.copy_from_slice(&VXLAN_BYTES[8..]);
        let mut overlay = [0u8; 22];
        VxlanRepr { vni: 42 }.emit(&mut overlay).unwrap();
        overlay[8..].copy_from_slice(&inner);
        let builder = etherparse::PacketBuilder::ipv4([192, 168, 1, 10], [192, 168, 1, 11], 64)
            .udp(50000, VXLAN_PORT);
        let mut frame = Vec::new();
        builder.write(&mut frame, &overlay).unwrap();
        let sliced = etherparse::SlicedPacket::from_ip(&frame).unwrap();
        let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.destination_port(), VXLAN_PORT);
        let h = VxlanHeader::new_checked(udp.payload()).unwrap();
        assert_eq!(h.vni(), 42);
        assert_eq!(h.payload(), &inner);
    }
}
