//! `[overlay]` and `[[nodes]]` of the node configuration, validated into an
//! [`Overlay`].

use core::net::Ipv4Addr;

use serde::Deserialize;

use super::{ConfigError, Ipv4Cidr, L3Interface, NodeConfig, PortSpec, invalid};
use crate::overlay::{OUTER_LEN, Overlay, Tunnel, TunnelTable, default_vtep_mac};
use crate::packet::L3If;
use crate::routes::RouteTable;
use crate::wire::MacAddr;
use crate::wire::vxlan::{MAX_VNI, VXLAN_PORT};

/// `[overlay]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySection {
    /// VXLAN Network Identifier, 1 to 16777215. Default: the VNI the nodes
    /// are registered with, else 1 (flannel's default).
    #[serde(default = "default_vni")]
    pub vni: u32,
    /// UDP destination port. Default: 4789 (IANA).
    #[serde(default = "default_udp_port")]
    pub udp_port: u16,
    /// Compute the outer UDP checksum. Default: false (0, as Linux vxlan does for IPv4).
    #[serde(default)]
    pub outer_udp_checksum: bool,
    /// Set DF on outer packets. Default: false (Linux vxlan's default).
    #[serde(default)]
    pub df: bool,
    /// Our VTEP MAC. Default: `02:56` followed by the node IP's bytes.
    pub vtep_mac: Option<MacAddr>,
}

fn default_vni() -> u32 {
    1
}
fn default_udp_port() -> u16 {
    VXLAN_PORT
}

impl Default for OverlaySection {
    fn default() -> Self {
        OverlaySection {
            vni: default_vni(),
            udp_port: default_udp_port(),
            outer_udp_checksum: false,
            df: false,
            vtep_mac: None,
        }
    }
}

/// `[[nodes]]`: another node of the cluster.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteNodeSection {
    /// Node name.
    pub name: String,
    /// Its address on the underlay.
    pub node_ip: Ipv4Addr,
    /// The pod CIDR it owns.
    pub pod_cidr: Ipv4Cidr,
    /// Its VTEP MAC. Default: `02:56` followed by its node IP's bytes.
    pub vtep_mac: Option<MacAddr>,
    /// Its VNI, if known; must equal `overlay.vni`.
    pub vni: Option<u32>,
}

/// Validates the overlay of `config`: `None` when it has neither
/// `[overlay]` nor `[[nodes]]`.
pub fn build(
    config: &NodeConfig,
    ports: &[PortSpec],
    gateway: &L3Interface,
    uplink: Option<&(crate::packet::PortId, L3Interface)>,
    routes: &RouteTable,
) -> Result<Option<Overlay>, ConfigError> {
    if config.overlay.is_none() && config.nodes.is_empty() {
        return Ok(None);
    }
    let mut section = config.overlay.clone().unwrap_or_default();
    if config.overlay.is_none() {
        // No [overlay]: the VNI is the one the (API's) nodes are registered with.
        section.vni = config
            .nodes
            .iter()
            .find_map(|n| n.vni)
            .unwrap_or(section.vni);
    }
    let Some((uplink_port, uplink)) = uplink else {
        if config.overlay.is_some() {
            return Err(invalid(
                "overlay",
                "[overlay]",
                "the overlay needs an [uplink]",
            ));
        }
        // Nodes alone (from the API) are kept; they become tunnels once
        // this node has an uplink.
        return Ok(None);
    };
    if !(1..=MAX_VNI).contains(&section.vni) {
        return Err(invalid("overlay.vni", section.vni, "must be 1 to 16777215"));
    }
    if section.udp_port == 0 {
        return Err(invalid("overlay.udp_port", 0, "must be 1 to 65535"));
    }
    let node_ip = uplink.address.addr;
    let vtep_mac = section
        .vtep_mac
        .unwrap_or_else(|| default_vtep_mac(node_ip));
    if !vtep_mac.is_unicast() {
        return Err(invalid(
            "overlay.vtep_mac",
            vtep_mac,
            "must be a unicast, non-zero MAC",
        ));
    }
    let uplink_mtu = ports
        .iter()
        .find(|p| p.id == *uplink_port)
        .map_or(1500, |p| p.mtu);
    let inner_mtu = uplink_mtu.saturating_sub(OUTER_LEN as u16);
    let mut tunnels: Vec<Tunnel> = Vec::with_capacity(config.nodes.len());
    for (i, n) in config.nodes.iter().enumerate() {
        tunnels.push(build_node(
            i, n, &section, node_ip, gateway, routes, &tunnels,
        )?);
    }
    Ok(Some(Overlay {
        vni: section.vni,
        udp_port: section.udp_port,
        outer_udp_checksum: section.outer_udp_checksum,
        df: section.df,
        node_ip,
        vtep_mac,
        uplink_mtu,
        inner_mtu,
        tunnels: TunnelTable::new(tunnels),
    }))
}

