//! ICMP errors about a tracked flow (destination unreachable incl.
//! fragmentation needed, time exceeded, parameter problem), in either
//! direction: found by the header they quote, translated like Linux's
//! `nf_nat_icmp_reply_translation`.
//!
//! The quoted datagram is a packet of the flow *after* translation, sent
//! the other way; so its inverted key is the key of the direction the
//! error travels in. The outer header is then rewritten as a packet of that
//! direction would be (an error from the endpoint about a DNATed packet
//! comes from the ClusterIP; one about a masqueraded packet goes to the
//! pod), and the quoted header is put back to what its sender sent before
//! translation: addresses, ports (or echo identifier), the quoted IP
//! header checksum and — when quoted — the L4 checksum, incrementally;
//! the ICMP checksum over the whole message is recomputed.
//!
//! The errors the pipeline sends itself (time exceeded, fragmentation
//! needed) about a packet it translated quote the packet as its sender sent
//! it: [`untranslate`] puts the packet back first, the same way.

use super::rewrite::{L4Field, L4Sum, l4_addr_changed, l4_set_u16};
use super::shared::SharedConntrack;
use crate::conntrack::{ConnKey, Direction};
use crate::wire::icmpv4::{self, Icmpv4Packet};
use crate::wire::{IpProtocol, Ipv4Packet, L4Header, ipv4};

/// ICMP types that carry a quoted datagram.
pub(crate) fn is_error_type(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        icmpv4::DST_UNREACHABLE | icmpv4::TIME_EXCEEDED | PARAMETER_PROBLEM
    )
}

const PARAMETER_PROBLEM: u8 = 12;

/// What happened to an ICMP error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IcmpErrorOutcome {
    /// It quotes no tracked flow: leave it alone.
    NotTracked,
    /// Its header or quote cannot be read (truncated, bad checksum, not
    /// IPv4): Linux's conntrack calls it INVALID.
    Malformed,
    /// Translated; it travels in this direction of the flow.
    Translated(Direction),
}

/// The key of the quoted datagram (as it was on the wire) and where its L4
/// header starts; `Ok(None)` for a protocol conntrack does not track by
/// ports, `Err` for a quote too short or not IPv4 (RFC 792: the IP header
/// and 8 bytes of the datagram are quoted).
fn quoted_key(inner: &[u8]) -> Result<Option<(ConnKey, usize)>, ()> {
    let ip = Ipv4Packet::new_unchecked(inner.first_chunk::<{ ipv4::HEADER_LEN }>().ok_or(())?);
    if ip.version() != 4 || ip.header_len() < ipv4::HEADER_LEN {
        return Err(());
    }
    let l4_at = ip.header_len();
    let (src, dst, protocol) = (ip.src_addr(), ip.dst_addr(), ip.protocol());
    let l4 = L4Header::new(protocol, inner.get(l4_at..l4_at + 8).ok_or(())?);
    let key = match protocol {
        IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP => {
            let (sport, dport) = (l4.src_port().ok_or(())?, l4.dst_port().ok_or(())?);
            ConnKey::new(protocol, (src, sport), (dst, dport))
        }
        IpProtocol::ICMP
            if matches!(
                Icmpv4Packet::new_unchecked(l4.as_bytes()).msg_type(),
                icmpv4::ECHO_REQUEST | icmpv4::ECHO_REPLY
            ) =>
        {
            ConnKey::icmp_echo(src, dst, l4.echo_ident().ok_or(())?)
        }
        _ => return Ok(None),
    };
    Ok(Some((key, l4_at)))
}

