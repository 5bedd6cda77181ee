//! The immutable [`Snapshot`] the pipeline runs against, built from a
//! validated [`NodeConfig`]: ports with stable ids, the gateway and uplink
//! L3 interfaces, the LPM route table (connected routes derived) and the
//! timers. Building it is the complete validation of a configuration.

use core::net::Ipv4Addr;
use std::sync::Arc;

use super::NatSettings;
use super::{
    BridgeSection, ConfigError, Ipv4Cidr, MAX_HOLD_PER_NEIGHBOUR, NodeConfig, PortKind, invalid,
};
use crate::packet::{L3If, PortId};
use crate::routes::{Route, RouteTable};
use crate::services::ServiceTable;
use crate::wire::MacAddr;

/// A port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Its id (index into [`Snapshot::ports`]).
    pub id: PortId,
    /// Unique name.
    pub name: String,
    /// How it reaches the kernel.
    pub kind: PortKind,
    /// Kernel interface name.
    pub ifname: String,
    /// True for the uplink, false for pod ports in the bridge domain.
    pub is_uplink: bool,
    /// The pod's MAC, if configured.
    pub mac: Option<MacAddr>,
    /// The pod's IPv4 addresses.
    pub ips: Vec<Ipv4Addr>,
    /// The pod's network namespace (TAP ports placed in a pod).
    pub netns: Option<std::path::PathBuf>,
    /// Interface name inside the pod.
    pub pod_ifname: String,
    /// MTU.
    pub mtu: u16,
    /// Whether the device's offloads (vnet headers) are used.
    pub offload: bool,
    /// AF_PACKET: receive through the mmap ring.
    pub rx_ring: bool,
    /// Masquerade override (`None`: the node's `nat.masquerade`).
    pub masquerade: Option<bool>,
}

impl PortSpec {
    /// True when frames from this port must carry its MAC (and, if
    /// configured, one of its IPs) as source.
    #[inline]
    pub fn enforces_source(&self) -> bool {
        self.mac.is_some()
    }
}

/// An L3 interface of the switch (the gateway or the uplink) with its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3Interface {
    /// Which interface.
    pub iface: L3If,
    /// Its address and on-link prefix.
    pub address: Ipv4Cidr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// Timers and limits the pipeline stages use, in nanoseconds where a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// MAC aging.
    pub mac_aging_ns: u64,
    /// Neighbour reachable time.
    pub neighbour_reachable_ns: u64,
    /// ARP probe interval.
    pub probe_interval_ns: u64,
    /// ARP probes before giving up.
    pub probes: u32,
    /// Held packets per unresolved next hop.
    pub hold_per_neighbour: usize,
    /// ICMP error rate per worker.
    pub icmp_errors_per_sec: u32,
    /// ICMP error burst.
    pub icmp_burst: u32,
}

/// The immutable configuration the pipeline runs against.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases with every applied change.
    pub generation: u64,
    /// Node name.
    pub node_name: String,
    /// Ports, in configuration order (look one up by id with [`Snapshot::port`]).
    pub ports: Vec<PortSpec>,
    /// Position in `ports` of each port id (`u16::MAX`: no such port).
    port_slots: Vec<u16>,
    /// Ids of the ports in the bridge domain (all but the uplink).
    pub bridge_ports: Vec<PortId>,
    /// The pod gateway (the bridge's L3 interface).
    pub gateway: L3Interface,
    /// The uplink's L3 interface and its port, if any.
    pub uplink: Option<(PortId, L3Interface)>,
    /// Longest-prefix-match routes, connected ones included.
    pub routes: RouteTable,
    /// Timers and limits.
    pub tuning: Tuning,
    // --- services / NAT (issue 6) ---
    /// Services: ClusterIP and NodePort → endpoints.
    pub services: Arc<ServiceTable>,
    /// Masquerade, cluster CIDRs, port ranges, conntrack sizing.
    pub nat: NatSettings,
    // --- end services / NAT ---
    /// The VXLAN overlay, if enabled.
    pub overlay: Option<crate::overlay::Overlay>,
    /// The uplink is shared with the node's network stack, which keeps the
    /// uplink address ([`crate::config::UplinkSection::shared`]).
    pub uplink_shared: bool,
    /// The node's own network stack as a bridge port, if configured.
    pub host: Option<HostAccess>,
}

/// The port through which the node's own network stack reaches the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAccess {
    /// The host's port (in the bridge domain).
    pub port: PortId,
    /// The host's address on it, in the pod subnet: the next hop of
    /// packets for the node's own addresses.
    pub address: Ipv4Addr,
}

impl Snapshot {
    /// Validates `config` and builds generation `generation` from it.
    pub fn build(config: &NodeConfig, generation: u64) -> Result<Snapshot, ConfigError> {
        Self::build_with_ids(config, generation, None)
    }

