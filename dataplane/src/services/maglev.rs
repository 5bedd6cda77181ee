//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4).
//!
//! Each backend walks its own permutation of the `M` slots of a lookup
//! table (`offset = h1 % M`, `skip = h2 % (M − 1) + 1`, slot `j` of the
//! permutation is `(offset + j·skip) % M`, a full cycle because `M` is
//! prime); backends take turns claiming their next free slot until the
//! table is full. Every backend ends up with ⌊M/N⌋ or ⌈M/N⌉ slots, and
//! when a backend leaves, mostly only its own slots move.
//!
//! The permutation comes from the backend's identity (address and port),
//! hashed with a fixed function of our own rather than a crate's hasher,
//! so a table rebuilt from the same backends, on any node and any build,
//! is the same table. The input order does not matter either: backends
//! are placed in identity order.
//!
//! ## Table size
//!
//! [`table_size`] picks the smallest prime from [`TABLE_SIZES`] that is at
//! least `100 × N` (capped at [`DEFAULT_TABLE_SIZE`] = 65537, the paper's
//! size). The paper asks for `M ≫ N`: the share of a backend is exact to
//! one slot (±1/M of the traffic, so ±1 % of its fair share at M ≥ 100 N),
//! and the number of other flows moved when the backend set changes falls
//! as `M/N` grows. A fixed 65537 for every service would cost 128 KiB per
//! service (entries are `u16`); 100,000 services of a handful of backends
//! would need 12.5 GiB. With `M ≈ 100 N` they need about 160 MiB. The list
//! grows by about 1.5× per step so a table is at most 1.5× the size the rule
//! asks for, and a fixed list (rather than "the next prime") keeps the sizes
//! few and each of them covered by the tests.
//!
//! ## Storage
//!
//! A slot holds a backend's index, packed in as few bits as the backend
//! count needs (4 bits for 9 to 16 backends, 0 for one): the table a
//! service of 10 backends needs (1151 slots) takes 576 bytes rather than
//! 2302 as `u16`s, which is most of a service's memory at 100,000 services.
//! The slots, their number and their owners are the same as unpacked:
//! only their storage changed. Reading one is a 4-byte little-endian load at
//! its first byte, a shift and a mask (3 bytes of padding keep the load
//! inside the table).

use core::net::Ipv4Addr;
use std::sync::Arc;

/// The paper's table size, used for services of 655 or more backends.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The table sizes to choose from: primes about 1.5× apart.
pub const TABLE_SIZES: [u32; 17] = [
    101,
    157,
    229,
    347,
    521,
    769,
    1151,
    1733,
    2591,
    3889,
    5827,
    8737,
    13109,
    19661,
    29501,
    44249,
    DEFAULT_TABLE_SIZE,
];

/// Slots per backend the table size aims for.
pub const SLOTS_PER_BACKEND: u32 = 100;

/// Most backends a table can place (entries are `u16` indices).
pub const MAX_BACKENDS: usize = u16::MAX as usize + 1;

const SEED_OFFSET: u64 = 0x9e37_79b9_7f4a_7c15;
const SEED_SKIP: u64 = 0xc2b2_ae3d_27d4_eb4f;

/// A backend's identity: what its place in the table is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    /// Endpoint address.
    pub addr: Ipv4Addr,
    /// Endpoint port.
    pub port: u16,
}

impl BackendId {
    /// Builds an identity.
    pub const fn new(addr: Ipv4Addr, port: u16) -> BackendId {
        BackendId { addr, port }
    }

    /// Address and port packed into one integer (48 bits).
    #[inline]
    pub fn key(&self) -> u64 {
        (u64::from(u32::from(self.addr)) << 16) | u64::from(self.port)
    }
}

/// The splitmix64 finaliser: a bijection on `u64` with full avalanche.
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The table size for `backends` backends: the smallest listed prime of at
/// least `100 × backends`, at most [`DEFAULT_TABLE_SIZE`].
pub fn table_size(backends: usize) -> u32 {
    let wanted = (backends as u64).saturating_mul(u64::from(SLOTS_PER_BACKEND));
    TABLE_SIZES
        .iter()
        .copied()
        .find(|&m| u64::from(m) >= wanted)
        .unwrap_or(DEFAULT_TABLE_SIZE)
}

