//! Benchmark scenarios over the captures in `pcaps/`, shared by the
//! criterion benches (`benches/pipeline.rs`) and the instruction-count
//! runner (`src/bin/instr.rs`), so both measure exactly the same work.

#[path = "src/nat.rs"]
pub mod nat;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use podswitch_dataplane::config::{NodeConfig, Snapshot};
use podswitch_dataplane::io::pcap::PcapReader;
use podswitch_dataplane::mirror::bpf::{Program, TCP_PORT_80};
use podswitch_dataplane::mirror::{
    DEFAULT_QUEUE_DEPTH, MirrorQueue, MirrorStage, PortSelection, Session, SessionSpec,
};
use podswitch_dataplane::packet::{BATCH_SIZE, Batch, PortId, Verdict};
use podswitch_dataplane::pipeline::{Pipeline, SharedTables};
use podswitch_dataplane::wire::{EtherType, Ipv4Packet, L2Header, MacAddr};

/// The workspace's `pcaps/` folder.
pub fn pcaps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcaps")
}

/// Reads the Ethernet frames of `pcaps/<name>`.
pub fn load(name: &str) -> Vec<Vec<u8>> {
    let path = pcaps_dir().join(name);
    let mut reader = PcapReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = Vec::new();
    while let Some(rec) = reader
        .next_record()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        if rec.is_ethernet() {
            frames.push(rec.data.to_vec());
        }
    }
    frames
}

/// The snapshot for `pcaps/node.toml`.
pub fn snapshot() -> Arc<Snapshot> {
    let text = std::fs::read_to_string(pcaps_dir().join("node.toml")).expect("pcaps/node.toml");
    let config = NodeConfig::from_toml_str(&text).expect("valid pcaps/node.toml");
    Arc::new(Snapshot::build(&config, 1).expect("valid snapshot"))
}

/// A scenario: a pipeline primed to its steady state and the frames to feed it.
pub struct Scenario {
    /// The pipeline (MACs learned, neighbours resolved).
    pub pipeline: Pipeline,
    /// (input port, frame) in capture order.
    pub frames: Vec<(PortId, Vec<u8>)>,
    batch: Batch,
    now: u64,
    shared: Arc<SharedTables>,
}

const POD_A_MAC: MacAddr = MacAddr([2, 0, 0x0a, 0xf4, 1, 2]);
const POD_B_MAC: MacAddr = MacAddr([2, 0, 0x0a, 0xf4, 1, 3]);
const EXT_MAC: MacAddr = MacAddr([2, 0, 0xc0, 0xa8, 0x64, 2]);
const POD_A: PortId = PortId(0);
const POD_B: PortId = PortId(1);
const UPLINK: PortId = PortId(2);

/// Frames sent by pod-a, pod-b or the uplink router in `name`, each with
/// the port it enters on.
pub fn pod_frames(name: &str) -> Vec<(PortId, Vec<u8>)> {
    load(name)
        .into_iter()
        .filter_map(|f| {
            let src = L2Header::parse(&f).ok()?.src;
            let port = if src == POD_A_MAC {
                POD_A
            } else if src == POD_B_MAC {
                POD_B
            } else if src == EXT_MAC {
                UPLINK
            } else {
                return None;
            };
            Some((port, f))
        })
        .collect()
}

impl Scenario {
    /// Builds a scenario from frames, priming MAC learning and ARP.
    pub fn new(frames: Vec<(PortId, Vec<u8>)>) -> Scenario {
        Self::with_snapshot(snapshot(), frames)
    }

    /// As [`Scenario::new`] with another configuration.
    pub fn with_snapshot(snapshot: Arc<Snapshot>, frames: Vec<(PortId, Vec<u8>)>) -> Scenario {
        let shared = Arc::new(SharedTables::default());
        let mut pipeline = Pipeline::new(snapshot, Arc::clone(&shared), 2048);
        let mut batch = Batch::new(2048);
        // Teach the switch where both pods are and who the uplink router is.
        let primers = [
            (
                POD_A,
                arp_frame(POD_A_MAC, [10, 244, 1, 2], [10, 244, 1, 1]),
            ),
            (
                POD_B,
                arp_frame(POD_B_MAC, [10, 244, 1, 3], [10, 244, 1, 1]),
            ),
            (
                UPLINK,
                arp_frame(
                    MacAddr([2, 0, 0xc0, 0xa8, 0x64, 2]),
                    [192, 168, 100, 2],
                    [192, 168, 100, 1],
                ),
            ),
        ];
        for (port, f) in &primers {
            batch.push_rx(*port, 0, f);
        }
        pipeline.process(&mut batch, 0);
        Scenario {
            pipeline,
            frames,
            batch,
            now: 1,
            shared,
        }
    }

