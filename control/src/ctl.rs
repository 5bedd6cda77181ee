//! `podswitchctl`: the command line client of the podswitchd control API
//! (`docs/api.md`).
//!
//! Every subcommand is one or two requests through [`crate::client`]; the
//! server validates and stores, the client only shapes arguments into the
//! API's JSON and its answers into tables. Exit status: 0 on success, 1 when
//! the server refused the request (its message is printed unchanged) or a
//! local input was bad, 2 when podswitchd could not be reached or answered
//! something that is not the API (and for command-line usage errors, as clap).

use std::ffi::OsString;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use podswitch_dataplane::config::Ipv4Cidr;
use podswitch_dataplane::wire::MacAddr;

use crate::client::{ApiClient, ClientError};

mod capture;
mod commands;
mod conntrack;
mod context;
mod render;
mod service_port;

pub use conntrack::{
    ConntrackFilterArgs, ConntrackProtocol, render_entry as render_conntrack_entry,
};
pub use service_port::{ServicePortArg, ServicePortError};

/// Exit status when the server refused the request or a local input was bad.
pub const EXIT_REFUSED: u8 = 1;

/// Exit status when podswitchd could not be reached (or usage was wrong).
pub const EXIT_UNREACHABLE: u8 = 2;

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 the server refused the request (its message is
printed as \"Error: <message>\") or a local input was bad; 2 podswitchd could
not be reached, or the command line is wrong.";

const SERVICE_PORT_HELP: &str =
    "A service port; repeat for more: [NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N]";

const SERVICE_PORT_LONG_HELP: &str = "\
A service port; repeat for more: [NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N]

  NAME      the port's name, optional (it must not be all digits)
  PORT      the service port
  TARGET    the endpoints' port (default: PORT)
  PROTOCOL  TCP, UDP or SCTP, in any case (default: TCP)
  N         a node port, 30000-32767 (default: none)

Examples: 80 | 80:8080 | dns:53/UDP | http:80:8080/TCP,nodeport=30080";

/// The command line of `podswitchctl`.
#[derive(Debug, Parser)]
#[command(
    name = "podswitchctl",
    version,
    propagate_version = true,
    about = "Inspect and change a running podswitchd through its control API",
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// The control API socket of podswitchd.
    #[arg(
        long,
        global = true,
        env = "PODSWITCH_SOCKET",
        default_value = "/run/podswitch/api.sock",
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub socket: PathBuf,
    /// Output format: aligned columns, or the server's JSON pretty-printed.
    #[arg(
        short,
        long,
        global = true,
        value_enum,
        default_value_t = Output::Table,
        help_heading = "Global options"
    )]
    pub output: Output,
    /// Seconds to wait for each read or write on the socket.
    #[arg(
        long,
        global = true,
        default_value_t = 30,
        value_name = "SECS",
        help_heading = "Global options"
    )]
    pub timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `-o/--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Plain aligned columns (or `key: value` listings for one object).
    Table,
    /// The server's JSON, pretty-printed.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Whether the dataplane forwards, with its workers, generation and counts.
    Status,
    /// Pod attachments: TAP devices in pods, AF_PACKET sockets on interfaces.
    #[command(subcommand, visible_alias = "ports")]
    Port(PortCommand),
    /// Services: ClusterIP and NodePort, load-balanced over their endpoints.
    #[command(subcommand, visible_alias = "svc")]
    Service(ServiceCommand),
    /// The endpoints of a service.
    #[command(subcommand, visible_alias = "ep")]
    Endpoint(EndpointCommand),
    /// Static routes (and the connected ones, listed).
    #[command(subcommand, visible_alias = "routes")]
    Route(RouteCommand),
    /// Other nodes of the cluster (for VXLAN), and this node's addressing.
    #[command(subcommand, visible_alias = "nodes")]
    Node(NodeCommand),
    /// Traffic mirrors.
    #[command(subcommand, visible_alias = "mirrors")]
    Mirror(MirrorCommand),
    /// Capture frames at pipeline stages into a pcap/pcapng file or stdout (like tcpdump -w).
    Capture(CaptureArgs),
    /// Make services, endpoints, API routes and nodes exactly a document's (PUT /v1/state).
    Apply(ApplyArgs),
    /// Port counters and the non-zero drops and events.
    Stats,
    /// Connection tracking entries.
    #[command(subcommand)]
    Conntrack(ConntrackCommand),
    /// The Prometheus metrics, as served.
    Metrics,
}

/// `port ...`.
#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// List ports with their counters.
    #[command(visible_alias = "ls")]
    List,
    /// Show one port.
    Show {
        /// Port name.
        name: String,
    },
    /// Create a port (the daemon creates the TAP or opens the interface).
    Add(PortAddArgs),
    /// Delete a port added through the API.
    #[command(visible_aliases = ["delete", "rm"])]
    Del {
        /// Port name.
        name: String,
    },
}

/// `port add`: the fields of `[[ports]]` in the node config.
#[derive(Debug, Args)]
pub struct PortAddArgs {
    /// Unique port name (1 to 64 characters).
    pub name: String,
    /// `tap`: a TAP device podswitchd creates; `afpacket`: an existing interface.
    #[arg(long, value_enum)]
    pub kind: PortKind,
    /// Kernel interface name (default: the port name).
    #[arg(long)]
    pub ifname: Option<String>,
    /// TAP only: the pod's network namespace, e.g. /var/run/netns/pod-a.
    #[arg(long)]
    pub netns: Option<String>,
    /// TAP only: the interface name inside the pod (default: eth0).
    #[arg(long)]
    pub pod_ifname: Option<String>,
    /// The pod's MAC address (frames from the port must come from it).
    #[arg(long, value_parser = parse_mac)]
    pub mac: Option<String>,
    /// The pod's IPv4 address; repeat or separate with commas (needs --mac).
    #[arg(long = "ip", value_name = "IP", value_delimiter = ',', value_parser = parse_ip)]
    pub ips: Vec<String>,
    /// MTU of the pod interface (576 to 9000; default 1500).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Do not use the device's segmentation and checksum offloads.
    #[arg(long)]
    pub no_offload: bool,
    /// AF_PACKET only: receive through the TPACKET_V3 ring instead of recvmmsg.
    #[arg(long)]
    pub rx_ring: bool,
    /// Masquerade this pod's traffic leaving the cluster (default: the node's `[nat] masquerade`).
    #[arg(long, conflicts_with = "no_masquerade")]
    pub masquerade: bool,
    /// Never masquerade this pod's traffic.
    #[arg(long)]
    pub no_masquerade: bool,
}

/// `port add --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PortKind {
    /// A TAP device podswitchd creates.
    Tap,
    /// An AF_PACKET socket on an existing interface.
    Afpacket,
}

