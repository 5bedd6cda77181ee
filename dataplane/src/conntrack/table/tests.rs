use core::net::Ipv4Addr;

use super::*;
use crate::wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN};

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1000 * SEC;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn client(n: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from_bits(0x0a01_0000 + (n >> 16)),
        (n & 0xffff) as u16,
    )
}

const VIP: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 96, 0, 1), 80);
const POD: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 244, 0, 9), 8080);

fn seg(flags: u8, seq: u32, ack: u32) -> TcpSegment {
    TcpSegment {
        flags,
        seq,
        ack,
        window: 65535,
        payload_len: 0,
        window_scale: None,
    }
}

/// Inserts a TCP flow through DNAT and completes the handshake.
fn established(t: &mut ConntrackTable, n: u32, now: u64) -> EntryId {
    let id = t
        .insert(ConnKey::tcp(client(n), VIP), Nat::dnat(POD), now)
        .unwrap();
    t.update_tcp(id, Direction::Original, &seg(FLAG_SYN, 100, 0), now)
        .unwrap();
    t.update_tcp(
        id,
        Direction::Reply,
        &seg(FLAG_SYN | FLAG_ACK, 500, 101),
        now,
    )
    .unwrap();
    let s = t.update_tcp(id, Direction::Original, &seg(FLAG_ACK, 101, 501), now);
    assert_eq!(s, Ok(TcpState::Established));
    id
}

#[test]
fn entry_fits_a_cache_line() {
    assert!(size_of::<Entry>() <= 64, "{}", size_of::<Entry>());
    assert_eq!(size_of::<Slot>(), 8);
}

#[test]
fn lookup_both_directions_with_dnat() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let orig = ConnKey::tcp(client(1), VIP);
    let id = t.insert(orig, Nat::dnat(POD), T0).unwrap();
    assert_eq!(t.lookup(&orig, T0), Some((id, Direction::Original)));
    let reply = ConnKey::tcp(POD, client(1));
    assert_eq!(t.lookup(&reply, T0), Some((id, Direction::Reply)));
    // The untranslated inverse is not the reply.
    assert_eq!(t.lookup(&orig.inverted(), T0), None);
    let e = t.get(id).unwrap();
    assert_eq!(e.nat(), Nat::dnat(POD));
    assert_eq!(e.rewrite(Direction::Original), (client(1), POD));
    assert_eq!(e.rewrite(Direction::Reply), (VIP, client(1)));
    // ICMP errors quote the packet we sent toward the endpoint; the inverted
    // quote is the reply key, so the error belongs to the reply direction.
    let quoted = ConnKey::tcp(client(1), POD);
    assert_eq!(
        t.lookup(&quoted.inverted(), T0),
        Some((id, Direction::Reply))
    );
}

#[test]
fn insert_clash_on_reply_key() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let masq = Nat {
        src: Some((ip(1), 61000)),
        dst: Some(POD),
    };
    let a = t.insert(ConnKey::tcp(client(1), VIP), masq, T0).unwrap();
    // A second client masqueraded onto the same port clashes.
    let err = t.insert(ConnKey::tcp(client(2), VIP), masq, T0);
    assert_eq!(err, Err(InsertError::Clash(a)));
    assert_eq!(t.stats().clashes, 1);
    // Once the first is dead, the tuple is free again.
    let later = T0 + 121 * SEC;
    assert!(t.insert(ConnKey::tcp(client(2), VIP), masq, later).is_ok());
    assert_eq!(t.len(), 1);
}

#[test]
fn tcp_timeouts_follow_state() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let id = established(&mut t, 1, T0);
    let e = t.get(id).unwrap();
    assert!(e.is_assured() && e.is_replied());
    assert_eq!(e.remaining_secs(T0), 432_000);
    let s = t.update_tcp(id, Direction::Reply, &seg(FLAG_RST, 501, 0), T0);
    assert_eq!(s, Ok(TcpState::Close));
    assert_eq!(t.get(id).unwrap().remaining_secs(T0), 10);
    assert!(
        t.lookup(&ConnKey::tcp(client(1), VIP), T0 + 9 * SEC)
            .is_some()
    );
    assert!(
        t.lookup(&ConnKey::tcp(client(1), VIP), T0 + 10 * SEC)
            .is_none()
    );
    // Out-of-window and invalid segments are counted, not applied.
    let id = established(&mut t, 2, T0);
    let far = seg(FLAG_FIN | FLAG_ACK, 90_000_000, 501);
    assert_eq!(
        t.update_tcp(id, Direction::Original, &far, T0),
        Err(TcpReject::OutOfWindow)
    );
    assert_eq!(t.stats().tcp_out_of_window, 1);
    assert_eq!(t.get(id).unwrap().tcp_state(), TcpState::Established);
    let synack = seg(FLAG_SYN | FLAG_ACK, 101, 501);
    assert!(t.update_tcp(id, Direction::Original, &synack, T0).is_err());
    assert_eq!(t.stats().tcp_invalid, 1);
}

