//! Ethernet II frames (IEEE 802.3) and 802.1Q / 802.1ad VLAN tags.

use core::fmt;
use core::str::FromStr;

use super::{Result, WireError, read_u16, write_u16};

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from the first six bytes of `bytes`; `None` if shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        let b: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(b))
    }

    /// The six bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// True when the group bit is set (multicast and broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for an individual (unicast), non-zero address.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }

    /// The address packed into a u64 (handy as a hash key).
    pub fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The MAC whose 48 bits are the low bits of `bits` ([`to_u64`](Self::to_u64)'s inverse).
    pub fn from_u64(bits: u64) -> MacAddr {
        let b = bits.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not six colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex bytes like 02:00:00:00:00:01")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An EtherType value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service VLAN tag (QinQ).
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// True for the tag protocol identifiers of 802.1Q and 802.1ad.
    pub fn is_vlan_tag(self) -> bool {
        self == Self::VLAN || self == Self::QINQ
    }
}

/// The IPv4 packet in `frame`, an untagged Ethernet frame with
/// EtherType IPv4; `None` for anything else.
#[inline]
pub fn ipv4_payload(frame: &[u8]) -> Option<&[u8]> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    (eth.ethertype() == EtherType::IPV4).then(|| &frame[HEADER_LEN..])
}

/// [`ipv4_payload`], writable.
#[inline]
pub fn ipv4_payload_mut(frame: &mut [u8]) -> Option<&mut [u8]> {
    ipv4_payload(frame)?;
    frame.get_mut(HEADER_LEN..)
}

mod field {
    use core::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// Length of the untagged Ethernet header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// How many stacked VLAN tags [`L2Header::parse`] walks before giving up.
pub const MAX_VLAN_TAGS: usize = 2;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after checking that it holds the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the header.
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

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        MacAddr(mac)
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        MacAddr(mac)
    }

    /// The EtherType (or the TPID of a first VLAN tag).
    pub fn ethertype(&self) -> EtherType {
        EtherType(read_u16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// Mutable access to everything after the 14-byte header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// What the pipeline needs from the L2 header, with VLAN tags walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Header {
    /// Destination MAC.
    pub dst: MacAddr,
    /// Source MAC.
    pub src: MacAddr,
    /// The EtherType after all VLAN tags.
    pub ethertype: EtherType,
    /// The outermost VLAN ID, if the frame is tagged.
    pub vlan: Option<u16>,
    /// Number of VLAN tags walked.
    pub vlan_tags: u8,
    /// Offset of the L3 header in the frame.
    pub l3_offset: usize,
}

impl L2Header {
    /// Parses the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags.
    ///
    /// More tags than that, or a tag cut short, is [`WireError::Malformed`]
    /// or [`WireError::Truncated`].
    pub fn parse(frame: &[u8]) -> Result<L2Header> {
        let eth = EthernetFrame::new_checked(frame)?;
        let mut ethertype = eth.ethertype();
        let mut offset = HEADER_LEN;
        let mut vlan = None;
        let mut tags = 0u8;
        while ethertype.is_vlan_tag() {
            if usize::from(tags) == MAX_VLAN_TAGS {
                return Err(WireError::Malformed);
            }
            if frame.len() < offset + VLAN_TAG_LEN {
                return Err(WireError::Truncated);
            }
            if vlan.is_none() {
                vlan = Some(read_u16(frame, offset) & 0x0fff);
            }
            ethertype = EtherType(read_u16(frame, offset + 2));
            offset += VLAN_TAG_LEN;
            tags += 1;
        }
        Ok(L2Header {
            dst: eth.dst_addr(),
            src: eth.src_addr(),
            ethertype,
            vlan,
            vlan_tags: tags,
            l3_offset: offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME_BYTES: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00, // IPv4
        0xaa, 0xbb, 0xcc, 0xdd,
    ];

    static TAGGED_BYTES: [u8; 26] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x88, 0xa8, 0x00, 0xc8, // S-tag VID 200
        0x81, 0x00, 0x27, 0xd1, // C-tag PCP 1, VID 2001
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.src_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 18];
        let mut f = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        f.set_dst_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        f.set_src_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        f.set_ethertype(EtherType::IPV4);
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, FRAME_BYTES);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&FRAME_BYTES[..13]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            L2Header::parse(&TAGGED_BYTES[..17]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn qinq_walked() {
        let h = L2Header::parse(&TAGGED_BYTES).unwrap();
        assert_eq!(h.ethertype, EtherType::ARP);
        assert_eq!(h.vlan, Some(200));
        assert_eq!(h.vlan_tags, 2);
        assert_eq!(h.l3_offset, 22);
        assert!(h.dst.is_broadcast());
    }

    #[test]
    fn three_tags_rejected() {
        let mut bytes = TAGGED_BYTES.to_vec();
        bytes.splice(20..20, [0x81, 0x00, 0x00, 0x05]);
        assert_eq!(L2Header::parse(&bytes).unwrap_err(), WireError::Malformed);
    }

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "02:0A:ff:00:10:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:0a:ff:00:10:01");
        assert!(m.is_unicast());
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("zz:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!(MacAddr([1, 0, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddr::ZERO.is_unicast());
    }

    #[test]
    fn oracle_agrees() {
        let (eth, rest) = etherparse::Ethernet2Header::from_slice(&FRAME_BYTES).unwrap();
        let f = EthernetFrame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(eth.source, f.src_addr().0);
        assert_eq!(eth.destination, f.dst_addr().0);
        assert_eq!(eth.ether_type.0, f.ethertype().0);
        assert_eq!(rest, f.payload());
    }
}
