//! Reading packets out of a TPACKET_V3 ring block: bounds-checked header
//! fields, then a copy of the frame (and its vnet header) into a [`Frame`].

use super::{AfPacketStats, sys};
use crate::io::vnet;
use crate::packet::{Frame, Offload};

/// One packet as the ring holds it.
pub(super) struct RingPacket<'a> {
    /// Offset of the next packet header from this one (0 on the last).
    pub(super) next_offset: usize,
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_OUTGOING`, ...).
    pub(super) pkt_type: u8,
    /// `tp_status` (`TP_STATUS_CSUMNOTREADY`, `TP_STATUS_GSO_TCP`, ...).
    pub(super) status: u32,
    /// Length on the wire; more than `data.len()` when the ring truncated it.
    pub(super) wire_len: usize,
    /// The vnet header in front of the MAC header (empty without vnet headers).
    pub(super) vnet_hdr: &'a [u8],
    /// The frame from its MAC header.
    pub(super) data: &'a [u8],
}

pub(super) fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
}

pub(super) fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    bytes
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes)
}

/// Reads the packet whose `tpacket3_hdr` sits at `offset` in `block`;
/// `None` if any field points outside the block.
pub(super) fn ring_packet(block: &[u8], offset: usize, vnet_len: usize) -> Option<RingPacket<'_>> {
    let hdr = block.get(offset..offset.checked_add(sys::PKT_HDR_LEN)?)?;
    let mac = offset.checked_add(usize::from(read_u16(hdr, sys::PKT_MAC)?))?;
    let snaplen = read_u32(hdr, sys::PKT_SNAPLEN)? as usize;
    Some(RingPacket {
        next_offset: read_u32(hdr, sys::PKT_NEXT_OFFSET)? as usize,
        pkt_type: *block.get(offset.checked_add(sys::PKT_TYPE)?)?,
        status: read_u32(hdr, sys::PKT_STATUS)?,
        wire_len: read_u32(hdr, sys::PKT_LEN)? as usize,
        vnet_hdr: block.get(mac.checked_sub(vnet_len)?..mac)?,
        data: block.get(mac..mac.checked_add(snaplen)?)?,
    })
}

/// Copies `pkt` into `frame`; false (with a counter bumped) if it is
/// outgoing, has a bad vnet header, or does not fit whole.
pub(super) fn copy_packet(
    pkt: &RingPacket<'_>,
    frame: &mut Frame,
    vnet_hdr: bool,
    stats: &mut AfPacketStats,
) -> bool {
    if pkt.pkt_type == libc::PACKET_OUTGOING {
        stats.rx_outgoing += 1;
        return false;
    }
    let offload = if vnet_hdr {
        match vnet::decode(pkt.vnet_hdr) {
            Ok(offload) => offload,
            Err(_) => {
                stats.rx_bad_vnet += 1;
                return false;
            }
        }
    } else if pkt.status & (libc::TP_STATUS_CSUMNOTREADY | sys::TP_STATUS_GSO_TCP) != 0 {
        // Without a vnet header the ring still says when a checksum is
        // partial (veth and loopback hand over locally built packets that
        // way) or the packet is a TCP super-frame; where the checksum lives
        // and the segment size come from the headers themselves.
        let gso = pkt.status & sys::TP_STATUS_GSO_TCP != 0;
        crate::io::gso::offload_from_headers(pkt.data, gso).unwrap_or_default()
    } else {
        Offload::default()
    };
    let len = pkt.data.len();
    match frame.reset_for_rx().get_mut(..len) {
        Some(dst) if pkt.wire_len == len => dst.copy_from_slice(pkt.data),
        _ => {
            stats.rx_oversized += 1;
            return false;
        }
    }
    frame.offload = offload;
    frame.set_len(len)
}