    /// The tables the pipeline shares (mirror sessions are registered there).
    pub fn shared(&self) -> &Arc<SharedTables> {
        &self.shared
    }

    /// Feeds every frame once, in batches of [`BATCH_SIZE`]; returns how
    /// many were forwarded (so the work cannot be optimised away).
    pub fn run_once(&mut self) -> usize {
        self.run_once_then(|| {})
    }

    /// As [`Scenario::run_once`], calling `after_batch` after each batch
    /// (e.g. a mirror consumer giving its buffers back).
    pub fn run_once_then(&mut self, mut after_batch: impl FnMut()) -> usize {
        let mut forwarded = 0;
        for chunk in self.frames.chunks(BATCH_SIZE) {
            self.batch.clear();
            for (port, f) in chunk {
                self.batch.push_rx(*port, self.now, f);
            }
            self.pipeline.process(&mut self.batch, self.now);
            forwarded += self
                .batch
                .iter()
                .filter(|(_, v)| matches!(v, Verdict::Forward(_) | Verdict::Flood))
                .count();
            after_batch();
        }
        self.now += 1000;
        forwarded
    }
}

fn arp_frame(sha: MacAddr, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&sha.0);
    f[12..14].copy_from_slice(&EtherType::ARP.0.to_be_bytes());
    let repr = podswitch_dataplane::wire::arp::ArpRepr {
        operation: podswitch_dataplane::wire::arp::OP_REQUEST,
        sender_hw_addr: sha,
        sender_ip: spa.into(),
        target_hw_addr: MacAddr::ZERO,
        target_ip: tpa.into(),
    };
    repr.emit(&mut f[14..])
        .expect("42-byte frame holds an ARP request");
    f
}

/// Parse-only work per frame: L2 header, IPv4 header, and the L4 ports.
#[inline]
pub fn parse_5tuple(frame: &[u8]) -> Option<(u32, u32, u8, u16, u16)> {
    let l2 = L2Header::parse(frame).ok()?;
    if l2.ethertype != EtherType::IPV4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(frame.get(l2.l3_offset..)?).ok()?;
    let ports = ip.payload().get(..4).map_or((0, 0), |p| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    });
    Some((
        ip.src_addr().into(),
        ip.dst_addr().into(),
        ip.protocol().0,
        ports.0,
        ports.1,
    ))
}

/// The named scenarios: (name, capture files joined by `+`, description).
pub const SCENARIOS: &[(&str, &str, &str)] = &[
    (
        "l2_64b",
        "small-udp.pcap",
        "L2 switching, 64-byte UDP frames pod-a -> pod-b",
    ),
    (
        "l2_mixed",
        "l2-pod-to-pod.pcap",
        "L2 switching, mixed frames (ARP, ICMP, TCP 256 KiB, UDP) between two pods",
    ),
    (
        "l3_64b",
        "small-udp-routed.pcap",
        "L3 routing, 64-byte UDP frames pod-a -> 10.244.2.1 via the uplink",
    ),
    (
        "l3_mixed",
        "routed.pcap+routed-up0.pcap",
        "L3 routing, mixed frames (ARP, ICMP, TCP) both ways between pod-a and 10.244.2.1",
    ),
    // VXLAN overlay (overlay/): 10.244.2.0/24 behind node-b (192.168.100.2).
    (
        "vxlan_encap_64b",
        "small-udp-routed.pcap",
        "L3 routing into a VXLAN tunnel, 64-byte UDP frames pod-a -> 10.244.2.1",
    ),
    (
        "vxlan_decap_64b",
        "small-udp-routed.pcap",
        "VXLAN from node-b decapsulated and routed, 64-byte inner UDP frames 10.244.2.1 -> pod-a",
    ),
];

/// Builds the named scenario.
pub fn scenario(name: &str) -> Option<Scenario> {
    let (_, files, _) = SCENARIOS.iter().find(|s| s.0 == name)?;
    let mut frames = Vec::new();
    for file in files.split('+') {
        frames.extend(pod_frames(file));
    }
    match name {
        "vxlan_encap_64b" => Some(Scenario::with_snapshot(overlay_snapshot(), frames)),
        "vxlan_decap_64b" => Some(Scenario::with_snapshot(
            overlay_snapshot(),
            frames
                .iter()
                .map(|(_, f)| (UPLINK, vxlan_from_node_b(f)))
                .collect(),
        )),
        _ => Some(Scenario::new(frames)),
    }
}