/// A Maglev lookup table: flow hash → index of a backend. Cloning shares
/// the slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maglev {
    /// Slot → index into the caller's backend slice, `width` bits each
    /// from bit 0 of byte 0 on, then 3 bytes of padding. Empty without
    /// backends. Shared, so a snapshot rebuild reuses unchanged services' tables.
    packed: Arc<[u8]>,
    /// Number of slots.
    len: u32,
    /// Bits per slot: enough for the highest backend index (0 to 16).
    width: u8,
}

/// Bytes after the last slot, so that a slot is always read as 4 bytes.
const PADDING: usize = 3;

impl Maglev {
    /// Builds the table for `backends` with the size from [`table_size`].
    /// Backends past [`MAX_BACKENDS`] get no slots.
    pub fn new(backends: &[BackendId]) -> Maglev {
        Maglev::with_size(backends, table_size(backends.len()))
    }

    /// Builds the table with `size` slots, which should be a prime (the
    /// permutations are full cycles only then) larger than the backend count.
    pub fn with_size(backends: &[BackendId], size: u32) -> Maglev {
        let backends = &backends[..backends.len().min(MAX_BACKENDS)];
        if backends.is_empty() || size < 2 {
            return Maglev::default();
        }
        let owners = populate(backends, size);
        let width = (usize::BITS - (backends.len() - 1).leading_zeros()) as u8;
        let packed = pack(&owners, usize::from(width));
        Maglev {
            packed: packed.into(),
            len: size,
            width,
        }
    }

    /// The backend (index into the slice the table was built from) for a
    /// flow; `None` when there are no backends.
    #[inline]
    pub fn lookup(&self, flow_hash: u64) -> Option<usize> {
        self.slot_owner(self.slot(flow_hash))
    }

    /// The slot of a flow: multiply-shift maps the hash's high 32 bits
    /// onto the slots without a division (Lemire's fast range reduction).
    #[inline]
    fn slot(&self, flow_hash: u64) -> usize {
        (((flow_hash >> 32) * u64::from(self.len)) >> 32) as usize
    }

    /// The first bit of slot `slot` in `packed`.
    #[inline]
    fn bit(&self, slot: usize) -> usize {
        slot * usize::from(self.width)
    }

    /// The backend index in slot `slot`; `None` past the end (or without backends).
    #[inline]
    fn slot_owner(&self, slot: usize) -> Option<usize> {
        if slot >= self.len as usize {
            return None;
        }
        let bit = self.bit(slot);
        let bytes = self.packed.get(bit / 8..bit / 8 + 4)?;
        let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let mask = (1u32 << self.width) - 1;
        Some(((word >> (bit % 8)) & mask) as usize)
    }

    /// Address of the slot [`lookup`](Self::lookup) reads for a flow, to
    /// prefetch it; `None` when there are no backends.
    #[inline]
    pub fn slot_address(&self, flow_hash: u64) -> Option<usize> {
        self.packed
            .get(self.bit(self.slot(flow_hash)) / 8)
            .map(|b| core::ptr::from_ref(b) as usize)
    }

    /// Number of slots (0 without backends).
    pub fn size(&self) -> usize {
        self.len as usize
    }

    /// The backend index of every slot, in slot order.
    pub fn slots(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        (0..self.size()).map(|i| self.slot_owner(i).unwrap_or_default())
    }

    /// Whether `other` shares this table's storage (a clone of it).
    pub fn shares_storage(&self, other: &Maglev) -> bool {
        Arc::ptr_eq(&self.packed, &other.packed)
    }

    /// Heap bytes held by the table.
    pub fn heap_bytes(&self) -> usize {
        self.packed.len()
    }
}

