//! Mirror sessions of the daemon: the stored ones, each with a mirror
//! interface (a TAP in the daemon's netns that tcpdump reads), and the
//! transient captures streamed over the API (`POST /v1/capture`).
//!
//! The dataplane copies frames into each session's queue
//! (`podswitch_dataplane::mirror`); here live what the dataplane must not
//! hold: libpcap (to compile filters), the TAP writer threads and the
//! capture-file encoders.

pub mod capture;
pub mod filter;
mod tap_output;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use podswitch_dataplane::config::Snapshot;
use podswitch_dataplane::mirror::{
    DEFAULT_QUEUE_DEPTH, MAX_SNAPLEN, MirrorQueue, MirrorRegistry, MirrorStage, PortSelection,
    Session, SessionCounts, SessionSpec,
};

use crate::error::ControlError;
use crate::state::Mirror;

/// What a mirror or a capture asks for, before it is resolved.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// Port names (empty: all).
    pub ports: &'a [String],
    /// `ingress`, `egress` or `both`.
    pub direction: &'a str,
    /// One stage (may be empty).
    pub stage: &'a str,
    /// More stages.
    pub stages: &'a [String],
    /// tcpdump expression (may be empty).
    pub filter: &'a str,
    /// Bytes kept per frame (0: whole frames).
    pub snaplen: u32,
}

impl<'a> Selection<'a> {
    /// The selection of a stored mirror.
    pub fn of_mirror(m: &'a Mirror) -> Selection<'a> {
        Selection {
            ports: &m.ports,
            direction: &m.direction,
            stage: &m.stage,
            stages: &m.stages,
            filter: &m.filter,
            snaplen: m.snaplen,
        }
    }

    /// The stages: those named, or else the port stages of the direction.
    pub fn stages(&self) -> Vec<MirrorStage> {
        let named: Vec<MirrorStage> = (!self.stage.is_empty())
            .then_some(self.stage)
            .into_iter()
            .chain(self.stages.iter().map(String::as_str))
            .filter_map(MirrorStage::from_name)
            .collect();
        if !named.is_empty() {
            return named;
        }
        match self.direction {
            "ingress" => vec![MirrorStage::Ingress],
            "egress" => vec![MirrorStage::Egress],
            _ => vec![MirrorStage::Ingress, MirrorStage::Egress],
        }
    }

    /// Resolves port names against `snapshot` and compiles the filter
    /// (call after `validate::check_selection`). `field` prefixes error fields.
    pub fn resolve(&self, field: &str, snapshot: &Snapshot) -> Result<SessionSpec, ControlError> {
        let ports = if self.ports.is_empty() {
            PortSelection::All
        } else {
            let mut ids = Vec::with_capacity(self.ports.len());
            for name in self.ports {
                let port = snapshot.port_by_name(name).ok_or_else(|| {
                    ControlError::invalid(format!("{field}.ports"), name, "no such port")
                })?;
                ids.push(port.id);
            }
            PortSelection::of(&ids)
        };
        let filter = filter::compile(self.filter)
            .map_err(|e| ControlError::invalid(format!("{field}.filter"), self.filter, e))?;
        let snaplen = match self.snaplen {
            0 => MAX_SNAPLEN,
            n => n.min(MAX_SNAPLEN),
        };
        Ok(SessionSpec {
            ports,
            stages: self.stages(),
            filter,
            snaplen,
        })
    }
}

/// A session's queue, sized for its snap length.
pub fn new_queue(spec: &SessionSpec) -> Arc<MirrorQueue> {
    Arc::new(MirrorQueue::new(DEFAULT_QUEUE_DEPTH, spec.snaplen as usize))
}

/// The daemon's mirror outputs.
pub struct MirrorRuntime {
    registry: Arc<MirrorRegistry>,
    outputs: BTreeMap<String, tap_output::TapOutput>,
    closing: Arc<AtomicBool>,
    counters: MirrorCounters,
}

/// The counters of the active mirrors, for readers (`GET /v1/mirrors`,
/// `/metrics`) that do not wait for a change in progress: its lock is held
/// only to add or remove one entry.
#[derive(Clone)]
pub struct MirrorCounters {
    registry: Arc<MirrorRegistry>,
    active: Arc<Mutex<ActiveMirrors>>,
}

/// Each active mirror's session and its interface's write-error count, by name.
type ActiveMirrors = BTreeMap<String, (Arc<Session>, Arc<AtomicU64>)>;

impl MirrorCounters {
    fn active(&self) -> std::sync::MutexGuard<'_, ActiveMirrors> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counters of mirror `name`'s session and its interface's write errors.
    pub fn counts(&self, name: &str) -> Option<(SessionCounts, u64)> {
        let active = self.active();
        let (session, errors) = active.get(name)?;
        Some((session.counts(), errors.load(Ordering::Relaxed)))
    }

