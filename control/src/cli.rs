//! The `podswitchd` command line (shared by the binary and the test harness).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use podswitch_dataplane::replay::{ReplayInput, replay_files};

use crate::daemon::{RunOptions, run};

#[derive(Parser)]
#[command(
    name = "podswitchd",
    version,
    propagate_version = true,
    about = "podswitch node dataplane service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node service in the foreground until SIGTERM/SIGINT.
    Run(RunArgs),
    /// Feed captured frames through the pipeline and write what each port would send.
    Replay(ReplayArgs),
    /// Build a two-node sandbox in network namespaces, run traffic through it
    /// and print what happened (root; removes everything on exit).
    Demo(crate::demo::DemoArgs),
    /// Remove the nftables rules a shared uplink or host port installed
    /// (they stay across restarts; run this after uninstalling podswitch).
    HostCleanup,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Node configuration (TOML); see config/node.example.toml [default:
    /// /etc/podswitch/node.toml, which may be missing with --kubernetes:
    /// then the node's settings come from its Node object].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The uplink interface (an AF_PACKET port of that name, with the
    /// interface's IPv4 address and MAC), when the file has no [uplink].
    /// Following a cluster without [bridge], the default is the interface
    /// holding the Node's InternalIP.
    #[arg(long, value_name = "IFACE")]
    uplink: Option<String>,
    /// The host's /proc mounted at DIR (podswitchd in a PID namespace of
    /// its own, e.g. a pod with hostPID: false): pods' network namespaces
    /// given as /proc/PID/ns/net are opened as DIR/PID/ns/net.
    #[arg(long, value_name = "DIR")]
    host_proc: Option<PathBuf>,
    /// Worker threads (default: the number of CPUs).
    #[arg(long)]
    workers: Option<usize>,
    /// Directory for the single-instance lock and the stats file.
    #[arg(long, default_value = "/run/podswitch")]
    run_dir: PathBuf,
    /// Write counters as JSON here every second (default: <run-dir>/stats.json).
    #[arg(long)]
    stats_file: Option<PathBuf>,
    /// After traffic, workers keep polling without sleeping for this many
    /// microseconds (lower latency for more CPU; 0 = always sleep in poll).
    #[arg(long, default_value_t = 200)]
    busy_poll_us: u64,
    /// How VXLAN super-frames leave: `auto` sends them whole through a
    /// transmit TAP where the kernel has UDP-tunnel GSO in tun (Linux
    /// 6.17+), `off` always cuts them into segments in software.
    #[arg(long, value_enum, default_value_t = crate::tunnel_tx::TunnelGso::Auto)]
    tunnel_gso: crate::tunnel_tx::TunnelGso,
    /// The control API socket (HTTP/JSON, root only).
    #[arg(long, default_value = "/run/podswitch/api.sock")]
    api_socket: PathBuf,
    /// Where everything set through the API is stored (state.redb).
    #[arg(long, default_value = "/var/lib/podswitch")]
    state_dir: PathBuf,
    /// Also serve Prometheus metrics over TCP at this address (e.g. 127.0.0.1:9641).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Take over from the podswitchd running with this run directory (an
    /// upgrade): its TAP queues, lock, database and state file are handed
    /// over and it stops forwarding only when this one is ready. Without a
    /// running one, start as usual.
    #[arg(long)]
    takeover: bool,
    /// Follow a Kubernetes cluster's Services, EndpointSlices and Nodes
    /// (credentials: --kubeconfig, else in-cluster, else $KUBECONFIG).
    #[arg(long, env = "PODSWITCH_KUBERNETES")]
    kubernetes: bool,
    /// The kubeconfig for --kubernetes.
    #[arg(long, env = "PODSWITCH_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// This node's name in the cluster (the downward API's spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// The least time between two Kubernetes syncs, in milliseconds:
    /// changes within it are applied together [default: 50].
    #[arg(long)]
    min_sync_interval_ms: Option<u64>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Node configuration (TOML); see config/node.example.toml.
    #[arg(long)]
    config: PathBuf,
    /// Input capture (pcap or pcapng). Repeat for several inputs; `PORT=FILE`
    /// sends that file's frames into PORT (inputs are merged by timestamp).
    #[arg(long = "in", value_name = "[PORT=]FILE", required = true)]
    inputs: Vec<String>,
    /// Port the frames of plain `--in FILE` inputs enter on (default: the first port).
    #[arg(long)]
    port: Option<String>,
    /// Directory for `<port>.pcap` per port, `summary.txt` and `summary.json`.
    #[arg(long)]
    out_dir: PathBuf,
}

fn parse_inputs(args: &ReplayArgs) -> Vec<ReplayInput> {
    args.inputs
        .iter()
        .map(|s| match s.split_once('=') {
            Some((port, file)) if !port.is_empty() && !port.contains('/') => ReplayInput {
                port: Some(port.to_string()),
                path: PathBuf::from(file),
            },
            _ => ReplayInput {
                port: args.port.clone(),
                path: PathBuf::from(s),
            },
        })
        .collect()
}

fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let inputs = parse_inputs(args);
    let report = replay_files(&args.config, &inputs, &args.out_dir).context("replay failed")?;
    print!("{}", report.summary.to_text());
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "wrote {} files to {}",
        report.written.len(),
        args.out_dir.display()
    );
    Ok(())
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODSWITCH_LOG")
        .unwrap_or_else(|_| "info".into());
    let ansi = colour_logs(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Whether log lines carry ANSI colour: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org).
/// journald, `kubectl logs` and files get plain text.
fn colour_logs(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The Kubernetes source's options from the command line (the config
/// file's `[kubernetes]` fills in what they leave out).
fn kubernetes_options(args: &RunArgs) -> crate::kubernetes::KubernetesRun {
    crate::kubernetes::KubernetesRun {
        enabled: args.kubernetes,
        kubeconfig: args.kubeconfig.clone(),
        node_name: args.node_name.clone(),
        min_sync_interval: args
            .min_sync_interval_ms
            .map(std::time::Duration::from_millis),
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(args) => {
            init_logging();
            let workers = args
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            run(&RunOptions {
                config: args.config.clone(),
                uplink: args.uplink.clone(),
                host_proc: args.host_proc.clone(),
                workers,
                run_dir: args.run_dir.clone(),
                stats_file: args.stats_file.clone(),
                busy_poll_us: args.busy_poll_us,
                tunnel_gso: args.tunnel_gso,
                api_socket: args.api_socket.clone(),
                state_dir: args.state_dir.clone(),
                metrics_listen: args.metrics_listen,
                kubernetes: kubernetes_options(args),
                takeover: args.takeover,
            })
        }
        Command::Replay(args) => replay(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::HostCleanup => crate::host::remove_rules(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podswitchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::colour_logs;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some(OsStr::new(""))));
        assert!(!colour_logs(true, Some(OsStr::new("1"))));
        assert!(!colour_logs(false, None));
        assert!(!colour_logs(false, Some(OsStr::new(""))));
    }
}
