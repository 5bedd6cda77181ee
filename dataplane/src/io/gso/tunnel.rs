//! UDP-tunnel GSO: a super-frame whose offload state describes the packet
//! *inside* a VXLAN tunnel.
//!
//! Linux's `vxlan` device hands its underlay device one encapsulated
//! super-frame per TCP super-segment (`SKB_GSO_UDP_TUNNEL`, or
//! `SKB_GSO_UDP_TUNNEL_CSUM` with the outer UDP checksum on, the default)
//! when that device can segment tunnels, as a veth can. Read from an
//! AF_PACKET socket with vnet headers, such a frame carries a legacy header
//! that names only the inner segmentation (`virtio_net_hdr_from_skb`: the
//! TCPv4 bit of the inner type, `gso_size` the inner MSS, the partial
//! checksum at the inner TCP header); the tunnel bits and offsets of the
//! newer header (`VIRTIO_NET_HDR_GSO_UDP_TUNNEL_*`, Linux 6.17) do not fit
//! in it. Seen on Linux 6.18 over veth, for a kernel pod's 3,000-byte write:
//! `flags` NEEDS_CSUM, `gso_type` TCPV4, `gso_size` 1398, `hdr_len` 116,
//! checksum at (84, 16); outer IPv4 and UDP lengths cover the whole frame,
//! and the outer UDP checksum holds the pseudo-header sum only.
//!
//! [`parse_vxlan`] recognises such a frame from its headers and checks that
//! the metadata matches them: the outer headers parse and their lengths
//! agree with the frame, the inner frame is a super-frame of the GSO kind
//! (as [`super::Segmenter`] requires), and the partial checksum is the inner
//! L4 one. The [`TunnelLayout`] it returns holds what both directions need:
//! the offsets a tunnel vnet header carries (`outer_th_offset`,
//! `inner_nh_offset`) and where the inner frame starts, so a receiver can
//! strip the outer headers and keep the inner super-frame whole.
//!
//! The outer UDP checksum of such a frame is never verified: it is a
//! partial sum for the whole super-frame, which the sender's device would
//! have finished per segment. The Linux receiver does the same (a
//! `CHECKSUM_PARTIAL` packet is trusted, `skb_csum_unnecessary`).

use crate::packet::{GsoKind, MAX_FRAME_LEN, Offload};
use crate::wire::{EtherType, IpProtocol, L2Header, UdpPacket, VxlanHeader, udp, vxlan};

use super::{GsoError, MAX_SEGMENTS, check_udp, parse_ipv4, parse_ipv6, parse_layout};

/// Offset of the TCP checksum field in its header.
const TCP_CHECKSUM_OFFSET: usize = 16;
/// Offset of the UDP checksum field in its header.
const UDP_CHECKSUM_OFFSET: usize = 6;

/// Why a frame with GSO metadata is not a usable VXLAN super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TunnelGsoError {
    /// The frame has no segmentation metadata.
    #[error("not a GSO frame")]
    NotGso,
    /// The outer headers do not parse, or their lengths disagree with the frame.
    #[error("tunnel GSO frame: bad outer headers")]
    Outer(#[source] GsoError),
    /// The outer EtherType is neither IPv4 nor IPv6.
    #[error("tunnel GSO frame: outer EtherType {0:#06x} is not IP")]
    OuterNotIp(u16),
    /// The outer IP packet is not UDP.
    #[error("tunnel GSO frame: outer IP protocol {0} is not UDP")]
    OuterNotUdp(u8),
    /// The VXLAN header is cut short or lacks its I flag.
    #[error("tunnel GSO frame: bad VXLAN header")]
    TunnelHeader,
    /// The inner frame is not a super-frame of the requested kind.
    #[error("tunnel GSO frame: bad inner frame")]
    Inner(#[source] GsoError),
    /// GSO without a partial checksum: nothing would make the inner
    /// segments' L4 checksums right (Linux refuses these too,
    /// `virtio_net_hdr_tnl_to_skb`).
    #[error("tunnel GSO frame without a partial checksum")]
    NoPartialChecksum,
    /// The partial checksum is not the inner L4 header's.
    #[error(
        "tunnel GSO frame: partial checksum at ({start}, {offset}), the inner L4 one is at ({expected_start}, {expected_offset})"
    )]
    ChecksumNotInner {
        /// `csum_start` given.
        start: u16,
        /// `csum_offset` given.
        offset: u16,
        /// Offset of the inner L4 header.
        expected_start: usize,
        /// Offset of its checksum field.
        expected_offset: usize,
    },
}

