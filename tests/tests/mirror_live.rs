//! The mirror port with the real tools: `tcpdump -i` and `tshark -i` on a
//! mirror interface, `podswitchctl capture` piped into `tcpdump -r -`,
//! pcapng comments read back by tshark, filters, the drop stage, the kernel
//! kept out of the mirror interface, and bad requests.
//!
//! Each test builds its own namespaces (`ps<pid>-…`), runs `podswitchd` in a
//! node namespace with two TAP pods, and sends raw frames with known bytes
//! from inside the pods. Needs root, tcpdump and tshark; skips otherwise.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podswitch_dataplane::io::PcapReader;
use podswitch_tests::live::{
    Daemon, Netns, ctl_bin, ip, root_or_skip, send_raw_frames, tcp_transfer, wait_reachable,
};

static SERIAL: Mutex<()> = Mutex::new(());

const MAC_A: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 2];
const MAC_B: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 3];
const IP_A: [u8; 4] = [10, 244, 1, 2];
const IP_B: [u8; 4] = [10, 244, 1, 3];
/// An address no pod has: the receiving pod's kernel drops such frames
/// without answering, so only the frames a test sends cross the switch.
const NOBODY: [u8; 4] = [10, 244, 1, 77];

struct Pods {
    // Field order is drop order: the daemon stops before its namespaces go.
    daemon: Daemon,
    a: Netns,
    b: Netns,
    node: Netns,
}

impl Drop for Pods {
    fn drop(&mut self) {
        let _ = self.daemon.stop();
        let _ = std::fs::remove_dir_all(&self.daemon.run_dir);
    }
}

fn tools_or_skip(test: &str) -> bool {
    if !root_or_skip(test) {
        return false;
    }
    for tool in ["tcpdump", "tshark"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("skipping {test}: {tool} is not installed (.ci/run installs it)");
            return false;
        }
    }
    true
}

/// Two TAP pods with IPv6 off (no router solicitations or MLD reports to
/// add frames of their own), one worker.
fn pods(tag: &str) -> Pods {
    let node = Netns::new(&format!("{tag}-node"));
    let a = Netns::new(&format!("{tag}-a"));
    let b = Netns::new(&format!("{tag}-b"));
    for ns in [&a, &b] {
        for key in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6");
            ns.run(move || std::fs::write(path, "1").expect("disable IPv6 in the pod"));
        }
    }
    let port = |name: &str, ns: &Netns, mac: &str, ip: &str| {
        format!(
            "[[ports]]\nname = \"{name}\"\nkind = \"tap\"\nifname = \"ps{}{tag}{}\"\nnetns = \"{}\"\nmac = \"{mac}\"\nips = [\"{ip}\"]\n",
            std::process::id() % 100_000,
            &name[4..],
            ns.path().display()
        )
    };
    let config = format!(
        "[node]\nname = \"{tag}\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n{}{}",
        port("pod-a", &a, "02:00:0a:f4:01:02", "10.244.1.2"),
        port("pod-b", &b, "02:00:0a:f4:01:03", "10.244.1.3"),
    );
    let daemon = Daemon::start(&node, tag, &config, 1);
    Pods { daemon, a, b, node }
}

fn mirror_iface() -> String {
    format!("psm{}", std::process::id() % 100_000)
}

/// An Ethernet/IPv4/UDP (or TCP) frame with `len` bytes of payload.
fn frame(
    src: ([u8; 6], [u8; 4]),
    dst: ([u8; 6], [u8; 4]),
    tcp_port: Option<u16>,
    len: usize,
) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(src.0, dst.0).ipv4(src.1, dst.1, 64);
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
    let mut out = Vec::new();
    match tcp_port {
        Some(port) => builder
            .tcp(40000, port, 1, 1000)
            .write(&mut out, &payload)
            .unwrap(),
        None => builder.udp(40000, 9999).write(&mut out, &payload).unwrap(),
    }
    out
}

/// A capture tool running in the node namespace; SIGINT on drop.
struct Tool {
    child: Child,
    file: PathBuf,
}