/// Translates the ICMP error in the IPv4 packet `ip` if it quotes a tracked flow.
pub(crate) fn translate(
    conntrack: &SharedConntrack,
    ip: &mut [u8],
    now_ns: u64,
) -> IcmpErrorOutcome {
    let Ok(outer) = Ipv4Packet::new_checked(&*ip) else {
        return IcmpErrorOutcome::NotTracked;
    };
    let Ok(icmp) = Icmpv4Packet::new_checked(outer.payload()) else {
        return IcmpErrorOutcome::Malformed;
    };
    if !is_error_type(icmp.msg_type()) {
        return IcmpErrorOutcome::NotTracked;
    }
    if !icmp.verify_checksum() {
        return IcmpErrorOutcome::Malformed;
    }
    let (quoted, l4_at) = match quoted_key(icmp.data()) {
        Ok(Some(found)) => found,
        Ok(None) => return IcmpErrorOutcome::NotTracked,
        Err(()) => return IcmpErrorOutcome::Malformed,
    };
    if conntrack.is_empty() {
        return IcmpErrorOutcome::NotTracked;
    }
    let Some((dir, outer_key, inner_new)) = conntrack
        .with_entry(&quoted.inverted(), now_ns, |table, found| {
            let e = table.get(found.id)?;
            let dir = found.direction;
            Some((dir, e.rewrite(dir), *e.key(dir.opposite())))
        })
        .flatten()
    else {
        return IcmpErrorOutcome::NotTracked;
    };
    let ((new_src, _), (new_dst, _)) = outer_key;
    let Ok(mut outer) = Ipv4Packet::new_checked(&mut *ip) else {
        return IcmpErrorOutcome::NotTracked;
    };
    // Which outer address the direction's NAT changes (for a DNAT reply:
    // the source; for a masquerade reply: the destination).
    let seen = quoted.inverted();
    if seen.src_addr != new_src {
        outer.rewrite_src_addr(new_src);
    }
    if seen.dst_addr != new_dst {
        outer.rewrite_dst_addr(new_dst);
    }
    let message = outer.payload_mut();
    if let Some(inner) = message.get_mut(icmpv4::HEADER_LEN..) {
        rewrite_quoted(inner, l4_at, &quoted, &inner_new);
    }
    if let Ok(mut icmp) = Icmpv4Packet::new_checked(message) {
        icmp.fill_checksum();
    }
    IcmpErrorOutcome::Translated(dir)
}

/// Puts the IPv4 packet `ip` back as its sender sent it if the NAT stage
/// translated it (its inverted key is a tracked direction's), before the
/// pipeline quotes it in an ICMP error of its own (time exceeded,
/// fragmentation needed): the sender must find its own packet in the
/// quote, as `nf_nat_icmp_reply_translation` gives it on Linux. `true`: it
/// was put back.
pub(crate) fn untranslate(conntrack: &SharedConntrack, ip: &mut [u8], now_ns: u64) -> bool {
    if conntrack.is_empty() {
        return false;
    }
    let Ok(Some((sent, l4_at))) = quoted_key(ip) else {
        return false;
    };
    let Some(before) = conntrack
        .with_entry(&sent.inverted(), now_ns, |table, found| {
            Some(*table.get(found.id)?.key(found.direction.opposite()))
        })
        .flatten()
    else {
        return false;
    };
    rewrite_quoted(ip, l4_at, &sent, &before);
    true
}

/// Puts the quoted datagram back to `new` (addresses and ports).
fn rewrite_quoted(inner: &mut [u8], l4_at: usize, old: &ConnKey, new: &ConnKey) {
    let protocol = old.protocol;
    let Some((header, l4)) = inner.split_at_mut_checked(l4_at) else {
        return;
    };
    let Some(header) = header.first_chunk_mut::<{ ipv4::HEADER_LEN }>() else {
        return;
    };
    let mut header = Ipv4Packet::new_unchecked(header);
    if old.src_addr != new.src_addr {
        header.rewrite_src_addr(new.src_addr);
    }
    if old.dst_addr != new.dst_addr {
        header.rewrite_dst_addr(new.dst_addr);
    }
    let mut l4 = L4Header::new(protocol, l4);
    // The L4 checksum field is updated when the quote holds it (an
    // incremental update is right even if the payload is cut off).
    let holds_checksum =
        l4.checksum().is_some() || !matches!(protocol, IpProtocol::TCP | IpProtocol::UDP);
    let sum = if holds_checksum {
        L4Sum::Full
    } else {
        L4Sum::Partial
    };
    if holds_checksum {
        for (old_a, new_a) in [(old.src_addr, new.src_addr), (old.dst_addr, new.dst_addr)] {
            if old_a != new_a {
                l4_addr_changed(&mut l4, sum, old_a, new_a);
            }
        }
    }
    match protocol {
        IpProtocol::ICMP => l4_set_u16(&mut l4, L4Sum::Full, L4Field::EchoIdent, new.src_port),
        IpProtocol::SCTP => {
            l4.set_src_port(new.src_port);
            l4.set_dst_port(new.dst_port);
        }
        _ => {
            l4_set_u16(&mut l4, sum, L4Field::SrcPort, new.src_port);
            l4_set_u16(&mut l4, sum, L4Field::DstPort, new.dst_port);
        }
    }
}