impl TunnelGsoError {
    /// How this error is counted: the metadata does not match the packet
    /// (`Malformed`), it asks for something not supported (`Unsupported`),
    /// or its partial checksum is missing or misplaced (`Checksum`).
    pub fn class(&self) -> TunnelGsoErrorClass {
        match self {
            TunnelGsoError::NoPartialChecksum | TunnelGsoError::ChecksumNotInner { .. } => {
                TunnelGsoErrorClass::Checksum
            }
            TunnelGsoError::OuterNotIp(_) | TunnelGsoError::OuterNotUdp(_) => {
                TunnelGsoErrorClass::Unsupported
            }
            TunnelGsoError::Outer(e) | TunnelGsoError::Inner(e) if e.is_unsupported() => {
                TunnelGsoErrorClass::Unsupported
            }
            _ => TunnelGsoErrorClass::Malformed,
        }
    }
}

/// The counting class of a [`TunnelGsoError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelGsoErrorClass {
    /// Headers cut short or lengths that disagree with the frame.
    Malformed,
    /// A GSO kind that does not match the inner packet, or a packet shape
    /// (BIG TCP, IPv6 routing headers, too many segments) not supported.
    Unsupported,
    /// The partial checksum is missing or not the inner L4 one.
    Checksum,
}

/// Where the headers of a VXLAN GSO super-frame lie (offsets from the
/// frame start), as checked by [`parse_vxlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelLayout {
    /// The outer IP header.
    pub outer_l3: usize,
    /// The outer UDP header (a tunnel vnet header's `outer_th_offset`).
    pub outer_l4: usize,
    /// The inner Ethernet header: the frame a decapsulation keeps.
    pub inner_l2: usize,
    /// The inner IP header (a tunnel vnet header's `inner_nh_offset`).
    pub inner_l3: usize,
    /// The inner L4 header, where the partial checksum starts.
    pub inner_l4: usize,
    /// The end of the inner L4 header: where the payload that is cut starts.
    pub inner_payload: usize,
    /// The outer IP header is IPv6 (`VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6`).
    pub outer_ipv6: bool,
    /// The outer UDP checksum is in use (`SKB_GSO_UDP_TUNNEL_CSUM`,
    /// `VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`): each segment needs its own.
    pub outer_udp_checksum: bool,
    /// Segments the frame makes.
    pub segments: usize,
}

impl TunnelLayout {
    /// Length of the inner headers, Ethernet to the end of L4 (the inner
    /// frame's `hdr_len`).
    pub fn inner_header_len(&self) -> usize {
        self.inner_payload - self.inner_l2
    }
}

