//! The node's own traffic: the host's interface and the kernel's share of
//! a shared uplink.
//!
//! **Host access.** The host's port is a TAP in the node's namespace (a
//! port of the bridge domain, like Cilium's `cilium_host`). It gets the
//! host address (a /32 of the pod subnet) and routes for the cluster's pod
//! CIDRs and the service ranges via the gateway, with the host address as
//! their source: kubelet's probes, host-network pods and node processes
//! reach pods and ClusterIPs through podswitch (so service DNAT applies to
//! them), and every reply comes back to the host address through this
//! node's bridge or the overlay.
//!
//! **Shared uplink.** The kernel keeps the node IP on the NIC, and sees
//! every frame podswitch sees there. An nftables `netdev` ingress chain on
//! the NIC drops, before the kernel's IP stack, exactly what podswitch
//! takes: VXLAN, NodePorts and the masquerade port range on the node IP,
//! and packets for pod CIDRs and service ranges. AF_PACKET taps run before
//! ingress hooks, so podswitch still reads them; the kernel never answers
//! them (no RST, no port unreachable). Nothing is taken from the kernel:
//! if podswitchd stops or dies, the node IP, its ARP and its services
//! stay as they were. The rules stay in place across restarts (they only
//! drop podswitch's traffic, which nobody else would answer correctly);
//! `podswitchd host-cleanup` removes them.
//!
//! **The host's own NodePorts.** A connection from the node to one of its
//! addresses at a NodePort is delivered locally by the kernel; an `ip nat`
//! output chain sends it to the gateway address instead (podswitch serves
//! NodePorts on every address of the node) and the postrouting chain gives
//! it the host address as source, as kube-proxy's OUTPUT and masquerade
//! chains do.
//!
//! The rules are written with `nft -f -`, as kube-proxy's nftables mode
//! does, in one transaction that replaces podswitch's tables whole.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use podswitch_dataplane::config::{Ipv4Cidr, NodeConfig, Snapshot};
use podswitch_dataplane::io::netlink::Rtnetlink;

/// The nftables tables podswitch owns.
const TABLES: [&str; 2] = ["netdev podswitch", "ip podswitch"];

/// The nftables table of the overlay's transmit TAPs (`crate::tunnel_tx`),
/// apart from [`TABLES`]: the host plan replaces those whole, this one
/// keeps a chain per TAP (a takeover's two processes each have one).
pub const TUNNEL_TX_TABLE: &str = "netdev podswitch_tx";

/// Linux's VXLAN port, when no `[overlay]` names another.
const VXLAN_PORT: u16 = 4789;

/// What the host side needs to know, from the file and the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    /// The host's interface, its address and the pod gateway.
    pub host: Option<HostInterface>,
    /// The uplink interface and node IP, when shared.
    pub shared_uplink: Option<(String, Ipv4Addr)>,
    /// Pod CIDRs and service ranges routed to podswitch.
    pub routed: Vec<Ipv4Cidr>,
    /// VXLAN's UDP port.
    pub vxlan_port: u16,
    /// NodePorts.
    pub node_ports: (u16, u16),
    /// Ports masqueraded flows use on the node IP.
    pub masquerade_ports: (u16, u16),
}

/// The host's port as the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    /// Kernel interface name (a TAP in the node's namespace).
    pub ifname: String,
    /// The host address (a /32 on it).
    pub address: Ipv4Addr,
    /// The pod gateway: next hop of the routes.
    pub gateway: Ipv4Addr,
    /// The port's MAC, when configured (the TAP gets it).
    pub mac: Option<podswitch_dataplane::wire::MacAddr>,
}

impl HostPlan {
    /// The plan for `snapshot` built from `file`; `None` when the node has
    /// neither a host port nor a shared uplink.
    pub fn of(file: &NodeConfig, snapshot: &Snapshot) -> Option<HostPlan> {
        let host = snapshot.host.and_then(|h| {
            let port = snapshot.port(h.port)?;
            Some(HostInterface {
                ifname: port.ifname.clone(),
                address: h.address,
                gateway: snapshot.gateway.address.addr,
                mac: port.mac,
            })
        });
        let shared_uplink = snapshot
            .uplink
            .filter(|_| snapshot.uplink_shared)
            .and_then(|(id, l3)| Some((snapshot.port(id)?.ifname.clone(), l3.address.addr)));
        if host.is_none() && shared_uplink.is_none() {
            return None;
        }
        let pod_subnet = snapshot.gateway.address;
        let pod_subnet = Ipv4Cidr {
            addr: pod_subnet.network(),
            prefix_len: pod_subnet.prefix_len,
        };
        let mut routed = vec![pod_subnet];
        routed.extend(snapshot.nat.cluster_cidrs.iter().copied());
        if let Some(section) = &file.host {
            routed.extend(section.service_cidrs.iter().copied());
        }
        routed.sort_by_key(|c| (u32::from(c.addr), c.prefix_len));
        routed.dedup();
        let nat = &snapshot.nat;
        Some(HostPlan {
            host,
            shared_uplink,
            routed,
            vxlan_port: file.overlay.as_ref().map_or(VXLAN_PORT, |o| o.udp_port),
            node_ports: (nat.node_port_range.first, nat.node_port_range.last),
            masquerade_ports: (nat.masquerade_ports.first, nat.masquerade_ports.last),
        })
    }

