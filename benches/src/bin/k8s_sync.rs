//! `k8s_sync`: podswitchd's Kubernetes source at scale against a real
//! control plane (etcd + kube-apiserver built by
//! `tests/k8s/build-control-plane.sh`), beside the real kube-proxy (nftables
//! mode) of the same release, in namespaces this program creates:
//!
//! 1. cold start: SERVICES selector-less Services with one EndpointSlice of
//!    ENDPOINTS endpoints each are written to the API server; then
//!    podswitchd starts and the time until its snapshot holds all of them
//!    is measured, with its RSS; then the same for kube-proxy (time to its
//!    first full sync);
//! 2. churn: one endpoint of a random service changes RATE times a second
//!    for SECS seconds (each change stamped with
//!    `endpoints.kubernetes.io/last-change-trigger-time`), both proxies
//!    watching; then both programming-latency histograms
//!    (`network_programming_duration_seconds`, kube-proxy's
//!    `kubeproxy_network_programming_duration_seconds`) and their sync
//!    durations are read.
//!
//! Usage (root): `k8s_sync [SERVICES] [ENDPOINTS] [RATE] [SECS]`, default
//! `10000 10 20 30`. `PODSWITCHD_BIN` names the podswitchd to run (build it
//! with `--release`). Figures: `benches/README.md`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use podswitch_tests::k8s::{ControlPlane, Options};
use podswitch_tests::live::{Daemon, Netns, ip, veth};
use serde_json::{Value, json};

const API_IP: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
const NS: &str = "scale";

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The `k`-th endpoint address of service `i` (version 1 moves endpoint 0 to another range).
fn endpoint(i: u64, k: u64, version: u64) -> Ipv4Addr {
    let n = (i * 16 + k) as u32;
    let base = if k == 0 && version % 2 == 1 {
        0x0ac0_0000
    } else {
        0x0a80_0000
    };
    Ipv4Addr::from(base + n)
}

fn slice(i: u64, endpoints: u64, version: u64) -> Value {
    let eps: Vec<Value> = (0..endpoints)
        .map(|k| {
            json!({"addresses": [endpoint(i, k, version).to_string()],
                   "conditions": {"ready": true}, "nodeName": if k % 2 == 0 { "kb-node" } else { "kp-node" }})
        })
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("s{i}-1"), "namespace": NS,
            "labels": {"kubernetes.io/service-name": format!("s{i}"),
                       "endpointslice.kubernetes.io/managed-by": "k8s-sync-bench"},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": now}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps})
}

/// Runs `f` with a kube client on a runtime inside the control plane's
/// namespace (where the API server's address is local).
fn in_api_netns<T: Send + 'static>(
    netns: &Netns,
    kubeconfig: std::path::PathBuf,
    f: impl FnOnce(kube::Client) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
    + Send
    + 'static,
) -> T {
    netns.run(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let config = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
                .await
                .expect("config");
            let client = kube::Client::try_from(config).expect("client");
            f(client).await
        })
    })
}

