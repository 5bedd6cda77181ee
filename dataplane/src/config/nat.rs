//! The NAT stage's configuration: the `[[services]]`, `[nat]` and
//! `[conntrack]` sections of the node file, and the validated
//! [`NatSettings`] and [`ServiceTable`] a snapshot carries.

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;
use core::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Ipv4Cidr, invalid};
use crate::conntrack::Timeouts;
use crate::services::{BackendSpec, Protocol, ServiceSpec, ServiceTable, ServiceTableError};

/// An inclusive port range, written `"30000-32767"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Whether `port` lies in the range.
    #[inline]
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// Number of ports.
    pub const fn len(&self) -> u32 {
        self.last as u32 - self.first as u32 + 1
    }

    /// Never empty once parsed; for clippy's sake.
    pub const fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a port range like 30000-32767"))?;
        let parse = |x: &str| {
            x.trim()
                .parse::<u16>()
                .map_err(|_| format!("{s:?}: {x:?} is not a port"))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if first == 0 || first > last {
            return Err(format!("{s:?}: must be 1 ≤ first ≤ last ≤ 65535"));
        }
        Ok(PortRange { first, last })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One endpoint of a `[[services]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSection {
    /// Pod address.
    pub address: Ipv4Addr,
    /// Port on the pod. Default: the service's `target_port`.
    pub port: Option<u16>,
    /// Ready for new connections. Default: true.
    #[serde(default = "yes")]
    pub ready: bool,
    /// Being deleted (keeps its flows, gets no new ones). Default: false.
    #[serde(default)]
    pub terminating: bool,
}

/// `[[services]]`: one service port with its endpoints.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// A name for listings (e.g. `default/web:http`).
    pub name: String,
    /// The ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// `"TCP"`, `"UDP"` or `"SCTP"`.
    pub protocol: String,
    /// The service port.
    pub port: u16,
    /// The endpoints' port. Default: `port`.
    pub target_port: Option<u16>,
    /// The NodePort, if any (inside `nat.node_port_range`).
    pub node_port: Option<u16>,
    /// Present: sessionAffinity ClientIP with this timeout.
    pub affinity_timeout_secs: Option<u32>,
    /// `"Cluster"` (default: connections from outside the node are
    /// masqueraded, as kube-proxy does) or `"Local"` (they keep the
    /// client's address; list only this node's endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// The endpoints.
    #[serde(default)]
    pub endpoints: Vec<EndpointSection>,
}

/// `[nat]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NatSection {
    /// Masquerade pod traffic leaving by the uplink. Default: true.
    #[serde(default = "yes")]
    pub masquerade: bool,
    /// Destinations inside the cluster (never masqueraded). Default: the bridge subnet.
    #[serde(default)]
    pub cluster_cidrs: Vec<Ipv4Cidr>,
    /// Ports masquerading and hairpin SNAT allocate. Default: 1024-65535
    /// (the NodePort range inside it is never used).
    pub masquerade_ports: Option<PortRange>,
    /// NodePorts. Default: 30000-32767.
    pub node_port_range: Option<PortRange>,
}

impl Default for NatSection {
    fn default() -> Self {
        NatSection {
            masquerade: true,
            cluster_cidrs: Vec::new(),
            masquerade_ports: None,
            node_port_range: None,
        }
    }
}

/// `[conntrack]`: capacity and timeouts (seconds; defaults are Linux's).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct ConntrackSection {
    /// Most connections tracked. Default: 1048576.
    pub capacity: usize,
    /// Flows each worker's established-flow cache holds (0: off). Default: 32768.
    pub flow_cache_entries: usize,
    /// Most connections one local pod's address may have tracked (0: no
    /// limit). Default: a quarter of `capacity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_pod: Option<usize>,
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub udp_unreplied: u32,
    pub udp_assured: u32,
    pub icmp: u32,
    pub generic: u32,
}

/// Default conntrack capacity.
pub const DEFAULT_CONNTRACK_CAPACITY: usize = 1 << 20;
/// Default size of each worker's established-flow cache (64 bytes a flow).
pub const DEFAULT_FLOW_CACHE_ENTRIES: usize = 1 << 15;
/// The largest flow cache a worker may have.
pub const MAX_FLOW_CACHE_ENTRIES: usize = 1 << 22;

