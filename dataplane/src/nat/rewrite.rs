//! Rewriting a packet's addresses and ports in place, checksums updated
//! incrementally (RFC 1624).
//!
//! A frame from a TAP or AF_PACKET port may carry a *partial* L4 checksum
//! (virtio-net `NEEDS_CSUM`): the field then holds the folded
//! pseudo-header sum, uncomplemented, and the device sums the rest later.
//! An address change must then adjust that sum the other way round, and a
//! port change must not touch it (ports are not in the pseudo-header) —
//! what Linux's `inet_proto_csum_replace4` does for `CHECKSUM_PARTIAL`.

use core::net::Ipv4Addr;

use crate::conntrack::ConnKey;
use crate::wire::checksum::{fold_u64, update_u16, update_u32, update_udp_u16, update_udp_u32};
use crate::wire::l4::{SCTP_HEADER_LEN, sctp_field};
use crate::wire::{IpProtocol, Ipv4Packet, L4Header, ipv4, tcp, udp};

/// How an L4 checksum field is kept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum L4Sum {
    /// A complete checksum.
    Full,
    /// A partial (pseudo-header only) sum from checksum offload.
    Partial,
}

/// Updates the TCP or UDP checksum of `l4` for an address change (in the
/// pseudo-header); other protocols have none that covers addresses.
pub(crate) fn l4_addr_changed<T: AsRef<[u8]> + AsMut<[u8]>>(
    l4: &mut L4Header<T>,
    sum: L4Sum,
    old: Ipv4Addr,
    new: Ipv4Addr,
) {
    let protocol = l4.protocol();
    if !matches!(protocol, IpProtocol::TCP | IpProtocol::UDP) {
        return;
    }
    let Some(check) = l4.checksum() else {
        return;
    };
    let (old, new) = (old.to_bits(), new.to_bits());
    let updated = match (sum, protocol) {
        (L4Sum::Partial, _) => !update_u32(!check, old, new),
        (L4Sum::Full, IpProtocol::UDP) => update_udp_u32(check, old, new),
        (L4Sum::Full, _) => update_u32(check, old, new),
    };
    l4.set_checksum(updated);
}

/// Which 16-bit field of an L4 header a translation changes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum L4Field {
    /// The source port (TCP, UDP).
    SrcPort,
    /// The destination port (TCP, UDP).
    DstPort,
    /// ICMP echo's identifier.
    EchoIdent,
}

/// Sets `field` of `l4` to `new` and updates the checksum, which covers it
/// unless the checksum is partial.
pub(crate) fn l4_set_u16<T: AsRef<[u8]> + AsMut<[u8]>>(
    l4: &mut L4Header<T>,
    sum: L4Sum,
    field: L4Field,
    new: u16,
) {
    let old = match field {
        L4Field::SrcPort => l4.src_port(),
        L4Field::DstPort => l4.dst_port(),
        L4Field::EchoIdent => l4.echo_ident(),
    };
    let Some(old) = old.filter(|&old| old != new) else {
        return;
    };
    match field {
        L4Field::SrcPort => l4.set_src_port(new),
        L4Field::DstPort => l4.set_dst_port(new),
        L4Field::EchoIdent => l4.set_echo_ident(new),
    }
    let protocol = l4.protocol();
    if sum == L4Sum::Partial && protocol != IpProtocol::ICMP {
        return;
    }
    let Some(check) = l4.checksum() else {
        return;
    };
    let updated = if protocol == IpProtocol::UDP {
        update_udp_u16(check, old, new)
    } else {
        update_u16(check, old, new)
    };
    l4.set_checksum(updated);
}

/// Sets an SCTP header's ports and recomputes its CRC32c, if they change
/// and the header is whole.
pub(crate) fn sctp_set_ports(sctp: &mut [u8], src: u16, dst: u16) {
    let mut l4 = L4Header::new(IpProtocol::SCTP, &mut *sctp);
    let changed = l4.src_port() != Some(src) || l4.dst_port() != Some(dst);
    if changed && l4.as_bytes().len() >= SCTP_HEADER_LEN {
        l4.set_src_port(src);
        l4.set_dst_port(dst);
        fill_sctp_checksum(sctp);
    }
}