impl Tool {
    /// Starts `tool args…` in `ns` and waits until its stderr shows `ready`.
    fn start(ns: &Netns, tool: &str, args: &[&str], ready: &str, file: PathBuf) -> Tool {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, tool])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {tool}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(&ready) {
                    let _ = tx.send(Ok(()));
                }
            }
            let _ = tx.send(Err(seen));
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok(())) => {}
            other => {
                let _ = child.kill();
                panic!("{tool} did not become ready: {other:?}");
            }
        }
        // The packet socket is bound when the tool says so; give it a moment to settle.
        std::thread::sleep(Duration::from_millis(300));
        Tool { child, file }
    }

    /// Stops it (SIGINT, like Ctrl-C) and returns the frames of its file.
    fn finish(mut self) -> Vec<Vec<u8>> {
        interrupt(&self.child);
        wait_exit(&mut self.child, Duration::from_secs(10));
        read_frames(&self.file)
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        interrupt(&self.child);
        wait_exit(&mut self.child, Duration::from_secs(5));
        let _ = std::fs::remove_file(&self.file);
    }
}

fn interrupt(child: &Child) {
    // `ip netns exec` execs the tool, so this pid is the tool's.
    // SAFETY: kill() on a pid this test spawned has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
}

fn wait_exit(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn read_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut reader =
        PcapReader::open(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut frames = Vec::new();
    while let Some(record) = reader.next_record().expect("a valid capture file") {
        frames.push(record.data.to_vec());
    }
    frames
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ps{}-{name}", std::process::id()))
}

fn sorted(mut frames: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    frames.sort();
    frames
}

/// The node namespace's IP-level counters (`/proc/net/snmp`).
fn node_counters(ns: &Netns) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for (proto, field) in [
        ("Ip", "InReceives"),
        ("Ip", "InDelivers"),
        ("Ip", "ForwDatagrams"),
        ("Ip", "OutRequests"),
        ("Ip", "InAddrErrors"),
        ("Icmp", "InMsgs"),
        ("Icmp", "OutMsgs"),
        ("Udp", "InDatagrams"),
        ("Udp", "NoPorts"),
        ("Tcp", "InSegs"),
    ] {
        out.push((format!("{proto}.{field}"), ns.snmp(proto, field)));
    }
    out
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn link_exists(ns: &Netns, iface: &str) -> bool {
    Command::new("ip")
        .args(["-n", &ns.name, "link", "show", iface])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn mirror_interface_tcpdump_and_tshark_see_exactly_the_frames_and_the_kernel_ignores_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !tools_or_skip("mirror_interface_tcpdump_and_tshark_see_exactly_the_frames") {
        return;
    }
    let mut t = pods("mi");
    let iface = mirror_iface();
    t.daemon
        .ctl_ok(&["mirror", "add", "--port", "pod-a", "--iface", &iface]);
    assert!(link_exists(&t.node, &iface), "{}", t.daemon.log_text());

    let tcpdump_file = temp("mi-tcpdump.pcap");
    let tshark_file = temp("mi-tshark.pcapng");
    let tcpdump = Tool::start(
        &t.node,
        "tcpdump",
        &[
            "-i",
            &iface,
            "-nn",
            "--immediate-mode",
            "-U",
            "-w",
            tcpdump_file.to_str().unwrap(),
        ],
        "listening on",
        tcpdump_file.clone(),
    );
    let tshark = Tool::start(
        &t.node,
        "tshark",
        &["-i", &iface, "-q", "-w", tshark_file.to_str().unwrap()],
        "Capturing on",
        tshark_file.clone(),
    );
    let before = node_counters(&t.node);

    // pod-a → pod-b (ingress at pod-a) and pod-b → pod-a (egress at pod-a),
    // sizes from the minimum to near the MTU, plus broadcasts both ways (an
    // ARP request and a UDP broadcast): copies the node's kernel would
    // otherwise be tempted to look at.
    let mut a_to_b: Vec<Vec<u8>> = (0..20)
        .map(|i| frame((MAC_A, IP_A), (MAC_B, NOBODY), None, 18 + i * 70))
        .collect();
    a_to_b.push(frame(
        (MAC_A, IP_A),
        ([0xff; 6], [255, 255, 255, 255]),
        None,
        40,
    ));
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&IP_A);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&NOBODY);
    arp.resize(60, 0);
    a_to_b.push(arp);
    let mut b_to_a: Vec<Vec<u8>> = (0..15)
        .map(|i| frame((MAC_B, IP_B), (MAC_A, NOBODY), Some(80), 10 + i * 90))
        .collect();
    b_to_a.push(frame(
        (MAC_B, IP_B),
        ([0xff; 6], [255, 255, 255, 255]),
        None,
        33,
    ));
    send_raw_frames(&t.a, "eth0", a_to_b.clone());
    send_raw_frames(&t.b, "eth0", b_to_a.clone());
    let expected: Vec<Vec<u8>> = sorted(a_to_b.iter().chain(&b_to_a).cloned().collect());
    let expected_bytes: usize = expected.iter().map(Vec::len).sum();

    // Both tools see exactly those frames (count and bytes).
    let listed = wait_for(Duration::from_secs(5), || {
        let text = t.daemon.ctl_ok(&["-o", "json", "mirror", "list"]);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let frames = v["mirrors"][0]["counters"]["frames"].as_u64().unwrap_or(0);
        (frames >= expected.len() as u64).then_some(v)
    })
    .expect("the session counted every frame");
    assert_eq!(
        listed["mirrors"][0]["counters"]["frames"],
        expected.len() as u64,
        "{listed}"
    );
    assert_eq!(
        listed["mirrors"][0]["counters"]["bytes"],
        expected_bytes as u64
    );
    assert_eq!(
        listed["mirrors"][0]["counters"]["write_errors"], 0,
        "{listed}"
    );
    // Let the tools' capture buffers time out and be written.
    std::thread::sleep(Duration::from_millis(1500));
    let by_tcpdump = sorted(tcpdump.finish());
    let by_tshark = sorted(tshark.finish());
    assert_eq!(by_tcpdump.len(), expected.len(), "tcpdump frame count");
    assert_eq!(by_tshark.len(), expected.len(), "tshark frame count");
    assert_eq!(
        by_tcpdump.iter().map(Vec::len).sum::<usize>(),
        expected_bytes
    );
    assert_eq!(by_tcpdump, expected, "tcpdump: the very frames sent");
    assert_eq!(by_tshark, expected, "tshark: the very frames sent");

    // The node's kernel neither answered nor routed any copy.
    let after = node_counters(&t.node);
    assert_eq!(before, after, "node namespace counters moved");

    // Shown in the table and in the metrics.
    let table = t.daemon.ctl_ok(&["mirror", "list"]);
    assert!(
        table.contains("FRAMES") && table.contains(&iface),
        "{table}"
    );
    let metrics = t.daemon.ctl_ok(&["metrics"]);
    assert!(
        metrics.contains(&format!(
            "podswitch_mirror_frames_total{{session=\"{iface}\"}} {}",
            expected.len()
        )),
        "{metrics}"
    );

    // Restored on restart, removed on delete.
    let (run_dir, config) = (t.daemon.run_dir.clone(), t.daemon.config.clone());
    t.daemon.stop();
    assert!(
        wait_for(Duration::from_secs(5), || (!link_exists(&t.node, &iface))
            .then_some(()))
        .is_some(),
        "the mirror interface goes with the daemon"
    );
    t.daemon = Daemon::start_with(&t.node, run_dir, config, 1);
    assert!(
        link_exists(&t.node, &iface),
        "restored on start: {}",
        t.daemon.log_text()
    );
    t.daemon.ctl_ok(&["mirror", "del", &iface]);
    assert!(
        wait_for(Duration::from_secs(5), || (!link_exists(&t.node, &iface))
            .then_some(()))
        .is_some(),
        "deleted → TAP removed"
    );
}

