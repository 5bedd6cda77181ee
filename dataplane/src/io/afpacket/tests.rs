//! AF_PACKET queues against real veth pairs between two network namespaces
//! that each test creates and deletes again.
//!
//! The independent side is a plain `recv`/`send` AF_PACKET socket
//! ([`RawSocket`]) and etherparse. Tests that need root print why they skip
//! without it. Every wait is bounded by a deadline.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::*;
use crate::packet::{GsoKind, MAX_FRAME_LEN, Offload};

mod vnet;

const IF_A: &str = "psafp-a";
const IF_B: &str = "psafp-b";
/// Source MAC of every frame the tests make, to tell them from kernel chatter.
const TEST_MAC_A: [u8; 6] = [2, 0, 0x5a, 0xf9, 0, 0x0a];
const TEST_MAC_B: [u8; 6] = [2, 0, 0x5a, 0xf9, 0, 0x0b];
const WAIT: Duration = Duration::from_secs(3);

fn is_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping {test}: needs root (network namespaces, AF_PACKET)");
    }
    root
}

/// Runs `ip args...`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A named network namespace (`ip netns add`), deleted on drop.
struct Netns {
    name: String,
}

/// `ip netns add` mounts /run/netns on first use; concurrent tests take turns.
static NETNS_LOCK: Mutex<()> = Mutex::new(());
static NEXT_NETNS: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!(
            "psafp-{}-{}-{tag}",
            std::process::id(),
            NEXT_NETNS.fetch_add(1, Ordering::Relaxed)
        );
        let _turn = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        // Keep IPv6 autoconfiguration chatter (RS, MLD, DAD) off the links.
        ns.run(|| {
            for knob in ["all", "default"] {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{knob}/disable_ipv6"), "1");
            }
        });
        ns
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it
    /// opens stay in the namespace wherever they are used later.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        crate::io::netns::run_in_netns(std::path::Path::new(&path), f).expect("enter netns")
    }

    /// `ip -n <ns> args...`.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _turn = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status()
        {
            eprintln!("could not delete netns {}: {e}", self.name);
        }
    }
}

/// Two namespaces joined by a veth pair: `IF_A` in `a`, `IF_B` in `b`, both up.
struct VethPair {
    a: Netns,
    b: Netns,
}

impl VethPair {
    fn new() -> VethPair {
        let pair = VethPair {
            a: Netns::new("a"),
            b: Netns::new("b"),
        };
        pair.a.ip(&[
            "link",
            "add",
            IF_A,
            "type",
            "veth",
            "peer",
            "name",
            IF_B,
            "netns",
            &pair.b.name,
        ]);
        pair.a.ip(&["link", "set", IF_A, "up"]);
        pair.b.ip(&["link", "set", IF_B, "up"]);
        pair
    }

    /// Gives the ends IPv4 addresses 10.99.0.1/24 (a) and 10.99.0.2/24 (b).
    fn address(&self) {
        self.a.ip(&["addr", "add", "10.99.0.1/24", "dev", IF_A]);
        self.b.ip(&["addr", "add", "10.99.0.2/24", "dev", IF_B]);
    }
}

/// A plain AF_PACKET socket with `send`/`recvfrom`, the oracle for the ring code.
struct RawSocket(OwnedFd);

