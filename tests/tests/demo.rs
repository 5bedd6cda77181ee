//! `podswitchd demo` run the way a newcomer runs it, non-interactively:
//! its output must show the pods, answers through the ClusterIP from
//! endpoints on both nodes and through the NodePort, conntrack entries and
//! counters; afterwards no namespace, link, process, file or record of it
//! may be left. A second test kills a `--keep` demo with SIGKILL and checks
//! that the next demo removes what the first left behind.
//! Needs root; skips with a printed reason otherwise.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podswitch_tests::live::{cni_bin, daemon_bin, root_or_skip};

/// One demo at a time: each runs two daemons on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// A demo run must finish within this.
const LIMIT: Duration = Duration::from_secs(180);

/// Interface names the demo creates (in its own namespaces only).
const DEMO_LINKS: [&str; 6] = ["up0", "node-a", "node-b", "external", "br0", "eth0"];

fn demo_command(plugin: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(daemon_bin());
    command
        .arg("demo")
        .arg("--cni-plugin")
        .arg(plugin)
        .args(extra)
        .env("PODSWITCH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Collects a pipe's lines on a thread, forwarding each to `lines`.
fn forward_lines(pipe: impl Read + Send + 'static, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

/// A running demo whose output is read as it comes.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: String,
}

impl Demo {
    fn start(extra: &[&str]) -> Demo {
        Demo::start_with_plugin(&cni_bin(), extra)
    }

    fn start_with_plugin(plugin: &Path, extra: &[&str]) -> Demo {
        let mut child = demo_command(plugin, extra)
            .spawn()
            .expect("start podswitchd demo");
        let (tx, rx) = mpsc::channel();
        forward_lines(child.stdout.take().unwrap(), tx.clone());
        forward_lines(child.stderr.take().unwrap(), tx);
        Demo {
            child,
            lines: rx,
            output: String::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads output until a line contains `needle`; panics after `LIMIT`.
    fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.output.push_str(&line);
                    self.output.push('\n');
                    if line.contains(needle) {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!("no line with {needle:?} from the demo:\n{}", self.output);
    }

    /// Waits for the exit (killing it after `LIMIT`); returns the exit code.
    fn finish(&mut self) -> i32 {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            while let Ok(line) = self.lines.try_recv() {
                self.output.push_str(&line);
                self.output.push('\n');
            }
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the demo ran longer than {LIMIT:?}:\n{}", self.output);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The pipes close at exit: collect the rest.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.output.push_str(&line);
            self.output.push('\n');
        }
        status.code().unwrap_or(-1)
    }
}

fn netns_names() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn root_links() -> BTreeSet<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|name| name.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// What a demo with `pid` may leave: namespaces, processes, files, record.
fn leftovers(pid: u32, links_before: &BTreeSet<String>) -> Vec<String> {
    let prefix = format!("psdemo{pid}");
    let mut found: Vec<String> = netns_names()
        .into_iter()
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(|n| format!("netns {n}"))
        .collect();
    let mut demo_links: Vec<String> = DEMO_LINKS.iter().map(|s| s.to_string()).collect();
    for pod in ["pod-a1", "pod-a2", "pod-b1", "pod-b2"] {
        let container = format!("{prefix}-{pod}");
        demo_links.push(podswitch_cni::attach::host_ifname(&container, "eth0"));
    }
    let links_after = root_links();
    for link in demo_links {
        if links_after.contains(&link) && !links_before.contains(&link) {
            found.push(format!("link {link} in the test's namespace"));
        }
    }
    let dir = std::env::temp_dir().join(&prefix);
    for process in processes_mentioning(&dir.display().to_string()) {
        found.push(format!("process {process} using {}", dir.display()));
    }
    if dir.exists() {
        found.push(format!("directory {}", dir.display()));
    }
    let record = PathBuf::from(format!("/run/podswitch-demo/{pid}.json"));
    if record.exists() {
        found.push(format!("record {}", record.display()));
    }
    found
}

/// The lines of the section that starts with `title` (up to the next unindented line).
fn section<'a>(output: &'a str, title: &str) -> Vec<&'a str> {
    output
        .lines()
        .skip_while(|l| !l.starts_with(title))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect()
}

#[test]
fn demo_runs_traffic_and_leaves_nothing_behind() {
    if !root_or_skip("demo_runs_traffic_and_leaves_nothing_behind") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let links_before = root_links();
    let mut demo = Demo::start(&[]);
    let pid = demo.pid();
    let code = demo.finish();
    let output = demo.output.clone();
    println!("{output}");
    assert_eq!(code, 0, "the demo failed:\n{output}");

    for (pod, subnet) in [
        ("pod-a1", "10.244.1."),
        ("pod-a2", "10.244.1."),
        ("pod-b1", "10.244.2."),
        ("pod-b2", "10.244.2."),
    ] {
        assert!(
            output
                .lines()
                .any(|l| l.trim_start().starts_with(pod) && l.contains(subnet)),
            "{pod} with an address in {subnet}0/24 is not listed"
        );
    }
    let answered = |label: &str, node: &str| {
        output.lines().any(|l| {
            l.contains(label) && l.contains("answered by") && l.ends_with(&format!("({node})"))
        })
    };
    assert!(
        answered("(ClusterIP)", "node-a"),
        "no ClusterIP answer from node-a's pods"
    );
    assert!(
        answered("(ClusterIP)", "node-b"),
        "no ClusterIP answer from node-b's pods"
    );
    assert!(
        output
            .lines()
            .any(|l| l.contains("(NodePort on node-a)") && l.contains("answered by")),
        "no NodePort answer on node-a"
    );
    assert!(
        output
            .lines()
            .any(|l| l.contains("(NodePort on node-b)") && l.contains("answered by")),
        "no NodePort answer on node-b"
    );
    assert!(!output.contains("FAILED"), "an exchange failed");
    assert!(
        output
            .lines()
            .filter(|l| l.contains("ping") && l.contains("reply in"))
            .count()
            >= 2,
        "no ping replies across nodes"
    );
    for node in ["node-a", "node-b"] {
        let conntrack = section(&output, &format!("conntrack on {node}"));
        assert!(
            conntrack
                .iter()
                .any(|l| l.contains("10.96.0.10") || l.contains("30080")),
            "no service connection in {node}'s conntrack: {conntrack:?}"
        );
        let counters = section(&output, &format!("counters on {node}"));
        let uplink = counters
            .iter()
            .find(|l| l.trim_start().starts_with("up0 "))
            .unwrap_or_else(|| panic!("no up0 counters on {node}: {counters:?}"));
        let rx: u64 = uplink.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(rx > 0, "{node}'s uplink received nothing: {uplink}");
        assert!(
            counters
                .iter()
                .filter(|l| l.trim_start().starts_with("cni-"))
                .count()
                == 2,
            "{node} does not list its two pod ports: {counters:?}"
        );
    }
    assert!(output.contains("tcpdump -nni"), "no tcpdump hint");
    assert!(output.contains("--socket"), "no podswitchctl hint");
    let left = leftovers(pid, &links_before);
    assert!(left.is_empty(), "the demo left {left:?}");
}

#[test]
fn demo_killed_with_sigkill_is_cleaned_up_by_the_next() {
    if !root_or_skip("demo_killed_with_sigkill_is_cleaned_up_by_the_next") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let links_before = root_links();
    let mut first = Demo::start(&["--keep"]);
    let first_pid = first.pid();
    first.wait_for_line("demo ready");
    first.child.kill().expect("SIGKILL the demo");
    first.child.wait().expect("reap the demo");
    let left = leftovers(first_pid, &links_before);
    assert!(
        left.iter().any(|l| l.starts_with("netns"))
            && left.iter().any(|l| l.starts_with("process")),
        "a killed demo should leave namespaces and daemons for the next one to clean: {left:?}"
    );

    let mut second = Demo::start(&[]);
    let second_pid = second.pid();
    second.finish();
    println!("{}", second.output);
    assert!(
        second.output.contains("cleaned up after an earlier demo")
            && second.output.contains(&format!("pid {first_pid}")),
        "the second demo did not report cleaning up the first:\n{}",
        second.output
    );
    let left = leftovers(first_pid, &links_before);
    assert!(
        left.is_empty(),
        "the first demo's leftovers remain: {left:?}"
    );
    let left = leftovers(second_pid, &links_before);
    assert!(left.is_empty(), "the second demo left {left:?}");
}

#[test]
fn a_plugin_failing_without_output_is_reported_with_its_exit_status() {
    if !root_or_skip("a_plugin_failing_without_output_is_reported_with_its_exit_status") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let links_before = root_links();
    let dir = std::env::temp_dir().join(format!("podswitch-demo-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("silent-failure");
    std::fs::write(&plugin, "#!/bin/sh\nexit 3\n").unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&plugin, executable).unwrap();
    let mut demo = Demo::start_with_plugin(&plugin, &[]);
    let pid = demo.pid();
    let code = demo.finish();
    let output = demo.output.clone();
    println!("{output}");
    assert_ne!(code, 0, "the demo fails");
    let line = output
        .lines()
        .find(|l| l.contains("CNI ADD"))
        .unwrap_or_else(|| panic!("no CNI ADD error:\n{output}"));
    assert!(
        line.contains("failed with exit status 3 and no output"),
        "{line}"
    );
    assert_eq!(leftovers(pid, &links_before), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}
