//! How the NAT stage's per-packet cost depends on the number of services,
//! measured interleaved: one pipeline per service count (1, 1k, 10k, 100k),
//! and rounds that time one pass of each in turn (rotating which goes
//! first), so drift in a shared machine's speed falls on all four alike.
//! Criterion (`benches/nat.rs`) measures the counts one after the other,
//! minutes apart; here their ratios come out of one window of time.
//!
//! `cargo bench -p podswitch-benches --bench nat_spread` (`ROUNDS=n` to
//! change the default 40 rounds). Prints, per scenario and service count,
//! the median and the quartiles of ns per packet over the rounds, and the
//! spread: the slowest median over the fastest.

use std::time::Instant;

use podswitch_benches::nat;
use podswitch_dataplane::packet::{BATCH_SIZE, Batch};

const SERVICES: [usize; 4] = [1, 1_000, 10_000, 100_000];
/// Established connections per pipeline (as `benches/nat.rs`).
const FLOWS: usize = 10_000;
/// Batches of new flows per timed pass.
const NEW_FLOW_BATCHES: usize = 200;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` (criterion's convention): nothing to list.
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then one round is enough to show the bench runs.
    let rounds = if args.iter().any(|a| a == "--bench") {
        std::env::var("ROUNDS")
            .ok()
            .and_then(|r| r.parse::<usize>().ok())
            .unwrap_or(40)
            .clamp(1, 10_000)
    } else {
        1
    };
    established(rounds);
    new_flows(rounds);
}

/// One established ACK per flow, client → ClusterIP (DNAT, routed).
fn established(rounds: usize) {
    let mut nodes: Vec<nat::Established> = SERVICES
        .iter()
        .map(|&services| nat::established(services, FLOWS))
        .collect();
    let mut batch = Batch::new(2048);
    let samples = interleave(rounds, nodes.len(), |j| {
        let e = &mut nodes[j];
        // A pass to warm the caches the other pipelines cooled (as
        // criterion's back-to-back iterations find them), then the timed one.
        nat::run(&mut e.pipeline, &mut batch, &e.originals, 2);
        let start = Instant::now();
        let n = nat::run(&mut e.pipeline, &mut batch, &e.originals, 2);
        assert_eq!(n, FLOWS, "every established packet forwarded");
        start.elapsed().as_nanos() as f64 / n as f64
    });
    report("established_dnat", &samples);
}

/// SYNs of never-seen flows, each to a random service, into a full table.
fn new_flows(rounds: usize) {
    let mut nodes: Vec<_> = SERVICES
        .iter()
        .map(|&services| nat::full_table(services))
        .collect();
    let mut batch = Batch::new(2048);
    let samples = interleave(rounds, nodes.len(), |j| {
        let (p, flows) = &mut nodes[j];
        let mut elapsed = 0;
        for _ in 0..NEW_FLOW_BATCHES {
            flows.fill(&mut batch, 3);
            let start = Instant::now();
            p.process(&mut batch, 3);
            elapsed += start.elapsed().as_nanos();
        }
        elapsed as f64 / (NEW_FLOW_BATCHES * BATCH_SIZE) as f64
    });
    report("new_flow_full_table", &samples);
}

/// Runs `pass(j)` for each of `n` configurations per round, starting the
/// round at a different one each time; returns each one's ns/packet.
fn interleave(rounds: usize, n: usize, mut pass: impl FnMut(usize) -> f64) -> Vec<Vec<f64>> {
    // A warm-up pass each, not recorded.
    for j in 0..n {
        pass(j);
    }
    let mut samples = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let j = (round + k) % n;
            samples[j].push(pass(j));
        }
    }
    samples
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn report(name: &str, samples: &[Vec<f64>]) {
    println!(
        "{name} ({} rounds): ns/packet, median [25 %, 75 %] (Mpps at the median)",
        samples[0].len()
    );
    let mut medians = Vec::new();
    for (services, s) in SERVICES.iter().zip(samples) {
        let mut s = s.clone();
        s.sort_by(f64::total_cmp);
        let median = quantile(&s, 0.5);
        medians.push(median);
        println!(
            "  {services:>7} services: {median:7.1} [{:7.1}, {:7.1}]  ({:.2} Mpps)",
            quantile(&s, 0.25),
            quantile(&s, 0.75),
            1e3 / median
        );
    }
    let lo = medians.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = medians.iter().copied().fold(0.0, f64::max);
    println!(
        "  spread: slowest median / fastest = {:.3} (+{:.1} %)",
        hi / lo,
        (hi / lo - 1.0) * 100.0
    );
}
