//! Node configuration: the TOML file and the immutable [`Snapshot`] built from it.
//!
//! The file is parsed into [`NodeConfig`] (plain serde types, unknown fields
//! rejected), then validated completely into a [`Snapshot`]: ports get
//! [`PortId`]s, connected routes are derived, static routes are resolved to
//! an outgoing L3 interface. The pipeline only ever sees a `Snapshot`; a new
//! configuration is a new snapshot with a higher generation, swapped in
//! whole. `config/node.example.toml` documents every field.

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;
use std::path::Path;

use serde::Deserialize;

use crate::pipeline::MAX_HOLD_PER_NEIGHBOUR;
use crate::pipeline::routes::{Route, RouteTable};
use crate::pipeline::{L3If, PortId};
use crate::wire::MacAddr;

/// An IPv4 prefix such as `10.244.1.0/24` (host bits may be set: `10.244.1.1/24`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Ipv4Cidr {
    /// The address as written.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// The netmask as a u32.
    pub fn mask(&self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix_len))
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The directed broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// True when `ip` lies inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == u32::from(self.network())
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR like 10.244.1.0/24"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| format!("{s:?}: prefix length {len:?} is not a number"))?;
        if prefix_len > 32 {
            return Err(format!(
                "{s:?}: prefix length {prefix_len} is larger than 32"
            ));
        }
        Ok(Ipv4Cidr { addr, prefix_len })
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The node configuration file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node identity.
    #[serde(default)]
    pub node: NodeSection,
    /// The bridge domain of the node's pods and its gateway.
    pub bridge: BridgeSection,
    /// The node's uplink, an L3 port outside the bridge domain.
    pub uplink: Option<UplinkSection>,
    /// Ports (pod attachments and the uplink).
    #[serde(default)]
    pub ports: Vec<PortSection>,
    /// Static routes.
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    /// Neighbour (ARP) resolution tuning.
    #[serde(default)]
    pub neighbours: NeighbourSection,
    /// ICMP error generation tuning.
    #[serde(default)]
    pub icmp: IcmpSection,
}

/// `[node]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// A name for logs and the API.
    #[serde(default = "default_node_name")]
    pub name: String,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: default_node_name(),
        }
    }
}

fn default_node_name() -> String {
    "node".to_string()
}

/// `[bridge]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSection {
    /// Gateway address with the pod subnet's prefix, e.g. `10.244.1.1/24`.
    pub gateway: Ipv4Cidr,
    /// The gateway's MAC address (what pods resolve the gateway to).
    pub gateway_mac: MacAddr,
    /// Seconds a learned MAC stays without traffic from it (Linux bridge: 300).
    #[serde(default = "default_mac_aging")]
    pub mac_aging_secs: u64,
}

fn default_mac_aging() -> u64 {
    300
}

/// `[uplink]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkSection {
    /// Name of the port (in `[[ports]]`) that is the uplink.
    pub port: String,
    /// The node's address on the uplink with its prefix, e.g. `192.168.100.1/24`.
    pub address: Ipv4Cidr,
    /// The uplink's MAC address.
    pub mac: MacAddr,
}

/// How a port reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// A TAP device created by podswitchd.
    Tap,
    /// An AF_PACKET socket on an existing interface (veth host end, uplink NIC).
    Afpacket,
}

/// `[[ports]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortSection {
    /// Unique port name.
    pub name: String,
    /// `tap` or `afpacket`.
    pub kind: PortKind,
    /// The kernel interface name (defaults to the port name).
    pub ifname: Option<String>,
    /// The MAC assigned to the pod behind this port, if known.
    pub mac: Option<MacAddr>,
    /// The IPv4 addresses assigned to the pod behind this port. With `mac`,
    /// they are enforced: frames from other addresses are dropped (anti-spoofing).
    #[serde(default)]
    pub ips: Vec<Ipv4Addr>,
    /// TAP only: the pod's network namespace (e.g. `/var/run/netns/pod-a`).
    /// The TAP is moved there, renamed to `pod_ifname`, and given `mac`,
    /// `ips` (with the pod subnet's prefix), `mtu` and a default route via
    /// the gateway. Without it the TAP stays in the node's namespace.
    pub netns: Option<std::path::PathBuf>,
    /// TAP only: the interface name inside the pod. Default: `eth0`.
    pub pod_ifname: Option<String>,
    /// MTU of the pod interface. Default: 1500.
    pub mtu: Option<u16>,
    /// Use the device's segmentation/checksum offloads (vnet headers).
    /// Default: true. With false, GSO super-frames are cut and partial
    /// checksums completed in software before this port sends them.
    pub offload: Option<bool>,
    /// AF_PACKET only: receive through the TPACKET_V3 mmap ring instead of
    /// `recvmmsg`. The ring saves a copy but releases a block only when it
    /// is full or after 1 ms. Default: false.
    pub rx_ring: Option<bool>,
}

/// `[[routes]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Destination prefix, e.g. `10.244.2.0/24` or `0.0.0.0/0`.
    pub prefix: Ipv4Cidr,
    /// Next hop; must lie in the pod subnet or the uplink subnet.
    pub via: Ipv4Addr,
}

