//! Virtio-net headers on the ring and on transmit: GSO super-frames and
//! partial checksums.

use super::*;

/// A TCP transfer from b to a: with vnet headers the queue sees the
/// kernel's GSO super-frames whole, described by the header the kernel put
/// right before the MAC header. The fanout group must not see a's ACKs.
#[test]
fn vnet_header_describes_tcp_gso_super_frames() {
    if !is_root("vnet_header_describes_tcp_gso_super_frames") {
        return;
    }
    use std::io::{Read, Write};
    let pair = VethPair::new();
    pair.address();
    let (mut queue, listener) = pair.a.run(|| {
        let mut opts = AfPacketOptions::new(IF_A);
        opts.fanout_group = Some(3);
        (
            AfPacketQueue::open(&opts).expect("open"),
            std::net::TcpListener::bind("10.99.0.1:7777").expect("listen"),
        )
    });
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut sink = Vec::new();
        conn.read_to_end(&mut sink).expect("read");
        sink.len()
    });
    let sent = pair.b.run(|| {
        let mut conn =
            std::net::TcpStream::connect_timeout(&"10.99.0.1:7777".parse().unwrap(), WAIT)
                .expect("connect");
        let chunk = vec![0x5au8; 256 * 1024];
        conn.write_all(&chunk).expect("write");
        chunk.len()
    });
    assert_eq!(server.join().expect("server"), sent);
    let mut batch = Batch::with_size(32, MAX_FRAME_LEN);
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut frames = Vec::new();
    while Instant::now() < deadline {
        if wait_readable(queue.poll_fd(), 10) {
            batch.clear();
            queue.recv_batch(&mut batch, PortId(0), 0).expect("recv");
            frames.extend(batch.iter().map(|(f, _)| (f.data().to_vec(), f.offload)));
        }
    }
    let mut tcp_from_b = 0;
    let mut gso = Vec::new();
    for (bytes, offload) in &frames {
        let Ok(sliced) = SlicedPacket::from_ethernet(bytes) else {
            continue;
        };
        let Some(NetSlice::Ipv4(ipv4)) = &sliced.net else {
            continue;
        };
        assert_ne!(
            ipv4.header().source(),
            [10, 99, 0, 1],
            "an outgoing frame reached the group"
        );
        if let Some(TransportSlice::Tcp(_)) = sliced.transport {
            tcp_from_b += 1;
        }
        if offload.gso != GsoKind::None {
            gso.push((bytes.len(), *offload));
        }
    }
    eprintln!(
        "tcp frames from b: {tcp_from_b}; gso super-frames: {}; first: {:?}",
        gso.len(),
        gso.first()
    );
    assert!(!gso.is_empty(), "the kernel handed over GSO super-frames");
    for (len, offload) in &gso {
        assert_eq!(offload.gso, GsoKind::TcpV4);
        assert!(*len > 1514 && offload.gso_size > 0 && usize::from(offload.gso_size) < *len);
        assert_eq!(
            offload.csum,
            Some((34, 16)),
            "partial checksum from the TCP header"
        );
    }
    let stats = queue.stats();
    assert_eq!(
        stats.rx_bad_vnet + stats.rx_oversized + stats.rx_drops_ring,
        0,
        "{stats:?}"
    );
}

/// The folded pseudo-header sum of a UDP/IPv4 frame: what a sender with
/// checksum offload leaves in the checksum field.
fn udp_pseudo_header_sum(frame: &[u8]) -> u16 {
    let words = [&frame[26..30], &frame[30..34], &[0, 17], &frame[38..40]];
    let mut sum: u32 = words
        .iter()
        .flat_map(|w| w.chunks(2))
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// A frame sent with a partial checksum: veth (tx checksumming on) carries
/// it to the peer still partial; with tx checksumming off, the kernel
/// completes it in software before the driver.
#[test]
fn vnet_header_partial_checksum_on_transmit() {
    if !is_root("vnet_header_partial_checksum_on_transmit") {
        return;
    }
    let pair = VethPair::new();
    let mut tx = pair
        .a
        .run(|| AfPacketQueue::open(&small_ring(IF_A, true)))
        .expect("open a");
    let (mut rx, raw) = pair.b.run(|| {
        (
            AfPacketQueue::open(&small_ring(IF_B, true)).expect("open b"),
            RawSocket::open(IF_B),
        )
    });
    let mut bytes = udp_frame(TEST_MAC_A, TEST_MAC_B, 4, 0, 300);
    let full = u16::from_be_bytes([bytes[40], bytes[41]]);
    let partial = udp_pseudo_header_sum(&bytes);
    bytes[40..42].copy_from_slice(&partial.to_be_bytes());
    let mut frame = Frame::with_capacity(2048);
    assert!(frame.fill(&bytes));
    frame.offload.csum = Some((34, 6));
    let mut batch = Batch::with_size(8, 2048);

    tx.send(&frame).expect("send");
    tx.flush().expect("flush");
    let got = drain(&mut rx, &mut batch, TEST_MAC_A, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].offload.csum,
        Some((34, 6)),
        "the partial checksum crossed the veth as offload state"
    );
    assert_eq!(got[0].bytes, bytes, "still partial");
    let _ = raw.recv(TEST_MAC_A, 1, Duration::from_millis(100));

    if Command::new("ethtool").arg("--version").output().is_err() {
        eprintln!("ethtool missing: not checking software checksum completion");
        return;
    }
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.a.name,
            "ethtool",
            "-K",
            IF_A,
            "tx",
            "off",
        ])
        .output()
        .expect("ethtool");
    assert!(
        out.status.success(),
        "ethtool -K tx off: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tx.send(&frame).expect("send");
    tx.flush().expect("flush");
    let got = raw.recv(TEST_MAC_A, 1, WAIT);
    assert_eq!(got.len(), 1);
    let completed = u16::from_be_bytes([got[0].1[40], got[0].1[41]]);
    assert_eq!(
        completed, full,
        "the kernel completed the checksum in software"
    );
    let got = drain(&mut rx, &mut batch, TEST_MAC_A, 1, WAIT);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].offload.csum, None);
}
