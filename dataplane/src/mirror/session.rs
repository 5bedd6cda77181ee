//! Sessions, the set of active ones, and each pipeline's view of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::bpf::Program;
use super::{MirrorNote, MirrorQueue, MirrorStage};
use crate::packet::PortId;

const PORT_WORDS: usize = PortId::MAX_PORTS as usize / 64;

/// The ports a session mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSelection {
    /// Every port (frames the switch made included).
    All,
    /// These ports (a bit per port id).
    Some(Box<[u64; PORT_WORDS]>),
}

impl PortSelection {
    /// A selection of `ports` (ids out of range are ignored).
    pub fn of(ports: &[PortId]) -> PortSelection {
        let mut bits = Box::new([0u64; PORT_WORDS]);
        for p in ports {
            if let Some(word) = bits.get_mut(usize::from(p.0) / 64) {
                *word |= 1 << (p.0 % 64);
            }
        }
        PortSelection::Some(bits)
    }

    /// True when `port` is selected.
    #[inline]
    pub fn contains(&self, port: PortId) -> bool {
        match self {
            PortSelection::All => true,
            PortSelection::Some(bits) => bits
                .get(usize::from(port.0) / 64)
                .is_some_and(|w| w & (1 << (port.0 % 64)) != 0),
        }
    }
}

/// What a session captures.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    /// Ports.
    pub ports: PortSelection,
    /// Stages (at least one).
    pub stages: Vec<MirrorStage>,
    /// Only frames this program accepts (`None`: all).
    pub filter: Option<Program>,
    /// Bytes kept of each frame (at most [`super::MAX_SNAPLEN`]).
    pub snaplen: u32,
}

/// Per-session counters (several workers write them: atomic adds, paid only
/// by frames that are mirrored).
#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
}

/// A snapshot of a session's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionCounts {
    /// Frames copied to the output.
    pub frames: u64,
    /// Bytes copied (after the snap length).
    pub bytes: u64,
    /// Frames that matched but were dropped at the mirror (output too slow).
    pub dropped: u64,
}

/// One active mirror session.
#[derive(Debug)]
pub struct Session {
    name: String,
    ports: PortSelection,
    stages: u8,
    filter: Option<Program>,
    snaplen: usize,
    queue: Arc<MirrorQueue>,
    counters: Counters,
}

impl Session {
    /// A session feeding `queue`.
    pub fn new(name: impl Into<String>, spec: SessionSpec, queue: Arc<MirrorQueue>) -> Session {
        Session {
            name: name.into(),
            ports: spec.ports,
            stages: spec.stages.iter().fold(0, |m, s| m | s.bit()),
            filter: spec.filter,
            snaplen: spec.snaplen.min(super::MAX_SNAPLEN) as usize,
            queue,
            counters: Counters::default(),
        }
    }

    /// The session's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its output queue.
    pub fn queue(&self) -> &Arc<MirrorQueue> {
        &self.queue
    }

    /// Its counters.
    pub fn counts(&self) -> SessionCounts {
        SessionCounts {
            frames: self.counters.frames.load(Ordering::Relaxed),
            bytes: self.counters.bytes.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Copies the frame if this session wants it; false when it wanted it
    /// but its output had no free buffer.
    #[inline]
    fn offer(
        &self,
        stage: MirrorStage,
        port: PortId,
        data: &[u8],
        timestamp_ns: u64,
        note: MirrorNote,
    ) -> bool {
        if self.stages & stage.bit() == 0 || !self.ports.contains(port) {
            return true;
        }
        // The filter decides match or not; its accept value is libpcap's
        // handle snap length (65535), not the session's, so it does not cut.
        if let Some(filter) = &self.filter
            && !filter.matches(data)
        {
            return true;
        }
        let copy = &data[..data.len().min(self.snaplen)];
        if self.queue.push(copy, data.len(), timestamp_ns, note) {
            self.counters.frames.fetch_add(1, Ordering::Relaxed);
            self.counters
                .bytes
                .fetch_add(copy.len() as u64, Ordering::Relaxed);
            true
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// The active sessions, as the workers see them.
#[derive(Debug, Default)]
pub struct MirrorSet {
    sessions: Vec<Arc<Session>>,
    stages: u8,
}

impl MirrorSet {
    /// The active sessions.
    pub fn sessions(&self) -> &[Arc<Session>] {
        &self.sessions
    }
}

/// The shared cell of active sessions, changed by the control plane and
/// read by every pipeline once per batch.
#[derive(Debug, Default)]
pub struct MirrorRegistry {
    current: ArcSwap<MirrorSet>,
    generation: AtomicU64,
    writers: Mutex<Vec<Arc<Session>>>,
}

impl MirrorRegistry {
    /// Activates `session`.
    pub fn add(&self, session: Arc<Session>) {
        self.update(|sessions| sessions.push(session));
    }

    /// Deactivates `session` (compared by identity); false if it was not active.
    pub fn remove(&self, session: &Arc<Session>) -> bool {
        let mut found = false;
        self.update(|sessions| {
            let before = sessions.len();
            sessions.retain(|s| !Arc::ptr_eq(s, session));
            found = sessions.len() != before;
        });
        found
    }

    /// The active sessions.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.current.load().sessions.clone()
    }

    /// The generation, bumped by every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn update(&self, change: impl FnOnce(&mut Vec<Arc<Session>>)) {
        let mut sessions = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut sessions);
        let stages = sessions.iter().fold(0, |m, s| m | s.stages);
        self.current.store(Arc::new(MirrorSet {
            sessions: sessions.clone(),
            stages,
        }));
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// One pipeline's copy of the active sessions, synced once per batch.
#[derive(Debug, Default)]
pub struct MirrorView {
    generation: u64,
    set: Arc<MirrorSet>,
    stages: u8,
    wall_ns: u64,
}

impl MirrorView {
    /// Takes the registry's set if it changed (one atomic load otherwise)
    /// and, while a session is active, reads the wall clock for this batch's
    /// timestamps.
    #[inline]
    pub fn sync(&mut self, registry: &MirrorRegistry) {
        let generation = registry.generation();
        if generation != self.generation {
            self.set = registry.current.load_full();
            self.stages = self.set.stages;
            self.generation = generation;
        }
        if self.stages != 0 {
            self.wall_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        }
    }

    /// True when some session wants `stage`.
    #[inline(always)]
    pub fn active(&self, stage: MirrorStage) -> bool {
        self.stages & stage.bit() != 0
    }

    /// Offers a frame to every session; returns how many wanted a copy but
    /// could not take one (their output is behind).
    #[inline(never)]
    pub fn offer(&self, stage: MirrorStage, port: PortId, data: &[u8], note: MirrorNote) -> usize {
        let mut dropped = 0;
        for session in &self.set.sessions {
            if !session.offer(stage, port, data, self.wall_ns, note) {
                dropped += 1;
            }
        }
        dropped
    }
}