/// `service ...`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services.
    #[command(visible_alias = "ls")]
    List,
    /// Show one service with its ports and endpoints.
    Show {
        /// Service as NAMESPACE/NAME.
        #[arg(value_parser = parse_service_name)]
        name: ServiceName,
    },
    /// Create a service.
    Add(ServiceAddArgs),
    /// Delete a service and its endpoints.
    #[command(visible_aliases = ["delete", "rm"])]
    Del {
        /// Service as NAMESPACE/NAME.
        #[arg(value_parser = parse_service_name)]
        name: ServiceName,
    },
}

/// `service add`.
#[derive(Debug, Args)]
pub struct ServiceAddArgs {
    /// Service as NAMESPACE/NAME.
    #[arg(value_parser = parse_service_name)]
    pub name: ServiceName,
    /// The service's cluster IP.
    #[arg(long, value_name = "IP", value_parser = parse_ip)]
    pub cluster_ip: String,
    /// The service ports, each `[NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N]`.
    #[arg(
        long = "port",
        value_name = "SPEC",
        required = true,
        value_parser = ServicePortArg::parse,
        help = SERVICE_PORT_HELP,
        long_help = SERVICE_PORT_LONG_HELP
    )]
    pub ports: Vec<ServicePortArg>,
    /// Session affinity (default: None).
    #[arg(long, value_enum, ignore_case = true)]
    pub affinity: Option<Affinity>,
    /// ClientIP affinity timeout in seconds (1 to 86400; server default 10800).
    #[arg(long, value_name = "SECS", requires = "affinity")]
    pub affinity_timeout: Option<u64>,
    /// externalTrafficPolicy (default: Cluster): `Local` sends NodePort and
    /// external-IP traffic only to this node's endpoints and keeps the
    /// client's address; `Cluster` masquerades it.
    #[arg(long, value_enum, ignore_case = true)]
    pub external_traffic_policy: Option<TrafficPolicy>,
}