    /// The nftables ruleset (one transaction: podswitch's tables replaced whole).
    pub fn ruleset(&self) -> String {
        let mut out = String::new();
        for table in TABLES {
            // Creating first makes the delete succeed on a first start.
            let _ = writeln!(out, "table {table} {{}}\ndelete table {table}");
        }
        // An nftables interval set takes no overlapping elements.
        let set = |cidrs: &[Ipv4Cidr]| {
            let covered = |c: &Ipv4Cidr| {
                cidrs
                    .iter()
                    .any(|o| o != c && o.prefix_len <= c.prefix_len && o.contains(c.addr))
            };
            let list: Vec<String> = cidrs
                .iter()
                .filter(|c| !covered(c))
                .map(|c| c.to_string())
                .collect();
            list.join(", ")
        };
        if let Some((ifname, node_ip)) = &self.shared_uplink {
            let (np_first, np_last) = self.node_ports;
            let (mq_first, mq_last) = self.masquerade_ports;
            let _ = write!(
                out,
                "table netdev podswitch {{\n\
                 \x20 chain uplink {{\n\
                 \x20   type filter hook ingress device \"{ifname}\" priority -500; policy accept;\n\
                 \x20   ip daddr {node_ip} udp dport {vxlan} drop\n\
                 \x20   ip daddr {node_ip} meta l4proto {{ tcp, udp, sctp }} th dport {np_first}-{np_last} drop\n\
                 \x20   ip daddr {node_ip} meta l4proto {{ tcp, udp }} th dport {mq_first}-{mq_last} drop\n\
                 \x20   ip daddr {{ {routed} }} drop\n\
                 \x20 }}\n\
                 }}\n",
                vxlan = self.vxlan_port,
                routed = set(&self.routed),
            );
        }
        if let Some(host) = &self.host {
            let (np_first, np_last) = self.node_ports;
            let _ = write!(
                out,
                "table ip podswitch {{\n\
                 \x20 chain output {{\n\
                 \x20   type nat hook output priority -100; policy accept;\n\
                 \x20   ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto {{ tcp, udp, sctp }} th dport {np_first}-{np_last} dnat to {gateway}\n\
                 \x20 }}\n\
                 \x20 chain postrouting {{\n\
                 \x20   type nat hook postrouting priority 100; policy accept;\n\
                 \x20   oifname \"{ifname}\" ip saddr != {address} snat to {address}\n\
                 \x20 }}\n\
                 }}\n",
                gateway = host.gateway,
                ifname = host.ifname,
                address = host.address,
            );
        }
        out
    }

    /// Gives the host's interface its address and routes, and installs the
    /// nftables rules. Run after the ports are open (the TAP exists).
    pub fn apply(&self) -> Result<()> {
        if let Some(host) = &self.host {
            self.configure_interface(host)
                .with_context(|| format!("configuring the host's interface {}", host.ifname))?;
        }
        nft(&self.ruleset()).context("installing podswitch's nftables rules")
    }

    fn configure_interface(&self, host: &HostInterface) -> Result<()> {
        let mut nl = Rtnetlink::open()?;
        let index = nl.link_index(&host.ifname)?;
        if let Some(mac) = host.mac
            && nl.link_mac(index)? != mac
        {
            nl.link_set_mac(index, mac)?;
        }
        nl.link_set_up(index)?;
        if !nl.addrs_v4(index)?.contains(&(host.address, 32)) {
            nl.addr_add_v4(index, host.address, 32)?;
        }
        for cidr in &self.routed {
            nl.route_replace_v4_onlink(
                (cidr.network(), cidr.prefix_len),
                host.gateway,
                index,
                host.address,
            )?;
        }
        Ok(())
    }
}

/// Removes podswitch's nftables tables (`podswitchd host-cleanup`), the
/// transmit TAPs' redirects included; absent tables are not an error.
pub fn remove_rules() -> Result<()> {
    let mut script = String::new();
    for table in TABLES.iter().chain([&TUNNEL_TX_TABLE]) {
        let _ = writeln!(script, "table {table} {{}}\ndelete table {table}");
    }
    nft(&script).context("removing podswitch's nftables rules")
}

