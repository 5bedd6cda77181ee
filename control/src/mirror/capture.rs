//! `POST /v1/capture`: a transient session streamed to the client as a
//! pcap or pcapng file.
//!
//! The session is registered for as long as the stream runs and removed
//! when it ends: the client disconnects, `count` frames were sent, the
//! duration ran out, or the daemon stops. It is not stored and does not
//! touch the configuration snapshot.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use podswitch_dataplane::mirror::{MirrorRegistry, Session, pcapng};
use podswitch_dataplane::packet::PortId;
use serde::Deserialize;
use tokio::sync::mpsc;

/// How often the stream looks for new copies.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// The body of `POST /v1/capture`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// Port names (empty: all).
    #[serde(default)]
    pub ports: Vec<String>,
    /// `ingress`, `egress` or `both` (the port stages when no stage is given).
    #[serde(default = "both")]
    pub direction: String,
    /// One stage.
    #[serde(default)]
    pub stage: String,
    /// More stages.
    #[serde(default)]
    pub stages: Vec<String>,
    /// tcpdump expression.
    #[serde(default)]
    pub filter: String,
    /// Bytes kept per frame (0: whole frames).
    #[serde(default)]
    pub snaplen: u32,
    /// `pcap` (default) or `pcapng` (with a comment per packet).
    #[serde(default = "pcap")]
    pub format: String,
    /// Stop after this many frames (0: no limit).
    #[serde(default)]
    pub count: u64,
    /// Stop after this many seconds (0: no limit).
    #[serde(default)]
    pub duration_secs: f64,
}

fn both() -> String {
    "both".into()
}
fn pcap() -> String {
    "pcap".into()
}

/// The file format of a capture stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// pcapng with `opt_comment` per packet.
    Pcapng,
}

impl Format {
    /// Parses the request's `format`.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "pcap" => Some(Format::Pcap),
            "pcapng" => Some(Format::Pcapng),
            _ => None,
        }
    }

    /// The response's media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Pcap => "application/vnd.tcpdump.pcap",
            Format::Pcapng => "application/x-pcapng",
        }
    }
}

/// A started capture: its session is registered already.
pub struct Capture {
    /// The session (registered in `registry`).
    pub session: Arc<Session>,
    /// Where it is registered.
    pub registry: Arc<MirrorRegistry>,
    /// Set when the daemon stops.
    pub closing: Arc<AtomicBool>,
    /// Port names by id, for comments.
    pub port_names: Vec<(PortId, String)>,
    /// File format.
    pub format: Format,
    /// Frame limit (0: none).
    pub count: u64,
    /// Time limit.
    pub duration: Option<Duration>,
    /// Snap length written in the file header.
    pub snaplen: u32,
}

/// Deregisters the session however the stream ends.
struct Registered {
    session: Arc<Session>,
    registry: Arc<MirrorRegistry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(&self.session);
    }
}

/// The response body: the file, written as copies arrive.
pub fn body(capture: Capture) -> Body {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(run(capture, tx));
    Body::from_stream(Chunks(rx))
}

struct Chunks(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

async fn run(capture: Capture, tx: mpsc::Sender<Bytes>) {
    let _registered = Registered {
        session: Arc::clone(&capture.session),
        registry: Arc::clone(&capture.registry),
    };
    let started = Instant::now();
    let name = |port: PortId| {
        capture
            .port_names
            .iter()
            .find(|(id, _)| *id == port)
            .map_or_else(|| format!("port{}", port.0), |(_, n)| n.clone())
    };
    let mut head = Vec::new();
    match capture.format {
        Format::Pcap => pcapng::pcap_header(&mut head, capture.snaplen),
        Format::Pcapng => pcapng::pcapng_header(&mut head, capture.snaplen, "podswitch"),
    }
    if tx.send(Bytes::from(head)).await.is_err() {
        return;
    }
    let queue = capture.session.queue();
    let mut sent = 0u64;
    loop {
        let mut out = Vec::new();
        while capture.count == 0 || sent < capture.count {
            let Some(record) = queue.pop() else { break };
            match capture.format {
                Format::Pcap => pcapng::pcap_record(&mut out, &record),
                Format::Pcapng => {
                    let comment = pcapng::comment(&record.note, name);
                    pcapng::pcapng_record(&mut out, &record, &comment);
                }
            }
            queue.recycle(record);
            sent += 1;
        }
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
        let done = (capture.count > 0 && sent >= capture.count)
            || capture.duration.is_some_and(|d| started.elapsed() >= d)
            || capture.closing.load(Ordering::Acquire);
        if done {
            return;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}