/// `service add --external-traffic-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrafficPolicy {
    /// Every endpoint; the source is masqueraded.
    #[value(name = "Cluster")]
    Cluster,
    /// This node's endpoints; the source is kept.
    #[value(name = "Local")]
    Local,
}

/// `service add --affinity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Affinity {
    /// No affinity.
    #[value(name = "None")]
    None,
    /// Connections from one client IP go to the same endpoint.
    #[value(name = "ClientIP")]
    ClientIp,
}

/// A service's `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    /// The namespace.
    pub namespace: String,
    /// The name within the namespace.
    pub name: String,
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

fn parse_service_name(value: &str) -> Result<ServiceName, String> {
    match value.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(ServiceName {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err("expected NAMESPACE/NAME, e.g. default/web".to_string()),
    }
}

// Addresses are checked here so that a malformed one is a usage error
// (exit 2, showing the value) before any request; they are sent as typed,
// and the server, which parses them the same way, stays the authority.

fn parse_ip(value: &str) -> Result<String, String> {
    match value.parse::<Ipv4Addr>() {
        Ok(_) => Ok(value.to_string()),
        Err(_) => Err("expected an IPv4 address, e.g. 10.244.1.2".to_string()),
    }
}

fn parse_cidr(value: &str) -> Result<String, String> {
    match value.parse::<Ipv4Cidr>() {
        Ok(_) => Ok(value.to_string()),
        Err(_) => Err("expected an IPv4 prefix, e.g. 10.244.2.0/24".to_string()),
    }
}

fn parse_mac(value: &str) -> Result<String, String> {
    match value.parse::<MacAddr>() {
        Ok(_) => Ok(value.to_string()),
        Err(_) => Err("expected a MAC address, e.g. 02:00:0a:f4:01:02".to_string()),
    }
}

/// `endpoint ...`.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// List the endpoints of a service.
    #[command(visible_alias = "ls")]
    List {
        /// Service as NAMESPACE/NAME.
        #[arg(value_parser = parse_service_name)]
        service: ServiceName,
    },
    /// Add one endpoint to a service.
    Add {
        /// Service as NAMESPACE/NAME.
        #[arg(value_parser = parse_service_name)]
        service: ServiceName,
        /// The endpoint's address.
        #[arg(value_parser = parse_ip)]
        address: String,
        /// The endpoint is not ready (gets no new connections).
        #[arg(long)]
        not_ready: bool,
        /// The endpoint is terminating.
        #[arg(long)]
        terminating: bool,
        /// The node the endpoint runs on.
        #[arg(long)]
        node: Option<String>,
    },
    /// Remove one endpoint from a service.
    #[command(visible_aliases = ["delete", "rm"])]
    Del {
        /// Service as NAMESPACE/NAME.
        #[arg(value_parser = parse_service_name)]
        service: ServiceName,
        /// The endpoint's address.
        #[arg(value_parser = parse_ip)]
        address: String,
    },
    /// Replace a service's endpoints with these (ready) addresses; none clears them.
    Set {
        /// Service as NAMESPACE/NAME.
        #[arg(value_parser = parse_service_name)]
        service: ServiceName,
        /// The endpoints' addresses.
        #[arg(value_parser = parse_ip)]
        addresses: Vec<String>,
    },
}

/// `route ...`.
#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// List routes (connected, from the config, from the API).
    #[command(visible_alias = "ls")]
    List,
    /// Add a static route: `route add 10.244.2.0/24 via 192.168.100.2`.
    #[command(override_usage = "podswitchctl route add [OPTIONS] <PREFIX> via <NEXT_HOP>")]
    Add {
        /// Destination prefix, e.g. 10.244.2.0/24.
        #[arg(value_parser = parse_cidr)]
        prefix: String,
        /// The word `via`.
        #[arg(value_name = "via", value_parser = ["via"], hide_possible_values = true)]
        via_keyword: String,
        /// Next hop in the pod subnet or the uplink subnet.
        #[arg(value_name = "NEXT_HOP", value_parser = parse_ip)]
        via: String,
    },
    /// Delete a route added through the API.
    #[command(visible_aliases = ["delete", "rm"])]
    Del {
        /// Destination prefix, e.g. 10.244.2.0/24.
        #[arg(value_parser = parse_cidr)]
        prefix: String,
    },
}

