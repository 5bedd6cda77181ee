//! Encapsulation: outer Ethernet / IPv4 / UDP / VXLAN written into a
//! frame's headroom in front of the inner frame.
//!
//! The outer IPv4 header is what Linux's `iptunnel_xmit` writes for a
//! `vxlan` device with default options: TTL 64, DSCP 0 with the inner ECN
//! copied (RFC 6040, CE becoming ECT(0)), DF per configuration, an
//! identification from a counter (also with DF, as `__ip_select_ident`
//! does). The UDP source port is a hash of the inner flow mapped into
//! 32768..61000, Linux's default ephemeral range (`udp_flow_src_port`).

use core::net::Ipv4Addr;

use crate::io::fragment::{FragmentError, Fragmenter};
use crate::io::gso::{GsoError, Segmenter};
use crate::io::vnet::TunnelOffsets;
use crate::packet::{Frame, GsoKind, Offload};
use crate::wire::{
    EtherType, EthernetFrame, IpProtocol, Ipv4Packet, L4Header, MacAddr, TcpPacket, UdpPacket,
    checksum, ethernet, ipv4, udp, vxlan,
};

use super::OUTER_LEN;

/// Where the outer headers start.
mod field {
    use crate::wire::{ethernet, ipv4, udp};
    pub const IP: usize = ethernet::HEADER_LEN;
    pub const UDP: usize = IP + ipv4::HEADER_LEN;
    pub const VXLAN: usize = UDP + udp::HEADER_LEN;
}

/// TTL of outer packets (Linux `ip_default_ttl`).
const OUTER_TTL: u8 = 64;
/// Offset of the checksum field in a TCP header.
const TCP_CHECKSUM_OFFSET: u16 = 16;
/// Linux's default ephemeral port range, from which source ports are taken.
const SRC_PORT_MIN: u32 = 32768;
const SRC_PORT_MAX: u32 = 61000;

/// Why a frame could not be encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The frame's headroom is smaller than the outer headers.
    #[error("no headroom for the {OUTER_LEN}-byte outer headers")]
    NoHeadroom,
    /// The encapsulated packet would exceed 65535 bytes.
    #[error("inner frame of {0} bytes is too long to encapsulate")]
    TooLong(usize),
    /// Cutting the inner super-frame failed.
    #[error("segmenting the inner frame failed")]
    Gso(#[from] GsoError),
    /// Cutting the inner packet into fragments failed.
    #[error("fragmenting the inner packet failed")]
    Fragment(#[from] FragmentError),
}

/// The outer header fields of one encapsulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapParams {
    /// Outer source MAC (the uplink's).
    pub src_mac: MacAddr,
    /// Outer destination MAC (the resolved outer next hop).
    pub dst_mac: MacAddr,
    /// Outer source IP (our node IP).
    pub src_ip: Ipv4Addr,
    /// Outer destination IP (the remote node IP).
    pub dst_ip: Ipv4Addr,
    /// UDP source port (see [`flow_src_port`]).
    pub src_port: u16,
    /// UDP destination port (4789).
    pub dst_port: u16,
    /// VNI.
    pub vni: u32,
    /// Outer IPv4 identification (of the first segment for a super-frame).
    pub ip_id: u16,
    /// Outer TOS byte.
    pub tos: u8,
    /// Set DF.
    pub df: bool,
    /// Compute the UDP checksum (else 0).
    pub udp_checksum: bool,
}

/// Encapsulates the inner frame in `frame` in place, writing the outer
/// headers into the headroom.
///
/// A GSO super-frame gets the headers once as a template (lengths for its
/// first segment, `encap_len` set); its `offload` keeps describing the
/// inner frame, and [`segment_encapsulated`] cuts it at transmit time.
pub fn encapsulate(frame: &mut Frame, p: &EncapParams) -> Result<(), EncapError> {
    let inner_len = frame.len();
    if inner_len + OUTER_LEN - ethernet::HEADER_LEN > usize::from(u16::MAX)
        && frame.offload.gso == GsoKind::None
    {
        return Err(EncapError::TooLong(inner_len));
    }
    if !frame.push_front(OUTER_LEN) {
        return Err(EncapError::NoHeadroom);
    }
    let out = frame.data_mut();
    write_outer(out, p);
    if frame.offload.gso == GsoKind::None {
        finish_outer(frame.data_mut(), inner_len, p.ip_id, p.udp_checksum);
    } else {
        frame.encap_len = OUTER_LEN as u16;
    }
    Ok(())
}

