use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use super::*;
use crate::config::NodeConfig;
use crate::io::DeviceDrops;

/// A queue that always polls ready and whose every read fails, with
/// device drops to hand out once.
struct FailingQueue {
    _writer: UnixStream,
    reader: UnixStream,
    error: i32,
    drops: Option<DeviceDrops>,
}

impl FailingQueue {
    fn new(error: i32, drops: DeviceDrops) -> FailingQueue {
        let (mut writer, reader) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut writer, b"x").unwrap();
        FailingQueue {
            _writer: writer,
            reader,
            error,
            drops: Some(drops),
        }
    }
}

impl PortQueue for FailingQueue {
    fn poll_fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }
    fn recv_batch(&mut self, _: &mut Batch, _: PortId, _: u64) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(self.error))
    }
    fn send(&mut self, _: &Frame) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn accepts_offload(&self) -> bool {
        false
    }
    fn device_gone(&self, error: &std::io::Error) -> Option<&'static str> {
        (error.raw_os_error() == Some(libc::EBADFD)).then_some("gone")
    }
    fn take_device_drops(&mut self) -> DeviceDrops {
        self.drops.take().unwrap_or_default()
    }
}

/// A queue that gives its frames once and keeps what is sent to it.
struct ScriptedQueue {
    ready: FailingQueue,
    frames: Vec<(Vec<u8>, crate::packet::Offload)>,
    sent: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl PortQueue for ScriptedQueue {
    fn poll_fd(&self) -> RawFd {
        self.ready.poll_fd()
    }
    fn recv_batch(&mut self, batch: &mut Batch, port: PortId, now: u64) -> std::io::Result<usize> {
        let n = self.frames.len();
        for (bytes, offload) in self.frames.drain(..) {
            let slot = batch.rx_slot().unwrap();
            assert!(slot.fill(&bytes));
            (slot.in_port, slot.timestamp_ns, slot.offload) = (port, now, offload);
            batch.commit_rx();
        }
        Ok(n)
    }
    fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.sent.lock().unwrap().push(frame.data().to_vec());
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn accepts_offload(&self) -> bool {
        true
    }
    fn device_gone(&self, _: &std::io::Error) -> Option<&'static str> {
        None
    }
    fn take_device_drops(&mut self) -> DeviceDrops {
        DeviceDrops::default()
    }
}

/// Runs a worker whose port a receives `frames` (flooded: their
/// destination MACs are unknown); returns its counters and what port b
/// (MTU 1280) sent.
fn flooded_from_a(
    frames: Vec<(Vec<u8>, crate::packet::Offload)>,
) -> (Arc<WorkerCounters>, Vec<Vec<u8>>) {
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let queue = |frames, sent| ScriptedQueue {
        ready: FailingQueue::new(0, DeviceDrops::default()),
        frames,
        sent,
    };
    let a = queue(frames, Arc::default());
    let b = queue(vec![], Arc::clone(&sent));
    let (counters, _) = run(vec![Some(Box::new(a)), Some(Box::new(b))]);
    let sent = sent.lock().unwrap().clone();
    (counters, sent)
}

