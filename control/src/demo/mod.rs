//! `podswitchd demo`: podswitch at work in one command, without Kubernetes.
//!
//! It builds a sandbox made only of network namespaces it creates
//! (`psdemo<pid>-…`): two nodes joined by an underlay bridge, an external
//! host on that underlay, a `podswitchd run` (this executable) in each node
//! namespace, and four pods attached through the real `podswitch` CNI
//! plugin binary. It then creates a ClusterIP + NodePort service with
//! endpoints on both nodes, runs real traffic (HTTP to small servers in the
//! pods through the ClusterIP and the NodePort, ping across nodes), prints
//! what happened, and removes everything: on exit, on error, on
//! SIGINT/SIGTERM, and, after a `kill -9`, on the next start (see
//! [`record`]).

mod nodes;
mod pods;
pub mod record;
mod report;
mod sandbox;
mod traffic;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use nodes::{CLUSTER_IP, NODE_PORT, NODES, SERVICE_PORT, TARGET_PORT};
use pods::Pod;
use sandbox::Sandbox;
use traffic::{Client, Exchange};

/// `podswitchd demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Leave the sandbox running after the traffic, until Ctrl-C (SIGINT) or SIGTERM.
    #[arg(long)]
    pub keep: bool,
    /// The `podswitch` CNI plugin binary (default: `podswitch` next to this executable).
    #[arg(long, value_name = "PATH")]
    pub cni_plugin: Option<PathBuf>,
}

/// ClusterIP requests from one pod: at least this many...
const CLUSTER_IP_REQUESTS: usize = 6;
/// ...and at most this many, until endpoints on both nodes have answered.
const CLUSTER_IP_REQUESTS_MAX: usize = 12;

/// The line printed once the sandbox is up (with `--keep`, before waiting).
pub const READY_LINE: &str = "demo ready";

/// Runs the demo; see the module documentation.
pub fn run(args: &DemoArgs) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!(
            "podswitchd demo needs root: it creates network namespaces, veth pairs and TAP devices (run it with sudo)"
        );
    }
    let plugin = find_plugin(args)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .context("cannot install the signal handler")?;
    }
    let stale = record::clean_stale();
    if !stale.is_empty() {
        println!("cleaned up after an earlier demo:");
        for line in stale {
            println!("  {line}");
        }
    }
    let mut sandbox = Sandbox::create(interrupted)?;
    println!(
        "podswitch demo: sandbox {}-* (namespaces), files in {}",
        sandbox.prefix,
        sandbox.dir.display()
    );
    let result = build_and_run(&mut sandbox, &plugin, args.keep);
    if result.is_err() {
        eprintln!("podswitchd demo: failed; removing the sandbox");
    }
    let problems = sandbox.teardown();
    if problems.is_empty() {
        println!(
            "removed the sandbox: namespaces, daemons, pods and {}",
            sandbox.dir.display()
        );
    } else {
        bail!(
            "the sandbox was not removed completely: {}",
            problems.join("; ")
        );
    }
    result
}

/// The plugin from `--cni-plugin`, or `podswitch` next to this executable.
fn find_plugin(args: &DemoArgs) -> Result<PathBuf> {
    let plugin = match &args.cni_plugin {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("cannot find the podswitchd executable")?
            .with_file_name("podswitch"),
    };
    if !plugin.is_file() {
        bail!(
            "the podswitch CNI plugin is not at {}: build it with `cargo build --release --workspace` \
             (it lands next to podswitchd) or pass --cni-plugin PATH",
            plugin.display()
        );
    }
    Ok(plugin)
}

