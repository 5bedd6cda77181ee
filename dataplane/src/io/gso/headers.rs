//! Offload state found in the headers, for a device that says only
//! "checksum partial" and "TCP super-frame" (an AF_PACKET ring without vnet
//! headers: `TP_STATUS_CSUMNOTREADY`, `TP_STATUS_GSO_TCP`).
//!
//! Where the partial checksum lies is then a matter of parsing: the TCP or
//! UDP header of the packet. A VXLAN packet has two, and Linux leaves only
//! one of them partial: the inner one when the inner packet's checksum was
//! still to be done (a TCP segment of a local socket: the outer UDP
//! checksum is then computed in full, `udp_set_csum` with local checksum
//! offload) and always for a tunnel super-frame; the outer one when the
//! inner packet was complete. A partial field holds exactly the folded
//! pseudo-header sum (`~tcp_v4_check(len, saddr, daddr, 0)`), so the outer
//! checksum is taken as the partial one only when its field holds that sum
//! and the inner field does not; a complete checksum equals its folded
//! pseudo-header sum by chance once in 65,536.

use crate::packet::{GsoKind, Offload};
use crate::wire::{
    EtherType, IpProtocol, Ipv4Packet, Ipv6Packet, L2Header, checksum, ipv6, read_u16,
};

use super::tunnel;

/// The IP MTU a super-frame without a vnet header is assumed to be cut for.
const ASSUMED_MTU: usize = 1500;

/// Where the TCP or UDP header of an unfragmented IP packet lies.
#[derive(Debug, Clone, Copy)]
struct L4At {
    /// Offset of the IP header in the frame.
    l3: usize,
    /// Offset of the TCP or UDP header in the frame.
    l4: usize,
    /// TCP or UDP.
    protocol: IpProtocol,
    /// IPv6 (else IPv4).
    ipv6: bool,
    /// The folded pseudo-header sum: what a partial checksum field holds.
    pseudo: u16,
}

impl L4At {
    /// Offset of the checksum field within the L4 header.
    fn csum_offset(&self) -> usize {
        if self.protocol == IpProtocol::TCP {
            16
        } else {
            6
        }
    }

    /// The value of the L4 checksum field.
    fn csum_field(&self, frame: &[u8]) -> Option<u16> {
        let at = self.l4 + self.csum_offset();
        frame.get(at..at + 2).map(|b| read_u16(b, 0))
    }
}

/// The offload state of a frame whose device said only "checksum partial"
/// (and maybe "TCP super-frame") without a vnet header: the L4 checksum
/// field is found by parsing (TCP or UDP over IPv4 or IPv6, inside VXLAN
/// when the partial one is the inner one, see the module documentation),
/// and a super-frame gets the largest segment whose packet, with any outer
/// headers, fits a 1500-byte IP MTU. `None` if the headers do not say where
/// the checksum is.
pub fn offload_from_headers(frame: &[u8], tcp_gso: bool) -> Option<Offload> {
    let outer = l4_at(frame, 0)?;
    let inner = (outer.protocol == IpProtocol::UDP)
        .then(|| tunnel::vxlan_inner_start(frame, outer.l4))
        .flatten()
        .and_then(|inner_l2| l4_at(frame, inner_l2))
        .filter(|inner| tcp_gso || inner_is_partial(frame, &outer, inner));
    let at = inner.unwrap_or(outer);
    let mtu = ASSUMED_MTU.checked_sub(at.l3 - outer.l3)?;
    offload_at(frame, &at, tcp_gso, mtu)
}

/// Of a VXLAN packet with one partial checksum, whether it is the inner one.
fn inner_is_partial(frame: &[u8], outer: &L4At, inner: &L4At) -> bool {
    let outer_field = outer.csum_field(frame);
    outer_field == Some(0)
        || outer_field != Some(outer.pseudo)
        || inner.csum_field(frame) == Some(inner.pseudo)
}

/// The offload state with the partial checksum at `at`, and for a TCP
/// super-frame the segment size that fits an IP MTU of `mtu`.
fn offload_at(frame: &[u8], at: &L4At, tcp_gso: bool, mtu: usize) -> Option<Offload> {
    let start = u16::try_from(at.l4).ok()?;
    let mut offload = Offload {
        csum: Some((start, at.csum_offset() as u16)),
        ..Offload::default()
    };
    if tcp_gso && at.protocol == IpProtocol::TCP {
        let tcp_len = usize::from(frame.get(at.l4 + 12)? >> 4) * 4;
        let headers = at.l4 - at.l3 + tcp_len;
        offload.gso = if at.ipv6 {
            GsoKind::TcpV6
        } else {
            GsoKind::TcpV4
        };
        offload.gso_size = u16::try_from(mtu.checked_sub(headers)?).ok()?;
        offload.hdr_len = u16::try_from(at.l4 + tcp_len).ok()?;
    }
    Some(offload)
}