/// Runs `nft -f -` with `script`.
pub(crate) fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (install the nftables package)")?;
    child
        .stdin
        .take()
        .context("nft's stdin")?
        .write_all(script.as_bytes())
        .context("writing to nft")?;
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft -f - failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// An uplink without a configured `mtu` takes its interface's MTU (the
/// pods' default MTU follows it: minus the VXLAN overhead with the
/// overlay). An interface that cannot be read keeps the default; the port
/// reports why when it is opened.
pub fn settle_uplink_mtu(file: &mut NodeConfig) {
    let Some(uplink) = &file.uplink else {
        return;
    };
    let Some(port) = file.ports.iter_mut().find(|p| p.name == uplink.port) else {
        return;
    };
    if port.mtu.is_some() {
        return;
    }
    let ifname = port.ifname.clone().unwrap_or_else(|| port.name.clone());
    let link = Rtnetlink::open().and_then(|mut nl| nl.link_by_name(&ifname));
    if let Ok(link) = link
        && let Ok(mtu) = u16::try_from(link.mtu)
    {
        port.mtu = Some(mtu.clamp(576, 9000));
    }
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`) in
/// the daemon's namespace.
pub fn kernel_ephemeral_ports() -> Result<(u16, u16)> {
    let path = "/proc/sys/net/ipv4/ip_local_port_range";
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut parts = text.split_whitespace().map(str::parse::<u16>);
    match (parts.next(), parts.next()) {
        (Some(Ok(first)), Some(Ok(last))) => Ok((first, last)),
        _ => bail!("{path}: unexpected contents {text:?}"),
    }
}

/// With a shared uplink, masqueraded flows use ports on the node IP, whose
/// replies the kernel must leave to podswitch: the range must not meet the
/// kernel's own ephemeral ports. Unset, it becomes the ports above them.
pub fn settle_masquerade_ports(file: &mut NodeConfig) -> Result<()> {
    if !file.uplink.as_ref().is_some_and(|u| u.shared) {
        return Ok(());
    }
    let (first, last) = kernel_ephemeral_ports()?;
    match file.nat.masquerade_ports {
        None if last < 65535 - 1023 => {
            file.nat.masquerade_ports = Some(
                format!("{}-65535", last + 1)
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            );
            Ok(())
        }
        None => bail!(
            "uplink.shared: the kernel's ephemeral ports {first}-{last} leave too few for masquerade; set nat.masquerade_ports outside them"
        ),
        Some(range) if range.first <= last && first <= range.last => bail!(
            "nat.masquerade_ports = {range}: with uplink.shared it must not meet the kernel's ephemeral ports {first}-{last} (net.ipv4.ip_local_port_range), whose replies the kernel keeps"
        ),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> NodeConfig {
        let text = format!(
            r#"
[bridge]
gateway = "10.244.1.1/24"
gateway_mac = "02:00:0a:f4:01:01"
[uplink]
port = "up0"
address = "192.168.100.1/24"
mac = "02:00:c0:a8:64:01"
shared = true
[[ports]]
name = "host"
kind = "tap"
ifname = "podswitch0"
[[ports]]
name = "up0"
kind = "afpacket"
[nat]
cluster_cidrs = ["10.244.0.0/16"]
masquerade_ports = "61000-65535"
{extra}
"#
        );
        NodeConfig::from_toml_str(&text).unwrap()
    }

    #[test]
    fn the_ruleset_steers_podswitchs_traffic_and_the_hosts_node_ports() {
        let file = config("[host]\nport = \"host\"\n");
        let snapshot = Snapshot::build(&file, 1).unwrap();
        let plan = HostPlan::of(&file, &snapshot).unwrap();
        assert_eq!(
            plan.routed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.96.0.0/12", "10.244.0.0/16", "10.244.1.0/24"]
        );
        let rules = plan.ruleset();
        for line in [
            "delete table netdev podswitch",
            "type filter hook ingress device \"up0\" priority -500; policy accept;",
            "ip daddr 192.168.100.1 udp dport 4789 drop",
            "ip daddr 192.168.100.1 meta l4proto { tcp, udp, sctp } th dport 30000-32767 drop",
            "ip daddr 192.168.100.1 meta l4proto { tcp, udp } th dport 61000-65535 drop",
            "ip daddr { 10.96.0.0/12, 10.244.0.0/16 } drop",
            "th dport 30000-32767 dnat to 10.244.1.1",
            "oifname \"podswitch0\" ip saddr != 10.244.1.0 snat to 10.244.1.0",
        ] {
            assert!(rules.contains(line), "{line} missing from\n{rules}");
        }
    }

    #[test]
    fn no_host_and_no_shared_uplink_needs_nothing() {
        let mut file = config("");
        file.uplink.as_mut().unwrap().shared = false;
        let snapshot = Snapshot::build(&file, 1).unwrap();
        assert_eq!(HostPlan::of(&file, &snapshot), None);
    }

    #[test]
    fn masquerade_ports_keep_clear_of_the_kernels() {
        let (_, last) = kernel_ephemeral_ports().unwrap();
        let mut file = config("");
        file.nat.masquerade_ports = None;
        settle_masquerade_ports(&mut file).unwrap();
        let range = file.nat.masquerade_ports.unwrap();
        assert_eq!((range.first, range.last), (last + 1, 65535));
        file.nat.masquerade_ports = Some("1024-65535".parse().unwrap());
        let error = settle_masquerade_ports(&mut file).unwrap_err().to_string();
        assert!(
            error.contains("nat.masquerade_ports = 1024-65535"),
            "{error}"
        );
    }
}
