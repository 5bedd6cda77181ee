//! Two VXLAN nodes in real namespaces, for the overlay's live tests
//! (`tests/overlay.rs`, `tests/overlay_gso.rs`): node namespaces joined by
//! a veth underlay (192.168.200.0/24), podswitchd nodes with CNI pods, and
//! a kernel node built as flannel's vxlan backend builds one.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::live::{Daemon, Netns, cni_add, ip, veth};

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// The overlay's VNI.
pub const VNI: &str = "7";
/// Node 1's uplink MAC.
pub const U1_MAC: &str = "02:00:c0:a8:c8:01";
/// Node 2's uplink MAC.
pub const U2_MAC: &str = "02:00:c0:a8:c8:02";
/// Node 1's IP.
pub const N1_IP: &str = "192.168.200.1";
/// Node 2's IP.
pub const N2_IP: &str = "192.168.200.2";
/// podswitch's default VTEP MAC of node 1 (02:56 + node IP).
pub const N1_VTEP: &str = "02:56:c0:a8:c8:01";

/// Node `n`'s config: gateway 10.244.n.1/24, AF_PACKET uplink `un`, overlay VNI 7.
pub fn node_config(n: u8, uplink_mac: &str) -> String {
    format!(
        "[node]\nname = \"n{n}\"\n\
         [bridge]\ngateway = \"10.244.{n}.1/24\"\ngateway_mac = \"02:00:0a:f4:0{n}:01\"\n\
         [uplink]\nport = \"up\"\naddress = \"192.168.200.{n}/24\"\nmac = \"{uplink_mac}\"\n\
         [[ports]]\nname = \"up\"\nkind = \"afpacket\"\nifname = \"u{n}\"\n\
         [overlay]\nvni = {VNI}\n"
    )
}

/// Node namespaces and the underlay veth (u1 in n1, u2 in n2) with fixed MACs.
pub fn underlay(tag: &str) -> (Netns, Netns) {
    let n1 = Netns::new(&format!("{tag}n1"));
    let n2 = Netns::new(&format!("{tag}n2"));
    veth("u1", &n1, "u2", &n2);
    ip(&["-n", &n1.name, "link", "set", "u1", "address", U1_MAC]);
    ip(&["-n", &n2.name, "link", "set", "u2", "address", U2_MAC]);
    (n1, n2)
}

/// A counter of a stats JSON (0 if absent).
pub fn stat(stats: &serde_json::Value, group: &str, key: &str) -> u64 {
    stats[group][key].as_u64().unwrap_or(0)
}

/// Every `vxlan_*` drop counter of a daemon.
pub fn vxlan_drops(d: &Daemon) -> Vec<(String, u64)> {
    let stats = d.fresh_stats();
    stats["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| k.starts_with("vxlan_") && v.as_u64() != Some(0))
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect()
}

/// Two podswitch nodes and their pods, stopped and removed when dropped.
pub struct TwoNodes {
    // Field order is drop order: daemons stop before their namespaces go.
    /// Node 1's daemon.
    pub d1: Daemon,
    /// Node 2's daemon.
    pub d2: Daemon,
    /// The pods, node 1's first.
    pub pods: Vec<Netns>,
    /// The node namespaces.
    pub nodes: (Netns, Netns),
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        for d in [&mut self.d1, &mut self.d2] {
            let _ = d.stop();
            let _ = std::fs::remove_dir_all(&d.run_dir);
        }
    }
}

/// `podswitchctl node add` on `daemon`: the remote node `name` with our VNI, plus `extra` flags.
pub fn add_node(daemon: &Daemon, name: &str, node_ip: &str, pod_cidr: &str, extra: &[&str]) {
    let mut args = vec![
        "node",
        "add",
        name,
        "--node-ip",
        node_ip,
        "--pod-cidr",
        pod_cidr,
        "--vni",
        VNI,
    ];
    args.extend_from_slice(extra);
    daemon.ctl_ok(&args);
}

/// Two podswitch nodes, `per_node` CNI pods each (pod MTU `mtu`, or the daemon's default).
pub fn two_podswitch_nodes(
    tag: &str,
    per_node: usize,
    mtu: Option<u32>,
) -> (TwoNodes, Vec<Ipv4Addr>) {
    two_podswitch_nodes_with(tag, per_node, mtu, &[])
}

