//! Criterion benchmarks: parse, L2 switching and L3 routing over the
//! captures in `pcaps/`, one core, in memory. Run `cargo bench -p podswitch-benches`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_benches::{SCENARIOS, parse_5tuple, pod_frames, scenario};

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, file) in [("64b", "small-udp.pcap"), ("mixed", "l2-pod-to-pod.pcap")] {
        let frames: Vec<Vec<u8>> = pod_frames(file).into_iter().map(|f| f.1).collect();
        group.throughput(Throughput::Elements(frames.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                frames
                    .iter()
                    .filter_map(|f| parse_5tuple(black_box(f)))
                    .count()
            });
        });
    }
    group.finish();
}

fn pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    for (name, _, _) in SCENARIOS {
        let mut s = scenario(name).expect("known scenario");
        group.throughput(Throughput::Elements(s.frames.len() as u64));
        group.bench_function(*name, |b| b.iter(|| black_box(s.run_once())));
    }
    group.finish();
}

criterion_group!(benches, parse, pipeline);
criterion_main!(benches);
