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
use crate::io::egress_mtu;
use crate::packet::{BATCH_SIZE, Batch, DropReason, Event, Frame, MAX_FRAME_LEN, PortId, Verdict};
use crate::pipeline::{Pipeline, SharedTables};

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
    /// Input records skipped because their link type is not Ethernet.
    pub skipped_non_ethernet: u64,
}

impl Summary {
    /// A plain-text rendering, one fact per line.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "frames in: {}\nframes out: {}\n",
            self.frames_in, self.frames_out
        );
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
        if self.skipped_non_ethernet > 0 {
            s.push_str(&format!(
                "skipped non-Ethernet records: {}\n",
                self.skipped_non_ethernet
            ));
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
    let mut pipeline = Pipeline::new(
        snapshot.clone(),
        Arc::new(SharedTables::for_snapshot(&snapshot)),
        MAX_FRAME_LEN,
    );
    let mut outputs = Outputs {
        ports: vec![Vec::new(); snapshot.port_id_limit()],
        scratch: Frame::with_capacity(MAX_FRAME_LEN),
        fragment_scratch: Frame::with_capacity(MAX_FRAME_LEN),
    };
    let mut batch = Batch::new(MAX_FRAME_LEN);
    let mut oversize = 0u64;
    let mut last_tick = frames.first().map_or(0, |f| f.timestamp_ns);
    let mut i = 0;
    while i < frames.len() {
        let start = frames[i].timestamp_ns;
        tick_until(
            &mut pipeline,
            &mut batch,
            &mut outputs,
            &mut last_tick,
            start,
        );
        batch.clear();
        while i < frames.len()
            && batch.rx_len() < BATCH_SIZE
            && frames[i].timestamp_ns - start <= BATCH_WINDOW_NS
        {
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
    ReplayResult {
        outputs: outputs.ports,
        summary,
    }
}

/// What the ports sent, and the worker's scratch frames for segments and fragments.
struct Outputs {
    ports: Vec<Vec<OutputFrame>>,
    scratch: Frame,
    fragment_scratch: Frame,
}

fn tick_until(
    pipeline: &mut Pipeline,
    batch: &mut Batch,
    outputs: &mut Outputs,
    last: &mut u64,
    until: u64,
) {
    let from = *last;
    while *last + TICK_NS <= until && *last - from < MAX_TICKED_GAP_NS {
        *last += TICK_NS;
        batch.clear();
        run_batch(pipeline, batch, outputs, *last);
    }
    *last = (*last).max(until);
}

fn run_batch(pipeline: &mut Pipeline, batch: &mut Batch, outputs: &mut Outputs, now: u64) {
    pipeline.process(batch, now);
    let snapshot = pipeline.snapshot().clone();
    let counters = pipeline.counters().clone();
    let Outputs {
        ports,
        scratch,
        fragment_scratch,
    } = outputs;
    // As the worker sends: a frame longer than the port's MTU is cut to it
    // (`io::egress_mtu`).
    let mut send = |port: PortId, frame: &Frame| {
        let Some(out) = ports.get_mut(usize::from(port.0)) else {
            return;
        };
        let mut push = |data: &[u8]| {
            out.push(OutputFrame {
                timestamp_ns: now,
                data: data.to_vec(),
            });
            counters.tx(port, data.len());
        };
        let mtu = snapshot
            .port(port)
            .map_or(usize::MAX, |p| usize::from(p.mtu));
        if frame.encap_len == 0 && egress_mtu::exceeds(frame, mtu) {
            let cut = egress_mtu::cut(frame, mtu, scratch, fragment_scratch, |f| push(f.data()));
            match cut {
                Ok(cut) => cut.count(frame, &counters),
                Err(_) => counters.count_drop(DropReason::TxOffloadError),
            }
        } else {
            push(frame.data());
        }
    };
    for (frame, verdict) in batch.iter() {
        match verdict {
            Verdict::Forward(port) => send(port, frame),
            Verdict::Flood => {
                for &port in snapshot
                    .bridge_ports
                    .iter()
                    .filter(|&&p| p != frame.in_port)
                {
                    send(port, frame);
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
            let get = |f: fn(&crate::packet::PortCounters) -> u64| c.map_or(0, f);
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
        skipped_non_ethernet: 0,
    }
}

/// One input capture and the port its frames enter on (`None`: the default port).
#[derive(Debug, Clone)]
pub struct ReplayInput {
    /// Port name.
    pub port: Option<String>,
    /// Capture file (pcap or pcapng).
    pub path: std::path::PathBuf,
}

/// Why a file replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An input names a port the configuration does not have.
    #[error("--port {0}: no port with this name in the configuration")]
    UnknownPort(String),
    /// The configuration has no port at all.
    #[error("the configuration has no ports to replay into")]
    NoPorts,
    /// An input file could not be read from its start.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What was wrong.
        #[source]
        source: crate::io::pcap::PcapError,
    },
    /// An output could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What [`replay_files`] did.
#[derive(Debug, Clone)]
pub struct FileReplayReport {
    /// The totals (also written to `summary.txt` and `summary.json`).
    pub summary: Summary,
    /// Problems that did not stop the replay (e.g. a capture cut short).
    pub warnings: Vec<String>,
    /// Files written.
    pub written: Vec<std::path::PathBuf>,
}

/// `podswitchd replay`: reads the captures, runs them through the pipeline
/// for `config`, writes `<out_dir>/<port>.pcap` for every port plus
/// `summary.txt` and `summary.json`.
pub fn replay_files(
    config: &std::path::Path,
    inputs: &[ReplayInput],
    out_dir: &std::path::Path,
) -> Result<FileReplayReport, ReplayError> {
    let config = crate::config::NodeConfig::load(config)?;
    let snapshot = Arc::new(Snapshot::build(&config, 1)?);
    let default_port = snapshot.ports.first().ok_or(ReplayError::NoPorts)?.id;
    let mut frames = Vec::new();
    let mut warnings = Vec::new();
    let mut skipped = 0u64;
    for input in inputs {
        let port = match &input.port {
            Some(name) => {
                snapshot
                    .port_by_name(name)
                    .ok_or_else(|| ReplayError::UnknownPort(name.clone()))?
                    .id
            }
            None => default_port,
        };
        let read = read_capture(&input.path, port, &mut frames, &mut skipped)?;
        warnings.extend(read);
    }
    let mut result = replay(snapshot.clone(), frames);
    result.summary.skipped_non_ethernet = skipped;
    std::fs::create_dir_all(out_dir).map_err(|source| ReplayError::Write {
        path: out_dir.display().to_string(),
        source,
    })?;
    let mut written = Vec::new();
    for port in &snapshot.ports {
        let frames = &result.outputs[usize::from(port.id.0)];
        let path = out_dir.join(format!("{}.pcap", port.name));
        write_pcap(&path, frames).map_err(|source| ReplayError::Write {
            path: path.display().to_string(),
            source,
        })?;
        written.push(path);
    }
    let text_path = out_dir.join("summary.txt");
    let mut text = result.summary.to_text();
    for w in &warnings {
        text.push_str(&format!("warning: {w}\n"));
    }
    std::fs::write(&text_path, text).map_err(|source| ReplayError::Write {
        path: text_path.display().to_string(),
        source,
    })?;
    written.push(text_path);
    let json_path = out_dir.join("summary.json");
    let json = serde_json::to_string_pretty(&result.summary).unwrap_or_default();
    std::fs::write(&json_path, json + "\n").map_err(|source| ReplayError::Write {
        path: json_path.display().to_string(),
        source,
    })?;
    written.push(json_path);
    Ok(FileReplayReport {
        summary: result.summary,
        warnings,
        written,
    })
}

/// Appends the Ethernet frames of `path` to `frames`; a problem after the
/// first record ends that file with a warning, one before is an error.
fn read_capture(
    path: &std::path::Path,
    port: PortId,
    frames: &mut Vec<InputFrame>,
    skipped: &mut u64,
) -> Result<Option<String>, ReplayError> {
    let name = path.display().to_string();
    let mut reader =
        crate::io::pcap::PcapReader::open(path).map_err(|source| ReplayError::Read {
            path: name.clone(),
            source,
        })?;
    loop {
        match reader.next_record() {
            Ok(Some(rec)) if rec.is_ethernet() => {
                frames.push(InputFrame {
                    port,
                    timestamp_ns: rec.timestamp_ns,
                    data: rec.data.to_vec(),
                });
            }
            Ok(Some(_)) => *skipped += 1,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Ok(Some(format!(
                    "{name}: {e}; frames after this point were not replayed"
                )));
            }
        }
    }
}

fn write_pcap(path: &std::path::Path, frames: &[OutputFrame]) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut writer = crate::io::pcap::PcapWriter::new(file).map_err(std::io::Error::other)?;
    for f in frames {
        writer
            .write_frame(f.timestamp_ns, &f.data)
            .map_err(std::io::Error::other)?;
    }
    writer.flush().map_err(std::io::Error::other)
}