/// Checks that `frame` is Ethernet / IP / UDP / VXLAN around an inner
/// super-frame that `offload` describes, and finds its headers.
///
/// `offload.gso` names the inner segmentation and `offload.csum` must be
/// the inner L4 checksum, partial (see the module documentation). Which UDP
/// port carries VXLAN is the caller's business; any port is accepted here.
pub fn parse_vxlan(frame: &[u8], offload: &Offload) -> Result<TunnelLayout, TunnelGsoError> {
    if offload.gso == GsoKind::None {
        return Err(TunnelGsoError::NotGso);
    }
    let mss = usize::from(offload.gso_size);
    if mss == 0 {
        return Err(TunnelGsoError::Inner(GsoError::ZeroGsoSize));
    }
    if frame.len() > MAX_FRAME_LEN {
        return Err(TunnelGsoError::Outer(GsoError::TooLong(frame.len())));
    }
    let (outer_l3, outer_l4, outer_ipv6) = parse_outer(frame)?;
    let udp_bytes = frame.get(outer_l4..).unwrap_or_default();
    check_udp(udp_bytes).map_err(TunnelGsoError::Outer)?;
    let outer_udp_checksum = UdpPacket::new_unchecked(udp_bytes).checksum() != 0;
    let vxlan_at = outer_l4 + udp::HEADER_LEN;
    let header = VxlanHeader::new_checked(frame.get(vxlan_at..).unwrap_or_default())
        .map_err(|_| TunnelGsoError::TunnelHeader)?;
    if !header.has_vni_flag() {
        return Err(TunnelGsoError::TunnelHeader);
    }
    let inner_l2 = vxlan_at + vxlan::HEADER_LEN;
    let inner = frame.get(inner_l2..).unwrap_or_default();
    let layout = parse_layout(inner, offload.gso).map_err(TunnelGsoError::Inner)?;
    let (start, offset) = offload.csum.ok_or(TunnelGsoError::NoPartialChecksum)?;
    let expected_start = inner_l2 + layout.l4;
    let expected_offset = if layout.is_tcp {
        TCP_CHECKSUM_OFFSET
    } else {
        UDP_CHECKSUM_OFFSET
    };
    if (usize::from(start), usize::from(offset)) != (expected_start, expected_offset) {
        return Err(TunnelGsoError::ChecksumNotInner {
            start,
            offset,
            expected_start,
            expected_offset,
        });
    }
    let segments = (inner.len() - layout.payload).div_ceil(mss).max(1);
    if segments > MAX_SEGMENTS {
        return Err(TunnelGsoError::Inner(GsoError::TooManySegments(segments)));
    }
    Ok(TunnelLayout {
        outer_l3,
        outer_l4,
        inner_l2,
        inner_l3: inner_l2 + layout.l3,
        inner_l4: expected_start,
        inner_payload: inner_l2 + layout.payload,
        outer_ipv6,
        outer_udp_checksum,
        segments,
    })
}

/// Where the inner Ethernet frame starts when the UDP header at `udp_at`
/// is followed by a VXLAN header as senders write it
/// ([`VxlanHeader::is_canonical`]), whatever the UDP port; `None` otherwise.
pub fn vxlan_inner_start(frame: &[u8], udp_at: usize) -> Option<usize> {
    let at = udp_at.checked_add(udp::HEADER_LEN)?;
    let header = VxlanHeader::new_checked(frame.get(at..)?).ok()?;
    header.is_canonical().then_some(at + vxlan::HEADER_LEN)
}