#[test]
fn syn_only_is_not_assured_and_times_out() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let id = t
        .insert(ConnKey::tcp(client(1), VIP), Nat::NONE, T0)
        .unwrap();
    t.update_tcp(id, Direction::Original, &seg(FLAG_SYN, 1, 0), T0)
        .unwrap();
    let e = t.get(id).unwrap();
    assert!(!e.is_assured() && !e.is_replied());
    assert_eq!(e.remaining_secs(T0), 120);
}

#[test]
fn udp_unreplied_then_assured() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let orig = ConnKey::udp(client(1), VIP);
    let id = t.insert(orig, Nat::dnat(POD), T0).unwrap();
    t.update(id, Direction::Original, T0);
    let e = t.get(id).unwrap();
    assert!(!e.is_replied() && !e.is_assured());
    assert_eq!(e.remaining_secs(T0), 30);
    assert!(e.listing(T0).to_string().contains("[UNREPLIED]"));
    let (id2, dir) = t.lookup(&ConnKey::udp(POD, client(1)), T0 + SEC).unwrap();
    assert_eq!((id2, dir), (id, Direction::Reply));
    t.update(id, dir, T0 + SEC);
    let e = t.get(id).unwrap();
    assert!(e.is_replied() && e.is_assured());
    assert_eq!(e.remaining_secs(T0 + SEC), 120);
    assert!(e.listing(T0).to_string().ends_with("[ASSURED]"));
    assert!(t.lookup(&orig, T0 + 121 * SEC).is_none());
}

#[test]
fn udp_unreplied_expires_after_30s() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let orig = ConnKey::udp(client(1), VIP);
    t.insert(orig, Nat::NONE, T0).unwrap();
    assert!(t.lookup(&orig, T0 + 29 * SEC).is_some());
    assert!(t.lookup(&orig, T0 + 30 * SEC).is_none());
    assert_eq!(t.expire(T0 + 30 * SEC, 16), 1);
    assert!(t.is_empty());
}

#[test]
fn icmp_echo_by_identifier() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let req = ConnKey::icmp_echo(ip(2), ip(3), 77);
    let id = t.insert(req, Nat::NONE, T0).unwrap();
    assert!(
        t.insert(ConnKey::icmp_echo(ip(2), ip(3), 78), Nat::NONE, T0)
            .is_ok()
    );
    let reply = ConnKey::icmp_echo(ip(3), ip(2), 77);
    assert_eq!(t.lookup(&reply, T0), Some((id, Direction::Reply)));
    t.update(id, Direction::Reply, T0);
    let e = t.get(id).unwrap();
    assert!(e.is_replied());
    assert_eq!(e.remaining_secs(T0), 30);
    let line = e.listing(T0).to_string();
    assert!(
        line.starts_with("icmp    1 30 src=10.0.0.2 dst=10.0.0.3 id=77"),
        "{line}"
    );
}

#[test]
fn remove_then_lookup_fails_and_slot_is_reused() {
    let mut t = ConntrackTable::new(4, Timeouts::default());
    let ids: Vec<_> = (0..4)
        .map(|n| {
            t.insert(ConnKey::udp(client(n), VIP), Nat::NONE, T0)
                .unwrap()
        })
        .collect();
    t.remove(ids[1]);
    t.remove(ids[1]);
    assert_eq!(t.stats().removed, 1);
    assert_eq!(t.len(), 3);
    assert!(t.lookup(&ConnKey::udp(client(1), VIP), T0).is_none());
    for n in [0, 2, 3] {
        assert!(t.lookup(&ConnKey::udp(client(n), VIP), T0).is_some());
    }
    let again = t
        .insert(ConnKey::udp(client(9), VIP), Nat::NONE, T0)
        .unwrap();
    assert_eq!(again, ids[1]);
    assert_eq!(t.stats().evicted(), 0);
}

