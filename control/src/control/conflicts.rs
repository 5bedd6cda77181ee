//! Addresses two things must not share on one node, refused with 409: a
//! pod's IP or MAC and another pod's, the gateway's or the uplink's; a
//! cluster IP and any of those. Each check names the field, the value and
//! whose it already is ("ips = 10.244.1.2: already the address of port
//! pod-a"). The snapshot build checks the rest (a pod IP outside the pod
//! subnet or on the gateway is a 400 there).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use podswitch_dataplane::config::{PortSection, Snapshot};
use podswitch_dataplane::wire::MacAddr;

use crate::error::ControlError;
use crate::state::Service;

/// The node's own addresses and its pods', with whose each is.
fn node_addresses(snapshot: &Snapshot) -> BTreeMap<Ipv4Addr, String> {
    let mut out = BTreeMap::new();
    out.insert(snapshot.gateway.address.addr, "the gateway".to_string());
    if let Some((_, uplink)) = &snapshot.uplink {
        out.insert(uplink.address.addr, "the uplink".to_string());
    }
    for p in &snapshot.ports {
        for ip in &p.ips {
            out.entry(*ip).or_insert_with(|| format!("port {}", p.name));
        }
    }
    out
}

/// Refuses a new port (`port`, not yet in `snapshot`) whose address is a
/// pod's, the node's or a cluster IP, or whose MAC is another port's or
/// the switch's own.
pub fn check_new_port<'a>(
    port: &PortSection,
    snapshot: &Snapshot,
    services: impl Iterator<Item = &'a Service>,
) -> Result<(), ControlError> {
    let addresses = node_addresses(snapshot);
    let services: Vec<&Service> = services.collect();
    for ip in &port.ips {
        if let Some(whose) = addresses.get(ip) {
            return Err(taken("ips", ip, &format!("the address of {whose}")));
        }
        if let Some(s) = services.iter().find(|s| s.cluster_ip == *ip) {
            return Err(taken(
                "ips",
                ip,
                &format!("the cluster IP of service {}", s.name),
            ));
        }
    }
    let Some(mac) = port.mac else {
        return Ok(());
    };
    let mut macs: Vec<(MacAddr, String)> = vec![(snapshot.gateway.mac, "the gateway".into())];
    if let Some((_, uplink)) = &snapshot.uplink {
        macs.push((uplink.mac, "the uplink".into()));
    }
    let ports = snapshot.ports.iter().filter(|p| p.name != port.name);
    macs.extend(ports.filter_map(|p| Some((p.mac?, format!("port {}", p.name)))));
    match macs.iter().find(|(m, _)| *m == mac) {
        Some((_, whose)) => Err(taken("mac", mac, &format!("the MAC of {whose}"))),
        None => Ok(()),
    }
}

/// The node's and its pods' addresses, to check cluster IPs against.
pub struct NodeAddresses(BTreeMap<Ipv4Addr, String>);

impl NodeAddresses {
    /// The addresses of `snapshot`'s gateway, uplink and ports.
    pub fn of(snapshot: &Snapshot) -> NodeAddresses {
        NodeAddresses(node_addresses(snapshot))
    }

    /// Refuses `service` when its cluster IP is one of them; `prefix` (e.g.
    /// `services[3].`) comes before `cluster_ip` in the message.
    pub fn check_cluster_ip(
        &self,
        prefix: impl std::fmt::Display,
        service: &Service,
    ) -> Result<(), ControlError> {
        match self.0.get(&service.cluster_ip) {
            Some(whose) => Err(taken(
                &format!("{prefix}cluster_ip"),
                service.cluster_ip,
                &format!("the address of {whose}"),
            )),
            None => Ok(()),
        }
    }
}

/// Refuses node addressing whose gateway or uplink address is a cluster IP.
pub fn check_node_addresses<'a>(
    snapshot: &Snapshot,
    services: impl Iterator<Item = &'a Service>,
) -> Result<(), ControlError> {
    let mut own = vec![("gateway", snapshot.gateway.address.addr)];
    if let Some((_, uplink)) = &snapshot.uplink {
        own.push(("uplink.address", uplink.address.addr));
    }
    for s in services {
        if let Some((field, ip)) = own.iter().find(|(_, ip)| *ip == s.cluster_ip) {
            return Err(taken(
                field,
                ip,
                &format!("the cluster IP of service {}", s.name),
            ));
        }
    }
    Ok(())
}

fn taken(field: &str, value: impl std::fmt::Display, whose: &str) -> ControlError {
    ControlError::taken(field, value, whose)
}
