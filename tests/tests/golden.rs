//! Golden replays: scenario captures in `pcaps/scenarios/<name>/` go through
//! `podswitchd replay`'s code path; every output pcap and the summary must
//! equal the checked-in `expected/` files byte for byte, and every expected
//! frame is independently checked by the etherparse oracle.
//!
//! `PODSWITCH_BLESS=1 cargo test -p podswitch-tests --test golden -- --test-threads=1` rebuilds
//! the scenario inputs (from the recordings in `pcaps/` and hand-built
//! frames) and the expected outputs; review the diff before committing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "golden/services.rs"]
mod services;

use etherparse::PacketBuilder;
use podswitch_dataplane::replay::{ReplayInput, replay_files};
use podswitch_tests::{Checked, Ipv4Facts, oracle_check, read_pcap, workspace, write_pcap};

const GW_MAC: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 1];
const UP_MAC: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 1];
const POD_A: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 2];
const POD_B: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 3];
const EXT: [u8; 6] = [2, 0, 0xc0, 0xa8, 0x64, 2];
const GW_IP: [u8; 4] = [10, 244, 1, 1];
const UP_IP: [u8; 4] = [192, 168, 100, 1];

fn scenarios_dir() -> PathBuf {
    workspace().join("pcaps/scenarios")
}

/// Frames of a recording sent by `src_mac`.
fn recorded_from(file: &str, src_mac: [u8; 6]) -> Frames {
    read_pcap(&workspace().join("pcaps").join(file))
        .into_iter()
        .filter(|(_, f)| f.get(6..12) == Some(&src_mac[..]))
        .collect()
}

fn udp(
    ts: u64,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
) -> (u64, Vec<u8>) {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .udp(41000, 7);
    let mut out = Vec::new();
    b.write(&mut out, b"golden scenario payload").unwrap();
    (ts, out)
}

fn ping(
    ts: u64,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
) -> (u64, Vec<u8>) {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, ttl)
        .icmpv4_echo_request(0x4242, 1);
    let mut out = Vec::new();
    b.write(&mut out, b"0123456789abcdef").unwrap();
    (ts, out)
}

const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

/// Each scenario: name and its inputs per port (built when blessing).
/// Timestamped frames of one capture.
type Frames = Vec<(u64, Vec<u8>)>;

fn scenario_inputs(name: &str) -> Vec<(&'static str, Frames)> {
    match name {
        "arp-gateway" => vec![("pod-a", recorded_from("arp-gateway.pcap", POD_A))],
        "ping-gateway" => vec![("pod-a", recorded_from("ping-gateway.pcap", POD_A))],
        "l2-unicast-after-learning" => vec![
            ("pod-a", recorded_from("l2-pod-to-pod.pcap", POD_A)),
            ("pod-b", recorded_from("l2-pod-to-pod.pcap", POD_B)),
        ],
        "flood-unknown-unicast" => {
            let unknown = [2, 0, 0x0a, 0xf4, 1, 0x63];
            vec![
                (
                    "pod-a",
                    vec![
                        udp(T0, POD_A, unknown, [10, 244, 1, 2], [10, 244, 1, 99], 64),
                        udp(
                            T0 + 2 * MS,
                            POD_A,
                            [0xff; 6],
                            [10, 244, 1, 2],
                            [10, 244, 1, 255],
                            64,
                        ),
                        udp(
                            T0 + 4 * MS,
                            POD_A,
                            unknown,
                            [10, 244, 1, 2],
                            [10, 244, 1, 99],
                            64,
                        ),
                    ],
                ),
                // The unknown host answers from pod-b's port: learned there, then unicast.
                (
                    "pod-b",
                    vec![udp(
                        T0 + 3 * MS,
                        unknown,
                        POD_A,
                        [10, 244, 1, 99],
                        [10, 244, 1, 2],
                        64,
                    )],
                ),
            ]
        }
        "routed-ttl-decrement" => vec![
            ("pod-a", recorded_from("routed.pcap", POD_A)),
            ("up0", recorded_from("routed-up0.pcap", EXT)),
        ],
        "ttl-expiry" => vec![(
            "pod-a",
            vec![
                udp(T0, POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 2, 1], 1),
                ping(T0 + MS, POD_A, GW_MAC, [10, 244, 1, 2], [10, 244, 2, 1], 1),
                ping(
                    T0 + 2 * MS,
                    POD_A,
                    GW_MAC,
                    [10, 244, 1, 2],
                    [10, 244, 2, 1],
                    0,
                ),
            ],
        )],
        "no-route" => vec![(
            "pod-a",
            vec![udp(T0, POD_A, GW_MAC, [10, 244, 1, 2], [172, 16, 0, 1], 64)],
        )],
        "anti-spoofing" => vec![(
            "pod-a",
            vec![
                udp(T0, POD_A, POD_B, [10, 244, 1, 2], [10, 244, 1, 3], 64),
                udp(
                    T0 + 2 * MS,
                    [2, 0, 0, 0, 0, 0x66],
                    POD_B,
                    [10, 244, 1, 2],
                    [10, 244, 1, 3],
                    64,
                ),
                udp(
                    T0 + 4 * MS,
                    POD_A,
                    POD_B,
                    [10, 244, 1, 66],
                    [10, 244, 1, 3],
                    64,
                ),
                ping(
                    T0 + 6 * MS,
                    POD_A,
                    GW_MAC,
                    [10, 244, 1, 77],
                    [10, 244, 1, 1],
                    64,
                ),
                ping(
                    T0 + 8 * MS,
                    POD_A,
                    GW_MAC,
                    [10, 244, 1, 2],
                    [10, 244, 1, 1],
                    64,
                ),
            ],
        )],
        // VXLAN overlay (overlay/).
        "vxlan-routed" => vxlan_routed_inputs(),
        other => services::inputs(other),
    }
}