fn main() {
    let services = arg(1, 10_000);
    let endpoints = arg(2, 10).clamp(1, 15);
    let rate = arg(3, 20).max(1);
    let secs = arg(4, 30);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("k8s_sync needs root (network namespaces)");
        std::process::exit(2);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "k8s_sync: {services} services x {endpoints} endpoints, churn {rate}/s for {secs} s; load {}",
        load.trim()
    );
    let api_ns = Netns::new("kb-kc");
    ip(&["-n", &api_ns.name, "link", "add", "br0", "type", "bridge"]);
    ip(&[
        "-n",
        &api_ns.name,
        "addr",
        "add",
        &format!("{API_IP}/24"),
        "dev",
        "br0",
    ]);
    ip(&["-n", &api_ns.name, "link", "set", "br0", "up"]);
    let node = Netns::new("kb-node");
    let kp = Netns::new("kb-kp");
    for (i, ns) in [(1, &node), (2, &kp)] {
        let port = format!("kn{i}");
        veth(&port, &api_ns, "k8s0", ns);
        ip(&["-n", &api_ns.name, "link", "set", &port, "master", "br0"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("10.255.0.{}/24", 10 + i),
            "dev",
            "k8s0",
        ]);
    }
    let cp = ControlPlane::start_with(Options {
        netns: Some(api_ns.name.clone()),
        address: API_IP,
        controllers: Vec::new(),
        ..Options::default()
    });
    cp.create_namespace(NS).unwrap();
    cp.create_node("kb-node", "10.244.1.0/24", Ipv4Addr::new(10, 255, 0, 11))
        .unwrap();
    cp.create_node("kp-node", "10.244.2.0/24", Ipv4Addr::new(10, 255, 0, 12))
        .unwrap();

    // The objects, written with 64 requests in flight.
    let started = Instant::now();
    let kubeconfig = cp.kubeconfig_path();
    let failures = in_api_netns(&api_ns, kubeconfig.clone(), move |client| {
        Box::pin(async move {
            let svc_api =
                kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), NS);
            let slice_api =
                kube::Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(client, NS);
            let results: Vec<Result<(), String>> = futures::stream::iter(0..services)
                .map(|i| {
                    let (svc_api, slice_api) = (svc_api.clone(), slice_api.clone());
                    async move {
                        let svc: k8s_openapi::api::core::v1::Service =
                            serde_json::from_value(json!({
                            "metadata": {"name": format!("s{i}")},
                            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
                            .map_err(|e| e.to_string())?;
                        svc_api
                            .create(&Default::default(), &svc)
                            .await
                            .map_err(|e| e.to_string())?;
                        let s = serde_json::from_value(slice(i, endpoints, 0))
                            .map_err(|e| e.to_string())?;
                        slice_api
                            .create(&Default::default(), &s)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            results.into_iter().filter(Result::is_err).count()
        })
    });
    assert_eq!(failures, 0, "objects not created");
    println!(
        "objects: {services} services + {services} slices written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // podswitchd cold start.
    let run_dir = std::env::temp_dir().join(format!("podswitch-k8s-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let config = run_dir.join("node.toml");
    std::fs::write(
        &config,
        "[node]\nname = \"kb-node\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n",
    )
    .unwrap();
    let kc = kubeconfig.display().to_string();
    let started = Instant::now();
    let mut daemon = Daemon::start_with_args(
        &node,
        run_dir.clone(),
        config,
        1,
        &[
            "--kubernetes",
            "--kubeconfig",
            &kc,
            "--node-name",
            "kb-node",
        ],
    );
    loop {
        let (_, out, _) = daemon.ctl(&["-o", "json", "status"]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let stored = v["config"]["services"].as_u64().unwrap_or(0);
        if stored >= services && v["health"]["source"]["state"] == "synced" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "podswitchd did not sync: {out}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let podswitch_cold = started.elapsed();
    let podswitch_rss = rss_kib(daemon.pid().unwrap_or(0));
    println!(
        "podswitchd: all {services} services in its snapshot {:.2} s after start; RSS {} MiB (peak {} MiB)",
        podswitch_cold.as_secs_f64(),
        podswitch_rss.0 / 1024,
        podswitch_rss.1 / 1024
    );

    // kube-proxy cold start.
    let kp_log = run_dir.join("kube-proxy.log");
    let started = Instant::now();
    let mut kube_proxy = KubeProxy::start(&kp, &cp, &kc, &kp_log);
    let kp_first_sync = loop {
        let m = kube_proxy.metrics();
        if histogram(&m, "kubeproxy_sync_proxy_rules_duration_seconds").count >= 1.0 {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(120) {
            let sync: Vec<&str> = m
                .lines()
                .filter(|l| l.contains("sync_proxy_rules"))
                .collect();
            panic!(
                "kube-proxy did not sync: {}\nmetrics ({} bytes): {sync:?}",
                tail(&kp_log),
                m.len()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let kp_rss = rss_kib(kube_proxy.child.id());
    println!(
        "kube-proxy (nftables): first full sync {:.2} s after start; RSS {} MiB (peak {} MiB)",
        kp_first_sync.as_secs_f64(),
        kp_rss.0 / 1024,
        kp_rss.1 / 1024
    );
    std::thread::sleep(Duration::from_secs(3));
    let ps_before = histogram(
        &daemon.ctl_ok(&["metrics"]),
        "network_programming_duration_seconds",
    );
    let kp_before = histogram(
        &kube_proxy.metrics(),
        "kubeproxy_network_programming_duration_seconds",
    );
    let kp_sync_before = histogram(
        &kube_proxy.metrics(),
        "kubeproxy_sync_proxy_rules_duration_seconds",
    );
    let ps_sync_before = histogram(
        &daemon.ctl_ok(&["metrics"]),
        "podswitch_kubernetes_sync_duration_seconds",
    );

    // Churn: one endpoint of a random service per change, paced.
    let changes = rate * secs;
    let sent = in_api_netns(&api_ns, kubeconfig, move |client| {
        Box::pin(async move {
            let slice_api =
                kube::Api::<k8s_openapi::api::discovery::v1::EndpointSlice>::namespaced(client, NS);
            let mut versions: BTreeMap<u64, u64> = BTreeMap::new();
            let mut seed = 0x9e37_79b9_u64;
            let start = tokio::time::Instant::now();
            let mut sent = 0;
            for n in 0..changes {
                tokio::time::sleep_until(start + Duration::from_secs_f64(n as f64 / rate as f64))
                    .await;
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let i = (seed >> 33) % services;
                let v = versions.entry(i).or_insert(0);
                *v += 1;
                let body = slice(i, endpoints, *v);
                let patch = kube::api::Patch::Merge(&body);
                if slice_api
                    .patch(&format!("s{i}-1"), &Default::default(), &patch)
                    .await
                    .is_ok()
                {
                    sent += 1;
                }
            }
            sent
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    let ps = histogram(
        &daemon.ctl_ok(&["metrics"]),
        "network_programming_duration_seconds",
    )
    .minus(&ps_before);
    let kpm = kube_proxy.metrics();
    let kp = histogram(&kpm, "kubeproxy_network_programming_duration_seconds").minus(&kp_before);
    let kp_sync =
        histogram(&kpm, "kubeproxy_sync_proxy_rules_duration_seconds").minus(&kp_sync_before);
    let ps_sync = histogram(
        &daemon.ctl_ok(&["metrics"]),
        "podswitch_kubernetes_sync_duration_seconds",
    )
    .minus(&ps_sync_before);
    println!("churn: {sent} of {changes} endpoint changes sent at {rate}/s");
    println!(
        "| proxy | programming latency p50 / p99 (s) | observed | sync duration p50 / p99 (s) | syncs |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| podswitchd | {:.3} / {:.3} | {} | {:.4} / {:.4} | {} |",
        ps.quantile(0.5),
        ps.quantile(0.99),
        ps.count,
        ps_sync.quantile(0.5),
        ps_sync.quantile(0.99),
        ps_sync.count
    );
    println!(
        "| kube-proxy nftables | {:.3} / {:.3} | {} | {:.4} / {:.4} | {} |",
        kp.quantile(0.5),
        kp.quantile(0.99),
        kp.count,
        kp_sync.quantile(0.5),
        kp_sync.quantile(0.99),
        kp_sync.count
    );
    println!(
        "(quantiles interpolated within histogram buckets: podswitchd's from 1 ms, kube-proxy's from 250 ms)"
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load after: {}", load.trim());
    kube_proxy.stop();
    let _ = daemon.stop();
    let _ = std::fs::remove_dir_all(&run_dir);
}

/// (VmRSS, VmHWM) of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// kube-proxy in its own namespace, stopped by pid.
struct KubeProxy {
    child: Child,
    netns: String,
}

impl KubeProxy {
    fn start(ns: &Netns, cp: &ControlPlane, kubeconfig: &str, log: &std::path::Path) -> KubeProxy {
        let bin = cp.binary("kube-proxy");
        let file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(bin)
            .args([
                &format!("--kubeconfig={kubeconfig}"),
                "--proxy-mode=nftables",
                "--hostname-override=kp-node",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--cluster-cidr=10.244.0.0/16",
                // Leave the host's conntrack sysctls alone.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--conntrack-udp-timeout=0",
                "--conntrack-udp-timeout-stream=0",
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start kube-proxy");
        KubeProxy {
            child,
            netns: ns.name.clone(),
        }
    }

    fn metrics(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "curl",
                "-s",
                "http://127.0.0.1:10249/metrics",
            ])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
    }

    fn stop(&mut self) {
        // SAFETY: kill() on the pid we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// A Prometheus histogram read from text.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    count: f64,
}

/// The histogram `name` in Prometheus text (kube-proxy's IPv4 one where
/// it labels them by family).
fn histogram(text: &str, name: &str) -> Histogram {
    let mut h = Histogram::default();
    let bucket = format!("{name}_bucket{{");
    let count = format!("{name}_count");
    for line in text.lines() {
        if line.contains("ip_family=\"IPv6\"") {
            continue;
        }
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(rest) = line.strip_prefix(&bucket) {
            let le = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next());
            if let (Some(le), Some(value)) = (le, value) {
                let bound = le.parse().unwrap_or(f64::INFINITY);
                h.buckets.push((bound, value));
            }
        } else if let Some(rest) = line.strip_prefix(&count)
            && (rest.starts_with(' ') || rest.starts_with('{'))
        {
            h.count = value.unwrap_or(0.0);
        }
    }
    h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    h
}

impl Histogram {
    fn minus(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(b, c)| {
                let prior = before
                    .buckets
                    .iter()
                    .find(|(pb, _)| pb == b)
                    .map_or(0.0, |p| p.1);
                (*b, c - prior)
            })
            .collect();
        Histogram {
            buckets,
            count: self.count - before.count,
        }
    }

    /// The `q` quantile, interpolated linearly within its bucket.
    fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return f64::NAN;
        }
        let want = q * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= want {
                if bound.is_infinite() {
                    return lower;
                }
                let share = if cumulative > below {
                    (want - below) / (cumulative - below)
                } else {
                    1.0
                };
                return lower + (bound - lower) * share;
            }
            lower = bound;
            below = cumulative;
        }
        lower
    }
}
