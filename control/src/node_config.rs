//! The node configuration `podswitchd run` starts from: the file as
//! written, completed with what it leaves to the cluster and the command
//! line, so that one DaemonSet serves every node without a file per node.
//!
//! - Following a Kubernetes cluster with a file that has no `[bridge]` (or
//!   no file at all): the node's addressing comes from the cluster. Its
//!   Node's `spec.podCIDR` is the pod subnet, the subnet's first address
//!   the gateway (MAC `02:00` + the gateway's four bytes), and unless the
//!   file has an `[uplink]` or `--uplink` names one, the uplink is the
//!   interface holding the Node's InternalIP. `[node] name` defaults to the
//!   Node's name.
//! - `--uplink IFACE` (with or without a cluster): the uplink is that
//!   interface, as an AF_PACKET port of the same name, with its IPv4
//!   address (the Node's InternalIP when it holds several) and its MAC.
//!   Such an uplink is the node's own NIC: it is shared (the kernel keeps
//!   the address) and, unless the file has a `[host]`, the node reaches
//!   the pods through a TAP `podswitch0` (see `crate::host`).
//!
//! A file with `[bridge]` keeps its hand-written addressing: nothing is
//! derived but what `--uplink` asks for.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use podswitch_dataplane::config::{ConfigError, Ipv4Cidr, KubernetesSection, NodeConfig};
use podswitch_dataplane::io::netlink::Rtnetlink;
use podswitch_dataplane::wire::MacAddr;
use toml::{Table, Value};

use crate::kubernetes::KubernetesRun;
use crate::kubernetes::local_node::{Needs, wait_for_local_node};

/// The file read when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/podswitch/node.toml";

/// Where the configuration comes from besides the file.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// `--config`; `None`: [`DEFAULT_CONFIG`], which may be missing when following a cluster.
    pub config: Option<&'a Path>,
    /// `--kubernetes` and its options.
    pub kubernetes: &'a KubernetesRun,
    /// `--uplink IFACE`.
    pub uplink: Option<&'a str>,
}

/// What the file leaves out, found elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// `[node] name` when the file has none.
    pub node_name: Option<String>,
    /// The pod subnet, for a `[bridge]` the file does not have.
    pub pod_cidr: Option<Ipv4Cidr>,
    /// The uplink, for an `[uplink]` the file does not have.
    pub uplink: Option<UplinkInterface>,
}

/// An interface taken as the uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkInterface {
    /// Its name (also the uplink port's).
    pub name: String,
    /// The node's address on it, with the interface's prefix.
    pub address: Ipv4Cidr,
    /// Its MAC.
    pub mac: MacAddr,
}

/// Reads the file and completes it; may wait (until `stop`) for this
/// node's Node to have its pod CIDR or InternalIP. Returns the path read too.
pub fn load(sources: &Sources<'_>, stop: &AtomicBool) -> Result<(NodeConfig, PathBuf)> {
    let (path, table) = read_table(sources)?;
    let kubernetes = kubernetes_section(&table)?;
    let following = sources.kubernetes.enabled || kubernetes.as_ref().is_some_and(|k| k.enabled);
    let (has_bridge, has_uplink) = (table.contains_key("bridge"), table.contains_key("uplink"));
    if let (true, Some(iface)) = (has_uplink, sources.uplink) {
        bail!(
            "--uplink {iface}: {} has an [uplink] already; give one of them",
            path.display()
        );
    }
    let from_cluster = following && !has_bridge;
    let mut completion = Completion::default();
    let mut internal_ip = None;
    if from_cluster {
        let name =
            node_name(sources.kubernetes, kubernetes.as_ref(), &table).with_context(|| {
                format!("following a cluster without [bridge] in {}", path.display())
            })?;
        let needs = Needs {
            pod_cidr: true,
            internal_ip: !has_uplink && sources.uplink.is_none(),
        };
        let kubeconfig = sources
            .kubernetes
            .kubeconfig
            .clone()
            .or_else(|| kubernetes.as_ref().and_then(|k| k.kubeconfig.clone()));
        let local = wait_for_local_node(kubeconfig.as_deref(), &name, needs, stop)?;
        completion.pod_cidr = local.pod_cidr;
        internal_ip = local.internal_ip;
        completion.node_name = Some(name);
    }
    if !has_uplink && (sources.uplink.is_some() || from_cluster) {
        completion.uplink = Some(find_uplink(sources.uplink, internal_ip)?);
    }
    if completion != Completion::default() {
        tracing::info!(
            node = ?completion.node_name,
            pod_subnet = ?completion.pod_cidr.map(|c| c.to_string()),
            uplink = ?completion.uplink.as_ref().map(|u| format!("{} {} {}", u.name, u.address, u.mac)),
            "node settings not in {} taken from the cluster and the command line",
            path.display()
        );
    }
    let config = complete(table, &completion)
        .with_context(|| format!("{}, completed from the cluster", path.display()))?;
    Ok((config, path))
}