/// Runs a worker over `queues` (ports 0 and 1) for a moment.
fn run(queues: Vec<Option<Box<dyn PortQueue>>>) -> (Arc<WorkerCounters>, Arc<PortStates>) {
    let config = NodeConfig::from_toml_str(
        "[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n\
         [[ports]]\nname = \"a\"\nkind = \"tap\"\n\
         [[ports]]\nname = \"b\"\nkind = \"tap\"\nmtu = 1280\n",
    )
    .unwrap();
    let snapshot = Arc::new(Snapshot::build(&config, 1).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let port_states = Arc::new(PortStates::default());
    let mut worker = Worker::new(WorkerSetup {
        id: 0,
        queues,
        snapshots: Arc::new(ArcSwap::from(snapshot)),
        shared: Arc::new(SharedTables::new(64, Default::default())),
        stop: Arc::clone(&stop),
        epoch: Instant::now(),
        busy_poll: Duration::ZERO,
        commands: None,
        port_states: Arc::clone(&port_states),
    });
    let counters = worker.counters();
    let thread = std::thread::spawn(move || worker.run());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap().unwrap();
    (counters, port_states)
}

#[test]
fn receive_errors_and_device_drops_are_counted_per_port() {
    let drops = DeviceDrops {
        errors: 2,
        dropped: 5,
        tx_too_big: 3,
        tx_failed: 4,
    };
    let (counters, states) = run(vec![
        Some(Box::new(FailingQueue::new(libc::EIO, drops))),
        Some(Box::new(FailingQueue::new(libc::EBADFD, drops))),
    ]);
    // Frames the queues took to send and the kernel refused are drops.
    assert_eq!(counters.drops(DropReason::TxTooBig), 2 * 3);
    assert_eq!(counters.drops(DropReason::TxError), 2 * 4);
    let a = counters.port(PortId(0)).unwrap();
    assert!(a.rx_errors.get() > 2, "each failed read counts");
    assert_eq!(a.rx_dropped.get(), 5);
    assert_eq!(states.down_reason(PortId(0)), None, "EIO may pass");
    // A queue whose device is gone is read once, then no more.
    let b = counters.port(PortId(1)).unwrap();
    assert_eq!((b.rx_errors.get(), b.rx_dropped.get()), (1 + 2, 5));
    let reason = states.down_reason(PortId(1)).unwrap();
    assert!(reason.contains("gone"), "{reason}");
}

#[test]
fn a_packet_longer_than_the_output_mtu_leaves_in_fragments() {
    // A 3,000-byte UDP datagram without DF (as an AF_PACKET fanout that
    // reassembles hands it over), flooded from port a to port b (MTU
    // 1280), with a partial checksum the sender left to the device.
    let mut frame = Vec::new();
    let payload: Vec<u8> = (0..2972u32).map(|i| (i % 251) as u8).collect();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3])
        .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
        .udp(40000, 7000)
        .write(&mut frame, &payload)
        .unwrap();
    frame[20] &= !0x40;
    let mut ip = crate::wire::Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
    ip.fill_checksum();
    let original = frame.clone();
    let pseudo = crate::wire::checksum::pseudo_header_v4(
        [10, 244, 1, 2].into(),
        [10, 244, 1, 3].into(),
        17,
        2980,
    );
    frame[40..42].copy_from_slice(&crate::wire::checksum::fold(pseudo).to_be_bytes());
    let partial = crate::packet::Offload {
        csum: Some((34, 6)),
        ..Default::default()
    };
    let (counters, fragments) = flooded_from_a(vec![(frame, partial)]);
    let sizes: Vec<usize> = fragments.iter().map(Vec::len).collect();
    assert_eq!(sizes, [14 + 1276, 14 + 1276, 14 + 20 + 468]);
    assert_eq!(counters.events(Event::Ipv4Fragmented), 1);
    // The partial checksum was completed before the cut.
    assert_eq!(fragments[0][40..42], original[40..42]);
    let mut pool: etherparse::defrag::IpDefragPool = etherparse::defrag::IpDefragPool::new();
    let mut whole = None;
    for f in &fragments {
        let sliced = etherparse::SlicedPacket::from_ethernet(f).unwrap();
        whole = whole.or(pool.process_sliced_packet(&sliced, (), ()).unwrap());
    }
    assert_eq!(whole.unwrap().payload, original[34..]);
}

#[test]
fn a_frame_that_cannot_be_cut_to_the_mtu_is_never_sent() {
    // Flooded from port a to port b (MTU 1280): a 3,000-byte UDP
    // datagram with DF, an IPv6 frame as long, and a USO super-frame
    // without DF whose 2,000-byte datagrams must go in fragments.
    let payload: Vec<u8> = (0..2972u32).map(|i| (i % 251) as u8).collect();
    let (src, dst) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]);
    let mut df = Vec::new();
    etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
        .udp(40000, 7000)
        .write(&mut df, &payload)
        .unwrap();
    let mut v6 = Vec::new();
    etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv6(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
            64,
        )
        .udp(40000, 7000)
        .write(&mut v6, &payload)
        .unwrap();
    let mut uso = Vec::new();
    etherparse::PacketBuilder::ethernet2(src, dst)
        .ipv4([10, 244, 1, 2], [10, 244, 1, 3], 64)
        .udp(40000, 7000)
        .write(&mut uso, &[7u8; 4000])
        .unwrap();
    uso[20] &= !0x40;
    let mut ip = crate::wire::Ipv4Packet::new_checked(&mut uso[14..]).unwrap();
    ip.fill_checksum();
    let uso_offload = crate::packet::Offload {
        gso: GsoKind::UdpL4,
        gso_size: 2000,
        hdr_len: 42,
        ..Default::default()
    };
    let plain = crate::packet::Offload::default();
    let frames = vec![(df, plain), (v6, plain), (uso, uso_offload)];
    let (counters, sent) = flooded_from_a(frames);
    let sizes: Vec<usize> = sent.iter().map(Vec::len).collect();
    // Each 2,028-byte datagram in two fragments; nothing else.
    assert_eq!(sizes, [14 + 1276, 14 + 20 + 752, 14 + 1276, 14 + 20 + 752]);
    assert_eq!(counters.drops(DropReason::MtuExceeded), 2);
    assert_eq!(counters.events(Event::Ipv4Fragmented), 2);
    assert_eq!(counters.events(Event::GsoSegmented), 1);
}
