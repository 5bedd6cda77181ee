//! The demo's pods: a namespace each, attached by the real `podswitch` CNI
//! plugin binary (run the way a container runtime runs it), and a tiny HTTP
//! server inside each that answers with the pod's name and address.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use podswitch_dataplane::io::netns::run_in_netns;
use serde_json::{Value, json};

use super::nodes::{NODES, NodeSpec, TARGET_PORT};
use super::sandbox::Sandbox;

/// The CNI network name (the IPAM store's subdirectory).
const NETWORK: &str = "podswitch-demo";
/// How long one plugin run may take.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// An attached pod.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Its name (also its namespace tag).
    pub name: &'static str,
    /// Its node.
    pub node: &'static NodeSpec,
    /// The address the plugin gave it.
    pub address: Ipv4Addr,
    /// Its namespace file.
    pub netns: PathBuf,
}

/// The network configuration the runtime would pass on stdin for `node`
/// (no `mtu`: the daemon's default fits the node's uplink).
fn network_config(sandbox: &Sandbox, node: &NodeSpec) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "podswitch",
        "socket": node.socket(sandbox),
        "ipam": {
            "type": "podswitch",
            "ranges": [[{"subnet": node.pod_cidr, "gateway": node.gateway.to_string()}]],
            "dataDir": node.dir(sandbox).join("ipam"),
        },
    })
}

/// One plugin invocation, as a runtime makes it.
#[derive(Clone)]
struct Invocation {
    plugin: PathBuf,
    container_id: String,
    netns: PathBuf,
    pod: &'static str,
    config: Value,
}

impl Invocation {
    /// Runs the plugin with `CNI_COMMAND=command`; returns its stdout, or
    /// fails with its stdout and stderr (the CNI error object).
    fn run(&self, command: &str) -> Result<String> {
        let plugin_dir = self.plugin.parent().unwrap_or(Path::new("/"));
        let mut child = Command::new(&self.plugin)
            .process_group(0)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", plugin_dir)
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
                    self.pod
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run the CNI plugin {}", self.plugin.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits without reading its stdin closes the pipe:
            // its exit status says what happened.
            match stdin.write_all(self.config.to_string().as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).with_context(|| format!("CNI {command} for {}", self.pod));
                }
                _ => {}
            }
        }
        let (status, stdout, stderr) = wait_bounded(child, PLUGIN_TIMEOUT)
            .with_context(|| format!("CNI {command} for {}", self.pod))?;
        if !status.success() {
            bail!(
                "CNI {command} for {} {}",
                self.pod,
                failure(status, &stdout, &stderr)
            );
        }
        Ok(stdout)
    }
}

/// How a plugin run failed: its exit status (or signal) and what it printed, if anything.
fn failure(status: ExitStatus, stdout: &str, stderr: &str) -> String {
    let output = [stdout.trim(), stderr.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    };
    if output.is_empty() {
        format!("failed with {status} and no output")
    } else {
        format!("failed with {status}: {output}")
    }
}

/// Waits for `child` up to `limit` (killing it after); returns (status, stdout, stderr).
fn wait_bounded(mut child: Child, limit: Duration) -> Result<(ExitStatus, String, String)> {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no answer within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = |h: std::thread::JoinHandle<String>| h.join().unwrap_or_default();
    Ok((status, text(out), text(err)))
}

/// Creates the pod namespaces and attaches each with `CNI_COMMAND=ADD`
/// (`DEL` is registered for teardown first, so a half-done ADD is undone).
pub fn attach_pods(sandbox: &mut Sandbox, plugin: &Path) -> Result<Vec<Pod>> {
    let mut pods = Vec::new();
    for node in &NODES {
        for name in node.pods {
            sandbox.check_interrupted()?;
            sandbox.add_netns(name)?;
            let invocation = Invocation {
                plugin: plugin.to_path_buf(),
                container_id: format!("{}-{name}", sandbox.prefix),
                netns: sandbox.netns_path(name),
                pod: name,
                config: network_config(sandbox, node),
            };
            let del = invocation.clone();
            sandbox.on_teardown(Box::new(move || {
                if let Err(e) = del.run("DEL") {
                    eprintln!("podswitchd demo: cleanup: {e:#}");
                }
            }));
            let result: Value = serde_json::from_str(&invocation.run("ADD")?)
                .with_context(|| format!("CNI ADD for {name}: the result is not JSON"))?;
            let address = result["ips"][0]["address"]
                .as_str()
                .and_then(|cidr| cidr.split('/').next())
                .and_then(|ip| ip.parse().ok())
                .with_context(|| format!("CNI ADD for {name}: no IPv4 address in {result}"))?;
            pods.push(Pod {
                name,
                node,
                address,
                netns: invocation.netns,
            });
        }
    }
    Ok(pods)
}

/// Starts the pod's HTTP server: a listener opened inside the pod's
/// namespace, served by a thread of this process until teardown.
pub fn start_server(sandbox: &mut Sandbox, pod: &Pod) -> Result<()> {
    let addr = SocketAddrV4::new(pod.address, TARGET_PORT);
    let listener = run_in_netns(&pod.netns, move || TcpListener::bind(addr))
        .and_then(|bound| bound)
        .with_context(|| format!("cannot listen on {addr} in {}", pod.name))?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let body = format!("{} {}\n", pod.name, pod.address);
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(format!("demo-http-{}", pod.name))
            .spawn(move || serve(&listener, &body, &stop))?
    };
    sandbox.on_teardown(Box::new(move || {
        stop.store(true, Ordering::Relaxed);
        let _ = thread.join();
    }));
    Ok(())
}

fn serve(listener: &TcpListener, body: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(stream, body);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads one request head (bounded) and answers `200` with `body`.
fn answer(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