    /// As [`Snapshot::build`], with port ids taken from `ids` (by port name)
    /// instead of positions: a running daemon keeps a port's id for its
    /// lifetime, because its workers' queues are indexed by it. Every port
    /// must have an id in `ids`; ids may leave gaps.
    pub fn build_with_ids(
        config: &NodeConfig,
        generation: u64,
        ids: Option<&std::collections::BTreeMap<String, u16>>,
    ) -> Result<Snapshot, ConfigError> {
        let mut ports = build_ports(config)?;
        if let Some(ids) = ids {
            for (i, p) in ports.iter_mut().enumerate() {
                let id = ids
                    .get(&p.name)
                    .copied()
                    .filter(|id| *id < PortId::MAX_PORTS);
                let id = id.ok_or_else(|| {
                    invalid(format!("ports[{i}].name"), &p.name, "no port id assigned")
                })?;
                p.id = PortId(id);
            }
        }
        let mut port_slots = vec![
            u16::MAX;
            ports
                .iter()
                .map(|p| usize::from(p.id.0) + 1)
                .max()
                .unwrap_or(0)
        ];
        for (i, p) in ports.iter().enumerate() {
            let slot = &mut port_slots[usize::from(p.id.0)];
            if *slot != u16::MAX {
                return Err(invalid(
                    format!("ports[{i}].name"),
                    &p.name,
                    "port id assigned twice",
                ));
            }
            *slot = u16::try_from(i).unwrap_or(u16::MAX);
        }
        let gateway = build_gateway(&config.bridge)?;
        let uplink = build_uplink(config, &ports, &gateway)?;
        for (i, p) in ports.iter().enumerate() {
            let outside =
                |ip: &&Ipv4Addr| !gateway.address.contains(**ip) || **ip == gateway.address.addr;
            if let Some(ip) = p.ips.iter().find(outside) {
                let reason = format!(
                    "must be a host address in the pod subnet {} other than the gateway",
                    gateway.address
                );
                return Err(invalid(format!("ports[{i}].ips"), ip, reason));
            }
        }
        let host = build_host(config, &ports, &gateway)?;
        let bridge_ports = ports
            .iter()
            .filter(|p| !p.is_uplink)
            .map(|p| p.id)
            .collect();
        let routes = build_routes(config, &gateway, uplink.as_ref().map(|u| &u.1))?;
        let overlay = super::overlay::build(config, &ports, &gateway, uplink.as_ref(), &routes)?;
        if let Some(overlay) = &overlay {
            // Pods default to the MTU the tunnel carries (uplink MTU − 50).
            for (spec, section) in ports.iter_mut().zip(&config.ports) {
                if !spec.is_uplink && section.mtu.is_none() {
                    spec.mtu = overlay.inner_mtu.max(576);
                }
            }
        }
        let n = &config.neighbours;
        if n.probes == 0 {
            return Err(invalid("neighbours.probes", n.probes, "must be at least 1"));
        }
        if n.hold_per_neighbour > MAX_HOLD_PER_NEIGHBOUR {
            let reason = format!("must be at most {MAX_HOLD_PER_NEIGHBOUR}");
            return Err(invalid(
                "neighbours.hold_per_neighbour",
                n.hold_per_neighbour,
                reason,
            ));
        }
        if config.bridge.mac_aging_secs == 0 {
            return Err(invalid("bridge.mac_aging_secs", 0, "must be at least 1"));
        }
        let tuning = Tuning {
            mac_aging_ns: config.bridge.mac_aging_secs.saturating_mul(1_000_000_000),
            neighbour_reachable_ns: n.reachable_secs.saturating_mul(1_000_000_000),
            probe_interval_ns: n.probe_interval_ms.saturating_mul(1_000_000),
            probes: n.probes,
            hold_per_neighbour: n.hold_per_neighbour,
            icmp_errors_per_sec: config.icmp.errors_per_sec,
            icmp_burst: config.icmp.burst,
        };
        let nat = NatSettings::build(&config.nat, &config.conntrack, gateway.address)?;
        let services = Arc::new(super::nat::build_services(
            &config.services,
            nat.node_port_range,
        )?);
        Ok(Snapshot {
            generation,
            node_name: config.node.name.clone(),
            ports,
            port_slots,
            bridge_ports,
            gateway,
            uplink,
            uplink_shared: config.uplink.as_ref().is_some_and(|u| u.shared),
            host,
            routes,
            tuning,
            services,
            nat,
            overlay,
        })
    }

    /// The same snapshot with another service table (the control plane
    /// builds and caches its own from API state).
    pub fn with_services(mut self, services: Arc<ServiceTable>) -> Snapshot {
        self.services = services;
        self
    }

