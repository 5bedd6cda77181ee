//! NAT-stage scenarios: a node (`pcaps/node.toml`) with N ClusterIP
//! services, established DNAT flows, and generated new flows.

use std::net::Ipv4Addr;
use std::sync::Arc;

use podswitch_dataplane::config::{EndpointSection, ServiceSection};
use podswitch_dataplane::config::{NodeConfig, Snapshot};
use podswitch_dataplane::conntrack::Timeouts;
use podswitch_dataplane::packet::{BATCH_SIZE, Batch, PortId, Verdict};
use podswitch_dataplane::pipeline::{Pipeline, SharedTables};
use podswitch_dataplane::wire::tcp::{FLAG_ACK, FLAG_SYN};
use podswitch_dataplane::wire::{EtherType, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket};

use super::{POD_A, POD_A_MAC, POD_B, POD_B_MAC, arp_frame, pcaps_dir};

const GW_MAC: [u8; 6] = [2, 0, 0x0a, 0xf4, 1, 1];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
/// Conntrack capacity of the benchmark node (the default).
pub const CAPACITY: usize = 1 << 20;

/// The ClusterIP of service `i`.
pub fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from_bits(Ipv4Addr::new(10, 96, 0, 1).to_bits() + i as u32)
}

/// `pcaps/node.toml` with `services` TCP services on port 80, each with
/// three endpoints (pod-b, ports 8080–8082).
pub fn snapshot(services: usize) -> Arc<Snapshot> {
    let text = std::fs::read_to_string(pcaps_dir().join("node.toml")).expect("pcaps/node.toml");
    let mut config = NodeConfig::from_toml_str(&text).expect("valid pcaps/node.toml");
    config.services = (0..services)
        .map(|i| ServiceSection {
            name: format!("svc-{i}"),
            cluster_ip: vip(i),
            protocol: "TCP".to_string(),
            port: 80,
            target_port: Some(8080),
            node_port: None,
            affinity_timeout_secs: None,
            external_traffic_policy: None,
            endpoints: (8080..8083)
                .map(|port| EndpointSection {
                    address: ENDPOINT,
                    port: Some(port),
                    ready: true,
                    terminating: false,
                })
                .collect(),
        })
        .collect();
    Arc::new(Snapshot::build(&config, 1).expect("valid snapshot"))
}

/// A 60-byte TCP frame.
pub fn tcp_frame(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&macs.1);
    f[6..12].copy_from_slice(&macs.0);
    f[12..14].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    let repr = Ipv4Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        protocol: IpProtocol::TCP,
        payload_len: 20,
        ttl: 64,
    };
    repr.emit(&mut f[14..]).expect("room");
    let mut tcp = TcpPacket::new_unchecked(&mut f[34..54]);
    tcp.set_header_len(20);
    tcp.set_src_port(src.1);
    tcp.set_dst_port(dst.1);
    tcp.set_seq_number(seq);
    tcp.set_ack_number(ack);
    tcp.set_flags(flags);
    tcp.set_window(65535);
    tcp.fill_checksum_v4(src.0, dst.0);
    f
}

/// A primed pipeline (pods and router known) for `snapshot` on `shared`.
pub fn pipeline(snapshot: Arc<Snapshot>, shared: Arc<SharedTables>) -> Pipeline {
    let mut p = Pipeline::new(snapshot, shared, 2048);
    let mut batch = Batch::new(2048);
    batch.push_rx(
        POD_A,
        0,
        &arp_frame(POD_A_MAC, [10, 244, 1, 2], [10, 244, 1, 1]),
    );
    batch.push_rx(
        POD_B,
        0,
        &arp_frame(POD_B_MAC, [10, 244, 1, 3], [10, 244, 1, 1]),
    );
    p.process(&mut batch, 0);
    p
}

/// Runs `frames` through `p` in batches; returns how many were forwarded.
pub fn run(p: &mut Pipeline, batch: &mut Batch, frames: &[(PortId, Vec<u8>)], now: u64) -> usize {
    let mut forwarded = 0;
    for chunk in frames.chunks(BATCH_SIZE) {
        batch.clear();
        for (port, f) in chunk {
            batch.push_rx(*port, now, f);
        }
        p.process(batch, now);
        forwarded += batch
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Forward(_)))
            .count();
    }
    forwarded
}

/// Established flows through a node with `services` services: flow `i`
/// is pod-a:(10000 + i) → service `i·7919 mod services`, handshake done.
pub struct Established {
    /// The pipeline that set them up.
    pub pipeline: Pipeline,
    /// The shared tables (for more workers).
    pub shared: Arc<SharedTables>,
    /// The snapshot.
    pub snapshot: Arc<Snapshot>,
    /// One ACK per flow from the client to the ClusterIP (routed, DNAT).
    pub originals: Vec<(PortId, Vec<u8>)>,
    /// One ACK per flow from the endpoint to the client at L2 (reverse NAT).
    pub replies: Vec<(PortId, Vec<u8>)>,
}