const SCENARIOS: &[&str] = &[
    "arp-gateway",
    "ping-gateway",
    "l2-unicast-after-learning",
    "flood-unknown-unicast",
    "routed-ttl-decrement",
    "ttl-expiry",
    "no-route",
    "anti-spoofing",
    // VXLAN overlay (overlay/).
    "vxlan-routed",
];

fn blessing() -> bool {
    std::env::var_os("PODSWITCH_BLESS").is_some_and(|v| v == "1")
}

fn input_files(dir: &Path) -> Vec<ReplayInput> {
    let mut inputs: Vec<ReplayInput> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let path = e.ok()?.path();
            let port = path
                .file_name()?
                .to_str()?
                .strip_prefix("in-")?
                .strip_suffix(".pcap")?
                .to_string();
            Some(ReplayInput {
                port: Some(port),
                path,
            })
        })
        .collect();
    inputs.sort_by(|a, b| a.port.cmp(&b.port));
    inputs
}

/// The scenario's own `node.toml` if it has one, else `pcaps/node.toml`.
fn config_for(dir: &Path) -> PathBuf {
    let own = dir.join("node.toml");
    if own.is_file() {
        own
    } else {
        workspace().join("pcaps/node.toml")
    }
}

/// Replays scenario `name` and returns the output directory.
fn run_scenario(name: &str) -> PathBuf {
    let dir = scenarios_dir().join(name);
    if blessing() {
        std::fs::create_dir_all(&dir).unwrap();
        if services::SCENARIOS.contains(&name) {
            services::write_config(name);
        }
        for (port, frames) in scenario_inputs(name) {
            assert!(!frames.is_empty(), "{name}: no input frames for {port}");
            write_pcap(&dir.join(format!("in-{port}.pcap")), &frames);
        }
    }
    let out = std::env::temp_dir().join(format!("podswitch-golden-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let report = replay_files(&config_for(&dir), &input_files(&dir), &out)
        .unwrap_or_else(|e| panic!("{name}: replay failed: {e}"));
    assert!(report.warnings.is_empty(), "{name}: {:?}", report.warnings);
    let expected = dir.join("expected");
    if blessing() {
        let _ = std::fs::remove_dir_all(&expected);
        std::fs::create_dir_all(&expected).unwrap();
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pcap" || e == "txt") {
                std::fs::copy(&path, expected.join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    out
}

/// Output pcaps and summary equal the checked-in ones byte for byte.
fn assert_matches_expected(name: &str, out: &Path) {
    let expected = scenarios_dir().join(name).join("expected");
    let mut compared = 0;
    for entry in
        std::fs::read_dir(&expected).unwrap_or_else(|e| panic!("{}: {e}", expected.display()))
    {
        let want = entry.unwrap().path();
        let got = out.join(want.file_name().unwrap());
        let (w, g) = (
            std::fs::read(&want).unwrap(),
            std::fs::read(&got).unwrap_or_default(),
        );
        assert!(
            w == g,
            "{name}: {} differs from {}",
            got.display(),
            want.display()
        );
        compared += 1;
    }
    assert!(compared >= 4, "{name}: expected/ holds {compared} files");
}

fn inputs_by_port(name: &str) -> Vec<(String, Vec<u8>)> {
    input_files(&scenarios_dir().join(name))
        .into_iter()
        .flat_map(|i| {
            let port = i.port.clone().unwrap();
            read_pcap(&i.path)
                .into_iter()
                .map(move |(_, f)| (port.clone(), f))
        })
        .collect()
}

fn outputs(name: &str) -> BTreeMap<String, Vec<Vec<u8>>> {
    let dir = scenarios_dir().join(name).join("expected");
    ["pod-a", "pod-b", "up0"]
        .iter()
        .map(|p| {
            (
                p.to_string(),
                read_pcap(&dir.join(format!("{p}.pcap")))
                    .into_iter()
                    .map(|f| f.1)
                    .collect(),
            )
        })
        .collect()
}

fn ipv4_of(frame: &[u8]) -> Option<Ipv4Facts> {
    match oracle_check(frame) {
        Ok(Checked::Ipv4(f)) => Some(f),
        _ => None,
    }
}

/// The oracle's generic rules for every expected frame:
/// checksums verify; a routed packet equals an input packet with TTL − 1
/// and our MAC as source; an ARP reply from us answers an input request;
/// an ICMP error from us quotes an input datagram.
fn oracle_checks(name: &str) -> BTreeMap<&'static str, usize> {
    let inputs = inputs_by_port(name);
    let input_ips: Vec<Ipv4Facts> = inputs.iter().filter_map(|(_, f)| ipv4_of(f)).collect();
    let mut kinds = BTreeMap::new();
    for (port, frames) in outputs(name) {
        for frame in frames {
            let checked = oracle_check(&frame).unwrap_or_else(|e| panic!("{name}/{port}: {e}"));
            let kind = match checked {
                Checked::Arp(op, sha, spa, tha, tpa) if sha == GW_MAC || sha == UP_MAC => {
                    assert!(
                        spa == GW_IP || spa == UP_IP,
                        "{name}: ARP from us with sender IP {spa:?}"
                    );
                    if op == 2 {
                        let asked = inputs.iter().any(|(_, f)| matches!(oracle_check(f), Ok(Checked::Arp(1, s, sp, _, tp)) if s == tha && sp == tpa && tp == spa));
                        assert!(
                            asked,
                            "{name}: ARP reply to {tpa:?} answers no input request"
                        );
                        "arp_reply"
                    } else {
                        "arp_request"
                    }
                }
                Checked::Arp(..) => {
                    assert!(
                        inputs.iter().any(|(_, f)| *f == frame),
                        "{name}/{port}: switched ARP frame altered"
                    );
                    "switched"
                }
                Checked::Ipv4(out) if out.src_mac == GW_MAC || out.src_mac == UP_MAC => {
                    let routed_as_is = input_ips
                        .iter()
                        .any(|i| i.src == out.src && i.dst == out.dst && i.ident == out.ident);
                    if !routed_as_is && let Some(kind) = nat_match(&input_ips, &out) {
                        kind
                    } else if out.src == GW_IP || out.src == UP_IP {
                        let (ty, _) = out.icmp.expect("the switch only originates ICMP");
                        if ty == 0 {
                            // Same identifier, sequence number and data as a request to us.
                            let req = input_ips.iter().find(|i| {
                                i.dst == out.src
                                    && i.src == out.dst
                                    && i.icmp == Some((8, 0))
                                    && i.payload[4..] == out.payload[4..]
                            });
                            assert!(req.is_some(), "{name}: echo reply matches no request");
                            "echo_reply"
                        } else {
                            let quoted = &out.payload[8..];
                            let orig = input_ips.iter().find(|i| {
                                quoted.len() >= 20
                                    && quoted[12..16] == i.src
                                    && quoted[16..20] == i.dst
                                    && i.payload.starts_with(&quoted[20..])
                            });
                            assert!(
                                orig.is_some(),
                                "{name}: ICMP error quotes no input datagram"
                            );
                            "icmp_error"
                        }
                    } else {
                        let orig = input_ips
                            .iter()
                            .find(|i| {
                                i.src == out.src
                                    && i.dst == out.dst
                                    && i.ident == out.ident
                                    && i.payload == out.payload
                            })
                            .unwrap_or_else(|| {
                                panic!("{name}/{port}: routed packet matches no input")
                            });
                        assert_eq!(
                            out.ttl + 1,
                            orig.ttl,
                            "{name}: TTL decremented by exactly one"
                        );
                        assert_ne!(out.dst_mac, GW_MAC);
                        "routed"
                    }
                }
                Checked::Ipv4(_) | Checked::Other => {
                    assert!(
                        inputs.iter().any(|(_, f)| *f == frame),
                        "{name}/{port}: switched frame altered"
                    );
                    "switched"
                }
            };
            *kinds.entry(kind).or_insert(0) += 1;
        }
    }
    kinds
}

/// A frame the NAT stage translated: it equals an input packet but for
/// addresses, ports (or echo identifier) and checksums, with TTL − 1
/// ("nat"), or is an ICMP error whose quoted header was translated
/// ("nat_icmp_error", same type and code), or the gateway's echo reply
/// for a ClusterIP ("echo_reply"). Its checksums were verified already.
fn nat_match(inputs: &[Ipv4Facts], out: &Ipv4Facts) -> Option<&'static str> {
    if out.icmp == Some((0, 0)) {
        let asked = inputs.iter().any(|i| {
            i.icmp == Some((8, 0))
                && i.dst == out.src
                && i.src == out.dst
                && i.payload.get(4..) == out.payload.get(4..)
        });
        if asked
            && !inputs
                .iter()
                .any(|i| i.icmp == Some((0, 0)) && i.ident == out.ident)
        {
            return Some("echo_reply");
        }
    }
    let same_body = |i: &Ipv4Facts| {
        let (a, b) = (&i.payload, &out.payload);
        match out.protocol {
            6 => a.get(4..16) == b.get(4..16) && a.get(18..) == b.get(18..),
            17 => a.get(4..6) == b.get(4..6) && a.get(8..) == b.get(8..),
            1 if matches!(out.icmp, Some((3 | 11 | 12, _))) => a.get(..2) == b.get(..2),
            1 => a.get(..2) == b.get(..2) && a.get(6..) == b.get(6..),
            _ => false,
        }
    };
    let orig = inputs.iter().find(|i| {
        i.ident == out.ident && i.protocol == out.protocol && i.ttl == out.ttl + 1 && same_body(i)
    })?;
    let _ = orig;
    Some(if matches!(out.icmp, Some((3 | 11 | 12, _))) {
        "nat_icmp_error"
    } else {
        "nat"
    })
}

fn golden(name: &str) -> BTreeMap<&'static str, usize> {
    let out = run_scenario(name);
    assert_matches_expected(name, &out);
    let _ = std::fs::remove_dir_all(&out);
    oracle_checks(name)
}

#[test]
fn arp_gateway() {
    let k = golden("arp-gateway");
    assert!(k.get("arp_reply") >= Some(&1), "{k:?}");
    assert!(k.get("echo_reply") >= Some(&1), "{k:?}");
}

#[test]
fn ping_gateway() {
    let k = golden("ping-gateway");
    assert_eq!(k.get("echo_reply"), Some(&5), "{k:?}");
}

#[test]
fn l2_unicast_after_learning() {
    let k = golden("l2-unicast-after-learning");
    let outs = outputs("l2-unicast-after-learning");
    assert!(
        outs["up0"].is_empty(),
        "the uplink is not in the bridge domain"
    );
    let a_in = inputs_by_port("l2-unicast-after-learning")
        .iter()
        .filter(|(p, f)| p == "pod-a" && f[..6] == POD_B)
        .count();
    let to_b = outs["pod-b"].iter().filter(|f| f[..6] == POD_B).count();
    assert_eq!(
        a_in, to_b,
        "every frame pod-a sent to pod-b's MAC reached pod-b"
    );
    assert!(k["switched"] > 100, "{k:?}");
}

#[test]
fn flood_unknown_unicast() {
    golden("flood-unknown-unicast");
    let outs = outputs("flood-unknown-unicast");
    // Unknown unicast and broadcast are flooded to pod-b (not back to pod-a,
    // not to the uplink); after the unknown host spoke from pod-b's port, the
    // last frame is unicast to pod-b.
    assert_eq!(outs["pod-b"].len(), 3);
    assert_eq!(outs["pod-a"].len(), 1, "the reply went to pod-a only");
    assert!(outs["up0"].is_empty());
    let summary =
        std::fs::read_to_string(scenarios_dir().join("flood-unknown-unicast/expected/summary.txt"))
            .unwrap();
    assert!(
        summary.contains("event unknown_unicast_flooded: 1\n"),
        "{summary}"
    );
    assert!(
        summary.contains("event multicast_flooded: 1\n"),
        "{summary}"
    );
}

#[test]
fn routed_ttl_decrement() {
    let k = golden("routed-ttl-decrement");
    assert!(k.get("routed") > Some(&10), "{k:?}");
    assert_eq!(k.get("arp_request"), Some(&1), "{k:?}");
}

#[test]
fn ttl_expiry() {
    let k = golden("ttl-expiry");
    assert_eq!(k.get("icmp_error"), Some(&3), "{k:?}");
    let outs = outputs("ttl-expiry");
    for f in &outs["pod-a"] {
        assert_eq!(
            ipv4_of(f).unwrap().icmp,
            Some((11, 0)),
            "time exceeded in transit"
        );
    }
}

#[test]
fn no_route() {
    let k = golden("no-route");
    assert_eq!(k.get("icmp_error"), Some(&1), "{k:?}");
    let f = &outputs("no-route")["pod-a"][0];
    assert_eq!(ipv4_of(f).unwrap().icmp, Some((3, 0)), "net unreachable");
}

#[test]
fn replay_is_deterministic() {
    let name = "routed-ttl-decrement";
    let dir = scenarios_dir().join(name);
    let run = |tag: &str| {
        let out = std::env::temp_dir().join(format!("podswitch-det-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        replay_files(&config_for(&dir), &input_files(&dir), &out).unwrap();
        let bytes: Vec<Vec<u8>> = ["pod-a.pcap", "up0.pcap", "summary.json"]
            .iter()
            .map(|f| std::fs::read(out.join(f)).unwrap())
            .collect();
        let _ = std::fs::remove_dir_all(&out);
        bytes
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn every_scenario_is_tested() {
    let on_disk: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for s in &on_disk {
        assert!(
            SCENARIOS.contains(&s.as_str()) || services::SCENARIOS.contains(&s.as_str()),
            "pcaps/scenarios/{s} has no test"
        );
    }
}

#[test]
fn anti_spoofing() {
    let k = golden("anti-spoofing");
    assert_eq!(k.get("echo_reply"), Some(&1), "{k:?}");
    assert_eq!(k.get("switched"), Some(&1), "{k:?}");
    let summary =
        std::fs::read_to_string(scenarios_dir().join("anti-spoofing/expected/summary.txt"))
            .unwrap();
    assert!(summary.contains("drop spoofed_src_mac: 1\n"), "{summary}");
    assert!(summary.contains("drop spoofed_src_ip: 2\n"), "{summary}");
}

// VXLAN overlay (overlay/): the recorded routed traffic, with 10.244.2.0/24
// now behind node-b (192.168.100.2, EXT) through a VXLAN tunnel.

const VNI: u32 = 42;
const OUR_VTEP: [u8; 6] = [2, 0x56, 192, 168, 100, 1];
const B_VTEP: [u8; 6] = [2, 0x56, 192, 168, 100, 2];
const NODE_B_IP: [u8; 4] = [192, 168, 100, 2];

/// `inner` (an Ethernet frame) from node-b's VTEP to ours, in VXLAN from `src_ip` with `vni`.
fn vxlan_wrap(ts: u64, inner: &[u8], src_ip: [u8; 4], vni: u32) -> (u64, Vec<u8>) {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(&OUR_VTEP);
    payload.extend_from_slice(&B_VTEP);
    payload.extend_from_slice(&inner[12..]);
    let b = PacketBuilder::ethernet2(EXT, UP_MAC)
        .ipv4(src_ip, UP_IP, 64)
        .udp(50000, 4789);
    let mut out = Vec::new();
    b.write(&mut out, &payload).unwrap();
    (ts, out)
}

fn vxlan_routed_inputs() -> Vec<(&'static str, Frames)> {
    let mut up: Frames = recorded_from("routed-up0.pcap", EXT)
        .into_iter()
        .map(|(ts, f)| match f[12..14] {
            [0x08, 0x00] => vxlan_wrap(ts, &f, NODE_B_IP, VNI),
            _ => (ts, f),
        })
        .collect();
    let (last_ts, last) = up.last().cloned().unwrap();
    let inner = &last[50..];
    up.push(vxlan_wrap(last_ts + MS, inner, NODE_B_IP, 7));
    up.push(vxlan_wrap(last_ts + 2 * MS, inner, [192, 168, 100, 9], VNI));
    let mut pod_a = recorded_from("routed.pcap", POD_A);
    let end = pod_a.last().unwrap().0.max(last_ts) + 3 * MS;
    let big = PacketBuilder::ethernet2(POD_A, GW_MAC)
        .ipv4([10, 244, 1, 2], [10, 244, 2, 1], 64)
        .udp(41000, 7);
    let mut frame = Vec::new();
    big.write(&mut frame, &[0x5a; 1472]).unwrap();
    frame[20] |= 0x40; // DF
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = podswitch_dataplane::wire::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    pod_a.push((end, frame));
    vec![("pod-a", pod_a), ("up0", up)]
}

#[test]
fn vxlan_routed() {
    let name = "vxlan-routed";
    let out = run_scenario(name);
    assert_matches_expected(name, &out);
    let _ = std::fs::remove_dir_all(&out);
    let inputs = inputs_by_port(name);
    let outs = outputs(name);
    // Out of the uplink: ARP for node-b, then every routed pod-a packet in VXLAN.
    let mut encapsulated = 0;
    for f in &outs["up0"] {
        if f[12..14] == [0x08, 0x06] {
            continue;
        }
        let outer = ipv4_of(f).expect("outer IPv4 with valid checksums");
        assert_eq!((outer.src_mac, outer.dst_mac), (UP_MAC, EXT));
        assert_eq!((outer.src, outer.dst, outer.ttl), (UP_IP, NODE_B_IP, 64));
        assert_eq!(outer.protocol, 17);
        let udp = &outer.payload;
        assert_eq!(&udp[2..4], &4789u16.to_be_bytes());
        assert!(u16::from_be_bytes([udp[0], udp[1]]) >= 32768);
        assert_eq!(&udp[8..16], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        let inner = &udp[16..];
        let facts = ipv4_of(inner).expect("inner checksums");
        assert_eq!((facts.src_mac, facts.dst_mac), (OUR_VTEP, B_VTEP));
        let sent = inputs
            .iter()
            .filter(|(p, _)| p == "pod-a")
            .filter_map(|(_, f)| ipv4_of(f))
            .find(|i| i.payload == facts.payload && i.ident == facts.ident);
        assert_eq!(sent.expect("an input packet").ttl - 1, facts.ttl);
        encapsulated += 1;
    }
    assert_eq!(
        encapsulated, 11,
        "every routed pod-a packet but the too big one"
    );
    // Into pod-a: node-b's replies decapsulated and routed (TTL − 1), and
    // one ICMP fragmentation needed with the tunnel's MTU.
    let mut decapsulated = 0;
    let mut frag_needed = 0;
    for f in outs["pod-a"].iter().filter(|f| f[12..14] != [0x08, 0x06]) {
        let facts = ipv4_of(f).expect("checksums");
        assert_eq!((facts.src_mac, facts.dst_mac), (GW_MAC, POD_A));
        if facts.icmp == Some((3, 4)) {
            assert_eq!(&facts.payload[6..8], &1450u16.to_be_bytes());
            frag_needed += 1;
            continue;
        }
        let wrapped = inputs
            .iter()
            .filter(|(p, f)| p == "up0" && f.len() > 50 + 14)
            .filter_map(|(_, f)| ipv4_of(&f[50..]))
            .find(|i| i.payload == facts.payload && i.ident == facts.ident);
        assert_eq!(wrapped.expect("a VXLAN input").ttl - 1, facts.ttl);
        decapsulated += 1;
    }
    assert_eq!(frag_needed, 1);
    assert_eq!(
        decapsulated, 9,
        "every VXLAN input but the wrong VNI and the unknown node"
    );
    let summary =
        std::fs::read_to_string(scenarios_dir().join(name).join("expected/summary.txt")).unwrap();
    for line in [
        "drop vxlan_wrong_vni: 1\n",
        "drop vxlan_unknown_node: 1\n",
        "drop vxlan_too_big: 1\n",
        "event vxlan_frag_needed_sent: 1\n",
    ] {
        assert!(summary.contains(line), "{line}{summary}");
    }
}
