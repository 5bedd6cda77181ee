//! The tunnel table: remote pod CIDR → node, by longest prefix; node IP →
//! node for decapsulation. The LPM is the router's own [`RouteTable`].

use core::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::packet::L3If;
use crate::routes::{Route, RouteTable};
use crate::wire::Ipv4Cidr;
use crate::wire::MacAddr;

/// A remote node reachable through a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// Node name.
    pub name: String,
    /// Its node IP: the outer destination.
    pub node_ip: Ipv4Addr,
    /// The pod CIDR it owns (network address).
    pub pod_cidr: Ipv4Cidr,
    /// Its VTEP MAC: the destination of inner frames.
    pub vtep_mac: MacAddr,
    /// Where outer packets go first: the node IP itself when it is on the
    /// uplink subnet, else the uplink route's gateway.
    pub outer_next_hop: Ipv4Addr,
}

/// Index of a tunnel in its [`TunnelTable`].
pub type TunnelId = u16;

/// Immutable tunnel table.
#[derive(Debug, Clone, Default)]
pub struct TunnelTable {
    tunnels: Vec<Tunnel>,
    /// Pod CIDRs as routes whose `via` is the node IP.
    lpm: RouteTable,
    by_node_ip: HashMap<u32, TunnelId, foldhash::fast::FixedState>,
}

impl TunnelTable {
    /// Builds the table; callers have checked that CIDRs and node IPs are unique.
    pub fn new(tunnels: Vec<Tunnel>) -> TunnelTable {
        let lpm = RouteTable::new(
            tunnels
                .iter()
                .map(|t| Route {
                    prefix: t.pod_cidr,
                    via: Some(t.node_ip),
                    iface: L3If::Uplink,
                })
                .collect(),
        );
        let by_node_ip = tunnels
            .iter()
            .enumerate()
            .map(|(i, t)| (u32::from(t.node_ip), i as TunnelId))
            .collect();
        TunnelTable {
            tunnels,
            lpm,
            by_node_ip,
        }
    }

    /// The tunnel whose pod CIDR covers `dst`, with that CIDR's prefix length.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<(u8, TunnelId)> {
        let route = self.lpm.lookup(dst)?;
        let id = self.by_node_ip(route.via?)?;
        Some((route.prefix.prefix_len, id))
    }

    /// The tunnel of the node with this IP.
    #[inline]
    pub fn by_node_ip(&self, node_ip: Ipv4Addr) -> Option<TunnelId> {
        self.by_node_ip.get(&u32::from(node_ip)).copied()
    }

    /// Tunnel `id`.
    #[inline]
    pub fn get(&self, id: TunnelId) -> Option<&Tunnel> {
        self.tunnels.get(usize::from(id))
    }

    /// All tunnels, in configuration order.
    pub fn tunnels(&self) -> &[Tunnel] {
        &self.tunnels
    }

    /// True when there is no remote node.
    pub fn is_empty(&self) -> bool {
        self.tunnels.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(name: &str, ip: [u8; 4], cidr: &str) -> Tunnel {
        Tunnel {
            name: name.into(),
            node_ip: ip.into(),
            pod_cidr: cidr.parse().unwrap(),
            vtep_mac: crate::overlay::default_vtep_mac(ip.into()),
            outer_next_hop: ip.into(),
        }
    }

    #[test]
    fn lookup_by_cidr_and_node_ip() {
        let t = TunnelTable::new(vec![
            tunnel("b", [192, 168, 100, 2], "10.244.2.0/24"),
            tunnel("c", [192, 168, 100, 3], "10.244.3.0/24"),
            tunnel("big", [192, 168, 100, 4], "10.245.0.0/16"),
        ]);
        assert_eq!(t.lookup([10, 244, 3, 9].into()), Some((24, 1)));
        assert_eq!(t.lookup([10, 245, 77, 1].into()), Some((16, 2)));
        assert_eq!(t.lookup([10, 244, 4, 1].into()), None);
        assert_eq!(t.by_node_ip([192, 168, 100, 2].into()), Some(0));
        assert_eq!(t.by_node_ip([192, 168, 100, 9].into()), None);
        assert_eq!(t.get(1).unwrap().name, "c");
        assert!(
            TunnelTable::default()
                .lookup([10, 0, 0, 1].into())
                .is_none()
        );
    }
}
