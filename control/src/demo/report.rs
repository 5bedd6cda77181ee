//! What the demo prints: the pods, who answered each request, the
//! conntrack entries and counters of every node (through `podswitchctl`,
//! run in-process, so the output is exactly what the user will see), and
//! the commands to look further.

use std::io::Write;
use std::path::PathBuf;

use super::nodes::{
    CLUSTER_IP, MIRROR_IFACE, NODE_PORT, NODES, SERVICE, SERVICE_PORT, TARGET_PORT, UPLINK,
    VXLAN_PORT,
};
use super::pods::Pod;
use super::sandbox::Sandbox;
use super::traffic::Exchange;

/// Prints the pods and their addresses.
pub fn pods(out: &mut dyn Write, plugin: &std::path::Path, pods: &[Pod]) -> std::io::Result<()> {
    writeln!(
        out,
        "pods (attached by the CNI plugin {}):",
        plugin.display()
    )?;
    for pod in pods {
        writeln!(
            out,
            "  {:<8} {:<8} {:<12} netns {}",
            pod.name,
            pod.node.name,
            pod.address,
            pod.netns.display()
        )?;
    }
    let endpoints: Vec<String> = pods.iter().map(|p| p.address.to_string()).collect();
    writeln!(
        out,
        "service {SERVICE}: ClusterIP {CLUSTER_IP}:{SERVICE_PORT} -> :{TARGET_PORT}, NodePort {NODE_PORT} on every node; endpoints {}",
        endpoints.join(", ")
    )
}

/// Prints one line per exchange.
pub fn traffic(out: &mut dyn Write, exchanges: &[Exchange]) -> std::io::Result<()> {
    writeln!(out, "traffic:")?;
    for exchange in exchanges {
        let result = match &exchange.outcome {
            Ok(answer) if exchange.target.starts_with("ping") => answer.clone(),
            Ok(answer) => format!("answered by {answer}{}", node_suffix(answer)),
            Err(why) => format!("FAILED: {why}"),
        };
        writeln!(
            out,
            "  {:<9} -> {:<48} {result}",
            exchange.client, exchange.target
        )?;
    }
    Ok(())
}

/// ` (node-x)` for an answer `pod address`.
fn node_suffix(answer: &str) -> String {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|ip| ip.parse().ok())
        .and_then(super::nodes::node_of)
        .map(|node| format!(" ({})", node.name))
        .unwrap_or_default()
}

/// Runs `podswitchctl --socket <node's socket> ARGS` in-process and prints
/// its output (or its error) indented under `title`.
fn ctl_section(
    out: &mut dyn Write,
    sandbox: &Sandbox,
    title: &str,
    args: &[&str],
) -> std::io::Result<()> {
    for node in &NODES {
        let socket = node.socket(sandbox);
        let mut argv = vec!["podswitchctl".to_string(), "--socket".into()];
        argv.push(socket.display().to_string());
        argv.extend(args.iter().map(|a| a.to_string()));
        let (mut text, mut err) = (Vec::new(), Vec::new());
        crate::ctl::run_args(argv, &mut text, &mut err);
        text.extend_from_slice(&err);
        writeln!(
            out,
            "{title} on {} (podswitchctl {}):",
            node.name,
            args.join(" ")
        )?;
        for line in String::from_utf8_lossy(&text).lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

/// Prints the conntrack entries and the counters of every node, and which
/// pod each CNI port (`cni-…`) belongs to.
pub fn node_state(out: &mut dyn Write, sandbox: &Sandbox, pods: &[Pod]) -> std::io::Result<()> {
    ctl_section(out, sandbox, "conntrack", &["conntrack", "list"])?;
    ctl_section(out, sandbox, "counters", &["stats"])?;
    let mut legend = Vec::new();
    for node in &NODES {
        let ports = node.api(sandbox).get_json("/v1/ports").unwrap_or_default();
        for port in ports["ports"].as_array().into_iter().flatten() {
            let netns = port["netns"].as_str().unwrap_or_default();
            if let Some(pod) = pods.iter().find(|p| p.netns.as_os_str() == netns) {
                legend.push(format!(
                    "{} = {}",
                    port["name"].as_str().unwrap_or("?"),
                    pod.name
                ));
            }
        }
    }
    writeln!(out, "CNI ports: {}", legend.join(", "))
}

/// `podswitchctl` next to this executable, or on the PATH.
fn ctl_command() -> String {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("podswitchctl"))
        .filter(|ctl| ctl.exists())
        .unwrap_or_else(|| PathBuf::from("podswitchctl"))
        .display()
        .to_string()
}

/// Prints the commands that explore this sandbox further.
pub fn explore(
    out: &mut dyn Write,
    sandbox: &Sandbox,
    pods: &[Pod],
    mirror: bool,
) -> std::io::Result<()> {
    let ctl = ctl_command();
    let node = &NODES[0];
    let socket = node.socket(sandbox);
    let node_ns = sandbox.netns_name(node.name);
    writeln!(
        out,
        "look further (while it runs; `podswitchd demo --keep` leaves it up):"
    )?;
    for command in [
        "stats",
        "port list",
        "conntrack list",
        "node list",
        "service list",
    ] {
        writeln!(out, "  {ctl} --socket {} {command}", socket.display())?;
    }
    writeln!(
        out,
        "  ip netns exec {node_ns} tcpdump -nni {UPLINK} udp port {VXLAN_PORT}     # {}'s underlay: VXLAN between the nodes",
        node.name
    )?;
    if mirror {
        writeln!(
            out,
            "  ip netns exec {node_ns} tcpdump -nni {MIRROR_IFACE}     # the mirror of {}'s {UPLINK}, as podswitch sees it",
            node.name
        )?;
    }
    if let Some(pod) = pods.first() {
        writeln!(
            out,
            "  ip netns exec {} tcpdump -nni eth0     # {}'s interface",
            sandbox.netns_name(pod.name),
            pod.name
        )?;
    }
    writeln!(
        out,
        "  ip netns list | grep {}     # every namespace of this sandbox",
        sandbox.prefix
    )
}