/// [`two_podswitch_nodes`] with extra `podswitchd run` arguments for node 1.
pub fn two_podswitch_nodes_with(
    tag: &str,
    per_node: usize,
    mtu: Option<u32>,
    node1_args: &[&str],
) -> (TwoNodes, Vec<Ipv4Addr>) {
    let (n1, n2) = underlay(tag);
    let run_dir =
        std::env::temp_dir().join(format!("podswitch-live-{}-{tag}1", std::process::id()));
    std::fs::create_dir_all(&run_dir).unwrap();
    let config = run_dir.join("node.toml");
    std::fs::write(&config, node_config(1, U1_MAC)).unwrap();
    let d1 = Daemon::start_with_args(&n1, run_dir, config, 2, node1_args);
    let d2 = Daemon::start(&n2, &format!("{tag}2"), &node_config(2, U2_MAC), 2);
    add_node(&d1, "n2", N2_IP, "10.244.2.0/24", &[]);
    add_node(&d2, "n1", N1_IP, "10.244.1.0/24", &[]);
    let mut pods = Vec::new();
    let mut ips = Vec::new();
    for (n, d) in [(1, &d1), (2, &d2)] {
        for k in 0..per_node {
            let pod = Netns::new(&format!("{tag}p{n}{k}"));
            ips.push(cni_add(d, &pod, mtu));
            pods.push(pod);
        }
    }
    (
        TwoNodes {
            d1,
            d2,
            pods,
            nodes: (n1, n2),
        },
        ips,
    )
}

/// The kernel node's VTEP MAC (podswitch's default for its node IP).
pub const KERNEL_VTEP: &str = "02:56:c0:a8:c8:02";
/// The kernel node's pod.
pub const KPOD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);

/// Registers the kernel node 2 with `d1` and attaches a CNI pod `name` to
/// it; returns the pod and its address.
pub fn pod_beside_the_kernel_node(d1: &Daemon, name: &str) -> (Netns, Ipv4Addr) {
    add_node(
        d1,
        "n2",
        N2_IP,
        "10.244.2.0/24",
        &["--vtep-mac", KERNEL_VTEP],
    );
    let pod = Netns::new(name);
    let pod_ip = cni_add(d1, &pod, None);
    (pod, pod_ip)
}

/// A podswitch node 1 beside a kernel vxlan node 2, each with a pod.
pub struct KernelPeer {
    /// Node 1's namespace (podswitch).
    pub n1: Netns,
    /// Node 2's namespace (the kernel's vxlan and bridge).
    pub n2: Netns,
    /// Node 1's daemon.
    pub d1: Daemon,
    /// The pod on node 1 and its address.
    pub pod: Netns,
    /// Its address.
    pub pod_ip: Ipv4Addr,
    /// The pod on node 2 (at [`KPOD_IP`]).
    pub kpod: Netns,
}

/// Builds a [`KernelPeer`] (namespaces named after `tag`; `uplink` added
/// to podswitch's uplink port section), runs `test` on it, then checks
/// that no receiving kernel (both pods, the kernel node) counted a
/// checksum error and that podswitch dropped no VXLAN frame, and tears it
/// down, also when `test` panics.
pub fn with_kernel_peer(tag: &str, uplink: &str, test: impl FnOnce(&KernelPeer)) {
    let (n1, n2) = underlay(tag);
    let kpod = Netns::new(&format!("{tag}kpod"));
    kernel_node(&n2, &kpod, KERNEL_VTEP);
    let config =
        node_config(1, U1_MAC).replace("ifname = \"u1\"\n", &format!("ifname = \"u1\"\n{uplink}"));
    let d1 = Daemon::start(&n1, &format!("{tag}1"), &config, 2);
    let (pod, pod_ip) = pod_beside_the_kernel_node(&d1, &format!("{tag}pod"));
    let mut peer = KernelPeer {
        n1,
        n2,
        d1,
        pod,
        pod_ip,
        kpod,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let receivers = [&peer.pod, &peer.kpod, &peer.n2];
        let errors_before = receivers.map(checksum_errors);
        test(&peer);
        assert_eq!(
            receivers.map(checksum_errors),
            errors_before,
            "checksum errors counted by the podswitch pod, the kernel pod and the kernel node"
        );
        let drops = vxlan_drops(&peer.d1);
        assert!(drops.is_empty(), "{drops:?}");
    }));
    let _ = peer.d1.stop();
    let _ = std::fs::remove_dir_all(&peer.d1.run_dir);
    drop(peer);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Node 2 as flannel's vxlan backend builds it: `cni0` bridge with the pod,
