//! Reading the packets the NAT stage looks at: the key and TCP segment of
//! a packet once ([`parse`], and [`flow_of`], its shorter form for the flow
//! cache), and the unchecked reads of the prefetch pass. What conntrack
//! cannot read (a header cut short) is told apart from what it leaves alone.

use core::net::Ipv4Addr;

use super::icmp_error;
use crate::conntrack::{ConnKey, TcpSegment};
use crate::wire::l4::SCTP_HEADER_LEN;
use crate::wire::{Icmpv4Packet, icmpv4};
use crate::wire::{IpProtocol, Ipv4Packet, L4Header, TcpPacket, UdpPacket, ipv4, tcp, udp};

/// The fields of a packet the stage looks at.
#[derive(Clone, Copy, Debug)]
pub(super) struct Parsed {
    /// The conntrack key (ICMP echo: the identifier as both ports).
    pub(super) key: ConnKey,
    /// The TCP segment, for the state machine.
    pub(super) tcp: Option<TcpSegment>,
    /// An ICMP error: its quote says which flow it is about.
    pub(super) icmp_error: bool,
    /// An ICMP echo request.
    pub(super) echo_request: bool,
}

/// Why [`parse`] gave no key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Unparsed {
    /// A packet the stage leaves alone: a fragment, a protocol without
    /// ports, an ICMP message other than echo and errors.
    Skip,
    /// A header conntrack cannot read (cut short, a TCP data offset out of
    /// bounds): Linux's INVALID, dropped as kube-proxy does.
    Malformed,
}

/// Reads the key of the IPv4 packet `ip`.
pub(super) fn parse(ip: &[u8]) -> Result<Parsed, Unparsed> {
    let packet = Ipv4Packet::new_checked(ip).map_err(|_| Unparsed::Skip)?;
    if packet.is_fragment() {
        return Err(Unparsed::Skip);
    }
    let (src, dst, protocol) = (packet.src_addr(), packet.dst_addr(), packet.protocol());
    let l4 = packet.payload();
    let mut parsed = Parsed {
        key: ConnKey::new(protocol, (src, 0), (dst, 0)),
        tcp: None,
        icmp_error: false,
        echo_request: false,
    };
    match protocol {
        IpProtocol::TCP => {
            let tcp = TcpPacket::new_checked(l4).map_err(|_| Unparsed::Malformed)?;
            parsed.key = ConnKey::tcp((src, tcp.src_port()), (dst, tcp.dst_port()));
            parsed.tcp = Some(TcpSegment::from_packet(&tcp));
        }
        IpProtocol::UDP | IpProtocol::SCTP => {
            let min = if protocol == IpProtocol::SCTP {
                SCTP_HEADER_LEN
            } else {
                udp::HEADER_LEN
            };
            let ports = L4Header::new(protocol, l4.get(..min).ok_or(Unparsed::Malformed)?);
            parsed.key.src_port = ports.src_port().ok_or(Unparsed::Malformed)?;
            parsed.key.dst_port = ports.dst_port().ok_or(Unparsed::Malformed)?;
        }
        IpProtocol::ICMP => {
            if l4.is_empty() {
                return Err(Unparsed::Malformed);
            }
            let icmp_type = Icmpv4Packet::new_unchecked(l4).msg_type();
            if icmp_error::is_error_type(icmp_type) {
                parsed.icmp_error = true;
            } else if matches!(icmp_type, icmpv4::ECHO_REQUEST | icmpv4::ECHO_REPLY) {
                let icmp = Icmpv4Packet::new_checked(l4).map_err(|_| Unparsed::Malformed)?;
                parsed.key = ConnKey::icmp_echo(src, dst, icmp.echo_ident());
                parsed.echo_request = icmp_type == icmpv4::ECHO_REQUEST;
            } else {
                return Err(Unparsed::Skip);
            }
        }
        _ => return Err(Unparsed::Skip),
    }
    Ok(parsed)
}

/// The conntrack key of a TCP or UDP packet `ip` (an IPv4 header
/// onwards), with its TCP segment: what the flow cache looks up. `None`
/// for other protocols, fragments, malformed headers and TCP SYNs (they
/// open flows, which the cache never does). Otherwise the same answer as
/// the stage's own parsing, with fewer steps.
#[inline]
pub fn flow_of(ip: &[u8]) -> Option<(ConnKey, Option<TcpSegment>)> {
    let header = Ipv4Packet::new_unchecked(ip.first_chunk::<{ ipv4::HEADER_LEN }>()?);
    let ihl = header.header_len();
    if header.version() != 4 || ihl < ipv4::HEADER_LEN || header.is_fragment() {
        return None;
    }
    let l4 = ip.get(ihl..usize::from(header.total_len()))?;
    l4_flow(
        header.protocol(),
        (header.src_addr(), header.dst_addr()),
        l4,
    )
}

