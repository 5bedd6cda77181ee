//! A real node (issue 21): the uplink is a NIC shared with the node's own
//! network stack, which keeps the node IP and a TCP server of its own;
//! the host reaches pods and ClusterIPs through podswitch's host port.
//!
//! Topology: a switch namespace bridges three underlay veths — node 1,
//! node 2 (both podswitch, both with a shared uplink and a host port) and
//! an "external" namespace. Checked:
//! - from external: the kernel's server on node 1's IP, NodePorts with
//!   both traffic policies (the source the endpoint sees), a NodePort to
//!   an endpoint on node 2; pods talk across nodes over VXLAN;
//! - a capture on node 1's uplink has no RST and no ICMP unreachable from
//!   the node IP (the kernel never answers podswitch's traffic), and ARP
//!   for the node IP is answered once;
//! - from node 1's own stack: a local pod, a remote pod, ClusterIPs and
//!   its own NodePort; a pod reaches the kernel's server on the node IP;
//! - pod MTU = uplink MTU − 50, and a full-size transfer across nodes
//!   needs no ICMP (the NIC's MTU, read by podswitchd, is not 1500);
//! - podswitchd stopped by SIGTERM or kill -9: the kernel's server still
//!   answers on the node IP.
//!
//! Needs root, nft and tcpdump; skips with a printed reason otherwise.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use podswitch_tests::live::{
    Daemon, Netns, cni_add, ip, link_mtu, root_or_skip, serve, tcp_ask, tcp_transfer, veth,
    wait_reachable,
};
use podswitch_tests::overlay_nodes::{VNI, add_node};

const NODE1: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 1);
const EXTERNAL: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 9);
const KERNEL_PORT: u16 = 8022;
/// Not the default, so that the pods' MTU shows it was read from the NIC.
const UNDERLAY_MTU: &str = "1600";

fn uplink_mac(n: u8) -> String {
    format!("02:00:c0:a8:c8:0{n}")
}

fn node_config(n: u8) -> String {
    let mac = uplink_mac(n);
    format!(
        "[node]\nname = \"n{n}\"\n\
         [bridge]\ngateway = \"10.244.{n}.1/24\"\ngateway_mac = \"02:00:0a:f4:0{n}:01\"\n\
         [uplink]\nport = \"up\"\naddress = \"192.168.200.{n}/24\"\nmac = \"{mac}\"\nshared = true\n\
         [host]\nport = \"host\"\n\
         [[ports]]\nname = \"up\"\nkind = \"afpacket\"\nifname = \"u{n}\"\n\
         [[ports]]\nname = \"host\"\nkind = \"tap\"\nifname = \"psh{n}\"\nmac = \"02:00:0a:f4:0{n}:fe\"\n\
         [nat]\ncluster_cidrs = [\"10.244.0.0/16\"]\n\
         [overlay]\nvni = {VNI}\n"
    )
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// A capture on `dev` in `ns` until dropped (then read with [`Capture::count`]).
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(ns: &Netns, dev: &str) -> Capture {
        let file = std::env::temp_dir().join(format!("{}-{dev}.pcap", ns.name));
        let child = Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "tcpdump", "-i", dev, "-p", "-U", "-n",
            ])
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
        std::thread::sleep(Duration::from_millis(700));
        Capture { child, file }
    }

    /// Stops the capture; the packets matching `filter`, one line each.
    fn matching(mut self, filter: &str) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY-free: SIGTERM to the child we started, by its PID.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let out = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&self.file)
            .arg(filter)
            .output()
            .expect("tcpdump -r");
        let _ = std::fs::remove_file(&self.file);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn ask(ns: &Netns, addr: Ipv4Addr, port: u16) -> Result<(String, String), String> {
    let target = SocketAddrV4::new(addr, port);
    ns.run(move || tcp_ask(target))
}

struct Cluster {
    d1: Daemon,
    d2: Daemon,
    pods: Vec<Netns>,
    nodes: Vec<Netns>,
    _switch: Netns,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in [&mut self.d1, &mut self.d2] {
            let _ = d.stop();
            let _ = std::fs::remove_dir_all(&d.run_dir);
        }
        self.pods.clear();
        self.nodes.clear();
    }
}

