//! The demo's nodes: the underlay that joins them, one `podswitchd run`
//! per node namespace, and what the nodes are told through their APIs
//! (each other, the service and its endpoints).

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::sandbox::{EXTERNAL_IP, Sandbox, UNDERLAY_PREFIX_LEN};
use crate::client::ApiClient;

/// One node of the sandbox.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node name (also the namespace tag).
    pub name: &'static str,
    /// The node's address on the underlay.
    pub node_ip: Ipv4Addr,
    /// Its pod subnet.
    pub pod_cidr: &'static str,
    /// The pod gateway (`.1` of the pod subnet).
    pub gateway: Ipv4Addr,
    /// Names of its pods.
    pub pods: [&'static str; 2],
}

/// The two nodes.
pub const NODES: [NodeSpec; 2] = [
    NodeSpec {
        name: "node-a",
        node_ip: Ipv4Addr::new(192, 168, 77, 1),
        pod_cidr: "10.244.1.0/24",
        gateway: Ipv4Addr::new(10, 244, 1, 1),
        pods: ["pod-a1", "pod-a2"],
    },
    NodeSpec {
        name: "node-b",
        node_ip: Ipv4Addr::new(192, 168, 77, 2),
        pod_cidr: "10.244.2.0/24",
        gateway: Ipv4Addr::new(10, 244, 2, 1),
        pods: ["pod-b1", "pod-b2"],
    },
];

/// The service every node serves.
pub const SERVICE: &str = "default/web";
/// Its cluster IP.
pub const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Its port.
pub const SERVICE_PORT: u16 = 80;
/// The pods' port.
pub const TARGET_PORT: u16 = 8080;
/// Its node port.
pub const NODE_PORT: u16 = 30080;
/// The overlay's VXLAN network identifier.
pub const VNI: u32 = 1;
/// The overlay's UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// The uplink port's name in every node.
pub const UPLINK: &str = "up0";

impl NodeSpec {
    /// The node's files: config, log, run dir, state, IPAM store.
    pub fn dir(&self, sandbox: &Sandbox) -> PathBuf {
        sandbox.dir.join(self.name)
    }

    /// The node's API socket.
    pub fn socket(&self, sandbox: &Sandbox) -> PathBuf {
        self.dir(sandbox).join("api.sock")
    }

    /// A client of the node's API.
    pub fn api(&self, sandbox: &Sandbox) -> ApiClient {
        ApiClient::new(self.socket(sandbox)).with_timeout(Duration::from_secs(5))
    }

    fn index(&self) -> u8 {
        self.gateway.octets()[2]
    }

    /// The node's configuration file.
    fn config(&self) -> String {
        let i = self.index();
        format!(
            "[node]\nname = \"{name}\"\n\n[bridge]\ngateway = \"{gw}/24\"\ngateway_mac = \"02:00:0a:f4:{i:02x}:01\"\n\n\
             [uplink]\nport = \"{UPLINK}\"\naddress = \"{ip}/{UNDERLAY_PREFIX_LEN}\"\nmac = \"02:00:c0:a8:4d:{i:02x}\"\n\n\
             [[ports]]\nname = \"{UPLINK}\"\nkind = \"afpacket\"\n\n\
             [overlay]\nvni = {VNI}\nudp_port = {VXLAN_PORT}\n",
            name = self.name,
            gw = self.gateway,
            ip = self.node_ip,
        )
    }
}

/// The underlay: a bridge in namespace `underlay`, each node's `up0` and
/// the external namespace's `eth0` plugged into it by veth pairs.
pub fn build_underlay(sandbox: &mut Sandbox) -> Result<()> {
    sandbox.add_netns("underlay")?;
    sandbox.ip_in("underlay", &["link", "add", "br0", "type", "bridge"])?;
    sandbox.ip_in("underlay", &["link", "set", "br0", "up"])?;
    for node in &NODES {
        sandbox.add_netns(node.name)?;
        sandbox.veth(UPLINK, node.name, node.name, "underlay")?;
        sandbox.ip_in("underlay", &["link", "set", node.name, "master", "br0"])?;
    }
    sandbox.add_netns("external")?;
    sandbox.veth("eth0", "external", "external", "underlay")?;
    sandbox.ip_in("underlay", &["link", "set", "external", "master", "br0"])?;
    let address = format!("{EXTERNAL_IP}/{UNDERLAY_PREFIX_LEN}");
    sandbox.ip_in("external", &["addr", "add", &address, "dev", "eth0"])
}

/// Starts `podswitchd run` (this very executable) in each node namespace
/// and waits until every API answers that it forwards.
pub fn start_daemons(sandbox: &mut Sandbox) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the podswitchd executable")?;
    for node in &NODES {
        let dir = node.dir(sandbox);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("node.toml");
        std::fs::write(&config, node.config())?;
        let log = std::fs::File::create(dir.join("podswitchd.log"))?;
        // Its own process group: a Ctrl-C meant for the demo does not stop
        // it before the demo has detached the pods through it.
        let child = Command::new("ip")
            .process_group(0)
            .args(["netns", "exec", &sandbox.netns_name(node.name)])
            .arg(&exe)
            .args(["run", "--workers", "1", "--busy-poll-us", "50"])
            .arg("--config")
            .arg(&config)
            .arg("--run-dir")
            .arg(&dir)
            .arg("--api-socket")
            .arg(node.socket(sandbox))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start podswitchd run")?;
        sandbox.adopt_daemon(child, &exe.to_string_lossy())?;
    }
    for node in &NODES {
        wait_forwarding(sandbox, node)?;
    }
    Ok(())
}