/// `pcaps/node.toml` with the overlay: node-b owns 10.244.2.0/24.
pub fn overlay_snapshot() -> Arc<Snapshot> {
    let text = std::fs::read_to_string(pcaps_dir().join("node.toml")).expect("pcaps/node.toml");
    let text = text
        + "[overlay]\nvni = 42\n[[nodes]]\nname = \"node-b\"\nnode_ip = \"192.168.100.2\"\npod_cidr = \"10.244.2.0/24\"\n";
    let config = NodeConfig::from_toml_str(&text).expect("valid overlay config");
    Arc::new(Snapshot::build(&config, 1).expect("valid overlay snapshot"))
}

/// The reply to pod-a's `frame` (addresses swapped, checksums unchanged)
/// as node-b sends it: inner from its VTEP to ours, in VXLAN.
fn vxlan_from_node_b(frame: &[u8]) -> Vec<u8> {
    use podswitch_dataplane::overlay::{default_vtep_mac, encap};
    let mut inner = frame.to_vec();
    let node_a = [192, 168, 100, 1].into();
    let node_b = [192, 168, 100, 2].into();
    inner[..6].copy_from_slice(&default_vtep_mac(node_a).0);
    inner[6..12].copy_from_slice(&default_vtep_mac(node_b).0);
    let (src, dst) = (inner[26..30].to_vec(), inner[30..34].to_vec());
    inner[26..30].copy_from_slice(&dst);
    inner[30..34].copy_from_slice(&src);
    let mut f = podswitch_dataplane::packet::Frame::with_capacity(2048);
    f.fill(&inner);
    let params = encap::EncapParams {
        src_mac: EXT_MAC,
        dst_mac: MacAddr([2, 0, 0xc0, 0xa8, 0x64, 1]),
        src_ip: node_b,
        dst_ip: node_a,
        src_port: encap::flow_src_port(&inner[14..]),
        dst_port: 4789,
        vni: 42,
        ip_id: 0,
        tos: 0,
        df: false,
        udp_checksum: false,
    };
    encap::encapsulate(&mut f, &params).expect("64-byte frame fits");
    f.data().to_vec()
}

/// Mirror modes of the mirror benchmark: no session, a session on all
/// ports at ingress copying every frame, and one whose filter (libpcap's
/// `tcp port 80`) matches none of the scenarios' frames.
pub const MIRROR_MODES: &[&str] = &["off", "ingress", "ingress_nomatch"];

/// Activates the mirror session of `mode` on `scenario`; returns its queue
/// (`None` for `off`). Give the copies back with [`drain`] after each batch.
pub fn mirror_session(scenario: &Scenario, mode: &str) -> Option<Arc<MirrorQueue>> {
    let filter = match mode {
        "ingress" => None,
        "ingress_nomatch" => Some(Program::new(TCP_PORT_80.to_vec()).expect("libpcap's program")),
        _ => return None,
    };
    let queue = Arc::new(MirrorQueue::new(DEFAULT_QUEUE_DEPTH, 2048));
    let spec = SessionSpec {
        ports: PortSelection::All,
        stages: vec![MirrorStage::Ingress],
        filter,
        snaplen: 2048,
    };
    let session = Session::new(format!("bench-{mode}"), spec, Arc::clone(&queue));
    scenario.shared().mirrors.add(Arc::new(session));
    Some(queue)
}

/// The consumer's side: takes every copy and gives its buffer back.
pub fn drain(queue: Option<&Arc<MirrorQueue>>) {
    if let Some(q) = queue {
        while let Some(r) = q.pop() {
            q.recycle(std::hint::black_box(r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_dataplane::packet::Event;

    /// The overlay scenarios do what their names say: every frame is
    /// encapsulated to the uplink, or decapsulated to pod-a.
    #[test]
    fn overlay_scenarios_encapsulate_and_decapsulate() {
        for (name, port, event) in [
            ("vxlan_encap_64b", UPLINK, Event::VxlanEncapsulated),
            ("vxlan_decap_64b", POD_A, Event::VxlanDecapsulated),
        ] {
            let mut s = scenario(name).unwrap();
            let frames = s.frames.len();
            assert_eq!(s.run_once(), frames, "{name}");
            assert_eq!(s.pipeline.counters().events(event), frames as u64);
            assert!(s.batch.iter().all(|(_, v)| v == Verdict::Forward(port)));
        }
    }
}
