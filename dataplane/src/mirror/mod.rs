//! The mirror: copies of frames at chosen pipeline stages, for tcpdump.
//!
//! With a user-space switch the kernel no longer sees the frames between
//! ports, so the switch offers its own taps, like `ovs-tcpdump` — and at
//! stages no interface shows: before and after NAT, before and after VXLAN
//! encapsulation, and the frames the pipeline dropped, with the reason.
//!
//! - A [`Session`] selects ports (one, several, all), [`MirrorStage`]s and
//!   an optional classic-BPF filter ([`bpf`], compiled from a tcpdump
//!   expression by the control plane), and feeds one [`MirrorQueue`].
//! - Active sessions live in the [`MirrorRegistry`] of the shared tables,
//!   *not* in the configuration snapshot: a transient capture does not bump
//!   the config generation. Each pipeline syncs its [`MirrorView`] once per
//!   batch (one atomic load while nothing changes).
//! - The hook other stages call is `Pipeline::mirror_active(stage)` (one
//!   load and a branch: no session, no other work) then
//!   `Pipeline::mirror(stage, port, data, note)`.
//! - Copies go into preallocated buffers recycled through bounded queues; a
//!   slow consumer makes the mirror drop copies (counted per session), never
//!   the forwarding path wait.
#![forbid(unsafe_code)]

pub mod bpf;
pub mod pcapng;
mod queue;
mod session;

use std::net::Ipv4Addr;

pub use queue::{DEFAULT_QUEUE_DEPTH, MirrorQueue, MirrorRecord};
pub use session::{
    MirrorRegistry, MirrorSet, MirrorView, PortSelection, Session, SessionCounts, SessionSpec,
};

use crate::packet::{DropReason, PortId, Verdict};

/// Largest snap length: a 64 KiB GSO super-frame with its headers.
pub const MAX_SNAPLEN: u32 = 65_792;

/// Where in the pipeline a copy is taken.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum MirrorStage {
    /// As received on a port, before any processing.
    Ingress,
    /// As sent on a port (flooded copies included).
    Egress,
    /// Before NAT rewrites the packet (the ClusterIP).
    PreNat,
    /// After NAT (the endpoint).
    PostNat,
    /// Before VXLAN encapsulation (the inner frame).
    PreEncap,
    /// After VXLAN encapsulation (the outer frame).
    PostEncap,
    /// Dropped by the pipeline or the output, with the reason.
    Drop,
}

impl MirrorStage {
    /// Every stage, in declaration order.
    pub const ALL: [MirrorStage; 7] = [
        MirrorStage::Ingress,
        MirrorStage::Egress,
        MirrorStage::PreNat,
        MirrorStage::PostNat,
        MirrorStage::PreEncap,
        MirrorStage::PostEncap,
        MirrorStage::Drop,
    ];

    /// The name used by the API and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            MirrorStage::Ingress => "ingress",
            MirrorStage::Egress => "egress",
            MirrorStage::PreNat => "pre-nat",
            MirrorStage::PostNat => "post-nat",
            MirrorStage::PreEncap => "pre-encap",
            MirrorStage::PostEncap => "post-encap",
            MirrorStage::Drop => "drop",
        }
    }

    /// The stage's bit in a stage mask.
    #[inline]
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The stage called `name` (see [`MirrorStage::as_str`]).
    pub fn from_name(name: &str) -> Option<MirrorStage> {
        MirrorStage::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl core::fmt::Display for MirrorStage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which translation a NAT stage applied.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum NatKind {
    /// Destination NAT (ClusterIP or NodePort → endpoint).
    Dnat,
    /// Source NAT (masquerade).
    Snat,
    /// The reverse translation of a reply.
    Reverse,
}

impl NatKind {
    /// Lower-case name for comments.
    pub const fn as_str(self) -> &'static str {
        match self {
            NatKind::Dnat => "dnat",
            NatKind::Snat => "snat",
            NatKind::Reverse => "reverse",
        }
    }
}

/// A NAT rewrite: the address and port before and after.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NatRewrite {
    /// What was translated.
    pub kind: NatKind,
    /// Address and port before.
    pub from: (Ipv4Addr, u16),
    /// Address and port after.
    pub to: (Ipv4Addr, u16),
}

/// What is known about a mirrored frame besides its bytes. `Copy` and
/// allocation-free: stages fill it on the hot path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MirrorNote {
    /// The stage that took the copy.
    pub stage: MirrorStage,
    /// The port the frame came in on ([`PortId::LOCAL`] for frames the switch made).
    pub in_port: PortId,
    /// The port it goes out of, when known.
    pub out_port: Option<PortId>,
    /// The pipeline's verdict, when known (a drop carries its reason).
    pub verdict: Option<Verdict>,
    /// The NAT rewrite, filled by the NAT stage.
    pub nat: Option<NatRewrite>,
}

impl MirrorNote {
    /// A note with only the stage and the input port.
    #[inline]
    pub const fn new(stage: MirrorStage, in_port: PortId) -> MirrorNote {
        MirrorNote {
            stage,
            in_port,
            out_port: None,
            verdict: None,
            nat: None,
        }
    }

    /// With the output port.
    #[inline]
    pub const fn with_out_port(mut self, port: PortId) -> MirrorNote {
        self.out_port = Some(port);
        self
    }

    /// With the verdict.
    #[inline]
    pub const fn with_verdict(mut self, verdict: Verdict) -> MirrorNote {
        self.verdict = Some(verdict);
        self
    }

    /// With a NAT rewrite.
    #[inline]
    pub const fn with_nat(mut self, nat: NatRewrite) -> MirrorNote {
        self.nat = Some(nat);
        self
    }

    /// The drop reason, for a dropped frame.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self.verdict {
            Some(Verdict::Drop(reason)) => Some(reason),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