    /// Prometheus lines of every active session (mirrors and captures).
    pub fn metrics(&self) -> String {
        metrics(&self.registry)
    }
}

impl MirrorRuntime {
    /// Outputs feeding sessions into `registry` (the workers' shared one).
    pub fn new(registry: Arc<MirrorRegistry>) -> MirrorRuntime {
        MirrorRuntime {
            counters: MirrorCounters {
                registry: Arc::clone(&registry),
                active: Arc::default(),
            },
            registry,
            outputs: BTreeMap::new(),
            closing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The counters of the active mirrors, for readers.
    pub fn counters(&self) -> MirrorCounters {
        self.counters.clone()
    }

    /// The sessions the workers see.
    pub fn registry(&self) -> &Arc<MirrorRegistry> {
        &self.registry
    }

    /// Set when the daemon stops: captures end.
    pub fn closing(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.closing)
    }

    /// Creates `mirror`'s interface and activates its session.
    pub fn start(&mut self, mirror: &Mirror, spec: SessionSpec) -> Result<(), ControlError> {
        let queue = new_queue(&spec);
        let session = Arc::new(Session::new(mirror.name.clone(), spec, Arc::clone(&queue)));
        let output = tap_output::TapOutput::open(&mirror.iface, Arc::clone(&session))?;
        let counts = (Arc::clone(&session), output.write_errors());
        self.registry.add(session);
        self.outputs.insert(mirror.name.clone(), output);
        self.counters.active().insert(mirror.name.clone(), counts);
        Ok(())
    }

    /// Deactivates the session of mirror `name` and removes its interface.
    pub fn stop(&mut self, name: &str) {
        if let Some(output) = self.outputs.remove(name) {
            self.counters.active().remove(name);
            self.registry.remove(output.session());
            output.close();
        }
    }

    /// Ends every capture and removes every mirror interface (shutdown).
    pub fn close(&mut self) {
        self.closing.store(true, Ordering::Release);
        let names: Vec<String> = self.outputs.keys().cloned().collect();
        for name in names {
            self.stop(&name);
        }
    }
}

/// Prometheus lines for every active session (mirrors and captures).
pub fn metrics(registry: &MirrorRegistry) -> String {
    let mut out = String::new();
    let sessions = registry.sessions();
    if sessions.is_empty() {
        return out;
    }
    for (metric, help, get) in [
        (
            "podswitch_mirror_frames_total",
            "Frames copied by a mirror session.",
            (|c: &SessionCounts| c.frames) as fn(&SessionCounts) -> u64,
        ),
        (
            "podswitch_mirror_bytes_total",
            "Bytes copied by a mirror session.",
            |c: &SessionCounts| c.bytes,
        ),
        (
            "podswitch_mirror_dropped_total",
            "Frames a mirror session dropped because its output was behind.",
            |c: &SessionCounts| c.dropped,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} counter\n"
        ));
        for s in &sessions {
            out.push_str(&format!(
                "{metric}{{session=\"{}\"}} {}\n",
                s.name(),
                get(&s.counts())
            ));
        }
    }
    out
}
