//! Decapsulation: checks an outer VXLAN packet addressed to us and strips
//! the outer headers, leaving the inner frame in place.
//!
//! Checked, in order: outer IPv4 header (length, checksum; a fragment is
//! returned as `VxlanFragmented`, which the pipeline takes as "reassemble
//! it, then decapsulate the whole"), UDP length, UDP checksum when
//! not zero (unless the device vouched for it), the VXLAN I flag, the VNI,
//! then the source node (the outer source must be a known node IP). Each
//! failure has its own drop reason.
//!
//! A GSO super-frame (a kernel `vxlan` peer on the same veth underlay sends
//! one per TCP super-segment, see [`tunnel`]) is checked as a whole by
//! [`tunnel::parse_vxlan`], which must find that its offload state describes
//! the inner packet; its inner frame then goes on as one GSO frame with a
//! partial checksum, which a TAP pod takes whole and the worker cuts for a
//! port without offloads. Its outer UDP checksum is a partial sum, never
//! verified (the device vouched for the packet, as Linux trusts a
//! `CHECKSUM_PARTIAL` one).

use crate::io::gso::tunnel::{self, TunnelGsoError, TunnelGsoErrorClass};
use crate::packet::{DropReason, Frame, GsoKind};
use crate::wire::{Ipv4Packet, UdpPacket, VxlanHeader, ethernet, udp, vxlan};

use super::Overlay;
use super::table::TunnelId;

/// When `frame` (an IPv4 Ethernet frame without VLAN tags, to the
/// uplink's MAC) is UDP to our node IP and VXLAN port, strips its outer
/// headers and returns the tunnel it came from; `Ok(None)` for any other
/// packet (the router's), which is left untouched.
pub fn decapsulate(frame: &mut Frame, overlay: &Overlay) -> Result<Option<TunnelId>, DropReason> {
    let Some(outer) = outer_headers(frame, overlay)? else {
        return Ok(None);
    };
    let tunnel = overlay
        .tunnels
        .by_node_ip(outer.src)
        .ok_or(DropReason::VxlanUnknownNode)?;
    strip_outer(frame, &outer)?;
    Ok(Some(tunnel))
}

/// What decapsulation keeps of the outer headers.
struct Outer {
    /// Length of the outer headers (Ethernet to VXLAN).
    len: usize,
    /// Length of the inner frame.
    inner_len: usize,
    /// The sending node.
    src: core::net::Ipv4Addr,
    /// The outer packet carries congestion experienced.
    congested: bool,
}

