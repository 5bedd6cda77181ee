//! Placing a TAP in a pod's netns as its interface (`eth0`), and getting
//! it back after a daemon restart.
//!
//! The dataplane keeps the queue fds; the device itself lives in the pod:
//! renamed, addressed and routed there like a veth end would be. Netlink
//! calls for the pod side run on a thread inside the pod netns
//! ([`run_in_netns`]), because an rtnetlink socket talks to the netns it
//! was opened in.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;

use super::{TapError, TapOptions, TapQueue, attach_tap, create_tap};
use crate::io::netlink::{NetlinkError, Rtnetlink, check_ifname};
use crate::io::netns::{open_netns, run_in_netns};
use crate::wire::ethernet::MacAddr;

/// Where and how a pod's TAP appears inside the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPlacement {
    /// The pod's netns (`/run/netns/NAME` or `/proc/PID/ns/net`).
    pub netns: PathBuf,
    /// Interface name inside the pod, e.g. `eth0`.
    pub ifname: String,
    /// The pod interface's MAC address.
    pub mac: MacAddr,
    /// The pod interface's MTU.
    pub mtu: u16,
    /// IPv4 addresses with prefix lengths.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// Default gateway (a `0.0.0.0/0` route; plus an on-link host route
    /// when it lies outside every address's prefix).
    pub gateway: Option<Ipv4Addr>,
    /// Further routes: destination, prefix length, optional gateway.
    pub routes: Vec<(Ipv4Addr, u8, Option<Ipv4Addr>)>,
}

/// Creates TAP `node_name` in the calling thread's (node) netns with its
/// queues, moves it into the pod, renames it to `placement.ifname` and sets
/// its MAC, MTU, addresses, routes and link state. The queues keep working
/// after the move. Fails with [`TapError::PodInterfaceExists`] if the pod
/// already has `ifname`; on any failure the device is removed.
pub fn create_pod_tap(
    node_name: &str,
    opts: &TapOptions,
    placement: &PodPlacement,
) -> Result<Vec<TapQueue>, TapError> {
    check_ifname(&placement.ifname).map_err(TapError::BadName)?;
    in_pod(placement, || {
        let mut nl = pod_netlink(placement)?;
        match nl.link_index(&placement.ifname) {
            Ok(_) => Err(TapError::PodInterfaceExists {
                netns: placement.netns.clone(),
                ifname: placement.ifname.clone(),
            }),
            Err(e) if e.is_no_such_link() => Ok(()),
            Err(source) => Err(pod_step(placement, "looking up the interface", source)),
        }
    })?;
    let queues = create_tap(node_name, opts)?;
    match move_and_configure(node_name, placement) {
        Ok(()) => Ok(queues),
        Err(e) => {
            // Without persist the device goes with its last queue, wherever it is.
            let _ = queues.first().map(|q| q.set_persist(false));
            drop(queues);
            Err(e)
        }
    }
}

/// Opens the queues of the TAP that already lives in the pod as
/// `placement.ifname` (a persistent one, after a daemon restart), from
/// inside the pod netns. Leaves its addresses, routes and link state alone;
/// `opts` sets offloads and persistence.
pub fn attach_pod_tap(
    opts: &TapOptions,
    placement: &PodPlacement,
) -> Result<Vec<TapQueue>, TapError> {
    in_pod(placement, || {
        let queues = attach_tap(&placement.ifname, opts)?;
        keep_neighbours_without_carrier(&placement.ifname);
        Ok(queues)
    })
}

/// Tells the pod's kernel to keep its neighbour entries (the gateway's
/// MAC, the other pods') while the interface has no carrier: a TAP loses
/// it whenever the daemon's queues close (a `kill -9`, a restart). By
/// default Linux flushes them then, so the pod has to ask ARP again once
/// the carrier is back, and a request sent into the dead link is repeated
/// only after a second (`retrans_time_ms`): a one-second gap measured by
/// `benches/live/restart.sh`. `arp_evict_nocarrier` and
/// `ndisc_evict_nocarrier` are Linux 5.16 and later; an older kernel (no
/// such file) keeps flushing.
fn keep_neighbours_without_carrier(ifname: &str) {
    for path in [
        format!("/proc/sys/net/ipv4/conf/{ifname}/arp_evict_nocarrier"),
        format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_evict_nocarrier"),
    ] {
        let _ = std::fs::write(path, "0");
    }
}

