//! A UDP load generator and sink for the live benchmark (`benches/live/run.sh`):
//! batched `sendmmsg`/`recvmmsg` so the generator is not the bottleneck
//! (iperf3 tops out near 0.2–0.3 Mpps here), plus a ping-pong RTT mode.
//!
//! ```text
//! udpblast send <dst-ip> <port> <flows> <payload-bytes> <seconds> <max-packets> [<rate-pps>]
//! udpblast sink <bind-ip> <port> <seconds>            prints packets and packets/s received
//! udpblast echo <bind-ip> <port> <seconds>            answers every datagram
//! udpblast rtt  <dst-ip> <port> <count>               prints the median round trip in µs
//! ```
//! Every loop is bounded by the given duration and count.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const BATCH: usize = 64;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("missing or bad {what} (see the module doc for usage)");
        std::process::exit(2)
    })
}

fn send(dst: Ipv4Addr, port: u16, flows: u16, payload: usize, seconds: u64, max: u64, rate: u64) {
    let socks: Vec<UdpSocket> = (0..flows.max(1))
        .map(|_| UdpSocket::bind("0.0.0.0:0").expect("bind"))
        .collect();
    for s in &socks {
        s.connect(SocketAddrV4::new(dst, port)).expect("connect");
    }
    let buf = vec![0x5au8; payload];
    let mut iov = [libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    }; BATCH];
    // SAFETY: an all-zero mmsghdr is a valid value of this plain C struct.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let (start, deadline) = (Instant::now(), Duration::from_secs(seconds));
    let mut sent = 0u64;
    let mut round = 0usize;
    while start.elapsed() < deadline && sent < max {
        if rate > 0 && sent as f64 > rate as f64 * start.elapsed().as_secs_f64() {
            // Ahead of the offered rate: give the CPU away until the next batch is due.
            std::thread::yield_now();
            continue;
        }
        let fd = socks[round % socks.len()].as_raw_fd();
        round += 1;
        // SAFETY: msgs holds BATCH initialised headers pointing at iov/buf, which outlive the call.
        let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT) };
        if n > 0 {
            sent += n as u64;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} packets in {secs:.2} s: {:.0} pps",
        sent as f64 / secs
    );
}

fn sink(bind: Ipv4Addr, port: u16, seconds: u64) {
    let sock = UdpSocket::bind(SocketAddrV4::new(bind, port)).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is a valid value of this plain C struct.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut received, mut first, mut last) = (0u64, None, Instant::now());
    while Instant::now() < deadline {
        // SAFETY: msgs holds BATCH headers pointing at live buffers; the socket has a read timeout.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            received += n as u64;
        }
    }
    let secs = first
        .map_or(0.0, |f| last.duration_since(f).as_secs_f64())
        .max(1e-9);
    println!(
        "received {received} packets in {secs:.2} s: {:.0} pps",
        received as f64 / secs
    );
}

fn echo(bind: Ipv4Addr, port: u16, seconds: u64) {
    let sock = UdpSocket::bind(SocketAddrV4::new(bind, port)).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    }
}

fn rtt(dst: Ipv4Addr, port: u16, count: usize) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    sock.connect(SocketAddrV4::new(dst, port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut samples = Vec::with_capacity(count);
    let mut buf = [0u8; 64];
    for i in 0..count {
        let t = Instant::now();
        let _ = sock.send(&(i as u64).to_be_bytes());
        if sock.recv(&mut buf).is_ok() {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let median = samples.get(samples.len() / 2).copied().unwrap_or_default();
    println!(
        "rtt {} of {count} answered: median {:.1} us",
        samples.len(),
        median.as_secs_f64() * 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("send") => send(
            arg(&args, 2, "dst"),
            arg(&args, 3, "port"),
            arg(&args, 4, "flows"),
            arg(&args, 5, "payload"),
            arg(&args, 6, "seconds"),
            arg(&args, 7, "max"),
            args.get(8).and_then(|r| r.parse().ok()).unwrap_or(0),
        ),
        Some("sink") => sink(
            arg(&args, 2, "bind"),
            arg(&args, 3, "port"),
            arg(&args, 4, "seconds"),
        ),
        Some("echo") => echo(
            arg(&args, 2, "bind"),
            arg(&args, 3, "port"),
            arg(&args, 4, "seconds"),
        ),
        Some("rtt") => rtt(
            arg(&args, 2, "dst"),
            arg(&args, 3, "port"),
            arg(&args, 4, "count"),
        ),
        _ => {
            eprintln!("usage: udpblast send|sink|echo|rtt ... (see the module doc)");
            std::process::exit(2);
        }
    }
}