/// Rewrites the IPv4 packet `ip` (header and L4) to carry `src` and `dst`;
/// ports are the identifier for ICMP echo. The packet was parsed before,
/// so short buffers only make this a no-op.
pub(crate) fn rewrite_packet(
    ip: &mut [u8],
    sum: L4Sum,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) {
    if !rewrite_tcp_udp(ip, sum, src, dst, false) {
        rewrite_any(ip, sum, src, dst);
    }
}

/// [`rewrite_packet`] for any protocol (ICMP, SCTP, short TCP/UDP), one
/// field at a time.
fn rewrite_any(ip: &mut [u8], sum: L4Sum, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) {
    let Ok(mut packet) = Ipv4Packet::new_checked(&mut *ip) else {
        return;
    };
    let protocol = packet.protocol();
    let (old_src, old_dst) = (packet.src_addr(), packet.dst_addr());
    if old_src != src.0 {
        packet.rewrite_src_addr(src.0);
    }
    if old_dst != dst.0 {
        packet.rewrite_dst_addr(dst.0);
    }
    let mut l4 = L4Header::new(protocol, packet.payload_mut());
    if old_src != src.0 {
        l4_addr_changed(&mut l4, sum, old_src, src.0);
    }
    if old_dst != dst.0 {
        l4_addr_changed(&mut l4, sum, old_dst, dst.0);
    }
    match protocol {
        IpProtocol::ICMP => l4_set_u16(&mut l4, sum, L4Field::EchoIdent, src.1),
        IpProtocol::SCTP => sctp_set_ports(l4.as_bytes_mut(), src.1, dst.1),
        _ => {
            l4_set_u16(&mut l4, sum, L4Field::SrcPort, src.1);
            l4_set_u16(&mut l4, sum, L4Field::DstPort, dst.1);
        }
    }
}

/// [`rewrite_packet`] for a packet the gateway forwards, whose conntrack
/// key `key` was read from it: also decrements its TTL (which must be
/// above 1), in the same IP checksum update. The plain case (a 20-byte
/// header, TCP or UDP) is written from the key without reading the header.
#[inline]
pub(crate) fn rewrite_routed(
    ip: &mut [u8],
    sum: L4Sum,
    key: &ConnKey,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) {
    if rewrite_plain_routed(ip, sum, key, src, dst) || rewrite_tcp_udp(ip, sum, src, dst, true) {
        return;
    }
    rewrite_any(ip, sum, src, dst);
    if let Ok(mut packet) = Ipv4Packet::new_checked(ip) {
        packet.decrement_ttl();
    }
}

/// The IPv4 checksum delta of a TTL decrement: the word (TTL, protocol)
/// goes from `old` to `old − 0x100`, so `!old + new` is `0xfeff` whatever
/// `old` is (for a TTL of at least 1).
const TTL_STEP_DELTA: u64 = 0xfeff;

/// The bytes of a TCP header the fast paths need: up to its checksum.
const TCP_FIXED: usize = tcp::field::CHECKSUM + 2;

/// `$body` with `$view` bound to the bytes `$l4` viewed as a `$protocol`
/// header (TCP or UDP) of the fixed length the fast paths need: one copy of
/// `$body` per protocol, in which the view's offsets and bounds are
/// constants. `false` for another protocol or a header cut shorter.
macro_rules! with_fixed_l4 {
    ($protocol:expr, $l4:expr, |$view:ident| $body:expr) => {
        match $protocol {
            IpProtocol::TCP => match $l4.first_chunk_mut::<TCP_FIXED>() {
                Some(bytes) => {
                    let $view = L4Header::new(IpProtocol::TCP, bytes);
                    $body
                }
                None => false,
            },
            IpProtocol::UDP => match $l4.first_chunk_mut::<{ udp::HEADER_LEN }>() {
                Some(bytes) => {
                    let $view = L4Header::new(IpProtocol::UDP, bytes);
                    $body
                }
                None => false,
            },
            _ => false,
        }
    };
}