/// Removes the pod's TAP: clears persist through a fresh queue, then
/// deletes the link. Returns false if it was already gone; refuses to
/// delete an interface of that name that is not a TAP.
pub fn delete_pod_tap(placement: &PodPlacement) -> Result<bool, TapError> {
    in_pod(placement, || delete_tap(&placement.ifname))
}

/// Removes TAP `name` from the calling thread's netns: clears persist
/// through a fresh queue, then deletes the link. Returns false when there
/// was none; refuses to delete an interface of that name that is not a TAP.
pub fn delete_tap(name: &str) -> Result<bool, TapError> {
    let opts = TapOptions {
        queues: 1,
        offload: false,
        persist: false,
    };
    match attach_tap(name, &opts) {
        Ok(queues) => drop(queues),
        Err(TapError::NoSuchTap(_)) => return Ok(false),
        Err(e) => return Err(e),
    }
    // Queues held elsewhere keep a non-persistent device: delete it outright.
    let step = || format!("deleting TAP {name:?}");
    let mut nl = Rtnetlink::open().map_err(|source| TapError::Netlink {
        step: step(),
        source,
    })?;
    match nl.link_index(name).and_then(|index| nl.link_del(index)) {
        Err(source) if !source.is_no_such_link() => Err(TapError::Netlink {
            step: step(),
            source,
        }),
        _ => Ok(true),
    }
}

/// Makes the pod's TAP carry `placement`'s addressing: its MTU, its
/// addresses with the pod prefix (an address of the placement found with
/// another prefix is replaced) and the default route via the gateway. For a
/// change of the node's addressing, and after a re-attach (such a change may
/// have been stored, and not yet applied, when the daemon stopped). New
/// addresses go first and old ones last, so the pod keeps a route to its
/// gateway throughout. Returns whether the MTU or an address changed.
pub fn sync_pod_addressing(placement: &PodPlacement) -> Result<bool, TapError> {
    let p = placement;
    in_pod(p, || {
        let mut nl = pod_netlink(p)?;
        let step = |what: &'static str| move |source| pod_step(p, what, source);
        let link = nl
            .link_by_name(&p.ifname)
            .map_err(step("finding the interface"))?;
        let mut changed = link.mtu != u32::from(p.mtu);
        if changed {
            nl.link_set_mtu(link.index, p.mtu.into())
                .map_err(step("setting the MTU"))?;
        }
        let current = nl
            .addrs_v4(link.index)
            .map_err(step("listing the addresses"))?;
        for &(addr, prefix_len) in p.addresses.iter().filter(|a| !current.contains(a)) {
            nl.addr_add_v4(link.index, addr, prefix_len)
                .map_err(step("adding an address"))?;
            changed = true;
        }
        let default_route = |nl: &mut Rtnetlink| -> Result<(), TapError> {
            let Some(gw) = p.gateway else {
                return Ok(());
            };
            if !p.addresses.iter().any(|&(a, len)| same_prefix(a, gw, len)) {
                nl.route_replace_v4(gw, 32, None, Some(link.index))
                    .map_err(step("adding the on-link route to the gateway"))?;
            }
            nl.route_replace_v4(Ipv4Addr::UNSPECIFIED, 0, Some(gw), Some(link.index))
                .map_err(step("replacing the default route"))
        };
        default_route(&mut nl)?;
        let stale = current
            .iter()
            .filter(|a| !p.addresses.contains(a) && p.addresses.iter().any(|b| b.0 == a.0));
        for &(addr, prefix_len) in stale {
            nl.addr_del_v4(link.index, addr, prefix_len)
                .map_err(step("removing an old address"))?;
            changed = true;
        }
        if changed {
            // Removing an address may take the routes through it along.
            default_route(&mut nl)?;
        }
        Ok(changed)
    })
}

