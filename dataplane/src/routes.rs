//! Longest-prefix-match IPv4 route table.
//!
//! One hash map per prefix length present, searched from the longest
//! length down: a node's table holds a handful of lengths (/32 hosts, the
//! pod /24s, the uplink subnet, a default route), so a lookup is a few
//! hash probes. The table is immutable and lives in the config snapshot.

use core::net::Ipv4Addr;

use hashbrown::HashMap;

use crate::packet::L3If;
use crate::wire::Ipv4Cidr;

/// One route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (host bits clear except for connected routes).
    pub prefix: Ipv4Cidr,
    /// Next hop; `None` for an on-link (connected) route.
    pub via: Option<Ipv4Addr>,
    /// Outgoing L3 interface.
    pub iface: L3If,
}

/// The result of a lookup: where to send a packet for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextHop {
    /// Outgoing L3 interface.
    pub iface: L3If,
    /// The address to resolve with ARP: the gateway of the route, or the
    /// destination itself for an on-link route.
    pub addr: Ipv4Addr,
}

/// An immutable LPM table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// (prefix length, mask, network → index into `routes`), longest first.
    levels: Vec<(u8, u32, HashMap<u32, usize, foldhash::fast::FixedState>)>,
}

impl RouteTable {
    /// Builds the table; a later duplicate of a prefix replaces an earlier one.
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut levels: Vec<(u8, u32, HashMap<u32, usize, foldhash::fast::FixedState>)> =
            Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let len = r.prefix.prefix_len;
            let mask = r.prefix.mask();
            let pos = match levels.iter().position(|l| l.0 == len) {
                Some(p) => p,
                None => {
                    levels.push((
                        len,
                        mask,
                        HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0)),
                    ));
                    levels.len() - 1
                }
            };
            levels[pos].2.insert(u32::from(r.prefix.addr) & mask, i);
        }
        levels.sort_by_key(|l| core::cmp::Reverse(l.0));
        RouteTable { routes, levels }
    }

    /// The most specific route covering `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<&Route> {
        let d = u32::from(dst);
        for (_, mask, map) in &self.levels {
            if let Some(&i) = map.get(&(d & mask)) {
                return self.routes.get(i);
            }
        }
        None
    }

    /// Where to send a packet for `dst`.
    #[inline]
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<NextHop> {
        self.lookup(dst).map(|r| NextHop {
            iface: r.iface,
            addr: r.via.unwrap_or(dst),
        })
    }

    /// All routes, in configuration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(p: &str, via: Option<[u8; 4]>, iface: L3If) -> Route {
        Route {
            prefix: p.parse().unwrap(),
            via: via.map(Ipv4Addr::from),
            iface,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = RouteTable::new(vec![
            route("10.244.1.1/24", None, L3If::Bridge),
            route("192.168.100.1/24", None, L3If::Uplink),
            route("0.0.0.0/0", Some([192, 168, 100, 254]), L3If::Uplink),
            route("10.244.0.0/16", Some([192, 168, 100, 2]), L3If::Uplink),
            route("10.244.7.9/32", Some([10, 244, 1, 50]), L3If::Bridge),
        ]);
        let nh = |a: [u8; 4]| t.next_hop(Ipv4Addr::from(a)).unwrap();
        assert_eq!(
            nh([10, 244, 1, 9]),
            NextHop {
                iface: L3If::Bridge,
                addr: Ipv4Addr::new(10, 244, 1, 9)
            }
        );
        assert_eq!(nh([10, 244, 2, 9]).addr, Ipv4Addr::new(192, 168, 100, 2));
        assert_eq!(nh([10, 244, 7, 9]).addr, Ipv4Addr::new(10, 244, 1, 50));
        assert_eq!(nh([8, 8, 8, 8]).addr, Ipv4Addr::new(192, 168, 100, 254));
        assert_eq!(nh([192, 168, 100, 7]).iface, L3If::Uplink);
    }

    #[test]
    fn no_default_no_route() {
        let t = RouteTable::new(vec![route("10.244.1.1/24", None, L3If::Bridge)]);
        assert!(t.lookup(Ipv4Addr::new(10, 244, 2, 1)).is_none());
        assert!(
            RouteTable::default()
                .lookup(Ipv4Addr::new(1, 2, 3, 4))
                .is_none()
        );
    }
}
