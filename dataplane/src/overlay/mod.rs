//! VXLAN overlay between nodes (RFC 7348), the way Flannel's `vxlan`
//! backend does it.
//!
//! Every node owns a pod CIDR and has a node IP on the uplink. A packet the
//! router sends toward another node's pod CIDR is **encapsulated**
//! ([`encap`]): outer Ethernet / IPv4 / UDP 4789 / VXLAN with our VNI, to
//! that node's IP, written into the frame's headroom (no copy, no
//! allocation). The outer UDP source port is a hash of the inner flow (ECMP
//! entropy, like Linux's `udp_flow_src_port`); the outer next hop is
//! resolved by ARP on the uplink through the ordinary neighbour table. A
//! VXLAN packet arriving on the uplink for our node IP and UDP port (its
//! outer fragments first reassembled, when a small underlay MTU cut it) is
//! **decapsulated** ([`decap`]) after its VNI and its source node are
//! checked, and the inner frame is routed to the local pod as if it had
//! come from the bridge domain — never back into a tunnel (split horizon).
//!
//! **Inner Ethernet.** Like flannel (and so interoperable with a Linux
//! `vxlan` device + bridge): every node has a VTEP MAC; an inner frame goes
//! from our VTEP MAC to the remote node's VTEP MAC. A node's VTEP MAC is
//! configured (`vtep_mac`) or derived from its node IP as
//! `02:56:a:b:c:d` ([`default_vtep_mac`]), so podswitch nodes need no MAC
//! configuration among themselves; a kernel node is given the MAC with
//! `ip neigh add <our pod CIDR's first address> lladdr <MAC> dev vxlan0`.
//!
//! **MTU.** Pods default to the uplink MTU − 50. A packet (or a GSO
//! segment) larger than that with DF set gets ICMP "fragmentation needed"
//! with next-hop MTU = uplink MTU − 50 (counted as `vxlan_too_big`); one
//! without DF is encapsulated as a template ([`encap::encapsulate_to_fragment`])
//! and cut into inner IPv4 fragments that fit, each with its own outer
//! headers, when it is sent ([`segment_encapsulated`]). GSO super-frames
//! are encapsulated once as a template. Where the kernel has UDP-tunnel GSO
//! in tun (Linux 6.17+), the worker sends such a template whole, as a
//! kernel `vxlan` device hands one to its underlay: [`whole_super_frame`]
//! finishes its outer headers for the whole frame and leaves the inner
//! checksum partial, and one write into the overlay's transmit TAP
//! (`crate::io::tap::tunnel_tx`, with a `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`
//! vnet header) sends it out of the uplink, where a veth carries it whole
//! and a NIC or the kernel segments it. AF_PACKET's send path takes only the
//! legacy vnet header, which cannot say "tunnel", so without that TAP (an
//! older kernel, `--tunnel-gso off`) the worker cuts the template into
//! segments, each with its own outer headers ([`segment_encapsulated`]).
//! On the
//! receiving side, consecutive TCP segments of a flow decapsulated in one
//! batch are merged back into one GSO frame ([`coalesce`]) before they go to
//! the pod, and a tunnel GSO super-frame from a kernel peer
//! (`crate::io::gso::tunnel`) is decapsulated whole into one.
#![forbid(unsafe_code)]

pub mod coalesce;
pub mod decap;
pub mod encap;
mod table;
#[cfg(test)]
mod tests;

pub use encap::{EncapParams, WholeSuperFrame, segment_encapsulated, whole_super_frame};
pub use table::{Tunnel, TunnelId, TunnelTable};

use core::net::Ipv4Addr;

use crate::wire::MacAddr;

/// Bytes of outer headers: Ethernet, IPv4 without options, UDP, VXLAN.
pub const OUTER_LEN: usize = 14 + 20 + 8 + 8;

/// The default VTEP MAC of the node with `node_ip`: `02:56` and the address.
pub fn default_vtep_mac(node_ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = node_ip.octets();
    MacAddr([0x02, 0x56, a, b, c, d])
}

/// The overlay as the pipeline runs it (part of the snapshot).
#[derive(Debug, Clone)]
pub struct Overlay {
    /// Our VNI.
    pub vni: u32,
    /// The UDP destination port of VXLAN packets (sent and accepted).
    pub udp_port: u16,
    /// Compute the outer UDP checksum (else 0, allowed for IPv4).
    pub outer_udp_checksum: bool,
    /// Set DF on the outer IPv4 header.
    pub df: bool,
    /// Our node IP (the uplink address): the outer source.
    pub node_ip: Ipv4Addr,
    /// Our VTEP MAC: the source of inner frames we send.
    pub vtep_mac: MacAddr,
    /// The uplink's MTU.
    pub uplink_mtu: u16,
    /// The largest inner IPv4 packet a tunnel carries: uplink MTU − 50.
    pub inner_mtu: u16,
    /// Remote nodes: pod CIDR → node.
    pub tunnels: TunnelTable,
}