/// Moves the device out of the node netns, then configures it in the pod.
fn move_and_configure(node_name: &str, placement: &PodPlacement) -> Result<(), TapError> {
    let node_step = |what: &str, source| TapError::Netlink {
        step: format!("{what} TAP {node_name:?} in the node netns"),
        source,
    };
    let mut nl = Rtnetlink::open().map_err(|e| node_step("opening netlink for", e))?;
    let index = nl
        .link_index(node_name)
        .map_err(|e| node_step("looking up", e))?;
    let netns = open_netns(&placement.netns).map_err(|source| TapError::Netns {
        path: placement.netns.clone(),
        source,
    })?;
    nl.link_set_netns(index, netns.as_fd())
        .map_err(|e| node_step("moving to the pod netns", e))?;
    in_pod(placement, || configure_in_pod(node_name, placement))
}

/// Renames, addresses, raises and routes the freshly moved device.
fn configure_in_pod(node_name: &str, placement: &PodPlacement) -> Result<(), TapError> {
    let p = placement;
    let mut nl = pod_netlink(p)?;
    let step = |what: &'static str| move |source| pod_step(p, what, source);
    // The ifindex survives the move unless the pod already uses it.
    let index = nl
        .link_index(node_name)
        .map_err(step("finding the moved TAP"))?;
    nl.link_set_name(index, &p.ifname)
        .map_err(step("renaming"))?;
    nl.link_set_mac(index, p.mac)
        .map_err(step("setting the MAC"))?;
    nl.link_set_mtu(index, p.mtu.into())
        .map_err(step("setting the MTU"))?;
    keep_neighbours_without_carrier(&p.ifname);
    for &(addr, prefix_len) in &p.addresses {
        nl.addr_add_v4(index, addr, prefix_len)
            .map_err(step("adding an address"))?;
    }
    // Before the link comes up: the link-local address it forms is then
    // the one the IPv6 source check allows (`pipeline/antispoof/ipv6.rs`).
    // A kernel without IPv6 refuses, and has no address to check.
    let _ = nl.link_set_addr_gen_mode_eui64(index);
    // Routes through a gateway need the link up (or the kernel says ENETDOWN).
    nl.link_set_up(index)
        .map_err(step("bringing the link up"))?;
    if let Some(gw) = p.gateway {
        if !p.addresses.iter().any(|&(a, len)| same_prefix(a, gw, len)) {
            nl.route_add_v4(gw, 32, None, Some(index))
                .map_err(step("adding the on-link route to the gateway"))?;
        }
        nl.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(gw), Some(index))
            .map_err(step("adding the default route"))?;
    }
    for &(dst, prefix_len, via) in &p.routes {
        nl.route_add_v4(dst, prefix_len, via, Some(index))
            .map_err(step("adding a route"))?;
    }
    Ok(())
}

/// True when `a` and `b` share the first `prefix_len` bits.
fn same_prefix(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    (u32::from(a) ^ u32::from(b)) & mask == 0
}

/// Runs `f` inside the pod netns.
fn in_pod<T: Send>(
    placement: &PodPlacement,
    f: impl FnOnce() -> Result<T, TapError> + Send,
) -> Result<T, TapError> {
    run_in_netns(&placement.netns, f).map_err(|source| TapError::Netns {
        path: placement.netns.clone(),
        source,
    })?
}

fn pod_netlink(placement: &PodPlacement) -> Result<Rtnetlink, TapError> {
    Rtnetlink::open().map_err(|source| pod_step(placement, "opening netlink", source))
}

fn pod_step(placement: &PodPlacement, what: &str, source: NetlinkError) -> TapError {
    TapError::Netlink {
        step: format!(
            "{what} ({:?} in {})",
            placement.ifname,
            placement.netns.display()
        ),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert!(same_prefix(a, Ipv4Addr::new(10, 1, 2, 1), 24));
        assert!(!same_prefix(a, Ipv4Addr::new(10, 1, 3, 1), 24));
        assert!(same_prefix(a, Ipv4Addr::new(192, 0, 2, 1), 0));
        assert!(same_prefix(a, a, 32));
        assert!(!same_prefix(a, Ipv4Addr::new(10, 1, 2, 2), 32));
    }
}
