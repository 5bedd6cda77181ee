//! Node configuration: the TOML file and the immutable [`Snapshot`] built from it.
//!
//! The file is parsed into [`NodeConfig`] (plain serde types, unknown fields
//! rejected), then validated completely into a [`Snapshot`]: ports get
//! [`PortId`](crate::packet::PortId)s, connected routes are derived, static routes are resolved to
//! an outgoing L3 interface. The pipeline only ever sees a `Snapshot`; a new
//! configuration is a new snapshot with a higher generation, swapped in
//! whole. `config/node.example.toml` documents every field.

use core::fmt;
use core::net::Ipv4Addr;
use std::path::Path;

use serde::Deserialize;

use crate::wire::MacAddr;

pub mod nat;
pub mod overlay;
mod snapshot;

pub use crate::wire::Ipv4Cidr;
pub use nat::{
    ConntrackSection, EndpointSection, NatSection, NatSettings, PortRange, ServiceSection,
    build_services,
};
pub use overlay::{OverlaySection, RemoteNodeSection};
pub use snapshot::{HostAccess, L3Interface, PortSpec, Snapshot, Tuning};

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
    // --- services / NAT (issue 6) ---
    /// Services (ClusterIP, NodePort) with their endpoints, for static nodes and replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSection>,
    /// Masquerade and port ranges.
    #[serde(default)]
    pub nat: NatSection,
    /// Connection tracking capacity and timeouts.
    #[serde(default)]
    pub conntrack: ConntrackSection,
    // --- end services / NAT ---
    // VXLAN overlay (overlay/).
    /// The VXLAN overlay; enabled by this section or by any `[[nodes]]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlaySection>,
    /// The other nodes of the cluster, reached through VXLAN tunnels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<RemoteNodeSection>,
    /// Follow a Kubernetes cluster (the control plane's; the dataplane only carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSection>,
    /// The node's own network stack as a member of the pod network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostSection>,
}

/// `[host]`: the node's own network stack reaches pods and ClusterIPs
/// through a port of the bridge domain (a TAP in the node's namespace, like
/// Cilium's `cilium_host` or Calico-VPP's host tap), with an address of the
/// pod subnet as the source of its connections so that every reply, from
/// this node's pods or through the overlay, comes back to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Name of the port (in `[[ports]]`) that is the host's interface.
    pub port: String,
    /// The host's address on it (default: the pod subnet's network
    /// address, which no pod is given, as flannel gives `flannel.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// Service ranges the host routes to podswitch besides the cluster
    /// CIDRs (default: Kubernetes' `10.96.0.0/12`).
    #[serde(default = "default_service_cidrs")]
    pub service_cidrs: Vec<Ipv4Cidr>,
}

fn default_service_cidrs() -> Vec<Ipv4Cidr> {
    vec![Ipv4Cidr {
        addr: Ipv4Addr::new(10, 96, 0, 0),
        prefix_len: 12,
    }]
}

/// `[kubernetes]`: podswitchd follows the cluster's Services,
/// EndpointSlices and Nodes (also `podswitchd run --kubernetes`; flags win).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    /// Follow the cluster (`false` turns a present section off).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A kubeconfig; without it, in-cluster credentials, then `$KUBECONFIG`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// This node's name in the cluster (default: `NODE_NAME`, then `[node] name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The least time between two syncs, in milliseconds.
    #[serde(default = "default_min_sync_interval_ms")]
    pub min_sync_interval_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_min_sync_interval_ms() -> u64 {
    50
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
    /// The node's network stack keeps `address` on the interface (a NIC
    /// shared with the host): podswitch takes only what is its own (VXLAN,
    /// NodePorts, replies to masqueraded flows, pod and service addresses)
    /// and leaves the rest, ARP for `address` included, to the kernel.
    /// Default: false (the interface carries only podswitch's traffic).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
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
    /// Masquerade this pod's traffic leaving by the uplink (the CNI's
    /// `ipMasq`). Default: `nat.masquerade`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masquerade: Option<bool>,
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

/// Largest `[neighbours] hold_per_neighbour` accepted (the pipeline's hold
/// queue has this many slots per next hop).
pub const MAX_HOLD_PER_NEIGHBOUR: usize = 16;

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

pub(crate) fn invalid(
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../../../config/node.example.toml");

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
