//! Probes for the restart benchmark (`benches/live/restart.sh`): how long
//! forwarding stops, and which connections a restart or takeover loses.
//!
//! ```text
//! restart_probe now                                          CLOCK_MONOTONIC in ns
//! restart_probe gap-send <dst-ip> <port> <pps> <seconds>     a numbered datagram every 1/pps s
//! restart_probe gap-sink <bind-ip> <port> <seconds>
//!     prints the largest inter-arrival gap (µs), when it ended
//!     (CLOCK_MONOTONIC ns), datagrams received and lost
//! restart_probe conns <client-ns> <server-ns> <up-vip:port> <push-vip:port> <up-server ip:port> <push-server ip:port> <n>
//!     n connections from <client-ns>: n/2 to <up-vip:port> (the client
//!     speaks first), n/2 to <push-vip:port> (the endpoint speaks first),
//!     accepted in <server-ns> at the two server addresses. Each line read
//!     from stdin checks every connection once, both ways, and prints
//!     `ok=K lost=L` (a lost one stays lost); end of input ends it.
//! ```
//! Every loop is bounded by its duration, a count or a deadline.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("missing or bad {what} (see the module doc for usage)");
        std::process::exit(2)
    })
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn gap_send(dst: Ipv4Addr, port: u16, pps: u64, seconds: u64) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    sock.connect(SocketAddrV4::new(dst, port)).expect("connect");
    let start = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut seq = 0u64;
    while start.elapsed() < limit {
        let due = start.elapsed().as_secs_f64() * pps as f64;
        while (seq as f64) < due {
            let _ = sock.send(&seq.to_le_bytes());
            seq += 1;
        }
        std::thread::sleep(Duration::from_micros(1_000_000 / pps.max(1) / 2));
    }
    println!("sent={seq}");
}

fn gap_sink(bind: Ipv4Addr, port: u16, seconds: u64) {
    let sock = UdpSocket::bind(SocketAddrV4::new(bind, port)).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut last, mut gap, mut gap_end) = (0u64, 0u64, 0u64);
    let (mut received, mut highest) = (0u64, 0u64);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let at = now_ns();
        if n >= 8 {
            let seq = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
            highest = highest.max(seq + 1);
        }
        received += 1;
        if last != 0 && at - last > gap {
            (gap, gap_end) = (at - last, at);
        }
        last = at;
    }
    println!(
        "gap_us={} gap_end_ns={gap_end} received={received} lost={}",
        gap / 1000,
        highest.saturating_sub(received)
    );
}

/// Runs `f` in a thread that entered network namespace `ns` (`ip netns` name).
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on a namespace file moves only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// One connection's two ends: `client_first` (the client speaks first).
struct Conn {
    client: TcpStream,
    server: TcpStream,
    client_first: bool,
    alive: bool,
}

fn open_conns(args: &[String]) -> Vec<Conn> {
    let (client_ns, server_ns): (String, String) =
        (arg(args, 2, "client ns"), arg(args, 3, "server ns"));
    let (up, push): (SocketAddrV4, SocketAddrV4) =
        (arg(args, 4, "up vip"), arg(args, 5, "push vip"));
    let (up_server, push_server): (SocketAddrV4, SocketAddrV4) =
        (arg(args, 6, "up server"), arg(args, 7, "push server"));
    let n: usize = arg(args, 8, "n");
    let listeners = in_netns(&server_ns, move || {
        let l = |a: SocketAddrV4| TcpListener::bind(a).expect("listen");
        (l(up_server), l(push_server))
    });
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let client_first = i % 2 == 0;
        let vip = if client_first { up } else { push };
        let client = in_netns(&client_ns, move || {
            TcpStream::connect_timeout(&vip.into(), Duration::from_secs(5))
                .expect("connect through the ClusterIP")
        });
        let listener = if client_first {
            &listeners.0
        } else {
            &listeners.1
        };
        let (server, _) = listener.accept().expect("accept");
        conns.push(Conn {
            client,
            server,
            client_first,
            alive: true,
        });
    }
    conns
}

/// Reads exactly `want` from `s` before `deadline`.
fn read_before(s: &mut TcpStream, want: &[u8], deadline: Instant) -> bool {
    let mut got = vec![0u8; want.len()];
    let mut n = 0;
    while n < got.len() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        if s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut got[n..]) {
            Ok(0) | Err(_) => return false,
            Ok(k) => n += k,
        }
        if Instant::now() > deadline && n < got.len() {
            return false;
        }
    }
    got == want
}

/// Checks every connection both ways: the first speaker sends, the other
/// reads and answers, the first reads the answer.
fn check(conns: &mut [Conn], round: u64) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (ask, answer) = (round.to_le_bytes(), (!round).to_le_bytes());
    for c in conns.iter_mut().filter(|c| c.alive) {
        let first = if c.client_first {
            &mut c.client
        } else {
            &mut c.server
        };
        c.alive = first.write_all(&ask).is_ok();
    }
    for c in conns.iter_mut().filter(|c| c.alive) {
        let second = if c.client_first {
            &mut c.server
        } else {
            &mut c.client
        };
        c.alive = read_before(second, &ask, deadline) && second.write_all(&answer).is_ok();
    }
    for c in conns.iter_mut().filter(|c| c.alive) {
        let first = if c.client_first {
            &mut c.client
        } else {
            &mut c.server
        };
        c.alive = read_before(first, &answer, deadline);
    }
    let ok = conns.iter().filter(|c| c.alive).count();
    (ok, conns.len() - ok)
}

fn conns(args: &[String]) {
    let mut conns = open_conns(args);
    println!("open={}", conns.len());
    let _ = std::io::stdout().flush();
    let stdin = std::io::stdin();
    for (round, line) in stdin.lock().lines().enumerate().take(1000) {
        if line.is_err() {
            break;
        }
        let (ok, lost) = check(&mut conns, round as u64 + 1);
        println!("ok={ok} lost={lost}");
        let _ = std::io::stdout().flush();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("now") => println!("{}", now_ns()),
        Some("gap-send") => gap_send(
            arg(&args, 2, "dst-ip"),
            arg(&args, 3, "port"),
            arg(&args, 4, "pps"),
            arg(&args, 5, "seconds"),
        ),
        Some("gap-sink") => gap_sink(
            arg(&args, 2, "bind-ip"),
            arg(&args, 3, "port"),
            arg(&args, 4, "seconds"),
        ),
        Some("conns") => conns(&args),
        _ => {
            eprintln!("usage: see the module doc of benches/src/bin/restart_probe.rs");
            std::process::exit(2)
        }
    }
}
