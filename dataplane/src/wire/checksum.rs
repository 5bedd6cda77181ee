//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Every rewrite in the pipeline (TTL, addresses, ports) adjusts the existing
//! checksum with [`update_u16`]/[`update_u32`] instead of summing the packet
//! again, so the cost of a NAT rewrite does not grow with the payload. The
//! full [`sum`] is used when a packet is built from scratch (ARP/ICMP
//! replies) and by tests as the reference.
//!
//! Hand-written because no packet crate offers an incremental update
//! (see `shared/research/rust-ecosystem.md` §A5).

use core::net::{Ipv4Addr, Ipv6Addr};

/// Ones'-complement sum of `data` as big-endian 16-bit words, not folded.
///
/// An odd trailing byte is padded with zero, as RFC 1071 says.
pub fn sum(data: &[u8]) -> u32 {
    fold64(sum_u64(data))
}

/// As [`sum`], before folding: a 64-bit sum of big-endian 32-bit words,
/// for [`fold_u64`].
#[inline]
pub fn sum_u64(data: &[u8]) -> u64 {
    // Summing big-endian 32-bit words gives the same folded result as
    // 16-bit words (2^16 ≡ 1 mod 2^16 − 1, RFC 1071 §2(B)), with half the
    // additions; 2^32 words fit in u64 before overflow.
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for pair in &mut rest {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

fn fold64(mut acc: u64) -> u32 {
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    // The loop leaves acc <= u32::MAX.
    u32::try_from(acc).unwrap_or(u32::MAX)
}

/// Adds two partial sums.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + u32::from(carry)
}

/// Folds a partial sum to 16 bits (without the final complement).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves acc <= 0xffff.
    acc as u16
}

/// As [`fold`] for a 64-bit sum, such as one of 32-bit words (a 32-bit
/// word adds as its two halves would: 2^16 ≡ 1 modulo 0xffff). Two steps
/// with end-around carries reach 16 bits from any `u64`, without a loop;
/// zero only for zero, so the same value as folding 16 bits at a time.
#[inline]
pub fn fold_u64(acc: u64) -> u16 {
    // 64 → 32 bits: the halves' sum, its carry added back (no overflow:
    // with a carry, the 32-bit sum is at most 2^32 − 2).
    let (low, carry) = (acc as u32).overflowing_add((acc >> 32) as u32);
    let acc = low.wrapping_add(u32::from(carry));
    // 32 → 16 bits as Linux's csum_fold: the high half of `acc` plus
    // `acc` rotated by 16 is the halves' sum with the low half's carry
    // added back.
    (acc.wrapping_add(acc.rotate_right(16)) >> 16) as u16
}

/// The checksum field value for `data` (folded and complemented).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold_u64(sum_u64(data))
}

/// Partial sum of the IPv4 pseudo-header used by TCP, UDP.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16)
        + (s & 0xffff)
        + (d >> 16)
        + (d & 0xffff)
        + u32::from(protocol)
        + (length >> 16)
        + (length & 0xffff)
}

/// Partial sum of the IPv6 pseudo-header used by TCP, UDP and ICMPv6.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u32 {
    let mut acc = combine(sum(&src.octets()), sum(&dst.octets()));
    acc = combine(acc, (length >> 16) + (length & 0xffff));
    combine(acc, u32::from(next_header))
}

/// RFC 1624 eqn. 3: the new checksum field after one 16-bit word of the
/// covered data changed from `old` to `new`.
#[inline]
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// As [`update_u16`] for a 32-bit field (an IPv4 address).
#[inline]
pub fn update_u32(check: u16, old: u32, new: u32) -> u16 {
    let acc = u32::from(!check)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!(old as u16))
        + (new >> 16)
        + (new & 0xffff);
    !fold(acc)
}

/// As [`update_u16`] for a UDP checksum over IPv4, where 0 means "no
/// checksum" and must stay 0, and a computed 0 is sent as 0xffff.
#[inline]
pub fn update_udp_u16(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        return 0;
    }
    match update_u16(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}

/// As [`update_udp_u16`] for a 32-bit field.
#[inline]
pub fn update_udp_u32(check: u16, old: u32, new: u32) -> u16 {
    if check == 0 {
        return 0;
    }
    match update_u32(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fold_u64_agrees_with_folding_in_two_steps() {
        let edges = [
            0,
            1,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
            u64::MAX - 1,
        ];
        for acc in edges
            .into_iter()
            .chain((0..4096).map(|i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        {
            assert_eq!(fold_u64(acc), fold(fold64(acc)), "{acc:#x}");
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_checksum_known_value() {
        // Wikipedia's IPv4 header checksum example: b861.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
    }

    fn naive_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u32::from);
            acc += hi | lo;
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    proptest! {
        #[test]
        fn fold_u64_is_folding_16_bits_at_a_time(acc in any::<u64>()) {
            prop_assert_eq!(fold_u64(acc), fold(fold64(acc)));
        }

        #[test]
        fn sum_matches_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), naive_sum(&data));
        }

        #[test]
        fn incremental_matches_full(
            mut data in proptest::collection::vec(any::<u8>(), 12..64),
            at in 0usize..3,
            new16 in any::<u16>(),
            new32 in any::<u32>(),
        ) {
            // Checksum data as a header would: field at even offset, checksum
            // stored at bytes 0..2 and covered by the sum.
            data[0] = 0; data[1] = 0;
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            prop_assert_eq!(checksum(&data), 0);

            let off = 2 + at * 2;
            let old16 = u16::from_be_bytes([data[off], data[off + 1]]);
            data[off..off + 2].copy_from_slice(&new16.to_be_bytes());
            let c = update_u16(u16::from_be_bytes([data[0], data[1]]), old16, new16);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            prop_assert_eq!(fold(sum(&data)), 0xffff);

            let old32 = u32::from_be_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]);
            data[off..off + 4].copy_from_slice(&new32.to_be_bytes());
            let c = update_u32(u16::from_be_bytes([data[0], data[1]]), old32, new32);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            prop_assert_eq!(fold(sum(&data)), 0xffff);
        }
    }
}