/// [`flow_of`] after the IPv4 header: the key and segment of the TCP or
/// UDP payload `l4` between `addrs`.
#[inline]
pub fn l4_flow(
    protocol: IpProtocol,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    l4: &[u8],
) -> Option<(ConnKey, Option<TcpSegment>)> {
    match protocol {
        IpProtocol::TCP => {
            let tcp = TcpPacket::new_unchecked(l4.first_chunk::<{ tcp::HEADER_LEN }>()?);
            let offset = tcp.header_len();
            if offset < tcp::HEADER_LEN || offset > l4.len() || tcp.syn() {
                return None;
            }
            let segment = TcpSegment {
                flags: tcp.flags(),
                seq: tcp.seq_number(),
                ack: tcp.ack_number(),
                window: tcp.window(),
                payload_len: u32::try_from(l4.len() - offset).unwrap_or(u32::MAX),
                window_scale: None,
            };
            let key = ConnKey::tcp((src, tcp.src_port()), (dst, tcp.dst_port()));
            Some((key, Some(segment)))
        }
        IpProtocol::UDP => {
            let udp = UdpPacket::new_unchecked(l4.first_chunk::<{ udp::HEADER_LEN }>()?);
            Some((
                ConnKey::udp((src, udp.src_port()), (dst, udp.dst_port())),
                None,
            ))
        }
        _ => None,
    }
}

/// Whether the IPv4 packet `ip` is a TCP segment with SYN set (read
/// without checks beyond the bounds).
#[inline]
pub fn is_tcp_syn(ip: &[u8]) -> bool {
    let Some(header) = ip.first_chunk::<{ ipv4::HEADER_LEN }>() else {
        return false;
    };
    let header = Ipv4Packet::new_unchecked(header);
    let flags_at = header.header_len() + tcp::field::FLAGS;
    header.protocol() == IpProtocol::TCP
        && ip
            .get(flags_at)
            .is_some_and(|&flags| flags & tcp::FLAG_SYN != 0)
}

/// The conntrack key of a TCP or UDP packet `ip` (an IPv4 header
/// onwards), read without any checks beyond the bounds: for
/// [`SharedConntrack::prefetch_batch`], a hint and never a decision.
#[inline]
pub fn prefetch_key(ip: &[u8]) -> Option<ConnKey> {
    let header = Ipv4Packet::new_unchecked(ip.first_chunk::<{ ipv4::HEADER_LEN }>()?);
    let protocol = header.protocol();
    let l4_at = header.header_len();
    if header.version() != 4 || !matches!(protocol, IpProtocol::TCP | IpProtocol::UDP) {
        return None;
    }
    let ports = L4Header::new(protocol, ip.get(l4_at..)?.first_chunk::<4>()?);
    Some(ConnKey::new(
        protocol,
        (header.src_addr(), ports.src_port()?),
        (header.dst_addr(), ports.dst_port()?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The flow cache's parser answers as the stage's own does, for
        /// every TCP (not SYN) and UDP packet, and refuses all else.
        #[test]
        fn flow_of_agrees_with_parse(
            protocol in prop_oneof![Just(6u8), Just(17u8), Just(1u8), any::<u8>()],
            ihl in 4u8..8,
            total in 0u16..80,
            frag in prop_oneof![3 => Just(0u16), 1 => Just(0x2000u16), 1 => any::<u16>()],
            rest in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut ip = vec![0u8; 20];
            ip[0] = 0x40 | ihl;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[6..8].copy_from_slice(&frag.to_be_bytes());
            ip[9] = protocol;
            ip[12..20].copy_from_slice(&[10, 244, 1, 2, 10, 96, 0, 10]);
            ip.extend_from_slice(&rest);
            let want = parse(&ip)
                .ok()
                .filter(|p| matches!(p.key.protocol, IpProtocol::TCP | IpProtocol::UDP))
                .filter(|p| p.tcp.is_none_or(|s| s.flags & tcp::FLAG_SYN == 0))
                .map(|p| (p.key, p.tcp));
            prop_assert_eq!(flow_of(&ip), want);
        }
    }
}
