//! What the pod's network namespace holds: whether an interface exists,
//! and for CHECK its MAC, its local IPv4 addresses and the default route.
//!
//! Links are read over rtnetlink (the dataplane's [`Rtnetlink`]); addresses
//! and routes from `/proc/thread-self/net/{fib_trie,route}` read by a thread
//! inside the namespace, which needs no address or route dump code and no
//! `unsafe` here.

use std::net::Ipv4Addr;
use std::path::Path;

use podswitch_dataplane::io::netlink::Rtnetlink;
use podswitch_dataplane::io::netns::run_in_netns;

use crate::types::CniError;

/// The pod side of one attachment, as found in its namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// The interface's MAC (`aa:bb:…`), `None` when it does not exist.
    pub mac: Option<String>,
    /// Local IPv4 addresses of the namespace.
    pub local_v4: Vec<Ipv4Addr>,
    /// IPv4 default routes: (interface, gateway).
    pub default_routes: Vec<(String, Ipv4Addr)>,
}

/// Whether `ifname` exists in the namespace at `netns`.
pub fn interface_exists(netns: &str, ifname: &str) -> Result<bool, CniError> {
    Ok(inspect(netns, ifname)?.mac.is_some())
}

/// Reads the namespace at `netns`.
pub fn inspect(netns: &str, ifname: &str) -> Result<PodView, CniError> {
    let name = ifname.to_string();
    let view = run_in_netns(Path::new(netns), move || -> Result<PodView, String> {
        let mut netlink = Rtnetlink::open().map_err(|e| format!("rtnetlink: {e}"))?;
        let mac = match netlink.link_by_name(&name) {
            Ok(link) => Some(link.mac.to_string()),
            Err(e) if e.is_no_such_link() => None,
            Err(e) => return Err(format!("look up {name}: {e}")),
        };
        let fib = std::fs::read_to_string("/proc/thread-self/net/fib_trie").unwrap_or_default();
        let routes = std::fs::read_to_string("/proc/thread-self/net/route").unwrap_or_default();
        Ok(PodView {
            mac,
            local_v4: local_addresses(&fib),
            default_routes: default_routes(&routes),
        })
    })
    .map_err(|e| CniError::env(format!("CNI_NETNS = {netns}: {e}")))?;
    view.map_err(|e| CniError::io(format!("in {netns}: {e}")))
}

/// `/32 host LOCAL` leaves of `fib_trie`: the namespace's own addresses.
fn local_addresses(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut current = None;
    let mut out = Vec::new();
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            current = addr.parse().ok();
        } else if line.starts_with("/32 host LOCAL")
            && let Some(addr) = current
            && !out.contains(&addr)
        {
            out.push(addr);
        }
    }
    out
}

/// Default routes of `/proc/net/route` (hex fields in host byte order).
fn default_routes(route: &str) -> Vec<(String, Ipv4Addr)> {
    route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (iface, dst, gw, mask) = (
                fields.first()?,
                fields.get(1)?,
                fields.get(2)?,
                fields.get(7)?,
            );
            if *dst != "00000000" || *mask != "00000000" {
                return None;
            }
            let gw = u32::from_str_radix(gw, 16).ok()?;
            Some((iface.to_string(), Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fib_trie_and_route_fixtures() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     |-- 10.244.1.0\n        /24 link UNICAST\n     |-- 10.244.1.5\n        /32 host LOCAL\nLocal:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.244.1.5\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
        assert_eq!(
            local_addresses(fib),
            vec![Ipv4Addr::new(10, 244, 1, 5), Ipv4Addr::new(127, 0, 0, 1)]
        );
        let gw = u32::from_ne_bytes([10, 244, 1, 1]);
        let route = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t{gw:08X}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0001F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        );
        assert_eq!(
            default_routes(&route),
            vec![("eth0".to_string(), Ipv4Addr::new(10, 244, 1, 1))]
        );
    }
}