#[test]
fn flood_keeps_assured_flows() {
    const CAP: usize = 10_000;
    let mut t = ConntrackTable::new(CAP, Timeouts::default());
    let assured: Vec<_> = (0..2_000).map(|n| established(&mut t, n, T0)).collect();
    for n in 0..(10 * CAP as u32) {
        let key = ConnKey::tcp(client(1_000_000 + n), VIP);
        let id = t.insert(key, Nat::dnat(POD), T0 + SEC).unwrap();
        t.update_tcp(id, Direction::Original, &seg(FLAG_SYN, n, 0), T0 + SEC)
            .unwrap();
        assert!(t.len() <= CAP);
    }
    assert_eq!(t.len(), CAP);
    for (n, id) in assured.iter().enumerate() {
        let key = ConnKey::tcp(client(n as u32), VIP);
        assert_eq!(t.lookup(&key, T0 + SEC), Some((*id, Direction::Original)));
        let reply = ConnKey::tcp(POD, client(n as u32));
        assert_eq!(t.lookup(&reply, T0 + SEC), Some((*id, Direction::Reply)));
    }
    let stats = t.stats();
    assert_eq!(
        stats.evicted_unassured,
        10 * CAP as u64 + 2_000 - CAP as u64
    );
    assert_eq!(stats.evicted_assured, 0);
    // The latest flows are present and findable.
    let last = ConnKey::tcp(client(1_000_000 + 10 * CAP as u32 - 1), VIP);
    assert!(t.lookup(&last, T0 + SEC).is_some());
}

#[test]
fn full_of_established_refuses_new_entries_and_evicts_closing_ones() {
    let mut t = ConntrackTable::new(128, Timeouts::default());
    let ids: Vec<_> = (0..128)
        .map(|n| established(&mut t, n, T0 + u64::from(n) * SEC))
        .collect();
    let later = T0 + 200 * SEC;
    let new = ConnKey::udp(client(999), VIP);
    assert_eq!(t.insert(new, Nat::NONE, later), Err(InsertError::Full));
    // Within the same second, a refusal costs a short scan, and refuses again.
    assert_eq!(t.insert(new, Nat::NONE, later), Err(InsertError::Full));
    assert_eq!(t.stats().evicted(), 0);
    for n in 0..128 {
        assert!(t.lookup(&ConnKey::tcp(client(n), VIP), later).is_some());
    }
    // A connection that is closing (a FIN seen) may go, like Linux's early drop.
    let closing = ids[77];
    let fin = seg(FLAG_FIN | FLAG_ACK, 101, 501);
    assert_eq!(
        t.update_tcp(closing, Direction::Original, &fin, later),
        Ok(TcpState::FinWait)
    );
    let id = t.insert(new, Nat::NONE, later + SEC).unwrap();
    assert_eq!(id, closing);
    assert_eq!(t.stats().evicted_assured, 1);
    assert!(
        t.lookup(&ConnKey::tcp(client(77), VIP), later + SEC)
            .is_none()
    );
}

#[test]
fn charged_entries_are_counted_per_source_and_held_to_a_limit() {
    let mut t = ConntrackTable::new(64, Timeouts::default());
    let pod = |port| ConnKey::udp((ip(2), port), VIP);
    let ids: Vec<_> = (0..3)
        .map(|p| t.insert_charged(pod(p), Nat::NONE, T0, Some(3)).unwrap())
        .collect();
    assert_eq!(t.sources().get(ip(2)), 3);
    assert_eq!(
        t.insert_charged(pod(9), Nat::NONE, T0, Some(3)),
        Err(InsertError::SourceLimit)
    );
    // Another pod, and uncharged entries, are not held by it.
    t.insert_charged(ConnKey::udp((ip(3), 1), VIP), Nat::NONE, T0, Some(3))
        .unwrap();
    t.insert(pod(10), Nat::NONE, T0).unwrap();
    assert_eq!(t.sources().get(ip(2)), 3);
    // Removed, expired and evicted entries give their share back.
    t.remove(ids[0]);
    assert_eq!(t.sources().get(ip(2)), 2);
    assert_eq!(t.expire(T0 + 31 * SEC, 64), 4);
    assert_eq!((t.sources().get(ip(2)), t.sources().get(ip(3))), (0, 0));
    let mut small = ConntrackTable::new(1, Timeouts::default());
    small
        .insert_charged(pod(1), Nat::NONE, T0, Some(9))
        .unwrap();
    small
        .insert_charged(ConnKey::udp((ip(3), 1), VIP), Nat::NONE, T0, Some(9))
        .unwrap();
    assert_eq!(small.stats().evicted_unassured, 1);
    assert_eq!(
        (small.sources().get(ip(2)), small.sources().get(ip(3))),
        (0, 1)
    );
}