/// `[neighbours]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NeighbourSection {
    /// Seconds a resolved neighbour is trusted before it is resolved again.
    #[serde(default = "default_reachable")]
    pub reachable_secs: u64,
    /// Milliseconds between ARP probes for an unresolved next hop (Linux: 1000).
    #[serde(default = "default_probe_interval")]
    pub probe_interval_ms: u64,
    /// ARP probes sent before held packets are dropped (Linux: 3).
    #[serde(default = "default_probes")]
    pub probes: u32,
    /// Packets held per unresolved next hop while ARP runs.
    #[serde(default = "default_hold")]
    pub hold_per_neighbour: usize,
}

fn default_reachable() -> u64 {
    300
}
fn default_probe_interval() -> u64 {
    1000
}
fn default_probes() -> u32 {
    3
}
fn default_hold() -> usize {
    3
}

impl Default for NeighbourSection {
    fn default() -> Self {
        NeighbourSection {
            reachable_secs: default_reachable(),
            probe_interval_ms: default_probe_interval(),
            probes: default_probes(),
            hold_per_neighbour: default_hold(),
        }
    }
}

/// `[icmp]`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IcmpSection {
    /// ICMP errors per second each worker may send (Linux `icmp_msgs_per_sec`: 1000).
    #[serde(default = "default_icmp_rate")]
    pub errors_per_sec: u32,
    /// Burst allowed above the rate (Linux `icmp_msgs_burst`: 50).
    #[serde(default = "default_icmp_burst")]
    pub burst: u32,
}

fn default_icmp_rate() -> u32 {
    1000
}
fn default_icmp_burst() -> u32 {
    50
}

impl Default for IcmpSection {
    fn default() -> Self {
        IcmpSection {
            errors_per_sec: default_icmp_rate(),
            burst: default_icmp_burst(),
        }
    }
}

/// Why a configuration was refused. Messages name the field and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not match the schema.
    #[error("invalid config: {0}")]
    Parse(String),
    /// A value is not allowed.
    #[error("invalid config: {field} = {value}: {reason}")]
    Invalid {
        /// The field path, e.g. `ports[2].name`.
        field: String,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

fn invalid(
    field: impl Into<String>,
    value: impl fmt::Display,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl NodeConfig {
    /// Parses TOML text.
    pub fn from_toml_str(text: &str) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text)
    }
}

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
        let bridge_ports = ports
            .iter()
            .filter(|p| !p.is_uplink)
            .map(|p| p.id)
            .collect();
        let routes = build_routes(config, &gateway, uplink.as_ref().map(|u| &u.1))?;
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
        Ok(Snapshot {
            generation,
            node_name: config.node.name.clone(),
            ports,
            port_slots,
            bridge_ports,
            gateway,
            uplink,
            routes,
            tuning,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../config/node.example.toml");

    #[test]
    fn example_file_builds() {
        let cfg = NodeConfig::from_toml_str(EXAMPLE).unwrap();
        let snap = Snapshot::build(&cfg, 1).unwrap();
        assert_eq!(snap.gateway.address.addr, Ipv4Addr::new(10, 244, 1, 1));
        assert!(snap.uplink.is_some());
        assert!(snap.bridge_ports.len() >= 2);
    }

    fn base() -> String {
        r#"
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[uplink]
port = "up0"
address = "192.168.100.1/24"
mac = "02:00:c0:a8:64:01"
[[ports]]
name = "pod-a"
kind = "tap"
[[ports]]
name = "up0"
kind = "afpacket"
"#
        .to_string()
    }

    fn err(extra: &str) -> String {
        let text = base() + extra;
        match NodeConfig::from_toml_str(&text).and_then(|c| Snapshot::build(&c, 1)) {
            Ok(_) => panic!("accepted: {extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_field_and_value() {
        assert!(
            err("[[ports]]\nname = \"pod-a\"\nkind = \"tap\"\n").contains("ports[2].name = pod-a")
        );
        assert!(
            err("[[routes]]\nprefix = \"10.9.0.0/16\"\nvia = \"172.16.0.1\"\n")
                .contains("routes[0].via = 172.16.0.1")
        );
        assert!(
            err("[[routes]]\nprefix = \"10.9.0.0/33\"\nvia = \"10.244.1.9\"\n")
                .contains("larger than 32")
        );
        assert!(err("[[ports]]\nname = \"x\"\nkind = \"vhost\"\n").contains("vhost"));
        assert!(err("[[ports]]\nname = \"x\"\nkind = \"tap\"\ncolour = 1\n").contains("colour"));
        assert!(
            err("[[ports]]\nname = \"x\"\nkind = \"tap\"\nmac = \"01:00:5e:00:00:01\"\n")
                .contains("ports[2].mac")
        );
        assert!(
            err("[[ports]]\nname = \"x\"\nkind = \"tap\"\nifname = \"much-too-long-ifname\"\n")
                .contains("ports[2].ifname")
        );
    }

    #[test]
    fn cidr_math() {
        let c: Ipv4Cidr = "10.244.1.1/24".parse().unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 244, 1, 255));
        assert!(c.contains(Ipv4Addr::new(10, 244, 1, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 2, 1)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.300/8".parse::<Ipv4Cidr>().is_err());
    }
}