impl RawSocket {
    fn open(ifname: &str) -> RawSocket {
        let fd = sys::packet_socket().expect("raw socket");
        let index = sys::interface_index(&CString::new(ifname).unwrap()).expect("ifindex");
        sys::bind_packet(fd.as_fd(), index).expect("bind raw socket");
        // The tests send everything before reading: room for all of it.
        let rcvbuf: libc::c_int = 8 << 20;
        // SAFETY: `rcvbuf` is a readable c_int and the length passed is its size.
        let ret = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&rcvbuf as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            ret,
            0,
            "SO_RCVBUFFORCE: {}",
            std::io::Error::last_os_error()
        );
        RawSocket(fd)
    }

    fn send(&self, frame: &[u8]) {
        for _ in 0..1000 {
            // SAFETY: `frame` is valid for reads of its length during the call.
            let sent =
                unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
            if sent == frame.len() as isize {
                return;
            }
            let err = std::io::Error::last_os_error();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::WouldBlock,
                "raw send: {err}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("raw send: socket stayed full");
    }

    /// Receives frames whose source MAC is `from` until `want` arrived or
    /// `wait` passed; returns (sll_pkttype, bytes) of each.
    fn recv(&self, from: [u8; 6], want: usize, wait: Duration) -> Vec<(u8, Vec<u8>)> {
        let deadline = Instant::now() + wait;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while got.len() < want && Instant::now() < deadline {
            if !wait_readable(self.0.as_raw_fd(), 10) {
                continue;
            }
            // SAFETY: all-zero bytes are a valid sockaddr_ll.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut addr_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `addr` are valid for writes of the lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut addr as *mut libc::sockaddr_ll).cast(),
                    &mut addr_len,
                )
            };
            if let Ok(n) = usize::try_from(n)
                && buf.get(6..12) == Some(&from[..])
            {
                got.push((addr.sll_pkttype, buf[..n].to_vec()));
            }
        }
        got
    }
}

fn wait_readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) > 0 }
}

/// A received frame, copied out of the batch.
#[derive(Debug, Clone)]
struct Received {
    bytes: Vec<u8>,
    offload: Offload,
    in_port: PortId,
    timestamp_ns: u64,
}

/// Polls and receives through `queue` until `want` test frames (source MAC
/// `from`) arrived or `wait` passed. Other frames are ignored.
fn drain(
    queue: &mut AfPacketQueue,
    batch: &mut Batch,
    from: [u8; 6],
    want: usize,
    wait: Duration,
) -> Vec<Received> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        if !wait_readable(queue.poll_fd(), 10) {
            continue;
        }
        batch.clear();
        queue.recv_batch(batch, PortId(7), 42).expect("recv_batch");
        got.extend(
            batch
                .iter()
                .filter(|(f, _)| f.data().get(6..12) == Some(&from[..]))
                .map(|(f, _)| Received {
                    bytes: f.data().to_vec(),
                    offload: f.offload,
                    in_port: f.in_port,
                    timestamp_ns: f.timestamp_ns,
                }),
        );
    }
    got
}

/// A UDP/IPv4 frame of `len` bytes (at least 60) from `src_mac`, for flow
/// `flow`, carrying (flow, seq) at the start of its payload.
fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], flow: u16, seq: u16, len: usize) -> Vec<u8> {
    let [hi, lo] = flow.to_be_bytes();
    let builder = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4([10, 98, hi, lo], [10, 99, 0, 1], 64)
        .udp(10_000 + flow, 4789);
    let mut payload = vec![0xa5u8; len.max(60) - 42];
    payload[..2].copy_from_slice(&flow.to_be_bytes());
    payload[2..4].copy_from_slice(&seq.to_be_bytes());
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, &payload).unwrap();
    out
}

/// (flow, seq) of a frame made by [`udp_frame`].
fn flow_and_seq(frame: &[u8]) -> (u16, u16) {
    let sliced = SlicedPacket::from_ethernet(frame).expect("test frame parses");
    let Some(TransportSlice::Udp(udp)) = sliced.transport else {
        panic!("not UDP")
    };
    let p = udp.payload();
    (
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
    )
}

fn small_ring(ifname: &str, vnet_hdr: bool) -> AfPacketOptions {
    let mut opts = AfPacketOptions::new(ifname);
    opts.vnet_hdr = vnet_hdr;
    opts.block_size = 64 * 1024;
    opts.block_count = 8;
    opts.rx_ring = true;
    opts
}