/// Runs `podswitchctl capture ARGS -w - | tcpdump -r - -nn` and returns
/// (the ctl child, the tcpdump child) once tcpdump has read the file header.
fn capture_into_tcpdump(
    d: &Daemon,
    args: &[&str],
) -> (Child, Child, std::sync::mpsc::Receiver<String>) {
    let mut ctl = Command::new(ctl_bin())
        .arg("--socket")
        .arg(d.run_dir.join("api.sock"))
        .arg("capture")
        .args(args)
        .args(["-w", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run podswitchctl capture");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-r", "-", "-nn"])
        .stdin(ctl.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tcpdump -r -");
    let stderr = tcpdump.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tcpdump read the capture's header");
    assert!(first.starts_with("reading from file -"), "{first}");
    (ctl, tcpdump, rx)
}

#[test]
fn capture_stream_into_tcpdump_pcapng_comments_filter_and_drops() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !tools_or_skip("capture_stream_into_tcpdump_pcapng_comments_filter_and_drops") {
        return;
    }
    let t = pods("cs");
    let generation = |d: &Daemon| {
        let v: serde_json::Value =
            serde_json::from_str(&d.ctl_ok(&["-o", "json", "status"])).unwrap();
        v["generation"].as_u64()
    };
    let generation_before = generation(&t.daemon);

    // 1. `-c 6 -w - | tcpdump -r -`: parses with no warning, six lines.
    let (mut ctl, tcpdump, stderr) =
        capture_into_tcpdump(&t.daemon, &["--port", "pod-a", "-c", "6"]);
    let frames: Vec<Vec<u8>> = (0..10)
        .map(|i| frame((MAC_A, IP_A), (MAC_B, NOBODY), None, 20 + i))
        .collect();
    send_raw_frames(&t.a, "eth0", frames);
    let out = tcpdump
        .wait_with_output()
        .expect("tcpdump ends with the stream");
    wait_exit(&mut ctl, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&out.stdout);
    let rest: Vec<String> = stderr.try_iter().collect();
    assert!(out.status.success(), "tcpdump failed: {rest:?}");
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("10.244.1.2.40000 > 10.244.1.77.9999: UDP")),
        "{text}"
    );
    assert!(
        rest.iter().all(|l| !l.to_lowercase().contains("warning")),
        "{rest:?}"
    );
    assert_eq!(
        generation(&t.daemon),
        generation_before,
        "captures are not config"
    );

    // 2. A filter: only `tcp port 80` frames come through.
    let file = temp("cs-filter.pcap");
    let filtered = capture_to_file(
        &t.daemon,
        &["--port", "pod-a", "-c", "3", "--duration", "20"],
        &file,
        &["tcp", "port", "80"],
    );
    wait_for_capture_session(&t.daemon);
    let port80: Vec<Vec<u8>> = (0..3)
        .map(|i| frame((MAC_A, IP_A), (MAC_B, NOBODY), Some(80), 30 + i))
        .collect();
    let mut mixed = Vec::new();
    for (i, f) in port80.iter().enumerate() {
        mixed.push(frame((MAC_A, IP_A), (MAC_B, NOBODY), None, 50 + i));
        mixed.push(frame((MAC_A, IP_A), (MAC_B, NOBODY), Some(81), 50 + i));
        mixed.push(f.clone());
    }
    send_raw_frames(&t.a, "eth0", mixed);
    let out = filtered.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_frames(&file), port80, "only the port-80 frames");
    let _ = std::fs::remove_file(&file);

    // 3. The drop stage in pcapng: spoofed frames with their reason, read by tshark.
    let file = temp("cs-drops.pcapng");
    let dropped = capture_to_file(
        &t.daemon,
        &[
            "--port",
            "pod-a",
            "--stage",
            "drop",
            "--format",
            "pcapng",
            "-c",
            "3",
            "--duration",
            "20",
        ],
        &file,
        &[],
    );
    wait_for_capture_session(&t.daemon);
    let spoofed = vec![
        frame(([2, 0, 0, 0, 0, 0x66], IP_A), (MAC_B, NOBODY), None, 10),
        frame((MAC_A, IP_A), (MAC_B, NOBODY), None, 11), // fine: not a drop
        frame(([2, 0, 0, 0, 0, 0x66], IP_A), (MAC_B, NOBODY), None, 12),
        frame((MAC_A, [10, 244, 1, 99]), (MAC_B, NOBODY), None, 13),
    ];
    send_raw_frames(&t.a, "eth0", spoofed.clone());
    let out = dropped.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read_frames(&file),
        vec![spoofed[0].clone(), spoofed[2].clone(), spoofed[3].clone()]
    );
    let tshark = Command::new("tshark")
        .args(["-r"])
        .arg(&file)
        .args(["-T", "fields", "-e", "frame.comment"])
        .output()
        .expect("tshark -r");
    let comments = String::from_utf8_lossy(&tshark.stdout);
    let lines: Vec<&str> = comments.lines().collect();
    assert_eq!(
        lines,
        vec![
            "stage=drop in=pod-a verdict=drop reason=spoofed_src_mac",
            "stage=drop in=pod-a verdict=drop reason=spoofed_src_mac",
            "stage=drop in=pod-a verdict=drop reason=spoofed_src_ip",
        ],
        "{}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let _ = std::fs::remove_file(&file);

    // 4. Egress and ingress in one pcapng: each comment names its stage.
    let file = temp("cs-both.pcapng");
    let both = capture_to_file(
        &t.daemon,
        &[
            "--port",
            "pod-b",
            "--format",
            "pcapng",
            "-c",
            "2",
            "--duration",
            "20",
        ],
        &file,
        &[],
    );
    wait_for_capture_session(&t.daemon);
    send_raw_frames(
        &t.a,
        "eth0",
        vec![frame((MAC_A, IP_A), (MAC_B, NOBODY), None, 5)],
    );
    std::thread::sleep(Duration::from_millis(200));
    send_raw_frames(
        &t.b,
        "eth0",
        vec![frame((MAC_B, IP_B), (MAC_A, NOBODY), None, 6)],
    );
    let out = both.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-T", "fields", "-e", "frame.comment"])
        .output()
        .expect("tshark -r");
    assert_eq!(
        String::from_utf8_lossy(&tshark.stdout),
        "stage=egress in=pod-a out=pod-b verdict=forward\nstage=ingress in=pod-b\n"
    );
    let _ = std::fs::remove_file(&file);

    // 5. A client that goes away ends its capture (noticed at the latest
    // when the next copy is written to the closed stream).
    let mut ctl = Command::new(ctl_bin())
        .arg("--socket")
        .arg(t.daemon.run_dir.join("api.sock"))
        .args(["capture", "--port", "pod-a", "-w", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("podswitchctl capture");
    let mut header = [0u8; 24];
    std::io::Read::read_exact(ctl.stdout.as_mut().unwrap(), &mut header).unwrap();
    assert_eq!(
        &header[..4],
        &0xa1b2_3c4du32.to_le_bytes(),
        "nanosecond pcap"
    );
    ctl.kill().unwrap();
    let _ = ctl.wait();
    let gone = || {
        (!t.daemon
            .ctl_ok(&["metrics"])
            .contains("podswitch_mirror_frames_total"))
        .then_some(())
    };
    if wait_for(Duration::from_secs(2), gone).is_none() {
        send_raw_frames(
            &t.a,
            "eth0",
            vec![frame((MAC_A, IP_A), (MAC_B, NOBODY), None, 7)],
        );
        assert!(
            wait_for(Duration::from_secs(5), gone).is_some(),
            "the capture outlived its client"
        );
    }

    // The transient sessions are gone.
    let metrics = t.daemon.ctl_ok(&["metrics"]);
    assert!(
        !metrics.contains("podswitch_mirror_frames_total"),
        "{metrics}"
    );
}

#[test]
fn gso_super_frames_are_captured_as_they_are() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !tools_or_skip("gso_super_frames_are_captured_as_they_are") {
        return;
    }
    let t = pods("gs");
    let b_ip = std::net::Ipv4Addr::from(IP_B);
    assert!(
        wait_reachable(&t.a, b_ip, Duration::from_secs(10)),
        "{}",
        t.daemon.log_text()
    );
    let file = temp("gs.pcap");
    let capture = capture_to_file(
        &t.daemon,
        &["--port", "pod-a", "-c", "20", "--duration", "30"],
        &file,
        &["tcp", "dst", "port", "5301", "and", "greater", "1000"],
    );
    wait_for_capture_session(&t.daemon);
    let (verified, _) = tcp_transfer(&t.a, &t.b, b_ip, 5301, 16 << 20);
    assert_eq!(verified, 16 << 20);
    let out = capture.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = PcapReader::open(&file).unwrap();
    let mut largest = 0;
    while let Some(r) = reader.next_record().unwrap() {
        assert_eq!(r.data.len() as u32, r.orig_len, "copied whole");
        largest = largest.max(r.data.len());
    }
    assert!(
        largest > 1514,
        "TSO super-frames are captured as one frame, as tcpdump sees them on a real interface: largest {largest}"
    );
    let _ = std::fs::remove_file(&file);
}

/// Runs `podswitchctl capture ARGS -w FILE FILTER…` on a thread.
fn capture_to_file(
    d: &Daemon,
    args: &[&str],
    file: &Path,
    filter: &[&str],
) -> std::thread::JoinHandle<std::process::Output> {
    let mut command = Command::new(ctl_bin());
    command
        .arg("--socket")
        .arg(d.run_dir.join("api.sock"))
        .arg("capture")
        .args(args)
        .arg("-w")
        .arg(file)
        .args(filter);
    std::thread::spawn(move || command.output().expect("podswitchctl capture"))
}

/// Waits until a capture's session is registered (it shows in the metrics).
fn wait_for_capture_session(d: &Daemon) {
    wait_for(Duration::from_secs(10), || {
        d.ctl_ok(&["metrics"])
            .contains("podswitch_mirror_frames_total{session=\"capture-")
            .then_some(())
    })
    .expect("the capture session started");
}

#[test]
fn bad_mirror_requests_are_refused_clearly_and_lose_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !tools_or_skip("bad_mirror_requests_are_refused_clearly_and_lose_nothing") {
        return;
    }
    let t = pods("bm");
    let iface = mirror_iface();
    t.daemon
        .ctl_ok(&["mirror", "add", "m1", "--port", "pod-a", "--iface", &iface]);
    let refused = |args: &[&str], want: &str| {
        let (code, out, err) = t.daemon.ctl(args);
        assert_ne!(code, 0, "{args:?} was accepted: {out}");
        assert!(err.contains(want), "{args:?}: {err}");
    };
    refused(
        &["mirror", "add", "m2", "--port", "nope", "--iface", "psx0"],
        "ports = nope: no such port",
    );
    refused(
        &[
            "mirror",
            "add",
            "m2",
            "--iface",
            "psx0",
            "--filter",
            "tcp port eighty",
        ],
        "filter = tcp port eighty: ",
    );
    refused(
        &["mirror", "add", "m2", "--iface", "psx0", "--", "tcp", "and"],
        "syntax error",
    );
    refused(
        &["mirror", "add", "m2", "--iface", &iface],
        &format!("iface = {iface}: already the interface of mirror m1"),
    );
    refused(
        &["mirror", "add", "m2", "--iface", "lo"],
        "iface = lo: a network device with this name exists",
    );
    refused(&["mirror", "add", "m1", "--iface", "psx1"], "name = m1");
    refused(
        &["capture", "--port", "nope", "-w", "-"],
        "capture.ports = nope",
    );
    refused(
        &["capture", "-w", "-", "tcp", "port"],
        "capture.filter = tcp port: ",
    );
    // Unknown stage through the API itself (the CLI only offers real ones).
    let client = podswitch_control::client::ApiClient::new(t.daemon.run_dir.join("api.sock"));
    let e = client
        .send_json(
            "POST",
            "/v1/mirrors",
            &serde_json::json!({"name": "m3", "stage": "middle", "iface": "psx2"}),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("stage = middle: must be one of"),
        "{e}"
    );
    let e = client
        .stream_json(
            "POST",
            "/v1/capture",
            &serde_json::json!({"stages": ["middle"]}),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("capture.stages = middle"), "{e}");

    // Nothing stored was lost, no stray interface was made, and the
    // refusals are counted.
    let list: serde_json::Value =
        serde_json::from_str(&t.daemon.ctl_ok(&["-o", "json", "mirror", "list"])).unwrap();
    let names: Vec<&str> = list["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["m1"]);
    assert_eq!(list["mirrors"][0]["active"], true);
    assert!(link_exists(&t.node, &iface));
    assert!(!link_exists(&t.node, "psx0") && !link_exists(&t.node, "psx2"));
    let metrics = t.daemon.ctl_ok(&["metrics"]);
    let refusals: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("podswitch_api_requests_total") && l.contains("status=\"4"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(refusals >= 10, "{metrics}");
    ip(&["-n", &t.node.name, "link", "show", &iface]);
    let _ = (&t.a, &t.b);
}