fn cluster(tag: &str) -> (Cluster, Netns, Vec<Ipv4Addr>) {
    let switch = Netns::new(&format!("{tag}sw"));
    ip(&["-n", &switch.name, "link", "add", "br0", "type", "bridge"]);
    ip(&["-n", &switch.name, "link", "set", "br0", "up"]);
    let n1 = Netns::new(&format!("{tag}n1"));
    let n2 = Netns::new(&format!("{tag}n2"));
    let ext = Netns::new(&format!("{tag}ext"));
    for (dev, ns, port, addr) in [
        ("u1", &n1, "s1", "192.168.200.1/24"),
        ("u2", &n2, "s2", "192.168.200.2/24"),
        ("ue", &ext, "s9", "192.168.200.9/24"),
    ] {
        veth(dev, ns, port, &switch);
        ip(&[
            "-n",
            &switch.name,
            "link",
            "set",
            port,
            "mtu",
            UNDERLAY_MTU,
            "master",
            "br0",
        ]);
        ip(&["-n", &ns.name, "link", "set", dev, "mtu", UNDERLAY_MTU]);
        ip(&["-n", &ns.name, "addr", "add", addr, "dev", dev]);
    }
    for (n, ns) in [(1, &n1), (2, &n2)] {
        ip(&[
            "-n",
            &ns.name,
            "link",
            "set",
            &format!("u{n}"),
            "address",
            &uplink_mac(n),
        ]);
    }
    let d1 = Daemon::start(&n1, &format!("{tag}1"), &node_config(1), 2);
    let d2 = Daemon::start(&n2, &format!("{tag}2"), &node_config(2), 2);
    for (d, name, node_ip, cidr) in [
        (&d1, "n2", "192.168.200.2", "10.244.2.0/24"),
        (&d2, "n1", "192.168.200.1", "10.244.1.0/24"),
    ] {
        add_node(d, name, node_ip, cidr, &[]);
    }
    let p1 = Netns::new(&format!("{tag}p1"));
    let p2 = Netns::new(&format!("{tag}p2"));
    let ips = vec![cni_add(&d1, &p1, None), cni_add(&d2, &p2, None)];
    let c = Cluster {
        d1,
        d2,
        pods: vec![p1, p2],
        nodes: vec![n1, n2],
        _switch: switch,
    };
    (c, ext, ips)
}

/// Services on node 1: `web` (NodePort 30080, Cluster) and `local`
/// (30081, Local) on pod 1, `remote` (30082) on pod 2 (node 2).
fn add_services(d: &Daemon, ips: &[Ipv4Addr]) {
    for (name, vip, port, policy, endpoint, node) in [
        (
            "default/web",
            "10.96.0.10",
            "http:80:8080/TCP,nodeport=30080",
            "Cluster",
            ips[0],
            "n1",
        ),
        (
            "default/local",
            "10.96.0.11",
            "http:80:8080/TCP,nodeport=30081",
            "Local",
            ips[0],
            "n1",
        ),
        (
            "default/remote",
            "10.96.0.12",
            "http:80:8080/TCP,nodeport=30082",
            "Cluster",
            ips[1],
            "n2",
        ),
    ] {
        d.ctl_ok(&[
            "service",
            "add",
            name,
            "--cluster-ip",
            vip,
            "--port",
            port,
            "--external-traffic-policy",
            policy,
        ]);
        d.ctl_ok(&[
            "endpoint",
            "add",
            name,
            &endpoint.to_string(),
            "--node",
            node,
        ]);
    }
}

