//! Runs one benchmark scenario N times, for instruction counting under
//! callgrind (`benches/instructions.sh` runs it at N and 2N and divides the
//! difference by the frames processed, so setup cost cancels out).
//!
//! Usage: `instr <scenario|parse_64b|parse_mixed|nat_dnat|nat_reverse|nat_new> <iterations> [off|ingress|ingress_nomatch|services]`
//! (`nat_dnat`/`nat_reverse <iterations> [services]`: 10,000 established
//! connections through the NAT stage, among one service or `services`, as
//! `benches/nat.rs` `established_*`; `nat_new <iterations> <services>`:
//! 1,000 batches of SYNs of new flows per iteration into a full table, as
//! `new_flow_full_table`; for the pipeline scenarios, the last argument
//! is a mirror session, as in `benches/mirror.rs`).

use std::hint::black_box;

use podswitch_benches::{SCENARIOS, drain, mirror_session, parse_5tuple, pod_frames, scenario};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!(
            "usage: instr <scenario> <iterations>; scenarios: parse_64b parse_mixed nat_dnat nat_reverse nat_new {}",
            SCENARIOS.iter().map(|s| s.0).collect::<Vec<_>>().join(" ")
        );
        std::process::exit(2);
    };
    let frames_per_iter;
    let mut sink = 0usize;
    if let Some(file) = match name.as_str() {
        "parse_64b" => Some("small-udp.pcap"),
        "parse_mixed" => Some("l2-pod-to-pod.pcap"),
        _ => None,
    } {
        let frames: Vec<Vec<u8>> = pod_frames(file).into_iter().map(|f| f.1).collect();
        frames_per_iter = frames.len();
        for _ in 0..n {
            sink += frames
                .iter()
                .filter_map(|f| parse_5tuple(black_box(f)))
                .count();
        }
    } else if let Some(replies) = match name.as_str() {
        "nat_dnat" => Some(false),
        "nat_reverse" => Some(true),
        _ => None,
    } {
        let services = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
        let mut e = podswitch_benches::nat::established(services, 10_000);
        let frames = if replies { &e.replies } else { &e.originals };
        frames_per_iter = frames.len();
        let mut batch = podswitch_dataplane::packet::Batch::new(2048);
        for _ in 0..n {
            sink += podswitch_benches::nat::run(&mut e.pipeline, &mut batch, frames, 2);
        }
    } else if name == "nat_new" {
        let services = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
        let (mut pipeline, mut flows) = podswitch_benches::nat::full_table(services);
        let mut batch = podswitch_dataplane::packet::Batch::new(2048);
        frames_per_iter = 1_000 * podswitch_dataplane::packet::BATCH_SIZE;
        for _ in 0..n {
            for _ in 0..1_000 {
                flows.fill(&mut batch, 3);
                pipeline.process(&mut batch, 3);
                sink += batch.rx_len();
            }
        }
    } else {
        let Some(mut s) = scenario(name) else {
            eprintln!("unknown scenario {name}");
            std::process::exit(2);
        };
        frames_per_iter = s.frames.len();
        let queue = mirror_session(&s, args.get(3).map_or("off", String::as_str));
        for _ in 0..n {
            sink += s.run_once_then(|| drain(queue.as_ref()));
        }
    }
    println!(
        "scenario={name} iterations={n} frames_per_iteration={frames_per_iter} forwarded={sink}"
    );
}