/// `vxlan0` (VNI 7, port 4789, VTEP MAC `vtep`) routed, with a permanent
/// neighbour and an FDB entry for podswitch's VTEP. The underlay veth keeps
/// its default offloads: UDP-tunnel segmentation on, so `vxlan0` hands it
/// (and podswitch) whole tunnel GSO super-frames.
pub fn kernel_node(n2: &Netns, pod: &Netns, vtep: &str) {
    let n = n2.name.as_str();
    ip(&["-n", n, "addr", "add", "192.168.200.2/24", "dev", "u2"]);
    ip(&["-n", n, "link", "add", "cni0", "type", "bridge"]);
    ip(&["-n", n, "addr", "add", "10.244.2.1/24", "dev", "cni0"]);
    ip(&["-n", n, "link", "set", "cni0", "up"]);
    ip(&[
        "-n",
        n,
        "link",
        "add",
        "vxlan0",
        "address",
        vtep,
        "type",
        "vxlan",
        "id",
        VNI,
        "dstport",
        "4789",
        "local",
        N2_IP,
        "dev",
        "u2",
        "nolearning",
    ]);
    ip(&["-n", n, "link", "set", "vxlan0", "mtu", "1450", "up"]);
    ip(&["-n", n, "addr", "add", "10.244.2.0/32", "dev", "vxlan0"]);
    ip(&[
        "-n",
        n,
        "route",
        "add",
        "10.244.1.0/24",
        "via",
        "10.244.1.0",
        "dev",
        "vxlan0",
        "onlink",
    ]);
    ip(&[
        "-n",
        n,
        "neigh",
        "add",
        "10.244.1.0",
        "lladdr",
        N1_VTEP,
        "dev",
        "vxlan0",
        "nud",
        "permanent",
    ]);
    let fdb = Command::new("bridge")
        .args([
            "-n", n, "fdb", "append", N1_VTEP, "dev", "vxlan0", "dst", N1_IP,
        ])
        .output()
        .expect("bridge fdb");
    assert!(
        fdb.status.success(),
        "{}",
        String::from_utf8_lossy(&fdb.stderr)
    );
    n2.run(|| std::fs::write("/proc/sys/net/ipv4/ip_forward", "1"))
        .unwrap();
    ip(&[
        "link", "add", "ps-kpod", "netns", &pod.name, "type", "veth", "peer", "name", "kpod",
        "netns", n,
    ]);
    ip(&["-n", &pod.name, "link", "set", "ps-kpod", "name", "eth0"]);
    ip(&["-n", &pod.name, "link", "set", "eth0", "mtu", "1450", "up"]);
    ip(&[
        "-n",
        &pod.name,
        "addr",
        "add",
        "10.244.2.2/24",
        "dev",
        "eth0",
    ]);
    ip(&[
        "-n",
        &pod.name,
        "route",
        "add",
        "default",
        "via",
        "10.244.2.1",
    ]);
    ip(&["-n", n, "link", "set", "kpod", "master", "cni0", "up"]);
}

/// `ethtool -k dev` in `ns`.
pub fn ethtool_features(ns: &Netns, dev: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ethtool", "-k", dev])
        .output()
        .expect("ethtool");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The checksum errors a namespace's kernel counted on receive: TCP, UDP
/// (outer VXLAN headers included) and IPv4 header errors.
pub fn checksum_errors(ns: &Netns) -> [u64; 3] {
    [
        ns.snmp("Tcp", "InCsumErrors"),
        ns.snmp("Udp", "InCsumErrors"),
        ns.snmp("Ip", "InHdrErrors"),
    ]
}
