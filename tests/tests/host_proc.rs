//! A pod whose network namespace the runtime names as `/proc/PID/ns/net`,
//! reached by a podswitchd in a PID namespace of its own (the DaemonSet's
//! `hostPID: false`) with the host's `/proc` mounted elsewhere
//! (`--host-proc`): the port is placed and the pod reaches the gateway.
//! Without `--host-proc` the same add fails, naming the path: the daemon's
//! own `/proc` has no such process.
//!
//! The daemon runs under `unshare --mount --pid --fork`, which first binds
//! the host's `/proc` to a directory, then mounts a `/proc` of the new PID
//! namespace (as a container runtime does). Needs root and util-linux's
//! unshare; skips otherwise.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use podswitch_tests::live::{Daemon, Launch, Netns, root_or_skip, wait_reachable};

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const CONFIG: &str = "[node]\nname = \"host-proc\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

/// A process holding the pod's namespace, as a pod's sandbox does; killed on drop.
struct Sandbox(Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sandbox(pod: &Netns) -> Sandbox {
    let child = Command::new("ip")
        .args(["netns", "exec", &pod.name, "sleep", "120"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start the sandbox process");
    Sandbox(child)
}

/// podswitchd in `node` and in a PID namespace of its own, the host's
/// `/proc` bound at `host_proc`; `--host-proc` passed when `translate`.
fn daemon_in_own_pid_namespace(
    node: &Netns,
    tag: &str,
    host_proc: &Path,
    translate: bool,
) -> Daemon {
    let run_dir =
        std::env::temp_dir().join(format!("podswitch-host-proc-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir).unwrap();
    let config = run_dir.join("node.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let host_proc = host_proc.display().to_string();
    let wrapper = [
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child=SIGKILL",
        "--",
        "sh",
        "-c",
        "mount --bind /proc \"$0\" && mount -t proc proc /proc && exec \"$@\"",
        &host_proc,
    ];
    let mut extra = vec![];
    if translate {
        extra = vec!["--host-proc", &host_proc];
    }
    let launch = Launch {
        workers: 1,
        extra: &extra,
        env: &[],
        wrapper: &wrapper,
    };
    Daemon::launch(node, run_dir, config, &launch)
}

/// Stops the daemon: SIGTERM to podswitchd itself (unshare, which the
/// helper started, blocks SIGTERM while it waits for its child).
fn stop(daemon: &mut Daemon) {
    if let Some(wrapper) = daemon.pid() {
        let children = std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children"))
            .unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: a signal to a process this test started (through unshare); no memory is involved.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    daemon.stop_with(libc::SIGKILL, Duration::from_secs(5));
}

fn port_add(daemon: &Daemon, netns: &str) -> (i32, String, String) {
    daemon.ctl(&[
        "port",
        "add",
        "pod-a",
        "--kind",
        "tap",
        "--netns",
        netns,
        "--mac",
        "02:00:0a:f4:01:02",
        "--ip",
        &POD.to_string(),
    ])
}

#[test]
fn a_pod_given_as_proc_pid_ns_net_is_reached_through_the_hosts_proc() {
    if !root_or_skip("a_pod_given_as_proc_pid_ns_net_is_reached_through_the_hosts_proc") {
        return;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipping: unshare (util-linux) is not installed");
        return;
    }
    let node = Netns::new("hp-node");
    let pod = Netns::new("hp-pod");
    let holder = sandbox(&pod);
    let netns = format!("/proc/{}/ns/net", holder.0.id());
    let host_proc: PathBuf =
        std::env::temp_dir().join(format!("podswitch-host-proc-{}", std::process::id()));
    std::fs::create_dir_all(&host_proc).unwrap();

    // Without --host-proc: the daemon's /proc is its own PID namespace's.
    let mut plain = daemon_in_own_pid_namespace(&node, "plain", &host_proc, false);
    let (code, out, err) = port_add(&plain, &netns);
    assert_ne!(code, 0, "placed without the host's /proc: {out}");
    assert!(err.contains(&netns), "the error names the path: {err}{out}");
    stop(&mut plain);
    let _ = std::fs::remove_dir_all(&plain.run_dir);

    let mut daemon = daemon_in_own_pid_namespace(&node, "host", &host_proc, true);
    let (code, out, err) = port_add(&daemon, &netns);
    assert_eq!(
        code,
        0,
        "port add failed: {err}{out}\n{}",
        daemon.log_text()
    );
    let shown = daemon.ctl_ok(&["-o", "json", "port", "show", "pod-a"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["netns"], netns.as_str(), "kept as given: {shown}");
    let addrs = Command::new("ip")
        .args(["-n", &pod.name, "-4", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(addrs.contains(&format!("inet {POD}/24")), "{addrs}");
    assert!(
        wait_reachable(&pod, GW, Duration::from_secs(10)),
        "the pod does not reach the gateway: {}",
        daemon.log_text()
    );
    stop(&mut daemon);
    let _ = std::fs::remove_dir_all(&daemon.run_dir);
    let _ = std::fs::remove_dir(&host_proc);
}