/// Encapsulates the inner IPv4 packet in `frame`, longer than the tunnel
/// takes, as a template (`encap_len` set, lengths unfinished):
/// [`segment_encapsulated`] cuts it into inner fragments that fit, each
/// with its own outer headers, when it is sent.
pub fn encapsulate_to_fragment(frame: &mut Frame, p: &EncapParams) -> Result<(), EncapError> {
    if !frame.push_front(OUTER_LEN) {
        return Err(EncapError::NoHeadroom);
    }
    write_outer(frame.data_mut(), p);
    frame.encap_len = OUTER_LEN as u16;
    Ok(())
}

/// Writes every field of the outer headers except the lengths, the IP
/// checksum and the UDP checksum. In a template, a UDP checksum field of
/// 0xffff asks [`finish_outer`] (through [`segment_encapsulated`]) to compute it.
fn write_outer(out: &mut [u8], p: &EncapParams) {
    let Some(out) = out.first_chunk_mut::<OUTER_LEN>() else {
        return;
    };
    let mut eth = EthernetFrame::new_unchecked(&mut out[..field::IP]);
    eth.set_dst_addr(p.dst_mac);
    eth.set_src_addr(p.src_mac);
    eth.set_ethertype(EtherType::IPV4);
    let mut ip = Ipv4Packet::new_unchecked(&mut out[field::IP..field::UDP]);
    ip.set_version_and_header_len(ipv4::HEADER_LEN);
    ip.set_dscp_ecn(p.tos);
    ip.set_ident(p.ip_id);
    ip.set_unfragmented(p.df);
    ip.set_ttl(OUTER_TTL);
    ip.set_protocol(IpProtocol::UDP);
    ip.set_src_addr(p.src_ip);
    ip.set_dst_addr(p.dst_ip);
    let mut u = UdpPacket::new_unchecked(&mut out[field::UDP..field::VXLAN]);
    u.set_src_port(p.src_port);
    u.set_dst_port(p.dst_port);
    u.set_checksum(if p.udp_checksum { 0xffff } else { 0 });
    vxlan::VxlanHeader::new_unchecked(&mut out[field::VXLAN..]).set_vni(p.vni);
}

/// Sets the outer lengths, identification and checksums for an inner frame
/// of `inner_len` bytes following the outer headers in `out`.
fn finish_outer(out: &mut [u8], inner_len: usize, ip_id: u16, udp_checksum: bool) {
    let Some((udp_len, pseudo)) = set_outer_lengths(out, inner_len, ip_id) else {
        return;
    };
    if udp_checksum {
        let end = (field::UDP + usize::from(udp_len)).min(out.len());
        let sum = checksum::combine(pseudo, checksum::sum(&out[field::UDP..end]));
        let value = match !checksum::fold(sum) {
            0 => 0xffff,
            c => c,
        };
        UdpPacket::new_unchecked(&mut out[field::UDP..field::VXLAN]).set_checksum(value);
    }
}

/// Sets the outer IPv4 and UDP lengths for an inner frame of `inner_len`
/// bytes, the identification and the IPv4 checksum, and zeroes the UDP
/// checksum. Returns the UDP length and the UDP pseudo-header sum (`None`
/// if `out` is shorter than the outer headers).
fn set_outer_lengths(out: &mut [u8], inner_len: usize, ip_id: u16) -> Option<(u16, u32)> {
    let udp_len = (inner_len + udp::HEADER_LEN + vxlan::HEADER_LEN) as u16;
    if out.len() < OUTER_LEN {
        return None;
    }
    let (headers, _) = out.split_first_chunk_mut::<{ field::VXLAN }>()?;
    let (eth_ip, udp) = headers.split_at_mut(field::UDP);
    let mut ip = Ipv4Packet::new_unchecked(eth_ip.last_chunk_mut::<{ ipv4::HEADER_LEN }>()?);
    ip.set_total_len(udp_len.wrapping_add(ipv4::HEADER_LEN as u16));
    ip.set_ident(ip_id);
    ip.fill_checksum();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let mut u = UdpPacket::new_unchecked(udp);
    u.set_len(udp_len);
    u.set_checksum(0);
    let pseudo = checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, u32::from(udp_len));
    Some((udp_len, pseudo))
}

