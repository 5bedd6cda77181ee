//! The NAT stage: ClusterIP and NodePort DNAT, hairpin and masquerade
//! SNAT, with connection tracking shared by all workers — what kube-proxy's
//! `KUBE-SERVICES → KUBE-SVC → KUBE-SEP → DNAT` chains, `KUBE-MARK-MASQ`
//! and `nf_conntrack` do on a classic node, in the pipeline.
//!
//! Where it runs: for IPv4 routed by the gateway, after the header checks
//! and before the local-address check and the route lookup (so replies to
//! the node's own addresses — masquerade, hairpin — are translated first,
//! and a DNATed packet is routed to its endpoint with TTL − 1); and for
//! IPv4 switched at L2 between pods, where an endpoint answers an on-link
//! client directly (the br_netfilter case): a reply of a tracked flow is
//! translated back and leaves with the gateway's MAC, as if routed. When
//! the table is empty, both cost one atomic load.
//!
//! What is tracked: connections to services and masqueraded connections,
//! not plain pod-to-pod or routed traffic (which needs no translation).
//! Every TCP segment of a tracked connection goes through the state
//! machine; invalid and out-of-window segments are dropped and counted
//! (`conntrack_invalid`), like Linux with `nf_conntrack_tcp_be_liberal=0`
//! plus kube-proxy's `--ctstate INVALID -j DROP`. A new connection to a
//! service without a ready endpoint is refused (TCP RST, else ICMP port
//! unreachable), an ICMP echo to a ClusterIP with endpoints is answered by
//! the gateway (as IPVS mode does). Entries remember the snapshot
//! generation they were last checked against; when it moved, the next
//! packet of the original direction re-checks that the endpoint is still
//! in its service — a flow pinned to a removed endpoint is re-resolved
//! (UDP, ICMP, a TCP SYN) or reset (other TCP), without a flush.
//!
//! # Both directions on any worker: one shared, sharded table
//!
//! The kernel spreads a port's flows over the workers' queues by a hash
//! that knows nothing of our NAT, so a flow's two directions may reach
//! different workers. The options: per-worker tables with steering of
//! the reply (needs a hand-off queue between workers: a copy and a hop per
//! reply packet, and reordering), or one table all workers share. Here:
//! [`SharedConntrack`], up to 64 shards, each a `std::sync::Mutex` over a
//! [`ConntrackTable`](crate::conntrack::ConntrackTable) (std's mutex is a
//! futex: an uncontended lock/unlock is two atomic operations, the same as
//! `parking_lot`'s). An entry lives in the shard of its *meeting tuple*, the
//! (address, port) found in both keys (see [`shared`]); a packet probes the
//! shard of its source, then of its destination. Locks are held for one
//! lookup and update; with 64 shards two workers meet on one only by
//! chance. Expiry runs incrementally: each batch collects one shard (round
//! robin, `try_lock`, a small budget). Figures (1 vs 2 threads) are in
//! `benches/README.md`.
//!
//! # Established flows: the pipeline's flow cache
//!
//! Once a routed packet found its flow tracked, the worker's flow cache
//! (`pipeline/flow_cache.rs`) remembers the entry, its rewrite and where
//! the packet went; the flow's next packets come to
//! `NatStage::translate_cached`, which checks under the shard lock that
//! the entry is still this flow's (same key, rewrite and services
//! generation, not expired), runs the TCP state machine and rewrites the
//! packet, TTL included, in one checksum update. Anything else takes
//! [`NatStage::routed`].
#![forbid(unsafe_code)]

pub mod affinity;
pub mod shared;
pub mod stage;
pub mod state;

mod icmp_error;
mod masquerade;
mod parse;
mod reject;
mod rewrite;

pub use affinity::AffinityTable;
pub use parse::{flow_of, is_tcp_syn, l4_flow, prefetch_key};
pub use shared::{
    ConntrackFilter, ConntrackRecord, Found, SharedConntrack, clock_origin, monotonic_ns,
};
pub(crate) use stage::l4_sum;
pub use stage::{
    CachedTranslation, NatAction, NatStage, TrackedFlow, prefetch_new_flows, prefetch_service_slots,
};

#[cfg(test)]
mod tests;