/// Sets up `flows` established connections.
pub fn established(services: usize, flows: usize) -> Established {
    let snapshot = snapshot(services);
    let shared = Arc::new(SharedTables::new(CAPACITY, Timeouts::default()));
    let mut p = pipeline(Arc::clone(&snapshot), Arc::clone(&shared));
    let mut batch = Batch::new(2048);
    let (mut originals, mut replies) = (Vec::new(), Vec::new());
    for i in 0..flows {
        let client = (CLIENT, 10_000 + i as u16);
        let service = (vip(i * 7919 % services), 80);
        let syn = tcp_frame((POD_A_MAC.0, GW_MAC), client, service, FLAG_SYN, 100, 0);
        batch.clear();
        batch.push_rx(POD_A, 1, &syn);
        p.process(&mut batch, 1);
        let (out, v) = batch.get(0).expect("one frame");
        assert_eq!(v, Verdict::Forward(POD_B), "SYN reaches the endpoint");
        let ip = Ipv4Packet::new_checked(&out.data()[14..]).expect("IPv4");
        let endpoint = (
            ip.dst_addr(),
            u16::from_be_bytes([ip.payload()[2], ip.payload()[3]]),
        );
        let to_client = (POD_B_MAC.0, POD_A_MAC.0);
        let synack = tcp_frame(to_client, endpoint, client, FLAG_SYN | FLAG_ACK, 500, 101);
        let ack = tcp_frame((POD_A_MAC.0, GW_MAC), client, service, FLAG_ACK, 101, 501);
        run(
            &mut p,
            &mut batch,
            &[(POD_B, synack), (POD_A, ack.clone())],
            1,
        );
        originals.push((POD_A, ack));
        replies.push((
            POD_B,
            tcp_frame(to_client, endpoint, client, FLAG_ACK, 501, 101),
        ));
    }
    // Spread the flows like a real mix (not in setup order), and lay the
    // frames out one after the other in that order, as a receive ring
    // holds them (else copying each in would be a cache miss of its own).
    let scramble = |v: &mut Vec<(PortId, Vec<u8>)>| {
        let n = v.len();
        for i in 0..n {
            v.swap(i, (i.wrapping_mul(2_654_435_761)) % n);
        }
        *v = v.iter().map(|(port, f)| (*port, f.clone())).collect();
    };
    scramble(&mut originals);
    scramble(&mut replies);
    Established {
        pipeline: p,
        shared,
        snapshot,
        originals,
        replies,
    }
}

/// Generates SYNs of never-seen flows to `services` services into a batch.
pub struct NewFlows {
    template: Vec<u8>,
    next: u32,
    services: usize,
}

impl NewFlows {
    /// Starts at flow 0.
    pub fn new(services: usize) -> NewFlows {
        let template = tcp_frame(
            (POD_A_MAC.0, GW_MAC),
            (Ipv4Addr::new(10, 128, 0, 0), 1),
            (vip(0), 80),
            FLAG_SYN,
            1,
            0,
        );
        NewFlows {
            template,
            next: 0,
            services,
        }
    }

    /// Fills `batch` with [`BATCH_SIZE`] SYNs of new flows.
    pub fn fill(&mut self, batch: &mut Batch, now: u64) {
        batch.clear();
        for _ in 0..BATCH_SIZE {
            let n = self.next;
            self.next = self.next.wrapping_add(1);
            let mut f = [0u8; 60];
            f.copy_from_slice(&self.template);
            let src = Ipv4Addr::from_bits(Ipv4Addr::new(10, 128, 0, 0).to_bits() + (n >> 15));
            let service = (n as usize).wrapping_mul(2_654_435_761) % self.services;
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut f[14..34]);
                ip.set_src_addr(src);
                ip.set_dst_addr(vip(service));
                ip.fill_checksum();
            }
            f[34..36].copy_from_slice(&(1024 + (n & 0x7fff) as u16).to_be_bytes());
            batch.push_rx(POD_A, now, &f);
        }
    }
}

/// A pipeline with `services` services whose conntrack table is full of
/// unassured flows (every further new flow evicts one: the flood case),
/// and the generator that filled it, to go on with never-seen flows.
pub fn full_table(services: usize) -> (Pipeline, NewFlows) {
    let shared = Arc::new(SharedTables::new(CAPACITY, Timeouts::default()));
    let mut p = pipeline(snapshot(services), shared);
    let mut flows = NewFlows::new(services);
    let mut batch = Batch::new(2048);
    for _ in 0..CAPACITY / BATCH_SIZE {
        flows.fill(&mut batch, 3);
        p.process(&mut batch, 3);
    }
    (p, flows)
}
