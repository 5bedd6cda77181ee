//! Every frame of every file in the third-party corpus (`shared/pcaps-corpus/`)
//! goes through every wire parser and through the whole pipeline, entering
//! on each kind of port (pod, pod, uplink). Nothing may panic; files whose
//! capture format is broken give an error naming the file and the problem,
//! and the rest go on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use podswitch_dataplane::config::{NodeConfig, Snapshot};
use podswitch_dataplane::io::PcapReader;
use podswitch_dataplane::packet::PortId;
use podswitch_dataplane::replay::{InputFrame, replay};
use podswitch_dataplane::wire::{
    ArpPacket, EtherType, Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, L2Header,
    TcpPacket, UdpPacket, VxlanHeader, vxlan::VXLAN_PORT,
};
use podswitch_tests::workspace;

fn corpus_dir() -> PathBuf {
    let beside_repo = workspace().join("../shared/pcaps-corpus");
    if beside_repo.is_dir() {
        return beside_repo;
    }
    std::env::var_os("PODSWITCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "corpus not found at {}; set PODSWITCH_CORPUS",
                beside_repo.display()
            )
        })
}

/// Walks a frame through every view that applies, calling their getters;
/// returns how many headers were viewed. Recurses once into VXLAN.
fn dissect(frame: &[u8], depth: u8) -> usize {
    let Ok(l2) = L2Header::parse(frame) else {
        return 0;
    };
    let l3 = frame.get(l2.l3_offset..).unwrap_or_default();
    let mut n = 1;
    match l2.ethertype {
        EtherType::ARP => {
            if let Ok(arp) = ArpPacket::new_checked(l3) {
                let _ = (
                    arp.operation(),
                    arp.sender_ip(),
                    arp.target_hw_addr(),
                    arp.target_ip(),
                );
                n += 1;
            }
        }
        EtherType::IPV4 => {
            if let Ok(ip) = Ipv4Packet::new_checked(l3) {
                let _ = (ip.verify_checksum(), ip.options(), ip.pseudo_header_sum());
                n += 1;
                if !ip.is_later_fragment() {
                    n += l4(ip.protocol(), ip.payload(), depth);
                }
            }
        }
        EtherType::IPV6 => {
            if let Ok(ip) = Ipv6Packet::new_checked(l3) {
                n += 1;
                if let Ok(ul) = ip.upper_layer() {
                    let payload = l3.get(ul.offset..).unwrap_or_default();
                    if ul.fragment.is_none_or(|f| f.offset == 0) {
                        n += l4(ul.protocol, payload, depth);
                    }
                }
            }
        }
        _ => {}
    }
    n
}

fn l4(protocol: IpProtocol, payload: &[u8], depth: u8) -> usize {
    match protocol {
        IpProtocol::TCP => TcpPacket::new_checked(payload).map_or(0, |t| {
            let _ = (
                t.src_port(),
                t.dst_port(),
                t.flags(),
                t.options(),
                t.payload(),
            );
            1
        }),
        IpProtocol::UDP => UdpPacket::new_checked(payload).map_or(0, |u| {
            let inner = if u.dst_port() == VXLAN_PORT && depth == 0 {
                VxlanHeader::new_checked(u.payload())
                    .map_or(0, |v| 1 + dissect(v.payload(), depth + 1))
            } else {
                0
            };
            1 + inner
        }),
        IpProtocol::ICMP => Icmpv4Packet::new_checked(payload).map_or(0, |i| {
            let _ = (i.msg_type(), i.verify_checksum(), i.data());
            1
        }),
        IpProtocol::ICMPV6 => Icmpv6Packet::new_checked(payload).map_or(0, |i| {
            let _ = (i.msg_type(), i.code(), i.payload());
            1
        }),
        _ => 0,
    }
}

fn snapshot() -> Arc<Snapshot> {
    let text = std::fs::read_to_string(workspace().join("pcaps/node.toml")).unwrap();
    Arc::new(Snapshot::build(&NodeConfig::from_toml_str(&text).unwrap(), 1).unwrap())
}

/// Reads a file's Ethernet frames; an error names the file and the problem.
fn read(path: &Path) -> (Vec<Vec<u8>>, Option<String>) {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut reader = match PcapReader::open(path) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(format!("{name}: {e}"))),
    };
    let mut frames = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(rec)) if rec.is_ethernet() => frames.push(rec.data.to_vec()),
            Ok(Some(_)) => {}
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(format!("{name}: {e}"))),
        }
    }
}

#[test]
fn every_corpus_frame_through_parsers_and_pipeline() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    files.sort();
    assert!(files.len() >= 70, "corpus has {} captures", files.len());
    let snapshot = snapshot();
    let ports = [PortId(0), PortId(1), PortId(2)];
    let (mut total_frames, mut total_headers, mut errors) = (0usize, 0usize, Vec::new());
    for path in &files {
        let (frames, error) = read(path);
        if let Some(e) = error {
            println!("error: {e}");
            errors.push(e);
        }
        total_headers += frames.iter().map(|f| dissect(f, 0)).sum::<usize>();
        // The whole pipeline, once per port kind, with capture-order timestamps.
        for &port in &ports {
            let inputs: Vec<InputFrame> = frames
                .iter()
                .enumerate()
                .map(|(i, f)| InputFrame {
                    port,
                    timestamp_ns: i as u64 * 1_000,
                    data: f.clone(),
                })
                .collect();
            let result = replay(snapshot.clone(), inputs);
            assert_eq!(
                result.summary.frames_in,
                frames.len() as u64,
                "{}",
                path.display()
            );
            assert!(
                !result.summary.drops.iter().any(|d| d.0 == "not_processed"),
                "{}",
                path.display()
            );
        }
        println!(
            "{}: {} frames",
            path.file_name().unwrap().to_string_lossy(),
            frames.len()
        );
        total_frames += frames.len();
    }
    println!(
        "{} files, {total_frames} frames, {total_headers} headers viewed, {} file errors",
        files.len(),
        errors.len()
    );
    assert!(total_frames > 100_000, "{total_frames}");
    for broken in [
        "libpcap-linktype-reserved-field-not-zero.pcap",
        "libpcap-pcap-invalid-version-1.pcap",
        "ndpi-fuzz-2021-10-13.pcap",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(broken)),
            "{broken} must be reported: {errors:?}"
        );
    }
}
