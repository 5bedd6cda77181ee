//! Offline replay: captured frames through the same pipeline the daemon runs.
//!
//! Frames are fed in timestamp order (several inputs, one per port, are
//! merged stably) in batches of up to [`BATCH_SIZE`] frames that lie within
//! one millisecond of each other; pipeline time is the capture time, and
//! timers (ARP retries, aging) tick every 100 ms of capture time between
//! batches and for 5 s after the last frame. The result is deterministic:
//! the same inputs give the same outputs, byte for byte.

use std::sync::Arc;

use crate::config::Snapshot;
use crate::pipeline::{BATCH_SIZE, Batch, DropReason, Event, MAX_FRAME_LEN, Pipeline, PortId, SharedTables, Verdict};

const BATCH_WINDOW_NS: u64 = 1_000_000;
const TICK_NS: u64 = 100_000_000;
/// Timers are stepped through at most this much of a gap between frames.
const MAX_TICKED_GAP_NS: u64 = 10_000_000_000;
const DRAIN_NS: u64 = 5_000_000_000;

/// One captured frame and the port it enters on.
#[derive(Debug, Clone)]
pub struct InputFrame {
    /// Input port.
    pub port: PortId,
    /// Capture time in nanoseconds.
    pub timestamp_ns: u64,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// A frame the pipeline sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFrame {
    /// Pipeline time when it was sent.
    pub timestamp_ns: u64,
    /// The frame.
    pub data: Vec<u8>,
}

/// Per-port totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortSummary {
    /// Port name.
    pub name: String,
    /// Frames received.
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Frames fed to the pipeline.
    pub frames_in: u64,
    /// Frames sent (a flooded frame counts once per port).
    pub frames_out: u64,
    /// Totals per port, in port order.
    pub ports: Vec<PortSummary>,
    /// Drops per reason (only reasons that occurred), in declaration order.
    pub drops: Vec<(String, u64)>,
    /// Pipeline events (only those that occurred), in declaration order.
    pub events: Vec<(String, u64)>,
}

impl Summary {
    /// A plain-text rendering, one fact per line.
    pub fn to_text(&self) -> String {
        let mut s = format!("frames in: {}\nframes out: {}\n", self.frames_in, self.frames_out);
        s.push_str("port                 in_frames   in_bytes  out_frames  out_bytes\n");
        for p in &self.ports {
            s.push_str(&format!(
                "{:<20} {:>9} {:>10} {:>11} {:>10}\n",
                p.name, p.frames_in, p.bytes_in, p.frames_out, p.bytes_out
            ));
        }
        for (reason, n) in &self.drops {
            s.push_str(&format!("drop {reason}: {n}\n"));
        }
        for (event, n) in &self.events {
            s.push_str(&format!("event {event}: {n}\n"));
        }
        s
    }
}

/// Outputs per port (indexed by [`PortId`]) and the summary.
#[derive(Debug, Clone, Default)]
pub struct ReplayResult {
    /// Frames sent out of each port, in order.
    pub outputs: Vec<Vec<OutputFrame>>,
    /// Totals.
    pub summary: Summary,
}

/// Runs `frames` through a fresh pipeline for `snapshot`.
///
/// Frames longer than [`MAX_FRAME_LEN`] cannot be received by a port and are
/// counted as `oversize_input` in the summary's drops.
pub fn replay(snapshot: Arc<Snapshot>, mut frames: Vec<InputFrame>) -> ReplayResult {
    frames.sort_by_key(|f| f.timestamp_ns);
    let mut pipeline = Pipeline::new(snapshot.clone(), Arc::new(SharedTables::default()), MAX_FRAME_LEN);
    let mut outputs: Vec<Vec<OutputFrame>> = vec![Vec::new(); snapshot.ports.len()];
    let mut batch = Batch::new(MAX_FRAME_LEN);
    let mut oversize = 0u64;
    let mut last_tick = frames.first().map_or(0, |f| f.timestamp_ns);
    let mut i = 0;
    while i < frames.len() {
        let start = frames[i].timestamp_ns;
        tick_until(&mut pipeline, &mut batch, &mut outputs, &mut last_tick, start);
        batch.clear();
        while i < frames.len() && batch.rx_len() < BATCH_SIZE && frames[i].timestamp_ns - start <= BATCH_WINDOW_NS {
            let f = &frames[i];
            if !batch.push_rx(f.port, f.timestamp_ns, &f.data) {
                oversize += 1;
            }
            i += 1;
        }
        run_batch(&mut pipeline, &mut batch, &mut outputs, start);
    }
    let end = last_tick.saturating_add(DRAIN_NS);
    tick_until(&mut pipeline, &mut batch, &mut outputs, &mut last_tick, end);
    let summary = summarize(&snapshot, &pipeline, oversize);
    ReplayResult { outputs, summary }
}

fn tick_until(pipeline: &mut Pipeline, batch: &mut Batch, outputs: &mut [Vec<OutputFrame>], last: &mut u64, until: u64) {
    let from = *last;
    while *last + TICK_NS <= until && *last - from < MAX_TICKED_GAP_NS {
        *last += TICK_NS;
        batch.clear();
        run_batch(pipeline, batch, outputs, *last);
    }
    *last = (*last).max(until);
}

fn run_batch(pipeline: &mut Pipeline, batch: &mut Batch, outputs: &mut [Vec<OutputFrame>], now: u64) {
    pipeline.process(batch, now);
    let snapshot = pipeline.snapshot().clone();
    let counters = pipeline.counters().clone();
    let mut send = |port: PortId, data: &[u8]| {
        if let Some(out) = outputs.get_mut(usize::from(port.0)) {
            out.push(OutputFrame { timestamp_ns: now, data: data.to_vec() });
            counters.tx(port, data.len());
        }
    };
    for (frame, verdict) in batch.iter() {
        match verdict {
            Verdict::Forward(port) => send(port, frame.data()),
            Verdict::Flood => {
                for &port in snapshot.bridge_ports.iter().filter(|&&p| p != frame.in_port) {
                    send(port, frame.data());
                }
            }
            Verdict::Drop(_) | Verdict::Consumed | Verdict::Held => {}
        }
    }
}

fn summarize(snapshot: &Snapshot, pipeline: &Pipeline, oversize: u64) -> Summary {
    let counters = pipeline.counters();
    let ports: Vec<PortSummary> = snapshot
        .ports
        .iter()
        .map(|p| {
            let c = counters.port(p.id);
            let get = |f: fn(&crate::pipeline::PortCounters) -> u64| c.map_or(0, f);
            PortSummary {
                name: p.name.clone(),
                frames_in: get(|c| c.rx_packets.get()),
                bytes_in: get(|c| c.rx_bytes.get()),
                frames_out: get(|c| c.tx_packets.get()),
                bytes_out: get(|c| c.tx_bytes.get()),
            }
        })
        .collect();
    let mut drops: Vec<(String, u64)> = DropReason::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), counters.drops(*r)))
        .filter(|d| d.1 > 0)
        .collect();
    if oversize > 0 {
        drops.push(("oversize_input".to_string(), oversize));
    }
    let events = Event::ALL
        .iter()
        .map(|e| (e.as_str().to_string(), counters.events(*e)))
        .filter(|e| e.1 > 0)
        .collect();
    Summary {
        frames_in: ports.iter().map(|p| p.frames_in).sum::<u64>() + oversize,
        frames_out: ports.iter().map(|p| p.frames_out).sum(),
        ports,
        drops,
        events,
    }
}