fn build_and_run(sandbox: &mut Sandbox, plugin: &std::path::Path, keep: bool) -> Result<()> {
    println!(
        "underlay 192.168.77.0/24: {}, external {}",
        NODES
            .iter()
            .map(|n| format!("{} {} (pods {})", n.name, n.node_ip, n.pod_cidr))
            .collect::<Vec<_>>()
            .join(", "),
        sandbox::EXTERNAL_IP
    );
    nodes::build_underlay(sandbox).context("cannot build the underlay")?;
    sandbox.check_interrupted()?;
    nodes::start_daemons(sandbox)?;
    nodes::register_nodes(sandbox).context("cannot register the nodes with each other")?;
    let pods = pods::attach_pods(sandbox, plugin)?;
    for pod in &pods {
        pods::start_server(sandbox, pod)?;
    }
    let endpoints: Vec<nodes::Endpoint<'_>> = pods
        .iter()
        .map(|p| nodes::Endpoint {
            address: p.address,
            node: p.node.name,
        })
        .collect();
    nodes::create_service(sandbox, &endpoints).context("cannot create the service")?;
    let mirror = nodes::add_mirror(sandbox)?;
    sandbox.check_interrupted()?;

    let mut out = std::io::stdout().lock();
    report::pods(&mut out, plugin, &pods)?;
    drop(out);
    let exchanges = run_traffic(sandbox, &pods)?;
    let mut out = std::io::stdout().lock();
    report::traffic(&mut out, &exchanges)?;
    report::node_state(&mut out, sandbox, &pods)?;
    report::explore(&mut out, sandbox, &pods, mirror)?;
    let verdict = judge(&exchanges);
    match &verdict {
        Ok(summary) => writeln!(out, "{READY_LINE}: {summary}")?,
        Err(e) => writeln!(out, "{READY_LINE}, with failures: {e}")?,
    }
    drop(out);
    if keep {
        println!(
            "the sandbox stays up: press Ctrl-C (or send SIGTERM to {}) to remove it",
            std::process::id()
        );
        while !sandbox.interrupted() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    verdict.map(|_| ())
}

fn client(pod: &Pod) -> Client {
    traffic::client(pod.name, &pod.netns)
}

/// The traffic: ClusterIP from a pod until endpoints on both nodes
/// answered (bounded), the NodePort of each node from the external
/// namespace, HTTP and ping straight across nodes.
fn run_traffic(sandbox: &Sandbox, pods: &[Pod]) -> Result<Vec<Exchange>> {
    let [a1, a2, b1, b2] = pods else {
        bail!("expected four pods, have {}", pods.len());
    };
    let mut exchanges = Vec::new();
    let cluster_ip = SocketAddrV4::new(CLUSTER_IP, SERVICE_PORT);
    for i in 0..CLUSTER_IP_REQUESTS_MAX {
        sandbox.check_interrupted()?;
        if i >= CLUSTER_IP_REQUESTS && answering_nodes(&exchanges).len() == NODES.len() {
            break;
        }
        exchanges.push(traffic::http_get(&client(a1), cluster_ip, "ClusterIP"));
    }
    let external = traffic::client("external", &sandbox.netns_path("external"));
    for node in &NODES {
        for _ in 0..2 {
            sandbox.check_interrupted()?;
            let target = SocketAddrV4::new(node.node_ip, NODE_PORT);
            let label = format!("NodePort on {}", node.name);
            exchanges.push(traffic::http_get(&external, target, &label));
        }
    }
    let direct = SocketAddrV4::new(a1.address, TARGET_PORT);
    exchanges.push(traffic::http_get(&client(b1), direct, "pod to pod"));
    exchanges.push(traffic::ping(&client(a1), b1.address, "across nodes"));
    exchanges.push(traffic::ping(&client(b2), a2.address, "across nodes"));
    sandbox.check_interrupted()?;
    Ok(exchanges)
}

/// Nodes whose pods answered a ClusterIP request.
fn answering_nodes(exchanges: &[Exchange]) -> BTreeSet<&'static str> {
    exchanges
        .iter()
        .filter(|e| e.target.contains("ClusterIP"))
        .filter_map(|e| e.outcome.as_ref().ok())
        .filter_map(|body| body.split_whitespace().nth(1)?.parse().ok())
        .filter_map(nodes::node_of)
        .map(|node| node.name)
        .collect()
}

/// A one-line summary if every exchange succeeded and both nodes answered
/// through the ClusterIP; what went wrong otherwise.
fn judge(exchanges: &[Exchange]) -> Result<String> {
    let failed = exchanges.iter().filter(|e| e.outcome.is_err()).count();
    let nodes = answering_nodes(exchanges);
    if failed > 0 {
        bail!("{failed} of {} exchanges failed", exchanges.len());
    }
    if nodes.len() < NODES.len() {
        bail!(
            "only pods on {} answered through the ClusterIP",
            nodes.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(format!(
        "{} exchanges answered; ClusterIP endpoints on {} answered",
        exchanges.len(),
        nodes.into_iter().collect::<Vec<_>>().join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(target: &str, outcome: Result<&str, &str>) -> Exchange {
        Exchange {
            client: "pod-a1".into(),
            target: target.into(),
            outcome: outcome.map(str::to_string).map_err(str::to_string),
        }
    }

    #[test]
    fn a_missing_plugin_says_how_to_build_it() {
        let args = DemoArgs {
            keep: false,
            cni_plugin: Some(PathBuf::from("/nonexistent/podswitch")),
        };
        let message = format!("{:#}", find_plugin(&args).unwrap_err());
        assert!(message.contains("/nonexistent/podswitch"), "{message}");
        assert!(
            message.contains("cargo build --release --workspace"),
            "{message}"
        );
    }

    #[test]
    fn judge_wants_every_exchange_and_both_nodes_behind_the_cluster_ip() {
        let a = exchange("http://10.96.0.10:80/ (ClusterIP)", Ok("pod-a1 10.244.1.2"));
        let b = exchange("http://10.96.0.10:80/ (ClusterIP)", Ok("pod-b2 10.244.2.3"));
        let ping = exchange("ping 10.244.2.2 (across nodes)", Ok("reply in 0.3 ms"));
        let summary = judge(&[a.clone(), b.clone(), ping.clone()]).unwrap();
        assert!(summary.contains("node-a and node-b"), "{summary}");
        let one_node = judge(&[a.clone(), a.clone(), ping.clone()]).unwrap_err();
        assert!(
            one_node.to_string().contains("only pods on node-a"),
            "{one_node}"
        );
        let failed = exchange("ping 10.244.2.2 (across nodes)", Err("no reply"));
        let err = judge(&[a, b, failed]).unwrap_err();
        assert!(err.to_string().contains("1 of 3 exchanges failed"), "{err}");
    }
}
