use core::net::Ipv4Addr;
use std::os::unix::fs::FileExt;

use super::*;
use crate::conntrack::{ConnKey, Direction, Nat};
use crate::services::Backend;
use crate::wire::IpProtocol;

const CLIENT: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 244, 1, 2), 40000);
const VIP: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 96, 0, 10), 80);
const POD: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 244, 1, 3), 8080);

fn spec(name: &str, capacity: usize) -> StateSpec {
    let path = std::env::temp_dir().join(format!(
        "podswitch-state-{}-{name}.state",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    StateSpec {
        path,
        conntrack_capacity: capacity,
        timeouts: Timeouts::default(),
        affinity_capacity: 1024,
    }
}

/// A DNAT flow and an affinity pair written by one "process".
fn populate(spec: &StateSpec) -> u64 {
    let t = open(spec);
    assert!(
        t.report.persistent && t.report.discarded.is_none(),
        "{:?}",
        t.report
    );
    let now = super::super::monotonic_ns();
    let meeting = t.conntrack.shard_of(CLIENT.0, CLIENT.1, IpProtocol::TCP);
    t.conntrack
        .insert_with(
            meeting,
            ConnKey::tcp(CLIENT, VIP),
            Nat::dnat(POD),
            now,
            |_, _| (),
        )
        .unwrap();
    t.affinity
        .remember(7, CLIENT.0, Backend::new(POD.0, POD.1), now, 60_000_000_000);
    now
}

/// Writes header word `index` of the file at `spec.path`.
fn write_word(spec: &StateSpec, index: usize, value: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spec.path)
        .unwrap();
    f.write_all_at(&value.to_le_bytes(), (index * 8) as u64)
        .unwrap();
}

fn reopen_discards(spec: &StateSpec, reason: &str) {
    let t = open(spec);
    let why = t.report.discarded.clone().unwrap_or_default();
    assert!(why.contains(reason), "{why:?} does not say {reason:?}");
    assert!(t.report.persistent, "a clean file replaces it");
    assert_eq!((t.conntrack.len(), t.affinity.len()), (0, 0));
    // And the clean file it left is attached next time.
    drop(t);
    assert!(open(spec).report.discarded.is_none());
    let _ = std::fs::remove_file(&spec.path);
}

#[test]
fn a_new_process_finds_the_flows_and_affinity_of_the_last() {
    let spec = spec("roundtrip", 4096);
    let now = populate(&spec);
    let t = open(&spec);
    assert_eq!(t.report.attached_entries, 1, "{:?}", t.report);
    assert!(!t.report.clean, "not marked closed: a kill");
    let reply = ConnKey::tcp(POD, CLIENT);
    let found = t
        .conntrack
        .with_entry(&reply, now, |_, f| f)
        .expect("reply found");
    assert_eq!(found.direction, Direction::Reply);
    let original = ConnKey::tcp(CLIENT, VIP);
    let nat = t
        .conntrack
        .with_entry(&original, now, |table, f| table.get(f.id).map(|e| e.nat()))
        .flatten();
    assert_eq!(nat, Some(Nat::dnat(POD)));
    assert_eq!(
        t.affinity.lookup(7, CLIENT.0, now),
        Some(Backend::new(POD.0, POD.1))
    );
    // New entries go on from the rebuilt free list.
    let meeting = t
        .conntrack
        .shard_of(CLIENT.0, CLIENT.1 + 1, IpProtocol::TCP);
    let next = ConnKey::tcp((CLIENT.0, CLIENT.1 + 1), VIP);
    t.conntrack
        .insert_with(meeting, next, Nat::dnat(POD), now, |_, _| ())
        .unwrap();
    assert_eq!(t.conntrack.len(), 2);
    t.header.as_ref().unwrap().mark_closed();
    drop(t);
    let t = open(&spec);
    assert!(
        t.report.clean && t.report.attached_entries == 2,
        "{:?}",
        t.report
    );
    std::fs::remove_file(&spec.path).unwrap();
}

#[test]
fn a_damaged_header_is_discarded() {
    let spec = spec("checksum", 4096);
    populate(&spec);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spec.path)
        .unwrap();
    f.write_at(&[0xff], (word::SEED * 8) as u64).unwrap();
    reopen_discards(&spec, "checksum");
}

#[test]
fn a_truncated_file_is_discarded() {
    let spec = spec("truncated", 4096);
    populate(&spec);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spec.path)
        .unwrap();
    f.set_len(HUGE_PAGE as u64 + 100).unwrap();
    reopen_discards(&spec, "truncated");
    std::fs::write(&spec.path, b"short").unwrap();
    reopen_discards(&spec, "truncated");
    std::fs::write(&spec.path, vec![0u8; 8192]).unwrap();
    reopen_discards(&spec, "bad magic");
}

