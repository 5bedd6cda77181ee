//! Forwarding with and without an active mirror session, in the same run:
//! the L2/L3 scenarios of `benches/lib.rs` with no session (`off`), with a
//! session on all ports at the ingress stage copying every frame
//! (`ingress`), and with a session whose filter (`tcp port 80`, as libpcap
//! compiles it) matches none of the frames (`ingress_nomatch`). The
//! consumer's work (taking a copy and giving its buffer back) runs after
//! each batch on the same core; writing the copies out does not.
//! Run `cargo bench -p podswitch-benches --bench mirror`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch_benches::{SCENARIOS, scenario};
use podswitch_dataplane::mirror::bpf::{Program, TCP_PORT_80};
use podswitch_dataplane::mirror::{
    DEFAULT_QUEUE_DEPTH, MirrorQueue, MirrorStage, PortSelection, Session, SessionSpec,
};

fn session(filter: Option<Program>) -> (Arc<Session>, Arc<MirrorQueue>) {
    let queue = Arc::new(MirrorQueue::new(DEFAULT_QUEUE_DEPTH, 2048));
    let spec = SessionSpec {
        ports: PortSelection::All,
        stages: vec![MirrorStage::Ingress],
        filter,
        snaplen: 2048,
    };
    (
        Arc::new(Session::new("bench", spec, Arc::clone(&queue))),
        queue,
    )
}

fn mirror(c: &mut Criterion) {
    let mut group = c.benchmark_group("mirror");
    let no_match = || Program::new(TCP_PORT_80.to_vec()).expect("libpcap's program");
    for (name, _, _) in SCENARIOS {
        for mode in ["off", "ingress", "ingress_nomatch"] {
            let mut s = scenario(name).expect("known scenario");
            let queue = match mode {
                "off" => None,
                _ => {
                    let filter = (mode == "ingress_nomatch").then(no_match);
                    let (session, queue) = session(filter);
                    s.shared().mirrors.add(session);
                    Some(queue)
                }
            };
            group.throughput(Throughput::Elements(s.frames.len() as u64));
            group.bench_function(format!("{name}/{mode}"), |b| {
                b.iter(|| {
                    black_box(s.run_once_then(|| {
                        if let Some(q) = &queue {
                            while let Some(r) = q.pop() {
                                q.recycle(black_box(r));
                            }
                        }
                    }))
                })
            });
            if let Some(q) = &queue {
                let session = &s.shared().mirrors.sessions()[0];
                let counts = session.counts();
                assert_eq!(counts.dropped, 0, "the consumer kept up");
                if mode == "ingress_nomatch" {
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
