//! Criterion benchmarks of the service lookup (`dataplane/src/services`):
//! the per-packet `flow_hash` + `lookup_cluster` + `select` with 1 to
//! 100,000 services, and building a table of 10,000 services. Run
//! `cargo bench -p podswitch-benches --bench services`.
//!
//! Two traffic shapes per table size: `hot` sends the 1,024 flows of a
//! batch to at most 256 services (a node talks to a few services at a
//! time; this isolates the cost of the lookup from the memory hierarchy),
//! `spread` sends each flow to a random service of the whole table (every
//! packet misses the caches once the table outgrows them).

use core::net::Ipv4Addr;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use podswitch_dataplane::services::{BackendSpec, Protocol, ServiceSpec, ServiceTable, flow_hash};

/// A deterministic 64-bit LCG (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 16
    }
}

/// `n` TCP services on 10.96.0.0/12, port 80 + i / 2^20, each with 3–10
/// ready backends on port 8080.
fn services(n: usize) -> Vec<ServiceSpec> {
    let mut rng = Lcg(n as u64);
    (0..n)
        .map(|i| {
            let backends = 3 + (rng.next() % 8) as u32;
            ServiceSpec {
                external_local: false,
                vip: Ipv4Addr::from(0x0a60_0000 + (i as u32 & 0xf_ffff)),
                port: 80 + (i >> 20) as u16,
                protocol: Protocol::Tcp,
                target_port: 8080,
                node_port: None,
                affinity: None,
                backends: (0..backends)
                    .map(|b| {
                        let addr = 0x0af4_0000 + ((i as u32 * 11 + b) & 0xffff);
                        BackendSpec::ready(Ipv4Addr::from(addr), 8080)
                    })
                    .collect(),
            }
        })
        .collect()
}

/// 1,024 (client, client port, VIP, port) queries over `targets` of the
/// `specs`, chosen at random.
fn queries(
    specs: &[ServiceSpec],
    targets: usize,
    seed: u64,
) -> Vec<(Ipv4Addr, u16, Ipv4Addr, u16)> {
    let mut rng = Lcg(seed);
    let targets = targets.min(specs.len());
    let picked: Vec<usize> = (0..targets)
        .map(|_| (rng.next() % specs.len() as u64) as usize)
        .collect();
    (0..1024)
        .map(|_| {
            let s = &specs[picked[(rng.next() % targets as u64) as usize]];
            let client = Ipv4Addr::from(0x0af4_8000 | (rng.next() as u32 & 0x7fff));
            (client, 1024 + (rng.next() % 60_000) as u16, s.vip, s.port)
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    for (shape, targets) in [("hot", 256), ("spread", usize::MAX)] {
        let mut group = c.benchmark_group(format!("services_lookup_{shape}"));
        for (name, n) in [("1", 1), ("1k", 1_000), ("10k", 10_000), ("100k", 100_000)] {
            let specs = services(n);
            let qs = queries(&specs, targets, 7);
            let table = ServiceTable::new(specs).expect("distinct services");
            if shape == "hot" {
                eprintln!(
                    "services: {n} services, {} backends, table memory {:.1} MiB",
                    table
                        .entries()
                        .iter()
                        .map(|e| e.backends().len())
                        .sum::<usize>(),
                    table.memory_bytes() as f64 / (1024.0 * 1024.0)
                );
            }
            group.throughput(Throughput::Elements(qs.len() as u64));
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut found = 0u32;
                    for &(src, sport, vip, port) in black_box(&qs) {
                        let h = flow_hash(src, vip, sport, port, 6);
                        if let Some(e) = table.lookup_cluster(Protocol::Tcp, vip, port)
                            && let Some(backend) = e.select(h)
                        {
                            found = found.wrapping_add(u32::from(backend.port));
                        }
                    }
                    found
                });
            });
        }
        group.finish();
    }
}

fn build(c: &mut Criterion) {
    let mut group = c.benchmark_group("services_build");
    group.sample_size(10);
    let specs = services(10_000);
    group.throughput(Throughput::Elements(specs.len() as u64));
    group.bench_function("10k", |b| {
        b.iter_batched(
            || specs.clone(),
            |s| ServiceTable::new(s).expect("distinct services"),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, lookup, build);
criterion_main!(benches);
