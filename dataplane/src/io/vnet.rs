//! The virtio-net header that TAP (`IFF_VNET_HDR`) and AF_PACKET
//! (`PACKET_VNET_HDR`) put in front of each frame, converted to and from a
//! frame's [`Offload`] state.
//!
//! Layout (`include/uapi/linux/virtio_net.h`), host byte order (little
//! endian on the machines we run on; we never call `TUNSETVNETBE`):
//!
//! ```text
//! 0 flags  1 gso_type  2..4 hdr_len  4..6 gso_size  6..8 csum_start  8..10 csum_offset  [10..12 num_buffers]
//! ```
//!
//! TAP uses the 12-byte `virtio_net_hdr_v1` (set by `TUNSETVNETHDRSZ`),
//! AF_PACKET the 10-byte legacy header. The transmit TAP of the overlay
//! (`super::tunnel_tx`) uses the 24-byte `virtio_net_hdr_v1_hash_tunnel`
//! (Linux 6.17), which adds where the outer UDP and the inner IP headers
//! start, so one write can carry a whole UDP-tunnel super-frame:
//!
//! ```text
//! 0..12 virtio_net_hdr_v1  12..16 hash_value  16..18 hash_report  18..20 padding
//! 20..22 outer_th_offset  22..24 inner_nh_offset
//! ```

use crate::packet::{GsoKind, Offload};

/// `virtio_net_hdr_v1` length (TAP, after `TUNSETVNETHDRSZ 12`).
pub const VNET_HDR_LEN_V1: usize = 12;
/// Legacy `virtio_net_hdr` length (AF_PACKET `PACKET_VNET_HDR`).
pub const VNET_HDR_LEN_LEGACY: usize = 10;