/// Checks the outer IPv4, UDP and VXLAN headers; `Ok(None)`: not VXLAN to us.
#[inline(always)]
fn outer_headers(frame: &Frame, overlay: &Overlay) -> Result<Option<Outer>, DropReason> {
    let Some(ip_bytes) = frame.data().get(ethernet::HEADER_LEN..) else {
        return Ok(None);
    };
    let Ok(ip) = Ipv4Packet::new_checked(ip_bytes) else {
        return Ok(None);
    };
    if ip.protocol() != crate::wire::IpProtocol::UDP || ip.dst_addr() != overlay.node_ip {
        return Ok(None);
    }
    // The destination port, read before the UDP header is checked whole.
    let dst_port =
        crate::wire::L4Header::new(crate::wire::IpProtocol::UDP, ip.payload()).dst_port();
    if dst_port != Some(overlay.udp_port) && !ip.is_later_fragment() {
        return Ok(None);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    if ip.is_fragment() {
        return Err(DropReason::VxlanFragmented);
    }
    let udp_len = udp_and_vxlan(&ip, frame, overlay)?;
    Ok(Some(Outer {
        len: ethernet::HEADER_LEN + ip.header_len() + udp::HEADER_LEN + vxlan::HEADER_LEN,
        inner_len: udp_len - udp::HEADER_LEN - vxlan::HEADER_LEN,
        src: ip.src_addr(),
        congested: ip.dscp_ecn() & ECN_MASK == ECN_CE,
    }))
}

/// Checks the UDP header (length, checksum) and the VXLAN header (I flag,
/// VNI) in `ip`; `Ok` with the UDP length.
#[inline(always)]
fn udp_and_vxlan(
    ip: &Ipv4Packet<&[u8]>,
    frame: &Frame,
    overlay: &Overlay,
) -> Result<usize, DropReason> {
    let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| DropReason::VxlanMalformed)?;
    let udp_len = usize::from(udp.len());
    if udp_len < udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN {
        return Err(DropReason::VxlanMalformed);
    }
    // A super-frame's outer checksum is a partial sum for the whole of
    // it: never valid as it stands (its metadata is checked below).
    let checksum_vouched = frame.offload.csum_valid
        || frame.offload.csum.is_some()
        || frame.offload.gso != GsoKind::None;
    if udp.checksum() != 0
        && !checksum_vouched
        && !udp.verify_checksum_v4(ip.src_addr(), ip.dst_addr())
    {
        return Err(DropReason::VxlanBadChecksum);
    }
    let header = VxlanHeader::new_checked(udp.payload()).map_err(|_| DropReason::VxlanMalformed)?;
    if !header.has_vni_flag() {
        return Err(DropReason::VxlanMalformed);
    }
    if header.vni() != overlay.vni {
        return Err(DropReason::VxlanWrongVni);
    }
    Ok(udp_len)
}

/// Strips the outer headers, leaving the inner frame and its offload state.
#[inline(always)]
fn strip_outer(frame: &mut Frame, outer: &Outer) -> Result<(), DropReason> {
    // A super-frame (a kernel peer's tunnel GSO) keeps its inner
    // segmentation: the inner frame goes on whole, described by the same
    // offload state.
    let inner_header_len = match frame.offload.gso {
        GsoKind::None => 0,
        _ => tunnel::parse_vxlan(frame.data(), &frame.offload)
            .map_err(|e| tunnel_gso_drop(&e))?
            .inner_header_len(),
    };
    if !frame.pull_front(outer.len) || !frame.set_len(outer.inner_len) {
        return Err(DropReason::VxlanMalformed);
    }
    // A partial checksum in the inner frame moves with it; one in the outer
    // headers is moot once they are gone (the inner one is then complete).
    frame.offload.csum = frame.offload.csum.and_then(|(start, offset)| {
        let start = usize::from(start).checked_sub(outer.len)?;
        Some((u16::try_from(start).ok()?, offset))
    });
    frame.offload.hdr_len = inner_header_len as u16;
    if outer.congested {
        mark_inner_congestion(frame.data_mut());
    }
    Ok(())
}

/// The drop reason of a VXLAN super-frame [`tunnel::parse_vxlan`] refused.
fn tunnel_gso_drop(error: &TunnelGsoError) -> DropReason {
    match error.class() {
        TunnelGsoErrorClass::Malformed => DropReason::VxlanGsoMalformed,
        TunnelGsoErrorClass::Unsupported => DropReason::VxlanGsoUnsupported,
        TunnelGsoErrorClass::Checksum => DropReason::VxlanGsoChecksum,
    }
}

const ECN_MASK: u8 = 0b11;
const ECN_CE: u8 = 0b11;

/// RFC 6040 (Linux `INET_ECN_decapsulate`): congestion experienced on the
/// outer header is copied to an ECN-capable inner IPv4 packet.
fn mark_inner_congestion(inner: &mut [u8]) {
    let Some(Ok(mut ip)) = ethernet::ipv4_payload_mut(inner).map(Ipv4Packet::new_checked) else {
        return;
    };
    let old = ip.dscp_ecn();
    if old & ECN_MASK == 0 || old & ECN_MASK == ECN_CE {
        return;
    }
    ip.set_dscp_ecn_with_checksum(old | ECN_CE);
}
