//! Criterion benchmarks of the connection tracking table, one core, in
//! memory: established-flow lookup + TCP update, and new-flow inserts into a
//! full 1M table (each insert evicts). Run
//! `cargo bench -p podswitch-benches --bench conntrack`.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_dataplane::conntrack::{
    ConnKey, ConntrackTable, Direction, Nat, TcpSegment, Timeouts,
};
use podswitch_dataplane::wire::tcp::{FLAG_ACK, FLAG_SYN};

const NOW: u64 = 1_000_000_000_000;
const VIP: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 96, 0, 1), 80);
const POD: (Ipv4Addr, u16) = (Ipv4Addr::new(10, 244, 0, 9), 8080);

fn client(n: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::from_bits(0x0a00_0000 + (n >> 14)),
        1024 + (n & 0x3fff) as u16,
    )
}

fn segment(flags: u8, seq: u32, ack: u32) -> TcpSegment {
    TcpSegment {
        flags,
        seq,
        ack,
        window: 65535,
        payload_len: 0,
        window_scale: Some(7),
    }
}

fn established(c: &mut Criterion) {
    const FLOWS: u32 = 100_000;
    let mut table = ConntrackTable::new(1_000_000, Timeouts::default());
    eprintln!(
        "conntrack: {:.1} bytes/entry at capacity {}",
        table.memory_bytes() as f64 / table.capacity() as f64,
        table.capacity()
    );
    for n in 0..FLOWS {
        let id = table
            .insert(ConnKey::tcp(client(n), VIP), Nat::dnat(POD), NOW)
            .expect("room");
        let o = Direction::Original;
        let r = Direction::Reply;
        table
            .update_tcp(id, o, &segment(FLAG_SYN, 100, 0), NOW)
            .expect("syn");
        table
            .update_tcp(id, r, &segment(FLAG_SYN | FLAG_ACK, 500, 101), NOW)
            .expect("syn-ack");
        table
            .update_tcp(id, o, &segment(FLAG_ACK, 101, 501), NOW)
            .expect("ack");
    }
    // Packets in a scrambled flow order, alternating directions.
    let packets: Vec<ConnKey> = (0..FLOWS)
        .map(|i| {
            let n = (i.wrapping_mul(2_654_435_761)) % FLOWS;
            if i % 2 == 0 {
                ConnKey::tcp(client(n), VIP)
            } else {
                ConnKey::tcp(POD, client(n))
            }
        })
        .collect();
    let ack_o = segment(FLAG_ACK, 101, 501);
    let ack_r = segment(FLAG_ACK, 501, 101);
    let mut group = c.benchmark_group("conntrack");
    group.throughput(Throughput::Elements(u64::from(FLOWS)));
    group.bench_function("established_lookup_update_100k", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for key in &packets {
                if let Some((id, dir)) = table.lookup(black_box(key), NOW) {
                    let seg = if dir == Direction::Original {
                        &ack_o
                    } else {
                        &ack_r
                    };
                    ok += u32::from(table.update_tcp(id, dir, seg, NOW).is_ok());
                }
            }
            assert_eq!(ok, FLOWS);
            ok
        });
    });
    let mut found = vec![None; packets.len()];
    group.bench_function("established_lookup_batch_update_100k", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for (keys, found) in packets.chunks(32).zip(found.chunks_mut(32)) {
                table.lookup_batch(black_box(keys), NOW, found);
                for &(id, dir) in found.iter().flatten() {
                    let seg = if dir == Direction::Original {
                        &ack_o
                    } else {
                        &ack_r
                    };
                    ok += u32::from(table.update_tcp(id, dir, seg, NOW).is_ok());
                }
            }
            assert_eq!(ok, FLOWS);
            ok
        });
    });
    group.finish();
}

fn insert(c: &mut Criterion) {
    const CAPACITY: u32 = 1_000_000;
    const BATCH: u32 = 10_000;
    let mut table = ConntrackTable::new(CAPACITY as usize, Timeouts::default());
    let mut next = 0u32;
    let insert_one = |table: &mut ConntrackTable, next: &mut u32| {
        let key = ConnKey::udp(client(*next), VIP);
        *next = next.wrapping_add(1);
        table.insert(key, Nat::dnat(POD), NOW).is_ok()
    };
    // Fill it: the measured inserts each evict an unassured entry.
    for _ in 0..CAPACITY {
        insert_one(&mut table, &mut next);
    }
    let mut group = c.benchmark_group("conntrack");
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    group.bench_function("insert_full_1m", |b| {
        b.iter(|| {
            let mut ok = 0u32;
            for _ in 0..BATCH {
                ok += u32::from(insert_one(&mut table, &mut next));
            }
            black_box(ok)
        });
    });
    group.throughput(Throughput::Elements(u64::from(BATCH * 10)));
    group.bench_function("insert_empty_1m", |b| {
        b.iter_batched_ref(
            || ConntrackTable::new(CAPACITY as usize, Timeouts::default()),
            |table| {
                let mut n = 0;
                for _ in 0..BATCH * 10 {
                    insert_one(table, &mut n);
                }
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
    eprintln!("conntrack after insert bench: {:?}", table.stats());
}

criterion_group!(benches, established, insert);
criterion_main!(benches);