/// A super-frame ready to be sent whole through UDP-tunnel GSO (see
/// [`whole_super_frame`]): the inner offload state with offsets from the
/// outer Ethernet header, and where the tunnel's headers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeSuperFrame {
    /// Inner segmentation, headers length (all headers up to the end of
    /// the inner TCP header) and partial checksum, from the outer start.
    pub offload: Offload,
    /// Where the outer UDP and the inner IP headers are.
    pub tunnel: TunnelOffsets,
}

/// Readies an encapsulated TCP super-frame (made by [`encapsulate`]) to be
/// sent whole, the way Linux's `vxlan` device hands one to its underlay:
/// writes into `outer` the template's headers with the lengths of the whole
/// frame, the first segment's identification, the IPv4 checksum and, if
/// the outer UDP checksum is on, the UDP pseudo-header sum in its place
/// (each segment's is finished by whoever cuts it). The inner frame, its
/// headers and its partial checksum stay as they are.
///
/// `None` for what software segmentation must do instead: a plain inner
/// packet cut into fragments, an inner frame that is not a TCP/IPv4
/// super-frame with a partial checksum at its TCP header, one that makes a
/// single segment, or an outer packet longer than 65,535 bytes.
pub fn whole_super_frame(frame: &Frame, outer: &mut [u8; OUTER_LEN]) -> Option<WholeSuperFrame> {
    let offload = frame.offload;
    if usize::from(frame.encap_len) != OUTER_LEN || offload.gso != GsoKind::TcpV4 {
        return None;
    }
    let (template, inner) = frame.data().split_first_chunk::<OUTER_LEN>()?;
    let (start, offset) = offload.csum?;
    let eth = EthernetFrame::new_checked(inner).ok()?;
    let tcp = TcpPacket::new_checked(inner.get(usize::from(start)..)?).ok()?;
    let headers = usize::from(start) + tcp.header_len();
    let payload = inner.len().checked_sub(headers)?;
    let ip_len = inner.len() + OUTER_LEN - ethernet::HEADER_LEN;
    if eth.ethertype() != EtherType::IPV4
        || offset != TCP_CHECKSUM_OFFSET
        || payload <= usize::from(offload.gso_size)
        || ip_len > usize::from(u16::MAX)
    {
        return None;
    }
    *outer = *template;
    let udp_checksum = UdpPacket::new_unchecked(&outer[field::UDP..field::VXLAN]).checksum() != 0;
    let ip_id = Ipv4Packet::new_unchecked(&outer[field::IP..field::UDP]).ident();
    let (_, pseudo) = set_outer_lengths(outer, inner.len(), ip_id)?;
    if udp_checksum {
        let seed = checksum::fold(pseudo);
        UdpPacket::new_unchecked(&mut outer[field::UDP..field::VXLAN]).set_checksum(seed);
    }
    let from_outer = |at: usize| u16::try_from(OUTER_LEN + at).ok();
    Some(WholeSuperFrame {
        offload: Offload {
            hdr_len: from_outer(headers)?,
            csum: Some((from_outer(usize::from(start))?, offset)),
            ..offload
        },
        tunnel: TunnelOffsets {
            outer_l4: field::UDP as u16,
            inner_l3: from_outer(ethernet::HEADER_LEN)?,
            outer_ipv6: false,
            outer_udp_checksum: udp_checksum,
        },
    })
}