#[test]
fn shared_uplink_host_access_and_node_ports() {
    if !root_or_skip("shared_uplink_host_access_and_node_ports") {
        return;
    }
    if !have("nft") || !have("tcpdump") {
        eprintln!("skipping shared_uplink_host_access_and_node_ports: needs nft and tcpdump");
        return;
    }
    let (mut c, ext, ips) = cluster("rn");
    let (p1, p2) = (&c.pods[0], &c.pods[1]);
    let n1 = &c.nodes[0];
    add_services(&c.d1, &ips);
    let _kernel = serve(n1, "kernel", NODE1, &[KERNEL_PORT]);
    let _s1 = serve(p1, "p1", ips[0], &[8080]);
    let _s2 = serve(p2, "p2", ips[1], &[8080]);
    assert!(
        wait_reachable(p1, ips[1], Duration::from_secs(5)),
        "pods across nodes"
    );

    // From outside, with a capture on node 1's uplink.
    ip(&["-n", &ext.name, "neigh", "flush", "dev", "ue"]);
    let capture = Capture::start(n1, "u1");
    let arp_capture = Capture::start(&ext, "ue");
    let gateway = "10.244.1.1".to_string();
    let external = EXTERNAL.to_string();
    assert_eq!(
        ask(&ext, NODE1, KERNEL_PORT),
        Ok(("kernel".into(), external.clone()))
    );
    assert_eq!(
        ask(&ext, NODE1, 30080),
        Ok(("p1".into(), gateway.clone())),
        "Cluster: masqueraded"
    );
    assert_eq!(
        ask(&ext, NODE1, 30081),
        Ok(("p1".into(), external.clone())),
        "Local: the client"
    );
    assert_eq!(
        ask(&ext, NODE1, 30082),
        Ok(("p2".into(), gateway.clone())),
        "to node 2"
    );
    assert_eq!(
        ask(p1, ips[1], 8080),
        Ok(("p2".into(), ips[0].to_string())),
        "over VXLAN"
    );
    // A NodePort with no service and a UDP datagram to VXLAN's port that is
    // no VXLAN: podswitch drops them; the kernel must not answer either.
    assert!(ask(&ext, NODE1, 30999).is_err());
    let from_node = capture.matching(
        "src host 192.168.200.1 and ((tcp[tcpflags] & tcp-rst != 0) or icmp[icmptype] == icmp-unreach)",
    );
    assert_eq!(
        from_node,
        Vec::<String>::new(),
        "the kernel answered podswitch's traffic"
    );
    let arp_replies = arp_capture.matching("arp and arp[6:2] == 2 and arp[14:4] == 0xc0a8c801");
    assert_eq!(arp_replies.len(), 1, "ARP for the node IP: {arp_replies:?}");

    // From the node's own stack: pods, ClusterIPs, its own NodePort.
    let host = "10.244.1.0".to_string();
    assert_eq!(
        ask(n1, ips[0], 8080),
        Ok(("p1".into(), host.clone())),
        "local pod"
    );
    assert_eq!(
        ask(n1, ips[1], 8080),
        Ok(("p2".into(), host.clone())),
        "remote pod"
    );
    assert_eq!(
        ask(n1, Ipv4Addr::new(10, 96, 0, 10), 80).map(|a| a.0),
        Ok("p1".into())
    );
    assert_eq!(
        ask(n1, Ipv4Addr::new(10, 96, 0, 12), 80).map(|a| a.0),
        Ok("p2".into())
    );
    assert_eq!(
        ask(n1, NODE1, 30080).map(|a| a.0),
        Ok("p1".into()),
        "own NodePort"
    );
    // A pod reaches the node IP's own server.
    assert_eq!(
        ask(p1, NODE1, KERNEL_PORT),
        Ok(("kernel".into(), ips[0].to_string()))
    );

    // MTU: the NIC's 1600 − 50, and a full-size transfer needs no ICMP.
    assert_eq!(link_mtu(p1, "eth0"), 1550);
    assert_eq!(link_mtu(p2, "eth0"), 1550);
    let unreach_before = p1.snmp("Icmp", "InDestUnreachs");
    let (verified, _) = tcp_transfer(p1, p2, ips[1], 9000, 16 << 20);
    assert_eq!(verified, 16 << 20);
    assert_eq!(
        p1.snmp("Icmp", "InDestUnreachs"),
        unreach_before,
        "no frag-needed"
    );

    // podswitchd gone: the node keeps its address and its server.
    assert!(c.d1.stop().is_some(), "SIGTERM");
    assert_eq!(
        ask(&ext, NODE1, KERNEL_PORT).map(|a| a.0),
        Ok("kernel".into()),
        "after SIGTERM"
    );
    let (run_dir, config) = (c.d1.run_dir.clone(), run_dir_config(&c.d1));
    c.d1 = Daemon::start_with(n1, run_dir, config, 1);
    assert_eq!(
        ask(n1, ips[0], 8080).map(|a| a.0),
        Ok("p1".into()),
        "restarted"
    );
    assert!(
        c.d1.stop_with(9, Duration::from_secs(5)).is_some(),
        "kill -9"
    );
    assert_eq!(
        ask(&ext, NODE1, KERNEL_PORT).map(|a| a.0),
        Ok("kernel".into()),
        "after kill -9"
    );
}

fn run_dir_config(d: &Daemon) -> std::path::PathBuf {
    d.run_dir.join("node.toml")
}