#[test]
fn another_layout_version_or_size_is_discarded() {
    let spec = spec("version", 4096);
    populate(&spec);
    write_word(&spec, word::VERSION, 99);
    reopen_discards(&spec, "layout version 99");
    populate(&spec);
    let bigger = StateSpec {
        conntrack_capacity: 8192,
        ..spec.clone()
    };
    reopen_discards(&bigger, "sized for");
}

#[test]
fn an_index_slot_naming_no_entry_is_discarded() {
    let spec = spec("slot", 4096);
    populate(&spec);
    let layout = Layout::of(&spec);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spec.path)
        .unwrap();
    let slot = (u64::from(u32::MAX - 1)).to_le_bytes();
    f.write_at(&slot, (layout.index_at + 8 * 5) as u64).unwrap();
    reopen_discards(&spec, "index slot 5 of shard 0");
}

#[test]
fn an_entry_with_an_impossible_tcp_state_is_discarded() {
    let spec = spec("entry", 4096);
    populate(&spec);
    let layout = Layout::of(&spec);
    let t = open(&spec);
    let shard = t.conntrack.shard_of(CLIENT.0, CLIENT.1, IpProtocol::TCP);
    let id = t
        .conntrack
        .with_entry(
            &ConnKey::tcp(CLIENT, VIP),
            super::super::monotonic_ns(),
            |_, f| f.id,
        )
        .unwrap();
    drop(t);
    let at = layout.entries_at
        + (shard * layout.per_shard + id.index() as usize) * size_of::<Entry>()
        + crate::conntrack::tcp_state_offset();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spec.path)
        .unwrap();
    f.write_at(&[200], at as u64).unwrap();
    reopen_discards(&spec, "holds no TCP state");
}

#[test]
fn without_a_usable_directory_the_tables_are_in_memory() {
    let spec = StateSpec {
        path: "/proc/podswitch-no-such-dir/dataplane.state".into(),
        ..spec("nodir", 4096)
    };
    let t = open(&spec);
    assert!(
        !t.report.persistent && t.report.error.is_some(),
        "{:?}",
        t.report
    );
    assert_eq!(t.conntrack.capacity(), 4096);
}

#[test]
fn one_million_entries_are_attached_quickly() {
    let spec = spec("million", 1 << 20);
    let t = open(&spec);
    let now = super::super::monotonic_ns();
    for i in 0..1_000_000u32 {
        let client = (
            Ipv4Addr::from(0x0a00_0000 | (i >> 8)),
            1024 + (i & 0xff) as u16,
        );
        let shard = t.conntrack.shard_of(client.0, client.1, IpProtocol::TCP);
        t.conntrack
            .insert_with(
                shard,
                ConnKey::tcp(client, VIP),
                Nat::dnat(POD),
                now,
                |_, _| (),
            )
            .unwrap();
    }
    drop(t);
    // Killed: the free lists are made from the entries.
    let t = open(&spec);
    assert_eq!(t.report.attached_entries, 1_000_000);
    assert!(t.report.rebuilt, "{:?}", t.report);
    eprintln!(
        "after a kill: attached 1,000,000 entries in {:?} (settling {:?})",
        t.report.elapsed, t.report.settle
    );
    t.header.as_ref().unwrap().mark_closed();
    drop(t);
    // Stopped cleanly: taken as kept.
    let t = open(&spec);
    assert_eq!(t.report.attached_entries, 1_000_000);
    assert!(t.report.clean && !t.report.rebuilt, "{:?}", t.report);
    eprintln!(
        "after a clean stop: attached 1,000,000 entries in {:?} (settling {:?})",
        t.report.elapsed, t.report.settle
    );
    drop(t);
    std::fs::remove_file(&spec.path).unwrap();
}

/// Makes the file at `spec.path` what a build of layout `version` would
/// have left (its header, without the later parts); returns that header.
fn as_older_version(spec: &StateSpec, version: u64) -> Vec<u8> {
    let layout = Layout::of(spec);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&spec.path)
        .unwrap();
    let mut seed = [0u8; 8];
    f.read_exact_at(&mut seed, (word::SEED * 8) as u64).unwrap();
    let old = layout.header(u64::from_le_bytes(seed), version);
    let old: Vec<u8> = old.iter().flat_map(|w| w.to_le_bytes()).collect();
    f.write_all_at(&old, 0).unwrap();
    f.write_all_at(&0u64.to_le_bytes(), (word::OWNER * 8) as u64)
        .unwrap();
    f.set_len(layout.len_of(version) as u64).unwrap();
    old
}