fn build_node(
    i: usize,
    n: &RemoteNodeSection,
    section: &OverlaySection,
    node_ip: Ipv4Addr,
    gateway: &L3Interface,
    routes: &RouteTable,
    earlier: &[Tunnel],
) -> Result<Tunnel, ConfigError> {
    let field = |f: &str| format!("nodes[{i}].{f}");
    if n.name.is_empty() || n.name.len() > 253 {
        let value = format!("{:?}", n.name);
        return Err(invalid(field("name"), value, "must be 1 to 253 characters"));
    }
    if earlier.iter().any(|t| t.name == n.name) {
        return Err(invalid(field("name"), &n.name, "duplicate node name"));
    }
    let ip = n.node_ip;
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Err(invalid(field("node_ip"), ip, "must be a unicast address"));
    }
    if ip == node_ip {
        return Err(invalid(field("node_ip"), ip, "is this node's own address"));
    }
    if let Some(t) = earlier.iter().find(|t| t.node_ip == ip) {
        let reason = format!("already node {}", t.name);
        return Err(invalid(field("node_ip"), ip, reason));
    }
    let outer_next_hop = match routes.next_hop(ip) {
        Some(nh) if nh.iface == L3If::Uplink => nh.addr,
        _ => return Err(invalid(field("node_ip"), ip, "not reachable by the uplink")),
    };
    let cidr = n.pod_cidr;
    if cidr.prefix_len == 0 || cidr.prefix_len > 30 {
        return Err(invalid(field("pod_cidr"), cidr, "prefix must be /1 to /30"));
    }
    let overlap = |a: &Ipv4Cidr, b: &Ipv4Cidr| a.contains(b.network()) || b.contains(a.network());
    if overlap(&cidr, &gateway.address) {
        let reason = format!("overlaps this node's pod subnet {}", gateway.address);
        return Err(invalid(field("pod_cidr"), cidr, reason));
    }
    if let Some(t) = earlier.iter().find(|t| overlap(&t.pod_cidr, &cidr)) {
        let reason = format!("overlaps node {}'s {}", t.name, t.pod_cidr);
        return Err(invalid(field("pod_cidr"), cidr, reason));
    }
    let vtep_mac = n.vtep_mac.unwrap_or_else(|| default_vtep_mac(ip));
    if !vtep_mac.is_unicast() {
        return Err(invalid(
            field("vtep_mac"),
            vtep_mac,
            "must be a unicast, non-zero MAC",
        ));
    }
    if let Some(vni) = n.vni.filter(|v| *v != section.vni) {
        let reason = format!("this node's overlay uses VNI {}", section.vni);
        return Err(invalid(field("vni"), vni, reason));
    }
    Ok(Tunnel {
        name: n.name.clone(),
        node_ip: ip,
        pod_cidr: Ipv4Cidr {
            addr: cidr.network(),
            prefix_len: cidr.prefix_len,
        },
        vtep_mac,
        outer_next_hop,
    })
}