impl Default for ConntrackSection {
    fn default() -> Self {
        let t = Timeouts::default();
        ConntrackSection {
            capacity: DEFAULT_CONNTRACK_CAPACITY,
            flow_cache_entries: DEFAULT_FLOW_CACHE_ENTRIES,
            max_per_pod: None,
            tcp_syn_sent: t.tcp_syn_sent,
            tcp_syn_recv: t.tcp_syn_recv,
            tcp_established: t.tcp_established,
            tcp_fin_wait: t.tcp_fin_wait,
            tcp_close_wait: t.tcp_close_wait,
            tcp_last_ack: t.tcp_last_ack,
            tcp_time_wait: t.tcp_time_wait,
            tcp_close: t.tcp_close,
            udp_unreplied: t.udp_unreplied,
            udp_assured: t.udp_assured,
            icmp: t.icmp,
            generic: t.generic,
        }
    }
}

fn yes() -> bool {
    true
}

/// The NAT stage's settings in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSettings {
    /// Masquerade on for ports that do not say otherwise.
    pub masquerade: bool,
    /// Prefixes inside the cluster.
    pub cluster_cidrs: Vec<Ipv4Cidr>,
    /// Ports SNAT allocates.
    pub masquerade_ports: PortRange,
    /// NodePorts (never allocated by SNAT).
    pub node_port_range: PortRange,
    /// Conntrack capacity (used when the shared tables are created).
    pub conntrack_capacity: usize,
    /// Flows in each worker's established-flow cache (0: off).
    pub flow_cache_entries: usize,
    /// Most tracked connections per local pod address (`u32::MAX`: no limit).
    pub max_per_pod: u32,
    /// Conntrack timeouts (used when the shared tables are created).
    pub timeouts: Timeouts,
}

impl NatSettings {
    /// Whether `ip` lies inside the cluster.
    #[inline]
    pub fn in_cluster(&self, ip: Ipv4Addr) -> bool {
        self.cluster_cidrs.iter().any(|c| c.contains(ip))
    }

    /// Whether SNAT may allocate `port`.
    #[inline]
    pub fn allocatable(&self, port: u16) -> bool {
        self.masquerade_ports.contains(port) && !self.node_port_range.contains(port)
    }

    /// Validates the sections; `bridge` is the default cluster CIDR.
    pub fn build(
        nat: &NatSection,
        conntrack: &ConntrackSection,
        bridge: Ipv4Cidr,
    ) -> Result<NatSettings, ConfigError> {
        let cluster_cidrs = if nat.cluster_cidrs.is_empty() {
            vec![bridge]
        } else {
            nat.cluster_cidrs.clone()
        };
        let masquerade_ports = nat.masquerade_ports.unwrap_or(PortRange {
            first: 1024,
            last: 65535,
        });
        let node_port_range = nat.node_port_range.unwrap_or(PortRange {
            first: 30000,
            last: 32767,
        });
        let usable = masquerade_ports.len()
            - (masquerade_ports.first.max(node_port_range.first) as u32
                ..=masquerade_ports.last.min(node_port_range.last) as u32)
                .count() as u32;
        if usable == 0 {
            let reason = format!("leaves no port outside node_port_range {node_port_range}");
            return Err(invalid("nat.masquerade_ports", masquerade_ports, reason));
        }
        if !(1..=crate::conntrack::MAX_CAPACITY).contains(&conntrack.capacity) {
            let reason = format!("must be 1 to {}", crate::conntrack::MAX_CAPACITY);
            return Err(invalid("conntrack.capacity", conntrack.capacity, reason));
        }
        let flows = conntrack.flow_cache_entries;
        if flows > MAX_FLOW_CACHE_ENTRIES || !(flows == 0 || flows.is_power_of_two()) {
            let reason =
                format!("must be 0 (off) or a power of two up to {MAX_FLOW_CACHE_ENTRIES}");
            return Err(invalid("conntrack.flow_cache_entries", flows, reason));
        }
        let c = conntrack;
        let timeouts = Timeouts {
            tcp_syn_sent: c.tcp_syn_sent,
            tcp_syn_recv: c.tcp_syn_recv,
            tcp_established: c.tcp_established,
            tcp_fin_wait: c.tcp_fin_wait,
            tcp_close_wait: c.tcp_close_wait,
            tcp_last_ack: c.tcp_last_ack,
            tcp_time_wait: c.tcp_time_wait,
            tcp_close: c.tcp_close,
            udp_unreplied: c.udp_unreplied,
            udp_assured: c.udp_assured,
            icmp: c.icmp,
            generic: c.generic,
        };
        let max_per_pod = match c.max_per_pod.unwrap_or((c.capacity / 4).max(1)) {
            0 => u32::MAX,
            n => u32::try_from(n).unwrap_or(u32::MAX),
        };
        Ok(NatSettings {
            masquerade: nat.masquerade,
            cluster_cidrs,
            masquerade_ports,
            node_port_range,
            conntrack_capacity: c.capacity,
            flow_cache_entries: flows,
            max_per_pod,
            timeouts,
        })
    }
}