/// The outer L3 and L4 offsets of a UDP-in-IP frame, and whether it is IPv6.
fn parse_outer(frame: &[u8]) -> Result<(usize, usize, bool), TunnelGsoError> {
    let l2 = L2Header::parse(frame).map_err(|e| TunnelGsoError::Outer(GsoError::Ethernet(e)))?;
    let ip = frame.get(l2.l3_offset..).unwrap_or_default();
    let (ipv6, (header_len, protocol)) = match l2.ethertype {
        EtherType::IPV4 => (false, parse_ipv4(ip).map_err(TunnelGsoError::Outer)?),
        EtherType::IPV6 => (true, parse_ipv6(ip).map_err(TunnelGsoError::Outer)?),
        other => return Err(TunnelGsoError::OuterNotIp(other.0)),
    };
    if protocol != IpProtocol::UDP {
        return Err(TunnelGsoError::OuterNotUdp(protocol.0));
    }
    Ok((l2.l3_offset, l2.l3_offset + header_len, ipv6))
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::io::vnet;

    /// A VXLAN GSO super-frame as a Linux 6.18 `vxlan` device (VNI 7,
    /// default options) handed it to an AF_PACKET socket with vnet headers
    /// on the other end of its veth underlay: the 10-byte vnet header, then
    /// the frame (see `dataplane/testdata/README.md`).
    pub(crate) const KERNEL_VXLAN_GSO: &[u8] =
        include_bytes!("../../../testdata/kernel-vxlan-gso.vnet");

    /// The fixture's offload state and frame.
    fn kernel_frame() -> (Offload, Vec<u8>) {
        let (hdr, frame) = KERNEL_VXLAN_GSO.split_at(vnet::VNET_HDR_LEN_LEGACY);
        (vnet::decode(hdr).unwrap(), frame.to_vec())
    }

    #[test]
    fn kernel_super_frame_is_recognised() {
        let (offload, frame) = kernel_frame();
        // What the kernel said: inner TCPv4 GSO, MSS 1398, checksum partial
        // at the inner TCP header.
        assert_eq!(offload.gso, GsoKind::TcpV4);
        assert_eq!(offload.gso_size, 1398);
        assert_eq!(offload.csum, Some((84, 16)));
        let layout = parse_vxlan(&frame, &offload).unwrap();
        assert_eq!(
            layout,
            TunnelLayout {
                outer_l3: 14,
                outer_l4: 34,
                inner_l2: 50,
                inner_l3: 64,
                inner_l4: 84,
                inner_payload: 116,
                outer_ipv6: false,
                outer_udp_checksum: true,
                segments: 3,
            }
        );
        assert_eq!(layout.inner_header_len(), 66);
        // The vnet header's hdr_len (Linux 6.18) is the inner headers' end.
        assert_eq!(usize::from(offload.hdr_len), layout.inner_payload);
    }

    #[test]
    fn metadata_that_does_not_describe_the_inner_packet_is_refused() {
        let (offload, frame) = kernel_frame();
        let with = |o: Offload| parse_vxlan(&frame, &o).map_err(|e| e.class());
        let class = TunnelGsoErrorClass::Checksum;
        assert_eq!(
            with(Offload {
                csum: None,
                ..offload
            }),
            Err(class)
        );
        // The outer UDP checksum is not the one a tunnel super-frame leaves partial.
        let outer = Offload {
            csum: Some((34, 6)),
            ..offload
        };
        assert_eq!(with(outer), Err(class));
        let unsupported = Err(TunnelGsoErrorClass::Unsupported);
        for gso in [GsoKind::TcpV6, GsoKind::UdpL4] {
            assert_eq!(with(Offload { gso, ..offload }), unsupported);
        }
        let tiny = Offload {
            gso_size: 1,
            ..offload
        };
        assert_eq!(with(tiny), unsupported);
        assert_eq!(
            parse_vxlan(&frame, &Offload::default()),
            Err(TunnelGsoError::NotGso)
        );
    }

    #[test]
    fn frames_that_are_not_vxlan_super_frames_are_refused() {
        let (offload, frame) = kernel_frame();
        let malformed = Err(TunnelGsoErrorClass::Malformed);
        let class = |f: &[u8]| parse_vxlan(f, &offload).map_err(|e| e.class());
        // Cut short: the outer lengths no longer match.
        assert_eq!(class(&frame[..frame.len() - 100]), malformed);
        assert_eq!(class(&frame[..40]), malformed);
        assert_eq!(class(&[]), malformed);
        // The I flag cleared.
        let mut no_vni = frame.clone();
        no_vni[42] = 0;
        assert_eq!(
            parse_vxlan(&no_vni, &offload),
            Err(TunnelGsoError::TunnelHeader)
        );
        // The inner frame alone is TCP, not a tunnel.
        assert_eq!(
            parse_vxlan(&frame[50..], &offload),
            Err(TunnelGsoError::OuterNotUdp(6))
        );
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            parse_vxlan(&arp, &offload),
            Err(TunnelGsoError::OuterNotIp(0x0806))
        );
        // Inner IPv4 total length off by one.
        let mut inner_len = frame.clone();
        inner_len[67] ^= 1;
        assert_eq!(class(&inner_len), malformed);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn mutated_kernel_frames_never_panic(
            mutations in proptest::collection::vec((0usize..130, any::<u8>()), 1..6),
            cut in 0usize..200,
            gso_size in 0u16..3000,
            csum in proptest::option::of((0u16..200, 0u16..40)),
        ) {
            let (offload, mut frame) = kernel_frame();
            for (at, value) in mutations {
                if let Some(b) = frame.get_mut(at) {
                    *b = value;
                }
            }
            frame.truncate(frame.len().saturating_sub(cut));
            let offload = Offload { gso_size, csum, ..offload };
            if let Ok(layout) = parse_vxlan(&frame, &offload) {
                prop_assert!(layout.inner_payload <= frame.len());
                prop_assert_eq!(offload.csum.map(|c| usize::from(c.0)), Some(layout.inner_l4));
            }
        }
    }
}
