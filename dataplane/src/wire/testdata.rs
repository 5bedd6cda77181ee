//! Small frames used by doc examples and tests.

/// Ethernet + IPv4 + ICMP echo request 10.244.1.2 -> 10.244.1.1, TTL 64.
pub const ICMP_ECHO_FRAME: [u8; 42] = [
    0x02, 0x00, 0x0a, 0xf4, 0x01, 0x01, // dst: gateway
    0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02, // src: pod
    0x08, 0x00, // IPv4
    0x45, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x62, 0xf6, // ttl 64, icmp
    0x0a, 0xf4, 0x01, 0x02, 0x0a, 0xf4, 0x01, 0x01, // 10.244.1.2 -> 10.244.1.1
    0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00, // echo request id 1 seq 0
];

/// An ICMPv6 Router Advertisement as a router daemon sends it: hop limit
/// 64, default router for 1800 s, a Prefix Information option for
/// 2001:db8:1::/64, on-link and for SLAAC. The checksum is left 0 (a raw
/// ICMPv6 socket fills it).
pub const ROUTER_ADVERT: [u8; 48] = [
    0x86, 0x00, 0x00, 0x00, 0x40, 0x00, 0x07,
    0x08, // type, code, checksum, hop limit, flags, lifetime
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reachable, retrans
    0x03, 0x04, 0x40, 0xc0, 0x00, 0x27, 0x8d, 0x00, // prefix information: /64, L+A, valid
    0x00, 0x09, 0x3a, 0x80, 0x00, 0x00, 0x00, 0x00, // preferred, reserved
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// The IPv4 packet in `whole` (an untagged Ethernet frame, 20-byte IP
/// header) cut into fragments of at most `mtu` IP bytes with
/// identification `id`, as a sender's kernel cuts it (written here by
/// hand, independent of `io::fragment`).
#[cfg(test)]
pub(crate) fn cut_into_fragments(whole: &[u8], id: u16, mtu: usize) -> Vec<Vec<u8>> {
    let payload = &whole[34..];
    let step = (mtu - 20) / 8 * 8;
    (0..payload.len())
        .step_by(step)
        .map(|at| {
            let part = &payload[at..(at + step).min(payload.len())];
            let more = at + part.len() < payload.len();
            let mut frame = whole[..34].to_vec();
            frame.extend_from_slice(part);
            frame[16..18].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
            frame[18..20].copy_from_slice(&id.to_be_bytes());
            let flags = (u16::from(more) << 13) | (at / 8) as u16;
            frame[20..22].copy_from_slice(&flags.to_be_bytes());
            let mut ip = crate::wire::Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
            ip.fill_checksum();
            frame
        })
        .collect()
}
