//! Anti-spoofing: a pod port only accepts frames from the pod's own
//! addresses, like Calico's and Cilium's per-endpoint source checks.
//!
//! When a port has a `mac`, every frame's source MAC must be it; when it
//! also has `ips`, an IPv4 packet's source and an ARP packet's sender must
//! be one of them (ARP probes with sender 0.0.0.0 are allowed, RFC 5227),
//! and the ARP sender MAC must be the port's MAC. IPv6 from any pod port
//! goes through the RA guard and, with a `mac`, the IPv6 source check
//! ([`ipv6`]). Each violation has its own drop reason.

use core::net::Ipv4Addr;

use crate::config::PortSpec;
use crate::packet::DropReason;
use crate::wire::{ArpPacket, EtherType, Ipv4Packet, L2Header};

mod ipv6;

/// True when frames of `ethertype` from `port` go through [`check`]:
/// every frame of a port with an assigned MAC, and IPv6 from every pod.
#[inline]
pub(super) fn applies(port: &PortSpec, ethertype: EtherType) -> bool {
    port.enforces_source() || (ethertype == EtherType::IPV6 && !port.is_uplink)
}

/// Checks a frame from `port` against the port's assigned addresses.
#[inline]
pub(super) fn check(port: &PortSpec, l2: &L2Header, frame: &[u8]) -> Result<(), DropReason> {
    if let Some(mac) = port.mac
        && l2.src != mac
    {
        return Err(DropReason::SpoofedSrcMac);
    }
    let l3 = frame.get(l2.l3_offset..).unwrap_or_default();
    match l2.ethertype {
        EtherType::IPV6 if !port.is_uplink => ipv6::check(port, l3),
        _ if port.ips.is_empty() => Ok(()),
        EtherType::IPV4 => {
            // A malformed header is left for the stages that parse it.
            let Ok(ip) = Ipv4Packet::new_checked(l3) else {
                return Ok(());
            };
            if port.ips.contains(&ip.src_addr()) {
                Ok(())
            } else {
                Err(DropReason::SpoofedSrcIp)
            }
        }
        EtherType::ARP => {
            let Ok(arp) = ArpPacket::new_checked(l3) else {
                return Ok(());
            };
            if port.mac.is_some_and(|mac| arp.sender_hw_addr() != mac) {
                return Err(DropReason::SpoofedSrcMac);
            }
            let sender = arp.sender_ip();
            if sender == Ipv4Addr::UNSPECIFIED || port.ips.contains(&sender) {
                Ok(())
            } else {
                Err(DropReason::SpoofedSrcIp)
            }
        }
        _ => Ok(()),
    }
}