/// Maglev's population: backends, in identity order, take turns claiming
/// the next free slot of their permutation until every slot is taken.
/// Returns slot → index into `backends` (at most [`MAX_BACKENDS`] of them).
///
/// This is most of the cost of building a table (a service of 10 backends
/// walks about 6,000 slots for its 1151), so the walk keeps its cursor in
/// registers and steps with one addition and a conditional subtraction.
fn populate(backends: &[BackendId], size: u32) -> Vec<u32> {
    let m = u64::from(size);
    // Identity order, so the input order does not change the table.
    let mut order: Vec<u16> = (0..backends.len()).map(|i| i as u16).collect();
    order.sort_by_key(|&i| backends[usize::from(i)]);
    // Per backend: current slot of its permutation and its skip (< size,
    // so a step is one addition and at most one subtraction).
    let mut cursor: Vec<(u32, u32)> = order
        .iter()
        .map(|&i| {
            let key = backends[usize::from(i)].key();
            let offset = mix64(key ^ SEED_OFFSET) % m;
            let skip = mix64(key ^ SEED_SKIP) % (m - 1) + 1;
            (offset as u32, skip as u32)
        })
        .collect();
    // Slot → owner, `FREE` until claimed: one array for the test and the
    // claim (about 10 % faster than a separate taken-map).
    let mut owners = vec![FREE; size as usize];
    let mut left = owners.len();
    'fill: loop {
        for (&backend, (slot, skip)) in order.iter().zip(cursor.iter_mut()) {
            let (mut at, skip) = (*slot as usize, *skip as usize);
            // `at + skip`, less the size once past the end: `at < size`.
            let back = owners.len() - skip;
            let step = |at: usize| if at >= back { at - back } else { at + skip };
            // A full cycle over a prime modulus: a free slot is always
            // found while the table is not full.
            while owners[at] != FREE {
                at = step(at);
            }
            owners[at] = u32::from(backend);
            *slot = step(at) as u32;
            left -= 1;
            if left == 0 {
                break 'fill;
            }
        }
    }
    owners
}

/// An unclaimed slot during [`populate`].
const FREE: u32 = u32::MAX;