/// `node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List the other nodes.
    #[command(visible_alias = "ls")]
    List,
    /// Show a node; without a name, this node's addressing (gateway, uplink).
    Show {
        /// Node name.
        name: Option<String>,
    },
    /// Add a node.
    Add {
        /// Node name.
        name: String,
        /// The node's address on the underlay.
        #[arg(long, value_name = "IP", value_parser = parse_ip)]
        node_ip: String,
        /// The node's pod subnet, e.g. 10.244.2.0/24.
        #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
        pod_cidr: String,
        /// VXLAN network identifier.
        #[arg(long)]
        vni: Option<u32>,
        /// The node's VTEP MAC (default: 02:56 and its node IP's bytes).
        #[arg(long, value_name = "MAC", value_parser = parse_mac)]
        vtep_mac: Option<String>,
    },
    /// Delete a node.
    #[command(visible_aliases = ["delete", "rm"])]
    Del {
        /// Node name.
        name: String,
    },
}

/// `mirror ...`.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// List mirrors.
    #[command(visible_alias = "ls")]
    List,
    /// Show one mirror.
    Show {
        /// Mirror name.
        name: String,
    },
    /// Add a mirror.
    Add(MirrorAddArgs),
    /// Delete a mirror.
    #[command(visible_aliases = ["delete", "rm"])]
    Del {
        /// Mirror name.
        name: String,
    },
}

/// `mirror add`. Fields not given are left to the server's defaults.
#[derive(Debug, Args)]
pub struct MirrorAddArgs {
    /// Mirror name (default: the interface's name).
    pub name: Option<String>,
    /// Ports, direction, stages.
    #[command(flatten)]
    pub select: SelectArgs,
    /// A capture filter, e.g. "tcp port 80".
    #[arg(long)]
    pub filter: Option<String>,
    /// The interface mirrored frames are sent to, e.g. psmirror0.
    #[arg(long)]
    pub iface: Option<String>,
    /// Bytes kept of each frame (default: whole frames).
    #[arg(long)]
    pub snaplen: Option<u32>,
    /// The filter as tcpdump takes it, after `--` (instead of --filter).
    #[arg(last = true, value_name = "FILTER")]
    pub filter_words: Vec<String>,
}

/// What a mirror or a capture selects: `mirror add` and `capture`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// A port to copy frames of; repeat or separate with commas (none: all ports).
    #[arg(long = "port", value_name = "PORT", value_delimiter = ',')]
    pub ports: Vec<String>,
    /// Which direction of the ports' traffic (when no --stage is given).
    #[arg(long, value_enum)]
    pub direction: Option<MirrorDirection>,
    /// Where in the pipeline frames are copied; repeat for several.
    #[arg(long = "stage", value_enum, value_delimiter = ',')]
    pub stages: Vec<MirrorStage>,
}

/// `capture`: a transient session streamed as a capture file.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Ports, direction, stages.
    #[command(flatten)]
    pub select: SelectArgs,
    /// File format; pcapng carries a comment per packet (stage, ports, verdict, NAT).
    #[arg(long, value_enum, default_value_t = CaptureFormat::Pcap)]
    pub format: CaptureFormat,
    /// Stop after this many frames.
    #[arg(short = 'c', value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Bytes kept of each frame (default: whole frames).
    #[arg(short = 's', long)]
    pub snaplen: Option<u32>,
    /// Where to write: a file, or `-` for stdout.
    #[arg(short = 'w', value_name = "FILE")]
    pub write: PathBuf,
    /// A tcpdump filter expression, e.g. tcp port 80.
    #[arg(trailing_var_arg = true, value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `capture --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaptureFormat {
    /// Classic pcap (nanosecond timestamps).
    Pcap,
    /// pcapng with per-packet comments.
    Pcapng,
}

/// `mirror add --direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MirrorDirection {
    /// Frames the ports receive.
    Ingress,
    /// Frames the ports send.
    Egress,
    /// Both.
    Both,
}

/// `mirror add --stage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MirrorStage {
    /// As frames enter the pipeline.
    Ingress,
    /// As frames leave the pipeline.
    Egress,
    /// Before service NAT.
    PreNat,
    /// After service NAT.
    PostNat,
    /// Before VXLAN encapsulation.
    PreEncap,
    /// After VXLAN encapsulation.
    PostEncap,
    /// Dropped frames.
    Drop,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The document: a .json or .toml file, or `-` for JSON on stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
}

