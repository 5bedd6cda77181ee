//! `state_apply`: a declarative apply of SERVICES services through a real
//! `podswitchd run` (release, one worker) in a network namespace of its
//! own: the document is `PUT /v1/state` over the API socket, and the bench
//! measures the time to the answer and the daemon's RSS before and after
//! (so the growth per service), then applies the same document again (no
//! change) and reads the RSS once more.
//!
//! Each service has PORTS TCP ports (`http` 80 → 8080, `https` 443 → 8443,
//! then 8000 + k) and ENDPOINTS ready endpoints of its own (addresses unique
//! across the document, each with a node name, as the Kubernetes source
//! gives them).
//!
//! Usage (root): `state_apply [SERVICES] [ENDPOINTS] [PORTS]`, default
//! `100000 10 1`. With `PODSWITCH_LOG=podswitch_control=debug` the daemon's
//! timings of each step (decoding, checks, tables, store) are printed too. `PODSWITCHD_BIN` names the podswitchd to run (default:
//! the `podswitchd` next to this program, so build both with `--release`).
//! Figures: `benches/README.md`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use podswitch_tests::live::{Daemon, Netns};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The JSON document: `services` services of `ports` ports and `endpoints` endpoints.
fn document(services: u64, endpoints: u64, ports: u64) -> String {
    use std::fmt::Write as _;
    let mut doc = String::with_capacity((services * (150 + 60 * endpoints)) as usize);
    doc.push_str("{\"services\":[");
    for i in 0..services {
        if i > 0 {
            doc.push(',');
        }
        let vip = 0x0a60_0000 + i as u32;
        let _ = write!(
            doc,
            "{{\"name\":\"ns{}/svc-{i}\",\"cluster_ip\":\"{}\",\"ports\":[",
            i % 50,
            std::net::Ipv4Addr::from(vip)
        );
        for k in 0..ports {
            let (name, port, target) = match k {
                0 => ("http".to_string(), 80, 8080),
                1 => ("https".to_string(), 443, 8443),
                k => (format!("p{k}"), 8000 + k, 9000 + k),
            };
            let comma = if k > 0 { "," } else { "" };
            let _ = write!(
                doc,
                "{comma}{{\"name\":\"{name}\",\"port\":{port},\"target_port\":{target}}}"
            );
        }
        doc.push_str("],\"endpoints\":[");
        for e in 0..endpoints {
            // 10.128.0.0/9: 16 addresses per service, unique in the document.
            let address = std::net::Ipv4Addr::from(0x0a80_0000 + (i * 16 + e) as u32);
            let comma = if e > 0 { "," } else { "" };
            let _ = write!(
                doc,
                "{comma}{{\"address\":\"{address}\",\"ready\":true,\"node\":\"node-{}\"}}",
                (i + e) % 100
            );
        }
        doc.push_str("]}");
    }
    doc.push_str("]}");
    doc
}

/// Sends one HTTP/1.1 request on the API socket; returns (status, body).
fn request(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).expect("API socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: podswitchd\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("send head");
    stream.write_all(body).expect("send body");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read answer");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
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

/// CPU time (user + system, all threads) of `pid` so far, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th of them, in clock ticks.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// Shortens an answer for printing.
fn brief(body: &str) -> &str {
    &body[..body.len().min(300)]
}

fn main() {
    let services = arg(1, 100_000);
    let endpoints = arg(2, 10).clamp(0, 16);
    let ports = arg(3, 1).clamp(1, 100);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("state_apply needs root (a network namespace for podswitchd)");
        std::process::exit(2);
    }
    if std::env::var_os("PODSWITCHD_BIN").is_none() {
        let exe = std::env::current_exe().expect("own path");
        // SAFETY: set before any other thread of this program exists.
        unsafe { std::env::set_var("PODSWITCHD_BIN", exe.with_file_name("podswitchd")) };
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let doc = document(services, endpoints, ports);
    println!(
        "state_apply: {services} services x {endpoints} endpoints x {ports} port(s), {:.1} MB of JSON; load {}",
        doc.len() as f64 / 1e6,
        load.trim()
    );
    let node = Netns::new("sa-node");
    let run_dir =
        std::env::temp_dir().join(format!("podswitch-state-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let config = run_dir.join("node.toml");
    std::fs::write(
        &config,
        "[node]\nname = \"node-0\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n",
    )
    .unwrap();
    let mut daemon = Daemon::start_with(&node, run_dir.clone(), config, 1);
    let pid = daemon.pid().expect("daemon pid");
    let socket = run_dir.join("api.sock");
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    let cpu = cpu_secs(pid);
    let started = Instant::now();
    let (status, body) = request(&socket, "PUT", "/v1/state", doc.as_bytes());
    let apply = started.elapsed();
    let apply_cpu = cpu_secs(pid) - cpu;
    assert_eq!(status, 200, "apply failed: {}", brief(&body));
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid);
    let per_service = |kib: u64| (kib.saturating_sub(before.0) * 1024) as f64 / services as f64;
    println!(
        "apply (all new): {:.2} s ({:.2} s CPU); RSS {} -> {} MiB (+{} MiB, {:.0} bytes per service), peak {} MiB",
        apply.as_secs_f64(),
        apply_cpu,
        before.0 / 1024,
        after.0 / 1024,
        after.0.saturating_sub(before.0) / 1024,
        per_service(after.0),
        after.1 / 1024
    );
    let cpu = cpu_secs(pid);
    let started = Instant::now();
    let (status, body) = request(&socket, "PUT", "/v1/state", doc.as_bytes());
    let again = started.elapsed();
    let again_cpu = cpu_secs(pid) - cpu;
    assert_eq!(status, 200, "second apply failed: {}", brief(&body));
    std::thread::sleep(Duration::from_millis(500));
    let last = rss_kib(pid);
    println!(
        "apply (the same again, no change): {:.2} s ({:.2} s CPU); RSS {} MiB ({:.0} bytes per service over the start), peak {} MiB",
        again.as_secs_f64(),
        again_cpu,
        last.0 / 1024,
        per_service(last.0),
        last.1 / 1024
    );
    let (_, config) = request(&socket, "GET", "/v1/config", b"");
    println!("config: {}", brief(&config));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load after: {}", load.trim());
    // Where the time went, when the daemon logs at debug level
    // (`PODSWITCH_LOG=podswitch_control=debug`).
    for line in daemon.log_text().lines().filter(|l| l.contains("apply: ")) {
        println!("daemon: {}", line.trim());
    }
    let _ = daemon.stop();
    let _ = std::fs::remove_dir_all(&run_dir);
}
