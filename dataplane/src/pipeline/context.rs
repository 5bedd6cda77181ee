//! What the stages know about the frame in hand, and what each returns.
//!
//! A [`Packet`] is filled as a frame goes through the stages: its
//! Ethernet header when it is parsed at the start, the L3
//! interface when it reaches the router, its IPv4 addresses and TTL when
//! the router has checked the header, the tunnel it came out of when the
//! overlay decapsulated it, the conntrack entry the NAT stage tracked it
//! under. A stage reads what the ones before it found there instead of
//! parsing the frame again, and writes what the ones after it need
//! (nothing is handed over through the pipeline's own fields).
//!
//! Every stage returns a [`Step`](crate::packet::Step): `Continue` with
//! what the next stage needs, or `Break` with the frame's verdict — so a
//! chain of stages reads as a sequence of `?`, in the spirit of VPP's node
//! graph where each node names the next.

use core::cell::Cell;
use core::net::Ipv4Addr;

use super::flow_cache::FlowKey;
use crate::nat::TrackedFlow;
use crate::overlay::TunnelId;
use crate::packet::L3If;
use crate::wire::L2Header;

/// The frame being processed, as the stages have found it so far.
#[derive(Clone, Debug)]
pub(super) struct Packet {
    /// Its position in the batch.
    pub index: usize,
    /// Its Ethernet header (priority tags removed; after decapsulation,
    /// the inner frame's).
    pub l2: L2Header,
    /// The pipeline clock.
    pub now: u64,
    /// The L3 interface it entered the router by.
    pub iface: L3If,
    /// Source and destination as the router read them, before NAT.
    pub original: (Ipv4Addr, Ipv4Addr),
    /// TTL as the router read it.
    pub ttl: u8,
    /// The VXLAN tunnel it was decapsulated from (split horizon).
    pub rx_tunnel: Option<TunnelId>,
    /// Out of a tunnel, a translated reply that legitimately leaves by the
    /// uplink (not a gateway answer to send back through the tunnel).
    pub tunnel_exit: bool,
    /// The key the flow cache may remember its flow under.
    pub flow_key: Option<FlowKey>,
    /// The conntrack entry the NAT stage tracked it under (written by the
    /// NAT stage, read by the flow cache).
    pub tracked: Cell<Option<TrackedFlow>>,
}

impl Packet {
    /// A frame just parsed at L2, on its way to the router.
    #[inline(always)]
    pub(super) fn new(index: usize, l2: L2Header, now: u64) -> Packet {
        Packet {
            index,
            l2,
            now,
            iface: L3If::Bridge,
            original: (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED),
            ttl: 0,
            rx_tunnel: None,
            tunnel_exit: false,
            flow_key: None,
            tracked: Cell::new(None),
        }
    }

    /// Offset of its IPv4 header.
    #[inline(always)]
    pub(super) fn l3(&self) -> usize {
        self.l2.l3_offset
    }

    /// Whether it came out of a VXLAN tunnel.
    #[inline(always)]
    pub(super) fn decapsulated(&self) -> bool {
        self.rx_tunnel.is_some()
    }
}