/// Cuts an encapsulated super-frame (made by [`encapsulate`]) into wire
/// frames: every inner segment (see [`Segmenter`]) is written into
/// `scratch` and given a copy of the outer headers with its own lengths,
/// identification (+1 per segment) and checksums; `emit` is called for
/// each. A plain inner packet (made by [`encapsulate_to_fragment`]) is cut
/// the same way into inner IPv4 fragments, each at most as long as an
/// uplink of `mtu` carries. Returns how many were emitted.
pub fn segment_encapsulated(
    frame: &Frame,
    scratch: &mut Frame,
    mtu: usize,
    mut emit: impl FnMut(&Frame),
) -> Result<usize, EncapError> {
    let data = frame.data();
    let encap = usize::from(frame.encap_len).min(data.len());
    let (template, inner) = data.split_at(encap);
    let Some(outer) = template.first_chunk::<OUTER_LEN>() else {
        return Err(EncapError::NoHeadroom);
    };
    let first_id = Ipv4Packet::new_unchecked(&outer[field::IP..field::UDP]).ident();
    let udp_checksum = UdpPacket::new_unchecked(&outer[field::UDP..field::VXLAN]).checksum() != 0;
    let mut n: u16 = 0;
    let mut wrap = |scratch: &mut Frame| {
        let inner_len = scratch.len();
        if !scratch.push_front(encap) {
            return Err(EncapError::NoHeadroom);
        }
        let out = scratch.data_mut();
        out[..encap].copy_from_slice(template);
        finish_outer(out, inner_len, first_id.wrapping_add(n), udp_checksum);
        emit(scratch);
        n = n.wrapping_add(1);
        Ok(())
    };
    if frame.offload.gso == GsoKind::None {
        // The inner IPv4 packet may take what the outer IP, UDP and VXLAN
        // headers and the inner Ethernet header leave (as many bytes as
        // the outer Ethernet header and those three).
        let inner_mtu = mtu.saturating_sub(encap);
        let mut fragmenter = Fragmenter::new(inner, inner_mtu)?;
        while fragmenter.next_into(scratch)? {
            wrap(scratch)?;
        }
    } else {
        let mut segmenter = Segmenter::new(inner, &frame.offload)?;
        while segmenter.next_into(scratch)? {
            wrap(scratch)?;
        }
    }
    Ok(usize::from(n))
}

/// The outer TOS for an inner one: DSCP 0, ECN copied, CE sent as ECT(0)
/// (RFC 6040 normal mode, Linux `INET_ECN_encapsulate`).
pub fn outer_tos(inner_tos: u8) -> u8 {
    match inner_tos & 0b11 {
        0b11 => 0b10,
        ecn => ecn,
    }
}

/// The UDP source port for an inner IPv4 packet `inner_ip` (header
/// onward): a hash of addresses, protocol and, for an unfragmented TCP or
/// UDP packet, ports, mapped into 32768..61000. The same flow always gets
/// the same port; different flows spread over ECMP paths.
pub fn flow_src_port(inner_ip: &[u8]) -> u16 {
    let Some(header) = inner_ip.first_chunk::<{ ipv4::HEADER_LEN }>() else {
        return SRC_PORT_MIN as u16;
    };
    let ip = Ipv4Packet::new_unchecked(header);
    let proto = ip.protocol();
    let ports = match proto {
        IpProtocol::TCP | IpProtocol::UDP if !ip.is_fragment() => {
            let l4_at = ip.header_len();
            L4Header::new(proto, inner_ip.get(l4_at..l4_at + 4).unwrap_or_default())
                .ports()
                .unwrap_or(0)
        }
        _ => 0,
    };
    let mut h = u64::from(ip.src_addr().to_bits()) << 32 | u64::from(ip.dst_addr().to_bits());
    h ^= (u64::from(ports) << 8 | u64::from(proto.0)).rotate_left(17);
    // splitmix64 finaliser: every input bit moves the output.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let hash = (h >> 32) as u32;
    let span = SRC_PORT_MAX - SRC_PORT_MIN;
    (SRC_PORT_MIN + ((u64::from(hash) * u64::from(span)) >> 32) as u32) as u16
}