/// Finds the TCP or UDP header of the unfragmented IP packet in the
/// Ethernet frame at `frame[base..]`.
fn l4_at(frame: &[u8], base: usize) -> Option<L4At> {
    let bytes = frame.get(base..)?;
    let l2 = L2Header::parse(bytes).ok()?;
    let l3 = base + l2.l3_offset;
    let ip = frame.get(l3..)?;
    let (protocol, header_len, ipv6, pseudo) = match l2.ethertype {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(ip).ok()?;
            if ip.is_fragment() {
                return None;
            }
            let len = usize::from(ip.total_len()).checked_sub(ip.header_len())?;
            let pseudo = checksum::pseudo_header_v4(
                ip.src_addr(),
                ip.dst_addr(),
                ip.protocol().0,
                len as u32,
            );
            (ip.protocol(), ip.header_len(), false, pseudo)
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(ip).ok()?;
            let ul = ip.upper_layer().ok()?;
            if ul.fragment.is_some() {
                return None;
            }
            let len = (usize::from(ip.payload_len()) + ipv6::HEADER_LEN).checked_sub(ul.offset)?;
            let pseudo =
                checksum::pseudo_header_v6(ip.src_addr(), ip.dst_addr(), ul.protocol.0, len as u32);
            (ul.protocol, ul.offset, true, pseudo)
        }
        _ => return None,
    };
    matches!(protocol, IpProtocol::TCP | IpProtocol::UDP).then_some(L4At {
        l3,
        l4: l3 + header_len,
        protocol,
        ipv6,
        pseudo: checksum::fold(pseudo),
    })
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;
    use crate::io::gso::{complete_checksum, tunnel};

    const INNER_TCP: usize = 50 + 14 + 20;

    /// A VXLAN packet around a TCP segment, every checksum complete (the
    /// outer UDP one over the inner packet as it is).
    fn vxlan_tcp() -> Vec<u8> {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([2, 0x56, 0, 0, 0, 2], [2, 0x56, 0, 0, 0, 1])
            .ipv4([10, 244, 2, 2], [10, 244, 1, 2], 63)
            .tcp(37374, 5000, 7, 64000)
            .ack(1)
            .write(&mut inner, &[0x5a; 700])
            .unwrap();
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
        vxlan.extend_from_slice(&inner);
        let mut outer = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4([192, 168, 200, 2], [192, 168, 200, 1], 64)
            .udp(60668, 4789)
            .write(&mut outer, &vxlan)
            .unwrap();
        outer
    }

    /// Writes the folded pseudo-header sum into the checksum field at `at`,
    /// as Linux leaves a partial checksum.
    fn make_partial(frame: &mut [u8], l3: usize, l4: usize, field: usize, protocol: u8) {
        let ip = Ipv4Packet::new_checked(&frame[l3..]).unwrap();
        let len = usize::from(ip.total_len()) - ip.header_len();
        let pseudo = checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), protocol, len as u32);
        frame[l4 + field..l4 + field + 2].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    }

    #[test]
    fn the_inner_checksum_when_the_outer_one_is_complete() {
        // Linux with local checksum offload: inner partial, outer computed.
        let mut frame = vxlan_tcp();
        make_partial(&mut frame, 64, INNER_TCP, 16, 6);
        let o = offload_from_headers(&frame, false).unwrap();
        assert_eq!(
            (o.csum, o.gso),
            (Some((INNER_TCP as u16, 16)), GsoKind::None)
        );
        // Without an outer checksum too.
        frame[40..42].copy_from_slice(&[0, 0]);
        let o = offload_from_headers(&frame, false).unwrap();
        assert_eq!(o.csum, Some((INNER_TCP as u16, 16)));
        // Completed where it says, the inner checksum is right again.
        let mut completed = frame.clone();
        complete_checksum(&mut completed, INNER_TCP, 16).unwrap();
        assert_eq!(completed[INNER_TCP..], vxlan_tcp()[INNER_TCP..]);
    }

    #[test]
    fn the_outer_checksum_when_the_inner_one_is_complete() {
        let mut frame = vxlan_tcp();
        make_partial(&mut frame, 14, 34, 6, 17);
        let o = offload_from_headers(&frame, false).unwrap();
        assert_eq!(o.csum, Some((34, 6)));
        // Not VXLAN (a reserved bit set): the outer UDP checksum, as before.
        let mut other = vxlan_tcp();
        other[45] = 1;
        make_partial(&mut other, 64, INNER_TCP, 16, 6);
        assert_eq!(
            offload_from_headers(&other, false).unwrap().csum,
            Some((34, 6))
        );
    }

    #[test]
    fn a_tunnel_super_frame_is_the_inner_segmentation() {
        // The kernel fixture without its vnet header: what the ring's
        // status word says (CSUMNOTREADY | GSO_TCP) and the headers.
        let (hdr, frame) = tunnel::tests::KERNEL_VXLAN_GSO.split_at(10);
        let o = offload_from_headers(frame, true).unwrap();
        let kernel = crate::io::vnet::decode(hdr).unwrap();
        // The segment size guessed for a 1500-byte underlay is the kernel's.
        assert_eq!(o, kernel);
        assert!(tunnel::parse_vxlan(frame, &o).is_ok());
    }
}