#[test]
fn a_version_1_file_is_extended_and_attached() {
    let spec = spec("version1", 4096);
    populate(&spec);
    // What a build of layout version 1 left: no last parts, its header.
    let layout = Layout::of(&spec);
    let old = as_older_version(&spec, 1);
    let t = open(&spec);
    assert!(
        t.report.upgraded && t.report.discarded.is_none(),
        "{:?}",
        t.report
    );
    assert_eq!(t.report.attached_entries, 1);
    let kept = t.kept.as_ref().expect("the new part");
    assert!(
        kept.counters.load().is_none() && kept.macs.iter().all(|w| w.load(Ordering::Relaxed) == 0)
    );
    assert_eq!(
        std::fs::metadata(&spec.path).unwrap().len(),
        layout.len as u64
    );
    drop(t);
    // The file is of this version now.
    let t = open(&spec);
    assert!(
        !t.report.upgraded && t.report.attached_entries == 1,
        "{:?}",
        t.report
    );
    drop(t);
    // A version 1 file sized for another table is discarded with the reason.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spec.path)
        .unwrap();
    f.write_all_at(&old, 0).unwrap();
    f.set_len(layout.kept_at as u64).unwrap();
    drop(f);
    let bigger = StateSpec {
        conntrack_capacity: 8192,
        ..spec.clone()
    };
    reopen_discards(&bigger, "sized for");
}

#[test]
fn the_kept_parts_outlive_the_process() {
    let spec = spec("kept", 4096);
    let t = open(&spec);
    let kept = t.kept.expect("a file");
    let (mut macs, found) = KeptRecords::attach(kept.macs, |_, _| true);
    assert!(found.is_empty());
    assert!(macs.put(0x0200_0af4_0102, [3, 77]));
    assert!(kept.counters.store(b"{\"drops\":{}}"));
    drop((macs, kept.neighbours, kept.counters, t.conntrack, t.header));
    let t = open(&spec);
    let kept = t.kept.expect("a file");
    let (_, found) = KeptRecords::attach(kept.macs, |_, _| true);
    assert_eq!(found, vec![(0x0200_0af4_0102, [3, 77])]);
    assert_eq!(
        kept.counters.load().as_deref(),
        Some(&b"{\"drops\":{}}"[..])
    );
    std::fs::remove_file(&spec.path).unwrap();
}

/// `n` DNAT flows from distinct client ports starting at `first`.
fn insert_flows(conntrack: &SharedConntrack, first: u16, n: u16, limit: Option<u32>, now: u64) {
    for port in first..first + n {
        let meeting = conntrack.shard_of(CLIENT.0, port, IpProtocol::TCP);
        let key = (ConnKey::tcp((CLIENT.0, port), VIP), Nat::dnat(POD));
        conntrack
            .insert_charged_with(meeting, key, limit, now, |_, _| ())
            .unwrap();
    }
}

#[test]
fn a_process_taking_over_prepares_while_the_old_one_writes() {
    let spec = spec("takeover", 4096);
    let now = super::super::monotonic_ns();
    let old = open(&spec);
    insert_flows(&old.conntrack, 1000, 10, Some(100), now);
    // The new process maps and checks the file; the old one goes on.
    let new = prepare(&spec);
    assert!(new.report.discarded.is_none(), "{:?}", new.report);
    insert_flows(&old.conntrack, 2000, 5, Some(100), now);
    old.header.as_ref().unwrap().mark_closed();
    drop(old);
    let settled = new.header.as_ref().unwrap().settle(&new.conntrack);
    assert!(settled.clean && !settled.rebuilt, "{settled:?}");
    assert_eq!((settled.entries, new.conntrack.len()), (15, 15));
    assert_eq!(new.conntrack.entries_from(CLIENT.0), 15);
    // New flows take free entries, never one of the old process's.
    insert_flows(&new.conntrack, 3000, 20, Some(100), now);
    assert_eq!(new.conntrack.len(), 35);
    for port in (1000..1010).chain(2000..2005).chain(3000..3020) {
        let key = ConnKey::tcp((CLIENT.0, port), VIP);
        let nat = new
            .conntrack
            .with_entry(&key, now, |table, f| table.get(f.id).map(|e| *e.original()))
            .flatten();
        assert_eq!(nat, Some(key), "flow from port {port}");
    }
    // Killed now (never marked closed): the next process makes the lists anew.
    drop(new);
    let t = open(&spec);
    assert!(!t.report.clean && t.report.rebuilt, "{:?}", t.report);
    assert_eq!(t.conntrack.len(), 35);
    assert_eq!(t.conntrack.entries_from(CLIENT.0), 35);
    drop(t);
    std::fs::remove_file(&spec.path).unwrap();
}