/// `conntrack ...`.
#[derive(Debug, Subcommand)]
pub enum ConntrackCommand {
    /// List tracked connections, like `conntrack -L` (filters like its flags).
    #[command(visible_alias = "ls")]
    List(ConntrackFilterArgs),
    /// Delete tracked connections (all, or those matching the filters), like `conntrack -F/-D`.
    Flush(ConntrackFilterArgs),
}

/// Why a command failed, which decides the exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The server answered with an error status; its message, unchanged.
    #[error("{0}")]
    Refused(String),
    /// podswitchd could not be reached, or did not speak the API.
    #[error(transparent)]
    Unreachable(ClientError),
    /// A local input (a file, stdin) could not be used.
    #[error("{0}")]
    Local(String),
    /// Writing the output failed.
    #[error("write output")]
    Output(#[source] std::io::Error),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        match error {
            ClientError::Api { message, .. } => Failure::Refused(message),
            other => Failure::Unreachable(other),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Output(error)
    }
}

impl Failure {
    /// The exit status for this failure.
    pub fn exit_status(&self) -> u8 {
        match self {
            Failure::Refused(_) | Failure::Local(_) | Failure::Output(_) => EXIT_REFUSED,
            Failure::Unreachable(_) => EXIT_UNREACHABLE,
        }
    }

    /// The message with its causes, `a: b: c`.
    pub fn message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        message
    }
}

/// Runs a parsed command line, writing results to `out` and errors to `err`
/// (stdin is read only by `apply -f -`). Returns the exit status.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let client = ApiClient::new(&cli.socket).with_timeout(Duration::from_secs(cli.timeout.max(1)));
    let mut ctx = context::Ctx {
        client,
        output: cli.output,
        out,
    };
    match commands::dispatch(&mut ctx, &cli.command) {
        Ok(status) => status,
        // A reader that went away (`| head`) needs no message.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_REFUSED,
        Err(failure) => {
            let _ = writeln!(err, "Error: {}", failure.message());
            failure.exit_status()
        }
    }
}

/// Parses `args` (program name first) and runs them, as the binary does.
/// Usage errors, `--help` and `--version` are written as clap would.
pub fn run_args<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => run(&cli, out, err),
        Err(e) => {
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            u8::try_from(e.exit_code()).unwrap_or(EXIT_UNREACHABLE)
        }
    }
}

/// The `podswitchctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = run(&cli, &mut std::io::stdout().lock(), &mut std::io::stderr());
    ExitCode::from(status)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::fake_api::{FakeApi, Reply};

    fn run_in_process(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = run_args(
            std::iter::once("podswitchctl").chain(args.iter().copied()),
            &mut out,
            &mut err,
        );
        let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8 output");
        (status, text(out), text(err))
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn runs_in_process() {
        let api = FakeApi::start(vec![("DELETE /v1/routes/10.244.2.0/24", Reply::empty(204))]);
        let socket = api.socket_path().to_str().expect("UTF-8 path");
        let (status, out, err) =
            run_in_process(&["--socket", socket, "route", "rm", "10.244.2.0/24"]);
        assert_eq!(
            (status, out.as_str(), err.as_str()),
            (0, "route 10.244.2.0/24 deleted\n", "")
        );
        assert_eq!(api.requests()[0].path, "/v1/routes/10.244.2.0/24");
    }

    #[test]
    fn help_goes_to_stdout_and_usage_errors_to_stderr() {
        let (status, out, err) = run_in_process(&["service", "add", "--help"]);
        assert_eq!((status, err.as_str()), (0, ""));
        assert!(
            out.contains("[NAME:]PORT[:TARGET][/PROTOCOL][,nodeport=N]"),
            "{out}"
        );
        let (status, out, err) = run_in_process(&["port", "add", "pod-a"]);
        assert_eq!((status, out.as_str()), (EXIT_UNREACHABLE, ""));
        assert!(err.contains("--kind <KIND>"), "{err}");
    }

    #[test]
    fn route_prefix_keeps_its_slash_and_names_are_encoded() {
        assert_eq!(
            commands::route_path("10.244.2.0/24"),
            "/v1/routes/10.244.2.0/24"
        );
        assert_eq!(
            commands::route_path("10.0.0.0/8 x"),
            "/v1/routes/10.0.0.0/8%20x"
        );
        let service = ServiceName {
            namespace: "kube-system".into(),
            name: "dns?x".into(),
        };
        assert_eq!(
            commands::service_path(&service),
            "/v1/services/kube-system/dns%3Fx"
        );
    }
}
