//! SNAT port allocation (masquerade, hairpin, and the client port of a DNAT
//! flow whose reply tuple clashes with another's) that never collides.
//!
//! Like Linux's `nf_nat_used_tuple`, a candidate port is taken only if
//! the reply key it would create is not in use; the check and the insert
//! happen under the lock of the shard the entry will live in, and every
//! key that could clash lives in that same shard (see [`super::shared`]),
//! so two workers cannot hand out the same tuple. The sender's own port is
//! kept when free (what most NATs do, and what keeps port-dependent
//! protocols working); otherwise the search starts at a point derived from
//! the flow's hash and walks the range.

use super::shared::SharedConntrack;
use crate::config::NatSettings;
use crate::conntrack::{ConnKey, ConntrackTable, EntryId, Evictions, InsertError, Nat};

/// Most candidates whose reply key is looked up before giving up.
const MAX_PROBES: usize = 4096;

/// Why no entry was made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AllocError {
    /// The original key is already tracked (another worker raced us).
    Clash,
    /// No free port in the range.
    Exhausted,
    /// The table refused the entry: full, or the pod at its limit.
    Refused(InsertError),
}

/// Finds a port `p` for which `make_nat(p)`'s reply key is free (among
/// ports the settings allow and `accept` takes), inserts the entry into
/// `shard` (charged to its pod and held to `source_limit` when given, see
/// [`ConntrackTable::insert_charged`]) and runs `f` on it under the shard
/// lock. Returns `f`'s result, the NAT chosen and the entries the insert
/// evicted.
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert_with_port<R>(
    conntrack: &SharedConntrack,
    shard: usize,
    settings: &NatSettings,
    (original, source_limit): (ConnKey, Option<u32>),
    start_hash: u64,
    make_nat: impl Fn(u16) -> Nat,
    accept: impl Fn(u16) -> bool,
    now_ns: u64,
    f: impl FnOnce(&mut ConntrackTable, EntryId) -> R,
) -> Result<(R, Nat, Evictions), AllocError> {
    let range = settings.masquerade_ports;
    let n = range.len();
    let start = (start_hash % u64::from(n)) as u32;
    let candidates = core::iter::once(original.src_port)
        .chain((0..n).map(|i| (u32::from(range.first) + (start + i) % n) as u16));
    conntrack.with_shard(shard, |table| {
        if table.lookup(&original, now_ns).is_some() {
            return Err(AllocError::Clash);
        }
        let mut probes = 0;
        for port in candidates {
            if !settings.allocatable(port) || !accept(port) {
                continue;
            }
            probes += 1;
            if probes > MAX_PROBES {
                break;
            }
            let nat = make_nat(port);
            if table.lookup(&nat.reply_key(&original), now_ns).is_some() {
                continue;
            }
            let before = table.stats().evictions();
            let id = match table.insert_charged(original, nat, now_ns, source_limit) {
                Ok(id) => id,
                Err(InsertError::Clash(_)) => continue,
                Err(refused) => return Err(AllocError::Refused(refused)),
            };
            let evicted = table.stats().evictions().since(before);
            return Ok((f(table, id), nat, evicted));
        }
        Err(AllocError::Exhausted)
    })
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use super::*;
    use crate::config::Ipv4Cidr;
    use crate::config::{ConntrackSection, NatSection};
    use crate::conntrack::Timeouts;
    use crate::wire::IpProtocol;

    const SEC: u64 = 1_000_000_000;
    const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
    const REMOTE: (Ipv4Addr, u16) = (Ipv4Addr::new(203, 0, 113, 7), 443);

    fn settings(range: &str) -> NatSettings {
        let nat = NatSection {
            masquerade_ports: Some(range.parse().unwrap()),
            ..Default::default()
        };
        let bridge: Ipv4Cidr = "10.244.1.1/24".parse().unwrap();
        NatSettings::build(&nat, &ConntrackSection::default(), bridge).unwrap()
    }

    fn masquerade(
        ct: &SharedConntrack,
        s: &NatSettings,
        pod: (Ipv4Addr, u16),
    ) -> Result<u16, AllocError> {
        let key = ConnKey::tcp(pod, REMOTE);
        let shard = ct.shard_of(REMOTE.0, REMOTE.1, IpProtocol::TCP);
        let make = |p| Nat {
            src: Some((NODE, p)),
            dst: None,
        };
        insert_with_port(
            ct,
            shard,
            s,
            (key, None),
            12345,
            make,
            |_| true,
            SEC,
            |_, _| (),
        )
        .map(|(_, nat, _)| nat.src.map_or(0, |s| s.1))
    }

    #[test]
    fn keeps_the_source_port_when_free_and_never_collides() {
        let ct = SharedConntrack::new(65_536, Timeouts::default());
        let s = settings("1024-65535");
        // Two pods using the same source port toward the same remote.
        let a = masquerade(&ct, &s, (Ipv4Addr::new(10, 244, 1, 2), 40000)).unwrap();
        let b = masquerade(&ct, &s, (Ipv4Addr::new(10, 244, 1, 3), 40000)).unwrap();
        assert_eq!(a, 40000);
        assert_ne!(b, 40000);
        assert!(s.allocatable(b));
        // The same flow again is a clash, not a second entry.
        assert_eq!(
            masquerade(&ct, &s, (Ipv4Addr::new(10, 244, 1, 2), 40000)),
            Err(AllocError::Clash)
        );
        // Many pods on one port: every reply key is distinct.
        let mut seen = std::collections::HashSet::from([a, b]);
        for host in 4..200u8 {
            let p = masquerade(&ct, &s, (Ipv4Addr::new(10, 244, 1, host), 40000)).unwrap();
            assert!(seen.insert(p), "port {p} handed out twice");
            assert!(!s.node_port_range.contains(p));
        }
    }

    #[test]
    fn exhaustion_is_reported() {
        let ct = SharedConntrack::new(4096, Timeouts::default());
        let s = settings("20000-20009");
        for host in 2..12u8 {
            masquerade(&ct, &s, (Ipv4Addr::new(10, 244, 1, host), 20000)).unwrap();
        }
        assert_eq!(
            masquerade(&ct, &s, (Ipv4Addr::new(10, 244, 1, 99), 20000)),
            Err(AllocError::Exhausted)
        );
        // Another remote has its own tuple space.
        let key = ConnKey::tcp((Ipv4Addr::new(10, 244, 1, 99), 20000), (REMOTE.0, 80));
        let shard = ct.shard_of(REMOTE.0, 80, IpProtocol::TCP);
        let make = |p| Nat {
            src: Some((NODE, p)),
            dst: None,
        };
        assert!(
            insert_with_port(
                &ct,
                shard,
                &s,
                (key, None),
                1,
                make,
                |_| true,
                SEC,
                |_, _| ()
            )
            .is_ok()
        );
    }
}