#[test]
fn a_damaged_free_list_loses_no_connection() {
    let spec = spec("freelist", 4096);
    let now = super::super::monotonic_ns();
    let layout = Layout::of(&spec);
    #[derive(PartialEq)]
    enum Damage {
        Length,
        Beyond,
        InUse,
    }
    for damage in [Damage::Length, Damage::Beyond, Damage::InUse] {
        let t = open(&spec);
        insert_flows(&t.conntrack, 1000, 3, None, now);
        t.header.as_ref().unwrap().mark_closed();
        drop(t);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&spec.path)
            .unwrap();
        // Every shard's list: a length beyond its room, or an id beyond the
        // table or of an entry in use on top.
        for shard in 0..layout.shards {
            let list = layout.free_at + shard * layout.free_slots * 4;
            let mut len = [0u8; 4];
            let r = std::fs::File::open(&spec.path).unwrap();
            r.read_exact_at(&mut len, list as u64).unwrap();
            let top = list + u32::from_ne_bytes(len) as usize * 4;
            match damage {
                // One more than the shard's entries: within the list's room.
                Damage::Length => {
                    let len = layout.per_shard as u32 + 1;
                    f.write_all_at(&len.to_ne_bytes(), list as u64)
                }
                Damage::Beyond => f.write_all_at(&u32::MAX.to_ne_bytes(), top as u64),
                Damage::InUse => f.write_all_at(&0u32.to_ne_bytes(), top as u64),
            }
            .unwrap();
        }
        drop(f);
        let t = open(&spec);
        assert!(t.report.discarded.is_none(), "{:?}", t.report);
        assert_eq!(t.conntrack.len(), 3, "{:?}", t.report);
        assert_eq!(t.report.rebuilt, damage == Damage::Length, "{:?}", t.report);
        // Either way new flows (in every shard) take free entries: the
        // three old ones stay.
        insert_flows(&t.conntrack, 4000, 300, None, now);
        for port in [1000, 1001, 1002].into_iter().chain(4000..4300) {
            let key = ConnKey::tcp((CLIENT.0, port), VIP);
            assert!(
                t.conntrack.with_entry(&key, now, |_, _| ()).is_some(),
                "{port}"
            );
        }
        drop(t);
        std::fs::remove_file(&spec.path).unwrap();
    }
}

#[test]
fn a_version_2_file_is_extended_and_its_lists_made() {
    let spec = spec("version2", 4096);
    populate(&spec);
    as_older_version(&spec, 2);
    // A clean stop of a version 2 build: no lists of its own in the file.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&spec.path)
        .unwrap();
    f.write_all_at(&CLOSED.to_le_bytes(), (word::STATUS * 8) as u64)
        .unwrap();
    drop(f);
    let t = open(&spec);
    assert!(
        t.report.upgraded && t.report.clean && t.report.rebuilt,
        "{:?}",
        t.report
    );
    assert_eq!(t.report.attached_entries, 1);
    assert_eq!(t.conntrack.len(), 1);
    drop(t);
    std::fs::remove_file(&spec.path).unwrap();
}

#[test]
fn a_file_replaced_while_its_process_runs_is_replaced_only_when_settled() {
    let spec = spec("replace", 4096);
    populate(&spec);
    write_word(&spec, word::VERSION, 99);
    // A process taking over from a build of another layout: the running
    // one keeps its file until the new one settles.
    let new = prepare(&spec);
    assert!(new.report.discarded.is_some(), "{:?}", new.report);
    let version = |path: &Path| {
        let mut word = [0u8; 8];
        let f = std::fs::File::open(path).unwrap();
        f.read_exact_at(&mut word, (word::VERSION * 8) as u64)
            .unwrap();
        u64::from_le_bytes(word)
    };
    assert_eq!(version(&spec.path), 99);
    let settled = new.header.as_ref().unwrap().settle(&new.conntrack);
    assert!(settled.error.is_none(), "{settled:?}");
    assert_eq!(version(&spec.path), LAYOUT_VERSION);
    assert!(!spec.path.with_extension("state.new").exists());
    drop(new);
    assert!(open(&spec).report.discarded.is_none());
    std::fs::remove_file(&spec.path).unwrap();
}