#[test]
fn expiry_is_bounded_by_budget() {
    let mut t = ConntrackTable::new(1000, Timeouts::default());
    for n in 0..1000 {
        t.insert(ConnKey::udp(client(n), VIP), Nat::NONE, T0)
            .unwrap();
    }
    let later = T0 + 31 * SEC;
    assert_eq!(t.expire(later, 100), 100);
    assert_eq!(t.len(), 900);
    assert_eq!(t.expire(later, 0), 0);
    let mut rounds = 1;
    while !t.is_empty() {
        assert!(t.expire(later, 100) <= 100);
        rounds += 1;
    }
    assert_eq!(rounds, 10);
    assert_eq!(t.stats().expired, 1000);
    // Live entries survive a full sweep.
    let id = t
        .insert(ConnKey::udp(client(1), VIP), Nat::NONE, later)
        .unwrap();
    assert_eq!(t.expire(later + SEC, 5000), 0);
    assert!(t.get(id).is_some());
}

#[test]
fn churn_keeps_index_consistent() {
    // Random inserts/removes against a reference map: backward-shift
    // deletion must never lose a key.
    let mut t = ConntrackTable::new(64, Timeouts::default());
    let mut live = std::collections::HashMap::new();
    let mut x: u32 = 12345;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = x % 200;
        let key = ConnKey::udp(client(n), VIP);
        if let Some(id) = live.remove(&n) {
            t.remove(id);
        } else if t.len() < 64 {
            live.insert(n, t.insert(key, Nat::dnat(POD), T0).unwrap());
        }
        for (&m, &id) in &live {
            assert_eq!(
                t.lookup(&ConnKey::udp(client(m), VIP), T0),
                Some((id, Direction::Original))
            );
            assert_eq!(
                t.lookup(&ConnKey::udp(POD, client(m)), T0),
                Some((id, Direction::Reply))
            );
        }
    }
    assert_eq!(t.iter().count(), live.len());
}

#[test]
fn memory_per_entry_at_one_million() {
    let t = ConntrackTable::new(1_000_000, Timeouts::default());
    let per_entry = t.memory_bytes() as f64 / t.capacity() as f64;
    println!("conntrack: {per_entry:.1} bytes/entry at 1M");
    assert!(per_entry <= 128.0, "{per_entry} bytes/entry");
}

#[test]
fn lookup_batch_matches_lookup() {
    let mut t = ConntrackTable::new(1000, Timeouts::default());
    for n in 0..500 {
        t.insert(ConnKey::udp(client(n), VIP), Nat::dnat(POD), T0)
            .unwrap();
    }
    let keys: Vec<_> = (0..1000)
        .map(|n| {
            if n % 2 == 0 {
                ConnKey::udp(client(n), VIP)
            } else {
                ConnKey::udp(POD, client(n))
            }
        })
        .collect();
    let mut out = vec![None; keys.len()];
    t.lookup_batch(&keys, T0, &mut out);
    for (key, got) in keys.iter().zip(&out) {
        assert_eq!(*got, t.lookup(key, T0));
    }
    assert_eq!(out.iter().flatten().count(), 500);
}

#[test]
fn track_if_tracks_only_what_the_check_accepts() {
    let mut t = ConntrackTable::new(16, Timeouts::default());
    let id = established(&mut t, 1, T0);
    let expires = |t: &ConntrackTable| t.get(id).map(|e| e.remaining_secs(T0));
    let before = expires(&t);
    let ack = seg(FLAG_ACK, 101, 501);
    // Refused: nothing changes, not even the timeout.
    let later = T0 + 10 * SEC;
    assert_eq!(
        t.track_if(id, Direction::Original, Some(&ack), later, |_| false),
        None
    );
    assert_eq!(expires(&t), before);
    // Accepted: as `track`, the timeout runs from now.
    let r = t.track_if(id, Direction::Original, Some(&ack), later, |e| {
        e.key(Direction::Original) == &ConnKey::tcp(client(1), VIP)
    });
    assert_eq!(r, Some(Ok(TcpState::Established)));
    assert_eq!(expires(&t).map(|s| s > before.unwrap_or(0)), Some(true));
    // Out of window: the reason comes back and is counted.
    let far = seg(FLAG_ACK, 101 + 0x4000_0000, 501);
    let r = t.track_if(id, Direction::Original, Some(&far), later, |_| true);
    assert_eq!(r, Some(Err(TcpReject::OutOfWindow)));
    assert_eq!(t.stats().tcp_out_of_window, 1);
    // A removed entry is never tracked.
    t.remove(id);
    assert_eq!(
        t.track_if(id, Direction::Original, None, later, |_| true),
        None
    );
}