/// `virtio_net_hdr_v1_hash_tunnel` length: tun takes tunnel GSO from a
/// writer only with a vnet header size at least this (`TUN_VNET_TNL_SIZE`).
pub const VNET_HDR_LEN_TUNNEL: usize = 24;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`: each segment's outer UDP checksum
/// is to be computed (the field holds the pseudo-header sum).
pub const F_UDP_TUNNEL_CSUM: u8 = 8;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO, obsolete: refused).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4` bit: inside an IPv4 UDP tunnel.
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6` bit: inside an IPv6 UDP tunnel.
pub const GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
/// `VIRTIO_NET_HDR_GSO_ECN` flag bit.
pub const GSO_ECN: u8 = 0x80;

/// A vnet header this dataplane cannot honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VnetError {
    /// Shorter than the header.
    #[error("virtio-net header truncated")]
    Truncated,
    /// A `gso_type` we do not implement (UFO) or do not know.
    #[error("unsupported virtio-net gso_type {0:#04x}")]
    UnsupportedGso(u8),
    /// GSO requested with a zero segment size.
    #[error("virtio-net GSO with gso_size 0")]
    ZeroGsoSize,
}

/// Reads a vnet header (either length) into an [`Offload`].
pub fn decode(hdr: &[u8]) -> Result<Offload, VnetError> {
    let h: &[u8; VNET_HDR_LEN_LEGACY] = hdr
        .get(..VNET_HDR_LEN_LEGACY)
        .and_then(|h| h.try_into().ok())
        .ok_or(VnetError::Truncated)?;
    let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let (flags, gso_type) = (h[0], h[1]);
    let gso = match gso_type & !GSO_ECN {
        GSO_NONE => GsoKind::None,
        GSO_TCPV4 => GsoKind::TcpV4,
        GSO_TCPV6 => GsoKind::TcpV6,
        GSO_UDP_L4 => GsoKind::UdpL4,
        other => return Err(VnetError::UnsupportedGso(other)),
    };
    let gso_size = le(4);
    if gso != GsoKind::None && gso_size == 0 {
        return Err(VnetError::ZeroGsoSize);
    }
    Ok(Offload {
        gso,
        gso_size,
        hdr_len: le(2),
        csum: (flags & F_NEEDS_CSUM != 0).then(|| (le(6), le(8))),
        csum_valid: flags & F_DATA_VALID != 0,
    })
}

/// Writes `offload` as a vnet header into `hdr` (10 or 12 bytes; a 12-byte
/// header gets `num_buffers` = 0). Returns the bytes written, 0 if `hdr` is short.
pub fn encode(offload: &Offload, hdr: &mut [u8]) -> usize {
    let len = if hdr.len() >= VNET_HDR_LEN_V1 {
        VNET_HDR_LEN_V1
    } else {
        VNET_HDR_LEN_LEGACY
    };
    let Some(h) = hdr.get_mut(..len) else {
        return 0;
    };
    let mut flags = 0;
    let (start, offset) = match offload.csum {
        Some(c) => {
            flags |= F_NEEDS_CSUM;
            c
        }
        None => (0, 0),
    };
    if offload.csum_valid {
        flags |= F_DATA_VALID;
    }
    h[0] = flags;
    h[1] = match offload.gso {
        GsoKind::None => GSO_NONE,
        GsoKind::TcpV4 => GSO_TCPV4,
        GsoKind::TcpV6 => GSO_TCPV6,
        GsoKind::UdpL4 => GSO_UDP_L4,
    };
    let gso = offload.gso != GsoKind::None;
    h[2..4].copy_from_slice(&(if gso { offload.hdr_len } else { 0 }).to_le_bytes());
    h[4..6].copy_from_slice(&(if gso { offload.gso_size } else { 0 }).to_le_bytes());
    h[6..8].copy_from_slice(&start.to_le_bytes());
    h[8..10].copy_from_slice(&offset.to_le_bytes());
    if len == VNET_HDR_LEN_V1 {
        h[10..12].copy_from_slice(&0u16.to_le_bytes());
    }
    len
}

/// Where the headers of a UDP-tunnel super-frame lie, as a tunnel vnet
/// header names them (offsets from the outer Ethernet header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelOffsets {
    /// The outer UDP header (`outer_th_offset`).
    pub outer_l4: u16,
    /// The inner IP header (`inner_nh_offset`).
    pub inner_l3: u16,
    /// The outer IP header is IPv6 (else IPv4).
    pub outer_ipv6: bool,
    /// The outer UDP checksum is in use: each segment gets its own.
    pub outer_udp_checksum: bool,
}

/// Writes a `virtio_net_hdr_v1_hash_tunnel` for a UDP-tunnel super-frame
/// whose inner segmentation and partial checksum `offload` describes (with
/// offsets from the outer Ethernet header); `tunnel` says where the outer
/// UDP and inner IP headers are. Linux's `virtio_net_hdr_tnl_to_skb`
/// refuses a tunnel header without a partial checksum, so `offload.csum`
/// must be set and `offload.gso` must be TCP or UDP segmentation.
pub fn encode_tunnel(
    offload: &Offload,
    tunnel: &TunnelOffsets,
    hdr: &mut [u8; VNET_HDR_LEN_TUNNEL],
) {
    let (v1, rest) = hdr.split_at_mut(VNET_HDR_LEN_V1);
    encode(offload, v1);
    let tunnel_bit = if tunnel.outer_ipv6 {
        GSO_UDP_TUNNEL_IPV6
    } else {
        GSO_UDP_TUNNEL_IPV4
    };
    v1[1] |= tunnel_bit;
    if tunnel.outer_udp_checksum {
        v1[0] |= F_UDP_TUNNEL_CSUM;
    }
    rest[..8].fill(0);
    rest[8..10].copy_from_slice(&tunnel.outer_l4.to_le_bytes());
    rest[10..12].copy_from_slice(&tunnel.inner_l3.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tso_header_round_trip() {
        // What a pod's kernel writes for a 3-segment TCP/IPv4 super-frame.
        let bytes = [
            0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00, 0x00, 0x00,
        ];
        let o = decode(&bytes).unwrap();
        assert_eq!(o.gso, GsoKind::TcpV4);
        assert_eq!(o.gso_size, 1448);
        assert_eq!(o.hdr_len, 66);
        assert_eq!(o.csum, Some((34, 16)));
        assert!(!o.csum_valid);
        let mut out = [0xffu8; 12];
        assert_eq!(encode(&o, &mut out), 12);
        assert_eq!(out, bytes);
        let mut legacy = [0u8; 10];
        assert_eq!(encode(&o, &mut legacy), 10);
        assert_eq!(legacy, bytes[..10]);
    }

    #[test]
    fn tunnel_header_layout() {
        // What the kernel's own tunnel header names for a VXLAN/IPv4 frame
        // around a TCP/IPv4 super-frame (outer UDP at 34, inner IP at 64,
        // inner TCP at 84 with 32 header bytes), outer UDP checksum on.
        let offload = Offload {
            gso: GsoKind::TcpV4,
            gso_size: 1398,
            hdr_len: 116,
            csum: Some((84, 16)),
            csum_valid: false,
        };
        let tunnel = TunnelOffsets {
            outer_l4: 34,
            inner_l3: 64,
            outer_ipv6: false,
            outer_udp_checksum: true,
        };
        let mut hdr = [0xaa; VNET_HDR_LEN_TUNNEL];
        encode_tunnel(&offload, &tunnel, &mut hdr);
        assert_eq!(
            hdr,
            [
                F_NEEDS_CSUM | F_UDP_TUNNEL_CSUM,
                GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
                116,
                0,
                0x76,
                0x05,
                84,
                0,
                16,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                34,
                0,
                64,
                0
            ]
        );
        // The first 12 bytes read back as the inner offload state.
        assert_eq!(
            decode(&hdr[..12]).unwrap_err(),
            VnetError::UnsupportedGso(0x21)
        );
        let plain = TunnelOffsets {
            outer_udp_checksum: false,
            outer_ipv6: true,
            ..tunnel
        };
        encode_tunnel(&offload, &plain, &mut hdr);
        assert_eq!(hdr[..2], [F_NEEDS_CSUM, GSO_TCPV4 | GSO_UDP_TUNNEL_IPV6]);
    }

    #[test]
    fn plain_and_invalid() {
        assert_eq!(decode(&[0; 10]).unwrap(), Offload::default());
        assert_eq!(decode(&[0; 9]).unwrap_err(), VnetError::Truncated);
        assert_eq!(
            decode(&[0, 3, 0, 0, 1, 0, 0, 0, 0, 0]).unwrap_err(),
            VnetError::UnsupportedGso(3)
        );
        assert_eq!(
            decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            VnetError::ZeroGsoSize
        );
        let ecn = decode(&[2, 0x84, 54, 0, 0xa0, 5, 0, 0, 0, 0]).unwrap();
        assert_eq!(ecn.gso, GsoKind::TcpV6);
        assert!(ecn.csum_valid);
        assert!(encode(&ecn, &mut [0u8; 4]) == 0);
    }
}
