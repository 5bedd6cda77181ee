//! Service lookup: ClusterIP and NodePort → a backend, for the DNAT stage.
//!
//! A [`ServiceTable`] is built once per configuration snapshot from plain
//! [`ServiceSpec`]s and is read-only on the hot path: one probe of its flat
//! index ([`index`]) finds the service for a (protocol, address, port),
//! and the [`Maglev`] table the index slot carries picks a ready backend
//! from the packet's [`flow_hash`] without allocating or locking. Maglev
//! (rather than `hash % N`) keeps a
//! flow on its backend when other backends come and go, so a flow whose
//! conntrack entry was lost (a restart, another worker, another node
//! behind ECMP) usually lands where it was.
//!
//! ```
//! use core::net::Ipv4Addr;
//! use podswitch_dataplane::services::*;
//!
//! let vip = Ipv4Addr::new(10, 96, 0, 10);
//! let table = ServiceTable::new(vec![ServiceSpec {
//!     external_local: false,
//!     vip,
//!     port: 53,
//!     protocol: Protocol::Udp,
//!     target_port: 5353,
//!     node_port: None,
//!     affinity: None,
//!     backends: vec![BackendSpec::ready(Ipv4Addr::new(10, 244, 1, 7), 5353)],
//! }])
//! .unwrap();
//! let client = Ipv4Addr::new(10, 244, 2, 9);
//! let hash = flow_hash(client, vip, 40_000, 53, Protocol::Udp.number());
//! let entry = table.lookup_cluster(Protocol::Udp, vip, 53).unwrap();
//! assert_eq!(entry.select(hash).unwrap().port, 5353);
//! ```
#![forbid(unsafe_code)]

pub mod index;
pub mod maglev;
mod protocol;
pub mod table;

use core::net::Ipv4Addr;

pub use index::{Indexed, ServiceKey};
pub use maglev::{BackendId, Maglev};
pub use table::{
    Backend, BackendSpec, Protocol, ServiceEntry, ServiceSpec, ServiceTable, ServiceTableError,
};

use maglev::mix64;

const FLOW_HASH_SEED: u64 = 0x5ca1_ab1e_0dd5_eed5;

/// A well-mixed 64-bit hash of a flow's 5-tuple, for backend selection.
///
/// Not symmetric: the reply direction hashes differently, which does not
/// matter here because only the client's first packet selects a backend
/// (conntrack carries the choice after that). The function is fixed (no
/// per-process seed), so every worker and every node picks the same backend
/// for the same flow; the cost is that a client choosing its source ports
/// can predict its backend, which Maglev's even split makes harmless.
#[inline]
pub fn flow_hash(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, proto: u8) -> u64 {
    let addrs = (u64::from(u32::from(src)) << 32) | u64::from(u32::from(dst));
    let rest = (u64::from(sport) << 24) | (u64::from(dport) << 8) | u64::from(proto);
    mix64(mix64(addrs ^ FLOW_HASH_SEED) ^ rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_hash_depends_on_every_field_and_is_not_symmetric() {
        let a = Ipv4Addr::new(10, 244, 1, 2);
        let b = Ipv4Addr::new(10, 96, 0, 1);
        let h = flow_hash(a, b, 1000, 80, 6);
        assert_eq!(h, flow_hash(a, b, 1000, 80, 6));
        for other in [
            flow_hash(b, b, 1000, 80, 6),
            flow_hash(a, a, 1000, 80, 6),
            flow_hash(a, b, 1001, 80, 6),
            flow_hash(a, b, 1000, 81, 6),
            flow_hash(a, b, 1000, 80, 17),
            flow_hash(b, a, 80, 1000, 6),
        ] {
            assert_ne!(h, other);
        }
    }

    #[test]
    fn flow_hash_high_bits_are_even() {
        // Maglev uses the high 32 bits: consecutive source ports must spread.
        let mut buckets = [0u32; 16];
        let (a, b) = (Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 96, 0, 1));
        for port in 0..16_000u16 {
            buckets[(flow_hash(a, b, port, 80, 6) >> 60) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&k| (900..1100).contains(&k)),
            "{buckets:?}"
        );
    }
}