/// [`rewrite_routed`]'s plain case, a cached flow's common packet: a
/// 20-byte IPv4 header, TCP or UDP, TTL above 1. The old addresses and
/// ports are `key`'s, which the caller read from this packet, so the
/// packet is only written. `false`: not that case, nothing changed.
#[inline]
fn rewrite_plain_routed(
    ip: &mut [u8],
    sum: L4Sum,
    key: &ConnKey,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> bool {
    let Some((header, l4)) = ip.split_first_chunk_mut::<{ ipv4::HEADER_LEN }>() else {
        return false;
    };
    let header = Ipv4Packet::new_unchecked(header);
    with_fixed_l4!(key.protocol, l4, |l4| plain_routed(
        header, l4, sum, key, src, dst
    ))
}

/// [`rewrite_plain_routed`] once the L4 header is a view of fixed length
/// with a known protocol (one copy per protocol, its offsets constants).
#[inline(always)]
fn plain_routed<T: AsRef<[u8]> + AsMut<[u8]>>(
    mut header: Ipv4Packet<&mut [u8; ipv4::HEADER_LEN]>,
    mut l4: L4Header<T>,
    sum: L4Sum,
    key: &ConnKey,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> bool {
    let Some(check) = l4.checksum() else {
        return false;
    };
    let ttl = header.ttl();
    if !header.is_plain() || ttl <= 1 {
        return false;
    }
    let old_ports = (u32::from(key.src_port) << 16) | u32::from(key.dst_port);
    let new_ports = (u32::from(src.1) << 16) | u32::from(dst.1);
    let addrs = delta32(key.src_addr.to_bits(), src.0.to_bits())
        + delta32(key.dst_addr.to_bits(), dst.0.to_bits());
    header.set_ttl(ttl - 1);
    header.set_checksum(!fold_u64(
        u64::from(!header.checksum()) + addrs + TTL_STEP_DELTA,
    ));
    header.set_src_addr(src.0);
    header.set_dst_addr(dst.0);
    l4.set_ports(new_ports);
    let ports = delta32(old_ports, new_ports);
    let udp = l4.protocol() == IpProtocol::UDP;
    l4.set_checksum(updated_l4_checksum(check, sum, udp, (addrs, ports)));
    true
}

/// A TCP or UDP checksum `check` after a rewrite: `addrs`, the
/// pseudo-header's change (all a partial sum follows), and `ports`, the
/// ports' change (as [`delta32`] sums). A UDP checksum of zero (none) stays
/// zero, and a computed zero is sent as `0xffff`.
#[inline(always)]
fn updated_l4_checksum(check: u16, sum: L4Sum, udp: bool, (addrs, ports): (u64, u64)) -> u16 {
    match sum {
        L4Sum::Partial => fold_u64(u64::from(check) + addrs),
        L4Sum::Full if udp && check == 0 => 0,
        L4Sum::Full => match !fold_u64(u64::from(!check) + addrs + ports) {
            0 if udp => 0xffff,
            c => c,
        },
    }
}

/// `!old + new` of a 32-bit field, for a one's-complement sum of 32-bit words.
#[inline]
fn delta32(old: u32, new: u32) -> u64 {
    u64::from(!old) + u64::from(new)
}

/// The TCP and UDP fast path of [`rewrite_packet`]: all changes summed into
/// one delta per checksum (RFC 1624 eqn. 3 over several words, summed as
/// 32-bit words), with the TTL decrement when `ttl_step`. `false`: not
/// TCP/UDP, or too short; the general path handles it.
#[inline]
fn rewrite_tcp_udp(
    ip: &mut [u8],
    sum: L4Sum,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    ttl_step: bool,
) -> bool {
    let Some((header, rest)) = ip.split_first_chunk_mut::<{ ipv4::HEADER_LEN }>() else {
        return false;
    };
    let header = Ipv4Packet::new_unchecked(header);
    let ihl = header.header_len();
    if header.version() != 4 || ihl < ipv4::HEADER_LEN {
        return false;
    }
    let Some(l4) = rest.get_mut(ihl - ipv4::HEADER_LEN..) else {
        return false;
    };
    let (addrs, ports) = ((src.0, dst.0), (src.1, dst.1));
    with_fixed_l4!(header.protocol(), l4, |l4| tcp_udp(
        header, l4, sum, addrs, ports, ttl_step
    ))
}

/// [`rewrite_tcp_udp`] once the L4 header is a view of fixed length with
/// a known protocol (one copy per protocol, its offsets constants).
#[inline(always)]
fn tcp_udp<T: AsRef<[u8]> + AsMut<[u8]>>(
    mut header: Ipv4Packet<&mut [u8; ipv4::HEADER_LEN]>,
    mut l4: L4Header<T>,
    sum: L4Sum,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    (src_port, dst_port): (u16, u16),
    ttl_step: bool,
) -> bool {
    let (Some(old_ports), Some(check)) = (l4.ports(), l4.checksum()) else {
        return false;
    };
    let (old_src, old_dst) = (header.src_addr().to_bits(), header.dst_addr().to_bits());
    let new_ports = (u32::from(src_port) << 16) | u32::from(dst_port);
    let addrs = delta32(old_src, src.to_bits()) + delta32(old_dst, dst.to_bits());
    header.set_src_addr(src);
    header.set_dst_addr(dst);
    l4.set_ports(new_ports);
    let mut ip_delta = addrs;
    if ttl_step {
        let ttl = header.ttl();
        let old = (u16::from(ttl) << 8) | u16::from(l4.protocol().0); // the (TTL, protocol) word
        header.set_ttl(ttl.wrapping_sub(1));
        ip_delta += u64::from(!old) + u64::from(old.wrapping_sub(0x0100));
    }
    header.set_checksum(!fold_u64(u64::from(!header.checksum()) + ip_delta));
    let ports = delta32(old_ports, new_ports);
    let udp = l4.protocol() == IpProtocol::UDP;
    l4.set_checksum(updated_l4_checksum(check, sum, udp, (addrs, ports)));
    true
}

/// Recomputes an SCTP packet's CRC32c (RFC 4960 appendix B): ports are
/// inside it and it cannot be updated incrementally.
fn fill_sctp_checksum(sctp: &mut [u8]) {
    if let Some(c) = sctp.get_mut(sctp_field::CHECKSUM..sctp_field::CHECKSUM + 4) {
        c.fill(0);
    }
    let crc = crc32c(sctp);
    if let Some(c) = sctp.get_mut(sctp_field::CHECKSUM..sctp_field::CHECKSUM + 4) {
        c.copy_from_slice(&crc.to_le_bytes());
    }
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC32c (Castagnoli), as SCTP uses it.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC32C_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    /// The fast path before it summed 32-bit words: the new one must give
    /// the same bytes for every input (checksums included, whatever their
    /// representation of zero).
    mod sixteen_bit {
        use super::super::*;
        use crate::wire::checksum::fold;

        /// `!old + new` of a 32-bit field, as 16-bit words, for a one's-complement sum.
        #[inline]
        fn delta16(old: u32, new: u32) -> u32 {
            ((!old >> 16) & 0xffff) + (!old & 0xffff) + (new >> 16) + (new & 0xffff)
        }

        /// The fast path as it was (16-bit words): all changes summed into
        /// one delta per checksum (RFC 1624 eqn. 3 over several words), with the
        /// TTL decrement when `ttl_step`. `false`: not TCP/UDP, or too short; the
        /// general path handles it.
        pub(super) fn reference(
            ip: &mut [u8],
            sum: L4Sum,
            src: (Ipv4Addr, u16),
            dst: (Ipv4Addr, u16),
            ttl_step: bool,
        ) -> bool {
            let Some(&first) = ip.first() else {
                return false;
            };
            let ihl = usize::from(first & 0x0f) * 4;
            let (protocol, check_at) = match ip.get(9).copied().map(IpProtocol) {
                Some(IpProtocol::TCP) => (IpProtocol::TCP, 16),
                Some(IpProtocol::UDP) => (IpProtocol::UDP, 6),
                _ => return false,
            };
            if first >> 4 != 4 || ihl < 20 {
                return false;
            }
            let Some((header, l4)) = ip.split_at_mut_checked(ihl) else {
                return false;
            };
            let (Some((header, _)), Some(l4)) = (
                header.split_first_chunk_mut::<20>(),
                l4.get_mut(..check_at + 2),
            ) else {
                return false;
            };
            let Some((ports, l4)) = l4.split_first_chunk_mut::<4>() else {
                return false;
            };
            let Some(l4_check) = l4.get_mut(check_at - 4..) else {
                return false;
            };
            let word32 = |b: &[u8; 20], at: usize| {
                u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
            };
            let (old_src, old_dst) = (word32(header, 12), word32(header, 16));
            let old_sport = u16::from_be_bytes([ports[0], ports[1]]);
            let old_dport = u16::from_be_bytes([ports[2], ports[3]]);
            let (new_src, new_dst) = (src.0.to_bits(), dst.0.to_bits());
            let addrs = delta16(old_src, new_src) + delta16(old_dst, new_dst);
            let port_delta =
                u32::from(!old_sport) + u32::from(src.1) + u32::from(!old_dport) + u32::from(dst.1);
            header[12..16].copy_from_slice(&src.0.octets());
            header[16..20].copy_from_slice(&dst.0.octets());
            ports[..2].copy_from_slice(&src.1.to_be_bytes());
            ports[2..].copy_from_slice(&dst.1.to_be_bytes());
            let mut ip_delta = addrs;
            if ttl_step {
                let old = u16::from_be_bytes([header[8], header[9]]);
                let new = old.wrapping_sub(0x0100);
                header[8..10].copy_from_slice(&new.to_be_bytes());
                ip_delta += u32::from(!old) + u32::from(new);
            }
            let ip_check = u16::from_be_bytes([header[10], header[11]]);
            header[10..12].copy_from_slice(&(!fold(u32::from(!ip_check) + ip_delta)).to_be_bytes());
            let udp = protocol == IpProtocol::UDP;
            let check = u16::from_be_bytes([l4_check[0], l4_check[1]]);
            let updated = match sum {
                L4Sum::Partial => fold(u32::from(check) + addrs),
                L4Sum::Full if udp && check == 0 => 0,
                L4Sum::Full => match !fold(u32::from(!check) + addrs + port_delta) {
                    0 if udp => 0xffff,
                    c => c,
                },
            };
            l4_check.copy_from_slice(&updated.to_be_bytes());
            true
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        /// `rewrite_tcp_udp` against the 16-bit-word version it replaced:
        /// same result and same bytes, for TCP and UDP, full and partial
        /// checksums (and UDP's zero), with and without the TTL step, and
        /// for headers too short or not TCP/UDP (both refuse).
        #[test]
        fn sums_of_32_bit_words_match_16_bit_words(
            mut packet in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            version_ihl in proptest::prop_oneof![proptest::strategy::Just(0x45u8), proptest::strategy::Just(0x46), proptest::prelude::any::<u8>()],
            protocol in proptest::prop_oneof![proptest::strategy::Just(6u8), proptest::strategy::Just(17), proptest::prelude::any::<u8>()],
            zero_check in proptest::prelude::any::<bool>(),
            partial in proptest::prelude::any::<bool>(),
            ttl_step in proptest::prelude::any::<bool>(),
            src in proptest::prelude::any::<(u32, u16)>(),
            dst in proptest::prelude::any::<(u32, u16)>(),
        ) {
            if let Some(b) = packet.get_mut(0) {
                *b = version_ihl;
            }
            if let Some(b) = packet.get_mut(9) {
                *b = protocol;
            }
            if zero_check && let Some(c) = packet.get_mut(26..28) {
                c.fill(0);
            }
            let sum = if partial { L4Sum::Partial } else { L4Sum::Full };
            let (src, dst) = ((Ipv4Addr::from_bits(src.0), src.1), (Ipv4Addr::from_bits(dst.0), dst.1));
            let mut expected = packet.clone();
            let done = sixteen_bit::reference(&mut expected, sum, src, dst, ttl_step);
            proptest::prop_assert_eq!(rewrite_tcp_udp(&mut packet, sum, src, dst, ttl_step), done);
            proptest::prop_assert_eq!(packet, expected);
        }

        /// `rewrite_plain_routed` against the general TCP/UDP rewrite with
        /// the TTL step, on packets whose key was read from them: same bytes
        /// when it accepts (a plain TCP or UDP header with TTL above 1),
        /// and untouched when it refuses.
        #[test]
        fn plain_rewrite_matches_the_routed_rewrite(
            mut packet in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            version_ihl in proptest::prop_oneof![proptest::strategy::Just(0x45u8), proptest::strategy::Just(0x46), proptest::prelude::any::<u8>()],
            protocol in proptest::prop_oneof![proptest::strategy::Just(6u8), proptest::strategy::Just(17), proptest::prelude::any::<u8>()],
            ttl in proptest::prop_oneof![proptest::strategy::Just(0u8), proptest::strategy::Just(1), proptest::strategy::Just(2), proptest::prelude::any::<u8>()],
            zero_check in proptest::prelude::any::<bool>(),
            partial in proptest::prelude::any::<bool>(),
            src in proptest::prelude::any::<(u32, u16)>(),
            dst in proptest::prelude::any::<(u32, u16)>(),
        ) {
            for (at, b) in [(0, version_ihl), (8, ttl), (9, protocol)] {
                if let Some(x) = packet.get_mut(at) {
                    *x = b;
                }
            }
            if zero_check && let Some(c) = packet.get_mut(26..28) {
                c.fill(0);
            }
            let Some(key) = key_of(&packet) else {
                return Ok(());
            };
            let sum = if partial { L4Sum::Partial } else { L4Sum::Full };
            let (src, dst) = ((Ipv4Addr::from_bits(src.0), src.1), (Ipv4Addr::from_bits(dst.0), dst.1));
            let before = packet.clone();
            let mut expected = packet.clone();
            if rewrite_plain_routed(&mut packet, sum, &key, src, dst) {
                proptest::prop_assert!(before[0] == 0x45 && before[8] > 1);
                proptest::prop_assert!(rewrite_tcp_udp(&mut expected, sum, src, dst, true));
                proptest::prop_assert_eq!(packet, expected);
            } else {
                let l4_needed = if protocol == 17 { 8 } else { 18 };
                let plain = before.len() >= 20 + l4_needed && before[0] == 0x45 && before[8] > 1;
                proptest::prop_assert!(!plain);
                proptest::prop_assert_eq!(packet, before);
            }
        }
    }

    /// The key of a TCP or UDP packet with a 20-byte header, read as the
    /// fast path reads it (no other check).
    fn key_of(packet: &[u8]) -> Option<ConnKey> {
        let b = packet.get(..24)?;
        let word = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        let (src, dst) = (Ipv4Addr::from_bits(word(12)), Ipv4Addr::from_bits(word(16)));
        match IpProtocol(b[9]) {
            IpProtocol::TCP => Some(ConnKey::tcp((src, port(20)), (dst, port(22)))),
            IpProtocol::UDP => Some(ConnKey::udp((src, port(20)), (dst, port(22)))),
            _ => None,
        }
    }

    #[test]
    fn crc32c_known_answer() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn partial_sum_follows_the_pseudo_header() {
        // A partial TCP sum is the folded pseudo-header sum; after an address
        // change it must equal the sum over the new pseudo-header.
        let (a, b, c) = (
            Ipv4Addr::new(10, 244, 1, 2),
            Ipv4Addr::new(10, 96, 0, 10),
            Ipv4Addr::new(10, 244, 1, 3),
        );
        let pseudo = |dst| checksum::fold(checksum::pseudo_header_v4(a, dst, 6, 40));
        let mut l4 = L4Header::new(IpProtocol::TCP, [0u8; 20]);
        l4.set_checksum(pseudo(b));
        l4_addr_changed(&mut l4, L4Sum::Partial, b, c);
        assert_eq!(l4.checksum(), Some(pseudo(c)));
        l4_set_u16(&mut l4, L4Sum::Partial, L4Field::DstPort, 8080);
        assert_eq!(l4.checksum(), Some(pseudo(c)));
        assert_eq!(l4.dst_port(), Some(8080));
    }
}