    /// Whether `ip` is in another node's pod CIDR (reached through a VXLAN
    /// tunnel): inside the cluster, never masqueraded.
    #[inline]
    pub fn is_remote_pod_ip(&self, ip: Ipv4Addr) -> bool {
        self.overlay
            .as_ref()
            .is_some_and(|o| o.tunnels.lookup(ip).is_some())
    }

    /// The port with this id.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortSpec> {
        let slot = *self.port_slots.get(usize::from(id.0))?;
        self.ports.get(usize::from(slot))
    }

    /// One more than the largest port id (the size of a table indexed by id).
    pub fn port_id_limit(&self) -> usize {
        self.port_slots.len()
    }

    /// The port with this name.
    pub fn port_by_name(&self, name: &str) -> Option<&PortSpec> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The L3 interface `iface`, if configured.
    #[inline]
    pub fn l3_interface(&self, iface: L3If) -> Option<&L3Interface> {
        match iface {
            L3If::Bridge => Some(&self.gateway),
            L3If::Uplink => self.uplink.as_ref().map(|u| &u.1),
        }
    }

    /// True when `ip` is one of the switch's own addresses.
    #[inline]
    pub fn is_local_ip(&self, ip: Ipv4Addr) -> bool {
        ip == self.gateway.address.addr
            || self.uplink.as_ref().is_some_and(|u| u.1.address.addr == ip)
    }
}

fn build_ports(config: &NodeConfig) -> Result<Vec<PortSpec>, ConfigError> {
    if config.ports.len() > usize::from(PortId::MAX_PORTS) {
        return Err(invalid(
            "ports",
            config.ports.len(),
            format!("at most {} ports", PortId::MAX_PORTS),
        ));
    }
    let uplink_name = config.uplink.as_ref().map(|u| u.port.as_str());
    let mut ports = Vec::with_capacity(config.ports.len());
    for (i, p) in config.ports.iter().enumerate() {
        if p.name.is_empty() || p.name.len() > 64 {
            return Err(invalid(
                format!("ports[{i}].name"),
                format!("{:?}", p.name),
                "must be 1 to 64 characters",
            ));
        }
        if config.ports[..i].iter().any(|q| q.name == p.name) {
            return Err(invalid(
                format!("ports[{i}].name"),
                &p.name,
                "duplicate port name",
            ));
        }
        let ifname = p.ifname.clone().unwrap_or_else(|| p.name.clone());
        if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
            return Err(invalid(
                format!("ports[{i}].ifname"),
                &ifname,
                "a Linux interface name has 1 to 15 characters, no '/' or space",
            ));
        }
        if let Some(mac) = p.mac.filter(|m| !m.is_unicast()) {
            return Err(invalid(
                format!("ports[{i}].mac"),
                mac,
                "must be a unicast, non-zero MAC",
            ));
        }
        let pod_ifname = p.pod_ifname.clone().unwrap_or_else(|| "eth0".to_string());
        if p.netns.is_some() && p.kind != PortKind::Tap {
            let netns = p
                .netns
                .as_ref()
                .map(|n| n.display().to_string())
                .unwrap_or_default();
            let reason = "only tap ports are placed into a pod namespace";
            return Err(invalid(format!("ports[{i}].netns"), netns, reason));
        }
        if pod_ifname.is_empty() || pod_ifname.len() > 15 || pod_ifname.contains(['/', ' ']) {
            let reason = "a Linux interface name has 1 to 15 characters, no '/' or space";
            return Err(invalid(
                format!("ports[{i}].pod_ifname"),
                &pod_ifname,
                reason,
            ));
        }
        let mtu = p.mtu.unwrap_or(1500);
        if !(576..=9000).contains(&mtu) {
            return Err(invalid(
                format!("ports[{i}].mtu"),
                mtu,
                "must be 576 to 9000",
            ));
        }
        if p.rx_ring.is_some() && p.kind != PortKind::Afpacket {
            let reason = "only afpacket ports have a receive ring";
            return Err(invalid(
                format!("ports[{i}].rx_ring"),
                p.rx_ring.unwrap_or_default(),
                reason,
            ));
        }
        if !p.ips.is_empty() && p.mac.is_none() {
            let reason = "anti-spoofing by IP needs the port's mac too";
            return Err(invalid(
                format!("ports[{i}].ips"),
                format!("{:?}", p.ips),
                reason,
            ));
        }
        let id = PortId(u16::try_from(i).unwrap_or(u16::MAX));
        ports.push(PortSpec {
            id,
            name: p.name.clone(),
            kind: p.kind,
            ifname,
            is_uplink: uplink_name == Some(p.name.as_str()),
            mac: p.mac,
            ips: p.ips.clone(),
            netns: p.netns.clone(),
            pod_ifname,
            mtu,
            offload: p.offload.unwrap_or(true),
            rx_ring: p.rx_ring.unwrap_or(false),
            masquerade: p.masquerade,
        });
    }
    Ok(ports)
}