#[test]
fn options_are_checked_before_any_syscall() {
    let mut opts = AfPacketOptions::new("psafp-none0");
    opts.block_size = 1000;
    let err = AfPacketQueue::open(&opts).unwrap_err();
    assert!(
        matches!(
            err,
            AfPacketError::InvalidOption {
                field: "block_size",
                value: 1000,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "invalid AF_PACKET option block_size = 1000: must be a positive multiple of the page size"
    );
    let mut opts = AfPacketOptions::new("psafp-none0");
    opts.frame_size = 100;
    assert!(matches!(
        AfPacketQueue::open(&opts),
        Err(AfPacketError::InvalidOption {
            field: "frame_size",
            ..
        })
    ));
    opts.frame_size = 2048;
    opts.block_count = 0;
    assert!(matches!(
        AfPacketQueue::open(&opts),
        Err(AfPacketError::InvalidOption {
            field: "block_count",
            ..
        })
    ));
    let err = AfPacketQueue::open(&AfPacketOptions::new("psafp-none0")).unwrap_err();
    assert!(
        matches!(err, AfPacketError::UnknownInterface { .. }),
        "{err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the OS error is chained"
    );
    let err = AfPacketQueue::open(&AfPacketOptions::new("bad\0name")).unwrap_err();
    assert!(matches!(err, AfPacketError::InterfaceName(_)));
}

/// 200 frames of many sizes through a ring of 64 KiB blocks into batches
/// of 8: packets span several blocks and most calls stop mid-block.
/// With `ring` false the same frames come through `recvmmsg` instead.
fn receive_from_peer(vnet_hdr: bool, ring: bool) {
    let pair = VethPair::new();
    let mut opts = small_ring(IF_A, vnet_hdr);
    opts.rx_ring = ring;
    let mut queue = pair.a.run(|| AfPacketQueue::open(&opts)).expect("open");
    assert_eq!(queue.accepts_offload(), vnet_hdr);
    assert_eq!(queue.capabilities().vnet_hdr, vnet_hdr);
    let peer = pair.b.run(|| RawSocket::open(IF_B));
    let frames: Vec<Vec<u8>> = (0..200u16)
        .map(|i| {
            udp_frame(
                TEST_MAC_B,
                TEST_MAC_A,
                1,
                i,
                60 + usize::from(i) * 37 % 1455,
            )
        })
        .collect();
    for f in &frames {
        peer.send(f);
    }
    let mut batch = Batch::with_size(8, 2048);
    let got = drain(&mut queue, &mut batch, TEST_MAC_B, frames.len(), WAIT);
    assert_eq!(got.len(), frames.len());
    for (sent, got) in frames.iter().zip(&got) {
        assert_eq!(&got.bytes, sent, "bytes and order are kept");
        assert_eq!(got.offload, Offload::default());
        assert_eq!((got.in_port, got.timestamp_ns), (PortId(7), 42));
    }
    let stats = queue.stats();
    assert!(stats.rx_packets >= 200, "{stats:?}");
    assert_eq!(
        stats.rx_drops_ring + stats.rx_bad_vnet + stats.rx_oversized + stats.rx_bad_blocks,
        0,
        "{stats:?}"
    );
}

#[test]
fn receives_frames_from_the_peer() {
    if is_root("receives_frames_from_the_peer") {
        receive_from_peer(false, true);
    }
}

#[test]
fn receives_frames_from_the_peer_with_vnet_headers() {
    if is_root("receives_frames_from_the_peer_with_vnet_headers") {
        receive_from_peer(true, true);
    }
}

#[test]
fn receives_frames_from_the_peer_with_recvmmsg() {
    if is_root("receives_frames_from_the_peer_with_recvmmsg") {
        receive_from_peer(true, false);
    }
}

/// 150 frames (more than one `sendmmsg` batch) from the queue to a plain socket on the peer.
fn send_to_peer(qdisc_bypass: bool, vnet_hdr: bool) {
    let pair = VethPair::new();
    let (mut queue, sniffer) = pair.a.run(|| {
        let mut opts = small_ring(IF_A, vnet_hdr);
        opts.qdisc_bypass = qdisc_bypass;
        (
            AfPacketQueue::open(&opts).expect("open"),
            RawSocket::open(IF_A),
        )
    });
    assert_eq!(queue.capabilities().qdisc_bypass, qdisc_bypass);
    let peer = pair.b.run(|| RawSocket::open(IF_B));
    let frames: Vec<Vec<u8>> = (0..150u16)
        .map(|i| {
            udp_frame(
                TEST_MAC_A,
                TEST_MAC_B,
                2,
                i,
                60 + usize::from(i) * 97 % 1455,
            )
        })
        .collect();
    let mut frame = Frame::with_capacity(2048);
    for f in &frames {
        assert!(frame.fill(f));
        queue.send(&frame).expect("send");
    }
    queue.flush().expect("flush");
    let got = peer.recv(TEST_MAC_A, frames.len(), WAIT);
    assert_eq!(got.len(), frames.len());
    for (sent, (_, got)) in frames.iter().zip(&got) {
        assert_eq!(got, sent, "bytes and order are kept");
    }
    let stats = queue.stats();
    assert_eq!((stats.tx_packets, stats.tx_errors), (150, 0), "{stats:?}");
    // A plain socket on the sending side sees the frames leave, as taps do,
    // only when they go through the qdisc layer (dev_queue_xmit_nit).
    let seen = sniffer.recv(TEST_MAC_A, frames.len(), Duration::from_millis(200));
    eprintln!(
        "qdisc_bypass={qdisc_bypass}: a plain socket on the sender saw {} of 150 frames",
        seen.len()
    );
    if qdisc_bypass {
        assert!(seen.is_empty());
    } else {
        assert_eq!(seen.len(), 150);
        assert!(
            seen.iter()
                .all(|(pkt_type, _)| *pkt_type == libc::PACKET_OUTGOING)
        );
    }
    let mut batch = Batch::with_size(32, 2048);
    let own = drain(
        &mut queue,
        &mut batch,
        TEST_MAC_A,
        1,
        Duration::from_millis(100),
    );
    assert!(own.is_empty(), "the queue does not receive its own frames");
}

#[test]
fn sends_frames_to_the_peer() {
    if is_root("sends_frames_to_the_peer") {
        send_to_peer(true, false);
        send_to_peer(false, false);
        send_to_peer(true, true);
    }
}

/// Frames of [`TX_DIRECT_MIN`] bytes or more go out at once from their own
/// buffer, after the small frames queued before them: bytes and order are
/// kept, with and without vnet headers.
#[test]
fn large_frames_are_sent_from_their_own_buffer_in_order() {
    if !is_root("large_frames_are_sent_from_their_own_buffer_in_order") {
        return;
    }
    let pair = VethPair::new();
    pair.a.ip(&["link", "set", IF_A, "mtu", "30000"]);
    pair.b.ip(&["link", "set", IF_B, "mtu", "30000"]);
    for vnet_hdr in [false, true] {
        let mut queue = pair
            .a
            .run(|| AfPacketQueue::open(&small_ring(IF_A, vnet_hdr)).expect("open"));
        let peer = pair.b.run(|| RawSocket::open(IF_B));
        let len = |i: u16| match i % 3 {
            0 => TX_DIRECT_MIN + 100 * usize::from(i),
            _ => 200 + usize::from(i),
        };
        let frames: Vec<Vec<u8>> = (0..40u16)
            .map(|i| udp_frame(TEST_MAC_A, TEST_MAC_B, 3, i, len(i)))
            .collect();
        let mut frame = Frame::with_capacity(32 * 1024);
        for f in &frames {
            assert!(frame.fill(f));
            queue.send(&frame).expect("send");
        }
        queue.flush().expect("flush");
        let got = peer.recv(TEST_MAC_A, frames.len(), WAIT);
        assert_eq!(got.len(), frames.len(), "vnet_hdr={vnet_hdr}");
        for (sent, (_, got)) in frames.iter().zip(&got) {
            assert_eq!(got, sent, "bytes and order are kept (vnet_hdr={vnet_hdr})");
        }
        let stats = queue.stats();
        let direct = frames.iter().filter(|f| f.len() >= TX_DIRECT_MIN).count() as u64;
        assert_eq!(direct, 14);
        assert_eq!(
            (stats.tx_packets, stats.tx_direct, stats.tx_errors),
            (40, direct, 0),
            "{stats:?}"
        );
    }
}

/// A ring of two 4 KiB blocks that nobody reads fills up: the kernel drops
/// the rest and counts them, and the ring works again once drained.
#[test]
fn full_ring_drops_are_counted_and_the_ring_recovers() {
    if !is_root("full_ring_drops_are_counted_and_the_ring_recovers") {
        return;
    }
    let pair = VethPair::new();
    let mut opts = small_ring(IF_A, false);
    (opts.block_size, opts.block_count) = (4096, 2);
    let mut queue = pair.a.run(|| AfPacketQueue::open(&opts)).expect("open");
    let peer = pair.b.run(|| RawSocket::open(IF_B));
    for seq in 0..100 {
        peer.send(&udp_frame(TEST_MAC_B, TEST_MAC_A, 5, seq, 500));
    }
    std::thread::sleep(Duration::from_millis(20));
    let mut batch = Batch::with_size(8, 2048);
    let first = drain(
        &mut queue,
        &mut batch,
        TEST_MAC_B,
        100,
        Duration::from_millis(300),
    );
    let stats = queue.stats();
    eprintln!(
        "full ring: {} delivered, {} dropped by the kernel",
        first.len(),
        stats.rx_drops_ring
    );
    assert!(!first.is_empty() && first.len() < 100);
    assert_eq!(first.len() as u64 + stats.rx_drops_ring, 100, "{stats:?}");
    let seqs: Vec<u16> = first.iter().map(|f| flow_and_seq(&f.bytes).1).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "delivered in order: {seqs:?}"
    );
    for seq in 100..105 {
        peer.send(&udp_frame(TEST_MAC_B, TEST_MAC_A, 5, seq, 500));
    }
    let again = drain(&mut queue, &mut batch, TEST_MAC_B, 5, WAIT);
    let seqs: Vec<u16> = again.iter().map(|f| flow_and_seq(&f.bytes).1).collect();
    assert_eq!(seqs, [100, 101, 102, 103, 104]);
}

/// One frame over the MTU in the middle of a batch: the kernel refuses
/// just that one, the frames around it go out in order.
#[test]
fn a_refused_frame_does_not_drop_the_rest_of_the_batch() {
    if !is_root("a_refused_frame_does_not_drop_the_rest_of_the_batch") {
        return;
    }
    let pair = VethPair::new();
    let mut queue = pair
        .a
        .run(|| AfPacketQueue::open(&small_ring(IF_A, false)))
        .expect("open");
    let peer = pair.b.run(|| RawSocket::open(IF_B));
    let mut frame = Frame::with_capacity(4096);
    for seq in 0..21 {
        let len = if seq == 10 { 3000 } else { 200 };
        assert!(frame.fill(&udp_frame(TEST_MAC_A, TEST_MAC_B, 6, seq, len)));
        queue.send(&frame).expect("send");
    }
    queue.flush().expect("flush");
    let got = peer.recv(TEST_MAC_A, 20, WAIT);
    let seqs: Vec<u16> = got.iter().map(|(_, f)| flow_and_seq(f).1).collect();
    assert_eq!(seqs, (0..21).filter(|&s| s != 10).collect::<Vec<_>>());
    let stats = queue.stats();
    assert_eq!((stats.tx_packets, stats.tx_errors), (20, 1), "{stats:?}");
    // The refusal (EMSGSIZE: longer than the veth's MTU) reaches the worker.
    let drops = queue.take_device_drops();
    assert_eq!((drops.tx_too_big, drops.tx_failed), (1, 0), "{drops:?}");
}

/// Another socket on the same interface transmits: the queue's ring must
/// not see those frames, both alone (PACKET_IGNORE_OUTGOING) and in a fanout
/// group (PACKET_FANOUT_FLAG_IGNORE_OUTGOING).
#[test]
fn ignores_frames_leaving_the_interface() {
    if !is_root("ignores_frames_leaving_the_interface") {
        return;
    }
    let pair = VethPair::new();
    let (mut alone, mut grouped, sender, witness) = pair.a.run(|| {
        let mut fanout = small_ring(IF_A, true);
        fanout.fanout_group = Some(9);
        (
            AfPacketQueue::open(&small_ring(IF_A, true)).expect("open"),
            AfPacketQueue::open(&fanout).expect("open fanout"),
            RawSocket::open(IF_A),
            RawSocket::open(IF_A),
        )
    });
    assert!(alone.capabilities().ignore_outgoing && grouped.capabilities().ignore_outgoing);
    let peer = pair.b.run(|| RawSocket::open(IF_B));
    for seq in 0..20 {
        sender.send(&udp_frame(TEST_MAC_A, TEST_MAC_B, 3, seq, 100));
    }
    assert_eq!(peer.recv(TEST_MAC_A, 20, WAIT).len(), 20, "the frames left");
    assert_eq!(
        witness.recv(TEST_MAC_A, 20, WAIT).len(),
        20,
        "a plain socket sees them leave"
    );
    let mut batch = Batch::with_size(32, 2048);
    for queue in [&mut alone, &mut grouped] {
        assert!(drain(queue, &mut batch, TEST_MAC_A, 1, Duration::from_millis(100)).is_empty());
        assert_eq!(
            queue.stats().rx_outgoing,
            0,
            "the kernel filtered them, not the ring walk"
        );
    }
}

/// Two queues in one fanout group: each frame of 64 flows arrives exactly
/// once, and all frames of a flow go to the same queue.
#[test]
fn fanout_spreads_flows_and_delivers_each_frame_once() {
    if !is_root("fanout_spreads_flows_and_delivers_each_frame_once") {
        return;
    }
    let pair = VethPair::new();
    let mut queues = pair.a.run(|| {
        let mut opts = small_ring(IF_A, true);
        opts.fanout_group = Some(42);
        [
            AfPacketQueue::open(&opts).expect("open 0"),
            AfPacketQueue::open(&opts).expect("open 1"),
        ]
    });
    let peer = pair.b.run(|| RawSocket::open(IF_B));
    let (flows, per_flow) = (64u16, 4u16);
    for seq in 0..per_flow {
        for flow in 0..flows {
            peer.send(&udp_frame(TEST_MAC_B, TEST_MAC_A, flow, seq, 80));
        }
    }
    let total = usize::from(flows * per_flow);
    let mut batch = Batch::with_size(32, 2048);
    let mut seen = HashSet::new();
    let mut owner: HashMap<u16, usize> = HashMap::new();
    let mut per_queue = [0usize; 2];
    let deadline = Instant::now() + WAIT;
    while seen.len() < total && Instant::now() < deadline {
        for (q, queue) in queues.iter_mut().enumerate() {
            for frame in drain(queue, &mut batch, TEST_MAC_B, 1, Duration::from_millis(20)) {
                let (flow, seq) = flow_and_seq(&frame.bytes);
                assert!(
                    seen.insert((flow, seq)),
                    "flow {flow} seq {seq} delivered twice"
                );
                assert_eq!(
                    *owner.entry(flow).or_insert(q),
                    q,
                    "flow {flow} split across queues"
                );
                per_queue[q] += 1;
            }
        }
    }
    assert_eq!(seen.len(), total, "every frame arrived");
    let flows_per_queue = [0, 1].map(|q| owner.values().filter(|&&o| o == q).count());
    eprintln!("fanout: frames per queue {per_queue:?}, flows per queue {flows_per_queue:?}");
    assert!(
        flows_per_queue.iter().all(|&n| n > 0),
        "both queues got flows"
    );
}