/// Builds the service table of `[[services]]`; NodePorts must lie in `node_ports`.
pub fn build_services(
    sections: &[ServiceSection],
    node_ports: PortRange,
) -> Result<ServiceTable, ConfigError> {
    let mut specs = Vec::with_capacity(sections.len());
    for (i, s) in sections.iter().enumerate() {
        let field = |f: &str| format!("services[{i}].{f}");
        if s.name.is_empty() {
            return Err(invalid(field("name"), "\"\"", "must not be empty"));
        }
        let protocol = match s.protocol.as_str() {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                return Err(invalid(
                    field("protocol"),
                    other,
                    "must be TCP, UDP or SCTP",
                ));
            }
        };
        if s.port == 0 {
            return Err(invalid(field("port"), 0, "must be 1 to 65535"));
        }
        let target_port = s.target_port.unwrap_or(s.port);
        if target_port == 0 {
            return Err(invalid(field("target_port"), 0, "must be 1 to 65535"));
        }
        if let Some(np) = s.node_port.filter(|p| !node_ports.contains(*p)) {
            let reason = format!("must lie in nat.node_port_range {node_ports}");
            return Err(invalid(field("node_port"), np, reason));
        }
        if s.affinity_timeout_secs == Some(0) {
            return Err(invalid(
                field("affinity_timeout_secs"),
                0,
                "must be at least 1",
            ));
        }
        let external_local = match s.external_traffic_policy.as_deref() {
            None | Some("Cluster") => false,
            Some("Local") => true,
            Some(other) => {
                return Err(invalid(
                    field("external_traffic_policy"),
                    other,
                    "must be Cluster or Local",
                ));
            }
        };
        let mut backends = Vec::with_capacity(s.endpoints.len());
        for (j, e) in s.endpoints.iter().enumerate() {
            let port = e.port.unwrap_or(target_port);
            if port == 0 {
                return Err(invalid(
                    field(&format!("endpoints[{j}].port")),
                    0,
                    "must be 1 to 65535",
                ));
            }
            backends.push(BackendSpec {
                addr: e.address,
                port,
                ready: e.ready,
                terminating: e.terminating,
            });
        }
        specs.push(ServiceSpec {
            external_local,
            vip: s.cluster_ip,
            port: s.port,
            protocol,
            target_port,
            node_port: s.node_port,
            affinity: s
                .affinity_timeout_secs
                .map(|t| Duration::from_secs(u64::from(t))),
            backends,
        });
    }
    ServiceTable::new(specs).map_err(|e| match e {
        ServiceTableError::DuplicateCluster {
            second, vip, port, ..
        } => invalid(
            format!("services[{second}].cluster_ip"),
            format!("{vip}:{port}"),
            e.to_string(),
        ),
        ServiceTableError::DuplicateNodePort {
            second, node_port, ..
        } => invalid(
            format!("services[{second}].node_port"),
            node_port,
            e.to_string(),
        ),
        other => invalid("services", sections.len(), other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_range_parses() {
        let r: PortRange = "30000-32767".parse().unwrap();
        assert_eq!((r.first, r.last, r.len()), (30000, 32767, 2768));
        assert!(r.contains(30000) && r.contains(32767) && !r.contains(29999));
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("10-9".parse::<PortRange>().is_err());
        assert!("10".parse::<PortRange>().is_err());
        assert!("1-70000".parse::<PortRange>().is_err());
    }

    #[test]
    fn settings_defaults_and_errors() {
        let bridge: Ipv4Cidr = "10.244.1.1/24".parse().unwrap();
        let s = NatSettings::build(&NatSection::default(), &ConntrackSection::default(), bridge)
            .unwrap();
        assert!(s.masquerade && s.in_cluster(Ipv4Addr::new(10, 244, 1, 9)));
        assert!(!s.in_cluster(Ipv4Addr::new(10, 244, 2, 9)));
        assert!(s.allocatable(1024) && !s.allocatable(30000) && !s.allocatable(80));
        assert_eq!(s.timeouts, Timeouts::default());
        assert_eq!(s.conntrack_capacity, 1 << 20);
        let bad = NatSection {
            masquerade_ports: Some("30000-30010".parse().unwrap()),
            ..Default::default()
        };
        let e = NatSettings::build(&bad, &ConntrackSection::default(), bridge).unwrap_err();
        assert!(
            e.to_string().contains("nat.masquerade_ports = 30000-30010"),
            "{e}"
        );
        let zero = ConntrackSection {
            capacity: 0,
            ..Default::default()
        };
        let e = NatSettings::build(&NatSection::default(), &zero, bridge).unwrap_err();
        assert!(e.to_string().contains("conntrack.capacity = 0"), "{e}");
        for flows in [1000, MAX_FLOW_CACHE_ENTRIES * 2] {
            let odd = ConntrackSection {
                flow_cache_entries: flows,
                ..Default::default()
            };
            let e = NatSettings::build(&NatSection::default(), &odd, bridge).unwrap_err();
            let field = format!("conntrack.flow_cache_entries = {flows}");
            assert!(e.to_string().contains(&field), "{e}");
        }
        for flows in [0, 1, 1 << 15, MAX_FLOW_CACHE_ENTRIES] {
            let ok = ConntrackSection {
                flow_cache_entries: flows,
                ..Default::default()
            };
            let s = NatSettings::build(&NatSection::default(), &ok, bridge).unwrap();
            assert_eq!(s.flow_cache_entries, flows);
        }
    }

    #[test]
    fn service_errors_name_field_and_value() {
        let base = |extra: &str| {
            format!(
                "[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
                 [[services]]\nname = \"a\"\ncluster_ip = \"10.96.0.1\"\nprotocol = \"TCP\"\nport = 80\n{extra}"
            )
        };
        let err = |extra: &str| {
            let cfg = crate::config::NodeConfig::from_toml_str(&base(extra));
            match cfg.and_then(|c| crate::config::Snapshot::build(&c, 1)) {
                Ok(_) => panic!("accepted: {extra}"),
                Err(e) => e.to_string(),
            }
        };
        assert!(err("node_port = 80\n").contains("services[0].node_port = 80"));
        assert!(
            err("affinity_timeout_secs = 0\n").contains("services[0].affinity_timeout_secs = 0")
        );
        assert!(
            err("endpoints = [{ address = \"10.244.1.2\", port = 0 }]\n")
                .contains("services[0].endpoints[0].port = 0")
        );
        let dup = "[[services]]\nname = \"b\"\ncluster_ip = \"10.96.0.1\"\nprotocol = \"TCP\"\nport = 80\n";
        assert!(err(dup).contains("services[1].cluster_ip = 10.96.0.1:80"));
        let icmp = base("").replace("\"TCP\"", "\"ICMP\"");
        let e = crate::config::NodeConfig::from_toml_str(&icmp)
            .and_then(|c| crate::config::Snapshot::build(&c, 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("services[0].protocol = ICMP"), "{e}");
        let ok = crate::config::NodeConfig::from_toml_str(&base(
            "target_port = 8080\nnode_port = 30080\nendpoints = [{ address = \"10.244.1.2\" }]\n",
        ))
        .and_then(|c| crate::config::Snapshot::build(&c, 1))
        .unwrap();
        let svc = ok.services.lookup_node_port(Protocol::Tcp, 30080).unwrap();
        assert_eq!(svc.backends()[0].port, 8080);
    }
}