/// The file as a TOML table: `--config`, or the default file (an empty
/// table when it does not exist and `--kubernetes` is on).
fn read_table(sources: &Sources<'_>) -> Result<(PathBuf, Table)> {
    let path = sources
        .config
        .map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && sources.config.is_none()
                && sources.kubernetes.enabled =>
        {
            String::new()
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }
            .into());
        }
    };
    let table = text
        .parse::<Table>()
        .map_err(|e| ConfigError::Parse(e.to_string()))?;
    Ok((path, table))
}

fn kubernetes_section(table: &Table) -> Result<Option<KubernetesSection>> {
    let Some(section) = table.get("kubernetes") else {
        return Ok(None);
    };
    let section = section
        .clone()
        .try_into::<KubernetesSection>()
        .map_err(|e| ConfigError::Parse(format!("[kubernetes]: {e}")))?;
    Ok(Some(section))
}

/// This node's name in the cluster: `--node-name`/`NODE_NAME`, `[kubernetes] node_name`, `[node] name`.
fn node_name(
    flags: &KubernetesRun,
    section: Option<&KubernetesSection>,
    table: &Table,
) -> Result<String> {
    let from_file = || {
        table
            .get("node")
            .and_then(|n| n.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    flags
        .node_name
        .clone()
        .or_else(|| section.and_then(|s| s.node_name.clone()))
        .or_else(from_file)
        .context("this node's name is unknown: give --node-name or NODE_NAME (the downward API's spec.nodeName)")
}

/// Adds what `completion` holds to the sections the file lacks, and parses the result.
pub fn complete(mut table: Table, completion: &Completion) -> Result<NodeConfig, ConfigError> {
    if let Some(name) = &completion.node_name {
        let node = table
            .entry("node")
            .or_insert_with(|| Value::Table(Table::new()));
        if let Some(node) = node.as_table_mut() {
            node.entry("name")
                .or_insert_with(|| Value::String(name.clone()));
        }
    }
    if let Some(cidr) = completion.pod_cidr
        && !table.contains_key("bridge")
    {
        let gateway = pod_gateway(cidr)?;
        let mut bridge = Table::new();
        bridge.insert("gateway".into(), Value::String(gateway.to_string()));
        let mac = gateway_mac(gateway.addr);
        bridge.insert("gateway_mac".into(), Value::String(mac.to_string()));
        table.insert("bridge".into(), Value::Table(bridge));
    }
    if let Some(uplink) = &completion.uplink
        && !table.contains_key("uplink")
    {
        let mut section = Table::new();
        section.insert("port".into(), Value::String(uplink.name.clone()));
        section.insert("address".into(), Value::String(uplink.address.to_string()));
        section.insert("mac".into(), Value::String(uplink.mac.to_string()));
        // The interface is the node's own NIC: its address stays the
        // kernel's, and the node reaches pods through the host's port.
        section.insert("shared".into(), Value::Boolean(true));
        table.insert("uplink".into(), Value::Table(section));
        add_uplink_port(&mut table, &uplink.name)?;
        if !table.contains_key("host") {
            add_host_port(&mut table)?;
        }
    }
    NodeConfig::from_toml_str(&table.to_string())
}

/// The file's `[[ports]]`, made empty when it has none.
fn ports_of(table: &mut Table) -> Result<&mut Vec<Value>, ConfigError> {
    table
        .entry("ports")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| ConfigError::Parse("ports: must be an array of tables".into()))
}

/// `[[ports]]` gets an AF_PACKET port on `name` unless it has a port of that name.
fn add_uplink_port(table: &mut Table, name: &str) -> Result<(), ConfigError> {
    let ports = ports_of(table)?;
    let exists = ports
        .iter()
        .any(|p| p.get("name").and_then(Value::as_str) == Some(name));
    if !exists {
        let mut port = Table::new();
        port.insert("name".into(), Value::String(name.to_string()));
        port.insert("kind".into(), Value::String("afpacket".into()));
        port.insert("ifname".into(), Value::String(name.to_string()));
        ports.push(Value::Table(port));
    }
    Ok(())
}

/// The host's port of a derived node: a TAP `podswitch0` in the node's
/// namespace, named in `[host]`.
pub const HOST_IFNAME: &str = "podswitch0";

fn add_host_port(table: &mut Table) -> Result<(), ConfigError> {
    let ports = ports_of(table)?;
    let mut port = Table::new();
    port.insert("name".into(), Value::String(HOST_IFNAME.into()));
    port.insert("kind".into(), Value::String("tap".into()));
    port.insert("ifname".into(), Value::String(HOST_IFNAME.into()));
    ports.push(Value::Table(port));
    let mut host = Table::new();
    host.insert("port".into(), Value::String(HOST_IFNAME.into()));
    table.insert("host".into(), Value::Table(host));
    Ok(())
}

/// The gateway of pod subnet `cidr`: its first address, with its prefix.
fn pod_gateway(cidr: Ipv4Cidr) -> Result<Ipv4Cidr, ConfigError> {
    if cidr.prefix_len > 30 {
        return Err(ConfigError::Invalid {
            field: "the Node's spec.podCIDR".into(),
            value: cidr.to_string(),
            reason: "must leave room for pods (prefix /30 or shorter)".into(),
        });
    }
    Ok(Ipv4Cidr {
        addr: Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1)),
        prefix_len: cidr.prefix_len,
    })
}

