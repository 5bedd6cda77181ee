//! The packet types every stage shares: frame buffers and batches
//! ([`Frame`], [`Batch`]), where a frame goes ([`Verdict`], [`PortId`],
//! [`L3If`]) and the per-worker counters that record what happened to it
//! ([`WorkerCounters`], keyed by [`DropReason`] and [`Event`]).
//!
//! This is the bottom of the tree with [`crate::wire`] and [`crate::mem`]:
//! I/O, the tables, the stages and the pipeline import it; it imports
//! nothing above it.
#![forbid(unsafe_code)]

pub mod counters;
pub mod frame;

pub use counters::{Counter, DropReason, Event, PortCounters, WorkerCounters};
pub use frame::{BATCH_SIZE, Batch, Frame, GsoKind, HEADROOM, MAX_FRAME_LEN, Offload};

/// Index of a port in the configuration snapshot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct PortId(pub u16);

impl PortId {
    /// The switch itself: the "input port" of frames it originates.
    pub const LOCAL: PortId = PortId(u16::MAX);
    /// How many ports a snapshot may hold.
    pub const MAX_PORTS: u16 = 4096;
}

/// An L3 interface of the switch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum L3If {
    /// The pod gateway on the bridge domain.
    Bridge,
    /// The node's uplink.
    Uplink,
}

/// What to do with a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Send out of this port.
    Forward(PortId),
    /// Send out of every bridge-domain port except the input port.
    Flood,
    /// Drop it, for this reason.
    Drop(DropReason),
    /// The switch consumed it (e.g. an ARP reply it was waiting for).
    Consumed,
    /// The frame was moved to the neighbour hold queue; nothing to send now.
    Held,
}

/// What a stage returns: go on (with what the next stage needs), or the
/// frame's verdict. A chain of stages reads as a sequence of `?`.
pub type Step<T = ()> = core::ops::ControlFlow<Verdict, T>;

/// The verdict a chain of stages reached.
#[inline(always)]
pub fn verdict(step: Step<Verdict>) -> Verdict {
    match step {
        core::ops::ControlFlow::Continue(v) | core::ops::ControlFlow::Break(v) => v,
    }
}
