//! The node's own traffic.
//!
//! On a real node the uplink is the NIC that carries the node IP: the
//! kernel keeps that address, its ARP and its own connections, while
//! podswitch reads the same frames (AF_PACKET sees everything) and takes
//! only what is its own — VXLAN, NodePorts, replies to the flows it
//! masqueraded, and packets for pods. The daemon makes the kernel ignore
//! exactly those (an nftables ingress filter on the NIC), and this stage
//! makes podswitch ignore the rest, so that every packet is answered once.
//!
//! The node's stack reaches the pods through a port of the bridge domain
//! (the host's TAP): packets from pods for the node IP are routed to it.

use core::net::Ipv4Addr;

use super::Pipeline;
use crate::packet::L3If;
use crate::routes::NextHop;

/// Where a routed packet goes on a node whose uplink is shared with the
/// node's network stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostRoute {
    /// Routed by podswitch as usual.
    Ours,
    /// To the node's own address, from a pod: to the host's port.
    ToHost(NextHop),
    /// From the wire, for the node's own stack, which sees it too.
    HostOwned,
}

impl Pipeline {
    /// Whether `ip` on `iface` is the host's address (which may be the
    /// pod subnet's network address, as flannel's `flannel.1` has it).
    pub(super) fn is_host_address(&self, iface: L3If, ip: Ipv4Addr) -> bool {
        iface == L3If::Bridge && self.snapshot.host.is_some_and(|h| h.address == ip)
    }

    /// Where a packet for `dst` (after NAT) that `iface` received goes.
    #[inline]
    pub(super) fn host_route(&self, dst: Ipv4Addr, iface: L3If) -> HostRoute {
        let snapshot = &self.snapshot;
        if !snapshot.uplink_shared {
            return HostRoute::Ours;
        }
        let Some((_, uplink)) = snapshot.uplink else {
            return HostRoute::Ours;
        };
        if iface == L3If::Uplink {
            // Ours from the wire: this node's pods (a NodePort's endpoint,
            // a masqueraded flow's pod after NAT) and other nodes' pods (a
            // NodePort's endpoint elsewhere).
            let ours = snapshot.gateway.address.contains(dst) || self.tunnel_route(dst).is_some();
            return if ours {
                HostRoute::Ours
            } else {
                HostRoute::HostOwned
            };
        }
        match snapshot.host {
            Some(host) if dst == uplink.address.addr => HostRoute::ToHost(NextHop {
                iface: L3If::Bridge,
                addr: host.address,
            }),
            _ => HostRoute::Ours,
        }
    }
}