/// Packs `owners` (each below `1 << width`, `width` at most 16) into
/// `width` bits each from bit 0 of byte 0 on, then [`PADDING`]. Eight slots
/// are `width` whole bytes: they are gathered in one integer and written
/// whole, its bytes past them zero (the next group's write covers them).
fn pack(owners: &[u32], width: usize) -> Vec<u8> {
    let bytes = (owners.len() * width).div_ceil(8).max(1);
    let mut packed = vec![0u8; owners.len().div_ceil(8) * width + 16];
    let mut at = 0;
    for group in owners.chunks(8) {
        // A `u64` holds eight slots of up to 8 bits (256 backends), and
        // shifts in one instruction where a `u128` takes several.
        if width <= 8 {
            let bits = group
                .iter()
                .rev()
                .fold(0u64, |bits, &owner| bits << width | u64::from(owner));
            packed[at..at + 8].copy_from_slice(&bits.to_le_bytes());
        } else {
            let bits = group
                .iter()
                .rev()
                .fold(0u128, |bits, &owner| bits << width | u128::from(owner));
            packed[at..at + 16].copy_from_slice(&bits.to_le_bytes());
        }
        at += width;
    }
    packed.truncate(bytes + PADDING);
    packed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: usize) -> Vec<BackendId> {
        (0..n)
            .map(|i| BackendId::new(Ipv4Addr::from(0x0af4_0000 + i as u32 * 7 + 1), 8080))
            .collect()
    }

    fn counts(t: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for b in t.slots() {
            c[b] += 1;
        }
        c
    }

    /// Slot → identity, to compare tables built from different lists.
    fn owners(t: &Maglev, b: &[BackendId]) -> Vec<BackendId> {
        t.slots().map(|i| b[i]).collect()
    }

    #[test]
    fn sizes_are_prime_and_ascending() {
        let is_prime = |n: u32| {
            n > 1
                && (2..)
                    .take_while(|d| d * d <= n)
                    .all(|d| !n.is_multiple_of(d))
        };
        assert!(TABLE_SIZES.iter().all(|&m| is_prime(m)));
        assert!(TABLE_SIZES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(table_size(1), 101);
        assert_eq!(table_size(3), 347);
        assert_eq!(table_size(10), 1151);
        assert_eq!(table_size(655), 65_537);
        assert_eq!(table_size(5000), 65_537);
    }

    #[test]
    fn packed_slots_hold_what_the_population_placed() {
        for n in [1, 2, 3, 4, 5, 10, 16, 17, 255, 256, 257, 1000, 40_000] {
            let b = backends(n);
            let t = Maglev::new(&b);
            let placed = populate(&b, table_size(n));
            assert_eq!(t.size(), placed.len());
            assert!(t.slots().eq(placed.iter().map(|&o| o as usize)), "n={n}");
            // Every hash reads the slot it maps to.
            let mut h = n as u64;
            for _ in 0..1000 {
                h = mix64(h);
                let slot = (((h >> 32) * placed.len() as u64) >> 32) as usize;
                assert_eq!(t.lookup(h), Some(placed[slot] as usize), "n={n}");
            }
        }
    }

    /// The population as the paper writes it (and as this module did
    /// before its loop was made faster): the tables must not change, or
    /// flows whose conntrack entry is lost would move on an upgrade.
    fn paper_population(backends: &[BackendId], size: u32) -> Vec<u32> {
        let m = u64::from(size);
        let mut order: Vec<u16> = (0..backends.len() as u16).collect();
        order.sort_by_key(|&i| backends[usize::from(i)]);
        let mut cursor: Vec<(u64, u64)> = order
            .iter()
            .map(|&i| {
                let key = backends[usize::from(i)].key();
                (
                    mix64(key ^ SEED_OFFSET) % m,
                    mix64(key ^ SEED_SKIP) % (m - 1) + 1,
                )
            })
            .collect();
        let mut table = vec![0u32; size as usize];
        let mut taken = vec![false; size as usize];
        let mut filled = 0;
        'fill: loop {
            for (&backend, (slot, skip)) in order.iter().zip(cursor.iter_mut()) {
                while taken[*slot as usize] {
                    *slot = (*slot + *skip) % m;
                }
                taken[*slot as usize] = true;
                table[*slot as usize] = u32::from(backend);
                *slot = (*slot + *skip) % m;
                filled += 1;
                if filled == table.len() {
                    break 'fill;
                }
            }
        }
        table
    }

    #[test]
    fn the_population_is_the_papers() {
        for n in [1, 2, 3, 10, 17, 100, 1000] {
            let mut b = backends(n);
            b.reverse();
            assert_eq!(
                populate(&b, table_size(n)),
                paper_population(&b, table_size(n)),
                "n={n}"
            );
        }
    }

    /// FNV-1a of a table's slots, for [`tables_are_those_of_earlier_builds`].
    fn fingerprint(t: &Maglev) -> u64 {
        t.slots().fold(0xcbf2_9ce4_8422_2325, |h, slot| {
            (h ^ slot as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn tables_are_those_of_earlier_builds() {
        // Fingerprints of tables as built by earlier versions of this
        // module: a flow whose conntrack entry is gone must find the same
        // backend after an upgrade, and on every node.
        let expected = [
            (1, 0x79645f8757de5fcf),
            (2, 0xc71679dd5cb4da3b),
            (3, 0x4736ea54bbad5bc1),
            (10, 0x38b8abca4f6ec8a6),
            (17, 0x03c812e65be4f921),
            (300, 0x1e7172a10ce0e913),
            (1000, 0x03c68268c21ad187),
        ];
        for (n, fp) in expected {
            assert_eq!(fingerprint(&Maglev::new(&backends(n))), fp, "n={n}");
        }
    }

    #[test]
    fn a_slot_takes_the_bits_the_backend_count_needs() {
        // 10 backends: 1151 slots of 4 bits, plus the padding.
        assert_eq!(Maglev::new(&backends(10)).heap_bytes(), 576 + PADDING);
        assert_eq!(Maglev::new(&backends(1)).heap_bytes(), 1 + PADDING);
        assert_eq!(Maglev::new(&backends(1)).lookup(u64::MAX), Some(0));
        assert_eq!(Maglev::new(&backends(256)).heap_bytes(), 29_501 + PADDING);
        assert_eq!(
            Maglev::new(&backends(257)).heap_bytes(),
            29_501 * 9 / 8 + 1 + PADDING
        );
    }

    #[test]
    fn no_backends_no_answer() {
        let t = Maglev::new(&[]);
        assert_eq!(t.size(), 0);
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup(u64::MAX), None);
    }

    #[test]
    fn every_slot_filled_and_shares_even() {
        for n in [1, 3, 10, 100, 1000] {
            let b = backends(n);
            for t in [Maglev::new(&b), Maglev::with_size(&b, DEFAULT_TABLE_SIZE)] {
                let c = counts(&t, n);
                // Round-robin filling: everyone gets ⌊M/N⌋ or ⌈M/N⌉ slots.
                let fair = t.size() / n;
                assert!(
                    c.iter().all(|&k| k == fair || k == fair + 1),
                    "n={n} m={} {c:?}",
                    t.size()
                );
                assert_eq!(c.iter().sum::<usize>(), t.size());
            }
        }
    }

    #[test]
    fn lookup_covers_every_slot_evenly() {
        // Hashes spread over the full u64 range land on slots evenly.
        let b = backends(3);
        let t = Maglev::new(&b);
        let mut hits = vec![0u32; 3];
        let mut h = 1u64;
        for _ in 0..300_000 {
            h = mix64(h);
            hits[t.lookup(h).unwrap()] += 1;
        }
        for &k in &hits {
            assert!((k as f64 - 100_000.0).abs() < 2_000.0, "{hits:?}");
        }
        assert!(t.lookup(u64::MAX).is_some() && t.lookup(0).is_some());
    }

    #[test]
    fn deterministic_and_order_independent() {
        let b = backends(10);
        let mut reversed = b.clone();
        reversed.reverse();
        let t1 = Maglev::new(&b);
        assert_eq!(t1, Maglev::new(&b));
        assert_eq!(owners(&t1, &b), owners(&Maglev::new(&reversed), &reversed));
    }

    /// (share of the removed backend's slots that moved, share of the other
    /// slots that moved) when backend `gone` leaves a set of `n`. The table
    /// keeps its size (`size`, or the rule's size for `n`), as a service's
    /// does when a backend stops being ready.
    fn removal(n: usize, gone: usize, size: Option<u32>) -> (f64, f64) {
        let b = backends(n);
        let mut fewer = b.clone();
        fewer.remove(gone);
        let m = size.unwrap_or(table_size(n));
        let build = |list: &[BackendId]| Maglev::with_size(list, m);
        let (before, after) = (owners(&build(&b), &b), owners(&build(&fewer), &fewer));
        assert_eq!(before.len(), after.len(), "same table size");
        let (mut own, mut own_moved, mut other_moved) = (0, 0, 0);
        for (x, y) in before.iter().zip(&after) {
            if *x == b[gone] {
                own += 1;
                own_moved += usize::from(x != y);
            } else {
                other_moved += usize::from(x != y);
            }
        }
        let others = before.len() - own;
        (
            own_moved as f64 / own as f64,
            other_moved as f64 / others as f64,
        )
    }

    #[test]
    fn removing_a_backend_moves_mostly_its_own_slots() {
        for (n, size) in [
            (3, None),
            (10, None),
            (100, None),
            (100, Some(DEFAULT_TABLE_SIZE)),
        ] {
            for gone in [0, n / 2, n - 1] {
                let (own, others) = removal(n, gone, size);
                assert_eq!(own, 1.0);
                assert!(others < 0.03, "n={n} gone={gone} others moved {others}");
            }
        }
    }

    #[test]
    fn adding_a_backend_moves_about_its_share() {
        for n in [10, 100] {
            let b = backends(n + 1);
            // Same table size before and after, as removal in reverse.
            let m = table_size(n + 1);
            let before = owners(&Maglev::with_size(&b[..n], m), &b[..n]);
            let after = owners(&Maglev::with_size(&b, m), &b);
            let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
            let to_new = after.iter().filter(|&&o| o == b[n]).count();
            // The newcomer takes its fair share, exactly to one slot...
            let fair = m as usize / (n + 1);
            assert!(
                to_new == fair || to_new == fair + 1,
                "n={n} to_new={to_new}"
            );
            // ...and a few other slots change hands among the old backends.
            let reshuffled = (moved - to_new) as f64 / m as f64;
            assert!(reshuffled < 0.03, "n={n} reshuffled {reshuffled}");
        }
    }

    #[test]
    #[ignore = "prints disruption figures: cargo test -p podswitch-dataplane disruption -- --ignored --nocapture"]
    fn disruption_figures() {
        for n in [3, 10, 100, 1000] {
            for size in [None, Some(DEFAULT_TABLE_SIZE)] {
                let m = size.unwrap_or(table_size(n));
                let worst = (0..n.min(50))
                    .map(|g| removal(n, g * n / n.min(50), size).1)
                    .fold(0.0f64, f64::max);
                let mean = (0..n.min(50))
                    .map(|g| removal(n, g * n / n.min(50), size).1)
                    .sum::<f64>()
                    / n.min(50) as f64;
                println!(
                    "n={n:5} M={m:6}: other slots moved on removal mean {:.2} % worst {:.2} %",
                    mean * 100.0,
                    worst * 100.0
                );
            }
        }
    }
}