fn build_gateway(bridge: &BridgeSection) -> Result<L3Interface, ConfigError> {
    let gw = bridge.gateway;
    if gw.prefix_len == 0 || gw.prefix_len > 30 {
        return Err(invalid(
            "bridge.gateway",
            gw,
            "the pod subnet prefix must be /1 to /30",
        ));
    }
    if gw.addr == gw.network() || gw.addr == gw.broadcast() {
        return Err(invalid(
            "bridge.gateway",
            gw,
            "the gateway cannot be the network or broadcast address",
        ));
    }
    if !bridge.gateway_mac.is_unicast() {
        return Err(invalid(
            "bridge.gateway_mac",
            bridge.gateway_mac,
            "must be a unicast, non-zero MAC",
        ));
    }
    Ok(L3Interface {
        iface: L3If::Bridge,
        address: gw,
        mac: bridge.gateway_mac,
    })
}

fn build_uplink(
    config: &NodeConfig,
    ports: &[PortSpec],
    gateway: &L3Interface,
) -> Result<Option<(PortId, L3Interface)>, ConfigError> {
    let Some(up) = &config.uplink else {
        return Ok(None);
    };
    let port = ports.iter().find(|p| p.name == up.port).ok_or_else(|| {
        invalid(
            "uplink.port",
            &up.port,
            "no port with this name in [[ports]]",
        )
    })?;
    if up.address.prefix_len == 0 || up.address.prefix_len > 32 {
        return Err(invalid(
            "uplink.address",
            up.address,
            "prefix must be /1 to /32",
        ));
    }
    if gateway.address.contains(up.address.network())
        || up.address.contains(gateway.address.network())
    {
        return Err(invalid(
            "uplink.address",
            up.address,
            format!("overlaps the pod subnet {}", gateway.address),
        ));
    }
    if !up.mac.is_unicast() {
        return Err(invalid(
            "uplink.mac",
            up.mac,
            "must be a unicast, non-zero MAC",
        ));
    }
    Ok(Some((
        port.id,
        L3Interface {
            iface: L3If::Uplink,
            address: up.address,
            mac: up.mac,
        },
    )))
}

fn build_host(
    config: &NodeConfig,
    ports: &[PortSpec],
    gateway: &L3Interface,
) -> Result<Option<HostAccess>, ConfigError> {
    let Some(host) = &config.host else {
        return Ok(None);
    };
    let port = ports
        .iter()
        .find(|p| p.name == host.port && !p.is_uplink)
        .ok_or_else(|| {
            invalid(
                "host.port",
                &host.port,
                "no port with this name in [[ports]] (other than the uplink)",
            )
        })?;
    if !port.ips.is_empty() {
        return Err(invalid(
            "host.port",
            &host.port,
            "the host's port carries the node's own addresses: give it no `ips`",
        ));
    }
    let subnet = gateway.address;
    let address = host.address.unwrap_or(subnet.network());
    if !subnet.contains(address) || address == subnet.addr || address == subnet.broadcast() {
        return Err(invalid(
            "host.address",
            address,
            format!(
                "must be an address of the pod subnet {subnet} other than the gateway and broadcast"
            ),
        ));
    }
    Ok(Some(HostAccess {
        port: port.id,
        address,
    }))
}

fn build_routes(
    config: &NodeConfig,
    gateway: &L3Interface,
    uplink: Option<&L3Interface>,
) -> Result<RouteTable, ConfigError> {
    let mut routes = vec![Route {
        prefix: gateway.address,
        via: None,
        iface: L3If::Bridge,
    }];
    if let Some(up) = uplink {
        routes.push(Route {
            prefix: up.address,
            via: None,
            iface: L3If::Uplink,
        });
    }
    for (i, r) in config.routes.iter().enumerate() {
        let iface = if gateway.address.contains(r.via) {
            L3If::Bridge
        } else if let Some(up) = uplink.filter(|u| u.address.contains(r.via)) {
            up.iface
        } else {
            return Err(invalid(
                format!("routes[{i}].via"),
                r.via,
                "next hop is not in the pod subnet or the uplink subnet",
            ));
        };
        let network = Ipv4Cidr {
            addr: r.prefix.network(),
            prefix_len: r.prefix.prefix_len,
        };
        if routes.iter().any(|q| {
            q.prefix.network() == network.addr && q.prefix.prefix_len == network.prefix_len
        }) {
            return Err(invalid(
                format!("routes[{i}].prefix"),
                r.prefix,
                "duplicate destination",
            ));
        }
        routes.push(Route {
            prefix: network,
            via: Some(r.via),
            iface,
        });
    }
    Ok(RouteTable::new(routes))
}