/// The gateway's MAC: locally administered, `02:00` and the gateway's
/// address, so that each node's differs.
pub fn gateway_mac(gateway: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = gateway.octets();
    MacAddr([0x02, 0x00, a, b, c, d])
}

/// The uplink: interface `name`, or the one holding `internal_ip`, read
/// from the kernel (this network namespace).
fn find_uplink(name: Option<&str>, internal_ip: Option<Ipv4Addr>) -> Result<UplinkInterface> {
    let mut netlink = Rtnetlink::open().context("cannot open rtnetlink to find the uplink")?;
    let addresses = netlink
        .all_addrs_v4()
        .context("cannot list the interfaces' addresses")?;
    let index = match name {
        Some(name) => Some(
            netlink
                .link_index(name)
                .with_context(|| format!("--uplink {name}: no such interface"))?,
        ),
        None => None,
    };
    let (index, address) = choose_uplink(&addresses, index, internal_ip).map_err(|reason| {
        let which = name.map_or_else(|| "the uplink".to_string(), |n| format!("--uplink {n}"));
        anyhow::anyhow!("{which}: {reason}")
    })?;
    let link = netlink
        .link_by_index(index)
        .with_context(|| format!("cannot read interface {index}"))?;
    Ok(UplinkInterface {
        name: link.name,
        address,
        mac: link.mac,
    })
}

/// Picks the uplink's interface and address among `addresses` (index,
/// address, prefix): on interface `index` when given (the InternalIP if
/// it holds it, else its first address), else the interface holding
/// `internal_ip`.
pub fn choose_uplink(
    addresses: &[(u32, Ipv4Addr, u8)],
    index: Option<u32>,
    internal_ip: Option<Ipv4Addr>,
) -> Result<(u32, Ipv4Cidr), String> {
    let cidr = |&(i, addr, prefix_len): &(u32, Ipv4Addr, u8)| (i, Ipv4Cidr { addr, prefix_len });
    match (index, internal_ip) {
        (Some(index), _) => {
            let own: Vec<&(u32, Ipv4Addr, u8)> =
                addresses.iter().filter(|a| a.0 == index).collect();
            own.iter()
                .find(|a| Some(a.1) == internal_ip)
                .or_else(|| own.first())
                .map(|a| cidr(a))
                .ok_or_else(|| {
                    "the interface has no IPv4 address (the node's address is taken from it)"
                        .to_string()
                })
        }
        (None, Some(ip)) => addresses.iter().find(|a| a.1 == ip).map(cidr).ok_or_else(|| {
            format!(
                "no interface of this network namespace holds the Node's InternalIP {ip} \
                 (podswitchd needs the host's network namespace: hostNetwork: true); give --uplink IFACE"
            )
        }),
        (None, None) => Err("no --uplink and no InternalIP to find it by".to_string()),
    }
}

#[cfg(test)]
mod tests;
