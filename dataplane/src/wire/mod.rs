//! Packet formats as zero-copy views over byte buffers.
//!
//! Every protocol follows the smoltcp model: `Packet<T: AsRef<[u8]>>` wraps a
//! buffer; getters live in `impl<T: AsRef<[u8]>>`, setters in
//! `impl<T: AsRef<[u8]> + AsMut<[u8]>>`; byte ranges are named in a private
//! `mod field`. **Contract:** once `new_checked` (or `check_len`) returned
//! `Ok`, no getter or setter of that view panics, whatever the bytes say.
//!
//! Rewrites never recompute a checksum from scratch on the fast path: they go
//! through [`checksum`], which implements the RFC 1624 incremental update.
//!
//! ```
//! use podswitch_dataplane::wire::{EthernetFrame, EtherType, Ipv4Packet};
//! # let bytes = podswitch_dataplane::wire::testdata::ICMP_ECHO_FRAME;
//! let eth = EthernetFrame::new_checked(&bytes[..]).unwrap();
//! assert_eq!(eth.ethertype(), EtherType::IPV4);
//! let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
//! assert_eq!(ip.ttl(), 64);
//! ```
#![forbid(unsafe_code)]

pub mod arp;
pub mod checksum;
pub mod cidr;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod tcp;
pub mod udp;
pub mod vxlan;

#[cfg(test)]
mod fuzz;
#[doc(hidden)]
pub mod testdata;

pub use arp::ArpPacket;
pub use cidr::Ipv4Cidr;
pub use ethernet::{EtherType, EthernetFrame, L2Header, MacAddr};
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::{Icmpv6Packet, Icmpv6Type};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Fragment, Ipv6Packet, UpperLayer};
pub use l4::L4Header;
pub use tcp::TcpPacket;
pub use udp::{UdpPacket, UdpRepr};
pub use vxlan::{VxlanHeader, VxlanRepr};

/// Why a buffer could not be viewed as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or the length it declares).
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the format does not allow.
    #[error("malformed packet")]
    Malformed,
}

/// Result of a wire-level check.
pub type Result<T> = core::result::Result<T, WireError>;

/// Reads a big-endian `u16` at `at`; callers have checked the length.
#[inline]
pub(crate) fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian `u32` at `at`; callers have checked the length.
#[inline]
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Writes a big-endian `u16` at `at`; callers have checked the length.
#[inline]
pub(crate) fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`; callers have checked the length.
#[inline]
pub(crate) fn write_u32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
