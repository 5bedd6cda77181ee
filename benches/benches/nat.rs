//! Criterion benchmarks of the NAT stage through the whole pipeline, in
//! memory: established-flow DNAT and reverse NAT, new-flow setup, each with
//! 1, 1k, 10k and 100k services; the cost of the L2 reply lookup; the
//! shared conntrack with 1 and 2 threads. Run
//! `cargo bench -p podswitch-benches --bench nat`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_benches::nat::{self, CAPACITY};
use podswitch_benches::scenario;
use podswitch_dataplane::conntrack::{ConnKey, Nat, Timeouts};
use podswitch_dataplane::nat::SharedConntrack;
use podswitch_dataplane::packet::{BATCH_SIZE, Batch, PortId};
use podswitch_dataplane::pipeline::Pipeline;
use podswitch_dataplane::wire::IpProtocol;

const FLOWS: usize = 10_000;
const SERVICES: [usize; 4] = [1, 1_000, 10_000, 100_000];

fn established(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat");
    group.throughput(Throughput::Elements(FLOWS as u64));
    for services in SERVICES {
        let mut e = nat::established(services, FLOWS);
        let mut batch = Batch::new(2048);
        group.bench_function(format!("established_dnat/{services}"), |b| {
            b.iter(|| {
                let n = nat::run(&mut e.pipeline, &mut batch, &e.originals, 2);
                assert_eq!(n, FLOWS);
                black_box(n)
            })
        });
        group.bench_function(format!("established_reverse_l2/{services}"), |b| {
            b.iter(|| black_box(nat::run(&mut e.pipeline, &mut batch, &e.replies, 2)))
        });
    }
    // A smaller working set (fits in L2 with its index slots).
    let mut e = nat::established(1, 1_000);
    let mut batch = Batch::new(2048);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("established_dnat_1k_flows/1", |b| {
        b.iter(|| black_box(nat::run(&mut e.pipeline, &mut batch, &e.originals, 2)))
    });
    group.finish();
}

fn new_flows(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for services in SERVICES {
        // The table full first: the measured inserts each evict (a flood).
        let (mut p, mut flows) = nat::full_table(services);
        let mut batch = Batch::new(2048);
        group.bench_function(format!("new_flow_full_table/{services}"), |b| {
            b.iter(|| {
                flows.fill(&mut batch, 3);
                p.process(&mut batch, 3);
                black_box(batch.get(0).map(|f| f.1))
            })
        });
        eprintln!(
            "services {services}: conntrack {} entries, {:?}",
            p.shared_tables().conntrack.len(),
            p.shared_tables().conntrack.stats()
        );
    }
    group.finish();
}

fn l2_reply_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat");
    let mut s = scenario("l2_64b").expect("scenario");
    group.throughput(Throughput::Elements(s.frames.len() as u64));
    group.bench_function("l2_64b_conntrack_empty", |b| {
        b.iter(|| black_box(s.run_once()))
    });
    // One unrelated entry: the L2 path now probes the table for every IPv4 frame.
    let ct = &s.pipeline.shared_tables().conntrack;
    let key = ConnKey::tcp(([10, 0, 0, 1].into(), 1), ([10, 96, 0, 1].into(), 80));
    let shard = ct.shard_of(key.src_addr, key.src_port, IpProtocol::TCP);
    ct.insert_with(
        shard,
        key,
        Nat::dnat(([10, 0, 0, 2].into(), 80)),
        0,
        |_, _| (),
    )
    .expect("insert");
    group.bench_function("l2_64b_conntrack_nonempty", |b| {
        b.iter(|| black_box(s.run_once()))
    });
    group.finish();
}

/// `threads` pipelines on one shared table: with `crossed`, worker 0 sends
/// every flow's originals and worker 1 every flow's replies (both
/// directions of each flow on different workers); else each worker takes
/// half the flows, both directions.
fn run_threads(e: &nat::Established, threads: usize, crossed: bool, rounds: u64) -> Duration {
    let work: Vec<Vec<(PortId, Vec<u8>)>> = match (threads, crossed) {
        (1, _) => vec![e.originals.iter().chain(&e.replies).cloned().collect()],
        (_, true) => vec![e.originals.clone(), e.replies.clone()],
        _ => {
            let half = FLOWS / 2;
            vec![
                e.originals[..half]
                    .iter()
                    .chain(&e.replies[..half])
                    .cloned()
                    .collect(),
                e.originals[half..]
                    .iter()
                    .chain(&e.replies[half..])
                    .cloned()
                    .collect(),
            ]
        }
    };
    let mut pipelines: Vec<Pipeline> = (0..threads)
        .map(|_| nat::pipeline(Arc::clone(&e.snapshot), Arc::clone(&e.shared)))
        .collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (p, frames) in pipelines.iter_mut().zip(&work) {
            scope.spawn(move || {
                let mut batch = Batch::new(2048);
                for _ in 0..rounds {
                    black_box(nat::run(p, &mut batch, frames, 2));
                }
            });
        }
    });
    start.elapsed()
}

fn shared_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat_shared");
    let e = nat::established(1, FLOWS);
    // Every variant moves 2 × FLOWS packets per round in all.
    group.throughput(Throughput::Elements(2 * FLOWS as u64));
    for (name, threads, crossed) in [
        ("1_thread", 1, false),
        ("2_threads_disjoint", 2, false),
        ("2_threads_crossed", 2, true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|rounds| run_threads(&e, threads, crossed, rounds))
        });
    }
    group.finish();
    let ct = SharedConntrack::new(CAPACITY, Timeouts::default());
    eprintln!(
        "shared conntrack: {} shards, {:.1} bytes/entry at capacity {}",
        ct.shard_count(),
        ct.memory_bytes() as f64 / ct.capacity() as f64,
        ct.capacity()
    );
}

criterion_group!(
    benches,
    established,
    new_flows,
    l2_reply_lookup,
    shared_threads
);
criterion_main!(benches);
