//! Forwarding with and without an active mirror session, in the same run:
//! the L2/L3 scenarios of `benches/lib.rs` with no session (`off`), with a
//! session on all ports at the ingress stage copying every frame
//! (`ingress`), and with a session whose filter (`tcp port 80`, as libpcap
//! compiles it) matches none of the frames (`ingress_nomatch`). The
//! consumer's work (taking a copy and giving its buffer back) runs after
//! each batch on the same core; writing the copies out does not.
//! Run `cargo bench -p podswitch-benches --bench mirror`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_benches::{MIRROR_MODES, SCENARIOS, drain, mirror_session, scenario};

fn mirror(c: &mut Criterion) {
    let mut group = c.benchmark_group("mirror");
    for (name, _, _) in SCENARIOS {
        for mode in MIRROR_MODES {
            let mut s = scenario(name).expect("known scenario");
            let queue = mirror_session(&s, mode);
            group.throughput(Throughput::Elements(s.frames.len() as u64));
            group.bench_function(format!("{name}/{mode}"), |b| {
                b.iter(|| black_box(s.run_once_then(|| drain(queue.as_ref()))))
            });
            if let Some(q) = &queue {
                let session = &s.shared().mirrors.sessions()[0];
                let counts = session.counts();
                assert_eq!(counts.dropped, 0, "the consumer kept up");
                if *mode == "ingress_nomatch" {
                    assert_eq!(counts.frames, 0, "the filter matched nothing");
                } else {
                    assert!(counts.frames > 0);
                }
                assert_eq!(q.pending(), 0);
            }
        }
    }
    group.finish();
}

criterion_group!(benches, mirror);
criterion_main!(benches);