fn wait_forwarding(sandbox: &Sandbox, node: &NodeSpec) -> Result<()> {
    let api = node.api(sandbox).with_timeout(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sandbox.check_interrupted()?;
        if let Ok(health) = api.get_json("/v1/health")
            && health["forwarding"] == true
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(node.dir(sandbox).join("podswitchd.log"))
                .unwrap_or_default();
            bail!(
                "podswitchd on {} did not start within 20 s; its log:\n{log}",
                node.name
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tells every node about the others (`POST /v1/nodes`): packets to a
/// remote pod subnet are then VXLAN-encapsulated to that node's address.
pub fn register_nodes(sandbox: &Sandbox) -> Result<()> {
    for node in &NODES {
        let api = node.api(sandbox);
        for peer in NODES.iter().filter(|p| p.name != node.name) {
            let record = json!({
                "name": peer.name,
                "node_ip": peer.node_ip.to_string(),
                "pod_cidr": peer.pod_cidr,
                "vni": VNI,
            });
            post(&api, "/v1/nodes", &record)?;
        }
    }
    Ok(())
}

/// A pod as the service sees it: its address and node.
pub struct Endpoint<'a> {
    /// The pod's address.
    pub address: Ipv4Addr,
    /// Its node.
    pub node: &'a str,
}

/// Creates the ClusterIP + NodePort service with `endpoints` on every node
/// (like kube-proxy, every node knows every service).
pub fn create_service(sandbox: &Sandbox, endpoints: &[Endpoint<'_>]) -> Result<()> {
    let (namespace, name) = SERVICE.split_once('/').unwrap_or(("default", SERVICE));
    let service = json!({
        "name": SERVICE,
        "cluster_ip": CLUSTER_IP.to_string(),
        "ports": [{"name": "http", "protocol": "TCP", "port": SERVICE_PORT,
                   "target_port": TARGET_PORT, "node_port": NODE_PORT}],
    });
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| json!({"address": e.address.to_string(), "ready": true, "node": e.node}))
        .collect();
    for node in &NODES {
        let api = node.api(sandbox);
        post(&api, "/v1/services", &service)?;
        let path = format!("/v1/services/{namespace}/{name}/endpoints");
        api.send_json("PUT", &path, &json!({ "endpoints": endpoints }))
            .with_context(|| format!("cannot set the endpoints on {}", node.name))?;
    }
    Ok(())
}

/// The mirror interface the demo asks node-a for.
pub const MIRROR_IFACE: &str = "psmirror0";

/// Mirrors node-a's uplink to a `psmirror0` interface in node-a's namespace
/// (`POST /v1/mirrors`). Returns whether the interface appeared (builds
/// that only store mirrors do not create it).
pub fn add_mirror(sandbox: &Sandbox) -> Result<bool> {
    let node = &NODES[0];
    let mirror = json!({"name": "demo-uplink", "ports": [UPLINK], "direction": "both", "iface": MIRROR_IFACE});
    post(&node.api(sandbox), "/v1/mirrors", &mirror).context("cannot add the mirror")?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if sandbox
            .ip_in(node.name, &["link", "show", MIRROR_IFACE])
            .is_ok()
        {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(false)
}

fn post(api: &ApiClient, path: &str, body: &Value) -> Result<()> {
    api.send_json("POST", path, body)
        .with_context(|| format!("API {}", api.socket_path().display()))?;
    Ok(())
}

/// The node that owns `address` (by pod subnet).
pub fn node_of(address: Ipv4Addr) -> Option<&'static NodeSpec> {
    NODES
        .iter()
        .find(|n| n.gateway.octets()[..3] == address.octets()[..3])
}

#[cfg(test)]
mod tests {
    use podswitch_dataplane::config::{NodeConfig, Snapshot};

    use super::*;

    #[test]
    fn every_node_config_is_valid_and_addresses_its_own_subnets() {
        for node in &NODES {
            let config = NodeConfig::from_toml_str(&node.config())
                .unwrap_or_else(|e| panic!("{}: {e}", node.name));
            let snapshot = Snapshot::build(&config, 1).expect("snapshot");
            assert!(snapshot.is_local_ip(node.gateway), "{}", node.name);
            assert!(snapshot.is_local_ip(node.node_ip), "{}", node.name);
            assert!(snapshot.port_by_name(UPLINK).is_some());
            assert_eq!(node_of(node.gateway).map(|n| n.name), Some(node.name));
        }
        assert!(node_of(Ipv4Addr::new(10, 244, 3, 1)).is_none());
        assert!(!NODES.iter().any(|n| n.node_ip == EXTERNAL_IP));
    }
}
