//! IPv6 from pods, until podswitch forwards IPv6: the RA guard and the
//! source check (issue 25, A8; the CVE-2020-10749 class).
//!
//! **RA guard** (RFC 6105), on every pod port: a pod is never a router, so
//! Router Advertisements, Redirects and the other messages only routers
//! send (multicast listener queries, router renumbering, multicast router
//! advertisements and terminations) are dropped, each kind under its own
//! reason. The guard walks the extension headers to the upper layer, so an
//! advertisement behind Hop-by-Hop, Destination Options or a Fragment
//! header is found too; a packet whose chain cannot be walked, or a first
//! fragment that does not hold the whole ICMPv6 header (RFC 7112, the
//! evasion RFC 7113 closes), is dropped as `ipv6_malformed`. Later
//! fragments carry no upper-layer header and pass: without their first
//! fragment they never reassemble.
//!
//! **Source check**, on a port with a `mac`: pods have no IPv6 addresses
//! but their link-local one, and that is the address modified EUI-64 forms
//! from the port's MAC (`fe80::` + MAC with `ff:fe` in the middle). Linux
//! forms it so with `addr_gen_mode` `eui64`, the default, and podswitch
//! sets that mode on the pod TAPs it places, so a pod's kernel uses it
//! whatever the pod namespace's defaults are. An address from
//! `stable-privacy` or `random` cannot be told from a forged one (it is a
//! hash of a secret the pod keeps); learning the first address a port
//! uses instead would let a pod that speaks first claim another's. The
//! unspecified source `::` is allowed only where a host without an address
//! uses it (RFC 4862 §5.4, RFC 3590): duplicate address detection (a
//! Neighbor Solicitation for the pod's own address), Router Solicitations
//! and multicast listener reports. Neighbor Discovery is held to the same
//! addresses as ARP is for IPv4: a Neighbor Advertisement may only
//! advertise the pod's own address, and link-layer address options must
//! carry the port's MAC.

use core::net::Ipv6Addr;

use crate::config::PortSpec;
use crate::packet::DropReason;
use crate::wire::icmpv6::{self, ND_OPTION_SOURCE_LL_ADDR, ND_OPTION_TARGET_LL_ADDR};
use crate::wire::ipv6::link_local_eui64;
use crate::wire::{Icmpv6Packet, Icmpv6Type, IpProtocol, Ipv6Packet, MacAddr};

/// Checks the IPv6 packet `l3` from pod port `port`.
pub(super) fn check(port: &PortSpec, l3: &[u8]) -> Result<(), DropReason> {
    let Ok(ip) = Ipv6Packet::new_checked(l3) else {
        return Err(DropReason::Ipv6Malformed);
    };
    let Ok(upper) = ip.upper_layer() else {
        return Err(DropReason::Ipv6Malformed);
    };
    let later_fragment = upper.fragment.is_some_and(|f| f.offset != 0);
    let icmp = if upper.protocol == IpProtocol::ICMPV6 && !later_fragment {
        let Ok(icmp) = Icmpv6Packet::new_checked(ip.upper_layer_payload(&upper)) else {
            return Err(DropReason::Ipv6Malformed);
        };
        router_only(icmp.msg_type())?;
        Some(icmp)
    } else {
        None
    };
    let Some(mac) = port.mac else {
        return Ok(());
    };
    let own = link_local_eui64(mac);
    let src = ip.src_addr();
    let Some(icmp) = icmp else {
        return if src == own {
            Ok(())
        } else {
            Err(DropReason::SpoofedSrcIpv6)
        };
    };
    if src != own && !(src.is_unspecified() && unspecified_allowed(&icmp, own)) {
        return Err(DropReason::SpoofedSrcIpv6);
    }
    neighbour_discovery(&icmp, mac, own)
}

/// The RA guard: `Err` for what only routers send, by kind.
fn router_only(kind: Icmpv6Type) -> Result<(), DropReason> {
    match kind {
        Icmpv6Type::ROUTER_ADVERT => Err(DropReason::RaGuardRouterAdvert),
        Icmpv6Type::REDIRECT => Err(DropReason::RaGuardRedirect),
        Icmpv6Type::MLD_QUERY
        | Icmpv6Type::ROUTER_RENUMBERING
        | Icmpv6Type::MULTICAST_ROUTER_ADVERT
        | Icmpv6Type::MULTICAST_ROUTER_TERMINATION => Err(DropReason::RaGuardRouterOnly),
        _ => Ok(()),
    }
}

/// Whether `icmp` may come from `::`: what a host sends before it has an
/// address (duplicate address detection of `own`, router solicitation,
/// multicast listener reports).
fn unspecified_allowed(icmp: &Icmpv6Packet<&[u8]>, own: Ipv6Addr) -> bool {
    match icmp.msg_type() {
        Icmpv6Type::NEIGHBOR_SOLICIT => icmp.target_addr() == Some(own),
        Icmpv6Type::ROUTER_SOLICIT | Icmpv6Type::MLD_REPORT | Icmpv6Type::MLD_V2_REPORT => true,
        _ => false,
    }
}

/// Neighbor Discovery from the pod (a message of another type passes): an
/// advertisement is of its own address, link-layer options carry its MAC.
fn neighbour_discovery(
    icmp: &Icmpv6Packet<&[u8]>,
    mac: MacAddr,
    own: Ipv6Addr,
) -> Result<(), DropReason> {
    let kind = icmp.msg_type();
    let Some(at) = kind.nd_options_offset() else {
        return Ok(());
    };
    if kind == Icmpv6Type::NEIGHBOR_ADVERT && icmp.target_addr() != Some(own) {
        return Err(DropReason::SpoofedSrcIpv6);
    }
    let options = icmp.clone().into_inner().get(at..).unwrap_or_default();
    for option in icmpv6::nd_options(options) {
        let Ok((kind, value)) = option else {
            return Err(DropReason::Ipv6Malformed);
        };
        let link_layer = kind == ND_OPTION_SOURCE_LL_ADDR || kind == ND_OPTION_TARGET_LL_ADDR;
        if link_layer && value.get(..6) != Some(&mac.octets()[..]) {
            return Err(DropReason::SpoofedSrcMac);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
